//! The admin HTTP server: probes, metrics, and the operator's view of routes and domains.
//!
//! Reads are open; anything that changes the gateway (a route reset, a switchover) needs the
//! bearer token from `admin.token`
//! or `GATEWAY_ADMIN_TOKEN`. A gateway with no token configured refuses every change and says
//! how to set one, so an admin port exposed by mistake cannot be used to disturb traffic.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::ClusterNode;
use crate::config::{GatewayConfig, SwitchoverRequest, ENV_ADMIN_TOKEN};
use crate::routing::{Route, TopicIdLookup};
use crate::switchover::{Refusal, Switchboard, SwitchoverReport, ThroughKafka};
use crate::telemetry::{AuditEvent, AuditLog, Metrics};

/// What the admin server reads and acts on.
pub struct AdminState {
    pub config: GatewayConfig,
    pub routes: Vec<Arc<Route>>,
    pub metrics: Arc<Metrics>,
    pub audit: Arc<AuditLog>,
    pub shutdown: CancellationToken,
    /// This node's gateway cluster, when it is in one.
    pub cluster: Option<Arc<ClusterNode>>,
    /// Where a switchover's pre-flight learns topic ids.
    pub topic_ids: Arc<dyn TopicIdLookup>,
}

impl AdminState {
    /// What a switchover on this node works with.
    pub fn switchboard(&self) -> Switchboard<'_> {
        Switchboard {
            config: &self.config,
            routes: &self.routes,
            shutdown: &self.shutdown,
            destinations: &ThroughKafka,
            topic_ids: &*self.topic_ids,
        }
    }
}

/// A request's headers must arrive within this long of its first byte (slowloris).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A request's body must arrive within this long, and be no larger than `MAX_BODY`.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BODY: usize = 64 * 1024;
/// Admin connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 64;

/// Serve the admin API on `listener` until `shutdown`. Each connection is served by hyper with
/// a header read timeout, bodies are read whole under a deadline and a size limit, and at most
/// `MAX_CONNECTIONS` (64) are served at once, so a slow or flooding client cannot take the admin
/// API (and with it health probes and metrics) away.
pub async fn serve(listener: tokio::net::TcpListener, state: Arc<AdminState>, shutdown: CancellationToken) {
    let app = router(state);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let connections = TaskTracker::new();
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { break };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::error!("admin server cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _slot = slot;
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let mut connection = pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}

fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/health/live", get(|| async { Json(json!({"status": "live"})) }))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/admin/v1/routes", get(routes))
        .route("/admin/v1/domains", get(domains))
        .route("/admin/v1/cluster", get(cluster))
        .route("/admin/v1/routes/{name}/reset", post(reset_route))
        .route("/admin/v1/routes/{name}/switchover", post(switchover))
        .layer(middleware::from_fn(read_body_in_time))
        .with_state(state)
}

/// Read the request body whole, within [`BODY_TIMEOUT`] and [`MAX_BODY`], before any handler
/// sees it.
async fn read_body_in_time(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, format!("request bodies are limited to {MAX_BODY} bytes"))
        }
        Err(_) => {
            return error(StatusCode::REQUEST_TIMEOUT, format!("the request body took longer than {BODY_TIMEOUT:?}"))
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

async fn ready(State(state): State<Arc<AdminState>>) -> Response {
    let unreachable: Vec<String> = state
        .routes
        .iter()
        .filter(|r| !r.upstream().topology.reachable())
        .map(|r| format!("route `{}`: domain `{}` has not answered a metadata request", r.name, r.upstream().domain))
        .collect();
    if unreachable.is_empty() {
        Json(json!({"status": "ready"})).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "not ready", "reasons": unreachable}))).into_response()
    }
}

async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render())
        .into_response()
}

async fn routes(State(state): State<Arc<AdminState>>) -> Json<Value> {
    let configs = &state.config.routes;
    Json(Value::Array(
        state
            .routes
            .iter()
            .zip(configs)
            .map(|(route, config)| {
                let (first, last) = route.port_map.port_span();
                let upstream = route.upstream();
                let brokers: Vec<Value> = upstream
                    .topology
                    .snapshot()
                    .into_iter()
                    .map(|(id, broker)| {
                        json!({
                            "nodeId": id,
                            "port": route.port_map.port_for(id),
                            "upstream": broker.address.to_string(),
                            "rack": broker.rack,
                        })
                    })
                    .collect();
                json!({
                    "name": route.name,
                    "endpoint": config.endpoint.to_string(),
                    "bindAddress": config.bind_ip.to_string(),
                    "domain": upstream.domain,
                    "configuredDomain": config.domain,
                    "fenced": route.fence.is_closed(),
                    "upstreamBootstrap": upstream.bootstrap.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "ports": {"bootstrap": first, "first": first, "last": last},
                    "domainReachable": upstream.topology.reachable(),
                    "brokers": brokers,
                })
            })
            .collect(),
    ))
}

async fn domains(State(state): State<Arc<AdminState>>) -> Json<Value> {
    Json(Value::Array(
        state
            .config
            .domains
            .iter()
            .map(|d| {
                json!({
                    "name": d.name,
                    "clusterName": d.cluster_name,
                    "bootstrapServers": d.bootstrap_servers.iter().map(|s| json!({
                        "id": s.id,
                        "endpoint": s.addresses.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
                    })).collect::<Vec<_>>(),
                    "nodeIdRanges": d.node_id_ranges.iter().map(|r| json!({"name": r.name, "start": r.start, "end": r.end})).collect::<Vec<_>>(),
                    "routes": state.routes.iter().filter(|r| r.upstream().domain == d.name).map(|r| r.name.clone()).collect::<Vec<_>>(),
                })
            })
            .collect(),
    ))
}

