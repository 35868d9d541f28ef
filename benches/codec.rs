//! Micro-benchmarks of the gateway's per-frame work: `cargo bench --bench codec`.
//!
//! - `frames/*`: what the request direction does for every read batch: find each frame with
//!   `frame_at` and peek its header with `peek_request`, over a buffer of Produce requests
//!   shaped like the Java producer's (v12, `acks=all`, 16 KiB batches of 1 KiB records).
//! - `rewrite/*`: the responses the gateway decodes, through the call the pump makes for each:
//!   `rewrite_response` on a Metadata v12 answer (3 brokers, 50 topics x 6 partitions; every
//!   broker address rewritten and the frame encoded again) and on a Produce v12 answer, and
//!   `rewrite_records_response` on a Fetch v17 answer, both carrying no leader endpoints
//!   (decoded, found unchanged, forwarded as they were): the common case on the data path.
//!
//! The whole-system comparison with direct Kafka is `cargo xtask bench`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use switchyard::cluster::Advertising;
use switchyard::protocol::{frame_at, peek_request, FrameLimits, FrameStatus, InFlight, MIN_REQUEST_BODY, SIZE_PREFIX};
use switchyard::rewrite::{handling, rewrite_records_response, rewrite_response, RecordsAnswer, ResponseBody};
use switchyard::routing::{Route, Upstream};
use switchyard::telemetry::Metrics;
use tokio_util::sync::CancellationToken;

const PRODUCE_VERSION: i16 = 12;
const FETCH_VERSION: i16 = 17;
const METADATA_VERSION: i16 = 12;
const RECORD_SIZE: usize = 1024;
/// The Java producer's default `batch.size`.
const BATCH_BYTES: usize = 16 * 1024;

// ---- building frames ---------------------------------------------------------------------

/// A record batch of `count` records of `RECORD_SIZE` bytes, as a producer sends it.
fn record_batch(count: usize) -> Bytes {
    let value = Bytes::from(vec![0x5a; RECORD_SIZE]);
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: 7,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: 1_700_000_000_000 + i as i64,
            key: None,
            value: Some(value.clone()),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encoding a record batch");
    buf.freeze()
}

/// A request frame (size prefix included).
fn request_frame<R: Encodable>(api_key: ApiKey, version: i16, correlation_id: i32, body: &R) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("producer-1")));
    let mut out = BytesMut::new();
    out.put_i32(0);
    header.encode(&mut out, api_key.request_header_version(version)).expect("encoding a request header");
    body.encode(&mut out, version).expect("encoding a request");
    let size = (out.len() - SIZE_PREFIX) as i32;
    out[..SIZE_PREFIX].copy_from_slice(&size.to_be_bytes());
    out.freeze()
}

/// A response frame (size prefix included).
fn response_frame<R: Encodable>(api_key: ApiKey, version: i16, correlation_id: i32, body: &R) -> Bytes {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let mut out = BytesMut::new();
    out.put_i32(0);
    header.encode(&mut out, api_key.response_header_version(version)).expect("encoding a response header");
    body.encode(&mut out, version).expect("encoding a response");
    let size = (out.len() - SIZE_PREFIX) as i32;
    out[..SIZE_PREFIX].copy_from_slice(&size.to_be_bytes());
    out.freeze()
}

/// `frames` Produce requests, each with one `batch` for each of `partitions` partitions.
fn produce_buffer(frames: usize, partitions: i32, batch: &Bytes) -> Bytes {
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("bench-throughput")))
            .with_partition_data(
                (0..partitions)
                    .map(|p| PartitionProduceData::default().with_index(p).with_records(Some(batch.clone())))
                    .collect(),
            ),
    ]);
    let mut buf = BytesMut::new();
    for i in 0..frames {
        buf.extend_from_slice(&request_frame(ApiKey::Produce, PRODUCE_VERSION, i as i32, &request));
    }
    buf.freeze()
}

