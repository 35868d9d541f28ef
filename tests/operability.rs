//! Operating the gateway, over real HTTP against a gateway in front of a real Kafka: health
//! probes, Prometheus metrics that move with traffic, the route and domain views, the bearer
//! token on changes (including the 401 path), `switchyard status`, and the audit log.

mod common;

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::{loopback, metric_sum, run_suite, scrape_metrics, start_gateway, start_gateway_with_token, TestGateway};
use kafka_protocol::messages::MetadataRequest;
use serde_json::Value;
use switchyard_testkit::{
    free_port_block, kcat, poll, ClusterSpec, GatewayProcess, GatewayYaml, KafkaCluster, KafkaWire,
};

const TOKEN: &str = "s3cret-admin-token";
const WAIT: Duration = Duration::from_secs(30);

struct Env {
    cluster: KafkaCluster,
    gateway: TestGateway,
    audit_file: std::path::PathBuf,
    _audit_dir: tempfile::TempDir,
}

fn main() {
    run_suite(
        &[
            ("probes_report_live_and_ready", probes_report_live_and_ready),
            ("readiness_fails_while_the_domain_is_unreachable", readiness_fails_while_the_domain_is_unreachable),
            ("metrics_parse_and_move_with_traffic", metrics_parse_and_move_with_traffic),
            ("routes_and_domains_show_the_live_mapping", routes_and_domains_show_the_live_mapping),
            ("changes_need_the_bearer_token", changes_need_the_bearer_token),
            (
                "admin_api_closes_slow_headers_and_reads_any_scheme_case",
                admin_api_closes_slow_headers_and_reads_any_scheme_case,
            ),
            ("changes_are_refused_without_a_configured_token", changes_are_refused_without_a_configured_token),
            ("route_reset_drains_and_closes_client_connections", route_reset_drains_and_closes_client_connections),
            ("status_command_prints_routes_and_domains", status_command_prints_routes_and_domains),
            ("audit_log_records_connections", audit_log_records_connections),
        ],
        || {
            let cluster = KafkaCluster::start(ClusterSpec::single())?;
            let audit_dir = tempfile::tempdir()?;
            let audit_file = audit_dir.path().join("audit.jsonl");
            let extra = format!("audit:\n  file: {}\n", audit_file.display());
            let gateway = start_gateway_with_token(&cluster, &extra, Some(TOKEN))?;
            Ok(Env { cluster, gateway, audit_file, _audit_dir: audit_dir })
        },
    );
}

fn admin_url(gateway: &TestGateway, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", gateway.admin_port)
}

/// GET or POST, returning the status and the body, whatever the status.
fn http(method: &str, url: &str, token: Option<&str>) -> Result<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = match method {
        "GET" => agent.get(url).call()?,
        _ => {
            let mut request = agent.post(url);
            if let Some(token) = token {
                request = request.header("Authorization", &format!("Bearer {token}"));
            }
            request.send_empty()?
        }
    };
    let status = response.status().as_u16();
    Ok((status, response.body_mut().read_to_string()?))
}

fn get_json(url: &str) -> Result<Value> {
    let (status, body) = http("GET", url, None)?;
    ensure!(status == 200, "GET {url}: {status} {body}");
    Ok(serde_json::from_str(&body)?)
}

fn probes_report_live_and_ready(env: &Env) -> Result<()> {
    let (status, body) = http("GET", &admin_url(&env.gateway, "/health/live"), None)?;
    ensure!(status == 200 && body.contains("live"), "live: {status} {body}");
    poll::try_poll_until(WAIT, || {
        Ok((http("GET", &admin_url(&env.gateway, "/health/ready"), None)?.0 == 200).then_some(()))
    })
    .context("never ready in front of a running Kafka")
}

