//! Comparing a route's topics on the source and the destination, and waiting for replication
//! to catch up by a policy that fits the replication tool.
//!
//! - `offsets`: offset-preserving replication (Cluster Linking and the like): every partition's
//!   end offset on the destination has reached the source's.
//! - `records`: replication that does not preserve offsets (MirrorMaker 2): each topic holds at
//!   most `maxLag` fewer records on the destination than on the source.
//! - `none`: do not wait.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{TopicReport, PROBE_TIMEOUT};
use crate::config::CatchUpPolicy;
use crate::routing::Upstream;

/// How often catch-up re-reads the watermarks. Every client's pause includes the wait for the
/// next look after replication caught up, so it is short; each look is one ListOffsets per
/// partition on each cluster.
pub(super) const POLL_EVERY: Duration = Duration::from_millis(100);

/// Topics a replication tool keeps for itself, never checked by default.
pub fn is_replication_internal(topic: &str) -> bool {
    topic.starts_with("__")
        || topic.starts_with("mm2-")
        || topic.starts_with("connect-")
        || topic.ends_with(".internal")
        || topic == "heartbeats"
}

/// The state of every topic in `partitions` (source partition counts) on both sides.
pub async fn compare(
    source: &Arc<Upstream>,
    destination: &Arc<Upstream>,
    partitions: &BTreeMap<String, usize>,
    destination_topics: &BTreeMap<String, usize>,
) -> anyhow::Result<Vec<TopicReport>> {
    let mut reports = Vec::new();
    for (topic, &count) in partitions {
        let on_source = source.topology.watermarks(topic, count, PROBE_TIMEOUT).await?;
        let destination_partitions = destination_topics.get(topic).copied();
        let on_destination = match destination_partitions {
            Some(n) if n == count => destination.topology.watermarks(topic, count, PROBE_TIMEOUT).await?,
            _ => Vec::new(),
        };
        let records = |marks: &[(i64, i64)]| marks.iter().map(|(low, high)| high - low).sum::<i64>();
        let offset_lag = on_source.iter().zip(&on_destination).map(|((_, src), (_, dst))| src - dst).collect();
        reports.push(TopicReport {
            topic: topic.clone(),
            source_partitions: count,
            destination_partitions,
            offset_lag,
            record_lag: records(&on_source) - records(&on_destination),
        });
    }
    Ok(reports)
}

/// Wait until `policy` holds. `Ok(None)` for policy `none`; `Err` with the reason on timeout.
pub async fn wait(
    policy: CatchUpPolicy,
    source: &Arc<Upstream>,
    destination: &Arc<Upstream>,
    partitions: &BTreeMap<String, usize>,
    timeout: Duration,
) -> Result<Option<Vec<TopicReport>>, String> {
    if policy == CatchUpPolicy::None {
        return Ok(None);
    }
    let started = Instant::now();
    let counts: BTreeMap<String, usize> = partitions.clone();
    loop {
        let reports = compare(source, destination, partitions, &counts)
            .await
            .map_err(|e| format!("cannot read watermarks: {e:#}"))?;
        if holds(policy, &reports) {
            return Ok(Some(reports));
        }
        if started.elapsed() >= timeout {
            let lag: Vec<String> = reports.iter().map(|t| format!("{} {} records", t.topic, t.record_lag)).collect();
            return Err(format!("replication did not catch up ({policy}) within {timeout:?}: lag {}", lag.join(", ")));
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

fn holds(policy: CatchUpPolicy, reports: &[TopicReport]) -> bool {
    match policy {
        CatchUpPolicy::None => true,
        CatchUpPolicy::Offsets => reports.iter().all(|t| t.offset_lag.iter().all(|lag| *lag <= 0)),
        CatchUpPolicy::Records { max_lag } => reports.iter().all(|t| t.record_lag <= max_lag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(offset_lag: Vec<i64>, record_lag: i64) -> TopicReport {
        TopicReport {
            topic: "t".into(),
            source_partitions: offset_lag.len(),
            destination_partitions: Some(offset_lag.len()),
            offset_lag,
            record_lag,
        }
    }

    #[test]
    fn policies_judge_lag() {
        let behind = [topic(vec![0, 3], 3)];
        assert!(!holds(CatchUpPolicy::Offsets, &behind));
        assert!(!holds(CatchUpPolicy::Records { max_lag: 2 }, &behind));
        assert!(holds(CatchUpPolicy::Records { max_lag: 3 }, &behind));
        assert!(holds(CatchUpPolicy::Offsets, &[topic(vec![0, -2], -2)]));
    }

    #[test]
    fn requests_name_their_policy() {
        let parsed: CatchUpPolicy = serde_json::from_str(r#"{"policy": "records", "maxLag": 5}"#).unwrap();
        assert_eq!(parsed, CatchUpPolicy::Records { max_lag: 5 });
        assert_eq!(serde_json::from_str::<CatchUpPolicy>(r#"{"policy": "offsets"}"#).unwrap(), CatchUpPolicy::Offsets);
        assert!(serde_json::from_str::<CatchUpPolicy>(r#"{"policy": "sometimes"}"#).is_err());
    }
}
