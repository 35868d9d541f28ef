//! A running gateway: every route's listeners, their connections, the admin server, and the
//! background tasks that keep each route's view of its cluster fresh.
//!
//! Binding comes first and on its own ([`Listeners::bind`]), so a port already taken is
//! reported before anything starts, and a caller (a test, an embedding program) can bind the
//! sockets itself. [`Gateway::start`] takes the bound listeners and returns once everything
//! serves. Shutdown stops accepting, lets every connection finish its in-flight requests
//! (bounded by `proxy.drainTimeoutMs`), flushes the audit log, then returns. [`Gateway::run`]
//! does all three, shutting down when the future it is given resolves, as tokio's mini-redis
//! server does.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminState};
use crate::cluster::command::SwitchoverCommand;
use crate::cluster::group::ClusterGroup;
use crate::cluster::{self, ClusterNode, Membership, Rejections};
use crate::config::GatewayConfig;
use crate::proxy::{
    accept_loop, accept_sni_loop, bind_route, BoundPort, ConnectionLimits, ListenerContext, MemoryBudget,
    OwnConnection, SniRoute, SwapAuth,
};
use crate::routing::memory::{MemoryDir, RouteMemory};
use crate::routing::{Route, TopicIdLookup, Upstream};
use crate::secrets::SecretStores;
use crate::switchover::reload::{self, ReloadOutcome};
use crate::telemetry::{AuditEvent, AuditLog, Metrics};
use crate::tls::ServerTls;

/// A route ready to serve: its ports (none for a host route whose SNI port another route bound)
/// and its TLS.
struct ServedRoute {
    route: Arc<Route>,
    tls: Option<Arc<ServerTls>>,
    ports: Vec<BoundPort>,
    bind_ip: std::net::IpAddr,
}

/// Start accepting on every route's ports: an accept loop per port of a port route, one per SNI
/// port for the host routes sharing it; and a certificate watch per TLS route.
fn spawn_listeners(
    served: Vec<ServedRoute>,
    shared: &Arc<ListenerContext>,
    background: &TaskTracker,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<()> {
    let mut sni_ports: Vec<(SocketAddr, Option<tokio::net::TcpListener>, Vec<SniRoute>)> = Vec::new();
    for ServedRoute { route, tls, ports, bind_ip } in served {
        tracing::info!(
            route = %route.name,
            domain = %route.upstream().domain,
            port = route.port_map.bootstrap_port(),
            node_ports = ports.len().saturating_sub(1),
            tls = tls.is_some(),
            brokers = %route.host_pattern.as_ref().map_or("by port".to_string(), |p| format!("by SNI {p}")),
            "route listening"
        );
        if let Some(tls) = &tls {
            let stop = shared.shutdown.clone().cancelled_owned();
            background.spawn(Arc::clone(tls).watch(Arc::clone(metrics), stop));
        }
        match (&route.host_pattern, tls) {
            (Some(_), Some(tls)) => {
                let addr = SocketAddr::new(bind_ip, route.port_map.bootstrap_port());
                let listener = ports.into_iter().next().map(|port| port.listener);
                let entry = SniRoute::new(Arc::clone(&route), tls);
                match sni_ports.iter_mut().find(|(a, _, _)| *a == addr) {
                    Some((_, _, routes)) => routes.push(entry),
                    None => sni_ports.push((addr, listener, vec![entry])),
                }
            }
            (_, tls) => {
                for port in ports {
                    background.spawn(accept_loop(port, Arc::clone(&route), tls.clone(), Arc::clone(shared)));
                }
            }
        }
    }
    for (addr, listener, routes) in sni_ports {
        let listener = listener.ok_or_else(|| anyhow::anyhow!("the SNI port {addr} was not bound"))?;
        background.spawn(accept_sni_loop(listener, routes, Arc::clone(shared)));
    }
    Ok(())
}

/// The authentication of every `auth: swap` route, by route name, with its secret store.
fn swap_routes(config: &GatewayConfig) -> anyhow::Result<HashMap<String, Arc<SwapAuth>>> {
    let stores = SecretStores::open(&config.secret_stores);
    let mut swaps = HashMap::new();
    for route in &config.routes {
        let Some(settings) = &route.swap else { continue };
        let store = stores.get(&settings.secret_store).ok_or_else(|| {
            anyhow::anyhow!("{}: route `{}`: no secret store `{}`", config.source, route.name, settings.secret_store)
        })?;
        let auth = SwapAuth::new(settings.clone(), store).map_err(|e| {
            anyhow::anyhow!(
                "{}: route `{}`: swapConfig.clientAuth.sasl.jaasConfig.file: {e}; fix: write each verifier as \
                     `salt=...,stored_key=...,server_key=...,iterations=...` (`switchyard scram-verifier` prints one)",
                config.source,
                route.name
            )
        })?;
        let mut by_domain = HashMap::new();
        for (domain, name) in &settings.domain_secret_stores {
            let store = stores.get(name).ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: route `{}`: no secret store `{name}` for domain `{domain}`",
                    config.source,
                    route.name
                )
            })?;
            by_domain.insert(domain.clone(), (name.clone(), store));
        }
        swaps.insert(route.name.clone(), Arc::new(auth.with_domain_stores(by_domain)));
    }
    Ok(swaps)
}

