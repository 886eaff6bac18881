//! The JSON tree the core reads documents from, a JSON string writer, and (natively only) a
//! strict RFC 8259 reader.
//!
//! In the package, `JSON.parse` reads every document (the platform does it well, and it costs
//! no bytes of wasm); the wasm glue turns its result into a [`Json`]. The reader below is not
//! compiled for wasm: it serves native tests and tools, which have no `JSON.parse`, and it is
//! as strict as `JSON.parse` so both agree on what a document is.
#![forbid(unsafe_code)]

#[allow(unused_imports)]
use crate::prelude::*;

/// Containers nested deeper than this are rejected, which bounds the recursion of the reader.
#[cfg(not(target_arch = "wasm32"))]
const MAX_DEPTH: usize = 64;

/// A parsed JSON value.
///
/// Objects keep their members in document order, duplicates included; [`Json::get`] returns the
/// LAST member with a key, as `JSON.parse` does, so both sides of the wasm boundary agree on
/// which value a duplicated key has.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// Any number; always finite (numbers that overflow `f64` are rejected by [`parse`]).
    Number(f64),
    /// A string with every escape decoded.
    String(String),
    /// An array, in document order.
    Array(Vec<Json>),
    /// An object's members, in document order, duplicates included.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The value of the last member named `key`; `None` if there is none or `self` is not an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The text of a string value; `None` for any other kind of value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value of a number; `None` for any other kind of value (no coercion from strings).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The value of a boolean; `None` for any other kind of value (no truthiness).
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Whether this is an object: the protocol's documents must be objects at the top level.
    pub fn is_object(&self) -> bool {
        matches!(self, Json::Object(_))
    }
}

/// Why a document failed to parse.
///
/// Carries a byte offset and a static reason only — NEVER any of the input text: responses can
/// contain tokens, and errors end up in logs and in exceptions thrown to JavaScript.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// Byte offset into the input where the problem was found.
    pub offset: usize,
    /// What was wrong there, e.g. `"unexpected end of input"`.
    pub reason: &'static str,
}

#[cfg(not(target_arch = "wasm32"))]
impl ::core::fmt::Display for JsonError {
    fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
        write!(f, "invalid JSON at byte {}: {}", self.offset, self.reason)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl ::core::error::Error for JsonError {}

#[cfg(not(target_arch = "wasm32"))]
const EOF: &str = "unexpected end of input";

/// Parses one complete JSON document (RFC 8259, strictly).
///
/// The input must be UTF-8 without a byte order mark; whitespace is only space, tab, LF and CR;
/// containers may nest at most 64 deep; numbers follow the RFC grammar exactly and must fit in an
/// `f64` (`1e400` is rejected rather than read as infinity); strings may not hold raw control
/// characters or unpaired surrogate escapes; nothing but whitespace may follow the value.
///
/// # Errors
///
/// A [`JsonError`] with the byte offset of the first problem, for any input that is not exactly
/// one such document.
#[cfg(not(target_arch = "wasm32"))]
pub fn parse(input: &[u8]) -> Result<Json, JsonError> {
    let mut p = Parser { bytes: input, pos: 0 };
    let value = p.value(0)?;
    p.skip_ws();
    if p.pos != input.len() {
        return Err(p.err("trailing characters"));
    }
    Ok(value)
}

/// Appends `s` as a JSON string literal (with quotes).
///
/// Escapes `"`, `\` and every control character (`char::is_control`: U+0000–U+001F, U+007F and
/// U+0080–U+009F): `\n \r \t \b \f` by name, the others as `\u00XX`. Everything else, `/` and
/// non-ASCII text included, is copied as is.
pub fn write_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push('"');
    let mut run = 0;
    for (i, c) in s.char_indices() {
        let named = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{8}' => "\\b",
            '\u{c}' => "\\f",
            c if c.is_control() => "",
            _ => continue,
        };
        out.push_str(&s[run..i]);
        if named.is_empty() {
            // Every control character is below U+00A0, so two hex digits suffice.
            let n = c as usize;
            out.push_str("\\u00");
            out.push(HEX[(n >> 4) & 0xf] as char);
            out.push(HEX[n & 0xf] as char);
        } else {
            out.push_str(named);
        }
        run = i + c.len_utf8();
    }
    out.push_str(&s[run..]);
    out.push('"');
}

