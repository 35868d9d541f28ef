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
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::{BrokerSecurity, HostPort};

/// A broker's real address, and its rack when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub address: HostPort,
    pub rack: Option<String>,
}

/// A record's key and value, as [`ClusterMetadata::records`] reads them.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// One record where it sits in its partition, with everything a replication tool copies of it
/// (MirrorMaker 2 keeps timestamp, key, value and headers, and gives the copy its own offset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl StoredRecord {
    /// Whether `other` holds the same record, wherever it sits.
    pub fn same_content(&self, other: &StoredRecord) -> bool {
        (self.timestamp, &self.key, &self.value, &self.headers)
            == (other.timestamp, &other.key, &other.value, &other.headers)
    }
}

/// A partition's watermarks and a few of its records, as [`ClusterMetadata::records_from`]
/// reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionWindow {
    pub low: i64,
    pub high: i64,
    pub records: Vec<StoredRecord>,
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
    /// The ids of the cluster's consumer groups (ListGroups; Connect's and other non-consumer
    /// groups left out).
    fn consumer_groups(&self, _timeout: Duration) -> anyhow::Result<Vec<String>> {
        anyhow::bail!("this cluster client cannot list consumer groups")
    }
    /// `group`'s committed offsets in `topics` (name and partition count), as
    /// `(topic, partition, offset)` for each partition it has committed.
    fn committed(
        &self,
        _group: &str,
        _topics: &BTreeMap<String, usize>,
        _timeout: Duration,
    ) -> anyhow::Result<Vec<(String, i32, i64)>> {
        anyhow::bail!("this cluster client cannot read committed offsets")
    }
    /// Commit `offsets` for `group`, which must have no member on this cluster.
    fn commit(&self, _group: &str, _offsets: &[(String, i32, i64)], _timeout: Duration) -> anyhow::Result<()> {
        anyhow::bail!("this cluster client cannot commit offsets")
    }
    /// Every record of `topic` as `(key, value)`, up to its end as it was when asked.
    fn records(&self, _topic: &str, _timeout: Duration) -> anyhow::Result<Vec<KeyValue>> {
        anyhow::bail!("this cluster client cannot read topics")
    }
    /// For each `(topic, partition, offset)` (distinct partitions), the partition's watermarks
    /// and up to `count` of its records from `offset` on, stopping at the high watermark as it
    /// was when asked. Control records are not returned, so a first record may sit later.
    fn records_from(
        &self,
        _starts: &[(String, i32, i64)],
        _count: usize,
        _timeout: Duration,
    ) -> anyhow::Result<Vec<PartitionWindow>> {
        anyhow::bail!("this cluster client cannot read topics")
    }
    /// Connect, and keep until [`Self::release_clients`], the clients that read and commit
    /// `groups`' offsets in `topics` and read records, so that a switchover's fenced phase does
    /// not wait for each to connect and find its coordinator.
    fn prepare_clients(
        &self,
        _groups: &[String],
        _topics: &BTreeMap<String, usize>,
        _timeout: Duration,
    ) -> anyhow::Result<()> {
        Ok(())
    }
    /// Close the clients [`Self::prepare_clients`] kept.
    fn release_clients(&self) {}
    /// Have the cluster's transaction coordinator up, as the first transactional producer of a
    /// cluster does: its transaction state log created and a coordinator elected.
    fn start_transaction_coordinator(&self, _timeout: Duration) -> anyhow::Result<()> {
        anyhow::bail!("this cluster client cannot start a transaction coordinator")
    }
}

