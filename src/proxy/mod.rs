//! Proxying: client-facing listeners, the PROXY protocol, broker connections, and the frame
//! pump between them.

mod broker_login;
mod budget;
mod connection;
mod limits;
mod listener;
mod poll_on_wake;
mod proxy_protocol;
mod sasl_replay;
mod scram_admin;
mod stream;
mod swap;
mod topic_id_lookup;
mod transactions;
mod upstream;

pub use budget::MemoryBudget;
pub use connection::{pump, CloseReason, ConnectionContext, ConnectionSummary, Dialled, Redial, StopSignals};
pub use limits::ConnectionLimits;
pub use listener::{accept_loop, accept_sni_loop, bind_route, BoundPort, ListenerContext, SniRoute};
pub use proxy_protocol::{parse as parse_header, ProxiedAddresses, ProxyHeaderError};
pub use stream::{Duplex, Halves};
pub use swap::{serve as serve_swap, SwapAuth};
pub use topic_id_lookup::OwnConnection;
