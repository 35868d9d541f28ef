//! The frame pump in process: a client and a broker made of in-memory pipes, tokio's time
//! paused, no Kafka and no sockets.
//!
//! The real-Kafka suites prove the gateway works with real clients; these pin down what only
//! shows as timing or order: answers in request order while a fence answers some requests
//! itself, the drain a switchover waits on, the idle and frame deadlines, and that a full
//! in-flight queue neither wedges a pipelined client nor keeps a stop signal out, and what a
//! transactional producer is answered after a cut when the new cluster never saw its
//! transaction. With time
//! paused, a ten-minute timeout takes no time at all, and nothing depends on the machine's load.

mod frames;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use frames::{decode_answer, frame, one_route_config, produce, read_frame, response_frame};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use prometheus_client::metrics::gauge::Gauge;
use switchyard::cluster::Advertising;
use switchyard::config::{FenceMode, ProxySettings};
use switchyard::proxy::{pump, CloseReason, ConnectionContext, ConnectionSummary, Dialled, MemoryBudget, StopSignals};
use switchyard::routing::{Route, Upstream};
use switchyard::telemetry::Metrics;
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A metadata refresh interval far away: the upstream's cluster is never asked anything.
const FAR: Duration = Duration::from_secs(100_000);

/// Bytes each in-memory pipe buffers before a writer waits.
const PIPE: usize = 1024 * 1024;

/// A route, its upstream, and the signals that stop its connections.
struct Gateway {
    config: switchyard::config::GatewayConfig,
    ctx: Arc<ConnectionContext>,
    /// Bytes taken from the buffer budget now.
    budget_in_use: Gauge,
    shutdown: CancellationToken,
    route_session: CancellationToken,
}

impl Gateway {
    fn new(settings: ProxySettings) -> Gateway {
        let config =
            switchyard::config::parse("tests/pump.rs", &one_route_config("", "")).expect("the test config is valid");
        let shutdown = CancellationToken::new();
        let upstream = Upstream::start(&config.domains[0], None, FAR, Duration::from_millis(10), &shutdown)
            .expect("starting the upstream");
        let route = Route::new(
            &config.routes[0],
            Arc::clone(&upstream),
            Arc::new(Advertising::RouteEndpoint),
            &Metrics::new(),
            &shutdown,
        );
        let budget_in_use = Gauge::default();
        let budget = MemoryBudget::new(settings.buffer_budget_bytes, budget_in_use.clone());
        let ctx =
            ConnectionContext { route: Arc::new(route), upstream, settings: Arc::new(settings), budget, swap: None };
        let route_session = ctx.route.session();
        Gateway { config, ctx: Arc::new(ctx), budget_in_use, shutdown, route_session }
    }

    /// Pump one connection; returns the client's end, the broker's end and the pump's task.
    fn connect(&self) -> (DuplexStream, DuplexStream, JoinHandle<ConnectionSummary>) {
        self.connect_to_broker(false)
    }

    /// [`Gateway::connect`]; with `stands_in`, the broker stands in for one its cluster lacks.
    fn connect_to_broker(&self, stands_in: bool) -> (DuplexStream, DuplexStream, JoinHandle<ConnectionSummary>) {
        let (client, client_side) = duplex(PIPE);
        let (broker, broker_side) = duplex(PIPE);
        let (ctx, shutdown, session) = (Arc::clone(&self.ctx), self.shutdown.clone(), self.route_session.clone());
        let pumped = tokio::spawn(async move {
            let stop = StopSignals { gateway: &shutdown, route: &session };
            let upstream = Dialled { stream: broker_side, stands_in };
            pump(client_side, BytesMut::new(), upstream, &ctx, stop, None).await
        });
        (client, broker, pumped)
    }

    /// Pump one connection that can follow its route to another cluster, whose broker there is
    /// the second broker end returned.
    fn connect_following(&self) -> (DuplexStream, DuplexStream, DuplexStream, JoinHandle<ConnectionSummary>) {
        let (client, broker, mut dialled, pumped) = self.connect_dialling(1, false);
        (client, broker, dialled.remove(0), pumped)
    }

    /// Pump one connection that can dial `dials` broker connections after its first (to follow
    /// its route, or for the gateway's own requests); their broker ends are returned in the
    /// order they are dialled. With `stands_in`, each stands in for a broker its cluster lacks.
    fn connect_dialling(
        &self,
        dials: usize,
        stands_in: bool,
    ) -> (DuplexStream, DuplexStream, Vec<DuplexStream>, JoinHandle<ConnectionSummary>) {
        let (client, client_side) = duplex(PIPE);
        let (broker, broker_side) = duplex(PIPE);
        let (dialled, sides): (Vec<_>, std::collections::VecDeque<_>) = (0..dials).map(|_| duplex(PIPE)).unzip();
        let sides = std::sync::Mutex::new(sides);
        let (ctx, shutdown, session) = (Arc::clone(&self.ctx), self.shutdown.clone(), self.route_session.clone());
        let pumped = tokio::spawn(async move {
            let stop = StopSignals { gateway: &shutdown, route: &session };
            let redial = move |_: Arc<Upstream>| -> Pin<Box<dyn Future<Output = _> + Send>> {
                let stream = sides.lock().unwrap().pop_front().ok_or_else(|| "dialled once too often".to_string());
                Box::pin(std::future::ready(stream.map(|stream| Dialled { stream, stands_in })))
            };
            let upstream = Dialled { stream: broker_side, stands_in: false };
            pump(client_side, BytesMut::new(), upstream, &ctx, stop, Some(&redial)).await
        });
        (client, broker, dialled, pumped)
    }

    /// Switch the route to another upstream as a switchover's cut does.
    fn cut(&self) {
        frames::cut(&self.ctx.route, &self.config.domains[0], &self.shutdown);
        self.ctx.route.set_fenced(None);
    }
}

fn settings() -> ProxySettings {
    ProxySettings {
        idle_timeout: Duration::from_secs(600),
        frame_timeout: Duration::from_secs(60),
        drain_timeout: Duration::from_secs(30),
        ..ProxySettings::default()
    }
}

fn correlation_id(body: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(body[at..at + 4].try_into().unwrap())
}

/// A broker answering every request, after `delay`, with an opaque body naming its
/// correlation id; returns the correlation ids in the order it saw them.
fn broker(mut stream: DuplexStream, delay: Duration) -> JoinHandle<Vec<i32>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(request) = read_frame(&mut stream).await {
            let id = correlation_id(&request, 4);
            seen.push(id);
            tokio::time::sleep(delay).await;
            let mut answer = BytesMut::new();
            answer.put_i32(8);
            answer.put_i32(id);
            answer.put_i32(0);
            if stream.write_all(&answer).await.is_err() {
                break;
            }
        }
        seen
    })
}

