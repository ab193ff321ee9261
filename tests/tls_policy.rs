//! The client-facing TLS policy (issue 3), through real TLS clients on
//! loopback: versions, cipher suites, the certificate chosen by SNI,
//! session resumption, and what the observability listener reports.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use http::StatusCode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CipherSuite, ClientConfig, DigitallySignedStruct, HandshakeKind, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// ArcGIS Server's default `cipherSuites`, as pasted from its admin API.
const ARCGIS_DEFAULT_SUITES: &str = "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384, TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, TLS_RSA_WITH_AES_256_GCM_SHA384, TLS_RSA_WITH_AES_256_CBC_SHA256, TLS_RSA_WITH_AES_256_CBC_SHA, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256, TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, TLS_RSA_WITH_AES_128_GCM_SHA256, TLS_RSA_WITH_AES_128_CBC_SHA256, TLS_RSA_WITH_AES_128_CBC_SHA, TLS_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384, TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA";

/// The suites of that list the TLS library implements and an ECDSA
/// certificate (the test site's) can serve, in the list's order.
const ARCGIS_DEFAULT_OFFERED: [&str; 4] = [
    "TLS_AES_256_GCM_SHA384",
    "TLS_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
];

/// Two listed suites: one per TLS version, both usable with the ECDSA
/// gateway certificate.
const TWO_SUITES: &str = "[tls]\ncipher_suites = [\"TLS_AES_128_GCM_SHA256\", \"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\"]\n";

/// A client provider offering only `suites` (in that order).
fn offering(suites: &[CipherSuite]) -> Arc<CryptoProvider> {
    let mut p = aws_lc_rs::default_provider();
    p.cipher_suites = suites
        .iter()
        .map(|want| {
            *aws_lc_rs::ALL_CIPHER_SUITES
                .iter()
                .find(|s| s.suite() == *want)
                .expect("the library implements the suite")
        })
        .collect();
    Arc::new(p)
}

