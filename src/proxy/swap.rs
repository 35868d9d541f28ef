//! Authentication swapping (`auth: swap`): the gateway authenticates the client itself, maps
//! its principal to cluster credentials through the route's secret store, and logs in to the
//! broker with those on the client's own broker connection, before any other request passes.
//!
//! The login runs before the pump, as a strict dialogue (a client sends nothing else while it
//! authenticates): ApiVersions is forwarded to the broker and its answer clamped as usual;
//! SaslHandshake and SaslAuthenticate are answered by the gateway with the route's client
//! mechanism: PLAIN (passwords of the route's JAAS file), SCRAM-SHA-256/512 (the gateway is
//! the SCRAM server, with verifiers from the same file: no password is kept), or Confluent's
//! `SCRAM`, both hashes with verifiers from the route's secret store (written by the route's
//! SCRAM admin, `scram_admin.rs`; the admin's own verifiers are derived from its configured
//! password at start); anything else before authentication ends the connection, as a broker
//! does. Once the client is
//! authenticated, the store is asked for the principal's `user<separator>secret`, the cluster
//! JAAS template is filled with it, and the gateway logs in to the broker (SaslHandshake, then
//! SaslAuthenticate with PLAIN or SCRAM-SHA-256/512). Only then does the client get its
//! successful (final) SaslAuthenticate answer, and the pump starts.
//!
//! With mTLS client authentication the TLS handshake has already proved who the client is: the
//! certificate's subject goes through the route's `principalMappingRules`, and the gateway logs
//! in to the broker before reading anything from the client, which never speaks SASL.
//!
//! A refusal (wrong password, no mapping, the broker refusing the mapped credentials) is answered
//! with `SASL_AUTHENTICATION_FAILED` and a message, and the connection is closed after it, as
//! Kafka does; an mTLS client, which speaks no SASL, is just disconnected. Messages and logs
//! name principals and users, never a password, a verifier or a secret. A SCRAM user without a
//! verifier is refused at the proof exactly like a wrong password, after a server-first message
//! shaped like a real one, so users cannot be enumerated.
//!
//! Re-authentication (KIP-368) on an open connection is answered by the pump through its own
//! answers ([`SwapSession::reauthenticate`]), with the same exchange code as the login
//! (`SwapAuth::step`): the password or SCRAM proof is checked again and the principal must not
//! change. The gateway's own broker session, when the broker limits it, is renewed apart from
//! the client's: the pump re-dials before it ends and [`serve`] logs in again there (see
//! docs/security.md).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::broker_login::BrokerSide;
use super::connection::{pump, CloseReason, ConnectionContext, ConnectionSummary, Dialled, Redial, StopSignals};
use super::stream::{Duplex, Halves};
use crate::config::{client_users, ClientAuthSettings, PrincipalRules, SaslMechanism, Secret, SwapSettings};
use crate::protocol::scram::{constant_time_eq, Decoy, ScramHash, ScramServer, ScramServerError, ScramVerifier};
use crate::protocol::{
    encode_response, frame_at, peek_request, FrameLimits, FrameStatus, InFlight, RequestError, SaslSummary,
    MIN_REQUEST_BODY, SIZE_PREFIX,
};
use crate::rewrite::{classify, rewrite_response, unsupported_version_answer, Classified, ResponseBody};
use crate::routing::{Route, Upstream};
use crate::secrets::{Credentials, SecretStore};

/// SASL mechanisms offered by `mechanism: SCRAM` routes.
const STORED_SCRAM: [SaslMechanism; 2] = [SaslMechanism::ScramSha256, SaslMechanism::ScramSha512];
/// The iterations of the admin's verifiers (Kafka's tools default to 4096 or 8192).
const ADMIN_ITERATIONS: u32 = 8192;

/// From the client's first byte to its successful login.
const AUTHENTICATION_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request a client may send before it has logged in: Kafka's own bound on
/// unauthenticated frames (`sasl.server.max.receive.size`), so a stranger cannot make the
/// gateway buffer `maxFrameBytes`.
const MAX_UNAUTHENTICATED_REQUEST: usize = 512 * 1024;
/// The mechanism the audit log and close line name for certificate logins.
const MTLS: &str = "mTLS";
/// Kafka's answer to a SCRAM client whose proof is wrong (or whose user is unknown: the two
/// must read the same).
const SCRAM_INVALID: &str =
    "Authentication failed during authentication due to invalid credentials with SASL mechanism";

/// A swap route's authentication: its client users and its secret store.
pub struct SwapAuth {
    settings: SwapSettings,
    store_name: String,
    store: Arc<dyn SecretStore>,
    /// `domainSecretStores`: by domain, the store's name and the store.
    domain_stores: HashMap<String, (String, Arc<dyn SecretStore>)>,
    /// SASL clients' users (passwords or verifiers), and the JAAS file's modification time they
    /// were read at; empty for mTLS and stored SCRAM.
    users: Mutex<(Option<SystemTime>, HashMap<String, Secret>)>,
    /// Stored SCRAM with `alterScramCredentials`: the admin's name and its verifiers.
    admin: Option<AdminLogin>,
}

/// The SCRAM admin of a `mechanism: SCRAM` route: it logs in with verifiers derived from its
/// configured password, never from the store (so a store without them still has an admin).
struct AdminLogin {
    name: String,
    sha256: ScramVerifier,
    sha512: ScramVerifier,
}

impl AdminLogin {
    fn new(name: &str, password: &Secret) -> AdminLogin {
        let derive = |hash| {
            let mut salt = [0u8; 32];
            // Without an OS random source nothing else would work either.
            getrandom::fill(&mut salt).expect("the OS random source is available");
            ScramVerifier::derive(hash, password.expose(), &salt, ADMIN_ITERATIONS)
        };
        AdminLogin { name: name.to_string(), sha256: derive(ScramHash::Sha256), sha512: derive(ScramHash::Sha512) }
    }

    fn verifier(&self, hash: ScramHash) -> &ScramVerifier {
        match hash {
            ScramHash::Sha256 => &self.sha256,
            ScramHash::Sha512 => &self.sha512,
        }
    }
}

/// The SCRAM hash of a client mechanism, if it is SCRAM.
fn scram_hash(mechanism: SaslMechanism) -> Option<ScramHash> {
    match mechanism {
        SaslMechanism::Plain => None,
        SaslMechanism::ScramSha256 => Some(ScramHash::Sha256),
        SaslMechanism::ScramSha512 => Some(ScramHash::Sha512),
    }
}

/// Users whose SCRAM verifiers cannot be read, named (never quoted).
fn check_verifiers(mechanism: SaslMechanism, users: &HashMap<String, Secret>) -> Result<(), String> {
    let Some(hash) = scram_hash(mechanism) else { return Ok(()) };
    let mut bad: Vec<String> = users
        .iter()
        .filter_map(|(user, text)| ScramVerifier::parse(hash, text.expose()).err().map(|e| format!("`{user}` {e}")))
        .collect();
    bad.sort();
    match bad.is_empty() {
        true => Ok(()),
        false => Err(format!("SCRAM verifiers of {}", bad.join("; "))),
    }
}

impl SwapAuth {
    /// The route's authentication; fails when a SCRAM verifier of the JAAS file is unusable.
    pub fn new(settings: SwapSettings, store: Arc<dyn SecretStore>) -> Result<SwapAuth, String> {
        let (users, admin) = match &settings.client_auth {
            ClientAuthSettings::Sasl { mechanism, jaas, users } => {
                check_verifiers(*mechanism, users).map_err(|e| format!("`{}`: {e}", jaas.display()))?;
                let modified = std::fs::metadata(jaas).and_then(|m| m.modified()).ok();
                ((modified, users.clone()), None)
            }
            ClientAuthSettings::StoredScram { admin } => {
                ((None, HashMap::new()), admin.as_ref().map(|a| AdminLogin::new(&a.username, &a.password)))
            }
            ClientAuthSettings::Mtls { .. } => ((None, HashMap::new()), None),
        };
        let store_name = settings.secret_store.clone();
        Ok(SwapAuth { store_name, settings, store, domain_stores: HashMap::new(), users: Mutex::new(users), admin })
    }

