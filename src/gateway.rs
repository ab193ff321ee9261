//! The running gateway: the live snapshot behind an `ArcSwap`, its
//! listeners, the connection limit, reload and graceful shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use http::Request;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::{self, ConfigErrors, Settings};
use crate::conn::ConnInfo;
use crate::diff;
use crate::listen::{
    self, built_in_its_box, ListenerKind, OpenConnections, Responding, RunningListener, Service,
};
use crate::live::Live;
use crate::observe::endpoints;
use crate::observe::metrics;
use crate::proxy;
use crate::tls::server::TlsSessions;

pub struct Gateway {
    pub live: ArcSwap<Live>,
    pub sessions: TlsSessions,
    /// Permits for client connections on the public listeners.
    pub connection_limit: Arc<Semaphore>,
    limit_configured: Mutex<usize>,
    pub prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
    draining: AtomicBool,
    listeners: Mutex<Vec<RunningListener>>,
    reload_lock: tokio::sync::Mutex<()>,
    connections: Arc<OpenConnections>,
    /// Applied to every config loaded by a reload, as it was to the first.
    adjust: Option<Adjust>,
}

/// A change made to each config a gateway loads, the first and every
/// reload's: `gisgate demo` keeps its listeners on loopback this way,
/// whatever an edit of gateway.toml says.
pub type Adjust = fn(&mut Settings);

/// What a successful reload changed, in policy terms.
#[derive(Debug)]
pub struct Reloaded {
    pub changes: Vec<String>,
}

impl Gateway {
    /// Builds the first state and binds every listener; any failure is
    /// reported before a single connection is accepted.
    pub async fn start(
        settings: Settings,
        prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ) -> Result<Arc<Gateway>, ConfigErrors> {
        Self::start_adjusted(settings, prometheus, None).await
    }

    /// [`start`](Self::start), with `adjust` applied to this config and
    /// to every one a reload loads.
    pub async fn start_adjusted(
        mut settings: Settings,
        prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
        adjust: Option<Adjust>,
    ) -> Result<Arc<Gateway>, ConfigErrors> {
        if let Some(adjust) = adjust {
            adjust(&mut settings);
        }
        let sessions =
            TlsSessions::new().map_err(|e| ConfigErrors(vec![settings.error_at("tls", e)]))?;
        let live = Live::build(settings, &sessions, None)?;
        let bound = bind_all(&live.settings, &[])?;
        let max = live.settings.limits.max_connections;
        let gw = Arc::new(Gateway {
            live: ArcSwap::from_pointee(live),
            sessions,
            connection_limit: Arc::new(Semaphore::new(max)),
            limit_configured: Mutex::new(max),
            prometheus,
            draining: AtomicBool::new(false),
            listeners: Mutex::new(Vec::new()),
            reload_lock: tokio::sync::Mutex::new(()),
            connections: Arc::default(),
            adjust,
        });
        let running: Vec<_> = bound
            .into_iter()
            .map(|(kind, addr, l)| listen::start(&(gw.clone() as Arc<dyn Service>), kind, addr, l))
            .collect();
        *gw.listeners.lock().expect("listeners lock") = running;
        metrics::config_loaded();
        Ok(gw)
    }