/// Correlation ids of the next `count` answers the client reads.
async fn answers(client: &mut DuplexStream, count: usize) -> Vec<i32> {
    let mut ids = Vec::new();
    for _ in 0..count {
        let body = read_frame(client).await.expect("an answer, not the end of the stream");
        ids.push(correlation_id(&body, 0));
    }
    ids
}

#[tokio::test(start_paused = true)]
async fn a_read_of_more_requests_than_the_queue_holds_is_forwarded_in_order() {
    for max_in_flight in [1, 2, 7] {
        let gateway = Gateway::new(ProxySettings { max_in_flight_requests: max_in_flight, ..settings() });
        let (mut client, broker_end, pumped) = gateway.connect();
        let broker = broker(broker_end, Duration::from_millis(1));
        let burst: Vec<u8> = (0..100).flat_map(|id| produce(id).to_vec()).collect();
        client.write_all(&burst).await.unwrap();
        assert_eq!(
            answers(&mut client, 100).await,
            (0..100).collect::<Vec<_>>(),
            "maxInFlightRequests {max_in_flight}"
        );
        drop(client);
        assert!(matches!(pumped.await.unwrap().reason, CloseReason::ClientClosed));
        assert_eq!(broker.await.unwrap(), (0..100).collect::<Vec<_>>());
        assert_eq!(gateway.ctx.route.fence.in_flight(), 0, "every request left the fence");
    }
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_closes_after_the_idle_timeout_and_not_before() {
    let gateway = Gateway::new(settings());
    let (_client, _broker, pumped) = gateway.connect();
    let started = Instant::now();
    let summary = pumped.await.unwrap();
    assert!(matches!(summary.reason, CloseReason::IdleTimeout { partial_frame_bytes: 0 }), "{}", summary.reason);
    assert_eq!(started.elapsed().as_secs(), 600);
}

#[tokio::test(start_paused = true)]
async fn a_client_waiting_for_an_answer_is_not_idle() {
    let gateway = Gateway::new(settings());
    let (mut client, broker_end, _pumped) = gateway.connect();
    let _broker = broker(broker_end, Duration::from_secs(900));
    client.write_all(&produce(1)).await.unwrap();
    assert_eq!(answers(&mut client, 1).await, vec![1], "the answer 15 minutes later still arrives");
}

#[tokio::test(start_paused = true)]
async fn a_trickled_frame_closes_at_the_frame_deadline() {
    let gateway = Gateway::new(ProxySettings { idle_timeout: Duration::from_secs(5), ..settings() });
    let (mut client, _broker, pumped) = gateway.connect();
    let started = Instant::now();
    client.write_all(&1000i32.to_be_bytes()).await.unwrap();
    let trickle = tokio::spawn(async move {
        // A byte every 4 s: never idle for 5 s, never done.
        while client.write_all(&[0]).await.is_ok() {
            tokio::time::sleep(Duration::from_secs(4)).await;
        }
    });
    let summary = pumped.await.unwrap();
    assert!(matches!(summary.reason, CloseReason::FrameTimeout { .. }), "{}", summary.reason);
    assert_eq!(started.elapsed().as_secs(), 60);
    trickle.abort();
}

/// A fence in mode `error` answers a Produce itself, at once, but the answer waits behind the
/// broker's answer to a request sent before it.
#[tokio::test(start_paused = true)]
async fn fence_answers_keep_request_order() {
    let gateway = Gateway::new(settings());
    let (mut client, broker_end, _pumped) = gateway.connect();
    let _broker = broker(broker_end, Duration::from_secs(5));
    client.write_all(&produce(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    gateway.ctx.route.set_fenced(Some(FenceMode::Error));
    client.write_all(&produce(2)).await.unwrap();
    let started = Instant::now();
    assert_eq!(answers(&mut client, 2).await, vec![1, 2]);
    assert!(started.elapsed() >= Duration::from_secs(4), "the fence's answer jumped the queue");
}

/// What passed the fence before it closed is counted until answered: the switchover's drain
/// waits for exactly that, and a request sent after the close is never forwarded.
#[tokio::test(start_paused = true)]
async fn the_drain_waits_for_what_was_forwarded_before_the_fence_closed() {
    let gateway = Gateway::new(settings());
    let (mut client, broker_end, _pumped) = gateway.connect();
    let broker = broker(broker_end, Duration::from_secs(5));
    client.write_all(&produce(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let fence = &gateway.ctx.route.fence;
    gateway.ctx.route.set_fenced(Some(FenceMode::Hold));
    client.write_all(&produce(2)).await.unwrap();
    let started = Instant::now();
    fence.drained().await;
    assert!(started.elapsed() >= Duration::from_secs(4), "drained before the broker answered");
    assert_eq!(answers(&mut client, 1).await, vec![1]);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(fence.in_flight(), 0, "request 2 was held, not forwarded");
    gateway.ctx.route.set_fenced(None);
    assert_eq!(answers(&mut client, 1).await, vec![2], "the held request goes once the fence opens");
    drop(client);
    assert_eq!(broker.await.unwrap(), vec![1, 2]);
}

/// A switchover's cut keeps the client's connection: what was forwarded before the fence is
/// answered by the old broker, the request held at the fence goes to the new one, the old
/// broker connection is closed, and the client goes on on the same connection.
#[tokio::test(start_paused = true)]
async fn a_connection_follows_its_route_to_another_cluster() {
    let gateway = Gateway::new(settings());
    let (mut client, old_end, new_end, pumped) = gateway.connect_following();
    let (old, new) = (broker(old_end, Duration::from_secs(2)), broker(new_end, Duration::ZERO));
    client.write_all(&produce(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    gateway.ctx.route.set_fenced(Some(FenceMode::Hold));
    client.write_all(&produce(2)).await.unwrap();
    gateway.ctx.route.fence.drained().await;
    gateway.cut();
    assert_eq!(answers(&mut client, 2).await, vec![1, 2]);
    assert_eq!(old.await.unwrap(), vec![1], "the old broker connection was not closed after the cut");
    client.write_all(&produce(3)).await.unwrap();
    assert_eq!(answers(&mut client, 1).await, vec![3]);
    assert!(!pumped.is_finished(), "the client's connection was closed");
    drop(client);
    assert!(matches!(pumped.await.unwrap().reason, CloseReason::ClientClosed));
    assert_eq!(new.await.unwrap(), vec![2, 3]);
}

/// After a cut onto a cluster that lacks the connection's broker, another of its brokers stands
/// in. It may lead the partitions the client's Produce requests are for, and the client, once it
/// has read the new metadata, also sends them through that leader's own port: taken on both
/// connections, one partition's batches would reach it out of order. So the gateway answers each
/// Produce NOT_LEADER_OR_FOLLOWER, in request order, and passes everything else.
#[tokio::test(start_paused = true)]
async fn a_broker_standing_in_after_a_cut_is_sent_no_produce() {
    let gateway = Gateway::new(settings());
    let (mut client, old_end, mut dialled, _pumped) = gateway.connect_dialling(1, true);
    drop(broker(old_end, Duration::ZERO));
    cut_under(&gateway, &mut client).await;
    let stand_in = broker(dialled.remove(0), Duration::from_secs(1));
    only_produce_is_turned_away(client, stand_in).await;
}

/// A new connection to the port of a broker the cluster lacks (it left, or the route was moved
/// by a restart onto a cluster that numbers its brokers differently) is served the same way,
/// rather than closed: to franz-go, a connection closed before its first answer looks like a
/// TLS mismatch, and its producer fails the records instead of retrying them.
#[tokio::test(start_paused = true)]
async fn a_broker_standing_in_from_the_start_is_sent_no_produce() {
    let gateway = Gateway::new(settings());
    let (client, broker_end, _pumped) = gateway.connect_to_broker(true);
    only_produce_is_turned_away(client, broker(broker_end, Duration::from_secs(1))).await;
}

/// Sends Produce, ListOffsets, Produce; checks both Produce requests are answered
/// NOT_LEADER_OR_FOLLOWER by the gateway, all three in order, and only ListOffsets reached the
/// broker standing in.
async fn only_produce_is_turned_away(mut client: DuplexStream, stand_in: JoinHandle<Vec<i32>>) {
    use kafka_protocol::messages::{ListOffsetsRequest, ProduceResponse};
    const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    client.write_all(&produce(1)).await.unwrap();
    client.write_all(&frame(ApiKey::ListOffsets, 7, 2, &ListOffsetsRequest::default())).await.unwrap();
    client.write_all(&produce(3)).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let body = read_frame(&mut client).await.expect("an answer");
        let id = correlation_id(&body, 0);
        if id != 2 {
            let answer: ProduceResponse = decode_answer(ApiKey::Produce, 9, body);
            let codes: Vec<i16> =
                answer.responses.iter().flat_map(|t| t.partition_responses.iter().map(|p| p.error_code)).collect();
            assert_eq!(codes, vec![NOT_LEADER_OR_FOLLOWER], "Produce {id} was answered {answer:?}");
        }
        ids.push(id);
    }
    assert_eq!(ids, vec![1, 2, 3], "the answers came out of order");
    drop(client);
    assert_eq!(stand_in.await.unwrap(), vec![2], "a Produce reached the broker standing in");
}

/// A connection that cannot follow (no way to re-dial, as on a swap route) drains and closes at
/// the cut, naming the switch.
#[tokio::test(start_paused = true)]
async fn a_connection_that_cannot_follow_closes_at_the_cut() {
    let gateway = Gateway::new(settings());
    let (mut client, broker_end, pumped) = gateway.connect();
    let _broker = broker(broker_end, Duration::ZERO);
    client.write_all(&produce(1)).await.unwrap();
    assert_eq!(answers(&mut client, 1).await, vec![1]);
    gateway.ctx.route.set_fenced(Some(FenceMode::Hold));
    gateway.cut();
    let summary = pumped.await.unwrap();
    assert!(matches!(summary.reason, CloseReason::RouteSwitched), "{}", summary.reason);
}

/// After a cut, a client that keeps naming the topic by the id it was shown (the old cluster's)
/// reaches the new cluster with that cluster's id, and every answer shows it the old id again:
/// Metadata, and Fetch with its records unchanged.
#[tokio::test(start_paused = true)]
async fn after_a_cut_topic_ids_are_translated_both_ways() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
    use kafka_protocol::messages::{FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, RequestHeader};
    use kafka_protocol::protocol::Decodable;
    let (shown, on_destination) = (uuid::Uuid::from_u128(0x5eed), uuid::Uuid::from_u128(0xd0d0));
    let gateway = Gateway::new(settings());
    // The clients were shown the old cluster's id, as a Metadata answer before the cut does.
    gateway.ctx.route.topic_ids.present(0, "orders", shown);
    let (mut client, mut dialled, _pumped) = moved(&gateway, 1).await;
    let mut destination = dialled.remove(0);

    let request = frame(ApiKey::Metadata, 12, 1, &MetadataRequest::default());
    let topic =
        MetadataResponseTopic::default().with_name(Some(TopicName("orders".into()))).with_topic_id(on_destination);
    let answered = MetadataResponse::default().with_topics(vec![topic]);
    let answer: MetadataResponse =
        exchange(&mut client, &mut destination, &request, ApiKey::Metadata, 12, &answered).await;
    assert_eq!(answer.topics[0].topic_id, shown, "Metadata shows the id the client knows");

    for (version, correlation_id) in [(13, 2), (17, 3)] {
        let partition = FetchPartition::default().with_partition_max_bytes(1 << 20);
        let wanted = FetchTopic::default().with_topic_id(shown).with_partitions(vec![partition]);
        let fetch = FetchRequest::default().with_topics(vec![wanted]);
        client.write_all(&frame(ApiKey::Fetch, version, correlation_id, &fetch)).await.unwrap();
        let records = Bytes::from_static(b"records that stay as they are");
        let data = PartitionData::default().with_records(Some(records.clone()));
        let topic = FetchableTopicResponse::default().with_topic_id(on_destination).with_partitions(vec![data]);
        let answered = FetchResponse::default().with_responses(vec![topic]);
        let request = answer_one(&mut destination, ApiKey::Fetch, version, &answered).await;
        let mut body = request.slice(..);
        RequestHeader::decode(&mut body, ApiKey::Fetch.request_header_version(version)).unwrap();
        let asked = FetchRequest::decode(&mut body, version).unwrap();
        assert_eq!(asked.topics[0].topic_id, on_destination, "v{version}: the new cluster is asked by its id");
        let answer: FetchResponse = decode_answer(ApiKey::Fetch, version, read_frame(&mut client).await.unwrap());
        assert_eq!(answer.responses[0].topic_id, shown, "v{version}: the answer shows the id the client knows");
        assert_eq!(answer.responses[0].partitions[0].records, Some(records));
    }
}

/// After a cut, a Fetch naming topics by id is decoded to translate them: one that does not
/// decode closes its connection, saying why, and never reaches the new cluster.
#[tokio::test(start_paused = true)]
async fn after_a_cut_an_undecodable_fetch_closes_its_connection() {
    let gateway = Gateway::new(settings());
    let (mut client, mut dialled, pumped) = moved(&gateway, 1).await;
    let destination = broker(dialled.remove(0), Duration::ZERO);
    let not_a_fetch = frame(ApiKey::Fetch, 13, 7, &kafka_protocol::messages::MetadataRequest::default());
    client.write_all(&not_a_fetch).await.unwrap();
    let summary = pumped.await.unwrap();
    assert_eq!(summary.reason.label(), "refused_request", "{}", summary.reason);
    assert!(summary.reason.to_string().contains("Fetch v13"), "{}", summary.reason);
    drop(client);
    assert!(destination.await.unwrap().is_empty(), "the new cluster saw nothing of it");
}

/// A client that pipelines more than the in-flight queue holds, to a slow broker, with a request
/// cut in two across reads: the gateway stops reading while it waits for room, so that wait must
/// not count against the cut request's `frameTimeoutMs`.
#[tokio::test(start_paused = true)]
async fn waiting_for_room_in_flight_does_not_count_against_the_frame_deadline() {
    let settings = ProxySettings { max_in_flight_requests: 1, frame_timeout: Duration::from_secs(1), ..settings() };
    let gateway = Gateway::new(settings);
    let (mut client, broker_end, pumped) = gateway.connect();
    let _broker = broker(broker_end, Duration::from_millis(600));
    let mut burst: Vec<u8> = (0..5).flat_map(|id| produce(id).to_vec()).collect();
    let last = produce(5);
    burst.extend_from_slice(&last[..last.len() / 2]);
    client.write_all(&burst).await.unwrap();
    // The rest of the cut request follows at once; the gateway reads it only after about 2.4 s
    // of waiting for the broker's answers to the first five.
    tokio::time::sleep(Duration::from_millis(10)).await;
    client.write_all(&last[last.len() / 2..]).await.unwrap();
    assert_eq!(answers(&mut client, 6).await, (0..6).collect::<Vec<_>>());
    drop(client);
    let reason = pumped.await.unwrap().reason;
    assert!(matches!(reason, CloseReason::ClientClosed), "{reason}");
}

/// A connection waiting for room in a full in-flight queue whose broker never answers is idle:
/// closed after `idleTimeoutMs`, not held forever.
#[tokio::test(start_paused = true)]
async fn a_connection_waiting_on_a_stuck_broker_closes_at_the_idle_timeout() {
    let gateway = Gateway::new(ProxySettings { max_in_flight_requests: 1, ..settings() });
    let (mut client, _broker_end, pumped) = gateway.connect();
    let burst: Vec<u8> = (0..5).flat_map(|id| produce(id).to_vec()).collect();
    client.write_all(&burst).await.unwrap();
    let started = Instant::now();
    let summary = pumped.await.unwrap();
    assert!(matches!(summary.reason, CloseReason::IdleTimeout { .. }), "{}", summary.reason);
    assert_eq!(started.elapsed().as_secs(), 600);
}

/// A connection waiting for room in a full in-flight queue still sees shutdown: it stops
/// taking requests and ends once what it forwarded is answered or the drain times out.
#[tokio::test(start_paused = true)]
async fn shutdown_reaches_a_connection_waiting_on_a_full_queue() {
    let gateway = Gateway::new(ProxySettings { max_in_flight_requests: 1, ..settings() });
    let (mut client, _broker_end, pumped) = gateway.connect();
    // The broker never answers: the queue stays full.
    let burst: Vec<u8> = (0..5).flat_map(|id| produce(id).to_vec()).collect();
    client.write_all(&burst).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    gateway.shutdown.cancel();
    let summary = pumped.await.unwrap();
    assert!(matches!(summary.reason, CloseReason::DrainTimeout), "{}", summary.reason);
    assert_eq!(started.elapsed().as_secs(), 30, "ends at proxy.drainTimeoutMs");
    assert_eq!(gateway.ctx.route.fence.in_flight(), 0, "the unanswered requests left the fence");
}

/// A client that stops reading: the gateway stops reading its broker too (nothing is buffered
/// beyond the answer in hand), and a write that makes no progress for `writeTimeoutMs` ends
/// the connection.
#[tokio::test(start_paused = true)]
async fn a_client_that_reads_nothing_is_closed_at_the_write_timeout() {
    let gateway = Gateway::new(ProxySettings { write_timeout: Duration::from_secs(30), ..settings() });
    let (mut client, mut broker, pumped) = gateway.connect();
    client.write_all(&produce(1)).await.unwrap();
    let request = read_frame(&mut broker).await.unwrap();
    // An answer twice the size of the pipe to the client, which reads none of it.
    let mut answer = BytesMut::new();
    answer.put_i32(4 + 2 * PIPE as i32);
    answer.put_i32(correlation_id(&request, 4));
    answer.put_bytes(0, 2 * PIPE);
    let broker_writes = tokio::spawn(async move {
        let _ = broker.write_all(&answer).await;
        broker
    });
    let started = Instant::now();
    let summary = pumped.await.unwrap();
    assert!(matches!(summary.reason, CloseReason::ClientWriteTimeout), "{}", summary.reason);
    assert_eq!(started.elapsed().as_secs(), 30);
    drop(broker_writes);
}

/// A large answer that passes unchanged reaches the client as it arrives, taking nothing from
/// the buffer budget, and the frames after it are read as usual.
#[tokio::test(start_paused = true)]
async fn a_large_opaque_answer_streams_through_without_being_held() {
    const ANSWER: usize = 8 * 1024 * 1024;
    const FIRST_PART: usize = 512 * 1024;
    let gateway = Gateway::new(settings());
    let (mut client, mut broker_end, _pumped) = gateway.connect();
    client.write_all(&produce(1)).await.unwrap();
    let request = read_frame(&mut broker_end).await.unwrap();
    let mut answer = BytesMut::new();
    answer.put_i32(ANSWER as i32 - 4);
    answer.put_i32(correlation_id(&request, 4));
    answer.put_bytes(7, ANSWER - 8);
    broker_end.write_all(&answer[..FIRST_PART]).await.unwrap();
    let mut first = vec![0; FIRST_PART];
    let arrived = tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut first)).await;
    assert!(arrived.is_ok(), "the answer's first part was held back until the rest came");
    assert_eq!(first, answer[..FIRST_PART]);
    assert_eq!(gateway.budget_in_use.get(), 0, "a streamed answer took room from the buffer budget");
    let broker_sends = tokio::spawn(async move {
        broker_end.write_all(&answer[FIRST_PART..]).await.unwrap();
        broker_end
    });
    let mut rest = vec![0; ANSWER - FIRST_PART];
    client.read_exact(&mut rest).await.unwrap();
    assert!(rest.iter().all(|&b| b == 7));
    let answering = broker(broker_sends.await.unwrap(), Duration::ZERO);
    client.write_all(&produce(2)).await.unwrap();
    assert_eq!(answers(&mut client, 1).await, vec![2], "framing resumed after the streamed answer");
    drop(answering);
}

/// A consumer's large Fetch answers (v16+, held whole to check their leader endpoints) reuse the
/// room the first one took from the buffer budget, and the room is given back once no large
/// answer has come for a second. Taking it anew for every answer made the allocator fault in
/// fresh pages each time.
#[tokio::test(start_paused = true)]
async fn large_fetch_answers_reuse_their_room_and_give_it_back_when_idle() {
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchRequest, FetchResponse};
    let gateway = Gateway::new(settings());
    let (mut client, mut broker_end, _pumped) = gateway.connect();
    let records = Bytes::from(vec![7; 512 * 1024]);
    let data = PartitionData::default().with_records(Some(records.clone()));
    let topic = FetchableTopicResponse::default().with_topic_id(uuid::Uuid::from_u128(1)).with_partitions(vec![data]);
    let answered = FetchResponse::default().with_responses(vec![topic]);
    let mut held_after = Vec::new();
    for correlation_id in [1, 2] {
        client.write_all(&frame(ApiKey::Fetch, 17, correlation_id, &FetchRequest::default())).await.unwrap();
        answer_one(&mut broker_end, ApiKey::Fetch, 17, &answered).await;
        let answer: FetchResponse = decode_answer(ApiKey::Fetch, 17, read_frame(&mut client).await.unwrap());
        assert_eq!(answer.responses[0].partitions[0].records, Some(records.clone()));
        held_after.push(gateway.budget_in_use.get());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(held_after[0] > 0, "the first answer's room was given back at once");
    assert_eq!(held_after[1], held_after[0], "the second answer did not reuse the first one's room");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(gateway.budget_in_use.get(), 0, "the room was kept after the answers stopped");
}

/// Answers large and small, written by the broker in pieces of any size: the client reads
/// exactly the bytes the broker sent, whether an answer streamed or was held whole.
#[tokio::test(start_paused = true)]
async fn answers_reach_the_client_intact_however_the_broker_splits_them() {
    const SIZES: [usize; 5] = [12, 300 * 1024, 12, 1024 * 1024 + 3, 200 * 1024];
    for piece in [997, 65_537, 300_001] {
        let gateway = Gateway::new(settings());
        let (mut client, mut broker_end, _pumped) = gateway.connect();
        let mut sent = BytesMut::new();
        for (id, size) in (1..).zip(SIZES) {
            client.write_all(&produce(id)).await.unwrap();
            let request = read_frame(&mut broker_end).await.unwrap();
            sent.put_i32(size as i32 - 4);
            sent.put_i32(correlation_id(&request, 4));
            sent.put_bytes(id as u8, size - 8);
        }
        let sent = sent.freeze();
        let broker_sends = tokio::spawn({
            let sent = sent.clone();
            async move {
                for chunk in sent.chunks(piece) {
                    broker_end.write_all(chunk).await.unwrap();
                }
                broker_end
            }
        });
        let mut received = vec![0; sent.len()];
        client.read_exact(&mut received).await.unwrap();
        assert!(received == sent, "the client's bytes differ from the broker's (pieces of {piece})");
        drop(broker_sends.await);
    }
}

/// `produce(id)` padded to `size` bytes in all: a large request, opaque after its header.
fn large_produce(correlation_id: i32, size: usize) -> Vec<u8> {
    let mut frame = produce(correlation_id).to_vec();
    frame.resize(size, 0);
    frame[..4].copy_from_slice(&((size - 4) as i32).to_be_bytes());
    frame
}

/// Three connections each sending a frame larger than a third of the gateway's buffer budget:
/// the third waits (reads nothing) until the first frame is forwarded and its room given back,
/// then goes through. Memory stays within the budget; nothing is refused.
#[tokio::test(start_paused = true)]
async fn large_frames_wait_for_room_in_the_budget_and_then_pass() {
    const FRAME: usize = 3 * 1024 * 1024 + 512 * 1024;
    let gateway = Gateway::new(ProxySettings {
        max_frame_bytes: 4 * 1024 * 1024,
        buffer_budget_bytes: 8 * 1024 * 1024,
        ..settings()
    });
    let mut clients = Vec::new();
    for id in 1..=3 {
        let (client, broker_end, pumped) = gateway.connect();
        clients.push((client, large_produce(id, FRAME), broker(broker_end, Duration::ZERO), pumped));
    }
    let (mut third, third_frame, _, _) = clients.pop().unwrap();
    // The first two send all but their last bytes, and hold their room.
    for (client, frame, _, _) in &mut clients {
        client.write_all(&frame[..FRAME - 10]).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let third_sends = tokio::spawn(async move {
        third.write_all(&third_frame).await.unwrap();
        answers(&mut third, 1).await
    });
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(!third_sends.is_finished(), "the third frame passed while the budget was spent");
    let (first, frame, _, _) = &mut clients[0];
    first.write_all(&frame[FRAME - 10..]).await.unwrap();
    assert_eq!(answers(first, 1).await, vec![1]);
    assert_eq!(third_sends.await.unwrap(), vec![3], "the third frame went through once room was given back");
}

/// A PLAIN login (SaslHandshake v1, SaslAuthenticate v2) passes through unchanged both ways, and
/// the connection's summary names the user and the broker's verdict, never the password.
#[tokio::test(start_paused = true)]
async fn a_sasl_login_passes_through_and_names_the_principal() {
    use kafka_protocol::messages::{
        SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
    };
    let gateway = Gateway::new(settings());
    for (error_code, authenticated) in [(0, true), (58, false)] {
        let (mut client, mut broker, pumped) = gateway.connect();
        let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
        let token = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0alice\0pump-secret"));
        let requests = [frame(ApiKey::SaslHandshake, 1, 1, &handshake), frame(ApiKey::SaslAuthenticate, 2, 2, &token)];
        let answers = [
            response_frame(
                ApiKey::SaslHandshake,
                1,
                1,
                &SaslHandshakeResponse::default().with_mechanisms(vec![StrBytes::from_static_str("PLAIN")]),
            ),
            response_frame(
                ApiKey::SaslAuthenticate,
                2,
                2,
                &SaslAuthenticateResponse::default().with_error_code(error_code).with_session_lifetime_ms(3000),
            ),
        ];
        for (request, answer) in requests.iter().zip(&answers) {
            client.write_all(request).await.unwrap();
            assert_eq!(read_frame(&mut broker).await.unwrap(), request.slice(4..), "forwarded unchanged");
            broker.write_all(answer).await.unwrap();
            assert_eq!(read_frame(&mut client).await.unwrap(), answer.slice(4..), "answered unchanged");
        }
        drop(client);
        let summary = pumped.await.unwrap();
        assert!(matches!(summary.reason, CloseReason::ClientClosed), "{}", summary.reason);
        assert_eq!(summary.sasl.principal.as_deref(), Some("alice"));
        assert_eq!(summary.sasl.mechanism.as_deref(), Some("PLAIN"));
        assert_eq!(summary.sasl.authenticated, Some(authenticated));
        assert_eq!(summary.sasl.authentications, u32::from(authenticated));
        assert!(!format!("{:?}", summary.sasl).contains("pump-secret"));
    }
}

/// SaslHandshake v0 (raw tokens would follow) is never forwarded: the connection closes with
/// the reason.
#[tokio::test(start_paused = true)]
async fn a_sasl_handshake_v0_is_refused_before_the_broker_sees_it() {
    use kafka_protocol::messages::SaslHandshakeRequest;
    let gateway = Gateway::new(settings());
    let (mut client, mut broker, pumped) = gateway.connect();
    let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
    client.write_all(&frame(ApiKey::SaslHandshake, 0, 1, &handshake)).await.unwrap();
    let summary = pumped.await.unwrap();
    assert_eq!(summary.reason.label(), "refused_request");
    assert!(
        summary.reason.to_string().contains("SaslHandshake v0 is followed by raw SASL tokens"),
        "{}",
        summary.reason
    );
    assert_eq!(read_frame(&mut broker).await, None, "nothing reached the broker");
    assert_eq!(read_frame(&mut client).await, None, "the client's connection is closed");
}

/// Confluent's route fence (`fence: {scope: ALL, errorCode: ...}`): while the file holds it,
/// Produce is answered with the configured code and never reaches the broker; dropping it from
/// the file opens the route.
#[tokio::test(start_paused = true)]
async fn a_configuration_fence_answers_with_its_error_code_until_removed() {
    use kafka_protocol::messages::ProduceResponse;
    use kafka_protocol::protocol::Decodable;
    let gateway = Gateway::new(settings());
    let fenced = switchyard::config::parse(
        "tests/pump.rs",
        &one_route_config("", "fence: {scope: ALL, errorCode: BROKER_NOT_AVAILABLE}"),
    )
    .expect("a Confluent fence block is accepted");
    assert!(gateway.ctx.route.set_config_fence(fenced.routes[0].config_fence.clone()));
    let (mut client, mut broker_end, _pumped) = gateway.connect();
    client.write_all(&produce(1)).await.unwrap();
    let answer = read_frame(&mut client).await.expect("the fence answers");
    let mut body = answer;
    kafka_protocol::messages::ResponseHeader::decode(&mut body, ApiKey::Produce.response_header_version(9)).unwrap();
    let response = ProduceResponse::decode(&mut body, 9).unwrap();
    assert_eq!(response.responses[0].partition_responses[0].error_code, 8, "BROKER_NOT_AVAILABLE");
    let mut nothing = [0u8; 1];
    let forwarded = tokio::time::timeout(Duration::from_millis(100), broker_end.read(&mut nothing)).await;
    assert!(forwarded.is_err(), "the fenced request reached the broker");
    assert!(gateway.ctx.route.set_config_fence(None));
    assert!(!gateway.ctx.route.fence.is_closed());
    let _broker = broker(broker_end, Duration::ZERO);
    client.write_all(&produce(2)).await.unwrap();
    assert_eq!(answers(&mut client, 1).await, vec![2], "the broker answers once the fence is gone");
}

/// A transactional producer's request with `correlation_id` read by a broker end, answered with
/// `answer`; returns the request's body (the frame after its size prefix).
async fn answer_one<R: Encodable>(broker: &mut DuplexStream, api_key: ApiKey, version: i16, answer: &R) -> Bytes {
    let request = read_frame(broker).await.expect("a request");
    let id = correlation_id(&request, 4);
    broker.write_all(&response_frame(api_key, version, id, answer)).await.unwrap();
    request
}

const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
const TRANSACTION_ABORTABLE: i16 = 120;

/// A transactional Produce (`version` 12: a Java 4.x client) and the destination's answer that
/// it does not know the transactional id.
fn transactional_produce(correlation_id: i32) -> (Bytes, kafka_protocol::messages::ProduceResponse) {
    use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
    use kafka_protocol::messages::{ProduceResponse, TransactionalId};
    let partition = PartitionProduceData::default().with_index(0);
    let topic = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_static_str("t")))
        .with_partition_data(vec![partition]);
    let request = ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("orders"))))
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![topic]);
    let answer = ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
        .with_name(TopicName(StrBytes::from_static_str("t")))
        .with_partition_responses(vec![PartitionProduceResponse::default()
            .with_index(0)
            .with_error_code(INVALID_PRODUCER_ID_MAPPING)])]);
    (frame(ApiKey::Produce, 12, correlation_id, &request), answer)
}

