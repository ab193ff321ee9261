//! Splitting one fuzzer input into the several values a target needs.
//! Fields are separated by `\n`, so a saved input reads as text.

/// The first byte as flags (0 for empty input), and the rest.
pub fn flags(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&first, rest)) => (first, rest),
        None => (0, data),
    }
}

/// The first `n` fields of `data` split at `\n` (missing ones empty); the
/// last takes the rest, newlines included.
pub fn fields(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = data.splitn(n, |&b| b == b'\n').collect();
    out.resize(n, &[]);
    out
}

/// Text as the gateway would hold it: invalid UTF-8 becomes U+FFFD, which
/// every parser here refuses like the raw byte it replaces.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
