//! The answers a fenced route gives in place of a broker when its fence mode is `error`.
//!
//! During a switchover a client's request can be parked (mode `hold`) or answered at once with
//! an error the client treats as retriable (mode `error`): it backs off, refreshes metadata or
//! looks its coordinator up again, and retries, by which time the route points at the
//! destination. Only APIs whose retry path is safe and well trodden in every client get an
//! answer here: partition APIs get `NOT_LEADER_OR_FOLLOWER`, group coordinator APIs
//! `NOT_COORDINATOR`, and FindCoordinator `COORDINATOR_NOT_AVAILABLE`. For every other request
//! (Metadata, ApiVersions, transactions, admin APIs, `acks=0` produce...) this returns `None`
//! and the request is held until the fence opens, as in mode `hold`.
//!
//! Building an answer decodes the request with `kafka-protocol`, which is the only way to echo
//! the topics and partitions the client asked about; record data stays a shared slice of the
//! request frame. This runs only while a fence is closed, never on the forwarding path.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{fetch_response, list_offsets_response, offset_fetch_response};
use kafka_protocol::messages::{
    find_coordinator_response, offset_commit_response, produce_response, ApiKey, ConsumerGroupHeartbeatResponse,
    FetchRequest, FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatResponse, JoinGroupResponse,
    LeaveGroupResponse, ListOffsetsRequest, ListOffsetsResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader,
    SyncGroupResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::{encode_response, InFlight, SIZE_PREFIX};

/// The error codes a fence answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FenceCodes {
    /// Partition-level answers (Produce, Fetch, ListOffsets).
    pub partition: i16,
    /// Group answers (JoinGroup, OffsetCommit, ...).
    pub group: i16,
    /// FindCoordinator.
    pub lookup: i16,
}

impl FenceCodes {
    /// The codes every client retries on by its own standard path: offset APIs ask the
    /// partition leader, and NOT_LEADER_OR_FOLLOWER sends the client to metadata for a new one;
    /// group APIs ask the coordinator, and NOT_COORDINATOR sends it to FindCoordinator;
    /// FindCoordinator itself is retried after a backoff on COORDINATOR_NOT_AVAILABLE.
    pub const RETRIABLE: FenceCodes = FenceCodes {
        partition: ResponseError::NotLeaderOrFollower.code(),
        group: ResponseError::NotCoordinator.code(),
        lookup: ResponseError::CoordinatorNotAvailable.code(),
    };

    /// One code for every answer (a configured `fence.errorCode`).
    pub const fn all(code: i16) -> FenceCodes {
        FenceCodes { partition: code, group: code, lookup: code }
    }
}
/// OffsetFetch has a top-level error code from this version on.
const OFFSET_FETCH_TOP_LEVEL_ERROR_SINCE: i16 = 2;
/// OffsetFetch answers per group from this version on.
const OFFSET_FETCH_GROUPS_SINCE: i16 = 8;

/// Whether a fence in mode `error` answers this request itself; the others are held.
pub fn answerable(request: &InFlight) -> bool {
    match request.api_key {
        // `acks=0` expects no answer: turning it away would lose its records without a word.
        ApiKey::Produce => request.expects_response,
        ApiKey::OffsetFetch => request.api_version >= OFFSET_FETCH_TOP_LEVEL_ERROR_SINCE,
        ApiKey::Fetch
        | ApiKey::ListOffsets
        | ApiKey::FindCoordinator
        | ApiKey::OffsetCommit
        | ApiKey::JoinGroup
        | ApiKey::SyncGroup
        | ApiKey::Heartbeat
        | ApiKey::LeaveGroup
        | ApiKey::ConsumerGroupHeartbeat => true,
        _ => false,
    }
}

/// The complete response frame (size prefix included) a fenced route sends for an
/// [`answerable`] request. `frame` is the request frame, from its size prefix on.
pub fn fence_answer(request: &InFlight, frame: Bytes, codes: FenceCodes) -> anyhow::Result<Bytes> {
    let (api_key, version) = (request.api_key, request.api_version);
    let mut body = frame.slice(SIZE_PREFIX..);
    RequestHeader::decode(&mut body, api_key.request_header_version(version))?;
    let reply = Reply { correlation_id: request.correlation_id, api_key, version };
    match api_key {
        ApiKey::Produce => reply.with(produce(ProduceRequest::decode(&mut body, version)?, codes)),
        ApiKey::Fetch => reply.with(fetch(FetchRequest::decode(&mut body, version)?, codes)),
        ApiKey::ListOffsets => reply.with(list_offsets(ListOffsetsRequest::decode(&mut body, version)?, codes)),
        ApiKey::FindCoordinator => {
            reply.with(find_coordinator(FindCoordinatorRequest::decode(&mut body, version)?, version, codes))
        }
        ApiKey::OffsetCommit => reply.with(offset_commit(OffsetCommitRequest::decode(&mut body, version)?, codes)),
        ApiKey::OffsetFetch => {
            reply.with(offset_fetch(OffsetFetchRequest::decode(&mut body, version)?, version, codes))
        }
        ApiKey::JoinGroup => reply.with(JoinGroupResponse::default().with_error_code(codes.group)),
        ApiKey::SyncGroup => reply.with(SyncGroupResponse::default().with_error_code(codes.group)),
        ApiKey::Heartbeat => reply.with(HeartbeatResponse::default().with_error_code(codes.group)),
        ApiKey::LeaveGroup => reply.with(LeaveGroupResponse::default().with_error_code(codes.group)),
        ApiKey::ConsumerGroupHeartbeat => {
            reply.with(ConsumerGroupHeartbeatResponse::default().with_error_code(codes.group))
        }
        other => anyhow::bail!("a fence does not answer {other:?} requests"),
    }
}

