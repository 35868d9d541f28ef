//! Property tests of the gateway's wire handling, on generated input (proptest), in the normal
//! suite: no Kafka (the route's upstream is never asked for anything), about 2 s in debug.
//!
//! - framing does not depend on how the bytes of a request stream are split into reads;
//! - Metadata, DescribeCluster and FindCoordinator answers, and Fetch answers' leader
//!   endpoints, with any brokers, reach the client with only the route's host and port-map
//!   ports, at every version the gateway decodes;
//! - answers that need no change are forwarded as they came (`None`);
//! - DescribeConfigs answers never carry a known broker's real `host:port` once rewritten.
//!
//! Two gaps they found, since fixed, are pinned by tests at the end: a FindCoordinator entry
//! with a negative node id kept its host, and the listener names of `advertised.listeners`
//! were copied unchecked.
//!
//! The fuzz targets in `fuzz/` (`cargo xtask fuzz`) cover the same surfaces with arbitrary,
//! mostly malformed, bytes; these check what the output must be for well-formed input.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::describe_quorum_response::Node;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, DescribeClusterResponse, DescribeConfigsResponse, DescribeQuorumResponse,
    FetchResponse, FindCoordinatorResponse, MetadataResponse, ProduceRequest, ProduceResponse, RequestHeader,
    ResponseHeader, TopicName, TransactionalId,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use proptest::prelude::*;
use switchyard::cluster::Advertising;
use switchyard::config::HostPort;
use switchyard::protocol::{
    frame_at, peek_request, FrameLimits, FrameStatus, InFlight, RequestError, MIN_REQUEST_BODY, SIZE_PREFIX,
};
use switchyard::rewrite::{handling, rewrite_records_response, rewrite_response, RecordsAnswer, ResponseBody};
use switchyard::routing::{Broker, Route, Upstream};
use switchyard::telemetry::Metrics;
use tokio_util::sync::CancellationToken;

// ---- the route answers are rewritten for -----------------------------------------------------

const GATEWAY_HOST: &str = "gateway.example.com";
const CLUSTER_ID: &str = "q1Sh-9_ISia_zwGINzRvyQ";

const CONFIG: &str = r#"
streamingDomains:
  - name: props
    type: kafka
    kafkaCluster:
      name: props-cluster
      bootstrapServers:
        - id: plaintext
          endpoint: "127.0.0.1:1"
      nodeIdRanges:
        - name: dense
          start: 0
          end: 7
        - name: sparse
          start: 100
          end: 100
        - name: high
          start: 1000
          end: 1002
routes:
  - name: props
    endpoint: "gateway.example.com:19092"
    bindAddress: 127.0.0.1
    clusterId: "q1Sh-9_ISia_zwGINzRvyQ"
    brokerIdentificationStrategy:
      type: port
    streamingDomain:
      name: props
      bootstrapServerId: plaintext
"#;

/// A route and its upstream. The upstream's periodic refresh is spawned on a runtime that is
/// never driven, so it never runs (as in `benches/codec.rs`).
struct Fixture {
    _runtime: tokio::runtime::Runtime,
    route: Route,
    upstream: Arc<Upstream>,
}

impl Fixture {
    fn new() -> Fixture {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a tokio runtime");
        let config = switchyard::config::parse("tests/properties.rs", CONFIG).expect("the test config is valid");
        let shutdown = CancellationToken::new();
        let upstream = {
            let _entered = runtime.enter();
            Upstream::start(
                &config.domains[0],
                config.routes[0].bootstrap_server_id.as_deref(),
                Duration::from_secs(3600),
                Duration::from_secs(1),
                &shutdown,
            )
            .expect("starting the upstream")
        };
        let advertising = Arc::new(Advertising::RouteEndpoint);
        let route = Route::new(&config.routes[0], Arc::clone(&upstream), advertising, &Metrics::new(), &shutdown);
        Fixture { _runtime: runtime, route, upstream }
    }
}

/// The route most tests share.
fn fixture() -> &'static Fixture {
    static SHARED: OnceLock<Fixture> = OnceLock::new();
    SHARED.get_or_init(Fixture::new)
}

/// A route of its own for the DescribeConfigs property, which teaches the upstream real
/// addresses and relies on them: the view keeps one address per node id, so the Metadata
/// answers of the tests running beside it would otherwise replace them mid-case.
fn configs_fixture() -> &'static Fixture {
    static CONFIGS: OnceLock<Fixture> = OnceLock::new();
    CONFIGS.get_or_init(Fixture::new)
}

