//! Numbered records through the Java client (any release) and franz-go, for client-switchover
//! drills.
//!
//! A switchover drill must show, record by record, what a real client experienced while the
//! gateway moved it between clusters: which sends were acknowledged, which failed, how long acks
//! stalled, which records a consumer group saw (and how many twice), and how long it got nothing.
//! `java/NumberedProducer.java` (idempotent, `acks=all`, retrying) sends `seq-<n>` values for
//! n = 1..count at a fixed rate and prints a line per ack or error; `java/NumberedConsumer.java`
//! reads them in a group (or without one) and prints a line per record. Both run in the
//! background with their stdout in a file, so a test can watch progress ([`NumberedProducer::progress`],
//! [`NumberedConsumer::progress`]) and act mid-run, then collect a report. Only lines starting
//! with `ACK`, `ERR`, `ASSIGNED`, `REC` or `DONE` count; anything else on stdout is ignored. The
//! franz-go workout's `numbered` mode prints the same lines for a producer and a group consumer
//! in one process ([`FranzNumbered`]).

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::clients::{client_java_command, franz_workout_binary};
use crate::java::java_programs_dir;
use crate::kafka::{java_command, TOOL_JVM_OPTS};
use crate::poll::try_poll_until;
use crate::process::{self, ChildGuard};

const PRODUCER_PROGRAM: &str = "NumberedProducer.java";
const CONSUMER_PROGRAM: &str = "NumberedConsumer.java";
/// The group argument of `NumberedConsumer.java` that means: no group, assign every partition.
const NO_GROUP: &str = "-";
const OUTPUT_TAIL_LINES: usize = 40;

/// One acknowledged send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerAck {
    pub seq: u64,
    pub partition: i32,
    pub offset: i64,
    /// When the callback ran (producer's clock, ms since the epoch).
    pub epoch_millis: u64,
}

/// What a [`NumberedProducer`] reported, so far or in total.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerReport {
    /// Sequence numbers acknowledged.
    pub acked: BTreeSet<u64>,
    /// Every ack in callback order.
    pub acks: Vec<ProducerAck>,
    /// `<n> <exception class>: <message>` per failed send.
    pub errors: Vec<String>,
    /// Records handed to `send()` (from the final line; 0 until it is printed).
    pub sent: u64,
    /// Longest time between consecutive acks (from the final line; 0 until it is printed).
    pub max_ack_gap_ms: u64,
    /// Whether the final `DONE` line has been printed.
    pub done: bool,
    /// Transactional mode: transactions aborted (and resent) after an abortable error (from the
    /// final line; 0 until it is printed).
    pub aborted: u64,
    /// Transactional mode: the error that made the producer give up, if one did.
    pub fatal: Option<String>,
}

impl ProducerReport {
    /// Parses the producer's stdout, ignoring lines that are not its own.
    pub fn parse(output: &str) -> Self {
        let mut report = Self::default();
        for line in output.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["ACK", seq, partition, offset, millis] => {
                    let parsed = (seq.parse(), partition.parse(), offset.parse(), millis.parse());
                    if let (Ok(seq), Ok(partition), Ok(offset), Ok(epoch_millis)) = parsed {
                        report.acked.insert(seq);
                        report.acks.push(ProducerAck { seq, partition, offset, epoch_millis });
                    }
                }
                ["ERR", _, ..] => report.errors.push(line["ERR ".len()..].trim_end().to_owned()),
                ["FATAL", _, ..] => report.fatal = Some(line["FATAL ".len()..].trim_end().to_owned()),
                ["DONE", rest @ ..] => {
                    report.done = true;
                    report.sent = field(rest, "sent").unwrap_or(0);
                    report.max_ack_gap_ms = field(rest, "maxAckGapMs").unwrap_or(0);
                    report.aborted = field(rest, "aborted").unwrap_or(0);
                }
                _ => {}
            }
        }
        report
    }

    /// Sequence numbers in `1..=count` that were not acknowledged.
    pub fn missing(&self, count: u64) -> Vec<u64> {
        (1..=count).filter(|n| !self.acked.contains(n)).collect()
    }
}

