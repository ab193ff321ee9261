//! The type of every value in the file, checked key by key before serde
//! sees it, so that all wrongly typed values are reported at once and in an
//! operator's words (`expected true or false, found the string "yes"`), not
//! serde's first one in Rust's (`invalid type: string, expected a boolean`).
//!
//! The keys and their kinds are `keys.rs`; serde (`raw.rs`) refuses any
//! other key.

use toml_edit::{Item, TableLike, Value};

use super::keys::{self, Kind, Kind::*};

/// Every wrongly typed value, as (dotted key, message without the key), in
/// file order of the schema.
pub fn type_errors(loc: &super::error::Locator) -> Vec<(String, String)> {
    let Some(doc) = loc.document() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let root = doc.as_table();
    let mut not_tables: Vec<&str> = Vec::new();
    for &(dotted, kind) in keys::ALL {
        let Some((table, key)) = dotted.split_once('.') else {
            continue;
        };
        let Some(item) = root.get(table) else {
            continue;
        };
        match item.as_table_like() {
            Some(t) => check_key(table, t, key, kind, &mut out),
            None if !not_tables.contains(&table) => {
                not_tables.push(table);
                out.push((
                    table.to_string(),
                    format!("expected a table [{table}], found {}", found_item(item)),
                ));
            }
            None => {}
        }
    }
    for &(table, rule_keys) in keys::RULES {
        match root.get(table) {
            None => {}
            Some(Item::ArrayOfTables(entries)) => {
                for (i, entry) in entries.iter().enumerate() {
                    for &(key, kind) in rule_keys {
                        check_key(&format!("{table}.{i}"), entry, key, kind, &mut out);
                    }
                }
            }
            Some(other) => out.push((
                table.to_string(),
                format!("expected [[{table}]] tables, found {}", found_item(other)),
            )),
        }
    }
    out
}

fn check_key(
    prefix: &str,
    table: &dyn TableLike,
    key: &str,
    kind: Kind,
    out: &mut Vec<(String, String)>,
) {
    let Some(item) = table.get(key) else {
        return;
    };
    let path = format!("{prefix}.{key}");
    if let Kind::Sni = kind {
        match item {
            Item::ArrayOfTables(entries) => {
                for (i, entry) in entries.iter().enumerate() {
                    for &(sni_key, sni_kind) in keys::SNI {
                        check_key(&format!("{path}.{i}"), entry, sni_key, sni_kind, out);
                    }
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
        return;
    }
    if let Kind::ClientAuth = kind {
        match item.as_table_like() {
            Some(t) => {
                for &(auth_key, auth_kind) in keys::CLIENT_AUTH {
                    check_key(&path, t, auth_key, auth_kind, out);
                }
            }
            None => out.push((
                path,
                format!(
                    "expected a table [{prefix}.{key}], found {}",
                    found_item(item)
                ),
            )),
        }
        return;
    }
    if let Some(message) = mismatch(kind, item) {
        out.push((path, message));
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
        ClientAuth => "expected a table".into(),
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
