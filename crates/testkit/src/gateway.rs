//! The Switchyard gateway binary as a child process, and the config files it is started with.
//!
//! End-to-end tests run the real binary (not the library in-process) so that config loading,
//! signal handling and listener setup are covered exactly as deployed, and so that a crash shows
//! up as a dead process with a log rather than a poisoned test.
//!
//! The integration tests and the benchmark mostly run the same kind of gateway: one route in
//! front of one Kafka cluster. [`GatewayYaml`] writes that config in one place, so each caller
//! states only where its gateway differs and a change to the config schema is made once.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use crate::process::ServerProcess;

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// A running gateway; killed when dropped. Its pid, log, config path and stopping are
/// [`ServerProcess`]'s.
#[derive(Debug)]
pub struct GatewayProcess {
    server: ServerProcess,
}

impl GatewayProcess {
    /// Writes `config_yaml` to a temporary file, runs `<binary> run --config <file>` with
    /// `RUST_LOG=info` (unless `RUST_LOG` is already set) and waits up to 30 s until every
    /// address in `wait_for` accepts TCP connections.
    pub fn start(binary: &Path, config_yaml: &str, wait_for: &[SocketAddr]) -> Result<Self> {
        Self::start_with_env(binary, config_yaml, &[], wait_for)
    }

    /// [`GatewayProcess::start`] with extra environment variables (`GATEWAY_CLUSTER_SECRET`,
    /// say: secrets are never in the config file).
    pub fn start_with_env(
        binary: &Path,
        config_yaml: &str,
        env: &[(&str, &str)],
        wait_for: &[SocketAddr],
    ) -> Result<Self> {
        let server = start_gateway_command(config_yaml, wait_for, |config_path| {
            let mut cmd = Command::new(binary);
            cmd.arg("run").arg("--config").arg(config_path).envs(env.iter().copied());
            cmd
        })?;
        Ok(Self { server })
    }
}

/// Writes `config_yaml` to a temporary file, runs the command `command` makes for that file
/// (the gateway's `run`, directly or through a wrapper) with `RUST_LOG=info` unless `RUST_LOG`
/// is already set, and waits up to 30 s until every address in `wait_for` accepts connections.
pub(crate) fn start_gateway_command(
    config_yaml: &str,
    wait_for: &[SocketAddr],
    command: impl FnOnce(&Path) -> Command,
) -> Result<ServerProcess> {
    let mut server = ServerProcess::start("gateway", "switchyard.yaml", config_yaml, |config_path| {
        let mut cmd = command(config_path);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        Ok(cmd)
    })?;
    server.wait_until_ready(&format!("listening on {wait_for:?}"), || {
        Ok(wait_for.iter().all(|addr| TcpStream::connect_timeout(addr, CONNECT_TIMEOUT).is_ok()))
    })?;
    Ok(server)
}

impl Deref for GatewayProcess {
    type Target = ServerProcess;

    fn deref(&self) -> &ServerProcess {
        &self.server
    }
}

impl DerefMut for GatewayProcess {
    fn deref_mut(&mut self) -> &mut ServerProcess {
        &mut self.server
    }
}

/// A gateway config file as YAML text: Kafka streaming domains, routes to them, the admin API
/// and any other top-level sections. `to_string()` renders it.
///
/// Start from [`GatewayYaml::one_route`] (or `Default`, which has no domains and no routes) and
/// set what differs with struct update syntax:
///
/// ```
/// # use switchyard_testkit::gateway::{GatewayYaml, KafkaDomain};
/// let yaml = GatewayYaml {
///     admin: Some(([127, 0, 0, 1], 9000).into()),
///     sections: "proxy:\n  idleTimeoutMs: 2000\n".into(),
///     ..GatewayYaml::one_route(KafkaDomain::new("127.0.0.1:9092", (1, 3)), ([127, 0, 0, 1], 19092).into())
/// }
/// .to_string();
/// assert!(yaml.contains("routes:\n  - name: main\n    endpoint: \"127.0.0.1:19092\"\n"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct GatewayYaml<'a> {
    pub domains: Vec<KafkaDomain<'a>>,
    pub routes: Vec<Route<'a>>,
    /// `admin.address`; no `admin:` section when `None`.
    pub admin: Option<SocketAddr>,
    /// `admin.token`, the bearer token that admin changes need; written only with `admin`.
    pub admin_token: Option<&'a str>,
    /// Further top-level sections (`proxy:`, `proxyProtocol:`, `audit:`, …) as YAML, each line
    /// ending in a newline.
    pub sections: String,
    /// Nest everything under a top-level `gateway:` key, the Confluent Gateway layout that the
    /// gateway also reads.
    pub gateway_wrapper: bool,
}

impl<'a> GatewayYaml<'a> {
    /// One route, `main`, on `endpoint` in front of `domain` (see [`Route::new`]); no admin API,
    /// no other sections, no `gateway:` wrapper.
    pub fn one_route(domain: KafkaDomain<'a>, endpoint: SocketAddr) -> Self {
        Self { routes: vec![Route::new(endpoint, &domain)], domains: vec![domain], ..Self::default() }
    }
}

