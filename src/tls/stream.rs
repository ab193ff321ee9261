//! TLS over rustls' unbuffered API, so that the ciphertext buffers are
//! ours to size and to free. Both sides use it:
//!
//! - Client connections (the server side, [`accept`]): tokio-rustls'
//!   `ServerConnection` keeps a record buffer of at least 4 KiB for as long
//!   as the connection lives (rustls#794 asks for this; the maintainers'
//!   answer is this API); here an idle connection that is set aside
//!   (`rest`) holds no buffer at all, only rustls' keys and state.
//! - Upstream connections (the client side, [`connect`]): reads take what
//!   the socket holds, up to a whole 64 KiB tile, in one call, and the
//!   decrypted bytes go straight into the reader's buffer. tokio-rustls
//!   read 4 KiB at a time until its buffer had grown to a record, and
//!   copied every byte once more between its buffers.
//!
//! Protocol behaviour follows tokio-rustls: the handshake completes once
//! our last flight (tickets included) is sent; a fatal alert is sent on a
//! protocol error before the error is returned; a close_notify ends the
//! read side cleanly, while a TCP close without one is an `UnexpectedEof`
//! error (a truncated message is never taken as complete); shutting down
//! sends close_notify, then closes our half of the TCP connection.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::pki_types::ServerName;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, InsufficientSizeError,
    UnbufferedStatus, WriteTraffic,
};
use rustls::{ClientConfig, CommonState, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Each read from the socket has room for at least this much, and a
/// client connection's reads start at this size.
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
/// How long, and for how many bytes, a failed handshake waits for the
/// peer to take its alert and close (`linger`): a ClientHello is at most
/// 64 KiB, and a peer on any working network has read an alert in 1 s.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

/// A client's connection to us.
pub type ServerStream = TlsStream<UnbufferedServerConnection>;
/// Our connection to the upstream.
pub type ClientStream = TlsStream<UnbufferedClientConnection>;

/// Over a `TcpStream` in the gateway; over any byte stream `S` where
/// something else plays the peer (the fuzz targets, `crate::fuzzing`).
pub struct TlsStream<C, S = TcpStream> {
    tcp: S,
    conn: C,
    /// `None` at rest (`rest`); allocated again when next needed.
    bufs: Option<Box<Buffers>>,
    /// How much a read from the socket takes at most, once the buffer
    /// has grown to it.
    read_size: u32,
    /// The peer's close_notify has been read.
    peer_closed: bool,
    /// Bytes have been read that rustls has not been run over: until
    /// then running it again finds nothing new (most reads find the
    /// socket empty, hyper polls to see the next request or the end).
    unseen: bool,
    /// Our close_notify has been queued: nothing more may be written.
    write_closed: bool,
    /// A TLS error ended the connection; every later call returns it.
    /// Boxed: inline it would take 64 bytes of every connection.
    failed: Option<Box<rustls::Error>>,
}

/// The stream's buffers, in one box that a connection at rest gives back:
/// their handles alone are 104 bytes, which every idle connection would
/// otherwise hold (and they took its future from one allocator size class,
/// 2,048 bytes, to the next).
#[derive(Default)]
struct Buffers {
    incoming: Incoming,
    outgoing: Outgoing,
    plaintext: Plaintext,
}

/// Which end of the handshake we are: rustls gives each its own
/// `process_tls_records`.
pub trait Side {
    type Data;

    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;

    fn common(&self) -> &CommonState;
}

impl Side for UnbufferedServerConnection {
    type Data = ServerConnectionData;

    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, ServerConnectionData> {
        self.process_tls_records(incoming)
    }

    fn common(&self) -> &CommonState {
        self
    }
}

impl Side for UnbufferedClientConnection {
    type Data = ClientConnectionData;

    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, ClientConnectionData> {
        self.process_tls_records(incoming)
    }

    fn common(&self) -> &CommonState {
        self
    }
}

/// Completes a TLS handshake on `tcp` as the server.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    tcp: S,
    config: Arc<ServerConfig>,
) -> io::Result<TlsStream<UnbufferedServerConnection, S>> {
    let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
    TlsStream::handshake(tcp, conn, READ_SIZE).await
}

