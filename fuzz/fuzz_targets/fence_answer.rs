//! The answers a fence in mode `error` gives in place of a broker, over arbitrary request
//! frames: found and peeked as the proxy does, then, for the requests the fence answers,
//! decoded and answered (`fence_answer`). Property: no panic; an answer is one frame whose size
//! prefix is its length and whose correlation id is the request's.
#![no_main]

use std::time::Instant;

use bytes::{BufMut, BytesMut};
use libfuzzer_sys::fuzz_target;
use switchyard::protocol::fence_answer::{answerable, fence_answer, FenceCodes};
use switchyard::protocol::{peek_request, SIZE_PREFIX};

fuzz_target!(|body: &[u8]| {
    // The frame as the proxy hands it over: one whole frame, size prefix included.
    let Ok(size) = i32::try_from(body.len()) else { return };
    let mut frame = BytesMut::with_capacity(SIZE_PREFIX + body.len());
    frame.put_i32(size);
    frame.extend_from_slice(body);
    let Ok(request) = peek_request(body, Instant::now()) else { return };
    if !answerable(&request) {
        return;
    }
    if let Ok(answer) = fence_answer(&request, frame.freeze(), FenceCodes::RETRIABLE) {
        let size = i32::from_be_bytes(answer[..SIZE_PREFIX].try_into().unwrap());
        assert_eq!(size as usize, answer.len() - SIZE_PREFIX, "the size prefix is the frame's length");
        let correlation_id = i32::from_be_bytes(answer[SIZE_PREFIX..SIZE_PREFIX + 4].try_into().unwrap());
        assert_eq!(correlation_id, request.correlation_id);
    }
});
