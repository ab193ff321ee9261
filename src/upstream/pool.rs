//! The keep-alive pool of HTTP/1.1-over-TLS connections to the upstream.
//!
//! A request takes the most recently used idle connection (its TLS session
//! and TCP window are warm), or opens a new one; it never waits for one to
//! come back, as nginx does. A connection goes back to the pool when the
//! response body has been read to its end, straight from the body (no task
//! of its own), and is judged reusable when it is next taken: a connection
//! the upstream closed while idle fails its readiness check and is dropped,
//! and a request that such a connection refused before sending it is tried
//! on the next one.
//!
//! `upstream.pool_max_idle` bounds the idle connections kept over time. A
//! burst may leave more than that idle for a moment (160 HTTP/2 streams
//! need 160 connections); the surplus, oldest first, is closed once it has
//! been idle for [`SURPLUS_GRACE`], as HAProxy purges its idle pool
//! gradually, instead of at once, so that the next burst does not pay a
//! TLS handshake per request on both sides. Every idle connection is closed
//! after `upstream.pool_idle_timeout`. `pool_max_idle = 0` keeps none: each
//! request has a connection of its own.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use super::connect::{Connector, UpstreamStream};
use super::error::UpstreamError;
use super::upkeep::Upkeep;
use crate::config::Upstream;
use crate::request_body::RequestBody;

/// How long idle connections above `pool_max_idle` are kept for the next
/// burst.
pub const SURPLUS_GRACE: Duration = Duration::from_secs(1);

type Sender = SendRequest<RequestBody>;

#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    /// Idle connections, most recently returned last.
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
    connector: Connector,
    upkeep: Upkeep,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

/// A connection lent to one request. Given back with [`Lease::release`]
/// once the response has been read to its end; dropped otherwise, which
/// closes the connection (its response was cut short, or it was upgraded).
pub struct Lease {
    sender: Sender,
    pool: Weak<Shared>,
}

impl Lease {
    /// The connection is not to be used again: released, it is closed.
    pub fn keep_no_longer(&mut self) {
        self.pool = Weak::new();
    }

    pub fn release(self) {
        if let Some(shared) = self.pool.upgrade() {
            shared.put(self.sender);
        }
    }
}

impl Pool {
    pub fn new(settings: &Upstream, connector: Connector) -> Pool {
        Pool {
            shared: Arc::new(Shared {
                idle: Mutex::new(Vec::new()),
                max_idle: settings.pool_max_idle,
                idle_timeout: settings.pool_idle_timeout,
                connector,
                upkeep: Upkeep::default(),
            }),
        }
    }

    /// Sends `req` (origin-form URI, Host set) on a pooled or new
    /// connection. The lease is the connection, to be released when the
    /// response body has been read.
    pub async fn send(
        &self,
        mut req: http::Request<RequestBody>,
    ) -> Result<(http::Response<Incoming>, Lease), UpstreamError> {
        while let Some(mut sender) = self.shared.take() {
            if sender.ready().await.is_err() {
                continue; // closed while idle
            }
            match sender.try_send_request(req).await {
                Ok(response) => return Ok((response, self.lease(sender))),
                Err(mut e) => match e.take_message() {
                    // Not sent: the connection closed under us. Next one.
                    Some(unsent) => req = unsent,
                    None => return Err(UpstreamError::from_hyper(e.into_error())),
                },
            }
        }
        let mut sender = self.connect().await?;
        let response = sender
            .send_request(req)
            .await
            .map_err(UpstreamError::from_hyper)?;
        Ok((response, self.lease(sender)))
    }

    /// Opens a connection and keeps it idle for the next request (how the
    /// upstream's protocol is learned, see `UpstreamClient::protocol`).
    pub async fn open(&self) -> Result<(), UpstreamError> {
        let tls = self.shared.connector.connect().await?;
        self.adopt(tls).await
    }

    /// Speaks HTTP/1.1 on a connection made elsewhere (ALPN chose
    /// http/1.1, or none) and keeps it idle for the next request.
    pub async fn adopt(&self, tls: UpstreamStream) -> Result<(), UpstreamError> {
        let sender = self.handshake(tls).await?;
        self.shared.put(sender);
        Ok(())
    }

    fn lease(&self, sender: Sender) -> Lease {
        Lease {
            sender,
            pool: Arc::downgrade(&self.shared),
        }
    }

    async fn connect(&self) -> Result<Sender, UpstreamError> {
        let tls = self.shared.connector.connect().await?;
        self.handshake(tls).await
    }

    async fn handshake(&self, tls: UpstreamStream) -> Result<Sender, UpstreamError> {
        let s = &self.shared;
        let period = SURPLUS_GRACE.min(s.idle_timeout) / 2;
        s.upkeep.start(s, period, Shared::reap);
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(tls))
            .await
            .map_err(UpstreamError::from_hyper)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("upstream connection ended: {e}");
            }
        });
        Ok(sender)
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self) -> Option<Sender> {
        let mut idle = self.lock();
        while let Some(entry) = idle.pop() {
            if !entry.sender.is_closed() && entry.since.elapsed() < self.idle_timeout {
                return Some(entry.sender);
            }
        }
        None
    }

    fn put(&self, sender: Sender) {
        if sender.is_closed() || self.max_idle == 0 || self.idle_timeout.is_zero() {
            return;
        }
        self.lock().push(Idle {
            sender,
            since: Instant::now(),
        });
    }

    /// Closes what has been idle too long: everything past the idle
    /// timeout, and the oldest surplus above `max_idle` past the grace.
    fn reap(&self, now: Instant) {
        let mut idle = self.lock();
        idle.retain(|e| !e.sender.is_closed() && now.duration_since(e.since) < self.idle_timeout);
        let surplus = idle.len().saturating_sub(self.max_idle);
        let stale = idle
            .iter()
            .take(surplus)
            .take_while(|e| now.duration_since(e.since) >= SURPLUS_GRACE)
            .count();
        idle.drain(..stale);
    }
}
