//! Carrying consumer groups' committed offsets across a switchover, so a group resumes on the
//! destination where it stopped on the source instead of falling back to `auto.offset.reset`.
//!
//! MirrorMaker 2 does not preserve offsets: a group's source offset means nothing on the
//! destination until MM2 translates it. MM2 publishes every translation it makes as a
//! checkpoint (group, topic, partition, source offset, destination offset) in
//! `<source alias>.checkpoints.internal` on the destination, about every
//! `emit.checkpoints.interval.seconds`. Its own `sync.group.offsets` writes them into the
//! destination's groups only every `sync.group.offsets.interval.seconds`, and only for groups
//! without members there, so a switchover that waited for it would wait one more interval for
//! nothing, or forever where offset sync is off. The gateway therefore reads the checkpoints
//! itself and commits the translations while the route is fenced:
//!
//! 1. after the fence has drained, the source's committed offsets no longer move (clients cannot
//!    reach the source), so they are read once, per group;
//! 2. the checkpoints topic is re-read until, for every partition a group has committed, the
//!    latest checkpoint translates exactly that source offset (bounded by the catch-up timeout);
//! 3. the translations are committed to the destination's group (which has no member: its
//!    clients are still held on the source), never moving a partition backwards.
//!
//! A translation is exact to MM2's offset-sync granularity (`offset.lag.max`, 100 records by
//! default): a switched group re-reads at most that many records per partition, plus what it
//! consumed after its last commit on the source.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::catch_up::POLL_EVERY;
use super::PROBE_TIMEOUT;
use crate::config::GroupOffsets;
use crate::routing::Upstream;

/// One checkpoint record of MirrorMaker 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset on the source.
    pub upstream: i64,
    /// Its translation on the destination.
    pub downstream: i64,
}

/// One partition of a carried group.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GroupPartition {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset on the source.
    pub source_offset: i64,
    /// MM2's translation of it, now committed on the destination (or already passed there).
    pub destination_offset: i64,
}

/// One consumer group carried to the destination.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupReport {
    pub group: String,
    pub partitions: Vec<GroupPartition>,
    /// Partitions the gateway committed (the others were already at or past the translation).
    pub committed: usize,
}

impl Checkpoint {
    /// The record MirrorMaker 2 writes for this checkpoint, `(key, value)` (as [`decode`] reads it).
    pub fn encode(&self) -> (Vec<u8>, Vec<u8>) {
        let string = |s: &str| [(s.len() as i16).to_be_bytes().as_slice(), s.as_bytes()].concat();
        let key = [string(&self.group), string(&self.topic), self.partition.to_be_bytes().to_vec()].concat();
        let value = [
            0i16.to_be_bytes().to_vec(),
            self.upstream.to_be_bytes().to_vec(),
            self.downstream.to_be_bytes().to_vec(),
            string(""),
        ]
        .concat();
        (key, value)
    }
}

/// Decode a checkpoint: key `group, topic: string16; partition: int32`, value `version: int16
/// (0); upstream, downstream: int64; metadata: string16`. `None` for anything else.
pub fn decode(key: &[u8], value: &[u8]) -> Option<Checkpoint> {
    let mut key = Reader(key);
    let (group, topic, partition) = (key.string()?, key.string()?, key.i32()?);
    let mut value = Reader(value);
    if value.i16()? != 0 {
        return None;
    }
    let (upstream, downstream) = (value.i64()?, value.i64()?);
    Some(Checkpoint { group, topic, partition, upstream, downstream })
}

/// Big-endian fields of Kafka's own schema encoding.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_be_bytes)
    }

    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }

    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }

    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.i16()?).ok()?;
        let bytes = self.0.get(..len)?;
        self.0 = &self.0[len..];
        String::from_utf8(bytes.to_vec()).ok()
    }
}

