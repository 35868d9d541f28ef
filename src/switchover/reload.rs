//! Applying an edited config file to a running gateway (SIGHUP, or `reload.watch`).
//!
//! The procedure users know from Confluent Gateway — change a route's `streamingDomain.name`
//! and restart — works here without the restart: a route whose domain in the edited file is not
//! the one it points at now is switched over live, with its configured catch-up gate and fence.
//! "Now" is the live route, not the file the gateway started from: after a switchover by the
//! API or an earlier reload, editing the domain back moves the route back.
//! A route's `fence:` block (Confluent's route fence) is put up or taken down as the file says,
//! before any switchover of that route, so an edit-fence, edit-domain, edit-unfence workflow
//! works; a switchover of a fenced route keeps the fence when it ends.
//! Routes that did not change keep their connections untouched. Changes that need new
//! listeners or new clients (new or removed routes, endpoints, ports, domain definitions, proxy
//! settings) are reported as needing a restart and not applied: a reload never half-applies.

use super::{Switchboard, SwitchoverReport};
use crate::config::SwitchoverRequest;
use crate::config::{ClientAuthSettings, DomainConfig, GatewayConfig, RouteConfig};
pub use crate::telemetry::ReloadOutcome;

/// Apply `edited` over `running`, switching routes through `board` (whose config is `running`).
pub async fn apply(board: &Switchboard<'_>, edited: &GatewayConfig) -> (ReloadOutcome, Vec<SwitchoverReport>) {
    let running = board.config;
    let mut outcome = ReloadOutcome { source: edited.source.clone(), ..ReloadOutcome::default() };
    let mut reports = Vec::new();
    outcome.needs_restart.extend(domain_changes(&running.domains, &edited.domains));
    if running.secret_stores != edited.secret_stores {
        outcome.needs_restart.push("secretStores changed".to_string());
    }
    for route in &running.routes {
        if !edited.routes.iter().any(|r| r.name == route.name) {
            outcome.needs_restart.push(format!("route `{}` was removed", route.name));
        }
    }
    for new in &edited.routes {
        let Some(old) = running.routes.iter().find(|r| r.name == new.name) else {
            outcome.needs_restart.push(format!("route `{}` is new", new.name));
            continue;
        };
        if let Some(change) = board.set_config_fence(&new.name, new.config_fence.clone()) {
            outcome.fenced.push(format!("{}: {change}", new.name));
        }
        let live_domain = board.live_domain(&new.name).unwrap_or_else(|| old.domain.clone());
        if let Some(change) = listener_change(old, new) {
            outcome.needs_restart.push(format!("route `{}`: {change}", new.name));
        } else if live_domain == new.domain {
            outcome.unchanged.push(new.name.clone());
        } else {
            let request = SwitchoverRequest {
                to: new.domain.clone(),
                dry_run: false,
                catch_up: Some(new.catch_up),
                catch_up_timeout_ms: new.catch_up_timeout.map(|t| t.as_millis() as u64),
                fence: Some(new.fence),
                topics: None,
                group_offsets: new.group_offsets.clone(),
            };
            match board.switch(&new.name, &request).await {
                Ok(report) if report.outcome == "completed" => {
                    outcome.switched.push(format!("{}: {live_domain} -> {}", new.name, new.domain));
                    reports.push(report);
                }
                Ok(report) => {
                    outcome.failed.push(format!("{}: {}", new.name, report.message));
                    reports.push(report);
                }
                Err(refusal) => outcome.failed.push(format!("{}: {refusal}", new.name)),
            }
        }
    }
    (outcome, reports)
}

/// Why a route's listeners or client-visible identity would change, if they would.
fn listener_change(old: &RouteConfig, new: &RouteConfig) -> Option<&'static str> {
    if old.endpoint != new.endpoint || old.bind_ip != new.bind_ip {
        Some("its endpoint or bindAddress changed")
    } else if old.port_map != new.port_map {
        Some("its port map changed (nodeIdRanges)")
    } else if old.bootstrap_server_id != new.bootstrap_server_id || old.cluster_id != new.cluster_id {
        Some("its bootstrapServerId or clusterId changed")
    } else if !same_swap(old, new) {
        // The client JAAS file's users are re-read by the data path when the file changes.
        Some("its security.auth or swapConfig changed")
    } else {
        None
    }
}

/// Whether two routes authenticate the same way, the users of the client JAAS file aside.
fn same_swap(old: &RouteConfig, new: &RouteConfig) -> bool {
    match (&old.swap, &new.swap) {
        (None, None) => true,
        (Some(old), Some(new)) => {
            same_client_auth(&old.client_auth, &new.client_auth)
                && old.secret_store == new.secret_store
                && old.cluster_mechanism == new.cluster_mechanism
                && old.cluster_template == new.cluster_template
                && old.client_reauth == new.client_reauth
        }
        _ => false,
    }
}

/// Whether clients log in the same way: the users of a client JAAS file are re-read by the data
/// path, so only its path and mechanism count.
fn same_client_auth(old: &ClientAuthSettings, new: &ClientAuthSettings) -> bool {
    match (old, new) {
        (
            ClientAuthSettings::Sasl { mechanism: a, jaas: x, .. },
            ClientAuthSettings::Sasl { mechanism: b, jaas: y, .. },
        ) => a == b && x == y,
        (ClientAuthSettings::Mtls { rules: a }, ClientAuthSettings::Mtls { rules: b }) => a == b,
        (ClientAuthSettings::StoredScram { admin: a }, ClientAuthSettings::StoredScram { admin: b }) => a == b,
        _ => false,
    }
}

fn domain_changes(running: &[DomainConfig], edited: &[DomainConfig]) -> Vec<String> {
    edited
        .iter()
        .filter(|new| {
            running.iter().find(|old| old.name == new.name).is_none_or(|old| {
                old.bootstrap_servers
                    .iter()
                    .map(|s| (&s.id, &s.addresses))
                    .ne(new.bootstrap_servers.iter().map(|s| (&s.id, &s.addresses)))
            })
        })
        .map(|d| format!("streaming domain `{}` is new or its bootstrapServers changed", d.name))
        .collect()
}
