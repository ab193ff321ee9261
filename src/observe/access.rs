//! The access log: one line per request, as text or JSON per `log.format`
//! (the tracing subscriber decides the shape). Never a secret: ArcGIS
//! passes tokens in the query string, so every query value is redacted,
//! and no header (Authorization, Cookie) is logged at all.

use std::time::Duration;

use crate::body::RequestRecord;

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
        tls_version = r.conn.tls_version.unwrap_or("-"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_redacted_and_keys_kept() {
        assert_eq!(redact_query("f=json&token=s3cr3t&x"), "f=*&token=*&x");
    }
}