/// An EndTxn of the transactional id `orders`, committing or aborting.
fn end_txn(version: i16, correlation_id: i32, committed: bool) -> Bytes {
    use kafka_protocol::messages::{EndTxnRequest, TransactionalId};
    let request = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(StrBytes::from_static_str("orders")))
        .with_producer_id(0.into())
        .with_committed(committed);
    frame(ApiKey::EndTxn, version, correlation_id, &request)
}

/// A TxnOffsetCommit (`sendOffsetsToTransaction`) of group `g` for partition 0 of `t` by the
/// transactional id `orders`, and the group coordinator's answer that it does not know the
/// transactional id (what a 4.1 destination answers for a transaction begun on the source).
fn txn_offset_commit(version: i16, correlation_id: i32) -> (Bytes, kafka_protocol::messages::TxnOffsetCommitResponse) {
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::txn_offset_commit_response::{
        TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
    };
    use kafka_protocol::messages::{GroupId, TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse};
    let request = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(StrBytes::from_static_str("orders")))
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default().with_committed_offset(10)])]);
    let answer = TxnOffsetCommitResponse::default().with_topics(vec![TxnOffsetCommitResponseTopic::default()
        .with_name(TopicName(StrBytes::from_static_str("t")))
        .with_partitions(vec![
            TxnOffsetCommitResponsePartition::default().with_error_code(INVALID_PRODUCER_ID_MAPPING)
        ])]);
    (frame(ApiKey::TxnOffsetCommit, version, correlation_id, &request), answer)
}

