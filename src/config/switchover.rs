//! What a switchover may be asked to do: the fence mode and catch-up gate a route is configured
//! with, and the request an operator (or another gateway node) sends. Plain data, parsed from
//! YAML or JSON; the switchover itself lives in `crate::switchover`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a closed fence does with the requests that reach it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "camelCase")]
pub enum FenceMode {
    /// Park them until the fence opens: clients see a pause.
    #[default]
    Hold,
    /// Answer them with a retriable error code: clients back off and retry.
    Error,
}

impl fmt::Display for FenceMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FenceMode::Hold => "hold",
            FenceMode::Error => "error",
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "policy", rename_all = "camelCase", deny_unknown_fields)]
pub enum CatchUpPolicy {
    #[default]
    None,
    Offsets,
    #[serde(rename_all = "camelCase")]
    Records {
        #[serde(default)]
        max_lag: i64,
    },
}

impl fmt::Display for CatchUpPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatchUpPolicy::None => write!(f, "none"),
            CatchUpPolicy::Offsets => write!(f, "offsets equal"),
            CatchUpPolicy::Records { max_lag } => write!(f, "records within {max_lag}"),
        }
    }
}

/// How consumer groups' committed offsets cross over to the destination: the gateway reads
/// MirrorMaker 2's checkpoints (each group's source offset and its translation) from
/// `checkpointsTopic` on the destination, waits until they cover every offset the group has
/// committed on the source, and commits the translations to the destination's group itself
/// before the cut (`switchover.groupOffsets`, or `groupOffsets` in a request).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupOffsets {
    /// MirrorMaker 2's checkpoints topic on the destination: `<source alias>.checkpoints.internal`.
    pub checkpoints_topic: String,
    /// The groups to carry; every consumer group of the source with committed offsets in the
    /// route's topics when absent.
    #[serde(default)]
    pub groups: Option<Vec<String>>,
}

impl GroupOffsets {
    /// Whether the topic and group names could be Kafka's; the error says which is not.
    pub fn check_bounds(&self) -> Result<(), String> {
        if self.checkpoints_topic.is_empty() || self.checkpoints_topic.len() > MAX_TOPIC_NAME {
            return Err(format!(
                "groupOffsets.checkpointsTopic `{}` is not a Kafka topic name: name MirrorMaker 2's checkpoints topic on the destination, `<source alias>.checkpoints.internal`",
                self.checkpoints_topic
            ));
        }
        if let Some(groups) = &self.groups {
            if groups.len() > MAX_TOPICS {
                return Err(format!(
                    "{} groups named in groupOffsets.groups, at most {MAX_TOPICS} may be",
                    groups.len()
                ));
            }
            if groups.iter().any(String::is_empty) {
                return Err("groupOffsets.groups names an empty group id".to_string());
            }
        }
        Ok(())
    }
}

/// What an operator asks for.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SwitchoverRequest {
    /// The destination streaming domain.
    pub to: String,
    #[serde(default)]
    pub dry_run: bool,
    /// The catch-up gate; the route's configured one when absent.
    #[serde(default)]
    pub catch_up: Option<CatchUpPolicy>,
    /// What the fence does with new requests; the route's configured mode when absent.
    #[serde(default)]
    pub fence: Option<FenceMode>,
    /// Bound on the catch-up phase; the route's configured one, else 60 s, when absent.
    #[serde(default)]
    pub catch_up_timeout_ms: Option<u64>,
    /// Topics to check; by default those the route's clients have asked about, else every topic.
    #[serde(default)]
    pub topics: Option<Vec<String>>,
    /// How consumer groups' offsets cross over; the route's configured way, else not at all,
    /// when absent.
    #[serde(default)]
    pub group_offsets: Option<GroupOffsets>,
}

/// The longest catch-up bound a switchover may ask for: longer, and a fenced route would stall
/// its clients for longer than any of them waits.
pub const MAX_CATCH_UP_TIMEOUT_MS: u64 = 60 * 60 * 1000;
/// The most topics a switchover may name to check.
pub const MAX_TOPICS: usize = 10_000;
/// Kafka's limit on a topic name's length.
const MAX_TOPIC_NAME: usize = 249;

