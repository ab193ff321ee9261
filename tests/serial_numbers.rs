//! One serial number format everywhere: `gisgate check`, `gisgate cert
//! show`, the expiry metric's `serial` label, `/sslcertificates` and the logs
//! all print exactly what `openssl x509 -noout -serial` prints (upper-case
//! hex of the integer's bytes, leading zero nibble kept, no sign byte).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn openssl_available() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A self-signed certificate made by openssl with the given serial, written
/// as `<name>.crt` / `<name>.key` in `dir`.
fn openssl_cert(dir: &Path, name: &str, cn: &str, serial: &str) {
    let key = dir.join(format!("{name}.key"));
    let crt = dir.join(format!("{name}.crt"));
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:prime256v1")
        .args(["-nodes", "-days", "30", "-subj"])
        .arg(format!("/CN={cn}"))
        .args(["-addext"])
        .arg(format!("subjectAltName=DNS:{cn}"))
        .args(["-set_serial", serial, "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
}

/// `openssl x509 -noout -serial`, without the `serial=`.
fn openssl_serial(path: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .strip_prefix("serial=")
        .unwrap()
        .to_string()
}

fn gisgate(args: &[&str], dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_gisgate"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the gisgate binary runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

async fn observe(tg: &TestGateway, path: &str) -> String {
    let (_, _, body) = plain_request(tg.observe.unwrap(), "GET", path, &[]).await;
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_cert_show_metrics_and_sslcertificates_print_the_serial_as_openssl_does() {
    if !openssl_available() {
        eprintln!("openssl not found on PATH; skipping");
        return;
    }
    let site = Site::new();
    let dir = site.dir.path();
    // A leading zero nibble, and a first byte with the high bit set (DER
    // adds a 00 sign byte that openssl does not print).
    openssl_cert(dir, "zero", "localhost", "0x0DEFFB0F1122334455667788");
    openssl_cert(dir, "high", "maps.example.com", "0x9A00FF0102030405");
    let zero = openssl_serial(&dir.join("zero.crt"));
    let high = openssl_serial(&dir.join("high.crt"));
    assert_eq!(zero, "0DEFFB0F1122334455667788");
    assert_eq!(high, "9A00FF0102030405");

    let up = site.upstream(Http::V1).await;
    let overlay = "[tls]\ncert = \"zero.crt\"\nkey = \"zero.key\"\n[[tls.sni]]\nserver_name = \"maps.example.com\"\ncert = \"high.crt\"\nkey = \"high.key\"\n";
    let config = site.write_config(&site.config(up.addr, overlay));

    let check = gisgate(&["check", "--config", config.to_str().unwrap()], dir);
    assert!(check.contains(&format!("serial {zero} ")), "{check}");
    assert!(check.contains(&format!("serial {high} ")), "{check}");

    // The diff, as the reload log and `check --against` print it.
    let old = dir.join("old.toml");
    std::fs::write(&old, site.config(up.addr, "")).unwrap();
    let was = openssl_serial(&dir.join("gateway.crt"));
    let against = gisgate(
        &[
            "check",
            "--config",
            config.to_str().unwrap(),
            "--against",
            old.to_str().unwrap(),
        ],
        dir,
    );
    assert!(
        against.contains(&format!("tls.cert: serial {was} -> {zero} ")),
        "{against}"
    );
    assert!(
        against.contains(&format!("+maps.example.com (serial {high})")),
        "{against}"
    );

    for (file, serial) in [("zero.crt", &zero), ("high.crt", &high)] {
        let text = gisgate(&["cert", "show", file], dir);
        assert!(
            text.contains(&format!("Serial number: {serial}\n")),
            "{text}"
        );
        let json = gisgate(&["cert", "show", file, "--json"], dir);
        assert!(
            json.contains(&format!("\"Serial number\": \"{serial}\"")),
            "{json}"
        );
    }

    let tg = site.gateway(&up, overlay).await;
    let m = tg.metrics().await;
    for (name, serial) in [("default", &zero), ("maps.example.com", &high)] {
        let line = format!(
            "gisgate_certificate_expiry_timestamp_seconds{{name=\"{name}\",serial=\"{serial}\"}}"
        );
        assert!(m.contains(&line), "{m}");
        let json = observe(&tg, &format!("/sslcertificates/{name}?f=json")).await;
        assert!(
            json.contains(&format!("\"Serial number\":\"{serial}\""))
                || json.contains(&format!("\"Serial number\": \"{serial}\"")),
            "{json}"
        );
    }
}
