//! HAProxy's PROXY protocol: the header a load balancer puts before a client's first byte.
//!
//! With the feature on, every client connection must start with a v1 (text) or v2 (binary)
//! header, parsed by the `ppp` crate; it carries the real client and destination addresses,
//! which then appear in audit events and error messages. Headers are only accepted from
//! trusted networks when any are configured, so clients cannot forge their address. Bytes that
//! follow the header in the same read are the start of the Kafka stream and are handed on.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use bytes::{Buf, BytesMut};
use ppp::{v1, v2, HeaderResult, PartialResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::config::ProxyProtocolSettings;

/// A v2 header is 16 bytes plus its addresses and TLVs; anything this long is not a header
/// worth waiting for.
const MAX_HEADER: usize = 4096;
/// The v2 signature, and the v1 prefix.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8] = b"PROXY ";

/// The addresses a PROXY header reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxiedAddresses {
    pub source: SocketAddr,
    pub destination: SocketAddr,
}

impl fmt::Display for ProxiedAddresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(original source: {}, original destination: {})", self.source, self.destination)
    }
}

/// Why a connection's PROXY header was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("PROXY protocol: {0} is not in proxyProtocol.trustedNetworks, refusing its connection")]
    Untrusted(IpAddr),
    #[error("PROXY protocol: no complete header within proxyProtocol.headerTimeoutMs")]
    Timeout,
    #[error("PROXY protocol: connection closed after {received} bytes, before a complete header")]
    Closed { received: usize },
    #[error("PROXY protocol: {0}")]
    Io(std::io::Error),
    #[error("PROXY protocol: invalid header ({0}); is the load balancer sending one?")]
    Invalid(String),
}

/// Read the PROXY header at the start of `stream`. Returns the addresses it reports (`None` for
/// a LOCAL / UNKNOWN header, as health checks send) and any bytes read past it.
pub async fn read_header(
    stream: &mut TcpStream,
    peer: SocketAddr,
    settings: &ProxyProtocolSettings,
) -> Result<(Option<ProxiedAddresses>, BytesMut), ProxyHeaderError> {
    if !settings.trusted_networks.is_empty() && !settings.trusted_networks.iter().any(|n| n.contains(&peer.ip())) {
        return Err(ProxyHeaderError::Untrusted(peer.ip()));
    }
    let mut buf = BytesMut::with_capacity(256);
    tokio::time::timeout(settings.header_timeout, async {
        loop {
            if stream.read_buf(&mut buf).await.map_err(ProxyHeaderError::Io)? == 0 {
                return Err(ProxyHeaderError::Closed { received: buf.len() });
            }
            if let Some((addresses, len)) = parse(&buf)? {
                buf.advance(len);
                return Ok((addresses, buf));
            }
            if buf.len() >= MAX_HEADER {
                return Err(ProxyHeaderError::Invalid(format!("no header end within {MAX_HEADER} bytes")));
            }
        }
    })
    .await
    .map_err(|_| ProxyHeaderError::Timeout)?
}

/// `Ok(None)` while more bytes are needed; otherwise the addresses and the header's length.
/// Pure (no I/O), so it is also fuzzed on its own (`fuzz/`, as `switchyard::proxy::parse_header`).
pub fn parse(buf: &[u8]) -> Result<Option<(Option<ProxiedAddresses>, usize)>, ProxyHeaderError> {
    let result = HeaderResult::parse(buf);
    if result.is_incomplete() {
        return Ok(None);
    }
    match result {
        // The specification ends a v1 header with CRLF. The parser also takes a bare LF when it
        // ends the buffer, so the same bytes would be accepted or refused by how TCP split them.
        HeaderResult::V1(Ok(header)) if !header.header.ends_with("\r\n") => {
            Err(ProxyHeaderError::Invalid("a v1 header must end in CRLF".to_string()))
        }
        HeaderResult::V1(Ok(header)) => Ok(Some((v1_addresses(&header.addresses), header.header.len()))),
        // LOCAL (a load balancer's own health check) carries no client: whatever address
        // block follows is ignored, as the specification says.
        HeaderResult::V2(Ok(header)) if header.command == v2::Command::Local => Ok(Some((None, header.len()))),
        HeaderResult::V2(Ok(header)) => Ok(Some((v2_addresses(&header.addresses), header.len()))),
        HeaderResult::V1(Err(e)) => Err(ProxyHeaderError::Invalid(format!("{e:?}"))),
        HeaderResult::V2(Err(e)) => Err(ProxyHeaderError::Invalid(format!("{e:?}"))),
    }
}

