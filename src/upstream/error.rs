//! Why an exchange with the upstream failed: one enum, built where the
//! failure happens (the resolver, the TCP connect, the TLS handshake, the
//! response timeout, the response's framing), and mapped to a status and
//! to the `kind` label of `gisgate_upstream_errors_total` here, in one
//! place. Only hyper hides its causes behind one error type; those are
//! sorted once, by type ([`UpstreamError::from_hyper`]), never by message
//! text.

use std::io;
use std::time::Duration;

use http::StatusCode;
use rustls::CertificateError;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot resolve the upstream host: {0}")]
    Dns(#[source] io::Error),
    #[error("connection refused")]
    Refused(#[source] io::Error),
    #[error("connect failed: {0}")]
    Connect(#[source] io::Error),
    /// TCP and the TLS handshake together took longer than
    /// `upstream.connect_timeout`.
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// No response head within `upstream.response_timeout`.
    #[error("upstream response timed out after {0:?}")]
    ResponseTimeout(Duration),
    /// hyper gave up waiting on the connection.
    #[error("upstream connection timed out: {}", Causes(.0))]
    Stalled(hyper::Error),
    /// The handshake failed, or the session later ended with an alert:
    /// rustls' reason, which says whether the certificate was not trusted.
    #[error("TLS to upstream failed: {}", TlsReason(.0))]
    Tls(rustls::Error),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The client's request body was malformed or cut short while it was
    /// being forwarded: the client's error, never an upstream one.
    #[error("request body failed while forwarded: {}", Causes(.0))]
    ClientBody(hyper::Error),
}

/// The upstream spoke, but not HTTP as the gateway forwards it.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The exchange broke (a reset, a malformed response, a stream reset).
    #[error("{}", Causes(.0))]
    Exchange(hyper::Error),
    /// The connection failed during the TLS handshake with no TLS reason
    /// (the upstream closed it, or reset it).
    #[error("TLS handshake with the upstream failed: {0}")]
    Handshake(#[source] io::Error),
    #[error("the upstream closed its new HTTP/2 connection")]
    NewConnectionClosed,
    #[error("upstream switched protocols unasked, or not to websocket; refused")]
    UnaskedSwitch,
    #[error("upstream response with a transfer coding other than chunked; refused")]
    TransferCoding,
}

/// Why a request to the upstream failed, as a bounded metric label (the
/// `kind` of `gisgate_upstream_errors_total`).
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

impl UpstreamError {
    /// How the failure is counted: `None` when it was the client's (its
    /// request body), which is no upstream error.
    pub fn kind(&self) -> Option<UpstreamErrorKind> {
        use UpstreamErrorKind as K;
        match self {
            UpstreamError::Dns(_) | UpstreamError::Refused(_) | UpstreamError::Connect(_) => {
                Some(K::Connect)
            }
            UpstreamError::ConnectTimeout(_)
            | UpstreamError::ResponseTimeout(_)
            | UpstreamError::Stalled(_) => Some(K::Timeout),
            UpstreamError::Tls(_) => Some(K::Tls),
            UpstreamError::Protocol(_) => Some(K::Protocol),
            UpstreamError::ClientBody(_) => None,
        }
    }

    /// What the client is answered: 504 for a timeout, 400 for its own
    /// body, else 502.
    pub fn status(&self) -> StatusCode {
        match self.kind() {
            None => StatusCode::BAD_REQUEST,
            Some(UpstreamErrorKind::Timeout) => StatusCode::GATEWAY_TIMEOUT,
            Some(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// A failed TLS handshake: rustls' reason when the stream carried one.
    pub fn from_handshake(e: io::Error) -> Self {
        match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(tls) => UpstreamError::Tls(tls.clone()),
            None => ProtocolError::Handshake(e).into(),
        }
    }

    /// Sorts what hyper reports by the types in its chain: the client's
    /// body (hyper says its body stream failed), TLS (an alert after the
    /// handshake), a timeout, else a protocol error.
    pub fn from_hyper(e: hyper::Error) -> Self {
        // hyper's client reports a request body that failed as a "user"
        // error whose cause is that body's own (our client connection's)
        // error (hyper's own, or the limit-counting wrapper's).
        let from_body = std::error::Error::source(&e).is_some_and(|s| {
            s.downcast_ref::<hyper::Error>().is_some()
                || s.downcast_ref::<crate::request_body::RequestBodyError>()
                    .is_some()
        });
        if e.is_user() && from_body {
            return UpstreamError::ClientBody(e);
        }
        if let Some(tls) = chain(&e).find_map(|c| c.downcast_ref::<rustls::Error>()) {
            return UpstreamError::Tls(tls.clone());
        }
        let timed_out = chain(&e).any(|c| {
            c.downcast_ref::<hyper::Error>()
                .is_some_and(|h| h.is_timeout())
        });
        match timed_out {
            true => UpstreamError::Stalled(e),
            false => ProtocolError::Exchange(e).into(),
        }
    }

    /// The upstream refused every protocol offered in ALPN
    /// (no_application_protocol).
    pub fn refuses_alpn(&self) -> bool {
        matches!(
            self,
            UpstreamError::Tls(
                rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol)
                    | rustls::Error::NoApplicationProtocol
            )
        )
    }

    /// The upstream did not process the request: its HTTP/2 stream was
    /// above a GOAWAY's last stream, or reset with `REFUSED_STREAM`
    /// (RFC 9113 §8.7), so it may be sent again.
    pub fn refused_unprocessed(&self) -> bool {
        let UpstreamError::Protocol(ProtocolError::Exchange(e)) = self else {
            return false;
        };
        match chain(e).find_map(|c| c.downcast_ref::<h2::Error>()) {
            Some(h2) => {
                (h2.is_go_away() && h2.is_remote())
                    || h2.reason() == Some(h2::Reason::REFUSED_STREAM)
            }
            None => false,
        }
    }
}

/// The error and its causes, stepping into what an `io::Error` wraps
/// (its `source()` skips it).
fn chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| match e.downcast_ref::<io::Error>() {
        Some(io) => match io.get_ref() {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        },
        None => e.source(),
    })
}

/// An error and each cause that adds to it, for the log.
struct Causes<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = self.0.to_string();
        let mut current = self.0.source();
        while let Some(e) = current {
            let s = e.to_string();
            if !out.contains(&s) {
                out.push_str(": ");
                out.push_str(&s);
            }
            current = e.source();
        }
        f.write_str(&out)
    }
}

