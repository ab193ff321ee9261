//! Request targets made to confuse a path parser: GIS path segments put
//! together from a seed and then mutated the ways real attacks and broken
//! clients mutate them (percent-encoding in either case, double encoding,
//! overlong UTF-8, dot segments, `;` path parameters, case, backslashes,
//! Unicode, absolute-form, what trails a path). Deterministic: the same seed
//! gives the same targets, so a failure names a target that reproduces.
//! Also the corpus file's escaping, one target per line.

use std::collections::BTreeSet;

/// splitmix64: small, seeded, and good enough to spread choices.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True `percent` times in a hundred.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The second segment: the GIS contexts, their near misses and other names.
const CONTEXT_NAMES: &[&str] = &[
    "admin", "admin", "admin", "manager", "manager", "rest", "tokens", "sharing", "Admin", "ADMIN",
    "MANAGER", "adminx", "admin.", "admin-", "admi", "services", "login", "help",
];

/// Deeper segments, some of them dot segments.
const TAIL_NAMES: &[&str] = &[
    "services",
    "info",
    "generateToken",
    "security",
    "config",
    "machines",
    "System",
    "login",
    "admin",
    "manager",
    "rest",
    "x",
    "..",
    "..",
    ".",
    "f=json",
    "index.html",
    "WEB-INF",
];

/// Prefixes of absolute-form targets (RFC 9112 §3.2.2).
const ABSOLUTE_PREFIXES: &[&str] = &[
    "https://localhost",
    "http://localhost",
    "https://LOCALHOST",
    "https://localhost:443",
    "https://127.0.0.1",
    "https://evil.example",
];

/// What may follow the path.
const TRAILERS: &[&str] = &[
    "/",
    "?f=json",
    "?a=/../admin",
    "#frag",
    "%23x",
    "%3Fx",
    "%00",
    "%20",
    " x",
    "/..",
    "/.",
    "/..;",
    "?",
    "%",
    "%2",
    "%zz",
    "%u0061",
    ";",
    ";/",
    "%3B",
    "/%2e%2e",
    "~",
    "*",
];

/// What may stand between two segments instead of one `/`.
const SEPARATORS: &[&str] = &[
    "//",
    "\\",
    "%5c",
    "%5C",
    "%2f",
    "%2F",
    "/./",
    "/%2e/",
    "/%2E/",
    "/.;/",
    "/;/",
    ";/",
    "%252f",
    "%c0%af",
    "%e0%80%af",
    "/\\",
    "%u002f",
    "///",
];

/// Path parameters (`;` up to the next `/`, which Tomcat drops).
const PARAMS: &[&str] = &[
    "",
    "x=1",
    "jsessionid=ABC",
    "..",
    "/..",
    "a=%2f",
    "%2e%2e",
    ".",
    "admin",
];

/// `count` distinct targets from `seed`, none of them in `skip` (the
/// corpus, sent anyway): clean targets come up again and again, and a
/// repeat would test nothing new.
pub fn generate(seed: u64, count: usize, skip: &BTreeSet<Vec<u8>>) -> Vec<Vec<u8>> {
    let mut rng = Rng::new(seed);
    let mut seen = skip.clone();
    let mut out = Vec::with_capacity(count);
    // Bounded: a generator that ran out of new targets must not spin.
    for _ in 0..count * 20 {
        if out.len() == count {
            break;
        }
        let target = one(&mut rng);
        if seen.insert(target.clone()) {
            out.push(target);
        }
    }
    assert_eq!(out.len(), count, "the generator ran out of new targets");
    out
}

fn one(rng: &mut Rng) -> Vec<u8> {
    let segments = segments(rng);
    // Some targets are clean, some lightly and some heavily mutated.
    let rate = *rng.pick(&[0u64, 4, 10, 25]);
    let mut out = Vec::new();
    if rng.chance(8) {
        out.extend_from_slice(rng.pick(ABSOLUTE_PREFIXES).as_bytes());
    }
    for segment in &segments {
        out.extend_from_slice(separator(rng, rate).as_bytes());
        for c in segment.chars() {
            mutate_char(rng, rate, c, &mut out);
        }
        if rng.chance(rate / 2) {
            out.push(b';');
            out.extend_from_slice(rng.pick(PARAMS).as_bytes());
        }
    }
    if rng.chance(25) {
        out.extend_from_slice(rng.pick(TRAILERS).as_bytes());
    }
    if rng.chance(2) {
        // A target that is not absolute at all.
        out.remove(0);
    }
    out
}

