//! The client-facing sockets of a route: its bootstrap port and one port per node id.
//!
//! All of a route's ports are bound up front, so a port already taken is reported at start
//! naming the route and port, and the port map never changes while the gateway runs. Each
//! accepted connection becomes a task that reads the PROXY header when the feature is on, on a
//! TLS route completes the TLS handshake, opens its broker connection and pumps frames until
//! either side ends; its end is logged, counted and audited with the client address, route and
//! reason.
//!
//! A TLS handshake runs in its connection's task, never in the accept loop, under
//! `tlsHandshakeTimeoutMs` and a gateway-wide cap on handshakes in progress
//! (`maxTlsHandshakes`): a flood of handshakes costs bounded memory and CPU and leaves
//! connections that are already established, and plaintext routes, served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::budget::MemoryBudget;
use super::connection::{pump, ConnectionContext, ConnectionSummary, Severity, StopSignals};
use super::limits::{Admitted, ConnectionLimits, Limit};
use super::proxy_protocol::{self, ProxiedAddresses};
use super::stream::{Duplex, Rewound};
use super::upstream;
use crate::config::{ProxyProtocolSettings, ProxySettings, RouteConfig};
use crate::routing::{Route, Target};
use crate::telemetry::{AuditEvent, AuditLog, ConnectionEvent, KeyedRateLimit};
use crate::tls::ServerTls;

/// Closes logged at info (idle timeouts, resets) and warn (bad input, broken peers): at most
/// this many a second for each close reason; `held_back` in the next line of that reason counts
/// the others. Every close is still counted in `switchyard_connections_closed` and written to
/// the audit log.
static CLOSES_LOGGED: KeyedRateLimit = KeyedRateLimit::per_second(20);

/// A bound client-facing port and what it leads to.
pub struct BoundPort {
    pub listener: TcpListener,
    pub target: Target,
}

/// What every connection of a gateway shares.
pub struct ListenerContext {
    pub settings: Arc<ProxySettings>,
    pub proxy_protocol: ProxyProtocolSettings,
    pub audit: Arc<AuditLog>,
    pub shutdown: CancellationToken,
    pub connections: TaskTracker,
    pub limits: Arc<ConnectionLimits>,
    pub budget: Arc<MemoryBudget>,
    /// Permits for client TLS handshakes in progress (`maxTlsHandshakes`).
    pub handshakes: Arc<Semaphore>,
}

/// Bind every port of a route: its bootstrap port, then one per node id of its port map.
pub async fn bind_route(route: &RouteConfig) -> anyhow::Result<Vec<BoundPort>> {
    let targets = std::iter::once((route.port_map.bootstrap_port(), Target::Bootstrap))
        .chain(route.port_map.node_ports().map(|(id, port)| (port, Target::Node(id))));
    let mut bound = Vec::new();
    for (port, target) in targets {
        let addr = SocketAddr::new(route.bind_ip, port);
        let listener = listen(addr).map_err(|e| {
            anyhow::anyhow!(
                "route `{}`: cannot listen on {addr} ({}): {e}. Free the port or move the route's endpoint port",
                route.name,
                describe_target(target)
            )
        })?;
        bound.push(BoundPort { listener, target });
    }
    Ok(bound)
}

/// Clients connecting in a burst (a fleet restarting, a switchover's reconnect) queue in the
/// listen backlog until accepted; the usual 1024 overflowed at a few thousand at once, and an
/// overflowed SYN costs the client a one-second retransmit. The kernel caps it at somaxconn.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

fn describe_target(target: Target) -> String {
    match target {
        Target::Bootstrap => "bootstrap port".to_string(),
        Target::Node(id) => format!("port of node {id}"),
    }
}

