//! What the proxy needs to know about a request without decoding it.
//!
//! Every request body starts with `api_key: i16, api_version: i16, correlation_id: i32`, which
//! is enough to match its response later. The one extra fact needed is whether a Produce
//! request expects a response at all: with `acks=0` the broker sends none, so the request must
//! not wait in the in-flight queue. That takes a short walk over the header's client id and
//! tagged fields and the body's transactional id to reach `acks`; nothing else is read and no
//! record data is touched.

use std::time::Instant;

use kafka_protocol::messages::ApiKey;

use super::inflight::{InFlight, ResponseHandling};

/// Bytes every request header has: api key, api version, correlation id, client id length.
pub const MIN_REQUEST_BODY: usize = 10;

/// A request the gateway refuses to forward.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    /// A version of an API whose responses are rewritten that the gateway cannot decode.
    #[error("{api_key:?} v{version} is outside the versions {min}-{max} the gateway can rewrite (the client ignored ApiVersions)")]
    UndecodableVersion { api_key: ApiKey, version: i16, min: i16, max: i16 },
    #[error("request ends inside its {0}")]
    Truncated(&'static str),
    /// A request naming a gateway cluster's internal group: its clients may not touch it.
    #[error("{api_key:?} names `{group}`, a gateway cluster's internal group, which clients may not use")]
    InternalGroup { api_key: ApiKey, group: String },
    /// SaslHandshake v0, whose SASL tokens follow as raw bytes without Kafka framing.
    #[error("{}", super::sasl::LEGACY_HANDSHAKE)]
    LegacySaslHandshake,
    /// A request the gateway had to decode (to answer it itself) but could not.
    #[error("cannot decode the {api_key:?} v{version} request: {cause}")]
    Undecodable { api_key: ApiKey, version: i16, cause: String },
}

/// Read the header of a request body (the frame without its size prefix), read at `read_at`.
pub fn peek_request(body: &[u8], read_at: Instant) -> Result<InFlight, RequestError> {
    let mut cursor = Cursor { buf: body, pos: 0 };
    let raw_key = cursor.i16("header")?;
    let api_version = cursor.i16("header")?;
    let correlation_id = cursor.i32("header")?;
    let api_key = ApiKey::try_from(raw_key).map_err(|_| RequestError::UnknownApiKey(raw_key))?;
    let expects_response = api_key != ApiKey::Produce || produce_acks(&mut cursor, api_key, api_version)? != 0;
    Ok(InFlight {
        correlation_id,
        api_key,
        api_version,
        // Decided by the rewriter's table, which knows what it decodes.
        handling: ResponseHandling::Opaque,
        expects_response,
        sent_at: read_at,
        client: 0,
    })
}

/// The hash of the client id in a request body's header (empty when null). Clients keep one id
/// per connection, so the proxy computes it once per connection, for [`InFlight::client`].
pub fn client_id_hash(body: &[u8]) -> Result<u32, RequestError> {
    let mut cursor = Cursor { buf: body, pos: 8 };
    let len = cursor.i16("client id")?;
    let id = if len > 0 { cursor.take(len as usize, "client id")? } else { &[] };
    Ok(client_hash(id))
}

/// FNV-1a: a stable, cheap hash of a client id, the same on every node and every run.
pub fn client_hash(client_id: &[u8]) -> u32 {
    client_id.iter().fold(0x811c_9dc5u32, |hash, byte| (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193))
}

/// Skip the rest of the request header and the transactional id to read a Produce's `acks`.
fn produce_acks(cursor: &mut Cursor<'_>, api_key: ApiKey, api_version: i16) -> Result<i16, RequestError> {
    let flexible_header = api_key.request_header_version(api_version) >= 2;
    let client_id_len = cursor.i16("client id")?;
    if client_id_len > 0 {
        cursor.skip(client_id_len as usize, "client id")?;
    }
    if flexible_header {
        cursor.skip_tagged_fields()?;
    }
    // Produce v9+ bodies are flexible: the transactional id is a compact nullable string.
    if api_version >= 9 {
        let len_plus_one = cursor.unsigned_varint("transactional id")?;
        if len_plus_one > 1 {
            cursor.skip(len_plus_one as usize - 1, "transactional id")?;
        }
    } else {
        let len = cursor.i16("transactional id")?;
        if len > 0 {
            cursor.skip(len as usize, "transactional id")?;
        }
    }
    cursor.i16("acks")
}

#[derive(Clone, Copy)]
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], RequestError> {
        let end = self.pos.checked_add(n).filter(|&end| end <= self.buf.len()).ok_or(RequestError::Truncated(what))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn skip(&mut self, n: usize, what: &'static str) -> Result<(), RequestError> {
        self.take(n, what).map(|_| ())
    }

    fn i16(&mut self, what: &'static str) -> Result<i16, RequestError> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, what: &'static str) -> Result<i32, RequestError> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn unsigned_varint(&mut self, what: &'static str) -> Result<u32, RequestError> {
        let mut value: u32 = 0;
        for shift in (0..35).step_by(7) {
            let byte = self.take(1, what)?[0];
            value |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RequestError::Truncated(what))
    }

    fn skip_tagged_fields(&mut self) -> Result<(), RequestError> {
        let count = self.unsigned_varint("tagged fields")?;
        for _ in 0..count {
            self.unsigned_varint("tagged fields")?;
            let size = self.unsigned_varint("tagged fields")?;
            self.skip(size as usize, "tagged fields")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::{ProduceRequest, RequestHeader, TransactionalId};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn encode_produce(version: i16, acks: i16, transactional_id: Option<&str>) -> Vec<u8> {
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Produce as i16)
            .with_request_api_version(version)
            .with_correlation_id(42)
            .with_client_id(Some(StrBytes::from_static_str("a-client")));
        let body = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(1000)
            .with_transactional_id(transactional_id.map(|t| TransactionalId(StrBytes::from_string(t.into()))));
        let mut buf = BytesMut::new();
        header.encode(&mut buf, ApiKey::Produce.request_header_version(version)).unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.to_vec()
    }

    #[test]
    fn reads_acks_of_every_produce_version() {
        for version in 3..=13 {
            for (acks, txn) in [(0, None), (1, None), (-1, Some("txn-1")), (0, Some("t"))] {
                let peek = peek_request(&encode_produce(version, acks, txn), Instant::now()).unwrap();
                assert_eq!(peek.correlation_id, 42);
                assert_eq!(peek.expects_response, acks != 0, "v{version} acks={acks}");
            }
        }
    }

    #[test]
    fn refuses_unknown_keys_and_truncation() {
        assert_eq!(
            peek_request(&[0x7f, 0x00, 0, 1, 0, 0, 0, 1, 0, 0], Instant::now()),
            Err(RequestError::UnknownApiKey(0x7f00))
        );
        assert_eq!(peek_request(&[0, 3, 0], Instant::now()), Err(RequestError::Truncated("header")));
        let full = encode_produce(9, 1, Some("txn"));
        assert!(matches!(peek_request(&full[..14], Instant::now()), Err(RequestError::Truncated(_))));
    }
}
