//! Client switchover against real Kafka clusters: the admin API's contract (dry run, refusals,
//! catch-up timeout that unfences, concurrent switchovers, the cut itself, a stable cluster id),
//! the config reload that applies an edited route live, the CLI, and the drill — a live
//! producer and consumer group moved by a live switchover and by the restart procedure, with
//! MirrorMaker 2 replicating, asserting that no acknowledged record is lost.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use common::run_suite_with_known_failures;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{FetchRequest, MetadataRequest, TopicName};
use serde_json::{json, Value};
use switchyard_testkit::clients::{JAVA_CLIENT_2, JAVA_CLIENT_3, JAVA_CLIENT_4};
use switchyard_testkit::drill::{self, DrillMode, DrillOptions};
use switchyard_testkit::mirrormaker::{self, MirrorMaker, MirrorOptions, SOURCE_ALIAS};
use switchyard_testkit::numbered::{ConsumerReport, FranzNumbered, NumberedConsumer, NumberedProducer, ProducerReport};
use switchyard_testkit::{
    free_port_block, java, kcat, poll, wire, ClusterSpec, GatewayProcess, KafkaCluster, KafkaWire,
};
use uuid::Uuid;

const TOKEN: &str = "switch-token";
const WAIT: Duration = Duration::from_secs(30);

struct Env {
    source: KafkaCluster,
    destination: KafkaCluster,
}

/// Tests that reproduce an open issue (run them with `--ignored`).
const KNOWN_FAILING: &[&str] = &[];

fn main() {
    run_suite_with_known_failures(
        &[
            ("dry_run_reports_without_changing_anything", dry_run_reports_without_changing_anything),
            ("bad_requests_are_refused_before_fencing", bad_requests_are_refused_before_fencing),
            ("catch_up_timeout_aborts_and_unfences", catch_up_timeout_aborts_and_unfences),
            ("librdkafka_producer_rides_an_error_fence", librdkafka_producer_rides_an_error_fence),
            ("live_cut_keeps_client_connections_and_cluster_id", live_cut_keeps_client_connections_and_cluster_id),
            ("topic_ids_stay_those_of_the_source_across_the_cut", topic_ids_stay_those_of_the_source_across_the_cut),
            (
                "a_restart_onto_the_destination_keeps_the_ids_clients_were_shown",
                a_restart_onto_the_destination_keeps_the_ids_clients_were_shown,
            ),
            ("stock_kcat_producer_keeps_producing_across_the_cut", stock_kcat_producer_keeps_producing_across_the_cut),
            ("stock_kcat_consumer_keeps_consuming_across_the_cut", stock_kcat_consumer_keeps_consuming_across_the_cut),
            (
                "franz_go_producer_and_group_keep_going_across_the_cut",
                franz_go_producer_and_group_keep_going_across_the_cut,
            ),
            (
                "franz_go_producer_and_group_keep_going_across_a_restart",
                franz_go_producer_and_group_keep_going_across_a_restart,
            ),
            (
                "java_2_producer_and_group_keep_going_across_the_cut",
                java_2_producer_and_group_keep_going_across_the_cut,
            ),
            (
                "java_4_4_producer_and_consumer_protocol_group_keep_going_across_the_cut",
                java_4_4_producer_and_consumer_protocol_group_keep_going_across_the_cut,
            ),
            (
                "java_consumer_without_a_group_reads_on_across_the_cut",
                java_consumer_without_a_group_reads_on_across_the_cut,
            ),
            ("java_transactional_producer_keeps_committing_across_the_cut", java_transactional_producer_4),
            ("java_3_transactional_producer_keeps_committing_across_the_cut", java_transactional_producer_3),
            (
                "java_transactional_producer_keeps_committing_across_a_restart",
                java_transactional_producer_across_a_restart,
            ),
            ("java_exactly_once_processor_keeps_committing_offsets_across_the_cut", java_transactional_offsets_4),
            ("java_3_exactly_once_processor_keeps_committing_offsets_across_the_cut", java_transactional_offsets_3),
            (
                "java_transactional_producer_and_processor_on_transaction_version_1_clusters",
                java_transactional_on_transaction_version_1,
            ),
            ("sighup_applies_an_edited_route_live", sighup_applies_an_edited_route_live),
            ("watched_file_edits_apply_live_both_ways", watched_file_edits_apply_live_both_ways),
            ("cli_dry_run_prints_the_report", cli_dry_run_prints_the_report),
            ("group_resumes_on_the_destination_where_it_stopped", group_resumes_on_the_destination_where_it_stopped),
            ("group_offsets_fall_back_to_checkpoints", group_offsets_fall_back_to_checkpoints),
            ("drill_live_switchover_loses_nothing", drill_live_switchover_loses_nothing),
            ("drill_error_fence_answers_and_loses_nothing", drill_error_fence_answers_and_loses_nothing),
            ("drill_restart_procedure_loses_nothing", drill_restart_procedure_loses_nothing),
        ],
        KNOWN_FAILING,
        || {
            let source = KafkaCluster::start(ClusterSpec::single())?;
            let destination = KafkaCluster::start(ClusterSpec { first_node_id: 2, ..ClusterSpec::single() })?;
            Ok(Env { source, destination })
        },
    );
}

/// A gateway whose route `main` points at the source, with the destination and an unreachable
/// domain configured too, and a second route `steady` that never moves.
struct Gateway {
    process: GatewayProcess,
    base: u16,
    steady_base: u16,
    admin: u16,
    /// Where the unreachable domain points: nothing listens there.
    dead: u16,
}

/// Appended to the config for the gateway that watches its file.
const WATCH: &str = "reload:\n  watch: true\n  intervalMs: 200\n";

impl Gateway {
    fn start(env: &Env) -> Result<Gateway> {
        Gateway::start_with(env, "")
    }

    /// A gateway whose config has `extra` appended.
    fn start_with(env: &Env, extra: &str) -> Result<Gateway> {
        let (base, steady_base, admin, dead) =
            (free_port_block(3), free_port_block(3), free_port_block(1), free_port_block(1));
        let yaml = config(env, "source", [base, steady_base, admin, dead]) + extra;
        let process = GatewayProcess::start(&common::binary(), &yaml, &[addr(base), addr(steady_base)])?;
        Ok(Gateway { process, base, steady_base, admin, dead })
    }

    /// Stop the gateway and start it again with the route on `domain` (Confluent's
    /// edit-and-restart procedure), on the same ports, with `extra` appended to its config.
    fn restart_onto(&mut self, env: &Env, domain: &str, extra: &str) -> Result<()> {
        self.process.terminate(WAIT);
        let edited = config(env, domain, self.ports()) + extra;
        self.process = GatewayProcess::start(&common::binary(), &edited, &[addr(self.base), addr(self.steady_base)])?;
        Ok(())
    }

