//! The gateway's certificate from a PKCS#12 bundle (issue 23, item 3), as
//! ArcGIS Server exports it: bundles made by `openssl pkcs12 -export` at test
//! time (OpenSSL 3's AES-256/PBKDF2 default and the legacy 3DES/RC2-40),
//! served to real TLS clients, in the default slot and in `[[tls.sni]]`,
//! and hot reloaded.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const WITHIN: Duration = Duration::from_secs(10);

/// How `openssl pkcs12 -export` encrypts the bundle.
#[derive(Clone, Copy)]
enum Encryption {
    /// OpenSSL 3's default: PBES2, AES-256-CBC, PBKDF2-HMAC-SHA256.
    Modern,
    /// `-legacy`: RC2-40 for the certificates, 3DES for the key, SHA-1 MAC.
    Legacy,
}

/// Writes `issued` as `<name>.pfx` with the CA after it, protected by
/// `password`, made by the openssl command line.
fn export_pfx(
    site: &Site,
    name: &str,
    issued: &Issued,
    password: &str,
    enc: Encryption,
) -> PathBuf {
    let (cert, key) = site.ca.write(name, issued);
    let out = site.path(&format!("{name}.pfx"));
    let mut cmd = Command::new("openssl");
    cmd.args(["pkcs12", "-export", "-in"])
        .arg(&cert)
        .arg("-inkey")
        .arg(&key)
        .arg("-certfile")
        .arg(site.ca.ca_path())
        .arg("-out")
        .arg(&out)
        .arg("-passout")
        .arg(format!("pass:{password}"));
    if let Encryption::Legacy = enc {
        cmd.arg("-legacy");
    }
    let done = cmd
        .output()
        .expect("openssl is installed (.ci/run installs it)");
    assert!(done.status.success(), "openssl pkcs12 -export: {done:?}");
    // The PEM files must not be what the gateway reads.
    std::fs::remove_file(&cert).unwrap();
    std::fs::remove_file(&key).unwrap();
    out
}

fn write_password(site: &Site, name: &str, password: &str) {
    std::fs::write(site.path(name), format!("{password}\n")).unwrap();
}

/// `[tls]` reading `gateway.pfx` with the password in `gateway.pass`.
const PFX_TLS: &str = "[tls]\ncert = \"\"\nkey = \"\"\npkcs12 = \"gateway.pfx\"\npkcs12_password_file = \"gateway.pass\"\n";

/// The site's base config with the PEM pair swapped for the bundle.
fn pfx_config(site: &Site, upstream: std::net::SocketAddr, overlay: &str) -> String {
    site.config(upstream, &format!("{PFX_TLS}{overlay}"))
        .replace("cert = \"\"\n", "")
        .replace("key = \"\"\n", "")
}

async fn served_chain(site: &Site, tg: &TestGateway, name: &str) -> Vec<CertificateDer<'static>> {
    let config = Arc::new(client_config(site.ca.roots(), &[b"http/1.1"]));
    let tcp = TcpStream::connect(tg.https()).await.unwrap();
    let tls = TlsConnector::from(config)
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await
        .expect("TLS handshake verified against the test CA");
    tls.get_ref().1.peer_certificates().unwrap().to_vec()
}

fn ca_der(site: &Site) -> CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(site.ca.cert_pem.as_bytes()).unwrap()
}

