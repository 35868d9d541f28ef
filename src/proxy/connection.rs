//! One client connection and its upstream connection, pumped in both directions.
//!
//! Requests flow client -> broker as they arrive: the proxy finds frame boundaries in its read
//! buffer, notes each request in the in-flight queue, and writes the complete frames of a read
//! with one write, straight from the buffer. Responses flow back the same way; each one is
//! checked against the head of the queue (Kafka answers in order), and only those whose API
//! carries broker addresses are decoded and rewritten. The queue is bounded: when a client has
//! `maxInFlightRequests` outstanding, the proxy forwards what it has noted, then waits for
//! answers before noting more, and reads nothing new meanwhile. Forwarding before waiting is
//! what keeps a read of many pipelined requests from wedging the connection.
//!
//! A large answer that passes unchanged (anything but the few APIs whose answers are decoded)
//! is not held whole: once its header shows whose answer it is, its bytes go to the client as
//! they arrive, read in pieces of up to two read chunks, so a 50 MiB Fetch answer costs a
//! connection 128 KiB and nothing of the buffer budget, not 50 MiB of it, and its first bytes
//! reach the client without waiting for its last. Answers
//! that must be decoded are held whole, within the budget: among them every Fetch answer from
//! v16 on (what current clients use), whose leader endpoints come after its records. The room
//! such an answer took is kept for the connection's next answer (`KeptRoom`).
//!
//! While a switchover fences the route, nothing new is forwarded. In fence mode `hold` the
//! proxy stops reading from the client; in mode `error` it answers what it can itself with a
//! retriable error. Those answers join the same queue as forwarded requests, so the client
//! still gets every answer in the order it asked.
//!
//! Anything a well-behaved peer would not send ends this connection, and only this one, with a
//! [`CloseReason`] that is logged with the client address and route.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::Poll;
use std::time::Duration;

use atomic_waker::AtomicWaker;
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
// Tokio's clock, so the in-process tests can pause it; the same as std's in a normal build.
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::broker_login::BrokerSide;
use super::budget::{Held, MemoryBudget};
use super::poll_on_wake::PollOnWake;
use super::proxy_protocol;
use super::sasl_replay;
use super::scram_admin::{self, ScramAdminRequest};
use super::stream::{Duplex, ProgressWriter};
use super::swap::{Reauth, SwapSession};
use super::transactions::{ProducerIdCall, Transactions};
use crate::config::FenceMode;
use crate::config::ProxySettings;
use crate::protocol::fence_answer::FenceCodes;
use crate::protocol::{
    client_id_hash, fence_answer, frame_at, internal, peek_request, response_correlation_id, sasl, FrameError,
    FrameLimits, FrameStatus, InFlight, RequestError, ResponseHandling, SaslSummary, MIN_REQUEST_BODY,
    MIN_RESPONSE_BODY, SIZE_PREFIX,
};
use crate::rewrite::{
    classify, handling_on_route, rewrite_records_response, rewrite_response, sasl_outcome, translate_request,
    unsupported_version_answer, Classified, RecordsAnswer, ResponseBody, RewriteError, SaslOutcome,
};
use crate::routing::{Effect, Passed, Route, Upstream};

/// Read at least this much at a time: large reads mean fewer syscalls.
const READ_CHUNK: usize = 64 * 1024;

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum CloseReason {
    #[error("client closed the connection")]
    ClientClosed,
    #[error("client disconnected in the middle of a request frame ({received} bytes of it received)")]
    ClientClosedMidFrame { received: usize },
    #[error("client connection error: {0}")]
    ClientError(io::Error),
    /// The client read nothing of an answer for `writeTimeoutMs`.
    #[error("the client read nothing for proxy.writeTimeoutMs while an answer waited to be sent")]
    ClientWriteTimeout,
    #[error("malformed request frame: {0}")]
    BadRequestFrame(FrameError),
    #[error("refused request: {0}")]
    BadRequest(RequestError),
    #[error(
        "malformed request frame: a PROXY protocol header arrived but the feature is off \
         (set GATEWAY_FEATURE_FLAGS_HAPROXY_PROTOCOL=true or proxyProtocol.enabled)"
    )]
    UnexpectedProxyHeader,
    /// A TLS ClientHello on a listener without TLS: the client is configured for SSL.
    #[error(
        "a TLS handshake (ClientHello) arrived on a plaintext route: the client uses \
         security.protocol SSL or SASL_SSL, the route expects PLAINTEXT"
    )]
    TlsOnPlaintext,
    #[error("idle for longer than proxy.idleTimeoutMs{}", mid_frame(*partial_frame_bytes))]
    IdleTimeout { partial_frame_bytes: usize },
    /// A request frame still incomplete `frameTimeoutMs` after its first byte.
    #[error(
        "a request frame was still incomplete proxy.frameTimeoutMs after its first byte ({received} bytes of it received)"
    )]
    FrameTimeout { received: usize },
    #[error("broker closed the connection")]
    UpstreamClosed,
    /// The broker closed a connection after the client's own SASL session ended (broker
    /// `connections.max.reauth.ms`): the client did not re-authenticate in time (KIP-368).
    #[error("broker closed the connection after the client's SASL session ended (broker connections.max.reauth.ms): the client did not re-authenticate in time")]
    ClientSessionEnded,
    #[error("broker disconnected in the middle of a response frame ({received} bytes of it received)")]
    UpstreamClosedMidFrame { received: usize },
    #[error("broker connection error: {0}")]
    UpstreamError(io::Error),
    #[error("malformed response frame from the broker: {0}")]
    BadResponseFrame(FrameError),
    #[error("{}", unexpected_response(*correlation_id, *expected))]
    UnexpectedResponse { correlation_id: i32, expected: Option<i32> },
    #[error("{0}")]
    BadResponse(RewriteError),
    /// A swap route refused the client's login (answered with a SASL error first).
    #[error("SASL login refused by the gateway: {0}")]
    SaslRefused(String),
    /// A swap route's broker session (`connections.max.reauth.ms`) was about to end and the
    /// connection could not renew it on a new broker connection (it has no way to re-dial): it
    /// was drained and closed so the client logs in again.
    #[error("the gateway's broker session for this client was about to end (broker connections.max.reauth.ms), all in-flight requests answered; the client reconnects")]
    BrokerSessionEnding,
    #[error("gateway shutting down, all in-flight requests answered")]
    Shutdown,
    #[error("route reset by an operator, all in-flight requests answered")]
    RouteReset,
    /// The route switched clusters and this connection could not follow: its client
    /// authenticated with SASL to the old cluster, and only the client can log in again.
    #[error("the route switched to another cluster; a connection that authenticated with SASL cannot follow, all in-flight requests answered")]
    RouteSwitched,
    /// No new broker connection could be opened (or logged in) for a connection moving to the
    /// route's new cluster, or renewing a swap route's broker session.
    #[error("the connection could not continue on a new broker connection (after a switchover's cut or to renew the gateway's broker session): {0}")]
    MoveFailed(String),
    #[error("gateway shutting down, requests still unanswered after proxy.drainTimeoutMs")]
    DrainTimeout,
    /// The gateway-wide budget of buffered frame bytes had no room for a large frame in time.
    #[error(
        "no room in proxy.bufferBudgetBytes for a large {direction} frame within proxy.frameTimeoutMs \
         (other connections hold the budget)"
    )]
    NoBufferRoom { direction: &'static str },
}

fn mid_frame(partial_frame_bytes: usize) -> String {
    match partial_frame_bytes {
        0 => String::new(),
        bytes => format!(" in the middle of a request frame ({bytes} bytes of it received)"),
    }
}

fn unexpected_response(correlation_id: i32, expected: Option<i32>) -> String {
    match expected {
        Some(expected) => {
            format!("broker answered correlation id {correlation_id} while {expected} was next: responses out of order")
        }
        None => format!("broker sent a response (correlation id {correlation_id}) to no outstanding request"),
    }
}

/// How loudly a close is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Expected: debug.
    Routine,
    /// Worth knowing: info.
    Notable,
    /// Something misbehaved: warn.
    Problem,
}

impl CloseReason {
    /// How much the close matters to an operator.
    pub fn severity(&self) -> Severity {
        match self {
            CloseReason::ClientClosed | CloseReason::Shutdown | CloseReason::BrokerSessionEnding => Severity::Routine,
            CloseReason::IdleTimeout { .. }
            | CloseReason::RouteReset
            | CloseReason::RouteSwitched
            | CloseReason::MoveFailed(_)
            | CloseReason::SaslRefused(_)
            | CloseReason::ClientSessionEnded => Severity::Notable,
            _ => Severity::Problem,
        }
    }

