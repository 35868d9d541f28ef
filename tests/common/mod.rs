//! Support shared by the integration test binaries: a gateway in front of a test cluster, and
//! the harness glue that runs every test of a binary against one shared cluster.
#![allow(dead_code)] // each test binary uses its own subset

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};
use switchyard_testkit::{free_port_block, GatewayProcess, GatewayYaml, KafkaCluster, KafkaDomain};

/// The gateway binary built for these tests.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_switchyard"))
}

/// A running gateway with one route, `main`, in front of a test cluster.
pub struct TestGateway {
    pub process: GatewayProcess,
    pub base_port: u16,
    pub admin_port: u16,
    pub node_ids: (i32, i32),
}

impl TestGateway {
    /// The route's bootstrap address, as clients are given it.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.base_port)
    }

    pub fn bootstrap_addr(&self) -> SocketAddr {
        loopback(self.base_port)
    }

    /// Every port this gateway's route serves, bootstrap included.
    pub fn ports(&self) -> Vec<u16> {
        let count = (self.node_ids.1 - self.node_ids.0 + 1) as u16;
        (self.base_port..=self.base_port + count).collect()
    }

    /// The port the gateway serves `node_id` on.
    pub fn port_of(&self, node_id: i32) -> u16 {
        self.base_port + 1 + (node_id - self.node_ids.0) as u16
    }
}

/// The config of a one-route gateway in front of `upstream_bootstrap`: route `main` on
/// `127.0.0.1:base_port` to domain `test-kafka`, inside a `gateway:` wrapper as these tests have
/// always written it. Callers add the admin API and other sections.
pub fn gateway_yaml<'a>(base_port: u16, upstream_bootstrap: &'a str, node_ids: (i32, i32)) -> GatewayYaml<'a> {
    GatewayYaml {
        gateway_wrapper: true,
        ..GatewayYaml::one_route(KafkaDomain::new(upstream_bootstrap, node_ids), loopback(base_port))
    }
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Start a gateway in front of `cluster`, serving node ids `first..first+n`, with its admin API
/// on a free port.
pub fn start_gateway(cluster: &KafkaCluster, extra_yaml: &str) -> anyhow::Result<TestGateway> {
    start_gateway_with_token(cluster, extra_yaml, None)
}

/// [`start_gateway`] with an admin token, so the admin API accepts changes.
pub fn start_gateway_with_token(
    cluster: &KafkaCluster,
    extra_yaml: &str,
    token: Option<&str>,
) -> anyhow::Result<TestGateway> {
    let brokers = cluster.brokers();
    let first = brokers.iter().map(|(id, _)| *id).min().unwrap_or(1);
    let last = brokers.iter().map(|(id, _)| *id).max().unwrap_or(1);
    let base_port = free_port_block((last - first + 2) as u16);
    let admin_port = free_port_block(1);
    let yaml = GatewayYaml {
        admin: Some(loopback(admin_port)),
        admin_token: token,
        sections: extra_yaml.to_owned(),
        ..gateway_yaml(base_port, &cluster.bootstrap(), (first, last))
    }
    .to_string();
    let process = GatewayProcess::start(&binary(), &yaml, &[loopback(base_port)])?;
    Ok(TestGateway { process, base_port, admin_port, node_ids: (first, last) })
}

/// A test of a binary: a name and a body that gets the binary's shared environment.
pub type TestFn<E> = fn(&E) -> anyhow::Result<()>;

/// Run `tests` against one environment built by `setup`, one test at a time unless
/// `--test-threads` says otherwise; the environment is dropped (its processes stopped) before
/// the process exits.
pub fn run_suite<E: Send + Sync + 'static>(
    tests: &[(&'static str, TestFn<E>)],
    setup: impl FnOnce() -> anyhow::Result<E>,
) {
    run_suite_with_known_failures(tests, &[], setup)
}

/// [`run_suite`] with the tests named in `known_failing` marked ignored: they reproduce an open
/// issue, are listed and skipped by default, and run with `--ignored` (or `--include-ignored`).
#[allow(dead_code)] // Each test binary compiles this module; not every one has known failures.
pub fn run_suite_with_known_failures<E: Send + Sync + 'static>(
    tests: &[(&'static str, TestFn<E>)],
    known_failing: &[&str],
    setup: impl FnOnce() -> anyhow::Result<E>,
) {
    let mut args = Arguments::from_args();
    if args.test_threads.is_none() {
        args.test_threads = Some(1);
    }
    // Ignored tests run only when asked for: the environment is started for them only then.
    let runs = |name: &str| !known_failing.contains(&name) || args.ignored || args.include_ignored;
    let selected = tests.iter().any(|(name, _)| is_selected(&args, name) && runs(name));
    let env = if selected && !args.list {
        match setup() {
            Ok(env) => Some(Arc::new(env)),
            Err(e) => {
                eprintln!("test environment failed to start: {e:#}");
                std::process::exit(101);
            }
        }
    } else {
        None
    };
    let trials = tests
        .iter()
        .map(|&(name, test)| {
            let env = env.clone();
            Trial::test(name, move || {
                let env = env.expect("environment is set up whenever a test runs");
                test(&env).map_err(|e| Failed::from(format!("{e:#}")))
            })
            .with_ignored_flag(known_failing.contains(&name))
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    drop(env);
    conclusion.exit();
}

fn is_selected(args: &Arguments, name: &str) -> bool {
    match &args.filter {
        None => true,
        Some(filter) if args.exact => name == filter,
        Some(filter) => name.contains(filter.as_str()),
    }
}

/// The admin API's `/metrics` at `admin` (`host:port`), parsed.
pub fn scrape_metrics(admin: &str) -> anyhow::Result<prometheus_parse::Scrape> {
    use anyhow::Context;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into();
    let mut response = agent.get(&format!("http://{admin}/metrics")).call()?;
    anyhow::ensure!(response.status() == 200, "/metrics answered {}", response.status());
    let body = response.body_mut().read_to_string()?;
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .context("/metrics is not in Prometheus text format")
}

/// The sum of every sample of `name` whose labels include `labels` (0 when there is none).
pub fn metric_sum(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// The audit log's CONNECTION `close` events so far.
pub fn audit_closes(audit: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(audit)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["type"] == "CONNECTION" && event["event"] == "close")
        .collect()
}

/// Waits (up to 15 s) until a `close` event of the audit log matches `wanted` and returns it;
/// audit events are written when the connection closes, off the data path.
pub fn wait_for_audit_close(
    audit: &std::path::Path,
    what: &str,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> anyhow::Result<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        if let Some(event) = audit_closes(audit).into_iter().find(|e| wanted(e)) {
            return Ok(event);
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no audit close event {what}; closes:\n{:#?}",
            audit_closes(audit)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
