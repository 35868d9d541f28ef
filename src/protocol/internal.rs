//! The names the gateway keeps to itself on a backing cluster, and spotting the requests of the
//! gateway's clients that reach for them.
//!
//! Gateway nodes find each other through the group `switchyard-cluster-<id>` on the topic
//! `_switchyard-cluster-<id>` of a backing cluster (`crate::cluster`). Its clients must not join
//! that group (to pose as a node) or see that topic: Metadata answers drop `_switchyard-`
//! topics (`crate::rewrite`), and a request naming a `switchyard-cluster-` group is refused
//! here. Only the APIs that name a group are decoded, with `kafka-protocol`; they are few and
//! slow (lookups, joins, heartbeats, commits), and Produce and Fetch are never among them.
//! What stays open (a raw Produce to the topic by a client that knows its name) is covered by
//! the cluster's signatures and the ACLs in docs/cluster.md.

use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest, DeleteGroupsRequest, DescribeGroupsRequest,
    FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest, RequestHeader, SyncGroupRequest, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::Decodable;

use super::RequestError;

/// Every internal topic's name starts with this.
pub const INTERNAL_TOPIC_PREFIX: &str = "_switchyard-";
/// Every group of a gateway cluster (membership, command readers) starts with this.
pub const CLUSTER_GROUP_PREFIX: &str = "switchyard-cluster-";

/// FindCoordinator's key type for a consumer group (1 is a transactional id).
const GROUP_KEY_TYPE: i8 = 0;

pub fn is_internal_topic(name: &str) -> bool {
    name.starts_with(INTERNAL_TOPIC_PREFIX)
}

pub fn is_internal_group(name: &str) -> bool {
    name.starts_with(CLUSTER_GROUP_PREFIX)
}

/// Whether requests of `api_key` name a group, and so are decoded by [`refuse_internal_group`].
/// Cheap: the pump asks it of every request.
pub fn names_group(api_key: ApiKey) -> bool {
    matches!(
        api_key,
        ApiKey::FindCoordinator
            | ApiKey::JoinGroup
            | ApiKey::SyncGroup
            | ApiKey::Heartbeat
            | ApiKey::LeaveGroup
            | ApiKey::OffsetCommit
            | ApiKey::OffsetFetch
            | ApiKey::OffsetDelete
            | ApiKey::TxnOffsetCommit
            | ApiKey::DescribeGroups
            | ApiKey::DeleteGroups
            | ApiKey::ConsumerGroupHeartbeat
            | ApiKey::ConsumerGroupDescribe
    )
}

/// Refuse a request (`body`: the frame after its size prefix) of an API that [`names_group`] if
/// it names an internal group, or cannot be decoded (a client that respects ApiVersions never
/// sends a version the codec lacks: the gateway clamps these APIs).
pub fn refuse_internal_group(api_key: ApiKey, version: i16, body: &[u8]) -> Result<(), RequestError> {
    let undecodable = |cause: anyhow::Error| RequestError::Undecodable { api_key, version, cause: cause.to_string() };
    let groups = groups_named(api_key, version, body).map_err(undecodable)?;
    match groups.into_iter().find(|group| is_internal_group(group)) {
        Some(group) => Err(RequestError::InternalGroup { api_key, group }),
        None => Ok(()),
    }
}