/// `arcgis`, a context name, and up to three more segments, with a detour
/// through dot segments now and then (`/arcgis/rest/../admin`).
fn segments(rng: &mut Rng) -> Vec<String> {
    let mut s = Vec::new();
    if rng.chance(90) {
        s.push("arcgis".to_string());
    } else {
        s.push(
            rng.pick(&["ARCGIS", "ArcGIS", "x", ".", "..", "arcgis."])
                .to_string(),
        );
    }
    if rng.chance(25) {
        // Climb back out of a harmless context into another one.
        s.push(rng.pick(&["rest", "tokens", "sharing", "x"]).to_string());
        if rng.chance(50) {
            s.push("services".to_string());
            s.push("..".to_string());
        }
        s.push("..".to_string());
    }
    s.push(rng.pick(CONTEXT_NAMES).to_string());
    for _ in 0..rng.below(4) {
        s.push(rng.pick(TAIL_NAMES).to_string());
    }
    s
}

fn separator(rng: &mut Rng, rate: u64) -> &'static str {
    if rng.chance(rate / 2) {
        SEPARATORS[rng.below(SEPARATORS.len())]
    } else {
        "/"
    }
}

/// Appends `c`, or one of its disguises.
fn mutate_char(rng: &mut Rng, rate: u64, c: char, out: &mut Vec<u8>) {
    if !rng.chance(rate) {
        push_char(out, c);
        return;
    }
    let b = c as u32;
    match rng.below(9) {
        0 => out.extend_from_slice(format!("%{b:02X}").as_bytes()),
        1 => out.extend_from_slice(format!("%{b:02x}").as_bytes()),
        // Double encoding: `%2561` is `%61` once decoded.
        2 => out.extend_from_slice(format!("%25{b:02x}").as_bytes()),
        // Overlong UTF-8: two and three bytes for an ASCII character.
        3 => out.extend_from_slice(
            format!("%{:02X}%{:02X}", 0xC0 | (b >> 6), 0x80 | (b & 0x3F)).as_bytes(),
        ),
        4 => out.extend_from_slice(
            format!("%E0%{:02X}%{:02X}", 0x80 | (b >> 6), 0x80 | (b & 0x3F)).as_bytes(),
        ),
        5 => push_char(out, flip_case(c)),
        // Fullwidth forms (U+FF01..), raw or percent-encoded UTF-8.
        6 => push_unicode(rng, out, fullwidth(c)),
        // A combining accent after the character.
        7 => {
            push_char(out, c);
            push_unicode(rng, out, '\u{0301}');
        }
        // Lookalikes some case-folding code equates with ASCII.
        _ => push_unicode(rng, out, lookalike(c)),
    }
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

fn push_unicode(rng: &mut Rng, out: &mut Vec<u8>, c: char) {
    if rng.chance(50) {
        push_char(out, c);
    } else {
        let mut buf = [0u8; 4];
        for b in c.encode_utf8(&mut buf).bytes() {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
}

fn flip_case(c: char) -> char {
    if c.is_ascii_lowercase() {
        c.to_ascii_uppercase()
    } else {
        c.to_ascii_lowercase()
    }
}

fn fullwidth(c: char) -> char {
    match c {
        '!'..='~' => char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap_or(c),
        _ => c,
    }
}

fn lookalike(c: char) -> char {
    match c {
        'i' => '\u{0131}', // dotless i: its upper case is `I`
        'k' => '\u{212A}', // Kelvin sign: its lower case is `k`
        's' => '\u{017F}', // long s: its upper case is `S`
        'a' => '\u{0430}', // Cyrillic a
        '.' => '\u{2024}', // one dot leader
        '/' => '\u{2215}', // division slash
        _ => fullwidth(c),
    }
}

/// One target as a corpus line: printable ASCII as is, `\` as `\\`, every
/// other byte (space, controls, UTF-8) as `\xHH`.
pub fn escape(target: &[u8]) -> String {
    let mut line = String::new();
    for &b in target {
        match b {
            b'\\' => line.push_str("\\\\"),
            0x21..=0x7E => line.push(char::from(b)),
            _ => line.push_str(&format!("\\x{b:02X}")),
        }
    }
    line
}

/// The inverse of `escape`.
pub fn unescape(line: &str) -> Vec<u8> {
    let bytes = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (b'\\', Some(b'\\')) => {
                out.push(b'\\');
                i += 2;
            }
            (b'\\', Some(b'x')) => {
                let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The corpus file's targets: one per line; blank lines and lines starting
/// with `# ` are comments.
pub fn parse_corpus(text: &str) -> Vec<Vec<u8>> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with("# "))
        .map(unescape)
        .collect()
}

#[test]
fn corpus_escaping_round_trips() {
    let target = b"/arcgis\\a dmin\xC0\xAE/\xEF\xBD\x81\\x41".to_vec();
    assert_eq!(unescape(&escape(&target)), target);
}
