//! Canonical request paths.
//!
//! Every policy decision (admin gate, routing) is made on the canonical path,
//! and the gateway forwards that same canonical path upstream. The upstream is
//! a Java servlet container (Tomcat) that strips `;params` from segments,
//! percent-decodes and then removes dot segments. If the policy judged a
//! different string than the one the upstream acts on, tricks such as
//! `/arcgis/x/..;/admin` or `/arcgis/%61dmin` would slip past the gate.
//! Canonicalising here, and forwarding only the result, removes that gap.
//!
//! Anything ambiguous is rejected rather than repaired: an error means the
//! caller answers 400 and nothing is forwarded. That includes what Tomcat
//! itself refuses, such as a raw `\`: repairing it into something the
//! upstream would accept makes the gateway a second, different parser.

use thiserror::Error;

use super::utf8::Utf8Sequence;

/// Why a path could not be canonicalised.
///
/// `Display` is deliberately short and never echoes the input, so the message
/// can be logged or returned to a client without reflecting attacker data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PathError {
    /// The path is the empty string.
    #[error("empty path")]
    Empty,
    /// The path does not start with `/`.
    #[error("path is not absolute")]
    NotAbsolute,
    /// A raw `\`. RFC 3986 does not allow it; Tomcat answers 400 for it
    /// (unless `ALLOW_BACKSLASH`), other servers read it as `/`. Neither
    /// repaired into `/` nor forwarded.
    #[error("backslash in path")]
    Backslash,
    /// A raw control character (0x00-0x1F, 0x7F).
    #[error("control character in path")]
    ControlCharacter,
    /// A raw byte outside ASCII; a compliant client percent-encodes these.
    #[error("non-ASCII byte in path")]
    NonAscii,
    /// A raw character that RFC 3986 §3.3 does not allow in a path
    /// (space, `?`, `#`, `"`, `<`, `>`, `[`, `]`, `^`, `` ` ``, `{`, `|`, `}`).
    #[error("invalid character in path")]
    InvalidCharacter,
    /// `%2F`: an encoded `/` would be a segment separator to some upstreams
    /// and data to others.
    #[error("encoded slash in path")]
    EncodedSlash,
    /// `%5C`: an encoded `\`, a separator on Windows upstreams.
    #[error("encoded backslash in path")]
    EncodedBackslash,
    /// `%25`: an encoded `%`, i.e. double encoding.
    #[error("double percent-encoding in path")]
    EncodedPercent,
    /// `%00`-`%1F` or `%7F`: an encoded control character.
    #[error("encoded control character in path")]
    EncodedControlCharacter,
    /// A `%` not followed by two hexadecimal digits.
    #[error("invalid percent-encoding in path")]
    InvalidPercentEncoding,
    /// A `..` segment with nothing left to remove.
    #[error("path escapes above the root")]
    AboveRoot,
    /// Escapes of bytes above 0x7F that are not UTF-8 (`%C0%AE`, an
    /// overlong `.`; a lone `%E9`). Tomcat refuses them; a lenient decoder
    /// might read an overlong form as the ASCII it encodes.
    #[error("percent-encoded bytes in path are not UTF-8")]
    InvalidUtf8,
}

