//! `--only cost`: what the gateway spends per request it proxies, on 1 and on 3 brokers.
//!
//! At 3 brokers a producer sends each broker its own, smaller Produce requests, so the
//! gateway's CPU per MB follows its cost per request rather than per byte (issue 16); the
//! 1-broker figures, with fewer and larger requests, tell the two costs apart. This section
//! measures that cost alone: unthrottled `ProducerPerformance` (`acks=1`, 1 KiB records, a
//! 6-partition topic replicated to every broker) through the gateway, and through a gateway
//! built from other code when `SWITCHYARD_BENCH_BASELINE` names one, the two taking turns
//! (G B B G …) so that drift of a shared machine hits both alike. The figures are the
//! gateway process's own CPU time (user + system) per request and per MB it proxied, from its
//! `/proc` counters and its metrics, not wall-clock throughput. When `perf` is installed,
//! `perf stat` counts the gateway's syscalls and context switches over each run too (per
//! request in the report). `--profile` adds, on each cluster, an unmeasured run with `perf
//! record` attached to the gateway.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use switchyard_testkit::{java, ChildGuard, ClusterSpec, KafkaCluster};

use super::system::{cpu_seconds, metric_sum, scrape_metrics, CpuSample};
use super::{start_gateway, start_gateway_with_env, Gateway, PARTITIONS, PROFILE_RECORDS, THROUGHPUT_TOPIC};
use crate::{step, target_dir};

const BROKERS: [usize; 2] = [1, 3];
/// Gateway/baseline pairs (each pair swaps who goes first).
const PAIRS: usize = 2;
/// What `perf stat` counts in the gateway process over each run.
const EVENTS: &[&str] = &[
    "context-switches",
    "cpu-migrations",
    "syscalls:sys_enter_recvfrom",
    "syscalls:sys_enter_sendto",
    "syscalls:sys_enter_writev",
    "syscalls:sys_enter_epoll_wait",
    "syscalls:sys_enter_futex",
];

/// One gateway's totals over its measured runs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GatewayCost {
    pub gateway: String,
    pub runs: usize,
    pub cpu_s: f64,
    pub requests: f64,
    pub produce_requests: f64,
    pub bytes: f64,
    /// `perf stat` counts ([`EVENTS`]) summed over the runs; empty without `perf`.
    pub events: BTreeMap<String, f64>,
}

impl GatewayCost {
    pub fn us_per_request(&self) -> f64 {
        self.cpu_s * 1e6 / self.requests
    }

    pub fn ms_per_mb(&self) -> f64 {
        self.cpu_s * 1e3 / (self.bytes / 1e6)
    }

