//! The closed-loop latency probe: one record at a time (`acks=1`, `linger.ms=0`), each waiting
//! for its acknowledgement before the next, straight to the broker and through the gateway,
//! from one JVM that takes turns between the sides in rounds (see `LatencyProbe.java`,
//! `closed`). Then produce->consume round trips the same way. A closed loop has no queueing:
//! whatever the gateway adds to one request shows in full, in the tail above all.
//!
//! Besides the client's view it reads the gateway's own: the `switchyard_gateway_time_seconds`
//! (read to written, per direction) and `switchyard_upstream_time_seconds` (forwarded to
//! answered) histograms over the run, and the machine's load. It draws both sides' latency
//! distributions into `latency-cdf.png` next to the report, and reads the gateway's threads'
//! scheduling over the run (`/proc/<pid>/task/*/status` and `schedstat`): context switches, and
//! time spent runnable but waiting for a CPU, per request.
//!
//! `SWITCHYARD_BENCH_BASELINE=<path of another gateway binary>` adds a third side, `baseline`:
//! a gateway built from other code (the previous commit, say), measured in the same rounds, for
//! before/after figures taken in one run; `SWITCHYARD_BENCH_BASELINE_ENV=K=V,...` sets
//! environment variables for it alone (`TOKIO_WORKER_THREADS=1`, say).
//! `SWITCHYARD_BENCH_PEERS` adds other proxies as sides of their own (see [`super::peers`]).

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use switchyard_testkit::kafka::java_command;
use switchyard_testkit::{java, process, KafkaCluster};

use super::side_throughput;
use super::system::{cpu_seconds, scrape_metrics, CpuSample};
use super::tools::ProbeResult;
use super::{start_gateway, E2E_TOPIC, LATENCY_TOPIC, PARTITIONS};
use crate::{step, target_dir};

/// What one closed-loop run asks for.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ClosedLoopPlan {
    pub rounds: usize,
    pub per_round: usize,
    pub e2e_per_round: usize,
    pub record_size: usize,
}

/// Each side's figures: the client's view.
#[derive(Debug, Clone, Serialize)]
pub struct SideFigures {
    pub direct: ProbeResult,
    pub gateway: ProbeResult,
    /// The gateway built from `SWITCHYARD_BENCH_BASELINE` (`baseline`) and the peers, by name.
    pub others: Vec<(String, ProbeResult)>,
}

/// A side the probe measures besides `direct`: a gateway (with its admin API) or a peer.
struct Side<'a> {
    name: &'a str,
    bootstrap: std::net::SocketAddr,
    pid: u32,
    admin: Option<std::net::SocketAddr>,
}

/// A proxy's threads over the probe, from `/proc/<pid>/task/*`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ThreadStats {
    pub proxy: String,
    /// Requests the proxy forwarded; a peer's are the gateway's count (the same workload).
    pub requests: f64,
    pub voluntary_switches: f64,
    pub involuntary_switches: f64,
    /// Time on a CPU, and time runnable but waiting for one (`schedstat`), in ms.
    pub on_cpu_ms: f64,
    pub runqueue_wait_ms: f64,
    pub threads: usize,
}