    /// Use these stores (by domain, with their names) for logins to those domains.
    pub fn with_domain_stores(mut self, stores: HashMap<String, (String, Arc<dyn SecretStore>)>) -> SwapAuth {
        self.domain_stores = stores;
        self
    }

    /// The mechanisms the route offers its SASL clients (none on mTLS routes).
    fn client_mechanisms(&self) -> &[SaslMechanism] {
        match &self.settings.client_auth {
            ClientAuthSettings::Sasl { mechanism, .. } => std::slice::from_ref(mechanism),
            ClientAuthSettings::StoredScram { .. } => &STORED_SCRAM,
            ClientAuthSettings::Mtls { .. } => &[],
        }
    }

    /// The offered mechanism a SaslHandshake names, if it is one.
    fn offered(&self, name: &str) -> Option<SaslMechanism> {
        self.client_mechanisms().iter().find(|m| m.kafka_name() == name).copied()
    }

    /// The offered mechanisms as a message names them (`SCRAM-SHA-256 or SCRAM-SHA-512`).
    fn offered_names(&self) -> String {
        self.client_mechanisms().iter().map(|m| m.kafka_name()).collect::<Vec<_>>().join(" or ")
    }

    /// The store SCRAM verifiers are kept in, on `mechanism: SCRAM` routes (the route's
    /// `secretStore`: clients log in to the gateway, whatever domain the route is on), with its
    /// name.
    pub(super) fn verifier_store(&self) -> Option<(&Arc<dyn SecretStore>, &str)> {
        matches!(self.settings.client_auth, ClientAuthSettings::StoredScram { .. })
            .then_some((&self.store, self.store_name.as_str()))
    }

    /// The principal allowed to write SCRAM verifiers (`scram.admin`), if any.
    pub(super) fn scram_admin(&self) -> Option<&str> {
        self.admin.as_ref().map(|a| a.name.as_str())
    }

    /// Whether clients log in with their TLS certificate (the listener then keeps its subject).
    pub fn wants_certificate(&self) -> bool {
        matches!(self.settings.client_auth, ClientAuthSettings::Mtls { .. })
    }

    /// The mechanisms a SaslHandshake answer lists.
    fn mechanisms(&self) -> Vec<StrBytes> {
        self.client_mechanisms().iter().map(|m| StrBytes::from_static_str(m.kafka_name())).collect()
    }

    /// `user`'s SCRAM verifier for `hash`: the admin's own, or from the route's store
    /// (`mechanism: SCRAM`, looked up off the async workers), or from the JAAS file. A stored
    /// verifier that cannot be read is none (with a warning naming the user); a store that cannot
    /// be read refuses the login.
    async fn scram_verifier(&self, hash: ScramHash, user: &str) -> Result<Option<ScramVerifier>, Refusal> {
        if let Some(admin) = self.admin.as_ref().filter(|admin| admin.name == user) {
            return Ok(Some(admin.verifier(hash).clone()));
        }
        let Some((store, store_name)) = self.verifier_store() else {
            return Ok(self.user_entry(user).and_then(|v| ScramVerifier::parse(hash, v.expose()).ok()));
        };
        let (store, who) = (Arc::clone(store), user.to_string());
        let found = tokio::task::spawn_blocking(move || store.verifier(hash.mechanism(), &who)).await;
        let unreadable = || {
            Refusal::new(
                Some(user.to_string()),
                format!("Authentication failed: the gateway's secret store `{store_name}` could not be read"),
            )
            .because("store_error")
        };
        match found {
            Ok(Ok(Some(text))) => match ScramVerifier::parse(hash, text.expose()) {
                Ok(verifier) => Ok(Some(verifier)),
                Err(e) => {
                    tracing::warn!(user, store = store_name, "swap: the stored {} verifier {e}", hash.mechanism());
                    Ok(None)
                }
            },
            Ok(Ok(None)) => Ok(None),
            Ok(Err(e)) => {
                tracing::warn!(user, "swap: {e}");
                Err(unreadable())
            }
            Err(_) => Err(unreadable()),
        }
    }

    /// The JAAS file's entry for `user` (a password or a verifier), the file read again when it
    /// has changed (a file that no longer reads keeps the users it had, with a warning).
    fn user_entry(&self, user: &str) -> Option<Secret> {
        let ClientAuthSettings::Sasl { mechanism, jaas: path, .. } = &self.settings.client_auth else { return None };
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if modified.is_some() && modified != users.0 {
            let fresh = std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|text| client_users(&text, *mechanism))
                .and_then(|fresh| check_verifiers(*mechanism, &fresh).map(|()| fresh));
            match fresh {
                Ok(fresh) => *users = (modified, fresh),
                Err(problem) => {
                    tracing::warn!(file = %path.display(), "swap route's JAAS file unusable, keeping its previous users: {problem}");
                    users.0 = modified;
                }
            }
        }
        users.1.get(user).cloned()
    }

    /// What an unknown SCRAM user's made-up verifier looks like: the shape of a real one.
    fn decoy(&self, hash: ScramHash) -> Decoy {
        let users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        let mut shapes = users.1.values().filter_map(|v| ScramVerifier::parse(hash, v.expose()).ok());
        shapes.next().map_or_else(Decoy::default, |v| v.decoy())
    }

    /// The client's PLAIN token checked: the principal, or why it is refused.
    fn check_plain(&self, token: &[u8]) -> Result<String, Refusal> {
        let mut parts = token.splitn(3, |b| *b == 0);
        let (Some(authzid), Some(user), Some(password)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Refusal::new(None, "Authentication failed: Invalid SASL/PLAIN response: expected 3 tokens"));
        };
        let user = String::from_utf8_lossy(user).into_owned();
        if !authzid.is_empty() && authzid != user.as_bytes() {
            return Err(Refusal::new(
                Some(user),
                "Authentication failed: Client requested an authorization id that is different from username",
            ));
        }
        let matches = |expected: Secret| constant_time_eq(expected.expose().as_bytes(), password);
        if user.is_empty() || !self.user_entry(&user).is_some_and(matches) {
            return Err(Refusal::new(Some(user), "Authentication failed: Invalid username or password"));
        }
        Ok(user)
    }

    /// One SaslAuthenticate of a client's exchange (login or re-authentication), after its
    /// SaslHandshake: a challenge to send and wait for the next, the authenticated principal, or
    /// a refusal.
    async fn step(&self, exchange: &mut ClientExchange, token: &[u8]) -> Result<Step, Refusal> {
        match std::mem::take(exchange) {
            ClientExchange::Idle => {
                Err(Refusal::new(None, "Authentication failed: SaslAuthenticate without SaslHandshake"))
            }
            ClientExchange::Handshaken(SaslMechanism::Plain) => {
                self.check_plain(token).map(|principal| Step::Authenticated { principal, last: Vec::new() })
            }
            ClientExchange::Handshaken(mechanism) => {
                let hash = scram_hash(mechanism).unwrap_or(ScramHash::Sha256);
                let mut server =
                    ScramServer::client_first(hash, token).map_err(|e| scram_refusal(None, e, mechanism))?;
                let verifier = self.scram_verifier(hash, server.user()).await?;
                let first = server.server_first(verifier.ok_or_else(|| self.decoy(hash)));
                *exchange = ClientExchange::Scram(Box::new(server), mechanism);
                Ok(Step::Challenge(first))
            }
            ClientExchange::Scram(server, mechanism) => {
                let principal = server.user().to_string();
                match server.client_final(token) {
                    Ok(last) => Ok(Step::Authenticated { principal, last }),
                    Err(e) => Err(scram_refusal(Some(principal), e, mechanism)),
                }
            }
        }
    }

    /// The credentials `principal` maps to, looked up off the async workers.
    /// Log `principal` in on a broker connection of `domain`, as the cluster user the domain's
    /// secret store (else the route's) maps it to: that user and the broker session's lifetime.
    async fn cluster_login<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        self: &Arc<Self>,
        principal: &str,
        domain: &str,
        route: &str,
        broker: &mut BrokerSide<'_, R, W>,
    ) -> Result<(String, Option<Duration>), Refusal> {
        let credentials = self.lookup(principal, domain).await?;
        let (user, password) = self.settings.cluster_template.fill(&credentials.user, &credentials.secret);
        match broker.login(self.settings.cluster_mechanism, &user, &password).await {
            Ok(broker_session) => Ok((user, broker_session)),
            Err(problem) => {
                tracing::warn!(
                    principal,
                    cluster_user = user,
                    route,
                    domain,
                    "swap: the broker refused the mapped credentials: {problem}"
                );
                Err(Refusal::new(
                    Some(principal.to_string()),
                    format!("Authentication failed: the gateway could not log in to the cluster for principal `{principal}`"),
                )
                .because("cluster_refused"))
            }
        }
    }

    /// The secret store for logins to `domain`, and its name.
    fn store_for(&self, domain: &str) -> (&Arc<dyn SecretStore>, &str) {
        match self.domain_stores.get(domain) {
            Some((name, store)) => (store, name),
            None => (&self.store, &self.store_name),
        }
    }

    async fn lookup(self: &Arc<Self>, principal: &str, domain: &str) -> Result<Credentials, Refusal> {
        let (store, store_name) = self.store_for(domain);
        let (store, who) = (Arc::clone(store), principal.to_string());
        let found = tokio::task::spawn_blocking(move || store.lookup(&who)).await;
        match found {
            Ok(Ok(Some(credentials))) => Ok(credentials),
            Ok(Ok(None)) => Err(Refusal::new(
                Some(principal.to_string()),
                format!(
                    "Authentication failed: the gateway has no cluster credentials for principal `{principal}` (secret store `{}`)",
                    store_name
                ),
            )
            .because("unmapped")),
            Ok(Err(e)) => {
                tracing::warn!(principal, "swap: {e}");
                Err(Refusal::new(
                    Some(principal.to_string()),
                    format!("Authentication failed: the gateway's secret store `{}` could not be read", store_name),
                )
                .because("store_error"))
            }
            Err(_) => Err(Refusal::new(Some(principal.to_string()), "Authentication failed: secret store lookup failed")
                .because("store_error")),
        }
    }
}

