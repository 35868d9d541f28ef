//! The gate a switchover closes in front of a route.
//!
//! While the fence is closed, the route's connections forward no new request, while answers to
//! requests already forwarded keep flowing back. In mode `hold` they stop reading from their
//! clients, so clients see a pause, not an error. In mode `error` they answer each request they
//! can with a retriable error (see [`crate::protocol::fence_answer`]) and hold the others.
//! Checking the fence is one atomic load per read batch; only a connection that finds it closed
//! subscribes to be woken when it opens.

use std::sync::atomic::{AtomicU8, Ordering};

use tokio::sync::watch;

use crate::config::FenceMode;

const OPEN: u8 = 0;
const HOLD: u8 = 1;
const ERROR: u8 = 2;

pub struct Fence {
    state: AtomicU8,
    changes: watch::Sender<bool>,
}

impl Default for Fence {
    fn default() -> Self {
        Fence { state: AtomicU8::new(OPEN), changes: watch::Sender::new(false) }
    }
}

impl Fence {
    pub fn is_closed(&self) -> bool {
        self.closed().is_some()
    }

    /// How the fence is closed, or `None` while it is open.
    pub fn closed(&self) -> Option<FenceMode> {
        match self.state.load(Ordering::Acquire) {
            OPEN => None,
            HOLD => Some(FenceMode::Hold),
            _ => Some(FenceMode::Error),
        }
    }

    pub fn close(&self, mode: FenceMode) {
        let state = match mode {
            FenceMode::Hold => HOLD,
            FenceMode::Error => ERROR,
        };
        self.state.store(state, Ordering::Release);
        self.changes.send_replace(true);
    }

    pub fn open(&self) {
        self.state.store(OPEN, Ordering::Release);
        self.changes.send_replace(false);
    }

    /// Resolve once the fence is open.
    pub async fn wait_open(&self) {
        let mut changes = self.changes.subscribe();
        // `wait_for` checks the current value first, so an open that raced ahead is not missed.
        let _ = changes.wait_for(|closed| !closed).await;
    }
}
