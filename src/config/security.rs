//! TLS and SASL settings: the `ssl` blocks of routes and bootstrap servers, and the SASL
//! credentials the gateway's own Kafka clients use.
//!
//! The shape is Confluent Gateway's (`truststore`/`keystore` with `type`, `location`,
//! `password: {value | file}`, `keyPassword`, `clientAuth`), so a Confluent file carries over.
//! Passwords given as `{file}` are read when the config is loaded, so a reload picks up a
//! rotated password with its rotated store. Stores themselves are read by `tls`, not here: this
//! module only checks that the settings make sense together. JKS stores are refused with the
//! `keytool` command that converts them, because no maintained Rust crate reads JKS.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::validate::ConfigError;

/// A secret from the config (a password); never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it (a TLS store, a SASL login).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Client-facing or broker-facing TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Broker leg only: accept any broker certificate (every other trust setting is ignored).
    pub ignore_trust: bool,
    /// The certificates to trust; `None`: the system's trust store (broker leg), or no client
    /// certificates accepted (client leg).
    pub truststore: Option<Store>,
    /// This side's certificate and key: the gateway's server identity (client leg, required), or
    /// its client identity for mTLS to brokers (broker leg, optional).
    pub keystore: Option<Store>,
    /// Client leg only: whether clients must present a certificate.
    pub client_auth: ClientAuth,
}

/// A certificate store on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    pub kind: StoreKind,
    pub location: PathBuf,
    pub password: Option<Secret>,
    pub key_password: Option<Secret>,
}

/// The formats the gateway reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// PEM text: certificates, and for a keystore its private key (PKCS#8, PKCS#1 or SEC1).
    Pem,
    /// A PKCS#12 (`.p12`, `.pfx`) file, protected by `password`.
    Pkcs12,
}

/// Whether a TLS route asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// Clients must present a certificate the truststore trusts.
    Required,
    /// Clients may present one; if they do, it must be trusted.
    Requested,
    #[default]
    None,
}

/// How the gateway's own Kafka clients log in to a SASL listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslSettings {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: Secret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    /// The name Kafka (and librdkafka's `sasl.mechanism`) uses.
    pub fn kafka_name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// How a bootstrap server's listener is secured, for the gateway's own connections to it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BrokerSecurity {
    pub tls: Option<TlsSettings>,
    pub sasl: Option<SaslSettings>,
}

impl BrokerSecurity {
    /// Kafka's name of the listener's protocol (librdkafka's `security.protocol`).
    pub fn protocol(&self) -> &'static str {
        match (self.tls.is_some(), self.sasl.is_some()) {
            (false, false) => "PLAINTEXT",
            (true, false) => "SSL",
            (false, true) => "SASL_PLAINTEXT",
            (true, true) => "SASL_SSL",
        }
    }
}

// ---- The YAML shapes ----

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawSsl {
    #[serde(default)]
    pub ignore_trust: Option<bool>,
    #[serde(default)]
    pub truststore: Option<RawStore>,
    #[serde(default)]
    pub keystore: Option<RawStore>,
    #[serde(default)]
    pub client_auth: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawStore {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub password: Option<RawPassword>,
    #[serde(default)]
    pub key_password: Option<RawPassword>,
}

/// `{value: inline}` or `{file: /path}`: exactly one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPassword {
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawSasl {
    pub mechanism: String,
    pub username: String,
    pub password: RawPassword,
}

/// A route's `security` block.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RawRouteSecurity {
    /// `passthrough` (the default): the client's own SASL exchange reaches the broker; `swap`:
    /// the gateway authenticates the client and logs in to the broker with mapped credentials.
    #[serde(default)]
    pub auth: Option<String>,
    #[serde(default)]
    pub ssl: Option<RawSsl>,
    /// `auth: swap` only.
    #[serde(default)]
    pub swap_config: Option<super::swap::RawSwapConfig>,
}

// ---- Checking ----

/// Which leg an `ssl` block is for: the rules differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leg {
    Client,
    Broker,
}

