//! SASL passthrough against real Kafka with ACLs: clients log in to the broker through the
//! gateway with their own credentials, the broker authorizes their own principal, and the
//! gateway's audit log names who they were, never their secrets.
//!
//! Two single-node clusters are shared by every test, both with the StandardAuthorizer,
//! `allow.everyone.if.no.acl.found=false` and ACLs granting `alice` the topics and groups (`bob`
//! has none; `gateway`, the gateway's own clients, is a super user):
//!
//! - `plain`: SASL_PLAINTEXT with PLAIN, SCRAM-SHA-256/512 and OAUTHBEARER (unsecured JWS), and
//!   `connections.max.reauth.ms` of 3 s, so every long connection re-authenticates (KIP-368);
//! - `ssl`: SASL_SSL with PLAIN, SCRAM-SHA-256/512 and OAUTHBEARER, sessions not limited.
//!
//! Debian's kcat (librdkafka 2.0.2) cannot do SCRAM with Kafka 4 nor re-authenticate: it logs in
//! with PLAIN, the Java clients with everything.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use switchyard_testkit::kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, SaslHandshakeRequest};
use switchyard_testkit::kafka_protocol::protocol::{Encodable, StrBytes};
use switchyard_testkit::{
    confluent_kafka, end_offsets, free_port_block, java, kcat, poll, ClusterSpec, GatewayProcess, Identity,
    KafkaCluster, KafkaWire, ListenerSasl, ListenerTls, ProducerPerfOptions, TestPki,
};

use common::{binary, loopback, metric_sum, run_suite_with_known_failures, scrape_metrics, wait_for_audit_close};

const ALICE: (&str, &str) = ("alice", "alice-Pw-7f3kQ");
const BOB: (&str, &str) = ("bob", "bob-Pw-91xqZ");
const GATEWAY: (&str, &str) = ("gateway", "gateway-Pw-c0deY");
/// Only in the swap routes' JAAS file: the gateway logs her in to the brokers as another user.
const CAROL: (&str, &str) = ("carol", "carol-Pw-4d1aS");
const WRONG_PASSWORD: &str = "wrong-Pw-5eedX";
const TOPIC: &str = "orders";
/// Written only by the re-authentication test, so its end offset counts that test's records.
const REAUTH_TOPIC: &str = "long-run";
const REAUTH_MS: u64 = 3000;
const WAIT: Duration = Duration::from_secs(30);
const TOKEN: &str = "sasl-token";

struct Env {
    pki: TestPki,
    gateway_identity: Identity,
    plain: KafkaCluster,
    ssl: KafkaCluster,
}

/// Tests that reproduce an open issue (run them with `--ignored`).
const KNOWN_FAILING: &[&str] = &[];

fn main() {
    run_suite_with_known_failures(
        &[
            ("plain_and_scram_over_a_plaintext_client_leg", plain_and_scram_over_a_plaintext_client_leg),
            ("oauthbearer_unsecured_token_passes_through", oauthbearer_unsecured_token_passes_through),
            ("librdkafka_scram_and_oauthbearer_pass_through", librdkafka_scram_and_oauthbearer_pass_through),
            ("plain_and_scram_over_a_tls_client_leg_to_sasl_ssl", plain_and_scram_over_a_tls_client_leg_to_sasl_ssl),
            ("wrong_password_and_missing_acls_are_refused", wrong_password_and_missing_acls_are_refused),
            ("reauthentication_keeps_a_long_producer_going", reauthentication_keeps_a_long_producer_going),
            ("legacy_sasl_handshake_v0_is_refused_cleanly", legacy_sasl_handshake_v0_is_refused_cleanly),
            (
                "switchover_between_sasl_clusters_keeps_the_producer",
                switchover_between_sasl_clusters_keeps_the_producer,
            ),
            (
                "stock_kcat_plain_producer_survives_a_passthrough_cut",
                stock_kcat_plain_producer_survives_a_passthrough_cut,
            ),
            (
                "stock_kcat_oauthbearer_producer_survives_a_passthrough_cut",
                stock_kcat_oauthbearer_producer_survives_a_passthrough_cut,
            ),
            (
                "librdkafka_scram_producer_logs_in_again_across_a_passthrough_cut",
                librdkafka_scram_producer_logs_in_again_across_a_passthrough_cut,
            ),
            (
                "swap_connections_follow_a_switchover_with_each_domains_credentials",
                swap_connections_follow_a_switchover_with_each_domains_credentials,
            ),
            (
                "swap_route_to_a_sasl_ssl_listener_produces_and_consumes",
                swap_route_to_a_sasl_ssl_listener_produces_and_consumes,
            ),
        ],
        KNOWN_FAILING,
        setup,
    );
}

fn authorizer(spec: ClusterSpec) -> ClusterSpec {
    spec.prop("authorizer.class.name", "org.apache.kafka.metadata.authorizer.StandardAuthorizer")
        .prop("allow.everyone.if.no.acl.found", "false")
        // ANONYMOUS: the kit's plaintext internal and controller listeners (brokers, setup tools).
        .prop("super.users", format!("User:ANONYMOUS;User:{}", GATEWAY.0))
}

