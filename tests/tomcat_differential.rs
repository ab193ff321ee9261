//! Differential test against a real Tomcat (issue 22, item 1): the gate
//! judges a canonical path, the GIS server routes on its own reading of the
//! target, and the two must agree where it matters.
//!
//! Tomcat 10 (Debian's `tomcat10`) is laid out like an ArcGIS Server: one
//! context each for `/arcgis/admin`, `/arcgis/manager`, `/arcgis/rest`,
//! `/arcgis/tokens` and `/arcgis/sharing` (plus `/arcgis` and ROOT), each
//! answering the context, servlet path, path info, request URI and protocol
//! Tomcat resolved. Request targets (generated, hand-picked, and the corpus
//! in tests/corpus) go straight to Tomcat and through three gateways in
//! front of it (loopback refused admin; admitted; admitted with HTTP/2 to
//! Tomcat), over HTTP/1.1 as raw bytes and over HTTP/2 (hyper's client, and
//! frames written by hand so that `:path` carries any bytes). Asserted:
//!
//! - from a client outside `admin.allowed_ips`, no request reaches the admin
//!   or manager context;
//! - from an allowed client, every request the gateway forwards reaches the
//!   context its canonical path names, and Tomcat receives that canonical
//!   path.
//!
//! Counted and printed (`-- --nocapture`): what was forwarded and refused,
//! and over-blocking: targets the gateway refuses that Tomcat, asked
//! directly, routes outside admin.
//!
//! `GISGATE_TOMCAT_CASES` sets how many targets are generated (CI: 1,500;
//! README: the full run of 10,000). `GISGATE_TOMCAT_CORPUS_OUT=FILE` writes
//! the run's interesting targets as a corpus.

mod common;
#[path = "common/raw_h2.rs"]
mod raw_h2;
#[path = "common/raw_tls.rs"]
mod raw_tls;
#[path = "common/request_targets.rs"]
mod request_targets;
#[path = "common/tomcat.rs"]
mod tomcat;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{client_config, tls_connect, Site, TestGateway};
use gisgate::listen::ListenerKind;
use gisgate::policy::canonical_path;
use http::Uri;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use raw_h2::{raw_h2_get, H2Reply};
use raw_tls::raw_exchange;
use tomcat::{context_of, Routed, Tomcat};

const CI_CASES: usize = 1_500;
const SEED: u64 = 22;
const CORPUS: &str = "tests/corpus/tomcat_targets.txt";
/// Targets in flight at once: enough to keep Tomcat's threads busy, few
/// enough for a two-core machine shared with the gateway.
const IN_FLIGHT: usize = 12;
/// Requests without an answer (connection failed, 20 s passed) before the
/// run gives up.
const MAX_FAILED: usize = 50;

/// Who asks: a client the admin allowlist leaves out, or one it admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Client {
    Refused,
    Allowed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Protocol {
    /// The target as raw bytes in the request line.
    Http1,
    /// hyper's HTTP/2 client: the target as the `http` crate parses it.
    Http2,
    /// Hand-written HTTP/2 frames: the target's bytes as `:path`, whatever
    /// they are (a raw `#`, spaces, non-ASCII, no leading `/`).
    Http2RawPath,
}

/// What the gateway speaks to Tomcat: HTTP/1.1 (the default), or HTTP/2
/// with `upstream.prefer_http2`, where Tomcat reads the canonical path from
/// `:path` with its HTTP/2 code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Upstream {
    Http1,
    Http2,
}

/// One way a target reaches Tomcat through a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Route {
    client: Client,
    protocol: Protocol,
    upstream: Upstream,
}

const fn route(client: Client, protocol: Protocol, upstream: Upstream) -> Route {
    Route {
        client,
        protocol,
        upstream,
    }
}

const ROUTES: [Route; 7] = [
    route(Client::Refused, Protocol::Http1, Upstream::Http1),
    route(Client::Refused, Protocol::Http2, Upstream::Http1),
    route(Client::Refused, Protocol::Http2RawPath, Upstream::Http1),
    route(Client::Allowed, Protocol::Http1, Upstream::Http1),
    route(Client::Allowed, Protocol::Http2, Upstream::Http1),
    route(Client::Allowed, Protocol::Http2RawPath, Upstream::Http1),
    route(Client::Allowed, Protocol::Http1, Upstream::Http2),
];

