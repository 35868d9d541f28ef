//! librdkafka clients through the Debian `kcat` binary.
//!
//! librdkafka is the other major Kafka client implementation (and the core of most non-Java
//! clients), with its own ideas about metadata, bootstrap handling and group protocol, so the
//! gateway is checked against it too. Every call has a hard timeout; failures carry kcat's output.

use std::io::Write;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::process::{self, CapturedChild, CommandOutput, TimedChild, TimedLine};

const KCAT_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether a runnable `kcat` is on `PATH`.
pub fn kcat_available() -> bool {
    Command::new("kcat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn kcat(
    bootstrap: &str,
    args: &[&str],
    stdin: Option<Vec<u8>>,
    timeout: Duration,
    what: &str,
) -> Result<CommandOutput> {
    let mut cmd = kcat_command(bootstrap);
    cmd.args(args);
    process::run(cmd, stdin, timeout)?.ensure_success(&format!("kcat {what}"))
}

/// `kcat -b <bootstrap>`, loading the system's librdkafka.
fn kcat_command(bootstrap: &str) -> Command {
    let mut cmd = Command::new("kcat");
    // `cargo test` puts the build's own librdkafka (built without OpenSSL unless the gateway
    // needs it) on the library path; kcat must load the system's, which has TLS and SASL.
    cmd.env_remove("LD_LIBRARY_PATH");
    cmd.args(["-b", bootstrap]);
    cmd
}

/// `kcat -L`: brokers, topics and partitions as text.
pub fn metadata(bootstrap: &str) -> Result<String> {
    Ok(kcat(bootstrap, &["-L", "-m", "15"], None, KCAT_TIMEOUT, "metadata")?.stdout)
}

/// Produces one record per line with `acks=all`.
pub fn produce(bootstrap: &str, topic: &str, lines: &[String]) -> Result<()> {
    produce_with_headers(bootstrap, topic, &[], lines)
}

/// Produces one record per line with `acks=all`, each carrying the `headers` (`key`, `value`).
pub fn produce_with_headers(bootstrap: &str, topic: &str, headers: &[(&str, &str)], lines: &[String]) -> Result<()> {
    let stdin: String = lines.iter().map(|line| format!("{line}\n")).collect();
    let mut args = vec!["-P".to_owned(), "-t".to_owned(), topic.to_owned(), "-X".to_owned(), "acks=all".to_owned()];
    for (key, value) in headers {
        args.extend(["-H".to_owned(), format!("{key}={value}")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    kcat(bootstrap, &args, Some(stdin.into_bytes()), KCAT_TIMEOUT, &format!("produce to {topic}")).map(drop)
}

/// The last record of partition 0 of `topic`, as (headers `key=value` joined by `,`, value).
pub fn last_record(bootstrap: &str, topic: &str) -> Result<(String, String)> {
    let args = ["-C", "-t", topic, "-p", "0", "-o", "-1", "-e", "-f", "%h\t%s\n"];
    let output = kcat(bootstrap, &args, None, KCAT_TIMEOUT, &format!("read the last record of {topic}"))?.stdout;
    let line = output.lines().last().unwrap_or_default();
    let (headers, value) = line.split_once('\t').unwrap_or(("", line));
    Ok((headers.to_owned(), value.to_owned()))
}

/// Starts a balanced consumer of `topic` in `group` with client id `client_id`, which stays in
/// the group until the returned child is dropped.
pub fn join_group(bootstrap: &str, group: &str, topic: &str, client_id: &str) -> Result<CapturedChild> {
    let mut cmd = Command::new("kcat");
    cmd.args(["-b", bootstrap, "-G", group, "-X", &format!("client.id={client_id}"), "-q", topic]);
    CapturedChild::spawn(cmd, None)
}

/// Produces `count` records `<prefix>-<n>` to `topic` with `acks=all` and `config` as extra `-X`
/// settings (for example `linger.ms=0` and `batch.num.messages=1`, one record per request, which
/// librdkafka then pipelines on each connection). Returns how long kcat took from start to exit;
/// fails if kcat fails or is still running after `timeout` (then it is killed).
pub fn produce_numbered(
    bootstrap: &str,
    topic: &str,
    prefix: &str,
    count: usize,
    config: &[(&str, &str)],
    timeout: Duration,
) -> Result<Duration> {
    let mut stdin = String::with_capacity(count * (prefix.len() + 8));
    for n in 0..count {
        stdin.push_str(&format!("{prefix}-{n}\n"));
    }
    let mut args = vec!["-P".to_owned(), "-t".to_owned(), topic.to_owned(), "-X".to_owned(), "acks=all".to_owned()];
    for (key, value) in config {
        args.extend(["-X".to_owned(), format!("{key}={value}")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    kcat(bootstrap, &args, Some(stdin.into_bytes()), timeout, &format!("produce {count} records to {topic}"))?;
    Ok(started.elapsed())
}

/// Starts producing one record per line with `acks=all`, a line every `interval`, while the
/// caller does something else; wait on the returned child for kcat to deliver them all.
pub fn produce_paced(bootstrap: &str, topic: &str, lines: Vec<String>, interval: Duration) -> Result<CapturedChild> {
    produce_paced_with(bootstrap, topic, lines, interval, &[])
}

/// [`produce_paced`] with extra `-X` settings (see [`security_config`]).
pub fn produce_paced_with(
    bootstrap: &str,
    topic: &str,
    lines: Vec<String>,
    interval: Duration,
    config: &[(String, String)],
) -> Result<CapturedChild> {
    let mut cmd = Command::new("kcat");
    cmd.arg("-b").arg(bootstrap).args(with_config(&["-P", "-t", topic, "-X", "acks=all", "-X", "linger.ms=0"], config));
    CapturedChild::spawn_fed(cmd, feed_paced(lines, interval, Arc::default()))
}

/// Writes `lines` to kcat's stdin, one every `interval`, until `stop` is set; kcat reads them as
/// they come, and delivers what it has read and exits once the pipe closes.
fn feed_paced(
    lines: impl IntoIterator<Item = String> + Send + 'static,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> impl FnOnce(ChildStdin) + Send + 'static {
    move |mut pipe| {
        for line in lines {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            // A pipe error means kcat is gone, which the caller sees when it waits.
            if writeln!(pipe, "{line}").and_then(|()| pipe.flush()).is_err() {
                return;
            }
            std::thread::sleep(interval);
        }
    }
}

/// A stock kcat producer (no `-E`: it exits on the first error librdkafka reports, such as all
/// its broker connections down) sending `lines` to `topic`, one every `interval` until `stop` is
/// set, idempotent with `acks=all` and `linger.ms=0`, printing a line per delivery report
/// (`-v -v`), each stamped as it is read: see [`delivery_times`] and [`reported_errors`].
pub fn produce_reported(
    bootstrap: &str,
    topic: &str,
    lines: impl IntoIterator<Item = String> + Send + 'static,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> Result<TimedChild> {
    let mut cmd = kcat_command(bootstrap);
    cmd.args(["-P", "-t", topic, "-v", "-v"]);
    cmd.args(["-X", "acks=all", "-X", "enable.idempotence=true", "-X", "linger.ms=0"]);
    TimedChild::spawn(cmd, Some(Box::new(feed_paced(lines, interval, stop))))
}

/// When each delivery a [`produce_reported`] kcat reported was read, in order (one per record).
pub fn delivery_times(stderr: &[TimedLine]) -> Vec<u64> {
    stderr.iter().filter(|line| line.text.contains("Message delivered to partition")).map(|l| l.epoch_millis).collect()
}

/// The errors kcat reported (`% ERROR: …`, which end a kcat without `-E`) and the records it
/// failed to deliver.
pub fn reported_errors(stderr: &[TimedLine]) -> Vec<String> {
    let is_error = |text: &str| text.contains("ERROR") || text.contains("Delivery failed");
    stderr.iter().filter(|line| is_error(&line.text)).map(|line| line.text.clone()).collect()
}

/// A stock kcat consumer (no group, no `-E`) reading up to `count` records from the beginning of
/// `topic`, then exiting; each value is printed unbuffered (`-u`) and stamped as it is read.
pub fn consume_stamped(bootstrap: &str, topic: &str, count: usize) -> Result<TimedChild> {
    let mut cmd = kcat_command(bootstrap);
    cmd.args(["-C", "-t", topic, "-o", "beginning", "-c", &count.to_string(), "-u"]);
    TimedChild::spawn(cmd, None)
}

/// `(key, value)` librdkafka settings (`-X`) that reach a secured listener: `security.protocol`,
/// and TLS trust and SASL credentials as given.
pub fn security_config(
    protocol: &str,
    ca_pem: Option<&std::path::Path>,
    sasl: Option<(&str, &str, &str)>,
) -> Vec<(String, String)> {
    let mut config = vec![("security.protocol".to_owned(), protocol.to_owned())];
    if let Some(ca) = ca_pem {
        config.push(("ssl.ca.location".to_owned(), ca.display().to_string()));
    }
    if let Some((mechanism, user, password)) = sasl {
        config.extend([
            ("sasl.mechanism".to_owned(), mechanism.to_owned()),
            ("sasl.username".to_owned(), user.to_owned()),
            ("sasl.password".to_owned(), password.to_owned()),
        ]);
    }
    config
}

fn with_config(args: &[&str], config: &[(String, String)]) -> Vec<String> {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    for (key, value) in config {
        all.extend(["-X".to_owned(), format!("{key}={value}")]);
    }
    all
}

/// [`produce`] with extra `-X` settings (see [`security_config`]).
pub fn produce_with(bootstrap: &str, topic: &str, lines: &[String], config: &[(String, String)]) -> Result<()> {
    let stdin: String = lines.iter().map(|line| format!("{line}\n")).collect();
    let args = with_config(&["-P", "-t", topic, "-X", "acks=all"], config);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    kcat(bootstrap, &args, Some(stdin.into_bytes()), KCAT_TIMEOUT, &format!("produce to {topic}")).map(drop)
}

/// [`consume`] with extra `-X` settings (see [`security_config`]).
pub fn consume_with(
    bootstrap: &str,
    topic: &str,
    count: usize,
    timeout: Duration,
    config: &[(String, String)],
) -> Result<Vec<String>> {
    let count = count.to_string();
    let args = with_config(&["-C", "-t", topic, "-o", "beginning", "-c", &count, "-e", "-q"], config);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Ok(kcat(bootstrap, &args, None, timeout, &format!("consume from {topic}"))?.stdout_lines())
}

/// Reads `count` record values from the beginning of `topic`, waiting for new records as a
/// stock consumer does (no group, no `-E`); fails if fewer arrive within `timeout` or kcat exits
/// with an error.
pub fn consume_until(bootstrap: &str, topic: &str, count: usize, timeout: Duration) -> Result<Vec<String>> {
    let count = count.to_string();
    let args = ["-C", "-t", topic, "-o", "beginning", "-c", &count, "-q"];
    Ok(kcat(bootstrap, &args, None, timeout, &format!("consume {count} records from {topic}"))?.stdout_lines())
}

/// Reads up to `count` record values from the beginning of every partition of `topic`, stopping
/// early at the end of the partitions (no consumer group).
pub fn consume(bootstrap: &str, topic: &str, count: usize, timeout: Duration) -> Result<Vec<String>> {
    let count = count.to_string();
    let args = ["-C", "-t", topic, "-o", "beginning", "-c", &count, "-e", "-q"];
    Ok(kcat(bootstrap, &args, None, timeout, &format!("consume from {topic}"))?.stdout_lines())
}

/// Reads `count` record values as a member of consumer group `group` (offsets reset to earliest,
/// commits as librdkafka does). Fails if fewer arrive within `timeout`.
pub fn consume_group(
    bootstrap: &str,
    group: &str,
    topic: &str,
    count: usize,
    timeout: Duration,
) -> Result<Vec<String>> {
    let count = count.to_string();
    let args = ["-G", group, topic, "-c", &count, "-q", "-X", "auto.offset.reset=earliest"];
    Ok(kcat(bootstrap, &args, None, timeout, &format!("group {group} consume from {topic}"))?.stdout_lines())
}
