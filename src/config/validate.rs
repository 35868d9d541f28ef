//! Turning the raw YAML into a [`GatewayConfig`] the gateway can trust.
//!
//! Each check produces a [`ConfigError`] that says which file, which field (as a path such as
//! `routes[1].streamingDomain.name`), what is wrong and how to fix it.

use std::collections::HashSet;
use std::net::{IpAddr, ToSocketAddrs};
use std::time::Duration;

use super::host_pattern::{self, HostPattern};
use super::operability::{self, EnvLookup};
use super::schema::{RawBrokerIdentification, RawRouteFence};
use super::schema::{RawConfig, RawKafkaCluster, RawNodeIdRange, RawProxySettings, RawRoute, RawStreamingDomain};
use super::security::RawRouteSecurity;
use super::security::{self, ClientAuth, Leg};
use super::PortMap;
use super::{kafka_error_code, GroupOffsets, RouteFence};
use super::{
    BootstrapServer, DomainConfig, GatewayConfig, HostPort, NodeIdRange, ProxySettings, RouteConfig, SwapSettings,
    TlsSettings,
};

/// A config problem, with everything a user needs to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {}{problem}. Fix: {fix}", field_prefix(field))]
pub struct ConfigError {
    /// The config file (or other source) the error is in.
    pub file: String,
    pub field: String,
    pub problem: String,
    pub fix: String,
}

/// `field `x`: ` before the problem, when the error is about one field.
fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("field `{field}`: ")
    }
}

impl ConfigError {
    pub(crate) fn new(
        source: &str,
        field: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        ConfigError { file: source.to_string(), field: field.into(), problem: problem.into(), fix: fix.into() }
    }
}

/// The node ids served when a domain lists no `nodeIdRanges`.
pub const DEFAULT_NODE_ID_RANGE: (i32, i32) = (0, 31);

/// Parse YAML text into the raw schema, accepting a top-level `gateway:` wrapper.
pub(crate) fn deserialize(source: &str, text: &str) -> Result<RawConfig, ConfigError> {
    let mut value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| {
        ConfigError::new(source, "", format!("not valid YAML: {e}"), "correct the YAML syntax at the position shown")
    })?;
    let mut prefix = "";
    if let Some(mapping) = value.as_mapping_mut() {
        if let Some(inner) = mapping.remove("gateway") {
            if let Some(other) = mapping.keys().next() {
                let other = serde_yaml_ng::to_string(other).unwrap_or_default();
                return Err(ConfigError::new(
                    source,
                    other.trim(),
                    "is outside the top-level `gateway:` block and would be ignored",
                    "indent it under `gateway:`, or drop the `gateway:` wrapper and keep every key at the top level",
                ));
            }
            value = inner;
            prefix = "gateway.";
        }
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = format!("{prefix}{}", e.path());
        ConfigError::new(
            source,
            field,
            e.inner().to_string(),
            "see docs/configuration.md for the fields and their types",
        )
    })
}

/// Check that the parts fit together and resolve defaults.
pub(crate) fn resolve(source: &str, raw: RawConfig, env: EnvLookup<'_>) -> Result<GatewayConfig, ConfigError> {
    let secret_stores = super::swap::secret_stores(source, raw.secret_stores)?;
    let checker = Checker { source, secret_stores: &secret_stores };
    let domains = checker.domains(raw.streaming_domains)?;
    let gateway_node_id =
        env(operability::ENV_NODE_ID).or_else(|| raw.cluster.node_id.clone()).filter(|n| !n.is_empty());
    let routes = checker.routes(raw.routes, &domains, gateway_node_id.as_deref())?;
    checker.no_port_clash(&routes)?;
    let proxy = checker.proxy(raw.proxy)?;
    let proxy_protocol = operability::proxy_protocol(source, raw.proxy_protocol, env)?;
    let admin = operability::admin(source, raw.admin, env)?;
    let audit = operability::audit(raw.audit, env);
    let state_dir = operability::state_dir(raw.state, env);
    let reload = operability::reload(source, raw.reload, env)?;
    let cluster_domain = raw.cluster.domain.clone();
    let cluster = operability::cluster(source, raw.cluster, &routes[0].endpoint.host, env)?;
    if let Some(domain) = cluster_domain.filter(|d| !domains.iter().any(|known| &known.name == d)) {
        return Err(checker.err(
            "cluster.domain",
            format!("unknown streaming domain `{domain}`"),
            "name one of the streamingDomains, or remove it to use the first route's domain",
        ));
    }
    Ok(GatewayConfig {
        source: source.to_string(),
        domains,
        routes,
        secret_stores,
        proxy,
        proxy_protocol,
        admin,
        audit,
        cluster,
        reload,
        state_dir,
    })
}

