//! The topic ids a route's clients know, and their translation after a switchover.
//!
//! Each cluster gives a topic an id of its own: the tool that created the destination's topics
//! (MirrorMaker 2, say) made new ones. After a live switchover's cut, the same topic name comes
//! back from the destination with another id, which franz-go takes for a topic deleted and
//! recreated, and fails for good. So a route keeps the id its clients were first shown for each
//! topic name (the *presented* id, as it keeps the cluster id), and once it has moved to another
//! cluster it shows clients that id and translates it back in their requests.
//!
//! A switchover's pre-flight asks both clusters for the ids of the topics it checks (the
//! gateway's Kafka client for metadata does not expose them: [`TopicIdLookup`] asks on a broker
//! connection of the gateway's own), and the cut installs the translation before any connection
//! moves ([`TopicIds::prepare`]); a gateway node that never answered a client's Metadata learns
//! the source's ids there. After the move, Metadata answers extend it: one naming a topic whose
//! presented id differs from the cluster's maps the one to the other. A request naming a
//! presented id the map lacks passes unchanged, and the new cluster answers `UNKNOWN_TOPIC_ID` as
//! a broker does for a topic it does not know.
//!
//! A topic whose id changes while the route stays on one cluster was deleted and recreated for
//! real: clients are shown the new id.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{PoisonError, RwLock};

use uuid::Uuid;

use super::Upstream;

/// Topic ids by name, as a cluster gave them.
pub type IdsByName = HashMap<String, Uuid>;

/// Asks the cluster `upstream` reaches for the ids of `topics`, on a broker connection of the
/// gateway's own (the gateway's Kafka client for metadata does not expose them). Topics the
/// cluster does not have are left out.
pub trait TopicIdLookup: Send + Sync {
    fn topic_ids<'a>(
        &'a self,
        upstream: &'a Upstream,
        topics: &'a [String],
    ) -> Pin<Box<dyn Future<Output = Result<IdsByName, String>> + Send + 'a>>;
}

/// Topic names a route remembers ids for; past this, new names are shown their cluster's id
/// and are not translated after a switchover.
const MAX_TOPICS: usize = 10_000;

/// The ids a route presents, and their translation to the cluster it is on now.
#[derive(Default)]
pub struct TopicIds {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The id clients were first shown, by topic name.
    presented: HashMap<String, Uuid>,
    /// The route's move count the translation below belongs to.
    moves: u64,
    /// The current cluster's id by topic name, as seen since that move.
    current: HashMap<String, Uuid>,
    /// Current cluster's id → presented id, for the topics that differ.
    to_client: HashMap<Uuid, Uuid>,
    /// Presented id → current cluster's id.
    to_cluster: HashMap<Uuid, Uuid>,
}

impl TopicIds {
    /// The id to show clients for topic `name`, which the cluster calls `actual`, on a route
    /// that has moved `moves` times.
    pub fn present(&self, moves: u64, name: &str, actual: Uuid) -> Uuid {
        if actual.is_nil() {
            return actual;
        }
        // Most answers name topics the route already knows as they are: a read lock answers
        // them, and Metadata answers on many connections do not queue behind each other.
        if let Some(known) = self.inner.read().unwrap_or_else(PoisonError::into_inner).known(moves, name, actual) {
            return known;
        }
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        // Another answer may have taught it meanwhile.
        if let Some(known) = inner.known(moves, name, actual) {
            return known;
        }
        inner.follow(moves);
        let Some(&presented) = inner.presented.get(name) else {
            if inner.presented.len() < MAX_TOPICS {
                inner.presented.insert(name.to_string(), actual);
                if moves > 0 {
                    // So that the topic, deleted and created again later, shows its new id.
                    inner.current.insert(name.to_string(), actual);
                }
            }
            return actual;
        };
        let recreated = if moves == 0 {
            presented != actual
        } else {
            let before = inner.current.insert(name.to_string(), actual);
            before.is_some_and(|before| before != actual)
        };
        if recreated {
            // Deleted and created again on the cluster the route is on: clients must see it.
            inner.forget(name);
            inner.presented.insert(name.to_string(), actual);
            return actual;
        }
        if presented != actual {
            inner.to_client.insert(actual, presented);
            inner.to_cluster.insert(presented, actual);
        }
        presented
    }

