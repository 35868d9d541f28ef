//! Hostile load against a real single-broker Kafka, with the gateway under an address-space limit.
//!
//! Each test is one attack, run one after the other against one gateway configured with small,
//! explicit limits ([`proxy_section`]), and checks what a user observes: the gateway stays up, the
//! attacker's connections are closed when the documented limit says, the gateway's memory stays
//! under a stated ceiling, and well-behaved clients are served meanwhile.
//!
//! - The gateway runs under `ulimit -v` ([`ADDRESS_SPACE_KIB`]). Linux overcommits, so memory
//!   reserved for a size a peer merely claims costs no pages and an RSS check alone passes on a
//!   lenient kernel; under the limit such a reservation fails in the gateway and kills it.
//! - Attackers connect from `127.0.0.2`, well-behaved clients from `127.0.0.1`, so the
//!   per-client connection limit holds back the attackers only.
//! - Throughout, a producer sends one record at a time (`acks=1`, Produce v11) through the
//!   gateway from `127.0.0.1`. The last test reads the topic back straight from the broker:
//!   nothing it was told was written may be missing.
//!
//! Every loop is bounded in count and in time; every socket and process is closed by the test.

mod common;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use bytes::{Bytes, BytesMut};
use common::{loopback, metric_sum, run_suite, scrape_metrics};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, FetchRequest, MetadataRequest, ProduceRequest, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};
use switchyard_testkit::load::{
    connect_from, ensure_open_files, memory_use, reset_peak_rss, start_gateway_with_address_space_limit, RssSampler,
};
use switchyard_testkit::{
    fetch_metadata, free_port_block, kcat, ClusterSpec, GatewayYaml, KafkaCluster, KafkaDomain, KafkaWire,
};
use switchyard_testkit::{poll, ServerProcess};

const MIB: usize = 1024 * 1024;
const MAX_FRAME: usize = 100 * MIB;
const BUFFER_BUDGET: usize = 256 * MIB;
const FRAME_TIMEOUT: Duration = Duration::from_millis(5_000);
const IDLE_TIMEOUT: Duration = Duration::from_millis(10_000);
const WRITE_TIMEOUT: Duration = Duration::from_millis(5_000);
const MAX_PER_CLIENT: usize = 500;
const MAX_CONNECTIONS: usize = 3_000;

/// The gateway's `proxy:` section: the limits above.
fn proxy_section() -> String {
    format!(
        "proxy:\n  maxFrameBytes: {MAX_FRAME}\n  bufferBudgetBytes: {BUFFER_BUDGET}\n  frameTimeoutMs: {}\n  \
         idleTimeoutMs: {}\n  writeTimeoutMs: {}\n  maxConnectionsPerClient: {MAX_PER_CLIENT}\n  \
         maxConnections: {MAX_CONNECTIONS}\n",
        FRAME_TIMEOUT.as_millis(),
        IDLE_TIMEOUT.as_millis(),
        WRITE_TIMEOUT.as_millis()
    )
}

/// `ulimit -v` of the gateway: 3 GiB. Forty 100 MiB claims reserved would need 4,000 MiB.
const ADDRESS_SPACE_KIB: u64 = 3 * 1024 * 1024;
/// The most the gateway may have resident under load: the buffer budget (256 MiB), the free
/// 128 KiB of every connection's buffers (at most 500 attackers: 63 MiB), and a baseline of
/// tokio, librdkafka and allocator slack (well under 100 MiB idle), rounded up to 600 MiB.
const RSS_CEILING_KIB: u64 = 600 * 1024;
/// How late after its deadline a close may be seen: scheduling on a loaded 2-core machine.
const CLOSE_MARGIN: Duration = Duration::from_secs(3);
/// How long a round trip of a well-behaved client may take while an attack is on.
const SERVED_WITHIN: Duration = Duration::from_secs(10);

const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const WAIT: Duration = Duration::from_secs(15);

/// The topic the well-behaved producer writes through the gateway.
const GOOD_TOPIC: &str = "good-producer";
/// The topic that holds a few MiB for the fetch attack.
const BULK_TOPIC: &str = "bulk";
/// The topic kcat writes through the gateway during the large-frame attack.
const KCAT_TOPIC: &str = "kcat-under-load";
const PRODUCER_MAX_RECORDS: u64 = 20_000;
const PRODUCER_MAX_RUN: Duration = Duration::from_secs(300);
const PRODUCER_INTERVAL: Duration = Duration::from_millis(25);
/// The longest the producer may go without an acknowledgement while an attack is on.
const PRODUCER_MAX_GAP: Duration = Duration::from_secs(5);

struct Env {
    /// Dropped first: its thread stops before the gateway does.
    producer: GoodProducer,
    gateway: Mutex<ServerProcess>,
    pid: u32,
    cluster: KafkaCluster,
    bootstrap: SocketAddr,
    admin_port: u16,
    /// Fetch requests for all of [`BULK_TOPIC`]: by topic name (v12, answered as opaque bytes) and
    /// by topic id (v16, answers decoded by the gateway).
    bulk_fetches: Vec<(i16, FetchRequest)>,
    /// The size of [`BULK_TOPIC`]'s records.
    bulk_bytes: usize,
    /// What kcat produced through the gateway, to be read back at the end.
    kcat_records: Mutex<Vec<String>>,
}

impl Env {
    fn alive(&self) -> bool {
        self.gateway.lock().unwrap_or_else(PoisonError::into_inner).is_running()
    }

    fn log(&self) -> String {
        self.gateway.lock().unwrap_or_else(PoisonError::into_inner).log_contents()
    }

    fn log_tail(&self) -> String {
        self.gateway.lock().unwrap_or_else(PoisonError::into_inner).log_tail()
    }

    /// Fails with the end of the gateway's log unless the gateway process is running.
    fn ensure_alive(&self, when: &str) -> Result<()> {
        ensure!(self.alive(), "the gateway process died {when}:\n{}", self.log_tail());
        Ok(())
    }

    /// Waits until no attacker connection is left: at most the producer's connection and one
    /// more are open, and no frame bytes are buffered. Attacks start from there, so the
    /// per-client limit of `127.0.0.2` is all theirs.
    fn quiet(&self) -> Result<()> {
        self.ensure_alive("before the attack")?;
        poll::poll_until(Duration::from_secs(30), || {
            let scrape = self.metrics().ok()?;
            let active = metric_sum(&scrape, "switchyard_client_connections_active", &[]);
            let buffered = metric_sum(&scrape, "switchyard_buffered_frame_bytes", &[]);
            (active <= 2.0 && buffered == 0.0).then_some(())
        })
        .with_context(|| format!("connections of an earlier attack are still open:\n{}", self.log_tail()))
    }

