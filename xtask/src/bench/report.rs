//! The benchmark's results: every figure, gateway/direct ratios, the goals, and the machine;
//! rendered as `report.json` (everything, every run) and `report.md` (for people).

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::connections::ConnectionReport;
use super::cost::CostReport;
use super::latency::ClosedLoopReport;
use super::system::Machine;
use super::tls::TlsReport;
use super::{median, Plan, Side};

/// Throughput through the gateway must be at least this share of direct.
const THROUGHPUT_RATIO_GOAL: f64 = 0.97;
/// Added p99 publish latency at half load, ms.
const ADDED_P99_GOAL_MS: f64 = 0.3;
/// Gateway CPU per MB proxied, ms.
const CPU_MS_PER_MB_GOAL: f64 = 2.5;
/// Gateway RSS per idle connection, KiB.
const KIB_PER_CONNECTION_GOAL: f64 = 20.0;

/// The workloads whose CPU cost the goal judges.
const THROUGHPUT_WORKLOADS: [&str; 3] = ["produce acks=1", "produce acks=all", "consume"];

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: &'static str,
    pub machine: Machine,
    /// The commit the gateway was built from.
    pub gateway_source: String,
    pub plan: Plan,
    pub duration_s: f64,
    /// Share of the machine's CPU that processes outside the benchmark used during the run.
    pub foreign_cpu_share: f64,
    pub goals: Vec<Goal>,
    pub clusters: Vec<ClusterReport>,
    pub connections: Option<ConnectionReport>,
    /// The TLS section (`--only main` leaves it out).
    pub tls: Option<TlsReport>,
    /// The closed-loop latency probe (`--only main|tls` leaves it out).
    pub closed_loop: Option<ClosedLoopReport>,
    /// The gateway's CPU per request at 1 and 3 brokers (`--only cost` alone).
    pub per_request: Vec<CostReport>,
    pub notes: Vec<String>,
}

/// One metric measured on both sides.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub key: String,
    pub name: String,
    pub unit: String,
    pub higher_is_better: bool,
    /// Every run, in the order run.
    pub direct: Vec<f64>,
    pub gateway: Vec<f64>,
    pub direct_median: f64,
    pub gateway_median: f64,
    /// gateway / direct, of the medians.
    pub ratio: f64,
    /// gateway - direct, of the medians.
    pub delta: f64,
    /// (max - min) of each side's runs: how much the same measurement moved between runs.
    pub direct_range: f64,
    pub gateway_range: f64,
}

impl Comparison {
    pub fn new(key: &str, name: &str, unit: &str, higher_is_better: bool) -> Comparison {
        Comparison {
            key: key.to_owned(),
            name: name.to_owned(),
            unit: unit.to_owned(),
            higher_is_better,
            direct: Vec::new(),
            gateway: Vec::new(),
            direct_median: f64::NAN,
            gateway_median: f64::NAN,
            ratio: f64::NAN,
            delta: f64::NAN,
            direct_range: f64::NAN,
            gateway_range: f64::NAN,
        }
    }

    pub fn finish(mut self) -> Comparison {
        self.direct_median = median(&self.direct);
        self.gateway_median = median(&self.gateway);
        self.ratio = self.gateway_median / self.direct_median;
        self.delta = self.gateway_median - self.direct_median;
        self.direct_range = range(&self.direct);
        self.gateway_range = range(&self.gateway);
        self
    }

    /// Whether the difference between the sides is larger than either side's own run-to-run
    /// range (with one run per side there is no range: "single run").
    fn significance(&self) -> String {
        let noise = self.direct_range.max(self.gateway_range);
        if self.direct.len() < 2 && self.gateway.len() < 2 {
            "single run per side".to_owned()
        } else if self.delta.abs() > noise {
            format!("beyond the run-to-run range ({} {})", num(noise), self.unit)
        } else {
            format!("within the run-to-run range ({} {})", num(noise), self.unit)
        }
    }
}

/// The gateway's CPU time and the bytes it proxied over some runs.
#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    pub workload: String,
    pub runs: usize,
    pub cpu_s: f64,
    /// Both directions, from `switchyard_bytes_total`.
    pub bytes: f64,
    /// CPU seconds per 10^9 bytes; numerically equal to ms per 10^6 bytes.
    pub cpu_s_per_gb: f64,
    pub cpu_ms_per_mb: f64,
    /// Requests forwarded (`switchyard_requests_total`), and CPU per request.
    pub requests: f64,
    pub cpu_us_per_request: f64,
}

