//! Clients that misbehave on purpose: each is bounded, refused or cut off,
//! and never holds what others need (issue 21). Every connection is
//! bounded in time whatever the peer does or fails to do.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Far beyond every bound under test (1 s timeouts, the 5 s close grace),
/// with room for a slow CI machine; the defects held connections forever.
const BOUNDED: Duration = Duration::from_secs(30);

/// Reads until the gateway closes the connection (EOF or an error such as
/// a reset), discarding what arrives; panics if it stays open.
async fn until_closed<S: tokio::io::AsyncRead + Unpin>(s: &mut S, within: Duration) {
    let mut buf = vec![0u8; 64 * 1024];
    let closed = tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the connection is still open after {within:?}"
    );
}

#[tokio::test]
async fn an_http2_client_that_never_answers_ping_is_closed_after_its_idle_timeout() {
    let env = Env::new()
        .config("[limits]\nidle_timeout = \"1s\"\n")
        .start()
        .await;
    let mut tls = tls_connect(env.https(), client_config(env.site.ca.roots(), &[b"h2"]))
        .await
        .unwrap();
    // The client preface and an empty SETTINGS frame; then it answers
    // nothing: not the server's SETTINGS, not the GOAWAY's PING.
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    until_closed(&mut tls, BOUNDED).await;
    eventually(Duration::from_secs(10), || async {
        env.gateway.gw.open_connections() == 0
    })
    .await;
}

#[tokio::test]
async fn an_http1_client_that_never_reads_its_response_is_closed_and_the_upstream_released() {
    let env = Env::new()
        .config("[limits]\nsend_timeout = \"1s\"\n")
        .start()
        .await;
    let mut tls = tls_connect(
        env.https(),
        client_config(env.site.ca.roots(), &[b"http/1.1"]),
    )
    .await
    .unwrap();
    tls.write_all(b"GET /big/200000000 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    // The response is under way: the upstream connection is open.
    eventually(Duration::from_secs(10), || async {
        env.upstream.conns.open() == 1
    })
    .await;
    // Never read: after the send timeout the gateway gives up the client
    // and closes the upstream connection mid-response (never pooled).
    eventually(BOUNDED, || async { env.upstream.conns.open() == 0 }).await;
    eventually(Duration::from_secs(10), || async {
        env.gateway.gw.open_connections() == 0
    })
    .await;
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        got += n;
    }
    assert!(got < 200_000_000, "the whole body arrived: no send timeout");
}

