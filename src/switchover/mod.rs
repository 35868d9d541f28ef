//! Live client switchover: move every client of a route from its current streaming domain to
//! another, without a restart and without losing an acknowledged record.
//!
//! A switchover runs in phases, each timed and reported:
//! 1. **Pre-flight**: the destination answers; every topic the route's clients use exists there
//!    with the same partition count; replication lag per partition. A dry run stops here, and
//!    any failure here refuses the switchover before clients notice anything.
//! 2. **Fence**: the route forwards no new request and waits for the requests already
//!    forwarded to be answered. Mode `hold` parks new requests (clients see a pause); mode
//!    `error` answers them with a retriable error code (clients back off and retry).
//! 3. **Catch-up** (optional): wait until replication has caught up by the chosen policy, then
//!    (with `groupOffsets`) until MirrorMaker 2 has translated every consumer group's committed
//!    offsets, and commit them on the destination ([`groups`]); on timeout the fence opens again
//!    on the source and the switchover is reported aborted.
//! 4. **Cut**: new connections go to the destination; current ones, drained by the fence,
//!    continue on a new broker connection to the destination (the client keeps its connection;
//!    brokers' own errors steer it to the new leaders), and the fence opens. A connection whose
//!    client logged in with SASL closes instead, since only the client can log in again.

mod catch_up;
pub mod groups;
pub mod reload;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{CatchUpPolicy, FenceMode, GatewayConfig, GroupOffsets, RouteFence, SwitchoverRequest};
use crate::routing::{IdsByName, Route, TopicIdLookup, Upstream};
use crate::telemetry::SwitchoverEvent;

/// How long pre-flight may wait for a cluster to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound on the catch-up phase.
pub const DEFAULT_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// What happened, phase by phase.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SwitchoverReport {
    pub route: String,
    pub from: String,
    pub to: String,
    pub dry_run: bool,
    /// `completed`, `dry-run` or `aborted`.
    pub outcome: &'static str,
    pub message: String,
    pub phases: Vec<PhaseReport>,
    pub topics: Vec<TopicReport>,
    /// Consumer groups whose offsets were carried to the destination (with `groupOffsets`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<groups::GroupReport>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseReport {
    pub name: &'static str,
    pub duration_ms: u64,
    pub detail: String,
}

/// One topic on both sides, as pre-flight (and catch-up) found it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicReport {
    pub topic: String,
    pub source_partitions: usize,
    pub destination_partitions: Option<usize>,
    /// Per partition: source end offset minus destination end offset.
    pub offset_lag: Vec<i64>,
    /// Records held by the source minus records held by the destination.
    pub record_lag: i64,
}

/// Why a switchover was refused before anything was fenced.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("no route `{route}`; routes are: {}", known.join(", "))]
    UnknownRoute { route: String, known: Vec<String> },
    #[error("no streaming domain `{domain}`; domains are: {}", known.join(", "))]
    UnknownDomain { domain: String, known: Vec<String> },
    #[error("the route already points at `{domain}`")]
    AlreadyThere { domain: String },
    #[error("a switchover of route `{route}` is already running; wait for it to finish")]
    Busy { route: String },
    #[error(
        "destination `{domain}` is unreachable ({cause}); nothing was fenced. Check its bootstrapServers and retry"
    )]
    Unreachable { domain: String, cause: String },
    #[error("{}", .0.message)]
    NotReady(Box<SwitchoverReport>),
    #[error("the request is out of bounds: {0}")]
    OutOfBounds(String),
}

