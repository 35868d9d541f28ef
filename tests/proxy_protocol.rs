//! The PROXY protocol behind a real HAProxy, and hostile headers sent directly.
//!
//! HAProxy (Debian's) listens on 127.0.0.2 and forwards every port to a gateway on 127.0.0.1
//! from 127.0.0.5, with `send-proxy` (v1) or `send-proxy-v2`; the route advertises 127.0.0.2 so
//! clients keep going through HAProxy for broker ports too. The gateway trusts headers only from
//! 127.0.0.5. Real clients produce and consume through it, and the audit log and error messages
//! must show the client's own address (127.0.0.1), not HAProxy's.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use common::{loopback, run_suite, start_gateway, TestGateway};
use serde_json::Value;
use switchyard_testkit::gateway::Route;
use switchyard_testkit::{
    free_port_block, java, kcat, poll, ClusterSpec, GatewayProcess, GatewayYaml, HaproxyProcess, HaproxySpec,
    KafkaCluster, KafkaDomain, ProxyHeader,
};

const HAPROXY_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const HAPROXY_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);
const WAIT: Duration = Duration::from_secs(30);

struct Env {
    _cluster: KafkaCluster,
    /// PROXY protocol on, headers trusted from HAProxy's source address only.
    behind_haproxy: Gateway,
    /// PROXY protocol on, any peer may send a header.
    open: Gateway,
    /// PROXY protocol off.
    plain: TestGateway,
}

struct Gateway {
    process: GatewayProcess,
    base_port: u16,
    audit: PathBuf,
    _dir: tempfile::TempDir,
}

fn main() {
    run_suite(
        &[
            ("haproxy_send_proxy_v1_carries_real_client_address", haproxy_send_proxy_v1_carries_real_client_address),
            ("haproxy_send_proxy_v2_carries_real_client_address", haproxy_send_proxy_v2_carries_real_client_address),
            ("errors_behind_haproxy_name_the_original_source", errors_behind_haproxy_name_the_original_source),
            ("forged_header_from_untrusted_peer_is_refused", forged_header_from_untrusted_peer_is_refused),
            ("garbage_header_is_refused", garbage_header_is_refused),
            ("truncated_header_is_refused", truncated_header_is_refused),
            ("stalled_header_times_out", stalled_header_times_out),
            ("header_while_feature_is_off_is_a_bad_frame", header_while_feature_is_off_is_a_bad_frame),
        ],
        || {
            ensure!(HaproxyProcess::available(), "haproxy is not installed: apt-get install -y haproxy");
            let cluster = KafkaCluster::start(ClusterSpec::single())?;
            let behind_haproxy =
                start_proxied_gateway(&cluster, &format!("trustedNetworks: [\"{HAPROXY_SOURCE}/32\"]"))?;
            let open = start_proxied_gateway(&cluster, "headerTimeoutMs: 1000")?;
            let plain = start_gateway(&cluster, "")?;
            Ok(Env { _cluster: cluster, behind_haproxy, open, plain })
        },
    );
}

fn start_proxied_gateway(cluster: &KafkaCluster, proxy_protocol_yaml: &str) -> Result<Gateway> {
    let dir = tempfile::tempdir()?;
    let audit = dir.path().join("audit.jsonl");
    let base_port = free_port_block(2);
    let admin_port = free_port_block(1);
    let kafka = cluster.bootstrap();
    let domain = KafkaDomain {
        name: "kafka",
        cluster_name: "real",
        bootstrap_id: "plain",
        node_range_name: "only",
        ..KafkaDomain::new(&kafka, (1, 1))
    };
    // Clients are told HAProxy's address; the gateway listens on 127.0.0.1 behind it.
    let route = Route {
        name: "proxied",
        bind_address: Some(Ipv4Addr::LOCALHOST.into()),
        broker_id_by_port: false,
        bootstrap_id: None,
        ..Route::new(SocketAddr::from((HAPROXY_IP, base_port)), &domain)
    };
    let yaml = GatewayYaml {
        domains: vec![domain],
        routes: vec![route],
        admin: Some(loopback(admin_port)),
        sections: format!(
            "proxyProtocol:\n  enabled: true\n  {proxy_protocol_yaml}\naudit:\n  file: {}\n",
            audit.display()
        ),
        ..GatewayYaml::default()
    };
    let process = GatewayProcess::start(&common::binary(), &yaml.to_string(), &[loopback(base_port)])?;
    Ok(Gateway { process, base_port, audit, _dir: dir })
}

fn haproxy_in_front(gateway: &Gateway, header: ProxyHeader) -> Result<HaproxyProcess> {
    HaproxyProcess::start(&HaproxySpec {
        frontend_ip: HAPROXY_IP,
        ports: gateway.base_port..=gateway.base_port + 1,
        backends: vec![Ipv4Addr::LOCALHOST],
        source_ip: Some(HAPROXY_SOURCE),
        header,
    })
}

fn haproxy_send_proxy_v1_carries_real_client_address(env: &Env) -> Result<()> {
    through_haproxy(env, ProxyHeader::V1, "haproxy-v1")
}

fn haproxy_send_proxy_v2_carries_real_client_address(env: &Env) -> Result<()> {
    through_haproxy(env, ProxyHeader::V2, "haproxy-v2")
}