/// `NumberedProducer.java` running in the background. Dropped before [`NumberedProducer::wait`], it
/// gets SIGTERM and, 10 s later, SIGKILL.
#[derive(Debug)]
pub struct NumberedProducer {
    run: ProgramRun,
}

impl NumberedProducer {
    /// Sends `count` records (`seq-1` … `seq-<count>`, keyed by their number) to `topic` at
    /// `rate` records per second (0: as fast as possible), once [`JavaStart::start`]ed. Configs
    /// given with [`JavaStart::props`] apply after the program's defaults (idempotence,
    /// `acks=all`, unlimited retries, 120 s delivery timeout, 10 s request timeout,
    /// `linger.ms=5`).
    pub fn sending(bootstrap: &str, topic: &str, count: u64, rate: u32) -> JavaStart<Self> {
        let args = vec![bootstrap.to_owned(), topic.to_owned(), count.to_string(), rate.to_string()];
        JavaStart::new(PRODUCER_PROGRAM, args, |run| Self { run })
    }

    pub fn pid(&self) -> u32 {
        self.run.child.pid()
    }

    /// What the producer has reported so far.
    pub fn progress(&self) -> ProducerReport {
        ProducerReport::parse(&self.run.stdout())
    }

    /// Waits until at least `acks` sends have been acknowledged (for example to act mid-run).
    pub fn wait_acked(&mut self, acks: usize, timeout: Duration) -> Result<ProducerReport> {
        self.run.poll(timeout, &format!("{acks} acks"), |stdout| {
            let report = ProducerReport::parse(stdout);
            (report.acked.len() >= acks || report.done).then_some(report)
        })
    }

    /// Asks the producer to stop (SIGTERM) and returns at once: it stops sending, closes (letting
    /// in-flight sends finish for up to 30 s) and prints its final line. Collect it with
    /// [`NumberedProducer::wait`].
    pub fn stop(&mut self) {
        self.run.terminate();
    }

    /// Waits up to `timeout` for the producer to exit and returns its full report. Fails if it
    /// never printed its final line (it crashed, or was killed after the timeout).
    pub fn wait(self, timeout: Duration) -> Result<ProducerReport> {
        self.wait_with_log(timeout).map(|(report, _)| report)
    }

    /// [`NumberedProducer::wait`], also returning what the client logged on stderr.
    pub fn wait_with_log(self, timeout: Duration) -> Result<(ProducerReport, String)> {
        let (stdout, stderr) = self.run.wait(timeout)?;
        Ok((ProducerReport::parse(&stdout), stderr))
    }
}

/// One consumed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub value: String,
    /// `n` for a `seq-<n>` value.
    pub seq: Option<u64>,
    pub partition: i32,
    pub offset: i64,
    /// When the poll that returned it returned.
    pub epoch_millis: u64,
}

/// What a [`NumberedConsumer`] reported, so far or in total.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerReport {
    /// Sequence numbers of the `seq-<n>` records, in arrival order, duplicates included.
    pub values: Vec<u64>,
    /// Every record, in arrival order.
    pub records: Vec<ConsumedRecord>,
    /// Different sequence numbers in `values`.
    pub distinct: usize,
    /// Longest time between two polls that returned records (from the final line; 0 until then).
    pub max_poll_gap_ms: u64,
    /// Partition assignments, one per rebalance (`topic-partition` names).
    pub assignments: Vec<Vec<String>>,
    /// Whether the final `DONE` line has been printed.
    pub done: bool,
}

