//! Client generations other than the brokers' own: any release of the Java client, and franz-go.
//!
//! The gateway clamps and rewrites the protocol, so every client generation that users run must
//! be checked against it, not only the 4.1.1 client that ships with the brokers. This module
//!
//! - resolves one release of `org.apache.kafka:kafka-clients` with its runtime dependencies into
//!   a cached directory per release ([`JavaClientJars`]), and runs the single-file programs
//!   `crates/testkit/java/ClientWorkout.java` and `AdminProbe.java` with only those jars on the
//!   classpath (never the broker's);
//! - builds `crates/testkit/go/franz-workout` (franz-go and kadm) once per process with `go
//!   build` and runs it ([`go_workout`]); without `go` on `PATH` that returns `None`;
//! - parses the workouts' common output into a [`Workout`] that checks itself.
//!
//! Every run has a hard timeout (the programs also have a deadline of their own that names the
//! phase they were stuck in).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use crate::java::java_programs_dir;
use crate::kafka::{cache_root, resolve_jars_into, COMPLETE_MARKER, TOOL_JVM_OPTS};
use crate::process::{self, CommandOutput};

/// The newest 4.x release of the Java client.
pub const JAVA_CLIENT_4: &str = "4.4.0";
/// The last 3.x release of the Java client.
pub const JAVA_CLIENT_3: &str = "3.9.1";
/// The last 2.x release of the Java client.
pub const JAVA_CLIENT_2: &str = "2.8.2";

/// Deadline the workout programs enforce on themselves; they print the phase they were in.
const WORKOUT_DEADLINE: Duration = Duration::from_secs(120);
/// Hard limit for a workout process: its own deadline plus JVM start and source compilation.
const WORKOUT_TIMEOUT: Duration = Duration::from_secs(150);
const PROBE_TIMEOUT: Duration = Duration::from_secs(90);
const GO_BUILD_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const FRANZ_WORKOUT: &str = "franz-workout";

/// The jars of one Java client release: `kafka-clients-<version>.jar`, its runtime dependencies
/// (compression libraries, slf4j-api) and an slf4j binding, nothing else.
pub struct JavaClientJars;

impl JavaClientJars {
    /// The jar directory of `version`, downloaded with Maven on first use.
    ///
    /// Lives in `$SWITCHYARD_CLIENT_JARS/<version>`, else `$XDG_CACHE_HOME` (or `~/.cache`) +
    /// `/switchyard/kafka-clients-<version>`, and is resolved like
    /// [`KafkaJars::ensure`](crate::KafkaJars::ensure): staging directory, rename, marker.
    pub fn ensure(version: &str) -> Result<PathBuf> {
        static RESOLVED: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
        ensure!(
            !version.is_empty() && version.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
            "not a release version: {version:?}"
        );
        let mut resolved = RESOLVED.lock().unwrap_or_else(PoisonError::into_inner);
        let resolved = resolved.get_or_insert_with(HashMap::new);
        if let Some(dir) = resolved.get(version) {
            return Ok(dir.clone());
        }
        let dir = match std::env::var_os("SWITCHYARD_CLIENT_JARS") {
            Some(root) => PathBuf::from(root).join(version),
            None => cache_root()?.join(format!("kafka-clients-{version}")),
        };
        if !dir.join(COMPLETE_MARKER).exists() {
            let pom = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/pom.xml");
            resolve_jars_into(&dir, &pom, &[("kafka.clients.version", version)], |_| Ok(()))
                .with_context(|| format!("downloading kafka-clients {version} with Maven"))?;
        }
        let jar = dir.join(format!("kafka-clients-{version}.jar"));
        ensure!(jar.exists(), "{} is missing: delete {} and retry", jar.display(), dir.display());
        resolved.insert(version.to_owned(), dir.clone());
        Ok(dir)
    }
}

/// `java <tool opts> -cp '<client jars>/*'`, warnings logged to stderr: a program to run follows.
pub(crate) fn client_java_command(version: &str) -> Result<Command> {
    let jars = JavaClientJars::ensure(version)?;
    let mut cmd = Command::new("java");
    cmd.args(TOOL_JVM_OPTS)
        .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
        .arg("-cp")
        .arg(format!("{}/*", jars.display()));
    Ok(cmd)
}

/// `java <tool opts> -cp '<client jars>/*' crates/testkit/java/<file>`.
fn client_program(version: &str, file: &str) -> Result<Command> {
    let mut cmd = client_java_command(version)?;
    cmd.arg(java_programs_dir().join(file));
    Ok(cmd)
}

