//! TOML syntax errors told where the mistake is, not where the parser gave
//! up: an unclosed `[` on line 38 makes the parser fail at line 55 with
//! "missing comma between array elements", so the bracket, brace or quote
//! that was opened and never closed is found here and named instead; a
//! duplicate table or key is named with the line where it first appeared.

/// A syntax error's position (byte offset) and message, given the parser's
/// offset and message; `None` when none of the common cases applies.
pub fn explain(text: &str, parser_offset: usize, parser_message: &str) -> Option<(usize, String)> {
    if parser_message.contains("duplicate key") {
        return duplicate(text, parser_offset);
    }
    let (offset, opener) = unclosed(text)?;
    if offset > parser_offset {
        return None;
    }
    let message = match opener {
        Opener::Bracket => "this [ is never closed (a ] is missing)",
        Opener::Brace => "this { is never closed (a } is missing)",
        Opener::Quote('"') => "this string is never closed (a \" is missing)",
        Opener::Quote(_) => "this string is never closed (a ' is missing)",
        Opener::Header => "this table header is never closed (a ] is missing)",
    };
    Some((offset, message.to_string()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opener {
    Bracket,
    Brace,
    Quote(char),
    Header,
}

/// The first opener in the file that is never closed: the outermost
/// unclosed `[` or `{`, a string without its closing quote, or a table
/// header without its `]`.
fn unclosed(text: &str) -> Option<(usize, Opener)> {
    let bytes = text.as_bytes();
    let mut stack: Vec<(usize, Opener)> = Vec::new();
    let mut line_start = true;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\n' => {
                line_start = true;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                i = find_from(bytes, i, b"\n").unwrap_or(bytes.len());
                continue;
            }
            b'"' | b'\'' => {
                let triple = [c, c, c];
                if bytes[i..].starts_with(&triple) {
                    match find_from(bytes, i + 3, &triple) {
                        Some(end) => i = end + 3,
                        None => return Some((i, Opener::Quote(c as char))),
                    }
                } else {
                    let mut j = i + 1;
                    loop {
                        match bytes.get(j) {
                            None | Some(b'\n') => return Some((i, Opener::Quote(c as char))),
                            Some(b'\\') if c == b'"' => j += 2,
                            Some(&b) if b == c => break,
                            Some(_) => j += 1,
                        }
                    }
                    i = j + 1;
                }
            }
            b'[' if line_start && stack.is_empty() => {
                let end = find_from(bytes, i, b"\n").unwrap_or(bytes.len());
                if !text[i..end].contains(']') {
                    return Some((i, Opener::Header));
                }
                i = end;
            }
            b'[' => {
                stack.push((i, Opener::Bracket));
                i += 1;
            }
            b'{' => {
                stack.push((i, Opener::Brace));
                i += 1;
            }
            b']' | b'}' => {
                let want = if c == b']' {
                    Opener::Bracket
                } else {
                    Opener::Brace
                };
                if stack.last().is_some_and(|(_, o)| *o == want) {
                    stack.pop();
                }
                i += 1;
            }
            _ => i += 1,
        }
        line_start = false;
    }
    stack.first().copied()
}

fn find_from(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// A table header's name with the spaces TOML allows around dots removed:
/// `[ tls . sni ]` is `tls.sni`.
fn header_name(line: &str) -> Option<String> {
    let line = line.trim();
    let inner = line.strip_prefix('[')?;
    let inner = inner.strip_prefix('[').unwrap_or(inner);
    let name = inner.split(']').next()?;
    Some(name.split('.').map(str::trim).collect::<Vec<_>>().join("."))
}

/// The key a `key = value` line sets, without quotes or spaces.
fn line_key(line: &str) -> Option<String> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && !key.starts_with('[') && !key.starts_with('#')).then(|| {
        key.split('.')
            .map(|p| p.trim().trim_matches('"').trim_matches('\''))
            .collect::<Vec<_>>()
            .join(".")
    })
}

/// `table [tls] is defined twice (first at line 5)` or `tls.key is set
/// twice (first at line 7)`, at the start of the second one's line.
fn duplicate(text: &str, offset: usize) -> Option<(usize, String)> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let before: Vec<&str> = text[..line_start].lines().collect();
    if line.trim_start().starts_with('[') && !line.trim_start().starts_with("[[") {
        let name = header_name(line)?;
        let first = before.iter().position(|l| {
            !l.trim_start().starts_with("[[") && header_name(l) == Some(name.clone())
        });
        let message = match first {
            Some(n) => format!("table [{name}] is defined twice (first at line {})", n + 1),
            None => format!("table [{name}] is defined twice"),
        };
        return Some((line_start, message));
    }
    let key = line_key(line)?;
    // The section the key is in starts at the nearest header above it.
    let section = before
        .iter()
        .rposition(|l| l.trim_start().starts_with('['))
        .map_or(0, |n| n + 1);
    let table = section.checked_sub(1).and_then(|n| header_name(before[n]));
    let full = match &table {
        Some(t) => format!("{t}.{key}"),
        None => key.clone(),
    };
    let first = before[section..]
        .iter()
        .position(|l| line_key(l).as_deref() == Some(key.as_str()))
        .map(|n| section + n + 1);
    let message = match first {
        Some(n) => format!("{full} is set twice (first at line {n})"),
        None => format!("{full} is set twice"),
    };
    Some((line_start, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_and_quotes_inside_strings_and_comments_do_not_count() {
        let text = "a = \"[{\" # [ {\nb = '['\nc = [\"]\", [1, 2]]\n[t]\nd = \"\"\"\n[\n\"\"\"\n";
        assert_eq!(unclosed(text), None);
    }

    #[test]
    fn the_outermost_unclosed_bracket_is_named() {
        let text = "[a]\nb = [[1, 2],\n[c]\nd = 1\n";
        assert_eq!(unclosed(text), Some((8, Opener::Bracket)));
    }

    #[test]
    fn an_unclosed_table_header_is_named() {
        assert_eq!(
            unclosed("[a]\nb = 1\n[tls\nc = 2\n"),
            Some((10, Opener::Header))
        );
    }
}
