//! The byte streams a connection is pumped between.
//!
//! The pump reads and writes each direction on its own, so it needs a stream's two halves. A
//! TCP socket splits without a lock ([`TcpStream::into_split`]); other streams (an in-memory
//! pipe in tests, a TLS session) split through tokio's lock-protected [`split`]. The pump
//! is generic over this trait, so the same code runs between sockets in production and between
//! in-memory pipes in the in-process tests, where time can be paused.

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{split, AsyncRead, AsyncWrite, DuplexStream, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

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

/// A stream already split, e.g. after a swap route's login ran on its halves.
pub struct Halves<R, W>(pub R, pub W);

impl<R: AsyncRead + Send + Unpin + 'static, W: AsyncWrite + Send + Unpin + 'static> Duplex for Halves<R, W> {
    type Reader = R;
    type Writer = W;

    fn into_halves(self) -> (R, W) {
        (self.0, self.1)
    }
}

/// A connection to a broker: plain TCP, or TLS over it (the listener's `ssl`).
pub enum BrokerStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// The read half of a [`BrokerStream`]: a TCP socket's lock-free half, or a TLS session's.
pub enum BrokerReader {
    Plain(OwnedReadHalf),
    Tls(ReadHalf<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// The write half of a [`BrokerStream`].
pub enum BrokerWriter {
    Plain(OwnedWriteHalf),
    Tls(WriteHalf<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Duplex for BrokerStream {
    type Reader = BrokerReader;
    type Writer = BrokerWriter;

    fn into_halves(self) -> (BrokerReader, BrokerWriter) {
        match self {
            BrokerStream::Plain(stream) => {
                let (read, write) = stream.into_split();
                (BrokerReader::Plain(read), BrokerWriter::Plain(write))
            }
            BrokerStream::Tls(stream) => {
                let (read, write) = split(*stream);
                (BrokerReader::Tls(read), BrokerWriter::Tls(write))
            }
        }
    }
}

impl AsyncRead for BrokerReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BrokerReader::Plain(half) => Pin::new(half).poll_read(cx, buf),
            BrokerReader::Tls(half) => Pin::new(half).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for BrokerWriter {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BrokerWriter::Plain(half) => Pin::new(half).poll_write(cx, buf),
            BrokerWriter::Tls(half) => Pin::new(half).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BrokerWriter::Plain(half) => Pin::new(half).poll_write_vectored(cx, bufs),
            BrokerWriter::Tls(half) => Pin::new(half).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            BrokerWriter::Plain(half) => half.is_write_vectored(),
            BrokerWriter::Tls(half) => half.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BrokerWriter::Plain(half) => Pin::new(half).poll_flush(cx),
            BrokerWriter::Tls(half) => Pin::new(half).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BrokerWriter::Plain(half) => Pin::new(half).poll_shutdown(cx),
            BrokerWriter::Tls(half) => Pin::new(half).poll_shutdown(cx),
        }
    }
}

/// A client's TLS session (its bytes may start with ones read before the handshake).
impl Duplex for tokio_rustls::server::TlsStream<Rewound<TcpStream>> {
    type Reader = ReadHalf<Self>;
    type Writer = WriteHalf<Self>;

    fn into_halves(self) -> (Self::Reader, Self::Writer) {
        split(self)
    }
}

/// A stream whose first bytes were already read (with the PROXY header, say) and are read
/// again before the rest: the TLS handshake must see the whole ClientHello.
pub struct Rewound<S> {
    read_first: BytesMut,
    inner: S,
}

impl<S> Rewound<S> {
    pub fn new(read_first: BytesMut, inner: S) -> Self {
        Rewound { read_first, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewound<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.read_first.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.read_first.len().min(buf.remaining());
        buf.put_slice(&self.read_first[..n]);
        self.read_first.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewound<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A writer whose writes must make progress: a write that stays blocked (the peer reads
/// nothing) for `timeout` fails with [`io::ErrorKind::TimedOut`]. The timer is armed only when
/// a write would block and re-armed on every byte of progress, so a write that goes straight
/// into the socket buffer (the usual case) touches no timer at all.
pub struct ProgressWriter<'a, W> {
    inner: &'a mut W,
    timeout: Duration,
    timer: Pin<&'a mut Sleep>,
}

impl<'a, W: AsyncWrite + Unpin> ProgressWriter<'a, W> {
    pub fn new(inner: &'a mut W, timeout: Duration, timer: Pin<&'a mut Sleep>) -> Self {
        ProgressWriter { inner, timeout, timer }
    }

    /// Writes all of `buf`, then flushes: a TLS session accepts plaintext it could not yet send
    /// (the socket was full) and sends it only when written to or flushed again, so without
    /// the flush the end of an answer could wait for the next one.
    pub async fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let written = self.progress(|inner, cx| inner.poll_write(cx, buf)).await?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            buf = &buf[written..];
        }
        self.progress(|inner, cx| inner.poll_flush(cx)).await
    }

    /// Writes `pieces` in order as one stream of bytes (vectored where the stream can), then
    /// flushes as [`Self::write_all`] does.
    pub async fn write_all_pieces(&mut self, pieces: &[Bytes]) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = pieces.iter().filter(|p| !p.is_empty()).map(|p| IoSlice::new(p)).collect();
        let mut left = &mut slices[..];
        while !left.is_empty() {
            let written = self.progress(|inner, cx| inner.poll_write_vectored(cx, left)).await?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut left, written);
        }
        self.progress(|inner, cx| inner.poll_flush(cx)).await
    }

    /// Polls `op` until it is ready, failing with [`io::ErrorKind::TimedOut`] when it stays
    /// pending for the timeout.
    async fn progress<T>(
        &mut self,
        mut op: impl FnMut(Pin<&mut W>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> io::Result<T> {
        let mut armed = false;
        poll_fn(|cx| match op(Pin::new(&mut *self.inner), cx) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => {
                if !armed {
                    self.timer.as_mut().reset(Instant::now() + self.timeout);
                    armed = true;
                }
                match self.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::ErrorKind::TimedOut.into())),
                    Poll::Pending => Poll::Pending,
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes every write, but hands bytes on only when flushed, as a TLS session does when the
    /// socket is full.
    #[derive(Default)]
    struct HoldsUntilFlushed {
        held: Vec<u8>,
        sent: Vec<u8>,
    }

    impl AsyncWrite for HoldsUntilFlushed {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            self.get_mut().held.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            this.sent.append(&mut this.held);
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.poll_flush(cx)
        }
    }

    #[tokio::test]
    async fn write_all_flushes_what_a_tls_session_would_hold_back() {
        let mut inner = HoldsUntilFlushed::default();
        let timer = tokio::time::sleep(Duration::from_secs(1));
        tokio::pin!(timer);
        let mut writer = ProgressWriter::new(&mut inner, Duration::from_secs(1), timer);
        writer.write_all(b"the end of an answer").await.unwrap();
        assert_eq!(inner.sent, b"the end of an answer");
        assert!(inner.held.is_empty());
    }
}