    fn metrics(&self) -> Result<prometheus_parse::Scrape> {
        scrape_metrics(&format!("127.0.0.1:{}", self.admin_port))
    }

    /// Starts watching the gateway's memory: resets its `VmHWM` where the kernel allows (the
    /// flag says whether), and samples `VmRSS` every 25 ms.
    fn start_memory_watch(&self) -> (RssSampler, bool) {
        let reset = reset_peak_rss(self.pid).is_ok();
        (RssSampler::start(self.pid, Duration::from_millis(25)), reset)
    }

    /// Stops `sampler` and returns the largest RSS seen (in KiB): the larger of its samples and,
    /// where it was reset before the attack, the kernel's own `VmHWM`.
    fn finish_memory_watch(&self, (sampler, reset): (RssSampler, bool)) -> Result<(u64, u64)> {
        let samples = sampler.finish();
        let now = memory_use(self.pid)?;
        let hwm = if reset { now.peak_rss_kib } else { 0 };
        Ok((samples.peak_rss_kib.max(hwm), samples.peak_virtual_kib.max(now.virtual_kib)))
    }
}

fn main() {
    run_suite(
        &[
            ("size_prefixes_claiming_100_mib_reserve_nothing", size_prefixes_claiming_100_mib_reserve_nothing),
            ("slowloris_connections_close_at_the_frame_timeout", slowloris_connections_close_at_the_frame_timeout),
            ("large_partial_frames_stay_within_the_buffer_budget", large_partial_frames_stay_within_the_buffer_budget),
            ("fetches_never_read_close_at_the_write_timeout", fetches_never_read_close_at_the_write_timeout),
            ("a_connection_flood_is_held_to_the_per_client_limit", a_connection_flood_is_held_to_the_per_client_limit),
            ("every_acknowledged_record_is_in_the_topic", every_acknowledged_record_is_in_the_topic),
        ],
        setup,
    );
}

fn setup() -> Result<Env> {
    let started = Instant::now();
    // The flood holds 2,000 sockets, the slow senders 500.
    ensure_open_files(8_192)?;
    let cluster = KafkaCluster::start(ClusterSpec::single())?;
    let broker = cluster.first_bootstrap();
    create_topics(broker, &[GOOD_TOPIC, BULK_TOPIC, KCAT_TOPIC])?;
    for topic in [GOOD_TOPIC, BULK_TOPIC, KCAT_TOPIC] {
        cluster.wait_for_topic(topic, 1)?;
    }
    let bulk_bytes = fill_bulk_topic(broker)?;
    let bulk_fetches = bulk_fetch_requests(broker)?;

    let base_port = free_port_block(2);
    let admin_port = free_port_block(1);
    let bootstrap = loopback(base_port);
    let upstream = cluster.bootstrap();
    let yaml = GatewayYaml {
        admin: Some(loopback(admin_port)),
        sections: proxy_section(),
        ..GatewayYaml::one_route(KafkaDomain::new(&upstream, (1, 1)), bootstrap)
    }
    .to_string();
    let gateway = start_gateway_with_address_space_limit(&common::binary(), &yaml, &[bootstrap], ADDRESS_SPACE_KIB)?;
    let pid = gateway.pid();
    let idle = memory_use(pid)?;
    println!(
        "  setup: {:.1} s; gateway pid {pid} under ulimit -v {ADDRESS_SPACE_KIB} KiB: RSS {} KiB, VmSize {} KiB; \
         {BULK_TOPIC} holds {bulk_bytes} bytes",
        started.elapsed().as_secs_f64(),
        idle.rss_kib,
        idle.virtual_kib
    );
    let producer = GoodProducer::start(bootstrap);
    Ok(Env {
        producer,
        gateway: Mutex::new(gateway),
        pid,
        cluster,
        bootstrap,
        admin_port,
        bulk_fetches,
        bulk_bytes,
        kcat_records: Mutex::new(Vec::new()),
    })
}

// ---- 1. size prefixes alone --------------------------------------------------------------

/// Forty connections each send only a size prefix claiming 100 MiB. Reserving the claims would
/// take 4,000 MiB of address space, more than the gateway's `ulimit -v`: the gateway must stay
/// up, serve a new client, and close each claim at the frame timeout.
fn size_prefixes_claiming_100_mib_reserve_nothing(env: &Env) -> Result<()> {
    const CLAIMS: usize = 40;
    env.quiet()?;
    let before = memory_use(env.pid)?;
    let attack_started = Instant::now();
    let mut claims = Vec::new();
    for _ in 0..CLAIMS {
        let mut claim = connect_from(ATTACKER, env.bootstrap, WAIT)?;
        claim.write_all(&(MAX_FRAME as i32).to_be_bytes())?;
        claims.push((claim, Instant::now()));
    }
    // Let the gateway read every prefix (there is nothing to wait on: it answers nothing).
    std::thread::sleep(Duration::from_secs(1));
    env.ensure_alive("after 40 size prefixes of 100 MiB")?;
    let during = memory_use(env.pid)?;
    let round_trip = good_round_trip(env).context("a new client while the claims were open")?;
    let closes = await_closes(&mut claims, FRAME_TIMEOUT + 2 * CLOSE_MARGIN)?;
    env.ensure_alive("after the claims were closed")?;
    let grown_kib = during.virtual_kib.saturating_sub(before.virtual_kib);
    let summary = CloseTimes::of(&closes);
    println!(
        "  [1] {CLAIMS} prefixes claiming {MAX_FRAME} bytes: gateway alive, VmSize {} -> {} KiB (+{grown_kib} KiB), \
         RSS {} -> {} KiB; new client's Metadata in {round_trip:?}; closes after the prefix {summary}",
        before.virtual_kib, during.virtual_kib, before.rss_kib, during.rss_kib
    );
    ensure!(
        grown_kib < (CLAIMS * MAX_FRAME / 1024 / 10) as u64,
        "{CLAIMS} size prefixes grew the gateway's address space by {grown_kib} KiB"
    );
    summary.ensure_all_within(FRAME_TIMEOUT + CLOSE_MARGIN, "a connection that sent only a size prefix")?;
    producer_served(env, attack_started, Instant::now())
}

// ---- 2. slowloris ------------------------------------------------------------------------

