//! The kit's secured Kafka listeners: a `SASL_SSL` client listener with the test PKI's broker
//! certificate and SCRAM and PLAIN users, reached by the Java client (SCRAM) and kcat (PLAIN).
//!
//! Run with `cargo test -p switchyard-testkit --test secured -- --nocapture`.

use std::time::Duration;

use switchyard_testkit::java;
use switchyard_testkit::kcat::{self, security_config};
use switchyard_testkit::{ClusterSpec, KafkaCluster, ListenerSasl, ListenerTls, TestPki};

#[test]
fn sasl_ssl_listener_takes_each_mechanism_and_refuses_strangers() {
    let pki = TestPki::new().unwrap();
    let broker = pki.server("broker", &["localhost", "127.0.0.1"]).unwrap();
    let spec = ClusterSpec::single()
        .tls(ListenerTls { keystore: broker, client_truststore: None })
        .sasl(ListenerSasl::all_mechanisms(&[("alice", "alice-secret")]));
    let cluster = KafkaCluster::start(spec).unwrap();
    assert_eq!(cluster.protocol(), "SASL_SSL");
    java::create_topic(&cluster.internal_bootstrap(), "secured", 1, 1).unwrap();
    cluster.wait_for_topic("secured", 1).unwrap();

    let bootstrap = cluster.bootstrap();
    // Java: each SCRAM mechanism.
    let truststore = pki.ca_truststore().display().to_string();
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"alice\" password=\"alice-secret\";";
        let props = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", mechanism),
            ("sasl.jaas.config", jaas),
            ("ssl.truststore.type", "PKCS12"),
            ("ssl.truststore.location", &truststore),
            ("ssl.truststore.password", TestPki::PASSWORD),
        ];
        java::console_produce(&bootstrap, "secured", &[format!("java-{mechanism}")], &props).unwrap();
    }
    // kcat (librdkafka): PLAIN. The Debian kcat's librdkafka (before 2.6.1) cannot log in with
    // SCRAM to Kafka 4 (it repeats the client nonce, which Kafka 4 checks), so not SCRAM.
    let config = security_config("SASL_SSL", Some(pki.ca_pem()), Some(("PLAIN", "alice", "alice-secret")));
    kcat::produce_with(&bootstrap, "secured", &["kcat-PLAIN".into()], &config).unwrap();
    let read = kcat::consume_with(&bootstrap, "secured", 3, Duration::from_secs(30), &config).unwrap();
    assert_eq!(read, ["java-SCRAM-SHA-256", "java-SCRAM-SHA-512", "kcat-PLAIN"]);

    let wrong_password = security_config("SASL_SSL", Some(pki.ca_pem()), Some(("PLAIN", "alice", "nope")));
    let refused = kcat::produce_with(&bootstrap, "secured", &["x".into()], &wrong_password);
    assert!(refused.is_err(), "a wrong password is refused");
    let wrong_ca = security_config("SASL_SSL", Some(pki.other_ca_pem()), Some(("PLAIN", "alice", "alice-secret")));
    let refused = kcat::produce_with(&bootstrap, "secured", &["x".into()], &wrong_ca);
    assert!(refused.is_err(), "a broker certificate from an untrusted CA is refused");
}
