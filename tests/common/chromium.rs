//! A real headless Chromium, driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: JSON messages ended by a NUL byte, commands
//! on the browser's fd 3, replies and events on its fd 4). A pipe needs no
//! WebSocket client and no driver program (chromedriver, Puppeteer), and
//! no port another process could reach.
//!
//! The browser trusts the test CA the way a user's Chromium on Linux trusts
//! a local CA: through the NSS database in `$HOME/.pki/nssdb`, here a
//! temporary HOME of its own. It resolves `*.example.test` to 127.0.0.1 and
//! every other name to nothing, so it only ever talks to loopback.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// Generous: a cold Chromium start on a loaded 2-core CI machine.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Chromium {
    child: Child,
    to_browser: Mutex<ChildStdin>,
    from_browser: tokio::sync::Mutex<UnboundedReceiver<Value>>,
    /// Every event received so far, in order (replies are not kept).
    events: Mutex<Vec<Value>>,
    next_id: AtomicU64,
    /// HOME, the profile and the browser's stderr log.
    dir: tempfile::TempDir,
}

/// One page (a target attached with a flat session).
pub struct Tab<'a> {
    browser: &'a Chromium,
    session: String,
}

/// A CA trusted the way Chromium on Linux trusts a user's CA: an NSS
/// database in `home`/.pki/nssdb holding it as a trusted TLS issuer.
fn trust_ca(certutil: &Path, home: &Path, ca_pem: &Path) {
    let db = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db).unwrap();
    let db = format!("sql:{}", db.display());
    let run = |args: &[&str]| {
        let out = Command::new(certutil).args(args).output().unwrap();
        assert!(out.status.success(), "certutil {args:?}: {out:?}");
    };
    run(&["-N", "-d", &db, "--empty-password"]);
    let ca = ca_pem.to_str().unwrap();
    run(&[
        "-A",
        "-d",
        &db,
        "-n",
        "gisgate test CA",
        "-t",
        "C,,",
        "-i",
        ca,
    ]);
}

impl Chromium {
    /// Starts `program` headless with `extra` flags, trusting the CA in
    /// `ca_pem`.
    pub fn launch(program: &Path, certutil: &Path, ca_pem: &Path, extra: &[String]) -> Chromium {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        trust_ca(certutil, &home, ca_pem);
        let log = std::fs::File::create(dir.path().join("chromium.log")).unwrap();
        // The shell only wires the pipes to fds 3 and 4 and then becomes
        // the browser (exec): std has no way to hand a child extra fds
        // without unsafe code.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null"#)
            .arg(program)
            .args(flags(dir.path()))
            .args(extra)
            .env("HOME", &home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            // Its own process group, so every renderer and helper process
            // it starts can be stopped with it.
            .process_group(0)
            .spawn()
            .unwrap();
        let to_browser = Mutex::new(child.stdin.take().unwrap());
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = unbounded_channel();
        std::thread::spawn(move || {
            for message in BufReader::new(stdout).split(0) {
                let Ok(message) = message else { return };
                let Ok(value) = serde_json::from_slice::<Value>(&message) else {
                    continue;
                };
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        Chromium {
            child,
            to_browser,
            from_browser: tokio::sync::Mutex::new(rx),
            events: Mutex::default(),
            next_id: AtomicU64::new(1),
            dir,
        }
    }

    /// What the browser wrote on stderr, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromium.log")).unwrap_or_default()
    }

    /// Sends a command (to a page's `session`, or to the browser) and
    /// returns its result; a protocol error fails the test.
    pub async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            message["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.to_browser.lock().unwrap().write_all(&bytes).unwrap();
        loop {
            let reply = self.next_message(method).await;
            if reply["id"] == json!(id) {
                if let Some(e) = reply.get("error") {
                    panic!("{method} failed: {e}");
                }
                return reply["result"].clone();
            }
        }
    }

    /// The next message; an event is also kept in `events`.
    async fn next_message(&self, waiting_for: &str) -> Value {
        let mut rx = self.from_browser.lock().await;
        let message = tokio::time::timeout(REPLY_TIMEOUT, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("Chromium did not answer {waiting_for}:\n{}", self.log()))
            .unwrap_or_else(|| panic!("Chromium exited:\n{}", self.log()));
        if message.get("method").is_some() {
            self.events.lock().unwrap().push(message.clone());
        }
        message
    }

    /// Opens a blank page and attaches to it.
    pub async fn new_tab(&self) -> Tab<'_> {
        let target = self
            .call(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await;
        let tab = Tab {
            browser: self,
            session: attached["sessionId"].as_str().unwrap().to_string(),
        };
        for domain in ["Page.enable", "Network.enable", "Runtime.enable"] {
            tab.call(domain, json!({})).await;
        }
        tab
    }

    /// The parameters of every event named `method` received so far.
    pub fn events(&self, method: &str) -> Vec<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["method"] == method)
            .map(|e| e["params"].clone())
            .collect()
    }

    fn event_count(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    /// Waits for an event named `method` of `session`, received after the
    /// first `after` events.
    async fn wait_event(&self, session: &str, method: &str, after: usize) {
        let matches = |e: &Value| e["method"] == method && e["sessionId"] == session;
        loop {
            if self.events.lock().unwrap()[after..].iter().any(matches) {
                return;
            }
            self.next_message(method).await;
        }
    }
}

impl Tab<'_> {
    pub async fn call(&self, method: &str, params: Value) -> Value {
        self.browser.call(Some(&self.session), method, params).await
    }

    /// Navigates and waits for the page's load event.
    pub async fn navigate(&self, url: &str) {
        let before = self.browser.event_count();
        let nav = self.call("Page.navigate", json!({ "url": url })).await;
        if let Some(error) = nav.get("errorText") {
            panic!("navigation to {url} failed: {error}");
        }
        self.browser
            .wait_event(&self.session, "Page.loadEventFired", before)
            .await;
    }

    /// Evaluates `expression` in the page (awaiting it if it is a promise)
    /// and returns its value as JSON; an exception fails the test.
    pub async fn evaluate(&self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
            )
            .await;
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expression} threw: {e}");
        }
        r["result"]["value"].clone()
    }
}

/// Headless, with nothing that talks to the network on its own, the test
/// names resolved to loopback and everything else to nothing.
fn flags(dir: &Path) -> Vec<String> {
    let profile: PathBuf = dir.join("profile");
    vec![
        "--headless".into(),
        // Root in a container has no user namespace for the sandbox.
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--no-first-run".into(),
        "--no-default-browser-check".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-extensions".into(),
        "--password-store=basic".into(),
        format!("--user-data-dir={}", profile.display()),
        "--host-resolver-rules=MAP *.example.test 127.0.0.1, MAP * ~NOTFOUND".into(),
        "--remote-debugging-pipe".into(),
        "about:blank".into(),
    ]
}

impl Drop for Chromium {
    /// Closes the browser, then stops whatever of its process group is left.
    fn drop(&mut self) {
        if let Ok(mut pipe) = self.to_browser.lock() {
            let close = json!({ "id": 0, "method": "Browser.close", "params": {} });
            let mut bytes = serde_json::to_vec(&close).unwrap();
            bytes.push(0);
            let _ = pipe.write_all(&bytes);
        }
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