impl ThreadStats {
    fn take(pid: u32) -> ThreadStats {
        let mut t = ThreadStats::default();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return t };
        for task in tasks.flatten() {
            let path = task.path();
            let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
            let field = |name: &str| -> f64 {
                status.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok()).unwrap_or(0.0)
            };
            t.voluntary_switches += field("voluntary_ctxt_switches:");
            t.involuntary_switches += field("nonvoluntary_ctxt_switches:");
            let sched = std::fs::read_to_string(path.join("schedstat")).unwrap_or_default();
            let mut f = sched.split_whitespace().filter_map(|v| v.parse::<f64>().ok());
            t.on_cpu_ms += f.next().unwrap_or(0.0) / 1e6;
            t.runqueue_wait_ms += f.next().unwrap_or(0.0) / 1e6;
            t.threads += 1;
        }
        t
    }

    /// Whether the proxy did the work of forwarding the probe's requests. Forwarding one takes
    /// two reads and two writes, tens of µs on a CPU; a proxy far below that was bypassed,
    /// most likely because an answer it could not decode passed on the broker's own address
    /// and the client went straight there. Its latency rows are then direct's.
    pub fn carried_the_traffic(&self) -> bool {
        self.on_cpu_ms * 1000.0 / self.requests.max(1.0) >= BYPASSED_BELOW_US
    }

    fn since(self, earlier: &ThreadStats, proxy: &str, requests: f64) -> ThreadStats {
        ThreadStats {
            proxy: proxy.to_owned(),
            requests,
            voluntary_switches: self.voluntary_switches - earlier.voluntary_switches,
            involuntary_switches: self.involuntary_switches - earlier.involuntary_switches,
            on_cpu_ms: self.on_cpu_ms - earlier.on_cpu_ms,
            runqueue_wait_ms: self.runqueue_wait_ms - earlier.runqueue_wait_ms,
            threads: self.threads,
        }
    }
}

/// On-CPU µs per request under which a proxy cannot have forwarded the requests itself.
const BYPASSED_BELOW_US: f64 = 2.0;

