//! A gateway cluster of three nodes (127.0.0.2-4, two racks) in front of a real 3-broker Kafka
//! whose brokers carry `broker.rack`: membership through the backing Kafka, rack-aware and
//! balanced broker-to-node mapping computed the same on every node, nodes killed, restarted and
//! rolled under load with nothing acknowledged lost, a switchover applied by every node, and
//! external load balancing behind a real HAProxy. The control plane is closed to strangers:
//! commands written to the cluster topic without the secret's signature, or replayed, are
//! refused; a forged member is never listed or advertised; the gateway's clients see neither
//! the cluster topic nor its group.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use common::{metric_sum, run_suite, scrape_metrics};
use serde_json::{json, Value};
use switchyard_testkit::kafka_protocol::messages::{FindCoordinatorRequest, MetadataRequest};
use switchyard_testkit::kafka_protocol::protocol::StrBytes;
use switchyard_testkit::numbered::{NumberedConsumer, NumberedProducer};
use switchyard_testkit::{
    free_port_block, java, kcat, poll, ClusterSpec, GatewayProcess, HaproxyProcess, HaproxySpec, KafkaCluster,
    KafkaWire, ProxyHeader,
};

const WAIT: Duration = Duration::from_secs(40);
const TOKEN: &str = "cluster-token";
/// Every node's `GATEWAY_CLUSTER_SECRET`.
const SECRET: &str = "cluster-test-secret-0123456789abcdef";
/// The internal topic and group of the test's cluster `cluster-a`.
const CLUSTER_TOPIC: &str = "_switchyard-cluster-cluster-a";
const CLUSTER_GROUP: &str = "switchyard-cluster-cluster-a";
/// Node n listens on 127.0.0.(n+1), in rack a, a, b.
const RACKS: [&str; 3] = ["rack-a", "rack-a", "rack-b"];
const LOAD_BALANCER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 9);

struct Env {
    kafka: KafkaCluster,
    ports: Ports,
    nodes: Mutex<Vec<Option<GatewayProcess>>>,
    /// Each node's audit log.
    audit: tempfile::TempDir,
}

/// Every node uses the same ports on its own address.
#[derive(Clone, Copy)]
struct Ports {
    base: u16,
    admin: u16,
    external_base: u16,
}

fn main() {
    run_suite(
        &[
            ("nodes_find_each_other_through_kafka", nodes_find_each_other_through_kafka),
            ("mapping_honours_racks_is_balanced_and_shared", mapping_honours_racks_is_balanced_and_shared),
            ("status_shows_members_and_mapping", status_shows_members_and_mapping),
            ("killed_node_drops_out_and_clients_lose_nothing", killed_node_drops_out_and_clients_lose_nothing),
            ("rolling_restart_under_load_loses_nothing", rolling_restart_under_load_loses_nothing),
            ("forged_commands_are_not_applied", forged_commands_are_not_applied),
            ("forged_member_is_never_listed_or_advertised", forged_member_is_never_listed_or_advertised),
            (
                "clients_see_neither_the_cluster_topic_nor_its_group",
                clients_see_neither_the_cluster_topic_nor_its_group,
            ),
            ("switchover_on_one_node_is_applied_by_all", switchover_on_one_node_is_applied_by_all),
            ("a_replayed_real_command_is_refused", a_replayed_real_command_is_refused),
            ("external_load_balancing_behind_haproxy", external_load_balancing_behind_haproxy),
        ],
        || {
            let spec =
                ClusterSpec { racks: Some(RACKS.iter().map(|r| r.to_string()).collect()), ..ClusterSpec::three() };
            let kafka = KafkaCluster::start(spec)?;
            let ports =
                Ports { base: free_port_block(4), admin: free_port_block(1), external_base: free_port_block(4) };
            let env = Env { kafka, ports, nodes: Mutex::new(vec![None, None, None]), audit: tempfile::tempdir()? };
            for node in 0..3 {
                env.start_node(node)?;
            }
            Ok(env)
        },
    );
}

/// A gateway node with the cluster secret in its environment.
fn start_gateway(yaml: &str, wait_for: &[SocketAddr]) -> Result<GatewayProcess> {
    GatewayProcess::start_with_env(&common::binary(), yaml, &[("GATEWAY_CLUSTER_SECRET", SECRET)], wait_for)
}

fn node_ip(node: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + node as u8)
}

impl Env {
    fn start_node(&self, node: usize) -> Result<()> {
        let audit = self.audit.path().join(format!("gw-{}.jsonl", node + 1));
        let yaml = node_config(&self.kafka, self.ports, node, "cluster-a", true, self.ports.base)
            + &format!("audit:\n  file: {}\n", audit.display());
        let process = start_gateway(&yaml, &[SocketAddr::from((node_ip(node), self.ports.base))])?;
        self.nodes.lock().unwrap()[node] = Some(process);
        Ok(())
    }

