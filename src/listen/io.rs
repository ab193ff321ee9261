//! The client's stream as hyper sees it.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::conn::ConnInfo;
use crate::tls::stream;

/// The TCP socket under a client connection, watched while it is set aside.
pub(super) trait Socket {
    fn tcp(&self) -> &TcpStream;

    /// Frees what the connection holds only while active.
    fn rest(&mut self) {}
}

impl Socket for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Socket for stream::ServerStream {
    fn tcp(&self) -> &TcpStream {
        self.tcp()
    }

    fn rest(&mut self) {
        self.rest();
    }
}
/// The client's stream as hyper sees it: notes when request bytes arrive
/// (for the header-read timeout) and whether all is read and flushed (for
/// setting aside), and first replays what an earlier hyper connection on
/// it had read but not used.
pub(super) struct ActivityIo<IO> {
    pub(super) inner: IO,
    info: Arc<ConnInfo>,
    pub(super) replay: Bytes,
}

impl<IO> ActivityIo<IO> {
    pub(super) fn new(inner: IO, info: Arc<ConnInfo>) -> Self {
        ActivityIo {
            inner,
            info,
            replay: Bytes::new(),
        }
    }
}
impl<IO: AsyncRead + Unpin> AsyncRead for ActivityIo<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.replay.is_empty() {
            let n = self.replay.len().min(buf.remaining());
            buf.put_slice(&self.replay.split_to(n));
            if self.replay.is_empty() {
                // An empty slice of it would keep the old buffer alive.
                self.replay = Bytes::new();
            }
            self.info.activity.on_read();
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let activity = &self.info.activity;
        activity
            .read_blocked
            .store(polled.is_pending(), Ordering::Relaxed);
        if buf.filled().len() > before {
            activity.on_read();
            if activity.scanning_request_line() {
                activity.scan_request_line(&buf.filled()[before..]);
            }
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for ActivityIo<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.info.activity.unflushed.store(true, Ordering::Relaxed);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.info.activity.unflushed.store(true, Ordering::Relaxed);
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = polled {
            self.info.activity.unflushed.store(false, Ordering::Relaxed);
        }
        polled
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::tests::conn_info;
    use std::future::Future;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Polls once: whether the operation completed at once.
    async fn at_once<F: Future>(f: F) -> bool {
        tokio::time::timeout(Duration::ZERO, f).await.is_ok()
    }

    #[tokio::test]
    async fn a_connection_is_at_rest_only_once_all_it_wrote_is_flushed() {
        let (near, mut far) = tokio::io::duplex(16);
        let info = conn_info();
        let mut io = ActivityIo::new(near, info.clone());
        let mut buf = [0u8; 64];
        assert!(!at_once(io.read(&mut buf)).await, "nothing to read yet");
        assert!(at_once(io.write_all(&[b'a'; 16])).await);
        assert!(!info.activity.at_rest(), "written, not flushed");
        assert!(at_once(io.flush()).await);
        assert!(info.activity.at_rest());
        // The peer stops reading: the next write finds the stream full and
        // the bytes stay with the writer, so setting aside would lose them.
        assert!(!at_once(io.write_all(b"b")).await);
        assert!(!info.activity.at_rest());
        far.read_exact(&mut buf[..16]).await.unwrap();
        io.write_all(b"b").await.unwrap();
        io.flush().await.unwrap();
        assert!(info.activity.at_rest());
    }

    #[tokio::test]
    async fn a_request_in_flight_or_a_body_keeps_a_connection_from_rest() {
        let (near, _far) = tokio::io::duplex(16);
        let info = conn_info();
        let mut io = ActivityIo::new(near, info.clone());
        assert!(!at_once(io.read(&mut [0u8; 8])).await);
        assert!(info.activity.at_rest());
        info.activity.begin_request(true);
        assert!(!info.activity.at_rest(), "in flight");
        info.activity.end_request();
        assert!(info.activity.at_rest());
        info.activity.begin_request(false);
        info.activity.end_request();
        assert!(!info.activity.at_rest(), "its body may still be unread");
    }

    #[tokio::test]
    async fn bytes_kept_from_an_earlier_connection_are_read_first() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut io = ActivityIo::new(near, conn_info());
        io.replay = Bytes::from_static(b"GET / HT");
        far.write_all(b"TP/1.1\r\n").await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 5];
        while got.len() < 16 {
            let n = io.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"GET / HTTP/1.1\r\n");
        assert!(io.replay.is_empty());
    }
}
