//! Opening a client connection: the PROXY protocol header when
//! `server.proxy_protocol` asks for one, then the TLS handshake, each
//! within `limits.header_read_timeout` and counted (or why it failed), and
//! the connection's `ConnInfo`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;

use super::admit_per_ip;
use super::per_ip::PerIpGuard;
use super::proxy_protocol::{self, ProxyHeaderError};
use super::serve::serve_http;
use super::service::Service;
use crate::client_cert::ClientCert;
use crate::config::ProxyProtocolMode;
use crate::conn::{Activity, ConnInfo, ListenerKind};
use crate::headers;
use crate::observe::metrics;
use crate::tls::server::ServerSides;
use crate::tls::stream::TlsStream;
use crate::tls::{chosen_cert, client_auth, hello, stream, suites};
use rustls::server::UnbufferedServerConnection;
use rustls_pki_types::CertificateDer;

/// Reads the PROXY header (when `server.proxy_protocol` asks for one),
/// completes the TLS handshake (HTTPS) and returns the connection's HTTP
/// side, ready to run, with the connection's place in its client's count
/// (`limits.max_connections_per_ip`); `None` when any of them failed or
/// timed out.
pub(super) async fn open(
    gw: Arc<dyn Service>,
    kind: ListenerKind,
    mut tcp: TcpStream,
    peer: SocketAddr,
    drain: watch::Receiver<bool>,
) -> Option<(Pin<Box<dyn Future<Output = ()> + Send>>, Option<PerIpGuard>)> {
    let live = gw.live();
    let limits = live.settings.limits.clone();
    // The policy in force when the connection arrived; the peer is checked
    // before a byte is read.
    let proxy = &live.settings.server.proxy_protocol;
    let proxy_mode = match kind {
        ListenerKind::Https | ListenerKind::Http if proxy.is_on() => {
            if !proxy.trusts(peer.ip()) {
                refuse_proxy_header(peer, &ProxyHeaderError::UntrustedPeer);
                return None;
            }
            Some(proxy.mode)
        }
        _ => None,
    };
    let tls = live.tls.as_ref().map(|t| t.sides.clone());
    // In HTTPS mode the HTTP listener only redirects; a browser that holds
    // the site's HSTS upgrades `http://gis:6080/` to `https://gis:6080/`
    // itself (RFC 6797 §8.3 keeps the port), so a ClientHello there gets a
    // handshake and then the same redirect, to the HTTPS port.
    let tls_on_http = kind == ListenerKind::Http && !live.settings.server.protocol.http_serves();
    drop(live);
    // Before TLS or HTTP: the balancer's header comes first. From here on
    // the client's address is the one it carries.
    let peer = match proxy_mode {
        Some(mode) => client_address(&mut tcp, peer, mode, limits.header_read_timeout).await?,
        None => peer,
    };
    let per_ip = admit_per_ip(&gw, kind, peer)?;
    let tls = match kind {
        ListenerKind::Https => Some(tls?),
        ListenerKind::Http if tls_on_http => match tls {
            Some(sides) if starts_with_tls(&tcp, limits.header_read_timeout).await? => Some(sides),
            _ => None,
        },
        _ => None,
    };
    let Some(sides) = tls else {
        let info = Arc::new(ConnInfo {
            kind,
            peer,
            tls_version: None,
            tls_suite: None,
            client_cert: None,
            forwarded_for: headers::forwarded_for(peer.ip()),
            certificate: None,
            activity: Activity::new(true, &limits),
        });
        return Some((serve_http(gw, tcp, info, false, &limits, drain), per_ip));
    };
    let handshake = tokio::time::timeout(limits.header_read_timeout, handshake(tcp, &sides));
    let (handshake, certificate) = chosen_cert::noting_certificate(handshake).await;
    let (stream, asks_client_cert) = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            metrics::tls_handshake_error(handshake_error_reason(&e));
            if let Some(result) = tls_error(&e).and_then(client_auth::failure_label) {
                metrics::client_cert_verification(result);
            }
            tracing::debug!(%peer, "TLS handshake failed: {e}");
            return None;
        }
        Err(_) => {
            metrics::tls_handshake_error("timeout");
            return None;
        }
    };
    let session = stream.session();
    let protocol_version = session.protocol_version();
    let version = protocol_version.map(suites::version_name);
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
    let client_cert = asks_client_cert
        .then(|| verified_client_cert(session.peer_certificates(), peer))
        .flatten();
    let info = Arc::new(ConnInfo {
        kind,
        peer,
        tls_version: protocol_version,
        tls_suite: suite,
        client_cert,
        forwarded_for: headers::forwarded_for(peer.ip()),
        certificate,
        activity: Activity::new(!h2, &limits),
    });
    Some((serve_http(gw, stream, info, h2, &limits, drain), per_ip))
}

/// The client's address from the PROXY header on `tcp` (the TCP peer's
/// when the header carries none); `None` when the connection must close:
/// no valid header of an accepted version within `within`.
async fn client_address(
    tcp: &mut TcpStream,
    peer: SocketAddr,
    mode: ProxyProtocolMode,
    within: Duration,
) -> Option<SocketAddr> {
    let read = proxy_protocol::read_header(tcp, mode);
    let carried = match tokio::time::timeout(within, read).await {
        Ok(carried) => carried,
        Err(_) => Err(ProxyHeaderError::Timeout),
    };
    match carried {
        Ok(client) => Some(client.unwrap_or(peer)),
        Err(e) => {
            refuse_proxy_header(peer, &e);
            None
        }
    }
}

/// The TLS handshake with the server config the ClientHello's server name
/// chooses (read first only when the choice depends on it); and whether
/// that config asked for a client certificate.
async fn handshake(
    tcp: TcpStream,
    sides: &ServerSides,
) -> io::Result<(TlsStream<UnbufferedServerConnection>, bool)> {
    let side = if sides.by_server_name() {
        let name = hello::peek_server_name(&tcp).await?;
        sides.for_name(name.as_deref())
    } else {
        &sides.default
    };
    let stream = stream::accept(tcp, side.config.clone()).await?;
    Ok((stream, side.asks_client_cert))
}

/// The client's certificate, counted: rustls has verified it (a handshake
/// with one that does not verify fails), or there is none (mode
/// "optional").
fn verified_client_cert(
    chain: Option<&[CertificateDer<'static>]>,
    peer: SocketAddr,
) -> Option<Arc<ClientCert>> {
    let Some(leaf) = chain.and_then(|c| c.first()) else {
        metrics::client_cert_verification("none");
        return None;
    };
    metrics::client_cert_verification("ok");
    match ClientCert::from_der(leaf) {
        Ok(cert) => Some(Arc::new(cert)),
        Err(e) => {
            // Verified but unreadable here: the connection goes on as one
            // without a certificate, which the admin gate refuses.
            tracing::warn!(%peer, "{e}");
            None
        }
    }
}

/// Counts and logs a connection closed for its PROXY header.
fn refuse_proxy_header(peer: SocketAddr, e: &ProxyHeaderError) {
    metrics::proxy_protocol_error(e.reason());
    tracing::debug!(%peer, "connection closed: {e}");
}

fn tls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
}

/// Whether a connection's first byte opens a TLS handshake record (22);
/// an HTTP request starts with a method's letter. `None` when the client
/// sends nothing within `within` (the header-read timeout, which would
/// close it anyway) or the connection fails.
async fn starts_with_tls(tcp: &TcpStream, within: std::time::Duration) -> Option<bool> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(within, tcp.peek(&mut first)).await {
        Ok(Ok(1)) => Some(first[0] == 22),
        _ => None,
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
