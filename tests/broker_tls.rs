//! The broker leg's TLS and SASL against real Kafka listeners secured with the test PKI: the
//! gateway (plaintext to its clients) dials TLS brokers, checks their certificates, presents its
//! own for mTLS, logs its own clients in with SASL while the clients' SASL passes through, and
//! switches a route between two TLS clusters.
//!
//! Three single-node clusters are shared by every test: `mtls` (SSL, client certificates
//! required), `ssl` (SSL) and `scram` (SASL_SSL with PLAIN and SCRAM users).

mod common;

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use switchyard_testkit::kcat;
use switchyard_testkit::{
    free_port_block, java, ClusterSpec, GatewayProcess, Identity, KafkaCluster, ListenerSasl, ListenerTls, TestPki,
};

use common::{binary, loopback, run_suite};

const TOKEN: &str = "broker-tls-token";
const USER: (&str, &str) = ("alice", "alice-secret");
const GATEWAY_USER: (&str, &str) = ("gateway", "gateway-secret");
const WAIT: Duration = Duration::from_secs(30);

struct Env {
    pki: TestPki,
    gateway_identity: Identity,
    mtls: KafkaCluster,
    ssl: KafkaCluster,
    scram: KafkaCluster,
}

fn main() {
    run_suite(
        &[
            ("ssl_listener_with_mtls_serves_kcat_and_java", ssl_listener_with_mtls_serves_kcat_and_java),
            ("sasl_ssl_scram_passes_client_sasl_through", sasl_ssl_scram_passes_client_sasl_through),
            ("untrusted_broker_certificate_is_refused", untrusted_broker_certificate_is_refused),
            ("mtls_without_a_keystore_is_refused", mtls_without_a_keystore_is_refused),
            ("switchover_between_tls_clusters", switchover_between_tls_clusters),
        ],
        setup,
    );
}

fn setup() -> Result<Env> {
    let pki = TestPki::new()?;
    let broker = pki.server("broker", &["localhost", "127.0.0.1"])?;
    let gateway_identity = pki.client("gateway", "switchyard-gateway")?;
    let mtls_spec = ClusterSpec {
        first_node_id: 1,
        ..ClusterSpec::single()
            .tls(ListenerTls { keystore: broker.clone(), client_truststore: Some(pki.ca_truststore().to_path_buf()) })
    };
    let ssl_spec = ClusterSpec {
        first_node_id: 2,
        ..ClusterSpec::single().tls(ListenerTls { keystore: broker.clone(), client_truststore: None })
    };
    let scram_spec = ClusterSpec {
        first_node_id: 3,
        ..ClusterSpec::single()
            .tls(ListenerTls { keystore: broker, client_truststore: None })
            .sasl(ListenerSasl::all_mechanisms(&[USER, GATEWAY_USER]))
    };
    let (mtls, ssl, scram) = std::thread::scope(|s| {
        let mtls = s.spawn(|| KafkaCluster::start(mtls_spec));
        let ssl = s.spawn(|| KafkaCluster::start(ssl_spec));
        let scram = s.spawn(|| KafkaCluster::start(scram_spec));
        (mtls.join().expect("mtls start"), ssl.join().expect("ssl start"), scram.join().expect("scram start"))
    });
    let (mtls, ssl, scram) = (mtls?, ssl?, scram?);
    for cluster in [&mtls, &ssl, &scram] {
        java::create_topic(&cluster.internal_bootstrap(), "orders", 1, 1)?;
        cluster.wait_for_topic("orders", 1)?;
    }
    Ok(Env { pki, gateway_identity, mtls, ssl, scram })
}

/// One domain's YAML: `name`, node id `node`, the cluster's bootstrap with its protocol prefix,
/// and `extra` lines under the bootstrap server (ssl, sasl), indented by 10.
fn domain(name: &str, node: i32, cluster: &KafkaCluster, extra: &str) -> String {
    format!(
        "  - name: {name}\n    type: kafka\n    kafkaCluster:\n      name: {name}\n      bootstrapServers:\n        - id: listener\n          endpoint: \"{}://{}\"\n{extra}      nodeIdRanges: [{{name: brokers, start: {node}, end: {node}}}]\n",
        cluster.protocol(),
        cluster.bootstrap(),
    )
}

fn ssl_block(truststore: Option<&std::path::Path>, keystore: Option<&Identity>) -> String {
    let mut text = String::from("          ssl:\n");
    if let Some(ca) = truststore {
        text.push_str(&format!("            truststore: {{type: PEM, location: \"{}\"}}\n", ca.display()));
    }
    if let Some(identity) = keystore {
        text.push_str(&format!(
            "            keystore: {{type: PKCS12, location: \"{}\", password: {{value: {}}}}}\n",
            identity.pkcs12.display(),
            TestPki::PASSWORD
        ));
    }
    if truststore.is_none() && keystore.is_none() {
        text = "          ssl: {}\n".into();
    }
    text
}

