//! KIP-368 re-authentication over hours, in process with tokio's time paused: a scripted
//! broker that limits its SASL sessions as Kafka does (`connections.max.reauth.ms`: a request
//! other than SaslHandshake after the session's end closes the connection), a client made of
//! frames, and the gateway's pump between them over in-memory pipes.
//!
//! The real-Kafka suites (`tests/sasl.rs`, `tests/swap.rs`) run sessions of seconds; these run
//! six simulated hours of minutes-long sessions in well under a second, where a drifting
//! timer, a counter or a clock mix-up would show. Passthrough: the client's own
//! re-authentications reach the broker in order with its other requests, and each is counted.
//! Swap: the gateway answers the client's re-authentications itself and renews its own broker
//! session under the open connection, when the client is idle or, if it never is, regardless.
//! Passthrough across a switchover's cut: the gateway replays the client's PLAIN login on the
//! destination, and reconciles the two clusters' session lifetimes (a destination that does not
//! limit sessions refuses re-authentications, so the gateway answers them itself).

mod frames;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use frames::{frame, one_route_config, produce, read_frame, response_frame};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, RequestHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use switchyard::cluster::Advertising;
use switchyard::config::ProxySettings;
use switchyard::proxy::{
    pump, serve_swap, CloseReason, ConnectionContext, ConnectionSummary, Dialled, MemoryBudget, StopSignals,
};
use switchyard::routing::{Route, Upstream};
use switchyard::secrets::SecretStores;
use switchyard::telemetry::Metrics;
use tokio::io::{duplex, split, AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const MINUTE: Duration = Duration::from_secs(60);
/// How long each test's client keeps its connection.
const SPAN: Duration = Duration::from_secs(6 * 3600);
/// A metadata refresh interval far away: the upstream's cluster is never asked anything.
const FAR: Duration = Duration::from_secs(1_000_000);
const PIPE: usize = 1024 * 1024;
/// The client's login at the gateway (swap) or the broker (passthrough).
const ALICE: (&str, &str) = ("alice", "alice-pw");
/// What the swap route's store maps alice to: the broker's user.
const APP: (&str, &str) = ("app", "app-pw");
/// Kafka's answer to a SaslHandshake on an authenticated connection it does not re-authenticate.
const ILLEGAL_SASL_STATE: i16 = 34;

/// The broker's and the gateway's configuration; `route_security`: the route's `security`
/// block, or nothing; `stores`: its `secretStores`, or nothing.
fn config(route_security: &str, stores: &str) -> switchyard::config::GatewayConfig {
    let yaml = one_route_config(stores, route_security);
    switchyard::config::parse("tests/reauth.rs", &yaml).expect("the test config is valid")
}

/// A swap route's configuration: clients log in with PLAIN (alice) and sessions of
/// `client_session`; the FILE store maps alice to `app`, logged in to the broker with PLAIN.
fn swap_config(dir: &Path, client_session: Duration) -> switchyard::config::GatewayConfig {
    let users = dir.join("users.conf");
    std::fs::write(&users, format!(r#"x.PlainLoginModule required user_{}="{}";"#, ALICE.0, ALICE.1)).unwrap();
    let template = dir.join("cluster.conf");
    std::fs::write(&template, r#"x.PlainLoginModule required username="%s" password="%s";"#).unwrap();
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join(ALICE.0), format!("{}:{}", APP.0, APP.1)).unwrap();
    let stores = format!(
        r#"secretStores:
  - name: files
    provider:
      type: FILE
      config: {{directory: "{}"}}"#,
        secrets.display()
    );
    let security = format!(
        r#"security:
  auth: swap
  swapConfig:
    clientAuth:
      sasl:
        mechanism: PLAIN
        jaasConfig: {{file: "{}"}}
        connectionsMaxReauthMs: {}
    secretStore: files
    clusterAuth:
      sasl:
        mechanism: PLAIN
        jaasConfig: {{file: "{}"}}"#,
        users.display(),
        client_session.as_millis(),
        template.display()
    );
    config(&security, &stores)
}

/// A route and its upstream, in process.
struct Gateway {
    config: switchyard::config::GatewayConfig,
    metrics: Arc<Metrics>,
    ctx: ConnectionContext,
    shutdown: CancellationToken,
    route_session: CancellationToken,
}

impl Gateway {
    fn new(config: switchyard::config::GatewayConfig, settings: ProxySettings) -> Gateway {
        let shutdown = CancellationToken::new();
        let upstream = Upstream::start(&config.domains[0], None, FAR, Duration::from_millis(10), &shutdown)
            .expect("starting the upstream");
        let metrics = Metrics::new();
        let route = Route::new(
            &config.routes[0],
            Arc::clone(&upstream),
            Arc::new(Advertising::RouteEndpoint),
            &metrics,
            &shutdown,
        );
        let budget =
            MemoryBudget::new(settings.buffer_budget_bytes, prometheus_client::metrics::gauge::Gauge::default());
        let route = Arc::new(route);
        let route_session = route.session();
        let ctx = ConnectionContext { route, upstream, settings: Arc::new(settings), budget, swap: None };
        Gateway { config, metrics, ctx, shutdown, route_session }
    }

    fn context(&self) -> ConnectionContext {
        ConnectionContext {
            route: Arc::clone(&self.ctx.route),
            upstream: Arc::clone(&self.ctx.upstream),
            settings: Arc::clone(&self.ctx.settings),
            budget: Arc::clone(&self.ctx.budget),
            swap: None,
        }
    }

    /// A passthrough connection to `broker`: the client's end and the pump's task.
    fn connect(self: &Arc<Self>, broker: Broker) -> (DuplexStream, JoinHandle<ConnectionSummary>) {
        self.connect_to(broker.connection())
    }

    /// A passthrough connection whose broker end is `broker_side`.
    fn connect_to(self: &Arc<Self>, broker_side: DuplexStream) -> (DuplexStream, JoinHandle<ConnectionSummary>) {
        let (client, client_side) = duplex(PIPE);
        let gateway = Arc::clone(self);
        let pumped = tokio::spawn(async move {
            let stop = StopSignals { gateway: &gateway.shutdown, route: &gateway.route_session };
            let upstream = Dialled { stream: broker_side, stands_in: false };
            pump(client_side, BytesMut::new(), upstream, &gateway.ctx, stop, None).await
        });
        (client, pumped)
    }

    /// A passthrough connection that follows its route: its first broker connection is to
    /// `source`, the one after a cut (see [`Gateway::cut`]) to `destination`.
    fn connect_following(
        self: &Arc<Self>,
        source: &Broker,
        destination: Broker,
    ) -> (DuplexStream, JoinHandle<ConnectionSummary>) {
        let (client, client_side) = duplex(PIPE);
        let first = source.connection();
        let gateway = Arc::clone(self);
        let pumped = tokio::spawn(async move {
            let dial =
                move |_: Arc<Upstream>| -> Pin<Box<dyn Future<Output = Result<Dialled<DuplexStream>, String>> + Send>> {
                    Box::pin(std::future::ready(Ok(Dialled { stream: destination.connection(), stands_in: false })))
                };
            let stop = StopSignals { gateway: &gateway.shutdown, route: &gateway.route_session };
            let first = Dialled { stream: first, stands_in: false };
            pump(client_side, BytesMut::new(), first, &gateway.ctx, stop, Some(&dial)).await
        });
        (client, pumped)
    }

    /// Switch the route to another cluster as a switchover's cut does.
    fn cut(&self) {
        frames::cut(&self.ctx.route, &self.config.domains[0], &self.shutdown);
    }

    /// A swap connection: each broker connection the gateway dials (its first, and one per
    /// renewal of its broker session) is a new connection to `broker`.
    fn connect_swap(self: &Arc<Self>, broker: Broker) -> (DuplexStream, JoinHandle<ConnectionSummary>) {
        let (client, client_side) = duplex(PIPE);
        let first = broker.connection();
        let gateway = Arc::clone(self);
        let pumped = tokio::spawn(async move {
            let auth = switchyard::proxy::SwapAuth::new(
                gateway.config.routes[0].swap.clone().expect("a swap route"),
                SecretStores::open(&gateway.config.secret_stores).get("files").expect("the store"),
            )
            .map(Arc::new)
            .expect("the swap route's users");
            let dial =
                move |_: Arc<Upstream>| -> Pin<Box<dyn Future<Output = Result<Dialled<DuplexStream>, String>> + Send>> {
                    Box::pin(std::future::ready(Ok(Dialled { stream: broker.connection(), stands_in: false })))
                };
            let stop = StopSignals { gateway: &gateway.shutdown, route: &gateway.route_session };
            let first = Dialled { stream: first, stands_in: false };
            serve_swap(&auth, (client_side, BytesMut::new(), None), first, gateway.context(), stop, dial).await
        });
        (client, pumped)
    }

    /// The route's `switchyard_swap_logins_total` of `outcome`.
    fn swap_logins(&self, outcome: &str) -> u64 {
        self.counter("switchyard_swap_logins_total", outcome)
    }

    /// The route's `switchyard_sasl_replays_total` of `outcome`.
    fn sasl_replays(&self, outcome: &str) -> u64 {
        self.counter("switchyard_sasl_replays_total", outcome)
    }

    /// The route's counter `name` of `outcome`.
    fn counter(&self, name: &str, outcome: &str) -> u64 {
        let wanted = format!("{name}{{route=\"main\",outcome=\"{outcome}\"}} ");
        self.metrics
            .render()
            .lines()
            .find_map(|line| line.strip_prefix(&wanted).map(|n| n.trim().parse().unwrap()))
            .unwrap_or(0)
    }
}

fn settings() -> ProxySettings {
    ProxySettings {
        idle_timeout: Duration::from_secs(600),
        drain_timeout: Duration::from_secs(30),
        ..ProxySettings::default()
    }
}

/// What a scripted broker connection saw.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// Produce correlation ids, in the order they came.
    produced: Vec<i32>,
    /// Successful logins (the first and the re-authentications), by user.
    logins: Vec<String>,
    /// The oldest a session was when a Produce came under it.
    oldest_session: Duration,
    /// The connection was closed because a request came after the session's end.
    expired: bool,
    /// Produce requests that came before any login.
    unauthenticated: usize,
    /// SaslAuthenticate requests refused (a wrong token).
    refused: usize,
    /// SaslHandshake requests answered `ILLEGAL_SASL_STATE`: a re-authentication on a broker
    /// that does not limit sessions.
    illegal_handshakes: usize,
}

/// A broker whose SASL sessions last `lifetime` (zero: no limit, and, as Kafka without
/// `connections.max.reauth.ms`, a second SaslHandshake is answered `ILLEGAL_SASL_STATE`),
/// answering Produce after `latency` (answers pipelined, in order), accepting `user` with its
/// password after `login_delay`; each connection is scripted the same and records what it saw.
#[derive(Clone)]
struct Broker {
    lifetime: Duration,
    latency: Duration,
    login_delay: Duration,
    user: (&'static str, &'static str),
    connections: Arc<Mutex<Vec<Arc<Mutex<Seen>>>>>,
}

impl Broker {
    fn new(lifetime: Duration, latency: Duration, user: (&'static str, &'static str)) -> Broker {
        Broker { lifetime, latency, login_delay: Duration::ZERO, user, connections: Arc::default() }
    }

    /// A new connection to this broker: the gateway's end.
    fn connection(&self) -> DuplexStream {
        let (gateway_side, broker_side) = duplex(PIPE);
        let seen = Arc::new(Mutex::new(Seen::default()));
        self.connections.lock().unwrap().push(Arc::clone(&seen));
        tokio::spawn(self.clone().serve(broker_side, seen));
        gateway_side
    }

    fn seen(&self) -> Vec<Seen> {
        self.connections.lock().unwrap().iter().map(|seen| seen.lock().unwrap().clone()).collect()
    }

    async fn serve(self, stream: DuplexStream, seen: Arc<Mutex<Seen>>) {
        let (mut read, write) = split(stream);
        // Answers leave in request order, each at its due time.
        let (answers, queue) = mpsc::unbounded_channel::<(Instant, Bytes)>();
        let writer = tokio::spawn(write_answers(write, queue));
        let mut session_started: Option<Instant> = None;
        while let Some(request) = read_frame(&mut read).await {
            let api_key = ApiKey::try_from(i16::from_be_bytes([request[0], request[1]])).unwrap();
            let version = i16::from_be_bytes([request[2], request[3]]);
            let mut body = request.clone();
            let header = RequestHeader::decode(&mut body, api_key.request_header_version(version)).unwrap();
            let id = header.correlation_id;
            let now = Instant::now();
            let limited = !self.lifetime.is_zero();
            let expired = limited && session_started.is_some_and(|started| now >= started + self.lifetime);
            if expired && api_key != ApiKey::SaslHandshake {
                // Kafka closes a connection whose session ended without a re-authentication.
                seen.lock().unwrap().expired = true;
                break;
            }
            let answer = match api_key {
                ApiKey::ApiVersions => response_frame(api_key, version, id, &api_versions()),
                ApiKey::SaslHandshake => {
                    let mut answer =
                        SaslHandshakeResponse::default().with_mechanisms(vec![StrBytes::from_static_str("PLAIN")]);
                    if !limited && session_started.is_some() {
                        seen.lock().unwrap().illegal_handshakes += 1;
                        answer = answer.with_error_code(ILLEGAL_SASL_STATE);
                    }
                    response_frame(api_key, version, id, &answer)
                }
                ApiKey::SaslAuthenticate => {
                    let request = SaslAuthenticateRequest::decode(&mut body, version).unwrap();
                    let expected = format!("\0{}\0{}", self.user.0, self.user.1);
                    let answer = if request.auth_bytes == expected.as_bytes() {
                        // The session begins when the broker answers.
                        session_started = Some(now + self.login_delay);
                        seen.lock().unwrap().logins.push(self.user.0.to_string());
                        SaslAuthenticateResponse::default().with_session_lifetime_ms(self.lifetime.as_millis() as i64)
                    } else {
                        seen.lock().unwrap().refused += 1;
                        SaslAuthenticateResponse::default().with_error_code(58)
                    };
                    response_frame(api_key, version, id, &answer)
                }
                ApiKey::Produce => {
                    let mut seen = seen.lock().unwrap();
                    seen.produced.push(id);
                    seen.unauthenticated += usize::from(session_started.is_none());
                    let age = session_started.map_or(Duration::MAX, |started| now - started);
                    seen.oldest_session = seen.oldest_session.max(age);
                    // Opaque to the pump: the correlation id and a zero.
                    let mut answer = BytesMut::new();
                    answer.put_i32(8);
                    answer.put_i32(id);
                    answer.put_i32(0);
                    answer.freeze()
                }
                other => panic!("the scripted broker got {other:?}"),
            };
            let due = match api_key {
                ApiKey::Produce => now + self.latency,
                ApiKey::SaslAuthenticate => now + self.login_delay,
                _ => now,
            };
            if answers.send((due, answer)).is_err() {
                break;
            }
        }
        // Closing the read half alone does not close the pipe: the writer must end too.
        writer.abort();
    }
}

async fn write_answers(mut write: WriteHalf<DuplexStream>, mut queue: mpsc::UnboundedReceiver<(Instant, Bytes)>) {
    while let Some((due, answer)) = queue.recv().await {
        tokio::time::sleep_until(due).await;
        if write.write_all(&answer).await.is_err() {
            return;
        }
    }
}

fn api_versions() -> ApiVersionsResponse {
    let api = |key: ApiKey, max: i16| ApiVersion::default().with_api_key(key as i16).with_max_version(max);
    ApiVersionsResponse::default().with_api_keys(vec![
        api(ApiKey::Produce, 9),
        api(ApiKey::ApiVersions, 3),
        api(ApiKey::SaslHandshake, 1),
        api(ApiKey::SaslAuthenticate, 2),
    ])
}

/// SaslHandshake (PLAIN) and SaslAuthenticate v2 with `user`'s PLAIN token, as one write.
fn login(first_id: i32, (user, password): (&str, &str)) -> Vec<u8> {
    let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
    let token = Bytes::from(format!("\0{user}\0{password}"));
    let mut frames = frame(ApiKey::SaslHandshake, 1, first_id, &handshake).to_vec();
    frames.extend_from_slice(&frame(
        ApiKey::SaslAuthenticate,
        2,
        first_id + 1,
        &SaslAuthenticateRequest::default().with_auth_bytes(token),
    ));
    frames
}

/// The client's view of the answers to its requests, read in order.
struct Answers<R> {
    read: R,
}

impl<R: AsyncReadExt + Unpin> Answers<R> {
    /// The next answer's correlation id and body; panics at the end of the stream.
    async fn next(&mut self) -> (i32, Bytes) {
        let mut body = read_frame(&mut self.read).await.expect("an answer, not the end of the connection");
        let id = i32::from_be_bytes(body[..4].try_into().unwrap());
        let _ = body.split_to(4);
        (id, body)
    }

    /// The answers to a login sent as [`login`] from `first_id`: the SaslAuthenticate answer.
    async fn login(&mut self, first_id: i32) -> SaslAuthenticateResponse {
        let (id, mut handshake) = self.next().await;
        assert_eq!(id, first_id, "the SaslHandshake's answer");
        // Flexible versions only from v2 on: SaslHandshake v1's answer has no header tags.
        let handshake = SaslHandshakeResponse::decode(&mut handshake, 1).unwrap();
        assert_eq!(handshake.error_code, 0);
        let (id, mut body) = self.next().await;
        assert_eq!(id, first_id + 1, "the SaslAuthenticate's answer");
        let _tags = body.split_to(1); // SaslAuthenticate v2's response header: its tag count.
        SaslAuthenticateResponse::decode(&mut body, 2).unwrap()
    }
}

/// A client that produces every `every` and logs in again every `relogin`, each login
/// pipelined between two Produce requests, until `SPAN` has passed; checks every answer comes,
/// in order. Returns how many Produce requests were answered.
async fn produce_and_reauthenticate(
    client: DuplexStream,
    user: (&str, &str),
    every: Duration,
    relogin: Duration,
    session_ms: i64,
) -> (usize, ReadHalf<DuplexStream>, WriteHalf<DuplexStream>) {
    let (read, mut write) = split(client);
    let mut answers = Answers { read };
    let started = Instant::now();
    let mut id = 0;
    write.write_all(&login(id, user)).await.unwrap();
    assert_eq!(answers.login(id).await.session_lifetime_ms, session_ms);
    id += 2;
    let mut produced = 0;
    let mut next_login = started + relogin;
    while started.elapsed() < SPAN {
        tokio::time::sleep(every).await;
        let mut frames = produce(id).to_vec();
        let relogging = Instant::now() >= next_login;
        if relogging {
            frames.extend_from_slice(&login(id + 1, user));
            frames.extend_from_slice(&produce(id + 3));
        }
        write.write_all(&frames).await.unwrap();
        assert_eq!(answers.next().await.0, id);
        produced += 1;
        if relogging {
            let answer = answers.login(id + 1).await;
            assert_eq!((answer.error_code, answer.session_lifetime_ms), (0, session_ms), "a re-authentication");
            assert_eq!(answers.next().await.0, id + 3);
            produced += 1;
            id += 3;
            next_login += relogin;
        }
        id += 1;
    }
    (produced, answers.read, write)
}

/// Passthrough: six hours of five-minute broker sessions, the client re-authenticating every
/// four minutes between Produce requests every 20 s. Every request is answered in order, the
/// broker never sees a request on an ended session, and the connection's summary (its audit
/// event's SASL fields) counts every login with the principal.
#[tokio::test(start_paused = true)]
async fn passthrough_reauthentication_keeps_a_connection_for_hours() {
    let lifetime = 5 * MINUTE;
    let gateway = Arc::new(Gateway::new(config("", ""), settings()));
    let broker = Broker::new(lifetime, Duration::from_millis(3), ALICE);
    let (client, pumped) = gateway.connect(broker.clone());
    let wall = std::time::Instant::now();
    let (produced, read, write) =
        produce_and_reauthenticate(client, ALICE, Duration::from_secs(20), 4 * MINUTE, lifetime.as_millis() as i64)
            .await;
    assert!(!pumped.is_finished(), "the connection ended");
    drop((read, write));
    let summary = pumped.await.unwrap();
    assert!(matches!(summary.reason, CloseReason::ClientClosed), "{}", summary.reason);
    let seen = broker.seen();
    assert_eq!(seen.len(), 1, "one broker connection throughout");
    let logins = 1 + SPAN.as_secs() / (4 * 60);
    assert_eq!(seen[0].logins.len() as u64, logins, "every login reached the broker");
    assert_eq!(seen[0].produced.len(), produced);
    assert!(seen[0].produced.windows(2).all(|w| w[0] < w[1]), "Produce requests reordered");
    assert!(seen[0].oldest_session < lifetime, "a request came under an ended session");
    assert!(!seen[0].expired);
    assert_eq!(summary.sasl.principal.as_deref(), Some(ALICE.0));
    assert_eq!(summary.sasl.mechanism.as_deref(), Some("PLAIN"));
    assert_eq!(summary.sasl.authenticated, Some(true));
    assert_eq!(u64::from(summary.sasl.authentications), logins, "saslAuthentications counts every login");
    assert!(wall.elapsed() < Duration::from_secs(20), "six simulated hours took {:?}", wall.elapsed());
}

/// Passthrough: a client that stops re-authenticating is disconnected by the broker at its
/// first request after the session's end; the gateway closes the client's connection too,
/// saying the client's session had ended, with the client's login in the summary.
#[tokio::test(start_paused = true)]
async fn passthrough_client_that_does_not_reauthenticate_is_closed_by_the_broker() {
    let lifetime = 5 * MINUTE;
    let gateway = Arc::new(Gateway::new(config("", ""), settings()));
    let broker = Broker::new(lifetime, Duration::ZERO, ALICE);
    let (client, pumped) = gateway.connect(broker.clone());
    let (read, mut write) = split(client);
    let mut answers = Answers { read };
    let started = Instant::now();
    write.write_all(&login(0, ALICE)).await.unwrap();
    assert_eq!(answers.login(0).await.error_code, 0);
    let mut id = 2;
    while started.elapsed() < lifetime {
        tokio::time::sleep(Duration::from_secs(20)).await;
        write.write_all(&produce(id)).await.unwrap();
        if started.elapsed() < lifetime {
            assert_eq!(answers.next().await.0, id);
        }
        id += 1;
    }
    assert_eq!(read_frame(&mut answers.read).await, None, "the client's connection was closed");
    let summary = pumped.await.unwrap();
    assert!(started.elapsed() < lifetime + Duration::from_secs(21), "closed at {:?}", started.elapsed());
    assert!(matches!(summary.reason, CloseReason::ClientSessionEnded), "{}", summary.reason);
    assert_eq!(summary.reason.label(), "client_session_ended");
    assert_eq!(summary.sasl.principal.as_deref(), Some(ALICE.0));
    assert_eq!((summary.sasl.authenticated, summary.sasl.authentications), (Some(true), 1));
    assert!(broker.seen()[0].expired);
}

/// Passthrough: a broker that closes a connection while the client's session still runs is
/// reported as the broker closing it, not as a missed re-authentication.
#[tokio::test(start_paused = true)]
async fn passthrough_broker_closing_within_the_session_is_not_blamed_on_the_client() {
    let gateway = Arc::new(Gateway::new(config("", ""), settings()));
    let (broker_side, mut broker) = duplex(PIPE);
    let (client, pumped) = gateway.connect_to(broker_side);
    let (read, mut write) = split(client);
    let mut answers = Answers { read };
    write.write_all(&login(0, ALICE)).await.unwrap();
    read_frame(&mut broker).await.unwrap();
    let handshake = SaslHandshakeResponse::default().with_mechanisms(vec![StrBytes::from_static_str("PLAIN")]);
    broker.write_all(&response_frame(ApiKey::SaslHandshake, 1, 0, &handshake)).await.unwrap();
    read_frame(&mut broker).await.unwrap();
    let accepted = SaslAuthenticateResponse::default().with_session_lifetime_ms(5 * 60 * 1000);
    broker.write_all(&response_frame(ApiKey::SaslAuthenticate, 2, 1, &accepted)).await.unwrap();
    assert_eq!(answers.login(0).await.error_code, 0);
    tokio::time::sleep(4 * MINUTE).await;
    drop(broker);
    let summary = pumped.await.unwrap();
    assert!(matches!(summary.reason, CloseReason::UpstreamClosed), "{}", summary.reason);
}

/// Swap: the client re-authenticates with the gateway every four minutes (sessions of five),
/// producing every 20 s, while the gateway's broker sessions last ten minutes: the gateway
/// renews its own on a new broker connection at an idle moment from 80 % of each, so for six
/// hours every request is answered in order, no broker session is used past its end, and
/// the renewals are counted.
#[tokio::test(start_paused = true)]
async fn swap_renews_its_broker_session_for_hours_under_an_open_connection() {
    let (lifetime, client_session) = (10 * MINUTE, 5 * MINUTE);
    let dir = tempfile::tempdir().unwrap();
    let gateway = Arc::new(Gateway::new(swap_config(dir.path(), client_session), settings()));
    let broker = Broker::new(lifetime, Duration::from_millis(3), APP);
    let (client, pumped) = gateway.connect_swap(broker.clone());
    let (produced, read, write) = produce_and_reauthenticate(
        client,
        ALICE,
        Duration::from_secs(20),
        4 * MINUTE,
        client_session.as_millis() as i64,
    )
    .await;
    assert!(!pumped.is_finished(), "the client's connection ended");
    drop((read, write));
    let summary = pumped.await.unwrap();
    assert!(matches!(summary.reason, CloseReason::ClientClosed), "{}", summary.reason);
    let seen = broker.seen();
    let renewals = seen.len() as u64 - 1;
    // From 80 % of each session, at the first idle moment (within a Produce's 20 s).
    let (fewest, most) =
        (SPAN.as_secs() / (lifetime.as_secs() * 8 / 10 + 20), SPAN.as_secs() / (lifetime.as_secs() * 8 / 10));
    assert!((fewest..=most).contains(&renewals), "{renewals} renewals in 6 h of 10 min sessions");
    assert_eq!(gateway.swap_logins("renewed"), renewals);
    assert_eq!(gateway.swap_logins("ok"), 1);
    assert_eq!(gateway.swap_logins("reauthenticated"), SPAN.as_secs() / (4 * 60));
    check_broker_sessions(&seen, lifetime, produced);
    assert_eq!(summary.sasl.principal.as_deref(), Some(ALICE.0));
    assert_eq!(u64::from(summary.sasl.authentications), 1 + SPAN.as_secs() / (4 * 60));
    assert_eq!(summary.cluster_user.as_deref(), Some(APP.0));
}

/// Every broker connection logged in once as the mapped user, never used its session past
/// its end, and the Produce requests of all of them, in order, are the client's.
fn check_broker_sessions(seen: &[Seen], lifetime: Duration, produced: usize) {
    for (n, connection) in seen.iter().enumerate() {
        assert_eq!(connection.logins, vec![APP.0.to_string()], "broker connection {n}");
        assert!(!connection.expired, "broker connection {n} was closed at its session's end");
        assert!(connection.oldest_session < lifetime, "broker connection {n}: {:?}", connection.oldest_session);
    }
    let ids: Vec<i32> = seen.iter().flat_map(|c| c.produced.iter().copied()).collect();
    assert_eq!(ids.len(), produced, "requests lost or repeated");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "requests reordered across broker connections");
}

/// Swap, a client that is never idle: it keeps 50 Produce requests outstanding (writing one
/// more at each answer) while the gateway forwards 5 at a time and the broker answers each
/// after 2 s, so requests are always in flight and the client's bytes always waiting. The
/// gateway still renews its broker session before each ends (from 95 %, letting what is
/// outstanding be answered first), and nothing is lost or reordered.
#[tokio::test(start_paused = true)]
async fn swap_renews_its_broker_session_under_a_client_that_is_never_idle() {
    const AHEAD: i32 = 50;
    let (lifetime, span) = (10 * MINUTE, Duration::from_secs(3600));
    let dir = tempfile::tempdir().unwrap();
    let gateway = Arc::new(Gateway::new(
        swap_config(dir.path(), Duration::from_secs(24 * 3600)),
        ProxySettings { max_in_flight_requests: 5, ..settings() },
    ));
    let broker = Broker::new(lifetime, Duration::from_secs(2), APP);
    let (client, pumped) = gateway.connect_swap(broker.clone());
    let (read, mut write) = split(client);
    let mut answers = Answers { read };
    write.write_all(&login(0, ALICE)).await.unwrap();
    assert_eq!(answers.login(0).await.error_code, 0);
    let started = Instant::now();
    let ahead: Vec<u8> = (2..2 + AHEAD).flat_map(|id| produce(id).to_vec()).collect();
    write.write_all(&ahead).await.unwrap();
    let mut next = 2;
    while started.elapsed() < span {
        assert_eq!(answers.next().await.0, next, "answers out of order");
        write.write_all(&produce(next + AHEAD)).await.unwrap();
        next += 1;
    }
    assert!(!pumped.is_finished(), "the client's connection ended");
    let seen = broker.seen();
    let renewals = seen.len() as u64 - 1;
    // From 95 % of each session, once the requests forwarded by then are answered.
    let fewest = span.as_secs() / lifetime.as_secs();
    assert!((fewest..=fewest + 1).contains(&renewals), "{renewals} renewals in an hour of 10 min sessions");
    assert_eq!(gateway.swap_logins("renewed"), renewals);
    for (n, connection) in seen.iter().enumerate() {
        assert!(!connection.expired, "broker connection {n} was closed at its session's end");
        assert!(connection.oldest_session < lifetime, "broker connection {n}: {:?}", connection.oldest_session);
        let renewed = n + 1 < seen.len();
        assert!(
            !renewed || connection.oldest_session >= lifetime * 9 / 10,
            "renewed at {:?}",
            connection.oldest_session
        );
    }
    let ids: Vec<i32> = seen.iter().flat_map(|c| c.produced.iter().copied()).collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "a request lost, repeated or reordered across broker connections"
    );
}