/// What the proxy notes for a request of `api_key` at `version` whose answer is decoded.
fn in_flight(api_key: ApiKey, version: i16) -> InFlight {
    InFlight {
        correlation_id: 7,
        api_key,
        api_version: version,
        handling: handling(api_key, version),
        expects_response: true,
        sent_at: Instant::now(),
        client: 0,
    }
}

/// A response frame, size prefix included.
fn response_frame<R: Encodable>(api_key: ApiKey, version: i16, message: &R) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(7);
    header.encode(&mut out, api_key.response_header_version(version)).expect("encoding a response header");
    message.encode(&mut out, version).expect("encoding a response");
    let size = (out.len() - SIZE_PREFIX) as i32;
    out[..SIZE_PREFIX].copy_from_slice(&size.to_be_bytes());
    out.freeze()
}

/// Rewrite a response frame as the proxy does (from a slice of its buffer, or as a whole frame
/// for answers with records) for the shared route; returns what the client is sent and whether it
/// was re-encoded.
fn rewrite(api_key: ApiKey, version: i16, frame: &Bytes) -> (Bytes, bool) {
    rewrite_for(fixture(), api_key, version, frame)
}

fn rewrite_for(fixture: &Fixture, api_key: ApiKey, version: i16, frame: &Bytes) -> (Bytes, bool) {
    let request = in_flight(api_key, version);
    assert!(request.handling.decodes_response(), "{api_key:?} v{version} is decoded");
    if request.response_carries_records() {
        let out = rewrite_records_response(&fixture.route, &fixture.upstream, &request, frame);
        return match out.unwrap_or_else(|e| panic!("{api_key:?} v{version}: {e}")) {
            RecordsAnswer::Unchanged => (frame.clone(), false),
            RecordsAnswer::Encoded(rewritten) => (rewritten, true),
            RecordsAnswer::Spliced(pieces) => (pieces.concat().into(), true),
        };
    }
    let out = rewrite_response(&fixture.route, &fixture.upstream, &request, ResponseBody::Slice(&frame[SIZE_PREFIX..]));
    match out.unwrap_or_else(|e| panic!("{api_key:?} v{version}: {e}")) {
        Some(rewritten) => (rewritten, true),
        None => (frame.clone(), false),
    }
}

/// Decode what the client is sent.
fn decode<R: Decodable>(api_key: ApiKey, version: i16, frame: &Bytes) -> R {
    let size = i32::from_be_bytes(frame[..SIZE_PREFIX].try_into().unwrap());
    assert_eq!(size as usize, frame.len() - SIZE_PREFIX, "the size prefix is the frame's length");
    let mut body = frame.slice(SIZE_PREFIX..);
    let header = ResponseHeader::decode(&mut body, api_key.response_header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 7);
    let message = R::decode(&mut body, version).unwrap();
    assert!(body.is_empty(), "nothing after the message");
    message
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
}

/// The port clients are told for `node_id`, if the route has one.
fn gateway_port(node_id: i32) -> Option<i32> {
    fixture().route.port_map.port_for(node_id).map(i32::from)
}

fn versions(api_key: ApiKey) -> impl Strategy<Value = i16> {
    let range = api_key.valid_versions();
    range.min..=range.max
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

// ---- generated values ------------------------------------------------------------------------

/// `cases` per property. A failure prints its shrunk input; nothing is written to the source
/// tree (no regression files), so a run leaves the checkout as it was.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// Node ids with a port (0-7, 100, 1000-1002) and without (anything else).
fn node_id() -> impl Strategy<Value = i32> {
    prop_oneof![3 => 0..8i32, 1 => Just(100), 1 => 1000..1003i32, 2 => any::<i32>()]
}

/// A real broker's host: never the gateway's, and distinct from every other generated text.
fn real_host() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,11}".prop_map(|name| format!("{name}.real-broker.internal"))
}

/// A broker as the cluster reports it: node id, real host, real port.
fn broker() -> impl Strategy<Value = (i32, String, i32)> {
    (node_id(), real_host(), 1..=65_535i32)
}

/// A coordinator as a broker names it: a node id that is not negative (a negative one is an
/// error answer, whose host brokers leave empty: see `find_coordinator_error_answer_with_a_host`).
fn coordinator() -> impl Strategy<Value = (i32, String, i32)> {
    let id = prop_oneof![3 => 0..8i32, 1 => Just(100), 1 => 1000..1003i32, 2 => 0..=i32::MAX];
    (id, real_host(), 1..=65_535i32)
}

fn rack() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("rack-[a-c]")
}

// ---- (a) framing -----------------------------------------------------------------------------

const LIMITS: FrameLimits = FrameLimits { min_body: MIN_REQUEST_BODY, max_body: 1 << 20 };

