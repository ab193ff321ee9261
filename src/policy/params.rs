//! Reading one parameter of a query as the upstream (a Java servlet
//! container) will: `&`-separated `name=value` pairs, `+` as space and
//! percent-escapes decoded. The query has passed [`super::query::check_query`],
//! so every escape is well formed.

use std::borrow::Cow;

use super::path::hex_value;

/// The decoded values of every parameter named `name` (ASCII
/// case-insensitively: fail closed against a servlet, filter or script
/// that reads names either way). A name without `=` has the value `""`.
pub fn values<'q>(query: &'q str, name: &'q str) -> impl Iterator<Item = Cow<'q, str>> + 'q {
    query.split('&').filter_map(move |pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        decode(key)
            .eq_ignore_ascii_case(name)
            .then(|| decode(value))
    })
}

/// Whether the query has a parameter named `name`, whatever its value.
pub fn has(query: &str, name: &str) -> bool {
    values(query, name).next().is_some()
}

fn decode(text: &str) -> Cow<'_, str> {
    if !text.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex_value(*hi).zip(hex_value(*lo)),
            _ => None,
        };
        match (bytes[i], escaped) {
            (_, Some((hi, lo))) => {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
            (b'+', None) => out.push(b' '),
            (b, None) => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_decoded_and_matched_case_insensitively() {
        assert!(has("username=a&password=b", "password"));
        assert!(has("username=a&PassWord=b", "password"));
        assert!(has("username=a&pass%77ord=b", "password"));
        assert!(has("password", "password"));
        assert!(!has("username=a&passwords=b", "password"));
        assert!(!has("f=json", "password"));
    }

    #[test]
    fn values_are_decoded_as_a_servlet_reads_them() {
        let v: Vec<_> = values("f=ht%6Dl&f=a+b&x=1", "f").collect();
        assert_eq!(v, ["html", "a b"]);
    }
}
