//! The integration harness: a test PKI made with rcgen at test time, an
//! in-process HTTPS upstream on loopback that records what reaches it, a
//! gateway started from a TOML overlay, and real TLS clients.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use gisgate::gateway::Gateway;
use gisgate::listen::ListenerKind;

mod env;
#[allow(unused_imports)] // not every test file starts an environment
pub use env::{Env, Http, Running};

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

// ---------------------------------------------------------------- PKI

pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Issued {
    /// The certificate chain and key, parsed from their PEM.
    pub fn chain_and_key(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        use rustls::pki_types::pem::PemObject;
        let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        (chain, key)
    }
}

/// A test CA that issues leaf certificates, all made at test time.
pub struct TestCa {
    pub dir: PathBuf,
    params: CertificateParams,
    key: KeyPair,
    pub cert_pem: String,
}

impl TestCa {
    pub fn new(dir: &Path) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "gisgate test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        let ca = TestCa {
            dir: dir.to_path_buf(),
            params,
            key,
            cert_pem: cert.pem(),
        };
        std::fs::write(dir.join("ca.crt"), &ca.cert_pem).unwrap();
        ca
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A leaf for `names` (DNS names or IPs) with an ECDSA P-256 key.
    pub fn issue(&self, names: &[&str]) -> Issued {
        self.issue_with(names, KeyPair::generate().unwrap())
    }

    /// A leaf with an RSA-2048 key.
    pub fn issue_rsa(&self, names: &[&str]) -> Issued {
        self.issue_with(
            names,
            KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap(),
        )
    }

    fn issue_with(&self, names: &[&str], key: KeyPair) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().unwrap()),
            })
            .collect();
        let mut serial = [0u8; 16];
        serial[0] = 0x4a;
        serial[1..9].copy_from_slice(&rand_u64().to_be_bytes());
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let issuer = rcgen::Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// Writes a leaf's chain and key as `<name>.crt` / `<name>.key`.
    pub fn write(&self, name: &str, issued: &Issued) -> (PathBuf, PathBuf) {
        let cert = self.dir.join(format!("{name}.crt"));
        let key = self.dir.join(format!("{name}.key"));
        std::fs::write(&cert, &issued.cert_pem).unwrap();
        std::fs::write(&key, &issued.key_pem).unwrap();
        (cert, key)
    }

    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        let der =
            rustls::pki_types::pem::PemObject::from_pem_slice(self.cert_pem.as_bytes()).unwrap();
        roots.add(der).unwrap();
        roots
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    h.finish()
}

// ---------------------------------------------------------------- upstream

/// What the upstream received for one request.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request's URI authority (HTTP/2's `:authority`), if any.
    pub authority: Option<String>,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub version: http::Version,
    pub headers: HeaderMap,
}

impl Seen {
    /// Came over HTTP/2 with the client's host as `:authority`, no Host
    /// beside it, and the host in X-Forwarded-Host.
    pub fn assert_http2_for_host(&self, host: &str) {
        assert_eq!(self.version, http::Version::HTTP_2);
        assert_eq!(self.authority.as_deref(), Some(host));
        assert!(
            !self.headers.contains_key("host"),
            "no Host that could differ from :authority"
        );
        assert_eq!(self.headers["x-forwarded-host"], host);
    }
}

/// An in-process HTTPS GIS server on loopback. Routes:
/// `/delay/MS`, `/big/BYTES` (streamed zeros), `/upload` (counts the body),
/// `/ws` (101 then echo), `/redirect` (Location at the upstream origin),
/// `/hsts` (sends its own HSTS), `/cors-star` (grants every origin with
/// credentials, as a careless GIS server might), `/die` (promises 1000 bytes, sends 10,
/// hangs up), `/close` (answers, then closes the connection), OPTIONS
/// `/preflight`, anything else: 200 `{"ok":true}`.
pub struct TestUpstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub cert_der: CertificateDer<'static>,
    pub conns: Arc<ConnCounts>,
    task: tokio::task::JoinHandle<()>,
}

