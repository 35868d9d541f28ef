//! Free loopback ports for brokers and gateways, so tests can run side by side.
//!
//! A port found free can be taken by someone else before it is used; bases are picked at random
//! below the Linux ephemeral range (32768+) so outgoing connections never grab them meanwhile.
//! A test often takes several blocks before binding any of them (a gateway's routes), so the
//! blocks handed out in this process are remembered and never handed out again, in whole or in
//! part: the kernel alone would call an unbound block free twice.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, TcpListener};
use std::ops::Range;
use std::sync::{Mutex, PoisonError};

const RANGE_START: u16 = 20000;
const RANGE_END: u16 = 32768;
const ATTEMPTS: usize = 200;

/// The blocks [`free_port_block`] has handed out in this process.
static HANDED_OUT: Mutex<Vec<Range<u16>>> = Mutex::new(Vec::new());

/// A port the kernel considers free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).expect("binding 127.0.0.1:0").port()
}

/// A base port such that `base..base + n` are all bindable on 127.0.0.1 right now.
///
/// Panics if no such block is found after many random tries.
pub fn free_port_block(n: u16) -> u16 {
    assert!(n > 0 && n < RANGE_END - RANGE_START, "bad port block size {n}");
    let span = u64::from(RANGE_END - RANGE_START - n);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let base = (0..ATTEMPTS)
        .map(|_| RANGE_START + (random_u64() % span) as u16)
        .find(|&base| {
            let block = base..base + n;
            !handed_out.iter().any(|taken| taken.start < block.end && block.start < taken.end) && block_is_free(base, n)
        })
        .unwrap_or_else(|| panic!("no block of {n} free ports in {RANGE_START}..{RANGE_END}"));
    handed_out.push(base..base + n);
    base
}

fn block_is_free(base: u16, n: u16) -> bool {
    // Hold every listener until all are bound, so the block is checked as a whole.
    (base..base + n).map(|port| TcpListener::bind((Ipv4Addr::LOCALHOST, port))).collect::<Result<Vec<_>, _>>().is_ok()
}

fn random_u64() -> u64 {
    // RandomState is seeded per instance from OS randomness: enough for picking ports.
    RandomState::new().build_hasher().finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks found free but not yet bound never overlap: a test binds its routes' ports only
    /// once it has picked them all.
    #[test]
    fn blocks_handed_out_unbound_never_overlap() {
        let blocks: Vec<Range<u16>> = (0..2000).map(|_| free_port_block(3)).map(|base| base..base + 3).collect();
        for (i, a) in blocks.iter().enumerate() {
            for b in &blocks[i + 1..] {
                assert!(a.end <= b.start || b.end <= a.start, "{a:?} overlaps {b:?}");
            }
        }
    }
}
