//! A current librdkafka, through Python's confluent-kafka (its wheel bundles librdkafka 2.16).
//!
//! Debian's kcat links librdkafka 2.0.2, which cannot log in with SCRAM to Kafka 4 and does not
//! re-authenticate (KIP-368, librdkafka 2.2). The wheel is installed by `.ci/run`. The client's
//! settings, secrets included, reach the script on its standard input, never its command line.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};

/// Produces each line, `pace` apart, and waits for every delivery; prints each error librdkafka
/// reports outside a delivery (a closed connection, all brokers down) as `TRANSIENT <error>`;
/// exits 3 when confluent-kafka is missing, 1 with the errors when a record was not delivered.
const PRODUCE: &str = r#"
import json, sys, time
try:
    from confluent_kafka import Producer, libversion
except ImportError:
    print("MISSING: Python's confluent-kafka; install it with `python3 -m pip install confluent-kafka==2.16.1` (.ci/run does)")
    sys.exit(3)
job = json.load(sys.stdin)
producer = Producer({**job["config"], "error_cb": lambda err: print(f"TRANSIENT {err}", flush=True)})
errors = []
for line in job["lines"]:
    producer.produce(job["topic"], line.encode(), callback=lambda err, msg: err and errors.append(str(err)))
    producer.poll(0)
    time.sleep(job["pace"])
left = producer.flush(30)
if errors or left:
    print(f"librdkafka {libversion()[0]}: errors {errors}, {left} undelivered")
    sys.exit(1)
"#;

/// Produce `lines` to `topic` through `bootstrap` with librdkafka `config` (e.g.
/// `security.protocol`, `sasl.mechanism`, credentials), one every `pace`. Fails, with
/// librdkafka's errors, unless every record is acknowledged; returns the errors librdkafka
/// reported on the way without failing a delivery (its error callback's).
pub fn produce(
    bootstrap: &str,
    topic: &str,
    config: &[(&str, &str)],
    lines: &[String],
    pace: Duration,
) -> Result<Vec<String>> {
    let mut settings: serde_json::Map<String, serde_json::Value> =
        config.iter().map(|(k, v)| (k.to_string(), v.to_string().into())).collect();
    settings.insert("bootstrap.servers".into(), bootstrap.into());
    settings.entry("message.timeout.ms").or_insert("20000".into());
    let job = serde_json::json!({"config": settings, "topic": topic, "lines": lines, "pace": pace.as_secs_f64()});
    let mut child = Command::new("python3")
        .args(["-c", PRODUCE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running python3 (needed for the librdkafka 2.16 client)")?;
    child.stdin.take().context("python3's stdin")?.write_all(job.to_string().as_bytes())?;
    let output = child.wait_with_output()?;
    ensure!(
        output.status.success(),
        "the librdkafka producer failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(stdout.lines().filter_map(|line| line.strip_prefix("TRANSIENT ")).map(str::to_owned).collect())
}
