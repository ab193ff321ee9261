//! One client connection as the rest of the gateway knows it: which
//! listener, who, over what TLS, and its `Activity`, the clock a
//! connection's watchdog reads (header, idle and send timeouts, when an
//! idle HTTP/1.1 connection may be set aside) and the request-line scan.
//! Below the listener, the proxy, the response body and the metrics, which
//! all name it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use tokio::time::Instant;

use crate::client_cert::ClientCert;
use crate::config::Limits;
use crate::tls::certs::CertFacts;

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
    /// The client: the TCP peer, or the address its load balancer's
    /// PROXY header carries (`server.proxy_protocol`).
    pub peer: SocketAddr,
    /// Kept as rustls' 4-byte value, not its name (16 bytes): room for
    /// `client_cert` within the size class asserted below.
    pub tls_version: Option<rustls::ProtocolVersion>,
    pub tls_suite: Option<&'static str>,
    /// The certificate the client presented and rustls verified, when the
    /// connection's server config asked for one.
    pub client_cert: Option<Arc<ClientCert>>,
    /// The peer's address as sent in X-Forwarded-For.
    pub forwarded_for: HeaderValue,
    /// The certificate the TLS handshake chose, by SNI
    /// (`tls.strict_sni_host`); `None` without TLS.
    pub certificate: Option<Arc<CertFacts>>,
    pub activity: Activity,
}

// Every connection keeps one: with its Arc's two counts it stays in
// mimalloc's 224-byte size class (README, Resources: memory per idle
// connection).
const _: () = assert!(std::mem::size_of::<ConnInfo>() + 16 <= 224);

/// How long an HTTP/1.1 connection with nothing in flight keeps hyper's
/// buffers before it is set aside. Not at once: a busy client's next
/// request usually follows within milliseconds, and building hyper's side
/// again for each request would cost more than the memory is worth.
pub(crate) const SET_ASIDE_AFTER: Duration = Duration::from_millis(20);
pub(crate) const SET_ASIDE_MS: u64 = SET_ASIDE_AFTER.as_millis() as u64;

/// Times one connection: how long a request's headers take to arrive, and
/// how long the connection idles with no request in flight; and tells when
/// an HTTP/1.1 connection is at rest between requests.
pub struct Activity {
    pub(crate) epoch: Instant,
    pub(crate) in_flight: AtomicU32,
    /// Milliseconds since `epoch` when the connection last became idle.
    pub(crate) idle_since: AtomicU64,
    /// Milliseconds since `epoch` when the first byte of a request that has
    /// not been fully read arrived; `NONE` when not reading headers.
    pub(crate) header_started: AtomicU64,
    pub(crate) track_headers: bool,
    /// `limits.header_read_timeout`, `limits.idle_timeout` and
    /// `limits.send_timeout` in milliseconds (at most 49 days), as they
    /// were when the connection was accepted. Kept here rather than the
    /// whole `Limits` in the connection's future, and as u32, so that the
    /// `ConnInfo` box stays in the allocator's 224-byte size class
    /// (asserted below `ConnInfo`).
    pub(crate) header_ms: u32,
    pub(crate) idle_ms: u32,
    pub(crate) send_ms: u32,
    /// Response bodies that have handed the connection a frame the client
    /// has not yet taken (hyper asks a body for more only once it can send
    /// it), and how many frames have been taken (wrapping): while some are
    /// waiting and that count does not move, the send timeout runs.
    pub(crate) sending: AtomicU32,
    pub(crate) taken: AtomicU32,
    /// The latest request came with a body, which hyper may still be
    /// reading (or draining) after the response is sent.
    pub(crate) body_pending: AtomicBool,
    /// The socket's latest read found nothing to read.
    pub(crate) read_blocked: AtomicBool,
    /// A WebSocket tunnel has the connection (`tunnel`).
    pub(crate) tunnel: AtomicBool,
    /// Where reading stands in an HTTP/1.1 request line (`LINE_*`), and
    /// whether a raw `#` was seen in it (`LINE_FRAGMENT`).
    pub(crate) line: AtomicU8,
    /// A write was tried since the last completed flush. hyper writes
    /// whatever it holds before it flushes, so a completed flush after the
    /// last write means hyper's buffer is empty and TLS sent; a write that
    /// found the socket full leaves hyper holding bytes, whatever it
    /// returned.
    pub(crate) unflushed: AtomicBool,
}

