//! The keep-alive pool to the upstream, seen from the upstream: how many
//! TLS handshakes it pays, how many of them resume, how many connections
//! stay open.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::StatusCode;

/// `n` concurrent GETs of `path`, each on its own client connection.
async fn concurrent_gets(site: &Arc<Site>, tg: &TestGateway, path: &str, n: usize) {
    let addr = tg.https();
    let mut tasks = Vec::new();
    for _ in 0..n {
        let site = site.clone();
        let path = path.to_string();
        tasks.push(tokio::spawn(async move {
            https_request(&site, addr, false, get(&path, &[]))
                .await
                .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_turn_share_one_upstream_connection() {
    let env = Env::new().start().await;
    assert_eq!(env.get("/x").await.status, StatusCode::OK);
    let after_first = env.upstream.conns.handshakes();
    for i in 0..10 {
        // HEAD answers have no body to read: the connection must come back
        // all the same.
        let method = if i % 2 == 0 { "HEAD" } else { "GET" };
        let mut req = get("/x", &[]);
        *req.method_mut() = method.parse().unwrap();
        let r = https_request(&env.site, env.https(), i % 3 == 0, req).await;
        assert_eq!(r.status, StatusCode::OK, "{method}");
    }
    assert_eq!(
        env.upstream.conns.handshakes(),
        after_first,
        "no new upstream connection"
    );
    assert_eq!(env.upstream.count(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_upstream_closed_is_not_reused() {
    let env = Env::new().start().await;
    for _ in 0..3 {
        let r = env.get("/close").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body.as_ref(), b"closing");
        let r = env.get("/x").await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "the next request gets a live connection"
        );
    }
    assert_eq!(env.upstream.count(), 6);
}

/// `/die` promises 1000 bytes and fails after 10. Over either client
/// protocol the client sees that response begin (200) and end short, the
/// connection it came on is not returned to the pool, and the next request
/// is served on a fresh one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_dying_mid_response_ends_only_that_response_and_its_connection() {
    let env = Env::new().start().await;
    for client in [Http::V1, Http::V2] {
        let (status, received) = match client {
            Http::V1 => {
                let raw = env
                    .raw_https("GET /die HTTP/1.1\r\nHost: localhost\r\n\r\n")
                    .await;
                (status_of(&raw), raw.len())
            }
            Http::V2 => {
                let r = env.request(Http::V2, get("/die", &[])).await;
                (r.status.as_u16(), r.body.len())
            }
        };
        assert_eq!(status, 200, "{client:?}");
        assert!(
            received < 1000,
            "{client:?}: the response is cut short, not padded"
        );
        let before = env.upstream.conns.handshakes();
        assert_eq!(env.get("/x").await.status, StatusCode::OK, "{client:?}");
        assert_eq!(
            env.upstream.conns.handshakes(),
            before + 1,
            "{client:?}: a fresh connection"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_pool_max_idle_reuses_its_connections_then_trims_them() {
    let site = Arc::new(Site::new());
    let up = site.upstream(Http::V1).await;
    let tg = site.gateway(&up, "[upstream]\npool_max_idle = 2\n").await;
    concurrent_gets(&site, &tg, "/delay/300", 12).await;
    let after_burst = up.conns.handshakes();
    assert!(
        after_burst >= 12,
        "12 concurrent requests, {after_burst} handshakes"
    );
    // A second burst right after finds the first one's connections idle.
    concurrent_gets(&site, &tg, "/delay/300", 12).await;
    assert_eq!(
        up.conns.handshakes(),
        after_burst,
        "the burst reused its connections"
    );
    // Left idle, the surplus above pool_max_idle is closed.
    eventually(Duration::from_secs(10), || async { up.conns.open() == 2 }).await;
    assert_eq!(
        https_get(&site, &tg, "/x", false).await.status,
        StatusCode::OK
    );
    assert_eq!(
        up.conns.handshakes(),
        after_burst,
        "the kept ones still serve"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_max_idle_zero_keeps_no_connection() {
    let env = Env::new()
        .config("[upstream]\npool_max_idle = 0\n")
        .start()
        .await;
    for _ in 0..3 {
        assert_eq!(env.get("/x").await.status, StatusCode::OK);
    }
    eventually(Duration::from_secs(10), || async {
        env.upstream.conns.open() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_sessions_resume_through_a_burst_of_new_connections() {
    let site = Arc::new(Site::new());
    let up = site.upstream(Http::V1).await;
    // No idle connections kept: every request opens its own, the worst
    // case for the upstream's handshake cost.
    let tg = site.gateway(&up, "[upstream]\npool_max_idle = 0\n").await;
    concurrent_gets(&site, &tg, "/delay/200", 20).await;
    let (handshakes, resumed) = (up.conns.handshakes(), up.conns.resumed());
    // 20 connections at once: each takes a ticket the earlier ones left.
    // rustls' own store keeps 8, so 12 of these would be full handshakes.
    concurrent_gets(&site, &tg, "/delay/200", 20).await;
    assert_eq!(up.conns.handshakes() - handshakes, 20);
    assert_eq!(
        up.conns.resumed() - resumed,
        20,
        "every new connection resumed"
    );
}
