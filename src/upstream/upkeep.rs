//! The periodic upkeep of a set of upstream connections (the keep-alive
//! pool, the HTTP/2 connections): closing what has idled too long.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Starts once, on the first connection rather than when the client is
/// built (`check` builds clients outside any runtime), and runs while its
/// owner exists: a reload builds new clients, and the old ones' connections
/// close when their last request is done.
#[derive(Default)]
pub struct Upkeep {
    started: AtomicBool,
}

impl Upkeep {
    /// Calls `work` every `period` (20 ms at least) until `owner` is gone.
    pub fn start<T: Send + Sync + 'static>(
        &self,
        owner: &Arc<T>,
        period: Duration,
        work: fn(&T, Instant),
    ) {
        if self.started.swap(true, Ordering::Relaxed) {
            return;
        }
        let owner: Weak<T> = Arc::downgrade(owner);
        let period = period.max(Duration::from_millis(20));
        crate::task::spawn_essential("upstream connection upkeep", async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(owner) = owner.upgrade() else {
                    return;
                };
                work(&owner, Instant::now());
            }
        });
    }
}
