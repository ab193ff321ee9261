//! TLS session resumption towards the upstream: a ticket store deep enough
//! for bursts of new connections.
//!
//! rustls' `ClientSessionMemoryCache` keeps at most 8 TLS 1.3 tickets per
//! server, and a ticket is used once. When more than 8 upstream connections
//! open at once (a burst of concurrent requests beyond the idle pool, say
//! HTTP/2 clients with many streams) the store runs dry and every further
//! connection is a full handshake, which costs the GIS server an RSA
//! signature each. Every handshake brings back more tickets than it uses
//! (rustls and OpenSSL servers send 2), so a deeper store keeps resumption
//! going through the burst. The gateway talks to one server name per
//! upstream client, so this store holds one server's state.

use std::collections::VecDeque;
use std::sync::Mutex;

use rustls::client::{ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::pki_types::ServerName;
use rustls::NamedGroup;

/// Tickets kept: enough for a few hundred connections opening at once, at
/// a few KiB each (a ticket shares its connection's certificate chain).
pub const MAX_TICKETS: usize = 256;

#[derive(Debug, Default)]
pub struct TicketStore {
    state: Mutex<Server>,
}

/// What is remembered about the one server name in use. A different name
/// replaces it: tickets are never offered to a server they did not come
/// from.
#[derive(Debug, Default)]
struct Server {
    name: Option<ServerName<'static>>,
    kx_hint: Option<NamedGroup>,
    tls12: Option<Tls12ClientSessionValue>,
    tls13: VecDeque<Tls13ClientSessionValue>,
}

impl TicketStore {
    /// Runs `f` on the state for `name`, or returns `None` if the store
    /// holds another server's state.
    fn read<T>(
        &self,
        name: &ServerName<'_>,
        f: impl FnOnce(&mut Server) -> Option<T>,
    ) -> Option<T> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match &s.name {
            Some(n) if n == name => f(&mut s),
            _ => None,
        }
    }

    /// Runs `f` on the state for `name`, starting afresh if it is new.
    fn write(&self, name: ServerName<'static>, f: impl FnOnce(&mut Server)) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.name.as_ref() != Some(&name) {
            *s = Server {
                name: Some(name),
                ..Server::default()
            };
        }
        f(&mut s);
    }
}

impl ClientSessionStore for TicketStore {
    fn set_kx_hint(&self, name: ServerName<'static>, group: NamedGroup) {
        self.write(name, |s| s.kx_hint = Some(group));
    }

    fn kx_hint(&self, name: &ServerName<'_>) -> Option<NamedGroup> {
        self.read(name, |s| s.kx_hint)
    }

    fn set_tls12_session(&self, name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.write(name, |s| s.tls12 = Some(value));
    }

    fn tls12_session(&self, name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.read(name, |s| s.tls12.clone())
    }

    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.read(name, |s| s.tls12.take());
    }

    fn insert_tls13_ticket(&self, name: ServerName<'static>, value: Tls13ClientSessionValue) {
        self.write(name, |s| {
            if s.tls13.len() >= MAX_TICKETS {
                s.tls13.pop_front();
            }
            s.tls13.push_back(value);
        });
    }

    fn take_tls13_ticket(&self, name: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        // Newest first: the oldest are the nearest to expiry.
        self.read(name, |s| s.tls13.pop_back())
    }
}