/// A request body: a header of a known API at any version (a Produce encoded whole, so its
/// `acks` can be read), then anything.
fn request_body() -> impl Strategy<Value = Vec<u8>> {
    let keys: Vec<ApiKey> = ApiKey::iter().collect();
    let opaque = (
        proptest::sample::select(keys),
        0..20i16,
        any::<i32>(),
        proptest::option::of("[a-z0-9-]{0,16}"),
        proptest::collection::vec(any::<u8>(), 0..48),
    )
        .prop_map(|(api_key, version, correlation_id, client_id, tail)| {
            let mut out = BytesMut::new();
            out.put_i16(api_key as i16);
            out.put_i16(version);
            out.put_i32(correlation_id);
            match client_id {
                Some(id) => {
                    out.put_i16(id.len() as i16);
                    out.extend_from_slice(id.as_bytes());
                }
                None => out.put_i16(-1),
            }
            out.extend_from_slice(&tail);
            out.to_vec()
        });
    let produce =
        (3..=13i16, prop_oneof![Just(0i16), Just(1), Just(-1)], proptest::option::of("[a-z]{1,8}"), any::<i32>())
            .prop_map(|(version, acks, transactional_id, correlation_id)| {
                let header = RequestHeader::default()
                    .with_request_api_key(ApiKey::Produce as i16)
                    .with_request_api_version(version)
                    .with_correlation_id(correlation_id)
                    .with_client_id(Some(StrBytes::from_static_str("producer")));
                let request = ProduceRequest::default()
                    .with_acks(acks)
                    .with_timeout_ms(1000)
                    .with_transactional_id(transactional_id.map(|t| TransactionalId(s(&t))))
                    .with_topic_data(vec![TopicProduceData::default()
                        .with_name(TopicName(StrBytes::from_static_str("orders")))
                        .with_partition_data(vec![PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(Bytes::from_static(b"opaque batch")))])]);
                let mut out = BytesMut::new();
                header.encode(&mut out, ApiKey::Produce.request_header_version(version)).unwrap();
                request.encode(&mut out, version).unwrap();
                out.to_vec()
            });
    prop_oneof![opaque, produce]
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

type Framed = Vec<(Vec<u8>, Result<InFlight, RequestError>)>;

/// Take every complete frame off the front of `buf`, peeking each as the proxy does.
fn take_frames(buf: &mut BytesMut, read_at: Instant, out: &mut Framed) {
    loop {
        match frame_at(buf, LIMITS).expect("only valid frames are generated") {
            FrameStatus::Complete(len) => {
                let frame = buf.split_to(len);
                out.push((frame.to_vec(), peek_request(&frame[SIZE_PREFIX..], read_at)));
            }
            FrameStatus::Incomplete { total } => {
                assert!(total.is_none_or(|total| total > buf.len()));
                return;
            }
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// (a) Any stream of valid request frames, split anywhere into reads, is framed and peeked
    /// exactly as when it arrives whole; a trailing partial frame is left over either way.
    #[test]
    fn framing_does_not_depend_on_read_boundaries(
        bodies in proptest::collection::vec(request_body(), 1..12),
        partial in proptest::option::of((request_body(), any::<prop::sample::Index>())),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..24),
    ) {
        let mut stream: Vec<u8> = bodies.iter().flat_map(|body| framed(body)).collect();
        let whole_frames = stream.len();
        if let Some((body, at)) = &partial {
            let frame = framed(body);
            stream.extend_from_slice(&frame[..at.index(frame.len())]);
        }
        let read_at = Instant::now();

        let mut whole = BytesMut::from(&stream[..]);
        let mut framed_whole = Vec::new();
        take_frames(&mut whole, read_at, &mut framed_whole);

        let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(stream.len() + 1)).collect();
        cuts.extend([0, stream.len()]);
        cuts.sort_unstable();
        let mut buf = BytesMut::new();
        let mut framed_reads = Vec::new();
        for read in cuts.windows(2) {
            buf.extend_from_slice(&stream[read[0]..read[1]]);
            take_frames(&mut buf, read_at, &mut framed_reads);
        }

        prop_assert_eq!(&framed_whole, &framed_reads);
        let frames: Vec<Vec<u8>> = bodies.iter().map(|body| framed(body)).collect();
        let found: Vec<Vec<u8>> = framed_whole.iter().map(|(frame, _)| frame.clone()).collect();
        prop_assert_eq!(found, frames);
        prop_assert_eq!(&whole[..], &stream[whole_frames..]);
        prop_assert_eq!(&buf[..], &stream[whole_frames..]);
    }
}

// ---- (b) broker addresses --------------------------------------------------------------------

