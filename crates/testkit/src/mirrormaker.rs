//! MirrorMaker 2 replicating one real cluster into another, and the offset checks around it.
//!
//! A client switchover moves clients from a source cluster to a destination that MirrorMaker 2
//! keeps up to date. The drill has to run against the real thing: MM2's startup time, how long it
//! takes to notice a new topic, and how it translates (rather than copies) consumer group offsets
//! all decide how many records a switched client re-reads or misses. [`MirrorMaker`] runs the
//! dedicated MM2 driver (`org.apache.kafka.connect.mirror.MirrorMaker`) from the cached jars with
//! one flow, `src->dst`, under the identity replication policy (same topic names on both sides),
//! tuned to react within seconds on single-node clusters. [`end_offsets`] and
//! [`committed_offsets`] read both sides over the wire (no JVM per check) so tests can wait until
//! the destination has caught up.
//!
//! Aliases: the source is `src` and the destination `dst`. MM2 keeps its Connect state in
//! `mm2-{configs,offsets,status}.src.internal` and checkpoints in `src.checkpoints.internal` on the
//! destination, emits heartbeats into `heartbeats` on the destination, and writes
//! `mm2-offset-syncs.dst.internal` on the source.

use std::collections::BTreeMap;
use std::fs;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, GroupId, ListOffsetsRequest, MetadataResponse, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tempfile::TempDir;

use crate::kafka::KafkaJars;
use crate::poll::try_poll_until;
use crate::process::{self, ChildGuard};
use crate::wire::{fetch_metadata, KafkaWire};

/// MM2's alias for the source cluster.
pub const SOURCE_ALIAS: &str = "src";
/// MM2's alias for the destination cluster.
pub const DESTINATION_ALIAS: &str = "dst";

/// One JVM running three connectors and their clients.
const JVM_OPTS: &[&str] = &["-Xms128m", "-Xmx512m", "-XX:+ExitOnOutOfMemoryError"];
/// Logged by the MM2 driver once its herders are started (connectors start after that).
const STARTED_MARKER: &str = "Kafka MirrorMaker started";
const START_TIMEOUT: Duration = Duration::from_secs(90);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// Bounds each round trip of the offset checks.
const WIRE_TIMEOUT: Duration = Duration::from_secs(5);
const LOG_TAIL_LINES: usize = 60;
/// `timestamp` in a ListOffsets partition asking for the end (high watermark).
const LATEST_TIMESTAMP: i64 = -1;
/// `replica_id` of a consumer (not a follower) in ListOffsets.
const CONSUMER_REPLICA_ID: i32 = -1;
const LIST_OFFSETS_VERSION: i16 = 7;
const FIND_COORDINATOR_VERSION: i16 = 3;
const OFFSET_FETCH_VERSION: i16 = 7;

/// MM2's log: its own classes at INFO (topic and group discovery, task starts) except the
/// per-second scheduler timings, the Connect runtime at WARN, all to stdout (the log file).
const LOG4J_PROPERTIES: &str = "\
# Written by switchyard-testkit for MirrorMaker 2.
status = error
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_OUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d{HH:mm:ss,SSS}] %-5p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.console.ref = console
logger.mirror.name = org.apache.kafka.connect.mirror
logger.mirror.level = INFO
# \"refreshing topics took 82 ms\" and the like, every second.
logger.scheduler.name = org.apache.kafka.connect.mirror.Scheduler
logger.scheduler.level = WARN
";

/// What to replicate and how.
#[derive(Debug, Clone)]
pub struct MirrorOptions {
    /// `src->dst.topics`: comma-separated regexes of topics to replicate.
    pub topics: String,
    /// `src->dst.groups`: comma-separated regexes of consumer groups to checkpoint (MM2 always
    /// leaves out `console-consumer-.*`, `connect-.*` and `__.*` by default).
    pub groups: String,
    /// `sync.group.offsets.enabled`: write translated offsets into the destination's groups (only
    /// while a group has no active member there).
    pub sync_group_offsets: bool,
    /// `offset.lag.max`: how far a replicated partition may run past its last offset sync before
    /// MM2 writes another. With MM2's default of 100, translated group offsets can trail the
    /// source's by up to 100 records while traffic flows (a switched consumer re-reads them); 0
    /// (the default here) queues a sync for every replicated record (MM2 coalesces them per
    /// partition), so translation is exact whenever the group's position has been replicated.
    pub offset_lag_max: u64,
    /// Replication factor of replicated topics and of every internal topic MM2 creates.
    pub replication_factor: i16,
    /// Extra `mm2.properties` entries, written after the defaults (later entries win).
    pub extra_props: Vec<(String, String)>,
}

