//! Soak: hostile clients of every kind next to normal traffic, for a
//! bounded time, against the real binary (issue 21). Normal clients must
//! keep being served, the gateway's memory must stay bounded, and every
//! connection must be gone once the clients are.
//!
//! CI runs it for 20 s against the debug build. The full run (figures in
//! README, Resilience), against the release build:
//!
//!   cargo build --release
//!   GISGATE_BIN=target/release/gisgate GISGATE_SOAK_SECS=180 \
//!     cargo test --test soak -- --nocapture

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Default)]
struct Counts {
    normal_ok: AtomicU64,
    normal_failed: AtomicU64,
    hostile: AtomicU64,
}

/// Runs `client` in a loop until `stop`, `n` of them at once.
fn swarm<F, Fut>(n: usize, stop: &Arc<AtomicBool>, client: F) -> Vec<tokio::task::JoinHandle<()>>
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    (0..n)
        .map(|_| {
            let (stop, client) = (stop.clone(), client.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    client().await;
                }
            })
        })
        .collect()
}

async fn tls(
    site: &Site,
    addr: std::net::SocketAddr,
    alpn: &[u8],
) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
    tls_connect(addr, client_config(site.ca.roots(), &[alpn]))
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_beside_normal_ones_leave_the_gateway_serving_and_bounded() {
    let secs: u64 = std::env::var("GISGATE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let site = Arc::new(Site::new());
    let up = site.upstream(Http::V1).await;
    let (https, observe) = (free_port(), free_port());
    let text = site.config(
        up.addr,
        &format!(
            "[server]\nhttps_listen = \"127.0.0.1:{https}\"\nhttp_listen = \"\"\n\
             [observability]\nlisten = \"127.0.0.1:{observe}\"\n\
             [limits]\nheader_read_timeout = \"2s\"\nidle_timeout = \"2s\"\nsend_timeout = \"2s\"\nmax_connections = 400\n\
             [log]\nlevel = \"error\"\n"
        ),
    );
    let path = site.write_config(&text);
    // GISGATE_BIN: a release build to soak, the test itself in debug.
    let bin = std::env::var("GISGATE_BIN").unwrap_or(env!("CARGO_BIN_EXE_gisgate").to_string());
    let child = Command::new(bin)
        .args(["run", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let _gateway = Gateway(child);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{https}").parse().unwrap();
    let observe: std::net::SocketAddr = format!("127.0.0.1:{observe}").parse().unwrap();
    eventually(Duration::from_secs(20), || async {
        TcpStream::connect(addr).await.is_ok()
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let mut tasks = Vec::new();

    // Normal clients: HTTP/1.1 keep-alive and HTTP/2, each request within 5 s.
    for h2 in [false, true] {
        let (site, counts) = (site.clone(), counts.clone());
        tasks.extend(swarm(4, &stop, move || {
            let (site, counts) = (site.clone(), counts.clone());
            async move {
                let req = get("/arcgis/rest/info?f=json", &[]);
                let sent = tokio::time::timeout(
                    Duration::from_secs(5),
                    https_request(&site, addr, h2, req),
                )
                .await;
                match sent {
                    Ok(r) if r.status == 200 => counts.normal_ok.fetch_add(1, Ordering::Relaxed),
                    _ => counts.normal_failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }

    // Slowloris: a header byte every 500 ms (header_read_timeout 2 s).
    let (s, c) = (site.clone(), counts.clone());
    tasks.extend(swarm(10, &stop, move || {
        let (site, counts) = (s.clone(), c.clone());
        async move {
            let Some(mut t) = tls(&site, addr, b"http/1.1").await else {
                return;
            };
            counts.hostile.fetch_add(1, Ordering::Relaxed);
            for b in b"GET /arcgis/rest/info HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
                .iter()
                .cycle()
            {
                if t.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }));

    // HTTP/2 clients that never answer anything, not even PING.
    let (s, c) = (site.clone(), counts.clone());
    tasks.extend(swarm(10, &stop, move || {
        let (site, counts) = (s.clone(), c.clone());
        async move {
            let Some(mut t) = tls(&site, addr, b"h2").await else {
                return;
            };
            counts.hostile.fetch_add(1, Ordering::Relaxed);
            let _ = t
                .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
                .await;
            let mut buf = vec![0u8; 16 * 1024];
            while matches!(t.read(&mut buf).await, Ok(n) if n > 0) {}
        }
    }));

    // HTTP/1.1 clients that never read their (large) response.
    let (s, c) = (site.clone(), counts.clone());
    tasks.extend(swarm(5, &stop, move || {
        let (site, counts) = (s.clone(), c.clone());
        async move {
            let Some(mut t) = tls(&site, addr, b"http/1.1").await else {
                return;
            };
            counts.hostile.fetch_add(1, Ordering::Relaxed);
            let _ = t
                .write_all(b"GET /big/100000000 HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .await;
            // Holds the connection; the gateway's send timeout ends it.
            let mut buf = [0u8; 1];
            tokio::time::sleep(Duration::from_secs(3)).await;
            while matches!(t.read(&mut buf).await, Ok(n) if n > 0) {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }));

    // HTTP/2 clients with 20 streams each, never read.
    let (s, c) = (site.clone(), counts.clone());
    tasks.extend(swarm(2, &stop, move || {
        let (site, counts) = (s.clone(), c.clone());
        async move {
            let Some(t) = tls(&site, addr, b"h2").await else {
                return;
            };
            counts.hostile.fetch_add(1, Ordering::Relaxed);
            let Ok((mut sender, conn)) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(t)).await
            else {
                return;
            };
            let conn = tokio::spawn(conn);
            let mut held = Vec::new();
            for _ in 0..20 {
                let req = Request::get("https://localhost/big/10000000")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                match sender.send_request(req).await {
                    Ok(r) => held.push(r),
                    Err(_) => break,
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
        }
    }));

    // Crafted requests, each refused or answered.
    let (s, c) = (site.clone(), counts.clone());
    tasks.extend(swarm(2, &stop, move || {
        let (site, counts) = (s.clone(), c.clone());
        async move {
            for raw in [
                "POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
                "GET /arcgis/rest#/../admin HTTP/1.1\r\nHost: localhost\r\n\r\n",
                "GET /arcgis\\admin HTTP/1.1\r\nHost: localhost\r\n\r\n",
                "CONNECT localhost:6443 HTTP/1.1\r\nHost: localhost\r\n\r\n",
                "GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
                "POST /upload HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
            ] {
                let Some(mut t) = tls(&site, addr, b"http/1.1").await else { return };
                counts.hostile.fetch_add(1, Ordering::Relaxed);
                let _ = t.write_all(raw.as_bytes()).await;
                let mut buf = [0u8; 512];
                let _ = tokio::time::timeout(Duration::from_secs(5), t.read(&mut buf)).await;
            }
        }
    }));

    // TCP connections that never start TLS.
    let c = counts.clone();
    tasks.extend(swarm(10, &stop, move || {
        let counts = c.clone();
        async move {
            let Ok(mut tcp) = TcpStream::connect(addr).await else {
                return;
            };
            counts.hostile.fetch_add(1, Ordering::Relaxed);
            let mut buf = [0u8; 64];
            let _ = tokio::time::timeout(Duration::from_secs(30), tcp.read(&mut buf)).await;
        }
    }));

    // Sample memory while it runs.
    let started = Instant::now();
    let mut rss = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss.push(rss_kib(pid));
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }
    // Every client gone: every connection closes.
    let mut active = String::new();
    let gone = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let (_, _, body) = plain_request(observe, "GET", "/metrics", &[]).await;
            let text = String::from_utf8_lossy(&body).into_owned();
            active = text
                .lines()
                .filter(|l| l.starts_with("gisgate_connections_active{listener=\"https\"}"))
                .collect();
            if active.ends_with(" 0") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;

    let ok = counts.normal_ok.load(Ordering::Relaxed);
    let failed = counts.normal_failed.load(Ordering::Relaxed);
    let hostile = counts.hostile.load(Ordering::Relaxed);
    let half = rss.len() / 2;
    let first_max = rss[..half].iter().max().copied().unwrap_or(0);
    let second_max = rss[half..].iter().max().copied().unwrap_or(0);
    println!(
        "soak {secs} s: normal requests {ok} served, {failed} failed; hostile connections {hostile}; \
         RSS max first half {first_max} KiB, second half {second_max} KiB, at the end {} KiB; \
         connections active after: {active}",
        rss.last().copied().unwrap_or(0)
    );
    assert!(
        gone.is_ok(),
        "connections still open after the clients left: {active}"
    );
    assert!(ok > 0, "no normal request was served");
    assert_eq!(failed, 0, "normal requests failed beside the hostile ones");
    assert!(hostile > 0);
    // Bounded: no growth from the first half of the run to the second
    // beyond the noise of allocator pages (a leak per hostile connection
    // would grow with their count).
    assert!(
        second_max <= first_max + first_max / 2 + 8 * 1024,
        "memory grew: {rss:?}"
    );
}
