//! The consumer-group answers that carry a KIP-848 group member across a live switchover's cut.
//!
//! A member of a group on the consumer group protocol (`group.protocol=consumer`) heartbeats
//! with its member epoch. The destination cluster never saw the group (or not this member):
//! a heartbeat with an epoch above 0 for a group it does not have is answered
//! `GROUP_ID_NOT_FOUND`, which the Java 4.x consumer takes for fatal (its member turns to a
//! fatal state and the application's `poll` throws). A member a coordinator does not know is
//! what `UNKNOWN_MEMBER_ID` says, and on that the client gives up its partitions
//! (`onPartitionsLost`) and joins again with epoch 0, creating the group on the destination,
//! as a classic member re-joins there. So on a route that has moved to another cluster (and
//! only there) the one code becomes the other.

use kafka_protocol::messages::ConsumerGroupHeartbeatResponse;

/// The group does not exist on the cluster that answered.
const GROUP_ID_NOT_FOUND: i16 = 69;
/// The coordinator does not know the member: it is to join again.
const UNKNOWN_MEMBER_ID: i16 = 25;

/// Make a heartbeat answered `GROUP_ID_NOT_FOUND` one the member joins again after. Returns
/// whether anything changed.
pub(super) fn rejoin_unknown_group(response: &mut ConsumerGroupHeartbeatResponse) -> bool {
    if response.error_code != GROUP_ID_NOT_FOUND {
        return false;
    }
    response.error_code = UNKNOWN_MEMBER_ID;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_group_becomes_an_unknown_member_and_nothing_else_changes() {
        let mut unknown = ConsumerGroupHeartbeatResponse::default().with_error_code(GROUP_ID_NOT_FOUND);
        assert!(rejoin_unknown_group(&mut unknown));
        assert_eq!(unknown.error_code, UNKNOWN_MEMBER_ID);
        let mut fenced = ConsumerGroupHeartbeatResponse::default().with_error_code(110);
        assert!(!rejoin_unknown_group(&mut fenced));
        assert_eq!(fenced.error_code, 110);
    }
}
