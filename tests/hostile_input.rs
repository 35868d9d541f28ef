//! Hostile and broken input, from clients and from brokers.
//!
//! Each case sends what no well-behaved peer sends and checks what a user would observe: the
//! one offending connection is closed, the gateway logs why (with the client address), and a
//! healthy connection opened beforehand keeps working, as does a new one. Client-side cases run
//! against a real single-broker Kafka. Broker-side cases need a broker that misbehaves on
//! purpose, which real Kafka never does, so a second route points at a small hostile server in
//! this file that answers with garbage of a chosen kind.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use common::{loopback, run_suite};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, MetadataRequest};
use kafka_protocol::protocol::StrBytes;
use switchyard_testkit::gateway::Route;
use switchyard_testkit::{
    free_port_block, poll, ClusterSpec, GatewayProcess, GatewayYaml, KafkaCluster, KafkaDomain, KafkaWire,
};

const MAX_FRAME: usize = 1024 * 1024;
const IDLE_MS: u64 = 2_000;
/// Longer than the idle timeout, so a frame trickled faster than that still ends.
const FRAME_TIMEOUT_MS: u64 = 3_000;
const MAX_PER_CLIENT: usize = 300;
const WAIT: Duration = Duration::from_secs(15);
/// The client id that makes the hostile broker misbehave; anyone else is hung up on.
const HOSTILE_CLIENT: &str = "hostile-test";

struct Env {
    _cluster: KafkaCluster,
    gateway: GatewayProcess,
    main_port: u16,
    hostile_port: u16,
    _hostile_broker: std::thread::JoinHandle<()>,
}

fn main() {
    run_suite(
        &[
            ("oversized_frame_is_refused", oversized_frame_is_refused),
            ("negative_frame_size_is_refused", negative_frame_size_is_refused),
            ("frame_too_short_for_a_header_is_refused", frame_too_short_for_a_header_is_refused),
            ("unknown_api_key_is_refused", unknown_api_key_is_refused),
            ("truncated_produce_header_is_refused", truncated_produce_header_is_refused),
            ("http_request_is_refused", http_request_is_refused),
            ("tls_handshake_on_plaintext_is_named", tls_handshake_on_plaintext_is_named),
            ("undecodable_metadata_version_is_refused", undecodable_metadata_version_is_refused),
            ("api_versions_above_range_gets_unsupported_version", api_versions_above_range_gets_unsupported_version),
            ("thousands_of_pipelined_requests_are_all_answered", thousands_of_pipelined_requests_are_all_answered),
            ("client_disconnecting_mid_frame_is_logged", client_disconnecting_mid_frame_is_logged),
            ("client_stalling_mid_frame_times_out", client_stalling_mid_frame_times_out),
            ("trickled_frame_times_out_though_bytes_keep_coming", trickled_frame_times_out_though_bytes_keep_coming),
            ("size_prefixes_alone_reserve_no_memory", size_prefixes_alone_reserve_no_memory),
            ("connections_over_the_per_client_limit_are_refused", connections_over_the_per_client_limit_are_refused),
            (
                "a_flood_of_bad_frames_logs_a_bounded_number_of_lines",
                a_flood_of_bad_frames_logs_a_bounded_number_of_lines,
            ),
            ("broker_garbage_bytes_close_the_connection", broker_garbage_bytes_close_the_connection),
            ("broker_undecodable_metadata_closes_the_connection", broker_undecodable_metadata_closes_the_connection),
            ("broker_wrong_correlation_id_closes_the_connection", broker_wrong_correlation_id_closes_the_connection),
            ("broker_closing_mid_response_closes_the_connection", broker_closing_mid_response_closes_the_connection),
        ],
        setup,
    );
}

fn setup() -> Result<Env> {
    let cluster = KafkaCluster::start(ClusterSpec::single())?;
    let hostile = TcpListener::bind("127.0.0.1:0")?;
    let hostile_addr = hostile.local_addr()?;
    let hostile_broker = std::thread::spawn(move || serve_hostile_broker(hostile));
    let main_port = free_port_block(2);
    let hostile_port = free_port_block(2);
    let yaml = two_route_yaml(&cluster.bootstrap(), main_port, hostile_addr, hostile_port);
    let gateway = GatewayProcess::start(&common::binary(), &yaml, &[loopback(main_port)])?;
    Ok(Env { _cluster: cluster, gateway, main_port, hostile_port, _hostile_broker: hostile_broker })
}

