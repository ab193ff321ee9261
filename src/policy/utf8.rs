//! UTF-8 spelled by percent-escapes: the path and the query refuse escaped
//! bytes that are not UTF-8, each in its own error type.

/// Escaped bytes that are not UTF-8: an overlong form, a surrogate, a code
/// point above U+10FFFF, a lone or misplaced byte, a sequence cut short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NotUtf8;

/// The UTF-8 sequence being decoded from consecutive escapes.
#[derive(Default)]
pub(super) struct Utf8Sequence {
    bytes: [u8; 4],
    /// Bytes of the sequence seen so far; 0 between sequences.
    seen: usize,
    /// Its length, from the lead byte.
    len: usize,
}

impl Utf8Sequence {
    /// One escaped byte.
    pub(super) fn push(&mut self, b: u8) -> Result<(), NotUtf8> {
        if self.seen == 0 {
            // RFC 3629 §4: C0, C1 (overlong) and F5-FF never lead; a
            // continuation byte (80-BF) cannot start a sequence.
            self.len = match b {
                0x00..=0x7F => return Ok(()),
                0xC2..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF4 => 4,
                _ => return Err(NotUtf8),
            };
        }
        self.bytes[self.seen] = b;
        self.seen += 1;
        if self.seen == self.len {
            // The standard library checks the rest: continuation bytes,
            // overlong forms, surrogates, code points above U+10FFFF.
            std::str::from_utf8(&self.bytes[..self.len]).map_err(|_| NotUtf8)?;
            self.seen = 0;
        }
        Ok(())
    }

    /// Anything but an escaped byte (a raw byte, a separator, the end):
    /// no sequence may be open.
    pub(super) fn end(&self) -> Result<(), NotUtf8> {
        match self.seen {
            0 => Ok(()),
            _ => Err(NotUtf8),
        }
    }
}
