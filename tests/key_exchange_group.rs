//! The key exchange group of client handshakes (issue 22): which group a
//! client gets, and the `group` label of `gisgate_tls_handshakes_total`
//! that reports it. The post-quantum hybrid X25519MLKEM768 is negotiated
//! whenever the client offers it first, as browsers do.

mod common;

use std::sync::Arc;

use common::*;
use http::StatusCode;
use rustls::crypto::{aws_lc_rs, CryptoProvider, SupportedKxGroup};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind, NamedGroup, SupportedProtocolVersion};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

const TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
const TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

use aws_lc_rs::kx_group::{SECP256R1, X25519, X25519MLKEM768};

/// A client offering exactly `groups`, in that order, over `versions`.
fn client(
    site: &Site,
    groups: &[&'static dyn SupportedKxGroup],
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let provider = CryptoProvider {
        kx_groups: groups.to_vec(),
        ..aws_lc_rs::default_provider()
    };
    let mut c = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(site.ca.roots())
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

/// Connects, makes one request (so TLS 1.3 tickets are read), and returns
/// the group the client saw negotiated and how the handshake went.
async fn handshake(
    tg: &TestGateway,
    c: Arc<ClientConfig>,
) -> (Option<NamedGroup>, Option<HandshakeKind>) {
    let tcp = TcpStream::connect(tg.https()).await.unwrap();
    let tls: TlsStream<TcpStream> = TlsConnector::from(c)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let conn = tls.get_ref().1;
    let seen = (
        conn.negotiated_key_exchange_group().map(|g| g.name()),
        conn.handshake_kind(),
    );
    let reply = send_on(tls, false, get("/x", &[("host", "localhost")])).await;
    assert_eq!(reply.status, StatusCode::OK);
    seen
}

/// The `gisgate_tls_handshakes_total` line counting `version` and `group`
/// (any cipher), waited for: the count is made by the connection's task.
/// The metrics registry is the process's, shared by this file's tests, so
/// only the presence of a line is asserted, never a count.
async fn handshakes_line(tg: &TestGateway, version: &str, group: &str) -> String {
    let labels = format!("version=\"{version}\",");
    let tail = format!(",group=\"{group}\"}}");
    let page = tg.metrics_with(&tail).await;
    page.lines()
        .find(|l| {
            l.starts_with("gisgate_tls_handshakes_total{")
                && l.contains(&labels)
                && l.contains(&tail)
        })
        .unwrap_or_else(|| panic!("no handshake line for {version} {group}:\n{page}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_offering_the_post_quantum_hybrid_gets_it_and_it_is_counted() {
    let env = Env::new().start().await;
    let c = client(&env.site, &[X25519MLKEM768, X25519], TLS13);
    let (group, _) = handshake(&env.gateway, c).await;
    assert_eq!(group, Some(NamedGroup::X25519MLKEM768));
    handshakes_line(&env.gateway, "TLSv1.3", "X25519MLKEM768").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_offering_only_x25519_is_counted_as_x25519() {
    let env = Env::new().start().await;
    let c = client(&env.site, &[X25519], TLS13);
    assert_eq!(handshake(&env.gateway, c).await.0, Some(NamedGroup::X25519));
    handshakes_line(&env.gateway, "TLSv1.3", "X25519").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_handshake_is_counted_with_its_ecdhe_group() {
    let env = Env::new().start().await;
    let c = client(&env.site, &[SECP256R1], TLS12);
    assert_eq!(
        handshake(&env.gateway, c).await.0,
        Some(NamedGroup::secp256r1)
    );
    handshakes_line(&env.gateway, "TLSv1.2", "secp256r1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_tls12_session_has_no_key_exchange_and_is_counted_as_none() {
    let env = Env::new().start().await;
    let c = client(&env.site, &[X25519], TLS12);
    handshake(&env.gateway, c.clone()).await;
    let (group, kind) = handshake(&env.gateway, c).await;
    assert_eq!(kind, Some(HandshakeKind::Resumed));
    assert_eq!(group, None);
    handshakes_line(&env.gateway, "TLSv1.2", "none").await;
    handshakes_line(&env.gateway, "TLSv1.2", "X25519").await;
}
