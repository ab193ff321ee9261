//! A real browser against the gateway (issue 22): headless Chromium loads a
//! web map's page from one origin that calls the gateway with `fetch()`,
//! then the same page from an origin the gateway does not list, then an
//! `http://` URL of the gateway. What the page could read, what reached
//! the GIS server, the redirect the browser followed, and the TLS the
//! browser negotiated (ALPN, version, key exchange group) are asserted as a
//! user and an operator would see them. A second test loads the page from
//! an origin the browser takes for a public site, to show what Chromium's
//! Local Network Access does to it and that `cors.allow_private_network`
//! plays no part in it (README, CORS and Private Network Access), and a
//! third what HSTS does to the HTTP listener's redirect.
//!
//! One browser launch per test: starting Chromium is most of the cost.

#[path = "common/chromium.rs"]
mod chromium;
mod common;

use std::convert::Infallible;

use bytes::Bytes;
use chromium::Chromium;
use common::*;
use http::Response;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// The web map's origin host, listed in `cors.allowed_origins`.
const MAPS: &str = "maps.example.test";
/// Another site's origin host on the same server: not listed.
const EVIL: &str = "evil.example.test";
/// A web map's origin the browser is told is on the public internet.
const PUBLIC: &str = "public.example.test";
/// The gateway's public name.
const GIS: &str = "gis.example.test";

/// What ArcGIS web clients send: a token in `X-Esri-Authorization`, which
/// makes the request "non-simple", so the browser preflights it.
const TOKEN: &str = "Bearer browser-test-token";
/// A cookie the browser holds for the gateway's host (a web tier's session
/// or token cookie); sent only on credentialed requests.
const COOKIE: (&str, &str) = ("agstoken", "browser-test-cookie");

/// The page both origins serve: it calls the gateway three ways and keeps
/// what it could read (status and body) or the error `fetch()` threw, in
/// `window.results`. `tag` (maps, evil or public) names the GIS paths each origin
/// calls, so the upstream's log shows who reached it.
fn page(gateway: &str, no_credentials_gateway: &str) -> String {
    format!(
        r#"<!doctype html>
<meta charset="utf-8">
<title>gisgate browser test</title>
<script>
const tag = location.hostname.split(".")[0];
async function attempt(url, init) {{
  try {{
    const r = await fetch(url, init);
    return {{ status: r.status, body: await r.text() }};
  }} catch (e) {{
    return {{ error: e.name + ": " + e.message }};
  }}
}}
window.results = (async () => ({{
  origin: location.origin,
  get: await attempt("{gateway}/arcgis/rest/services/" + tag + "/info?f=json"),
  post: await attempt("{gateway}/arcgis/rest/services/" + tag + "/query", {{
    method: "POST",
    headers: {{ "X-Esri-Authorization": "{TOKEN}", "Content-Type": "application/json" }},
    body: '{{"where":"1=1"}}',
  }}),
  credentials: await attempt("{gateway}/arcgis/rest/services/" + tag + "/self?f=json",
    {{ credentials: "include" }}),
  credentials_not_allowed: await attempt(
    "{no_credentials_gateway}/arcgis/rest/services/" + tag + "/self-elsewhere?f=json",
    {{ credentials: "include" }}),
}}))();
</script>
"#
    )
}

/// The web map's server: HTTPS on loopback with a certificate for the
/// origin names, serving `html` at every path. Bound before the gateways
/// start (its port is part of the origin they list), serving once the page,
/// which names the gateways' ports, can be written.
struct PageServer {
    listener: TcpListener,
    port: u16,
}