    /// Before the route's move number `moves`, from `source` to `destination`: translate each
    /// topic both have between the id clients know (the source's, if none was presented yet)
    /// and the destination's.
    pub fn prepare(&self, moves: u64, source: &IdsByName, destination: &IdsByName) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.follow(moves);
        for (name, &actual) in destination {
            let Some(&on_source) = source.get(name) else { continue };
            let presented = match inner.presented.get(name) {
                Some(&presented) => presented,
                None if inner.presented.len() < MAX_TOPICS => {
                    inner.presented.insert(name.clone(), on_source);
                    on_source
                }
                None => continue,
            };
            inner.current.insert(name.clone(), actual);
            if presented != actual {
                inner.to_client.insert(actual, presented);
                inner.to_cluster.insert(presented, actual);
            }
        }
    }

    /// The ids clients were shown, by topic name.
    pub fn presented(&self) -> IdsByName {
        self.inner.read().unwrap_or_else(PoisonError::into_inner).presented.clone()
    }

    /// Take up ids clients were shown before a restart, for names not presented since.
    pub fn recall(&self, presented: IdsByName) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        for (name, id) in presented {
            if inner.presented.len() >= MAX_TOPICS {
                break;
            }
            inner.presented.entry(name).or_insert(id);
        }
    }

    /// The id clients know for the current cluster's `id`, where it differs.
    pub fn to_client(&self, id: Uuid) -> Option<Uuid> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner).to_client.get(&id).copied()
    }

    /// The current cluster's id for the `id` clients know, where it differs.
    pub fn to_cluster(&self, id: Uuid) -> Option<Uuid> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner).to_cluster.get(&id).copied()
    }
}

impl Inner {
    /// What [`TopicIds::present`] answers when it would learn nothing: `None` when it must
    /// record the name, follow a move, or change a translation (under the write lock).
    fn known(&self, moves: u64, name: &str, actual: Uuid) -> Option<Uuid> {
        if moves < self.moves {
            // An answer from the cluster the route is leaving, during the cut.
            return Some(self.presented.get(name).copied().unwrap_or(actual));
        }
        if moves > self.moves {
            return None;
        }
        let Some(&presented) = self.presented.get(name) else {
            // Past the bound a new name is shown as it is and never remembered.
            return (self.presented.len() >= MAX_TOPICS).then_some(actual);
        };
        if moves == 0 {
            return (presented == actual).then_some(presented);
        }
        let same = self.current.get(name) == Some(&actual);
        let translated = presented == actual
            || (self.to_cluster.get(&presented) == Some(&actual) && self.to_client.get(&actual) == Some(&presented));
        (same && translated).then_some(presented)
    }

    /// Start a new translation when the route has moved since the last one.
    fn follow(&mut self, moves: u64) {
        if moves > self.moves {
            self.moves = moves;
            self.current.clear();
            self.to_client.clear();
            self.to_cluster.clear();
        }
    }

