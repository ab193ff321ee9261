//! Opening a verified TLS connection to the upstream: TCP within
//! `upstream.connect_timeout`, then the handshake. Shared by the HTTP/1.1
//! pool, the HTTP/2 connections and the client that picks between them.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;

use super::error::UpstreamError;
use crate::config::Upstream;
use crate::tls::stream::{self, ClientStream};

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
    pub async fn connect(&self) -> Result<UpstreamStream, UpstreamError> {
        let limit = self.settings.connect_timeout;
        let connect = async {
            let tcp = connect_tcp(&self.settings).await?;
            let name = self.server_name.clone();
            stream::connect(tcp, self.tls.clone(), name, UPSTREAM_READ_SIZE)
                .await
                .map_err(UpstreamError::from_handshake)
        };
        tokio::time::timeout(limit, connect)
            .await
            .unwrap_or(Err(UpstreamError::ConnectTimeout(limit)))
    }
}

pub type UpstreamStream = ClientStream;

/// A read takes what the socket holds, up to this much: a 64 KiB tile in
/// one or two `recvfrom` calls (`strace`; tokio-rustls, reading 4 KiB at a
/// time until its buffer had grown to a record, made 8, and 3 with a
/// 64 KiB `BufReader` below it). Upstream connections are few (the pool),
/// so the memory is spent there and not on every client.
const UPSTREAM_READ_SIZE: usize = 64 * 1024;

/// A TCP connection to the upstream, trying each resolved address in
/// turn (bounded with the handshake by `Connector::connect`).
async fn connect_tcp(s: &Upstream) -> Result<TcpStream, UpstreamError> {
    let connect = async {
        let addrs = tokio::net::lookup_host((s.host.as_str(), s.port))
            .await
            .map_err(UpstreamError::Dns)?;
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
            Some(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                UpstreamError::Refused(e)
            }
            Some(e) => UpstreamError::Connect(e),
            None => UpstreamError::Dns(std::io::Error::other("no address")),
        })
    };
    connect.await
}
