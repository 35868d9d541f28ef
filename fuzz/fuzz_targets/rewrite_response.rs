//! Every response rewrite: an arbitrary body, as the answer to a request of each (API, version)
//! the rule table decodes (ApiVersions clamp, Metadata, DescribeCluster, FindCoordinator,
//! Produce/Fetch leader hints, ShareFetch/ShareAcknowledge, DescribeQuorum, DescribeConfigs),
//! through `rewrite_response` for one of two routes, decoded from a borrowed slice or from
//! shared `Bytes` as the proxy does. Property: no panic; a rewritten frame's size prefix is its
//! length, and it reads back as the same API and version.
//!
//! Input: api key (i16), version (i16), flags (u8), then the response body (the frame without
//! its size prefix). A pair the gateway does not decode is mapped onto one it does.
#![no_main]

use std::time::Instant;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchyard::protocol::{InFlight, SIZE_PREFIX};
use switchyard::rewrite::{rewrite_response, ResponseBody};
use switchyard_fuzz::{fixture, pick_decoded, REWRITE_PREFIX};

// The routes (and the upstream's librdkafka client) are made before the first input, so their
// one-time allocations are not charged to an input by the leak check.
fuzz_target!(init: { fixture(); }, |data: &[u8]| {
    let Some(prefix) = data.get(..REWRITE_PREFIX) else { return };
    let body = &data[REWRITE_PREFIX..];
    let (api_key, api_version, handling) =
        pick_decoded(i16::from_be_bytes([prefix[0], prefix[1]]), i16::from_be_bytes([prefix[2], prefix[3]]));
    let flags = prefix[4];
    let fixture = fixture();
    let route = &fixture.routes[usize::from(flags & 1)];
    let request = InFlight {
        correlation_id: 7,
        api_key,
        api_version,
        handling,
        expects_response: true,
        sent_at: Instant::now(),
        client: u32::from(flags >> 2),
    };
    // The proxy decodes answers with records from shared `Bytes`, the others from its buffer.
    let out = if flags & 2 != 0 {
        rewrite_response(route, &fixture.upstream, &request, ResponseBody::Shared(Bytes::copy_from_slice(body)))
    } else {
        rewrite_response(route, &fixture.upstream, &request, ResponseBody::Slice(body))
    };
    if let Ok(Some(frame)) = out {
        let size = i32::from_be_bytes(frame[..SIZE_PREFIX].try_into().unwrap());
        assert_eq!(size as usize, frame.len() - SIZE_PREFIX, "the size prefix is the frame's length");
        // What the gateway sends must read back as the same answer, or the client could not.
        let again = rewrite_response(route, &fixture.upstream, &request, ResponseBody::Slice(&frame[SIZE_PREFIX..]));
        assert!(again.is_ok(), "{api_key:?} v{api_version}: the rewritten answer does not decode: {again:?}");
    }
});
