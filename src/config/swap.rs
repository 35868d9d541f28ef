//! Authentication swapping (`routes[].security.auth: swap`) and the secret stores it reads.
//!
//! The shapes are Confluent Gateway's: `gateway.secretStores[] {name, provider: {type, config}}`
//! and `routes[].security.swapConfig {clientAuth, secretStore, clusterAuth}`. The client-side
//! JAAS file is a Kafka server JAAS file (`PlainLoginModule required user_alice="...";`,
//! optionally inside `KafkaServer { ... };`); the cluster-side one is a template with two `%s`
//! that the mapped user and secret fill, in that order. Both files are read when the config is
//! loaded, so a mistake is reported at start; the client users are read again by the data path
//! when the file changes. Secrets are [`Secret`]s: never shown by `Debug`, never in an error.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::principal_rules::PrincipalRules;
use super::security::{password, ClientAuth, RawPassword, SaslMechanism, Secret};
use super::validate::ConfigError;

/// A configured secret store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretStoreConfig {
    pub name: String,
    pub provider: SecretProvider,
}

/// Where a store keeps its entries: each maps a client principal to `user<separator>secret`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretProvider {
    /// A directory with one file per principal (the file name), read at every lookup: a
    /// mounted Kubernetes secret works as is, and a changed file is seen by the next connection.
    File { directory: PathBuf, separator: String },
    /// HashiCorp Vault (or OpenBao) KV version 2, token auth. With `path`: one secret whose keys
    /// are principals. With `prefix_path`: one secret per principal at `<prefixPath><principal>`,
    /// its field `value`.
    Vault { address: String, token: Secret, path: Option<String>, prefix_path: Option<String>, separator: String },
}

/// How a swap route authenticates clients and logs in to the brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapSettings {
    pub client_auth: ClientAuthSettings,
    /// The name of the `secretStores[]` entry.
    pub secret_store: String,
    /// `domainSecretStores`: a store per streaming domain, for clusters whose users differ
    /// (a switchover between them changes the credentials); other domains use `secret_store`.
    pub domain_secret_stores: BTreeMap<String, String>,
    pub cluster_mechanism: SaslMechanism,
    pub cluster_template: ClusterTemplate,
    /// `clientAuth.sasl.connectionsMaxReauthMs`: clients must re-authenticate within this
    /// (KIP-368); `None`: never.
    pub client_reauth: Option<Duration>,
}

/// How clients of a swap route prove who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuthSettings {
    /// SASL PLAIN (passwords) or SCRAM (verifiers), users from a JAAS file read again when it
    /// changes.
    Sasl {
        mechanism: SaslMechanism,
        jaas: PathBuf,
        /// Its users as read at load time: PLAIN passwords, or SCRAM verifiers in Kafka's
        /// credential text (`salt=...,stored_key=...,server_key=...,iterations=...`).
        users: HashMap<String, Secret>,
    },
    /// Confluent's `mechanism: SCRAM`: SCRAM-SHA-256 and SCRAM-SHA-512, the users' verifiers in
    /// the route's secret store, written there by `AlterUserScramCredentials` from `admin`
    /// (none: nobody may write them through the gateway).
    StoredScram { admin: Option<ScramAdmin> },
    /// The client's TLS certificate (the route's `ssl.clientAuth: required`); its subject mapped
    /// to the principal with Kafka's `ssl.principal.mapping.rules`.
    Mtls { rules: PrincipalRules },
}

/// `clientAuth.sasl.scram.admin`: the one principal whose `AlterUserScramCredentials` the
/// gateway carries out. It logs in with SCRAM (either hash) and this password; like any
/// principal, the store maps it to cluster credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramAdmin {
    pub username: String,
    pub password: Secret,
}

/// The cluster-side JAAS template: where the mapped user and secret go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTemplate {
    pub username: TemplateValue,
    pub password: TemplateValue,
}

/// One option of the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateValue {
    /// The first `%s` (the mapped user).
    MappedUser,
    /// The second `%s` (the mapped secret).
    MappedSecret,
    /// A fixed value written in the template.
    Fixed(Secret),
}

impl ClusterTemplate {
    /// The user name and password to log in with, given the store's entry.
    pub fn fill(&self, user: &str, secret: &Secret) -> (String, Secret) {
        let value = |v: &TemplateValue| match v {
            TemplateValue::MappedUser => Secret::new(user),
            TemplateValue::MappedSecret => secret.clone(),
            TemplateValue::Fixed(fixed) => fixed.clone(),
        };
        (value(&self.username).expose().to_string(), value(&self.password))
    }
}

