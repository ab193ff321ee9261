//! Every key of `gateway.toml` by its dotted name, in the order the
//! reference documents them, with the kind of value each takes. Validation,
//! `check`'s diff and the type check name keys through these constants, so
//! a key is spelled once; `raw.rs` (serde) must accept each of them (a test
//! below checks it does).

/// The kind of value a key takes, as an operator would write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Text,
    Bool,
    /// A whole number from 0 to the given maximum.
    Whole(u64),
    Duration,
    /// A TOML array of strings.
    List,
    /// A TOML array of strings, or one comma-separated string.
    ListOrCsv,
    /// `[[tls.sni]]` tables, whose keys are [`SNI`].
    Sni,
    /// A `client_auth` table, whose keys are [`CLIENT_AUTH`].
    ClientAuth,
}

use Kind::*;

const COUNT: Kind = Whole(i64::MAX as u64);
const PORT: Kind = Whole(u16::MAX as u64);

pub const SERVER_PROTOCOL: &str = "server.protocol";
pub const SERVER_HTTPS_LISTEN: &str = "server.https_listen";
pub const SERVER_HTTP_LISTEN: &str = "server.http_listen";
pub const SERVER_PUBLIC_HOST: &str = "server.public_host";
pub const SERVER_PUBLIC_HTTPS_PORT: &str = "server.public_https_port";
pub const SERVER_REDIRECT_STATUS: &str = "server.redirect_status";
pub const SERVER_WORKER_THREADS: &str = "server.worker_threads";
pub const SERVER_PROXY_PROTOCOL: &str = "server.proxy_protocol";
pub const SERVER_PROXY_PROTOCOL_FROM: &str = "server.proxy_protocol_from";
pub const TLS_CERT: &str = "tls.cert";
pub const TLS_KEY: &str = "tls.key";
pub const TLS_PKCS12: &str = "tls.pkcs12";
pub const TLS_PKCS12_PASSWORD_FILE: &str = "tls.pkcs12_password_file";
pub const TLS_SNI: &str = "tls.sni";
pub const TLS_PROTOCOLS: &str = "tls.protocols";
pub const TLS_CIPHER_SUITES: &str = "tls.cipher_suites";
pub const TLS_STRICT_SNI_HOST: &str = "tls.strict_sni_host";
pub const TLS_CLIENT_AUTH: &str = "tls.client_auth";
pub const TLS_CLIENT_AUTH_CA: &str = "tls.client_auth.ca";
pub const TLS_CLIENT_AUTH_MODE: &str = "tls.client_auth.mode";
pub const TLS_CLIENT_AUTH_CRL: &str = "tls.client_auth.crl";
pub const TLS_CLIENT_AUTH_CRL_UNKNOWN: &str = "tls.client_auth.crl_unknown";
pub const TLS_CLIENT_AUTH_FORWARD_HEADER: &str = "tls.client_auth.forward_header";
pub const HSTS_ENABLED: &str = "hsts.enabled";
pub const HSTS_MAX_AGE: &str = "hsts.max_age";
pub const HSTS_INCLUDE_SUBDOMAINS: &str = "hsts.include_subdomains";
pub const HSTS_PRELOAD: &str = "hsts.preload";
pub const UPSTREAM_URL: &str = "upstream.url";
pub const UPSTREAM_CA: &str = "upstream.ca";
pub const UPSTREAM_PIN_SHA256: &str = "upstream.pin_sha256";
pub const UPSTREAM_SERVER_NAME: &str = "upstream.server_name";
pub const UPSTREAM_CONNECT_TIMEOUT: &str = "upstream.connect_timeout";
pub const UPSTREAM_RESPONSE_TIMEOUT: &str = "upstream.response_timeout";
pub const UPSTREAM_POOL_IDLE_TIMEOUT: &str = "upstream.pool_idle_timeout";
pub const UPSTREAM_POOL_MAX_IDLE: &str = "upstream.pool_max_idle";
pub const UPSTREAM_PREFER_HTTP2: &str = "upstream.prefer_http2";
pub const ADMIN_PATHS: &str = "admin.paths";
pub const ADMIN_ALLOWED_IPS: &str = "admin.allowed_ips";
pub const ADMIN_DIRECT_ACCESS: &str = "admin.direct_access";
pub const ADMIN_REQUIRE_CLIENT_CERT: &str = "admin.require_client_cert";
pub const ADMIN_ALLOWED_SUBJECTS: &str = "admin.allowed_subjects";
pub const CLIENT_IP_TRUSTED_PROXIES: &str = "client_ip.trusted_proxies";
pub const CORS_ALLOWED_ORIGINS: &str = "cors.allowed_origins";
pub const CORS_ALLOW_PRIVATE_NETWORK: &str = "cors.allow_private_network";
pub const CORS_ALLOWED_METHODS: &str = "cors.allowed_methods";
pub const CORS_ALLOWED_HEADERS: &str = "cors.allowed_headers";
pub const CORS_MAX_AGE: &str = "cors.max_age";
pub const CORS_ALLOW_CREDENTIALS: &str = "cors.allow_credentials";
pub const OBSERVABILITY_LISTEN: &str = "observability.listen";
pub const LIMITS_HEADER_READ_TIMEOUT: &str = "limits.header_read_timeout";
pub const LIMITS_IDLE_TIMEOUT: &str = "limits.idle_timeout";
pub const LIMITS_MAX_CONNECTIONS: &str = "limits.max_connections";
pub const LIMITS_MAX_HEADER_BYTES: &str = "limits.max_header_bytes";
pub const LIMITS_SHUTDOWN_GRACE: &str = "limits.shutdown_grace";
pub const LIMITS_SEND_TIMEOUT: &str = "limits.send_timeout";
pub const LIMITS_MAX_CONNECTIONS_PER_IP: &str = "limits.max_connections_per_ip";
pub const LIMITS_MAX_BODY_BYTES: &str = "limits.max_body_bytes";
pub const TOKENS_REFUSE_GET_CREDENTIALS: &str = "tokens.refuse_get_credentials";
pub const RELOAD_WATCH: &str = "reload.watch";
pub const RELOAD_SETTLE: &str = "reload.settle";
pub const LOG_FORMAT: &str = "log.format";
pub const LOG_LEVEL: &str = "log.level";

