//! The type of every value in the file, checked key by key before serde
//! sees it, so that all wrongly typed values are reported at once and in an
//! operator's words (`expected true or false, found the string "yes"`), not
//! serde's first one in Rust's (`invalid type: string, expected a boolean`).
//!
//! Keys not listed here are left to serde (`raw.rs`), which refuses unknown
//! ones; this list only has to agree with `raw.rs` on the types it names.

use toml_edit::{Item, TableLike, Value};

#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Bool,
    /// A whole number from 0 to the given maximum.
    Whole(u64),
    Duration,
    /// A TOML array of strings.
    List,
    /// A TOML array of strings, or one comma-separated string.
    ListOrCsv,
    /// `[[tls.sni]]` tables.
    Sni,
}

use Kind::*;

const COUNT: Kind = Whole(i64::MAX as u64);
const PORT: Kind = Whole(u16::MAX as u64);

const SCHEMA: &[(&str, &[(&str, Kind)])] = &[
    (
        "server",
        &[
            ("protocol", Text),
            ("https_listen", Text),
            ("http_listen", Text),
            ("public_host", Text),
            ("public_https_port", PORT),
            ("redirect_status", PORT),
            ("worker_threads", COUNT),
        ],
    ),
    (
        "tls",
        &[
            ("cert", Text),
            ("key", Text),
            ("sni", Sni),
            ("protocols", ListOrCsv),
            ("cipher_suites", ListOrCsv),
        ],
    ),
    (
        "hsts",
        &[
            ("enabled", Bool),
            ("max_age", Duration),
            ("include_subdomains", Bool),
            ("preload", Bool),
        ],
    ),
    (
        "upstream",
        &[
            ("url", Text),
            ("ca", Text),
            ("pin_sha256", List),
            ("server_name", Text),
            ("connect_timeout", Duration),
            ("response_timeout", Duration),
            ("pool_idle_timeout", Duration),
            ("pool_max_idle", COUNT),
            ("prefer_http2", Bool),
        ],
    ),
    (
        "admin",
        &[
            ("paths", List),
            ("allowed_ips", ListOrCsv),
            ("direct_access", Bool),
        ],
    ),
    ("client_ip", &[("trusted_proxies", ListOrCsv)]),
    (
        "cors",
        &[
            ("allowed_origins", ListOrCsv),
            ("allow_private_network", Bool),
            ("allowed_methods", ListOrCsv),
            ("allowed_headers", ListOrCsv),
            ("max_age", Duration),
            ("allow_credentials", Bool),
        ],
    ),
    ("observability", &[("listen", Text)]),
    (
        "limits",
        &[
            ("header_read_timeout", Duration),
            ("idle_timeout", Duration),
            ("max_connections", COUNT),
            ("max_header_bytes", COUNT),
            ("shutdown_grace", Duration),
            ("send_timeout", Duration),
        ],
    ),
    ("reload", &[("watch", Bool), ("settle", Duration)]),
    ("log", &[("format", Text), ("level", Text)]),
];

const SNI: &[(&str, Kind)] = &[("server_name", Text), ("cert", Text), ("key", Text)];

/// Every wrongly typed value, as (dotted key, message without the key), in
/// file order of the schema.
pub fn type_errors(loc: &super::error::Locator) -> Vec<(String, String)> {
    let Some(doc) = loc.document() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let root = doc.as_table();
    for (table, keys) in SCHEMA {
        let Some(item) = root.get(table) else {
            continue;
        };
        match item.as_table_like() {
            Some(t) => check_table(table, t, keys, &mut out),
            None => out.push((
                table.to_string(),
                format!("expected a table [{table}], found {}", found_item(item)),
            )),
        }
    }
    out
}

fn check_table(
    prefix: &str,
    table: &dyn TableLike,
    keys: &[(&str, Kind)],
    out: &mut Vec<(String, String)>,
) {
    for (key, kind) in keys {
        let Some(item) = table.get(key) else {
            continue;
        };
        let path = format!("{prefix}.{key}");
        if let Kind::Sni = kind {
            match item {
                Item::ArrayOfTables(entries) => {
                    for (i, entry) in entries.iter().enumerate() {
                        check_table(&format!("{path}.{i}"), entry, SNI, out);
                    }
                }
                other => out.push((
                    path,
                    format!(
                        "expected [[{prefix}.{key}]] tables, found {}",
                        found_item(other)
                    ),
                )),
            }
            continue;
        }
        if let Some(message) = mismatch(*kind, item) {
            out.push((path, message));
        }
    }
}

fn expected(kind: Kind) -> String {
    match kind {
        Text => "expected a string".into(),
        Bool => "expected true or false".into(),
        Whole(max) if max == u16::MAX as u64 => "expected a whole number from 0 to 65535".into(),
        Whole(_) => "expected a whole number".into(),
        Duration => "expected a string such as \"10s\"".into(),
        List => "expected a list such as [\"a\", \"b\"]".into(),
        ListOrCsv => "expected a list such as [\"a\", \"b\"] or a comma-separated string".into(),
        Sni => "expected tables".into(),
    }
}

/// What is wrong with `item` for `kind`, if anything.
fn mismatch(kind: Kind, item: &Item) -> Option<String> {
    let Item::Value(value) = item else {
        return Some(format!("{}, found {}", expected(kind), found_item(item)));
    };
    let fits = match (kind, value) {
        (Text | Duration, Value::String(_)) => true,
        (Bool, Value::Boolean(_)) => true,
        (Whole(max), Value::Integer(i)) => (0..=max as i64).contains(i.value()),
        (ListOrCsv, Value::String(_)) => true,
        (List | ListOrCsv, Value::Array(items)) => {
            if let Some(bad) = items.iter().find(|v| !matches!(v, Value::String(_))) {
                return Some(format!(
                    "{}, found {} in the list",
                    expected(kind),
                    found(bad)
                ));
            }
            true
        }
        _ => false,
    };
    (!fits).then(|| format!("{}, found {}", expected(kind), found(value)))
}

fn found_item(item: &Item) -> String {
    match item {
        Item::Value(v) => found(v),
        Item::Table(_) => "a table".into(),
        Item::ArrayOfTables(_) => "a list of tables".into(),
        Item::None => "nothing".into(),
    }
}

fn found(value: &Value) -> String {
    match value {
        Value::String(s) => format!("the string {:?}", s.value()),
        Value::Integer(i) => format!("the number {}", i.value()),
        Value::Float(f) => format!("the number {}", f.value()),
        Value::Boolean(b) => b.value().to_string(),
        Value::Datetime(d) => format!("the date {}", d.value()),
        Value::Array(_) => "a list".into(),
        Value::InlineTable(_) => "a table".into(),
    }
}
