//! Writes the seed corpora in `fuzz/corpus/<target>/`: real requests and responses of common
//! versions encoded with the `kafka-protocol` crate, the example configurations, and v1/v2
//! PROXY headers. Deterministic, so running it again rewrites the same files:
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::describe_quorum_request::{PartitionData as QuorumPartition, TopicData as QuorumTopic};
use kafka_protocol::messages::describe_quorum_response::{Listener, Node};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    fetch_response, produce_response, share_acknowledge_response, share_fetch_response, ApiKey, ApiVersionsRequest,
    ApiVersionsResponse, BrokerId, ConsumerGroupHeartbeatRequest, DescribeClusterRequest, DescribeClusterResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, DescribeQuorumRequest, DescribeQuorumResponse, FetchRequest,
    FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest, JoinGroupRequest,
    LeaveGroupRequest, ListOffsetsRequest, MetadataRequest, MetadataResponse, OffsetCommitRequest, OffsetFetchRequest,
    ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, ShareAcknowledgeResponse, ShareFetchResponse,
    SyncGroupRequest, TopicName, TransactionalId,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use switchyard_fuzz::rewrite_prefix;

fn s(text: &'static str) -> StrBytes {
    StrBytes::from_static_str(text)
}

fn topic(name: &'static str) -> TopicName {
    TopicName(s(name))
}

/// A request body: header and message, without the size prefix.
fn request<R: Encodable>(api_key: ApiKey, version: i16, correlation_id: i32, message: &R) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(s("seed-client")));
    let mut out = BytesMut::new();
    header.encode(&mut out, api_key.request_header_version(version)).expect("a request header");
    message.encode(&mut out, version).expect("a request");
    out.to_vec()
}

/// A response body: header and message, without the size prefix.
fn response<R: Encodable>(api_key: ApiKey, version: i16, message: &R) -> Vec<u8> {
    let mut out = BytesMut::new();
    let header = ResponseHeader::default().with_correlation_id(7);
    header.encode(&mut out, api_key.response_header_version(version)).expect("a response header");
    message.encode(&mut out, version).expect("a response");
    out.to_vec()
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_i32(body.len() as i32);
    out.extend_from_slice(body);
    out.to_vec()
}

/// One small record batch, as a producer sends it.
fn records() -> Bytes {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::from_static(b"value")),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, &[record], &options).expect("a record batch");
    buf.freeze()
}

fn produce_request(acks: i16, transactional_id: Option<&'static str>) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_transactional_id(transactional_id.map(|t| TransactionalId(s(t))))
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic("orders"))
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(records()))])])
}

fn fetch_request() -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_session_id(3)
        .with_session_epoch(1)
        .with_topics(vec![FetchTopic::default().with_topic(topic("orders")).with_partitions(vec![
            FetchPartition::default().with_partition(0).with_fetch_offset(42).with_partition_max_bytes(1 << 20),
        ])])
}

fn metadata_request() -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(topic("orders")))]))
        .with_allow_auto_topic_creation(true)
}

fn find_coordinator_request(version: i16) -> FindCoordinatorRequest {
    if version >= 4 {
        FindCoordinatorRequest::default().with_key_type(0).with_coordinator_keys(vec![s("group-1"), s("group-2")])
    } else {
        FindCoordinatorRequest::default().with_key(s("group-1"))
    }
}

fn describe_configs_request() -> DescribeConfigsRequest {
    DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
        .with_resource_type(4)
        .with_resource_name(s("1"))
        .with_configuration_keys(None)])
}

fn describe_quorum_request() -> DescribeQuorumRequest {
    DescribeQuorumRequest::default().with_topics(vec![QuorumTopic::default()
        .with_topic_name(topic("__cluster_metadata"))
        .with_partitions(vec![QuorumPartition::default().with_partition_index(0)])])
}

