//! A client connection's TLS, over rustls' unbuffered API so that the
//! ciphertext buffers are ours to free. tokio-rustls' `ServerConnection`
//! keeps a record buffer of at least 4 KiB for as long as the connection
//! lives (rustls#794 asks for this; the maintainers' answer is this API);
//! here an idle connection that is set aside (`rest`) holds no buffer at
//! all, only rustls' keys and state.
//!
//! Protocol behaviour follows tokio-rustls: the handshake completes once
//! our last flight (tickets included) is sent; a fatal alert is sent on a
//! protocol error before the error is returned; a close_notify ends the
//! read side cleanly, while a TCP close without one is an `UnexpectedEof`
//! error (a truncated request is never taken as complete); shutting down
//! sends close_notify, then closes our half of the TCP connection.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, InsufficientSizeError,
    UnbufferedStatus, WriteTraffic,
};
use rustls::{CommonState, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Each read from the socket has room for at least this much.
const READ_SIZE: usize = 4096;
/// Ciphertext not yet processed is at most a handshake message (rustls
/// allows 64 KiB) plus a record: beyond, the peer is not speaking TLS.
const MAX_INCOMING: usize = 0x1_0000 + 18_437;
/// Ciphertext waiting for the socket: above this, writes wait.
const MAX_UNSENT: usize = 64 * 1024;
/// Writes of several small slices (an HTTP head and its body) up to this
/// size are joined into one record.
const JOIN_UP_TO: usize = 4096;
/// Per-record overhead to reserve ahead of encrypting (header, nonce, tag,
/// content type; at most 29 bytes with the suites rustls offers).
const RECORD_OVERHEAD: usize = 64;
const MAX_FRAGMENT: usize = 16 * 1024;

pub struct TlsStream {
    tcp: TcpStream,
    conn: UnbufferedServerConnection,
    /// Ciphertext read, not yet processed by rustls.
    incoming: Vec<u8>,
    outgoing: Outgoing,
    plaintext: Plaintext,
    /// The peer's close_notify has been read.
    peer_closed: bool,
    /// Our close_notify has been queued: nothing more may be written.
    write_closed: bool,
    /// A TLS error ended the connection; every later call returns it.
    failed: Option<rustls::Error>,
}

/// Completes a TLS handshake on `tcp` as the server.
pub async fn accept(tcp: TcpStream, config: Arc<ServerConfig>) -> io::Result<TlsStream> {
    let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
    let mut stream = TlsStream {
        tcp,
        conn,
        incoming: Vec::new(),
        outgoing: Outgoing::default(),
        plaintext: Plaintext::default(),
        peer_closed: false,
        write_closed: false,
        failed: None,
    };
    poll_fn(|cx| stream.poll_handshake(cx)).await?;
    Ok(stream)
}

/// Where processing the ciphertext read so far has left the connection.
enum Step<T> {
    /// The handshake needs more from the peer.
    Handshaking,
    /// Application data may be sent; `T` is what the caller did with that.
    Open(T),
    /// Both sides have sent close_notify.
    Closed,
}

impl TlsStream {
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The negotiated version, suite, ALPN protocol and so on.
    pub fn session(&self) -> &CommonState {
        &self.conn
    }

    /// Frees every buffer that holds nothing: called when the connection
    /// is set aside, idle. They are allocated again by the next read.
    pub fn rest(&mut self) {
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        }
        if self.outgoing.is_empty() {
            self.outgoing = Outgoing::default();
        }
        if self.plaintext.is_empty() {
            self.plaintext = Plaintext::default();
        }
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let step = self.process(cx, |_, _| Ok(()))?;
            // Our flight goes out before we wait for the peer's.
            ready!(self.poll_send(cx))?;
            if !self.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            if let Step::Closed = step {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            if ready!(self.poll_fill(cx))? == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "tls handshake eof",
                )));
            }
        }
    }

    /// Runs rustls over the ciphertext read so far: application data it
    /// decrypts goes to `plaintext`, what it wants sent (handshake records,
    /// tickets, key updates, alerts) to `outgoing`. Once application data
    /// may be sent, `open` is called with the means to encrypt it.
    /// On a TLS error the alert rustls queued is sent if the socket takes
    /// it at once, and the error is kept for every later call.
    fn process<T>(
        &mut self,
        cx: &mut Context<'_>,
        open: impl FnOnce(&mut WriteTraffic<'_, ServerConnectionData>, &mut Outgoing) -> io::Result<T>,
    ) -> io::Result<Step<T>> {
        if let Some(e) = &self.failed {
            return Err(tls_error(e.clone()));
        }
        match self.advance(open) {
            Err(Failure::Tls(e)) => {
                self.queue_alert();
                let _ = self.poll_send(cx);
                self.failed = Some(e.clone());
                Err(tls_error(e))
            }
            Err(Failure::Io(e)) => Err(e),
            Ok(step) => Ok(step),
        }
    }

    fn advance<T>(
        &mut self,
        open: impl FnOnce(&mut WriteTraffic<'_, ServerConnectionData>, &mut Outgoing) -> io::Result<T>,
    ) -> Result<Step<T>, Failure> {
        let mut open = Some(open);
        let Self {
            conn,
            incoming,
            outgoing,
            plaintext,
            peer_closed,
            ..
        } = self;
        loop {
            let UnbufferedStatus { discard, state } = conn.process_tls_records(incoming);
            let step = match state.map_err(Failure::Tls)? {
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        plaintext
                            .buf
                            .extend_from_slice(record.map_err(Failure::Tls)?.payload);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut data) => {
                    outgoing.encode(&mut data)?;
                    None
                }
                // `outgoing` sends everything in order: what was encoded
                // is as good as sent from rustls' point of view.
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    None
                }
                ConnectionState::BlockedHandshake => Some(Step::Handshaking),
                ConnectionState::WriteTraffic(mut traffic) => match open.take() {
                    Some(open) => Some(Step::Open(open(&mut traffic, outgoing)?)),
                    None => unreachable!("process_tls_records returns after WriteTraffic"),
                },
                ConnectionState::PeerClosed => {
                    *peer_closed = true;
                    None
                }
                ConnectionState::Closed => Some(Step::Closed),
                // Early data is never enabled; later variants are unknown.
                _ => {
                    return Err(Failure::Io(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "unexpected TLS connection state",
                    )))
                }
            };
            incoming.drain(..discard);
            if let Some(step) = step {
                return Ok(step);
            }
        }
    }

    /// Moves the alert rustls queued for a fatal error into `outgoing`.
    fn queue_alert(&mut self) {
        // An alert, then the note that it was sent; a few rounds at most.
        for _ in 0..4 {
            match self.conn.process_tls_records(&mut []).state {
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    if self.outgoing.encode(&mut data).is_err() {
                        return;
                    }
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
                _ => return,
            }
        }
    }

    /// Reads from the socket into `incoming`: the byte count, 0 at EOF.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.incoming.len() >= MAX_INCOMING {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS message too large",
            )));
        }
        if self.incoming.capacity() - self.incoming.len() < READ_SIZE {
            self.incoming.reserve(READ_SIZE.max(self.incoming.len()));
        }
        loop {
            ready!(self.tcp.poll_read_ready(cx))?;
            match self.tcp.try_read_buf(&mut self.incoming) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    /// Sends all of `outgoing`; `Pending` while the socket is full.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.outgoing.is_empty() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, self.outgoing.unsent()))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.outgoing.sent(n);
        }
        Poll::Ready(Ok(()))
    }

    /// Encrypts `bufs` (as much as fits under `budget` bytes) into
    /// `outgoing`; the number of plaintext bytes taken.
    fn encrypt(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
        budget: usize,
    ) -> io::Result<usize> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        // Joined only within the budget, which bounds what waits unsent.
        let step = if total <= JOIN_UP_TO.min(budget) && bufs.len() > 1 {
            // Not a zeroed array on the stack: zeroing 4 KiB cost more
            // than the allocation (callgrind).
            let mut joined = Vec::with_capacity(total);
            for b in bufs {
                joined.extend_from_slice(b);
            }
            self.process(cx, |traffic, out| {
                out.encrypt(traffic, &joined[..total])?;
                Ok(total)
            })?
        } else {
            self.process(cx, |traffic, out| {
                let mut taken = 0;
                for b in bufs.iter().filter(|b| !b.is_empty()) {
                    let n = b.len().min(budget.saturating_sub(taken));
                    if n == 0 {
                        break;
                    }
                    out.encrypt(traffic, &b[..n])?;
                    taken += n;
                }
                Ok(taken)
            })?
        };
        match step {
            Step::Open(n) => Ok(n),
            Step::Handshaking => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "TLS handshake not complete",
            )),
            Step::Closed => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }
}

