//! Each phase of a live switchover, and its aborts, in process with paused time: a fake cluster
//! on each side ([`ClusterMetadata`]) stands in for Kafka, so catch-up, the fence's drain and
//! the timeouts are driven by virtual seconds, exactly and fast. The drills against real Kafka
//! and MirrorMaker 2 are in `tests/switchover.rs`.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard::cluster::Advertising;
use switchyard::config::{
    parse_with_env, CatchUpPolicy, FenceMode, GatewayConfig, GroupOffsets, HostPort, SwitchoverRequest,
};
use switchyard::routing::{ClusterMetadata, Effect, IdsByName, KeyValue, Route, TopicIdLookup, Topology, Upstream};
use switchyard::switchover::groups::Checkpoint;
use switchyard::switchover::{Destinations, Refusal, Switchboard, SwitchoverReport};
use switchyard::telemetry::Metrics;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const TOPIC: &str = "orders";
const DRAIN_TIMEOUT_MS: u64 = 3_000;
const CHECKPOINTS: &str = "blue.checkpoints.internal";

/// A cluster that answers from what the test sets: its topics, each partition's watermarks,
/// and whether it can be reached at all.
#[derive(Default)]
struct FakeCluster {
    unreachable: AtomicBool,
    topics: Mutex<BTreeMap<String, usize>>,
    marks: Mutex<HashMap<(String, i32), (i64, i64)>>,
    /// Committed offsets by (group, topic, partition).
    committed: Mutex<BTreeMap<(String, String, i32), i64>>,
    /// Every record of every topic, as (key, value).
    records: Mutex<HashMap<String, Vec<KeyValue>>>,
}

impl FakeCluster {
    /// One topic of one partition holding `records`.
    fn holding(records: i64) -> Arc<FakeCluster> {
        let cluster = FakeCluster::default();
        cluster.topics.lock().unwrap().insert(TOPIC.into(), 1);
        cluster.marks.lock().unwrap().insert((TOPIC.into(), 0), (0, records));
        Arc::new(cluster)
    }

    fn set_records(&self, records: i64) {
        self.marks.lock().unwrap().insert((TOPIC.into(), 0), (0, records));
    }

    fn commit_offset(&self, group: &str, partition: i32, offset: i64) {
        self.committed.lock().unwrap().insert((group.into(), TOPIC.into(), partition), offset);
    }

    fn committed_offset(&self, group: &str, partition: i32) -> Option<i64> {
        self.committed.lock().unwrap().get(&(group.to_string(), TOPIC.to_string(), partition)).copied()
    }

    /// MirrorMaker 2 checkpoints `group`'s `upstream` offset of partition 0 as `downstream`.
    fn checkpoint(&self, group: &str, upstream: i64, downstream: i64) {
        let checkpoint = Checkpoint { group: group.into(), topic: TOPIC.into(), partition: 0, upstream, downstream };
        self.records.lock().unwrap().entry(CHECKPOINTS.into()).or_default().push(checkpoint.encode());
    }

    fn answer<T>(&self, value: T) -> anyhow::Result<T> {
        anyhow::ensure!(!self.unreachable.load(Ordering::Relaxed), "no broker answers");
        Ok(value)
    }
}

impl ClusterMetadata for FakeCluster {
    fn brokers(&self, _: Duration) -> anyhow::Result<Vec<(i32, HostPort)>> {
        self.answer(vec![(1, HostPort { host: "127.0.0.1".into(), port: 9 })])
    }

    fn topics(&self, _: Duration) -> anyhow::Result<BTreeMap<String, usize>> {
        self.answer(self.topics.lock().unwrap().clone())
    }

    fn watermarks(&self, topic: &str, partition: i32, _: Duration) -> anyhow::Result<(i64, i64)> {
        let marks = self.marks.lock().unwrap().get(&(topic.to_string(), partition)).copied();
        self.answer(marks.unwrap_or((0, 0)))
    }

    fn consumer_groups(&self, _: Duration) -> anyhow::Result<Vec<String>> {
        let mut groups: Vec<String> = self.committed.lock().unwrap().keys().map(|(g, _, _)| g.clone()).collect();
        groups.dedup();
        self.answer(groups)
    }

