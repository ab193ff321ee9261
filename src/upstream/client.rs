//! The upstream client: which HTTP version to speak to the GIS server,
//! learned from its first connection, and a request sent over the
//! keep-alive pool or the HTTP/2 connections accordingly.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use hyper::body::Incoming;

use crate::request_body::RequestBody;
use rustls::pki_types::ServerName;

use super::connect::{Connector, UpstreamStream};
use super::error::UpstreamError;
use super::multiplex::{self, Multiplex};
use super::pool::{self, Pool};
use super::verify;
use crate::config::Upstream;
use crate::tls::BuildError;

/// The HTTP version spoken to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1 = 1,
    Http2 = 2,
}

/// Clients for one upstream configuration.
///
/// By default HTTP/1.1 is spoken whenever the upstream offers it: it is
/// what ArcGIS Server's connector speaks, what nginx and HAProxy speak
/// upstream, and it carries the client's Host verbatim over a pool keyed by
/// the upstream alone. With `upstream.prefer_http2` the first connection
/// offers h2 before http/1.1, and if the upstream picks h2 requests are
/// multiplexed over HTTP/2 ([`Multiplex`]): fewer connections, and one
/// `writev` carries many requests' frames. An upstream that refuses
/// http/1.1 is spoken to over HTTP/2 either way. Over HTTP/2 the client's
/// Host becomes `:authority` (RFC 9113 §8.3.1 forbids a Host that differs
/// from it); WebSocket upgrades always take an HTTP/1.1 connection.
pub struct UpstreamClient {
    pub settings: Upstream,
    /// The keep-alive pool for HTTP/1.1 (upgrades included).
    pool: Pool,
    h2: Multiplex,
    /// Offers h2 then http/1.1: the first connection's, with
    /// `prefer_http2`.
    offer_both: Option<Connector>,
    /// The pool's and the HTTP/2 connections' connectors, for
    /// [`UpstreamClient::connect_once`].
    http1_only: Connector,
    h2_only: Connector,
    /// The protocol learned from the first connection: `UNKNOWN`, or an
    /// `UpstreamProtocol` as u8.
    protocol: AtomicU8,
    /// One first connection at a time.
    probing: tokio::sync::Mutex<()>,
}

const UNKNOWN: u8 = 0;

impl UpstreamProtocol {
    fn from_u8(v: u8) -> Option<Self> {
        [UpstreamProtocol::Http1, UpstreamProtocol::Http2]
            .into_iter()
            .find(|p| *p as u8 == v)
    }
}

/// What a response holds of the upstream until its body has been read: an
/// HTTP/1.1 connection of the pool, or a stream of an HTTP/2 connection.
pub enum Lease {
    Connection(pool::Lease),
    Stream(multiplex::Stream),
}

impl Lease {
    /// Its HTTP/1.1 connection is closed once the response has been read,
    /// never pooled (an HTTP/2 stream ends with its response anyway).
    pub fn keep_no_longer(&mut self) {
        if let Lease::Connection(lease) = self {
            lease.keep_no_longer();
        }
    }

    /// The body was read to its end: the connection can serve another
    /// request. (Dropping a lease instead closes an HTTP/1.1 connection,
    /// and ends the HTTP/2 stream.)
    pub fn release(self) {
        match self {
            Lease::Connection(lease) => lease.release(),
            Lease::Stream(stream) => drop(stream),
        }
    }
}

impl UpstreamClient {
    pub fn build(settings: &Upstream) -> Result<Self, BuildError> {
        let tls = verify::tls_config(settings)?;
        let server_name = ServerName::try_from(settings.server_name.clone())
            .map_err(|e| BuildError::new("upstream.server_name", e))?;
        let connector = |alpn: &[&[u8]]| {
            let mut tls = tls.clone();
            tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Connector::new(settings.clone(), Arc::new(tls), server_name.clone())
        };
        Ok(UpstreamClient {
            settings: settings.clone(),
            pool: Pool::new(settings, connector(&[b"http/1.1"])),
            h2: Multiplex::new(connector(&[b"h2"]), settings.pool_idle_timeout),
            http1_only: connector(&[b"http/1.1"]),
            h2_only: connector(&[b"h2"]),
            offer_both: settings
                .prefer_http2
                .then(|| connector(&[b"h2", b"http/1.1"])),
            protocol: AtomicU8::new(UNKNOWN),
            probing: tokio::sync::Mutex::new(()),
        })
    }

    /// Which protocol to speak, learned from the first connection (kept for
    /// the first request) and again after the upstream refused the one in
    /// use. An unreachable upstream is not remembered; HTTP/1.1 is tried.
    pub async fn protocol(&self) -> UpstreamProtocol {
        if let Some(p) = self.known() {
            return p;
        }
        self.probe().await.unwrap_or(UpstreamProtocol::Http1)
    }

    fn known(&self) -> Option<UpstreamProtocol> {
        UpstreamProtocol::from_u8(self.protocol.load(Ordering::Relaxed))
    }

    /// Without `prefer_http2` the first connection offers only http/1.1:
    /// an upstream that refuses it speaks HTTP/2 only. With it, the
    /// upstream's ALPN choice decides.
    async fn probe(&self) -> Option<UpstreamProtocol> {
        let _one_at_a_time = self.probing.lock().await;
        if let Some(p) = self.known() {
            return Some(p);
        }
        let learned = match &self.offer_both {
            Some(both) => {
                let tls = both.connect().await.ok()?;
                if tls.session().alpn_protocol() == Some(b"h2") {
                    self.h2.adopt(tls).await.ok()?;
                    UpstreamProtocol::Http2
                } else {
                    self.pool.adopt(tls).await.ok()?;
                    UpstreamProtocol::Http1
                }
            }
            None => match self.pool.open().await {
                Ok(()) => UpstreamProtocol::Http1,
                Err(e) if e.refuses_alpn() => UpstreamProtocol::Http2,
                Err(_) => return None,
            },
        };
        self.protocol.store(learned as u8, Ordering::Relaxed);
        Some(learned)
    }

    /// One connection opened as this client opens its first (see
    /// `probe`): the same verifier, server name, TLS versions, ALPN offer,
    /// and HTTP/2 when the upstream refuses http/1.1. It is the caller's,
    /// never pooled: `gisgate check --probe` inspects it and sends one
    /// request on it, so that what it reports is what the gateway gets.
    pub async fn connect_once(&self) -> Result<UpstreamStream, UpstreamError> {
        if let Some(both) = &self.offer_both {
            return both.connect().await;
        }
        match self.http1_only.connect().await {
            Err(e) if e.refuses_alpn() => self.h2_only.connect().await,
            connected => connected,
        }
    }

    /// Sends `req`, built for `protocol` (see `proxy::upstream_request`).
    /// An upstream that now refuses the protocol learned earlier (its
    /// configuration changed) is probed again by the next request.
    pub async fn send(
        &self,
        protocol: UpstreamProtocol,
        req: http::Request<RequestBody>,
    ) -> Result<(http::Response<Incoming>, Lease), UpstreamError> {
        let sent = match protocol {
            UpstreamProtocol::Http1 => self
                .pool
                .send(req)
                .await
                .map(|(response, lease)| (response, Lease::Connection(lease))),
            UpstreamProtocol::Http2 => self
                .h2
                .send(req)
                .await
                .map(|(response, stream)| (response, Lease::Stream(stream))),
        };
        if let Err(e) = &sent {
            if e.refuses_alpn() && self.known() == Some(protocol) {
                self.protocol.store(UNKNOWN, Ordering::Relaxed);
            }
        }
        sent
    }
}