impl SwitchoverRequest {
    /// Whether every parameter is within a sane range; the error says which is not and why.
    /// Whoever asks (the admin API, another gateway node) is held to the same bounds: that the
    /// route and domain exist is the switchover's own check.
    pub fn check_bounds(&self) -> Result<(), String> {
        if let Some(ms) = self.catch_up_timeout_ms {
            if ms == 0 || ms > MAX_CATCH_UP_TIMEOUT_MS {
                return Err(format!("catchUpTimeoutMs {ms} is outside 1..={MAX_CATCH_UP_TIMEOUT_MS}"));
            }
        }
        if let Some(CatchUpPolicy::Records { max_lag }) = self.catch_up {
            if max_lag < 0 {
                return Err(format!("catchUp.maxLag {max_lag} is negative"));
            }
        }
        if let Some(topics) = &self.topics {
            if topics.len() > MAX_TOPICS {
                return Err(format!("{} topics named, at most {MAX_TOPICS} may be", topics.len()));
            }
            if let Some(bad) = topics.iter().find(|t| t.is_empty() || t.len() > MAX_TOPIC_NAME) {
                return Err(format!("topic name of {} characters is not a Kafka topic name", bad.len()));
            }
        }
        if let Some(groups) = &self.group_offsets {
            groups.check_bounds()?;
        }
        Ok(())
    }
}

/// A fence the configuration holds on a route (`routes[].fence`, Confluent's shape): the route
/// answers in mode `error` while the file says so, across switchovers, until the file drops it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteFence {
    /// The Kafka error code every fenced answer carries; `None`: the retriable code each API's
    /// clients retry on.
    pub error_code: Option<i16>,
    /// Logged when the fence is applied.
    pub error_message: Option<String>,
}

/// The Kafka error code named `name` (`BROKER_NOT_AVAILABLE`, any case, or a number), and whether
/// clients retry it.
pub fn kafka_error_code(name: &str) -> Option<(i16, bool)> {
    let wanted: String = name.chars().filter(|c| *c != '_').collect::<String>().to_ascii_lowercase();
    if let Ok(code) = name.parse::<i16>() {
        let error = kafka_protocol::error::ResponseError::try_from_code(code)?;
        return (!matches!(error, kafka_protocol::error::ResponseError::Unknown(_)))
            .then(|| (code, error.is_retriable()));
    }
    (-1..=200).find_map(|code| {
        let error = kafka_protocol::error::ResponseError::try_from_code(code)?;
        let known = !matches!(error, kafka_protocol::error::ResponseError::Unknown(_));
        (known && error.to_string().to_ascii_lowercase() == wanted).then(|| (code, error.is_retriable()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_error_codes_by_name_or_number() {
        assert_eq!(kafka_error_code("BROKER_NOT_AVAILABLE"), Some((8, false)));
        assert_eq!(kafka_error_code("not_leader_or_follower"), Some((6, true)));
        assert_eq!(kafka_error_code("16"), Some((16, true)));
        assert_eq!(kafka_error_code("NO_SUCH_ERROR"), None);
        assert_eq!(kafka_error_code("0"), None);
        assert_eq!(kafka_error_code("9999"), None);
    }

    fn request() -> SwitchoverRequest {
        serde_json::from_str(r#"{"to": "b"}"#).unwrap()
    }

    #[test]
    fn out_of_range_parameters_are_refused() {
        assert_eq!(request().check_bounds(), Ok(()));
        let bad = [
            SwitchoverRequest { catch_up_timeout_ms: Some(0), ..request() },
            SwitchoverRequest { catch_up_timeout_ms: Some(MAX_CATCH_UP_TIMEOUT_MS + 1), ..request() },
            SwitchoverRequest { catch_up: Some(CatchUpPolicy::Records { max_lag: -1 }), ..request() },
            SwitchoverRequest { topics: Some(vec![String::new()]), ..request() },
            SwitchoverRequest { topics: Some(vec!["t".into(); MAX_TOPICS + 1]), ..request() },
            SwitchoverRequest {
                group_offsets: Some(GroupOffsets { checkpoints_topic: String::new(), groups: None }),
                ..request()
            },
        ];
        for request in bad {
            assert!(request.check_bounds().is_err(), "{request:?}");
        }
    }
}
