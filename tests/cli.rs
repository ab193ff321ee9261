//! The `gisgate` binary as an operator runs it: the access log, exit codes
//! on SIGTERM, and the certificate tools (SPEC §1, §5, §6).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use http::StatusCode;

fn gisgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gisgate"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_is_json_per_request_without_secrets_and_sigterm_exits_zero() {
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
    let r = https_request(
        &site,
        addr,
        false,
        get(
            "/arcgis/rest/services?f=json&token=SECRETTOKEN",
            &[
                ("authorization", "Bearer SECRETBEARER"),
                ("cookie", "AGS_ROLES=SECRETCOOKIE"),
            ],
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let stderr = child.stderr.take().unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0), "a clean drain exits 0");
    let lines: Vec<String> = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .collect();
    let all = lines.join("\n");
    assert!(!all.contains("SECRET"), "a secret reached the log:\n{all}");
    let access: serde_json::Value = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["target"] == "gisgate::access")
        .unwrap_or_else(|| panic!("no access line in:\n{all}"));
    assert_eq!(access["method"], "GET");
    assert_eq!(access["path"], "/arcgis/rest/services");
    assert_eq!(access["query"], "f=*&token=*");
    assert_eq!(access["status"], 200);
    assert_eq!(access["upstream_status"], 200);
    assert_eq!(access["route"], "proxy");
    assert_eq!(access["client"], "127.0.0.1");
    assert_eq!(access["tls_version"], "TLSv1.3");
    assert!(access["tls_cipher"].as_str().unwrap().starts_with("TLS_"));
    assert_eq!(access["bytes"], 11);
    assert!(access["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(access["timestamp"].is_string());
}

#[test]
fn invalid_config_exits_one_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[upstream]\nurl = \"http://gis:6080\"\n").unwrap();
    let out = gisgate()
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:2:1: upstream.url"), "{err}");
    assert!(err.contains("never offloads TLS"), "{err}");
}

#[test]
fn port_that_cannot_be_bound_exits_one() {
    let site = Site::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let text = site.config(
        "127.0.0.1:1".parse().unwrap(),
        &format!("[server]\nhttps_listen = \"127.0.0.1:{port}\"\n"),
    );
    let path = site.write_config(&text);
    let out = gisgate()
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on"));
}

#[test]
fn cert_generate_writes_a_0600_key_and_show_reports_the_fields() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = (dir.path().join("gw.crt"), dir.path().join("gw.key"));
    let out = gisgate()
        .args([
            "cert",
            "generate",
            "--cn",
            "gis.example.com",
            "--san",
            "gis.example.com",
            "--san",
            "10.0.0.5",
            "--days",
            "30",
            "--cert",
        ])
        .arg(&crt)
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let show = gisgate()
        .args(["cert", "show", "--json"])
        .arg(&crt)
        .output()
        .unwrap();
    assert!(show.status.success());
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert!(v[0]["Owner"]
        .as_str()
        .unwrap()
        .contains("CN=gis.example.com"));
    assert_eq!(v[0]["Version"], "3");
    let text = gisgate().args(["cert", "show"]).arg(&crt).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("SHA256: "), "{text}");
    // The key is never printed.
    assert!(!text.contains("PRIVATE KEY"));
    // A second generate does not overwrite the key.
    let again = gisgate()
        .args(["cert", "generate", "--cn", "x", "--cert"])
        .arg(&crt)
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
}