    /// A short, stable name for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "client_closed",
            CloseReason::ClientClosedMidFrame { .. } => "client_closed_mid_frame",
            CloseReason::ClientError(_) => "client_error",
            CloseReason::ClientWriteTimeout => "client_write_timeout",
            CloseReason::BadRequestFrame(_) => "malformed_request_frame",
            CloseReason::BadRequest(_) => "refused_request",
            CloseReason::UnexpectedProxyHeader => "unexpected_proxy_header",
            CloseReason::TlsOnPlaintext => "tls_on_plaintext",
            CloseReason::IdleTimeout { .. } => "idle_timeout",
            CloseReason::FrameTimeout { .. } => "frame_timeout",
            CloseReason::UpstreamClosed => "broker_closed",
            CloseReason::ClientSessionEnded => "client_session_ended",
            CloseReason::UpstreamClosedMidFrame { .. } => "broker_closed_mid_frame",
            CloseReason::UpstreamError(_) => "broker_error",
            CloseReason::BadResponseFrame(_) => "malformed_response_frame",
            CloseReason::UnexpectedResponse { .. } => "unexpected_response",
            CloseReason::BadResponse(_) => "undecodable_response",
            CloseReason::SaslRefused(_) => "sasl_refused",
            CloseReason::BrokerSessionEnding => "broker_session_ending",
            CloseReason::Shutdown => "shutdown",
            CloseReason::RouteReset => "route_reset",
            CloseReason::RouteSwitched => "route_switched",
            CloseReason::MoveFailed(_) => "move_failed",
            CloseReason::DrainTimeout => "drain_timeout",
            CloseReason::NoBufferRoom { .. } => "no_buffer_room",
        }
    }

    /// Whether a peer sent something malformed or hostile.
    pub fn rejected_input(&self) -> bool {
        matches!(
            self,
            CloseReason::BadRequestFrame(_)
                | CloseReason::BadRequest(_)
                | CloseReason::UnexpectedProxyHeader
                | CloseReason::TlsOnPlaintext
                | CloseReason::FrameTimeout { .. }
                | CloseReason::BadResponseFrame(_)
                | CloseReason::UnexpectedResponse { .. }
                | CloseReason::BadResponse(_)
        )
    }
}

/// Everything a connection needs to know about where it lives.
pub struct ConnectionContext {
    pub route: Arc<Route>,
    /// The domain this connection was opened to; a switchover does not change it.
    pub upstream: Arc<Upstream>,
    pub settings: Arc<ProxySettings>,
    /// The gateway's budget of buffered frame bytes.
    pub budget: Arc<MemoryBudget>,
    /// On a swap route, the client's login: the gateway answers its re-authentications.
    pub swap: Option<Arc<SwapSession>>,
}

/// What makes a connection stop taking requests and drain.
#[derive(Clone, Copy)]
pub struct StopSignals<'a> {
    /// The gateway is shutting down.
    pub gateway: &'a CancellationToken,
    /// The connection's route was reset; also cancelled when the gateway shuts down.
    pub route: &'a CancellationToken,
}

/// How a connection ended and what it carried.
pub struct ConnectionSummary {
    pub reason: CloseReason,
    pub bytes_from_client: u64,
    pub bytes_to_client: u64,
    /// Who the client authenticated as, as far as its SASL exchange showed.
    pub sasl: SaslSummary,
    /// On a swap route: the user the gateway logged in to the broker as.
    pub cluster_user: Option<String>,
}

/// Bytes moved each way, shared by the two directions of one connection.
#[derive(Default)]
struct Traffic {
    from_client: AtomicU64,
    to_client: AtomicU64,
    /// The client's SASL exchanges: requests noted by one direction, answers by the other. Locked
    /// only for SaslHandshake and SaslAuthenticate, a few times per connection.
    sasl: Mutex<sasl::Exchange>,
    /// When the client's SASL session with the broker ends (KIP-368), if the broker limits it.
    session_ends: Mutex<Option<Instant>>,
    /// What answers to a transactional producer after a switchover's cut need.
    transactions: Transactions,
}

impl Traffic {
    fn sasl(&self) -> std::sync::MutexGuard<'_, sasl::Exchange> {
        self.sasl.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Note the broker's answer to a client's SaslAuthenticate.
    fn sasl_answer(&self, outcome: SaslOutcome) {
        if self.sasl().answer(outcome.error_code) {
            let lifetime = u64::try_from(outcome.session_lifetime_ms).ok().filter(|ms| *ms > 0);
            let ends = lifetime.map(|ms| Instant::now() + Duration::from_millis(ms));
            *self.session_ends.lock().unwrap_or_else(PoisonError::into_inner) = ends;
        }
    }

    /// Repeat the client's kept login (if any) on a new broker connection after a move, within
    /// `connectTimeoutMs`, and take the new cluster's session lifetime for the client's; whether
    /// there was a login to repeat.
    async fn replay_login<R, W>(
        &self,
        read: &mut R,
        write: &mut W,
        settings: &ProxySettings,
    ) -> Result<bool, CloseReason>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let Some(login) = self.sasl().login_to_replay() else { return Ok(false) };
        let replay = sasl_replay::replay(&login, read, write, settings.max_frame_bytes);
        let refused = |e| {
            CloseReason::MoveFailed(format!(
                "the destination did not accept the client's {} login: {e}",
                login.mechanism()
            ))
        };
        let lifetime = match tokio::time::timeout(settings.connect_timeout, replay).await {
            Ok(replayed) => replayed.map_err(refused)?,
            Err(_) => return Err(refused("no answer within proxy.connectTimeoutMs".into())),
        };
        self.sasl().replayed(lifetime.is_some());
        *self.session_ends.lock().unwrap_or_else(PoisonError::into_inner) = lifetime.map(|l| Instant::now() + l);
        Ok(true)
    }

    /// Why a connection the broker closed ended: the client's session had ended, or not.
    fn broker_closed(&self) -> CloseReason {
        let ends = *self.session_ends.lock().unwrap_or_else(PoisonError::into_inner);
        match ends {
            Some(ends) if Instant::now() >= ends => CloseReason::ClientSessionEnded,
            _ => CloseReason::UpstreamClosed,
        }
    }
}

/// An answer the client is owed, queued in the order it asked.
enum Owed {
    /// To a forwarded request: the broker sends it.
    Broker(InFlight),
    /// To a request a fence in mode `error` turned away: the gateway's own, ready to send.
    Gateway(Bytes),
}

/// The response direction's end of the queue of [`Owed`] answers. A broker entry can be taken
/// off early, while looking for gateway answers, and waits in `head` for its response.
struct OwedAnswers {
    queue: mpsc::Receiver<Owed>,
    head: Option<InFlight>,
    /// The answer being streamed to the client as its bytes arrive.
    streaming: Option<Streaming>,
}

impl OwedAnswers {
    fn next(&mut self) -> Option<Owed> {
        self.head.take().map(Owed::Broker).or_else(|| self.queue.try_recv().ok())
    }

    fn is_empty(&self) -> bool {
        self.streaming.is_none() && self.head.is_none() && self.queue.is_empty()
    }

    /// The next request left without its answer when the connection ended.
    fn next_unanswered(&mut self) -> Option<InFlight> {
        if let Some(streaming) = self.streaming.take() {
            return Some(streaming.request);
        }
        loop {
            match self.next()? {
                Owed::Broker(request) => return Some(request),
                Owed::Gateway(_) => continue,
            }
        }
    }
}

/// A large answer that needs no rewrite, passed to the client as its bytes arrive rather than
/// held whole: a connection then buffers one read of it, not the whole of it.
struct Streaming {
    request: InFlight,
    /// The frame's length.
    total: usize,
    /// Bytes of it still to come from the broker.
    left: usize,
}

/// How many gateway answers are queued, and a way for the request direction to wake the
/// response direction, which otherwise only wakes when the broker sends bytes.
#[derive(Default)]
struct GatewayAnswers {
    queued: AtomicUsize,
    waker: AtomicWaker,
}

impl GatewayAnswers {
    /// Call after queueing an answer.
    fn queued(&self) {
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.waker.wake();
    }

    fn sent(&self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }

    fn any(&self) -> bool {
        self.queued.load(Ordering::Acquire) > 0
    }

