//! Replacing broker addresses with the route's own.
//!
//! Every response field that names a broker gets the route's advertised host and the port the
//! port strategy gives that node id. A broker whose id falls outside every `nodeIdRanges` entry
//! has no port: it is left out (or, for a coordinator, reported as not available so the client
//! retries) and logged as an error naming the range to add; its real address never leaks.
//! Metadata and DescribeCluster answers also refresh the upstream's view of the real addresses,
//! and show the route's stable cluster id.

use kafka_protocol::messages::{
    describe_cluster_response::DescribeClusterBroker, fetch_response, metadata_response::MetadataResponseBroker,
    produce_response, share_acknowledge_response, share_fetch_response, BrokerId, DescribeClusterResponse,
    DescribeQuorumResponse, FindCoordinatorResponse, MetadataResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::config::HostPort;
use crate::protocol::internal;
use crate::routing::{Broker, Route, Upstream};
use crate::telemetry::RateLimit;

/// A response element naming one broker.
pub(super) trait BrokerAddress {
    fn node_id(&self) -> i32;
    fn rack(&self) -> Option<&str>;
    fn host(&self) -> &str;
    fn port(&self) -> i32;
    fn set_address(&mut self, host: StrBytes, port: i32);
}

macro_rules! broker_address {
    ($type:ty, $id:ident) => {
        impl BrokerAddress for $type {
            fn node_id(&self) -> i32 {
                self.$id.0
            }
            fn rack(&self) -> Option<&str> {
                self.rack.as_ref().map(|r| r.as_str())
            }
            fn host(&self) -> &str {
                self.host.as_str()
            }
            fn port(&self) -> i32 {
                self.port
            }
            fn set_address(&mut self, host: StrBytes, port: i32) {
                self.host = host;
                self.port = port;
            }
        }
    };
}

broker_address!(MetadataResponseBroker, node_id);
broker_address!(DescribeClusterBroker, broker_id);
broker_address!(produce_response::NodeEndpoint, node_id);
broker_address!(fetch_response::NodeEndpoint, node_id);
broker_address!(share_fetch_response::NodeEndpoint, node_id);
broker_address!(share_acknowledge_response::NodeEndpoint, node_id);

/// Drop the gateway cluster's own topics (`_switchyard-…`) from a Metadata answer: clients of
/// the gateway never see, and so never produce to, them. Whether anything was dropped.
fn hide_internal_topics(response: &mut MetadataResponse) -> bool {
    let before = response.topics.len();
    response.topics.retain(|t| !t.name.as_ref().is_some_and(|name| internal::is_internal_topic(name.0.as_str())));
    response.topics.len() != before
}

/// Rewrites responses that came from `upstream` for clients of `route`.
pub(super) struct Rewriter<'a> {
    pub route: &'a Route,
    pub upstream: &'a Upstream,
    /// The hash of the requesting client's id: which gateway node it is sent to depends on it.
    pub client: u32,
}