/// How a switchover reaches its destination cluster: through Kafka in the gateway
/// ([`ThroughKafka`]); the in-process tests give a fake cluster instead.
pub trait Destinations: Sync {
    fn reach(
        &self,
        config: &GatewayConfig,
        domain: &str,
        bootstrap_server_id: Option<&str>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Arc<Upstream>>;
}

/// Destinations reached with the gateway's own Kafka client.
pub struct ThroughKafka;

impl Destinations for ThroughKafka {
    fn reach(
        &self,
        config: &GatewayConfig,
        domain: &str,
        bootstrap_server_id: Option<&str>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Arc<Upstream>> {
        Upstream::for_domain(config, domain, bootstrap_server_id, shutdown)
    }
}

/// What a switchover needs from the running gateway.
pub struct Switchboard<'a> {
    pub config: &'a GatewayConfig,
    pub routes: &'a [Arc<Route>],
    pub shutdown: &'a CancellationToken,
    pub destinations: &'a dyn Destinations,
    /// Where pre-flight learns both clusters' topic ids, for clients to keep the source's.
    pub topic_ids: &'a dyn TopicIdLookup,
}

impl Switchboard<'_> {
    /// Run a switchover of `route_name` to completion (or its dry run, or its abort).
    pub async fn switch(&self, route_name: &str, request: &SwitchoverRequest) -> Result<SwitchoverReport, Refusal> {
        let route = self.check(route_name, request)?;
        let _claim = route.begin_switch().ok_or_else(|| Refusal::Busy { route: route_name.to_string() })?;
        let source = route.upstream();
        if source.domain == request.to {
            return Err(Refusal::AlreadyThere { domain: request.to.clone() });
        }
        let defaults = self.config.routes.iter().find(|r| r.name == route_name);
        let catch_up = request.catch_up.or(defaults.map(|d| d.catch_up)).unwrap_or_default();
        let catch_up_timeout = request
            .catch_up_timeout_ms
            .map(Duration::from_millis)
            .or(defaults.and_then(|d| d.catch_up_timeout))
            .unwrap_or(DEFAULT_CATCH_UP_TIMEOUT);
        let fence = request.fence.or(defaults.map(|d| d.fence)).unwrap_or_default();
        let group_offsets = request.group_offsets.clone().or_else(|| defaults.and_then(|d| d.group_offsets.clone()));
        let mut run = Run::new(route, &source, request);
        let destination = run.preflight(self).await?;
        if request.dry_run {
            destination.retire();
            return Ok(run.report("dry-run", "pre-flight passed; nothing was changed".into()));
        }
        let _prepared = match &group_offsets {
            Some(settings) => Some(groups::prepare(settings, &source, &destination, &run.partitions).await),
            None => None,
        };
        run.fence(fence, self.config.proxy.drain_timeout).await;
        if let Err(why) = run.catch_up(&destination, catch_up, group_offsets.as_ref(), catch_up_timeout).await {
            route.set_fenced(None);
            destination.retire();
            tracing::warn!(route = route_name, "switchover aborted, clients stay on `{}`: {why}", source.domain);
            return Ok(run.report("aborted", format!("{why}; the route was unfenced on `{}`", source.domain)));
        }
        run.cut(destination);
        Ok(run.report("completed", format!("route `{route_name}` now points at `{}`", request.to)))
    }

    /// Whether a switchover of `route_name` could be asked for at all: the route and the
    /// destination exist and every parameter is in bounds. [`Self::switch`] checks this first;
    /// a command from another gateway node is checked before it is applied too.
    pub fn check(&self, route_name: &str, request: &SwitchoverRequest) -> Result<&Arc<Route>, Refusal> {
        let route = self.route(route_name)?;
        self.domain_exists(&request.to)?;
        request.check_bounds().map_err(Refusal::OutOfBounds)?;
        Ok(route)
    }

    /// Hold (or drop) the configuration's fence on route `name`; what changed, if anything.
    pub fn set_config_fence(&self, name: &str, fence: Option<RouteFence>) -> Option<&'static str> {
        let route = self.routes.iter().find(|r| r.name == name)?;
        let up = fence.is_some();
        route.set_config_fence(fence).then_some(if up {
            "fenced by the configuration"
        } else {
            "configuration fence removed"
        })
    }

    /// The domain route `name` points at now, if there is such a route.
    pub fn live_domain(&self, name: &str) -> Option<String> {
        self.routes.iter().find(|r| r.name == name).map(|r| r.upstream().domain.clone())
    }

    fn route(&self, name: &str) -> Result<&Arc<Route>, Refusal> {
        self.routes.iter().find(|r| r.name == name).ok_or_else(|| Refusal::UnknownRoute {
            route: name.to_string(),
            known: self.routes.iter().map(|r| r.name.clone()).collect(),
        })
    }

    fn domain_exists(&self, name: &str) -> Result<(), Refusal> {
        if self.config.domains.iter().any(|d| d.name == name) {
            return Ok(());
        }
        Err(Refusal::UnknownDomain {
            domain: name.to_string(),
            known: self.config.domains.iter().map(|d| d.name.clone()).collect(),
        })
    }
}