/// Why processing stopped: a TLS error (an alert is owed), or another.
enum Failure {
    Tls(rustls::Error),
    Io(io::Error),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

/// As tokio-rustls reports it, so callers can find the rustls error.
fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Ciphertext to send, in `buf[start..end]`. `buf` is kept initialized
/// to its length, so encrypting into it zero-fills only when it grows.
#[derive(Default)]
struct Outgoing {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Outgoing {
    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn len(&self) -> usize {
        self.end - self.start
    }

    fn unsent(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn sent(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
    }

    /// Room for `n` more bytes after `end`.
    fn room(&mut self, n: usize) -> &mut [u8] {
        if self.buf.len() - self.end < n && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        if self.buf.len() - self.end < n {
            self.buf.resize(self.end + n, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Runs `write` on room for `need` bytes after `end`, again with the
    /// room it says it is short of, and keeps what it wrote.
    fn put(
        &mut self,
        mut need: usize,
        mut write: impl FnMut(&mut [u8]) -> Result<usize, Short>,
    ) -> io::Result<()> {
        loop {
            match write(self.room(need)) {
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(Short::Of(required_size)) => need = required_size,
                Err(Short::Failed(e)) => return Err(e),
            }
        }
    }

    fn encode(&mut self, data: &mut EncodeTlsData<'_, ServerConnectionData>) -> io::Result<()> {
        self.put(READ_SIZE, |room| {
            data.encode(room).map_err(|e| match e {
                EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
                    Short::Of(required_size)
                }
                e => Short::Failed(io::Error::other(e)),
            })
        })
    }

    fn encrypt(
        &mut self,
        traffic: &mut WriteTraffic<'_, ServerConnectionData>,
        data: &[u8],
    ) -> io::Result<()> {
        let need = data.len() + (data.len() / MAX_FRAGMENT + 1) * RECORD_OVERHEAD;
        self.put(need, |room| {
            traffic.encrypt(data, room).map_err(Short::from)
        })
    }

    fn close_notify(
        &mut self,
        traffic: &mut WriteTraffic<'_, ServerConnectionData>,
    ) -> io::Result<()> {
        self.put(RECORD_OVERHEAD, |room| {
            traffic.queue_close_notify(room).map_err(Short::from)
        })
    }
}

/// Why writing into `Outgoing` stopped: short of room (how much is
/// needed), or failed.
enum Short {
    Of(usize),
    Failed(io::Error),
}

impl From<EncryptError> for Short {
    fn from(e: EncryptError) -> Self {
        match e {
            EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
                Short::Of(required_size)
            }
            e => Short::Failed(io::Error::other(e)),
        }
    }
}

/// Decrypted application data not yet read, in `buf[pos..]`.
#[derive(Default)]
struct Plaintext {
    buf: Vec<u8>,
    pos: usize,
}

impl Plaintext {
    fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    fn read_into(&mut self, out: &mut ReadBuf<'_>) {
        let n = out.remaining().min(self.buf.len() - self.pos);
        out.put_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if !this.plaintext.is_empty() {
                this.plaintext.read_into(buf);
                return Poll::Ready(Ok(()));
            }
            if this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            let step = this.process(cx, |_, _| Ok(()))?;
            if !this.plaintext.is_empty() || this.peer_closed {
                continue;
            }
            if let Step::Closed = step {
                return Poll::Ready(Ok(()));
            }
            // What rustls answered to records just read (a key update)
            // starts out now; what the socket does not take, later writes
            // and flushes send.
            if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                return Poll::Ready(Err(e));
            }
            if ready!(this.poll_fill(cx))? == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed connection without sending TLS close_notify",
                )));
            }
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.write_closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        // Backpressure: wait while the socket holds us above the bound.
        if this.poll_send(cx)?.is_pending() && this.outgoing.len() >= MAX_UNSENT {
            return Poll::Pending;
        }
        let budget = MAX_UNSENT - this.outgoing.len();
        let n = this.encrypt(cx, bufs, budget)?;
        // Small writes wait for the flush, to leave in one segment.
        if this.outgoing.len() >= MAX_FRAGMENT {
            if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write_closed && this.failed.is_none() {
            this.write_closed = true;
            this.process(cx, |traffic, out| out.close_notify(traffic))?;
        }
        ready!(this.poll_send(cx))?;
        match ready!(Pin::new(&mut this.tcp).poll_shutdown(cx)) {
            // When shutting down, a peer already gone is no error.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Poll::Ready(Ok(())),
            result => Poll::Ready(result),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::client::TlsStream as ClientStream;

    use super::*;

    struct Pki {
        server: Arc<ServerConfig>,
        client: Arc<rustls::ClientConfig>,
    }

    fn pki(server_versions: &[&'static rustls::SupportedProtocolVersion]) -> Pki {
        let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = CertificateDer::from(issued.cert.der().to_vec());
        let key = PrivateKeyDer::try_from(issued.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(server_versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Pki {
            server: Arc::new(server),
            client: Arc::new(client),
        }
    }

    /// A TCP pair on loopback: (server side, client side).
    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (accepted.unwrap().0, client.unwrap())
    }

    async fn connect(
        config: Arc<rustls::ClientConfig>,
        tcp: TcpStream,
    ) -> io::Result<ClientStream<TcpStream>> {
        let name = ServerName::try_from("localhost").unwrap();
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
    }

    /// A finished handshake: (server stream, client stream).
    async fn tls_pair(
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (TlsStream, ClientStream<TcpStream>) {
        let pki = pki(versions);
        let (server_tcp, client_tcp) = tcp_pair().await;
        let (server, client) = tokio::join!(
            accept(server_tcp, pki.server),
            connect(pki.client, client_tcp)
        );
        (server.unwrap(), client.unwrap())
    }

    /// A stream that waits for bytes it already has would hang the test:
    /// it fails instead, long after any healthy loopback exchange.
    async fn within<T>(read: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
        tokio::time::timeout(std::time::Duration::from_secs(20), read)
            .await
            .expect("the stream waited for bytes it had been sent")
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[tokio::test]
    async fn a_megabyte_crosses_both_ways_intact_over_each_version() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let (mut server, mut client) = tls_pair(&[version]).await;
            assert_eq!(server.session().protocol_version(), Some(version.version));
            let sent = pattern(1 << 20);
            // The server echoes what it reads while the client writes: both
            // sides' buffers fill, so writes wait on the socket.
            let echo = async {
                let mut got = 0;
                let mut buf = vec![0u8; 10_000];
                while got < sent.len() {
                    let n = server.read(&mut buf).await.unwrap();
                    assert_ne!(n, 0, "early EOF");
                    server.write_all(&buf[..n]).await.unwrap();
                    got += n;
                }
                server.flush().await.unwrap();
            };
            let (mut rd, mut wr) = tokio::io::split(&mut client);
            let write = async { wr.write_all(&sent).await.unwrap() };
            let read = async {
                let mut back = vec![0u8; sent.len()];
                rd.read_exact(&mut back).await.unwrap();
                back
            };
            let (_, _, back) = tokio::join!(echo, write, read);
            assert!(back == sent, "echoed bytes differ ({version:?})");
        }
    }

    #[tokio::test]
    async fn a_write_of_several_slices_arrives_in_order() {
        let (mut server, mut client) = tls_pair(&[&rustls::version::TLS13]).await;
        let (head, body, tail) = (
            b"HTTP/1.1 200 OK\r\n\r\n".to_vec(),
            pattern(1000),
            pattern(30_000),
        );
        let slices = [
            IoSlice::new(&head),
            IoSlice::new(&body),
            IoSlice::new(&tail),
        ];
        let mut written = 0;
        while written < head.len() + body.len() + tail.len() {
            // Each call takes a prefix; the rest is offered again.
            let mut rest = Vec::new();
            let mut skip = written;
            for s in &slices {
                if skip >= s.len() {
                    skip -= s.len();
                } else {
                    rest.push(IoSlice::new(&s[skip..]));
                    skip = 0;
                }
            }
            written += server.write_vectored(&rest).await.unwrap();
        }
        server.flush().await.unwrap();
        let mut got = vec![0u8; written];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [head, body, tail].concat());
    }

    /// Forwards the client's bytes to the server one byte per write,
    /// yielding between writes, so the server mostly finds part of a
    /// record when it reads; the server's bytes go back as they come.
    async fn dribble(client: TcpStream, server: TcpStream) {
        let (mut from_client, mut to_client) = client.into_split();
        let (mut from_server, mut to_server) = server.into_split();
        let up = async move {
            let mut buf = [0u8; 1024];
            loop {
                let n = from_client.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    let _ = to_server.shutdown().await;
                    return;
                }
                for byte in &buf[..n] {
                    to_server.write_all(&[*byte]).await.unwrap();
                    tokio::task::yield_now().await;
                }
            }
        };
        let down = async move {
            let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
        };
        tokio::join!(up, down);
    }

    #[tokio::test]
    async fn a_client_sending_a_byte_at_a_time_is_served_over_each_version() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let pki = pki(&[version]);
            let (server_tcp, relay_server_side) = tcp_pair().await;
            let (relay_client_side, client_tcp) = tcp_pair().await;
            tokio::spawn(dribble(relay_client_side, relay_server_side));
            let (server, client) = tokio::join!(
                accept(server_tcp, pki.server),
                connect(pki.client, client_tcp)
            );
            let (mut server, mut client) = (server.unwrap(), client.unwrap());
            // Several records, of several sizes, each arriving in pieces.
            for len in [1, 100, 3000] {
                client.write_all(&pattern(len)).await.unwrap();
                let mut got = vec![0u8; len];
                within(server.read_exact(&mut got)).await.unwrap();
                assert!(got == pattern(len), "{len} bytes differ ({version:?})");
            }
            client.shutdown().await.unwrap();
            assert_eq!(within(server.read(&mut [0u8; 16])).await.unwrap(), 0);
        }
    }

