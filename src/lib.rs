//! Switchyard: a Kafka-protocol-aware gateway.
//!
//! Clients connect only to the gateway's routes; each route forwards to one streaming domain (a
//! backend Kafka cluster) and rewrites every broker address in responses so clients keep
//! talking through it. The layers, from the wire up:
//!
//! - [`protocol`]: framing, request headers, the in-flight bookkeeping;
//! - [`rewrite`]: the few responses that are decoded (ApiVersions, and those carrying broker
//!   addresses) and how they change;
//! - [`routing`]: routes, port maps, the fence, and each route's live view of its cluster;
//! - [`switchover`]: moving a route's clients to another streaming domain, live;
//! - [`proxy`]: listeners, the PROXY protocol and the per-connection frame pump;
//! - [`config`]: the YAML schema and its validation, at the bottom: it depends on no other module;
//! - [`telemetry`]: Prometheus metrics and the audit log;
//! - [`secrets`]: the secret stores swap routes map client principals to broker credentials with;
//! - [`admin`]: the admin HTTP API and the command line's client of it;
//! - [`cluster`]: gateway nodes finding each other through Kafka, and which node clients use;
//! - [`gateway`]: all of the above running together; [`cli`]: the command line.

#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod gateway;
pub mod protocol;
pub mod proxy;
pub mod rewrite;
pub mod routing;
pub mod secrets;
pub mod switchover;
pub mod telemetry;
pub mod tls;
