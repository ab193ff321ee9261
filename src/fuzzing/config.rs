//! `gateway.toml`: parsing and validation from text.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::config::{parse, Settings};

/// The input is a config file's text (files that are not UTF-8 cannot be
/// read as one). The files it may name under `certs/` (the sample's) exist,
/// empty, beside it. Checked:
/// - a refused config gets at least one error, each with a message and
///   any position inside the text (line and column from 1);
/// - a config that validates still validates to the same settings when
///   rewritten in TOML's normal form (serialised back from its value): the
///   settings depend on what the file says, not on how it is written.
pub fn config_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = sandbox().join("gateway.toml");
    match parse(text, &path, "gateway.toml") {
        Err(errors) => {
            assert!(!errors.0.is_empty(), "refused without a reason");
            for e in &errors.0 {
                assert!(!e.message.is_empty());
                if let Some(position) = e.position {
                    assert_inside(text, position, &e.message);
                }
            }
        }
        Ok(settings) => assert_round_trip(text, settings, &path),
    }
}

fn assert_inside(text: &str, (line, col): (usize, usize), message: &str) {
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(
        (1..=lines.len()).contains(&line),
        "line {line} of {}: {message}",
        lines.len()
    );
    let width = lines[line - 1].chars().count();
    assert!(
        (1..=width + 1).contains(&col),
        "column {col} of {width} on line {line}: {message}"
    );
}

fn assert_round_trip(text: &str, settings: Settings, path: &Path) {
    // Through plain data and back: TOML's normal form (the config holds no
    // dates, which JSON's data model would lose).
    let value: serde_json::Value = toml_edit::de::from_str(text).expect("a valid config is TOML");
    let rewritten = toml_edit::ser::to_string(&value).expect("a TOML table serialises");
    let again = parse(&rewritten, path, "gateway.toml")
        .unwrap_or_else(|e| panic!("validates, but not as {rewritten:?}: {e}"));
    assert_eq!(
        without_source(again),
        without_source(settings),
        "rewritten as {rewritten:?}"
    );
}

fn without_source(mut s: Settings) -> Settings {
    s.source = std::sync::Arc::new(crate::config::Locator::unparsed(""));
    s
}

/// A directory holding the sample's certificate files (empty: validation
/// only checks that they are files), shared by every run on this machine.
fn sandbox() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join("gisgate-fuzz");
        let certs = dir.join("certs");
        std::fs::create_dir_all(&certs).expect("temp dir");
        for name in crate::devpki::FILES {
            let file = certs.join(name);
            if !file.is_file() {
                std::fs::write(&file, b"").expect("temp file");
            }
        }
        dir
    })
}

/// The shared directory, for the certificate target's files.
pub(super) fn scratch_dir() -> &'static Path {
    sandbox()
}