/// One switchover in progress: what it has found and how long each phase took.
struct Run<'a> {
    route: &'a Route,
    source: &'a Arc<Upstream>,
    request: &'a SwitchoverRequest,
    phases: Vec<PhaseReport>,
    topics: Vec<TopicReport>,
    /// Partition counts of the checked topics on the source.
    partitions: BTreeMap<String, usize>,
    groups: Vec<groups::GroupReport>,
    /// The checked topics' ids on the source and on the destination, when both answered.
    topic_ids: Option<(IdsByName, IdsByName)>,
}

impl<'a> Run<'a> {
    fn new(route: &'a Route, source: &'a Arc<Upstream>, request: &'a SwitchoverRequest) -> Self {
        Run {
            route,
            source,
            request,
            phases: Vec::new(),
            topics: Vec::new(),
            partitions: BTreeMap::new(),
            groups: Vec::new(),
            topic_ids: None,
        }
    }

    fn phase(&mut self, name: &'static str, started: Instant, detail: String) {
        let duration_ms = started.elapsed().as_millis() as u64;
        self.route.metrics.switchover_phase(name, started.elapsed());
        tracing::info!(route = %self.route.name, phase = name, duration_ms, "switchover: {detail}");
        self.phases.push(PhaseReport { name, duration_ms, detail });
    }

    /// Reach the destination and compare the route's topics on both sides.
    async fn preflight(&mut self, board: &Switchboard<'_>) -> Result<Arc<Upstream>, Refusal> {
        let started = Instant::now();
        let to = &self.request.to;
        let unreachable = |cause: String| Refusal::Unreachable { domain: to.clone(), cause };
        let destination = board
            .destinations
            .reach(board.config, to, Some(&self.source.bootstrap_server_id), board.shutdown)
            .map_err(|e| unreachable(e.to_string()))?;
        let probe = async {
            destination.topology.refresh(PROBE_TIMEOUT).await?;
            let source_topics = self.source.topology.topics(PROBE_TIMEOUT).await?;
            let destination_topics = destination.topology.topics(PROBE_TIMEOUT).await?;
            anyhow::Ok((source_topics, destination_topics))
        };
        let (source_topics, destination_topics) = match probe.await {
            Ok(found) => found,
            Err(e) => {
                destination.retire();
                return Err(unreachable(format!("{e:#}")));
            }
        };
        let wanted = self.topics_to_check(&source_topics);
        self.partitions = wanted.iter().filter_map(|t| Some((t.clone(), *source_topics.get(t)?))).collect();
        let missing: Vec<String> = wanted.iter().filter(|t| !source_topics.contains_key(*t)).cloned().collect();
        self.topics = match catch_up::compare(self.source, &destination, &self.partitions, &destination_topics).await {
            Ok(topics) => topics,
            Err(e) => {
                destination.retire();
                return Err(unreachable(format!("{e:#}")));
            }
        };
        let mismatched: Vec<String> = self
            .topics
            .iter()
            .filter(|t| t.destination_partitions != Some(t.source_partitions))
            .map(|t| match t.destination_partitions {
                None => format!("`{}` is missing", t.topic),
                Some(n) => format!("`{}` has {n} partitions instead of {}", t.topic, t.source_partitions),
            })
            .collect();
        let lag: i64 = self.topics.iter().map(|t| t.record_lag).sum();
        let coordinator = self.start_transaction_coordinator(&destination).await;
        let ids = self.learn_topic_ids(board.topic_ids, &destination).await;
        let detail = format!(
            "destination reachable; {} topics checked ({} not on the source: {}); replication lag {lag} records{coordinator}{ids}",
            self.topics.len(),
            missing.len(),
            missing.join(", ")
        );
        self.phase("pre-flight", started, detail);
        if !mismatched.is_empty() {
            destination.retire();
            let message = format!(
                "destination `{to}` is not ready: {}. Create the topics there (or let the replication tool do it) and retry; nothing was fenced",
                mismatched.join("; ")
            );
            return Err(Refusal::NotReady(Box::new(self.report("refused", message))));
        }
        Ok(destination)
    }

