//! Kafka's own Java tools and clients, run from the cached jars.
//!
//! The gateway must work for the reference client, so tests drive it with the stock
//! `kafka-topics`, console producer/consumer, perf tools and consumer-group tool (run by main
//! class, as no shell scripts exist here), plus small single-file Java programs under
//! `crates/testkit/java/` for anything the tools cannot show. Every call has a hard timeout after
//! which the JVM is killed, and failures carry the tool's stdout and stderr.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::kafka::{java_command, PERF_JVM_OPTS, TOOL_JVM_OPTS};
use crate::process::{self, CapturedChild, CommandOutput};

/// Limit for tool calls that take no timeout of their own.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(90);
/// Added to a tool's own timeout to cover JVM startup, metadata and group joins.
const JVM_MARGIN: Duration = Duration::from_secs(60);

fn tool(main_class: &str) -> Result<Command> {
    tool_with(main_class, TOOL_JVM_OPTS)
}

fn tool_with(main_class: &str, jvm_opts: &[&str]) -> Result<Command> {
    let mut cmd = java_command(jvm_opts)?;
    cmd.arg(main_class);
    Ok(cmd)
}

fn run_tool(cmd: Command, stdin: Option<Vec<u8>>, timeout: Duration, what: &str) -> Result<CommandOutput> {
    process::run(cmd, stdin, timeout)?.ensure_success(what)
}

fn topic_command(bootstrap: &str, args: &[&str], what: &str) -> Result<CommandOutput> {
    let mut cmd = tool("org.apache.kafka.tools.TopicCommand")?;
    cmd.args(["--bootstrap-server", bootstrap]).args(args);
    run_tool(cmd, None, TOOL_TIMEOUT, what)
}

/// `kafka-topics --create`.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32, replication_factor: i16) -> Result<()> {
    let (partitions, replication_factor) = (partitions.to_string(), replication_factor.to_string());
    let args = ["--create", "--topic", topic, "--partitions", &partitions, "--replication-factor", &replication_factor];
    topic_command(bootstrap, &args, &format!("creating topic {topic}")).map(drop)
}

/// `kafka-topics --delete`.
pub fn delete_topic(bootstrap: &str, topic: &str) -> Result<()> {
    topic_command(bootstrap, &["--delete", "--topic", topic], &format!("deleting topic {topic}")).map(drop)
}

/// `kafka-acls --add <args>`, e.g. `["--allow-principal", "User:alice", "--operation", "All",
/// "--topic", "orders"]`. On a cluster with an authorizer, through a listener whose principal
/// may change ACLs (the kit's plaintext internal listener, when `User:ANONYMOUS` is a super user).
pub fn add_acls(bootstrap: &str, args: &[&str]) -> Result<()> {
    let mut cmd = tool("org.apache.kafka.tools.AclCommand")?;
    cmd.args(["--bootstrap-server", bootstrap, "--add", "--force"]).args(args);
    run_tool(cmd, None, TOOL_TIMEOUT, &format!("adding ACLs {args:?}")).map(drop)
}

/// `kafka-topics --list` (internal topics included).
pub fn list_topics(bootstrap: &str) -> Result<Vec<String>> {
    Ok(topic_command(bootstrap, &["--list"], "listing topics")?.stdout_lines())
}

/// Produces one record per line with the console producer (`acks=all` unless `props` say
/// otherwise; `props` are producer configs).
pub fn console_produce(bootstrap: &str, topic: &str, lines: &[String], props: &[(&str, &str)]) -> Result<()> {
    let (cmd, stdin) = console_producer(bootstrap, topic, lines, props)?;
    run_tool(cmd, Some(stdin), TOOL_TIMEOUT, &format!("console producer to {topic}")).map(drop)
}

/// [`console_produce`], returning what the tool printed whether or not it succeeded: for
/// failures a test expects (a refused login, a denied topic), which the console producer reports
/// on stderr.
pub fn console_produce_output(
    bootstrap: &str,
    topic: &str,
    lines: &[String],
    props: &[(&str, &str)],
) -> Result<CommandOutput> {
    let (cmd, stdin) = console_producer(bootstrap, topic, lines, props)?;
    process::run(cmd, Some(stdin), TOOL_TIMEOUT)
}