impl fmt::Display for GatewayYaml<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut yaml = String::from("streamingDomains:\n");
        for domain in &self.domains {
            let KafkaDomain { name, cluster_name, bootstrap_id, bootstrap, bootstrap_keys, node_range_name, node_ids } =
                domain;
            write!(
                yaml,
                r#"  - name: {name}
    type: kafka
    kafkaCluster:
      name: {cluster_name}
      bootstrapServers:
        - id: {bootstrap_id}
          endpoint: "{bootstrap}"
{bootstrap_keys}      nodeIdRanges:
        - name: {node_range_name}
          start: {first}
          end: {last}
"#,
                bootstrap_keys = Indented(bootstrap_keys, "          "),
                first = node_ids.0,
                last = node_ids.1,
            )?;
        }
        yaml.push_str("routes:\n");
        for route in &self.routes {
            writeln!(yaml, "  - name: {}\n    endpoint: \"{}\"", route.name, route.endpoint)?;
            if let Some(ip) = route.bind_address {
                writeln!(yaml, "    bindAddress: {ip}")?;
            }
            if route.broker_id_by_port {
                yaml.push_str("    brokerIdentificationStrategy:\n      type: port\n");
            }
            writeln!(yaml, "    streamingDomain:\n      name: {}", route.domain)?;
            if let Some(id) = route.bootstrap_id {
                writeln!(yaml, "      bootstrapServerId: {id}")?;
            }
            write!(yaml, "{}", Indented(route.keys, "    "))?;
        }
        if let Some(address) = self.admin {
            writeln!(yaml, "admin:\n  address: {address}")?;
            if let Some(token) = self.admin_token {
                writeln!(yaml, "  token: {token}")?;
            }
        }
        yaml.push_str(&self.sections);
        if !self.gateway_wrapper {
            return f.write_str(&yaml);
        }
        write!(f, "gateway:\n{}", Indented(&yaml, "  "))
    }
}

/// YAML lines written at the top level (`.0`) moved under a key: each line after `.1`, and
/// ending in a newline.
struct Indented<'a>(&'a str, &'a str);

impl fmt::Display for Indented<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.lines().try_for_each(|line| writeln!(f, "{}{line}", self.1))
    }
}

/// A streaming domain of `type: kafka`: one Kafka cluster, one bootstrap server entry, one node
/// id range.
#[derive(Debug, Clone)]
pub struct KafkaDomain<'a> {
    /// The domain's name, which routes refer to.
    pub name: &'a str,
    /// `kafkaCluster.name`.
    pub cluster_name: &'a str,
    /// The `id` of the `bootstrapServers` entry.
    pub bootstrap_id: &'a str,
    /// That entry's `endpoint`: the cluster's bootstrap address.
    pub bootstrap: &'a str,
    /// Further keys of that entry (the gateway's own `sasl:` login, say) as YAML written as if at
    /// the top level; empty for none.
    pub bootstrap_keys: &'a str,
    /// The `name` of the `nodeIdRanges` entry.
    pub node_range_name: &'a str,
    /// Its first and last node id: the brokers the gateway gives a port each.
    pub node_ids: (i32, i32),
}

impl<'a> KafkaDomain<'a> {
    /// Domain `test-kafka` on cluster `test-cluster`, reached through bootstrap server
    /// `plaintext`, with node id range `brokers`.
    pub fn new(bootstrap: &'a str, node_ids: (i32, i32)) -> Self {
        Self {
            name: "test-kafka",
            cluster_name: "test-cluster",
            bootstrap_id: "plaintext",
            bootstrap,
            bootstrap_keys: "",
            node_range_name: "brokers",
            node_ids,
        }
    }
}

/// A route: clients bootstrap on `endpoint` and reach each broker on a port after it.
#[derive(Debug, Clone)]
pub struct Route<'a> {
    pub name: &'a str,
    /// The address clients are told; the listeners bind to its host unless `bind_address` is set.
    pub endpoint: SocketAddr,
    /// `bindAddress`; left out when `None`.
    pub bind_address: Option<IpAddr>,
    /// Write `brokerIdentificationStrategy: {type: port}`, the only strategy there is (so leaving
    /// it out means the same).
    pub broker_id_by_port: bool,
    /// `streamingDomain.name`.
    pub domain: &'a str,
    /// `streamingDomain.bootstrapServerId`; left out when `None`.
    pub bootstrap_id: Option<&'a str>,
    /// Further keys of the route (`security:`, `fence:` …) as YAML written as if at the top
    /// level; empty for none.
    pub keys: &'a str,
}

impl<'a> Route<'a> {
    /// Route `main` on `endpoint` to `domain` through its bootstrap server entry, with the broker
    /// identification strategy written out.
    pub fn new(endpoint: SocketAddr, domain: &KafkaDomain<'a>) -> Self {
        Self {
            name: "main",
            endpoint,
            bind_address: None,
            broker_id_by_port: true,
            domain: domain.name,
            bootstrap_id: Some(domain.bootstrap_id),
            keys: "",
        }
    }
}