impl PageServer {
    async fn bind() -> PageServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        PageServer { listener, port }
    }

    fn origin(&self, host: &str) -> String {
        format!("https://{host}:{}", self.port)
    }

    fn serve(self, site: &Site, html: String) -> AbortOnDrop {
        let (chain, key) = site.ca.issue(&[MAPS, EVIL, PUBLIC]).chain_and_key();
        let acceptor = tls_acceptor(chain, key, vec![b"http/1.1".to_vec()]);
        let html = Bytes::from(html);
        AbortOnDrop(tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = self.listener.accept().await else {
                    continue;
                };
                let (acceptor, html) = (acceptor.clone(), html.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |_req| {
                        let page = Response::builder()
                            .header("content-type", "text/html; charset=utf-8")
                            .body(Full::new(html.clone()))
                            .unwrap();
                        async move { Ok::<_, Infallible>(page) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        }))
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A gateway for `gis.example.test` with `overlay` (TOML), on an HTTPS
/// port chosen beforehand so its redirects can name it.
async fn gateway(site: &Site, up: &TestUpstream, overlay: &str) -> TestGateway {
    let https = free_port();
    site.gateway(
        up,
        &format!(
            r#"
[server]
https_listen = "127.0.0.1:{https}"
public_https_port = {https}
[tls]
cert = "gis.crt"
key = "gis.key"
{overlay}
"#
        ),
    )
    .await
}

fn https_url(tg: &TestGateway) -> String {
    format!("https://{GIS}:{}", tg.https().port())
}

/// A test site whose CA also issued the gateway's certificate for its
/// public name, `gis.crt`.
fn site() -> Site {
    let site = Site::new();
    site.ca.write("gis", &site.ca.issue(&[GIS]));
    site
}

/// Chromium trusting the site's CA, with `extra` flags; `None` (the test
/// is skipped, loudly) where Chromium or certutil is not installed.
fn launch(site: &Site, extra: &[String]) -> Option<Chromium> {
    let program = real_peer("chromium", &["/usr/bin/chromium"])?;
    let certutil = real_peer("certutil", &[])?;
    Some(Chromium::launch(
        &program,
        &certutil,
        &site.ca.ca_path(),
        extra,
    ))
}

/// What the upstream saw at `path`, if anything.
fn seen_at(up: &TestUpstream, path: &str) -> Vec<Seen> {
    let seen = up.seen.lock().unwrap();
    seen.iter().filter(|s| s.path == path).cloned().collect()
}

fn readable(result: &Value) -> bool {
    result["status"] == 200 && result["body"] == "{\"ok\":true}"
}

/// `fetch()` rejected: how a page learns that CORS refused it.
fn refused(result: &Value) -> bool {
    result["error"] == "TypeError: Failed to fetch"
}

/// The browser's view of the response to the first request to `url_prefix`
/// (Network.responseReceived): ALPN protocol and TLS details.
fn response_to(browser: &Chromium, url_prefix: &str) -> Value {
    browser
        .events("Network.responseReceived")
        .into_iter()
        .map(|e| e["response"].clone())
        .find(|r| r["url"].as_str().unwrap().starts_with(url_prefix))
        .unwrap_or_else(|| panic!("no response from {url_prefix}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_reads_only_what_cors_grants_follows_the_redirect_and_negotiates_the_hybrid_group()
{
    let site = site();
    let Some(browser) = launch(&site, &[]) else {
        return;
    };
    let up = site.upstream(Http::V1).await;
    let pages = PageServer::bind().await;
    let (maps, evil) = (pages.origin(MAPS), pages.origin(EVIL));
    // The page's gateway grants credentials to the web map's origin; a
    // second one lists the same origin without them.
    let cors = format!("[cors]\nallowed_origins = [\"{maps}\"]\nallow_credentials = ");
    let gw = gateway(&site, &up, &format!("{cors}true")).await;
    let gw_no_credentials = gateway(&site, &up, &format!("{cors}false")).await;
    let _pages = pages.serve(&site, page(&https_url(&gw), &https_url(&gw_no_credentials)));

    let tab = browser.new_tab().await;
    for gateway in [&gw, &gw_no_credentials] {
        let cookie = json!({ "url": https_url(gateway), "name": COOKIE.0,
            "value": COOKIE.1, "secure": true });
        tab.call("Network.setCookie", cookie).await;
    }
    tab.navigate(&format!("{maps}/map.html")).await;
    let from_maps = tab.evaluate("window.results").await;
    tab.navigate(&format!("{evil}/map.html")).await;
    let from_evil = tab.evaluate("window.results").await;

    let context = format!("from {maps}: {from_maps:#}\nfrom {evil}: {from_evil:#}");
    the_listed_origin_reads_what_the_gateway_grants(&from_maps, &up, &context);
    the_unlisted_origin_reads_nothing(&from_evil, &up, &context);
    let preflight = "gisgate_requests_total{listener=\"https\",route=\"preflight\",status=\"204\"}";
    gw.metrics_with(preflight).await;
    let preflights = preflights_sent(&browser);
    assert_eq!(preflights.len(), 2, "one per origin: {preflights:#?}");
    for p in &preflights {
        // Page and gateway share the loopback address space.
        assert_eq!(
            p["clientSecurityState"]["initiatorIPAddressSpace"], "Loopback",
            "{p:#}"
        );
    }
    no_private_network_question_in(&preflights);

    the_redirect_is_followed_to_https(&browser, &tab, &gw, &up).await;
    the_hybrid_group_is_negotiated_over_h2_and_tls13(&browser, &gw).await;
}

/// Chromium 142 and later ask no Private Network Access question: a public
/// page reaches a gateway on loopback only once the user grants the Local
/// Network Access permission (`loopback-network` in Chromium 156; headless,
/// nobody is asked and it is refused). The gateway grants PNA here, and it
/// changes nothing; once the permission is given, no preflight asks for PNA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_page_reaches_the_loopback_gateway_only_with_the_local_network_permission() {
    let site = site();
    let pages = PageServer::bind().await;
    let public = pages.origin(PUBLIC);
    let public_address = format!(
        "--ip-address-space-overrides=127.0.0.1:{}=public",
        pages.port
    );
    let Some(browser) = launch(&site, &[public_address]) else {
        return;
    };
    let up = site.upstream(Http::V1).await;
    let cors = format!("[cors]\nallowed_origins = [\"{public}\"]\nallow_private_network = true");
    let gw = gateway(&site, &up, &cors).await;
    let _pages = pages.serve(&site, page(&https_url(&gw), &https_url(&gw)));

    let tab = browser.new_tab().await;
    tab.navigate(&format!("{public}/map.html")).await;
    let refused_results = tab.evaluate("window.results").await;
    assert!(refused(&refused_results["get"]), "{refused_results:#}");
    assert!(refused(&refused_results["post"]), "{refused_results:#}");
    assert_eq!(up.count(), 0, "nothing is sent: {:?}", up.paths());
    let why: Vec<Value> = browser.events("Network.loadingFailed");
    assert!(
        why.iter()
            .any(|e| e["corsErrorStatus"]["corsError"] == "LocalNetworkAccessPermissionDenied"),
        "{why:#?}"
    );

    let grant = json!({ "permission": { "name": "loopback-network" }, "setting": "granted",
        "origin": public });
    browser.call(None, "Browser.setPermission", grant).await;
    tab.navigate(&format!("{public}/map.html")).await;
    let granted = tab.evaluate("window.results").await;
    assert!(readable(&granted["get"]), "{granted:#}");
    assert!(readable(&granted["post"]), "{granted:#}");
    let preflights = preflights_sent(&browser);
    assert_eq!(preflights.len(), 1, "{preflights:#?}");
    assert_eq!(
        preflights[0]["clientSecurityState"]["initiatorIPAddressSpace"],
        "Public"
    );
    no_private_network_question_in(&preflights);
}

/// HSTS (RFC 6797 §8.3) keeps an explicit port that is not 80: once a
/// browser holds the gateway's HSTS, `http://gis.example.test:HTTP_PORT`
/// becomes `https://` on that same port, inside the browser (a 307 of its
/// own). The HTTP listener answers that TLS handshake and redirects to the
/// HTTPS port, so the link still lands (before, the page failed with
/// `ERR_SSL_PROTOCOL_ERROR`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_hsts_a_browser_asks_for_https_on_the_http_port_and_lands() {
    let site = site();
    let Some(browser) = launch(&site, &[]) else {
        return;
    };
    let up = site.upstream(Http::V1).await;
    let gw = gateway(&site, &up, "[hsts]\nenabled = true").await;
    let tab = browser.new_tab().await;
    let http_port = gw.http().port();
    let http_url = format!("http://{GIS}:{http_port}/arcgis/rest/info?f=json");
    let landing = format!("{}/arcgis/rest/info?f=json", https_url(&gw));
    tab.navigate(&http_url).await;
    assert_eq!(tab.evaluate("location.href").await, landing);

    // Loads (or panics with the browser's error), then lands again.
    tab.navigate(&http_url).await;
    assert_eq!(tab.evaluate("location.href").await, landing);
    let upgraded = format!("https://{GIS}:{http_port}/arcgis/rest/info?f=json");
    let hop = browser
        .events("Network.requestWillBeSent")
        .into_iter()
        .find(|e| e["request"]["url"] == upgraded)
        .expect("the browser upgraded the URL itself");
    assert_eq!(hop["redirectResponse"]["status"], 307, "{hop:#}");
    let reached = seen_at(&up, "/arcgis/rest/info");
    assert_eq!(reached.len(), 2, "both visits reached the GIS server");
}

/// The web map's origin, listed: it reads the simple GET, the preflighted
/// POST reaches the GIS server with its token, and the credentialed request
/// is readable only from the gateway that allows credentials.
fn the_listed_origin_reads_what_the_gateway_grants(
    results: &Value,
    up: &TestUpstream,
    context: &str,
) {
    assert!(readable(&results["get"]), "{context}");
    let get = seen_at(up, "/arcgis/rest/services/maps/info");
    assert!(
        !get[0].headers.contains_key("cookie"),
        "a simple GET carries no cookie"
    );

    assert!(readable(&results["post"]), "{context}");
    let post = seen_at(up, "/arcgis/rest/services/maps/query");
    assert_eq!(post.len(), 1, "the preflight was the gateway's: {post:?}");
    assert_eq!(post[0].method, "POST");
    assert_eq!(post[0].headers["x-esri-authorization"], TOKEN);

    assert!(readable(&results["credentials"]), "{context}");
    let cookie_header = format!("{}={}", COOKIE.0, COOKIE.1);
    let with_credentials = seen_at(up, "/arcgis/rest/services/maps/self");
    assert_eq!(with_credentials[0].headers["cookie"], cookie_header);

    // Without allow_credentials the browser still sends the request (CORS
    // guards what a page reads, not what it sends), and hides the answer.
    assert!(refused(&results["credentials_not_allowed"]), "{context}");
    let elsewhere = seen_at(up, "/arcgis/rest/services/maps/self-elsewhere");
    assert_eq!(elsewhere[0].headers["cookie"], cookie_header);
}

/// Another origin: every `fetch()` fails, and the preflighted POST never
/// reaches the GIS server.
fn the_unlisted_origin_reads_nothing(results: &Value, up: &TestUpstream, context: &str) {
    for request in ["get", "post", "credentials", "credentials_not_allowed"] {
        assert!(refused(&results[request]), "{request}: {context}");
    }
    assert!(seen_at(up, "/arcgis/rest/services/evil/query").is_empty());
}

/// The CORS preflights the browser sent, with the headers as sent
/// (Network.requestWillBeSentExtraInfo).
fn preflights_sent(browser: &Chromium) -> Vec<Value> {
    browser
        .events("Network.requestWillBeSentExtraInfo")
        .into_iter()
        .filter(|e| e["headers"][":method"] == "OPTIONS")
        .collect()
}

/// No `Access-Control-Request-Private-Network` on any preflight: the
/// browser asked no PNA question, so `cors.allow_private_network` answered
/// none.
fn no_private_network_question_in(preflights: &[Value]) {
    for p in preflights {
        let headers = p["headers"].as_object().unwrap();
        let asks = |h: &String| h.eq_ignore_ascii_case("access-control-request-private-network");
        assert!(!headers.keys().any(asks), "{p:#}");
    }
}

/// `http://` on the gateway's HTTP listener: the browser follows its 308 to
/// the HTTPS listener, where the request reaches the GIS server.
async fn the_redirect_is_followed_to_https(
    browser: &Chromium,
    tab: &chromium::Tab<'_>,
    gw: &TestGateway,
    up: &TestUpstream,
) {
    let path = "/arcgis/rest/services/maps/redirected";
    tab.navigate(&format!("http://{GIS}:{}{path}?f=json", gw.http().port()))
        .await;
    let landed = tab.evaluate("location.href").await;
    assert_eq!(landed, format!("{}{path}?f=json", https_url(gw)));
    let hop = browser
        .events("Network.requestWillBeSent")
        .into_iter()
        .find(|e| e["request"]["url"] == landed)
        .expect("the browser requested the redirect's target");
    assert_eq!(hop["redirectResponse"]["status"], 308, "{hop:#}");
    let seen = seen_at(up, path);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].headers["x-forwarded-proto"], "https");
    let redirect = "gisgate_requests_total{listener=\"http\",route=\"redirect\",status=\"308\"}";
    gw.metrics_with(redirect).await;
}

/// TLS as the browser saw it (ALPN h2, TLS 1.3, the post-quantum hybrid
/// X25519MLKEM768, which Chromium offers first) and as the gateway counted
/// it.
async fn the_hybrid_group_is_negotiated_over_h2_and_tls13(browser: &Chromium, gw: &TestGateway) {
    let url = format!("{}/arcgis/rest/services/maps/info", https_url(gw));
    let response = response_to(browser, &url);
    assert_eq!(response["protocol"], "h2", "ALPN");
    let tls = &response["securityDetails"];
    assert_eq!(tls["protocol"], "TLS 1.3", "{tls:#}");
    assert_eq!(tls["keyExchangeGroup"], "X25519MLKEM768", "{tls:#}");
    let metrics = gw.metrics_with(",group=\"X25519MLKEM768\"}").await;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("gisgate_tls_handshakes_total{version=\"TLSv1.3\",")
                && l.contains(",group=\"X25519MLKEM768\"}")
        ),
        "{metrics}"
    );
}
