//! The settings around the proxy rather than in it: the admin server, the audit log, the PROXY
//! protocol, the gateway cluster and config reloading. Each YAML field has an environment
//! variable that overrides it, so a container can be configured without editing the file.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::schema::{RawAdmin, RawAudit, RawCluster, RawProxyProtocol, RawReload, RawState};
use super::ConfigError;

pub const ENV_ADMIN_ADDRESS: &str = "GATEWAY_ADMIN_ADDRESS";
pub const ENV_ADMIN_TOKEN: &str = "GATEWAY_ADMIN_TOKEN";
pub const ENV_AUDIT_FILE: &str = "GATEWAY_AUDIT_LOG";
pub const ENV_STATE_DIR: &str = "GATEWAY_STATE_DIR";
pub const ENV_HAPROXY_PROTOCOL: &str = "GATEWAY_FEATURE_FLAGS_HAPROXY_PROTOCOL";
pub const ENV_TRUSTED_NETWORKS: &str = "GATEWAY_PROXY_PROTOCOL_TRUSTED_NETWORKS";
pub const ENV_CLUSTER_ID: &str = "GATEWAY_CLUSTER_ID";
pub const ENV_NODE_ID: &str = "GATEWAY_NODE_ID";
pub const ENV_RACK_ID: &str = "GATEWAY_RACK_ID";
pub const ENV_ADVERTISED_HOST: &str = "GATEWAY_ADVERTISED_HOST";
pub const ENV_INTERNAL_LOAD_BALANCING: &str = "GATEWAY_FEATURE_FLAGS_INTERNAL_LOAD_BALANCING";
pub const ENV_CONFIG_WATCH: &str = "GATEWAY_CONFIG_WATCH";
pub const ENV_CLUSTER_SECRET: &str = "GATEWAY_CLUSTER_SECRET";
pub const ENV_CLUSTER_SECRET_FILE: &str = "GATEWAY_CLUSTER_SECRET_FILE";

/// A cluster secret shorter than this is refused: it could be guessed offline from one signed
/// client id.
pub const MIN_CLUSTER_SECRET_BYTES: usize = 16;

/// How often a watched config file is looked at, unless `reload.intervalMs` says otherwise.
const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// How long a killed node stays a member before the group drops it.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(6);

/// Where the admin server listens when nothing says otherwise: loopback only.
pub const DEFAULT_ADMIN_ADDRESS: &str = "127.0.0.1:9190";

/// The admin HTTP server.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub address: SocketAddr,
    /// Bearer token mutating endpoints require; without one they are refused.
    pub token: Option<String>,
}

/// Where audit events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditSink {
    Stdout,
    File(PathBuf),
}

/// PROXY protocol on client connections.
#[derive(Debug, Clone, Default)]
pub struct ProxyProtocolSettings {
    pub enabled: bool,
    /// Peers allowed to send a header; empty means any peer.
    pub trusted_networks: Vec<IpNet>,
    pub header_timeout: Duration,
}

/// This node's gateway cluster, if any.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// `None`: a standalone gateway, no membership.
    pub id: Option<String>,
    pub node_id: String,
    pub rack: Option<String>,
    /// The host clients reach this node at (internal load balancing), or the load balancer's
    /// (external); `None` advertises each route's endpoint host.
    pub advertised_host: Option<String>,
    pub internal_load_balancing: bool,
    /// The streaming domain that holds membership; `None` means the first route's.
    pub domain: Option<String>,
    pub session_timeout: Duration,
    /// The key every node signs its membership and commands with; always set with `id`.
    pub secret: Option<ClusterSecret>,
}

/// The secret the nodes of a gateway cluster share. Whoever holds it can move every route, so
/// it has no `Display` and its `Debug` shows nothing: it cannot reach a log line, an error, the
/// admin API or the audit log by accident. Only [`ClusterSecret::expose`] reads it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret(Arc<[u8]>);

impl ClusterSecret {
    pub fn new(secret: impl AsRef<[u8]>) -> ClusterSecret {
        ClusterSecret(Arc::from(secret.as_ref()))
    }

