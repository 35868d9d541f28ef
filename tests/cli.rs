//! The `switchyard` command line, run as users run it.
//!
//! These tests start the built binary, never the library in-process, so they cover what unit
//! tests cannot: argument and environment handling, exit codes, and what is printed where. They
//! need no Kafka: `check` never contacts a cluster, and `run` only warns while its (absent)
//! upstream cannot be reached. They also keep `examples/` honest: every file there, each linked
//! from docs/configuration.md, must pass `check` and show the routes and ports its comments
//! promise.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use switchyard_testkit::poll::poll_until;
use switchyard_testkit::{free_port, free_port_block, ChildGuard};

const BINARY: &str = env!("CARGO_BIN_EXE_switchyard");
/// The exit status for a configuration the gateway refuses.
const CONFIG_ERROR_STATUS: i32 = 2;
/// How long `run` may take to give up on a port that is taken.
const FAIL_FAST: Duration = Duration::from_secs(5);
/// How long `run` may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `run` may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Environment variables that would override the config files these tests write.
const GATEWAY_ENV: &[&str] = &[
    "GATEWAY_CONFIG_FILE",
    "GATEWAY_LOG_JSON",
    "GATEWAY_ADMIN_ADDRESS",
    "GATEWAY_ADMIN_TOKEN",
    "GATEWAY_AUDIT_LOG",
    "GATEWAY_FEATURE_FLAGS_HAPROXY_PROTOCOL",
    "GATEWAY_PROXY_PROTOCOL_TRUSTED_NETWORKS",
];

/// Each example file with the routes `check` must show for it and each route's port block.
const EXAMPLES: &[(&str, &[(&str, &str)])] = &[
    ("gateway-wrapper.yaml", &[("public-route", "19092-19095")]),
    ("live-switchover.yaml", &[("orders", "19092-19098")]),
    (
        "multiple-routes.yaml",
        &[("orders", "19092-19098"), ("payments", "19192-19198"), ("orders-replication", "19292-19298")],
    ),
    ("single-route.yaml", &[("local", "19092-19124")]),
    ("sparse-node-ids.yaml", &[("sparse-route", "29092-29095")]),
    ("switchover-two-domains.yaml", &[("switchover-route", "19092-19095")]),
];

/// A valid config that each error case breaks in one place.
const VALID: &str = r#"
streamingDomains:
  - name: kafka1-domain
    type: kafka
    kafkaCluster:
      name: kafka-cluster-1
      bootstrapServers:
        - id: plaintext
          endpoint: "kafka-1:9092"
      nodeIdRanges:
        - name: brokers
          start: 1
          end: 3
routes:
  - name: orders
    endpoint: "127.0.0.1:19092"
    streamingDomain:
      name: kafka1-domain
      bootstrapServerId: plaintext
"#;

// ---------------------------------------------------------------------------------------------
// check: the shipped examples

#[test]
fn every_example_file_is_listed_here() {
    let mut on_disk: Vec<String> = fs::read_dir(examples_dir())
        .expect("examples/ is readable")
        .map(|entry| entry.expect("directory entry").file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let listed: Vec<&str> = EXAMPLES.iter().map(|(file, _)| *file).collect();
    assert_eq!(on_disk, listed, "add each new example to EXAMPLES with the routes it must show");
}

#[test]
fn check_shows_switchover_and_reload_settings() {
    let out = check(&examples_dir().join("live-switchover.yaml"));
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("switchover      catch-up records within 0, timeout 30s, fence error"), "{out}");
    assert!(out.stdout.contains("reload: the file is watched every 2s"), "{out}");
    let out = check(&examples_dir().join("single-route.yaml"));
    assert!(out.stdout.contains("catch-up none, timeout 60s (default), fence hold"), "{out}");
}

#[test]
fn every_example_passes_check_and_shows_its_routes_and_ports() {
    for (file, routes) in EXAMPLES {
        let path = examples_dir().join(file);
        let out = check(&path);
        assert_eq!(out.code, Some(0), "{file}: {out}");
        assert!(out.stdout.starts_with(&format!("config {} is valid\n", path.display())), "{file}: {out}");
        for (route, ports) in *routes {
            let section =
                route_section(&out.stdout, route).unwrap_or_else(|| panic!("{file}: no route {route}: {out}"));
            assert!(section.contains(&format!(", ports {ports})")), "{file}: route {route} lacks ports {ports}: {out}");
        }
    }
}