    /// Resolves while an answer is queued. Polling it is two atomic operations, no lock.
    fn ready(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| {
            self.waker.register(cx.waker());
            if self.any() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

/// How the client-to-broker half ended.
enum RequestsEnd {
    /// Stop reading and let outstanding responses finish: shutdown, reset, or a client half-close.
    Drain(CloseReason),
    /// The route moved to another cluster: let outstanding responses finish, then continue on
    /// a broker connection to the new cluster.
    Move,
    /// A swap route's broker session is ending: let outstanding responses finish, then continue
    /// on a new broker connection, logged in again.
    Renew,
    Failed(CloseReason),
}

/// Opens a broker connection to the cluster a route moved to (given as the route's upstream
/// now), for a connection that follows the route across a switchover.
pub type Redial<U> =
    dyn Fn(Arc<Upstream>) -> Pin<Box<dyn Future<Output = Result<Dialled<U>, String>> + Send>> + Send + Sync;

/// A broker connection the gateway dialled for a client's connection, at its start or on the
/// cluster its route moved to.
pub struct Dialled<U> {
    pub stream: U,
    /// The cluster lacks the broker the client opened its connection for (a switchover's
    /// destination numbers its brokers differently, or the broker left), and another of its
    /// brokers stands in for it. The stand-in may lead partitions the client also reaches
    /// through that broker's own port: were it to take the client's Produce requests, one
    /// partition's batches would arrive on two connections, out of order, which an idempotent
    /// producer sees as a sequence gap (`OUT_OF_ORDER_SEQUENCE_NUMBER`). So the gateway answers
    /// them `NOT_LEADER_OR_FOLLOWER` there, as the missing broker would, and the client sends
    /// them to the leader it finds in metadata.
    pub stands_in: bool,
}

/// Pump both directions until one ends. `initial` holds client bytes already read (after a
/// PROXY header); `upstream` is the broker connection dialled for it. With `redial`, a connection whose route moves to another cluster (a live
/// switchover's cut) stays open: once its outstanding answers are in, it continues on a new
/// broker connection. Without it, or when the client logged in with SASL (which only the
/// client can repeat), the connection drains and closes instead.
pub async fn pump<C: Duplex, U: Duplex>(
    client: C,
    initial: BytesMut,
    upstream: Dialled<U>,
    ctx: &ConnectionContext,
    stop: StopSignals<'_>,
    redial: Option<&Redial<U>>,
) -> ConnectionSummary {
    let traffic = Traffic::default();
    if ctx.swap.is_none() && redial.is_some() {
        // Only a connection that can follow a switchover keeps a login to replay there.
        traffic.sasl().keep_logins();
    }
    let answers = GatewayAnswers::default();
    let (in_flight, queue) = mpsc::channel(ctx.settings.max_in_flight_requests);
    let mut owed = OwedAnswers { queue, head: None, streaming: None };
    let client_id = OnceLock::new();
    let max_frame_bytes = ctx.settings.max_frame_bytes;
    // A producer id from the destination, for a transactional producer's abort after a cut, on
    // a broker connection of the gateway's own (dialled and logged in as a move re-dials).
    let ask_producer_id = redial.map(|redial| {
        move |upstream: Arc<Upstream>, transactional_id, timeout_ms| -> Pin<Box<dyn Future<Output = _> + Send + '_>> {
            Box::pin(async move {
                let (mut read, mut write) = redial(upstream).await?.stream.into_halves();
                BrokerSide::new(&mut read, &mut write, max_frame_bytes)
                    .init_producer_id(transactional_id, timeout_ms)
                    .await
            })
        }
    });
    let shared = Shared {
        ctx,
        stop,
        redial,
        producer_ids: ask_producer_id.as_ref().map(|ask| ask as &ProducerIdCall<'_>),
        in_flight: &in_flight,
        traffic: &traffic,
        answers: &answers,
        client_id: &client_id,
    };
    let reason = match run(client, initial, upstream, shared, &mut owed).await {
        // A passthrough client's own session (KIP-368) ended: the broker closed it for that.
        CloseReason::UpstreamClosed => traffic.broker_closed(),
        reason => reason,
    };
    while let Some(unanswered) = owed.next_unanswered() {
        ctx.route.fence.leave(passed(&unanswered));
        if reason.severity() == Severity::Problem {
            ctx.route.metrics.request_failed(unanswered.api_key);
        }
    }
    let sasl = traffic.sasl().summary();
    ConnectionSummary {
        reason,
        bytes_from_client: traffic.from_client.load(Ordering::Relaxed),
        bytes_to_client: traffic.to_client.load(Ordering::Relaxed),
        sasl,
        cluster_user: None,
    }
}

/// What a connection keeps across the broker connections it is pumped to.
struct Shared<'a, U> {
    ctx: &'a ConnectionContext,
    stop: StopSignals<'a>,
    redial: Option<&'a Redial<U>>,
    /// Asks the route's cluster for a producer id (see `transactions`); with `redial` only.
    producer_ids: Option<&'a ProducerIdCall<'a>>,
    in_flight: &'a mpsc::Sender<Owed>,
    traffic: &'a Traffic,
    answers: &'a GatewayAnswers,
    /// The hash of the client's id, taken from its first request whose response is rewritten.
    client_id: &'a OnceLock<u32>,
}

/// How pumping to one broker connection ended.
enum SessionEnd {
    /// The connection is over; `shutdown_client`: the client's side is closed in order (FIN
    /// after the last answer) rather than dropped.
    Closed { reason: CloseReason, shutdown_client: bool },
    /// Every answer is in and the route moved (or, `renewal`, the broker session is ending):
    /// continue on a new broker connection, with the client bytes read so far.
    Move { buf: BytesMut, renewal: bool },
}

async fn run<C: Duplex, U: Duplex>(
    client: C,
    initial: BytesMut,
    upstream: Dialled<U>,
    shared: Shared<'_, U>,
    owed: &mut OwedAnswers,
) -> CloseReason {
    // The halves live here, not in the two directions: dropping a write half sends FIN, and a
    // broker that sees FIN drops the answers a draining connection is still waiting for.
    let (mut client_read, mut client_write) = client.into_halves();
    let mut stands_in = upstream.stands_in;
    let (mut upstream_read, mut upstream_write) = upstream.stream.into_halves();
    let route = &shared.ctx.route;
    let mut pending = initial;
    // After a move: the connection's context and route session on the new cluster.
    let mut moved: Option<(ConnectionContext, CancellationToken)> = None;
    let mut moves_seen = route.moves();
    loop {
        let (ctx, route_stop) = moved.as_ref().map_or((shared.ctx, shared.stop.route), |(ctx, stop)| (ctx, stop));
        let requests = Requests {
            ctx,
            in_flight: shared.in_flight,
            traffic: shared.traffic,
            answers: shared.answers,
            stop: StopSignals { gateway: shared.stop.gateway, route: route_stop },
            client: shared.client_id,
            moves_seen,
            follows_moves: shared.redial.is_some(),
            stands_in,
        };
        let halves = (&mut client_read, &mut client_write, &mut upstream_read, &mut upstream_write);
        let (buf, renewal) = match session(halves, pending, requests, shared.producer_ids, owed).await {
            SessionEnd::Closed { reason, shutdown_client } => {
                if shutdown_client {
                    let _ = client_write.shutdown().await;
                }
                return reason;
            }
            SessionEnd::Move { buf, renewal } => (buf, renewal),
        };
        // Read before the session is taken: a move in between then shows as one more move.
        moves_seen = route.moves();
        let session = route.session();
        let destination = route.upstream();
        let Some(redial) = shared.redial else { return CloseReason::RouteSwitched };
        match redial(Arc::clone(&destination)).await {
            Ok(dialled) => {
                (upstream_read, upstream_write) = dialled.stream.into_halves();
                stands_in = dialled.stands_in;
            }
            Err(e) => return CloseReason::MoveFailed(e),
        }
        if shared.ctx.swap.is_none() {
            // A passthrough client's own login, repeated before its requests reach the new cluster.
            let settings = &shared.ctx.settings;
            match shared.traffic.replay_login(&mut upstream_read, &mut upstream_write, settings).await {
                Ok(true) => route.metrics.sasl_replay("replayed"),
                Ok(false) => {}
                Err(reason) => {
                    route.metrics.sasl_replay("replay_refused");
                    return reason;
                }
            }
        }
        if renewal {
            route.metrics.swap_login("renewed");
            tracing::debug!(route = %route.name, domain = %destination.domain, "broker session renewed on a new connection");
        } else {
            route.metrics.connection_moved();
            tracing::debug!(route = %route.name, domain = %destination.domain, "connection moved to another cluster");
        }
        let ctx = ConnectionContext {
            route: Arc::clone(route),
            upstream: destination,
            settings: Arc::clone(&shared.ctx.settings),
            budget: Arc::clone(&shared.ctx.budget),
            swap: shared.ctx.swap.clone(),
        };
        moved = Some((ctx, session));
        pending = buf;
    }
}

/// Pump both directions between the client and one broker connection until one ends, or until
/// the route moves and every answer from this broker is in.
async fn session<'p, CR, CW, UR, UW>(
    (client_read, client_write, upstream_read, upstream_write): (&mut CR, &mut CW, &mut UR, &mut UW),
    pending: BytesMut,
    requests: Requests<'_>,
    producer_ids: Option<&'p ProducerIdCall<'p>>,
    owed: &mut OwedAnswers,
) -> SessionEnd
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    UR: AsyncRead + Unpin,
    UW: AsyncWrite + Unpin,
{
    let requests_done = CancellationToken::new();
    let (ctx, traffic, answers) = (requests.ctx, requests.traffic, requests.answers);
    let drain_timeout = ctx.settings.drain_timeout;
    let mut requests = pin!(requests.forward(client_read, upstream_write, pending));
    let responses = Responses { ctx, traffic, answers, done: &requests_done, producer_ids };
    let mut responses = pin!(responses.forward(upstream_read, client_write, owed));
    let closed = |reason| SessionEnd::Closed { reason, shutdown_client: false };
    tokio::select! {
        (end, buf) = &mut requests => {
            let drained = match end {
                RequestsEnd::Failed(reason) => return closed(reason),
                RequestsEnd::Drain(reason) => Err(reason),
                RequestsEnd::Move => Ok((buf, false)),
                RequestsEnd::Renew => Ok((buf, true)),
            };
            requests_done.cancel();
            match tokio::time::timeout(drain_timeout, &mut responses).await {
                Ok(Ok(())) => match drained {
                    Ok((buf, renewal)) => SessionEnd::Move { buf, renewal },
                    Err(reason) => SessionEnd::Closed { reason, shutdown_client: true },
                },
                Ok(Err(reason)) => closed(reason),
                Err(_) => closed(CloseReason::DrainTimeout),
            }
        },
        end = &mut responses => closed(end.err().unwrap_or(CloseReason::UpstreamClosed)),
    }
}

/// The client-to-broker direction of one connection.
struct Requests<'a> {
    ctx: &'a ConnectionContext,
    in_flight: &'a mpsc::Sender<Owed>,
    traffic: &'a Traffic,
    answers: &'a GatewayAnswers,
    stop: StopSignals<'a>,
    /// The hash of the client's id, taken from its first request whose response is rewritten.
    client: &'a OnceLock<u32>,
    /// How many moves to another cluster the route had made when this broker connection began.
    moves_seen: u64,
    /// Whether the connection can follow its route to another cluster (it can re-dial).
    follows_moves: bool,
    /// The broker connection stands in for a broker its cluster lacks ([`Dialled::stands_in`]):
    /// Produce requests are answered `NOT_LEADER_OR_FOLLOWER` here.
    stands_in: bool,
}