/// Counts of one gateway histogram over the run, per bucket (upper bound in µs; `inf` last).
#[derive(Debug, Clone, Serialize)]
pub struct GatewayHistogram {
    pub name: String,
    pub count: f64,
    pub mean_us: f64,
    pub buckets: Vec<(String, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClosedLoopReport {
    pub plan: ClosedLoopPlan,
    pub produce: SideFigures,
    pub e2e: Option<SideFigures>,
    pub gateway_histograms: Vec<GatewayHistogram>,
    pub gateway_cpu_s: f64,
    /// Per proxy (`gateway`, then `baseline` and the peers when given).
    pub threads: Vec<ThreadStats>,
    /// With a baseline or peers only: every side's throughput and CPU per MB.
    pub throughput: Vec<side_throughput::SideThroughput>,
    /// `/proc/loadavg` before and after the run.
    pub loadavg_before: String,
    pub loadavg_after: String,
    /// Share of the machine's CPU that processes outside the bench used during the run.
    pub foreign_cpu_share: f64,
    /// The chart, relative to the report.
    pub chart: Option<String>,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned()
}

/// Topics, a gateway of its own, the probe, the chart.
pub fn closed_loop(cluster: &KafkaCluster, binary: &Path, plan: ClosedLoopPlan) -> Result<ClosedLoopReport> {
    let brokers = cluster.brokers().len();
    let direct = cluster.bootstrap();
    let replication = brokers.min(3) as i16;
    for (topic, partitions) in [(LATENCY_TOPIC, PARTITIONS), (E2E_TOPIC, 1), (super::THROUGHPUT_TOPIC, PARTITIONS)] {
        // Already there when the main section ran first.
        let _ = java::create_topic(&direct, topic, partitions, replication);
        cluster.wait_for_topic(topic, partitions as usize)?;
    }
    let gateway = start_gateway(binary, cluster)?;
    let baseline = match std::env::var_os("SWITCHYARD_BENCH_BASELINE") {
        Some(path) => {
            let env = std::env::var("SWITCHYARD_BENCH_BASELINE_ENV").unwrap_or_default();
            let env: Vec<(&str, &str)> = env.split(',').filter_map(|kv| kv.split_once('=')).collect();
            Some(super::start_gateway_with_env(Path::new(&path), cluster, &env)?)
        }
        None => None,
    };
    let out = target_dir().join("bench/latency");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let mut peers = super::peers::start_from_env(&direct, &out)?;
    let gateways: Vec<(&str, &super::Gateway)> = [("gateway", Some(&gateway)), ("baseline", baseline.as_ref())]
        .into_iter()
        .filter_map(|(n, g)| Some((n, g?)))
        .collect();
    let sides: Vec<Side<'_>> = gateways
        .iter()
        .map(|(name, g)| Side { name, bootstrap: g.bootstrap, pid: g.process.pid(), admin: Some(g.admin) })
        .chain(peers.iter().map(|p| Side { name: &p.name, bootstrap: p.bootstrap, pid: p.process.pid(), admin: None }))
        .collect();
    let names: Vec<&str> = sides.iter().map(|s| s.name).collect();
    step(&format!(
        "{brokers} broker(s): closed-loop latency, acks=1, linger.ms=0: {} rounds of {} records per side, then {} round trips per side per round; sides: direct, {}",
        plan.rounds,
        plan.per_round,
        plan.e2e_per_round,
        names.join(", ")
    ));
    let before: Vec<(String, f64, ThreadStats)> = sides
        .iter()
        .map(|s| {
            let page = s.admin.map(scrape_metrics).transpose()?.unwrap_or_default();
            Ok((page, cpu_seconds(s.pid)?, ThreadStats::take(s.pid)))
        })
        .collect::<Result<_>>()?;
    let (machine_before, loadavg_before) = (CpuSample::take(), loadavg());
    let mut cmd = java_command(&["-Xmx512m"])?;
    cmd.arg(super::tools::probe_source()).args([
        "closed",
        LATENCY_TOPIC,
        E2E_TOPIC,
        &plan.rounds.to_string(),
        &plan.per_round.to_string(),
        &plan.e2e_per_round.to_string(),
        &plan.record_size.to_string(),
    ]);
    cmd.arg(&out).arg(format!("direct={direct}"));
    for side in &sides {
        cmd.arg(format!("{}={}", side.name, side.bootstrap));
    }
    let output = process::run(cmd, None, std::time::Duration::from_secs(1800))?
        .ensure_success("LatencyProbe.java closed")
        .with_context(|| format!("gateway log:\n{}", gateway.process.log_tail()))?;
    let foreign_cpu_share = CpuSample::take().foreign_share_since(&machine_before);
    let loadavg_after = loadavg();
    let mut gateway_cpu_s = 0.0;
    let mut gateway_histograms = Vec::new();
    let mut threads = Vec::new();
    // The gateway's count stands for the peers' too: every side runs the same workload.
    let mut requests = f64::NAN;
    for (side, (page_before, cpu_before, threads_before)) in sides.iter().zip(&before) {
        let stats = ThreadStats::take(side.pid);
        let cpu = cpu_seconds(side.pid)? - cpu_before;
        let page_after = side.admin.map(scrape_metrics).transpose()?.unwrap_or_default();
        if side.admin.is_some() {
            requests = super::system::metric_sum(&page_after, "switchyard_requests_total")
                - super::system::metric_sum(page_before, "switchyard_requests_total");
        }
        threads.push(stats.since(threads_before, side.name, requests));
        if side.name == "gateway" {
            gateway_cpu_s = cpu;
            gateway_histograms = [
                ("switchyard_gateway_time_seconds", Some("client_to_broker")),
                ("switchyard_gateway_time_seconds", Some("broker_to_client")),
                ("switchyard_upstream_time_seconds", None),
            ]
            .iter()
            .map(|(metric, direction)| histogram_delta(page_before, &page_after, metric, *direction))
            .collect();
        }
    }
    let throughput = if sides.len() > 1 {
        let direct = side_throughput::Target { name: "direct", bootstrap: direct.clone(), pid: None };
        let proxies = sides.iter().map(|s| side_throughput::Target {
            name: s.name,
            bootstrap: s.bootstrap.to_string(),
            pid: Some(s.pid),
        });
        side_throughput::measure(&std::iter::once(direct).chain(proxies).collect::<Vec<_>>(), plan.record_size)?
    } else {
        Vec::new()
    };
    let parse = |what: &str| ProbeResult::parse(&output.stdout, what);
    let side = |kind: &str| -> Option<SideFigures> {
        Some(SideFigures {
            direct: parse(&format!("{kind}-direct"))?,
            gateway: parse(&format!("{kind}-gateway"))?,
            others: names[1..]
                .iter()
                .filter_map(|name| Some((name.to_string(), parse(&format!("{kind}-{name}"))?)))
                .collect(),
        })
    };
    let produce = side("closed").with_context(|| format!("no closed-loop RESULT lines:\n{}", output.describe()))?;
    let e2e = side("e2e");
    let chart = match draw_cdf(&out, &names, &target_dir().join("bench/latency-cdf.png")) {
        Ok(()) => Some("latency-cdf.png".to_owned()),
        Err(e) => {
            println!("    no chart: {e:#}");
            None
        }
    };
    let report = ClosedLoopReport {
        plan,
        produce,
        e2e,
        gateway_histograms,
        gateway_cpu_s,
        threads,
        throughput,
        loadavg_before,
        loadavg_after,
        foreign_cpu_share,
        chart,
    };
    for line in report.table_rows() {
        println!("    {line}");
    }
    for t in report.threads.iter().filter(|t| !t.carried_the_traffic()) {
        println!(
            "    {}: BYPASSED, it carried almost none of the traffic (see target/bench/latency/peer-{}.log)",
            t.proxy, t.proxy
        );
    }
    println!(
        "    load {} -> {}; other processes {:.0}% CPU",
        report.loadavg_before,
        report.loadavg_after,
        foreign_cpu_share * 100.0
    );
    drop(sides);
    for mut g in [Some(gateway), baseline].into_iter().flatten() {
        g.process.terminate(std::time::Duration::from_secs(30));
    }
    for peer in &mut peers {
        peer.process.terminate(std::time::Duration::from_secs(30));
    }
    Ok(report)
}

/// Bucket counts of `name` (restricted to `direction`) gained between two scrapes; the
/// cumulative Prometheus buckets are turned into per-bucket counts.
fn histogram_delta(before: &str, after: &str, name: &str, direction: Option<&str>) -> GatewayHistogram {
    let read = |page: &str| -> (Vec<(String, f64)>, f64, f64) {
        let mut buckets: Vec<(String, f64)> = Vec::new();
        let (mut sum, mut count) = (0.0, 0.0);
        for line in page.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            if direction.is_some_and(|d| !series.contains(&format!("direction=\"{d}\""))) {
                continue;
            }
            let base = series.split('{').next().unwrap_or_default();
            if base == format!("{name}_bucket") {
                let Some(le) = series.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else { continue };
                match buckets.iter_mut().find(|(b, _)| b == le) {
                    Some((_, v)) => *v += value,
                    None => buckets.push((le.to_owned(), value)),
                }
            } else if base == format!("{name}_sum") {
                sum += value;
            } else if base == format!("{name}_count") {
                count += value;
            }
        }
        (buckets, sum, count)
    };
    let (b0, s0, c0) = read(before);
    let (b1, s1, c1) = read(after);
    let mut previous = 0.0;
    let buckets = b1
        .iter()
        .map(|(le, v)| {
            let cumulative = v - b0.iter().find(|(l, _)| l == le).map_or(0.0, |(_, v)| *v);
            let own = cumulative - previous;
            previous = cumulative;
            let label = le.parse::<f64>().map_or_else(|_| le.clone(), |s| format!("{:.0}", s * 1e6));
            (label, own)
        })
        .collect();
    let count = c1 - c0;
    let label = match direction {
        Some(d) => format!("{name}{{direction={d}}}"),
        None => name.to_owned(),
    };
    GatewayHistogram {
        name: label,
        count,
        mean_us: if count > 0.0 { (s1 - s0) / count * 1e6 } else { f64::NAN },
        buckets,
    }
}

fn samples(path: &Path) -> Result<Vec<f64>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut v: Vec<f64> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    Ok(v)
}