/// Runs `ClientWorkout.java` with kafka-clients `version` against `bootstrap`: topics `name` and
/// `name-txn`, groups `name-group` and `name-txn-group`, `records` records. Fails if the program
/// fails or times out, with everything it printed.
pub fn java_workout(version: &str, bootstrap: &str, name: &str, records: usize) -> Result<Workout> {
    let mut cmd = client_program(version, "ClientWorkout.java")?;
    cmd.args([bootstrap, name, &records.to_string(), &WORKOUT_DEADLINE.as_secs().to_string()]);
    let output = process::run(cmd, None, WORKOUT_TIMEOUT)?
        .ensure_success(&format!("ClientWorkout.java with kafka-clients {version}"))?;
    Workout::parse(output)
}

/// Runs `AdminProbe.java` with kafka-clients `version` (3.9 or later) against `bootstrap`:
/// `describeMetadataQuorum()` and `describeConfigs` (with synonyms) of every broker, printed.
pub fn admin_probe(version: &str, bootstrap: &str) -> Result<CommandOutput> {
    let mut cmd = client_program(version, "AdminProbe.java")?;
    cmd.arg(bootstrap);
    process::run(cmd, None, PROBE_TIMEOUT)?.ensure_success(&format!("AdminProbe.java with kafka-clients {version}"))
}