/// Route `main` to the real Kafka and route `hostile` to the hostile broker, each a one-node
/// domain, with small frame and idle limits so the client-side cases are quick.
fn two_route_yaml(kafka: &str, main_port: u16, hostile: SocketAddr, hostile_port: u16) -> String {
    let hostile = hostile.to_string();
    let domain = |name, cluster_name, bootstrap| KafkaDomain {
        name,
        cluster_name,
        bootstrap_id: "plain",
        node_range_name: "only",
        ..KafkaDomain::new(bootstrap, (1, 1))
    };
    let (kafka, hostile) = (domain("kafka", "real", kafka), domain("hostile", "hostile", &hostile));
    let route = |name, port, domain| Route { name, broker_id_by_port: false, ..Route::new(loopback(port), domain) };
    GatewayYaml {
        routes: vec![route("main", main_port, &kafka), route("hostile", hostile_port, &hostile)],
        domains: vec![kafka, hostile],
        admin: Some(loopback(free_port_block(1))),
        sections: format!(
            "proxy:\n  maxFrameBytes: {MAX_FRAME}\n  idleTimeoutMs: {IDLE_MS}\n  frameTimeoutMs: {FRAME_TIMEOUT_MS}\n  \
             maxConnectionsPerClient: {MAX_PER_CLIENT}\n"
        ),
        ..GatewayYaml::default()
    }
    .to_string()
}

// ---- client-side cases -------------------------------------------------------------------

fn oversized_frame_is_refused(env: &Env) -> Result<()> {
    let mut frame = ((MAX_FRAME + 1) as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&request_header(ApiKey::Produce as i16, 9, 1));
    refused(env, &frame, "exceeds the maximum")
}

fn negative_frame_size_is_refused(env: &Env) -> Result<()> {
    refused(env, &(-5i32).to_be_bytes(), "negative frame size")
}

fn frame_too_short_for_a_header_is_refused(env: &Env) -> Result<()> {
    refused(env, &[0, 0, 0, 3, 0, 18, 0], "shorter than the")
}

fn unknown_api_key_is_refused(env: &Env) -> Result<()> {
    refused(env, &framed(&request_header(999, 0, 1)), "unknown api key 999")
}

fn truncated_produce_header_is_refused(env: &Env) -> Result<()> {
    // Produce v9 whose client id claims 500 bytes in a 12-byte frame.
    let mut body = request_header(ApiKey::Produce as i16, 9, 7);
    body.truncate(8);
    body.extend_from_slice(&500i16.to_be_bytes());
    body.extend_from_slice(b"ab");
    refused(env, &framed(&body), "request ends inside its client id")
}

fn http_request_is_refused(env: &Env) -> Result<()> {
    refused(env, b"GET / HTTP/1.1\r\nHost: kafka\r\n\r\n", "malformed request frame")
}

fn tls_handshake_on_plaintext_is_named(env: &Env) -> Result<()> {
    // The record header and the start of a TLS 1.2 ClientHello, as any TLS client sends first.
    let hello = [0x16, 0x03, 0x01, 0x01, 0x3a, 0x01, 0x00, 0x01, 0x36, 0x03, 0x03, 0x5a, 0x11, 0x42];
    refused(env, &hello, "a TLS handshake (ClientHello) arrived on a plaintext route")
}

fn undecodable_metadata_version_is_refused(env: &Env) -> Result<()> {
    // Metadata answers must be rewritten; v99 could not be, so it is never forwarded.
    refused(env, &framed(&request_header(ApiKey::Metadata as i16, 99, 5)), "Metadata v99 is outside the versions")
}

