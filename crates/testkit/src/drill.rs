//! The client-switchover drill: move a live producer and consumer group from one real Kafka
//! cluster to another through the gateway, then count what was lost.
//!
//! Two independent clusters (the destination's broker ids differ from the source's), MirrorMaker 2
//! replicating the drill topic with identical names and translated group offsets, a gateway
//! route pointing at the source, an idempotent `acks=all` Java producer sending numbered records
//! through the route and a consumer group reading them through it. Midway (once the producer has
//! half its records acknowledged and the group has caught up to within a second and committed),
//! the route is switched to the destination, either live (the admin API's switchover, with the
//! fence holding requests or answering them with retriable errors) or as Confluent documents it
//! (edit the route's domain, restart the gateway). Afterwards the destination is read in full
//! and the drill reports acknowledged records missing (must be 0), duplicates, producer errors,
//! the longest pause each client saw, and what the consumer skipped or re-read, with a
//! [`Timeline`] of acknowledgements, consumption and the switchover's phases for a chart.
//!
//! The live modes also run the clients of [`crate::drill_clients`] across the same cut (a stock
//! kcat producer and consumer, a Java transactional producer), and the report has a row per
//! client: survived, records, pause, what was lost or re-read.
//!
//! With [`DrillOptions::group_offsets`], a live switchover carries the consumer group's offsets
//! by MirrorMaker 2's checkpoints (`groupOffsets`), so the group resumes on the destination where
//! it stopped instead of where MM2's periodic offset sync last left it.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::drill_clients::{ClientOutcome, CutWindow, SideClients, KCAT_TOPIC, TXN_TOPIC};
use crate::mirrormaker::{committed_offsets, MirrorMaker, MirrorOptions, SOURCE_ALIAS};
use crate::numbered::{ConsumerReport, NumberedConsumer, NumberedProducer, ProducerReport};
use crate::poll::try_poll_until;
use crate::process::unix_millis;
use crate::{free_port_block, java, ClusterSpec, GatewayProcess, KafkaCluster};

const TOPIC: &str = "drill";
const GROUP: &str = "drill-group";
const ROUTE: &str = "drill";
const TOKEN: &str = "drill-token";

/// How the route is moved to the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrillMode {
    /// `POST /admin/v1/routes/drill/switchover` on the running gateway, fence mode `hold`.
    Live,
    /// The same with fence mode `error`: requests during the fence get retriable errors.
    LiveErrorFence,
    /// Edit the route's `streamingDomain.name` and restart the gateway.
    Restart,
}

impl DrillMode {
    /// A file-name-friendly name: `live`, `live-error` or `restart`.
    pub fn slug(self) -> &'static str {
        match self {
            DrillMode::Live => "live",
            DrillMode::LiveErrorFence => "live-error",
            DrillMode::Restart => "restart",
        }
    }
}

impl fmt::Display for DrillMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DrillMode::Live => "live switchover (fence: hold)",
            DrillMode::LiveErrorFence => "live switchover (fence: error)",
            DrillMode::Restart => "restart with edited config",
        })
    }
}

#[derive(Debug, Clone)]
pub struct DrillOptions {
    pub gateway_binary: PathBuf,
    pub mode: DrillMode,
    pub records: u64,
    /// Records per second the producer sends.
    pub rate: u32,
    pub partitions: i32,
    /// Live modes: carry the group's offsets by MM2's checkpoints (`groupOffsets`).
    pub group_offsets: bool,
}

/// What happened when, as Unix milliseconds, for drawing the drill.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// When each record was acknowledged, and whether on the destination (acknowledged after
    /// the cut; before it, clients only reach the source).
    pub acks: Vec<(u64, bool)>,
    /// When the consumer group received each record, re-reads included.
    pub consumed: Vec<u64>,
    /// The switchover's phases (or the restart): name, start, end.
    pub phases: Vec<(String, u64, u64)>,
}

