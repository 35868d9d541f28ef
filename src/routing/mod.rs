//! Routing: which upstream a client connection goes to, and what addresses clients are told.
//!
//! A [`Route`] is the running form of one configured route: the host it advertises, its port
//! map, and the live [`Topology`] of the cluster listener behind it. Connections share it
//! through an `Arc` and only read it.

mod port_map;
mod topology;

use std::sync::Arc;

use kafka_protocol::protocol::StrBytes;

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
}

impl Route {
    pub fn new(config: &RouteConfig) -> anyhow::Result<Route> {
        Ok(Route {
            name: config.name.clone(),
            domain: config.domain.clone(),
            advertised_host: StrBytes::from_string(config.endpoint.host.clone()),
            port_map: config.port_map.clone(),
            upstream_bootstrap: config.upstream_bootstrap.clone(),
            topology: Topology::new(&config.domain, &config.upstream_bootstrap)?,
        })
    }
}
