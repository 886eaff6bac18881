//! RFC 3339 timestamps, the protocol's way of writing instants (`expires_at` and friends).
//!
//! A hand-written parser and formatter instead of chrono: the core compiles to WebAssembly and
//! must stay tiny. Instants are plain `i64` milliseconds since the Unix epoch, as in JavaScript.
#![forbid(unsafe_code)]

#[allow(unused_imports)]
use crate::prelude::*;

const MS_PER_DAY: i64 = 86_400_000;

/// Parses an RFC 3339 date-time into milliseconds since the Unix epoch (UTC).
///
/// Accepts `T`/`t`/space as separator, `Z`/`z` or `±hh:mm` offset (`-00:00` included), any number
/// of fractional-second digits (truncated to milliseconds), and second 60 (a leap second, which
/// the epoch cannot represent: it becomes the last millisecond of second 59, so ordering is kept).
/// Returns `None` for a date without time, a time without offset, out-of-range fields (month 13,
/// Feb 30, Feb 29 in a non-leap year, hour 24, minute 60, offset hour > 23 or minute > 59), any
/// extra characters (surrounding whitespace included), non-ASCII digits, and years outside
/// 0000–9999.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let year = digits(b, 0, 4)?;
    expect(b, 4, b'-')?;
    let month = digits(b, 5, 2)?;
    expect(b, 7, b'-')?;
    let day = digits(b, 8, 2)?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let hour = digits(b, 11, 2)?;
    expect(b, 13, b':')?;
    let minute = digits(b, 14, 2)?;
    expect(b, 16, b':')?;
    let second = digits(b, 17, 2)?;

    let mut pos = 19;
    let mut millis = 0;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while let Some(&d @ b'0'..=b'9') = b.get(pos) {
            if pos - start < 3 {
                millis = millis * 10 + u32::from(d - b'0');
            }
            pos += 1;
        }
        let count = pos - start;
        if count == 0 {
            return None;
        }
        for _ in count..3 {
            millis *= 10;
        }
    }

    let offset_minutes = match b.get(pos) {
        Some(b'Z' | b'z') => {
            pos += 1;
            0
        }
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(b, pos + 1, 2)?;
            expect(b, pos + 3, b':')?;
            let om = digits(b, pos + 4, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            pos += 6;
            let minutes = i64::from(oh * 60 + om);
            if sign == b'-' {
                -minutes
            } else {
                minutes
            }
        }
        _ => return None,
    };
    if pos != b.len() {
        return None;
    }
    let local = checked_epoch_ms(i64::from(year), month, day, hour, minute, second, millis)?;
    Some(local - offset_minutes * 60_000)
}

/// Formats epoch ms as `YYYY-MM-DDTHH:MM:SS.mmmZ`, what JavaScript's `toISOString` gives.
///
/// Years 0000–9999 (everything [`parse_rfc3339`] reads) come out in exactly that form, so
/// `parse_rfc3339(&format_rfc3339(ms)) == Some(ms)` there. Other years use the same expanded
/// form as `toISOString` (`+010000-01-01T…`, `-000001-…`) instead of failing; it works for every
/// `i64`.
pub fn format_rfc3339(ms: i64) -> String {
    let (year, month, day) = civil_from_days(ms.div_euclid(MS_PER_DAY));
    // In 0..MS_PER_DAY, so it fits in u64 and every field below is small.
    let in_day = ms.rem_euclid(MS_PER_DAY).unsigned_abs();
    let mut out = String::with_capacity(24);
    if (0..=9999).contains(&year) {
        push_padded(&mut out, year.unsigned_abs(), 4);
    } else {
        out.push(if year < 0 { '-' } else { '+' });
        push_padded(&mut out, year.unsigned_abs(), 6);
    }
    out.push('-');
    push_padded(&mut out, u64::from(month), 2);
    out.push('-');
    push_padded(&mut out, u64::from(day), 2);
    out.push('T');
    push_padded(&mut out, in_day / 3_600_000, 2);
    out.push(':');
    push_padded(&mut out, in_day / 60_000 % 60, 2);
    out.push(':');
    push_padded(&mut out, in_day / 1000 % 60, 2);
    out.push('.');
    push_padded(&mut out, in_day % 1000, 3);
    out.push('Z');
    out
}

