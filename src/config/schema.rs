//! The YAML schema, as users write it.
//!
//! Field names follow Confluent Gateway's configuration (`streamingDomains`, `routes`,
//! `nodeIdRanges`, `brokerIdentificationStrategy`) so an existing file carries over. Unknown
//! fields are refused: a typo must never silently fall back to a default. Everything here is
//! plain data; checking that the pieces fit together happens in [`super::validate`].

use serde::Deserialize;

use super::security::{RawRouteSecurity, RawSasl, RawSsl};
use super::swap::RawSecretStore;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub streaming_domains: Vec<RawStreamingDomain>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// Where swap routes find the credentials they log in to brokers with.
    #[serde(default)]
    pub secret_stores: Vec<RawSecretStore>,
    #[serde(default)]
    pub proxy: RawProxySettings,
    #[serde(default)]
    pub proxy_protocol: RawProxyProtocol,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub audit: RawAudit,
    #[serde(default)]
    pub cluster: RawCluster,
    #[serde(default)]
    pub reload: RawReload,
    #[serde(default)]
    pub state: RawState,
}

/// Where the gateway keeps what must outlive a restart.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawState {
    /// A directory; routes keep their memory there.
    pub directory: Option<String>,
}

/// Applying edits of the config file without a SIGHUP.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawReload {
    #[serde(default)]
    pub watch: Option<bool>,
    #[serde(default)]
    pub interval_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawStreamingDomain {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub kafka_cluster: RawKafkaCluster,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawKafkaCluster {
    pub name: String,
    pub bootstrap_servers: Vec<RawBootstrapServer>,
    #[serde(default)]
    pub node_id_ranges: Option<Vec<RawNodeIdRange>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawBootstrapServer {
    pub id: String,
    /// One `host:port`, or several separated by commas, optionally after `PROTOCOL://`.
    pub endpoint: String,
    /// TLS to this listener (present: TLS on).
    #[serde(default)]
    pub ssl: Option<RawSsl>,
    /// The SASL login of the gateway's own clients (clients of routes log in themselves).
    #[serde(default)]
    pub sasl: Option<RawSasl>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawNodeIdRange {
    pub name: String,
    pub start: i32,
    pub end: i32,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub name: String,
    pub endpoint: String,
    /// Address the listeners bind to; defaults to the endpoint's host.
    #[serde(default)]
    pub bind_address: Option<String>,
    #[serde(default)]
    pub broker_identification_strategy: Option<RawBrokerIdentification>,
    pub streaming_domain: RawRouteDomain,
    /// The cluster id clients are shown, whichever domain the route points at.
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// Defaults for switchovers of this route (config reload, or an API call that omits them).
    #[serde(default)]
    pub switchover: Option<RawSwitchoverDefaults>,
    /// Client-facing TLS, and how clients authenticate.
    #[serde(default)]
    pub security: Option<RawRouteSecurity>,
    /// Confluent's route fence: fenced while present (`null`: not fenced).
    #[serde(default)]
    pub fence: Option<RawRouteFence>,
}

/// `fence: {scope: ALL, errorCode: BROKER_NOT_AVAILABLE, errorMessage: ...}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawRouteFence {
    pub scope: String,
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub error_message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawSwitchoverDefaults {
    #[serde(default)]
    pub catch_up: Option<super::CatchUpPolicy>,
    #[serde(default)]
    pub catch_up_timeout_ms: Option<u64>,
    #[serde(default)]
    pub fence: Option<super::FenceMode>,
    #[serde(default)]
    pub group_offsets: Option<super::GroupOffsets>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawBrokerIdentification {
    #[serde(rename = "type")]
    pub kind: String,
    /// `type: host`: the broker host names, with `$(nodeId)`.
    #[serde(default)]
    pub pattern: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawRouteDomain {
    pub name: String,
    #[serde(default)]
    pub bootstrap_server_id: Option<String>,
}

/// Connection limits and timeouts shared by every route. All optional.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawProxySettings {
    pub max_frame_bytes: Option<u64>,
    pub buffer_budget_bytes: Option<u64>,
    pub max_in_flight_requests: Option<u64>,
    pub frame_timeout_ms: Option<u64>,
    pub max_connections: Option<u64>,
    pub max_connections_per_route: Option<u64>,
    pub max_connections_per_client: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub write_timeout_ms: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub tls_handshake_timeout_ms: Option<u64>,
    pub max_tls_handshakes: Option<u64>,
    pub drain_timeout_ms: Option<u64>,
    pub metadata_refresh_interval_ms: Option<u64>,
}

/// HAProxy's PROXY protocol on client connections.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawProxyProtocol {
    pub enabled: Option<bool>,
    pub trusted_networks: Option<Vec<String>>,
    pub header_timeout_ms: Option<u64>,
}

/// The admin HTTP server.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub address: Option<String>,
    pub token: Option<String>,
}

/// The audit log.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawAudit {
    /// A file path, or `stdout`.
    pub file: Option<String>,
}

/// The gateway cluster this node belongs to.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawCluster {
    pub id: Option<String>,
    pub node_id: Option<String>,
    pub rack: Option<String>,
    pub advertised_host: Option<String>,
    pub internal_load_balancing: Option<bool>,
    /// The streaming domain that holds membership.
    pub domain: Option<String>,
    pub session_timeout_ms: Option<u64>,
}
