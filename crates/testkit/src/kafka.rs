//! Real Apache Kafka 4.1.1 clusters (KRaft) on loopback, run from Maven Central jars.
//!
//! The gateway's tests must run against genuine brokers, not mocks: behaviour such as fencing,
//! leader movement and coordinator routing only shows up in the real thing. No Kafka tarball or
//! image is available here, but Maven Central is, so [`KafkaJars`] resolves the broker, its tools
//! and MirrorMaker 2 once into a cache directory, and [`KafkaCluster`] runs combined
//! broker+controller JVMs from it, each with its own ports and temporary log dir.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use tempfile::TempDir;

use crate::pki::{Identity, TestPki};
use crate::poll::{poll_until, try_poll_until};
use crate::process::{self, CapturedChild, ChildGuard};
use crate::wire::fetch_metadata;

pub const KAFKA_VERSION: &str = "4.1.1";

/// Short-lived tool JVMs. Every JVM needs `-Xmx` (the default is a quarter of RAM); C1-only JIT
/// and the serial GC halve startup on a busy 2-core machine (about 1.2 s instead of 2-4 s).
pub(crate) const TOOL_JVM_OPTS: &[&str] = &["-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"];
/// Tools that measure throughput keep the full JIT.
pub(crate) const PERF_JVM_OPTS: &[&str] = &["-Xmx256m"];
const BROKER_JVM_OPTS: &[&str] = &["-Xms256m", "-Xmx768m", "-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError"];

const MAVEN_TIMEOUT: Duration = Duration::from_secs(20 * 60);
const STORAGE_TOOL_TIMEOUT: Duration = Duration::from_secs(60);
const START_TIMEOUT: Duration = Duration::from_secs(90);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);
const LOG_TAIL_LINES: usize = 40;

/// Logged by `KafkaRaftServer` once a node's broker and controller are both up.
const STARTED_MARKER: &str = "Kafka Server started";
pub(crate) const COMPLETE_MARKER: &str = ".complete";
const LOG4J_CONFIG: &str = "log4j2.properties";
/// Quiet logging for brokers and tools alike. It goes to stderr so that tool stdout carries only
/// data (consumed records, perf summaries).
const LOG4J_PROPERTIES: &str = "\
# Written by switchyard-testkit: warnings only, plus the lines readiness checks look for.
status = error
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d{HH:mm:ss,SSS}] %-5p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.console.ref = console
logger.kafka.name = kafka.server.KafkaRaftServer
logger.kafka.level = INFO
logger.broker.name = kafka.server.BrokerServer
logger.broker.level = INFO
";

/// The runtime jars of Kafka's broker, tools and MirrorMaker 2, plus a log4j2 binding.
pub struct KafkaJars;

impl KafkaJars {
    /// The jar directory, downloading it with Maven on first use.
    ///
    /// Lives in `$SWITCHYARD_KAFKA_JARS`, else `$XDG_CACHE_HOME` (or `~/.cache`) +
    /// `/switchyard/kafka-4.1.1`. Downloads go to a staging directory that is renamed into place
    /// when complete, so concurrent test processes never see a partial directory.
    pub fn ensure() -> Result<PathBuf> {
        static RESOLVED: Mutex<Option<PathBuf>> = Mutex::new(None);
        let mut resolved = RESOLVED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(dir) = resolved.as_ref() {
            return Ok(dir.clone());
        }
        let dir = cache_dir()?;
        if !dir.join(COMPLETE_MARKER).exists() {
            let pom = Path::new(env!("CARGO_MANIFEST_DIR")).join("kafka/pom.xml");
            let log4j = |staging: &Path| Ok(fs::write(staging.join(LOG4J_CONFIG), LOG4J_PROPERTIES)?);
            resolve_jars_into(&dir, &pom, &[], log4j).context("downloading the Kafka jars with Maven")?;
        }
        write_if_changed(&dir.join(LOG4J_CONFIG), LOG4J_PROPERTIES)?;
        *resolved = Some(dir.clone());
        Ok(dir)
    }

    /// `<dir>/*`, the classpath form the JVM expands itself (pass it as one argument).
    pub fn classpath() -> Result<String> {
        Ok(format!("{}/*", Self::ensure()?.display()))
    }
}