/// Days since 1970-01-01 of a proleptic Gregorian civil date (Howard Hinnant's `days_from_civil`).
///
/// `m` and `d` are not validated: check them first (a 1..=12 month and a day that exists in it).
/// Exact for any year within ±10^16; beyond that, or with absurd `m`/`d`, the result is
/// meaningless but computing it never panics (the arithmetic wraps).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let (m, d) = (i64::from(m), i64::from(d));
    let y = if m <= 2 { y.wrapping_sub(1) } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1; // [0, 365] if valid
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096] if valid
    era.wrapping_mul(146_097).wrapping_add(doe).wrapping_sub(719_468)
}

/// The proleptic Gregorian civil date `(year, month, day)` of a count of days since 1970-01-01;
/// the inverse of [`days_from_civil`] (Howard Hinnant's `civil_from_days`).
///
/// Exact for every `days` up to `i64::MAX - 719_468`; never panics.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.wrapping_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Whether `year` is a leap year of the proleptic Gregorian calendar.
fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// The number of days in `month` of `year`; 0 for a month outside 1..=12.
fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Validates the fields of a UTC date-time and turns it into epoch ms; shared with the HTTP-date
/// parser so both check ranges the same way.
///
/// `year` must be in 0..=9999; `second` may be 60 (a leap second), which yields the last
/// millisecond of second 59 whatever `millis` is. `None` if any field is out of range.
pub(crate) fn checked_epoch_ms(
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millis: u32,
) -> Option<i64> {
    if !(0..=9999).contains(&year)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
        || millis > 999
    {
        return None;
    }
    let (second, millis) = if second == 60 { (59, 999) } else { (second, millis) };
    let seconds = i64::from((hour * 60 + minute) * 60 + second);
    Some(days_from_civil(year, month, day) * MS_PER_DAY + seconds * 1000 + i64::from(millis))
}

/// The value of the `n` ASCII digits at `b[at..at + n]`; `None` if any is missing or not a digit.
/// Callers keep `n` at most 4, so the value cannot overflow.
pub(crate) fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let field = b.get(at..at.checked_add(n)?)?;
    field.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

/// `Some(())` if `b[at]` is `want`.
fn expect(b: &[u8], at: usize, want: u8) -> Option<()> {
    (b.get(at) == Some(&want)).then_some(())
}