/// Every broker a client is told about is at the gateway, on its node's port; brokers without
/// a port are left out, the others kept; no real host appears anywhere in the answer.
fn assert_only_gateway_addresses(
    sent: &Bytes,
    brokers: &[(i32, String, i32)],
    told: Vec<(i32, String, i32)>,
) -> Result<(), TestCaseError> {
    for (node_id, host, port) in &told {
        prop_assert_eq!(host.as_str(), GATEWAY_HOST, "broker {}", node_id);
        prop_assert_eq!(Some(*port), gateway_port(*node_id), "broker {}", node_id);
    }
    let expected: Vec<i32> = brokers.iter().map(|b| b.0).filter(|id| gateway_port(*id).is_some()).collect();
    prop_assert_eq!(told.iter().map(|b| b.0).collect::<Vec<_>>(), expected);
    for (_, host, _) in brokers {
        prop_assert!(!contains(sent, host), "{} reached the client", host);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    /// (b) Metadata, at every version the gateway decodes.
    #[test]
    fn metadata_shows_only_gateway_addresses(
        version in versions(ApiKey::Metadata),
        brokers in proptest::collection::vec((broker(), rack()), 0..8),
    ) {
        let response = MetadataResponse::default()
            .with_cluster_id((version >= 2).then(|| s(CLUSTER_ID)))
            .with_controller_id(BrokerId(if version >= 1 { 1 } else { -1 }))
            .with_brokers(
                brokers
                    .iter()
                    .map(|((id, host, port), rack)| {
                        MetadataResponseBroker::default()
                            .with_node_id(BrokerId(*id))
                            .with_host(s(host))
                            .with_port(*port)
                            .with_rack(rack.as_deref().filter(|_| version >= 1).map(s))
                    })
                    .collect(),
            );
        let frame = response_frame(ApiKey::Metadata, version, &response);
        let (sent, _) = rewrite(ApiKey::Metadata, version, &frame);
        let sent_response: MetadataResponse = decode(ApiKey::Metadata, version, &sent);
        let told = sent_response.brokers.iter().map(|b| (b.node_id.0, b.host.to_string(), b.port)).collect();
        let brokers: Vec<_> = brokers.into_iter().map(|(broker, _)| broker).collect();
        assert_only_gateway_addresses(&sent, &brokers, told)?;
    }

    /// (b) DescribeCluster, at every version the gateway decodes.
    #[test]
    fn describe_cluster_shows_only_gateway_addresses(
        version in versions(ApiKey::DescribeCluster),
        brokers in proptest::collection::vec((broker(), rack()), 0..8),
    ) {
        let response = DescribeClusterResponse::default()
            .with_cluster_id(s(CLUSTER_ID))
            .with_controller_id(BrokerId(1))
            .with_brokers(
                brokers
                    .iter()
                    .map(|((id, host, port), rack)| {
                        DescribeClusterBroker::default()
                            .with_broker_id(BrokerId(*id))
                            .with_host(s(host))
                            .with_port(*port)
                            .with_rack(rack.as_deref().map(s))
                    })
                    .collect(),
            );
        let frame = response_frame(ApiKey::DescribeCluster, version, &response);
        let (sent, _) = rewrite(ApiKey::DescribeCluster, version, &frame);
        let sent_response: DescribeClusterResponse = decode(ApiKey::DescribeCluster, version, &sent);
        let told = sent_response.brokers.iter().map(|b| (b.broker_id.0, b.host.to_string(), b.port)).collect();
        let brokers: Vec<_> = brokers.into_iter().map(|(broker, _)| broker).collect();
        assert_only_gateway_addresses(&sent, &brokers, told)?;
    }

    /// (b) FindCoordinator, one coordinator (v0-3) or one per key (v4+). A coordinator without
    /// a port becomes COORDINATOR_NOT_AVAILABLE with no address; an error answer (node -1, no
    /// host, as brokers send it) stays as it is.
    #[test]
    fn find_coordinator_shows_only_gateway_addresses(
        version in versions(ApiKey::FindCoordinator),
        coordinators in proptest::collection::vec(prop_oneof![4 => coordinator().prop_map(Some), 1 => Just(None)], 1..6),
    ) {
        const NOT_AVAILABLE: i16 = 15;
        let entry = |c: &Option<(i32, String, i32)>| match c {
            Some((id, host, port)) => (BrokerId(*id), s(host), *port, 0i16),
            None => (BrokerId(-1), StrBytes::default(), -1, NOT_AVAILABLE),
        };
        let asked = if version >= 4 { &coordinators[..] } else { &coordinators[..1] };
        let response = if version >= 4 {
            FindCoordinatorResponse::default().with_coordinators(
                asked
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let (id, host, port, error) = entry(c);
                        Coordinator::default()
                            .with_key(s(&format!("group-{i}")))
                            .with_node_id(id)
                            .with_host(host)
                            .with_port(port)
                            .with_error_code(error)
                    })
                    .collect(),
            )
        } else {
            let (id, host, port, error) = entry(&asked[0]);
            FindCoordinatorResponse::default().with_node_id(id).with_host(host).with_port(port).with_error_code(error)
        };
        let frame = response_frame(ApiKey::FindCoordinator, version, &response);
        let (sent, _) = rewrite(ApiKey::FindCoordinator, version, &frame);
        let sent_response: FindCoordinatorResponse = decode(ApiKey::FindCoordinator, version, &sent);
        let told: Vec<(i32, String, i32, i16)> = if version >= 4 {
            sent_response.coordinators.iter().map(|c| (c.node_id.0, c.host.to_string(), c.port, c.error_code)).collect()
        } else {
            let r = &sent_response;
            vec![(r.node_id.0, r.host.to_string(), r.port, r.error_code)]
        };
        prop_assert_eq!(told.len(), asked.len());
        for (coordinator, (id, host, port, error)) in asked.iter().zip(told) {
            match coordinator {
                Some((real_id, _, _)) => match gateway_port(*real_id) {
                    Some(gateway_port) => {
                        prop_assert_eq!((id, host.as_str(), port, error), (*real_id, GATEWAY_HOST, gateway_port, 0));
                    }
                    None => {
                        prop_assert_eq!((id, host.as_str(), port, error), (-1, "", -1, NOT_AVAILABLE));
                    }
                },
                None => prop_assert_eq!((id, host.as_str(), port, error), (-1, "", -1, NOT_AVAILABLE)),
            }
            if let Some((_, real_host, _)) = coordinator {
                prop_assert!(!contains(&sent, real_host), "{} reached the client", real_host);
            }
        }
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// (b) Fetch answers with leader endpoints (KIP-951), decoded once as the pump does
    /// (`rewrite_records_response`): only gateway addresses reach the client, and the records
    /// beside them are the broker's, byte for byte.
    #[test]
    fn fetch_leader_endpoints_show_only_gateway_addresses(
        version in versions(ApiKey::Fetch).prop_filter("decoded", |v| *v >= 16),
        brokers in proptest::collection::vec((broker(), rack()), 1..5),
        records in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        use kafka_protocol::messages::fetch_response::NodeEndpoint;
        let records = Bytes::from(records);
        let response = FetchResponse::default()
            .with_responses(vec![FetchableTopicResponse::default().with_partitions(vec![
                PartitionData::default().with_records(Some(records.clone())),
                PartitionData::default().with_partition_index(1).with_error_code(6),
            ])])
            .with_node_endpoints(
                brokers
                    .iter()
                    .map(|((id, host, port), rack)| {
                        NodeEndpoint::default()
                            .with_node_id(BrokerId(*id))
                            .with_host(s(host))
                            .with_port(*port)
                            .with_rack(rack.as_deref().map(s))
                    })
                    .collect(),
            );
        let frame = response_frame(ApiKey::Fetch, version, &response);
        let (sent, _) = rewrite(ApiKey::Fetch, version, &frame);
        let sent_response: FetchResponse = decode(ApiKey::Fetch, version, &sent);
        prop_assert_eq!(sent_response.responses[0].partitions[0].records.as_ref(), Some(&records));
        let told = sent_response.node_endpoints.iter().map(|b| (b.node_id.0, b.host.to_string(), b.port)).collect();
        let brokers: Vec<_> = brokers.into_iter().map(|(broker, _)| broker).collect();
        assert_only_gateway_addresses(&sent, &brokers, told)?;
    }
}

