//! CORS preflights and Private Network Access (SPEC §2 `cors.*`, §3 step 6):
//! the gateway answers preflights itself when origins are listed, lets them
//! pass to the upstream otherwise, and decides PNA either way.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, VARY,
};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::Full;

const APP: &str = "https://app.example.com";
const ACAPN: &str = "access-control-allow-private-network";
const LISTED: &str = "[cors]\nallowed_origins = [\"https://app.example.com\"]\n";
const LISTED_PNA: &str =
    "[cors]\nallowed_origins = [\"https://app.example.com\"]\nallow_private_network = true\n";
const UNLISTED_PNA: &str = "[cors]\nallow_private_network = true\n";

/// A CORS preflight from `origin`, optionally asking for private network
/// access.
fn preflight(path: &str, origin: &str, private_network: bool) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method("OPTIONS")
        .uri(format!("https://localhost{path}"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type");
    if private_network {
        b = b.header("access-control-request-private-network", "true");
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

/// Every `Vary` token, across all `Vary` lines, lower-cased.
fn vary_tokens(h: &HeaderMap) -> Vec<String> {
    h.get_all(VARY)
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect()
}

fn header(h: &HeaderMap, name: impl http::header::AsHeaderName) -> Option<&str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

async fn send_preflight(
    overlay: &str,
    path: &str,
    origin: &str,
    private_network: bool,
) -> (Reply, TestUpstream) {
    let env = Env::new().config(overlay).start().await;
    let r = env
        .request(Http::V1, preflight(path, origin, private_network))
        .await;
    (r, env.upstream)
}

// ---------------------------------------------------------------- gateway answers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_from_a_listed_origin_is_answered_by_the_gateway() {
    let (r, up) = send_preflight(LISTED, "/arcgis/rest/services", APP, false).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(up.count(), 0, "the upstream never sees the preflight");
    assert_eq!(header(&r.headers, ACCESS_CONTROL_ALLOW_ORIGIN), Some(APP));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_preflight_answer_varies_on_origin_and_private_network() {
    let (r, _up) = send_preflight(LISTED, "/arcgis/rest/services", APP, false).await;
    let vary = vary_tokens(&r.headers);
    assert!(vary.contains(&"origin".to_string()), "{vary:?}");
    assert!(
        vary.contains(&"access-control-request-private-network".to_string()),
        "{vary:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_preflight_answer_carries_methods_headers_and_max_age() {
    let (r, _up) = send_preflight(LISTED, "/arcgis/rest/services", APP, false).await;
    assert_eq!(
        header(&r.headers, ACCESS_CONTROL_ALLOW_METHODS),
        Some("GET, POST, HEAD, OPTIONS")
    );
    assert_eq!(
        header(&r.headers, ACCESS_CONTROL_ALLOW_HEADERS),
        Some("Authorization, Content-Type, X-Esri-Authorization, X-Requested-With")
    );
    assert_eq!(header(&r.headers, ACCESS_CONTROL_MAX_AGE), Some("600"));
    assert_eq!(header(&r.headers, ACCESS_CONTROL_ALLOW_CREDENTIALS), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_methods_headers_and_max_age_are_used() {
    let (r, _up) = send_preflight(
        "[cors]\nallowed_origins = [\"https://app.example.com\"]\nallowed_methods = [\"GET\", \"PUT\"]\nallowed_headers = \"X-Custom, Content-Type\"\nmax_age = \"1h\"\n",
        "/x",
        APP,
        false,
    )
    .await;
    assert_eq!(
        header(&r.headers, ACCESS_CONTROL_ALLOW_METHODS),
        Some("GET, PUT")
    );
    assert_eq!(
        header(&r.headers, ACCESS_CONTROL_ALLOW_HEADERS),
        Some("X-Custom, Content-Type")
    );
    assert_eq!(header(&r.headers, ACCESS_CONTROL_MAX_AGE), Some("3600"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_from_an_unlisted_origin_gets_no_allow_origin() {
    let (r, up) = send_preflight(LISTED_PNA, "/x", "https://evil.example.net", true).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(up.count(), 0);
    assert!(!r.headers.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
    assert!(!r.headers.contains_key(ACCESS_CONTROL_ALLOW_METHODS));
    assert!(
        !r.headers.contains_key(ACAPN),
        "no private network grant without an origin grant"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_credentials_adds_allow_credentials_true() {
    let (r, _up) = send_preflight(
        "[cors]\nallowed_origins = [\"https://app.example.com\"]\nallow_credentials = true\n",
        "/x",
        APP,
        false,
    )
    .await;
    assert_eq!(
        header(&r.headers, ACCESS_CONTROL_ALLOW_CREDENTIALS),
        Some("true")
    );
    assert_eq!(header(&r.headers, ACCESS_CONTROL_ALLOW_ORIGIN), Some(APP));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_origin_is_answered_with_a_star() {
    let (r, _up) = send_preflight(
        "[cors]\nallowed_origins = [\"*\"]\n",
        "/x",
        "https://any.example.org",
        false,
    )
    .await;
    assert_eq!(header(&r.headers, ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
    assert_eq!(header(&r.headers, ACCESS_CONTROL_ALLOW_CREDENTIALS), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_origin_with_credentials_is_a_config_error() {
    let site = Site::new();
    let path = site.write_config(&site.config(
        dead_addr(),
        "[cors]\nallowed_origins = [\"*\"]\nallow_credentials = true\n",
    ));
    let e = gisgate::config::load(&path)
        .expect_err("wildcard with credentials is refused")
        .to_string();
    assert!(e.contains("cors.allow_credentials"), "{e}");
    assert!(e.contains("gateway.toml:"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_network_is_granted_when_allowed_and_requested() {
    let (r, _up) = send_preflight(LISTED_PNA, "/x", APP, true).await;
    assert_eq!(header(&r.headers, ACAPN), Some("true"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_network_is_not_granted_when_not_requested() {
    let (r, _up) = send_preflight(LISTED_PNA, "/x", APP, false).await;
    assert!(!r.headers.contains_key(ACAPN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_network_is_not_granted_when_not_allowed() {
    let (r, _up) = send_preflight(LISTED, "/x", APP, true).await;
    assert_eq!(header(&r.headers, ACCESS_CONTROL_ALLOW_ORIGIN), Some(APP));
    assert!(!r.headers.contains_key(ACAPN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_preflight_answer_carries_hsts() {
    let (r, _up) = send_preflight(
        "[cors]\nallowed_origins = [\"https://app.example.com\"]\n[hsts]\nenabled = true\n",
        "/x",
        APP,
        false,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        header(&r.headers, http::header::STRICT_TRANSPORT_SECURITY),
        Some("max-age=31536000")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_answered_by_the_gateway_is_counted_with_route_preflight() {
    let env = Env::new().config(LISTED).start().await;
    let r = env.request(Http::V1, preflight("/x", APP, false)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    eventually(Duration::from_secs(5), || async {
        env.metrics().await.lines().any(|l| {
            l.starts_with(
                "gisgate_requests_total{listener=\"https\",route=\"preflight\",status=\"204\"}",
            )
        })
    })
    .await;
}

// ---------------------------------------------------------------- upstream answers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_listed_origins_preflights_pass_to_the_upstream() {
    let (r, up) = send_preflight("", "/preflight", APP, false).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(up.paths(), ["/preflight"]);
    assert_eq!(up.last().method, "OPTIONS");
    assert_eq!(
        header(&r.headers, ACCESS_CONTROL_ALLOW_ORIGIN),
        Some(APP),
        "the upstream's own CORS answer passes through"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_private_network_grant_is_stripped_when_not_allowed() {
    let (r, up) = send_preflight("", "/preflight", APP, true).await;
    assert_eq!(up.count(), 1);
    assert!(
        !r.headers.contains_key(ACAPN),
        "the upstream cannot open the private network on its own"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_preflight_gets_private_network_when_allowed_and_requested() {
    let (r, up) = send_preflight(UNLISTED_PNA, "/preflight", APP, true).await;
    assert_eq!(up.count(), 1);
    assert_eq!(header(&r.headers, ACAPN), Some("true"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_private_network_grant_is_stripped_when_not_requested() {
    let (r, _up) = send_preflight(UNLISTED_PNA, "/preflight", APP, false).await;
    assert!(!r.headers.contains_key(ACAPN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_preflight_answer_gets_vary_on_origin_and_private_network() {
    let (r, _up) = send_preflight(UNLISTED_PNA, "/preflight", APP, true).await;
    let vary = vary_tokens(&r.headers);
    assert!(vary.contains(&"origin".to_string()), "{vary:?}");
    assert!(
        vary.contains(&"access-control-request-private-network".to_string()),
        "{vary:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_preflight_over_http2_gets_private_network_when_allowed() {
    let env = Env::new()
        .upstream(Http::V2)
        .config(UNLISTED_PNA)
        .start()
        .await;
    let r = env
        .request(Http::V2, preflight("/preflight", APP, true))
        .await;
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(header(&r.headers, ACAPN), Some("true"));
}

// ---------------------------------------------------------------- simple requests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_get_from_a_listed_origin_gets_allow_origin_on_the_proxied_response() {
    let env = Env::new().config(LISTED).start().await;
    let r = env
        .request(
            Http::V1,
            get("/arcgis/rest/info?f=json", &[("origin", APP)]),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(env.upstream.paths(), ["/arcgis/rest/info"]);
    assert_eq!(header(&r.headers, ACCESS_CONTROL_ALLOW_ORIGIN), Some(APP));
    assert!(vary_tokens(&r.headers).contains(&"origin".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_get_from_an_unlisted_origin_gets_no_allow_origin() {
    let env = Env::new().config(LISTED).start().await;
    let r = env
        .request(
            Http::V1,
            get(
                "/arcgis/rest/info",
                &[("origin", "https://evil.example.net")],
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.headers.contains_key(ACCESS_CONTROL_ALLOW_ORIGIN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_options_without_origin_is_an_ordinary_request() {
    let env = Env::new().config(LISTED).start().await;
    let req = Request::builder()
        .method("OPTIONS")
        .uri("https://localhost/arcgis/rest/info")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = env.request(Http::V1, req).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(env.upstream.last().method, "OPTIONS");
}

// ---------------------------------------------------------------- upstream CORS headers

/// A GET of the upstream's `/cors-star` (which grants `*` with credentials
/// and exposes a header) through a gateway that lists origins, with the
/// given `Origin` or none.
async fn get_cors_star(origin: Option<&str>) -> Reply {
    let env = Env::new().config(LISTED).start().await;
    let headers: Vec<(&str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
    let r = env.request(Http::V1, get("/cors-star", &headers)).await;
    assert_eq!(r.status, StatusCode::OK);
    r
}

/// No `Access-Control-*` header of the upstream's is left, and `Vary`
/// names Origin once, beside the upstream's own token.
fn assert_only_the_gateways_cors(r: &Reply, allow_origin: Option<&str>) {
    assert_eq!(
        header(&r.headers, ACCESS_CONTROL_ALLOW_ORIGIN),
        allow_origin
    );
    assert!(!r.headers.contains_key(ACCESS_CONTROL_ALLOW_CREDENTIALS));
    assert!(!r.headers.contains_key("access-control-expose-headers"));
    let vary = vary_tokens(&r.headers);
    assert_eq!(
        vary.iter().filter(|t| *t == "origin").count(),
        1,
        "Vary: Origin once: {vary:?}"
    );
    assert!(vary.contains(&"accept-encoding".to_string()), "{vary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_cors_headers_are_removed_from_a_response_to_a_request_without_origin() {
    let r = get_cors_star(None).await;
    assert_only_the_gateways_cors(&r, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_cors_headers_are_replaced_by_the_grant_to_a_listed_origin() {
    let r = get_cors_star(Some(APP)).await;
    assert_only_the_gateways_cors(&r, Some(APP));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_cors_headers_are_removed_from_a_response_to_an_unlisted_origin() {
    let r = get_cors_star(Some("https://evil.example.net")).await;
    assert_only_the_gateways_cors(&r, None);
}