#[cfg(not(target_arch = "wasm32"))]
struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

#[cfg(not(target_arch = "wasm32"))]
impl Parser<'_> {
    fn err(&self, reason: &'static str) -> JsonError {
        JsonError {
            offset: self.pos,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Reads a value after optional whitespace; `depth` is the number of enclosing containers.
    fn value(&mut self, depth: usize) -> Result<Json, JsonError> {
        self.skip_ws();
        match self.peek() {
            None => Err(self.err(EOF)),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(Json::String),
            Some(b't') => self.literal(b"true", Json::Bool(true)),
            Some(b'f') => self.literal(b"false", Json::Bool(false)),
            Some(b'n') => self.literal(b"null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    fn literal(&mut self, word: &'static [u8], value: Json) -> Result<Json, JsonError> {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(self.err("invalid literal"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Json, JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.err("leading zero in number"));
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.err("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("invalid number"));
            }
        }
        // The slice is ASCII by construction, so neither step can fail; map errors anyway
        // rather than unwrap.
        let n = number_value(&self.bytes[start..self.pos]);
        if !n.is_finite() {
            return Err(JsonError {
                offset: start,
                reason: "number out of range",
            });
        }
        Ok(Json::Number(n))
    }

    /// Appends the raw (unescaped) bytes `start..end` of the input, checking they are UTF-8.
    fn flush(&self, out: &mut String, start: usize, end: usize) -> Result<(), JsonError> {
        match ::core::str::from_utf8(&self.bytes[start..end]) {
            Ok(text) => {
                out.push_str(text);
                Ok(())
            }
            Err(e) => Err(JsonError {
                offset: start + e.valid_up_to(),
                reason: "invalid UTF-8",
            }),
        }
    }

    /// Reads a string; `self.pos` is at its opening quote.
    fn string(&mut self) -> Result<String, JsonError> {
        self.pos += 1;
        let mut out = String::new();
        // Runs of plain bytes are validated and copied in one go. Splitting them at `"`, `\` and
        // control bytes is safe: those bytes never occur inside a multi-byte UTF-8 sequence.
        let mut run = self.pos;
        loop {
            match self.peek() {
                None => return Err(self.err(EOF)),
                Some(b'"') => {
                    self.flush(&mut out, run, self.pos)?;
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.flush(&mut out, run, self.pos)?;
                    out.push(self.escape()?);
                    run = self.pos;
                }
                Some(0..=0x1f) => return Err(self.err("control character in string")),
                Some(_) => self.pos += 1,
            }
        }
    }

    /// Reads one escape sequence; `self.pos` is at its backslash.
    fn escape(&mut self) -> Result<char, JsonError> {
        let start = self.pos;
        self.pos += 1;
        let c = match self.peek() {
            None => return Err(self.err(EOF)),
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                return self.unicode_escape(start);
            }
            Some(_) => return Err(self.err("invalid escape")),
        };
        self.pos += 1;
        Ok(c)
    }

    /// Reads the code point of a `\uXXXX` escape (and of its low surrogate, if it is a high one).
    fn unicode_escape(&mut self, start: usize) -> Result<char, JsonError> {
        let lone = JsonError {
            offset: start,
            reason: "lone surrogate",
        };
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.bytes[self.pos..].starts_with(b"\\u") {
                    self.pos += 2;
                } else {
                    return Err(lone);
                }
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(lone);
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(lone),
            _ => first,
        };
        char::from_u32(code).ok_or(lone)
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut value = 0;
        for _ in 0..4 {
            let b = self.peek().ok_or(self.err(EOF))?;
            let digit = char::from(b).to_digit(16).ok_or(self.err("invalid \\u escape"))?;
            value = value * 16 + digit;
            self.pos += 1;
        }
        Ok(value)
    }

    /// Reads an array; `self.pos` is at `[`, and `depth` counts this array.
    fn array(&mut self, depth: usize) -> Result<Json, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("too deeply nested"));
        }
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Json::Array(items));
                }
                None => return Err(self.err(EOF)),
                Some(_) => return Err(self.err("expected ',' or ']'")),
            }
        }
    }

    /// Reads an object; `self.pos` is at `{`, and `depth` counts this object.
    fn object(&mut self, depth: usize) -> Result<Json, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("too deeply nested"));
        }
        self.pos += 1;
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'"') => {}
                None => return Err(self.err(EOF)),
                Some(_) => return Err(self.err("expected string key")),
            }
            let key = self.string()?;
            self.skip_ws();
            match self.peek() {
                Some(b':') => self.pos += 1,
                None => return Err(self.err(EOF)),
                Some(_) => return Err(self.err("expected ':'")),
            }
            let value = self.value(depth)?;
            members.push((key, value));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Json::Object(members));
                }
                None => return Err(self.err(EOF)),
                Some(_) => return Err(self.err("expected ',' or '}'")),
            }
        }
    }
}

