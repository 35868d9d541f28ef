//! Polling with a deadline: the only way this crate waits for anything to become ready.
//!
//! Fixed sleeps are either too short on a loaded 2-core CI machine or waste time everywhere else.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

const FIRST_INTERVAL: Duration = Duration::from_millis(20);
const MAX_INTERVAL: Duration = Duration::from_millis(250);

/// Calls `check` until it returns `Some`, backing off from 20 ms to 250 ms between calls.
/// Fails once `timeout` has elapsed (`check` always runs at least once).
pub fn poll_until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Result<T> {
    try_poll_until(timeout, || Ok(check()))
}

/// Like [`poll_until`], but an `Err` from `check` ends the wait at once (for example when the
/// process being waited for has died).
pub fn try_poll_until<T>(timeout: Duration, mut check: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut interval = FIRST_INTERVAL;
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        let now = Instant::now();
        if now >= deadline {
            bail!("still not ready after {timeout:?}");
        }
        std::thread::sleep(interval.min(deadline - now));
        interval = (interval * 2).min(MAX_INTERVAL);
    }
}
