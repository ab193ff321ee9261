//! PROXY protocol (issue 25, part 1): behind a real layer-4 balancer
//! (HAProxy in TCP mode, `send-proxy` and `send-proxy-v2`) and with
//! crafted headers, the address the header carries is the client's for the
//! admin gate, the X-Forwarded-For the upstream receives and the access
//! log; a header from a peer not listed, a missing, malformed, truncated
//! or late one closes the connection and is counted.
//!
//! Loopback has all of 127.0.0.0/8: the client, the balancer and the
//! headers' addresses are told apart by which 127.x each uses.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

/// The address HAProxy connects to gisgate from.
const BALANCER: &str = "127.0.0.2";
/// A client the admin allowlist below admits, and one it does not.
const INSIDE: &str = "127.0.0.1";
const OUTSIDE: &str = "127.0.0.3";

/// PROXY protocol on (`mode`), only from the balancer; admin only from
/// `INSIDE`; `server` adds lines to `[server]`, `rest` tables.
fn behind_balancer(mode: &str, server: &str, rest: &str) -> String {
    format!(
        "[server]\nproxy_protocol = \"{mode}\"\nproxy_protocol_from = [\"{BALANCER}\"]\n{server}[admin]\nallowed_ips = [\"{INSIDE}/32\"]\n{rest}"
    )
}

