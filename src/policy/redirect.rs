//! The plain-HTTP listener's redirect to HTTPS.
//!
//! The `Location` is built from the client's `Host`, so every piece is
//! validated strictly: a host that smuggles a path, userinfo or a line break
//! would turn the redirect into an open redirect or a header injection.

use thiserror::Error;

use crate::host::HostPort;

/// Why a redirect target could not be built. `Display` never echoes input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum LocationError {
    /// Neither `server.public_host` nor the request names a host.
    #[error("missing host")]
    MissingHost,
    /// The HTTPS port is 0.
    #[error("invalid port")]
    InvalidPort,
    /// The path is not an absolute path of visible ASCII.
    #[error("invalid path")]
    InvalidPath,
    /// The query contains a character that is not visible ASCII, or `#`.
    #[error("invalid query")]
    InvalidQuery,
}

/// Builds `https://HOST[:PORT]PATH[?QUERY]` for the HTTP-to-HTTPS redirect.
///
/// * HOST is `public_host` when configured, otherwise the host part of
///   `request_host` (the `Host` header or absolute-form authority); the
///   request's port is always dropped, since it is the plain-HTTP port.
///   Both were validated when parsed ([`HostPort`]); no host at all is an
///   error.
/// * PORT is the port written in `public_host` if it has one, otherwise
///   `https_port`; it is omitted when it is 443.
/// * PATH must be a canonical path (see
///   [`canonical_path`](crate::policy::path::canonical_path)); it is checked
///   again to start with `/` (a path such as `@evil.com` would otherwise
///   change the authority) and to be visible ASCII.
/// * QUERY (without the `?`) is passed through; it must be visible ASCII
///   without `#`. `Some("")` keeps a bare `?`.
pub fn https_location(
    public_host: Option<&HostPort>,
    request_host: Option<&HostPort>,
    https_port: u16,
    path: &str,
    query: Option<&str>,
) -> Result<String, LocationError> {
    let (host, port) = match (public_host, request_host) {
        (Some(public), _) => (public.host(), public.port().unwrap_or(https_port)),
        (None, Some(request)) => (request.host(), https_port),
        (None, None) => return Err(LocationError::MissingHost),
    };
    if port == 0 {
        return Err(LocationError::InvalidPort);
    }
    if !path.starts_with('/') || !path.bytes().all(is_visible_ascii) {
        return Err(LocationError::InvalidPath);
    }
    if let Some(query) = query {
        if !query.bytes().all(|b| is_visible_ascii(b) && b != b'#') {
            return Err(LocationError::InvalidQuery);
        }
    }

    let mut location = String::with_capacity(
        "https://".len() + host.len() + 6 + path.len() + query.map_or(0, |q| q.len() + 1),
    );
    location.push_str("https://");
    location.push_str(host);
    if port != 443 {
        location.push(':');
        location.push_str(&port.to_string());
    }
    location.push_str(path);
    if let Some(query) = query {
        location.push('?');
        location.push_str(query);
    }
    Ok(location)
}

/// Visible ASCII (`VCHAR`, RFC 5234): excludes space, controls, CR, LF and
/// anything non-ASCII.
fn is_visible_ascii(b: u8) -> bool {
    (0x21..=0x7E).contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(authority: &str) -> HostPort {
        HostPort::parse(authority).unwrap()
    }

    #[test]
    fn location_uses_the_request_host_and_omits_port_443() {
        assert_eq!(
            https_location(
                None,
                Some(&host("gis.example.com:80")),
                443,
                "/arcgis/rest",
                None
            ),
            Ok("https://gis.example.com/arcgis/rest".to_string())
        );
    }

    #[test]
    fn location_carries_a_non_default_https_port() {
        assert_eq!(
            https_location(
                None,
                Some(&host("gis.example.com")),
                8443,
                "/",
                Some("f=json")
            ),
            Ok("https://gis.example.com:8443/?f=json".to_string())
        );
    }

    #[test]
    fn location_keeps_ipv6_brackets() {
        assert_eq!(
            https_location(None, Some(&host("[2001:db8::1]:80")), 443, "/a", None),
            Ok("https://[2001:db8::1]/a".to_string())
        );
        assert_eq!(
            https_location(None, Some(&host("[::1]")), 8443, "/a", None),
            Ok("https://[::1]:8443/a".to_string())
        );
    }

    #[test]
    fn public_host_overrides_the_request_host() {
        assert_eq!(
            https_location(
                Some(&host("gis.example.com")),
                Some(&host("evil.com")),
                443,
                "/a",
                None
            ),
            Ok("https://gis.example.com/a".to_string())
        );
        assert_eq!(
            https_location(Some(&host("gis.example.com")), None, 443, "/a", None),
            Ok("https://gis.example.com/a".to_string())
        );
    }

    #[test]
    fn port_written_in_public_host_wins_over_https_port() {
        assert_eq!(
            https_location(Some(&host("gis.example.com:9443")), None, 443, "/a", None),
            Ok("https://gis.example.com:9443/a".to_string())
        );
        assert_eq!(
            https_location(Some(&host("gis.example.com:443")), None, 8443, "/a", None),
            Ok("https://gis.example.com/a".to_string())
        );
    }

    #[test]
    fn missing_host_is_an_error() {
        assert_eq!(
            https_location(None, None, 443, "/", None),
            Err(LocationError::MissingHost)
        );
    }

    #[test]
    fn attack_hosts_never_become_a_location() {
        // They never become a `HostPort`, the only host a Location takes.
        for bad in [
            "evil.com/x",
            "a@b",
            "good.com\r\nX: y",
            "good.com evil.com",
            "",
        ] {
            assert!(HostPort::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn path_that_is_not_absolute_is_rejected() {
        assert_eq!(
            https_location(None, Some(&host("good.com")), 443, "@evil.com/", None),
            Err(LocationError::InvalidPath)
        );
        assert_eq!(
            https_location(None, Some(&host("good.com")), 443, "/a b", None),
            Err(LocationError::InvalidPath)
        );
    }

    #[test]
    fn query_with_line_breaks_or_spaces_is_rejected() {
        for bad in [
            "a=1\r\nSet-Cookie: x",
            "a=1 b",
            "a=\u{e9}",
            "a=1#frag",
            "a=\t",
        ] {
            assert_eq!(
                https_location(None, Some(&host("good.com")), 443, "/", Some(bad)),
                Err(LocationError::InvalidQuery),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn empty_query_keeps_the_question_mark() {
        assert_eq!(
            https_location(None, Some(&host("good.com")), 443, "/a", Some("")),
            Ok("https://good.com/a?".to_string())
        );
    }

    #[test]
    fn zero_https_port_is_rejected() {
        assert_eq!(
            https_location(None, Some(&host("good.com")), 0, "/", None),
            Err(LocationError::InvalidPort)
        );
    }
}
