//! A running gateway: every route's listeners, their connections, and the background tasks
//! that keep each route's view of its cluster fresh.
//!
//! Start binds everything before returning, so a gateway that started is serving. Shutdown
//! stops accepting, lets every connection finish its in-flight requests (bounded by
//! `proxy.drainTimeoutMs`), then returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::GatewayConfig;
use crate::proxy::{accept_loop, bind_route};
use crate::routing::Route;

pub struct Gateway {
    shutdown: CancellationToken,
    connections: TaskTracker,
    background: TaskTracker,
    drain_timeout: Duration,
    listening: Vec<(String, SocketAddr)>,
}

impl Gateway {
    /// Bind every route's ports and start serving.
    pub async fn start(config: &GatewayConfig) -> anyhow::Result<Gateway> {
        let settings = Arc::new(config.proxy.clone());
        let shutdown = CancellationToken::new();
        let connections = TaskTracker::new();
        let background = TaskTracker::new();
        let mut listening = Vec::new();
        let mut bound_routes = Vec::new();
        for route_config in &config.routes {
            let route = Arc::new(Route::new(route_config)?);
            let ports = bind_route(&route, route_config.bind_ip).await?;
            for port in &ports {
                listening.push((route.name.clone(), port.listener.local_addr()?));
            }
            bound_routes.push((route, ports));
        }
        // Only once every port is bound: a start that fails leaves nothing running.
        for (route, ports) in bound_routes {
            tracing::info!(
                route = %route.name,
                domain = %route.domain,
                endpoint = %SocketAddr::new(ports[0].listener.local_addr()?.ip(), route.port_map.bootstrap_port()),
                node_ports = ports.len() - 1,
                "route listening"
            );
            background.spawn(Arc::clone(&route.topology).refresh_periodically(
                settings.metadata_refresh_interval,
                settings.connect_timeout,
                shutdown.clone(),
            ));
            for port in ports {
                background.spawn(accept_loop(
                    port,
                    Arc::clone(&route),
                    Arc::clone(&settings),
                    shutdown.clone(),
                    connections.clone(),
                ));
            }
        }
        Ok(Gateway { shutdown, connections, background, drain_timeout: config.proxy.drain_timeout, listening })
    }

    /// Every `(route, address)` the gateway listens on.
    pub fn listening(&self) -> &[(String, SocketAddr)] {
        &self.listening
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
        drained
    }
}