/// `java <jvm_opts> -Dlog4j2.configurationFile=… -cp '<jars>/*'`, ready for a main class.
pub fn java_command(jvm_opts: &[&str]) -> Result<Command> {
    let log4j = KafkaJars::ensure()?.join(LOG4J_CONFIG);
    let mut cmd = Command::new("java");
    cmd.args(jvm_opts)
        .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
        .arg("-cp")
        .arg(KafkaJars::classpath()?);
    Ok(cmd)
}

fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SWITCHYARD_KAFKA_JARS") {
        return Ok(PathBuf::from(dir));
    }
    Ok(cache_root()?.join(format!("kafka-{KAFKA_VERSION}")))
}

/// `$XDG_CACHE_HOME/switchyard` (or `~/.cache/switchyard`): where downloads and builds that
/// outlive a test run are kept.
pub(crate) fn cache_root() -> Result<PathBuf> {
    let cache = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(std::env::var_os("HOME").context("neither XDG_CACHE_HOME nor HOME is set")?).join(".cache")
        }
    };
    Ok(cache.join("switchyard"))
}

/// Copies the runtime dependencies of `pom` (with `-Dkey=value` for each of `defines`) into
/// `dir` with Maven, through a staging directory that `prepare` may add files to and that is
/// renamed into place with a [`COMPLETE_MARKER`] when complete, so concurrent test processes
/// never see a partial directory.
pub(crate) fn resolve_jars_into(
    dir: &Path,
    pom: &Path,
    defines: &[(&str, &str)],
    prepare: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let parent = dir.parent().context("jar directory has no parent")?;
    fs::create_dir_all(parent)?;
    let staging = tempfile::Builder::new().prefix(".kafka-jars-").tempdir_in(parent)?;
    let mut mvn = Command::new("mvn");
    mvn.arg("-B")
        .arg("-q")
        .arg("-f")
        .arg(pom)
        .arg("org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies")
        .arg("-DincludeScope=runtime")
        .arg(format!("-DoutputDirectory={}", staging.path().display()))
        .args(defines.iter().map(|(key, value)| format!("-D{key}={value}")));
    process::run(mvn, None, MAVEN_TIMEOUT)?.ensure_success("mvn copy-dependencies")?;
    prepare(staging.path())?;
    fs::write(staging.path().join(COMPLETE_MARKER), "")?;
    match fs::rename(staging.path(), dir) {
        Ok(()) => {
            // Renamed away: nothing left for TempDir to clean up.
            let _ = staging.keep();
            Ok(())
        }
        // Another process finished first; our staging copy is dropped.
        Err(_) if dir.join(COMPLETE_MARKER).exists() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("{} exists but is incomplete: delete it", dir.display())),
    }
}

fn write_if_changed(path: &Path, contents: &str) -> Result<()> {
    if process::read_lossy(path) != contents {
        let staging = path.with_extension(format!("tmp{}", std::process::id()));
        fs::write(&staging, contents)?;
        fs::rename(&staging, path)?;
    }
    Ok(())
}

/// The shape of a cluster to start.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// Number of combined broker+controller nodes (1 or 3 typically).
    pub brokers: usize,
    /// Node ids are `first_node_id..first_node_id + brokers`.
    pub first_node_id: i32,
    /// `broker.rack` per node, in node order.
    pub racks: Option<Vec<String>>,
    /// Extra `server.properties` entries, applied to every node after the defaults.
    pub extra_props: Vec<(String, String)>,
    /// Client listener port per node, in node order; free ports when `None`.
    pub listener_ports: Option<Vec<u16>>,
    /// TLS on the client listener (`SSL` or, with [`Self::sasl`], `SASL_SSL`).
    pub tls: Option<ListenerTls>,
    /// SASL on the client listener (`SASL_PLAINTEXT` or, with [`Self::tls`], `SASL_SSL`).
    pub sasl: Option<ListenerSasl>,
    /// Feature levels the storage is formatted with (`name=level`, e.g. `transaction.version=1`),
    /// in place of the release's defaults.
    pub features: Vec<String>,
}