    fn ports(&self) -> [u16; 4] {
        [self.base, self.steady_base, self.admin, self.dead]
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.base)
    }

    fn admin(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }

    fn switch(&self, body: Value) -> Result<(u16, Value)> {
        post(&self.admin("/admin/v1/routes/main/switchover"), body)
    }

    fn route(&self, name: &str) -> Result<Value> {
        let routes: Value =
            serde_json::from_str(&ureq::get(&self.admin("/admin/v1/routes")).call()?.body_mut().read_to_string()?)?;
        routes.as_array().and_then(|r| r.iter().find(|r| r["name"] == name).cloned()).context("route not listed")
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The gateway's config with route `main` on `main_domain`; `ports` are the main route's,
/// the steady route's, the admin API's, and the unreachable domain's.
fn config(env: &Env, main_domain: &str, ports: [u16; 4]) -> String {
    let [base, steady_base, admin, dead] = ports;
    format!(
        r#"streamingDomains:
  - name: source
    type: kafka
    kafkaCluster:
      name: source
      bootstrapServers: [{{id: plaintext, endpoint: "{source}"}}]
      nodeIdRanges: [{{name: source-brokers, start: 1, end: 1}}]
  - name: destination
    type: kafka
    kafkaCluster:
      name: destination
      bootstrapServers: [{{id: plaintext, endpoint: "{destination}"}}]
      nodeIdRanges: [{{name: destination-brokers, start: 2, end: 2}}]
  - name: nowhere
    type: kafka
    kafkaCluster:
      name: nowhere
      bootstrapServers: [{{id: plaintext, endpoint: "127.0.0.1:{dead}"}}]
      nodeIdRanges: [{{name: none, start: 1, end: 2}}]
routes:
  - name: main
    endpoint: "127.0.0.1:{base}"
    streamingDomain: {{name: {main_domain}, bootstrapServerId: plaintext}}
  - name: steady
    endpoint: "127.0.0.1:{steady_base}"
    streamingDomain: {{name: source, bootstrapServerId: plaintext}}
proxy:
  connectTimeoutMs: 2000
admin:
  address: 127.0.0.1:{admin}
  token: {TOKEN}
"#,
        source = env.source.bootstrap(),
        destination = env.destination.bootstrap(),
    )
}

fn post(url: &str, body: Value) -> Result<(u16, Value)> {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = agent
        .post(url)
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .header("Content-Type", "application/json")
        .send(body.to_string())?;
    let status = response.status().as_u16();
    Ok((status, serde_json::from_str(&response.body_mut().read_to_string()?)?))
}

/// A topic on both clusters, with `records` produced to the source through the gateway so the
/// route knows its clients use it.
fn topic_with_records(env: &Env, gateway: &Gateway, topic: &str, records: usize) -> Result<()> {
    java::create_topic(&env.source.bootstrap(), topic, 2, 1)?;
    java::create_topic(&env.destination.bootstrap(), topic, 2, 1)?;
    let lines: Vec<String> = (0..records).map(|i| format!("{topic}-{i}")).collect();
    kcat::produce(&gateway.bootstrap(), topic, &lines)
}

fn dry_run_reports_without_changing_anything(env: &Env) -> Result<()> {
    let gateway = Gateway::start(env)?;
    topic_with_records(env, &gateway, "dry", 5)?;
    let (status, report) = gateway.switch(json!({"to": "destination", "dryRun": true}))?;
    ensure!(status == 200 && report["outcome"] == "dry-run", "{status} {report}");
    ensure!(report["phases"][0]["name"] == "pre-flight", "{report}");
    let topic = report["topics"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["topic"] == "dry"))
        .context("topic `dry` not checked")?;
    ensure!(topic["recordLag"] == 5 && topic["destinationPartitions"] == 2, "{topic}");
    let route = gateway.route("main")?;
    ensure!(route["domain"] == "source" && route["fenced"] == false, "{route}");
    Ok(())
}

fn bad_requests_are_refused_before_fencing(env: &Env) -> Result<()> {
    let gateway = Gateway::start(env)?;
    topic_with_records(env, &gateway, "refusals", 1)?;
    for (body, expected, needle) in [
        (json!({"to": "atlantis"}), 400, "no streaming domain `atlantis`"),
        (json!({"to": "source"}), 409, "already points at `source`"),
        (json!({"to": "nowhere"}), 503, "unreachable"),
        (json!({"to": "destination", "topics": ["only-on-source"]}), 422, "`only-on-source` is missing"),
        (json!({"to": "destination", "bogus": 1}), 400, "unknown field"),
    ] {
        if body["topics"].is_array() {
            java::create_topic(&env.source.bootstrap(), "only-on-source", 1, 1)?;
        }
        let (status, answer) = gateway.switch(body.clone())?;
        ensure!(status == expected, "{body}: {status} {answer}");
        ensure!(answer["error"].as_str().is_some_and(|e| e.contains(needle)), "{body}: {answer}");
        let route = gateway.route("main")?;
        ensure!(route["domain"] == "source" && route["fenced"] == false, "after {body}: {route}");
    }
    let (status, _) = post(&gateway.admin("/admin/v1/routes/elsewhere/switchover"), json!({"to": "destination"}))?;
    ensure!(status == 404, "unknown route answered {status}");
    Ok(())
}

fn catch_up_timeout_aborts_and_unfences(env: &Env) -> Result<()> {
    let gateway = Gateway::start(env)?;
    topic_with_records(env, &gateway, "never-replicated", 3)?;
    let url = gateway.admin("/admin/v1/routes/main/switchover");
    let slow = std::thread::spawn(move || {
        post(
            &url,
            json!({"to": "destination", "catchUp": {"policy": "records", "maxLag": 0}, "catchUpTimeoutMs": 3000}),
        )
    });
    poll::try_poll_until(WAIT, || Ok((gateway.route("main")?["fenced"] == true).then_some(())))
        .context("the route was never fenced")?;
    let (status, answer) = gateway.switch(json!({"to": "destination"}))?;
    ensure!(
        status == 409 && answer["error"].as_str().is_some_and(|e| e.contains("already running")),
        "{status} {answer}"
    );
    let (status, report) = slow.join().expect("switchover thread")?;
    ensure!(status == 409 && report["outcome"] == "aborted", "{status} {report}");
    ensure!(report["message"].as_str().is_some_and(|m| m.contains("did not catch up")), "{report}");
    let route = gateway.route("main")?;
    ensure!(route["domain"] == "source" && route["fenced"] == false, "after the abort: {route}");
    kcat::produce(&gateway.bootstrap(), "never-replicated", &["after-abort".to_string()])
        .context("clients are stuck after an aborted switchover")
}

