//! One client connection and its upstream connection, pumped in both directions.
//!
//! Requests flow client -> broker as they arrive: the proxy finds frame boundaries in its read
//! buffer, notes each request in the in-flight queue, and writes every complete frame of a read
//! with one write, straight from the buffer. Responses flow back the same way; each one is
//! checked against the head of the queue (Kafka answers in order), and only those whose API
//! carries broker addresses are decoded and rewritten. The queue is bounded: when a client has
//! `maxInFlightRequests` outstanding, the proxy stops reading from it until answers come back.
//!
//! Anything a well-behaved peer would not send ends this connection, and only this one, with a
//! [`CloseReason`] that is logged with the client address and route.

use std::fmt;
use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::proxy_protocol;
use crate::config::ProxySettings;
use crate::protocol::{
    frame_at, peek_request, response_correlation_id, FrameError, FrameLimits, FrameStatus, InFlight, RequestError,
    MIN_REQUEST_BODY, MIN_RESPONSE_BODY, SIZE_PREFIX,
};
use crate::rewrite::{rewrite_response, RewriteError};
use crate::routing::{Route, Upstream};

/// Read at least this much at a time: large reads mean fewer syscalls.
const READ_CHUNK: usize = 64 * 1024;

/// Why a connection ended.
#[derive(Debug)]
pub enum CloseReason {
    ClientClosed,
    ClientClosedMidFrame { received: usize },
    ClientError(io::Error),
    BadRequestFrame(FrameError),
    BadRequest(RequestError),
    UnexpectedProxyHeader,
    IdleTimeout { partial_frame_bytes: usize },
    UpstreamClosed,
    UpstreamClosedMidFrame { received: usize },
    UpstreamError(io::Error),
    BadResponseFrame(FrameError),
    UnexpectedResponse { correlation_id: i32, expected: Option<i32> },
    BadResponse(RewriteError),
    Shutdown,
    RouteReset,
    DrainTimeout,
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
            CloseReason::ClientClosed | CloseReason::Shutdown => Severity::Routine,
            CloseReason::IdleTimeout { .. } | CloseReason::RouteReset => Severity::Notable,
            _ => Severity::Problem,
        }
    }

    /// A short, stable name for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "client_closed",
            CloseReason::ClientClosedMidFrame { .. } => "client_closed_mid_frame",
            CloseReason::ClientError(_) => "client_error",
            CloseReason::BadRequestFrame(_) => "malformed_request_frame",
            CloseReason::BadRequest(_) => "refused_request",
            CloseReason::UnexpectedProxyHeader => "unexpected_proxy_header",
            CloseReason::IdleTimeout { .. } => "idle_timeout",
            CloseReason::UpstreamClosed => "broker_closed",
            CloseReason::UpstreamClosedMidFrame { .. } => "broker_closed_mid_frame",
            CloseReason::UpstreamError(_) => "broker_error",
            CloseReason::BadResponseFrame(_) => "malformed_response_frame",
            CloseReason::UnexpectedResponse { .. } => "unexpected_response",
            CloseReason::BadResponse(_) => "undecodable_response",
            CloseReason::Shutdown => "shutdown",
            CloseReason::RouteReset => "route_reset",
            CloseReason::DrainTimeout => "drain_timeout",
        }
    }

    /// Whether a peer sent something malformed or hostile.
    pub fn rejected_input(&self) -> bool {
        matches!(
            self,
            CloseReason::BadRequestFrame(_)
                | CloseReason::BadRequest(_)
                | CloseReason::UnexpectedProxyHeader
                | CloseReason::BadResponseFrame(_)
                | CloseReason::UnexpectedResponse { .. }
                | CloseReason::BadResponse(_)
        )
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::ClientClosed => write!(f, "client closed the connection"),
            CloseReason::ClientClosedMidFrame { received } => {
                write!(f, "client disconnected in the middle of a request frame ({received} bytes of it received)")
            }
            CloseReason::ClientError(e) => write!(f, "client connection error: {e}"),
            CloseReason::BadRequestFrame(e) => write!(f, "malformed request frame: {e}"),
            CloseReason::BadRequest(e) => write!(f, "refused request: {e}"),
            CloseReason::UnexpectedProxyHeader => write!(
                f,
                "malformed request frame: a PROXY protocol header arrived but the feature is off \
                 (set GATEWAY_FEATURE_FLAGS_HAPROXY_PROTOCOL=true or proxyProtocol.enabled)"
            ),
            CloseReason::IdleTimeout { partial_frame_bytes: 0 } => write!(f, "idle for longer than proxy.idleTimeoutMs"),
            CloseReason::IdleTimeout { partial_frame_bytes } => write!(
                f,
                "idle for longer than proxy.idleTimeoutMs in the middle of a request frame ({partial_frame_bytes} bytes of it received)"
            ),
            CloseReason::UpstreamClosed => write!(f, "broker closed the connection"),
            CloseReason::UpstreamClosedMidFrame { received } => {
                write!(f, "broker disconnected in the middle of a response frame ({received} bytes of it received)")
            }
            CloseReason::UpstreamError(e) => write!(f, "broker connection error: {e}"),
            CloseReason::BadResponseFrame(e) => write!(f, "malformed response frame from the broker: {e}"),
            CloseReason::UnexpectedResponse { correlation_id, expected: Some(expected) } => write!(
                f,
                "broker answered correlation id {correlation_id} while {expected} was next: responses out of order"
            ),
            CloseReason::UnexpectedResponse { correlation_id, expected: None } => {
                write!(f, "broker sent a response (correlation id {correlation_id}) to no outstanding request")
            }
            CloseReason::BadResponse(e) => write!(f, "{e}"),
            CloseReason::Shutdown => write!(f, "gateway shutting down, all in-flight requests answered"),
            CloseReason::RouteReset => write!(f, "route reset by an operator, all in-flight requests answered"),
            CloseReason::DrainTimeout => {
                write!(f, "gateway shutting down, requests still unanswered after proxy.drainTimeoutMs")
            }
        }
    }
}

