//! Kafka frames for the in-process tests (`tests/pump.rs`, `tests/reauth.rs`,
//! `tests/in_process_gateway.rs`), which play the
//! client and the broker themselves: requests and answers encoded with `kafka-protocol`, and
//! frames read back off a stream; and the one-route configuration both drive.

// Each test crate that includes this module uses a part of it.
#![allow(dead_code)]

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use std::time::Duration;

use switchyard::config::DomainConfig;
use switchyard::routing::{Route, Upstream};
use switchyard_testkit::gateway::{self, GatewayYaml, KafkaDomain};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

/// A gateway configuration with one route, `main`, by port, in front of a cluster that is never
/// dialled (the default node ids, 0 to 31): `top`, further top-level sections (secret stores);
/// `route`, further keys of the route (`security`, `fence`), each as YAML written as if at the
/// top level.
pub fn one_route_config(top: &str, route: &str) -> String {
    let domain = KafkaDomain::new("127.0.0.1:1", (0, 31));
    let main = gateway::Route { keys: route, ..gateway::Route::new(([127, 0, 0, 1], 19092).into(), &domain) };
    GatewayYaml { domains: vec![domain], routes: vec![main], sections: format!("{top}\n"), ..GatewayYaml::default() }
        .to_string()
}

/// A request frame (size prefix included) for `api_key` at `version`.
pub fn frame<R: Encodable>(api_key: ApiKey, version: i16, correlation_id: i32, body: &R) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("in-process-test")));
    let mut out = BytesMut::new();
    out.put_i32(0);
    header.encode(&mut out, api_key.request_header_version(version)).unwrap();
    body.encode(&mut out, version).unwrap();
    sized(out)
}

/// A response frame (size prefix included) for `api_key` at `version`.
pub fn response_frame<R: Encodable>(api_key: ApiKey, version: i16, correlation_id: i32, body: &R) -> Bytes {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let mut out = BytesMut::new();
    out.put_i32(0);
    header.encode(&mut out, api_key.response_header_version(version)).unwrap();
    body.encode(&mut out, version).unwrap();
    sized(out)
}

/// `out` with its size prefix filled in.
fn sized(mut out: BytesMut) -> Bytes {
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    out.freeze()
}

/// A Produce v9 request (`acks=1`, one empty partition): its answer passes through opaque.
pub fn produce(correlation_id: i32) -> Bytes {
    let partition = PartitionProduceData::default().with_index(0);
    let topic = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str("t")))
        .with_partition_data(vec![partition]);
    let body = ProduceRequest::default().with_acks(1).with_timeout_ms(1000).with_topic_data(vec![topic]);
    frame(ApiKey::Produce, 9, correlation_id, &body)
}

/// Decode an answer (`body`: the frame after its size prefix) read by the client.
pub fn decode_answer<R: kafka_protocol::protocol::Decodable>(api_key: ApiKey, version: i16, mut body: Bytes) -> R {
    use kafka_protocol::protocol::Decodable;
    ResponseHeader::decode(&mut body, api_key.response_header_version(version)).unwrap();
    R::decode(&mut body, version).unwrap()
}

/// Read one frame's body (after its size prefix); `None` at end of stream.
pub async fn read_frame<R: AsyncRead + Unpin>(stream: &mut R) -> Option<Bytes> {
    let size = stream.read_i32().await.ok()?;
    let mut body = vec![0; size as usize];
    stream.read_exact(&mut body).await.ok()?;
    Some(body.into())
}

/// Point `route` at a new upstream for `domain` and move its connections there, as a
/// switchover's cut does (these tests' brokers are dialled by the test, not by the upstream).
pub fn cut(route: &Route, domain: &DomainConfig, shutdown: &CancellationToken) {
    let never = Duration::from_secs(1_000_000);
    let destination =
        Upstream::start(domain, None, never, Duration::from_millis(10), shutdown).expect("starting the destination");
    route.replace_upstream(destination);
    route.move_connections();
}
