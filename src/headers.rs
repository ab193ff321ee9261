//! Header operations of a forwarding proxy: hop-by-hop removal (RFC 9110
//! §7.6.1), headers a client must not hand the upstream, and the
//! X-Forwarded-* set.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Version};

use crate::host::HostPort;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const SEC_WEBSOCKET_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");

/// Headers that describe one connection, never forwarded. A static, not a
/// const: a const would be built and dropped at every use.
static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// An HTTP/1.1 WebSocket opening handshake (RFC 6455 §4.1: a GET with
/// `Upgrade: websocket`, `Connection: upgrade` and a `Sec-WebSocket-Key`).
/// The only upgrade forwarded: any other `Upgrade` (h2c, TLS, made-up
/// tokens) is removed as the hop-by-hop header it is, and the request goes
/// on as a plain one, so nothing but WebSocket frames is ever tunnelled
/// past the per-request policy.
pub fn websocket_requested(headers: &HeaderMap, method: &Method, version: Version) -> bool {
    version == Version::HTTP_11
        && method == Method::GET
        && names_websocket(headers)
        && headers.contains_key(SEC_WEBSOCKET_KEY)
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

/// An `Upgrade` of exactly one value, `websocket` (RFC 6455 §4.2.2 for the
/// server's 101 too).
pub fn names_websocket(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::UPGRADE).iter();
    matches!(
        (values.next(), values.next()),
        (Some(v), None) if v.as_bytes().eq_ignore_ascii_case(b"websocket")
    )
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

/// What a message's `Transfer-Encoding` says of its framing (RFC 9112 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferCoding {
    /// No Transfer-Encoding.
    Absent,
    /// Exactly one coding, `chunked`.
    Chunked,
    /// `chunked` more than once (RFC 9112 §7: a sender MUST NOT apply it
    /// twice), or a header that names no coding at all.
    Malformed,
    /// Any other coding, alone or with `chunked` (`gzip, chunked`).
    Other,
}

/// The codings of every `Transfer-Encoding` line (one lookup; a message
/// without the header costs nothing more), matched case-insensitively with
/// optional whitespace around commas; empty list elements are skipped
/// (RFC 9110 §5.6.1).
pub fn transfer_coding(headers: &HeaderMap) -> TransferCoding {
    let mut present = false;
    let mut chunked = 0usize;
    let mut other = false;
    for value in headers.get_all(header::TRANSFER_ENCODING) {
        present = true;
        for coding in value.as_bytes().split(|&b| b == b',') {
            match trim_ows(coding) {
                b"" => {}
                c if c.eq_ignore_ascii_case(b"chunked") => chunked += 1,
                _ => other = true,
            }
        }
    }
    match (present, chunked, other) {
        (false, ..) => TransferCoding::Absent,
        (true, 1, false) => TransferCoding::Chunked,
        (true, 0, false) | (true, 2.., _) => TransferCoding::Malformed,
        (true, _, true) => TransferCoding::Other,
    }
}

/// Why a request's `Transfer-Encoding` is not served. `Display` never
/// echoes the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransferCodingError {
    /// A coding other than `chunked` (gzip, deflate, compress, identity, an
    /// unknown one): 501, as nginx answers (RFC 9112 §6.1 lets a server
    /// refuse a coding it does not understand).
    #[error("transfer coding other than chunked")]
    NotImplemented,
    /// `chunked` more than once, or no coding named.
    #[error("malformed transfer coding")]
    Malformed,
}

/// A request body is served only when it is framed by one `chunked` and
/// nothing else, or not by `Transfer-Encoding` at all. hyper undoes the
/// final `chunked` and forwards the rest as the plain body, and the header
/// itself is hop-by-hop: `gzip, chunked` would reach the upstream as a
/// gzip body it takes for plain.
pub fn request_transfer_coding(headers: &HeaderMap) -> Result<(), TransferCodingError> {
    match transfer_coding(headers) {
        TransferCoding::Absent | TransferCoding::Chunked => Ok(()),
        TransferCoding::Malformed => Err(TransferCodingError::Malformed),
        TransferCoding::Other => Err(TransferCodingError::NotImplemented),
    }
}

