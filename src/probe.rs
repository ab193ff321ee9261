//! `gisgate check --probe`: one connection to the upstream, made by the
//! gateway's own upstream client (same CA bundle, pins, server name, TLS
//! versions, ALPN), what it saw, and one GET to show that a GIS server
//! answers. A wrong pin is then found before the first 502.

use std::fmt::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::CertificateError;

use crate::config::Upstream;
use crate::diff;
use crate::tls::{certs, suites};
use crate::upstream::client::UpstreamClient;
use crate::upstream::connect::UpstreamStream;
use crate::upstream::error::UpstreamError;
use crate::upstream::verify::PinMismatch;

/// What `--probe-path` is when not given: ArcGIS Server's REST info
/// resource, which answers without a token.
pub const DEFAULT_PATH: &str = "/arcgis/rest/info?f=json";

/// How long the probe waits for the response when `upstream.response_timeout`
/// is longer (its default, 300 s, suits a long export, not a check).
const RESPONSE_LIMIT: Duration = Duration::from_secs(30);

/// What the probe saw, line by line, and why it failed if it did.
#[derive(Debug, Default)]
pub struct Probe {
    /// For stdout: the connection, certificate and response.
    pub seen: String,
    /// For stderr, and exit 1.
    pub failure: Option<String>,
}

/// Connects with `client` and sends `GET path`.
pub async fn probe(client: &UpstreamClient, path: &str) -> Probe {
    let s = &client.settings;
    let mut probe = Probe::default();
    let _ = writeln!(
        probe.seen,
        "probe of {} (verified by {}; name {}):",
        s.url(),
        s.verification(),
        s.server_name
    );
    let started = Instant::now();
    let connected = tokio::time::timeout(s.connect_timeout, client.connect_once()).await;
    let tls = match connected {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            probe.failure = Some(connect_failure(s, &e));
            return probe;
        }
        Err(_) => {
            probe.failure = Some(format!(
                "no TLS connection to {}:{} within upstream.connect_timeout ({})",
                s.host,
                s.port,
                humantime::format_duration(s.connect_timeout)
            ));
            return probe;
        }
    };
    describe_connection(s, &tls, started.elapsed(), &mut probe.seen);
    let limit = s.response_timeout.min(RESPONSE_LIMIT);
    match tokio::time::timeout(limit, get(s, tls, path)).await {
        Ok(Ok((status, content_type))) => {
            let _ = writeln!(
                probe.seen,
                "  {:<16} GET {path} -> {}{}",
                "response",
                status_text(status),
                content_type.map(|t| format!(" ({t})")).unwrap_or_default()
            );
            if !status.is_success() {
                probe.failure = Some(format!(
                    "GET {path} answered {}: the upstream is reachable and trusted, but this is not a GIS server answering at that path (see --probe-path)",
                    status_text(status)
                ));
            }
        }
        Ok(Err(e)) => {
            probe.failure = Some(format!("GET {path} failed: {e}"));
        }
        Err(_) => {
            probe.failure = Some(format!(
                "GET {path}: no response within {}",
                humantime::format_duration(limit)
            ));
        }
    }
    probe
}

fn status_text(status: StatusCode) -> String {
    format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .trim_end()
    .to_string()
}

fn describe_connection(s: &Upstream, tls: &UpstreamStream, took: Duration, out: &mut String) {
    let session = tls.session();
    let mut line = |k: &str, v: String| {
        let _ = writeln!(out, "  {k:<16} {v}");
    };
    let peer = tls
        .tcp()
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| format!("{}:{}", s.host, s.port));
    line("connected", format!("{peer} in {} ms", took.as_millis()));
    line(
        "tls",
        format!(
            "{}, {}, ALPN {}",
            session
                .protocol_version()
                .map(suites::version_name)
                .unwrap_or("?"),
            session
                .negotiated_cipher_suite()
                .map(|c| suites::suite_name(&c))
                .unwrap_or("?"),
            session
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_else(|| "none (HTTP/1.1)".into())
        ),
    );
    let Some(leaf) = session.peer_certificates().and_then(|c| c.first()) else {
        return;
    };
    let fingerprint = certs::colon_hex(&certs::sha256_fingerprint(leaf.as_ref()));
    match certs::cert_facts(leaf) {
        Ok(f) => {
            let mut sans = f.dns_names.clone();
            sans.extend(f.ip_addresses.iter().map(|i| i.to_string()));
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            line("subject", f.owner.clone());
            line("SANs", format!("[{}]", sans.join(", ")));
            line("issuer", f.issuer.clone());
            line(
                "expires",
                format!(
                    "{} ({} days left)",
                    diff::unix_time(f.not_after),
                    (f.not_after - now) / 86_400
                ),
            );
        }
        Err(e) => line("certificate", format!("cannot be read: {e}")),
    }
    line("SHA-256", fingerprint);
    line(
        "pin",
        if s.pins.is_empty() {
            "none configured (upstream.pin_sha256)".into()
        } else {
            format!("matched one of {} upstream.pin_sha256", s.pins.len())
        },
    );
}