fn v1_addresses(addresses: &v1::Addresses) -> Option<ProxiedAddresses> {
    match addresses {
        v1::Addresses::Tcp4(a) => {
            Some(pair(a.source_address.into(), a.source_port, a.destination_address.into(), a.destination_port))
        }
        v1::Addresses::Tcp6(a) => {
            Some(pair(a.source_address.into(), a.source_port, a.destination_address.into(), a.destination_port))
        }
        v1::Addresses::Unknown => None,
    }
}

fn v2_addresses(addresses: &v2::Addresses) -> Option<ProxiedAddresses> {
    match addresses {
        v2::Addresses::IPv4(a) => {
            Some(pair(a.source_address.into(), a.source_port, a.destination_address.into(), a.destination_port))
        }
        v2::Addresses::IPv6(a) => {
            Some(pair(a.source_address.into(), a.source_port, a.destination_address.into(), a.destination_port))
        }
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
    }
}

fn pair(source: IpAddr, source_port: u16, destination: IpAddr, destination_port: u16) -> ProxiedAddresses {
    ProxiedAddresses {
        source: SocketAddr::new(source, source_port),
        destination: SocketAddr::new(destination, destination_port),
    }
}

/// Whether bytes where a Kafka frame should be look like a PROXY header instead.
pub fn looks_like_header(buf: &[u8]) -> bool {
    buf.starts_with(V1_PREFIX) || buf.starts_with(V2_SIGNATURE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_and_keeps_what_follows() {
        let input = b"PROXY TCP4 10.1.2.3 127.0.0.1 51000 9092\r\n\x00\x00\x00\x0a";
        let (addresses, len) = parse(input).unwrap().unwrap();
        let addresses = addresses.unwrap();
        assert_eq!(addresses.source, "10.1.2.3:51000".parse().unwrap());
        assert_eq!(addresses.destination, "127.0.0.1:9092".parse().unwrap());
        assert_eq!(&input[len..], b"\x00\x00\x00\x0a");
    }

    #[test]
    fn waits_for_a_partial_header_and_refuses_garbage() {
        assert!(parse(b"PROXY TCP4 10.1.2.3").unwrap().is_none());
        assert!(parse(b"\r\n\r\n\0\r\n").unwrap().is_none());
        assert!(parse(b"PROXY TCP9 nonsense here\r\n").is_err());
        // A bare LF is refused whether or not bytes follow it (found by the fuzzer).
        assert!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n").is_err());
        assert!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\nKAFKA").is_err());
        assert!(parse(b"\x00\x00\x00\x10garbage-garbage!").is_err());
    }

    /// A v2 header, command LOCAL (0x20) or PROXY (0x21), TCP over IPv4, with an address block.
    fn v2_header(command: u8) -> Vec<u8> {
        let mut header = V2_SIGNATURE.to_vec();
        header.extend_from_slice(&[command, 0x11, 0, 12]);
        header.extend_from_slice(&[10, 1, 2, 3, 127, 0, 0, 1]);
        header.extend_from_slice(&51000u16.to_be_bytes());
        header.extend_from_slice(&9092u16.to_be_bytes());
        header
    }

    #[test]
    fn v2_local_carries_no_client_even_with_an_address_block() {
        let (addresses, len) = parse(&v2_header(0x20)).unwrap().unwrap();
        assert_eq!((addresses, len), (None, 28));
        let (addresses, _) = parse(&v2_header(0x21)).unwrap().unwrap();
        assert_eq!(addresses.unwrap().source, "10.1.2.3:51000".parse().unwrap());
    }

    #[test]
    fn unknown_v1_has_no_addresses() {
        let (addresses, _) = parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap();
        assert!(addresses.is_none());
    }
}
