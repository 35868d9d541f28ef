//! Routing: which upstream a client connection goes to, and what addresses clients are told.
//!
//! A [`Route`] is the running form of one configured route: the host it advertises, its port
//! map, the live [`Topology`] of the cluster listener behind it, its metrics, and the session
//! token its connections watch, which an operator can cancel to make every client of the route
//! drain and reconnect. Connections share it through an `Arc`.

mod port_map;
mod topology;

use std::sync::{Arc, Mutex};

use kafka_protocol::protocol::StrBytes;
use tokio_util::sync::CancellationToken;

use crate::admin::{Metrics, RouteMetrics};
use crate::config::{HostPort, RouteConfig};

pub use port_map::PortMap;
pub use topology::Topology;

/// Which upstream a client-facing port leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The route's endpoint port: any of the domain's bootstrap servers.
    Bootstrap,
    /// A broker port: exactly this node.
    Node(i32),
}

/// A configured route, running.
pub struct Route {
    pub name: String,
    pub domain: String,
    /// The host put in every broker address clients see.
    pub advertised_host: StrBytes,
    pub port_map: PortMap,
    pub upstream_bootstrap: Vec<HostPort>,
    pub topology: Arc<Topology>,
    pub metrics: RouteMetrics,
    /// Cancelled to make the route's current connections drain and close.
    session: Mutex<CancellationToken>,
    /// The gateway's shutdown token; every session is its child.
    shutdown: CancellationToken,
}

impl Route {
    pub fn new(config: &RouteConfig, metrics: &Arc<Metrics>, shutdown: &CancellationToken) -> anyhow::Result<Route> {
        Ok(Route {
            metrics: metrics.for_route(&config.name),
            session: Mutex::new(shutdown.child_token()),
            shutdown: shutdown.clone(),
            name: config.name.clone(),
            domain: config.domain.clone(),
            advertised_host: StrBytes::from_string(config.endpoint.host.clone()),
            port_map: config.port_map.clone(),
            upstream_bootstrap: config.upstream_bootstrap.clone(),
            topology: Topology::new(&config.domain, &config.upstream_bootstrap)?,
        })
    }

    /// The token a new connection watches: cancelled by [`Route::reset_connections`] or shutdown.
    pub fn session(&self) -> CancellationToken {
        self.session.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Make every current connection of the route finish its in-flight requests and close, so
    /// its clients reconnect and refresh metadata. New connections are not affected.
    pub fn reset_connections(&self) {
        let old = std::mem::replace(
            &mut *self.session.lock().unwrap_or_else(|e| e.into_inner()),
            self.shutdown.child_token(),
        );
        old.cancel();
    }
}