struct Gateway {
    process: GatewayProcess,
    base: u16,
    admin: u16,
}

impl Gateway {
    /// A gateway with `domains` (YAML) and route `main` (node ids `nodes`) on `route_domain`.
    fn start(domains: &str, route_domain: &str, nodes: (i32, i32)) -> Result<Gateway> {
        let base = free_port_block((nodes.1 - nodes.0 + 2) as u16);
        let admin = free_port_block(1);
        let yaml = format!(
            "streamingDomains:\n{domains}routes:\n  - name: main\n    endpoint: \"127.0.0.1:{base}\"\n    streamingDomain: {{name: {route_domain}, bootstrapServerId: listener}}\nproxy:\n  connectTimeoutMs: 3000\nadmin:\n  address: 127.0.0.1:{admin}\n  token: {TOKEN}\n"
        );
        let process = GatewayProcess::start(&binary(), &yaml, &[loopback(base), loopback(admin)])?;
        Ok(Gateway { process, base, admin })
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.base)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }

    /// `/health/ready`'s status code.
    fn ready_status(&self) -> Result<u16> {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        Ok(agent.get(&self.url("/health/ready")).call()?.status().as_u16())
    }

    /// Waits until `/health/ready` says 200.
    fn wait_ready(&self) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.ready_status()? == 200 {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "not ready after {WAIT:?}:\n{}", self.process.log_tail());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn metrics(&self) -> Result<String> {
        Ok(ureq::get(&self.url("/metrics")).call()?.body_mut().read_to_string()?)
    }

    fn log(&self) -> String {
        self.process.log_contents()
    }
}