/// Groups MirrorMaker 2 never checkpoints by default, and the gateway never carries unasked.
fn is_tooling_group(group: &str) -> bool {
    group.starts_with("console-consumer-") || group.starts_with("connect-") || group.starts_with("__")
}

/// Carry every group of `settings` whose offsets are in `topics` (name and source partition
/// count) from `source` to `destination`, within `timeout`. `Err` says which partitions MM2 had
/// not translated in time, or why a commit failed.
pub async fn carry(
    settings: &GroupOffsets,
    source: &Arc<Upstream>,
    destination: &Arc<Upstream>,
    topics: &BTreeMap<String, usize>,
    timeout: Duration,
) -> Result<Vec<GroupReport>, String> {
    let started = Instant::now();
    let groups = match &settings.groups {
        Some(groups) => groups.clone(),
        None => source
            .topology
            .ask(|cluster| cluster.consumer_groups(PROBE_TIMEOUT))
            .await
            .map_err(|e| format!("cannot list the source's consumer groups: {e:#}"))?
            .into_iter()
            .filter(|g| !is_tooling_group(g))
            .collect(),
    };
    tracing::info!(source = %source.domain, ?groups, "switchover: consumer groups whose offsets may be carried");
    // Group -> (topic, partition, source offset), for groups with offsets in the route's topics.
    let mut wanted: BTreeMap<String, Vec<(String, i32, i64)>> = BTreeMap::new();
    for group in groups {
        let (name, topics) = (group.clone(), topics.clone());
        let committed = source
            .topology
            .ask(move |cluster| cluster.committed(&name, &topics, PROBE_TIMEOUT))
            .await
            .map_err(|e| format!("cannot read group `{group}`'s offsets on the source: {e:#}"))?;
        if !committed.is_empty() {
            wanted.insert(group, committed);
        }
    }
    let translated = loop {
        let topic = settings.checkpoints_topic.clone();
        let records =
            destination.topology.ask(move |cluster| cluster.records(&topic, PROBE_TIMEOUT)).await.map_err(|e| {
                format!(
                    "cannot read MirrorMaker 2's checkpoints `{}` on the destination (is groupOffsets.checkpointsTopic `<source alias>.checkpoints.internal`?): {e:#}",
                    settings.checkpoints_topic
                )
            })?;
        let latest: BTreeMap<(String, String, i32), Checkpoint> = records
            .iter()
            .filter_map(|(key, value)| decode(key, value))
            .map(|c| ((c.group.clone(), c.topic.clone(), c.partition), c))
            .collect();
        match translate(&wanted, &latest) {
            Ok(translated) => break translated,
            Err(pending) if started.elapsed() >= timeout => {
                return Err(format!(
                "MirrorMaker 2 had not translated every group's offsets within {timeout:?} (checkpoints in `{}`): {}",
                settings.checkpoints_topic,
                pending.join(", ")
            ))
            }
            Err(_) => tokio::time::sleep(POLL_EVERY).await,
        }
    };
    let mut reports = Vec::new();
    for (group, partitions) in translated {
        reports.push(commit(destination, topics, group, partitions).await?);
    }
    Ok(reports)
}

/// Every wanted partition's translation, or the partitions whose latest checkpoint does not
/// translate the group's source offset (yet), each described.
fn translate(
    wanted: &BTreeMap<String, Vec<(String, i32, i64)>>,
    latest: &BTreeMap<(String, String, i32), Checkpoint>,
) -> Result<BTreeMap<String, Vec<GroupPartition>>, Vec<String>> {
    let mut translated = BTreeMap::new();
    let mut pending = Vec::new();
    for (group, committed) in wanted {
        let mut partitions = Vec::new();
        for (topic, partition, offset) in committed {
            match latest.get(&(group.clone(), topic.clone(), *partition)) {
                Some(c) if c.upstream == *offset => partitions.push(GroupPartition {
                    topic: topic.clone(),
                    partition: *partition,
                    source_offset: *offset,
                    destination_offset: c.downstream,
                }),
                found => pending.push(format!(
                    "group `{group}` {topic}-{partition} at {offset} (latest checkpoint: {})",
                    found.map_or("none".to_string(), |c| format!("{} -> {}", c.upstream, c.downstream))
                )),
            }
        }
        translated.insert(group.clone(), partitions);
    }
    if pending.is_empty() {
        Ok(translated)
    } else {
        Err(pending)
    }
}

