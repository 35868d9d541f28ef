//! One budget for the frame bytes every connection of the gateway buffers.
//!
//! A connection reads into a buffer of one read chunk; that much is free. A frame larger than
//! that (a big Produce, a big Fetch answer) needs a larger buffer, and the room beyond the free
//! chunk is taken from this budget as the buffer grows, following the bytes actually received
//! (see `reserve_for_next` in the pump). When the budget is spent, a connection that needs more
//! waits, reading nothing: backpressure, rather than memory that grows with the number of
//! connections sending large frames at once. The room is given back when the frame has been
//! forwarded and the buffer shrinks to its free size again; a response buffer that held a
//! large answer keeps it a moment longer, for the next answer (`KeptRoom` in the pump).
//!
//! A connection waits at most `frameTimeoutMs` for room (then it is closed), so budget held by
//! unfinished frames is always released in bounded time.

use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Budget is counted in units of this many bytes (a semaphore counts in `u32`).
const UNIT: usize = 4096;

/// The gateway's budget of buffered frame bytes.
pub struct MemoryBudget {
    units: Arc<Semaphore>,
    /// `buffered_frame_bytes`: bytes taken from the budget now.
    in_use: Gauge,
}

impl MemoryBudget {
    pub fn new(bytes: usize, in_use: Gauge) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget { units: Arc::new(Semaphore::new(bytes.div_ceil(UNIT))), in_use })
    }
}

/// What one buffer of one connection holds of the budget.
pub struct Held {
    budget: Arc<MemoryBudget>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Held {
    pub fn new(budget: &Arc<MemoryBudget>) -> Held {
        Held { budget: Arc::clone(budget), permit: None }
    }

    fn units(&self) -> usize {
        self.permit.as_ref().map_or(0, |permit| permit.num_permits())
    }

    /// Hold at least `bytes`, waiting for room if the budget is spent.
    pub async fn grow_to(&mut self, bytes: usize) {
        let wanted = bytes.div_ceil(UNIT);
        let more = wanted.saturating_sub(self.units());
        if more == 0 {
            return;
        }
        let Ok(extra) = Arc::clone(&self.budget.units).acquire_many_owned(more as u32).await else {
            return; // never closed
        };
        self.budget.in_use.inc_by((more * UNIT) as i64);
        match &mut self.permit {
            Some(permit) => permit.merge(extra),
            None => self.permit = Some(extra),
        }
    }

    /// Whether any room is held.
    pub fn holds_any(&self) -> bool {
        self.permit.is_some()
    }

    /// Give everything held back.
    pub fn release(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.budget.in_use.dec_by((permit.num_permits() * UNIT) as i64);
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_spent_budget_makes_the_next_grower_wait_until_room_is_given_back() {
        let budget = MemoryBudget::new(10 * UNIT, Gauge::default());
        let mut first = Held::new(&budget);
        first.grow_to(8 * UNIT).await;
        first.grow_to(6 * UNIT).await; // already held: no change
        assert_eq!(budget.in_use.get(), (8 * UNIT) as i64);
        let mut second = Held::new(&budget);
        let waiting = tokio::time::timeout(Duration::from_secs(60), second.grow_to(4 * UNIT)).await;
        assert!(waiting.is_err(), "grew past the budget");
        first.release();
        second.grow_to(4 * UNIT).await;
        assert_eq!(budget.in_use.get(), (4 * UNIT) as i64);
        drop(second);
        assert_eq!(budget.in_use.get(), 0);
    }
}
