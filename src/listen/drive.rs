//! One hyper connection run to its end: under the watchdog (header, idle
//! and send timeouts; setting aside), asked to finish on drain, and dropped
//! `CLOSE_GRACE` after being asked if it has not closed by itself.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::watch;

use crate::conn::{ConnInfo, Verdict, Watch};

/// A hyper connection that can be asked to finish and close.
pub(super) trait GracefulConnection: Future<Output = Result<(), hyper::Error>> {
    fn shutdown_gracefully(self: Pin<&mut Self>);
}

impl<I, S, B> GracefulConnection for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    Self: Future<Output = Result<(), hyper::Error>>,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shutdown_gracefully(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B, E> GracefulConnection for hyper::server::conn::http2::Connection<I, S, E>
where
    Self: Future<Output = Result<(), hyper::Error>>,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn shutdown_gracefully(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}
/// Runs a connection until it ends, or until it has been quiet long enough
/// to be set aside: then it is handed back. `considered` is `None` for a
/// connection never set aside, else the idle period (its `idle_since`) last
/// considered for it: each period is considered once.
/// `conn` comes boxed: an async fn keeps its arguments and its locals apart,
/// so pinning an inline connection here would hold it twice (~1.8 KiB more
/// per HTTP/1.1 connection).
pub(super) async fn drive<C: GracefulConnection>(
    mut conn: Pin<Box<C>>,
    info: &ConnInfo,
    drain: &mut watch::Receiver<bool>,
    considered: Option<u64>,
) -> Option<Pin<Box<C>>> {
    let mut watch = Watch::new(considered);
    if *drain.borrow() {
        watch.closing = true;
        conn.as_mut().shutdown_gracefully();
    }
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    // Set once the connection has been asked to close and has nothing in
    // flight: it is dropped when this fires, whatever the client does (an
    // HTTP/2 client that never answers the GOAWAY's PING would otherwise
    // keep it, and its permit, forever). Boxed: rare, and kept out of
    // every connection's future.
    let mut hard_close: Option<Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        // Biased, the connection first: a request it has just ended is
        // seen by the watchdog in the same poll.
        tokio::select! {
            biased;
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(peer = %info.peer, "connection ended: {e}");
                }
                return None;
            }
            changed = drain.changed(), if !watch.closing => {
                if changed.is_err() || *drain.borrow() {
                    watch.closing = true;
                    conn.as_mut().shutdown_gracefully();
                }
            }
            () = poll_fn(|cx| poll_hard_close(cx, &mut hard_close)) => {
                tracing::debug!(peer = %info.peer, "connection did not close within {CLOSE_GRACE:?} of being asked to; closed");
                return None;
            }
            verdict = poll_fn(|cx| info.activity.poll_watchdog(cx, sleep.as_mut(), &mut watch)), if hard_close.is_none() => {
                match verdict {
                    // Slowloris: headers dribbling in too slowly. Close.
                    Verdict::HeaderTimeout => return None,
                    // The client took nothing of a response for
                    // `limits.send_timeout`: close, which drops the
                    // response and so its upstream connection (never
                    // pooled mid-response).
                    Verdict::SendTimeout => {
                        tracing::debug!(peer = %info.peer, "send timeout: the client took nothing of its response; closed");
                        return None;
                    }
                    Verdict::Idle => {
                        if !watch.closing {
                            watch.closing = true;
                            conn.as_mut().shutdown_gracefully();
                        }
                        hard_close = Some(Box::pin(tokio::time::sleep(CLOSE_GRACE)));
                    }
                    Verdict::Quiet(period) => {
                        watch.considered = Some(period);
                        if info.activity.at_rest() {
                            tracing::trace!(peer = %info.peer, "idle connection set aside");
                            return Some(conn);
                        }
                    }
                }
            }
        }
    }
}
fn poll_hard_close(
    cx: &mut Context<'_>,
    timer: &mut Option<Pin<Box<tokio::time::Sleep>>>,
) -> Poll<()> {
    match timer {
        Some(t) => t.as_mut().poll(cx),
        None => Poll::Pending,
    }
}
/// How long a connection asked to close (idle timeout, drain) with nothing
/// in flight has to close by itself: enough for an HTTP/2 client to answer
/// the GOAWAY's PING and for close_notify to go out.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);
