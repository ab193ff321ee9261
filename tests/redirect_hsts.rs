//! The plain-HTTP listener (redirect to HTTPS, or serve, per
//! `server.protocol`), Host validation, and Strict-Transport-Security on
//! every HTTPS response and never on plain HTTP.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const HSTS_ON: &str =
    "[hsts]\nenabled = true\ninclude_subdomains = true\npreload = true\n[admin]\nallowed_ips = [\"10.9.9.9/32\"]\n";
const HSTS_VALUE: &str = "max-age=31536000; includeSubDomains; preload";

/// A raw HTTP/1.1 request with `Connection: close`.
fn raw(method: &str, target: &str, host: &str) -> String {
    format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

fn hsts_of(r: &Reply) -> Vec<String> {
    r.headers
        .get_all(http::header::STRICT_TRANSPORT_SECURITY)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// An HTTPS upstream that answers everything with 404 and its own HSTS.
async fn not_found_upstream(site: &Site) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let (chain, key) = site.upstream_cert.chain_and_key();
    let acceptor = tls_acceptor(chain, key, vec![b"http/1.1".to_vec()]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(|_req: Request<hyper::body::Incoming>| async {
                    Ok::<_, std::convert::Infallible>(
                        Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .header("strict-transport-security", "max-age=1")
                            .body(Full::new(Bytes::from_static(b"not found")))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, task)
}

// ---------------------------------------------------------------- redirect

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_get_is_redirected_with_308_to_the_public_https_port() {
    let env = Env::new().start().await;
    let r = env
        .raw_http(&raw(
            "GET",
            "/arcgis/rest/services?f=json&token=a%20b",
            "gis.example.com:6080",
        ))
        .await;
    assert_eq!(status_of(&r), 308, "{r}");
    assert_eq!(
        header_of(&r, "location"),
        Some("https://gis.example.com:6443/arcgis/rest/services?f=json&token=a%20b")
    );
    assert_eq!(env.upstream.count(), 0);
}

/// A browser holding the site's HSTS turns `http://gis:6080/` into
/// `https://gis:6080/` itself (RFC 6797 §8.3 keeps the port): the HTTP
/// listener answers that ClientHello and redirects to the HTTPS port, over
/// HTTP/1.1 and HTTP/2, instead of leaving the link broken
/// (tests/browser.rs sees the same from Chromium).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_the_http_port_is_redirected_to_the_https_port() {
    let env = Env::new().config("[hsts]\nenabled = true").start().await;
    for h2 in [false, true] {
        let req = Request::builder()
            .uri(format!(
                "https://gis.example.com:{}/arcgis/rest/info?f=json",
                env.http().port()
            ))
            .header("host", format!("gis.example.com:{}", env.http().port()))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let req = if h2 {
            let (mut parts, body) = req.into_parts();
            parts.headers.remove("host");
            Request::from_parts(parts, body)
        } else {
            req
        };
        let r = https_request(&env.site, env.http(), h2, req).await;
        assert_eq!(r.status.as_u16(), 308, "h2: {h2}");
        assert_eq!(
            r.headers["location"], "https://gis.example.com:6443/arcgis/rest/info?f=json",
            "h2: {h2}"
        );
    }
    assert_eq!(env.upstream.count(), 0);
}

/// Where the HTTP listener serves (`HTTP_AND_HTTPS`), it is plain HTTP
/// only: a ClientHello there is not answered with a handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_a_serving_http_port_gets_no_handshake() {
    let env = Env::new()
        .config("[server]\nprotocol = \"HTTP_AND_HTTPS\"")
        .start()
        .await;
    let tls = tls_connect(
        env.http(),
        client_config(env.site.ca.roots(), &[b"http/1.1"]),
    )
    .await;
    assert!(tls.is_err(), "a TLS handshake on the plain HTTP port");
    assert_eq!(env.upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_post_is_redirected_with_308_and_never_forwarded() {
    let env = Env::new().start().await;
    let r = env.raw_http("POST /arcgis/rest/services/x/FeatureServer/0/applyEdits?f=json HTTP/1.1\r\nHost: gis.example.com\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 9\r\nConnection: close\r\n\r\nedits=%5B")
    .await;
    assert_eq!(status_of(&r), 308, "{r}");
    assert_eq!(
        header_of(&r, "location"),
        Some(
            "https://gis.example.com:6443/arcgis/rest/services/x/FeatureServer/0/applyEdits?f=json"
        )
    );
    assert_eq!(env.upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_head_is_redirected_with_308() {
    let env = Env::new().start().await;
    let r = env
        .raw_http(&raw("HEAD", "/arcgis/", "gis.example.com"))
        .await;
    assert_eq!(status_of(&r), 308, "{r}");
    assert_eq!(
        header_of(&r, "location"),
        Some("https://gis.example.com:6443/arcgis/")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_redirect_status_301_is_used() {
    let env = Env::new()
        .config("[server]\nredirect_status = 301\n")
        .start()
        .await;
    let r = env.raw_http(&raw("GET", "/x", "gis.example.com")).await;
    assert_eq!(status_of(&r), 301, "{r}");
    assert_eq!(
        header_of(&r, "location"),
        Some("https://gis.example.com:6443/x")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_https_port_443_is_omitted_from_the_location() {
    let env = Env::new()
        .config("[server]\npublic_https_port = 443\n")
        .start()
        .await;
    let r = env
        .raw_http(&raw("GET", "/x?y=1", "gis.example.com:80"))
        .await;
    assert_eq!(
        header_of(&r, "location"),
        Some("https://gis.example.com/x?y=1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_host_overrides_the_request_host() {
    let env = Env::new()
        .config("[server]\npublic_host = \"maps.example.org\"\n")
        .start()
        .await;
    let r = env.raw_http(&raw("GET", "/x", "internal-name:6080")).await;
    assert_eq!(
        header_of(&r, "location"),
        Some("https://maps.example.org:6443/x")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_location_carries_the_canonical_path() {
    let env = Env::new().start().await;
    let r = env
        .raw_http(&raw(
            "GET",
            "/arcgis//rest/./x/../services",
            "gis.example.com",
        ))
        .await;
    assert_eq!(
        header_of(&r, "location"),
        Some("https://gis.example.com:6443/arcgis/rest/services")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_is_counted_with_route_redirect() {
    let env = Env::new().start().await;
    let r = env.raw_http(&raw("GET", "/x", "gis.example.com")).await;
    assert_eq!(status_of(&r), 308);
    let m = env.metrics().await;
    assert!(
        m.contains("gisgate_requests_total{listener=\"http\",route=\"redirect\",status=\"308\"}"),
        "{m}"
    );
}

// ---------------------------------------------------------------- bad Host

/// Sends `request` to the redirecting HTTP listener and checks it got 400
/// without any Location.
async fn assert_bad_host(request: &str) {
    let env = Env::new().start().await;
    let r = env.raw_http(request).await;
    assert_eq!(status_of(&r), 400, "{request:?} -> {r}");
    assert!(header_of(&r, "location").is_none(), "{r}");
    assert!(
        !r.to_ascii_lowercase().contains("evil"),
        "nothing of the request is echoed: {r}"
    );
    assert_eq!(env.upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_with_a_path_gets_400() {
    assert_bad_host(&raw("GET", "/x", "evil.com/x")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_with_userinfo_gets_400() {
    assert_bad_host(&raw("GET", "/x", "good.com@evil.com")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_with_a_space_gets_400() {
    assert_bad_host(&raw("GET", "/x", "good.com evil.com")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_with_an_out_of_range_port_gets_400() {
    assert_bad_host(&raw("GET", "/x", "localhost:99999")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_request_without_host_gets_400() {
    assert_bad_host("GET /x HTTP/1.0\r\n\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http11_request_without_host_gets_400() {
    assert_bad_host("GET /x HTTP/1.1\r\nConnection: close\r\n\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_with_two_host_headers_gets_400() {
    // RFC 9112 §3.2: more than one Host field line is a 400.
    assert_bad_host(
        "GET /x HTTP/1.1\r\nHost: good.com\r\nHost: evil.com\r\nConnection: close\r\n\r\n",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_carriage_return_in_host_gets_400_without_injected_header() {
    assert_bad_host(
        "GET /x HTTP/1.1\r\nHost: good.com\rSet-Cookie: evil=1\r\nConnection: close\r\n\r\n",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_line_break_in_host_gets_400() {
    assert_bad_host(&raw("GET", "/x", "good.com%0d%0aSet-Cookie:evil=1")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_line_break_in_path_gets_400_without_injected_header() {
    assert_bad_host(&raw("GET", "/x%0d%0aSet-Cookie:%20evil=1", "good.com")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_host_on_the_https_listener_gets_400() {
    let env = Env::new().start().await;
    let r = env.raw_https(&raw("GET", "/x", "evil.com/x")).await;
    assert_eq!(status_of(&r), 400, "{r}");
    assert_eq!(env.upstream.count(), 0);
}

// ---------------------------------------------------------------- HSTS

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_is_on_a_proxied_https_response() {
    let env = Env::new().config(HSTS_ON).start().await;
    let r = env.get("/arcgis/rest/info").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(hsts_of(&r), [HSTS_VALUE]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_is_on_an_http2_response() {
    let env = Env::new().config(HSTS_ON).start().await;
    let r = env.request(Http::V2, get("/arcgis/rest/info", &[])).await;
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(hsts_of(&r), [HSTS_VALUE]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_max_age_follows_the_configured_duration() {
    let env = Env::new()
        .config("[hsts]\nenabled = true\nmax_age = \"2h\"\n")
        .start()
        .await;
    let r = env.get("/x").await;
    assert_eq!(hsts_of(&r), ["max-age=7200"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_is_on_a_403_admin_refusal() {
    let env = Env::new().config(HSTS_ON).start().await;
    let r = env.get("/arcgis/admin").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(hsts_of(&r), [HSTS_VALUE]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_is_on_a_400_for_a_bad_path() {
    let env = Env::new().config(HSTS_ON).start().await;
    let r = env.raw_https(&raw("GET", "/a%2fb", "localhost")).await;
    assert_eq!(status_of(&r), 400, "{r}");
    assert_eq!(header_values(&r, "strict-transport-security"), [HSTS_VALUE]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_is_on_a_502_for_a_dead_upstream() {
    let site = Site::new();
    let tg = site.gateway_at(dead_addr(), HSTS_ON).await;
    let r = https_get(&site, &tg, "/x", false).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(hsts_of(&r), [HSTS_VALUE]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_is_on_an_upstream_404_and_replaces_the_upstreams_own() {
    let site = Site::new();
    let (addr, _task) = not_found_upstream(&site).await;
    let tg = site.gateway_at(addr, HSTS_ON).await;
    let r = https_get(&site, &tg, "/missing", false).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(hsts_of(&r), [HSTS_VALUE]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_hsts_is_replaced_by_the_gateways() {
    let env = Env::new().config(HSTS_ON).start().await;
    let r = env.get("/hsts").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(hsts_of(&r), [HSTS_VALUE], "exactly one value, ours");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_on_the_http_listener_never_carries_hsts() {
    let env = Env::new().config(HSTS_ON).start().await;
    let r = env.raw_http(&raw("GET", "/x", "gis.example.com")).await;
    assert_eq!(status_of(&r), 308);
    assert!(
        header_values(&r, "strict-transport-security").is_empty(),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_host_400_on_the_http_listener_never_carries_hsts() {
    let env = Env::new().config(HSTS_ON).start().await;
    let r = env.raw_http(&raw("GET", "/x", "a@b")).await;
    assert_eq!(status_of(&r), 400);
    assert!(
        header_values(&r, "strict-transport-security").is_empty(),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_hsts_never_reaches_a_plain_http_client() {
    let env = Env::new()
        .config("[server]\nprotocol = \"HTTP_AND_HTTPS\"\n")
        .start()
        .await;
    let (status, headers, _) = plain_request(env.http(), "GET", "/hsts", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!headers.contains_key(http::header::STRICT_TRANSPORT_SECURITY));
}

// ---------------------------------------------------------------- HSTS config errors

fn config_error(site: &Site, overlay: &str) -> String {
    let path = site.write_config(&site.config(dead_addr(), overlay));
    match gisgate::config::load(&path) {
        Ok(_) => panic!("config was accepted:\n{overlay}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_with_http_and_https_is_a_config_error() {
    let site = Site::new();
    let e = config_error(
        &site,
        "[server]\nprotocol = \"HTTP_AND_HTTPS\"\n[hsts]\nenabled = true\n",
    );
    assert!(
        e.contains("hsts.enabled = true needs server.protocol = \"HTTPS\""),
        "{e}"
    );
    assert!(e.contains("\"HTTP_AND_HTTPS\""), "{e}");
    assert!(e.contains("gateway.toml:"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_preload_without_include_subdomains_is_a_config_error() {
    let site = Site::new();
    let e = config_error(&site, "[hsts]\nenabled = true\npreload = true\n");
    assert!(e.contains("hsts.preload"), "{e}");
    assert!(e.contains("include_subdomains"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_preload_with_less_than_a_year_is_a_config_error() {
    let site = Site::new();
    let e = config_error(
        &site,
        "[hsts]\nenabled = true\ninclude_subdomains = true\npreload = true\nmax_age = \"180d\"\n",
    );
    assert!(e.contains("hsts.preload"), "{e}");
    assert!(e.contains("one year"), "{e}");
}

// ---------------------------------------------------------------- other protocols

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_https_mode_proxies_the_http_listener_with_forwarded_proto_http() {
    let env = Env::new()
        .config("[server]\nprotocol = \"HTTP_AND_HTTPS\"\n")
        .start()
        .await;
    let (status, _, body) = plain_request(env.http(), "GET", "/arcgis/rest/info?f=json", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, Bytes::from_static(b"{\"ok\":true}"));
    let seen = env.upstream.last();
    assert_eq!(seen.path, "/arcgis/rest/info");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    // The HTTPS listener serves too.
    assert_eq!(env.get("/x").await.status, StatusCode::OK);
    assert_eq!(env.upstream.last().headers["x-forwarded-proto"], "https");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_mode_needs_no_tls_section_and_has_no_https_listener() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let mut table: toml::Table = site
        .config(up.addr, "[server]\nprotocol = \"HTTP\"\n")
        .parse()
        .unwrap();
    table.remove("tls");
    let tg = site
        .gateway_from_text(&toml::to_string(&table).unwrap())
        .await;
    assert!(tg.https.is_none(), "no HTTPS listener in HTTP mode");
    let (status, _, _) = plain_request(tg.http(), "GET", "/arcgis/rest/info", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(up.last().headers["x-forwarded-proto"], "http");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_literal_host_keeps_its_brackets_in_the_location() {
    let env = Env::new().start().await;
    let r = env.raw_http(&raw("GET", "/x", "[::1]:6080")).await;
    assert_eq!(status_of(&r), 308, "{r}");
    assert_eq!(header_of(&r, "location"), Some("https://[::1]:6443/x"));
}
