//! Real Kafka clients through the gateway, against a real 3-broker Kafka.
//!
//! Java (console tools, performance tools, admin, transactions, consumer groups) and librdkafka
//! (kcat) clients are pointed only at the gateway's route, and so is every client generation:
//! Java clients 4.x, 3.x and 2.x (each with only its own jars) and franz-go run the same
//! workout. Every test uses its own topics and groups on one shared cluster; the test that stops
//! a broker runs last.

mod common;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use common::{run_suite, start_gateway, TestGateway};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FetchRequest, FindCoordinatorRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use switchyard_testkit::clients::{self, Workout};
use switchyard_testkit::{
    end_offsets, java, kcat, poll, process, ClusterSpec, ConsumeOptions, KafkaCluster, KafkaWire, ProducerPerfOptions,
};

struct Env {
    cluster: Mutex<KafkaCluster>,
    gateway: TestGateway,
    /// Real broker ports, which no client may ever be told.
    broker_ports: Vec<u16>,
    /// Real KRaft controller ports, which no client may be told either.
    controller_ports: Vec<u16>,
    /// The cluster's own bootstrap, for baselines that bypass the gateway on purpose.
    direct_bootstrap: String,
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
            ("java_client_4_4_full_workout", java_client_4_4_full_workout),
            ("java_client_3_9_full_workout", java_client_3_9_full_workout),
            ("java_client_2_8_full_workout", java_client_2_8_full_workout),
            ("franz_go_full_workout", franz_go_full_workout),
            (
                "admin_quorum_and_broker_configs_hide_real_addresses",
                admin_quorum_and_broker_configs_hide_real_addresses,
            ),
            ("kcat_one_record_per_request_keeps_pace_with_direct", kcat_one_record_per_request_keeps_pace_with_direct),
            ("producer_perf_with_gateway_max_in_flight_1_and_2", producer_perf_with_gateway_max_in_flight_1_and_2),
            ("sigterm_answers_in_flight_requests_then_exits_0", sigterm_answers_in_flight_requests_then_exits_0),
            ("zz_broker_stopped_under_load", zz_broker_stopped_under_load),
        ],
        || {
            let cluster = KafkaCluster::start(ClusterSpec::three())?;
            let gateway = start_gateway(&cluster, "")?;
            let broker_ports = cluster.brokers().iter().map(|(_, addr)| addr.port()).collect();
            let controller_ports = cluster.controllers().iter().map(|(_, addr)| addr.port()).collect();
            let direct_bootstrap = cluster.bootstrap();
            Ok(Env { cluster: Mutex::new(cluster), gateway, broker_ports, controller_ports, direct_bootstrap })
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

/// Records each client generation produces and consumes in its workout.
const WORKOUT_RECORDS: usize = 1_000;

/// The workout of one client generation, through the gateway: every printed address must be a
/// gateway port (the node lines each the port of their node id), and everything must arrive.
fn check_workout(env: &Env, workout: &Workout) -> Result<()> {
    let summary = format!(
        "{}: {} nodes, produced {:?}, consumed {:?} distinct, group committed {:?}, read_committed {:?}",
        workout.client_version,
        workout.nodes.len(),
        workout.produced,
        workout.consumed_distinct,
        workout.group_committed,
        workout.read_committed
    );
    println!("{summary}");
    ensure!(workout.nodes.len() == 3, "{summary}: expected 3 nodes\n{}", workout.output.describe());
    for (id, addr) in &workout.nodes {
        ensure!(
            *addr == format!("127.0.0.1:{}", env.gateway.port_of(*id)),
            "{summary}: node {id} given as {addr}, not its gateway port {}",
            env.gateway.port_of(*id)
        );
    }
    let gateway_ports = env.gateway.ports();
    for (addr, line) in &workout.addresses {
        let port = clients::parse_host_port(addr).map(|(_, port)| port);
        ensure!(
            addr.starts_with("127.0.0.1:") && port.is_some_and(|p| gateway_ports.contains(&p)),
            "{summary}: the client was given {addr}, which is not a gateway port ({gateway_ports:?}), in {line:?}"
        );
    }
    assert_no_broker_port(env, &workout.client_version, &workout.output.stdout)?;
    workout.ensure_complete(WORKOUT_RECORDS as u64)
}

fn java_workout(env: &Env, version: &str, name: &str) -> Result<()> {
    let started = Instant::now();
    let workout = clients::java_workout(version, &env.gateway.bootstrap(), name, WORKOUT_RECORDS)?;
    ensure!(workout.client_version == version, "asked for kafka-clients {version}, ran {:?}", workout.client_version);
    check_workout(env, &workout)?;
    println!("kafka-clients {version} workout through the gateway took {:.1?}", started.elapsed());
    Ok(())
}

fn java_client_4_4_full_workout(env: &Env) -> Result<()> {
    java_workout(env, clients::JAVA_CLIENT_4, "workout-java-4")
}

fn java_client_3_9_full_workout(env: &Env) -> Result<()> {
    java_workout(env, clients::JAVA_CLIENT_3, "workout-java-3")
}

fn java_client_2_8_full_workout(env: &Env) -> Result<()> {
    java_workout(env, clients::JAVA_CLIENT_2, "workout-java-2")
}

fn franz_go_full_workout(env: &Env) -> Result<()> {
    let started = Instant::now();
    let Some(workout) = clients::go_workout(&env.gateway.bootstrap(), "workout-franz-go", WORKOUT_RECORDS)? else {
        println!("SKIPPED franz_go_full_workout: `go` is not installed, so franz-go cannot be built");
        return Ok(());
    };
    ensure!(workout.client_version.starts_with("franz-go v1."), "ran {:?}", workout.client_version);
    check_workout(env, &workout)?;
    println!("{} workout through the gateway took {:.1?}", workout.client_version, started.elapsed());
    Ok(())
}

/// The Admin client's quorum and broker config views, through the gateway, are useful and show
/// no real broker or controller address (listeners, advertised listeners, quorum voters and
/// DescribeQuorum endpoints all name them).
fn admin_quorum_and_broker_configs_hide_real_addresses(env: &Env) -> Result<()> {
    let output = clients::admin_probe(clients::JAVA_CLIENT_4, &env.gateway.bootstrap())?;
    let stdout = &output.stdout;
    let lines: Vec<Vec<&str>> = stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    let leader = lines.iter().find_map(|f| match f.as_slice() {
        ["quorum_leader", id, ..] => id.parse::<i32>().ok(),
        _ => None,
    });
    let voters = lines.iter().filter(|f| f.first() == Some(&"quorum_voter")).count();
    let configs = lines.iter().filter(|f| f.first() == Some(&"config")).count();
    println!(
        "AdminProbe through the gateway: quorum leader {leader:?}, {voters} voters, {configs} broker config entries"
    );
    ensure!(leader.is_some_and(|id| id >= 0), "no quorum leader in:\n{}", output.describe());
    ensure!(voters == 3, "{voters} quorum voters, expected 3:\n{}", output.describe());
    for id in 1..=3 {
        let useful = ["log.dirs", "num.partitions"]
            .iter()
            .any(|name| stdout.lines().any(|l| l.starts_with(&format!("config {id} {name}="))));
        ensure!(useful, "broker {id}'s configs lack log.dirs and num.partitions:\n{}", output.describe());
    }

    let everything = format!("{stdout}\n{}", output.stderr);
    let real: Vec<u16> = env.broker_ports.iter().chain(&env.controller_ports).copied().collect();
    let mut leaks: Vec<&str> = everything.lines().filter(|line| mentions_real_port(line, &real)).collect();
    leaks.dedup();
    ensure!(
        leaks.is_empty(),
        "the Admin client was shown real broker/controller addresses (ports {real:?}) in {} lines:\n{}",
        leaks.len(),
        leaks.join("\n")
    );
    Ok(())
}

/// Whether `line` names one of `ports` as an address (`host:port`, `…://host:port`, `id@host:port`)
/// or as the value of a port setting.
fn mentions_real_port(line: &str, ports: &[u16]) -> bool {
    let bytes = line.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        if !bytes[start].is_ascii_digit() {
            start += 1;
            continue;
        }
        let end = start + bytes[start..].iter().take_while(|b| b.is_ascii_digit()).count();
        let number: Option<u16> = line[start..end].parse().ok();
        if number.is_some_and(|n| ports.contains(&n)) {
            let before = line[..start].trim_end_matches(' ');
            if before.ends_with(':') || (before.ends_with('=') && before.to_ascii_lowercase().contains("port")) {
                return true;
            }
        }
        start = end;
    }
    false
}

