//! How many client connections the gateway holds: in all, per route, and per client address.
//!
//! Every connection costs two file descriptors and some memory, so without a bound a flood of
//! connections exhausts the process and every client is refused, the admin API too. A
//! connection over a limit is closed at once, before a broker connection is opened for it; the
//! refusal is counted (`switchyard_connections_refused`) and logged, at most once a second per
//! limit so that a flood cannot flood the log as well. The client address is the PROXY
//! protocol's source where the feature is on, so one load balancer is not taken for one client.
//! The counts are taken under one lock, once when a connection opens and once when it closes,
//! never per request.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::ProxySettings;
use crate::telemetry::RateLimit;

/// A limit a connection was refused at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Gateway,
    Route,
    Client,
}

impl Limit {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Limit::Gateway => "gateway",
            Limit::Route => "route",
            Limit::Client => "client",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Gateway => "the gateway's connection limit (proxy.maxConnections)",
            Limit::Route => "the route's connection limit (proxy.maxConnectionsPerRoute)",
            Limit::Client => "the limit of connections from one client address (proxy.maxConnectionsPerClient)",
        })
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    routes: HashMap<Arc<str>, usize>,
    clients: HashMap<IpAddr, usize>,
}

/// The connection counts of one gateway.
pub struct ConnectionLimits {
    max_total: usize,
    max_per_route: usize,
    max_per_client: usize,
    counts: Mutex<Counts>,
    /// Per limit (in `Limit` order), how often a refusal is logged.
    logged: [RateLimit; 3],
}

impl ConnectionLimits {
    pub fn new(settings: &ProxySettings) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            max_total: settings.max_connections,
            max_per_route: settings.max_connections_per_route,
            max_per_client: settings.max_connections_per_client,
            counts: Mutex::default(),
            logged: [RateLimit::per_second(1), RateLimit::per_second(1), RateLimit::per_second(1)],
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Count a new connection of `route` against the gateway and route limits.
    pub fn admit(self: &Arc<Self>, route: &Arc<str>) -> Result<Admitted, Limit> {
        let mut counts = self.counts();
        if counts.total >= self.max_total {
            return Err(Limit::Gateway);
        }
        let on_route = counts.routes.entry(Arc::clone(route)).or_default();
        if *on_route >= self.max_per_route {
            return Err(Limit::Route);
        }
        *on_route += 1;
        counts.total += 1;
        Ok(Admitted { limits: Arc::clone(self), route: Arc::clone(route), client: None })
    }

    /// Whether a refusal at `limit` should be logged now (once a second per limit); if so, also
    /// how many were not logged since the last one.
    pub fn log_refusal(&self, limit: Limit) -> Option<u64> {
        self.logged[limit as usize].allow()
    }
}

/// A connection counted against the limits; dropping it releases its counts.
pub struct Admitted {
    limits: Arc<ConnectionLimits>,
    route: Arc<str>,
    client: Option<IpAddr>,
}

impl Admitted {
    /// Count the connection against the limit of its client address, once that is known.
    pub fn client(&mut self, address: IpAddr) -> Result<(), Limit> {
        let mut counts = self.limits.counts();
        let from_client = counts.clients.entry(address).or_default();
        if *from_client >= self.limits.max_per_client {
            return Err(Limit::Client);
        }
        *from_client += 1;
        self.client = Some(address);
        Ok(())
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut counts = self.limits.counts();
        counts.total -= 1;
        if let Some(on_route) = counts.routes.get_mut(&self.route) {
            *on_route -= 1;
        }
        if let Some(address) = self.client {
            if let Some(from_client) = counts.clients.get_mut(&address) {
                *from_client -= 1;
                if *from_client == 0 {
                    counts.clients.remove(&address);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, route: usize, client: usize) -> Arc<ConnectionLimits> {
        let settings = ProxySettings {
            max_connections: total,
            max_connections_per_route: route,
            max_connections_per_client: client,
            ..ProxySettings::default()
        };
        ConnectionLimits::new(&settings)
    }

    #[test]
    fn each_limit_refuses_and_a_closed_connection_frees_its_place() {
        let limits = limits(3, 2, 1);
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let ip: IpAddr = [10, 0, 0, 1].into();
        let mut first = limits.admit(&a).unwrap();
        first.client(ip).unwrap();
        let mut second = limits.admit(&a).unwrap();
        assert_eq!(second.client(ip), Err(Limit::Client));
        assert_eq!(limits.admit(&a).err(), Some(Limit::Route));
        let _third = limits.admit(&b).unwrap();
        assert_eq!(limits.admit(&b).err(), Some(Limit::Gateway));
        drop(first);
        second.client(ip).unwrap();
        let fourth = limits.admit(&a).unwrap();
        assert_eq!(limits.admit(&a).err(), Some(Limit::Gateway));
        drop((second, fourth));
        assert!(limits.counts().clients.is_empty());
        assert_eq!(limits.counts().total, 1);
    }

    #[test]
    fn refusals_are_logged_at_most_once_a_second_per_limit() {
        let limits = limits(1, 1, 1);
        assert_eq!(limits.log_refusal(Limit::Gateway), Some(0));
        let logged = (0..100).filter_map(|_| limits.log_refusal(Limit::Gateway)).count();
        assert!(logged <= 1, "{logged} of 100 refusals in a burst were logged");
        assert_eq!(limits.log_refusal(Limit::Client), Some(0));
    }
}