#[test]
fn sparse_node_ids_get_consecutive_ports() {
    let out = check(&examples_dir().join("sparse-node-ids.yaml"));
    let section = route_section(&out.stdout, "sparse-route").unwrap_or_else(|| panic!("{out}"));
    for (node, port) in [(100, 29093), (200, 29094), (300, 29095)] {
        assert!(section.contains(&format!("nodes {node}-{node} -> ports {port}-{port}\n")), "node {node}: {out}");
    }
}

// ---------------------------------------------------------------------------------------------
// check: where the config comes from

#[test]
fn config_file_env_var_is_used_without_config_flag() {
    let path = examples_dir().join("sparse-node-ids.yaml");
    let out = run_to_end(switchyard(&["check"]).env("GATEWAY_CONFIG_FILE", &path));
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.starts_with(&format!("config {} is valid\n", path.display())), "{out}");
    assert!(route_section(&out.stdout, "sparse-route").is_some(), "{out}");
}

#[test]
fn config_flag_wins_over_env_var() {
    let path = examples_dir().join("single-route.yaml");
    let flag = path.to_str().expect("UTF-8 path");
    let out = run_to_end(switchyard(&["check", "--config", flag]).env("GATEWAY_CONFIG_FILE", "/nonexistent.yaml"));
    assert_eq!(out.code, Some(0), "{out}");
    assert!(route_section(&out.stdout, "local").is_some(), "{out}");
}