impl Default for MirrorOptions {
    fn default() -> Self {
        Self {
            topics: ".*".to_owned(),
            groups: ".*".to_owned(),
            sync_group_offsets: true,
            offset_lag_max: 0,
            replication_factor: 1,
            extra_props: Vec::new(),
        }
    }
}

impl MirrorOptions {
    pub fn topics(mut self, regex: impl Into<String>) -> Self {
        self.topics = regex.into();
        self
    }

    pub fn groups(mut self, regex: impl Into<String>) -> Self {
        self.groups = regex.into();
        self
    }

    /// Adds an `mm2.properties` entry, for example `("src->dst.emit.heartbeats.enabled", "false")`.
    pub fn prop(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_props.push((key.into(), value.into()));
        self
    }

    fn properties(&self, source_bootstrap: &str, destination_bootstrap: &str) -> String {
        let flow = format!("{SOURCE_ALIAS}->{DESTINATION_ALIAS}");
        let reverse = format!("{DESTINATION_ALIAS}->{SOURCE_ALIAS}");
        let rf = self.replication_factor.to_string();
        let mut props: Vec<(String, String)> = vec![
            ("clusters".into(), format!("{SOURCE_ALIAS}, {DESTINATION_ALIAS}")),
            (format!("{SOURCE_ALIAS}.bootstrap.servers"), source_bootstrap.into()),
            (format!("{DESTINATION_ALIAS}.bootstrap.servers"), destination_bootstrap.into()),
            (format!("{flow}.enabled"), "true".into()),
            (format!("{flow}.topics"), self.topics.clone()),
            (format!("{flow}.groups"), self.groups.clone()),
            (format!("{reverse}.enabled"), "false".into()),
            // Without this MM2 runs a second herder (dst->src) only to emit heartbeats into the
            // source, with its own internal topics there.
            (format!("{reverse}.emit.heartbeats.enabled"), "false".into()),
            ("replication.policy.class".into(), "org.apache.kafka.connect.mirror.IdentityReplicationPolicy".into()),
            ("tasks.max".into(), "1".into()),
            ("sync.group.offsets.enabled".into(), self.sync_group_offsets.to_string()),
            ("sync.group.offsets.interval.seconds".into(), "1".into()),
            ("emit.checkpoints.enabled".into(), "true".into()),
            ("emit.checkpoints.interval.seconds".into(), "1".into()),
            ("emit.heartbeats.interval.seconds".into(), "1".into()),
            ("refresh.topics.interval.seconds".into(), "2".into()),
            ("refresh.groups.interval.seconds".into(), "2".into()),
            ("offset.lag.max".into(), self.offset_lag_max.to_string()),
            // No authorizer on the test clusters: ACL sync would only log failures.
            ("sync.topic.acls.enabled".into(), "false".into()),
            ("replication.factor".into(), rf.clone()),
            ("checkpoints.topic.replication.factor".into(), rf.clone()),
            ("heartbeats.topic.replication.factor".into(), rf.clone()),
            ("offset-syncs.topic.replication.factor".into(), rf.clone()),
            ("offset.storage.replication.factor".into(), rf.clone()),
            ("config.storage.replication.factor".into(), rf.clone()),
            ("status.storage.replication.factor".into(), rf),
            // Connect's defaults (25 and 5 partitions) only cost time to create and read back.
            ("offset.storage.partitions".into(), "1".into()),
            ("status.storage.partitions".into(), "1".into()),
            // Every Connect plugin on the classpath has a ServiceLoader manifest: without this
            // MM2 scans the whole classpath by reflection, twice (driver and herder), which costs
            // 15-20 s of startup on a 2-core machine.
            ("plugin.discovery".into(), "service_load".into()),
            // Worker settings reach the flow's herder only with the target cluster's prefix.
            (format!("{DESTINATION_ALIAS}.plugin.discovery"), "service_load".into()),
            // Committing source offsets every second also publishes the offset syncs held back
            // by offset.lag.max, so translation catches up within a second of replication.
            (format!("{DESTINATION_ALIAS}.offset.flush.interval.ms"), "1000".into()),
        ];
        props.extend(self.extra_props.iter().cloned());
        let mut text = String::from("# Written by switchyard-testkit: MirrorMaker 2, one flow src->dst.\n");
        for (key, value) in props {
            text.push_str(&format!("{key} = {value}\n"));
        }
        text
    }
}