/// The route the examples and the corpus describe a target by.
const REFUSED_H1: Route = route(Client::Refused, Protocol::Http1, Upstream::Http1);
const ALLOWED_H1: Route = route(Client::Allowed, Protocol::Http1, Upstream::Http1);

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let upstream = match self.upstream {
            Upstream::Http1 => "",
            Upstream::Http2 => " (h2 upstream)",
        };
        write!(f, "{:?}/{:?}{upstream}", self.client, self.protocol)
    }
}

/// What came back for one request.
#[derive(Debug, Clone)]
enum Answer {
    /// A probe page answered: the request reached a context.
    Routed(u16, Routed),
    /// Tomcat's own error page (its connector or mapper refused).
    TomcatError(u16),
    /// The gateway answered itself (or hyper, for an unparsable head).
    Gateway(u16),
    /// An HTTP/2 client built on the `http` crate cannot put this target
    /// in `:path` (its URI parser refuses it before anything is sent).
    Unsendable,
    /// The gateway's HTTP/2 layer reset the stream (or sent GOAWAY) with
    /// this error code: refused before any policy ran.
    Reset(u32),
    /// No answer: the connection or stream failed.
    Failed(String),
}

impl Answer {
    fn from_response(status: u16, text: &str) -> Answer {
        if let Some(routed) = Routed::parse(text) {
            Answer::Routed(status, routed)
        } else if text.contains("<title>HTTP Status ") {
            Answer::TomcatError(status)
        } else if status == 0 {
            Answer::Failed("no status line".into())
        } else {
            Answer::Gateway(status)
        }
    }

    fn routed(&self) -> Option<&Routed> {
        match self {
            Answer::Routed(_, r) => Some(r),
            _ => None,
        }
    }

    fn refused_by_gateway(&self) -> bool {
        matches!(self, Answer::Gateway(400 | 403) | Answer::Reset(_))
    }

    fn short(&self) -> String {
        match self {
            Answer::Routed(s, r) => format!("{s} ctx={:?}", r.context),
            Answer::TomcatError(s) => format!("{s} from Tomcat"),
            Answer::Gateway(s) => format!("{s} from gisgate"),
            Answer::Unsendable => "not sendable over HTTP/2".into(),
            Answer::Reset(code) => format!("HTTP/2 reset ({code:#x})"),
            Answer::Failed(e) => format!("failed: {e}"),
        }
    }
}

/// One target's answers: straight from Tomcat, and through each gateway.
struct Outcome {
    target: Vec<u8>,
    direct: Answer,
    via: BTreeMap<Route, Answer>,
}

/// The clients of one run.
struct Peers {
    tomcat: SocketAddr,
    gateways: BTreeMap<(Client, Upstream), SocketAddr>,
    h1: Arc<rustls::ClientConfig>,
    h2: BTreeMap<(Client, Upstream), H2Client>,
    h2_raw: Arc<rustls::ClientConfig>,
}

#[test]
fn tomcat_and_the_gate_agree_on_every_generated_target() {
    let Some(java) = common::real_peer("java", &[]) else {
        return;
    };
    let Some(home) = tomcat::catalina_home() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(differential(&java, &home));
}

