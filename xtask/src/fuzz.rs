//! `cargo xtask fuzz [--time SECONDS] [TARGET...]`: run every cargo-fuzz target of `fuzz/` in
//! turn (or the ones named), each for `--time` seconds (60 by default), and report per target
//! how many inputs it ran and whether it found a crash, with the input that did.
//!
//! The targets need nightly Rust and cargo-fuzz. This installs neither: when one is missing it
//! says how to get it and stops. The committed seed corpora (`fuzz/corpus/<target>/`) are read,
//! never written: what a run discovers goes to `<target dir>/fuzz/corpus/<target>/`, kept from
//! run to run, and each run's libFuzzer output to `<target dir>/fuzz/logs/<target>.log`. A crash
//! is written by libFuzzer to `fuzz/artifacts/<target>/`; replay it with
//! `LSAN_OPTIONS=suppressions=$PWD/fuzz/lsan.supp cargo +nightly fuzz run <target> <artifact>`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{step, target_dir, workspace_root};

const DEFAULT_SECONDS: u64 = 60;
/// An input taking longer than this is reported as a hang (libFuzzer's `-timeout`).
const INPUT_TIMEOUT_SECONDS: u64 = 10;

/// What one target's run came to.
struct Outcome {
    target: String,
    took: Duration,
    executions: Option<u64>,
    corpus: Option<u64>,
    finding: Option<Finding>,
    log: PathBuf,
}

/// A crash, hang or out-of-memory libFuzzer stopped on.
struct Finding {
    kind: String,
    /// The first lines of the panic or sanitizer report.
    summary: String,
    artifact: Option<String>,
}

pub fn fuzz(args: &[String]) -> Result<ExitCode> {
    let mut seconds = DEFAULT_SECONDS;
    let mut only = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--time" => {
                let value = args.next().context("--time needs a number of seconds")?;
                seconds = value.parse().with_context(|| format!("--time {value}: a number of seconds"))?;
            }
            flag if flag.starts_with('-') => bail!("unknown option {flag}: use --time SECONDS and target names"),
            target => only.push(target.to_string()),
        }
    }
    if !tools_present() {
        return Ok(ExitCode::FAILURE);
    }

    let all = targets()?;
    if let Some(unknown) = only.iter().find(|t| !all.contains(t)) {
        bail!("no fuzz target `{unknown}`: the targets are {}", all.join(", "));
    }
    let targets = if only.is_empty() { all } else { only };

    step("building the fuzz targets (cargo +nightly fuzz build)");
    let status = nightly_cargo().args(["fuzz", "build"]).status().context("running cargo +nightly fuzz build")?;
    if !status.success() {
        bail!("the fuzz targets did not build");
    }

    let work = target_dir().join("fuzz");
    let mut outcomes = Vec::new();
    for target in &targets {
        step(&format!("fuzzing {target} for {seconds} s"));
        let outcome = run_target(target, seconds, &work)?;
        println!("    {}", one_line(&outcome));
        if let Some(finding) = &outcome.finding {
            for line in finding.summary.lines() {
                println!("    | {line}");
            }
        }
        outcomes.push(outcome);
    }

    step("fuzzing summary");
    println!("    {:<18} {:>7} {:>12} {:>9} {:>7}  result", "target", "time", "executions", "exec/s", "corpus");
    for outcome in &outcomes {
        let executions = outcome.executions.map_or("?".to_string(), |n| n.to_string());
        let rate = outcome
            .executions
            .map_or("?".to_string(), |n| format!("{:.0}", n as f64 / outcome.took.as_secs_f64().max(0.001)));
        let corpus = outcome.corpus.map_or("?".to_string(), |n| n.to_string());
        let result = match &outcome.finding {
            None => "no crash".to_string(),
            Some(finding) => format!(
                "{} -> {}",
                finding.kind,
                finding.artifact.as_deref().unwrap_or("(no artifact written; see the log)")
            ),
        };
        println!(
            "    {:<18} {:>6.0}s {:>12} {:>9} {:>7}  {result}",
            outcome.target,
            outcome.took.as_secs_f64(),
            executions,
            rate,
            corpus
        );
    }
    println!("    logs: {}", work.join("logs").display());
    let found = outcomes.iter().filter(|o| o.finding.is_some()).count();
    if found > 0 {
        println!(
            "\n{found} target(s) found a crash: replay with \
             `LSAN_OPTIONS=suppressions=$PWD/fuzz/lsan.supp cargo +nightly fuzz run <target> <artifact>`"
        );
        Ok(ExitCode::FAILURE)
    } else {
        println!("\nno target found a crash in {seconds} s each");
        Ok(ExitCode::SUCCESS)
    }
}

/// `cargo +nightly`, through rustup's proxy (which `+toolchain` needs), from the repository
/// root, without the toolchain choice `cargo xtask` itself ran under.
fn nightly_cargo() -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg("+nightly").current_dir(workspace_root());
    for var in ["RUSTUP_TOOLCHAIN", "CARGO", "RUSTC", "RUSTDOC", "RUSTC_WRAPPER"] {
        cmd.env_remove(var);
    }
    cmd
}

