//! `gisgate check`: validate a config and every file it names, print the
//! effective policy and its warnings, and with `--against` what would
//! change relative to the running config.

use std::fmt::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{self, ClientAuth, ClientAuthMode, Protocol, Settings};
use crate::diff;
use crate::live::Live;
use crate::probe;
use crate::tls::server::{LoadedCert, TlsSessions};

/// What `gisgate check` prints: the effective policy for stdout, errors
/// and warnings for stderr, so that `gisgate check ... >/dev/null` in a
/// pipeline still shows every problem.
#[derive(Debug, Default)]
pub struct Report {
    /// The verdict, the effective policy and, with `--against`, the changes.
    pub summary: String,
    /// Errors and warnings.
    pub problems: String,
}

/// Both parts, problems first (for a test's failure message).
impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.problems, self.summary)
    }
}

/// The report to print, and whether the config is valid.
pub fn report(path: &Path, against: Option<&Path>) -> (Report, bool) {
    let mut report = Report::default();
    let live = match build(path) {
        Ok(l) => l,
        Err(e) => {
            report.problems = format!("{e}\n{}: invalid\n", path.display());
            return (report, false);
        }
    };
    let out = &mut report.summary;
    let _ = writeln!(out, "{}: valid", path.display());
    describe(&live, out);
    let mut warnings = warnings(&live.settings, live.certs());
    warnings.extend(crl_warnings(&live));
    if !warnings.is_empty() {
        let _ = writeln!(report.problems, "warnings:");
        for w in &warnings {
            let _ = writeln!(report.problems, "  - {w}");
        }
    }
    if let Some(old_path) = against {
        match build(old_path) {
            Ok(old) => {
                let out = &mut report.summary;
                let changes =
                    diff::changes(&old.settings, old.certs(), &live.settings, live.certs());
                let _ = writeln!(out, "changes against {}:", old_path.display());
                if changes.is_empty() {
                    let _ = writeln!(out, "  (none: the effective policy is the same)");
                }
                for c in changes {
                    let _ = writeln!(out, "  {c}");
                }
            }
            Err(e) => {
                let _ = writeln!(
                    report.problems,
                    "cannot compare: {} is itself invalid:\n{e}",
                    old_path.display()
                );
                return (report, false);
            }
        }
    }
    (report, true)
}

/// `check --probe`: the upstream client the gateway would build from this
/// config, put to work once (see [`probe::probe`]).
pub async fn probe(path: &Path, probe_path: &str) -> probe::Probe {
    if !probe_path.starts_with('/') {
        return probe::Probe {
            failure: Some(format!("--probe-path {probe_path:?} must start with /")),
            ..Default::default()
        };
    }
    match build(path) {
        Ok(live) => probe::probe(&live.upstream, probe_path).await,
        Err(e) => probe::Probe {
            failure: Some(e.to_string()),
            ..Default::default()
        },
    }
}

/// Everything the gateway would build at start, without binding anything.
fn build(path: &Path) -> Result<Live, config::ConfigErrors> {
    let settings = config::load(path)?;
    let sessions =
        TlsSessions::new().map_err(|e| config::ConfigErrors(vec![settings.error_at("tls", e)]))?;
    Live::build(settings, &sessions, None)
}

