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

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::{LazyConfigAcceptor, StartHandshake};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::budget::MemoryBudget;
use super::connection::{pump, ConnectionContext, ConnectionSummary, Dialled, Redial, Severity, StopSignals};
use super::limits::{Admitted, ConnectionLimits, Limit};
use super::proxy_protocol::{self, ProxiedAddresses, ProxyHeaderError};
use super::stream::{BrokerStream, Duplex, Rewound};
use super::swap::{self, SwapAuth};
use super::upstream;
use crate::config::{HostPort, ProxyProtocolSettings, ProxySettings, RouteConfig};
use crate::routing::{Route, Target, Upstream};
use crate::telemetry::{AuditEvent, AuditLog, ConnectionEvent, KeyedRateLimit, Metrics};
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
    /// For what happens before a connection has a route (SNI ports).
    pub metrics: Arc<Metrics>,
    /// The swap routes' authentication, by route name (`auth: swap`).
    pub swaps: HashMap<String, Arc<SwapAuth>>,
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
    while let Some((stream, client_addr)) = next_client(&port.listener, &shared, &route_name).await {
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
}

/// A host route served on an SNI port.
pub struct SniRoute {
    route: Arc<Route>,
    tls: Arc<ServerTls>,
    /// The route's name, made once for the connection limits rather than at every accept.
    name: Arc<str>,
}

impl SniRoute {
    pub fn new(route: Arc<Route>, tls: Arc<ServerTls>) -> SniRoute {
        let name = route.name.as_str().into();
        SniRoute { route, tls, name }
    }

    /// What `server_name` asks this route for: its bootstrap (the endpoint host) or a broker.
    fn target(&self, server_name: &str) -> Option<Target> {
        if server_name.eq_ignore_ascii_case(&self.route.advertised_host) {
            return Some(Target::Bootstrap);
        }
        self.route.host_pattern.as_ref()?.node_id(server_name).map(Target::Node)
    }
}

/// Accept connections on a port that host routes share until shutdown: each goes to the route
/// and broker its TLS SNI names, bootstrap names first.
pub async fn accept_sni_loop(listener: TcpListener, routes: Vec<SniRoute>, shared: Arc<ListenerContext>) {
    let label: Arc<str> = match listener.local_addr() {
        Ok(addr) => format!("sni:{addr}").into(),
        Err(_) => "sni".into(),
    };
    let routes = Arc::new(routes);
    while let Some((stream, client_addr)) = next_client(&listener, &shared, &label).await {
        let connection = SniConnection {
            routes: Arc::clone(&routes),
            shared: Arc::clone(&shared),
            label: Arc::clone(&label),
            client_addr,
        };
        shared.connections.spawn(connection.serve(stream));
    }
}