/// Every key, `table.key`, with its kind.
pub(crate) const ALL: &[(&str, Kind)] = &[
    (SERVER_PROTOCOL, Text),
    (SERVER_HTTPS_LISTEN, Text),
    (SERVER_HTTP_LISTEN, Text),
    (SERVER_PUBLIC_HOST, Text),
    (SERVER_PUBLIC_HTTPS_PORT, PORT),
    (SERVER_REDIRECT_STATUS, PORT),
    (SERVER_WORKER_THREADS, COUNT),
    (SERVER_PROXY_PROTOCOL, Text),
    (SERVER_PROXY_PROTOCOL_FROM, ListOrCsv),
    (TLS_CERT, Text),
    (TLS_KEY, Text),
    (TLS_PKCS12, Text),
    (TLS_PKCS12_PASSWORD_FILE, Text),
    (TLS_SNI, Sni),
    (TLS_PROTOCOLS, ListOrCsv),
    (TLS_CIPHER_SUITES, ListOrCsv),
    (TLS_STRICT_SNI_HOST, Bool),
    (TLS_CLIENT_AUTH, ClientAuth),
    (HSTS_ENABLED, Bool),
    (HSTS_MAX_AGE, Duration),
    (HSTS_INCLUDE_SUBDOMAINS, Bool),
    (HSTS_PRELOAD, Bool),
    (UPSTREAM_URL, Text),
    (UPSTREAM_CA, Text),
    (UPSTREAM_PIN_SHA256, List),
    (UPSTREAM_SERVER_NAME, Text),
    (UPSTREAM_CONNECT_TIMEOUT, Duration),
    (UPSTREAM_RESPONSE_TIMEOUT, Duration),
    (UPSTREAM_POOL_IDLE_TIMEOUT, Duration),
    (UPSTREAM_POOL_MAX_IDLE, COUNT),
    (UPSTREAM_PREFER_HTTP2, Bool),
    (ADMIN_PATHS, List),
    (ADMIN_ALLOWED_IPS, ListOrCsv),
    (ADMIN_DIRECT_ACCESS, Bool),
    (ADMIN_REQUIRE_CLIENT_CERT, Bool),
    (ADMIN_ALLOWED_SUBJECTS, List),
    (CLIENT_IP_TRUSTED_PROXIES, ListOrCsv),
    (CORS_ALLOWED_ORIGINS, ListOrCsv),
    (CORS_ALLOW_PRIVATE_NETWORK, Bool),
    (CORS_ALLOWED_METHODS, ListOrCsv),
    (CORS_ALLOWED_HEADERS, ListOrCsv),
    (CORS_MAX_AGE, Duration),
    (CORS_ALLOW_CREDENTIALS, Bool),
    (OBSERVABILITY_LISTEN, Text),
    (LIMITS_HEADER_READ_TIMEOUT, Duration),
    (LIMITS_IDLE_TIMEOUT, Duration),
    (LIMITS_MAX_CONNECTIONS, COUNT),
    (LIMITS_MAX_HEADER_BYTES, COUNT),
    (LIMITS_SHUTDOWN_GRACE, Duration),
    (LIMITS_SEND_TIMEOUT, Duration),
    (LIMITS_MAX_CONNECTIONS_PER_IP, COUNT),
    (LIMITS_MAX_BODY_BYTES, COUNT),
    (TOKENS_REFUSE_GET_CREDENTIALS, Bool),
    (RELOAD_WATCH, Bool),
    (RELOAD_SETTLE, Duration),
    (LOG_FORMAT, Text),
    (LOG_LEVEL, Text),
];