#[test]
fn built_in_default_is_used_without_flag_or_env_var() {
    let out = run_to_end(&mut switchyard(&["check"]));
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.starts_with("config <built-in default> is valid\n"), "{out}");
    let section = route_section(&out.stdout, "default").unwrap_or_else(|| panic!("{out}"));
    assert!(section.contains("nodes 0-31 -> ports 19093-19124"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// check: refused configs name the file, the field and a fix

#[test]
fn unknown_streaming_domain_is_refused() {
    assert_refused(
        &with("streamingDomain:\n      name: kafka1-domain", "streamingDomain:\n      name: kafka9-domain"),
        "routes[0].streamingDomain.name",
        "unknown streaming domain `kafka9-domain`",
        "use one of: kafka1-domain",
    );
}

#[test]
fn unknown_bootstrap_server_id_is_refused() {
    assert_refused(
        &with("bootstrapServerId: plaintext", "bootstrapServerId: tls"),
        "routes[0].streamingDomain.bootstrapServerId",
        "has no bootstrap server `tls`",
        "use one of: plaintext",
    );
}

#[test]
fn endpoint_without_port_is_refused() {
    assert_refused(
        &with(r#"endpoint: "127.0.0.1:19092""#, r#"endpoint: "127.0.0.1""#),
        "routes[0].endpoint",
        "`127.0.0.1` is not host:port",
        "write it as host:port",
    );
}

#[test]
fn routes_with_clashing_port_ranges_are_refused() {
    let second =
        "  - name: payments\n    endpoint: \"127.0.0.1:19094\"\n    streamingDomain:\n      name: kafka1-domain\n";
    assert_refused(
        &format!("{VALID}{second}"),
        "routes[1].endpoint",
        "route `payments` needs ports 19094-19097 on 127.0.0.1, which clash with ports 19092-19095 of route `orders`",
        "move one route's endpoint port",
    );
}

#[test]
fn overlapping_node_id_ranges_are_refused() {
    assert_refused(
        &with("          end: 3\n", "          end: 3\n        - name: more\n          start: 3\n          end: 5\n"),
        "streamingDomains[0].kafkaCluster.nodeIdRanges[1]",
        "range `more` (3-5) overlaps range `brokers` (1-3)",
        "make the ranges disjoint",
    );
}

#[test]
fn misspelled_field_is_refused() {
    assert_refused(
        &with("bootstrapServerId:", "bootstrapServerID:"),
        "routes[0].streamingDomain.bootstrapServerID",
        "unknown field `bootstrapServerID`",
        "docs/configuration.md",
    );
}

#[test]
fn domain_type_other_than_kafka_is_refused() {
    assert_refused(
        &with("type: kafka", "type: pulsar"),
        "streamingDomains[0].type",
        "unsupported type `pulsar`",
        "set `type: kafka`",
    );
}

#[test]
fn yaml_syntax_error_is_refused_with_its_position() {
    // An unclosed quote at line 16, column 15 (VALID starts with a newline).
    let (path, out) = check_yaml(&with(r#""127.0.0.1:19092""#, r#""127.0.0.1:19092"#));
    assert_eq!(out.code, Some(CONFIG_ERROR_STATUS), "{out}");
    assert!(out.stderr.contains(&format!("{path}: not valid YAML")), "{out}");
    assert!(out.stderr.contains("line 16 column 15"), "{out}");
    assert!(out.stderr.contains("Fix: correct the YAML syntax"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// run

#[test]
fn run_refuses_an_invalid_config() {
    let config = TempConfig::new(&with("type: kafka", "type: pulsar"));
    let out = run_to_end(&mut switchyard(&["run", "--config", config.path_str()]));
    assert_eq!(out.code, Some(CONFIG_ERROR_STATUS), "{out}");
    assert!(out.stderr.contains("field `streamingDomains[0].type`"), "{out}");
}

#[test]
fn run_fails_fast_naming_a_port_that_is_taken() {
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    let port = taken.local_addr().expect("local address").port();
    let config = TempConfig::new(&one_route_config(port));
    let mut gateway = spawn_run(&config);

    let status = gateway.wait_timeout(FAIL_FAST);
    let log = gateway.log_contents();
    let status = status.unwrap_or_else(|| panic!("still running after {FAIL_FAST:?} on a taken port:\n{log}"));
    assert!(!status.success(), "{status}:\n{log}");
    assert!(log.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{log}");
    drop(taken);
}

#[test]
fn run_stops_with_status_0_on_sigterm() {
    let base = free_port_block(2);
    let config = TempConfig::new(&one_route_config(base));
    let mut gateway = spawn_run(&config);
    wait_until_listening(&mut gateway, SocketAddr::from((Ipv4Addr::LOCALHOST, base)));

    let status = gateway.terminate(STOP_TIMEOUT);
    let log = gateway.log_contents();
    let status = status.unwrap_or_else(|| panic!("still running {STOP_TIMEOUT:?} after SIGTERM:\n{log}"));
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("SIGTERM received"), "{log}");
}

// ---------------------------------------------------------------------------------------------
// helpers

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Secrets inline in the file (a broker password, the admin token, a Vault token, a SCRAM admin's
/// password) never reach `check`'s output, whether the configuration loads or is refused for
/// another field.
#[test]
fn check_shows_no_secret() {
    const SECRETS: [&str; 4] = ["brokerPw-7fQ2", "adminTok-9xK1", "vaultTok-3mZ8", "scramAdm-5hR4"];
    let dir = tempfile::tempdir().expect("a temporary directory");
    let template = dir.path().join("cluster.conf");
    std::fs::write(
        &template,
        "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"%s\" password=\"%s\";\n",
    )
    .expect("template written");
    let yaml = format!(
        r#"
secretStores:
  - name: vault
    provider:
      type: VAULT
      config: {{address: "http://127.0.0.1:1", authToken: {{value: {vault}}}, prefixPath: secret/}}
streamingDomains:
  - name: main
    type: kafka
    kafkaCluster:
      name: main
      bootstrapServers:
        - id: sasl
          endpoint: "SASL_PLAINTEXT://127.0.0.1:9092"
          sasl: {{mechanism: SCRAM-SHA-512, username: gateway, password: {{value: {broker}}}}}
routes:
  - name: swapped
    endpoint: "127.0.0.1:19092"
    streamingDomain: {{name: main, bootstrapServerId: sasl}}
    security:
      auth: swap
      swapConfig:
        clientAuth:
          sasl:
            mechanism: SCRAM
            scram: {{alterScramCredentials: true, admin: {{username: admin, password: {scram}}}}}
        secretStore: vault
        clusterAuth:
          sasl:
            mechanism: PLAIN
            jaasConfig: {{file: "{template}"}}
admin:
  address: "127.0.0.1:{admin}"
  token: {token}
"#,
        vault = SECRETS[2],
        broker = SECRETS[0],
        scram = SECRETS[3],
        template = template.display(),
        admin = free_port_block(1),
        token = SECRETS[1],
    );
    let (_, loaded) = check_yaml(&yaml);
    assert_eq!(loaded.code, Some(0), "{loaded}");
    let (_, refused) = check_yaml(&yaml.replace("    endpoint: \"127.0.0.1:19092\"", "    endpoint: \"127.0.0.1\""));
    assert_eq!(refused.code, Some(CONFIG_ERROR_STATUS), "{refused}");
    for out in [&loaded, &refused] {
        for secret in SECRETS {
            assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret), "`{secret}` shown: {out}");
        }
    }
}

/// `VALID` with `from` (which must occur) replaced by `to`, once.
fn with(from: &str, to: &str) -> String {
    assert!(VALID.contains(from), "`{from}` is not in VALID");
    VALID.replacen(from, to, 1)
}

/// A config with one route on 127.0.0.1:`port` (bootstrap) and `port + 1` (node 1), in front of
/// a Kafka that is not there, and the admin API on a free port. The short connect timeout bounds
/// the metadata refresh the gateway keeps retrying, which shutdown currently waits for.
fn one_route_config(port: u16) -> String {
    format!(
        r#"
streamingDomains:
  - name: absent
    type: kafka
    kafkaCluster:
      name: absent-kafka
      bootstrapServers:
        - id: plaintext
          endpoint: "127.0.0.1:{upstream}"
      nodeIdRanges:
        - name: one
          start: 1
          end: 1
routes:
  - name: cli-test
    endpoint: "127.0.0.1:{port}"
    streamingDomain:
      name: absent
proxy:
  connectTimeoutMs: 1000
admin:
  address: "127.0.0.1:{admin}"
"#,
        upstream = free_port(),
        admin = free_port_block(1),
    )
}

/// `switchyard ARGS`, unaffected by the caller's `GATEWAY_*` and logging environment.
fn switchyard(args: &[&str]) -> Command {
    let mut cmd = Command::new(BINARY);
    cmd.args(args).env("RUST_LOG", "info");
    for var in GATEWAY_ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// `switchyard run` on `config`, logging to a file beside it; stopped when the guard drops.
fn spawn_run(config: &TempConfig) -> ChildGuard {
    let log = config.dir.join("gateway.log");
    ChildGuard::spawn_logged(switchyard(&["run", "--config", config.path_str()]), &log).expect("start switchyard run")
}

/// Waits until `gateway` accepts connections on `addr`; panics with its log if it exits first.
fn wait_until_listening(gateway: &mut ChildGuard, addr: SocketAddr) {
    let listening = poll_until(START_TIMEOUT, || {
        if let Some(status) = gateway.try_status() {
            panic!("switchyard run exited during startup ({status}):\n{}", gateway.log_contents());
        }
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()
    });
    if listening.is_err() {
        panic!("not listening on {addr} after {START_TIMEOUT:?}:\n{}", gateway.log_contents());
    }
}

/// `check` on a config file.
fn check(path: &Path) -> Outcome {
    run_to_end(&mut switchyard(&["check", "--config", path.to_str().expect("UTF-8 path")]))
}

/// `check` on config text, written to a temporary file first; returns that file's path too.
fn check_yaml(yaml: &str) -> (String, Outcome) {
    let config = TempConfig::new(yaml);
    (config.path_str().to_string(), check(&config.path))
}

/// Asserts that `check` refuses `yaml` with status 2 and a message naming the file, the field,
/// the problem and the fix.
fn assert_refused(yaml: &str, field: &str, problem: &str, fix: &str) {
    let (path, out) = check_yaml(yaml);
    assert_eq!(out.code, Some(CONFIG_ERROR_STATUS), "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    let expected_start = format!("error: {path}: field `{field}`: ");
    assert!(out.stderr.starts_with(&expected_start), "expected `{expected_start}...`: {out}");
    assert!(out.stderr.contains(problem), "expected problem `{problem}`: {out}");
    let fix_text = out.stderr.split_once(". Fix: ").map(|(_, fix)| fix).unwrap_or_default();
    assert!(fix_text.contains(fix), "expected fix `{fix}`: {out}");
}

/// The part of `check`'s output describing `route`, up to the next route.
fn route_section<'a>(stdout: &'a str, route: &str) -> Option<&'a str> {
    let start = stdout.find(&format!("\nroute {route}\n"))? + 1;
    let rest = &stdout[start..];
    Some(rest.find("\n\nroute ").map_or(rest, |end| &rest[..end]))
}

fn run_to_end(cmd: &mut Command) -> Outcome {
    Outcome::from(cmd.output().expect("switchyard runs"))
}

/// What a finished command did, printable for assertion messages.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<Output> for Outcome {
    fn from(out: Output) -> Self {
        Outcome {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}", self.code, self.stdout, self.stderr)
    }
}

/// A config file in a directory of its own, removed on drop.
struct TempConfig {
    dir: PathBuf,
    path: PathBuf,
}

impl TempConfig {
    fn new(yaml: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let unique = format!("switchyard-cli-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let dir = std::env::temp_dir().join(unique);
        fs::create_dir_all(&dir).expect("create temporary directory");
        let path = dir.join("switchyard.yaml");
        fs::write(&path, yaml).expect("write temporary config");
        TempConfig { dir, path }
    }

    fn path_str(&self) -> &str {
        self.path.to_str().expect("UTF-8 temporary path")
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}