/// Produce and consume through HAProxy with librdkafka and Java clients; the audit log must
/// show the client's address as `proxySourceAddress` and HAProxy's as the TCP peer.
fn through_haproxy(env: &Env, header: ProxyHeader, topic: &str) -> Result<()> {
    let gateway = &env.behind_haproxy;
    let _haproxy = haproxy_in_front(gateway, header)?;
    let bootstrap = format!("{HAPROXY_IP}:{}", gateway.base_port);
    let sent: Vec<String> = (0..20).map(|i| format!("{topic}-{i}")).collect();
    kcat::produce(&bootstrap, topic, &sent)?;
    let by_kcat = kcat::consume(&bootstrap, topic, sent.len(), WAIT)?;
    ensure!(by_kcat == sent, "kcat read {by_kcat:?}");
    let by_java = java::console_consume(&bootstrap, topic, None, sent.len(), WAIT)?;
    ensure!(by_java.len() == sent.len(), "the Java consumer read {} of {}", by_java.len(), sent.len());

    let events = audit_events(gateway)?;
    let proxied: Vec<&Value> = events.iter().filter(|e| e["proxySourceAddress"].is_string()).collect();
    ensure!(!proxied.is_empty(), "no audit event carries proxySourceAddress: {events:?}");
    for event in &proxied {
        let source: SocketAddr = event["proxySourceAddress"].as_str().unwrap_or_default().parse()?;
        let destination: SocketAddr = event["proxyDestinationAddress"].as_str().unwrap_or_default().parse()?;
        let peer: SocketAddr = event["clientAddress"].as_str().unwrap_or_default().parse()?;
        ensure!(source.ip() == Ipv4Addr::LOCALHOST, "proxySourceAddress {source} is not the real client's");
        ensure!(destination.ip() == HAPROXY_IP, "proxyDestinationAddress {destination} is not HAProxy's frontend");
        ensure!(peer.ip() == HAPROXY_SOURCE, "clientAddress {peer} should be HAProxy's own address");
    }
    Ok(())
}

fn errors_behind_haproxy_name_the_original_source(env: &Env) -> Result<()> {
    let gateway = &env.behind_haproxy;
    let _haproxy = haproxy_in_front(gateway, ProxyHeader::V2)?;
    let mut client = TcpStream::connect((HAPROXY_IP, gateway.base_port))?;
    let client_addr = client.local_addr()?;
    client.write_all(b"\xff\xff\xff\xfe this is not kafka")?;
    expect_closed(&mut client)?;
    let expected =
        format!("(original source: {client_addr}, original destination: {HAPROXY_IP}:{})", gateway.base_port);
    expect_log(&gateway.process, &["negative frame size", &expected])
}

fn forged_header_from_untrusted_peer_is_refused(env: &Env) -> Result<()> {
    let gateway = &env.behind_haproxy;
    let mut client = TcpStream::connect(("127.0.0.1", gateway.base_port))?;
    client.write_all(format!("PROXY TCP4 10.9.9.9 127.0.0.1 4444 {}\r\n", gateway.base_port).as_bytes())?;
    expect_closed(&mut client)?;
    expect_log(&gateway.process, &["127.0.0.1 is not in proxyProtocol.trustedNetworks"])
}

fn garbage_header_is_refused(env: &Env) -> Result<()> {
    let mut client = TcpStream::connect(("127.0.0.1", env.open.base_port))?;
    client.write_all(b"\x00\x00\x00\x20hello, definitely not a header\r\n")?;
    expect_closed(&mut client)?;
    expect_log(&env.open.process, &["PROXY protocol: invalid header"])
}

fn truncated_header_is_refused(env: &Env) -> Result<()> {
    let mut client = TcpStream::connect(("127.0.0.1", env.open.base_port))?;
    client.write_all(b"PROXY TCP4 192.168.")?;
    client.shutdown(std::net::Shutdown::Write)?;
    expect_closed(&mut client)?;
    expect_log(&env.open.process, &["connection closed after 19 bytes, before a complete header"])
}

fn stalled_header_times_out(env: &Env) -> Result<()> {
    let mut client = TcpStream::connect(("127.0.0.1", env.open.base_port))?;
    client.write_all(b"\r\n\r\n\0\r\n")?;
    expect_closed(&mut client)?;
    expect_log(&env.open.process, &["no complete header within proxyProtocol.headerTimeoutMs"])
}

fn header_while_feature_is_off_is_a_bad_frame(env: &Env) -> Result<()> {
    let mut client = TcpStream::connect(env.plain.bootstrap_addr())?;
    let client_addr = client.local_addr()?.to_string();
    client.write_all(b"PROXY TCP4 10.1.1.1 127.0.0.1 5555 9092\r\n")?;
    expect_closed(&mut client)?;
    expect_log(&env.plain.process, &[&client_addr, "a PROXY protocol header arrived but the feature is off"])
}

fn audit_events(gateway: &Gateway) -> Result<Vec<Value>> {
    poll::try_poll_until(WAIT, || {
        let text = std::fs::read_to_string(&gateway.audit).unwrap_or_default();
        let events: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        Ok((!events.is_empty()).then_some(events))
    })
}

fn expect_closed(stream: &mut TcpStream) -> Result<()> {
    stream.set_read_timeout(Some(WAIT))?;
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(0) => Ok(()),
        Ok(n) => bail!("the gateway answered {n} bytes instead of closing"),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            bail!("the gateway kept the connection open for {WAIT:?}")
        }
        Err(_) => Ok(()), // reset
    }
}

fn expect_log(gateway: &GatewayProcess, needles: &[&str]) -> Result<()> {
    poll::poll_until(WAIT, || {
        gateway.log_contents().lines().any(|l| needles.iter().all(|n| l.contains(n))).then_some(())
    })
    .with_context(|| format!("no log line with {needles:?}:\n{}", gateway.log_tail()))
}