// ---- (c) answers that need no change ---------------------------------------------------------

fn partitions() -> impl Strategy<Value = Vec<(i32, i16, i64)>> {
    proptest::collection::vec((0..64i32, prop_oneof![Just(0i16), Just(6), Just(3)], any::<i64>()), 0..6)
}

proptest! {
    #![proptest_config(config(128))]

    /// (c) Produce answers without leader endpoints (every answer but NOT_LEADER ones).
    #[test]
    fn produce_without_endpoints_is_forwarded_as_is(version in 10..=13i16, partitions in partitions()) {
        prop_assume!(ApiKey::Produce.valid_versions().max >= version);
        let response = ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
            .with_name(TopicName(StrBytes::from_static_str("orders")))
            .with_partition_responses(
                partitions
                    .iter()
                    .map(|(index, error, offset)| {
                        PartitionProduceResponse::default().with_index(*index).with_error_code(*error).with_base_offset(*offset)
                    })
                    .collect(),
            )]);
        let frame = response_frame(ApiKey::Produce, version, &response);
        let (_, changed) = rewrite(ApiKey::Produce, version, &frame);
        prop_assert!(!changed);
    }

    /// (c) Fetch answers without leader endpoints, records and all.
    #[test]
    fn fetch_without_endpoints_is_forwarded_as_is(
        version in versions(ApiKey::Fetch).prop_filter("decoded", |v| *v >= 16),
        partitions in partitions(),
        records in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
    ) {
        let response = FetchResponse::default().with_session_id(3).with_responses(vec![FetchableTopicResponse::default()
            .with_partitions(
                partitions
                    .iter()
                    .map(|(index, error, offset)| {
                        PartitionData::default()
                            .with_partition_index(*index)
                            .with_error_code(*error)
                            .with_high_watermark(*offset)
                            .with_records(records.clone().map(Bytes::from))
                    })
                    .collect(),
            )]);
        let frame = response_frame(ApiKey::Fetch, version, &response);
        let (_, changed) = rewrite(ApiKey::Fetch, version, &frame);
        prop_assert!(!changed);
    }

    /// (c) Metadata and DescribeCluster with no brokers listed, and error answers of
    /// FindCoordinator, name no address: forwarded as they came.
    #[test]
    fn answers_naming_no_broker_are_forwarded_as_is(
        metadata_version in versions(ApiKey::Metadata),
        cluster_version in versions(ApiKey::DescribeCluster),
        coordinator_version in versions(ApiKey::FindCoordinator),
        keys in 1..4usize,
    ) {
        let metadata = MetadataResponse::default().with_cluster_id((metadata_version >= 2).then(|| s(CLUSTER_ID)));
        let frame = response_frame(ApiKey::Metadata, metadata_version, &metadata);
        prop_assert!(!rewrite(ApiKey::Metadata, metadata_version, &frame).1);

        let cluster = DescribeClusterResponse::default().with_cluster_id(s(CLUSTER_ID));
        let frame = response_frame(ApiKey::DescribeCluster, cluster_version, &cluster);
        prop_assert!(!rewrite(ApiKey::DescribeCluster, cluster_version, &frame).1);

        let coordinator = if coordinator_version >= 4 {
            FindCoordinatorResponse::default().with_coordinators(
                (0..keys)
                    .map(|i| {
                        Coordinator::default()
                            .with_key(s(&format!("group-{i}")))
                            .with_node_id(BrokerId(-1))
                            .with_port(-1)
                            .with_error_code(15)
                    })
                    .collect(),
            )
        } else {
            FindCoordinatorResponse::default().with_node_id(BrokerId(-1)).with_port(-1).with_error_code(15)
        };
        let frame = response_frame(ApiKey::FindCoordinator, coordinator_version, &coordinator);
        prop_assert!(!rewrite(ApiKey::FindCoordinator, coordinator_version, &frame).1);
    }

    /// (c) DescribeQuorum v2 without listeners, DescribeConfigs naming no address, and an
    /// ApiVersions answer already inside what the gateway decodes.
    #[test]
    fn answers_with_nothing_to_hide_are_forwarded_as_is(
        nodes in proptest::collection::vec(0..10i32, 0..4),
        configs in proptest::collection::vec(("[a-z]{1,8}\\.[a-z]{1,8}", proptest::option::of("[a-z0-9]{0,12}")), 0..6),
        configs_version in versions(ApiKey::DescribeConfigs),
        api_versions_version in versions(ApiKey::ApiVersions),
    ) {
        let quorum = DescribeQuorumResponse::default()
            .with_nodes(nodes.iter().map(|id| Node::default().with_node_id(BrokerId(*id))).collect());
        let frame = response_frame(ApiKey::DescribeQuorum, 2, &quorum);
        prop_assert!(!rewrite(ApiKey::DescribeQuorum, 2, &frame).1);

        let described = DescribeConfigsResponse::default().with_results(vec![DescribeConfigsResult::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_static_str("1"))
            .with_configs(
                configs
                    .iter()
                    .map(|(name, value)| {
                        DescribeConfigsResourceResult::default().with_name(s(name)).with_value(value.as_deref().map(s))
                    })
                    .collect(),
            )]);
        let frame = response_frame(ApiKey::DescribeConfigs, configs_version, &described);
        prop_assert!(!rewrite(ApiKey::DescribeConfigs, configs_version, &frame).1);

        let api = |key: ApiKey| {
            let range = key.valid_versions();
            ApiVersion::default().with_api_key(key as i16).with_min_version(range.min).with_max_version(range.max)
        };
        let api_versions = ApiVersionsResponse::default()
            .with_api_keys(vec![api(ApiKey::Fetch), api(ApiKey::Metadata), api(ApiKey::JoinGroup)]);
        let frame = response_frame(ApiKey::ApiVersions, api_versions_version, &api_versions);
        prop_assert!(!rewrite(ApiKey::ApiVersions, api_versions_version, &frame).1);
    }

    /// (c) Metadata whose brokers already carry the gateway's addresses (an answer that went
    /// through a gateway once already) reaches the client byte for byte as it came. (Today it
    /// is re-encoded to the same bytes rather than forwarded as `None`: the rewrite reports any
    /// non-empty broker list as changed. Byte-identical is the promise; `None` would save the
    /// encode.)
    #[test]
    fn metadata_already_at_gateway_addresses_is_unchanged(
        version in versions(ApiKey::Metadata),
        ids in proptest::collection::btree_set(prop_oneof![0..8i32, Just(100), 1000..1003i32], 0..6),
    ) {
        let response = MetadataResponse::default()
            .with_cluster_id((version >= 2).then(|| s(CLUSTER_ID)))
            .with_brokers(
                ids.iter()
                    .map(|id| {
                        MetadataResponseBroker::default()
                            .with_node_id(BrokerId(*id))
                            .with_host(StrBytes::from_static_str(GATEWAY_HOST))
                            .with_port(gateway_port(*id).unwrap())
                    })
                    .collect(),
            );
        let frame = response_frame(ApiKey::Metadata, version, &response);
        let (sent, _) = rewrite(ApiKey::Metadata, version, &frame);
        prop_assert_eq!(sent, frame);
    }
}

