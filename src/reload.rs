//! What triggers a reload: a change to the config file or any file it
//! names, seen by watching their *directories* (Kubernetes ConfigMap and
//! Secret volumes swap a `..data` symlink, editors rename over the file,
//! others write in place); SIGHUP; and a periodic content check for
//! filesystems that send no events. Each trigger compares a hash of the
//! files' contents, so touching a file without changing it does nothing.
//!
//! Whatever the trigger, the content is applied only once it has stayed the
//! same for `reload.settle`, and only if it is still the same just before
//! the swap: a file caught mid-write must never be applied, even when the
//! part written so far is a valid config (one without `[admin]` would admit
//! loopback by default).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::config::{self, Settings};
use crate::gateway::Gateway;

/// Debounce window: editors and kubelet write in several steps; one reload
/// once file events have been quiet this long, well within the 1 s target
/// of SPEC §4, and at most `DEBOUNCE_MAX` after the first event even if
/// they never stop.
const DEBOUNCE: Duration = Duration::from_millis(150);
const DEBOUNCE_MAX: Duration = Duration::from_millis(600);
const PERIODIC_CHECK: Duration = Duration::from_secs(30);
/// How often the files are hashed while waiting for them to settle: a
/// change inside the settle period restarts it.
const SETTLE_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    FileEvent,
    Signal,
    Periodic,
}

/// Starts the reload machinery for a running gateway.
pub fn spawn(gw: Arc<Gateway>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let settings = gw.live.load().settings.clone();
    // What was actually loaded, so a write racing the start is still seen.
    let loaded = fingerprint_of(settings.source.text().as_bytes(), &files_of(&settings));
    let mut rewatch = None;
    if settings.reload_watch {
        // Register the watches before returning: a change right after
        // start must not slip through.
        if let Some(watcher) = Watcher::new(tx.clone()) {
            let mut watcher = watcher;
            watcher.refresh(&gw);
            let gw = gw.clone();
            let (rewatch_tx, rewatch_rx) = std::sync::mpsc::channel();
            rewatch = Some(rewatch_tx);
            std::thread::Builder::new()
                .name("gisgate-watch".into())
                .spawn(move || {
                    crate::task::run_essential("config watcher", || watcher.run(gw, rewatch_rx))
                })
                .expect("spawn watcher thread");
        }
    }
    spawn_sighup(tx.clone());
    let periodic = tx;
    crate::task::spawn_essential("periodic config check", async move {
        let mut tick = tokio::time::interval(PERIODIC_CHECK);
        tick.tick().await;
        loop {
            tick.tick().await;
            if periodic.send(Trigger::Periodic).is_err() {
                return;
            }
        }
    });
    crate::task::spawn_essential("reload loop", reload_loop(gw, rx, loaded, rewatch));
}

fn spawn_sighup(tx: mpsc::UnboundedSender<Trigger>) {
    crate::task::spawn_essential("SIGHUP listener", async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; reload by file change only");
            return;
        };
        while hup.recv().await.is_some() {
            if tx.send(Trigger::Signal).is_err() {
                return;
            }
        }
    });
}

/// `rewatch` tells the watcher thread that a reload was attempted, so it
/// watches the directories of whatever files the config names now.
async fn reload_loop(
    gw: Arc<Gateway>,
    mut rx: mpsc::UnboundedReceiver<Trigger>,
    loaded: [u8; 32],
    rewatch: Option<std::sync::mpsc::Sender<()>>,
) {
    let config_path = gw.live.load().settings.path.clone();
    let mut last_seen = loaded;
    while let Some(mut trigger) = rx.recv().await {
        if trigger == Trigger::FileEvent {
            trigger = debounce(&mut rx).await;
        }
        trigger = coalesce(trigger, &mut rx);
        if trigger != Trigger::Signal && fingerprint(&config_path) == last_seen {
            continue;
        }
        let how = match trigger {
            Trigger::FileEvent => "file change",
            Trigger::Signal => "SIGHUP",
            Trigger::Periodic => "periodic check",
        };
        // A SIGHUP waits too: a signal sent while the file is being written
        // is no safer than the write's own file event.
        loop {
            // The running config's period: the new file is not trusted yet.
            let settle = gw.live.load().settings.reload_settle;
            let settled = until_settled(settle, || fingerprint(&config_path)).await;
            trigger = coalesce(trigger, &mut rx);
            if trigger != Trigger::Signal && settled == last_seen {
                // Changed and changed back: nothing to do.
                break;
            }
            // Built from exactly the settled content, and that content still
            // on disk, or not published.
            let unchanged = |s: &Settings| {
                fingerprint_of(s.source.text().as_bytes(), &files_of(s)) == settled
                    && fingerprint(&config_path) == settled
            };
            match apply(&gw, how, unchanged).await {
                Applied::Done => {
                    last_seen = settled;
                    break;
                }
                Applied::ChangedMeanwhile => {
                    tracing::info!(
                        trigger = how,
                        "config files changed while the reload was built; not applied, waiting for them to settle again"
                    );
                }
            }
        }
        if let Some(rewatch) = &rewatch {
            let _ = rewatch.send(());
        }
    }
}