#[tokio::test]
async fn http2_streams_that_are_never_read_release_their_upstream_connections() {
    let env = Env::new()
        .config("[limits]\nsend_timeout = \"1s\"\n")
        .start()
        .await;
    let tls = tls_connect(env.https(), client_config(env.site.ca.roots(), &[b"h2"]))
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    // Twenty streams whose bodies are never read: the client's flow-control
    // windows fill and the gateway's streams stall, each holding an
    // upstream HTTP/1.1 connection.
    let mut held = Vec::new();
    for _ in 0..20 {
        let req = Request::get("https://localhost/big/10000000")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = sender.send_request(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        held.push(response);
    }
    assert_eq!(
        env.upstream.conns.open(),
        20,
        "one upstream connection per stream"
    );
    eventually(BOUNDED, || async { env.upstream.conns.open() == 0 }).await;
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(ended.is_ok(), "the gateway closed the client connection");
    drop(held);
}

#[tokio::test]
async fn a_response_that_keeps_flowing_is_not_cut_by_the_send_timeout() {
    let env = Env::new()
        .config("[limits]\nsend_timeout = \"1s\"\n")
        .start()
        .await;
    let mut tls = tls_connect(
        env.https(),
        client_config(env.site.ca.roots(), &[b"http/1.1"]),
    )
    .await
    .unwrap();
    tls.write_all(b"GET /big/20000000 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    // A slow reader: 20 MB at about 5 MB/s, 4 s in all, each pause well
    // under the timeout.
    let mut got = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    while got < 20_000_000 {
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
            .await
            .expect("data in time")
            .expect("read");
        assert!(n > 0, "closed after {got} bytes");
        got += n;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the upstream saw of an `Upgrade` header in its last request.
fn upstream_upgrade(up: &TestUpstream) -> Option<String> {
    up.last()
        .headers
        .get("upgrade")
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn an_upgrade_other_than_websocket_is_not_forwarded_nor_tunnelled() {
    let env = Env::new().start().await;
    // The upstream's /ws answers 101 to anything: asked for h2c, the
    // gateway must neither forward the Upgrade nor splice the 101.
    let raw = env.raw_https("GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n")
    .await;
    assert_eq!(status_of(&raw), 502, "{raw}");
    assert_eq!(upstream_upgrade(&env.upstream), None);
    assert!(!env.upstream.last().headers.contains_key("http2-settings"));
}

#[tokio::test]
async fn a_101_that_does_not_name_websocket_is_refused() {
    let env = Env::new().start().await;
    let raw = env.raw_https("GET /upgrade-other HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    .await;
    assert_eq!(status_of(&raw), 502, "{raw}");
    assert_eq!(
        upstream_upgrade(&env.upstream).as_deref(),
        Some("websocket")
    );
    let metrics = env.metrics().await;
    assert!(
        metrics.contains("gisgate_upstream_errors_total{kind=\"protocol\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_admin_request_inside_a_refused_upgrade_never_reaches_the_upstream() {
    let env = Env::new()
        .config("[admin]\nallowed_ips = [\"10.9.9.9/32\"]\n")
        .start()
        .await;
    let mut tls = tls_connect(
        env.https(),
        client_config(env.site.ca.roots(), &[b"http/1.1"]),
    )
    .await
    .unwrap();
    tls.write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\nGET /arcgis/admin/ HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 502"), "{text}");
    assert!(
        !env.upstream.paths().iter().any(|p| p.contains("admin")),
        "an admin request reached the upstream: {:?}",
        env.upstream.paths()
    );
}

#[tokio::test]
async fn connect_is_405() {
    let env = Env::new().start().await;
    let raw = env
        .raw_https("CONNECT localhost:6443 HTTP/1.1\r\nHost: localhost:6443\r\n\r\n")
        .await;
    assert_eq!(status_of(&raw), 405, "{raw}");
    assert!(header_of(&raw, "allow").is_some());
    assert_eq!(env.upstream.count(), 0);
}

/// An upstream that answers every request head with the same raw bytes,
/// keeping the connection open; counts connections and requests.
struct RawUpstream {
    addr: std::net::SocketAddr,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawUpstream {
    async fn start(site: &Site, response: &'static [u8]) -> RawUpstream {
        use std::sync::atomic::Ordering;
        let (chain, key) = site.upstream_cert.chain_and_key();
        let acceptor = tls_acceptor(chain, key, vec![b"http/1.1".to_vec()]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = tls.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            if tls.write_all(response).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        RawUpstream {
            addr,
            connections,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test]
async fn an_upstream_response_with_length_and_chunking_is_framed_by_its_chunks_and_not_reused() {
    let site = Site::new();
    let up = RawUpstream::start(
        &site,
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n0\r\n\r\n",
    )
    .await;
    let tg = site.gateway_at(up.addr, "").await;
    let mut client = keep_alive_connection(&site, tg.https()).await;
    for round in 1..=2 {
        let reply = request_on(&mut client, get("/arcgis/rest/info", &[]))
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(&reply.body[..], b"abcdef", "round {round}");
        assert_ne!(
            reply.headers.get("content-length").map(|v| v.as_bytes()),
            Some(&b"5"[..])
        );
        // The upstream connection that sent both is never used again.
        assert_eq!(up.connections(), round);
    }
}

#[tokio::test]
async fn an_upstream_transfer_coding_other_than_chunked_is_502() {
    let site = Site::new();
    let up = RawUpstream::start(
        &site,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n6\r\nabcdef\r\n0\r\n\r\n",
    )
    .await;
    let tg = site.gateway_at(up.addr, "").await;
    let reply = https_request(&site, tg.https(), false, get("/arcgis/rest/info", &[])).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    let metrics = tg.metrics().await;
    assert!(
        metrics.contains("gisgate_upstream_errors_total{kind=\"protocol\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_malformed_request_body_is_the_clients_error_not_an_upstream_outage() {
    let env = Env::new().start().await;
    let raw = env.raw_https("POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZZ\r\n")
    .await;
    assert_eq!(status_of(&raw), 400, "{raw}");
    assert!(raw.contains("request body"), "{raw}");
    let metrics = env.metrics().await;
    assert!(
        !metrics.contains("gisgate_upstream_errors_total{kind=\"connect\"}"),
        "a client's body counted as an upstream outage:\n{metrics}"
    );
}

/// An HTTP/1.1 request head of exactly `size` bytes.
fn head_of(size: usize) -> String {
    let start = "GET /arcgis/rest/info HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Pad: ";
    let end = "\r\n\r\n";
    format!("{start}{}{end}", "a".repeat(size - start.len() - end.len()))
}

#[tokio::test]
async fn max_header_bytes_is_exact_for_http1_heads() {
    let env = Env::new().start().await;
    // The default limit, 65,536 bytes: heads of 66-80 KB were accepted.
    for (size, expect) in [(65_536, 200), (65_537, 431), (66_000, 431), (80_000, 431)] {
        let raw = env.raw_https(&head_of(size)).await;
        assert_eq!(status_of(&raw), expect, "a head of {size} bytes");
    }
    assert_eq!(env.upstream.count(), 1);
}

#[tokio::test]
async fn an_http2_header_block_over_the_limit_gets_a_431_response() {
    let env = Env::new().start().await;
    // 32 bytes per field and the pseudo-headers count (RFC 9113 §6.5.2).
    let pad = "a".repeat(70_000);
    let reply = env
        .request(
            Http::V2,
            get("/arcgis/rest/info", &[("x-pad", pad.as_str())]),
        )
        .await;
    assert_eq!(reply.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // The gateway's own answer, not the HTTP/2 layer's 431 followed by a
    // REFUSED_STREAM reset, which curl retries five times and then fails.
    assert!(
        String::from_utf8_lossy(&reply.body).contains("max_header_bytes"),
        "{:?}",
        reply.body
    );
    let pad = "a".repeat(60_000);
    let reply = env
        .request(
            Http::V2,
            get("/arcgis/rest/info", &[("x-pad", pad.as_str())]),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(env.upstream.count(), 1);
}

#[tokio::test]
async fn a_raw_hash_in_the_request_target_is_refused_not_cut_off() {
    let env = Env::new().start().await;
    // The http crate drops a fragment with all that follows: this reached
    // the upstream as /arcgis/rest, where Tomcat answers 400.
    let raw = env
        .raw_https(
            "GET /arcgis/rest#/../admin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
    assert_eq!(status_of(&raw), 400, "{raw}");
    let raw = env.raw_https("GET /arcgis/rest/services?f=json#x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    .await;
    assert_eq!(status_of(&raw), 400, "{raw}");
    assert_eq!(env.upstream.count(), 0);
}

#[tokio::test]
async fn a_hash_is_found_on_a_kept_alive_connection_and_in_a_dribbled_request_line() {
    let env = Env::new().start().await;
    let mut tls = tls_connect(
        env.https(),
        client_config(env.site.ca.roots(), &[b"http/1.1"]),
    )
    .await
    .unwrap();
    // A clean request with a '#' in a header and one in a body, then
    // (the connection set aside in between) a dribbled request line.
    let body = "GET /x#y HTTP/1.1\r\n";
    let first = format!(
        "GET /arcgis/rest/info HTTP/1.1\r\nHost: localhost\r\nCookie: a=#1\r\n\r\nPOST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(first.as_bytes()).await.unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while seen.matches("HTTP/1.1 200").count() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "{seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(env.upstream.count(), 2, "{seen}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    for b in "GET /arcgis/rest#/../admin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        .bytes()
    {
        tls.write_all(&[b]).await.unwrap();
        tls.flush().await.unwrap();
    }
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut rest)).await;
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.starts_with("HTTP/1.1 400"), "{rest}");
    assert_eq!(env.upstream.count(), 2);
}

#[tokio::test]
async fn a_websocket_tunnel_idle_both_ways_is_closed_one_in_use_is_not() {
    let env = Env::new()
        .config("[limits]\nidle_timeout = \"1s\"\n")
        .start()
        .await;
    let mut busy = websocket(&env.site, env.https()).await;
    let mut idle = websocket(&env.site, env.https()).await;
    let mut buf = [0u8; 64];
    // Used every 300 ms for 3 s: stays open.
    for _ in 0..10 {
        busy.write_all(b"ping").await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), busy.read(&mut buf))
            .await
            .expect("echo in time")
            .expect("open");
        assert_eq!(&buf[..n], b"ping");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Idle all that time: closed.
    until_closed(&mut idle, BOUNDED).await;
    eventually(Duration::from_secs(10), || async {
        env.gateway.gw.open_connections() == 1
    })
    .await;
}

#[tokio::test]
async fn an_upstream_that_accepts_and_never_answers_tls_is_a_504_within_connect_timeout() {
    let site = Site::new();
    // Accepts TCP, then says nothing.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            open.push(tcp);
        }
    });
    let tg = site
        .gateway_at(addr, "[upstream]\nconnect_timeout = \"1s\"\n")
        .await;
    for _ in 0..2 {
        let reply = tokio::time::timeout(
            BOUNDED,
            https_request(&site, tg.https(), false, get("/arcgis/rest/info", &[])),
        )
        .await
        .expect("an answer, not a wait on the upstream's handshake");
        assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    }
    held.abort();
}
