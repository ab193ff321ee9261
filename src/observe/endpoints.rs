//! The observability listener: `/metrics`, `/healthz`, `/readyz`, and the
//! ArcGIS-shaped `/security/config` and `/sslcertificates` resources.

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{json, Value};

use crate::body::ResponseBody;
use crate::config::ClientAuth;
use crate::live::Live;
use crate::observe::metrics;

/// `ready`: not draining. `prometheus`: the recorder's handle, unless
/// metrics are off.
pub async fn handle<B>(
    live: &Live,
    ready: bool,
    prometheus: Option<&PrometheusHandle>,
    req: Request<B>,
) -> Response<ResponseBody> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed\n");
    }
    let format = match Format::from_query(req.uri().query()) {
        Some(f) => f,
        None => {
            return text(
                StatusCode::BAD_REQUEST,
                "400 Bad Request: f must be json, pjson or html\n",
            )
        }
    };
    match req.uri().path() {
        "/metrics" => metrics_page(prometheus, live),
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if ready => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
        "/security/config" => resource(format, "Security configuration", security_config(live)),
        "/sslcertificates" => resource(
            format,
            "SSL certificates",
            json!({ "certificates": live.certs().iter().map(|c| c.name.clone()).collect::<Vec<_>>() }),
        ),
        path => match path.strip_prefix("/sslcertificates/") {
            Some(alias) => match certificate(live, alias) {
                Some(v) => resource(format, "SSL certificate", v),
                None => text(
                    StatusCode::NOT_FOUND,
                    "404 Not Found: no certificate with that alias\n",
                ),
            },
            None => text(StatusCode::NOT_FOUND, "404 Not Found\n"),
        },
    }
}

#[derive(Clone, Copy)]
enum Format {
    Json,
    Pjson,
    Html,
}

impl Format {
    fn from_query(query: Option<&str>) -> Option<Format> {
        let f = query
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "f")
            .map(|(_, v)| v);
        match f {
            None | Some("json") => Some(Format::Json),
            Some("pjson") => Some(Format::Pjson),
            Some("html") => Some(Format::Html),
            Some(_) => None,
        }
    }
}

/// The effective policy in the shape of ArcGIS Server's security
/// configuration resource. No secrets: no keys, no file contents.
pub fn security_config(live: &Live) -> Value {
    let s = &live.settings;
    let protocol = s.server.protocol;
    let (protocols, suites) = match &s.tls {
        Some(t) => (
            t.version_names().join(","),
            live.offered_suites().join(", "),
        ),
        None => (String::new(), String::new()),
    };
    let mut config = json!({
        "Protocol": protocol.as_str(),
        "httpEnabled": protocol.http_serves(),
        "sslEnabled": protocol.https_enabled(),
        "HSTSEnabled": s.hsts.enabled,
        "httpsProtocols": protocols,
        "cipherSuites": suites,
        "allowedAdminAccessIPs": s.admin.allowed_ips.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","),
        "allowDirectAccess": s.admin.direct_access,
        "allowInternetCORSAccess": s.cors.allow_private_network,
    });
    config["gisgate"] = extensions(live);
    config
}

/// Policy ArcGIS Server has no property for, in its own block so the
/// ArcGIS-shaped fields above keep their meaning.
fn extensions(live: &Live) -> Value {
    let s = &live.settings;
    let proxy = &s.server.proxy_protocol;
    let mut block = json!({
        "proxyProtocol": proxy.mode.as_str(),
        "proxyProtocolFrom": proxy.from.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        "strictSniHost": s.tls.as_ref().is_some_and(|t| t.strict_sni_host),
        "clientAuth": client_auth_config(live),
    });
    // Issue 25's per-client limits and request rules, in the same block.
    if let (Value::Object(block), Value::Object(limits)) = (&mut block, limits_block(s)) {
        block.extend(limits);
    }
    block
}