/// What a read from the client waits on besides the client. Made once per connection: a timer
/// or a cancellation future set up for every read would cost a lock each time.
struct ReadWaits<'a, 'b> {
    /// The route's stop signal, polled only once it has fired: polling a pending one takes a lock
    /// shared by every connection of the route (see [`PollOnWake`]).
    stopped: PollOnWake<Pin<&'b mut WaitForCancellationFuture<'a>>>,
    /// One timer for both deadlines: never later than the earlier of `idleTimeoutMs` after
    /// `last_read` and `frameTimeoutMs` after `frame_started`. Reads do not move it, so it can
    /// fire early, and is then moved to the next deadline.
    timer: Pin<&'b mut Sleep>,
    last_read: Instant,
    /// When the first bytes of the partial request frame in the buffer arrived.
    frame_started: Option<Instant>,
}

impl ReadWaits<'_, '_> {
    /// Whether the stop signal has fired, without waiting. Lock-free unless it may have:
    /// `CancellationToken::is_cancelled` would take the token's lock, which every connection of
    /// the route shares, at every read.
    async fn stop_fired(&mut self) -> bool {
        if !self.stopped.may_be_ready() {
            return false;
        }
        let stopped = &mut self.stopped;
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *stopped).poll(cx).is_ready())).await
    }

    /// When the partial frame in the buffer must be complete (a full `frame_timeout` from now
    /// when there is none).
    fn frame_deadline(&self, frame_timeout: Duration) -> Instant {
        self.frame_started.unwrap_or_else(Instant::now) + frame_timeout
    }

    /// Note what is left in the buffer after forwarding: `left` bytes, of `read` before. A frame
    /// that begins here is timed from now, not from the read: forwarding what came before it may
    /// have waited for room in the in-flight queue, and while it waits the gateway reads nothing,
    /// so the client cannot finish the frame.
    fn partial_frame(&mut self, left: usize, read: usize) {
        self.frame_started = match self.frame_started {
            _ if left == 0 => None,
            // A frame completed and another began in the same read.
            _ if left < read => Some(Instant::now()),
            Some(started) => Some(started),
            None => Some(Instant::now()),
        };
    }
}