/// A client's SASL exchange in progress.
#[derive(Debug, Default)]
enum ClientExchange {
    /// No SaslHandshake yet (or the last exchange ended).
    #[default]
    Idle,
    /// The SaslHandshake chose this mechanism, one the route offers.
    Handshaken(SaslMechanism),
    /// SCRAM: the server-first message was sent.
    Scram(Box<ScramServer>, SaslMechanism),
}

/// Where a client's SaslAuthenticate led.
enum Step {
    /// Send this token and wait for the next SaslAuthenticate (SCRAM's server-first).
    Challenge(Vec<u8>),
    /// The client is who it says; `last`: the final token to send (SCRAM's server-final).
    Authenticated { principal: String, last: Vec<u8> },
}

/// A refused SCRAM message: a wrong proof and an unknown user read the same.
fn scram_refusal(principal: Option<String>, error: ScramServerError, mechanism: SaslMechanism) -> Refusal {
    let message = match error {
        ScramServerError::InvalidCredentials => format!("{SCRAM_INVALID} {}", mechanism.kafka_name()),
        other => format!("Authentication failed: {other}"),
    };
    Refusal::new(principal, message)
}

/// A login the gateway refused, answered with `SASL_AUTHENTICATION_FAILED` and `message`.
#[derive(Debug)]
struct Refusal {
    principal: Option<String>,
    message: String,
    /// The `swap_logins` metric's outcome.
    outcome: &'static str,
}

impl Refusal {
    fn new(principal: Option<String>, message: impl Into<String>) -> Refusal {
        Refusal { principal, message: message.into(), outcome: "bad_credentials" }
    }

    fn because(mut self, outcome: &'static str) -> Refusal {
        self.outcome = outcome;
        self
    }
}

/// When a swap route's broker session is limited: the share of it after which it is renewed on
/// a new broker connection at the first moment the client has nothing outstanding...
const BROKER_SESSION_RENEW: f64 = 0.8;
/// ...and after which it is renewed regardless (outstanding requests are answered first), so
/// it never outlives the broker's limit.
const BROKER_SESSION_RENEW_AT_ANY_COST: f64 = 0.95;

/// A client logged in through a swap route.
pub struct SwapSession {
    pub auth: Arc<SwapAuth>,
    pub principal: String,
    /// The cluster user the gateway last logged in to the broker as (a connection that followed
    /// a switchover may have logged in as another user there).
    cluster_user: Mutex<String>,
    /// The gateway's broker session, when the broker limits it (`connections.max.reauth.ms`):
    /// its lifetime in milliseconds (0: unlimited) and when it began, in milliseconds after
    /// `since`. Before it ends, the pump renews it on a new broker connection.
    broker_lifetime_ms: AtomicU64,
    broker_started_ms: AtomicU64,
    /// The client's re-authentication in progress.
    exchange: Mutex<ClientExchange>,
    /// When the client's session ends (`connectionsMaxReauthMs`), in milliseconds after
    /// `since`; 0: never.
    expires_at_ms: AtomicU64,
    /// When the pump stopped reading the client to renew the broker session, in milliseconds
    /// after `since`; 0: it reads.
    paused_at_ms: AtomicU64,
    /// On tokio's clock, the one the pump's renewal timer sleeps on: the two must agree, or the
    /// timer wakes to a session that has not aged (and, with time paused, never does).
    since: Instant,
}

impl SwapSession {
    fn new(auth: &Arc<SwapAuth>, principal: String, cluster_user: String, broker_session: Option<Duration>) -> Self {
        let session = SwapSession {
            auth: Arc::clone(auth),
            principal,
            cluster_user: Mutex::new(cluster_user),
            broker_lifetime_ms: AtomicU64::new(0),
            broker_started_ms: AtomicU64::new(0),
            exchange: Mutex::new(ClientExchange::Idle),
            expires_at_ms: AtomicU64::new(0),
            paused_at_ms: AtomicU64::new(0),
            since: Instant::now(),
        };
        session.renew();
        session.broker_session_started(broker_session);
        session
    }

