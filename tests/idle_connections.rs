//! Idle HTTP/1.1 keep-alive connections are set aside after 20 ms with
//! nothing in flight (hyper's buffers freed, the socket watched alone) and
//! taken up again by their next request. What a client sees must not
//! change: the next request, bytes of it already sent, the idle timeout
//! and the drain all behave as on a connection never set aside.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longer than the gateway's set-aside delay (1 s), with room for a slow CI.
const SET_ASIDE_WITHIN: Duration = Duration::from_secs(10);

async fn set_aside(tg: &TestGateway, at_least: u64) {
    eventually(SET_ASIDE_WITHIN, || async {
        tg.gw.connections_set_aside() >= at_least
    })
    .await;
}

/// Reads one response of a known body length from a raw stream.
async fn read_response<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "connection closed mid-response: {out:?}");
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length: usize = text[..head_end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("a content-length");
            if out.len() >= head_end + 4 + length {
                return text;
            }
        }
    }
}

/// A raw TLS connection that made one request and has since been set aside.
async fn one_request_then_set_aside(
    site: &Site,
    tg: &TestGateway,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut tls = tls_connect(tg.https(), client_config(site.ca.roots(), &[b"http/1.1"]))
        .await
        .unwrap();
    tls.write_all(b"GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status_of(&read_response(&mut tls).await), 200);
    set_aside(tg, 1).await;
    tls
}

/// The gateway closed the connection cleanly: TLS close_notify, then end
/// of stream.
async fn assert_closed_cleanly<S: tokio::io::AsyncRead + Unpin>(s: &mut S) {
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0))),
        "expected a clean close, got {read:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_set_aside_serves_its_next_requests() {
    let env = Env::new().start().await;
    let mut sender = keep_alive_connection(&env.site, env.https()).await;
    for (round, path) in ["/one", "/two", "/three"].into_iter().enumerate() {
        let r = request_on(&mut sender, get(path, &[("host", "localhost")]))
            .await
            .expect("the same connection still serves");
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(env.upstream.last().path, path);
        set_aside(&env.gateway, round as u64 + 1).await;
    }
    assert_eq!(env.upstream.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_of_the_next_request_sent_early_survive_the_set_aside() {
    let env = Env::new().start().await;
    let mut tls = tls_connect(
        env.https(),
        client_config(env.site.ca.roots(), &[b"http/1.1"]),
    )
    .await
    .unwrap();
    // The first request and the start of the second in one write: hyper
    // reads the second's first bytes while answering the first.
    tls.write_all(b"GET /first HTTP/1.1\r\nHost: localhost\r\n\r\nGET /sec")
        .await
        .unwrap();
    let first = read_response(&mut tls).await;
    assert_eq!(status_of(&first), 200, "{first}");
    set_aside(&env.gateway, 1).await;
    tls.write_all(b"ond HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let second = read_response(&mut tls).await;
    assert_eq!(status_of(&second), 200, "{second}");
    assert_eq!(env.upstream.paths(), ["/first", "/second"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_a_body_is_not_followed_by_a_set_aside() {
    // hyper may still be reading or draining a body after the response:
    // such a connection keeps its buffers, and the next request works.
    let env = Env::new().start().await;
    let mut sender = keep_alive_connection(&env.site, env.https()).await;
    let upload = Request::builder()
        .method("POST")
        .uri("https://localhost/upload")
        .header("host", "localhost")
        .body(Full::new(Bytes::from(vec![b'x'; 100_000])))
        .unwrap();
    let r = request_on(&mut sender, upload).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "100000");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(env.gateway.gw.connections_set_aside(), 0);
    let r = request_on(&mut sender, get("/after", &[("host", "localhost")]))
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    // The GET had no body: now the connection is set aside.
    set_aside(&env.gateway, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_aside_connection_is_closed_at_the_idle_timeout() {
    let env = Env::new()
        .config("[limits]\nidle_timeout = \"3s\"\n")
        .start()
        .await;
    let mut tls = one_request_then_set_aside(&env.site, &env.gateway).await;
    assert_closed_cleanly(&mut tls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_set_aside_connections_without_waiting_for_the_grace() {
    let env = Env::new()
        .config("[limits]\nshutdown_grace = \"60s\"\n")
        .start()
        .await;
    let mut tls = one_request_then_set_aside(&env.site, &env.gateway).await;
    let gw = env.gateway.gw.clone();
    let drained = tokio::spawn(async move { gw.shutdown().await });
    assert_closed_cleanly(&mut tls).await;
    // The drain ends once that connection is gone, long before its grace.
    tokio::time::timeout(Duration::from_secs(10), drained)
        .await
        .expect("the drain waited for a set-aside connection")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_connections_are_set_aside_too() {
    let env = Env::new().start().await;
    let mut tcp = tokio::net::TcpStream::connect(env.http()).await.unwrap();
    tcp.write_all(b"GET /arcgis/rest HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status_of(&read_response(&mut tcp).await), 308);
    set_aside(&env.gateway, 1).await;
    tcp.write_all(b"GET /arcgis/rest HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status_of(&read_response(&mut tcp).await), 308);
}