pub(crate) fn tls(source: &str, at: &str, raw: RawSsl, leg: Leg) -> Result<TlsSettings, ConfigError> {
    let err = |field: &str, problem: String, fix: &str| ConfigError::new(source, format!("{at}.{field}"), problem, fix);
    let client_auth = match (raw.client_auth.as_deref(), leg) {
        (None, _) => ClientAuth::None,
        (Some(_), Leg::Broker) => {
            return Err(err(
                "clientAuth",
                "applies to routes only".into(),
                "remove it; to give the gateway a client certificate for the brokers, set `keystore`",
            ))
        }
        (Some(v), Leg::Client) => match v.to_ascii_lowercase().as_str() {
            "required" => ClientAuth::Required,
            "requested" => ClientAuth::Requested,
            "none" => ClientAuth::None,
            other => {
                return Err(err("clientAuth", format!("`{other}` is not a mode"), "use required, requested or none"))
            }
        },
    };
    let ignore_trust = raw.ignore_trust.unwrap_or(false);
    if ignore_trust && leg == Leg::Client {
        return Err(err(
            "ignoreTrust",
            "applies to bootstrap servers only".into(),
            "remove it; a route trusts client certificates through `truststore`",
        ));
    }
    let truststore = raw.truststore.map(|s| store(source, &format!("{at}.truststore"), s)).transpose()?.flatten();
    let keystore = raw.keystore.map(|s| store(source, &format!("{at}.keystore"), s)).transpose()?.flatten();
    if leg == Leg::Client && keystore.is_none() {
        return Err(err(
            "keystore",
            "a TLS route needs the gateway's certificate and key".into(),
            "set keystore.location (PEM with the chain and the key, or PKCS12 with a password)",
        ));
    }
    if client_auth != ClientAuth::None && truststore.is_none() {
        return Err(err(
            "truststore",
            "clientAuth asks for client certificates, but nothing says which to trust".into(),
            "set truststore.location to the CA certificates that sign client certificates",
        ));
    }
    Ok(TlsSettings { ignore_trust, truststore, keystore, client_auth })
}

/// A store; `None` for an empty one (`truststore: {}`: the system's trust store).
fn store(source: &str, at: &str, raw: RawStore) -> Result<Option<Store>, ConfigError> {
    let err =
        |field: &str, problem: String, fix: String| ConfigError::new(source, format!("{at}.{field}"), problem, fix);
    let Some(location) = raw.location.filter(|l| !l.is_empty()) else {
        if raw.password.is_some() || raw.key_password.is_some() || raw.kind.is_some() {
            return Err(err("location", "is missing".into(), "set the path of the store file".into()));
        }
        return Ok(None);
    };
    let location = PathBuf::from(location);
    let kind = match raw.kind.as_deref().map(str::to_ascii_uppercase).as_deref() {
        Some("PEM") => StoreKind::Pem,
        Some("PKCS12") | Some("P12") => StoreKind::Pkcs12,
        // Confluent's default type is JKS.
        None | Some("JKS") => return Err(jks_refused(source, at, &location)),
        Some(other) => {
            return Err(err("type", format!("`{other}` is not a store type"), "use PEM or PKCS12".into()));
        }
    };
    let key_password = raw.key_password.map(|p| password(source, &format!("{at}.keyPassword"), p)).transpose()?;
    let password = raw.password.map(|p| password(source, &format!("{at}.password"), p)).transpose()?;
    if kind == StoreKind::Pkcs12 && password.is_none() {
        return Err(err(
            "password",
            "a PKCS12 store needs its password".into(),
            "set password: {value: ...} or password: {file: /path/to/file}".into(),
        ));
    }
    if kind == StoreKind::Pem && password.is_some() {
        return Err(err(
            "password",
            "encrypted PEM is not supported".into(),
            format!("store the key unencrypted (`openssl pkcs8 -topk8 -nocrypt -in {} -out key.pem`), or use a PKCS12 store", location.display()),
        ));
    }
    Ok(Some(Store { kind, location, password, key_password }))
}

fn jks_refused(source: &str, at: &str, location: &Path) -> ConfigError {
    ConfigError::new(
        source,
        format!("{at}.type"),
        "JKS stores are not read by the gateway (and JKS is the default type)",
        format!(
            "convert it with `keytool -importkeystore -srckeystore {} -srcstoretype JKS -destkeystore store.p12 -deststoretype PKCS12` and set `type: PKCS12` (or `type: PEM` for PEM files)",
            location.display()
        ),
    )
}