/// `[tls.client_auth]`, each `[[tls.sni]]` entry's, and the admin paths'
/// certificate policy. File paths, not contents; CRLs with their
/// nextUpdate.
fn client_auth_config(live: &Live) -> Value {
    let s = &live.settings;
    let table = |a: &ClientAuth| {
        json!({
            "mode": a.mode.as_str(),
            "ca": a.ca.as_ref().map(|p| p.display().to_string()),
            "crl": a.crls.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "crlUnknown": a.crl_unknown.as_str(),
        })
    };
    let (default, sni, forward) = match &s.tls {
        Some(t) => (
            table(&t.client_auth),
            t.sni
                .iter()
                .map(|e| (e.server_name.clone(), table(&e.client_auth)))
                .collect::<serde_json::Map<_, _>>(),
            t.client_auth
                .forward_header
                .as_ref()
                .map(|h| h.as_str().to_string()),
        ),
        None => (table(&ClientAuth::OFF), serde_json::Map::new(), None),
    };
    let crls: Vec<Value> = live
        .tls
        .as_ref()
        .map(|t| t.crls.as_slice())
        .unwrap_or(&[])
        .iter()
        .map(|c| json!({"file": c.path.display().to_string(), "nextUpdate": c.next_update}))
        .collect();
    json!({
        "default": default,
        "sni": sni,
        "forwardHeader": forward,
        "adminRequireClientCert": s.admin.require_client_cert,
        "adminAllowedSubjects": s.admin.allowed_subjects.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "crls": crls,
    })
}

/// The per-client limits and request rules, as configured.
fn limits_block(s: &crate::config::Settings) -> Value {
    let scope = |sc: &crate::config::RuleScope| {
        json!({
            "paths": sc.paths,
            "methods": sc.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
        })
    };
    let nets = |l: &[ipnet::IpNet]| l.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    json!({
        "refuseGetCredentials": s.tokens.refuse_get_credentials,
        "maxConnectionsPerIp": s.limits.max_connections_per_ip,
        "maxBodyBytes": s.limits.max_body_bytes,
        "accessRules": s.access.iter().enumerate().map(|(i, r)| json!({
            "rule": r.name.clone().unwrap_or_else(|| i.to_string()),
            "scope": scope(&r.scope),
            "f": r.f,
            "allow": r.allow.as_deref().map(nets),
            "deny": nets(&r.deny),
        })).collect::<Vec<_>>(),
        "rateLimits": s.rate_limits.iter().enumerate().map(|(i, r)| json!({
            "rule": r.name.clone().unwrap_or_else(|| i.to_string()),
            "scope": scope(&r.scope),
            "rate": r.rate.text,
            "burst": r.burst.get(),
        })).collect::<Vec<_>>(),
        "bodyLimits": s.body_limits.iter().map(|r| json!({
            "paths": r.paths,
            "maxBytes": r.max_bytes,
        })).collect::<Vec<_>>(),
    })
}

fn certificate(live: &Live, alias: &str) -> Option<Value> {
    let cert = live
        .certs()
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(alias))?;
    let mut facts = cert.facts.clone();
    facts.alias_name = cert.name.clone();
    facts.entry_type = "PrivateKeyEntry".into();
    facts.chain_length = cert.chain_len.to_string();
    serde_json::to_value(facts).ok()
}

fn metrics_page(prometheus: Option<&PrometheusHandle>, live: &Live) -> Response<ResponseBody> {
    let mut body = prometheus.map(|h| h.render()).unwrap_or_default();
    metrics::render_certificate_expiry(live.certs(), &mut body);
    let crls = live.tls.as_ref().map(|t| t.crls.as_slice()).unwrap_or(&[]);
    metrics::render_crl_next_update(crls, &mut body);
    let mut r = Response::new(ResponseBody::full(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

fn resource(format: Format, title: &str, value: Value) -> Response<ResponseBody> {
    let (body, content_type) = match format {
        Format::Json => (value.to_string(), "application/json"),
        Format::Pjson => (
            serde_json::to_string_pretty(&value).unwrap_or_default(),
            "application/json",
        ),
        Format::Html => (html(title, &value), "text/html; charset=utf-8"),
    };
    let mut r = Response::new(ResponseBody::full(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn html(title: &str, value: &Value) -> String {
    let mut rows = String::new();
    if let Value::Object(map) = value {
        for (k, v) in map {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            rows.push_str(&format!(
                "<tr><th>{}</th><td>{}</td></tr>\n",
                escape_html(k),
                escape_html(&v)
            ));
        }
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head><body><h1>{t}</h1><table>\n{rows}</table></body></html>\n",
        t = escape_html(title)
    )
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn text(status: StatusCode, body: &'static str) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
