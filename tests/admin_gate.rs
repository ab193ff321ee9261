//! The admin gate (SPEC §3 steps 3, 4 and 7): every spelling of an admin
//! path that the upstream would read as admin is refused from outside
//! `admin.allowed_ips` (403), or is refused as ambiguous (400), and never
//! reaches the upstream; from inside, the upstream gets the canonical path.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;

/// The loopback test client is outside this list.
const OUTSIDE: &str = "[admin]\nallowed_ips = [\"10.9.9.9/32\"]\n";
const OUTSIDE_HTTP_AND_HTTPS: &str =
    "[server]\nprotocol = \"HTTP_AND_HTTPS\"\n[admin]\nallowed_ips = [\"10.9.9.9/32\"]\n";
const TRUSTED_LOOPBACK_PROXY: &str =
    "[admin]\nallowed_ips = [\"10.9.9.9/32\"]\n[client_ip]\ntrusted_proxies = [\"127.0.0.0/8\"]\n";

/// What the gateway must make of a raw admin path.
#[derive(Clone, Copy)]
enum Expect {
    /// Canonicalises to this admin path: 403 from outside the allow list,
    /// forwarded as exactly this from inside.
    Admin(&'static str),
    /// Cannot be made canonical without doubt: 400 for everyone.
    BadPath,
}

impl Expect {
    fn refused_status(self) -> u16 {
        match self {
            Expect::Admin(_) => 403,
            Expect::BadPath => 400,
        }
    }
}

fn raw_get(target: &str, extra_headers: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{extra_headers}Connection: close\r\n\r\n")
}

async fn refused_over_http1_tls(path: &str, expect: Expect) {
    let env = Env::new().config(OUTSIDE).start().await;
    let r = env.raw_https(&raw_get(path, "")).await;
    assert_eq!(status_of(&r), expect.refused_status(), "{path} -> {r}");
    assert_eq!(env.upstream.count(), 0, "{path} reached the upstream");
}

async fn refused_over_http2(path: &str, expect: Expect) {
    let env = Env::new().config(OUTSIDE).start().await;
    let req = Request::builder()
        .uri(format!("https://localhost{path}"))
        .body(Full::new(Bytes::new()))
        .expect("an HTTP/2 client can send this path");
    let r = env.request(Http::V2, req).await;
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(r.status.as_u16(), expect.refused_status(), "{path}");
    assert_eq!(env.upstream.count(), 0, "{path} reached the upstream");
}

async fn refused_on_the_plain_http_listener(path: &str, expect: Expect) {
    let env = Env::new().config(OUTSIDE_HTTP_AND_HTTPS).start().await;
    let r = env.raw_http(&raw_get(path, "")).await;
    assert_eq!(status_of(&r), expect.refused_status(), "{path} -> {r}");
    assert_eq!(env.upstream.count(), 0, "{path} reached the upstream");
}

/// From the default allow list (loopback), an admin path is forwarded as
/// its canonical form; an ambiguous one is still 400.
async fn from_an_allowed_address(path: &str, expect: Expect) {
    let env = Env::new().start().await;
    let r = env.raw_https(&raw_get(path, "")).await;
    match expect {
        Expect::Admin(canonical) => {
            assert_eq!(status_of(&r), 200, "{path} -> {r}");
            assert_eq!(env.upstream.last().path, canonical, "{path}");
            assert_eq!(env.upstream.count(), 1);
        }
        Expect::BadPath => {
            assert_eq!(status_of(&r), 400, "{path} -> {r}");
            assert_eq!(env.upstream.count(), 0);
        }
    }
}

/// One module per spelling, with one test per way of sending it.
macro_rules! admin_spellings {
    ($($name:ident: $path:literal => $expect:expr;)*) => {$(
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn is_refused_over_http1_tls() {
                refused_over_http1_tls($path, $expect).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn is_refused_on_the_plain_http_listener() {
                refused_on_the_plain_http_listener($path, $expect).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn from_an_allowed_address_reaches_the_upstream_canonically_or_is_400() {
                from_an_allowed_address($path, $expect).await;
            }
        }
    )*};
}

/// The same, plus one test per spelling over HTTP/2: the `http` crate's
/// `Uri` puts every spelling here into `:path` as written.
macro_rules! admin_spellings_also_over_h2 {
    ($($name:ident: $path:literal => $expect:expr;)*) => {
        admin_spellings! { $($name: $path => $expect;)* }
        mod over_http2 {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    refused_over_http2($path, $expect).await;
                }
            )*
        }
    };
}

