//! Routing: which upstream a client connection goes to, and what addresses clients are told.
//!
//! A [`Route`] is the running form of one configured route: the host it advertises, its port
//! map, its metrics, the [`Upstream`] (streaming domain) it currently points at, the [`Fence`]
//! a switchover closes, and the session token its connections watch, which is cancelled to make
//! every client of the route drain and reconnect. Connections share the route through an `Arc`
//! and take the current upstream once, when they connect: a switchover swaps the upstream for
//! new connections and resets the old ones.

mod fence;
pub mod memory;
mod topic_ids;
mod topology;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use kafka_protocol::protocol::StrBytes;
use tokio_util::sync::CancellationToken;

use crate::telemetry::{Metrics, RouteMetrics};

/// Topics a route remembers its clients asking about (for a switchover's pre-flight). Clients
/// that ask about more (a tool listing a whole cluster) make pre-flight check every topic of
/// the source instead, and the set stops growing.
const MAX_TOPICS_SEEN: usize = 10_000;

#[derive(Default)]
struct TopicsSeen {
    topics: BTreeSet<String>,
    overflowed: bool,
}
use crate::cluster::Advertising;
use crate::config::{
    DomainConfig, FenceMode, GatewayConfig, HostPattern, HostPort, PortMap, RouteConfig, RouteFence, SaslSettings,
};
use crate::protocol::fence_answer::FenceCodes;

pub use fence::{Effect, Fence, Passed};
pub use topic_ids::{IdsByName, TopicIdLookup, TopicIds};
pub use topology::{Broker, ClusterMetadata, KeyValue, PartitionWindow, StoredRecord, Topology};

/// Which upstream a client-facing port leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The route's endpoint port: any of the domain's bootstrap servers.
    Bootstrap,
    /// A broker port: exactly this node.
    Node(i32),
}

/// A streaming domain as one route reaches it: the bootstrap addresses of one of its listeners
/// and the live view of its brokers, kept fresh until the upstream is retired.
pub struct Upstream {
    pub domain: String,
    pub bootstrap_server_id: String,
    pub bootstrap: Vec<HostPort>,
    /// The listener's TLS for data-path connections (built once per upstream), if it has TLS.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The gateway's own login to the listener (its Kafka client's), for its own requests.
    pub login: Option<SaslSettings>,
    pub topology: Arc<Topology>,
    stop: CancellationToken,
}