/// What `Requests::scan` does for a read batch: every complete frame found and peeked.
fn scan(buf: &[u8], limits: FrameLimits, read_at: Instant) -> (usize, usize) {
    let (mut end, mut expecting) = (0, 0);
    while let Ok(FrameStatus::Complete(len)) = frame_at(&buf[end..], limits) {
        let request = peek_request(&buf[end + SIZE_PREFIX..end + len], read_at).expect("a valid request");
        expecting += usize::from(request.expects_response);
        end += len;
    }
    (end, expecting)
}

fn bench_frames(c: &mut Criterion) {
    let limits = FrameLimits { min_body: MIN_REQUEST_BODY, max_body: 100 * 1024 * 1024 };
    let mut group = c.benchmark_group("frames");
    // The producer's steady state: a 16 KiB batch for each of 6 partitions per request.
    let full = record_batch(BATCH_BYTES / RECORD_SIZE - 1);
    // A lightly loaded producer: one record per request.
    let single = record_batch(1);
    for (name, frames, partitions, batch) in
        [("produce_v12_6x16KiB", 64, 6, &full), ("produce_v12_1x1KiB", 1024, 1, &single)]
    {
        let buf = produce_buffer(frames, partitions, batch);
        assert_eq!(scan(&buf, limits, Instant::now()), (buf.len(), frames));
        group.throughput(Throughput::Bytes(buf.len() as u64));
        group.bench_function(format!("{name}/{frames}_frames"), |b| {
            b.iter(|| scan(black_box(&buf), limits, Instant::now()))
        });
    }
    group.finish();
}

// ---- rewriting responses -------------------------------------------------------------------

const CONFIG: &str = r#"
streamingDomains:
  - name: bench
    type: kafka
    kafkaCluster:
      name: bench-cluster
      bootstrapServers:
        - id: plaintext
          endpoint: "127.0.0.1:1"
      nodeIdRanges:
        - name: brokers
          start: 1
          end: 3
routes:
  - name: main
    endpoint: "gateway.example.com:19092"
    bindAddress: 127.0.0.1
    brokerIdentificationStrategy:
      type: port
    streamingDomain:
      name: bench
      bootstrapServerId: plaintext
"#;

/// The route and upstream `rewrite_response` works for. The upstream's periodic refresh is
/// spawned on a runtime that is never driven, so it never runs.
fn route(runtime: &tokio::runtime::Runtime) -> (Route, Arc<Upstream>) {
    let config = switchyard::config::parse("benches/codec.rs", CONFIG).expect("the bench config is valid");
    let shutdown = CancellationToken::new();
    let _entered = runtime.enter();
    let upstream = Upstream::start(
        &config.domains[0],
        config.routes[0].bootstrap_server_id.as_deref(),
        Duration::from_secs(3600),
        Duration::from_secs(1),
        &shutdown,
    )
    .expect("starting the upstream");
    let advertising = Arc::new(Advertising::RouteEndpoint);
    let route = Route::new(&config.routes[0], Arc::clone(&upstream), advertising, &Metrics::new(), &shutdown);
    (route, upstream)
}

/// The in-flight record of a request, as the proxy notes it.
fn in_flight<R: Encodable>(api_key: ApiKey, version: i16, request: &R) -> InFlight {
    let frame = request_frame(api_key, version, 1, request);
    let mut request = peek_request(&frame[SIZE_PREFIX..], Instant::now()).expect("a valid request");
    // As the pump does: the rewrite table says what its answer needs.
    request.handling = handling(api_key, version);
    request
}

fn metadata_response(brokers: i32, topics: usize, partitions: i32) -> MetadataResponse {
    let ids: Vec<BrokerId> = (1..=brokers).map(BrokerId).collect();
    MetadataResponse::default()
        .with_cluster_id(Some(StrBytes::from_static_str("q1Sh-9_ISia_zwGINzRvyQ")))
        .with_controller_id(BrokerId(1))
        .with_brokers(
            (1..=brokers)
                .map(|id| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(id))
                        .with_host(StrBytes::from_static_str("kafka-internal.example.com"))
                        .with_port(9091 + id)
                        .with_rack(Some(StrBytes::from_string(format!("rack-{id}"))))
                })
                .collect(),
        )
        .with_topics(
            (0..topics)
                .map(|t| {
                    MetadataResponseTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(format!("orders-{t:03}")))))
                        .with_partitions(
                            (0..partitions)
                                .map(|p| {
                                    MetadataResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_leader_id(ids[p as usize % ids.len()])
                                        .with_leader_epoch(3)
                                        .with_replica_nodes(ids.clone())
                                        .with_isr_nodes(ids.clone())
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
}

fn produce_response(partitions: i32) -> ProduceResponse {
    ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
        .with_name(TopicName(StrBytes::from_static_str("bench-throughput")))
        .with_partition_responses(
            (0..partitions)
                .map(|p| PartitionProduceResponse::default().with_index(p).with_base_offset(1_000_000 + i64::from(p)))
                .collect(),
        )])
}

