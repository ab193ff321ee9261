//! Request queries the upstream would refuse or read differently.
//!
//! The query is forwarded byte for byte, never rewritten, so the only way to
//! keep the gateway and the GIS server (Tomcat) from disagreeing about it is
//! to refuse what Tomcat's default connector refuses, or decodes in its own
//! way: characters outside RFC 3986 §3.4, a `%` that is not an escape, and
//! escapes that decode to invalid UTF-8 (the request's encoding, URIEncoding
//! in Tomcat). Whatever a conforming client sends passes untouched: ArcGIS
//! clients percent-encode the JSON, SQL and text they put in a query.
//!
//! What is refused, byte by byte (the `http` crate already refuses a query
//! with controls, space, `"`, `<`, `>`, DEL or raw invalid UTF-8, and cuts it
//! at `#`; they are refused here too, should one ever get this far):
//! - `[`, `]`, `\`, `^`, `` ` ``, `{`, `|`, `}`: not in RFC 3986's query
//!   grammar, and refused by Tomcat's default connector (`relaxedQueryChars`
//!   unset). `\` is also a path separator to some servers. Raw JSON, the
//!   one use of `{` and `}` in ArcGIS queries, cannot pass anyway: it needs
//!   `"`, which never parses as a request target.
//! - raw bytes above 0x7F (raw UTF-8 text): RFC 3986 allows only ASCII, and
//!   Tomcat refuses them; browsers percent-encode them.
//! - `%` not followed by two hex digits: no decoder agrees on its meaning
//!   (Tomcat refuses, others keep the `%` or drop it).
//! - escapes that decode to bytes which are not UTF-8 (`%FF`, the overlong
//!   `%C0%AF` for `/`, surrogates, a truncated `%E2%82`, a sequence broken
//!   by a raw byte): decoders replace, drop or refuse them, each its own way.
//!
//! Escapes of ASCII, controls included (`%0A` in a SQL `where`, `%00`),
//! stay allowed: they decode the same everywhere.

use thiserror::Error;

use super::path::hex_value;
use super::utf8::Utf8Sequence;

/// Why a query was refused. `Display` never echoes the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum QueryError {
    /// A raw character RFC 3986 §3.4 does not allow in a query.
    #[error("invalid character in query")]
    InvalidCharacter,
    /// A raw byte outside ASCII; a compliant client percent-encodes these.
    #[error("non-ASCII byte in query")]
    NonAscii,
    /// A `%` not followed by two hexadecimal digits.
    #[error("invalid percent-encoding in query")]
    InvalidPercentEncoding,
    /// Escapes that decode to bytes which are not UTF-8.
    #[error("percent-encoded invalid UTF-8 in query")]
    InvalidUtf8,
}

/// Byte classes of a raw query.
const ALLOWED: u8 = 0;
const PERCENT: u8 = 1;
const NON_ASCII: u8 = 2;
const INVALID: u8 = 3;

/// RFC 3986 §3.4: `query = *( pchar / "/" / "?" )`, with
/// `pchar = unreserved / pct-encoded / sub-delims / ":" / "@"`.
const fn build_query_classes() -> [u8; 256] {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = match i as u8 {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => ALLOWED,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => ALLOWED,
            b':' | b'@' | b'/' | b'?' => ALLOWED,
            b'%' => PERCENT,
            0x80..=0xFF => NON_ASCII,
            _ => INVALID,
        };
        i += 1;
    }
    t
}

static QUERY_CLASSES: [u8; 256] = build_query_classes();

