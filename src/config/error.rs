//! Config errors that point at the file, line, column and key.

use std::fmt;
use std::ops::Range;

/// One problem in a config file. Displayed as `file:line:col: message`, the
/// shape compilers use, so editors and CI logs can jump to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{}:{}:{}: {}", self.file, line, col, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Every problem found in one config file; validation reports them all at
/// once so an engineer fixes a file in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The config text, parsed once, with where each key is written: errors
/// found after deserialization (a bad CIDR, a missing file, a listener that
/// cannot bind) still carry line:col without parsing the file again.
#[derive(Debug, Clone)]
pub struct Locator {
    text: String,
    doc: Option<toml_edit::Document<String>>,
}

/// Two configs are the same when their text is.
impl PartialEq for Locator {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Locator {
    /// Text that did not parse: positions come from byte offsets only.
    pub fn unparsed(text: &str) -> Self {
        Locator {
            text: text.to_string(),
            doc: None,
        }
    }

    /// A parsed document, which also keeps its text.
    pub fn parsed(doc: toml_edit::Document<String>) -> Self {
        Locator {
            text: doc.raw().to_string(),
            doc: Some(doc),
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn document(&self) -> Option<&toml_edit::Document<String>> {
        self.doc.as_ref()
    }

    /// Line and column (1-based) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    /// Position of a dotted key such as `hsts.enabled` or `tls.sni.1.cert`.
    /// Falls back to the nearest enclosing table that is written down.
    pub fn position(&self, key_path: &str) -> Option<(usize, usize)> {
        let span = self.span(key_path)?;
        Some(self.line_col(span.start))
    }

    fn span(&self, key_path: &str) -> Option<Range<usize>> {
        use toml_edit::{Item, TableLike, Value};
        let doc = self.doc.as_ref()?;
        let parts: Vec<&str> = key_path.split('.').collect();
        let mut table: &dyn TableLike = doc.as_table();
        let mut best = None;
        let mut i = 0;
        while i < parts.len() {
            let Some((key, item)) = table.get_key_value(parts[i]) else {
                break;
            };
            best = key.span().or(best);
            i += 1;
            match item {
                Item::Table(t) => table = t,
                Item::Value(Value::InlineTable(t)) => table = t,
                Item::ArrayOfTables(array) => {
                    // `tls.sni.1.cert`: the number picks the [[tls.sni]] entry.
                    let Some(entry) = parts
                        .get(i)
                        .and_then(|p| p.parse::<usize>().ok())
                        .and_then(|n| array.get(n))
                    else {
                        break;
                    };
                    best = entry.span().or(best);
                    table = entry;
                    i += 1;
                }
                _ => break,
            }
        }
        best
    }
}