/// The upstream's view of the connections made to it.
#[derive(Default)]
pub struct ConnCounts {
    /// TLS handshakes completed.
    pub handshakes: AtomicUsize,
    /// Of those, resumed TLS sessions.
    pub resumed: AtomicUsize,
    /// Connections open now.
    pub open: AtomicUsize,
}

impl ConnCounts {
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }
    pub fn resumed(&self) -> usize {
        self.resumed.load(Ordering::SeqCst)
    }
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// Counts a connection as open until dropped.
struct OpenGuard(Arc<ConnCounts>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A TLS server side for a test upstream: this chain and key, these ALPN
/// protocols.
pub fn tls_acceptor(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: Vec<Vec<u8>>,
) -> TlsAcceptor {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = alpn;
    TlsAcceptor::from(Arc::new(config))
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestUpstream {
    pub async fn start(issued: &Issued, http: Http) -> TestUpstream {
        let (chain, key) = issued.chain_and_key();
        Self::start_with(chain, key, http).await
    }

    pub async fn start_with(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        http: Http,
    ) -> TestUpstream {
        Self::start_alpn(chain, key, http.server_alpn()).await
    }

    /// An upstream that speaks only HTTP/2: it refuses http/1.1 in ALPN.
    pub async fn start_h2_only(issued: &Issued) -> TestUpstream {
        let (chain, key) = issued.chain_and_key();
        Self::start_alpn(chain, key, vec![b"h2".to_vec()]).await
    }

    pub async fn start_alpn(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        alpn: Vec<Vec<u8>>,
    ) -> TestUpstream {
        let cert_der = chain[0].clone();
        let acceptor = tls_acceptor(chain, key, alpn);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let seen2 = seen.clone();
        let conns: Arc<ConnCounts> = Arc::default();
        let conns2 = conns.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let seen = seen2.clone();
                let conns = conns2.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    conns.handshakes.fetch_add(1, Ordering::SeqCst);
                    if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                        conns.resumed.fetch_add(1, Ordering::SeqCst);
                    }
                    conns.open.fetch_add(1, Ordering::SeqCst);
                    let _open = OpenGuard(conns);
                    let is_h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    let io = TokioIo::new(tls);
                    let svc = service_fn(move |req| {
                        let seen = seen.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(upstream_route(req, addr, seen).await)
                        }
                    });
                    let _ = if is_h2 {
                        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, svc)
                            .await
                    } else {
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, svc)
                            .with_upgrades()
                            .await
                    };
                });
            }
        });
        TestUpstream {
            addr,
            seen,
            cert_der,
            conns,
            task,
        }
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream saw no request")
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn paths(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.path.clone())
            .collect()
    }
}

type UpBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

fn full(s: impl Into<Bytes>) -> UpBody {
    Full::new(s.into()).map_err(|never| match never {}).boxed()
}

