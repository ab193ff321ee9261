//! Raw file -> typed, validated [`Settings`], once. The request path never
//! parses a string: addresses, CIDRs, durations and suites are typed here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};
use ipnet::IpNet;
use rustls::{ProtocolVersion, SupportedCipherSuite};

pub use super::client_auth::{ClientAuth, ClientAuthMode, CrlUnknown, SubjectPattern};
use super::error::{ConfigError, ConfigErrors, Locator};
use super::keys;
use super::raw::*;
use super::rules::{AccessRule, BodyLimitRule, RateLimitRule, Tokens};
use crate::host::HostPort;
use crate::tls::suites;

/// The site's HTTP protocol mode, as ArcGIS Server's `Protocol` property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    HttpAndHttps,
    Https,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::HttpAndHttps => "HTTP_AND_HTTPS",
            Protocol::Https => "HTTPS",
        }
    }
    pub fn https_enabled(self) -> bool {
        self != Protocol::Http
    }
    /// Whether the plain-HTTP listener serves requests (rather than only
    /// redirecting them).
    pub fn http_serves(self) -> bool {
        self != Protocol::Https
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The config file itself, absolute.
    pub path: PathBuf,
    /// How the file is named in messages (as given on the command line).
    pub display: String,
    /// The text it was parsed from, with where each key is, for later errors.
    pub source: std::sync::Arc<Locator>,
    pub server: Server,
    pub tls: Option<Tls>,
    pub hsts: Hsts,
    pub upstream: Upstream,
    pub admin: Admin,
    pub trusted_proxies: Vec<IpNet>,
    pub cors: Cors,
    pub observability_listen: Option<SocketAddr>,
    pub limits: Limits,
    pub tokens: Tokens,
    /// `[[access]]` rules, in file order: the first that matches decides.
    pub access: Vec<AccessRule>,
    pub rate_limits: Vec<RateLimitRule>,
    /// `[[body_limit]]` rules, in file order: the first that matches
    /// sets the limit, else `limits.max_body_bytes`.
    pub body_limits: Vec<BodyLimitRule>,
    pub reload_watch: bool,
    /// How long a changed file's content (the config and every file it
    /// names) must stay the same before it is applied. Zero: applied as soon
    /// as the file events are quiet.
    pub reload_settle: Duration,
    pub log: Log,
    /// Things that are allowed but that an operator should know about.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub protocol: Protocol,
    pub https_listen: Option<SocketAddr>,
    pub http_listen: Option<SocketAddr>,
    /// Parsed once here: the redirect takes its parts as they are.
    pub public_host: Option<HostPort>,
    pub public_https_port: u16,
    pub redirect_status: StatusCode,
    pub worker_threads: usize,
    /// Read by the HTTPS and HTTP listeners for each new connection.
    pub proxy_protocol: super::ProxyProtocol,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tls {
    pub cert: CertSource,
    pub sni: Vec<SniCert>,
    pub versions: Vec<&'static rustls::SupportedProtocolVersion>,
    /// The suites that will be offered, in the configured order.
    pub suites: Vec<SupportedCipherSuite>,
    /// Known IANA names that the TLS library does not implement, skipped.
    pub skipped_suites: Vec<String>,
    /// 421 for a request whose host the connection's certificate does not
    /// cover.
    pub strict_sni_host: bool,
    /// `[tls.client_auth]`: for the default certificate, and for every
    /// `[[tls.sni]]` entry without a table of its own.
    pub client_auth: ClientAuth,
}

impl Tls {
    pub fn version_names(&self) -> Vec<&'static str> {
        self.versions
            .iter()
            .map(|v| suites::version_name(v.version))
            .collect()
    }
    pub fn suite_names(&self) -> Vec<&'static str> {
        self.suites.iter().map(|s| suites::suite_name(s)).collect()
    }
    pub fn enables(&self, version: ProtocolVersion) -> bool {
        self.versions.iter().any(|v| v.version == version)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniCert {
    pub server_name: String,
    pub cert: CertSource,
    /// The entry's own `client_auth` table, else `[tls.client_auth]`.
    pub client_auth: ClientAuth,
}

/// Where a served certificate and its key come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    /// A PEM chain (leaf first) and a PEM key.
    Pem { cert: PathBuf, key: PathBuf },
    /// A PKCS#12 bundle; without a password file the password is empty.
    Pkcs12 {
        bundle: PathBuf,
        password_file: Option<PathBuf>,
    },
}

impl CertSource {
    /// The file that holds the certificate, for messages.
    pub fn cert_path(&self) -> &Path {
        match self {
            CertSource::Pem { cert, .. } => cert,
            CertSource::Pkcs12 { bundle, .. } => bundle,
        }
    }