/// Requests of common versions: (file name, request body).
fn requests() -> Vec<(String, Vec<u8>)> {
    let mut all = vec![
        ("metadata_v1".into(), request(ApiKey::Metadata, 1, 1, &metadata_request())),
        ("metadata_v12".into(), request(ApiKey::Metadata, 12, 2, &metadata_request())),
        ("describe_cluster_v1".into(), request(ApiKey::DescribeCluster, 1, 3, &DescribeClusterRequest::default())),
        ("produce_v9_acks1_txn".into(), request(ApiKey::Produce, 9, 4, &produce_request(1, Some("txn-1")))),
        ("produce_v12_acks_all".into(), request(ApiKey::Produce, 12, 5, &produce_request(-1, None))),
        ("produce_v12_acks0".into(), request(ApiKey::Produce, 12, 6, &produce_request(0, None))),
        ("produce_v3_acks1".into(), request(ApiKey::Produce, 3, 7, &produce_request(1, None))),
        ("fetch_v12".into(), request(ApiKey::Fetch, 12, 8, &fetch_request())),
        ("fetch_v16".into(), request(ApiKey::Fetch, 16, 9, &fetch_request())),
        ("api_versions_v3".into(), request(ApiKey::ApiVersions, 3, 10, &api_versions_request())),
        ("api_versions_v4".into(), request(ApiKey::ApiVersions, 4, 11, &api_versions_request())),
        ("describe_configs_v4".into(), request(ApiKey::DescribeConfigs, 4, 12, &describe_configs_request())),
        ("describe_quorum_v2".into(), request(ApiKey::DescribeQuorum, 2, 13, &describe_quorum_request())),
    ];
    for version in [1, 3, 4, 6] {
        all.push((
            format!("find_coordinator_v{version}"),
            request(ApiKey::FindCoordinator, version, 20 + i32::from(version), &find_coordinator_request(version)),
        ));
    }
    all
}

fn api_versions_request() -> ApiVersionsRequest {
    ApiVersionsRequest::default().with_client_software_name(s("seed")).with_client_software_version(s("1.0"))
}

/// A raw request body whose header names an ApiVersions version the gateway cannot read.
fn api_versions_v5() -> Vec<u8> {
    let mut body = request(ApiKey::ApiVersions, 4, 30, &api_versions_request());
    body[2..4].copy_from_slice(&5i16.to_be_bytes());
    body
}

/// Requests a fence in mode `error` answers: (file name, request body).
fn fenced_requests() -> Vec<(String, Vec<u8>)> {
    let group = || GroupId(s("group-1"));
    let mut all = vec![
        ("produce_v9".into(), request(ApiKey::Produce, 9, 1, &produce_request(1, Some("txn-1")))),
        ("produce_v12".into(), request(ApiKey::Produce, 12, 2, &produce_request(-1, None))),
        ("fetch_v12".into(), request(ApiKey::Fetch, 12, 3, &fetch_request())),
        ("fetch_v16".into(), request(ApiKey::Fetch, 16, 4, &fetch_request())),
        (
            "list_offsets_v7".into(),
            request(
                ApiKey::ListOffsets,
                7,
                5,
                &ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
                    ListOffsetsTopic::default().with_name(topic("orders")).with_partitions(vec![
                        ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1),
                    ]),
                ]),
            ),
        ),
        (
            "offset_commit_v8".into(),
            request(
                ApiKey::OffsetCommit,
                8,
                6,
                &OffsetCommitRequest::default()
                    .with_group_id(group())
                    .with_generation_id_or_member_epoch(1)
                    .with_topics(vec![OffsetCommitRequestTopic::default().with_name(topic("orders")).with_partitions(
                        vec![OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(42)],
                    )]),
            ),
        ),
        (
            "offset_fetch_v7".into(),
            request(
                ApiKey::OffsetFetch,
                7,
                7,
                &OffsetFetchRequest::default().with_group_id(group()).with_topics(Some(vec![
                    OffsetFetchRequestTopic::default().with_name(topic("orders")).with_partition_indexes(vec![0, 1]),
                ])),
            ),
        ),
        (
            "offset_fetch_v8".into(),
            request(
                ApiKey::OffsetFetch,
                8,
                8,
                &OffsetFetchRequest::default()
                    .with_groups(vec![OffsetFetchRequestGroup::default().with_group_id(group()).with_topics(None)]),
            ),
        ),
        (
            "join_group_v5".into(),
            request(
                ApiKey::JoinGroup,
                5,
                9,
                &JoinGroupRequest::default().with_group_id(group()).with_protocol_type(s("consumer")),
            ),
        ),
        (
            "sync_group_v4".into(),
            request(ApiKey::SyncGroup, 4, 10, &SyncGroupRequest::default().with_group_id(group())),
        ),
        (
            "heartbeat_v4".into(),
            request(
                ApiKey::Heartbeat,
                4,
                11,
                &HeartbeatRequest::default().with_group_id(group()).with_generation_id(3),
            ),
        ),
        (
            "leave_group_v5".into(),
            request(ApiKey::LeaveGroup, 5, 12, &LeaveGroupRequest::default().with_group_id(group())),
        ),
        (
            "consumer_group_heartbeat_v0".into(),
            request(
                ApiKey::ConsumerGroupHeartbeat,
                0,
                13,
                &ConsumerGroupHeartbeatRequest::default().with_group_id(group()).with_member_epoch(0),
            ),
        ),
    ];
    for version in [1, 4] {
        all.push((
            format!("find_coordinator_v{version}"),
            request(ApiKey::FindCoordinator, version, 20, &find_coordinator_request(version)),
        ));
    }
    all
}

