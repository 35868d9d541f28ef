//! MirrorMaker 2 between two real single-node clusters, driven by the numbered Java clients: the
//! building blocks of the client-switchover drill, checked (and timed) without a gateway.
//!
//! Run with `cargo test -p switchyard-testkit --test mirror -- --nocapture`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use switchyard_testkit::java;
use switchyard_testkit::mirrormaker::{committed_offsets, end_offsets};
use switchyard_testkit::poll::poll_until;
use switchyard_testkit::{ClusterSpec, KafkaCluster, MirrorMaker, MirrorOptions, NumberedConsumer, NumberedProducer};

const TOPIC: &str = "drill";
const PARTITIONS: usize = 3;
const RECORDS: u64 = 2000;
const RATE: u32 = 500;
const GROUP: &str = "drill-group";

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let value = f();
    eprintln!("[mirror] {what}: {:.1?}", start.elapsed());
    value
}

fn total(offsets: &[(i32, i64)]) -> i64 {
    offsets.iter().map(|(_, o)| o).sum()
}

#[test]
fn mirrormaker_replicates_records_and_group_offsets() {
    let (source, destination) = timed("start two single-node clusters", || {
        std::thread::scope(|s| {
            let source = s.spawn(|| KafkaCluster::start(ClusterSpec::single()));
            let destination = s.spawn(|| KafkaCluster::start(ClusterSpec::single()));
            (source.join().unwrap().unwrap(), destination.join().unwrap().unwrap())
        })
    });
    let (src, dst) = (source.bootstrap(), destination.bootstrap());
    java::create_topic(&src, TOPIC, PARTITIONS as i32, 1).unwrap();
    source.wait_for_topic(TOPIC, PARTITIONS).unwrap();

    let mut mm =
        timed("MirrorMaker start (herders up)", || MirrorMaker::start(&src, &dst, MirrorOptions::default())).unwrap();
    timed("MirrorMaker creates the existing topic on the destination", || {
        mm.wait_for_topic(TOPIC, PARTITIONS, Duration::from_secs(120))
    })
    .unwrap();
    eprintln!("[mirror] MM2 spawn to topic on destination: {:.1?}", mm.started_at().elapsed());

    // The consumer joins first, as in a drill, so it commits offsets while records flow.
    let mut consumer = NumberedConsumer::reading(&src, TOPIC, GROUP, RECORDS, Duration::from_secs(30)).start().unwrap();
    timed("source consumer assigned (JVM start, source-launcher compile, join)", || {
        consumer.wait_assigned(Duration::from_secs(60))
    })
    .unwrap();
    let assigned = Instant::now();
    let mut producer = NumberedProducer::sending(&src, TOPIC, RECORDS, RATE).start().unwrap();
    timed("first producer ack (JVM start, source-launcher compile)", || {
        producer.wait_acked(1, Duration::from_secs(60))
    })
    .unwrap();
    timed("first record replicated after first ack", || {
        poll_until(Duration::from_secs(120), || end_offsets(&dst, TOPIC).ok().filter(|o| total(o) > 0))
    })
    .unwrap();
    eprintln!("[mirror] MM2 spawn to first replicated record: {:.1?}", mm.started_at().elapsed());
    // MM2 finds new groups by polling the source (refresh.groups.interval.seconds) once they have
    // committed offsets, and then writes translated offsets into the (inactive) destination group
    // every second.
    poll_until(Duration::from_secs(120), || committed_offsets(&dst, GROUP, TOPIC).ok().filter(|o| !o.is_empty()))
        .unwrap();
    eprintln!(
        "[mirror] group's first offsets on the destination: {:.1?} after the consumer was assigned \
         (source consumer still running: {})",
        assigned.elapsed(),
        !consumer.progress().done
    );

    let produced = timed("rest of the producer run", || producer.wait(Duration::from_secs(120))).unwrap();
    eprintln!(
        "[mirror] producer: sent={} acked={} errors={} maxAckGapMs={}",
        produced.sent,
        produced.acked.len(),
        produced.errors.len(),
        produced.max_ack_gap_ms,
    );
    assert!(produced.errors.is_empty(), "{:?}", produced.errors);
    assert_eq!(produced.sent, RECORDS);
    assert_eq!(produced.missing(RECORDS), Vec::<u64>::new());

    let caught_up = timed("destination catches up after the last ack", || {
        mm.wait_caught_up(TOPIC, PARTITIONS, Duration::from_secs(60))
    })
    .unwrap();
    assert_eq!(total(&caught_up), RECORDS as i64);
    assert_eq!(end_offsets(&src, TOPIC).unwrap(), caught_up);

    let consumed = timed("source consumer finishes", || consumer.wait(Duration::from_secs(90))).unwrap();
    eprintln!(
        "[mirror] source consumer: records={} distinct={} duplicates={} maxPollGapMs={}",
        consumed.values.len(),
        consumed.distinct,
        consumed.duplicates(),
        consumed.max_poll_gap_ms
    );
    assert_eq!(consumed.distinct, RECORDS as usize);
    // Every record was read where its ack said it was written.
    let written: HashMap<u64, (i32, i64)> = produced.acks.iter().map(|a| (a.seq, (a.partition, a.offset))).collect();
    for record in &consumed.records {
        assert_eq!(written[&record.seq.unwrap()], (record.partition, record.offset), "{record:?}");
    }
    assert_eq!(consumed.missing(RECORDS), Vec::<u64>::new());
    assert_eq!(committed_offsets(&src, GROUP, TOPIC).unwrap(), caught_up);

    let synced = timed("group offsets synced to the destination after the consumer closed", || {
        mm.wait_group_synced(GROUP, TOPIC, Duration::from_secs(60))
    })
    .unwrap();
    assert_eq!(synced, caught_up);

    // The synced group resumes at the end on the destination: nothing left to read.
    let resumed = timed("synced group on the destination (expects nothing)", || {
        NumberedConsumer::reading(&dst, TOPIC, GROUP, RECORDS, Duration::from_secs(8))
            .start()
            .and_then(|c| c.wait(Duration::from_secs(90)))
    })
    .unwrap();
    assert_eq!(resumed.values.len(), 0, "synced group re-read {} records", resumed.values.len());

    let fresh = timed("new group reads everything on the destination", || {
        NumberedConsumer::reading(&dst, TOPIC, "drill-dst-fresh", RECORDS, Duration::from_secs(30))
            .start()
            .and_then(|c| c.wait(Duration::from_secs(90)))
    })
    .unwrap();
    assert_eq!(fresh.distinct, RECORDS as usize);
    assert_eq!(fresh.duplicates(), 0);

    // A topic created while MM2 runs is found by the periodic refresh (2 s here).
    java::create_topic(&src, "late", 2, 1).unwrap();
    timed("MirrorMaker picks up a topic created while running", || {
        mm.wait_for_topic("late", 2, Duration::from_secs(120))
    })
    .unwrap();
    java::console_produce(&src, "late", &["late-1".to_owned()], &[]).unwrap();
    timed("first record of the new topic replicated", || mm.wait_caught_up("late", 2, Duration::from_secs(120)))
        .unwrap();

    // Picking up "late" restarted the replication task: check it re-sent nothing.
    let after = mm.wait_caught_up(TOPIC, PARTITIONS, Duration::from_secs(30)).unwrap();
    assert_eq!(after, caught_up);

    for line in
        mm.log().lines().filter(|l| l.contains("Found") || l.contains("remote topic") || l.contains("replicating"))
    {
        eprintln!("[mirror] mm2: {line}");
    }
    timed("MirrorMaker graceful stop", || mm.stop()).unwrap();

    check_sigterm(&dst);
}