/// librdkafka (kcat) keeps producing while a fence in mode `error` answers its requests: it
/// retries them, nothing fails, and every record lands once the fence opens. The catch-up gate
/// can never pass (nothing replicates here), so the fence stays closed for the whole timeout and
/// the switchover aborts back to the source.
fn librdkafka_producer_rides_an_error_fence(env: &Env) -> Result<()> {
    let gateway = Gateway::start(env)?;
    let topic = "kcat-fenced";
    topic_with_records(env, &gateway, topic, 1)?;
    let lines: Vec<String> = (0..400).map(|i| format!("fenced-{i}")).collect();
    let producer = kcat::produce_paced(&gateway.bootstrap(), topic, lines.clone(), Duration::from_millis(10))?;
    std::thread::sleep(Duration::from_millis(800));
    let (status, report) = gateway.switch(json!({
        "to": "destination",
        "fence": "error",
        "catchUp": {"policy": "records", "maxLag": 0},
        "catchUpTimeoutMs": 1500,
    }))?;
    ensure!(status == 409 && report["outcome"] == "aborted", "{status} {report}");
    let output = producer.wait(WAIT)?;
    ensure!(
        output.status.success() && !output.stderr.contains("ERROR"),
        "kcat reported failures:
{}",
        output.describe()
    );
    let metrics = ureq::get(&gateway.admin("/metrics")).call()?.body_mut().read_to_string()?;
    let answered = r#"switchyard_fence_answers_total{route="main",api="Produce"}"#;
    ensure!(
        metrics.contains(answered),
        "the fence answered no Produce request:
{metrics}"
    );
    let mut on_source = kcat::consume(&env.source.bootstrap(), topic, lines.len() + 1, WAIT)?;
    on_source.sort();
    on_source.dedup();
    let missing: Vec<&String> = lines.iter().filter(|line| on_source.binary_search(line).is_err()).collect();
    ensure!(
        missing.is_empty(),
        "{} records missing on the source, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    Ok(())
}

fn live_cut_keeps_client_connections_and_cluster_id(env: &Env) -> Result<()> {
    let gateway = Gateway::start(env)?;
    topic_with_records(env, &gateway, "moving", 2)?;
    let cluster_id = |wire: &mut KafkaWire| -> Result<Option<String>> {
        Ok(wire.send(&MetadataRequest::default(), 12)?.cluster_id.map(|id| id.to_string()))
    };
    let mut before = KafkaWire::connect(addr(gateway.base), WAIT)?;
    let id_before = cluster_id(&mut before)?;
    let mut steady = KafkaWire::connect(addr(gateway.steady_base), WAIT)?;
    steady.send(&MetadataRequest::default(), 12)?;

    let (status, report) = gateway.switch(json!({"to": "destination"}))?;
    ensure!(status == 200 && report["outcome"] == "completed", "{status} {report}");
    let phases: Vec<&str> =
        report["phases"].as_array().into_iter().flatten().filter_map(|p| p["name"].as_str()).collect();
    ensure!(phases == ["pre-flight", "fence", "catch-up", "cut"], "phases {phases:?}");
    let metrics = ureq::get(&gateway.admin("/metrics")).call()?.body_mut().read_to_string()?;
    for needle in [
        r#"switchyard_switchovers_total{route="main",outcome="completed"} 1"#,
        r#"switchyard_switchover_phase_seconds{route="main",phase="fence"}"#,
        r#"switchyard_route_fenced{route="main"} 0"#,
    ] {
        ensure!(metrics.contains(needle), "metrics lack {needle}");
    }

    // The client's connection stays open and now reaches the destination.
    let id_on_kept = cluster_id(&mut before).context("a connection of the switched route was closed at the cut")?;
    ensure!(id_on_kept == id_before, "the cluster id a kept connection sees changed across the switchover");
    let metrics = common::scrape_metrics(&format!("127.0.0.1:{}", gateway.admin))?;
    let moved = common::metric_sum(&metrics, "switchyard_connections_moved_total", &[("route", "main")]);
    ensure!(moved >= 1.0, "no connection was moved to the destination:\n{}", gateway.process.log_tail());
    steady.send(&MetadataRequest::default(), 12).context("a connection of another route was disturbed")?;

    let mut after = KafkaWire::connect(addr(gateway.base), WAIT)?;
    ensure!(cluster_id(&mut after)? == id_before, "the cluster id clients see changed across the switchover");
    kcat::produce(&gateway.bootstrap(), "moving", &["after-the-cut".to_string()])?;
    let on_destination = kcat::consume(&env.destination.bootstrap(), "moving", 1, WAIT)?;
    ensure!(on_destination == ["after-the-cut"], "destination holds {on_destination:?}");
    Ok(())
}

/// Each cluster gives a topic its own id, and the destination's differ. Across a live cut the
/// gateway keeps showing clients the source's ids (franz-go fails a topic whose id changes):
/// in Metadata answers on a kept connection and on a new one, and in Fetch (v13, and v17 with
/// its leader endpoints) by id, whose requests it translates to the destination's ids and whose
/// answers, records and all, carry the source's ids again.
fn topic_ids_stay_those_of_the_source_across_the_cut(env: &Env) -> Result<()> {
    let gateway = Gateway::start(env)?;
    let topics = ["ids-a", "ids-b"];
    let on_source = topics_on_both_clusters(env, &gateway, &topics)?;
    let mut kept = KafkaWire::connect(addr(gateway.base), WAIT)?;
    ensure!(presented_ids(&mut kept, &topics)? == on_source, "before the cut clients must see the source's ids");

    let (status, report) = gateway.switch(json!({"to": "destination"}))?;
    ensure!(status == 200 && report["outcome"] == "completed", "{status} {report}");
    ensure!(
        presented_ids(&mut kept, &topics)? == on_source,
        "a kept connection was shown other topic ids after the cut"
    );
    let mut fresh = KafkaWire::connect(addr(gateway.base), WAIT)?;
    ensure!(
        presented_ids(&mut fresh, &topics)? == on_source,
        "a new connection was shown other topic ids after the cut"
    );
    for topic in topics {
        kcat::produce(&gateway.bootstrap(), topic, &[format!("{topic}-after-the-cut")])?;
    }
    fetch_by_presented_ids(&mut kept, 13, &on_source)?;
    fetch_by_presented_ids(&mut fresh, 17, &on_source)
}

/// Restarted onto the destination (Confluent's edit-and-restart procedure) with a
/// `state.directory`, the gateway shows clients the topic ids and cluster id they were shown
/// before, and serves Fetch by those ids from the destination: a client that stays up across
/// the restart (franz-go fails a topic whose id changes) sees no change.
fn a_restart_onto_the_destination_keeps_the_ids_clients_were_shown(env: &Env) -> Result<()> {
    let state = tempfile::tempdir()?;
    let remember = state_directory(&state);
    let mut gateway = Gateway::start_with(env, &remember)?;
    let topics = ["restart-ids"];
    let on_source = topics_on_both_clusters(env, &gateway, &topics)?;
    let mut before = KafkaWire::connect(addr(gateway.base), WAIT)?;
    ensure!(presented_ids(&mut before, &topics)? == on_source, "before the restart clients must see the source's ids");
    let cluster_id = |wire: &mut KafkaWire| -> Result<Option<String>> {
        Ok(wire.send(&MetadataRequest::default().with_topics(Some(vec![])), 12)?.cluster_id.map(|id| id.to_string()))
    };
    let shown_cluster_id = cluster_id(&mut before)?;
    drop(before);
    poll::try_poll_until(WAIT, || Ok(std::fs::read_dir(state.path())?.next().is_some().then_some(())))
        .context("the gateway never wrote the route's memory")?;
    gateway.restart_onto(env, "destination", &remember)?;
    let mut after = KafkaWire::connect(addr(gateway.base), WAIT)?;
    ensure!(
        presented_ids(&mut after, &topics)? == on_source,
        "after the restart clients were shown the destination's ids"
    );
    ensure!(cluster_id(&mut after)? == shown_cluster_id, "after the restart clients were shown another cluster id");
    kcat::produce(&gateway.bootstrap(), topics[0], &["after-the-restart".to_string()])?;
    fetch_by_presented_ids(&mut after, 13, &on_source)
}

/// The config section that makes the gateway keep routes' memory in `dir`.
fn state_directory(dir: &tempfile::TempDir) -> String {
    format!("state:\n  directory: \"{}\"\n", dir.path().display())
}

/// Creates `topics` with records on both clusters (each gives them ids of its own) and
/// returns the source's ids.
fn topics_on_both_clusters(env: &Env, gateway: &Gateway, topics: &[&str]) -> Result<Vec<Uuid>> {
    for topic in topics {
        topic_with_records(env, gateway, topic, 3)?;
    }
    let on_source = presented_ids(&mut KafkaWire::connect(env.source.bootstrap().parse()?, WAIT)?, topics)?;
    let on_destination = presented_ids(&mut KafkaWire::connect(env.destination.bootstrap().parse()?, WAIT)?, topics)?;
    ensure!(on_source != on_destination, "both clusters gave the topics the same ids");
    Ok(on_source)
}

/// The ids a Metadata v12 answer on `wire` gives `topics`.
fn presented_ids(wire: &mut KafkaWire, topics: &[&str]) -> Result<Vec<Uuid>> {
    let wanted =
        topics.iter().map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(t.to_string().into()))));
    let answer = wire.send(&MetadataRequest::default().with_topics(Some(wanted.collect())), 12)?;
    topics
        .iter()
        .map(|t| {
            let found = answer.topics.iter().find(|a| a.name.as_ref().is_some_and(|n| n.as_str() == *t));
            found.map(|a| a.topic_id).with_context(|| format!("`{t}` not in the Metadata answer"))
        })
        .collect()
}