fn metadata_response() -> MetadataResponse {
    MetadataResponse::default()
        .with_cluster_id(Some(s("q1Sh-9_ISia_zwGINzRvyQ")))
        .with_controller_id(BrokerId(1))
        .with_brokers(
            [1, 2, 100, 4000]
                .into_iter()
                .map(|id| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(id))
                        .with_host(s("kafka-real.internal"))
                        .with_port(9092 + id)
                        .with_rack(Some(s("rack-a")))
                })
                .collect(),
        )
        .with_topics(vec![MetadataResponseTopic::default().with_name(Some(topic("orders"))).with_partitions(vec![
            MetadataResponsePartition::default()
                .with_partition_index(0)
                .with_leader_id(BrokerId(1))
                .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
                .with_isr_nodes(vec![BrokerId(1)]),
        ])])
}

fn describe_cluster_response() -> DescribeClusterResponse {
    DescribeClusterResponse::default()
        .with_cluster_id(s("q1Sh-9_ISia_zwGINzRvyQ"))
        .with_controller_id(BrokerId(2))
        .with_brokers(
            [0, 2, 9]
                .into_iter()
                .map(|id| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(id))
                        .with_host(s("kafka-real.internal"))
                        .with_port(9092)
                        .with_rack(None)
                })
                .collect(),
        )
}

fn find_coordinator_response(version: i16) -> FindCoordinatorResponse {
    if version >= 4 {
        FindCoordinatorResponse::default().with_coordinators(vec![
            Coordinator::default()
                .with_key(s("group-1"))
                .with_node_id(BrokerId(2))
                .with_host(s("kafka-2.internal"))
                .with_port(9094),
            Coordinator::default()
                .with_key(s("group-2"))
                .with_node_id(BrokerId(55))
                .with_host(s("kafka-55"))
                .with_port(1),
            Coordinator::default().with_key(s("group-3")).with_node_id(BrokerId(-1)).with_port(-1).with_error_code(15),
        ])
    } else {
        FindCoordinatorResponse::default().with_node_id(BrokerId(1)).with_host(s("kafka-1.internal")).with_port(9093)
    }
}

fn produce_response(with_endpoints: bool) -> ProduceResponse {
    let response = ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
        .with_name(topic("orders"))
        .with_partition_responses(vec![PartitionProduceResponse::default()
            .with_index(0)
            .with_error_code(if with_endpoints { 6 } else { 0 })
            .with_base_offset(1000)])]);
    if !with_endpoints {
        return response;
    }
    response.with_node_endpoints(vec![produce_response::NodeEndpoint::default()
        .with_node_id(BrokerId(2))
        .with_host(s("kafka-2.internal"))
        .with_port(9094)
        .with_rack(Some(s("rack-b")))])
}