async fn differential(java: &std::path::Path, home: &std::path::Path) {
    let site = Site::new();
    let tomcat = Tomcat::start(java, home, site.dir.path(), &site.ca, &site.upstream_cert).await;
    println!(
        "Tomcat {} up on {} in {:.1} s",
        home.display(),
        tomcat.addr,
        tomcat.started_in.as_secs_f64()
    );
    // Loopback is outside the first gateway's allowlist and inside the
    // others' (the default, 127.0.0.1/32 and ::1/128).
    let refused = r#"[admin]
allowed_ips = ["10.9.9.9/32"]"#;
    let h2_upstream = "[upstream]\nprefer_http2 = true";
    let mut gateways = Vec::new();
    for (client, upstream, overlay) in [
        (Client::Refused, Upstream::Http1, refused),
        (Client::Allowed, Upstream::Http1, ""),
        (Client::Allowed, Upstream::Http2, h2_upstream),
    ] {
        let name = format!("{client:?}-{upstream:?}.toml");
        gateways.push((
            (client, upstream),
            gateway(&site, &name, tomcat.addr, overlay).await,
        ));
    }
    let peers = Arc::new(Peers {
        tomcat: tomcat.addr,
        gateways: gateways.iter().map(|(k, g)| (*k, g.https())).collect(),
        h1: Arc::new(client_config(site.ca.roots(), &[b"http/1.1"])),
        h2: gateways
            .iter()
            .map(|(k, g)| (*k, H2Client::new(g.https(), &site)))
            .collect(),
        h2_raw: Arc::new(client_config(site.ca.roots(), &[b"h2"])),
    });

    let targets = targets();
    let began = Instant::now();
    let outcomes = run_all(&peers, targets).await;
    let took = began.elapsed();
    let requests = outcomes.len() * (1 + ROUTES.len());
    println!(
        "{} targets, {requests} requests in {:.1} s ({:.0} requests/s)",
        outcomes.len(),
        took.as_secs_f64(),
        requests as f64 / took.as_secs_f64()
    );

    print!("{}", summary(&outcomes));
    if let Ok(path) = std::env::var("GISGATE_TOMCAT_CORPUS_OUT") {
        std::fs::write(&path, corpus(&outcomes)).unwrap();
        println!("corpus written to {path}");
    }
    let violations = violations(&outcomes);
    assert!(
        violations.is_empty(),
        "{} violations (first 30):\n{}\nTomcat's console:\n{}",
        violations.len(),
        violations
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        tail(&tomcat.console(), 40)
    );
    assert_the_run_tested_something(&outcomes);
    assert_every_request_was_answered(&outcomes);
}