    /// Every file read to load it: what a reload watches and hashes.
    pub fn files(&self) -> Vec<PathBuf> {
        match self {
            CertSource::Pem { cert, key } => vec![cert.clone(), key.clone()],
            CertSource::Pkcs12 {
                bundle,
                password_file,
            } => std::iter::once(bundle.clone())
                .chain(password_file.clone())
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hsts {
    pub enabled: bool,
    pub max_age: Duration,
    pub include_subdomains: bool,
    pub preload: bool,
}

impl Hsts {
    /// The `Strict-Transport-Security` value (RFC 6797 §6.1), or None when off.
    pub fn header_value(&self) -> Option<HeaderValue> {
        if !self.enabled {
            return None;
        }
        let mut v = format!("max-age={}", self.max_age.as_secs());
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        HeaderValue::from_str(&v).ok()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// `https://host[:port]`, the origin requests are sent to.
    pub origin: http::uri::Authority,
    pub host: String,
    pub port: u16,
    pub ca: Option<PathBuf>,
    /// SHA-256 of the CA bundle's content: a rotated bundle at the same path
    /// is a change.
    pub ca_digest: Option<[u8; 32]>,
    pub pins: Vec<[u8; 32]>,
    pub server_name: String,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle: usize,
    /// Offer h2 first in ALPN and multiplex requests over HTTP/2 when the
    /// upstream picks it.
    pub prefer_http2: bool,
}

impl Upstream {
    pub fn url(&self) -> String {
        format!("https://{}", self.origin)
    }
    /// How the upstream certificate is verified, in words for `check`.
    pub fn verification(&self) -> String {
        match (&self.ca, self.pins.is_empty()) {
            (Some(ca), true) => format!("chain to CA bundle {}", ca.display()),
            (Some(ca), false) => format!(
                "chain to CA bundle {} AND one of {} SHA-256 pin(s)",
                ca.display(),
                self.pins.len()
            ),
            (None, false) => format!(
                "SHA-256 pin(s) only ({}), name and chain not checked",
                self.pins.len()
            ),
            (None, true) => "system public roots".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub paths: Vec<String>,
    pub allowed_ips: Vec<IpNet>,
    pub direct_access: bool,
    /// Admin paths need a verified client certificate too.
    pub require_client_cert: bool,
    /// When not empty, that certificate's subject DN, a SAN email or a SAN
    /// UPN must match one of these.
    pub allowed_subjects: Vec<SubjectPattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    pub allowed_origins: Vec<String>,
    pub allow_private_network: bool,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub max_age: Duration,
    pub allow_credentials: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub shutdown_grace: Duration,
    pub send_timeout: Duration,
    /// Open connections one client address may hold; `None`: no limit.
    pub max_connections_per_ip: Option<usize>,
    /// Request body size limit where no `[[body_limit]]` rule applies;
    /// `None`: no limit.
    pub max_body_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Log {
    pub format: LogFormat,
    pub level: String,
}

pub const DEFAULT_ADMIN_PATHS: [&str; 2] = ["/arcgis/admin", "/arcgis/manager"];
pub const DEFAULT_CORS_METHODS: [&str; 4] = ["GET", "POST", "HEAD", "OPTIONS"];
pub const DEFAULT_CORS_HEADERS: [&str; 4] = [
    "Authorization",
    "Content-Type",
    "X-Esri-Authorization",
    "X-Requested-With",
];
/// Headers `tls.client_auth.forward_header` must not name: the gateway
/// sets them itself, or they frame or route the request.
const RESERVED_FORWARD_HEADERS: [&str; 11] = [
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "upgrade",
    "te",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-ssl-client-subject",
];
/// hyper refuses buffers smaller than this for HTTP/1 heads.
pub const MIN_HEADER_BYTES: usize = 8192;
/// Beyond a minute, a settle period would only delay every change.
pub const MAX_RELOAD_SETTLE: Duration = Duration::from_secs(60);
const ONE_YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// Reads and validates a config file. Relative paths inside resolve against
/// the file's directory.
pub fn load(path: &Path) -> Result<Settings, ConfigErrors> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: display.clone(),
            position: None,
            message: format!("cannot read: {e}"),
        }])
    })?;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    parse(&text, &abs, &display)
}

/// Validates config text as if it were the file at `path` (shown as `display`).
pub fn parse(text: &str, path: &Path, display: &str) -> Result<Settings, ConfigErrors> {
    let error = |position, message| ConfigError {
        file: display.to_string(),
        position,
        message,
    };
    // Parsed once: the same document gives every type error, the serde
    // structs, and later the position of any key named in an error.
    let doc = match toml_edit::Document::parse(text.to_string()) {
        Ok(doc) => doc,
        Err(e) => {
            let loc = Locator::unparsed(text);
            let offset = e.span().map_or(0, |s| s.start);
            let (offset, message) = match super::syntax::explain(text, offset, e.message()) {
                Some((at, m)) if m.contains("twice") => (at, m),
                Some((at, m)) => (at, describe_serde_error(&m, text, at)),
                None => (offset, describe_serde_error(e.message(), text, offset)),
            };
            return Err(ConfigErrors(vec![error(
                Some(loc.line_col(offset)),
                message,
            )]));
        }
    };
    let raw = toml_edit::de::from_document::<RawConfig>(doc.clone());
    let loc = std::sync::Arc::new(Locator::parsed(doc));
    // Every wrongly typed value at once; serde would stop at the first.
    let mut errors: Vec<ConfigError> = super::types::type_errors(&loc)
        .into_iter()
        .map(|(key, message)| error(loc.position(&key), format!("{key}: {message}")))
        .collect();
    errors.sort_by_key(|e| e.position);
    let raw: Option<RawConfig> = match raw {
        Ok(raw) => Some(raw),
        Err(e) => {
            // A type error serde finds was reported above in better words;
            // what it adds is an unknown key or a missing one.
            let adds =
                e.message().contains("unknown field") || e.message().contains("missing field");
            if errors.is_empty() || adds {
                let position = e.span().map(|s| loc.line_col(s.start));
                let message = match e.span() {
                    Some(s) => describe_serde_error(e.message(), text, s.start),
                    None => e.message().to_string(),
                };
                errors.push(error(position, message));
            }
            None
        }
    };
    let raw = match raw {
        Some(raw) if errors.is_empty() => raw,
        _ => return Err(ConfigErrors(errors)),
    };
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut v = Validator {
        loc: &loc,
        file: display,
        base,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let settings = v.settings(raw, path);
    if v.errors.is_empty() {
        Ok(settings)
    } else {
        Err(ConfigErrors(v.errors))
    }
}

/// Serde's messages name the field but not its table; add the table that
/// encloses the error so `unknown field` reads as a full key, and name the
/// key whose value is wrong (`server.redirect_status: invalid type ...`).
fn describe_serde_error(message: &str, text: &str, offset: usize) -> String {
    let message = message.trim().replace('`', "");
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    let on_header = line.starts_with('[');
    let table = if on_header {
        // An unknown table (`[hst]`, `[tls.foo]`) is a key of its parent.
        let name = line.trim_start_matches('[').split(']').next().unwrap_or("");
        name.rsplit_once('.')
            .map(|(parent, _)| parent.trim().to_string())
    } else {
        text[..line_start]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('['))
            .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
    };
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| !on_header && !k.is_empty());
    if message.starts_with("unknown field") {
        let why = "(unknown keys are refused so a typo cannot weaken policy)";
        return match table {
            Some(t) => format!("in [{t}]: {message} {why}"),
            None => format!("{message} {why}"),
        };
    }
    match (table, key) {
        (Some(t), Some(k)) => format!("{t}.{k}: {message}"),
        (None, Some(k)) => format!("{k}: {message}"),
        (Some(t), None) => format!("in [{t}]: {message}"),
        (None, None) => message,
    }
}