    /// The cluster user of the current broker session.
    pub fn cluster_user(&self) -> String {
        self.cluster_user.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// A broker session of `lifetime` (if limited) began now.
    fn broker_session_started(&self, lifetime: Option<Duration>) {
        let lifetime_ms = lifetime.map_or(0, |l| (l.as_millis() as u64).max(1));
        self.broker_started_ms.store(self.elapsed_ms(), Ordering::Release);
        self.broker_lifetime_ms.store(lifetime_ms, Ordering::Release);
    }

    /// How long until the broker session should be renewed at the first moment with nothing
    /// outstanding (zero: now; `None`: it never ends).
    pub fn broker_session_renewal_in(&self) -> Option<Duration> {
        self.broker_session_share_in(BROKER_SESSION_RENEW)
    }

    /// Whether the broker session is so near its end that it is renewed even with requests
    /// outstanding (they are answered first), so it never outlives the broker's limit.
    pub fn broker_session_must_renew(&self) -> bool {
        self.broker_session_share_in(BROKER_SESSION_RENEW_AT_ANY_COST).is_some_and(|wait| wait.is_zero())
    }

    /// How long until `share` of the broker session has passed.
    fn broker_session_share_in(&self, share: f64) -> Option<Duration> {
        let lifetime = self.broker_lifetime_ms.load(Ordering::Acquire);
        if lifetime == 0 {
            return None;
        }
        let at = self.broker_started_ms.load(Ordering::Acquire) + (lifetime as f64 * share) as u64;
        Some(Duration::from_millis(at.saturating_sub(self.elapsed_ms())))
    }

    /// The pump stops reading the client now, to renew the broker session.
    pub fn pause_for_renewal(&self) {
        self.paused_at_ms.store(self.elapsed_ms().max(1), Ordering::Release);
    }

    /// The pump reads the client again after a renewal. The client's session is lengthened by
    /// the pause: its requests waited unread, and one it sent before its session ended must
    /// not be judged late for the gateway's own delay.
    fn resume_after_renewal(&self) {
        let paused_at = self.paused_at_ms.swap(0, Ordering::AcqRel);
        if paused_at == 0 {
            return;
        }
        let pause = self.elapsed_ms().saturating_sub(paused_at);
        let _ = self
            .expires_at_ms
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |at| (at != 0).then(|| at.saturating_add(pause)));
    }

    fn elapsed_ms(&self) -> u64 {
        self.since.elapsed().as_millis() as u64
    }

    /// Start a new client session (at login and at each accepted re-authentication).
    fn renew(&self) {
        if let Some(lifetime) = self.auth.settings.client_reauth {
            let at = self.since.elapsed() + lifetime;
            self.expires_at_ms.store((at.as_millis() as u64).max(1), Ordering::Release);
        }
    }

    /// Whether the client's session has ended without a re-authentication: like a broker, the
    /// gateway then takes nothing but SaslHandshake and SaslAuthenticate.
    pub fn expired(&self) -> bool {
        let at = self.expires_at_ms.load(Ordering::Acquire);
        at != 0 && self.elapsed_ms() >= at
    }

    /// Answer a SaslHandshake or SaslAuthenticate request the client sends on an open
    /// connection (KIP-368 re-authentication): the answer, and where the exchange stands.
    /// `body` is the frame after its size prefix.
    pub async fn reauthenticate(&self, request: &InFlight, body: &[u8]) -> Result<(Bytes, Reauth), RequestError> {
        // Taken out for the exchange (which may look a verifier up) and put back after: a
        // connection's requests are read one after the other, so nothing else uses it meanwhile.
        let mut exchange = std::mem::take(&mut *self.exchange.lock().unwrap_or_else(PoisonError::into_inner));
        let answer = self.reauthenticate_step(&mut exchange, request, body).await;
        *self.exchange.lock().unwrap_or_else(PoisonError::into_inner) = exchange;
        answer
    }

    async fn reauthenticate_step(
        &self,
        exchange: &mut ClientExchange,
        request: &InFlight,
        body: &[u8],
    ) -> Result<(Bytes, Reauth), RequestError> {
        match request.api_key {
            ApiKey::SaslHandshake => {
                if request.api_version < crate::protocol::sasl::MIN_HANDSHAKE_VERSION {
                    return Err(RequestError::LegacySaslHandshake);
                }
                let chosen = self.auth.offered(&decode_handshake(request, body)?);
                *exchange = chosen.map_or(ClientExchange::Idle, ClientExchange::Handshaken);
                let answer = handshake_answer(request, chosen.is_some(), self.auth.mechanisms())?;
                Ok((answer, if chosen.is_some() { Reauth::Continue } else { Reauth::Refused }))
            }
            _ => {
                let token = decode_authenticate(request, body)?;
                let lifetime = self.auth.settings.client_reauth;
                let outcome = self.auth.step(exchange, &token).await.and_then(|step| match step {
                    Step::Authenticated { principal, .. } if principal != self.principal => Err(Refusal::new(
                        Some(principal),
                        "Authentication failed: a re-authentication must keep the connection's principal",
                    )),
                    step => Ok(step),
                });
                match outcome {
                    Ok(Step::Challenge(token)) => {
                        Ok((authenticate_answer(request, Ok(token), None)?, Reauth::Continue))
                    }
                    Ok(Step::Authenticated { last, .. }) => {
                        self.renew();
                        Ok((authenticate_answer(request, Ok(last), lifetime)?, Reauth::Accepted))
                    }
                    Err(refusal) => {
                        *exchange = ClientExchange::Idle;
                        Ok((authenticate_answer(request, Err(refusal.message), None)?, Reauth::Refused))
                    }
                }
            }
        }
    }
}

/// Where a client's re-authentication stands after one of its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reauth {
    /// Accepted so far; more requests follow (a SaslHandshake, SCRAM's first round).
    Continue,
    /// The client is authenticated again.
    Accepted,
    /// Refused: the connection closes after the answer.
    Refused,
}

/// A finished login: the client's principal, the cluster user, the broker session's lifetime.
type LoggedIn = (String, String, Option<Duration>);

/// How a swap login ended, for the close reason and the audit log.
pub enum SwapOutcome {
    /// The client is logged in and the broker connection too; `leftover`: client bytes read
    /// after the login, for the pump.
    LoggedIn { session: SwapSession, leftover: BytesMut, summary: SaslSummary, bytes_to_client: u64 },
    /// The connection ends here.
    Ended { reason: CloseReason, summary: SaslSummary, bytes_to_client: u64 },
}

/// The client's read and write halves, the broker's, and what the pre-login dialogue needs.
pub struct Legs<'a, CR, CW, UR, UW> {
    pub client_read: &'a mut CR,
    pub client_write: &'a mut CW,
    pub upstream_read: &'a mut UR,
    pub upstream_write: &'a mut UW,
}

/// Run the client's login on a swap route (see the module documentation). `certificate`: the
/// subject of the client's TLS certificate (RFC 2253), kept on mTLS routes.
pub async fn login<CR, CW, UR, UW>(
    auth: &Arc<SwapAuth>,
    legs: Legs<'_, CR, CW, UR, UW>,
    initial: BytesMut,
    route: &Route,
    upstream: &Upstream,
    max_frame_bytes: usize,
    certificate: Option<String>,
) -> SwapOutcome
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    UR: AsyncRead + Unpin,
    UW: AsyncWrite + Unpin,
{
    let Legs { client_read, client_write, upstream_read, upstream_write } = legs;
    let mut dialogue = Dialogue {
        auth,
        client_read,
        client_write,
        broker: BrokerSide::new(upstream_read, upstream_write, max_frame_bytes),
        client_buf: initial,
        route,
        upstream,
        request_limits: FrameLimits {
            min_body: MIN_REQUEST_BODY,
            max_body: max_frame_bytes.min(MAX_UNAUTHENTICATED_REQUEST),
        },
        summary: SaslSummary::default(),
        exchange: ClientExchange::Idle,
        bytes_to_client: 0,
    };
    let result = match &auth.settings.client_auth {
        ClientAuthSettings::Sasl { .. } | ClientAuthSettings::StoredScram { .. } => {
            tokio::time::timeout(AUTHENTICATION_TIMEOUT, dialogue.run()).await
        }
        ClientAuthSettings::Mtls { rules } => {
            tokio::time::timeout(AUTHENTICATION_TIMEOUT, dialogue.run_mtls(rules, certificate)).await
        }
    };
    let (summary, bytes_to_client) = (dialogue.summary.clone(), dialogue.bytes_to_client);
    match result {
        Ok(Ok((principal, cluster_user, broker_session))) => SwapOutcome::LoggedIn {
            session: SwapSession::new(auth, principal, cluster_user, broker_session),
            leftover: dialogue.client_buf,
            summary,
            bytes_to_client,
        },
        Ok(Err(reason)) => SwapOutcome::Ended { reason, summary, bytes_to_client },
        Err(_) => SwapOutcome::Ended {
            reason: CloseReason::SaslRefused(format!(
                "the client did not complete its SASL login within {AUTHENTICATION_TIMEOUT:?}"
            )),
            summary,
            bytes_to_client,
        },
    }
}