async fn upstream_route(
    mut req: Request<Incoming>,
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Response<UpBody> {
    seen.lock().unwrap().push(Seen {
        authority: req.uri().authority().map(|a| a.to_string()),
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().map(str::to_string),
        version: req.version(),
        headers: req.headers().clone(),
    });
    let path = req.uri().path().to_string();
    if let Some(ms) = path.strip_prefix("/delay/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        return Response::new(full("delayed"));
    }
    if let Some(n) = path.strip_prefix("/big/") {
        let total: u64 = n.parse().unwrap_or(0);
        let mut r = Response::new(
            gisgate::demo::RepeatBody::new(total)
                .map_err(|never| match never {})
                .boxed(),
        );
        r.headers_mut()
            .insert(http::header::CONTENT_LENGTH, total.into());
        return r;
    }
    match path.as_str() {
        "/upload" => {
            let mut body = req.into_body();
            let mut n: u64 = 0;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => n += f.data_ref().map(|d| d.len() as u64).unwrap_or(0),
                    Err(_) => break,
                }
            }
            Response::new(full(n.to_string()))
        }
        "/ws" => {
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = upgrade.await {
                    let mut io = TokioIo::new(upgraded);
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .body(full(""))
                .unwrap()
        }
        // Switches protocols whatever was asked, to something not WebSocket.
        "/upgrade-other" => Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "h2c")
            .body(full(""))
            .unwrap(),
        "/redirect" => Response::builder()
            .status(StatusCode::FOUND)
            .header(
                "location",
                format!(
                    "https://localhost:{}/arcgis/rest/services?f=json",
                    addr.port()
                ),
            )
            .body(full(""))
            .unwrap(),
        "/close" => Response::builder()
            .header("connection", "close")
            .body(full("closing"))
            .unwrap(),
        "/hsts" => Response::builder()
            .header("strict-transport-security", "max-age=1")
            .body(full("hsts"))
            .unwrap(),
        "/cors-star" => Response::builder()
            .header("access-control-allow-origin", "*")
            .header("access-control-allow-credentials", "true")
            .header("access-control-expose-headers", "x-upstream")
            .header("vary", "Accept-Encoding")
            .body(full("{\"ok\":true}"))
            .unwrap(),
        "/preflight" => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header("access-control-allow-origin", "https://app.example.com")
            .header("access-control-allow-private-network", "true")
            .body(full(""))
            .unwrap(),
        "/die" => {
            let mut r = Response::new(
                Dying {
                    sent: false,
                    pause: Box::pin(tokio::time::sleep(Duration::from_millis(200))),
                }
                .boxed(),
            );
            r.headers_mut()
                .insert(http::header::CONTENT_LENGTH, 1000.into());
            r
        }
        _ => Response::builder()
            .header("content-type", "application/json")
            .header("x-upstream", "yes")
            .header("connection", "x-secret-hop")
            .header("x-secret-hop", "must not pass")
            .body(full("{\"ok\":true}"))
            .unwrap(),
    }
}

/// Sends 10 bytes of a promised 1000, then fails: the upstream dies
/// mid-response.
struct Dying {
    sent: bool,
    pause: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for Dying {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if !self.sent {
            self.sent = true;
            return std::task::Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                b"0123456789",
            )))));
        }
        // Let the head and the first bytes reach the gateway, then die.
        if self.pause.as_mut().poll(cx).is_pending() {
            return std::task::Poll::Pending;
        }
        std::task::Poll::Ready(Some(Err(std::io::Error::other("upstream died"))))
    }
}

// ---------------------------------------------------------------- gateway

/// A test site: a temp directory with a CA, the gateway's certificate
/// (localhost, 127.0.0.1) and the upstream's.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub ca: TestCa,
    pub gateway_cert: Issued,
    pub upstream_cert: Issued,
}