/// What the clients experienced.
#[derive(Debug, Clone)]
pub struct DrillReport {
    pub mode: DrillMode,
    pub records: u64,
    pub acked: usize,
    /// Acknowledged records absent from the destination afterwards: must be empty.
    pub acked_missing: Vec<u64>,
    /// Records present more than once on the destination.
    pub duplicates: usize,
    pub producer_errors: Vec<String>,
    /// The Java producer's logged retries of batches the cluster refused for their sequence
    /// number (`OUT_OF_ORDER_SEQUENCE_NUMBER`, `UNKNOWN_PRODUCER_ID`): a partition's batches
    /// reached it out of order, or the client has to bump its epoch. Must be empty.
    pub sequence_refusals: Vec<String>,
    pub longest_producer_pause_ms: u64,
    pub longest_consumer_pause_ms: u64,
    /// Acknowledged records the consumer group never saw.
    pub consumer_skipped: usize,
    /// Records the consumer group saw more than once.
    pub consumer_reread: usize,
    /// How long the switch itself took, as the operator saw it.
    pub switch_ms: u64,
    /// The gateway's switchover report (live modes), as JSON.
    pub switchover: Option<String>,
    /// Requests the fence answered with a retriable error (live modes).
    pub fence_answers: u64,
    /// Produce requests answered `NOT_LEADER_OR_FOLLOWER` on connections whose broker the
    /// destination lacks (live modes; the drill's clusters number their brokers differently).
    pub stand_in_answers: u64,
    /// Whether the switchover carried the group's offsets (`groupOffsets`).
    pub group_offsets: bool,
    /// With `groupOffsets`: records between the group's source offsets and their translations
    /// on the destination, summed over partitions: the re-reads MM2's offset-sync granularity
    /// causes (the rest were consumed after the group's last commit on the source).
    pub translation_gap: Option<i64>,
    pub timeline: Timeline,
    /// What each client experienced: the Java producer and group, then (live modes) the kcat
    /// producer and consumer and the Java transactional producer.
    pub clients: Vec<ClientOutcome>,
    /// Where the timeline was drawn, once someone drew it.
    pub chart: Option<PathBuf>,
}

impl fmt::Display for DrillReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "switchover drill: {} ({} records)", self.mode, self.records)?;
        let rows = [
            ("acknowledged records", self.acked.to_string()),
            ("acknowledged records missing on the destination", self.acked_missing.len().to_string()),
            ("duplicates on the destination", self.duplicates.to_string()),
            ("producer errors", self.producer_errors.len().to_string()),
            ("batches refused for their sequence number", self.sequence_refusals.len().to_string()),
            ("longest producer pause (ms)", self.longest_producer_pause_ms.to_string()),
            ("longest consumer pause (ms)", self.longest_consumer_pause_ms.to_string()),
            ("records the consumer skipped", self.consumer_skipped.to_string()),
            ("records the consumer re-read", self.consumer_reread.to_string()),
            ("switch duration as the operator saw it (ms)", self.switch_ms.to_string()),
            ("requests the fence answered with an error", self.fence_answers.to_string()),
            ("Produce answered in place of a missing broker", self.stand_in_answers.to_string()),
            ("group offsets carried by the gateway", if self.group_offsets { "yes" } else { "no" }.to_string()),
            (
                "of the re-reads, from MM2's offset translation",
                self.translation_gap.map_or("-".to_string(), |gap| gap.to_string()),
            ),
        ];
        for (name, value) in rows {
            writeln!(f, "| {name:<48} | {value:>8} |")?;
        }
        writeln!(f, "{}", ClientOutcome::HEADER)?;
        for client in &self.clients {
            writeln!(f, "{client}")?;
        }
        for client in &self.clients {
            for note in &client.notes {
                writeln!(f, "{}: {note}", client.client)?;
            }
        }
        if let Some(report) = &self.switchover {
            writeln!(f, "gateway switchover report: {report}")?;
        }
        if let Some(chart) = &self.chart {
            writeln!(f, "timeline chart (records per 100 ms, consumer progress, phases): {}", chart.display())?;
        }
        Ok(())
    }
}