/// A route's client-facing TLS, loaded from its stores; an error names the route and the field.
fn route_tls(config: &GatewayConfig, route: &crate::config::RouteConfig) -> anyhow::Result<Option<Arc<ServerTls>>> {
    let Some(settings) = &route.tls else { return Ok(None) };
    ServerTls::load(&route.name, settings).map(Some).map_err(|e| {
        anyhow::anyhow!(
            "{}: route `{}` (routes[].security.ssl): {e}. Fix the store file or its settings",
            config.source,
            route.name
        )
    })
}

/// Every socket a gateway serves on, bound: each route's ports (in the config's route order)
/// and the admin API's. Host routes that share an SNI port bind it once: the later ones have
/// no ports of their own.
pub struct Listeners {
    routes: Vec<Vec<BoundPort>>,
    admin: tokio::net::TcpListener,
}

impl Listeners {
    /// Bind every route's ports and the admin address the config names.
    pub async fn bind(config: &GatewayConfig) -> anyhow::Result<Listeners> {
        let mut routes = Vec::new();
        let mut sni_ports = std::collections::HashSet::new();
        for route in &config.routes {
            let shared_sni_port = route.host_pattern.is_some()
                && !sni_ports.insert(SocketAddr::new(route.bind_ip, route.port_map.bootstrap_port()));
            routes.push(if shared_sni_port { Vec::new() } else { bind_route(route).await? });
        }
        let admin = tokio::net::TcpListener::bind(config.admin.address).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {} for the admin API: {e}. Set admin.address or GATEWAY_ADMIN_ADDRESS to a free address",
                config.admin.address
            )
        })?;
        Ok(Listeners { routes, admin })
    }
}

pub struct Gateway {
    state: Arc<AdminState>,
    shutdown: CancellationToken,
    connections: TaskTracker,
    background: TaskTracker,
    audit: Arc<AuditLog>,
    drain_timeout: Duration,
    listening: Vec<(String, SocketAddr)>,
    admin_addr: SocketAddr,
}

impl Gateway {
    /// Start serving on `listeners` (bound for `config`).
    pub async fn start(config: &GatewayConfig, listeners: Listeners) -> anyhow::Result<Gateway> {
        let proxy_protocol = &config.proxy_protocol;
        if proxy_protocol.enabled && proxy_protocol.trusted_networks.is_empty() {
            tracing::warn!(
                "the PROXY protocol is on with no proxyProtocol.trustedNetworks: any client that reaches the gateway \
                 directly can claim any source address. List the load balancers' networks"
            );
        }
        let shutdown = CancellationToken::new();
        let metrics = Metrics::new();
        let audit = match &config.audit {
            Some(sink) => AuditLog::start(sink).await.map_err(|e| {
                anyhow::anyhow!("cannot open the audit log {sink:?}: {e}. Check audit.file or GATEWAY_AUDIT_LOG")
            })?,
            None => AuditLog::disabled(),
        };
        let (membership, advertising) =
            cluster::advertising(&config.cluster, &config.routes[0].endpoint.host, &metrics, &audit);
        let mut listening = Vec::new();
        let mut bound_routes = Vec::new();
        for (route_config, ports) in config.routes.iter().zip(listeners.routes) {
            let upstream = Upstream::for_domain(
                config,
                &route_config.domain,
                route_config.bootstrap_server_id.as_deref(),
                &shutdown,
            )?;
            let route = Arc::new(Route::new(route_config, upstream, Arc::clone(&advertising), &metrics, &shutdown));
            for port in &ports {
                listening.push((route.name.clone(), port.listener.local_addr()?));
            }
            let tls = route_tls(config, route_config)?;
            bound_routes.push(ServedRoute { route, tls, ports, bind_ip: route_config.bind_ip });
        }
        let admin_listener = listeners.admin;
        let admin_addr = admin_listener.local_addr()?;

        let (cluster, commands) = match membership {
            Some(membership) => {
                let rejections =
                    Rejections::new(membership.cluster_id.clone(), Arc::clone(&metrics), Arc::clone(&audit));
                let (node, commands) = join_cluster(config, membership, rejections).await?;
                (Some(node), Some(commands))
            }
            None => (None, None),
        };

        // Only once everything is bound: a start that fails leaves nothing running.
        let connections = TaskTracker::new();
        let background = TaskTracker::new();
        let shared = Arc::new(ListenerContext {
            settings: Arc::new(config.proxy.clone()),
            proxy_protocol: config.proxy_protocol.clone(),
            audit: Arc::clone(&audit),
            shutdown: shutdown.clone(),
            connections: connections.clone(),
            limits: ConnectionLimits::new(&config.proxy),
            budget: MemoryBudget::new(config.proxy.buffer_budget_bytes, metrics.buffered_frame_bytes()),
            handshakes: Arc::new(Semaphore::new(config.proxy.max_tls_handshakes)),
            metrics: Arc::clone(&metrics),
            swaps: swap_routes(config)?,
        });
        let routes: Vec<Arc<Route>> = bound_routes.iter().map(|served| Arc::clone(&served.route)).collect();
        let memory = match &config.state_dir {
            Some(dir) => Some(MemoryDir::open(dir).map_err(|e| {
                anyhow::anyhow!(
                    "cannot use the state directory {}: {e}. Check state.directory or GATEWAY_STATE_DIR",
                    dir.display()
                )
            })?),
            None => None,
        };
        let recalled = memory.as_ref().map(|dir| recall_routes(dir, &routes)).unwrap_or_default();
        spawn_listeners(bound_routes, &shared, &background, &metrics)?;
        let state = Arc::new(AdminState {
            config: config.clone(),
            routes,
            metrics,
            audit: Arc::clone(&audit),
            shutdown: shutdown.clone(),
            cluster,
            topic_ids: Arc::new(OwnConnection {
                connect_timeout: config.proxy.connect_timeout,
                max_frame_bytes: config.proxy.max_frame_bytes,
            }),
        });
        if let Some(commands) = commands {
            background.spawn(apply_cluster_commands(commands, Arc::clone(&state)));
        }
        for (route, memory) in recalled {
            background.spawn(translate_recalled(route, memory, Arc::clone(&state.topic_ids)));
        }
        if let Some(dir) = memory {
            background.spawn(keep_route_memories(dir, state.routes.clone(), shutdown.clone()));
        }
        background.spawn(admin::serve(admin_listener, Arc::clone(&state), shutdown.clone()));
        tracing::info!(address = %admin_addr, "admin API listening");
        Ok(Gateway {
            state,
            shutdown,
            connections,
            background,
            audit,
            drain_timeout: config.proxy.drain_timeout,
            listening,
            admin_addr,
        })
    }

