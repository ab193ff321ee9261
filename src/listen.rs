//! Accept loops, TLS handshakes with a deadline, the connection limit,
//! per-connection header/idle timeouts, and graceful drain.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};

use crate::body::ResponseBody;
use crate::config::Limits;
use crate::conn::{Activity, Verdict, Watch, NONE};
pub use crate::conn::{ConnInfo, ListenerKind};
use crate::headers;
use crate::live::Live;
use crate::observe::metrics;
use crate::tls::{stream, suites};

/// HTTP/2 limits with no config key: streams per connection like nginx's
/// `http2_max_concurrent_streams`, and caps on reset floods (CVE-2023-44487
/// "rapid reset" and its local-error variant).
const H2_MAX_CONCURRENT_STREAMS: u32 = 256;
const H2_MAX_PENDING_ACCEPT_RESETS: usize = 50;
const H2_MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// Connections on the observability listener are few (probes, scrapes)
/// and must not be starved by a flood on the public ports.
const OBSERVABILITY_MAX_CONNECTIONS: usize = 256;

/// A bound listener with its accept loop's stop switch.
pub struct RunningListener {
    pub kind: ListenerKind,
    pub addr: SocketAddr,
    pub local_addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl RunningListener {
    /// Stops accepting; the listener's open connections are asked to
    /// finish their current requests and close.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// Binds a listening socket (SO_REUSEADDR, a large backlog) without
/// accepting yet, so a reload can fail before anything changes.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Starts the accept loop of a bound listener.
pub fn start(
    gw: &Arc<dyn Service>,
    kind: ListenerKind,
    addr: SocketAddr,
    listener: TcpListener,
) -> RunningListener {
    let local_addr = listener.local_addr().unwrap_or(addr);
    let (stop, stop_rx) = watch::channel(false);
    let limit = match kind {
        ListenerKind::Observability => Arc::new(Semaphore::new(OBSERVABILITY_MAX_CONNECTIONS)),
        _ => gw.connection_limit(),
    };
    crate::task::spawn_essential(
        "accept loop",
        accept_loop(gw.clone(), kind, listener, limit, stop_rx),
    );
    tracing::info!(listener = kind.as_str(), "listening on {local_addr}");
    RunningListener {
        kind,
        addr,
        local_addr,
        stop,
    }
}

async fn accept_loop(
    gw: Arc<dyn Service>,
    kind: ListenerKind,
    listener: TcpListener,
    limit: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(listener = kind.as_str(), "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // A permit is taken only once a connection exists: a loop idling in
        // accept() must not park one (with several listeners sharing the
        // limit, that would lower it). Beyond the limit this loop waits
        // here holding one socket, and further connections wait in the
        // kernel's backlog instead of costing a file descriptor each.
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.changed() => return,
        };
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().unwrap_or(peer);
        let gw = gw.clone();
        let drain = stop.clone();
        tokio::spawn(async move {
            let _tracked = gw.connections().track(kind);
            let _permit = permit;
            // Opening (the TLS handshake) is boxed and freed once it is
            // done: the task then holds only a pointer to the HTTP side, not
            // the handshake's state nor a second slot for the TLS stream.
            if let Some(conn) = Box::pin(open(gw.clone(), kind, tcp, peer, local, drain)).await {
                conn.await;
            }
        });
    }
}

/// Completes the TLS handshake (HTTPS) and returns the connection's HTTP
/// side, ready to run; `None` when the handshake failed or timed out.
async fn open(
    gw: Arc<dyn Service>,
    kind: ListenerKind,
    tcp: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    drain: watch::Receiver<bool>,
) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
    let live = gw.live();
    let limits = live.settings.limits.clone();
    match kind {
        ListenerKind::Https => {
            let tls = live.tls.as_ref()?;
            let config = tls.config.clone();
            drop(live);
            let stream =
                match tokio::time::timeout(limits.header_read_timeout, stream::accept(tcp, config))
                    .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        metrics::tls_handshake_error(handshake_error_reason(&e));
                        tracing::debug!(%peer, "TLS handshake failed: {e}");
                        return None;
                    }
                    Err(_) => {
                        metrics::tls_handshake_error("timeout");
                        return None;
                    }
                };
            let session = stream.session();
            let version = session.protocol_version().map(suites::version_name);
            let suite = session
                .negotiated_cipher_suite()
                .map(|s| suites::suite_name(&s));
            let group = session.negotiated_key_exchange_group().map(|g| g.name());
            metrics::tls_handshake(
                version.unwrap_or("other"),
                suite.unwrap_or("unknown"),
                suites::group_name(group),
            );
            let h2 = session.alpn_protocol() == Some(b"h2");
            let info = Arc::new(ConnInfo {
                kind,
                peer,
                local,
                tls_version: version,
                tls_suite: suite,
                forwarded_for: headers::forwarded_for(peer.ip()),
                activity: Activity::new(!h2, &limits),
            });
            Some(serve_http(gw, stream, info, h2, &limits, drain))
        }
        ListenerKind::Http | ListenerKind::Observability => {
            drop(live);
            let info = Arc::new(ConnInfo {
                kind,
                peer,
                local,
                tls_version: None,
                tls_suite: None,
                forwarded_for: headers::forwarded_for(peer.ip()),
                activity: Activity::new(true, &limits),
            });
            Some(serve_http(gw, tcp, info, false, &limits, drain))
        }
    }
}

