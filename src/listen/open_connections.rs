//! The open client connections: the count the drain waits on, and the
//! `gisgate_connections_active` gauge.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::conn::ListenerKind;
use crate::observe::metrics;

/// The client connections open now, for the drain and the
/// `gisgate_connections_active` gauge. Connections of the observability
/// listener are not waited for: it stays up through the drain, and probes
/// and scrapes keep theirs open.
#[derive(Default)]
pub struct OpenConnections {
    active: AtomicUsize,
    none_left: Notify,
    pub(super) set_aside: AtomicU64,
    /// `limits.max_connections_per_ip`'s count.
    pub(super) per_ip: Arc<super::per_ip::PerIpConnections>,
}

impl OpenConnections {
    pub fn track(self: &Arc<Self>, kind: ListenerKind) -> ConnectionGuard {
        if kind != ListenerKind::Observability {
            self.active.fetch_add(1, Ordering::Relaxed);
        }
        metrics::connection_opened(kind.as_str());
        ConnectionGuard {
            open: self.clone(),
            kind,
        }
    }

    /// Public listeners' connections open now, WebSocket tunnels included.
    pub fn count(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Returns once no connection the drain waits for is open.
    pub async fn none_left(&self) {
        loop {
            let notified = self.none_left.notified();
            if self.active.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// How many times an idle HTTP/1.1 connection has been set aside.
    pub fn set_aside(&self) -> u64 {
        self.set_aside.load(Ordering::Relaxed)
    }
}
pub struct ConnectionGuard {
    open: Arc<OpenConnections>,
    kind: ListenerKind,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        metrics::connection_closed(self.kind.as_str());
        if self.kind != ListenerKind::Observability
            && self.open.active.fetch_sub(1, Ordering::AcqRel) == 1
        {
            self.open.none_left.notify_waiters();
        }
    }
}