/// The hand-picked tricks, the corpus, then `GISGATE_TOMCAT_CASES`
/// generated targets unlike any of those; each target sent once.
fn targets() -> Vec<Vec<u8>> {
    let count = std::env::var("GISGATE_TOMCAT_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CI_CASES);
    let corpus = std::fs::read_to_string(CORPUS).expect("the corpus file");
    let mut seen = BTreeSet::new();
    let mut targets: Vec<Vec<u8>> = KNOWN_TRICKS
        .iter()
        .map(|t| t.to_vec())
        .chain(request_targets::parse_corpus(&corpus))
        .filter(|t| seen.insert(t.clone()))
        .collect();
    targets.extend(request_targets::generate(SEED, count, &seen));
    targets
}

/// Spellings of the admin path that have fooled gateways and WAFs in front
/// of Tomcat, and their harmless neighbours. Always sent.
const KNOWN_TRICKS: &[&[u8]] = &[
    b"/arcgis/admin",
    b"/arcgis/manager/",
    b"/arcgis/rest/services",
    b"/arcgis/tokens/generateToken",
    b"/arcgis/sharing/rest",
    b"/arcgis/%61dmin",
    b"/arcgis/ad%6Din/",
    b"/arcgis;x=1/admin",
    b"/arcgis/admin;jsessionid=1",
    b"/arcgis/rest/../admin",
    b"/arcgis/rest/..;/admin",
    b"/arcgis/rest/services/..;/..;/admin",
    b"/arcgis/x/%2e%2e/admin",
    b"/arcgis/rest/.%2e/admin",
    b"/arcgis/admin;/",
    b"/arcgis/ADMIN",
    b"/ARCGIS/admin",
    b"/arcgis//admin",
    b"//arcgis/admin",
    b"/arcgis/./admin",
    b"/arcgis/%2561dmin",
    b"/arcgis/rest%2f..%2fadmin",
    b"/arcgis/rest\\..\\admin",
    b"/arcgis/rest/%5c../admin",
    b"/arcgis/rest/%c0%ae%c0%ae/admin",
    b"/arcgis/rest/%e0%80%ae%e0%80%ae/admin",
    b"/arcgis/%c1%a1dmin",
    b"https://localhost/arcgis/admin",
    b"http://localhost/arcgis/manager",
    b"/arcgis/admin%20",
    b"/arcgis/admin.",
    b"/arcgis/adminx",
    b"/arcgis/admin#x",
    b"/arcgis/rest#/../admin",
    b"/arcgis/rest?/../admin",
    b"/arcgis/rest%3f/../admin",
    b"/arcgis/rest%23/../admin",
    b"/arcgis/%EF%BD%81dmin",
    b"/arcgis/\xEF\xBD\x81dmin",
    b"/arcgis/a\xCC\x81dmin",
    b"/arcgis/m%C3%A0nager",
    b"/arcgis/admin%00",
    b"/arcgis/admin%2e",
    b"/arcgis/admin/%2e%2e/rest",
    b"/arcgis/manager/..",
    b"/arcgis/manager/../..",
    b"/arcgis/rest/services/../../manager/x",
    b"/arcgis/%u0061dmin",
    // Raw bytes no request line or `http::Uri` holds; HTTP/2 carries them
    // in `:path` (Protocol::Http2RawPath).
    b"/arcgis/rest#/../../arcgis/admin",
    b"/arcgis/rest/\x00/../admin",
    b"/arcgis/rest /../admin",
    b"/arcgis/rest\t/../admin",
    b"/arcgis/rest\r\nX-Injected: 1",
    b"/arcgis/\xC0\xAE\xC0\xAE/admin",
    b"/arcgis/\xFF/../admin",
    b"arcgis/admin",
    b"*",
    b"",
];

async fn gateway(site: &Site, name: &str, tomcat: SocketAddr, overlay: &str) -> TestGateway {
    // A config file of its own for each gateway: they run at once, and each
    // watches its file for changes.
    let path = site.path(name);
    let overlay = format!("{overlay}\n[log]\nlevel = \"error\"\n");
    std::fs::write(&path, site.config(tomcat, &overlay)).unwrap();
    let settings = gisgate::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let gw = gisgate::run::start(settings).await.unwrap();
    TestGateway {
        https: gw.local_addr(ListenerKind::Https),
        http: gw.local_addr(ListenerKind::Http),
        observe: gw.local_addr(ListenerKind::Observability),
        gw,
        config_path: path,
    }
}

/// Sends every target, `IN_FLIGHT` at a time. Stops early, failing the
/// test, once `MAX_FAILED` requests have had no answer: a Tomcat or gateway
/// that stopped answering would otherwise cost 20 s per request.
async fn run_all(peers: &Arc<Peers>, targets: Vec<Vec<u8>>) -> Vec<Outcome> {
    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, target) in targets.into_iter().enumerate() {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let so_far = failed.load(Ordering::Relaxed);
        assert!(
            so_far < MAX_FAILED,
            "{so_far} requests had no answer; stopped"
        );
        let (peers, failed) = (peers.clone(), failed.clone());
        tasks.spawn(async move {
            let outcome = probe(&peers, target).await;
            let unanswered = std::iter::once(&outcome.direct)
                .chain(outcome.via.values())
                .filter(|a| matches!(a, Answer::Failed(_)))
                .count();
            failed.fetch_add(unanswered, Ordering::Relaxed);
            drop(permit);
            (i, outcome)
        });
    }
    let mut outcomes: Vec<(usize, Outcome)> = tasks.join_all().await;
    outcomes.sort_by_key(|(i, _)| *i);
    outcomes.into_iter().map(|(_, o)| o).collect()
}

/// One target, straight to Tomcat and through the gateways every way.
async fn probe(peers: &Peers, target: Vec<u8>) -> Outcome {
    let direct = send_http1(peers.tomcat, &peers.h1, &target).await;
    let mut via = BTreeMap::new();
    for route in ROUTES {
        let gateway = (route.client, route.upstream);
        let answer = match route.protocol {
            Protocol::Http1 => send_http1(peers.gateways[&gateway], &peers.h1, &target).await,
            Protocol::Http2 => match h2_uri(&target) {
                Some(uri) => peers.h2[&gateway].send(uri).await,
                None => Answer::Unsendable,
            },
            Protocol::Http2RawPath => {
                send_raw_h2(peers.gateways[&gateway], &peers.h2_raw, &target).await
            }
        };
        via.insert(route, answer);
    }
    Outcome {
        target,
        direct,
        via,
    }
}

