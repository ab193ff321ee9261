//! What operators look at (SPEC §6): each metric caused and scraped,
//! bounded labels, health, and the ArcGIS-shaped resources.

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;

async fn observe(tg: &TestGateway, path: &str) -> (StatusCode, String) {
    let (status, _, body) = plain_request(tg.observe.unwrap(), "GET", path, &[]).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_outcome_is_counted_with_listener_route_and_status() {
    let env = Env::new().config("[admin]\nallowed_ips = [\"10.9.9.9/32\"]\n[cors]\nallowed_origins = [\"https://app.example.com\"]\n").start().await;
    assert_eq!(env.get("/arcgis/rest/info").await.status, StatusCode::OK);
    assert_eq!(env.get("/arcgis/admin").await.status, StatusCode::FORBIDDEN);
    let (redirect, _, _) = plain_request(env.http(), "GET", "/arcgis/rest/info", &[]).await;
    assert_eq!(redirect, StatusCode::PERMANENT_REDIRECT);
    let preflight = http::Request::builder()
        .method("OPTIONS")
        .uri("https://localhost/arcgis/rest/services")
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(
        env.request(Http::V1, preflight).await.status,
        StatusCode::NO_CONTENT
    );
    let raw = env
        .raw_https("GET /a/%2561 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await;
    assert_eq!(status_of(&raw), 400);

    let m = env.metrics().await;
    for line in [
        "gisgate_requests_total{listener=\"https\",route=\"proxy\",status=\"200\"}",
        "gisgate_requests_total{listener=\"https\",route=\"admin_denied\",status=\"403\"}",
        "gisgate_requests_total{listener=\"http\",route=\"redirect\",status=\"308\"}",
        "gisgate_requests_total{listener=\"https\",route=\"preflight\",status=\"204\"}",
        "gisgate_requests_total{listener=\"https\",route=\"rejected\",status=\"400\"}",
        "gisgate_upstream_requests_total{status=\"200\"}",
        "gisgate_request_duration_seconds_bucket{listener=\"https\",route=\"proxy\",le=\"0.005\"}",
        "gisgate_upstream_duration_seconds_bucket{le=\"0.1\"}",
        "gisgate_tls_handshakes_total{version=\"TLSv1.3\",cipher=\"TLS_AES_256_GCM_SHA384\",group=\"X25519\"}",
        "gisgate_connections_active{listener=\"https\"}",
        "gisgate_build_info{version=\"",
        "gisgate_config_last_reload_successful",
        "gisgate_config_last_reload_success_timestamp_seconds",
        "gisgate_config_reloads_total{result=\"failure\"}",
        "# TYPE gisgate_request_duration_seconds histogram",
    ] {
        assert!(m.contains(line), "missing {line} in\n{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_ok_and_readiness_turns_503_while_draining() {
    let env = Env::new()
        .config("[limits]\nshutdown_grace = \"2s\"\n")
        .start()
        .await;
    assert_eq!(observe(&env.gateway, "/healthz").await.0, StatusCode::OK);
    assert_eq!(observe(&env.gateway, "/readyz").await.0, StatusCode::OK);
    // Hold a request in flight so the drain lasts long enough to look.
    let addr = env.https();
    let roots = env.site.ca.roots();
    let slow = tokio::spawn(async move {
        let tls = tls_connect(addr, client_config(roots, &[b"http/1.1"]))
            .await
            .unwrap();
        send_on(tls, false, get("/delay/1000", &[("host", "localhost")])).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let gw = env.gateway.gw.clone();
    let drain = tokio::spawn(async move { gw.shutdown().await });
    eventually(Duration::from_secs(5), || async {
        observe(&env.gateway, "/readyz").await.0 == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert_eq!(slow.await.unwrap().status, StatusCode::OK);
    drain.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_config_reports_the_loaded_policy() {
    let env = Env::new().config(r#"
[tls]
protocols = "TLSv1.2,TLSv1.3"
cipher_suites = "TLS_AES_128_GCM_SHA256, TLS_RSA_WITH_AES_128_CBC_SHA, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
[hsts]
enabled = true
[admin]
allowed_ips = ["10.0.0.0/8", "192.168.1.5"]
direct_access = false
[cors]
allow_private_network = true
"#).start().await;
    let (status, body) = observe(&env.gateway, "/security/config?f=json").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Protocol"], "HTTPS");
    assert_eq!(v["sslEnabled"], true);
    assert_eq!(v["httpEnabled"], false);
    assert_eq!(v["HSTSEnabled"], true);
    assert_eq!(v["httpsProtocols"], "TLSv1.2,TLSv1.3");
    assert_eq!(
        v["cipherSuites"], "TLS_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "only what is really offered: the CBC suite was skipped"
    );
    assert_eq!(v["allowedAdminAccessIPs"], "10.0.0.0/8,192.168.1.5/32");
    assert_eq!(v["allowDirectAccess"], false);
    assert_eq!(v["allowInternetCORSAccess"], true);
    let text = body.to_lowercase();
    assert!(
        !text.contains("key") && !text.contains("begin"),
        "no secrets: {body}"
    );
    let (_, pretty) = observe(&env.gateway, "/security/config?f=pjson").await;
    assert!(pretty.contains("\n  \"Protocol\": \"HTTPS\""), "{pretty}");
    let (_, html) = observe(&env.gateway, "/security/config?f=html").await;
    assert!(html.contains("<th>Protocol</th><td>HTTPS</td>"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_certificate_resource_matches_openssl_fingerprints() {
    let env = Env::new().cert("maps", &["maps.example.com"]).config("[[tls.sni]]\nserver_name = \"maps.example.com\"\ncert = \"maps.crt\"\nkey = \"maps.key\"\n").start().await;
    let (_, list) = observe(&env.gateway, "/sslcertificates?f=json").await;
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(
        list["certificates"],
        serde_json::json!(["default", "maps.example.com"])
    );

    let (status, body) = observe(&env.gateway, "/sslcertificates/default?f=json").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    for field in [
        "Alias name",
        "Entry type",
        "Certificate chain length",
        "Owner",
        "Issuer",
        "Serial number",
        "Valid from",
        "MD5",
        "SHA1",
        "SHA256",
        "Signature algorithm name",
        "Version",
    ] {
        assert!(v.get(field).is_some(), "missing {field}: {body}");
    }
    assert_eq!(v["Alias name"], "default");
    assert_eq!(v["Entry type"], "PrivateKeyEntry");
    assert_eq!(v["Version"], "3");
    assert_eq!(v["Signature algorithm name"], "SHA256withECDSA");
    assert!(v["Valid from"].as_str().unwrap().contains(" until: "));
    let der = &env.site.gateway_cert.der;
    use sha2::Digest;
    assert_eq!(
        v["SHA256"],
        gisgate::tls::certs::colon_hex(&sha2::Sha256::digest(der))
    );
    assert_eq!(
        v["SHA1"],
        gisgate::tls::certs::colon_hex(&sha1::Sha1::digest(der))
    );
    assert_eq!(
        v["MD5"],
        gisgate::tls::certs::colon_hex(&md5::Md5::digest(der))
    );
    for (alg, field) in [("-sha256", "SHA256"), ("-sha1", "SHA1"), ("-md5", "MD5")] {
        let out = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", alg, "-in"])
            .arg(env.site.path("gateway.crt"))
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&out.stdout);
        let value = printed.trim().split_once('=').unwrap().1;
        assert_eq!(v[field], value, "{alg}");
    }
    let (status, _) = observe(&env.gateway, "/sslcertificates/maps.example.com").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        observe(&env.gateway, "/sslcertificates/nope").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_expiry_is_exported_for_every_certificate_and_follows_rotation() {
    let site = Site::new();
    let sni = site.ca.issue(&["maps.example.com"]);
    site.ca.write("maps", &sni);
    let up = site.upstream(Http::V1).await;
    let overlay = "[[tls.sni]]\nserver_name = \"maps.example.com\"\ncert = \"maps.crt\"\nkey = \"maps.key\"\n";
    let tg = site.gateway(&up, overlay).await;
    let serial = |issued: &Issued| {
        gisgate::tls::certs::cert_facts(&issued.der)
            .unwrap()
            .serial_number
    };
    let m = tg.metrics().await;
    let default_line = format!(
        "gisgate_certificate_expiry_timestamp_seconds{{name=\"default\",serial=\"{}\"}}",
        serial(&site.gateway_cert)
    );
    assert!(m.contains(&default_line), "{m}");
    assert!(
        m.contains(&format!(
            "{{name=\"maps.example.com\",serial=\"{}\"}}",
            serial(&sni)
        )),
        "{m}"
    );

    let rotated = site.ca.issue(&["localhost", "127.0.0.1"]);
    site.ca.write("gateway", &rotated);
    tg.gw.reload().await.unwrap();
    let m = tg.metrics().await;
    assert!(
        m.contains(&format!(
            "{{name=\"default\",serial=\"{}\"}}",
            serial(&rotated)
        )),
        "{m}"
    );
    assert!(
        !m.contains(&default_line),
        "the old certificate's series is gone"
    );
}