    /// The key bytes, for signing and nothing else.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

/// Applying edits of the config file as they are saved, as a SIGHUP would.
#[derive(Debug, Clone)]
pub struct ReloadSettings {
    pub watch: bool,
    pub interval: Duration,
}

/// Reads environment variables; a parameter so tests need not touch the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(crate) fn admin(source: &str, raw: RawAdmin, env: EnvLookup<'_>) -> Result<AdminSettings, ConfigError> {
    let (field, text) = overridden("admin.address", raw.address, ENV_ADMIN_ADDRESS, env);
    let text = text.unwrap_or_else(|| DEFAULT_ADMIN_ADDRESS.to_string());
    let address = text.parse().map_err(|_| {
        ConfigError::new(source, field, format!("`{text}` is not ip:port"), "write an address such as 127.0.0.1:9190")
    })?;
    let (_, token) = overridden("admin.token", raw.token, ENV_ADMIN_TOKEN, env);
    Ok(AdminSettings { address, token: token.filter(|t| !t.is_empty()) })
}

pub(crate) fn audit(raw: RawAudit, env: EnvLookup<'_>) -> Option<AuditSink> {
    let (_, file) = overridden("audit.file", raw.file, ENV_AUDIT_FILE, env);
    file.filter(|f| !f.is_empty()).map(|f| if f == "stdout" { AuditSink::Stdout } else { AuditSink::File(f.into()) })
}

/// `state.directory`: where routes remember the ids their clients were shown; `None`: nowhere,
/// and a restart forgets them.
pub(crate) fn state_dir(raw: RawState, env: EnvLookup<'_>) -> Option<PathBuf> {
    let (_, dir) = overridden("state.directory", raw.directory, ENV_STATE_DIR, env);
    dir.filter(|d| !d.is_empty()).map(PathBuf::from)
}