#[test]
fn cert_csr_is_accepted_by_openssl_req_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (crt, key, csr) = (
        dir.path().join("a.crt"),
        dir.path().join("a.key"),
        dir.path().join("a.csr"),
    );
    assert!(gisgate()
        .args(["cert", "generate", "--cn", "gis.example.com", "--cert"])
        .arg(&crt)
        .arg("--key")
        .arg(&key)
        .status()
        .unwrap()
        .success());
    let out = gisgate()
        .args([
            "cert",
            "csr",
            "--cn",
            "gis.example.com",
            "--san",
            "gis.example.com",
            "--key",
        ])
        .arg(&key)
        .arg("--out")
        .arg(&csr)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verify = Command::new("openssl")
        .args(["req", "-verify", "-noout", "-in"])
        .arg(&csr)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_fingerprint_prints_a_pin_that_the_gateway_accepts() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let url = format!("https://127.0.0.1:{}", up.addr.port());
    let out = tokio::task::spawn_blocking(move || {
        gisgate()
            .args(["upstream-fingerprint", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let pin_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("pin_sha256"))
        .expect(&text);
    let expected =
        gisgate::tls::certs::colon_hex(&gisgate::tls::certs::sha256_fingerprint(&up.cert_der));
    assert!(pin_line.contains(&expected), "{text}");
    // Pasted into [upstream], the gateway trusts it.
    let config = site
        .config(up.addr, &format!("[upstream]\n{}\n", pin_line.trim()))
        .replace("ca = \"ca.crt\"\n", "");
    let path = site.write_config(&config);
    let gw = gisgate::run::start(gisgate::config::load(&path).unwrap())
        .await
        .unwrap();
    let addr = gw.local_addr(gisgate::listen::ListenerKind::Https).unwrap();
    assert_eq!(
        https_request(&site, addr, false, get("/x", &[]))
            .await
            .status,
        StatusCode::OK
    );
}

#[test]
fn check_warns_about_risky_but_valid_settings() {
    let site = Site::new();
    let dir = site.path("");
    let (crt, key) = (dir.join("self.crt"), dir.join("self.key"));
    assert!(gisgate()
        .args([
            "cert",
            "generate",
            "--cn",
            "other.example.com",
            "--days",
            "10",
            "--cert"
        ])
        .arg(&crt)
        .arg("--key")
        .arg(&key)
        .status()
        .unwrap()
        .success());
    let text = site.config(
        "127.0.0.1:7443".parse().unwrap(),
        "[server]\npublic_host = \"gis.example.com\"\n[tls]\ncert = \"self.crt\"\nkey = \"self.key\"\n[admin]\nallowed_ips = [\"0.0.0.0/0\", \"::/0\"]\n",
    );
    let path = site.write_config(&text);
    let out = gisgate()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    // Warnings go to stderr (SPEC §8).
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("expires in"), "{report}");
    assert!(report.contains("self-signed"), "{report}");
    assert!(
        report.contains("does not cover") || report.contains("covers server.public_host"),
        "{report}"
    );
    assert!(report.contains("admits every address"), "{report}");
    let http_mode = site.config(
        "127.0.0.1:7443".parse().unwrap(),
        "[server]\nprotocol = \"HTTP\"\n",
    );
    let path = site.write_config(&http_mode);
    let out = gisgate()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("plaintext"));
}

#[test]
fn check_writes_errors_and_warnings_to_stderr_and_the_policy_to_stdout() {
    let site = Site::new();
    let bad = site.path("bad.toml");
    std::fs::write(&bad, "[upstream]\nurl = \"http://gis:6080\"\n").unwrap();
    let out = gisgate()
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("bad.toml:2:1: upstream.url"), "{stderr}");
    assert!(stderr.contains("bad.toml: invalid"), "{stderr}");
    assert!(stdout.is_empty(), "errors reached stdout:\n{stdout}");

    let text = site.config(
        "127.0.0.1:7443".parse().unwrap(),
        "[admin]\nallowed_ips = [\"0.0.0.0/0\", \"::/0\"]\n",
    );
    let path = site.write_config(&text);
    let out = gisgate()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("warnings:"), "{stderr}");
    assert!(stderr.contains("admits every address"), "{stderr}");
    assert!(!stdout.contains("admits every address"), "{stdout}");
    assert!(stdout.contains("gateway.toml: valid"), "{stdout}");
    assert!(stdout.contains("protocol"), "{stdout}");
}

#[test]
fn version_names_the_rustls_and_aws_lc_versions() {
    let out = gisgate().arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("gisgate {} (", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("rustls 0.23."), "{text}");
    assert!(text.contains("aws-lc-rs 1."), "{text}");
    assert!(text.contains("AWS-LC "), "{text}");
    assert!(!text.contains("unknown"), "{text}");
}

#[test]
fn c_is_short_for_config_in_run_check_and_at_the_top() {
    let site = Site::new();
    let good = site.write_config(&site.config("127.0.0.1:7443".parse().unwrap(), ""));
    let out = gisgate().args(["check", "-c"]).arg(&good).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("gateway.toml: valid"));

    let bad = site.path("bad.toml");
    std::fs::write(&bad, "[upstream]\nurl = \"http://gis:6080\"\n").unwrap();
    for args in [&["run", "-c"][..], &["-c"][..]] {
        let out = gisgate().args(args).arg(&bad).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("bad.toml:2:1: upstream.url"),
            "{args:?}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_without_config_uses_gateway_toml_in_the_working_directory_and_logs_it() {
    let site = Site::new();
    let text = site
        .config("127.0.0.1:7443".parse().unwrap(), "")
        .replace("level = \"warn\"", "level = \"info\"");
    site.write_config(&text);
    let mut child = gisgate()
        .arg("run")
        .current_dir(site.path(""))
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let announced = tokio::task::spawn_blocking(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("config ./gateway.toml"))
    });
    let line = tokio::time::timeout(Duration::from_secs(20), announced)
        .await
        .expect("the gateway said which config it uses")
        .unwrap();
    assert!(
        line.is_some_and(|l| l.contains("no --config given")),
        "no log line naming the config file"
    );
    // (A clean exit on SIGTERM is access_log_is_json_..._sigterm_exits_zero's.)
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn run_without_config_and_without_a_gateway_toml_names_both_places_it_looked() {
    if std::path::Path::new("/etc/gisgate/gateway.toml").exists() {
        eprintln!("/etc/gisgate/gateway.toml exists on this machine; skipping");
        return;
    }
    let empty = tempfile::tempdir().unwrap();
    let out = gisgate()
        .arg("run")
        .current_dir(empty.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("./gateway.toml"), "{err}");
    assert!(err.contains("/etc/gisgate/gateway.toml"), "{err}");
    assert!(err.contains("--config"), "{err}");
}