struct Checker<'a> {
    source: &'a str,
    secret_stores: &'a [super::SecretStoreConfig],
}

impl Checker<'_> {
    fn err(&self, field: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> ConfigError {
        ConfigError::new(self.source, field, problem, fix)
    }

    fn domains(&self, raw: Vec<RawStreamingDomain>) -> Result<Vec<DomainConfig>, ConfigError> {
        if raw.is_empty() {
            return Err(self.err(
                "streamingDomains",
                "no streaming domain is defined",
                "add at least one entry with name, type: kafka and kafkaCluster.bootstrapServers",
            ));
        }
        let mut names = HashSet::new();
        raw.into_iter()
            .enumerate()
            .map(|(i, d)| {
                let at = format!("streamingDomains[{i}]");
                self.non_empty(&format!("{at}.name"), &d.name)?;
                if !names.insert(d.name.clone()) {
                    return Err(self.err(
                        format!("{at}.name"),
                        format!("domain name `{}` is used twice", d.name),
                        "give every streaming domain a unique name",
                    ));
                }
                if d.kind != "kafka" {
                    return Err(self.err(
                        format!("{at}.type"),
                        format!("unsupported type `{}`", d.kind),
                        "set `type: kafka`",
                    ));
                }
                self.cluster(&format!("{at}.kafkaCluster"), d.name, d.kafka_cluster)
            })
            .collect()
    }

    fn cluster(&self, at: &str, name: String, raw: RawKafkaCluster) -> Result<DomainConfig, ConfigError> {
        if raw.bootstrap_servers.is_empty() {
            return Err(self.err(
                format!("{at}.bootstrapServers"),
                "no bootstrap server is listed",
                "add an entry with an id and an endpoint such as `kafka-1:9092`",
            ));
        }
        let mut ids = HashSet::new();
        let mut bootstrap_servers = Vec::new();
        for (i, server) in raw.bootstrap_servers.into_iter().enumerate() {
            let field = format!("{at}.bootstrapServers[{i}]");
            self.non_empty(&format!("{field}.id"), &server.id)?;
            if !ids.insert(server.id.clone()) {
                return Err(self.err(
                    format!("{field}.id"),
                    format!("bootstrap server id `{}` is used twice", server.id),
                    "give every bootstrap server of a domain a unique id",
                ));
            }
            let (protocol, endpoint) = security::split_protocol(server.endpoint.trim());
            let security = security::broker(self.source, &field, protocol, server.ssl, server.sasl)?;
            let addresses = endpoint
                .split(',')
                .map(|part| self.host_port(&format!("{field}.endpoint"), part.trim()))
                .collect::<Result<Vec<_>, _>>()?;
            bootstrap_servers.push(BootstrapServer { id: server.id, addresses, security });
        }
        let node_id_ranges = self.node_id_ranges(&format!("{at}.nodeIdRanges"), raw.node_id_ranges)?;
        Ok(DomainConfig { name, cluster_name: raw.name, bootstrap_servers, node_id_ranges })
    }

    fn node_id_ranges(&self, at: &str, raw: Option<Vec<RawNodeIdRange>>) -> Result<Vec<NodeIdRange>, ConfigError> {
        let Some(raw) = raw else {
            let (start, end) = DEFAULT_NODE_ID_RANGE;
            return Ok(vec![NodeIdRange { name: "default".into(), start, end }]);
        };
        if raw.is_empty() {
            return Err(self.err(
                at,
                "the list is empty",
                "list at least one range, or remove the key to use the default 0-31",
            ));
        }
        let mut ranges: Vec<NodeIdRange> = Vec::new();
        for (i, r) in raw.into_iter().enumerate() {
            let field = format!("{at}[{i}]");
            if r.start < 0 || r.end < r.start {
                return Err(self.err(
                    field,
                    format!("range {}-{} is not valid", r.start, r.end),
                    "use 0 <= start <= end",
                ));
            }
            if let Some(other) = ranges.iter().find(|o| o.start <= r.end && r.start <= o.end) {
                return Err(self.err(
                    field,
                    format!(
                        "range `{}` ({}-{}) overlaps range `{}` ({}-{})",
                        r.name, r.start, r.end, other.name, other.start, other.end
                    ),
                    "make the ranges disjoint",
                ));
            }
            if ranges.iter().any(|o| o.name == r.name) {
                return Err(self.err(
                    format!("{field}.name"),
                    format!("range name `{}` is used twice", r.name),
                    "give every range a unique name",
                ));
            }
            ranges.push(NodeIdRange { name: r.name, start: r.start, end: r.end });
        }
        Ok(ranges)
    }

    fn routes(
        &self,
        raw: Vec<RawRoute>,
        domains: &[DomainConfig],
        gateway_node_id: Option<&str>,
    ) -> Result<Vec<RouteConfig>, ConfigError> {
        if raw.is_empty() {
            return Err(self.err(
                "routes",
                "no route is defined",
                "add a route with a name, an endpoint and a streamingDomain",
            ));
        }
        let mut names = HashSet::new();
        raw.into_iter()
            .enumerate()
            .map(|(i, r)| {
                let at = format!("routes[{i}]");
                self.non_empty(&format!("{at}.name"), &r.name)?;
                if !names.insert(r.name.clone()) {
                    return Err(self.err(
                        format!("{at}.name"),
                        format!("route name `{}` is used twice", r.name),
                        "give every route a unique name",
                    ));
                }
                self.route(&at, r, domains, gateway_node_id)
            })
            .collect()
    }

    fn route(
        &self,
        at: &str,
        r: RawRoute,
        domains: &[DomainConfig],
        gateway_node_id: Option<&str>,
    ) -> Result<RouteConfig, ConfigError> {
        let endpoint = self.host_port(&format!("{at}.endpoint"), &r.endpoint)?;
        let bind_ip = match &r.bind_address {
            Some(addr) => self.ip(&format!("{at}.bindAddress"), addr)?,
            None => self.ip(&format!("{at}.endpoint"), &endpoint.host)?,
        };
        let host_pattern = self.host_pattern(at, r.broker_identification_strategy.as_ref(), gateway_node_id)?;
        let domain_field = format!("{at}.streamingDomain.name");
        let domain = domains.iter().find(|d| d.name == r.streaming_domain.name).ok_or_else(|| {
            let known: Vec<&str> = domains.iter().map(|d| d.name.as_str()).collect();
            self.err(
                &domain_field,
                format!("unknown streaming domain `{}`", r.streaming_domain.name),
                format!("use one of: {}", known.join(", ")),
            )
        })?;
        let bootstrap_server_id = r.streaming_domain.bootstrap_server_id;
        let upstream = self.bootstrap_for(at, domain, bootstrap_server_id.as_deref())?;
        let (tls, swap) = self.route_security(at, r.security)?;
        let stores_by_domain = swap.iter().flat_map(|s| s.domain_secret_stores.keys());
        if let Some(unknown) = stores_by_domain.into_iter().find(|d| !domains.iter().any(|known| &known.name == *d)) {
            let known: Vec<&str> = domains.iter().map(|d| d.name.as_str()).collect();
            return Err(self.err(
                format!("{at}.security.swapConfig.domainSecretStores.{unknown}"),
                format!("unknown streaming domain `{unknown}`"),
                format!("use one of: {}", known.join(", ")),
            ));
        }
        if host_pattern.is_some() && tls.is_none() {
            return Err(self.err(
                format!("{at}.security.ssl"),
                "the host strategy tells brokers apart by TLS SNI, so the route needs TLS",
                "add security.ssl with the gateway's keystore (its certificate must cover the endpoint host and the pattern's names, e.g. a wildcard), or use `type: port`",
            ));
        }
        let node_ids = if host_pattern.is_some() { Vec::new() } else { switchable_node_ids(domains) };
        let port_map = PortMap::new(endpoint.port, &node_ids).map_err(|problem| {
            self.err(format!("{at}.endpoint"), problem, "lower the endpoint port or narrow the domains' nodeIdRanges")
        })?;
        Ok(RouteConfig {
            name: r.name,
            endpoint,
            bind_ip,
            domain: domain.name.clone(),
            bootstrap_server_id,
            upstream_bootstrap: upstream.addresses.clone(),
            upstream_security: upstream.security.clone(),
            tls,
            swap,
            port_map,
            host_pattern,
            cluster_id: r.cluster_id,
            catch_up: r.switchover.as_ref().and_then(|s| s.catch_up).unwrap_or_default(),
            catch_up_timeout: r.switchover.as_ref().and_then(|s| s.catch_up_timeout_ms).map(Duration::from_millis),
            fence: r.switchover.as_ref().and_then(|s| s.fence).unwrap_or_default(),
            group_offsets: self.group_offsets(at, r.switchover.as_ref().and_then(|s| s.group_offsets.clone()))?,
            config_fence: self.route_fence(at, r.fence)?,
        })
    }

    /// The route's broker identification: `None` for `type: port` (the default), the checked
    /// pattern for `type: host`, with `$(gatewayNodeId)` replaced by this node's id.
    fn host_pattern(
        &self,
        at: &str,
        raw: Option<&RawBrokerIdentification>,
        gateway_node_id: Option<&str>,
    ) -> Result<Option<HostPattern>, ConfigError> {
        let field = format!("{at}.brokerIdentificationStrategy");
        let Some(raw) = raw else { return Ok(None) };
        match (raw.kind.as_str(), &raw.pattern) {
            ("port", None) => Ok(None),
            ("port", Some(_)) => Err(self.err(
                format!("{field}.pattern"),
                "applies to `type: host` only",
                "remove it, or use `type: host`",
            )),
            ("host", None) => Err(self.err(
                format!("{field}.pattern"),
                "`type: host` needs the broker names",
                "set pattern, e.g. `broker-$(nodeId).gateway.example.com`",
            )),
            ("host", Some(pattern)) => {
                let pattern = match (pattern.contains(host_pattern::GATEWAY_NODE_ID), gateway_node_id) {
                    (false, _) => pattern.clone(),
                    (true, Some(node)) => pattern.replace(host_pattern::GATEWAY_NODE_ID, node),
                    (true, None) => {
                        return Err(self.err(
                            format!("{field}.pattern"),
                            "uses $(gatewayNodeId) but this node has no id",
                            "set GATEWAY_NODE_ID (or cluster.nodeId) on every node",
                        ))
                    }
                };
                HostPattern::parse(&pattern).map(Some).map_err(|problem| {
                    self.err(format!("{field}.pattern"), problem, "write one host name with $(nodeId) in it, e.g. `broker-$(nodeId).gateway.example.com` or `b$(nodeId).gw.example.com:443`")
                })
            }
            (other, _) => Err(self.err(
                format!("{field}.type"),
                format!("`{other}` is not supported"),
                "use `type: port` or `type: host`",
            )),
        }
    }

    /// Confluent's `fence: {scope, errorCode, errorMessage}`: `scope: ALL` fences the route,
    /// `NONE` (or no block) does not.
    fn group_offsets(&self, at: &str, raw: Option<GroupOffsets>) -> Result<Option<GroupOffsets>, ConfigError> {
        let Some(raw) = raw else { return Ok(None) };
        raw.check_bounds().map_err(|why| {
            self.err(
                format!("{at}.switchover.groupOffsets"),
                why,
                "set checkpointsTopic to MirrorMaker 2's checkpoints topic on the destination (`<source alias>.checkpoints.internal`) and name non-empty group ids, or drop groupOffsets",
            )
        })?;
        Ok(Some(raw))
    }

    fn route_fence(&self, at: &str, raw: Option<RawRouteFence>) -> Result<Option<RouteFence>, ConfigError> {
        let Some(raw) = raw else { return Ok(None) };
        match raw.scope.to_ascii_uppercase().as_str() {
            "NONE" => return Ok(None),
            "ALL" => {}
            other => {
                return Err(self.err(
                    format!("{at}.fence.scope"),
                    format!("`{other}` is not a scope"),
                    "use ALL or NONE",
                ))
            }
        }
        let error_code = match raw.error_code {
            None => None,
            Some(name) => Some(
                kafka_error_code(&name)
                    .ok_or_else(|| {
                        self.err(
                            format!("{at}.fence.errorCode"),
                            format!("`{name}` is not a Kafka error code"),
                            "use a Kafka error name such as BROKER_NOT_AVAILABLE or NOT_LEADER_OR_FOLLOWER, or leave it out to answer each API with the retriable code its clients retry on",
                        )
                    })?
                    .0,
            ),
        };
        Ok(Some(RouteFence { error_code, error_message: raw.error_message }))
    }

    /// A route's client-facing TLS and, for `auth: swap`, its swap settings.
    fn route_security(
        &self,
        at: &str,
        raw: Option<RawRouteSecurity>,
    ) -> Result<(Option<TlsSettings>, Option<SwapSettings>), ConfigError> {
        let Some(raw) = raw else { return Ok((None, None)) };
        let tls = raw
            .ssl
            .map(|ssl| security::tls(self.source, &format!("{at}.security.ssl"), ssl, Leg::Client))
            .transpose()?;
        let swap = match raw.auth.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("passthrough") => {
                if raw.swap_config.is_some() {
                    return Err(self.err(
                        format!("{at}.security.swapConfig"),
                        "applies to `auth: swap` only",
                        "set `auth: swap`, or remove swapConfig",
                    ));
                }
                None
            }
            Some("swap") => {
                let route_client_auth = tls.as_ref().map_or(ClientAuth::None, |t| t.client_auth);
                Some(super::swap::swap(
                    self.source,
                    &format!("{at}.security"),
                    raw.swap_config,
                    self.secret_stores,
                    route_client_auth,
                )?)
            }
            Some(other) => {
                return Err(self.err(
                    format!("{at}.security.auth"),
                    format!("`{other}` is not supported"),
                    "use `auth: passthrough` (clients' own SASL exchange reaches the broker) or `auth: swap`",
                ))
            }
        };
        Ok((tls, swap))
    }

    fn bootstrap_for<'d>(
        &self,
        at: &str,
        domain: &'d DomainConfig,
        id: Option<&str>,
    ) -> Result<&'d BootstrapServer, ConfigError> {
        let Some(id) = id else {
            return Ok(&domain.bootstrap_servers[0]);
        };
        let server = domain.bootstrap_servers.iter().find(|s| s.id == id).ok_or_else(|| {
            let known: Vec<&str> = domain.bootstrap_servers.iter().map(|s| s.id.as_str()).collect();
            self.err(
                format!("{at}.streamingDomain.bootstrapServerId"),
                format!("domain `{}` has no bootstrap server `{id}`", domain.name),
                format!("use one of: {}", known.join(", ")),
            )
        })?;
        Ok(server)
    }

    fn no_port_clash(&self, routes: &[RouteConfig]) -> Result<(), ConfigError> {
        for (j, later) in routes.iter().enumerate() {
            for earlier in &routes[..j] {
                let same_ip = earlier.bind_ip == later.bind_ip
                    || earlier.bind_ip.is_unspecified()
                    || later.bind_ip.is_unspecified();
                let (a, b) = (earlier.port_map.port_span(), later.port_map.port_span());
                if let (Some(p), Some(q)) = (&earlier.host_pattern, &later.host_pattern) {
                    if earlier.bind_ip == later.bind_ip && a == b {
                        self.sni_distinct(j, earlier, later, p, q)?;
                        continue;
                    }
                }
                if same_ip && a.0 <= b.1 && b.0 <= a.1 {
                    return Err(self.err(
                        format!("routes[{j}].endpoint"),
                        format!(
                            "route `{}` needs ports {}-{} on {}, which clash with ports {}-{} of route `{}`",
                            later.name, b.0, b.1, later.bind_ip, a.0, a.1, earlier.name
                        ),
                        "move one route's endpoint port so the ranges do not overlap (each route uses its endpoint port plus one port per node id)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Host routes sharing a port must be told apart by every name.
    fn sni_distinct(
        &self,
        j: usize,
        earlier: &RouteConfig,
        later: &RouteConfig,
        p: &HostPattern,
        q: &HostPattern,
    ) -> Result<(), ConfigError> {
        let same_bootstrap = earlier.endpoint.host.eq_ignore_ascii_case(&later.endpoint.host);
        if same_bootstrap || p.same_names(q) {
            let what = if same_bootstrap { "endpoint host" } else { "broker name pattern" };
            return Err(self.err(
                format!("routes[{j}]"),
                format!(
                    "route `{}` shares port {} with route `{}` and has the same {what}",
                    later.name, later.endpoint.port, earlier.name
                ),
                "give routes that share an SNI port distinct endpoint hosts and patterns",
            ));
        }
        Ok(())
    }

    fn proxy(&self, raw: RawProxySettings) -> Result<ProxySettings, ConfigError> {
        let d = ProxySettings::default();
        let ms = |field: &str, v: Option<u64>, default: Duration| -> Result<Duration, ConfigError> {
            match v {
                Some(0) => Err(self.err(
                    format!("proxy.{field}"),
                    "must be greater than 0",
                    "use a positive number of milliseconds or remove the key",
                )),
                Some(v) => Ok(Duration::from_millis(v)),
                None => Ok(default),
            }
        };
        let count = |field: &str, v: Option<u64>, default: usize, min: u64| -> Result<usize, ConfigError> {
            match v {
                Some(v) if v < min => Err(self.err(
                    format!("proxy.{field}"),
                    format!("must be at least {min}"),
                    "raise it or remove the key",
                )),
                Some(v) => Ok(v as usize),
                None => Ok(default),
            }
        };
        let max_frame_bytes = count("maxFrameBytes", raw.max_frame_bytes, d.max_frame_bytes, 1024)?;
        let default_budget = d.buffer_budget_bytes.max(2 * max_frame_bytes);
        let buffer_budget_bytes = count("bufferBudgetBytes", raw.buffer_budget_bytes, default_budget, 0)?;
        if buffer_budget_bytes < 2 * max_frame_bytes {
            return Err(self.err(
                "proxy.bufferBudgetBytes",
                format!("{buffer_budget_bytes} is less than twice proxy.maxFrameBytes ({max_frame_bytes})"),
                format!(
                    "raise it to at least {} so the largest frame always fits, or lower maxFrameBytes",
                    2 * max_frame_bytes
                ),
            ));
        }
        Ok(ProxySettings {
            max_frame_bytes,
            buffer_budget_bytes,
            max_in_flight_requests: count(
                "maxInFlightRequests",
                raw.max_in_flight_requests,
                d.max_in_flight_requests,
                1,
            )?,
            frame_timeout: ms("frameTimeoutMs", raw.frame_timeout_ms, d.frame_timeout)?,
            max_connections: count("maxConnections", raw.max_connections, d.max_connections, 1)?,
            max_connections_per_route: count(
                "maxConnectionsPerRoute",
                raw.max_connections_per_route,
                d.max_connections_per_route,
                1,
            )?,
            max_connections_per_client: count(
                "maxConnectionsPerClient",
                raw.max_connections_per_client,
                d.max_connections_per_client,
                1,
            )?,
            idle_timeout: ms("idleTimeoutMs", raw.idle_timeout_ms, d.idle_timeout)?,
            write_timeout: ms("writeTimeoutMs", raw.write_timeout_ms, d.write_timeout)?,
            connect_timeout: ms("connectTimeoutMs", raw.connect_timeout_ms, d.connect_timeout)?,
            tls_handshake_timeout: ms("tlsHandshakeTimeoutMs", raw.tls_handshake_timeout_ms, d.tls_handshake_timeout)?,
            max_tls_handshakes: count("maxTlsHandshakes", raw.max_tls_handshakes, d.max_tls_handshakes, 1)?,
            drain_timeout: ms("drainTimeoutMs", raw.drain_timeout_ms, d.drain_timeout)?,
            metadata_refresh_interval: ms(
                "metadataRefreshIntervalMs",
                raw.metadata_refresh_interval_ms,
                d.metadata_refresh_interval,
            )?,
        })
    }

    fn non_empty(&self, field: &str, value: &str) -> Result<(), ConfigError> {
        if value.trim().is_empty() {
            return Err(self.err(field, "is empty", "give it a non-empty value"));
        }
        Ok(())
    }

    fn host_port(&self, field: &str, text: &str) -> Result<HostPort, ConfigError> {
        parse_host_port(text).ok_or_else(|| {
            self.err(
                field,
                format!("`{text}` is not host:port"),
                "write it as host:port with a port from 1 to 65535, e.g. `kafka-1:9092`",
            )
        })
    }

    fn ip(&self, field: &str, host: &str) -> Result<IpAddr, ConfigError> {
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            return Ok(ip);
        }
        (host, 0).to_socket_addrs().ok().and_then(|mut addrs| addrs.next()).map(|a| a.ip()).ok_or_else(|| {
            self.err(
                field,
                format!("host `{host}` does not resolve to an address to listen on"),
                "use an IP address or a resolvable name, or set the route's bindAddress (e.g. 0.0.0.0)",
            )
        })
    }
}

/// The node id ranges every route serves: those of every domain, in the order the domains are
/// written, each id once. A switchover to any domain then finds a port for each of its
/// brokers, and since the map does not depend on the route's current domain, editing
/// `streamingDomain.name` never moves a node id to another port.
fn switchable_node_ids(domains: &[DomainConfig]) -> Vec<NodeIdRange> {
    let mut ranges: Vec<NodeIdRange> = Vec::new();
    for domain in domains {
        for range in &domain.node_id_ranges {
            for (start, end) in uncovered(range.start, range.end, &ranges) {
                ranges.push(NodeIdRange { name: format!("{}/{}", domain.name, range.name), start, end });
            }
        }
    }
    ranges
}

/// The parts of `start..=end` outside every range in `covered`.
fn uncovered(start: i32, end: i32, covered: &[NodeIdRange]) -> Vec<(i32, i32)> {
    let mut parts = vec![(start, end)];
    for c in covered {
        parts = parts
            .into_iter()
            .flat_map(|(s, e)| {
                if c.end < s || c.start > e {
                    return vec![(s, e)];
                }
                let mut left = Vec::new();
                if s < c.start {
                    left.push((s, c.start - 1));
                }
                if e > c.end {
                    left.push((c.end + 1, e));
                }
                left
            })
            .collect();
    }
    parts
}

/// `host:port` or `[v6]:port`, with a port from 1 to 65535.
pub(crate) fn parse_host_port(text: &str) -> Option<HostPort> {
    let (host, port) = text.rsplit_once(':')?;
    let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6,
        None if host.contains(':') => return None, // an IPv6 address needs brackets
        None => host,
    };
    let port: u16 = port.parse().ok()?;
    if host.is_empty() || port == 0 || host.contains(|c: char| c.is_whitespace() || c == ',') {
        return None;
    }
    Some(HostPort { host: host.to_string(), port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_cover_every_domains_node_ids_once() {
        let range = |name: &str, start, end| NodeIdRange { name: name.into(), start, end };
        let domain = |name: &str, ranges| DomainConfig {
            name: name.into(),
            cluster_name: name.into(),
            bootstrap_servers: vec![],
            node_id_ranges: ranges,
        };
        let source = domain("source", vec![range("a", 1, 3)]);
        let destination = domain("destination", vec![range("b", 2, 6), range("c", 100, 100)]);
        let ranges = switchable_node_ids(&[source, destination]);
        let ids: Vec<(&str, i32, i32)> = ranges.iter().map(|r| (r.name.as_str(), r.start, r.end)).collect();
        assert_eq!(ids, vec![("source/a", 1, 3), ("destination/b", 4, 6), ("destination/c", 100, 100)]);
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(parse_host_port("kafka-1:9092"), Some(HostPort { host: "kafka-1".into(), port: 9092 }));
        assert_eq!(parse_host_port("[::1]:9092"), Some(HostPort { host: "::1".into(), port: 9092 }));
        assert_eq!(parse_host_port("kafka-1"), None);
        assert_eq!(parse_host_port("kafka-1:0"), None);
        assert_eq!(parse_host_port(":9092"), None);
        assert_eq!(parse_host_port("kafka-1:99999"), None);
        assert_eq!(parse_host_port("gw-a:19092,gw-b:19092"), None);
        assert_eq!(parse_host_port("::1:9092"), None);
    }
}