/// Run one drill end to end; every process it starts is stopped before it returns.
pub fn run(options: &DrillOptions) -> Result<DrillReport> {
    let source = KafkaCluster::start(ClusterSpec::single())?;
    let destination = KafkaCluster::start(ClusterSpec { first_node_id: 2, ..ClusterSpec::single() })?;
    java::create_topic(&source.bootstrap(), TOPIC, options.partitions, 1)?;
    let live = options.mode != DrillMode::Restart;
    if live {
        SideClients::prepare(&source, &destination)?;
    }
    let topics = format!("{TOPIC},{KCAT_TOPIC},{TXN_TOPIC}");
    let mut mirror =
        MirrorMaker::start(&source.bootstrap(), &destination.bootstrap(), MirrorOptions::default().topics(topics))?;
    mirror.wait_for_topic(TOPIC, options.partitions as usize, Duration::from_secs(120))?;
    if live {
        for topic in [KCAT_TOPIC, TXN_TOPIC] {
            mirror.wait_for_topic(topic, 1, Duration::from_secs(120))?;
        }
    }

    let ports = DrillPorts { base: free_port_block(3), admin: free_port_block(1) };
    let config = |domain: &str| drill_config(&source.bootstrap(), &destination.bootstrap(), domain, &ports);
    let mut gateway = GatewayProcess::start(&options.gateway_binary, &config("source"), &[ports.bootstrap()])?;

    let bootstrap = ports.bootstrap().to_string();
    let run_time = Duration::from_secs(options.records / u64::from(options.rate.max(1)) + 180);
    // The group and the other clients get going before the Java producer starts: their start
    // (JVMs, a group join, kcat's connections) takes seconds on a loaded machine, and must not
    // hold the cut until after the producer's halfway point.
    let consumer_idle = Duration::from_secs(60);
    let mut consumer = NumberedConsumer::reading(&bootstrap, TOPIC, GROUP, options.records, consumer_idle).start()?;
    let mut side = live.then(|| SideClients::start(&bootstrap, side_rate(options), run_time)).transpose()?;
    if let Some(side) = &mut side {
        side.wait_running(run_time)?;
    }
    consumer.wait_assigned(run_time)?;
    let mut producer = NumberedProducer::sending(&bootstrap, TOPIC, options.records, options.rate).start()?;
    let half = (options.records / 2) as usize;
    producer.wait_acked(half, run_time)?;
    // Switch a group in its steady state (within a second of the producer, committing every
    // second), not one still starting its JVM or joining: that is what an operator moves.
    consumer.wait_seen(half.saturating_sub(options.rate as usize), run_time)?;
    // A group that caught up in one burst may not have committed yet: it would have nothing to
    // carry and fall back to `auto.offset.reset`, which measures the JVM's start, not the move.
    try_poll_until(Duration::from_secs(30), || {
        Ok(committed_offsets(&source.bootstrap(), GROUP, TOPIC).ok().filter(|offsets| !offsets.is_empty()))
    })
    .context("the drill's consumer group never committed on the source")?;

    let switch_started = Instant::now();
    let switch_started_ms = unix_millis();
    let group_offsets = options.group_offsets && options.mode != DrillMode::Restart;
    let switchover = match options.mode {
        DrillMode::Live => Some(live_switch(&ports, "hold", group_offsets)?),
        DrillMode::LiveErrorFence => Some(live_switch(&ports, "error", group_offsets)?),
        DrillMode::Restart => {
            gateway.terminate(Duration::from_secs(60));
            gateway = GatewayProcess::start(&options.gateway_binary, &config("destination"), &[ports.bootstrap()])?;
            None
        }
    };
    let switch_ms = switch_started.elapsed().as_millis() as u64;
    let parsed: Option<serde_json::Value> =
        switchover.as_deref().map(serde_json::from_str).transpose().context("the switchover report is not JSON")?;
    let translation_gap = parsed.as_ref().filter(|_| group_offsets).map(translation_gap);
    let phases = match &parsed {
        Some(report) => phase_spans(report, switch_started_ms)?,
        None => vec![("restart".to_string(), switch_started_ms, switch_started_ms + switch_ms)],
    };
    let fence_answers = counter_total(&ports, "switchyard_fence_answers_total")?;

    let cut_ms = phases.last().map_or(switch_started_ms, |(_, _, end)| *end);
    let (produced, producer_log) = producer.wait_with_log(run_time)?;
    let stand_in_answers = counter_total(&ports, "switchyard_stand_in_answers_total")?;
    let cut = CutWindow { requested_ms: switch_started_ms, cut_ms };
    let side_outcomes = side.map(|side| side.finish(&destination, cut, run_time)).unwrap_or_default();
    let consumed = consumer.wait(run_time + consumer_idle)?;
    let on_destination = NumberedConsumer::reading(
        &destination.bootstrap(),
        TOPIC,
        "drill-audit",
        options.records,
        Duration::from_secs(30),
    )
    .start()?
    .wait(Duration::from_secs(240))?;
    let seen_on_destination: std::collections::HashSet<u64> = on_destination.values.iter().copied().collect();
    let acked_missing: Vec<u64> = produced.acked.iter().copied().filter(|n| !seen_on_destination.contains(n)).collect();
    let mut clients =
        vec![java_producer_outcome(&produced, acked_missing.len(), cut_ms), java_group_outcome(&consumed, cut_ms)];
    clients.extend(side_outcomes);
    let report = DrillReport {
        mode: options.mode,
        records: options.records,
        acked: produced.acked.len(),
        acked_missing,
        duplicates: on_destination.duplicates(),
        producer_errors: produced.errors.clone(),
        sequence_refusals: sequence_refusals(&producer_log),
        longest_producer_pause_ms: produced.max_ack_gap_ms,
        longest_consumer_pause_ms: consumed.max_poll_gap_ms,
        consumer_skipped: produced.acked.iter().filter(|n| !consumed.values.contains(n)).count(),
        consumer_reread: consumed.duplicates(),
        switch_ms,
        switchover,
        fence_answers,
        stand_in_answers,
        group_offsets,
        translation_gap,
        timeline: Timeline {
            acks: produced.acks.iter().map(|a| (a.epoch_millis, a.epoch_millis >= cut_ms)).collect(),
            consumed: consumed.records.iter().map(|r| r.epoch_millis).collect(),
            phases,
        },
        clients,
        chart: None,
    };
    drop(gateway);
    drop(mirror);
    Ok(report)
}

