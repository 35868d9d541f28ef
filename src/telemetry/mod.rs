//! What the gateway reports about itself: Prometheus metrics and the audit log. Every other
//! part of the gateway records into these, so they sit low, below routing and the proxy, and
//! know nothing of them.

mod audit;
mod metrics;

pub use audit::{AuditEvent, AuditLog, ConnectionEvent, MembershipEvent, ReloadOutcome, SwitchoverEvent};
pub use metrics::{Metrics, RouteMetrics};
