//! A running gateway: every route's listeners, their connections, the admin server, and the
//! background tasks that keep each route's view of its cluster fresh.
//!
//! Start binds everything before returning, so a gateway that started is serving. Shutdown
//! stops accepting, lets every connection finish its in-flight requests (bounded by
//! `proxy.drainTimeoutMs`), flushes the audit log, then returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminState, AuditLog, Metrics};
use crate::config::GatewayConfig;
use crate::proxy::{accept_loop, bind_route, BoundPort, ListenerContext};
use crate::routing::Route;

pub struct Gateway {
    shutdown: CancellationToken,
    connections: TaskTracker,
    background: TaskTracker,
    audit: Arc<AuditLog>,
    drain_timeout: Duration,
    listening: Vec<(String, SocketAddr)>,
    admin_addr: SocketAddr,
}

impl Gateway {
    /// Bind every route's ports and the admin server, then start serving.
    pub async fn start(config: &GatewayConfig) -> anyhow::Result<Gateway> {
        let shutdown = CancellationToken::new();
        let metrics = Metrics::new();
        let mut listening = Vec::new();
        let mut bound_routes: Vec<(Arc<Route>, Vec<BoundPort>)> = Vec::new();
        for route_config in &config.routes {
            let route = Arc::new(Route::new(route_config, &metrics, &shutdown)?);
            let ports = bind_route(&route, route_config.bind_ip).await?;
            for port in &ports {
                listening.push((route.name.clone(), port.listener.local_addr()?));
            }
            bound_routes.push((route, ports));
        }
        let admin_listener = tokio::net::TcpListener::bind(config.admin.address).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {} for the admin API: {e}. Set admin.address or GATEWAY_ADMIN_ADDRESS to a free address",
                config.admin.address
            )
        })?;
        let admin_addr = admin_listener.local_addr()?;
        let audit = match &config.audit {
            Some(sink) => AuditLog::start(sink).await.map_err(|e| {
                anyhow::anyhow!("cannot open the audit log {sink:?}: {e}. Check audit.file or GATEWAY_AUDIT_LOG")
            })?,
            None => AuditLog::disabled(),
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
        });
        let routes: Vec<Arc<Route>> = bound_routes.iter().map(|(route, _)| Arc::clone(route)).collect();
        for (route, ports) in bound_routes {
            tracing::info!(
                route = %route.name,
                domain = %route.domain,
                bootstrap = %ports[0].listener.local_addr()?,
                node_ports = ports.len() - 1,
                "route listening"
            );
            background.spawn(Arc::clone(&route.topology).refresh_periodically(
                config.proxy.metadata_refresh_interval,
                config.proxy.connect_timeout,
                shutdown.clone(),
            ));
            for port in ports {
                background.spawn(accept_loop(port, Arc::clone(&route), Arc::clone(&shared)));
            }
        }
        let state = Arc::new(AdminState { config: config.clone(), routes, metrics });
        background.spawn(admin::serve(admin_listener, state, shutdown.clone()));
        tracing::info!(address = %admin_addr, "admin API listening");
        Ok(Gateway {
            shutdown,
            connections,
            background,
            audit,
            drain_timeout: config.proxy.drain_timeout,
            listening,
            admin_addr,
        })
    }

    /// Every `(route, address)` the gateway listens on for clients.
    pub fn listening(&self) -> &[(String, SocketAddr)] {
        &self.listening
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Stop accepting, drain connections, stop background tasks. Returns whether every
    /// connection finished within the drain timeout.
    pub async fn shutdown(self) -> bool {
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
