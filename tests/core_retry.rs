//! Retries: which failures are retried, how long the machine waits (backoff with full
//! jitter, a server's Retry-After within the cap), attempt timeouts, and the rules for API
//! calls. The jitter comes from the machine's seed, so delays are asserted against their
//! bounds, and exact wherever a Retry-After fixes them.
// Native only: the harness reads JSON with the core's native reader.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use auth_session::core::machine::{Endpoint, Keep, Outcome, Output};
use auth_session::core::Phase;
use common::*;

/// `min(5000, 200 · 2^attempt)`: the ceiling of the jittered backoff before retry `attempt + 1`.
fn ceiling(attempt: u32) -> i64 {
    (200i64 << attempt.min(10)).min(5_000)
}

/// Answers the open login with `failure` and returns how long the machine waits to retry.
fn backoff_after(r: &mut Run, now: i64, failure: Reply) -> i64 {
    r.answer(now, failure);
    assert!(!r.has_open_send(), "waiting, not sending");
    r.deadline().expect("a retry is due") - now
}

// ----- auth calls ----------------------------------------------------------------------------

#[test]
fn network_errors_are_retried_with_backoff() {
    let mut r = Run::new(config(|_| {}));
    let f = r.login(EPOCH);
    let first = r.open_send();
    let d0 = backoff_after(&mut r, EPOCH, network());
    assert!((0..ceiling(0)).contains(&d0), "{d0}");
    assert_eq!(r.keep(), Some(Keep::Alive), "a caller awaits the retry");
    if d0 > 0 {
        assert_eq!(r.timeout(EPOCH + d0 - 1), [], "not before its time");
    }
    let t1 = r.fire();
    let second = r.open_send();
    assert_ne!(second.id, first.id);
    assert_eq!(second.body, first.body);
    let d1 = backoff_after(&mut r, t1, network());
    assert!((0..ceiling(1)).contains(&d1), "{d1}");
    let t2 = r.fire();
    r.answer(t2, ok(&Pair::issued(1, t2)));
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.count(Endpoint::Login), 3);
    assert_eq!(r.token_now(t2).unwrap(), at(1));
}

#[test]
fn backoff_has_full_jitter_and_doubles_per_attempt_up_to_the_cap() {
    let mut delays = vec![Vec::new(); 8];
    for seed in 1..=300 {
        let mut r = Run::with(config(|o| o.retries = Some(8.0)), false, seed);
        r.login(EPOCH);
        let mut t = EPOCH;
        for d in delays.iter_mut() {
            d.push(backoff_after(&mut r, t, status(503)));
            t = r.fire();
        }
        r.answer(t, ok(&Pair::issued(1, t)));
        assert_eq!(r.count(Endpoint::Login), 9);
    }
    for (attempt, d) in delays.iter().enumerate() {
        let cap = ceiling(attempt as u32);
        let (min, max) = (*d.iter().min().unwrap(), *d.iter().max().unwrap());
        assert!(
            min >= 0 && max < cap,
            "attempt {attempt}: {min}..{max} outside 0..{cap}"
        );
        assert!(
            max > cap * 9 / 10,
            "attempt {attempt}: the ceiling is {cap}, the largest wait {max}"
        );
        assert!(
            min < cap / 10,
            "attempt {attempt}: full jitter reaches down to 0, smallest {min}"
        );
    }
}

