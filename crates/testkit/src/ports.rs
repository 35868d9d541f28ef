//! Free loopback ports for brokers and gateways, so tests can run side by side.
//!
//! A port found free can be taken by someone else before it is used; bases are picked at random
//! below the Linux ephemeral range (32768+) so outgoing connections never grab them meanwhile.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, TcpListener};

const RANGE_START: u16 = 20000;
const RANGE_END: u16 = 32768;
const ATTEMPTS: usize = 200;

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
    (0..ATTEMPTS)
        .map(|_| RANGE_START + (random_u64() % span) as u16)
        .find(|&base| block_is_free(base, n))
        .unwrap_or_else(|| panic!("no block of {n} free ports in {RANGE_START}..{RANGE_END}"))
}

fn block_is_free(base: u16, n: u16) -> bool {
    // Hold every listener until all are bound, so the block is checked as a whole.
    (base..base + n).map(|port| TcpListener::bind((Ipv4Addr::LOCALHOST, port))).collect::<Result<Vec<_>, _>>().is_ok()
}

fn random_u64() -> u64 {
    // RandomState is seeded per instance from OS randomness: enough for picking ports.
    RandomState::new().build_hasher().finish()
}
