//! The Kafka wire protocol as far as a proxy needs it: framing, request headers, and the
//! bookkeeping that pairs each response with its request. Message bodies are left to the
//! `kafka-protocol` crate, and only in [`crate::rewrite`].

pub mod frame;
pub mod inflight;
pub mod request;

pub use frame::{frame_at, FrameError, FrameLimits, FrameStatus, SIZE_PREFIX};
pub use inflight::{InFlight, ResponseHandling};
pub use request::{peek_request, RequestError, MIN_REQUEST_BODY};

/// Bytes every response body starts with: the correlation id.
pub const MIN_RESPONSE_BODY: usize = 4;

/// The correlation id at the start of a response body.
pub fn response_correlation_id(body: &[u8]) -> i32 {
    i32::from_be_bytes([body[0], body[1], body[2], body[3]])
}