/// Swap: a client that stops re-authenticating with the gateway (sessions of five minutes) is
/// closed at its first request after its session's end, with the reason; the broker session
/// meanwhile is the gateway's business and never ends under the client.
#[tokio::test(start_paused = true)]
async fn swap_client_that_does_not_reauthenticate_is_closed_by_the_gateway() {
    let client_session = 5 * MINUTE;
    let dir = tempfile::tempdir().unwrap();
    let gateway = Arc::new(Gateway::new(swap_config(dir.path(), client_session), settings()));
    let broker = Broker::new(2 * MINUTE, Duration::ZERO, APP);
    let (client, pumped) = gateway.connect_swap(broker.clone());
    let (read, mut write) = split(client);
    let mut answers = Answers { read };
    write.write_all(&login(0, ALICE)).await.unwrap();
    assert_eq!(answers.login(0).await.session_lifetime_ms, client_session.as_millis() as i64);
    let started = Instant::now();
    let mut id = 2;
    loop {
        tokio::time::sleep(Duration::from_secs(20)).await;
        write.write_all(&produce(id)).await.unwrap();
        if started.elapsed() < client_session {
            assert_eq!(answers.next().await.0, id);
        } else {
            break;
        }
        id += 1;
    }
    assert_eq!(read_frame(&mut answers.read).await, None, "the client's connection was closed");
    let summary = pumped.await.unwrap();
    assert_eq!(summary.reason.label(), "sasl_refused");
    assert!(summary.reason.to_string().contains("connectionsMaxReauthMs"), "{}", summary.reason);
    assert!(broker.seen().iter().all(|c| !c.expired), "a broker session ended under the client");
    assert!(broker.seen().len() >= 3, "the broker session was renewed meanwhile");
}

