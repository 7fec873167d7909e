//! A minimal JSON lexer for the safetensors header: no allocation, no
//! recursion (the header is two levels deep, so the callers drive the
//! nesting), every malformed byte a typed error.
//!
//! Strings stay escaped in the input; [`JsonStr`] compares and decodes them
//! lazily, so names are borrowed from the file, never copied.

use super::error::InferError;

/// A JSON string as it appears in the text, between the quotes, escapes
/// intact. Its escapes were validated when it was lexed.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonStr<'a> {
    raw: &'a str,
}

impl JsonStr<'static> {
    pub(crate) const EMPTY: JsonStr<'static> = JsonStr { raw: "" };
}

impl<'a> JsonStr<'a> {
    /// The escaped text between the quotes.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// The string without escapes, when it has none (the common case).
    pub fn as_plain(&self) -> Option<&'a str> {
        if self.raw.contains('\\') { None } else { Some(self.raw) }
    }

    /// The decoded characters.
    pub fn chars(&self) -> impl Iterator<Item = char> + 'a {
        let raw = self.raw.as_bytes();
        let mut i = 0;
        core::iter::from_fn(move || decode_next(raw, &mut i).ok().flatten())
    }

    /// True when the decoded string equals `s`.
    pub fn eq_str(&self, s: &str) -> bool {
        match self.as_plain() {
            Some(p) => p == s,
            None => self.chars().eq(s.chars()),
        }
    }

    /// True when both decode to the same string.
    pub fn same(&self, other: &JsonStr<'_>) -> bool {
        match (self.as_plain(), other.as_plain()) {
            (Some(a), Some(b)) => a == b,
            _ => self.chars().eq(other.chars()),
        }
    }

    /// Decodes into `buf`, returning the used prefix, or `None` if it does
    /// not fit.
    pub fn decode_into<'b>(&self, buf: &'b mut [u8]) -> Option<&'b [u8]> {
        let mut n = 0;
        for c in self.chars() {
            let mut tmp = [0u8; 4];
            let s = c.encode_utf8(&mut tmp).as_bytes();
            buf.get_mut(n..n + s.len())?.copy_from_slice(s);
            n += s.len();
        }
        Some(&buf[..n])
    }
}

fn hex4(raw: &[u8], at: usize) -> Result<u32, &'static str> {
    let digits = raw.get(at..at + 4).ok_or("truncated \\u escape")?;
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = (d as char).to_digit(16).ok_or("\\u escape needs 4 hex digits")?;
        Ok(acc * 16 + v)
    })
}

/// Decodes one character of an escaped string at `*i` (valid UTF-8 text).
fn decode_next(raw: &[u8], i: &mut usize) -> Result<Option<char>, &'static str> {
    let Some(&b) = raw.get(*i) else { return Ok(None) };
    if b != b'\\' {
        // `raw` came from a `&str` and `*i` is on a char boundary.
        let s = core::str::from_utf8(&raw[*i..]).map_err(|_| "string is not UTF-8")?;
        let c = s.chars().next().ok_or("empty")?;
        *i += c.len_utf8();
        return Ok(Some(c));
    }
    let e = *raw.get(*i + 1).ok_or("truncated escape")?;
    *i += 2;
    let c = match e {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let hi = hex4(raw, *i)?;
            *i += 4;
            let code = if (0xD800..0xDC00).contains(&hi) {
                if raw.get(*i..*i + 2) != Some(b"\\u") {
                    return Err("unpaired surrogate");
                }
                let lo = hex4(raw, *i + 2)?;
                if !(0xDC00..0xE000).contains(&lo) {
                    return Err("unpaired surrogate");
                }
                *i += 6;
                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
            } else {
                hi
            };
            char::from_u32(code).ok_or("unpaired surrogate")?
        }
        _ => return Err("unknown escape"),
    };
    Ok(Some(c))
}

