//! `[[access]]` rules (issue 25 part 4): judged after the admin gate on the
//! canonical path, first match wins, 403 as for admin, counted by rule.

mod common;
mod counters;

use common::*;
use counters::{counted, counter};

/// The test client is 127.0.0.1: outside 10.0.0.0/8, inside 127.0.0.0/8.
const RULES: &str = r#"
[[access]]
name = "html-directory"
paths = ["/arcgis/rest/services"]
f = ["html"]
allow = ["10.0.0.0/8"]

[[access]]
paths = ["/arcgis/help"]
allow = ["127.0.0.0/8"]

[[access]]
paths = ["/arcgis"]
methods = ["DELETE"]
deny = ["0.0.0.0/0", "::/0"]

[[access]]
name = "rest-admin"
paths = ["/arcgis/rest/admin"]
deny = ["0.0.0.0/0", "::/0"]
"#;

fn raw_get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
}

#[tokio::test]
async fn the_html_services_directory_is_refused_from_outside_and_json_passes() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = site.gateway(&up, RULES).await;
    let series = "gisgate_access_denied_total{rule=\"html-directory\"}";
    let before = counter(&tg, series).await;
    for target in [
        "/arcgis/rest/services",
        "/arcgis/rest/services/Map/MapServer?f=html",
        "/arcgis/REST/services/Map/MapServer?f=HT%4dL",
        "/arcgis/rest/./services//Map?f=json&f=html",
        "/arcgis/rest;x=1/services",
    ] {
        let r = raw_https(&site, tg.https(), &raw_get(target)).await;
        assert_eq!(status_of(&r), 403, "{target} -> {r}");
        assert!(r.contains("not allowed from this address"), "{r}");
    }
    assert_eq!(up.count(), 0, "a refused request reached the upstream");
    let r = https_get(
        &site,
        &tg,
        "/arcgis/rest/services/Map/MapServer?f=json",
        false,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(up.count(), 1);
    counted(&tg, series, before + 5).await;
}

#[tokio::test]
async fn a_client_inside_the_allow_list_passes_and_unnamed_rules_count_by_index() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = site.gateway(&up, RULES).await;
    let series = "gisgate_access_denied_total{rule=\"2\"}";
    let before = counter(&tg, series).await;
    let r = https_get(&site, &tg, "/arcgis/help/en/index.html", true).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().path, "/arcgis/help/en/index.html");
    let r = https_request(
        &site,
        tg.https(),
        true,
        http::Request::builder()
            .method("DELETE")
            .uri("https://localhost/arcgis/rest/info")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 403);
    counted(&tg, series, before + 1).await;
    let metrics = tg.metrics().await;
    assert!(
        metrics.contains("route=\"access_denied\",status=\"403\""),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_first_matching_rule_decides_and_later_ones_are_not_read() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    // The first rule allows loopback to all of /arcgis; the second would
    // close /arcgis/rest/admin to everyone but is never reached.
    let tg = site
        .gateway(
            &up,
            "[[access]]\npaths = [\"/arcgis\"]\nallow = [\"127.0.0.1\"]\n[[access]]\npaths = [\"/arcgis/rest/admin\"]\ndeny = [\"0.0.0.0/0\"]\n",
        )
        .await;
    let r = https_get(&site, &tg, "/arcgis/rest/admin", false).await;
    assert_eq!(r.status, 200);
    let r = https_get(&site, &tg, "/other", false).await;
    assert_eq!(r.status, 200, "no rule matches: passes");
}

#[tokio::test]
async fn the_rest_admin_api_closed_for_everyone_stays_closed_after_the_admin_gate_allows() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    // admin.paths covers /arcgis/rest/admin and loopback is allowed there:
    // the access rule still refuses it.
    let tg = site
        .gateway(
            &up,
            &format!("[admin]\npaths = [\"/arcgis/rest/admin\"]\n{RULES}"),
        )
        .await;
    let r = raw_https(&site, tg.https(), &raw_get("/arcgis/rest/%61dmin/x")).await;
    assert_eq!(status_of(&r), 403, "{r}");
    assert_eq!(up.count(), 0);
    counted(&tg, "gisgate_access_denied_total{rule=\"rest-admin\"}", 1).await;
}

#[tokio::test]
async fn security_config_shows_the_rules_beside_the_arcgis_fields() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = site.gateway(&up, RULES).await;
    let (_, _, body) =
        plain_request(tg.observe.unwrap(), "GET", "/security/config?f=json", &[]).await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        v["allowDirectAccess"].is_boolean(),
        "ArcGIS fields kept: {v}"
    );
    let rules = &v["gisgate"]["accessRules"];
    assert_eq!(rules[0]["rule"], "html-directory");
    assert_eq!(rules[0]["f"][0], "html");
    assert_eq!(rules[0]["allow"][0], "10.0.0.0/8");
    assert_eq!(rules[1]["rule"], "1");
    assert_eq!(rules[2]["scope"]["methods"][0], "DELETE");
    assert_eq!(rules[3]["deny"][1], "::/0");
}