pub(crate) fn proxy_protocol(
    source: &str,
    raw: RawProxyProtocol,
    env: EnvLookup<'_>,
) -> Result<ProxyProtocolSettings, ConfigError> {
    let enabled = flag(source, ENV_HAPROXY_PROTOCOL, raw.enabled, env)?;
    // An empty variable is treated as unset: it must never silently widen trust to every peer.
    let (field, networks) = match env(ENV_TRUSTED_NETWORKS).filter(|v| !v.trim().is_empty()) {
        Some(list) => (
            format!("${ENV_TRUSTED_NETWORKS}"),
            list.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        ),
        None => ("proxyProtocol.trustedNetworks".to_string(), raw.trusted_networks.unwrap_or_default()),
    };
    let trusted_networks = networks
        .iter()
        .map(|n| {
            parse_network(n).ok_or_else(|| {
                ConfigError::new(
                    source,
                    &field,
                    format!("`{n}` is not a network"),
                    "use CIDR notation such as 10.0.0.0/8, or a single address",
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let header_timeout = match raw.header_timeout_ms {
        Some(0) => {
            return Err(ConfigError::new(
                source,
                "proxyProtocol.headerTimeoutMs",
                "must be greater than 0",
                "use a positive number of milliseconds",
            ))
        }
        Some(ms) => Duration::from_millis(ms),
        None => Duration::from_secs(5),
    };
    Ok(ProxyProtocolSettings { enabled, trusted_networks, header_timeout })
}

pub(crate) fn reload(source: &str, raw: RawReload, env: EnvLookup<'_>) -> Result<ReloadSettings, ConfigError> {
    let watch = flag(source, ENV_CONFIG_WATCH, raw.watch, env)?;
    let interval = match raw.interval_ms {
        Some(0) => {
            return Err(ConfigError::new(
                source,
                "reload.intervalMs",
                "must be greater than 0",
                "use a positive number of milliseconds (the default is 2000)",
            ))
        }
        Some(ms) => Duration::from_millis(ms),
        None => DEFAULT_WATCH_INTERVAL,
    };
    Ok(ReloadSettings { watch, interval })
}

/// A boolean setting: the environment variable `var` if set, else the YAML value, else false.
fn flag(source: &str, var: &str, yaml: Option<bool>, env: EnvLookup<'_>) -> Result<bool, ConfigError> {
    match env(var) {
        Some(value) => parse_flag(&value).ok_or_else(|| {
            ConfigError::new(
                source,
                format!("${var}"),
                format!("`{value}` is not a boolean"),
                "set it to true or false",
            )
        }),
        None => Ok(yaml.unwrap_or(false)),
    }
}

/// `default_host` stands in for the advertised host when deriving a node id.
pub(crate) fn cluster(
    source: &str,
    raw: RawCluster,
    default_host: &str,
    env: EnvLookup<'_>,
) -> Result<ClusterSettings, ConfigError> {
    let field_of =
        |field: &str, var: &str, yaml: Option<String>| overridden(&format!("cluster.{field}"), yaml, var, env);
    let (id_field, id) = field_of("id", ENV_CLUSTER_ID, raw.id);
    let (node_field, node_id) = field_of("nodeId", ENV_NODE_ID, raw.node_id);
    let (rack_field, rack) = field_of("rack", ENV_RACK_ID, raw.rack);
    let (host_field, advertised_host) = field_of("advertisedHost", ENV_ADVERTISED_HOST, raw.advertised_host);
    let internal_load_balancing = match env(ENV_INTERNAL_LOAD_BALANCING) {
        Some(value) => parse_flag(&value).ok_or_else(|| {
            ConfigError::new(
                source,
                format!("${ENV_INTERNAL_LOAD_BALANCING}"),
                format!("`{value}` is not a boolean"),
                "set it to true or false",
            )
        })?,
        None => raw.internal_load_balancing.unwrap_or(true),
    };
    let id = id.filter(|v| !v.is_empty());
    let node_id = node_id
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| derived_node_id(advertised_host.as_deref().unwrap_or(default_host)));
    for (field, value) in [
        (&id_field, id.as_deref()),
        (&node_field, Some(node_id.as_str())),
        (&rack_field, rack.as_deref()),
        (&host_field, advertised_host.as_deref()),
    ] {
        if value.is_some_and(|v| v.contains('|') || v.contains(char::is_whitespace)) {
            return Err(ConfigError::new(
                source,
                field.as_str(),
                "contains `|` or whitespace",
                "use letters, digits, `.`, `-` and `_`",
            ));
        }
    }
    if id.is_some() && !internal_load_balancing && advertised_host.is_none() {
        return Err(ConfigError::new(
            source,
            host_field,
            "external load balancing needs the load balancer's host",
            format!(
                "set {ENV_ADVERTISED_HOST} (or cluster.advertisedHost) to the host clients reach the load balancer at"
            ),
        ));
    }
    let session_timeout = raw.session_timeout_ms.map(Duration::from_millis).unwrap_or(DEFAULT_SESSION_TIMEOUT);
    let secret = match &id {
        Some(_) => Some(cluster_secret(source, env)?),
        None => None,
    };
    Ok(ClusterSettings {
        id,
        node_id,
        rack: rack.filter(|r| !r.is_empty()),
        advertised_host,
        internal_load_balancing,
        domain: raw.domain,
        session_timeout,
        secret,
    })
}

/// The cluster secret from `GATEWAY_CLUSTER_SECRET`, or from the file
/// `GATEWAY_CLUSTER_SECRET_FILE` names (trimmed, so a trailing newline does not count). Only
/// the environment: a config file is often committed or shared, a secret must not be. Errors
/// never quote the value.
fn cluster_secret(source: &str, env: EnvLookup<'_>) -> Result<ClusterSecret, ConfigError> {
    let how = format!(
        "set {ENV_CLUSTER_SECRET} (or {ENV_CLUSTER_SECRET_FILE}, naming a file that holds it) to the same random value, \
         at least 32 characters, on every node, e.g. the output of `openssl rand -hex 32`"
    );
    let (field, secret) = match (env(ENV_CLUSTER_SECRET), env(ENV_CLUSTER_SECRET_FILE)) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                source,
                format!("${ENV_CLUSTER_SECRET}"),
                format!("both {ENV_CLUSTER_SECRET} and {ENV_CLUSTER_SECRET_FILE} are set"),
                "set only one of them",
            ))
        }
        (Some(secret), None) => (format!("${ENV_CLUSTER_SECRET}"), secret),
        (None, Some(path)) => {
            let field = format!("${ENV_CLUSTER_SECRET_FILE}");
            let secret = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError::new(source, &field, format!("cannot read `{path}`: {e}"), how.clone()))?;
            (field, secret)
        }
        (None, None) => {
            return Err(ConfigError::new(
                source,
                format!("${ENV_CLUSTER_SECRET}"),
                "a gateway cluster (cluster.id) needs a shared secret to sign its membership and commands",
                how,
            ))
        }
    };
    let secret = secret.trim();
    if secret.len() < MIN_CLUSTER_SECRET_BYTES {
        return Err(ConfigError::new(
            source,
            field,
            format!("the cluster secret is shorter than {MIN_CLUSTER_SECRET_BYTES} bytes"),
            how,
        ));
    }
    Ok(ClusterSecret::new(secret))
}

/// A node id that differs between nodes without configuration: host name and advertised host.
fn derived_node_id(advertised_host: &str) -> String {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = format!("{}-{advertised_host}", hostname.trim());
    name.trim_start_matches('-').to_string()
}

