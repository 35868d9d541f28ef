//! `cargo xtask bench [--quick] [--only main|tls]`: the gateway against direct Kafka, on this
//! machine, in one run.
//!
//! Builds the release gateway, starts a real Kafka (1 broker, then 3; `--quick`: 1 only) and a
//! gateway in front of it, and runs each workload straight against the brokers and through the
//! gateway, alternating sides (D G G D D G …) so that drift of the machine hits both alike:
//!
//! - produce throughput: `ProducerPerformance`, 1 KiB records, `acks=1` and `acks=all`, a
//!   6-partition topic;
//! - consume throughput: `ConsumerPerformance` over the same data;
//! - latency at half load: `ProducerPerformance --throughput` at half the direct `acks=all`
//!   maximum (whole-ms percentiles), the same load from `xtask/java/LatencyProbe.java`
//!   (µs resolution), and produce-then-consume round trips from Kafka's `EndToEndLatency` and
//!   from the probe;
//! - gateway cost: CPU seconds (utime+stime of the gateway process) per byte it proxied
//!   (`switchyard_bytes_total`), and its peak RSS;
//! - connection cost: N idle client connections (see [`connections`]);
//! - TLS cost: produce (`acks=1`) and consume throughput and gateway CPU ms per MB with TLS on
//!   the client leg, and on both legs, against plaintext in the same run, on a broker with an
//!   SSL listener; direct TLS to Kafka as a reference (see [`tls`]).
//!
//! - closed-loop latency: one record at a time (`acks=1`, `linger.ms=0`) and produce->consume
//!   round trips, direct and through a gateway of its own, from one JVM taking turns between the
//!   sides, with the gateway's own time histograms and a chart (see [`latency`]).
//!
//! `--only main` runs everything but the TLS section, `--only tls` the TLS section alone,
//! `--only latency` the closed-loop latency probe alone (1 broker, a few minutes), `--only
//! cost` the gateway's CPU per request at 1 and 3 brokers alone, under produce and consume
//! (`--only cost:produce`, `--only cost:consume`: one of them; see [`cost`]; in no other run).
//!
//! It writes `target/bench/report.md` and `target/bench/report.json` and exits 0 whenever it
//! ran: goals are reported as pass/fail, never enforced.

mod connections;
mod cost;
mod latency;
mod peers;
mod report;
mod side_throughput;
mod system;
mod tls;
mod tools;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use switchyard_testkit::{
    free_port_block, java, ChildGuard, ClusterSpec, GatewayProcess, GatewayYaml, KafkaCluster, KafkaDomain, KafkaJars,
};

use crate::{cargo, step, target_dir};
use report::{ClusterReport, Comparison, Cost, Report, RunRecord};
use system::{cpu_seconds, metric_sum, scrape_metrics, vm_kib, CpuSample, Machine};

const RECORD_SIZE: usize = 1024;
const PARTITIONS: i32 = 6;
const THROUGHPUT_TOPIC: &str = "bench-throughput";
const LATENCY_TOPIC: &str = "bench-latency";
const E2E_TOPIC: &str = "bench-e2e";
/// The light-load publish latency point, records/s: well below what any setup here saturates
/// at, so its percentiles show the path's own latency rather than queueing.
const LIGHT_LOAD_RATE: f64 = 1_000.0;
/// Records of a profiled produce run: enough gateway CPU time for a few thousand samples.
const PROFILE_RECORDS: u64 = 400_000;
/// What the bench asks for; the broker and the gateway inherit it.
const NOFILE_WANTED: u64 = 65536;
/// The brokers' accept backlog (Kafka's default is 50): the connection test opens thousands of
/// broker connections through the gateway at once, and that measures the gateway, not this.
const BROKER_LISTEN_BACKLOG: &str = "1024";