/// Swap: the gateway stops reading the client while it renews its broker session (here a
/// 20 s login, from 80 % of the session at 285 s). A Produce and the re-authentication the
/// client sends during that pause, before its own session ends at 300 s, are read only after
/// it: the client is not judged late for the gateway's delay, and goes on.
#[tokio::test(start_paused = true)]
async fn swap_client_is_not_closed_for_the_gateways_renewal_pause() {
    let client_session = 5 * MINUTE;
    let dir = tempfile::tempdir().unwrap();
    let gateway = Arc::new(Gateway::new(swap_config(dir.path(), client_session), settings()));
    let broker = Broker {
        login_delay: Duration::from_secs(20),
        ..Broker::new(Duration::from_millis(356_250), Duration::ZERO, APP)
    };
    let (client, pumped) = gateway.connect_swap(broker.clone());
    let (read, mut write) = split(client);
    let mut answers = Answers { read };
    write.write_all(&login(0, ALICE)).await.unwrap();
    assert_eq!(answers.login(0).await.error_code, 0);
    // The gateway renews from 285 s after the login and reads nothing until 305 s.
    tokio::time::sleep(Duration::from_secs(295)).await;
    let mut frames = produce(2).to_vec();
    frames.extend_from_slice(&login(3, ALICE));
    write.write_all(&frames).await.unwrap();
    assert_eq!(answers.next().await.0, 2, "the Produce sent before the session's end");
    assert_eq!(answers.login(3).await.error_code, 0);
    write.write_all(&produce(5)).await.unwrap();
    assert_eq!(answers.next().await.0, 5);
    assert!(!pumped.is_finished());
    assert_eq!(gateway.swap_logins("renewed"), 1);
    assert_eq!(broker.seen().len(), 2);
}