/// A TLS failure in the operator's terms: an untrusted certificate says so.
struct TlsReason<'a>(&'a rustls::Error);

impl std::fmt::Display for TlsReason<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            rustls::Error::InvalidCertificate(CertificateError::Other(o)) => {
                write!(f, "certificate not trusted: {o}")
            }
            rustls::Error::InvalidCertificate(c) => write!(f, "certificate not trusted: {c:?}"),
            other => write!(f, "{other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io() -> io::Error {
        io::Error::from(io::ErrorKind::ConnectionReset)
    }

    fn label(e: &UpstreamError) -> Option<&'static str> {
        e.kind().map(UpstreamErrorKind::as_str)
    }

    #[test]
    fn connect_failures_are_502s_counted_as_connect() {
        for e in [
            UpstreamError::Dns(io()),
            UpstreamError::Refused(io()),
            UpstreamError::Connect(io()),
        ] {
            assert_eq!(
                (label(&e), e.status()),
                (Some("connect"), StatusCode::BAD_GATEWAY)
            );
        }
    }

    #[test]
    fn timeouts_are_504s_counted_as_timeout() {
        let second = Duration::from_secs(1);
        for e in [
            UpstreamError::ConnectTimeout(second),
            UpstreamError::ResponseTimeout(second),
        ] {
            assert_eq!(
                (label(&e), e.status()),
                (Some("timeout"), StatusCode::GATEWAY_TIMEOUT)
            );
        }
    }

    #[test]
    fn tls_and_protocol_failures_are_502s_with_their_own_labels() {
        let tls = UpstreamError::Tls(rustls::Error::NoApplicationProtocol);
        assert_eq!(
            (label(&tls), tls.status()),
            (Some("tls"), StatusCode::BAD_GATEWAY)
        );
        let protocol = UpstreamError::from(ProtocolError::TransferCoding);
        assert_eq!(
            (label(&protocol), protocol.status()),
            (Some("protocol"), StatusCode::BAD_GATEWAY)
        );
    }

    #[test]
    fn a_handshake_that_failed_on_a_tls_alert_keeps_its_reason() {
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol);
        let e = UpstreamError::from_handshake(io::Error::new(io::ErrorKind::InvalidData, alert));
        assert!(e.refuses_alpn(), "{e:?}");
        assert_eq!(label(&e), Some("tls"));
    }

    #[test]
    fn a_handshake_cut_short_without_a_tls_reason_is_a_protocol_error() {
        let e = UpstreamError::from_handshake(io());
        assert!(matches!(
            e,
            UpstreamError::Protocol(ProtocolError::Handshake(_))
        ));
        assert!(!e.refuses_alpn());
    }

    #[test]
    fn an_untrusted_certificate_is_said_so_in_the_log() {
        let e = UpstreamError::Tls(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert_eq!(
            e.to_string(),
            "TLS to upstream failed: certificate not trusted: UnknownIssuer"
        );
    }
}