pub(crate) const NONE: u64 = u64::MAX;

pub(crate) fn saturating_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// `Activity::line`: before a request line, in its method, past it (the
/// target and version), or not in a request line at all; plus the flag.
pub(crate) const LINE_START: u8 = 0;
pub(crate) const LINE_METHOD: u8 = 1;
pub(crate) const LINE_TARGET: u8 = 2;
pub(crate) const LINE_OFF: u8 = 3;
pub(crate) const LINE_FRAGMENT: u8 = 0x80;

pub enum Verdict {
    HeaderTimeout,
    /// No response made progress towards the client for `send_ms`.
    SendTimeout,
    Idle,
    /// Idle for `SET_ASIDE_AFTER` since the given moment (`idle_since`).
    Quiet(u64),
}

impl Activity {
    pub(crate) fn new(track_headers: bool, limits: &Limits) -> Self {
        Activity {
            header_ms: saturating_ms(limits.header_read_timeout),
            idle_ms: saturating_ms(limits.idle_timeout),
            send_ms: saturating_ms(limits.send_timeout),
            sending: AtomicU32::new(0),
            taken: AtomicU32::new(0),
            epoch: Instant::now(),
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            // A new connection must deliver its first request in time.
            header_started: AtomicU64::new(if track_headers { 0 } else { NONE }),
            track_headers,
            body_pending: AtomicBool::new(false),
            read_blocked: AtomicBool::new(false),
            tunnel: AtomicBool::new(false),
            line: AtomicU8::new(if track_headers { LINE_START } else { LINE_OFF }),
            unflushed: AtomicBool::new(false),
        }
    }

    pub(crate) fn idle_ms(&self) -> u64 {
        u64::from(self.idle_ms)
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// `body_complete`: the request has no body left to read. HTTP/1.1
    /// reads requests in order, so a new request also means every earlier
    /// body has been read.
    /// Returns whether the request's target had a raw `#` in it, which
    /// hyper drops with all that follows (`scan_request_line`).
    pub fn begin_request(&self, body_complete: bool) -> bool {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.header_started.store(NONE, Ordering::Relaxed);
        self.body_pending.store(!body_complete, Ordering::Relaxed);
        self.line.swap(LINE_OFF, Ordering::Relaxed) & LINE_FRAGMENT != 0
    }

    pub fn end_request(&self) {
        if self.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.idle_since.store(self.now_ms(), Ordering::Relaxed);
            // The next bytes read start the next request line. (If the
            // upstream answered without reading the whole body, hyper
            // reads what has arrived of it and closes the connection
            // unless that was all of it.)
            if self.track_headers {
                self.line.store(LINE_START, Ordering::Relaxed);
            }
        }
    }

