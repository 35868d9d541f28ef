//! Prometheus metrics.
//!
//! Everything a connection touches per request is resolved once per route when the route
//! starts ([`RouteMetrics`]): counters are shared atomics, so counting a request is one atomic
//! add, never a map lookup or a lock. Latency histograms use atomic buckets for the same reason
//! (the client library's own histogram takes a lock per observation).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub route: String,
    pub api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub route: String,
    /// `client_to_broker` or `broker_to_client`.
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub route: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub route: String,
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub route: String,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectedLabels {
    /// `command` or `member`.
    pub kind: &'static str,
    pub reason: &'static str,
}

pub const CLIENT_TO_BROKER: &str = "client_to_broker";
pub const BROKER_TO_CLIENT: &str = "broker_to_client";

/// Upper bounds, in seconds, of the latency buckets: 50 µs to 10 s.
const LATENCY_BOUNDS: [f64; 17] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A histogram whose observations are lock-free.
#[derive(Clone, Debug, Default)]
pub struct AtomicHistogram(Arc<HistogramCells>);

#[derive(Debug, Default)]
struct HistogramCells {
    /// One per bound, plus the overflow bucket.
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl AtomicHistogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let index = LATENCY_BOUNDS.iter().position(|bound| seconds <= *bound).unwrap_or(LATENCY_BOUNDS.len());
        self.0.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.0.sum_nanos.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        self.0.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.0.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, self.count(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Declares every metric family once, with its field, type, name and help text: the
/// [`Metrics`] struct, its construction and the registration all come from this one list.
macro_rules! metric_families {
    ($($field:ident: $ty:ty = ($name:literal, $help:literal $(,)?),)*) => {
        /// Every metric family the gateway exports, and the registry that renders them.
        pub struct Metrics {
            registry: Registry,
            $($field: $ty,)*
        }

        impl Metrics {
            pub fn new() -> Arc<Metrics> {
                let mut registry = Registry::with_prefix("switchyard");
                $(
                    let $field = <$ty>::default();
                    registry.register($name, $help, $field.clone());
                )*
                Arc::new(Metrics { registry, $($field,)* })
            }
        }
    };
}

metric_families! {
    client_connections_active: Family<RouteLabels, Gauge> = ("client_connections_active", "Open client connections"),
    client_connections_total: Family<RouteLabels, Counter> = ("client_connections", "Client connections accepted"),
    upstream_connections_active: Family<RouteLabels, Gauge> = (
        "upstream_connections_active",
        "Open broker connections",
    ),
    upstream_connect_failures: Family<RouteLabels, Counter> = (
        "upstream_connect_failures",
        "Broker connections that could not be opened",
    ),
    connections_moved: Family<RouteLabels, Counter> = (
        "connections_moved",
        "Client connections that followed their route to another cluster at a switchover, kept open",
    ),
    stand_in_answers: Family<ApiLabels, Counter> = (
        "stand_in_answers",
        "Produce requests answered NOT_LEADER_OR_FOLLOWER on a connection that followed a switchover to a cluster lacking its broker, by API",
    ),
    requests: Family<ApiLabels, Counter> = ("requests", "Requests forwarded, by API"),
    requests_in_flight: Family<RouteLabels, Gauge> = ("requests_in_flight", "Requests forwarded and not yet answered"),
    request_failures: Family<ApiLabels, Counter> = (
        "request_failures",
        "Requests left unanswered because their connection failed, by API",
    ),
    bytes: Family<DirectionLabels, Counter> = ("bytes", "Bytes proxied, by direction"),
    connections_closed: Family<ReasonLabels, Counter> = ("connections_closed", "Client connections closed, by reason"),
    frames_rejected: Family<ReasonLabels, Counter> = (
        "frames_rejected",
        "Frames refused as malformed or hostile, by reason",
    ),
    connections_refused: Family<ReasonLabels, Counter> = (
        "connections_refused",
        "Client connections refused at a connection limit, by limit",
    ),
    fenced: Family<RouteLabels, Gauge> = ("route_fenced", "1 while a switchover fences the route"),
    fence_answers: Family<ApiLabels, Counter> = (
        "fence_answers",
        "Requests a fenced route answered itself with a retriable error (fence mode error), by API",
    ),
    switchovers: Family<OutcomeLabels, Counter> = ("switchovers", "Switchovers run, by outcome"),
    switchover_phase_seconds: Family<PhaseLabels, Gauge<f64, std::sync::atomic::AtomicU64>> = (
        "switchover_phase_seconds",
        "Duration of each phase of the route's last switchover",
    ),
    cluster_members: Gauge = ("cluster_members", "Members of this node's gateway cluster"),
    cluster_rejected: Family<RejectedLabels, Counter> = (
        "cluster_rejected",
        "Gateway cluster commands and members refused (unsigned, forged, replayed, out of bounds), by kind and reason",
    ),
    buffered_frame_bytes: Gauge = (
        "buffered_frame_bytes",
        "Bytes of large frames held in connection buffers, taken from proxy.bufferBudgetBytes",
    ),
    tls_handshake_failures: Family<ReasonLabels, Counter> = (
        "tls_handshake_failures",
        "Client TLS handshakes that failed or were refused (unknown SNI, no client certificate, ...), by reason",
    ),
    broker_tls_handshake_failures: Family<ReasonLabels, Counter> = (
        "broker_tls_handshake_failures",
        "TLS handshakes with brokers that failed (untrusted or misnamed certificate, refused by the broker, ...), by reason",
    ),
    tls_certificate_reloads: Family<OutcomeLabels, Counter> = (
        "tls_certificate_reloads",
        "Reloads of a route's TLS stores after their files changed, by outcome (reloaded, failed)",
    ),
    swap_logins: Family<OutcomeLabels, Counter> = (
        "swap_logins",
        "SASL logins and re-authentications on swap routes, by outcome (ok, bad_credentials, unmapped, store_error, cluster_refused, reauthenticated, reauth_refused)",
    ),
    sasl_replays: Family<OutcomeLabels, Counter> = (
        "sasl_replays",
        "Passthrough clients' PLAIN or OAUTHBEARER logins the gateway repeated on the cluster a switchover moved them to, and their re-authentications it then answered, by outcome (replayed, replay_refused, reauth_answered, reauth_refused)",
    ),
    upstream_time: Family<RouteLabels, AtomicHistogram> = (
        "upstream_time_seconds",
        "Time from forwarding a request to receiving its response",
    ),
    gateway_time: Family<DirectionLabels, AtomicHistogram> = (
        "gateway_time_seconds",
        "Time the gateway spends on a read batch before it is written on, by direction",
    ),
}

impl Metrics {
    /// The gauge of this node's cluster members.
    pub fn cluster_members(&self) -> Gauge {
        self.cluster_members.clone()
    }

    /// A cluster command or member refused, `kind` being `command` or `member`.
    pub fn cluster_rejected(&self, kind: &'static str, reason: &'static str) {
        self.cluster_rejected.get_or_create(&RejectedLabels { kind, reason }).inc();
    }

    /// The gauge of the frame-buffer budget in use.
    pub fn buffered_frame_bytes(&self) -> Gauge {
        self.buffered_frame_bytes.clone()
    }

    /// A client TLS handshake on `listener` (a route, or an SNI port) that failed for `reason`.
    pub fn tls_handshake_failed(&self, listener: &str, reason: &'static str) {
        self.tls_handshake_failures.get_or_create(&ReasonLabels { route: listener.to_string(), reason }).inc();
    }

    /// A route's TLS stores were read again (`reloaded`) or could not be (`failed`).
    pub fn tls_reloaded(&self, route: &str, outcome: &'static str) {
        self.tls_certificate_reloads.get_or_create(&OutcomeLabels { route: route.to_string(), outcome }).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// The handles one route's connections use.
    pub fn for_route(self: &Arc<Self>, route: &str) -> RouteMetrics {
        let labels = RouteLabels { route: route.to_string() };
        let direction = |direction| DirectionLabels { route: route.to_string(), direction };
        let max_key = ApiKey::iter().map(|k| k as i16).max().unwrap_or(0);
        let requests = (0..=max_key)
            .map(|key| {
                let api = ApiKey::try_from(key).map(|k| format!("{k:?}")).unwrap_or_else(|_| key.to_string());
                self.requests.get_or_create(&ApiLabels { route: route.to_string(), api }).clone()
            })
            .collect();
        // One statement per handle: `get_or_create` returns a read guard that lives to the end of
        // its statement, and creating a second series of the same family needs the write lock.
        let client_connections_active = self.client_connections_active.get_or_create(&labels).clone();
        let client_connections_total = self.client_connections_total.get_or_create(&labels).clone();
        let upstream_connections_active = self.upstream_connections_active.get_or_create(&labels).clone();
        let upstream_connect_failures = self.upstream_connect_failures.get_or_create(&labels).clone();
        let bytes_from_client = self.bytes.get_or_create(&direction(CLIENT_TO_BROKER)).clone();
        let bytes_to_client = self.bytes.get_or_create(&direction(BROKER_TO_CLIENT)).clone();
        let upstream_time = self.upstream_time.get_or_create(&labels).clone();
        let requests_in_flight = self.requests_in_flight.get_or_create(&labels).clone();
        let fenced = self.fenced.get_or_create(&labels).clone();
        let gateway_request_time = self.gateway_time.get_or_create(&direction(CLIENT_TO_BROKER)).clone();
        let gateway_response_time = self.gateway_time.get_or_create(&direction(BROKER_TO_CLIENT)).clone();
        RouteMetrics {
            route: route.to_string(),
            client_connections_active,
            client_connections_total,
            upstream_connections_active,
            upstream_connect_failures,
            requests,
            requests_in_flight,
            fenced,
            bytes_from_client,
            bytes_to_client,
            upstream_time,
            gateway_request_time,
            gateway_response_time,
            all: Arc::clone(self),
        }
    }
}

/// One route's metric handles, shared by its connections.
pub struct RouteMetrics {
    route: String,
    pub client_connections_active: Gauge,
    pub client_connections_total: Counter,
    pub upstream_connections_active: Gauge,
    pub upstream_connect_failures: Counter,
    /// Indexed by api key.
    requests: Vec<Counter>,
    /// Kept by the route's fence, which counts what passed it.
    pub requests_in_flight: Gauge,
    /// 1 while the route's fence is closed; kept by the fence.
    pub fenced: Gauge,
    pub bytes_from_client: Counter,
    pub bytes_to_client: Counter,
    pub upstream_time: AtomicHistogram,
    pub gateway_request_time: AtomicHistogram,
    pub gateway_response_time: AtomicHistogram,
    all: Arc<Metrics>,
}

impl RouteMetrics {
    pub fn request(&self, api_key: ApiKey) {
        if let Some(counter) = self.requests.get(api_key as usize) {
            counter.inc();
        }
    }

    /// A request whose answer was lost with its connection (rare: takes the family's lock).
    pub fn request_failed(&self, api_key: ApiKey) {
        self.all
            .request_failures
            .get_or_create(&ApiLabels { route: self.route.clone(), api: format!("{api_key:?}") })
            .inc();
    }

    /// A request a fence in mode `error` answered itself (fence path only: takes the family's lock).
    pub fn fence_answered(&self, api_key: ApiKey) {
        self.all
            .fence_answers
            .get_or_create(&ApiLabels { route: self.route.clone(), api: format!("{api_key:?}") })
            .inc();
    }

    pub fn stand_in_answered(&self, api_key: ApiKey) {
        self.all
            .stand_in_answers
            .get_or_create(&ApiLabels { route: self.route.clone(), api: format!("{api_key:?}") })
            .inc();
    }

    pub fn switchover_phase(&self, phase: &'static str, duration: Duration) {
        let labels = PhaseLabels { route: self.route.clone(), phase };
        self.all.switchover_phase_seconds.get_or_create(&labels).set(duration.as_secs_f64());
    }

    pub fn switchover_finished(&self, outcome: &'static str) {
        self.all.switchovers.get_or_create(&OutcomeLabels { route: self.route.clone(), outcome }).inc();
    }

    /// A client connection refused at `limit` (`gateway`, `route` or `client`).
    pub fn connection_refused(&self, limit: &'static str) {
        let labels = ReasonLabels { route: self.route.clone(), reason: limit };
        self.all.connections_refused.get_or_create(&labels).inc();
    }

    /// A client TLS handshake of this route failed for `reason`.
    pub fn tls_handshake_failed(&self, reason: &'static str) {
        self.all.tls_handshake_failed(&self.route, reason);
    }

    /// A TLS handshake of this route with a broker failed for `reason`.
    pub fn broker_tls_handshake_failed(&self, reason: &'static str) {
        let labels = ReasonLabels { route: self.route.clone(), reason };
        self.all.broker_tls_handshake_failures.get_or_create(&labels).inc();
    }

    /// A swap route's login or re-authentication ended with `outcome`.
    pub fn swap_login(&self, outcome: &'static str) {
        self.all.swap_logins.get_or_create(&OutcomeLabels { route: self.route.clone(), outcome }).inc();
    }

    /// A passthrough client's login replayed at a cut, or a re-authentication the gateway
    /// answered after it, ended with `outcome` (rare: takes the family's lock).
    pub fn sasl_replay(&self, outcome: &'static str) {
        self.all.sasl_replays.get_or_create(&OutcomeLabels { route: self.route.clone(), outcome }).inc();
    }

    /// A client connection followed its route to another cluster (at a cut only: takes the
    /// family's lock).
    pub fn connection_moved(&self) {
        self.all.connections_moved.get_or_create(&RouteLabels { route: self.route.clone() }).inc();
    }

    pub fn connection_closed(&self, reason: &'static str, rejected_input: bool) {
        let labels = ReasonLabels { route: self.route.clone(), reason };
        self.all.connections_closed.get_or_create(&labels).inc();
        if rejected_input {
            self.all.frames_rejected.get_or_create(&labels).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let metrics = Metrics::new();
        let route = metrics.for_route("orders");
        route.request(ApiKey::Produce);
        route.request(ApiKey::Produce);
        route.upstream_time.observe(Duration::from_micros(700));
        route.connection_closed("malformed_request_frame", true);
        let text = metrics.render();
        assert!(text.contains(r#"switchyard_requests_total{route="orders",api="Produce"} 2"#), "{text}");
        assert!(text.contains(r#"switchyard_upstream_time_seconds_bucket{le="0.001",route="orders"} 1"#), "{text}");
        assert!(text.contains(r#"switchyard_upstream_time_seconds_bucket{le="0.0005",route="orders"} 0"#), "{text}");
        assert!(
            text.contains(r#"switchyard_frames_rejected_total{route="orders",reason="malformed_request_frame"} 1"#),
            "{text}"
        );
    }
}
