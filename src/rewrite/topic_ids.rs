//! Topic ids in requests and answers on a route a live switchover moved to another cluster.
//!
//! Clients are shown the ids of the cluster they first met (`routing::TopicIds` keeps them and
//! learns the translation from Metadata answers): ids in answers become the presented ones, and
//! presented ids in requests become the current cluster's. On a route that never moved, none
//! of this runs and these APIs pass as bytes (but Metadata and Fetch v16+, decoded for their
//! addresses anyway, teach the route the ids it presents).
//!
//! Fetch answers carry records, which are never copied: the ids are patched by splicing, the
//! answer written as slices of its own frame with the 16 translated bytes between them
//! ([`fetch_splices`]). Every other id-carrying request and answer is small and is encoded again.
//!
//! Produce v13 names topics by id only; the gateway offers Produce up to v12 (names), so Produce
//! requests, which carry records, keep passing as bytes after a move ([`version_cap`]).

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeTopicPartitionsResponse, FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, RequestHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use uuid::Uuid;

use crate::protocol::{encode_request, InFlight, SIZE_PREFIX};
use crate::routing::Route;

/// The first Fetch version that names topics by id (KIP-516).
const FETCH_IDS_SINCE: i16 = 13;
/// The first Metadata version whose topics carry ids.
const METADATA_IDS_SINCE: i16 = 10;
/// The first DeleteTopics version that may name topics by id.
const DELETE_TOPICS_IDS_SINCE: i16 = 6;
/// The last Produce version that names topics (v13 names them by id only).
const PRODUCE_BY_NAME_MAX: i16 = 12;

/// The highest version of `api_key` the gateway offers so its requests name topics, not ids,
/// where they carry records: Produce.
pub fn version_cap(api_key: ApiKey) -> i16 {
    match api_key {
        ApiKey::Produce => PRODUCE_BY_NAME_MAX,
        _ => i16::MAX,
    }
}

/// Whether requests of `api_key` at `version` may name topics by id.
fn in_request(api_key: ApiKey, version: i16) -> bool {
    match api_key {
        ApiKey::Fetch => version >= FETCH_IDS_SINCE,
        ApiKey::Metadata => version >= METADATA_IDS_SINCE,
        ApiKey::DeleteTopics => version >= DELETE_TOPICS_IDS_SINCE,
        ApiKey::ConsumerGroupHeartbeat => true,
        _ => false,
    }
}

/// Whether answers of `api_key` at `version` carry topic ids.
pub(super) fn in_response(api_key: ApiKey, version: i16) -> bool {
    in_request(api_key, version) || api_key == ApiKey::DescribeTopicPartitions
}

/// The frame (size prefix included) to forward in place of the request in `body` (the frame
/// after its size prefix): the same request with the ids clients know replaced by the current
/// cluster's; `None` when nothing changes or the route never moved.
pub fn translate_request(route: &Route, request: &InFlight, body: &[u8]) -> anyhow::Result<Option<Bytes>> {
    if route.moves() == 0 || !in_request(request.api_key, request.api_version) {
        return Ok(None);
    }
    let to_cluster = |id: Uuid| route.topic_ids.to_cluster(id);
    match request.api_key {
        ApiKey::Fetch => edit_request(request, body, |r: &mut FetchRequest| {
            let topics = r.topics.iter_mut().map(|t| &mut t.topic_id);
            let forgotten = r.forgotten_topics_data.iter_mut().map(|t| &mut t.topic_id);
            translate(topics.chain(forgotten), to_cluster)
        }),
        ApiKey::Metadata => edit_request(request, body, |r: &mut MetadataRequest| {
            translate(r.topics.iter_mut().flatten().map(|t| &mut t.topic_id), to_cluster)
        }),
        ApiKey::DeleteTopics => edit_request(request, body, |r: &mut DeleteTopicsRequest| {
            translate(r.topics.iter_mut().map(|t| &mut t.topic_id), to_cluster)
        }),
        ApiKey::ConsumerGroupHeartbeat => edit_request(request, body, |r: &mut ConsumerGroupHeartbeatRequest| {
            translate(r.topic_partitions.iter_mut().flatten().map(|t| &mut t.topic_id), to_cluster)
        }),
        _ => Ok(None),
    }
}

/// Replace each of `ids` by what `to` gives for it, where it gives one; whether any changed.
fn translate<'a>(ids: impl IntoIterator<Item = &'a mut Uuid>, to: impl Fn(Uuid) -> Option<Uuid>) -> bool {
    ids.into_iter().fold(false, |changed, id| replace(id, to(*id)) | changed)
}

/// Set `id` to `to` if there is one; whether it changed.
fn replace(id: &mut Uuid, to: Option<Uuid>) -> bool {
    match to {
        Some(to) if to != *id => {
            *id = to;
            true
        }
        _ => false,
    }
}

