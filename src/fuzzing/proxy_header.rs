//! A PROXY protocol header as the listener reads it: incrementally, deciding
//! on each prefix how much belongs to the header.

use crate::config::ProxyProtocolMode;
use crate::listen::proxy_protocol::{extent, parse, Extent, V1_MAX, V2_MAX};

use super::input;

const MODES: [ProxyProtocolMode; 3] = [
    ProxyProtocolMode::V1,
    ProxyProtocolMode::V2,
    ProxyProtocolMode::Any,
];

/// The first byte picks the mode; the rest are the connection's first
/// bytes. Reading them one at a time must decide as reading them at once
/// does: every prefix shorter than the header is incomplete, a refusal
/// once made stays the same, and the header is never longer than its
/// version allows. The address parsed from a complete header is never
/// IPv4-mapped IPv6.
pub fn proxy_header(data: &[u8]) {
    let (flags, bytes) = input::flags(data);
    let mode = MODES[usize::from(flags) % MODES.len()];
    let whole = extent(bytes, mode);
    if let Ok(Extent::Complete(len)) = whole {
        assert!(len <= bytes.len());
        assert!(len <= V1_MAX.max(V2_MAX));
        if bytes.first() == Some(&b'P') {
            assert!(len <= V1_MAX, "a v1 header of {len} bytes");
        }
        if let Ok(Some(client)) = parse(&bytes[..len]) {
            assert_eq!(client.ip(), client.ip().to_canonical());
        }
    }
    for k in 0..bytes.len() {
        let prefix = extent(&bytes[..k], mode);
        match (&whole, &prefix) {
            (_, Ok(Extent::Incomplete)) => {}
            (Ok(Extent::Complete(len)), Ok(Extent::Complete(at))) => {
                assert!(k >= *len && at == len, "{k}: {prefix:?} vs {whole:?}");
            }
            _ => assert_eq!(&prefix, &whole, "prefix of {k} bytes"),
        }
    }
}
