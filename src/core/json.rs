//! The JSON tree the core reads documents from, and a JSON string writer.
//!
//! In the package, `JSON.parse` reads every document (the platform does it well, and it costs
//! no bytes of wasm); the wasm glue turns its result into a [`Json`]. Native tests read JSON
//! text with serde_json (a dev-dependency: `tests/common/json_text.rs`).
#![forbid(unsafe_code)]

#[allow(unused_imports)]
use crate::prelude::*;

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
    /// Any number; always finite (`JSON.parse` gives no other).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn written(s: &str) -> String {
        let mut out = String::new();
        write_string(&mut out, s);
        out
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
    #[cfg(not(target_arch = "wasm32"))]
    fn written_strings_read_back_with_a_standard_parser() {
        let mut all: String = (0u32..0x800).filter_map(char::from_u32).collect();
        all.push_str("\u{FFFF}\u{10000}\u{10FFFF}😀\"\\/");
        for s in [all.as_str(), "", "plain", "\"", "\\", "\u{0}", "tab\there"] {
            let out = written(s);
            assert!(out.bytes().all(|b| b >= 0x20), "raw control byte in {out:?}");
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), s);
        }
    }
}