    fn bootstrap(&self) -> String {
        (0..3).map(|n| format!("{}:{}", node_ip(n), self.ports.base)).collect::<Vec<_>>().join(",")
    }

    fn admin(&self, node: usize, path: &str) -> String {
        format!("http://{}:{}{path}", node_ip(node), self.ports.admin)
    }

    fn cluster_view(&self, node: usize) -> Result<Value> {
        Ok(serde_json::from_str(
            &ureq::get(&self.admin(node, "/admin/v1/cluster")).call()?.body_mut().read_to_string()?,
        )?)
    }

    fn member_ids(&self, node: usize) -> Result<Vec<String>> {
        let view = self.cluster_view(node)?;
        Ok(view["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["nodeId"].as_str().map(str::to_string))
            .collect())
    }

    /// `switchyard_cluster_rejected_total{kind, reason}` on `node` (0 when never counted).
    fn rejected(&self, node: usize, kind: &str, reason: &str) -> Result<f64> {
        let scrape = scrape_metrics(&format!("{}:{}", node_ip(node), self.ports.admin))?;
        Ok(metric_sum(&scrape, "switchyard_cluster_rejected_total", &[("kind", kind), ("reason", reason)]))
    }

    /// Wait until every node has counted at least one rejection of `kind` for `reason`.
    fn wait_rejected(&self, kind: &str, reason: &str) -> Result<()> {
        for node in 0..3 {
            poll::try_poll_until(WAIT, || Ok((self.rejected(node, kind, reason)? >= 1.0).then_some(())))
                .with_context(|| format!("node {} never counted a {kind} rejected as {reason}", node + 1))?;
        }
        Ok(())
    }

    /// The domain route `main` points at on `node`.
    fn route_domain(&self, node: usize) -> Result<String> {
        let routes: Value = serde_json::from_str(
            &ureq::get(&self.admin(node, "/admin/v1/routes")).call()?.body_mut().read_to_string()?,
        )?;
        Ok(routes[0]["domain"].as_str().unwrap_or_default().to_string())
    }

    fn wait_members(&self, node: usize, expected: &[&str]) -> Result<()> {
        poll::try_poll_until(WAIT, || Ok((self.member_ids(node)? == expected).then_some(())))
            .with_context(|| format!("node {node} never listed members {expected:?}"))
    }
}

/// One node's config: the route's port map is the same on every node; each node binds and
/// advertises its own address.
fn node_config(kafka: &KafkaCluster, ports: Ports, node: usize, cluster: &str, internal: bool, base: u16) -> String {
    let ip = node_ip(node);
    let advertised = if internal { ip } else { LOAD_BALANCER };
    format!(
        r#"streamingDomains:
  - name: kafka
    type: kafka
    kafkaCluster:
      name: racked
      bootstrapServers: [{{id: plaintext, endpoint: "{kafka}"}}]
      nodeIdRanges: [{{name: brokers, start: 1, end: 3}}]
  - name: kafka-again
    type: kafka
    kafkaCluster:
      name: racked
      bootstrapServers: [{{id: plaintext, endpoint: "{kafka}"}}]
      nodeIdRanges: [{{name: brokers, start: 1, end: 3}}]
routes:
  - name: main
    endpoint: "{ip}:{base}"
    bindAddress: {ip}
    streamingDomain: {{name: kafka, bootstrapServerId: plaintext}}
cluster:
  id: {cluster}
  nodeId: gw-{number}
  rack: {rack}
  advertisedHost: "{advertised}"
  internalLoadBalancing: {internal}
admin:
  address: {ip}:{admin}
  token: {TOKEN}
"#,
        kafka = kafka.bootstrap(),
        number = node + 1,
        rack = RACKS[node],
        admin = ports.admin,
    )
}

fn nodes_find_each_other_through_kafka(env: &Env) -> Result<()> {
    for node in 0..3 {
        env.wait_members(node, &["gw-1", "gw-2", "gw-3"])?;
    }
    let view = env.cluster_view(2)?;
    ensure!(view["self"]["rack"] == "rack-b" && view["internalLoadBalancing"] == true, "{view}");
    let metrics = ureq::get(&env.admin(0, "/metrics")).call()?.body_mut().read_to_string()?;
    ensure!(metrics.contains("switchyard_cluster_members 3"), "metrics lack the member count:\n{metrics}");
    Ok(())
}

/// `broker N at host:port` lines of `kcat -L`, as (broker, host).
fn kcat_mapping(bootstrap: &str) -> Result<Vec<(i32, String)>> {
    let listing = kcat::metadata(bootstrap)?;
    let mut mapping: Vec<(i32, String)> = listing
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("broker ")?;
            let (id, at) = rest.split_once(" at ")?;
            let host = at.split_whitespace().next()?.rsplit_once(':')?.0.to_string();
            Some((id.parse().ok()?, host))
        })
        .collect();
    mapping.sort();
    Ok(mapping)
}

