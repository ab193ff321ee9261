//! Canonical-path prefixes as `admin.paths` matches them, shared by every
//! rule that names paths (`admin.paths`, `[[access]]`, `[[rate_limit]]`,
//! `[[body_limit]]`), so all of them agree on what a path is under.

use std::borrow::Cow;

use crate::policy::path::canonical_path;

/// A canonical path ASCII-lowercased once per request, so that every
/// rule's prefixes compare with it byte for byte (a `memcmp`) instead of
/// folding case again for each prefix of each rule.
#[derive(Debug, Clone)]
pub struct FoldedPath<'a>(Cow<'a, str>);

impl<'a> FoldedPath<'a> {
    /// `canonical`: an output of [`canonical_path`]. Borrowed when it has
    /// no upper-case letter (most requests).
    pub fn new(canonical: &'a str) -> Self {
        match canonical.bytes().any(|b| b.is_ascii_uppercase()) {
            true => Self(Cow::Owned(canonical.to_ascii_lowercase())),
            false => Self(Cow::Borrowed(canonical)),
        }
    }
}

/// A set of canonical-path prefixes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PathPrefixes {
    /// Lower-case canonical prefixes without a trailing `/`; `""` (from a
    /// configured `/`) covers every path.
    prefixes: Vec<String>,
}

impl PathPrefixes {
    /// Each prefix is passed through [`canonical_path`] (so `/arcgis//admin`
    /// or `/arcgis/%61dmin` in configuration still work), lower-cased and
    /// has trailing `/` trimmed; `/` therefore means every path. A prefix
    /// that is not a valid path is kept lower-cased as written: it can then
    /// only match nothing, so configuration loading should reject it with
    /// [`canonical_path`] beforehand.
    pub fn new(prefixes: &[String]) -> Self {
        let prefixes = prefixes
            .iter()
            .map(|p| {
                let mut p = canonical_path(p).unwrap_or_else(|_| p.clone());
                p.make_ascii_lowercase();
                let trimmed = p.trim_end_matches('/').len();
                p.truncate(trimmed);
                p
            })
            .collect();
        Self { prefixes }
    }

    /// Whether `canonical` (an output of [`canonical_path`]) lies under one
    /// of the prefixes. ASCII case-insensitive, because the upstream (and
    /// the Windows file system under it) may treat `/arcgis/ADMIN` as
    /// `/arcgis/admin`.
    ///
    /// The prefix must end at a segment boundary: `/arcgis/admin` and
    /// `/arcgis/admin/x` match, `/arcgis/adminx` does not. To fail closed,
    /// the boundary is any byte other than a letter, digit, `-`, `_` or `~`:
    /// `/arcgis/admin.`, `/arcgis/admin%20`, `/arcgis/admin:x` or
    /// `/arcgis/admin%3B` also match, because some upstream layer
    /// (Windows name trimming, `::$DATA` streams, a second decoding pass)
    /// might read them as the resource the prefix names.
    pub fn matches(&self, canonical: &str) -> bool {
        let path = canonical.as_bytes();
        self.prefixes.iter().any(|prefix| {
            let prefix = prefix.as_bytes();
            path.len() >= prefix.len()
                && path[..prefix.len()].eq_ignore_ascii_case(prefix)
                && path
                    .get(prefix.len())
                    .is_none_or(|&b| !is_name_continuation(b))
        })
    }
}

impl PathPrefixes {
    /// [`matches`](Self::matches) for a path folded once per request.
    pub fn matches_folded(&self, path: &FoldedPath<'_>) -> bool {
        let path = path.0.as_bytes();
        self.prefixes.iter().any(|prefix| {
            let prefix = prefix.as_bytes();
            path.starts_with(prefix)
                && path
                    .get(prefix.len())
                    .is_none_or(|&b| !is_name_continuation(b))
        })
    }
}

/// Bytes that continue a name, so a prefix followed by one of them is a
/// different name (`admin` vs `adminx`, `admin-tools`, `admin_2`).
fn is_name_continuation(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~')
}

/// What a rule applies to: path prefixes and, optionally, methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    paths: PathPrefixes,
    /// Empty: every method.
    methods: Vec<http::Method>,
}

impl Scope {
    pub fn new(paths: &[String], methods: &[http::Method]) -> Self {
        Self {
            paths: PathPrefixes::new(paths),
            methods: methods.to_vec(),
        }
    }

    /// Whether a request for `path` with `method` is in scope.
    pub fn applies(&self, path: &FoldedPath<'_>, method: &http::Method) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && self.paths.matches_folded(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn scope(paths: &[&str], methods: &[Method]) -> Scope {
        let paths: Vec<String> = paths.iter().map(|s| s.to_string()).collect();
        Scope::new(&paths, methods)
    }

    #[test]
    fn a_scope_matches_as_admin_paths_do() {
        let s = scope(&["/arcgis/help"], &[]);
        let applies = |p: &str, m: &Method| s.applies(&FoldedPath::new(p), m);
        assert!(applies("/arcgis/help", &Method::GET));
        assert!(applies("/ARCGIS/Help/en/index.html", &Method::POST));
        assert!(applies("/arcgis/help.", &Method::GET));
        assert!(!applies("/arcgis/helpers", &Method::GET));
        assert!(!applies("/arcgis", &Method::GET));
    }

    #[test]
    fn a_scope_with_methods_applies_to_those_only() {
        let s = scope(&["/arcgis/login"], &[Method::POST]);
        assert!(s.applies(&FoldedPath::new("/arcgis/LOGIN"), &Method::POST));
        assert!(!s.applies(&FoldedPath::new("/arcgis/login"), &Method::GET));
    }
}