pub(super) struct Validator<'a> {
    loc: &'a std::sync::Arc<Locator>,
    file: &'a str,
    base: PathBuf,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
}

impl Validator<'_> {
    pub(super) fn error(&mut self, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_string(),
            position: self.loc.position(key),
            message: format!("{key}: {}", message.into()),
        });
    }

    fn duration(&mut self, key: &str, raw: &Option<String>, default: &str) -> Duration {
        let text = raw.as_deref().unwrap_or(default);
        match humantime::parse_duration(text) {
            Ok(d) => d,
            Err(e) => {
                self.error(
                    key,
                    format!("{text:?} is not a duration ({e}); write e.g. \"250ms\", \"10s\", \"5m\", \"365d\""),
                );
                humantime::parse_duration(default).unwrap_or_default()
            }
        }
    }

    fn listen(&mut self, key: &str, raw: &Option<String>, default: &str) -> Option<SocketAddr> {
        let text = raw.as_deref().unwrap_or(default);
        if text.is_empty() {
            return None;
        }
        match text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    key,
                    format!(
                        "{text:?} is not an address:port such as \"0.0.0.0:6443\" or \"[::]:6443\""
                    ),
                );
                None
            }
        }
    }

    fn file(&mut self, key: &str, raw: &str) -> PathBuf {
        let p = Path::new(raw);
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        };
        if !p.is_file() {
            self.error(
                key,
                format!(
                    "file {} does not exist or is not a file{}",
                    p.display(),
                    missing_file_hint(key, raw).unwrap_or_default()
                ),
            );
        }
        p
    }

    pub(super) fn cidrs(&mut self, key: &str, items: &[String]) -> Vec<IpNet> {
        let mut out = Vec::new();
        for item in items {
            match parse_ip_or_cidr(item) {
                Ok(n) => out.push(n),
                Err(e) => self.error(key, e.to_string()),
            }
        }
        out
    }

    fn settings(&mut self, raw: RawConfig, path: &Path) -> Settings {
        let server = self.server(&raw.server);
        let tls = self.tls(&raw.tls, server.protocol);
        let hsts = self.hsts(&raw.hsts, server.protocol);
        let upstream = self.upstream(&raw.upstream);
        let admin = self.admin(&raw.admin);
        self.admin_client_certs(&admin, tls.as_ref());
        let trusted_proxies = match &raw.client_ip.trusted_proxies {
            Some(l) => self.cidrs(keys::CLIENT_IP_TRUSTED_PROXIES, &l.items()),
            None => Vec::new(),
        };
        let cors = self.cors(&raw.cors);
        let observability_listen = self.listen(
            keys::OBSERVABILITY_LISTEN,
            &raw.observability.listen,
            "127.0.0.1:9090",
        );
        let limits = self.limits(&raw.limits);
        let tokens = self.tokens(&raw.tokens);
        let access = self.access_rules(&raw.access);
        let rate_limits = self.rate_limits(&raw.rate_limit);
        let body_limits = self.body_limits(&raw.body_limit);
        let reload_settle = self.reload_settle(&raw.reload);
        let log = self.log(&raw.log);
        self.listen_conflicts(&server, observability_listen);
        if server.protocol == Protocol::Http {
            self.warnings.push(
                "server.protocol = \"HTTP\": clients connect in plaintext; credentials and tokens cross the network unencrypted"
                    .into(),
            );
        }
        if admin.allowed_ips.iter().any(|n| n.prefix_len() == 0) {
            self.warnings.push(
                "admin.allowed_ips admits every address: the admin gate only checks admin.direct_access".into(),
            );
        }
        Settings {
            path: path.to_path_buf(),
            display: self.file.to_string(),
            source: self.loc.clone(),
            server,
            tls,
            hsts,
            upstream,
            admin,
            trusted_proxies,
            cors,
            observability_listen,
            limits,
            tokens,
            access,
            rate_limits,
            body_limits,
            reload_watch: raw.reload.watch.unwrap_or(true),
            reload_settle,
            log,
            warnings: std::mem::take(&mut self.warnings),
        }
    }

    fn server(&mut self, raw: &RawServer) -> Server {
        let protocol = match raw.protocol.as_deref().unwrap_or("HTTPS") {
            "HTTPS" => Protocol::Https,
            "HTTP_AND_HTTPS" => Protocol::HttpAndHttps,
            "HTTP" => Protocol::Http,
            other => {
                self.error(
                    keys::SERVER_PROTOCOL,
                    format!("{other:?} is not one of \"HTTPS\", \"HTTP_AND_HTTPS\", \"HTTP\""),
                );
                Protocol::Https
            }
        };
        let https_listen =
            self.listen(keys::SERVER_HTTPS_LISTEN, &raw.https_listen, "0.0.0.0:6443");
        // A malformed address was reported already: "must be set" would be
        // a second error for the same mistake.
        let https_written = raw.https_listen.as_deref() != Some("");
        let https_listen = if protocol.https_enabled() {
            if https_listen.is_none() && !https_written {
                self.error(
                    keys::SERVER_HTTPS_LISTEN,
                    format!("must be set when server.protocol = {:?}", protocol.as_str()),
                );
            }
            https_listen
        } else {
            None
        };
        let http_listen = self.listen(keys::SERVER_HTTP_LISTEN, &raw.http_listen, "0.0.0.0:6080");
        let http_written = raw.http_listen.as_deref() != Some("");
        if protocol == Protocol::Http && http_listen.is_none() && !http_written {
            self.error(
                keys::SERVER_HTTP_LISTEN,
                "must be set when server.protocol = \"HTTP\" (nothing would listen)",
            );
        }
        let public_host = raw
            .public_host
            .as_deref()
            .and_then(|h| match HostPort::parse(h) {
                Ok(parsed) => Some(parsed),
                Err(_) => {
                    self.error(
                        keys::SERVER_PUBLIC_HOST,
                        format!("{h:?} is not a host name or IP address (optionally with :port)"),
                    );
                    None
                }
            });
        let public_https_port = raw.public_https_port.unwrap_or(6443);
        if public_https_port == 0 {
            self.error(keys::SERVER_PUBLIC_HTTPS_PORT, "must be 1-65535");
        }
        let redirect_status = match raw.redirect_status.unwrap_or(308) {
            s @ (301 | 302 | 307 | 308) => {
                StatusCode::from_u16(s).unwrap_or(StatusCode::PERMANENT_REDIRECT)
            }
            other => {
                self.error(
                    keys::SERVER_REDIRECT_STATUS,
                    format!("{other} is not one of 301, 302, 307, 308"),
                );
                StatusCode::PERMANENT_REDIRECT
            }
        };
        let worker_threads = match raw.worker_threads {
            Some(0) => {
                self.error(keys::SERVER_WORKER_THREADS, "must be at least 1");
                1
            }
            Some(n) => n,
            // std reads the cgroup CPU quota, so a container limited to
            // 2 CPUs gets 2 threads, not the host's count.
            None => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        };
        let checked = super::proxy_protocol::check(
            raw.proxy_protocol.as_deref(),
            raw.proxy_protocol_from.as_ref().map(ListOrCsv::items),
        );
        for (key, message) in checked.errors {
            self.error(key, message);
        }
        self.warnings.extend(checked.warnings);
        Server {
            protocol,
            https_listen,
            http_listen,
            public_host,
            public_https_port,
            redirect_status,
            worker_threads,
            proxy_protocol: checked.policy,
        }
    }

    fn tls(&mut self, raw: &RawTls, protocol: Protocol) -> Option<Tls> {
        if !protocol.https_enabled() {
            return None;
        }
        let cert = self.cert_source(
            "tls",
            [&raw.cert, &raw.key, &raw.pkcs12, &raw.pkcs12_password_file],
            &format!("when server.protocol = {:?}", protocol.as_str()),
        )?;
        let client_auth = self.client_auth(keys::TLS_CLIENT_AUTH, raw.client_auth.as_ref(), None);
        let mut sni = Vec::new();
        for (i, s) in raw.sni.iter().enumerate() {
            let name = s.server_name.trim().to_ascii_lowercase();
            if name.is_empty()
                || rustls::pki_types::ServerName::try_from(name.trim_start_matches("*.")).is_err()
            {
                self.error(
                    &format!("tls.sni.{i}.server_name"),
                    format!("{:?} is not a DNS name", s.server_name),
                );
            }
            if sni.iter().any(|x: &SniCert| x.server_name == name) {
                self.error(
                    &format!("tls.sni.{i}.server_name"),
                    format!("{name:?} is listed twice"),
                );
            }
            let source = self.cert_source(
                &format!("tls.sni.{i}"),
                [&s.cert, &s.key, &s.pkcs12, &s.pkcs12_password_file],
                "in every [[tls.sni]] entry",
            );
            let auth = match &s.client_auth {
                Some(own) => self.client_auth(
                    &format!("tls.sni.{i}.client_auth"),
                    Some(own),
                    Some(&client_auth),
                ),
                None => client_auth.clone(),
            };
            if let Some(cert) = source {
                sni.push(SniCert {
                    server_name: name,
                    cert,
                    client_auth: auth,
                });
            }
        }
        let version_names = raw
            .protocols
            .as_ref()
            .map(ListOrCsv::items)
            .unwrap_or_else(|| vec!["TLSv1.2".into(), "TLSv1.3".into()]);
        let mut versions = Vec::new();
        for name in &version_names {
            match suites::parse_version(name) {
                Ok(v) => {
                    if !versions.contains(&v) {
                        versions.push(v)
                    }
                }
                Err(e) => self.error(keys::TLS_PROTOCOLS, e.to_string()),
            }
        }
        if versions.is_empty()
            && !version_names
                .iter()
                .any(|n| suites::parse_version(n).is_err())
        {
            self.error(
                keys::TLS_PROTOCOLS,
                "enable at least one of \"TLSv1.2\", \"TLSv1.3\"",
            );
        }
        let (chosen, skipped, errors) = match &raw.cipher_suites {
            Some(l) => suites::resolve(&l.items()),
            None => (suites::default_suites(), Vec::new(), Vec::new()),
        };
        // With a misspelt name, "no usable suite left" would follow from
        // that one mistake: it is said only of a list whose names are right.
        let names_ok = errors.is_empty();
        for e in errors {
            self.error(keys::TLS_CIPHER_SUITES, e);
        }
        for s in &skipped {
            self.warnings.push(format!(
                "tls.cipher_suites: {s} is skipped: the TLS library does not implement it (CBC, static-RSA and 3DES suites are deliberately absent)"
            ));
        }
        for v in versions.iter().filter(|_| names_ok) {
            if !chosen.iter().any(|s| s.version() == *v) {
                self.error(
                    keys::TLS_CIPHER_SUITES,
                    format!(
                        "no usable cipher suite left for {} (skipped: {})",
                        suites::version_name(v.version),
                        if skipped.is_empty() {
                            "none".into()
                        } else {
                            skipped.join(", ")
                        }
                    ),
                );
            }
        }
        // Offer only suites of enabled versions.
        let suites_offered: Vec<_> = chosen
            .into_iter()
            .filter(|s| versions.contains(&s.version()))
            .collect();
        Some(Tls {
            cert,
            sni,
            versions,
            suites: suites_offered,
            skipped_suites: skipped,
            strict_sni_host: raw.strict_sni_host.unwrap_or(false),
            client_auth,
        })
    }

    /// Exactly one of `cert` + `key` (PEM) or `pkcs12` (with an optional
    /// `pkcs12_password_file`) under `prefix`.
    fn cert_source(
        &mut self,
        prefix: &str,
        [cert, key, pkcs12, password_file]: [&Option<String>; 4],
        when: &str,
    ) -> Option<CertSource> {
        let k = |name: &str| format!("{prefix}.{name}");
        match (cert, key, pkcs12) {
            (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                self.error(
                    &k("pkcs12"),
                    format!(
                        "give either {} and {} (PEM) or {} (PKCS#12), not both",
                        k("cert"),
                        k("key"),
                        k("pkcs12")
                    ),
                );
                None
            }
            (None, None, Some(bundle)) => Some(CertSource::Pkcs12 {
                bundle: self.file(&k("pkcs12"), bundle),
                password_file: password_file
                    .as_ref()
                    .map(|p| self.file(&k("pkcs12_password_file"), p)),
            }),
            _ if password_file.is_some() => {
                self.error(
                    &k("pkcs12_password_file"),
                    format!("is the password of {}, which is not set", k("pkcs12")),
                );
                None
            }
            (Some(c), Some(kf), None) => Some(CertSource::Pem {
                cert: self.file(&k("cert"), c),
                key: self.file(&k("key"), kf),
            }),
            (Some(_), None, None) => {
                self.error(&k("cert"), format!("needs {} beside it", k("key")));
                None
            }
            (None, Some(_), None) => {
                self.error(&k("key"), format!("needs {} beside it", k("cert")));
                None
            }
            (None, None, None) => {
                self.error(
                    prefix,
                    format!(
                        "{} and {}, or {}, are required {when}",
                        k("cert"),
                        k("key"),
                        k("pkcs12")
                    ),
                );
                None
            }
        }
    }

    fn hsts(&mut self, raw: &RawHsts, protocol: Protocol) -> Hsts {
        let enabled = raw.enabled.unwrap_or(false);
        let max_age = self.duration(keys::HSTS_MAX_AGE, &raw.max_age, "365d");
        let include_subdomains = raw.include_subdomains.unwrap_or(false);
        let preload = raw.preload.unwrap_or(false);
        if enabled && protocol != Protocol::Https {
            self.error(
                keys::HSTS_ENABLED,
                format!(
                    "hsts.enabled = true needs server.protocol = \"HTTPS\" (it is {:?})",
                    protocol.as_str()
                ),
            );
        }
        if preload && !include_subdomains {
            self.error(
                keys::HSTS_PRELOAD,
                "preload needs hsts.include_subdomains = true (hstspreload.org requirement)",
            );
        }
        if preload && max_age < ONE_YEAR {
            self.error(
                keys::HSTS_PRELOAD,
                format!(
                    "preload needs hsts.max_age of at least one year (it is {})",
                    humantime::format_duration(max_age)
                ),
            );
        }
        Hsts {
            enabled,
            max_age,
            include_subdomains,
            preload,
        }
    }

    fn upstream(&mut self, raw: &RawUpstream) -> Upstream {
        let mut origin = http::uri::Authority::from_static("invalid:443");
        let mut host = String::from("invalid");
        let mut port = 443;
        match raw.url.as_deref() {
            None => self.error(keys::UPSTREAM_URL, "is required, e.g. \"https://gis.internal:6443\""),
            Some(url) => match url.parse::<http::Uri>() {
                Ok(uri) if uri.scheme_str() == Some("http") => self.error(
                    keys::UPSTREAM_URL,
                    format!(
                        "{url:?} is plain http: gisgate never offloads TLS, every request is re-encrypted to the upstream over HTTPS (ArcGIS Server does not support SSL offloading); use https://"
                    ),
                ),
                Ok(uri) if uri.scheme_str() != Some("https") => {
                    self.error(keys::UPSTREAM_URL, format!("{url:?} must start with https://"))
                }
                Ok(uri) if !matches!(uri.path(), "" | "/") || uri.query().is_some() => self.error(
                    keys::UPSTREAM_URL,
                    format!("{url:?}: give only the origin (https://host:port); request paths are forwarded as received"),
                ),
                Ok(uri) => match uri.authority() {
                    Some(a) if a.as_str().contains('@') => {
                        self.error(keys::UPSTREAM_URL, "must not contain user info")
                    }
                    Some(a) => {
                        origin = a.clone();
                        host = a.host().trim_matches(|c| c == '[' || c == ']').to_string();
                        port = a.port_u16().unwrap_or(443);
                    }
                    None => self.error(keys::UPSTREAM_URL, format!("{url:?} has no host")),
                },
                Err(e) => self.error(keys::UPSTREAM_URL, format!("{url:?} is not a URL: {e}")),
            },
        }
        let ca = raw.ca.as_deref().map(|c| self.file(keys::UPSTREAM_CA, c));
        let ca_digest = ca
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .map(|bytes| crate::tls::certs::sha256_fingerprint(&bytes));
        let mut pins = Vec::new();
        for p in &raw.pin_sha256 {
            match crate::tls::certs::parse_pin(p) {
                Ok(pin) => pins.push(pin),
                Err(e) => self.error(keys::UPSTREAM_PIN_SHA256, e.to_string()),
            }
        }
        let server_name = raw.server_name.clone().unwrap_or_else(|| host.clone());
        if rustls::pki_types::ServerName::try_from(server_name.as_str()).is_err() {
            self.error(
                keys::UPSTREAM_SERVER_NAME,
                format!("{server_name:?} is not a DNS name or IP address"),
            );
        }
        let connect_timeout =
            self.duration(keys::UPSTREAM_CONNECT_TIMEOUT, &raw.connect_timeout, "5s");
        let response_timeout = self.duration(
            keys::UPSTREAM_RESPONSE_TIMEOUT,
            &raw.response_timeout,
            "300s",
        );
        let pool_idle_timeout = self.duration(
            keys::UPSTREAM_POOL_IDLE_TIMEOUT,
            &raw.pool_idle_timeout,
            "90s",
        );
        Upstream {
            origin,
            host,
            port,
            ca,
            ca_digest,
            pins,
            server_name,
            connect_timeout,
            response_timeout,
            pool_idle_timeout,
            pool_max_idle: raw.pool_max_idle.unwrap_or(64),
            prefer_http2: raw.prefer_http2.unwrap_or(false),
        }
    }

    fn admin(&mut self, raw: &RawAdmin) -> Admin {
        let paths = raw
            .paths
            .clone()
            .unwrap_or_else(|| DEFAULT_ADMIN_PATHS.iter().map(|s| s.to_string()).collect());
        let mut canonical = Vec::new();
        for p in &paths {
            match crate::policy::path::canonical_path(p) {
                Ok(c) => canonical.push(c),
                Err(e) => self.error(
                    keys::ADMIN_PATHS,
                    format!("{p:?} is not a canonical absolute path: {e}"),
                ),
            }
        }
        let allowed_ips = match &raw.allowed_ips {
            Some(l) => self.cidrs(keys::ADMIN_ALLOWED_IPS, &l.items()),
            None => vec![
                "127.0.0.1/32".parse().expect("static CIDR"),
                "::1/128".parse().expect("static CIDR"),
            ],
        };
        let allowed_subjects: Vec<SubjectPattern> = raw
            .allowed_subjects
            .iter()
            .flatten()
            .map(|p| SubjectPattern::new(p))
            .collect();
        if allowed_subjects.iter().any(|p| p.as_str().is_empty()) {
            self.error(
                keys::ADMIN_ALLOWED_SUBJECTS,
                "an empty pattern matches nothing; remove it",
            );
        }
        Admin {
            paths: canonical,
            allowed_ips,
            direct_access: raw.direct_access.unwrap_or(true),
            require_client_cert: raw.require_client_cert.unwrap_or(false),
            allowed_subjects,
        }
    }

    /// A `client_auth` table under `prefix`. In a `[[tls.sni]]` entry
    /// (`outer` is `[tls.client_auth]`), `forward_header` is refused: the
    /// header is one for every connection.
    fn client_auth(
        &mut self,
        prefix: &str,
        raw: Option<&RawClientAuth>,
        outer: Option<&ClientAuth>,
    ) -> ClientAuth {
        let Some(raw) = raw else {
            return ClientAuth::OFF;
        };
        let k = |name: &str| format!("{prefix}.{name}");
        let mode = match raw.mode.as_deref() {
            None => ClientAuthMode::Off,
            Some(text) => ClientAuthMode::parse(text).unwrap_or_else(|| {
                self.error(
                    &k("mode"),
                    format!("{text:?} is not one of \"off\", \"optional\", \"required\""),
                );
                ClientAuthMode::Off
            }),
        };
        let ca = raw.ca.as_deref().map(|c| self.file(&k("ca"), c));
        if mode != ClientAuthMode::Off && ca.is_none() {
            self.error(
                &k("ca"),
                format!(
                    "is required with mode = {:?}: the CA bundle client certificates must chain to",
                    mode.as_str()
                ),
            );
        }
        let crls: Vec<PathBuf> = raw
            .crl
            .iter()
            .flatten()
            .map(|c| self.file(&k("crl"), c))
            .collect();
        let crl_unknown = match raw.crl_unknown.as_deref() {
            None | Some("deny") => CrlUnknown::Deny,
            Some("allow") => CrlUnknown::Allow,
            Some(other) => {
                self.error(
                    &k("crl_unknown"),
                    format!("{other:?} is not one of \"deny\", \"allow\""),
                );
                CrlUnknown::Deny
            }
        };
        let forward_header = match (&raw.forward_header, outer) {
            (Some(_), Some(outer)) => {
                self.error(
                    &k("forward_header"),
                    "is set in [tls.client_auth] only: the upstream gets the header from every connection",
                );
                outer.forward_header.clone()
            }
            (Some(name), None) => match HeaderName::from_bytes(name.trim().as_bytes()) {
                Ok(h) if RESERVED_FORWARD_HEADERS.contains(&h.as_str()) => {
                    self.error(
                        &k("forward_header"),
                        format!("{name:?} is a header the gateway sets or frames requests by; name another, e.g. \"X-SSL-Client-Cert\""),
                    );
                    None
                }
                Ok(h) => Some(h),
                Err(_) => {
                    self.error(
                        &k("forward_header"),
                        format!("{name:?} is not a header name"),
                    );
                    None
                }
            },
            (None, outer) => outer.and_then(|o| o.forward_header.clone()),
        };
        ClientAuth {
            mode,
            ca,
            crls,
            crl_unknown,
            forward_header,
        }
    }

    /// `admin.require_client_cert` needs some listener to ask for
    /// certificates, and `admin.allowed_subjects` needs it on: otherwise
    /// every admin request would be refused, or the patterns ignored.
    fn admin_client_certs(&mut self, admin: &Admin, tls: Option<&Tls>) {
        if !admin.allowed_subjects.is_empty() && !admin.require_client_cert {
            self.error(
                keys::ADMIN_ALLOWED_SUBJECTS,
                "needs admin.require_client_cert = true (the patterns are matched against the client certificate)",
            );
        }
        let asks = tls.is_some_and(|t| {
            std::iter::once(&t.client_auth)
                .chain(t.sni.iter().map(|s| &s.client_auth))
                .any(|a| a.mode != ClientAuthMode::Off)
        });
        if admin.require_client_cert && !asks {
            self.error(
                keys::ADMIN_REQUIRE_CLIENT_CERT,
                "no client ever presents a certificate: set tls.client_auth.mode (or a [[tls.sni]] entry's client_auth.mode) to \"optional\" or \"required\"",
            );
        }
    }

    fn cors(&mut self, raw: &RawCors) -> Cors {
        let allowed_origins: Vec<String> = raw
            .allowed_origins
            .as_ref()
            .map(ListOrCsv::items)
            .unwrap_or_default();
        for o in &allowed_origins {
            if o != "*" && !is_origin(o) {
                self.error(
                    keys::CORS_ALLOWED_ORIGINS,
                    format!("{o:?} is not an origin like \"https://maps.example.com\" (scheme://host[:port], no path) or \"*\""),
                );
            }
        }
        let allow_credentials = raw.allow_credentials.unwrap_or(false);
        if allow_credentials && allowed_origins.iter().any(|o| o == "*") {
            self.error(
                keys::CORS_ALLOW_CREDENTIALS,
                "cannot be true with \"*\" in cors.allowed_origins (browsers reject credentials with a wildcard origin); list the origins",
            );
        }
        let list = |l: &Option<ListOrCsv>, d: &[&str]| {
            l.as_ref()
                .map(ListOrCsv::items)
                .unwrap_or_else(|| d.iter().map(|s| s.to_string()).collect())
        };
        let allowed_methods = list(&raw.allowed_methods, &DEFAULT_CORS_METHODS);
        for m in &allowed_methods {
            if http::Method::from_bytes(m.as_bytes()).is_err() {
                self.error(
                    keys::CORS_ALLOWED_METHODS,
                    format!("{m:?} is not an HTTP method"),
                );
            }
        }
        let allowed_headers = list(&raw.allowed_headers, &DEFAULT_CORS_HEADERS);
        for h in &allowed_headers {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                self.error(
                    keys::CORS_ALLOWED_HEADERS,
                    format!("{h:?} is not a header name"),
                );
            }
        }
        Cors {
            allowed_origins,
            allow_private_network: raw.allow_private_network.unwrap_or(false),
            allowed_methods,
            allowed_headers,
            max_age: self.duration(keys::CORS_MAX_AGE, &raw.max_age, "10m"),
            allow_credentials,
        }
    }

    fn limits(&mut self, raw: &RawLimits) -> Limits {
        let header_read_timeout = self.duration(
            keys::LIMITS_HEADER_READ_TIMEOUT,
            &raw.header_read_timeout,
            "10s",
        );
        let idle_timeout = self.duration(keys::LIMITS_IDLE_TIMEOUT, &raw.idle_timeout, "60s");
        let shutdown_grace = self.duration(keys::LIMITS_SHUTDOWN_GRACE, &raw.shutdown_grace, "30s");
        let send_timeout = self.duration(keys::LIMITS_SEND_TIMEOUT, &raw.send_timeout, "60s");
        for (key, d) in [
            (keys::LIMITS_HEADER_READ_TIMEOUT, header_read_timeout),
            (keys::LIMITS_IDLE_TIMEOUT, idle_timeout),
            (keys::LIMITS_SEND_TIMEOUT, send_timeout),
        ] {
            if d.is_zero() {
                self.error(key, "must be greater than zero");
            }
        }
        let max_connections = raw.max_connections.unwrap_or(10_000);
        if max_connections == 0 {
            self.error(keys::LIMITS_MAX_CONNECTIONS, "must be at least 1");
        }
        let max_header_bytes = raw.max_header_bytes.unwrap_or(65_536);
        if max_header_bytes < MIN_HEADER_BYTES {
            self.error(
                keys::LIMITS_MAX_HEADER_BYTES,
                format!("{max_header_bytes} is below the minimum of {MIN_HEADER_BYTES}"),
            );
        }
        if raw.max_connections_per_ip == Some(0) {
            self.error(
                keys::LIMITS_MAX_CONNECTIONS_PER_IP,
                "must be at least 1 (leave it out for no limit)",
            );
        }
        Limits {
            header_read_timeout,
            idle_timeout,
            max_connections,
            max_header_bytes,
            shutdown_grace,
            send_timeout,
            max_connections_per_ip: raw.max_connections_per_ip,
            max_body_bytes: raw.max_body_bytes,
        }
    }

    fn reload_settle(&mut self, raw: &RawReload) -> Duration {
        let settle = self.duration(keys::RELOAD_SETTLE, &raw.settle, "1s");
        if settle > MAX_RELOAD_SETTLE {
            self.error(
                keys::RELOAD_SETTLE,
                format!(
                    "{} is longer than the maximum of {}: a change would wait that long to apply",
                    humantime::format_duration(settle),
                    humantime::format_duration(MAX_RELOAD_SETTLE)
                ),
            );
        }
        settle
    }

    fn log(&mut self, raw: &RawLog) -> Log {
        let format = match raw.format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                self.error(
                    keys::LOG_FORMAT,
                    format!("{other:?} is not \"text\" or \"json\""),
                );
                LogFormat::Text
            }
        };
        let level = raw.log_level();
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            self.error(
                keys::LOG_LEVEL,
                format!("{level:?} is not a level (error, warn, info, debug, trace) or filter"),
            );
        }
        Log { format, level }
    }

    fn listen_conflicts(&mut self, server: &Server, observe: Option<SocketAddr>) {
        let named = [
            (keys::SERVER_HTTPS_LISTEN, server.https_listen),
            (keys::SERVER_HTTP_LISTEN, server.http_listen),
            (keys::OBSERVABILITY_LISTEN, observe),
        ];
        for (i, (ka, a)) in named.iter().enumerate() {
            for (kb, b) in &named[i + 1..] {
                if let (Some(a), Some(b)) = (a, b) {
                    // Port 0 asks the OS for any free port: never a clash.
                    if a == b && a.port() != 0 {
                        self.error(
                            kb,
                            format!("{b} is also {ka}; each listener needs its own address"),
                        );
                    }
                }
            }
        }
    }
}

