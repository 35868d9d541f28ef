//! Real Kafka clients through the gateway, against a real 3-broker Kafka.
//!
//! Java (console tools, performance tools, admin, transactions, consumer groups) and librdkafka
//! (kcat) clients are pointed only at the gateway's route. Every test uses its own topics and
//! groups on one shared cluster; the test that stops a broker runs last.

mod common;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::{run_suite, start_gateway, TestGateway};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FetchRequest, FindCoordinatorRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use switchyard_testkit::{java, kcat, poll, ClusterSpec, ConsumeOptions, KafkaCluster, KafkaWire, ProducerPerfOptions};

struct Env {
    cluster: Mutex<KafkaCluster>,
    gateway: TestGateway,
    /// Real broker ports, which no client may ever be told.
    broker_ports: Vec<u16>,
}

fn main() {
    run_suite(
        &[
            ("java_console_clients_round_trip", java_console_clients_round_trip),
            ("java_performance_tools_through_gateway", java_performance_tools_through_gateway),
            ("librdkafka_and_java_interoperate", librdkafka_and_java_interoperate),
            ("consumer_group_commits_leaves_and_rejoins", consumer_group_commits_leaves_and_rejoins),
            ("transactional_producer_commits", transactional_producer_commits),
            ("admin_creates_and_deletes_topics", admin_creates_and_deletes_topics),
            ("no_real_broker_address_reaches_clients", no_real_broker_address_reaches_clients),
            ("sigterm_answers_in_flight_requests_then_exits_0", sigterm_answers_in_flight_requests_then_exits_0),
            ("zz_broker_stopped_under_load", zz_broker_stopped_under_load),
        ],
        || {
            let cluster = KafkaCluster::start(ClusterSpec::three())?;
            let gateway = start_gateway(&cluster, "")?;
            let broker_ports = cluster.brokers().iter().map(|(_, addr)| addr.port()).collect();
            Ok(Env { cluster: Mutex::new(cluster), gateway, broker_ports })
        },
    );
}

const WAIT: Duration = Duration::from_secs(30);

fn numbered(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i:05}")).collect()
}

fn create_rf3_topic(env: &Env, topic: &str, partitions: i32) -> Result<()> {
    java::create_topic(&env.gateway.bootstrap(), topic, partitions, 3)
}

fn java_console_clients_round_trip(env: &Env) -> Result<()> {
    let gw = env.gateway.bootstrap();
    create_rf3_topic(env, "console-rt", 3)?;
    let sent = numbered("console", 200);
    java::console_produce(&gw, "console-rt", &sent, &[])?;
    let got = java::console_consume(&gw, "console-rt", Some("console-rt-group"), sent.len(), WAIT)?;
    ensure!(sorted(&got) == sorted(&sent), "consumed {} of {} records, or different ones", got.len(), sent.len());
    Ok(())
}

fn java_performance_tools_through_gateway(env: &Env) -> Result<()> {
    let gw = env.gateway.bootstrap();
    create_rf3_topic(env, "perf", 6)?;
    let records = 50_000;
    let mut opts = ProducerPerfOptions::new(gw.clone(), "perf", records);
    opts.record_size = 1024;
    let produced = java::producer_perf(&opts)?;
    ensure!(produced.records == records, "ProducerPerformance reported {} of {records} records", produced.records);
    let consumed = java::consumer_perf(&gw, "perf", records, "perf-group", WAIT)?;
    ensure!(consumed.messages >= records, "ConsumerPerformance read {} of {records} records", consumed.messages);
    println!(
        "produce {:.1} MB/s (p99 {} ms), consume {:.1} MB/s through the gateway",
        produced.mb_per_sec, produced.p99_ms, consumed.mb_per_sec
    );
    Ok(())
}

fn librdkafka_and_java_interoperate(env: &Env) -> Result<()> {
    let gw = env.gateway.bootstrap();
    create_rf3_topic(env, "interop", 3)?;
    let from_kcat = numbered("kcat", 100);
    kcat::produce(&gw, "interop", &from_kcat)?;
    let from_java = numbered("java", 100);
    java::console_produce(&gw, "interop", &from_java, &[])?;
    let everything = sorted(&[from_kcat.clone(), from_java.clone()].concat());

    let by_kcat = kcat::consume(&gw, "interop", everything.len(), WAIT)?;
    ensure!(sorted(&by_kcat) == everything, "kcat read {} of {} records", by_kcat.len(), everything.len());
    let by_java = java::console_consume(&gw, "interop", None, everything.len(), WAIT)?;
    ensure!(sorted(&by_java) == everything, "the Java consumer read {} of {} records", by_java.len(), everything.len());
    let by_kcat_group = kcat::consume_group(&gw, "interop-kcat-group", "interop", everything.len(), WAIT)?;
    ensure!(
        sorted(&by_kcat_group) == everything,
        "a kcat group member read {} of {} records",
        by_kcat_group.len(),
        everything.len()
    );
    Ok(())
}

