//! `tokens.refuse_get_credentials` (issue 25 part 3): a sign-in by GET
//! with the password in the URL is refused with 405 and a body saying to
//! use POST; it never reaches the upstream, nor the access log.

mod common;
mod counters;

use std::io::{BufRead, BufReader};
use std::process::Command;

use common::*;
use counters::{counted, counter};

fn raw_get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
}

#[tokio::test]
async fn a_get_sign_in_with_a_password_is_405_and_never_reaches_the_upstream() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = site.gateway(&up, "").await;
    let series = "gisgate_get_credentials_refused_total";
    let before = counter(&tg, series).await;
    for target in [
        "/arcgis/tokens/generateToken?username=u&password=p&f=json",
        "/arcgis/tokens/?request=getToken&username=u&password=p",
        "/arcgis/admin/generateToken?username=u&password=p",
        "/arcgis/admin/login?username=u&password=p",
        "/arcgis/sharing/rest/generateToken?username=u&password=p",
        "/arcgis/login?username=u&pass%77ord=p",
        "/ArcGIS/Tokens/GenerateToken?username=u&PASSWORD=p",
    ] {
        let r = raw_https(&site, tg.https(), &raw_get(target)).await;
        assert_eq!(status_of(&r), 405, "{target} -> {r}");
        assert!(r.contains("sign in with POST"), "{r}");
        assert_eq!(header_of(&r, "allow"), Some("POST"), "{r}");
    }
    assert_eq!(up.count(), 0, "a password in a URL reached the upstream");
    counted(&tg, series, before + 7).await;
}

#[tokio::test]
async fn a_post_sign_in_and_a_get_without_password_pass() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = site.gateway(&up, "").await;
    let r = https_get(&site, &tg, "/arcgis/tokens/generateToken?f=json", false).await;
    assert_eq!(r.status, 200);
    let post = http::Request::builder()
        .method("POST")
        .uri("https://localhost/arcgis/tokens/generateToken")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"username=u&password=p",
        )))
        .unwrap();
    assert_eq!(
        https_request(&site, tg.https(), true, post).await.status,
        200
    );
    // Elsewhere, a password parameter is not the gateway's business.
    let r = https_get(&site, &tg, "/arcgis/rest/services?password=x", false).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn switched_off_a_get_sign_in_passes() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = site
        .gateway(&up, "[tokens]\nrefuse_get_credentials = false\n")
        .await;
    let r = https_get(&site, &tg, "/arcgis/login?username=u&password=p", false).await;
    assert_eq!(r.status, 200);
}

/// The access log redacts every query value anyway (README, Access log);
/// for this refusal the query is not kept at all, and the line is still
/// written with its status, so the attempt is visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refused_password_is_not_in_the_access_log() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let (https, observe) = (free_port(), free_port());
    let text = site.config(
        up.addr,
        &format!(
            "[server]\nhttps_listen = \"127.0.0.1:{https}\"\nhttp_listen = \"\"\n[observability]\nlisten = \"127.0.0.1:{observe}\"\n[log]\nformat = \"json\"\nlevel = \"info\"\n"
        ),
    );
    let path = site.write_config(&text);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{https}").parse().unwrap();
    let mut child = gateway_process(&path, addr).await;
    let r = https_get_at(
        &site,
        addr,
        "/arcgis/tokens/generateToken?username=SECRETUSER&password=SECRETPASSWORD",
    )
    .await;
    assert_eq!(r, 405);
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let stderr = child.stderr.take().unwrap();
    tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let lines: Vec<String> = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .collect();
    let all = lines.join("\n");
    assert!(
        !all.contains("SECRET"),
        "a credential reached the log:\n{all}"
    );
    let access: serde_json::Value = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["target"] == "gisgate::access")
        .unwrap_or_else(|| panic!("no access line in:\n{all}"));
    assert_eq!(access["status"], 405);
    assert_eq!(access["path"], "/arcgis/tokens/generateToken");
    assert_eq!(access["query"], "", "the query was kept: {access}");
    assert_eq!(up.count(), 0);
}

async fn https_get_at(site: &Site, addr: std::net::SocketAddr, path: &str) -> u16 {
    https_request(site, addr, false, get(path, &[]))
        .await
        .status
        .as_u16()
}
