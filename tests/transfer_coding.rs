//! Request transfer codings (SPEC §8, issue 21.A): only one `chunked` is
//! served. Any other coding is 501, as nginx answers, and `chunked` applied
//! twice is 400 (RFC 9112 §6.1); neither reaches the upstream.

mod common;

use common::*;

/// A POST to `/upload` with these `Transfer-Encoding` lines and a chunked
/// body `hello`, on a connection that closes after the answer.
fn chunked_post(transfer_encodings: &[&str]) -> String {
    let lines: String = transfer_encodings
        .iter()
        .map(|te| format!("Transfer-Encoding: {te}\r\n"))
        .collect();
    format!(
        "POST /upload HTTP/1.1\r\nHost: localhost\r\n{lines}Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
}

/// The raw answer, having checked that nothing reached the upstream.
async fn refused(transfer_encodings: &[&str], status: u16) -> String {
    let env = Env::new().start().await;
    let raw = env.raw_https(&chunked_post(transfer_encodings)).await;
    assert_eq!(status_of(&raw), status, "{transfer_encodings:?} -> {raw}");
    assert_eq!(
        env.upstream.count(),
        0,
        "{transfer_encodings:?} reached the upstream"
    );
    // Metrics are the process's, shared by this file's tests: the line,
    // not its count.
    env.metrics_with(&format!(
        "gisgate_requests_total{{listener=\"https\",route=\"rejected\",status=\"{status}\"}}"
    ))
    .await;
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_then_chunked_is_501_and_never_forwarded() {
    let raw = refused(&["gzip, chunked"], 501).await;
    let body = raw.split("\r\n\r\n").nth(1).unwrap_or("");
    assert!(
        !body.contains("gzip"),
        "the body echoes the request: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coding_names_are_matched_without_regard_to_case_or_whitespace() {
    refused(&["GZip ,\tChunked"], 501).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_then_chunked_is_501() {
    refused(&["identity, chunked"], 501).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_coding_on_its_own_header_line_is_501() {
    refused(&["gzip", "chunked"], 501).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_twice_is_400() {
    refused(&["chunked, chunked"], 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_on_two_header_lines_is_400() {
    refused(&["chunked", "CHUNKED"], 400).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_chunked_body_is_forwarded_whole() {
    let env = Env::new().start().await;
    let raw = env.raw_https(&chunked_post(&["chunked"])).await;
    assert_eq!(status_of(&raw), 200, "{raw}");
    assert!(
        raw.ends_with("\r\n\r\n5"),
        "the upstream counted 5 bytes: {raw}"
    );
    assert_eq!(env.upstream.paths(), ["/upload"]);
}