/// The value of a number the grammar already accepted. Exact for integers up to 2^53 — every
/// number the protocol carries (client ids, epoch milliseconds) — and within a few ULPs for
/// anything else, which is all a reader of token responses needs. std's correctly rounded
/// float parser would add several KiB to the wasm every user downloads.
#[cfg(not(target_arch = "wasm32"))]
fn number_value(text: &[u8]) -> f64 {
    let (negative, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let mut mantissa: u64 = 0;
    let mut exp10: i64 = 0;
    let mut in_fraction = false;
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            d @ b'0'..=b'9' => {
                if mantissa < 100_000_000_000_000_000 {
                    mantissa = mantissa * 10 + u64::from(d - b'0');
                    if in_fraction {
                        exp10 -= 1;
                    }
                } else if !in_fraction {
                    exp10 += 1;
                }
            }
            b'.' => in_fraction = true,
            _ => break, // 'e' or 'E'
        }
        i += 1;
    }
    if i < text.len() {
        let mut exp_negative = false;
        let mut exp: i64 = 0;
        for &b in &text[i + 1..] {
            match b {
                b'-' => exp_negative = true,
                b'+' => {}
                d => exp = (exp * 10 + i64::from(d - b'0')).min(1_000_000),
            }
        }
        exp10 += if exp_negative { -exp } else { exp };
    }
    let magnitude = mantissa as f64;
    let scaled = if mantissa == 0 {
        0.0
    } else if exp10 >= 0 {
        magnitude * 10f64.powi(exp10.min(1_000) as i32)
    } else if exp10 >= -308 {
        magnitude / 10f64.powi(-exp10 as i32)
    } else {
        // Past 1e-308 two steps keep subnormal results from becoming 0 too early.
        magnitude / 10f64.powi(308) / 10f64.powi((-exp10 - 308).min(1_000) as i32)
    };
    if negative {
        -scaled
    } else {
        scaled
    }
}