fn console_producer(
    bootstrap: &str,
    topic: &str,
    lines: &[String],
    props: &[(&str, &str)],
) -> Result<(Command, Vec<u8>)> {
    let mut cmd = tool("org.apache.kafka.tools.ConsoleProducer")?;
    cmd.args(["--bootstrap-server", bootstrap, "--topic", topic]);
    for (key, value) in [("acks", "all")].iter().chain(props) {
        cmd.arg("--producer-property").arg(format!("{key}={value}"));
    }
    let stdin: String = lines.iter().map(|line| format!("{line}\n")).collect();
    Ok((cmd, stdin.into_bytes()))
}

/// How [`console_consume_with`] reads a topic.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    /// Consumer group; the tool picks a random one if `None`.
    pub group: Option<String>,
    /// Stop after this many records.
    pub max_messages: usize,
    /// Stop when no record arrives for this long (`--timeout-ms`). The clock starts at the first
    /// poll, before the group join and (on a fresh cluster) `__consumer_offsets` creation, so
    /// keep it at 10 s or more.
    pub timeout: Duration,
    /// `read_committed` or `read_uncommitted` (the default).
    pub isolation_level: Option<String>,
    /// Extra consumer configs.
    pub properties: Vec<(String, String)>,
}

impl ConsumeOptions {
    pub fn new(max_messages: usize, timeout: Duration) -> Self {
        Self { group: None, max_messages, timeout, isolation_level: None, properties: Vec::new() }
    }

    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    pub fn read_committed(mut self) -> Self {
        self.isolation_level = Some("read_committed".to_owned());
        self
    }

    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }
}

/// Reads up to `max_messages` record values from the beginning of `topic` with the console
/// consumer, giving up after `timeout` without a new record. Returns what it read, possibly
/// fewer records than asked for.
pub fn console_consume(
    bootstrap: &str,
    topic: &str,
    group: Option<&str>,
    max_messages: usize,
    timeout: Duration,
) -> Result<Vec<String>> {
    let mut opts = ConsumeOptions::new(max_messages, timeout);
    opts.group = group.map(str::to_owned);
    console_consume_with(bootstrap, topic, &opts)
}

/// [`console_consume`] with every option.
pub fn console_consume_with(bootstrap: &str, topic: &str, opts: &ConsumeOptions) -> Result<Vec<String>> {
    let mut cmd = tool("org.apache.kafka.tools.consumer.ConsoleConsumer")?;
    cmd.args(["--bootstrap-server", bootstrap, "--topic", topic, "--from-beginning"])
        .arg("--max-messages")
        .arg(opts.max_messages.to_string())
        .arg("--timeout-ms")
        .arg(opts.timeout.as_millis().to_string());
    if let Some(group) = &opts.group {
        cmd.args(["--group", group]);
    }
    if let Some(level) = &opts.isolation_level {
        cmd.args(["--isolation-level", level]);
    }
    for (key, value) in &opts.properties {
        cmd.arg("--consumer-property").arg(format!("{key}={value}"));
    }
    // Reaching `--timeout-ms` is a normal exit (status 0, "Processed a total of N messages").
    let what = format!("console consumer on {topic}");
    Ok(run_tool(cmd, None, opts.timeout + JVM_MARGIN, &what)?.stdout_lines())
}

/// A `ProducerPerformance` run.
#[derive(Debug, Clone)]
pub struct ProducerPerfOptions {
    pub bootstrap: String,
    pub topic: String,
    pub num_records: u64,
    pub record_size: usize,
    /// Records per second; -1 for unthrottled.
    pub throughput: i64,
    /// Producer configs besides `bootstrap.servers`. The tool splits each at every `=`, so a
    /// value holding one (`sasl.jaas.config`) goes in [`Self::config_file`] instead.
    pub producer_props: Vec<(String, String)>,
    /// A producer properties file (`--producer.config`), read before `producer_props`.
    pub config_file: Option<PathBuf>,
    pub transactional_id: Option<String>,
    pub transaction_duration_ms: Option<u64>,
    /// Hard limit for the whole run, JVM startup included.
    pub timeout: Duration,
}