/// TLS on a cluster's client listener.
#[derive(Debug, Clone)]
pub struct ListenerTls {
    /// The brokers' certificate and key (one for every node: give it every name they are
    /// reached by, e.g. `localhost` and `127.0.0.1`); its PKCS#12 file is the keystore.
    pub keystore: Identity,
    /// A Java truststore (PKCS#12, password [`TestPki::PASSWORD`]) of the CAs whose client
    /// certificates are accepted; with it, clients must present one (`ssl.client.auth=required`).
    pub client_truststore: Option<PathBuf>,
}

/// SASL on a cluster's client listener: the mechanisms enabled and the users that exist.
#[derive(Debug, Clone)]
pub struct ListenerSasl {
    /// Kafka's names: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, `OAUTHBEARER` (unsecured JWS
    /// tokens, validated by Kafka's default unsecured validator: any user the token's `sub`
    /// names; for tests only).
    pub mechanisms: Vec<String>,
    /// `(user, password)`: PLAIN users in the listener's JAAS config, and SCRAM credentials (for
    /// every enabled SCRAM mechanism) written into the metadata log when storage is formatted.
    pub users: Vec<(String, String)>,
}

impl ListenerSasl {
    /// Every mechanism the gateway supports, with these users.
    pub fn all_mechanisms(users: &[(&str, &str)]) -> Self {
        Self {
            mechanisms: ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].map(str::to_owned).to_vec(),
            users: users.iter().map(|(u, p)| (u.to_string(), p.to_string())).collect(),
        }
    }

    /// Adds `OAUTHBEARER` with unsecured JWS tokens (see [`Self::mechanisms`]).
    pub fn with_oauthbearer(mut self) -> Self {
        self.mechanisms.push("OAUTHBEARER".to_owned());
        self
    }

    fn scram_mechanisms(&self) -> impl Iterator<Item = &str> {
        self.mechanisms.iter().map(String::as_str).filter(|m| m.starts_with("SCRAM-"))
    }
}

impl ClusterSpec {
    pub fn single() -> Self {
        Self::with_brokers(1)
    }

    pub fn three() -> Self {
        Self::with_brokers(3)
    }

    pub fn with_brokers(brokers: usize) -> Self {
        Self {
            brokers,
            first_node_id: 1,
            racks: None,
            extra_props: Vec::new(),
            listener_ports: None,
            tls: None,
            sasl: None,
            features: Vec::new(),
        }
    }

    /// TLS on the client listener.
    pub fn tls(mut self, tls: ListenerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// SASL on the client listener.
    pub fn sasl(mut self, sasl: ListenerSasl) -> Self {
        self.sasl = Some(sasl);
        self
    }

    /// Kafka's name of the client listener's security protocol.
    pub fn protocol(&self) -> &'static str {
        match (self.tls.is_some(), self.sasl.is_some()) {
            (false, false) => "PLAINTEXT",
            (true, false) => "SSL",
            (false, true) => "SASL_PLAINTEXT",
            (true, true) => "SASL_SSL",
        }
    }

    fn secured(&self) -> bool {
        self.tls.is_some() || self.sasl.is_some()
    }

    /// Formats the cluster with feature `name` at `level` (KIP-1022), e.g. an older
    /// `transaction.version` than the release finalizes by default.
    pub fn feature(mut self, name: &str, level: u16) -> Self {
        self.features.push(format!("{name}={level}"));
        self
    }

    /// Adds a `server.properties` entry for every node.
    pub fn prop(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_props.push((key.into(), value.into()));
        self
    }
}

impl Default for ClusterSpec {
    fn default() -> Self {
        Self::single()
    }
}

/// A running cluster. Dropping it kills every node (the data is thrown away, so a graceful
/// shutdown would only cost time) and deletes the temporary directories.
#[derive(Debug)]
pub struct KafkaCluster {
    cluster_id: String,
    protocol: &'static str,
    nodes: Vec<Node>,
    _dir: TempDir,
}

#[derive(Debug)]
struct Node {
    id: i32,
    listener: SocketAddr,
    /// A plaintext listener for the brokers themselves and the kit's readiness checks: the client
    /// listener unless that one is secured.
    internal: SocketAddr,
    /// The KRaft controller listener (`CONTROLLER://`), which clients never use directly.
    controller: SocketAddr,
    dir: PathBuf,
    process: Option<ChildGuard>,
    /// Length of the log file when the current process started: readiness looks past it.
    log_offset: usize,
}