/// Completes a TLS handshake on `tcp` as the client of `name`; reads
/// from the socket take up to `read_size` bytes.
pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    tcp: S,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    read_size: usize,
) -> io::Result<TlsStream<UnbufferedClientConnection, S>> {
    let conn = UnbufferedClientConnection::new(config, name).map_err(tls_error)?;
    TlsStream::handshake(tcp, conn, read_size.max(READ_SIZE)).await
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

impl<C> TlsStream<C> {
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }
}

impl<C: Side, S: AsyncRead + AsyncWrite + Unpin> TlsStream<C, S> {
    async fn handshake(tcp: S, conn: C, read_size: usize) -> io::Result<Self> {
        let mut stream = TlsStream {
            tcp,
            conn,
            bufs: None,
            read_size: u32::try_from(read_size).unwrap_or(u32::MAX),
            peer_closed: false,
            unseen: false,
            write_closed: false,
            failed: None,
        };
        if let Err(e) = poll_fn(|cx| stream.poll_handshake(cx)).await {
            if stream.failed.is_some() {
                stream.linger().await;
            }
            return Err(e);
        }
        Ok(stream)
    }

    /// After a TLS error that owes the peer an alert: sends it, closes our
    /// half, and reads and drops what the peer is still sending until it
    /// closes too, for at most `LINGER` and `LINGER_BYTES`. Closing with
    /// bytes unread would make the kernel send a reset, and the reset
    /// makes the peer's kernel drop the alert before it is read (the
    /// lingering close of nginx and Apache, RFC 9112 §9.6).
    async fn linger(&mut self) {
        let _ = tokio::time::timeout(LINGER, async {
            poll_fn(|cx| self.poll_send(cx)).await?;
            tokio::io::AsyncWriteExt::shutdown(&mut self.tcp).await?;
            let mut sink = [0u8; 4096];
            let mut dropped = 0;
            while dropped < LINGER_BYTES {
                match tokio::io::AsyncReadExt::read(&mut self.tcp, &mut sink).await? {
                    0 => break,
                    n => dropped += n,
                }
            }
            io::Result::Ok(())
        })
        .await;
    }

    /// The negotiated version, suite, ALPN protocol and so on.
    pub fn session(&self) -> &CommonState {
        self.conn.common()
    }

    /// Frees the buffers if they hold nothing: called when the connection
    /// is set aside, idle. They are allocated again by the next read.
    pub fn rest(&mut self) {
        let Some(bufs) = &self.bufs else { return };
        if bufs.incoming.is_empty() && bufs.outgoing.is_empty() && bufs.plaintext.is_empty() {
            self.bufs = None;
        }
    }

    /// Decrypted bytes wait to be read.
    fn has_plaintext(&self) -> bool {
        self.bufs.as_ref().is_some_and(|b| !b.plaintext.is_empty())
    }