fn fetch_response(with_endpoints: bool) -> FetchResponse {
    let response = FetchResponse::default().with_session_id(3).with_responses(vec![
        fetch_response::FetchableTopicResponse::default().with_topic(topic("orders")).with_partitions(vec![
            fetch_response::PartitionData::default()
                .with_partition_index(0)
                .with_high_watermark(43)
                .with_records(Some(records())),
        ]),
    ]);
    if !with_endpoints {
        return response;
    }
    response.with_node_endpoints(vec![fetch_response::NodeEndpoint::default()
        .with_node_id(BrokerId(1000))
        .with_host(s("kafka-1000.internal"))
        .with_port(10092)])
}

fn api_versions_response() -> ApiVersionsResponse {
    let api = |key: ApiKey, min: i16, max: i16| {
        ApiVersion::default().with_api_key(key as i16).with_min_version(min).with_max_version(max)
    };
    ApiVersionsResponse::default().with_api_keys(vec![
        api(ApiKey::Produce, 3, 13),
        api(ApiKey::Fetch, 4, 18),
        api(ApiKey::Metadata, 0, 14),
        api(ApiKey::ApiVersions, 0, 5),
        api(ApiKey::DescribeConfigs, 0, 4),
        api(ApiKey::JoinGroup, 0, 9),
    ])
}

fn describe_configs_response() -> DescribeConfigsResponse {
    let config = |name: &'static str, value: &'static str| {
        DescribeConfigsResourceResult::default().with_name(s(name)).with_value(Some(s(value)))
    };
    DescribeConfigsResponse::default().with_results(vec![
        DescribeConfigsResult::default().with_resource_type(4).with_resource_name(s("1")).with_configs(vec![
            config("advertised.listeners", "PLAINTEXT://kafka-1.internal:9093,EXTERNAL://kafka-1.example.com:19093")
                .with_synonyms(vec![DescribeConfigsSynonym::default()
                    .with_name(s("advertised.listeners"))
                    .with_value(Some(s("PLAINTEXT://kafka-1.internal:9093")))
                    .with_source(1)]),
            config("listeners", "PLAINTEXT://0.0.0.0:9093,CONTROLLER://0.0.0.0:9193"),
            config("controller.quorum.voters", "1@kafka-1.internal:9193"),
            config("log.retention.hours", "168"),
            config("some.custom.value", "see kafka-0.internal:9092 for details"),
        ]),
        DescribeConfigsResult::default()
            .with_resource_type(2)
            .with_resource_name(s("orders"))
            .with_configs(vec![config("cleanup.policy", "delete")]),
    ])
}

fn describe_quorum_response() -> DescribeQuorumResponse {
    DescribeQuorumResponse::default().with_nodes(vec![Node::default().with_node_id(BrokerId(1)).with_listeners(vec![
        Listener::default().with_name(s("CONTROLLER")).with_host(s("kafka-1.internal")).with_port(9193),
    ])])
}

fn share_fetch_response() -> ShareFetchResponse {
    ShareFetchResponse::default().with_node_endpoints(vec![share_fetch_response::NodeEndpoint::default()
        .with_node_id(BrokerId(1))
        .with_host(s("kafka-1.internal"))
        .with_port(9093)])
}

fn share_acknowledge_response() -> ShareAcknowledgeResponse {
    ShareAcknowledgeResponse::default().with_node_endpoints(vec![share_acknowledge_response::NodeEndpoint::default()
        .with_node_id(BrokerId(7))
        .with_host(s("kafka-7.internal"))
        .with_port(9099)])
}