fn lines(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// (a) and (d): a plaintext route in front of an SSL listener that requires client certificates;
/// the gateway trusts the test CA and presents its own certificate. kcat and the Java client
/// produce and consume through it; the ready check is green.
fn ssl_listener_with_mtls_serves_kcat_and_java(env: &Env) -> Result<()> {
    let ssl = ssl_block(Some(env.pki.ca_pem()), Some(&env.gateway_identity));
    let gateway = Gateway::start(&domain("mtls", 1, &env.mtls, &ssl), "mtls", (1, 1))?;
    gateway.wait_ready()?;
    let bootstrap = gateway.bootstrap();
    kcat::produce(&bootstrap, "orders", &lines("kcat", 3))?;
    java::console_produce(&bootstrap, "orders", &lines("java", 2), &[])?;
    let read = kcat::consume(&bootstrap, "orders", 5, WAIT)?;
    ensure!(read.iter().filter(|l| l.starts_with("kcat-") || l.starts_with("java-")).count() >= 5, "read {read:?}");
    let java_read = java::console_consume(&bootstrap, "orders", None, 5, WAIT)?;
    ensure!(java_read.len() >= 5, "the Java consumer read {java_read:?}");
    // The metadata clients see names the gateway only.
    let metadata = kcat::metadata(&bootstrap)?;
    ensure!(!metadata.contains(&env.mtls.first_bootstrap().to_string()), "a real address leaked:\n{metadata}");
    Ok(())
}

/// (b): SASL_SSL with SCRAM-SHA-512. The gateway's own clients log in with
/// `bootstrapServers[].sasl` (ready green); clients speak SASL_PLAINTEXT to the gateway and their
/// SASL exchange reaches the broker over TLS.
fn sasl_ssl_scram_passes_client_sasl_through(env: &Env) -> Result<()> {
    let extra = format!(
        "{}          sasl: {{mechanism: SCRAM-SHA-512, username: {}, password: {{value: {}}}}}\n",
        ssl_block(Some(env.pki.ca_pem()), None),
        GATEWAY_USER.0,
        GATEWAY_USER.1
    );
    let gateway = Gateway::start(&domain("scram", 3, &env.scram, &extra), "scram", (3, 3))?;
    gateway.wait_ready()?;
    let log = gateway.log();
    ensure!(!log.contains(GATEWAY_USER.1), "the gateway's SASL password reached its log");
    let bootstrap = gateway.bootstrap();
    let jaas = format!(
        "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{}\" password=\"{}\";",
        USER.0, USER.1
    );
    let props =
        [("security.protocol", "SASL_PLAINTEXT"), ("sasl.mechanism", "SCRAM-SHA-512"), ("sasl.jaas.config", &jaas)];
    java::console_produce(&bootstrap, "orders", &lines("scram", 2), &props)?;
    // kcat's librdkafka (Debian's, older than 2.6.1) cannot do SCRAM with Kafka 4: PLAIN.
    let plain = kcat::security_config("SASL_PLAINTEXT", None, Some(("PLAIN", USER.0, USER.1)));
    kcat::produce_with(&bootstrap, "orders", &lines("plain", 1), &plain)?;
    let read = kcat::consume_with(&bootstrap, "orders", 3, WAIT, &plain)?;
    ensure!(read == ["scram-0", "scram-1", "plain-0"], "read {read:?}");
    // A wrong password is the broker's refusal, passed through.
    let wrong = kcat::security_config("SASL_PLAINTEXT", None, Some(("PLAIN", USER.0, "wrong")));
    ensure!(kcat::produce_with(&bootstrap, "orders", &lines("x", 1), &wrong).is_err(), "a wrong password got in");
    Ok(())
}

/// (c): the broker's certificate is not signed by a CA the gateway trusts (the gateway trusts only
/// the unrelated CA): client connections are closed with the reason logged and counted, and the
/// ready check stays red.
fn untrusted_broker_certificate_is_refused(env: &Env) -> Result<()> {
    let ssl = ssl_block(Some(env.pki.other_ca_pem()), None);
    let gateway = Gateway::start(&domain("ssl", 2, &env.ssl, &ssl), "ssl", (2, 2))?;
    let refused = kcat::metadata(&gateway.bootstrap());
    ensure!(refused.is_err(), "a client got metadata through an untrusted broker: {refused:?}");
    std::thread::sleep(Duration::from_secs(3));
    ensure!(gateway.ready_status()? == 503, "ready is green with an untrusted broker");
    let log = gateway.log();
    ensure!(log.contains("broker certificate not trusted"), "no clear reason in the log:\n{log}");
    let metrics = gateway.metrics()?;
    ensure!(
        metrics
            .contains(r#"switchyard_broker_tls_handshake_failures_total{route="main",reason="untrusted_certificate"}"#),
        "the refusal is not counted:\n{metrics}"
    );
    Ok(())
}

/// (d), refused: without a keystore the mTLS listener refuses the gateway; the reason is logged.
fn mtls_without_a_keystore_is_refused(env: &Env) -> Result<()> {
    let ssl = ssl_block(Some(env.pki.ca_pem()), None);
    let gateway = Gateway::start(&domain("mtls", 1, &env.mtls, &ssl), "mtls", (1, 1))?;
    ensure!(kcat::metadata(&gateway.bootstrap()).is_err(), "an mTLS listener served a gateway without a certificate");
    std::thread::sleep(Duration::from_secs(3));
    ensure!(gateway.ready_status()? == 503, "ready is green though the broker refuses the gateway");
    // With TLS 1.3 the broker checks the client certificate after the client's side of the
    // handshake is done, so its refusal arrives as the first thing read: logged as its alert (Kafka sends BadCertificate).
    let log = gateway.log();
    ensure!(log.contains("received fatal alert: BadCertificate"), "the broker's refusal is not in the log:\n{log}");
    Ok(())
}

/// (e): a live switchover from the mTLS cluster to the plain SSL one, each domain with its own
/// `ssl` settings: it completes and clients then reach the second cluster.
fn switchover_between_tls_clusters(env: &Env) -> Result<()> {
    let domains = domain("mtls", 1, &env.mtls, &ssl_block(Some(env.pki.ca_pem()), Some(&env.gateway_identity)))
        + &domain("ssl", 2, &env.ssl, &ssl_block(Some(env.pki.ca_pem()), None));
    let gateway = Gateway::start(&domains, "mtls", (1, 2))?;
    gateway.wait_ready()?;
    let bootstrap = gateway.bootstrap();
    kcat::produce(&bootstrap, "orders", &["before-switch".to_owned()])?;
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let body = json!({"to": "ssl", "catchUp": {"policy": "none"}, "topics": ["orders"]});
    let mut response = agent
        .post(&gateway.url("/admin/v1/routes/main/switchover"))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .header("Content-Type", "application/json")
        .send(body.to_string())?;
    let status = response.status().as_u16();
    let report: Value = serde_json::from_str(&response.body_mut().read_to_string()?)?;
    ensure!(status == 200 && report["outcome"] == "completed", "switchover: {status} {report}\n{}", gateway.log());
    kcat::produce(&bootstrap, "orders", &["after-switch".to_owned()])?;
    let on_destination = kcat::consume_with(
        &env.ssl.bootstrap(),
        "orders",
        10,
        WAIT,
        &kcat::security_config("SSL", Some(env.pki.ca_pem()), None),
    )
    .context("reading the destination directly")?;
    ensure!(on_destination.contains(&"after-switch".to_owned()), "the destination has {on_destination:?}");
    ensure!(
        !on_destination.contains(&"before-switch".to_owned()),
        "the record before the switch went to the destination"
    );
    gateway.wait_ready()?;
    Ok(())
}