    /// How many encrypted bytes wait to be sent.
    fn unsent(&self) -> usize {
        self.bufs.as_ref().map_or(0, |b| b.outgoing.len())
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let step = self.process(cx, None, |_, _| Ok(()))?;
            // Our flight goes out before we wait for the peer's.
            ready!(self.poll_send(cx))?;
            if !self.session().is_handshaking() {
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
    /// decrypts goes to `out` as far as it has room, the rest to
    /// `plaintext`; what rustls wants sent (handshake records, tickets,
    /// key updates, alerts) goes to `outgoing`. Once application data may
    /// be sent, `open` is called with the means to encrypt it.
    /// On a TLS error the alert rustls queued is sent if the socket takes
    /// it at once, and the error is kept for every later call.
    fn process<T>(
        &mut self,
        cx: &mut Context<'_>,
        out: Option<&mut ReadBuf<'_>>,
        open: impl FnOnce(&mut WriteTraffic<'_, C::Data>, &mut Outgoing) -> io::Result<T>,
    ) -> io::Result<Step<T>> {
        if let Some(e) = &self.failed {
            return Err(tls_error((**e).clone()));
        }
        match self.advance(out, open) {
            Err(Failure::Tls(e)) => {
                self.queue_alert();
                let _ = self.poll_send(cx);
                self.failed = Some(Box::new(e.clone()));
                Err(tls_error(e))
            }
            Err(Failure::Io(e)) => Err(e),
            Ok(step) => Ok(step),
        }
    }

    fn advance<T>(
        &mut self,
        mut out: Option<&mut ReadBuf<'_>>,
        open: impl FnOnce(&mut WriteTraffic<'_, C::Data>, &mut Outgoing) -> io::Result<T>,
    ) -> Result<Step<T>, Failure> {
        let mut open = Some(open);
        let Self {
            conn,
            bufs,
            peer_closed,
            ..
        } = self;
        let Buffers {
            incoming,
            outgoing,
            plaintext,
        } = &mut **bufs.get_or_insert_default();
        loop {
            let UnbufferedStatus { discard, state } = conn.process(incoming.unprocessed());
            let step = match state {
                Err(e) => Err(Failure::Tls(e)),
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    let mut read = Ok(None);
                    while let Some(record) = traffic.next_record() {
                        match record {
                            Ok(record) => plaintext.take(record.payload, out.as_deref_mut()),
                            Err(e) => {
                                read = Err(Failure::Tls(e));
                                break;
                            }
                        }
                    }
                    read
                }
                Ok(ConnectionState::EncodeTlsData(mut data)) => outgoing
                    .encode(&mut data)
                    .map(|()| None)
                    .map_err(Failure::Io),
                // `outgoing` sends everything in order: what was encoded
                // is as good as sent from rustls' point of view.
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    Ok(None)
                }
                Ok(ConnectionState::BlockedHandshake) => Ok(Some(Step::Handshaking)),
                Ok(ConnectionState::WriteTraffic(mut traffic)) => match open.take() {
                    Some(open) => open(&mut traffic, outgoing)
                        .map(|t| Some(Step::Open(t)))
                        .map_err(Failure::Io),
                    None => unreachable!("process_tls_records returns after WriteTraffic"),
                },
                Ok(ConnectionState::PeerClosed) => {
                    *peer_closed = true;
                    Ok(None)
                }
                Ok(ConnectionState::Closed) => Ok(Some(Step::Closed)),
                // Early data is never enabled; later variants are unknown.
                Ok(_) => Err(Failure::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "unexpected TLS connection state",
                ))),
            };
            // rustls' contract, errors included: the bytes it is done with
            // go before it is called again, and the rest stays where it is
            // (it may hold the place of handshake messages it has not
            // processed yet).
            incoming.processed(discard);
            if let Some(step) = step? {
                // It stops only once no whole record is left unprocessed.
                self.unseen = false;
                return Ok(step);
            }
        }
    }