impl Requests<'_> {
    async fn forward<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        self,
        client: &mut R,
        upstream: &mut W,
        mut buf: BytesMut,
    ) -> (RequestsEnd, BytesMut) {
        let end = self.forward_until_end(client, upstream, &mut buf).await;
        (end, buf)
    }

    /// [`Self::forward`], with the client bytes read and not yet forwarded left in `buf`.
    async fn forward_until_end<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        &self,
        client: &mut R,
        upstream: &mut W,
        buf: &mut BytesMut,
    ) -> RequestsEnd {
        let limits = FrameLimits { min_body: MIN_REQUEST_BODY, max_body: self.ctx.settings.max_frame_bytes };
        let stopped = pin!(self.stop.route.cancelled());
        let stopped = PollOnWake::new(stopped);
        let timer = pin!(tokio::time::sleep(self.ctx.settings.idle_timeout));
        let waits = &mut ReadWaits { stopped, timer, last_read: Instant::now(), frame_started: None };
        let mut held = Held::new(&self.ctx.budget);
        let mut already_read = !buf.is_empty();
        loop {
            if !already_read {
                if self.ctx.route.fence.closed() == Some(FenceMode::Hold) {
                    if let Err(end) = self.hold_while_fenced().await {
                        return end;
                    }
                }
                if let Err(end) = self.read(client, buf, waits).await {
                    return end;
                }
            }
            already_read = false;
            let read = buf.len();
            let next_total = loop {
                match self.forward_complete(buf, limits, upstream, waits).await {
                    Ok(Forwarded::All { next_total }) => break next_total,
                    Ok(Forwarded::Fenced) => {
                        if let Err(end) = self.pass_fence(client, buf, limits, waits).await {
                            return end;
                        }
                    }
                    Err(end) => return end,
                }
            };
            waits.partial_frame(buf.len(), read);
            // Waiting for room does not extend the frame's deadline.
            let deadline = waits.frame_deadline(self.ctx.settings.frame_timeout);
            let room = tokio::select! {
                // First: it is ready at once unless it must wait for budget, and then the stop
                // signal is not polled at all.
                biased;
                room = make_room(buf, Wanted { next_total, streaming: 0 }, &mut held, deadline, false) => room,
                _ = &mut waits.stopped => return self.stopped(),
            };
            if room.is_err() {
                return RequestsEnd::Failed(CloseReason::NoBufferRoom { direction: "request" });
            }
        }
    }

    /// Return once the route's fence is open. Mode `hold` forwards nothing and reads nothing
    /// more; mode `error` answers the requests in `buf` (reading more as they come) until one
    /// comes that the fence does not answer, which is then held.
    async fn pass_fence<R: AsyncRead + Unpin>(
        &self,
        client: &mut R,
        buf: &mut BytesMut,
        limits: FrameLimits,
        waits: &mut ReadWaits<'_, '_>,
    ) -> Result<(), RequestsEnd> {
        loop {
            match self.ctx.route.fence.closed() {
                // A switchover's cut ends the session before it opens the fence: nothing held
                // may then go to the old cluster.
                None if waits.stop_fired().await => return Err(self.stopped()),
                None => return Ok(()),
                Some(FenceMode::Hold) => return self.hold_while_fenced().await,
                Some(FenceMode::Error) => match self.answer_fenced(buf, limits, waits).await? {
                    Fenced::AllAnswered => self.read(client, buf, waits).await?,
                    Fenced::MustHold => return self.hold_while_fenced().await,
                },
            }
        }
    }

    /// Answer every complete request at the front of `buf` with the fence's retriable error,
    /// queued behind the answers already owed, until one comes that must be held instead.
    async fn answer_fenced(
        &self,
        buf: &mut BytesMut,
        limits: FrameLimits,
        waits: &mut ReadWaits<'_, '_>,
    ) -> Result<Fenced, RequestsEnd> {
        let metrics = &self.ctx.route.metrics;
        loop {
            let len = match frame_at(buf, limits) {
                Ok(FrameStatus::Complete(len)) => len,
                Ok(FrameStatus::Incomplete { .. }) => return Ok(Fenced::AllAnswered),
                Err(e) => return Err(refused_frame(buf, e)),
            };
            let request = peek_request(&buf[SIZE_PREFIX..len], std::time::Instant::now())
                .map_err(|e| RequestsEnd::Failed(CloseReason::BadRequest(e)))?;
            if !fence_answer::answerable(&request) {
                return Ok(Fenced::MustHold);
            }
            let answer = gateway_answer(&request, buf.split_to(len).freeze(), self.ctx.route.fence.codes())?;
            metrics.request(request.api_key);
            metrics.fence_answered(request.api_key);
            self.traffic.from_client.fetch_add(len as u64, Ordering::Relaxed);
            self.owe_gateway_answer(answer, waits).await?;
        }
    }

    /// Forward nothing and read nothing more until the fence opens: the client sees a pause.
    /// Drains instead if the route is reset meanwhile.
    async fn hold_while_fenced(&self) -> Result<(), RequestsEnd> {
        let fence = &self.ctx.route.fence;
        if !fence.is_closed() {
            return Ok(());
        }
        tokio::select! {
            // First: a switchover's cut ends the session before it opens the fence, and no
            // request may pass to the old cluster after the cut.
            biased;
            _ = self.stop.route.cancelled() => Err(self.stopped()),
            _ = fence.wait_open() => Ok(()),
        }
    }

    /// How the request direction ends when the gateway's broker session must be renewed: on a
    /// new broker connection where the connection can re-dial, else by closing (the client
    /// logs in again).
    fn renewal(&self) -> RequestsEnd {
        if let Some(swap) = &self.ctx.swap {
            swap.pause_for_renewal();
        }
        if self.follows_moves {
            RequestsEnd::Renew
        } else {
            RequestsEnd::Drain(CloseReason::BrokerSessionEnding)
        }
    }

    /// How the request direction ends on a stop signal: a move to the route's new cluster when
    /// the connection can follow it, else a drain.
    fn stopped(&self) -> RequestsEnd {
        if self.stop.gateway.is_cancelled() {
            return RequestsEnd::Drain(CloseReason::Shutdown);
        }
        if self.ctx.route.moves() == self.moves_seen {
            return RequestsEnd::Drain(CloseReason::RouteReset);
        }
        // The client's own SASL login was with the old cluster: only a kept PLAIN or OAUTHBEARER
        // login can be repeated there, else only the client can log in again (a swap route's
        // gateway login is redone by its re-dial).
        let own_login = self.ctx.swap.is_none() && self.traffic.sasl().binds_to_its_cluster();
        if self.follows_moves && !own_login {
            RequestsEnd::Move
        } else {
            RequestsEnd::Drain(CloseReason::RouteSwitched)
        }
    }

    /// Wait for client bytes, a stop signal, the idle timeout, or the deadline of a partial frame.
    async fn read<R: AsyncRead + Unpin>(
        &self,
        client: &mut R,
        buf: &mut BytesMut,
        waits: &mut ReadWaits<'_, '_>,
    ) -> Result<(), RequestsEnd> {
        let settings = &self.ctx.settings;
        if let Some(deadline) = waits.frame_started.map(|started| started + settings.frame_timeout) {
            if deadline < waits.timer.deadline() {
                waits.timer.as_mut().reset(deadline);
            }
        }
        loop {
            // Checked here too: with the read first below, a client that never pauses would
            // otherwise never let the stop be seen.
            if waits.stop_fired().await {
                return Err(self.stopped());
            }
            let read = tokio::select! {
                biased;
                read = client.read_buf(buf) => read,
                _ = &mut waits.stopped => return Err(self.stopped()),
                _ = waits.timer.as_mut() => {
                    let next = self.timer_fired(buf, waits)?;
                    waits.timer.as_mut().reset(next);
                    continue;
                }
                // Swap routes only: the gateway's broker session is ending; renew it at a moment
                // with nothing outstanding (or, near its end, once what is outstanding is
                // answered), so no request is lost in flight.
                _ = broker_session_renewal(self.ctx.swap.as_ref()) => {
                    let idle = self.in_flight.capacity() == self.in_flight.max_capacity();
                    if idle || self.ctx.swap.as_ref().is_some_and(|swap| swap.broker_session_must_renew()) {
                        return Err(self.renewal());
                    }
                    continue;
                }
            };
            waits.last_read = Instant::now();
            // A client whose bytes are always waiting never lets the timer be polled above.
            if waits.frame_started.is_some() && waits.last_read >= waits.frame_deadline(settings.frame_timeout) {
                return Err(RequestsEnd::Failed(CloseReason::FrameTimeout { received: buf.len() }));
            }
            // Bytes and a stop signal ready together: the stop first. At a switchover's cut the
            // fence is already open, and what was just read must not pass to the old cluster.
            if matches!(read, Ok(read) if read > 0) && waits.stop_fired().await {
                return Err(self.stopped());
            }
            return match read {
                Err(e) => Err(RequestsEnd::Failed(CloseReason::ClientError(e))),
                Ok(0) if buf.is_empty() => Err(RequestsEnd::Drain(CloseReason::ClientClosed)),
                Ok(0) => Err(RequestsEnd::Failed(CloseReason::ClientClosedMidFrame { received: buf.len() })),
                Ok(_) => Ok(()),
            };
        }
    }

    /// The read timer fired: close the connection if a deadline has passed, else say when to
    /// look again.
    fn timer_fired(&self, buf: &BytesMut, waits: &ReadWaits<'_, '_>) -> Result<Instant, RequestsEnd> {
        let settings = &self.ctx.settings;
        let now = Instant::now();
        let frame_deadline = waits.frame_started.map(|started| started + settings.frame_timeout);
        if frame_deadline.is_some_and(|deadline| now >= deadline) {
            return Err(RequestsEnd::Failed(CloseReason::FrameTimeout { received: buf.len() }));
        }
        let idle_at = waits.last_read + settings.idle_timeout;
        // A client waiting for answers is not idle.
        let waiting = self.in_flight.capacity() != self.in_flight.max_capacity();
        if now >= idle_at && !waiting {
            return Err(RequestsEnd::Failed(CloseReason::IdleTimeout { partial_frame_bytes: buf.len() }));
        }
        let next_idle = if now < idle_at { idle_at } else { now + settings.idle_timeout };
        Ok(frame_deadline.map_or(next_idle, |deadline| deadline.min(next_idle)))
    }

    /// Forward every complete request at the front of `buf`, in order, and note each one the
    /// broker will answer as in flight. Frames go upstream in runs, straight from the buffer: one
    /// write for all of them while the in-flight queue has room. When it is full, the run noted
    /// so far is written first and only then does the pump wait for room, so the answers that
    /// make room can come: a read holding more requests than the queue can never wedge. The
    /// wait ends at a stop signal too.
    ///
    /// Each request passes the route's fence on its own ([`Fence::enter`]), which also counts
    /// it until its answer comes back: this is the pump's one call to the fence. At a closed
    /// fence the run so far is written and the rest stays in `buf` for [`Self::pass_fence`].
    ///
    /// [`Fence::enter`]: crate::routing::Fence::enter
    async fn forward_complete<W: AsyncWrite + Unpin>(
        &self,
        buf: &mut BytesMut,
        limits: FrameLimits,
        upstream: &mut W,
        waits: &mut ReadWaits<'_, '_>,
    ) -> Result<Forwarded, RequestsEnd> {
        let read_at = waits.last_read;
        let fence = &self.ctx.route.fence;
        let mut run = Run::default();
        loop {
            // A swap route's broker session at its end is renewed before the next request, even
            // when the client never pauses (its renewal timer in `read` is then never polled):
            // what went before is answered first, the rest waits in `buf` for the new session.
            if self.ctx.swap.as_ref().is_some_and(|swap| swap.broker_session_must_renew()) {
                self.write_run(buf, &mut run, upstream, read_at).await?;
                return Err(self.renewal());
            }
            let len = match frame_at(&buf[run.end..], limits) {
                Ok(FrameStatus::Complete(len)) => len,
                Ok(FrameStatus::Incomplete { total }) => {
                    self.write_run(buf, &mut run, upstream, read_at).await?;
                    return Ok(Forwarded::All { next_total: total });
                }
                Err(e) => return Err(refused_frame(&buf[run.end..], e)),
            };
            let body = &buf[run.end + SIZE_PREFIX..run.end + len];
            let api_key = body.get(..2).map_or(-1, |key| i16::from_be_bytes([key[0], key[1]]));
            let Ok(passed) = fence.enter(Effect::of(api_key)) else {
                self.write_run(buf, &mut run, upstream, read_at).await?;
                return Ok(Forwarded::Fenced);
            };
            let (request, translated) = match self.note(&buf[run.end + SIZE_PREFIX..run.end + len], read_at) {
                Ok(Noted::Forward(request, translated)) => (request, translated),
                Ok(Noted::UnsupportedApiVersions { correlation_id }) => {
                    fence.leave(passed);
                    // Answered here, not forwarded: the run ends before it.
                    self.write_run(buf, &mut run, upstream, read_at).await?;
                    buf.advance(len);
                    self.traffic.from_client.fetch_add(len as u64, Ordering::Relaxed);
                    self.owe_gateway_answer(unsupported_version_answer(correlation_id), waits).await?;
                    continue;
                }
                Ok(Noted::StandIn(request)) => {
                    fence.leave(passed);
                    // Answered here, not forwarded: the run ends before it.
                    self.write_run(buf, &mut run, upstream, read_at).await?;
                    let frame = buf.split_to(len).freeze();
                    self.traffic.from_client.fetch_add(len as u64, Ordering::Relaxed);
                    let answer = gateway_answer(&request, frame, FenceCodes::RETRIABLE)?;
                    self.ctx.route.metrics.stand_in_answered(request.api_key);
                    self.owe_gateway_answer(answer, waits).await?;
                    continue;
                }
                Ok(Noted::Swap(request, asked)) => {
                    fence.leave(passed);
                    // Answered here, not forwarded: the run ends before it.
                    self.write_run(buf, &mut run, upstream, read_at).await?;
                    let body = Bytes::copy_from_slice(&buf[SIZE_PREFIX..len]);
                    buf.advance(len);
                    self.traffic.from_client.fetch_add(len as u64, Ordering::Relaxed);
                    let (answer, refused) = self.answer_swap(&request, asked, &body).await?;
                    self.owe_gateway_answer(answer, waits).await?;
                    if refused {
                        let reason = "a re-authentication was refused (wrong password or another principal)";
                        return Err(RequestsEnd::Drain(CloseReason::SaslRefused(reason.into())));
                    }
                    continue;
                }
                Err(end) => {
                    fence.leave(passed);
                    return Err(end);
                }
            };
            if request.expects_response {
                let permit = match self.in_flight.try_reserve() {
                    Ok(permit) => permit,
                    Err(mpsc::error::TrySendError::Full(())) => {
                        self.write_run(buf, &mut run, upstream, read_at).await?;
                        self.room_in_flight(waits).await.inspect_err(|_| fence.leave(passed))?
                    }
                    Err(mpsc::error::TrySendError::Closed(())) => {
                        fence.leave(passed);
                        return Err(response_half_ended());
                    }
                };
                // Counted by the fence until the answer is seen.
                permit.send(Owed::Broker(request));
            } else {
                // No answer will come: counted until written.
                run.unanswered += passed;
            }
            match translated {
                // Re-encoding a decoded request keeps its length unless the client's encoding
                // was not the shortest: then it goes on its own.
                Some(frame) if frame.len() != len => {
                    self.write_run(buf, &mut run, upstream, read_at).await?;
                    self.write_in_place_of(buf, len, &frame, upstream, read_at).await?;
                    continue;
                }
                Some(frame) => buf[run.end..run.end + len].copy_from_slice(&frame),
                None => {}
            }
            run.end += len;
        }
    }

    /// Write `frame` upstream in place of the request of `len` bytes at the front of `buf`.
    async fn write_in_place_of<W: AsyncWrite + Unpin>(
        &self,
        buf: &mut BytesMut,
        len: usize,
        frame: &[u8],
        upstream: &mut W,
        read_at: Instant,
    ) -> Result<(), RequestsEnd> {
        write_flushed(upstream, frame).await.map_err(|e| RequestsEnd::Failed(CloseReason::UpstreamError(e)))?;
        self.forwarded(buf, len, read_at);
        Ok(())
    }

    /// Drop the `len` bytes at the front of `buf`, written upstream, and count them.
    fn forwarded(&self, buf: &mut BytesMut, len: usize, read_at: Instant) {
        buf.advance(len);
        let metrics = &self.ctx.route.metrics;
        self.traffic.from_client.fetch_add(len as u64, Ordering::Relaxed);
        metrics.bytes_from_client.inc_by(len as u64);
        metrics.gateway_request_time.observe(read_at.elapsed());
    }

    /// Read and classify the request in `body`.
    fn note(&self, body: &[u8], read_at: Instant) -> Result<Noted, RequestsEnd> {
        let mut request = peek_request(body, read_at.into_std()).map_err(bad_request)?;
        self.ctx.route.metrics.request(request.api_key);
        request.handling = match classify(request.api_key, request.api_version) {
            Classified::Forward(handling) => handling,
            Classified::UnsupportedApiVersions => {
                return Ok(Noted::UnsupportedApiVersions { correlation_id: request.correlation_id })
            }
            Classified::Refuse(e) => return Err(bad_request(e)),
        };
        if self.ctx.swap.as_ref().is_some_and(|s| !sasl::observed(request.api_key) && s.expired()) {
            // Only on swap routes: a client whose session (connectionsMaxReauthMs) ended.
            let reason = "the client's session ended (connectionsMaxReauthMs) without a re-authentication";
            return Err(RequestsEnd::Failed(CloseReason::SaslRefused(reason.into())));
        }
        if let (Some(swap), true) = (&self.ctx.swap, sasl::observed(request.api_key)) {
            // A swap route's client re-authenticating (KIP-368): the gateway answers.
            return Ok(Noted::Swap(request, SwapAsked::Reauthentication(Arc::clone(swap))));
        }
        if let Some(asked) = self.ctx.swap.as_ref().and_then(|swap| scram_admin::answered_here(swap, request.api_key)) {
            // A `mechanism: SCRAM` route's SCRAM credentials: kept by the gateway, not the broker.
            return Ok(Noted::Swap(request, SwapAsked::ScramCredentials(asked)));
        }
        if sasl::observed(request.api_key) && self.traffic.sasl().answered_here() {
            // A re-authentication the cluster behind a replayed login would refuse.
            return Ok(Noted::Swap(request, SwapAsked::ReplayedLogin));
        }
        if sasl::observed(request.api_key) {
            // SaslHandshake and SaslAuthenticate only: who the client says it is.
            self.traffic.sasl().request(request.api_key, request.api_version, body);
        }
        if self.stands_in && request.api_key == kafka_protocol::messages::ApiKey::Produce && request.expects_response {
            return Ok(Noted::StandIn(request));
        }
        self.traffic.transactions.note(&self.ctx.route, &mut request, body).map_err(bad_request)?;
        if internal::names_group(request.api_key) {
            // Group APIs only (never Produce or Fetch): a client posing as a gateway node.
            internal::refuse_internal_group(request.api_key, request.api_version, body).map_err(bad_request)?;
        }
        // On a route that has moved: topic ids in both directions (`rewrite::topic_ids`).
        request.handling = handling_on_route(&self.ctx.route, &request);
        let translated = translate_request(&self.ctx.route, &request, body).map_err(|e| {
            bad_request(RequestError::Undecodable {
                api_key: request.api_key,
                version: request.api_version,
                cause: format!("{e:#}"),
            })
        })?;
        if request.handling == ResponseHandling::RewriteAddresses {
            request.client = self.client_hash(body)?;
        }
        Ok(Noted::Forward(request, translated))
    }

    /// The gateway's answer to a request a swap route answers itself, and whether the
    /// connection closes after it (a refused re-authentication).
    /// It may wait for the secret store (a verifier read or written), within the store's own
    /// timeout; the answers already owed keep flowing meanwhile.
    async fn answer_swap(
        &self,
        request: &InFlight,
        asked: SwapAsked,
        body: &[u8],
    ) -> Result<(Bytes, bool), RequestsEnd> {
        let swap = match asked {
            SwapAsked::ScramCredentials(asked) => {
                return Ok((asked.answer(request, body).await.map_err(bad_request)?, false))
            }
            SwapAsked::ReplayedLogin => {
                let answer = sasl_replay::answer_reauthentication(&mut self.traffic.sasl(), request, body);
                let (answer, refused) = answer.map_err(bad_request)?;
                if refused || request.api_key == kafka_protocol::messages::ApiKey::SaslAuthenticate {
                    self.ctx.route.metrics.sasl_replay(if refused { "reauth_refused" } else { "reauth_answered" });
                }
                return Ok((answer, refused));
            }
            SwapAsked::Reauthentication(swap) => swap,
        };
        let (answer, step) = swap.reauthenticate(request, body).await.map_err(bad_request)?;
        let ok = step != Reauth::Refused;
        if step != Reauth::Continue {
            self.ctx.route.metrics.swap_login(if ok { "reauthenticated" } else { "reauth_refused" });
        }
        let mut exchange = self.traffic.sasl();
        exchange.request(request.api_key, request.api_version, body);
        if request.api_key == kafka_protocol::messages::ApiKey::SaslAuthenticate || !ok {
            exchange.answer(if ok { 0 } else { 1 });
        }
        Ok((answer, !ok))
    }

    /// Queue an answer of the gateway's own behind those already owed.
    async fn owe_gateway_answer(&self, answer: Bytes, waits: &mut ReadWaits<'_, '_>) -> Result<(), RequestsEnd> {
        self.room_in_flight(waits).await?.send(Owed::Gateway(answer));
        self.answers.queued();
        Ok(())
    }

    /// Wait for room in the in-flight queue, or for a stop signal. A connection that gets no
    /// answer at all for `idleTimeoutMs` while waiting is idle too: its broker is stuck, and its
    /// client has long given up.
    async fn room_in_flight(&self, waits: &mut ReadWaits<'_, '_>) -> Result<mpsc::Permit<'_, Owed>, RequestsEnd> {
        tokio::select! {
            permit = self.in_flight.reserve() => permit.map_err(|_| response_half_ended()),
            _ = &mut waits.stopped => Err(self.stopped()),
            _ = tokio::time::sleep(self.ctx.settings.idle_timeout) => {
                Err(RequestsEnd::Failed(CloseReason::IdleTimeout { partial_frame_bytes: 0 }))
            }
        }
    }

    /// Write the run at the front of `buf` upstream, drop it from the buffer, and let the
    /// requests in it that expect no answer leave the fence.
    async fn write_run<W: AsyncWrite + Unpin>(
        &self,
        buf: &mut BytesMut,
        run: &mut Run,
        upstream: &mut W,
        read_at: Instant,
    ) -> Result<(), RequestsEnd> {
        let Run { end: len, unanswered } = std::mem::take(run);
        if len == 0 {
            return Ok(());
        }
        // Flushed: a TLS session may hold back what the socket could not take yet (see
        // `ProgressWriter::write_all`); on TCP the flush does nothing.
        let written = write_flushed(upstream, &buf[..len]).await;
        self.ctx.route.fence.leave(unanswered);
        if let Err(e) = written {
            return Err(RequestsEnd::Failed(CloseReason::UpstreamError(e)));
        }
        self.forwarded(buf, len, read_at);
        Ok(())
    }

    /// The client id's hash, computed from the first request that needs it: a client keeps
    /// one id per connection.
    fn client_hash(&self, body: &[u8]) -> Result<u32, RequestsEnd> {
        if let Some(hash) = self.client.get() {
            return Ok(*hash);
        }
        let hash = client_id_hash(body).map_err(|e| RequestsEnd::Failed(CloseReason::BadRequest(e)))?;
        Ok(*self.client.get_or_init(|| hash))
    }
}

