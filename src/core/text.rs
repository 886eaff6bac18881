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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_pieces() {
        for n in [0, 7, -7, 10, 1_234_567, i64::MAX, i64::MIN] {
            assert_eq!(int(n), n.to_string());
        }
        assert_eq!(cat(&["a", "", "bc"]), "abc");
    }
}