#[test]
fn the_jitter_follows_the_seed() {
    let first_delay = |seed| {
        let mut r = Run::with(config(|_| {}), false, seed);
        r.login(EPOCH);
        backoff_after(&mut r, EPOCH, status(502))
    };
    assert_eq!(first_delay(7), first_delay(7), "deterministic for a seed");
    let seeds = (1..=20u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let distinct: std::collections::HashSet<i64> = seeds.map(first_delay).collect();
    assert!(distinct.len() > 10, "concurrent clients spread out: {distinct:?}");
}

#[test]
fn server_errors_exhaust_the_retries_then_fail_with_server_error() {
    let mut r = Run::new(config(|_| {}));
    let f = r.login(EPOCH);
    let mut t = EPOCH;
    for _ in 0..2 {
        r.answer(t, reply(503, "<html>Service Unavailable</html>"));
        t = r.fire();
    }
    r.answer(t, reply(503, "<html>Service Unavailable</html>"));
    let e = r.failure(f);
    assert_eq!(
        (e.code(), e.name(), e.status(), e.retryable()),
        ("SERVER_ERROR", "ServerError", 503, true)
    );
    assert_eq!(r.count(Endpoint::Login), 3);
    assert_eq!(r.m.info().state, Phase::Anonymous);
    assert_eq!(r.deadline(), None);
}

#[test]
fn a_server_error_envelope_on_5xx_keeps_the_servers_code_and_is_retried() {
    let mut r = Run::new(config(|o| o.retries = Some(1.0)));
    let f = r.login(EPOCH);
    r.answer(EPOCH, error_envelope(500, "InternalError", "INTERNAL", "database down"));
    let t = r.fire();
    r.answer(t, error_envelope(500, "InternalError", "INTERNAL", "database down"));
    let e = r.failure(f);
    assert_eq!(
        (e.code(), e.name(), e.status(), e.retryable(), e.message()),
        ("INTERNAL", "InternalError", 500, true, "database down")
    );
    assert_eq!(r.count(Endpoint::Login), 2);
}

#[test]
fn rate_limits_without_retry_after_use_the_backoff_then_fail_with_rate_limited() {
    let mut r = Run::new(config(|_| {}));
    let f = r.login(EPOCH);
    let mut t = EPOCH;
    for attempt in 0..2 {
        let d = backoff_after(&mut r, t, status(429));
        assert!((0..ceiling(attempt)).contains(&d));
        t = r.fire();
    }
    r.answer(t, status(429));
    let e = r.failure(f);
    assert_eq!(
        (e.code(), e.name(), e.status()),
        ("RATE_LIMITED", "RateLimitedError", 429)
    );
    assert_eq!(r.count(Endpoint::Login), 3);
}

#[test]
fn retries_zero_is_one_attempt() {
    let mut r = Run::new(config(|o| o.retries = Some(0.0)));
    let f = r.login(EPOCH);
    r.answer(EPOCH, status(503));
    assert_eq!(r.failure(f).code(), "SERVER_ERROR");
    assert_eq!(r.count(Endpoint::Login), 1);
    assert_eq!(r.deadline(), None);
}

#[test]
fn an_attempt_without_an_answer_times_out_is_cancelled_and_retried() {
    let mut r = Run::new(config(|_| {}));
    let f = r.login(EPOCH);
    let first = r.open_send();
    assert_eq!(r.m.poll_timeout(), Some((EPOCH + TIMEOUT, Keep::Alive)));
    assert_eq!(r.timeout(EPOCH + TIMEOUT - 1), []);
    assert_eq!(r.timeout(EPOCH + TIMEOUT), [Output::Cancel(first.id)]);
    let retry_at = r.deadline().unwrap();
    assert!((EPOCH + TIMEOUT..EPOCH + TIMEOUT + ceiling(0)).contains(&retry_at));
    // The late answer (the server did issue pair 1) is dropped.
    assert_eq!(
        r.answer_io(EPOCH + TIMEOUT + 1, first.id, ok(&Pair::issued(1, EPOCH))),
        []
    );
    r.timeout(retry_at);
    let second = r.open_send();
    assert_eq!(second.endpoint, Endpoint::Login);
    r.answer(retry_at, ok(&Pair::issued(2, retry_at)));
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.token_now(retry_at).unwrap(), at(2));
}

#[test]
fn an_answer_just_inside_the_timeout_is_taken() {
    let mut r = Run::new(config(|_| {}));
    let f = r.login(EPOCH);
    r.timeout(EPOCH + TIMEOUT - 1);
    r.answer(EPOCH + TIMEOUT - 1, ok(&Pair::issued(1, EPOCH)));
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.count(Endpoint::Login), 1);
}