pub(crate) fn password(source: &str, at: &str, raw: RawPassword) -> Result<Secret, ConfigError> {
    match (raw.value, raw.file) {
        (Some(value), None) => Ok(Secret(value)),
        (None, Some(file)) => {
            std::fs::read_to_string(&file).map(|s| Secret(s.trim_end_matches(['\r', '\n']).to_string())).map_err(|e| {
                ConfigError::new(
                    source,
                    format!("{at}.file"),
                    format!("cannot read `{file}`: {}", e.kind()),
                    "check the path and the file's permissions",
                )
            })
        }
        _ => Err(ConfigError::new(
            source,
            at,
            "needs exactly one of `value` and `file`",
            "write password: {value: secret} or password: {file: /path/to/file}",
        )),
    }
}

pub(crate) fn sasl(source: &str, at: &str, raw: RawSasl) -> Result<SaslSettings, ConfigError> {
    let mechanism = match raw.mechanism.to_ascii_uppercase().as_str() {
        "PLAIN" => SaslMechanism::Plain,
        "SCRAM-SHA-256" => SaslMechanism::ScramSha256,
        "SCRAM-SHA-512" => SaslMechanism::ScramSha512,
        other => {
            return Err(ConfigError::new(
                source,
                format!("{at}.mechanism"),
                format!("`{other}` is not supported"),
                "use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
            ))
        }
    };
    if raw.username.is_empty() {
        return Err(ConfigError::new(
            source,
            format!("{at}.username"),
            "is empty",
            "set the gateway's Kafka user name",
        ));
    }
    let password = password(source, &format!("{at}.password"), raw.password)?;
    Ok(SaslSettings { mechanism, username: raw.username, password })
}

/// The protocol an endpoint's optional `PROTOCOL://` prefix names, and the rest.
pub(crate) fn split_protocol(endpoint: &str) -> (Option<&str>, &str) {
    match endpoint.split_once("://") {
        Some((protocol, rest)) => (Some(protocol), rest),
        None => (None, endpoint),
    }
}

/// A bootstrap server's security from its `ssl` and `sasl` blocks and its endpoint's prefix,
/// which must agree with them when given.
pub(crate) fn broker(
    source: &str,
    at: &str,
    prefix: Option<&str>,
    ssl: Option<RawSsl>,
    sasl_raw: Option<RawSasl>,
) -> Result<BrokerSecurity, ConfigError> {
    let mut tls = ssl.map(|s| tls(source, &format!("{at}.ssl"), s, Leg::Broker)).transpose()?;
    let sasl = sasl_raw.map(|s| sasl(source, &format!("{at}.sasl"), s)).transpose()?;
    let Some(prefix) = prefix else { return Ok(BrokerSecurity { tls, sasl }) };
    let (wants_tls, wants_sasl) = match prefix.to_ascii_uppercase().as_str() {
        "PLAINTEXT" => (false, false),
        "SSL" => (true, false),
        "SASL_PLAINTEXT" => (false, true),
        "SASL_SSL" => (true, true),
        other => {
            return Err(ConfigError::new(
                source,
                format!("{at}.endpoint"),
                format!("`{other}://` is not a Kafka security protocol"),
                "use PLAINTEXT://, SSL://, SASL_PLAINTEXT:// or SASL_SSL://, or no prefix",
            ))
        }
    };
    if wants_tls && tls.is_none() {
        // `SSL://` alone: TLS with the system's trust store, as an empty `ssl: {}` would.
        tls =
            Some(TlsSettings { ignore_trust: false, truststore: None, keystore: None, client_auth: ClientAuth::None });
    }
    if !wants_tls && tls.is_some() {
        return Err(ConfigError::new(
            source,
            format!("{at}.ssl"),
            format!("the endpoint says `{prefix}://`, which is not TLS"),
            "remove the ssl block, or write the endpoint as SSL:// or SASL_SSL://",
        ));
    }
    if wants_sasl != sasl.is_some() {
        let fix = if wants_sasl {
            "add sasl: {mechanism, username, password} so the gateway's own clients (health, topology, cluster, switchover) can log in"
        } else {
            "remove the sasl block, or write the endpoint as SASL_PLAINTEXT:// or SASL_SSL://"
        };
        return Err(ConfigError::new(
            source,
            format!("{at}.sasl"),
            format!("the endpoint says `{prefix}://`, which does not match the sasl block"),
            fix,
        ));
    }
    Ok(BrokerSecurity { tls, sasl })
}