/// Canonicalises the path component of a request URI.
///
/// `raw` is the path exactly as received: no scheme, authority or query.
/// Steps:
/// 1. must start with `/`; raw control characters, non-ASCII bytes, `\` and
///    the other characters RFC 3986 forbids in a path are rejected;
/// 2. each segment loses everything from its first raw `;` (path parameters,
///    which Tomcat ignores), then only unreserved characters (RFC 3986 §2.3)
///    are percent-decoded; every other `%XX` stays encoded with upper-case hex
///    (RFC 3986 §6.2.2.1). Encoded `/`, `\`, `%` and control characters are
///    errors, and so are escaped bytes above 0x7F that are not UTF-8;
/// 3. empty and `.` segments are dropped and `..` removes the previous
///    segment (RFC 3986 §5.2.4), after decoding so `%2e%2e` is `..`; a `..`
///    at the root is an error, never clamped;
/// 4. the result is `/` + segments joined by `/`, with a trailing `/` when the
///    last input segment was empty, `.` or `..`.
///
/// The result is idempotent: `canonical_path(&out) == Ok(out)`.
pub fn canonical_path(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    match bytes.first() {
        None => return Err(PathError::Empty),
        Some(b'/') => {}
        Some(b'\\') => return Err(PathError::Backslash),
        Some(_) => return Err(PathError::NotAbsolute),
    }
    // Validate every raw byte up front, including those inside `;params` that
    // are dropped below: input that no conforming client sends is refused
    // outright rather than partly trusted.
    for &b in bytes {
        check_raw_byte(b)?;
    }

    let mut out = String::with_capacity(raw.len());
    // Whether the last segment seen was empty, `.` or `..`: RFC 3986 §5.2.4
    // keeps a trailing `/` in those cases (`/a/b/..` -> `/a/`).
    let mut trailing_slash = false;
    // The first item is the empty string before the leading separator; it is
    // harmless because empty segments are dropped.
    for segment in raw.split('/') {
        // Path parameters end at the first raw `;` (Tomcat semantics). An
        // encoded `%3B` is data, not a delimiter, and stays encoded.
        let segment = match segment.find(';') {
            Some(i) => &segment[..i],
            None => segment,
        };
        let mark = out.len();
        out.push('/');
        decode_segment(segment, &mut out)?;
        match &out[mark + 1..] {
            // Empty segments (`//`) are merged, as Tomcat does; `.` is a no-op.
            "" | "." => {
                out.truncate(mark);
                trailing_slash = true;
            }
            ".." => {
                out.truncate(mark);
                // `out` is either empty or starts with `/`, and no segment in
                // it contains `/` (an encoded one is an error), so the last
                // `/` starts the segment to remove.
                match out.rfind('/') {
                    Some(start) => out.truncate(start),
                    None => return Err(PathError::AboveRoot),
                }
                trailing_slash = true;
            }
            _ => trailing_slash = false,
        }
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

/// Checks one raw byte of the input against RFC 3986 §3.3:
/// `pchar = unreserved / pct-encoded / sub-delims / ":" / "@"`, plus the
/// separator `/`.
fn check_raw_byte(b: u8) -> Result<(), PathError> {
    match b {
        b'\\' => Err(PathError::Backslash),
        0x00..=0x1F | 0x7F => Err(PathError::ControlCharacter),
        0x80..=0xFF => Err(PathError::NonAscii),
        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => Ok(()),
        b'-' | b'.' | b'_' | b'~' => Ok(()),
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => Ok(()),
        b':' | b'@' | b'%' | b'/' => Ok(()),
        // Space, `"`, `#`, `<`, `>`, `?`, `[`, `]`, `^`, `` ` ``, `{`, `|`,
        // `}`. A raw `?` or `#` here is particularly dangerous: the upstream
        // would cut the path there while the policy saw a longer segment.
        _ => Err(PathError::InvalidCharacter),
    }
}

/// Appends `segment` to `out`, decoding percent-encoded unreserved
/// characters and normalising every other escape to upper-case hex.
fn decode_segment(segment: &str, out: &mut String) -> Result<(), PathError> {
    let bytes = segment.as_bytes();
    let mut utf8 = Utf8Sequence::default();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            utf8.end().map_err(|_| PathError::InvalidUtf8)?;
            // Raw bytes were validated as ASCII by `check_raw_byte`.
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).copied().and_then(hex_value),
            bytes.get(i + 2).copied().and_then(hex_value),
        ) else {
            return Err(PathError::InvalidPercentEncoding);
        };
        let decoded = (hi << 4) | lo;
        match decoded {
            b'/' => return Err(PathError::EncodedSlash),
            b'\\' => return Err(PathError::EncodedBackslash),
            // Decoding `%25` would yield a new `%XX` that a second decoder
            // (the upstream) would decode again: `%2561dmin` -> `%61dmin`
            // -> `admin`. Refuse instead of decoding twice.
            b'%' => return Err(PathError::EncodedPercent),
            0x00..=0x1F | 0x7F => return Err(PathError::EncodedControlCharacter),
            _ if is_unreserved(decoded) => {
                utf8.end().map_err(|_| PathError::InvalidUtf8)?;
                out.push(char::from(decoded));
            }
            _ => {
                if decoded < 0x80 {
                    utf8.end().map_err(|_| PathError::InvalidUtf8)?;
                } else {
                    utf8.push(decoded).map_err(|_| PathError::InvalidUtf8)?;
                }
                out.push('%');
                out.push(char::from(HEX_UPPER[usize::from(hi)]));
                out.push(char::from(HEX_UPPER[usize::from(lo)]));
            }
        }
        i += 3;
    }
    utf8.end().map_err(|_| PathError::InvalidUtf8)
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

