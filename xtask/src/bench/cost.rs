//! `--only cost`: what the gateway spends per request it proxies, on 1 and on 3 brokers, under
//! produce and under consume.
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
//!
//! Consume (`ConsumerPerformance` reading the topic produce filled, from its start, a new group
//! each run) is measured the same way, Fetch requests counted instead of Produce, with direct
//! runs taking turns too: at 3 brokers consume through the gateway fell further behind direct
//! than at 1, and the client's throughput ratio is the symptom the CPU figures explain.

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
/// Produce: gateway/baseline pairs (each pair swaps who goes first).
const PAIRS: usize = 2;
/// Consume: rounds of one run per side (direct, gateway, baseline), the order rotating.
const CONSUME_ROUNDS: usize = 3;
/// Records each warm-up run writes or reads.
const WARMUP_RECORDS: u64 = 100_000;
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

/// What the measured runs do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Unthrottled `ProducerPerformance`, `acks=1`.
    Produce,
    /// `ConsumerPerformance` reading the topic from its start, a new group each run, with
    /// direct runs taking turns too (the client's throughput against direct's).
    Consume,
}

impl Workload {
    pub const ALL: [Workload; 2] = [Workload::Produce, Workload::Consume];

    /// The API whose requests carry the workload.
    fn api(self) -> &'static str {
        match self {
            Workload::Produce => "Produce",
            Workload::Consume => "Fetch",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Workload::Produce => "produce acks=1",
            Workload::Consume => "consume",
        }
    }

    /// `produce` or `consume`, as `--only cost:<workload>` names it.
    pub fn parse(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }

    fn name(self) -> &'static str {
        match self {
            Workload::Produce => "produce",
            Workload::Consume => "consume",
        }
    }
}