/// Whether nightly and cargo-fuzz are there; if not, says how to get them.
fn tools_present() -> bool {
    let works = |cmd: &mut Command| cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if !works(nightly_cargo().arg("--version")) {
        println!(
            "the fuzz targets need nightly Rust (libFuzzer's instrumentation), which is not installed.\n\
             Install it with:\n\n    rustup toolchain install nightly --profile minimal\n\n\
             then install cargo-fuzz (below) and rerun `cargo xtask fuzz`."
        );
        return false;
    }
    if !works(nightly_cargo().args(["fuzz", "--version"])) {
        println!(
            "the fuzz targets are run with cargo-fuzz, which is not installed. Install it with:\n\n    \
             cargo install cargo-fuzz --locked\n\nthen rerun `cargo xtask fuzz`."
        );
        return false;
    }
    true
}

/// The targets `fuzz/Cargo.toml` declares, as `cargo fuzz list` gives them.
fn targets() -> Result<Vec<String>> {
    let output = nightly_cargo().args(["fuzz", "list"]).output().context("running cargo +nightly fuzz list")?;
    if !output.status.success() {
        bail!("cargo fuzz list failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let targets: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if targets.is_empty() {
        bail!("fuzz/Cargo.toml declares no fuzz target");
    }
    Ok(targets)
}

fn run_target(target: &str, seconds: u64, work: &Path) -> Result<Outcome> {
    let corpus = work.join("corpus").join(target);
    let logs = work.join("logs");
    fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let log = logs.join(format!("{target}.log"));
    let log_file = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let seeds = workspace_root().join("fuzz/corpus").join(target);

    // libFuzzer adds what it discovers to the first corpus directory and only reads the others.
    let mut cmd = nightly_cargo();
    cmd.args(["fuzz", "run", target]).arg(&corpus);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    // Leaks of the process-long fixtures a target makes before its first input (fuzz/lsan.supp).
    let suppressions = workspace_root().join("fuzz/lsan.supp");
    let lsan = match std::env::var("LSAN_OPTIONS") {
        Ok(options) if !options.is_empty() => format!("{options}:suppressions={}", suppressions.display()),
        _ => format!("suppressions={}:print_suppressions=0", suppressions.display()),
    };
    cmd.env("LSAN_OPTIONS", lsan);
    cmd.arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECONDS}"))
        .arg("-print_final_stats=1")
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    let started = Instant::now();
    let status = cmd.status().with_context(|| format!("running cargo fuzz run {target}"))?;
    let took = started.elapsed();
    let text = fs::read_to_string(&log).unwrap_or_default();
    let mut outcome = Outcome {
        target: target.to_string(),
        took,
        executions: stat(&text, "stat::number_of_executed_units:").or_else(|| done_runs(&text)),
        corpus: fs::read_dir(&corpus).ok().map(|dir| dir.count() as u64),
        finding: None,
        log,
    };
    if !status.success() {
        outcome.finding = Some(finding(&text));
    }
    Ok(outcome)
}

fn one_line(outcome: &Outcome) -> String {
    let executions = outcome.executions.map_or("? executions".to_string(), |n| format!("{n} executions"));
    match &outcome.finding {
        None => format!("{executions} in {:.0} s, no crash ({})", outcome.took.as_secs_f64(), outcome.log.display()),
        Some(finding) => format!(
            "{executions} in {:.0} s: {} (input: {}; log: {})",
            outcome.took.as_secs_f64(),
            finding.kind,
            finding.artifact.as_deref().unwrap_or("none written"),
            outcome.log.display()
        ),
    }
}

/// A `stat::name: value` line of libFuzzer's final statistics.
fn stat(text: &str, name: &str) -> Option<u64> {
    text.lines().rev().find_map(|line| line.strip_prefix(name)).and_then(|value| value.trim().parse().ok())
}

/// libFuzzer's closing `Done N runs in S second(s)`.
fn done_runs(text: &str) -> Option<u64> {
    text.lines().rev().find_map(|line| line.strip_prefix("Done ")?.split_whitespace().next()?.parse().ok())
}

/// What stopped a run, from its log.
fn finding(text: &str) -> Finding {
    let kind = if text.contains("libFuzzer: timeout") {
        "hang (an input ran over the timeout)"
    } else if text.contains("out-of-memory") {
        "out of memory"
    } else if text.contains("panicked at") {
        "panic"
    } else if text.contains("ERROR: AddressSanitizer") {
        "memory error (AddressSanitizer)"
    } else if text.contains("deadly signal") {
        "crash (deadly signal)"
    } else {
        "cargo fuzz failed (see the log)"
    };
    let artifact = text.lines().find_map(|line| {
        let (_, path) = line.split_once("Test unit written to ")?;
        Some(path.trim().to_string())
    });
    let summary = match text.find("panicked at") {
        Some(at) => text[at..].lines().take(3).collect::<Vec<_>>().join("\n"),
        None => text
            .lines()
            .filter(|line| line.contains("ERROR") || line.contains("SUMMARY"))
            .take(3)
            .collect::<Vec<_>>()
            .join("\n"),
    };
    Finding { kind: kind.to_string(), summary, artifact }
}