/// Log a client that is already authenticated in again, on a new broker connection to `domain`
/// (its connection followed the route there at a switchover, or its broker session is renewed):
/// the cluster user, from the domain's store. Nothing is read from or sent to the client.
pub async fn relogin<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    session: &SwapSession,
    domain: &str,
    route: &str,
    (read, write): (&mut R, &mut W),
    max_frame_bytes: usize,
) -> Result<String, String> {
    let mut broker = BrokerSide::new(read, write, max_frame_bytes);
    broker.versions().await.map_err(|problem| format!("the broker's ApiVersions answer: {problem}"))?;
    let principal = &session.principal;
    let (user, lifetime) =
        session.auth.cluster_login(principal, domain, route, &mut broker).await.map_err(|refusal| refusal.message)?;
    session.broker_session_started(lifetime);
    *session.cluster_user.lock().unwrap_or_else(PoisonError::into_inner) = user.clone();
    session.resume_after_renewal();
    Ok(user)
}

/// A swap route's connection from the client's first byte to its end: the login, then the
/// pump. `dial` opens a broker connection to a domain, not logged in; the pump's re-dials (a
/// switchover's cut, the renewal of the gateway's broker session) go through it and log in
/// there again. The summary's SASL part counts the login and the re-authentications the pump
/// answered. `certificate`: the subject of the client's TLS certificate, for mTLS routes.
pub async fn serve<C, U, D>(
    auth: &Arc<SwapAuth>,
    (client, initial, certificate): (C, BytesMut, Option<String>),
    upstream: Dialled<U>,
    mut ctx: ConnectionContext,
    stop: StopSignals<'_>,
    dial: D,
) -> ConnectionSummary
where
    C: Duplex,
    U: Duplex,
    D: Fn(Arc<Upstream>) -> Pin<Box<dyn Future<Output = Result<Dialled<U>, String>> + Send>> + Send + Sync + 'static,
{
    let (mut client_read, mut client_write) = client.into_halves();
    let stands_in = upstream.stands_in;
    let (mut upstream_read, mut upstream_write) = upstream.stream.into_halves();
    let legs = Legs {
        client_read: &mut client_read,
        client_write: &mut client_write,
        upstream_read: &mut upstream_read,
        upstream_write: &mut upstream_write,
    };
    let max_frame = ctx.settings.max_frame_bytes;
    let (session, leftover, login, bytes_to_client) =
        match login(auth, legs, initial, &ctx.route, &ctx.upstream, max_frame, certificate).await {
            SwapOutcome::Ended { reason, summary, bytes_to_client } => {
                let sasl = summary;
                return ConnectionSummary { reason, bytes_from_client: 0, bytes_to_client, sasl, cluster_user: None };
            }
            SwapOutcome::LoggedIn { session, leftover, summary, bytes_to_client } => {
                (Arc::new(session), leftover, summary, bytes_to_client)
            }
        };
    ctx.swap = Some(Arc::clone(&session));
    let logged_in = Arc::clone(&session);
    let route = ctx.route.name.clone();
    let relogin_dial = move |domain: Arc<Upstream>| -> Pin<Box<dyn Future<Output = _> + Send>> {
        let (dialled, session, route) = (dial(Arc::clone(&domain)), Arc::clone(&session), route.clone());
        Box::pin(async move {
            let Dialled { stream, stands_in } = dialled.await?;
            let (mut read, mut write) = stream.into_halves();
            relogin(&session, &domain.domain, &route, (&mut read, &mut write), max_frame).await?;
            Ok(Dialled { stream: Halves(read, write), stands_in })
        })
    };
    let relogin_dial: &Redial<_> = &relogin_dial;
    let client = Halves(client_read, client_write);
    let upstream = Dialled { stream: Halves(upstream_read, upstream_write), stands_in };
    let mut summary = pump(client, leftover, upstream, &ctx, stop, Some(relogin_dial)).await;
    summary.bytes_to_client += bytes_to_client;
    let reauth = std::mem::take(&mut summary.sasl);
    summary.sasl = SaslSummary {
        authentications: login.authentications + reauth.authentications,
        authenticated: reauth.authenticated.or(login.authenticated),
        ..login
    };
    // The user of the last broker login: after a switchover, the destination's.
    summary.cluster_user = Some(logged_in.cluster_user());
    summary
}

struct Dialogue<'a, 'l, CR, CW, UR, UW> {
    auth: &'a Arc<SwapAuth>,
    client_read: &'l mut CR,
    client_write: &'l mut CW,
    broker: BrokerSide<'l, UR, UW>,
    client_buf: BytesMut,
    route: &'a Route,
    upstream: &'a Upstream,
    request_limits: FrameLimits,
    summary: SaslSummary,
    exchange: ClientExchange,
    bytes_to_client: u64,
}