impl ConsumerReport {
    /// Parses the consumer's stdout, ignoring lines that are not its own.
    pub fn parse(output: &str) -> Self {
        let mut report = Self::default();
        for line in output.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["REC", value, partition, offset, millis] => {
                    let parsed = (partition.parse(), offset.parse(), millis.parse());
                    if let (Ok(partition), Ok(offset), Ok(epoch_millis)) = parsed {
                        let seq = value.strip_prefix("seq-").and_then(|n| n.parse().ok());
                        report.values.extend(seq);
                        let value = (*value).to_owned();
                        report.records.push(ConsumedRecord { value, seq, partition, offset, epoch_millis });
                    }
                }
                ["ASSIGNED"] => report.assignments.push(Vec::new()),
                ["ASSIGNED", partitions] => report.assignments.push(partitions.split(',').map(str::to_owned).collect()),
                ["DONE", rest @ ..] => {
                    report.done = true;
                    report.max_poll_gap_ms = field(rest, "maxPollGapMs").unwrap_or(0);
                }
                _ => {}
            }
        }
        report.distinct = report.values.iter().collect::<HashSet<_>>().len();
        report
    }

    /// Records seen more than once (`values.len() - distinct`).
    pub fn duplicates(&self) -> usize {
        self.values.len() - self.distinct
    }

    /// Sequence numbers in `1..=count` never seen.
    pub fn missing(&self, count: u64) -> Vec<u64> {
        let seen: HashSet<u64> = self.values.iter().copied().collect();
        (1..=count).filter(|n| !seen.contains(n)).collect()
    }
}

/// `NumberedConsumer.java` running in the background. Dropped before [`NumberedConsumer::wait`], it
/// gets SIGTERM and, 10 s later, SIGKILL.
#[derive(Debug)]
pub struct NumberedConsumer {
    run: ProgramRun,
}

impl NumberedConsumer {
    /// Reads `topic` as `group` (from the earliest offset when the group has none, auto commit
    /// every second), once [`JavaStart::start`]ed, until all of `seq-1` … `seq-<expected>` have
    /// been seen, or until no record arrives for `idle_timeout` (counted from the start until the
    /// first record, so allow for JVM startup and the group join).
    pub fn reading(
        bootstrap: &str,
        topic: &str,
        group: &str,
        expected: u64,
        idle_timeout: Duration,
    ) -> JavaStart<Self> {
        let args = vec![
            bootstrap.to_owned(),
            topic.to_owned(),
            group.to_owned(),
            expected.to_string(),
            idle_timeout.as_millis().to_string(),
        ];
        JavaStart::new(CONSUMER_PROGRAM, args, |run| Self { run })
    }

    /// [`NumberedConsumer::reading`] without a consumer group: `assign()` of every partition of
    /// `topic` from its beginning, no commits.
    pub fn reading_without_group(
        bootstrap: &str,
        topic: &str,
        expected: u64,
        idle_timeout: Duration,
    ) -> JavaStart<Self> {
        Self::reading(bootstrap, topic, NO_GROUP, expected, idle_timeout)
    }

    pub fn pid(&self) -> u32 {
        self.run.child.pid()
    }

    /// What the consumer has reported so far.
    pub fn progress(&self) -> ConsumerReport {
        ConsumerReport::parse(&self.run.stdout())
    }

    /// Waits until at least `distinct` different numbered records have been received (or the
    /// consumer is done).
    pub fn wait_seen(&mut self, distinct: usize, timeout: Duration) -> Result<ConsumerReport> {
        self.run.poll(timeout, &format!("{distinct} records received"), |stdout| {
            let report = ConsumerReport::parse(stdout);
            (report.distinct >= distinct || report.done).then_some(report)
        })
    }

    /// Waits until the consumer has been assigned at least one partition.
    pub fn wait_assigned(&mut self, timeout: Duration) -> Result<()> {
        self.run.poll(timeout, "a partition assignment", |stdout| {
            ConsumerReport::parse(stdout).assignments.iter().any(|a| !a.is_empty()).then_some(())
        })
    }

    /// Asks the consumer to stop (SIGTERM, which wakes it up) and returns at once; it closes
    /// (committing its position) and prints its final line. Collect it with
    /// [`NumberedConsumer::wait`].
    pub fn stop(&mut self) {
        self.run.terminate();
    }

    /// Waits up to `timeout` for the consumer to exit and returns its full report. Fails if it
    /// never printed its final line.
    pub fn wait(self, timeout: Duration) -> Result<ConsumerReport> {
        let (stdout, _) = self.run.wait(timeout)?;
        Ok(ConsumerReport::parse(&stdout))
    }
}

/// A numbered Java program ([`NumberedProducer::sending`], [`NumberedConsumer::reading`]) to
/// start: the client it runs on and the configs it is given are set here, then
/// [`JavaStart::start`] runs it.
#[must_use]
#[derive(Debug)]
pub struct JavaStart<P> {
    program: &'static str,
    /// The program's own arguments, before the configs.
    args: Vec<String>,
    /// A kafka-clients release (only its jars); `None`: the brokers' own client.
    client: Option<String>,
    /// `key=value` configs.
    props: Vec<String>,
    running: fn(ProgramRun) -> P,
}