/// RFC 9110 §5.6.3: `OWS = *( SP / HTAB )`, nothing else.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Removes hop-by-hop headers, including every header named in
/// `Connection`. With `keep_upgrade`, `Connection: upgrade` and `Upgrade`
/// survive, since the upgrade handshake must reach the other side.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let kept =
        |name: &HeaderName| keep_upgrade && (name == header::UPGRADE || name == header::CONNECTION);
    // What is present, from one pass over the names: usually nothing, or
    // `Connection: keep-alive` alone (nginx sends it on every response); a
    // hashed removal for each of the seven names would cost more.
    let mut remove: Vec<HeaderName> = headers
        .keys()
        .filter(|name| HOP_BY_HOP.contains(name) && !kept(name))
        .cloned()
        .collect();
    if headers.contains_key(header::CONNECTION) {
        remove.extend(
            connection_tokens(headers)
                .filter(|t| !(keep_upgrade && t.eq_ignore_ascii_case("upgrade")))
                .filter(|t| headers.contains_key(*t))
                .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok()),
        );
    }
    for name in remove {
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

/// Headers in which a client, a CDN or another proxy names a client
/// address (RFC 7239 `Forwarded`, nginx's `X-Real-IP`, Akamai's and
/// Cloudflare's, ...). Only the X-Forwarded-For that [`set_forwarded`]
/// builds may tell the upstream who the client is; anything else came from
/// the client and would let it pick its address for the GIS server's logs
/// and IP rules. A static, not a const: see `HOP_BY_HOP`.
static CLIENT_ADDRESSES: [HeaderName; 9] = [
    header::FORWARDED,
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("cf-connecting-ip"),
    HeaderName::from_static("x-cluster-client-ip"),
    HeaderName::from_static("fastly-client-ip"),
    HeaderName::from_static("x-originating-ip"),
    HeaderName::from_static("client-ip"),
];

/// Removes every [`CLIENT_ADDRESSES`] header. One pass over the names
/// present (usually none of these), as in [`remove_hop_by_hop`], rather than
/// a hashed removal for each of the nine.
pub fn remove_client_addresses(headers: &mut HeaderMap) {
    let present: Vec<HeaderName> = headers
        .keys()
        .filter(|name| CLIENT_ADDRESSES.contains(name))
        .cloned()
        .collect();
    for name in present {
        headers.remove(name);
    }
}

/// The client's address as an X-Forwarded-For value (IPv4-mapped IPv6
/// shown as IPv4). Made once per connection: formatting an address costs
/// more than setting all four X-Forwarded-* headers.
pub fn forwarded_for(peer: IpAddr) -> HeaderValue {
    HeaderValue::try_from(peer.to_canonical().to_string())
        .expect("a formatted IP address is a valid header value")
}

/// Sets X-Forwarded-For/-Proto/-Host/-Port; `peer` is the client's
/// [`forwarded_for`] value. A client-supplied X-Forwarded-For is kept (and
/// appended to) only when the peer is a trusted proxy; otherwise it is
/// replaced, so the upstream is never handed a forged client address.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer: &HeaderValue,
    peer_trusted: bool,
    scheme: &'static str,
    host: &HostPort,
) {
    let previous: Vec<&str> = if peer_trusted {
        headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    } else {
        Vec::new()
    };
    if previous.is_empty() {
        headers.insert(X_FORWARDED_FOR, peer.clone());
    } else {
        let peer = peer.to_str().unwrap_or_default();
        if let Ok(v) = HeaderValue::try_from(format!("{}, {peer}", previous.join(", "))) {
            headers.insert(X_FORWARDED_FOR, v);
        }
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(scheme));
    headers.insert(X_FORWARDED_HOST, host.header_value().clone());
    headers.insert(X_FORWARDED_PORT, port_value(host, scheme));
}

