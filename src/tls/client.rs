//! The gateway's client side of TLS, for its data-path connections to TLS brokers.
//!
//! One configuration per route and upstream (built when the upstream is, so a switchover to a
//! domain with other settings builds its own): the truststore's CAs (or the public web roots),
//! the gateway's certificate for mTLS if a keystore is set, and hostname verification against
//! the name the broker is dialled by. `ignoreTrust` accepts any certificate, but the handshake's
//! signatures are still checked, so the session is at least bound to the key the broker showed.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use super::{provider, store, TlsError};
use crate::config::TlsSettings;

/// The rustls client configuration for a broker listener's `ssl` settings.
pub fn client_config(settings: &TlsSettings) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider)).with_safe_default_protocol_versions()?;
    let builder = if settings.ignore_trust {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
    } else {
        builder.with_root_certificates(store::trust_roots(settings.truststore.as_ref())?)
    };
    let config = match &settings.keystore {
        Some(keystore) => {
            let (chain, key) = store::certified_key(keystore)?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// `ignoreTrust`: any certificate, any name; the handshake signatures are verified.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Why a broker's handshake failed: a metric label and words an operator acts on.
pub fn handshake_failure(error: &std::io::Error) -> (&'static str, String) {
    let Some(rustls_error) = error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
        return ("io", format!("TLS handshake failed: {error}"));
    };
    match rustls_error {
        rustls::Error::InvalidCertificate(cause) => match cause {
            rustls::CertificateError::UnknownIssuer | rustls::CertificateError::BadSignature => (
                "untrusted_certificate",
                format!("broker certificate not trusted: {cause:?} (check the bootstrap server's ssl.truststore)"),
            ),
            rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. } => (
                "certificate_name_mismatch",
                format!("broker certificate does not name the address the broker is reached at: {cause:?}"),
            ),
            other => ("bad_certificate", format!("broker certificate refused: {other:?}")),
        },
        rustls::Error::AlertReceived(alert) => (
            "refused_by_broker",
            format!("the broker refused the handshake ({alert:?}): it may require a client certificate (ssl.keystore) or not trust it"),
        ),
        other => ("protocol", format!("TLS handshake failed: {other}")),
    }
}