/// Responses the gateway decodes: (file name, fuzz input = prefix + response body).
fn responses() -> Vec<(String, Vec<u8>)> {
    let mut all = Vec::new();
    let mut add = |name: String, api_key: ApiKey, version: i16, flags: u8, body: Vec<u8>| {
        let mut input = rewrite_prefix(api_key, version, flags).to_vec();
        input.extend_from_slice(&body);
        all.push((name, input));
    };
    for version in [1, 9, 12, 13] {
        add(
            format!("metadata_v{version}"),
            ApiKey::Metadata,
            version,
            0,
            response(ApiKey::Metadata, version, &metadata_response()),
        );
    }
    for version in [0, 1, 2] {
        let body = response(ApiKey::DescribeCluster, version, &describe_cluster_response());
        add(format!("describe_cluster_v{version}"), ApiKey::DescribeCluster, version, 1, body);
    }
    for version in [1, 3, 4, 6] {
        let body = response(ApiKey::FindCoordinator, version, &find_coordinator_response(version));
        add(format!("find_coordinator_v{version}"), ApiKey::FindCoordinator, version, 0, body);
    }
    for (version, endpoints) in [(10, true), (12, false), (12, true)] {
        let body = response(ApiKey::Produce, version, &produce_response(endpoints));
        add(format!("produce_v{version}_endpoints_{endpoints}"), ApiKey::Produce, version, 0, body);
    }
    for (version, endpoints) in [(16, true), (17, false), (18, true)] {
        let body = response(ApiKey::Fetch, version, &fetch_response(endpoints));
        add(format!("fetch_v{version}_endpoints_{endpoints}"), ApiKey::Fetch, version, 2, body);
    }
    for version in [0, 3, 4] {
        let body = response(ApiKey::ApiVersions, version, &api_versions_response());
        add(format!("api_versions_v{version}"), ApiKey::ApiVersions, version, 0, body);
    }
    for version in [1, 4] {
        let body = response(ApiKey::DescribeConfigs, version, &describe_configs_response());
        add(format!("describe_configs_v{version}"), ApiKey::DescribeConfigs, version, 0, body);
    }
    add(
        "describe_quorum_v2".into(),
        ApiKey::DescribeQuorum,
        2,
        0,
        response(ApiKey::DescribeQuorum, 2, &describe_quorum_response()),
    );
    add("share_fetch_v1".into(), ApiKey::ShareFetch, 1, 2, response(ApiKey::ShareFetch, 1, &share_fetch_response()));
    let body = response(ApiKey::ShareAcknowledge, 1, &share_acknowledge_response());
    add("share_acknowledge_v1".into(), ApiKey::ShareAcknowledge, 1, 0, body);
    all
}

