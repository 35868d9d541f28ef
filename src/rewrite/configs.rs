//! Broker configuration values that name addresses, in DescribeConfigs answers.
//!
//! A broker describes its own configuration verbatim, and several entries hold real
//! host:port pairs: its listeners, the controllers, a ZooKeeper ensemble on old clusters. A
//! client of the gateway must never learn those. `advertised.listeners` of a broker the route
//! serves is rewritten to the gateway's address for that broker (so the answer still says where
//! clients reach it); every other entry that names an address, by its name or because its value
//! holds a known broker's address, has its value hidden the way Kafka hides a password: the
//! value is null and the entry is marked sensitive.

use kafka_protocol::messages::DescribeConfigsResponse;
use kafka_protocol::protocol::StrBytes;

use super::addresses::Rewriter;

/// `resource_type` of a broker in DescribeConfigs.
const BROKER_RESOURCE: i8 = 4;
/// The configuration rewritten to the gateway's address rather than hidden.
const ADVERTISED_LISTENERS: &str = "advertised.listeners";

/// Whether a configuration entry of this name holds addresses, whatever its value.
fn names_addresses(name: &str) -> bool {
    name.ends_with("listeners")
        || name.ends_with("bootstrap.servers")
        || name.ends_with("quorum.voters")
        || name == "zookeeper.connect"
}

/// What becomes of one configuration value.
enum Value {
    Keep,
    Replace(StrBytes),
    Hide,
}

impl Rewriter<'_> {
    /// Returns whether anything changed.
    pub fn describe_configs(&self, response: &mut DescribeConfigsResponse) -> bool {
        let known = self.known_addresses();
        let mut changed = false;
        for result in &mut response.results {
            let broker =
                (result.resource_type == BROKER_RESOURCE).then(|| result.resource_name.parse::<i32>().ok()).flatten();
            for config in &mut result.configs {
                let value = self.config_value(broker, &config.name, config.value.as_deref(), &known);
                changed |= apply(value, &mut config.value, Some(&mut config.is_sensitive));
                for synonym in &mut config.synonyms {
                    let value = self.config_value(broker, &synonym.name, synonym.value.as_deref(), &known);
                    changed |= apply(value, &mut synonym.value, None);
                }
            }
        }
        changed
    }

    fn config_value(&self, broker: Option<i32>, name: &str, value: Option<&str>, known: &[String]) -> Value {
        let Some(value) = value.filter(|v| !v.is_empty()) else { return Value::Keep };
        if name == ADVERTISED_LISTENERS {
            if let Some(rewritten) = broker.and_then(|id| self.advertised_listeners(id, value)) {
                return Value::Replace(rewritten);
            }
            return Value::Hide;
        }
        if names_addresses(name) || known.iter().any(|address| value.contains(address.as_str())) {
            Value::Hide
        } else {
            Value::Keep
        }
    }

    /// `NAME://host:port,...` with every listener at the gateway's address for `node_id`.
    fn advertised_listeners(&self, node_id: i32, value: &str) -> Option<StrBytes> {
        let (host, port) = self.gateway_address(node_id, None)?;
        let listeners: Option<Vec<String>> = value
            .split(',')
            .map(|listener| {
                let (name, _) = listener.trim().split_once("://")?;
                // A listener name is a plain word; anything else is hidden, not copied.
                let plain =
                    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                plain.then(|| format!("{name}://{}:{port}", host.as_str()))
            })
            .collect();
        Some(StrBytes::from_string(listeners?.join(",")))
    }

    /// The real `host:port` of every broker the route's upstream knows.
    fn known_addresses(&self) -> Vec<String> {
        self.upstream.topology.snapshot().into_iter().map(|(_, broker)| broker.address.to_string()).collect()
    }
}

/// Write `value` into an entry; returns whether it changed.
fn apply(value: Value, slot: &mut Option<StrBytes>, sensitive: Option<&mut bool>) -> bool {
    match value {
        Value::Keep => false,
        Value::Replace(new) => {
            *slot = Some(new);
            true
        }
        Value::Hide => {
            *slot = None;
            if let Some(sensitive) = sensitive {
                *sensitive = true;
            }
            true
        }
    }
}
