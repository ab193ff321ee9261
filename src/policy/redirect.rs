//! The plain-HTTP listener's redirect to HTTPS.
//!
//! The `Location` is built from the client's `Host`, so every piece is
//! validated strictly: a host that smuggles a path, userinfo or a line break
//! would turn the redirect into an open redirect or a header injection.

use std::net::{Ipv4Addr, Ipv6Addr};

use thiserror::Error;

/// Why a redirect target could not be built. `Display` never echoes input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HostError {
    /// No host at all (empty authority, or none available).
    #[error("missing host")]
    MissingHost,
    /// A character that is not allowed in a host name.
    #[error("invalid character in host")]
    InvalidCharacter,
    /// An empty or over-long label, or an over-long name.
    #[error("invalid host name")]
    InvalidName,
    /// A numeric host that is not a dotted-quad IPv4 address.
    #[error("invalid IPv4 address")]
    InvalidIpv4,
    /// A bracketed host that is not an IPv6 address.
    #[error("invalid IPv6 address")]
    InvalidIpv6,
    /// A port that is empty, not decimal, 0 or above 65535.
    #[error("invalid port")]
    InvalidPort,
    /// The path is not an absolute path of visible ASCII.
    #[error("invalid path")]
    InvalidPath,
    /// The query contains a character that is not visible ASCII, or `#`.
    #[error("invalid query")]
    InvalidQuery,
}

/// Splits and validates an authority `host[:port]`.
///
/// The host is a reg-name (ASCII letters, digits, `-`, `.`, `_`; non-empty
/// labels of at most 63 bytes; at most 253 bytes in all), a dotted-quad IPv4
/// address, or an IPv6 address in brackets. The returned host keeps the
/// brackets, so it can be put into a URL as is. A name whose last label is
/// numeric must be a valid dotted-quad IPv4 address (`2130706433` and
/// `0x7f.1` are refused), because URL parsers read such names as IPv4
/// (WHATWG URL "ends in a number"). Userinfo, paths, whitespace, `%`,
/// trailing dots, zone identifiers and bare IPv6 are all refused.
///
/// The port, when present, is 1 to 5 decimal digits with a value in
/// 1..=65535.
pub fn parse_host(authority: &str) -> Result<(&str, Option<u16>), HostError> {
    if authority.is_empty() {
        return Err(HostError::MissingHost);
    }
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']').ok_or(HostError::InvalidIpv6)?;
        let (host, rest) = authority.split_at(close + 1);
        if host[1..close].parse::<Ipv6Addr>().is_err() {
            return Err(HostError::InvalidIpv6);
        }
        let port = match rest {
            "" => None,
            _ => Some(rest.strip_prefix(':').ok_or(HostError::InvalidPort)?),
        };
        (host, port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        validate_reg_name(host)?;
        (host, port)
    };
    let port = port.map(parse_port).transpose()?;
    Ok((host, port))
}

fn validate_reg_name(host: &str) -> Result<(), HostError> {
    if host.is_empty() {
        return Err(HostError::MissingHost);
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(HostError::InvalidCharacter);
    }
    if host.len() > 253 {
        return Err(HostError::InvalidName);
    }
    let mut last_label = "";
    for label in host.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(HostError::InvalidName);
        }
        last_label = label;
    }
    if last_label.bytes().all(|b| b.is_ascii_digit()) && host.parse::<Ipv4Addr>().is_err() {
        return Err(HostError::InvalidIpv4);
    }
    Ok(())
}

fn parse_port(s: &str) -> Result<u16, HostError> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HostError::InvalidPort);
    }
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(HostError::InvalidPort),
        Ok(port) => Ok(port),
    }
}

