//! One parser for the `host[:port]` authorities the gateway reads: the
//! client's Host (or absolute-form / HTTP/2 authority), parsed once per
//! request, and `server.public_host`, parsed once when the config is
//! validated. Every piece is validated strictly: a host that smuggles a
//! path, userinfo or a line break would turn a redirect into an open
//! redirect or a header injection.

use std::net::{Ipv4Addr, Ipv6Addr};

use http::HeaderValue;
use thiserror::Error;

/// Why an authority was refused. `Display` never echoes input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HostError {
    /// No host at all (empty authority).
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
}

/// A validated `host[:port]`, kept as the header value it is sent as
/// (Host, X-Forwarded-Host), with its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    value: HeaderValue,
    /// The host's length in `value` (brackets of an IPv6 address kept).
    host_len: usize,
    port: Option<u16>,
}

impl HostPort {
    /// Parses an authority given as text (a config value, a URI's).
    pub fn parse(authority: &str) -> Result<Self, HostError> {
        let (host, port) = parse_host(authority)?;
        // Visible ASCII only, as `parse_host` has checked: a valid value.
        let value = HeaderValue::from_str(authority).map_err(|_| HostError::InvalidCharacter)?;
        Ok(HostPort {
            value,
            host_len: host.len(),
            port,
        })
    }

    /// Parses a Host header, keeping the value itself (no copy).
    pub fn from_header(value: &HeaderValue) -> Result<Self, HostError> {
        let text = value.to_str().map_err(|_| HostError::InvalidCharacter)?;
        let (host, port) = parse_host(text)?;
        Ok(HostPort {
            host_len: host.len(),
            port,
            value: value.clone(),
        })
    }

    /// `host[:port]` as written.
    pub fn as_str(&self) -> &str {
        // Checked visible ASCII when parsed.
        self.value.to_str().unwrap_or_default()
    }

    /// The host, IPv6 brackets kept, so it can be put into a URL as is.
    pub fn host(&self) -> &str {
        &self.as_str()[..self.host_len]
    }

    pub fn port(&self) -> Option<u16> {
        self.port
    }

    pub fn header_value(&self) -> &HeaderValue {
        &self.value
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
pub(crate) fn parse_host(authority: &str) -> Result<(&str, Option<u16>), HostError> {
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
    fn a_host_port_keeps_its_parts_and_its_text() {
        let h = HostPort::parse("[::1]:8443").unwrap();
        assert_eq!(
            (h.host(), h.port(), h.as_str()),
            ("[::1]", Some(8443), "[::1]:8443")
        );
        let h = HostPort::from_header(&HeaderValue::from_static("gis.example.com")).unwrap();
        assert_eq!((h.host(), h.port()), ("gis.example.com", None));
        assert_eq!(h.header_value(), "gis.example.com");
    }

    #[test]
    fn a_host_header_that_is_not_a_host_is_refused() {
        for bad in ["evil.com/x", "a@b", "", "good.com:0"] {
            let value = HeaderValue::from_str(bad).unwrap();
            assert!(HostPort::from_header(&value).is_err(), "{bad:?}");
        }
        let latin1 = HeaderValue::from_bytes(b"caf\xe9.example").unwrap();
        assert!(HostPort::from_header(&latin1).is_err());
    }
}