/// Commit `partitions`' translations for `group` on the destination, except where the
/// destination's group is already at or past them.
async fn commit(
    destination: &Arc<Upstream>,
    topics: &BTreeMap<String, usize>,
    group: String,
    partitions: Vec<GroupPartition>,
) -> Result<GroupReport, String> {
    let (name, topics) = (group.clone(), topics.clone());
    let current = destination
        .topology
        .ask(move |cluster| cluster.committed(&name, &topics, PROBE_TIMEOUT))
        .await
        .map_err(|e| format!("cannot read group `{group}`'s offsets on the destination: {e:#}"))?;
    let behind: Vec<(String, i32, i64)> = partitions
        .iter()
        .filter(|p| !current.iter().any(|(t, n, at)| *t == p.topic && *n == p.partition && *at >= p.destination_offset))
        .map(|p| (p.topic.clone(), p.partition, p.destination_offset))
        .collect();
    let committed = behind.len();
    if !behind.is_empty() {
        let name = group.clone();
        // librdkafka bounds a synchronous commit by its own retries only: bound the wait here.
        let committing = destination.topology.ask(move |cluster| cluster.commit(&name, &behind, PROBE_TIMEOUT));
        let failed = match tokio::time::timeout(PROBE_TIMEOUT, committing).await {
            Ok(result) => result.err().map(|e| format!("{e:#}")),
            Err(_) => Some(format!("no answer within {PROBE_TIMEOUT:?}")),
        };
        if let Some(why) = failed {
            return Err(format!(
                "cannot commit group `{group}`'s offsets on the destination (does it have members there?): {why}"
            ));
        }
    }
    Ok(GroupReport { group, partitions, committed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(group: &str, topic: &str, partition: i32, upstream: i64, downstream: i64) -> (Vec<u8>, Vec<u8>) {
        Checkpoint { group: group.into(), topic: topic.into(), partition, upstream, downstream }.encode()
    }

    #[test]
    fn checkpoints_decode_and_garbage_does_not() {
        let (key, value) = encoded("g", "orders", 2, 120, 117);
        let c = decode(&key, &value).expect("a checkpoint");
        assert_eq!(
            (c.group.as_str(), c.topic.as_str(), c.partition, c.upstream, c.downstream),
            ("g", "orders", 2, 120, 117)
        );
        assert_eq!(decode(&key[..key.len() - 1], &value), None);
        assert_eq!(decode(&key, &value[..5]), None);
        let mut other_version = value.clone();
        other_version[1] = 1;
        assert_eq!(decode(&key, &other_version), None);
    }

    #[test]
    fn only_checkpoints_of_the_committed_offset_translate() {
        let wanted = BTreeMap::from([("g".to_string(), vec![("t".to_string(), 0, 50)])]);
        let at = |upstream| {
            BTreeMap::from([(
                ("g".to_string(), "t".to_string(), 0),
                Checkpoint { group: "g".into(), topic: "t".into(), partition: 0, upstream, downstream: upstream - 3 },
            )])
        };
        let pending = translate(&wanted, &at(40)).unwrap_err();
        assert_eq!(pending, ["group `g` t-0 at 50 (latest checkpoint: 40 -> 37)"]);
        let translated = translate(&wanted, &at(50)).unwrap();
        assert_eq!(translated["g"][0].destination_offset, 47);
        assert!(translate(&wanted, &BTreeMap::new()).unwrap_err()[0].contains("none"));
    }
}