#[test]
fn timeouts_exhaust_the_retries_then_fail_with_timeout() {
    let mut r = Run::new(config(|o| o.timeout_ms = Some(2_000.0)));
    let f = r.login(EPOCH);
    let mut sent_at = vec![EPOCH];
    for _ in 0..2 {
        let t = r.fire(); // the attempt times out
        assert_eq!(t, *sent_at.last().unwrap() + 2_000);
        sent_at.push(r.fire()); // the backoff ends
    }
    let t = r.fire();
    assert_eq!(t, sent_at[2] + 2_000);
    let e = r.failure(f);
    assert_eq!(
        (e.code(), e.name(), e.status(), e.retryable()),
        ("TIMEOUT", "TimeoutError", 0, true)
    );
    assert_eq!(r.count(Endpoint::Login), 3);
    assert_eq!(r.cancelled().len(), 3, "every abandoned attempt is cancelled");
    assert_eq!(r.deadline(), None);
}

#[test]
fn client_errors_are_never_retried() {
    for (status, name, code) in [
        (400, "ValidationException", "VALIDATION_FAILURE"),
        (400, "SyntaxError", "SYNTAX_ERROR"),
        (401, "UnauthorizedError", "UNAUTHORIZED"),
        (403, "ForbiddenError", "FORBIDDEN"),
    ] {
        let mut r = Run::new(config(|_| {}));
        let f = r.login(EPOCH);
        r.answer(EPOCH, error_envelope(status, name, code, "no"));
        let e = r.failure(f);
        assert_eq!(
            (e.code(), e.name(), e.status(), e.retryable()),
            (code, name, status, false)
        );
        assert_eq!(r.count(Endpoint::Login), 1, "{code}");
        assert_eq!(r.deadline(), None);
    }
    let mut r = Run::new(config(|_| {}));
    let f = r.login(EPOCH);
    r.answer(EPOCH, reply(404, "not here"));
    let e = r.failure(f);
    assert_eq!((e.code(), e.name(), e.status()), ("HTTP_ERROR", "HttpError", 404));
    assert_eq!(r.count(Endpoint::Login), 1);
}

#[test]
fn a_forbidden_refresh_surfaces_at_once_and_keeps_the_session() {
    let mut r = Run::new(config(no_timer));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let t = EPOCH + HOUR + 1;
    let f = wait(r.refresh(t));
    r.answer(
        t,
        error_envelope(403, "ForbiddenError", "FORBIDDEN", "IP address not authorized"),
    );
    let e = r.failure(f);
    assert_eq!(
        (e.code(), e.name(), e.status(), e.message()),
        ("FORBIDDEN", "ForbiddenError", 403, "IP address not authorized")
    );
    assert_eq!(r.count(Endpoint::Refresh), 1);
    assert_eq!(r.m.info().state, Phase::Active);
    assert_eq!(r.event_count("expired"), 0);
}

#[test]
fn retry_after_seconds_replaces_the_backoff() {
    let mut r = Run::new(config(|_| {}));
    let f = r.login(EPOCH);
    assert_eq!(backoff_after(&mut r, EPOCH, status(429).retry_after("2")), 2_000);
    let t = r.fire();
    assert_eq!(backoff_after(&mut r, t, status(503).retry_after(" 1 ")), 1_000);
    let t = r.fire();
    assert_eq!(t, EPOCH + 3_000);
    r.answer(t, ok(&Pair::issued(1, t)));
    assert_eq!(r.settled(f), Outcome::Done);
}

#[test]
fn retry_after_as_an_http_date_waits_until_then_and_a_past_date_retries_at_once() {
    let mut r = Run::new(config(|_| {}));
    r.login(EPOCH);
    assert_eq!(
        backoff_after(&mut r, EPOCH, status(429).retry_after(&http_date(EPOCH + 5_000))),
        5_000
    );
    let t = r.fire();
    assert_eq!(
        backoff_after(&mut r, t, status(429).retry_after(&http_date(EPOCH - MINUTE))),
        0
    );
    r.fire();
    assert_eq!(r.count(Endpoint::Login), 3);
}

