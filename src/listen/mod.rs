//! The listeners: each accept loop takes a permit of the connection limit
//! per connection and spawns its task, which opens the connection (TLS
//! handshake within `header_read_timeout`), then serves HTTP on it until it
//! closes or the drain asks it to.
//!
//! - `open.rs`: the handshake, its metrics, the connection's `ConnInfo`;
//! - `proxy_protocol.rs`: the PROXY header a load balancer sends first;
//! - `serve.rs`: HTTP/1.1 or HTTP/2, chosen by ALPN; the HTTP/2 server;
//! - `http1.rs`: HTTP/1.1, and idle connections set aside;
//! - `drive.rs`: one hyper connection run under the watchdog, the drain
//!   and the hard close;
//! - `io.rs`: the client's stream as hyper sees it (`ActivityIo`);
//! - `service.rs`: what the gateway hands the listeners (`Service`);
//! - `open_connections.rs`: the count the drain waits on.

mod drive;
mod http1;
mod io;
mod open;
mod open_connections;
mod per_ip;
pub(crate) mod proxy_protocol;
mod serve;
mod service;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

pub use crate::conn::{ConnInfo, ListenerKind};
pub use drive::CLOSE_GRACE;
pub use open_connections::{ConnectionGuard, OpenConnections};
pub use service::{built_in_its_box, Responding, Service};

/// Connections on the observability listener are few (probes, scrapes)
/// and must not be starved by a flood on the public ports.
const OBSERVABILITY_MAX_CONNECTIONS: usize = 256;
/// A bound listener with its accept loop's stop switch.
pub struct RunningListener {
    pub kind: ListenerKind,
    pub addr: SocketAddr,
    pub local_addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl RunningListener {
    /// Stops accepting; the listener's open connections are asked to
    /// finish their current requests and close.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}
/// Binds a listening socket (SO_REUSEADDR, a large backlog) without
/// accepting yet, so a reload can fail before anything changes.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}
/// Starts the accept loop of a bound listener.
pub fn start(
    gw: &Arc<dyn Service>,
    kind: ListenerKind,
    addr: SocketAddr,
    listener: TcpListener,
) -> RunningListener {
    let local_addr = listener.local_addr().unwrap_or(addr);
    let (stop, stop_rx) = watch::channel(false);
    let limit = match kind {
        ListenerKind::Observability => Arc::new(Semaphore::new(OBSERVABILITY_MAX_CONNECTIONS)),
        _ => gw.connection_limit(),
    };
    crate::task::spawn_essential(
        "accept loop",
        accept_loop(gw.clone(), kind, listener, limit, stop_rx),
    );
    tracing::info!(listener = kind.as_str(), "listening on {local_addr}");
    RunningListener {
        kind,
        addr,
        local_addr,
        stop,
    }
}
/// `limits.max_connections_per_ip` on the public listeners, for the
/// client's address (the PROXY header's when there is one): `None` when
/// it already holds that many (the connection is then closed),
/// `Some(None)` when no limit applies.
fn admit_per_ip(
    gw: &Arc<dyn Service>,
    kind: ListenerKind,
    peer: SocketAddr,
) -> Option<Option<per_ip::PerIpGuard>> {
    if kind == ListenerKind::Observability {
        return Some(None);
    }
    let Some(limit) = gw.live().settings.limits.max_connections_per_ip else {
        return Some(None);
    };
    match gw.connections().per_ip.admit(peer.ip(), limit) {
        Some(guard) => Some(Some(guard)),
        None => {
            crate::observe::metrics::connection_per_ip_refused(kind.as_str());
            tracing::debug!(
                listener = kind.as_str(),
                "connection closed: {} holds limits.max_connections_per_ip",
                peer.ip()
            );
            None
        }
    }
}

async fn accept_loop(
    gw: Arc<dyn Service>,
    kind: ListenerKind,
    listener: TcpListener,
    limit: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(listener = kind.as_str(), "accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // A permit is taken only once a connection exists: a loop idling in
        // accept() must not park one (with several listeners sharing the
        // limit, that would lower it). Beyond the limit this loop waits
        // here holding one socket, and further connections wait in the
        // kernel's backlog instead of costing a file descriptor each.
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.changed() => return,
        };
        let _ = tcp.set_nodelay(true);
        let gw = gw.clone();
        let drain = stop.clone();
        tokio::spawn(async move {
            let _tracked = gw.connections().track(kind);
            let _permit = permit;
            // Opening (the TLS handshake) is boxed and freed once it is
            // done: the task then holds only a pointer to the HTTP side, not
            // the handshake's state nor a second slot for the TLS stream.
            if let Some((conn, _per_ip)) =
                Box::pin(open::open(gw.clone(), kind, tcp, peer, drain)).await
            {
                conn.await;
            }
        });
    }
}