fn describe(live: &Live, out: &mut String) {
    let s = &live.settings;
    let p = s.server.protocol;
    let mut line = |k: &str, v: String| {
        let _ = writeln!(out, "  {k:<16} {v}");
    };
    line(
        "protocol",
        match p {
            Protocol::Https => format!(
                "HTTPS (plain HTTP is redirected with {})",
                s.server.redirect_status.as_u16()
            ),
            Protocol::HttpAndHttps => "HTTP_AND_HTTPS (both are served)".into(),
            Protocol::Http => "HTTP (plaintext only)".into(),
        },
    );
    let mut listeners = Vec::new();
    if let Some(a) = s.server.https_listen {
        listeners.push(format!("https {a}"));
    }
    if let Some(a) = s.server.http_listen {
        listeners.push(format!(
            "http {a}{}",
            if p == Protocol::Https {
                " (redirect only)"
            } else {
                ""
            }
        ));
    }
    if let Some(a) = s.observability_listen {
        listeners.push(format!("observability {a}"));
    }
    line("listeners", listeners.join(", "));
    if let Some(t) = &s.tls {
        line("tls versions", t.version_names().join(", "));
        let offered = live.offered_suites();
        line("suites offered", offered.join(", "));
        let unusable: Vec<&str> = t
            .suite_names()
            .into_iter()
            .filter(|n| !offered.contains(n))
            .collect();
        if !unusable.is_empty() {
            line(
                "suites unusable",
                format!(
                    "{} (no loaded certificate has a key for them)",
                    unusable.join(", ")
                ),
            );
        }
        if !t.skipped_suites.is_empty() {
            line(
                "suites skipped",
                format!(
                    "{} (not implemented by the TLS library)",
                    t.skipped_suites.join(", ")
                ),
            );
        }
        line(
            "strict SNI/Host",
            if t.strict_sni_host {
                "on: 421 for a host the connection's certificate does not cover".into()
            } else {
                "off".into()
            },
        );
        for c in live.certs() {
            line(
                "certificate",
                format!(
                    "{} {}: {} serial {} expires {} SANs [{}]",
                    c.name,
                    c.path.display(),
                    c.facts.owner,
                    c.facts.serial_number,
                    diff::unix_time(c.facts.not_after),
                    sans(c).join(", ")
                ),
            );
        }
    }
    line(
        "hsts",
        s.hsts
            .header_value()
            .and_then(|v| v.to_str().ok().map(str::to_string))
            .unwrap_or_else(|| "off".into()),
    );
    line(
        "admin",
        format!(
            "paths {} allowed from [{}]{}",
            s.admin.paths.join(", "),
            s.admin
                .allowed_ips
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if s.admin.direct_access {
                ""
            } else {
                "; direct_access = false: refused for everyone"
            }
        ),
    );
    line("client certs", client_certs(s));
    line(
        "client address",
        if s.trusted_proxies.is_empty() {
            "TCP peer (X-Forwarded-For is not believed)".into()
        } else {
            format!(
                "X-Forwarded-For believed from [{}]",
                s.trusted_proxies
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
    );
    line("proxy protocol", proxy_protocol(&s.server.proxy_protocol));
    line(
        "cors",
        if s.cors.allowed_origins.is_empty() {
            format!(
                "preflights pass to the upstream; Private Network Access {}",
                on_off(s.cors.allow_private_network)
            )
        } else {
            format!(
                "gateway answers preflights for [{}]; Private Network Access {}",
                s.cors.allowed_origins.join(", "),
                on_off(s.cors.allow_private_network)
            )
        },
    );
    describe_limits(s, &mut line);
    line(
        "upstream",
        format!(
            "{} verified by {}; name {}; {}",
            s.upstream.url(),
            s.upstream.verification(),
            s.upstream.server_name,
            if s.upstream.prefer_http2 {
                "HTTP/2 preferred (multiplexed), HTTP/1.1 if the upstream does not offer h2"
            } else {
                "HTTP/1.1 (HTTP/2 only if the upstream refuses http/1.1)"
            }
        ),
    );
}

/// `server.proxy_protocol` in words: whose address is the client's.
fn proxy_protocol(p: &config::ProxyProtocol) -> String {
    if !p.is_on() {
        return "off (the TCP peer is the client)".into();
    }
    format!(
        "{} required from [{}] (the header's address is the client's; anything else is closed)",
        p.mode.as_str(),
        p.from
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The client-certificate policy in one line: per listener config, then
/// what the admin paths need and what the upstream is told.
fn client_certs(s: &Settings) -> String {
    let Some(t) = &s.tls else {
        return "not asked for (no TLS)".into();
    };
    let table = |a: &ClientAuth| match a.mode {
        ClientAuthMode::Off => "off".to_string(),
        mode => format!(
            "{} (CA {}; {} CRL file(s), unknown revocation status: {})",
            mode.as_str(),
            a.ca.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            a.crls.len(),
            a.crl_unknown.as_str()
        ),
    };
    let mut parts = vec![format!("default {}", table(&t.client_auth))];
    for e in t.sni.iter().filter(|e| e.client_auth != t.client_auth) {
        parts.push(format!("{} {}", e.server_name, table(&e.client_auth)));
    }
    if s.admin.require_client_cert {
        let subjects: Vec<&str> = s
            .admin
            .allowed_subjects
            .iter()
            .map(|p| p.as_str())
            .collect();
        parts.push(match subjects.is_empty() {
            true => "admin paths need a verified certificate".into(),
            false => format!(
                "admin paths need a verified certificate matching [{}]",
                subjects.join(", ")
            ),
        });
    }
    if let Some(h) = &t.client_auth.forward_header {
        parts.push(format!(
            "forwarded to the upstream as {h} and x-ssl-client-subject"
        ));
    }
    parts.join("; ")
}

/// A CRL past its nextUpdate: its issuer has published (or should have) a
/// newer one, whose revocations this gateway does not know.
fn crl_warnings(live: &Live) -> Vec<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let crls = live.tls.as_ref().map(|t| t.crls.as_slice()).unwrap_or(&[]);
    crls.iter()
        .filter(|c| c.next_update.is_some_and(|at| at <= now))
        .map(|c| {
            format!(
                "CRL {} is past its nextUpdate ({}): revocations since then are not known; fetch the current one",
                c.path.display(),
                diff::unix_time(c.next_update.unwrap_or_default())
            )
        })
        .collect()
}

/// Issue 25's per-client limits and request rules, one line each.
fn describe_limits(s: &Settings, line: &mut impl FnMut(&str, String)) {
    line(
        "get credentials",
        match s.tokens.refuse_get_credentials {
            true => "refused (405) at the sign-in endpoints: use POST".into(),
            false => "allowed (tokens.refuse_get_credentials = false)".into(),
        },
    );
    for (i, rule) in s.access.iter().enumerate() {
        line(&format!("access[{i}]"), rule.describe());
    }
    for (i, rule) in s.rate_limits.iter().enumerate() {
        line(&format!("rate limit[{i}]"), rule.describe());
    }
    line(
        "conns per ip",
        s.limits
            .max_connections_per_ip
            .map_or("no limit".into(), |n| n.to_string()),
    );
    for (i, rule) in s.body_limits.iter().enumerate() {
        line(&format!("body limit[{i}]"), rule.describe());
    }
    line(
        "max body bytes",
        s.limits
            .max_body_bytes
            .map_or("no limit".into(), |n| n.to_string()),
    );
}

fn on_off(b: bool) -> &'static str {
    if b {
        "allowed"
    } else {
        "not allowed"
    }
}

fn sans(c: &LoadedCert) -> Vec<String> {
    let mut v = c.facts.dns_names.clone();
    v.extend(c.facts.ip_addresses.iter().map(|i| i.to_string()));
    v
}

/// Things that are valid but that an operator should look at.
pub fn warnings(s: &Settings, certs: &[LoadedCert]) -> Vec<String> {
    let mut w = s.warnings.clone();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    for c in certs {
        let days_left = (c.facts.not_after - now) / 86_400;
        if c.facts.not_after <= now {
            w.push(format!(
                "certificate {} ({}) has EXPIRED",
                c.name,
                c.path.display()
            ));
        } else if days_left < 30 {
            w.push(format!(
                "certificate {} ({}) expires in {days_left} days",
                c.name,
                c.path.display()
            ));
        }
        if c.facts.self_signed {
            w.push(format!(
                "certificate {} ({}) is self-signed: browsers will warn; use one signed by a CA your clients trust",
                c.name,
                c.path.display()
            ));
        }
    }
    if let (Some(host), false) = (&s.server.public_host, certs.is_empty()) {
        let name = host.host().trim_matches(|c| c == '[' || c == ']');
        if !certs.iter().any(|c| c.facts.covers_name(name)) {
            w.push(format!(
                "no loaded certificate covers server.public_host {:?}: clients redirected there will get a name mismatch",
                host.as_str()
            ));
        }
    }
    w
}