#[test]
fn a_garbage_retry_after_falls_back_to_the_backoff() {
    for garbage in ["soon", "-1", "1.5", "", "+5", "Tomorrow, 99 Foo 2024"] {
        let mut r = Run::new(config(|_| {}));
        r.login(EPOCH);
        let d = backoff_after(&mut r, EPOCH, status(429).retry_after(garbage));
        assert!((0..ceiling(0)).contains(&d), "{garbage:?}: {d}");
    }
}

#[test]
fn a_retry_after_over_the_cap_fails_at_once_with_rate_limited() {
    let mut r = Run::new(config(|_| {}));
    let f = r.login(EPOCH);
    r.answer(EPOCH, status(429).retry_after("31"));
    let e = r.failure(f);
    assert_eq!(
        (e.code(), e.name(), e.status(), e.retryable()),
        ("RATE_LIMITED", "RateLimitedError", 429, true)
    );
    assert!(e.message().contains("31 s"), "{}", e.message());
    assert_eq!(r.count(Endpoint::Login), 1);
    assert_eq!(r.deadline(), None);

    // A 503 asking for too long fails the same way, and so does an absurd number.
    for (status_code, value) in [
        (503, http_date(EPOCH + HOUR)),
        (429, "99999999999999999999999".to_owned()),
    ] {
        let mut r = Run::new(config(|_| {}));
        let f = r.login(EPOCH);
        r.answer(EPOCH, status(status_code).retry_after(&value));
        let e = r.failure(f);
        assert_eq!((e.code(), e.status()), ("RATE_LIMITED", status_code), "{value}");
        assert_eq!(r.count(Endpoint::Login), 1);
        if value.starts_with('9') {
            assert!(e.message().contains("more than a year"), "{}", e.message());
        }
    }

    // A larger cap lets it wait.
    let mut r = Run::new(config(|o| o.max_retry_after_seconds = Some(60.0)));
    r.login(EPOCH);
    assert_eq!(backoff_after(&mut r, EPOCH, status(429).retry_after("31")), 31_000);
}

#[test]
fn a_retry_after_on_the_last_attempt_does_not_wait() {
    let mut r = Run::new(config(|o| o.retries = Some(0.0)));
    let f = r.login(EPOCH);
    r.answer(EPOCH, status(429).retry_after("5"));
    assert_eq!(r.failure(f).code(), "RATE_LIMITED");
    assert_eq!(r.deadline(), None);
}

#[test]
fn refresh_retries_keep_the_same_unspent_token() {
    let mut r = Run::new(config(no_timer));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let t = EPOCH + HOUR + 1;
    let f = wait(r.refresh(t));
    r.answer(t, network());
    let t = r.fire();
    r.answer(t, status(502));
    let t = r.fire();
    r.answer(t, ok(&Pair::issued(2, t)));
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.refresh_tokens_sent(), [rt(1), rt(1), rt(1)]);
}

#[test]
fn retry_after_counts_on_a_429_or_5xx_only() {
    // The driver hands every answer's Retry-After over; the machine decides where it counts:
    // a 401 or 400 that carries one is neither delayed by it nor reports it.
    for code in [400u16, 401, 403] {
        let mut r = Run::new(config(|_| {}));
        let f = r.login(EPOCH);
        r.answer(EPOCH, status(code).retry_after("7"));
        let e = r.failure(f);
        assert_eq!((e.status(), e.retry_after()), (code, None), "{code}");
        assert_eq!(r.count(Endpoint::Login), 1, "{code}: not retried");
    }
    let mut r = Run::new(config(|_| {}));
    r.login(EPOCH);
    assert_eq!(backoff_after(&mut r, EPOCH, status(503).retry_after("7")), 7_000);
}
