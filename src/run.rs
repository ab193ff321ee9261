//! Running the gateway until SIGTERM/SIGINT, then draining (SPEC §5).

use std::sync::Arc;

use crate::config::{ConfigErrors, Settings};
use crate::gateway::{Adjust, Gateway};
use crate::observe::metrics;
use crate::reload;

/// A multi-threaded runtime with `server.worker_threads` threads, like
/// nginx's `worker_processes`.
pub fn runtime(worker_threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if worker_threads <= 1 {
        // One worker: the single-threaded scheduler does the same work
        // without the multi-threaded one's cross-thread bookkeeping.
        return tokio::runtime::Builder::new_current_thread()
            .thread_name("gisgate-worker")
            .enable_all()
            .build();
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads)
        .thread_name("gisgate-worker")
        .enable_all()
        .build()
}

/// Starts the gateway with metrics and reload, serves until a signal, then
/// drains. Errors are those of the startup config (exit 1).
pub async fn serve(settings: Settings) -> Result<(), ConfigErrors> {
    let stop = shutdown_signal();
    let gw = start(settings).await?;
    stop.await;
    tracing::info!("shutdown signal received");
    gw.shutdown().await;
    Ok(())
}

/// Starts everything but does not wait: for `serve`, the demo and tests.
pub async fn start(settings: Settings) -> Result<Arc<Gateway>, ConfigErrors> {
    start_adjusted(settings, None).await
}

/// [`start`], with `adjust` applied to the config and to every reload's
/// (see [`Adjust`]).
pub async fn start_adjusted(
    settings: Settings,
    adjust: Option<Adjust>,
) -> Result<Arc<Gateway>, ConfigErrors> {
    // GISGATE_METRICS=off runs without a recorder, only to measure what
    // recording costs (README, Performance); /metrics then shows only the
    // certificate expiry gauges.
    let handle = if std::env::var("GISGATE_METRICS").as_deref() == Ok("off") {
        tracing::warn!("GISGATE_METRICS=off: metrics are not recorded");
        None
    } else {
        let handle = metrics::install();
        metrics::spawn_upkeep(handle.clone());
        Some(handle)
    };
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    let gw = Gateway::start_adjusted(settings, handle, adjust).await?;
    reload::spawn(gw.clone());
    Ok(gw)
}

/// SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is
/// called, not when the future is first polled: a signal that arrives
/// after the listeners are up but before the wait begins must start a
/// drain, not end the process by the signal's default action.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            (term, int) => {
                if let Err(e) = term.and(int) {
                    tracing::warn!("cannot listen for SIGTERM and SIGINT: {e}");
                }
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