    /// Where transactional producers use the route, start the destination's transaction
    /// coordinator before anything is fenced: on a cluster that never hosted a transaction,
    /// the first transactional Produce after the cut would otherwise be answered
    /// `NOT_ENOUGH_REPLICAS` until the transaction state log exists, which no request of the
    /// client's creates. Not in a dry run, which changes nothing. Reported in the phase's detail;
    /// a coordinator that does not start does not refuse the switchover (producers then wait
    /// for it after the cut).
    async fn start_transaction_coordinator(&self, destination: &Arc<Upstream>) -> String {
        if self.request.dry_run || !self.route.has_transactional_producers() {
            return String::new();
        }
        let started = destination.topology.ask(|cluster| cluster.start_transaction_coordinator(PROBE_TIMEOUT)).await;
        match started {
            Ok(()) => "; transaction coordinator up".into(),
            Err(e) => {
                tracing::warn!(route = %self.route.name, "the destination's transaction coordinator did not start: {e:#}");
                format!("; transaction coordinator not up ({e:#}): transactional producers wait for it after the cut")
            }
        }
    }

    /// Ask both clusters for the checked topics' ids, so that the cut can show clients the
    /// source's ids from its first moment on (`routing::TopicIds`). Reported in the phase's
    /// detail; clusters that do not answer do not refuse the switchover (clients are then shown
    /// the source's ids as Metadata answers teach the route them).
    async fn learn_topic_ids(&mut self, lookup: &dyn TopicIdLookup, destination: &Upstream) -> String {
        let topics: Vec<String> = self.partitions.keys().cloned().collect();
        if topics.is_empty() {
            return String::new();
        }
        let (on_source, on_destination) =
            tokio::join!(lookup.topic_ids(self.source, &topics), lookup.topic_ids(destination, &topics));
        match (on_source, on_destination) {
            (Ok(on_source), Ok(on_destination)) => {
                let differ =
                    on_source.iter().filter(|(t, id)| on_destination.get(*t).is_some_and(|d| d != *id)).count();
                self.topic_ids = Some((on_source, on_destination));
                format!("; {differ} topic ids differ on the destination, clients keep the source's")
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(route = %self.route.name, "topic ids not learned in pre-flight: {e}");
                format!("; topic ids not learned ({e}): clients keep those Metadata answers showed them")
            }
        }
    }

    fn topics_to_check(&self, source_topics: &BTreeMap<String, usize>) -> Vec<String> {
        if let Some(topics) = &self.request.topics {
            return topics.clone();
        }
        let seen = self.route.topics_seen();
        if !seen.is_empty() {
            return seen;
        }
        source_topics.keys().filter(|t| !catch_up::is_replication_internal(t)).cloned().collect()
    }

    /// Stop forwarding new requests and wait for those in flight to be answered.
    async fn fence(&mut self, mode: FenceMode, bound: Duration) {
        let started = Instant::now();
        self.route.set_fenced(Some(mode));
        let fence = &self.route.fence;
        // Fetches still parked at the broker are not waited for: each connection waits for its
        // own before it moves at the cut (see `routing::fence`).
        let detail = match tokio::time::timeout(bound, fence.writes_drained()).await {
            Ok(()) => match fence.in_flight() {
                0 => format!("fenced ({mode}); every in-flight request answered"),
                fetches => {
                    format!("fenced ({mode}); every in-flight request answered but {fetches} Fetch (they only read)")
                }
            },
            Err(_) => format!(
                "fenced ({mode}); {} requests still unanswered after {bound:?}, they will be retried by clients",
                fence.writes_in_flight()
            ),
        };
        self.phase("fence", started, detail);
    }