/// A client trusting the site CA, with a given provider and versions.
fn client(
    site: &Site,
    provider: Arc<CryptoProvider>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ClientConfig {
    let mut c = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("client versions fit its suites")
        .with_root_certificates(site.ca.roots())
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    c
}

/// A TLS connection to `addr` presenting `name` (SNI is sent only for DNS
/// names, never for IP addresses).
async fn connect_as(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(config)
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await
}

fn negotiated(tls: &TlsStream<TcpStream>) -> (rustls::ProtocolVersion, CipherSuite) {
    let conn = tls.get_ref().1;
    (
        conn.protocol_version().expect("handshake done"),
        conn.negotiated_cipher_suite()
            .expect("handshake done")
            .suite(),
    )
}

fn leaf(tls: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().expect("server certs")[0].clone()
}

/// A request over an established connection, so the server's post-handshake
/// messages (TLS 1.3 session tickets) are read.
async fn one_request(tls: TlsStream<TcpStream>) -> StatusCode {
    send_on(tls, false, get("/x", &[("host", "localhost")]))
        .await
        .status
}

async fn security_config(tg: &TestGateway) -> serde_json::Value {
    let (status, _, body) = plain_request(
        tg.observe.expect("observability listener"),
        "GET",
        "/security/config?f=json",
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_slice(&body).expect("JSON body")
}

fn offered_suites(config: &serde_json::Value) -> Vec<String> {
    config["cipherSuites"]
        .as_str()
        .expect("cipherSuites is a string")
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Accepts any server certificate (signatures are still checked), to see
/// which certificate the server picks for a name it has none for.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client that takes whatever certificate the server presents.
fn accept_any_cert_client() -> ClientConfig {
    let p = provider();
    ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(p)))
        .with_no_client_auth()
}

// ---------------------------------------------------------------- versions

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_only_client_is_refused_when_only_tls13_is_enabled() {
    let env = Env::new()
        .config("[tls]\nprotocols = [\"TLSv1.3\"]\n")
        .start()
        .await;
    let c = client(&env.site, provider(), TLS12);
    assert!(connect_as(env.https(), Arc::new(c), "localhost")
        .await
        .is_err());
    assert_eq!(env.upstream.count(), 0);
    env.metrics_with("gisgate_tls_handshake_errors_total{reason=\"protocol_version\"}")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_only_client_is_refused_when_only_tls12_is_enabled() {
    let env = Env::new()
        .config("[tls]\nprotocols = [\"TLSv1.2\"]\n")
        .start()
        .await;
    let c = client(&env.site, provider(), TLS13);
    assert!(connect_as(env.https(), Arc::new(c), "localhost")
        .await
        .is_err());
    assert_eq!(env.upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_client_is_served_tls12_when_only_tls12_is_enabled() {
    let env = Env::new()
        .config("[tls]\nprotocols = [\"TLSv1.2\"]\n")
        .start()
        .await;
    // A client that would prefer TLS 1.3 gets TLS 1.2.
    let c = client_config(env.site.ca.roots(), &[b"http/1.1"]);
    let tls = connect_as(env.https(), Arc::new(c), "localhost")
        .await
        .unwrap();
    assert_eq!(negotiated(&tls).0, rustls::ProtocolVersion::TLSv1_2);
    assert_eq!(one_request(tls).await, StatusCode::OK);
}

/// A ClientHello record carrying more handshake messages after the
/// ClientHello is refused with an alert, counted, and the gateway serves
/// on. (It once made rustls panic when the alert was taken from it: with
/// the release build's `panic = "abort"` this one record ended the
/// gateway.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hello_carrying_more_messages_is_refused_and_the_gateway_serves_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let env = Env::new().start().await;
    let c = client(&env.site, provider(), TLS13);
    let mut hello = Vec::new();
    rustls::ClientConnection::new(Arc::new(c), ServerName::try_from("localhost").unwrap())
        .unwrap()
        .write_tls(&mut hello)
        .unwrap();
    let body = &hello[5..];
    let mut record = hello[..3].to_vec();
    record.extend_from_slice(&u16::try_from(body.len() * 3).unwrap().to_be_bytes());
    record.extend_from_slice(&[body, body, body].concat());
    let mut tcp = TcpStream::connect(env.https()).await.unwrap();
    tcp.write_all(&record).await.unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    // The last record is a fatal alert (content type 21).
    assert!(
        answer.len() >= 7 && answer[answer.len() - 7] == 21,
        "no alert: {answer:?}"
    );
    env.metrics_with("gisgate_tls_handshake_errors_total{reason=\"malformed\"} 1")
        .await;
    let c = client(&env.site, provider(), TLS13);
    let tls = connect_as(env.https(), Arc::new(c), "localhost")
        .await
        .unwrap();
    assert_eq!(one_request(tls).await, StatusCode::OK);
    assert_eq!(env.upstream.count(), 1);
}

// ---------------------------------------------------------------- suites

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_offering_only_an_unlisted_suite_is_refused() {
    let env = Env::new().config(TWO_SUITES).start().await;
    let c = client(
        &env.site,
        offering(&[CipherSuite::TLS13_AES_256_GCM_SHA384]),
        TLS13,
    );
    assert!(connect_as(env.https(), Arc::new(c), "localhost")
        .await
        .is_err());
    assert_eq!(env.upstream.count(), 0);
    env.metrics_with("gisgate_tls_handshake_errors_total{reason=\"no_shared_cipher\"}")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_client_offering_only_unlisted_suites_is_refused() {
    let env = Env::new().config(TWO_SUITES).start().await;
    let c = client(
        &env.site,
        offering(&[
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ]),
        TLS12,
    );
    assert!(connect_as(env.https(), Arc::new(c), "localhost")
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_client_offering_several_suites_gets_the_listed_one() {
    let env = Env::new().config(TWO_SUITES).start().await;
    let c = client(
        &env.site,
        offering(&[
            CipherSuite::TLS13_AES_256_GCM_SHA384,
            CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
            CipherSuite::TLS13_AES_128_GCM_SHA256,
        ]),
        TLS13,
    );
    let tls = connect_as(env.https(), Arc::new(c), "localhost")
        .await
        .unwrap();
    assert_eq!(
        negotiated(&tls),
        (
            rustls::ProtocolVersion::TLSv1_3,
            CipherSuite::TLS13_AES_128_GCM_SHA256
        )
    );
    assert_eq!(one_request(tls).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_client_offering_several_suites_gets_the_listed_one() {
    let env = Env::new().config(TWO_SUITES).start().await;
    let c = client(
        &env.site,
        offering(&[
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ]),
        TLS12,
    );
    let tls = connect_as(env.https(), Arc::new(c), "localhost")
        .await
        .unwrap();
    assert_eq!(
        negotiated(&tls),
        (
            rustls::ProtocolVersion::TLSv1_2,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_config_lists_exactly_the_configured_suites() {
    let env = Env::new().config(TWO_SUITES).start().await;
    let config = security_config(&env.gateway).await;
    assert_eq!(
        offered_suites(&config),
        [
            "TLS_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
        ]
    );
    assert_eq!(config["httpsProtocols"], "TLSv1.2,TLSv1.3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arcgis_default_suite_list_loads_as_a_toml_array() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let array: Vec<String> = ARCGIS_DEFAULT_SUITES
        .split(", ")
        .map(|s| format!("\"{s}\""))
        .collect();
    let tg = site
        .gateway(
            &up,
            &format!("[tls]\ncipher_suites = [{}]\n", array.join(", ")),
        )
        .await;
    assert_eq!(
        offered_suites(&security_config(&tg).await),
        ARCGIS_DEFAULT_OFFERED
    );
    assert_eq!(
        https_get(&site, &tg, "/x", false).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_config_lists_only_suites_the_loaded_rsa_key_can_serve() {
    let env = Env::new()
        .rsa_cert("gateway", &["localhost", "127.0.0.1"])
        .config(&format!(
            "[tls]\ncipher_suites = \"{ARCGIS_DEFAULT_SUITES}\"\n"
        ))
        .start()
        .await;
    assert_eq!(
        offered_suites(&security_config(&env.gateway).await),
        [
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_AES_256_GCM_SHA384",
            "TLS_AES_128_GCM_SHA256",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arcgis_default_suite_list_loads_as_one_comma_separated_string() {
    let env = Env::new()
        .config(&format!(
            "[tls]\ncipher_suites = \"{ARCGIS_DEFAULT_SUITES}\"\n"
        ))
        .start()
        .await;
    assert_eq!(
        offered_suites(&security_config(&env.gateway).await),
        ARCGIS_DEFAULT_OFFERED
    );
    assert_eq!(env.get("/x").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suites_of_a_disabled_version_are_not_offered() {
    let env = Env::new()
        .config(&format!(
            "[tls]\nprotocols = [\"TLSv1.3\"]\ncipher_suites = \"{ARCGIS_DEFAULT_SUITES}\"\n"
        ))
        .start()
        .await;
    let config = security_config(&env.gateway).await;
    assert_eq!(
        offered_suites(&config),
        ["TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256"]
    );
    assert_eq!(config["httpsProtocols"], "TLSv1.3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_certificate_with_only_ecdsa_tls12_suites_is_a_config_error_naming_cipher_suites() {
    let site = Site::new();
    site.ca.write("rsa", &site.ca.issue_rsa(&["localhost"]));
    let dead: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let path = site.write_config(&site.config(
        dead,
        "[tls]\ncert = \"rsa.crt\"\nkey = \"rsa.key\"\nprotocols = [\"TLSv1.2\"]\ncipher_suites = [\"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\", \"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\"]\n",
    ));
    let settings = gisgate::config::load(&path).expect("valid on its own");
    let sessions = gisgate::tls::server::TlsSessions::new().unwrap();
    let err = match gisgate::live::Live::build(settings, &sessions, None) {
        Ok(_) => panic!("an RSA key cannot sign ECDHE_ECDSA handshakes"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("tls.cipher_suites"), "{err}");
    assert!(err.contains("gateway.toml:"), "{err}");
    let line = err
        .split("gateway.toml:")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse::<usize>().ok());
    assert!(line.is_some(), "the error names a line: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_certificate_is_served_with_an_ecdhe_rsa_suite() {
    let env = Env::new().rsa_cert("rsa", &["localhost"]).config("[tls]\ncert = \"rsa.crt\"\nkey = \"rsa.key\"\nprotocols = [\"TLSv1.2\"]\ncipher_suites = [\"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\", \"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\"]\n").start().await;
    let tls = connect_as(
        env.https(),
        Arc::new(client(&env.site, provider(), TLS12)),
        "localhost",
    )
    .await
    .unwrap();
    assert_eq!(
        negotiated(&tls).1,
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    );
    assert_eq!(leaf(&tls), env.cert("rsa").der);
}

// ---------------------------------------------------------------- SNI

/// A gateway with two extra certificates chosen by SNI: `a` (ECDSA) and
/// `b` (RSA).
async fn sni_site() -> Running {
    Env::new()
        .cert("a", &["a.example.com"])
        .rsa_cert("b", &["b.example.com"])
        .config(
            "[[tls.sni]]\nserver_name = \"a.example.com\"\ncert = \"a.crt\"\nkey = \"a.key\"\n\
             [[tls.sni]]\nserver_name = \"b.example.com\"\ncert = \"b.crt\"\nkey = \"b.key\"\n",
        )
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_name_picks_its_own_certificate() {
    let env = sni_site().await;
    let c = Arc::new(client_config(env.site.ca.roots(), &[b"http/1.1"]));
    let tls = connect_as(env.https(), c.clone(), "a.example.com")
        .await
        .unwrap();
    assert_eq!(leaf(&tls), env.cert("a").der);
    let tls = connect_as(env.https(), c, "b.example.com").await.unwrap();
    assert_eq!(leaf(&tls), env.cert("b").der);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_name_is_matched_case_insensitively() {
    let env = sni_site().await;
    let c = Arc::new(client_config(env.site.ca.roots(), &[b"http/1.1"]));
    let tls = connect_as(env.https(), c, "A.Example.COM").await.unwrap();
    assert_eq!(leaf(&tls), env.cert("a").der);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_sni_gets_the_default_certificate() {
    let env = sni_site().await;
    // rustls sends no SNI when connecting to an IP address.
    let c = Arc::new(client_config(env.site.ca.roots(), &[b"http/1.1"]));
    let tls = connect_as(env.https(), c, "127.0.0.1").await.unwrap();
    assert_eq!(leaf(&tls), env.site.gateway_cert.der);
    assert_eq!(one_request(tls).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_with_sni_disabled_gets_the_default_certificate() {
    let env = sni_site().await;
    let mut c = client_config(env.site.ca.roots(), &[b"http/1.1"]);
    c.enable_sni = false;
    let tls = connect_as(env.https(), Arc::new(c), "localhost")
        .await
        .unwrap();
    assert_eq!(leaf(&tls), env.site.gateway_cert.der);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_with_an_unknown_sni_name_gets_the_default_certificate() {
    let env = sni_site().await;
    let c = accept_any_cert_client();
    let tls = connect_as(env.https(), Arc::new(c), "c.example.com")
        .await
        .unwrap();
    assert_eq!(leaf(&tls), env.site.gateway_cert.der);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_sni_entry_covers_one_label() {
    let env = Env::new().cert("w", &["*.maps.example.com"]).config("[[tls.sni]]\nserver_name = \"*.maps.example.com\"\ncert = \"w.crt\"\nkey = \"w.key\"\n").start().await;
    let c = Arc::new(client_config(env.site.ca.roots(), &[b"http/1.1"]));
    let tls = connect_as(env.https(), c, "tiles.maps.example.com")
        .await
        .unwrap();
    assert_eq!(leaf(&tls), env.cert("w").der);
}

// ---------------------------------------------------------------- metrics, resumption

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_handshake_is_counted_by_version_and_cipher() {
    let env = Env::new().start().await;
    let c = client(
        &env.site,
        offering(&[CipherSuite::TLS13_AES_128_GCM_SHA256]),
        TLS13,
    );
    let tls = connect_as(env.https(), Arc::new(c), "localhost")
        .await
        .unwrap();
    assert_eq!(one_request(tls).await, StatusCode::OK);
    let m = env.metrics().await;
    assert!(
        m.lines().any(|l| l.starts_with(
            "gisgate_tls_handshakes_total{version=\"TLSv1.3\",cipher=\"TLS_AES_128_GCM_SHA256\",group=\""
        )),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_session_is_resumed_by_a_second_connection() {
    let env = Env::new().start().await;
    let c = Arc::new(client(&env.site, provider(), TLS13));
    let first = connect_as(env.https(), c.clone(), "localhost")
        .await
        .unwrap();
    assert_eq!(
        first.get_ref().1.handshake_kind(),
        Some(HandshakeKind::Full)
    );
    assert_eq!(one_request(first).await, StatusCode::OK);
    let second = connect_as(env.https(), c, "localhost").await.unwrap();
    assert_eq!(
        second.get_ref().1.handshake_kind(),
        Some(HandshakeKind::Resumed)
    );
    assert_eq!(one_request(second).await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_session_is_resumed_by_a_second_connection() {
    let env = Env::new().start().await;
    let c = Arc::new(client(&env.site, provider(), TLS12));
    let first = connect_as(env.https(), c.clone(), "localhost")
        .await
        .unwrap();
    assert_eq!(one_request(first).await, StatusCode::OK);
    let second = connect_as(env.https(), c, "localhost").await.unwrap();
    assert_eq!(
        second.get_ref().1.handshake_kind(),
        Some(HandshakeKind::Resumed)
    );
}

// ---------------------------------------------------------------- resumption after a policy change

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_resumed_after_a_reload_never_uses_a_suite_the_reload_removed() {
    let env = Env::new().config("[tls]\ncipher_suites = [\"TLS_AES_256_GCM_SHA384\", \"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\"]\n").start().await;
    let c = Arc::new(client(
        &env.site,
        offering(&[
            CipherSuite::TLS13_AES_256_GCM_SHA384,
            CipherSuite::TLS13_AES_128_GCM_SHA256,
        ]),
        TLS13,
    ));
    let first = connect_as(env.https(), c.clone(), "localhost")
        .await
        .unwrap();
    assert_eq!(negotiated(&first).1, CipherSuite::TLS13_AES_256_GCM_SHA384);
    assert_eq!(one_request(first).await, StatusCode::OK);

    std::fs::write(&env.gateway.config_path, env.config_text(TWO_SUITES)).unwrap();
    env.gateway.gw.reload().await.unwrap();

    let second = connect_as(env.https(), c, "localhost").await.unwrap();
    assert_eq!(negotiated(&second).1, CipherSuite::TLS13_AES_128_GCM_SHA256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_session_cannot_be_resumed_after_a_reload_disables_tls12() {
    let env = Env::new().start().await;
    let c = Arc::new(client(&env.site, provider(), TLS12));
    let first = connect_as(env.https(), c.clone(), "localhost")
        .await
        .unwrap();
    assert_eq!(one_request(first).await, StatusCode::OK);

    std::fs::write(
        &env.gateway.config_path,
        env.config_text("[tls]\nprotocols = [\"TLSv1.3\"]\n"),
    )
    .unwrap();
    env.gateway.gw.reload().await.unwrap();

    assert!(connect_as(env.https(), c, "localhost").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocols_load_as_one_comma_separated_string_like_arcgis_writes_them() {
    let env = Env::new()
        .config("[tls]\nprotocols = \"TLSv1.2, TLSv1.3\"\n")
        .start()
        .await;
    assert_eq!(
        security_config(&env.gateway).await["httpsProtocols"],
        "TLSv1.2,TLSv1.3"
    );
    let tls = connect_as(
        env.https(),
        Arc::new(client(&env.site, provider(), TLS12)),
        "localhost",
    )
    .await
    .unwrap();
    assert_eq!(negotiated(&tls).0, rustls::ProtocolVersion::TLSv1_2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_sni_entry_does_not_cover_two_labels() {
    let env = Env::new().cert("w", &["*.maps.example.com"]).config("[[tls.sni]]\nserver_name = \"*.maps.example.com\"\ncert = \"w.crt\"\nkey = \"w.key\"\n").start().await;
    let c = accept_any_cert_client();
    let tls = connect_as(env.https(), Arc::new(c), "a.tiles.maps.example.com")
        .await
        .unwrap();
    assert_eq!(leaf(&tls), env.site.gateway_cert.der);
}