/// Everything a connection needs to know about where it lives.
pub struct ConnectionContext {
    pub route: Arc<Route>,
    /// The domain this connection was opened to; a switchover does not change it.
    pub upstream: Arc<Upstream>,
    pub settings: Arc<ProxySettings>,
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
}

/// Bytes moved each way, shared by the two directions of one connection.
#[derive(Default)]
struct Traffic {
    from_client: AtomicU64,
    to_client: AtomicU64,
}

/// How the client-to-broker half ended.
enum RequestsEnd {
    /// Stop reading and let outstanding responses finish: shutdown, reset, or a client half-close.
    Drain(CloseReason),
    Failed(CloseReason),
}

/// Pump both directions until one ends. `initial` holds client bytes already read (after a
/// PROXY header).
pub async fn pump(
    client: TcpStream,
    initial: BytesMut,
    upstream: TcpStream,
    ctx: &ConnectionContext,
    stop: StopSignals<'_>,
) -> ConnectionSummary {
    let traffic = Traffic::default();
    let (in_flight_tx, mut in_flight_rx) = mpsc::channel(ctx.settings.max_in_flight_requests);
    let requests = Requests { ctx, in_flight: in_flight_tx, traffic: &traffic, stop };
    let reason = run(client, initial, upstream, requests, &mut in_flight_rx).await;
    while let Ok(unanswered) = in_flight_rx.try_recv() {
        ctx.route.metrics.requests_in_flight.dec();
        if reason.severity() == Severity::Problem {
            ctx.route.metrics.request_failed(unanswered.api_key);
        }
    }
    ConnectionSummary {
        reason,
        bytes_from_client: traffic.from_client.load(Ordering::Relaxed),
        bytes_to_client: traffic.to_client.load(Ordering::Relaxed),
    }
}

async fn run(
    client: TcpStream,
    initial: BytesMut,
    upstream: TcpStream,
    requests: Requests<'_>,
    in_flight: &mut mpsc::Receiver<InFlight>,
) -> CloseReason {
    // The halves live here, not in the two directions: dropping a write half sends FIN, and a
    // broker that sees FIN drops the answers a draining connection is still waiting for.
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let requests_done = CancellationToken::new();
    let (ctx, traffic) = (requests.ctx, requests.traffic);
    let drain_timeout = ctx.settings.drain_timeout;

    let mut requests = pin!(requests.forward(&mut client_read, &mut upstream_write, initial));
    let responses = Responses { ctx, traffic, done: &requests_done };
    let mut responses = pin!(responses.forward(&mut upstream_read, &mut client_write, in_flight));

    tokio::select! {
        end = &mut requests => match end {
            RequestsEnd::Failed(reason) => reason,
            RequestsEnd::Drain(reason) => {
                requests_done.cancel();
                match tokio::time::timeout(drain_timeout, &mut responses).await {
                    Ok(Ok(())) => reason,
                    Ok(Err(reason)) => reason,
                    Err(_) => CloseReason::DrainTimeout,
                }
            }
        },
        end = &mut responses => end.err().unwrap_or(CloseReason::UpstreamClosed),
    }
}

/// The client-to-broker direction of one connection.
struct Requests<'a> {
    ctx: &'a ConnectionContext,
    in_flight: mpsc::Sender<InFlight>,
    traffic: &'a Traffic,
    stop: StopSignals<'a>,
}