impl<CR, CW, UR, UW> Dialogue<'_, '_, CR, CW, UR, UW>
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    UR: AsyncRead + Unpin,
    UW: AsyncWrite + Unpin,
{
    /// Until the client is logged in: its principal, the cluster user and the broker session's
    /// lifetime (if limited).
    async fn run(&mut self) -> Result<LoggedIn, CloseReason> {
        loop {
            let frame = self.client_frame().await?;
            let body = &frame[SIZE_PREFIX..];
            let request = peek_request(body, std::time::Instant::now()).map_err(CloseReason::BadRequest)?;
            self.route.metrics.request(request.api_key);
            match request.api_key {
                ApiKey::ApiVersions => self.api_versions(request, &frame).await?,
                ApiKey::SaslHandshake => {
                    if request.api_version < crate::protocol::sasl::MIN_HANDSHAKE_VERSION {
                        return Err(CloseReason::BadRequest(RequestError::LegacySaslHandshake));
                    }
                    let mechanism = decode_handshake(&request, body).map_err(CloseReason::BadRequest)?;
                    self.summary.mechanism = Some(mechanism.clone());
                    let chosen = self.auth.offered(&mechanism);
                    let answer = handshake_answer(&request, chosen.is_some(), self.auth.mechanisms());
                    self.send_client(&answer.map_err(CloseReason::BadRequest)?).await?;
                    let Some(chosen) = chosen else {
                        return Err(CloseReason::SaslRefused(format!(
                            "the client asked for SASL mechanism {mechanism}; this swap route takes {}",
                            self.auth.offered_names()
                        )));
                    };
                    self.exchange = ClientExchange::Handshaken(chosen);
                }
                ApiKey::SaslAuthenticate => {
                    let token = decode_authenticate(&request, body).map_err(CloseReason::BadRequest)?;
                    let outcome = match self.auth.step(&mut self.exchange, &token).await {
                        Ok(Step::Challenge(challenge)) => {
                            if let ClientExchange::Scram(server, _) = &self.exchange {
                                self.summary.principal = Some(server.user().to_string());
                            }
                            let answer = authenticate_answer(&request, Ok(challenge), None);
                            self.send_client(&answer.map_err(CloseReason::BadRequest)?).await?;
                            continue;
                        }
                        Ok(Step::Authenticated { principal, last }) => {
                            self.summary.principal = Some(principal.clone());
                            self.connect(&principal).await.map(|logged_in| (logged_in, last))
                        }
                        Err(refusal) => Err(refusal),
                    };
                    return match outcome {
                        Ok((logged_in, last)) => {
                            self.logged_in();
                            let answer = authenticate_answer(&request, Ok(last), self.auth.settings.client_reauth);
                            self.send_client(&answer.map_err(CloseReason::BadRequest)?).await?;
                            Ok(logged_in)
                        }
                        Err(refusal) => {
                            let reason = self.refused(refusal);
                            let answer = authenticate_answer(&request, Err(reason.clone()), None);
                            self.send_client(&answer.map_err(CloseReason::BadRequest)?).await?;
                            Err(CloseReason::SaslRefused(reason))
                        }
                    };
                }
                other => {
                    let how = self.auth.offered_names();
                    return Err(CloseReason::SaslRefused(format!(
                        "the client sent {other:?} before authenticating (this route swaps credentials: it must log in with SASL {how} first)"
                    )));
                }
            }
        }
    }

    /// An mTLS client: its certificate's subject mapped to the principal, then the broker login,
    /// before anything is read from the client.
    async fn run_mtls(&mut self, rules: &PrincipalRules, subject: Option<String>) -> Result<LoggedIn, CloseReason> {
        self.summary.mechanism = Some(MTLS.to_string());
        let Some(subject) = subject else {
            let reason = "the client presented no usable TLS certificate (this route logs clients in with theirs)";
            return Err(CloseReason::SaslRefused(self.refused(Refusal::new(None, reason))));
        };
        let Some(principal) = rules.apply(&subject) else {
            let reason =
                format!("no principalMappingRules rule applies to the client certificate's subject `{subject}`");
            return Err(CloseReason::SaslRefused(self.refused(Refusal::new(None, reason))));
        };
        self.summary.principal = Some(principal.clone());
        if let Err(problem) = self.broker.versions().await {
            return Err(CloseReason::SaslRefused(format!("the broker's ApiVersions answer: {problem}")));
        }
        match self.connect(&principal).await {
            Ok(logged_in) => {
                self.logged_in();
                Ok(logged_in)
            }
            Err(refusal) => Err(CloseReason::SaslRefused(self.refused(refusal))),
        }
    }

    /// Count and note a successful login.
    fn logged_in(&mut self) {
        self.route.metrics.swap_login("ok");
        self.summary.authenticated = Some(true);
        self.summary.authentications = 1;
    }

    /// Count and note a refused login: the reason to close with.
    fn refused(&mut self, refusal: Refusal) -> String {
        self.route.metrics.swap_login(refusal.outcome);
        self.summary.authenticated = Some(false);
        if refusal.principal.is_some() {
            self.summary.principal = refusal.principal;
        }
        refusal.message
    }

    /// The authenticated principal's cluster credentials looked up, and the broker login.
    async fn connect(&mut self, principal: &str) -> Result<LoggedIn, Refusal> {
        let (auth, domain, route) = (self.auth, &self.upstream.domain, &self.route.name);
        let (user, broker_session) = auth.cluster_login(principal, domain, route, &mut self.broker).await?;
        Ok((principal.to_string(), user, broker_session))
    }

    /// Forward the client's ApiVersions and send it the (clamped) answer; a version the
    /// gateway cannot read is answered here, as the pump does.
    async fn api_versions(&mut self, mut request: InFlight, frame: &[u8]) -> Result<(), CloseReason> {
        request.handling = match classify(request.api_key, request.api_version) {
            Classified::Forward(handling) => handling,
            Classified::UnsupportedApiVersions => {
                return self.send_client(&unsupported_version_answer(request.correlation_id)).await
            }
            Classified::Refuse(e) => return Err(CloseReason::BadRequest(e)),
        };
        self.broker.forward(frame).await?;
        let answer = self.broker.frame().await?;
        let body = &answer[SIZE_PREFIX..];
        let correlation_id = crate::protocol::response_correlation_id(body);
        if correlation_id != request.correlation_id {
            return Err(CloseReason::UnexpectedResponse { correlation_id, expected: Some(request.correlation_id) });
        }
        self.broker.note_versions(&request, body);
        match rewrite_response(self.route, self.upstream, &request, ResponseBody::Slice(body))
            .map_err(CloseReason::BadResponse)?
        {
            Some(rewritten) => self.send_client(&rewritten).await,
            None => self.send_client(&answer).await,
        }
    }

    async fn send_client(&mut self, frame: &[u8]) -> Result<(), CloseReason> {
        self.client_write.write_all(frame).await.map_err(CloseReason::ClientError)?;
        self.client_write.flush().await.map_err(CloseReason::ClientError)?;
        self.bytes_to_client += frame.len() as u64;
        self.route.metrics.bytes_to_client.inc_by(frame.len() as u64);
        Ok(())
    }

    /// The client's next complete request frame.
    async fn client_frame(&mut self) -> Result<Bytes, CloseReason> {
        loop {
            match frame_at(&self.client_buf, self.request_limits) {
                Ok(FrameStatus::Complete(len)) => {
                    self.route.metrics.bytes_from_client.inc_by(len as u64);
                    return Ok(self.client_buf.split_to(len).freeze());
                }
                Ok(FrameStatus::Incomplete { .. }) => {}
                Err(e) => return Err(CloseReason::BadRequestFrame(e)),
            }
            match self.client_read.read_buf(&mut self.client_buf).await {
                Ok(0) if self.client_buf.is_empty() => return Err(CloseReason::ClientClosed),
                Ok(0) => return Err(CloseReason::ClientClosedMidFrame { received: self.client_buf.len() }),
                Ok(_) => {}
                Err(e) => return Err(CloseReason::ClientError(e)),
            }
        }
    }
}

/// The mechanism of a SaslHandshake request (`body`: the frame after its size prefix).
pub(super) fn decode_handshake(request: &InFlight, mut body: &[u8]) -> Result<String, RequestError> {
    let undecodable =
        |cause: String| RequestError::Undecodable { api_key: request.api_key, version: request.api_version, cause };
    let version = request.api_version;
    RequestHeader::decode(&mut body, request.api_key.request_header_version(version))
        .map_err(|e| undecodable(e.to_string()))?;
    let handshake = SaslHandshakeRequest::decode(&mut body, version).map_err(|e| undecodable(e.to_string()))?;
    Ok(handshake.mechanism.to_string())
}

/// The token of a SaslAuthenticate request.
pub(super) fn decode_authenticate(request: &InFlight, mut body: &[u8]) -> Result<Bytes, RequestError> {
    let undecodable =
        |cause: String| RequestError::Undecodable { api_key: request.api_key, version: request.api_version, cause };
    let version = request.api_version;
    RequestHeader::decode(&mut body, request.api_key.request_header_version(version))
        .map_err(|e| undecodable(e.to_string()))?;
    let authenticate = SaslAuthenticateRequest::decode(&mut body, version).map_err(|e| undecodable(e.to_string()))?;
    Ok(authenticate.auth_bytes)
}

/// The gateway's SaslHandshake answer, listing the route's mechanisms (none on mTLS routes).
pub(super) fn handshake_answer(request: &InFlight, ok: bool, mechanisms: Vec<StrBytes>) -> Result<Bytes, RequestError> {
    let code = if ok { 0 } else { ResponseError::UnsupportedSaslMechanism.code() };
    reply(request, &SaslHandshakeResponse::default().with_error_code(code).with_mechanisms(mechanisms))
}

