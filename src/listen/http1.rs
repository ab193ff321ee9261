//! HTTP/1.1 connections, and idle ones set aside: hyper's side of a
//! connection quiet for `SET_ASIDE_AFTER` is freed and only its socket
//! watched until the client sends again.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::drive::drive;
use super::io::{ActivityIo, Socket};
use super::service::Service;
use crate::body::ResponseBody;
use crate::conn::{Activity, ConnInfo, ListenerKind, NONE};

/// Serves an HTTP/1.1 connection. One that idles for `SET_ASIDE_AFTER`
/// with nothing in flight is set aside: hyper's side of it (its 8 KiB read
/// and 8 KiB write buffers) is freed and only the socket is watched, as
/// nginx frees a keep-alive connection's buffers; when the client sends
/// again, a new hyper connection takes over the same socket and service.
pub(super) fn serve_h1<IO>(
    gw: Arc<dyn Service>,
    io: ActivityIo<IO>,
    info: Arc<ConnInfo>,
    max_header_bytes: usize,
    drain: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send
where
    IO: Socket + AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Observability requests are not tracked as in flight (they are not
    // proxied), so nothing would tell their connection is really idle.
    let mut considered = (info.kind != ListenerKind::Observability).then_some(NONE);
    let (svc_gw, svc_info) = (gw.clone(), info.clone());
    // Boxed per request: hyper keeps the slot for a request's future
    // (~9 KiB, it spans the upstream exchange) for the connection's whole
    // life, idle or not; a box there is 16 bytes.
    let mut service = service_fn(move |req| svc_gw.clone().respond(svc_info.clone(), req));
    let (mut io, mut drain) = (io, drain);
    // Not an async fn: that would keep `io` twice, as its argument and as
    // the variable the loop moves it in and out of (~1.2 KiB).
    async move {
        loop {
            let conn = h1_connection(io, service, max_header_bytes);
            let Some(conn) = drive(conn, &info, &mut drain, considered).await else {
                if info.activity.tunnel.load(Ordering::Acquire) {
                    // Boxed: only upgraded connections pay for the wait.
                    Box::pin(wait_for_tunnel(&info.activity)).await;
                }
                return;
            };
            // `None`: upgraded meanwhile; the upgrade owns the socket now.
            let Some((rest, svc)) = take_apart(conn) else {
                return;
            };
            (io, service) = (rest, svc);
            gw.connections().set_aside.fetch_add(1, Ordering::Relaxed);
            if io.replay.is_empty() {
                info.activity.expect_request_line();
            }
            if io.replay.is_empty()
                && !wait_for_request(io.inner.tcp(), &info.activity, &mut drain).await
            {
                // Idle timeout or drain: close as hyper closes an idle
                // connection, with a TLS close_notify.
                let _ = tokio::time::timeout(CLOSE_WITHIN, io.shutdown()).await;
                return;
            }
            // Not again before a request: what woke it may be no request
            // (a close, a TLS key update), and the flags are from before.
            considered = Some(info.activity.idle_since.load(Ordering::Relaxed));
        }
    }
}
type H1Connection<IO, S> =
    hyper::server::conn::http1::UpgradeableConnection<TokioIo<ActivityIo<IO>>, S>;
/// hyper's side of an HTTP/1.1 connection. Built and boxed outside the
/// async fn: there, its unboxed value would take room (~2 KiB) in the
/// connection's future for as long as the connection lives.
fn h1_connection<IO, S>(
    io: ActivityIo<IO>,
    service: S,
    max_header_bytes: usize,
) -> Pin<Box<H1Connection<IO, S>>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = ResponseBody>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Box::pin(
        hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            // Our own watchdog times header reads: hyper's timer would also
            // run while a keep-alive connection idles between requests.
            .header_read_timeout(None)
            // Exact: a head (request line and headers) over the limit is
            // 431, however it arrived.
            .max_header_size(max_header_bytes)
            .max_buf_size(max_header_bytes)
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades(),
    )
}
/// Takes an HTTP/1.1 connection at rest apart: the stream and the service
/// are kept, hyper's buffers freed. Bytes of a next request that hyper had
/// already read are kept for the next hyper connection to read first.
/// `None` when the connection has been upgraded.
fn take_apart<IO, S>(conn: Pin<Box<H1Connection<IO, S>>>) -> Option<(ActivityIo<IO>, S)>
where
    IO: Socket + AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = ResponseBody>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let parts = Pin::into_inner(conn).into_parts()?;
    let mut io = parts.io.into_inner();
    io.inner.rest();
    // An empty one is dropped: it would keep hyper's 8 KiB buffer alive.
    if !parts.read_buf.is_empty() {
        io.replay = parts.read_buf;
    }
    Some((io, parts.service))
}
/// Bounds the close_notify of a set-aside connection that is closed.
const CLOSE_WITHIN: Duration = Duration::from_secs(1);
/// Holds an upgraded connection's task (its permit and its place in the
/// drain count) until its WebSocket tunnel closes.
async fn wait_for_tunnel(activity: &Activity) {
    while activity.tunnel.load(Ordering::Acquire) {
        tokio::time::sleep(TUNNEL_CHECK).await;
    }
}
/// How often a tunnelled connection's task looks whether its tunnel has
/// closed: tunnels are few, and a closed one frees its permit this late.
const TUNNEL_CHECK: Duration = Duration::from_millis(100);
/// A set-aside connection's wait: true once the client sends (its next
/// request, or a close), false at the idle timeout or on drain.
async fn wait_for_request(
    tcp: &TcpStream,
    activity: &Activity,
    drain: &mut watch::Receiver<bool>,
) -> bool {
    let deadline = activity.idle_deadline();
    tokio::select! {
        readable = tcp.readable() => readable.is_ok(),
        _ = tokio::time::sleep_until(deadline) => false,
        // An error: the listener is gone, which is a drain too.
        _ = drain.wait_for(|draining| *draining) => false,
    }
}