/// Make every client of a route drain its in-flight requests and reconnect.
async fn reset_route(State(state): State<Arc<AdminState>>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if let Some(refusal) = refuse_unauthorized(&state, &headers) {
        return refusal;
    }
    let Some(route) = state.routes.iter().find(|r| r.name == name) else {
        let known: Vec<&str> = state.routes.iter().map(|r| r.name.as_str()).collect();
        return error(StatusCode::NOT_FOUND, format!("no route `{name}`; routes are: {}", known.join(", ")));
    };
    route.reset_connections();
    tracing::info!(route = %name, "route reset by the admin API: its clients will reconnect");
    Json(json!({"route": name, "reset": true})).into_response()
}

/// Move a route's clients to another streaming domain (see [`crate::switchover`]).
async fn switchover(
    State(state): State<Arc<AdminState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Json<SwitchoverRequest>, JsonRejection>,
) -> Response {
    if let Some(refusal) = refuse_unauthorized(&state, &headers) {
        return refusal;
    }
    let Json(request) = match body {
        Ok(request) => request,
        Err(e) => {
            return error(StatusCode::BAD_REQUEST, format!("{}: send {{\"to\": \"<domain>\", \"dryRun\": false, \"catchUp\": {{\"policy\": \"none|offsets|records\", \"maxLag\": 0}}}}", e.body_text()))
        }
    };
    match state.switchboard().switch(&name, &request).await {
        Ok(report) => {
            record_switchover(&state.audit, &report);
            if report.outcome == "completed" {
                publish_to_cluster(&state, &name, &request).await;
            }
            let status = if report.outcome == "aborted" { StatusCode::CONFLICT } else { StatusCode::OK };
            (status, Json(report)).into_response()
        }
        Err(refusal) => {
            tracing::warn!(route = %name, "switchover refused: {refusal}");
            let status = match &refusal {
                Refusal::UnknownRoute { .. } => StatusCode::NOT_FOUND,
                Refusal::UnknownDomain { .. } | Refusal::OutOfBounds(_) => StatusCode::BAD_REQUEST,
                Refusal::AlreadyThere { .. } | Refusal::Busy { .. } => StatusCode::CONFLICT,
                Refusal::Unreachable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                Refusal::NotReady(_) => StatusCode::UNPROCESSABLE_ENTITY,
            };
            let mut body = json!({"error": refusal.to_string()});
            if let Refusal::NotReady(report) = &refusal {
                body["report"] = serde_json::to_value(report).unwrap_or_default();
            }
            (status, Json(body)).into_response()
        }
    }
}

/// Have every other node of the gateway cluster apply a switchover this node completed.
async fn publish_to_cluster(state: &Arc<AdminState>, route: &str, request: &SwitchoverRequest) {
    let Some(cluster) = state.cluster.clone() else { return };
    let (route, request) = (route.to_string(), request.clone());
    let published = tokio::task::spawn_blocking(move || cluster.group.broadcast(&route, &request)).await;
    match published {
        Ok(Ok(())) => tracing::info!("switchover published to the other gateway nodes"),
        Ok(Err(e)) => {
            tracing::error!("{e:#}: other gateway nodes still point at the source; repeat the switchover on each")
        }
        Err(e) => tracing::error!("publishing the switchover failed: {e}"),
    }
}

/// The gateway cluster: members, their racks, and where each route's brokers are mapped.
async fn cluster(State(state): State<Arc<AdminState>>) -> Json<Value> {
    let Some(cluster) = &state.cluster else {
        return Json(json!({"clusterId": null, "members": [], "mapping": []}));
    };
    let membership = &cluster.membership;
    let mapping: Vec<Value> = state
        .routes
        .iter()
        .map(|route| {
            let brokers: Vec<Value> = route
                .upstream()
                .topology
                .snapshot()
                .into_iter()
                .map(|(id, broker)| {
                    let host = route.advertising.host_for(&route.advertised_host, id, broker.rack.as_deref(), 0);
                    json!({"nodeId": id, "rack": broker.rack, "advertisedHost": host.as_str(), "port": route.port_map.port_for(id)})
                })
                .collect();
            json!({"route": route.name, "brokers": brokers})
        })
        .collect();
    Json(json!({
        "clusterId": membership.cluster_id,
        "self": membership.me,
        "internalLoadBalancing": cluster.internal_load_balancing,
        "members": *membership.members(),
        "mapping": mapping,
    }))
}

/// One audit event per phase, then the outcome.
pub fn record_switchover(audit: &AuditLog, report: &SwitchoverReport) {
    for phase in &report.phases {
        audit.record(AuditEvent::Switchover(report.phase_event(phase)));
    }
    audit.record(AuditEvent::Switchover(report.outcome_event()));
}

/// The answer to a change request without the right bearer token; `None` lets it through.
fn refuse_unauthorized(state: &AdminState, headers: &HeaderMap) -> Option<Response> {
    let Some(expected) = &state.config.admin.token else {
        return Some(error(
            StatusCode::FORBIDDEN,
            format!("changes are disabled: no admin token is configured. Set admin.token in the config or {ENV_ADMIN_TOKEN}, then send it as `Authorization: Bearer <token>`"),
        ));
    };
    let presented = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token);
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => None,
        Some(_) => Some(unauthorized("the bearer token is wrong")),
        None => Some(unauthorized("send the admin token as `Authorization: Bearer <token>`")),
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive
/// (RFC 9110).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start())
}

fn unauthorized(message: &str) -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, message.to_string());
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    response
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

/// Compare without leaking, through timing, how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bEARER abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }
}