/// A Fetch (`version`, by topic id) of partitions 0 and 1 of topics `ids` is answered under
/// those ids, without errors, with records.
fn fetch_by_presented_ids(wire: &mut KafkaWire, version: i16, ids: &[Uuid]) -> Result<()> {
    let partitions = || {
        (0..2)
            .map(|p| FetchPartition::default().with_partition(p).with_partition_max_bytes(1 << 20))
            .collect::<Vec<_>>()
    };
    let wanted = ids.iter().map(|id| FetchTopic::default().with_topic_id(*id).with_partitions(partitions()));
    let fetch = FetchRequest::default().with_max_wait_ms(100).with_max_bytes(1 << 20).with_topics(wanted.collect());
    let answer = wire.send(&fetch, version)?;
    let answered: Vec<Uuid> = answer.responses.iter().map(|t| t.topic_id).collect();
    ensure!(answered == ids, "Fetch v{version} answered for topic ids {answered:?}, not {ids:?}");
    for topic in &answer.responses {
        let errors: Vec<i16> = topic.partitions.iter().map(|p| p.error_code).collect();
        ensure!(errors == [0, 0], "Fetch v{version}: errors {errors:?} for a topic");
        let records: usize = topic.partitions.iter().map(|p| p.records.as_ref().map_or(0, |r| r.len())).sum();
        ensure!(records > 0, "Fetch v{version}: no records for a topic the cluster holds records of");
    }
    Ok(())
}

