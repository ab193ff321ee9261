//! The file as written: serde structs that mirror `gateway.toml` one to one.
//!
//! Every table refuses unknown keys: a typo such as `allowed_ip` must never
//! silently fall back to a default and weaken policy. Nothing here is
//! interpreted; `validate.rs` turns these into typed settings.

use serde::Deserialize;

/// A list that operators may write either as a TOML array or, the way
/// ArcGIS Server's admin API writes it, as one comma-separated string.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ListOrCsv {
    List(Vec<String>),
    Csv(String),
}

impl ListOrCsv {
    pub fn items(&self) -> Vec<String> {
        match self {
            ListOrCsv::List(v) => v.iter().map(|s| s.trim().to_string()).collect(),
            ListOrCsv::Csv(s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub hsts: RawHsts,
    #[serde(default)]
    pub upstream: RawUpstream,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub client_ip: RawClientIp,
    #[serde(default)]
    pub cors: RawCors,
    #[serde(default)]
    pub observability: RawObservability,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub tokens: RawTokens,
    #[serde(default)]
    pub access: Vec<RawAccess>,
    #[serde(default)]
    pub rate_limit: Vec<RawRateLimit>,
    #[serde(default)]
    pub body_limit: Vec<RawBodyLimit>,
    #[serde(default)]
    pub reload: RawReload,
    #[serde(default)]
    pub log: RawLog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub protocol: Option<String>,
    pub https_listen: Option<String>,
    pub http_listen: Option<String>,
    pub public_host: Option<String>,
    pub public_https_port: Option<u16>,
    pub redirect_status: Option<u16>,
    pub worker_threads: Option<usize>,
    pub proxy_protocol: Option<String>,
    pub proxy_protocol_from: Option<ListOrCsv>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub pkcs12: Option<String>,
    pub pkcs12_password_file: Option<String>,
    #[serde(default)]
    pub sni: Vec<RawSni>,
    pub protocols: Option<ListOrCsv>,
    pub cipher_suites: Option<ListOrCsv>,
    pub strict_sni_host: Option<bool>,
    pub client_auth: Option<RawClientAuth>,
}

/// `[tls.client_auth]`, and the same table in a `[[tls.sni]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientAuth {
    pub ca: Option<String>,
    pub mode: Option<String>,
    pub crl: Option<Vec<String>>,
    pub crl_unknown: Option<String>,
    pub forward_header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSni {
    pub server_name: String,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub pkcs12: Option<String>,
    pub pkcs12_password_file: Option<String>,
    pub client_auth: Option<RawClientAuth>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHsts {
    pub enabled: Option<bool>,
    pub max_age: Option<String>,
    pub include_subdomains: Option<bool>,
    pub preload: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: Option<String>,
    pub ca: Option<String>,
    #[serde(default)]
    pub pin_sha256: Vec<String>,
    pub server_name: Option<String>,
    pub connect_timeout: Option<String>,
    pub response_timeout: Option<String>,
    pub pool_idle_timeout: Option<String>,
    pub pool_max_idle: Option<usize>,
    pub prefer_http2: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub paths: Option<Vec<String>>,
    pub allowed_ips: Option<ListOrCsv>,
    pub direct_access: Option<bool>,
    pub require_client_cert: Option<bool>,
    pub allowed_subjects: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClientIp {
    pub trusted_proxies: Option<ListOrCsv>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    pub allowed_origins: Option<ListOrCsv>,
    pub allow_private_network: Option<bool>,
    pub allowed_methods: Option<ListOrCsv>,
    pub allowed_headers: Option<ListOrCsv>,
    pub max_age: Option<String>,
    pub allow_credentials: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawObservability {
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_connections: Option<usize>,
    pub max_header_bytes: Option<usize>,
    pub shutdown_grace: Option<String>,
    pub send_timeout: Option<String>,
    pub max_connections_per_ip: Option<usize>,
    pub max_body_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokens {
    pub refuse_get_credentials: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccess {
    pub name: Option<String>,
    pub paths: Vec<String>,
    pub methods: Option<Vec<String>>,
    pub f: Option<Vec<String>>,
    pub allow: Option<ListOrCsv>,
    pub deny: Option<ListOrCsv>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub name: Option<String>,
    pub paths: Vec<String>,
    pub methods: Option<Vec<String>>,
    pub rate: String,
    pub burst: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBodyLimit {
    pub paths: Vec<String>,
    pub max_bytes: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReload {
    pub watch: Option<bool>,
    pub settle: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
}