impl Upstream {
    /// Start reaching `domain` (which the config guarantees exists) for a route.
    pub fn for_domain(
        config: &GatewayConfig,
        domain: &str,
        bootstrap_server_id: Option<&str>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Arc<Upstream>> {
        let domain = config
            .domains
            .iter()
            .find(|d| d.name == domain)
            .ok_or_else(|| anyhow::anyhow!("no streaming domain `{domain}`"))?;
        let proxy = &config.proxy;
        Upstream::start(domain, bootstrap_server_id, proxy.metadata_refresh_interval, proxy.connect_timeout, shutdown)
    }

    /// Reach `domain` through its bootstrap server `preferred_id` (else its first), and keep
    /// its broker view fresh every `refresh_every` until retired or `shutdown`.
    pub fn start(
        domain: &DomainConfig,
        preferred_id: Option<&str>,
        refresh_every: Duration,
        timeout: Duration,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Arc<Upstream>> {
        let server = bootstrap_server(domain, preferred_id);
        let field = format!("streamingDomains[{}].kafkaCluster.bootstrapServers[{}]", domain.name, server.id);
        let topology = Topology::new(&domain.name, &server.addresses, &server.security)
            .map_err(|e| anyhow::anyhow!("{field}: the gateway's Kafka client cannot be set up: {e:#}"))?;
        Upstream::with_topology(domain, preferred_id, topology, refresh_every, timeout, shutdown)
    }

    /// [`Upstream::start`] with a view that asks its cluster through `topology` (the in-process
    /// tests' fake cluster).
    pub fn with_topology(
        domain: &DomainConfig,
        preferred_id: Option<&str>,
        topology: Arc<Topology>,
        refresh_every: Duration,
        timeout: Duration,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Arc<Upstream>> {
        let server = bootstrap_server(domain, preferred_id);
        let field = format!("streamingDomains[{}].kafkaCluster.bootstrapServers[{}]", domain.name, server.id);
        let tls = match &server.security.tls {
            Some(settings) => Some(
                crate::tls::client::client_config(settings)
                    .map_err(|e| anyhow::anyhow!("{field}.ssl: {e}; fix the store's location, type or password"))?,
            ),
            None => None,
        };
        let stop = shutdown.child_token();
        tokio::spawn(Arc::clone(&topology).refresh_periodically(refresh_every, timeout, stop.clone()));
        Ok(Arc::new(Upstream {
            domain: domain.name.clone(),
            bootstrap_server_id: server.id.clone(),
            bootstrap: server.addresses.clone(),
            tls,
            login: server.security.sasl.clone(),
            topology,
            stop,
        }))
    }

    /// Stop refreshing this upstream's view; connections still using it are unaffected.
    pub fn retire(&self) {
        self.stop.cancel();
    }
}

/// What a configuration fence answers with: its code for everything, else the retriable ones.
fn fence_codes(fence: &RouteFence) -> FenceCodes {
    fence.error_code.map_or(FenceCodes::RETRIABLE, FenceCodes::all)
}

/// The domain's bootstrap server `preferred_id`, else its first.
fn bootstrap_server<'d>(domain: &'d DomainConfig, preferred_id: Option<&str>) -> &'d crate::config::BootstrapServer {
    preferred_id
        .and_then(|id| domain.bootstrap_servers.iter().find(|s| s.id == id))
        .unwrap_or(&domain.bootstrap_servers[0])
}

/// A configured route, running.
pub struct Route {
    pub name: String,
    /// The host put in every broker address clients see.
    pub advertised_host: StrBytes,
    pub port_map: PortMap,
    /// The host strategy's broker names; `None`: the port strategy.
    pub host_pattern: Option<HostPattern>,
    /// Which host each broker is advertised at (this route's, a cluster member's, a balancer's).
    pub advertising: Arc<Advertising>,
    pub metrics: RouteMetrics,
    pub fence: Fence,
    upstream: RwLock<Arc<Upstream>>,
    /// The cluster id clients are shown: configured, else the first one seen, so that it stays
    /// the same across a switchover.
    cluster_id: Mutex<Option<StrBytes>>,
    switching: AtomicBool,
    /// The fence the configuration file holds on the route (`routes[].fence`): applied while
    /// no switchover runs, and restored when one ends.
    config_fence: Mutex<Option<RouteFence>>,
    /// Topics named in metadata answers to this route's clients: what a switchover must check.
    topics_seen: Mutex<TopicsSeen>,
    /// The topic ids clients were shown, translated once the route moves to another cluster.
    pub topic_ids: TopicIds,
    /// Cancelled to make the route's current connections drain and close, or move.
    session: Mutex<CancellationToken>,
    /// How many times [`Route::move_connections`] was called.
    moves: AtomicU64,
    /// Whether a transactional producer initialised through the route (on this node): a
    /// switchover then starts the destination's transaction coordinator before the cut.
    transactional: AtomicBool,
    /// The gateway's shutdown token; every session is its child.
    shutdown: CancellationToken,
}

impl Route {
    pub fn new(
        config: &RouteConfig,
        upstream: Arc<Upstream>,
        advertising: Arc<Advertising>,
        metrics: &Arc<Metrics>,
        shutdown: &CancellationToken,
    ) -> Route {
        let metrics = metrics.for_route(&config.name);
        let route = Route {
            advertising,
            name: config.name.clone(),
            advertised_host: StrBytes::from_string(config.endpoint.host.clone()),
            port_map: config.port_map.clone(),
            host_pattern: config.host_pattern.clone(),
            fence: Fence::new(metrics.requests_in_flight.clone(), metrics.fenced.clone()),
            metrics,
            upstream: RwLock::new(upstream),
            cluster_id: Mutex::new(config.cluster_id.clone().map(StrBytes::from_string)),
            switching: AtomicBool::new(false),
            config_fence: Mutex::new(None),
            topics_seen: Mutex::new(TopicsSeen::default()),
            topic_ids: TopicIds::default(),
            session: Mutex::new(shutdown.child_token()),
            moves: AtomicU64::new(0),
            transactional: AtomicBool::new(false),
            shutdown: shutdown.clone(),
        };
        route.set_config_fence(config.config_fence.clone());
        route
    }

    /// Where clients reach broker `node_id` (in `rack`) through this route, for a client whose id
    /// hashes to `client`; `None` when the route has no port for it.
    pub fn broker_address(&self, node_id: i32, rack: Option<&str>, client: u32) -> Option<(StrBytes, i32)> {
        if let Some(pattern) = &self.host_pattern {
            let port = pattern.port(self.port_map.bootstrap_port());
            return (node_id >= 0).then(|| (StrBytes::from_string(pattern.host(node_id)), i32::from(port)));
        }
        let port = self.port_map.port_for(node_id)?;
        Some((self.advertising.host_for(&self.advertised_host, node_id, rack, client), i32::from(port)))
    }

    /// Stop forwarding new requests on every connection of the route (`Some`), or resume:
    /// open, or back to the configuration's fence if the file holds one.
    pub fn set_fenced(&self, fence: Option<FenceMode>) {
        match (fence, self.config_fence()) {
            (Some(mode), _) => self.fence.close(mode),
            (None, Some(held)) => self.fence.close_with(FenceMode::Error, fence_codes(&held)),
            (None, None) => self.fence.open(),
        }
    }