/// Resolves when a swap route's broker session is due for renewal (then again every few
/// milliseconds), so the request direction can look for an idle moment; never without a swap
/// session or a broker that limits sessions.
async fn broker_session_renewal(swap: Option<&Arc<SwapSession>>) {
    match swap.and_then(|swap| swap.broker_session_renewal_in()) {
        None => std::future::pending().await,
        Some(wait) => tokio::time::sleep(wait.max(Duration::from_millis(5))).await,
    }
}

/// How `request` was counted when it passed the fence.
fn passed(request: &InFlight) -> Passed {
    Passed::one(Effect::of(request.api_key as i16))
}

/// The requests at the front of the buffer that passed the fence and are not written yet.
#[derive(Default)]
struct Run {
    /// Bytes they span.
    end: usize,
    /// Those of them that expect no answer (`acks=0`).
    unanswered: Passed,
}

/// How far [`Requests::forward_complete`] got.
enum Forwarded {
    /// Every complete request; `next_total` is the full length of a trailing partial frame.
    All { next_total: Option<usize> },
    /// Up to a request the closed fence stopped, which is at the front of the buffer.
    Fenced,
}

/// What the request direction does with one request.
enum Noted {
    /// Forward it, or the frame given in its place.
    Forward(InFlight, Option<Bytes>),
    /// Answer it with `UNSUPPORTED_VERSION`, as a broker answers an ApiVersions it cannot read.
    UnsupportedApiVersions { correlation_id: i32 },
    /// A request the gateway answers itself: on a swap route, or a re-authentication after a
    /// replayed login.
    Swap(InFlight, SwapAsked),
    /// A Produce on a broker connection that stands in for a broker its cluster lacks
    /// ([`Dialled::stands_in`]): answer it `NOT_LEADER_OR_FOLLOWER`, as that broker would.
    StandIn(InFlight),
}

/// What a client asked of the gateway, which answers it itself.
enum SwapAsked {
    /// A re-authentication step (KIP-368).
    Reauthentication(Arc<SwapSession>),
    /// `AlterUserScramCredentials` or `DescribeUserScramCredentials` on a `mechanism: SCRAM`
    /// route.
    ScramCredentials(ScramAdminRequest),
    /// A passthrough client re-authenticating after the gateway replayed its login on a
    /// cluster that does not limit sessions (`sasl_replay`).
    ReplayedLogin,
}

