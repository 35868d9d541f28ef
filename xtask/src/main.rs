//! Project tasks, run as `cargo xtask <task>`.
//!
//! - `demo`: start a local Kafka 4.1 on 127.0.0.1:9092, the gateway in front of it on its
//!   built-in default config, and show messages and metadata going through it.
//! - `test [--no-lint] [cargo test args]`: the whole gate CI runs: `lint`, then install what the
//!   tests need and run the whole suite (`--no-lint` skips the lint step, for local iteration).
//! - `lint`: `cargo fmt --check`, the module layering (`layers`), `cargo deny check licenses bans
//!   sources`, clippy and rustdoc, all with warnings as errors.
//! - `layers [SRC_DIR]`: only the module layering check (see `layers.rs`), of `src/` by default.
//! - `drill`: the client-switchover drill against real clusters, a table and a timeline chart per
//!   mode (docs/switchover.md).
//! - `bench [--quick] [--wait-quiet] [--profile]`: the gateway against direct Kafka on this
//!   machine (README's Performance section); writes `target/bench/report.md` and `report.json`.
//! - `fuzz [--time SECONDS] [TARGET...]`: every cargo-fuzz target of `fuzz/` in turn, 60 s each by
//!   default, with executions and crashes per target (see `fuzz.rs`; needs nightly and cargo-fuzz).
//!   `fuzz --capture-seeds` records real clients talking to a real broker into the seed corpora
//!   (see `seeds.rs`).