/// The next accepted client; `None` at shutdown.
async fn next_client(listener: &TcpListener, shared: &ListenerContext, label: &str) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(client) => return Some(client),
            Err(e) => {
                // Usually out of file descriptors: back off rather than spin.
                tracing::error!(listener = label, "cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A connection on an SNI port until its ClientHello says which route it is for.
struct SniConnection {
    routes: Arc<Vec<SniRoute>>,
    shared: Arc<ListenerContext>,
    /// `sni:<address>`, for logs and metrics before a route is known.
    label: Arc<str>,
    client_addr: SocketAddr,
}

impl SniConnection {
    async fn serve(self, mut client: TcpStream) {
        let started = Instant::now();
        let _ = client.set_nodelay(true);
        let (proxied, initial) = match read_proxy_header(&self.shared, &mut client, self.client_addr).await {
            Ok(header) => header,
            Err(e) => return self.refuse("bad_proxy_header", &e.to_string()),
        };
        let deadline = tokio::time::Instant::now() + self.shared.settings.tls_handshake_timeout;
        let hello = match client_hello(&self.shared, client, initial, deadline).await {
            Ok(hello) => hello,
            Err(failure) => return self.refuse(failure.reason, &failure.detail),
        };
        let server_name = hello.start.client_hello().server_name().map(str::to_owned);
        let Some(name) = server_name else {
            return self.refuse("no_sni", "the client sent no SNI server name, so no route can be chosen");
        };
        let Some((chosen, target)) = self.routes.iter().find_map(|r| Some((r, r.target(&name)?))) else {
            return self.refuse("unknown_sni", &format!("SNI `{name}` names no route or broker on this port"));
        };
        let (route, tls) = (&chosen.route, &chosen.tls);
        let admitted = match self.shared.limits.admit(&chosen.name) {
            Ok(admitted) => admitted,
            Err(limit) => return refuse(&self.shared.limits, route, self.client_addr, limit),
        };
        let mut connection = Connection {
            route: Arc::clone(route),
            tls: Some(Arc::clone(tls)),
            shared: Arc::clone(&self.shared),
            target,
            client_addr: self.client_addr,
            admitted,
        };
        route.metrics.client_connections_total.inc();
        route.metrics.client_connections_active.inc();
        connection.serve_tls(tls, hello, proxied, deadline, started).await;
        route.metrics.client_connections_active.dec();
    }

    /// Close a connection no route took: logged (rate-limited per reason) and counted.
    fn refuse(&self, reason: &'static str, detail: &str) {
        self.shared.metrics.tls_handshake_failed(&self.label, reason);
        if let Some(held_back) = CLOSES_LOGGED.allow(reason) {
            tracing::warn!(client_addr = %self.client_addr, listener = %self.label, held_back, "refusing TLS connection: {detail}");
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

/// Dial `target` for a client's connection, at its start or on the cluster its route moved to.
/// A broker port whose node the cluster lacks (a switchover's destination numbers its brokers
/// differently, or the broker left) is dialled to any of its brokers, which stands in for it:
/// the client's Produce requests there are answered NOT_LEADER_OR_FOLLOWER
/// ([`Dialled::stands_in`]), the rest go to that broker, and the client moves on to the leaders
/// it finds in metadata by its own retry path. Closing the connection instead would look to
/// some clients like a TLS or SASL mismatch, which franz-go's producer does not retry.
async fn dial(
    domain: &Upstream,
    target: Target,
    timeout: Duration,
) -> Result<(Dialled<BrokerStream>, HostPort), upstream::UpstreamError> {
    let (connected, stands_in) = match upstream::connect(domain, target, timeout).await {
        Err(upstream::UpstreamError::UnknownNode(_)) => {
            (upstream::connect(domain, Target::Bootstrap, timeout).await, true)
        }
        connected => (connected, false),
    };
    connected.map(|(stream, addr)| (Dialled { stream, stands_in }, addr))
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
    /// A connection of a port route (plaintext or TLS), from its first byte.
    async fn serve(mut self, mut client: TcpStream) {
        let started = Instant::now();
        self.route.metrics.client_connections_total.inc();
        self.route.metrics.client_connections_active.inc();
        let _ = client.set_nodelay(true);
        let header = read_proxy_header(&self.shared, &mut client, self.client_addr).await;
        match (header, self.tls.clone()) {
            (Err(e), _) => self.bad_proxy_header(e),
            (Ok((proxied, initial)), None) => {
                if self.admit_client(proxied) {
                    self.proxy(client, initial, proxied, started, None).await;
                }
            }
            (Ok((proxied, initial)), Some(tls)) => {
                let deadline = tokio::time::Instant::now() + self.shared.settings.tls_handshake_timeout;
                match client_hello(&self.shared, client, initial, deadline).await {
                    Ok(hello) => self.serve_tls(&tls, hello, proxied, deadline, started).await,
                    Err(failure) => self.handshake_failed(failure, proxied, started),
                }
            }
        }
        self.route.metrics.client_connections_active.dec();
    }

    /// The rest of a TLS connection once its ClientHello is read (and, on an SNI port, has
    /// chosen this route).
    async fn serve_tls(
        &mut self,
        tls: &ServerTls,
        hello: ClientHello,
        proxied: Option<ProxiedAddresses>,
        deadline: tokio::time::Instant,
        started: Instant,
    ) {
        if !self.admit_client(proxied) {
            return;
        }
        let ClientHello { start, permit } = hello;
        let handshake = tokio::time::timeout_at(deadline, start.into_stream(tls.config())).await;
        drop(permit);
        match handshake {
            Ok(Ok(client)) => {
                let subject = self.certificate_subject(&client);
                self.proxy(client, BytesMut::new(), proxied, started, subject).await
            }
            Ok(Err(e)) => self.handshake_failed(HandshakeFailure::from_io(&e), proxied, started),
            Err(_) => self.handshake_failed(
                HandshakeFailure::timeout(self.shared.settings.tls_handshake_timeout),
                proxied,
                started,
            ),
        }
    }

    /// The subject of the client's certificate, kept for swap routes that log clients in with
    /// it (mTLS); a certificate that cannot be read is logged and refused there.
    fn certificate_subject<IO>(&self, client: &tokio_rustls::server::TlsStream<IO>) -> Option<String> {
        if !self.shared.swaps.get(&self.route.name).is_some_and(|auth| auth.wants_certificate()) {
            return None;
        }
        let der = client.get_ref().1.peer_certificates()?.first()?;
        crate::tls::subject::subject_rfc2253(der)
            .inspect_err(|e| tracing::warn!(client_addr = %self.client_addr, route = %self.route.name, "{e}"))
            .ok()
    }

    /// Count the client against its address's limit (known once the PROXY header is read) and
    /// audit the open; `false` if the connection was refused.
    fn admit_client(&mut self, proxied: Option<ProxiedAddresses>) -> bool {
        let address = proxied.map_or(self.client_addr, |p| p.source).ip();
        if let Err(limit) = self.admitted.client(address) {
            refuse(&self.shared.limits, &self.route, self.client_addr, limit);
            return false;
        }
        self.audit_open(proxied);
        true
    }

    fn bad_proxy_header(&self, e: ProxyHeaderError) {
        tracing::warn!(client_addr = %self.client_addr, route = %self.route.name, "closing client connection: {e}");
        self.route.metrics.connection_closed("bad_proxy_header", true);
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

    async fn proxy<C: Duplex>(
        &self,
        client: C,
        initial: BytesMut,
        proxied: Option<ProxiedAddresses>,
        started: Instant,
        certificate: Option<String>,
    ) {
        let session = self.route.session();
        let (route, metrics) = (self.route.name.as_str(), &self.route.metrics);
        let (client_addr, target) = (self.client_addr, self.target);
        let origin = proxied.map(|p| format!(" {p}")).unwrap_or_default();
        let domain = self.route.upstream();
        let (upstream, upstream_addr) = match dial(&domain, target, self.shared.settings.connect_timeout).await {
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
        let stands_in = upstream.stands_in;
        tracing::debug!(%client_addr, route, ?target, upstream = %upstream_addr, stands_in, "connection opened{origin}");
        metrics.upstream_connections_active.inc();
        let ctx = ConnectionContext {
            route: Arc::clone(&self.route),
            upstream: domain,
            settings: Arc::clone(&self.shared.settings),
            budget: Arc::clone(&self.shared.budget),
            swap: None,
        };
        let stop = StopSignals { gateway: &self.shared.shutdown, route: &session };
        let connect_timeout = self.shared.settings.connect_timeout;
        let redial = move |domain: Arc<Upstream>| -> Pin<Box<dyn Future<Output = _> + Send>> {
            Box::pin(async move {
                let dialled = dial(&domain, target, connect_timeout).await;
                dialled.map(|(dialled, _)| dialled).map_err(|e| e.to_string())
            })
        };
        let summary = match self.shared.swaps.get(&self.route.name) {
            None => pump(client, initial, upstream, &ctx, stop, Some(&redial as &Redial<_>)).await,
            // The re-dial serves both a switchover's cut and the renewal of the gateway's broker
            // session (connections.max.reauth.ms); the swap logs in again on it.
            Some(auth) => swap::serve(auth, (client, initial, certificate), upstream, ctx, stop, redial).await,
        };
        metrics.upstream_connections_active.dec();
        let reason = &summary.reason;
        metrics.connection_closed(reason.label(), reason.rejected_input());
        let duration_ms = started.elapsed().as_millis() as u64;
        let upstream = upstream_addr.to_string();
        // Who the client authenticated as (never a secret): empty fields when it used no SASL.
        let sasl = &summary.sasl;
        let (principal, sasl_mechanism, authenticated) =
            (sasl.principal.as_deref(), sasl.mechanism.as_deref(), sasl.authenticated);
        match reason.severity() {
            Severity::Routine => {
                tracing::debug!(%client_addr, route, ?target, upstream, duration_ms, principal, sasl_mechanism, authenticated, "connection closed: {reason}{origin}")
            }
            Severity::Notable => {
                if let Some(held_back) = CLOSES_LOGGED.allow(reason.label()) {
                    tracing::info!(%client_addr, route, ?target, upstream, duration_ms, principal, sasl_mechanism, authenticated, held_back, "connection closed: {reason}{origin}")
                }
            }
            Severity::Problem => {
                if let Some(held_back) = CLOSES_LOGGED.allow(reason.label()) {
                    tracing::warn!(%client_addr, route, ?target, upstream, duration_ms, principal, sasl_mechanism, authenticated, held_back, "connection closed: {reason}{origin}")
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
            sasl_mechanism: summary.and_then(|s| s.sasl.mechanism.clone()),
            principal: summary.and_then(|s| s.sasl.principal.clone()),
            authenticated: summary.and_then(|s| s.sasl.authenticated),
            sasl_authentications: summary.map(|s| s.sasl.authentications).filter(|n| *n > 0),
            sasl_replays: summary.map(|s| s.sasl.replays).filter(|n| *n > 0),
            cluster_user: summary.and_then(|s| s.cluster_user.clone()),
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
            sasl_mechanism: None,
            principal: None,
            authenticated: None,
            sasl_authentications: None,
            sasl_replays: None,
            cluster_user: None,
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

    fn timeout(timeout: Duration) -> Self {
        HandshakeFailure::new("handshake_timeout", format!("the handshake did not finish within {timeout:?}"))
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

/// The PROXY header's addresses (when the feature is on) and the bytes read after it.
async fn read_proxy_header(
    shared: &ListenerContext,
    client: &mut TcpStream,
    client_addr: SocketAddr,
) -> Result<(Option<ProxiedAddresses>, BytesMut), ProxyHeaderError> {
    if !shared.proxy_protocol.enabled {
        return Ok((None, BytesMut::new()));
    }
    proxy_protocol::read_header(client, client_addr, &shared.proxy_protocol).await
}

/// A client's ClientHello, read, and the handshake slot it holds until its handshake ends.
struct ClientHello {
    start: StartHandshake<Rewound<TcpStream>>,
    permit: OwnedSemaphorePermit,
}

/// Take a handshake slot and read the client's ClientHello, both by `deadline`.
async fn client_hello(
    shared: &ListenerContext,
    client: TcpStream,
    initial: BytesMut,
    deadline: tokio::time::Instant,
) -> Result<ClientHello, HandshakeFailure> {
    let timeout = shared.settings.tls_handshake_timeout;
    let permit = tokio::time::timeout_at(deadline, Arc::clone(&shared.handshakes).acquire_owned())
        .await
        .map_err(|_| {
            HandshakeFailure::new(
                "handshake_queue_timeout",
                format!("no handshake slot within {timeout:?} (proxy.maxTlsHandshakes are all in progress)"),
            )
        })?
        .map_err(|_| HandshakeFailure::new("shutting_down", "the gateway is stopping".into()))?;
    let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), Rewound::new(initial, client));
    let start = tokio::time::timeout_at(deadline, acceptor)
        .await
        .map_err(|_| HandshakeFailure::timeout(timeout))?
        .map_err(|e| HandshakeFailure::from_io(&e))?;
    Ok(ClientHello { start, permit })
}