/// What [`StoredRecord`] keeps of a message read by the gateway.
fn stored(message: &BorrowedMessage<'_>) -> StoredRecord {
    let headers = message.headers().map_or_else(Vec::new, |headers| {
        headers.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect()
    });
    StoredRecord {
        offset: message.offset(),
        timestamp: message.timestamp().to_millis(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
    }
}

/// The group id of the client that reads records (it never joins its group nor commits).
const READER_GROUP: &str = "switchyard-reader";

/// At most this many clients are kept ready at once; other groups get a client when asked.
const MAX_KEPT_CLIENTS: usize = 16;

/// The transactional id the gateway initialises to start a cluster's transaction coordinator.
/// It never begins a transaction.
const WARM_UP_TRANSACTIONAL_ID: &str = "switchyard-warm-up";

/// The gateway's own librdkafka client of one listener, and its settings for the short-lived
/// clients that read or commit a group's offsets (librdkafka binds a client to one group id),
/// with those kept ready for a switchover.
struct Librdkafka {
    client: BaseConsumer,
    settings: ClientConfig,
    kept: Mutex<HashMap<String, Arc<BaseConsumer>>>,
}

impl Librdkafka {
    /// A client of `group` that never joins it: it only reads and commits offsets.
    fn group_client(&self, group: &str) -> anyhow::Result<Arc<BaseConsumer>> {
        if let Some(kept) = self.kept.lock().unwrap_or_else(PoisonError::into_inner).get(group) {
            return Ok(Arc::clone(kept));
        }
        Ok(Arc::new(
            self.settings
                .clone()
                .set("group.id", group)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .create()?,
        ))
    }
}

impl ClusterMetadata for Librdkafka {
    fn brokers(&self, timeout: Duration) -> anyhow::Result<Vec<(i32, HostPort)>> {
        let metadata = self.client.fetch_metadata(None, timeout)?;
        Ok(metadata
            .brokers()
            .iter()
            .filter_map(|b| {
                Some((b.id(), HostPort { host: b.host().to_string(), port: u16::try_from(b.port()).ok()? }))
            })
            .collect())
    }

    fn topics(&self, timeout: Duration) -> anyhow::Result<BTreeMap<String, usize>> {
        let metadata = self.client.fetch_metadata(None, timeout)?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.name().starts_with("__"))
            .map(|t| (t.name().to_string(), t.partitions().len()))
            .collect())
    }

    fn watermarks(&self, topic: &str, partition: i32, timeout: Duration) -> anyhow::Result<(i64, i64)> {
        Ok(self.client.fetch_watermarks(topic, partition, timeout)?)
    }

    fn consumer_groups(&self, timeout: Duration) -> anyhow::Result<Vec<String>> {
        let list = self.client.fetch_group_list(None, timeout)?;
        Ok(list
            .groups()
            .iter()
            // A group that only ever committed (no member joined) has no protocol type.
            .filter(|g| matches!(g.protocol_type(), "consumer" | ""))
            .map(|g| g.name().to_string())
            .collect())
    }

    fn committed(
        &self,
        group: &str,
        topics: &BTreeMap<String, usize>,
        timeout: Duration,
    ) -> anyhow::Result<Vec<(String, i32, i64)>> {
        let mut wanted = TopicPartitionList::new();
        for (topic, &partitions) in topics {
            for partition in 0..partitions as i32 {
                wanted.add_partition(topic, partition);
            }
        }
        let found = self.group_client(group)?.committed_offsets(wanted, timeout)?;
        Ok(found
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(offset) => Some((e.topic().to_string(), e.partition(), offset)),
                _ => None,
            })
            .collect())
    }

    fn commit(&self, group: &str, offsets: &[(String, i32, i64)], _timeout: Duration) -> anyhow::Result<()> {
        let mut list = TopicPartitionList::new();
        for (topic, partition, offset) in offsets {
            list.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        // A synchronous commit is bounded by librdkafka's own request timeouts.
        self.group_client(group)?.commit(&list, CommitMode::Sync)?;
        Ok(())
    }

    fn records(&self, topic: &str, timeout: Duration) -> anyhow::Result<Vec<KeyValue>> {
        let metadata = self.client.fetch_metadata(Some(topic), timeout)?;
        let partitions = match metadata.topics().first() {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => t.partitions().len() as i32,
            _ => anyhow::bail!("the cluster has no topic `{topic}`"),
        };
        let starts: Vec<_> = (0..partitions).map(|p| (topic.to_string(), p, 0)).collect();
        let windows = self.records_from(&starts, usize::MAX, timeout)?;
        Ok(windows
            .into_iter()
            .flat_map(|w| w.records)
            .map(|r| (r.key.unwrap_or_default(), r.value.unwrap_or_default()))
            .collect())
    }

    fn records_from(
        &self,
        starts: &[(String, i32, i64)],
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<PartitionWindow>> {
        let deadline = std::time::Instant::now() + timeout;
        let mut windows = Vec::with_capacity(starts.len());
        let mut assignment = TopicPartitionList::new();
        let mut reading = HashMap::new();
        for (topic, partition, offset) in starts {
            let (low, high) = self.client.fetch_watermarks(topic, *partition, timeout)?;
            let from = (*offset).max(low);
            if from < high && count > 0 {
                assignment.add_partition_offset(topic, *partition, Offset::Offset(from))?;
                reading.insert((topic.clone(), *partition), windows.len());
            }
            windows.push(PartitionWindow { low, high, records: Vec::new() });
        }
        // librdkafka assigns partitions only to a client with a group id.
        let reader = self.group_client(READER_GROUP)?;
        reader.assign(&assignment)?;
        while !reading.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            anyhow::ensure!(!left.is_zero(), "{} partition(s) not read within {timeout:?}", reading.len());
            let Some(message) = reader.poll(left.min(Duration::from_millis(100))) else {
                // Control records (transaction markers) may end a partition: no message marks it.
                let positions = reader.position()?;
                reading.retain(|(topic, partition), at| {
                    let past_end = |offset| matches!(offset, Offset::Offset(o) if o >= windows[*at].high);
                    !positions.find_partition(topic, *partition).is_some_and(|e| past_end(e.offset()))
                });
                continue;
            };
            let message = message?;
            let place = (message.topic().to_string(), message.partition());
            let Some(&at) = reading.get(&place) else { continue };
            let window = &mut windows[at];
            window.records.push(stored(&message));
            if window.records.len() >= count || message.offset() + 1 >= window.high {
                reading.remove(&place);
            }
        }
        Ok(windows)
    }

    fn prepare_clients(
        &self,
        groups: &[String],
        topics: &BTreeMap<String, usize>,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let reader = self.group_client(READER_GROUP)?;
        reader.fetch_metadata(None, timeout)?;
        self.kept.lock().unwrap_or_else(PoisonError::into_inner).insert(READER_GROUP.to_string(), reader);
        for group in groups.iter().take(MAX_KEPT_CLIENTS - 1) {
            let client = self.group_client(group)?;
            self.kept.lock().unwrap_or_else(PoisonError::into_inner).insert(group.clone(), client);
            // Reading the offsets finds the group's coordinator and connects to it.
            self.committed(group, topics, timeout)?;
        }
        Ok(())
    }

    fn release_clients(&self) {
        let kept = std::mem::take(&mut *self.kept.lock().unwrap_or_else(PoisonError::into_inner));
        drop(kept);
    }

    fn start_transaction_coordinator(&self, timeout: Duration) -> anyhow::Result<()> {
        let producer: BaseProducer =
            self.settings.clone().set("transactional.id", WARM_UP_TRANSACTIONAL_ID).create()?;
        // Retries FindCoordinator and InitProducerId until the coordinator answers, or `timeout`.
        producer.init_transactions(timeout)?;
        Ok(())
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
        let mut settings = crate::tls::librdkafka::client_config(bootstrap, security)?;
        settings.set("client.id", format!("switchyard-topology-{domain}")).set("socket.keepalive.enable", "true");
        let client: BaseConsumer = settings.create()?;
        Ok(Topology::with_metadata(domain, Arc::new(Librdkafka { client, settings, kept: Mutex::default() })))
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
        self.ask(move |cluster| cluster.topics(timeout)).await
    }

    /// Ask the cluster `question` on a blocking thread (every [`ClusterMetadata`] call blocks).
    pub async fn ask<T: Send + 'static>(
        self: &Arc<Self>,
        question: impl FnOnce(&dyn ClusterMetadata) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || question(this.client.as_ref())).await?
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