/// `gisgate_proxy_protocol_errors_total{reason}` now. The metrics are the
/// process's, shared by this file's tests: each looks at what it adds.
async fn errors(tg: &TestGateway, reason: &str) -> u64 {
    let line = format!("gisgate_proxy_protocol_errors_total{{reason=\"{reason}\"}} ");
    tg.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Waits until the count for `reason` has grown by `by` from `before`.
async fn counted(tg: &TestGateway, reason: &str, before: u64, by: u64) {
    let mut now = before;
    for _ in 0..400 {
        now = errors(tg, reason).await;
        if now >= before + by {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{reason}: counted {now}, expected {before} + {by}");
}

/// Which header HAProxy sends.
#[derive(Clone, Copy, Debug)]
enum Header {
    V1,
    V2,
}

impl Header {
    fn haproxy_option(self) -> &'static str {
        match self {
            Header::V1 => "send-proxy",
            Header::V2 => "send-proxy-v2",
        }
    }
    fn mode(self) -> &'static str {
        match self {
            Header::V1 => "v1",
            Header::V2 => "v2",
        }
    }
}

/// HAProxy in TCP mode on loopback in front of `backend`, connecting to it
/// from `BALANCER`; stopped when dropped.
struct Haproxy {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    async fn start(program: &Path, backend: SocketAddr, header: Header) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(
            &cfg,
            format!(
                "global\n    maxconn 200\n\
                 defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
                 frontend fe\n    bind 127.0.0.1:{port}\n    default_backend be\n\
                 backend be\n    server gw {backend} {} source {BALANCER}\n",
                header.haproxy_option()
            ),
        )
        .unwrap();
        let child = Command::new(program)
            .arg("-f")
            .arg(&cfg)
            .arg("-db")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        eventually(Duration::from_secs(10), || async {
            TcpStream::connect(addr).await.is_ok()
        })
        .await;
        Haproxy {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn haproxy() -> Option<PathBuf> {
    real_peer("haproxy", &["/usr/sbin/haproxy"])
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// Sends `request` over TLS (as `localhost`) on `tcp`, after `preamble`
/// (a PROXY header, or nothing), and reads until the server closes.
async fn tls_exchange(site: &Site, mut tcp: TcpStream, preamble: &[u8], request: &str) -> String {
    tcp.write_all(preamble).await.unwrap();
    let config = client_config(site.ca.roots(), &[b"http/1.1"]);
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
}

/// A v2 header: PROXY (or LOCAL) over TCP from `source` to 127.0.0.1:6443,
/// then `tlvs`.
fn v2(command: u8, source: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    let family = match source.ip() {
        IpAddr::V4(ip) => {
            body.extend_from_slice(&ip.octets());
            body.extend_from_slice(&[127, 0, 0, 1]);
            0x11
        }
        IpAddr::V6(ip) => {
            body.extend_from_slice(&ip.octets());
            body.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
            0x21
        }
    };
    body.extend_from_slice(&source.port().to_be_bytes());
    body.extend_from_slice(&6443u16.to_be_bytes());
    body.extend_from_slice(tlvs);
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x20 | command);
    h.push(family);
    h.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    h.extend_from_slice(&body);
    h
}

const PROXY: u8 = 1;
const LOCAL: u8 = 0;

/// Whether the gateway closes `tcp` without a byte in answer to
/// `preamble`.
async fn closed_without_answer(mut tcp: TcpStream, preamble: &[u8]) -> bool {
    let _ = tcp.write_all(preamble).await;
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

async fn through_haproxy_the_header_address_is_the_client(header: Header) {
    let Some(program) = haproxy() else { return };
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = site
        .gateway(&up, &behind_balancer(header.mode(), "", ""))
        .await;
    let lb = Haproxy::start(&program, tg.https(), header).await;

    // The gateway's TCP peer is the balancer, outside the allowlist: only
    // the header can make this 200.
    let inside = tls_exchange(
        &site,
        connect_from(INSIDE, lb.addr).await,
        b"",
        &get_request("/arcgis/admin/"),
    )
    .await;
    assert_eq!(status_of(&inside), 200, "{header:?}: {inside}");
    assert_eq!(up.last().headers["x-forwarded-for"], INSIDE);

    let outside = tls_exchange(
        &site,
        connect_from(OUTSIDE, lb.addr).await,
        b"",
        &get_request("/arcgis/admin/"),
    )
    .await;
    assert_eq!(status_of(&outside), 403, "{header:?}: {outside}");
    let rest = tls_exchange(
        &site,
        connect_from(OUTSIDE, lb.addr).await,
        b"",
        &get_request("/arcgis/rest/services"),
    )
    .await;
    assert_eq!(status_of(&rest), 200, "{header:?}: {rest}");
    assert_eq!(up.last().headers["x-forwarded-for"], OUTSIDE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_send_proxy_v1_carries_the_client_address_to_the_admin_gate_and_upstream() {
    through_haproxy_the_header_address_is_the_client(Header::V1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_send_proxy_v2_carries_the_client_address_to_the_admin_gate_and_upstream() {
    through_haproxy_the_header_address_is_the_client(Header::V2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_in_front_of_the_http_listener_carries_the_client_address() {
    let Some(program) = haproxy() else { return };
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let overlay = behind_balancer("any", "protocol = \"HTTP_AND_HTTPS\"\n", "");
    let tg = site.gateway(&up, &overlay).await;
    let lb = Haproxy::start(&program, tg.http(), Header::V2).await;
    let mut tcp = connect_from(OUTSIDE, lb.addr).await;
    tcp.write_all(get_request("/arcgis/rest/services").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut out)).await;
    assert_eq!(status_of(&out), 200, "{out}");
    assert_eq!(up.last().headers["x-forwarded-for"], OUTSIDE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_names_the_client_the_header_carries() {
    let Some(program) = haproxy() else { return };
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let (https, observe) = (free_port(), free_port());
    let text = site.config(
        up.addr,
        &behind_balancer(
            "v2",
            &format!("https_listen = \"127.0.0.1:{https}\"\nhttp_listen = \"\"\n"),
            &format!("[observability]\nlisten = \"127.0.0.1:{observe}\"\n[log]\nformat = \"json\"\nlevel = \"info\"\n"),
        ),
    );
    let path = site.write_config(&text);
    let addr: SocketAddr = format!("127.0.0.1:{https}").parse().unwrap();
    let mut gisgate = gateway_process(&path, addr).await;
    let lb = Haproxy::start(&program, addr, Header::V2).await;
    let r = tls_exchange(
        &site,
        connect_from(OUTSIDE, lb.addr).await,
        b"",
        &get_request("/arcgis/rest/services"),
    )
    .await;
    assert_eq!(status_of(&r), 200, "{r}");
    let _ = gisgate.kill();
    let stderr = gisgate.stderr.take().unwrap();
    let _ = gisgate.wait();
    let log = std::io::read_to_string(stderr).unwrap();
    let access: serde_json::Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["target"] == "gisgate::access")
        .unwrap_or_else(|| panic!("no access line in:\n{log}"));
    assert_eq!(access["client"], OUTSIDE, "{access}");
    assert_eq!(access["peer"], OUTSIDE, "{access}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crafted_v2_headers_with_ipv6_or_tlvs_name_the_client() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let overlay = "[server]\nproxy_protocol = \"any\"\nproxy_protocol_from = [\"127.0.0.0/8\"]\n[admin]\nallowed_ips = [\"2001:db8::5\", \"192.0.2.5\"]\n";
    let tg = site.gateway(&up, overlay).await;
    let v6: SocketAddr = "[2001:db8::5]:50000".parse().unwrap();
    let r = tls_exchange(
        &site,
        TcpStream::connect(tg.https()).await.unwrap(),
        &v2(PROXY, v6, &[]),
        &get_request("/arcgis/admin/"),
    )
    .await;
    assert_eq!(status_of(&r), 200, "{r}");
    assert_eq!(up.last().headers["x-forwarded-for"], "2001:db8::5");
    // PP2_TYPE_AUTHORITY, a NOOP and a vendor TLV: read past, ignored.
    let mut tlvs = vec![0x02, 0x00, 0x0b];
    tlvs.extend_from_slice(b"gis.example");
    tlvs.extend_from_slice(&[0x04, 0x00, 0x02, 0, 0, 0xEA, 0x00, 0x01, 0x07]);
    let v4: SocketAddr = "192.0.2.5:50000".parse().unwrap();
    let r = tls_exchange(
        &site,
        TcpStream::connect(tg.https()).await.unwrap(),
        &v2(PROXY, v4, &tlvs),
        &get_request("/arcgis/admin/"),
    )
    .await;
    assert_eq!(status_of(&r), 200, "{r}");
    assert_eq!(up.last().headers["x-forwarded-for"], "192.0.2.5");
    let v1 = b"PROXY TCP6 2001:db8::6 ::1 50000 6443\r\n";
    let r = tls_exchange(
        &site,
        TcpStream::connect(tg.https()).await.unwrap(),
        v1,
        &get_request("/arcgis/admin/"),
    )
    .await;
    assert_eq!(status_of(&r), 403, "2001:db8::6 is not allowed: {r}");
    assert_eq!(up.count(), 2, "the refused one did not reach the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_or_unknown_header_means_the_tcp_peer_is_the_client() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let overlay = "[server]\nproxy_protocol = \"any\"\nproxy_protocol_from = [\"127.0.0.0/8\"]\n[admin]\nallowed_ips = [\"127.0.0.5\"]\n";
    let tg = site.gateway(&up, overlay).await;
    // LOCAL (a balancer's health check) carrying another address: not
    // the client's.
    let elsewhere: SocketAddr = "192.0.2.9:1".parse().unwrap();
    for preamble in [v2(LOCAL, elsewhere, &[]), b"PROXY UNKNOWN\r\n".to_vec()] {
        let r = tls_exchange(
            &site,
            connect_from("127.0.0.5", tg.https()).await,
            &preamble,
            &get_request("/arcgis/admin/"),
        )
        .await;
        assert_eq!(status_of(&r), 200, "{r}");
        assert_eq!(up.last().headers["x-forwarded-for"], "127.0.0.5");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_missing_malformed_truncated_and_unsupported_headers_close_and_are_counted() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = site
        .gateway(
            &up,
            "[server]\nproxy_protocol = \"v2\"\nproxy_protocol_from = [\"127.0.0.2\"]\n",
        )
        .await;
    let client: SocketAddr = "192.0.2.5:50000".parse().unwrap();
    let header = v2(PROXY, client, &[]);
    let cases: [(&str, &str, Vec<u8>); 4] = [
        ("untrusted_peer", "127.0.0.1", header.clone()),
        (
            "missing",
            BALANCER,
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        ),
        ("malformed", BALANCER, {
            // Its address block is shorter than IPv4's.
            let mut h = header.clone();
            h[15] = 4;
            h.truncate(20);
            h
        }),
        (
            "unsupported",
            BALANCER,
            b"PROXY TCP4 192.0.2.5 127.0.0.1 1 2\r\n".to_vec(),
        ),
    ];
    for (reason, from, preamble) in cases {
        let before = errors(&tg, reason).await;
        let tcp = connect_from(from, tg.https()).await;
        assert!(closed_without_answer(tcp, &preamble).await, "{reason}");
        counted(&tg, reason, before, 1).await;
    }
    // Truncated: the peer closes after part of a header.
    let before = errors(&tg, "malformed").await;
    let mut tcp = connect_from(BALANCER, tg.https()).await;
    tcp.write_all(&header[..20]).await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await;
    assert!(matches!(n, Ok(Ok(0) | Err(_))), "closed");
    counted(&tg, "malformed", before, 1).await;
    assert_eq!(up.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_sends_nothing_or_half_a_header_is_closed_at_the_header_timeout() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = site
        .gateway(
            &up,
            "[server]\nproxy_protocol = \"any\"\nproxy_protocol_from = [\"127.0.0.1\"]\n[limits]\nheader_read_timeout = \"1s\"\n",
        )
        .await;
    let header = v2(PROXY, "192.0.2.5:1".parse().unwrap(), &[]);
    let before = errors(&tg, "timeout").await;
    for preamble in [&b""[..], &header[..20], b"PROXY TCP4 192.0"] {
        let started = std::time::Instant::now();
        let tcp = TcpStream::connect(tg.https()).await.unwrap();
        assert!(closed_without_answer(tcp, preamble).await);
        assert!(started.elapsed() < Duration::from_secs(8), "closed at ~1 s");
    }
    counted(&tg, "timeout", before, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_turns_the_protocol_on_and_off_for_new_connections() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = site.gateway(&up, "").await;
    let header = v2(PROXY, "192.0.2.5:1".parse().unwrap(), &[]);
    let services = get_request("/arcgis/rest/services");
    let plain = |tcp| tls_exchange(&site, tcp, b"", &services);
    // Off: served as ever; a header is no TLS ClientHello.
    assert_eq!(
        status_of(&plain(TcpStream::connect(tg.https()).await.unwrap()).await),
        200
    );
    let mut tcp = TcpStream::connect(tg.https()).await.unwrap();
    tcp.write_all(&header).await.unwrap();
    let config = client_config(site.ca.roots(), &[b"http/1.1"]);
    let handshake = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await;
    assert!(
        handshake.is_err(),
        "off: a header is a malformed ClientHello"
    );

    let on = "[server]\nproxy_protocol = \"v2\"\nproxy_protocol_from = [\"127.0.0.1\"]\n";
    std::fs::write(&tg.config_path, site.config(up.addr, on)).unwrap();
    tg.gw.reload().await.unwrap();
    let r = tls_exchange(
        &site,
        TcpStream::connect(tg.https()).await.unwrap(),
        &header,
        &get_request("/arcgis/rest/services"),
    )
    .await;
    assert_eq!(status_of(&r), 200, "{r}");
    assert_eq!(up.last().headers["x-forwarded-for"], "192.0.2.5");
    let before = errors(&tg, "missing").await;
    let tcp = TcpStream::connect(tg.https()).await.unwrap();
    assert!(
        closed_without_answer(tcp, &[22, 3, 1, 0, 5]).await,
        "no header: closed"
    );
    counted(&tg, "missing", before, 1).await;

    std::fs::write(&tg.config_path, site.config(up.addr, "")).unwrap();
    tg.gw.reload().await.unwrap();
    assert_eq!(
        status_of(&plain(TcpStream::connect(tg.https()).await.unwrap()).await),
        200
    );
    assert_eq!(up.last().headers["x-forwarded-for"], "127.0.0.1");
}

fn check(site: &Site, text: &str) -> std::process::Output {
    let path = site.write_config(text);
    Command::new(env!("CARGO_BIN_EXE_gisgate"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap()
}

#[test]
fn check_refuses_the_protocol_on_without_its_peers_naming_the_key_and_its_line() {
    let site = Site::new();
    let text = "[server]\nhttps_listen = \"127.0.0.1:0\"\nproxy_protocol = \"v2\"\n[tls]\ncert = \"gateway.crt\"\nkey = \"gateway.key\"\n[upstream]\nurl = \"https://localhost:7443\"\nca = \"ca.crt\"\n";
    let out = check(&site, text);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("gateway.toml:3:1: server.proxy_protocol:"),
        "{err}"
    );
    assert!(err.contains("server.proxy_protocol_from"), "{err}");
    let bad = text.replace("\"v2\"", "\"v3\"\nproxy_protocol_from = [\"10.0.0.300\"]");
    let err = String::from_utf8_lossy(&check(&site, &bad).stderr).into_owned();
    assert!(
        err.contains("gateway.toml:3:1: server.proxy_protocol: \"v3\""),
        "{err}"
    );
    assert!(
        err.contains("gateway.toml:4:1: server.proxy_protocol_from:"),
        "{err}"
    );
}

#[test]
fn check_shows_the_protocol_and_strict_sni_host() {
    let site = Site::new();
    let text = site.config(
        "127.0.0.1:7443".parse().unwrap(),
        "[server]\nproxy_protocol = \"any\"\nproxy_protocol_from = [\"10.0.0.0/8\"]\n[tls]\nstrict_sni_host = true\n",
    );
    let out = check(&site, &text);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("proxy protocol   any required from [10.0.0.0/8]"),
        "{report}"
    );
    assert!(report.contains("strict SNI/Host  on: 421"), "{report}");
    let off = check(&site, &site.config("127.0.0.1:7443".parse().unwrap(), ""));
    let report = String::from_utf8_lossy(&off.stdout);
    assert!(report.contains("proxy protocol   off"), "{report}");
    assert!(report.contains("strict SNI/Host  off"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_config_shows_the_policy_in_its_gisgate_block() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = site
        .gateway(
            &up,
            "[server]\nproxy_protocol = \"v1\"\nproxy_protocol_from = \"10.0.0.1, 10.1.0.0/16\"\n[tls]\nstrict_sni_host = true\n",
        )
        .await;
    let (_, _, body) =
        plain_request(tg.observe.unwrap(), "GET", "/security/config?f=json", &[]).await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["Protocol"], "HTTPS", "the ArcGIS fields are as they were");
    let block = &v["gisgate"];
    assert_eq!(block["proxyProtocol"], "v1");
    assert_eq!(
        block["proxyProtocolFrom"],
        serde_json::json!(["10.0.0.1/32", "10.1.0.0/16"])
    );
    assert_eq!(block["strictSniHost"], true);
}

#[test]
fn check_against_an_old_config_names_what_changed() {
    let site = Site::new();
    let upstream: SocketAddr = "127.0.0.1:7443".parse().unwrap();
    let old = site.path("old.toml");
    std::fs::write(&old, site.config(upstream, "")).unwrap();
    let new = site.config(
        upstream,
        "[server]\nproxy_protocol = \"v2\"\nproxy_protocol_from = [\"10.0.0.0/8\"]\n[tls]\nstrict_sni_host = true\n",
    );
    let path = site.write_config(&new);
    let out = Command::new(env!("CARGO_BIN_EXE_gisgate"))
        .args(["check", "--config"])
        .arg(&path)
        .arg("--against")
        .arg(&old)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    for change in [
        "server.proxy_protocol: off -> v2",
        "server.proxy_protocol_from: +10.0.0.0/8",
        "tls.strict_sni_host: false -> true",
    ] {
        assert!(lines.contains(&change), "{change}:\n{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_https_mode_the_http_listener_reads_the_header_before_looking_for_tls() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let tg = site
        .gateway(
            &up,
            "[server]\nproxy_protocol = \"v1\"\nproxy_protocol_from = [\"127.0.0.1\"]\n",
        )
        .await;
    // A browser holding HSTS upgrades http://host:6080 itself: TLS, behind
    // the header, on the HTTP listener gets the redirect.
    let r = tls_exchange(
        &site,
        TcpStream::connect(tg.http()).await.unwrap(),
        b"PROXY TCP4 192.0.2.5 127.0.0.1 50000 6080\r\n",
        &get_request("/arcgis/rest/services"),
    )
    .await;
    assert_eq!(status_of(&r), 308, "{r}");
    assert_eq!(up.count(), 0);
}

/// `limits.max_connections_per_ip` counts the client the header carries,
/// not the balancer: two clients behind one balancer each get their own
/// connection, and a client's second one is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_address_connection_limit_counts_the_carried_client() {
    let site = Site::new();
    let up = site.upstream(Http::V1).await;
    let overlay = behind_balancer("v2", "", "[limits]\nmax_connections_per_ip = 1\n");
    let tg = site.gateway(&up, &overlay).await;
    let client = |ip: &str| SocketAddr::new(ip.parse().unwrap(), 40000);
    // One client's connection, held open (TLS done, no request yet).
    let mut held = connect_from(BALANCER, tg.https()).await;
    held.write_all(&v2(PROXY, client("192.0.2.1"), &[]))
        .await
        .unwrap();
    let config = client_config(site.ca.roots(), &[b"http/1.1"]);
    let mut held = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), held)
        .await
        .expect("TLS handshake");
    // Another client behind the same balancer: served.
    let r = tls_exchange(
        &site,
        connect_from(BALANCER, tg.https()).await,
        &v2(PROXY, client("192.0.2.2"), &[]),
        &get_request("/arcgis/rest/info"),
    )
    .await;
    assert_eq!(status_of(&r), 200, "{r}");
    // The first client again, while its connection is open: closed.
    assert!(
        closed_without_answer(
            connect_from(BALANCER, tg.https()).await,
            &v2(PROXY, client("192.0.2.1"), &[]),
        )
        .await
    );
    // Its held connection still works.
    held.write_all(get_request("/arcgis/rest/info").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), held.read_to_end(&mut out)).await;
    assert_eq!(status_of(&String::from_utf8_lossy(&out)), 200);
}