/// How much of everything to run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub mode: &'static str,
    pub broker_counts: Vec<usize>,
    pub record_size: usize,
    pub partitions: i32,
    /// Records per throughput run (each produce run, and what each consume run reads).
    pub produce_records: u64,
    /// Unmeasured runs on both sides first, so neither side meets a cold broker.
    pub warmup_records: u64,
    /// Direct/gateway pairs per throughput workload.
    pub throughput_reps: usize,
    /// Direct/gateway pairs per latency workload.
    pub latency_reps: usize,
    pub latency_seconds: f64,
    /// Round trips per end-to-end latency run.
    pub e2e_messages: u64,
    pub connections: usize,
    /// Record the gateway with `perf` during an extra, unmeasured gateway run of the produce
    /// and consume workloads.
    pub profile: bool,
    /// The sections run: `main` (throughput, latency, cost and connections against plaintext
    /// Kafka), `tls` (the TLS cost) and `latency` (the closed-loop probe, on 1 broker).
    pub sections: Vec<&'static str>,
    pub closed_loop: latency::ClosedLoopPlan,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                mode: "quick",
                broker_counts: vec![1],
                record_size: RECORD_SIZE,
                partitions: PARTITIONS,
                produce_records: 150_000,
                warmup_records: 50_000,
                throughput_reps: 1,
                latency_reps: 1,
                latency_seconds: 5.0,
                e2e_messages: 1_000,
                connections: 5_000,
                profile: false,
                sections: vec!["main", "tls", "latency"],
                closed_loop: latency::ClosedLoopPlan {
                    rounds: 4,
                    per_round: 1_000,
                    e2e_per_round: 100,
                    record_size: RECORD_SIZE,
                },
            }
        } else {
            Plan {
                mode: "full",
                broker_counts: vec![1, 3],
                record_size: RECORD_SIZE,
                partitions: PARTITIONS,
                produce_records: 300_000,
                warmup_records: 100_000,
                throughput_reps: 2,
                latency_reps: 2,
                latency_seconds: 8.0,
                e2e_messages: 2_000,
                connections: 10_000,
                profile: false,
                sections: vec!["main", "tls", "latency"],
                closed_loop: latency::ClosedLoopPlan {
                    rounds: 10,
                    per_round: 1_000,
                    e2e_per_round: 1_000,
                    record_size: RECORD_SIZE,
                },
            }
        }
    }
}

