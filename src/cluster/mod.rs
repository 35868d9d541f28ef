//! The gateway cluster: stateless nodes that find each other through the backing Kafka cluster.
//!
//! Nodes configured with the same cluster id join one consumer group on an internal topic named
//! after it (see [`group`]); the group's members are the cluster's nodes, each announcing its
//! node id, advertised host and rack in its client id. There is no other coordination service
//! and no local state: a node that stops leaves the group, one that is killed drops out when its
//! session times out, and one that starts is a member within seconds. The same topic carries
//! switchovers started on one node to every other node.
//!
//! The backing cluster is shared with the gateway's clients, so both are signed with the
//! cluster secret ([`signing`]): a member whose client id is not signed is ignored, a command
//! that is not signed, is replayed ([`command`]) or asks for a switchover out of bounds is
//! refused. Every refusal is counted, audited and logged ([`Rejections`]).
//!
//! What clients are told follows [`Advertising`]: a standalone gateway advertises each route's
//! endpoint host; a cluster with internal load balancing maps each broker to a member
//! ([`placement`]); with external load balancing every broker is advertised at the load
//! balancer's host.

pub mod command;
pub mod group;
pub mod placement;
pub mod signing;

use std::sync::{Arc, RwLock};

use prometheus_client::metrics::gauge::Gauge;

use crate::config::ClusterSettings;
use crate::telemetry::{AuditEvent, AuditLog, ClusterRejectedEvent, KeyedRateLimit, MembershipEvent, Metrics};
use group::ClusterGroup;

use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

/// A gateway node as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub node_id: String,
    /// Where clients reach this node.
    pub host: String,
    pub rack: Option<String>,
}

/// The current members of this node's gateway cluster, itself included.
pub struct Membership {
    pub cluster_id: String,
    pub me: Member,
    members: RwLock<Arc<Vec<Member>>>,
    /// Changes are counted and audited.
    size: Gauge,
    audit: Arc<AuditLog>,
}

impl Membership {
    pub fn new(cluster_id: String, me: Member, size: Gauge, audit: Arc<AuditLog>) -> Arc<Membership> {
        let members = RwLock::new(Arc::new(vec![me.clone()]));
        size.set(1);
        Arc::new(Membership { cluster_id, me, members, size, audit })
    }

