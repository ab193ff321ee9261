//! What changed between two configurations, in policy terms:
//! `admin.allowed_ips: +10.0.0.0/8 -192.168.1.0/24`,
//! `hsts.max_age: 100s -> 200s`, `tls.cert: serial 0A1B2C3D -> 7F3C9A01`.
//! Used by reload logging and by `gisgate check --against`.

use std::fmt::Display;

use crate::config::{keys, Settings};
use crate::tls::server::{offered_suites, LoadedCert};

/// `[tls.client_auth]` and the `[[tls.sni]]` entries' own, in one line
/// (file contents are not compared: a rewritten CRL is a reload, not a
/// change of policy).
fn client_auth(s: &Settings) -> String {
    let Some(t) = &s.tls else {
        return "off".into();
    };
    let one = |a: &crate::config::ClientAuth| {
        let ca = a.ca.as_ref().map(|p| p.display().to_string());
        let crls: Vec<String> = a.crls.iter().map(|p| p.display().to_string()).collect();
        format!(
            "{} ca {} crl [{}] crl_unknown {}",
            a.mode.as_str(),
            ca.unwrap_or_else(|| "-".into()),
            crls.join(", "),
            a.crl_unknown.as_str()
        )
    };
    let mut text = one(&t.client_auth);
    if let Some(h) = &t.client_auth.forward_header {
        text.push_str(&format!(" forward_header {h}"));
    }
    for e in t.sni.iter().filter(|e| e.client_auth != t.client_auth) {
        text.push_str(&format!("; {}: {}", e.server_name, one(&e.client_auth)));
    }
    text
}