/// One gateway's totals over its measured runs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GatewayCost {
    pub gateway: String,
    pub runs: usize,
    pub cpu_s: f64,
    pub requests: f64,
    /// Requests of the workload's API (Produce or Fetch).
    pub api_requests: f64,
    pub bytes: f64,
    /// The client's throughput in each run (MiB/s as the Kafka tool reports it; consume: over
    /// the fetch time).
    pub client_mib_s: Vec<f64>,
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

    fn add(&mut self, run: GatewayCost) {
        self.runs += 1;
        self.cpu_s += run.cpu_s;
        self.requests += run.requests;
        self.api_requests += run.api_requests;
        self.bytes += run.bytes;
        self.client_mib_s.extend(run.client_mib_s);
        for (event, count) in run.events {
            *self.events.entry(event).or_default() += count;
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CostReport {
    pub brokers: usize,
    pub workload: Workload,
    pub records_per_run: u64,
    pub gateways: Vec<GatewayCost>,
    /// Consume: the client's throughput straight to the brokers, in the same rounds.
    pub direct_mib_s: Vec<f64>,
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
    api_requests: f64,
    bytes: f64,
}

impl Counters {
    fn take(g: &Gateway, api: &str) -> Result<Counters> {
        let page = scrape_metrics(g.admin)?;
        let label = format!(r#"api="{api}""#);
        let of_api: String = page.lines().filter(|l| l.contains(&label)).collect::<Vec<_>>().join("\n");
        Ok(Counters {
            cpu_s: cpu_seconds(g.process.pid())?,
            requests: metric_sum(&page, "switchyard_requests_total"),
            api_requests: metric_sum(&of_api, "switchyard_requests_total"),
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

/// The cost of each workload on each cluster size in turn, each with its profile when asked.
pub fn per_request_cost(
    binary: &Path,
    record_size: usize,
    profile: bool,
    workloads: &[Workload],
) -> Result<Vec<CostReport>> {
    let mut reports = Vec::new();
    for brokers in BROKERS {
        reports.extend(one_cluster(brokers, binary, record_size, profile, workloads)?);
    }
    Ok(reports)
}

/// Where the client of a run connects: straight to the brokers, or to one of the gateways.
#[derive(Clone, Copy)]
enum Target {
    Direct,
    Gateway(usize),
}

/// One cluster of `brokers` and its gateways (the baseline too, when named), measured under
/// each workload in turn.
struct Bench {
    brokers: usize,
    direct: String,
    gateways: Vec<(String, Gateway)>,
    record_size: usize,
}

impl Bench {
    fn bootstrap(&self, target: Target) -> String {
        match target {
            Target::Direct => self.direct.clone(),
            Target::Gateway(i) => self.gateways[i].1.bootstrap.to_string(),
        }
    }

    /// One run of `workload` against `target` (`records` written or read); the client's MiB/s.
    fn run(&self, workload: Workload, target: Target, records: u64, run: usize) -> Result<f64> {
        let bootstrap = self.bootstrap(target);
        let result = match workload {
            Workload::Produce => {
                super::tools::producer_perf(&bootstrap, THROUGHPUT_TOPIC, records, self.record_size, -1, "1")
                    .map(|r| r.mib_per_sec)
            }
            Workload::Consume => {
                let group = format!("bench-cost-consume-{}-{run}", std::process::id());
                super::tools::consumer_perf(&bootstrap, THROUGHPUT_TOPIC, records, &group).map(|r| r.fetch_mib_per_sec)
            }
        };
        match target {
            Target::Direct => result,
            Target::Gateway(i) => {
                result.with_context(|| format!("gateway log:\n{}", self.gateways[i].1.process.log_tail()))
            }
        }
    }

    /// The measured turns of `workload`: per gateway its totals, and direct's throughput.
    fn turns(&self, workload: Workload) -> Result<(Vec<GatewayCost>, Vec<f64>)> {
        let mut totals: Vec<GatewayCost> = self
            .gateways
            .iter()
            .map(|(name, _)| GatewayCost { gateway: name.clone(), ..GatewayCost::default() })
            .collect();
        let mut direct = Vec::new();
        for (run, target) in self.order(workload).into_iter().enumerate() {
            let Target::Gateway(i) = target else {
                let mib_s = self.run(workload, target, PROFILE_RECORDS, run)?;
                println!("    direct   {mib_s:.1} MiB/s  [load {}]", loadavg());
                direct.push(mib_s);
                continue;
            };
            let (name, g) = &self.gateways[i];
            let before = Counters::take(g, workload.api())?;
            let stat = PerfStat::attach(g.process.pid())?;
            let mib_s = self.run(workload, target, PROFILE_RECORDS, run)?;
            let events = stat.map(PerfStat::finish).unwrap_or_default();
            let after = Counters::take(g, workload.api())?;
            let run = GatewayCost {
                gateway: name.clone(),
                runs: 1,
                cpu_s: after.cpu_s - before.cpu_s,
                requests: after.requests - before.requests,
                api_requests: after.api_requests - before.api_requests,
                bytes: after.bytes - before.bytes,
                client_mib_s: vec![mib_s],
                events,
            };
            println!(
                "    {name:<8} {mib_s:.1} MiB/s; {:.2} CPU s, {:.0} requests ({:.0} {}), {:.1} MB: {:.1} µs/request, {:.3} ms/MB{}  [load {}]",
                run.cpu_s,
                run.requests,
                run.api_requests,
                workload.api(),
                run.bytes / 1e6,
                run.us_per_request(),
                run.ms_per_mb(),
                run.events_per_request(),
                loadavg()
            );
            totals[i].add(run);
        }
        Ok((totals, direct))
    }

    /// Who runs when. Produce: the gateways in pairs, each pair swapping who goes first (G B B
    /// G). Consume: direct and the gateways, rounds whose order rotates (D G B, G B D, B D G).
    fn order(&self, workload: Workload) -> Vec<Target> {
        let n = self.gateways.len();
        match workload {
            Workload::Produce => (0..PAIRS)
                .flat_map(|i| if i % 2 == 0 { [0, 1] } else { [1, 0] })
                .filter(|&i| i < n)
                .map(Target::Gateway)
                .collect(),
            Workload::Consume => {
                let sides: Vec<Target> = std::iter::once(Target::Direct).chain((0..n).map(Target::Gateway)).collect();
                (0..CONSUME_ROUNDS)
                    .flat_map(|r| (0..sides.len()).map(move |k| (r, k)))
                    .map(|(r, k)| sides[(r + k) % sides.len()])
                    .collect()
            }
        }
    }

    /// Warm-up, the measured turns, and the profile when asked, of one workload.
    fn measure(&self, workload: Workload, profile: bool) -> Result<CostReport> {
        let brokers = self.brokers;
        step(&format!("warm-up: {WARMUP_RECORDS} records, {}, through each side", workload.label()));
        let warm: Vec<Target> = match workload {
            Workload::Produce => (0..self.gateways.len()).map(Target::Gateway).collect(),
            Workload::Consume => {
                std::iter::once(Target::Direct).chain((0..self.gateways.len()).map(Target::Gateway)).collect()
            }
        };
        for (i, target) in warm.into_iter().enumerate() {
            self.run(workload, target, WARMUP_RECORDS, 1000 + i)?;
        }
        step(&format!(
            "{brokers} broker(s): {}, {PROFILE_RECORDS} records of {} B per run, unthrottled, taking turns",
            workload.label(),
            self.record_size
        ));
        let (machine_before, loadavg_before) = (CpuSample::take(), loadavg());
        let (gateways, direct_mib_s) = self.turns(workload)?;
        let foreign_cpu_share = CpuSample::take().foreign_share_since(&machine_before);
        let loadavg_after = loadavg();
        let profile = if profile {
            step(&format!("profiling the gateway (perf) under the same {} run, unmeasured", workload.label()));
            let g = &self.gateways[0].1;
            let name = format!("profile-{brokers}-broker-{}", workload.name());
            let label = format!("{}, {brokers} broker(s)", workload.label());
            let work = || self.run(workload, Target::Gateway(0), PROFILE_RECORDS, 2000);
            let (result, text) = super::profile_gateway(g.process.pid(), &name, &label, work)?;
            result?;
            Some(text.display().to_string())
        } else {
            None
        };
        Ok(CostReport {
            brokers,
            workload,
            records_per_run: PROFILE_RECORDS,
            gateways,
            direct_mib_s,
            loadavg_before,
            loadavg_after,
            foreign_cpu_share,
            profile,
        })
    }
}

/// A cluster of `brokers`, the gateway (and the baseline), and each workload measured on it.
/// Consume reads what produce wrote; without the produce workload the topic is filled first.
fn one_cluster(
    brokers: usize,
    binary: &Path,
    record_size: usize,
    profile: bool,
    workloads: &[Workload],
) -> Result<Vec<CostReport>> {
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
    let bench = Bench { brokers, direct: direct.to_string(), gateways, record_size };
    if !workloads.contains(&Workload::Produce) {
        step(&format!("filling the topic: {PROFILE_RECORDS} records of {record_size} B, direct"));
        bench.run(Workload::Produce, Target::Direct, PROFILE_RECORDS, 0)?;
    }
    let reports = workloads.iter().map(|&w| bench.measure(w, profile)).collect::<Result<Vec<_>>>();
    for (_, mut g) in bench.gateways {
        g.process.terminate(Duration::from_secs(30));
    }
    reports
}

impl CostReport {
    /// Mean client throughput through `g` against direct's, in the same rounds (consume).
    fn vs_direct(&self, g: &GatewayCost) -> String {
        if self.direct_mib_s.is_empty() {
            return String::new();
        }
        let (gw, direct) = (super::median(&g.client_mib_s), super::median(&self.direct_mib_s));
        format!(", {gw:.1} MiB/s vs direct {direct:.1} (median; {:.2} of direct)", gw / direct)
    }

    pub fn summary(&self) -> String {
        let mut out = String::new();
        for g in &self.gateways {
            out.push_str(&format!(
                "    per-request cost, {} brokers, {}, {}: {:.1} µs/request, {:.3} ms/MB, {:.1} requests/MB, {:.0} KB per {} ({} runs){}{}\n",
                self.brokers,
                self.workload.label(),
                g.gateway,
                g.us_per_request(),
                g.ms_per_mb(),
                g.requests / (g.bytes / 1e6),
                g.bytes / 1e3 / g.api_requests,
                self.workload.api(),
                g.runs,
                self.vs_direct(g),
                g.events_per_request()
            ));
        }
        out
    }

    pub fn markdown(&self, md: &mut String) {
        let api = self.workload.api();
        md.push_str(&format!(
            "\n## Gateway CPU per request ({} brokers, {})\n\n\
             {} records per run; load average {} -> {}; other processes {:.0}% CPU.\n\n\
             | gateway | runs | CPU s | requests | {api} requests | MB | µs/request | ms/MB | client MiB/s (median) |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            self.brokers,
            self.workload.label(),
            self.records_per_run,
            self.loadavg_before,
            self.loadavg_after,
            self.foreign_cpu_share * 100.0
        ));
        for g in &self.gateways {
            md.push_str(&format!(
                "| {} | {} | {:.2} | {:.0} | {:.0} | {:.1} | {:.1} | {:.3} | {:.1} |\n",
                g.gateway,
                g.runs,
                g.cpu_s,
                g.requests,
                g.api_requests,
                g.bytes / 1e6,
                g.us_per_request(),
                g.ms_per_mb(),
                super::median(&g.client_mib_s)
            ));
        }
        if !self.direct_mib_s.is_empty() {
            md.push_str(&format!(
                "| direct | {} | | | | | | | {:.1} |\n",
                self.direct_mib_s.len(),
                super::median(&self.direct_mib_s)
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