/// The error code of the one partition of a TxnOffsetCommit answer read by the client.
async fn txn_offset_commit_error(client: &mut DuplexStream, version: i16) -> (i32, i16) {
    use kafka_protocol::messages::{ResponseHeader, TxnOffsetCommitResponse};
    use kafka_protocol::protocol::Decodable;
    let mut body = read_frame(client).await.unwrap();
    let header = ResponseHeader::decode(&mut body, ApiKey::TxnOffsetCommit.response_header_version(version)).unwrap();
    let answer = TxnOffsetCommitResponse::decode(&mut body, version).unwrap();
    (header.correlation_id, answer.topics[0].partitions[0].error_code)
}

fn unknown_transaction() -> kafka_protocol::messages::EndTxnResponse {
    kafka_protocol::messages::EndTxnResponse::default().with_error_code(INVALID_PRODUCER_ID_MAPPING)
}

/// Move the connection of `client` (whose old broker answers everything) to the route's next
/// cluster, as a switchover's cut does, once the connection is under way.
async fn cut_under(gateway: &Gateway, client: &mut DuplexStream) {
    client.write_all(&produce(0)).await.unwrap();
    assert_eq!(answers(client, 1).await, vec![0]);
    gateway.ctx.route.set_fenced(Some(FenceMode::Hold));
    gateway.ctx.route.fence.drained().await;
    gateway.cut();
}

