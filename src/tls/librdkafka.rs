//! The librdkafka configuration of the gateway's own Kafka clients (topology refresh, which also
//! serves a switchover's pre-flight and catch-up and the ready check; the gateway cluster's
//! group, command topic and admin client).
//!
//! Every one of them is built by [`client_config`] from a listener's addresses and its
//! `BrokerSecurity`, so they all reach a listener the way the data path does. librdkafka does its
//! own TLS (OpenSSL): the stores are handed to it as PEM text read here, so PKCS#12 and PEM stores
//! work alike and a store that cannot be read fails here with the file named. The returned
//! configuration holds passwords and keys: never log it (its `Debug` shows them).

use rdkafka::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{store, TlsError};
use crate::config::{BrokerSecurity, HostPort, Store, StoreKind};

/// A librdkafka configuration reaching `servers` through a listener secured as `security`.
pub fn client_config(servers: &[HostPort], security: &BrokerSecurity) -> Result<ClientConfig, TlsError> {
    let mut config = ClientConfig::new();
    let servers: Vec<String> = servers.iter().map(ToString::to_string).collect();
    config.set("bootstrap.servers", servers.join(",")).set("security.protocol", security.protocol());
    if let Some(tls) = &security.tls {
        if tls.ignore_trust {
            config.set("enable.ssl.certificate.verification", "false");
            config.set("ssl.endpoint.identification.algorithm", "none");
        } else {
            config.set("ssl.endpoint.identification.algorithm", "https");
            if let Some(truststore) = &tls.truststore {
                config.set("ssl.ca.pem", trust_pem(truststore)?);
            }
        }
        if let Some(keystore) = &tls.keystore {
            let (chain, key) = store::certified_key(keystore)?;
            config.set("ssl.certificate.pem", chain.iter().map(|c| pem("CERTIFICATE", c)).collect::<String>());
            config.set("ssl.key.pem", key_pem(&key));
        }
    }
    if let Some(sasl) = &security.sasl {
        config
            .set("sasl.mechanism", sasl.mechanism.kafka_name())
            .set("sasl.username", &sasl.username)
            .set("sasl.password", sasl.password.expose());
    }
    Ok(config)
}

/// The truststore's certificates as PEM text.
fn trust_pem(truststore: &Store) -> Result<String, TlsError> {
    let bytes = std::fs::read(&truststore.location)
        .map_err(|e| TlsError::store(&truststore.location, format!("cannot be read: {e}")))?;
    let certificates: Vec<CertificateDer<'static>> = match truststore.kind {
        StoreKind::Pem => CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::store(&truststore.location, format!("is not valid PEM: {e}")))?,
        StoreKind::Pkcs12 => {
            let password = truststore.password.as_ref().map(|p| p.expose()).unwrap_or_default();
            p12_keystore::Pkcs12Archive::from_pkcs12(&bytes, password)
                .map_err(|e| {
                    TlsError::store(&truststore.location, format!("cannot be opened as PKCS12 (wrong password?): {e}"))
                })?
                .certs
                .iter()
                .map(|bag| CertificateDer::from(bag.cert.as_der().to_vec()))
                .collect()
        }
    };
    if certificates.is_empty() {
        return Err(TlsError::store(&truststore.location, "holds no CA certificate"));
    }
    Ok(certificates.iter().map(|c| pem("CERTIFICATE", c)).collect())
}

fn key_pem(key: &PrivateKeyDer<'_>) -> String {
    let label = match key {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    pem(label, key.secret_der())
}

/// One PEM block.
fn pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::with_capacity(der.len() * 4 / 3 + 64);
    text.push_str(&format!("-----BEGIN {label}-----\n"));
    let mut line = 0;
    for chunk in der.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                text.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                text.push('=');
            }
        }
        line += 4;
        if line == 64 {
            text.push('\n');
            line = 0;
        }
    }
    if line > 0 {
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SaslMechanism, SaslSettings, Secret, TlsSettings};

    #[test]
    fn pem_round_trips() {
        for len in [0usize, 1, 2, 3, 47, 48, 49, 100] {
            let der: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let text = pem("CERTIFICATE", &der);
            let back = CertificateDer::from_pem_slice(text.as_bytes());
            if len == 0 {
                continue;
            }
            assert_eq!(back.unwrap().as_ref(), &der[..], "length {len}");
        }
    }

    #[test]
    fn sasl_ssl_with_ignore_trust() {
        let security = BrokerSecurity {
            tls: Some(TlsSettings {
                ignore_trust: true,
                truststore: None,
                keystore: None,
                client_auth: Default::default(),
            }),
            sasl: Some(SaslSettings {
                mechanism: SaslMechanism::ScramSha512,
                username: "gw".into(),
                password: Secret::new("pw"),
            }),
        };
        let servers = [HostPort { host: "k".into(), port: 9093 }];
        let config = client_config(&servers, &security).unwrap();
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(config.get("enable.ssl.certificate.verification"), Some("false"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("bootstrap.servers"), Some("k:9093"));
    }
}