/// Alice's passthrough connection on a route that moves: she logs in on `source` and is
/// accepted, produces for `span`, and the route is cut over to `destination`.
struct Moved {
    gateway: Arc<Gateway>,
    write: WriteHalf<DuplexStream>,
    answers: Answers<ReadHalf<DuplexStream>>,
    pumped: JoinHandle<ConnectionSummary>,
    /// The next correlation id.
    id: i32,
}

async fn alice_moved(source: &Broker, destination: &Broker, span: Duration) -> Moved {
    let gateway = Arc::new(Gateway::new(config("", ""), settings()));
    let (client, pumped) = gateway.connect_following(source, destination.clone());
    let (read, mut write) = split(client);
    let mut answers = Answers { read };
    write.write_all(&login(0, ALICE)).await.unwrap();
    let accepted = answers.login(0).await;
    assert_eq!(accepted.error_code, 0);
    assert_eq!(accepted.session_lifetime_ms, source.lifetime.as_millis() as i64);
    let id = produce_for(&mut write, &mut answers, 2, span).await;
    gateway.cut();
    Moved { gateway, write, answers, pumped, id }
}

/// Produce every 20 s for `span`, from correlation id `id`, checking each answer comes; returns
/// the next correlation id.
async fn produce_for<R: AsyncReadExt + Unpin>(
    write: &mut WriteHalf<DuplexStream>,
    answers: &mut Answers<R>,
    mut id: i32,
    span: Duration,
) -> i32 {
    let started = Instant::now();
    while started.elapsed() < span {
        tokio::time::sleep(Duration::from_secs(20)).await;
        write.write_all(&produce(id)).await.expect("the connection is open");
        assert_eq!(answers.next().await.0, id, "a Produce's answer");
        id += 1;
    }
    id
}