fn consumer_group_commits_leaves_and_rejoins(env: &Env) -> Result<()> {
    let gw = env.gateway.bootstrap();
    create_rf3_topic(env, "group-rejoin", 1)?;
    let sent = numbered("group", 40);
    java::console_produce(&gw, "group-rejoin", &sent, &[])?;

    // One record per poll, so the offset committed on leaving is exactly what was read.
    let first_half = ConsumeOptions::new(20, WAIT).group("rejoin-group").property("max.poll.records", "1");
    let first = java::console_consume_with(&gw, "group-rejoin", &first_half)?;
    ensure!(first == sent[..20], "first member read {first:?}");

    let described = java::describe_group(&gw, "rejoin-group")?;
    ensure!(
        described.contains("group-rejoin") && described.contains(" 20 "),
        "group offsets after leaving:\n{described}"
    );

    let rejoined =
        java::console_consume_with(&gw, "group-rejoin", &ConsumeOptions::new(20, WAIT).group("rejoin-group"))?;
    ensure!(rejoined == sent[20..], "after rejoining the group read {rejoined:?}, expected the last 20 records only");
    Ok(())
}

fn transactional_producer_commits(env: &Env) -> Result<()> {
    let gw = env.gateway.bootstrap();
    create_rf3_topic(env, "txn", 3)?;
    let records = 5_000;
    let mut opts = ProducerPerfOptions::new(gw.clone(), "txn", records);
    opts.transactional_id = Some("switchyard-test-txn".into());
    opts.transaction_duration_ms = Some(200);
    let produced = java::producer_perf(&opts)?;
    ensure!(produced.records == records, "transactional producer sent {} of {records}", produced.records);
    let read = java::console_consume_with(&gw, "txn", &ConsumeOptions::new(records as usize, WAIT).read_committed())?;
    ensure!(read.len() == records as usize, "read_committed consumer saw {} of {records} records", read.len());
    Ok(())
}

fn admin_creates_and_deletes_topics(env: &Env) -> Result<()> {
    let gw = env.gateway.bootstrap();
    create_rf3_topic(env, "admin-made", 4)?;
    ensure!(java::list_topics(&gw)?.contains(&"admin-made".to_string()), "created topic is not listed");
    java::delete_topic(&gw, "admin-made")?;
    poll::try_poll_until(WAIT, || Ok((!java::list_topics(&gw)?.contains(&"admin-made".to_string())).then_some(())))
        .context("deleted topic is still listed")
}

fn no_real_broker_address_reaches_clients(env: &Env) -> Result<()> {
    let gw = env.gateway.bootstrap();
    create_rf3_topic(env, "leak-check", 3)?;

    let listing = kcat::metadata(&gw)?;
    let brokers: Vec<&str> = listing.lines().filter(|l| l.trim_start().starts_with("broker ")).collect();
    ensure!(brokers.len() == 3, "kcat -L listed {} brokers:\n{listing}", brokers.len());
    for port in env.gateway.ports().iter().skip(1) {
        ensure!(
            listing.contains(&format!("127.0.0.1:{port}")),
            "kcat -L does not list gateway port {port}:\n{listing}"
        );
    }
    assert_no_broker_port(env, "kcat -L", &listing)?;

    let described = java::describe_cluster(&gw)?;
    ensure!(described.nodes.len() == 3, "describeCluster listed {:?}", described.nodes);
    for node in described.nodes.iter().chain(described.controller.iter()) {
        ensure!(
            node.host == "127.0.0.1" && node.port == env.gateway.port_of(node.id),
            "describeCluster gave node {} as {}:{}, not its gateway port {}",
            node.id,
            node.host,
            node.port,
            env.gateway.port_of(node.id)
        );
    }

    let mut wire = KafkaWire::connect(env.gateway.bootstrap_addr(), WAIT)?;
    let versions = wire.send(&ApiVersionsRequest::default(), 3)?;
    for api in &versions.api_keys {
        if let Ok(key @ (ApiKey::Metadata | ApiKey::FindCoordinator | ApiKey::Fetch | ApiKey::Produce)) =
            ApiKey::try_from(api.api_key)
        {
            ensure!(api.max_version <= key.valid_versions().max, "{key:?} advertised up to v{}", api.max_version);
        }
    }
    let metadata = wire.send(&MetadataRequest::default(), 12)?;
    for broker in &metadata.brokers {
        ensure!(i32::from(env.gateway.port_of(broker.node_id.0)) == broker.port, "metadata v12 broker {broker:?}");
    }
    for version in [3, 4, 6] {
        let group = StrBytes::from_static_str("leak-check-group");
        let request = if version >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![group])
        } else {
            FindCoordinatorRequest::default().with_key(group)
        };
        let found = poll::try_poll_until(WAIT, || {
            let answer = wire.send(&request, version)?;
            let (id, port) = match answer.coordinators.first() {
                Some(c) if version >= 4 => (c.node_id.0, c.port),
                _ => (answer.node_id.0, answer.port),
            };
            Ok((id >= 0).then_some((id, port)))
        })?;
        ensure!(
            found.1 == i32::from(env.gateway.port_of(found.0)),
            "FindCoordinator v{version} gave coordinator {} at port {}",
            found.0,
            found.1
        );
    }
    Ok(())
}

