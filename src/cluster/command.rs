//! Switchover commands on the cluster topic: signed by the node that publishes them, checked by
//! every node that reads them.
//!
//! A record's value is the command as JSON; its header [`MAC_HEADER`] is the HMAC of exactly
//! those bytes (see [`super::signing`]), so nothing is re-encoded before it is checked. A command
//! is applied only if its MAC is right, it was issued within [`REPLAY_WINDOW`] of now, and its
//! id was not seen before: a copy of a real command written again later, or again at once, is
//! refused. The seen ids are bounded; an id pushed out of the set is long past the window, since
//! only signed commands (a few per switchover) ever enter it.
//!
//! Residual: a node restarted within the window after a command has an empty set and would
//! accept that command's copy once; it names a switchover the cluster already made.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::signing::Signer;
use crate::config::SwitchoverRequest;

/// The record header carrying a command's MAC.
pub const MAC_HEADER: &str = "switchyard-mac";
/// How far a command's issue time may be from the reader's clock, either way: older commands
/// are replays. The nodes' clocks must agree within it.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Command ids remembered against replays.
const SEEN_IDS: usize = 4096;

/// A switchover one node completed, for the others to apply.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SwitchoverCommand {
    /// Unique per command: the origin, its issue time and a counter.
    pub id: String,
    pub issued_at_ms: u64,
    pub origin: String,
    pub route: String,
    pub request: SwitchoverRequest,
}

/// Why a command read from the topic was not applied; [`Rejection::label`] is its metric label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// No MAC header.
    Unsigned,
    /// A MAC that is not the command's under this cluster's secret.
    BadSignature,
    /// Signed, but not a command this version reads.
    Malformed(String),
    /// Issued outside the replay window.
    Stale { issued_at_ms: u64 },
    /// Its id was applied already.
    Replayed { id: String },
}

impl Rejection {
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::Unsigned => "unsigned",
            Rejection::BadSignature => "bad_signature",
            Rejection::Malformed(_) => "malformed",
            Rejection::Stale { .. } => "stale",
            Rejection::Replayed { .. } => "replayed",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Unsigned => write!(f, "the record has no `{MAC_HEADER}` header"),
            Rejection::BadSignature => write!(f, "the MAC does not match (not signed with this cluster's secret)"),
            Rejection::Malformed(why) => write!(f, "signed but unreadable: {why}"),
            Rejection::Stale { issued_at_ms } => {
                write!(f, "issued at {issued_at_ms} ms, outside the {REPLAY_WINDOW:?} replay window")
            }
            Rejection::Replayed { id } => write!(f, "command `{id}` was seen before"),
        }
    }
}

/// This node's end of the command stream: signs what it publishes, checks what it reads.
pub struct Commands {
    signer: Signer,
    origin: String,
    issued: AtomicU64,
    seen: Mutex<SeenIds>,
}

impl Commands {
    pub fn new(signer: Signer, origin: String) -> Commands {
        Commands { signer, origin, issued: AtomicU64::new(0), seen: Mutex::new(SeenIds::default()) }
    }

    /// The record value and MAC header of a new command for `route`, issued `now`.
    pub fn seal(&self, route: &str, request: &SwitchoverRequest, now: SystemTime) -> anyhow::Result<(Vec<u8>, String)> {
        let issued_at_ms = unix_ms(now);
        let count = self.issued.fetch_add(1, Ordering::Relaxed);
        let command = SwitchoverCommand {
            id: format!("{}-{issued_at_ms}-{count}", self.origin),
            issued_at_ms,
            origin: self.origin.clone(),
            route: route.to_string(),
            request: request.clone(),
        };
        let payload = serde_json::to_vec(&command)?;
        let mac = self.signer.sign_command(&payload);
        Ok((payload, mac))
    }