impl Cost {
    pub fn new(workload: &str) -> Cost {
        Cost {
            workload: workload.to_owned(),
            runs: 0,
            cpu_s: 0.0,
            bytes: 0.0,
            cpu_s_per_gb: 0.0,
            cpu_ms_per_mb: 0.0,
            requests: 0.0,
            cpu_us_per_request: 0.0,
        }
    }

    pub fn add(&mut self, cpu_s: f64, bytes: f64, requests: f64) {
        self.runs += 1;
        self.cpu_s += cpu_s;
        self.bytes += bytes;
        self.requests += requests;
        self.cpu_us_per_request = if self.requests > 0.0 { self.cpu_s * 1e6 / self.requests } else { f64::NAN };
        self.cpu_s_per_gb = if self.bytes > 0.0 { self.cpu_s / (self.bytes / 1e9) } else { f64::NAN };
        self.cpu_ms_per_mb = if self.bytes > 0.0 { self.cpu_s * 1e3 / (self.bytes / 1e6) } else { f64::NAN };
    }
}

/// One run as the tool reported it.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub workload: String,
    pub side: Side,
    pub result: serde_json::Value,
    pub gateway_cpu_s: Option<f64>,
    pub gateway_bytes: Option<f64>,
    pub gateway_requests: Option<f64>,
    /// Share of the machine's CPU that processes outside the benchmark used during the run.
    pub foreign_cpu_share: f64,
}

#[derive(Debug, Serialize)]
pub struct ClusterReport {
    pub brokers: usize,
    pub replication_factor: i16,
    /// The fixed rate of the half-load latency runs, records/s.
    pub half_load_rate: f64,
    pub comparisons: Vec<Comparison>,
    /// Per workload, then the throughput workloads together, then everything.
    pub gateway_cost: Vec<Cost>,
    /// After every workload of this cluster.
    pub gateway_peak_rss_kib: u64,
    pub gateway_final_rss_kib: u64,
    pub runs: Vec<RunRecord>,
    /// `perf report` summaries of the profiled runs (`--profile`).
    pub profiles: Vec<String>,
}

impl ClusterReport {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        brokers: usize,
        replication_factor: i16,
        half_load_rate: f64,
        comparisons: Vec<Comparison>,
        mut costs: Vec<Cost>,
        gateway_peak_rss_kib: u64,
        gateway_final_rss_kib: u64,
        runs: Vec<RunRecord>,
    ) -> ClusterReport {
        let order = |c: &Cost| {
            ["produce acks=1", "produce acks=all", "consume", "latency"].iter().position(|w| *w == c.workload)
        };
        costs.sort_by_key(order);
        let mut throughput = Cost::new("throughput workloads (produce + consume)");
        let mut all = Cost::new("all measured gateway runs");
        for cost in &costs {
            if THROUGHPUT_WORKLOADS.contains(&cost.workload.as_str()) {
                throughput.add(cost.cpu_s, cost.bytes, cost.requests);
                throughput.runs += cost.runs - 1;
            }
            all.add(cost.cpu_s, cost.bytes, cost.requests);
            all.runs += cost.runs - 1;
        }
        costs.push(throughput);
        costs.push(all);
        ClusterReport {
            brokers,
            replication_factor,
            half_load_rate,
            comparisons,
            gateway_cost: costs,
            gateway_peak_rss_kib,
            gateway_final_rss_kib,
            runs,
            profiles: Vec::new(),
        }
    }

    fn comparison(&self, key: &str) -> Option<&Comparison> {
        self.comparisons.iter().find(|c| c.key == key)
    }

    fn scope(&self) -> String {
        format!("{} broker{}", self.brokers, if self.brokers == 1 { "" } else { "s" })
    }
}

#[derive(Debug, Serialize)]
pub struct Goal {
    pub scope: String,
    pub goal: String,
    pub target: String,
    pub measured: f64,
    pub measured_text: String,
    pub pass: bool,
    /// For comparisons: whether the difference exceeds the runs' own spread.
    pub significance: String,
}

