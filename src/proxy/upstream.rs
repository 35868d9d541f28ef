//! Opening the broker-side connection for a client connection.
//!
//! The bootstrap port may reach any broker, so the route's bootstrap addresses are tried in
//! turn until one answers. A broker port must reach exactly its broker, at the address the
//! route's topology knows for that node id.

use std::time::Duration;

use tokio::net::TcpStream;

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
}

fn tried(attempts: &[(HostPort, String)]) -> String {
    attempts.iter().map(|(addr, e)| format!("{addr} ({e})")).collect::<Vec<_>>().join(", ")
}

/// Connect to the broker `target` names, returning the stream and the address used.
pub async fn connect(
    upstream: &Upstream,
    target: Target,
    timeout: Duration,
) -> Result<(TcpStream, HostPort), UpstreamError> {
    let candidates = match target {
        Target::Bootstrap => upstream.bootstrap.clone(),
        Target::Node(id) => vec![upstream.topology.resolve(id, timeout).await.ok_or(UpstreamError::UnknownNode(id))?],
    };
    let mut attempts = Vec::new();
    for addr in candidates {
        match connect_one(&addr, timeout).await {
            Ok(stream) => return Ok((stream, addr)),
            Err(e) => attempts.push((addr, e)),
        }
    }
    Err(UpstreamError::Unreachable(attempts))
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