/// The complementary CDF (share of samples slower than x) of every side, log scale, so the tail
/// is as visible as the median; closed loop left, round trips right. `names`: the sides after
/// `direct`, the gateway first.
fn draw_cdf(dir: &Path, names: &[&str], png: &Path) -> Result<()> {
    use plotters::prelude::*;
    crate::chart::use_font()?;
    let root = BitMapBackend::new(png, (1400, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, 2));
    for (panel, kind, title) in [
        (&panels[0], "closed", "produce, closed loop (acks=1, linger.ms=0)"),
        (&panels[1], "e2e", "produce -> consume round trip"),
    ] {
        let palette = [RED, RGBColor(120, 120, 120), RGBColor(0, 150, 0), RGBColor(230, 140, 0), MAGENTA, CYAN];
        let mut sides = Vec::new();
        let named = names.iter().zip(palette.iter().cycle()).map(|(n, c)| (*n, *c));
        for (name, color) in std::iter::once(("direct", BLUE)).chain(named) {
            let path = dir.join(format!("{kind}-{name}.txt"));
            if path.exists() {
                sides.push((name, samples(&path)?, color));
            }
        }
        if sides.len() < 2 {
            continue;
        }
        let max_ms = sides.iter().filter_map(|(_, v, _)| v.last()).fold(0.1f64, |m, v| m.max(v / 1000.0));
        let min_ms = sides.iter().filter_map(|(_, v, _)| v.first()).fold(max_ms, |m, v| m.min(v / 1000.0));
        let n_min = sides.iter().map(|(_, v, _)| v.len()).min().unwrap_or(1).max(1);
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((min_ms * 0.9..max_ms * 1.1).log_scale(), (1.0 / n_min as f64..1.0f64).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("latency, ms (log)")
            .y_desc("share of samples slower (log)")
            .label_style(("sans-serif", 14))
            .draw()?;
        for (name, values, color) in sides {
            let n = values.len() as f64;
            let points = values.iter().enumerate().map(|(i, v)| (v / 1000.0, (n - i as f64) / n)).collect::<Vec<_>>();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(format!("{name} (n={})", values.len()))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

impl ClosedLoopReport {
    fn pairs(&self) -> impl Iterator<Item = (&'static str, &SideFigures)> {
        [("produce, closed loop", Some(&self.produce)), ("produce->consume", self.e2e.as_ref())]
            .into_iter()
            .filter_map(|(name, f)| Some((name, f?)))
    }

    /// One line per measurement and side, for the console.
    fn table_rows(&self) -> Vec<String> {
        let mut rows = Vec::new();
        for (name, f) in self.pairs() {
            for (side, r) in f.sides() {
                rows.push(format!(
                    "{name:<21} {side:<8} n={} p50 {:.3} p99 {:.3} p99.9 {:.3} max {:.3} ms",
                    r.n, r.p50_ms, r.p99_ms, r.p999_ms, r.max_ms
                ));
            }
        }
        rows
    }

    pub fn summary(&self) -> String {
        let mut out = String::new();
        for (name, f) in self.pairs() {
            let _ = std::fmt::Write::write_fmt(
                &mut out,
                format_args!(
                    "    latency  {name}: p99 added {:+.3} ms (direct {:.3}, gateway {:.3}{}), p50 added {:+.3} ms\n",
                    f.gateway.p99_ms - f.direct.p99_ms,
                    f.direct.p99_ms,
                    f.gateway.p99_ms,
                    f.others.iter().map(|(n, r)| format!(", {n} {:.3}", r.p99_ms)).collect::<String>(),
                    f.gateway.p50_ms - f.direct.p50_ms
                ),
            );
        }
        out
    }

    pub fn markdown(&self, md: &mut String) {
        use std::fmt::Write as _;
        let p = &self.plan;
        let _ = writeln!(
            md,
            "\n## Closed-loop latency (1 broker)\n\nOne JVM, one producer per side (`acks=1`, `linger.ms=0`, {} B records), each \
             record sent after the previous one was acknowledged; {} rounds of {} records per side, the sides taking turns \
             (each side goes first in turn); then {} produce->consume round trips per side per round. Warm-up not counted.\n\n\
             Machine load: `/proc/loadavg` {} before, {} after; processes outside the bench used {:.0}% of the CPU \
             during the probe. Gateway CPU during the probe: {:.2} s.\n",
            p.record_size,
            p.rounds,
            p.per_round,
            p.e2e_per_round,
            self.loadavg_before,
            self.loadavg_after,
            self.foreign_cpu_share * 100.0,
            self.gateway_cpu_s
        );
        let _ = writeln!(
            md,
            "| measurement | side | samples | p50 ms | p99 ms | p99.9 ms | max ms | avg ms |\n|---|---|---:|---:|---:|---:|---:|---:|"
        );
        for (name, f) in self.pairs() {
            for (side, r) in f.sides() {
                let _ = writeln!(
                    md,
                    "| {name} | {side} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                    r.n, r.p50_ms, r.p99_ms, r.p999_ms, r.max_ms, r.avg_ms
                );
            }
            for (side, r) in f.sides().skip(1) {
                let label = format!("added ({side})");
                let _ = writeln!(
                    md,
                    "| {name} | **{label}** | | {:+.3} | **{:+.3}** | {:+.3} | {:+.3} | {:+.3} |",
                    r.p50_ms - f.direct.p50_ms,
                    r.p99_ms - f.direct.p99_ms,
                    r.p999_ms - f.direct.p999_ms,
                    r.max_ms - f.direct.max_ms,
                    r.avg_ms - f.direct.avg_ms
                );
            }
        }
        if let Some(chart) = &self.chart {
            let _ = writeln!(
                md,
                "\n![latency distributions of every side]({chart})\n\n[{chart}]({chart}): share of samples slower than x, log-log."
            );
        }
        let _ = writeln!(
            md,
            "\nThe gateway's own view over the probe (its histograms, counts per bucket, upper bound in µs):\n"
        );
        for h in &self.gateway_histograms {
            let buckets: Vec<String> =
                h.buckets.iter().filter(|(_, n)| *n > 0.0).map(|(le, n)| format!("<= {le}: {n:.0}")).collect();
            let _ = writeln!(
                md,
                "- `{}`: {:.0} observations, mean {:.1} µs; {}",
                h.name,
                h.count,
                h.mean_us,
                buckets.join(", ")
            );
        }
        let _ = writeln!(
            md,
            "\nEach proxy's threads over the probe (`/proc/<pid>/task/*/status`, `schedstat`; a peer's requests are \
             the gateway's count, the workload being the same):\n\n\
             | proxy | threads | requests | voluntary switches / request | involuntary / request | on-CPU µs / request | runnable, waiting for a CPU, µs / request |\n\
             |---|---:|---:|---:|---:|---:|---:|"
        );
        for t in &self.threads {
            let per = |v: f64| v / t.requests.max(1.0);
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {:.1} |",
                t.proxy,
                t.threads,
                t.requests,
                per(t.voluntary_switches),
                per(t.involuntary_switches),
                per(t.on_cpu_ms * 1000.0),
                per(t.runqueue_wait_ms * 1000.0)
            );
        }
        for t in self.threads.iter().filter(|t| !t.carried_the_traffic()) {
            let _ = writeln!(
                md,
                "\n**{} was bypassed**: {:.1} µs on a CPU per request, where forwarding one takes tens. An answer it \
                 did not rewrite most likely gave the client the broker's own address (its log: \
                 `latency/peer-{}.log`), so its latency rows above are direct's, not a proxy's.",
                t.proxy,
                t.on_cpu_ms * 1000.0 / t.requests.max(1.0),
                t.proxy
            );
        }
        side_throughput::markdown(&self.throughput, md);
    }
}

impl SideFigures {
    /// `direct`, `gateway`, then the others, with their names.
    fn sides(&self) -> impl Iterator<Item = (&str, &ProbeResult)> {
        [("direct", &self.direct), ("gateway", &self.gateway)]
            .into_iter()
            .chain(self.others.iter().map(|(n, r)| (n.as_str(), r)))
    }
}
