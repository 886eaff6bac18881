//! Refresh timing: when a token counts as due for refresh, when the timer fires, and how the
//! server's clock is trusted over ours.

#[allow(unused_imports)]
use crate::prelude::*;

use crate::core::config::MAX_TIMER_DELAY_MS;
use crate::core::http_date::parse_http_date;

/// The margin actually used for one token pair: the configured margin, but never more than
/// half the token's remaining life. A server that issues 60-second tokens to a client with
/// the default 5-minute margin would otherwise have every call refresh first.
pub fn effective_margin(configured_ms: i64, expires_local_ms: i64, now_ms: i64) -> i64 {
    configured_ms.min((expires_local_ms - now_ms).max(0) / 2)
}

/// A delay `setTimeout` will honour: negative and NaN-ish values become 0, and anything past
/// 2^31-1 ms is clamped (Node fires such timers after 1 ms; the session re-arms instead).
pub fn timer_delay(due_ms: i64, now_ms: i64) -> u32 {
    (due_ms.saturating_sub(now_ms)).clamp(0, MAX_TIMER_DELAY_MS as i64) as u32
}

/// Differences smaller than this are the `Date` header's one-second resolution plus
/// latency, not a wrong clock.
const SKEW_NOISE_MS: i64 = 2_000;
/// A `Date` further off than this is a broken header, not a clock to trust.
const SKEW_SANE_MS: i64 = 366 * 86_400_000;

/// The server's clock minus ours, read from a response's `Date` header, when it is sane:
/// expiry times are the server's, so a client whose clock is off still refreshes on time.
pub fn clock_skew(date_header: Option<&str>, local_now_ms: i64) -> Option<i64> {
    let server = parse_http_date(date_header?.trim())?;
    let skew = server - local_now_ms;
    if skew.abs() > SKEW_SANE_MS {
        None
    } else if skew.abs() < SKEW_NOISE_MS {
        Some(0)
    } else {
        Some(skew)
    }
}

/// How long to wait before retrying a timer-driven refresh that failed for a temporary
/// reason: half the access token's remaining life, between 1 and 30 seconds. `None` once
/// the token has expired: the next call refreshes on its own path.
pub fn retry_delay(expires_local_ms: i64, now_ms: i64) -> Option<u32> {
    let left = expires_local_ms - now_ms;
    (left > 0).then(|| (left / 2).clamp(1_000, 30_000) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_is_capped_at_half_the_remaining_life() {
        assert_eq!(effective_margin(300_000, 3_600_000, 0), 300_000);
        assert_eq!(effective_margin(300_000, 60_000, 0), 30_000);
        assert_eq!(effective_margin(300_000, -5, 0), 0);
    }

    #[test]
    fn timer_delays_are_clamped_to_what_set_timeout_honours() {
        assert_eq!(timer_delay(10, 0), 10);
        assert_eq!(timer_delay(-10, 0), 0);
        assert_eq!(timer_delay(i64::MAX, i64::MIN), 2_147_483_647);
        assert_eq!(timer_delay(30 * 86_400_000, 0), 2_147_483_647);
    }

    #[test]
    fn skew_from_date_headers() {
        let now = 784_111_777_000; // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(clock_skew(Some("Sun, 06 Nov 1994 08:49:37 GMT"), now + 900), Some(0));
        assert_eq!(clock_skew(Some("Sun, 06 Nov 1994 09:49:37 GMT"), now), Some(3_600_000));
        assert_eq!(clock_skew(Some("Sun, 06 Nov 1994 07:49:37 GMT"), now), Some(-3_600_000));
        assert_eq!(clock_skew(Some("Thu, 01 Jan 1970 00:00:00 GMT"), now), None);
        assert_eq!(clock_skew(Some("yesterday"), now), None);
        assert_eq!(clock_skew(None, now), None);
    }

    #[test]
    fn retry_delay_bounds() {
        assert_eq!(retry_delay(100_000, 0), Some(30_000));
        assert_eq!(retry_delay(10_000, 0), Some(5_000));
        assert_eq!(retry_delay(500, 0), Some(1_000));
        assert_eq!(retry_delay(0, 0), None);
    }
}