/// The Produce correlation ids every connection to `brokers` saw, in connection order; each
/// must have come under a login.
fn produced_under_logins(brokers: &[&Broker]) -> Vec<i32> {
    let seen: Vec<Seen> = brokers.iter().flat_map(|broker| broker.seen()).collect();
    assert!(seen.iter().all(|c| c.unauthenticated == 0), "a Produce came before the login: {seen:?}");
    seen.iter().flat_map(|c| c.produced.iter().copied()).collect()
}

/// Passthrough across a cut, from a cluster with 5-minute sessions to one that does not limit
/// them: the gateway logs the client in to the destination with its PLAIN login before any of
/// its requests go there, and answers the client's re-authentication on the source's schedule
/// (which the destination would refuse with ILLEGAL_SASL_STATE) itself, with no session
/// lifetime. The client keeps one connection and produces for six hours, every request
/// answered in order; its summary (audit event) names alice, counting the replay.
#[tokio::test(start_paused = true)]
async fn passthrough_login_is_replayed_at_a_cut_and_reauthentication_answered_here() {
    let lifetime = 5 * MINUTE;
    let source = Broker::new(lifetime, Duration::from_millis(3), ALICE);
    let destination = Broker::new(Duration::ZERO, Duration::from_millis(3), ALICE);
    let Moved { gateway, mut write, mut answers, pumped, id } = alice_moved(&source, &destination, 2 * MINUTE).await;
    let id = produce_for(&mut write, &mut answers, id, 2 * MINUTE).await;
    // At 4 minutes, within the source's session: the client re-authenticates as it was told.
    let relogin = id;
    write.write_all(&login(relogin, ALICE)).await.unwrap();
    let answer = answers.login(relogin).await;
    assert_eq!((answer.error_code, answer.session_lifetime_ms), (0, 0), "the gateway's answer");
    let id = produce_for(&mut write, &mut answers, relogin + 2, SPAN).await;
    assert!(!pumped.is_finished(), "the connection ended");
    drop((answers, write));
    let summary = pumped.await.unwrap();
    assert!(matches!(summary.reason, CloseReason::ClientClosed), "{}", summary.reason);
    let (at_source, at_destination) = (source.seen(), destination.seen());
    assert_eq!(at_destination.len(), 1, "one broker connection after the cut");
    assert_eq!(at_source[0].logins, [ALICE.0], "the client's login");
    assert_eq!(at_destination[0].logins, [ALICE.0], "the replay, and no other login");
    assert_eq!(at_destination[0].illegal_handshakes, 0, "the re-authentication reached the destination");
    assert!(!at_destination[0].expired);
    let produced = produced_under_logins(&[&source, &destination]);
    let expected: Vec<i32> = (2..id).filter(|n| !(relogin..relogin + 2).contains(n)).collect();
    assert_eq!(produced, expected, "Produce requests lost, repeated or reordered");
    assert!(!at_destination[0].produced.is_empty() && !at_source[0].produced.is_empty());
    assert_eq!(summary.sasl.principal.as_deref(), Some(ALICE.0));
    assert_eq!(summary.sasl.authenticated, Some(true));
    assert_eq!(
        (summary.sasl.authentications, summary.sasl.replays),
        (3, 1),
        "the login, the replay, the re-authentication"
    );
    assert_eq!((gateway.sasl_replays("replayed"), gateway.sasl_replays("reauth_answered")), (1, 1));
    assert!(!format!("{:?}", summary.sasl).contains(ALICE.1));
}

