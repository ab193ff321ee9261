//! Metric names (SPEC §6.1) as constants, explicit histogram buckets, and
//! one function per event. Every label value comes from a bounded set:
//! never a path, a client address or a header value.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::{counter, gauge, histogram, Counter, Histogram};

use crate::conn::ListenerKind;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The `route` label of `gisgate_requests_total`: a bounded set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Proxy,
    Redirect,
    AdminDenied,
    Preflight,
    Rejected,
    /// Refused by an `[[access]]` rule.
    AccessDenied,
    /// Refused by a `[[rate_limit]]` rule.
    RateLimited,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Proxy => "proxy",
            Route::Redirect => "redirect",
            Route::AdminDenied => "admin_denied",
            Route::Preflight => "preflight",
            Route::Rejected => "rejected",
            Route::AccessDenied => "access_denied",
            Route::RateLimited => "rate_limited",
        }
    }
}

pub const REQUESTS_TOTAL: &str = "gisgate_requests_total";
pub const REQUEST_DURATION: &str = "gisgate_request_duration_seconds";
pub const UPSTREAM_REQUESTS_TOTAL: &str = "gisgate_upstream_requests_total";
pub const UPSTREAM_ERRORS_TOTAL: &str = "gisgate_upstream_errors_total";
pub const UPSTREAM_DURATION: &str = "gisgate_upstream_duration_seconds";
pub const TLS_HANDSHAKES_TOTAL: &str = "gisgate_tls_handshakes_total";
pub const TLS_HANDSHAKE_ERRORS_TOTAL: &str = "gisgate_tls_handshake_errors_total";
pub const PROXY_PROTOCOL_ERRORS_TOTAL: &str = "gisgate_proxy_protocol_errors_total";
pub const CONNECTIONS_ACTIVE: &str = "gisgate_connections_active";
pub const CONFIG_RELOADS_TOTAL: &str = "gisgate_config_reloads_total";
pub const CONFIG_LAST_RELOAD_SUCCESSFUL: &str = "gisgate_config_last_reload_successful";
pub const CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP: &str =
    "gisgate_config_last_reload_success_timestamp_seconds";
pub const CERTIFICATE_EXPIRY_TIMESTAMP: &str = "gisgate_certificate_expiry_timestamp_seconds";
pub const BUILD_INFO: &str = "gisgate_build_info";
pub const CLIENT_CERT_VERIFICATIONS_TOTAL: &str = "gisgate_client_cert_verifications_total";
pub const CRL_NEXT_UPDATE_TIMESTAMP: &str = "gisgate_crl_next_update_timestamp_seconds";
pub const RATE_LIMITED_TOTAL: &str = "gisgate_rate_limited_total";
pub const ACCESS_DENIED_TOTAL: &str = "gisgate_access_denied_total";
pub const BODY_TOO_LARGE_TOTAL: &str = "gisgate_body_too_large_total";
pub const GET_CREDENTIALS_REFUSED_TOTAL: &str = "gisgate_get_credentials_refused_total";
pub const CONNECTIONS_PER_IP_REFUSED_TOTAL: &str = "gisgate_connections_per_ip_refused_total";

/// Latency buckets in seconds: sub-millisecond proxying up to the 300 s
/// default response timeout of long geoprocessing jobs.
const DURATION_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    300.0,
];

/// Installs the process-wide recorder once and returns its handle.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_duration_seconds".into()),
                    &DURATION_BUCKETS,
                )
                .expect("static buckets are non-empty")
                .build_recorder();
            let handle = recorder.handle();
            // Tests may start several gateways in one process: the first
            // recorder wins and all of them report into it.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        REQUESTS_TOTAL,
        "Requests answered, by listener, route and status."
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time from request head to the end of the response body."
    );
    describe_counter!(
        UPSTREAM_REQUESTS_TOTAL,
        "Responses received from the upstream, by status."
    );
    describe_counter!(
        UPSTREAM_ERRORS_TOTAL,
        "Upstream requests that got no response, by kind."
    );
    describe_histogram!(
        UPSTREAM_DURATION,
        Unit::Seconds,
        "Time until the upstream's response head arrived."
    );
    describe_counter!(
        TLS_HANDSHAKES_TOTAL,
        "Completed client TLS handshakes, by version, cipher suite and key exchange group."
    );
    describe_counter!(
        TLS_HANDSHAKE_ERRORS_TOTAL,
        "Failed client TLS handshakes, by reason."
    );
    describe_counter!(
        PROXY_PROTOCOL_ERRORS_TOTAL,
        "Connections closed for their PROXY protocol header, by reason."
    );
    describe_gauge!(CONNECTIONS_ACTIVE, "Open client connections, by listener.");
    describe_counter!(CONFIG_RELOADS_TOTAL, "Config reload attempts, by result.");
    describe_gauge!(
        CONFIG_LAST_RELOAD_SUCCESSFUL,
        "1 if the last reload attempt succeeded."
    );
    describe_gauge!(
        CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP,
        Unit::Seconds,
        "Unix time of the last successful load."
    );
    describe_counter!(
        CLIENT_CERT_VERIFICATIONS_TOTAL,
        "Client certificates asked for in TLS handshakes, by result (ok, none, or why it was refused)."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version label says which build runs."
    );
    describe_counter!(
        RATE_LIMITED_TOTAL,
        "Requests refused with 429 by a [[rate_limit]] rule (its name or index)."
    );
    describe_counter!(
        ACCESS_DENIED_TOTAL,
        "Requests refused with 403 by an [[access]] rule (its name or index)."
    );
    describe_counter!(
        BODY_TOO_LARGE_TOTAL,
        "Requests refused with 413, by when the limit was seen (declared length or streamed body)."
    );
    describe_counter!(
        GET_CREDENTIALS_REFUSED_TOTAL,
        "Sign-in requests refused with 405 for a password in the URL."
    );
    describe_counter!(
        CONNECTIONS_PER_IP_REFUSED_TOTAL,
        "Connections closed at accept: the client address held limits.max_connections_per_ip."
    );
}

