//! Config errors name the file, line, column and key (SPEC §1, §2), and the
//! binary reports them: `run` exits 1 with the reason on stderr, `check`
//! prints the effective policy and, with `--against`, what would change.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A valid config with known line numbers: lines 1-13; `with` puts the
/// observability listen on line 14, so its extra text starts on line 15.
const BASE: &str = r#"[server]
https_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"

[tls]
cert = "gateway.crt"
key = "gateway.key"

[upstream]
url = "https://localhost:6443"
ca = "ca.crt"

[observability]
"#;

fn with(extra: &str) -> String {
    format!("{BASE}listen = \"127.0.0.1:0\"\n{extra}")
}

fn write(site: &Site, name: &str, text: &str) -> PathBuf {
    let path = site.path(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The error text for a config that must not load.
fn load_error(site: &Site, text: &str) -> String {
    let path = write(site, "gateway.toml", text);
    match gisgate::config::load(&path) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// The error text for a config that loads but cannot be built (certificates
/// and keys are read by `Live::build`).
fn build_error(site: &Site, text: &str) -> String {
    let path = write(site, "gateway.toml", text);
    let settings = gisgate::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let sessions = gisgate::tls::server::TlsSessions::new().unwrap();
    match gisgate::live::Live::build(settings, &sessions, None) {
        Ok(_) => panic!("config was built:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// Asserts that `error` is located at `gateway.toml:LINE:COL` for the given
/// line and names `key`.
fn assert_located(error: &str, line: usize, key: &str) {
    let marker = format!("gateway.toml:{line}:");
    let at = error
        .find(&marker)
        .unwrap_or_else(|| panic!("no {marker} in: {error}"));
    let col = error[at + marker.len()..]
        .split(':')
        .next()
        .and_then(|c| c.parse::<usize>().ok());
    assert!(col.is_some_and(|c| c >= 1), "no column in: {error}");
    assert!(error.contains(key), "{key} not named in: {error}");
}

// ---------------------------------------------------------------- load errors

#[test]
fn base_config_is_valid() {
    let site = Site::new();
    let path = write(&site, "gateway.toml", &with(""));
    gisgate::config::load(&path).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn unknown_key_is_an_error_naming_it_and_its_line() {
    let site = Site::new();
    let e = load_error(&site, &with("[admin]\nallowed_ip = []\n"));
    assert_located(&e, 16, "allowed_ip");
    assert!(e.contains("[admin]"), "{e}");
}

#[test]
fn unknown_table_is_an_error_naming_it() {
    let site = Site::new();
    let e = load_error(&site, &with("[hst]\nenabled = true\n"));
    assert_located(&e, 15, "hst");
    assert!(!e.contains("in []"), "{e}");
}

#[test]
fn wrongly_typed_value_is_an_error_with_its_line() {
    let site = Site::new();
    let text = BASE.replace(
        "http_listen = \"127.0.0.1:0\"\n",
        "http_listen = \"127.0.0.1:0\"\nredirect_status = \"308\"\n",
    );
    let e = load_error(&site, &format!("{text}listen = \"127.0.0.1:0\"\n"));
    assert_located(&e, 4, "server.redirect_status");
}

#[test]
fn bad_cidr_is_an_error_naming_the_key_and_its_line() {
    let site = Site::new();
    let e = load_error(
        &site,
        &with("[admin]\nallowed_ips = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n"),
    );
    assert_located(&e, 16, "admin.allowed_ips");
    assert!(e.contains("10.0.0.0/33"), "{e}");
}

#[test]
fn plain_http_upstream_is_an_error_saying_gisgate_never_offloads_tls() {
    let site = Site::new();
    let e = load_error(
        &site,
        &format!(
            "{}listen = \"127.0.0.1:0\"\n",
            BASE.replace("https://localhost:6443", "http://localhost:6080")
        ),
    );
    assert_located(&e, 10, "upstream.url");
    assert!(e.contains("never offloads TLS"), "{e}");
}

#[test]
fn tls11_is_an_error_saying_it_is_insecure() {
    let site = Site::new();
    let text = BASE.replace(
        "key = \"gateway.key\"\n",
        "key = \"gateway.key\"\nprotocols = [\"TLSv1.1\", \"TLSv1.2\"]\n",
    );
    let e = load_error(&site, &format!("{text}listen = \"127.0.0.1:0\"\n"));
    assert_located(&e, 8, "tls.protocols");
    assert!(e.contains("insecure"), "{e}");
    assert!(e.contains("TLSv1.1"), "{e}");
}

#[test]
fn unknown_cipher_suite_name_is_an_error_naming_it() {
    let site = Site::new();
    let text = BASE.replace(
        "key = \"gateway.key\"\n",
        "key = \"gateway.key\"\ncipher_suites = \"TLS_AES_128_GCM_SHA256, ECDHE-RSA-AES128-GCM-SHA256\"\n",
    );
    let e = load_error(&site, &format!("{text}listen = \"127.0.0.1:0\"\n"));
    assert_located(&e, 8, "tls.cipher_suites");
    assert!(e.contains("ECDHE-RSA-AES128-GCM-SHA256"), "{e}");
}

#[test]
fn missing_certificate_file_is_an_error_naming_the_key_and_the_path() {
    let site = Site::new();
    let e = load_error(
        &site,
        &format!(
            "{}listen = \"127.0.0.1:0\"\n",
            BASE.replace("gateway.crt", "missing.crt")
        ),
    );
    assert_located(&e, 6, "tls.cert");
    assert!(e.contains("missing.crt"), "{e}");
}

#[test]
fn bad_duration_is_an_error_naming_the_key_and_its_line() {
    let site = Site::new();
    let e = load_error(&site, &with("[hsts]\nmax_age = \"forever\"\n"));
    assert_located(&e, 16, "hsts.max_age");
    assert!(e.contains("forever"), "{e}");
}

#[test]
fn reload_settle_defaults_to_a_second_may_be_zero_and_is_at_most_a_minute() {
    let site = Site::new();
    let settle = |text: &str| {
        let path = write(&site, "gateway.toml", text);
        gisgate::config::load(&path).unwrap().reload_settle
    };
    assert_eq!(settle(&with("")), Duration::from_secs(1));
    assert_eq!(settle(&with("[reload]\nsettle = \"0s\"\n")), Duration::ZERO);
    assert_eq!(
        settle(&with("[reload]\nsettle = \"1m\"\n")),
        Duration::from_secs(60)
    );
    let e = load_error(&site, &with("[reload]\nsettle = \"61s\"\n"));
    assert_located(&e, 16, "reload.settle");
}

#[test]
fn every_problem_in_a_file_is_reported_at_once() {
    let site = Site::new();
    let e = load_error(
        &site,
        &with("[admin]\nallowed_ips = [\"nope\"]\n[hsts]\nmax_age = \"soon\"\n"),
    );
    assert_located(&e, 16, "admin.allowed_ips");
    assert_located(&e, 18, "hsts.max_age");
}

// ---------------------------------------------------------------- build errors

#[test]
fn certificate_and_key_that_do_not_match_are_an_error_naming_the_key_file() {
    let site = Site::new();
    let other = site.ca.issue(&["localhost"]);
    site.ca.write("other", &other);
    let e = build_error(
        &site,
        &format!(
            "{}listen = \"127.0.0.1:0\"\n",
            BASE.replace("gateway.key", "other.key")
        ),
    );
    assert_located(&e, 7, "tls.key");
    assert!(e.contains("other.key"), "{e}");
}

#[test]
fn key_file_that_is_not_a_key_is_an_error_naming_it() {
    let site = Site::new();
    std::fs::write(site.path("garbage.key"), "not a key\n").unwrap();
    let e = build_error(
        &site,
        &format!(
            "{}listen = \"127.0.0.1:0\"\n",
            BASE.replace("gateway.key", "garbage.key")
        ),
    );
    assert_located(&e, 7, "tls.key");
}

// ---------------------------------------------------------------- the binary

fn gisgate(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gisgate"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("the gisgate binary runs")
}

/// Runs the binary, which must exit by itself within `within`; a child still
/// running then is killed and the test fails.
fn gisgate_exits(args: &[&str], dir: &Path, within: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gisgate"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the gisgate binary runs");
    let deadline = Instant::now() + within;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "gisgate {args:?} did not exit within {within:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn run_with_an_invalid_config_exits_1_with_the_reason_on_stderr() {
    let site = Site::new();
    write(&site, "bad.toml", &with("[admin]\nallowed_ip = []\n"));
    let out = gisgate_exits(
        &["run", "--config", "bad.toml"],
        site.dir.path(),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml:16:"), "{stderr}");
    assert!(stderr.contains("allowed_ip"), "{stderr}");
}

#[test]
fn config_flag_without_run_behaves_like_run() {
    let site = Site::new();
    write(
        &site,
        "bad.toml",
        &format!(
            "{}listen = \"127.0.0.1:0\"\n",
            BASE.replace("https://localhost:6443", "http://localhost:6080")
        ),
    );
    let out = gisgate_exits(
        &["--config", "bad.toml"],
        site.dir.path(),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("never offloads TLS"), "{stderr}");
}

#[test]
fn run_exits_1_when_a_port_cannot_be_bound() {
    let site = Site::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let text = with("").replacen(
        "https_listen = \"127.0.0.1:0\"",
        &format!("https_listen = \"{addr}\""),
        1,
    );
    write(&site, "busy.toml", &text);
    let out = gisgate_exits(
        &["run", "--config", "busy.toml"],
        site.dir.path(),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server.https_listen"), "{stderr}");
    assert!(stderr.contains(&addr.to_string()), "{stderr}");
    drop(taken);
}

#[test]
fn check_of_a_valid_config_exits_0_and_prints_the_effective_policy() {
    let site = Site::new();
    write(
        &site,
        "good.toml",
        &with(
            "[hsts]\nenabled = true\nmax_age = \"1d\"\n[admin]\nallowed_ips = [\"10.0.0.0/8\"]\n",
        ),
    );
    let out = gisgate(&["check", "--config", "good.toml"], site.dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("good.toml: valid"), "{stdout}");
    assert!(
        stdout.contains("HTTPS (plain HTTP is redirected with 308)"),
        "{stdout}"
    );
    assert!(stdout.contains("TLSv1.2, TLSv1.3"), "{stdout}");
    assert!(stdout.contains("TLS_AES_128_GCM_SHA256"), "{stdout}");
    assert!(stdout.contains("max-age=86400"), "{stdout}");
    assert!(stdout.contains("10.0.0.0/8"), "{stdout}");
    assert!(stdout.contains("https://localhost:6443"), "{stdout}");
    assert!(
        stdout.contains("HTTP/1.1 (HTTP/2 only if the upstream refuses http/1.1)"),
        "{stdout}"
    );
}

#[test]
fn check_of_an_invalid_config_exits_1_and_names_the_problem() {
    let site = Site::new();
    write(&site, "bad.toml", &with("[hsts]\nmax_age = \"forever\"\n"));
    let out = gisgate(&["check", "--config", "bad.toml"], site.dir.path());
    assert_eq!(out.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("bad.toml:16:"), "{all}");
    assert!(all.contains("hsts.max_age"), "{all}");
}

#[test]
fn check_against_an_old_config_prints_the_changes_in_policy_terms() {
    let site = Site::new();
    write(
        &site,
        "old.toml",
        &with("[hsts]\nmax_age = \"100s\"\n[admin]\nallowed_ips = [\"192.168.1.0/24\", \"127.0.0.1/32\"]\n"),
    );
    write(
        &site,
        "new.toml",
        &with("[hsts]\nmax_age = \"200s\"\n[admin]\nallowed_ips = [\"127.0.0.1/32\", \"10.0.0.0/8\"]\n")
            .replace("ca = \"ca.crt\"", "ca = \"ca.crt\"\nprefer_http2 = true"),
    );
    let out = gisgate(
        &["check", "--config", "new.toml", "--against", "old.toml"],
        site.dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    assert!(
        lines.contains(&"admin.allowed_ips: +10.0.0.0/8 -192.168.1.0/24"),
        "{stdout}"
    );
    assert!(lines.contains(&"hsts.max_age: 100s -> 200s"), "{stdout}");
    assert!(
        lines.contains(&"upstream.prefer_http2: false -> true"),
        "{stdout}"
    );
}

#[test]
fn check_against_an_identical_config_reports_no_change() {
    let site = Site::new();
    write(&site, "a.toml", &with(""));
    write(&site, "b.toml", &with(""));
    let out = gisgate(
        &["check", "--config", "b.toml", "--against", "a.toml"],
        site.dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("(none: the effective policy is the same)"),
        "{stdout}"
    );
}

#[test]
fn check_names_the_suites_it_skips_from_the_arcgis_default_list() {
    let site = Site::new();
    let text = BASE.replace(
        "key = \"gateway.key\"\n",
        "key = \"gateway.key\"\ncipher_suites = \"TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384, TLS_RSA_WITH_AES_128_CBC_SHA, TLS_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\"\n",
    );
    write(
        &site,
        "arcgis.toml",
        &format!("{text}listen = \"127.0.0.1:0\"\n"),
    );
    let out = gisgate(&["check", "--config", "arcgis.toml"], site.dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let skipped = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("suites skipped"))
        .unwrap_or_else(|| panic!("no skipped suites line:\n{stdout}"));
    assert!(
        skipped.contains("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384"),
        "{skipped}"
    );
    assert!(
        skipped.contains("TLS_RSA_WITH_AES_128_CBC_SHA"),
        "{skipped}"
    );
    let offered = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("suites offered"))
        .unwrap();
    assert!(!offered.contains("CBC"), "{offered}");
}

/// ArcGIS Server's default `cipherSuites` (Security Configuration, admin
/// API), as an operator pastes it.
const ARCGIS_DEFAULT_SUITES: &str = "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384, TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, TLS_RSA_WITH_AES_256_GCM_SHA384, TLS_RSA_WITH_AES_256_CBC_SHA256, TLS_RSA_WITH_AES_256_CBC_SHA, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256, TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, TLS_RSA_WITH_AES_128_GCM_SHA256, TLS_RSA_WITH_AES_128_CBC_SHA256, TLS_RSA_WITH_AES_128_CBC_SHA, TLS_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384, TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA";

/// The ArcGIS default list without its ECDHE_ECDSA entries: what a site
/// that trimmed the list for its RSA certificate has.
fn arcgis_rsa_only_suites() -> String {
    ARCGIS_DEFAULT_SUITES
        .split(", ")
        .filter(|s| !s.contains("ECDSA"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn with_suites(suites: &str, extra: &str) -> String {
    let text = BASE.replace(
        "key = \"gateway.key\"\n",
        &format!("key = \"gateway.key\"\ncipher_suites = \"{suites}\"\n"),
    );
    format!("{text}listen = \"127.0.0.1:0\"\n{extra}")
}

fn check_output(site: &Site, text: &str) -> (Option<i32>, String) {
    write(site, "gateway.toml", text);
    let out = gisgate(&["check", "--config", "gateway.toml"], site.dir.path());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), all)
}

#[test]
fn arcgis_default_suites_serve_an_ecdsa_certificate() {
    let site = Site::new();
    let (code, out) = check_output(&site, &with_suites(ARCGIS_DEFAULT_SUITES, ""));
    assert_eq!(code, Some(0), "{out}");
    let offered = out
        .lines()
        .find(|l| l.trim_start().starts_with("suites offered"))
        .unwrap();
    assert!(
        offered.ends_with(
            "TLS_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
        ),
        "{offered}"
    );
}

#[test]
fn suites_that_do_not_fit_an_ecdsa_certificate_are_an_error_naming_the_suites_that_would() {
    let site = Site::new();
    let (code, out) = check_output(&site, &with_suites(&arcgis_rsa_only_suites(), ""));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "tls.cipher_suites: no cipher suite for TLSv1.2 fits the ECDSA key of certificate default"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "add one of TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 to tls.cipher_suites, or remove \"TLSv1.2\" from tls.protocols"
        ),
        "{out}"
    );
}

#[test]
fn an_sni_certificate_whose_key_no_suite_fits_is_an_error_naming_it_and_the_suites_that_would() {
    let site = Site::new();
    let rsa = site.ca.issue_rsa(&["localhost"]);
    site.ca.write("gateway", &rsa);
    let ecdsa = site.ca.issue(&["maps.example.com"]);
    site.ca.write("maps", &ecdsa);
    let sni = "[[tls.sni]]\nserver_name = \"maps.example.com\"\ncert = \"maps.crt\"\nkey = \"maps.key\"\n";
    let (code, out) = check_output(&site, &with_suites(&arcgis_rsa_only_suites(), sni));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "no cipher suite for TLSv1.2 fits the ECDSA key of certificate maps.example.com"
        ),
        "{out}"
    );
    assert!(
        out.contains("add one of TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
        "{out}"
    );
}

#[test]
fn check_against_lists_only_suites_offered_with_the_certificates_in_use() {
    let site = Site::new();
    // The site's only certificate has an ECDSA key.
    write(
        &site,
        "old.toml",
        &with_suites(
            "TLS_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "",
        ),
    );
    write(
        &site,
        "new.toml",
        &with_suites(
            "TLS_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "",
        ),
    );
    let out = gisgate(
        &["check", "--config", "new.toml", "--against", "old.toml"],
        site.dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    assert!(
        lines.contains(&"tls.cipher_suites: +TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
        "{stdout}"
    );

    // Adding only an RSA suite changes nothing a client can negotiate.
    write(
        &site,
        "rsa.toml",
        &with_suites(
            "TLS_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "",
        ),
    );
    let out = gisgate(
        &["check", "--config", "rsa.toml", "--against", "old.toml"],
        site.dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("(none: the effective policy is the same)"),
        "{stdout}"
    );
}

// ------------------------------------------------- syntax and type errors

/// The error text as an operator sees it after `cd` into the site.
fn load_error_here(site: &Site, text: &str) -> String {
    load_error(site, text).replace(&format!("{}/", site.dir.path().display()), "")
}

#[test]
fn unclosed_list_is_reported_at_the_line_of_its_bracket() {
    let site = Site::new();
    let e = load_error_here(
        &site,
        &with("[admin]\nallowed_ips = [\"10.0.0.0/8\",\n\n[cors]\nallowed_origins = []\n"),
    );
    assert_eq!(
        e,
        "gateway.toml:16:15: admin.allowed_ips: this [ is never closed (a ] is missing)"
    );
}

#[test]
fn unclosed_inline_table_is_reported_at_the_line_of_its_brace() {
    let site = Site::new();
    let e = load_error_here(
        &site,
        &with("[hsts]\nenabled = { a = 1\n[cors]\nmax_age = \"1m\"\n"),
    );
    assert_eq!(
        e,
        "gateway.toml:16:11: hsts.enabled: this { is never closed (a } is missing)"
    );
}

#[test]
fn unclosed_string_is_reported_at_the_line_of_its_quote() {
    let site = Site::new();
    let e = load_error_here(&site, &with("[hsts]\nmax_age = \"1d\nenabled = true\n"));
    assert_eq!(
        e,
        "gateway.toml:16:11: hsts.max_age: this string is never closed (a \" is missing)"
    );
}

#[test]
fn duplicate_table_names_the_table_and_where_it_was_first_defined() {
    let site = Site::new();
    let e = load_error_here(&site, &with("[tls]\ncert = \"other.crt\"\n"));
    assert_eq!(
        e,
        "gateway.toml:15:1: table [tls] is defined twice (first at line 5)"
    );
}

#[test]
fn duplicate_key_names_the_key_and_where_it_was_first_set() {
    let site = Site::new();
    let e = load_error_here(&site, &with("listen = \"127.0.0.1:1\"\n"));
    assert_eq!(
        e,
        "gateway.toml:15:1: observability.listen is set twice (first at line 14)"
    );
}

#[test]
fn every_type_error_is_reported_in_an_operators_words() {
    let site = Site::new();
    let e = load_error_here(
        &site,
        &with("[hsts]\nenabled = \"yes\"\nmax_age = 365\n[limits]\nmax_connections = \"many\"\n[admin]\nallowed_ips = 5\npaths = \"/arcgis/admin\"\n"),
    );
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(
        lines,
        [
            "gateway.toml:16:1: hsts.enabled: expected true or false, found the string \"yes\"",
            "gateway.toml:17:1: hsts.max_age: expected a string such as \"10s\", found the number 365",
            "gateway.toml:19:1: limits.max_connections: expected a whole number, found the string \"many\"",
            "gateway.toml:21:1: admin.allowed_ips: expected a list such as [\"a\", \"b\"] or a comma-separated string, found the number 5",
            "gateway.toml:22:1: admin.paths: expected a list such as [\"a\", \"b\"], found the string \"/arcgis/admin\"",
        ]
    );
}

#[test]
fn an_unknown_cipher_suite_is_one_error_not_also_no_suite_left() {
    let site = Site::new();
    let text = BASE.replace(
        "key = \"gateway.key\"\n",
        "key = \"gateway.key\"\nprotocols = [\"TLSv1.2\"]\ncipher_suites = [\"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA257\"]\n",
    );
    let e = load_error_here(&site, &format!("{text}listen = \"127.0.0.1:0\"\n"));
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("is not an IANA cipher suite name"), "{e}");
}

#[test]
fn a_malformed_listen_address_is_one_error_not_also_must_be_set() {
    let site = Site::new();
    let text = BASE.replace(
        "https_listen = \"127.0.0.1:0\"",
        "https_listen = \"127.0.0.1\"",
    );
    let e = load_error_here(&site, &format!("{text}listen = \"127.0.0.1:0\"\n"));
    assert_eq!(
        e,
        "gateway.toml:2:1: server.https_listen: \"127.0.0.1\" is not an address:port such as \"0.0.0.0:6443\" or \"[::]:6443\""
    );
}

#[test]
fn public_host_that_is_not_a_host_is_an_error_when_the_config_loads() {
    let site = Site::new();
    for bad in ["evil.com/x", "a@b", "gis.example.com:0", "[::1"] {
        let text = BASE.replacen(
            "[server]\n",
            &format!("[server]\npublic_host = {bad:?}\n"),
            1,
        );
        let e = load_error(&site, &format!("{text}listen = \"127.0.0.1:0\"\n"));
        assert_located(&e, 2, "server.public_host");
        assert!(e.contains("is not a host name or IP address"), "{e}");
    }
}