fn setup() -> Result<Env> {
    let pki = TestPki::new()?;
    let broker = pki.server("broker", &["localhost", "127.0.0.1"])?;
    let gateway_identity = pki.server("gateway", &["127.0.0.1", "localhost"])?;
    let users = [ALICE, BOB, GATEWAY];
    let plain_spec = authorizer(ClusterSpec {
        first_node_id: 1,
        ..ClusterSpec::single().sasl(ListenerSasl::all_mechanisms(&users).with_oauthbearer())
    })
    .prop("connections.max.reauth.ms", REAUTH_MS.to_string());
    let ssl_spec = authorizer(ClusterSpec {
        first_node_id: 2,
        ..ClusterSpec::single()
            .tls(ListenerTls { keystore: broker, client_truststore: None })
            .sasl(ListenerSasl::all_mechanisms(&users).with_oauthbearer())
    });
    let (plain, ssl) = std::thread::scope(|s| {
        let plain = s.spawn(|| KafkaCluster::start(plain_spec));
        let ssl = s.spawn(|| KafkaCluster::start(ssl_spec));
        (plain.join().expect("plain start"), ssl.join().expect("ssl start"))
    });
    let (plain, ssl) = (plain?, ssl?);
    for cluster in [&plain, &ssl] {
        let internal = cluster.internal_bootstrap();
        java::create_topic(&internal, TOPIC, 1, 1)?;
        let principal = format!("User:{}", ALICE.0);
        let args = ["--allow-principal", &principal, "--operation", "All", "--topic", "*", "--group", "*"];
        java::add_acls(&internal, &args)?;
    }
    java::create_topic(&plain.internal_bootstrap(), REAUTH_TOPIC, 1, 1)?;
    for cluster in [&plain, &ssl] {
        cluster.wait_for_topic(TOPIC, 1)?;
    }
    Ok(Env { pki, gateway_identity, plain, ssl })
}

/// One domain's YAML: `name`, node id `node`, the cluster's bootstrap with its protocol prefix,
/// the gateway's own login (`gateway`, a super user) and, for SASL_SSL, trust in the test CA.
fn domain(env: &Env, name: &str, node: i32, cluster: &KafkaCluster) -> String {
    let ssl = match cluster.protocol() {
        "SASL_SSL" => format!(
            "          ssl:\n            truststore: {{type: PEM, location: \"{}\"}}\n",
            env.pki.ca_pem().display()
        ),
        _ => String::new(),
    };
    format!(
        "  - name: {name}\n    type: kafka\n    kafkaCluster:\n      name: {name}\n      bootstrapServers:\n        - id: listener\n          endpoint: \"{}://{}\"\n{ssl}          sasl: {{mechanism: SCRAM-SHA-512, username: {}, password: {{value: {}}}}}\n      nodeIdRanges: [{{name: brokers, start: {node}, end: {node}}}]\n",
        cluster.protocol(),
        cluster.bootstrap(),
        GATEWAY.0,
        GATEWAY.1,
    )
}

struct Gateway {
    process: GatewayProcess,
    base: u16,
    admin: u16,
    audit: PathBuf,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// A gateway with `domains` and route `main` (node ids `nodes`) to `route_domain`, its client
    /// leg TLS with the gateway's test certificate when `tls`, and an audit log.
    fn start(env: &Env, domains: &str, route_domain: &str, nodes: (i32, i32), tls: bool) -> Result<Gateway> {
        let base = free_port_block((nodes.1 - nodes.0 + 2) as u16);
        let admin = free_port_block(1);
        let dir = tempfile::tempdir()?;
        let audit = dir.path().join("audit.jsonl");
        let security = match tls {
            true => format!(
                "    security:\n      ssl:\n        keystore: {{type: PEM, location: \"{}\"}}\n",
                env.gateway_identity.combined_pem.display()
            ),
            false => String::new(),
        };
        let yaml = format!(
            "streamingDomains:\n{domains}routes:\n  - name: main\n    endpoint: \"127.0.0.1:{base}\"\n    streamingDomain: {{name: {route_domain}, bootstrapServerId: listener}}\n{security}proxy:\n  connectTimeoutMs: 3000\nadmin:\n  address: 127.0.0.1:{admin}\n  token: {TOKEN}\naudit:\n  file: {}\n",
            audit.display()
        );
        let process = GatewayProcess::start(&binary(), &yaml, &[loopback(base), loopback(admin)])?;
        Ok(Gateway { process, base, admin, audit, _dir: dir })
    }

    /// Route `main` to `plain`, plaintext client leg.
    fn plain(env: &Env) -> Result<Gateway> {
        Gateway::start(env, &domain(env, "plain", 1, &env.plain), "plain", (1, 1), false)
    }