pub fn bench(args: &[String]) -> Result<ExitCode> {
    const USAGE: &str = "usage: cargo xtask bench [--quick] [--wait-quiet] [--profile] [--only main|tls|latency|cost|cost:produce|cost:consume]";
    let (mut quick, mut wait_quiet, mut profile, mut only) = (false, false, false, None);
    // `--only cost:<workload>`: that workload alone; both otherwise.
    let mut cost_workload = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--wait-quiet" => wait_quiet = true,
            "--profile" => profile = true,
            "--only" => match args.next().map(String::as_str) {
                Some("main") => only = Some("main"),
                Some("tls") => only = Some("tls"),
                Some("latency") => only = Some("latency"),
                Some("cost") => only = Some("cost"),
                Some(name) if name.strip_prefix("cost:").and_then(cost::Workload::parse).is_some() => {
                    cost_workload = name.strip_prefix("cost:").and_then(cost::Workload::parse);
                    only = Some("cost");
                }
                other => bail!(
                    "`--only` takes `main`, `tls`, `latency` or `cost[:produce|:consume]`, not {other:?}: {USAGE}"
                ),
            },
            other => bail!("unknown argument `{other}`: {USAGE}"),
        }
    }
    let mut plan = Plan::new(quick);
    plan.profile = profile;
    if let Some(section) = only {
        plan.sections = vec![section];
    }
    let (run_main, run_tls, run_latency) =
        (plan.sections.contains(&"main"), plan.sections.contains(&"tls"), plan.sections.contains(&"latency"));
    if profile && !Command::new("perf").arg("--version").output().is_ok_and(|o| o.status.success()) {
        bail!("--profile needs `perf` (Debian: apt-get install linux-perf)");
    }
    let started = Instant::now();
    let nofile = system::raise_nofile_limit(NOFILE_WANTED)?;

    step("building the gateway (release): cargo build --release -p switchyard");
    let status = cargo().args(["build", "--release", "--quiet", "-p", "switchyard", "--bin", "switchyard"]).status()?;
    if !status.success() {
        bail!("the release build failed");
    }
    let binary = target_dir().join("release/switchyard");
    let gateway_source = gateway_source();
    println!("    gateway source: {gateway_source}");
    step("fetching the Kafka 4.1.1 jars (cached after the first run)");
    KafkaJars::ensure()?;
    let machine = Machine::describe();
    println!("    {} x {}, {} GiB, kernel {}", machine.nproc, machine.cpu_model, machine.memory_gib, machine.kernel);
    if wait_quiet {
        step("waiting (up to 10 min) until other processes use under 10% of the CPU");
        let share = system::wait_for_quiet_machine(0.10, Duration::from_secs(600));
        println!("    other processes: {:.0}% of the machine's CPU", share * 100.0);
    }
    let cpu_at_start = CpuSample::take();

    let mut notes = Vec::new();
    let mut clusters = Vec::new();
    let mut connection_report = None;
    let mut closed_loop = None;
    let broker_counts = match (run_main, run_latency) {
        (true, _) => plan.broker_counts.clone(),
        (false, true) => vec![1],
        (false, false) => Vec::new(),
    };
    for &brokers in &broker_counts {
        step(&format!("starting a {brokers}-broker Kafka 4.1.1"));
        let spec = ClusterSpec::with_brokers(brokers).prop("socket.listen.backlog.size", BROKER_LISTEN_BACKLOG);
        let cluster = KafkaCluster::start(spec)?;
        if run_main {
            clusters.push(run_cluster(&plan, &cluster, &binary)?);
            if brokers == 1 {
                // The gateway needs 2 fds per connection (client and broker side) plus a few hundred
                // of its own; the broker and the bench 1 each.
                let affordable = (nofile.saturating_sub(400) / 2) as usize;
                let n = plan.connections.min(affordable);
                if n < plan.connections {
                    notes.push(format!(
                        "RLIMIT_NOFILE could only be raised to {nofile} here (the hard limit; raising it needs \
                         CAP_SYS_RESOURCE): the gateway needs two descriptors per proxied connection, so the \
                         connection test used {n} connections, not {}",
                        plan.connections
                    ));
                }
                connection_report = Some(connections::idle_connections(&cluster, &binary, n, nofile)?);
            }
        }
        // After the main section, whose topic creation expects a fresh cluster.
        if run_latency && brokers == 1 {
            closed_loop = Some(latency::closed_loop(&cluster, &binary, plan.closed_loop)?);
        }
        step(&format!("stopping the {brokers}-broker Kafka"));
        drop(cluster);
    }
    let tls_report = if run_tls { Some(tls::tls_cost(&plan, &binary)?) } else { None };
    let per_request = if plan.sections.contains(&"cost") {
        let workloads = cost_workload.map_or(cost::Workload::ALL.to_vec(), |w| vec![w]);
        cost::per_request_cost(&binary, plan.record_size, plan.profile, &workloads)?
    } else {
        Vec::new()
    };

    let foreign = CpuSample::take().foreign_share_since(&cpu_at_start);
    if foreign > 0.10 {
        notes.insert(
            0,
            format!(
                "**The machine was busy**: processes outside the benchmark used {:.0}% of its CPU during the run \
                 (per-run shares are in report.json), so these figures are noisy. Rerun on a quiet machine \
                 (`--wait-quiet` waits for one).",
                foreign * 100.0
            ),
        );
    }
    let mut report = Report::new(plan, machine, clusters, connection_report, notes, started.elapsed(), foreign);
    report.gateway_source = gateway_source;
    report.tls = tls_report;
    report.closed_loop = closed_loop;
    report.per_request = per_request;
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let (md, json) = (dir.join("report.md"), dir.join("report.json"));
    std::fs::write(&md, report.markdown())?;
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)?;
    step("results");
    print!("{}", report.summary());
    println!("\n    full report: {}\n                 {}", md.display(), json.display());
    println!("    took {:.0} s", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

/// The commit the gateway was built from, and whether `src/` had uncommitted changes.
fn gateway_source() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(crate::workspace_root())
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(commit)
            if git(&["status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"])
                .is_some_and(|s| !s.is_empty()) =>
        {
            format!("{commit} with uncommitted changes in src/")
        }
        Some(commit) => commit,
        None => "unknown (not a git checkout)".to_owned(),
    }
}