/// The gateway's own answer to `request` (its whole `frame`), with the error `codes`: see
/// [`fence_answer::fence_answer`].
fn gateway_answer(request: &InFlight, frame: Bytes, codes: FenceCodes) -> Result<Bytes, RequestsEnd> {
    fence_answer::fence_answer(request, frame, codes).map_err(|cause| {
        bad_request(RequestError::Undecodable {
            api_key: request.api_key,
            version: request.api_version,
            cause: format!("{cause:#}"),
        })
    })
}

fn bad_request(e: RequestError) -> RequestsEnd {
    RequestsEnd::Failed(CloseReason::BadRequest(e))
}

/// The response half has ended (its queue end is gone); it reports why.
fn response_half_ended() -> RequestsEnd {
    RequestsEnd::Failed(CloseReason::UpstreamClosed)
}

/// What a fence in mode `error` left at the front of the buffer.
enum Fenced {
    /// Nothing but a partial request, if that.
    AllAnswered,
    /// A request the fence does not answer.
    MustHold,
}

/// Why a client's frame starting at `buf[0]` was refused.
fn refused_frame(buf: &[u8], e: FrameError) -> RequestsEnd {
    if proxy_protocol::looks_like_header(buf) {
        RequestsEnd::Failed(CloseReason::UnexpectedProxyHeader)
    } else if looks_like_tls_handshake(buf) {
        RequestsEnd::Failed(CloseReason::TlsOnPlaintext)
    } else {
        RequestsEnd::Failed(CloseReason::BadRequestFrame(e))
    }
}

/// A TLS record header of a handshake: content type 22, protocol major version 3 (SSL 3.0 to
/// TLS 1.3 all start so). Read as a Kafka size prefix it claims about 350 MiB.
fn looks_like_tls_handshake(buf: &[u8]) -> bool {
    matches!(buf, [0x16, 0x03, 0x00..=0x04, ..])
}

/// The broker-to-client direction of one connection.
struct Responses<'a, 'p> {
    ctx: &'a ConnectionContext,
    traffic: &'a Traffic,
    answers: &'a GatewayAnswers,
    /// Cancelled when the request direction has finished and is draining.
    done: &'a CancellationToken,
    /// Asks the cluster for a transactional producer's producer id (`transactions`).
    producer_ids: Option<&'p ProducerIdCall<'p>>,
}

impl Responses<'_, '_> {
    /// Forward responses until the broker side ends. Once the request direction has finished,
    /// returns `Ok(())` as soon as every outstanding request is answered.
    async fn forward<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
        self,
        upstream: &mut R,
        client: &mut W,
        owed: &mut OwedAnswers,
    ) -> Result<(), CloseReason> {
        let limits = FrameLimits { min_body: MIN_RESPONSE_BODY, max_body: self.ctx.settings.max_frame_bytes };
        let write_timeout = self.ctx.settings.write_timeout;
        let write_timer = pin!(tokio::time::sleep(write_timeout));
        let client = &mut ProgressWriter::new(client, write_timeout, write_timer);
        let mut buf = BytesMut::new();
        let mut held = Held::new(&self.ctx.budget);
        let kept_room = pin!(tokio::time::sleep(ROOM_KEPT_FOR));
        let mut kept_room = KeptRoom { timer: kept_room, kept: false };
        let mut requests_finished = false;
        // Polled only once fired, not at every pending read (see `PollOnWake`).
        let requests_done = pin!(self.done.cancelled());
        let mut requests_done = PollOnWake::new(requests_done);
        loop {
            if requests_finished && owed.is_empty() {
                return Ok(());
            }
            let read = tokio::select! {
                biased;
                read = upstream.read_buf(&mut buf) => read,
                // With a broker answer at the head or streaming, the gateway's wait behind it.
                _ = self.answers.ready(), if owed.head.is_none() && owed.streaming.is_none() => {
                    send_gateway_answers(owed, client, self.answers).await?;
                    continue;
                }
                _ = &mut requests_done, if !requests_finished => {
                    requests_finished = true;
                    continue;
                }
                () = &mut kept_room.timer, if kept_room.kept => {
                    kept_room.kept = false;
                    if buf.is_empty() {
                        give_back(&mut buf, &mut held);
                    }
                    continue;
                }
            };
            match read {
                Err(e) => return Err(CloseReason::UpstreamError(e)),
                Ok(0) => return Err(broker_closed(&buf, owed.streaming.as_ref())),
                Ok(_) => {}
            }
            let read_at = Instant::now();
            let before = buf.len();
            let mut next_total = None;
            if self.stream_on(&mut buf, owed, client).await? {
                next_total = self.forward_complete(&mut buf, limits, owed, client, read_at).await?;
                if self.answers.any() && owed.streaming.is_none() {
                    send_gateway_answers(owed, client, self.answers).await?;
                }
            }
            let forwarded = before - buf.len();
            self.account(forwarded, read_at);
            kept_room.after_forwarding(forwarded, &held);
            let deadline = Instant::now() + self.ctx.settings.frame_timeout;
            let wanted = Wanted { next_total, streaming: owed.streaming.as_ref().map_or(0, |s| s.left) };
            if make_room(&mut buf, wanted, &mut held, deadline, kept_room.kept).await.is_err() {
                return Err(CloseReason::NoBufferRoom { direction: "response" });
            }
        }
    }

    /// Count `forwarded` bytes sent to the client from a read made at `read_at`.
    fn account(&self, forwarded: usize, read_at: Instant) {
        let metrics = &self.ctx.route.metrics;
        self.traffic.to_client.fetch_add(forwarded as u64, Ordering::Relaxed);
        metrics.bytes_to_client.inc_by(forwarded as u64);
        metrics.gateway_response_time.observe(read_at.elapsed());
    }

    /// Pass the bytes in `buf` that belong to the answer being streamed to the client. Returns
    /// whether bytes of the following frames remain to be looked at.
    async fn stream_on<W: AsyncWrite + Unpin>(
        &self,
        buf: &mut BytesMut,
        owed: &mut OwedAnswers,
        client: &mut ProgressWriter<'_, W>,
    ) -> Result<bool, CloseReason> {
        let Some(streaming) = &mut owed.streaming else { return Ok(true) };
        let arrived = streaming.left.min(buf.len());
        write_run(buf, arrived, client).await?;
        streaming.left -= arrived;
        if streaming.left > 0 {
            return Ok(false);
        }
        if let Some(streamed) = owed.streaming.take() {
            // Answered in full: past the fence.
            self.ctx.route.fence.leave(passed(&streamed.request));
        }
        Ok(!buf.is_empty())
    }

    /// The frame at `buf[start..]` is partial and `total` long. If it is large and answers a
    /// request whose answer passes unchanged, start streaming it: write what precedes it and
    /// what has arrived of it, and note how much is still to come. Returns whether it streams;
    /// if not, a broker request taken off the queue waits in `head`, and `start` is 0 if
    /// gateway answers owed before it were sent (with the run before them).
    async fn start_streaming<W: AsyncWrite + Unpin>(
        &self,
        buf: &mut BytesMut,
        start: &mut usize,
        total: usize,
        owed: &mut OwedAnswers,
        client: &mut ProgressWriter<'_, W>,
        read_at: Instant,
    ) -> Result<bool, CloseReason> {
        let arrived = buf.len() - *start;
        if total <= FREE_CAPACITY || arrived < SIZE_PREFIX + 4 {
            return Ok(false);
        }
        let correlation_id = response_correlation_id(&buf[*start + SIZE_PREFIX..]);
        let request = self.next_broker_request(buf, start, owed, client, correlation_id).await?;
        if request.handling.decodes_response() {
            owed.head = Some(request);
            return Ok(false);
        }
        if request.correlation_id != correlation_id {
            self.ctx.route.fence.leave(passed(&request));
            return Err(CloseReason::UnexpectedResponse { correlation_id, expected: Some(request.correlation_id) });
        }
        self.ctx.route.metrics.upstream_time.observe(read_at.into_std().saturating_duration_since(request.sent_at));
        owed.streaming = Some(Streaming { request, total, left: total - arrived });
        let len = buf.len();
        write_run(buf, len, client).await?;
        Ok(true)
    }

    /// The request the broker answers next. Gateway answers owed before it are sent first, after
    /// the run of `run_end` bytes at the front of `buf` that precedes them (which then ends at 0).
    async fn next_broker_request<W: AsyncWrite + Unpin>(
        &self,
        buf: &mut BytesMut,
        run_end: &mut usize,
        owed: &mut OwedAnswers,
        client: &mut ProgressWriter<'_, W>,
        correlation_id: i32,
    ) -> Result<InFlight, CloseReason> {
        loop {
            match owed.next() {
                Some(Owed::Broker(request)) => return Ok(request),
                Some(Owed::Gateway(answer)) => {
                    write_run(buf, *run_end, client).await?;
                    *run_end = 0;
                    client.write_all(&answer).await.map_err(client_write_error)?;
                    self.answers.sent();
                }
                None => return Err(CloseReason::UnexpectedResponse { correlation_id, expected: None }),
            }
        }
    }

    /// Send every complete response at the front of `buf` to the client, opaque runs in one write
    /// each, and remove them from `buf`; a large partial one that passes unchanged starts
    /// streaming. Returns the full length of a trailing partial frame that is held.
    async fn forward_complete<W: AsyncWrite + Unpin>(
        &self,
        buf: &mut BytesMut,
        limits: FrameLimits,
        owed: &mut OwedAnswers,
        client: &mut ProgressWriter<'_, W>,
        read_at: Instant,
    ) -> Result<Option<usize>, CloseReason> {
        let ctx = self.ctx;
        let mut run_end = 0;
        loop {
            let len = match frame_at(&buf[run_end..], limits).map_err(CloseReason::BadResponseFrame)? {
                FrameStatus::Complete(len) => len,
                FrameStatus::Incomplete { total } => {
                    if let Some(total) = total {
                        if self.start_streaming(buf, &mut run_end, total, owed, client, read_at).await? {
                            return Ok(None);
                        }
                    }
                    write_run(buf, run_end, client).await?;
                    return Ok(total);
                }
            };
            let correlation_id = response_correlation_id(&buf[run_end + SIZE_PREFIX..]);
            let request = self.next_broker_request(buf, &mut run_end, owed, client, correlation_id).await?;
            let metrics = &ctx.route.metrics;
            // Off the queue, so past the fence, whether or not the answer is the right one.
            ctx.route.fence.leave(passed(&request));
            if request.correlation_id != correlation_id {
                return Err(CloseReason::UnexpectedResponse { correlation_id, expected: Some(request.correlation_id) });
            }
            metrics.upstream_time.observe(read_at.into_std().saturating_duration_since(request.sent_at));
            if !request.handling.decodes_response() {
                run_end += len;
                continue;
            }
            if request.handling == ResponseHandling::ObserveSaslOutcome {
                let body = &buf[run_end + SIZE_PREFIX..run_end + len];
                self.traffic.sasl_answer(sasl_outcome(&request, body).map_err(CloseReason::BadResponse)?);
                run_end += len;
                continue;
            }
            let (route, upstream) = (&ctx.route, &ctx.upstream);
            if request.handling == ResponseHandling::EndTxnAfterCut {
                let body = &buf[run_end + SIZE_PREFIX..run_end + len];
                let transactions = &self.traffic.transactions;
                match transactions.answer(route, &request, body, upstream, self.producer_ids).await? {
                    None => run_end += len,
                    Some(out) => write_in_place_of(buf, &mut run_end, len, &out, client).await?,
                }
                continue;
            }
            if request.response_carries_records() {
                write_run(buf, run_end, client).await?;
                run_end = 0;
                let frame = buf.split_to(len).freeze();
                let written = match rewrite_records_response(route, upstream, &request, &frame)
                    .map_err(CloseReason::BadResponse)?
                {
                    RecordsAnswer::Unchanged => client.write_all(&frame).await,
                    RecordsAnswer::Encoded(out) => client.write_all(&out).await,
                    RecordsAnswer::Spliced(pieces) => client.write_all_pieces(&pieces).await,
                };
                written.map_err(client_write_error)?;
                continue;
            }
            let body = &buf[run_end + SIZE_PREFIX..run_end + len];
            match rewrite_response(route, upstream, &request, ResponseBody::Slice(body))
                .map_err(CloseReason::BadResponse)?
            {
                // Unchanged: it stays in the run, written with its neighbours.
                None => run_end += len,
                Some(out) => write_in_place_of(buf, &mut run_end, len, &out, client).await?,
            }
        }
    }
}

