//! The Kafka wire protocol as far as a proxy needs it: framing, request headers, and the
//! bookkeeping that pairs each response with its request. Message bodies are left to the
//! `kafka-protocol` crate: decoded only in [`crate::rewrite`], and built only for the answers a
//! fenced route gives in place of a broker.

pub mod fence_answer;
pub mod frame;
pub mod inflight;
pub mod internal;
pub mod request;
pub mod sasl;
pub mod scram;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::Encodable;

pub use frame::{frame_at, FrameError, FrameLimits, FrameStatus, SIZE_PREFIX};
pub use inflight::{InFlight, ResponseHandling};
pub use request::{client_hash, client_id_hash, peek_request, RequestError, MIN_REQUEST_BODY};
pub use sasl::SaslSummary;

/// Bytes every response body starts with: the correlation id.
pub const MIN_RESPONSE_BODY: usize = 4;

/// The correlation id at the start of a response body.
pub fn response_correlation_id(body: &[u8]) -> i32 {
    i32::from_be_bytes([body[0], body[1], body[2], body[3]])
}

/// Encode a response frame, size prefix included, for `api_key` at `version`.
pub fn encode_response(
    header: &ResponseHeader,
    message: &impl Encodable,
    api_key: ApiKey,
    version: i16,
) -> anyhow::Result<Bytes> {
    let header_version = api_key.response_header_version(version);
    let size = header.compute_size(header_version)? + message.compute_size(version)?;
    let mut out = BytesMut::with_capacity(SIZE_PREFIX + size);
    out.put_i32(i32::try_from(size)?);
    header.encode(&mut out, header_version)?;
    message.encode(&mut out, version)?;
    Ok(out.freeze())
}
