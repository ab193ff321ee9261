//! Opening a client connection: the TLS handshake within
//! `limits.header_read_timeout`, counted by version, suite and group (or by
//! why it failed), and the connection's `ConnInfo`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::watch;

use super::serve::serve_http;
use super::service::Service;
use crate::client_cert::ClientCert;
use crate::conn::{Activity, ConnInfo, ListenerKind};
use crate::headers;
use crate::observe::metrics;
use crate::tls::server::ServerSides;
use crate::tls::stream::TlsStream;
use crate::tls::{client_auth, hello, stream, suites};
use rustls::server::UnbufferedServerConnection;
use rustls_pki_types::CertificateDer;

/// Completes the TLS handshake (HTTPS) and returns the connection's HTTP
/// side, ready to run; `None` when the handshake failed or timed out.
pub(super) async fn open(
    gw: Arc<dyn Service>,
    kind: ListenerKind,
    tcp: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    drain: watch::Receiver<bool>,
) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
    let live = gw.live();
    let limits = live.settings.limits.clone();
    let tls = live.tls.as_ref().map(|t| t.sides.clone());
    // In HTTPS mode the HTTP listener only redirects; a browser that holds
    // the site's HSTS upgrades `http://gis:6080/` to `https://gis:6080/`
    // itself (RFC 6797 §8.3 keeps the port), so a ClientHello there gets a
    // handshake and then the same redirect, to the HTTPS port.
    let tls_on_http = kind == ListenerKind::Http && !live.settings.server.protocol.http_serves();
    drop(live);
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
            local,
            tls_version: None,
            tls_suite: None,
            client_cert: None,
            forwarded_for: headers::forwarded_for(peer.ip()),
            activity: Activity::new(true, &limits),
        });
        return Some(serve_http(gw, tcp, info, false, &limits, drain));
    };
    let (stream, asks_client_cert) =
        match tokio::time::timeout(limits.header_read_timeout, handshake(tcp, &sides)).await {
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
        local,
        tls_version: protocol_version,
        tls_suite: suite,
        client_cert,
        forwarded_for: headers::forwarded_for(peer.ip()),
        activity: Activity::new(!h2, &limits),
    });
    Some(serve_http(gw, stream, info, h2, &limits, drain))
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
