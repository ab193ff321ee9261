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
    let gw = start(settings).await?;
    wait_for_shutdown_signal().await;
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

async fn wait_for_shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
