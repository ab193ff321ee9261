//! The TLS stream (`tls/stream.rs`, over rustls' unbuffered API) on both
//! sides, fed arbitrary bytes as the peer's.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::tls::stream;

use super::input;

/// The input (after two bytes that set how the peer's bytes arrive) is
/// what a client sends to the gateway's TLS listener. Checked: the
/// handshake ends, with an error (a peer without our keys cannot finish
/// it); the stream never waits unless the socket made it (a wait with
/// nothing to wake it would hang the connection until its timeout); it
/// never polls more than a bound set by the input's length (no loop).
pub fn tls_server(data: &[u8]) {
    let (peer, shared) = Peer::new(data);
    let result = drive(stream::accept(peer, server_config().clone()), &shared);
    assert!(result.is_err(), "a handshake completed with fuzzer bytes");
}

/// As [`tls_server`], for the upstream side: the input is what the
/// upstream answers to the gateway's ClientHello.
pub fn tls_client(data: &[u8]) {
    let (peer, shared) = Peer::new(data);
    let name = ServerName::try_from("localhost").expect("literal");
    let result = drive(
        stream::connect(peer, client_config().clone(), name, 64 * 1024),
        &shared,
    );
    assert!(result.is_err(), "a handshake completed with fuzzer bytes");
}

/// Polls `future` to its end with a waker that does nothing: a `Pending`
/// the peer did not cause would never be woken.
fn drive<F: Future>(future: F, shared: &Shared) -> F::Output {
    // A failed handshake lingers for the peer's close under a timer
    // (`TlsStream::linger`): the timer needs a runtime to register with,
    // though nothing here ever waits for it to fire.
    thread_local! {
        static TIMERS: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime with a timer");
    }
    TIMERS.with(|rt| {
        let _in_runtime = rt.enter();
        drive_by_hand(future, shared)
    })
}

fn drive_by_hand<F: Future>(future: F, shared: &Shared) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..shared.poll_bound {
        shared.waited.set(false);
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            Poll::Pending => assert!(
                shared.waited.get(),
                "the stream waits with nothing to wake it"
            ),
        }
    }
    panic!("no end after {} polls", shared.poll_bound);
}

/// What the test sees of the peer while the stream owns it.
struct Shared {
    /// The peer answered the last poll with `Pending`.
    waited: Cell<bool>,
    poll_bound: usize,
}

/// The peer: reads yield the input in chunks, sometimes after a
/// `Pending`; writes are taken, sometimes in part or after a `Pending`.
struct Peer<'a> {
    bytes: &'a [u8],
    /// Bytes per read, at most (1..=256; 0: all there is).
    chunk: usize,
    /// Bit `i % 8` set: the `i`-th read or write waits once first.
    waits: u8,
    calls: usize,
    waiting: bool,
    shared: Rc<Shared>,
}

impl<'a> Peer<'a> {
    fn new(data: &'a [u8]) -> (Self, Rc<Shared>) {
        let (chunk, rest) = input::flags(data);
        let (waits, bytes) = input::flags(rest);
        // Each byte is read once, each read and write waits at most once,
        // and a handshake writes a few flights: polls stay well below this.
        let poll_bound = 4 * bytes.len() + 256;
        let shared = Rc::new(Shared {
            waited: Cell::new(false),
            poll_bound,
        });
        let peer = Peer {
            bytes,
            chunk: usize::from(chunk),
            waits,
            calls: 0,
            waiting: false,
            shared: shared.clone(),
        };
        (peer, shared)
    }

    /// Whether this call waits (once) before it is served.
    fn wait_first(&mut self, cx: &mut Context<'_>) -> bool {
        if self.waiting {
            self.waiting = false;
            return false;
        }
        self.calls += 1;
        if self.waits & (1 << (self.calls % 8)) == 0 {
            return false;
        }
        self.waiting = true;
        self.shared.waited.set(true);
        cx.waker().wake_by_ref();
        true
    }
}

impl AsyncRead for Peer<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.wait_first(cx) {
            return Poll::Pending;
        }
        let chunk = if this.chunk == 0 {
            usize::MAX
        } else {
            this.chunk
        };
        let n = this.bytes.len().min(buf.remaining()).min(chunk);
        buf.put_slice(&this.bytes[..n]);
        this.bytes = &this.bytes[n..];
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Peer<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.wait_first(cx) {
            return Poll::Pending;
        }
        // Every other write is taken only in part.
        let n = if this.calls.is_multiple_of(2) {
            buf.len().div_ceil(2)
        } else {
            buf.len()
        };
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A certificate for `localhost`, made once per process.
fn identity() -> &'static (CertificateDer<'static>, PrivateKeyDer<'static>) {
    static IDENTITY: OnceLock<(CertificateDer<'static>, PrivateKeyDer<'static>)> = OnceLock::new();
    IDENTITY.get_or_init(|| {
        let issued =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
        let key = PrivateKeyDer::try_from(issued.signing_key.serialize_der()).expect("key");
        (CertificateDer::from(issued.cert.der().to_vec()), key)
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// TLS 1.2 and 1.3 with the gateway's ALPN protocols.
fn server_config() -> &'static Arc<ServerConfig> {
    static CONFIG: OnceLock<Arc<ServerConfig>> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let (cert, key) = identity();
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key.clone_key())
            .expect("certificate");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    })
}

/// Trusts [`identity`]; TLS 1.2 and 1.3, as the upstream client.
fn client_config() -> &'static Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        roots.add(identity().0.clone()).expect("root");
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    })
}