    /// Where each listener really listens (port 0 resolved).
    pub fn local_addr(&self, kind: ListenerKind) -> Option<SocketAddr> {
        let listeners = self.listeners.lock().expect("listeners lock");
        listeners
            .iter()
            .find(|l| l.kind == kind)
            .map(|l| l.local_addr)
    }

    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed)
    }

    /// Validate, then publish: the new file is parsed, its certificates
    /// loaded, its upstream client built and new listeners bound before one
    /// atomic swap. Any failure leaves the running state untouched.
    pub async fn reload(self: &Arc<Self>) -> Result<Reloaded, ConfigErrors> {
        let published = self.reload_if(|_| true).await?;
        Ok(published.expect("a reload that checks nothing publishes what validates"))
    }

    /// [`reload`](Self::reload), publishing only if `still_current` holds
    /// for the new settings just before the swap (hot reload checks that the
    /// files are still those that settled). `Ok(None)`: not published, and
    /// counted neither as a success nor as a failure.
    pub async fn reload_if(
        self: &Arc<Self>,
        still_current: impl FnOnce(&Settings) -> bool,
    ) -> Result<Option<Reloaded>, ConfigErrors> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let result = self.try_reload(still_current);
        match &result {
            Ok(Some(_)) => metrics::reload_succeeded(),
            Ok(None) => {}
            Err(_) => metrics::reload_failed(),
        }
        result
    }

    fn try_reload(
        self: &Arc<Self>,
        still_current: impl FnOnce(&Settings) -> bool,
    ) -> Result<Option<Reloaded>, ConfigErrors> {
        let old = self.live.load_full();
        let mut settings = config::load(&old.settings.path)?;
        if let Some(adjust) = self.adjust {
            adjust(&mut settings);
        }
        let new = Live::build(settings, &self.sessions, Some(&old))?;
        let current: Vec<(ListenerKind, SocketAddr)> = {
            let l = self.listeners.lock().expect("listeners lock");
            l.iter().map(|r| (r.kind, r.addr)).collect()
        };
        let bound = bind_all(&new.settings, &current)?;
        let changes = diff::changes(&old.settings, old.certs(), &new.settings, new.certs());
        let wanted = wanted_listeners(&new.settings);
        let new_limit = new.settings.limits.max_connections;
        if !still_current(&new.settings) {
            return Ok(None);
        }
        self.live.store(Arc::new(new));

        let mut listeners = self.listeners.lock().expect("listeners lock");
        listeners.retain(|l| {
            let keep = wanted.iter().any(|(k, a, _)| *k == l.kind && *a == l.addr);
            if !keep {
                tracing::info!(
                    listener = l.kind.as_str(),
                    "closing listener {} (removed by reload); its connections drain",
                    l.local_addr
                );
                l.stop();
            }
            keep
        });
        for (kind, addr, l) in bound {
            listeners.push(listen::start(
                &(self.clone() as Arc<dyn Service>),
                kind,
                addr,
                l,
            ));
        }
        drop(listeners);
        self.resize_connection_limit(new_limit);
        Ok(Some(Reloaded { changes }))
    }

    fn resize_connection_limit(&self, new: usize) {
        let mut configured = self.limit_configured.lock().expect("limit lock");
        if new > *configured {
            self.connection_limit.add_permits(new - *configured);
        } else if new < *configured {
            // Take the surplus permits as connections close; never block.
            let surplus = (*configured - new) as u32;
            let sem = self.connection_limit.clone();
            tokio::spawn(async move {
                if let Ok(p) = sem.acquire_many_owned(surplus).await {
                    p.forget();
                }
            });
        }
        *configured = new;
    }

    /// How many times an idle HTTP/1.1 connection has been set aside (its
    /// buffers freed until its next request; README, Resources). For tests
    /// and debugging: not a metric, the SPEC names those.
    pub fn connections_set_aside(&self) -> u64 {
        self.connections.set_aside()
    }

    /// Client connections open now on the public listeners (those the
    /// drain waits for), WebSocket tunnels included.
    pub fn open_connections(&self) -> usize {
        self.connections.count()
    }

    /// SPEC §5: /readyz turns 503, listeners stop accepting, in-flight
    /// requests finish within `limits.shutdown_grace`. The observability
    /// listener stays up meanwhile, so probes see the 503 rather than a
    /// refused connection.
    pub async fn shutdown(&self) {
        tracing::info!(
            "shutting down: /readyz is 503, listeners closed, draining in-flight requests"
        );
        self.draining.store(true, Ordering::Relaxed);
        let grace = self.live.load().settings.limits.shutdown_grace;
        for l in self.listeners.lock().expect("listeners lock").iter() {
            if l.kind != ListenerKind::Observability {
                l.stop();
            }
        }
        let drained = tokio::time::timeout(grace, self.connections.none_left()).await;
        match drained {
            Ok(()) => tracing::info!("drained; all connections closed"),
            Err(_) => tracing::warn!(
                "shutdown grace of {:?} passed with {} connection(s) still open; closing them",
                grace,
                self.connections.count()
            ),
        }
    }
}

impl Service for Gateway {
    fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    fn connection_limit(&self) -> Arc<Semaphore> {
        self.connection_limit.clone()
    }

    fn connections(&self) -> &Arc<OpenConnections> {
        &self.connections
    }

    fn respond(self: Arc<Self>, info: Arc<ConnInfo>, req: Request<Incoming>) -> Responding {
        built_in_its_box(move || async move {
            let live = self.live.load_full();
            Ok(match info.kind {
                ListenerKind::Observability => {
                    let prometheus = self.prometheus.as_ref();
                    endpoints::handle(&live, self.is_ready(), prometheus, req).await
                }
                _ => proxy::handle(live, info, req).await,
            })
        })
    }
}

fn wanted_listeners(s: &Settings) -> Vec<(ListenerKind, SocketAddr, &'static str)> {
    let mut out = Vec::new();
    if let Some(a) = s.server.https_listen {
        out.push((ListenerKind::Https, a, "server.https_listen"));
    }
    if let Some(a) = s.server.http_listen {
        out.push((ListenerKind::Http, a, "server.http_listen"));
    }
    if let Some(a) = s.observability_listen {
        out.push((ListenerKind::Observability, a, "observability.listen"));
    }
    out
}

/// Binds the listeners `s` wants that are not already running.
fn bind_all(
    s: &Settings,
    running: &[(ListenerKind, SocketAddr)],
) -> Result<Vec<(ListenerKind, SocketAddr, TcpListener)>, ConfigErrors> {
    let mut out = Vec::new();
    for (kind, addr, key) in wanted_listeners(s) {
        if running.contains(&(kind, addr)) {
            continue;
        }
        match listen::bind(addr) {
            Ok(l) => out.push((kind, addr, l)),
            Err(e) => {
                let message = match same_port(running, addr) {
                    // Linux refuses an address on a port a wildcard (or
                    // another address) of ours is listening on, and closing
                    // ours first would drop what waits in its backlog and
                    // leave no listener if the bind then failed.
                    Some(held) if e.kind() == std::io::ErrorKind::AddrInUse => format!(
                        "cannot listen on {addr} while the running listener on {held} holds port {}: moving a listener to another address on the same port needs a restart (the running config is kept)",
                        addr.port()
                    ),
                    _ => format!("cannot listen on {addr}: {e}"),
                };
                return Err(ConfigErrors(vec![s.error_at(key, message)]));
            }
        }
    }
    Ok(out)
}

/// A running listener's address on `addr`'s port.
fn same_port(running: &[(ListenerKind, SocketAddr)], addr: SocketAddr) -> Option<SocketAddr> {
    running
        .iter()
        .map(|(_, a)| *a)
        .find(|a| a.port() == addr.port() && *a != addr)
}
