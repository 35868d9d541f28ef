//! Replacing broker addresses with the route's own.
//!
//! Every response field that names a broker gets the route's advertised host and the port the
//! port strategy gives that node id. A broker whose id falls outside every `nodeIdRanges` entry
//! has no port: it is left out (or, for a coordinator, reported as not available so the client
//! retries) and logged as an error naming the range to add; its real address never leaks.
//! Metadata and DescribeCluster answers also refresh the route's view of the real addresses.

use kafka_protocol::messages::{
    describe_cluster_response::DescribeClusterBroker, fetch_response, find_coordinator_response::Coordinator,
    metadata_response::MetadataResponseBroker, produce_response, share_acknowledge_response, share_fetch_response,
    DescribeClusterResponse, FindCoordinatorResponse, MetadataResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::config::HostPort;
use crate::routing::Route;

/// A response element naming one broker.
pub(super) trait BrokerAddress {
    fn node_id(&self) -> i32;
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
broker_address!(Coordinator, node_id);
broker_address!(produce_response::NodeEndpoint, node_id);
broker_address!(fetch_response::NodeEndpoint, node_id);
broker_address!(share_fetch_response::NodeEndpoint, node_id);
broker_address!(share_acknowledge_response::NodeEndpoint, node_id);

pub(super) fn metadata(route: &Route, response: &mut MetadataResponse) -> bool {
    learn(route, &response.brokers);
    endpoints(route, &mut response.brokers)
}

pub(super) fn describe_cluster(route: &Route, response: &mut DescribeClusterResponse) -> bool {
    learn(route, &response.brokers);
    endpoints(route, &mut response.brokers)
}

/// FindCoordinator v0-3 name one coordinator at the top level; v4+ a list, one per key.
pub(super) fn find_coordinator(route: &Route, version: i16, response: &mut FindCoordinatorResponse) -> bool {
    if version >= 4 {
        return response.coordinators.iter_mut().fold(false, |changed, c| coordinator(route, c) || changed);
    }
    if response.node_id.0 < 0 {
        return false;
    }
    match route.port_map.port_for(response.node_id.0) {
        Some(port) => {
            response.host = route.advertised_host.clone();
            response.port = i32::from(port);
        }
        None => {
            log_unmapped(route, response.node_id.0);
            response.node_id = (-1).into();
            response.host = StrBytes::default();
            response.port = -1;
            response.error_code = ResponseError::CoordinatorNotAvailable.code();
        }
    }
    true
}

fn coordinator(route: &Route, c: &mut Coordinator) -> bool {
    if c.node_id.0 < 0 {
        return false;
    }
    match route.port_map.port_for(c.node_id.0) {
        Some(port) => c.set_address(route.advertised_host.clone(), i32::from(port)),
        None => {
            log_unmapped(route, c.node_id.0);
            c.node_id = (-1).into();
            c.host = StrBytes::default();
            c.port = -1;
            c.error_code = ResponseError::CoordinatorNotAvailable.code();
        }
    }
    true
}

/// Point every listed broker at the route; drop those with no port. Returns whether the list
/// changed (an empty list, the common case for Produce and Fetch, never does).
pub(super) fn endpoints<T: BrokerAddress>(route: &Route, list: &mut Vec<T>) -> bool {
    if list.is_empty() {
        return false;
    }
    list.retain(|b| {
        let mapped = route.port_map.port_for(b.node_id()).is_some();
        if !mapped {
            log_unmapped(route, b.node_id());
        }
        mapped
    });
    for broker in list.iter_mut() {
        let port = route.port_map.port_for(broker.node_id()).expect("unmapped brokers were removed above");
        broker.set_address(route.advertised_host.clone(), i32::from(port));
    }
    true
}

fn learn<T: BrokerAddress>(route: &Route, brokers: &[T]) {
    route.topology.learn(brokers.iter().filter_map(|b| {
        let port = u16::try_from(b.port()).ok()?;
        Some((b.node_id(), HostPort { host: b.host().to_string(), port }))
    }));
}

fn log_unmapped(route: &Route, node_id: i32) {
    let ranges: Vec<String> =
        route.port_map.ranges().iter().map(|r| format!("{} {}-{}", r.name, r.start, r.end)).collect();
    tracing::error!(
        route = %route.name,
        domain = %route.domain,
        node_id,
        "broker {node_id} is outside every nodeIdRanges entry of domain `{}` ({}); clients cannot reach it through this route. \
         Add a range such as `{{name: extra, start: {node_id}, end: {node_id}}}` to the domain's kafkaCluster.nodeIdRanges",
        route.domain,
        ranges.join(", ")
    );
}
