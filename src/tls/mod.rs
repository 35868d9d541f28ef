//! TLS for both legs, with rustls: the stores named by the config turned into rustls
//! configurations, and the server side reloaded when its files change.
//!
//! The data path never sees OpenSSL: client connections are terminated here ([`ServerTls`]),
//! and the gateway's own connections to TLS brokers use `client`. The gateway's librdkafka
//! clients (topology, cluster, switchover) are configured from the same settings but do their own
//! TLS.

pub mod client;
pub mod librdkafka;
pub mod server;
pub mod store;
pub mod subject;

use std::path::Path;

pub use server::ServerTls;

/// A store that cannot be used, or a configuration rustls refuses.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS store `{path}` {problem}")]
    Store { path: String, problem: String },
    #[error("TLS settings refused: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verification cannot be set up: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

impl TlsError {
    pub(crate) fn store(path: &Path, problem: impl Into<String>) -> TlsError {
        TlsError::Store { path: path.display().to_string(), problem: problem.into() }
    }
}

/// The crypto provider every TLS configuration uses (ring: no C toolchain beyond what rustls
/// needs, no OpenSSL).
pub(crate) fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