    fn committed(
        &self,
        group: &str,
        topics: &BTreeMap<String, usize>,
        _: Duration,
    ) -> anyhow::Result<Vec<(String, i32, i64)>> {
        let committed = self.committed.lock().unwrap();
        let found = committed
            .iter()
            .filter(|((g, t, _), _)| g == group && topics.contains_key(t))
            .map(|((_, t, p), offset)| (t.clone(), *p, *offset))
            .collect();
        self.answer(found)
    }

    fn commit(&self, group: &str, offsets: &[(String, i32, i64)], _: Duration) -> anyhow::Result<()> {
        let mut committed = self.committed.lock().unwrap();
        for (topic, partition, offset) in offsets {
            committed.insert((group.to_string(), topic.clone(), *partition), *offset);
        }
        self.answer(())
    }

    fn records(&self, topic: &str, _: Duration) -> anyhow::Result<Vec<KeyValue>> {
        self.answer(self.records.lock().unwrap().get(topic).cloned().unwrap_or_default())
    }
}

/// Both domains of the config, each a fake cluster.
struct FakeDestinations(HashMap<String, Arc<FakeCluster>>);

impl Destinations for FakeDestinations {
    fn reach(
        &self,
        config: &GatewayConfig,
        domain: &str,
        bootstrap_server_id: Option<&str>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Arc<Upstream>> {
        let cluster = Arc::clone(&self.0[domain]);
        let domain = config.domains.iter().find(|d| d.name == domain).expect("a domain of the config");
        let topology = Topology::with_metadata(&domain.name, cluster);
        let hour = Duration::from_secs(3600);
        Upstream::with_topology(domain, bootstrap_server_id, topology, hour, Duration::from_secs(1), shutdown)
    }
}

/// Each fake cluster gives a topic an id of its own: its domain and name, hashed.
impl TopicIdLookup for FakeDestinations {
    fn topic_ids<'a>(
        &'a self,
        upstream: &'a Upstream,
        topics: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Result<IdsByName, String>> + Send + 'a>> {
        let ids = topics.iter().map(|t| (t.clone(), fake_topic_id(&upstream.domain, t))).collect();
        Box::pin(async move { Ok(ids) })
    }
}

fn fake_topic_id(domain: &str, topic: &str) -> Uuid {
    let mut hasher = DefaultHasher::new();
    (domain, topic).hash(&mut hasher);
    Uuid::from_u64_pair(hasher.finish(), 1)
}

/// A route `r` on domain `blue`, which can be switched to `green`.
struct Setup {
    config: GatewayConfig,
    route: Arc<Route>,
    clusters: FakeDestinations,
    shutdown: CancellationToken,
    green: Arc<FakeCluster>,
}

impl Setup {
    fn new(blue: Arc<FakeCluster>, green: Arc<FakeCluster>) -> Setup {
        let config = config("");
        let clusters =
            FakeDestinations(HashMap::from([("blue".into(), Arc::clone(&blue)), ("green".into(), Arc::clone(&green))]));
        let shutdown = CancellationToken::new();
        let source = clusters.reach(&config, "blue", None, &shutdown).expect("the source");
        let route =
            Route::new(&config.routes[0], source, Arc::new(Advertising::RouteEndpoint), &Metrics::new(), &shutdown);
        route.saw_topics([TOPIC].into_iter());
        Setup { config, route: Arc::new(route), clusters, shutdown, green }
    }

    async fn switch(&self, request: &SwitchoverRequest) -> Result<SwitchoverReport, Refusal> {
        let routes = [Arc::clone(&self.route)];
        let board = Switchboard {
            config: &self.config,
            routes: &routes,
            shutdown: &self.shutdown,
            destinations: &self.clusters,
            topic_ids: &self.clusters,
        };
        board.switch("r", request).await
    }
}

/// Two domains, `blue` and `green`, and route `r` on blue with `route_extra` (flow YAML fields).
fn config(route_extra: &str) -> GatewayConfig {
    parse_with_env("phases.yaml", &yaml(route_extra), &|_| None).expect("a valid config")
}