/// Decode a request as `R`, let `change` edit it, and encode the frame again if it did.
fn edit_request<R: Decodable + Encodable>(
    request: &InFlight,
    mut body: &[u8],
    change: impl FnOnce(&mut R) -> bool,
) -> anyhow::Result<Option<Bytes>> {
    let header = RequestHeader::decode(&mut body, request.api_key.request_header_version(request.api_version))?;
    let mut message = R::decode(&mut body, request.api_version)?;
    if !body.is_empty() {
        anyhow::bail!("{} bytes left over after the request", body.len());
    }
    if !change(&mut message) {
        return Ok(None);
    }
    encode_request(&header, &message, request.api_key, request.api_version).map(Some)
}

/// The ids clients know for the topics of a Metadata answer. Whether any changed.
pub(super) fn metadata(route: &Route, response: &mut MetadataResponse) -> bool {
    present(route, response.topics.iter_mut().map(|t| (t.name.as_ref(), &mut t.topic_id)))
}

/// The same for a DescribeTopicPartitions answer.
pub(super) fn describe_topic_partitions(route: &Route, response: &mut DescribeTopicPartitionsResponse) -> bool {
    present(route, response.topics.iter_mut().map(|t| (t.name.as_ref(), &mut t.topic_id)))
}

/// Replace the id of each named topic of an answer by the one the route presents for it, which
/// it learns from them; whether any changed.
fn present<'a>(route: &Route, topics: impl IntoIterator<Item = (Option<&'a TopicName>, &'a mut Uuid)>) -> bool {
    let moves = route.moves();
    let named = topics.into_iter().filter_map(|(name, id)| Some((name?, id)));
    named.fold(false, |changed, (name, id)| {
        let presented = route.topic_ids.present(moves, name.0.as_str(), *id);
        replace(id, Some(presented)) | changed
    })
}

/// The ids clients know in a Fetch answer decoded as a whole (one that is encoded again
/// anyway, for its leader endpoints).
pub(super) fn fetch(route: &Route, response: &mut FetchResponse) -> bool {
    to_client(route, response.responses.iter_mut().map(|t| &mut t.topic_id))
}

pub(super) fn delete_topics(route: &Route, response: &mut DeleteTopicsResponse) -> bool {
    to_client(route, response.responses.iter_mut().map(|t| &mut t.topic_id))
}

pub(super) fn consumer_group_heartbeat(route: &Route, response: &mut ConsumerGroupHeartbeatResponse) -> bool {
    let topics = response.assignment.iter_mut().flat_map(|a| a.topic_partitions.iter_mut());
    to_client(route, topics.map(|t| &mut t.topic_id))
}

/// Replace each of `ids`, the current cluster's, by the one clients know, on a route that moved.
fn to_client<'a>(route: &Route, ids: impl IntoIterator<Item = &'a mut Uuid>) -> bool {
    route.moves() > 0 && translate(ids, |id| route.topic_ids.to_client(id))
}

/// The id clients know for the current cluster's `id` on `route`, where it differs.
pub(super) fn presented(route: &Route, id: Uuid) -> Option<Uuid> {
    (route.moves() > 0).then(|| route.topic_ids.to_client(id)).flatten()
}

/// A Fetch answer at `version` (`frame`, size prefix included, decoded as `response` from
/// slices of it) with the ids clients know (`to_client` gives them, where they differ), as the
/// pieces to write in order: slices of the frame, and the 16 bytes of each translated id
/// between them. `Ok(None)` when no id changes.
///
/// Each topic of the answer starts with its id (v13+), so the first is found by its value
/// just after the answer's few fixed fields, and the others follow at their encoded sizes; each
/// is checked to hold the id the decode read there. A frame that does not line up is an error.
pub(super) fn fetch_splices(
    version: i16,
    frame: &Bytes,
    response: &FetchResponse,
    to_client: impl Fn(Uuid) -> Option<Uuid>,
) -> anyhow::Result<Option<Vec<Bytes>>> {
    if version < FETCH_IDS_SINCE {
        return Ok(None);
    }
    let translated: Vec<Option<Uuid>> = response.responses.iter().map(|t| to_client(t.topic_id)).collect();
    if translated.iter().all(Option::is_none) {
        return Ok(None);
    }
    let mut at = first_topic_at(frame, response)?;
    let mut pieces = Vec::with_capacity(2 * translated.len() + 1);
    let mut written = 0;
    for (topic, to) in response.responses.iter().zip(translated) {
        if frame.get(at..at + 16) != Some(topic.topic_id.as_bytes().as_slice()) {
            anyhow::bail!("a topic id is not where the Fetch answer's layout puts it");
        }
        if let Some(to) = to {
            pieces.push(frame.slice(written..at));
            pieces.push(Bytes::copy_from_slice(to.as_bytes()));
            written = at + 16;
        }
        at += topic.compute_size(version)?;
    }
    pieces.push(frame.slice(written..));
    Ok(Some(pieces))
}

