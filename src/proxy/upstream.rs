//! Opening the broker-side connection for a client connection.
//!
//! The bootstrap port may reach any broker, so the route's bootstrap addresses are tried in
//! turn until one answers. A broker port must reach exactly its broker, at the address the
//! route's topology knows for that node id.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::stream::BrokerStream;
use crate::config::HostPort;
use crate::routing::{Target, Upstream};

/// No broker connection could be opened.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error(
        "broker {0} is not in the cluster's metadata (it may have left the cluster); the client will refresh metadata"
    )]
    UnknownNode(i32),
    #[error("no broker reachable: {}", tried(.0))]
    Unreachable(Vec<(HostPort, String)>),
    /// The TLS handshake with the broker failed; `label` is the metric's reason.
    #[error("TLS with broker {addr} failed: {reason}")]
    Handshake { addr: HostPort, label: &'static str, reason: String },
}

fn tried(attempts: &[(HostPort, String)]) -> String {
    attempts.iter().map(|(addr, e)| format!("{addr} ({e})")).collect::<Vec<_>>().join(", ")
}

/// Connect to the broker `target` names (with TLS if the upstream's listener has it, the
/// certificate checked against the name the broker is dialled by), returning the stream and the
/// address used.
pub async fn connect(
    upstream: &Upstream,
    target: Target,
    timeout: Duration,
) -> Result<(BrokerStream, HostPort), UpstreamError> {
    let candidates = match target {
        Target::Bootstrap => upstream.bootstrap.clone(),
        Target::Node(id) => vec![upstream.topology.resolve(id, timeout).await.ok_or(UpstreamError::UnknownNode(id))?],
    };
    let mut attempts = Vec::new();
    for addr in candidates {
        let stream = match connect_one(&addr, timeout).await {
            Ok(stream) => stream,
            Err(e) => {
                attempts.push((addr, e));
                continue;
            }
        };
        let Some(tls) = &upstream.tls else { return Ok((BrokerStream::Plain(stream), addr)) };
        return match handshake(tls, &addr, stream, timeout).await {
            Ok(stream) => Ok((stream, addr)),
            Err((label, reason)) => Err(UpstreamError::Handshake { addr, label, reason }),
        };
    }
    Err(UpstreamError::Unreachable(attempts))
}

/// The client side of a TLS handshake with the broker at `addr`: SNI and hostname verification
/// use `addr.host` (a DNS name, or an IP address matched against the certificate's IP SANs).
async fn handshake(
    tls: &Arc<rustls::ClientConfig>,
    addr: &HostPort,
    stream: TcpStream,
    timeout: Duration,
) -> Result<BrokerStream, (&'static str, String)> {
    let name = ServerName::try_from(addr.host.clone())
        .map_err(|e| ("bad_name", format!("`{}` cannot be checked against a certificate: {e}", addr.host)))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(tls));
    match tokio::time::timeout(timeout, connector.connect(name, stream)).await {
        Err(_) => Err(("timeout", format!("no TLS handshake within {timeout:?}"))),
        Ok(Err(e)) => Err(crate::tls::client::handshake_failure(&e)),
        Ok(Ok(stream)) => Ok(BrokerStream::Tls(Box::new(stream))),
    }
}

async fn connect_one(addr: &HostPort, timeout: Duration) -> Result<TcpStream, String> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect((addr.host.as_str(), addr.port)))
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
        .map_err(|e| e.to_string())?;
    // Kafka requests are small and latency-bound; never let Nagle hold one back.
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(stream)
}