/// A bounded label for why a handshake failed.
fn handshake_error_reason(e: &io::Error) -> &'static str {
    use rustls::{Error as E, PeerIncompatible as P};
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(E::PeerIncompatible(P::NoCipherSuitesInCommon)) => "no_shared_cipher",
        Some(E::PeerIncompatible(
            P::SupportedVersionsExtensionRequired
            | P::Tls12NotOffered
            | P::Tls13RequiredForQuic
            | P::Tls12NotOfferedOrEnabled,
        )) => "protocol_version",
        Some(E::PeerIncompatible(P::NoKxGroupsInCommon | P::NoEcPointFormatsInCommon)) => {
            "no_shared_group"
        }
        Some(E::PeerIncompatible(_)) => "incompatible",
        Some(
            E::InvalidMessage(_)
            | E::InappropriateHandshakeMessage { .. }
            | E::InappropriateMessage { .. }
            | E::PeerMisbehaved(_),
        ) => "malformed",
        Some(E::AlertReceived(_)) => "alert_received",
        Some(_) => "other",
        None => match e.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe => "eof",
            io::ErrorKind::InvalidData => "malformed",
            _ => "io",
        },
    }
}

/// The connection's HTTP side, as one boxed future: boxed, a connection
/// holds only its own protocol's state (an HTTP/1.1 connection ~4 KiB, not
/// HTTP/2's ~6 KiB plus the TLS handshake's, as an inline future would).
fn serve_http<IO>(
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

/// `Box::pin(make())`, with the box allocated before the future is
/// built. The request's future is ~9 KiB (its largest state, the upstream
/// exchange); built first and then moved, the move is a 9 KiB `memcpy` per
/// request, which the release build (it unwinds on a panic, src/task.rs)
/// does not optimize away: 11k instructions per request (callgrind).
pub fn built_in_its_box<F: Future>(make: impl FnOnce() -> F) -> Pin<Box<F>> {
    Box::into_pin(Box::write(Box::new_uninit(), make()))
}

/// What the listeners serve and the state they read: handed to them by
/// the gateway, which they do not name (it starts them).
pub trait Service: Send + Sync + 'static {
    /// The running state a new connection takes its TLS and limits from.
    fn live(&self) -> Arc<Live>;
    /// Permits for client connections on the public listeners.
    fn connection_limit(&self) -> Arc<Semaphore>;
    /// The open connections the drain waits for.
    fn connections(&self) -> &Arc<OpenConnections>;
    /// One request's response, on a connection of `info.kind`.
    fn respond(self: Arc<Self>, info: Arc<ConnInfo>, req: Request<Incoming>) -> Responding;
}

/// A request's response under way, boxed (`built_in_its_box`).
pub type Responding =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Infallible>> + Send>>;

/// The client connections open now, for the drain and the
/// `gisgate_connections_active` gauge. Connections of the observability
/// listener are not waited for: it stays up through the drain, and probes
/// and scrapes keep theirs open.
#[derive(Default)]
pub struct OpenConnections {
    active: AtomicUsize,
    none_left: Notify,
    set_aside: AtomicU64,
}

impl OpenConnections {
    pub fn track(self: &Arc<Self>, kind: ListenerKind) -> ConnectionGuard {
        if kind != ListenerKind::Observability {
            self.active.fetch_add(1, Ordering::Relaxed);
        }
        metrics::connection_opened(kind.as_str());
        ConnectionGuard {
            open: self.clone(),
            kind,
        }
    }