/// A gateway in front of a cluster, with its admin API on a free port.
pub(crate) struct Gateway {
    pub process: GatewayProcess,
    pub bootstrap: SocketAddr,
    pub admin: SocketAddr,
}

pub(crate) fn start_gateway(binary: &Path, cluster: &KafkaCluster) -> Result<Gateway> {
    start_gateway_with_env(binary, cluster, &[])
}

/// [`start_gateway`] with extra environment variables for the gateway.
pub(crate) fn start_gateway_with_env(binary: &Path, cluster: &KafkaCluster, env: &[(&str, &str)]) -> Result<Gateway> {
    let brokers = cluster.brokers();
    let first = brokers.iter().map(|(id, _)| *id).min().unwrap_or(1);
    let last = brokers.iter().map(|(id, _)| *id).max().unwrap_or(1);
    let base_port = free_port_block((last - first + 2) as u16);
    let admin_port = free_port_block(1);
    let bootstrap = SocketAddr::from(([127, 0, 0, 1], base_port));
    let admin = SocketAddr::from(([127, 0, 0, 1], admin_port));
    let upstream = cluster.bootstrap();
    let domain = KafkaDomain {
        name: "bench-kafka",
        cluster_name: "bench-cluster",
        ..KafkaDomain::new(&upstream, (first, last))
    };
    // Every bench client connects from 127.0.0.1, and the connection-cost section opens thousands
    // at once: the bench measures what connections cost, not the per-client limit.
    let sections =
        "proxy:\n  maxConnections: 65536\n  maxConnectionsPerRoute: 65536\n  maxConnectionsPerClient: 65536\n"
            .to_string();
    let yaml = GatewayYaml {
        admin: Some(admin),
        gateway_wrapper: true,
        sections,
        ..GatewayYaml::one_route(domain, bootstrap)
    }
    .to_string();
    let process = GatewayProcess::start_with_env(binary, &yaml, env, &[bootstrap, admin])?;
    Ok(Gateway { process, bootstrap, admin })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Direct,
    Gateway,
}

/// D G, G D, D G, …: each pair swaps who goes first, so a steady drift favours neither side.
fn sides(pairs: usize) -> Vec<Side> {
    (0..pairs)
        .flat_map(|i| if i % 2 == 0 { [Side::Direct, Side::Gateway] } else { [Side::Gateway, Side::Direct] })
        .collect()
}

/// One cluster's workloads, with the gateway's CPU and bytes sampled around each gateway run.
struct Bench {
    direct: String,
    gateway: Gateway,
    costs: BTreeMap<&'static str, Cost>,
    comparisons: BTreeMap<&'static str, Comparison>,
    order: Vec<&'static str>,
    runs: Vec<RunRecord>,
    /// Where profiles go, and what they are called after.
    profile_prefix: Option<String>,
    profiles: Vec<String>,
}

impl Bench {
    /// An extra, unmeasured gateway run of `work` with `perf record` attached to the gateway;
    /// writes `perf report` summaries next to the report.
    fn profile<T>(&mut self, label: &str, work: impl FnOnce(&str) -> Result<T>) -> Result<()> {
        let Some(prefix) = self.profile_prefix.clone() else { return Ok(()) };
        let name = format!("{prefix}-{}", label.replace([' ', '='], "-"));
        let bootstrap = self.gateway.bootstrap.to_string();
        let (result, text) = profile_gateway(self.gateway.process.pid(), &name, label, || work(&bootstrap))?;
        result?;
        self.profiles.push(text.display().to_string());
        Ok(())
    }

    fn bootstrap(&self, side: Side) -> String {
        match side {
            Side::Direct => self.direct.clone(),
            Side::Gateway => self.gateway.bootstrap.to_string(),
        }
    }