/// A broker answers an ApiVersions it cannot read with UNSUPPORTED_VERSION in the v0 format and
/// its own ApiVersions range; the client then retries lower on the same connection. Newer
/// clients (Java 4.4, franz-go 1.22) open with a version the gateway's codec does not know.
fn api_versions_above_range_gets_unsupported_version(env: &Env) -> Result<()> {
    let mut wire = KafkaWire::connect(loopback(env.main_port), WAIT)?;
    let mut v5 = request_header(ApiKey::ApiVersions as i16, 5, 41);
    v5.push(0); // the header's tagged fields (ApiVersions headers are flexible from v3)
    v5.extend_from_slice(&[5, b'j', b'a', b'v', b'a', 4, b'4', b'.', b'4', 0]); // name, version, tags
    wire.send_raw(&v5)?;
    let answer = wire.read_raw_frame()?.context("the gateway closed the connection instead of answering")?;
    // v0: correlation id, error code, then [api key, min, max] for ApiVersions alone.
    let mut expected = 41i32.to_be_bytes().to_vec();
    expected.extend_from_slice(&35i16.to_be_bytes()); // UNSUPPORTED_VERSION
    expected.extend_from_slice(&1i32.to_be_bytes());
    for field in [ApiKey::ApiVersions as i16, 0, 4] {
        expected.extend_from_slice(&field.to_be_bytes());
    }
    ensure!(answer[..] == expected[..], "answer {:?}, expected {expected:?}", &answer[..]);
    let retry = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("java"))
        .with_client_software_version(StrBytes::from_static_str("4.4"));
    let versions = wire.send(&retry, 3).context("the retry at v3 on the same connection")?;
    let api_versions = versions.api_keys.iter().find(|api| api.api_key == ApiKey::ApiVersions as i16);
    ensure!(api_versions.is_some_and(|api| api.max_version == 4), "retry answered {versions:?}");
    ensure!(wire.send(&MetadataRequest::default(), 12)?.brokers.len() == 1, "metadata after the retry");
    Ok(())
}

/// More requests in one write than the in-flight queue holds (default 1,024): every one is
/// answered, in order. The gateway used to note them all before forwarding any, and wedged.
fn thousands_of_pipelined_requests_are_all_answered(env: &Env) -> Result<()> {
    const COUNT: i32 = 3_000;
    let mut wire = KafkaWire::connect(loopback(env.main_port), WAIT)?;
    let mut burst = Vec::new();
    for correlation_id in 0..COUNT {
        let mut body = request_header(ApiKey::ApiVersions as i16, 3, correlation_id);
        body.extend_from_slice(&[0, 2, b't', 2, b'1', 0]); // header tags; name "t", version "1"; body tags
        burst.extend_from_slice(&framed(&body));
    }
    // Written from another thread: the answers must be read while the requests go out.
    let mut writer = wire.stream().try_clone()?;
    let sender = std::thread::spawn(move || writer.write_all(&burst));
    for expected in 0..COUNT {
        let frame = wire.read_raw_frame()?.with_context(|| format!("closed after {expected} answers"))?;
        let correlation_id = i32::from_be_bytes(frame[..4].try_into()?);
        ensure!(correlation_id == expected, "answer {correlation_id} arrived where {expected} was due");
        ensure!(frame[4..6] == [0, 0], "answer {expected} carries error code {:?}", &frame[4..6]);
    }
    sender.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
    Ok(())
}

fn client_disconnecting_mid_frame_is_logged(env: &Env) -> Result<()> {
    let healthy = healthy_connection(env)?;
    let mut bad = TcpStream::connect(("127.0.0.1", env.main_port))?;
    let client = bad.local_addr()?;
    let mut partial = 100i32.to_be_bytes().to_vec();
    partial.extend_from_slice(&request_header(ApiKey::Metadata as i16, 12, 3));
    bad.write_all(&partial)?;
    drop(bad);
    expect_log(env, &client, "client disconnected in the middle of a request frame")?;
    still_serving(env, healthy)
}

