//! `gisgate demo` and `gisgate demo-upstream`: a built-in HTTPS mock GIS
//! server on loopback, and the gateway in front of it with the shipped
//! `gateway.toml`, so a user sees the product work in one command.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::{ConfigErrors, Settings};
use crate::devpki;
use crate::gateway::Adjust;
use crate::tls::certs;

/// The shipped, documented sample config; the demo writes it next to
/// `certs/` when the working directory has none.
pub const SHIPPED_CONFIG: &str = include_str!("../gateway.toml");
/// Where the shipped config expects the mock GIS server.
pub const DEMO_UPSTREAM: &str = "127.0.0.1:7443";

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("gateway.toml: {0}")]
    WriteConfig(std::io::Error),
    #[error(transparent)]
    Certificates(#[from] certs::CertError),
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error("mock GIS server: {0}")]
    MockTls(#[from] rustls::Error),
    #[error("mock GIS server cannot listen on {addr}: {source}")]
    MockListen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// `listen_all`: the listen addresses of gateway.toml as written (the
/// sample's `0.0.0.0`, every interface); otherwise the same ports on
/// loopback only, since a demo's dev CA key sits in `certs/`.
pub async fn run(listen_all: bool) -> Result<(), DemoError> {
    let config_path = PathBuf::from("gateway.toml");
    if !config_path.exists() {
        std::fs::write(&config_path, SHIPPED_CONFIG).map_err(DemoError::WriteConfig)?;
        eprintln!("wrote gateway.toml (the shipped sample)");
    }
    let pki = devpki::ensure_dev_pki(Path::new("certs"))?;
    if pki.created {
        eprintln!("made development certificates in certs/ (a dev CA for localhost only; never use them in production)");
    }
    let mut settings = crate::config::load(&config_path)?;
    crate::logging::init(&settings.log);
    let adjust: Option<Adjust> = (!listen_all).then_some(loopback_only);
    if let Some(adjust) = adjust {
        adjust(&mut settings);
    }
    let upstream_addr: SocketAddr = DEMO_UPSTREAM.parse().expect("static address");
    let upstream = bind_mock(upstream_addr, &pki.upstream_cert, &pki.upstream_key).await?;
    tokio::spawn(serve_mock(upstream.0, upstream.1));
    let https = settings.server.https_listen;
    let http = settings.server.http_listen;
    let observe = settings.observability_listen;
    let stop = crate::run::shutdown_signal();
    let gw = crate::run::start_adjusted(settings, adjust).await?;
    print_curl_lines(https, http, observe, listen_all);
    stop.await;
    tracing::info!("shutdown signal received");
    gw.shutdown().await;
    Ok(())
}

/// Printed with one write, whose failure is ignored: `gisgate demo | head`
/// (or a test that stops reading once the demo runs) must not end the demo.
fn print_curl_lines(
    https: Option<SocketAddr>,
    http: Option<SocketAddr>,
    observe: Option<SocketAddr>,
    listen_all: bool,
) {
    use std::fmt::Write as _;
    use std::io::Write as _;
    let port = |a: Option<SocketAddr>, d: u16| a.map(|a| a.port()).unwrap_or(d);
    let (hs, h, o) = (
        port(https, 6443),
        port(http, 6080),
        observe.map(|a| a.to_string()),
    );
    let mut t = String::new();
    let _ = writeln!(t, "\ngisgate demo is running: a mock GIS server on https://{DEMO_UPSTREAM} behind the gateway.");
    let _ = writeln!(t, "{}", reach(listen_all, [https, http, observe]));
    let _ = writeln!(t, "Try (from this directory):\n");
    let _ = writeln!(
        t,
        "  curl --cacert certs/ca.crt 'https://localhost:{hs}/arcgis/rest/info?f=json'"
    );
    let _ = writeln!(
        t,
        "  curl --cacert certs/ca.crt 'https://localhost:{hs}/arcgis/rest/services?f=pjson'"
    );
    let _ = writeln!(t, "  curl --cacert certs/ca.crt -i 'https://localhost:{hs}/arcgis/rest/echo?f=json'   # what the GIS server received");
    let _ = writeln!(t, "  curl -i 'http://localhost:{h}/arcgis/rest/info?f=json'                          # redirect to https");
    let _ = writeln!(t, "  curl --cacert certs/ca.crt -i 'https://localhost:{hs}/arcgis/admin/'                # admin: allowed from loopback");
    let _ = writeln!(t, "  curl --cacert certs/ca.crt -i --path-as-is 'https://localhost:{hs}/arcgis/%2561dmin' # double encoding: 400");
    if let Some(o) = o {
        let _ = writeln!(t, "  curl -s http://{o}/metrics | grep ^gisgate_");
        let _ = writeln!(t, "  curl -s 'http://{o}/security/config?f=pjson'");
    }
    let _ = writeln!(
        t,
        "\nEdit gateway.toml while it runs: changes apply without a restart. Ctrl-C stops.\n"
    );
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(t.as_bytes()).and_then(|()| out.flush());
}

/// Moves every listener that is not on loopback to loopback, same port:
/// 127.0.0.1 for IPv4 addresses, ::1 for IPv6 ones.
pub fn loopback_only(s: &mut Settings) {
    for addr in [
        &mut s.server.https_listen,
        &mut s.server.http_listen,
        &mut s.observability_listen,
    ]
    .into_iter()
    .flatten()
    {
        if !addr.ip().is_loopback() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
        }
    }
}

