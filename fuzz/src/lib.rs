//! What the fuzz targets (`fuzz_targets/`) and the seed generator (`examples/seeds.rs`) share:
//! the route responses are rewritten for, the list of (API, version) pairs the gateway decodes,
//! and how a fuzz input picks one of them.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use switchyard::cluster::Advertising;
use switchyard::config::HostPort;
use switchyard::protocol::ResponseHandling;
use switchyard::routing::{Broker, Route, Upstream};
use switchyard::telemetry::Metrics;
use tokio_util::sync::CancellationToken;

/// Two routes over one domain whose node ids are both dense (0-7) and sparse (100, 1000-1002),
/// so some node ids in a response have a port and some do not.
pub const CONFIG: &str = r#"
streamingDomains:
  - name: fuzz
    type: kafka
    kafkaCluster:
      name: fuzz-cluster
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
  - name: plain
    endpoint: "gateway.example.com:19092"
    bindAddress: 127.0.0.1
    brokerIdentificationStrategy:
      type: port
    streamingDomain:
      name: fuzz
      bootstrapServerId: plaintext
  - name: stable-id
    endpoint: "gateway-b.example.com:29092"
    bindAddress: 127.0.0.1
    clusterId: "stable-cluster-id"
    brokerIdentificationStrategy:
      type: port
    streamingDomain:
      name: fuzz
      bootstrapServerId: plaintext
"#;

/// The brokers the routes' upstream knows before any input is run, so that DescribeConfigs
/// values holding one of these addresses are hidden.
pub fn known_brokers() -> Vec<(i32, HostPort)> {
    [0, 1, 2, 100, 1000]
        .into_iter()
        .map(|id| (id, HostPort { host: format!("kafka-{id}.internal"), port: 9092 + id as u16 }))
        .collect()
}

/// The routes `rewrite_response` works for, made once per process. The upstream's periodic
/// refresh is spawned on a runtime that is never driven, so it never runs (as in
/// `benches/codec.rs`). The upstream's view of the brokers grows with the Metadata answers
/// the fuzzer feeds it, as a running gateway's does.
pub struct Fixture {
    _runtime: tokio::runtime::Runtime,
    pub routes: Vec<Route>,
    pub upstream: Arc<Upstream>,
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a tokio runtime");
        let config = switchyard::config::parse("fuzz/src/lib.rs", CONFIG).expect("the fuzz config is valid");
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
        upstream.topology.learn(
            known_brokers()
                .into_iter()
                .map(|(id, address)| (id, Broker { address, rack: Some(format!("rack-{}", id % 3)) })),
        );
        let metrics = Metrics::new();
        let advertising = [
            Advertising::RouteEndpoint,
            Advertising::Fixed(kafka_protocol::protocol::StrBytes::from_static_str("lb.example.com")),
        ];
        let routes = config
            .routes
            .iter()
            .zip(advertising)
            .map(|(route, advertising)| {
                Route::new(route, Arc::clone(&upstream), Arc::new(advertising), &metrics, &shutdown)
            })
            .collect();
        Fixture { _runtime: runtime, routes, upstream }
    })
}

/// Every (API, version) whose response the gateway decodes, in a fixed order: the rows of the
/// rule table (`switchyard::rewrite::handling`), over the versions the codec knows.
pub fn decoded_versions() -> &'static [(ApiKey, i16, ResponseHandling)] {
    static DECODED: OnceLock<Vec<(ApiKey, i16, ResponseHandling)>> = OnceLock::new();
    DECODED.get_or_init(|| {
        ApiKey::iter()
            .flat_map(|key| {
                let range = key.valid_versions();
                (range.min..=range.max).map(move |version| (key, version))
            })
            .filter_map(|(key, version)| {
                let handling = switchyard::rewrite::handling(key, version);
                handling.decodes_response().then_some((key, version, handling))
            })
            .collect()
    })
}

/// Bytes at the start of a `rewrite_response` input before the response body: api key (i16),
/// version (i16), flags (u8).
pub const REWRITE_PREFIX: usize = 5;

/// The start of a `rewrite_response` input for a response of `api_key` at `version`.
pub fn rewrite_prefix(api_key: ApiKey, version: i16, flags: u8) -> [u8; REWRITE_PREFIX] {
    let [k0, k1] = (api_key as i16).to_be_bytes();
    let [v0, v1] = version.to_be_bytes();
    [k0, k1, v0, v1, flags]
}

/// The decoded (API, version) an input's first four bytes name; a pair the gateway does not
/// decode is mapped onto one it does, so every input exercises a rewrite.
pub fn pick_decoded(raw_key: i16, version: i16) -> (ApiKey, i16, ResponseHandling) {
    let all = decoded_versions();
    if let Some(found) = all.iter().find(|(key, v, _)| *key as i16 == raw_key && *v == version) {
        return *found;
    }
    let index = (usize::from(raw_key as u16) * 31 + usize::from(version as u16)) % all.len();
    all[index]
}