/// Takes every trigger already queued: one reload serves them all, and a
/// SIGHUP among them makes it a forced one.
fn coalesce(mut trigger: Trigger, rx: &mut mpsc::UnboundedReceiver<Trigger>) -> Trigger {
    while let Ok(t) = rx.try_recv() {
        if t == Trigger::Signal {
            trigger = t;
        }
    }
    trigger
}

/// Samples `content` every `SETTLE_POLL` until it has been the same for
/// `settle`, and returns it. With a zero `settle`, the first sample.
async fn until_settled<T: PartialEq>(settle: Duration, mut content: impl FnMut() -> T) -> T {
    let mut current = content();
    let mut since = tokio::time::Instant::now();
    loop {
        let settled_at = since + settle;
        let now = tokio::time::Instant::now();
        if now >= settled_at {
            return current;
        }
        tokio::time::sleep_until(settled_at.min(now + SETTLE_POLL)).await;
        let sample = content();
        if sample != current {
            current = sample;
            since = tokio::time::Instant::now();
        }
    }
}

/// Waits until file events have been quiet for `DEBOUNCE` (at most
/// `DEBOUNCE_MAX` in all); a SIGHUP meanwhile makes the reload a forced one.
async fn debounce(rx: &mut mpsc::UnboundedReceiver<Trigger>) -> Trigger {
    let mut trigger = Trigger::FileEvent;
    let give_up = tokio::time::Instant::now() + DEBOUNCE_MAX;
    loop {
        let quiet = (tokio::time::Instant::now() + DEBOUNCE).min(give_up);
        tokio::select! {
            next = rx.recv() => match next {
                Some(Trigger::Signal) => trigger = Trigger::Signal,
                Some(_) => {}
                None => return trigger,
            },
            _ = tokio::time::sleep_until(quiet) => return trigger,
        }
    }
}

/// What became of a reload attempt.
enum Applied {
    /// Published, or refused with the running config kept (logged).
    Done,
    /// Not published: the files changed after they had settled.
    ChangedMeanwhile,
}

/// Reloads, publishing only if `unchanged` holds for the new settings just
/// before the swap, and logs the outcome in policy terms.
async fn apply(gw: &Arc<Gateway>, how: &str, unchanged: impl FnOnce(&Settings) -> bool) -> Applied {
    match gw.reload_if(unchanged).await {
        Ok(None) => Applied::ChangedMeanwhile,
        Ok(Some(r)) if r.changes.is_empty() => {
            tracing::info!(
                trigger = how,
                "config reloaded: the content changed nothing in the effective policy"
            );
            Applied::Done
        }
        Ok(Some(r)) => {
            tracing::info!(trigger = how, changes = r.changes.len(), "config reloaded");
            for change in &r.changes {
                tracing::info!(trigger = how, "changed {change}");
            }
            Applied::Done
        }
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(
                    trigger = how,
                    "reload refused, keeping the running config: {e}"
                );
            }
            Applied::Done
        }
    }
}

/// The config file and every file it names, as the file on disk says now.
fn named_files(config_path: &Path) -> Vec<PathBuf> {
    let mut files = vec![config_path.to_path_buf()];
    if let Ok(s) = config::load(config_path) {
        files.extend(files_of(&s));
    }
    files
}

pub fn files_of(s: &Settings) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(t) = &s.tls {
        files.extend(t.cert.files());
        files.extend(t.client_auth.files());
        for sni in &t.sni {
            files.extend(sni.cert.files());
            files.extend(sni.client_auth.files());
        }
    }
    if let Some(ca) = &s.upstream.ca {
        files.push(ca.clone());
    }
    files
}

/// SHA-256 over the contents of the config file and every file it names,
/// read through symlinks, so a `..data` swap counts and an unchanged touch
/// does not.
fn fingerprint(config_path: &Path) -> [u8; 32] {
    let text = std::fs::read(config_path).unwrap_or_default();
    let files: Vec<PathBuf> = named_files(config_path).into_iter().skip(1).collect();
    fingerprint_of(&text, &files)
}