/// The target as raw bytes in a request line, so nothing normalises it.
async fn send_http1(addr: SocketAddr, config: &Arc<rustls::ClientConfig>, target: &[u8]) -> Answer {
    let mut request = b"GET ".to_vec();
    request.extend_from_slice(target);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    match raw_exchange(addr, config.clone(), &request).await {
        Ok(text) => Answer::from_response(common::status_of(&text), &text),
        Err(e) => Answer::Failed(e.to_string()),
    }
}

/// The target's bytes as `:path`, in frames written by hand.
async fn send_raw_h2(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    target: &[u8],
) -> Answer {
    match raw_h2_get(addr, config.clone(), target).await {
        Ok(H2Reply::Response(status, body)) => {
            Answer::from_response(status.unwrap_or(0), &String::from_utf8_lossy(&body))
        }
        Ok(H2Reply::Reset(code) | H2Reply::GoAway(code)) => Answer::Reset(code),
        Err(e) => Answer::Failed(e.to_string()),
    }
}

/// The URI an HTTP/2 client sends for a target: its own `:path`, or the
/// absolute-form's scheme, authority and path. `None` when the `http`
/// crate's parser refuses it (so no such client can send it).
fn h2_uri(target: &[u8]) -> Option<Uri> {
    let text = std::str::from_utf8(target).ok()?;
    let absolute = if text.starts_with('/') {
        format!("https://localhost{text}")
    } else {
        text.to_string()
    };
    let uri: Uri = absolute.parse().ok()?;
    uri.scheme().is_some().then_some(uri)
}

/// The path the gateway judges for a target received over `protocol`: the
/// `http` crate's reading of it, as hyper gives it to the gateway.
fn gateway_path(target: &[u8], protocol: Protocol) -> Option<String> {
    let uri = match protocol {
        Protocol::Http1 => Uri::try_from(target).ok()?,
        Protocol::Http2 => h2_uri(target)?,
        // The h2 crate reads `:path` with the `http` crate's parser, which
        // ends the path at `?` and drops a `#` and all after it.
        Protocol::Http2RawPath => {
            let path = http::uri::PathAndQuery::try_from(target).ok()?;
            return Some(path.path().to_string());
        }
    };
    Some(uri.path().to_string())
}

/// One HTTP/2 connection per gateway, every target a stream on it; opened
/// again if the gateway closes it (a GOAWAY after a malformed stream).
struct H2Client {
    addr: SocketAddr,
    config: rustls::ClientConfig,
    sender: tokio::sync::Mutex<Option<hyper::client::conn::http2::SendRequest<Full<Bytes>>>>,
}

impl H2Client {
    fn new(addr: SocketAddr, site: &Site) -> H2Client {
        H2Client {
            addr,
            config: client_config(site.ca.roots(), &[b"h2"]),
            sender: tokio::sync::Mutex::new(None),
        }
    }

    async fn send(&self, uri: Uri) -> Answer {
        let request = http::Request::get(uri)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let exchange = async {
            let mut sender = self.sender().await?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((status, body.to_bytes()))
        };
        match tokio::time::timeout(Duration::from_secs(20), exchange).await {
            Ok(Ok((status, body))) => {
                Answer::from_response(status, &String::from_utf8_lossy(&body))
            }
            Ok(Err(e)) => Answer::Failed(e),
            Err(_) => Answer::Failed("no answer within 20 s".into()),
        }
    }

    async fn sender(&self) -> Result<hyper::client::conn::http2::SendRequest<Full<Bytes>>, String> {
        let mut held = self.sender.lock().await;
        if let Some(s) = held.as_ref().filter(|s| !s.is_closed()) {
            return Ok(s.clone());
        }
        let tls = tls_connect(self.addr, self.config.clone())
            .await
            .map_err(|e| e.to_string())?;
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        *held = Some(sender.clone());
        Ok(sender)
    }
}

// ---------------------------------------------------------------- judging

/// Every answer that breaks the two rules, as a line naming the target.
fn violations(outcomes: &[Outcome]) -> Vec<String> {
    let mut found = Vec::new();
    for o in outcomes {
        for (route, answer) in &o.via {
            let Some(routed) = answer.routed() else {
                continue;
            };
            let t = request_targets::escape(&o.target);
            if route.client == Client::Refused && routed.is_admin() {
                found.push(format!(
                    "{t} via {route}: a refused client reached {:?}",
                    routed.context
                ));
            }
            if route.client == Client::Allowed {
                found.extend(misrouted(&t, route, &o.target, routed));
            }
        }
    }
    found
}

