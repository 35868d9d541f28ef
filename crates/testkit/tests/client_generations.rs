//! The client-generation programs straight against a real 3-node cluster, no gateway: when a
//! `tests/clients.rs` workout fails through the gateway, this tells a gateway bug from a bug in
//! the program. Ignored by default (the gateway tests run the same programs); run with
//!
//! `cargo test -p switchyard-testkit --test client_generations -- --ignored --nocapture`

use std::time::{Duration, Instant};

use switchyard_testkit::clients::{self, Workout};
use switchyard_testkit::{end_offsets, java, kcat, ClusterSpec, KafkaCluster};

const RECORDS: usize = 1_000;

fn check(cluster: &KafkaCluster, workout: &Workout) {
    let real: Vec<String> = cluster.brokers().iter().map(|(_, addr)| addr.to_string()).collect();
    assert_eq!(workout.nodes.len(), 3, "{}", workout.output.describe());
    for (id, addr) in &workout.nodes {
        let expected = cluster.brokers().iter().find(|(node, _)| node == id).map(|(_, a)| a.to_string());
        assert_eq!(Some(addr), expected.as_ref(), "node {id}");
    }
    assert!(!workout.addresses.is_empty());
    for (addr, line) in &workout.addresses {
        // Seed connections name the bootstrap address, which is a broker here too.
        assert!(real.contains(addr), "unexpected address {addr} in {line:?}");
    }
    workout.ensure_complete(RECORDS as u64).unwrap();
}

fn print_phases(workout: &Workout) {
    for line in workout.output.stdout.lines().filter(|l| l.starts_with("phase ")) {
        eprintln!("  {line}");
    }
}

#[test]
#[ignore = "the same programs run through the gateway in tests/clients.rs"]
fn every_client_generation_against_kafka_directly() {
    let cluster = KafkaCluster::start(ClusterSpec::three()).unwrap();
    let bootstrap = cluster.bootstrap();
    for version in [clients::JAVA_CLIENT_4, clients::JAVA_CLIENT_3, clients::JAVA_CLIENT_2] {
        let started = Instant::now();
        let workout = clients::java_workout(version, &bootstrap, &format!("direct-java-{version}"), RECORDS).unwrap();
        assert_eq!(workout.client_version, version);
        check(&cluster, &workout);
        eprintln!("kafka-clients {version} workout: {:.1?}", started.elapsed());
        print_phases(&workout);
    }
    let started = Instant::now();
    match clients::go_workout(&bootstrap, "direct-franz-go", RECORDS).unwrap() {
        Some(workout) => {
            check(&cluster, &workout);
            eprintln!("{} workout: {:.1?}", workout.client_version, started.elapsed());
            print_phases(&workout);
        }
        None => eprintln!("SKIPPED franz-go: `go` is not installed"),
    }

    let started = Instant::now();
    let probe = clients::admin_probe(clients::JAVA_CLIENT_4, &bootstrap).unwrap();
    eprintln!("AdminProbe: {:.1?}", started.elapsed());
    let stdout = &probe.stdout;
    assert!(stdout.contains("quorum_leader "), "{stdout}");
    assert_eq!(stdout.lines().filter(|l| l.starts_with("quorum_voter ")).count(), 3, "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("config 1 log.dirs=")), "{stdout}");
    // Straight to the brokers, the real addresses are of course there.
    for (_, addr) in cluster.controllers() {
        assert!(stdout.contains(&addr.to_string()), "controller {addr} not in\n{stdout}");
    }

    if kcat::kcat_available() {
        java::create_topic(&bootstrap, "kcat-one-per-request", 3, 1).unwrap();
        let config = [("linger.ms", "0"), ("batch.num.messages", "1")];
        let took = kcat::produce_numbered(
            &bootstrap,
            "kcat-one-per-request",
            "direct",
            200_000,
            &config,
            Duration::from_secs(180),
        )
        .unwrap();
        let stored: i64 = end_offsets(&bootstrap, "kcat-one-per-request").unwrap().iter().map(|(_, o)| o).sum();
        assert_eq!(stored, 200_000);
        eprintln!("kcat 200000 records one per request: {took:.1?}");
    }
}
