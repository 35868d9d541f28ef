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
//!
//! Waiting for a checkpoint costs up to one flush of MM2's offset syncs plus one checkpoint
//! interval, all of it while the route is fenced. So before waiting, the gateway tries to place
//! each group's offset by the records themselves: once catch-up has replicated the source's
//! tail, the record before the group's position and the one at it have copies on the
//! destination at the same distance from its end. When both copies are found there (same
//! timestamp, key, value and headers, at consecutive offsets), the position after the first copy
//! is an exact translation, with no checkpoint and no re-read. Partitions where they are not
//! (transaction markers or compaction in the tail, a destination written by others) wait for
//! checkpoints as above.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::catch_up::POLL_EVERY;
use super::PROBE_TIMEOUT;
use crate::config::GroupOffsets;
use crate::routing::{PartitionWindow, Upstream};

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
    /// Its translation, now committed on the destination (or already passed there).
    pub destination_offset: i64,
    /// How the translation was found.
    pub translated_by: TranslatedBy,
}

/// How a group's source offset was translated.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum TranslatedBy {
    /// The records around it were found at the same distance from the destination's end.
    Records,
    /// MirrorMaker 2's checkpoint of exactly that offset.
    Checkpoint,
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

/// The groups `settings` names, or else every consumer group of the source.
async fn groups_to_carry(settings: &GroupOffsets, source: &Arc<Upstream>) -> Result<Vec<String>, String> {
    Ok(match &settings.groups {
        Some(groups) => groups.clone(),
        None => source
            .topology
            .ask(|cluster| cluster.consumer_groups(PROBE_TIMEOUT))
            .await
            .map_err(|e| format!("cannot list the source's consumer groups: {e:#}"))?
            .into_iter()
            .filter(|g| !is_tooling_group(g))
            .collect(),
    })
}

/// The clients a later [`carry`] uses, connected on both clusters before the route is fenced,
/// so the fenced phase does not wait for a handful of clients to connect (about 150 ms each on
/// a loaded machine). They close when this is dropped.
pub struct PreparedClients {
    clusters: [Arc<Upstream>; 2],
}

/// Connect the clients [`carry`] will use for the groups there are now (a group that appears
/// later gets its client when carried). Only a head start: a failure is logged, not fatal.
pub async fn prepare(
    settings: &GroupOffsets,
    source: &Arc<Upstream>,
    destination: &Arc<Upstream>,
    topics: &BTreeMap<String, usize>,
) -> PreparedClients {
    let groups = groups_to_carry(settings, source).await.unwrap_or_default();
    let prepare = |cluster: &Arc<Upstream>| {
        let (topology, groups, topics) = (Arc::clone(&cluster.topology), groups.clone(), topics.clone());
        async move { topology.ask(move |c| c.prepare_clients(&groups, &topics, PROBE_TIMEOUT)).await }
    };
    let (on_source, on_destination) = tokio::join!(prepare(source), prepare(destination));
    if let Err(e) = on_source.and(on_destination) {
        tracing::info!(error = %format!("{e:#}"), "switchover: group clients not prepared, they will connect when used");
    }
    PreparedClients { clusters: [Arc::clone(source), Arc::clone(destination)] }
}

impl Drop for PreparedClients {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        for cluster in &self.clusters {
            let cluster = Arc::clone(cluster);
            runtime.spawn(async move {
                cluster
                    .topology
                    .ask(|c| {
                        c.release_clients();
                        Ok(())
                    })
                    .await
            });
        }
    }
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
    let groups = groups_to_carry(settings, source).await?;
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
    let mut translated = BTreeMap::new();
    for (group, committed) in &mut wanted {
        let placed = place_by_records(source, destination, committed).await;
        committed
            .retain(|(topic, partition, _)| !placed.iter().any(|p| p.topic == *topic && p.partition == *partition));
        translated.insert(group.clone(), placed);
    }
    wanted.retain(|_, committed| !committed.is_empty());
    if !wanted.is_empty() {
        for (group, partitions) in wait_for_checkpoints(settings, destination, &wanted, started, timeout).await? {
            translated.entry(group).or_default().extend(partitions);
        }
    }
    let mut reports = Vec::new();
    for (group, partitions) in translated {
        reports.push(commit(destination, topics, group, partitions).await?);
    }
    Ok(reports)
}

/// Wait until MirrorMaker 2 has checkpointed exactly each `wanted` offset, and translate them.
async fn wait_for_checkpoints(
    settings: &GroupOffsets,
    destination: &Arc<Upstream>,
    wanted: &BTreeMap<String, Vec<(String, i32, i64)>>,
    started: Instant,
    timeout: Duration,
) -> Result<BTreeMap<String, Vec<GroupPartition>>, String> {
    loop {
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
        match translate(wanted, &latest) {
            Ok(translated) => return Ok(translated),
            Err(pending) if started.elapsed() >= timeout => {
                return Err(format!(
                "MirrorMaker 2 had not translated every group's offsets within {timeout:?} (checkpoints in `{}`): {}",
                settings.checkpoints_topic,
                pending.join(", ")
            ))
            }
            Err(_) => tokio::time::sleep(POLL_EVERY).await,
        }
    }
}