    /// Drop the translation of `name`, whose id on the current cluster changed.
    fn forget(&mut self, name: &str) {
        if let Some(presented) = self.presented.get(name) {
            if let Some(old) = self.to_cluster.remove(presented) {
                self.to_client.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn a_route_that_never_moved_shows_each_clusters_id() {
        let ids = TopicIds::default();
        assert_eq!(ids.present(0, "orders", id(1)), id(1));
        // Deleted and recreated on the same cluster: the new id.
        assert_eq!(ids.present(0, "orders", id(2)), id(2));
        assert_eq!(ids.to_cluster(id(1)), None);
    }

    #[test]
    fn after_a_move_the_first_id_is_shown_and_translated_both_ways() {
        let ids = TopicIds::default();
        assert_eq!(ids.present(0, "orders", id(1)), id(1));
        assert_eq!(ids.present(1, "orders", id(7)), id(1));
        assert_eq!(ids.to_cluster(id(1)), Some(id(7)));
        assert_eq!(ids.to_client(id(7)), Some(id(1)));
        // A topic first seen after the move keeps its id.
        assert_eq!(ids.present(1, "new", id(9)), id(9));
        assert_eq!(ids.to_client(id(9)), None);
    }

    #[test]
    fn a_second_move_translates_to_the_newest_cluster() {
        let ids = TopicIds::default();
        ids.present(0, "orders", id(1));
        ids.present(1, "orders", id(7));
        assert_eq!(ids.present(2, "orders", id(8)), id(1));
        assert_eq!(ids.to_cluster(id(1)), Some(id(8)));
        assert_eq!(ids.to_client(id(7)), None);
        // Back on the first cluster: nothing to translate.
        assert_eq!(ids.present(3, "orders", id(1)), id(1));
        assert_eq!(ids.to_cluster(id(1)), None);
    }

    #[test]
    fn a_topic_recreated_after_the_move_shows_its_new_id() {
        let ids = TopicIds::default();
        ids.present(0, "orders", id(1));
        assert_eq!(ids.present(1, "orders", id(7)), id(1));
        assert_eq!(ids.present(1, "orders", id(8)), id(8));
        assert_eq!(ids.to_cluster(id(1)), None);
        assert_eq!(ids.to_client(id(7)), None);
        assert_eq!(ids.present(1, "orders", id(8)), id(8));
    }

    #[test]
    fn a_prepared_translation_holds_before_any_metadata_answer() {
        let ids = TopicIds::default();
        ids.present(0, "orders", id(1));
        let source = IdsByName::from([("orders".into(), id(1)), ("never-shown".into(), id(2))]);
        let destination = IdsByName::from([("orders".into(), id(7)), ("never-shown".into(), id(8))]);
        ids.prepare(1, &source, &destination);
        // A Metadata answer from the source, still in flight during the cut, changes nothing.
        assert_eq!(ids.present(0, "orders", id(1)), id(1));
        assert_eq!(ids.to_cluster(id(1)), Some(id(7)));
        assert_eq!(ids.to_cluster(id(2)), Some(id(8)));
        assert_eq!(ids.present(1, "never-shown", id(8)), id(2));
        assert_eq!(ids.present(1, "orders", id(7)), id(1));
    }

    /// What `present` answers within `wait` while another reader holds the lock.
    fn present_while_read_locked(ids: &TopicIds, moves: u64, name: &str, actual: Uuid, wait: Duration) -> Option<Uuid> {
        let (sent, answered) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            let reader = ids.inner.read().unwrap();
            scope.spawn(move || sent.send(ids.present(moves, name, actual)));
            let answer = answered.recv_timeout(wait).ok();
            drop(reader);
            answer
        })
    }

    #[test]
    fn ids_already_known_are_answered_under_a_read_lock() {
        let ids = TopicIds::default();
        let answers = Duration::from_secs(10);
        ids.present(0, "orders", id(1));
        assert_eq!(present_while_read_locked(&ids, 0, "orders", id(1), answers), Some(id(1)));
        ids.present(1, "orders", id(7));
        assert_eq!(present_while_read_locked(&ids, 1, "orders", id(7), answers), Some(id(1)));
        assert_eq!(present_while_read_locked(&ids, 0, "orders", id(1), answers), Some(id(1)), "from the old cluster");
        // A name to learn waits for the write lock; once learned, it is known.
        assert_eq!(present_while_read_locked(&ids, 1, "new", id(9), Duration::from_millis(100)), None);
        assert_eq!(ids.present(1, "new", id(9)), id(9));
        assert_eq!(present_while_read_locked(&ids, 1, "new", id(9), answers), Some(id(9)));
        // A topic recreated on the cluster the route is on is never answered from the read.
        assert_eq!(present_while_read_locked(&ids, 1, "orders", id(8), Duration::from_millis(100)), None);
        assert_eq!(ids.to_cluster(id(1)), None);
    }

    #[test]
    fn ids_recalled_after_a_restart_are_shown_and_translated() {
        let ids = TopicIds::default();
        ids.recall(IdsByName::from([("orders".to_string(), id(1))]));
        assert_eq!(ids.presented(), IdsByName::from([("orders".to_string(), id(1))]));
        // The route restarted onto another cluster counts as moved once.
        assert_eq!(ids.present(1, "orders", id(7)), id(1));
        assert_eq!(ids.to_cluster(id(1)), Some(id(7)));
        // A name presented since the start keeps the id it was shown.
        ids.present(1, "new", id(9));
        ids.recall(IdsByName::from([("new".to_string(), id(3))]));
        assert_eq!(ids.present(1, "new", id(9)), id(9));
    }

    #[test]
    fn a_topic_first_seen_after_a_move_then_recreated_shows_its_new_id() {
        let ids = TopicIds::default();
        assert_eq!(ids.present(1, "late", id(9)), id(9));
        assert_eq!(ids.present(1, "late", id(10)), id(10));
        assert_eq!(ids.to_client(id(10)), None);
        assert_eq!(ids.to_cluster(id(9)), None);
    }

    #[test]
    fn names_past_the_bound_are_not_remembered() {
        let ids = TopicIds::default();
        for n in 0..MAX_TOPICS as u128 + 5 {
            ids.present(0, &format!("t{n}"), id(n + 1));
        }
        let late = format!("t{}", MAX_TOPICS + 2);
        assert_eq!(ids.present(1, &late, id(999_999)), id(999_999));
        assert_eq!(ids.present(1, "t0", id(999_998)), id(1));
    }
}
