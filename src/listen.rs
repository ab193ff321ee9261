//! Accept loops, TLS handshakes with a deadline, the connection limit,
//! per-connection header/idle timeouts, and graceful drain.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::config::Limits;
use crate::gateway::Gateway;
use crate::headers;
use crate::observe::{endpoints, metrics};
use crate::proxy;
use crate::tls::suites;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListenerKind {
    Https,
    Http,
    Observability,
}

impl ListenerKind {
    /// The `listener` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Https => "https",
            ListenerKind::Http => "http",
            ListenerKind::Observability => "observability",
        }
    }
    pub fn scheme(self) -> &'static str {
        match self {
            ListenerKind::Https => "https",
            _ => "http",
        }
    }
}

/// What is known about one client connection.
pub struct ConnInfo {
    pub kind: ListenerKind,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls_version: Option<&'static str>,
    pub tls_suite: Option<&'static str>,
    /// The peer's address as sent in X-Forwarded-For.
    pub forwarded_for: HeaderValue,
    pub activity: Activity,
}

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
    gw: &Arc<Gateway>,
    kind: ListenerKind,
    addr: SocketAddr,
    listener: TcpListener,
) -> RunningListener {
    let local_addr = listener.local_addr().unwrap_or(addr);
    let (stop, stop_rx) = watch::channel(false);
    let limit = match kind {
        ListenerKind::Observability => Arc::new(Semaphore::new(OBSERVABILITY_MAX_CONNECTIONS)),
        _ => gw.connection_limit.clone(),
    };
    tokio::spawn(accept_loop(gw.clone(), kind, listener, limit, stop_rx));
    tracing::info!(listener = kind.as_str(), "listening on {local_addr}");
    RunningListener {
        kind,
        addr,
        local_addr,
        stop,
    }
}

async fn accept_loop(
    gw: Arc<Gateway>,
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
            let _tracked = gw.track_connection(kind);
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
    gw: Arc<Gateway>,
    kind: ListenerKind,
    tcp: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    drain: watch::Receiver<bool>,
) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
    let live = gw.live.load_full();
    let limits = live.settings.limits.clone();
    match kind {
        ListenerKind::Https => {
            let tls = live.tls.as_ref()?;
            let acceptor = TlsAcceptor::from(tls.config.clone());
            drop(live);
            let stream = match tokio::time::timeout(
                limits.header_read_timeout,
                acceptor.accept(tcp),
            )
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
            let session = stream.get_ref().1;
            let version = session.protocol_version().map(suites::version_name);
            let suite = session
                .negotiated_cipher_suite()
                .map(|s| suites::suite_name(&s));
            metrics::tls_handshake(version.unwrap_or("other"), suite.unwrap_or("unknown"));
            let h2 = session.alpn_protocol() == Some(b"h2");
            let info = Arc::new(ConnInfo {
                kind,
                peer,
                local,
                tls_version: version,
                tls_suite: suite,
                forwarded_for: headers::forwarded_for(peer.ip()),
                activity: Activity::new(!h2),
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
                activity: Activity::new(true),
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
            | E::InappropriateMessage { .. },
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
    gw: Arc<Gateway>,
    io: IO,
    info: Arc<ConnInfo>,
    h2: bool,
    limits: &Limits,
    drain: watch::Receiver<bool>,
) -> Pin<Box<dyn Future<Output = ()> + Send>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(ActivityIo {
        inner: io,
        info: info.clone(),
    });
    let kind = info.kind;
    let svc_info = info.clone();
    let respond = move |req| {
        let gw = gw.clone();
        let info = svc_info.clone();
        async move {
            if kind == ListenerKind::Observability {
                return Ok::<_, Infallible>(endpoints::handle(&gw, req).await);
            }
            let live = gw.live.load_full();
            Ok(proxy::handle(live, info, req).await)
        }
    };
    if h2 {
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
            .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESETS)
            .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS)
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            // Each stream's future lives in its own task, freed with it.
            .serve_connection(io, service_fn(respond));
        Box::pin(drive(Box::pin(conn), info, limits.clone(), drain))
    } else {
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            // Our own watchdog times header reads: hyper's timer would also
            // run while a keep-alive connection idles between requests.
            .header_read_timeout(None)
            .max_buf_size(limits.max_header_bytes)
            // Boxed per request: hyper keeps the slot for a request's
            // future (~9 KiB, it spans the upstream exchange) for the
            // connection's whole life, idle or not; a box there is 16 bytes.
            .serve_connection(io, service_fn(move |req| Box::pin(respond(req))))
            .with_upgrades();
        Box::pin(drive(Box::pin(conn), info, limits.clone(), drain))
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

/// `conn` comes boxed: an async fn keeps its arguments and its locals apart,
/// so pinning an inline connection here would hold it twice (~1.8 KiB more
/// per HTTP/1.1 connection).
async fn drive<C: GracefulConnection>(
    mut conn: Pin<Box<C>>,
    info: Arc<ConnInfo>,
    limits: Limits,
    mut drain: watch::Receiver<bool>,
) {
    let mut closing = *drain.borrow();
    if closing {
        conn.as_mut().shutdown_gracefully();
    }
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(peer = %info.peer, "connection ended: {e}");
                }
                return;
            }
            changed = drain.changed(), if !closing => {
                if changed.is_err() || *drain.borrow() {
                    closing = true;
                    conn.as_mut().shutdown_gracefully();
                }
            }
            verdict = info.activity.watchdog(limits.header_read_timeout, limits.idle_timeout), if !closing => {
                match verdict {
                    // Slowloris: headers dribbling in too slowly. Close.
                    Verdict::HeaderTimeout => return,
                    Verdict::Idle => {
                        closing = true;
                        conn.as_mut().shutdown_gracefully();
                    }
                }
            }
        }
    }
}