fn mapping_honours_racks_is_balanced_and_shared(env: &Env) -> Result<()> {
    for node in 0..3 {
        env.wait_members(node, &["gw-1", "gw-2", "gw-3"])?;
    }
    let through_node = |node: usize| kcat_mapping(&format!("{}:{}", node_ip(node), env.ports.base));
    let mapping = through_node(0)?;
    ensure!(mapping.len() == 3, "kcat saw {mapping:?}");
    let rack_a = ["127.0.0.2".to_string(), "127.0.0.3".to_string()];
    ensure!(rack_a.contains(&mapping[0].1) && rack_a.contains(&mapping[1].1), "rack-a brokers on {mapping:?}");
    ensure!(mapping[0].1 != mapping[1].1, "both rack-a brokers on one node: {mapping:?}");
    ensure!(mapping[2].1 == "127.0.0.4", "the rack-b broker is not on the rack-b node: {mapping:?}");
    for node in 1..3 {
        ensure!(through_node(node)? == mapping, "node {node} maps brokers differently from node 0");
    }
    Ok(())
}

fn status_shows_members_and_mapping(env: &Env) -> Result<()> {
    let output =
        std::process::Command::new(common::binary()).args(["status", "--admin", &env.admin(1, "")]).output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(output.status.success(), "status failed: {}", String::from_utf8_lossy(&output.stderr));
    for needle in ["CLUSTER cluster-a", "gw-1", "gw-3", "rack-b", "ADVERTISED AT"] {
        ensure!(text.contains(needle), "status lacks {needle}:\n{text}");
    }
    Ok(())
}

/// A producer (idempotent, acks=all) and a consumer group run through the cluster while `disrupt`
/// acts on the nodes; nothing acknowledged may be lost.
fn under_load(env: &Env, topic: &str, records: u64, disrupt: impl FnOnce() -> Result<()>) -> Result<()> {
    java::create_topic(&env.kafka.bootstrap(), topic, 3, 3)?;
    let bootstrap = env.bootstrap();
    let mut producer = NumberedProducer::sending(&bootstrap, topic, records, 200).start()?;
    let consumer =
        NumberedConsumer::reading(&bootstrap, topic, &format!("{topic}-group"), records, Duration::from_secs(90))
            .start()?;
    producer.wait_acked((records / 4) as usize, Duration::from_secs(120))?;
    disrupt()?;
    let produced = producer.wait(Duration::from_secs(300))?;
    let consumed = consumer.wait(Duration::from_secs(300))?;
    ensure!(
        produced.acked.len() as u64 == records,
        "{} of {records} acknowledged; errors {:?}",
        produced.acked.len(),
        produced.errors
    );
    let missing = consumed.missing(records);
    ensure!(
        missing.is_empty(),
        "the consumer group never saw {} acknowledged records, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let on_kafka = NumberedConsumer::reading(
        &env.kafka.bootstrap(),
        topic,
        &format!("{topic}-audit"),
        records,
        Duration::from_secs(20),
    )
    .start()?
    .wait(Duration::from_secs(120))?;
    ensure!(on_kafka.missing(records).is_empty(), "acknowledged records missing from Kafka");
    println!(
        "{topic}: {records} acked, producer longest pause {} ms, consumer longest pause {} ms, {} re-read",
        produced.max_ack_gap_ms,
        consumed.max_poll_gap_ms,
        consumed.duplicates()
    );
    Ok(())
}

fn killed_node_drops_out_and_clients_lose_nothing(env: &Env) -> Result<()> {
    under_load(env, "cluster-kill", 4000, || {
        env.nodes.lock().unwrap()[1].as_mut().context("node 2 is not running")?.kill();
        let dropped = std::time::Instant::now();
        env.wait_members(0, &["gw-1", "gw-3"])?;
        println!("killed node dropped out of the membership after {:?}", dropped.elapsed());
        env.start_node(1)?;
        env.wait_members(0, &["gw-1", "gw-2", "gw-3"])?;
        let audit = std::fs::read_to_string(env.audit.path().join("gw-1.jsonl"))?;
        let events: Vec<Value> = audit
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|e: &Value| e["type"] == "MEMBERSHIP" && e["nodeId"] == "gw-2")
            .collect();
        ensure!(
            events.iter().any(|e| e["event"] == "left") && events.iter().any(|e| e["event"] == "joined"),
            "gw-1's audit log: {events:?}"
        );
        Ok(())
    })
}