impl ProducerPerfOptions {
    /// 100-byte records, unthrottled, `acks=all`, 120 s limit.
    pub fn new(bootstrap: impl Into<String>, topic: impl Into<String>, num_records: u64) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            topic: topic.into(),
            num_records,
            record_size: 100,
            throughput: -1,
            producer_props: vec![("acks".to_owned(), "all".to_owned())],
            config_file: None,
            transactional_id: None,
            transaction_duration_ms: None,
            timeout: Duration::from_secs(120),
        }
    }

    fn command(&self) -> Result<Command> {
        let mut cmd = tool_with("org.apache.kafka.tools.ProducerPerformance", PERF_JVM_OPTS)?;
        cmd.args(["--topic", &self.topic])
            .args(["--num-records", &self.num_records.to_string()])
            .args(["--record-size", &self.record_size.to_string()])
            .args(["--throughput", &self.throughput.to_string()]);
        if let Some(id) = &self.transactional_id {
            cmd.args(["--transactional-id", id]);
        }
        if let Some(ms) = self.transaction_duration_ms {
            cmd.args(["--transaction-duration-ms", &ms.to_string()]);
        }
        if let Some(file) = &self.config_file {
            cmd.arg("--producer.config").arg(file);
        }
        cmd.arg("--producer-props").arg(format!("bootstrap.servers={}", self.bootstrap));
        cmd.args(self.producer_props.iter().map(|(k, v)| format!("{k}={v}")));
        Ok(cmd)
    }
}

/// The final line of `ProducerPerformance`. Latencies are in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct ProducerPerfSummary {
    pub records: u64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
    pub avg_latency_ms: f64,
    pub max_latency_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

impl ProducerPerfSummary {
    /// Parses e.g. `2000 records sent, 3527.3 records/sec (0.34 MB/sec), 253.48 ms avg latency,
    /// 443.00 ms max latency, 262 ms 50th, 425 ms 95th, 438 ms 99th, 443 ms 99.9th.`
    pub fn parse_line(line: &str) -> Option<Self> {
        let parts: Vec<&str> = line.split(", ").collect();
        if parts.len() < 8 || !parts[7].contains("99.9th") {
            return None;
        }
        Some(Self {
            records: first_number(parts[0])? as u64,
            records_per_sec: first_number(parts[1])?,
            mb_per_sec: first_number(parts[1].split_once('(')?.1)?,
            avg_latency_ms: first_number(parts[2])?,
            max_latency_ms: first_number(parts[3])?,
            p50_ms: first_number(parts[4])?,
            p95_ms: first_number(parts[5])?,
            p99_ms: first_number(parts[6])?,
            p999_ms: first_number(parts[7])?,
        })
    }

    fn from_output(output: &CommandOutput) -> Result<Self> {
        output
            .stdout
            .lines()
            .rev()
            .find_map(Self::parse_line)
            .with_context(|| format!("no ProducerPerformance summary line:\n{}", output.describe()))
    }
}

/// Runs `ProducerPerformance` to completion.
pub fn producer_perf(opts: &ProducerPerfOptions) -> Result<ProducerPerfSummary> {
    producer_perf_background(opts)?.wait()
}

/// Starts `ProducerPerformance` and returns at once, so a test can disturb the cluster while it
/// runs. The JVM is killed if the handle is dropped.
pub fn producer_perf_background(opts: &ProducerPerfOptions) -> Result<ProducerPerfRun> {
    let child = CapturedChild::spawn(opts.command()?, None)?;
    Ok(ProducerPerfRun { child, timeout: opts.timeout })
}

/// A running `ProducerPerformance`.
#[derive(Debug)]
pub struct ProducerPerfRun {
    child: CapturedChild,
    timeout: Duration,
}

impl ProducerPerfRun {
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Waits for the run to finish (within the options' timeout) and parses its summary.
    pub fn wait(self) -> Result<ProducerPerfSummary> {
        self.wait_with_output().map(|(summary, _)| summary)
    }

    /// [`ProducerPerfRun::wait`], also returning what the tool printed (failed sends are
    /// reported on stderr and left out of the summary's record count).
    pub fn wait_with_output(self) -> Result<(ProducerPerfSummary, CommandOutput)> {
        let output = self.child.wait(self.timeout)?.ensure_success("ProducerPerformance")?;
        Ok((ProducerPerfSummary::from_output(&output)?, output))
    }
}

/// The data line of `ConsumerPerformance`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerPerfSummary {
    pub mb_consumed: f64,
    pub mb_per_sec: f64,
    pub messages: u64,
    pub messages_per_sec: f64,
}

impl ConsumerPerfSummary {
    /// Parses the CSV line under the `start.time, end.time, data.consumed.in.MB, MB.sec,
    /// data.consumed.in.nMsg, nMsg.sec, …` header.
    pub fn parse_line(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() < 6 {
            return None;
        }
        Some(Self {
            mb_consumed: fields[2].parse().ok()?,
            mb_per_sec: fields[3].parse().ok()?,
            messages: fields[4].parse().ok()?,
            messages_per_sec: fields[5].parse().ok()?,
        })
    }
}