fn readiness_fails_while_the_domain_is_unreachable(_env: &Env) -> Result<()> {
    let dead_kafka = free_port_block(1);
    let base = free_port_block(2);
    let admin = free_port_block(1);
    let dead_bootstrap = format!("127.0.0.1:{dead_kafka}");
    let yaml = GatewayYaml { admin: Some(loopback(admin)), ..common::gateway_yaml(base, &dead_bootstrap, (1, 1)) };
    let _gateway = GatewayProcess::start(&common::binary(), &yaml.to_string(), &[loopback(base)])?;
    let (status, body) = http("GET", &format!("http://127.0.0.1:{admin}/health/ready"), None)?;
    ensure!(status == 503, "ready answered {status} with its domain down: {body}");
    let reasons: Value = serde_json::from_str(&body)?;
    ensure!(
        reasons["reasons"][0].as_str().is_some_and(|r| r.contains("test-kafka")),
        "503 body names no domain: {body}"
    );
    Ok(())
}

fn metrics_parse_and_move_with_traffic(env: &Env) -> Result<()> {
    let before = scrape(&env.gateway)?;
    let gw = env.gateway.bootstrap();
    kcat::produce(&gw, "metrics-topic", &["one".to_string(), "two".to_string(), "three".to_string()])?;
    let read = kcat::consume(&gw, "metrics-topic", 3, WAIT)?;
    ensure!(read.len() == 3, "read {read:?}");
    let after = scrape(&env.gateway)?;
    for (name, labels) in [
        ("switchyard_requests_total", vec![("api", "Produce")]),
        ("switchyard_requests_total", vec![("api", "Fetch")]),
        ("switchyard_requests_total", vec![("api", "Metadata")]),
        ("switchyard_bytes_total", vec![("direction", "client_to_broker")]),
        ("switchyard_bytes_total", vec![("direction", "broker_to_client")]),
        ("switchyard_client_connections_total", vec![]),
        ("switchyard_upstream_time_seconds_count", vec![]),
    ] {
        let (b, a) = (value(&before, name, &labels), value(&after, name, &labels));
        ensure!(a > b, "{name}{labels:?} did not grow with traffic: {b} -> {a}");
    }
    Ok(())
}

fn scrape(gateway: &TestGateway) -> Result<prometheus_parse::Scrape> {
    scrape_metrics(&format!("127.0.0.1:{}", gateway.admin_port))
}

/// The sum of every sample of `name` on route `main` whose labels include `labels`.
fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let on_main: Vec<(&str, &str)> = labels.iter().copied().chain([("route", "main")]).collect();
    metric_sum(scrape, name, &on_main)
}

fn routes_and_domains_show_the_live_mapping(env: &Env) -> Result<()> {
    let routes = get_json(&admin_url(&env.gateway, "/admin/v1/routes"))?;
    let route = &routes[0];
    ensure!(route["name"] == "main" && route["domain"] == "test-kafka", "routes: {routes}");
    let real = env.cluster.brokers()[0].1;
    let broker = poll::try_poll_until(WAIT, || {
        let routes = get_json(&admin_url(&env.gateway, "/admin/v1/routes"))?;
        Ok(routes[0]["brokers"].as_array().and_then(|b| b.first().cloned()))
    })?;
    ensure!(broker["nodeId"] == 1 && broker["port"] == env.gateway.port_of(1), "broker mapping {broker}");
    ensure!(broker["upstream"] == real.to_string(), "broker {broker} is not at {real}");
    let domains = get_json(&admin_url(&env.gateway, "/admin/v1/domains"))?;
    ensure!(domains[0]["name"] == "test-kafka" && domains[0]["routes"][0] == "main", "domains: {domains}");
    Ok(())
}

fn changes_need_the_bearer_token(env: &Env) -> Result<()> {
    let url = admin_url(&env.gateway, "/admin/v1/routes/main/reset");
    for token in [None, Some("wrong-token")] {
        let (status, body) = http("POST", &url, token)?;
        ensure!(status == 401, "token {token:?}: {status} {body}");
        ensure!(serde_json::from_str::<Value>(&body)?["error"].is_string(), "401 without a JSON error: {body}");
    }
    let (status, body) = http("POST", &admin_url(&env.gateway, "/admin/v1/routes/nope/reset"), Some(TOKEN))?;
    ensure!(status == 404 && body.contains("main"), "unknown route: {status} {body}");
    Ok(())
}