impl Rewriter<'_> {
    pub fn metadata(&self, response: &mut MetadataResponse) -> bool {
        self.learn(&response.brokers);
        let hidden = hide_internal_topics(response);
        let topics = response.topics.iter().filter(|t| !t.is_internal && t.error_code == 0);
        self.route.saw_topics(topics.filter_map(|t| t.name.as_ref()).map(|name| name.0.as_str()));
        let ids_changed = super::topic_ids::metadata(self.route, response);
        let presented = response.cluster_id.as_ref().and_then(|actual| self.presented_cluster_id(actual));
        let cluster_id_changed = presented.is_some();
        if presented.is_some() {
            response.cluster_id = presented;
        }
        self.endpoints(&mut response.brokers) || cluster_id_changed || hidden || ids_changed
    }

    pub fn describe_cluster(&self, response: &mut DescribeClusterResponse) -> bool {
        self.learn(&response.brokers);
        let presented = self.presented_cluster_id(&response.cluster_id);
        let cluster_id_changed = presented.is_some();
        if let Some(id) = presented {
            response.cluster_id = id;
        }
        self.endpoints(&mut response.brokers) || cluster_id_changed
    }

    /// FindCoordinator v0-3 name one coordinator at the top level; v4+ a list, one per key.
    pub fn find_coordinator(&self, version: i16, response: &mut FindCoordinatorResponse) -> bool {
        if version >= 4 {
            return response.coordinators.iter_mut().fold(false, |changed, c| {
                let answer = self.coordinator(c.node_id);
                answer.apply(&mut c.node_id, &mut c.host, &mut c.port, &mut c.error_code) || changed
            });
        }
        let answer = self.coordinator(response.node_id);
        answer.apply(&mut response.node_id, &mut response.host, &mut response.port, &mut response.error_code)
    }

    /// Where clients must look for coordinator `node_id`.
    fn coordinator(&self, node_id: BrokerId) -> CoordinatorAnswer {
        if node_id.0 < 0 {
            return CoordinatorAnswer::Keep;
        }
        let rack = self.upstream.topology.rack_of(node_id.0);
        match self.gateway_address(node_id.0, rack.as_deref()) {
            Some((host, port)) => CoordinatorAnswer::Point { host, port },
            None => CoordinatorAnswer::Unavailable,
        }
    }

    /// Point every listed broker at the route; drop those with no port. Returns whether the
    /// list changed (an empty list, the common case for Produce and Fetch, never does).
    pub fn endpoints<T: BrokerAddress>(&self, list: &mut Vec<T>) -> bool {
        if list.is_empty() {
            return false;
        }
        list.retain(|b| self.gateway_address(b.node_id(), None).is_some());
        for broker in list.iter_mut() {
            let address = self.gateway_address(broker.node_id(), broker.rack());
            let (host, port) = address.expect("unmapped brokers were removed above");
            broker.set_address(host, port);
        }
        true
    }

    /// The address clients reach `node_id` (in `rack`) at, logging when it has none.
    pub(super) fn gateway_address(&self, node_id: i32, rack: Option<&str>) -> Option<(StrBytes, i32)> {
        let address = self.route.broker_address(node_id, rack, self.client);
        if address.is_none() {
            self.log_unmapped(node_id);
        }
        address
    }

    /// The route's cluster id, when it differs from the `actual` one in a response.
    fn presented_cluster_id(&self, actual: &StrBytes) -> Option<StrBytes> {
        Some(self.route.presented_cluster_id(actual)).filter(|presented| presented != actual)
    }

    fn learn<T: BrokerAddress>(&self, brokers: &[T]) {
        self.upstream.topology.learn(brokers.iter().filter_map(|b| {
            let address = HostPort { host: b.host().to_string(), port: u16::try_from(b.port()).ok()? };
            Some((b.node_id(), Broker { address, rack: b.rack().map(str::to_string) }))
        }));
    }

    fn log_unmapped(&self, node_id: i32) {
        // Every answer naming the broker would log it: once a second is plenty.
        static UNMAPPED: RateLimit = RateLimit::per_second(1);
        let Some(held_back) = UNMAPPED.allow() else { return };
        let ranges: Vec<String> =
            self.route.port_map.ranges().iter().map(|r| format!("{} {}-{}", r.name, r.start, r.end)).collect();
        let domain = &self.upstream.domain;
        tracing::error!(
            route = %self.route.name,
            %domain,
            node_id,
            held_back,
            "broker {node_id} is outside every nodeIdRanges entry of the route's domains ({}); clients cannot reach it \
             through this route. Add a range such as `{{name: extra, start: {node_id}, end: {node_id}}}` to domain \
             `{domain}`'s kafkaCluster.nodeIdRanges",
            ranges.join(", ")
        );
    }
}

/// DescribeQuorum v2 lists every controller's listeners. Controllers cannot be reached through
/// a route, so the listeners are removed; the node ids and the quorum's state remain.
pub(super) fn hide_controller_listeners(response: &mut DescribeQuorumResponse) -> bool {
    let listed = response.nodes.iter().any(|node| !node.listeners.is_empty());
    response.nodes.iter_mut().for_each(|node| node.listeners.clear());
    listed
}

/// What a FindCoordinator answer (or one of its v4+ entries) becomes.
enum CoordinatorAnswer {
    /// An error answer, naming no coordinator: kept, without any address it carries.
    Keep,
    /// The coordinator, at its gateway address.
    Point { host: StrBytes, port: i32 },
    /// A coordinator without a gateway port: "not available", so the client asks again.
    Unavailable,
}

impl CoordinatorAnswer {
    /// Write the answer into a response's fields; returns whether they changed.
    fn apply(self, node_id: &mut BrokerId, host: &mut StrBytes, port: &mut i32, error_code: &mut i16) -> bool {
        match self {
            CoordinatorAnswer::Keep => {
                // An error answer names no coordinator: whatever address it carries goes.
                let named = !host.is_empty() || *port != -1;
                if named {
                    *host = StrBytes::default();
                    *port = -1;
                }
                named
            }
            CoordinatorAnswer::Point { host: gateway_host, port: gateway_port } => {
                *host = gateway_host;
                *port = gateway_port;
                true
            }
            CoordinatorAnswer::Unavailable => {
                *node_id = BrokerId(-1);
                *host = StrBytes::default();
                *port = -1;
                *error_code = ResponseError::CoordinatorNotAvailable.code();
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
    use kafka_protocol::messages::TopicName;

    use super::*;

    #[test]
    fn the_gateway_clusters_topics_are_hidden_from_metadata() {
        let topic = |name: &'static str| {
            MetadataResponseTopic::default().with_name(Some(TopicName(StrBytes::from_static_str(name))))
        };
        let mut response = MetadataResponse::default().with_topics(vec![
            topic("orders"),
            topic("_switchyard-cluster-a"),
            topic("__consumer_offsets"),
            MetadataResponseTopic::default().with_name(None),
        ]);
        assert!(hide_internal_topics(&mut response));
        let names: Vec<_> = response.topics.iter().map(|t| t.name.as_ref().map(|n| n.0.to_string())).collect();
        assert_eq!(names, [Some("orders".into()), Some("__consumer_offsets".into()), None]);
        assert!(!hide_internal_topics(&mut response), "nothing left to hide");
    }
}