// ---- (d) addresses in broker configs ---------------------------------------------------------

/// Config names that hold addresses, and some that do not.
fn config_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("listeners".to_string()),
        Just("advertised.listeners".to_string()),
        Just("controller.quorum.voters".to_string()),
        Just("controller.quorum.bootstrap.servers".to_string()),
        Just("bootstrap.servers".to_string()),
        Just("zookeeper.connect".to_string()),
        Just("log.dirs".to_string()),
        "[a-z]{1,8}(\\.[a-z]{1,8}){0,2}",
    ]
}

/// A value built around real brokers' `host:port` (by index into the brokers): listener
/// lists, quorum voters, or any text with an address inside.
#[derive(Debug, Clone)]
enum ValueShape {
    Listeners(Vec<(String, usize)>),
    Voters(Vec<usize>),
    Text(String, usize, String),
    Plain(String),
}

fn value_shape() -> impl Strategy<Value = ValueShape> {
    let index = 0..16usize;
    prop_oneof![
        proptest::collection::vec(("[A-Z][A-Z_]{0,9}", index.clone()), 1..4).prop_map(ValueShape::Listeners),
        proptest::collection::vec(index.clone(), 1..4).prop_map(ValueShape::Voters),
        ("[ -~]{0,12}", index, "[ -~]{0,12}").prop_map(|(before, i, after)| ValueShape::Text(before, i, after)),
        "[a-z0-9/._-]{0,16}".prop_map(ValueShape::Plain),
    ]
}

