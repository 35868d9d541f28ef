//! Operating the gateway: the admin HTTP server (health, metrics, route and domain views, route
//! resets), Prometheus metrics, the audit log, and the command-line client of the admin API.

mod audit;
pub mod client;
mod metrics;
mod server;

pub use audit::{AuditEvent, AuditLog, ConnectionEvent, MembershipEvent, SwitchoverEvent};
pub use metrics::{Metrics, RouteMetrics};
pub use server::{record_switchover, serve, AdminState};
