//! Body size limits (issue 25 part 5): a declared Content-Length over the
//! limit gets 413 before the upstream is contacted; a streamed body that
//! passes it is cut and the client answered 413. HTTP/1.1 and HTTP/2,
//! chunked and Content-Length.

mod common;
mod counters;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use common::*;
use counters::{counted, counter};
use http::Request;
use http_body::{Body, Frame};
use http_body_util::Full;

const LIMITS: &str = r#"
[limits]
max_body_bytes = 1000

[[body_limit]]
paths = ["/upload/big"]
max_bytes = 100000
"#;

fn post(path: &str, len: usize) -> Request<Full<Bytes>> {
    Request::builder()
        .method("POST")
        .uri(format!("https://localhost{path}"))
        .body(Full::new(Bytes::from(vec![b'x'; len])))
        .unwrap()
}

fn raw_post_with_length(len: usize) -> String {
    format!(
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{}",
        "x".repeat(len)
    )
}

fn raw_post_chunked(chunks: usize, size: usize) -> String {
    let mut r = "POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_string();
    for _ in 0..chunks {
        r.push_str(&format!("{size:x}\r\n{}\r\n", "x".repeat(size)));
    }
    r.push_str("0\r\n\r\n");
    r
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_413_and_never_reaches_the_upstream_http1() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = site.gateway(&up, LIMITS).await;
    let series = "gisgate_body_too_large_total{when=\"declared\"}";
    let before = counter(&tg, series).await;
    let r = raw_https(&site, tg.https(), &raw_post_with_length(1001)).await;
    assert_eq!(status_of(&r), 413, "{r}");
    assert!(r.contains("over its size limit"), "{r}");
    assert_eq!(up.count(), 0, "the upstream was contacted");
    let r = raw_https(&site, tg.https(), &raw_post_with_length(1000)).await;
    assert_eq!(status_of(&r), 200, "{r}");
    assert!(r.ends_with("1000"), "the upstream got the whole body: {r}");
    counted(&tg, series, before + 1).await;
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_413_over_http2() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = site.gateway(&up, LIMITS).await;
    let r = https_request(&site, tg.https(), true, post("/upload", 5000)).await;
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(r.status, 413);
    assert_eq!(up.count(), 0);
    let r = https_request(&site, tg.https(), true, post("/upload", 900)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "900");
}

#[tokio::test]
async fn a_chunked_body_passing_the_limit_is_cut_and_answered_413() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = site.gateway(&up, LIMITS).await;
    let series = "gisgate_body_too_large_total{when=\"streamed\"}";
    let before = counter(&tg, series).await;
    let r = raw_https(&site, tg.https(), &raw_post_chunked(20, 100)).await;
    assert_eq!(status_of(&r), 413, "{r}");
    counted(&tg, series, before + 1).await;
    // Within the limit, the same framing passes whole.
    let r = raw_https(&site, tg.https(), &raw_post_chunked(10, 100)).await;
    assert_eq!(status_of(&r), 200, "{r}");
    assert!(r.contains("1000"), "{r}");
}

#[tokio::test]
async fn a_body_limit_rule_sets_its_paths_limit_instead_of_the_default() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = site.gateway(&up, LIMITS).await;
    let r = https_request(&site, tg.https(), false, post("/upload/big", 50_000)).await;
    assert_eq!(r.status, 200, "the rule's larger limit applies");
    let r = https_request(&site, tg.https(), false, post("/upload/big", 100_001)).await;
    assert_eq!(r.status, 413);
}

/// A body of unknown length (no content-length on HTTP/2): streamed.
struct Chunks(Vec<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let next = (!self.0.is_empty()).then(|| self.0.remove(0));
        Poll::Ready(next.map(|b| Ok(Frame::data(b))))
    }
}

async fn h2_streamed(site: &Site, tg: &TestGateway, chunks: usize) -> http::StatusCode {
    let tls = tls_connect(tg.https(), client_config(site.ca.roots(), &[b"h2"]))
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let body = Chunks(vec![Bytes::from(vec![b'x'; 100]); chunks]);
    let req = Request::builder()
        .method("POST")
        .uri("https://localhost/upload")
        .body(body)
        .unwrap();
    sender.send_request(req).await.unwrap().status()
}

#[tokio::test]
async fn an_http2_body_without_length_passing_the_limit_is_413() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = site.gateway(&up, LIMITS).await;
    assert_eq!(h2_streamed(&site, &tg, 30).await, 413);
    assert_eq!(h2_streamed(&site, &tg, 5).await, 200);
}

#[tokio::test]
async fn an_http2_upstream_gets_the_streamed_limit_too() {
    let site = Site::new();
    let up = site.upstream(Http::V2).await;
    let tg = site
        .gateway(&up, &format!("[upstream]\nprefer_http2 = true\n{LIMITS}"))
        .await;
    assert_eq!(h2_streamed(&site, &tg, 30).await, 413);
    assert_eq!(h2_streamed(&site, &tg, 5).await, 200);
    let r = raw_https(&site, tg.https(), &raw_post_chunked(20, 100)).await;
    assert_eq!(status_of(&r), 413, "{r}");
}

#[tokio::test]
async fn without_a_limit_a_large_body_passes() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = site.gateway(&up, "").await;
    let r = https_request(&site, tg.https(), true, post("/upload", 300_000)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "300000");
}
