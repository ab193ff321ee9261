//! `tokens.refuse_get_credentials`: ArcGIS's own security scan flags
//! sign-in requests made with GET, because the user name and password in
//! the query end up in logs, proxies and browser history. Such a request
//! is refused before it reaches the upstream.

use http::Method;

use super::params;
use super::prefixes::{FoldedPath, PathPrefixes};

/// The ArcGIS sign-in endpoints. `/arcgis/tokens` covers
/// `/arcgis/tokens/generateToken` and the legacy `/arcgis/tokens/?request=getToken`.
pub const SIGN_IN_PATHS: [&str; 5] = [
    "/arcgis/tokens",
    "/arcgis/admin/generateToken",
    "/arcgis/admin/login",
    "/arcgis/sharing/rest/generateToken",
    "/arcgis/login",
];

#[derive(Debug, Clone)]
pub struct CredentialsInUrl {
    sign_in: PathPrefixes,
    refuse: bool,
}

impl CredentialsInUrl {
    pub fn new(refuse: bool) -> Self {
        let paths: Vec<String> = SIGN_IN_PATHS.iter().map(|s| s.to_string()).collect();
        Self {
            sign_in: PathPrefixes::new(&paths),
            refuse,
        }
    }

    /// Whether a request is a sign-in by GET (or HEAD) carrying a password
    /// in its query, and refused.
    pub fn refused(&self, method: &Method, path: &FoldedPath<'_>, query: Option<&str>) -> bool {
        self.refuse
            && (method == Method::GET || method == Method::HEAD)
            && query.is_some_and(|q| params::has(q, "password"))
            && self.sign_in.matches_folded(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_get_sign_in_with_a_password_is_refused() {
        let c = CredentialsInUrl::new(true);
        for path in [
            "/arcgis/tokens/generateToken",
            "/arcgis/tokens/",
            "/arcgis/admin/generateToken",
            "/arcgis/admin/login",
            "/arcgis/sharing/rest/generateToken",
            "/arcgis/login",
            "/ARCGIS/Tokens/GenerateToken",
        ] {
            assert!(
                c.refused(
                    &Method::GET,
                    &FoldedPath::new(path),
                    Some("username=a&password=b&f=json")
                ),
                "{path}"
            );
        }
    }

    #[test]
    fn a_post_a_get_without_password_or_elsewhere_passes() {
        let c = CredentialsInUrl::new(true);
        let q = Some("username=a&password=b");
        assert!(!c.refused(
            &Method::POST,
            &FoldedPath::new("/arcgis/tokens/generateToken"),
            q
        ));
        assert!(!c.refused(
            &Method::GET,
            &FoldedPath::new("/arcgis/tokens/generateToken"),
            Some("f=json")
        ));
        assert!(!c.refused(
            &Method::GET,
            &FoldedPath::new("/arcgis/tokens/generateToken"),
            None
        ));
        assert!(!c.refused(&Method::GET, &FoldedPath::new("/arcgis/rest/services"), q));
    }

    #[test]
    fn switched_off_nothing_is_refused() {
        let c = CredentialsInUrl::new(false);
        assert!(!c.refused(
            &Method::GET,
            &FoldedPath::new("/arcgis/login"),
            Some("password=b")
        ));
    }
}
