//! Which gateway node a client is told to use for each broker.
//!
//! With internal load balancing, every Metadata answer maps each broker to one member of the
//! gateway cluster: a member in the broker's rack when there is one, else any member. Within
//! those candidates the choice rotates with the broker id, so brokers spread over nodes, and is
//! offset by a hash of the client id, so clients spread too, while one client keeps the same
//! mapping across its metadata refreshes until membership changes. The function is pure: every
//! node computes the same answer for the same members, broker and client.

use super::Member;

/// The member `broker` (with `rack`) is mapped to for a client whose id hashes to `client`.
pub fn member_for<'m>(members: &'m [Member], broker: i32, rack: Option<&str>, client: u32) -> Option<&'m Member> {
    let in_rack: Vec<&Member> = match rack {
        Some(rack) => members.iter().filter(|m| m.rack.as_deref() == Some(rack)).collect(),
        None => Vec::new(),
    };
    let candidates: Vec<&Member> = if in_rack.is_empty() { members.iter().collect() } else { in_rack };
    if candidates.is_empty() {
        return None;
    }
    let slot = (i64::from(broker).rem_euclid(candidates.len() as i64) as usize + client as usize) % candidates.len();
    Some(candidates[slot])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::client_hash;

    fn member(id: &str, rack: &str) -> Member {
        Member { node_id: id.into(), host: format!("{id}.local"), rack: Some(rack.into()) }
    }

    #[test]
    fn prefers_the_brokers_rack_and_spreads_brokers() {
        let members = vec![member("a1", "a"), member("a2", "a"), member("b1", "b")];
        for broker in 1..=6 {
            assert_eq!(member_for(&members, broker, Some("b"), 0).unwrap().node_id, "b1");
        }
        let rack_a: Vec<&str> =
            (1..=4).map(|b| member_for(&members, b, Some("a"), 0).unwrap().node_id.as_str()).collect();
        assert_eq!(rack_a, vec!["a2", "a1", "a2", "a1"]);
        assert!(member_for(&members, 1, Some("z"), 0).is_some(), "no member in the rack: any member");
    }

    #[test]
    fn clients_spread_but_each_keeps_its_mapping() {
        let members = vec![member("a1", "a"), member("a2", "a"), member("a3", "a")];
        let for_client =
            |client: &str| member_for(&members, 1, Some("a"), client_hash(client.as_bytes())).unwrap().node_id.clone();
        let chosen: std::collections::BTreeSet<String> = (0..30).map(|i| for_client(&format!("client-{i}"))).collect();
        assert_eq!(chosen.len(), 3, "30 clients all landed on {chosen:?}");
        assert_eq!(for_client("producer-1"), for_client("producer-1"));
    }
}
