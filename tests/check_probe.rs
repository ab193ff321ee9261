//! `gisgate check --probe`: the upstream is reached as the gateway reaches
//! it, and every way that fails is exit 1 with the reason on stderr (SPEC §8).

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::*;

/// `gisgate check --probe --config PATH [extra...]`, off the runtime that
/// serves the test upstream.
async fn check_probe(config: PathBuf, extra: &[&str]) -> Output {
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_gisgate"))
            .args(["check", "--probe", "--config"])
            .arg(&config)
            .args(&extra)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn streams(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Exit 1, and stderr gives `reason` as why the probe failed.
fn assert_probe_fails_with(out: &Output, reason: &str) {
    let (stdout, stderr) = streams(out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("upstream probe failed:") && stderr.contains(reason),
        "expected {reason:?} on stderr:\n{stderr}\nstdout:\n{stdout}"
    );
    assert!(!stdout.contains("upstream probe: ok"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_of_a_good_upstream_reports_its_certificate_and_the_answer() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let path = site.write_config(&site.config(up.addr, ""));
    let out = check_probe(path, &[]).await;
    let (stdout, stderr) = streams(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let fingerprint =
        gisgate::tls::certs::colon_hex(&gisgate::tls::certs::sha256_fingerprint(&up.cert_der));
    assert!(stdout.contains(&fingerprint), "{stdout}");
    assert!(stdout.contains("CN=localhost"), "{stdout}");
    assert!(stdout.contains("[localhost, 127.0.0.1]"), "{stdout}");
    assert!(stdout.contains("TLSv1.3, TLS_AES_"), "{stdout}");
    assert!(stdout.contains("ALPN http/1.1"), "{stdout}");
    assert!(stdout.contains("days left"), "{stdout}");
    assert!(
        stdout.contains("GET /arcgis/rest/info?f=json -> 200 OK"),
        "{stdout}"
    );
    assert!(stdout.contains("upstream probe: ok"), "{stdout}");
    assert_eq!(up.last().path, "/arcgis/rest/info");
    assert_eq!(up.last().query.as_deref(), Some("f=json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_with_a_matching_pin_says_it_matched() {
    let site = Site::new();
    let up = site.upstream(Http::V2).await;
    let pin =
        gisgate::tls::certs::colon_hex(&gisgate::tls::certs::sha256_fingerprint(&up.cert_der));
    let text = site
        .config(
            up.addr,
            &format!("[upstream]\npin_sha256 = [\"{pin}\"]\nprefer_http2 = true\n"),
        )
        .replace("ca = \"ca.crt\"\n", "");
    let out = check_probe(site.write_config(&text), &[]).await;
    let (stdout, stderr) = streams(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("matched one of 1 upstream.pin_sha256"),
        "{stdout}"
    );
    assert!(stdout.contains("ALPN h2"), "{stdout}");
    assert!(stdout.contains("-> 200 OK"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_with_a_wrong_pin_fails_naming_the_fingerprint_it_got() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let text = site
        .config(
            up.addr,
            &format!("[upstream]\npin_sha256 = [\"{}\"]\n", "AB".repeat(32)),
        )
        .replace("ca = \"ca.crt\"\n", "");
    let out = check_probe(site.write_config(&text), &[]).await;
    let got =
        gisgate::tls::certs::colon_hex(&gisgate::tls::certs::sha256_fingerprint(&up.cert_der));
    assert_probe_fails_with(&out, "matches no upstream.pin_sha256");
    assert_probe_fails_with(&out, &got);
    // The config itself is valid: that part of check still says so.
    assert!(streams(&out).0.contains("gateway.toml: valid"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_against_a_certificate_from_an_unknown_ca_fails() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let mut other = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    other
        .distinguished_name
        .push(rcgen::DnType::CommonName, "some other CA");
    other.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other = other
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap();
    std::fs::write(site.path("other-ca.crt"), other.pem()).unwrap();
    let text = site
        .config(up.addr, "")
        .replace("ca = \"ca.crt\"", "ca = \"other-ca.crt\"");
    let out = check_probe(site.write_config(&text), &[]).await;
    assert_probe_fails_with(&out, "not signed by a CA in upstream.ca");
    assert_probe_fails_with(&out, "other-ca.crt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_with_a_server_name_the_certificate_does_not_cover_fails() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let text = site.config(up.addr, "[upstream]\nserver_name = \"gis.example.com\"\n");
    let out = check_probe(site.write_config(&text), &[]).await;
    assert_probe_fails_with(
        &out,
        "not valid for upstream.server_name \"gis.example.com\"",
    );
    assert_probe_fails_with(&out, "localhost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_of_a_port_where_nothing_listens_fails_with_connection_refused() {
    let site = Site::new();
    let path = site.write_config(&site.config(dead_addr(), ""));
    let out = check_probe(path, &[]).await;
    assert_probe_fails_with(&out, "connection refused by localhost:");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_of_a_path_that_answers_non_2xx_fails_with_the_status() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let path = site.write_config(&site.config(up.addr, ""));
    // The test upstream answers /redirect with 302.
    let out = check_probe(path, &["--probe-path", "/redirect"]).await;
    assert_probe_fails_with(&out, "GET /redirect answered 302 Found");
    // What it saw before the answer is still printed.
    assert!(streams(&out).0.contains("SHA-256"));
}

#[test]
fn probe_path_without_probe_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_gisgate"))
        .args(["check", "--config", "gateway.toml", "--probe-path", "/x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--probe"));
}