pub fn changes(
    old: &Settings,
    old_certs: &[LoadedCert],
    new: &Settings,
    new_certs: &[LoadedCert],
) -> Vec<String> {
    let mut d = Diff(Vec::new());
    d.value(
        keys::SERVER_PROTOCOL,
        old.server.protocol.as_str(),
        new.server.protocol.as_str(),
    );
    d.value(
        keys::SERVER_HTTPS_LISTEN,
        opt(&old.server.https_listen),
        opt(&new.server.https_listen),
    );
    d.value(
        keys::SERVER_HTTP_LISTEN,
        opt(&old.server.http_listen),
        opt(&new.server.http_listen),
    );
    d.value(
        keys::SERVER_PUBLIC_HOST,
        opt(&old.server.public_host),
        opt(&new.server.public_host),
    );
    d.value(
        keys::SERVER_PUBLIC_HTTPS_PORT,
        old.server.public_https_port,
        new.server.public_https_port,
    );
    d.value(
        keys::SERVER_REDIRECT_STATUS,
        old.server.redirect_status.as_u16(),
        new.server.redirect_status.as_u16(),
    );
    d.value(
        keys::SERVER_WORKER_THREADS,
        old.server.worker_threads,
        new.server.worker_threads,
    );
    let (op, np) = (&old.server.proxy_protocol, &new.server.proxy_protocol);
    d.value(
        keys::SERVER_PROXY_PROTOCOL,
        op.mode.as_str(),
        np.mode.as_str(),
    );
    d.set(
        keys::SERVER_PROXY_PROTOCOL_FROM,
        &strings(&op.from),
        &strings(&np.from),
    );

    let versions = |s: &Settings| {
        s.tls
            .as_ref()
            .map(|t| t.version_names())
            .unwrap_or_default()
    };
    // Only suites a client can negotiate with the certificates in use: an
    // ECDHE_RSA suite is not "added" to a site whose only key is ECDSA.
    let suites = |s: &Settings, certs: &[LoadedCert]| {
        s.tls
            .as_ref()
            .map(|t| offered_suites(t, certs))
            .unwrap_or_default()
    };
    d.set(keys::TLS_PROTOCOLS, &versions(old), &versions(new));
    d.set(
        keys::TLS_CIPHER_SUITES,
        &suites(old, old_certs),
        &suites(new, new_certs),
    );
    d.certs(old_certs, new_certs);
    let strict = |s: &Settings| s.tls.as_ref().is_some_and(|t| t.strict_sni_host);
    d.value(keys::TLS_STRICT_SNI_HOST, strict(old), strict(new));
    d.value(keys::TLS_CLIENT_AUTH, client_auth(old), client_auth(new));

    d.value(keys::HSTS_ENABLED, old.hsts.enabled, new.hsts.enabled);
    d.value(
        keys::HSTS_MAX_AGE,
        dur(old.hsts.max_age),
        dur(new.hsts.max_age),
    );
    d.value(
        keys::HSTS_INCLUDE_SUBDOMAINS,
        old.hsts.include_subdomains,
        new.hsts.include_subdomains,
    );
    d.value(keys::HSTS_PRELOAD, old.hsts.preload, new.hsts.preload);

    let (ou, nu) = (&old.upstream, &new.upstream);
    d.value(keys::UPSTREAM_URL, ou.url(), nu.url());
    d.value(
        "upstream.verification",
        ou.verification(),
        nu.verification(),
    );
    if ou.ca_digest != nu.ca_digest && ou.ca.is_some() && ou.ca == nu.ca {
        d.0.push("upstream.ca: content changed".into());
    }
    d.set(keys::UPSTREAM_PIN_SHA256, &pins(&ou.pins), &pins(&nu.pins));
    d.value(keys::UPSTREAM_SERVER_NAME, &ou.server_name, &nu.server_name);
    d.value(
        keys::UPSTREAM_CONNECT_TIMEOUT,
        dur(ou.connect_timeout),
        dur(nu.connect_timeout),
    );
    d.value(
        keys::UPSTREAM_RESPONSE_TIMEOUT,
        dur(ou.response_timeout),
        dur(nu.response_timeout),
    );
    d.value(
        keys::UPSTREAM_POOL_IDLE_TIMEOUT,
        dur(ou.pool_idle_timeout),
        dur(nu.pool_idle_timeout),
    );
    d.value(
        keys::UPSTREAM_POOL_MAX_IDLE,
        ou.pool_max_idle,
        nu.pool_max_idle,
    );
    d.value(
        keys::UPSTREAM_PREFER_HTTP2,
        ou.prefer_http2,
        nu.prefer_http2,
    );

    d.set(keys::ADMIN_PATHS, &old.admin.paths, &new.admin.paths);
    d.value(
        keys::ADMIN_REQUIRE_CLIENT_CERT,
        old.admin.require_client_cert,
        new.admin.require_client_cert,
    );
    let subjects = |s: &Settings| -> Vec<String> {
        s.admin
            .allowed_subjects
            .iter()
            .map(|p| p.as_str().to_string())
            .collect()
    };
    d.set(keys::ADMIN_ALLOWED_SUBJECTS, &subjects(old), &subjects(new));
    d.set(
        keys::ADMIN_ALLOWED_IPS,
        &strings(&old.admin.allowed_ips),
        &strings(&new.admin.allowed_ips),
    );
    d.value(
        keys::ADMIN_DIRECT_ACCESS,
        old.admin.direct_access,
        new.admin.direct_access,
    );
    d.set(
        keys::CLIENT_IP_TRUSTED_PROXIES,
        &strings(&old.trusted_proxies),
        &strings(&new.trusted_proxies),
    );

    let (oc, nc) = (&old.cors, &new.cors);
    d.set(
        keys::CORS_ALLOWED_ORIGINS,
        &oc.allowed_origins,
        &nc.allowed_origins,
    );
    d.value(
        keys::CORS_ALLOW_PRIVATE_NETWORK,
        oc.allow_private_network,
        nc.allow_private_network,
    );
    d.set(
        keys::CORS_ALLOWED_METHODS,
        &oc.allowed_methods,
        &nc.allowed_methods,
    );
    d.set(
        keys::CORS_ALLOWED_HEADERS,
        &oc.allowed_headers,
        &nc.allowed_headers,
    );
    d.value(keys::CORS_MAX_AGE, dur(oc.max_age), dur(nc.max_age));
    d.value(
        keys::CORS_ALLOW_CREDENTIALS,
        oc.allow_credentials,
        nc.allow_credentials,
    );

    d.value(
        keys::OBSERVABILITY_LISTEN,
        opt(&old.observability_listen),
        opt(&new.observability_listen),
    );
    let (ol, nl) = (&old.limits, &new.limits);
    d.value(
        keys::LIMITS_HEADER_READ_TIMEOUT,
        dur(ol.header_read_timeout),
        dur(nl.header_read_timeout),
    );
    d.value(
        keys::LIMITS_IDLE_TIMEOUT,
        dur(ol.idle_timeout),
        dur(nl.idle_timeout),
    );
    d.value(
        keys::LIMITS_MAX_CONNECTIONS,
        ol.max_connections,
        nl.max_connections,
    );
    d.value(
        keys::LIMITS_MAX_HEADER_BYTES,
        ol.max_header_bytes,
        nl.max_header_bytes,
    );
    d.value(
        keys::LIMITS_SHUTDOWN_GRACE,
        dur(ol.shutdown_grace),
        dur(nl.shutdown_grace),
    );
    d.value(
        keys::LIMITS_SEND_TIMEOUT,
        dur(ol.send_timeout),
        dur(nl.send_timeout),
    );
    d.value(
        keys::LIMITS_MAX_CONNECTIONS_PER_IP,
        opt(&ol.max_connections_per_ip),
        opt(&nl.max_connections_per_ip),
    );
    d.value(
        keys::LIMITS_MAX_BODY_BYTES,
        opt(&ol.max_body_bytes),
        opt(&nl.max_body_bytes),
    );
    d.value(
        keys::TOKENS_REFUSE_GET_CREDENTIALS,
        old.tokens.refuse_get_credentials,
        new.tokens.refuse_get_credentials,
    );
    d.rules(keys::ACCESS, &old.access, &new.access, |r| r.describe());
    d.rules(keys::RATE_LIMIT, &old.rate_limits, &new.rate_limits, |r| {
        r.describe()
    });
    d.rules(keys::BODY_LIMIT, &old.body_limits, &new.body_limits, |r| {
        r.describe()
    });
    d.value(keys::RELOAD_WATCH, old.reload_watch, new.reload_watch);
    d.value(
        keys::RELOAD_SETTLE,
        dur(old.reload_settle),
        dur(new.reload_settle),
    );
    d.value(
        keys::LOG_FORMAT,
        format!("{:?}", old.log.format),
        format!("{:?}", new.log.format),
    );
    d.value(keys::LOG_LEVEL, &old.log.level, &new.log.level);
    d.0
}

