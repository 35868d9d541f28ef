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
pub mod sasl_login;
pub mod scram;
pub mod transaction;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
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
    encode_frame(header, api_key.response_header_version(version), message, version)
}

/// Encode a request frame, size prefix included, for `api_key` at `version` (the gateway's own
/// requests: a swap route's login to the broker).
pub fn encode_request(
    header: &RequestHeader,
    message: &impl Encodable,
    api_key: ApiKey,
    version: i16,
) -> anyhow::Result<Bytes> {
    encode_frame(header, api_key.request_header_version(version), message, version)
}

fn encode_frame(
    header: &impl Encodable,
    header_version: i16,
    message: &impl Encodable,
    version: i16,
) -> anyhow::Result<Bytes> {
    let size = header.compute_size(header_version)? + message.compute_size(version)?;
    let mut out = BytesMut::with_capacity(SIZE_PREFIX + size);
    out.put_i32(i32::try_from(size)?);
    header.encode(&mut out, header_version)?;
    message.encode(&mut out, version)?;
    Ok(out.freeze())
}

/// A request of `api_key` at `version` from client `probe`, without its size prefix: what the
/// request decoders of this module's tests read.
#[cfg(test)]
pub(crate) fn request_body(api_key: ApiKey, version: i16, correlation_id: i32, message: &impl Encodable) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(kafka_protocol::protocol::StrBytes::from_static_str("probe")));
    encode_request(&header, message, api_key, version).expect("a test request encodes")[SIZE_PREFIX..].to_vec()
}
