//! The gateway core: HTTPS in, HTTPS out, what reaches the upstream, and
//! how failures look to a client.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_client_is_proxied_to_the_upstream() {
    let env = Env::new().upstream(Http::V2).start().await;
    let r = env.get("/arcgis/rest/info?f=json").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, Bytes::from_static(b"{\"ok\":true}"));
    assert_eq!(r.version, http::Version::HTTP_11);
    let seen = env.upstream.last();
    assert_eq!(seen.path, "/arcgis/rest/info");
    assert_eq!(seen.query.as_deref(), Some("f=json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_client_reaches_an_http1_upstream_and_back() {
    let env = Env::new().start().await;
    let r = env
        .request(Http::V2, get("/arcgis/rest/services?f=json", &[]))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(env.upstream.last().version, http::Version::HTTP_11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_offering_both_protocols_gets_http1_with_host_kept() {
    let env = Env::new().upstream(Http::V2).start().await;
    let r = env.request(Http::V2, get("/x", &[])).await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = env.upstream.last();
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.headers["host"], "localhost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_only_upstream_gets_http2_with_the_client_host_as_authority() {
    let site = Site::new();
    let up = TestUpstream::start_h2_only(&site.upstream_cert).await;
    let tg = site.gateway(&up, "").await;
    for _ in 0..3 {
        let mut req = get("/arcgis/rest/info", &[("host", "gis.example.com:8443")]);
        *req.uri_mut() = "/arcgis/rest/info".parse().unwrap();
        let r = https_request(&site, tg.https(), false, req).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    up.last().assert_http2_for_host("gis.example.com:8443");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_reach_the_upstream_and_host_is_kept() {
    let env = Env::new().start().await;
    let req = get(
        "/arcgis/rest/info",
        &[
            ("host", "gis.example.com:8443"),
            ("x-forwarded-for", "6.6.6.6"),
            ("connection", "x-drop-me"),
            ("x-drop-me", "1"),
            ("keep-alive", "timeout=5"),
            ("x-keep-me", "1"),
            ("x-original-url", "/arcgis/admin"),
        ],
    );
    let mut req = req;
    *req.uri_mut() = "/arcgis/rest/info".parse().unwrap();
    let r = env.request(Http::V1, req).await;
    assert_eq!(r.status, StatusCode::OK);
    let h = env.upstream.last().headers;
    assert_eq!(h["host"], "gis.example.com:8443");
    assert_eq!(
        h["x-forwarded-for"], "127.0.0.1",
        "a forged XFF from an untrusted peer is replaced"
    );
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "gis.example.com:8443");
    assert_eq!(h["x-forwarded-port"], "8443");
    assert!(
        !h.contains_key("x-drop-me"),
        "headers named in Connection are hop-by-hop"
    );
    assert!(!h.contains_key("keep-alive"));
    assert!(!h.contains_key("connection"));
    assert_eq!(h["x-keep-me"], "1");
    assert!(
        !h.contains_key("x-original-url"),
        "path-override headers never reach the upstream"
    );
    // and on the way back
    assert!(!r.headers.contains_key("x-secret-hop"));
    assert_eq!(r.headers["x-upstream"], "yes");
}

/// Headers in which a client could name an address of its choosing; the
/// GIS server must only ever read the gateway's X-Forwarded-For.
const CLIENT_ADDRESS_HEADERS: [&str; 9] = [
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "cf-connecting-ip",
    "x-cluster-client-ip",
    "fastly-client-ip",
    "x-originating-ip",
    "client-ip",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_supplied_address_headers_never_reach_the_upstream() {
    let env = Env::new().start().await;
    let forged: Vec<(&str, &str)> = CLIENT_ADDRESS_HEADERS
        .iter()
        .map(|name| (*name, "10.9.9.9"))
        .chain([
            ("forwarded", "for=10.9.9.9;proto=https"),
            ("X-Real-IP", "10.9.9.10"),
            ("x-keep-me", "1"),
        ])
        .collect();
    for h2 in [false, true] {
        let r = https_request(
            &env.site,
            env.https(),
            h2,
            get("/arcgis/rest/info", &forged),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        let h = env.upstream.last().headers;
        for name in CLIENT_ADDRESS_HEADERS {
            assert!(
                !h.contains_key(name),
                "{name} reached the upstream (h2: {h2})"
            );
        }
        assert_eq!(h["x-forwarded-for"], "127.0.0.1", "the peer, nothing else");
        assert_eq!(h["x-keep-me"], "1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_forwarded_for_is_appended() {
    let env = Env::new()
        .config("[client_ip]\ntrusted_proxies = [\"127.0.0.0/8\"]\n")
        .start()
        .await;
    let r = env
        .request(Http::V1, get("/x", &[("x-forwarded-for", "203.0.113.5")]))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        env.upstream.last().headers["x-forwarded-for"],
        "203.0.113.5, 127.0.0.1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_location_is_rewritten_to_the_public_origin() {
    let env = Env::new().start().await;
    let public = format!("localhost:{}", env.https().port());
    let mut req = get("/redirect", &[("host", &public)]);
    *req.uri_mut() = "/redirect".parse().unwrap();
    let r = env.request(Http::V1, req).await;
    assert_eq!(r.status, StatusCode::FOUND);
    let expected = format!("https://{public}/arcgis/rest/services?f=json");
    assert_eq!(r.headers["location"], expected.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_is_502() {
    let env = Env::new().start().await;
    // A port where nothing listens: bind one and drop it.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let text = env.site.config(dead, "");
    std::fs::write(&env.gateway.config_path, text).unwrap();
    env.gateway.gw.reload().await.unwrap();
    let r = env.get("/x").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(
        !String::from_utf8_lossy(&r.body).contains("127.0.0.1"),
        "error bodies do not leak addresses"
    );
    assert!(env
        .gateway
        .metrics()
        .await
        .contains("gisgate_upstream_errors_total{kind=\"connect\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_signed_by_another_ca_is_502() {
    let site = Site::new();
    let other = TestCa::new(&site.path(""));
    // The upstream presents a certificate from a CA the gateway does not trust.
    let foreign = other.issue(&["localhost"]);
    std::fs::write(site.path("ca.crt"), &site.ca.cert_pem).unwrap();
    let up = TestUpstream::start(&foreign, Http::V1).await;
    let tg = site.gateway(&up, "").await;
    let r = https_get(&site, &tg, "/x", false).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        up.count(),
        0,
        "no request was sent over an untrusted connection"
    );
    let m = tg.metrics().await;
    assert!(
        m.contains("gisgate_upstream_errors_total{kind=\"tls\"}"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_response_timeout_is_504() {
    let env = Env::new()
        .config("[upstream]\nresponse_timeout = \"200ms\"\n")
        .start()
        .await;
    let r = env.get("/delay/2000").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(env
        .gateway
        .metrics()
        .await
        .contains("gisgate_upstream_errors_total{kind=\"timeout\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_alone_trusts_a_self_signed_cn_only_sha1_certificate() {
    let site = Site::new();
    let (chain, key, der) = sha1_cn_only_cert(&site);
    let up = TestUpstream::start_with(chain, key, Http::V1).await;
    let pin = gisgate::tls::certs::colon_hex(&gisgate::tls::certs::sha256_fingerprint(&der));
    // No `ca`: the pin alone decides (the base config's CA line removed).
    let overlay = format!("[upstream]\nserver_name = \"gis.internal\"\npin_sha256 = [\"{pin}\"]\n");
    let text = site
        .config(up.addr, &overlay)
        .replace("ca = \"ca.crt\"\n", "");
    let tg = site.gateway_from_text(&text).await;
    let r = https_request(&site, tg.https(), false, get("/arcgis/rest/info", &[])).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pin_is_refused_with_502() {
    let site = Site::new();
    let (chain, key, _) = sha1_cn_only_cert(&site);
    let up = TestUpstream::start_with(chain, key, Http::V1).await;
    let wrong = "00".repeat(32);
    let text = site
        .config(
            up.addr,
            &format!("[upstream]\npin_sha256 = [\"{wrong}\"]\nserver_name = \"gis.internal\"\n"),
        )
        .replace("ca = \"ca.crt\"\n", "");
    let tg = site.gateway_from_text(&text).await;
    let r = https_request(&site, tg.https(), false, get("/x", &[])).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_and_pin_must_both_pass() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let right =
        gisgate::tls::certs::colon_hex(&gisgate::tls::certs::sha256_fingerprint(&up.cert_der));
    let tg = site
        .gateway(&up, &format!("[upstream]\npin_sha256 = [\"{right}\"]\n"))
        .await;
    assert_eq!(
        https_get(&site, &tg, "/x", false).await.status,
        StatusCode::OK
    );

    // Same CA, wrong pin: refused although the chain is fine.
    let text = site.config(
        up.addr,
        &format!("[upstream]\npin_sha256 = [\"{}\"]\n", "ab".repeat(32)),
    );
    std::fs::write(&tg.config_path, text).unwrap();
    tg.gw.reload().await.unwrap();
    assert_eq!(
        https_get(&site, &tg, "/x", false).await.status,
        StatusCode::BAD_GATEWAY
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_name_override_is_used_for_verification() {
    let site = Site::new();
    let named = site.ca.issue(&["gis.internal"]);
    let up = TestUpstream::start(&named, Http::V1).await;
    let tg = site
        .gateway(&up, "[upstream]\nserver_name = \"gis.internal\"\n")
        .await;
    assert_eq!(
        https_get(&site, &tg, "/x", false).await.status,
        StatusCode::OK
    );

    // Without the override the name is `localhost`, which the cert lacks.
    let text = site.config(up.addr, "");
    std::fs::write(&tg.config_path, text).unwrap();
    tg.gw.reload().await.unwrap();
    assert_eq!(
        https_get(&site, &tg, "/x", false).await.status,
        StatusCode::BAD_GATEWAY
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways() {
    let env = Env::new().start().await;
    const SIZE: usize = 64 * 1024 * 1024;
    let down = env.get(&format!("/big/{SIZE}")).await;
    assert_eq!(down.status, StatusCode::OK);
    assert_eq!(down.body.len(), SIZE);
    let upload = Request::builder()
        .method("POST")
        .uri("https://localhost/upload")
        .body(Full::new(Bytes::from(vec![7u8; SIZE])))
        .unwrap();
    let r = env.request(Http::V2, upload).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, Bytes::from(SIZE.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_is_passed_through_and_echoes() {
    let env = Env::new().start().await;
    websocket_echoes(&env.site, &env.gateway, &env.upstream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_takes_http1_when_http2_is_preferred() {
    let env = Env::new()
        .upstream(Http::V2)
        .config("[upstream]\nprefer_http2 = true\n")
        .start()
        .await;
    websocket_echoes(&env.site, &env.gateway, &env.upstream).await;
    assert_eq!(env.upstream.last().version, http::Version::HTTP_11);
    // Other requests still go over HTTP/2.
    assert_eq!(env.get("/x").await.status, StatusCode::OK);
    assert_eq!(env.upstream.last().version, http::Version::HTTP_2);
}

/// A WebSocket handshake through the gateway, then bytes echoed back.
async fn websocket_echoes(site: &Site, tg: &TestGateway, up: &TestUpstream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = tls_connect(tg.https(), client_config(site.ca.roots(), &[b"http/1.1"]))
        .await
        .unwrap();
    tls.write_all(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    tls.write_all(b"hello stream service").await.unwrap();
    let mut echoed = [0u8; 20];
    tls.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"hello stream service");
    assert_eq!(up.last().headers["upgrade"], "websocket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_a_client_hello_closes_only_that_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = Env::new().start().await;
    let mut tcp = tokio::net::TcpStream::connect(env.https()).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x16\x03\x01garbage")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert_eq!(env.get("/x").await.status, StatusCode::OK);
    env.metrics_with("gisgate_tls_handshake_errors_total{reason=")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431() {
    let env = Env::new()
        .config("[limits]\nmax_header_bytes = 8192\n")
        .start()
        .await;
    let big = "a".repeat(10_000);
    let raw = env
        .raw_https(&format!(
            "GET /x HTTP/1.1\r\nHost: localhost\r\nX-Big: {big}\r\n\r\n"
        ))
        .await;
    assert_eq!(status_of(&raw), 431, "{raw}");
    assert_eq!(env.upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_client_is_cut_off_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = Env::new()
        .config("[limits]\nheader_read_timeout = \"300ms\"\n")
        .start()
        .await;
    let mut tls = tls_connect(
        env.https(),
        client_config(env.site.ca.roots(), &[b"http/1.1"]),
    )
    .await
    .unwrap();
    tls.write_all(b"GET /x HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    // Keep dribbling header bytes; the gateway must hang up anyway.
    let mut closed = false;
    for _ in 0..100 {
        if tls.write_all(b"X-A: b\r\n").await.is_err() {
            closed = true;
            break;
        }
        let mut b = [0u8; 64];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(50), tls.read(&mut b)).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "the slow client was never disconnected");
    assert_eq!(env.upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connection_survives_past_the_header_timeout() {
    let env = Env::new()
        .config("[limits]\nheader_read_timeout = \"200ms\"\nidle_timeout = \"30s\"\n")
        .start()
        .await;
    let mut sender = keep_alive_connection(&env.site, env.https()).await;
    let r = request_on(&mut sender, get("/x", &[("host", "localhost")]))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = request_on(&mut sender, get("/x", &[("host", "localhost")]))
        .await
        .unwrap();
    assert_eq!(
        r.status,
        StatusCode::OK,
        "idle time between requests is not header time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_in_flight_request_finish_and_refuses_new_connections() {
    let env = Env::new().start().await;
    let addr = env.https();
    let in_flight = {
        let site_ca = env.site.ca.roots();
        tokio::spawn(async move {
            let tls = tls_connect(addr, client_config(site_ca, &[b"http/1.1"]))
                .await
                .unwrap();
            send_on(tls, false, get("/delay/700", &[("host", "localhost")])).await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let gw = env.gateway.gw.clone();
    let shutdown = tokio::spawn(async move { gw.shutdown().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!env.gateway.gw.is_ready(), "/readyz reports draining");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "new connections are refused while draining"
    );
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, Bytes::from_static(b"delayed"));
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .unwrap()
        .unwrap();
}

/// A self-signed RSA certificate with only a CN (no SAN) and a SHA-1
/// signature, the way old GIS server installs ship: made with openssl.
fn sha1_cn_only_cert(
    site: &Site,
) -> (
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
    rustls::pki_types::CertificateDer<'static>,
) {
    use rustls::pki_types::pem::PemObject;
    let (crt, key) = (site.path("sha1.crt"), site.path("sha1.key"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-sha1",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=gis.internal",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is installed (.ci/run installs it)");
    assert!(status.success());
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&crt)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("sha1WithRSAEncryption"), "{text}");
    assert!(!text.contains("Subject Alternative Name"), "{text}");
    let chain: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(&crt)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&key).unwrap();
    let der = chain[0].clone();
    (chain, key, der)
}

/// Opens a TLS connection and makes one request on it, keeping it open.
async fn served_connection(
    site: &Site,
    addr: std::net::SocketAddr,
) -> (
    hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let tls = tls_connect(addr, client_config(site.ca.roots(), &[b"http/1.1"]))
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let r = sender
        .send_request(get("/x", &[("host", "localhost")]))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    (sender, conn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_are_served_and_one_more_waits_until_a_slot_frees() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    // A long header timeout: the slot must free because the client closed,
    // not because the gateway gave up on an idle connection.
    let tg = site
        .gateway(
            &up,
            "[limits]\nmax_connections = 2\nheader_read_timeout = \"30s\"\n",
        )
        .await;
    // Exactly the limit is served, although the HTTP listener shares it.
    let (first, first_conn) = served_connection(&site, tg.https()).await;
    let _second = served_connection(&site, tg.https()).await;
    let addr = tg.https();
    let third = tokio::spawn(tls_connect(
        addr,
        client_config(site.ca.roots(), &[b"http/1.1"]),
    ));
    // Beyond the limit a connection waits: neither refused nor served.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !third.is_finished(),
        "a third connection was handled while two were open"
    );
    drop(first);
    first_conn.abort();
    let third = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("the waiting connection is served once a client closes")
        .unwrap()
        .expect("TLS handshake");
    let r = send_on(third, false, get("/x", &[("host", "localhost")])).await;
    assert_eq!(r.status, StatusCode::OK);
}
