//! Smoke tests for the test kit itself: a real single-node cluster exercised by every client the
//! kit wraps, and a three-node cluster surviving a broker restart.
//!
//! Run with `cargo test -p switchyard-testkit -- --nocapture --test-threads=1`.

use std::time::{Duration, Instant};

use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
use kafka_protocol::protocol::StrBytes;
use switchyard_testkit::java::{self, ProducerPerfOptions};
use switchyard_testkit::{fetch_metadata, kcat, ClusterSpec, KafkaCluster, KafkaWire};

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let value = f();
    eprintln!("[smoke] {what}: {:.1?}", start.elapsed());
    value
}

fn broker_ids(cluster: &KafkaCluster) -> Vec<i32> {
    let metadata = fetch_metadata(cluster.first_bootstrap(), Duration::from_secs(5)).expect("metadata");
    let mut ids: Vec<i32> = metadata.brokers.iter().map(|b| b.node_id.0).collect();
    ids.sort();
    ids
}

/// A typed round trip (ApiVersions has the odd v0 response header) and a garbage frame, which
/// the broker answers by closing the connection.
fn check_wire(cluster: &KafkaCluster) {
    let timeout = Duration::from_secs(5);
    let mut wire = KafkaWire::connect(cluster.first_bootstrap(), timeout).unwrap();
    let request = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("smoke"))
        .with_client_software_version(StrBytes::from_static_str("1"));
    let response = wire.send(&request, 3).unwrap();
    assert_eq!(response.error_code, 0);
    assert!(response.api_keys.iter().any(|k| k.api_key == ApiKey::Metadata as i16));

    let mut garbage = KafkaWire::connect(cluster.first_bootstrap(), timeout).unwrap();
    garbage.send_raw(&[0x7f, 0x7f, 0, 0, 0, 0, 0, 1]).unwrap();
    assert_eq!(garbage.read_raw_frame().unwrap(), None);
}

#[test]
fn single_node_cluster_serves_every_client() {
    let cluster = timed("start single-node cluster", || KafkaCluster::start(ClusterSpec::single())).unwrap();
    let bootstrap = cluster.bootstrap();
    assert_eq!(broker_ids(&cluster), vec![1]);

    check_wire(&cluster);

    timed("create topic", || java::create_topic(&bootstrap, "smoke", 3, 1)).unwrap();
    cluster.wait_for_topic("smoke", 3).unwrap();
    assert!(java::list_topics(&bootstrap).unwrap().contains(&"smoke".to_owned()));

    let lines: Vec<String> = (1..=5).map(|i| format!("line-{i}")).collect();
    timed("console produce", || java::console_produce(&bootstrap, "smoke", &lines, &[])).unwrap();
    let mut consumed = timed("console consume", || {
        java::console_consume(&bootstrap, "smoke", Some("smoke-group"), 5, Duration::from_secs(20))
    })
    .unwrap();
    consumed.sort();
    assert_eq!(consumed, lines);
    let group = java::describe_group(&bootstrap, "smoke-group").unwrap();
    assert!(group.contains("smoke"), "{group}");
    assert!(java::list_groups(&bootstrap).unwrap().contains(&"smoke-group".to_owned()));

    if kcat::kcat_available() {
        let metadata = timed("kcat metadata", || kcat::metadata(&bootstrap)).unwrap();
        assert!(metadata.contains("topic \"smoke\""), "{metadata}");
        let kcat_lines: Vec<String> = (1..=3).map(|i| format!("kcat-{i}")).collect();
        timed("kcat produce", || kcat::produce(&bootstrap, "kcat-smoke", &kcat_lines)).unwrap();
        let read =
            timed("kcat consume", || kcat::consume(&bootstrap, "kcat-smoke", 3, Duration::from_secs(30))).unwrap();
        assert_eq!(read, kcat_lines);
        let read = timed("kcat group consume", || {
            kcat::consume_group(&bootstrap, "kcat-group", "kcat-smoke", 3, Duration::from_secs(60))
        })
        .unwrap();
        assert_eq!(read, kcat_lines);
    } else {
        eprintln!("[smoke] kcat not installed: skipping librdkafka checks");
    }

    let perf = timed("producer perf 2000", || java::producer_perf(&ProducerPerfOptions::new(&bootstrap, "perf", 2000)))
        .unwrap();
    eprintln!("[smoke] {perf:?}");
    assert_eq!(perf.records, 2000);
    let consumed = timed("consumer perf 2000", || {
        java::consumer_perf(&bootstrap, "perf", 2000, "perf-group", Duration::from_secs(30))
    })
    .unwrap();
    eprintln!("[smoke] {consumed:?}");
    assert_eq!(consumed.messages, 2000);

    let described = timed("describe cluster", || java::describe_cluster(&bootstrap)).unwrap();
    assert_eq!(described.cluster_id, cluster.cluster_id());
    assert_eq!(described.nodes.len(), 1);
    assert_eq!(described.nodes[0].port, cluster.first_bootstrap().port());
}

#[test]
fn three_node_cluster_survives_a_broker_restart() {
    let spec = ClusterSpec { racks: Some(vec!["a".into(), "b".into(), "c".into()]), ..ClusterSpec::three() };
    let mut cluster = timed("start three-node cluster", || KafkaCluster::start(spec)).unwrap();
    assert_eq!(broker_ids(&cluster), vec![1, 2, 3]);

    timed("stop broker 2", || cluster.stop_broker(2)).unwrap();
    timed("broker 2 leaves metadata", || {
        switchyard_testkit::poll::poll_until(Duration::from_secs(30), || (broker_ids(&cluster) == [1, 3]).then_some(()))
    })
    .unwrap();
    timed("restart broker 2", || cluster.start_broker(2)).unwrap();
    assert_eq!(broker_ids(&cluster), vec![1, 2, 3]);

    timed("kill broker 3", || cluster.kill_broker(3)).unwrap();
    timed("restart broker 3", || cluster.start_broker(3)).unwrap();

    let described = java::describe_cluster(&cluster.bootstrap()).unwrap();
    let racks: Vec<Option<&str>> = described.nodes.iter().map(|n| n.rack.as_deref()).collect();
    assert_eq!(racks, vec![Some("a"), Some("b"), Some("c")]);
    assert!(cluster.node_log(2).matches("Kafka Server started").count() >= 2);
}
