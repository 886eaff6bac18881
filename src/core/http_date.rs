//! HTTP dates and `Retry-After` (RFC 9110 §5.6.7 and §10.2.3).
//!
//! Servers that throttle say when to come back in `Retry-After`, either as a number of seconds
//! or as an HTTP-date; the client honours it instead of its own backoff. Hand-written, like the
//! rest of the core, to keep the WebAssembly small.
#![forbid(unsafe_code)]

#[allow(unused_imports)]
use crate::prelude::*;

use super::rfc3339::{checked_epoch_ms, digits};

const DAY_NAMES: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
const LONG_DAY_NAMES: [&[u8]; 7] = [
    b"Monday",
    b"Tuesday",
    b"Wednesday",
    b"Thursday",
    b"Friday",
    b"Saturday",
    b"Sunday",
];
const MONTHS: [&[u8]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Parses an HTTP-date into epoch ms, in any of the three forms RFC 9110 makes recipients accept:
///
/// - IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`
/// - obsolete RFC 850: `Sunday, 06-Nov-94 08:49:37 GMT`, two-digit years 70–99 read as 19xx and
///   00–69 as 20xx (RFC 9110's "not more than 50 years in the future" rule, with a fixed pivot)
/// - asctime: `Sun Nov  6 08:49:37 1994` (the day also as `06`)
///
/// Exactly as the grammar spells them: names are case-sensitive, no extra spaces, no
/// surrounding whitespace. Day names must be valid but need not match the date. Second 60 is
/// read as the last millisecond of second 59, as [`super::rfc3339::parse_rfc3339`] does. Returns
/// `None` for anything else, including impossible dates such as Feb 30.
pub fn parse_http_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.get(3) == Some(&b',') {
        imf_fixdate(b)
    } else if let Some(comma) = b.iter().position(|&c| c == b',') {
        rfc850_date(b, comma)
    } else {
        asctime_date(b)
    }
}

/// The delay a `Retry-After` header asks for, in milliseconds, relative to `now_ms`.
///
/// The value is trimmed of surrounding spaces and tabs (HTTP's OWS). Then either delta-seconds,
/// ASCII digits only, converted with saturation (a huge value gives `u64::MAX`, never an
/// overflow), or an HTTP-date (see [`parse_http_date`]), giving the time until it, 0 if it is
/// not in the future. Anything else (empty, negative, fractional, `+5`, words) gives `None`.
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<u64> {
    let value = value.trim_matches([' ', '\t']);
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        let seconds = value.bytes().fold(0u64, |acc, b| {
            acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
        });
        return Some(seconds.saturating_mul(1000));
    }
    let at = parse_http_date(value)?;
    Some(u64::try_from(at.saturating_sub(now_ms)).unwrap_or(0))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`.
fn imf_fixdate(b: &[u8]) -> Option<i64> {
    if b.len() != 29
        || !DAY_NAMES.contains(&&b[..3])
        || &b[3..5] != b", "
        || b[7] != b' '
        || b[11] != b' '
        || b[16] != b' '
        || &b[25..] != b" GMT"
    {
        return None;
    }
    let day = digits(b, 5, 2)?;
    let month = month(&b[8..11])?;
    let year = digits(b, 12, 4)?;
    time_of_day(b, 17, i64::from(year), month, day)
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`; `comma` is the index of the comma after the day name.
fn rfc850_date(b: &[u8], comma: usize) -> Option<i64> {
    let rest = b.get(comma..)?;
    if rest.len() != 24
        || !LONG_DAY_NAMES.contains(&&b[..comma])
        || &rest[..2] != b", "
        || rest[4] != b'-'
        || rest[8] != b'-'
        || rest[11] != b' '
        || &rest[20..] != b" GMT"
    {
        return None;
    }
    let day = digits(rest, 2, 2)?;
    let month = month(&rest[5..8])?;
    let yy = digits(rest, 9, 2)?;
    let year = if yy >= 70 { 1900 + yy } else { 2000 + yy };
    time_of_day(rest, 12, i64::from(year), month, day)
}

