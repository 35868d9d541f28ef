//! The request direction's per-read work on arbitrary client bytes: find each frame in place
//! (`frame_at`), peek its header (`peek_request`, incl. a Produce's `acks`), hash its client id,
//! and classify it by the rewrite table (`classify`), answering an unreadable ApiVersions as the
//! gateway does. The same bytes fed in reads of sizes taken from the input must be framed the
//! same way. Property: no panic, and both framings agree.
#![no_main]

use std::time::Instant;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchyard::protocol::{
    client_id_hash, frame_at, peek_request, FrameError, FrameLimits, FrameStatus, MIN_REQUEST_BODY, SIZE_PREFIX,
};
use switchyard::rewrite::{classify, unsupported_version_answer, Classified};

/// Small enough that the fuzzer reaches "too large" as easily as "complete".
const LIMITS: FrameLimits = FrameLimits { min_body: MIN_REQUEST_BODY, max_body: 64 * 1024 };

/// What one frame yields.
#[derive(Debug, PartialEq)]
enum Seen {
    Frame { len: usize, peek: String },
    Refused(FrameError),
}

fn examine(body: &[u8], read_at: Instant) -> String {
    let peek = peek_request(body, read_at);
    let _ = client_id_hash(body);
    match &peek {
        Ok(request) => {
            if let Classified::UnsupportedApiVersions = classify(request.api_key, request.api_version) {
                let answer = unsupported_version_answer(request.correlation_id);
                let size = i32::from_be_bytes(answer[..SIZE_PREFIX].try_into().unwrap());
                assert_eq!(size as usize, answer.len() - SIZE_PREFIX, "the answer's size prefix is its length");
            }
            format!(
                "{:?} v{} #{} {}",
                request.api_key, request.api_version, request.correlation_id, request.expects_response
            )
        }
        Err(e) => format!("{e}"),
    }
}

/// Every frame at the front of `buf`, consumed; stops at a partial frame or a refused one.
fn drain(buf: &mut BytesMut, seen: &mut Vec<Seen>, read_at: Instant) -> bool {
    loop {
        match frame_at(buf, LIMITS) {
            Ok(FrameStatus::Complete(len)) => {
                assert!(len >= SIZE_PREFIX + MIN_REQUEST_BODY && len <= buf.len());
                let frame = buf.split_to(len);
                seen.push(Seen::Frame { len, peek: examine(&frame[SIZE_PREFIX..], read_at) });
            }
            Ok(FrameStatus::Incomplete { total }) => {
                if let Some(total) = total {
                    assert!(total > buf.len() && total <= SIZE_PREFIX + LIMITS.max_body);
                } else {
                    assert!(buf.len() < SIZE_PREFIX);
                }
                return true;
            }
            Err(e) => {
                seen.push(Seen::Refused(e));
                return false;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let read_at = Instant::now();
    // The first byte sizes the reads of the incremental pass; the rest is the client's stream.
    let Some((&step, stream)) = data.split_first() else { return };
    let step = usize::from(step % 64) + 1;

    let mut whole = BytesMut::from(stream);
    let mut seen_whole = Vec::new();
    drain(&mut whole, &mut seen_whole, read_at);

    let mut buf = BytesMut::new();
    let mut seen_reads = Vec::new();
    for (i, read) in stream.chunks(step).enumerate() {
        // Vary the read sizes a little: every third read is split once more.
        let parts: Vec<&[u8]> = if i % 3 == 2 && read.len() > 1 {
            vec![&read[..read.len() / 2], &read[read.len() / 2..]]
        } else {
            vec![read]
        };
        let mut open = true;
        for part in parts {
            buf.extend_from_slice(part);
            open = drain(&mut buf, &mut seen_reads, read_at);
            if !open {
                break;
            }
        }
        if !open {
            break;
        }
    }
    assert_eq!(seen_whole, seen_reads, "framing must not depend on how the bytes arrive");
    if !matches!(seen_whole.last(), Some(Seen::Refused(_))) {
        assert_eq!(whole.len(), buf.len(), "the same partial frame is left over");
    }
});