/// The lines of the Java producer's log (warnings and up) that retry a batch the cluster
/// refused for its sequence number.
fn sequence_refusals(log: &str) -> Vec<String> {
    const REFUSALS: [&str; 2] = ["Error: OUT_OF_ORDER_SEQUENCE_NUMBER", "Error: UNKNOWN_PRODUCER_ID"];
    log.lines().filter(|line| REFUSALS.iter().any(|refusal| line.contains(refusal))).map(str::to_string).collect()
}

/// Records per second each of the other producers sends: a fifth of the drill's rate. They
/// send from before the Java producer starts until it is done.
fn side_rate(options: &DrillOptions) -> u32 {
    (options.rate / 5).max(1)
}

/// The drill's Java producer as a row of the client table: it survived if no error reached it.
fn java_producer_outcome(produced: &ProducerReport, missing: usize, cut_ms: u64) -> ClientOutcome {
    ClientOutcome {
        client: "Java producer (idempotent)",
        survived: produced.errors.is_empty() && produced.done,
        records: produced.acked.len(),
        after_cut: produced.acks.iter().filter(|ack| ack.epoch_millis >= cut_ms).count(),
        missing: Some(missing),
        longest_pause_ms: produced.max_ack_gap_ms,
        reread: None,
        notes: produced.errors.iter().take(3).cloned().collect(),
    }
}

/// The drill's Java consumer group as a row of the client table (it printed its final line).
fn java_group_outcome(consumed: &ConsumerReport, cut_ms: u64) -> ClientOutcome {
    let times: Vec<u64> = consumed.records.iter().map(|r| r.epoch_millis).collect();
    ClientOutcome {
        client: "Java consumer group",
        survived: consumed.done,
        records: consumed.distinct,
        after_cut: times.iter().filter(|&&at| at >= cut_ms).count(),
        missing: None,
        longest_pause_ms: consumed.max_poll_gap_ms,
        reread: Some(consumed.duplicates()),
        notes: Vec::new(),
    }
}

struct DrillPorts {
    base: u16,
    admin: u16,
}

impl DrillPorts {
    fn bootstrap(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.base))
    }
}

