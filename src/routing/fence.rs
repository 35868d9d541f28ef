//! The gate a switchover closes in front of a route.
//!
//! While the fence is closed, the route's connections forward no new request: they stop
//! reading from their clients (so clients see a pause, not an error) while answers to requests
//! already forwarded keep flowing back. Checking the fence is one atomic load per read batch;
//! only a connection that finds it closed subscribes to be woken when it opens.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

pub struct Fence {
    closed: AtomicBool,
    changes: watch::Sender<bool>,
}

impl Default for Fence {
    fn default() -> Self {
        Fence { closed: AtomicBool::new(false), changes: watch::Sender::new(false) }
    }
}

impl Fence {
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn close(&self) {
        self.set(true);
    }

    pub fn open(&self) {
        self.set(false);
    }

    fn set(&self, closed: bool) {
        self.closed.store(closed, Ordering::Release);
        self.changes.send_replace(closed);
    }

    /// Resolve once the fence is open.
    pub async fn wait_open(&self) {
        let mut changes = self.changes.subscribe();
        // `wait_for` checks the current value first, so an open that raced ahead is not missed.
        let _ = changes.wait_for(|closed| !closed).await;
    }
}