/// The groups a request names.
fn groups_named(api_key: ApiKey, version: i16, mut body: &[u8]) -> anyhow::Result<Vec<String>> {
    let body = &mut body;
    RequestHeader::decode(body, api_key.request_header_version(version))?;
    let ids = |ids: Vec<GroupId>| ids.into_iter().map(|id| id.0.to_string()).collect();
    let one = |id: GroupId| vec![id.0.to_string()];
    Ok(match api_key {
        ApiKey::FindCoordinator => {
            let request = FindCoordinatorRequest::decode(body, version)?;
            match request.key_type {
                GROUP_KEY_TYPE => {
                    let keys = std::iter::once(request.key).chain(request.coordinator_keys);
                    keys.map(|key| key.to_string()).collect()
                }
                _ => Vec::new(),
            }
        }
        ApiKey::JoinGroup => one(JoinGroupRequest::decode(body, version)?.group_id),
        ApiKey::SyncGroup => one(SyncGroupRequest::decode(body, version)?.group_id),
        ApiKey::Heartbeat => one(HeartbeatRequest::decode(body, version)?.group_id),
        ApiKey::LeaveGroup => one(LeaveGroupRequest::decode(body, version)?.group_id),
        ApiKey::OffsetCommit => one(OffsetCommitRequest::decode(body, version)?.group_id),
        ApiKey::OffsetDelete => one(OffsetDeleteRequest::decode(body, version)?.group_id),
        ApiKey::TxnOffsetCommit => one(TxnOffsetCommitRequest::decode(body, version)?.group_id),
        ApiKey::OffsetFetch => {
            let request = OffsetFetchRequest::decode(body, version)?;
            std::iter::once(request.group_id)
                .chain(request.groups.into_iter().map(|g| g.group_id))
                .map(|id| id.0.to_string())
                .collect()
        }
        ApiKey::DescribeGroups => ids(DescribeGroupsRequest::decode(body, version)?.groups),
        ApiKey::DeleteGroups => ids(DeleteGroupsRequest::decode(body, version)?.groups_names),
        ApiKey::ConsumerGroupHeartbeat => one(ConsumerGroupHeartbeatRequest::decode(body, version)?.group_id),
        ApiKey::ConsumerGroupDescribe => ids(ConsumerGroupDescribeRequest::decode(body, version)?.group_ids),
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn encode(api_key: ApiKey, version: i16, message: &impl Encodable) -> Vec<u8> {
        crate::protocol::request_body(api_key, version, 7, message)
    }

    fn find_coordinator(version: i16, key: &'static str) -> Vec<u8> {
        let key = StrBytes::from_static_str(key);
        let request = if version >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![key])
        } else {
            FindCoordinatorRequest::default().with_key(key)
        };
        encode(ApiKey::FindCoordinator, version, &request)
    }

    #[test]
    fn find_coordinator_for_an_internal_group_is_refused_at_every_version() {
        for version in 0..=ApiKey::FindCoordinator.valid_versions().max {
            let refused = refuse_internal_group(
                ApiKey::FindCoordinator,
                version,
                &find_coordinator(version, "switchyard-cluster-a"),
            );
            assert!(matches!(refused, Err(RequestError::InternalGroup { .. })), "v{version}: {refused:?}");
            let allowed = refuse_internal_group(ApiKey::FindCoordinator, version, &find_coordinator(version, "orders"));
            assert_eq!(allowed, Ok(()), "v{version}");
        }
    }

    #[test]
    fn group_requests_naming_an_internal_group_are_refused() {
        let group = GroupId(StrBytes::from_static_str("switchyard-cluster-a"));
        let join = JoinGroupRequest::default()
            .with_group_id(group.clone())
            .with_protocol_type(StrBytes::from_static_str("consumer"));
        assert!(refuse_internal_group(ApiKey::JoinGroup, 9, &encode(ApiKey::JoinGroup, 9, &join)).is_err());
        let heartbeat = HeartbeatRequest::default().with_group_id(group.clone());
        assert!(refuse_internal_group(ApiKey::Heartbeat, 4, &encode(ApiKey::Heartbeat, 4, &heartbeat)).is_err());
        let describe =
            DescribeGroupsRequest::default().with_groups(vec![GroupId(StrBytes::from_static_str("x")), group]);
        assert!(
            refuse_internal_group(ApiKey::DescribeGroups, 5, &encode(ApiKey::DescribeGroups, 5, &describe)).is_err()
        );
        let ordinary = HeartbeatRequest::default().with_group_id(GroupId(StrBytes::from_static_str("switchyard")));
        assert_eq!(refuse_internal_group(ApiKey::Heartbeat, 4, &encode(ApiKey::Heartbeat, 4, &ordinary)), Ok(()));
        let truncated = &encode(ApiKey::Heartbeat, 4, &ordinary)[..12];
        assert!(matches!(
            refuse_internal_group(ApiKey::Heartbeat, 4, truncated),
            Err(RequestError::Undecodable { .. })
        ));
    }

    #[test]
    fn only_group_apis_are_decoded() {
        assert!(!names_group(ApiKey::Produce) && !names_group(ApiKey::Fetch) && !names_group(ApiKey::Metadata));
        assert!(is_internal_topic("_switchyard-cluster-a") && !is_internal_topic("switchyard-orders"));
    }
}
