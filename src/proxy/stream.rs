//! The byte streams a connection is pumped between.
//!
//! The pump reads and writes each direction on its own, so it needs a stream's two halves. A
//! TCP socket splits without a lock ([`TcpStream::into_split`]); other streams (an in-memory
//! pipe in tests, a TLS session later) split through tokio's lock-protected [`split`]. The pump
//! is generic over this trait, so the same code runs between sockets in production and between
//! in-memory pipes in the in-process tests, where time can be paused.

use tokio::io::{split, AsyncRead, AsyncWrite, DuplexStream, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// A two-way byte stream the pump can split into a read half and a write half.
pub trait Duplex: Send + 'static {
    type Reader: AsyncRead + Send + Unpin;
    type Writer: AsyncWrite + Send + Unpin;

    fn into_halves(self) -> (Self::Reader, Self::Writer);
}

impl Duplex for TcpStream {
    type Reader = OwnedReadHalf;
    type Writer = OwnedWriteHalf;

    fn into_halves(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        self.into_split()
    }
}

impl Duplex for DuplexStream {
    type Reader = ReadHalf<DuplexStream>;
    type Writer = WriteHalf<DuplexStream>;

    fn into_halves(self) -> (Self::Reader, Self::Writer) {
        split(self)
    }
}