// Tests of the reader, which is native only: a lib test built for wasm32 (clippy
// --all-targets --target wasm32-unknown-unknown) has no `parse` to call.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    fn ok(s: &str) -> Json {
        match parse(s.as_bytes()) {
            Ok(v) => v,
            Err(e) => panic!("{s:?} should parse, got {e}"),
        }
    }

    fn err(input: &[u8]) -> JsonError {
        match parse(input) {
            Ok(v) => panic!("{input:?} should fail, got {v:?}"),
            Err(e) => e,
        }
    }

    fn reason(s: &str) -> &'static str {
        err(s.as_bytes()).reason
    }

    fn num(s: &str) -> f64 {
        match ok(s) {
            Json::Number(n) => n,
            other => panic!("{s:?} is not a number: {other:?}"),
        }
    }

    fn string(s: &str) -> String {
        match ok(s) {
            Json::String(v) => v,
            other => panic!("{s:?} is not a string: {other:?}"),
        }
    }

    fn written(s: &str) -> String {
        let mut out = String::new();
        write_string(&mut out, s);
        out
    }

    #[test]
    fn literals() {
        assert_eq!(ok("null"), Json::Null);
        assert_eq!(ok("true"), Json::Bool(true));
        assert_eq!(ok("false"), Json::Bool(false));
        assert_eq!(ok(" \t\r\n null \t\r\n"), Json::Null);
    }

    #[test]
    fn bad_literals() {
        for s in [
            "nul",
            "tru",
            "fals",
            "nulll",
            "True",
            "NULL",
            "nan",
            "NaN",
            "Infinity",
            "undefined",
        ] {
            err(s.as_bytes());
        }
        assert_eq!(reason("nul"), "invalid literal");
        assert_eq!(reason("nulll"), "trailing characters");
    }

    #[test]
    fn numbers() {
        assert_eq!(num("0"), 0.0);
        assert!(num("-0").is_sign_negative());
        assert_eq!(num("1"), 1.0);
        assert_eq!(num("-1"), -1.0);
        assert_eq!(num("123"), 123.0);
        assert_eq!(num("1.5"), 1.5);
        assert_eq!(num("-1.5e3"), -1500.0);
        assert_eq!(num("1E2"), 100.0);
        assert_eq!(num("1e+2"), 100.0);
        assert_eq!(num("1e-2"), 0.01);
        assert_eq!(num("0.0"), 0.0);
        assert_eq!(num("0e0"), 0.0);
        assert_eq!(num("10.25E-1"), 1.025);
        assert_eq!(num("1705314600"), 1_705_314_600.0);
        assert_eq!(num("9007199254740993"), 9_007_199_254_740_992.0);
        assert_eq!(num("1705314600000"), 1_705_314_600_000.0, "epoch ms are exact");
        assert_eq!(
            num("-9007199254740991"),
            -9_007_199_254_740_991.0,
            "every safe integer is exact"
        );
        // Not correctly rounded far from the integers the protocol uses, but close.
        assert!((num("1.7e308") / 1.7e308 - 1.0).abs() < 1e-12);
        assert!((num("0.1234567890123456789") - 0.123_456_789_012_345_68).abs() < 1e-15);
        assert_eq!(num("1e-400"), 0.0);
    }

    #[test]
    fn bad_numbers() {
        for s in [
            "01", "-01", "00", "+1", ".5", "-.5", "1.", "1.e5", "-", "1e", "1e+", "1E-", "--1", "0x10", "1e5.5",
            "1.5.5", "- 1", "-a", "1_000", "٣", "１",
        ] {
            err(s.as_bytes());
        }
        assert_eq!(reason("01"), "leading zero in number");
        assert_eq!(reason("1."), "invalid number");
        assert_eq!(reason("-"), "invalid number");
        assert_eq!(reason("+1"), "unexpected character");
        assert_eq!(reason("1 2"), "trailing characters");
    }

    #[test]
    fn numbers_out_of_range_are_rejected() {
        assert_eq!(
            err(b"1e400"),
            JsonError {
                offset: 0,
                reason: "number out of range"
            }
        );
        assert_eq!(
            err(b"[-1e400]"),
            JsonError {
                offset: 1,
                reason: "number out of range"
            }
        );
    }

    #[test]
    fn very_long_numbers() {
        let big = format!("1{}", "0".repeat(10_000));
        assert_eq!(reason(&big), "number out of range");
        let long_fraction = format!("0.{}", "3".repeat(10_000));
        assert!((num(&long_fraction) - 1.0 / 3.0).abs() < 1e-15);
        let long_int = "9".repeat(300);
        assert!(num(&long_int) > 9.9e299);
        let long_exp = format!("1e-{}", "9".repeat(10_000));
        assert_eq!(num(&long_exp), 0.0);
        let long_pos_exp = format!("0e{}", "9".repeat(10_000));
        assert_eq!(num(&long_pos_exp), 0.0);
    }

    #[test]
    fn strings() {
        assert_eq!(string(r#""""#), "");
        assert_eq!(string(r#""abc""#), "abc");
        assert_eq!(string(r#""\"\\\/\b\f\n\r\t""#), "\"\\/\u{8}\u{c}\n\r\t");
        assert_eq!(string(r#""\u0041\u00e9\u00E9\u20AC""#), "Aéé€");
        assert_eq!(string(r#""\u0000""#), "\0");
        assert_eq!(string(r#""a\u0000b""#), "a\0b");
        assert_eq!(string(r#""\uD83D\uDE00""#), "😀");
        assert_eq!(string(r#""\ud83d\ude00x""#), "😀x");
        assert_eq!(string(r#""\uDBFF\uDFFF""#), "\u{10FFFF}");
        assert_eq!(string(r#""\uFFFF""#), "\u{FFFF}");
        assert_eq!(string("\"héllo wörld ✓ 😀\""), "héllo wörld ✓ 😀");
        assert_eq!(string("\"\u{7f}\u{85}\""), "\u{7f}\u{85}");
        assert_eq!(string(r#""a\nb\\c""#), "a\nb\\c");
    }

    #[test]
    fn bad_escapes() {
        for s in [r#""\x""#, r#""\a""#, r#""\U0041""#, r#""\'""#, r#""\ ""#, r#""\0""#] {
            assert_eq!(reason(s), "invalid escape", "{s}");
        }
        assert_eq!(reason(r#""\u12""#), "invalid \\u escape");
        assert_eq!(reason(r#""\u12G4""#), "invalid \\u escape");
        assert_eq!(reason(r#""\u+123""#), "invalid \\u escape");
        assert_eq!(reason("\"\\u12"), EOF);
        assert_eq!(reason("\"\\"), EOF);
        assert_eq!(reason("\"\\u00é9\""), "invalid \\u escape");
    }

    #[test]
    fn lone_surrogates() {
        for s in [
            r#""\uD800""#,
            r#""\uDBFF""#,
            r#""\uDC00""#,
            r#""\uDFFF""#,
            r#""\uD800x""#,
            r#""\uD800\n""#,
            r#""\uD800\u0041""#,
            r#""\uD800\uD800""#,
            r#""\uDC00\uD800""#,
            r#""\uD800\uE000""#,
        ] {
            assert_eq!(
                err(s.as_bytes()),
                JsonError {
                    offset: 1,
                    reason: "lone surrogate"
                },
                "{s}"
            );
        }
        assert_eq!(reason("\"\\uD800\\u"), EOF);
    }

    #[test]
    fn raw_control_characters_in_strings() {
        for c in 0u8..0x20 {
            let input = [b'"', b'a', c, b'"'];
            assert_eq!(
                err(&input),
                JsonError {
                    offset: 2,
                    reason: "control character in string"
                }
            );
        }
    }

    #[test]
    fn invalid_utf8() {
        let cases: [&[u8]; 8] = [
            b"\"\xff\"",
            b"\"\xc0\x80\"",         // overlong NUL
            b"\"\xe2\x82\"",         // truncated sequence before the quote
            b"\"\xed\xa0\x80\"",     // UTF-8-encoded surrogate
            b"\"\xf4\x90\x80\x80\"", // above U+10FFFF
            b"\"\x80\"",             // lone continuation byte
            b"\"ok\\n\xe9t\xe9\"",   // Latin-1 after an escape
            b"{\"k\xfe\":1}",        // in a key
        ];
        for input in cases {
            assert_eq!(err(input).reason, "invalid UTF-8", "{input:?}");
        }
        assert_eq!(err(b"\"abc\xffdef\"").offset, 4);
        assert_eq!(err(b"\"\\n\xe9t\xe9\"").offset, 3);
        // Outside strings any non-ASCII byte is simply not JSON.
        assert_eq!(err(b"\xff").reason, "unexpected character");
        assert_eq!(err(b"[1,\xc3\xa9]").reason, "unexpected character");
        assert_eq!(err(b"1\xc2\xa0").reason, "trailing characters");
    }

    #[test]
    fn unterminated_strings() {
        assert_eq!(err(b"\""), JsonError { offset: 1, reason: EOF });
        assert_eq!(err(b"\"abc"), JsonError { offset: 4, reason: EOF });
        assert_eq!(err(b"\"abc\\\""), JsonError { offset: 6, reason: EOF });
    }

    #[test]
    fn arrays() {
        assert_eq!(ok("[]"), Json::Array(vec![]));
        assert_eq!(ok("[ ]"), Json::Array(vec![]));
        assert_eq!(
            ok("[1, \"a\" ,true,null,[false],{}]"),
            Json::Array(vec![
                Json::Number(1.0),
                Json::String("a".into()),
                Json::Bool(true),
                Json::Null,
                Json::Array(vec![Json::Bool(false)]),
                Json::Object(vec![]),
            ])
        );
        assert_eq!(ok("[[[]]]"), Json::Array(vec![Json::Array(vec![Json::Array(vec![])])]));
    }

    #[test]
    fn bad_arrays() {
        assert_eq!(reason("[1,]"), "unexpected character");
        assert_eq!(reason("[,1]"), "unexpected character");
        assert_eq!(reason("[,]"), "unexpected character");
        assert_eq!(reason("[1 2]"), "expected ',' or ']'");
        assert_eq!(reason("[1:2]"), "expected ',' or ']'");
        assert_eq!(reason("[1}"), "expected ',' or ']'");
        assert_eq!(reason("["), EOF);
        assert_eq!(reason("[1"), EOF);
        assert_eq!(reason("[1,"), EOF);
        assert_eq!(reason("]"), "unexpected character");
        assert_eq!(reason("[]]"), "trailing characters");
    }

    #[test]
    fn objects() {
        assert_eq!(ok("{}"), Json::Object(vec![]));
        assert_eq!(ok(" { } "), Json::Object(vec![]));
        let v = ok(r#"{"b": 1, "a": {"x": [true]}, "": "empty"}"#);
        assert!(v.is_object());
        assert_eq!(
            v,
            Json::Object(vec![
                ("b".into(), Json::Number(1.0)),
                (
                    "a".into(),
                    Json::Object(vec![("x".into(), Json::Array(vec![Json::Bool(true)]))])
                ),
                ("".into(), Json::String("empty".into())),
            ])
        );
        assert_eq!(v.get("b"), Some(&Json::Number(1.0)));
        assert_eq!(v.get("").and_then(Json::as_str), Some("empty"));
        assert_eq!(
            v.get("a").and_then(|a| a.get("x")),
            Some(&Json::Array(vec![Json::Bool(true)]))
        );
        assert_eq!(v.get("missing"), None);
        assert_eq!(v.get("B"), None);
    }

    #[test]
    fn duplicate_keys_keep_order_and_get_returns_last() {
        let v = ok(r#"{"a":1,"b":2,"a":3}"#);
        assert_eq!(
            v,
            Json::Object(vec![
                ("a".into(), Json::Number(1.0)),
                ("b".into(), Json::Number(2.0)),
                ("a".into(), Json::Number(3.0)),
            ])
        );
        assert_eq!(v.get("a").and_then(Json::as_f64), Some(3.0));
        // Escaped and raw spellings of a key are the same key.
        let v = ok(r#"{"\u0061":1,"a":2}"#);
        assert_eq!(v.get("a").and_then(Json::as_f64), Some(2.0));
    }

    #[test]
    fn bad_objects() {
        assert_eq!(reason("{1:2}"), "expected string key");
        assert_eq!(reason("{'a':1}"), "expected string key");
        assert_eq!(reason("{a:1}"), "expected string key");
        assert_eq!(reason(r#"{"a":1,}"#), "expected string key");
        assert_eq!(reason(r#"{,"a":1}"#), "expected string key");
        assert_eq!(reason(r#"{"a"}"#), "expected ':'");
        assert_eq!(reason(r#"{"a" 1}"#), "expected ':'");
        assert_eq!(reason(r#"{"a"=1}"#), "expected ':'");
        assert_eq!(reason(r#"{"a":}"#), "unexpected character");
        assert_eq!(reason(r#"{"a":1 "b":2}"#), "expected ',' or '}'");
        assert_eq!(reason(r#"{"a":1]"#), "expected ',' or '}'");
        assert_eq!(reason("{"), EOF);
        assert_eq!(reason(r#"{"a""#), EOF);
        assert_eq!(reason(r#"{"a":"#), EOF);
        assert_eq!(reason(r#"{"a":1"#), EOF);
        assert_eq!(reason(r#"{"a":1,"#), EOF);
    }

    #[test]
    fn accessors() {
        let s = Json::String("x".into());
        let n = Json::Number(2.5);
        let b = Json::Bool(false);
        let a = Json::Array(vec![]);
        assert_eq!(s.as_str(), Some("x"));
        assert_eq!(n.as_f64(), Some(2.5));
        assert_eq!(b.as_bool(), Some(false));
        for v in [&s, &n, &b, &a, &Json::Null] {
            assert_eq!(v.get("x"), None);
            assert!(!v.is_object());
        }
        assert_eq!(n.as_str(), None);
        assert_eq!(s.as_f64(), None);
        assert_eq!(ok(r#""1""#).as_f64(), None);
        assert_eq!(ok("1").as_bool(), None);
        assert_eq!(Json::Null.as_bool(), None);
        assert_eq!(b.as_str(), None);
        assert!(Json::Object(vec![]).is_object());
    }

    #[test]
    fn depth_limit() {
        let nested = |n: usize, open: &str, close: &str| format!("{}{}", open.repeat(n), close.repeat(n));
        assert!(parse(nested(64, "[", "]").as_bytes()).is_ok());
        assert_eq!(
            err(nested(65, "[", "]").as_bytes()),
            JsonError {
                offset: 64,
                reason: "too deeply nested"
            }
        );
        let deep_objects = |n: usize| nested(n, "{\"a\":", "}").replace(":}", ":1}");
        assert!(parse(deep_objects(64).as_bytes()).is_ok());
        assert_eq!(reason(&deep_objects(65)), "too deeply nested");
        let objects = format!("{}1{}", "{\"a\":".repeat(63), "}".repeat(63));
        assert!(parse(format!("[{objects}]").as_bytes()).is_ok());
        assert_eq!(reason(&format!("[[{objects}]]")), "too deeply nested");
        // Far too deep: must fail fast, not overflow the stack.
        assert_eq!(reason(&"[".repeat(1_000_000)), "too deeply nested");
        assert_eq!(reason(&"{\"\":".repeat(100_000)), "too deeply nested");
        // Depth is nesting, not count: many siblings are fine.
        let siblings = format!("[{}[]]", "[],".repeat(10_000));
        assert!(parse(siblings.as_bytes()).is_ok());
    }

    #[test]
    fn whitespace_is_only_space_tab_lf_cr() {
        assert_eq!(ok(" \t\n\r[ \t\n\r1 \t\n\r, \t\n\r2 \t\n\r] \t\n\r"), ok("[1,2]"));
        for ws in ["\u{c}", "\u{b}", "\u{a0}", "\u{2028}", "\u{feff}", "\u{3000}", "\0"] {
            err(format!("{ws}1").as_bytes());
            err(format!("1{ws}").as_bytes());
            err(format!("[1,{ws}2]").as_bytes());
        }
    }

    #[test]
    fn byte_order_mark_is_rejected() {
        assert_eq!(
            err(b"\xef\xbb\xbf{}"),
            JsonError {
                offset: 0,
                reason: "unexpected character"
            }
        );
    }

    #[test]
    fn empty_and_blank_input() {
        assert_eq!(err(b""), JsonError { offset: 0, reason: EOF });
        assert_eq!(err(b"   \n"), JsonError { offset: 4, reason: EOF });
    }

    #[test]
    fn trailing_characters() {
        for s in [
            "1 2",
            "{}x",
            "null null",
            "[]]",
            "{}}",
            "\"a\"\"b\"",
            "true,",
            "0 0",
            "{}\0",
        ] {
            assert_eq!(reason(s), "trailing characters", "{s}");
        }
        assert_eq!(err(b"{} x").offset, 3);
    }

    #[test]
    fn error_offsets() {
        assert_eq!(err(b"[1,2,x]").offset, 5);
        assert_eq!(err(br#"{"a":tru}"#).offset, 5);
        assert_eq!(err(b"  01").offset, 3);
        assert_eq!(err(b"\"ab\\qc\"").offset, 4);
    }

    #[test]
    fn errors_never_contain_input() {
        let secret = "eyJhbGciOiJIUzI1NiJ9.secret-token";
        let docs = [
            format!(r#"{{"access_token":"{secret}""#),
            format!(r#"{{"access_token":"{secret}\q"}}"#),
            format!(r#"{{"access_token":{secret}}}"#),
            format!(r#"{{"access_token":"{secret}"}} {secret}"#),
        ];
        for doc in docs {
            let e = err(doc.as_bytes());
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("secret") && !shown.contains("eyJ"), "{shown}");
        }
    }

    #[test]
    fn display() {
        let e = err(b"[1,");
        assert_eq!(e.to_string(), "invalid JSON at byte 3: unexpected end of input");
        let boxed: Box<dyn std::error::Error> = Box::new(e);
        assert!(boxed.to_string().starts_with("invalid JSON at byte 3"));
    }

    #[test]
    fn typical_token_response() {
        let v = ok(r#"{
            "access_token": "eyJ.a.b",
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": "r-\u00e9",
            "scope": null,
            "mfa": false
        }"#);
        assert_eq!(v.get("access_token").and_then(Json::as_str), Some("eyJ.a.b"));
        assert_eq!(v.get("expires_in").and_then(Json::as_f64), Some(3600.0));
        assert_eq!(v.get("refresh_token").and_then(Json::as_str), Some("r-é"));
        assert_eq!(v.get("scope"), Some(&Json::Null));
        assert_eq!(v.get("mfa").and_then(Json::as_bool), Some(false));
    }

    #[test]
    fn every_truncation_fails_without_panicking() {
        let doc = r#"{"a":[1,-2.5e+3,true,false,null,"x\n\u00e9\ud83d\ude00é"],"b":{"c":{}}}"#;
        assert!(parse(doc.as_bytes()).is_ok());
        for end in 0..doc.len() {
            let e = err(&doc.as_bytes()[..end]);
            assert!(e.offset <= end, "{e:?} past the end {end}");
        }
    }

    #[test]
    fn mutated_documents_never_panic() {
        // A deterministic mutation fuzz: flip, insert and delete bytes of a valid document.
        let doc: &[u8] = br#"{"k":[0,-1.5e-3,"s\"\\\u0041\ud83d\ude00",true,false,null,{"n":{}}],"t":"\u00e9"}"#;
        let interesting = b"{}[]\":,\\u0123456789eE+-.tfn \xc3\xa9\xed\xa0\x80\xff\x00\x1f";
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..20_000 {
            let mut bytes = doc.to_vec();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % (bytes.len() + 1);
                let b = interesting[(next() as usize) % interesting.len()];
                match next() % 3 {
                    0 if at < bytes.len() => bytes[at] = b,
                    1 => bytes.insert(at, b),
                    _ if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => {}
                }
            }
            match parse(&bytes) {
                Ok(v) => {
                    // Whatever parses was valid UTF-8 and must survive a second parse unchanged.
                    assert!(::core::str::from_utf8(&bytes).is_ok());
                    assert_eq!(parse(&bytes), Ok(v));
                }
                Err(e) => assert!(e.offset <= bytes.len()),
            }
        }
    }

    #[test]
    fn write_plain_and_escaped() {
        assert_eq!(written(""), r#""""#);
        assert_eq!(written("abc"), r#""abc""#);
        assert_eq!(written("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(written("\n\r\t\u{8}\u{c}"), r#""\n\r\t\b\f""#);
        assert_eq!(written("\0\u{1}\u{1f}"), r#""\u0000\u0001\u001f""#);
        assert_eq!(written("\u{7f}\u{80}\u{85}\u{9f}"), r#""\u007f\u0080\u0085\u009f""#);
        assert_eq!(written("/ é € 😀 \u{a0} \u{2028}"), "\"/ é € 😀 \u{a0} \u{2028}\"");
        assert_eq!(written("x\u{1}y\u{1}z"), r#""x\u0001y\u0001z""#);
    }

    #[test]
    fn write_appends() {
        let mut out = String::from("{\"k\":");
        write_string(&mut out, "v\"");
        out.push('}');
        assert_eq!(out, r#"{"k":"v\""}"#);
    }

    #[test]
    fn write_then_parse_round_trips() {
        let mut all: String = (0u32..0x800).filter_map(char::from_u32).collect();
        all.push_str("\u{FFFF}\u{10000}\u{10FFFF}😀\"\\/");
        for s in [all.as_str(), "", "plain", "\"", "\\", "\u{0}", "tab\there"] {
            let out = written(s);
            assert!(out.bytes().all(|b| b >= 0x20), "raw control byte in {out:?}");
            assert_eq!(parse(out.as_bytes()), Ok(Json::String(s.to_owned())));
        }
    }
}