/// Who an answer goes to: the request's correlation id, API and version.
struct Reply {
    correlation_id: i32,
    api_key: ApiKey,
    version: i16,
}

impl Reply {
    fn with(&self, message: impl Encodable) -> anyhow::Result<Bytes> {
        let header = ResponseHeader::default().with_correlation_id(self.correlation_id);
        encode_response(&header, &message, self.api_key, self.version)
    }
}

/// One answer topic per requested topic, made by `topic` from the request topic and one
/// answer partition per requested partition, made by `partition`.
fn per_partition<T, P, AT, AP>(
    topics: Vec<T>,
    partitions_of: impl for<'t> Fn(&'t T) -> &'t [P],
    partition: impl Fn(&P) -> AP,
    topic: impl Fn(T, Vec<AP>) -> AT,
) -> Vec<AT> {
    topics
        .into_iter()
        .map(|t| {
            let answers = partitions_of(&t).iter().map(&partition).collect();
            topic(t, answers)
        })
        .collect()
}

/// Every partition written to gets the error.
fn produce(request: ProduceRequest, codes: FenceCodes) -> ProduceResponse {
    let responses = per_partition(
        request.topic_data,
        |t| &t.partition_data,
        |p| {
            produce_response::PartitionProduceResponse::default()
                .with_index(p.index)
                .with_error_code(codes.partition)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1)
        },
        |t, partitions| {
            produce_response::TopicProduceResponse::default()
                .with_name(t.name)
                .with_topic_id(t.topic_id)
                .with_partition_responses(partitions)
        },
    );
    ProduceResponse::default().with_responses(responses)
}

/// Every partition fetched gets the error, in the client's fetch session if it has one: an
/// incremental answer that names only these partitions leaves the session intact.
fn fetch(request: FetchRequest, codes: FenceCodes) -> FetchResponse {
    let responses = per_partition(
        request.topics,
        |t| &t.partitions,
        |p| {
            fetch_response::PartitionData::default()
                .with_partition_index(p.partition)
                .with_error_code(codes.partition)
                .with_high_watermark(-1)
        },
        |t, partitions| {
            fetch_response::FetchableTopicResponse::default()
                .with_topic(t.topic)
                .with_topic_id(t.topic_id)
                .with_partitions(partitions)
        },
    );
    FetchResponse::default().with_session_id(request.session_id).with_responses(responses)
}

fn list_offsets(request: ListOffsetsRequest, codes: FenceCodes) -> ListOffsetsResponse {
    let topics = per_partition(
        request.topics,
        |t| &t.partitions,
        |p| {
            list_offsets_response::ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_error_code(codes.partition)
        },
        |t, partitions| {
            list_offsets_response::ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions)
        },
    );
    ListOffsetsResponse::default().with_topics(topics)
}

/// One error before v4, one per key asked about from v4 on.
fn find_coordinator(request: FindCoordinatorRequest, version: i16, codes: FenceCodes) -> FindCoordinatorResponse {
    let response = FindCoordinatorResponse::default();
    if version < 4 {
        return response.with_error_code(codes.lookup).with_node_id((-1).into()).with_port(-1);
    }
    let coordinators = request
        .coordinator_keys
        .into_iter()
        .map(|key| {
            find_coordinator_response::Coordinator::default()
                .with_key(key)
                .with_node_id((-1).into())
                .with_port(-1)
                .with_error_code(codes.lookup)
        })
        .collect();
    response.with_coordinators(coordinators)
}

fn offset_commit(request: OffsetCommitRequest, codes: FenceCodes) -> OffsetCommitResponse {
    let topics = per_partition(
        request.topics,
        |t| &t.partitions,
        |p| {
            offset_commit_response::OffsetCommitResponsePartition::default()
                .with_partition_index(p.partition_index)
                .with_error_code(codes.group)
        },
        |t, partitions| {
            offset_commit_response::OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_topic_id(t.topic_id)
                .with_partitions(partitions)
        },
    );
    OffsetCommitResponse::default().with_topics(topics)
}