/// A running MirrorMaker 2 (dedicated mode, one JVM). Dropping it kills the JVM; use
/// [`MirrorMaker::stop`] for a graceful shutdown that commits its last source offsets.
#[derive(Debug)]
pub struct MirrorMaker {
    child: Option<ChildGuard>,
    source: String,
    destination: String,
    config_path: PathBuf,
    log_path: PathBuf,
    started_at: Instant,
    _dir: TempDir,
}

impl MirrorMaker {
    /// Writes `mm2.properties`, starts MM2 and waits (up to 90 s) until it reports its herders
    /// started. Replication begins some seconds later, once the Connect worker has joined its
    /// group and started the connectors: wait for it with [`MirrorMaker::wait_for_topic`] or
    /// [`MirrorMaker::wait_caught_up`].
    pub fn start(source_bootstrap: &str, destination_bootstrap: &str, opts: MirrorOptions) -> Result<Self> {
        let jars = KafkaJars::ensure()?;
        let dir = tempfile::Builder::new().prefix("switchyard-mm2-").tempdir()?;
        let config_path = dir.path().join("mm2.properties");
        let log4j_path = dir.path().join("log4j2.properties");
        let log_path = dir.path().join("mm2.log");
        fs::write(&config_path, opts.properties(source_bootstrap, destination_bootstrap))?;
        fs::write(&log4j_path, LOG4J_PROPERTIES)?;

        let mut cmd = std::process::Command::new("java");
        cmd.args(JVM_OPTS)
            .arg(format!("-Dlog4j2.configurationFile={}", log4j_path.display()))
            .arg("-cp")
            .arg(format!("{}/*", jars.display()))
            .arg("org.apache.kafka.connect.mirror.MirrorMaker")
            .arg(&config_path);
        let started_at = Instant::now();
        let child = ChildGuard::spawn_logged(cmd, &log_path).context("starting MirrorMaker 2")?;
        let mut mm = Self {
            child: Some(child),
            source: source_bootstrap.to_owned(),
            destination: destination_bootstrap.to_owned(),
            config_path,
            log_path,
            started_at,
            _dir: dir,
        };
        mm.wait_until(START_TIMEOUT, "MirrorMaker to start", |mm| Ok(mm.log().contains(STARTED_MARKER).then_some(())))?;
        Ok(mm)
    }

    pub fn source_bootstrap(&self) -> &str {
        &self.source
    }

    pub fn destination_bootstrap(&self) -> &str {
        &self.destination
    }