/// Accepts a raw query (after `?`, without it) that is RFC 3986 grammar with
/// every escape well formed and all escapes together decoding to UTF-8.
/// One pass over the bytes; no allocation.
pub fn check_query(query: &str) -> Result<(), QueryError> {
    let bytes = query.as_bytes();
    let mut utf8 = Utf8Sequence::default();
    let mut i = 0;
    while i < bytes.len() {
        match QUERY_CLASSES[usize::from(bytes[i])] {
            ALLOWED => {
                // A raw ASCII byte inside a multi-byte sequence breaks it.
                utf8.end().map_err(|_| QueryError::InvalidUtf8)?;
                i += 1;
            }
            PERCENT => {
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).copied().and_then(hex_value),
                    bytes.get(i + 2).copied().and_then(hex_value),
                ) else {
                    return Err(QueryError::InvalidPercentEncoding);
                };
                utf8.push((hi << 4) | lo)
                    .map_err(|_| QueryError::InvalidUtf8)?;
                i += 3;
            }
            NON_ASCII => return Err(QueryError::NonAscii),
            _ => return Err(QueryError::InvalidCharacter),
        }
    }
    utf8.end().map_err(|_| QueryError::InvalidUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err(query: &str) -> QueryError {
        match check_query(query) {
            Ok(()) => panic!("{query:?} was accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn an_arcgis_export_query_is_accepted() {
        assert_eq!(check_query("bbox=1,2,3,4&f=json&token=abc%2Bdef"), Ok(()));
    }

    #[test]
    fn percent_encoded_json_sql_and_text_are_accepted() {
        let q = "geometry=%7B%22x%22%3A1%7D&where=NAME+LIKE+%27A%25%27%0A&text=caf%c3%a9%E2%82%AC%F0%9F%97%BA&outFields=*";
        assert_eq!(check_query(q), Ok(()));
    }

    #[test]
    fn every_character_rfc_3986_allows_is_accepted() {
        assert_eq!(check_query("a=/b?c:d@e!$&'()*+,;=f-._~gZ09"), Ok(()));
        assert_eq!(check_query(""), Ok(()));
    }

    #[test]
    fn characters_tomcat_refuses_are_refused() {
        for q in ["a=[0]", "a=\\", "a=^", "a=`", "a={x}", "a=1|2", "a=]"] {
            assert_eq!(err(q), QueryError::InvalidCharacter, "{q}");
        }
    }

    #[test]
    fn characters_the_http_parser_refuses_are_refused_too() {
        for q in ["a=\"", "a=<", "a=>", "a= ", "a=#", "a=\r", "a=\0", "a=\x7f"] {
            assert_eq!(err(q), QueryError::InvalidCharacter, "{q:?}");
        }
    }

    #[test]
    fn raw_non_ascii_is_refused() {
        assert_eq!(err("text=caf\u{e9}"), QueryError::NonAscii);
    }

    #[test]
    fn a_percent_that_is_not_an_escape_is_refused() {
        assert_eq!(err("a=%zz"), QueryError::InvalidPercentEncoding);
        assert_eq!(err("a=%4"), QueryError::InvalidPercentEncoding);
        assert_eq!(err("a=%"), QueryError::InvalidPercentEncoding);
        assert_eq!(err("a=%%41"), QueryError::InvalidPercentEncoding);
    }

    #[test]
    fn escapes_of_invalid_utf8_are_refused() {
        for q in [
            "a=%FF",
            "a=%C0%AF",
            "a=%C1%BF",
            "a=%80",
            "a=%E2%82",
            "a=%E2%82x",
            "a=%E2%82%41",
            "a=%E0%80%AF",
            "a=%ED%A0%80",
            "a=%F4%90%80%80",
            "a=%F8%88%80%80%80",
            "a=%C3%A9%A9",
        ] {
            assert_eq!(err(q), QueryError::InvalidUtf8, "{q}");
        }
    }

    #[test]
    fn error_display_never_echoes_the_input() {
        assert!(!err("secret=%zz").to_string().contains("secret"));
    }

    /// The model: a query is accepted exactly when its raw bytes are RFC
    /// 3986 query characters and percent-decoding all of it yields UTF-8.
    fn model(query: &str) -> bool {
        let bytes = query.as_bytes();
        let mut decoded = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b == b'%' {
                let hex = |j: usize| bytes.get(j).copied().and_then(hex_value);
                let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                    return false;
                };
                decoded.push((hi << 4) | lo);
                i += 3;
            } else if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&b) {
                decoded.push(b);
                i += 1;
            } else {
                return false;
            }
        }
        std::str::from_utf8(&decoded).is_ok()
    }

    const PIECES: &[&str] = &[
        "a", "=", "&", "%", "%4", "%41", "%7B", "%c3", "%A9", "%E2", "%82", "%AC", "%F0", "%9F",
        "%ED", "%A0", "%C0", "%AF", "%FF", "{", "\\", "|", "\u{e9}", "+", "%2B",
    ];

    proptest! {
        #[test]
        fn check_query_agrees_with_the_model(
            parts in prop::collection::vec(prop::sample::select(PIECES), 0..12)
        ) {
            let q = parts.concat();
            prop_assert_eq!(check_query(&q).is_ok(), model(&q), "{:?}", q);
        }

        #[test]
        fn printable_ascii_agrees_with_the_model(q in "[ -~]{0,40}") {
            prop_assert_eq!(check_query(&q).is_ok(), model(&q), "{:?}", q);
        }

        #[test]
        fn arbitrary_input_never_panics(q in any::<String>()) {
            let _ = check_query(&q);
        }
    }
}
