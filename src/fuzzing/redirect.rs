//! Host/authority parsing and the HTTP-to-HTTPS redirect `Location`.

use crate::host::{parse_host, HostPort};
use crate::policy::path::canonical_path;
use crate::policy::query::check_query;
use crate::policy::redirect::https_location;

use super::input;

/// Input: a flags byte (bit 0: `server.public_host` is set, bit 1: the
/// request has a query), two bytes of `server.public_https_port`, then
/// the lines public host, request authority (Host), raw path, raw query.
/// Path and query go through the gateway's own checks first, as in
/// `proxy.rs`. Checked:
/// - an authority `parse_host` accepts is a bracketed IPv6 address or a
///   name of letters, digits, `-`, `.` and `_`, and parses again the same
///   when written back;
/// - a `Location` is `https://` + the configured host (public host, else
///   the request's host) + the expected port, and any URL parser (RFC 3986,
///   WHATWG: the first `/`, `?`, `#` or `\`) ends the authority right
///   there; it is visible ASCII only (no header injection); `http::Uri`
///   reads back the same authority, path and query.
pub fn host_and_location(data: &[u8]) {
    let (flags, rest) = input::flags(data);
    let (port, rest) = match rest {
        [lo, hi, rest @ ..] => (u16::from_le_bytes([*lo, *hi]), rest),
        _ => (443, &[][..]),
    };
    let [public, authority, path, query] =
        <[&[u8]; 4]>::try_from(input::fields(rest, 4)).expect("4 fields");
    let public = (flags & 1 != 0).then(|| input::text(public));
    let authority = input::text(authority);
    let query = (flags & 2 != 0).then(|| input::text(query));

    for host in public.iter().chain([&authority]) {
        if let Ok(parsed) = parse_host(host) {
            assert_host_parse(host, parsed);
        }
    }
    let Ok(path) = canonical_path(&input::text(path)) else {
        return;
    };
    if query.as_deref().is_some_and(|q| check_query(q).is_err()) {
        return;
    }
    // As the gateway has them: the request's host parsed once per request,
    // the public host once when the config was validated.
    let Ok(request) = HostPort::parse(&authority) else {
        return;
    };
    let public = match public.as_deref().map(HostPort::parse) {
        Some(Ok(public)) => Some(public),
        Some(Err(_)) => return,
        None => None,
    };
    let Ok(location) = https_location(
        public.as_ref(),
        Some(&request),
        port,
        &path,
        query.as_deref(),
    ) else {
        return;
    };
    let (host, port) = match &public {
        Some(public) => (public.host(), public.port().unwrap_or(port)),
        None => (request.host(), port),
    };
    let expected = match port {
        443 => host.to_string(),
        port => format!("{host}:{port}"),
    };
    assert_location(&location, &expected, &path, query.as_deref());
}

fn assert_host_parse(authority: &str, (host, port): (&str, Option<u16>)) {
    match host.strip_prefix('[') {
        Some(v6) => {
            let v6 = v6.strip_suffix(']').expect("closing bracket");
            assert!(v6.parse::<std::net::Ipv6Addr>().is_ok(), "{authority:?}");
        }
        None => assert!(
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)),
            "{authority:?} gave host {host:?}"
        ),
    }
    assert_ne!(port, Some(0));
    let written = match port {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    assert_eq!(
        parse_host(&written),
        Ok((host, port)),
        "{authority:?} does not round-trip"
    );
}

fn assert_location(location: &str, authority: &str, path: &str, query: Option<&str>) {
    assert!(
        location.bytes().all(|b| (0x21..=0x7E).contains(&b)),
        "{location:?}"
    );
    let after_scheme = location.strip_prefix("https://").expect("https scheme");
    let end = after_scheme
        .find(['/', '?', '#', '\\'])
        .unwrap_or(after_scheme.len());
    assert_eq!(
        &after_scheme[..end],
        authority,
        "{location:?} leaves the configured host"
    );
    let uri: http::Uri = location
        .parse()
        .unwrap_or_else(|e| panic!("{location:?}: {e}"));
    assert_eq!(uri.scheme_str(), Some("https"));
    assert_eq!(uri.authority().map(|a| a.as_str()), Some(authority));
    assert_eq!(uri.path(), path);
    assert_eq!(uri.query(), query);
}
