//! HTTP/2 connections to the upstream, each carrying many requests at once.
//!
//! Used when the upstream speaks HTTP/2 (`upstream.prefer_http2`, or an
//! upstream that refuses http/1.1). A request takes a stream on the first
//! connection with fewer than [`MAX_STREAMS`] in flight, so load gathers on
//! few connections and their frames share `writev`s and reads; when every
//! connection is full, one more is opened (one at a time), so a slow request
//! never queues the others behind a stream limit. A stream is held until
//! its response body has been read or dropped. A connection with no stream
//! for `upstream.pool_idle_timeout` is closed; one the upstream closed
//! (GOAWAY) takes no new stream and is dropped.
//!
//! An upstream that closes its connections after N requests (nginx's
//! `keepalive_requests`) catches requests on their way, and those must not
//! become 502s: a request still queued when its connection closed goes on
//! another one, whatever its method (hyper hands it back unsent); one the
//! upstream refused unprocessed (above a GOAWAY's last stream, or
//! `REFUSED_STREAM`, RFC 9113 §8.7) is sent once more if it is a GET, HEAD
//! or OPTIONS without a body, the only requests that can be rebuilt.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::request_body::{RequestBody, RequestBodyError};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::connect::{Connector, UpstreamStream};
use super::error::{ProtocolError, UpstreamError};
use super::upkeep::Upkeep;

/// Requests in flight on one connection before another is opened. RFC 9113
/// §6.5.2 recommends that servers allow at least 100; Tomcat's default is
/// 100 and nginx's 128. An upstream that allows fewer queues the rest on
/// the connection.
pub const MAX_STREAMS: usize = 100;

/// Connections a request is tried on: one that closes under it, one that
/// refuses it, and a last one.
const MAX_ATTEMPTS: u32 = 3;

pub struct Multiplex {
    shared: Arc<Shared>,
}

struct Shared {
    conns: Mutex<Vec<Conn>>,
    /// Held while a connection is being opened: the requests that found
    /// every connection full wait for it instead of each opening its own.
    connecting: tokio::sync::Mutex<()>,
    connector: Connector,
    idle_timeout: Duration,
    upkeep: Upkeep,
}

struct Conn {
    sender: SendRequest<H2Body>,
    load: Arc<Load>,
}

/// Streams in flight on one connection, and when the last one ended.
struct Load {
    streams: AtomicUsize,
    epoch: Instant,
    /// Milliseconds since `epoch` at which the last stream ended.
    last_done_ms: AtomicU64,
}

impl Load {
    fn idle_for(&self, now: Instant) -> Option<Duration> {
        if self.streams.load(Ordering::Acquire) > 0 {
            return None;
        }
        let done = self.epoch + Duration::from_millis(self.last_done_ms.load(Ordering::Relaxed));
        Some(now.saturating_duration_since(done))
    }
}

/// One request's stream: counted against its connection until dropped,
/// which happens when the response body has been read to its end or given
/// up.
pub struct Stream {
    load: Arc<Load>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        let ms = self.load.epoch.elapsed().as_millis() as u64;
        self.load.last_done_ms.store(ms, Ordering::Relaxed);
        self.load.streams.fetch_sub(1, Ordering::Release);
    }
}

impl Multiplex {
    pub fn new(connector: Connector, idle_timeout: Duration) -> Multiplex {
        Multiplex {
            shared: Arc::new(Shared {
                conns: Mutex::new(Vec::new()),
                connecting: tokio::sync::Mutex::new(()),
                connector,
                idle_timeout,
                upkeep: Upkeep::default(),
            }),
        }
    }

