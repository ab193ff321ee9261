//! Header operations of a forwarding proxy: hop-by-hop removal (RFC 9110
//! §7.6.1) and the X-Forwarded-* set.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Version;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one connection, never forwarded.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// An HTTP/1.1 request asking to switch protocols (WebSocket).
pub fn upgrade_requested(headers: &HeaderMap, version: Version) -> bool {
    version == Version::HTTP_11
        && headers.contains_key(header::UPGRADE)
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers, including every header named in
/// `Connection`. With `keep_upgrade`, `Connection: upgrade` and `Upgrade`
/// survive, since the upgrade handshake must reach the other side.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = connection_tokens(headers)
            .filter(|t| !(keep_upgrade && t.eq_ignore_ascii_case("upgrade")))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(&name);
        }
    }
    for name in HOP_BY_HOP {
        if keep_upgrade && (name == header::UPGRADE || name == header::CONNECTION) {
            continue;
        }
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Headers some servers (IIS, and so the ArcGIS Web Adaptor on IIS) take
/// as the request path instead of the request line. Forwarded, they would
/// let a client replace the path the admin gate judged.
const PATH_OVERRIDES: [HeaderName; 2] = [
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
];

pub fn remove_path_overrides(headers: &mut HeaderMap) {
    for name in PATH_OVERRIDES {
        headers.remove(name);
    }
}

/// Sets X-Forwarded-For/-Proto/-Host/-Port. A client-supplied
/// X-Forwarded-For is kept (and appended to) only when the peer is a
/// trusted proxy; otherwise it is replaced, so the upstream is never handed
/// a forged client address.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer: IpAddr,
    peer_trusted: bool,
    scheme: &'static str,
    host: &HeaderValue,
) {
    let peer = peer.to_canonical();
    let previous: Vec<&str> = if peer_trusted {
        headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    } else {
        Vec::new()
    };
    let xff = if previous.is_empty() {
        peer.to_string()
    } else {
        format!("{}, {peer}", previous.join(", "))
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
    headers.insert(X_FORWARDED_HOST, host.clone());
    let port = authority_port(host.to_str().unwrap_or("")).unwrap_or(if scheme == "https" {
        443
    } else {
        80
    });
    headers.insert(X_FORWARDED_PORT, HeaderValue::from(port));
}

fn authority_port(authority: &str) -> Option<u16> {
    let after_host = match authority.rfind(']') {
        Some(i) => &authority[i + 1..],
        None => authority,
    };
    after_host
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_named_in_connection_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut h, false);
        assert!(!h.contains_key("x-secret"));
        assert!(!h.contains_key("keep-alive"));
        assert!(!h.contains_key(header::CONNECTION));
        assert!(h.contains_key(header::ACCEPT));
    }

    #[test]
    fn forged_forwarded_for_from_untrusted_peer_is_replaced() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("127.0.0.1"));
        set_forwarded(
            &mut h,
            "203.0.113.9".parse().unwrap(),
            false,
            "https",
            &HeaderValue::from_static("gis.example.com"),
        );
        assert_eq!(h[&X_FORWARDED_FOR], "203.0.113.9");
        assert_eq!(h["x-forwarded-port"], "443");
    }

    #[test]
    fn forwarded_for_from_trusted_peer_is_appended() {
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.7"));
        h.append(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.2"));
        set_forwarded(
            &mut h,
            "10.0.0.1".parse().unwrap(),
            true,
            "https",
            &HeaderValue::from_static("gis.example.com:6443"),
        );
        assert_eq!(h[&X_FORWARDED_FOR], "198.51.100.7, 10.0.0.2, 10.0.0.1");
        assert_eq!(h["x-forwarded-port"], "6443");
        assert_eq!(h["x-forwarded-host"], "gis.example.com:6443");
    }
}