admin_spellings_also_over_h2! {
    plain_admin_path: "/arcgis/admin" => Expect::Admin("/arcgis/admin");
    admin_path_with_trailing_slash: "/arcgis/admin/" => Expect::Admin("/arcgis/admin/");
    admin_path_in_other_case: "/ARCGIS/Admin" => Expect::Admin("/ARCGIS/Admin");
    double_slash_inside: "/arcgis//admin" => Expect::Admin("/arcgis/admin");
    dot_segment: "/arcgis/./admin" => Expect::Admin("/arcgis/admin");
    dot_dot_segment: "/arcgis/x/../admin" => Expect::Admin("/arcgis/admin");
    dot_dot_with_semicolon: "/arcgis/x/..;/admin" => Expect::Admin("/arcgis/admin");
    semicolon_params_in_a_middle_segment: "/arcgis;a=b/admin" => Expect::Admin("/arcgis/admin");
    semicolon_session_id_on_the_last_segment: "/arcgis/admin;jsessionid=1" => Expect::Admin("/arcgis/admin");
    percent_encoded_letter: "/arcgis/%61dmin" => Expect::Admin("/arcgis/admin");
    percent_encoded_dot_dot: "/arcgis/%2e%2e/arcgis/admin" => Expect::Admin("/arcgis/admin");
    manager_path: "/arcgis/manager/index.html" => Expect::Admin("/arcgis/manager/index.html");
    encoded_trailing_slash: "/arcgis/admin%2f" => Expect::BadPath;
    dot_dot_with_encoded_slash: "/arcgis/manager/..%2fadmin" => Expect::BadPath;
    double_encoded_letter: "/arcgis/%2561dmin" => Expect::BadPath;
    encoded_backslash: "/arcgis/..%5cadmin" => Expect::BadPath;
    leading_double_slash: "//arcgis/admin" => Expect::Admin("/arcgis/admin");
    backslash_separator: "/arcgis\\admin" => Expect::BadPath;
}