/// Upkeep drains histogram buffers; run it so memory stays flat between
/// scrapes.
pub fn spawn_upkeep(handle: PrometheusHandle) {
    crate::task::spawn_essential("metrics upkeep", async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}

/// `"200"`, `"404"`...: a static string per status code, so recording a
/// request allocates nothing.
fn status_label(code: u16) -> &'static str {
    static LABELS: OnceLock<Vec<&'static str>> = OnceLock::new();
    let labels = LABELS.get_or_init(|| {
        (0..600u16)
            .map(|c| &*Box::leak(c.to_string().into_boxed_str()))
            .collect()
    });
    labels.get(code as usize).copied().unwrap_or("other")
}

/// Labels are bounded sets, so every handle fits in a fixed table and is
/// resolved from the recorder once: recording a request is an index and an
/// atomic add, with no key hashing on the request path.
const LISTENERS: [ListenerKind; 3] = [
    ListenerKind::Https,
    ListenerKind::Http,
    ListenerKind::Observability,
];
const ROUTES: [Route; 7] = [
    Route::Proxy,
    Route::Redirect,
    Route::AdminDenied,
    Route::Preflight,
    Route::Rejected,
    Route::AccessDenied,
    Route::RateLimited,
];
const STATUSES: usize = 600;

struct Handles {
    requests: Vec<OnceLock<Counter>>,
    durations: Vec<OnceLock<Histogram>>,
    upstream: Vec<OnceLock<Counter>>,
}

fn handles() -> &'static Handles {
    static HANDLES: OnceLock<Handles> = OnceLock::new();
    HANDLES.get_or_init(|| Handles {
        requests: (0..LISTENERS.len() * ROUTES.len() * STATUSES)
            .map(|_| OnceLock::new())
            .collect(),
        durations: (0..LISTENERS.len() * ROUTES.len())
            .map(|_| OnceLock::new())
            .collect(),
        upstream: (0..STATUSES).map(|_| OnceLock::new()).collect(),
    })
}

fn bounded_status(code: u16) -> usize {
    if (code as usize) < STATUSES {
        code as usize
    } else {
        0
    }
}

pub fn request(listener: ListenerKind, route: Route, status: u16, elapsed: Duration) {
    let l = LISTENERS.iter().position(|x| *x == listener).unwrap_or(0);
    let r = ROUTES.iter().position(|x| *x == route).unwrap_or(0);
    let code = bounded_status(status);
    let h = handles();
    h.requests[(l * ROUTES.len() + r) * STATUSES + code]
        .get_or_init(|| {
            counter!(REQUESTS_TOTAL, "listener" => listener.as_str(), "route" => route.as_str(), "status" => status_label(code as u16))
        })
        .increment(1);
    h.durations[l * ROUTES.len() + r]
        .get_or_init(|| histogram!(REQUEST_DURATION, "listener" => listener.as_str(), "route" => route.as_str()))
        .record(elapsed.as_secs_f64());
}

pub fn upstream_response(status: http::StatusCode) {
    let code = bounded_status(status.as_u16());
    handles().upstream[code]
        .get_or_init(|| counter!(UPSTREAM_REQUESTS_TOTAL, "status" => status_label(code as u16)))
        .increment(1);
}

pub fn upstream_error(kind: &'static str) {
    counter!(UPSTREAM_ERRORS_TOTAL, "kind" => kind).increment(1);
}

