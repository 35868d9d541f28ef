//! Who a client says it is: the principal read from its SASL exchange, which otherwise passes
//! through to the broker untouched.
//!
//! With `auth: passthrough` the broker authenticates the client and authorizes its requests as
//! the client's own principal; the gateway only watches. Two rare requests are decoded, with
//! `kafka-protocol`: SaslHandshake (the mechanism) and SaslAuthenticate (the client's token),
//! plus the error code and session lifetime of SaslAuthenticate answers (read in
//! `crate::rewrite`). Produce and Fetch are never among them. The principal comes from the
//! token where the mechanism reveals it:
//!
//! - `PLAIN`: `authzid NUL user NUL password`: the user. The password is never kept.
//! - `SCRAM-SHA-256`, `SCRAM-SHA-512`: the client-first message `n,,n=<user>,r=<nonce>`: the
//!   user, with `=2C` and `=3D` decoded. The proofs that follow reveal nothing.
//! - `OAUTHBEARER`: `n,,\x01auth=Bearer <JWT>\x01\x01`: the JWT's `sub` claim when the token is
//!   a readable JWT (its signature is the broker's business); otherwise unknown.
//! - anything else (GSSAPI, ...): unknown.
//!
//! Nothing here ever logs or returns a password, a proof or a token: only the user name. A
//! token that cannot be read leaves the principal unknown; the broker decides. The one token
//! kept is a PLAIN or OAUTHBEARER login the broker accepted, on connections that can follow a
//! switchover ([`Exchange::keep_logins`]), so the gateway can repeat it on the destination
//! ([`ReplayableLogin`]: redacted, zeroed when dropped).
//!
//! SaslHandshake v0 (a Kafka 0.10.0 client) is followed by raw SASL tokens without Kafka
//! framing, which a Kafka-aware proxy cannot tell from requests; it is refused
//! ([`LEGACY_HANDSHAKE`]). Clients since Kafka 1.0 send v1 (and SaslAuthenticate) to any
//! broker that advertises SaslAuthenticate.