/// Why the probe's GET failed.
#[derive(Debug, thiserror::Error)]
enum GetError {
    #[error("--probe-path is not a valid request target: {0}")]
    Target(#[from] http::Error),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

impl From<hyper::Error> for GetError {
    fn from(e: hyper::Error) -> Self {
        GetError::Upstream(UpstreamError::from_hyper(e))
    }
}

/// `GET path` on the probe's connection, as HTTP/2 when ALPN chose it.
async fn get(
    s: &Upstream,
    tls: UpstreamStream,
    path: &str,
) -> Result<(StatusCode, Option<String>), GetError> {
    let h2 = tls.session().alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(tls);
    let response = if h2 {
        let req = Request::get(format!("https://{}{path}", s.origin)).body(Empty::<Bytes>::new())?;
        let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(io)
            .await?;
        tokio::spawn(conn);
        sender.send_request(req).await?
    } else {
        let req = Request::get(path)
            .header(header::HOST, s.origin.as_str())
            .header(
                header::USER_AGENT,
                concat!("gisgate-probe/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        sender.send_request(req).await?
    };
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // Read to the end: an answer cut short is a failure too.
    response.into_body().collect().await?;
    Ok((status, content_type))
}

/// Why no verified connection was made, in the operator's terms.
fn connect_failure(s: &Upstream, err: &UpstreamError) -> String {
    let at = format!("{}:{}", s.host, s.port);
    match err {
        UpstreamError::Refused(_) => format!(
            "connection refused by {at}: is the GIS server running, and is the port in upstream.url right?"
        ),
        UpstreamError::ConnectTimeout(d) => format!(
            "no TCP connection to {at} within upstream.connect_timeout ({}): a firewall, or a wrong address",
            humantime::format_duration(*d)
        ),
        UpstreamError::Dns(e) => format!("cannot resolve {}: {e}", s.host),
        UpstreamError::Connect(e) => format!("cannot connect to {at}: {e}"),
        UpstreamError::Tls(tls) => tls_failure(s, tls),
        other => other.to_string(),
    }
}

fn tls_failure(s: &Upstream, e: &rustls::Error) -> String {
    let rustls::Error::InvalidCertificate(cert) = e else {
        return format!("TLS handshake with the upstream failed: {e}");
    };
    let why = match cert {
        CertificateError::Other(o) => match o.0.downcast_ref::<PinMismatch>() {
            Some(p) => format!(
                "its SHA-256 {} matches no upstream.pin_sha256 (if the GIS server's certificate was replaced on purpose, pin the new one: gisgate upstream-fingerprint {})",
                p.got,
                s.url()
            ),
            None => o.to_string(),
        },
        CertificateError::UnknownIssuer => match &s.ca {
            Some(ca) => format!(
                "it is not signed by a CA in upstream.ca ({})",
                ca.display()
            ),
            None => "it is not signed by a CA in the system's public roots (set upstream.ca, or pin it with upstream.pin_sha256)".into(),
        },
        CertificateError::BadSignature => match &s.ca {
            Some(ca) => format!(
                "its signature does not verify with the CA in upstream.ca ({}) that bears its issuer's name: another CA of the same name signed it",
                ca.display()
            ),
            None => "its signature does not verify".into(),
        },
        CertificateError::NotValidForName => format!(
            "it is not valid for upstream.server_name {:?}",
            s.server_name
        ),
        CertificateError::NotValidForNameContext { presented, .. } => format!(
            "it is not valid for upstream.server_name {:?}; it names [{}]",
            s.server_name,
            presented.join(", ")
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "it has expired".into()
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "it is not valid yet (check the clocks)".into()
        }
        other => format!("{other:?}"),
    };
    format!("the upstream's certificate is not trusted: {why}")
}
