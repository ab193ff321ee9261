//! Opens N TLS keep-alive connections to ADDR, makes one HTTP/1.1 request
//! on each, prints `open N` when all are idle, holds them HOLD seconds and
//! exits. For bench/idle-conns.sh (memory per idle connection).
//!
//!     idle_conns 127.0.0.1:19443 10000 5 ca.crt

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr: std::net::SocketAddr = args[1].parse().expect("ADDR");
    let n: usize = args[2].parse().expect("N");
    let hold: u64 = args[3].parse().expect("HOLD");
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&args[4]).expect("CA file") {
        roots.add(c.expect("CA cert")).expect("CA cert");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut held = Vec::with_capacity(n);
    let request = format!(
        "GET /arcgis/rest/info?f=json HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
        addr.port()
    );
    for batch in (0..n).collect::<Vec<_>>().chunks(100) {
        let mut tasks = Vec::new();
        for _ in batch {
            let connector = connector.clone();
            let request = request.clone();
            tasks.push(tokio::spawn(async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
                let mut tls = connector
                    .connect(ServerName::try_from("localhost").unwrap(), tcp)
                    .await
                    .ok()?;
                tls.write_all(request.as_bytes()).await.ok()?;
                let mut buf = vec![0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await;
                Some(tls)
            }));
        }
        for t in tasks {
            if let Ok(Some(tls)) = t.await {
                held.push(tls);
            }
        }
    }
    println!("open {}", held.len());
    tokio::time::sleep(Duration::from_secs(hold)).await;
    drop(held);
}
