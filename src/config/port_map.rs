//! The port strategy: which client-facing port serves which broker node id.
//!
//! A route's endpoint port is its bootstrap port. Every node id inside the domain's
//! `nodeIdRanges` gets a port of its own after it, consecutively over the ranges in the order
//! they are written, so sparse ids (100, 200, 300 in three one-id ranges) need three ports, not
//! 203. The mapping depends only on the configuration, never on which brokers are up, so it is
//! stable while brokers come and go.

use super::NodeIdRange;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMap {
    bootstrap_port: u16,
    ranges: Vec<NodeIdRange>,
}

impl PortMap {
    /// Fails when the ports would run past 65535.
    pub fn new(bootstrap_port: u16, ranges: &[NodeIdRange]) -> Result<PortMap, String> {
        let map = PortMap { bootstrap_port, ranges: ranges.to_vec() };
        let last = u32::from(bootstrap_port) + map.node_count();
        if last > u32::from(u16::MAX) {
            return Err(format!(
                "bootstrap port {bootstrap_port} plus {} node ports runs past 65535",
                map.node_count()
            ));
        }
        Ok(map)
    }

    pub fn bootstrap_port(&self) -> u16 {
        self.bootstrap_port
    }

    /// Ports `(first, last)` the route listens on, bootstrap included.
    pub fn port_span(&self) -> (u16, u16) {
        (self.bootstrap_port, self.bootstrap_port + self.node_count() as u16)
    }

    /// The port serving `node_id`, or `None` when the id is in no range.
    pub fn port_for(&self, node_id: i32) -> Option<u16> {
        let mut offset: u32 = 1;
        for range in &self.ranges {
            if (range.start..=range.end).contains(&node_id) {
                return Some(self.bootstrap_port + (offset + (node_id - range.start) as u32) as u16);
            }
            offset += range_len(range);
        }
        None
    }

    /// Every `(node_id, port)` pair, in port order.
    pub fn node_ports(&self) -> impl Iterator<Item = (i32, u16)> + '_ {
        self.ranges.iter().flat_map(|r| r.start..=r.end).zip(self.bootstrap_port + 1..)
    }

    pub fn ranges(&self) -> &[NodeIdRange] {
        &self.ranges
    }

    fn node_count(&self) -> u32 {
        self.ranges.iter().map(range_len).sum()
    }
}

fn range_len(range: &NodeIdRange) -> u32 {
    (range.end - range.start) as u32 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(name: &str, start: i32, end: i32) -> NodeIdRange {
        NodeIdRange { name: name.into(), start, end }
    }

    #[test]
    fn sparse_ids_take_one_port_each() {
        let map = PortMap::new(9092, &[range("a", 100, 100), range("b", 200, 200), range("c", 300, 300)]).unwrap();
        assert_eq!(map.port_for(100), Some(9093));
        assert_eq!(map.port_for(200), Some(9094));
        assert_eq!(map.port_for(300), Some(9095));
        assert_eq!(map.port_for(150), None);
        assert_eq!(map.port_span(), (9092, 9095));
    }

    #[test]
    fn ranges_are_consecutive_in_written_order() {
        let map = PortMap::new(1000, &[range("high", 10, 12), range("low", 0, 1)]).unwrap();
        let pairs: Vec<_> = map.node_ports().collect();
        assert_eq!(pairs, vec![(10, 1001), (11, 1002), (12, 1003), (0, 1004), (1, 1005)]);
        for (id, port) in pairs {
            assert_eq!(map.port_for(id), Some(port));
        }
    }

    #[test]
    fn refuses_to_run_past_the_last_port() {
        assert!(PortMap::new(65530, &[range("a", 0, 9)]).is_err());
        assert!(PortMap::new(65525, &[range("a", 0, 9)]).is_ok());
    }
}
