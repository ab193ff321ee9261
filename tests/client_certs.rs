//! Client certificates (issue 26): `[tls.client_auth]` verified by rustls,
//! CRLs hot-reloaded, the admin paths' certificate policy, and the verified
//! certificate forwarded to the upstream, driven with real clients (curl
//! and `openssl s_client`) on loopback.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use time::OffsetDateTime;

/// A client CA made at test time, which issues client certificates and
/// CRLs into the site's directory.
struct ClientCa {
    dir: PathBuf,
    name: String,
    params: CertificateParams,
    key: KeyPair,
}

/// What a client certificate is made with.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// EKU clientAuth, valid now.
    Good,
    /// EKU serverAuth only.
    ServerUsage,
    /// Expired yesterday.
    Expired,
    /// No extended key usage extension at all.
    NoUsage,
}

/// A client certificate and key on disk.
struct Client {
    cert: PathBuf,
    key: PathBuf,
    serial: SerialNumber,
    pem: String,
}

impl ClientCa {
    fn new(dir: &Path, name: &str) -> ClientCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} client CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}-ca.crt")), cert.pem()).unwrap();
        ClientCa {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            params,
            key,
        }
    }

    fn issue(&self, file: &str, cn: &str, kind: Kind) -> Client {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        // Most significant first, as CAs write them (rcgen's default DN
        // starts with a CN).
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Example");
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, "GIS Admins");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = vec![SanType::Rfc822Name(
            format!("{cn}@gis.example.com").try_into().unwrap(),
        )];
        params.extended_key_usages = match kind {
            Kind::ServerUsage => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Kind::NoUsage => Vec::new(),
            _ => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        let now = OffsetDateTime::now_utc();
        (params.not_before, params.not_after) = match kind {
            Kind::Expired => (
                now - time::Duration::days(30),
                now - time::Duration::days(1),
            ),
            _ => (
                now - time::Duration::days(1),
                now + time::Duration::days(30),
            ),
        };
        let serial = SerialNumber::from_slice(&rand_serial());
        params.serial_number = Some(serial.clone());
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let (cert_path, key_path) = (
            self.dir.join(format!("{file}.crt")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Client {
            cert: cert_path,
            key: key_path,
            serial,
            pem: cert.pem(),
        }
    }

    /// Writes the CA's CRL, revoking `revoked`, to `<name>.crl`, as PEM.
    fn write_crl(&self, revoked: &[&Client], next_update: time::Duration) -> PathBuf {
        let crl = self.crl(revoked, next_update);
        let path = self.dir.join(format!("{}.crl", self.name));
        std::fs::write(&path, crl.pem().unwrap()).unwrap();
        path
    }

    fn crl(
        &self,
        revoked: &[&Client],
        next_update: time::Duration,
    ) -> rcgen::CertificateRevocationList {
        let now = OffsetDateTime::now_utc();
        CertificateRevocationListParams {
            this_update: now - time::Duration::days(2),
            next_update: now + next_update,
            crl_number: SerialNumber::from_slice(&rand_serial()),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|c| RevokedCertParams {
                    serial_number: c.serial.clone(),
                    revocation_time: now - time::Duration::hours(1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&Issuer::from_params(&self.params, &self.key))
        .unwrap()
    }
}

fn rand_serial() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    let mut serial = [0u8; 16];
    serial[0] = 0x3c;
    serial[1..9].copy_from_slice(&h.finish().to_be_bytes());
    serial
}

/// What curl got: its exit code, and the status and body when a response
/// came.
struct CurlReply {
    exit: i32,
    status: u16,
    body: String,
}

/// `curl` to `https://<host>:<port><path>` on loopback, trusting the site's
/// CA, with an optional client certificate and extra headers.
async fn curl(
    site: &Site,
    tg: &TestGateway,
    host: &str,
    path: &str,
    client: Option<&Client>,
    headers: &[&str],
) -> Option<CurlReply> {
    let curl = real_peer("curl", &[])?;
    let port = tg.https().port();
    let mut args: Vec<String> = vec![
        "-s".into(),
        "--max-time".into(),
        "10".into(),
        "--cacert".into(),
        site.ca.ca_path().display().to_string(),
        "--resolve".into(),
        format!("{host}:{port}:127.0.0.1"),
        "-w".into(),
        "\n%{http_code}".into(),
    ];
    if let Some(c) = client {
        args.extend([
            "--cert".into(),
            c.cert.display().to_string(),
            "--key".into(),
            c.key.display().to_string(),
        ]);
    }
    for h in headers {
        args.extend(["-H".into(), h.to_string()]);
    }
    args.push(format!("https://{host}:{port}{path}"));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(curl)
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    Some(CurlReply {
        exit: out.status.code().unwrap_or(-1),
        status: code.trim().parse().unwrap_or(0),
        body: body.to_string(),
    })
}

/// The value of a metric line (`name{labels}`), 0 when absent. Tests in
/// this file share one process-wide recorder, so they compare counts
/// before and after rather than expect exact values.
async fn metric(tg: &TestGateway, series: &str) -> u64 {
    let page = tg.metrics().await;
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn verifications(result: &str) -> String {
    format!("gisgate_client_cert_verifications_total{{result=\"{result}\"}} ")
}

/// Waits until `series` has grown past `before`.
async fn grows(tg: &TestGateway, series: &str, before: u64) {
    let mut now = before;
    for _ in 0..400 {
        now = metric(tg, series).await;
        if now > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{series} stayed at {now}");
}

/// A site with a client CA, the gateway's certificate also for
/// `admin.localhost`, and its good client.
struct Pki {
    site: Site,
    clients: ClientCa,
    good: Client,
}

fn pki() -> Pki {
    let site = Site::new();
    let admin = site.ca.issue(&["admin.localhost"]);
    site.ca.write("admin", &admin);
    let clients = ClientCa::new(site.dir.path(), "clients");
    let good = clients.issue("alice", "alice", Kind::Good);
    Pki {
        site,
        clients,
        good,
    }
}

const REQUIRED: &str = r#"
[tls.client_auth]
ca = "clients-ca.crt"
mode = "required"
forward_header = "X-SSL-Client-Cert"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_certificate_reaches_the_upstream_and_a_forged_one_never_does() {
    let p = pki();
    let up = p.site.upstream(Http::V1).await;
    let tg = p.site.gateway(&up, REQUIRED).await;
    let ok_before = metric(&tg, &verifications("ok")).await;
    let forged = ["X-SSL-Client-Cert: forged", "X-SSL-Client-Subject: CN=root"];
    let Some(r) = curl(
        &p.site,
        &tg,
        "localhost",
        "/arcgis/rest",
        Some(&p.good),
        &forged,
    )
    .await
    else {
        return;
    };
    assert_eq!((r.exit, r.status), (0, 200), "{}", r.body);
    let seen = up.last();
    let sent = seen.headers["x-ssl-client-cert"].to_str().unwrap();
    let decoded = percent_decode(sent);
    assert_eq!(decoded, p.good.pem.replace("\r\n", "\n"));
    assert_eq!(
        seen.headers["x-ssl-client-subject"],
        "CN=alice,OU=GIS Admins,O=Example"
    );
    assert_eq!(seen.headers.get_all("x-ssl-client-cert").iter().count(), 1);
    grows(&tg, &verifications("ok"), ok_before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sent_certificate_headers_are_removed_without_mtls() {
    let p = pki();
    let up = p.site.upstream(Http::V1).await;
    let tg = p.site.gateway(&up, "").await;
    let forged = ["X-SSL-Client-Cert: forged", "X-SSL-Client-Subject: CN=root"];
    let Some(r) = curl(&p.site, &tg, "localhost", "/arcgis/rest", None, &forged).await else {
        return;
    };
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert!(!seen.headers.contains_key("x-ssl-client-cert"));
    assert!(!seen.headers.contains_key("x-ssl-client-subject"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_that_do_not_verify_are_refused_at_the_handshake_and_counted() {
    let p = pki();
    let other = ClientCa::new(p.site.dir.path(), "other");
    let stranger = other.issue("stranger", "mallory", Kind::Good);
    let expired = p.clients.issue("expired", "old", Kind::Expired);
    let server_usage = p.clients.issue("server", "svc", Kind::ServerUsage);
    let no_usage = p.clients.issue("nousage", "any", Kind::NoUsage);
    let up = p.site.upstream(Http::V1).await;
    let tg = p.site.gateway(&up, REQUIRED).await;
    let cases = [
        (None, "none"),
        (Some(&stranger), "unknown_ca"),
        (Some(&expired), "expired"),
        (Some(&server_usage), "bad_usage"),
        (Some(&no_usage), "bad_usage"),
    ];
    for (client, result) in cases {
        let before = metric(&tg, &verifications(result)).await;
        let Some(r) = curl(&p.site, &tg, "localhost", "/arcgis/rest", client, &[]).await else {
            return;
        };
        assert_ne!(r.exit, 0, "{result}: curl got a response: {}", r.status);
        assert_eq!(r.status, 0, "{result}");
        grows(&tg, &verifications(result), before).await;
    }
    assert_eq!(up.count(), 0, "nothing reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_rewritten_mid_run_revokes_at_once_and_a_broken_one_keeps_the_last() {
    let p = pki();
    let bob = p.clients.issue("bob", "bob", Kind::Good);
    p.clients.write_crl(&[], time::Duration::days(7));
    let up = p.site.upstream(Http::V1).await;
    let overlay = format!("{REQUIRED}crl = [\"clients.crl\"]\n");
    let tg = p.site.gateway(&up, &overlay).await;
    let Some(r) = curl(&p.site, &tg, "localhost", "/", Some(&bob), &[]).await else {
        return;
    };
    assert_eq!(r.status, 200);

    let revoked_before = metric(&tg, &verifications("revoked")).await;
    p.clients.write_crl(&[&bob], time::Duration::days(7));
    eventually(Duration::from_secs(10), || async {
        let r = curl(&p.site, &tg, "localhost", "/", Some(&bob), &[]).await;
        r.is_some_and(|r| r.status == 0)
    })
    .await;
    grows(&tg, &verifications("revoked"), revoked_before).await;
    let alice = curl(&p.site, &tg, "localhost", "/", Some(&p.good), &[]).await;
    assert_eq!(alice.map(|r| r.status), Some(200), "alice is not revoked");

    // A CRL cut short mid-write: refused, the running policy stays.
    let crl = p.site.path("clients.crl");
    let text = std::fs::read_to_string(&crl).unwrap();
    let failures = "gisgate_config_reloads_total{result=\"failure\"} ";
    let failed_before = metric(&tg, failures).await;
    std::fs::write(&crl, &text[..text.len() / 2]).unwrap();
    grows(&tg, failures, failed_before).await;
    let bob_again = curl(&p.site, &tg, "localhost", "/", Some(&bob), &[]).await;
    assert_eq!(bob_again.map(|r| r.status), Some(0), "bob stays revoked");
    let alice = curl(&p.site, &tg, "localhost", "/", Some(&p.good), &[]).await;
    assert_eq!(alice.map(|r| r.status), Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_paths_need_a_verified_certificate_with_an_allowed_subject() {
    let p = pki();
    let carol = p.clients.issue("carol", "carol", Kind::Good);
    let up = p.site.upstream(Http::V1).await;
    let tg = p
        .site
        .gateway(
            &up,
            r#"
[tls.client_auth]
ca = "clients-ca.crt"
mode = "optional"
[admin]
require_client_cert = true
allowed_subjects = ["alice@gis.example.com"]
"#,
        )
        .await;
    let none_before = metric(&tg, &verifications("none")).await;
    let Some(r) = curl(&p.site, &tg, "localhost", "/arcgis/admin/", None, &[]).await else {
        return;
    };
    assert_eq!(r.status, 403);
    assert!(
        r.body.contains("needs a verified client certificate"),
        "{}",
        r.body
    );
    let r = curl(&p.site, &tg, "localhost", "/arcgis/rest", None, &[]).await;
    assert_eq!(r.map(|r| r.status), Some(200), "not an admin path");
    let r = curl(
        &p.site,
        &tg,
        "localhost",
        "/arcgis/admin/",
        Some(&carol),
        &[],
    )
    .await;
    let r = r.unwrap();
    assert_eq!(r.status, 403);
    assert!(
        r.body.contains("not allowed administrative access"),
        "{}",
        r.body
    );
    let r = curl(
        &p.site,
        &tg,
        "localhost",
        "/arcgis/admin/",
        Some(&p.good),
        &[],
    )
    .await;
    assert_eq!(r.map(|r| r.status), Some(200));
    assert_eq!(
        up.paths().last().map(String::as_str),
        Some("/arcgis/admin/")
    );
    grows(&tg, &verifications("none"), none_before).await;
}

/// `openssl s_client`'s account of whether the server asked for a
/// certificate, for `server_name`.
async fn asks_for_certificate(site: &Site, tg: &TestGateway, server_name: &str) -> Option<bool> {
    let openssl = real_peer("openssl", &[])?;
    let args = vec![
        "s_client".to_string(),
        "-connect".into(),
        format!("127.0.0.1:{}", tg.https().port()),
        "-servername".into(),
        server_name.into(),
        "-CAfile".into(),
        site.ca.ca_path().display().to_string(),
        "-tls1_2".into(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(openssl)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Acceptable client certificate CA names") {
        Some(true)
    } else if text.contains("No client certificate CA names sent") {
        Some(false)
    } else {
        panic!("s_client said neither:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_sni_entry_with_client_auth_asks_for_certificates() {
    let p = pki();
    let up = p.site.upstream(Http::V1).await;
    let tg = p
        .site
        .gateway(
            &up,
            r#"
[[tls.sni]]
server_name = "admin.localhost"
cert = "admin.crt"
key = "admin.key"
client_auth = { ca = "clients-ca.crt", mode = "required" }
"#,
        )
        .await;
    let Some(admin) = asks_for_certificate(&p.site, &tg, "admin.localhost").await else {
        return;
    };
    assert!(admin, "admin.localhost asks");
    assert_eq!(
        asks_for_certificate(&p.site, &tg, "localhost").await,
        Some(false)
    );
    let r = curl(&p.site, &tg, "admin.localhost", "/", None, &[])
        .await
        .unwrap();
    assert_eq!(r.status, 0, "refused without a certificate");
    let r = curl(&p.site, &tg, "admin.localhost", "/", Some(&p.good), &[]).await;
    assert_eq!(r.map(|r| r.status), Some(200));
    let r = curl(&p.site, &tg, "localhost", "/", None, &[]).await;
    assert_eq!(r.map(|r| r.status), Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_auth_policy_and_the_crl_deadline_are_visible() {
    let p = pki();
    p.clients.write_crl(&[], time::Duration::days(7));
    let up = p.site.upstream(Http::V1).await;
    let overlay = format!("{REQUIRED}crl = [\"clients.crl\"]\n");
    let tg = p.site.gateway(&up, &overlay).await;
    let metrics = tg
        .metrics_with("gisgate_crl_next_update_timestamp_seconds{file=")
        .await;
    assert!(metrics.contains("clients.crl\"}"), "{metrics}");
    let (status, _, body) =
        plain_request(tg.observe.unwrap(), "GET", "/security/config?f=json", &[]).await;
    assert_eq!(status, 200);
    let config: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let auth = &config["gisgate"]["clientAuth"];
    assert_eq!(auth["default"]["mode"], "required");
    assert_eq!(auth["forwardHeader"], "x-ssl-client-cert");
    assert!(auth["crls"][0]["nextUpdate"].as_i64().unwrap() > 0);
}

/// Decodes `%XX` escapes.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn check_warns_of_a_crl_past_its_next_update_and_shows_the_policy() {
    let p = pki();
    // DER this time, a day past its nextUpdate.
    let stale = p.clients.crl(&[], -time::Duration::days(1));
    std::fs::write(p.site.path("stale.crl"), stale.der()).unwrap();
    let config = p.site.config(
        dead_addr(),
        r#"
[tls.client_auth]
ca = "clients-ca.crt"
mode = "optional"
crl = ["stale.crl"]
[admin]
require_client_cert = true
"#,
    );
    let path = p.site.write_config(&config);
    let (report, valid) = gisgate::check::report(&path, None);
    assert!(valid, "{report}");
    assert!(
        report.problems.contains("stale.crl is past its nextUpdate"),
        "{report}"
    );
    assert!(
        report
            .summary
            .contains("client certs     default optional (CA "),
        "{report}"
    );
    assert!(
        report
            .summary
            .contains("admin paths need a verified certificate"),
        "{report}"
    );
}

#[test]
fn a_certificate_policy_no_client_can_meet_is_refused() {
    let p = pki();
    let config = p
        .site
        .config(dead_addr(), "[admin]\nrequire_client_cert = true\n");
    let path = p.site.write_config(&config);
    let err = gisgate::config::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("admin.require_client_cert: no client ever presents a certificate"),
        "{err}"
    );
    let config = p
        .site
        .config(dead_addr(), "[tls.client_auth]\nmode = \"required\"\n");
    let path = p.site.write_config(&config);
    let err = gisgate::config::load(&path).unwrap_err().to_string();
    assert!(err.contains("tls.client_auth.ca: is required"), "{err}");
    let config = p.site.config(
        dead_addr(),
        "[tls.client_auth]\nca = \"clients-ca.crt\"\nmode = \"optional\"\nforward_header = \"X-Forwarded-For\"\n",
    );
    let path = p.site.write_config(&config);
    let err = gisgate::config::load(&path).unwrap_err().to_string();
    assert!(
        err.contains(
            "tls.client_auth.forward_header: \"X-Forwarded-For\" is a header the gateway sets"
        ),
        "{err}"
    );
}

/// One HTTP/1.1 request through `openssl s_client` as `server_name`, with
/// an optional client certificate; the response's status, 0 when none came.
async fn s_client_status(
    site: &Site,
    tg: &TestGateway,
    server_name: &str,
    client: Option<&Client>,
) -> Option<u16> {
    let openssl = real_peer("openssl", &[])?;
    let mut args = vec![
        "s_client".to_string(),
        "-quiet".into(),
        "-connect".into(),
        format!("127.0.0.1:{}", tg.https().port()),
        "-servername".into(),
        server_name.into(),
        "-CAfile".into(),
        site.ca.ca_path().display().to_string(),
    ];
    if let Some(c) = client {
        args.extend([
            "-cert".into(),
            c.cert.display().to_string(),
            "-key".into(),
            c.key.display().to_string(),
        ]);
    }
    let request = format!("GET / HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n");
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new(openssl)
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(request.as_bytes());
        // stdin stays open until the server closes: s_client would
        // otherwise end the connection before the response.
        let out = child.wait_with_output().unwrap();
        drop(stdin);
        out
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_gets_through_only_with_a_good_certificate() {
    let p = pki();
    let other = ClientCa::new(p.site.dir.path(), "other");
    let stranger = other.issue("stranger", "mallory", Kind::Good);
    let up = p.site.upstream(Http::V1).await;
    let tg = p.site.gateway(&up, REQUIRED).await;
    let Some(status) = s_client_status(&p.site, &tg, "localhost", Some(&p.good)).await else {
        return;
    };
    assert_eq!(status, 200);
    assert_eq!(
        s_client_status(&p.site, &tg, "localhost", None).await,
        Some(0)
    );
    assert_eq!(
        s_client_status(&p.site, &tg, "localhost", Some(&stranger)).await,
        Some(0)
    );
}
