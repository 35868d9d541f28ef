//! The client-facing sockets of a route: its bootstrap port and one port per node id.
//!
//! All of a route's ports are bound up front, so a port already taken is reported at start
//! naming the route and port, and the port map never changes while the gateway runs. Each
//! accepted connection becomes a task that opens its broker connection and pumps frames until
//! either side ends; its end is logged with the client address, route and reason.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connection::{pump, ConnectionContext, Severity};
use super::upstream;
use crate::config::ProxySettings;
use crate::routing::{Route, Target};

/// A bound client-facing port and what it leads to.
pub struct BoundPort {
    pub listener: TcpListener,
    pub target: Target,
}

/// Bind every port of a route.
pub async fn bind_route(route: &Route, bind_ip: std::net::IpAddr) -> anyhow::Result<Vec<BoundPort>> {
    let targets = std::iter::once((route.port_map.bootstrap_port(), Target::Bootstrap))
        .chain(route.port_map.node_ports().map(|(id, port)| (port, Target::Node(id))));
    let mut bound = Vec::new();
    for (port, target) in targets {
        let addr = SocketAddr::new(bind_ip, port);
        let listener = TcpListener::bind(addr).await.map_err(|e| {
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

fn describe_target(target: Target) -> String {
    match target {
        Target::Bootstrap => "bootstrap port".to_string(),
        Target::Node(id) => format!("port of node {id}"),
    }
}

/// Accept connections on one port until `shutdown` fires.
pub async fn accept_loop(
    port: BoundPort,
    route: Arc<Route>,
    settings: Arc<ProxySettings>,
    shutdown: CancellationToken,
    connections: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = port.listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, client_addr)) => {
                let ctx = ConnectionContext { route: Arc::clone(&route), settings: Arc::clone(&settings), client_addr };
                connections.spawn(serve(stream, port.target, ctx, shutdown.clone()));
            }
            Err(e) => {
                // Usually out of file descriptors: back off rather than spin.
                tracing::error!(route = %route.name, "cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve(client: TcpStream, target: Target, ctx: ConnectionContext, shutdown: CancellationToken) {
    let started = Instant::now();
    let route = ctx.route.name.as_str();
    let client_addr = ctx.client_addr;
    let _ = client.set_nodelay(true);
    let (upstream, upstream_addr) = match upstream::connect(&ctx.route, target, ctx.settings.connect_timeout).await {
        Ok(connected) => connected,
        Err(e) => {
            tracing::warn!(%client_addr, route, ?target, "closing client connection: {e}");
            return;
        }
    };
    tracing::debug!(%client_addr, route, ?target, upstream = %upstream_addr, "connection opened");
    let reason = pump(client, upstream, &ctx, &shutdown).await;
    let duration_ms = started.elapsed().as_millis() as u64;
    match reason.severity() {
        Severity::Routine => {
            tracing::debug!(%client_addr, route, ?target, upstream = %upstream_addr, duration_ms, "connection closed: {reason}")
        }
        Severity::Notable => {
            tracing::info!(%client_addr, route, ?target, upstream = %upstream_addr, duration_ms, "connection closed: {reason}")
        }
        Severity::Problem => {
            tracing::warn!(%client_addr, route, ?target, upstream = %upstream_addr, duration_ms, "connection closed: {reason}")
        }
    }
}
