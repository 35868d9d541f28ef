//! The host strategy: brokers told apart by the name a client asks for in TLS SNI.
//!
//! `brokerIdentificationStrategy: {type: host, pattern: "broker-$(nodeId).example.com:9092"}`:
//! a route advertises broker `n` as the pattern with `n` in place of `$(nodeId)` (the port, when
//! the pattern has one, is advertised instead of the route's own, e.g. 443 behind a load
//! balancer), and a client connecting with that name in SNI is sent to broker `n`. The route's
//! endpoint host is the bootstrap name. Matching follows DNS: whole name only (anchored), case
//! does not matter, and the node id is decimal digits only, so `broker-0x1.example.com` or
//! `evil.broker-1.example.com` match nothing.

use std::fmt;

/// The placeholder for a broker's node id.
pub const NODE_ID: &str = "$(nodeId)";
/// The placeholder for this gateway node's id (`GATEWAY_NODE_ID`), for per-node names.
pub const GATEWAY_NODE_ID: &str = "$(gatewayNodeId)";

/// A checked pattern: the text around `$(nodeId)`, lower-cased, and an optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    prefix: String,
    suffix: String,
    port: Option<u16>,
}

impl HostPattern {
    /// Parse `pattern` (after `$(gatewayNodeId)` was replaced); the error says what is wrong.
    pub fn parse(pattern: &str) -> Result<HostPattern, String> {
        let (host, port) = match pattern.rsplit_once(':') {
            Some((host, port)) => {
                let port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or(format!("`{port}` is not a port"))?;
                (host, Some(port))
            }
            None => (pattern, None),
        };
        let (prefix, suffix) = host.split_once(NODE_ID).ok_or(format!("`{pattern}` has no {NODE_ID}"))?;
        if suffix.contains(NODE_ID) {
            return Err(format!("`{pattern}` has {NODE_ID} more than once"));
        }
        let label_chars = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !label_chars(prefix) || !label_chars(suffix) || prefix.is_empty() && suffix.is_empty() {
            return Err(format!("`{pattern}` is not a host name around {NODE_ID} (letters, digits, `-` and `.` only)"));
        }
        // Digits right next to the node id would make `broker-12` ambiguous (node 12, or 2?).
        if prefix.ends_with(|c: char| c.is_ascii_digit()) || suffix.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!("`{pattern}` has a digit next to {NODE_ID}, so node ids cannot be told apart"));
        }
        Ok(HostPattern { prefix: prefix.to_ascii_lowercase(), suffix: suffix.to_ascii_lowercase(), port })
    }

    /// The host name of broker `node_id`.
    pub fn host(&self, node_id: i32) -> String {
        format!("{}{node_id}{}", self.prefix, self.suffix)
    }

    /// The port advertised with the host: the pattern's, else `listening`.
    pub fn port(&self, listening: u16) -> u16 {
        self.port.unwrap_or(listening)
    }

    /// The node id an SNI name asks for, if the name fits the pattern.
    pub fn node_id(&self, server_name: &str) -> Option<i32> {
        let name = server_name.as_bytes();
        let (prefix, suffix) = (self.prefix.as_bytes(), self.suffix.as_bytes());
        if name.len() <= prefix.len() + suffix.len()
            || !name[..prefix.len()].eq_ignore_ascii_case(prefix)
            || !name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        {
            return None;
        }
        let digits = &server_name[prefix.len()..name.len() - suffix.len()];
        if !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 1 && digits.starts_with('0') {
            return None;
        }
        digits.parse().ok()
    }

    /// Whether two patterns would claim the same names.
    pub fn same_names(&self, other: &HostPattern) -> bool {
        self.prefix == other.prefix && self.suffix == other.suffix
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{NODE_ID}{}", self.prefix, self.suffix)?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_whole_names_case_insensitively() {
        let p = HostPattern::parse("Broker-$(nodeId).Example.com:9443").unwrap();
        assert_eq!(p.host(3), "broker-3.example.com");
        assert_eq!(p.port(9092), 9443);
        assert_eq!(p.node_id("broker-3.example.com"), Some(3));
        assert_eq!(p.node_id("BROKER-12.EXAMPLE.COM"), Some(12));
        for other in [
            "broker-.example.com",
            "broker-0x1.example.com",
            "evil.broker-1.example.com",
            "broker-1.example.com.evil",
            "broker-1.example.co",
            "broker--1.example.com",
            "broker-01.example.com",
            "broker-99999999999.example.com",
            "",
        ] {
            assert_eq!(p.node_id(other), None, "{other}");
        }
        assert_eq!(p.node_id("broker-0.example.com"), Some(0));
    }

    #[test]
    fn refuses_patterns_that_cannot_name_brokers() {
        assert!(HostPattern::parse("broker.example.com").is_err());
        assert!(HostPattern::parse("b$(nodeId)-$(nodeId).x").is_err());
        assert!(HostPattern::parse("b1$(nodeId).x").is_err());
        assert!(HostPattern::parse("b$(nodeId).x:0").is_err());
        assert!(HostPattern::parse("b$(nodeId).x:https").is_err());
        assert!(HostPattern::parse("b_$(nodeId).x").is_err());
        assert_eq!(HostPattern::parse("b$(nodeId).x").unwrap().port(19092), 19092);
    }
}