impl Requests<'_> {
    async fn forward(
        self,
        client: &mut OwnedReadHalf,
        upstream: &mut OwnedWriteHalf,
        mut buf: BytesMut,
    ) -> RequestsEnd {
        let limits = FrameLimits { min_body: MIN_REQUEST_BODY, max_body: self.ctx.settings.max_frame_bytes };
        let metrics = &self.ctx.route.metrics;
        let mut already_read = !buf.is_empty();
        loop {
            if !already_read {
                if let Err(end) = self.hold_while_fenced().await {
                    return end;
                }
                if let Err(end) = self.read(client, &mut buf).await {
                    return end;
                }
            }
            already_read = false;
            if let Err(end) = self.hold_while_fenced().await {
                return end;
            }
            let read_at = Instant::now();
            let (complete, next_total) = match self.scan(&buf, limits, read_at).await {
                Ok(found) => found,
                Err(end) => return end,
            };
            if complete > 0 {
                if let Err(e) = upstream.write_all(&buf[..complete]).await {
                    return RequestsEnd::Failed(CloseReason::UpstreamError(e));
                }
                buf.advance(complete);
                self.traffic.from_client.fetch_add(complete as u64, Ordering::Relaxed);
                metrics.bytes_from_client.inc_by(complete as u64);
                metrics.gateway_request_time.observe(read_at.elapsed());
            }
            reserve_for_next(&mut buf, next_total);
        }
    }

    /// While a switchover fences the route, forward nothing and read nothing more: the client
    /// sees a pause. Ends when the fence opens, or drains if the route is reset meanwhile.
    async fn hold_while_fenced(&self) -> Result<(), RequestsEnd> {
        let fence = &self.ctx.route.fence;
        if !fence.is_closed() {
            return Ok(());
        }
        tokio::select! {
            _ = fence.wait_open() => Ok(()),
            _ = self.stop.route.cancelled() => Err(RequestsEnd::Drain(self.stop_reason())),
        }
    }

    fn stop_reason(&self) -> CloseReason {
        if self.stop.gateway.is_cancelled() {
            CloseReason::Shutdown
        } else {
            CloseReason::RouteReset
        }
    }

    /// Wait for client bytes, a stop signal, or the idle timeout.
    async fn read(&self, client: &mut OwnedReadHalf, buf: &mut BytesMut) -> Result<(), RequestsEnd> {
        let settings = &self.ctx.settings;
        loop {
            let read = tokio::select! {
                biased;
                _ = self.stop.route.cancelled() => return Err(RequestsEnd::Drain(self.stop_reason())),
                read = tokio::time::timeout(settings.idle_timeout, client.read_buf(buf)) => read,
            };
            return match read {
                Err(_elapsed) if self.in_flight.capacity() == self.in_flight.max_capacity() => {
                    Err(RequestsEnd::Failed(CloseReason::IdleTimeout { partial_frame_bytes: buf.len() }))
                }
                Err(_elapsed) => continue,
                Ok(Err(e)) => Err(RequestsEnd::Failed(CloseReason::ClientError(e))),
                Ok(Ok(0)) if buf.is_empty() => Err(RequestsEnd::Drain(CloseReason::ClientClosed)),
                Ok(Ok(0)) => Err(RequestsEnd::Failed(CloseReason::ClientClosedMidFrame { received: buf.len() })),
                Ok(Ok(_)) => Ok(()),
            };
        }
    }

    /// Note every complete request at the front of `buf` as in flight. Returns the bytes they
    /// span and, when a partial frame follows, its full length.
    async fn scan(
        &self,
        buf: &[u8],
        limits: FrameLimits,
        read_at: Instant,
    ) -> Result<(usize, Option<usize>), RequestsEnd> {
        let mut end = 0;
        loop {
            match frame_at(&buf[end..], limits) {
                Ok(FrameStatus::Complete(len)) => {
                    let request = peek_request(&buf[end + SIZE_PREFIX..end + len], read_at)
                        .map_err(|e| RequestsEnd::Failed(CloseReason::BadRequest(e)))?;
                    let metrics = &self.ctx.route.metrics;
                    metrics.request(request.api_key);
                    if request.expects_response {
                        if self.in_flight.send(request).await.is_err() {
                            // The response half has ended; it reports why.
                            return Err(RequestsEnd::Failed(CloseReason::UpstreamClosed));
                        }
                        metrics.requests_in_flight.inc();
                    }
                    end += len;
                }
                Ok(FrameStatus::Incomplete { total }) => return Ok((end, total)),
                Err(_) if proxy_protocol::looks_like_header(&buf[end..]) => {
                    return Err(RequestsEnd::Failed(CloseReason::UnexpectedProxyHeader))
                }
                Err(e) => return Err(RequestsEnd::Failed(CloseReason::BadRequestFrame(e))),
            }
        }
    }
}