impl Report {
    pub fn new(
        plan: Plan,
        machine: Machine,
        clusters: Vec<ClusterReport>,
        connections: Option<ConnectionReport>,
        mut notes: Vec<String>,
        duration: Duration,
        foreign_cpu_share: f64,
    ) -> Report {
        let mut goals = Vec::new();
        for cluster in &clusters {
            let scope = cluster.scope();
            for (key, goal) in [
                ("produce_acks1_mib_s", "produce throughput, acks=1"),
                ("produce_acksall_mib_s", "produce throughput, acks=all"),
                ("consume_mib_s", "consume throughput"),
            ] {
                if let Some(c) = cluster.comparison(key) {
                    goals.push(Goal {
                        scope: scope.clone(),
                        goal: goal.to_owned(),
                        target: format!(">= {:.0}% of direct", THROUGHPUT_RATIO_GOAL * 100.0),
                        measured: c.ratio,
                        measured_text: format!(
                            "{:.1}% ({:.1} vs {:.1} MiB/s)",
                            c.ratio * 100.0,
                            c.gateway_median,
                            c.direct_median
                        ),
                        pass: c.ratio >= THROUGHPUT_RATIO_GOAL,
                        significance: c.significance(),
                    });
                }
            }
            if let Some(c) = cluster.comparison("probe_half_p99_ms") {
                goals.push(Goal {
                    scope: scope.clone(),
                    goal: format!("added p99 publish latency at half load ({:.0} records/s)", cluster.half_load_rate),
                    target: format!("<= {ADDED_P99_GOAL_MS} ms"),
                    measured: c.delta,
                    measured_text: format!("{:+.3} ms ({:.3} vs {:.3} ms)", c.delta, c.gateway_median, c.direct_median),
                    pass: c.delta <= ADDED_P99_GOAL_MS,
                    significance: c.significance(),
                });
            }
            if let Some(c) = cluster.comparison("probe_light_p99_ms") {
                goals.push(Goal {
                    scope: scope.clone(),
                    goal: "added p99 publish latency at light load (1000 records/s; same target, for reference)"
                        .to_owned(),
                    target: format!("<= {ADDED_P99_GOAL_MS} ms"),
                    measured: c.delta,
                    measured_text: format!("{:+.3} ms ({:.3} vs {:.3} ms)", c.delta, c.gateway_median, c.direct_median),
                    pass: c.delta <= ADDED_P99_GOAL_MS,
                    significance: c.significance(),
                });
            }
            if let Some(cost) = cluster.gateway_cost.iter().find(|c| c.workload.starts_with("throughput workloads")) {
                goals.push(Goal {
                    scope: scope.clone(),
                    goal: "gateway CPU per MB proxied (throughput workloads)".to_owned(),
                    target: format!("<= {CPU_MS_PER_MB_GOAL} ms/MB"),
                    measured: cost.cpu_ms_per_mb,
                    measured_text: format!(
                        "{:.2} ms/MB ({:.1} CPU s for {:.0} MB)",
                        cost.cpu_ms_per_mb,
                        cost.cpu_s,
                        cost.bytes / 1e6
                    ),
                    pass: cost.cpu_ms_per_mb <= CPU_MS_PER_MB_GOAL,
                    significance: String::new(),
                });
            }
        }
        if let Some(c) = &connections {
            goals.push(Goal {
                scope: "1 broker".to_owned(),
                goal: format!("gateway RSS per idle connection ({} connections)", c.connections),
                target: format!("<= {KIB_PER_CONNECTION_GOAL} KiB"),
                measured: c.kib_per_idle_connection,
                measured_text: format!(
                    "{:.1} KiB ({:.1} KiB after one ApiVersions each)",
                    c.kib_per_idle_connection, c.kib_per_connection_after_api_versions
                ),
                pass: c.kib_per_idle_connection <= KIB_PER_CONNECTION_GOAL,
                significance: String::new(),
            });
        }
        notes.extend(standard_notes());
        Report {
            mode: plan.mode,
            machine,
            gateway_source: String::new(),
            plan,
            duration_s: duration.as_secs_f64(),
            foreign_cpu_share,
            goals,
            clusters,
            connections,
            tls: None,
            closed_loop: None,
            per_request: Vec::new(),
            notes,
        }
    }