// ---- The YAML shapes ----

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawSecretStore {
    pub name: String,
    pub provider: RawProvider,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawProvider {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub config: RawProviderConfig,
}

/// The fields of every provider type; which apply is checked per type.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawProviderConfig {
    pub directory: Option<String>,
    pub separator: Option<String>,
    pub address: Option<String>,
    pub auth_token: Option<RawTokenValue>,
    pub path: Option<String>,
    pub prefix_path: Option<String>,
}

/// A token written inline (`authToken: s.xyz`, Confluent's form) or `{value | file}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawTokenValue {
    Inline(String),
    Password(RawPassword),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawSwapConfig {
    pub client_auth: RawClientAuth,
    pub secret_store: String,
    #[serde(default)]
    pub domain_secret_stores: BTreeMap<String, String>,
    pub cluster_auth: RawSaslSide,
}

/// `clientAuth`: SASL, or mTLS in either of Confluent's spellings (`mtls.ssl.principalMappingRules`
/// with a list, or `ssl.principalMappingRules` with a comma-separated string).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawClientAuth {
    #[serde(default)]
    pub sasl: Option<RawSwapSasl>,
    #[serde(default)]
    pub ssl: Option<RawMtlsSsl>,
    #[serde(default)]
    pub mtls: Option<RawMtls>,
    /// Confluent's re-authentication test spelling (`clientAuth.connectionsMaxReAuthMs`).
    #[serde(default, rename = "connectionsMaxReAuthMs")]
    pub connections_max_re_auth_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawMtls {
    pub ssl: RawMtlsSsl,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawMtlsSsl {
    #[serde(default)]
    pub principal_mapping_rules: Option<RawRules>,
}

/// Kafka's `ssl.principal.mapping.rules`: one comma-separated string, or a list of rules.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawRules {
    One(String),
    List(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawSaslSide {
    pub sasl: RawSwapSasl,
    /// Confluent's re-authentication test spelling (`clientAuth.connectionsMaxReAuthMs`).
    #[serde(default, rename = "connectionsMaxReAuthMs")]
    pub connections_max_re_auth_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawSwapSasl {
    pub mechanism: String,
    /// Confluent's files name the Java class; accepted and ignored.
    #[serde(default)]
    #[allow(dead_code)]
    pub callback_handler_class: Option<String>,
    /// Absent only with `mechanism: SCRAM` (verifiers in the secret store).
    #[serde(default)]
    pub jaas_config: Option<RawJaasConfig>,
    /// Client side only: sessions the gateway gives clients (KIP-368); 0 or absent: unlimited.
    #[serde(default)]
    pub connections_max_reauth_ms: Option<u64>,
    /// Confluent's `scram: {alterScramCredentials, admin}`, with `mechanism: SCRAM` only.
    #[serde(default)]
    pub scram: Option<RawScram>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawScram {
    #[serde(default)]
    pub alter_scram_credentials: bool,
    #[serde(default)]
    pub admin: Option<RawScramAdmin>,
}

/// The password inline (`password: admin-password`, Confluent's form) or `{value | file}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScramAdmin {
    pub username: String,
    pub password: RawTokenValue,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawJaasConfig {
    pub file: String,
}

// ---- Checking ----

pub(crate) fn secret_stores(source: &str, raw: Vec<RawSecretStore>) -> Result<Vec<SecretStoreConfig>, ConfigError> {
    let mut stores: Vec<SecretStoreConfig> = Vec::new();
    for (i, store) in raw.into_iter().enumerate() {
        let at = format!("secretStores[{i}]");
        if store.name.is_empty() || stores.iter().any(|s| s.name == store.name) {
            return Err(ConfigError::new(
                source,
                format!("{at}.name"),
                format!("`{}` is empty or used twice", store.name),
                "give every secret store a unique name",
            ));
        }
        let provider = provider(source, &format!("{at}.provider"), store.provider)?;
        stores.push(SecretStoreConfig { name: store.name, provider });
    }
    Ok(stores)
}

fn provider(source: &str, at: &str, raw: RawProvider) -> Result<SecretProvider, ConfigError> {
    let err = |field: &str, problem: String, fix: &str| ConfigError::new(source, format!("{at}.{field}"), problem, fix);
    let config = raw.config;
    let separator = config.separator.clone().unwrap_or_else(|| ":".to_string());
    if separator.is_empty() {
        return Err(err(
            "config.separator",
            "is empty".into(),
            "remove it (default `:`) or set a character such as `/`",
        ));
    }
    match raw.kind.to_ascii_uppercase().as_str() {
        "FILE" => {
            let Some(directory) = config.directory.filter(|d| !d.is_empty()) else {
                return Err(err(
                    "config.directory",
                    "is missing".into(),
                    "set the directory that holds one file per principal, each containing `user<separator>secret`",
                ));
            };
            if let Some(field) = [
                ("address", config.address.is_some()),
                ("authToken", config.auth_token.is_some()),
                ("path", config.path.is_some()),
                ("prefixPath", config.prefix_path.is_some()),
            ]
            .iter()
            .find_map(|(name, set)| set.then_some(*name))
            {
                return Err(err(&format!("config.{field}"), "applies to VAULT stores only".into(), "remove it"));
            }
            let directory = PathBuf::from(directory);
            if !directory.is_dir() {
                return Err(err(
                    "config.directory",
                    format!("`{}` is not a readable directory", directory.display()),
                    "create it, or fix the path",
                ));
            }
            Ok(SecretProvider::File { directory, separator })
        }
        "VAULT" => {
            let Some(address) = config.address.filter(|a| !a.is_empty()) else {
                return Err(err(
                    "config.address",
                    "is missing".into(),
                    "set the Vault address, e.g. https://vault:8200",
                ));
            };
            if address.starts_with("https://") {
                return Err(err(
                    "config.address",
                    "https:// is not supported yet (the gateway's HTTP client has no TLS)".into(),
                    "reach Vault over http:// on a trusted network (e.g. a local agent or sidecar), or use a FILE store",
                ));
            }
            if !address.starts_with("http://") {
                return Err(err(
                    "config.address",
                    format!("`{address}` is not an http:// URL"),
                    "write it as http://host:8200",
                ));
            }
            let token = match config.auth_token {
                Some(raw) => secret_value(source, &format!("{at}.config.authToken"), raw)?,
                None => {
                    return Err(err(
                        "config.authToken",
                        "is missing (only token authentication is supported)".into(),
                        "set authToken: <token>, or authToken: {file: /path/to/token}",
                    ))
                }
            };
            if config.directory.is_some() {
                return Err(err("config.directory", "applies to FILE stores only".into(), "remove it"));
            }
            let (path, prefix_path) = (config.path.filter(|p| !p.is_empty()), config.prefix_path);
            if path.is_some() == prefix_path.is_some() {
                return Err(err(
                    "config.path",
                    "needs exactly one of `path` and `prefixPath`".into(),
                    "set path: secret/gateway (one secret, a key per principal) or prefixPath: secret/ (a secret per principal, field `value`)",
                ));
            }
            Ok(SecretProvider::Vault {
                address: address.trim_end_matches('/').to_string(),
                token,
                path,
                prefix_path,
                separator,
            })
        }
        "AWS" | "AZURE" => Err(err("type", format!("`{}` is not implemented yet", raw.kind), "use FILE or VAULT")),
        other => Err(err("type", format!("`{other}` is not a secret store type"), "use FILE or VAULT")),
    }
}

/// A secret written inline or as `{value | file}`.
fn secret_value(source: &str, field: &str, raw: RawTokenValue) -> Result<Secret, ConfigError> {
    match raw {
        RawTokenValue::Inline(secret) => Ok(Secret::new(secret)),
        RawTokenValue::Password(raw) => password(source, field, raw),
    }
}

/// A route's `swapConfig`, checked against the stores.
pub(crate) fn swap(
    source: &str,
    at: &str,
    raw: Option<RawSwapConfig>,
    stores: &[SecretStoreConfig],
    route_client_auth: ClientAuth,
) -> Result<SwapSettings, ConfigError> {
    let err =
        |field: &str, problem: String, fix: String| ConfigError::new(source, format!("{at}.{field}"), problem, fix);
    let Some(raw) = raw else {
        return Err(err(
            "swapConfig",
            "`auth: swap` needs a swapConfig".into(),
            "add swapConfig with clientAuth, secretStore and clusterAuth (see docs/security.md)".into(),
        ));
    };
    let cluster_reauth =
        raw.cluster_auth.sasl.connections_max_reauth_ms.or(raw.cluster_auth.connections_max_re_auth_ms);
    if cluster_reauth.is_some() {
        return Err(err(
            "swapConfig.clusterAuth.sasl.connectionsMaxReauthMs",
            "applies to clientAuth only (the broker sets its own sessions' lifetime)".into(),
            "move it to clientAuth.sasl, or remove it".into(),
        ));
    }
    let client = raw.client_auth;
    let mtls_ssl = match (client.ssl, client.mtls) {
        (Some(_), Some(_)) => {
            return Err(err(
                "swapConfig.clientAuth.mtls",
                "is given twice (also as clientAuth.ssl)".into(),
                "keep one of them".into(),
            ))
        }
        (ssl, mtls) => ssl.or(mtls.map(|m| m.ssl)),
    };
    let (client_auth, sasl_reauth) = match (client.sasl, mtls_ssl) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(err(
                "swapConfig.clientAuth",
                "needs exactly one of `sasl` and `mtls` (or `ssl`)".into(),
                "use sasl: {mechanism, jaasConfig} for SASL clients, or mtls: {ssl: {principalMappingRules: [...]}} for TLS certificates".into(),
            ))
        }
        (Some(sasl), None) => {
            let reauth = sasl.connections_max_reauth_ms;
            (client_sasl(source, at, sasl)?, reauth)
        }
        (None, Some(ssl)) => {
            if route_client_auth != ClientAuth::Required {
                return Err(err(
                    "ssl.clientAuth",
                    "must be `required` on a swap route whose clients log in with their TLS certificate".into(),
                    "set security.ssl.clientAuth: required (with a truststore of the clients' CA)".into(),
                ));
            }
            let text = match ssl.principal_mapping_rules {
                None => "DEFAULT".to_string(),
                Some(RawRules::One(text)) => text,
                Some(RawRules::List(rules)) => rules.join(","),
            };
            let rules = PrincipalRules::parse(&text).map_err(|problem| {
                err(
                    "swapConfig.clientAuth.mtls.ssl.principalMappingRules",
                    problem,
                    "write Kafka's ssl.principal.mapping.rules, e.g. `RULE:^CN=(.*?),OU=(.*?)$/$1@$2/L,DEFAULT`".into(),
                )
            })?;
            (ClientAuthSettings::Mtls { rules }, None)
        }
    };
    let client_reauth = match (sasl_reauth, client.connections_max_re_auth_ms) {
        (Some(_), Some(_)) => {
            return Err(err(
                "swapConfig.clientAuth.connectionsMaxReAuthMs",
                "is given twice (also as clientAuth.sasl.connectionsMaxReauthMs)".into(),
                "keep one of them".into(),
            ))
        }
        (Some(ms), None) | (None, Some(ms)) => Some(ms).filter(|ms| *ms > 0).map(Duration::from_millis),
        (None, None) => None,
    };
    if client_reauth.is_some() && matches!(client_auth, ClientAuthSettings::Mtls { .. }) {
        return Err(err(
            "swapConfig.clientAuth.connectionsMaxReAuthMs",
            "applies to SASL clients only (a TLS certificate is checked once, at the handshake)".into(),
            "remove it".into(),
        ));
    }
    let named = std::iter::once(("swapConfig.secretStore".to_string(), &raw.secret_store)).chain(
        raw.domain_secret_stores
            .iter()
            .map(|(domain, store)| (format!("swapConfig.domainSecretStores.{domain}"), store)),
    );
    for (field, store) in named {
        if !stores.iter().any(|s| s.name == *store) {
            let known: Vec<&str> = stores.iter().map(|s| s.name.as_str()).collect();
            return Err(err(
                &field,
                format!("no secret store named `{store}`"),
                if known.is_empty() {
                    "add it under secretStores".into()
                } else {
                    format!("use one of: {}", known.join(", "))
                },
            ));
        }
    }
    let mechanism_field = "swapConfig.clusterAuth.sasl.mechanism";
    let cluster_mechanism = match raw.cluster_auth.sasl.mechanism.to_ascii_uppercase().as_str() {
        "PLAIN" => SaslMechanism::Plain,
        "SCRAM-SHA-256" => SaslMechanism::ScramSha256,
        "SCRAM-SHA-512" => SaslMechanism::ScramSha512,
        other => {
            return Err(err(
                mechanism_field,
                format!("`{other}` is not supported"),
                "use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512".into(),
            ))
        }
    };
    if raw.cluster_auth.sasl.scram.is_some() {
        return Err(err(
            "swapConfig.clusterAuth.sasl.scram",
            "applies to clientAuth only (verifiers of the gateway's clients)".into(),
            "move it to clientAuth.sasl, or remove it".into(),
        ));
    }
    let Some(RawJaasConfig { file: cluster_file }) = raw.cluster_auth.sasl.jaas_config else {
        return Err(err(
            "swapConfig.clusterAuth.sasl.jaasConfig",
            "is missing".into(),
            "set jaasConfig: {file: ...}, a template with username=\"%s\" password=\"%s\"".into(),
        ));
    };
    let cluster_field = "swapConfig.clusterAuth.sasl.jaasConfig.file";
    let cluster_text = read_jaas(&cluster_file)
        .map_err(|problem| err(cluster_field, problem, "check the path and the file's permissions".into()))?;
    let cluster_template = cluster_template(&cluster_text, cluster_mechanism)
        .map_err(|(problem, fix)| err(cluster_field, format!("`{cluster_file}`: {problem}"), fix))?;
    Ok(SwapSettings {
        client_auth,
        secret_store: raw.secret_store,
        domain_secret_stores: raw.domain_secret_stores,
        cluster_mechanism,
        cluster_template,
        client_reauth,
    })
}

/// `clientAuth.sasl`: the mechanism and its users' file, or `SCRAM` with its `scram` block.
fn client_sasl(source: &str, at: &str, sasl: RawSwapSasl) -> Result<ClientAuthSettings, ConfigError> {
    let err =
        |field: &str, problem: String, fix: String| ConfigError::new(source, format!("{at}.{field}"), problem, fix);
    let mechanism = match sasl.mechanism.to_ascii_uppercase().as_str() {
        "PLAIN" => SaslMechanism::Plain,
        "SCRAM-SHA-256" => SaslMechanism::ScramSha256,
        "SCRAM-SHA-512" => SaslMechanism::ScramSha512,
        "SCRAM" => return stored_scram(source, at, sasl),
        _ => {
            return Err(err(
                "swapConfig.clientAuth.sasl.mechanism",
                format!("`{}` is not supported for clients of a swap route", sasl.mechanism),
                "use PLAIN, SCRAM (verifiers in the secret store), SCRAM-SHA-256 or SCRAM-SHA-512 (verifiers in jaasConfig.file)".into(),
            ))
        }
    };
    if sasl.scram.is_some() {
        return Err(err(
            "swapConfig.clientAuth.sasl.scram",
            format!(
                "applies to `mechanism: SCRAM` only ({} reads its users from jaasConfig.file)",
                mechanism.kafka_name()
            ),
            "set mechanism: SCRAM to keep SCRAM verifiers in the secret store, or remove the scram block".into(),
        ));
    }
    let Some(RawJaasConfig { file }) = sasl.jaas_config else {
        return Err(err(
            "swapConfig.clientAuth.sasl.jaasConfig",
            format!("is missing ({} reads its users from a JAAS file)", mechanism.kafka_name()),
            "set jaasConfig: {file: /path/to/users.conf}, or use mechanism: SCRAM to keep SCRAM verifiers in the secret store".into(),
        ));
    };
    let file = file.as_str();
    let field = "swapConfig.clientAuth.sasl.jaasConfig.file";
    let text =
        read_jaas(file).map_err(|problem| err(field, problem, "check the path and the file's permissions".into()))?;
    let users = client_users(&text, mechanism).map_err(|problem| {
        let fix = match mechanism {
            SaslMechanism::Plain => {
                "write `org.apache.kafka.common.security.plain.PlainLoginModule required user_alice=\"alice-secret\";`"
            }
            _ => "write `org.apache.kafka.common.security.scram.ScramLoginModule required user_alice=\"salt=...,stored_key=...,server_key=...,iterations=8192\";` (see `switchyard scram-verifier`)",
        };
        err(field, format!("`{file}`: {problem}"), fix.into())
    })?;
    Ok(ClientAuthSettings::Sasl { mechanism, jaas: PathBuf::from(file), users })
}

/// `mechanism: SCRAM`: no JAAS file; the `scram` block's admin, if it may write verifiers.
fn stored_scram(source: &str, at: &str, sasl: RawSwapSasl) -> Result<ClientAuthSettings, ConfigError> {
    let err = |field: &str, problem: &str, fix: &str| {
        ConfigError::new(source, format!("{at}.swapConfig.clientAuth.sasl.{field}"), problem, fix)
    };
    if sasl.jaas_config.is_some() {
        return Err(err(
            "jaasConfig",
            "does not apply to `mechanism: SCRAM` (its users' verifiers are in the secret store)",
            "remove it, or name the hash (SCRAM-SHA-256 or SCRAM-SHA-512) to read verifiers from the file",
        ));
    }
    let scram = sasl.scram.unwrap_or_default();
    let admin = match (scram.alter_scram_credentials, scram.admin) {
        (false, None) => None,
        (false, Some(_)) => {
            return Err(err(
                "scram.admin",
                "is set, but alterScramCredentials is not true",
                "set scram.alterScramCredentials: true to let this admin write verifiers, or remove admin",
            ))
        }
        (true, None) => {
            return Err(err(
                "scram.admin",
                "is missing: alterScramCredentials needs the admin who may send AlterUserScramCredentials",
                "set admin: {username: <admin>, password: {file: /path/to/admin.pwd}}",
            ))
        }
        (true, Some(admin)) => {
            let field = format!("{at}.swapConfig.clientAuth.sasl.scram.admin.password");
            let password = secret_value(source, &field, admin.password)?;
            if admin.username.is_empty() || password.expose().is_empty() {
                return Err(err(
                    "scram.admin",
                    "has an empty username or password",
                    "set both: the admin logs in to the gateway with them (SCRAM)",
                ));
            }
            Some(ScramAdmin { username: admin.username, password })
        }
    };
    Ok(ClientAuthSettings::StoredScram { admin })
}

fn read_jaas(file: &str) -> Result<String, String> {
    std::fs::read_to_string(file).map_err(|e| format!("cannot read `{file}`: {}", e.kind()))
}

/// The `user_<name>="<value>"` options of a Kafka server JAAS file: passwords of a
/// `PlainLoginModule` for PLAIN, SCRAM verifiers of a `ScramLoginModule` for SCRAM (checked
/// when the route's authentication is set up). Errors never quote a value.
pub fn client_users(text: &str, mechanism: SaslMechanism) -> Result<HashMap<String, Secret>, String> {
    let module = match mechanism {
        SaslMechanism::Plain => "PlainLoginModule",
        SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => "ScramLoginModule",
    };
    let entries = jaas_entries(text)?;
    if !entries.iter().any(|e| e.module.ends_with(module)) {
        return Err(format!("names no {module}"));
    }
    let mut users = HashMap::new();
    for entry in entries.into_iter().filter(|e| e.module.ends_with(module)) {
        for (key, value) in entry.options {
            if let Some(user) = key.strip_prefix("user_") {
                users.insert(user.to_string(), Secret::new(value));
            }
        }
    }
    if users.is_empty() {
        return Err("lists no users (options `user_<name>=\"<password>\"`)".into());
    }
    Ok(users)
}

fn cluster_template(text: &str, mechanism: SaslMechanism) -> Result<ClusterTemplate, (String, String)> {
    let example = match mechanism {
        SaslMechanism::Plain => "org.apache.kafka.common.security.plain.PlainLoginModule",
        _ => "org.apache.kafka.common.security.scram.ScramLoginModule",
    };
    let fix = format!("write `{example} required username=\"%s\" password=\"%s\";`");
    let entries = jaas_entries(text).map_err(|p| (p, fix.clone()))?;
    let [entry] = entries.as_slice() else {
        return Err(("must hold exactly one login module".into(), fix));
    };
    let wanted = example.rsplit('.').next().unwrap_or(example);
    if !entry.module.ends_with(wanted) {
        return Err((
            format!("names `{}`, which does not match mechanism {}", entry.module, mechanism.kafka_name()),
            fix,
        ));
    }
    let mut placeholders = 0;
    let mut value_of = |name: &str| -> Result<TemplateValue, (String, String)> {
        let Some((_, value)) = entry.options.iter().find(|(k, _)| k == name) else {
            return Err((format!("has no `{name}` option"), fix.clone()));
        };
        Ok(match value.as_str() {
            "%s" => {
                placeholders += 1;
                TemplateValue::MappedUser
            }
            _ if value.contains("%s") => {
                return Err((format!("`{name}` must be exactly \"%s\" or a fixed value"), fix.clone()))
            }
            fixed => TemplateValue::Fixed(Secret::new(fixed)),
        })
    };
    let mut username = value_of("username")?;
    let mut password = value_of("password")?;
    if placeholders != 2 {
        return Err(("must have two `%s` (username, then password)".into(), fix));
    }
    // The first `%s` in the text is the mapped user, the second the secret.
    let user_first = entry.options.iter().position(|(k, _)| k == "username")
        < entry.options.iter().position(|(k, _)| k == "password");
    if user_first {
        password = TemplateValue::MappedSecret;
    } else {
        username = TemplateValue::MappedSecret;
    }
    Ok(ClusterTemplate { username, password })
}

/// One `LoginModule flag options;` of a JAAS file.
struct JaasEntry {
    module: String,
    options: Vec<(String, String)>,
}

/// The login modules of a JAAS file, with or without `Section { ... };` wrappers. `//` and
/// `/* */` comments are skipped.
fn jaas_entries(text: &str) -> Result<Vec<JaasEntry>, String> {
    let tokens = tokenize(text)?;
    let mut entries = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Token::Word(word) if tokens.get(i + 1) == Some(&Token::Punct('{')) => {
                let _ = word;
                i += 2;
            }
            Token::Punct('}') | Token::Punct(';') => i += 1,
            Token::Word(module) => {
                let module = module.clone();
                let Some(Token::Word(_flag)) = tokens.get(i + 1) else {
                    return Err(format!("login module `{module}` has no control flag (e.g. `required`)"));
                };
                i += 2;
                let mut options = Vec::new();
                loop {
                    match (tokens.get(i), tokens.get(i + 1), tokens.get(i + 2)) {
                        (Some(Token::Punct(';')), _, _) => {
                            i += 1;
                            break;
                        }
                        (Some(Token::Word(key)), Some(Token::Punct('=')), Some(Token::Word(v) | Token::Quoted(v))) => {
                            options.push((key.clone(), v.clone()));
                            i += 3;
                        }
                        _ => {
                            return Err(format!(
                                "login module `{module}`: expected `key=\"value\"` options ending with `;`"
                            ))
                        }
                    }
                }
                entries.push(JaasEntry { module, options });
            }
            _ => return Err("is not a JAAS file".into()),
        }
    }
    if entries.is_empty() {
        return Err("holds no login module".into());
    }
    Ok(entries)
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Punct(char),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
            }
            '{' | '}' | ';' | '=' => tokens.push(Token::Punct(c)),
            '"' => {
                let mut value = String::new();
                loop {
                    match chars.next() {
                        None => return Err("has an unterminated quoted value".into()),
                        Some('"') => break,
                        Some('\\') => value.extend(chars.next()),
                        Some(c) => value.push(c),
                    }
                }
                tokens.push(Token::Quoted(value));
            }
            c => {
                let mut word = c.to_string();
                while let Some(&next) = chars.peek() {
                    if next.is_whitespace() || matches!(next, '{' | '}' | ';' | '=' | '"') {
                        break;
                    }
                    word.push(next);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_users_from_a_server_jaas_file_with_or_without_a_section() {
        let bare =
            r#"org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="a-pw" user_bob="b\"pw";"#;
        let users = client_users(bare, SaslMechanism::Plain).unwrap();
        assert_eq!(users["alice"].expose(), "a-pw");
        assert_eq!(users["bob"].expose(), "b\"pw");
        let wrapped = format!("// gateway users\nKafkaServer {{\n  {bare}\n}};\n");
        assert_eq!(client_users(&wrapped, SaslMechanism::Plain).unwrap().len(), 2);
        assert!(client_users(&wrapped, SaslMechanism::ScramSha256).is_err(), "no ScramLoginModule");
        let error =
            client_users("KafkaServer { x required user_a=\"secret-pw\"; };", SaslMechanism::Plain).unwrap_err();
        assert!(!error.contains("secret-pw"), "{error}");
    }

    #[test]
    fn cluster_template_places_user_and_secret() {
        let t = r#"org.apache.kafka.common.security.plain.PlainLoginModule required username="%s" password="%s";"#;
        let template = cluster_template(t, SaslMechanism::Plain).unwrap();
        let (user, pw) = template.fill("app", &Secret::new("app-pw"));
        assert_eq!((user.as_str(), pw.expose()), ("app", "app-pw"));
        let swapped = r#"x.PlainLoginModule required password="%s" username="%s";"#;
        let (user, pw) = cluster_template(swapped, SaslMechanism::Plain).unwrap().fill("app", &Secret::new("pw"));
        assert_eq!((user.as_str(), pw.expose()), ("pw", "app"), "the first %s is the user");
        assert!(cluster_template(t, SaslMechanism::ScramSha256).is_err(), "PLAIN module for SCRAM");
        let one = r#"x.PlainLoginModule required username="fixed" password="%s";"#;
        assert!(cluster_template(one, SaslMechanism::Plain).is_err());
    }

    /// A gateway config with one swap route: `ssl` and `client_auth` are its YAML (indented).
    fn route_config(
        dir: &std::path::Path,
        ssl: &str,
        client_auth: &str,
    ) -> Result<super::super::GatewayConfig, String> {
        let template = dir.join("cluster.conf");
        std::fs::write(&template, r#"x.PlainLoginModule required username="%s" password="%s";"#).unwrap();
        let yaml = format!(
            r#"gateway:
  secretStores:
    - name: files
      provider: {{type: FILE, config: {{directory: "{dir}"}}}}
  streamingDomains:
    - name: kafka
      type: kafka
      kafkaCluster:
        name: kafka
        bootstrapServers: [{{id: b, endpoint: "127.0.0.1:9092"}}]
        nodeIdRanges: [{{name: brokers, start: 1, end: 1}}]
  routes:
    - name: main
      endpoint: "127.0.0.1:19092"
      streamingDomain: {{name: kafka, bootstrapServerId: b}}
      security:{ssl}
        auth: swap
        swapConfig:
          clientAuth:
{client_auth}
          secretStore: files
          clusterAuth:
            sasl: {{mechanism: PLAIN, jaasConfig: {{file: "{template}"}}}}
"#,
            dir = dir.display(),
            template = template.display(),
        );
        super::super::parse("test.yaml", &yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn client_auth_sasl_scram_or_mtls_in_both_spellings() {
        let dir = tempfile::tempdir().unwrap();
        let users = dir.path().join("scram.conf");
        std::fs::write(
            &users,
            r#"x.ScramLoginModule required user_alice="salt=AAAA,stored_key=AAAA,server_key=AAAA,iterations=4096";"#,
        )
        .unwrap();
        let scram =
            format!("            sasl: {{mechanism: SCRAM-SHA-512, jaasConfig: {{file: \"{}\"}}}}", users.display());
        let config = route_config(dir.path(), "", &scram).unwrap();
        let Some(SwapSettings { client_auth: ClientAuthSettings::Sasl { mechanism, users, .. }, .. }) =
            &config.routes[0].swap
        else {
            panic!("no SASL client auth")
        };
        assert_eq!((*mechanism, users.len()), (SaslMechanism::ScramSha512, 1));
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "").unwrap();
        let tls = |mode: &str| {
            format!(
                "\n        ssl:\n          keystore: {{type: PEM, location: \"{ca}\"}}\n          truststore: {{type: PEM, location: \"{ca}\"}}\n          clientAuth: {mode}",
                ca = ca.display()
            )
        };
        let list = "            mtls: {ssl: {principalMappingRules: [\"RULE:^CN=(.*?)$/$1/L\", DEFAULT]}}";
        let string = "            ssl: {principalMappingRules: \"RULE:^CN=(.*?)$/$1/L,DEFAULT\"}";
        for mtls in [list, string] {
            let config = route_config(dir.path(), &tls("required"), mtls).unwrap();
            let Some(SwapSettings { client_auth: ClientAuthSettings::Mtls { rules }, .. }) = &config.routes[0].swap
            else {
                panic!("no mTLS client auth")
            };
            assert_eq!(rules.apply("CN=Alice").as_deref(), Some("alice"));
            assert_eq!(rules.apply("O=x").as_deref(), Some("O=x"));
        }
        let requested = route_config(dir.path(), &tls("requested"), list).unwrap_err();
        assert!(requested.contains("ssl.clientAuth") && requested.contains("required"), "{requested}");
        let plaintext = route_config(dir.path(), "", list).unwrap_err();
        assert!(plaintext.contains("ssl.clientAuth"), "{plaintext}");
        let bad_rule = route_config(
            dir.path(),
            &tls("required"),
            "            mtls: {ssl: {principalMappingRules: [\"RULE:x\"]}}",
        )
        .unwrap_err();
        assert!(bad_rule.contains("principalMappingRules") && bad_rule.contains("RULE:x"), "{bad_rule}");
        let both = format!("{scram}\n{list}");
        assert!(route_config(dir.path(), &tls("required"), &both).unwrap_err().contains("exactly one"));
    }

    #[test]
    fn confluent_scram_with_verifiers_in_the_store_and_an_admin() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("admin.pwd"), "admin-pw\n").unwrap();
        let sasl = |rest: &str| format!("            sasl: {{mechanism: SCRAM{rest}}}");
        let stored = |yaml: &str| match &route_config(dir.path(), "", yaml).unwrap().routes[0].swap {
            Some(SwapSettings { client_auth: ClientAuthSettings::StoredScram { admin }, .. }) => admin.clone(),
            other => panic!("not stored SCRAM: {other:?}"),
        };
        assert_eq!(stored(&sasl("")), None);
        let inline =
            stored(&sasl(", scram: {alterScramCredentials: true, admin: {username: root, password: root-pw}}"));
        let inline = inline.unwrap();
        assert_eq!((inline.username.as_str(), inline.password.expose()), ("root", "root-pw"));
        let file = format!(
            ", scram: {{alterScramCredentials: true, admin: {{username: root, password: {{file: \"{}\"}}}}}}",
            dir.path().join("admin.pwd").display()
        );
        assert_eq!(stored(&sasl(&file)).unwrap().password.expose(), "admin-pw");
        let refused = |rest: &str| route_config(dir.path(), "", &sasl(rest)).unwrap_err();
        let no_admin = refused(", scram: {alterScramCredentials: true}");
        assert!(no_admin.contains("scram.admin") && no_admin.contains("AlterUserScramCredentials"), "{no_admin}");
        let idle_admin = refused(", scram: {admin: {username: root, password: pw}}");
        assert!(idle_admin.contains("alterScramCredentials"), "{idle_admin}");
        let jaas = refused(", jaasConfig: {file: /x}");
        assert!(jaas.contains("jaasConfig") && jaas.contains("secret store"), "{jaas}");
        let hashed =
            route_config(dir.path(), "", "            sasl: {mechanism: SCRAM-SHA-256, scram: {}}").unwrap_err();
        assert!(hashed.contains("mechanism: SCRAM"), "{hashed}");
        let no_file = route_config(dir.path(), "", "            sasl: {mechanism: PLAIN}").unwrap_err();
        assert!(no_file.contains("jaasConfig") && no_file.contains("is missing"), "{no_file}");
    }
}