/// v1 and v2 PROXY headers, each followed by the start of a Kafka stream.
fn proxy_headers() -> Vec<(String, Vec<u8>)> {
    let kafka = framed(&request(ApiKey::ApiVersions, 3, 1, &api_versions_request()));
    let v2 = |command: u8, family: u8, addresses: &[u8], tlvs: &[u8]| {
        let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        header.extend_from_slice(&[command, family]);
        header.extend_from_slice(&((addresses.len() + tlvs.len()) as u16).to_be_bytes());
        header.extend_from_slice(addresses);
        header.extend_from_slice(tlvs);
        header
    };
    let ipv4 = [10, 1, 2, 3, 127, 0, 0, 1, 0xc7, 0x38, 0x23, 0x84];
    let mut ipv6 = Vec::new();
    ipv6.extend_from_slice(&"2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
    ipv6.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    ipv6.extend_from_slice(&[0xc7, 0x38, 0x23, 0x84]);
    let mut unix = vec![0u8; 216];
    unix[..9].copy_from_slice(b"/tmp/src\0");
    unix[108..117].copy_from_slice(b"/tmp/dst\0");
    // An ALPN TLV (0x01) and an authority TLV (0x02).
    let tlvs = [0x01, 0, 2, b'h', b'2', 0x02, 0, 11, b'e', b'x', b'a', b'm', b'p', b'l', b'e', b'.', b'c', b'o', b'm'];
    let with_kafka = |mut header: Vec<u8>| {
        header.extend_from_slice(&kafka);
        header
    };
    vec![
        ("v1_tcp4".into(), with_kafka(b"PROXY TCP4 10.1.2.3 127.0.0.1 51000 9092\r\n".to_vec())),
        ("v1_tcp6".into(), with_kafka(b"PROXY TCP6 2001:db8::1 ::1 51000 9092\r\n".to_vec())),
        ("v1_unknown".into(), with_kafka(b"PROXY UNKNOWN\r\n".to_vec())),
        ("v1_unknown_with_addresses".into(), b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n".to_vec()),
        ("v2_proxy_tcp4".into(), with_kafka(v2(0x21, 0x11, &ipv4, &[]))),
        ("v2_proxy_tcp4_tlvs".into(), with_kafka(v2(0x21, 0x11, &ipv4, &tlvs))),
        ("v2_proxy_tcp6".into(), with_kafka(v2(0x21, 0x21, &ipv6, &[]))),
        ("v2_local".into(), with_kafka(v2(0x20, 0x00, &[], &[]))),
        ("v2_local_with_addresses".into(), v2(0x20, 0x11, &ipv4, &[])),
        ("v2_proxy_udp4".into(), v2(0x21, 0x12, &ipv4, &[])),
        ("v2_proxy_unix".into(), v2(0x21, 0x31, &unix, &[])),
        ("kafka_not_proxy".into(), kafka.clone()),
    ]
}

fn write(dir: &Path, seeds: Vec<(String, Vec<u8>)>) {
    fs::create_dir_all(dir).expect("creating a corpus directory");
    let total: usize = seeds.iter().map(|(_, bytes)| bytes.len()).sum();
    for (name, bytes) in &seeds {
        fs::write(dir.join(name), bytes).expect("writing a seed");
    }
    println!("{}: {} seeds, {total} bytes", dir.display(), seeds.len());
}

fn main() {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let corpus = fuzz.join("corpus");

    // request_frames: one step byte (the read size of the incremental pass), then frames.
    let mut frames: Vec<(String, Vec<u8>)> = requests()
        .into_iter()
        .enumerate()
        .map(|(i, (name, body))| {
            let mut input = vec![(i * 7 % 64) as u8];
            input.extend_from_slice(&framed(&body));
            (name, input)
        })
        .collect();
    let mut pipelined = vec![5u8];
    for (_, body) in requests().iter().take(6) {
        pipelined.extend_from_slice(&framed(body));
    }
    pipelined.extend_from_slice(&framed(&api_versions_v5())[..9]);
    frames.push(("pipelined_then_partial".into(), pipelined));
    let mut unsupported = vec![3u8];
    unsupported.extend_from_slice(&framed(&api_versions_v5()));
    frames.push(("api_versions_v5".into(), unsupported));
    write(&corpus.join("request_frames"), frames);

    write(&corpus.join("fence_answer"), fenced_requests());
    write(&corpus.join("rewrite_response"), responses());
    write(&corpus.join("proxy_header"), proxy_headers());

    let root = fuzz.parent().expect("fuzz/ is inside the repository");
    let mut configs = vec![(
        "default.yaml".to_string(),
        fs::read(root.join("src/config/default.yaml")).expect("reading the built-in default config"),
    )];
    let mut examples: Vec<PathBuf> = fs::read_dir(root.join("examples"))
        .expect("reading examples/")
        .map(|entry| entry.expect("an examples/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    examples.sort();
    for path in examples {
        let name = path.file_name().expect("a file name").to_string_lossy().into_owned();
        let text = fs::read_to_string(&path).expect("reading an example config");
        // One example keeps its comments; the others lose their comment lines, to keep the
        // committed corpus small.
        let text = if name == "single-route.yaml" {
            text
        } else {
            text.lines().filter(|line| !line.trim_start().starts_with('#')).map(|line| format!("{line}\n")).collect()
        };
        configs.push((name, text.into_bytes()));
    }
    configs.push(("fuzz_fixture.yaml".into(), switchyard_fuzz::CONFIG.as_bytes().to_vec()));
    write(&corpus.join("config_parse"), configs);
}
