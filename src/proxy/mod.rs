//! Proxying: client-facing listeners, broker connections, and the frame pump between them.

mod connection;
mod listener;
mod upstream;

pub use connection::CloseReason;
pub use listener::{accept_loop, bind_route, BoundPort};
