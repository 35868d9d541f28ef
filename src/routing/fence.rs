//! The gate a switchover closes in front of a route, and the count of what got through it.
//!
//! While the fence is closed, the route's connections forward no new request, while answers to
//! requests already forwarded keep flowing back. In mode `hold` they stop reading from their
//! clients, so clients see a pause, not an error. In mode `error` they answer each request they
//! can with a retriable error (see [`crate::protocol::fence_answer`]) and hold the others.
//!
//! The fence also counts the requests that passed it and are not answered yet: a switchover
//! closes the fence, then waits for that count to reach zero ([`Fence::drained`]) before it
//! moves the route. Passing the fence and being counted are one atomic step ([`Fence::enter`]:
//! one compare-and-swap on a word holding both the state and the count), so no request can pass
//! an open fence and be counted only after the switchover has seen zero: either the request is
//! counted before the fence closes, and the switchover waits for its answer, or it finds the
//! fence closed. Only a connection that finds the fence closed subscribes to be woken when it
//! opens; only a closed fence's last answer wakes the switchover.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{watch, Notify};

use crate::config::FenceMode;
use crate::protocol::fence_answer::FenceCodes;

/// The state sits in the top byte of the word, the count of requests in the rest.
const STATE_SHIFT: u32 = 56;
const COUNT_MASK: u64 = (1 << STATE_SHIFT) - 1;
const OPEN: u64 = 0;
const HOLD: u64 = 1;
const ERROR: u64 = 2;

pub struct Fence {
    /// State and count, see [`STATE_SHIFT`].
    word: AtomicU64,
    changes: watch::Sender<bool>,
    drained: Notify,
    /// `requests_in_flight`: the count, for metrics.
    in_flight_metric: Gauge,
    /// `route_fenced`: 1 while closed.
    closed_metric: Gauge,
    /// What mode `error` answers with (read on the fenced path only).
    codes: Mutex<FenceCodes>,
}

impl Fence {
    pub fn new(in_flight_metric: Gauge, closed_metric: Gauge) -> Fence {
        Fence {
            word: AtomicU64::new(OPEN),
            changes: watch::Sender::new(false),
            drained: Notify::new(),
            in_flight_metric,
            closed_metric,
            codes: Mutex::new(FenceCodes::RETRIABLE),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed().is_some()
    }

    /// How the fence is closed, or `None` while it is open.
    pub fn closed(&self) -> Option<FenceMode> {
        mode(self.word.load(Ordering::Acquire))
    }

    /// Pass the fence with one request and count it, or learn how the fence is closed. A request
    /// that passed must [`leave`](Fence::leave) once answered (or once its answer is lost).
    pub fn enter(&self) -> Result<(), FenceMode> {
        let passed = self.word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| match mode(word) {
            None => Some(word + 1),
            Some(_) => None,
        });
        match passed {
            Ok(_) => {
                self.in_flight_metric.inc();
                Ok(())
            }
            Err(word) => Err(mode(word).expect("only a closed fence refuses")),
        }
    }

    /// `requests` that passed the fence are answered (or will never be).
    pub fn leave(&self, requests: u64) {
        if requests == 0 {
            return;
        }
        let before = self.word.fetch_sub(requests, Ordering::AcqRel);
        debug_assert!(before & COUNT_MASK >= requests, "more requests left than entered");
        self.in_flight_metric.dec_by(requests as i64);
        if before & COUNT_MASK == requests && mode(before).is_some() {
            self.drained.notify_waiters();
        }
    }

    /// Requests that passed the fence and are not answered yet.
    pub fn in_flight(&self) -> u64 {
        self.word.load(Ordering::Acquire) & COUNT_MASK
    }

    /// Close with the retriable error codes (mode `error`).
    pub fn close(&self, mode: FenceMode) {
        self.close_with(mode, FenceCodes::RETRIABLE);
    }

    /// Close, answering with `codes` in mode `error`.
    pub fn close_with(&self, mode: FenceMode, codes: FenceCodes) {
        *self.codes.lock().unwrap_or_else(|e| e.into_inner()) = codes;
        let state = match mode {
            FenceMode::Hold => HOLD,
            FenceMode::Error => ERROR,
        };
        self.set_state(state);
        self.closed_metric.set(1);
        self.changes.send_replace(true);
    }

    /// The codes mode `error` answers with now.
    pub fn codes(&self) -> FenceCodes {
        *self.codes.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn open(&self) {
        self.set_state(OPEN);
        self.closed_metric.set(0);
        self.changes.send_replace(false);
    }

    fn set_state(&self, state: u64) {
        let _ = self.word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
            Some((word & COUNT_MASK) | (state << STATE_SHIFT))
        });
    }

    /// Resolve once the fence is open.
    pub async fn wait_open(&self) {
        let mut changes = self.changes.subscribe();
        // `wait_for` checks the current value first, so an open that raced ahead is not missed.
        let _ = changes.wait_for(|closed| !closed).await;
    }

    /// Resolve once every request that passed the fence is answered. Call after closing it:
    /// nothing new can pass then, so the count only falls.
    pub async fn drained(&self) {
        loop {
            // Registered before the check, so a last answer between the two still wakes us.
            let notified = self.drained.notified();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }
}

fn mode(word: u64) -> Option<FenceMode> {
    match word >> STATE_SHIFT {
        OPEN => None,
        HOLD => Some(FenceMode::Hold),
        _ => Some(FenceMode::Error),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn fence() -> Arc<Fence> {
        Arc::new(Fence::new(Gauge::default(), Gauge::default()))
    }

    #[test]
    fn a_closed_fence_lets_nothing_in_and_counts_what_passed() {
        let fence = fence();
        fence.enter().unwrap();
        fence.enter().unwrap();
        fence.close(FenceMode::Error);
        assert_eq!(fence.enter(), Err(FenceMode::Error));
        assert_eq!(fence.in_flight(), 2);
        fence.leave(2);
        fence.open();
        assert_eq!(fence.enter(), Ok(()));
        assert_eq!(fence.in_flight(), 1);
        assert_eq!(fence.in_flight_metric.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_waits_for_the_last_answer_of_what_passed_before_closing() {
        let fence = fence();
        fence.enter().unwrap();
        fence.close(FenceMode::Hold);
        let waiter = tokio::spawn({
            let fence = Arc::clone(&fence);
            async move { fence.drained().await }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiter.is_finished(), "drained with a request unanswered");
        fence.leave(1);
        tokio::time::timeout(Duration::from_secs(1), waiter).await.expect("the last answer wakes the drain").unwrap();
    }

    /// The race the single compare-and-swap closes: requests entering on other threads while the
    /// fence closes. Once the drain has resolved, no request may be counted any more, and none
    /// may pass until the fence opens.
    #[test]
    fn nothing_passes_after_the_drain_saw_zero() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        for _ in 0..200 {
            let fence = fence();
            let drained = Arc::new(AtomicBool::new(false));
            let senders: Vec<_> = (0..3)
                .map(|_| {
                    let (fence, drained) = (Arc::clone(&fence), Arc::clone(&drained));
                    std::thread::spawn(move || {
                        for _ in 0..2_000 {
                            if fence.enter().is_ok() {
                                assert!(!drained.load(Ordering::SeqCst), "a request passed after the drain");
                                fence.leave(1);
                            }
                        }
                    })
                })
                .collect();
            fence.close(FenceMode::Hold);
            runtime.block_on(fence.drained());
            drained.store(true, Ordering::SeqCst);
            assert_eq!(fence.in_flight(), 0);
            senders.into_iter().for_each(|sender| sender.join().unwrap());
        }
    }
}
