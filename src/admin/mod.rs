//! Operating the gateway: the admin HTTP server (health, metrics, route and domain views, route
//! resets), Prometheus metrics, the audit log, and `switchyard status`, its command-line reader.

mod audit;
mod metrics;
mod server;
pub mod status;

pub use audit::{AuditEvent, AuditLog, ConnectionEvent};
pub use metrics::{Metrics, RouteMetrics};
pub use server::{serve, AdminState};