/// SIGTERM mid-run: the producer stops sending, completes what is in flight and reports; the
/// consumer wakes up, closes and reports.
fn check_sigterm(bootstrap: &str) {
    java::create_topic(bootstrap, "sigterm", 1, 1).unwrap();
    let mut consumer =
        NumberedConsumer::reading(bootstrap, "sigterm", "sigterm-group", 1_000_000, Duration::from_secs(600))
            .start()
            .unwrap();
    let mut producer = NumberedProducer::sending(bootstrap, "sigterm", 1_000_000, 1000).start().unwrap();
    producer.wait_acked(500, Duration::from_secs(60)).unwrap();
    consumer.wait_assigned(Duration::from_secs(60)).unwrap();
    producer.stop();
    let produced = timed("producer exits after SIGTERM", || producer.wait(Duration::from_secs(60))).unwrap();
    eprintln!("[mirror] stopped producer: sent={} acked={}", produced.sent, produced.acked.len());
    assert!(produced.done && produced.errors.is_empty(), "{produced:?}");
    assert!(produced.sent < 1_000_000);
    assert_eq!(produced.acked.len() as u64, produced.sent, "in-flight sends were not completed");
    poll_until(Duration::from_secs(30), || (consumer.progress().values.len() as u64 >= produced.sent).then_some(()))
        .unwrap();
    consumer.stop();
    let consumed = timed("consumer exits after SIGTERM", || consumer.wait(Duration::from_secs(60))).unwrap();
    assert!(consumed.done);
    assert_eq!(consumed.distinct as u64, produced.sent);
    assert_eq!(committed_offsets(bootstrap, "sigterm-group", "sigterm").unwrap(), vec![(0, produced.sent as i64)]);
}
