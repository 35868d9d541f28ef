//! The audit log: one JSON object per line, to a file or stdout.
//!
//! Connections hand events to a bounded queue and move on; a single writer task serialises and
//! appends them. If the writer falls behind, events are dropped and counted rather than
//! slowing client traffic, and the drop is logged.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::config::AuditSink;

/// Events waiting to be written; beyond this they are dropped.
const QUEUE: usize = 16 * 1024;

/// An audit event; `type` names its kind on the wire.
#[derive(Debug, Serialize)]
#[serde(tag = "type")]
pub enum AuditEvent {
    #[serde(rename = "CONNECTION")]
    Connection(ConnectionEvent),
    #[serde(rename = "SWITCHOVER")]
    Switchover(SwitchoverEvent),
    #[serde(rename = "CONFIG_RELOAD")]
    ConfigReload(ReloadOutcome),
    #[serde(rename = "MEMBERSHIP")]
    Membership(MembershipEvent),
    #[serde(rename = "CLUSTER_REJECTED")]
    ClusterRejected(ClusterRejectedEvent),
}

/// A cluster command or member this node refused: unsigned, forged, replayed or out of bounds.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRejectedEvent {
    pub cluster: String,
    /// `command` or `member`.
    pub kind: &'static str,
    pub reason: &'static str,
    /// What was refused: the member's client id, or the command's origin, route and id.
    pub detail: String,
}

/// A gateway node joined or left this node's cluster.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MembershipEvent {
    pub cluster: String,
    /// `joined` or `left`.
    pub event: &'static str,
    pub node_id: String,
    pub host: String,
    pub rack: Option<String>,
}

/// A switchover phase that finished, or a switchover's outcome.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SwitchoverEvent {
    pub route: String,
    pub from: String,
    pub to: String,
    /// The phase, or `outcome`.
    pub phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    pub detail: String,
}

/// What a reload did, route by route.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadOutcome {
    pub source: String,
    pub switched: Vec<String>,
    /// Routes whose configuration fence (`routes[].fence`) was put up or taken down.
    pub fenced: Vec<String>,
    pub unchanged: Vec<String>,
    pub needs_restart: Vec<String>,
    pub failed: Vec<String>,
}

/// A client connection opened or closed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionEvent {
    /// `open` or `close`.
    pub event: &'static str,
    pub route: String,
    /// The TCP peer: the client, or the load balancer in front of it.
    pub client_address: SocketAddr,
    /// From the PROXY protocol header: the real client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_source_address: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_destination_address: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_from_client: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_to_client: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_reason: Option<String>,
    /// The SASL mechanism the client chose (passed through to the broker).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl_mechanism: Option<String>,
    /// Who the client authenticated as, read from its SASL exchange where the mechanism reveals
    /// it (PLAIN, SCRAM, OAUTHBEARER's `sub`). Never a password or token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Whether the broker accepted the client's last SASL exchange.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authenticated: Option<bool>,
    /// SASL exchanges the broker accepted on this connection: above 1, the client
    /// re-authenticated (KIP-368).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl_authentications: Option<u32>,
    /// Passthrough: logins the gateway replayed for the client (the same principal, the same
    /// token) on the cluster a switchover moved the connection to. Counted in
    /// `sasl_authentications` too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sasl_replays: Option<u32>,
    /// On a swap route: the user the gateway logged in to the broker as for this client (the
    /// secret store's mapping of `principal`). Never a secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_user: Option<String>,
}

#[derive(Serialize)]
struct Line<'a> {
    timestamp: String,
    #[serde(flatten)]
    event: &'a AuditEvent,
}

enum Message {
    Event(Box<AuditEvent>),
    Close(oneshot::Sender<()>),
}

/// Where connections send audit events; does nothing when no sink is configured.
pub struct AuditLog {
    queue: Option<mpsc::Sender<Message>>,
    dropped: AtomicU64,
}

impl AuditLog {
    pub fn disabled() -> Arc<AuditLog> {
        Arc::new(AuditLog { queue: None, dropped: AtomicU64::new(0) })
    }

    /// Open the sink and start the writer task.
    pub async fn start(sink: &AuditSink) -> std::io::Result<Arc<AuditLog>> {
        let out: Box<dyn AsyncWrite + Send + Unpin> = match sink {
            AuditSink::Stdout => Box::new(tokio::io::stdout()),
            AuditSink::File(path) => {
                Box::new(tokio::fs::OpenOptions::new().create(true).append(true).open(path).await?)
            }
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_events(rx, out));
        Ok(Arc::new(AuditLog { queue: Some(tx), dropped: AtomicU64::new(0) }))
    }

    pub fn record(&self, event: AuditEvent) {
        let Some(queue) = &self.queue else { return };
        if queue.try_send(Message::Event(Box::new(event))).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "audit log writer is behind: events dropped");
            }
        }
    }

    /// Write out everything queued so far.
    pub async fn flush(&self) {
        let Some(queue) = &self.queue else { return };
        let (done, flushed) = oneshot::channel();
        if queue.send(Message::Close(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }
}

async fn write_events(mut rx: mpsc::Receiver<Message>, mut out: Box<dyn AsyncWrite + Send + Unpin>) {
    let mut line = Vec::with_capacity(512);
    while let Some(message) = rx.recv().await {
        match message {
            Message::Event(event) => {
                line.clear();
                let timestamp = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
                if serde_json::to_writer(&mut line, &Line { timestamp, event: &event }).is_err() {
                    continue;
                }
                line.push(b'\n');
                if let Err(e) = out.write_all(&line).await {
                    tracing::error!("cannot write the audit log: {e}");
                }
                if rx.is_empty() {
                    let _ = out.flush().await;
                }
            }
            Message::Close(done) => {
                let _ = out.flush().await;
                let _ = done.send(());
            }
        }
    }
}