fn client_stalling_mid_frame_times_out(env: &Env) -> Result<()> {
    // No healthy connection is held across this case: idle ones are closed too, by design.
    let mut bad = TcpStream::connect(("127.0.0.1", env.main_port))?;
    bad.write_all(&100i32.to_be_bytes())?;
    expect_closed(&mut bad, Duration::from_millis(IDLE_MS * 5))
        .context("a stalled half-frame must not hold the connection forever")?;
    expect_log(env, &bad.local_addr()?, "idle for longer than proxy.idleTimeoutMs in the middle of a request frame")?;
    healthy_connection(env).map(drop)
}

/// Slowloris: a byte every half second keeps the idle timer happy, but the frame must still be
/// complete `frameTimeoutMs` after its first byte.
fn trickled_frame_times_out_though_bytes_keep_coming(env: &Env) -> Result<()> {
    let mut bad = TcpStream::connect(("127.0.0.1", env.main_port))?;
    let client = bad.local_addr()?;
    let mut trickle = bad.try_clone()?;
    let trickler = std::thread::spawn(move || {
        let _ = trickle.write_all(&500i32.to_be_bytes());
        for _ in 0..40 {
            std::thread::sleep(Duration::from_millis(IDLE_MS / 4));
            if trickle.write_all(&[0]).is_err() {
                return;
            }
        }
    });
    let closed = expect_closed(&mut bad, Duration::from_millis(FRAME_TIMEOUT_MS * 3));
    drop(bad);
    let _ = trickler.join();
    closed.context("a trickled frame must not hold the connection forever")?;
    expect_log(env, &client, "a request frame was still incomplete proxy.frameTimeoutMs after its first byte")
}

/// A size prefix claiming the largest frame, and nothing more, on many connections: the
/// gateway's memory must follow the bytes received, not the sizes claimed. Measured as the
/// growth of the process's virtual size, which an over-reservation shows even when the kernel
/// never backs it with pages.
fn size_prefixes_alone_reserve_no_memory(env: &Env) -> Result<()> {
    const CONNECTIONS: usize = 200;
    let before = virtual_size_kib(env.gateway.pid())?;
    let mut claims = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut claim = TcpStream::connect(("127.0.0.1", env.main_port))?;
        claim.write_all(&(MAX_FRAME as i32).to_be_bytes())?;
        claims.push(claim);
    }
    // Every prefix read: each connection has logged nothing yet, so wait on the growth settling.
    std::thread::sleep(Duration::from_secs(1));
    let grown_mib = virtual_size_kib(env.gateway.pid())?.saturating_sub(before) / 1024;
    drop(claims);
    let claimed_mib = CONNECTIONS * MAX_FRAME / (1024 * 1024);
    ensure!(
        grown_mib < claimed_mib as u64 / 4,
        "{CONNECTIONS} size prefixes claiming {claimed_mib} MiB in all grew the gateway by {grown_mib} MiB"
    );
    healthy_connection(env).map(drop)
}

fn virtual_size_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|line| line.starts_with("VmSize:")).context("no VmSize")?;
    line.split_whitespace().nth(1).context("bad VmSize")?.parse().context("bad VmSize")
}

/// Past `maxConnectionsPerClient` from one address, new connections are closed at once with a
/// logged reason; those already open keep working, and a closed one frees its place.
fn connections_over_the_per_client_limit_are_refused(env: &Env) -> Result<()> {
    const EXTRA: usize = 10;
    // A source address of its own: connections other cases left closing don't count against it.
    let source = std::net::IpAddr::from([127, 0, 0, 3]);
    let gateway = loopback(env.main_port);
    let mut open = Vec::new();
    for _ in 0..MAX_PER_CLIENT + EXTRA {
        let stream = switchyard_testkit::load::connect_from(source, gateway, WAIT)?;
        stream.set_nonblocking(true)?;
        open.push(stream);
    }
    let refused = poll::poll_until(WAIT, || {
        let closed = open.iter().filter(|stream| closed_by_peer(stream)).count();
        (closed >= EXTRA).then_some(closed)
    })
    .context("no connection over the limit was refused")?;
    ensure!(refused == EXTRA, "{refused} connections refused, expected {EXTRA}");
    let reason = "it would exceed the limit of connections from one client address (proxy.maxConnectionsPerClient)";
    ensure!(env.gateway.log_contents().contains(reason), "no refusal logged:\n{}", env.gateway.log_tail());
    // Other clients are not affected, and the places are freed as the gateway sees the closes.
    let healthy = healthy_connection(env)?;
    drop(open);
    poll::poll_until(WAIT, || {
        switchyard_testkit::load::connect_from(source, gateway, WAIT).ok().filter(|s| {
            s.set_nonblocking(true).is_ok() && {
                std::thread::sleep(Duration::from_millis(200));
                !closed_by_peer(s)
            }
        })
    })
    .context("no place freed after the connections closed")?;
    still_serving(env, healthy)
}