    /// The goals, for the console.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for g in &self.goals {
            let _ = writeln!(
                out,
                "    [{}] {:<8} {}: {} (goal {}){}",
                if g.pass { "pass" } else { "FAIL" },
                g.scope,
                g.goal,
                g.measured_text,
                g.target,
                if g.significance.is_empty() { String::new() } else { format!("; {}", g.significance) }
            );
        }
        if let Some(tls) = &self.tls {
            out.push_str(&tls.summary());
        }
        if let Some(c) = &self.closed_loop {
            out.push_str(&c.summary());
        }
        for c in &self.per_request {
            out.push_str(&c.summary());
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(md, "# Switchyard benchmark: gateway vs direct Kafka ({} mode)\n", self.mode);
        let _ = writeln!(
            md,
            "Run on {} ({:.0} s). Machine: {} CPUs ({}), {} GiB memory, Linux {}; {}; {}. Kafka 4.1.1 (KRaft) \
             from Maven Central jars, the gateway built with `cargo build --release` from {}. Processes outside the \
             benchmark used {:.0}% of the machine's CPU meanwhile.\n",
            m.date_utc,
            self.duration_s,
            m.nproc,
            m.cpu_model,
            m.memory_gib,
            m.kernel,
            m.java,
            m.rustc,
            self.gateway_source,
            self.foreign_cpu_share * 100.0
        );
        let p = &self.plan;
        let _ = writeln!(
            md,
            "Workloads: {} B records, a {}-partition topic (replication factor = min(brokers, 3)); {} records per \
             throughput run, after {} warm-up records on each side; {} direct/gateway pair(s) per throughput \
             workload and {} per latency workload, alternating D G G D …; half-load latency runs last {} s; \
             {} round trips per end-to-end run; {} idle connections. Figures are medians of the runs; \
             ratio = gateway / direct.\n",
            p.record_size,
            p.partitions,
            p.produce_records,
            p.warmup_records,
            p.throughput_reps,
            p.latency_reps,
            p.latency_seconds,
            p.e2e_messages,
            self.connections.as_ref().map_or(0, |c| c.connections)
        );

        let _ = writeln!(
            md,
            "## Goals\n\n| scope | goal | target | measured | result | difference vs. noise |\n|---|---|---|---|---|---|"
        );
        for g in &self.goals {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                g.scope,
                g.goal,
                g.target,
                g.measured_text,
                if g.pass { "pass" } else { "**fail**" },
                g.significance
            );
        }

        for cluster in &self.clusters {
            let _ = writeln!(
                md,
                "\n## {} (replication factor {})\n\nHalf load: {:.0} records/s. Gateway peak RSS (VmHWM) over \
                 these workloads: {:.1} MiB; RSS at the end: {:.1} MiB.\n",
                cluster.scope(),
                cluster.replication_factor,
                cluster.half_load_rate,
                cluster.gateway_peak_rss_kib as f64 / 1024.0,
                cluster.gateway_final_rss_kib as f64 / 1024.0
            );
            let _ = writeln!(
                md,
                "| metric | unit | direct runs | gateway runs | direct | gateway | gateway/direct | difference | \
                 larger run-to-run range |\n|---|---|---|---|---:|---:|---:|---:|---:|"
            );
            for c in &cluster.comparisons {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {:.3} | {} | {} |",
                    c.name,
                    c.unit,
                    list(&c.direct),
                    list(&c.gateway),
                    num(c.direct_median),
                    num(c.gateway_median),
                    c.ratio,
                    signed(c.delta),
                    num(c.direct_range.max(c.gateway_range))
                );
            }
            let _ = writeln!(
                md,
                "\nGateway cost (CPU = utime + stime of the gateway process; bytes = `switchyard_bytes_total`, \
                 both directions):\n\n| workload | gateway runs | CPU s | MB proxied | CPU s per GB | CPU ms per MB | requests | CPU µs per request |\n\
                 |---|---:|---:|---:|---:|---:|---:|---:|"
            );
            for cost in &cluster.gateway_cost {
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.2} | {:.1} | {:.3} | {:.3} | {:.0} | {:.1} |",
                    cost.workload,
                    cost.runs,
                    cost.cpu_s,
                    cost.bytes / 1e6,
                    cost.cpu_s_per_gb,
                    cost.cpu_ms_per_mb,
                    cost.requests,
                    cost.cpu_us_per_request
                );
            }
            if !cluster.profiles.is_empty() {
                let _ = writeln!(
                    md,
                    "\nGateway profiles (`perf record`, extra unmeasured gateway runs): {}",
                    cluster.profiles.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
                );
            }
        }

        if let Some(tls) = &self.tls {
            tls.markdown(&mut md, self.plan.throughput_reps);
        }
        if let Some(c) = &self.closed_loop {
            c.markdown(&mut md);
        }
        for c in &self.per_request {
            c.markdown(&mut md);
        }

        if let Some(c) = &self.connections {
            let _ = writeln!(
                md,
                "\n## Connection cost (1 broker)\n\n| figure | value |\n|---|---:|\n\
                 | idle client connections | {} |\n| RLIMIT_NOFILE (bench, broker, gateway) | {} |\n\
                 | time to open them straight to the broker (slowest connect; accept-queue overflows) | {:.2} s ({:.1} ms; {}) |\n\
                 | time to open them to the gateway (slowest connect; connects over 200 ms; accept-queue overflows) | {:.2} s ({:.1} ms; {}; {}) |\n\
                 | gateway CPU per accepted and proxied connection | {:.0} µs |\n\
                 | time until the gateway holds every client and broker connection | {:.2} s |\n\
                 | gateway RSS before | {} KiB |\n| gateway RSS with the idle connections | {} KiB |\n\
                 | **RSS per idle connection** | **{:.2} KiB** |\n\
                 | one pipelined ApiVersions round trip on every connection | {:.2} s |\n\
                 | gateway RSS after those | {} KiB |\n| RSS per connection after one ApiVersions | {:.2} KiB |\n\
                 | time until the gateway reports all closed (client RST) | {:.2} s |\n\
                 | gateway peak RSS (VmHWM) | {} KiB |",
                c.connections,
                c.nofile_limit,
                c.direct_connect_s,
                c.direct_slowest_connect_ms,
                c.direct_listen_overflows,
                c.gateway_connect_s,
                c.gateway_slowest_connect_ms,
                c.gateway_slow_connects,
                c.gateway_listen_overflows,
                c.gateway_cpu_us_per_connection,
                c.gateway_all_proxied_s,
                c.rss_before_kib,
                c.rss_idle_kib,
                c.kib_per_idle_connection,
                c.api_versions_round_trips_s,
                c.rss_after_api_versions_kib,
                c.kib_per_connection_after_api_versions,
                c.close_s,
                c.gateway_peak_rss_kib
            );
        }

        let _ = writeln!(md, "\n## Notes\n");
        for note in &self.notes {
            let _ = writeln!(md, "- {note}");
        }
        md
    }
}