#[test]
fn check_of_the_sample_on_a_fresh_clone_says_to_run_the_demo_first() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gateway.toml"),
        gisgate::demo::SHIPPED_CONFIG,
    )
    .unwrap();
    let out = gisgate()
        .args(["check", "-c", "gateway.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let cert_line = err
        .lines()
        .find(|l| l.contains("tls.cert"))
        .unwrap_or_else(|| panic!("no tls.cert error:\n{err}"));
    assert!(cert_line.contains("does not exist"), "{cert_line}");
    assert!(cert_line.contains("run `gisgate demo`"), "{cert_line}");
}

#[test]
fn a_missing_tls_certificate_says_how_to_make_one() {
    let site = Site::new();
    let text = site.config(
        "127.0.0.1:7443".parse().unwrap(),
        "[tls]\ncert = \"gis.crt\"\nkey = \"gis.key\"\n",
    );
    let path = site.write_config(&text);
    let out = gisgate().args(["check", "-c"]).arg(&path).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for key in ["tls.cert", "tls.key"] {
        let line = err.lines().find(|l| l.contains(key)).expect(&err);
        assert!(line.contains("gisgate cert generate"), "{line}");
        assert!(!line.contains("gisgate demo"), "{line}");
    }
}

/// The addresses (as /proc/net/tcp spells them, e.g. `0100007F` for
/// 127.0.0.1) of IPv4 sockets listening on `port`.
fn listening_on(port: u16) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let (addr, p) = fields.get(1)?.split_once(':')?;
            (fields.get(3) == Some(&"0A") && u16::from_str_radix(p, 16).ok()? == port)
                .then(|| addr.to_string())
        })
        .collect()
}

/// A running `gisgate demo`, killed if a test fails before it is stopped.
struct RunningDemo(Option<std::process::Child>);

impl Drop for RunningDemo {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `gisgate demo ARGS` in `dir`; returns it once it says it runs,
/// with the line after that (where it says who can reach it).
fn start_demo(dir: &std::path::Path, args: &[&str]) -> (RunningDemo, String) {
    let mut demo = RunningDemo(None);
    let child = demo.0.insert(
        gisgate()
            .arg("demo")
            .args(args)
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok);
    assert!(
        lines.any(|l| l.contains("gisgate demo is running")),
        "the demo did not start"
    );
    let reach = lines.next().unwrap_or_default();
    // Read the rest: printing to a closed pipe would end the demo.
    std::thread::spawn(move || lines.for_each(drop));
    (demo, reach)
}

fn interrupt(mut demo: RunningDemo) {
    let mut child = demo.0.take().unwrap();
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn demo_listens_on_loopback_only_even_after_a_reload_unless_listen_all() {
    const LOOPBACK: &str = "0100007F";
    const EVERY_INTERFACE: &str = "00000000";
    let dir = tempfile::tempdir().unwrap();
    let (demo, reach) = start_demo(dir.path(), &[]);
    assert!(reach.contains("loopback only"), "{reach}");
    assert!(reach.contains("--listen-all"), "{reach}");
    assert_eq!(listening_on(6443), [LOOPBACK]);
    assert_eq!(listening_on(6080), [LOOPBACK]);
    // An edit of gateway.toml is applied, still on loopback.
    let config = dir.path().join("gateway.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("http_listen = \"0.0.0.0:6080\""));
    std::fs::write(
        &config,
        text.replace(
            "http_listen = \"0.0.0.0:6080\"",
            "http_listen = \"0.0.0.0:6081\"",
        ),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while listening_on(6081).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(listening_on(6081), [LOOPBACK], "the reload's listener");
    interrupt(demo);
    std::fs::write(&config, text).unwrap();

    let (demo, reach) = start_demo(dir.path(), &["--listen-all"]);
    assert!(reach.contains("other machines can reach it"), "{reach}");
    assert_eq!(listening_on(6443), [EVERY_INTERFACE]);
    interrupt(demo);
}