mod bench;
mod chart;
mod fuzz;
mod layers;
mod seeds;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use switchyard_testkit::drill::{DrillMode, DrillOptions};
use switchyard_testkit::{java, kcat, poll, ChildGuard, ClusterSpec, HaproxyProcess, KafkaCluster, KafkaJars};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo(),
        Some("test") => test(&args[1..]),
        Some("lint") => lint(),
        Some("layers") => layers(args.get(1).map(PathBuf::from)),
        Some("bench") => bench::bench(&args[1..]),
        Some("drill") => drill(&args[1..]),
        Some("fuzz") if args.get(1).is_some_and(|a| a == "--capture-seeds") => seeds::capture_seeds(),
        Some("fuzz") => fuzz::fuzz(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask demo | cargo xtask test [--no-lint] [cargo test args] | cargo xtask lint \
                 | cargo xtask layers [src dir] | cargo xtask drill [args] | cargo xtask bench [--quick] [--wait-quiet] [--profile] [--only main|tls|latency|cost] \
                 | cargo xtask fuzz [--time SECONDS] [target...] | cargo xtask fuzz --capture-seeds"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

// ---- test --------------------------------------------------------------------------------

fn test(args: &[String]) -> Result<ExitCode> {
    let (lint_first, cargo_test_args) = match args.split_first() {
        Some((flag, rest)) if flag == "--no-lint" => (false, rest),
        _ => (true, args),
    };
    if lint_first && lint()? != ExitCode::SUCCESS {
        return Ok(ExitCode::FAILURE);
    }
    ensure_system_tools()?;
    step("fetching the Kafka 4.1.1 jars (cached after the first run)");
    let jars = KafkaJars::ensure()?;
    println!("    {}", jars.display());
    step("cargo test --workspace");
    let status = cargo().args(["test", "--workspace"]).args(cargo_test_args).status()?;
    if !status.success() {
        return Ok(ExitCode::FAILURE);
    }
    if cargo_test_args.is_empty() {
        // Each micro-benchmark once, unmeasured: their setup asserts what the pump relies on
        // (an unchanged answer passes as it came), and a bench nobody runs rots unseen.
        step("cargo test --bench codec (each benchmark once)");
        if !cargo().args(["test", "--bench", "codec"]).status()?.success() {
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---- lint --------------------------------------------------------------------------------

/// The version `.ci/run` installs; older ones may read `deny.toml` differently.
const CARGO_DENY: &str = "cargo-deny 0.20.2";

/// Every check that is not a test, warnings as errors. All run, so one pass shows every failure.
fn lint() -> Result<ExitCode> {
    let started = Instant::now();
    let mut failed = Vec::new();
    let mut run = |name: &'static str, check: &mut dyn FnMut() -> Result<bool>| -> Result<()> {
        step(name);
        let began = Instant::now();
        let passed = check()?;
        println!("    {} ({:.1} s)", if passed { "ok" } else { "FAILED" }, began.elapsed().as_secs_f64());
        if !passed {
            failed.push(name);
        }
        Ok(())
    };
    run("cargo fmt --all --check", &mut || Ok(cargo().args(["fmt", "--all", "--check"]).status()?.success()))?;
    run("module layering (cargo xtask layers)", &mut || Ok(check_layers(&workspace_root().join("src"))? == 0))?;
    run("cargo deny check licenses bans sources", &mut || {
        let present = cargo().args(["deny", "--version"]).output().is_ok_and(|o| o.status.success());
        if !present {
            println!(
                "    cargo-deny is missing: install it with `cargo install --locked {}`",
                CARGO_DENY.replace(' ', "@")
            );
            return Ok(false);
        }
        Ok(cargo()
            .args(["deny", "--log-level", "warn", "check", "--hide-inclusion-graph", "licenses", "bans", "sources"])
            .status()?
            .success())
    })?;
    run("cargo clippy --workspace --all-targets -- -D warnings", &mut || {
        Ok(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]).status()?.success())
    })?;
    run("RUSTDOCFLAGS='-D warnings' cargo doc --workspace --no-deps", &mut || {
        Ok(cargo().args(["doc", "--workspace", "--no-deps"]).env("RUSTDOCFLAGS", "-D warnings").status()?.success())
    })?;
    let took = started.elapsed().as_secs_f64();
    if failed.is_empty() {
        println!("\nlint passed in {took:.0} s");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\nlint FAILED in {took:.0} s: {}", failed.join("; "));
        Ok(ExitCode::FAILURE)
    }
}

/// `cargo xtask layers [SRC_DIR]`: the layering check alone, of `src/` or another crate's sources.
fn layers(src: Option<PathBuf>) -> Result<ExitCode> {
    let src = src.unwrap_or_else(|| workspace_root().join("src"));
    step(&format!("module layering of {}", src.display()));
    Ok(if check_layers(&src)? == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Prints each layering violation in `src`; returns how many there were.
fn check_layers(src: &Path) -> Result<usize> {
    let violations = layers::check_dir(src)?;
    for violation in &violations {
        println!("    {violation}");
    }
    if violations.is_empty() {
        println!("    every import follows the layering in xtask/src/layers.rs");
    }
    Ok(violations.len())
}

/// The tests run librdkafka's `kcat` and HAProxy; install them from the distribution when we may.
fn ensure_system_tools() -> Result<()> {
    let missing: Vec<&str> = [("kcat", kcat::kcat_available()), ("haproxy", HaproxyProcess::available())]
        .into_iter()
        .filter(|(_, present)| !present)
        .map(|(package, _)| package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let is_root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false);
    if !is_root {
        bail!(
            "the tests need {}: install with `sudo apt-get install -y {}`, then rerun",
            missing.join(" and "),
            missing.join(" ")
        );
    }
    step(&format!("installing {} with apt-get", missing.join(", ")));
    let install: Vec<&str> = ["install", "-y", "-qq"].into_iter().chain(missing.iter().copied()).collect();
    for args in [&["update", "-qq"][..], &install[..]] {
        let status = Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive").status()?;
        if !status.success() {
            bail!("apt-get {} failed: install {} by hand, then rerun", args.join(" "), missing.join(" "));
        }
    }
    Ok(())
}

// ---- demo --------------------------------------------------------------------------------

/// The built-in default route: clients bootstrap here.
const GATEWAY: &str = "127.0.0.1:19092";
/// The built-in default's upstream Kafka.
const KAFKA_PORT: u16 = 9092;
const TOPIC: &str = "switchyard-demo";

fn demo() -> Result<ExitCode> {
    step("building the gateway (release)");
    let status = cargo().args(["build", "--release", "--quiet", "-p", "switchyard", "--bin", "switchyard"]).status()?;
    if !status.success() {
        bail!("the build failed");
    }
    let binary = target_dir().join("release/switchyard");
    ensure_free(KAFKA_PORT, "the demo's Kafka")?;
    ensure_free(19092, "the gateway's default route")?;

    step("fetching the Kafka 4.1.1 jars (cached after the first run)");
    KafkaJars::ensure()?;
    step("starting a single-node Kafka 4.1 (KRaft) on 127.0.0.1:9092");
    let kafka = KafkaCluster::start(ClusterSpec { listener_ports: Some(vec![KAFKA_PORT]), ..ClusterSpec::single() })?;

    step("the gateway's built-in default config (`switchyard check`)");
    let check = Command::new(&binary).arg("check").env_remove("GATEWAY_CONFIG_FILE").output()?;
    print!("{}", String::from_utf8_lossy(&check.stdout));

    step(&format!("starting the gateway with no config file: clients now bootstrap from {GATEWAY}"));
    let log = std::env::temp_dir().join(format!("switchyard-demo-{}.log", std::process::id()));
    let mut run = Command::new(&binary);
    run.arg("run").env_remove("GATEWAY_CONFIG_FILE").env("RUST_LOG", "info");
    let mut gateway = ChildGuard::spawn_logged(run, &log)?;
    let gateway_addr: SocketAddr = GATEWAY.parse()?;
    poll::poll_until(Duration::from_secs(30), || TcpStream::connect(gateway_addr).is_ok().then_some(()))
        .with_context(|| format!("the gateway did not start:\n{}", gateway.log_contents()))?;

    show_traffic()?;

    step("stopping the gateway (SIGTERM) and Kafka");
    let exit = gateway.terminate(Duration::from_secs(40));
    println!("    gateway exited with {exit:?}; its log was {}", log.display());
    drop(kafka);
    println!("\nDone: every byte above went through the gateway, and clients only ever saw gateway addresses.");
    Ok(ExitCode::SUCCESS)
}

fn show_traffic() -> Result<()> {
    step(&format!("creating topic `{TOPIC}` through the gateway"));
    java::create_topic(GATEWAY, TOPIC, 3, 1)?;

    let messages: Vec<String> = (1..=5).map(|i| format!("hello through switchyard #{i}")).collect();
    step("producing 5 messages through the gateway (Kafka's console producer)");
    java::console_produce(GATEWAY, TOPIC, &messages, &[])?;

    step("consuming them back through the gateway (Kafka's console consumer)");
    let received =
        java::console_consume(GATEWAY, TOPIC, Some("switchyard-demo-group"), messages.len(), Duration::from_secs(30))?;
    for line in &received {
        println!("    received: {line}");
    }
    if received.len() != messages.len() {
        bail!("received {} of {} messages", received.len(), messages.len());
    }

    step("the cluster as a client sees it through the gateway");
    let metadata = switchyard_testkit::fetch_metadata(GATEWAY.parse()?, Duration::from_secs(10))?;
    for broker in &metadata.brokers {
        println!(
            "    broker {} at {}:{} (the real broker is on 127.0.0.1:{KAFKA_PORT})",
            broker.node_id.0,
            broker.host.as_str(),
            broker.port
        );
    }
    Ok(())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"))
}

fn ensure_free(port: u16, what: &str) -> Result<()> {
    TcpListener::bind(("127.0.0.1", port))
        .map(drop)
        .with_context(|| format!("port {port} ({what}) is in use: stop whatever listens there and rerun"))
}

fn step(text: &str) {
    println!("\n==> {text}");
}

// ---- drill -------------------------------------------------------------------------------

/// `cargo xtask drill [--mode live|live-error|restart|all] [--records N] [--rate R]
/// [--group-offsets on|off] [--gateway PATH]`: the switchover drill (see docs/switchover.md),
/// with a table and a timeline chart (`target/drill/<mode>.png`) per mode. `--gateway` runs an
/// already built gateway binary instead of building the release one. Exits with failure if an
/// acknowledged record was lost or a client (the live modes run five) stopped.
fn drill(args: &[String]) -> Result<ExitCode> {
    let all = [DrillMode::Live, DrillMode::LiveErrorFence, DrillMode::Restart];
    let mut modes = all.to_vec();
    let (mut records, mut rate) = (20_000u64, 1_000u32);
    let (mut group_offsets, mut gateway) = (true, None);
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--mode" => {
                modes = match value.as_str() {
                    "live" => vec![DrillMode::Live],
                    "live-error" => vec![DrillMode::LiveErrorFence],
                    "restart" => vec![DrillMode::Restart],
                    "all" => all.to_vec(),
                    other => bail!("--mode {other}: use live, live-error, restart or all"),
                }
            }
            "--records" => records = value.parse().context("--records takes a number")?,
            "--rate" => rate = value.parse().context("--rate takes records per second")?,
            "--group-offsets" => {
                group_offsets = match value.as_str() {
                    "on" => true,
                    "off" => false,
                    other => bail!("--group-offsets {other}: use on or off"),
                }
            }
            "--gateway" => gateway = Some(PathBuf::from(value)),
            other => bail!("unknown option {other}: use --mode, --records, --rate, --group-offsets, --gateway"),
        }
    }
    let gateway_binary = match gateway {
        Some(binary) => binary,
        None => {
            step("building the gateway (release)");
            let status =
                cargo().args(["build", "--release", "--quiet", "-p", "switchyard", "--bin", "switchyard"]).status()?;
            if !status.success() {
                bail!("the build failed");
            }
            target_dir().join("release/switchyard")
        }
    };
    KafkaJars::ensure()?;
    let charts = target_dir().join("drill");
    std::fs::create_dir_all(&charts).with_context(|| format!("creating {}", charts.display()))?;
    // Fails if an acknowledged record was lost or a client stopped.
    let mut lost = false;
    for mode in modes {
        step(&format!("drill: {mode}, {records} records at {rate}/s"));
        let options =
            DrillOptions { gateway_binary: gateway_binary.clone(), mode, records, rate, partitions: 3, group_offsets };
        let mut report = switchyard_testkit::drill::run(&options)?;
        let png = charts.join(format!("{}.png", mode.slug()));
        match chart::draw_drill(&report, &png) {
            Ok(()) => report.chart = Some(png),
            Err(e) => eprintln!("the timeline chart was not drawn: {e:#}"),
        }
        println!("{report}");
        lost |= !report.acked_missing.is_empty() || report.clients.iter().any(|client| !client.kept_everything());
    }
    Ok(if lost { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
