//! The re-encrypting half: a pooled HTTPS client to the GIS server, with
//! the certificate verified by CA bundle, SHA-256 pins, both, or the
//! system's public roots. There is no plaintext mode.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use hyper::body::Incoming;

use crate::request_body::RequestBody;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{aws_lc_rs, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};

use super::certs;
pub use super::connect::{BoxError, ConnectError, Connector, UpstreamStream};
use super::multiplex::{self, Multiplex};
use super::pool::{self, Pool};
use super::resume::TicketStore;
use super::BuildError;
use crate::config::Upstream;

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
        let tls = client_tls_config(settings)?;
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
                Err(e) if refuses_alpn(&e) => UpstreamProtocol::Http2,
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
    pub async fn connect_once(&self) -> Result<UpstreamStream, BoxError> {
        if let Some(both) = &self.offer_both {
            return Ok(both.connect().await?);
        }
        match self.http1_only.connect().await {
            Ok(tls) => Ok(tls),
            Err(e) => {
                let e: BoxError = Box::new(e);
                if refuses_alpn(&e) {
                    Ok(self.h2_only.connect().await?)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Sends `req`, built for `protocol` (see `proxy::upstream_request`).
    /// An upstream that now refuses the protocol learned earlier (its
    /// configuration changed) is probed again by the next request.
    pub async fn send(
        &self,
        protocol: UpstreamProtocol,
        req: http::Request<RequestBody>,
    ) -> Result<(http::Response<Incoming>, Lease), BoxError> {
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
            if refuses_alpn(e) && self.known() == Some(protocol) {
                self.protocol.store(UNKNOWN, Ordering::Relaxed);
            }
        }
        sent
    }
}

/// The upstream refused every protocol offered in ALPN
/// (no_application_protocol).
fn refuses_alpn(e: &BoxError) -> bool {
    let tls = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    matches!(
        tls,
        Some(rustls::Error::AlertReceived(
            rustls::AlertDescription::NoApplicationProtocol
        )) | Some(rustls::Error::NoApplicationProtocol)
    )
}

fn client_tls_config(settings: &Upstream) -> Result<ClientConfig, BuildError> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let algorithms = provider.signature_verification_algorithms;
    let chain = match &settings.ca {
        Some(ca) => {
            let roots = certs::load_ca_bundle(ca).map_err(|e| BuildError::new("upstream.ca", e))?;
            Some(webpki_verifier(roots, &provider)?)
        }
        None if settings.pins.is_empty() => {
            let roots = system_roots()?;
            Some(webpki_verifier(roots, &provider)?)
        }
        None => None,
    };
    let verifier = Arc::new(UpstreamVerifier {
        chain,
        pins: settings.pins.clone(),
        algorithms,
    });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BuildError::new("upstream", e))?;
    // The verifier is always ours: chain and/or pins, never "accept all".
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::store(Arc::new(TicketStore::default()));
    Ok(config)
}

fn webpki_verifier(
    roots: rustls::RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, BuildError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| BuildError::new("upstream.ca", e))
}

fn system_roots() -> Result<rustls::RootCertStore, BuildError> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(BuildError::new("upstream.url", "no upstream.ca or upstream.pin_sha256 given and no system root certificates were found; set upstream.ca (the CA that signed the GIS server's certificate) or pin it with upstream.pin_sha256 (see `gisgate upstream-fingerprint`)"));
    }
    Ok(roots)
}

/// The pin check failed: the leaf is not one of `upstream.pin_sha256`.
#[derive(Debug, thiserror::Error)]
#[error("upstream certificate SHA-256 {got} matches no upstream.pin_sha256")]
pub struct PinMismatch {
    pub got: String,
}

#[derive(Debug)]
struct UpstreamVerifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    pins: Vec<[u8; 32]>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for UpstreamVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(chain) = &self.chain {
            chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        }
        if !self.pins.is_empty() {
            // With pins alone the pin is the trust anchor: a GIS server's own
            // self-signed certificate (CN only, no SAN, SHA-1 signature) is
            // trusted by its fingerprint, which chain validation would refuse.
            let got = certs::sha256_fingerprint(end_entity.as_ref());
            if !self.pins.contains(&got) {
                return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                    rustls::OtherError(Arc::new(PinMismatch {
                        got: certs::colon_hex(&got),
                    })),
                )));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    // The handshake signature is always checked: it proves the server holds
    // the key of the certificate that was pinned or chained.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Why a request to the upstream failed, as a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    Connect,
    Tls,
    Timeout,
    Protocol,
}

impl UpstreamErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::Tls => "tls",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Protocol => "protocol",
        }
    }
}

/// Whose fault a failed exchange was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The upstream's (or the way to it): 502/504, counted by kind.
    Upstream(UpstreamErrorKind),
    /// The client's request body was malformed or cut short while it was
    /// being forwarded: the client's error (400), never an upstream one.
    ClientBody,
}

/// Sorts a failed exchange by the types in its error chain, never by
/// message text: refused, timed out, not resolved (`ConnectError`), TLS
/// (`rustls::Error`), the client's body (`hyper` says its body stream
/// failed), else a protocol error. The sentence is for the log.
pub fn classify(err: &(dyn std::error::Error + 'static)) -> (Failure, String) {
    let kind = failure_of(err);
    let text = match chain(err).find_map(|e| e.downcast_ref::<rustls::Error>()) {
        Some(tls) => describe_tls(tls),
        None => error_chain(err),
    };
    (kind, text)
}

fn failure_of(err: &(dyn std::error::Error + 'static)) -> Failure {
    use UpstreamErrorKind as K;
    // hyper's client reports a request body that failed as a "user" error
    // whose cause is that body's own (our client connection's) error.
    if let Some(h) = err.downcast_ref::<hyper::Error>() {
        let from_body = std::error::Error::source(h)
            .is_some_and(|s| s.downcast_ref::<hyper::Error>().is_some());
        if h.is_user() && from_body {
            return Failure::ClientBody;
        }
    }
    for e in chain(err) {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return Failure::Upstream(K::Tls);
        }
        if let Some(c) = e.downcast_ref::<ConnectError>() {
            return Failure::Upstream(match c {
                ConnectError::Timeout(_) => K::Timeout,
                _ => K::Connect,
            });
        }
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_timeout())
        {
            return Failure::Upstream(K::Timeout);
        }
    }
    Failure::Upstream(K::Protocol)
}

/// The error and its causes, stepping into what an `io::Error` wraps
/// (its `source()` skips it).
pub(crate) fn chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| match e.downcast_ref::<std::io::Error>() {
        Some(io) => match io.get_ref() {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        },
        None => e.source(),
    })
}

fn describe_tls(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(o)) => {
            format!("TLS to upstream failed: certificate not trusted: {o}")
        }
        rustls::Error::InvalidCertificate(c) => {
            format!("TLS to upstream failed: certificate not trusted: {c:?}")
        }
        other => format!("TLS to upstream failed: {other}"),
    }
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut current = err.source();
    while let Some(e) = current {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        current = e.source();
    }
    out
}