/// Five hundred connections (the per-client limit) trickle one byte a second into a frame that
/// never ends: each is closed `frameTimeoutMs` after its first byte, though bytes keep coming,
/// while well-behaved clients are served.
fn slowloris_connections_close_at_the_frame_timeout(env: &Env) -> Result<()> {
    const SLOW: usize = MAX_PER_CLIENT;
    const TRICKLE: Duration = Duration::from_secs(1);
    const SLOWLORIS_CLOSED_WITHIN: Duration = Duration::from_secs(15);
    env.quiet()?;
    let closed_before = closed_by_reason(env, "frame_timeout")?;
    let attack_started = Instant::now();
    // The frame claims 1,000 bytes; at a byte a second it would take 17 minutes.
    let frame: Vec<u8> = 1000i32.to_be_bytes().into_iter().chain(std::iter::repeat_n(0u8, 100)).collect();
    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        let mut stream = connect_from(ATTACKER, env.bootstrap, WAIT)?;
        stream.write_all(&frame[..1])?;
        stream.set_nonblocking(true)?;
        slow.push(Slow { stream, first_byte: Instant::now(), sent: 1, closed_after: None });
    }
    let connected_in = attack_started.elapsed();
    let deadline = Instant::now() + FRAME_TIMEOUT + 4 * CLOSE_MARGIN;
    let mut next_trickle = Instant::now() + TRICKLE;
    let mut round_trips = Vec::new();
    let mut next_round_trip = Instant::now() + Duration::from_secs(2);
    while slow.iter().any(|s| s.closed_after.is_none()) && Instant::now() < deadline {
        for s in slow.iter_mut().filter(|s| s.closed_after.is_none()) {
            if peer_closed(&mut s.stream) {
                s.closed_after = Some(s.first_byte.elapsed());
            }
        }
        if Instant::now() >= next_trickle {
            for s in slow.iter_mut().filter(|s| s.closed_after.is_none()) {
                match s.stream.write(&frame[s.sent..s.sent + 1]) {
                    Ok(_) => s.sent += 1,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(_) => s.closed_after = Some(s.first_byte.elapsed()),
                }
            }
            next_trickle += TRICKLE;
        }
        if Instant::now() >= next_round_trip && round_trips.len() < 3 {
            round_trips.push(good_round_trip(env).context("a well-behaved client during the slowloris attack")?);
            next_round_trip += Duration::from_secs(2);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let attack_ended = Instant::now();
    let closes: Vec<Option<Duration>> = slow.iter().map(|s| s.closed_after).collect();
    let most_bytes = slow.iter().map(|s| s.sent).max().unwrap_or(0);
    drop(slow);
    env.ensure_alive("after the slowloris attack")?;
    let timed_out = closed_by_reason(env, "frame_timeout")? - closed_before;
    let summary = CloseTimes::of(&closes);
    println!(
        "  [2] {SLOW} slow senders (connected in {connected_in:?}, up to {most_bytes} bytes each): closes after the \
         first byte {summary}; frame_timeout closes counted: {timed_out}; Metadata round trips meanwhile: \
         {round_trips:?}"
    );
    ensure!(round_trips.len() >= 2, "only {} well-behaved round trips happened during the attack", round_trips.len());
    // Closed by the frame timeout, not refused or dropped at once for some other reason.
    summary.ensure_none_before(FRAME_TIMEOUT - Duration::from_millis(500), "a slow sender")?;
    // The frame timer starts when the gateway reads the first byte, which it does once it has
    // opened the connection's broker connection: 500 dialled at once overflow the broker's listen
    // backlog (Kafka's default is 50), and those dials succeed on the SYN retry a second later.
    summary.ensure_all_within(SLOWLORIS_CLOSED_WITHIN, "a slow sender")?;
    ensure!(timed_out >= SLOW as f64, "only {timed_out} closes counted as frame_timeout for {SLOW} slow senders");
    producer_served(env, attack_started, attack_ended)
}

struct Slow {
    stream: TcpStream,
    first_byte: Instant,
    sent: usize,
    closed_after: Option<Duration>,
}

// ---- 3. large partial frames -------------------------------------------------------------

/// Twenty connections each send 60 MiB of a 95 MiB request as fast as they can, reconnecting
/// when closed, for ten seconds, then keep their last connections open without sending more.
/// The gateway must hold at most its buffer budget of them (its RSS stays under
/// [`RSS_CEILING_KIB`]), close each at the frame timeout, whether it is reading or waiting for
/// room in the budget, and keep serving a kcat producer and the background producer.
fn large_partial_frames_stay_within_the_buffer_budget(env: &Env) -> Result<()> {
    const WRITERS: usize = 20;
    const CLAIMED: usize = 95 * MIB;
    const SENT: usize = 60 * MIB;
    const ATTACK: Duration = Duration::from_secs(10);
    // How long each connection is watched for its close: past the bound asserted below, to
    // measure how late a late close is.
    const WATCH_FOR: Duration = Duration::from_secs(20);
    env.quiet()?;
    let closed_before = closed_by_reason(env, "frame_timeout")? + closed_by_reason(env, "no_buffer_room")?;
    let log_before = env.log().len();
    let watch = env.start_memory_watch();
    let attack_started = Instant::now();
    let deadline = attack_started + ATTACK;
    let mut head = (CLAIMED as i32).to_be_bytes().to_vec();
    head.extend_from_slice(&request_header(ApiKey::Produce, 9, 1));
    let writers: Vec<JoinHandle<WriterReport>> = (0..WRITERS)
        .map(|_| {
            let (head, target) = (head.clone(), env.bootstrap);
            std::thread::spawn(move || write_partial_frames(target, &head, SENT, deadline, WATCH_FOR))
        })
        .collect();

    // Meanwhile: kcat (librdkafka) produces through the gateway, and the budget is watched.
    let kcat_lines: Vec<String> = (0..200).map(|n| format!("kcat-under-load-{n:03}")).collect();
    let kcat_started = Instant::now();
    let kcat = kcat::produce(&env.bootstrap.to_string(), KCAT_TOPIC, &kcat_lines);
    let kcat_took = kcat_started.elapsed();
    let mut budget_peak = 0.0f64;
    while Instant::now() < deadline {
        if let Ok(scrape) = env.metrics() {
            budget_peak = budget_peak.max(metric_sum(&scrape, "switchyard_buffered_frame_bytes", &[]));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let round_trip = good_round_trip(env);
    let reports: Vec<WriterReport> = writers
        .into_iter()
        .map(|w| w.join().map_err(|_| anyhow!("a writer thread panicked")))
        .collect::<Result<_>>()?;
    let attack_ended = Instant::now();
    let (peak_rss, peak_virtual) = env.finish_memory_watch(watch)?;
    env.ensure_alive("after the large partial frames")?;
    let closed = closed_by_reason(env, "frame_timeout")? + closed_by_reason(env, "no_buffer_room")? - closed_before;

    let connections: usize = reports.iter().map(|r| r.connections).sum();
    let sent_mib = reports.iter().map(|r| r.bytes).sum::<u64>() / MIB as u64;
    let closes: Vec<Option<Duration>> = reports.iter().flat_map(|r| r.closed_after.iter().copied()).collect();
    let past_twice = closes.iter().filter(|c| c.is_none_or(|d| d > 2 * FRAME_TIMEOUT + CLOSE_MARGIN)).count();
    let summary = CloseTimes::of(&closes);
    let errors: Vec<&String> = reports.iter().flat_map(|r| r.errors.iter()).collect();
    println!(
        "  [3] {WRITERS} writers of {SENT}-byte parts of {CLAIMED}-byte frames for {ATTACK:?}: {connections} \
         connections, {sent_mib} MiB sent; frame_timeout + no_buffer_room closes counted: {closed}; closes \
         after the first byte {summary}, {past_twice} later than twice frameTimeoutMs + {CLOSE_MARGIN:?}; peak \
         RSS {peak_rss} KiB (ceiling {RSS_CEILING_KIB}), peak VmSize {peak_virtual} KiB, budget in use at most \
         {:.0} MiB; kcat produced 200 records in {kcat_took:?} ({}); Metadata at the end {round_trip:?}; writer \
         errors: {errors:?}",
        budget_peak / MIB as f64,
        if kcat.is_ok() { "ok" } else { "FAILED" },
    );
    kcat.context("kcat producing through the gateway during the attack")?;
    env.kcat_records.lock().unwrap_or_else(PoisonError::into_inner).extend(kcat_lines);
    round_trip.context("a well-behaved client after the attack")?;
    ensure!(peak_rss <= RSS_CEILING_KIB, "the gateway's RSS reached {peak_rss} KiB, over {RSS_CEILING_KIB} KiB");
    ensure!(budget_peak <= BUFFER_BUDGET as f64, "{budget_peak} bytes taken from a budget of {BUFFER_BUDGET}");
    producer_served(env, attack_started, attack_ended)?;
    // `frameTimeoutMs` is the time from a frame's first byte to its last (docs/configuration.md);
    // a connection waiting for room in the budget is closed after waiting `frameTimeoutMs`,
    // which, as a wait begins after the first byte, cannot come before the frame's own deadline.
    // So every connection is closed `frameTimeoutMs` after its first byte, waiting or not.
    let bound = FRAME_TIMEOUT + CLOSE_MARGIN;
    if let Err(e) = summary.ensure_all_within(bound, "a connection sending a large partial frame") {
        bail!(
            "{e:#}; {} still open {WATCH_FOR:?} after their first byte, the writers having stopped sending \
             {ATTACK:?} after the attack began; the gateway's closes later than {bound:?}:\n{}",
            summary.open,
            late_closes(env.log().get(log_before..).unwrap_or_default(), bound)
        );
    }
    Ok(())
}

/// The gateway's log lines for closes of attacker connections that lived longer than `after`
/// (at most ten).
fn late_closes(log: &str, after: Duration) -> String {
    let attacker = format!("client_addr={ATTACKER}:");
    log.lines()
        .filter(|line| line.contains("connection closed") && line.contains(&attacker))
        .filter(|line| {
            let duration = line.split("duration_ms=").nth(1).and_then(|rest| rest.split_whitespace().next());
            duration.and_then(|ms| ms.parse::<u64>().ok()).is_some_and(|ms| ms > after.as_millis() as u64)
        })
        .take(10)
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Default)]
struct WriterReport {
    connections: usize,
    /// For each connection: from its first byte to the close seen (`None`: still open when the
    /// writer stopped watching it).
    closed_after: Vec<Option<Duration>>,
    bytes: u64,
    errors: Vec<String>,
}

/// Until `deadline`: connect, send `head` and then zeros up to `total` bytes as fast as the
/// gateway reads them, and wait for the gateway to close the connection; repeat. At `deadline`
/// the writer stops writing but keeps its last connection open, watching for the gateway to
/// close it until `watch_for` after its first byte.
fn write_partial_frames(
    target: SocketAddr,
    head: &[u8],
    total: usize,
    deadline: Instant,
    watch_for: Duration,
) -> WriterReport {
    let mut report = WriterReport::default();
    let mut first = vec![0u8; MIB];
    first[..head.len()].copy_from_slice(head);
    let zeros = vec![0u8; MIB];
    // At most one connection per frame timeout is closed; the count is a safety net only.
    for _ in 0..100 {
        if Instant::now() >= deadline {
            break;
        }
        let mut stream = match connect_from(ATTACKER, target, Duration::from_secs(2)) {
            Ok(stream) => stream,
            Err(e) => {
                report.errors.push(format!("connect: {e}"));
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        let _ = stream.set_write_timeout(Some(Duration::from_millis(250)));
        let _ = stream.set_read_timeout(Some(Duration::from_millis(250)));
        report.connections += 1;
        let first_byte = Instant::now();
        let mut sent = 0usize;
        let closed_after = loop {
            let now = Instant::now();
            if now >= first_byte + watch_for {
                break None;
            }
            if now >= deadline || sent >= total {
                match stream.read(&mut [0u8; 64]) {
                    Ok(0) => break Some(first_byte.elapsed()),
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => break Some(first_byte.elapsed()),
                }
                continue;
            }
            let piece = if sent < MIB { &first[sent..] } else { &zeros[..MIB.min(total - sent)] };
            match stream.write(piece) {
                Ok(0) => break Some(first_byte.elapsed()),
                Ok(n) => sent += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break Some(first_byte.elapsed()),
            }
        };
        report.closed_after.push(closed_after);
        report.bytes += sent as u64;
    }
    report
}

// ---- 4. fetches never read ---------------------------------------------------------------

/// Thirty clients each ask for all of a topic holding a few MiB (more than the kernel's socket
/// buffers take) and never read: each connection is closed `writeTimeoutMs` after the gateway's
/// write stalled, its buffered answer is dropped, and the gateway's RSS stays under the ceiling.
fn fetches_never_read_close_at_the_write_timeout(env: &Env) -> Result<()> {
    const READERS: usize = 30;
    env.quiet()?;
    let closed_before = closed_by_reason(env, "client_write_timeout")?;
    let watch = env.start_memory_watch();
    let attack_started = Instant::now();
    let mut stalled = Vec::with_capacity(READERS);
    for n in 0..READERS {
        let (version, fetch) = &env.bulk_fetches[n % env.bulk_fetches.len()];
        let mut stream = connect_from(ATTACKER, env.bootstrap, WAIT)?;
        stream.write_all(&encode_request(fetch, *version, n as i32)?)?;
        let local = match stream.local_addr()? {
            SocketAddr::V4(local) => local,
            other => bail!("unexpected local address {other}"),
        };
        stalled.push((stream, local, Instant::now()));
    }
    let sent_in = attack_started.elapsed();
    // The gateway's side of each connection leaves ESTABLISHED when it closes it: that is seen in
    // the kernel's socket table without reading, which would let the answer flow.
    let gateway_side = match env.bootstrap {
        SocketAddr::V4(addr) => addr,
        other => bail!("unexpected gateway address {other}"),
    };
    let mut closed_after: Vec<Option<Duration>> = vec![None; READERS];
    let deadline = Instant::now() + 2 * (FRAME_TIMEOUT + WRITE_TIMEOUT) + CLOSE_MARGIN;
    let mut round_trip = None;
    while closed_after.iter().any(Option::is_none) && Instant::now() < deadline {
        let states = tcp_states(gateway_side)?;
        for (n, (_, local, sent_at)) in stalled.iter().enumerate() {
            if closed_after[n].is_none() && states.get(local).is_none_or(|&state| state != TCP_ESTABLISHED) {
                closed_after[n] = Some(sent_at.elapsed());
            }
        }
        if round_trip.is_none() && attack_started.elapsed() > Duration::from_secs(2) {
            round_trip = Some(good_round_trip(env).context("a well-behaved client while fetches were stalled")?);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let attack_ended = Instant::now();
    // Now read: each connection must end (EOF or reset) before its whole answer arrives.
    let mut delivered = Vec::with_capacity(READERS);
    for (stream, _, _) in &mut stalled {
        delivered.push(drain(stream, Duration::from_secs(5)));
    }
    drop(stalled);
    let (peak_rss, peak_virtual) = env.finish_memory_watch(watch)?;
    env.ensure_alive("after the stalled fetches")?;
    let timed_out = closed_by_reason(env, "client_write_timeout")? - closed_before;
    let summary = CloseTimes::of(&closed_after);
    let ends: Vec<String> = delivered
        .iter()
        .map(|d| match d {
            Ok((received, Some(total))) => format!("{}/{}KiB", received / 1024, total / 1024),
            Ok((received, None)) => format!("{received}B/?"),
            Err(e) => format!("ERR {e}"),
        })
        .collect();
    println!(
        "  [4] {READERS} fetches of {} bytes never read (sent in {sent_in:?}): closed after the request \
         {summary}; client_write_timeout closes counted: {timed_out}; peak RSS {peak_rss} KiB (ceiling \
         {RSS_CEILING_KIB}), peak VmSize {peak_virtual} KiB; Metadata meanwhile {round_trip:?}; \
         received before EOF (of the answer's size): {}",
        env.bulk_bytes,
        ends.join(" ")
    );
    round_trip.context("no well-behaved round trip happened during the attack")?;
    ensure!(peak_rss <= RSS_CEILING_KIB, "the gateway's RSS reached {peak_rss} KiB, over {RSS_CEILING_KIB} KiB");
    // From the request: the broker's answer and the gateway reading 30 answers of 6 MiB come
    // before the write that stalls, so twice the margin.
    summary.ensure_all_within(WRITE_TIMEOUT + 2 * CLOSE_MARGIN, "a client that never reads its Fetch answer")?;
    for (n, d) in delivered.iter().enumerate() {
        match d {
            Ok((received, Some(total))) => ensure!(
                received < total,
                "client {n} got its whole {total}-byte answer: the gateway did not give up writing it"
            ),
            Ok((received, None)) => bail!("client {n} got only {received} bytes, not even a size prefix"),
            Err(e) => bail!("client {n}: the connection did not end when read: {e}"),
        }
    }
    ensure!(timed_out >= READERS as f64, "only {timed_out} closes counted as client_write_timeout for {READERS}");
    producer_served(env, attack_started, attack_ended)
}

const TCP_ESTABLISHED: u8 = 1;

/// The TCP state (`/proc/net/tcp`, 1 = ESTABLISHED) of every IPv4 socket whose local address is
/// `local`, by remote address.
fn tcp_states(local: SocketAddrV4) -> Result<HashMap<SocketAddrV4, u8>> {
    let table = std::fs::read_to_string("/proc/net/tcp")?;
    let address = |field: &str| -> Option<SocketAddrV4> {
        let (ip, port) = field.split_once(':')?;
        let ip = u32::from_str_radix(ip, 16).ok()?;
        Some(SocketAddrV4::new(Ipv4Addr::from(ip.to_le_bytes()), u16::from_str_radix(port, 16).ok()?))
    };
    Ok(table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (here, there, state) = (address(fields.get(1)?)?, address(fields.get(2)?)?, fields.get(3)?);
            (here == local).then_some((there, u8::from_str_radix(state, 16).ok()?))
        })
        .collect())
}

/// Reads `stream` to its end: the bytes received, and the full size of the frame they start
/// (size prefix included), if a size prefix arrived. Fails if the connection has not ended after
/// `within`.
fn drain(stream: &mut TcpStream, within: Duration) -> Result<(usize, Option<usize>)> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    let deadline = Instant::now() + within;
    let mut buf = vec![0u8; 256 * 1024];
    let mut prefix = Vec::with_capacity(4);
    let mut received = 0usize;
    loop {
        ensure!(Instant::now() < deadline, "still open after {within:?} ({received} bytes read)");
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let want = 4 - prefix.len();
                prefix.extend_from_slice(&buf[..n.min(want)]);
                received += n;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break, // reset
        }
    }
    let total = (prefix.len() == 4).then(|| 4 + i32::from_be_bytes(prefix[..4].try_into().unwrap()) as usize);
    Ok((received, total))
}

// ---- 5. connection flood -----------------------------------------------------------------

/// Two thousand connections from one address with a per-client limit of 500: 500 stay open, the
/// rest are closed at once, the refusals are counted and logged about once a second, and a
/// client from another address is served while the flood holds its places.
fn a_connection_flood_is_held_to_the_per_client_limit(env: &Env) -> Result<()> {
    const FLOOD: usize = 2_000;
    const REFUSAL: &str = "refusing client connection";
    env.quiet()?;
    let refusal_lines = |log: &str| log.lines().filter(|line| line.contains(REFUSAL)).count();
    let lines_before = refusal_lines(&env.log());
    let refused_before = metric_sum(&env.metrics()?, "switchyard_connections_refused_total", &[("reason", "client")]);
    let attack_started = Instant::now();
    let mut flood: Vec<(TcpStream, Instant, Option<Duration>)> = Vec::with_capacity(FLOOD);
    let check = |flood: &mut Vec<(TcpStream, Instant, Option<Duration>)>| {
        for (stream, connected, closed) in flood.iter_mut().filter(|(_, _, closed)| closed.is_none()) {
            if peer_closed(stream) {
                *closed = Some(connected.elapsed());
            }
        }
    };
    for n in 0..FLOOD {
        let stream = connect_from(ATTACKER, env.bootstrap, WAIT).with_context(|| format!("connection {n}"))?;
        stream.set_nonblocking(true)?;
        flood.push((stream, Instant::now(), None));
        if n % 100 == 99 {
            check(&mut flood);
        }
    }
    let connected_in = attack_started.elapsed();
    // Refusals are immediate; what is open a second after the last connect stays open (until the
    // idle timeout, which is ten seconds after the first connect at the earliest).
    let settle_until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < settle_until {
        check(&mut flood);
        std::thread::sleep(Duration::from_millis(50));
    }
    let round_trip = good_round_trip(env).context("a client from 127.0.0.1 while the flood held its connections");
    check(&mut flood);
    let held_for = attack_started.elapsed();
    let attack_ended = Instant::now();
    let open = flood.iter().filter(|(_, _, closed)| closed.is_none()).count();
    let refusal_times: Vec<Option<Duration>> = flood.iter().filter(|f| f.2.is_some()).map(|f| f.2).collect();
    drop(flood);
    env.ensure_alive("after the connection flood")?;
    let refused = metric_sum(&env.metrics()?, "switchyard_connections_refused_total", &[("reason", "client")]);
    let log = env.log();
    let lines = refusal_lines(&log) - lines_before;
    let summary = CloseTimes::of(&refusal_times);
    println!(
        "  [5] {FLOOD} connections from {ATTACKER} in {connected_in:?}: {open} stayed open, {} closed by the \
         gateway ({summary} after connecting); switchyard_connections_refused{{reason=client}} {refused_before} -> \
         {refused}; {lines} refusal lines logged in {:.1} s; Metadata from 127.0.0.1 meanwhile {round_trip:?}",
        refusal_times.len(),
        held_for.as_secs_f64()
    );
    round_trip?;
    ensure!(held_for < IDLE_TIMEOUT, "the flood took {held_for:?}: idle closes blur the count");
    ensure!(open <= MAX_PER_CLIENT, "{open} connections from one address stayed open, over {MAX_PER_CLIENT}");
    ensure!(open == MAX_PER_CLIENT, "only {open} of the {MAX_PER_CLIENT} connections the limit allows stayed open");
    summary.ensure_all_within(Duration::from_secs(2), "a connection over the per-client limit")?;
    ensure!(refused >= (FLOOD - MAX_PER_CLIENT) as f64, "switchyard_connections_refused{{reason=client}} is {refused}");
    ensure!(
        refused - refused_before >= (FLOOD - MAX_PER_CLIENT) as f64,
        "the flood added {} refusals",
        refused - refused_before
    );
    let allowed = held_for.as_secs() as usize + 2;
    ensure!(lines >= 1, "no refusal logged:\n{}", env.log_tail());
    ensure!(lines <= allowed, "{lines} refusal lines in {held_for:?}: not held to one a second");
    ensure!(log.contains("refused_since_last_logged"), "no refusal line says how many were not logged");
    producer_served(env, attack_started, attack_ended)
}

// ---- the producer's records --------------------------------------------------------------

/// Stops the background producer and reads its topic straight from the broker: every record the
/// gateway acknowledged is there, at the offset acknowledged. So is everything kcat produced.
fn every_acknowledged_record_is_in_the_topic(env: &Env) -> Result<()> {
    env.producer.stop();
    let log = env.producer.log();
    let broker = env.cluster.first_bootstrap();
    let stored: HashMap<i64, Option<Bytes>> = read_topic(broker, GOOD_TOPIC)?.into_iter().collect();
    let missing: Vec<String> = log
        .acked
        .iter()
        .filter(|ack| stored.get(&ack.offset).and_then(Option::as_ref).map(|v| &v[..]) != Some(ack.value.as_bytes()))
        .map(|ack| format!("{}@{}", ack.value, ack.offset))
        .collect();
    let kcat_expected = env.kcat_records.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let kcat_stored: Vec<String> = read_topic(broker, KCAT_TOPIC)?
        .into_iter()
        .filter_map(|(_, value)| value.map(|v| String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let kcat_missing: Vec<&String> = kcat_expected.iter().filter(|line| !kcat_stored.contains(line)).collect();
    let slowest = log.acked.iter().map(|ack| ack.latency).max().unwrap_or_default();
    println!(
        "  [end] producer: {} records acknowledged over {:.1} s (slowest {slowest:?}), {} attempts failed {:?}, {} \
         records in {GOOD_TOPIC} on the broker, {} acknowledged missing; kcat: {} of {} records found",
        log.acked.len(),
        log.acked.last().map_or(0.0, |last| last.at.duration_since(log.started).as_secs_f64()),
        log.errors.len(),
        log.errors.iter().take(5).map(|(_, e)| e.as_str()).collect::<Vec<_>>(),
        stored.len(),
        missing.len(),
        kcat_expected.len() - kcat_missing.len(),
        kcat_expected.len()
    );
    ensure!(log.acked.len() >= 100, "the producer got only {} acknowledgements", log.acked.len());
    ensure!(missing.is_empty(), "acknowledged records missing from the topic: {missing:?}");
    ensure!(kcat_missing.is_empty(), "records kcat delivered are missing: {kcat_missing:?}");
    let panics = env.log().lines().filter(|line| line.contains("panicked")).count();
    ensure!(panics == 0, "the gateway logged {panics} panics:\n{}", env.log_tail());
    env.ensure_alive("at the end")
}

// ---- the well-behaved producer -----------------------------------------------------------

/// Produces `good-<n>` records one at a time through the gateway from `127.0.0.1`, noting each
/// acknowledgement, until stopped (or [`PRODUCER_MAX_RECORDS`], or [`PRODUCER_MAX_RUN`]).
struct GoodProducer {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<ProducerLog>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Clone)]
struct ProducerLog {
    started: Instant,
    acked: Vec<Ack>,
    errors: Vec<(Instant, String)>,
}

#[derive(Clone)]
struct Ack {
    value: String,
    offset: i64,
    at: Instant,
    latency: Duration,
}

impl GoodProducer {
    fn start(bootstrap: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(ProducerLog { started: Instant::now(), acked: Vec::new(), errors: Vec::new() }));
        let (stopped, noted) = (Arc::clone(&stop), Arc::clone(&log));
        let thread = std::thread::spawn(move || produce_until_stopped(bootstrap, &stopped, &noted));
        Self { stop, log, thread: Mutex::new(Some(thread)) }
    }

    fn log(&self) -> ProducerLog {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Stops the thread; it finishes the request in hand (bounded by the client's timeout).
    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = thread.join();
        }
    }
}

impl Drop for GoodProducer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn produce_until_stopped(bootstrap: SocketAddr, stop: &AtomicBool, log: &Mutex<ProducerLog>) {
    let started = Instant::now();
    let mut wire: Option<KafkaWire> = None;
    for n in 0..PRODUCER_MAX_RECORDS {
        if stop.load(Ordering::Relaxed) || started.elapsed() > PRODUCER_MAX_RUN {
            return;
        }
        let value = format!("good-{n:06}");
        let sent_at = Instant::now();
        let result = (|| -> Result<i64> {
            let request = produce_request(GOOD_TOPIC, &[value.as_bytes()])?;
            if wire.is_none() {
                wire = Some(KafkaWire::connect(bootstrap, SERVED_WITHIN)?);
            }
            let response = wire.as_mut().context("no connection")?.send(&request, 11)?;
            let partition = response
                .responses
                .first()
                .and_then(|topic| topic.partition_responses.first())
                .context("a Produce answer without partitions")?;
            ensure!(partition.error_code == 0, "Produce answered error code {}", partition.error_code);
            Ok(partition.base_offset)
        })();
        let mut noted = log.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(offset) => noted.acked.push(Ack { value, offset, at: Instant::now(), latency: sent_at.elapsed() }),
            Err(e) => {
                noted.errors.push((Instant::now(), format!("{e:#}")));
                wire = None;
            }
        }
        drop(noted);
        std::thread::sleep(PRODUCER_INTERVAL);
    }
}

/// The background producer got acknowledgements all through `from..to`, never waiting longer
/// than [`PRODUCER_MAX_GAP`] for one.
fn producer_served(env: &Env, from: Instant, to: Instant) -> Result<()> {
    let log = env.producer.log();
    let times: Vec<Instant> = log.acked.iter().map(|ack| ack.at).filter(|at| (from..=to).contains(at)).collect();
    let errors: Vec<&String> = log.errors.iter().filter(|(at, _)| (from..=to).contains(at)).map(|(_, e)| e).collect();
    let gaps = std::iter::once(from).chain(times.iter().copied()).zip(times.iter().copied().chain(std::iter::once(to)));
    let longest = gaps.map(|(a, b)| b.saturating_duration_since(a)).max().unwrap_or_default();
    println!(
        "      producer meanwhile: {} records acknowledged in {:.1} s, longest wait {longest:?}, {} failed {:?}",
        times.len(),
        to.duration_since(from).as_secs_f64(),
        errors.len(),
        errors.iter().take(3).collect::<Vec<_>>()
    );
    ensure!(!times.is_empty(), "the producer got no acknowledgement during the attack");
    ensure!(longest <= PRODUCER_MAX_GAP, "the producer waited {longest:?} for an acknowledgement during the attack");
    Ok(())
}

// ---- helpers -----------------------------------------------------------------------------

/// One Metadata round trip on a new connection from `127.0.0.1`; how long it took.
fn good_round_trip(env: &Env) -> Result<Duration> {
    let started = Instant::now();
    let mut wire = KafkaWire::connect(env.bootstrap, SERVED_WITHIN)?;
    let metadata = wire.send(&MetadataRequest::default(), 12)?;
    ensure!(metadata.brokers.len() == 1, "Metadata through the gateway: {metadata:?}");
    Ok(started.elapsed())
}

/// Whether a non-blocking stream's peer has closed it (EOF or reset).
fn peer_closed(stream: &mut TcpStream) -> bool {
    match stream.read(&mut [0u8; 512]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    }
}

/// Waits up to `within` for the peer to close each stream; for each, how long after its instant
/// that was seen (`None`: still open).
fn await_closes(streams: &mut [(TcpStream, Instant)], within: Duration) -> Result<Vec<Option<Duration>>> {
    let mut closed = vec![None; streams.len()];
    for (stream, _) in streams.iter() {
        stream.set_nonblocking(true)?;
    }
    let deadline = Instant::now() + within;
    while closed.iter().any(Option::is_none) && Instant::now() < deadline {
        for (n, (stream, since)) in streams.iter_mut().enumerate() {
            if closed[n].is_none() && peer_closed(stream) {
                closed[n] = Some(since.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Ok(closed)
}

/// Close times of a set of connections: how many closed, and the spread.
struct CloseTimes {
    closed: Vec<Duration>,
    open: usize,
}

impl CloseTimes {
    fn of(closes: &[Option<Duration>]) -> Self {
        let mut closed: Vec<Duration> = closes.iter().flatten().copied().collect();
        closed.sort();
        Self { open: closes.len() - closed.len(), closed }
    }

    fn ensure_all_within(&self, bound: Duration, what: &str) -> Result<()> {
        ensure!(self.open == 0, "{} of {} connections ({what}) were never closed", self.open, self.total());
        let late = self.closed.iter().filter(|d| **d > bound).count();
        ensure!(late == 0, "{late} of {} ({what}) closed later than {bound:?}: {self}", self.total());
        Ok(())
    }

    fn ensure_none_before(&self, bound: Duration, what: &str) -> Result<()> {
        let early = self.closed.iter().filter(|d| **d < bound).count();
        ensure!(early == 0, "{early} of {} ({what}) closed before {bound:?}: {self}", self.total());
        Ok(())
    }

    fn total(&self) -> usize {
        self.closed.len() + self.open
    }
}

impl std::fmt::Display for CloseTimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at =
            |q: usize| self.closed.get((self.closed.len().saturating_sub(1)) * q / 100).copied().unwrap_or_default();
        write!(
            f,
            "[{} closed, {} open; min {:.2} s, median {:.2} s, max {:.2} s]",
            self.closed.len(),
            self.open,
            at(0).as_secs_f64(),
            at(50).as_secs_f64(),
            at(100).as_secs_f64()
        )
    }
}

fn closed_by_reason(env: &Env, reason: &str) -> Result<f64> {
    Ok(metric_sum(&env.metrics()?, "switchyard_connections_closed_total", &[("reason", reason)]))
}

/// A request header (api key, version, correlation id, client id) as the first bytes of a frame.
fn request_header(api_key: ApiKey, version: i16, correlation_id: i32) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("hostile-load")));
    let mut out = BytesMut::new();
    header.encode(&mut out, api_key.request_header_version(version)).expect("a request header always encodes");
    out.to_vec()
}

