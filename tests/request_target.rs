//! Request targets the GIS server itself would refuse are refused here too,
//! never repaired and forwarded (issue 21.B, a parser differential): a raw
//! `\` in the path, and in the query raw characters RFC 3986 does not
//! allow, broken percent-encodings and encodings of invalid UTF-8. Ordinary
//! ArcGIS queries reach the upstream byte for byte.

mod common;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;

fn raw_get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
}

async fn is_400_over_http1(target: &str) {
    let env = Env::new().start().await;
    let raw = env.raw_https(&raw_get(target)).await;
    assert_eq!(status_of(&raw), 400, "{target} -> {raw}");
    assert_eq!(env.upstream.count(), 0, "{target} reached the upstream");
}

async fn is_400_over_http2(target: &str) {
    let env = Env::new().start().await;
    let req = Request::builder()
        .uri(format!("https://localhost{target}"))
        .body(Full::new(Bytes::new()))
        .expect("an HTTP/2 client can send this target");
    let r = env.request(Http::V2, req).await;
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(r.status.as_u16(), 400, "{target}");
    assert_eq!(env.upstream.count(), 0, "{target} reached the upstream");
}

/// One module per target, with one test per protocol.
macro_rules! refused_targets {
    ($($name:ident: $target:literal;)*) => {$(
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn is_refused_over_http1_tls() {
                is_400_over_http1($target).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn is_refused_over_http2() {
                is_400_over_http2($target).await;
            }
        }
    )*};
}

refused_targets! {
    backslash_in_an_admin_path: "/arcgis\\admin";
    backslash_in_an_ordinary_path: "/arcgis/rest\\services";
    backslash_inside_path_params: "/arcgis/rest;x=\\/services";
    percent_without_digits_in_the_query: "/arcgis/rest/services?f=json&where=a%zz";
    percent_with_one_digit_in_the_query: "/arcgis/rest/services?f=%4";
    percent_at_the_end_of_the_query: "/arcgis/rest/services?f=json%";
    overlong_utf8_slash_in_the_query: "/arcgis/rest/services?f=%C0%AF";
    byte_ff_in_the_query: "/arcgis/rest/services?f=%FF";
    truncated_utf8_at_the_end_of_the_query: "/arcgis/rest/services?f=%E2%82";
    truncated_utf8_before_a_raw_byte: "/arcgis/rest/services?f=%E2%82x";
    lone_continuation_byte_in_the_query: "/arcgis/rest/services?f=%80";
    encoded_surrogate_in_the_query: "/arcgis/rest/services?f=%ED%A0%80";
    code_point_above_unicode_in_the_query: "/arcgis/rest/services?f=%F4%90%80%80";
    raw_non_ascii_in_the_query: "/arcgis/rest/services?text=caf\u{e9}";
    raw_backslash_in_the_query: "/arcgis/rest/services?f=a\\b";
    raw_braces_in_the_query: "/arcgis/rest/services?geometry={x:1}";
    raw_brackets_in_the_query: "/arcgis/rest/services?layers=[0]";
    raw_pipe_in_the_query: "/arcgis/rest/services?a=1|2";
    raw_caret_in_the_query: "/arcgis/rest/services?a=1^2";
    raw_backtick_in_the_query: "/arcgis/rest/services?a=`";
    // Found by the Tomcat differential (tests/tomcat_differential.rs): the
    // query refused these, the path forwarded them and Tomcat answered 400.
    overlong_utf8_dots_in_the_path: "/arcgis/rest/%C0%AE%C0%AE/admin";
    overlong_utf8_slash_in_the_path: "/arcgis/rest%C0%AFadmin";
    latin1_byte_in_the_path: "/arcgis/rest/services/caf%E9";
    truncated_utf8_in_the_path: "/arcgis/rest/services/%E2%82/x";
}

/// A raw `"` never parses as a request target (the `http` crate refuses
/// it in a query before gisgate sees the request): raw JSON in a query has
/// never passed, so refusing raw `{` and `}` breaks no client that worked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_json_with_quotes_in_the_query_is_400_over_http1() {
    is_400_over_http1("/arcgis/rest/services/X/MapServer/query?geometry={\"x\":1,\"y\":2}&f=json")
        .await;
}

async fn forwarded_unchanged(target: &str, h2: bool) {
    let env = Env::new().start().await;
    let r = https_get(&env.site, &env.gateway, target, h2).await;
    assert_eq!(r.status.as_u16(), 200, "{target}");
    let seen = env.upstream.last();
    let (path, query) = target.split_once('?').unwrap();
    assert_eq!(seen.path, path);
    assert_eq!(seen.query.as_deref(), Some(query));
}

const EXPORT: &str = "/arcgis/rest/services/X/MapServer/export?bbox=1,2,3,4&f=json&token=abc%2Bdef";
/// What browsers and the ArcGIS APIs send: JSON, SQL and non-ASCII text
/// percent-encoded, in either case of hex.
const ENCODED_QUERY: &str = "/arcgis/rest/services/X/MapServer/0/query?geometry=%7B%22x%22%3A1%2C%22y%22%3A2%7D&where=NAME+LIKE+%27A%25%27&text=caf%c3%a9+%E2%82%AC&outFields=*&returnGeometry=true&f=pjson";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arcgis_export_query_reaches_the_upstream_unchanged_over_http1() {
    forwarded_unchanged(EXPORT, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arcgis_export_query_reaches_the_upstream_unchanged_over_http2() {
    forwarded_unchanged(EXPORT, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_percent_encoded_json_and_sql_query_reaches_the_upstream_unchanged() {
    forwarded_unchanged(ENCODED_QUERY, false).await;
    forwarded_unchanged(ENCODED_QUERY, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_with_utf8_escapes_reaches_the_upstream_with_upper_case_hex() {
    for h2 in [false, true] {
        let env = Env::new().start().await;
        let r = https_get(
            &env.site,
            &env.gateway,
            "/arcgis/rest/services/Caf%c3%a9_%E2%82%AC/MapServer",
            h2,
        )
        .await;
        assert_eq!(r.status.as_u16(), 200);
        assert_eq!(
            env.upstream.last().path,
            "/arcgis/rest/services/Caf%C3%A9_%E2%82%AC/MapServer"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_delimiters_rfc_3986_allows_are_forwarded_unchanged() {
    forwarded_unchanged("/arcgis/rest/services?a=/b?c:d@e!$&'()*+,;=f-._~g", false).await;
}