    /// Public listeners' connections open now, WebSocket tunnels included.
    pub fn count(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Returns once no connection the drain waits for is open.
    pub async fn none_left(&self) {
        loop {
            let notified = self.none_left.notified();
            if self.active.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// How many times an idle HTTP/1.1 connection has been set aside.
    pub fn set_aside(&self) -> u64 {
        self.set_aside.load(Ordering::Relaxed)
    }
}

pub struct ConnectionGuard {
    open: Arc<OpenConnections>,
    kind: ListenerKind,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        metrics::connection_closed(self.kind.as_str());
        if self.kind != ListenerKind::Observability
            && self.open.active.fetch_sub(1, Ordering::AcqRel) == 1
        {
            self.open.none_left.notify_waiters();
        }
    }
}

/// Serves an HTTP/1.1 connection. One that idles for `SET_ASIDE_AFTER`
/// with nothing in flight is set aside: hyper's side of it (its 8 KiB read
/// and 8 KiB write buffers) is freed and only the socket is watched, as
/// nginx frees a keep-alive connection's buffers; when the client sends
/// again, a new hyper connection takes over the same socket and service.
fn serve_h1<IO>(
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

/// The TCP socket under a client connection, watched while it is set aside.
trait Socket {
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

/// A hyper connection that can be asked to finish and close.
trait GracefulConnection: Future<Output = Result<(), hyper::Error>> {
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
async fn drive<C: GracefulConnection>(
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

/// The client's stream as hyper sees it: notes when request bytes arrive
/// (for the header-read timeout) and whether all is read and flushed (for
/// setting aside), and first replays what an earlier hyper connection on
/// it had read but not used.
struct ActivityIo<IO> {
    inner: IO,
    info: Arc<ConnInfo>,
    replay: Bytes,
}

impl<IO> ActivityIo<IO> {
    fn new(inner: IO, info: Arc<ConnInfo>) -> Self {
        ActivityIo {
            inner,
            info,
            replay: Bytes::new(),
        }
    }
}

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
    use crate::conn::{SET_ASIDE_AFTER, SET_ASIDE_MS};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn conn_info() -> Arc<ConnInfo> {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        Arc::new(ConnInfo {
            kind: ListenerKind::Https,
            peer: addr,
            local: addr,
            tls_version: None,
            tls_suite: None,
            forwarded_for: headers::forwarded_for(addr.ip()),
            activity: Activity::new(false, &limits()),
        })
    }

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

    fn limits() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1,
            max_header_bytes: 8192,
            shutdown_grace: Duration::from_secs(1),
            send_timeout: Duration::from_secs(60),
        }
    }

    /// A connection that may be set aside, not yet considered, and its
    /// watchdog as `drive` holds it.
    struct Watched {
        info: Arc<ConnInfo>,
        watch: Watch,
        sleep: Pin<Box<tokio::time::Sleep>>,
    }

    impl Watched {
        fn new() -> Self {
            Watched {
                info: conn_info(),
                watch: Watch::new(Some(NONE)),
                sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            }
        }

        fn activity(&self) -> &Activity {
            &self.info.activity
        }

        /// Polls the watchdog once, as the connection's task does each
        /// time it is woken.
        fn poll(&mut self) -> Poll<Verdict> {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let sleep = self.sleep.as_mut();
            self.info
                .activity
                .poll_watchdog(&mut cx, sleep, &mut self.watch)
        }
    }

    // On tokio's paused clock: time moves only when the test moves it.
    #[tokio::test(start_paused = true)]
    async fn the_end_of_a_request_brings_the_set_aside_forward() {
        let mut w = Watched::new();
        w.activity().begin_request(true);
        assert!(w.poll().is_pending());
        assert_eq!(w.watch.armed, 60_000, "busy: only the idle timeout to time");
        tokio::time::advance(Duration::from_secs(5)).await;
        w.activity().end_request();
        assert!(w.poll().is_pending());
        assert_eq!(
            w.watch.armed,
            5_000 + SET_ASIDE_MS,
            "not 60 s: the end was seen"
        );
        tokio::time::advance(SET_ASIDE_AFTER).await;
        assert!(matches!(w.poll(), Poll::Ready(Verdict::Quiet(5_000))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_the_quiet_period_starts_it_again() {
        let mut w = Watched::new();
        assert!(w.poll().is_pending());
        assert_eq!(w.watch.armed, SET_ASIDE_MS);
        // A request comes and goes: the timer is not moved for it...
        tokio::time::advance(Duration::from_millis(10)).await;
        w.activity().begin_request(true);
        w.activity().end_request();
        assert!(w.poll().is_pending());
        assert_eq!(w.watch.armed, SET_ASIDE_MS);
        // ...but when it fires, the quiet period is counted from that request.
        tokio::time::advance(SET_ASIDE_AFTER - Duration::from_millis(10)).await;
        assert!(w.poll().is_pending());
        assert_eq!(w.watch.armed, 10 + SET_ASIDE_MS);
        tokio::time::advance(Duration::from_millis(10)).await;
        assert!(matches!(w.poll(), Poll::Ready(Verdict::Quiet(10))));
        // Considered once: not at rest, it waits for the idle timeout.
        w.watch.considered = Some(10);
        assert!(w.poll().is_pending());
        assert_eq!(w.watch.armed, 60_010);
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(matches!(w.poll(), Poll::Ready(Verdict::Idle)));
    }

    #[test]
    fn a_raw_hash_is_seen_in_a_request_line_read_in_pieces_and_nowhere_else() {
        let scan = |pieces: &[&str]| {
            let activity = Activity::new(true, &limits());
            for p in pieces {
                activity.scan_request_line(p.as_bytes());
            }
            activity.begin_request(true)
        };
        assert!(scan(&["GET /a#b HTTP/1.1\r\n"]));
        assert!(scan(&["\r\nGET /a?q=1#b HTTP/1.1\r\nHost: x\r\n\r\n"]));
        assert!(scan(&[
            "G",
            "ET /arcgis/rest",
            "#/../admin HTTP/1.1\r",
            "\n"
        ]));
        assert!(!scan(&["GET /a HTTP/1.1\r\nCookie: a=#1\r\n\r\n"]));
        assert!(!scan(&["GET /a HTTP/1.1\r\n", "Referer: /x#y\r\n\r\n"]));
        // Not a request line (a pipelined head read from its middle).
        assert!(!scan(&["ookie: a#b\r\n"]));
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