/// `request` as `version`, framed (size prefix, header, body).
fn encode_request<R: Request>(request: &R, version: i16, correlation_id: i32) -> Result<Vec<u8>> {
    let api_key = ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown api key {}", R::KEY))?;
    let mut body = request_header(api_key, version, correlation_id);
    let mut encoded = BytesMut::new();
    request.encode(&mut encoded, version)?;
    body.extend_from_slice(&encoded);
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// An `acks=1` Produce of `values` (one batch, uncompressed) to partition 0 of `topic`.
fn produce_request(topic: &str, values: &[&[u8]]) -> Result<ProduceRequest> {
    let timestamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(index, value)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            // One batch needs `offset - sequence` alike in every record; its base sequence is then
            // NO_SEQUENCE, as for any producer that is not idempotent.
            sequence: NO_SEQUENCE + index as i32,
            timestamp,
            key: None,
            value: Some(Bytes::copy_from_slice(value)),
            headers: Default::default(),
        })
        .collect();
    let mut batch = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut batch,
        records.iter(),
        &RecordEncodeOptions { version: 2, compression: Compression::None },
    )?;
    Ok(ProduceRequest::default().with_acks(1).with_timeout_ms(10_000).with_topic_data(vec![TopicProduceData::default(
    )
    .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
    .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch.freeze()))])]))
}