/// A top-level error from v2, one per group from v8. (v0-1 have only per-partition errors and
/// may ask for "all partitions", which cannot be echoed, so those are held.)
fn offset_fetch(request: OffsetFetchRequest, version: i16, codes: FenceCodes) -> OffsetFetchResponse {
    if version < OFFSET_FETCH_GROUPS_SINCE {
        return OffsetFetchResponse::default().with_error_code(codes.group);
    }
    let groups = request
        .groups
        .into_iter()
        .map(|group| {
            offset_fetch_response::OffsetFetchResponseGroup::default()
                .with_group_id(group.group_id)
                .with_error_code(codes.group)
        })
        .collect();
    OffsetFetchResponse::default().with_groups(groups)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::{
        fetch_request, produce_request, GroupId, HeartbeatRequest, MetadataRequest, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::protocol::peek_request;

    fn request_frame(api_key: ApiKey, version: i16, message: &impl Encodable) -> (InFlight, Bytes) {
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(77)
            .with_client_id(Some(StrBytes::from_static_str("test")));
        let header_version = api_key.request_header_version(version);
        let size = header.compute_size(header_version).unwrap() + message.compute_size(version).unwrap();
        let mut out = BytesMut::new();
        out.put_i32(size as i32);
        header.encode(&mut out, header_version).unwrap();
        message.encode(&mut out, version).unwrap();
        let request = peek_request(&out[SIZE_PREFIX..], Instant::now()).unwrap();
        (request, out.freeze())
    }

    fn answer<R: Decodable>((request, frame): (InFlight, Bytes)) -> R {
        assert!(answerable(&request), "{:?} v{} is answered", request.api_key, request.api_version);
        let answer = fence_answer(&request, frame, FenceCodes::RETRIABLE).unwrap();
        let size = i32::from_be_bytes(answer[..4].try_into().unwrap()) as usize;
        assert_eq!(size, answer.len() - 4, "size prefix matches the frame");
        let mut body = answer.slice(4..);
        let header_version = request.api_key.response_header_version(request.api_version);
        let header = ResponseHeader::decode(&mut body, header_version).unwrap();
        assert_eq!(header.correlation_id, 77);
        let response = R::decode(&mut body, request.api_version).unwrap();
        assert!(body.is_empty(), "nothing left over");
        response
    }

    fn produce_request(acks: i16) -> ProduceRequest {
        let partition = produce_request::PartitionProduceData::default()
            .with_index(3)
            .with_records(Some(Bytes::from_static(b"opaque record batch")));
        let topic = produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("orders")))
            .with_partition_data(vec![partition]);
        ProduceRequest::default().with_acks(acks).with_timeout_ms(1000).with_topic_data(vec![topic])
    }

    #[test]
    fn produce_partitions_are_told_to_find_a_new_leader_at_every_version() {
        for version in [3, 9, 12] {
            let response: ProduceResponse = answer(request_frame(ApiKey::Produce, version, &produce_request(-1)));
            let topic = &response.responses[0];
            assert_eq!(topic.name.0.as_str(), "orders");
            assert_eq!(topic.partition_responses[0].index, 3);
            assert_eq!(topic.partition_responses[0].error_code, ResponseError::NotLeaderOrFollower.code());
        }
    }

    #[test]
    fn produce_without_acks_is_held_not_answered() {
        let (request, _) = request_frame(ApiKey::Produce, 9, &produce_request(0));
        assert!(!answerable(&request));
    }

    #[test]
    fn fetch_keeps_the_session_and_errors_each_partition() {
        let partition = fetch_request::FetchPartition::default().with_partition(1);
        let topic = fetch_request::FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("orders")))
            .with_partitions(vec![partition]);
        let request = FetchRequest::default().with_session_id(42).with_session_epoch(3).with_topics(vec![topic]);
        let response: FetchResponse = answer(request_frame(ApiKey::Fetch, 12, &request));
        assert_eq!(response.session_id, 42);
        assert_eq!(response.error_code, 0);
        assert_eq!(response.responses[0].partitions[0].error_code, ResponseError::NotLeaderOrFollower.code());
    }

    #[test]
    fn group_apis_send_the_client_back_to_find_coordinator() {
        let request = HeartbeatRequest::default().with_group_id(GroupId(StrBytes::from_static_str("g")));
        let response: HeartbeatResponse = answer(request_frame(ApiKey::Heartbeat, 4, &request));
        assert_eq!(response.error_code, ResponseError::NotCoordinator.code());

        let request = FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![StrBytes::from_static_str("g")]);
        let response: FindCoordinatorResponse = answer(request_frame(ApiKey::FindCoordinator, 4, &request));
        assert_eq!(response.coordinators[0].error_code, ResponseError::CoordinatorNotAvailable.code());
        assert_eq!(response.coordinators[0].key.as_str(), "g");
    }

    #[test]
    fn a_truncated_request_is_an_error_not_a_panic() {
        let (request, frame) = request_frame(ApiKey::Produce, 9, &produce_request(-1));
        for cut in [SIZE_PREFIX + 8, frame.len() / 2, frame.len() - 1] {
            assert!(fence_answer(&request, frame.slice(..cut), FenceCodes::RETRIABLE).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn metadata_is_held() {
        let (request, _) = request_frame(ApiKey::Metadata, 12, &MetadataRequest::default());
        assert!(!answerable(&request));
    }
}