#[cfg(test)]
mod tests {
    use crate::config::{parse_with_env, ConfigError, GatewayConfig};

    use super::*;

    fn parse(domain_extra: &str, route_extra: &str) -> Result<GatewayConfig, ConfigError> {
        let text = format!(
            "streamingDomains:\n  - name: d\n    type: kafka\n    kafkaCluster:\n      name: d\n      bootstrapServers:\n        - id: b\n{domain_extra}\nroutes:\n  - name: r\n    endpoint: 127.0.0.1:19092\n    streamingDomain: {{name: d}}\n{route_extra}\n"
        );
        parse_with_env("gw.yaml", &text, &|_| None)
    }

    #[test]
    fn protocol_prefix_sets_and_checks_the_listener_security() {
        let config = parse("          endpoint: SSL://k:9093", "").unwrap();
        let security = &config.routes[0].upstream_security;
        assert_eq!(security.protocol(), "SSL");
        assert_eq!(config.routes[0].upstream_bootstrap[0].host, "k");
        let mismatch = parse("          endpoint: SASL_SSL://k:9093", "").unwrap_err();
        assert_eq!(mismatch.field, "streamingDomains[0].kafkaCluster.bootstrapServers[0].sasl");
        let sasl = "          endpoint: SASL_PLAINTEXT://k:9093\n          sasl: {mechanism: SCRAM-SHA-512, username: gw, password: {value: pw}}";
        let config = parse(sasl, "").unwrap();
        let security = &config.routes[0].upstream_security;
        assert_eq!(security.protocol(), "SASL_PLAINTEXT");
        assert_eq!(security.sasl.as_ref().unwrap().mechanism, SaslMechanism::ScramSha512);
        assert!(!format!("{config:?}").contains("pw"), "the password is redacted");
    }

    #[test]
    fn jks_is_refused_with_the_conversion() {
        let route = "    security:\n      ssl:\n        keystore: {location: /etc/gw/ks.jks, password: {value: x}}";
        let error = parse("          endpoint: k:9092", route).unwrap_err();
        assert_eq!(error.field, "routes[0].security.ssl.keystore.type");
        assert!(error.fix.contains("keytool -importkeystore -srckeystore /etc/gw/ks.jks"), "{error}");
    }

    #[test]
    fn route_tls_needs_a_keystore_and_client_auth_needs_trust() {
        let no_keystore = "    security:\n      ssl:\n        clientAuth: none";
        assert_eq!(
            parse("          endpoint: k:9092", no_keystore).unwrap_err().field,
            "routes[0].security.ssl.keystore"
        );
        let untrusted =
            "    security:\n      ssl:\n        keystore: {type: PEM, location: /k.pem}\n        clientAuth: required";
        assert_eq!(
            parse("          endpoint: k:9092", untrusted).unwrap_err().field,
            "routes[0].security.ssl.truststore"
        );
    }

    #[test]
    fn password_from_a_file_is_read_and_trimmed() {
        let dir = std::env::temp_dir().join(format!("sy-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let route = format!(
            "    security:\n      ssl:\n        keystore: {{type: PKCS12, location: /k.p12, password: {{file: {}}}}}",
            file.display()
        );
        let config = parse("          endpoint: k:9092", &route).unwrap();
        let keystore = config.routes[0].tls.as_ref().unwrap().keystore.as_ref().unwrap();
        assert_eq!(keystore.password.as_ref().unwrap().expose(), "s3cret");
        let missing = route.replace("/pw}", "/nope}");
        let error = parse("          endpoint: k:9092", &missing).unwrap_err();
        assert_eq!(error.field, "routes[0].security.ssl.keystore.password.file");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