/// Creates one-partition topics straight on the broker.
fn create_topics(broker: SocketAddr, names: &[&str]) -> Result<()> {
    let topics = names
        .iter()
        .map(|name| {
            CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string((*name).to_owned())))
                .with_num_partitions(1)
                .with_replication_factor(1)
        })
        .collect();
    let request = CreateTopicsRequest::default().with_topics(topics).with_timeout_ms(30_000);
    let response = KafkaWire::connect(broker, WAIT)?.send(&request, 7)?;
    for topic in &response.topics {
        ensure!(
            topic.error_code == 0,
            "creating {:?}: error {} {:?}",
            topic.name,
            topic.error_code,
            topic.error_message
        );
    }
    Ok(())
}

/// Fills [`BULK_TOPIC`] straight on the broker with more than the kernel's socket buffers on
/// either side of a connection can hold (so an answer of all of it stalls when its client does
/// not read), and returns how many bytes of values it holds.
fn fill_bulk_topic(broker: SocketAddr) -> Result<usize> {
    const VALUE: usize = 60 * 1024;
    const PER_BATCH: usize = 15; // 900 KiB: under the broker's 1 MiB message.max.bytes
    let number = |path: &str, index: usize| -> Result<usize> {
        let text = std::fs::read_to_string(path)?;
        text.split_whitespace().nth(index).context("short sysctl")?.parse().context("bad sysctl")
    };
    let buffered = number("/proc/sys/net/ipv4/tcp_wmem", 2)? + number("/proc/sys/net/ipv4/tcp_rmem", 1)?;
    let wanted = (6 * MIB).max(buffered + 2 * MIB);
    // 30 such answers must fit the buffer budget with room to spare, or the attack tests the
    // budget instead of the write timeout.
    ensure!(
        30 * (wanted + MIB) < BUFFER_BUDGET,
        "this machine's TCP buffers ({buffered} bytes) are too large for the stalled-fetch attack"
    );
    let mut wire = KafkaWire::connect(broker, WAIT)?;
    let value = vec![b'x'; VALUE];
    let mut stored = 0;
    // A new partition's leader may not take writes for a moment after metadata lists it.
    for _ in 0..200 {
        if stored >= wanted {
            return Ok(stored);
        }
        let values: Vec<&[u8]> = (0..PER_BATCH).map(|_| &value[..]).collect();
        let response = wire.send(&produce_request(BULK_TOPIC, &values)?, 9)?;
        match response.responses[0].partition_responses[0].error_code {
            0 => stored += PER_BATCH * VALUE,
            // NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION: not ready yet.
            6 | 3 => std::thread::sleep(Duration::from_millis(100)),
            code => bail!("filling {BULK_TOPIC}: error {code}"),
        }
    }
    bail!("{BULK_TOPIC} took no writes for 20 s")
}

