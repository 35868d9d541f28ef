//! Where each broker of a route's cluster really is.
//!
//! A client that connects to a broker port must be forwarded to that broker's real address.
//! The view is fed two ways: from every Metadata and DescribeCluster answer that passes through
//! the gateway anyway, and by a refresh that asks the cluster itself with the gateway's own Kafka
//! client (librdkafka), periodically and whenever a client asks for a node the view lacks (for
//! instance right after a gateway restart, when clients still hold old metadata). Addresses are
//! only ever added or updated, never dropped: a broker that is briefly absent from metadata
//! keeps its address so its port keeps working when it returns.
//!
//! What the gateway asks a cluster directly goes through [`ClusterMetadata`]: librdkafka in the
//! gateway, a fake in the in-process tests that drive a switchover's phases in paused time.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::config::{BrokerSecurity, HostPort};

/// A broker's real address, and its rack when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub address: HostPort,
    pub rack: Option<String>,
}

/// What the gateway asks a cluster about itself. Each call blocks (it is run on a blocking
/// thread) and is bounded by `timeout`.
pub trait ClusterMetadata: Send + Sync + 'static {
    /// Every broker's node id and address.
    fn brokers(&self, timeout: Duration) -> anyhow::Result<Vec<(i32, HostPort)>>;
    /// Every topic (internal ones excluded) and its partition count.
    fn topics(&self, timeout: Duration) -> anyhow::Result<BTreeMap<String, usize>>;
    /// The `(low, high)` watermarks of one partition.
    fn watermarks(&self, topic: &str, partition: i32, timeout: Duration) -> anyhow::Result<(i64, i64)>;
}

/// The gateway's own librdkafka client of one listener.
struct Librdkafka(BaseConsumer);

impl ClusterMetadata for Librdkafka {
    fn brokers(&self, timeout: Duration) -> anyhow::Result<Vec<(i32, HostPort)>> {
        let metadata = self.0.fetch_metadata(None, timeout)?;
        Ok(metadata
            .brokers()
            .iter()
            .filter_map(|b| {
                Some((b.id(), HostPort { host: b.host().to_string(), port: u16::try_from(b.port()).ok()? }))
            })
            .collect())
    }

    fn topics(&self, timeout: Duration) -> anyhow::Result<BTreeMap<String, usize>> {
        let metadata = self.0.fetch_metadata(None, timeout)?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.name().starts_with("__"))
            .map(|t| (t.name().to_string(), t.partitions().len()))
            .collect())
    }

    fn watermarks(&self, topic: &str, partition: i32, timeout: Duration) -> anyhow::Result<(i64, i64)> {
        Ok(self.0.fetch_watermarks(topic, partition, timeout)?)
    }
}

/// The known brokers of one upstream cluster listener.
pub struct Topology {
    domain: String,
    brokers: RwLock<HashMap<i32, Broker>>,
    client: Arc<dyn ClusterMetadata>,
    /// Serialises refreshes so a burst of connections to an unknown node triggers one.
    refreshing: tokio::sync::Mutex<()>,
    /// Whether the last refresh reached the cluster.
    reachable: AtomicBool,
    /// When a client last asked for a node the view lacked and a refresh was made for it: the
    /// negative cache that keeps a flood of connections to an unknown node from asking the
    /// cluster once each.
    last_miss_refresh: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

/// After a refresh made for an unknown node, more asks for unknown nodes within this time are
/// answered from the view as it is.
const MISS_REFRESH_COOLDOWN: Duration = Duration::from_secs(5);

impl Topology {
    /// `bootstrap` are the addresses of the listener the route uses.
    /// `security` is the listener's, for the gateway's own client.
    pub fn new(domain: &str, bootstrap: &[HostPort], security: &BrokerSecurity) -> anyhow::Result<Arc<Topology>> {
        let client: BaseConsumer = crate::tls::librdkafka::client_config(bootstrap, security)?
            .set("client.id", format!("switchyard-topology-{domain}"))
            .set("socket.keepalive.enable", "true")
            .create()?;
        Ok(Topology::with_metadata(domain, Arc::new(Librdkafka(client))))
    }

    /// A view that asks `client` (the in-process tests' fake cluster).
    pub fn with_metadata(domain: &str, client: Arc<dyn ClusterMetadata>) -> Arc<Topology> {
        Arc::new(Topology {
            domain: domain.to_string(),
            brokers: RwLock::new(HashMap::new()),
            client,
            refreshing: tokio::sync::Mutex::new(()),
            reachable: AtomicBool::new(false),
            last_miss_refresh: tokio::sync::Mutex::new(None),
        })
    }