/// Builds `https://HOST[:PORT]PATH[?QUERY]` for the HTTP-to-HTTPS redirect.
///
/// * HOST is `public_host` when configured, otherwise the host part of
///   `request_authority` (the `Host` header or absolute-form authority); the
///   request's port is always dropped, since it is the plain-HTTP port.
///   Both are validated with [`parse_host`]; no host at all is an error.
/// * PORT is the port written in `public_host` if it has one, otherwise
///   `https_port`; it is omitted when it is 443.
/// * PATH must be a canonical path (see
///   [`canonical_path`](crate::policy::path::canonical_path)); it is checked
///   again to start with `/` (a path such as `@evil.com` would otherwise
///   change the authority) and to be visible ASCII.
/// * QUERY (without the `?`) is passed through; it must be visible ASCII
///   without `#`. `Some("")` keeps a bare `?`.
pub fn https_location(
    public_host: Option<&str>,
    request_authority: Option<&str>,
    https_port: u16,
    path: &str,
    query: Option<&str>,
) -> Result<String, HostError> {
    let (host, port) = match public_host {
        Some(public) => {
            let (host, port) = parse_host(public)?;
            (host, port.unwrap_or(https_port))
        }
        None => {
            let authority = request_authority.ok_or(HostError::MissingHost)?;
            (parse_host(authority)?.0, https_port)
        }
    };
    if port == 0 {
        return Err(HostError::InvalidPort);
    }
    if !path.starts_with('/') || !path.bytes().all(is_visible_ascii) {
        return Err(HostError::InvalidPath);
    }
    if let Some(query) = query {
        if !query.bytes().all(|b| is_visible_ascii(b) && b != b'#') {
            return Err(HostError::InvalidQuery);
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

    #[test]
    fn plain_host_is_accepted() {
        assert_eq!(parse_host("gis.example.com"), Ok(("gis.example.com", None)));
        assert_eq!(parse_host("my_host-1"), Ok(("my_host-1", None)));
    }

    #[test]
    fn host_with_port_is_split() {
        assert_eq!(
            parse_host("gis.example.com:8080"),
            Ok(("gis.example.com", Some(8080)))
        );
        assert_eq!(parse_host("a:65535"), Ok(("a", Some(65535))));
    }

    #[test]
    fn dotted_ipv4_is_accepted() {
        assert_eq!(parse_host("192.0.2.1:80"), Ok(("192.0.2.1", Some(80))));
    }

    #[test]
    fn bracketed_ipv6_is_accepted_with_its_brackets() {
        assert_eq!(parse_host("[2001:db8::1]"), Ok(("[2001:db8::1]", None)));
        assert_eq!(parse_host("[::1]:8443"), Ok(("[::1]", Some(8443))));
    }

    #[test]
    fn open_redirect_and_injection_hosts_are_rejected() {
        for bad in [
            "evil.com/x",
            "a@b",
            "user:pass@evil.com",
            "good.com\r\nSet-Cookie: x=1",
            "good.com\n",
            "good .com",
            "good.com\t",
            "good.com\\evil.com",
            "good.com?x",
            "good.com#x",
            "good%2ecom",
            "evil.com%2f",
            "",
            ":443",
        ] {
            assert!(parse_host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_ports_are_rejected() {
        for bad in [
            "a:", "a:0", "a:65536", "a:99999", "a:123456", "a:+80", "a:8a", "a:1:2",
        ] {
            assert_eq!(parse_host(bad), Err(HostError::InvalidPort), "{bad:?}");
        }
        assert_eq!(parse_host("[::1]:"), Err(HostError::InvalidPort));
        assert_eq!(parse_host("[::1]x"), Err(HostError::InvalidPort));
    }

    #[test]
    fn bracket_without_a_valid_ipv6_is_rejected() {
        for bad in [
            "[",
            "[::1",
            "[evil.com]",
            "[192.0.2.1]",
            "[fe80::1%25eth0]",
            "[]",
        ] {
            assert!(parse_host(bad).is_err(), "{bad:?}");
        }
        // Bare IPv6 is ambiguous with `host:port` and never accepted.
        assert!(parse_host("::1").is_err());
        assert!(parse_host("2001:db8::1").is_err());
    }

    #[test]
    fn malformed_names_are_rejected() {
        assert_eq!(parse_host("a..b"), Err(HostError::InvalidName));
        assert_eq!(parse_host(".a"), Err(HostError::InvalidName));
        assert_eq!(parse_host("a."), Err(HostError::InvalidName));
        assert_eq!(parse_host(&"a".repeat(64)), Err(HostError::InvalidName));
        let long = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(63),
        ]
        .join(".");
        assert_eq!(parse_host(&long), Err(HostError::InvalidName));
    }

    #[test]
    fn numeric_names_that_are_not_dotted_quads_are_rejected() {
        assert_eq!(parse_host("2130706433"), Err(HostError::InvalidIpv4));
        assert_eq!(parse_host("0x7f.1"), Err(HostError::InvalidIpv4));
        assert_eq!(parse_host("192.0.2.256"), Err(HostError::InvalidIpv4));
        assert_eq!(parse_host("010.0.0.1"), Err(HostError::InvalidIpv4));
        assert_eq!(parse_host("host.1a"), Ok(("host.1a", None)));
    }

    #[test]
    fn location_uses_the_request_host_and_omits_port_443() {
        assert_eq!(
            https_location(None, Some("gis.example.com:80"), 443, "/arcgis/rest", None),
            Ok("https://gis.example.com/arcgis/rest".to_string())
        );
    }

    #[test]
    fn location_carries_a_non_default_https_port() {
        assert_eq!(
            https_location(None, Some("gis.example.com"), 8443, "/", Some("f=json")),
            Ok("https://gis.example.com:8443/?f=json".to_string())
        );
    }

    #[test]
    fn location_keeps_ipv6_brackets() {
        assert_eq!(
            https_location(None, Some("[2001:db8::1]:80"), 443, "/a", None),
            Ok("https://[2001:db8::1]/a".to_string())
        );
        assert_eq!(
            https_location(None, Some("[::1]"), 8443, "/a", None),
            Ok("https://[::1]:8443/a".to_string())
        );
    }

    #[test]
    fn public_host_overrides_the_request_host() {
        assert_eq!(
            https_location(Some("gis.example.com"), Some("evil.com"), 443, "/a", None),
            Ok("https://gis.example.com/a".to_string())
        );
        assert_eq!(
            https_location(Some("gis.example.com"), None, 443, "/a", None),
            Ok("https://gis.example.com/a".to_string())
        );
    }

    #[test]
    fn port_written_in_public_host_wins_over_https_port() {
        assert_eq!(
            https_location(Some("gis.example.com:9443"), None, 443, "/a", None),
            Ok("https://gis.example.com:9443/a".to_string())
        );
        assert_eq!(
            https_location(Some("gis.example.com:443"), None, 8443, "/a", None),
            Ok("https://gis.example.com/a".to_string())
        );
    }

    #[test]
    fn missing_host_is_an_error() {
        assert_eq!(
            https_location(None, None, 443, "/", None),
            Err(HostError::MissingHost)
        );
        assert_eq!(
            https_location(None, Some(""), 443, "/", None),
            Err(HostError::MissingHost)
        );
    }

    #[test]
    fn attack_hosts_never_become_a_location() {
        for bad in ["evil.com/x", "a@b", "good.com\r\nX: y", "good.com evil.com"] {
            assert!(
                https_location(None, Some(bad), 443, "/", None).is_err(),
                "{bad:?}"
            );
            assert!(
                https_location(Some(bad), None, 443, "/", None).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn path_that_is_not_absolute_is_rejected() {
        assert_eq!(
            https_location(None, Some("good.com"), 443, "@evil.com/", None),
            Err(HostError::InvalidPath)
        );
        assert_eq!(
            https_location(None, Some("good.com"), 443, "/a b", None),
            Err(HostError::InvalidPath)
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
                https_location(None, Some("good.com"), 443, "/", Some(bad)),
                Err(HostError::InvalidQuery),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn empty_query_keeps_the_question_mark() {
        assert_eq!(
            https_location(None, Some("good.com"), 443, "/a", Some("")),
            Ok("https://good.com/a?".to_string())
        );
    }

    #[test]
    fn zero_https_port_is_rejected() {
        assert_eq!(
            https_location(None, Some("good.com"), 0, "/", None),
            Err(HostError::InvalidPort)
        );
    }
}
