//! The load generators: Kafka's own Java perf tools, and `xtask/java/LatencyProbe.java` for
//! latencies finer than the tools' whole milliseconds. Each returns the figures it printed.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use switchyard_testkit::java::{self, ProducerPerfOptions};
use switchyard_testkit::kafka::java_command;
use switchyard_testkit::process;

/// Perf clients keep the full JIT; like every JVM here they get a heap limit.
const PERF_JVM_OPTS: &[&str] = &["-Xmx512m"];

/// `ProducerPerformance` with `size`-byte records; `rate` records/s, or -1 for unthrottled.
pub fn producer_perf(
    bootstrap: &str,
    topic: &str,
    records: u64,
    size: usize,
    rate: i64,
    acks: &str,
) -> Result<ProducerRun> {
    producer_perf_with(bootstrap, topic, records, size, rate, acks, &[])
}

/// [`producer_perf`] with further producer configs (`security.protocol`, `ssl.*`, …).
pub fn producer_perf_with(
    bootstrap: &str,
    topic: &str,
    records: u64,
    size: usize,
    rate: i64,
    acks: &str,
    props: &[(String, String)],
) -> Result<ProducerRun> {
    let mut opts = ProducerPerfOptions::new(bootstrap, topic, records);
    opts.record_size = size;
    opts.throughput = rate;
    opts.producer_props = vec![("acks".to_owned(), acks.to_owned())];
    opts.producer_props.extend(props.iter().cloned());
    opts.timeout = Duration::from_secs(600);
    let s = java::producer_perf(&opts)?;
    Ok(ProducerRun {
        records: s.records,
        records_per_sec: s.records_per_sec,
        mib_per_sec: s.mb_per_sec,
        avg_ms: s.avg_latency_ms,
        p50_ms: s.p50_ms,
        p99_ms: s.p99_ms,
        p999_ms: s.p999_ms,
        max_ms: s.max_latency_ms,
    })
}

/// The summary line of a `ProducerPerformance` run (MiB, as the tool counts them).
#[derive(Debug, Clone, Serialize)]
pub struct ProducerRun {
    pub records: u64,
    pub records_per_sec: f64,
    pub mib_per_sec: f64,
    pub avg_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// The data line of `ConsumerPerformance`.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerRun {
    pub mib: f64,
    pub messages: u64,
    /// Over the whole run, group join included.
    pub mib_per_sec: f64,
    pub rebalance_ms: f64,
    pub fetch_ms: f64,
    /// Over the fetch time only: the figure compared.
    pub fetch_mib_per_sec: f64,
    pub fetch_messages_per_sec: f64,
}

impl ConsumerRun {
    /// `start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec,
    /// rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec`.
    fn parse_line(line: &str) -> Option<ConsumerRun> {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() < 10 {
            return None;
        }
        let num = |i: usize| f[i].parse::<f64>().ok();
        Some(ConsumerRun {
            mib: num(2)?,
            mib_per_sec: num(3)?,
            messages: num(4)? as u64,
            rebalance_ms: num(6)?,
            fetch_ms: num(7)?,
            fetch_mib_per_sec: num(8)?,
            fetch_messages_per_sec: num(9)?,
        })
    }
}

/// `ConsumerPerformance` reading `messages` records from the start of `topic` in a new group.
pub fn consumer_perf(bootstrap: &str, topic: &str, messages: u64, group: &str) -> Result<ConsumerRun> {
    consumer_perf_with(bootstrap, topic, messages, group, &[])
}

/// [`consumer_perf`] with further consumer configs, passed in a `--consumer.config` file.
pub fn consumer_perf_with(
    bootstrap: &str,
    topic: &str,
    messages: u64,
    group: &str,
    props: &[(String, String)],
) -> Result<ConsumerRun> {
    let mut cmd = java_command(PERF_JVM_OPTS)?;
    cmd.arg("org.apache.kafka.tools.ConsumerPerformance")
        .args(["--bootstrap-server", bootstrap, "--topic", topic, "--group", group])
        .args(["--messages", &messages.to_string(), "--timeout", "30000"]);
    let config = (!props.is_empty())
        .then(|| std::env::temp_dir().join(format!("switchyard-bench-{}-{group}.properties", std::process::id())));
    if let Some(path) = &config {
        let text: String = props.iter().map(|(key, value)| format!("{key}={value}\n")).collect();
        std::fs::write(path, text)?;
        cmd.arg("--consumer.config").arg(path);
    }
    let output = run(cmd, Duration::from_secs(600), "ConsumerPerformance");
    if let Some(path) = &config {
        let _ = std::fs::remove_file(path);
    }
    let output = output?;
    let result = output
        .stdout
        .lines()
        .find_map(ConsumerRun::parse_line)
        .with_context(|| format!("no ConsumerPerformance data line:\n{}", output.describe()))?;
    anyhow::ensure!(
        result.messages >= messages,
        "ConsumerPerformance read {} of {messages} messages:\n{}",
        result.messages,
        output.describe()
    );
    Ok(result)
}