    /// A gateway whose route `main` to `route_domain` swaps: carol logs in with PLAIN (the
    /// gateway's JAAS file) and the gateway logs in to the brokers with SCRAM-SHA-512 as the user
    /// each store maps her to. `stores`: `(name, mapped user)`, each becoming FILE store
    /// `<name>-store` (`default` is the route's); `domain_stores`: `domainSecretStores`.
    fn start_swap(
        domains: &str,
        route_domain: &str,
        stores: &[(&str, (&str, &str))],
        domain_stores: &str,
    ) -> Result<Gateway> {
        let dir = tempfile::tempdir()?;
        let users = dir.path().join("users.conf");
        std::fs::write(
            &users,
            format!("KafkaServer {{\n  org.apache.kafka.common.security.plain.PlainLoginModule required\n    user_{}=\"{}\";\n}};\n", CAROL.0, CAROL.1),
        )?;
        let template = dir.path().join("cluster.conf");
        std::fs::write(&template, format!("{}\n", scram_jaas(("%s", "%s"))))?;
        let mut yaml_stores = String::new();
        for (store, mapped) in stores {
            let directory = dir.path().join(store);
            std::fs::create_dir(&directory)?;
            std::fs::write(directory.join(CAROL.0), format!("{}:{}\n", mapped.0, mapped.1))?;
            yaml_stores += &format!(
                "  - name: {store}-store\n    provider:\n      type: FILE\n      config: {{directory: \"{}\"}}\n",
                directory.display()
            );
        }
        let (base, admin) = (free_port_block(3), free_port_block(1));
        let audit = dir.path().join("audit.jsonl");
        let yaml = format!(
            "secretStores:\n{yaml_stores}streamingDomains:\n{domains}routes:\n  - name: main\n    endpoint: \"127.0.0.1:{base}\"\n    streamingDomain: {{name: {route_domain}, bootstrapServerId: listener}}\n    security:\n      auth: swap\n      swapConfig:\n        clientAuth:\n          sasl:\n            mechanism: PLAIN\n            jaasConfig: {{file: \"{}\"}}\n        secretStore: default-store\n        domainSecretStores: {domain_stores}\n        clusterAuth:\n          sasl:\n            mechanism: SCRAM-SHA-512\n            jaasConfig: {{file: \"{}\"}}\nproxy:\n  connectTimeoutMs: 3000\nadmin:\n  address: 127.0.0.1:{admin}\n  token: {TOKEN}\naudit:\n  file: {}\n",
            users.display(),
            template.display(),
            audit.display()
        );
        let process = GatewayProcess::start(&binary(), &yaml, &[loopback(base), loopback(admin)])?;
        Ok(Gateway { process, base, admin, audit, _dir: dir })
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.base)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }

    /// `switchyard_requests_total` for `api` on route `main`.
    fn requests(&self, api: &str) -> Result<f64> {
        let scrape = scrape_metrics(&format!("127.0.0.1:{}", self.admin))?;
        Ok(metric_sum(&scrape, "switchyard_requests_total", &[("route", "main"), ("api", api)]))
    }

    /// Waits until an audit `close` event matches `wanted` and returns it.
    fn wait_for_close(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> Result<Value> {
        wait_for_audit_close(&self.audit, what, wanted)
    }

    /// Neither the gateway's log nor its audit log holds any of `secrets`.
    fn ensure_no_secrets(&self, secrets: &[&str]) -> Result<()> {
        let log = self.process.log_contents();
        let audit = std::fs::read_to_string(&self.audit).unwrap_or_default();
        ensure!(!audit.is_empty(), "the audit log is empty");
        for secret in secrets {
            ensure!(!log.contains(secret), "a secret reached the gateway's log:\n{log}");
            ensure!(!audit.contains(secret), "a secret reached the audit log:\n{audit}");
        }
        Ok(())
    }
}

/// A close event of `principal` with `mechanism` whose exchange the broker accepted.
fn authenticated_as<'a>(principal: &'a str, mechanism: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |e: &Value| e["principal"] == principal && e["saslMechanism"] == mechanism && e["authenticated"] == true
}

fn scram_jaas(user: (&str, &str)) -> String {
    format!(
        "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{}\" password=\"{}\";",
        user.0, user.1
    )
}

fn plain_jaas(user: (&str, &str)) -> String {
    format!(
        "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"{}\" password=\"{}\";",
        user.0, user.1
    )
}

/// Java client settings for SASL: `(security.protocol, sasl.mechanism, sasl.jaas.config)`, plus
/// the test CA's truststore when `truststore` is given (SASL_SSL).
fn java_sasl(protocol: &str, mechanism: &str, jaas: &str, truststore: Option<&Path>) -> Vec<(String, String)> {
    let mut props = vec![
        ("security.protocol".to_owned(), protocol.to_owned()),
        ("sasl.mechanism".to_owned(), mechanism.to_owned()),
        ("sasl.jaas.config".to_owned(), jaas.to_owned()),
        // A refused login or a denied topic fails the send soon, not after a minute.
        ("max.block.ms".to_owned(), "20000".to_owned()),
        ("delivery.timeout.ms".to_owned(), "20000".to_owned()),
        ("request.timeout.ms".to_owned(), "10000".to_owned()),
    ];
    if let Some(truststore) = truststore {
        props.extend([
            ("ssl.truststore.type".to_owned(), "PKCS12".to_owned()),
            ("ssl.truststore.location".to_owned(), truststore.display().to_string()),
            ("ssl.truststore.password".to_owned(), TestPki::PASSWORD.to_owned()),
        ]);
    }
    props
}

fn java_produce(bootstrap: &str, topic: &str, lines: &[String], props: &[(String, String)]) -> Result<()> {
    let props: Vec<(&str, &str)> = props.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    java::console_produce(bootstrap, topic, lines, &props)
}

/// What a Java producer that is expected to fail printed.
fn java_produce_failing(bootstrap: &str, lines: &[String], props: &[(String, String)]) -> Result<String> {
    let props: Vec<(&str, &str)> = props.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let output = java::console_produce_output(bootstrap, TOPIC, lines, &props)?;
    Ok(format!("{}\n{}", output.stdout, output.stderr))
}

/// A Java properties file of `props` in `dir` (values escaped as the format needs).
fn properties_file(dir: &Path, props: &[(String, String)]) -> Result<PathBuf> {
    let path = dir.join("client.properties");
    let text: String = props.iter().map(|(k, v)| format!("{k}={}\n", v.replace('\\', "\\\\"))).collect();
    std::fs::write(&path, text)?;
    Ok(path)
}