/// Whether a runnable `go` is on `PATH`.
pub fn go_available() -> bool {
    Command::new("go")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The franz-go workout binary, built with `go build` the first time a process asks (Go's own
/// build cache makes later builds cheap) into `<cache>/switchyard/go/`; `None` without `go`.
/// The build goes to a temporary name that is renamed over the old binary, so concurrent test
/// processes never run a half-written file.
pub fn franz_workout_binary() -> Result<Option<PathBuf>> {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(binary) = built.as_ref() {
        return Ok(Some(binary.clone()));
    }
    if !go_available() {
        return Ok(None);
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("go").join(FRANZ_WORKOUT);
    let out_dir = cache_root()?.join("go");
    fs::create_dir_all(&out_dir)?;
    let binary = out_dir.join(FRANZ_WORKOUT);
    let staging = out_dir.join(format!(".{FRANZ_WORKOUT}-{}", std::process::id()));
    let mut cmd = Command::new("go");
    // -mod=readonly: build exactly what go.mod and go.sum pin, never edit them.
    cmd.current_dir(&source).args(["build", "-mod=readonly", "-o"]).arg(&staging).arg(".");
    let result = process::run(cmd, None, GO_BUILD_TIMEOUT).and_then(|out| out.ensure_success("go build franz-workout"));
    if let Err(e) = result {
        let _ = fs::remove_file(&staging);
        return Err(e);
    }
    fs::rename(&staging, &binary)?;
    *built = Some(binary.clone());
    Ok(Some(binary))
}

/// Runs the franz-go workout (see `crates/testkit/go/franz-workout/main.go`) like
/// [`java_workout`]. `Ok(None)` means `go` is not installed and nothing ran.
pub fn go_workout(bootstrap: &str, name: &str, records: usize) -> Result<Option<Workout>> {
    let Some(binary) = franz_workout_binary()? else { return Ok(None) };
    let mut cmd = Command::new(binary);
    cmd.args([bootstrap, name, &records.to_string(), &WORKOUT_DEADLINE.as_secs().to_string()]);
    let output = process::run(cmd, None, WORKOUT_TIMEOUT)?.ensure_success("franz-go workout")?;
    Workout::parse(output).map(Some)
}

/// What a workout program reported (`ClientWorkout.java` or `franz-workout`).
#[derive(Debug, Clone)]
pub struct Workout {
    /// `client_version`: the release that actually ran.
    pub client_version: String,
    pub cluster_id: String,
    /// `(node id, "host:port")` from the admin client's cluster metadata.
    pub nodes: Vec<(i32, String)>,
    /// Every `host:port` anywhere in the output, with the line it is on.
    pub addresses: Vec<(String, String)>,
    pub topics_listed: Vec<String>,
    pub produced: Option<u64>,
    pub consumed_total: Option<u64>,
    pub consumed_distinct: Option<u64>,
    /// Sum of the committed offsets of the consumer group.
    pub group_committed: Option<u64>,
    pub txn_committed_sent: Option<u64>,
    pub txn_aborted_sent: Option<u64>,
    /// `(committed, aborted)` records a `read_committed` consumer saw.
    pub read_committed: Option<(u64, u64)>,
    /// Sum of the offsets committed within the transaction (Java only).
    pub txn_group_committed: Option<u64>,
    pub ok: bool,
    pub output: CommandOutput,
}

impl Workout {
    /// Parses the program's stdout (see the programs' header comments for the lines).
    pub fn parse(output: CommandOutput) -> Result<Self> {
        let mut workout = Self {
            client_version: String::new(),
            cluster_id: String::new(),
            nodes: Vec::new(),
            addresses: Vec::new(),
            topics_listed: Vec::new(),
            produced: None,
            consumed_total: None,
            consumed_distinct: None,
            group_committed: None,
            txn_committed_sent: None,
            txn_aborted_sent: None,
            read_committed: None,
            txn_group_committed: None,
            ok: false,
            output: output.clone(),
        };
        for line in output.stdout.lines() {
            let bad = || format!("bad workout line {line:?}");
            let fields: Vec<&str> = line.split_whitespace().collect();
            for field in &fields {
                if parse_host_port(field).is_some() {
                    workout.addresses.push(((*field).to_owned(), line.to_owned()));
                }
            }
            match fields.as_slice() {
                ["client_version", version @ ..] => workout.client_version = version.join(" "),
                ["cluster_id", id] => workout.cluster_id = (*id).to_owned(),
                ["node", id, addr] => workout.nodes.push((id.parse().with_context(bad)?, (*addr).to_owned())),
                ["topic_listed", topic] => workout.topics_listed.push((*topic).to_owned()),
                ["produced", n] => workout.produced = Some(n.parse().with_context(bad)?),
                ["consumed", total, "distinct", distinct, "expected", _] => {
                    workout.consumed_total = Some(total.parse().with_context(bad)?);
                    workout.consumed_distinct = Some(distinct.parse().with_context(bad)?);
                }
                ["group_committed", _, sum] => workout.group_committed = Some(sum.parse().with_context(bad)?),
                ["txn_committed_sent", n] => workout.txn_committed_sent = Some(n.parse().with_context(bad)?),
                ["txn_aborted_sent", n] => workout.txn_aborted_sent = Some(n.parse().with_context(bad)?),
                ["read_committed", "committed", c, "aborted", a] => {
                    workout.read_committed = Some((c.parse().with_context(bad)?, a.parse().with_context(bad)?))
                }
                ["txn_group_committed", _, sum] => workout.txn_group_committed = Some(sum.parse().with_context(bad)?),
                ["workout", "ok"] => workout.ok = true,
                _ => {}
            }
        }
        Ok(workout)
    }

    /// Checks that everything arrived: `records` produced and consumed, the group committed all
    /// of them, the committed transaction (a tenth of `records`, at least one) is visible to
    /// `read_committed` and the aborted one is not, and transactional offsets (if reported) were
    /// committed for each of the 3 partitions.
    pub fn ensure_complete(&self, records: u64) -> Result<()> {
        let txn = (records / 10).max(1);
        let what = &self.client_version;
        let fail = |msg: String| -> Result<()> { bail!("{what}: {msg}\n{}", self.output.describe()) };
        if !self.ok {
            return fail("no `workout ok` line".into());
        }
        if self.nodes.is_empty() {
            return fail("no nodes listed".into());
        }
        if self.topics_listed.len() != 2 {
            return fail(format!("listTopics showed only {:?}", self.topics_listed));
        }
        if self.produced != Some(records) {
            return fail(format!("produced {:?} of {records} records", self.produced));
        }
        if self.consumed_distinct != Some(records) {
            return fail(format!("the group consumer read {:?} distinct of {records} records", self.consumed_distinct));
        }
        if self.group_committed != Some(records) {
            return fail(format!("the group committed offsets summing to {:?}, not {records}", self.group_committed));
        }
        if self.txn_committed_sent != Some(txn) || self.txn_aborted_sent != Some(txn) {
            return fail(format!(
                "transactions sent {:?} committed and {:?} aborted records, not {txn} each",
                self.txn_committed_sent, self.txn_aborted_sent
            ));
        }
        if self.read_committed != Some((txn, 0)) {
            return fail(format!(
                "read_committed saw (committed, aborted) = {:?}, expected ({txn}, 0)",
                self.read_committed
            ));
        }
        if let Some(sum) = self.txn_group_committed {
            if sum != 3 {
                return fail(format!("offsets committed in the transaction sum to {sum}, expected 3"));
            }
        }
        Ok(())
    }
}

/// `host:port` with a non-empty host and a numeric port.
pub fn parse_host_port(field: &str) -> Option<(&str, u16)> {
    let (host, port) = field.rsplit_once(':')?;
    if host.is_empty() || host.contains('/') || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((host, port.parse().ok()?))
}
