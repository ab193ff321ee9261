//! The server name a connection's ClientHello asks for, read before the
//! handshake so that the server config (its client-certificate policy) can
//! be chosen by it. The socket is peeked, not read: the handshake then
//! reads the same bytes. rustls' own `Acceptor` parses the hello.

use std::io;
use std::time::Duration;

use rustls::server::Acceptor;
use tokio::net::TcpStream;

/// Enough for any ClientHello a browser or TLS library sends (post-quantum
/// key shares included) with room to spare; a longer one is refused.
const MAX_HELLO_BYTES: usize = 32 * 1024;

/// How long to wait before peeking again when a ClientHello has arrived
/// only in part (peeking does not wait for more bytes than it saw).
const MORE_BYTES_POLL: Duration = Duration::from_millis(5);

/// The server name (SNI) of the ClientHello waiting on `tcp`, `None` when
/// it sends none. A hello rustls cannot parse is an error: the connection
/// is refused rather than given a config not chosen by its name. The caller
/// bounds the wait (the handshake timeout).
pub async fn peek_server_name(tcp: &TcpStream) -> io::Result<Option<String>> {
    let mut buf = vec![0u8; MAX_HELLO_BYTES];
    let mut acceptor = Acceptor::default();
    let mut fed = 0;
    loop {
        let seen = tcp.peek(&mut buf).await?;
        if seen == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if seen == fed {
            if seen == buf.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "ClientHello larger than 32 KiB",
                ));
            }
            tokio::time::sleep(MORE_BYTES_POLL).await;
            continue;
        }
        let mut unread = &buf[fed..seen];
        while !unread.is_empty() {
            if acceptor.read_tls(&mut unread)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "ClientHello larger than rustls takes",
                ));
            }
        }
        fed = seen - unread.len();
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                return Ok(accepted.client_hello().server_name().map(str::to_string));
            }
            Ok(None) => {}
            Err((e, _alert)) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }
}