/// Who can reach the demo, and how to change that.
fn reach(listen_all: bool, addrs: [Option<SocketAddr>; 3]) -> String {
    let list = addrs
        .iter()
        .flatten()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if listen_all {
        format!(
            "Listening on the addresses in gateway.toml ({list}): other machines can reach it.\n"
        )
    } else {
        format!("Listening on loopback only ({list}); `gisgate demo --listen-all` listens on the addresses in gateway.toml (0.0.0.0: every interface).\n")
    }
}

/// `gisgate demo-upstream --listen ADDR`: only the mock GIS server.
pub async fn run_upstream(
    listen: SocketAddr,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<(), DemoError> {
    let (cert, key) = match (cert, key) {
        (Some(c), Some(k)) => (c, k),
        _ => {
            let pki = devpki::ensure_dev_pki(Path::new("certs"))?;
            (pki.upstream_cert, pki.upstream_key)
        }
    };
    let (listener, acceptor) = bind_mock(listen, &cert, &key).await?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("mock GIS server on https://{addr}");
    }
    // As a container's first process it must stop when the engine asks.
    tokio::select! {
        _ = serve_mock(listener, acceptor) => {}
        _ = crate::run::shutdown_signal() => {}
    }
    Ok(())
}

async fn bind_mock(
    addr: SocketAddr,
    cert: &Path,
    key: &Path,
) -> Result<(TcpListener, TlsAcceptor), DemoError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = certs::load_cert_chain(cert)?;
    let key = certs::load_private_key(key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| DemoError::MockListen { addr, source })?;
    Ok((listener, TlsAcceptor::from(Arc::new(config))))
}

async fn serve_mock(listener: TcpListener, acceptor: TlsAcceptor) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let io = TokioIo::new(tls);
            let svc = service_fn(|req| async { Ok::<_, Infallible>(mock_response(req).await) });
            let _ = if h2 {
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(io, svc)
                    .await
            } else {
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await
            };
        });
    }
}

type MockBody = http_body_util::Either<Full<Bytes>, RepeatBody>;

/// Answers like a small ArcGIS Server site; anything else is echoed so a
/// user can see exactly what the gateway forwarded. `/bench/bytes/N`
/// streams N bytes and `/bench/upload` counts a streamed upload, to measure
/// the gateway with bodies of any size.
async fn mock_response(req: Request<Incoming>) -> Response<MockBody> {
    let path = req.uri().path().to_string();
    if let Some(n) = path
        .strip_prefix("/bench/bytes/")
        .and_then(|n| n.parse::<u64>().ok())
    {
        let mut r = Response::new(http_body_util::Either::Right(RepeatBody::new(n)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        return r;
    }
    if path == "/bench/upload" {
        let mut body = req.into_body();
        let mut n: u64 = 0;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => n += f.data_ref().map(|d| d.len() as u64).unwrap_or(0),
                Err(_) => break,
            }
        }
        return Response::new(http_body_util::Either::Left(Full::new(Bytes::from(
            json!({ "bytes": n }).to_string(),
        ))));
    }
    let body = match path.as_str() {
        "/arcgis/rest/info" => json!({
            "currentVersion": 11.3,
            "fullVersion": "11.3.0",
            "owningSystemUrl": null,
            "authInfo": { "isTokenBasedSecurity": true, "tokenServicesUrl": "/arcgis/tokens/", "shortLivedTokenValidity": 60 }
        }),
        "/arcgis/rest/services" => json!({
            "currentVersion": 11.3,
            "folders": ["Utilities"],
            "services": [
                { "name": "SampleWorldCities", "type": "MapServer" },
                { "name": "Parcels", "type": "FeatureServer" }
            ]
        }),
        p if p == "/arcgis/admin" || p.starts_with("/arcgis/admin/") => json!({
            "resources": ["machines", "clusters", "services", "security", "system", "logs"],
            "currentVersion": 11.3,
            "echo": echo(&req),
        }),
        _ => {
            let received = echo(&req);
            let bytes = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes().len())
                .unwrap_or(0);
            let mut v = received;
            v["bodyBytes"] = json!(bytes);
            v
        }
    };
    let mut r = Response::new(http_body_util::Either::Left(Full::new(Bytes::from(
        body.to_string(),
    ))));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn echo(req: &Request<Incoming>) -> serde_json::Value {
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .filter(|(n, _)| *n != header::AUTHORIZATION && *n != header::COOKIE)
        .map(|(n, v)| (n.to_string(), json!(String::from_utf8_lossy(v.as_bytes()))))
        .collect();
    json!({
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "version": format!("{:?}", req.version()),
        "headers": headers,
    })
}

/// `len` bytes of `x`, produced in 64 KiB frames as they are sent: a body
/// of any size in constant memory.
pub struct RepeatBody {
    left: u64,
    chunk: Bytes,
}

impl RepeatBody {
    pub fn new(len: u64) -> Self {
        RepeatBody {
            left: len,
            chunk: Bytes::from(vec![b'x'; 64 * 1024]),
        }
    }
}

impl http_body::Body for RepeatBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64) as usize;
        self.left -= n as u64;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(self.chunk.slice(..n)))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}
