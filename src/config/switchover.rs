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
}