    /// When the JVM was spawned (for measuring replication delays).
    pub fn started_at(&self) -> Instant {
        self.started_at
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Everything MM2 has logged (its own classes at INFO, the rest at WARN).
    pub fn log(&self) -> String {
        process::read_lossy(&self.log_path)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        process::tail(&self.log(), lines)
    }

    /// Waits until the destination lists `topic` with `partitions` partitions, all with a leader.
    pub fn wait_for_topic(&mut self, topic: &str, partitions: usize, timeout: Duration) -> Result<()> {
        let destination = bootstrap_addrs(&self.destination)?;
        self.wait_until(timeout, &format!("{topic} to appear on the destination with {partitions} partitions"), |_| {
            let metadata = match any_metadata(&destination) {
                Ok(metadata) => metadata,
                Err(_) => return Ok(None),
            };
            Ok(topic_partitions(&metadata, topic)
                .is_some_and(|leaders| leaders.len() == partitions && leaders.values().all(|l| *l >= 0))
                .then_some(()))
        })
    }

    /// Waits until every partition of `topic` (which must have `partitions` partitions on both
    /// sides) ends at the same offset on the destination as on the source, and returns those end
    /// offsets. Under the identity policy a fresh destination mirrors offsets one for one, so this
    /// is "everything written to the source so far has been replicated".
    ///
    /// Fails at once if the destination ever ends past the source: MM2 then replicated records
    /// twice (it is at-least-once, and a task restart re-sends from its last committed source
    /// offset), or someone wrote to the destination directly, and offsets no longer line up.
    /// Transaction markers on the source are not replicated, so topics written transactionally
    /// never match.
    pub fn wait_caught_up(&mut self, topic: &str, partitions: usize, timeout: Duration) -> Result<Vec<(i32, i64)>> {
        let (source, destination) = (self.source.clone(), self.destination.clone());
        let mut last = String::from("no offsets read yet");
        let result = self.wait_until(timeout, &format!("{topic} to catch up on the destination"), |_| {
            // Destination first: without duplicates it can then never be ahead of the source.
            let (dst, src) = match end_offsets(&destination, topic).and_then(|d| Ok((d, end_offsets(&source, topic)?))) {
                Ok(offsets) => offsets,
                Err(e) => {
                    last = format!("{e:#}");
                    return Ok(None);
                }
            };
            last = format!("source {src:?}, destination {dst:?}");
            if src.len() != partitions || dst.len() != partitions {
                return Ok(None);
            }
            if let Some(((p, d), (_, s))) = dst.iter().zip(&src).find(|((_, d), (_, s))| d > s) {
                bail!("destination partition {p} ends at {d}, past the source's {s}: duplicates or direct writes ({last})");
            }
            Ok((dst == src).then_some(src))
        });
        result.with_context(|| format!("last seen: {last}"))
    }

    /// Waits until `group`'s committed offsets for `topic` on the destination equal those on the
    /// source (for every partition the source group has committed), and returns them.
    ///
    /// MM2 translates offsets through its offset syncs and writes them only while the group has no
    /// active member on the destination, and never moves a destination group backwards; with the
    /// identity policy and no duplicates, translated offsets equal the source's once the records
    /// up to them are replicated and synced.
    pub fn wait_group_synced(&mut self, group: &str, topic: &str, timeout: Duration) -> Result<Vec<(i32, i64)>> {
        let (source, destination) = (self.source.clone(), self.destination.clone());
        let mut last = String::from("no offsets read yet");
        let result = self.wait_until(timeout, &format!("group {group} to be synced to the destination"), |_| {
            let offsets = committed_offsets(&source, group, topic)
                .and_then(|src| Ok((src, committed_offsets(&destination, group, topic)?)));
            let (src, dst) = match offsets {
                Ok(offsets) => offsets,
                Err(e) => {
                    last = format!("{e:#}");
                    return Ok(None);
                }
            };
            last = format!("source {src:?}, destination {dst:?}");
            Ok((!src.is_empty() && src == dst).then_some(src))
        });
        result.with_context(|| format!("last seen: {last}"))
    }

    /// Stops MM2 with SIGTERM (it stops its connectors and commits their offsets), waiting up
    /// to 60 s; a JVM that does not exit in time is killed and reported as an error.
    pub fn stop(mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        if child.terminate(STOP_TIMEOUT).is_none() {
            child.kill();
            bail!("MirrorMaker ignored SIGTERM for {STOP_TIMEOUT:?}; killed it:\n{}", self.log_tail(LOG_TAIL_LINES));
        }
        Ok(())
    }

    /// Polls `check` until it yields, failing early (with the log tail) if MM2 exits.
    fn wait_until<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&Self) -> Result<Option<T>>,
    ) -> Result<T> {
        let result = try_poll_until(timeout, || {
            let child = self.child.as_mut().context("MirrorMaker was stopped")?;
            if let Some(status) = child.try_status() {
                bail!("MirrorMaker exited ({status})");
            }
            check(self)
        });
        result.map_err(|e| {
            anyhow!(
                "waiting for {what}: {e:#}\n--- MirrorMaker log ({}) ---\n{}",
                self.log_path.display(),
                self.log_tail(LOG_TAIL_LINES)
            )
        })
    }
}

impl Drop for MirrorMaker {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            child.kill();
        }
    }
}

/// The end offset (high watermark) of every partition of `topic`, sorted by partition, asked of
/// each partition's leader with ListOffsets. `bootstrap` is a `host:port[,host:port…]` list.
pub fn end_offsets(bootstrap: &str, topic: &str) -> Result<Vec<(i32, i64)>> {
    let metadata = any_metadata(&bootstrap_addrs(bootstrap)?)?;
    let leaders = topic_partitions(&metadata, topic).with_context(|| format!("no topic {topic} at {bootstrap}"))?;
    ensure!(!leaders.is_empty(), "topic {topic} has no partitions at {bootstrap}");
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (&partition, &leader) in &leaders {
        ensure!(leader >= 0, "partition {topic}-{partition} has no leader");
        by_leader.entry(leader).or_default().push(partition);
    }
    let mut offsets = Vec::with_capacity(leaders.len());
    for (leader, partitions) in by_leader {
        let addr = broker_addr(&metadata, leader)?;
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(CONSUMER_REPLICA_ID))
            .with_isolation_level(0)
            .with_topics(vec![ListOffsetsTopic::default().with_name(topic_name(topic)).with_partitions(
                partitions
                    .iter()
                    .map(|&p| ListOffsetsPartition::default().with_partition_index(p).with_timestamp(LATEST_TIMESTAMP))
                    .collect(),
            )]);
        let response = KafkaWire::connect(addr, WIRE_TIMEOUT)?.send(&request, LIST_OFFSETS_VERSION)?;
        for t in response.topics {
            for p in t.partitions {
                check_error(p.error_code, &format!("ListOffsets for {topic}-{}", p.partition_index))?;
                offsets.push((p.partition_index, p.offset));
            }
        }
    }
    offsets.sort_unstable();
    ensure!(offsets.len() == leaders.len(), "ListOffsets answered {} of {} partitions", offsets.len(), leaders.len());
    Ok(offsets)
}

