//! The access log: one line per request, as text or JSON per `log.format`
//! (the tracing subscriber decides the shape). Never a secret: ArcGIS
//! passes tokens in the query string, so every query value is redacted,
//! and no header (Authorization, Cookie) is logged at all.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;

use crate::conn::ConnInfo;
use crate::observe::metrics::{self, Route};

pub const TARGET: &str = "gisgate::access";

/// Whether access lines are written at all (`log.level` may turn them
/// off): what only the log needs is not gathered otherwise.
pub fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::INFO)
}

pub fn log(r: &RequestRecord, elapsed: Duration) {
    if !enabled() {
        return;
    }
    let client = r
        .client
        .map(|c| c.to_string())
        .unwrap_or_else(|| "unknown".into());
    let path = r.path.as_deref().unwrap_or("-");
    let query = r.query.as_deref().map(redact_query).unwrap_or_default();
    tracing::info!(
        target: TARGET,
        client = %client,
        peer = %r.conn.peer.ip(),
        method = %r.method,
        path = %path,
        query = %query,
        status = r.status,
        route = r.route.as_str(),
        upstream_status = r.upstream_status.unwrap_or(0),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        bytes = r.bytes,
        listener = r.conn.kind.as_str(),
        tls_version = r
            .conn
            .tls_version
            .map(crate::tls::suites::version_name)
            .unwrap_or("-"),
        tls_cipher = r.conn.tls_suite.unwrap_or("-"),
        "request"
    );
}

/// `f=json&token=abc` -> `f=*&token=*`: keys show what was asked, values
/// (tokens, passwords, SQL) never reach the log.
pub fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) => format!("{}=*", sanitize(k)),
            None => sanitize(kv),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect()
}

/// What the access log and metrics say of one request. Created when the
/// request arrives (marking the connection busy), finished when its
/// response body is done or dropped.
pub struct RequestRecord {
    pub conn: Arc<ConnInfo>,
    pub method: Method,
    pub started: Instant,
    pub path: Option<String>,
    pub query: Option<String>,
    pub client: Option<IpAddr>,
    pub route: Route,
    /// 0 until a response exists; a request dropped before that is logged
    /// as 499, nginx's "client closed request".
    pub status: u16,
    pub upstream_status: Option<u16>,
    pub bytes: u64,
    /// The HTTP/1.1 request line had a raw `#` (refused: 400).
    pub fragment: bool,
    finished: bool,
}

impl RequestRecord {
    /// `body_complete`: the request came with no body to read (its body
    /// reported its end before a byte of it was read).
    pub fn new(conn: Arc<ConnInfo>, method: Method, body_complete: bool, started: Instant) -> Self {
        let fragment = conn.activity.begin_request(body_complete);
        RequestRecord {
            fragment,
            conn,
            method,
            started,
            path: None,
            query: None,
            client: None,
            route: Route::Rejected,
            status: 0,
            upstream_status: None,
            bytes: 0,
            finished: false,
        }
    }

    pub(crate) fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.status == 0 {
            self.status = 499;
        }
        let elapsed = self.started.elapsed();
        metrics::request(self.conn.kind, self.route, self.status, elapsed);
        log(self, elapsed);
        self.conn.activity.end_request();
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_redacted_and_keys_kept() {
        assert_eq!(redact_query("f=json&token=s3cr3t&x"), "f=*&token=*&x");
    }
}