fn lines(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Every record of `topic` read through `bootstrap` with kcat, logged in as alice with PLAIN.
fn read_all(bootstrap: &str, config: &[(String, String)]) -> Result<Vec<String>> {
    kcat::consume_with(bootstrap, TOPIC, 10_000, WAIT, config)
}

/// PLAIN (kcat and Java) and SCRAM-SHA-256/512 (Java) over a plaintext client leg to a
/// SASL_PLAINTEXT listener: the broker authorizes alice (only her ACLs let the records in), the
/// audit log names her with each mechanism, and her password is nowhere in the gateway's output.
fn plain_and_scram_over_a_plaintext_client_leg(env: &Env) -> Result<()> {
    let gateway = Gateway::plain(env)?;
    let bootstrap = gateway.bootstrap();
    let kcat_plain = kcat::security_config("SASL_PLAINTEXT", None, Some(("PLAIN", ALICE.0, ALICE.1)));
    kcat::produce_with(&bootstrap, TOPIC, &lines("leg1-kcat-plain", 2), &kcat_plain)?;
    java_produce(
        &bootstrap,
        TOPIC,
        &lines("leg1-java-plain", 1),
        &java_sasl("SASL_PLAINTEXT", "PLAIN", &plain_jaas(ALICE), None),
    )?;
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let props = java_sasl("SASL_PLAINTEXT", mechanism, &scram_jaas(ALICE), None);
        java_produce(&bootstrap, TOPIC, &lines(&format!("leg1-java-{mechanism}"), 1), &props)?;
    }
    let read = read_all(&bootstrap, &kcat_plain)?;
    for wanted in [
        "leg1-kcat-plain-0",
        "leg1-kcat-plain-1",
        "leg1-java-plain-0",
        "leg1-java-SCRAM-SHA-256-0",
        "leg1-java-SCRAM-SHA-512-0",
    ] {
        ensure!(read.iter().any(|r| r == wanted), "{wanted} is missing from {read:?}");
    }
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        gateway.wait_for_close(&format!("for alice with {mechanism}"), authenticated_as(ALICE.0, mechanism))?;
    }
    gateway.ensure_no_secrets(&[ALICE.1, GATEWAY.1])?;
    Ok(())
}

/// OAUTHBEARER with an unsecured JWS token whose `sub` is alice: the broker's default
/// validator accepts it and authorizes alice; the audit log reads her from the token.
fn oauthbearer_unsecured_token_passes_through(env: &Env) -> Result<()> {
    let gateway = Gateway::plain(env)?;
    let jaas = format!(
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub=\"{}\";",
        ALICE.0
    );
    let props = java_sasl("SASL_PLAINTEXT", "OAUTHBEARER", &jaas, None);
    java_produce(&gateway.bootstrap(), TOPIC, &lines("oauth", 2), &props)?;
    let read = read_all(&env.plain.internal_bootstrap(), &[])?;
    ensure!(read.iter().any(|r| r == "oauth-1"), "the OAUTHBEARER records are missing: {read:?}");
    gateway.wait_for_close("for alice with OAUTHBEARER", authenticated_as(ALICE.0, "OAUTHBEARER"))?;
    Ok(())
}

/// librdkafka's OAUTHBEARER with an unsecured JWS (`sub`: the configured principal).
fn rdkafka_oauthbearer(principal: &str) -> Vec<(String, String)> {
    vec![
        ("security.protocol".to_owned(), "SASL_PLAINTEXT".to_owned()),
        ("sasl.mechanism".to_owned(), "OAUTHBEARER".to_owned()),
        ("enable.sasl.oauthbearer.unsecure.jwt".to_owned(), "true".to_owned()),
        ("sasl.oauthbearer.config".to_owned(), format!("principal={principal}")),
    ]
}

/// librdkafka 2.16 (Python's confluent-kafka) with SCRAM-SHA-512 and with OAUTHBEARER (an
/// unsecured JWS naming alice), and Debian's kcat (librdkafka 2.0.2) with OAUTHBEARER, through
/// a passthrough route: only alice's ACLs let the records in (bob's token logs in and is
/// denied), and the audit log names her with each mechanism. The records are spread over 8 s,
/// longer than the broker's 3 s sessions: librdkafka 2.16 re-authenticates on its open
/// connections (KIP-368), and their close events count the logins.
fn librdkafka_scram_and_oauthbearer_pass_through(env: &Env) -> Result<()> {
    let gateway = Gateway::plain(env)?;
    let bootstrap = gateway.bootstrap();
    let pace = Duration::from_millis(500);
    let scram = kcat::security_config("SASL_PLAINTEXT", None, Some(("SCRAM-SHA-512", ALICE.0, ALICE.1)));
    for (mechanism, config) in [("SCRAM-SHA-512", scram), ("OAUTHBEARER", rdkafka_oauthbearer(ALICE.0))] {
        let config: Vec<(&str, &str)> = config.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        confluent_kafka::produce(&bootstrap, TOPIC, &config, &lines(&format!("rdkafka-{mechanism}"), 16), pace)?;
        let event = gateway.wait_for_close(&format!("for alice with {mechanism}, re-authenticated"), |e| {
            authenticated_as(ALICE.0, mechanism)(e) && e["saslAuthentications"].as_u64() >= Some(2)
        })?;
        ensure!(event["closeReason"] == "client closed the connection", "{event}");
    }
    kcat::produce_with(&bootstrap, TOPIC, &lines("kcat-OAUTHBEARER", 2), &rdkafka_oauthbearer(ALICE.0))?;
    gateway.wait_for_close("for alice with OAUTHBEARER from kcat", |e| {
        authenticated_as(ALICE.0, "OAUTHBEARER")(e) && e["saslAuthentications"] == 1
    })?;
    let config = rdkafka_oauthbearer(BOB.0);
    let config: Vec<(&str, &str)> = config.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let denied = confluent_kafka::produce(&bootstrap, TOPIC, &config, &lines("rdkafka-bob", 1), Duration::ZERO);
    let denied = format!("{:#}", denied.err().context("bob's token got a record in")?);
    ensure!(denied.contains("TOPIC_AUTHORIZATION_FAILED") || denied.contains("Authorization"), "{denied}");
    gateway.wait_for_close("for bob with OAUTHBEARER", authenticated_as(BOB.0, "OAUTHBEARER"))?;
    let read = read_all(&env.plain.internal_bootstrap(), &[])?;
    for wanted in ["rdkafka-SCRAM-SHA-512-15", "rdkafka-OAUTHBEARER-15", "kcat-OAUTHBEARER-1"] {
        ensure!(read.iter().any(|r| r == wanted), "{wanted} is missing from {read:?}");
    }
    ensure!(!read.iter().any(|r| r == "rdkafka-bob-0"), "bob's record arrived");
    gateway.ensure_no_secrets(&[ALICE.1, GATEWAY.1])?;
    Ok(())
}