    /// Sorted by node id.
    pub fn members(&self) -> Arc<Vec<Member>> {
        Arc::clone(&self.members.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Replace the member list (as the group reports it); logs who joined and who left.
    pub fn update(&self, mut members: Vec<Member>) {
        if !members.contains(&self.me) {
            // Until the group lists this node (it just joined), it still serves.
            members.push(self.me.clone());
        }
        members.sort();
        members.dedup();
        let mut current = self.members.write().unwrap_or_else(|e| e.into_inner());
        if **current == members {
            return;
        }
        for joined in members.iter().filter(|m| !current.contains(m)) {
            tracing::info!(cluster = %self.cluster_id, node = %joined.node_id, host = %joined.host, rack = ?joined.rack, "gateway node joined");
            self.record("joined", joined);
        }
        for left in current.iter().filter(|m| !members.contains(m)) {
            tracing::info!(cluster = %self.cluster_id, node = %left.node_id, host = %left.host, "gateway node left");
            self.record("left", left);
        }
        self.size.set(members.len() as i64);
        *current = Arc::new(members);
    }

    fn record(&self, event: &'static str, member: &Member) {
        self.audit.record(AuditEvent::Membership(MembershipEvent {
            cluster: self.cluster_id.clone(),
            event,
            node_id: member.node_id.clone(),
            host: member.host.clone(),
            rack: member.rack.clone(),
        }));
    }
}

/// Commands and members this node refused. Each is counted in
/// `switchyard_cluster_rejected_total{kind, reason}`, audited, and logged (a few a second at
/// most: whoever forges them controls the rate).
pub struct Rejections {
    cluster_id: String,
    metrics: Arc<Metrics>,
    audit: Arc<AuditLog>,
}

/// Characters of a rejected member's client id that are logged and audited.
const MAX_CLIENT_ID_SHOWN: usize = 200;

/// Log lines per second, per kind.
static REJECTION_LOG: KeyedRateLimit = KeyedRateLimit::per_second(5);

impl Rejections {
    pub fn new(cluster_id: String, metrics: Arc<Metrics>, audit: Arc<AuditLog>) -> Arc<Rejections> {
        Arc::new(Rejections { cluster_id, metrics, audit })
    }

    /// A command not applied: unsigned, forged, replayed or out of bounds.
    pub fn command(&self, reason: &'static str, detail: String) {
        self.record("command", reason, detail);
    }

    /// A member of the group whose client id is not a signed node's: ignored.
    pub fn member(&self, reason: &'static str, client_id: &str) {
        // Whoever joined chose the id: bounded before it is logged and audited.
        let shown: String = client_id.chars().take(MAX_CLIENT_ID_SHOWN).collect();
        self.record("member", reason, format!("client id `{shown}`"));
    }

    fn record(&self, kind: &'static str, reason: &'static str, detail: String) {
        self.metrics.cluster_rejected(kind, reason);
        if let Some(held_back) = REJECTION_LOG.allow(kind) {
            tracing::warn!(cluster = %self.cluster_id, kind, reason, held_back, "gateway cluster {kind} refused: {detail}");
        }
        self.audit.record(AuditEvent::ClusterRejected(ClusterRejectedEvent {
            cluster: self.cluster_id.clone(),
            kind,
            reason,
            detail,
        }));
    }
}

/// How broker addresses are advertised to clients.
pub enum Advertising {
    /// Each route's own endpoint host (a single gateway, or nodes behind DNS).
    RouteEndpoint,
    /// One host for every broker: an external load balancer in front of all nodes.
    Fixed(StrBytes),
    /// Each broker at the member [`placement`] picks.
    Members(Arc<Membership>),
}

impl Advertising {
    /// The host to advertise for `broker` (in `rack`) to a client whose id hashes to `client`;
    /// `route_host` is the route's endpoint host.
    pub fn host_for(&self, route_host: &StrBytes, broker: i32, rack: Option<&str>, client: u32) -> StrBytes {
        match self {
            Advertising::RouteEndpoint => route_host.clone(),
            Advertising::Fixed(host) => host.clone(),
            Advertising::Members(membership) => {
                let members = membership.members();
                match placement::member_for(&members, broker, rack, client) {
                    Some(member) => StrBytes::from_string(member.host.clone()),
                    None => route_host.clone(),
                }
            }
        }
    }
}

/// This node's membership in a gateway cluster.
pub struct ClusterNode {
    pub membership: Arc<Membership>,
    pub group: ClusterGroup,
    pub rejections: Arc<Rejections>,
    pub internal_load_balancing: bool,
}

/// What `settings` make this node advertise, and its membership when it is in a cluster.
/// `default_host` (the first route's endpoint host) is this node's host when none is set.
pub fn advertising(
    settings: &ClusterSettings,
    default_host: &str,
    metrics: &Metrics,
    audit: &Arc<AuditLog>,
) -> (Option<Arc<Membership>>, Arc<Advertising>) {
    let fixed =
        || settings.advertised_host.clone().map(|host| Arc::new(Advertising::Fixed(StrBytes::from_string(host))));
    let Some(id) = &settings.id else {
        return (None, fixed().unwrap_or_else(|| Arc::new(Advertising::RouteEndpoint)));
    };
    let host = settings.advertised_host.clone().unwrap_or_else(|| default_host.to_string());
    let me = Member { node_id: settings.node_id.clone(), host, rack: settings.rack.clone() };
    let membership = Membership::new(id.clone(), me, metrics.cluster_members(), Arc::clone(audit));
    let advertising = if settings.internal_load_balancing {
        Arc::new(Advertising::Members(Arc::clone(&membership)))
    } else {
        fixed().expect("external load balancing requires an advertised host (checked with the config)")
    };
    (Some(membership), advertising)
}