    /// Looks for a raw `#` in an HTTP/1.1 request line as its bytes are
    /// read. The `http` crate takes `#` as the start of a fragment and
    /// drops it with everything after it (`GET /arcgis/rest#/../admin`
    /// would reach the upstream as `/arcgis/rest`), where Tomcat refuses
    /// the request: the gateway refuses it too, rather than repair it.
    /// Only request lines read when a request is due are scanned (the
    /// first on a connection, and each one after a request without a body
    /// has ended), as far as the line's end: a method of capital letters,
    /// a space, then anything up to the line feed.
    pub(crate) fn scan_request_line(&self, bytes: &[u8]) {
        let line = self.line.load(Ordering::Relaxed);
        let (mut state, mut fragment) = (line & !LINE_FRAGMENT, line & LINE_FRAGMENT);
        let mut rest = bytes;
        while let Some((&b, after)) = rest.split_first() {
            match state {
                // Empty lines before a request line are allowed (RFC 9112 §2.2).
                LINE_START if b == b'\r' || b == b'\n' => rest = after,
                LINE_START => state = LINE_METHOD,
                LINE_METHOD if b.is_ascii_uppercase() => rest = after,
                LINE_METHOD if b == b' ' => {
                    state = LINE_TARGET;
                    rest = after;
                }
                LINE_TARGET => {
                    let end = rest.iter().position(|&b| b == b'\n');
                    if rest[..end.unwrap_or(rest.len())].contains(&b'#') {
                        fragment = LINE_FRAGMENT;
                    }
                    if end.is_some() {
                        state = LINE_OFF;
                    }
                    break;
                }
                _ => {
                    state = LINE_OFF;
                    break;
                }
            }
        }
        self.line.store(state | fragment, Ordering::Relaxed);
    }

    /// Whether bytes read now belong to a request line being scanned.
    pub(crate) fn scanning_request_line(&self) -> bool {
        self.line.load(Ordering::Relaxed) & !LINE_FRAGMENT != LINE_OFF
    }

    /// A set-aside connection's next bytes start a request line.
    pub(crate) fn expect_request_line(&self) {
        self.line.store(LINE_START, Ordering::Relaxed);
    }

    /// A response body handed the connection a frame: the client has
    /// `limits.send_timeout` to take it (nginx's `send_timeout`).
    pub fn frame_handed(&self) {
        self.sending.fetch_add(1, Ordering::Relaxed);
    }

    /// The body handed a frame was asked for more (`progress`: the client
    /// took it), or was dropped. No clock is read here, on every response:
    /// the watchdog notes when the count of frames taken last moved.
    pub fn frame_taken(&self, progress: bool) {
        self.sending.fetch_sub(1, Ordering::Relaxed);
        if progress {
            self.taken.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `limits.idle_timeout`, as it was when the connection was accepted.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_ms())
    }

    pub fn tunnel_opened(&self) {
        self.tunnel.store(true, Ordering::Release);
    }

    pub fn tunnel_closed(&self) {
        self.tunnel.store(false, Ordering::Release);
    }

    pub(crate) fn on_read(&self) {
        if self.track_headers
            && self.in_flight.load(Ordering::Relaxed) == 0
            && self.header_started.load(Ordering::Relaxed) == NONE
        {
            self.header_started.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// Whether hyper's side of an HTTP/1.1 connection holds nothing that
    /// setting it aside would lose: no request in flight, none being read,
    /// no body left unread, everything written flushed, and the socket
    /// read to its end. Bytes of a next request hyper already read are
    /// handed back by `into_parts`.
    pub(crate) fn at_rest(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
            && self.header_started.load(Ordering::Relaxed) == NONE
            && !self.body_pending.load(Ordering::Relaxed)
            && self.read_blocked.load(Ordering::Relaxed)
            && !self.unflushed.load(Ordering::Relaxed)
    }

    /// When an idle connection times out.
    pub(crate) fn idle_deadline(&self) -> Instant {
        self.epoch + Duration::from_millis(self.idle_since.load(Ordering::Relaxed) + self.idle_ms())
    }

    /// The next moment the watchdog has something to decide, and the
    /// verdict due then; `None` while a request is in flight, which has no
    /// deadline of its own.
    pub(crate) fn next_check(&self, watch: &mut Watch) -> Option<(u64, Verdict)> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            if self.sending.load(Ordering::Relaxed) == 0 {
                watch.stalled_since = NONE;
                return None;
            }
            // Waiting on the client since the taken count was first seen
            // at its present value.
            let taken = self.taken.load(Ordering::Relaxed);
            if watch.stalled_since == NONE || watch.taken != taken {
                (watch.taken, watch.stalled_since) = (taken, self.now_ms());
            }
            let at = watch.stalled_since + u64::from(self.send_ms);
            return Some((at, Verdict::SendTimeout));
        }
        watch.stalled_since = NONE;
        let started = self.header_started.load(Ordering::Relaxed);
        if started != NONE {
            return Some((started + u64::from(self.header_ms), Verdict::HeaderTimeout));
        }
        let idle = self.idle_since.load(Ordering::Relaxed);
        if watch.closing {
            // Asked to close: idle now means closing now.
            return Some((idle, Verdict::Idle));
        }
        match watch.considered {
            Some(seen) if seen != idle && SET_ASIDE_MS < self.idle_ms() => {
                Some((idle + SET_ASIDE_MS, Verdict::Quiet(idle)))
            }
            _ => Some((idle + self.idle_ms(), Verdict::Idle)),
        }
    }

