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
//!
//! The count is kept in two parts, by what a request may change ([`Effect`]): a switchover needs
//! every request that may write to be answered before it measures replication, while a Fetch
//! only reads. A consumer's Fetch is often parked by the broker for up to its `max_wait_ms`
//! (500 ms by default) for data that, once producers are fenced, never comes; waiting for it
//! would add that to every client's pause. It finishes on its own while replication is
//! measured, and its connection waits for its answer before it moves at the cut.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use kafka_protocol::messages::ApiKey;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{watch, Notify};

use crate::config::FenceMode;
use crate::protocol::fence_answer::FenceCodes;

/// The state sits in the top byte of the word, the counts of requests in the rest: reads from
/// bit 28, the others below.
const STATE_SHIFT: u32 = 56;
const COUNT_MASK: u64 = (1 << STATE_SHIFT) - 1;
const READS_SHIFT: u32 = 28;
const WRITES_MASK: u64 = (1 << READS_SHIFT) - 1;
const OPEN: u64 = 0;
const HOLD: u64 = 1;
const ERROR: u64 = 2;

/// What a request passing the fence may change on the cluster (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    MayWrite,
    ReadsOnly,
}

impl Effect {
    /// The effect of a request with API key `api_key` (as the request header has it).
    pub fn of(api_key: i16) -> Effect {
        if api_key == ApiKey::Fetch as i16 {
            Effect::ReadsOnly
        } else {
            Effect::MayWrite
        }
    }
}

/// Requests counted by the fence, packed as the fence counts them, so that a run of requests
/// leaves in one step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Passed(u64);

impl Passed {
    pub const fn one(effect: Effect) -> Passed {
        match effect {
            Effect::MayWrite => Passed(1),
            Effect::ReadsOnly => Passed(1 << READS_SHIFT),
        }
    }

    /// How many requests, of either effect.
    pub fn requests(self) -> u64 {
        (self.0 & WRITES_MASK) + (self.0 >> READS_SHIFT)
    }
}

impl std::ops::AddAssign for Passed {
    fn add_assign(&mut self, other: Passed) {
        self.0 += other.0;
    }
}

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
    pub fn enter(&self, effect: Effect) -> Result<Passed, FenceMode> {
        let one = Passed::one(effect);
        let passed = self.word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| match mode(word) {
            None => Some(word + one.0),
            Some(_) => None,
        });
        match passed {
            Ok(_) => {
                self.in_flight_metric.inc();
                Ok(one)
            }
            Err(word) => Err(mode(word).expect("only a closed fence refuses")),
        }
    }

    /// `passed` requests are answered (or will never be).
    pub fn leave(&self, passed: Passed) {
        if passed == Passed::default() {
            return;
        }
        let before = self.word.fetch_sub(passed.0, Ordering::AcqRel);
        debug_assert!(before & COUNT_MASK >= passed.0, "more requests left than entered");
        self.in_flight_metric.dec_by(passed.requests() as i64);
        let after = before - passed.0;
        if mode(before).is_some() && (after & WRITES_MASK == 0 || after & COUNT_MASK == 0) {
            self.drained.notify_waiters();
        }
    }

    /// Requests that passed the fence and are not answered yet.
    pub fn in_flight(&self) -> u64 {
        Passed(self.word.load(Ordering::Acquire) & COUNT_MASK).requests()
    }

    /// Requests that passed the fence, may write, and are not answered yet.
    pub fn writes_in_flight(&self) -> u64 {
        self.word.load(Ordering::Acquire) & WRITES_MASK
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
        self.until(|fence| fence.in_flight() == 0).await;
    }

    /// Resolve once every request that passed the fence and may write is answered, as
    /// [`Self::drained`] for those alone.
    pub async fn writes_drained(&self) {
        self.until(|fence| fence.writes_in_flight() == 0).await;
    }

    async fn until(&self, done: impl Fn(&Fence) -> bool) {
        loop {
            // Registered before the check, so a last answer between the two still wakes us.
            let notified = self.drained.notified();
            if done(self) {
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
        let mut passed = fence.enter(Effect::MayWrite).unwrap();
        passed += fence.enter(Effect::ReadsOnly).unwrap();
        fence.close(FenceMode::Error);
        assert_eq!(fence.enter(Effect::MayWrite), Err(FenceMode::Error));
        assert_eq!((fence.in_flight(), fence.writes_in_flight()), (2, 1));
        fence.leave(passed);
        fence.open();
        assert_eq!(fence.enter(Effect::MayWrite), Ok(Passed::one(Effect::MayWrite)));
        assert_eq!(fence.in_flight(), 1);
        assert_eq!(fence.in_flight_metric.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_waits_for_the_last_answer_of_what_passed_before_closing() {
        let fence = fence();
        let passed = fence.enter(Effect::MayWrite).unwrap();
        fence.close(FenceMode::Hold);
        let waiter = tokio::spawn({
            let fence = Arc::clone(&fence);
            async move { fence.drained().await }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiter.is_finished(), "drained with a request unanswered");
        fence.leave(passed);
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
                            if let Ok(passed) = fence.enter(Effect::MayWrite) {
                                assert!(!drained.load(Ordering::SeqCst), "a request passed after the drain");
                                fence.leave(passed);
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

    #[tokio::test(start_paused = true)]
    async fn a_parked_fetch_holds_up_the_full_drain_only() {
        let fence = fence();
        let fetch = fence.enter(Effect::of(ApiKey::Fetch as i16)).unwrap();
        let produce = fence.enter(Effect::of(ApiKey::Produce as i16)).unwrap();
        fence.close(FenceMode::Hold);
        let (writes, all) = {
            let (a, b) = (Arc::clone(&fence), Arc::clone(&fence));
            (tokio::spawn(async move { a.writes_drained().await }), tokio::spawn(async move { b.drained().await }))
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!writes.is_finished() && !all.is_finished(), "a Produce is unanswered");
        fence.leave(produce);
        tokio::time::timeout(Duration::from_secs(1), writes).await.expect("the writes are answered").unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!all.is_finished(), "the Fetch is unanswered");
        fence.leave(fetch);
        tokio::time::timeout(Duration::from_secs(1), all).await.expect("the Fetch is answered").unwrap();
        assert_eq!(fence.in_flight_metric.get(), 0);
    }
}