/// A connection whose old broker answers everything and that can dial `dials` broker
/// connections after its first; their broker ends are returned in the order they are dialled.
fn under_way(gateway: &Gateway, dials: usize) -> (DuplexStream, Vec<DuplexStream>, JoinHandle<ConnectionSummary>) {
    let (client, old_end, dialled, pumped) = gateway.connect_dialling(dials, false);
    drop(broker(old_end, Duration::ZERO));
    (client, dialled, pumped)
}

/// A connection [`under_way`] moved to the route's next cluster by a cut: the first broker end
/// returned is its broker there.
async fn moved(gateway: &Gateway, dials: usize) -> (DuplexStream, Vec<DuplexStream>, JoinHandle<ConnectionSummary>) {
    let (mut client, dialled, pumped) = under_way(gateway, dials);
    cut_under(gateway, &mut client).await;
    (client, dialled, pumped)
}

/// `request` (a frame) sent by the client and answered by `broker` with `answer`: the answer
/// the client reads, decoded.
async fn exchange<A: Encodable, R: kafka_protocol::protocol::Decodable>(
    client: &mut DuplexStream,
    broker: &mut DuplexStream,
    request: &[u8],
    api_key: ApiKey,
    version: i16,
    answer: &A,
) -> R {
    client.write_all(request).await.unwrap();
    answer_one(broker, api_key, version, answer).await;
    decode_answer(api_key, version, read_frame(client).await.unwrap())
}

