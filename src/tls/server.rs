//! The gateway's server side of TLS for one route: certificate, key, client-certificate policy,
//! and reloading them without a restart.
//!
//! Each accepted connection takes the configuration current at its handshake; a reload swaps in
//! a new one for later handshakes and leaves established connections alone, so rotating a
//! certificate drops nothing. The files are checked for changes (modification time and size)
//! every [`WATCH_EVERY`]; a change that does not load (a half-written file, a wrong password)
//! keeps the previous configuration and is logged and counted, so a bad rotation never takes a
//! route down.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

use super::{provider, store, TlsError};
use crate::config::{ClientAuth, TlsSettings};
use crate::telemetry::Metrics;

/// How often the store files are checked for changes.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// One route's TLS server configuration, reloadable.
pub struct ServerTls {
    route: String,
    settings: TlsSettings,
    current: RwLock<Arc<ServerConfig>>,
    /// What the files looked like when `current` was built.
    seen: Mutex<Vec<FileStamp>>,
}

/// A file's modification time and size; `None` when it cannot be read.
type FileStamp = Option<(SystemTime, u64)>;

impl ServerTls {
    /// Read the route's stores; fails when they cannot be used.
    pub fn load(route: &str, settings: &TlsSettings) -> Result<Arc<ServerTls>, TlsError> {
        let seen = stamps(settings);
        let config = build(settings)?;
        Ok(Arc::new(ServerTls {
            route: route.to_string(),
            settings: settings.clone(),
            current: RwLock::new(config),
            seen: Mutex::new(seen),
        }))
    }

    /// The configuration for a handshake starting now.
    pub fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Rebuild the configuration if a store file changed since the last (re)load.
    pub fn reload_if_changed(&self, metrics: &Metrics) {
        let now = stamps(&self.settings);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if *seen == now {
            return;
        }
        *seen = now;
        match build(&self.settings) {
            Ok(config) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
                tracing::info!(route = %self.route, "TLS certificates reloaded");
                metrics.tls_reloaded(&self.route, "reloaded");
            }
            Err(e) => {
                tracing::error!(route = %self.route, "TLS certificates changed but cannot be loaded, keeping the previous ones: {e}");
                metrics.tls_reloaded(&self.route, "failed");
            }
        }
    }

    /// Check for changed files until `stop` resolves.
    pub async fn watch(self: Arc<Self>, metrics: Arc<Metrics>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {
                    let this = Arc::clone(&self);
                    let metrics = Arc::clone(&metrics);
                    // Reading and parsing files blocks; keep it off the pumps' threads.
                    let _ = tokio::task::spawn_blocking(move || this.reload_if_changed(&metrics)).await;
                }
            }
        }
    }
}

fn build(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let keystore = settings.keystore.as_ref().ok_or_else(|| TlsError::Store {
        path: String::new(),
        problem: "is missing: a TLS route needs a keystore".into(),
    })?;
    let (chain, key) = store::certified_key(keystore)?;
    let builder = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match settings.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        mode => {
            let roots = Arc::new(store::trust_roots(settings.truststore.as_ref())?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider());
            let verifier = if mode == ClientAuth::Requested { verifier.allow_unauthenticated() } else { verifier };
            builder.with_client_cert_verifier(verifier.build()?)
        }
    };
    let mut config = builder.with_single_cert(chain, key)?;
    // Kafka clients send no ALPN; the session cache keeps resumption cheap for reconnects.
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    Ok(Arc::new(config))
}

fn stamps(settings: &TlsSettings) -> Vec<FileStamp> {
    let files: Vec<&PathBuf> = settings.keystore.iter().chain(&settings.truststore).map(|s| &s.location).collect();
    files
        .into_iter()
        .map(|path| std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len()))))
        .collect()
}
