//! What the gateway reports about itself: Prometheus metrics, the audit log, and the rate
//! limits that keep repeated log lines from flooding. Every other
//! part of the gateway records into these, so they sit low, below routing and the proxy, and
//! know nothing of them.

mod audit;
mod metrics;
mod rate_limit;

pub use audit::{
    AuditEvent, AuditLog, ClusterRejectedEvent, ConnectionEvent, MembershipEvent, ReloadOutcome, SwitchoverEvent,
};
pub use metrics::{Metrics, RouteMetrics};
pub use rate_limit::{KeyedRateLimit, RateLimit};