/// A Java 4.x producer's transactional Produce and the end of its transaction (`committed` or
/// not), each answered by `broker` as a cluster that never saw the transaction answers: the
/// error codes the client reads for them.
async fn unknown_transaction_errors(
    client: &mut DuplexStream,
    broker: &mut DuplexStream,
    committed: bool,
) -> (i16, i16) {
    use kafka_protocol::messages::{EndTxnResponse, ProduceResponse};
    let (produce, unknown) = transactional_produce(1);
    let produced: ProduceResponse = exchange(client, broker, &produce, ApiKey::Produce, 12, &unknown).await;
    let end = end_txn(5, 2, committed);
    let ended: EndTxnResponse = exchange(client, broker, &end, ApiKey::EndTxn, 5, &unknown_transaction()).await;
    (produced.responses[0].partition_responses[0].error_code, ended.error_code)
}

/// Before any cut, the brokers' answers about transactions pass unchanged: the gateway answers
/// for a transaction only on a route that moved to another cluster.
#[tokio::test(start_paused = true)]
async fn transactional_errors_pass_unchanged_on_a_route_that_never_moved() {
    let gateway = Gateway::new(settings());
    let (mut client, mut broker, _pumped) = gateway.connect();
    let unchanged = (INVALID_PRODUCER_ID_MAPPING, INVALID_PRODUCER_ID_MAPPING);
    assert_eq!(unknown_transaction_errors(&mut client, &mut broker, false).await, unchanged);
    let (offsets, unknown) = txn_offset_commit(5, 3);
    client.write_all(&offsets).await.unwrap();
    answer_one(&mut broker, ApiKey::TxnOffsetCommit, 5, &unknown).await;
    assert_eq!(txn_offset_commit_error(&mut client, 5).await, (3, INVALID_PRODUCER_ID_MAPPING));
}

