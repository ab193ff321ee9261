//! Per-client limits (issue 25 part 2): `[[rate_limit]]` rules answer 429
//! with Retry-After per client address, a reload keeps the buckets of
//! unchanged rules, and `limits.max_connections_per_ip` closes a client's
//! connection over the limit at accept.

mod common;
mod counters;

use std::time::Duration;

use common::*;
use counters::counted;
use tokio::io::AsyncReadExt;

const SIGN_IN: &str = r#"
[[rate_limit]]
name = "sign-in"
paths = ["/arcgis/tokens/generateToken", "/arcgis/login"]
methods = ["POST"]
rate = "3/min"
burst = 3
"#;

fn post(path: &str) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    http::Request::builder()
        .method("POST")
        .uri(format!("https://localhost{path}"))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"username=a&password=b",
        )))
        .unwrap()
}

#[tokio::test]
async fn a_client_past_its_burst_gets_429_with_retry_after() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = site.gateway(&up, SIGN_IN).await;
    let mut sender = keep_alive_connection(&site, tg.https()).await;
    for _ in 0..3 {
        let r = request_on(&mut sender, post("/arcgis/tokens/generateToken"))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    // Canonicalised and in another case, the same endpoint.
    let r = https_request(
        &site,
        tg.https(),
        true,
        post("/ArcGIS//tokens/generateToken"),
    )
    .await;
    assert_eq!(r.status, 429);
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert!(String::from_utf8_lossy(&r.body).contains("Too Many Requests"));
    assert_eq!(up.count(), 3, "the refused request reached the upstream");
    // Other paths and other methods are not limited by the rule.
    assert_eq!(
        https_get(&site, &tg, "/arcgis/tokens/generateToken", false)
            .await
            .status,
        200
    );
    assert_eq!(
        https_request(&site, tg.https(), false, post("/arcgis/rest/services"))
            .await
            .status,
        200
    );
    counted(&tg, "gisgate_rate_limited_total{rule=\"sign-in\"}", 1).await;
    let metrics = tg.metrics().await;
    assert!(
        metrics.contains("route=\"rate_limited\",status=\"429\""),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_reload_keeps_the_buckets_of_an_unchanged_rule_and_resets_a_changed_one() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = site.gateway(&up, SIGN_IN).await;
    for _ in 0..3 {
        let r = https_request(&site, tg.https(), false, post("/arcgis/login")).await;
        assert_eq!(r.status, 200);
    }
    // Renamed, and another setting changed elsewhere: the buckets stay.
    let renamed = SIGN_IN.replace("\"sign-in\"", "\"login\"");
    let text = site.config(up.addr, &format!("{renamed}\n[cors]\nmax_age = \"5m\"\n"));
    std::fs::write(&tg.config_path, text).unwrap();
    tg.gw.reload().await.expect("reload");
    let r = https_request(&site, tg.https(), false, post("/arcgis/login")).await;
    assert_eq!(r.status, 429, "the bucket was lost on reload");
    counted(&tg, "gisgate_rate_limited_total{rule=\"login\"}", 1).await;
    // A changed rate: a new limiter.
    let text = site.config(up.addr, &renamed.replace("3/min", "4/min"));
    std::fs::write(&tg.config_path, text).unwrap();
    tg.gw.reload().await.expect("reload");
    let r = https_request(&site, tg.https(), false, post("/arcgis/login")).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn a_client_over_max_connections_per_ip_is_closed_at_accept() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = site
        .gateway(&up, "[limits]\nmax_connections_per_ip = 2\n")
        .await;
    let mut first = keep_alive_connection(&site, tg.https()).await;
    let _second = keep_alive_connection(&site, tg.https()).await;
    let r = request_on(&mut first, get("/x", &[])).await.unwrap();
    assert_eq!(r.status, 200);
    // The third connection from 127.0.0.1 is closed before its handshake.
    let mut third = tokio::net::TcpStream::connect(tg.https()).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), third.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "not closed: {read:?}"
    );
    counted(
        &tg,
        "gisgate_connections_per_ip_refused_total{listener=\"https\"}",
        1,
    )
    .await;
    // Once one closes, the address may connect again.
    drop(first);
    eventually(Duration::from_secs(10), || async {
        tls_connect(tg.https(), client_config(site.ca.roots(), &[b"http/1.1"]))
            .await
            .is_ok()
    })
    .await;
}

#[tokio::test]
async fn the_shipped_sample_limits_the_sign_in_endpoints() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.toml")).unwrap();
    let table: toml::Table = text.parse().unwrap();
    let rules = table["rate_limit"]
        .as_array()
        .expect("[[rate_limit]] in gateway.toml");
    let paths: Vec<&str> = rules[0]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for endpoint in [
        "/arcgis/tokens/generateToken",
        "/arcgis/admin/generateToken",
        "/arcgis/admin/login",
        "/arcgis/sharing/rest/generateToken",
        "/arcgis/login",
    ] {
        assert!(
            paths.contains(&endpoint),
            "{endpoint} not limited: {paths:?}"
        );
    }
}