async fn gateway_serving_pfx(enc: Encryption) -> (Site, TestUpstream, TestGateway) {
    let site = Site::new();
    export_pfx(&site, "gateway", &site.gateway_cert, "arcgis export 1", enc);
    write_password(&site, "gateway.pass", "arcgis export 1");
    let up = site.upstream(Http::V1).await;
    let tg = site
        .gateway_from_text(&pfx_config(&site, up.addr, ""))
        .await;
    (site, up, tg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pfx_made_by_openssl_3_is_served_leaf_first_with_its_chain() {
    let (site, _up, tg) = gateway_serving_pfx(Encryption::Modern).await;
    let chain = served_chain(&site, &tg, "localhost").await;
    assert_eq!(chain, [site.gateway_cert.der.clone(), ca_der(&site)]);
    let r = https_get(&site, &tg, "/arcgis/rest/info", false).await;
    assert_eq!(r.status, http::StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_3des_rc2_pfx_is_served() {
    let (site, _up, tg) = gateway_serving_pfx(Encryption::Legacy).await;
    let chain = served_chain(&site, &tg, "localhost").await;
    assert_eq!(chain[0], site.gateway_cert.der);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pfx_in_an_sni_entry_is_served_for_its_name() {
    let site = Site::new();
    let maps = site.ca.issue_rsa(&["maps.example.com"]);
    export_pfx(&site, "maps", &maps, "", Encryption::Modern);
    let up = site.upstream(Http::V1).await;
    let tg = site
        .gateway(
            &up,
            "[[tls.sni]]\nserver_name = \"maps.example.com\"\npkcs12 = \"maps.pfx\"\n",
        )
        .await;
    let chain = served_chain(&site, &tg, "maps.example.com").await;
    assert_eq!(chain[0], maps.der, "the bundle's certificate for its name");
    let chain = served_chain(&site, &tg, "localhost").await;
    assert_eq!(
        chain[0], site.gateway_cert.der,
        "the PEM default for others"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pfx_storing_the_ca_before_the_leaf_is_still_served_leaf_first() {
    use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
    let site = Site::new();
    let (_, key) = site.gateway_cert.chain_and_key();
    let key = PrivateKey::from_der(key.secret_der()).unwrap();
    let ca = Certificate::from_der(ca_der(&site).as_ref()).unwrap();
    let leaf = Certificate::from_der(site.gateway_cert.der.as_ref()).unwrap();
    // A bundle listing the CA first, as some Windows exports do.
    let mut store = KeyStore::new();
    store.add_entry(
        "gateway",
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(b"1".to_vec(), key, [ca, leaf])),
    );
    let bytes = store.writer("pw").write().unwrap();
    let stored = p12_keystore::Pkcs12Archive::from_pkcs12(&bytes, "pw").unwrap();
    assert_eq!(stored.certs[0].cert.as_der(), ca_der(&site).as_ref());
    std::fs::write(site.path("gateway.pfx"), bytes).unwrap();
    write_password(&site, "gateway.pass", "pw");
    let up = site.upstream(Http::V1).await;
    let tg = site
        .gateway_from_text(&pfx_config(&site, up.addr, ""))
        .await;
    let chain = served_chain(&site, &tg, "localhost").await;
    assert_eq!(chain, [site.gateway_cert.der.clone(), ca_der(&site)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_pfx_is_hot_reloaded() {
    let (site, _up, tg) = gateway_serving_pfx(Encryption::Modern).await;
    let rotated = site.ca.issue(&["localhost", "127.0.0.1"]);
    // Exported with a new password, then both files moved into place.
    export_pfx(&site, "next", &rotated, "rotated 2", Encryption::Modern);
    write_password(&site, "next.pass", "rotated 2");
    std::fs::rename(site.path("next.pass"), site.path("gateway.pass")).unwrap();
    std::fs::rename(site.path("next.pfx"), site.path("gateway.pfx")).unwrap();
    eventually(WITHIN, || async {
        served_chain(&site, &tg, "localhost").await[0] == rotated.der
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pfx_with_the_wrong_password_is_refused_and_the_running_certificate_stays() {
    let (site, _up, tg) = gateway_serving_pfx(Encryption::Modern).await;
    let rotated = site.ca.issue(&["localhost", "127.0.0.1"]);
    export_pfx(&site, "next", &rotated, "right", Encryption::Modern);
    std::fs::rename(site.path("next.pfx"), site.path("gateway.pfx")).unwrap();
    // The password file still holds the old bundle's password.
    let err = tg.gw.reload().await.unwrap_err().to_string();
    assert!(err.contains("gateway.toml:"), "{err}");
    assert!(
        err.contains("tls.pkcs12_password_file:") && err.contains("wrong password"),
        "{err}"
    );
    assert!(
        !err.contains("arcgis export 1"),
        "never the password: {err}"
    );
    assert_eq!(
        served_chain(&site, &tg, "localhost").await[0],
        site.gateway_cert.der
    );
    let m = tg.metrics().await;
    assert!(
        m.contains("gisgate_config_reloads_total{result=\"failure\"}"),
        "{m}"
    );
}

#[test]
fn reload_watches_the_bundle_and_its_password_file() {
    let site = Site::new();
    export_pfx(&site, "gateway", &site.gateway_cert, "", Encryption::Modern);
    write_password(&site, "gateway.pass", "");
    let path = site.write_config(&pfx_config(&site, dead_addr(), ""));
    let settings = gisgate::config::load(&path).unwrap();
    let files = gisgate::reload::files_of(&settings);
    let names: Vec<&str> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap())
        .collect();
    assert!(names.contains(&"gateway.pfx"), "{names:?}");
    assert!(names.contains(&"gateway.pass"), "{names:?}");
}

/// Loads a config and returns the first error's text, or panics.
fn load_error(site: &Site, text: &str) -> String {
    let path = site.write_config(text);
    match gisgate::config::load(&path) {
        Err(e) => e.to_string(),
        Ok(settings) => {
            let sessions = gisgate::tls::server::TlsSessions::new().unwrap();
            match gisgate::tls::server::build(settings.tls.as_ref().unwrap(), &sessions) {
                Ok(_) => panic!("accepted:\n{text}"),
                Err(e) => settings.error_at(&e.key, e.message).to_string(),
            }
        }
    }
}

/// `file:line:col: key: message`, with the line being the key's.
fn assert_located(err: &str, text: &str, key_line: &str, says: &str) {
    let line = text
        .lines()
        .position(|l| l.trim_start().starts_with(key_line))
        .unwrap_or_else(|| panic!("{key_line} not in\n{text}"))
        + 1;
    assert!(
        err.contains(&format!("gateway.toml:{line}:")),
        "{err}\nexpected line {line} ({key_line}) in\n{text}"
    );
    assert!(err.contains(says), "{err}\nexpected {says:?}");
}

#[test]
fn pem_and_pkcs12_together_are_refused_at_the_pkcs12_line() {
    let site = Site::new();
    export_pfx(&site, "other", &site.gateway_cert, "", Encryption::Modern);
    let text = site.config(dead_addr(), "[tls]\npkcs12 = \"other.pfx\"\n");
    let err = load_error(&site, &text);
    assert_located(
        &err,
        &text,
        "pkcs12 =",
        "give either tls.cert and tls.key (PEM) or tls.pkcs12 (PKCS#12), not both",
    );
}

#[test]
fn neither_pem_nor_pkcs12_is_refused_naming_both_ways() {
    let site = Site::new();
    let text = site
        .config(dead_addr(), "")
        .replace("cert = \"gateway.crt\"\n", "")
        .replace("key = \"gateway.key\"\n", "");
    let err = load_error(&site, &text);
    assert_located(
        &err,
        &text,
        "[tls]",
        "tls.cert and tls.key, or tls.pkcs12, are required when server.protocol = \"HTTPS\"",
    );
}

#[test]
fn an_sni_entry_without_a_certificate_is_refused_at_its_table() {
    let site = Site::new();
    let text = site.config(
        dead_addr(),
        "[[tls.sni]]\nserver_name = \"maps.example.com\"\n",
    );
    let err = load_error(&site, &text);
    assert_located(
        &err,
        &text,
        "[[tls.sni]]",
        "tls.sni.0: tls.sni.0.cert and tls.sni.0.key, or tls.sni.0.pkcs12, are required in every [[tls.sni]] entry",
    );
}

#[test]
fn a_password_file_without_a_bundle_is_refused() {
    let site = Site::new();
    write_password(&site, "gateway.pass", "x");
    let text = site.config(
        dead_addr(),
        "[tls]\npkcs12_password_file = \"gateway.pass\"\n",
    );
    let err = load_error(&site, &text);
    assert_located(
        &err,
        &text,
        "pkcs12_password_file",
        "tls.pkcs12_password_file: is the password of tls.pkcs12, which is not set",
    );
}

#[test]
fn a_wrong_password_is_refused_at_the_password_file_line() {
    let site = Site::new();
    export_pfx(
        &site,
        "gateway",
        &site.gateway_cert,
        "right",
        Encryption::Legacy,
    );
    write_password(&site, "gateway.pass", "wrong");
    let text = pfx_config(&site, dead_addr(), "");
    let err = load_error(&site, &text);
    assert_located(
        &err,
        &text,
        "pkcs12_password_file",
        "gateway.pfx: wrong password for the PKCS#12 bundle",
    );
    assert!(!err.contains("wrong\n") && !err.contains("right"), "{err}");
}

#[test]
fn a_bundle_without_a_key_is_refused() {
    let site = Site::new();
    let (cert, _) = site.ca.write("gateway", &site.gateway_cert);
    let done = Command::new("openssl")
        .args(["pkcs12", "-export", "-nokeys", "-passout", "pass:", "-in"])
        .arg(&cert)
        .arg("-out")
        .arg(site.path("gateway.pfx"))
        .output()
        .unwrap();
    assert!(done.status.success(), "{done:?}");
    write_password(&site, "gateway.pass", "");
    let text = pfx_config(&site, dead_addr(), "");
    let err = load_error(&site, &text);
    assert_located(
        &err,
        &text,
        "pkcs12 =",
        "the PKCS#12 bundle holds no private key",
    );
}

#[test]
fn a_bundle_without_a_certificate_is_refused() {
    let site = Site::new();
    let (_, key) = site.ca.write("gateway", &site.gateway_cert);
    let done = Command::new("openssl")
        .args([
            "pkcs12", "-export", "-nocerts", "-passout", "pass:", "-inkey",
        ])
        .arg(&key)
        .arg("-out")
        .arg(site.path("gateway.pfx"))
        .output()
        .unwrap();
    assert!(done.status.success(), "{done:?}");
    write_password(&site, "gateway.pass", "");
    let text = pfx_config(&site, dead_addr(), "");
    let err = load_error(&site, &text);
    assert_located(
        &err,
        &text,
        "pkcs12 =",
        "the PKCS#12 bundle holds no certificate",
    );
}

#[test]
fn an_unreadable_password_file_is_refused_at_its_line() {
    let site = Site::new();
    export_pfx(&site, "gateway", &site.gateway_cert, "", Encryption::Modern);
    std::fs::write(site.path("gateway.pass"), "").unwrap();
    let text = pfx_config(&site, dead_addr(), "");
    let path = site.write_config(&text);
    let settings = gisgate::config::load(&path).unwrap();
    // Replaced after validation by a directory: there, but not readable as a file.
    std::fs::remove_file(site.path("gateway.pass")).unwrap();
    std::fs::create_dir(site.path("gateway.pass")).unwrap();
    let sessions = gisgate::tls::server::TlsSessions::new().unwrap();
    let e = match gisgate::tls::server::build(settings.tls.as_ref().unwrap(), &sessions) {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    };
    let err = settings.error_at(&e.key, e.message).to_string();
    assert_located(
        &err,
        &text,
        "pkcs12_password_file",
        "gateway.pass: cannot read the password file",
    );
}
