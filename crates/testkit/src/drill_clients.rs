//! The drill's other clients: a stock kcat producer and a kcat consumer (librdkafka, no `-E`)
//! and a Java transactional producer, run through the same route and across the same cut as the
//! drill's Java producer and group, each on its own topic that MirrorMaker 2 replicates.
//!
//! Each client is judged as its user would: did it keep running (no exit, no fatal error), how
//! many records it got acknowledged (committed, for the transactional producer) or received,
//! how many of those came after the cut, whether every acknowledged record is on the
//! destination afterwards, the longest pause between two acknowledgements (or two received
//! records) across the cut, and what a consumer read twice. Everything is bounded in count and time, and every
//! process started here is stopped before [`SideClients::finish`] returns (or on drop).
//!
//! They run in the live modes only: a restart closes every connection, which ends a stock kcat
//! by design, and a gateway restarted onto the destination without a state directory does not
//! know the route moved, so it cannot steer a transactional producer there.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::kcat;
use crate::numbered::NumberedProducer;
use crate::poll::{poll_until, try_poll_until};
use crate::process::{TimedChild, TimedOutput};
use crate::{java, wire, KafkaCluster};

/// The kcat producer's topic, which the kcat consumer reads.
pub const KCAT_TOPIC: &str = "drill-kcat";
/// The transactional producer's topic.
pub const TXN_TOPIC: &str = "drill-txn";
/// Records per transaction.
const TXN_RECORDS: u32 = 10;
/// How long the destination may take to show every acknowledged record (MM2 copies what was
/// written before the cut, not waited for on the transactional topic).
const AUDIT_PATIENCE: Duration = Duration::from_secs(30);
const AUDIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the kcat consumer may take to read what is left once the kcat producer is done.
const CONSUMER_GRACE: Duration = Duration::from_secs(30);

/// What one client experienced across the cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOutcome {
    pub client: &'static str,
    /// It kept running: no exit before its end, no fatal error.
    pub survived: bool,
    /// Records acknowledged (committed, for a transactional producer) or, for a consumer,
    /// different records received.
    pub records: usize,
    /// Of those, acknowledged or received after the cut.
    pub after_cut: usize,
    /// Producers: acknowledged records absent from the destination afterwards.
    pub missing: Option<usize>,
    /// Longest time between two acknowledgements, or two received records: for the Java
    /// producer and group over the whole run (as the drill always reported them), for the
    /// others across the cut ([`CutWindow`]), with the whole run's in a note.
    pub longest_pause_ms: u64,
    /// Consumers: records received more than once.
    pub reread: Option<usize>,
    /// What else the user would notice: errors, aborted transactions, skipped records.
    pub notes: Vec<String>,
}

impl ClientOutcome {
    /// The table's header, in the columns [`ClientOutcome`]'s `Display` writes.
    pub const HEADER: &'static str =
        "| client                         | survived | records | after cut | missing | pause (ms) | re-read |";

    /// Whether it kept running and lost no acknowledged record.
    pub fn kept_everything(&self) -> bool {
        self.survived && self.missing.unwrap_or(0) == 0
    }
}

impl fmt::Display for ClientOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let optional = |n: Option<usize>| n.map_or("-".to_string(), |n| n.to_string());
        write!(
            f,
            "| {:<30} | {:>8} | {:>7} | {:>9} | {:>7} | {:>10} | {:>7} |",
            self.client,
            if self.survived { "yes" } else { "NO" },
            self.records,
            self.after_cut,
            optional(self.missing),
            self.longest_pause_ms,
            optional(self.reread)
        )
    }
}

/// How long after the cut a pause still counts as the cut's.
const AFTER_CUT: u64 = 5_000;

/// When the switch was asked for and when its cut came (Unix ms).
#[derive(Debug, Clone, Copy)]
pub struct CutWindow {
    pub requested_ms: u64,
    pub cut_ms: u64,
}