/// The port of `host`, or the scheme's default; the two usual ports
/// without formatting a number.
fn port_value(host: &HostPort, scheme: &str) -> HeaderValue {
    let default = if scheme == "https" { 443 } else { 80 };
    match host.port().unwrap_or(default) {
        443 => HeaderValue::from_static("443"),
        80 => HeaderValue::from_static("80"),
        port => HeaderValue::from(port),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_coding(lines: &[&str]) -> Result<(), TransferCodingError> {
        let mut h = HeaderMap::new();
        for line in lines {
            h.append(
                header::TRANSFER_ENCODING,
                HeaderValue::from_str(line).unwrap(),
            );
        }
        request_transfer_coding(&h)
    }

    #[test]
    fn no_transfer_encoding_or_one_chunked_is_served() {
        assert_eq!(request_coding(&[]), Ok(()));
        assert_eq!(request_coding(&["chunked"]), Ok(()));
        assert_eq!(request_coding(&[" Chunked\t"]), Ok(()));
        assert_eq!(request_coding(&[", chunked,"]), Ok(()));
    }

    #[test]
    fn a_coding_other_than_chunked_is_not_implemented() {
        for lines in [
            &["gzip, chunked"][..],
            &["GZIP ,\tCHUNKED"],
            &["identity, chunked"],
            &["gzip", "chunked"],
            &["gzip"],
            &["chunked;x=1"],
        ] {
            assert_eq!(
                request_coding(lines),
                Err(TransferCodingError::NotImplemented),
                "{lines:?}"
            );
        }
    }

    #[test]
    fn chunked_twice_or_no_coding_is_malformed() {
        for lines in [
            &["chunked, chunked"][..],
            &["chunked", "CHUNKED"],
            &["gzip, chunked, chunked"],
            &[""],
            &[" , "],
        ] {
            assert_eq!(
                request_coding(lines),
                Err(TransferCodingError::Malformed),
                "{lines:?}"
            );
        }
    }

    #[test]
    fn transfer_codings_are_read_across_lines_and_case() {
        let coding = |lines: &[&'static str]| {
            let mut h = HeaderMap::new();
            for l in lines {
                h.append(header::TRANSFER_ENCODING, HeaderValue::from_static(l));
            }
            super::transfer_coding(&h)
        };
        assert_eq!(coding(&[]), TransferCoding::Absent);
        assert_eq!(coding(&["chunked"]), TransferCoding::Chunked);
        assert_eq!(coding(&[" Chunked "]), TransferCoding::Chunked);
        assert_eq!(coding(&["gzip, chunked"]), TransferCoding::Other);
        assert_eq!(coding(&["gzip", "chunked"]), TransferCoding::Other);
        assert_eq!(coding(&["identity"]), TransferCoding::Other);
        assert_eq!(coding(&["chunked, chunked"]), TransferCoding::Malformed);
        assert_eq!(coding(&["chunked", "CHUNKED"]), TransferCoding::Malformed);
    }

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
    fn upgrade_keeps_upgrade_and_drops_other_hop_by_hop_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("Upgrade, keep-alive"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::HOST, HeaderValue::from_static("gis.example.com"));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h[header::UPGRADE], "websocket");
        assert!(!h.contains_key("keep-alive"));
        assert!(!h.contains_key(header::TE));
        assert_eq!(h.len(), 3);
    }

    #[test]
    fn connection_keep_alive_alone_goes_and_the_rest_stays() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
        remove_hop_by_hop(&mut h, false);
        assert!(!h.contains_key(header::CONNECTION));
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn client_address_headers_are_removed_and_the_rest_stays() {
        let mut h = HeaderMap::new();
        for name in &CLIENT_ADDRESSES {
            h.append(name, HeaderValue::from_static("10.9.9.9"));
            h.append(name, HeaderValue::from_static("10.9.9.10"));
        }
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("10.9.9.9"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        remove_client_addresses(&mut h);
        assert_eq!(h.len(), 2);
        assert!(h.contains_key(header::ACCEPT));
        assert!(
            h.contains_key(X_FORWARDED_FOR),
            "X-Forwarded-For is set_forwarded's to replace"
        );
    }

    #[test]
    fn forwarded_port_is_the_hosts_or_the_schemes_default() {
        let port = |scheme, host| {
            let mut h = HeaderMap::new();
            let peer = forwarded_for("::ffff:192.0.2.1".parse().unwrap());
            set_forwarded(
                &mut h,
                &peer,
                false,
                scheme,
                &HostPort::parse(host).unwrap(),
            );
            assert_eq!(
                h[&X_FORWARDED_FOR], "192.0.2.1",
                "IPv4-mapped shown as IPv4"
            );
            h[&X_FORWARDED_PORT].clone()
        };
        assert_eq!(port("http", "gis.example.com"), "80");
        assert_eq!(port("https", "gis.example.com"), "443");
        assert_eq!(port("https", "gis.example.com:80"), "80");
        assert_eq!(port("http", "gis.example.com:443"), "443");
        assert_eq!(port("https", "[2001:db8::1]:6443"), "6443");
        assert_eq!(port("https", "[2001:db8::1]"), "443");
    }

    #[test]
    fn forged_forwarded_for_from_untrusted_peer_is_replaced() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("127.0.0.1"));
        set_forwarded(
            &mut h,
            &forwarded_for("203.0.113.9".parse().unwrap()),
            false,
            "https",
            &HostPort::parse("gis.example.com").unwrap(),
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
            &forwarded_for("10.0.0.1".parse().unwrap()),
            true,
            "https",
            &HostPort::parse("gis.example.com:6443").unwrap(),
        );
        assert_eq!(h[&X_FORWARDED_FOR], "198.51.100.7, 10.0.0.2, 10.0.0.1");
        assert_eq!(h["x-forwarded-port"], "6443");
        assert_eq!(h["x-forwarded-host"], "gis.example.com:6443");
    }
}