    /// Runs `work` against `side`; on the gateway side, charges its CPU time and bytes to
    /// `workload` (unless `None`: warm-up).
    fn run<T: serde::Serialize>(
        &mut self,
        side: Side,
        workload: Option<&'static str>,
        work: impl FnOnce(&str) -> Result<T>,
    ) -> Result<T> {
        let bootstrap = self.bootstrap(side);
        let machine_before = CpuSample::take();
        if side == Side::Direct {
            let result = work(&bootstrap)?;
            let foreign = CpuSample::take().foreign_share_since(&machine_before);
            self.record(side, workload, &result, None, foreign);
            return Ok(result);
        }
        let pid = self.gateway.process.pid();
        let (cpu0, (bytes0, requests0)) = (cpu_seconds(pid)?, self.gateway_traffic()?);
        let result = work(&bootstrap).with_context(|| format!("gateway log:\n{}", self.gateway.process.log_tail()))?;
        let (cpu1, (bytes1, requests1)) = (cpu_seconds(pid)?, self.gateway_traffic()?);
        let foreign = CpuSample::take().foreign_share_since(&machine_before);
        let cost = (cpu1 - cpu0, bytes1 - bytes0, requests1 - requests0);
        if let Some(workload) = workload {
            self.costs.entry(workload).or_insert_with(|| Cost::new(workload)).add(cost.0, cost.1, cost.2);
        }
        self.record(side, workload, &result, Some(cost), foreign);
        Ok(result)
    }

    fn record<T: serde::Serialize>(
        &mut self,
        side: Side,
        workload: Option<&str>,
        result: &T,
        cost: Option<(f64, f64, f64)>,
        foreign_cpu_share: f64,
    ) {
        let result = serde_json::to_value(result).unwrap_or_default();
        let busy = if foreign_cpu_share > 0.05 {
            format!("  [other processes used {:.0}% CPU]", foreign_cpu_share * 100.0)
        } else {
            String::new()
        };
        println!(
            "    {:<8} {:<22} {}{}{busy}",
            format!("{side:?}"),
            workload.unwrap_or("warm-up"),
            compact(&result),
            cost.map(|(cpu, bytes, requests)| format!(
                "  [gateway {cpu:.2} CPU s, {:.1} MB, {requests:.0} requests]",
                bytes / 1e6
            ))
            .unwrap_or_default()
        );
        self.runs.push(RunRecord {
            workload: workload.unwrap_or("warm-up").to_owned(),
            side,
            result,
            gateway_cpu_s: cost.map(|c| c.0),
            gateway_bytes: cost.map(|c| c.1),
            gateway_requests: cost.map(|c| c.2),
            foreign_cpu_share,
        });
    }

    /// Bytes proxied (both directions) and requests forwarded so far.
    fn gateway_traffic(&self) -> Result<(f64, f64)> {
        let page = scrape_metrics(self.gateway.admin)?;
        Ok((metric_sum(&page, "switchyard_bytes_total"), metric_sum(&page, "switchyard_requests_total")))
    }

    /// Adds one side's value to the comparison `key`.
    fn compare(&mut self, key: &'static str, name: &str, unit: &str, higher_is_better: bool, side: Side, value: f64) {
        if !self.comparisons.contains_key(key) {
            self.order.push(key);
        }
        let c = self.comparisons.entry(key).or_insert_with(|| Comparison::new(key, name, unit, higher_is_better));
        match side {
            Side::Direct => c.direct.push(value),
            Side::Gateway => c.gateway.push(value),
        }
    }
}