fn fingerprint_of(config_text: &[u8], files: &[PathBuf]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((config_text.len() as u64).to_le_bytes());
    h.update(config_text);
    for f in files {
        h.update(f.as_os_str().as_encoded_bytes());
        h.update([0]);
        match std::fs::read(f) {
            Ok(bytes) => {
                h.update((bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
            Err(_) => h.update(b"<missing>"),
        }
    }
    h.finalize().into()
}

/// Watches the directories (not the files: a rename or symlink swap
/// replaces the inode a file watch would follow) of every named file.
struct Watcher {
    // notify's own watcher: event driven (inotify), no thread waking on a
    // timer while nothing changes. notify-debouncer-full's thread woke
    // every 37 ms, ~27 times a second for the gateway's whole life; the
    // reload loop debounces instead (`debounce`).
    watcher: notify::RecommendedWatcher,
    watched: BTreeSet<PathBuf>,
}

impl Watcher {
    fn new(tx: mpsc::UnboundedSender<Trigger>) -> Option<Watcher> {
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Only changes count. Reading a file raises access events
            // (open, close-nowrite); reacting to them would make every
            // content check trigger the next one.
            if let Ok(event) = event {
                if !matches!(event.kind, notify::EventKind::Access(_)) {
                    let _ = tx.send(Trigger::FileEvent);
                }
            }
        });
        match watcher {
            Ok(watcher) => Some(Watcher {
                watcher,
                watched: BTreeSet::new(),
            }),
            Err(e) => {
                tracing::warn!("cannot watch files ({e}); reload by SIGHUP and the periodic check");
                None
            }
        }
    }

    /// Watches the directories of the files named now, by the running
    /// config and by the file on disk.
    fn refresh(&mut self, gw: &Gateway) {
        let settings = gw.live.load().settings.clone();
        let mut files = named_files(&settings.path);
        files.extend(files_of(&settings));
        let dirs: BTreeSet<PathBuf> = files
            .iter()
            .filter_map(|f| f.parent())
            .map(|d| {
                if d.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    d.to_path_buf()
                }
            })
            .collect();
        for dir in dirs.difference(&self.watched.clone()) {
            match self.watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(dir.clone());
                }
                Err(e) => tracing::warn!("cannot watch {}: {e}", dir.display()),
            }
        }
        for dir in self.watched.clone().difference(&dirs) {
            let _ = self.watcher.unwatch(dir);
            self.watched.remove(dir);
        }
    }

    /// The set of files can change with each reload: look again after
    /// every attempt, until the reload loop is gone.
    fn run(mut self, gw: Arc<Gateway>, rewatch: std::sync::mpsc::Receiver<()>) {
        while rewatch.recv().is_ok() {
            self.refresh(&gw);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    /// Sends `triggers` at the given offsets (tokio's paused clock).
    fn send_at(tx: mpsc::UnboundedSender<Trigger>, triggers: Vec<(u64, Trigger)>) {
        tokio::spawn(async move {
            let start = Instant::now();
            for (ms, t) in triggers {
                tokio::time::sleep_until(start + Duration::from_millis(ms)).await;
                let _ = tx.send(t);
            }
            // Keep the channel open: debounce must end by its clock.
            std::future::pending::<()>().await;
        });
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_file_events_settles_once_they_are_quiet() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let start = Instant::now();
        send_at(
            tx,
            vec![(100, Trigger::FileEvent), (200, Trigger::FileEvent)],
        );
        assert_eq!(debounce(&mut rx).await, Trigger::FileEvent);
        // 150 ms after the last event, not after the first.
        assert_eq!(start.elapsed(), Duration::from_millis(350));
    }

    #[tokio::test(start_paused = true)]
    async fn events_that_never_stop_still_settle_within_the_cap() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let start = Instant::now();
        send_at(
            tx,
            (1..100).map(|i| (i * 100, Trigger::FileEvent)).collect(),
        );
        debounce(&mut rx).await;
        assert_eq!(start.elapsed(), DEBOUNCE_MAX);
    }

    /// Content that reads as the last of `changes` (ms since the call,
    /// content) whose time has come, on tokio's paused clock.
    fn content_at(changes: Vec<(u64, u32)>) -> impl FnMut() -> u32 {
        let start = Instant::now();
        move || {
            let now = start.elapsed();
            changes
                .iter()
                .rev()
                .find(|(ms, _)| Duration::from_millis(*ms) <= now)
                .map_or(0, |(_, content)| *content)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unchanged_content_settles_after_the_settle_period() {
        let start = Instant::now();
        let settled = until_settled(Duration::from_secs(1), content_at(vec![(0, 1)])).await;
        assert_eq!(settled, 1);
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_completed_within_the_settle_period_restarts_it() {
        // Half written at once, completed 2 s later: only the complete
        // content is returned, 3 s after it was completed.
        let start = Instant::now();
        let content = content_at(vec![(0, 1), (2000, 2)]);
        assert_eq!(until_settled(Duration::from_secs(3), content).await, 2);
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn content_changed_and_changed_back_must_settle_again() {
        let start = Instant::now();
        let content = content_at(vec![(0, 1), (500, 2), (700, 1)]);
        assert_eq!(until_settled(Duration::from_secs(1), content).await, 1);
        assert_eq!(start.elapsed(), Duration::from_millis(1700));
    }

    #[tokio::test(start_paused = true)]
    async fn content_that_keeps_changing_never_settles() {
        let content = content_at((0..100).map(|i| (i * 500, i as u32)).collect());
        let waited = tokio::time::timeout(
            Duration::from_secs(30),
            until_settled(Duration::from_secs(1), content),
        )
        .await;
        assert!(waited.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_settle_period_takes_the_content_at_once() {
        let start = Instant::now();
        assert_eq!(
            until_settled(Duration::ZERO, content_at(vec![(0, 7)])).await,
            7
        );
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sighup_during_the_wait_makes_the_reload_a_forced_one() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        send_at(tx, vec![(50, Trigger::Signal), (60, Trigger::Periodic)]);
        assert_eq!(debounce(&mut rx).await, Trigger::Signal);
    }
}