/// `group`'s committed offsets for `topic`, sorted by partition, from the group coordinator
/// (FindCoordinator, then OffsetFetch). Partitions without a committed offset are left out, so a
/// group unknown to the cluster gives an empty list.
pub fn committed_offsets(bootstrap: &str, group: &str, topic: &str) -> Result<Vec<(i32, i64)>> {
    let addrs = bootstrap_addrs(bootstrap)?;
    let metadata = any_metadata(&addrs)?;
    let partitions: Vec<i32> = match topic_partitions(&metadata, topic) {
        Some(leaders) => leaders.keys().copied().collect(),
        None => return Ok(Vec::new()),
    };
    let find = FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_owned())).with_key_type(0);
    let coordinator = KafkaWire::connect(addrs[0], WIRE_TIMEOUT)?.send(&find, FIND_COORDINATOR_VERSION)?;
    check_error(coordinator.error_code, &format!("FindCoordinator for group {group}"))?;
    let addr = resolve(&coordinator.host, coordinator.port)?;
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partition_indexes(partitions)]));
    let response = KafkaWire::connect(addr, WIRE_TIMEOUT)?.send(&request, OFFSET_FETCH_VERSION)?;
    check_error(response.error_code, &format!("OffsetFetch for group {group}"))?;
    let mut offsets = Vec::new();
    for t in response.topics {
        for p in t.partitions {
            check_error(p.error_code, &format!("OffsetFetch for {group} on {topic}-{}", p.partition_index))?;
            if p.committed_offset >= 0 {
                offsets.push((p.partition_index, p.committed_offset));
            }
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

/// Splits and resolves a `host:port[,host:port…]` bootstrap list.
fn bootstrap_addrs(bootstrap: &str) -> Result<Vec<SocketAddr>> {
    let addrs = bootstrap
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.to_socket_addrs().with_context(|| format!("resolving {s}"))?.next().context("no address"))
        .collect::<Result<Vec<_>>>()?;
    ensure!(!addrs.is_empty(), "empty bootstrap list {bootstrap:?}");
    Ok(addrs)
}

/// Metadata from the first bootstrap address that answers.
fn any_metadata(addrs: &[SocketAddr]) -> Result<MetadataResponse> {
    let mut errors = Vec::new();
    for addr in addrs {
        match fetch_metadata(*addr, WIRE_TIMEOUT) {
            Ok(metadata) => return Ok(metadata),
            Err(e) => errors.push(format!("{addr}: {e:#}")),
        }
    }
    bail!("no broker answered Metadata: {}", errors.join("; "))
}

/// `partition -> leader id` for `topic`, or `None` if the topic is not (yet) known.
fn topic_partitions(metadata: &MetadataResponse, topic: &str) -> Option<BTreeMap<i32, i32>> {
    let t = metadata.topics.iter().find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))?;
    (t.error_code == 0).then(|| t.partitions.iter().map(|p| (p.partition_index, p.leader_id.0)).collect())
}

fn broker_addr(metadata: &MetadataResponse, node_id: i32) -> Result<SocketAddr> {
    let broker = metadata
        .brokers
        .iter()
        .find(|b| b.node_id.0 == node_id)
        .with_context(|| format!("leader {node_id} is not in metadata"))?;
    resolve(&broker.host, broker.port)
}

fn resolve(host: &str, port: i32) -> Result<SocketAddr> {
    let port = u16::try_from(port).with_context(|| format!("bad port {port}"))?;
    (host, port).to_socket_addrs()?.next().with_context(|| format!("cannot resolve {host}"))
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

fn check_error(code: i16, what: &str) -> Result<()> {
    ensure!(code == 0, "{what}: Kafka error code {code}");
    Ok(())
}