use kafka_protocol::messages::{ApiKey, RequestHeader, SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::Decodable;

use super::sasl_login::ReplayableLogin;

/// The first SaslHandshake version whose tokens travel in SaslAuthenticate requests (KIP-152).
pub const MIN_HANDSHAKE_VERSION: i16 = 1;

/// Why a SaslHandshake v0 is refused, for the close reason.
pub const LEGACY_HANDSHAKE: &str = "SaslHandshake v0 is followed by raw SASL tokens without Kafka framing, which the \
     gateway cannot forward; use a client that sends SaslAuthenticate (Kafka 1.0 or later, SaslHandshake v1)";

/// Whether requests of `api_key` are read by [`Exchange::request`]. Cheap: asked of every
/// request.
pub fn observed(api_key: ApiKey) -> bool {
    matches!(api_key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
}

/// What a connection's SASL exchanges showed, for its close log line and audit event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaslSummary {
    /// The mechanism the client chose in its last SaslHandshake.
    pub mechanism: Option<String>,
    /// The principal the client claimed, where the mechanism reveals it.
    pub principal: Option<String>,
    /// Whether the broker accepted the last exchange; `None` before any answer.
    pub authenticated: Option<bool>,
    /// Exchanges the broker accepted: more than one means the client re-authenticated (KIP-368).
    /// A login the gateway replayed for the client counts too.
    pub authentications: u32,
    /// Logins the gateway replayed for the client on the cluster a switchover moved it to.
    pub replays: u32,
}

/// A connection's SASL exchanges as they happen: requests seen by the request direction,
/// answers by the response direction. The exchange is a strict request-answer dialogue, so the
/// two never race over one step.
#[derive(Debug, Default)]
pub struct Exchange {
    summary: SaslSummary,
    /// SaslAuthenticate requests since the last SaslHandshake.
    round: u32,
    /// The principal claimed in the current exchange, until the broker answers.
    claimed: Option<String>,
    /// Whether replayable logins are kept ([`Exchange::keep_logins`]).
    keeps_logins: bool,
    /// Whether an exchange began (a SaslHandshake) and has no final answer yet.
    under_way: bool,
    /// The replayable login of the current exchange, until the broker answers.
    offered: Option<ReplayableLogin>,
    /// The last login accepted, if it can be replayed.
    accepted: Option<ReplayableLogin>,
    /// Set by a replay on a cluster that does not limit sessions: the gateway answers the
    /// client's re-authentications (which that cluster would refuse) itself.
    answered_here: bool,
}

impl Exchange {
    /// Note a SaslHandshake or SaslAuthenticate request (`body`: the frame after its size
    /// prefix). A request that cannot be read leaves the exchange as it was.
    pub fn request(&mut self, api_key: ApiKey, version: i16, body: &[u8]) {
        let mut body = body;
        let body = &mut body;
        if RequestHeader::decode(body, api_key.request_header_version(version)).is_err() {
            return;
        }
        match api_key {
            ApiKey::SaslHandshake => {
                let Ok(request) = SaslHandshakeRequest::decode(body, version) else { return };
                self.summary.mechanism = Some(request.mechanism.to_string());
                self.round = 0;
                self.claimed = None;
                self.under_way = true;
                self.offered = None;
            }
            ApiKey::SaslAuthenticate => {
                let Ok(request) = SaslAuthenticateRequest::decode(body, version) else { return };
                self.round += 1;
                if let Some(principal) = self.mechanism().and_then(|m| principal(m, &request.auth_bytes)) {
                    self.claimed = Some(principal);
                }
                if self.keeps_logins && self.round == 1 {
                    self.offered = self.mechanism().and_then(|m| ReplayableLogin::new(m, &request.auth_bytes));
                }
            }
            _ => {}
        }
    }

    /// Note the error code of the broker's answer to a SaslAuthenticate request; whether it
    /// accepted a whole exchange (for SCRAM, its final round).
    pub fn answer(&mut self, error_code: i16) -> bool {
        if self.claimed.is_some() {
            self.summary.principal = self.claimed.clone();
        }
        if error_code != 0 {
            self.summary.authenticated = Some(false);
            self.under_way = false;
            self.offered = None;
            self.accepted = None;
            return false;
        }
        // SCRAM succeeds on its second round (the server-first message answers the first).
        let final_round = match self.mechanism() {
            Some(m) if m.starts_with("SCRAM-") => self.round >= 2,
            _ => true,
        };
        if final_round {
            self.summary.authenticated = Some(true);
            self.summary.authentications += 1;
            self.under_way = false;
            // A login that cannot be replayed (SCRAM) replaces one that could.
            self.accepted = self.offered.take();
        }
        final_round
    }

    /// Keep the PLAIN or OAUTHBEARER logins the broker accepts, for a replay: on passthrough
    /// connections that can follow a switchover only.
    pub fn keep_logins(&mut self) {
        self.keeps_logins = true;
    }

    /// Whether the client logged in itself and only the client can log in again: a login
    /// that was not kept, or an exchange under way.
    pub fn binds_to_its_cluster(&self) -> bool {
        self.summary.mechanism.is_some() && (self.under_way || self.accepted.is_none())
    }

    /// The login to repeat on another cluster, unless an exchange is under way.
    pub fn login_to_replay(&self) -> Option<ReplayableLogin> {
        self.accepted.clone().filter(|_| !self.under_way)
    }

    /// Note that the gateway replayed the login on another cluster; `limited`: whether that
    /// cluster limits sessions (KIP-368). If not, the client's re-authentications are the
    /// gateway's to answer ([`Exchange::answered_here`]).
    pub fn replayed(&mut self, limited: bool) {
        self.summary.authentications += 1;
        self.summary.replays += 1;
        self.summary.authenticated = Some(true);
        self.answered_here = !limited;
    }

    /// Whether the client's re-authentications are answered by the gateway (see
    /// [`Exchange::replayed`]).
    pub fn answered_here(&self) -> bool {
        self.answered_here
    }

    /// Whether a re-authentication answered here asks for the replayed login's mechanism (its
    /// SaslHandshake, asked before it is noted with [`Exchange::request`]).
    pub fn repeats_mechanism(&self, mechanism: &str) -> bool {
        self.accepted.as_ref().is_some_and(|login| login.mechanism() == mechanism)
    }

    /// Whether a re-authentication answered here repeats the replayed login's very token, after
    /// a SaslHandshake of its mechanism (asked before the SaslAuthenticate is noted).
    pub fn repeats_token(&self, token: &[u8]) -> bool {
        let Some(login) = &self.accepted else { return false };
        self.under_way && self.round == 0 && self.mechanism() == Some(login.mechanism()) && login.same_token(token)
    }

    pub fn summary(&self) -> SaslSummary {
        self.summary.clone()
    }

    fn mechanism(&self) -> Option<&str> {
        self.summary.mechanism.as_deref()
    }
}

/// Tokens longer than this are not read (the principal stays unknown): real first tokens are
/// a few hundred bytes, a JWT a few kilobytes.
const MAX_TOKEN: usize = 64 * 1024;

/// The principal a client's first token of `mechanism` names, if it reveals one.
pub fn principal(mechanism: &str, token: &[u8]) -> Option<String> {
    if token.len() > MAX_TOKEN {
        return None;
    }
    let name = match mechanism {
        "PLAIN" => plain_user(token)?,
        m if m.starts_with("SCRAM-") => scram_user(token)?,
        "OAUTHBEARER" => oauthbearer_subject(token)?,
        _ => return None,
    };
    (!name.is_empty()).then_some(name)
}

/// `authzid NUL authcid NUL passwd`: the authcid. The password is not looked at.
fn plain_user(token: &[u8]) -> Option<String> {
    let mut parts = token.splitn(3, |b| *b == 0);
    let _authzid = parts.next()?;
    let user = parts.next()?;
    // Without a second NUL this is not a PLAIN token: nothing to say.
    parts.next()?;
    String::from_utf8(user.to_vec()).ok()
}

/// `gs2-header client-first-message-bare`, e.g. `n,,n=user,r=nonce` (RFC 5802): the user.
fn scram_user(token: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(token).ok()?;
    let mut fields = text.splitn(3, ',');
    let binding = fields.next()?;
    if !(binding == "n" || binding == "y" || binding.starts_with("p=")) {
        // A client-final message (`c=...,r=...,p=...`): no user.
        return None;
    }
    let _authzid = fields.next()?;
    let bare = fields.next()?;
    let user = bare.split(',').next()?.strip_prefix("n=")?;
    Some(user.replace("=2C", ",").replace("=3D", "="))
}

/// `gs2-header \x01 auth=Bearer <token> \x01 ... \x01\x01` (RFC 7628): the JWT's `sub` claim.
fn oauthbearer_subject(token: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(token).ok()?;
    let auth = text.split('\x01').find_map(|kv| kv.strip_prefix("auth="))?;
    let (scheme, jwt) = auth.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("Bearer") {
        return None;
    }
    let payload = jwt.trim().split('.').nth(1)?;
    let claims: serde_json::Value = serde_json::from_slice(&base64url_decode(payload)?).ok()?;
    claims.get("sub")?.as_str().map(str::to_owned)
}

/// Base64url without padding (JWT segments); `None` on any other character.
fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        } as u32)
    };
    let text = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut bits = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            bits |= value(*c)? << (18 - 6 * i);
        }
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn encode(api_key: ApiKey, version: i16, message: &impl Encodable) -> Vec<u8> {
        crate::protocol::request_body(api_key, version, 3, message)
    }

    fn handshake(mechanism: &'static str) -> Vec<u8> {
        encode(
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism)),
        )
    }

    fn authenticate(version: i16, token: &'static [u8]) -> Vec<u8> {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(token));
        encode(ApiKey::SaslAuthenticate, version, &request)
    }

    #[test]
    fn plain_names_the_user_and_never_the_password() {
        assert_eq!(principal("PLAIN", b"\0alice\0s3cret"), Some("alice".into()));
        assert_eq!(principal("PLAIN", b"alice\0alice\0s3cret"), Some("alice".into()));
        assert_eq!(principal("PLAIN", b"alice-without-nul"), None);
        let mut exchange = Exchange::default();
        exchange.request(ApiKey::SaslHandshake, 1, &handshake("PLAIN"));
        exchange.request(ApiKey::SaslAuthenticate, 2, &authenticate(2, b"\0alice\0s3cret"));
        exchange.answer(0);
        let summary = exchange.summary();
        assert_eq!(summary.principal.as_deref(), Some("alice"));
        assert_eq!(summary.mechanism.as_deref(), Some("PLAIN"));
        assert_eq!((summary.authenticated, summary.authentications), (Some(true), 1));
        assert!(!format!("{exchange:?}").contains("s3cret"));
    }

    #[test]
    fn scram_names_the_user_from_the_first_message_and_succeeds_on_the_second() {
        assert_eq!(principal("SCRAM-SHA-256", b"n,,n=alice,r=abc"), Some("alice".into()));
        assert_eq!(principal("SCRAM-SHA-512", b"n,a=bob,n=a=2Cb=3Dc,r=x"), Some("a,b=c".into()));
        assert_eq!(principal("SCRAM-SHA-512", b"c=biws,r=abc,p=proof"), None);
        let mut exchange = Exchange::default();
        exchange.request(ApiKey::SaslHandshake, 1, &handshake("SCRAM-SHA-512"));
        exchange.request(ApiKey::SaslAuthenticate, 1, &authenticate(1, b"n,,n=alice,r=abc"));
        exchange.answer(0);
        assert_eq!(exchange.summary().authenticated, None, "only the server-first message so far");
        exchange.request(ApiKey::SaslAuthenticate, 1, &authenticate(1, b"c=biws,r=abcdef,p=proof"));
        exchange.answer(0);
        assert_eq!(exchange.summary().authenticated, Some(true));
        assert_eq!(exchange.summary().principal.as_deref(), Some("alice"));
        // Re-authentication (KIP-368): a wrong proof this time.
        exchange.request(ApiKey::SaslHandshake, 1, &handshake("SCRAM-SHA-512"));
        exchange.request(ApiKey::SaslAuthenticate, 1, &authenticate(1, b"n,,n=alice,r=xyz"));
        exchange.answer(0);
        exchange.request(ApiKey::SaslAuthenticate, 1, &authenticate(1, b"c=biws,r=xyzabc,p=bad"));
        exchange.answer(58);
        let summary = exchange.summary();
        assert_eq!((summary.authenticated, summary.authentications), (Some(false), 1));
    }

    #[test]
    fn only_an_accepted_plain_or_oauthbearer_login_is_kept_for_a_replay() {
        let login = |exchange: &mut Exchange, mechanism, token, code| {
            exchange.request(ApiKey::SaslHandshake, 1, &handshake(mechanism));
            exchange.request(ApiKey::SaslAuthenticate, 2, &authenticate(2, token));
            exchange.answer(code);
        };
        let mut unkept = Exchange::default();
        login(&mut unkept, "PLAIN", b"\0alice\0s3cret", 0);
        assert!(unkept.login_to_replay().is_none() && unkept.binds_to_its_cluster(), "kept without keep_logins");
        let mut exchange = Exchange::default();
        exchange.keep_logins();
        assert!(!exchange.binds_to_its_cluster(), "no SASL at all");
        login(&mut exchange, "PLAIN", b"\0alice\0s3cret", 0);
        let kept = exchange.login_to_replay().expect("an accepted PLAIN login is kept");
        assert!(kept.same_token(b"\0alice\0s3cret") && !exchange.binds_to_its_cluster());
        // A re-authentication under way cannot be replayed halfway.
        exchange.request(ApiKey::SaslHandshake, 1, &handshake("PLAIN"));
        assert!(exchange.login_to_replay().is_none() && exchange.binds_to_its_cluster());
        exchange.request(ApiKey::SaslAuthenticate, 2, &authenticate(2, b"\0alice\0wrong"));
        exchange.answer(58);
        assert!(exchange.login_to_replay().is_none(), "a refused login keeps nothing");
        login(&mut exchange, "SCRAM-SHA-512", b"n,,n=alice,r=abc", 0);
        exchange.request(ApiKey::SaslAuthenticate, 2, &authenticate(2, b"c=biws,r=abcdef,p=proof"));
        exchange.answer(0);
        assert!(exchange.binds_to_its_cluster(), "SCRAM cannot be replayed");
        login(&mut exchange, "OAUTHBEARER", b"n,,\x01auth=Bearer t\x01\x01", 0);
        assert_eq!(exchange.login_to_replay().map(|l| l.mechanism().to_owned()).as_deref(), Some("OAUTHBEARER"));
        assert!(!format!("{exchange:?}").contains("Bearer"));
    }

    #[test]
    fn a_reauthentication_answered_here_must_repeat_the_replayed_login() {
        let mut exchange = Exchange::default();
        exchange.keep_logins();
        exchange.request(ApiKey::SaslHandshake, 1, &handshake("PLAIN"));
        exchange.request(ApiKey::SaslAuthenticate, 2, &authenticate(2, b"\0alice\0s3cret"));
        exchange.answer(0);
        exchange.replayed(false);
        assert!(exchange.answered_here());
        let summary = exchange.summary();
        assert_eq!((summary.authentications, summary.replays), (2, 1));
        assert!(!exchange.repeats_token(b"\0alice\0s3cret"), "a SaslAuthenticate without a SaslHandshake");
        assert!(!exchange.repeats_mechanism("OAUTHBEARER"));
        assert!(exchange.repeats_mechanism("PLAIN"));
        exchange.request(ApiKey::SaslHandshake, 1, &handshake("PLAIN"));
        assert!(!exchange.repeats_token(b"\0alice\0s3creT"));
        assert!(!exchange.repeats_token(b"\0bob\0s3cret"));
        assert!(exchange.repeats_token(b"\0alice\0s3cret"));
        exchange.replayed(true);
        assert!(!exchange.answered_here(), "a cluster that limits sessions answers them");
    }

    #[test]
    fn oauthbearer_names_the_subject_of_a_readable_jwt() {
        // {"alg":"none"} . {"sub":"alice","exp":1} . (unsigned)
        let token = b"n,,\x01auth=Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6MX0.\x01\x01";
        assert_eq!(principal("OAUTHBEARER", token), Some("alice".into()));
        assert_eq!(principal("OAUTHBEARER", b"n,,\x01auth=Bearer opaque-token\x01\x01"), None);
        assert_eq!(principal("OAUTHBEARER", b"\x01"), None);
        assert_eq!(principal("GSSAPI", b"anything"), None);
    }

    #[test]
    fn unreadable_requests_change_nothing() {
        let mut exchange = Exchange::default();
        exchange.request(ApiKey::SaslHandshake, 1, &handshake("PLAIN")[..9]);
        exchange.request(ApiKey::SaslAuthenticate, 2, &[0, 36, 0, 2]);
        assert_eq!(exchange.summary(), SaslSummary::default());
    }

    proptest::proptest! {
        /// Any PLAIN token names its user, and nothing of its password; any bytes, with any
        /// mechanism, are read without a panic.
        #[test]
        fn plain_tokens_yield_the_user_only(
            authzid in "[a-z]{0,8}",
            user in "[a-zA-Z0-9._@=,-]{1,20}",
            password in "[!-~]{1,30}",
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            let token = format!("{authzid}\0{user}\0{password}");
            proptest::prop_assert_eq!(principal("PLAIN", token.as_bytes()), Some(user.clone()));
            let scram = format!("n,,n={},r={password}", user.replace('=', "=3D").replace(',', "=2C"));
            proptest::prop_assert_eq!(principal("SCRAM-SHA-256", scram.as_bytes()), Some(user));
            for mechanism in ["PLAIN", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"] {
                let _ = principal(mechanism, &noise);
            }
        }
    }

    #[test]
    fn base64url_decodes_jwt_segments() {
        assert_eq!(base64url_decode("eyJzdWIiOiJhIn0").unwrap(), br#"{"sub":"a"}"#);
        assert_eq!(base64url_decode("YQ").unwrap(), b"a");
        assert_eq!(base64url_decode("Y"), None);
        assert_eq!(base64url_decode("a!"), None);
    }
}