/// An allowed client's forwarded request must reach the context its
/// canonical path names, with that canonical path, over the protocol the
/// gateway was told to speak.
fn misrouted(t: &str, route: &Route, target: &[u8], routed: &Routed) -> Option<String> {
    let spoken = match route.upstream {
        Upstream::Http1 => "HTTP/1.1",
        Upstream::Http2 => "HTTP/2.0",
    };
    if routed.protocol != spoken {
        return Some(format!(
            "{t} via {route}: Tomcat was spoken to in {}",
            routed.protocol
        ));
    }
    match gateway_path(target, route.protocol).map(|p| canonical_path(&p)) {
        Some(Ok(canonical)) => {
            let named = context_of(&canonical);
            (routed.context != named || routed.uri != canonical).then(|| {
                format!(
                    "{t} via {route}: canonical {canonical:?} names context {named:?}, \
                     Tomcat received {:?} and routed it to {:?}",
                    routed.uri, routed.context
                )
            })
        }
        other => Some(format!(
            "{t} via {route} was forwarded (to {:?}) though its canonical path is {other:?}",
            routed.context
        )),
    }
}

/// Guards against a run that passes by testing nothing: Tomcat answered,
/// the generator reached the admin context by disguised spellings, the
/// allowed gateways forwarded admin requests on every route (so the refused
/// one was really refusing), and every route forwarded ordinary ones.
fn assert_the_run_tested_something(outcomes: &[Outcome]) {
    let disguised = outcomes
        .iter()
        .filter(|o| o.direct.routed().is_some_and(Routed::is_admin))
        .filter(|o| {
            !o.target.starts_with(b"/arcgis/admin") && !o.target.starts_with(b"/arcgis/manager")
        })
        .count();
    assert!(
        disguised > 0,
        "no disguised target reached Tomcat's admin context"
    );
    for route in ROUTES {
        let reached = |admin: bool| {
            outcomes
                .iter()
                .filter_map(|o| o.via[&route].routed())
                .filter(|r| r.is_admin() == admin)
                .count()
        };
        assert!(reached(false) > 0, "{route}: nothing forwarded");
        if route.client == Client::Allowed {
            assert!(
                reached(true) > 0,
                "{route}: the allowed client never reached admin"
            );
        }
    }
}

/// A request with no answer at all proves nothing either way (and hides
/// what reached Tomcat): every one must have had a status, a reset or a
/// Tomcat page.
fn assert_every_request_was_answered(outcomes: &[Outcome]) {
    let unanswered: Vec<String> = outcomes
        .iter()
        .flat_map(|o| {
            let direct = ("straight to Tomcat".to_string(), &o.direct);
            let via = o.via.iter().map(|(route, a)| (route.to_string(), a));
            std::iter::once(direct)
                .chain(via)
                .filter(|(_, a)| matches!(a, Answer::Failed(_)))
                .map(|(how, a)| {
                    format!(
                        "{} {how}: {}",
                        request_targets::escape(&o.target),
                        a.short()
                    )
                })
        })
        .collect();
    assert!(
        unanswered.is_empty(),
        "{} requests had no answer (first 10):\n{}",
        unanswered.len(),
        unanswered[..unanswered.len().min(10)].join("\n")
    );
}

// ---------------------------------------------------------------- reporting

/// Counts per client and protocol, then over-blocking by reason.
#[derive(Default)]
struct Tally {
    sent: usize,
    routed: usize,
    routed_admin: usize,
    tomcat_refused: usize,
    refused_400: usize,
    refused_403: usize,
    other: usize,
    failed: usize,
    reset: usize,
    unsendable: usize,
    over_blocked: usize,
}