/// Appends `value` in decimal, left-padded with zeros to at least `width` digits.
fn push_padded(out: &mut String, mut value: u64, width: usize) {
    let mut buf = [b'0'; 20]; // u64::MAX has 20 digits
    let mut start = buf.len();
    while value > 0 {
        start -= 1;
        buf[start] = b'0' + (value % 10) as u8;
        value /= 10;
    }
    start = start.min(buf.len().saturating_sub(width));
    for &c in &buf[start..] {
        out.push(char::from(c));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAN_15: i64 = 1_705_314_600_000; // 2024-01-15T10:30:00Z

    fn p(s: &str) -> Option<i64> {
        parse_rfc3339(s)
    }

    #[test]
    fn known_values() {
        assert_eq!(p("2024-01-15T10:30:00Z"), Some(JAN_15));
        assert_eq!(p("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(p("1969-12-31T23:59:59.999Z"), Some(-1));
        assert_eq!(p("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        assert_eq!(p("1900-03-01T00:00:00Z"), Some(-2_203_891_200_000));
        assert_eq!(p("2024-02-29T12:00:00Z"), Some(1_709_208_000_000));
        assert_eq!(p("0000-01-01T00:00:00Z"), Some(-62_167_219_200_000));
        assert_eq!(p("9999-12-31T23:59:59.999Z"), Some(253_402_300_799_999));
        assert_eq!(p("1994-11-06T08:49:37Z"), Some(784_111_777_000));
    }

    #[test]
    fn separators_and_case() {
        assert_eq!(p("2024-01-15t10:30:00z"), Some(JAN_15));
        assert_eq!(p("2024-01-15 10:30:00Z"), Some(JAN_15));
        assert_eq!(p("2024-01-15T10:30:00z"), Some(JAN_15));
    }

    #[test]
    fn offsets() {
        assert_eq!(p("2024-01-15T16:00:00+05:30"), Some(JAN_15));
        assert_eq!(p("2024-01-15T02:30:00-08:00"), Some(JAN_15));
        assert_eq!(p("2024-01-15T10:30:00+00:00"), Some(JAN_15));
        assert_eq!(p("2024-01-15T10:30:00-00:00"), Some(JAN_15));
        assert_eq!(p("2024-01-16T10:29:00+23:59"), Some(JAN_15));
        assert_eq!(p("2024-01-14T10:31:00-23:59"), Some(JAN_15));
        // Offsets can cross the day, month and year, and the epoch.
        assert_eq!(p("1970-01-01T05:30:00+05:30"), Some(0));
        assert_eq!(p("1969-12-31T16:00:00-08:00"), Some(0));
        assert_eq!(p("2025-01-01T01:00:00+02:00"), p("2024-12-31T23:00:00Z"));
        // At the ends of the year range the offset may leave it.
        assert_eq!(p("0000-01-01T00:00:00+01:00"), Some(-62_167_219_200_000 - 3_600_000));
        assert_eq!(
            p("9999-12-31T23:59:59.999-01:00"),
            Some(253_402_300_799_999 + 3_600_000)
        );
    }

    #[test]
    fn fractional_seconds_truncate_to_millis() {
        assert_eq!(p("2024-01-15T10:30:00.123456789Z"), Some(JAN_15 + 123));
        assert_eq!(p("2024-01-15T10:30:00.1Z"), Some(JAN_15 + 100));
        assert_eq!(p("2024-01-15T10:30:00.12Z"), Some(JAN_15 + 120));
        assert_eq!(p("2024-01-15T10:30:00.123Z"), Some(JAN_15 + 123));
        assert_eq!(p("2024-01-15T10:30:00.9999Z"), Some(JAN_15 + 999));
        assert_eq!(p("2024-01-15T10:30:00.000Z"), Some(JAN_15));
        assert_eq!(p("2024-01-15T16:00:00.5+05:30"), Some(JAN_15 + 500));
        assert_eq!(p("1969-12-31T23:59:59.5Z"), Some(-500));
        let long = format!("2024-01-15T10:30:00.{}Z", "9".repeat(10_000));
        assert_eq!(p(&long), Some(JAN_15 + 999));
    }

    #[test]
    fn leap_years() {
        assert!(p("2000-02-29T00:00:00Z").is_some());
        assert!(p("2024-02-29T00:00:00Z").is_some());
        assert!(p("1600-02-29T00:00:00Z").is_some());
        assert!(p("0000-02-29T00:00:00Z").is_some());
        assert_eq!(p("1900-02-29T00:00:00Z"), None);
        assert_eq!(p("2100-02-29T00:00:00Z"), None);
        assert_eq!(p("2023-02-29T00:00:00Z"), None);
        assert_eq!(p("2024-02-30T00:00:00Z"), None);
        assert_eq!(p("2000-02-30T00:00:00Z"), None);
    }

    #[test]
    fn leap_second_is_last_millisecond_of_59() {
        let last = Some(1_483_228_799_999);
        assert_eq!(p("2016-12-31T23:59:60Z"), last);
        assert_eq!(p("2016-12-31T23:59:60.5Z"), last);
        assert_eq!(p("2016-12-31T23:59:60.000Z"), last);
        assert_eq!(p("2016-12-31T23:59:59.999Z"), last);
        assert_eq!(p("2017-01-01T00:59:60+01:00"), last);
        assert!(p("2016-12-31T23:59:60Z") < p("2017-01-01T00:00:00Z"));
        assert_eq!(p("2016-12-31T23:59:61Z"), None);
    }

    #[test]
    fn out_of_range_fields() {
        for s in [
            "2024-13-01T00:00:00Z",
            "2024-00-01T00:00:00Z",
            "2024-99-01T00:00:00Z",
            "2024-01-00T00:00:00Z",
            "2024-01-32T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-06-31T00:00:00Z",
            "2024-09-31T00:00:00Z",
            "2024-11-31T00:00:00Z",
            "2024-01-15T24:00:00Z",
            "2024-01-15T99:00:00Z",
            "2024-01-15T23:60:00Z",
            "2024-01-15T23:59:61Z",
            "2024-01-15T23:59:99Z",
            "2024-01-15T10:30:00+24:00",
            "2024-01-15T10:30:00-24:00",
            "2024-01-15T10:30:00+99:00",
            "2024-01-15T10:30:00+05:60",
        ] {
            assert_eq!(p(s), None, "{s}");
        }
        for s in ["2024-01-31T23:59:59Z", "2024-12-31T00:00:00Z", "2024-04-30T00:00:00Z"] {
            assert!(p(s).is_some(), "{s}");
        }
    }

    #[test]
    fn incomplete_or_extra_text() {
        for s in [
            "",
            "2024-01-15",
            "2024-01-15T",
            "2024-01-15T10:30",
            "2024-01-15T10:30Z",
            "2024-01-15T10:30:00",
            "2024-01-15T10:30:00.123",
            "2024-01-15T10:30:00.Z",
            "2024-01-15T10:30:00.",
            "2024-01-15T10:30:00+05",
            "2024-01-15T10:30:00+0530",
            "2024-01-15T10:30:00+05:3",
            "2024-01-15T10:30:00+5:30",
            "2024-01-15T10:30:00+05:30:00",
            "2024-01-15T10:30:00ZZ",
            "2024-01-15T10:30:00Z ",
            " 2024-01-15T10:30:00Z",
            "2024-01-15T10:30:00Z\n",
            "2024-01-15T10:30:00 Z",
            "2024-01-15T10:30:00UTC",
            "2024-01-15T10:30:00GMT",
            "2024-01-15  10:30:00Z",
            "2024-01-15X10:30:00Z",
            "2024-01-15_10:30:00Z",
            "2024/01/15T10:30:00Z",
            "2024-01-15T10.30.00Z",
            "2024-1-15T10:30:00Z",
            "2024-01-5T10:30:00Z",
            "2024-01-15T1:30:00Z",
            "24-01-15T10:30:00Z",
            "20240115T103000Z",
            "2024-01-15T10:30:00,123Z",
            "2024-01-15T10:30:00.12a3Z",
            "2024-01-15T10:30:00.-1Z",
            "2024-01-15T10:30:00+-5:30",
            "2024-01-15T10:30:00.123+05:30Z",
        ] {
            assert_eq!(p(s), None, "{s:?}");
        }
    }

    #[test]
    fn years_outside_four_digits() {
        for s in [
            "10000-01-01T00:00:00Z",
            "+10000-01-01T00:00:00Z",
            "-0001-01-01T00:00:00Z",
            "+2024-01-15T10:30:00Z",
            "-2024-01-15T10:30:00Z",
            "+002024-01-15T10:30:00.000Z",
            "-000001-01-01T00:00:00.000Z",
            "999-01-01T00:00:00Z",
        ] {
            assert_eq!(p(s), None, "{s}");
        }
    }

    #[test]
    fn non_ascii_is_rejected_without_panicking() {
        for s in [
            "２０２４-01-15T10:30:00Z", // fullwidth digits
            "٢٠٢٤-01-15T10:30:00Z",     // Arabic-Indic digits
            "2024-01-15T10:30:00.١٢٣Z", // Arabic-Indic fraction
            "2024‐01‐15T10:30:00Z",     // U+2010 hyphens
            "2024-01-15T10:30:00é",
            "2024-01-15T10:30:00+05∶30", // U+2236 ratio
            "2024-01-15\u{a0}10:30:00Z",
            "2024-01-15T10:30:00\u{ff3a}", // fullwidth Z
            "é",
            "😀😀😀😀😀😀😀😀",
        ] {
            assert_eq!(p(s), None, "{s}");
        }
    }

    #[test]
    fn every_truncation_is_rejected() {
        for full in [
            "2024-01-15T16:00:00.123+05:30",
            "2024-01-15T10:30:00Z",
            "2024-01-15 10:30:00.5z",
        ] {
            assert!(p(full).is_some());
            for end in 0..full.len() {
                assert_eq!(p(&full[..end]), None, "{:?}", &full[..end]);
            }
        }
    }

    #[test]
    fn format_known_values() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339(JAN_15), "2024-01-15T10:30:00.000Z");
        assert_eq!(format_rfc3339(JAN_15 + 7), "2024-01-15T10:30:00.007Z");
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_rfc3339(-62_167_219_200_000), "0000-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339(1_483_228_799_999), "2016-12-31T23:59:59.999Z");
    }

    #[test]
    fn format_beyond_four_digit_years_like_to_iso_string() {
        // Values checked against `new Date(ms).toISOString()`.
        assert_eq!(format_rfc3339(253_402_300_800_000), "+010000-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339(-62_167_219_200_001), "-000001-12-31T23:59:59.999Z");
        assert_eq!(format_rfc3339(8_640_000_000_000_000), "+275760-09-13T00:00:00.000Z");
        assert_eq!(format_rfc3339(-8_640_000_000_000_000), "-271821-04-20T00:00:00.000Z");
        // Far outside what JS can represent: still no panic, still well-formed.
        for ms in [i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1] {
            let s = format_rfc3339(ms);
            assert!(s.ends_with('Z') && (s.starts_with('+') || s.starts_with('-')), "{s}");
        }
        assert!(format_rfc3339(i64::MAX).starts_with("+292278994-08-17T07:12:55.807Z"));
        assert_eq!(format_rfc3339(i64::MIN), "-292275055-05-16T16:47:04.192Z");
    }

    #[test]
    fn format_then_parse_round_trips() {
        let mut ms = -62_167_219_200_000i64;
        let end = 253_402_300_799_999i64;
        // A stride co-prime with every calendar unit visits all kinds of fields.
        while ms <= end {
            let s = format_rfc3339(ms);
            assert_eq!(s.len(), 24, "{s}");
            assert_eq!(parse_rfc3339(&s), Some(ms), "{s}");
            ms += 1_234_567_891;
        }
        for ms in [0, -1, 1, JAN_15, end, -62_167_219_200_000, 951_782_399_999] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Some(ms));
        }
    }

    #[test]
    fn parse_then_format_normalises() {
        for (input, output) in [
            ("2024-01-15T16:00:00.123456+05:30", "2024-01-15T10:30:00.123Z"),
            ("2024-01-15 10:30:00z", "2024-01-15T10:30:00.000Z"),
            ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59.999Z"),
        ] {
            assert_eq!(parse_rfc3339(input).map(format_rfc3339).as_deref(), Some(output));
        }
    }

    #[test]
    fn days_from_civil_known_values() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 1, 15), 19_737);
        assert_eq!(days_from_civil(1, 1, 1), -719_162);
        assert_eq!(days_from_civil(0, 1, 1), -719_528);
        assert_eq!(days_from_civil(0, 3, 1), -719_468);
        assert_eq!(days_from_civil(-1, 12, 31), -719_529);
    }

    #[test]
    fn civil_from_days_known_values() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_737), (2024, 1, 15));
        assert_eq!(civil_from_days(-719_528), (0, 1, 1));
        assert_eq!(civil_from_days(-719_529), (-1, 12, 31));
    }

    #[test]
    fn civil_days_round_trip_and_advance_by_one() {
        // Every day from 2000 BCE to 6000 CE: consecutive days are consecutive dates.
        let first = days_from_civil(-2000, 1, 1);
        let mut prev = civil_from_days(first - 1);
        for days in first..days_from_civil(6000, 1, 1) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            let (py, pm, pd) = prev;
            let expected = if pd < days_in_month(py, pm) {
                (py, pm, pd + 1)
            } else if pm < 12 {
                (py, pm + 1, 1)
            } else {
                (py + 1, 1, 1)
            };
            assert_eq!((y, m, d), expected);
            prev = (y, m, d);
        }
    }

    #[test]
    fn civil_helpers_never_panic_on_extremes() {
        for days in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 719_468, i64::MAX] {
            let (_, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d));
        }
        let (y, m, d) = civil_from_days(i64::MAX - 719_468);
        assert_eq!(days_from_civil(y, m, d), i64::MAX - 719_468);
        let (y, m, d) = civil_from_days(i64::MIN);
        assert_eq!(days_from_civil(y, m, d), i64::MIN);
        for y in [i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1] {
            for (m, d) in [(1, 1), (2, 29), (12, 31), (0, 0), (13, 40), (u32::MAX, u32::MAX)] {
                let _ = days_from_civil(y, m, d);
            }
        }
        let huge = 1_000_000_000_000_000;
        assert_eq!(civil_from_days(days_from_civil(huge, 6, 15)), (huge, 6, 15));
        assert_eq!(civil_from_days(days_from_civil(-huge, 2, 29)), (-huge, 2, 29));
    }

    #[test]
    fn checked_epoch_ms_ranges() {
        assert_eq!(checked_epoch_ms(1970, 1, 1, 0, 0, 0, 0), Some(0));
        assert_eq!(checked_epoch_ms(1970, 1, 1, 0, 0, 60, 0), Some(59_999));
        assert_eq!(checked_epoch_ms(1970, 1, 1, 0, 0, 0, 1000), None);
        assert_eq!(checked_epoch_ms(-1, 1, 1, 0, 0, 0, 0), None);
        assert_eq!(checked_epoch_ms(10_000, 1, 1, 0, 0, 0, 0), None);
        assert_eq!(checked_epoch_ms(2024, 0, 1, 0, 0, 0, 0), None);
        assert_eq!(checked_epoch_ms(2024, 13, 1, 0, 0, 0, 0), None);
        assert_eq!(checked_epoch_ms(2024, 2, 0, 0, 0, 0, 0), None);
    }

    #[test]
    fn digits_helper() {
        assert_eq!(digits(b"2024", 0, 4), Some(2024));
        assert_eq!(digits(b"x07", 1, 2), Some(7));
        assert_eq!(digits(b"12", 1, 2), None);
        assert_eq!(digits(b"1a", 0, 2), None);
        assert_eq!(digits(b"12", usize::MAX, 2), None);
        assert_eq!(digits(b"", 0, 0), Some(0));
    }
}
