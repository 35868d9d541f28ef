//! Keeping log volume bounded when the same thing happens many times a second.
//!
//! A flood of bad connections, or a broker the port map misses answering every Metadata
//! request, would otherwise write one line each: gigabytes of the same warning, and the one line
//! that matters lost in them. Each call site that can repeat keeps a [`RateLimit`] (a `static`),
//! logs only while it allows, and reports in the next line it logs how many it held back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// At most `per_second` events a second pass; the rest are counted.
pub struct RateLimit {
    per_second: u64,
    /// The current second in the top 32 bits, events seen in it in the low 32.
    window: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimit {
    pub const fn per_second(per_second: u64) -> RateLimit {
        RateLimit { per_second, window: AtomicU64::new(0), suppressed: AtomicU64::new(0) }
    }

    /// Whether to log this event; if so, how many were held back since the last one logged.
    pub fn allow(&self) -> Option<u64> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) & 0xffff_ffff;
        let updated = self.window.fetch_update(Ordering::AcqRel, Ordering::Acquire, |window| {
            let (second, count) = (window >> 32, window & 0xffff_ffff);
            if second != now {
                Some(now << 32 | 1)
            } else if count < self.per_second {
                Some(window + 1)
            } else {
                None
            }
        });
        match updated {
            Ok(_) => Some(self.suppressed.swap(0, Ordering::AcqRel)),
            Err(_) => {
                self.suppressed.fetch_add(1, Ordering::AcqRel);
                None
            }
        }
    }

    /// Events held back and not yet reported.
    pub fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Acquire)
    }
}

/// One [`RateLimit`] per key (a close reason, say), so a flood of one kind of event never
/// hides the first lines of another.
pub struct KeyedRateLimit {
    per_second: u64,
    /// Few keys (a fixed set of labels): a list is quicker than a map.
    limits: Mutex<Vec<(&'static str, RateLimit)>>,
}

impl KeyedRateLimit {
    pub const fn per_second(per_second: u64) -> KeyedRateLimit {
        KeyedRateLimit { per_second, limits: Mutex::new(Vec::new()) }
    }

    /// [`RateLimit::allow`] for `key`.
    pub fn allow(&self, key: &'static str) -> Option<u64> {
        let mut limits = self.limits.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, limit)) = limits.iter().find(|(k, _)| *k == key) {
            return limit.allow();
        }
        let limit = RateLimit::per_second(self.per_second);
        let allowed = limit.allow();
        limits.push((key, limit));
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_up_to_the_limit_and_the_next_logged_event_counts_the_rest() {
        let limit = RateLimit::per_second(3);
        let passed = (0..100).filter(|_| limit.allow().is_some()).count();
        // A second boundary inside the burst lets at most one more window through.
        assert!((3..=6).contains(&passed), "{passed} of a burst of 100 passed");
        assert_eq!(limit.suppressed(), 100 - passed as u64);
    }

    #[test]
    fn a_flood_of_one_key_leaves_the_others_alone() {
        let limits = KeyedRateLimit::per_second(2);
        let passed = (0..100).filter(|_| limits.allow("client_error").is_some()).count();
        assert!(passed < 100);
        assert_eq!(limits.allow("malformed_response_frame"), Some(0));
    }
}