/// Two domains; the route points at `domain`. Broker ids differ (1 on the source, 2 on the
/// destination), so the route's port map covers both.
fn drill_config(source: &str, destination: &str, domain: &str, ports: &DrillPorts) -> String {
    format!(
        r#"streamingDomains:
  - name: source
    type: kafka
    kafkaCluster:
      name: source-cluster
      bootstrapServers: [{{id: plaintext, endpoint: "{source}"}}]
      nodeIdRanges: [{{name: source-brokers, start: 1, end: 1}}]
  - name: destination
    type: kafka
    kafkaCluster:
      name: destination-cluster
      bootstrapServers: [{{id: plaintext, endpoint: "{destination}"}}]
      nodeIdRanges: [{{name: destination-brokers, start: 2, end: 2}}]
routes:
  - name: {ROUTE}
    endpoint: "127.0.0.1:{base}"
    clusterId: switchyard-drill
    brokerIdentificationStrategy: {{type: port}}
    streamingDomain: {{name: {domain}, bootstrapServerId: plaintext}}
    switchover:
      catchUp: {{policy: records, maxLag: 0}}
      catchUpTimeoutMs: 60000
admin:
  address: 127.0.0.1:{admin}
  token: {TOKEN}
"#,
        base = ports.base,
        admin = ports.admin,
    )
}

/// The phases of the gateway's switchover `report` (JSON), back to back from `started` (Unix ms).
fn phase_spans(report: &serde_json::Value, started: u64) -> Result<Vec<(String, u64, u64)>> {
    let mut at = started;
    let mut spans = Vec::new();
    for phase in report["phases"].as_array().into_iter().flatten() {
        let name = phase["name"].as_str().context("a phase without a name")?;
        let end = at + phase["durationMs"].as_u64().context("a phase without a duration")?;
        spans.push((name.to_string(), at, end));
        at = end;
    }
    Ok(spans)
}

/// Σ (source offset - translated offset) over the carried groups' partitions in `report`.
fn translation_gap(report: &serde_json::Value) -> i64 {
    let partitions =
        report["groups"].as_array().into_iter().flatten().flat_map(|g| g["partitions"].as_array()).flatten();
    partitions.map(|p| p["sourceOffset"].as_i64().unwrap_or(0) - p["destinationOffset"].as_i64().unwrap_or(0)).sum()
}

/// Ask the running gateway to switch the route with this fence mode (carrying the group's
/// offsets by MM2's checkpoints if `group_offsets`); returns its report.
fn live_switch(ports: &DrillPorts, fence: &str, group_offsets: bool) -> Result<String> {
    let url = format!("http://127.0.0.1:{}/admin/v1/routes/{ROUTE}/switchover", ports.admin);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = agent
        .post(&url)
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .header("Content-Type", "application/json")
        .send(live_switch_request(fence, group_offsets).to_string())
        .context("calling the switchover API")?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string()?;
    if status != 200 {
        bail!("switchover answered {status}: {body}");
    }
    Ok(body)
}

fn live_switch_request(fence: &str, group_offsets: bool) -> serde_json::Value {
    // The transactional topic is left out of catch-up: MM2 does not copy transaction markers,
    // so the destination always holds fewer records there and `records` would never hold.
    let mut body = serde_json::json!({"to": "destination", "fence": fence, "topics": [TOPIC, KCAT_TOPIC]});
    if group_offsets {
        body["groupOffsets"] = serde_json::json!({"checkpointsTopic": format!("{SOURCE_ALIAS}.checkpoints.internal")});
    }
    body
}

/// The sum of `switchyard_fence_answers_total` over every API, from the gateway's metrics.
/// The sum of the gateway's counter `name` (e.g. `switchyard_fence_answers_total`) over its labels.
fn counter_total(ports: &DrillPorts, name: &str) -> Result<u64> {
    let url = format!("http://127.0.0.1:{}/metrics", ports.admin);
    let text = ureq::get(&url).call()?.body_mut().read_to_string()?;
    let labelled = format!("{name}{{");
    Ok(text
        .lines()
        .filter(|line| line.starts_with(&labelled))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum())
}