impl CutWindow {
    /// The longest gap between consecutive `times` (Unix ms, in order) that overlaps the switch,
    /// from its request to 5 s after the cut: the pause the move caused, not one a loaded
    /// machine caused elsewhere.
    fn pause(&self, times: &[u64]) -> u64 {
        let overlaps = |start: u64, end: u64| end >= self.requested_ms && start <= self.cut_ms + AFTER_CUT;
        times.windows(2).filter(|pair| overlaps(pair[0], pair[1])).map(|pair| pair[1] - pair[0]).max().unwrap_or(0)
    }

    /// A note on the run's longest gap overall, with where it began relative to the cut.
    fn overall_note(&self, times: &[u64]) -> String {
        let (gap, start) = longest_gap(times);
        format!("longest pause of the whole run {gap} ms, from {} ms after the cut", start as i64 - self.cut_ms as i64)
    }

    fn after_cut(&self, times: &[u64]) -> usize {
        times.iter().filter(|&&at| at >= self.cut_ms).count()
    }
}

/// The longest gap between consecutive `times` (Unix ms, in order), and when it began.
fn longest_gap(times: &[u64]) -> (u64, u64) {
    times.windows(2).map(|pair| (pair[1].saturating_sub(pair[0]), pair[0])).max().unwrap_or((0, 0))
}

/// The `n` of `seq-<n>` values.
fn numbered<'a>(values: impl IntoIterator<Item = &'a String>) -> Vec<u64> {
    values.into_iter().filter_map(|value| value.strip_prefix("seq-")?.parse().ok()).collect()
}

/// The kcat producer, the kcat consumer and the Java transactional producer, running.
pub struct SideClients {
    kcat_producer: TimedChild,
    /// Set to make the kcat producer's stdin close: it delivers what it read, then exits.
    kcat_stop: Arc<AtomicBool>,
    kcat_consumer: TimedChild,
    transactional: NumberedProducer,
    /// Records per second each producer sends.
    rate: u32,
}

impl SideClients {
    /// Creates their topics on the source (one partition each, so kcat's deliveries come in
    /// order) and starts both clusters' transaction coordinators, which production clusters
    /// hosting transactional clients have long had: creating one stalls a single test broker for
    /// seconds, and the switchover's pre-flight would start the destination's itself, seconds in
    /// which the drill's Java producer would finish before the cut. MirrorMaker 2 must replicate
    /// [`KCAT_TOPIC`] and [`TXN_TOPIC`].
    /// The four steps run side by side: each waits on a JVM or a broker, not on the others.
    pub fn prepare(source: &KafkaCluster, destination: &KafkaCluster) -> Result<()> {
        let coordinator = |cluster: &KafkaCluster| -> Result<()> {
            wire::start_transaction_coordinator(cluster.bootstrap().parse()?, Duration::from_secs(120))
        };
        std::thread::scope(|scope| {
            let steps = [
                scope.spawn(|| java::create_topic(&source.bootstrap(), KCAT_TOPIC, 1, 1)),
                scope.spawn(|| java::create_topic(&source.bootstrap(), TXN_TOPIC, 1, 1)),
                scope.spawn(|| coordinator(source)),
                scope.spawn(|| coordinator(destination)),
            ];
            steps.into_iter().try_for_each(|step| step.join().map_err(|_| anyhow::anyhow!("a drill step panicked"))?)
        })
    }

    /// Starts the three clients through `bootstrap`: each producer sends `rate` records per
    /// second until [`SideClients::finish`] stops it, for at most `longest`; the kcat consumer
    /// reads the kcat producer's topic.
    pub fn start(bootstrap: &str, rate: u32, longest: Duration) -> Result<Self> {
        let rate = rate.max(1);
        let most = u64::from(rate) * longest.as_secs().max(1);
        let lines = (1..=most).map(|n| format!("seq-{n}"));
        let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
        let kcat_stop = Arc::new(AtomicBool::new(false));
        let kcat_producer = kcat::produce_reported(bootstrap, KCAT_TOPIC, lines, interval, Arc::clone(&kcat_stop))?;
        let kcat_consumer = kcat::consume_stamped(bootstrap, KCAT_TOPIC, most as usize)?;
        let timeouts = [("transaction.timeout.ms", "30000"), ("max.block.ms", "30000")];
        let transactional = NumberedProducer::sending(bootstrap, TXN_TOPIC, most, rate)
            .transactional(TXN_TOPIC, TXN_RECORDS)
            .props(&timeouts)
            .start()?;
        Ok(Self { kcat_producer, kcat_stop, kcat_consumer, transactional, rate })
    }