/// Fetch requests for everything in [`BULK_TOPIC`]: v12 by name, v16 by topic id.
fn bulk_fetch_requests(broker: SocketAddr) -> Result<Vec<(i16, FetchRequest)>> {
    let metadata = fetch_metadata(broker, WAIT)?;
    let topic = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|name| name.0.as_str() == BULK_TOPIC))
        .context("no bulk topic in metadata")?;
    let by_name = fetch_request(FetchTopic::default().with_topic(TopicName(StrBytes::from_static_str(BULK_TOPIC))), 0);
    let by_id = fetch_request(FetchTopic::default().with_topic_id(topic.topic_id), 0);
    Ok(vec![(12, by_name), (16, by_id)])
}

/// A Fetch of partition 0 of `topic` from `offset`, up to 64 MiB, answered at once.
fn fetch_request(topic: FetchTopic, offset: i64) -> FetchRequest {
    let partition =
        FetchPartition::default().with_partition(0).with_fetch_offset(offset).with_partition_max_bytes(64 * MIB as i32);
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(64 * MIB as i32)
        .with_topics(vec![topic.with_partitions(vec![partition])])
}

/// Every record of partition 0 of `topic`, read straight from the broker: (offset, value).
fn read_topic(broker: SocketAddr, topic: &str) -> Result<Vec<(i64, Option<Bytes>)>> {
    let mut wire = KafkaWire::connect(broker, WAIT)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut records = Vec::new();
    let mut offset = 0;
    for _ in 0..10_000 {
        ensure!(Instant::now() < deadline, "reading {topic} took over a minute");
        let request =
            fetch_request(FetchTopic::default().with_topic(TopicName(StrBytes::from_string(topic.to_owned()))), offset);
        let response = wire.send(&request, 12)?;
        let partition = response
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .with_context(|| format!("an empty Fetch answer for {topic}"))?;
        ensure!(partition.error_code == 0, "fetching {topic}: error {}", partition.error_code);
        let before = offset;
        if let Some(mut data) = partition.records.clone() {
            for set in RecordBatchDecoder::decode_all(&mut data)? {
                for record in set.records {
                    if record.offset >= offset {
                        offset = record.offset + 1;
                        records.push((record.offset, record.value));
                    }
                }
            }
        }
        if offset >= partition.high_watermark {
            return Ok(records);
        }
        ensure!(offset > before, "no progress reading {topic} at offset {offset}");
    }
    bail!("{topic} has more than 10,000 batches")
}
