//! WebSocket tunnels. After both sides switched protocols (RFC 6455 §4),
//! bytes are copied both ways until either side closes; ArcGIS stream
//! services use wss. The client connection's task waits for its tunnel
//! (`listen`), so an open tunnel keeps its connection permit and counts as
//! an open connection for the drain: it gets until the end of
//! `limits.shutdown_grace`, then closes with the process; and one idle
//! both ways for `limits.idle_timeout` is closed.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Starts copying once both upgrades have completed; `closed` runs when
/// the tunnel ends, however it ends. (The caller marks its connection as
/// tunnelled before the 101 is sent, so the connection's task never ends
/// between the upgrade and the tunnel's start.) A tunnel that carries
/// nothing either way for `idle` (`limits.idle_timeout`) is closed, as
/// nginx closes one after `proxy_read_timeout`.
pub fn splice(
    idle: Duration,
    closed: impl FnOnce() + Send + 'static,
    client: OnUpgrade,
    upstream: OnUpgrade,
) {
    let open = Open(Some(closed));
    tokio::spawn(async move {
        let _open = open;
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!("upgrade not completed: {e}");
                return;
            }
        };
        let last = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now();
        let mut client = Watched::new(client, &last, epoch);
        let mut upstream = Watched::new(upstream, &last, epoch);
        let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
        tokio::pin!(copy);
        let mut deadline = epoch + idle;
        loop {
            tokio::select! {
                ended = &mut copy => {
                    if let Err(e) = ended {
                        tracing::debug!("upgraded connection ended: {e}");
                    }
                    return;
                }
                () = tokio::time::sleep_until(deadline) => {
                    let moved = epoch + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
                    if moved <= Instant::now() {
                        tracing::debug!("tunnel idle for {idle:?}; closed");
                        return;
                    }
                    deadline = moved;
                }
            }
        }
    });
}

/// Runs its function however the tunnel's task ends.
struct Open<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for Open<F> {
    fn drop(&mut self) {
        if let Some(closed) = self.0.take() {
            closed();
        }
    }
}

/// One side of a tunnel, noting when it last read anything (milliseconds
/// since `epoch`, shared by both sides).
struct Watched {
    io: TokioIo<Upgraded>,
    last: Arc<AtomicU64>,
    epoch: Instant,
}

impl Watched {
    fn new(io: Upgraded, last: &Arc<AtomicU64>, epoch: Instant) -> Self {
        Watched {
            io: TokioIo::new(io),
            last: last.clone(),
            epoch,
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            let now = self.epoch.elapsed().as_millis() as u64;
            self.last.store(now, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
