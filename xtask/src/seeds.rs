//! `cargo xtask fuzz --capture-seeds`: seed the fuzz corpora with what real clients exchange
//! with a real broker.
//!
//! A single-broker Kafka advertises a recorder ([`switchyard_testkit::recorder`]) in front of
//! it, and kcat (librdkafka), the newest and the oldest Java client this project tests, and
//! franz-go (when Go is installed) run their workouts through it: metadata, produce (idempotent
//! and transactional), consumer groups, offsets, admin calls. Each (API, version) seen is kept a
//! few times, and written as `captured_*` seeds in the format of each target: request frames for
//! `request_frames` and `fence_answer`, and the broker's answers for `rewrite_response` (only
//! the answers the gateway decodes, which is what that target drives). Earlier `captured_*`
//! seeds are replaced; the hand-made seeds (`fuzz/examples/seeds.rs`) stay.

use std::fs;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use switchyard::protocol::ResponseHandling;
use switchyard::rewrite::{classify, Classified};
use switchyard_testkit::clients::{self, JAVA_CLIENT_2, JAVA_CLIENT_4};
use switchyard_testkit::recorder::{Exchange, Recorder};
use switchyard_testkit::{free_port_block, kcat, ClusterSpec, KafkaCluster};

use crate::{step, workspace_root};

/// Seeds larger than this are left out: the committed corpora stay small.
const MAX_SEED: usize = 16 * 1024;
const RECORDS: usize = 30;

pub fn capture_seeds() -> Result<ExitCode> {
    let base = free_port_block(2);
    let (kafka_port, recorder_port) = (base, base + 1);
    let recorder = Recorder::start(recorder_port, kafka_port)?;
    let mut spec = ClusterSpec::single();
    spec.listener_ports = Some(vec![kafka_port]);
    spec.extra_props.push(("advertised.listeners".into(), format!("PLAINTEXT://127.0.0.1:{recorder_port}")));
    step("starting Kafka behind the recorder");
    let _cluster = KafkaCluster::start(spec)?;
    let bootstrap = format!("127.0.0.1:{recorder_port}");
    run_clients(&bootstrap)?;
    let exchanges = recorder.exchanges();
    step(&format!("writing seeds from {} exchanges", exchanges.len()));
    let corpus = workspace_root().join("fuzz/corpus");
    write_seeds(&corpus.join("request_frames"), request_frame_seeds(&exchanges))?;
    write_seeds(&corpus.join("fence_answer"), request_seeds(&exchanges))?;
    write_seeds(&corpus.join("rewrite_response"), response_seeds(&exchanges))?;
    Ok(ExitCode::SUCCESS)
}

fn run_clients(bootstrap: &str) -> Result<()> {
    step("kcat (librdkafka): metadata, produce, consume, a consumer group");
    let lines: Vec<String> = (0..RECORDS).map(|i| format!("seed-{i}")).collect();
    kcat::metadata(bootstrap)?;
    kcat::produce(bootstrap, "seeds-kcat", &lines)?;
    kcat::consume(bootstrap, "seeds-kcat", RECORDS, Duration::from_secs(60))?;
    kcat::consume_group(bootstrap, "seeds-kcat-group", "seeds-kcat", RECORDS, Duration::from_secs(60))?;
    for version in [JAVA_CLIENT_4, JAVA_CLIENT_2] {
        step(&format!("Java client {version}: the workout (admin, producers, groups, transactions)"));
        let name = format!("seeds-java-{}", version.replace('.', "-"));
        clients::java_workout(version, bootstrap, &name, RECORDS)?;
    }
    step("franz-go: the workout");
    if clients::go_workout(bootstrap, "seeds-franz", RECORDS)?.is_none() {
        println!("    skipped: go is not installed");
    }
    Ok(())
}

fn seed_name(exchange: &Exchange, index: usize) -> String {
    format!("captured_{}_v{}_{index}", exchange.api_key, exchange.api_version)
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// `request_frames`: a step byte (the read size of its incremental pass), then the frame.
fn request_frame_seeds(exchanges: &[Exchange]) -> Vec<(String, Vec<u8>)> {
    let with_step = |(index, exchange): (usize, &Exchange)| {
        let mut input = vec![(index * 7 % 64) as u8];
        input.extend_from_slice(&framed(&exchange.request));
        (seed_name(exchange, index), input)
    };
    exchanges.iter().enumerate().map(with_step).collect()
}

/// `fence_answer`: a request frame without its size prefix (the target keeps those a fence
/// answers).
fn request_seeds(exchanges: &[Exchange]) -> Vec<(String, Vec<u8>)> {
    exchanges.iter().enumerate().map(|(index, e)| (seed_name(e, index), e.request.to_vec())).collect()
}

/// `rewrite_response`: api key, version, a flags byte (route and body kind), then the answer,
/// for the answers the gateway decodes.
fn response_seeds(exchanges: &[Exchange]) -> Vec<(String, Vec<u8>)> {
    let decoded = |e: &&Exchange| {
        let Ok(api_key) = e.api_key.try_into() else { return false };
        matches!(classify(api_key, e.api_version), Classified::Forward(h) if h != ResponseHandling::Opaque)
    };
    let seed = |(index, exchange): (usize, &Exchange)| {
        let response = exchange.response.as_ref()?;
        let mut input = exchange.api_key.to_be_bytes().to_vec();
        input.extend_from_slice(&exchange.api_version.to_be_bytes());
        input.push((index % 4) as u8);
        input.extend_from_slice(response);
        Some((seed_name(exchange, index), input))
    };
    exchanges.iter().filter(decoded).enumerate().filter_map(seed).collect()
}

/// Replace the `captured_*` seeds of one corpus with `seeds` (those of at most [`MAX_SEED`]).
fn write_seeds(dir: &Path, seeds: Vec<(String, Vec<u8>)>) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("captured_")) {
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    let (mut count, mut bytes) = (0, 0);
    for (name, seed) in seeds.into_iter().filter(|(_, seed)| seed.len() <= MAX_SEED) {
        fs::write(dir.join(&name), &seed).with_context(|| format!("writing {name}"))?;
        (count, bytes) = (count + 1, bytes + seed.len());
    }
    println!("    {}: {count} captured seeds, {bytes} bytes", dir.display());
    Ok(())
}
