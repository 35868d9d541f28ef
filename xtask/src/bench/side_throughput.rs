//! Throughput and CPU per MB of every side of the closed-loop probe, when there is more than
//! one proxy to compare (a baseline gateway, peers).
//!
//! Issue 16 asks the gateway to keep the lowest CPU per MB of the proxies while its tail is
//! worked on, and compares throughput with direct's. Figures from different runs of a shared
//! 2-vCPU machine cannot be compared, so every side (direct included) runs the same
//! unthrottled `ProducerPerformance` (`acks=1`) and then `ConsumerPerformance` (reading from the
//! topic's start in a new group), the order rotating each round so that each side goes first in
//! turn. CPU is each proxy process's own (user + system, `/proc/<pid>/stat`), per MB of records
//! moved: the same yardstick for a proxy that has no metrics of the gateway's kind.

use anyhow::Result;
use serde::Serialize;

use super::system::cpu_seconds;
use super::tools::{consumer_perf, producer_perf};
use super::{median, PROFILE_RECORDS, THROUGHPUT_TOPIC};
use crate::step;

/// Rounds of one produce and one consume run per side, at least. There are as many as there
/// are sides, so that each side goes first once and follows each of the others equally often.
const MIN_ROUNDS: usize = 2;

/// A side to measure: direct (no process of its own) or a proxy.
pub struct Target<'a> {
    pub name: &'a str,
    pub bootstrap: String,
    pub pid: Option<u32>,
}

/// One side's figures over the rounds.
#[derive(Debug, Clone, Serialize)]
pub struct SideThroughput {
    pub side: String,
    pub produce_mib_per_sec: Vec<f64>,
    pub consume_mib_per_sec: Vec<f64>,
    /// The proxy's CPU ms per MB of records, over all its runs; none for direct.
    pub produce_cpu_ms_per_mb: Option<f64>,
    pub consume_cpu_ms_per_mb: Option<f64>,
}

/// Each target's produce, then each target's consume, round after round, the order rotating.
/// `targets[0]` is direct, the reference of the ratios.
pub fn measure(targets: &[Target<'_>], record_size: usize) -> Result<Vec<SideThroughput>> {
    let names: Vec<&str> = targets.iter().map(|t| t.name).collect();
    let rounds = targets.len().max(MIN_ROUNDS);
    step(&format!("throughput and CPU per MB, every side, {rounds} rounds, the order rotating: {}", names.join(", ")));
    let mb = PROFILE_RECORDS as f64 * record_size as f64 / 1e6;
    let mut rows: Vec<SideThroughput> = targets
        .iter()
        .map(|t| SideThroughput {
            side: t.name.to_owned(),
            produce_mib_per_sec: Vec::new(),
            consume_mib_per_sec: Vec::new(),
            produce_cpu_ms_per_mb: None,
            consume_cpu_ms_per_mb: None,
        })
        .collect();
    let mut cpu = vec![(0.0, 0.0); targets.len()];
    for round in 0..rounds {
        let order: Vec<usize> = (0..targets.len()).map(|k| (round + k) % targets.len()).collect();
        for &i in &order {
            let t = &targets[i];
            let before = t.pid.map(cpu_seconds).transpose()?;
            let run = producer_perf(&t.bootstrap, THROUGHPUT_TOPIC, PROFILE_RECORDS, record_size, -1, "1")?;
            let used = spent(t.pid, before)?;
            cpu[i].0 += used;
            rows[i].produce_mib_per_sec.push(run.mib_per_sec);
            println!("    produce {:<13} {:>7.1} MiB/s, {:.3} CPU s", t.name, run.mib_per_sec, used);
        }
        for &i in &order {
            let t = &targets[i];
            let before = t.pid.map(cpu_seconds).transpose()?;
            let group = format!("bench-sides-{}-{round}-{}", t.name, std::process::id());
            let run = consumer_perf(&t.bootstrap, THROUGHPUT_TOPIC, PROFILE_RECORDS, &group)?;
            let used = spent(t.pid, before)?;
            cpu[i].1 += used;
            rows[i].consume_mib_per_sec.push(run.fetch_mib_per_sec);
            println!("    consume {:<13} {:>7.1} MiB/s, {:.3} CPU s", t.name, run.fetch_mib_per_sec, used);
        }
    }
    for (row, (t, (produce, consume))) in rows.iter_mut().zip(targets.iter().zip(&cpu)) {
        if t.pid.is_some() {
            let total_mb = mb * rounds as f64;
            row.produce_cpu_ms_per_mb = Some(produce * 1e3 / total_mb);
            row.consume_cpu_ms_per_mb = Some(consume * 1e3 / total_mb);
        }
    }
    Ok(rows)
}

/// CPU seconds the process `pid` used since `before`; zero for direct.
fn spent(pid: Option<u32>, before: Option<f64>) -> Result<f64> {
    Ok(match (pid, before) {
        (Some(pid), Some(before)) => cpu_seconds(pid)? - before,
        _ => 0.0,
    })
}

/// The table of every side, ratios to the first row (direct).
pub fn markdown(rows: &[SideThroughput], md: &mut String) {
    use std::fmt::Write as _;
    let Some(direct) = rows.first() else { return };
    let (direct_produce, direct_consume) = (median(&direct.produce_mib_per_sec), median(&direct.consume_mib_per_sec));
    let _ = writeln!(
        md,
        "\nThroughput and CPU per MB of every side ({} rounds of unthrottled `ProducerPerformance`, `acks=1`, \
         {PROFILE_RECORDS} records, then `ConsumerPerformance` from the topic's start, the order rotating; medians; \
         CPU is the proxy process's own per MB of records):\n\n\
         | side | produce MiB/s | vs direct | CPU ms/MB | consume MiB/s | vs direct | CPU ms/MB |\n\
         |---|---:|---:|---:|---:|---:|---:|",
        direct.produce_mib_per_sec.len()
    );
    let cpu = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
    for row in rows {
        let (produce, consume) = (median(&row.produce_mib_per_sec), median(&row.consume_mib_per_sec));
        let _ = writeln!(
            md,
            "| {} | {produce:.1} | {:.2} | {} | {consume:.1} | {:.2} | {} |",
            row.side,
            produce / direct_produce,
            cpu(row.produce_cpu_ms_per_mb),
            consume / direct_consume,
            cpu(row.consume_cpu_ms_per_mb)
        );
    }
}
