//! Issue 25's keys: a bad value is a clear error at its file:line:col and
//! key; `check` shows the rules, and `check --against` what changed.

mod common;

use std::path::PathBuf;

use common::*;

/// A valid config with known line numbers: lines 1-14; rules start on 15.
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
listen = "127.0.0.1:0"
"#;

fn write(site: &Site, name: &str, extra: &str) -> PathBuf {
    let path = site.path(name);
    std::fs::write(&path, format!("{BASE}{extra}")).unwrap();
    path
}

fn load_error(extra: &str) -> String {
    let site = Site::new();
    let path = write(&site, "gateway.toml", extra);
    match gisgate::config::load(&path) {
        Ok(_) => panic!("config was accepted:\n{extra}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_rate_that_is_not_a_number_names_its_rule_key_and_line() {
    let e = load_error("[[rate_limit]]\npaths = [\"/arcgis/login\"]\nrate = \"ten/min\"\n");
    assert!(e.contains("gateway.toml:17:"), "{e}");
    assert!(e.contains("rate_limit.0.rate: \"ten/min\""), "{e}");
    assert!(e.contains("not a whole number"), "{e}");
}

#[test]
fn a_zero_rate_a_zero_burst_and_an_unknown_unit_are_refused() {
    let e = load_error("[[rate_limit]]\npaths = [\"/a\"]\nrate = \"0/min\"\n");
    assert!(
        e.contains("rate_limit.0.rate: \"0/min\": the count must be at least 1"),
        "{e}"
    );
    let e = load_error("[[rate_limit]]\npaths = [\"/a\"]\nrate = \"5/min\"\nburst = 0\n");
    assert!(e.contains("gateway.toml:18:"), "{e}");
    assert!(e.contains("rate_limit.0.burst: must be at least 1"), "{e}");
    let e = load_error("[[rate_limit]]\npaths = [\"/a\"]\nrate = \"5/fortnight\"\n");
    assert!(e.contains("unknown unit"), "{e}");
}

#[test]
fn the_second_rule_is_named_by_its_index() {
    let e = load_error(
        "[[access]]\npaths = [\"/a\"]\ndeny = [\"10.0.0.0/8\"]\n[[access]]\npaths = [\"/b\"]\nallow = [\"10.0.0.300\"]\n",
    );
    assert!(e.contains("gateway.toml:20:"), "{e}");
    assert!(
        e.contains("access.1.allow: invalid IP address: \"10.0.0.300\""),
        "{e}"
    );
}

#[test]
fn an_access_rule_without_allow_or_deny_is_refused() {
    let e = load_error("[[access]]\npaths = [\"/a\"]\n");
    assert!(
        e.contains("access.0: an [[access]] rule needs allow"),
        "{e}"
    );
}

#[test]
fn bad_paths_methods_and_types_in_rules_are_refused() {
    let e =
        load_error("[[access]]\npaths = [\"/a/../..\"]\nmethods = [\"G T\"]\ndeny = [\"::/0\"]\n");
    assert!(
        e.contains("access.0.paths: \"/a/../..\" is not a canonical absolute path"),
        "{e}"
    );
    assert!(
        e.contains("access.0.methods: \"G T\" is not an HTTP method"),
        "{e}"
    );
    let e = load_error("[[body_limit]]\npaths = [\"/a\"]\nmax_bytes = \"1MB\"\n");
    assert!(
        e.contains("body_limit.0.max_bytes: expected a whole number"),
        "{e}"
    );
    let e = load_error("[[rate_limit]]\npaths = [\"/a\"]\nrate = \"1/s\"\nrte = 1\n");
    assert!(e.contains("unknown field"), "{e}");
    let e = load_error("[limits]\nmax_connections_per_ip = 0\n");
    assert!(
        e.contains("limits.max_connections_per_ip: must be at least 1"),
        "{e}"
    );
    let e = load_error("[tokens]\nrefuse_get_credentials = \"yes\"\n");
    assert!(
        e.contains("tokens.refuse_get_credentials: expected true or false"),
        "{e}"
    );
}

const RULES: &str = r#"[limits]
max_connections_per_ip = 50
max_body_bytes = 1048576
[[rate_limit]]
name = "sign-in"
paths = ["/arcgis/login"]
methods = ["POST"]
rate = "10/min"
[[access]]
name = "help"
paths = ["/arcgis/help"]
allow = ["10.0.0.0/8"]
[[body_limit]]
paths = ["/arcgis/uploads"]
max_bytes = 2000000000
"#;

#[test]
fn check_shows_every_rule_and_limit() {
    let site = Site::new();
    let path = write(&site, "gateway.toml", RULES);
    let (report, valid) = gisgate::check::report(&path, None);
    assert!(valid, "{report}");
    let out = report.summary;
    for line in [
        "get credentials  refused (405) at the sign-in endpoints: use POST",
        "access[0]        help: /arcgis/help; allow only [10.0.0.0/8]",
        "rate limit[0]    sign-in: /arcgis/login (POST): 10/min per client address, burst 10",
        "conns per ip     50",
        "body limit[0]    /arcgis/uploads: 2000000000 bytes",
        "max body bytes   1048576",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
}

#[test]
fn check_against_names_changed_rules() {
    let site = Site::new();
    let old = write(&site, "old.toml", RULES);
    let new = write(
        &site,
        "new.toml",
        &RULES
            .replace("10/min", "5/min")
            .replace("max_connections_per_ip = 50\n", ""),
    );
    let (report, valid) = gisgate::check::report(&new, Some(&old));
    assert!(valid, "{report}");
    let out = report.summary;
    assert!(
        out.contains("limits.max_connections_per_ip: 50 -> (none)"),
        "{out}"
    );
    assert!(
        out.contains("rate_limit.0: sign-in: /arcgis/login (POST): 10/min per client address, burst 10 -> sign-in: /arcgis/login (POST): 5/min per client address, burst 5"),
        "{out}"
    );
}