/// A TLS client leg (`routes[].security.ssl`) in front of a SASL_SSL listener: clients speak
/// SASL_SSL to the gateway, kcat with PLAIN and Java with SCRAM-SHA-512; the broker authorizes
/// alice and the audit log names her.
fn plain_and_scram_over_a_tls_client_leg_to_sasl_ssl(env: &Env) -> Result<()> {
    let gateway = Gateway::start(env, &domain(env, "ssl", 2, &env.ssl), "ssl", (2, 2), true)?;
    let bootstrap = gateway.bootstrap();
    let kcat_plain = kcat::security_config("SASL_SSL", Some(env.pki.ca_pem()), Some(("PLAIN", ALICE.0, ALICE.1)));
    kcat::produce_with(&bootstrap, TOPIC, &lines("tls-kcat-plain", 2), &kcat_plain)?;
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let props = java_sasl("SASL_SSL", mechanism, &scram_jaas(ALICE), Some(env.pki.ca_truststore()));
        java_produce(&bootstrap, TOPIC, &lines(&format!("tls-java-{mechanism}"), 1), &props)?;
    }
    let read = read_all(&bootstrap, &kcat_plain)?;
    for wanted in ["tls-kcat-plain-1", "tls-java-SCRAM-SHA-256-0", "tls-java-SCRAM-SHA-512-0"] {
        ensure!(read.iter().any(|r| r == wanted), "{wanted} is missing from {read:?}");
    }
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        gateway.wait_for_close(&format!("for alice with {mechanism}"), authenticated_as(ALICE.0, mechanism))?;
    }
    gateway.ensure_no_secrets(&[ALICE.1, GATEWAY.1])?;
    Ok(())
}

/// A wrong password is the broker's refusal, passed through (kcat fails; the Java client reports
/// an authentication failure); bob logs in but the broker denies him the topic. The audit log
/// tells them apart, and the wrong password is nowhere.
fn wrong_password_and_missing_acls_are_refused(env: &Env) -> Result<()> {
    let gateway = Gateway::plain(env)?;
    let bootstrap = gateway.bootstrap();
    let wrong = kcat::security_config("SASL_PLAINTEXT", None, Some(("PLAIN", ALICE.0, WRONG_PASSWORD)));
    ensure!(
        kcat::produce_with(&bootstrap, TOPIC, &lines("x", 1), &wrong).is_err(),
        "kcat got in with a wrong password"
    );
    let props = java_sasl("SASL_PLAINTEXT", "SCRAM-SHA-256", &scram_jaas((ALICE.0, WRONG_PASSWORD)), None);
    let output = java_produce_failing(&bootstrap, &lines("wrong", 1), &props)?;
    ensure!(
        output.contains("SaslAuthenticationException") || output.contains("Authentication failed"),
        "the Java client saw no authentication error:\n{output}"
    );
    let props = java_sasl("SASL_PLAINTEXT", "SCRAM-SHA-512", &scram_jaas(BOB), None);
    let output = java_produce_failing(&bootstrap, &lines("bob", 1), &props)?;
    ensure!(
        output.contains("TopicAuthorizationException") || output.contains("Not authorized to access topics"),
        "bob was not denied the topic:\n{output}"
    );
    let read = read_all(&env.plain.internal_bootstrap(), &[])?;
    ensure!(
        !read.iter().any(|r| r == "wrong-0" || r == "bob-0" || r == "x-0"),
        "a refused client's record arrived: {read:?}"
    );
    gateway.wait_for_close("for a refused SCRAM login", |e| {
        e["principal"] == ALICE.0 && e["saslMechanism"] == "SCRAM-SHA-256" && e["authenticated"] == false
    })?;
    gateway.wait_for_close("for a refused PLAIN login", |e| {
        e["principal"] == ALICE.0 && e["saslMechanism"] == "PLAIN" && e["authenticated"] == false
    })?;
    gateway.wait_for_close("for bob, authenticated", authenticated_as(BOB.0, "SCRAM-SHA-512"))?;
    // The broker ends a refused login: that close is logged (at warn), naming who tried.
    let log = gateway.process.log_contents();
    let refused_line = log.lines().any(|line| {
        line.contains("connection closed")
            && line.contains("principal=\"alice\"")
            && line.contains("authenticated=false")
    });
    ensure!(refused_line, "no close line names the refused principal:\n{log}");
    gateway.ensure_no_secrets(&[WRONG_PASSWORD, BOB.1, GATEWAY.1])?;
    Ok(())
}