fn yaml(route_extra: &str) -> String {
    format!(
        "streamingDomains:
  - {{name: blue, type: kafka, kafkaCluster: {{name: blue, bootstrapServers: [{{id: b, endpoint: 'blue:9092'}}], nodeIdRanges: [{{name: n, start: 1, end: 1}}]}}}}
  - {{name: green, type: kafka, kafkaCluster: {{name: green, bootstrapServers: [{{id: b, endpoint: 'green:9092'}}], nodeIdRanges: [{{name: n, start: 1, end: 1}}]}}}}
routes:
  - {{name: r, endpoint: '127.0.0.1:19092', streamingDomain: {{name: blue}}{route_extra}}}
proxy: {{drainTimeoutMs: {DRAIN_TIMEOUT_MS}}}
"
    )
}

fn to_green(catch_up: CatchUpPolicy, timeout: Duration) -> SwitchoverRequest {
    SwitchoverRequest {
        to: "green".into(),
        catch_up: Some(catch_up),
        catch_up_timeout_ms: Some(timeout.as_millis() as u64),
        fence: Some(FenceMode::Hold),
        dry_run: false,
        topics: None,
        group_offsets: None,
    }
}

/// [`to_green`] carrying consumer groups by MirrorMaker 2's checkpoints.
fn to_green_with_groups(timeout: Duration) -> SwitchoverRequest {
    let group_offsets = GroupOffsets { checkpoints_topic: CHECKPOINTS.into(), groups: None };
    SwitchoverRequest { group_offsets: Some(group_offsets), ..to_green(CatchUpPolicy::Offsets, timeout) }
}

fn phase_names(report: &SwitchoverReport) -> Vec<&str> {
    report.phases.iter().map(|p| p.name).collect()
}

#[tokio::test(start_paused = true)]
async fn completes_once_replication_catches_up_with_phases_in_order() {
    let setup = Setup::new(FakeCluster::holding(100), FakeCluster::holding(40));
    let green = Arc::clone(&setup.green);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        green.set_records(100);
    });
    let started = Instant::now();
    let report = setup.switch(&to_green(CatchUpPolicy::Offsets, Duration::from_secs(60))).await.expect("switchover");
    assert_eq!(report.outcome, "completed", "{report:?}");
    assert_eq!(phase_names(&report), ["pre-flight", "fence", "catch-up", "cut"]);
    assert!(started.elapsed() >= Duration::from_secs(5), "the cut waited for replication");
    assert!(started.elapsed() < Duration::from_secs(7), "and no longer than a poll after it");
    assert_eq!(setup.route.upstream().domain, "green");
    assert!(!setup.route.fence.is_closed(), "the fence opens at the cut");
    assert_eq!(report.topics[0].offset_lag, vec![0]);
}

#[tokio::test(start_paused = true)]
async fn catch_up_timeout_aborts_and_unfences_on_the_source() {
    let setup = Setup::new(FakeCluster::holding(100), FakeCluster::holding(40));
    let started = Instant::now();
    let report = setup.switch(&to_green(CatchUpPolicy::Offsets, Duration::from_secs(2))).await.expect("a report");
    assert_eq!(report.outcome, "aborted", "{report:?}");
    assert!(report.message.contains("did not catch up"), "{}", report.message);
    assert_eq!(phase_names(&report), ["pre-flight", "fence", "catch-up"]);
    assert!(started.elapsed() >= Duration::from_secs(2) && started.elapsed() < Duration::from_secs(3));
    assert_eq!(setup.route.upstream().domain, "blue", "clients stay on the source");
    assert!(!setup.route.fence.is_closed(), "the source is unfenced");
    // A later attempt, once replication caught up, goes through.
    setup.green.set_records(100);
    let retry = setup.switch(&to_green(CatchUpPolicy::Offsets, Duration::from_secs(2))).await.expect("retry");
    assert_eq!(retry.outcome, "completed");
}

#[tokio::test(start_paused = true)]
async fn records_policy_allows_the_configured_lag() {
    let setup = Setup::new(FakeCluster::holding(100), FakeCluster::holding(95));
    let report = setup
        .switch(&to_green(CatchUpPolicy::Records { max_lag: 5 }, Duration::from_secs(1)))
        .await
        .expect("switchover");
    assert_eq!(report.outcome, "completed", "{report:?}");
}