impl Settings {
    /// An error about `key`, found after validation (loading a certificate,
    /// binding a listener), located in the file like a parse error.
    pub fn error_at(&self, key: &str, message: impl std::fmt::Display) -> ConfigError {
        ConfigError {
            file: self.display.clone(),
            position: self.source.position(key),
            message: format!("{key}: {message}"),
        }
    }
}

impl RawLog {
    fn log_level(&self) -> String {
        self.level.clone().unwrap_or_else(|| "info".into())
    }
}

pub use crate::policy::admin::parse_ip_or_cidr;

fn is_origin(o: &str) -> bool {
    let Some((scheme, rest)) = o.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains('/')
        && crate::host::parse_host(rest).is_ok()
}

/// What to do about a missing file, when gisgate can make it: the shipped
/// sample's development certificates (on a fresh clone `certs/` does not
/// exist yet), or any TLS certificate or key.
fn missing_file_hint(key: &str, raw: &str) -> Option<&'static str> {
    let p = Path::new(raw);
    let in_certs = p
        .parent()
        .and_then(|d| d.file_name())
        .is_some_and(|d| d == "certs");
    let dev_file = p
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| crate::devpki::FILES.contains(&n));
    if in_certs && dev_file {
        return Some(
            " (it is one of the sample's development certificates: run `gisgate demo` in this directory once to make certs/, or point the config at your own certificate)",
        );
    }
    let tls_pair = key.starts_with("tls.") && (key.ends_with(".cert") || key.ends_with(".key"));
    tls_pair.then_some(
        " (`gisgate cert generate --cn NAME --cert CERT --key KEY` makes a self-signed pair)",
    )
}