/// KIP-368: the broker ends every SASL session after 3 s, so a producer sending for ~15 s
/// re-authenticates on its open connections through the gateway, and loses nothing: every record
/// is acknowledged and on the broker. The gateway counts the extra SaslAuthenticate requests and
/// the audit close event of the long connection counts the accepted exchanges.
fn reauthentication_keeps_a_long_producer_going(env: &Env) -> Result<()> {
    let gateway = Gateway::plain(env)?;
    let before = gateway.requests("SaslAuthenticate")?;
    let records = 1_500;
    let mut perf = ProducerPerfOptions::new(gateway.bootstrap(), REAUTH_TOPIC, records);
    perf.throughput = 100;
    let dir = tempfile::tempdir()?;
    perf.config_file =
        Some(properties_file(dir.path(), &java_sasl("SASL_PLAINTEXT", "SCRAM-SHA-512", &scram_jaas(ALICE), None))?);
    perf.timeout = Duration::from_secs(90);
    let started = Instant::now();
    let (summary, output) = java::producer_perf_background(&perf)?.wait_with_output()?;
    let elapsed = started.elapsed();
    ensure!(
        summary.records == records,
        "{} of {records} records acknowledged:\n{}",
        summary.records,
        output.describe()
    );
    ensure!(!output.stderr.contains("Exception"), "the producer reported errors:\n{}", output.stderr);
    let on_broker: i64 = end_offsets(&env.plain.internal_bootstrap(), REAUTH_TOPIC)?.iter().map(|(_, o)| o).sum();
    ensure!(on_broker == records as i64, "{on_broker} records on the broker, {records} sent");
    // SCRAM takes two SaslAuthenticate requests per login; a 15 s run re-authenticates about
    // every 3 s (the client starts 85-95 % into the session).
    let authenticates = gateway.requests("SaslAuthenticate")? - before;
    let sessions = elapsed.as_millis() as f64 / REAUTH_MS as f64;
    ensure!(
        authenticates >= 2.0 * (sessions - 1.0).floor().max(4.0),
        "{authenticates} SaslAuthenticate requests in {elapsed:?}"
    );
    let long = gateway.wait_for_close("for a connection that re-authenticated", |e| {
        e["principal"] == ALICE.0 && e["saslAuthentications"].as_u64().is_some_and(|n| n >= 3)
    })?;
    ensure!(long["authenticated"] == true, "{long}");
    gateway.ensure_no_secrets(&[ALICE.1])?;
    Ok(())
}