fn fetch_response(partitions: i32, batches_per_partition: usize) -> FetchResponse {
    let batch = record_batch(BATCH_BYTES / RECORD_SIZE - 1);
    let records: Bytes = std::iter::repeat_n(batch.as_ref(), batches_per_partition).flatten().copied().collect();
    FetchResponse::default().with_session_id(17).with_responses(vec![FetchableTopicResponse::default()
        .with_topic(TopicName(StrBytes::from_static_str("bench-throughput")))
        .with_partitions(
            (0..partitions)
                .map(|p| {
                    PartitionData::default()
                        .with_partition_index(p)
                        .with_high_watermark(2_000_000)
                        .with_last_stable_offset(2_000_000)
                        .with_records(Some(records.clone()))
                })
                .collect(),
        )])
}

fn bench_rewrite(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    let (route, upstream) = route(&runtime);
    let mut group = c.benchmark_group("rewrite");

    let request = MetadataRequest::default().with_topics(None);
    let metadata = in_flight(ApiKey::Metadata, METADATA_VERSION, &request);
    let frame = response_frame(ApiKey::Metadata, METADATA_VERSION, 1, &metadata_response(3, 50, 6));
    let body = &frame[SIZE_PREFIX..];
    let out = rewrite_response(&route, &upstream, &metadata, ResponseBody::Slice(body)).expect("rewriting metadata");
    assert!(out.is_some(), "the broker addresses must have been rewritten");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("metadata_v12_3_brokers_50x6", |b| {
        b.iter(|| {
            rewrite_response(&route, &upstream, black_box(&metadata), ResponseBody::Slice(black_box(body))).unwrap()
        })
    });

    let produce = in_flight(ApiKey::Produce, PRODUCE_VERSION, &ProduceRequest::default().with_acks(-1));
    let frame = response_frame(ApiKey::Produce, PRODUCE_VERSION, 1, &produce_response(6));
    // Decoded in place from the read buffer, as the proxy does for responses without records.
    let body = &frame[SIZE_PREFIX..];
    assert_eq!(rewrite_response(&route, &upstream, &produce, ResponseBody::Slice(body)).unwrap(), None);
    group.throughput(Throughput::Elements(1));
    group.bench_function("produce_v12_6_partitions_unchanged", |b| {
        b.iter(|| {
            rewrite_response(&route, &upstream, black_box(&produce), ResponseBody::Slice(black_box(body))).unwrap()
        })
    });

    let fetch = in_flight(ApiKey::Fetch, FETCH_VERSION, &FetchRequest::default());
    // The whole frame as shared `Bytes`, as the pump holds an answer with records: decoded by
    // slicing, never copying, the records.
    let frame = response_frame(ApiKey::Fetch, FETCH_VERSION, 1, &fetch_response(6, 4));
    let answer = rewrite_records_response(&route, &upstream, &fetch, &frame).unwrap();
    assert!(matches!(answer, RecordsAnswer::Unchanged), "a Fetch answer without endpoints passes as it came");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("fetch_v17_6x64KiB_unchanged", |b| {
        b.iter(|| rewrite_records_response(&route, &upstream, black_box(&fetch), black_box(&frame)).unwrap())
    });
    group.finish();
}

fn quick() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
}

criterion_group! {
    name = benches;
    config = quick();
    targets = bench_frames, bench_rewrite
}
criterion_main!(benches);