impl<P> JavaStart<P> {
    fn new(program: &'static str, args: Vec<String>, running: fn(ProgramRun) -> P) -> Self {
        Self { program, args, client: None, props: Vec::new(), running }
    }

    /// Runs on kafka-clients `version` (and only its jars) instead of the brokers' own client
    /// when there is one.
    pub fn client(mut self, version: Option<&str>) -> Self {
        self.client = version.map(str::to_owned);
        self
    }

    /// Adds client configs (the program's own settings too, as the Java files describe).
    pub fn props(mut self, props: &[(&str, &str)]) -> Self {
        self.props.extend(props.iter().map(|(k, v)| format!("{k}={v}")));
        self
    }

    /// Starts the program in the background.
    pub fn start(self) -> Result<P> {
        let java = match &self.client {
            Some(version) => client_java_command(version)?,
            None => java_command(TOOL_JVM_OPTS)?,
        };
        let args: Vec<String> = self.args.into_iter().chain(self.props).collect();
        Ok((self.running)(ProgramRun::start_java(java, self.program, &args)?))
    }
}

impl JavaStart<NumberedProducer> {
    /// Transactional mode: transactions of `records` records as `transactional_id`. An ack then
    /// means the record's transaction committed, an error is a failed transaction that was
    /// aborted and resent, and a fatal error ends the run (see the program's header).
    pub fn transactional(self, transactional_id: &str, records: u32) -> Self {
        self.props(&[("transactional.id", transactional_id), ("txn.records", &records.to_string())])
    }

    /// In transactional mode, each transaction also commits `group`'s offset of partition 0
    /// (`sendOffsetsToTransaction`), as a consume-transform-produce application does.
    pub fn offsets_group(self, group: &str) -> Self {
        self.props(&[("txn.offsets.group", group)])
    }

    /// In transactional mode, after an error the 4.x client classes as application-recoverable
    /// (KIP-1050), the application closes the producer and starts a new one, as Kafka Streams
    /// and Spring Kafka do.
    pub fn restart_when_recoverable(self) -> Self {
        self.props(&[("txn.restart.recoverable", "true")])
    }
}

/// The franz-go workout's `numbered` mode running in the background: an idempotent producer
/// (`acks=all`) sending `seq-<n>` records at a fixed rate and a consumer group reading them, in
/// one process, printing the lines of `NumberedProducer.java` and `NumberedConsumer.java` (see
/// `crates/testkit/go/franz-workout/numbered.go`). An error either client surfaces to the
/// application is an `ERR` line, so it shows in the producer report's `errors`. Dropped before
/// [`FranzNumbered::wait`], it gets SIGTERM and, 10 s later, SIGKILL.
#[derive(Debug)]
pub struct FranzNumbered {
    run: ProgramRun,
}

impl FranzNumbered {
    /// Starts sending `count` records to `topic` at `rate` per second while group `group` reads
    /// `topic` from its beginning (when it has no offsets); the consumer stops once the producer
    /// is done and nothing arrived for `idle` (or every record was seen). `Ok(None)`: `go` is not
    /// installed and nothing ran.
    pub fn start(
        bootstrap: &str,
        topic: &str,
        group: &str,
        count: u64,
        rate: u32,
        idle: Duration,
    ) -> Result<Option<Self>> {
        let Some(binary) = franz_workout_binary()? else { return Ok(None) };
        let mut cmd = Command::new(binary);
        cmd.args(["numbered", bootstrap, topic, group, &count.to_string(), &rate.to_string()])
            .arg(idle.as_millis().to_string());
        Ok(Some(Self { run: ProgramRun::start(cmd, "franz-workout numbered")? }))
    }

    /// Waits until at least `acks` sends have been acknowledged and the consumer has received
    /// at least `records` different numbered records.
    pub fn wait_progress(&mut self, acks: usize, records: usize, timeout: Duration) -> Result<()> {
        self.run.poll(timeout, &format!("{acks} acks and {records} records received"), |stdout| {
            let (produced, consumed) = (ProducerReport::parse(stdout), ConsumerReport::parse(stdout));
            (produced.acked.len() >= acks && consumed.distinct >= records).then_some(())
        })
    }

