//! When to try again, and how long to wait first.
//!
//! Exponential backoff with full jitter (a random delay between 0 and
//! min(cap, base · 2^attempt)): concurrent clients that failed together spread out instead
//! of retrying in lockstep. A server's `Retry-After` replaces the backoff, within a cap;
//! beyond the cap the caller fails at once with RATE_LIMITED rather than hang for minutes.

#[allow(unused_imports)]
use crate::prelude::*;

use crate::core::error::{AuthError, ErrorCode};
use crate::core::http_date::parse_retry_after;
use crate::core::text::{cat, int};

pub const BACKOFF_BASE_MS: f64 = 200.0;
pub const BACKOFF_CAP_MS: f64 = 5_000.0;

/// The jittered delay before retry number `attempt + 1` (`attempt` counts from 0).
/// `random` is uniform in [0, 1).
pub fn backoff_ms(attempt: u32, random: f64) -> u32 {
    let ceiling = (BACKOFF_BASE_MS * (1u64 << attempt.min(30)) as f64).min(BACKOFF_CAP_MS);
    (ceiling * random.clamp(0.0, 1.0)) as u32
}

/// What to do about a `Retry-After` header.
#[derive(Debug, PartialEq, Eq)]
pub enum RetryAfter {
    /// No header, or one we cannot read: use the backoff.
    Backoff,
    /// Wait this long, then retry.
    Wait(u32),
    /// The server asks for longer than `maxRetryAfterSeconds` allows.
    TooLong(u64),
}

pub fn retry_after(header: Option<&str>, now_ms: i64, cap_ms: u64) -> RetryAfter {
    match header.and_then(|h| parse_retry_after(h, now_ms)) {
        None => RetryAfter::Backoff,
        Some(ms) if ms > cap_ms => RetryAfter::TooLong(ms),
        Some(ms) => RetryAfter::Wait(ms.min(u32::MAX as u64) as u32),
    }
}

/// The error for a Retry-After over the cap.
pub fn too_long(wait_ms: u64, status: u16) -> AuthError {
    let seconds = wait_ms.div_ceil(1000);
    let shown = if seconds > 86_400 * 365 {
        "more than a year".to_owned()
    } else {
        cat(&[&int(seconds as i64), " s"])
    };
    AuthError::new(
        ErrorCode::RateLimited,
        cat(&[
            "the server asked to retry after ",
            &shown,
            ", longer than maxRetryAfterSeconds",
        ]),
    )
    .with_status(status)
}

/// Methods a retry or a replay cannot duplicate the effect of.
pub fn is_idempotent(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS")
}

/// Statuses worth retrying for an API call (idempotent methods only): the gateway and
/// overload family plus rate limiting. A plain 500 is a bug on the server, not a blip.
pub fn is_retryable_api_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_with_full_jitter_and_a_cap() {
        assert_eq!(backoff_ms(0, 0.999_999), 199);
        assert_eq!(backoff_ms(1, 0.5), 200);
        assert_eq!(backoff_ms(3, 1.0), 1600);
        assert_eq!(backoff_ms(10, 1.0), 5000);
        assert_eq!(backoff_ms(u32::MAX, 1.0), 5000);
        assert_eq!(backoff_ms(2, 0.0), 0);
        assert_eq!(backoff_ms(2, f64::NAN.max(0.0)), 0);
    }

    #[test]
    fn retry_after_seconds_dates_garbage_and_huge() {
        let now = 784_111_777_000; // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(retry_after(Some("3"), now, 30_000), RetryAfter::Wait(3_000));
        assert_eq!(
            retry_after(Some("Sun, 06 Nov 1994 08:49:47 GMT"), now, 30_000),
            RetryAfter::Wait(10_000)
        );
        assert_eq!(
            retry_after(Some("Sun, 06 Nov 1994 08:40:00 GMT"), now, 30_000),
            RetryAfter::Wait(0)
        );
        assert_eq!(retry_after(Some("soon"), now, 30_000), RetryAfter::Backoff);
        assert_eq!(retry_after(Some("-1"), now, 30_000), RetryAfter::Backoff);
        assert_eq!(retry_after(Some("1.5"), now, 30_000), RetryAfter::Backoff);
        assert_eq!(retry_after(None, now, 30_000), RetryAfter::Backoff);
        assert_eq!(retry_after(Some("31"), now, 30_000), RetryAfter::TooLong(31_000));
        assert!(matches!(
            retry_after(Some("99999999999999999999999"), now, 30_000),
            RetryAfter::TooLong(_)
        ));
        let e = too_long(u64::MAX, 429);
        assert_eq!((e.code(), e.status()), ("RATE_LIMITED", 429));
        assert!(e.message().contains("more than a year"));
    }

    #[test]
    fn idempotency_and_api_retry_statuses() {
        assert!(is_idempotent("GET") && is_idempotent("HEAD") && is_idempotent("OPTIONS"));
        assert!(!is_idempotent("POST") && !is_idempotent("PUT") && !is_idempotent("get"));
        for s in [429, 502, 503, 504] {
            assert!(is_retryable_api_status(s));
        }
        for s in [200, 401, 404, 500, 501] {
            assert!(!is_retryable_api_status(s));
        }
    }
}