fn summary(outcomes: &[Outcome]) -> String {
    let mut out = String::new();
    let direct_routed = outcomes
        .iter()
        .filter(|o| o.direct.routed().is_some())
        .count();
    let direct_admin = outcomes
        .iter()
        .filter(|o| o.direct.routed().is_some_and(Routed::is_admin))
        .count();
    let _ = writeln!(
        out,
        "straight to Tomcat: {} targets, {direct_routed} routed ({direct_admin} to admin/manager), {} refused by Tomcat",
        outcomes.len(),
        outcomes.len() - direct_routed
    );
    let _ = writeln!(
        out,
        "{:<34} {:>6} {:>9} {:>7} {:>8} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:>8}",
        "client/protocol",
        "sent",
        "forwarded",
        "admin",
        "tomcat4xx",
        "400",
        "403",
        "other",
        "failed",
        "reset",
        "no-h2",
        "overblk"
    );
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for route in ROUTES {
        let t = tally(outcomes, route, &mut reasons);
        let _ = writeln!(
            out,
            "{:<34} {:>6} {:>9} {:>7} {:>8} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:>8}",
            route.to_string(),
            t.sent,
            t.routed,
            t.routed_admin,
            t.tomcat_refused,
            t.refused_400,
            t.refused_403,
            t.other,
            t.failed,
            t.reset,
            t.unsendable,
            t.over_blocked
        );
    }
    let _ = writeln!(
        out,
        "over-blocked (gisgate refused, Tomcat routed outside admin), by reason:"
    );
    for (reason, n) in &reasons {
        let _ = writeln!(out, "  {n:>6}  {reason}");
    }
    let _ = writeln!(out, "{}", not_utf8_escapes(outcomes));
    let examples = [
        (
            "over-blocking (refused client, HTTP/1.1)",
            REFUSED_H1,
            is_over_blocked as fn(Client, &Answer, &Answer) -> bool,
        ),
        (
            "forwarded, then refused by Tomcat (allowed client, HTTP/1.1)",
            ALLOWED_H1,
            |_, answer, _| matches!(answer, Answer::TomcatError(_)),
        ),
        (
            "reset by the gateway's HTTP/2 layer (allowed client, raw :path)",
            route(Client::Allowed, Protocol::Http2RawPath, Upstream::Http1),
            |_, answer, _| matches!(answer, Answer::Reset(_)),
        ),
        (
            "routed elsewhere than Tomcat routes the raw target (allowed client, HTTP/1.1)",
            ALLOWED_H1,
            |_, answer, direct| match (answer.routed(), direct.routed()) {
                (Some(a), Some(d)) => a.context != d.context,
                _ => false,
            },
        ),
    ];
    for (title, route, select) in examples {
        let chosen: Vec<&Outcome> = outcomes
            .iter()
            .filter(|o| select(route.client, &o.via[&route], &o.direct))
            .collect();
        let _ = writeln!(out, "{title}: {}, e.g.", chosen.len());
        for o in chosen.iter().take(10) {
            let _ = writeln!(
                out,
                "  {:<60} gisgate: {:<18} Tomcat: {}",
                request_targets::escape(&o.target),
                o.via[&route].short(),
                o.direct.short()
            );
        }
    }
    out
}

/// How many forwarded paths carry escapes that do not decode to UTF-8
/// (`%C0%AE`, an overlong `.`), and what Tomcat made of them: the query
/// check refuses such escapes, the path check forwards them.
fn not_utf8_escapes(outcomes: &[Outcome]) -> String {
    let (mut forwarded, mut routed) = (0, 0);
    for o in outcomes {
        let answer = &o.via[&ALLOWED_H1];
        let Some(Ok(canonical)) =
            gateway_path(&o.target, Protocol::Http1).map(|p| canonical_path(&p))
        else {
            continue;
        };
        if decodes_to_utf8(&canonical)
            || !matches!(answer, Answer::Routed(..) | Answer::TomcatError(_))
        {
            continue;
        }
        forwarded += 1;
        routed += usize::from(answer.routed().is_some());
    }
    format!(
        "forwarded paths with escapes that are not UTF-8 (allowed client, HTTP/1.1): {forwarded}, routed by Tomcat: {routed}"
    )
}

/// Whether a canonical path's escapes, decoded, are UTF-8.
fn decodes_to_utf8(canonical: &str) -> bool {
    let bytes = canonical.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                decoded.push(b);
                i += 3;
            }
            (b, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    std::str::from_utf8(&decoded).is_ok()
}