/// Times one connection: how long a request's headers take to arrive, and
/// how long the connection idles with no request in flight.
pub struct Activity {
    epoch: Instant,
    in_flight: AtomicU32,
    /// Milliseconds since `epoch` when the connection last became idle.
    idle_since: AtomicU64,
    /// Milliseconds since `epoch` when the first byte of a request that has
    /// not been fully read arrived; `NONE` when not reading headers.
    header_started: AtomicU64,
    track_headers: bool,
}

const NONE: u64 = u64::MAX;

pub enum Verdict {
    HeaderTimeout,
    Idle,
}

impl Activity {
    fn new(track_headers: bool) -> Self {
        Activity {
            epoch: Instant::now(),
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            // A new connection must deliver its first request in time.
            header_started: AtomicU64::new(if track_headers { 0 } else { NONE }),
            track_headers,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn begin_request(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.header_started.store(NONE, Ordering::Relaxed);
    }

    pub fn end_request(&self) {
        if self.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.idle_since.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    fn on_read(&self) {
        if self.track_headers
            && self.in_flight.load(Ordering::Relaxed) == 0
            && self.header_started.load(Ordering::Relaxed) == NONE
        {
            self.header_started.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    async fn watchdog(&self, header_timeout: Duration, idle_timeout: Duration) -> Verdict {
        let header_ms = header_timeout.as_millis() as u64;
        let idle_ms = idle_timeout.as_millis() as u64;
        loop {
            let now = self.now_ms();
            let wake_at = if self.in_flight.load(Ordering::Relaxed) > 0 {
                // Busy: nothing to time; look again later.
                now + idle_ms
            } else {
                let started = self.header_started.load(Ordering::Relaxed);
                if started != NONE {
                    if now >= started + header_ms {
                        return Verdict::HeaderTimeout;
                    }
                    started + header_ms
                } else {
                    let idle = self.idle_since.load(Ordering::Relaxed);
                    if now >= idle + idle_ms {
                        return Verdict::Idle;
                    }
                    idle + idle_ms
                }
            };
            tokio::time::sleep_until(self.epoch + Duration::from_millis(wake_at)).await;
        }
    }
}

/// Notes when request bytes arrive, for the header-read timeout.
struct ActivityIo<IO> {
    inner: IO,
    info: Arc<ConnInfo>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for ActivityIo<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.info.activity.on_read();
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