/// SaslHandshake v0 is followed by raw SASL tokens the gateway could not frame: a connection
/// that sends one is closed, with the reason in the gateway's log. The broker's SaslHandshake
/// range is advertised unchanged (librdkafka needs v0 listed to use v1), and SaslAuthenticate
/// with it, so clients use v1.
fn legacy_sasl_handshake_v0_is_refused_cleanly(env: &Env) -> Result<()> {
    let gateway = Gateway::plain(env)?;
    let mut wire = KafkaWire::connect(loopback(gateway.base), Duration::from_secs(10))?;
    let versions = wire.send(
        &ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("sasl-test"))
            .with_client_software_version(StrBytes::from_static_str("1")),
        3,
    )?;
    let advertised = |key: ApiKey| {
        versions.api_keys.iter().find(|api| api.api_key == key as i16).map(|api| (api.min_version, api.max_version))
    };
    let handshake = advertised(ApiKey::SaslHandshake).context("no SaslHandshake in the ApiVersions answer")?;
    // Kafka 4.1 offers 0-1; without v0 listed librdkafka would not log in at all.
    ensure!(handshake == (0, 1), "SaslHandshake advertised as {handshake:?}, not the broker's 0-1");
    ensure!(advertised(ApiKey::SaslAuthenticate).is_some(), "SaslAuthenticate is not advertised");
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::SaslHandshake as i16)
        .with_request_api_version(0)
        .with_correlation_id(9)
        .with_client_id(Some(StrBytes::from_static_str("legacy")));
    let mut body = bytes::BytesMut::new();
    header.encode(&mut body, 1)?;
    SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")).encode(&mut body, 0)?;
    wire.send_raw(&body)?;
    let answer = wire.read_raw_frame();
    ensure!(matches!(answer, Ok(None) | Err(_)), "the gateway answered a SaslHandshake v0: {answer:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = gateway.process.log_contents();
        if log.contains("SaslHandshake v0 is followed by raw SASL tokens") {
            break;
        }
        ensure!(Instant::now() < deadline, "no reason logged for the refused SaslHandshake v0:\n{log}");
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Runs a Java producer of `records` (client settings `client`) through `gateway` while route
/// `main` is switched from `plain` to `ssl`: every record must be acknowledged, and some must
/// land on the destination.
fn produce_across_a_switchover(env: &Env, gateway: &Gateway, client: &[(String, String)], records: u64) -> Result<()> {
    let mut perf = ProducerPerfOptions::new(gateway.bootstrap(), TOPIC, records);
    perf.throughput = 100;
    let dir = tempfile::tempdir()?;
    perf.config_file = Some(properties_file(dir.path(), client)?);
    perf.producer_props.push(("delivery.timeout.ms".to_owned(), "60000".to_owned()));
    perf.timeout = Duration::from_secs(90);
    let ssl_before: i64 = end_offsets(&env.ssl.internal_bootstrap(), TOPIC)?.iter().map(|(_, o)| o).sum();
    let on_plain =
        || end_offsets(&env.plain.internal_bootstrap(), TOPIC).map(|o| o.iter().map(|(_, o)| o).sum::<i64>());
    let plain_before = on_plain()?;
    let run = java::producer_perf_background(&perf)?;
    switch_to_ssl_once_producing(env, gateway, plain_before)?;
    let (summary, output) = run.wait_with_output()?;
    ensure!(
        summary.records == records,
        "{} of {records} records acknowledged:\n{}",
        summary.records,
        output.describe()
    );
    let ssl_after: i64 = end_offsets(&env.ssl.internal_bootstrap(), TOPIC)?.iter().map(|(_, o)| o).sum();
    ensure!(ssl_after > ssl_before, "nothing reached the destination after the switchover");
    Ok(())
}

/// Records in `TOPIC` on `cluster`.
fn records_on(cluster: &KafkaCluster) -> Result<i64> {
    Ok(end_offsets(&cluster.internal_bootstrap(), TOPIC)?.iter().map(|(_, o)| o).sum())
}

/// Switch route `main` to `ssl` once 50 records more than `plain_before` have landed on `plain`
/// (a client on a loaded machine may take seconds to start), so the producer's connections are
/// there at the cut.
fn switch_to_ssl_once_producing(env: &Env, gateway: &Gateway, plain_before: i64) -> Result<()> {
    poll::try_poll_until(Duration::from_secs(60), || Ok((records_on(&env.plain)? >= plain_before + 50).then_some(())))?;
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let body = json!({"to": "ssl", "catchUp": {"policy": "none"}, "topics": [TOPIC]});
    let mut response = agent
        .post(&gateway.url("/admin/v1/routes/main/switchover"))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .header("Content-Type", "application/json")
        .send(body.to_string())?;
    let status = response.status().as_u16();
    let report: Value = serde_json::from_str(&response.body_mut().read_to_string()?)?;
    ensure!(status == 200 && report["outcome"] == "completed", "switchover: {status} {report}");
    Ok(())
}

/// Every one of `lines` is on `plain` or `ssl`, and `ssl` holds more than the `ssl_before`
/// records it had before the switchover.
fn ensure_landed_across_the_switchover(env: &Env, lines: &[String], ssl_before: i64) -> Result<()> {
    let mut landed = Vec::new();
    for cluster in [&env.plain, &env.ssl] {
        landed.extend(kcat::consume(&cluster.internal_bootstrap(), TOPIC, 100_000, WAIT)?);
    }
    let missing: Vec<&String> = lines.iter().filter(|line| !landed.contains(line)).collect();
    ensure!(
        missing.is_empty(),
        "{} records on neither cluster, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    ensure!(records_on(&env.ssl)? > ssl_before, "nothing reached the destination after the switchover");
    Ok(())
}

/// A stock librdkafka producer (kcat 2.0.2, PLAIN passed through, no `-E`) across a switchover
/// between two clusters that both know alice. kcat keeps one broker connection at a time, so a
/// cut closing it would be "all brokers down" and kcat would exit; instead the gateway replays
/// alice's PLAIN login on the destination and the connections follow. The source limits
/// sessions (3 s) and the destination does not, so kcat's re-authentications after the cut are
/// the gateway's to answer. kcat must run to the end of its input without an error, every
/// record must be on one cluster or the other, no connection may be closed at the cut, and the
/// audit log names alice with the replayed login, never her password.
fn stock_kcat_plain_producer_survives_a_passthrough_cut(env: &Env) -> Result<()> {
    let config = kcat::security_config("SASL_PLAINTEXT", None, Some(("PLAIN", ALICE.0, ALICE.1)));
    kcat_producer_survives_a_passthrough_cut(env, "PLAIN", &config)
}

/// [`stock_kcat_plain_producer_survives_a_passthrough_cut`] with OAUTHBEARER (an unsecured JWS
/// naming alice): the bearer token is replayed.
fn stock_kcat_oauthbearer_producer_survives_a_passthrough_cut(env: &Env) -> Result<()> {
    kcat_producer_survives_a_passthrough_cut(env, "OAUTHBEARER", &rdkafka_oauthbearer(ALICE.0))
}

/// kcat producing as alice with `mechanism` (settings `config`) through a switchover from
/// `plain` to `ssl` (see [`stock_kcat_plain_producer_survives_a_passthrough_cut`]).
fn kcat_producer_survives_a_passthrough_cut(env: &Env, mechanism: &str, config: &[(String, String)]) -> Result<()> {
    let domains = domain(env, "plain", 1, &env.plain) + &domain(env, "ssl", 2, &env.ssl);
    let gateway = Gateway::start(env, &domains, "plain", (1, 2), false)?;
    let lines: Vec<String> = (0..300).map(|i| format!("sasl-kept-{mechanism}-{i}")).collect();
    let plain_before = records_on(&env.plain)?;
    let ssl_before = records_on(&env.ssl)?;
    let interval = Duration::from_millis(20);
    let producer = kcat::produce_paced_with(&gateway.bootstrap(), TOPIC, lines.clone(), interval, config)?;
    switch_to_ssl_once_producing(env, &gateway, plain_before)?;
    let output = producer.wait(Duration::from_secs(60))?;
    ensure!(
        output.status.success() && !output.stderr.contains("ERROR"),
        "kcat reported failures:\n{}",
        output.describe()
    );
    ensure_landed_across_the_switchover(env, &lines, ssl_before)?;
    let scrape = scrape_metrics(&format!("127.0.0.1:{}", gateway.admin))?;
    let switched =
        metric_sum(&scrape, "switchyard_connections_closed_total", &[("route", "main"), ("reason", "route_switched")]);
    ensure!(switched == 0.0, "{switched} connections were closed at the cut instead of following it");
    gateway.wait_for_close("for alice's replayed login", |e| {
        authenticated_as(ALICE.0, mechanism)(e) && e["saslReplays"].as_u64().is_some_and(|n| n >= 1)
    })?;
    gateway.ensure_no_secrets(&[ALICE.1])
}

/// A current librdkafka (2.16, Python's confluent-kafka) logging in with SCRAM itself through a
/// passthrough route, across a live switchover between two clusters that both know alice. A
/// SCRAM login cannot be replayed (its proof is bound to the broker's nonce), so its
/// connections close at the cut and it logs in again on the destination: every record is
/// delivered, on one cluster or the other, and nothing fails. What librdkafka reports on the
/// way (connections closed, perhaps all brokers down for a moment) is printed, not failed: it
/// is informational for librdkafka, which reconnects by itself.
fn librdkafka_scram_producer_logs_in_again_across_a_passthrough_cut(env: &Env) -> Result<()> {
    let domains = domain(env, "plain", 1, &env.plain) + &domain(env, "ssl", 2, &env.ssl);
    let gateway = Gateway::start(env, &domains, "plain", (1, 2), false)?;
    let lines: Vec<String> = (0..300).map(|i| format!("scram-cut-{i}")).collect();
    let (plain_before, ssl_before) = (records_on(&env.plain)?, records_on(&env.ssl)?);
    let (bootstrap, sent) = (gateway.bootstrap(), lines.clone());
    let producer = std::thread::spawn(move || {
        let config = [
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", ALICE.0),
            ("sasl.password", ALICE.1),
        ];
        confluent_kafka::produce(&bootstrap, TOPIC, &config, &sent, Duration::from_millis(20))
    });
    switch_to_ssl_once_producing(env, &gateway, plain_before)?;
    let reported = producer.join().map_err(|_| anyhow::anyhow!("the producer thread panicked"))??;
    println!("librdkafka reported across the cut: {reported:?}");
    ensure_landed_across_the_switchover(env, &lines, ssl_before)?;
    gateway.wait_for_close("for alice's SCRAM connection closed at the cut", |e| {
        authenticated_as(ALICE.0, "SCRAM-SHA-512")(e) && e["upstreamAddress"] == env.plain.first_bootstrap().to_string()
    })?;
    gateway.ensure_no_secrets(&[ALICE.1])
}

/// Both clusters know alice: a switchover from `plain` to `ssl` while a SCRAM producer runs
/// through the gateway keeps it producing; it logs in again on the destination with the same
/// credentials and every record is acknowledged.
fn switchover_between_sasl_clusters_keeps_the_producer(env: &Env) -> Result<()> {
    let domains = domain(env, "plain", 1, &env.plain) + &domain(env, "ssl", 2, &env.ssl);
    let gateway = Gateway::start(env, &domains, "plain", (1, 2), false)?;
    let client = java_sasl("SASL_PLAINTEXT", "SCRAM-SHA-256", &scram_jaas(ALICE), None);
    produce_across_a_switchover(env, &gateway, &client, 800)?;
    gateway.wait_for_close("for alice on the destination", |e| {
        e["principal"] == ALICE.0
            && e["upstreamAddress"].as_str().is_some_and(|a| a == env.ssl.first_bootstrap().to_string())
    })?;
    Ok(())
}

/// A swap route's connections follow a live switchover, and the gateway logs in to the
/// destination with that domain's credentials. Client `carol` exists only in the gateway's JAAS
/// file. On `plain` the domain's store maps her to `alice`, on `ssl` to `gateway` (a super
/// user); the route's default store maps her to `bob`, who may do nothing, so records landing
/// on the destination prove that the destination's store was used. The producer's connections
/// are kept, not closed.
fn swap_connections_follow_a_switchover_with_each_domains_credentials(env: &Env) -> Result<()> {
    let domains = domain(env, "plain", 1, &env.plain) + &domain(env, "ssl", 2, &env.ssl);
    let stores = [("default", BOB), ("plain", ALICE), ("ssl", GATEWAY)];
    let gateway = Gateway::start_swap(&domains, "plain", &stores, "{plain: plain-store, ssl: ssl-store}")?;
    produce_across_a_switchover(env, &gateway, &java_sasl("SASL_PLAINTEXT", "PLAIN", &plain_jaas(CAROL), None), 600)?;
    let scrape = scrape_metrics(&format!("127.0.0.1:{}", gateway.admin))?;
    let moved = metric_sum(&scrape, "switchyard_connections_moved_total", &[("route", "main")]);
    ensure!(moved >= 1.0, "no connection followed the route:\n{}", gateway.process.log_tail());
    let switched =
        metric_sum(&scrape, "switchyard_connections_closed_total", &[("route", "main"), ("reason", "route_switched")]);
    ensure!(switched == 0.0, "{switched} connections were closed at the cut instead of following it");
    // A connection that followed is audited with the user it was last logged in as.
    gateway.wait_for_close("for carol as the destination's user", |e| {
        e["principal"] == CAROL.0 && e["clusterUser"] == GATEWAY.0
    })?;
    gateway.ensure_no_secrets(&[CAROL.1, ALICE.1, GATEWAY.1, BOB.1])
}

/// A swap route to the SASL_SSL listener (the broker leg TLS, trusting the test CA): carol logs
/// in to the gateway with PLAIN and the gateway logs in to the broker over TLS as alice with
/// SCRAM-SHA-512; kcat produces and consumes through it. Only alice's ACLs let the records in,
/// and the audit log names carol and the cluster user.
fn swap_route_to_a_sasl_ssl_listener_produces_and_consumes(env: &Env) -> Result<()> {
    let gateway = Gateway::start_swap(&domain(env, "ssl", 2, &env.ssl), "ssl", &[("default", ALICE)], "{}")?;
    let carol = kcat::security_config("SASL_PLAINTEXT", None, Some(("PLAIN", CAROL.0, CAROL.1)));
    kcat::produce_with(&gateway.bootstrap(), TOPIC, &lines("swap-sasl-ssl", 3), &carol)?;
    let read = read_all(&gateway.bootstrap(), &carol)?;
    ensure!(read.iter().any(|r| r == "swap-sasl-ssl-2"), "the records are missing from what kcat read: {read:?}");
    let on_broker = read_all(&env.ssl.internal_bootstrap(), &[])?;
    ensure!(on_broker.iter().any(|r| r == "swap-sasl-ssl-2"), "the records are not on the broker: {on_broker:?}");
    let event = gateway.wait_for_close("for carol swapped to alice", |e| {
        authenticated_as(CAROL.0, "PLAIN")(e) && e["clusterUser"] == ALICE.0
    })?;
    ensure!(event["closeReason"] == "client closed the connection", "{event}");
    gateway.ensure_no_secrets(&[CAROL.1, ALICE.1, GATEWAY.1])
}