/// Hundreds of connections sending garbage in a burst: each is closed, but the log gets a
/// bounded number of lines for them (20 a second per reason), the later ones saying how many
/// were held back.
fn a_flood_of_bad_frames_logs_a_bounded_number_of_lines(env: &Env) -> Result<()> {
    const FLOOD: usize = 250;
    const REASON: &str = "negative frame size";
    let logged = |log: &str| log.lines().filter(|line| line.contains(REASON)).count();
    let before = logged(&env.gateway.log_contents());
    let started = std::time::Instant::now();
    for _ in 0..FLOOD {
        let mut bad = TcpStream::connect(("127.0.0.1", env.main_port))?;
        bad.write_all(&(-7i32).to_be_bytes())?;
        expect_closed(&mut bad, WAIT)?;
    }
    let seconds = started.elapsed().as_secs() + 2;
    let log = env.gateway.log_contents();
    let lines = logged(&log) - before;
    ensure!(lines >= 1, "no line at all for the flood");
    ensure!(
        lines as u64 <= 20 * seconds && lines < FLOOD,
        "{lines} lines for {FLOOD} bad connections in {seconds} s: not rate-limited"
    );
    ensure!(log.contains("held_back="), "no line says how many were held back");
    still_serving(env, healthy_connection(env)?)
}

/// Whether a non-blocking stream's peer has closed it.
fn closed_by_peer(mut stream: &TcpStream) -> bool {
    matches!(stream.read(&mut [0u8; 1]), Ok(0))
}

// ---- broker-side cases -------------------------------------------------------------------

/// What the hostile broker does with a request, chosen by its correlation id.
#[derive(Clone, Copy)]
enum Misbehaviour {
    GarbageBytes = 1,
    UndecodableBody = 2,
    WrongCorrelationId = 3,
    CloseMidResponse = 4,
}

fn broker_garbage_bytes_close_the_connection(env: &Env) -> Result<()> {
    broker_misbehaves(env, Misbehaviour::GarbageBytes, "malformed response frame from the broker")
}

fn broker_undecodable_metadata_closes_the_connection(env: &Env) -> Result<()> {
    broker_misbehaves(env, Misbehaviour::UndecodableBody, "cannot decode the broker's Metadata v12 response")
}

fn broker_wrong_correlation_id_closes_the_connection(env: &Env) -> Result<()> {
    broker_misbehaves(env, Misbehaviour::WrongCorrelationId, "responses out of order")
}

fn broker_closing_mid_response_closes_the_connection(env: &Env) -> Result<()> {
    broker_misbehaves(env, Misbehaviour::CloseMidResponse, "broker disconnected in the middle of a response frame")
}

fn broker_misbehaves(env: &Env, how: Misbehaviour, reason: &str) -> Result<()> {
    let healthy = healthy_connection(env)?;
    let mut client = TcpStream::connect(("127.0.0.1", env.hostile_port))?;
    let mut body = request_header(ApiKey::Metadata as i16, 12, how as i32);
    body.extend_from_slice(&[0, 0]); // topics: null; allow_auto_topic_creation etc. are not read by the hostile broker
    client.write_all(&framed(&body))?;
    expect_closed(&mut client, WAIT)?;
    expect_log(env, &client.local_addr()?, reason)?;
    still_serving(env, healthy)
}

fn serve_hostile_broker(listener: TcpListener) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { return };
        std::thread::spawn(move || {
            let _ = answer_badly(stream);
        });
    }
}