/// `[[access]]`, `[[rate_limit]]` and `[[body_limit]]`: top-level lists
/// of rules, each entry a table with these keys.
pub const ACCESS: &str = "access";
pub const RATE_LIMIT: &str = "rate_limit";
pub const BODY_LIMIT: &str = "body_limit";

pub(crate) const RULES: &[(&str, &[(&str, Kind)])] = &[
    (
        ACCESS,
        &[
            ("name", Text),
            ("paths", List),
            ("methods", List),
            ("f", List),
            ("allow", ListOrCsv),
            ("deny", ListOrCsv),
        ],
    ),
    (
        RATE_LIMIT,
        &[
            ("name", Text),
            ("paths", List),
            ("methods", List),
            ("rate", Text),
            ("burst", Whole(u32::MAX as u64)),
        ],
    ),
    (BODY_LIMIT, &[("paths", List), ("max_bytes", COUNT)]),
];

/// The keys of one `[[tls.sni]]` entry.
pub(crate) const SNI: &[(&str, Kind)] = &[
    ("server_name", Text),
    ("cert", Text),
    ("key", Text),
    ("client_auth", ClientAuth),
];

/// The keys of a `client_auth` table (`tls.client_auth.*`, and the same
/// table in a `[[tls.sni]]` entry), beside the constants above.
pub(crate) const CLIENT_AUTH: &[(&str, Kind)] = &[
    ("ca", Text),
    ("mode", Text),
    ("crl", List),
    ("crl_unknown", Text),
    ("forward_header", Text),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::RawConfig;

    fn sample(kind: Kind) -> &'static str {
        match kind {
            Text => "\"x\"",
            Bool => "true",
            Whole(_) => "1",
            Duration => "\"1s\"",
            List | ListOrCsv => "[\"x\"]",
            Sni => "[{ server_name = \"x\", cert = \"x\", key = \"x\", client_auth = { mode = \"x\" } }]",
            ClientAuth => "{ ca = \"x\", mode = \"x\", crl = [\"x\"], crl_unknown = \"x\", forward_header = \"x\" }",
        }
    }

    #[test]
    fn serde_accepts_every_rule_key_with_a_value_of_its_kind() {
        for (table, keys) in RULES {
            let mut text = format!("[[{table}]]\n");
            for (key, kind) in *keys {
                text.push_str(&format!("{key} = {}\n", sample(*kind)));
            }
            let parsed = toml_edit::de::from_str::<RawConfig>(&text);
            assert!(parsed.is_ok(), "{parsed:?}\n{text}");
        }
    }

    #[test]
    fn every_rule_key_serde_knows_is_listed() {
        for (table, keys) in RULES {
            let text = format!("[[{table}]]\nno_such_key = 1\n");
            let err = toml_edit::de::from_str::<RawConfig>(&text)
                .unwrap_err()
                .to_string();
            let expected = err
                .split("expected one of")
                .nth(1)
                .or_else(|| err.split("expected").nth(1))
                .unwrap_or_else(|| panic!("{err}"));
            let mut serde_keys: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
            let mut listed: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
            serde_keys.sort();
            listed.sort();
            assert_eq!(serde_keys, listed, "[[{table}]]: {err}");
        }
    }

    fn tables() -> Vec<&'static str> {
        let mut out: Vec<&str> = ALL
            .iter()
            .filter_map(|(k, _)| k.split_once('.'))
            .map(|(t, _)| t)
            .collect();
        out.dedup();
        out
    }

    #[test]
    fn serde_accepts_every_key_with_a_value_of_its_kind() {
        let mut text = String::new();
        for table in tables() {
            text.push_str(&format!("[{table}]\n"));
            for (key, kind) in ALL
                .iter()
                .filter(|(k, _)| k.starts_with(&format!("{table}.")))
            {
                let name = &key[table.len() + 1..];
                text.push_str(&format!("{name} = {}\n", sample(*kind)));
            }
        }
        let parsed = toml_edit::de::from_str::<RawConfig>(&text);
        assert!(parsed.is_ok(), "{parsed:?}\n{text}");
    }

    /// serde names every field a table has when it refuses an unknown one:
    /// those must be exactly the keys listed here, so no key is missing.
    #[test]
    fn every_key_serde_knows_is_listed() {
        for table in tables() {
            let text = format!("[{table}]\nno_such_key = 1\n");
            let err = toml_edit::de::from_str::<RawConfig>(&text)
                .unwrap_err()
                .to_string();
            let expected = err.split("expected one of").nth(1).unwrap_or_else(|| {
                err.split("expected")
                    .nth(1)
                    .unwrap_or_else(|| panic!("{err}"))
            });
            let mut serde_keys: Vec<String> = expected
                .split('`')
                .skip(1)
                .step_by(2)
                .map(|k| format!("{table}.{k}"))
                .collect();
            let mut listed: Vec<String> = ALL
                .iter()
                .filter(|(k, _)| k.starts_with(&format!("{table}.")))
                .map(|(k, _)| k.to_string())
                .collect();
            serde_keys.sort();
            listed.sort();
            assert_eq!(serde_keys, listed, "[{table}]: {err}");
        }
    }
}