    /// The `perf stat` counts per request, as `; event a.bb, …` (empty without counts).
    fn events_per_request(&self) -> String {
        self.events
            .iter()
            .map(|(event, count)| {
                format!("; {} {:.2}", event.trim_start_matches("syscalls:sys_enter_"), count / self.requests)
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CostReport {
    pub brokers: usize,
    pub records_per_run: u64,
    pub gateways: Vec<GatewayCost>,
    /// `/proc/loadavg` before and after the measured runs.
    pub loadavg_before: String,
    pub loadavg_after: String,
    /// Share of the machine's CPU that processes outside the bench used during the runs.
    pub foreign_cpu_share: f64,
    pub profile: Option<String>,
}

/// The gateway's counters at one moment.
struct Counters {
    cpu_s: f64,
    requests: f64,
    produce_requests: f64,
    bytes: f64,
}

impl Counters {
    fn take(g: &Gateway) -> Result<Counters> {
        let page = scrape_metrics(g.admin)?;
        let produce: String = page.lines().filter(|l| l.contains(r#"api="Produce""#)).collect::<Vec<_>>().join("\n");
        Ok(Counters {
            cpu_s: cpu_seconds(g.process.pid())?,
            requests: metric_sum(&page, "switchyard_requests_total"),
            produce_requests: metric_sum(&produce, "switchyard_requests_total"),
            bytes: metric_sum(&page, "switchyard_bytes_total"),
        })
    }
}

/// `perf stat` counting [`EVENTS`] in one process until [`PerfStat::finish`].
struct PerfStat {
    recorder: ChildGuard,
    out: std::path::PathBuf,
}

impl PerfStat {
    /// `None` when `perf` is not installed.
    fn attach(pid: u32) -> Result<Option<PerfStat>> {
        if !Command::new("perf").arg("--version").output().is_ok_and(|o| o.status.success()) {
            return Ok(None);
        }
        let dir = target_dir().join("bench");
        std::fs::create_dir_all(&dir)?;
        let out = dir.join(format!("perf-stat-{pid}.csv"));
        let mut perf = Command::new("perf");
        perf.args(["stat", "-x", ",", "-e", &EVENTS.join(","), "-p", &pid.to_string(), "-o"]).arg(&out);
        let recorder = ChildGuard::spawn_logged(perf, &dir.join("perf-stat.log"))?;
        // perf needs a moment to attach before the run begins.
        std::thread::sleep(Duration::from_millis(300));
        Ok(Some(PerfStat { recorder, out }))
    }

    /// Stops counting; the counts by event name.
    fn finish(mut self) -> BTreeMap<String, f64> {
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(self.recorder.pid() as libc::pid_t, libc::SIGINT) };
        self.recorder.wait_timeout(Duration::from_secs(30));
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        // CSV lines: value, unit, event, …
        text.lines()
            .filter_map(|line| {
                let mut fields = line.split(',');
                let value = fields.next()?.parse::<f64>().ok()?;
                let event = fields.nth(1)?;
                Some((event.to_owned(), value))
            })
            .collect()
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned()
}

/// The cost on each cluster size in turn, each with its profile when asked.
pub fn per_request_cost(binary: &Path, record_size: usize, profile: bool) -> Result<Vec<CostReport>> {
    BROKERS.iter().map(|&brokers| one_cluster(brokers, binary, record_size, profile)).collect()
}

/// A cluster of `brokers`, the gateway (and the baseline), warm-up, the measured turns, and the
/// profile when asked.
fn one_cluster(brokers: usize, binary: &Path, record_size: usize, profile: bool) -> Result<CostReport> {
    step(&format!("starting a {brokers}-broker Kafka 4.1.1 for the per-request cost"));
    let cluster = KafkaCluster::start(ClusterSpec::with_brokers(brokers))?;
    let direct = cluster.bootstrap();
    java::create_topic(&direct, THROUGHPUT_TOPIC, PARTITIONS, brokers as i16)?;
    cluster.wait_for_topic(THROUGHPUT_TOPIC, PARTITIONS as usize)?;
    let mut gateways = vec![("gateway".to_owned(), start_gateway(binary, &cluster)?)];
    if let Some(path) = std::env::var_os("SWITCHYARD_BENCH_BASELINE") {
        let env = std::env::var("SWITCHYARD_BENCH_BASELINE_ENV").unwrap_or_default();
        let env: Vec<(&str, &str)> = env.split(',').filter_map(|kv| kv.split_once('=')).collect();
        gateways.push(("baseline".to_owned(), start_gateway_with_env(Path::new(&path), &cluster, &env)?));
    }
    let produce = |g: &Gateway, records: u64| {
        super::tools::producer_perf(&g.bootstrap.to_string(), THROUGHPUT_TOPIC, records, record_size, -1, "1")
            .with_context(|| format!("gateway log:\n{}", g.process.log_tail()))
    };
    step("warm-up: 100000 records through each gateway");
    for (_, g) in &gateways {
        produce(g, 100_000)?;
    }
    step(&format!(
        "{brokers} broker(s): produce acks=1, {PROFILE_RECORDS} records of {record_size} B per run, unthrottled, gateways taking turns"
    ));
    let mut totals: Vec<GatewayCost> =
        gateways.iter().map(|(name, _)| GatewayCost { gateway: name.clone(), ..GatewayCost::default() }).collect();
    let order: Vec<usize> =
        (0..PAIRS).flat_map(|i| if i % 2 == 0 { [0, 1] } else { [1, 0] }).filter(|&i| i < gateways.len()).collect();
    let (machine_before, loadavg_before) = (CpuSample::take(), loadavg());
    for i in order {
        let (name, g) = &gateways[i];
        let before = Counters::take(g)?;
        let stat = PerfStat::attach(g.process.pid())?;
        produce(g, PROFILE_RECORDS)?;
        let events = stat.map(PerfStat::finish).unwrap_or_default();
        let after = Counters::take(g)?;
        let run = GatewayCost {
            gateway: name.clone(),
            runs: 1,
            cpu_s: after.cpu_s - before.cpu_s,
            requests: after.requests - before.requests,
            produce_requests: after.produce_requests - before.produce_requests,
            bytes: after.bytes - before.bytes,
            events,
        };
        println!(
            "    {name:<8} {:.2} CPU s, {:.0} requests ({:.0} Produce), {:.1} MB: {:.1} µs/request, {:.3} ms/MB{}  [load {}]",
            run.cpu_s,
            run.requests,
            run.produce_requests,
            run.bytes / 1e6,
            run.us_per_request(),
            run.ms_per_mb(),
            run.events_per_request(),
            loadavg()
        );
        let t = &mut totals[i];
        t.runs += 1;
        t.cpu_s += run.cpu_s;
        t.requests += run.requests;
        t.produce_requests += run.produce_requests;
        t.bytes += run.bytes;
        for (event, count) in run.events {
            *t.events.entry(event).or_default() += count;
        }
    }
    let foreign_cpu_share = CpuSample::take().foreign_share_since(&machine_before);
    let loadavg_after = loadavg();
    let profile = if profile {
        step("profiling the gateway (perf) under the same produce run, unmeasured");
        let g = &gateways[0].1;
        let (name, label) =
            (format!("profile-{brokers}-broker-per-request"), format!("produce acks=1, {brokers} broker(s)"));
        let (result, text) = super::profile_gateway(g.process.pid(), &name, &label, || produce(g, PROFILE_RECORDS))?;
        result?;
        Some(text.display().to_string())
    } else {
        None
    };
    for (_, mut g) in gateways {
        g.process.terminate(std::time::Duration::from_secs(30));
    }
    let report = CostReport {
        brokers,
        records_per_run: PROFILE_RECORDS,
        gateways: totals,
        loadavg_before,
        loadavg_after,
        foreign_cpu_share,
        profile,
    };
    Ok(report)
}

impl CostReport {
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for g in &self.gateways {
            out.push_str(&format!(
                "    per-request cost, {} brokers, {}: {:.1} µs/request, {:.3} ms/MB, {:.1} requests/MB ({} runs){}\n",
                self.brokers,
                g.gateway,
                g.us_per_request(),
                g.ms_per_mb(),
                g.requests / (g.bytes / 1e6),
                g.runs,
                g.events_per_request()
            ));
        }
        out
    }

    pub fn markdown(&self, md: &mut String) {
        md.push_str(&format!(
            "\n## Gateway CPU per request ({} brokers, produce acks=1)\n\n\
             {} records per run; load average {} -> {}; other processes {:.0}% CPU.\n\n\
             | gateway | runs | CPU s | requests | Produce requests | MB | µs/request | ms/MB |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|\n",
            self.brokers,
            self.records_per_run,
            self.loadavg_before,
            self.loadavg_after,
            self.foreign_cpu_share * 100.0
        ));
        for g in &self.gateways {
            md.push_str(&format!(
                "| {} | {} | {:.2} | {:.0} | {:.0} | {:.1} | {:.1} | {:.3} |\n",
                g.gateway,
                g.runs,
                g.cpu_s,
                g.requests,
                g.produce_requests,
                g.bytes / 1e6,
                g.us_per_request(),
                g.ms_per_mb()
            ));
        }
        for g in self.gateways.iter().filter(|g| !g.events.is_empty()) {
            md.push_str(&format!("\nPer request, {} (`perf stat`){}\n", g.gateway, g.events_per_request()));
        }
        if let Some(p) = &self.profile {
            md.push_str(&format!("\nProfile: `{p}`\n"));
        }
    }
}