    /// The fence the configuration holds on the route, if any.
    pub fn config_fence(&self) -> Option<RouteFence> {
        self.config_fence.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Hold (or drop) the configuration's fence; returns whether it changed. While a switchover
    /// runs it keeps its own fence, and the new one applies when it ends.
    pub fn set_config_fence(&self, fence: Option<RouteFence>) -> bool {
        let mut held = self.config_fence.lock().unwrap_or_else(|e| e.into_inner());
        if *held == fence {
            return false;
        }
        match &fence {
            Some(f) => {
                tracing::warn!(route = %self.name, error_code = ?f.error_code, message = ?f.error_message, "route fenced by the configuration")
            }
            None => tracing::info!(route = %self.name, "configuration fence removed"),
        }
        *held = fence;
        drop(held);
        if !self.switching.load(Ordering::Acquire) {
            self.set_fenced(None);
        }
        true
    }

    /// The upstream new connections go to.
    pub fn upstream(&self) -> Arc<Upstream> {
        Arc::clone(&self.upstream.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Point new connections at `next`; returns the upstream it replaces.
    pub fn replace_upstream(&self, next: Arc<Upstream>) -> Arc<Upstream> {
        std::mem::replace(&mut *self.upstream.write().unwrap_or_else(|e| e.into_inner()), next)
    }

    /// The cluster id to show clients for a response that carries `actual`.
    pub fn presented_cluster_id(&self, actual: &StrBytes) -> StrBytes {
        self.cluster_id.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(|| actual.clone()).clone()
    }

    /// What the route must remember across a restart (see [`memory`]).
    pub fn memory(&self) -> memory::RouteMemory {
        memory::RouteMemory {
            domain: self.upstream().domain.clone(),
            moved: self.moves() > 0,
            cluster_id: self.cluster_id.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|id| id.to_string()),
            topic_ids: self.topic_ids.presented().into_iter().collect(),
        }
    }

    /// Take up what the route remembered before a restart, before it serves: the cluster id
    /// (unless the configuration sets one) and topic ids its clients were shown. When those
    /// came from another cluster than the one the route is on now, it counts as moved, as after
    /// a live switchover; returns whether it does.
    pub fn recall(&self, memory: &memory::RouteMemory) -> bool {
        if let Some(id) = &memory.cluster_id {
            self.cluster_id
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert_with(|| StrBytes::from_string(id.clone()));
        }
        self.topic_ids.recall(memory.presented_ids());
        let moved = memory.moved || memory.domain != self.upstream().domain;
        if moved {
            self.moves.fetch_max(1, Ordering::AcqRel);
        }
        moved
    }

    /// Note topics a client of the route asked about.
    pub fn saw_topics<'t>(&self, topics: impl Iterator<Item = &'t str>) {
        let mut seen = self.topics_seen.lock().unwrap_or_else(|e| e.into_inner());
        for topic in topics {
            if seen.overflowed {
                return;
            }
            if !seen.topics.contains(topic) {
                seen.overflowed = seen.topics.len() >= MAX_TOPICS_SEEN;
                seen.topics.insert(topic.to_string());
            }
        }
    }

    /// The topics the route's clients asked about; empty if none, or too many to list.
    pub fn topics_seen(&self) -> Vec<String> {
        let seen = self.topics_seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.overflowed {
            return Vec::new();
        }
        seen.topics.iter().cloned().collect()
    }

    /// Note that a transactional producer initialised through the route.
    pub fn saw_transactional_producer(&self) {
        self.transactional.store(true, Ordering::Relaxed);
    }

    /// Whether a transactional producer ever initialised through the route on this node.
    pub fn has_transactional_producers(&self) -> bool {
        self.transactional.load(Ordering::Relaxed)
    }

    /// Claim the route for a switchover; `None` while another one runs.
    pub fn begin_switch(&self) -> Option<SwitchClaim<'_>> {
        self.switching
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| SwitchClaim { route: self })
    }

    /// The token a new connection watches: cancelled by [`Route::reset_connections`] or shutdown.
    pub fn session(&self) -> CancellationToken {
        self.session.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Make every current connection of the route finish its in-flight requests and continue on
    /// the route's upstream now (a switchover's cut, after [`Route::replace_upstream`]). A
    /// connection that cannot follow (its client logged in with SASL) closes instead.
    pub fn move_connections(&self) {
        self.moves.fetch_add(1, Ordering::AcqRel);
        self.reset_connections();
    }

    /// How many times the route's connections were moved to another upstream.
    pub fn moves(&self) -> u64 {
        self.moves.load(Ordering::Acquire)
    }

    /// Make every current connection of the route finish its in-flight requests and close, so
    /// its clients reconnect and refresh metadata. New connections are not affected.
    pub fn reset_connections(&self) {
        let old = std::mem::replace(
            &mut *self.session.lock().unwrap_or_else(|e| e.into_inner()),
            self.shutdown.child_token(),
        );
        old.cancel();
    }
}

/// Held while a switchover runs on a route; releases the route when dropped.
pub struct SwitchClaim<'a> {
    route: &'a Route,
}

impl Drop for SwitchClaim<'_> {
    fn drop(&mut self) {
        self.route.switching.store(false, Ordering::Release);
    }
}