/// Passthrough across a cut to a cluster that limits sessions too (10 minutes): after the
/// replay, the client's re-authentications go to the destination like its other requests, and
/// the client learns the destination's session lifetime from the first of them.
#[tokio::test(start_paused = true)]
async fn passthrough_reauthentication_after_a_replay_goes_to_a_destination_that_limits_sessions() {
    let (lifetime, destination_lifetime) = (5 * MINUTE, 10 * MINUTE);
    let source = Broker::new(lifetime, Duration::from_millis(3), ALICE);
    let destination = Broker::new(destination_lifetime, Duration::from_millis(3), ALICE);
    let Moved { gateway, mut write, mut answers, pumped, mut id } =
        alice_moved(&source, &destination, 2 * MINUTE).await;
    // The first at 4 minutes (the source's schedule), then every 8 (the destination's).
    let mut wait = 2 * MINUTE;
    let reauthentications = 8;
    for _ in 0..reauthentications {
        id = produce_for(&mut write, &mut answers, id, wait).await;
        write.write_all(&login(id, ALICE)).await.unwrap();
        let answer = answers.login(id).await;
        assert_eq!((answer.error_code, answer.session_lifetime_ms), (0, destination_lifetime.as_millis() as i64));
        id += 2;
        wait = 8 * MINUTE;
    }
    produce_for(&mut write, &mut answers, id, MINUTE).await;
    assert!(!pumped.is_finished(), "the connection ended");
    drop((answers, write));
    let summary = pumped.await.unwrap();
    assert!(matches!(summary.reason, CloseReason::ClientClosed), "{}", summary.reason);
    let at_destination = destination.seen();
    assert_eq!(at_destination.len(), 1, "one broker connection after the cut");
    assert_eq!(at_destination[0].logins.len(), 1 + reauthentications, "the replay and every re-authentication");
    assert_eq!(at_destination[0].illegal_handshakes, 0);
    assert!(!at_destination[0].expired && at_destination[0].oldest_session < destination_lifetime);
    produced_under_logins(&[&source, &destination]);
    assert_eq!(summary.sasl.authentications as usize, 2 + reauthentications);
    assert_eq!(summary.sasl.replays, 1);
    assert_eq!((gateway.sasl_replays("replayed"), gateway.sasl_replays("reauth_answered")), (1, 0));
}