/// A stock librdkafka producer (kcat, no `-E`, which used to exit with "all broker connections
/// are down" when the cut closed them all at once) rides a live switchover: its connections are
/// kept, it reports no error, and every record lands on one cluster or the other. The clusters'
/// node ids differ, so its broker connection is re-dialled to the destination's bootstrap and
/// steered by the broker's own NOT_LEADER_OR_FOLLOWER.
fn stock_kcat_producer_keeps_producing_across_the_cut(env: &Env) -> Result<()> {
    let gateway = Gateway::start(env)?;
    let topic = "kcat-kept";
    topic_with_records(env, &gateway, topic, 1)?;
    let lines: Vec<String> = (0..300).map(|i| format!("kept-{i}")).collect();
    let producer = kcat::produce_paced(&gateway.bootstrap(), topic, lines.clone(), Duration::from_millis(10))?;
    std::thread::sleep(Duration::from_millis(800));
    let (status, report) = gateway.switch(json!({"to": "destination"}))?;
    ensure!(status == 200 && report["outcome"] == "completed", "{status} {report}");
    let output = producer.wait(WAIT)?;
    ensure!(
        output.status.success() && !output.stderr.contains("ERROR"),
        "kcat reported failures:\n{}",
        output.describe()
    );
    let scrape = common::scrape_metrics(&format!("127.0.0.1:{}", gateway.admin))?;
    let moved = common::metric_sum(&scrape, "switchyard_connections_moved_total", &[("route", "main")]);
    ensure!(moved >= 1.0, "no connection was moved:\n{}", gateway.process.log_tail());
    let mut landed = kcat::consume(&env.source.bootstrap(), topic, 10 * lines.len(), WAIT)?;
    landed.extend(kcat::consume(&env.destination.bootstrap(), topic, 10 * lines.len(), WAIT)?);
    landed.sort();
    landed.dedup();
    let missing: Vec<&String> = lines.iter().filter(|line| landed.binary_search(line).is_err()).collect();
    ensure!(
        missing.is_empty(),
        "{} records missing on both clusters, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    Ok(())
}

/// A stock librdkafka consumer (kcat, no group, no `-E`) reading through a live switchover keeps
/// its connections and goes on reading on the destination. The topic holds the same records at
/// the same offsets on both clusters, as offset-preserving replication leaves it.
fn stock_kcat_consumer_keeps_consuming_across_the_cut(env: &Env) -> Result<()> {
    let gateway = Gateway::start(env)?;
    let topic = "kcat-consumed";
    let before: Vec<String> = (0..40).map(|i| format!("before-{i}")).collect();
    for cluster in [&env.source, &env.destination] {
        java::create_topic(&cluster.bootstrap(), topic, 1, 1)?;
        kcat::produce(&cluster.bootstrap(), topic, &before)?;
    }
    let after: Vec<String> = (0..20).map(|i| format!("after-{i}")).collect();
    let consumer = std::thread::spawn({
        let (bootstrap, wanted) = (gateway.bootstrap(), before.len() + after.len());
        move || kcat::consume_until(&bootstrap, topic, wanted, WAIT)
    });
    // The consumer has read what is there and waits on its fetch, through the gateway.
    poll::try_poll_until(WAIT, || {
        let scrape = common::scrape_metrics(&format!("127.0.0.1:{}", gateway.admin))?;
        let fetches = common::metric_sum(&scrape, "switchyard_requests_total", &[("route", "main"), ("api", "Fetch")]);
        Ok((fetches >= 3.0).then_some(()))
    })?;
    let (status, report) = gateway.switch(json!({"to": "destination"}))?;
    ensure!(status == 200 && report["outcome"] == "completed", "{status} {report}");
    kcat::produce(&gateway.bootstrap(), topic, &after)?;
    let read = consumer.join().expect("the consumer thread")?;
    let expected: Vec<String> = before.iter().chain(&after).cloned().collect();
    ensure!(read == expected, "the consumer read {} records: {:?}", read.len(), &read[read.len().saturating_sub(5)..]);
    Ok(())
}

/// Records a client family sends across the cut (`seq-1` … `seq-CUT_RECORDS`), at `CUT_RATE` per
/// second: 6 s of traffic, cut after the first `CUT_RECORDS / 4` are acknowledged.
const CUT_RECORDS: u64 = 600;
const CUT_RATE: u32 = 100;

fn unix_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A completed live switchover of route `main` to the destination; returns when it returned,
/// as Unix milliseconds.
fn switch_live(gateway: &Gateway) -> Result<u64> {
    let (status, report) = gateway.switch(json!({"to": "destination"}))?;
    ensure!(status == 200 && report["outcome"] == "completed", "{status} {report}");
    Ok(unix_millis())
}

/// The `seq-<n>` records of `topic` on `cluster`, as numbers.
fn numbered_on(cluster: &KafkaCluster, topic: &str) -> Result<BTreeSet<u64>> {
    let values = kcat::consume(&cluster.bootstrap(), topic, 10 * CUT_RECORDS as usize, WAIT)?;
    Ok(values.iter().filter_map(|value| value.strip_prefix("seq-")?.parse().ok()).collect())
}

/// What a producer and a consumer group that ran across the cut must show: no error reached the
/// producer, it got every record acknowledged, each of them is on the source or the destination
/// (without MirrorMaker what was written before the cut stays on the source), and the group
/// received every record the destination holds, so it went on reading after the cut. Prints the
/// longest pauses each saw.
fn ensure_both_survived(
    env: &Env,
    topic: &str,
    (produced, consumed): (&ProducerReport, &ConsumerReport),
    client_log: &str,
) -> Result<()> {
    println!(
        "{topic}: {} records acknowledged, longest gap between acks {} ms; the group read {} ({} distinct), longest gap between polls with records {} ms",
        produced.acked.len(),
        produced.max_ack_gap_ms,
        consumed.values.len(),
        consumed.distinct,
        consumed.max_poll_gap_ms
    );
    let tail = || switchyard_testkit::process::tail(client_log, 60);
    let errors = &produced.errors;
    ensure!(
        errors.is_empty(),
        "{} errors reached the application, e.g. {:?}\n{}",
        errors.len(),
        &errors[..errors.len().min(5)],
        tail()
    );
    let missing = produced.missing(CUT_RECORDS);
    ensure!(
        missing.is_empty(),
        "{} records never acknowledged, e.g. {:?}\n{}",
        missing.len(),
        &missing[..missing.len().min(5)],
        tail()
    );
    let on_destination = numbered_on(&env.destination, topic)?;
    let mut landed = numbered_on(&env.source, topic)?;
    landed.extend(&on_destination);
    let lost: Vec<&u64> = produced.acked.difference(&landed).collect();
    ensure!(
        lost.is_empty(),
        "{} acknowledged records on neither cluster, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    ensure!(!on_destination.is_empty(), "nothing was produced to the destination after the cut");
    let read: BTreeSet<u64> = consumed.values.iter().copied().collect();
    let unread: Vec<&u64> = on_destination.difference(&read).collect();
    ensure!(
        unread.is_empty(),
        "the group did not read {} of the {} records produced after the cut, e.g. {:?}\n{}",
        unread.len(),
        on_destination.len(),
        &unread[..unread.len().min(5)],
        tail()
    );
    Ok(())
}

/// franz-go (its own protocol implementation, neither librdkafka nor Java): an idempotent
/// producer and a consumer group in one application ride a live switchover made as in
/// production: MirrorMaker 2 copies the topic (same offsets, as it copies from the first
/// record) and the group's offsets, the cut waits for replication (`maxLag: 0`) and carries the
/// group (`groupOffsets`). The destination's topic has another topic id, which franz-go would
/// take for a deleted and recreated topic and fail for good (every later send and poll
/// `UNKNOWN_TOPIC_ID`): the gateway keeps showing it the source's. The one thing that reaches
/// the application is franz-go's notice that its group membership was lost (the destination's
/// coordinator never saw the member and answers `UNKNOWN_MEMBER_ID`), after which it joins
/// again: what a Java application learns from `onPartitionsLost`. It must not come more than
/// once; the group must read every record on the destination.
fn franz_go_producer_and_group_keep_going_across_the_cut(env: &Env) -> Result<()> {
    let gateway = Gateway::start(env)?;
    let (topic, group) = ("franz-kept", "franz-kept-group");
    let options = MirrorOptions { sync_group_offsets: false, ..MirrorOptions::default().topics(topic).groups(group) };
    let idle = Duration::from_secs(5);
    let Some((clients, mirror)) = franz_go_on_a_mirrored_topic(env, &gateway, (topic, group), options, idle)? else {
        println!("SKIPPED franz_go_producer_and_group_keep_going_across_the_cut: `go` is not installed");
        return Ok(());
    };
    let (status, report) = gateway.switch(json!({
        "to": "destination",
        "catchUp": {"policy": "records", "maxLag": 0},
        "catchUpTimeoutMs": 20000,
        "groupOffsets": {"checkpointsTopic": format!("{SOURCE_ALIAS}.checkpoints.internal")},
    }))?;
    ensure!(status == 200 && report["outcome"] == "completed", "{status} {report}");
    ensure_franz_go_survived(env, topic, (clients, mirror), Some(1))
}

/// franz-go across Confluent's edit-and-restart procedure, with `state.directory`: the gateway
/// stops while franz-go's producer and group run, and starts again with the route on the
/// destination, which MirrorMaker 2 fills. franz-go reconnects and never sees the destination's
/// topic id (it would take it for a deleted and recreated topic and fail every later send and
/// poll with `UNKNOWN_TOPIC_ID`): nothing reaches the application but its notice of the lost
/// group membership, nothing acknowledged is lost, and the group reads every record the
/// destination holds.
fn franz_go_producer_and_group_keep_going_across_a_restart(env: &Env) -> Result<()> {
    let state = tempfile::tempdir()?;
    let remember = state_directory(&state);
    let mut gateway = Gateway::start_with(env, &remember)?;
    let (topic, group) = ("franz-restarted", "franz-restarted-group");
    let options = MirrorOptions::default().topics(topic).groups(group);
    // The group joins the destination afresh after the restart and may re-read from the start
    // (MirrorMaker's offset sync lags): on a loaded machine that outlasts a short idle time.
    let idle = Duration::from_secs(30);
    let Some((clients, mirror)) = franz_go_on_a_mirrored_topic(env, &gateway, (topic, group), options, idle)? else {
        println!("SKIPPED franz_go_producer_and_group_keep_going_across_a_restart: `go` is not installed");
        return Ok(());
    };
    gateway.restart_onto(env, "destination", &remember)?;
    ensure_franz_go_survived(env, topic, (clients, mirror), None)
}

/// Creates `topic` (2 partitions) on the source, has MirrorMaker 2 copy it to the destination,
/// and starts franz-go's producer and `group` on it through `gateway` (the group stops once the
/// producer is done and nothing arrived for `idle`), returning once both are under way; `None`
/// when `go` is not installed.
fn franz_go_on_a_mirrored_topic(
    env: &Env,
    gateway: &Gateway,
    (topic, group): (&str, &str),
    options: MirrorOptions,
    idle: Duration,
) -> Result<Option<(FranzNumbered, MirrorMaker)>> {
    java::create_topic(&env.source.bootstrap(), topic, 2, 1)?;
    let mut mirror = MirrorMaker::start(&env.source.bootstrap(), &env.destination.bootstrap(), options)?;
    mirror.wait_for_topic(topic, 2, WAIT)?;
    let Some(mut clients) = FranzNumbered::start(&gateway.bootstrap(), topic, group, CUT_RECORDS, CUT_RATE, idle)?
    else {
        return Ok(None);
    };
    clients.wait_progress(CUT_RECORDS as usize / 4, CUT_RECORDS as usize / 6, WAIT)?;
    Ok(Some((clients, mirror)))
}

/// franz-go ran to the end: the one thing that may reach the application is its notice that its
/// group membership was lost (the destination's coordinator never saw the member), at most
/// `max_notices` times (`None`: while the gateway restarts, every heartbeat fails), after which
/// it joins again; otherwise as [`ensure_both_survived`].
fn ensure_franz_go_survived(
    env: &Env,
    topic: &str,
    (clients, mirror): (FranzNumbered, MirrorMaker),
    max_notices: Option<usize>,
) -> Result<()> {
    let (mut produced, consumed, log) = clients.wait(Duration::from_secs(120))?;
    mirror.stop()?;
    let membership_lost = |e: &String| e.contains("unable to join group session");
    let notices = produced.errors.iter().filter(|e| membership_lost(e)).count();
    let first: Vec<&String> = produced.errors.iter().filter(|e| membership_lost(e)).take(3).collect();
    println!("franz-go reported its lost group membership {notices} time(s), e.g. {first:?}");
    ensure!(
        max_notices.is_none_or(|max| notices <= max),
        "franz-go reported its lost group membership {notices} times: {:?}",
        produced.errors
    );
    produced.errors.retain(|e| !membership_lost(e));
    ensure_both_survived(env, topic, (&produced, &consumed), &log)
}

/// The oldest Java client supported, kafka-clients 2.8: a producer with `acks=all` and that
/// release's default of no idempotence, and a consumer group, ride a live switchover.
fn java_2_producer_and_group_keep_going_across_the_cut(env: &Env) -> Result<()> {
    let release_default = [("enable.idempotence", "false")];
    java_producer_and_group_keep_going_across_the_cut(env, "java-2-kept", JAVA_CLIENT_2, &release_default, &[])
        .map(drop)
}

/// The newest Java client, kafka-clients 4.4: an idempotent producer, and a consumer group on
/// the consumer group protocol of KIP-848 (`group.protocol=consumer`: ConsumerGroupHeartbeat,
/// assignments named by topic id, which the destination gives ids of its own), ride a live
/// switchover.
fn java_4_4_producer_and_consumer_protocol_group_keep_going_across_the_cut(env: &Env) -> Result<()> {
    let consumer_protocol = [("group.protocol", "consumer")];
    let gateway = java_producer_and_group_keep_going_across_the_cut(
        env,
        "java-4-4-kept",
        JAVA_CLIENT_4,
        &[],
        &consumer_protocol,
    )?;
    let scrape = common::scrape_metrics(&format!("127.0.0.1:{}", gateway.admin))?;
    let heartbeats = common::metric_sum(
        &scrape,
        "switchyard_requests_total",
        &[("route", "main"), ("api", "ConsumerGroupHeartbeat")],
    );
    ensure!(heartbeats > 0.0, "the group did not use the consumer group protocol");
    Ok(())
}

/// A Java producer and consumer group of kafka-clients `client` (with settings
/// `producer_props` and `consumer_props`) on `topic` ride a live switchover; returns the
/// gateway, still running.
fn java_producer_and_group_keep_going_across_the_cut(
    env: &Env,
    topic: &str,
    client: &str,
    producer_props: &[(&str, &str)],
    consumer_props: &[(&str, &str)],
) -> Result<Gateway> {
    let gateway = Gateway::start(env)?;
    topic_with_records(env, &gateway, topic, 1)?;
    let bootstrap = gateway.bootstrap();
    let mut producer = NumberedProducer::sending(&bootstrap, topic, CUT_RECORDS, CUT_RATE)
        .client(Some(client))
        .props(producer_props)
        .start()?;
    let group = format!("{topic}-group");
    let idle = Duration::from_secs(60);
    let mut consumer = NumberedConsumer::reading(&bootstrap, topic, &group, CUT_RECORDS, idle)
        .client(Some(client))
        .props(consumer_props)
        .start()?;
    producer.wait_acked(CUT_RECORDS as usize / 4, Duration::from_secs(60))?;
    consumer.wait_seen(CUT_RECORDS as usize / 6, Duration::from_secs(60))?;
    switch_live(&gateway)?;
    let (produced, log) = producer.wait_with_log(Duration::from_secs(60))?;
    // The group stops at the source's records it had not read by the cut: wait for it to read
    // everything written after the cut, which is all there is left to read.
    let on_destination = numbered_on(&env.destination, topic)?;
    // A timeout here is reported by `ensure_both_survived`, with the records the group missed.
    let _ = poll::poll_until(WAIT, || {
        let read: BTreeSet<u64> = consumer.progress().values.into_iter().collect();
        on_destination.is_subset(&read).then_some(())
    });
    consumer.stop();
    let consumed = consumer.wait(WAIT)?;
    ensure_both_survived(env, topic, (&produced, &consumed), &log)?;
    Ok(gateway)
}

/// A Java 4.x consumer without a group (`assign()` of every partition, `seekToBeginning`, no
/// commits, `auto.offset.reset=none` so a position the destination lacks would be an error)
/// reads on across a live switchover: every record once, in order, at consecutive offsets. The
/// topic holds the same records at the same offsets on both clusters, as offset-preserving
/// replication leaves it.
fn java_consumer_without_a_group_reads_on_across_the_cut(env: &Env) -> Result<()> {
    let gateway = Gateway::start(env)?;
    let topic = "java-assigned";
    let before: Vec<String> = (1..=40).map(|n| format!("seq-{n}")).collect();
    for cluster in [&env.source, &env.destination] {
        java::create_topic(&cluster.bootstrap(), topic, 1, 1)?;
        kcat::produce(&cluster.bootstrap(), topic, &before)?;
    }
    let after: Vec<String> = (41..=60).map(|n| format!("seq-{n}")).collect();
    let reset = [("auto.offset.reset", "none")];
    let mut consumer =
        NumberedConsumer::reading_without_group(&gateway.bootstrap(), topic, 60, WAIT).props(&reset).start()?;
    consumer.wait_seen(before.len(), Duration::from_secs(60))?;
    let switched_at = switch_live(&gateway)?;
    kcat::produce(&gateway.bootstrap(), topic, &after)?;
    let produced_at = unix_millis();
    let consumed = consumer.wait(WAIT)?;
    let offsets: Vec<i64> = consumed.records.iter().map(|r| r.offset).collect();
    ensure!(
        consumed.values == (1..=60).collect::<Vec<u64>>() && offsets == (0..60).collect::<Vec<i64>>(),
        "read {:?} at offsets {offsets:?}",
        consumed.values
    );
    let first_after = consumed.records.iter().find(|r| r.seq == Some(41)).map_or(0, |r| r.epoch_millis);
    println!(
        "{topic}: the switchover returned, kcat wrote the next records {} ms later, the consumer got the first {} ms after the switchover",
        produced_at - switched_at,
        first_after.saturating_sub(switched_at)
    );
    Ok(())
}

/// The brokers' own 4.1 client (transaction version 2), on a destination that never hosted a
/// transaction: pre-flight starts its coordinator, and the gateway answers for the transaction
/// the destination never saw (issue 15).
fn java_transactional_producer_4(env: &Env) -> Result<()> {
    java_transactional_producer_keeps_committing_across_the_cut(env, TransactionalRun::default())
}

/// A consume-transform-produce application (exactly once): each transaction of the 4.1
/// client also commits a consumer group's offset (`sendOffsetsToTransaction`), which the
/// destination never saw begin either; its offsets go on being committed there.
fn java_transactional_offsets_4(env: &Env) -> Result<()> {
    java_transactional_producer_keeps_committing_across_the_cut(
        env,
        TransactionalRun { offsets: true, ..Default::default() },
    )
}

/// The brokers' own 4.1 client across the edit-and-restart procedure with `state.directory`:
/// the restarted gateway remembers that the route moved, and answers for the transaction the
/// destination never saw as after a live cut.
fn java_transactional_producer_across_a_restart(env: &Env) -> Result<()> {
    java_transactional_producer_keeps_committing_across_the_cut(
        env,
        TransactionalRun { by_restart: true, ..Default::default() },
    )
}

/// kafka-clients 3.9 (transaction version 1 requests), on a destination whose transaction
/// coordinator is up: it re-initialises by its own epoch bump, and its abort of the
/// transaction the destination never saw is answered as done (issue 15).
fn java_transactional_producer_3(env: &Env) -> Result<()> {
    java_transactional_producer_keeps_committing_across_the_cut(env, TransactionalRun::client_3(false))
}

/// The same with kafka-clients 3.9, which adds the group to its transaction (AddOffsetsToTxn)
/// before committing its offsets.
fn java_transactional_offsets_3(env: &Env) -> Result<()> {
    java_transactional_producer_keeps_committing_across_the_cut(env, TransactionalRun::client_3(true))
}

/// The 4.1 client on a pair of clusters formatted with transaction version 1 (as clusters
/// upgraded from Kafka 3.x keep running): it then sends AddPartitionsToTxn and AddOffsetsToTxn,
/// and Produce v11, which the destination refuses for the transaction it never saw with
/// `INVALID_PRODUCER_ID_MAPPING`. No answer of the gateway's makes this client take a new
/// producer id on its own (docs/switchover.md, "Transaction version 1"); the 4.x client classes
/// the error as application-recoverable, and the application starts a new producer, as
/// Kafka Streams and Spring Kafka do (issue 15). Producer, then processor (offsets): every
/// record is committed exactly once, and the application never exits.
fn java_transactional_on_transaction_version_1(_env: &Env) -> Result<()> {
    let spec = ClusterSpec::single().feature("transaction.version", 1);
    let source = KafkaCluster::start(spec.clone())?;
    let destination = KafkaCluster::start(ClusterSpec { first_node_id: 2, ..spec })?;
    let tv1 = Env { source, destination };
    let restarting = TransactionalRun { restart_recoverable: true, ..Default::default() };
    java_transactional_producer_keeps_committing_across_the_cut(&tv1, restarting)?;
    java_transactional_producer_keeps_committing_across_the_cut(&tv1, TransactionalRun { offsets: true, ..restarting })
}

/// How [`java_transactional_producer_keeps_committing_across_the_cut`] runs its producer.
#[derive(Clone, Copy, Default)]
struct TransactionalRun {
    /// The kafka-clients release (`None`: the brokers' own).
    client: Option<&'static str>,
    /// The destination's transaction coordinator is up before the cut (it has hosted
    /// transactions before).
    warm_destination: bool,
    /// Each transaction commits group `<topic>-group`'s offset too, which must end on the
    /// destination at the last record.
    offsets: bool,
    /// The application starts a new producer after an error the 4.x client classes as
    /// application-recoverable (`txn.restart.recoverable`, see `NumberedProducer.java`).
    restart_recoverable: bool,
    /// Move by the edit-and-restart procedure (with `state.directory`), not a live switchover.
    by_restart: bool,
}

impl TransactionalRun {
    /// kafka-clients 3.9, whose destination's coordinator is up.
    fn client_3(offsets: bool) -> Self {
        Self { client: Some(JAVA_CLIENT_3), warm_destination: true, offsets, ..Self::default() }
    }
}

/// A Java transactional producer written as applications are (`initTransactions` once, then
/// begin / send / commit, and on an abortable error abort and resend the transaction) rides a
/// live switchover: it never hits a fatal error, and every record of a committed transaction
/// is visible to `read_committed` readers on one cluster or the other. The destination's
/// transaction coordinator never saw its transactional id.
fn java_transactional_producer_keeps_committing_across_the_cut(env: &Env, run: TransactionalRun) -> Result<()> {
    let TransactionalRun { client, warm_destination, offsets, restart_recoverable, by_restart } = run;
    let state = tempfile::tempdir()?;
    let remember = if by_restart { state_directory(&state) } else { String::new() };
    let mut gateway = Gateway::start_with(env, &remember)?;
    let name = format!(
        "txn-{}{}{}",
        client.unwrap_or("broker").replace('.', "-"),
        if offsets { "-offsets" } else { "" },
        if by_restart { "-restarted" } else { "" }
    );
    let group = format!("{name}-group");
    topic_with_records(env, &gateway, &name, 1)?;
    // 12 s of records: the cut (pre-flight included) comes well before the last.
    let (records, rate) = (1200, 100);
    let timeouts = [("transaction.timeout.ms", "30000"), ("max.block.ms", "30000")];
    let mut start = NumberedProducer::sending(&gateway.bootstrap(), &name, records, rate)
        .client(client)
        .transactional(&name, 10)
        .props(&timeouts);
    if offsets {
        start = start.offsets_group(&group);
    }
    if restart_recoverable {
        start = start.restart_when_recoverable();
    }
    let mut producer = start.start()?;
    producer.wait_acked(100, Duration::from_secs(90))?;
    if warm_destination {
        wire::start_transaction_coordinator(env.destination.bootstrap().parse()?, WAIT)?;
    }
    if by_restart {
        gateway.restart_onto(env, "destination", &remember)?;
    } else {
        let (status, report) = gateway.switch(json!({"to": "destination"}))?;
        ensure!(status == 200 && report["outcome"] == "completed", "{status} {report}");
    }
    let at_cut = producer.progress();
    ensure!(!at_cut.done && at_cut.fatal.is_none(), "the producer had stopped before the cut: {:?}", at_cut.fatal);
    let (produced, client_log) = producer.wait_with_log(Duration::from_secs(180))?;
    println!(
        "{name}: {} records committed, {} transactions aborted and resent, longest gap between commits {} ms, errors: {:?}",
        produced.acked.len(),
        produced.aborted,
        produced.max_ack_gap_ms,
        produced.errors
    );
    let tail = || switchyard_testkit::process::tail(&client_log, 60);
    ensure!(
        produced.fatal.is_none(),
        "the producer gave up: {:?}\n{}\ngateway log:\n{}",
        produced.fatal,
        tail(),
        gateway.process.log_tail()
    );
    let missing = produced.missing(records);
    ensure!(
        missing.is_empty(),
        "{} records never committed, e.g. {:?}\n{}",
        missing.len(),
        &missing[..missing.len().min(5)],
        tail()
    );

    let read_committed = [("isolation.level".to_owned(), "read_committed".to_owned())];
    let mut committed = std::collections::BTreeMap::<u64, usize>::new();
    let mut on_destination = 0;
    for cluster in [&env.source, &env.destination] {
        let landed = kcat::consume_with(&cluster.bootstrap(), &name, 10 * records as usize, WAIT, &read_committed)?;
        for seq in landed.iter().filter_map(|value| value.strip_prefix("seq-")?.parse::<u64>().ok()) {
            *committed.entry(seq).or_default() += 1;
            on_destination += usize::from(std::ptr::eq(cluster, &env.destination));
        }
    }
    ensure!(on_destination > 0, "no transaction committed on the destination");
    let not_once: Vec<(u64, usize)> =
        produced.acked.iter().map(|n| (*n, committed.get(n).copied().unwrap_or(0))).filter(|(_, c)| *c != 1).collect();
    ensure!(
        not_once.is_empty(),
        "{} committed records not visible exactly once to read_committed readers of both clusters, e.g. (record, times) {:?}",
        not_once.len(),
        &not_once[..not_once.len().min(5)]
    );
    if offsets {
        let on_destination = mirrormaker::committed_offsets(&env.destination.bootstrap(), &group, &name)?;
        ensure!(on_destination == [(0, records as i64)], "the destination holds {group}'s offsets {on_destination:?}");
    }
    Ok(())
}

fn sighup_applies_an_edited_route_live(env: &Env) -> Result<()> {
    let gateway = Gateway::start(env)?;
    // The route's clients use this topic, which exists on both sides: pre-flight checks it only.
    topic_with_records(env, &gateway, "reloaded", 1)?;
    let mut steady = KafkaWire::connect(addr(gateway.steady_base), WAIT)?;
    steady.send(&MetadataRequest::default(), 12)?;
    let edited = config(env, "destination", gateway.ports());
    std::fs::write(gateway.process.config_path(), edited)?;
    let status = std::process::Command::new("kill").args(["-HUP", &gateway.process.pid().to_string()]).status()?;
    ensure!(status.success(), "kill -HUP failed");
    poll::try_poll_until(WAIT, || Ok((gateway.route("main")?["domain"] == "destination").then_some(())))
        .with_context(|| format!("route `main` was not switched by SIGHUP:\n{}", gateway.process.log_tail()))?;
    ensure!(gateway.route("steady")?["domain"] == "source", "the unchanged route moved");
    steady.send(&MetadataRequest::default(), 12).context("the unchanged route's connection was disturbed")?;
    ensure!(gateway.process.log_contents().contains("config reloaded"), "no reload log line");
    Ok(())
}

/// With `reload.watch`, saving the file is enough: the route moves to the destination, and
/// editing it back moves it back (a reload compares with where the route points now, not with
/// the file the gateway started from).
fn watched_file_edits_apply_live_both_ways(env: &Env) -> Result<()> {
    let gateway = Gateway::start_with(env, WATCH)?;
    topic_with_records(env, &gateway, "watched", 1)?;
    for domain in ["destination", "source"] {
        let edited = config(env, domain, gateway.ports()) + WATCH;
        // Replaced by rename, as editors do, so the watch never reads a half-written file.
        let next = gateway.process.config_path().with_extension("next");
        std::fs::write(&next, edited)?;
        std::fs::rename(&next, gateway.process.config_path())?;
        poll::try_poll_until(WAIT, || Ok((gateway.route("main")?["domain"] == domain).then_some(())))
            .with_context(|| format!("the edit to `{domain}` was not applied:\n{}", gateway.process.log_tail()))?;
    }
    let log = gateway.process.log_contents();
    ensure!(log.matches("config file changed: reloading").count() == 2, "expected two reloads:\n{log}");
    kcat::produce(&gateway.bootstrap(), "watched", &["back-on-source".to_string()])?;
    Ok(())
}

fn cli_dry_run_prints_the_report(env: &Env) -> Result<()> {
    let gateway = Gateway::start(env)?;
    topic_with_records(env, &gateway, "cli-dry", 1)?;
    let output = std::process::Command::new(common::binary())
        .args(["switchover", "--route", "main", "--to", "destination", "--dry-run", "--fence", "error"])
        .args(["--admin", &gateway.admin("")])
        .env("GATEWAY_ADMIN_TOKEN", TOKEN)
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    ensure!(output.status.success(), "exit {:?}: {text}{}", output.status, String::from_utf8_lossy(&output.stderr));
    ensure!(text.contains("dry-run") && text.contains("pre-flight") && text.contains("cli-dry"), "printed:\n{text}");
    let without_token = std::process::Command::new(common::binary())
        .args(["switchover", "--route", "main", "--to", "destination"])
        .env_remove("GATEWAY_ADMIN_TOKEN")
        .output()?;
    ensure!(!without_token.status.success(), "a switchover without a token succeeded");
    ensure!(String::from_utf8_lossy(&without_token.stderr).contains("GATEWAY_ADMIN_TOKEN"), "no hint about the token");
    Ok(())
}

/// A consumer group that read everything on the source, through the gateway, resumes on the
/// destination after a switchover with `groupOffsets` without re-reading a record: MM2's offset
/// sync for a partition's last record is always kept, so a group at the end of a partition is
/// translated exactly (N = 0). MM2 runs without its own offset sync here, so the offsets on the
/// destination can only come from the gateway's commit.
fn group_resumes_on_the_destination_where_it_stopped(env: &Env) -> Result<()> {
    let report = carry_a_group(env, ("group-moving", "moving-group"), false)?;
    let by = translated_by(&report);
    ensure!(by == ["records", "records"], "translations not found by the records: {report}");
    Ok(())
}

/// A record written to the destination by someone else, after the copies: the records of that
/// partition no longer line up, and its translation is MirrorMaker 2's checkpoint.
fn group_offsets_fall_back_to_checkpoints(env: &Env) -> Result<()> {
    let report = carry_a_group(env, ("group-fallback", "fallback-group"), true)?;
    let mut by = translated_by(&report);
    by.sort();
    ensure!(by == ["checkpoint", "records"], "expected one partition from a checkpoint: {report}");
    Ok(())
}

fn translated_by(report: &Value) -> Vec<String> {
    let partitions = report["groups"][0]["partitions"].as_array().cloned().unwrap_or_default();
    partitions.iter().map(|p| p["translatedBy"].as_str().unwrap_or_default().to_string()).collect()
}

/// A group reads 200 records on the source through the gateway; the route switches with
/// `groupOffsets`; the destination must hold exactly the source's offsets, and the group must
/// re-read nothing there. `extra` first writes one record straight to the destination, after
/// MM2 copied the 200. Returns the switchover's report.
fn carry_a_group(env: &Env, (topic, group): (&str, &str), extra: bool) -> Result<Value> {
    let gateway = Gateway::start(env)?;
    java::create_topic(&env.source.bootstrap(), topic, 2, 1)?;
    let options = MirrorOptions { sync_group_offsets: false, ..MirrorOptions::default().topics(topic).groups(group) };
    let mut mirror = MirrorMaker::start(&env.source.bootstrap(), &env.destination.bootstrap(), options)?;
    mirror.wait_for_topic(topic, 2, WAIT)?;
    let before: Vec<String> = (0..200).map(|i| format!("before-{i}")).collect();
    // A partition per record, at random: librdkafka's sticky partitioner would put all 200 on
    // one partition when they come within its 10 ms, leaving the other with nothing to carry.
    let spread = [("sticky.partitioning.linger.ms".to_string(), "0".to_string())];
    kcat::produce_with(&gateway.bootstrap(), topic, &before, &spread)?;
    let read = kcat::consume_group(&gateway.bootstrap(), group, topic, before.len(), WAIT)?;
    ensure!(read.len() == before.len(), "the group read {} of {} records", read.len(), before.len());
    let stopped = mirrormaker::committed_offsets(&env.source.bootstrap(), group, topic)?;
    let ends = mirrormaker::end_offsets(&env.source.bootstrap(), topic)?;
    ensure!(stopped == ends, "committed {stopped:?}, the partitions end at {ends:?}");
    if extra {
        poll::poll_until(WAIT, || {
            let copied = mirrormaker::end_offsets(&env.destination.bootstrap(), topic).ok()?;
            (copied == stopped).then_some(())
        })?;
        kcat::produce(&env.destination.bootstrap(), topic, &["written-on-the-destination".to_string()])?;
    }

    let checkpoints = format!("{SOURCE_ALIAS}.checkpoints.internal");
    let (status, report) = gateway.switch(json!({
        "to": "destination",
        "catchUp": {"policy": "records", "maxLag": 0},
        "catchUpTimeoutMs": 20000,
        "groupOffsets": {"checkpointsTopic": checkpoints},
    }))?;
    ensure!(status == 200 && report["outcome"] == "completed", "{status} {report}");
    ensure!(
        report["groups"][0]["group"] == group,
        "group not found on the source: {report}\n{}",
        gateway.process.log_tail()
    );
    let on_destination = mirrormaker::committed_offsets(&env.destination.bootstrap(), group, topic)?;
    ensure!(on_destination == stopped, "destination holds {on_destination:?}, the source {stopped:?}");

    let after: Vec<String> = (0..20).map(|i| format!("after-{i}")).collect();
    kcat::produce(&gateway.bootstrap(), topic, &after)?;
    let resumed = kcat::consume_group(&gateway.bootstrap(), group, topic, after.len() + usize::from(extra), WAIT)?;
    let reread = resumed.iter().filter(|value| value.starts_with("before-")).count();
    // N = 0 re-reads allowed: a group at its partitions' end is placed exactly, by the records
    // or by MM2's latest offset sync, which MM2 always keeps.
    ensure!(reread == 0, "the group re-read {reread} records after the cut: {resumed:?}");
    mirror.stop()?;
    Ok(report)
}

/// Runs the drill in `mode` and checks what its users see: nothing acknowledged lost, every
/// record acknowledged, and every client (in the live modes also the kcat producer and consumer
/// and the transactional producer) still running after the cut and losing nothing.
fn drill(mode: DrillMode) -> Result<drill::DrillReport> {
    let report = drill::run(&DrillOptions {
        gateway_binary: common::binary(),
        mode,
        records: 3000,
        rate: 300,
        partitions: 3,
        group_offsets: true,
    })?;
    println!("{report}");
    ensure!(report.acked_missing.is_empty(), "acknowledged records lost: {:?}", report.acked_missing);
    ensure!(
        report.acked as u64 == report.records,
        "only {} of {} records acknowledged: {:?}",
        report.acked,
        report.records,
        report.producer_errors
    );
    // A partition's batches reached the destination out of order (a broker standing in for one
    // the destination lacks took some of them): the client recovers by bumping its epoch, but
    // that is the path on which batches were seen to expire.
    ensure!(
        report.sequence_refusals.is_empty(),
        "the cluster refused batches for their sequence: {:?}",
        report.sequence_refusals
    );
    let expected = if mode == DrillMode::Restart { 2 } else { 5 };
    ensure!(report.clients.len() == expected, "{} clients ran, not {expected}: {report}", report.clients.len());
    let failed: Vec<_> = report.clients.iter().filter(|client| !client.kept_everything()).collect();
    ensure!(failed.is_empty(), "clients that stopped or lost acknowledged records: {failed:?}");
    let idle: Vec<_> = report.clients.iter().filter(|client| client.after_cut == 0).map(|c| c.client).collect();
    ensure!(idle.is_empty(), "clients that did nothing after the cut: {idle:?}");
    Ok(report)
}

fn drill_live_switchover_loses_nothing(_env: &Env) -> Result<()> {
    let report = drill(DrillMode::Live)?;
    ensure!(report.fence_answers == 0, "fence mode hold answered {} requests itself", report.fence_answers);
    Ok(())
}

/// Requests that reach the fence get retriable errors; the Java clients retry them after the
/// cut, so nothing acknowledged is lost and no error reaches the application.
fn drill_error_fence_answers_and_loses_nothing(_env: &Env) -> Result<()> {
    let report = drill(DrillMode::LiveErrorFence)?;
    ensure!(report.fence_answers > 0, "the fence answered no request: {report}");
    ensure!(report.producer_errors.is_empty(), "errors reached the producer: {:?}", report.producer_errors);
    Ok(())
}

fn drill_restart_procedure_loses_nothing(_env: &Env) -> Result<()> {
    drill(DrillMode::Restart).map(drop)
}