/// librdkafka with one record per request pipelines thousands of Produce requests on each
/// connection. Through the gateway that must neither stall nor cost more than twice the time
/// straight to the brokers.
fn kcat_one_record_per_request_keeps_pace_with_direct(env: &Env) -> Result<()> {
    const RECORDS: usize = 200_000;
    const SLACK: Duration = Duration::from_secs(2);
    let config = [("linger.ms", "0"), ("batch.num.messages", "1")];
    // Replication factor 1: with 3 replicas a one-record request waits for two follower
    // fetches, and 200,000 of them take minutes even straight to the brokers.
    java::create_topic(&env.gateway.bootstrap(), "kcat-pipelined-direct", 3, 1)?;
    java::create_topic(&env.gateway.bootstrap(), "kcat-pipelined-gateway", 3, 1)?;

    let direct = kcat::produce_numbered(
        &env.direct_bootstrap,
        "kcat-pipelined-direct",
        "direct",
        RECORDS,
        &config,
        Duration::from_secs(180),
    )
    .map_err(|e| anyhow!("the direct baseline: {}", abridged(&e, 30)))?;
    let limit = direct * 2 + SLACK;
    println!("kcat: {RECORDS} records one per request straight to the brokers in {direct:.1?}");
    // Past the limit the test fails anyway; a little longer tells a slow gateway from a stuck one.
    let through = kcat::produce_numbered(
        &env.gateway.bootstrap(),
        "kcat-pipelined-gateway",
        "gateway",
        RECORDS,
        &config,
        limit * 2 + Duration::from_secs(10),
    )
    .map_err(|e| anyhow!("through the gateway (direct took {direct:.1?}): {}", abridged(&e, 30)))?;
    println!("kcat: {RECORDS} records one per request through the gateway in {through:.1?} (limit {limit:.1?})");

    for topic in ["kcat-pipelined-direct", "kcat-pipelined-gateway"] {
        let stored: i64 = end_offsets(&env.direct_bootstrap, topic)?.iter().map(|(_, offset)| offset).sum();
        ensure!(stored == RECORDS as i64, "{topic} holds {stored} of {RECORDS} records");
    }
    ensure!(
        through <= limit,
        "through the gateway took {through:.1?}, more than twice the direct {direct:.1?} plus {SLACK:?}"
    );
    Ok(())
}