/// The partitions of one group (`committed`: topic, partition, source offset) whose translation
/// the records themselves give (see the module doc). A cluster that cannot be read leaves every
/// partition to the checkpoints.
async fn place_by_records(
    source: &Arc<Upstream>,
    destination: &Arc<Upstream>,
    committed: &[(String, i32, i64)],
) -> Vec<GroupPartition> {
    // The record before each position, and the one at it.
    let starts: Vec<_> = committed.iter().map(|(t, p, offset)| (t.clone(), *p, offset - 1)).collect();
    let read = source.topology.ask(move |cluster| cluster.records_from(&starts, 2, PROBE_TIMEOUT)).await;
    let on_source = match read {
        Ok(windows) => windows,
        Err(e) => {
            tracing::info!(error = %format!("{e:#}"), "switchover: the source's records cannot be read; waiting for checkpoints");
            return Vec::new();
        }
    };
    // The same distance from the destination's end: (topic, partition, lag, records before).
    let lags: Vec<_> = committed
        .iter()
        .zip(&on_source)
        .map(|((t, p, offset), w)| (t.clone(), *p, w.high - offset, i64::from(w.low < *offset)))
        .collect();
    let read = destination
        .topology
        .ask(move |cluster| {
            let mut starts = Vec::with_capacity(lags.len());
            for (topic, partition, lag, before) in lags {
                let (_, high) = cluster.watermarks(&topic, partition, PROBE_TIMEOUT)?;
                starts.push((topic, partition, high - lag - before));
            }
            cluster.records_from(&starts, 2, PROBE_TIMEOUT)
        })
        .await;
    let on_destination = match read {
        Ok(windows) => windows,
        Err(e) => {
            tracing::info!(error = %format!("{e:#}"), "switchover: the destination's records cannot be read; waiting for checkpoints");
            return Vec::new();
        }
    };
    committed
        .iter()
        .zip(on_source.iter().zip(&on_destination))
        .filter_map(|((topic, partition, offset), (src, dst))| {
            Some(GroupPartition {
                topic: topic.clone(),
                partition: *partition,
                source_offset: *offset,
                destination_offset: align(*offset, src, dst)?,
                translated_by: TranslatedBy::Records,
            })
        })
        .collect()
}

/// Where a group at `offset` on the source resumes on the destination, if the records show it:
/// `source` read from `offset - 1` (from `offset` when nothing precedes it), `destination` from
/// the same distance before its end, two records each. Both must hold the same records at
/// exactly those offsets, consecutive, at least one of them: the one before the group's
/// position and the one at it, fewer at the partition's start or end.
pub fn align(offset: i64, source: &PartitionWindow, destination: &PartitionWindow) -> Option<i64> {
    let lag = source.high - offset;
    let at = destination.high - lag;
    let before = i64::from(source.low < offset);
    let expected = (lag + before).min(2);
    let placed = |window: &PartitionWindow, first: i64| {
        window.records.len() as i64 == expected
            && window.records.iter().zip(first..).all(|(record, offset)| record.offset == offset)
    };
    let same = source.records.iter().zip(&destination.records).all(|(a, b)| a.same_content(b));
    (lag >= 0 && expected > 0 && placed(source, offset - before) && placed(destination, at - before) && same)
        .then_some(at)
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
                    translated_by: TranslatedBy::Checkpoint,
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
    use crate::routing::StoredRecord;

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

    fn window(low: i64, high: i64, records: &[(i64, &str)]) -> PartitionWindow {
        let record = |&(offset, value): &(i64, &str)| StoredRecord {
            offset,
            timestamp: Some(1_700_000_000_000),
            value: Some(value.as_bytes().to_vec()),
            ..StoredRecord::default()
        };
        PartitionWindow { low, high, records: records.iter().map(record).collect() }
    }

    #[test]
    fn records_place_a_group_in_the_middle_and_at_the_end() {
        // The source's offsets 40.. were copied to the destination's 10.. (it started later).
        let source = window(0, 60, &[(49, "r49"), (50, "r50")]);
        let destination = window(0, 30, &[(19, "r49"), (20, "r50")]);
        assert_eq!(align(50, &source, &destination), Some(20));
        let at_end = (window(0, 60, &[(59, "r59")]), window(0, 30, &[(29, "r59")]));
        assert_eq!(align(60, &at_end.0, &at_end.1), Some(30));
        // At the start of a partition there is no record before: the first one and the next.
        let at_start = (window(0, 60, &[(0, "r0"), (1, "r1")]), window(0, 60, &[(0, "r0"), (1, "r1")]));
        assert_eq!(align(0, &at_start.0, &at_start.1), Some(0));
        let one_record = (window(0, 1, &[(0, "r0")]), window(5, 9, &[(8, "r0")]));
        assert_eq!(align(0, &one_record.0, &one_record.1), Some(8));
    }

    #[test]
    fn records_that_do_not_line_up_leave_the_group_to_checkpoints() {
        let source = window(0, 60, &[(49, "r49"), (50, "r50")]);
        // A record written to the destination by someone else shifts the distance.
        assert_eq!(align(50, &source, &window(0, 31, &[(20, "r50"), (21, "other")])), None);
        // A transaction marker at 49 on the source: the record before is not where it should be.
        assert_eq!(
            align(50, &window(0, 60, &[(50, "r50"), (51, "r51")]), &window(0, 30, &[(19, "r50"), (20, "r51")])),
            None
        );
        // An empty partition shows nothing.
        assert_eq!(align(0, &window(0, 0, &[]), &window(0, 0, &[])), None);
        // A group at the partition's start whose first record is not where it should be.
        assert_eq!(align(0, &window(0, 60, &[(0, "r0"), (1, "r1")]), &window(0, 61, &[(0, "x"), (1, "r0")])), None);
        // Same offsets, different content (another timestamp or value).
        assert_eq!(align(50, &source, &window(0, 30, &[(19, "r49"), (20, "x")])), None);
        // Fewer records than expected on either side.
        assert_eq!(align(50, &source, &window(0, 30, &[(19, "r49")])), None);
    }
}