/// Write `bytes` upstream and flush.
async fn write_flushed<W: AsyncWrite + Unpin>(upstream: &mut W, bytes: &[u8]) -> io::Result<()> {
    upstream.write_all(bytes).await?;
    upstream.flush().await
}

/// Why the broker's end of the stream came: between frames, or in the middle of the one in
/// `buf` or being streamed.
fn broker_closed(buf: &BytesMut, streaming: Option<&Streaming>) -> CloseReason {
    match streaming {
        Some(streaming) => CloseReason::UpstreamClosedMidFrame { received: streaming.total - streaming.left },
        None if buf.is_empty() => CloseReason::UpstreamClosed,
        None => CloseReason::UpstreamClosedMidFrame { received: buf.len() },
    }
}

/// Why a write to the client failed: it stopped reading for `proxy.writeTimeoutMs`, or the
/// connection broke.
fn client_write_error(e: io::Error) -> CloseReason {
    if e.kind() == io::ErrorKind::TimedOut {
        CloseReason::ClientWriteTimeout
    } else {
        CloseReason::ClientError(e)
    }
}

/// Send the gateway answers at the head of the queue, up to the first one the broker owes.
async fn send_gateway_answers<W: AsyncWrite + Unpin>(
    owed: &mut OwedAnswers,
    client: &mut ProgressWriter<'_, W>,
    answers: &GatewayAnswers,
) -> Result<(), CloseReason> {
    while owed.head.is_none() {
        match owed.queue.try_recv() {
            Ok(Owed::Gateway(answer)) => {
                client.write_all(&answer).await.map_err(client_write_error)?;
                answers.sent();
            }
            Ok(Owed::Broker(request)) => owed.head = Some(request),
            Err(_) => break,
        }
    }
    Ok(())
}

/// Write `buf[..len]` to the client and drop it from the buffer.
async fn write_run<W: AsyncWrite + Unpin>(
    buf: &mut BytesMut,
    len: usize,
    client: &mut ProgressWriter<'_, W>,
) -> Result<(), CloseReason> {
    if len > 0 {
        client.write_all(&buf[..len]).await.map_err(client_write_error)?;
        buf.advance(len);
    }
    Ok(())
}

/// Write the run before the answer at `buf[*run_end..]` (`len` bytes), then `out`, the gateway's
/// answer in its place.
async fn write_in_place_of<W: AsyncWrite + Unpin>(
    buf: &mut BytesMut,
    run_end: &mut usize,
    len: usize,
    out: &[u8],
    client: &mut ProgressWriter<'_, W>,
) -> Result<(), CloseReason> {
    write_run(buf, std::mem::take(run_end), client).await?;
    client.write_all(out).await.map_err(client_write_error)?;
    buf.advance(len);
    Ok(())
}

/// A buffer up to this capacity costs no budget: every connection has one read chunk anyway.
const FREE_CAPACITY: usize = 2 * READ_CHUNK;

/// How long a response buffer that has just passed a large answer it had to hold whole keeps
/// its room for the next one. A consumer's next Fetch answer on the connection follows within
/// a round trip; giving the room back and taking it again for every answer made the allocator
/// return the pages to the kernel and fault them in afresh for each answer (a quarter of the
/// gateway's CPU under consume at 3 brokers; `docs/performance.md`).
const ROOM_KEPT_FOR: Duration = Duration::from_secs(1);

/// A response buffer's room kept after a large answer, until its timer fires.
struct KeptRoom<'t> {
    timer: Pin<&'t mut Sleep>,
    kept: bool,
}

impl KeptRoom<'_> {
    /// After `forwarded` bytes went to the client from one read: a large answer that took room
    /// from the budget (`held`) keeps it for [`ROOM_KEPT_FOR`] more. Small answers do not
    /// extend it, so a consumer at the end of its topic gives the room back.
    fn after_forwarding(&mut self, forwarded: usize, held: &Held) {
        if forwarded > FREE_CAPACITY && held.holds_any() {
            self.timer.as_mut().reset(Instant::now() + ROOM_KEPT_FOR);
            self.kept = true;
        }
    }
}

/// Give an emptied buffer's room back: the buffer shrinks to one read chunk.
fn give_back(buf: &mut BytesMut, held: &mut Held) {
    *buf = BytesMut::with_capacity(READ_CHUNK);
    held.release();
}

/// What the next read is for.
#[derive(Clone, Copy)]
struct Wanted {
    /// The size of the partial frame in the buffer, if there is one.
    next_total: Option<usize>,
    /// Bytes still to come of an answer streaming to the client (0: none).
    streaming: usize,
}

/// Make room for the rest of a partial frame, and for a large next read. Memory follows the
/// bytes received, never the size a peer claims: a partial frame gets room for at most as much
/// again as has arrived of it (at least one read chunk), so a buffer at most doubles per read
/// and a size prefix alone reserves one chunk. While an answer streams, the buffer takes the
/// room that costs no budget ([`FREE_CAPACITY`]), so the answer passes in reads and writes
/// of up to that much rather than one chunk each. Room beyond [`FREE_CAPACITY`] comes from the
/// gateway's budget, waiting until `deadline` for it (`Err` if it does not come); a buffer
/// that has been emptied gives its room back, unless `keep_room` (see [`KeptRoom`]).
async fn make_room(
    buf: &mut BytesMut,
    wanted: Wanted,
    held: &mut Held,
    deadline: Instant,
    keep_room: bool,
) -> Result<(), ()> {
    if buf.is_empty() && keep_room {
        // Back to the start of its allocation (nothing to copy: it is empty). Left where the
        // last answer ended, the next one would be moved to the front, records and all, once
        // it outgrew the space behind. `false`: already at the start, or still shared (then
        // it stays as it is).
        let _moved = buf.try_reclaim(buf.capacity() + 1);
    } else if buf.is_empty() && (buf.capacity() > FREE_CAPACITY || held.holds_any()) {
        give_back(buf, held);
    }
    let missing = wanted.next_total.map_or(0, |total| total.saturating_sub(buf.len()));
    let streamed = wanted.streaming.min(FREE_CAPACITY.saturating_sub(buf.len()));
    let additional = missing.min(buf.len()).max(streamed).max(READ_CHUNK);
    let wanted = buf.len() + additional;
    if wanted > FREE_CAPACITY {
        tokio::time::timeout_at(deadline, held.grow_to(wanted - FREE_CAPACITY)).await.map_err(drop)?;
    }
    buf.reserve(additional);
    Ok(())
}