/// The environment variable's value if set, else the YAML value, with the name to blame.
fn overridden(field: &str, yaml: Option<String>, var: &str, env: EnvLookup<'_>) -> (String, Option<String>) {
    match env(var) {
        Some(value) => (format!("${var}"), Some(value)),
        None => (field.to_string(), yaml),
    }
}

fn parse_flag(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn parse_network(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>().ok().or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn environment_overrides_yaml() {
        let env = env_of(&[(ENV_HAPROXY_PROTOCOL, "TRUE"), (ENV_TRUSTED_NETWORKS, "10.0.0.0/8, 192.168.1.7")]);
        let raw = RawProxyProtocol { enabled: Some(false), trusted_networks: None, header_timeout_ms: None };
        let settings = proxy_protocol("f.yaml", raw, &env).unwrap();
        assert!(settings.enabled);
        assert_eq!(settings.trusted_networks.len(), 2);
        assert!(settings.trusted_networks[1].contains(&"192.168.1.7".parse::<IpAddr>().unwrap()));
    }

    #[test]
    fn the_state_directory_comes_from_the_file_or_the_variable_and_empty_means_none() {
        let raw = || RawState { directory: Some("/var/lib/switchyard".into()) };
        assert_eq!(state_dir(raw(), &env_of(&[])), Some(PathBuf::from("/var/lib/switchyard")));
        assert_eq!(state_dir(raw(), &env_of(&[(ENV_STATE_DIR, "/srv/state")])), Some(PathBuf::from("/srv/state")));
        assert_eq!(state_dir(raw(), &env_of(&[(ENV_STATE_DIR, "")])), None);
        assert_eq!(state_dir(RawState::default(), &env_of(&[])), None);
    }

    fn cluster_with(env: &dyn Fn(&str) -> Option<String>) -> Result<ClusterSettings, ConfigError> {
        let raw = RawCluster { id: Some("orders".into()), node_id: Some("gw-1".into()), ..RawCluster::default() };
        cluster("f.yaml", raw, "127.0.0.1", env)
    }

    #[test]
    fn a_cluster_refuses_to_start_without_a_secret() {
        let err = cluster_with(&env_of(&[])).unwrap_err();
        assert_eq!(err.field, "$GATEWAY_CLUSTER_SECRET");
        assert!(err.fix.contains("GATEWAY_CLUSTER_SECRET") && err.fix.contains("every node"), "{}", err.fix);
        let standalone = cluster("f.yaml", RawCluster::default(), "127.0.0.1", &env_of(&[])).unwrap();
        assert!(standalone.secret.is_none());
    }

    #[test]
    fn a_short_secret_is_refused_without_being_quoted() {
        let err = cluster_with(&env_of(&[(ENV_CLUSTER_SECRET, "  short-secret  \n")])).unwrap_err();
        assert!(err.problem.contains("shorter than 16"), "{}", err.problem);
        assert!(!format!("{err:?} {}", err.problem).contains("short-secret"));
    }

    #[test]
    fn the_secret_comes_from_the_variable_or_a_file_and_never_shows() {
        let secret = "0123456789abcdef0123456789abcdef";
        let settings = cluster_with(&env_of(&[(ENV_CLUSTER_SECRET, "0123456789abcdef0123456789abcdef")])).unwrap();
        assert_eq!(settings.secret.as_ref().unwrap().expose(), secret.as_bytes());
        assert!(!format!("{settings:?}").contains(secret), "{settings:?}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, format!("{secret}\n")).unwrap();
        let path = path.display().to_string();
        let env = move |name: &str| (name == ENV_CLUSTER_SECRET_FILE).then(|| path.clone());
        let from_file = cluster_with(&env).unwrap();
        assert_eq!(from_file.secret, settings.secret);
        let missing = move |name: &str| (name == ENV_CLUSTER_SECRET_FILE).then(|| "/nonexistent/secret".to_string());
        assert_eq!(cluster_with(&missing).unwrap_err().field, "$GATEWAY_CLUSTER_SECRET_FILE");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let env = env_of(&[(ENV_HAPROXY_PROTOCOL, "perhaps")]);
        let err = proxy_protocol("f.yaml", RawProxyProtocol::default(), &env).unwrap_err();
        assert_eq!(err.field, "$GATEWAY_FEATURE_FLAGS_HAPROXY_PROTOCOL");
        let env = env_of(&[(ENV_ADMIN_ADDRESS, "localhost")]);
        let err = admin("f.yaml", RawAdmin::default(), &env).unwrap_err();
        assert_eq!(err.field, "$GATEWAY_ADMIN_ADDRESS");
    }
}