/// Fields a Fetch answer has before its first topic, and more: the response header (with its
/// tagged fields), throttle time, error code, session id and the topic count.
const FETCH_FIRST_TOPIC_WITHIN: usize = 64;

/// Where the first topic of a Fetch answer starts in `frame`: at the first occurrence of its
/// id after the size prefix, within the answer's leading fields.
fn first_topic_at(frame: &[u8], response: &FetchResponse) -> anyhow::Result<usize> {
    let first = response.responses.first().map(|t| t.topic_id.as_bytes()).ok_or_else(|| anyhow::anyhow!("no topic"))?;
    let end = frame.len().min(SIZE_PREFIX + FETCH_FIRST_TOPIC_WITHIN + 16);
    frame[SIZE_PREFIX..end]
        .windows(16)
        .position(|window| window == first)
        .map(|at| SIZE_PREFIX + at)
        .ok_or_else(|| anyhow::anyhow!("the first topic id is not among the Fetch answer's leading fields"))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::ResponseHeader;

    use super::*;
    use crate::protocol::encode_response;

    fn partition(index: i32, records: &[u8]) -> PartitionData {
        PartitionData::default()
            .with_partition_index(index)
            .with_high_watermark(42)
            .with_records(Some(Bytes::copy_from_slice(records)))
    }

    /// Three topics: records in two partitions, no records, records in one (which hold the
    /// first topic's id on the cluster: records are never looked into).
    fn answer(ids: [Uuid; 3], first_on_cluster: Uuid) -> FetchResponse {
        let topic = |id, partitions| FetchableTopicResponse::default().with_topic_id(id).with_partitions(partitions);
        FetchResponse::default().with_session_id(7).with_responses(vec![
            topic(ids[0], vec![partition(0, &[1; 300]), partition(1, &[2; 5])]),
            topic(ids[1], vec![partition(0, &[])]),
            topic(ids[2], vec![partition(3, &first_on_cluster.as_bytes()[..])]),
        ])
    }

    fn decode(version: i16, frame: &Bytes) -> FetchResponse {
        let mut body = frame.slice(SIZE_PREFIX..);
        ResponseHeader::decode(&mut body, ApiKey::Fetch.response_header_version(version)).unwrap();
        FetchResponse::decode(&mut body, version).unwrap()
    }

    #[test]
    fn ids_are_spliced_into_the_frame_around_its_records() {
        let cluster = [Uuid::from_u128(11), Uuid::from_u128(12), Uuid::from_u128(13)];
        let client = [Uuid::from_u128(21), Uuid::from_u128(12), Uuid::from_u128(23)];
        for version in [13, 16, 17, 18] {
            let header = ResponseHeader::default().with_correlation_id(5);
            let frame = encode_response(&header, &answer(cluster, cluster[0]), ApiKey::Fetch, version).unwrap();
            let decoded = decode(version, &frame);
            let to_client = |id: Uuid| cluster.iter().position(|c| *c == id).map(|i| client[i]).filter(|c| *c != id);
            let pieces = fetch_splices(version, &frame, &decoded, to_client).unwrap().unwrap();
            let spliced = Bytes::from(pieces.concat());
            let expected = encode_response(&header, &answer(client, cluster[0]), ApiKey::Fetch, version).unwrap();
            assert_eq!(spliced, expected, "v{version}");
            // The records are the frame's own bytes, not copies.
            let records = decoded.responses[0].partitions[0].records.as_ref().unwrap();
            assert!(pieces.iter().any(|p| p.as_ptr() <= records.as_ptr() && p.len() > records.len()));
        }
    }

    #[test]
    fn nothing_is_spliced_when_no_id_changes_or_before_ids() {
        let ids = [Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3)];
        let header = ResponseHeader::default().with_correlation_id(5);
        let frame = encode_response(&header, &answer(ids, ids[0]), ApiKey::Fetch, 13).unwrap();
        assert!(fetch_splices(13, &frame, &decode(13, &frame), |_| None).unwrap().is_none());
        let frame = encode_response(&header, &answer(ids, ids[0]), ApiKey::Fetch, 12).unwrap();
        assert!(fetch_splices(12, &frame, &decode(12, &frame), |_| Some(Uuid::from_u128(9))).unwrap().is_none());
    }

    #[test]
    fn a_frame_that_does_not_line_up_is_refused() {
        let ids = [Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3)];
        let header = ResponseHeader::default().with_correlation_id(5);
        let frame = encode_response(&header, &answer(ids, ids[0]), ApiKey::Fetch, 13).unwrap();
        let mut decoded = decode(13, &frame);
        decoded.responses[1].topic_id = Uuid::from_u128(99);
        assert!(fetch_splices(13, &frame, &decoded, |_| Some(Uuid::from_u128(9))).is_err());
    }
}