fn rolling_restart_under_load_loses_nothing(env: &Env) -> Result<()> {
    under_load(env, "cluster-roll", 4000, || {
        for node in 0..3 {
            let process = env.nodes.lock().unwrap()[node].take();
            if let Some(mut process) = process {
                let status = process.terminate(Duration::from_secs(60));
                ensure!(status.is_some_and(|s| s.success()), "node {node} exited with {status:?}");
            }
            env.wait_members((node + 1) % 3, &[["gw-2", "gw-3"], ["gw-1", "gw-3"], ["gw-1", "gw-2"]][node])?;
            env.start_node(node)?;
            env.wait_members(node, &["gw-1", "gw-2", "gw-3"])?;
        }
        Ok(())
    })
}

fn switchover_on_one_node_is_applied_by_all(env: &Env) -> Result<()> {
    for node in 0..3 {
        env.wait_members(node, &["gw-1", "gw-2", "gw-3"])?;
    }
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = agent
        .post(&env.admin(0, "/admin/v1/routes/main/switchover"))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .header("Content-Type", "application/json")
        .send(json!({"to": "kafka-again"}).to_string())?;
    let body = response.body_mut().read_to_string()?;
    ensure!(response.status() == 200, "switchover on node 1: {body}");
    for node in 0..3 {
        poll::try_poll_until(WAIT, || {
            let routes: Value = serde_json::from_str(
                &ureq::get(&env.admin(node, "/admin/v1/routes")).call()?.body_mut().read_to_string()?,
            )?;
            Ok((routes[0]["domain"] == "kafka-again").then_some(()))
        })
        .with_context(|| format!("node {} never applied the switchover", node + 1))?;
    }
    Ok(())
}

/// A command as a node would write it, but signed by nobody (or with a made-up MAC), written
/// straight to the cluster topic of the backing Kafka: no node applies it, every node counts it.
fn forged_commands_are_not_applied(env: &Env) -> Result<()> {
    for node in 0..3 {
        env.wait_members(node, &["gw-1", "gw-2", "gw-3"])?;
    }
    let before: Vec<String> = (0..3).map(|n| env.route_domain(n)).collect::<Result<_>>()?;
    let to = if before[0] == "kafka" { "kafka-again" } else { "kafka" };
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let forged = |id: &str| {
        json!({"id": id, "issuedAtMs": now, "origin": "gw-9", "route": "main", "request": {"to": to}}).to_string()
    };
    let bootstrap = env.kafka.bootstrap();
    kcat::produce(&bootstrap, CLUSTER_TOPIC, &[forged("forged-1")])?;
    let made_up_mac = "ab".repeat(32);
    kcat::produce_with_headers(&bootstrap, CLUSTER_TOPIC, &[("switchyard-mac", &made_up_mac)], &[forged("forged-2")])?;
    env.wait_rejected("command", "unsigned")?;
    env.wait_rejected("command", "bad_signature")?;
    // Had either been applied, it would have been by now: the rejections came after them.
    std::thread::sleep(Duration::from_secs(2));
    let after: Vec<String> = (0..3).map(|n| env.route_domain(n)).collect::<Result<_>>()?;
    ensure!(after == before, "a forged command moved the route: {before:?} -> {after:?}");
    let audit = std::fs::read_to_string(env.audit.path().join("gw-2.jsonl"))?;
    ensure!(
        audit.lines().any(|l| l.contains("CLUSTER_REJECTED") && l.contains("bad_signature")),
        "gw-2's audit log lacks the rejection"
    );
    ensure!(!audit.contains(SECRET), "the secret reached the audit log");
    Ok(())
}