/// Consumes `messages` records from `topic` in `group` with `ConsumerPerformance`; `timeout` is
/// its `--timeout` (longest wait for records). Reaching it is not an error: the summary then
/// shows fewer messages.
pub fn consumer_perf(
    bootstrap: &str,
    topic: &str,
    messages: u64,
    group: &str,
    timeout: Duration,
) -> Result<ConsumerPerfSummary> {
    let mut cmd = tool_with("org.apache.kafka.tools.ConsumerPerformance", PERF_JVM_OPTS)?;
    cmd.args(["--bootstrap-server", bootstrap, "--topic", topic, "--group", group])
        .args(["--messages", &messages.to_string()])
        .args(["--timeout", &timeout.as_millis().to_string()]);
    let output = run_tool(cmd, None, timeout + JVM_MARGIN, "ConsumerPerformance")?;
    output
        .stdout
        .lines()
        .find_map(ConsumerPerfSummary::parse_line)
        .with_context(|| format!("no ConsumerPerformance data line:\n{}", output.describe()))
}

fn consumer_group_command(bootstrap: &str, args: &[&str], what: &str) -> Result<CommandOutput> {
    let mut cmd = tool("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand")?;
    cmd.args(["--bootstrap-server", bootstrap]).args(args);
    run_tool(cmd, None, TOOL_TIMEOUT, what)
}

/// `kafka-consumer-groups --describe --group G`, as printed.
pub fn describe_group(bootstrap: &str, group: &str) -> Result<String> {
    Ok(consumer_group_command(bootstrap, &["--describe", "--group", group], &format!("describing group {group}"))?
        .stdout)
}

/// `kafka-consumer-groups --list`.
pub fn list_groups(bootstrap: &str) -> Result<Vec<String>> {
    Ok(consumer_group_command(bootstrap, &["--list"], "listing groups")?.stdout_lines())
}

/// Where the single-file Java programs live.
pub fn java_programs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("java")
}

/// Runs `crates/testkit/java/<file>` with the Java source launcher and the Kafka jars on the
/// classpath; fails on a non-zero exit.
pub fn run_program(file: &str, args: &[&str], timeout: Duration) -> Result<CommandOutput> {
    let mut cmd = java_command(TOOL_JVM_OPTS)?;
    cmd.arg(java_programs_dir().join(file)).args(args);
    run_tool(cmd, None, timeout, file)
}

/// A node as reported by `Admin.describeCluster()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedNode {
    pub id: i32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
}

/// What `Admin.describeCluster()` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedCluster {
    pub cluster_id: String,
    /// Sorted by id.
    pub nodes: Vec<DescribedNode>,
    /// In KRaft, brokers report one of themselves here (clients cannot reach controllers).
    pub controller: Option<DescribedNode>,
}

impl DescribedCluster {
    /// Parses `DescribeCluster.java` output: `cluster_id <id>`, `node <id> <host> <port> <rack|null>`
    /// lines and `controller <id> <host> <port>` (or `controller none`).
    pub fn parse(output: &str) -> Result<Self> {
        let mut cluster = Self { cluster_id: String::new(), nodes: Vec::new(), controller: None };
        for line in output.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["cluster_id", id] => cluster.cluster_id = (*id).to_owned(),
                ["node", rest @ ..] => {
                    cluster.nodes.push(parse_node(rest).with_context(|| format!("bad line {line:?}"))?)
                }
                ["controller", "none"] => {}
                ["controller", rest @ ..] => {
                    let mut controller = parse_node(rest).with_context(|| format!("bad line {line:?}"))?;
                    controller.rack = cluster.nodes.iter().find(|n| n.id == controller.id).and_then(|n| n.rack.clone());
                    cluster.controller = Some(controller);
                }
                _ => {}
            }
        }
        if cluster.cluster_id.is_empty() {
            bail!("no cluster_id line in:\n{output}");
        }
        Ok(cluster)
    }
}

fn parse_node(fields: &[&str]) -> Result<DescribedNode> {
    let [id, host, port, rack @ ..] = fields else { bail!("expected <id> <host> <port> [rack]") };
    Ok(DescribedNode {
        id: id.parse()?,
        host: (*host).to_owned(),
        port: port.parse()?,
        rack: rack.first().filter(|r| **r != "null").map(|r| (*r).to_owned()),
    })
}

/// `Admin.describeCluster()` through `DescribeCluster.java`.
pub fn describe_cluster(bootstrap: &str) -> Result<DescribedCluster> {
    DescribedCluster::parse(&run_program("DescribeCluster.java", &[bootstrap], TOOL_TIMEOUT)?.stdout)
}

fn first_number(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}