pub fn upstream_duration(elapsed: Duration) {
    static H: OnceLock<Histogram> = OnceLock::new();
    H.get_or_init(|| histogram!(UPSTREAM_DURATION))
        .record(elapsed.as_secs_f64());
}

pub fn tls_handshake(version: &'static str, cipher: &'static str, group: &'static str) {
    counter!(TLS_HANDSHAKES_TOTAL, "version" => version, "cipher" => cipher, "group" => group)
        .increment(1);
}

pub fn tls_handshake_error(reason: &'static str) {
    counter!(TLS_HANDSHAKE_ERRORS_TOTAL, "reason" => reason).increment(1);
}

/// `reason`: `untrusted_peer`, `missing`, `malformed`, `timeout`,
/// `unsupported` or `io`.
pub fn proxy_protocol_error(reason: &'static str) {
    counter!(PROXY_PROTOCOL_ERRORS_TOTAL, "reason" => reason).increment(1);
}

/// `result`: one of `tls::client_auth::RESULTS`.
pub fn client_cert_verification(result: &'static str) {
    counter!(CLIENT_CERT_VERIFICATIONS_TOTAL, "result" => result).increment(1);
}

pub fn connection_opened(listener: &'static str) {
    gauge!(CONNECTIONS_ACTIVE, "listener" => listener).increment(1.0);
}

pub fn connection_closed(listener: &'static str) {
    gauge!(CONNECTIONS_ACTIVE, "listener" => listener).decrement(1.0);
}

/// `rule` is a configured name or an index: bounded by the config.
pub fn rate_limited(rule: &str) {
    counter!(RATE_LIMITED_TOTAL, "rule" => rule.to_string()).increment(1);
}

pub fn access_denied(rule: &str) {
    counter!(ACCESS_DENIED_TOTAL, "rule" => rule.to_string()).increment(1);
}

/// `when`: `"declared"` (Content-Length) or `"streamed"`.
pub fn body_too_large(when: &'static str) {
    counter!(BODY_TOO_LARGE_TOTAL, "when" => when).increment(1);
}

pub fn get_credentials_refused() {
    counter!(GET_CREDENTIALS_REFUSED_TOTAL).increment(1);
}

pub fn connection_per_ip_refused(listener: &'static str) {
    counter!(CONNECTIONS_PER_IP_REFUSED_TOTAL, "listener" => listener).increment(1);
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The startup load counts as the first successful one.
pub fn config_loaded() {
    gauge!(CONFIG_LAST_RELOAD_SUCCESSFUL).set(1.0);
    gauge!(CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP).set(now_unix());
    counter!(CONFIG_RELOADS_TOTAL, "result" => "success").absolute(0);
    counter!(CONFIG_RELOADS_TOTAL, "result" => "failure").absolute(0);
}

pub fn reload_succeeded() {
    counter!(CONFIG_RELOADS_TOTAL, "result" => "success").increment(1);
    gauge!(CONFIG_LAST_RELOAD_SUCCESSFUL).set(1.0);
    gauge!(CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP).set(now_unix());
}

pub fn reload_failed() {
    counter!(CONFIG_RELOADS_TOTAL, "result" => "failure").increment(1);
    gauge!(CONFIG_LAST_RELOAD_SUCCESSFUL).set(0.0);
}

/// The certificate expiry gauge is rendered from the live state at scrape
/// time: after a rotation the old serial disappears instead of lingering
/// as a stale series.
pub fn render_certificate_expiry(certs: &[crate::tls::server::LoadedCert], out: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "# HELP {CERTIFICATE_EXPIRY_TIMESTAMP} Unix time at which each loaded certificate expires.\n# TYPE {CERTIFICATE_EXPIRY_TIMESTAMP} gauge"
    );
    for c in certs {
        let _ = writeln!(
            out,
            "{CERTIFICATE_EXPIRY_TIMESTAMP}{{name=\"{}\",serial=\"{}\"}} {}",
            escape_label(&c.name),
            escape_label(&c.facts.serial_number),
            c.facts.not_after
        );
    }
}

/// The CRL gauge, like the certificate expiry one, from the live state at
/// scrape time: a CRL removed from the config disappears. A CRL without
/// nextUpdate has no series.
pub fn render_crl_next_update(crls: &[crate::tls::client_auth::LoadedCrl], out: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "# HELP {CRL_NEXT_UPDATE_TIMESTAMP} Unix time by which each loaded CRL's issuer promises the next one (nextUpdate).\n# TYPE {CRL_NEXT_UPDATE_TIMESTAMP} gauge"
    );
    for c in crls {
        if let Some(at) = c.next_update {
            let _ = writeln!(
                out,
                "{CRL_NEXT_UPDATE_TIMESTAMP}{{file=\"{}\"}} {at}",
                escape_label(&c.path.display().to_string()),
            );
        }
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
