//! SIGTERM (SPEC §5): /readyz turns 503, listeners close, in-flight work
//! gets `limits.shutdown_grace`; with nothing in flight the process exits
//! at once, whatever probes and scrapes left open (issue 21).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Running {
    child: Child,
    https: std::net::SocketAddr,
    observe: std::net::SocketAddr,
    log: std::sync::mpsc::Receiver<String>,
}

/// Starts `gisgate run` in front of `up`, with `extra` TOML.
async fn run_gateway(site: &Site, up: &TestUpstream, extra: &str) -> Running {
    let (https, observe) = (free_port(), free_port());
    let text = site.config(
        up.addr,
        &format!(
            "[server]\nhttps_listen = \"127.0.0.1:{https}\"\nhttp_listen = \"\"\n[observability]\nlisten = \"127.0.0.1:{observe}\"\n[log]\nlevel = \"info\"\n{extra}"
        ),
    );
    let path = site.write_config(&text);
    let mut child = Command::new(env!("CARGO_BIN_EXE_gisgate"))
        .args(["run", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, log) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let https = format!("127.0.0.1:{https}").parse().unwrap();
    let observe = format!("127.0.0.1:{observe}").parse().unwrap();
    eventually(Duration::from_secs(20), || async {
        TcpStream::connect(https).await.is_ok()
    })
    .await;
    Running {
        child,
        https,
        observe,
        log,
    }
}

impl Running {
    fn sigterm(&self) {
        let kill = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
    }

    /// Waits for the exit, at most `within`; returns the exit code, the
    /// time it took and the log.
    fn wait(mut self, within: Duration) -> (Option<i32>, Duration, String) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log: Vec<String> = self.log.try_iter().collect();
                return (status.code(), started.elapsed(), log.join("\n"));
            }
            if started.elapsed() > within {
                let _ = self.child.kill();
                let log: Vec<String> = self.log.try_iter().collect();
                panic!(
                    "still running {within:?} after SIGTERM; log:\n{}",
                    log.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One request on a keep-alive plain-HTTP connection, left open.
async fn probe(addr: std::net::SocketAddr, path: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    tcp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_nothing_in_flight_exits_at_once_though_probes_kept_their_connections() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let gw = run_gateway(&site, &up, "").await;
    // The kubelet's probe and Prometheus' scrape keep their connections.
    let _healthz = probe(gw.observe, "/healthz").await;
    let _metrics = probe(gw.observe, "/metrics").await;
    // An idle keep-alive client on the public port, HTTP/1.1 and HTTP/2.
    let mut idle = keep_alive_connection(&site, gw.https).await;
    let reply = request_on(&mut idle, get("/arcgis/rest/info", &[]))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let h2 = tls_connect(gw.https, client_config(site.ca.roots(), &[b"h2"]))
        .await
        .unwrap();
    let reply = send_on(h2, true, get("/arcgis/rest/info", &[])).await;
    assert_eq!(reply.status, 200);
    gw.sigterm();
    // The grace is 30 s: "at once" is far below it.
    let (code, took, log) = tokio::task::spawn_blocking(move || gw.wait(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{log}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(log.contains("drained; all connections closed"), "{log}");
    assert!(!log.contains("still open"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_websocket_tunnel_gets_the_shutdown_grace_then_closes() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let gw = run_gateway(&site, &up, "[limits]\nshutdown_grace = \"3s\"\n").await;
    let mut ws = websocket(&site, gw.https).await;
    let mut buf = [0u8; 4096];
    gw.sigterm();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Within the grace the tunnel still carries data both ways.
    ws.write_all(b"ping").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), ws.read(&mut buf))
        .await
        .expect("echo in time")
        .expect("the tunnel is still open within the grace");
    assert_eq!(&buf[..n], b"ping");
    let (code, took, log) = tokio::task::spawn_blocking(move || gw.wait(Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        took >= Duration::from_secs(1),
        "the tunnel was not waited for"
    );
    assert!(
        log.contains("passed with 1 connection(s) still open"),
        "{log}"
    );
}

#[test]
fn ctrl_c_on_the_demo_logs_the_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gisgate"))
        .arg("demo")
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read to the end, in a thread: the demo must never find its stdout
    // closed (it would fail printing).
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (started, running) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if line.contains("gisgate demo is running") {
                let _ = started.send(());
            }
        }
    });
    assert!(
        running.recv_timeout(Duration::from_secs(60)).is_ok(),
        "the demo did not start"
    );
    let stderr = child.stderr.take().unwrap();
    let (tx, log) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let running = Running {
        child,
        https: "127.0.0.1:6443".parse().unwrap(),
        observe: "127.0.0.1:9090".parse().unwrap(),
        log,
    };
    let int = Command::new("kill")
        .args(["-INT", &running.child.id().to_string()])
        .status()
        .unwrap();
    assert!(int.success());
    let (code, _, log) = running.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("shutdown signal received"), "{log}");
    assert!(log.contains("drained; all connections closed"), "{log}");
}
