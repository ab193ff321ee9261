//! One raw HTTP/1.1 exchange over TLS: the request's bytes exactly as given
//! (ordinary clients would normalise the tricky targets away), the answer
//! read until the server closes.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Sends `request` to `addr` as `localhost` and returns everything the
/// server wrote before closing (lossily as text: answers here are ASCII
/// heads and small bodies). The whole exchange is bounded: a peer that
/// neither answers nor closes is an error, not a hung test.
pub async fn raw_exchange(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    request: &[u8],
) -> io::Result<String> {
    let exchange = async {
        let tcp = TcpStream::connect(addr).await?;
        let mut tls = TlsConnector::from(config)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await?;
        tls.write_all(request).await?;
        let mut out = Vec::new();
        // A peer may reset instead of closing cleanly after an error answer:
        // what it sent before still counts.
        if let Err(e) = tls.read_to_end(&mut out).await {
            if out.is_empty() {
                return Err(e);
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer within 20 s"))?
}