    #[tokio::test]
    async fn many_records_arriving_in_one_read_are_all_delivered() {
        let (mut server, client) = tls_pair(&[&rustls::version::TLS13]).await;
        let (mut tcp, mut conn) = client.into_inner();
        // 100 records and a close_notify, written to the socket at once.
        let mut sent = Vec::new();
        for i in 0..100u8 {
            let record = [i; 10];
            std::io::Write::write_all(&mut conn.writer(), &record).unwrap();
            sent.extend_from_slice(&record);
        }
        conn.send_close_notify();
        let mut wire = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut wire).unwrap();
        }
        tcp.write_all(&wire).await.unwrap();
        let mut got = Vec::new();
        within(server.read_to_end(&mut got)).await.unwrap();
        assert_eq!(got, sent);
    }

    #[tokio::test]
    async fn close_notify_ends_reads_cleanly_both_ways() {
        let (mut server, mut client) = tls_pair(&[&rustls::version::TLS13]).await;
        server.write_all(b"bye").await.unwrap();
        server.shutdown().await.unwrap();
        let mut got = Vec::new();
        // tokio-rustls' client fails with UnexpectedEof without close_notify.
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"bye");
        client.write_all(b"ok").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ok");
    }

    #[tokio::test]
    async fn a_tcp_close_without_close_notify_is_an_error_not_an_end() {
        let (mut server, client) = tls_pair(&[&rustls::version::TLS13]).await;
        let (mut tcp, _) = client.into_inner();
        tcp.shutdown().await.unwrap();
        let err = server.read(&mut [0u8; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn a_client_key_update_is_followed() {
        let (mut server, mut client) = tls_pair(&[&rustls::version::TLS13]).await;
        for round in 0..3u8 {
            client.get_mut().1.refresh_traffic_keys().unwrap();
            client.write_all(&[round; 100]).await.unwrap();
            let mut got = [0u8; 100];
            server.read_exact(&mut got).await.unwrap();
            assert_eq!(got, [round; 100]);
            server.write_all(&[round + 10; 50]).await.unwrap();
            server.flush().await.unwrap();
            let mut back = [0u8; 50];
            client.read_exact(&mut back).await.unwrap();
            assert_eq!(back, [round + 10; 50]);
        }
    }

    #[tokio::test]
    async fn a_failed_handshake_sends_the_alert_and_returns_the_rustls_error() {
        let pki = pki(&[&rustls::version::TLS13]);
        let tls12_only = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let (server_tcp, client_tcp) = tcp_pair().await;
        let (server, client) = tokio::join!(
            accept(server_tcp, pki.server),
            connect(Arc::new(tls12_only), client_tcp)
        );
        let server = server.err().expect("handshake must fail");
        let inner = server
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        assert!(
            matches!(inner, Some(rustls::Error::PeerIncompatible(_))),
            "{server:?}"
        );
        let client = client.expect_err("handshake must fail").to_string();
        assert!(
            client.contains("ProtocolVersion"),
            "client saw no alert: {client}"
        );
    }

    #[tokio::test]
    async fn bytes_that_are_not_tls_fail_the_handshake() {
        let pki = pki(&[&rustls::version::TLS13]);
        let (server_tcp, mut client_tcp) = tcp_pair().await;
        let client = async {
            client_tcp
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
        };
        let (server, _) = tokio::join!(accept(server_tcp, pki.server), client);
        assert_eq!(
            server.err().expect("not TLS").kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[tokio::test]
    async fn at_rest_a_connection_holds_no_buffer_and_serves_again() {
        let (mut server, mut client) = tls_pair(&[&rustls::version::TLS13]).await;
        for round in 0..2u8 {
            client.write_all(&pattern(20_000)).await.unwrap();
            let mut got = vec![0u8; 20_000];
            server.read_exact(&mut got).await.unwrap();
            assert_eq!(got, pattern(20_000));
            server.write_all(&[round; 40_000]).await.unwrap();
            server.flush().await.unwrap();
            let mut back = vec![0u8; 40_000];
            client.read_exact(&mut back).await.unwrap();
            assert!(back.iter().all(|b| *b == round));
            assert!(server.incoming.capacity() > 0 && server.outgoing.buf.capacity() > 0);
            server.rest();
            assert_eq!(server.incoming.capacity(), 0);
            assert_eq!(server.outgoing.buf.capacity(), 0);
            assert_eq!(server.plaintext.buf.capacity(), 0);
        }
    }
}
