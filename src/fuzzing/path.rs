//! Canonical path (RFC 3986 §5.2.4) with the admin decision made on it.

use std::net::{IpAddr, Ipv4Addr};

use crate::policy::admin::{AdminDecision, AdminGate};
use crate::policy::path::canonical_path;

use super::input;

const ADMIN_PREFIXES: [&str; 2] = ["/arcgis/admin", "/arcgis/manager"];
const INSIDE: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
const OUTSIDE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

/// The input is a raw request path. When it is accepted:
/// - the canonical path is canonical: idempotent, starts with `/`, no `//`,
///   no dot segments, no `;`, escapes in upper case and only where needed;
/// - the upstream (a model of Tomcat) reads the canonical path as it would
///   have read the raw one, and accepts the raw one;
/// - the admin decision is the same on the canonical path and on its own
///   canonical form, for an allowed, a refused and an unknown client;
/// - every path the upstream reads as under `/arcgis/admin` or
///   `/arcgis/manager` (any case) is an admin path, refused to outsiders.
pub fn canonical_path_and_admin(data: &[u8]) {
    let raw = input::text(data);
    let Ok(out) = canonical_path(&raw) else {
        return;
    };
    assert_canonical(&out);
    let view = tomcat_view(&raw)
        .unwrap_or_else(|| panic!("{raw:?} accepted as {out:?}, but the upstream refuses it"));
    assert_eq!(
        tomcat_view(&out).as_ref(),
        Some(&view),
        "{raw:?} -> {out:?} means something else upstream"
    );

    let prefixes = ADMIN_PREFIXES.map(String::from);
    let gate = AdminGate::new(
        &prefixes,
        vec!["10.0.0.0/8".parse().expect("literal")],
        true,
    );
    let again = canonical_path(&out).expect("canonical paths are accepted");
    for client in [Some(INSIDE), Some(OUTSIDE), None] {
        assert_eq!(gate.decide(&out, client), gate.decide(&again, client));
    }
    if upstream_reads_as_admin(&view.0) {
        assert!(
            gate.is_admin_path(&out),
            "{raw:?} -> {out:?} escaped the admin gate"
        );
        assert_eq!(gate.decide(&out, Some(OUTSIDE)), AdminDecision::Denied);
        assert_eq!(gate.decide(&out, None), AdminDecision::Denied);
        assert_eq!(gate.decide(&out, Some(INSIDE)), AdminDecision::Allowed);
    }
}

fn assert_canonical(out: &str) {
    assert_eq!(canonical_path(out).as_deref(), Ok(out), "not idempotent");
    assert!(out.starts_with('/'), "{out:?} is not absolute");
    assert!(!out.contains("//"), "{out:?} has an empty segment");
    assert!(!out.contains(';') && !out.contains('\\'), "{out:?}");
    for segment in out.split('/') {
        assert!(segment != "." && segment != "..", "dot segment in {out:?}");
    }
    let bytes = out.as_bytes();
    for (i, _) in out.match_indices('%') {
        let escape = &bytes[i + 1..i + 3];
        assert!(
            escape
                .iter()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b)),
            "{out:?}"
        );
        let value =
            u8::from_str_radix(std::str::from_utf8(escape).expect("ascii"), 16).expect("hex");
        assert!(
            !(value.is_ascii_alphanumeric() || b"-._~".contains(&value)),
            "{out:?} keeps an unreserved escape"
        );
    }
}

/// Whether the upstream's decoded segments start with `arcgis/admin` or
/// `arcgis/manager`, ASCII case-insensitively.
fn upstream_reads_as_admin(segments: &[Vec<u8>]) -> bool {
    ADMIN_PREFIXES.iter().any(|prefix| {
        let names: Vec<&str> = prefix.split('/').skip(1).collect();
        segments.len() >= names.len()
            && names
                .iter()
                .zip(segments)
                .all(|(name, seg)| seg.eq_ignore_ascii_case(name.as_bytes()))
    })
}

/// A model of how Tomcat reads a path, written apart from the gateway's
/// code: strip `;params` per segment, percent-decode everything, then merge
/// `//` and resolve dot segments. The decoded segments and whether a
/// trailing `/` remains, or `None` where Tomcat answers 400 (a raw `\`, an
/// encoded `/` or `\`, a broken escape, `..` above the root). The property
/// test in src/policy/path.rs holds the same model.
fn tomcat_view(path: &str) -> Option<(Vec<Vec<u8>>, bool)> {
    if path.contains('\\') {
        return None;
    }
    let mut segments: Vec<Vec<u8>> = Vec::new();
    let mut trailing = false;
    for segment in path.split('/') {
        let segment = segment.split(';').next().unwrap_or("");
        let decoded = percent_decode(segment)?;
        match decoded.as_slice() {
            b"" | b"." => trailing = true,
            b".." => {
                segments.pop()?;
                trailing = true;
            }
            _ => {
                segments.push(decoded);
                trailing = false;
            }
        }
    }
    let trailing = trailing && !segments.is_empty();
    Some((segments, trailing))
}

fn percent_decode(segment: &str) -> Option<Vec<u8>> {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            decoded.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let b = u8::from_str_radix(hex, 16).ok()?;
        if b == b'/' || b == b'\\' {
            return None;
        }
        decoded.push(b);
        i += 3;
    }
    Some(decoded)
}