/// After a cut, offsets committed in a transaction the new cluster never saw
/// (`sendOffsetsToTransaction`), which its group coordinator refuses with
/// INVALID_PRODUCER_ID_MAPPING (fatal for the Java client), are made abortable for clients that
/// abort on TRANSACTION_ABORTABLE (v4 and later); earlier versions' answers pass unchanged. The
/// answers of requests sent back to back come in their order.
#[tokio::test(start_paused = true)]
async fn after_a_cut_offsets_of_a_transaction_the_new_cluster_never_saw_are_abortable() {
    let gateway = Gateway::new(settings());
    let (mut client, mut dialled, _pumped) = moved(&gateway, 1).await;
    let mut destination = dialled.remove(0);
    let sent = [(5, 1, TRANSACTION_ABORTABLE), (3, 2, INVALID_PRODUCER_ID_MAPPING), (4, 3, TRANSACTION_ABORTABLE)];
    for (version, correlation_id, _) in sent {
        client.write_all(&txn_offset_commit(version, correlation_id).0).await.unwrap();
    }
    for (version, _, _) in sent {
        answer_one(&mut destination, ApiKey::TxnOffsetCommit, version, &txn_offset_commit(version, 0).1).await;
    }
    for (version, correlation_id, expected) in sent {
        assert_eq!(txn_offset_commit_error(&mut client, version).await, (correlation_id, expected), "v{version}");
    }
}

