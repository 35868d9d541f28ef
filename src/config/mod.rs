//! Gateway configuration: where it comes from, what it means once checked.
//!
//! A config is read from the file given on the command line, else from `GATEWAY_CONFIG_FILE`,
//! else the built-in local default is used (one route on 127.0.0.1:19092 in front of a Kafka on
//! 127.0.0.1:9092). Loading checks the whole file at once and turns it into [`GatewayConfig`],
//! whose parts the rest of the gateway can trust: every route names an existing domain, every
//! endpoint parses, no two listeners share a port. Every error names the file, the field, and
//! what to change.

mod host_pattern;
mod operability;
mod port_map;
mod principal_rules;
mod schema;
mod security;
mod swap;
mod switchover;
mod validate;
pub mod watch;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use host_pattern::HostPattern;
pub use operability::{
    AdminSettings, AuditSink, ClusterSecret, ClusterSettings, EnvLookup, ProxyProtocolSettings, ReloadSettings,
    DEFAULT_ADMIN_ADDRESS, ENV_ADMIN_ADDRESS, ENV_ADMIN_TOKEN, ENV_ADVERTISED_HOST, ENV_AUDIT_FILE, ENV_CLUSTER_ID,
    ENV_CLUSTER_SECRET, ENV_CLUSTER_SECRET_FILE, ENV_CONFIG_WATCH, ENV_HAPROXY_PROTOCOL, ENV_INTERNAL_LOAD_BALANCING,
    ENV_NODE_ID, ENV_RACK_ID, ENV_STATE_DIR, ENV_TRUSTED_NETWORKS,
};
pub use port_map::PortMap;
pub use principal_rules::PrincipalRules;
pub use security::{BrokerSecurity, ClientAuth, SaslMechanism, SaslSettings, Secret, Store, StoreKind, TlsSettings};
pub use swap::{
    client_users, ClientAuthSettings, ClusterTemplate, ScramAdmin, SecretProvider, SecretStoreConfig, SwapSettings,
    TemplateValue,
};
pub use switchover::{kafka_error_code, CatchUpPolicy, FenceMode, GroupOffsets, RouteFence, SwitchoverRequest};
pub use validate::ConfigError;

/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_FILE_ENV: &str = "GATEWAY_CONFIG_FILE";

/// The configuration used when neither `--config` nor `GATEWAY_CONFIG_FILE` names a file.
pub const BUILT_IN_DEFAULT: &str = include_str!("default.yaml");

/// A checked configuration, ready to run.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where it came from, for messages: a path or `<built-in default>`.
    pub source: String,
    pub domains: Vec<DomainConfig>,
    pub routes: Vec<RouteConfig>,
    /// `secretStores`: where swap routes look up the credentials clients are mapped to.
    pub secret_stores: Vec<SecretStoreConfig>,
    pub proxy: ProxySettings,
    pub proxy_protocol: ProxyProtocolSettings,
    pub admin: AdminSettings,
    pub audit: Option<AuditSink>,
    pub cluster: ClusterSettings,
    pub reload: ReloadSettings,
    /// `state.directory`: where routes remember, across restarts, the ids clients were shown.
    pub state_dir: Option<PathBuf>,
}

/// A backend Kafka cluster.
#[derive(Debug, Clone)]
pub struct DomainConfig {
    pub name: String,
    pub cluster_name: String,
    pub bootstrap_servers: Vec<BootstrapServer>,
    pub node_id_ranges: Vec<NodeIdRange>,
}

/// One named listener of a domain's brokers, with the addresses to bootstrap from.
#[derive(Debug, Clone)]
pub struct BootstrapServer {
    pub id: String,
    pub addresses: Vec<HostPort>,
    /// TLS and SASL of the listener, for every connection the gateway makes to it.
    pub security: BrokerSecurity,
}

/// Node ids `start..=end` that a route serves, each on a port of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdRange {
    pub name: String,
    pub start: i32,
    pub end: i32,
}