/// Accept connections on one port until shutdown; `tls`: the route's TLS, if it has any.
pub async fn accept_loop(
    port: BoundPort,
    route: Arc<Route>,
    tls: Option<Arc<ServerTls>>,
    shared: Arc<ListenerContext>,
) {
    let route_name: Arc<str> = route.name.as_str().into();
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            accepted = port.listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, client_addr)) => {
                let admitted = match shared.limits.admit(&route_name) {
                    Ok(admitted) => admitted,
                    Err(limit) => {
                        refuse(&shared.limits, &route, client_addr, limit);
                        continue;
                    }
                };
                let connection = Connection {
                    route: Arc::clone(&route),
                    tls: tls.clone(),
                    shared: Arc::clone(&shared),
                    target: port.target,
                    client_addr,
                    admitted,
                };
                shared.connections.spawn(connection.serve(stream));
            }
            Err(e) => {
                // Usually out of file descriptors: back off rather than spin.
                tracing::error!(route = %route.name, "cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Count a connection refused at `limit`, and log it unless one was logged this second.
fn refuse(limits: &ConnectionLimits, route: &Route, client_addr: SocketAddr, limit: Limit) {
    route.metrics.connection_refused(limit.label());
    if let Some(unlogged) = limits.log_refusal(limit) {
        tracing::warn!(
            %client_addr,
            route = %route.name,
            refused_since_last_logged = unlogged,
            "refusing client connection: it would exceed {limit}"
        );
    }
}

/// One accepted client connection, from accept to close.
struct Connection {
    route: Arc<Route>,
    tls: Option<Arc<ServerTls>>,
    shared: Arc<ListenerContext>,
    target: Target,
    client_addr: SocketAddr,
    /// Released when the connection ends.
    admitted: Admitted,
}

impl Connection {
    async fn serve(mut self, mut client: TcpStream) {
        let started = Instant::now();
        let metrics = &self.route.metrics;
        metrics.client_connections_total.inc();
        metrics.client_connections_active.inc();
        let _ = client.set_nodelay(true);
        let session = self.route.session();
        if let Some((proxied, initial)) = self.proxy_header(&mut client).await {
            let address = proxied.map_or(self.client_addr, |p| p.source).ip();
            if let Err(limit) = self.admitted.client(address) {
                refuse(&self.shared.limits, &self.route, self.client_addr, limit);
                metrics.client_connections_active.dec();
                return;
            }
            self.audit_open(proxied);
            match &self.tls {
                None => self.proxy(client, initial, proxied, &session, started).await,
                Some(tls) => match self.handshake(tls, client, initial).await {
                    Ok(client) => self.proxy(client, BytesMut::new(), proxied, &session, started).await,
                    Err(failure) => self.handshake_failed(failure, proxied, started),
                },
            }
        }
        metrics.client_connections_active.dec();
    }

    /// The client's TLS handshake, within the handshake timeout and the gateway's cap on
    /// handshakes in progress.
    async fn handshake(
        &self,
        tls: &ServerTls,
        client: TcpStream,
        initial: BytesMut,
    ) -> Result<TlsStream<Rewound<TcpStream>>, HandshakeFailure> {
        let timeout = self.shared.settings.tls_handshake_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let _permit = tokio::time::timeout_at(deadline, self.shared.handshakes.acquire())
            .await
            .map_err(|_| {
                HandshakeFailure::new(
                    "handshake_queue_timeout",
                    format!("no handshake slot within {timeout:?} (maxTlsHandshakes reached)"),
                )
            })?
            .map_err(|_| HandshakeFailure::new("shutting_down", "the gateway is stopping".into()))?;
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
        tokio::time::timeout_at(deadline, acceptor.accept(Rewound::new(initial, client)))
            .await
            .map_err(|_| {
                HandshakeFailure::new("handshake_timeout", format!("the handshake did not finish within {timeout:?}"))
            })?
            .map_err(|e| HandshakeFailure::from_io(&e))
    }

    fn handshake_failed(&self, failure: HandshakeFailure, proxied: Option<ProxiedAddresses>, started: Instant) {
        let (route, metrics) = (self.route.name.as_str(), &self.route.metrics);
        metrics.tls_handshake_failed(failure.reason);
        metrics.connection_closed("tls_handshake_failed", true);
        if let Some(held_back) = CLOSES_LOGGED.allow(failure.reason) {
            tracing::warn!(client_addr = %self.client_addr, route, held_back, "TLS handshake failed: {}", failure.detail);
        }
        self.audit_close(proxied, None, &format!("TLS handshake failed: {}", failure.detail), started, None);
    }

    /// The PROXY header's addresses and the bytes after it; `None` if the connection was refused.
    async fn proxy_header(&self, client: &mut TcpStream) -> Option<(Option<ProxiedAddresses>, BytesMut)> {
        if !self.shared.proxy_protocol.enabled {
            return Some((None, BytesMut::new()));
        }
        match proxy_protocol::read_header(client, self.client_addr, &self.shared.proxy_protocol).await {
            Ok(found) => Some(found),
            Err(e) => {
                tracing::warn!(client_addr = %self.client_addr, route = %self.route.name, "closing client connection: {e}");
                self.route.metrics.connection_closed("bad_proxy_header", true);
                None
            }
        }
    }

    async fn proxy<C: Duplex>(
        &self,
        client: C,
        initial: BytesMut,
        proxied: Option<ProxiedAddresses>,
        session: &CancellationToken,
        started: Instant,
    ) {
        let (route, metrics) = (self.route.name.as_str(), &self.route.metrics);
        let (client_addr, target) = (self.client_addr, self.target);
        let origin = proxied.map(|p| format!(" {p}")).unwrap_or_default();
        let domain = self.route.upstream();
        let (upstream, upstream_addr) =
            match upstream::connect(&domain, target, self.shared.settings.connect_timeout).await {
                Ok(connected) => connected,
                Err(e) => {
                    tracing::warn!(%client_addr, route, ?target, "closing client connection: {e}{origin}");
                    metrics.upstream_connect_failures.inc();
                    if let upstream::UpstreamError::Handshake { label, .. } = &e {
                        metrics.broker_tls_handshake_failed(label);
                    }
                    self.audit_close(proxied, None, &e.to_string(), started, None);
                    return;
                }
            };
        tracing::debug!(%client_addr, route, ?target, upstream = %upstream_addr, "connection opened{origin}");
        metrics.upstream_connections_active.inc();
        let ctx = ConnectionContext {
            route: Arc::clone(&self.route),
            upstream: domain,
            settings: Arc::clone(&self.shared.settings),
            budget: Arc::clone(&self.shared.budget),
        };
        let stop = StopSignals { gateway: &self.shared.shutdown, route: session };
        let summary = pump(client, initial, upstream, &ctx, stop).await;
        metrics.upstream_connections_active.dec();
        let reason = &summary.reason;
        metrics.connection_closed(reason.label(), reason.rejected_input());
        let duration_ms = started.elapsed().as_millis() as u64;
        let upstream = upstream_addr.to_string();
        match reason.severity() {
            Severity::Routine => {
                tracing::debug!(%client_addr, route, ?target, upstream, duration_ms, "connection closed: {reason}{origin}")
            }
            Severity::Notable => {
                if let Some(held_back) = CLOSES_LOGGED.allow(reason.label()) {
                    tracing::info!(%client_addr, route, ?target, upstream, duration_ms, held_back, "connection closed: {reason}{origin}")
                }
            }
            Severity::Problem => {
                if let Some(held_back) = CLOSES_LOGGED.allow(reason.label()) {
                    tracing::warn!(%client_addr, route, ?target, upstream, duration_ms, held_back, "connection closed: {reason}{origin}")
                }
            }
        }
        self.audit_close(proxied, Some(upstream), &reason.to_string(), started, Some(&summary));
    }

    fn audit_open(&self, proxied: Option<ProxiedAddresses>) {
        self.shared.audit.record(AuditEvent::Connection(self.event(proxied)));
    }

    fn audit_close(
        &self,
        proxied: Option<ProxiedAddresses>,
        upstream: Option<String>,
        reason: &str,
        started: Instant,
        summary: Option<&ConnectionSummary>,
    ) {
        self.shared.audit.record(AuditEvent::Connection(ConnectionEvent {
            event: "close",
            upstream_address: upstream,
            bytes_from_client: summary.map(|s| s.bytes_from_client),
            bytes_to_client: summary.map(|s| s.bytes_to_client),
            duration_ms: Some(started.elapsed().as_millis() as u64),
            close_reason: Some(reason.to_string()),
            ..self.event(proxied)
        }));
    }

    /// The `open` event; `close` events fill in the rest.
    fn event(&self, proxied: Option<ProxiedAddresses>) -> ConnectionEvent {
        ConnectionEvent {
            event: "open",
            route: self.route.name.clone(),
            client_address: self.client_addr,
            proxy_source_address: proxied.map(|p| p.source),
            proxy_destination_address: proxied.map(|p| p.destination),
            upstream_address: None,
            bytes_from_client: None,
            bytes_to_client: None,
            duration_ms: None,
            close_reason: None,
        }
    }
}

/// Why a client's TLS handshake failed: a metric label and a line for the log.
struct HandshakeFailure {
    reason: &'static str,
    detail: String,
}

impl HandshakeFailure {
    fn new(reason: &'static str, detail: String) -> Self {
        HandshakeFailure { reason, detail }
    }

    fn from_io(error: &std::io::Error) -> Self {
        use rustls::Error as E;
        let reason = match error.get_ref().and_then(|inner| inner.downcast_ref::<E>()) {
            Some(E::NoCertificatesPresented) => "no_client_certificate",
            Some(E::InvalidCertificate(_)) => "client_certificate_refused",
            Some(E::InvalidMessage(_)) | Some(E::InappropriateMessage { .. }) => "not_tls",
            Some(E::PeerIncompatible(_)) | Some(E::PeerMisbehaved(_)) => "incompatible_client",
            Some(E::AlertReceived(_)) => "client_refused_certificate",
            Some(_) => "handshake_failed",
            None => "connection_lost",
        };
        HandshakeFailure { reason, detail: error.to_string() }
    }
}
