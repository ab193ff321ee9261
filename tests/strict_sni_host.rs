//! `tls.strict_sni_host` (issue 25, part 6): a request for a host that the
//! certificate chosen for the connection's SNI does not cover gets 421
//! Misdirected Request and never reaches the upstream; a host it covers is
//! served, also on a connection an HTTP/2 client reuses for another of the
//! certificate's names (coalescing, the reason 421 exists). Off, the
//! default, nothing changes.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A second certificate, by SNI, for two names; the default one covers
/// localhost and 127.0.0.1.
fn with_maps_certificate(site: &Site, strict: Strict) -> String {
    let maps = site.ca.issue(&["maps.example.com", "tiles.example.com"]);
    site.ca.write("maps", &maps);
    format!(
        "[tls]\nstrict_sni_host = {}\n[[tls.sni]]\nserver_name = \"maps.example.com\"\ncert = \"maps.crt\"\nkey = \"maps.key\"\n",
        strict == Strict::On
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Strict {
    On,
    /// As the default leaves it.
    Off,
}

/// A TLS connection to `addr` naming `sni` (a DNS name sends SNI; an IP
/// address sends none), offering only `http`.
async fn connect(site: &Site, addr: SocketAddr, sni: &str, http: Http) -> TlsStream<TcpStream> {
    let alpn: &[&[u8]] = match http {
        Http::V1 => &[b"http/1.1"],
        Http::V2 => &[b"h2"],
    };
    let config = client_config(site.ca.roots(), alpn);
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(sni.to_string()).unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

/// A GET for `host`: Host over HTTP/1.1, `:authority` over HTTP/2.
fn get_for(host: &str, http: Http) -> Request<Full<Bytes>> {
    let b = Request::builder().method("GET");
    let b = match http {
        Http::V1 => b.uri("/arcgis/rest/services").header("host", host),
        Http::V2 => b.uri(format!("https://{host}/arcgis/rest/services")),
    };
    b.body(Full::new(Bytes::new())).unwrap()
}

/// Statuses of requests for each of `hosts` in turn, on one connection
/// that named `sni`.
async fn statuses_on_one_connection(
    site: &Site,
    addr: SocketAddr,
    sni: &str,
    http: Http,
    hosts: &[&str],
) -> Vec<StatusCode> {
    let io = TokioIo::new(connect(site, addr, sni, http).await);
    let mut out = Vec::new();
    match http {
        Http::V1 => {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            for host in hosts {
                sender.ready().await.unwrap();
                let r = sender.send_request(get_for(host, http)).await.unwrap();
                out.push(r.status());
                let _ = r.into_body().collect().await;
            }
        }
        Http::V2 => {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .unwrap();
            tokio::spawn(conn);
            for host in hosts {
                let r = sender.send_request(get_for(host, http)).await.unwrap();
                out.push(r.status());
                let _ = r.into_body().collect().await;
            }
        }
    }
    out
}

async fn a_host_the_certificate_does_not_cover_is_misdirected(http: Http) {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = site
        .gateway(&up, &with_maps_certificate(&site, Strict::On))
        .await;
    let port = tg.https().port();
    let tiles = format!("tiles.example.com:{port}");
    let statuses = statuses_on_one_connection(
        &site,
        tg.https(),
        "maps.example.com",
        http,
        &["maps.example.com", &tiles, "localhost", "gis.example.com"],
    )
    .await;
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::MISDIRECTED_REQUEST,
            StatusCode::MISDIRECTED_REQUEST
        ],
        "{http:?}: the maps certificate covers maps and tiles only"
    );
    assert_eq!(
        up.count(),
        2,
        "a misdirected request never reaches the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http1_a_host_the_certificate_does_not_cover_gets_421() {
    a_host_the_certificate_does_not_cover_is_misdirected(Http::V1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http2_a_coalesced_request_is_served_only_for_names_the_certificate_covers() {
    a_host_the_certificate_does_not_cover_is_misdirected(Http::V2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_sni_the_default_certificate_decides() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = site
        .gateway(&up, &with_maps_certificate(&site, Strict::On))
        .await;
    let statuses = statuses_on_one_connection(
        &site,
        tg.https(),
        "127.0.0.1",
        Http::V2,
        &["127.0.0.1", "localhost", "maps.example.com"],
    )
    .await;
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::MISDIRECTED_REQUEST
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_by_default_every_host_is_served_whatever_the_sni() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = site
        .gateway(&up, &with_maps_certificate(&site, Strict::Off))
        .await;
    for http in [Http::V1, Http::V2] {
        let statuses = statuses_on_one_connection(
            &site,
            tg.https(),
            "maps.example.com",
            http,
            &["localhost", "gis.example.com"],
        )
        .await;
        assert_eq!(statuses, [StatusCode::OK, StatusCode::OK], "{http:?}");
    }
    // And with the key left out altogether.
    let tg = site.gateway(&up, "").await;
    let statuses = statuses_on_one_connection(
        &site,
        tg.https(),
        "localhost",
        Http::V1,
        &["gis.example.com"],
    )
    .await;
    assert_eq!(statuses, [StatusCode::OK]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_session_is_held_to_the_certificate_of_its_sni_too() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = site
        .gateway(&up, &with_maps_certificate(&site, Strict::On))
        .await;
    // One client config, so the second connection resumes the first's
    // session (TLS 1.3 ticket): no certificate is sent on it.
    let config = Arc::new(client_config(site.ca.roots(), &[b"http/1.1"]));
    let mut resumed = Vec::new();
    for host in ["maps.example.com", "localhost"] {
        let tcp = TcpStream::connect(tg.https()).await.unwrap();
        let tls = TlsConnector::from(config.clone())
            .connect(ServerName::try_from("maps.example.com").unwrap(), tcp)
            .await
            .unwrap();
        resumed.push(tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed));
        let r = send_on(tls, false, get_for(host, Http::V1)).await;
        let expected = match host {
            "localhost" => StatusCode::MISDIRECTED_REQUEST,
            _ => StatusCode::OK,
        };
        assert_eq!(r.status, expected, "{host}");
    }
    assert_eq!(resumed, [false, true], "the second session was resumed");
}