/// Runs `work` with `perf record` attached to the gateway process `pid`, then writes `perf
/// report` summaries (`<name>.txt`: by shared object and by symbol; `<name>.callgraph.txt`:
/// callers of the top symbols) to `target/bench`. Returns `work`'s result and the summary's path.
pub(crate) fn profile_gateway<T>(
    pid: u32,
    name: &str,
    label: &str,
    work: impl FnOnce() -> Result<T>,
) -> Result<(Result<T>, std::path::PathBuf)> {
    let dir = target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    let data = dir.join(format!("{name}.perf.data"));
    // perf would keep the previous recording as `.old`; one is enough.
    let _ = std::fs::remove_file(&data);
    let mut perf = Command::new("perf");
    perf.args(["record", "-e", "cpu-clock", "-F", "4999", "--call-graph", "dwarf,16384", "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(&data);
    let mut recorder = ChildGuard::spawn_logged(perf, &dir.join(format!("{name}.perf.log")))?;
    std::thread::sleep(Duration::from_millis(500));
    let cpu0 = cpu_seconds(pid)?;
    let result = work();
    let cpu = cpu_seconds(pid)? - cpu0;
    // SAFETY: signalling our own child, which has not been reaped yet.
    unsafe { libc::kill(recorder.pid() as libc::pid_t, libc::SIGINT) };
    recorder.wait_timeout(Duration::from_secs(120));
    let mut summary = format!("# gateway profile: {label} through the gateway ({cpu:.2} CPU s)\n");
    for (title, sort) in [("by shared object", "dso"), ("by symbol", "dso,symbol")] {
        let report = Command::new("perf")
            .args(["report", "--stdio", "--no-children", "-g", "none", "--percent-limit", "0.5", "--sort", sort, "-i"])
            .arg(&data)
            .output()?;
        summary.push_str(&format!("\n## {title}\n\n{}", String::from_utf8_lossy(&report.stdout)));
    }
    let callers = Command::new("perf")
        .args(["report", "--stdio", "--no-children", "-G", "--percent-limit", "3", "--sort", "symbol", "-i"])
        .arg(&data)
        .output()?;
    let text = dir.join(format!("{name}.txt"));
    std::fs::write(&text, &summary)?;
    std::fs::write(dir.join(format!("{name}.callgraph.txt")), &callers.stdout)?;
    println!("    profiled: {} ({cpu:.2} gateway CPU s)", text.display());
    Ok((result, text))
}

/// Compact one-line rendering of a run's figures for the console.
fn compact(value: &serde_json::Value) -> String {
    match value.as_object() {
        Some(map) => map
            .iter()
            .map(|(k, v)| match v.as_f64() {
                Some(f) if f.fract() != 0.0 => format!("{k}={f:.3}"),
                _ => format!("{k}={v}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        None => value.to_string(),
    }
}

fn run_cluster(plan: &Plan, cluster: &KafkaCluster, binary: &Path) -> Result<ClusterReport> {
    let brokers = cluster.brokers().len();
    let replication = brokers.min(3) as i16;
    let direct = cluster.bootstrap();
    step(&format!("{brokers} broker(s): topics ({PARTITIONS} partitions, replication factor {replication})"));
    for (topic, partitions) in [(THROUGHPUT_TOPIC, PARTITIONS), (LATENCY_TOPIC, PARTITIONS), (E2E_TOPIC, 1)] {
        java::create_topic(&direct, topic, partitions, replication)?;
        cluster.wait_for_topic(topic, partitions as usize)?;
    }
    step(&format!("{brokers} broker(s): starting the gateway"));
    let gateway = start_gateway(binary, cluster)?;
    println!("    gateway on {} (admin {}), brokers {direct}", gateway.bootstrap, gateway.admin);
    let mut b = Bench {
        direct,
        gateway,
        costs: BTreeMap::new(),
        comparisons: BTreeMap::new(),
        order: Vec::new(),
        runs: Vec::new(),
        profile_prefix: plan.profile.then(|| format!("profile-{brokers}-broker")),
        profiles: Vec::new(),
    };
    let (n, size) = (plan.produce_records, plan.record_size);

    step(&format!("{brokers} broker(s): warm-up, both sides ({} records)", plan.warmup_records));
    for side in sides(1) {
        b.run(side, None, |bs| tools::producer_perf(bs, THROUGHPUT_TOPIC, plan.warmup_records, size, -1, "1"))?;
    }
    for side in sides(1) {
        let group = format!("bench-warmup-{side:?}");
        b.run(side, None, |bs| tools::consumer_perf(bs, THROUGHPUT_TOPIC, plan.warmup_records, &group))?;
    }

    for (acks, workload, key, key_rec) in [
        ("1", "produce acks=1", "produce_acks1_mib_s", "produce_acks1_rec_s"),
        ("all", "produce acks=all", "produce_acksall_mib_s", "produce_acksall_rec_s"),
    ] {
        step(&format!("{brokers} broker(s): {workload}, {n} records of {size} B, unthrottled"));
        for side in sides(plan.throughput_reps) {
            let r = b.run(side, Some(workload), |bs| tools::producer_perf(bs, THROUGHPUT_TOPIC, n, size, -1, acks))?;
            b.compare(key, &format!("{workload} throughput"), "MiB/s", true, side, r.mib_per_sec);
            b.compare(key_rec, &format!("{workload} throughput"), "records/s", true, side, r.records_per_sec);
            b.compare(
                if acks == "1" { "produce_acks1_p99_ms" } else { "produce_acksall_p99_ms" },
                &format!("{workload} p99 latency at full load"),
                "ms",
                false,
                side,
                r.p99_ms,
            );
        }
    }

    if plan.profile {
        step(&format!(
            "{brokers} broker(s): profiling the gateway (perf) under produce acks=1, an extra unmeasured run"
        ));
        b.profile("produce acks=1", |bs| {
            tools::producer_perf(bs, THROUGHPUT_TOPIC, n.max(PROFILE_RECORDS), size, -1, "1")
        })?;
    }

    step(&format!("{brokers} broker(s): consume, {n} records from the start of the topic, a new group each run"));
    for (i, side) in sides(plan.throughput_reps).into_iter().enumerate() {
        let group = format!("bench-consume-{i}");
        let r = b.run(side, Some("consume"), |bs| tools::consumer_perf(bs, THROUGHPUT_TOPIC, n, &group))?;
        b.compare("consume_mib_s", "consume throughput (fetch time)", "MiB/s", true, side, r.fetch_mib_per_sec);
        b.compare(
            "consume_rec_s",
            "consume throughput (fetch time)",
            "records/s",
            true,
            side,
            r.fetch_messages_per_sec,
        );
        b.compare(
            "consume_total_mib_s",
            "consume throughput (group join included)",
            "MiB/s",
            true,
            side,
            r.mib_per_sec,
        );
    }

    if plan.profile {
        step(&format!("{brokers} broker(s): profiling the gateway (perf) under consume, an extra unmeasured run"));
        b.profile("consume", |bs| {
            tools::consumer_perf(bs, THROUGHPUT_TOPIC, n.max(PROFILE_RECORDS), "bench-consume-profiled")
        })?;
    }

    let direct_max = median(&b.comparisons["produce_acksall_rec_s"].direct);
    let rate = (direct_max / 2.0).round().max(100.0);
    let latency_records = (rate * plan.latency_seconds) as u64;
    step(&format!(
        "{brokers} broker(s): publish latency at half load: {rate:.0} records/s (half the direct acks=all maximum), acks=all, {} s",
        plan.latency_seconds
    ));
    for side in sides(plan.latency_reps) {
        let r = b.run(side, Some("latency"), |bs| {
            tools::producer_perf(bs, LATENCY_TOPIC, latency_records, size, rate as i64, "all")
        })?;
        b.compare("pp_half_p50_ms", "ProducerPerformance at half load p50", "ms", false, side, r.p50_ms);
        b.compare("pp_half_p99_ms", "ProducerPerformance at half load p99", "ms", false, side, r.p99_ms);
        b.compare("pp_half_p999_ms", "ProducerPerformance at half load p99.9", "ms", false, side, r.p999_ms);
        b.compare("pp_half_avg_ms", "ProducerPerformance at half load avg", "ms", false, side, r.avg_ms);
        b.compare(
            "pp_half_rec_s",
            "ProducerPerformance at half load achieved",
            "records/s",
            true,
            side,
            r.records_per_sec,
        );
    }
    step(&format!(
        "{brokers} broker(s): LatencyProbe (µs resolution): the same half load, then {} produce-then-consume round trips",
        plan.e2e_messages
    ));
    for side in sides(plan.latency_reps) {
        let r = b.run(side, Some("latency"), |bs| {
            tools::latency_probe(
                bs,
                LATENCY_TOPIC,
                rate,
                plan.latency_seconds,
                size,
                "all",
                E2E_TOPIC,
                plan.e2e_messages,
            )
            .map(|r| serde_json::json!({"produce": r.produce, "e2e": r.e2e}))
        })?;
        let value = |part: &str, field: &str| r[part][field].as_f64().unwrap_or(f64::NAN);
        b.compare(
            "probe_half_p50_ms",
            "publish latency at half load p50 (probe)",
            "ms",
            false,
            side,
            value("produce", "p50_ms"),
        );
        b.compare(
            "probe_half_p99_ms",
            "publish latency at half load p99 (probe)",
            "ms",
            false,
            side,
            value("produce", "p99_ms"),
        );
        b.compare(
            "probe_half_p999_ms",
            "publish latency at half load p99.9 (probe)",
            "ms",
            false,
            side,
            value("produce", "p999_ms"),
        );
        b.compare(
            "probe_half_avg_ms",
            "publish latency at half load avg (probe)",
            "ms",
            false,
            side,
            value("produce", "avg_ms"),
        );
        b.compare("probe_e2e_p50_ms", "end-to-end latency p50 (probe)", "ms", false, side, value("e2e", "p50_ms"));
        b.compare("probe_e2e_p99_ms", "end-to-end latency p99 (probe)", "ms", false, side, value("e2e", "p99_ms"));
        b.compare("probe_e2e_p999_ms", "end-to-end latency p99.9 (probe)", "ms", false, side, value("e2e", "p999_ms"));
        b.compare("probe_e2e_avg_ms", "end-to-end latency avg (probe)", "ms", false, side, value("e2e", "avg_ms"));
    }
    step(&format!(
        "{brokers} broker(s): LatencyProbe at light load: {LIGHT_LOAD_RATE} records/s, acks=all, {} s",
        plan.latency_seconds
    ));
    for side in sides(plan.latency_reps) {
        let r = b.run(side, Some("latency"), |bs| {
            tools::latency_probe(bs, LATENCY_TOPIC, LIGHT_LOAD_RATE, plan.latency_seconds, size, "all", E2E_TOPIC, 0)
                .map(|r| r.produce)
        })?;
        let name = |what: &str| format!("publish latency at {LIGHT_LOAD_RATE} records/s {what} (probe)");
        b.compare("probe_light_p50_ms", &name("p50"), "ms", false, side, r.p50_ms);
        b.compare("probe_light_p99_ms", &name("p99"), "ms", false, side, r.p99_ms);
        b.compare("probe_light_p999_ms", &name("p99.9"), "ms", false, side, r.p999_ms);
        b.compare("probe_light_avg_ms", &name("avg"), "ms", false, side, r.avg_ms);
    }
    step(&format!("{brokers} broker(s): EndToEndLatency, {} messages, acks=all", plan.e2e_messages));
    for side in sides(plan.latency_reps) {
        let r = b.run(side, Some("latency"), |bs| {
            tools::end_to_end_latency(bs, E2E_TOPIC, plan.e2e_messages, "all", size)
        })?;
        b.compare("e2e_tool_avg_ms", "EndToEndLatency avg", "ms", false, side, r.avg_ms);
        b.compare("e2e_tool_p50_ms", "EndToEndLatency p50", "ms", false, side, r.p50_ms);
        b.compare("e2e_tool_p99_ms", "EndToEndLatency p99", "ms", false, side, r.p99_ms);
        b.compare("e2e_tool_p999_ms", "EndToEndLatency p99.9", "ms", false, side, r.p999_ms);
    }

    let pid = b.gateway.process.pid();
    let gateway_peak_rss_kib = vm_kib(pid, "VmHWM")?;
    let gateway_rss_kib = vm_kib(pid, "VmRSS")?;
    b.gateway.process.terminate(Duration::from_secs(30));
    let Bench { mut comparisons, order, costs, runs, profiles, .. } = b;
    let comparisons = order.iter().filter_map(|k| comparisons.remove(k)).map(Comparison::finish).collect();
    let mut report = ClusterReport::new(
        brokers,
        replication,
        rate,
        comparisons,
        costs.into_values().collect(),
        gateway_peak_rss_kib,
        gateway_rss_kib,
        runs,
    );
    report.profiles = profiles;
    Ok(report)
}

/// The median (the mean of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_alternate_who_goes_first() {
        use Side::*;
        assert_eq!(sides(1), vec![Direct, Gateway]);
        assert_eq!(sides(3), vec![Direct, Gateway, Gateway, Direct, Direct, Gateway]);
    }

    #[test]
    fn both_sections_run_unless_told() {
        assert_eq!(Plan::new(true).sections, ["main", "tls", "latency"]);
        assert_eq!(Plan::new(false).sections, ["main", "tls", "latency"]);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