fn tally(outcomes: &[Outcome], route: Route, reasons: &mut BTreeMap<String, usize>) -> Tally {
    let mut t = Tally::default();
    for o in outcomes {
        let answer = &o.via[&route];
        t.sent += 1;
        match answer {
            Answer::Routed(_, r) => {
                t.routed += 1;
                t.routed_admin += usize::from(r.is_admin());
            }
            Answer::TomcatError(_) => t.tomcat_refused += 1,
            Answer::Gateway(400) => t.refused_400 += 1,
            Answer::Gateway(403) => t.refused_403 += 1,
            Answer::Gateway(_) => t.other += 1,
            Answer::Unsendable => t.unsendable += 1,
            Answer::Reset(_) => t.reset += 1,
            Answer::Failed(_) => t.failed += 1,
        }
        if is_over_blocked(route.client, answer, &o.direct) {
            t.over_blocked += 1;
            if route == REFUSED_H1 {
                *reasons
                    .entry(refusal_reason(&o.target, answer, &o.direct))
                    .or_default() += 1;
            }
        }
    }
    t
}

/// The gateway refused a target that Tomcat routes somewhere the client may
/// go: outside admin for a refused client, anywhere for an allowed one.
fn is_over_blocked(client: Client, answer: &Answer, direct: &Answer) -> bool {
    answer.refused_by_gateway()
        && direct
            .routed()
            .is_some_and(|r| client == Client::Allowed || !r.is_admin())
}

/// Why the gateway refused: the canonical path's error, or the admin gate
/// (case-insensitive, and `admin.` or `admin%20` count as admin) where
/// Tomcat's context names are exact.
fn refusal_reason(target: &[u8], answer: &Answer, direct: &Answer) -> String {
    match gateway_path(target, Protocol::Http1).map(|p| canonical_path(&p)) {
        None => "400: not a URI the http crate parses".into(),
        Some(Err(e)) => format!("400: {e}"),
        Some(Ok(_)) if matches!(answer, Answer::Gateway(403)) => format!(
            "403: admin to the gate, Tomcat routes it to {:?}",
            direct.routed().map_or("", |r| r.context.as_str())
        ),
        Some(Ok(_)) => "400: query or fragment".into(),
    }
}

/// The interesting targets of a run, deduplicated by what happened and by
/// their shape, at most 300: the corpus file.
fn corpus(outcomes: &[Outcome]) -> String {
    let mut by_kind: BTreeMap<String, Vec<&Outcome>> = BTreeMap::new();
    let mut shapes = BTreeSet::new();
    for o in outcomes {
        let via = |route| o.via[&route].short();
        let interesting = o.direct.routed().is_some_and(Routed::is_admin)
            || o.via.values().any(Answer::refused_by_gateway);
        if !interesting {
            continue;
        }
        let kind = format!(
            "{} | {} | {}",
            o.direct.short(),
            via(REFUSED_H1),
            via(ALLOWED_H1)
        );
        if shapes.insert((kind.clone(), shape(&o.target))) {
            by_kind.entry(kind).or_default().push(o);
        }
    }
    // Round-robin over the kinds, so rare outcomes are all kept.
    let mut lines = Vec::new();
    let mut round = 0;
    while lines.len() < 300 {
        let before = lines.len();
        for group in by_kind.values() {
            if let Some(o) = group.get(round) {
                lines.push(request_targets::escape(&o.target));
            }
        }
        if lines.len() == before {
            break;
        }
        round += 1;
    }
    lines.truncate(300);
    lines.sort();
    let mut text = String::from(
        "# Request targets from tests/tomcat_differential.rs (GISGATE_TOMCAT_CORPUS_OUT):\n\
         # ones the gateway refused, or Tomcat routed to admin/manager, one per\n\
         # distinct outcome and shape. Replayed on every run. One target per line:\n\
         # printable ASCII as is, `\\` as `\\\\`, other bytes as `\\xHH`.\n",
    );
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// A target with its letters and digits folded, so `/arcgis/%61dmin` and
/// `/arcgis/%6Danager` count as one shape.
fn shape(target: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::new();
    for &b in target {
        let c = if b.is_ascii_alphanumeric() { b'a' } else { b };
        if !(c == b'a' && out.last() == Some(&b'a')) {
            out.push(c);
        }
    }
    out
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