    /// Bind, serve until `shutdown` resolves, then shut down. Returns whether every connection
    /// drained within `proxy.drainTimeoutMs`.
    pub async fn run(
        config: &GatewayConfig,
        listeners: Listeners,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<bool> {
        let gateway = Gateway::start(config, listeners).await?;
        shutdown.await;
        Ok(gateway.shutdown().await)
    }

    /// Every `(route, address)` the gateway listens on for clients.
    pub fn listening(&self) -> &[(String, SocketAddr)] {
        &self.listening
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Apply an edited config: switch the routes whose domain changed, leave the others alone,
    /// and report what would need a restart.
    pub async fn reload(&self, edited: &GatewayConfig) -> ReloadOutcome {
        let state = &self.state;
        let (outcome, reports) = reload::apply(&state.switchboard(), edited).await;
        for report in &reports {
            admin::record_switchover(&state.audit, report);
        }
        tracing::info!(
            switched = ?outcome.switched,
            fenced = ?outcome.fenced,
            unchanged = ?outcome.unchanged,
            needs_restart = ?outcome.needs_restart,
            failed = ?outcome.failed,
            "config reloaded from {}",
            edited.source
        );
        state.audit.record(AuditEvent::ConfigReload(outcome.clone()));
        outcome
    }

    /// Stop accepting, drain connections, stop background tasks. Returns whether every
    /// connection finished within the drain timeout.
    pub async fn shutdown(self) -> bool {
        if let Some(cluster) = &self.state.cluster {
            // Leave first, so the other nodes stop sending clients here while this one drains.
            let cluster = Arc::clone(cluster);
            let _ = tokio::task::spawn_blocking(move || cluster.group.leave()).await;
        }
        self.shutdown.cancel();
        self.background.close();
        self.connections.close();
        // Connections enforce the drain timeout themselves; the margin covers their last writes.
        let drained =
            tokio::time::timeout(self.drain_timeout + Duration::from_secs(1), self.connections.wait()).await.is_ok();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.background.wait()).await;
        self.audit.flush().await;
        drained
    }
}

/// How often routes' memories are written when they changed.
const MEMORY_WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// Take up what each route remembered before the restart; returns the routes that count as
/// moved, with their memory.
fn recall_routes(dir: &MemoryDir, routes: &[Arc<Route>]) -> Vec<(Arc<Route>, RouteMemory)> {
    let mut moved = Vec::new();
    for route in routes {
        match dir.load(&route.name) {
            Ok(Some(memory)) => {
                if route.recall(&memory) {
                    tracing::info!(
                        route = %route.name,
                        remembered_domain = %memory.domain,
                        topic_ids = memory.topic_ids.len(),
                        "the route moved before this start: clients keep the topic ids and cluster id they were shown"
                    );
                    moved.push((Arc::clone(route), memory));
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(route = %route.name, "the route's memory is unusable, it starts afresh: {e}"),
        }
    }
    moved
}

/// For a route that moved before this start: ask its cluster now for the ids of the topics
/// its clients know, so that their first requests by id are translated, before any Metadata
/// answer teaches the route.
async fn translate_recalled(route: Arc<Route>, memory: RouteMemory, lookup: Arc<dyn TopicIdLookup>) {
    let presented = memory.presented_ids();
    let names: Vec<String> = presented.keys().cloned().collect();
    if names.is_empty() {
        return;
    }
    match lookup.topic_ids(&route.upstream(), &names).await {
        Ok(current) => route.topic_ids.prepare(route.moves(), &presented, &current),
        Err(e) => {
            tracing::warn!(route = %route.name, "topic ids not looked up after the restart, Metadata answers will teach them: {e}")
        }
    }
}

/// Write each route's memory when it changed, and once more at shutdown. A failing write is
/// logged when it starts failing, not every second.
async fn keep_route_memories(dir: MemoryDir, routes: Vec<Arc<Route>>, shutdown: CancellationToken) {
    let mut written: HashMap<String, RouteMemory> = HashMap::new();
    let mut failing: HashSet<String> = HashSet::new();
    let mut tick = tokio::time::interval(MEMORY_WRITE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            () = shutdown.cancelled() => true,
        };
        for route in &routes {
            let memory = route.memory();
            let nothing_shown = memory.topic_ids.is_empty() && memory.cluster_id.is_none();
            if nothing_shown || written.get(&route.name) == Some(&memory) {
                continue;
            }
            let (dir, name, saved) = (dir.clone(), route.name.clone(), memory.clone());
            let outcome = tokio::task::spawn_blocking(move || dir.save(&name, &saved).map_err(|e| e.to_string()))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            match outcome {
                Ok(()) => {
                    failing.remove(&route.name);
                    written.insert(route.name.clone(), memory);
                }
                Err(e) if failing.insert(route.name.clone()) => {
                    tracing::warn!(route = %route.name, "the route's memory is not written, a restart would forget it: {e}");
                }
                Err(_) => {}
            }
        }
        if stopping {
            return;
        }
    }
}

/// Join the gateway cluster through its membership domain (`cluster.domain`, else the first
/// route's); returns the node and the switchovers other nodes publish.
async fn join_cluster(
    config: &GatewayConfig,
    membership: Arc<Membership>,
    rejections: Arc<Rejections>,
) -> anyhow::Result<(Arc<ClusterNode>, mpsc::UnboundedReceiver<SwitchoverCommand>)> {
    let domain_name = config.cluster.domain.as_deref().unwrap_or(&config.routes[0].domain);
    let domain = config.domains.iter().find(|d| d.name == domain_name).expect("the config checked the cluster domain");
    let (sender, commands) = mpsc::unbounded_channel();
    let server = &domain.bootstrap_servers[0];
    let group = ClusterGroup::join(
        &config.cluster,
        &server.addresses,
        &server.security,
        Arc::clone(&membership),
        Arc::clone(&rejections),
        sender,
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!("cannot join gateway cluster `{}` through domain `{domain_name}`: {e:#}", membership.cluster_id)
    })?;
    let internal_load_balancing = config.cluster.internal_load_balancing;
    Ok((Arc::new(ClusterNode { membership, group, rejections, internal_load_balancing }), commands))
}

/// Apply, on this node, the switchovers other nodes completed (their signatures already
/// checked); one whose route, domain or parameters this node would refuse from its own admin
/// API is refused as a cluster command.
async fn apply_cluster_commands(mut commands: mpsc::UnboundedReceiver<SwitchoverCommand>, state: Arc<AdminState>) {
    while let Some(command) = commands.recv().await {
        let board = state.switchboard();
        if let Err(refusal) = board.check(&command.route, &command.request) {
            if let Some(cluster) = &state.cluster {
                let detail = format!("command `{}` from node {}: {refusal}", command.id, command.origin);
                cluster.rejections.command("out_of_bounds", detail);
            }
            continue;
        }
        tracing::info!(route = %command.route, to = %command.request.to, origin = %command.origin, id = %command.id, "applying a switchover started on another gateway node");
        match board.switch(&command.route, &command.request).await {
            Ok(report) => admin::record_switchover(&state.audit, &report),
            Err(refusal) => {
                tracing::warn!(route = %command.route, "switchover from node {} not applied here: {refusal}", command.origin)
            }
        }
    }
}
