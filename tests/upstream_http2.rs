//! `upstream.prefer_http2`: requests multiplexed over HTTP/2 connections to
//! an upstream that picks h2, seen from the upstream (which protocol, how
//! many connections), and HTTP/1.1 to one that does not.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use http_body_util::Full;

const PREFER_HTTP2: &str = "[upstream]\nprefer_http2 = true\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_share_one_http2_connection_with_the_client_host_as_authority() {
    let env = Env::new()
        .upstream(Http::V2)
        .config(PREFER_HTTP2)
        .start()
        .await;
    let mut client = keep_alive_connection(&env.site, env.https()).await;
    // More requests than one connection's streams: each stream must be
    // given back when its response ends, or a second connection opens.
    for i in 0..150 {
        let method = if i % 3 == 0 { "HEAD" } else { "GET" };
        let mut req = get("/arcgis/rest/info?f=json", &[("host", "gis.example.com")]);
        *req.uri_mut() = "/arcgis/rest/info?f=json".parse().unwrap();
        *req.method_mut() = method.parse().unwrap();
        let r = request_on(&mut client, req).await.unwrap();
        assert_eq!(r.status, StatusCode::OK, "{method} #{i}");
    }
    assert_eq!(env.upstream.count(), 150);
    assert_eq!(
        env.upstream.conns.handshakes(),
        1,
        "one upstream connection"
    );
    let seen = env.upstream.last();
    seen.assert_http2_for_host("gis.example.com");
    assert_eq!(seen.path, "/arcgis/rest/info");
    assert_eq!(seen.query.as_deref(), Some("f=json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_without_h2_gets_http1_with_host_kept() {
    let env = Env::new().config(PREFER_HTTP2).start().await;
    for _ in 0..3 {
        let r = env.request(Http::V2, get("/x", &[])).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let seen = env.upstream.last();
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(seen.headers["host"], "localhost");
    assert_eq!(
        env.upstream.conns.handshakes(),
        1,
        "the pool's connection reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_connection_opens_another_so_slow_requests_hold_up_no_one() {
    let site = Arc::new(Site::new());
    let up = site.upstream(Http::V2).await;
    let tg = site.gateway(&up, PREFER_HTTP2).await;
    // 120 requests the upstream holds for a minute, from 120 client
    // connections: more than one HTTP/2 connection's 100 streams.
    let addr = tg.https();
    let mut slow = Vec::new();
    for _ in 0..120 {
        let site = site.clone();
        slow.push(tokio::spawn(async move {
            https_request(&site, addr, false, get("/delay/60000", &[])).await
        }));
    }
    let up_seen = || async { up.count() == 120 };
    eventually(Duration::from_secs(30), up_seen).await;
    assert_eq!(
        up.conns.handshakes(),
        2,
        "100 streams on the first connection, the rest on a second"
    );
    // And a quick request is answered meanwhile.
    let r = https_get(&site, &tg, "/x", false).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(up.last().version, http::Version::HTTP_2);
    for task in slow {
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_cut_short_gives_its_stream_back() {
    let env = Env::new()
        .upstream(Http::V2)
        .config(PREFER_HTTP2)
        .start()
        .await;
    // 110 clients each read the head of a 1 MiB response, then go away
    // (the gateway sees each one go long before the next has shaken hands).
    for _ in 0..110 {
        let mut client = keep_alive_connection(&env.site, env.https()).await;
        client.ready().await.unwrap();
        let response = client.send_request(get("/big/1048576", &[])).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        drop(response);
        drop(client);
    }
    let r = env.get("/x").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        env.upstream.conns.handshakes(),
        1,
        "the abandoned responses' streams were given back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_the_upstream_refused_unprocessed_is_sent_again() {
    let site = Site::new();
    let (up, tg) = RefusingUpstream::behind_a_gateway(&site).await;
    let r = https_get(&site, &tg, "/arcgis/rest/info?f=json", false).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, Bytes::from_static(b"answered"));
    assert_eq!(up.refused.load(Ordering::SeqCst), 1);
    assert_eq!(up.answered.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_with_a_body_the_upstream_refused_is_not_sent_again() {
    let site = Site::new();
    let (up, tg) = RefusingUpstream::behind_a_gateway(&site).await;
    let post = Request::builder()
        .method("POST")
        .uri("https://localhost/arcgis/rest/services/x/GPServer/t/execute")
        .body(Full::new(Bytes::from_static(b"f=json&input=1")))
        .unwrap();
    let r = https_request(&site, tg.https(), false, post).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(up.answered.load(Ordering::SeqCst), 0);
    // The connection still serves the next request.
    let r = https_get(&site, &tg, "/x", false).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(up.refused.load(Ordering::SeqCst), 1);
    assert_eq!(up.answered.load(Ordering::SeqCst), 1);
}

/// An HTTP/2-only upstream (the `h2` crate's server, which can refuse a
/// stream) that resets the first stream of each connection with
/// REFUSED_STREAM, "not processed" (RFC 9113 §8.7), and answers the rest.
struct RefusingUpstream {
    addr: std::net::SocketAddr,
    refused: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RefusingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RefusingUpstream {
    /// The upstream, and a gateway preferring HTTP/2 in front of it.
    async fn behind_a_gateway(site: &Site) -> (RefusingUpstream, TestGateway) {
        let up = RefusingUpstream::start(site).await;
        let tg = site
            .gateway_from_text(&site.config(up.addr, PREFER_HTTP2))
            .await;
        (up, tg)
    }

    async fn start(site: &Site) -> RefusingUpstream {
        let (chain, key) = site.upstream_cert.chain_and_key();
        let acceptor = tls_acceptor(chain, key, vec![b"h2".to_vec()]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (refused, answered) = (Arc::<AtomicUsize>::default(), Arc::<AtomicUsize>::default());
        let counts = (refused.clone(), answered.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, counts) = (acceptor.clone(), counts.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut conn) = h2::server::handshake(tls).await else {
                        return;
                    };
                    let mut first = true;
                    while let Some(Ok((_req, mut respond))) = conn.accept().await {
                        if std::mem::take(&mut first) {
                            respond.send_reset(h2::Reason::REFUSED_STREAM);
                            counts.0.fetch_add(1, Ordering::SeqCst);
                            continue;
                        }
                        counts.1.fetch_add(1, Ordering::SeqCst);
                        let head = http::Response::new(());
                        if let Ok(mut body) = respond.send_response(head, false) {
                            let _ = body.send_data(Bytes::from_static(b"answered"), true);
                        }
                    }
                });
            }
        });
        RefusingUpstream {
            addr,
            refused,
            answered,
            task,
        }
    }
}
