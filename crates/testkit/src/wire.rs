//! A minimal blocking Kafka protocol client.
//!
//! Readiness checks need one Metadata round trip without a JVM, and protocol tests need to send
//! exact requests (any version) or raw, even malformed, frames to a broker or to the gateway and
//! see exactly what comes back. Framing is Kafka's: a big-endian i32 length, then the message.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

/// Responses larger than this are treated as garbage rather than allocated.
const MAX_FRAME: usize = 256 * 1024 * 1024;
const CLIENT_ID: &str = "switchyard-testkit";

/// One blocking connection; requests are sent one at a time.
#[derive(Debug)]
pub struct KafkaWire {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl KafkaWire {
    /// Connects with `timeout`, which also bounds every later read and write.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Self { stream, next_correlation_id: 1 })
    }

    /// The underlying socket (for timeouts, half-closes, peer address).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends `req` as `version` and decodes the matching response.
    pub fn send<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response> {
        let api_key = ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown api key {}", R::KEY))?;
        ensure!(
            (R::VERSIONS.min..=R::VERSIONS.max).contains(&version),
            "{api_key:?} v{version} is outside the supported {}",
            R::VERSIONS
        );
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);

        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut body = BytesMut::new();
        header.encode(&mut body, api_key.request_header_version(version))?;
        req.encode(&mut body, version)?;
        self.send_raw(&body)?;

        let mut frame =
            self.read_raw_frame()?.with_context(|| format!("connection closed before the {api_key:?} response"))?;
        let header = ResponseHeader::decode(&mut frame, api_key.response_header_version(version))?;
        ensure!(
            header.correlation_id == correlation_id,
            "{api_key:?} response has correlation id {}, expected {correlation_id}",
            header.correlation_id
        );
        R::Response::decode(&mut frame, version).with_context(|| format!("decoding {api_key:?} v{version} response"))
    }

    /// Writes `frame_body` behind a length prefix, whatever it contains.
    pub fn send_raw(&mut self, frame_body: &[u8]) -> Result<()> {
        let len = i32::try_from(frame_body.len()).context("frame too large")?;
        let mut frame = BytesMut::with_capacity(4 + frame_body.len());
        frame.put_i32(len);
        frame.put_slice(frame_body);
        self.stream.write_all(&frame).context("writing frame")
    }

    /// Reads one length-prefixed frame and returns its body; `None` if the peer closed the
    /// connection cleanly before the first byte of a frame.
    pub fn read_raw_frame(&mut self) -> Result<Option<Bytes>> {
        let mut len = [0u8; 4];
        match self.stream.read(&mut len[..1]) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(None),
            Err(e) => return Err(e).context("reading frame length"),
        }
        self.stream.read_exact(&mut len[1..]).context("reading frame length")?;
        let len = i32::from_be_bytes(len);
        let len = usize::try_from(len).map_err(|_| anyhow!("negative frame length {len}"))?;
        if len > MAX_FRAME {
            bail!("frame length {len} exceeds {MAX_FRAME}");
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).context("reading frame body")?;
        Ok(Some(Bytes::from(body)))
    }
}

/// One Metadata v12 round trip for all topics.
pub fn fetch_metadata(addr: SocketAddr, timeout: Duration) -> Result<MetadataResponse> {
    let request = MetadataRequest::default().with_topics(None).with_allow_auto_topic_creation(false);
    KafkaWire::connect(addr, timeout)?.send(&request, 12)
}

/// Makes the cluster at `addr` create its transaction state log and elect a transaction
/// coordinator, as the first transactional client of a cluster does: a FindCoordinator of type
/// TRANSACTION, asked until it is answered without an error (for up to `timeout`).
pub fn start_transaction_coordinator(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let mut wire = KafkaWire::connect(addr, timeout)?;
    let key_type_transaction = 1;
    let request = FindCoordinatorRequest::default()
        .with_key_type(key_type_transaction)
        .with_coordinator_keys(vec![StrBytes::from_static_str("switchyard-testkit")]);
    crate::poll::try_poll_until(timeout, || {
        let response = wire.send(&request, 4)?;
        Ok((response.coordinators.first().map(|c| c.error_code) == Some(0)).then_some(()))
    })
    .context("the transaction coordinator never came up")
}