    /// Moves the alert rustls queued for a fatal error into `outgoing`.
    /// rustls hands out what it has queued before it looks at the
    /// ciphertext again; it is not let look again: after an error it would
    /// process the next message, and an empty slice in the place of the
    /// unprocessed bytes made it look for messages it had noted in them,
    /// and panic (with `panic = "abort"`, one crafted ClientHello record
    /// ended the gateway).
    fn queue_alert(&mut self) {
        let bufs = self.bufs.get_or_insert_default();
        while self.conn.common().wants_write() {
            let UnbufferedStatus { discard, state } =
                self.conn.process(bufs.incoming.unprocessed());
            let encoded = match state {
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    bufs.outgoing.encode(&mut data).is_ok()
                }
                _ => false,
            };
            bufs.incoming.processed(discard);
            if !encoded {
                return;
            }
        }
    }

    /// Reads from the socket into `incoming`: the byte count, 0 at EOF.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let incoming = &mut self.bufs.get_or_insert_default().incoming;
        if incoming.len() >= MAX_INCOMING {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS message too large",
            )));
        }
        // Through the socket's `poll_read`, not `try_read`: tokio takes a
        // read shorter than the room as the socket drained, where
        // `try_read` leaves it ready and the next read is a `recvfrom`
        // that finds nothing (one more per request each way, `perf stat`).
        let room = incoming.room(self.read_size as usize);
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.tcp),
            cx,
            room
        ))?;
        if n > 0 {
            self.unseen = true;
        }
        Poll::Ready(Ok(n))
    }

    /// Sends all of `outgoing`; `Pending` while the socket is full.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(bufs) = &mut self.bufs else {
            return Poll::Ready(Ok(()));
        };
        while !bufs.outgoing.is_empty() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, bufs.outgoing.unsent()))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            bufs.outgoing.sent(n);
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
            self.process(cx, None, |traffic, out| {
                out.encrypt(traffic, &joined[..total])?;
                Ok(total)
            })?
        } else {
            self.process(cx, None, |traffic, out| {
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

/// Ciphertext read from the socket; `buf[start..]` is not yet processed.
/// Processed records are skipped, not moved out: what remains of a read
/// moves to the front once, before the next read.
#[derive(Default)]
struct Incoming {
    buf: Vec<u8>,
    start: usize,
}

impl Incoming {
    fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }

    fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    fn unprocessed(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..]
    }

    fn processed(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// The buffer, with room after what is unprocessed for a read: at
    /// least `READ_SIZE`, growing to `read_size` (or to fit a record).
    fn room(&mut self, read_size: usize) -> &mut Vec<u8> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.capacity() - self.buf.len() < READ_SIZE {
            self.buf.reserve(read_size.max(self.buf.len()));
        }
        &mut self.buf
    }
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

    fn encode<D>(&mut self, data: &mut EncodeTlsData<'_, D>) -> io::Result<()> {
        self.put(READ_SIZE, |room| {
            data.encode(room).map_err(|e| match e {
                EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
                    Short::Of(required_size)
                }
                e => Short::Failed(io::Error::other(e)),
            })
        })
    }

    fn encrypt<D>(&mut self, traffic: &mut WriteTraffic<'_, D>, data: &[u8]) -> io::Result<()> {
        let need = data.len() + (data.len() / MAX_FRAGMENT + 1) * RECORD_OVERHEAD;
        self.put(need, |room| {
            traffic.encrypt(data, room).map_err(Short::from)
        })
    }

    fn close_notify<D>(&mut self, traffic: &mut WriteTraffic<'_, D>) -> io::Result<()> {
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

    /// Takes a decrypted record: into `out` as far as it has room, if
    /// nothing is waiting ahead of it; the rest is kept.
    fn take(&mut self, mut payload: &[u8], out: Option<&mut ReadBuf<'_>>) {
        if let Some(out) = out.filter(|_| self.is_empty()) {
            let n = out.remaining().min(payload.len());
            out.put_slice(&payload[..n]);
            payload = &payload[n..];
        }
        self.buf.extend_from_slice(payload);
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

impl<C: Side + Unpin, S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<C, S> {
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
            if let Some(bufs) = this.bufs.as_mut().filter(|b| !b.plaintext.is_empty()) {
                bufs.plaintext.read_into(buf);
                return Poll::Ready(Ok(()));
            }
            if this.peer_closed {
                return Poll::Ready(Ok(()));
            }
            // Run rustls only over bytes it has not seen (or to return its
            // error): otherwise it finds nothing new, and most reads find
            // nothing new, hyper polls after each message for the next.
            if this.unseen || this.failed.is_some() {
                let filled = buf.filled().len();
                let step = this.process(cx, Some(buf), |_, _| Ok(()));
                // Records read before an error are delivered; the error
                // comes with the next read.
                if buf.filled().len() > filled {
                    return Poll::Ready(Ok(()));
                }
                let step = step?;
                if this.has_plaintext() || this.peer_closed {
                    continue;
                }
                if let Step::Closed = step {
                    return Poll::Ready(Ok(()));
                }
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

impl<C: Side + Unpin, S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<C, S> {
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
        if this.poll_send(cx)?.is_pending() && this.unsent() >= MAX_UNSENT {
            return Poll::Pending;
        }
        let budget = MAX_UNSENT - this.unsent();
        let n = this.encrypt(cx, bufs, budget)?;
        // Small writes wait for the flush, to leave in one segment.
        if this.unsent() >= MAX_FRAGMENT {
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
            this.process(cx, None, |traffic, out| out.close_notify(traffic))?;
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
    use tokio_rustls::client::TlsStream as RustlsClient;
    use tokio_rustls::server::TlsStream as RustlsServer;

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
    ) -> io::Result<RustlsClient<TcpStream>> {
        let name = ServerName::try_from("localhost").unwrap();
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
    }

    /// A finished handshake: (server stream, client stream).
    async fn tls_pair(
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (ServerStream, RustlsClient<TcpStream>) {
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

    /// The rustls error an I/O error carries, as tokio-rustls wraps it.
    fn cause(e: &io::Error) -> Option<&rustls::Error> {
        e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>())
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// The client writes a megabyte while the server echoes what it
    /// reads: both sides' buffers fill, so writes wait on the socket.
    async fn echo_a_megabyte(
        server: &mut (impl AsyncRead + AsyncWrite + Unpin),
        client: &mut (impl AsyncRead + AsyncWrite + Unpin),
    ) -> bool {
        let sent = pattern(1 << 20);
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
        let (mut rd, mut wr) = tokio::io::split(client);
        let write = async { wr.write_all(&sent).await.unwrap() };
        let read = async {
            let mut back = vec![0u8; sent.len()];
            rd.read_exact(&mut back).await.unwrap();
            back
        };
        let (_, _, back) = tokio::join!(echo, write, read);
        back == sent
    }

    #[tokio::test]
    async fn a_megabyte_crosses_both_ways_intact_over_each_version() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let (mut server, mut client) = tls_pair(&[version]).await;
            assert_eq!(server.session().protocol_version(), Some(version.version));
            let intact = echo_a_megabyte(&mut server, &mut client).await;
            assert!(intact, "echoed bytes differ ({version:?})");
        }
    }

    /// Our client connected to a tokio-rustls server: (server, client).
    async fn upstream_pair(
        pki: Pki,
        read_size: usize,
    ) -> (RustlsServer<TcpStream>, io::Result<ClientStream>) {
        let (server_tcp, client_tcp) = tcp_pair().await;
        let name = ServerName::try_from("localhost").unwrap();
        let (server, client) = tokio::join!(
            tokio_rustls::TlsAcceptor::from(pki.server).accept(server_tcp),
            super::connect(client_tcp, pki.client, name, read_size)
        );
        (server.unwrap(), client)
    }

    #[tokio::test]
    async fn as_the_client_a_megabyte_crosses_both_ways_over_each_version() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            for read_size in [READ_SIZE, 64 * 1024] {
                let (mut server, client) = upstream_pair(pki(&[version]), read_size).await;
                let mut client = client.unwrap();
                assert_eq!(client.session().protocol_version(), Some(version.version));
                let intact = echo_a_megabyte(&mut server, &mut client).await;
                assert!(intact, "bytes differ ({version:?}, reads of {read_size})");
            }
        }
    }

    #[tokio::test]
    async fn as_the_client_records_larger_than_the_reader_are_delivered_in_pieces() {
        let (mut server, client) = upstream_pair(pki(&[&rustls::version::TLS13]), 65536).await;
        let mut client = client.unwrap();
        // Several 16 KiB records, which arrive in one read of the socket,
        // read 7 bytes at a time: most of each record waits for the next.
        let sent = pattern(100_000);
        server.write_all(&sent).await.unwrap();
        server.shutdown().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            let n = within(client.read(&mut buf)).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got == sent, "bytes differ");
    }

    #[tokio::test]
    async fn as_the_client_an_untrusted_server_fails_the_handshake_with_an_alert() {
        let trusted = pki(&[&rustls::version::TLS13]);
        let other = pki(&[&rustls::version::TLS13]);
        let (server_tcp, client_tcp) = tcp_pair().await;
        let name = ServerName::try_from("localhost").unwrap();
        let (server, client) = tokio::join!(
            tokio_rustls::TlsAcceptor::from(other.server).accept(server_tcp),
            super::connect(client_tcp, trusted.client, name, 65536)
        );
        let client = client.err().expect("the certificate is not trusted");
        assert!(
            matches!(cause(&client), Some(rustls::Error::InvalidCertificate(_))),
            "{client:?}"
        );
        let server = server.expect_err("the client must refuse").to_string();
        // Both certificates name the same issuer: the signature check
        // fails, and its alert is decrypt_error.
        assert!(
            server.contains("received fatal alert"),
            "the server saw no alert: {server}"
        );
    }

    #[tokio::test]
    async fn as_the_client_alpn_and_close_notify_are_seen() {
        let mut pki = pki(&[&rustls::version::TLS13]);
        Arc::get_mut(&mut pki.server).unwrap().alpn_protocols = vec![b"h2".to_vec()];
        Arc::get_mut(&mut pki.client).unwrap().alpn_protocols =
            vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let (mut server, client) = upstream_pair(pki, 65536).await;
        let mut client = client.unwrap();
        assert_eq!(client.session().alpn_protocol(), Some(&b"h2"[..]));
        client.write_all(b"ping").await.unwrap();
        client.flush().await.unwrap();
        let mut got = [0u8; 4];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        server.write_all(b"pong").await.unwrap();
        server.shutdown().await.unwrap();
        let mut back = Vec::new();
        client.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"pong");
    }

    #[tokio::test]
    async fn as_the_client_a_tcp_close_without_close_notify_is_an_error() {
        let (server, client) = upstream_pair(pki(&[&rustls::version::TLS13]), 65536).await;
        let mut client = client.unwrap();
        let (mut tcp, _) = server.into_inner();
        tcp.shutdown().await.unwrap();
        let err = within(client.read(&mut [0u8; 64])).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
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
        assert!(
            matches!(cause(&server), Some(rustls::Error::PeerIncompatible(_))),
            "{server:?}"
        );
        let client = client.expect_err("handshake must fail").to_string();
        assert!(
            client.contains("ProtocolVersion"),
            "client saw no alert: {client}"
        );
    }

    /// A ClientHello record that carries more handshake messages after
    /// the ClientHello: rustls refuses it while it still holds the later
    /// messages' place in the buffer, and the alert must be taken from
    /// rustls without losing that place (once, a panic inside rustls:
    /// with `panic = "abort"`, one crafted record ended the gateway).
    #[tokio::test]
    async fn a_client_hello_followed_by_more_messages_fails_cleanly() {
        let pki = pki(&[&rustls::version::TLS13]);
        let hello = client_hello(pki.client.clone());
        assert_eq!(hello[0], 22, "a handshake record");
        let three_in_one = Hostile {
            repeat: 3,
            flips: Vec::new(),
            junk: Vec::new(),
            piece: usize::MAX,
        };
        let record = three_in_one.apply(&hello);
        let (server_tcp, mut client_tcp) = tcp_pair().await;
        let client = async {
            client_tcp.write_all(&record).await.unwrap();
            let mut answer = Vec::new();
            let _ = client_tcp.read_to_end(&mut answer).await;
            answer
        };
        let (server, answer) = tokio::join!(accept(server_tcp, pki.server), client);
        let server = server.err().expect("the handshake must fail");
        assert!(cause(&server).is_some(), "{server:?}");
        // The server's last record is an alert (content type 21).
        assert!(answer.len() >= 7, "no alert: {answer:?}");
        assert_eq!(answer[answer.len() - 7], 21, "no alert: {answer:?}");
    }

    /// A TLS 1.2-only client's ClientHello, which a TLS 1.3-only server
    /// refuses with an alert, and behind it 96 KiB more that the client
    /// sends before it reads (as a client pipelining its first request).
    fn refused_hello_and_more() -> Vec<u8> {
        let tls12_only = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        let mut flight = client_hello(Arc::new(tls12_only));
        for _ in 0..6 {
            flight.extend_from_slice(&[23, 3, 3, 0x40, 0]);
            flight.extend_from_slice(&[0; MAX_FRAGMENT]);
        }
        flight
    }

    /// Found by tlsfuzzer (record-layer-fragmentation, large-hello): a
    /// client still sending when its handshake failed got a TCP reset
    /// instead of the alert. Closing a socket with bytes unread makes the
    /// kernel send a reset, and the reset makes the client's kernel drop
    /// the alert before the client has read it.
    #[tokio::test]
    async fn a_client_still_sending_when_its_handshake_fails_reads_the_alert() {
        let pki = pki(&[&rustls::version::TLS13]);
        let (server_tcp, mut client_tcp) = tcp_pair().await;
        // The client closes once it has read the answer, as clients do.
        let client = async move {
            let sent = client_tcp.write_all(&refused_hello_and_more()).await;
            let mut answer = Vec::new();
            let read = client_tcp.read_to_end(&mut answer).await;
            (sent, read, answer)
        };
        let (server, (sent, read, answer)) = tokio::join!(accept(server_tcp, pki.server), client);
        let server = server.err().expect("the handshake must fail");
        assert!(cause(&server).is_some(), "{server:?}");
        sent.expect("the client's flight must be taken, not reset");
        read.expect("the client must read to the end, not be reset");
        // One record: a fatal (2) protocol_version (70) alert (type 21).
        assert_eq!(answer.len(), 7, "{answer:?}");
        assert_eq!(
            (answer[0], &answer[5..]),
            (21, &[2u8, 70][..]),
            "{answer:?}"
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
            let bufs = server.bufs.as_ref().expect("buffers in use");
            assert!(bufs.incoming.buf.capacity() > 0 && bufs.outgoing.buf.capacity() > 0);
            server.rest();
            assert!(server.bufs.is_none(), "all three freed");
        }
    }

    #[tokio::test]
    async fn at_rest_a_connection_keeps_a_record_it_has_begun_to_read() {
        let (mut server, mut client) = tls_pair(&[&rustls::version::TLS13]).await;
        client.write_all(b"ping").await.unwrap();
        client.flush().await.unwrap();
        let mut got = [0u8; 4];
        server.read_exact(&mut got).await.unwrap();
        // The start of the next record's header, and no more.
        client.get_mut().0.write_all(&[0x17, 0x03]).await.unwrap();
        let mut byte = [0u8; 1];
        // Read until both bytes are in, without a clock: each read finds
        // half a header, which is not a record.
        while server.bufs.as_ref().map_or(0, |b| b.incoming.len()) < 2 {
            server.tcp.readable().await.unwrap();
            let mut buf = ReadBuf::new(&mut byte);
            let read = poll_fn(|cx| Poll::Ready(Pin::new(&mut server).poll_read(cx, &mut buf)));
            assert!(read.await.is_pending(), "half a header is not a record");
        }
        server.rest();
        let bufs = server.bufs.as_ref().expect("kept: it holds ciphertext");
        assert_eq!(bufs.incoming.len(), 2);
    }

    /// What a hostile peer sends, at random: a real first flight with its
    /// handshake messages repeated in their records, bytes overwritten and
    /// junk after it, written in pieces of random size.
    #[derive(Debug, Clone)]
    struct Hostile {
        repeat: usize,
        flips: Vec<(usize, u8)>,
        junk: Vec<u8>,
        piece: usize,
    }

    fn hostile() -> impl proptest::strategy::Strategy<Value = Hostile> {
        use proptest::prelude::*;
        (
            1usize..4,
            proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
            proptest::collection::vec(any::<u8>(), 0..48),
            1usize..300,
        )
            .prop_map(|(repeat, flips, junk, piece)| Hostile {
                repeat,
                flips,
                junk,
                piece,
            })
    }

    impl Hostile {
        /// `flight` (whole records) made hostile.
        fn apply(&self, flight: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            let mut rest = flight;
            // Each record's body repeated, its length rewritten to match.
            while rest.len() >= 5 {
                let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
                let body = &rest[5..(5 + len).min(rest.len())];
                let body = body.repeat(self.repeat);
                out.extend_from_slice(&rest[..3]);
                out.extend_from_slice(&u16::try_from(body.len()).unwrap_or(u16::MAX).to_be_bytes());
                out.extend_from_slice(&body);
                rest = &rest[(5 + len).min(rest.len())..];
            }
            for (at, byte) in &self.flips {
                if !out.is_empty() {
                    let i = at % out.len();
                    out[i] = *byte;
                }
            }
            out.extend_from_slice(&self.junk);
            out
        }

        async fn send(&self, tcp: &mut TcpStream, bytes: &[u8]) {
            for piece in bytes.chunks(self.piece) {
                if tcp.write_all(piece).await.is_err() {
                    return;
                }
            }
        }
    }

    /// The first flight of a rustls client: its ClientHello record.
    fn client_hello(config: Arc<rustls::ClientConfig>) -> Vec<u8> {
        let name = ServerName::try_from("localhost").unwrap();
        let mut hello = Vec::new();
        rustls::ClientConnection::new(config, name)
            .unwrap()
            .write_tls(&mut hello)
            .unwrap();
        hello
    }

    /// Runs `test` on a fresh single-threaded runtime: proptest's cases
    /// are plain functions.
    fn on_runtime(test: impl std::future::Future<Output = ()>) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(test);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever a client sends in place of its ClientHello, the
        /// handshake ends, in an error or not, without a panic and
        /// without waiting for bytes it has.
        #[test]
        fn whatever_a_client_sends_first_the_handshake_ends(h in hostile()) {
            on_runtime(async {
                let pki = pki(&[&rustls::version::TLS13, &rustls::version::TLS12]);
                let hello = client_hello(pki.client.clone());
                let (server_tcp, mut client_tcp) = tcp_pair().await;
                let client = async {
                    h.send(&mut client_tcp, &h.apply(&hello)).await;
                    let _ = client_tcp.shutdown().await;
                    let _ = client_tcp.read_to_end(&mut Vec::new()).await;
                };
                let (server, ()) = tokio::join!(within(accept(server_tcp, pki.server)), client);
                drop(server);
            });
        }

        /// After a good handshake, whatever the client sends (good
        /// records with bytes overwritten, junk) ends in data, an error
        /// or the end, without a panic.
        #[test]
        fn whatever_a_client_sends_after_the_handshake_ends_cleanly(h in hostile()) {
            on_runtime(async {
                let (mut server, client) = tls_pair(&[&rustls::version::TLS13]).await;
                let (mut tcp, mut conn) = client.into_inner();
                std::io::Write::write_all(&mut conn.writer(), &pattern(3000)).unwrap();
                let mut wire = Vec::new();
                while conn.wants_write() {
                    conn.write_tls(&mut wire).unwrap();
                }
                let sender = async {
                    h.send(&mut tcp, &h.apply(&wire)).await;
                    let _ = tcp.shutdown().await;
                    tcp
                };
                let reader = async {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = within(server.read(&mut buf)).await {
                        if n == 0 {
                            break;
                        }
                    }
                };
                let (_tcp, ()) = tokio::join!(sender, reader);
            });
        }

        /// Whatever an upstream answers to our ClientHello, our client's
        /// handshake ends without a panic.
        #[test]
        fn whatever_a_server_answers_our_handshake_ends(h in hostile()) {
            on_runtime(async {
                let pki = pki(&[&rustls::version::TLS13, &rustls::version::TLS12]);
                let (mut server_tcp, client_tcp) = tcp_pair().await;
                let server_config = pki.server.clone();
                let server = async move {
                    // A real server's first flight, answering our hello.
                    let mut conn = rustls::ServerConnection::new(server_config).unwrap();
                    let mut buf = vec![0u8; 4096];
                    let n = server_tcp.read(&mut buf).await.unwrap_or(0);
                    let mut flight = Vec::new();
                    if conn.read_tls(&mut &buf[..n]).is_ok() && conn.process_new_packets().is_ok() {
                        while conn.wants_write() {
                            conn.write_tls(&mut flight).unwrap();
                        }
                    }
                    h.send(&mut server_tcp, &h.apply(&flight)).await;
                    let _ = server_tcp.shutdown().await;
                    let _ = server_tcp.read_to_end(&mut Vec::new()).await;
                };
                let name = ServerName::try_from("localhost").unwrap();
                // The stream is dropped as soon as the handshake ends: when
                // the flight was left valid it succeeds, and the server,
                // reading to the end, waits for the socket to close.
                let client = async {
                    drop(within(super::connect(client_tcp, pki.client, name, 65536)).await);
                };
                tokio::join!(client, server);
            });
        }
    }
}
