//! Building message text without `core::fmt`.
//!
//! `format!` reaches `core::fmt`'s machinery through trait objects, which LTO cannot prune:
//! in the wasm that users download it cost more than every parser of the protocol together.
//! Messages here are a few fixed pieces and integers, so concatenation does the job.

#[allow(unused_imports)]
use crate::prelude::*;

/// The pieces, joined.
pub fn cat(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.push_str(p);
    }
    out
}

/// An integer in decimal.
pub fn int(n: i64) -> String {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let mut out = String::with_capacity(21 - at);
    if n < 0 {
        out.push('-');
    }
    for &d in &digits[at..] {
        out.push(d as char);
    }
    out
}

/// Finds a substring in linear time (Knuth-Morris-Pratt), whatever the text: the texts
/// searched here are server answers of up to `maxResponseBytes`, and the needles secrets.
/// Here instead of `str::find` and `str::replace` with a `&str` pattern, whose Two-Way
/// searcher is about 2.5 KB of the wasm users download.
pub struct Finder<'a> {
    needle: &'a [u8],
    /// `fail[i]`: the length of the longest proper prefix of `needle[..=i]` that is also
    /// its suffix.
    fail: Vec<usize>,
}

impl<'a> Finder<'a> {
    pub fn new(needle: &'a str) -> Self {
        let needle = needle.as_bytes();
        let mut fail = vec![0; needle.len()];
        let mut k = 0;
        for i in 1..needle.len() {
            while k > 0 && needle[i] != needle[k] {
                k = fail[k - 1];
            }
            if needle[i] == needle[k] {
                k += 1;
            }
            fail[i] = k;
        }
        Finder { needle, fail }
    }

    /// The byte offset of the first occurrence at or after `from`. A match of valid UTF-8
    /// in valid UTF-8 starts and ends on character boundaries.
    pub fn find_in(&self, hay: &str, from: usize) -> Option<usize> {
        let n = self.needle;
        if n.is_empty() {
            return Some(from);
        }
        let mut k = 0;
        for (i, &b) in hay.as_bytes().iter().enumerate().skip(from) {
            while k > 0 && b != n[k] {
                k = self.fail[k - 1];
            }
            if b == n[k] {
                k += 1;
                if k == n.len() {
                    return Some(i + 1 - k);
                }
            }
        }
        None
    }
}

/// The byte offset of the first `needle` in `hay`.
pub fn find(hay: &str, needle: &str) -> Option<usize> {
    Finder::new(needle).find_in(hay, 0)
}

/// True if `needle` occurs in `hay`.
pub fn contains(hay: &str, needle: &str) -> bool {
    find(hay, needle).is_some()
}

/// `text` with every occurrence of a non-empty `needle`, left to right, replaced by `with`;
/// `None` when there is none (no copy of a text that may be a megabyte of server answer).
pub fn replace_all(text: &str, needle: &str, with: &str) -> Option<String> {
    if needle.is_empty() {
        return None;
    }
    let finder = Finder::new(needle);
    let mut i = finder.find_in(text, 0)?;
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    loop {
        out.push_str(&text[at..i]);
        out.push_str(with);
        at = i + needle.len();
        match finder.find_in(text, at) {
            Some(next) => i = next,
            None => break,
        }
    }
    out.push_str(&text[at..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_replaces_like_str() {
        let cases = [
            ("", ""),
            ("", "a"),
            ("a", ""),
            ("abc", "abc"),
            ("xxabcabcabd", "abcabd"),
            ("aaaa", "aa"),
            ("ababab", "bab"),
            ("héllo wörld", "wö"),
            ("tok.en tok.en", "tok.en"),
            ("aabaabaaa", "aabaaa"),
            ("mississippi", "issip"),
            ("mississippi", "pix"),
        ];
        for (hay, needle) in cases {
            assert_eq!(find(hay, needle), hay.find(needle), "{hay:?} {needle:?}");
            assert_eq!(contains(hay, needle), hay.contains(needle));
            if !needle.is_empty() {
                let replaced = replace_all(hay, needle, "[r]");
                assert_eq!(replaced.is_some(), hay.contains(needle), "{hay:?} {needle:?}");
                assert_eq!(
                    replaced.unwrap_or_else(|| hay.to_owned()),
                    hay.replace(needle, "[r]"),
                    "{hay:?} {needle:?}"
                );
            }
        }
        let finder = Finder::new("ab");
        assert_eq!(finder.find_in("abxab", 1), Some(3));
        assert_eq!(finder.find_in("abxab", 4), None);
    }

    #[test]
    fn a_hostile_text_is_searched_in_linear_time() {
        // 1 MB of "a" against a 4 KB needle of "a"s ending in "b": a naive search compares
        // about 4 billion bytes; this one about 2 million.
        let hay = "a".repeat(1 << 20);
        let needle = "a".repeat(4095) + "b";
        assert_eq!(find(&hay, &needle), None);
        let hay = hay + "b";
        assert_eq!(find(&hay, &needle), Some((1 << 20) - 4095));
        assert_eq!(replace_all(&hay, &needle, "").map(|r| r.len()), Some((1 << 20) - 4095));
    }

    #[test]
    fn integers_and_pieces() {
        for n in [0, 7, -7, 10, 1_234_567, i64::MAX, i64::MIN] {
            assert_eq!(int(n), n.to_string());
        }
        assert_eq!(cat(&["a", "", "bc"]), "abc");
    }
}