#[tokio::test(start_paused = true)]
async fn a_destination_without_the_topic_is_refused_before_anything_is_fenced() {
    let green = FakeCluster::holding(100);
    green.topics.lock().unwrap().clear();
    let setup = Setup::new(FakeCluster::holding(100), green);
    let refusal = setup.switch(&to_green(CatchUpPolicy::None, Duration::from_secs(1))).await.unwrap_err();
    let Refusal::NotReady(report) = refusal else { panic!("expected NotReady, got {refusal}") };
    assert!(report.message.contains("`orders` is missing"), "{}", report.message);
    assert_eq!(phase_names(&report), ["pre-flight"]);
    assert_eq!(setup.route.upstream().domain, "blue");
    assert!(!setup.route.fence.is_closed());
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_destination_is_refused_before_anything_is_fenced() {
    let green = FakeCluster::holding(100);
    green.unreachable.store(true, Ordering::Relaxed);
    let setup = Setup::new(FakeCluster::holding(100), green);
    let refusal = setup.switch(&to_green(CatchUpPolicy::None, Duration::from_secs(1))).await.unwrap_err();
    assert!(matches!(refusal, Refusal::Unreachable { .. }), "{refusal}");
    assert!(!setup.route.fence.is_closed());
    assert_eq!(setup.route.upstream().domain, "blue");
}

#[tokio::test(start_paused = true)]
async fn the_cut_waits_for_requests_already_forwarded() {
    let setup = Arc::new(Setup::new(FakeCluster::holding(100), FakeCluster::holding(100)));
    let produce = setup.route.fence.enter(Effect::MayWrite).expect("the fence is open");
    let switching = {
        let setup = Arc::clone(&setup);
        tokio::spawn(async move { setup.switch(&to_green(CatchUpPolicy::None, Duration::from_secs(1))).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(setup.route.fence.is_closed(), "the fence closed");
    assert!(!switching.is_finished(), "a forwarded request is unanswered: no cut yet");
    assert_eq!(setup.route.upstream().domain, "blue");
    assert_eq!(setup.route.fence.enter(Effect::MayWrite), Err(FenceMode::Hold), "new requests are held");
    setup.route.fence.leave(produce);
    let report = switching.await.expect("the task").expect("switchover");
    assert_eq!(report.outcome, "completed");
    assert!(report.phases[1].detail.contains("every in-flight request answered"), "{:?}", report.phases[1]);
    assert_eq!(setup.route.upstream().domain, "green");
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_request_delays_the_cut_by_the_drain_timeout_only() {
    let setup = Setup::new(FakeCluster::holding(100), FakeCluster::holding(100));
    setup.route.fence.enter(Effect::MayWrite).expect("the fence is open");
    let started = Instant::now();
    let report = setup.switch(&to_green(CatchUpPolicy::None, Duration::from_secs(1))).await.expect("switchover");
    assert_eq!(report.outcome, "completed");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(DRAIN_TIMEOUT_MS) && waited < Duration::from_millis(DRAIN_TIMEOUT_MS + 500),
        "waited {waited:?}"
    );
    assert!(report.phases[1].detail.contains("1 requests still unanswered"), "{:?}", report.phases[1]);
}

/// A consumer's Fetch parked at the broker (no data comes once producers are fenced) does not
/// hold up catch-up and the cut: its connection waits for its answer before it moves.
#[tokio::test(start_paused = true)]
async fn a_parked_fetch_does_not_delay_the_cut() {
    let setup = Setup::new(FakeCluster::holding(100), FakeCluster::holding(100));
    let fetch = setup.route.fence.enter(Effect::ReadsOnly).expect("the fence is open");
    let started = Instant::now();
    let report = setup.switch(&to_green(CatchUpPolicy::None, Duration::from_secs(1))).await.expect("switchover");
    assert_eq!(report.outcome, "completed");
    assert!(started.elapsed() < Duration::from_millis(DRAIN_TIMEOUT_MS), "waited {:?}", started.elapsed());
    assert!(report.phases[1].detail.contains("but 1 Fetch"), "{:?}", report.phases[1]);
    assert_eq!(setup.route.upstream().domain, "green");
    setup.route.fence.leave(fetch);
}

/// Clients are shown the source's topic ids after the cut, and may name them in their very
/// first request on a moved connection: the cut installs the translation before any connection
/// moves, from both clusters' ids learned in pre-flight, whether or not a Metadata answer ever
/// showed the clients an id through this gateway node.
#[tokio::test(start_paused = true)]
async fn the_cut_translates_topic_ids_before_any_connection_moves() {
    let setup = Setup::new(FakeCluster::holding(100), FakeCluster::holding(100));
    let (blue, green) = (fake_topic_id("blue", TOPIC), fake_topic_id("green", TOPIC));
    assert_eq!(setup.route.topic_ids.to_cluster(blue), None);
    let report = setup.switch(&to_green(CatchUpPolicy::None, Duration::from_secs(1))).await.expect("switchover");
    assert_eq!(report.outcome, "completed");
    assert!(report.phases[0].detail.contains("1 topic ids differ"), "{:?}", report.phases[0]);
    assert_eq!(setup.route.topic_ids.to_cluster(blue), Some(green));
    assert_eq!(setup.route.topic_ids.to_client(green), Some(blue));
    assert_eq!(setup.route.topic_ids.present(setup.route.moves(), TOPIC, green), blue);
}

#[tokio::test(start_paused = true)]
async fn a_second_switchover_of_a_route_is_refused_while_one_runs() {
    let setup = Arc::new(Setup::new(FakeCluster::holding(100), FakeCluster::holding(40)));
    let first = {
        let setup = Arc::clone(&setup);
        tokio::spawn(async move { setup.switch(&to_green(CatchUpPolicy::Offsets, Duration::from_secs(10))).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = setup.switch(&to_green(CatchUpPolicy::None, Duration::from_secs(1))).await.unwrap_err();
    assert!(matches!(second, Refusal::Busy { .. }), "{second}");
    let first = first.await.expect("the task").expect("a report");
    assert_eq!(first.outcome, "aborted", "the first one still ends by its own timeout");
    assert!(!setup.route.fence.is_closed());
}

#[tokio::test(start_paused = true)]
async fn a_configuration_fence_stays_across_a_switchover_until_removed() {
    use switchyard::config::RouteFence;
    let setup = Setup::new(FakeCluster::holding(100), FakeCluster::holding(100));
    let held = RouteFence { error_code: Some(8), error_message: Some("migrating".into()) };
    assert!(setup.route.set_config_fence(Some(held)));
    assert_eq!(setup.route.fence.closed(), Some(FenceMode::Error));
    let report = setup.switch(&to_green(CatchUpPolicy::None, Duration::from_secs(1))).await.expect("switchover");
    assert_eq!(report.outcome, "completed", "a fenced route may be switched");
    assert_eq!(setup.route.upstream().domain, "green");
    assert_eq!(setup.route.fence.closed(), Some(FenceMode::Error), "the configuration's fence stays");
    assert_eq!(setup.route.fence.codes().partition, 8);
    assert!(setup.route.set_config_fence(None));
    assert!(!setup.route.fence.is_closed(), "removing it from the file opens the route");
}

#[tokio::test(start_paused = true)]
async fn a_reload_puts_the_configuration_fence_up_and_takes_it_down() {
    let setup = Setup::new(FakeCluster::holding(100), FakeCluster::holding(100));
    let fenced = config(", fence: {scope: ALL, errorCode: BROKER_NOT_AVAILABLE, errorMessage: moving}");
    let routes = [Arc::clone(&setup.route)];
    let board = Switchboard {
        config: &setup.config,
        routes: &routes,
        shutdown: &setup.shutdown,
        destinations: &setup.clusters,
        topic_ids: &setup.clusters,
    };
    let (outcome, _) = switchyard::switchover::reload::apply(&board, &fenced).await;
    assert_eq!(outcome.fenced, ["r: fenced by the configuration"]);
    assert_eq!(setup.route.fence.closed(), Some(FenceMode::Error));
    let (outcome, _) = switchyard::switchover::reload::apply(&board, &fenced).await;
    assert!(outcome.fenced.is_empty(), "an unchanged fence is not applied again");
    let unfenced = config(", fence: {scope: NONE}");
    let (outcome, _) = switchyard::switchover::reload::apply(&board, &unfenced).await;
    assert_eq!(outcome.fenced, ["r: configuration fence removed"]);
    assert!(!setup.route.fence.is_closed());
}

#[tokio::test(start_paused = true)]
async fn the_cut_waits_for_group_offsets_translated_and_commits_them() {
    let setup = Setup::new(FakeCluster::holding(100), FakeCluster::holding(100));
    let blue = Arc::clone(&setup.clusters.0["blue"]);
    blue.commit_offset("g", 0, 80);
    setup.green.checkpoint("g", 60, 57);
    let green = Arc::clone(&setup.green);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(4)).await;
        green.checkpoint("g", 80, 77);
    });
    let started = Instant::now();
    let report = setup.switch(&to_green_with_groups(Duration::from_secs(30))).await.expect("switchover");
    assert_eq!(report.outcome, "completed", "{report:?}");
    assert!(started.elapsed() >= Duration::from_secs(4), "the cut waited for the checkpoint of offset 80");
    assert!(started.elapsed() < Duration::from_secs(5), "and no longer than a poll after it");
    assert_eq!(setup.green.committed_offset("g", 0), Some(77), "the translation is committed on the destination");
    assert_eq!(report.groups[0].committed, 1, "{:?}", report.groups);
    assert!(report.phases[2].detail.contains("1 consumer groups translated"), "{:?}", report.phases[2]);
}

#[tokio::test(start_paused = true)]
async fn untranslated_group_offsets_abort_at_the_catch_up_timeout() {
    let setup = Setup::new(FakeCluster::holding(100), FakeCluster::holding(100));
    setup.clusters.0["blue"].commit_offset("g", 0, 80);
    setup.green.checkpoint("g", 60, 57);
    let started = Instant::now();
    let report = setup.switch(&to_green_with_groups(Duration::from_secs(3))).await.expect("a report");
    assert_eq!(report.outcome, "aborted", "{report:?}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(3) && waited < Duration::from_secs(4), "waited {waited:?}");
    assert!(report.message.contains("group `g` orders-0 at 80 (latest checkpoint: 60 -> 57)"), "{}", report.message);
    assert_eq!(setup.route.upstream().domain, "blue", "clients stay on the source");
    assert!(!setup.route.fence.is_closed(), "the source is unfenced");
    assert_eq!(setup.green.committed_offset("g", 0), None, "nothing was committed on the destination");
}

#[tokio::test(start_paused = true)]
async fn a_destination_group_ahead_of_the_translation_is_not_moved_back() {
    let setup = Setup::new(FakeCluster::holding(100), FakeCluster::holding(100));
    setup.clusters.0["blue"].commit_offset("g", 0, 80);
    setup.green.checkpoint("g", 80, 77);
    setup.green.commit_offset("g", 0, 90);
    let report = setup.switch(&to_green_with_groups(Duration::from_secs(3))).await.expect("switchover");
    assert_eq!(report.outcome, "completed", "{report:?}");
    assert_eq!(report.groups[0].committed, 0);
    assert_eq!(setup.green.committed_offset("g", 0), Some(90));
}

#[tokio::test(start_paused = true)]
async fn a_route_configured_with_group_offsets_carries_groups_and_a_bad_one_is_refused() {
    let bad = yaml(", switchover: {groupOffsets: {checkpointsTopic: ''}}");
    let error = parse_with_env("phases.yaml", &bad, &|_| None).unwrap_err().to_string();
    for needle in ["phases.yaml", "routes[0].switchover.groupOffsets", "Fix:", "checkpoints.internal"] {
        assert!(error.contains(needle), "{needle} missing from: {error}");
    }
    let mut setup = Setup::new(FakeCluster::holding(100), FakeCluster::holding(100));
    setup.config = config(&format!(", switchover: {{groupOffsets: {{checkpointsTopic: {CHECKPOINTS}}}}}"));
    setup.clusters.0["blue"].commit_offset("g", 0, 80);
    setup.green.checkpoint("g", 80, 80);
    let report = setup.switch(&to_green(CatchUpPolicy::None, Duration::from_secs(3))).await.expect("switchover");
    assert_eq!(report.outcome, "completed", "{report:?}");
    assert_eq!(setup.green.committed_offset("g", 0), Some(80), "the route's groupOffsets applied");
}