// ---------------------------------------------------------------- absolute form

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_admin_request_is_refused_over_https() {
    let env = Env::new().config(OUTSIDE).start().await;
    let r = env
        .raw_https(&raw_get("https://localhost/arcgis/admin", ""))
        .await;
    assert_eq!(status_of(&r), 403, "{r}");
    assert_eq!(env.upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_admin_request_is_refused_on_the_plain_http_listener() {
    let env = Env::new().config(OUTSIDE_HTTP_AND_HTTPS).start().await;
    let r = env
        .raw_http(&raw_get("http://localhost/arcgis/x/..;/admin", ""))
        .await;
    assert_eq!(status_of(&r), 403, "{r}");
    assert_eq!(env.upstream.count(), 0);
}

// ---------------------------------------------------------------- not admin

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longer_name_sharing_the_admin_prefix_is_not_admin() {
    let env = Env::new().config(OUTSIDE).start().await;
    let r = env.raw_https(&raw_get("/arcgis/adminx", "")).await;
    assert_eq!(status_of(&r), 200, "{r}");
    assert_eq!(env.upstream.paths(), ["/arcgis/adminx"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_services_are_not_admin() {
    let env = Env::new().config(OUTSIDE).start().await;
    let r = env
        .request(Http::V2, get("/arcgis/rest/services?f=json", &[]))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(env.upstream.paths(), ["/arcgis/rest/services"]);
}

// ---------------------------------------------------------------- direct access

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_access_false_refuses_admin_even_from_loopback() {
    let env = Env::new()
        .config("[admin]\ndirect_access = false\n")
        .start()
        .await;
    let r = env.get("/arcgis/admin/services").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(env.upstream.count(), 0);
    // Everything else still passes.
    assert_eq!(env.get("/arcgis/rest").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_allow_list_admits_nobody() {
    let env = Env::new()
        .config("[admin]\nallowed_ips = []\n")
        .start()
        .await;
    let r = env.get("/arcgis/admin").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(env.upstream.count(), 0);
}

// ---------------------------------------------------------------- IPv6

/// A gateway whose HTTPS listener is on `[::1]`, or None when this host
/// has no IPv6 loopback.
async fn ipv6_gateway(site: &Site, up: &TestUpstream, allowed: &str) -> Option<TestGateway> {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipping: no IPv6 loopback on this host");
        return None;
    }
    let overlay =
        format!("[server]\nhttps_listen = \"[::1]:0\"\n[admin]\nallowed_ips = [\"{allowed}\"]\n");
    Some(site.gateway(up, &overlay).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_client_inside_an_ipv6_allow_list_is_admitted() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let Some(tg) = ipv6_gateway(&site, &up, "::1/128").await else {
        return;
    };
    assert!(tg.https().is_ipv6());
    let r = https_get(&site, &tg, "/arcgis/admin", false).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(up.last().path, "/arcgis/admin");
    assert_eq!(up.last().headers["x-forwarded-for"], "::1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_client_outside_an_ipv4_allow_list_is_refused() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let Some(tg) = ipv6_gateway(&site, &up, "127.0.0.1/32").await else {
        return;
    };
    let r = https_get(&site, &tg, "/arcgis/admin", false).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(up.count(), 0);
}

// ---------------------------------------------------------------- X-Forwarded-For

async fn admin_with_forwarded_for(overlay: &str, xff_lines: &[&str]) -> (u16, TestUpstream) {
    let env = Env::new().config(overlay).start().await;
    let headers: String = xff_lines
        .iter()
        .map(|v| format!("X-Forwarded-For: {v}\r\n"))
        .collect();
    let r = env.raw_https(&raw_get("/arcgis/admin", &headers)).await;
    // Whatever the verdict, the gateway keeps serving.
    assert_eq!(env.get("/arcgis/rest").await.status, StatusCode::OK);
    (status_of(&r), env.upstream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_forwarded_for_from_an_untrusted_peer_never_gets_admin() {
    let (status, up) = admin_with_forwarded_for(OUTSIDE, &["10.9.9.9"]).await;
    assert_eq!(status, 403);
    assert_eq!(up.paths(), ["/arcgis/rest"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_from_a_trusted_proxy_is_believed() {
    let (status, up) = admin_with_forwarded_for(TRUSTED_LOOPBACK_PROXY, &["10.9.9.9"]).await;
    assert_eq!(status, 200);
    assert_eq!(up.paths(), ["/arcgis/admin", "/arcgis/rest"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_forwarded_for_lines_are_one_list_whose_rightmost_untrusted_entry_wins() {
    // The client's own line says 10.9.9.9; the proxy appended the real one.
    let (status, up) =
        admin_with_forwarded_for(TRUSTED_LOOPBACK_PROXY, &["10.9.9.9", "203.0.113.5"]).await;
    assert_eq!(status, 403);
    assert_eq!(up.paths(), ["/arcgis/rest"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_forwarded_for_lines_admit_an_allowed_rightmost_client() {
    let (status, up) = admin_with_forwarded_for(
        TRUSTED_LOOPBACK_PROXY,
        &["203.0.113.5", "10.9.9.9, 127.0.0.1"],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(up.paths(), ["/arcgis/admin", "/arcgis/rest"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_forwarded_for_from_a_trusted_proxy_fails_closed() {
    let (status, up) = admin_with_forwarded_for(TRUSTED_LOOPBACK_PROXY, &["garbage"]).await;
    assert_eq!(status, 403);
    assert_eq!(up.paths(), ["/arcgis/rest"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_entry_right_of_an_allowed_address_fails_closed() {
    let (status, _up) =
        admin_with_forwarded_for(TRUSTED_LOOPBACK_PROXY, &["10.9.9.9, garbage"]).await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_forwarded_for_over_http2_never_gets_admin() {
    let env = Env::new().config(OUTSIDE).start().await;
    let r = env
        .request(
            Http::V2,
            get("/arcgis/admin", &[("x-forwarded-for", "10.9.9.9")]),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(env.upstream.count(), 0);
}

// ---------------------------------------------------------------- metrics

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_is_counted_with_route_admin_denied() {
    let env = Env::new().config(OUTSIDE).start().await;
    let r = env.get("/arcgis/admin").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    eventually(Duration::from_secs(5), || async {
        env.metrics().await.lines().any(|l| {
            l.starts_with(
                "gisgate_requests_total{listener=\"https\",route=\"admin_denied\",status=\"403\"}",
            )
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_body_does_not_echo_the_request() {
    let env = Env::new().config(OUTSIDE).start().await;
    let r = env.raw_https(&raw_get("/arcgis/admin/<script>", "")).await;
    assert!(matches!(status_of(&r), 400 | 403), "{r}");
    assert!(!r.contains("<script>"), "{r}");
}
