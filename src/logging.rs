//! Log setup: text or one JSON object per line, at `log.level`.

use tracing_subscriber::EnvFilter;

use crate::config::{Log, LogFormat};

/// Installs the global subscriber. `RUST_LOG`, when set, overrides
/// `log.level`, as operators of Rust services expect.
pub fn init(log: &Log) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(with_quiet_tls_library(&log.level)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}

/// rustls warns on every handshake from clients that put an IP address in
/// SNI (which RFC 6066 forbids but many tools do); at `info` that would be
/// one line per connection. Its messages are kept at `error` unless the
/// operator's filter names rustls itself.
fn with_quiet_tls_library(level: &str) -> String {
    if level.contains("rustls") {
        level.to_string()
    } else {
        format!("{level},rustls=error")
    }
}