struct Diff(Vec<String>);

impl Diff {
    fn value<T: Display + PartialEq>(&mut self, key: &str, old: T, new: T) {
        if old != new {
            self.0.push(format!("{key}: {old} -> {new}"));
        }
    }

    /// `table.N: old -> new` for each rule that differs by position:
    /// rules are ordered (the first that matches decides).
    fn rules<T>(&mut self, table: &str, old: &[T], new: &[T], describe: impl Fn(&T) -> String) {
        for i in 0..old.len().max(new.len()) {
            let show = |r: Option<&T>| r.map_or("(none)".into(), &describe);
            self.value(&format!("{table}.{i}"), show(old.get(i)), show(new.get(i)));
        }
    }

    /// `key: +added -removed`, for lists whose order does not matter.
    fn set<T: AsRef<str>>(&mut self, key: &str, old: &[T], new: &[T]) {
        let old: Vec<&str> = old.iter().map(AsRef::as_ref).collect();
        let new: Vec<&str> = new.iter().map(AsRef::as_ref).collect();
        let mut parts: Vec<String> = new
            .iter()
            .filter(|n| !old.contains(n))
            .map(|n| format!("+{n}"))
            .collect();
        parts.extend(
            old.iter()
                .filter(|o| !new.contains(o))
                .map(|o| format!("-{o}")),
        );
        if !parts.is_empty() {
            self.0.push(format!("{key}: {}", parts.join(" ")));
        } else if old != new {
            self.0.push(format!(
                "{key}: order {} -> {}",
                old.join(","),
                new.join(",")
            ));
        }
    }

    fn certs(&mut self, old: &[LoadedCert], new: &[LoadedCert]) {
        for n in new {
            let key = cert_key(&n.name);
            match old.iter().find(|o| o.name == n.name) {
                Some(o)
                    if o.facts.serial_number != n.facts.serial_number
                        || o.facts.sha256 != n.facts.sha256 =>
                {
                    self.0.push(format!(
                        "{key}: serial {} -> {} (expires {})",
                        o.facts.serial_number,
                        n.facts.serial_number,
                        unix_time(n.facts.not_after)
                    ))
                }
                Some(_) => {}
                None => self.0.push(format!(
                    "{key}: +{} (serial {})",
                    n.name, n.facts.serial_number
                )),
            }
        }
        for o in old.iter().filter(|o| !new.iter().any(|n| n.name == o.name)) {
            self.0.push(format!("{}: -{}", cert_key(&o.name), o.name));
        }
    }
}

fn cert_key(name: &str) -> String {
    if name == "default" {
        keys::TLS_CERT.into()
    } else {
        format!("tls.sni[{name}].cert")
    }
}

fn opt<T: Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map(|v| v.to_string())
        .unwrap_or_else(|| "(none)".into())
}

/// A duration the way gateway.toml writes it: `100s`, `5m`, `365d`, `250ms`.
pub fn dur(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 {
        return format!("{}ms", d.as_millis());
    }
    match secs {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 && s >= 600 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn strings<T: Display>(v: &[T]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn pins(v: &[[u8; 32]]) -> Vec<String> {
    v.iter().map(|p| crate::tls::certs::colon_hex(p)).collect()
}

pub fn unix_time(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}