    /// Whether the last metadata refresh reached the cluster.
    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    pub fn address_of(&self, node_id: i32) -> Option<HostPort> {
        self.brokers.read().unwrap_or_else(|e| e.into_inner()).get(&node_id).map(|b| b.address.clone())
    }

    /// The rack a broker reported, if any response named one.
    pub fn rack_of(&self, node_id: i32) -> Option<String> {
        self.brokers.read().unwrap_or_else(|e| e.into_inner()).get(&node_id).and_then(|b| b.rack.clone())
    }

    /// Known `(node id, real address)` pairs, sorted by node id.
    pub fn snapshot(&self) -> Vec<(i32, Broker)> {
        let mut all: Vec<_> =
            self.brokers.read().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (*k, v.clone())).collect();
        all.sort_by_key(|(id, _)| *id);
        all
    }

    /// Record brokers seen in a response; takes the write lock only when something changed. A
    /// broker reported without a rack keeps the rack it was last seen with.
    pub fn learn(&self, brokers: impl Iterator<Item = (i32, Broker)>) {
        let seen: Vec<(i32, Broker)> = {
            let known = self.brokers.read().unwrap_or_else(|e| e.into_inner());
            brokers
                .map(|(id, mut broker)| {
                    if broker.rack.is_none() {
                        broker.rack = known.get(&id).and_then(|b| b.rack.clone());
                    }
                    (id, broker)
                })
                .filter(|(id, broker)| known.get(id) != Some(broker))
                .collect()
        };
        if seen.is_empty() {
            return;
        }
        let mut known = self.brokers.write().unwrap_or_else(|e| e.into_inner());
        for (id, broker) in seen {
            tracing::info!(domain = %self.domain, node_id = id, address = %broker.address, rack = ?broker.rack, "learned broker address");
            known.insert(id, broker);
        }
    }

    /// Ask the cluster for its brokers now.
    pub async fn refresh(self: &Arc<Self>, timeout: Duration) -> anyhow::Result<usize> {
        let _one_at_a_time = self.refreshing.lock().await;
        let this = Arc::clone(self);
        let brokers = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<(i32, Broker)>> {
            let brokers = this.client.brokers(timeout)?;
            Ok(brokers.into_iter().map(|(id, address)| (id, Broker { address, rack: None })).collect())
        })
        .await?;
        self.reachable.store(brokers.is_ok(), Ordering::Relaxed);
        let brokers = brokers?;
        let count = brokers.len();
        self.learn(brokers.into_iter());
        Ok(count)
    }

    /// The real address of `node_id`, refreshing once from the cluster when it is unknown.
    pub async fn resolve(self: &Arc<Self>, node_id: i32, timeout: Duration) -> Option<HostPort> {
        if let Some(addr) = self.address_of(node_id) {
            return Some(addr);
        }
        // One refresh for a burst of misses: the others wait for it, then look again.
        let mut last = self.last_miss_refresh.lock().await;
        if let Some(addr) = self.address_of(node_id) {
            return Some(addr);
        }
        let now = tokio::time::Instant::now();
        if last.is_some_and(|at| now < at + MISS_REFRESH_COOLDOWN) {
            return None;
        }
        *last = Some(now);
        if let Err(e) = self.refresh(timeout).await {
            tracing::warn!(domain = %self.domain, node_id, "cannot refresh cluster metadata: {e}");
        }
        self.address_of(node_id)
    }

    /// Keep the view fresh until `stop` fires.
    pub async fn refresh_periodically(
        self: Arc<Self>,
        every: Duration,
        timeout: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        loop {
            let refreshed = tokio::select! {
                _ = stop.cancelled() => return,
                refreshed = self.refresh(timeout) => refreshed,
            };
            match refreshed {
                Ok(count) => tracing::debug!(domain = %self.domain, brokers = count, "refreshed cluster metadata"),
                Err(e) => {
                    tracing::warn!(domain = %self.domain, "cannot refresh cluster metadata (will retry in {every:?}): {e}")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Every topic of the cluster (internal ones excluded) and its partition count.
    pub async fn topics(self: &Arc<Self>, timeout: Duration) -> anyhow::Result<BTreeMap<String, usize>> {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || this.client.topics(timeout)).await?
    }

    /// `(low, high)` watermarks of each partition of `topic`, in partition order.
    pub async fn watermarks(
        self: &Arc<Self>,
        topic: &str,
        partitions: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<(i64, i64)>> {
        let this = Arc::clone(self);
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<(i64, i64)>> {
            (0..partitions as i32).map(|p| this.client.watermarks(&topic, p, timeout)).collect()
        })
        .await?
    }
}