fn answer_badly(mut stream: TcpStream) -> Result<()> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let mut body = vec![0u8; i32::from_be_bytes(size).clamp(0, 1 << 20) as usize];
    stream.read_exact(&mut body)?;
    let correlation_id = i32::from_be_bytes(body[4..8].try_into()?);
    let client_id_len = i16::from_be_bytes(body[8..10].try_into()?).max(0) as usize;
    if body.get(10..10 + client_id_len) != Some(HOSTILE_CLIENT.as_bytes()) {
        return Ok(()); // the gateway's own metadata client: hang up
    }
    let reply: Vec<u8> = match correlation_id {
        1 => vec![0xff; 64],
        2 => {
            // Right correlation id, then a body claiming 2^31-1 brokers.
            let mut body = correlation_id.to_be_bytes().to_vec();
            body.push(0); // response header tagged fields
            body.extend_from_slice(&[0, 0, 0, 0]); // throttle time
            body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]); // brokers: compact length 2^32-1
            body.extend_from_slice(&[0x13; 16]);
            framed(&body)
        }
        3 => framed(&(correlation_id + 1000).to_be_bytes()),
        _ => {
            let mut partial = 500i32.to_be_bytes().to_vec();
            partial.extend_from_slice(&correlation_id.to_be_bytes());
            partial
        }
    };
    stream.write_all(&reply)?;
    Ok(())
}

// ---- helpers -----------------------------------------------------------------------------

/// api key, version, correlation id, then the client id.
fn request_header(api_key: i16, version: i16, correlation_id: i32) -> Vec<u8> {
    let mut header = Vec::new();
    header.extend_from_slice(&api_key.to_be_bytes());
    header.extend_from_slice(&version.to_be_bytes());
    header.extend_from_slice(&correlation_id.to_be_bytes());
    header.extend_from_slice(&(HOSTILE_CLIENT.len() as i16).to_be_bytes());
    header.extend_from_slice(HOSTILE_CLIENT.as_bytes());
    if version >= 9 {
        header.push(0); // Metadata and Produce headers are flexible from v9: no tagged fields
    }
    header
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

/// Send `bytes` on a new connection; it must be closed and the reason logged, while a healthy
/// connection carries on.
fn refused(env: &Env, bytes: &[u8], reason: &str) -> Result<()> {
    let healthy = healthy_connection(env)?;
    let mut bad = TcpStream::connect(("127.0.0.1", env.main_port))?;
    bad.write_all(bytes)?;
    expect_closed(&mut bad, WAIT)?;
    expect_log(env, &bad.local_addr()?, reason)?;
    still_serving(env, healthy)
}

fn healthy_connection(env: &Env) -> Result<KafkaWire> {
    let mut wire = KafkaWire::connect(SocketAddr::from(([127, 0, 0, 1], env.main_port)), WAIT)?;
    wire.send(&MetadataRequest::default(), 12)?;
    Ok(wire)
}

/// The connection opened before the bad input still works, and so does a new one.
fn still_serving(env: &Env, mut healthy: KafkaWire) -> Result<()> {
    let answer = healthy.send(&MetadataRequest::default(), 12).context("a healthy connection was harmed")?;
    ensure!(answer.brokers.len() == 1, "healthy connection got {answer:?}");
    healthy_connection(env).context("a new connection was refused")?;
    Ok(())
}

fn expect_closed(stream: &mut TcpStream, within: Duration) -> Result<()> {
    stream.set_read_timeout(Some(within))?;
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => continue, // an answer to something sent before the bad bytes
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                bail!("the gateway kept the connection open for {within:?}")
            }
            Err(_) => return Ok(()), // reset
        }
    }
}

fn expect_log(env: &Env, client: &SocketAddr, reason: &str) -> Result<()> {
    let client = client.to_string();
    poll::poll_until(WAIT, || {
        env.gateway.log_contents().lines().any(|line| line.contains(&client) && line.contains(reason)).then_some(())
    })
    .with_context(|| format!("no log line naming client {client} and `{reason}`:\n{}", env.gateway.log_tail()))
}