    /// Sends `req` (absolute URI, no Host) on a stream of an open
    /// connection, or of a new one when all are full. A request the
    /// connection closed under before sending it goes on another one; one
    /// the upstream refused unprocessed is sent once more if it can be.
    pub async fn send(
        &self,
        req: http::Request<RequestBody>,
    ) -> Result<(http::Response<Incoming>, Stream), UpstreamError> {
        let mut again = replayable(&req);
        let mut req = req.map(|body| match body.is_end_stream() {
            true => H2Body::Empty,
            false => H2Body::Client(body),
        });
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (mut sender, stream) = match self.shared.take() {
                Some(taken) => taken,
                None => self.open().await?,
            };
            let mut refused = match sender.try_send_request(req).await {
                Ok(response) => return Ok((response, stream)),
                Err(refused) => refused,
            };
            let unsent = refused.take_message();
            let error = UpstreamError::from_hyper(refused.into_error());
            if attempts == MAX_ATTEMPTS {
                return Err(error);
            }
            req = match unsent {
                // Never handed to the connection: it closed (GOAWAY, or
                // the upstream went away) while the request waited.
                Some(unsent) => unsent,
                None if error.refused_unprocessed() => again.take().ok_or(error)?,
                None => return Err(error),
            };
        }
    }

    async fn open(&self) -> Result<(SendRequest<H2Body>, Stream), UpstreamError> {
        let _one_at_a_time = self.shared.connecting.lock().await;
        // Another request may have opened one meanwhile.
        if let Some(taken) = self.shared.take() {
            return Ok(taken);
        }
        let tls = self.shared.connector.connect().await?;
        self.adopt(tls).await?;
        self.shared
            .take()
            .ok_or(ProtocolError::NewConnectionClosed.into())
    }

    /// Speaks HTTP/2 on a connection whose ALPN chose h2 and adds it to the
    /// set.
    pub async fn adopt(&self, tls: UpstreamStream) -> Result<(), UpstreamError> {
        let s = &self.shared;
        s.upkeep.start(s, s.idle_timeout / 2, Shared::reap);
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(tls))
            .await
            .map_err(UpstreamError::from_hyper)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("upstream HTTP/2 connection ended: {e}");
            }
        });
        let load = Arc::new(Load {
            streams: AtomicUsize::new(0),
            epoch: Instant::now(),
            last_done_ms: AtomicU64::new(0),
        });
        s.lock().push(Conn { sender, load });
        Ok(())
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A stream on the first open connection with room for one.
    fn take(&self) -> Option<(SendRequest<H2Body>, Stream)> {
        let mut conns = self.lock();
        conns.retain(|c| !c.sender.is_closed());
        let conn = conns
            .iter()
            .find(|c| c.load.streams.load(Ordering::Acquire) < MAX_STREAMS)?;
        conn.load.streams.fetch_add(1, Ordering::AcqRel);
        let stream = Stream {
            load: conn.load.clone(),
        };
        Some((conn.sender.clone(), stream))
    }

    /// Drops connections closed by the upstream or without a stream for
    /// the idle timeout; dropping the last sender closes the connection.
    fn reap(&self, now: Instant) {
        let timeout = self.idle_timeout;
        self.lock().retain(|c| {
            !c.sender.is_closed() && c.load.idle_for(now).is_none_or(|idle| idle < timeout)
        });
    }
}

/// A copy of a request that may be sent again: safe methods without a
/// body (the copy costs a header map per request, so only those).
fn replayable(req: &http::Request<RequestBody>) -> Option<http::Request<H2Body>> {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe || !req.body().is_end_stream() {
        return None;
    }
    let mut copy = http::Request::new(H2Body::Empty);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

/// A request body to the upstream: the client's, or none (a request
/// without a body, and its copy for sending again).
pub enum H2Body {
    Client(RequestBody),
    Empty,
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        match self.get_mut() {
            H2Body::Client(body) => Pin::new(body).poll_frame(cx),
            H2Body::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            H2Body::Client(body) => body.is_end_stream(),
            H2Body::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            H2Body::Client(body) => body.size_hint(),
            H2Body::Empty => SizeHint::with_exact(0),
        }
    }
}