/// A client that never finishes its request headers is closed (slowloris), while the probes keep
/// answering; the bearer scheme is matched without regard to case, as HTTP says.
fn admin_api_closes_slow_headers_and_reads_any_scheme_case(env: &Env) -> Result<()> {
    use std::io::{Read, Write};
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", env.gateway.admin_port))?;
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")?;
    slow.set_read_timeout(Some(Duration::from_secs(25)))?;
    let (status, _) = http("GET", &admin_url(&env.gateway, "/health/live"), None)?;
    ensure!(status == 200, "a slow client blocked the probe: {status}");
    let mut answer = Vec::new();
    let read = slow.read_to_end(&mut answer);
    ensure!(read.is_ok(), "a request with unfinished headers was kept open for 25 s: {read:?}");
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let url = admin_url(&env.gateway, "/admin/v1/routes/nope/reset");
    let status = agent.post(&url).header("Authorization", &format!("bearer {TOKEN}")).send_empty()?.status().as_u16();
    ensure!(status == 404, "a lowercase `bearer` scheme was not accepted: {status}");
    Ok(())
}

fn changes_are_refused_without_a_configured_token(env: &Env) -> Result<()> {
    let gateway = start_gateway(&env.cluster, "")?;
    let (status, body) = http("POST", &admin_url(&gateway, "/admin/v1/routes/main/reset"), Some("anything"))?;
    ensure!(status == 403 && body.contains("GATEWAY_ADMIN_TOKEN"), "{status} {body}");
    Ok(())
}

fn route_reset_drains_and_closes_client_connections(env: &Env) -> Result<()> {
    let mut wire = KafkaWire::connect(env.gateway.bootstrap_addr(), WAIT)?;
    wire.send(&MetadataRequest::default(), 12)?;
    let (status, body) = http("POST", &admin_url(&env.gateway, "/admin/v1/routes/main/reset"), Some(TOKEN))?;
    ensure!(status == 200, "reset: {status} {body}");
    wire.stream().set_read_timeout(Some(WAIT))?;
    ensure!(wire.read_raw_frame()?.is_none(), "the connection stayed open after a reset");
    let mut fresh = KafkaWire::connect(env.gateway.bootstrap_addr(), WAIT)?;
    fresh.send(&MetadataRequest::default(), 12).context("a new connection after the reset failed")?;
    Ok(())
}

fn status_command_prints_routes_and_domains(env: &Env) -> Result<()> {
    let output = std::process::Command::new(common::binary())
        .args(["status", "--admin", &admin_url(&env.gateway, "")])
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(output.status.success(), "status failed: {}", String::from_utf8_lossy(&output.stderr));
    ensure!(text.contains("ROUTES") && text.contains("main") && text.contains("test-kafka"), "status printed:\n{text}");
    Ok(())
}

fn audit_log_records_connections(env: &Env) -> Result<()> {
    let mut wire = KafkaWire::connect(env.gateway.bootstrap_addr(), WAIT)?;
    let client = wire.stream().local_addr()?.to_string();
    wire.send(&MetadataRequest::default(), 12)?;
    drop(wire);
    let events = poll::try_poll_until(WAIT, || {
        let text = std::fs::read_to_string(&env.audit_file).unwrap_or_default();
        let mine: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e["clientAddress"] == client.as_str())
            .collect();
        Ok((mine.len() == 2).then_some(mine))
    })?;
    ensure!(events.iter().all(|e| e["type"] == "CONNECTION" && e["route"] == "main"), "{events:?}");
    ensure!(events[0]["event"] == "open" && events[1]["event"] == "close", "{events:?}");
    ensure!(events[1]["bytesFromClient"].as_u64() > Some(0) && events[1]["durationMs"].is_u64(), "{:?}", events[1]);
    Ok(())
}