/// A client-facing endpoint bound to one domain.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    /// What clients bootstrap from, and the host advertised for every broker.
    pub endpoint: HostPort,
    /// The address every listener of the route binds to.
    pub bind_ip: std::net::IpAddr,
    pub domain: String,
    /// The domain's bootstrap server (listener) the route uses; `None` means its first.
    pub bootstrap_server_id: Option<String>,
    /// The bootstrap addresses of the chosen listener of the domain, tried in order.
    pub upstream_bootstrap: Vec<HostPort>,
    /// How that listener is secured.
    pub upstream_security: BrokerSecurity,
    /// Client-facing TLS; `None`: plaintext.
    pub tls: Option<TlsSettings>,
    /// `auth: swap`: how the gateway authenticates clients and logs in for them; `None`:
    /// passthrough.
    pub swap: Option<SwapSettings>,
    /// Node ids of the route's own domain first, then those of every other domain it could be
    /// switched to, so no port ever serves two different node ids. A host route has only its
    /// bootstrap port.
    pub port_map: PortMap,
    /// The host strategy's broker names (SNI), `None` for the port strategy.
    pub host_pattern: Option<HostPattern>,
    /// The cluster id clients are shown; `None` pins the first one seen.
    pub cluster_id: Option<String>,
    /// The catch-up gate a switchover of this route uses unless told otherwise.
    pub catch_up: CatchUpPolicy,
    pub catch_up_timeout: Option<Duration>,
    /// How consumer groups' offsets cross over in a switchover of this route; `None`: they do not.
    pub group_offsets: Option<GroupOffsets>,
    /// What the fence does with new requests during a switchover of this route.
    pub fence: FenceMode,
    /// The fence the file holds on the route (`fence:`), if any.
    pub config_fence: Option<RouteFence>,
}

/// Limits and timeouts that apply to every connection.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub max_frame_bytes: usize,
    /// Bytes of large frames all connections together may buffer (see `proxy::budget`).
    pub buffer_budget_bytes: usize,
    pub max_in_flight_requests: usize,
    /// Time from the first byte of a request frame to its last; trickling bytes don't extend it.
    pub frame_timeout: Duration,
    /// Open client connections, across every route.
    pub max_connections: usize,
    /// Open client connections of one route.
    pub max_connections_per_route: usize,
    /// Open client connections from one client address (the PROXY protocol's source where used).
    pub max_connections_per_client: usize,
    pub idle_timeout: Duration,
    /// How long a write to a client may make no progress (the client reads nothing).
    pub write_timeout: Duration,
    pub connect_timeout: Duration,
    /// Time from accepting a client connection on a TLS route to the end of its handshake.
    pub tls_handshake_timeout: Duration,
    /// Client TLS handshakes in progress at once, across routes; more wait their turn (within
    /// their handshake timeout), so a flood of handshakes has bounded memory and CPU.
    pub max_tls_handshakes: usize,
    pub drain_timeout: Duration,
    pub metadata_refresh_interval: Duration,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            // Kafka's own socket.request.max.bytes default.
            max_frame_bytes: 100 * 1024 * 1024,
            // Ten of the largest frames at once; at least two are needed (see validation).
            buffer_budget_bytes: 1024 * 1024 * 1024,
            max_in_flight_requests: 1024,
            // Kafka has no such limit; a minute moves a 100 MiB request at about 14 Mbit/s.
            frame_timeout: Duration::from_secs(60),
            // Each client connection costs two file descriptors (client and broker).
            max_connections: 8_192,
            max_connections_per_route: 8_192,
            max_connections_per_client: 1_024,
            // Kafka's connections.max.idle.ms default.
            idle_timeout: Duration::from_secs(600),
            // Kafka's request.timeout.ms default: a client that reads nothing for that long has
            // given up on the answer anyway.
            write_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            max_tls_handshakes: 256,
            drain_timeout: Duration::from_secs(30),
            metadata_refresh_interval: Duration::from_secs(30),
        }
    }
}

/// `host:port` as written in the config.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Which file to read: `--config`, else `GATEWAY_CONFIG_FILE`, else none (built-in default).
pub fn resolve_path(cli: Option<PathBuf>) -> Option<PathBuf> {
    cli.or_else(|| std::env::var_os(CONFIG_FILE_ENV).filter(|v| !v.is_empty()).map(PathBuf::from))
}

/// Read and check a config file, or the built-in default when `path` is `None`.
pub fn load(path: Option<&Path>) -> Result<GatewayConfig, ConfigError> {
    match path {
        Some(path) => {
            let source = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(
                    &source,
                    "",
                    format!("cannot read the file: {e}"),
                    "check the path given by --config or GATEWAY_CONFIG_FILE",
                )
            })?;
            parse(&source, &text)
        }
        None => parse("<built-in default>", BUILT_IN_DEFAULT),
    }
}

/// Check config text against the process environment; `source` names it in errors.
pub fn parse(source: &str, text: &str) -> Result<GatewayConfig, ConfigError> {
    parse_with_env(source, text, &|name| std::env::var(name).ok())
}

/// [`parse`] with the environment given explicitly.
pub fn parse_with_env(source: &str, text: &str, env: EnvLookup<'_>) -> Result<GatewayConfig, ConfigError> {
    let raw = validate::deserialize(source, text)?;
    validate::resolve(source, raw, env)
}
