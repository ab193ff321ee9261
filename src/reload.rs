//! What triggers a reload: a change to the config file or any file it
//! names, seen by watching their *directories* (Kubernetes ConfigMap and
//! Secret volumes swap a `..data` symlink, editors rename over the file,
//! others write in place); SIGHUP; and a periodic content check for
//! filesystems that send no events. Each trigger compares a hash of the
//! files' contents, so touching a file without changing it does nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::config::{self, Settings};
use crate::gateway::Gateway;

/// Debounce window: editors and kubelet write in several steps; one reload
/// after the burst, well within the 1 s target of SPEC §4.
const DEBOUNCE: Duration = Duration::from_millis(150);
const PERIODIC_CHECK: Duration = Duration::from_secs(30);

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
    let loaded = fingerprint_of(settings.source.as_bytes(), &files_of(&settings));
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
                .spawn(move || watcher.run(gw, rewatch_rx))
                .expect("spawn watcher thread");
        }
    }
    spawn_sighup(tx.clone());
    let periodic = tx;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PERIODIC_CHECK);
        tick.tick().await;
        loop {
            tick.tick().await;
            if periodic.send(Trigger::Periodic).is_err() {
                return;
            }
        }
    });
    tokio::spawn(reload_loop(gw, rx, loaded, rewatch));
}

fn spawn_sighup(tx: mpsc::UnboundedSender<Trigger>) {
    tokio::spawn(async move {
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
        // Coalesce a burst of triggers into one reload.
        while let Ok(t) = rx.try_recv() {
            if t == Trigger::Signal {
                trigger = t;
            }
        }
        let current = fingerprint(&config_path);
        if trigger != Trigger::Signal && current == last_seen {
            continue;
        }
        last_seen = current;
        let how = match trigger {
            Trigger::FileEvent => "file change",
            Trigger::Signal => "SIGHUP",
            Trigger::Periodic => "periodic check",
        };
        apply(&gw, how).await;
        if let Some(rewatch) = &rewatch {
            let _ = rewatch.send(());
        }
    }
}

/// Reloads and logs the outcome in policy terms.
pub async fn apply(gw: &Arc<Gateway>, how: &str) -> bool {
    match gw.reload().await {
        Ok(r) if r.changes.is_empty() => {
            tracing::info!(
                trigger = how,
                "config reloaded: the content changed nothing in the effective policy"
            );
            true
        }
        Ok(r) => {
            tracing::info!(trigger = how, changes = r.changes.len(), "config reloaded");
            for change in &r.changes {
                tracing::info!(trigger = how, "changed {change}");
            }
            true
        }
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(
                    trigger = how,
                    "reload refused, keeping the running config: {e}"
                );
            }
            false
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
        files.push(t.cert.clone());
        files.push(t.key.clone());
        for sni in &t.sni {
            files.push(sni.cert.clone());
            files.push(sni.key.clone());
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
    debouncer: notify_debouncer_full::Debouncer<
        notify::RecommendedWatcher,
        notify_debouncer_full::RecommendedCache,
    >,
    watched: BTreeSet<PathBuf>,
}

impl Watcher {
    fn new(tx: mpsc::UnboundedSender<Trigger>) -> Option<Watcher> {
        let event_tx = tx;
        let debouncer = notify_debouncer_full::new_debouncer(
            DEBOUNCE,
            None,
            move |result: notify_debouncer_full::DebounceEventResult| {
                // Only changes count. Reading a file raises access events
                // (open, close-nowrite); reacting to them would make every
                // content check trigger the next one.
                let changed = result
                    .map(|events| {
                        events
                            .iter()
                            .any(|e| !matches!(e.kind, notify::EventKind::Access(_)))
                    })
                    .unwrap_or(false);
                if changed {
                    let _ = event_tx.send(Trigger::FileEvent);
                }
            },
        );
        match debouncer {
            Ok(debouncer) => Some(Watcher {
                debouncer,
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
            match self.debouncer.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(dir.clone());
                }
                Err(e) => tracing::warn!("cannot watch {}: {e}", dir.display()),
            }
        }
        for dir in self.watched.clone().difference(&dirs) {
            let _ = self.debouncer.unwatch(dir);
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