fn render(shape: &ValueShape, addresses: &[String]) -> String {
    let at = |i: &usize| &addresses[i % addresses.len()];
    match shape {
        ValueShape::Listeners(listeners) => {
            listeners.iter().map(|(name, i)| format!("{name}://{}", at(i))).collect::<Vec<_>>().join(",")
        }
        ValueShape::Voters(voters) => {
            voters.iter().enumerate().map(|(n, i)| format!("{n}@{}", at(i))).collect::<Vec<_>>().join(",")
        }
        ValueShape::Text(before, i, after) => format!("{before}{}{after}", at(i)),
        ValueShape::Plain(text) => text.clone(),
    }
}

type ConfigEntry = (String, Option<ValueShape>, Vec<(String, Option<ValueShape>)>);

fn config_entry() -> impl Strategy<Value = ConfigEntry> {
    (
        config_name(),
        proptest::option::of(value_shape()),
        proptest::collection::vec((config_name(), proptest::option::of(value_shape())), 0..3),
    )
}

proptest! {
    #![proptest_config(config(256))]

    /// (d) Whatever configs a DescribeConfigs answer lists, for brokers the route serves or not
    /// and for topics, no value and no synonym reaches the client with a known broker's real
    /// `host:port` in it.
    #[test]
    fn describe_configs_never_shows_a_real_address(
        version in versions(ApiKey::DescribeConfigs),
        brokers in proptest::collection::btree_map(node_id(), (real_host(), 1..=65_535u16), 1..5),
        resources in proptest::collection::vec(
            (prop_oneof![Just(4i8), Just(2)], 0..8usize, proptest::collection::vec(config_entry(), 0..6)),
            1..4,
        ),
    ) {
        let fixture = configs_fixture();
        // The gateway knows the brokers' real addresses from the Metadata answers it saw.
        fixture.upstream.topology.learn(brokers.iter().map(|(id, (host, port))| {
            (*id, Broker { address: HostPort { host: host.clone(), port: *port }, rack: None })
        }));
        let addresses: Vec<String> = brokers.values().map(|(host, port)| format!("{host}:{port}")).collect();
        let ids: Vec<i32> = brokers.keys().copied().collect();
        let value = |shape: &Option<ValueShape>| shape.as_ref().map(|shape| s(&render(shape, &addresses)));
        let results = resources
            .iter()
            .map(|(resource_type, which, configs)| {
                let name = if *resource_type == 4 { ids[which % ids.len()].to_string() } else { "orders".to_string() };
                DescribeConfigsResult::default().with_resource_type(*resource_type).with_resource_name(s(&name)).with_configs(
                    configs
                        .iter()
                        .map(|(name, shape, synonyms)| {
                            DescribeConfigsResourceResult::default()
                                .with_name(s(name))
                                .with_value(value(shape))
                                .with_synonyms(
                                    synonyms
                                        .iter()
                                        .map(|(name, shape)| {
                                            DescribeConfigsSynonym::default().with_name(s(name)).with_value(value(shape))
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                )
            })
            .collect();
        let response = DescribeConfigsResponse::default().with_results(results);
        let frame = response_frame(ApiKey::DescribeConfigs, version, &response);
        let (sent, _) = rewrite_for(fixture, ApiKey::DescribeConfigs, version, &frame);
        let sent_response: DescribeConfigsResponse = decode(ApiKey::DescribeConfigs, version, &sent);
        let mut values = BTreeSet::new();
        for result in &sent_response.results {
            for config in &result.configs {
                values.extend(config.value.as_ref().map(|v| v.to_string()));
                values.extend(config.synonyms.iter().filter_map(|s| s.value.as_ref().map(|v| v.to_string())));
            }
        }
        for address in &addresses {
            prop_assert!(!contains(&sent, address), "{} reached the client", address);
            for value in &values {
                prop_assert!(!value.contains(address.as_str()), "{} in {:?}", address, value);
            }
        }
    }
}

// ---- gaps the properties above found, now fixed -----------------------------------------------

/// A FindCoordinator entry with a negative node id is an error answer. Brokers send an empty
/// host there, but one that sent an address would have leaked it: the rewrite now clears the
/// address of every entry it keeps as it is (Metadata and DescribeCluster drop such a broker).
#[test]
fn find_coordinator_error_answer_with_a_host() {
    for version in versions_of(ApiKey::FindCoordinator) {
        let (host, port) = ("kafka-9.real-broker.internal", 9092);
        let response = if version >= 4 {
            FindCoordinatorResponse::default().with_coordinators(vec![Coordinator::default()
                .with_key(StrBytes::from_static_str("group-1"))
                .with_node_id(BrokerId(-1))
                .with_host(StrBytes::from_static_str(host))
                .with_port(port)])
        } else {
            FindCoordinatorResponse::default()
                .with_node_id(BrokerId(-1))
                .with_host(StrBytes::from_static_str(host))
                .with_port(port)
        };
        let (sent, _) =
            rewrite(ApiKey::FindCoordinator, version, &response_frame(ApiKey::FindCoordinator, version, &response));
        assert!(!contains(&sent, host), "FindCoordinator v{version}: {host} reached the client");
    }
}

/// `advertised.listeners` of a broker the route serves is rewritten to `NAME://<gateway>:<port>`,
/// keeping each listener's NAME from the broker's value. A name that is not a plain word (one
/// holding a `host:port`, say) is no longer copied: the value is hidden.
#[test]
fn advertised_listeners_name_holding_an_address() {
    let address = "kafka-1.real-broker.internal:9092";
    let value = format!("{address}://{address}");
    let response = DescribeConfigsResponse::default().with_results(vec![DescribeConfigsResult::default()
        .with_resource_type(4)
        .with_resource_name(StrBytes::from_static_str("1"))
        .with_configs(vec![DescribeConfigsResourceResult::default()
            .with_name(StrBytes::from_static_str("advertised.listeners"))
            .with_value(Some(s(&value)))])]);
    for version in versions_of(ApiKey::DescribeConfigs) {
        let (sent, _) =
            rewrite(ApiKey::DescribeConfigs, version, &response_frame(ApiKey::DescribeConfigs, version, &response));
        assert!(!contains(&sent, address), "DescribeConfigs v{version}: {address} reached the client");
    }
}

fn versions_of(api_key: ApiKey) -> impl Iterator<Item = i16> {
    let range = api_key.valid_versions();
    range.min..=range.max
}