/// A cursor over JSON text.
pub(crate) struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(text: &'a str) -> Self {
        Self { text, pos: 0 }
    }

    pub fn err(&self, reason: &'static str) -> InferError {
        InferError::InvalidJson { offset: self.pos, reason }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// Next non-whitespace byte, not consumed.
    pub fn peek(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes().get(self.pos) {
            self.pos += 1;
        }
        self.bytes().get(self.pos).copied()
    }

    pub fn expect(&mut self, c: u8, reason: &'static str) -> Result<(), InferError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(reason))
        }
    }

    /// After an item of an object or array: `true` if another follows
    /// (a comma was eaten), `false` at the closing bracket (eaten).
    pub fn more(&mut self, close: u8) -> Result<bool, InferError> {
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(true)
            }
            Some(c) if c == close => {
                self.pos += 1;
                Ok(false)
            }
            _ => Err(self.err(if close == b'}' { "expected ',' or '}'" } else { "expected ',' or ']'" })),
        }
    }

    /// Opens an object or array; `true` if it is empty (and already closed).
    pub fn open(&mut self, open: u8, close: u8) -> Result<bool, InferError> {
        self.expect(open, if open == b'{' { "expected '{'" } else { "expected '['" })?;
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(true);
        }
        Ok(false)
    }

    pub fn string(&mut self) -> Result<JsonStr<'a>, InferError> {
        self.expect(b'"', "expected a string")?;
        let start = self.pos;
        let b = self.bytes();
        loop {
            match b.get(self.pos) {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => break,
                Some(&c) if c < 0x20 => return Err(self.err("control character in string")),
                Some(b'\\') => {
                    let mut i = self.pos;
                    decode_next(b, &mut i).map_err(|r| self.err(r))?;
                    self.pos = i;
                }
                Some(_) => self.pos += 1,
            }
        }
        // Both ends are ASCII quotes, so the slice is on char boundaries.
        let raw = self.text.get(start..self.pos).ok_or_else(|| self.err("string is not UTF-8"))?;
        self.pos += 1;
        Ok(JsonStr { raw })
    }

    /// A key and its colon.
    pub fn key(&mut self) -> Result<JsonStr<'a>, InferError> {
        let k = self.string()?;
        self.expect(b':', "expected ':'")?;
        Ok(k)
    }

    /// A non-negative integer (no sign, fraction or exponent).
    pub fn unsigned(&mut self) -> Result<u64, InferError> {
        let start = match self.peek() {
            Some(b'0'..=b'9') => self.pos,
            _ => return Err(self.err("expected a non-negative integer")),
        };
        let mut v: u64 = 0;
        while let Some(&d @ b'0'..=b'9') = self.bytes().get(self.pos) {
            if self.pos > start && self.bytes()[start] == b'0' {
                return Err(self.err("leading zero"));
            }
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
                .ok_or_else(|| self.err("integer too large"))?;
            self.pos += 1;
        }
        if let Some(b'.' | b'e' | b'E') = self.bytes().get(self.pos) {
            return Err(self.err("expected an integer"));
        }
        Ok(v)
    }

    pub fn usize(&mut self) -> Result<usize, InferError> {
        let at = self.pos;
        let v = self.unsigned()?;
        usize::try_from(v).map_err(|_| InferError::InvalidJson { offset: at, reason: "integer too large" })
    }

    pub fn boolean(&mut self) -> Result<bool, InferError> {
        self.peek();
        let rest = &self.bytes()[self.pos..];
        if rest.starts_with(b"true") {
            self.pos += 4;
            Ok(true)
        } else if rest.starts_with(b"false") {
            self.pos += 5;
            Ok(false)
        } else {
            Err(self.err("expected true or false"))
        }
    }

    /// Only whitespace remains.
    pub fn finish(&mut self) -> Result<(), InferError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.err("trailing characters after the JSON value")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_decode_and_compare() {
        let mut lx = Lexer::new(r#""a\u0062\n\ud83d\ude00""#);
        let s = lx.string().unwrap();
        assert!(s.eq_str("ab\n\u{1F600}"));
        assert!(!s.eq_str("ab\n"));
        let mut buf = [0u8; 16];
        assert_eq!(s.decode_into(&mut buf).unwrap(), "ab\n\u{1F600}".as_bytes());
        let mut small = [0u8; 2];
        assert!(s.decode_into(&mut small).is_none());
    }

    #[test]
    fn bad_strings_are_errors() {
        for t in [r#""\x""#, r#""\u12""#, r#""\ud800""#, r#""\ud800\u0041""#, "\"a\u{1}\"", "\"abc"] {
            assert!(matches!(Lexer::new(t).string(), Err(InferError::InvalidJson { .. })), "{t}");
        }
    }

    #[test]
    fn integers() {
        assert_eq!(Lexer::new(" 0").unsigned().unwrap(), 0);
        assert_eq!(Lexer::new("18446744073709551615").unsigned().unwrap(), u64::MAX);
        for t in ["18446744073709551616", "01", "-1", "1.5", "1e3", ""] {
            assert!(Lexer::new(t).unsigned().is_err(), "{t}");
        }
    }
}