/// ProducerPerformance with tiny batches (one record per request, 5 in flight per connection)
/// through gateways that allow only 1 and 2 requests in flight per connection: the gateway holds
/// the client back, and everything still completes.
fn producer_perf_with_gateway_max_in_flight_1_and_2(env: &Env) -> Result<()> {
    const RECORDS: u64 = 20_000;
    for max_in_flight in [1, 2] {
        let topic = format!("perf-max-in-flight-{max_in_flight}");
        // Replication factor 1, as in the kcat test: one-record requests waiting for followers
        // are slow even straight to the brokers, and this is about the gateway's pipeline.
        java::create_topic(&env.gateway.bootstrap(), &topic, 3, 1)?;
        let cluster = env.cluster.lock().unwrap();
        let gateway = common::start_gateway(&cluster, &format!("proxy:\n  maxInFlightRequests: {max_in_flight}\n"))?;
        drop(cluster);
        let mut opts = ProducerPerfOptions::new(gateway.bootstrap(), topic.as_str(), RECORDS);
        opts.producer_props
            .extend([("batch.size".to_owned(), "100".to_owned()), ("linger.ms".to_owned(), "0".to_owned())]);
        // Every record is queued at the start, so each waits for the whole run: a stalled
        // gateway shows as records expiring after delivery.timeout.ms (120 s), reported with
        // ProducerPerformance's errors before this limit kills it.
        opts.timeout = Duration::from_secs(150);
        let started = Instant::now();
        let (produced, output) = java::producer_perf_background(&opts)?.wait_with_output().map_err(|e| {
            anyhow!(
                "maxInFlightRequests {max_in_flight}: {}\n--- gateway log (end) ---\n{}",
                abridged(&e, 30),
                gateway.process.log_tail()
            )
        })?;
        println!(
            "ProducerPerformance through a gateway with maxInFlightRequests {max_in_flight}: {} records, \
             {:.0} records/s, p99 {} ms, {:.1?} in all",
            produced.records,
            produced.records_per_sec,
            produced.p99_ms,
            started.elapsed()
        );
        ensure!(
            produced.records == RECORDS,
            "maxInFlightRequests {max_in_flight}: ProducerPerformance reported {} of {RECORDS} records\n\
             --- ProducerPerformance stderr (end) ---\n{}\n--- gateway log (end) ---\n{}",
            produced.records,
            process::tail(&output.stderr, 20),
            gateway.process.log_tail()
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
    for port in env.broker_ports.iter().chain(&env.controller_ports) {
        let leaked = text.lines().find(|line| mentions_real_port(line, &[*port]));
        ensure!(leaked.is_none(), "{what} leaked real broker/controller port {port} in {leaked:?}:\n{text}");
    }
    Ok(())
}

/// `error`'s message with only its first and last `keep` lines: a client stuck for a minute logs
/// thousands of near-identical lines.
fn abridged(error: &anyhow::Error, keep: usize) -> String {
    let message = format!("{error:#}");
    let lines: Vec<&str> = message.lines().collect();
    if lines.len() <= 2 * keep {
        return message;
    }
    format!(
        "{}\n[… {} lines left out …]\n{}",
        lines[..keep].join("\n"),
        lines.len() - 2 * keep,
        lines[lines.len() - keep..].join("\n")
    )
}

fn sorted(values: &[String]) -> BTreeSet<String> {
    values.iter().cloned().collect()
}
