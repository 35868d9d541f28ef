//! A passthrough client's login as the gateway may repeat it: the mechanism and the token the
//! broker accepted, kept so that a switchover's cut can log the client in to the destination
//! under its open connection (see `crate::proxy::sasl_replay`).
//!
//! Only single-message mechanisms can be repeated: `PLAIN` (`authzid NUL user NUL password`) and
//! `OAUTHBEARER` (the bearer token, valid until it expires). SCRAM answers a server nonce that
//! changes at every login, so its proofs cannot be replayed; GSSAPI is a dialogue too.
//!
//! The token is a secret. It is kept only on connections that can follow a switchover, only
//! up to [`MAX_KEPT_TOKEN`] bytes, never shown by `Debug`, compared in constant time, and zeroed
//! when dropped (the connection's end, or the next login replacing it).

use zeroize::Zeroizing;

use super::scram::constant_time_eq;

/// Tokens longer than this are not kept: such a connection closes at a cut as it did before
/// replays. A PLAIN token is a few dozen bytes, a JWT a few kilobytes.
pub const MAX_KEPT_TOKEN: usize = 64 * 1024;

/// Whether a login with `mechanism` can be repeated by the gateway.
pub fn replayable(mechanism: &str) -> bool {
    matches!(mechanism, "PLAIN" | "OAUTHBEARER")
}

/// A client's single-message login, kept for a replay.
#[derive(Clone)]
pub struct ReplayableLogin {
    mechanism: String,
    token: Zeroizing<Vec<u8>>,
}

impl ReplayableLogin {
    /// The login of `token` with `mechanism`, if that mechanism can be replayed and the token
    /// is small enough to keep.
    pub fn new(mechanism: &str, token: &[u8]) -> Option<Self> {
        (replayable(mechanism) && token.len() <= MAX_KEPT_TOKEN)
            .then(|| ReplayableLogin { mechanism: mechanism.to_owned(), token: Zeroizing::new(token.to_vec()) })
    }

    pub fn mechanism(&self) -> &str {
        &self.mechanism
    }

    /// The token, for the one place that sends it: the replay to the destination's broker.
    pub fn token(&self) -> &[u8] {
        &self.token
    }

    /// Whether `token` is this login's, byte for byte (for PLAIN: the same user and password).
    pub fn same_token(&self, token: &[u8]) -> bool {
        constant_time_eq(&self.token, token)
    }
}

impl std::fmt::Debug for ReplayableLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReplayableLogin({}, <redacted>)", self.mechanism)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_single_message_logins_are_kept_and_never_shown() {
        let login = ReplayableLogin::new("PLAIN", b"\0alice\0s3cret").expect("PLAIN is kept");
        assert!(login.same_token(b"\0alice\0s3cret"));
        assert!(!login.same_token(b"\0alice\0s3creT"));
        assert!(!login.same_token(b"\0alice\0s3cret!"));
        assert!(!format!("{login:?}").contains("s3cret"));
        assert!(ReplayableLogin::new("OAUTHBEARER", b"n,,\x01auth=Bearer x\x01\x01").is_some());
        assert!(ReplayableLogin::new("SCRAM-SHA-512", b"n,,n=alice,r=abc").is_none());
        assert!(ReplayableLogin::new("PLAIN", &vec![0; MAX_KEPT_TOKEN + 1]).is_none());
    }
}
