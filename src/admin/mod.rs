//! Operating the gateway: the admin HTTP server (health, metrics, route and domain views, route
//! resets, switchovers, the Prometheus exposition) and the command-line client of the admin API.
//! The metrics and the audit log themselves are [`crate::telemetry`]'s.

pub mod client;
mod server;

pub use server::{record_switchover, serve, AdminState};