    /// Waits up to `timeout` for the program to exit and returns what its producer and its
    /// consumer reported, and what it logged on stderr.
    pub fn wait(self, timeout: Duration) -> Result<(ProducerReport, ConsumerReport, String)> {
        let (stdout, stderr) = self.run.wait(timeout)?;
        Ok((ProducerReport::parse(&stdout), ConsumerReport::parse(&stdout), stderr))
    }
}

/// A program (a single-file Java program or the franz-go workout) with stdout and stderr in
/// files of a temporary directory.
#[derive(Debug)]
struct ProgramRun {
    child: ChildGuard,
    program: &'static str,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    _dir: TempDir,
}

impl ProgramRun {
    /// Runs `crates/testkit/java/<program>` with `java`, a `java` command with its options and
    /// classpath.
    fn start_java(mut java: Command, program: &'static str, args: &[String]) -> Result<Self> {
        java.arg(java_programs_dir().join(program)).args(args);
        Self::start(java, program)
    }

    /// Runs `cmd`, a complete command line; `program` names it in reports.
    fn start(mut cmd: Command, program: &'static str) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("switchyard-numbered-").tempdir()?;
        let stdout_path = dir.path().join("stdout");
        let stderr_path = dir.path().join("stderr");
        cmd.stdin(Stdio::null()).stdout(File::create(&stdout_path)?).stderr(File::create(&stderr_path)?);
        let child = ChildGuard::spawn(cmd).with_context(|| format!("starting {program}"))?;
        Ok(Self { child, program, stdout_path, stderr_path, _dir: dir })
    }

    /// What the program has written to stderr so far (the client's logs).
    fn stderr(&self) -> String {
        process::read_lossy(&self.stderr_path)
    }

    /// Complete lines printed so far (a line still being written is left out).
    fn stdout(&self) -> String {
        let mut text = process::read_lossy(&self.stdout_path);
        text.truncate(text.rfind('\n').map_or(0, |i| i + 1));
        text
    }

    fn describe(&self, status: Option<ExitStatus>) -> String {
        let status = status.map_or_else(|| "still running".to_owned(), |s| s.to_string());
        format!(
            "{} ({status})\n--- stdout (tail) ---\n{}\n--- stderr (tail) ---\n{}",
            self.program,
            process::tail(&self.stdout(), OUTPUT_TAIL_LINES),
            process::tail(&process::read_lossy(&self.stderr_path), OUTPUT_TAIL_LINES)
        )
    }

    fn poll<T>(&mut self, timeout: Duration, what: &str, mut check: impl FnMut(&str) -> Option<T>) -> Result<T> {
        let result = try_poll_until(timeout, || {
            let value = check(&self.stdout());
            if value.is_none() {
                if let Some(status) = self.child.try_status() {
                    bail!("exited ({status})");
                }
            }
            Ok(value)
        });
        result.map_err(|e| {
            let status = self.child.try_status();
            anyhow::anyhow!("waiting for {what}: {e:#}\n{}", self.describe(status))
        })
    }

    fn terminate(&mut self) {
        // Signal without waiting: the program shuts down in its own time.
        let _ = self.child.terminate(Duration::ZERO);
    }

    /// Waits for exit (killing the program past `timeout`) and returns stdout, which must end
    /// with the program's `DONE` line, and stderr.
    fn wait(mut self, timeout: Duration) -> Result<(String, String)> {
        let status = self.child.wait_timeout(timeout);
        if status.is_none() {
            self.child.kill();
            let status = self.child.try_status();
            bail!("timed out after {timeout:?}: {}", self.describe(status));
        }
        let stdout = self.stdout();
        if !stdout.lines().any(|line| line.starts_with("DONE ")) {
            bail!("no DONE line: {}", self.describe(status));
        }
        Ok((stdout, self.stderr()))
    }
}