/// What `EndToEndLatency` prints at the end (whole milliseconds for the percentiles).
#[derive(Debug, Clone, Serialize)]
pub struct EndToEndRun {
    pub messages: u64,
    pub avg_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

/// `org.apache.kafka.tools.EndToEndLatency broker_list topic num_messages producer_acks
/// message_size_bytes`.
pub fn end_to_end_latency(bootstrap: &str, topic: &str, messages: u64, acks: &str, size: usize) -> Result<EndToEndRun> {
    let mut cmd = java_command(PERF_JVM_OPTS)?;
    cmd.arg("org.apache.kafka.tools.EndToEndLatency").args([
        bootstrap,
        topic,
        &messages.to_string(),
        acks,
        &size.to_string(),
    ]);
    let output = run(cmd, Duration::from_secs(300), "EndToEndLatency")?;
    let parse = || -> Option<EndToEndRun> {
        let avg_line = output.stdout.lines().find(|l| l.starts_with("Avg latency:"))?;
        let avg_ms = avg_line.trim_start_matches("Avg latency:").split_whitespace().next()?.parse().ok()?;
        // "Percentiles: 50th = 1, 99th = 3, 99.9th = 7"
        let pct_line = output.stdout.lines().find(|l| l.starts_with("Percentiles:"))?;
        let values: Vec<f64> =
            pct_line.split(',').filter_map(|part| part.rsplit_once('=')?.1.trim().parse().ok()).collect();
        Some(EndToEndRun { messages, avg_ms, p50_ms: values[0], p99_ms: *values.get(1)?, p999_ms: *values.get(2)? })
    };
    parse().with_context(|| format!("no EndToEndLatency summary:\n{}", output.describe()))
}

/// One `RESULT` line of `LatencyProbe.java`, in milliseconds with microsecond resolution.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    pub n: u64,
    pub avg_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub rate: f64,
}

impl ProbeResult {
    pub fn parse(stdout: &str, what: &str) -> Option<ProbeResult> {
        let line = stdout.lines().find(|l| {
            l.strip_prefix("RESULT ").and_then(|r| r.split_whitespace().next()).is_some_and(|name| name == what)
        })?;
        let field = |name: &str| -> Option<f64> {
            line.split_whitespace().find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
        };
        Some(ProbeResult {
            n: field("n")? as u64,
            avg_ms: field("avg_ms")?,
            p50_ms: field("p50_ms")?,
            p99_ms: field("p99_ms")?,
            p999_ms: field("p999_ms")?,
            max_ms: field("max_ms")?,
            rate: field("rate")?,
        })
    }
}

/// Both measurements of `LatencyProbe.java`: publish latency at `rate` records/s for
/// `seconds`, then `e2e_count` produce-then-consume round trips on `e2e_topic`.
pub struct ProbeRun {
    pub produce: ProbeResult,
    /// `None` when no round trips were asked for.
    pub e2e: Option<ProbeResult>,
}

#[allow(clippy::too_many_arguments)]
pub fn latency_probe(
    bootstrap: &str,
    topic: &str,
    rate: f64,
    seconds: f64,
    size: usize,
    acks: &str,
    e2e_topic: &str,
    e2e_count: u64,
) -> Result<ProbeRun> {
    let mut cmd = java_command(PERF_JVM_OPTS)?;
    cmd.arg(probe_source()).args([
        bootstrap,
        topic,
        &format!("{rate:.0}"),
        &seconds.to_string(),
        &size.to_string(),
        acks,
        e2e_topic,
        &e2e_count.to_string(),
    ]);
    let output = run(cmd, Duration::from_secs(600), "LatencyProbe.java")?;
    let produce = ProbeResult::parse(&output.stdout, "produce");
    let e2e = ProbeResult::parse(&output.stdout, "e2e");
    match (produce, e2e) {
        (Some(produce), e2e) if e2e.is_some() || e2e_count == 0 => Ok(ProbeRun { produce, e2e }),
        _ => anyhow::bail!("LatencyProbe printed no RESULT lines:\n{}", output.describe()),
    }
}

pub fn probe_source() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("java/LatencyProbe.java")
}

fn run(cmd: Command, timeout: Duration, what: &str) -> Result<process::CommandOutput> {
    process::run(cmd, None, timeout)?.ensure_success(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_consumer_performance() {
        let line = "2026-11-23 14:00:00:000, 2026-11-23 14:00:05:000, 97.6562, 19.5312, 100000, 20000.0000, 312, 4688, 20.8312, 21331.0580";
        let run = ConsumerRun::parse_line(line).unwrap();
        assert_eq!(run.messages, 100000);
        assert_eq!(run.fetch_mib_per_sec, 20.8312);
        assert!(ConsumerRun::parse_line("start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec").is_none());
    }

    #[test]
    fn parses_probe_lines() {
        let out = "noise\nRESULT produce n=900 avg_ms=1.2000 p50_ms=1.1000 p99_ms=2.5000 p999_ms=3.0000 max_ms=4.0000 rate=999.5\n";
        let r = ProbeResult::parse(out, "produce").unwrap();
        assert_eq!((r.n, r.p99_ms, r.rate), (900, 2.5, 999.5));
        assert!(ProbeResult::parse(out, "e2e").is_none());
    }
}
