//! Serving HTTP on an open connection: HTTP/1.1 (`http1.rs`) or HTTP/2,
//! as ALPN chose, each driven under the watchdog (`drive.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::drive::drive;
use super::http1::serve_h1;
use super::io::{ActivityIo, Socket};
use super::service::Service;
use crate::config::Limits;
use crate::conn::ConnInfo;

/// HTTP/2 limits with no config key: streams per connection like nginx's
/// `http2_max_concurrent_streams`, and caps on reset floods (CVE-2023-44487
/// "rapid reset" and its local-error variant).
const H2_MAX_CONCURRENT_STREAMS: u32 = 256;
const H2_MAX_PENDING_ACCEPT_RESETS: usize = 50;
const H2_MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// The connection's HTTP side, as one boxed future: boxed, a connection
/// holds only its own protocol's state (an HTTP/1.1 connection ~4 KiB, not
/// HTTP/2's ~6 KiB plus the TLS handshake's, as an inline future would).
pub(super) fn serve_http<IO>(
    gw: Arc<dyn Service>,
    io: IO,
    info: Arc<ConnInfo>,
    h2: bool,
    limits: &Limits,
    drain: watch::Receiver<bool>,
) -> Pin<Box<dyn Future<Output = ()> + Send>>
where
    IO: Socket + AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if !h2 {
        let io = ActivityIo::new(io, info.clone());
        return Box::pin(serve_h1(gw, io, info, limits.max_header_bytes, drain));
    }
    let io = TokioIo::new(ActivityIo::new(io, info.clone()));
    let svc_info = info.clone();
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS)
        // Twice the limit at the HTTP/2 layer, which refuses a larger block
        // with a 431 and a stream reset (that curl retries); the limit
        // itself is applied by the proxy, with a plain 431
        // (`proxy::header_list_size`).
        .max_header_list_size(
            u32::try_from(limits.max_header_bytes.saturating_mul(2)).unwrap_or(u32::MAX),
        )
        // Each stream's future lives in its own task, freed with it; boxed,
        // so that hyper's moves of it into the task are of a pointer (with
        // unwinding they are not optimized away: 9 KiB copied several times
        // per request doubled an HTTP/2 request's instructions).
        .serve_connection(
            io,
            service_fn(move |req| gw.clone().respond(svc_info.clone(), req)),
        );
    Box::pin(async move {
        let mut drain = drain;
        drive(Box::pin(conn), &info, &mut drain, None).await;
    })
}