    /// Waits until every client has a second's worth of records behind it, so the cut meets
    /// them running.
    pub fn wait_running(&mut self, timeout: Duration) -> Result<()> {
        let second = self.rate as usize;
        try_poll_until(timeout, || {
            let delivered = kcat::delivery_times(&self.kcat_producer.stderr()).len();
            let received = self.kcat_consumer.stdout().len();
            Ok((delivered >= second && received >= second).then_some(()))
        })
        .context("the kcat producer and consumer did not get going")?;
        self.transactional.wait_acked(second, timeout).context("the transactional producer did not get going")?;
        Ok(())
    }

    /// Stops the producers (each delivers or commits what it has, up to `timeout`), lets the
    /// consumer read what was delivered (up to 30 s) and stops it, and judges each client
    /// against the destination.
    pub fn finish(mut self, destination: &KafkaCluster, cut: CutWindow, timeout: Duration) -> Vec<ClientOutcome> {
        self.kcat_stop.store(true, Ordering::Relaxed);
        self.transactional.stop();
        let produced = self.kcat_producer.finish(timeout);
        let delivered = kcat::delivery_times(&produced.stderr).len();
        let _ = poll_until(CONSUMER_GRACE, || {
            let received: HashSet<u64> =
                numbered(self.kcat_consumer.stdout().iter().map(|l| &l.text)).into_iter().collect();
            (received.len() >= delivered || self.kcat_consumer.has_exited()).then_some(())
        });
        let consumed = self.kcat_consumer.finish(Duration::ZERO);
        let transactional = self.transactional.wait(timeout);
        let kcat_producer = kcat_producer_outcome(&produced, destination, cut);
        let acked: HashSet<u64> = (1..=kcat_producer.records as u64).collect();
        vec![
            kcat_producer,
            kcat_consumer_outcome(&consumed, &acked, cut),
            transactional_outcome(transactional, destination, cut),
        ]
    }
}

/// A kcat producer survived if, once its input ended, it exited by itself, successfully,
/// reporting no error. With one
/// partition and idempotence, deliveries come in send order: the first `n` records are acked.
fn kcat_producer_outcome(output: &TimedOutput, destination: &KafkaCluster, cut: CutWindow) -> ClientOutcome {
    let delivered = kcat::delivery_times(&output.stderr);
    let errors = kcat::reported_errors(&output.stderr);
    let acked: HashSet<u64> = (1..=delivered.len() as u64).collect();
    let missing = missing_on(destination, KCAT_TOPIC, &acked, &[]);
    let mut notes = vec![cut.overall_note(&delivered)];
    notes.extend(errors.iter().take(3).cloned());
    notes.extend(exit_note(output));
    ClientOutcome {
        client: "kcat producer (idempotent)",
        survived: output.exited.is_some_and(|status| status.success()) && errors.is_empty(),
        records: delivered.len(),
        after_cut: cut.after_cut(&delivered),
        missing: Some(missing),
        longest_pause_ms: cut.pause(&delivered),
        reread: None,
        notes,
    }
}

/// A kcat consumer survived if it was still reading when stopped (or had read everything and
/// exited successfully) and reported no error.
fn kcat_consumer_outcome(output: &TimedOutput, acked: &HashSet<u64>, cut: CutWindow) -> ClientOutcome {
    let errors = kcat::reported_errors(&output.stderr);
    let values = numbered(output.stdout.iter().map(|line| &line.text));
    let distinct: HashSet<u64> = values.iter().copied().collect();
    let times: Vec<u64> = output.stdout.iter().map(|line| line.epoch_millis).collect();
    let mut notes = vec![cut.overall_note(&times)];
    notes.extend(errors.iter().take(3).cloned());
    notes.extend(output.exited.filter(|status| !status.success()).map(|status| format!("exited: {status}")));
    let skipped = acked.difference(&distinct).count();
    if skipped > 0 {
        notes.push(format!("{skipped} acknowledged records never received"));
    }
    ClientOutcome {
        client: "kcat consumer (no group)",
        survived: output.exited.is_none_or(|status| status.success()) && errors.is_empty(),
        records: distinct.len(),
        after_cut: cut.after_cut(&times),
        missing: None,
        longest_pause_ms: cut.pause(&times),
        reread: Some(values.len() - distinct.len()),
        notes,
    }
}