/// `value` of `name=value` among `fields`.
fn field<T: std::str::FromStr>(fields: &[&str], name: &str) -> Option<T> {
    fields.iter().find_map(|f| f.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_output_parses_amid_noise() {
        let output = "\
Picked up JAVA_TOOL_OPTIONS: -Dfoo
ACK 1 0 0 1700000000000
ACK 2 2 0 1700000000005
ACKNOWLEDGED nothing
ERR 3 org.apache.kafka.common.errors.TimeoutException: Expiring 1 record(s): 120000 ms
ACK 4 1 bad 1
DONE sent=4 acked=2 errors=1 maxAckGapMs=5
";
        let report = ProducerReport::parse(output);
        assert_eq!(report.acked, BTreeSet::from([1, 2]));
        assert_eq!(report.acks[1], ProducerAck { seq: 2, partition: 2, offset: 0, epoch_millis: 1_700_000_000_005 });
        assert_eq!(
            report.errors,
            vec!["3 org.apache.kafka.common.errors.TimeoutException: Expiring 1 record(s): 120000 ms".to_owned()]
        );
        assert_eq!((report.sent, report.max_ack_gap_ms, report.done), (4, 5, true));
        assert_eq!(report.missing(4), vec![3, 4]);
        assert_eq!((report.aborted, report.fatal), (0, None));
    }

    #[test]
    fn transactional_producer_output_parses() {
        let output = "\
ACK 1 0 0 1700000000000
ERR 2 org.apache.kafka.common.errors.InvalidPidMappingException: The producer attempted ...
FATAL org.apache.kafka.common.errors.InvalidTxnStateException: invalid state
DONE sent=3 acked=1 errors=1 maxAckGapMs=0 aborted=1
";
        let report = ProducerReport::parse(output);
        assert_eq!(report.acked, BTreeSet::from([1]));
        assert_eq!(report.errors.len(), 1);
        assert_eq!(report.aborted, 1);
        assert_eq!(
            report.fatal.as_deref(),
            Some("org.apache.kafka.common.errors.InvalidTxnStateException: invalid state")
        );
    }

    #[test]
    fn franz_go_output_parses_as_both_reports() {
        let output = "\
ASSIGNED franz-0,franz-1
ACK 1 0 0 1700000000000
REC seq-00000001 0 0 1700000000010
ERR 2 UNKNOWN_TOPIC_ID: This server does not host this topic ID.
ERR consumer franz-0: UNKNOWN_TOPIC_ID: This server does not host this topic ID.
DONE sent=2 acked=1 errors=1 maxAckGapMs=0 records=1 distinct=1 maxPollGapMs=7
";
        let (produced, consumed) = (ProducerReport::parse(output), ConsumerReport::parse(output));
        assert_eq!((produced.acked, produced.sent, produced.done), (BTreeSet::from([1]), 2, true));
        assert_eq!(produced.errors.len(), 2, "the consumer's error counts as one the application saw");
        assert_eq!((consumed.values, consumed.max_poll_gap_ms, consumed.done), (vec![1], 7, true));
        assert_eq!(consumed.assignments, vec![vec!["franz-0".to_owned(), "franz-1".to_owned()]]);
    }

    #[test]
    fn consumer_output_parses_amid_noise() {
        let output = "\
[12:00:00,000] WARN something (org.apache.kafka)
ASSIGNED
ASSIGNED drill-0,drill-1
REC seq-00000002 0 0 1700000000100
REC seq-00000001 1 0 1700000000100
REC seq-00000002 0 0 1700000000200
REC other 0 1 1700000000200
RECORD seq-00000009 0 0
DONE records=4 distinct=2 maxPollGapMs=250
";
        let report = ConsumerReport::parse(output);
        assert_eq!(report.values, vec![2, 1, 2]);
        assert_eq!((report.distinct, report.duplicates()), (2, 1));
        assert_eq!(report.records.len(), 4);
        assert_eq!(report.records[3].seq, None);
        assert_eq!(report.records[2].epoch_millis, 1_700_000_000_200);
        assert_eq!(report.assignments, vec![vec![], vec!["drill-0".to_owned(), "drill-1".to_owned()]]);
        assert_eq!((report.max_poll_gap_ms, report.done), (250, true));
        assert_eq!(report.missing(3), vec![3]);
    }
}