/// After a cut, a KIP-848 group member's heartbeat (with its member epoch) to a new cluster that
/// never saw its group, answered GROUP_ID_NOT_FOUND (fatal for the Java 4.x consumer), reaches
/// the client as UNKNOWN_MEMBER_ID, on which it joins again.
#[tokio::test(start_paused = true)]
async fn after_a_cut_a_heartbeat_for_a_group_the_new_cluster_never_saw_makes_the_member_rejoin() {
    use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId};
    let (group_id_not_found, unknown_member_id) = (69, 25);
    let heartbeat = |correlation_id| {
        let request = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("orders-app")))
            .with_member_epoch(3);
        frame(ApiKey::ConsumerGroupHeartbeat, 0, correlation_id, &request)
    };
    let not_found = ConsumerGroupHeartbeatResponse::default().with_error_code(group_id_not_found);
    let gateway = Gateway::new(settings());
    let (mut client, mut dialled, _pumped) = moved(&gateway, 1).await;
    let answer: ConsumerGroupHeartbeatResponse =
        exchange(&mut client, &mut dialled[0], &heartbeat(1), ApiKey::ConsumerGroupHeartbeat, 0, &not_found).await;
    assert_eq!(answer.error_code, unknown_member_id);
}

/// After a cut, a Java 4.x producer's transaction that the new cluster never saw is made
/// abortable, on Produce and on the commit: the client aborts it and goes on, instead of
/// failing fatally on INVALID_PRODUCER_ID_MAPPING.
#[tokio::test(start_paused = true)]
async fn after_a_cut_a_transaction_the_new_cluster_never_saw_is_abortable() {
    let gateway = Gateway::new(settings());
    let (mut client, mut dialled, _pumped) = moved(&gateway, 1).await;
    let abortable = (TRANSACTION_ABORTABLE, TRANSACTION_ABORTABLE);
    assert_eq!(unknown_transaction_errors(&mut client, &mut dialled[0], true).await, abortable);
}

/// After a cut, the abort of a transaction the new cluster never saw is answered with success
/// and a producer id the gateway asked the new cluster for, on a broker connection of its own,
/// with the client's transactional id and the transaction timeout it initialised with; the
/// client then carries on with that producer id.
#[tokio::test(start_paused = true)]
async fn after_a_cut_an_abort_the_new_cluster_never_saw_gets_its_new_producer_id() {
    use kafka_protocol::messages::{EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse, TransactionalId};
    use kafka_protocol::protocol::Decodable;
    let gateway = Gateway::new(settings());
    let (mut client, mut dialled, _pumped) = under_way(&gateway, 2);
    let init = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("orders"))))
        .with_transaction_timeout_ms(30_000);
    client.write_all(&frame(ApiKey::InitProducerId, 5, 1, &init)).await.unwrap();
    assert_eq!(answers(&mut client, 1).await, vec![1]);
    cut_under(&gateway, &mut client).await;
    let (mut destination, mut own) = (dialled.remove(0), dialled.remove(0));
    client.write_all(&end_txn(5, 2, false)).await.unwrap();
    answer_one(&mut destination, ApiKey::EndTxn, 5, &unknown_transaction()).await;
    let given = InitProducerIdResponse::default().with_producer_id(7.into()).with_producer_epoch(3);
    let mut asked = answer_one(&mut own, ApiKey::InitProducerId, 4, &given).await;
    kafka_protocol::messages::RequestHeader::decode(&mut asked, ApiKey::InitProducerId.request_header_version(4))
        .unwrap();
    let asked = InitProducerIdRequest::decode(&mut asked, 4).unwrap();
    assert_eq!(asked.transactional_id.map(|id| id.0.to_string()), Some("orders".into()));
    assert_eq!(asked.transaction_timeout_ms, 30_000);
    let answer: EndTxnResponse = decode_answer(ApiKey::EndTxn, 5, read_frame(&mut client).await.unwrap());
    assert_eq!((answer.error_code, answer.producer_id.0, answer.producer_epoch), (0, 7, 3));
    client.write_all(&produce(3)).await.unwrap();
    let _destination = broker(destination, Duration::ZERO);
    assert_eq!(answers(&mut client, 1).await, vec![3], "the connection carries on");
}

/// When the new cluster cannot give a producer id yet (its coordinator is loading), the abort is
/// answered COORDINATOR_NOT_AVAILABLE, which the client retries after looking its coordinator up.
#[tokio::test(start_paused = true)]
async fn an_abort_is_retried_while_the_new_cluster_cannot_give_a_producer_id() {
    use kafka_protocol::messages::{EndTxnResponse, InitProducerIdResponse};
    let gateway = Gateway::new(settings());
    let (mut client, mut dialled, _pumped) = moved(&gateway, 2).await;
    let (mut destination, mut own) = (dialled.remove(0), dialled.remove(0));
    client.write_all(&end_txn(5, 1, false)).await.unwrap();
    answer_one(&mut destination, ApiKey::EndTxn, 5, &unknown_transaction()).await;
    let loading = InitProducerIdResponse::default().with_error_code(14);
    answer_one(&mut own, ApiKey::InitProducerId, 4, &loading).await;
    let answer: EndTxnResponse = decode_answer(ApiKey::EndTxn, 5, read_frame(&mut client).await.unwrap());
    assert_eq!(answer.error_code, 15, "COORDINATOR_NOT_AVAILABLE");
}

/// An older client (EndTxn before v5: Java 3.x) gets a new producer id by its own epoch bump;
/// its commit's error passes (abortable for it), and its abort is answered as done, so it
/// forgets the aborted transaction's partitions before its next one.
#[tokio::test(start_paused = true)]
async fn after_a_cut_an_older_client_s_abort_is_answered_as_done() {
    use kafka_protocol::messages::EndTxnResponse;
    let gateway = Gateway::new(settings());
    let (mut client, mut dialled, _pumped) = moved(&gateway, 1).await;
    let destination = &mut dialled[0];
    for (correlation_id, committed, expected) in [(1, true, INVALID_PRODUCER_ID_MAPPING), (2, false, 0)] {
        let end = end_txn(4, correlation_id, committed);
        let answer: EndTxnResponse =
            exchange(&mut client, destination, &end, ApiKey::EndTxn, 4, &unknown_transaction()).await;
        assert_eq!(answer.error_code, expected, "committed: {committed}");
    }
}