    /// The command in a record with value `payload` and MAC header `mac`, read `now`, if it is
    /// to be applied here; `Ok(None)` for this node's own commands.
    pub fn open(
        &self,
        payload: &[u8],
        mac: Option<&[u8]>,
        now: SystemTime,
    ) -> Result<Option<SwitchoverCommand>, Rejection> {
        let mac = mac.ok_or(Rejection::Unsigned)?;
        if !self.signer.verify_command(payload, mac) {
            return Err(Rejection::BadSignature);
        }
        let command: SwitchoverCommand =
            serde_json::from_slice(payload).map_err(|e| Rejection::Malformed(e.to_string()))?;
        let age = unix_ms(now).abs_diff(command.issued_at_ms);
        if u128::from(age) > REPLAY_WINDOW.as_millis() {
            return Err(Rejection::Stale { issued_at_ms: command.issued_at_ms });
        }
        if !self.seen.lock().unwrap_or_else(|e| e.into_inner()).insert(&command.id) {
            return Err(Rejection::Replayed { id: command.id });
        }
        Ok((command.origin != self.origin).then_some(command))
    }
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The last [`SEEN_IDS`] command ids, oldest first out.
#[derive(Default)]
struct SeenIds {
    order: VecDeque<String>,
    ids: HashSet<String>,
}

impl SeenIds {
    /// False if `id` is there already.
    fn insert(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() == SEEN_IDS {
            if let Some(oldest) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
        self.order.push_back(id.to_string());
        self.ids.insert(id.to_string());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClusterSecret, FenceMode};
    use serde_json::Value;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn node(name: &str) -> Commands {
        Commands::new(Signer::new(&ClusterSecret::new(SECRET), "orders"), name.to_string())
    }

    fn request() -> SwitchoverRequest {
        serde_json::from_str(r#"{"to": "dr", "fence": "error", "catchUpTimeoutMs": 5000}"#).unwrap()
    }

    fn sealed(now: SystemTime) -> (Vec<u8>, String) {
        node("gw-1").seal("main", &request(), now).unwrap()
    }

    #[test]
    fn a_signed_command_is_applied_once_by_the_other_nodes() {
        let now = SystemTime::now();
        let (payload, mac) = sealed(now);
        let command = node("gw-2").open(&payload, Some(mac.as_bytes()), now).unwrap().unwrap();
        assert_eq!((command.origin.as_str(), command.route.as_str()), ("gw-1", "main"));
        assert_eq!(command.request.fence, Some(FenceMode::Error));
        let origin = node("gw-1");
        assert!(origin.open(&payload, Some(mac.as_bytes()), now).unwrap().is_none(), "its own command");
    }

    #[test]
    fn unsigned_forged_and_foreign_commands_are_refused() {
        let now = SystemTime::now();
        let (payload, mac) = sealed(now);
        let reader = node("gw-2");
        assert_eq!(reader.open(&payload, None, now).unwrap_err(), Rejection::Unsigned);
        assert_eq!(reader.open(&payload, Some(b"00ff"), now).unwrap_err(), Rejection::BadSignature);
        let other_secret =
            Commands::new(Signer::new(&ClusterSecret::new("another secret, 32 bytes long!!"), "orders"), "gw-2".into());
        assert_eq!(other_secret.open(&payload, Some(mac.as_bytes()), now).unwrap_err(), Rejection::BadSignature);
        let other_cluster = Commands::new(Signer::new(&ClusterSecret::new(SECRET), "payments"), "gw-2".into());
        assert_eq!(other_cluster.open(&payload, Some(mac.as_bytes()), now).unwrap_err(), Rejection::BadSignature);
    }

    #[test]
    fn tampering_with_any_field_breaks_the_signature() {
        let now = SystemTime::now();
        let (payload, mac) = sealed(now);
        let original: Value = serde_json::from_slice(&payload).unwrap();
        let edits: [(&str, Value); 6] = [
            ("id", "gw-1-0-99".into()),
            ("issuedAtMs", (original["issuedAtMs"].as_u64().unwrap() + 1).into()),
            ("origin", "gw-9".into()),
            ("route", "other".into()),
            ("request", serde_json::json!({"to": "attacker"})),
            ("request", serde_json::json!({"to": "dr", "fence": "hold", "catchUpTimeoutMs": 5000})),
        ];
        for (field, value) in edits {
            let mut tampered = original.clone();
            tampered[field] = value;
            let bytes = serde_json::to_vec(&tampered).unwrap();
            let refused = node("gw-2").open(&bytes, Some(mac.as_bytes()), now);
            assert_eq!(refused.unwrap_err(), Rejection::BadSignature, "{field} tampered");
        }
    }

    #[test]
    fn replays_are_refused_by_id_and_by_age() {
        let now = SystemTime::now();
        let (payload, mac) = sealed(now);
        let reader = node("gw-2");
        assert!(reader.open(&payload, Some(mac.as_bytes()), now).unwrap().is_some());
        let again = reader.open(&payload, Some(mac.as_bytes()), now + Duration::from_secs(1));
        assert!(matches!(again, Err(Rejection::Replayed { .. })), "{again:?}");

        let old = now - REPLAY_WINDOW - Duration::from_secs(1);
        let (payload, mac) = sealed(old);
        let late = node("gw-3").open(&payload, Some(mac.as_bytes()), now);
        assert!(matches!(late, Err(Rejection::Stale { .. })), "{late:?}");
        let (payload, mac) = sealed(now + REPLAY_WINDOW + Duration::from_secs(1));
        assert!(matches!(node("gw-3").open(&payload, Some(mac.as_bytes()), now), Err(Rejection::Stale { .. })));
    }

    #[test]
    fn every_command_gets_its_own_id_and_the_seen_set_is_bounded() {
        let origin = node("gw-1");
        let now = SystemTime::now();
        let ids: HashSet<String> = (0..100)
            .map(|_| {
                let (payload, _) = origin.seal("main", &request(), now).unwrap();
                serde_json::from_slice::<SwitchoverCommand>(&payload).unwrap().id
            })
            .collect();
        assert_eq!(ids.len(), 100);
        let mut seen = SeenIds::default();
        for i in 0..SEEN_IDS + 10 {
            assert!(seen.insert(&i.to_string()));
        }
        assert_eq!((seen.order.len(), seen.ids.len()), (SEEN_IDS, SEEN_IDS));
        assert!(!seen.insert(&(SEEN_IDS + 9).to_string()));
    }
}