/// The broker-to-client direction of one connection.
struct Responses<'a> {
    ctx: &'a ConnectionContext,
    traffic: &'a Traffic,
    /// Cancelled when the request direction has finished and is draining.
    done: &'a CancellationToken,
}

impl Responses<'_> {
    /// Forward responses until the broker side ends. Once the request direction has finished,
    /// returns `Ok(())` as soon as every outstanding request is answered.
    async fn forward(
        self,
        upstream: &mut OwnedReadHalf,
        client: &mut OwnedWriteHalf,
        in_flight: &mut mpsc::Receiver<InFlight>,
    ) -> Result<(), CloseReason> {
        let limits = FrameLimits { min_body: MIN_RESPONSE_BODY, max_body: self.ctx.settings.max_frame_bytes };
        let metrics = &self.ctx.route.metrics;
        let mut buf = BytesMut::new();
        let mut requests_finished = false;
        loop {
            if requests_finished && in_flight.is_empty() {
                let _ = client.shutdown().await;
                return Ok(());
            }
            let read = tokio::select! {
                biased;
                read = upstream.read_buf(&mut buf) => read,
                _ = self.done.cancelled(), if !requests_finished => {
                    requests_finished = true;
                    continue;
                }
            };
            match read {
                Err(e) => return Err(CloseReason::UpstreamError(e)),
                Ok(0) if buf.is_empty() => return Err(CloseReason::UpstreamClosed),
                Ok(0) => return Err(CloseReason::UpstreamClosedMidFrame { received: buf.len() }),
                Ok(_) => {}
            }
            let read_at = Instant::now();
            let before = buf.len();
            let next_total = forward_complete_responses(&mut buf, limits, in_flight, client, self.ctx, read_at).await?;
            let forwarded = (before - buf.len()) as u64;
            self.traffic.to_client.fetch_add(forwarded, Ordering::Relaxed);
            metrics.bytes_to_client.inc_by(forwarded);
            metrics.gateway_response_time.observe(read_at.elapsed());
            reserve_for_next(&mut buf, next_total);
        }
    }
}

/// Send every complete response at the front of `buf` to the client, opaque runs in one write
/// each, and remove them from `buf`. Returns the full length of a trailing partial frame.
async fn forward_complete_responses(
    buf: &mut BytesMut,
    limits: FrameLimits,
    in_flight: &mut mpsc::Receiver<InFlight>,
    client: &mut OwnedWriteHalf,
    ctx: &ConnectionContext,
    read_at: Instant,
) -> Result<Option<usize>, CloseReason> {
    let mut run_end = 0;
    loop {
        let len = match frame_at(&buf[run_end..], limits).map_err(CloseReason::BadResponseFrame)? {
            FrameStatus::Complete(len) => len,
            FrameStatus::Incomplete { total } => {
                write_run(buf, run_end, client).await?;
                return Ok(total);
            }
        };
        let request = match_request(&buf[run_end + SIZE_PREFIX..], in_flight)?;
        let metrics = &ctx.route.metrics;
        metrics.requests_in_flight.dec();
        metrics.upstream_time.observe(read_at.saturating_duration_since(request.sent_at));
        if !request.handling.decodes_response() {
            run_end += len;
            continue;
        }
        write_run(buf, run_end, client).await?;
        run_end = 0;
        let frame = buf.split_to(len).freeze();
        let out = rewrite_response(&ctx.route, &ctx.upstream, &request, frame).map_err(CloseReason::BadResponse)?;
        client.write_all(&out).await.map_err(CloseReason::ClientError)?;
    }
}

/// The in-flight request this response answers, which must be the oldest one.
fn match_request(body: &[u8], in_flight: &mut mpsc::Receiver<InFlight>) -> Result<InFlight, CloseReason> {
    let correlation_id = response_correlation_id(body);
    match in_flight.try_recv() {
        Ok(request) if request.correlation_id == correlation_id => Ok(request),
        Ok(request) => Err(CloseReason::UnexpectedResponse { correlation_id, expected: Some(request.correlation_id) }),
        Err(_) => Err(CloseReason::UnexpectedResponse { correlation_id, expected: None }),
    }
}

/// Write `buf[..len]` to the client and drop it from the buffer.
async fn write_run(buf: &mut BytesMut, len: usize, client: &mut OwnedWriteHalf) -> Result<(), CloseReason> {
    if len > 0 {
        client.write_all(&buf[..len]).await.map_err(CloseReason::ClientError)?;
        buf.advance(len);
    }
    Ok(())
}

/// Make room for the rest of a partial frame, and for a large next read.
fn reserve_for_next(buf: &mut BytesMut, next_total: Option<usize>) {
    let wanted = next_total.map_or(0, |total| total.saturating_sub(buf.len())).max(READ_CHUNK);
    buf.reserve(wanted);
}