/// The gateway's SaslAuthenticate answer: success with a token (empty for PLAIN), or
/// `SASL_AUTHENTICATION_FAILED` with a message.
pub(super) fn authenticate_answer(
    request: &InFlight,
    outcome: Result<Vec<u8>, String>,
    lifetime: Option<Duration>,
) -> Result<Bytes, RequestError> {
    let body = match outcome {
        Ok(token) => {
            let body = SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(token));
            // The session lifetime exists from v1 on (KIP-368).
            match request.api_version >= 1 {
                true => body
                    .with_session_lifetime_ms(lifetime.map_or(0, |l| i64::try_from(l.as_millis()).unwrap_or(i64::MAX))),
                false => body,
            }
        }
        Err(message) => SaslAuthenticateResponse::default()
            .with_error_code(ResponseError::SaslAuthenticationFailed.code())
            .with_error_message(Some(StrBytes::from_string(message))),
    };
    reply(request, &body)
}

pub(super) fn reply(request: &InFlight, body: &impl Encodable) -> Result<Bytes, RequestError> {
    let header = ResponseHeader::default().with_correlation_id(request.correlation_id);
    encode_response(&header, body, request.api_key, request.api_version).map_err(|e| RequestError::Undecodable {
        api_key: request.api_key,
        version: request.api_version,
        cause: format!("cannot answer it: {e:#}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClusterTemplate, TemplateValue};
    use crate::protocol::scram::ScramClient;
    use crate::protocol::{encode_request, ResponseHandling};
    use crate::secrets::StoreError;

    struct NoStore;

    impl SecretStore for NoStore {
        fn lookup(&self, _: &str) -> Result<Option<Credentials>, StoreError> {
            Ok(None)
        }

        fn verifier(&self, _: &str, _: &str) -> Result<Option<Secret>, StoreError> {
            Ok(None)
        }

        fn write_verifier(&self, _: &str, _: &str, _: &Secret) -> Result<(), StoreError> {
            Ok(())
        }

        fn delete_verifier(&self, _: &str, _: &str) -> Result<bool, StoreError> {
            Ok(false)
        }
    }

    impl SwapSession {
        /// [`SwapSession::reauthenticate`] run to its end.
        fn reauth(&self, request: &InFlight, body: &[u8]) -> Result<(Bytes, Reauth), RequestError> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(self.reauthenticate(request, body))
        }
    }

    fn auth(dir: &std::path::Path, reauth: Option<Duration>) -> Arc<SwapAuth> {
        let users = r#"x.PlainLoginModule required user_alice="alice-pw" user_bob="bob-pw";"#;
        auth_with(dir, reauth, SaslMechanism::Plain, users)
    }

    fn auth_with(
        dir: &std::path::Path,
        reauth: Option<Duration>,
        mechanism: SaslMechanism,
        users: &str,
    ) -> Arc<SwapAuth> {
        Arc::new(SwapAuth::new(settings(dir, reauth, mechanism, users), Arc::new(NoStore)).unwrap())
    }

    /// A SASL route's settings, its JAAS file (`users`) written in `dir`, and no store.
    fn settings(
        dir: &std::path::Path,
        reauth: Option<Duration>,
        mechanism: SaslMechanism,
        users: &str,
    ) -> SwapSettings {
        let jaas = dir.join("users.conf");
        std::fs::write(&jaas, users).unwrap();
        let users = client_users(users, mechanism).unwrap();
        SwapSettings {
            client_auth: ClientAuthSettings::Sasl { mechanism, jaas, users },
            secret_store: "none".into(),
            domain_secret_stores: Default::default(),
            cluster_mechanism: SaslMechanism::Plain,
            cluster_template: ClusterTemplate {
                username: TemplateValue::MappedUser,
                password: TemplateValue::MappedSecret,
            },
            client_reauth: reauth,
        }
    }

    #[test]
    fn plain_tokens_are_checked_against_the_jaas_users_read_again_when_changed() {
        let dir = tempfile::tempdir().unwrap();
        let auth = auth(dir.path(), None);
        assert_eq!(auth.check_plain(b"\0alice\0alice-pw").unwrap(), "alice");
        assert_eq!(auth.check_plain(b"alice\0alice\0alice-pw").unwrap(), "alice");
        let wrong = auth.check_plain(b"\0alice\0nope").unwrap_err();
        assert_eq!(wrong.principal.as_deref(), Some("alice"));
        assert!(!wrong.message.contains("nope"));
        assert!(auth.check_plain(b"bob\0alice\0alice-pw").is_err(), "another authorization id");
        assert!(auth.check_plain(b"alice-pw").is_err(), "not a PLAIN token");
        // A rewritten file (a later modification time) is read again.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(dir.path().join("users.conf"), r#"x.PlainLoginModule required user_alice="rotated";"#).unwrap();
        let file = std::fs::File::options().write(true).open(dir.path().join("users.conf")).unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(5)).unwrap();
        assert!(auth.check_plain(b"\0alice\0alice-pw").is_err());
        assert!(auth.check_plain(b"\0alice\0rotated").is_ok());
    }

    fn request(api_key: ApiKey, version: i16) -> InFlight {
        InFlight {
            correlation_id: 7,
            api_key,
            api_version: version,
            handling: ResponseHandling::Opaque,
            expects_response: true,
            sent_at: std::time::Instant::now(),
            client: 0,
        }
    }

    fn body(api_key: ApiKey, version: i16, message: &impl Encodable) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7);
        encode_request(&header, message, api_key, version).unwrap().slice(SIZE_PREFIX..)
    }

    fn answer_code(frame: &Bytes, version: i16) -> (i16, i64) {
        let mut body = frame.slice(SIZE_PREFIX..);
        ResponseHeader::decode(&mut body, ApiKey::SaslAuthenticate.response_header_version(version)).unwrap();
        let answer = SaslAuthenticateResponse::decode(&mut body, version).unwrap();
        (answer.error_code, answer.session_lifetime_ms)
    }

    #[test]
    fn reauthentication_needs_a_handshake_the_right_password_and_the_same_principal() {
        let dir = tempfile::tempdir().unwrap();
        let session =
            SwapSession::new(&auth(dir.path(), Some(Duration::from_secs(60))), "alice".into(), "app".into(), None);
        assert!(!session.expired());
        let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
        let authenticate = |token: &'static [u8]| {
            let message = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(token));
            session.reauth(&request(ApiKey::SaslAuthenticate, 2), &body(ApiKey::SaslAuthenticate, 2, &message))
        };
        let (_, step) = authenticate(b"\0alice\0alice-pw").unwrap();
        assert_eq!(step, Reauth::Refused, "no SaslHandshake first");
        let shake = || session.reauth(&request(ApiKey::SaslHandshake, 1), &body(ApiKey::SaslHandshake, 1, &handshake));
        assert_eq!(shake().unwrap().1, Reauth::Continue);
        let (answer, step) = authenticate(b"\0alice\0alice-pw").unwrap();
        assert_eq!(step, Reauth::Accepted);
        assert_eq!(answer_code(&answer, 2), (0, 60_000));
        assert_eq!(shake().unwrap().1, Reauth::Continue);
        let (answer, step) = authenticate(b"\0alice\0wrong").unwrap();
        assert_eq!(step, Reauth::Refused);
        assert_eq!(answer_code(&answer, 2).0, ResponseError::SaslAuthenticationFailed.code());
        let scram = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("SCRAM-SHA-256"));
        let (answer, step) =
            session.reauth(&request(ApiKey::SaslHandshake, 1), &body(ApiKey::SaslHandshake, 1, &scram)).unwrap();
        assert_eq!(step, Reauth::Refused, "only PLAIN");
        let mut answer = answer.slice(SIZE_PREFIX..);
        ResponseHeader::decode(&mut answer, ApiKey::SaslHandshake.response_header_version(1)).unwrap();
        let answer = SaslHandshakeResponse::decode(&mut answer, 1).unwrap();
        assert_eq!(answer.error_code, ResponseError::UnsupportedSaslMechanism.code());
        assert_eq!(answer.mechanisms, vec![StrBytes::from_static_str("PLAIN")], "the enabled list");
        assert_eq!(shake().unwrap().1, Reauth::Continue);
        let (_, step) = authenticate(b"\0bob\0bob-pw").unwrap();
        assert_eq!(step, Reauth::Refused, "another principal, even with its right password");
        let legacy = session.reauth(&request(ApiKey::SaslHandshake, 0), &body(ApiKey::SaslHandshake, 0, &handshake));
        assert!(matches!(legacy, Err(RequestError::LegacySaslHandshake)));
    }

    /// The token of a SaslAuthenticate answer, or its error.
    fn answer_token(frame: &Bytes) -> Result<Bytes, String> {
        let mut body = frame.slice(SIZE_PREFIX..);
        ResponseHeader::decode(&mut body, ApiKey::SaslAuthenticate.response_header_version(2)).unwrap();
        let answer = SaslAuthenticateResponse::decode(&mut body, 2).unwrap();
        match answer.error_code {
            0 => Ok(answer.auth_bytes),
            _ => Err(answer.error_message.map(|m| m.to_string()).unwrap_or_default()),
        }
    }

    /// A SCRAM route's client users: alice's verifier, for `alice-pw`.
    fn scram_auth(dir: &std::path::Path, hash: ScramHash, mechanism: SaslMechanism) -> Arc<SwapAuth> {
        let verifier = ScramVerifier::derive(hash, "alice-pw", b"alice-salt", 4096).to_kafka_string();
        let users = format!(r#"x.ScramLoginModule required user_alice="{verifier}";"#);
        auth_with(dir, Some(Duration::from_secs(60)), mechanism, &users)
    }

    /// One SCRAM re-authentication of `user` with `password`: the final step, and the error a
    /// refusal carries.
    fn scram_reauth(session: &SwapSession, hash: ScramHash, user: &str, password: &str) -> (Reauth, Option<String>) {
        let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(hash.mechanism()));
        let (_, step) =
            session.reauth(&request(ApiKey::SaslHandshake, 1), &body(ApiKey::SaslHandshake, 1, &handshake)).unwrap();
        assert_eq!(step, Reauth::Continue);
        let send = |token: Vec<u8>| {
            let message = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
            session.reauth(&request(ApiKey::SaslAuthenticate, 2), &body(ApiKey::SaslAuthenticate, 2, &message))
        };
        let mut client = ScramClient::new(hash, user, password);
        let (first, step) = send(client.client_first()).unwrap();
        assert_eq!(step, Reauth::Continue);
        let (last, step) = send(client.client_final(&answer_token(&first).unwrap()).unwrap()).unwrap();
        match answer_token(&last) {
            Ok(signature) => {
                client.verify_server_final(&signature).unwrap();
                (step, None)
            }
            Err(message) => (step, Some(message)),
        }
    }

    #[test]
    fn scram_reauthentication_with_the_right_password_the_wrong_one_or_an_unknown_user() {
        for (hash, mechanism) in
            [(ScramHash::Sha256, SaslMechanism::ScramSha256), (ScramHash::Sha512, SaslMechanism::ScramSha512)]
        {
            let dir = tempfile::tempdir().unwrap();
            let session =
                SwapSession::new(&scram_auth(dir.path(), hash, mechanism), "alice".into(), "app".into(), None);
            assert_eq!(scram_reauth(&session, hash, "alice", "alice-pw"), (Reauth::Accepted, None));
            let (step, wrong) = scram_reauth(&session, hash, "alice", "not-the-pw");
            assert_eq!(step, Reauth::Refused);
            let wrong = wrong.unwrap();
            assert!(!wrong.contains("not-the-pw") && !wrong.contains("alice-pw"), "{wrong}");
            let (step, unknown) = scram_reauth(&session, hash, "mallory", "alice-pw");
            assert_eq!(step, Reauth::Refused);
            assert_eq!(unknown.unwrap(), wrong, "an unknown user reads like a wrong password");
            // PLAIN is not offered on a SCRAM route.
            let plain = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
            let (_, step) =
                session.reauth(&request(ApiKey::SaslHandshake, 1), &body(ApiKey::SaslHandshake, 1, &plain)).unwrap();
            assert_eq!(step, Reauth::Refused);
        }
    }

    /// A store holding SCRAM verifiers in memory.
    #[derive(Default)]
    struct Verifiers(Mutex<HashMap<(String, String), Secret>>);

    impl SecretStore for Verifiers {
        fn lookup(&self, _: &str) -> Result<Option<Credentials>, StoreError> {
            Ok(None)
        }

        fn verifier(&self, mechanism: &str, user: &str) -> Result<Option<Secret>, StoreError> {
            Ok(self.0.lock().unwrap().get(&(mechanism.to_string(), user.to_string())).cloned())
        }

        fn write_verifier(&self, mechanism: &str, user: &str, verifier: &Secret) -> Result<(), StoreError> {
            self.0.lock().unwrap().insert((mechanism.to_string(), user.to_string()), verifier.clone());
            Ok(())
        }

        fn delete_verifier(&self, mechanism: &str, user: &str) -> Result<bool, StoreError> {
            Ok(self.0.lock().unwrap().remove(&(mechanism.to_string(), user.to_string())).is_some())
        }
    }

    #[test]
    fn stored_scram_offers_both_hashes_reads_the_store_and_knows_its_admin() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings =
            settings(dir.path(), None, SaslMechanism::Plain, r#"x.PlainLoginModule required user_a="b";"#);
        let admin = crate::config::ScramAdmin { username: "root".into(), password: Secret::new("root-pw") };
        settings.client_auth = ClientAuthSettings::StoredScram { admin: Some(admin) };
        let store = Arc::new(Verifiers::default());
        let verifier = ScramVerifier::derive(ScramHash::Sha512, "alice-pw", b"alice-salt", 4096);
        store.write_verifier("SCRAM-SHA-512", "alice", &Secret::new(verifier.to_kafka_string())).unwrap();
        let auth = Arc::new(SwapAuth::new(settings, store).unwrap());
        assert_eq!(auth.mechanisms(), ["SCRAM-SHA-256", "SCRAM-SHA-512"].map(StrBytes::from_static_str));
        assert_eq!(auth.scram_admin(), Some("root"));
        let alice = SwapSession::new(&auth, "alice".into(), "app".into(), None);
        assert_eq!(scram_reauth(&alice, ScramHash::Sha512, "alice", "alice-pw"), (Reauth::Accepted, None));
        assert_eq!(scram_reauth(&alice, ScramHash::Sha512, "alice", "wrong").0, Reauth::Refused);
        assert_eq!(
            scram_reauth(&alice, ScramHash::Sha256, "alice", "alice-pw").0,
            Reauth::Refused,
            "no SHA-256 verifier"
        );
        let root = SwapSession::new(&auth, "root".into(), "app".into(), None);
        for hash in [ScramHash::Sha256, ScramHash::Sha512] {
            assert_eq!(scram_reauth(&root, hash, "root", "root-pw"), (Reauth::Accepted, None), "{hash:?}");
        }
    }

    #[test]
    fn unusable_verifiers_are_refused_at_start_without_quoting_them() {
        let dir = tempfile::tempdir().unwrap();
        let users = r#"x.ScramLoginModule required user_alice="plain-password-by-mistake";"#;
        let settings = settings(dir.path(), None, SaslMechanism::ScramSha256, users);
        let error = SwapAuth::new(settings, Arc::new(NoStore)).err().unwrap();
        assert!(error.contains("`alice`") && !error.contains("plain-password-by-mistake"), "{error}");
    }
}
