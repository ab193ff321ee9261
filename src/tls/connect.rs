//! Opening a verified TLS connection to the upstream: TCP within
//! `upstream.connect_timeout`, then the handshake. Shared by the HTTP/1.1
//! pool, the HTTP/2 connections and the client that picks between them.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;

use super::stream::{self, ClientStream};
use crate::config::Upstream;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Opens verified TLS connections to the upstream, offering its ALPN
/// protocols: the pool's http/1.1, the HTTP/2 connections' h2, the first
/// connection with `prefer_http2` both.
#[derive(Clone)]
pub struct Connector {
    settings: Upstream,
    tls: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl Connector {
    pub fn new(
        settings: Upstream,
        tls: Arc<ClientConfig>,
        server_name: ServerName<'static>,
    ) -> Self {
        Connector {
            settings,
            tls,
            server_name,
        }
    }

    /// TCP and the TLS handshake together within `upstream.connect_timeout`
    /// (as nginx's `proxy_connect_timeout` bounds its SSL handshake): an
    /// upstream that accepts and then says nothing must not hold the
    /// request, nor the first connection every other request waits on
    /// (`UpstreamClient::protocol`).
    pub async fn connect(&self) -> std::io::Result<UpstreamStream> {
        let limit = self.settings.connect_timeout;
        let connect = async {
            let tcp = connect_tcp(&self.settings)
                .await
                .map_err(ConnectError::into_io)?;
            let name = self.server_name.clone();
            stream::connect(tcp, self.tls.clone(), name, UPSTREAM_READ_SIZE).await
        };
        tokio::time::timeout(limit, connect)
            .await
            .unwrap_or_else(|_| Err(ConnectError::Timeout(limit).into_io()))
    }
}

pub type UpstreamStream = ClientStream;

/// A read takes what the socket holds, up to this much: a 64 KiB tile in
/// one or two `recvfrom` calls (`strace`; tokio-rustls, reading 4 KiB at a
/// time until its buffer had grown to a record, made 8, and 3 with a
/// 64 KiB `BufReader` below it). Upstream connections are few (the pool),
/// so the memory is spent there and not on every client.
const UPSTREAM_READ_SIZE: usize = 64 * 1024;

/// Why no TCP connection to the upstream could be made, built where it
/// failed (the TLS handshake's failures are rustls' own errors).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot resolve the upstream host: {0}")]
    Resolve(#[source] std::io::Error),
    #[error("connection refused")]
    Refused(#[source] std::io::Error),
    #[error("connect timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("connect failed: {0}")]
    Io(#[source] std::io::Error),
}

impl ConnectError {
    fn from_connect(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::ConnectionRefused => ConnectError::Refused(e),
            _ => ConnectError::Io(e),
        }
    }

    /// Carried as an `io::Error` through the connection's stream types;
    /// `classify` finds it again.
    fn into_io(self) -> std::io::Error {
        let kind = match &self {
            ConnectError::Refused(_) => std::io::ErrorKind::ConnectionRefused,
            ConnectError::Timeout(_) => std::io::ErrorKind::TimedOut,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, self)
    }
}

/// A TCP connection to the upstream, trying each resolved address in
/// turn (bounded with the handshake by `Connector::connect`).
async fn connect_tcp(s: &Upstream) -> Result<TcpStream, ConnectError> {
    let connect = async {
        let addrs = tokio::net::lookup_host((s.host.as_str(), s.port))
            .await
            .map_err(ConnectError::Resolve)?;
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    return Ok(tcp);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => ConnectError::from_connect(e),
            None => ConnectError::Resolve(std::io::Error::other("no address")),
        })
    };
    connect.await
}