    /// Times the connection on `sleep`, and is polled with it on every
    /// poll of the connection's task, so a request that has just ended
    /// there is seen at once. The timer is only ever brought forward: a
    /// later deadline is taken up when the earlier one fires, so a busy
    /// connection does not move it on every request.
    pub(crate) fn poll_watchdog(
        &self,
        cx: &mut Context<'_>,
        mut sleep: Pin<&mut tokio::time::Sleep>,
        watch: &mut Watch,
    ) -> Poll<Verdict> {
        loop {
            let (at, verdict) = match self.next_check(watch) {
                Some((at, verdict)) => (at, Some(verdict)),
                // Busy. A request may end, or a response stall, on another
                // task (HTTP/2), unseen here: look again by the idle or the
                // send timeout, whichever is sooner.
                None if watch.armed == NONE => {
                    let soonest = self.idle_ms.min(self.send_ms);
                    (self.now_ms() + u64::from(soonest), None)
                }
                None => (watch.armed, None),
            };
            if at < watch.armed {
                if let Some(verdict) = verdict.filter(|_| self.now_ms() >= at) {
                    return Poll::Ready(verdict);
                }
                sleep.as_mut().reset(self.epoch + Duration::from_millis(at));
                watch.armed = at;
            }
            ready!(sleep.as_mut().poll(cx));
            watch.armed = NONE;
        }
    }
}

/// A connection's watchdog state, polled by `Activity::poll_watchdog`.
pub(crate) struct Watch {
    /// `None` when the connection is never set aside, else the idle period
    /// last reported as `Quiet` (each is reported once).
    pub(crate) considered: Option<u64>,
    /// When the timer is set to fire (ms since the epoch); `NONE` when not
    /// set, as before the first poll and after it has fired.
    pub(crate) armed: u64,
    /// The connection has been asked to close (idle timeout or drain).
    pub(crate) closing: bool,
    /// `Activity::taken` as last seen while responses waited on the client,
    /// and since when (ms since the epoch; `NONE`: none waiting).
    pub(crate) taken: u32,
    pub(crate) stalled_since: u64,
}

impl Watch {
    pub(crate) fn new(considered: Option<u64>) -> Self {
        Watch {
            considered,
            armed: NONE,
            closing: false,
            taken: 0,
            stalled_since: NONE,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Limits;
    use crate::headers;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};
    use std::time::Duration;

    pub(crate) fn conn_info() -> Arc<ConnInfo> {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        Arc::new(ConnInfo {
            kind: ListenerKind::Https,
            peer: addr,
            tls_version: None,
            tls_suite: None,
            client_cert: None,
            forwarded_for: headers::forwarded_for(addr.ip()),
            certificate: None,
            activity: Activity::new(false, &limits()),
        })
    }

    fn limits() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1,
            max_header_bytes: 8192,
            shutdown_grace: Duration::from_secs(1),
            send_timeout: Duration::from_secs(60),
            max_connections_per_ip: None,
            max_body_bytes: None,
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
}