/// After a replay on a cluster that does not limit sessions, a re-authentication with another
/// password is refused by the gateway (SASL_AUTHENTICATION_FAILED) and the connection closed;
/// the destination never sees it.
#[tokio::test(start_paused = true)]
async fn passthrough_reauthentication_with_another_password_after_a_replay_is_refused() {
    const GUESSED: (&str, &str) = ("alice", "guessed-pw");
    let source = Broker::new(5 * MINUTE, Duration::ZERO, ALICE);
    let destination = Broker::new(Duration::ZERO, Duration::ZERO, ALICE);
    let Moved { gateway, mut write, mut answers, pumped, id } = alice_moved(&source, &destination, MINUTE).await;
    let id = produce_for(&mut write, &mut answers, id, MINUTE).await;
    write.write_all(&login(id, GUESSED)).await.unwrap();
    assert_eq!(answers.login(id).await.error_code, 58, "SASL_AUTHENTICATION_FAILED");
    assert_eq!(read_frame(&mut answers.read).await, None, "the client's connection was closed");
    let summary = pumped.await.unwrap();
    assert_eq!(summary.reason.label(), "sasl_refused", "{}", summary.reason);
    assert_eq!(summary.sasl.authenticated, Some(false));
    let at_destination = destination.seen();
    assert_eq!((at_destination[0].logins.len(), at_destination[0].refused), (1, 0), "only the replay reached it");
    assert_eq!(gateway.sasl_replays("reauth_refused"), 1);
    assert!(!format!("{:?} {}", summary.sasl, summary.reason).contains("-pw"));
}

/// A destination that refuses the client's login (it does not know alice) ends the connection
/// at the cut, saying so without the password; nothing of the client's reaches it.
#[tokio::test(start_paused = true)]
async fn passthrough_replay_refused_by_the_destination_closes_the_connection() {
    let source = Broker::new(5 * MINUTE, Duration::ZERO, ALICE);
    let destination = Broker::new(Duration::ZERO, Duration::ZERO, APP);
    let Moved { gateway, mut write, mut answers, pumped, id } = alice_moved(&source, &destination, MINUTE).await;
    write.write_all(&produce(id)).await.unwrap();
    assert_eq!(read_frame(&mut answers.read).await, None, "the client's connection was closed");
    let summary = pumped.await.unwrap();
    assert_eq!(summary.reason.label(), "move_failed", "{}", summary.reason);
    assert!(summary.reason.to_string().contains("did not accept the client's PLAIN login"), "{}", summary.reason);
    assert!(!summary.reason.to_string().contains(ALICE.1));
    let at_destination = destination.seen();
    assert_eq!((at_destination[0].refused, at_destination[0].produced.len()), (1, 0));
    assert_eq!((gateway.sasl_replays("replay_refused"), gateway.sasl_replays("replayed")), (1, 0));
}