/// A long-poll Fetch is in flight when the gateway gets SIGTERM: the client still gets its
/// answer, new connections are refused at once, and the gateway exits 0.
fn sigterm_answers_in_flight_requests_then_exits_0(env: &Env) -> Result<()> {
    create_rf3_topic(env, "drain", 1)?;
    let cluster = env.cluster.lock().unwrap();
    let mut gateway = common::start_gateway(&cluster, "proxy:\n  drainTimeoutMs: 20000\n")?;
    drop(cluster);
    let leader = poll::try_poll_until(WAIT, || {
        let metadata = switchyard_testkit::fetch_metadata(gateway.bootstrap_addr(), WAIT)?;
        Ok(metadata.topics.iter().flat_map(|t| &t.partitions).map(|p| p.leader_id.0).find(|id| *id >= 0))
    })?;
    let leader_addr = std::net::SocketAddr::from(([127, 0, 0, 1], gateway.port_of(leader)));
    let mut wire = KafkaWire::connect(leader_addr, WAIT)?;
    let wait_ms = 4_000;
    let fetch =
        FetchRequest::default().with_max_wait_ms(wait_ms).with_min_bytes(1).with_max_bytes(1 << 20).with_topics(vec![
            FetchTopic::default().with_topic(TopicName(StrBytes::from_static_str("drain"))).with_partitions(vec![
                FetchPartition::default().with_partition(0).with_fetch_offset(0).with_partition_max_bytes(1 << 20),
            ]),
        ]);
    let long_poll = std::thread::spawn(move || wire.send(&fetch, 12));
    std::thread::sleep(Duration::from_millis(500)); // the Fetch is now parked at the broker
    let started = std::time::Instant::now();
    let exited = std::thread::spawn(move || (gateway.process.terminate(Duration::from_secs(30)), gateway));

    poll::poll_until(WAIT, || std::net::TcpStream::connect(leader_addr).is_err().then_some(()))
        .context("the gateway still accepts connections after SIGTERM")?;
    let answer = long_poll.join().expect("fetch thread").context("the in-flight Fetch was not answered")?;
    ensure!(answer.responses.len() == 1, "unexpected Fetch answer {answer:?}");
    let (status, gateway) = exited.join().expect("terminate thread");
    ensure!(
        status.is_some_and(|s| s.success()),
        "gateway exit status {status:?}; log:\n{}",
        gateway.process.log_tail()
    );
    ensure!(started.elapsed() < Duration::from_secs(20), "shutdown took {:?}", started.elapsed());
    Ok(())
}

fn zz_broker_stopped_under_load(env: &Env) -> Result<()> {
    let gw = env.gateway.bootstrap();
    create_rf3_topic(env, "failover", 3)?;
    let records = 30_000;
    let mut opts = ProducerPerfOptions::new(gw.clone(), "failover", records);
    opts.throughput = 3_000;
    opts.producer_props.push(("delivery.timeout.ms".into(), "120000".into()));
    let load = java::producer_perf_background(&opts)?;

    std::thread::sleep(Duration::from_secs(3)); // let the load reach a steady state
    let victim = 1;
    env.cluster.lock().unwrap().stop_broker(victim)?;
    let during = java::console_consume(&gw, "failover", Some("failover-live"), 100, WAIT)?;
    ensure!(
        during.len() == 100,
        "a new consumer read {} records through the gateway with broker {victim} down",
        during.len()
    );

    let produced = load.wait()?;
    env.cluster.lock().unwrap().start_broker(victim)?;
    ensure!(
        produced.records == records,
        "producer completed {} of {records} records across the broker stop",
        produced.records
    );
    let consumed = java::consumer_perf(&gw, "failover", records, "failover-check", WAIT)?;
    ensure!(consumed.messages >= records, "read back {} of {records} acknowledged records", consumed.messages);
    Ok(())
}

fn assert_no_broker_port(env: &Env, what: &str, text: &str) -> Result<()> {
    for port in &env.broker_ports {
        ensure!(!text.contains(&format!(":{port}")), "{what} leaked real broker port {port}:\n{text}");
    }
    Ok(())
}

fn sorted(values: &[String]) -> BTreeSet<String> {
    values.iter().cloned().collect()
}