impl Node {
    fn config_path(&self) -> PathBuf {
        self.dir.join("server.properties")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("node.log")
    }

    fn log(&self) -> String {
        process::read_lossy(&self.log_path())
    }

    /// What the current process has logged (the file also holds earlier runs).
    fn current_log(&self) -> String {
        let bytes = fs::read(self.log_path()).unwrap_or_default();
        String::from_utf8_lossy(bytes.get(self.log_offset..).unwrap_or_default()).into_owned()
    }

    fn spawn(&mut self) -> Result<()> {
        ensure!(self.process.is_none(), "node {} is already running", self.id);
        let mut cmd = java_command(BROKER_JVM_OPTS)?;
        cmd.arg("kafka.Kafka").arg(self.config_path());
        self.log_offset = fs::metadata(self.log_path()).map_or(0, |m| m.len() as usize);
        self.process = Some(ChildGuard::spawn_logged(cmd, &self.log_path())?);
        Ok(())
    }

    /// Whether the current process has logged [`STARTED_MARKER`]; an error if it has exited.
    fn started(&mut self) -> Result<bool> {
        let process = self.process.as_mut().with_context(|| format!("node {} is not running", self.id))?;
        if let Some(status) = process.try_status() {
            bail!("node {} exited during startup ({status})", self.id);
        }
        Ok(self.current_log().contains(STARTED_MARKER))
    }

    fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(ChildGuard::is_running)
    }

    /// Whether this node's metadata lists every id in `expected`.
    fn sees_brokers(&self, expected: &[i32]) -> bool {
        fetch_metadata(self.internal, METADATA_TIMEOUT)
            .is_ok_and(|metadata| expected.iter().all(|id| metadata.brokers.iter().any(|b| b.node_id.0 == *id)))
    }
}

impl KafkaCluster {
    /// Formats and starts every node, and waits (up to 90 s) until all are up and visible in
    /// metadata.
    pub fn start(spec: ClusterSpec) -> Result<Self> {
        ensure!(spec.brokers > 0, "a cluster needs at least one broker");
        if let Some(racks) = &spec.racks {
            ensure!(racks.len() == spec.brokers, "{} racks for {} brokers", racks.len(), spec.brokers);
        }
        let dir = tempfile::Builder::new().prefix("switchyard-kafka-").tempdir()?;
        let nodes = configure_nodes(&spec, dir.path())?;
        let cluster_id = random_cluster_id()?;
        format_storage(&cluster_id, &nodes, &spec)?;
        let mut cluster = Self { cluster_id, protocol: spec.protocol(), nodes, _dir: dir };
        for node in &mut cluster.nodes {
            node.spawn()?;
        }
        let ids: Vec<i32> = cluster.nodes.iter().map(|n| n.id).collect();
        cluster.wait_until_ready(&ids)?;
        Ok(cluster)
    }

    /// `127.0.0.1:p1,127.0.0.1:p2,…` for every node, running or not.
    pub fn bootstrap(&self) -> String {
        self.nodes.iter().map(|n| n.listener.to_string()).collect::<Vec<_>>().join(",")
    }