    /// Wait for the data by `policy`, then carry the groups, both within `timeout`.
    async fn catch_up(
        &mut self,
        destination: &Arc<Upstream>,
        policy: CatchUpPolicy,
        group_offsets: Option<&GroupOffsets>,
        timeout: Duration,
    ) -> Result<(), String> {
        let started = Instant::now();
        let result = catch_up::wait(policy, self.source, destination, &self.partitions, timeout).await;
        let (mut detail, mut outcome) = match result {
            Ok(Some(topics)) => {
                self.topics = topics;
                (format!("replication caught up ({policy}) in {} ms", started.elapsed().as_millis()), Ok(()))
            }
            Ok(None) => ("skipped (policy none)".to_string(), Ok(())),
            Err(why) => (why.clone(), Err(why)),
        };
        if let (Some(settings), Ok(())) = (group_offsets, &outcome) {
            let (left, carrying) = (timeout.saturating_sub(started.elapsed()), Instant::now());
            match groups::carry(settings, self.source, destination, &self.partitions, left).await {
                Ok(groups) => {
                    let committed: usize = groups.iter().map(|g| g.committed).sum();
                    let partitions = groups.iter().flat_map(|g| &g.partitions);
                    let by_records = partitions.filter(|p| p.translated_by == groups::TranslatedBy::Records).count();
                    detail += &format!(
                        "; {} consumer groups translated ({by_records} partitions by their records, the others by MirrorMaker 2's checkpoints), {committed} partition offsets committed on the destination, in {} ms",
                        groups.len(),
                        carrying.elapsed().as_millis()
                    );
                    self.groups = groups;
                }
                Err(why) => {
                    detail = why.clone();
                    outcome = Err(why);
                }
            }
        }
        self.phase("catch-up", started, detail);
        outcome
    }

    fn cut(&mut self, destination: Arc<Upstream>) {
        let started = Instant::now();
        let to = destination.domain.clone();
        if let Some((on_source, on_destination)) = &self.topic_ids {
            // Before any connection moves: its first request may name a topic by id.
            self.route.topic_ids.prepare(self.route.moves() + 1, on_source, on_destination);
        }
        let previous = self.route.replace_upstream(destination);
        // Before unfencing: a parked connection must see its session end, not the open gate.
        self.route.move_connections();
        self.route.set_fenced(None);
        previous.retire();
        self.phase(
            "cut",
            started,
            format!(
                "new connections go to `{to}`; existing ones continue there (those that logged in with SASL reconnect)"
            ),
        );
    }

    fn report(&self, outcome: &'static str, message: String) -> SwitchoverReport {
        self.route.metrics.switchover_finished(outcome);
        SwitchoverReport {
            route: self.route.name.clone(),
            from: self.source.domain.clone(),
            to: self.request.to.clone(),
            dry_run: self.request.dry_run,
            outcome,
            message,
            phases: self.phases.clone(),
            topics: self.topics.clone(),
            groups: self.groups.clone(),
        }
    }
}

impl SwitchoverReport {
    /// The audit event of one finished phase.
    pub fn phase_event(&self, phase: &PhaseReport) -> SwitchoverEvent {
        let report = self;
        SwitchoverEvent {
            route: report.route.clone(),
            from: report.from.clone(),
            to: report.to.clone(),
            phase: phase.name.to_string(),
            duration_ms: Some(phase.duration_ms),
            detail: phase.detail.clone(),
        }
    }

    /// The audit event of the outcome.
    pub fn outcome_event(&self) -> SwitchoverEvent {
        let report = self;
        SwitchoverEvent {
            route: report.route.clone(),
            from: report.from.clone(),
            to: report.to.clone(),
            phase: "outcome".to_string(),
            duration_ms: None,
            detail: format!("{}: {}", report.outcome, report.message),
        }
    }
}