impl Site {
    pub fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(dir.path());
        let gateway_cert = ca.issue(&["localhost", "127.0.0.1"]);
        ca.write("gateway", &gateway_cert);
        let upstream_cert = ca.issue(&["localhost", "127.0.0.1"]);
        ca.write("upstream", &upstream_cert);
        Site {
            dir,
            ca,
            gateway_cert,
            upstream_cert,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub async fn upstream(&self, http: Http) -> TestUpstream {
        TestUpstream::start(&self.upstream_cert, http).await
    }

    /// The base config for an upstream, with `overlay` (TOML) merged over it.
    pub fn config(&self, upstream: SocketAddr, overlay: &str) -> String {
        let base = format!(
            r#"
[server]
https_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
[tls]
cert = "gateway.crt"
key = "gateway.key"
[upstream]
url = "https://localhost:{port}"
ca = "ca.crt"
[observability]
listen = "127.0.0.1:0"
[log]
level = "warn"
"#,
            port = upstream.port()
        );
        let mut table: toml::Table = base.parse().unwrap();
        let overlay: toml::Table = overlay.parse().expect("overlay is valid TOML");
        merge(&mut table, overlay);
        toml::to_string(&table).unwrap()
    }

    pub fn write_config(&self, text: &str) -> PathBuf {
        let path = self.path("gateway.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Starts a gateway in this test's runtime, in front of `upstream`.
    pub async fn gateway(&self, upstream: &TestUpstream, overlay: &str) -> TestGateway {
        self.gateway_from_text(&self.config(upstream.addr, overlay))
            .await
    }
}

fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (k, v) in overlay {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

pub struct TestGateway {
    pub gw: Arc<Gateway>,
    pub config_path: PathBuf,
    pub https: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub observe: Option<SocketAddr>,
}

impl TestGateway {
    pub fn https(&self) -> SocketAddr {
        self.https.expect("no https listener")
    }
    pub fn http(&self) -> SocketAddr {
        self.http.expect("no http listener")
    }
    /// The metrics page once it contains `line`: a connection's outcome is
    /// recorded by its task, which may finish after the client has seen it
    /// (a refused handshake's alert arrives before the count is made).
    pub async fn metrics_with(&self, line: &str) -> String {
        let mut last = String::new();
        let found = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                last = self.metrics().await;
                if last.contains(line) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
        .await;
        assert!(found.is_ok(), "no {line} in the metrics:\n{last}");
        last
    }

    pub async fn metrics(&self) -> String {
        let (_, _, body) = plain_request(
            self.observe.expect("no observability listener"),
            "GET",
            "/metrics",
            &[],
        )
        .await;
        String::from_utf8_lossy(&body).into_owned()
    }
}

// ---------------------------------------------------------------- clients

pub fn client_config(roots: rustls::RootCertStore, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut c = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    c
}

/// A TLS connection to the gateway as `localhost`.
pub async fn tls_connect(
    addr: SocketAddr,
    config: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

/// One request over a fresh HTTPS connection, HTTP/2 when `h2`.
pub async fn https_request(
    site: &Site,
    addr: SocketAddr,
    h2: bool,
    req: Request<Full<Bytes>>,
) -> Reply {
    let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
    let tls = tls_connect(addr, client_config(site.ca.roots(), alpn))
        .await
        .expect("TLS handshake");
    send_on(tls, h2, req).await
}

pub async fn send_on<IO>(io: IO, h2: bool, req: Request<Full<Bytes>>) -> Reply
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let response = if h2 {
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        sender.send_request(req).await.unwrap()
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn.with_upgrades());
        sender.send_request(req).await.unwrap()
    };
    read_reply(response).await
}

/// An HTTP/1.1 keep-alive connection to `addr` (TLS, as `localhost`), for
/// several requests with `request_on`.
pub async fn keep_alive_connection(
    site: &Site,
    addr: SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let tls = tls_connect(addr, client_config(site.ca.roots(), &[b"http/1.1"]))
        .await
        .expect("TLS handshake");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// One more request on an open HTTP/1.1 keep-alive connection. It waits until
/// the connection is ready (hyper refuses a request while the previous
/// exchange is still being finished; an error here means the peer closed the
/// connection) and reads the whole response, so the connection can be reused.
pub async fn request_on(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> hyper::Result<Reply> {
    sender.ready().await?;
    let response = sender.send_request(req).await?;
    Ok(read_reply(response).await)
}

async fn read_reply(response: Response<Incoming>) -> Reply {
    let status = response.status();
    let version = response.version();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Reply {
        status,
        headers,
        body,
        version,
    }
}

/// A GET with the given headers, for ordinary (already canonical) paths.
pub fn get(path: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method("GET")
        .uri(format!("https://localhost{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

pub async fn https_get(site: &Site, tg: &TestGateway, path: &str, h2: bool) -> Reply {
    https_request(site, tg.https(), h2, get(path, &[])).await
}

/// Sends raw bytes over TLS and reads until the server closes: for paths
/// ordinary clients would normalise away.
pub async fn raw_https(site: &Site, addr: SocketAddr, request: &str) -> String {
    let mut tls = tls_connect(addr, client_config(site.ca.roots(), &[b"http/1.1"]))
        .await
        .unwrap();
    tls.write_all(request.as_bytes()).await.unwrap();
    read_to_close(&mut tls).await
}

/// A WebSocket tunnel through the gateway at `addr` to the test
/// upstream's echo (`/ws`), its 101 read.
pub async fn websocket(
    site: &Site,
    addr: SocketAddr,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut ws = tls_connect(addr, client_config(site.ca.roots(), &[b"http/1.1"]))
        .await
        .unwrap();
    ws.write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = ws.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
    ws
}

pub async fn raw_http(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    read_to_close(&mut tcp).await
}

async fn read_to_close<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP/1.1 response.
pub fn status_of(raw: &str) -> u16 {
    raw.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A plain-HTTP request (HTTP/1.1, Connection: close).
pub async fn plain_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Bytes) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", format!("localhost:{}", addr.port()));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let r = send_on(tcp, false, b.body(Full::new(Bytes::new())).unwrap()).await;
    (r.status, r.headers, r.body)
}

/// Waits until `check` passes, polling; fails the test after `within`.
pub async fn eventually<F, Fut>(within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn empty_body() -> Empty<Bytes> {
    Empty::new()
}

// ---------------------------------------------------------------- policy helpers

impl Site {
    /// Starts a gateway from config text written as this site's
    /// `gateway.toml` (for configs `config` cannot express, e.g. no `[tls]`).
    pub async fn gateway_from_text(&self, text: &str) -> TestGateway {
        let path = self.write_config(text);
        let settings =
            gisgate::config::load(&path).unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        let gw = gisgate::run::start(settings)
            .await
            .unwrap_or_else(|e| panic!("gateway did not start:\n{e}"));
        TestGateway {
            https: gw.local_addr(ListenerKind::Https),
            http: gw.local_addr(ListenerKind::Http),
            observe: gw.local_addr(ListenerKind::Observability),
            gw,
            config_path: path,
        }
    }

    /// A gateway in front of an arbitrary upstream address (one where
    /// nothing listens, say).
    pub async fn gateway_at(&self, upstream: SocketAddr, overlay: &str) -> TestGateway {
        self.gateway_from_text(&self.config(upstream, overlay))
            .await
    }
}

/// A loopback port free a moment ago, for a gateway run as a process.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A loopback address where nothing listens.
pub fn dead_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Every value of header `name` (case-insensitive) in the head of a raw
/// HTTP/1.1 response.
pub fn header_values<'a>(raw: &'a str, name: &str) -> Vec<&'a str> {
    let head = raw.split("\r\n\r\n").next().unwrap_or("");
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

/// The first value of header `name` in a raw HTTP/1.1 response.
pub fn header_of<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    header_values(raw, name).into_iter().next()
}

/// A real program a test drives (Tomcat, Chromium, Prometheus, promtool...),
/// found on PATH or at one of `also` (Debian installs some outside PATH).
/// `.ci/run` installs them all and sets `GISGATE_REAL_PEERS=require`, so there
/// a missing one fails the test; a developer without it sees the test say
/// loudly that it checked nothing.
pub fn real_peer(program: &str, also: &[&str]) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    });
    let found = on_path.or_else(|| also.iter().map(PathBuf::from).find(|p| p.exists()));
    if found.is_none() {
        if std::env::var("GISGATE_REAL_PEERS").as_deref() == Ok("require") {
            panic!(
                "{program} is not installed, and GISGATE_REAL_PEERS=require (.ci/run installs it)"
            );
        }
        eprintln!(
            "SKIPPED: {program} is not installed; this test checked nothing (.ci/run installs it)"
        );
    }
    found
}

/// The gateway as its own process (`gisgate run --config PATH`, no
/// RUST_LOG, its log on a pipe), once its HTTPS listener at `https`
/// accepts: for tests that read the log or send signals.
pub async fn gateway_process(config: &Path, https: SocketAddr) -> std::process::Child {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_gisgate"))
        .args(["run", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(20), || async {
        TcpStream::connect(https).await.is_ok()
    })
    .await;
    child
}