pub(super) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §2.3: `ALPHA / DIGIT / "-" / "." / "_" / "~"`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(raw: &str) -> String {
        match canonical_path(raw) {
            Ok(out) => out,
            Err(e) => panic!("{raw:?} was rejected: {e}"),
        }
    }

    fn err(raw: &str) -> PathError {
        match canonical_path(raw) {
            Ok(out) => panic!("{raw:?} was accepted as {out:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn root_stays_root() {
        assert_eq!(ok("/"), "/");
    }

    #[test]
    fn double_slash_inside_is_merged() {
        assert_eq!(ok("/arcgis//admin"), "/arcgis/admin");
    }

    #[test]
    fn leading_double_slash_is_merged() {
        assert_eq!(ok("//arcgis/admin"), "/arcgis/admin");
    }

    #[test]
    fn single_dot_segment_is_removed() {
        assert_eq!(ok("/arcgis/./admin"), "/arcgis/admin");
    }

    #[test]
    fn double_dot_segment_removes_previous_segment() {
        assert_eq!(ok("/arcgis/x/../admin"), "/arcgis/admin");
    }

    #[test]
    fn double_dot_with_semicolon_param_is_resolved() {
        assert_eq!(ok("/arcgis/x/..;/admin"), "/arcgis/admin");
    }

    #[test]
    fn semicolon_params_in_a_middle_segment_are_dropped() {
        assert_eq!(ok("/arcgis;a=b/admin"), "/arcgis/admin");
    }

    #[test]
    fn semicolon_params_in_the_last_segment_are_dropped() {
        assert_eq!(ok("/arcgis/admin;jsessionid=1"), "/arcgis/admin");
    }

    #[test]
    fn percent_encoded_unreserved_letter_is_decoded() {
        assert_eq!(ok("/arcgis/%61dmin"), "/arcgis/admin");
    }

    #[test]
    fn percent_encoded_dot_dot_is_treated_as_dot_dot() {
        assert_eq!(ok("/arcgis/%2e%2e/arcgis/admin"), "/arcgis/admin");
        assert_eq!(ok("/arcgis/x/.%2E/admin"), "/arcgis/admin");
    }

    #[test]
    fn backslash_is_rejected_not_turned_into_a_slash() {
        assert_eq!(err("/arcgis\\admin"), PathError::Backslash);
        assert_eq!(err("\\arcgis/admin"), PathError::Backslash);
        assert_eq!(err("/arcgis/admin\\"), PathError::Backslash);
    }

    #[test]
    fn backslash_inside_path_params_is_rejected() {
        assert_eq!(err("/arcgis;x=\\/admin"), PathError::Backslash);
    }

    #[test]
    fn trailing_slash_is_kept() {
        assert_eq!(ok("/arcgis/admin/"), "/arcgis/admin/");
    }

    #[test]
    fn trailing_dot_segments_leave_a_trailing_slash() {
        assert_eq!(ok("/a/b/.."), "/a/");
        assert_eq!(ok("/a/b/."), "/a/b/");
        assert_eq!(ok("/a/.."), "/");
    }

    #[test]
    fn encoded_slash_is_rejected() {
        assert_eq!(err("/arcgis/admin%2f"), PathError::EncodedSlash);
        assert_eq!(err("/arcgis/admin%2F"), PathError::EncodedSlash);
    }

    #[test]
    fn dot_dot_followed_by_encoded_slash_is_rejected() {
        assert_eq!(err("/arcgis/manager/..%2fadmin"), PathError::EncodedSlash);
    }

    #[test]
    fn encoded_backslash_is_rejected() {
        assert_eq!(err("/arcgis/..%5cadmin"), PathError::EncodedBackslash);
    }

    #[test]
    fn double_encoding_is_rejected_not_decoded_twice() {
        assert_eq!(err("/arcgis/%2561dmin"), PathError::EncodedPercent);
    }

    #[test]
    fn dot_dot_at_the_root_is_rejected_not_clamped() {
        assert_eq!(err("/.."), PathError::AboveRoot);
        assert_eq!(err("/a/../.."), PathError::AboveRoot);
        assert_eq!(err("/%2e%2e/admin"), PathError::AboveRoot);
    }

    #[test]
    fn invalid_percent_encoding_is_rejected() {
        assert_eq!(err("/a/%zz"), PathError::InvalidPercentEncoding);
        assert_eq!(err("/a/%4"), PathError::InvalidPercentEncoding);
        assert_eq!(err("/a/%"), PathError::InvalidPercentEncoding);
    }

    #[test]
    fn encoded_reserved_character_stays_encoded() {
        assert_eq!(ok("/a%20b"), "/a%20b");
        assert_eq!(ok("/a%3bb"), "/a%3Bb");
    }

    #[test]
    fn encoded_non_ascii_is_normalised_to_upper_case_hex() {
        assert_eq!(ok("/a%c3%a9"), "/a%C3%A9");
        assert_eq!(ok("/%E2%82%AC/%F0%9F%97%BA;x"), "/%E2%82%AC/%F0%9F%97%BA");
    }

    #[test]
    fn escapes_that_are_not_utf8_are_rejected() {
        for raw in [
            "/arcgis/%c0%ae%c0%ae/admin", // overlong `..`
            "/arcgis/%e0%80%ae",          // overlong `.`, three bytes
            "/arcgis/caf%e9",             // Latin-1, a lone byte
            "/arcgis/%a9",                // a continuation byte first
            "/arcgis/%c3",                // cut at the end of the segment
            "/arcgis/%c3/%a9",            // cut by a `/`
            "/arcgis/%c3a%a9",            // cut by a raw byte
            "/arcgis/%c3%41",             // cut by an escaped ASCII byte
            "/arcgis/%ed%a0%80",          // a surrogate
            "/arcgis/%f4%90%80%80",       // above U+10FFFF
            "/arcgis/%ff",
        ] {
            assert_eq!(err(raw), PathError::InvalidUtf8, "{raw}");
        }
    }

    #[test]
    fn encoded_control_character_is_rejected() {
        assert_eq!(err("/a%00"), PathError::EncodedControlCharacter);
        assert_eq!(err("/a%0d%0a"), PathError::EncodedControlCharacter);
        assert_eq!(err("/a%7f"), PathError::EncodedControlCharacter);
    }

    #[test]
    fn raw_control_character_is_rejected() {
        assert_eq!(err("/a\r\nb"), PathError::ControlCharacter);
        assert_eq!(err("/a\0"), PathError::ControlCharacter);
        assert_eq!(err("/a;x=\t"), PathError::ControlCharacter);
    }

    #[test]
    fn raw_non_ascii_is_rejected() {
        assert_eq!(err("/caf\u{e9}"), PathError::NonAscii);
    }

    #[test]
    fn raw_query_or_fragment_delimiter_is_rejected() {
        assert_eq!(err("/arcgis/admin?x"), PathError::InvalidCharacter);
        assert_eq!(err("/arcgis/admin#x"), PathError::InvalidCharacter);
        assert_eq!(err("/a b"), PathError::InvalidCharacter);
    }

    #[test]
    fn relative_or_empty_path_is_rejected() {
        assert_eq!(err(""), PathError::Empty);
        assert_eq!(err("arcgis/admin"), PathError::NotAbsolute);
        assert_eq!(err("*"), PathError::NotAbsolute);
    }

    #[test]
    fn error_display_never_echoes_the_input() {
        let e = err("/secret%zz");
        assert!(!e.to_string().contains("secret"));
    }

    /// Pieces that combine into tricky paths; every generated string is a
    /// potential bypass attempt.
    const ALPHABET: &[&str] = &[
        "a", "B", "/", "\\", ".", "..", ";x=1", "%2e", "%41", "%20", "%2f", "%25", "//", "%",
        "%c3", "admin",
    ];

    fn tricky_path() -> impl Strategy<Value = String> {
        (
            any::<bool>(),
            prop::collection::vec(prop::sample::select(ALPHABET), 0..16),
        )
            .prop_map(|(absolute, parts)| {
                let mut s = String::from(if absolute { "/" } else { "" });
                s.push_str(&parts.concat());
                s
            })
    }

    fn check_canonical_invariants(out: &str) {
        assert_eq!(canonical_path(out).as_deref(), Ok(out), "not idempotent");
        assert!(out.starts_with('/'));
        assert!(!out.contains("//"));
        assert!(!out.contains(';'));
        assert!(!out.contains('\\'));
        for segment in out.split('/') {
            assert!(segment != "." && segment != "..", "dot segment in {out:?}");
        }
        let bytes = out.as_bytes();
        for (i, _) in out.match_indices('%') {
            let hi = hex_value(bytes[i + 1]).expect("hex");
            let lo = hex_value(bytes[i + 2]).expect("hex");
            assert!(!is_unreserved((hi << 4) | lo), "undecoded unreserved");
            assert!(!bytes[i + 1].is_ascii_lowercase() && !bytes[i + 2].is_ascii_lowercase());
        }
    }

    /// Reference model of how the upstream (Tomcat) reads a path: strip
    /// `;params` per segment, percent-decode everything, then merge `//`
    /// and resolve dot segments. Returns the decoded segments and whether
    /// there is a trailing slash, or `None` where Tomcat would refuse the
    /// path (a raw `\`, encoded `/`, broken escapes, `..` above the root).
    fn upstream_view(path: &str) -> Option<(Vec<Vec<u8>>, bool)> {
        // Tomcat's default (`ALLOW_BACKSLASH` off) answers 400.
        if path.contains('\\') {
            return None;
        }
        let mut segments: Vec<Vec<u8>> = Vec::new();
        let mut trailing = false;
        for segment in path.split('/') {
            let segment = segment.split(';').next().unwrap_or("");
            let bytes = segment.as_bytes();
            let mut decoded = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' {
                    let hi = hex_value(*bytes.get(i + 1)?)?;
                    let lo = hex_value(*bytes.get(i + 2)?)?;
                    let b = (hi << 4) | lo;
                    if b == b'/' || b == b'\\' {
                        return None;
                    }
                    decoded.push(b);
                    i += 3;
                } else {
                    decoded.push(bytes[i]);
                    i += 1;
                }
            }
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

    const ADMIN_ALPHABET: &[&str] = &[
        "/", "\\", "arcgis", "admin", "ADMIN", "%61dmin", "%41DMIN", "adm%69n", ".", "..", "%2e",
        "%2E%2e", ".%2e", ";x=1", ";", "//", "x", "%3b", "%3B", "%2f", "%25", "%20",
    ];

    fn admin_attempt() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(ADMIN_ALPHABET), 0..10)
            .prop_map(|parts| format!("/{}", parts.concat()))
    }

    proptest! {
        #[test]
        fn canonical_path_means_to_the_upstream_what_the_raw_path_meant(raw in admin_attempt()) {
            if let Ok(out) = canonical_path(&raw) {
                prop_assert!(upstream_view(&raw).is_some());
                prop_assert_eq!(upstream_view(&out), upstream_view(&raw));
            }
        }

        #[test]
        fn every_path_the_upstream_reads_as_admin_is_caught_by_the_gate(raw in admin_attempt()) {
            let gate = crate::policy::admin::AdminGate::new(&["/arcgis/admin".to_string()], vec![], true);
            let upstream_admin = upstream_view(&raw).is_some_and(|(segments, _)| {
                segments.len() >= 2
                    && segments[0].eq_ignore_ascii_case(b"arcgis")
                    && segments[1].eq_ignore_ascii_case(b"admin")
            });
            // Rejected paths are never forwarded, so only accepted ones can
            // slip past the gate.
            if let (true, Ok(out)) = (upstream_admin, canonical_path(&raw)) {
                prop_assert!(gate.is_admin_path(&out), "{:?} -> {:?} escaped the gate", raw, out);
            }
        }

        #[test]
        fn every_path_with_a_raw_backslash_is_refused(raw in admin_attempt()) {
            if raw.contains('\\') {
                prop_assert_eq!(canonical_path(&raw), Err(PathError::Backslash));
            }
        }

        #[test]
        fn every_accepted_tricky_path_is_canonical(raw in tricky_path()) {
            if let Ok(out) = canonical_path(&raw) {
                check_canonical_invariants(&out);
            }
        }

        #[test]
        fn every_accepted_printable_path_is_canonical(raw in "/[ -~]{0,40}") {
            if let Ok(out) = canonical_path(&raw) {
                check_canonical_invariants(&out);
            }
        }

        #[test]
        fn arbitrary_input_never_panics(raw in any::<String>()) {
            let _ = canonical_path(&raw);
        }
    }
}