/// A transactional producer survived if it printed its final line and gave up on nothing.
fn transactional_outcome(
    report: Result<crate::ProducerReport>,
    destination: &KafkaCluster,
    cut: CutWindow,
) -> ClientOutcome {
    let client = "Java transactional producer";
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            let note = format!("{e:#}").lines().next().unwrap_or_default().to_string();
            return ClientOutcome {
                client,
                survived: false,
                records: 0,
                after_cut: 0,
                missing: None,
                longest_pause_ms: 0,
                reread: None,
                notes: vec![note],
            };
        }
    };
    let read_committed = [("isolation.level".to_owned(), "read_committed".to_owned())];
    let acked: HashSet<u64> = report.acked.iter().copied().collect();
    let missing = missing_on(destination, TXN_TOPIC, &acked, &read_committed);
    let commits: Vec<u64> = report.acks.iter().map(|ack| ack.epoch_millis).collect();
    let mut notes = vec![cut.overall_note(&commits)];
    notes.extend(report.fatal.iter().cloned());
    if report.aborted > 0 {
        notes.push(format!("{} transactions aborted and sent again", report.aborted));
    }
    ClientOutcome {
        client,
        survived: report.fatal.is_none() && report.done,
        records: report.acked.len(),
        after_cut: cut.after_cut(&commits),
        missing: Some(missing),
        longest_pause_ms: cut.pause(&commits),
        reread: None,
        notes,
    }
}

/// How a producer that did not end by itself was ended.
fn exit_note(output: &TimedOutput) -> Option<String> {
    match output.exited {
        None => Some("still delivering at the end: stopped".to_string()),
        Some(status) if !status.success() => Some(format!("exited: {status}")),
        Some(_) => None,
    }
}

/// How many of `acked` are not among `topic`'s records on `destination`, read with `config`;
/// reads again for up to 30 s while some are missing (MirrorMaker 2 may still be copying).
fn missing_on(destination: &KafkaCluster, topic: &str, acked: &HashSet<u64>, config: &[(String, String)]) -> usize {
    let most = 10 * acked.len().max(1000);
    let mut missing = acked.len();
    let _ = poll_until(AUDIT_PATIENCE, || {
        let read = kcat::consume_with(&destination.bootstrap(), topic, most, AUDIT_TIMEOUT, config).ok()?;
        let landed: HashSet<u64> = numbered(&read).into_iter().collect();
        missing = acked.difference(&landed).count();
        (missing == 0).then_some(())
    });
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cut_pause_is_the_longest_gap_overlapping_the_switch() {
        let cut = CutWindow { requested_ms: 1_000, cut_ms: 1_200 };
        // 0-900 ends before the request; 7_000-9_000 begins after the cut's 5 s.
        let times = [0, 900, 950, 1_500, 1_510, 7_000, 9_000];
        assert_eq!(cut.pause(&times), 5_490);
        assert_eq!(cut.pause(&[0, 900]), 0);
        assert_eq!(cut.after_cut(&times), 4);
    }

    #[test]
    fn longest_gap_is_between_neighbours() {
        assert_eq!(longest_gap(&[]), (0, 0));
        assert_eq!(longest_gap(&[5]), (0, 0));
        assert_eq!(longest_gap(&[10, 20, 400, 410]), (380, 20));
    }

    #[test]
    fn numbered_values_parse_amid_noise() {
        let values = ["seq-1".to_string(), "other".to_string(), "seq-00000012".to_string()];
        assert_eq!(numbered(&values), vec![1, 12]);
    }
}