/// A stranger joins the cluster's group with the client id a node would use, unsigned: it is
/// counted, never listed as a member, and its address is never advertised.
fn forged_member_is_never_listed_or_advertised(env: &Env) -> Result<()> {
    let _stranger = kcat::join_group(&env.kafka.bootstrap(), CLUSTER_GROUP, CLUSTER_TOPIC, "switchyard|x|6.6.6.6|-")?;
    env.wait_rejected("member", "unsigned")?;
    for _ in 0..3 {
        for node in 0..3 {
            let view = env.cluster_view(node)?;
            ensure!(!view.to_string().contains("6.6.6.6"), "node {} shows the stranger: {view}", node + 1);
            ensure!(env.member_ids(node)? == ["gw-1", "gw-2", "gw-3"], "node {} members changed", node + 1);
            let mapping = kcat_mapping(&format!("{}:{}", node_ip(node), env.ports.base))?;
            ensure!(mapping.iter().all(|(_, host)| host != "6.6.6.6"), "node {} advertises {mapping:?}", node + 1);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Ok(())
}

/// Through a route, Metadata lists no `_switchyard-` topic and FindCoordinator for the cluster's
/// group is refused (the connection closed), while an ordinary group's lookup works.
fn clients_see_neither_the_cluster_topic_nor_its_group(env: &Env) -> Result<()> {
    let direct = kcat::metadata(&env.kafka.bootstrap())?;
    ensure!(direct.contains(CLUSTER_TOPIC), "the backing cluster has no {CLUSTER_TOPIC}:\n{direct}");
    let gateway = SocketAddr::from((node_ip(0), env.ports.base));
    let through = kcat::metadata(&gateway.to_string())?;
    ensure!(!through.contains("_switchyard-"), "a gateway client sees the cluster topic:\n{through}");
    let mut wire = KafkaWire::connect(gateway, WAIT)?;
    let named = wire.send(&MetadataRequest::default().with_topics(None), 12)?;
    ensure!(
        named.topics.iter().all(|t| !t.name.as_ref().is_some_and(|n| n.0.starts_with("_switchyard-"))),
        "Metadata v12 lists the cluster topic"
    );
    let lookup = |key: &'static str| {
        let mut wire = KafkaWire::connect(gateway, WAIT)?;
        wire.send(&FindCoordinatorRequest::default().with_coordinator_keys(vec![StrBytes::from_static_str(key)]), 4)
    };
    let ordinary = lookup("an-ordinary-group")?;
    ensure!(ordinary.coordinators.first().is_some_and(|c| c.error_code == 0), "ordinary lookup: {ordinary:?}");
    let refused = lookup(CLUSTER_GROUP);
    ensure!(refused.is_err(), "FindCoordinator for the cluster's group was answered: {refused:?}");
    Ok(())
}

/// The last real (signed) command on the cluster topic, written again as it was: every node
/// refuses it as a replay.
fn a_replayed_real_command_is_refused(env: &Env) -> Result<()> {
    let bootstrap = env.kafka.bootstrap();
    let (headers, value) = kcat::last_record(&bootstrap, CLUSTER_TOPIC)?;
    let mac = headers.strip_prefix("switchyard-mac=").with_context(|| format!("last command's headers: {headers}"))?;
    ensure!(value.contains("\"origin\":\"gw-1\""), "the last command is not gw-1's: {value}");
    kcat::produce_with_headers(&bootstrap, CLUSTER_TOPIC, &[("switchyard-mac", mac)], &[value])?;
    env.wait_rejected("command", "replayed")
}

fn external_load_balancing_behind_haproxy(env: &Env) -> Result<()> {
    let ports = Ports { base: env.ports.external_base, ..env.ports };
    // A second cluster of three nodes, all advertising the load balancer.
    let mut external = Vec::new();
    for node in 0..3 {
        let yaml = node_config(
            &env.kafka,
            Ports { admin: free_port_block(1), ..ports },
            node,
            "cluster-ext",
            false,
            ports.base,
        );
        external.push(start_gateway(&yaml, &[SocketAddr::from((node_ip(node), ports.base))])?);
    }
    let _haproxy = HaproxyProcess::start(&HaproxySpec {
        frontend_ip: LOAD_BALANCER,
        ports: ports.base..=ports.base + 3,
        backends: (0..3).map(node_ip).collect(),
        source_ip: None,
        header: ProxyHeader::None,
    })?;
    let bootstrap = format!("{LOAD_BALANCER}:{}", ports.base);
    let mapping = kcat_mapping(&bootstrap)?;
    ensure!(
        mapping.len() == 3 && mapping.iter().all(|(_, host)| host == "127.0.0.9"),
        "metadata through the balancer: {mapping:?}"
    );
    let sent: Vec<String> = (0..50).map(|i| format!("via-haproxy-{i}")).collect();
    kcat::produce(&bootstrap, "external-lb", &sent)?;
    let read = kcat::consume(&bootstrap, "external-lb", sent.len(), WAIT)?;
    ensure!(read == sent, "read back {} of {} through HAProxy", read.len(), sent.len());
    let by_java = java::console_consume(&bootstrap, "external-lb", None, sent.len(), WAIT)?;
    ensure!(by_java.len() == sent.len(), "the Java consumer read {} through HAProxy", by_java.len());
    Ok(())
}