/// `Sun Nov  6 08:49:37 1994`.
fn asctime_date(b: &[u8]) -> Option<i64> {
    if b.len() != 24 || !DAY_NAMES.contains(&&b[..3]) || b[3] != b' ' || b[7] != b' ' || b[10] != b' ' || b[19] != b' '
    {
        return None;
    }
    let month = month(&b[4..7])?;
    let day = if b[8] == b' ' {
        digits(b, 9, 1)?
    } else {
        digits(b, 8, 2)?
    };
    let year = digits(b, 20, 4)?;
    time_of_day(b, 11, i64::from(year), month, day)
}

/// Reads `HH:MM:SS` at `b[at..]` and combines it with the date.
fn time_of_day(b: &[u8], at: usize, year: i64, month: u32, day: u32) -> Option<i64> {
    if b.get(at + 2) != Some(&b':') || b.get(at + 5) != Some(&b':') {
        return None;
    }
    let hour = digits(b, at, 2)?;
    let minute = digits(b, at + 3, 2)?;
    let second = digits(b, at + 6, 2)?;
    checked_epoch_ms(year, month, day, hour, minute, second, 0)
}

fn month(name: &[u8]) -> Option<u32> {
    let index = MONTHS.iter().position(|m| *m == name)?;
    u32::try_from(index + 1).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOV_6: i64 = 784_111_777_000; // 1994-11-06T08:49:37Z

    fn d(s: &str) -> Option<i64> {
        parse_http_date(s)
    }

    #[test]
    fn the_three_forms_of_rfc_9110() {
        assert_eq!(d("Sun, 06 Nov 1994 08:49:37 GMT"), Some(NOV_6));
        assert_eq!(d("Sunday, 06-Nov-94 08:49:37 GMT"), Some(NOV_6));
        assert_eq!(d("Sun Nov  6 08:49:37 1994"), Some(NOV_6));
        assert_eq!(d("Sun Nov 06 08:49:37 1994"), Some(NOV_6));
    }

    #[test]
    fn imf_fixdate_values() {
        assert_eq!(d("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(d("Wed, 31 Dec 1969 23:59:59 GMT"), Some(-1000));
        assert_eq!(d("Mon, 15 Jan 2024 10:30:00 GMT"), Some(1_705_314_600_000));
        assert_eq!(d("Thu, 29 Feb 2024 00:00:00 GMT"), Some(1_709_164_800_000));
        assert_eq!(d("Tue, 29 Feb 2000 00:00:00 GMT"), Some(951_782_400_000));
        assert_eq!(d("Fri, 31 Dec 9999 23:59:59 GMT"), Some(253_402_300_799_000));
        assert_eq!(d("Sat, 01 Jan 0000 00:00:00 GMT"), Some(-62_167_219_200_000));
        assert_eq!(d("Sat, 31 Dec 2016 23:59:60 GMT"), Some(1_483_228_799_999));
        for month in [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ] {
            assert!(d(&format!("Mon, 01 {month} 2024 00:00:00 GMT")).is_some(), "{month}");
        }
    }

    #[test]
    fn day_names_must_be_valid_but_need_not_match() {
        for name in ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"] {
            assert_eq!(d(&format!("{name}, 06 Nov 1994 08:49:37 GMT")), Some(NOV_6), "{name}");
            assert_eq!(d(&format!("{name} Nov  6 08:49:37 1994")), Some(NOV_6), "{name}");
        }
        for name in [
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
            "Sunday",
        ] {
            assert_eq!(d(&format!("{name}, 06-Nov-94 08:49:37 GMT")), Some(NOV_6), "{name}");
        }
        for bad in [
            "Sux, 06 Nov 1994 08:49:37 GMT",
            "sun, 06 Nov 1994 08:49:37 GMT",
            "SUN, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06-Nov-94 08:49:37 GMT",
            "Sundae, 06-Nov-94 08:49:37 GMT",
            "sunday, 06-Nov-94 08:49:37 GMT",
            "Sunday , 06-Nov-94 08:49:37 GMT",
            ", 06-Nov-94 08:49:37 GMT",
            "Xyz Nov  6 08:49:37 1994",
            "Sunday Nov  6 08:49:37 1994",
        ] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }

    #[test]
    fn rfc850_two_digit_years() {
        assert_eq!(d("Thursday, 01-Jan-70 00:00:00 GMT"), Some(0));
        assert_eq!(d("Friday, 31-Dec-99 23:59:59 GMT"), d("Fri, 31 Dec 1999 23:59:59 GMT"));
        assert_eq!(
            d("Saturday, 01-Jan-00 00:00:00 GMT"),
            d("Sat, 01 Jan 2000 00:00:00 GMT")
        );
        assert_eq!(d("Monday, 15-Jan-24 10:30:00 GMT"), Some(1_705_314_600_000));
        assert_eq!(d("Tuesday, 31-Dec-69 23:59:59 GMT"), d("Tue, 31 Dec 2069 23:59:59 GMT"));
        assert_eq!(d("Thursday, 29-Feb-24 00:00:00 GMT"), Some(1_709_164_800_000));
        assert_eq!(
            d("Thursday, 29-Feb-00 00:00:00 GMT"),
            d("Tue, 29 Feb 2000 00:00:00 GMT")
        );
        assert_eq!(d("Thursday, 29-Feb-23 00:00:00 GMT"), None);
        assert_eq!(d("Sunday, 06-Nov-1994 08:49:37 GMT"), None);
        assert_eq!(d("Sunday, 06-Nov-4 08:49:37 GMT"), None);
    }

    #[test]
    fn asctime_days() {
        assert_eq!(d("Mon Jan  1 00:00:00 2024"), d("Mon, 01 Jan 2024 00:00:00 GMT"));
        assert_eq!(d("Mon Jan 01 00:00:00 2024"), d("Mon, 01 Jan 2024 00:00:00 GMT"));
        assert_eq!(d("Wed Jan 31 00:00:00 2024"), d("Wed, 31 Jan 2024 00:00:00 GMT"));
        assert_eq!(d("Thu Jan  1 00:00:00 1970"), Some(0));
        for bad in [
            "Sun Nov 6 08:49:37 1994",
            "Sun Nov   6 08:49:37 1994",
            "Sun Nov  0 08:49:37 1994",
            "Sun Nov 00 08:49:37 1994",
            "Sun Nov 31 08:49:37 1994",
            "Sun Nov  x 08:49:37 1994",
            "Sun Nov 6  08:49:37 1994",
            "Sun Nov  6 08:49:37 94",
            "Sun Nov  6 08:49:37 1994 GMT",
            "Sun Nov  6 08:49:37 GMT 1994",
            "Sun  Nov 6 08:49:37 1994",
        ] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }

    #[test]
    fn out_of_range_fields() {
        for bad in [
            "Sun, 00 Nov 1994 08:49:37 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 30 Feb 2024 08:49:37 GMT",
            "Sun, 29 Feb 1900 08:49:37 GMT",
            "Sun, 32 Jan 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 23:60:00 GMT",
            "Sun, 06 Nov 1994 23:59:61 GMT",
            "Sunday, 06-Nov-94 24:49:37 GMT",
            "Sun Nov  6 24:49:37 1994",
        ] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }

    #[test]
    fn malformed() {
        for bad in [
            "",
            ",",
            ",,,,",
            "Sun,",
            "Sunday,",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49:37 gmt",
            "Sun, 06 Nov 1994 08:49:37 GMT ",
            " Sun, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 +0000",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 nov 1994 08:49:37 GMT",
            "Sun, 06 NOV 1994 08:49:37 GMT",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Sun, 06 Nov 01994 08:49:37 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov 1994 08.49.37 GMT",
            "Sun, 06 Nov 1994 08:49:3a GMT",
            "Sun,  06 Nov 1994 08:49:37 GMT",
            "Sun, 06  Nov 1994 08:49:37 GMT",
            "Sun,06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994T08:49:37 GMT",
            "Sun, 06 Nov -994 08:49:37 GMT",
            "Sun, +6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT\r\n",
            "1994-11-06T08:49:37Z",
            "784111777",
            "Sunday, 06-Nov-94 08:49:37 GMT,",
            "Sunday, 06-Nov-94 08:49:37 GMTX",
            "Sunday, 06-Nov-94 08:49:37",
            "Sunday, 06/Nov/94 08:49:37 GMT",
        ] {
            assert_eq!(d(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn non_ascii_never_panics() {
        for bad in [
            "Sün, 06 Nov 1994 08:49:37 GMT",
            "Sun, ０6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT\u{a0}",
            "Sun, 06 Növ 1994 08:49:37 GM",
            "Sun, 06 Nov 1994 08:49:3٧ GM",
            "Sün Nov  6 08:49:37 199",
            "Sun Nov  ٦ 08:49:37 1994",
            "Sun Nov é 08:49:37 1994",
            "Sunday, 06-Növ-94 08:49:37 GM",
            "Sündäy, 06-Nov-94 08:49:37 GMT",
            "😀😀😀😀😀😀😀",
            "é,",
            "éé, 06 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(d(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_truncation_is_rejected() {
        for full in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(d(full), Some(NOV_6));
            for end in 0..full.len() {
                assert_eq!(d(&full[..end]), None, "{:?}", &full[..end]);
                assert_eq!(d(&full[end + 1..]), None, "{:?}", &full[end + 1..]);
            }
        }
    }

    #[test]
    fn long_inputs() {
        assert_eq!(d(&"9".repeat(100_000)), None);
        assert_eq!(d(&format!("{},", "a".repeat(100_000))), None);
        assert_eq!(d(&format!("Sunday,{}", " ".repeat(100_000))), None);
        assert_eq!(d(&format!("Sun, 06 Nov {} 08:49:37 GMT", "1".repeat(1000))), None);
    }

    #[test]
    fn retry_after_delta_seconds() {
        assert_eq!(parse_retry_after("120", 0), Some(120_000));
        assert_eq!(parse_retry_after("0", 0), Some(0));
        assert_eq!(parse_retry_after("000", 0), Some(0));
        assert_eq!(parse_retry_after("007", 0), Some(7_000));
        assert_eq!(parse_retry_after(" 120 ", 0), Some(120_000));
        assert_eq!(parse_retry_after("\t5\t", 0), Some(5_000));
        assert_eq!(parse_retry_after("5", i64::MIN), Some(5_000));
        assert_eq!(parse_retry_after("5", i64::MAX), Some(5_000));
    }

    #[test]
    fn retry_after_saturates() {
        assert_eq!(
            parse_retry_after("18446744073709551", 0),
            Some(18_446_744_073_709_551_000)
        );
        assert_eq!(parse_retry_after("18446744073709552", 0), Some(u64::MAX));
        assert_eq!(parse_retry_after("18446744073709551615", 0), Some(u64::MAX));
        assert_eq!(parse_retry_after("99999999999999999999999999999", 0), Some(u64::MAX));
        assert_eq!(parse_retry_after(&"9".repeat(100_000), 0), Some(u64::MAX));
        assert_eq!(parse_retry_after(&format!("{}1", "0".repeat(100_000)), 0), Some(1_000));
    }

    #[test]
    fn retry_after_http_date() {
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(parse_retry_after(date, NOV_6 - 5_000), Some(5_000));
        assert_eq!(parse_retry_after(date, NOV_6 - 1), Some(1));
        assert_eq!(parse_retry_after(date, NOV_6), Some(0));
        assert_eq!(parse_retry_after(date, NOV_6 + 1), Some(0));
        assert_eq!(parse_retry_after(date, i64::MAX), Some(0));
        assert_eq!(parse_retry_after(date, i64::MIN), Some(i64::MAX as u64));
        assert_eq!(parse_retry_after(date, 0), Some(NOV_6 as u64));
        assert_eq!(
            parse_retry_after("  Sun, 06 Nov 1994 08:49:37 GMT\t", 0),
            Some(NOV_6 as u64)
        );
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", NOV_6 - 60_000),
            Some(60_000)
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:37 1994", NOV_6 - 60_000),
            Some(60_000)
        );
    }

    #[test]
    fn retry_after_garbage() {
        for bad in [
            "",
            " ",
            "\t \t",
            "-1",
            "-0",
            "+5",
            "1.5",
            "1.",
            ".5",
            "1e3",
            "0x10",
            "5s",
            "five",
            "1 2",
            "12abc",
            "abc12",
            "١٢",
            "１２",
            "5\u{a0}",
            "\u{a0}5",
            "5\n",
            "\r\n5",
            "Sun, 06 Nov 1994",
            "Sun, 30 Feb 1994 08:49:37 GMT",
            "now",
            "∞",
        ] {
            assert_eq!(parse_retry_after(bad, 0), None, "{bad:?}");
        }
    }
}
