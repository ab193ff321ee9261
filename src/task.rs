//! Tasks the gateway cannot run without, and what a panic does.
//!
//! The release build unwinds on a panic (Cargo.toml), so that a panic in
//! one connection's task, ours or a library's and reached by whatever a
//! client sent, ends that connection and nothing else: tokio catches it
//! and the task's guards (the connection count, its permit) still run.
//! With `panic = "abort"` one crafted ClientHello record once ended the
//! gateway (README, Resilience).
//!
//! A task the whole gateway depends on is different: an accept loop, the
//! reload loop and its file watcher, metrics and pool upkeep. Running on
//! without one would be a gateway that silently stops accepting or
//! reloading, so if one of those panics the process exits with status 70
//! (EX_SOFTWARE) for its supervisor (systemd, Kubernetes) to restart it.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The exit status after an essential task panicked.
pub const EXIT_ESSENTIAL_PANICKED: i32 = 70;

/// Spawns a task the gateway cannot run without: if it panics, the
/// process exits.
pub fn spawn_essential<F>(name: &'static str, task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let handle = tokio::spawn(task);
    tokio::spawn(async move {
        // Cancelled (the runtime shutting down) is not a failure.
        if let Err(e) = handle.await {
            if e.is_panic() {
                essential_panicked(name);
            }
        }
    });
}

/// Runs the body of a thread the gateway cannot run without: if it
/// panics, the process exits.
pub fn run_essential(name: &'static str, body: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(body)).is_err() {
        essential_panicked(name);
    }
}

fn essential_panicked(name: &str) -> ! {
    tracing::error!(
        task = name,
        "a task the gateway cannot run without panicked; exiting for the supervisor to restart it"
    );
    std::process::exit(EXIT_ESSENTIAL_PANICKED);
}

/// Panics go to the log like every other event, with where they
/// happened; the task that panicked ends, the gateway serves on.
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let thread = std::thread::current();
        tracing::error!(
            thread = thread.name().unwrap_or("unnamed"),
            at,
            "panicked: {message}; the task that panicked has ended"
        );
    }));
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::time::Duration;

    use super::*;

    /// Runs this test binary again with only `test` and `env` set: the
    /// child's exit status. (A process exit cannot be observed in-process.)
    fn child_status(test: &str, env: &str) -> Option<i32> {
        let exe = std::env::current_exe().unwrap();
        let status = Command::new(exe)
            .args(["--exact", test, "--test-threads", "1"])
            .env(env, "1")
            .output()
            .unwrap()
            .status;
        status.code()
    }

    #[test]
    fn an_essential_task_that_panics_ends_the_process() {
        const CHILD: &str = "GISGATE_TEST_ESSENTIAL_CHILD";
        if std::env::var_os(CHILD).is_some() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                spawn_essential("test", async { panic!("essential task fails") });
                // Exits before this ends; if not, the child passes: 0.
                tokio::time::sleep(Duration::from_secs(20)).await;
            });
            return;
        }
        let test = "task::tests::an_essential_task_that_panics_ends_the_process";
        assert_eq!(child_status(test, CHILD), Some(EXIT_ESSENTIAL_PANICKED));
    }

    #[test]
    fn an_essential_thread_that_panics_ends_the_process() {
        const CHILD: &str = "GISGATE_TEST_ESSENTIAL_THREAD_CHILD";
        if std::env::var_os(CHILD).is_some() {
            std::thread::spawn(|| run_essential("test", || panic!("essential thread fails")))
                .join()
                .unwrap();
            std::thread::sleep(Duration::from_secs(20));
            return;
        }
        let test = "task::tests::an_essential_thread_that_panics_ends_the_process";
        assert_eq!(child_status(test, CHILD), Some(EXIT_ESSENTIAL_PANICKED));
    }

    #[tokio::test]
    async fn any_other_task_that_panics_ends_alone() {
        let other = tokio::spawn(async { panic!("a connection's task fails") });
        assert!(other.await.unwrap_err().is_panic());
        // The runtime, and everything on it, runs on.
        assert_eq!(tokio::spawn(async { 7 }).await.unwrap(), 7);
    }
}