fn standard_notes() -> Vec<String> {
    vec![
        "Every process (brokers, Java clients, gateway) shares the same CPUs: on a small machine the gateway's \
         CPU is taken from the broker and the clients, so a throughput ratio below 1 measures that as much as \
         any latency the gateway adds."
            .into(),
        "ProducerPerformance and EndToEndLatency report percentiles in whole milliseconds; the latency goal is \
         judged on xtask/java/LatencyProbe.java, which runs the same loads with System.nanoTime() and reports \
         microseconds (first 10% of the half-load run and first 5% of the round trips are warm-up)."
            .into(),
        "Consume throughput compares ConsumerPerformance's fetch.MB.sec (the group join excluded); every run \
         reads the same first records of the topic in a new group, from the page cache."
            .into(),
        "Kafka's max.connections and max.connections.per.ip default to unlimited and are left so; the brokers' \
         socket.listen.backlog.size is raised from 50 to 1024 so that the connection test measures the \
         gateway, which opens one broker connection per client connection."
            .into(),
        "Half load is half the direct acks=all maximum, which ProducerPerformance reaches with full 16 KiB \
         batches; at a fixed rate the producer sends smaller batches and more requests, so on a small machine \
         that rate can still saturate it. A p50 far above the end-to-end round trip marks such a run: its p99 \
         measures queueing in the producer, not the gateway."
            .into(),
        "An accept-queue overflow drops the client's SYN, which it retransmits a second later: each one adds \
         about 1 s to the time to open the connections, so that time mostly counts overflows."
            .into(),
        "The difference vs. noise column compares the gateway-direct difference with the larger max-min range \
         of either side's own runs; a difference within it is not evidence either way."
            .into(),
        "MB and GB are 10^6 and 10^9 bytes (so CPU s per GB equals CPU ms per MB); MiB/s throughputs are as \
         the Kafka tools print them."
            .into(),
    ]
}

fn num(value: f64) -> String {
    if value.is_nan() {
        "n/a".into()
    } else if value.abs() >= 1000.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// max - min; NaN for fewer than two values.
fn range(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return f64::NAN;
    }
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    let min = values.iter().copied().fold(f64::MAX, f64::min);
    max - min
}

fn signed(value: f64) -> String {
    if value >= 0.0 {
        format!("+{}", num(value))
    } else {
        num(value)
    }
}

fn list(values: &[f64]) -> String {
    values.iter().map(|v| num(*v)).collect::<Vec<_>>().join(", ")
}