    /// Kafka's name of the client listener's security protocol (`PLAINTEXT`, `SSL`,
    /// `SASL_PLAINTEXT`, `SASL_SSL`): what [`Self::bootstrap`] speaks.
    pub fn protocol(&self) -> &'static str {
        self.protocol
    }

    /// Plaintext `127.0.0.1:p1,…` for every node, whatever the client listener's security: for
    /// tools that set a test up (topics, offsets). The same as [`Self::bootstrap`] on a plaintext
    /// cluster. Its metadata names these plaintext addresses.
    pub fn internal_bootstrap(&self) -> String {
        self.nodes.iter().map(|n| n.internal.to_string()).collect::<Vec<_>>().join(",")
    }

    /// The first node's client listener.
    pub fn first_bootstrap(&self) -> SocketAddr {
        self.nodes[0].listener
    }

    /// `(node id, client listener)` for every node, running or not.
    pub fn brokers(&self) -> Vec<(i32, SocketAddr)> {
        self.nodes.iter().map(|n| (n.id, n.listener)).collect()
    }

    /// `(node id, controller listener)` for every node: the KRaft quorum's addresses, which
    /// appear in `controller.quorum.voters` and in DescribeQuorum answers.
    pub fn controllers(&self) -> Vec<(i32, SocketAddr)> {
        self.nodes.iter().map(|n| (n.id, n.controller)).collect()
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// Stops a node gracefully (SIGTERM, controlled shutdown), waiting up to 60 s. A node that
    /// does not exit in time is killed and reported as an error.
    pub fn stop_broker(&mut self, node_id: i32) -> Result<()> {
        let node = self.node_mut(node_id)?;
        let mut process = node.process.take().with_context(|| format!("node {node_id} is not running"))?;
        if process.terminate(STOP_TIMEOUT).is_none() {
            process.kill();
            bail!(
                "node {node_id} ignored SIGTERM for {STOP_TIMEOUT:?}; killed it:\n{}",
                process.log_tail(LOG_TAIL_LINES)
            );
        }
        Ok(())
    }

    /// Kills a node with SIGKILL (a crash, without controlled shutdown).
    pub fn kill_broker(&mut self, node_id: i32) -> Result<()> {
        let node = self.node_mut(node_id)?;
        node.process.take().with_context(|| format!("node {node_id} is not running"))?.kill();
        Ok(())
    }

    /// Restarts a stopped node with its old config and data, and waits until it is up and
    /// listed in metadata again.
    pub fn start_broker(&mut self, node_id: i32) -> Result<()> {
        self.node_mut(node_id)?.spawn()?;
        self.wait_until_ready(&[node_id])
    }

    /// Everything a node has logged, across restarts.
    pub fn node_log(&self, node_id: i32) -> String {
        self.nodes.iter().find(|n| n.id == node_id).map(Node::log).unwrap_or_default()
    }

    /// Waits until every running node reports `topic` with `partitions` partitions, all with a
    /// leader: after that, clients anywhere in the cluster can use it without retries.
    pub fn wait_for_topic(&self, topic: &str, partitions: usize) -> Result<()> {
        let addrs: Vec<SocketAddr> = self.nodes.iter().filter(|n| n.process.is_some()).map(|n| n.internal).collect();
        let ready = |addr: &SocketAddr| {
            fetch_metadata(*addr, METADATA_TIMEOUT).is_ok_and(|metadata| {
                metadata.topics.iter().any(|t| {
                    t.name.as_ref().is_some_and(|name| name.0.as_str() == topic)
                        && t.partitions.len() == partitions
                        && t.partitions.iter().all(|p| p.leader_id.0 >= 0)
                })
            })
        };
        poll_until(START_TIMEOUT, || addrs.iter().all(ready).then_some(()))
            .with_context(|| format!("topic {topic} never got {partitions} partitions with leaders"))
    }

    fn node_mut(&mut self, node_id: i32) -> Result<&mut Node> {
        self.nodes.iter_mut().find(|n| n.id == node_id).ok_or_else(|| anyhow!("no node {node_id}"))
    }

    /// Waits until each of `ids` has logged its start and lists every running node in metadata.
    fn wait_until_ready(&mut self, ids: &[i32]) -> Result<()> {
        let result = try_poll_until(START_TIMEOUT, || {
            let running: Vec<i32> = self.nodes.iter_mut().filter_map(|n| n.is_running().then_some(n.id)).collect();
            for node in self.nodes.iter_mut().filter(|n| ids.contains(&n.id)) {
                if !node.started()? || !node.sees_brokers(&running) {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        });
        result.map_err(|e| anyhow!("Kafka nodes {ids:?} did not become ready: {e:#}\n{}", self.log_tails(ids)))
    }

    fn log_tails(&self, ids: &[i32]) -> String {
        self.nodes
            .iter()
            .filter(|n| ids.contains(&n.id))
            .map(|n| {
                format!(
                    "--- node {} log ({}) ---\n{}",
                    n.id,
                    n.log_path().display(),
                    process::tail(&n.log(), LOG_TAIL_LINES)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(process) = node.process.as_mut() {
                process.kill();
            }
        }
    }
}

/// Picks ports (listeners first, then controllers, in one free block) and writes each node's
/// directory and `server.properties`.
fn configure_nodes(spec: &ClusterSpec, root: &Path) -> Result<Vec<Node>> {
    let count = spec.brokers;
    let listeners_per_node = if spec.secured() { 3 } else { 2 };
    let base = crate::ports::free_port_block(listeners_per_node * u16::try_from(count)?);
    let listener_port = |index: usize| match &spec.listener_ports {
        Some(ports) => ports[index],
        None => base + index as u16,
    };
    let controller_port = |index: usize| base + (count + index) as u16;
    let internal_port = |index: usize| match spec.secured() {
        true => base + (2 * count + index) as u16,
        false => listener_port(index),
    };
    let ids: Vec<i32> = (spec.first_node_id..).take(count).collect();
    let voters = ids
        .iter()
        .enumerate()
        .map(|(index, id)| format!("{id}@127.0.0.1:{}", controller_port(index)))
        .collect::<Vec<_>>()
        .join(",");
    ids.iter()
        .enumerate()
        .map(|(index, &id)| {
            let node = Node {
                id,
                listener: SocketAddr::from((Ipv4Addr::LOCALHOST, listener_port(index))),
                internal: SocketAddr::from((Ipv4Addr::LOCALHOST, internal_port(index))),
                controller: SocketAddr::from((Ipv4Addr::LOCALHOST, controller_port(index))),
                dir: root.join(format!("node-{id}")),
                process: None,
                log_offset: 0,
            };
            fs::create_dir_all(node.dir.join("data"))?;
            let rack = spec.racks.as_ref().map(|racks| racks[index].as_str());
            fs::write(node.config_path(), server_properties(spec, &node, controller_port(index), &voters, rack))?;
            Ok(node)
        })
        .collect()
}

fn server_properties(
    spec: &ClusterSpec,
    node: &Node,
    controller_port: u16,
    voters: &str,
    rack: Option<&str>,
) -> String {
    let replication = spec.brokers.min(3).to_string();
    let mut props: Vec<(String, String)> = [
        ("process.roles", "broker,controller".to_owned()),
        ("node.id", node.id.to_string()),
        ("controller.quorum.voters", voters.to_owned()),
        ("controller.listener.names", "CONTROLLER".to_owned()),
        ("log.dirs", node.dir.join("data").display().to_string()),
        ("offsets.topic.replication.factor", replication.clone()),
        ("transaction.state.log.replication.factor", replication.clone()),
        ("share.coordinator.state.topic.replication.factor", replication),
        ("min.insync.replicas", "1".to_owned()),
        ("transaction.state.log.min.isr", "1".to_owned()),
        ("share.coordinator.state.topic.min.isr", "1".to_owned()),
        ("group.initial.rebalance.delay.ms", "0".to_owned()),
        ("num.partitions", "1".to_owned()),
        ("auto.create.topics.enable", "true".to_owned()),
        ("num.network.threads", "2".to_owned()),
        ("num.io.threads", "4".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    props.extend(listener_properties(spec, node, controller_port));
    if let Some(rack) = rack {
        props.push(("broker.rack".to_owned(), rack.to_owned()));
    }
    props.extend(spec.extra_props.iter().cloned());
    props.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

/// The listeners: `PLAINTEXT` (clients and brokers) and `CONTROLLER`; or, when the client
/// listener is secured, `CLIENT` with its protocol, and `INTERNAL` (plaintext) for the brokers.
fn listener_properties(spec: &ClusterSpec, node: &Node, controller_port: u16) -> Vec<(String, String)> {
    let port = node.listener.port();
    if !spec.secured() {
        return vec![
            ("listeners".into(), format!("PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}")),
            ("advertised.listeners".into(), format!("PLAINTEXT://127.0.0.1:{port}")),
            ("inter.broker.listener.name".into(), "PLAINTEXT".into()),
            ("listener.security.protocol.map".into(), "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT".into()),
        ];
    }
    let internal = node.internal.port();
    let protocol = spec.protocol();
    let mut props: Vec<(String, String)> = vec![
        (
            "listeners".into(),
            format!(
                "CLIENT://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal},CONTROLLER://127.0.0.1:{controller_port}"
            ),
        ),
        ("advertised.listeners".into(), format!("CLIENT://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal}")),
        ("inter.broker.listener.name".into(), "INTERNAL".into()),
        ("listener.security.protocol.map".into(), format!("CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,CLIENT:{protocol}")),
    ];
    let prefix = "listener.name.client.";
    if let Some(tls) = &spec.tls {
        let password = TestPki::PASSWORD.to_owned();
        props.extend([
            (format!("{prefix}ssl.keystore.type"), "PKCS12".to_owned()),
            (format!("{prefix}ssl.keystore.location"), tls.keystore.pkcs12.display().to_string()),
            (format!("{prefix}ssl.keystore.password"), password.clone()),
        ]);
        if let Some(truststore) = &tls.client_truststore {
            props.extend([
                (format!("{prefix}ssl.truststore.type"), "PKCS12".to_owned()),
                (format!("{prefix}ssl.truststore.location"), truststore.display().to_string()),
                (format!("{prefix}ssl.truststore.password"), password),
                (format!("{prefix}ssl.client.auth"), "required".to_owned()),
            ]);
        }
    }
    if let Some(sasl) = &spec.sasl {
        props.push(("sasl.enabled.mechanisms".to_owned(), sasl.mechanisms.join(",")));
        for mechanism in &sasl.mechanisms {
            let module = match mechanism.as_str() {
                "PLAIN" => {
                    let users: String = sasl.users.iter().map(|(u, p)| format!(" user_{u}=\"{p}\"")).collect();
                    format!("org.apache.kafka.common.security.plain.PlainLoginModule required{users};")
                }
                // The broker's own (unused) login; clients' unsecured tokens are validated by
                // Kafka's default OAUTHBEARER server callback handler.
                "OAUTHBEARER" => "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required \
                                  unsecuredLoginStringClaim_sub=\"broker\";"
                    .to_owned(),
                _ => "org.apache.kafka.common.security.scram.ScramLoginModule required;".to_owned(),
            };
            props.push((format!("{prefix}{}.sasl.jaas.config", mechanism.to_ascii_lowercase()), module));
        }
    }
    props
}

fn random_cluster_id() -> Result<String> {
    let mut cmd = java_command(TOOL_JVM_OPTS)?;
    cmd.args(["kafka.tools.StorageTool", "random-uuid"]);
    let output = process::run(cmd, None, STORAGE_TOOL_TIMEOUT)?.ensure_success("StorageTool random-uuid")?;
    output.stdout_lines().pop().context("StorageTool random-uuid printed nothing")
}

/// Formats every node's log dir with the same cluster id, all nodes at once, with the SCRAM
/// credentials of `spec`'s SASL users in the initial metadata (`--add-scram`) and its feature
/// levels (`--feature`).
fn format_storage(cluster_id: &str, nodes: &[Node], spec: &ClusterSpec) -> Result<()> {
    let scram: Vec<String> = spec
        .sasl
        .iter()
        .flat_map(|sasl| {
            sasl.scram_mechanisms().flat_map(|mechanism| {
                sasl.users
                    .iter()
                    .map(move |(user, password)| format!("{mechanism}=[name=\"{user}\",password=\"{password}\"]"))
            })
        })
        .collect();
    let formats = nodes
        .iter()
        .map(|node| {
            let mut cmd = java_command(TOOL_JVM_OPTS)?;
            cmd.args(["kafka.tools.StorageTool", "format", "--ignore-formatted", "-t", cluster_id, "-c"])
                .arg(node.config_path());
            for credential in &scram {
                cmd.arg("--add-scram").arg(credential);
            }
            for feature in &spec.features {
                cmd.arg("--feature").arg(feature);
            }
            CapturedChild::spawn(cmd, None)
        })
        .collect::<Result<Vec<_>>>()?;
    for (format, node) in formats.into_iter().zip(nodes) {
        format.wait(STORAGE_TOOL_TIMEOUT)?.ensure_success(&format!("formatting node {}", node.id))?;
    }
    Ok(())
}
