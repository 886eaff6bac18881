//! Retries: which failures are retried, how long the session waits (backoff with jitter, a
//! server's Retry-After within the cap), timeouts, and the different rules for API calls.
//! `random()` is 0.5, so retry n waits 0.5 · min(5000, 200 · 2^n) ms.

mod common;

use auth_session::core::{Abort, Phase};
use common::*;

fn login_times(h: &Harness) -> Vec<i64> {
    h.requests_to("/auth/login").iter().map(|r| r.t()).collect()
}

fn login(h: &Harness) -> Result<auth_session::core::SessionInfo, auth_session::core::AuthError> {
    let r = h.run(h.session.login(Some(creds())));
    h.check(r)
}

// ----- auth calls ----------------------------------------------------------------------------

#[test]
fn network_errors_are_retried_with_backoff() {
    let h = Harness::new();
    h.script_n("/auth/login", 2, Reply::network_error());
    assert_eq!(login(&h).unwrap().state, Phase::Active);
    assert_eq!(login_times(&h), [0, 100, 300]);
    assert_eq!(h.token().unwrap(), at(1));
}

#[test]
fn backoff_doubles_per_attempt_up_to_the_cap() {
    let h = Harness::with(|o| o.retries = Some(8.0));
    h.script_n("/auth/login", 8, Reply::status(503));
    login(&h).unwrap();
    let times = login_times(&h);
    let waits: Vec<_> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // 0.5 · min(5000, 200 · 2^n)
    assert_eq!(waits, [100, 200, 400, 800, 1600, 2500, 2500, 2500]);
}

#[test]
fn jitter_follows_random() {
    let h = Harness::new();
    h.set_random(0.25);
    h.script_n("/auth/login", 2, Reply::status(502));
    login(&h).unwrap();
    assert_eq!(login_times(&h), [0, 50, 150]);
    let h = Harness::new();
    h.set_random(0.0);
    h.script_n("/auth/login", 2, Reply::status(502));
    login(&h).unwrap();
    assert_eq!(login_times(&h), [0, 0, 0], "full jitter may retry at once");
}

#[test]
fn server_errors_exhaust_the_retries_then_fail_with_server_error() {
    let h = Harness::new();
    h.script_n(
        "/auth/login",
        3,
        Reply::bytes(503, b"<html>Service Unavailable</html>".to_vec()),
    );
    let e = h.err(login(&h));
    assert_eq!(
        (e.code(), e.name(), e.status(), e.retryable()),
        ("SERVER_ERROR", "ServerError", 503, true)
    );
    assert_eq!(login_times(&h), [0, 100, 300]);
    assert_eq!(h.info().state, Phase::Anonymous);
}

#[test]
fn a_server_error_envelope_on_5xx_keeps_the_servers_code_and_is_retried() {
    let h = Harness::with(|o| o.retries = Some(1.0));
    h.script_n(
        "/auth/login",
        2,
        Reply::error(500, "InternalError", "INTERNAL", "database down"),
    );
    let e = h.err(login(&h));
    assert_eq!(
        (e.code(), e.name(), e.status(), e.retryable()),
        ("INTERNAL", "InternalError", 500, true)
    );
    assert_eq!(login_times(&h), [0, 100]);
}

#[test]
fn rate_limits_without_retry_after_use_the_backoff_then_fail_with_rate_limited() {
    let h = Harness::new();
    h.script_n("/auth/login", 3, Reply::status(429));
    let e = h.err(login(&h));
    assert_eq!(
        (e.code(), e.name(), e.status()),
        ("RATE_LIMITED", "RateLimitedError", 429)
    );
    assert_eq!(login_times(&h), [0, 100, 300]);
}

#[test]
fn retries_zero_is_one_attempt() {
    let h = Harness::with(|o| o.retries = Some(0.0));
    h.script("/auth/login", Reply::status(503));
    assert_eq!(h.err(login(&h)).code(), "SERVER_ERROR");
    assert_eq!(h.count("/auth/login"), 1);
    assert_eq!(h.elapsed(), 0);
}

#[test]
fn a_timed_out_attempt_is_retried() {
    let h = Harness::new();
    // The first answer would come 1 ms after the 10 s timeout (the server did issue pair 1).
    h.script("/auth/login", Reply::server().delay(10_001));
    login(&h).unwrap();
    assert_eq!(login_times(&h), [0, 10_000 + 100]);
    assert_eq!(h.token().unwrap(), at(2), "the late answer was dropped");
    assert_eq!(h.pending_sleeps(), 0, "the abandoned request left nothing behind");
}

#[test]
fn an_answer_just_inside_the_timeout_is_taken() {
    let h = Harness::new();
    h.script("/auth/login", Reply::server().delay(9_999));
    login(&h).unwrap();
    assert_eq!(h.count("/auth/login"), 1);
    assert_eq!(h.elapsed(), 9_999);
}

#[test]
fn timeouts_exhaust_the_retries_then_fail_with_timeout() {
    let h = Harness::with(|o| o.timeout_ms = Some(2_000.0));
    h.script_n("/auth/login", 3, Reply::hang());
    let e = h.err(login(&h));
    assert_eq!(
        (e.code(), e.name(), e.status(), e.retryable()),
        ("TIMEOUT", "TimeoutError", 0, true)
    );
    assert_eq!(login_times(&h), [0, 2_100, 4_300]);
    assert_eq!(h.elapsed(), 6_300);
}

#[test]
fn client_errors_are_never_retried() {
    for (status, name, code) in [
        (400, "ValidationException", "VALIDATION_FAILURE"),
        (400, "SyntaxError", "SYNTAX_ERROR"),
        (401, "UnauthorizedError", "UNAUTHORIZED"),
        (403, "ForbiddenError", "FORBIDDEN"),
    ] {
        let h = Harness::new();
        h.script("/auth/login", Reply::error(status, name, code, "no"));
        let e = h.err(login(&h));
        assert_eq!(
            (e.code(), e.name(), e.status(), e.retryable()),
            (code, name, status, false)
        );
        assert_eq!(h.count("/auth/login"), 1, "{code}");
        assert_eq!(h.elapsed(), 0);
    }
    let h = Harness::new();
    h.script("/auth/login", Reply::bytes(404, b"not here".to_vec()));
    let e = h.err(login(&h));
    assert_eq!((e.code(), e.name(), e.status()), ("HTTP_ERROR", "HttpError", 404));
    assert_eq!(h.count("/auth/login"), 1);
}

#[test]
fn a_forbidden_refresh_surfaces_at_once_and_keeps_the_session() {
    let h = Harness::with(|o| o.auto_refresh = Some(false));
    h.login();
    h.jump(HOUR + 1);
    h.script(
        "/auth/refresh",
        Reply::error(403, "ForbiddenError", "FORBIDDEN", "IP address not authorized"),
    );
    let e = h.err(h.token());
    assert_eq!(
        (e.code(), e.name(), e.status(), e.message()),
        ("FORBIDDEN", "ForbiddenError", 403, "IP address not authorized")
    );
    assert_eq!(h.count("/auth/refresh"), 1);
    assert_eq!(h.info().state, Phase::Active);
    assert_eq!(h.event_count("expired"), 0);
}

#[test]
fn retry_after_seconds_replaces_the_backoff() {
    let h = Harness::new();
    h.script("/auth/login", Reply::status(429).retry_after("2"));
    h.script("/auth/login", Reply::status(503).retry_after("1"));
    login(&h).unwrap();
    assert_eq!(login_times(&h), [0, 2_000, 3_000]);
}

#[test]
fn retry_after_as_an_http_date_waits_until_then() {
    let h = Harness::new();
    h.script("/auth/login", Reply::status(429).retry_after(&http_date(EPOCH + 5_000)));
    login(&h).unwrap();
    assert_eq!(login_times(&h), [0, 5_000]);
    // A date in the past: retry at once.
    let h = Harness::new();
    h.script(
        "/auth/login",
        Reply::status(429).retry_after(&http_date(EPOCH - 60_000)),
    );
    login(&h).unwrap();
    assert_eq!(login_times(&h), [0, 0]);
}

#[test]
fn a_garbage_retry_after_falls_back_to_the_backoff() {
    for garbage in ["soon", "-1", "1.5", "", "Tomorrow, 99 Foo 2024"] {
        let h = Harness::new();
        h.script("/auth/login", Reply::status(429).retry_after(garbage));
        login(&h).unwrap();
        assert_eq!(login_times(&h), [0, 100], "{garbage:?}");
    }
}

#[test]
fn a_retry_after_over_the_cap_fails_at_once_with_rate_limited() {
    let h = Harness::new();
    h.script("/auth/login", Reply::status(429).retry_after("31"));
    let e = h.err(login(&h));
    assert_eq!(
        (e.code(), e.name(), e.status(), e.retryable()),
        ("RATE_LIMITED", "RateLimitedError", 429, true)
    );
    assert!(e.message().contains("31 s"), "{}", e.message());
    assert_eq!(h.count("/auth/login"), 1);
    assert_eq!(h.elapsed(), 0);
    // A 503 asking for too long fails the same way.
    let h = Harness::new();
    h.script("/auth/login", Reply::status(503).retry_after(&http_date(EPOCH + HOUR)));
    assert_eq!(h.err(login(&h)).code(), "RATE_LIMITED");
    assert_eq!(h.count("/auth/login"), 1);
    // A larger cap lets it wait.
    let h = Harness::with(|o| o.max_retry_after_seconds = Some(60.0));
    h.script("/auth/login", Reply::status(429).retry_after("31"));
    login(&h).unwrap();
    assert_eq!(login_times(&h), [0, 31_000]);
}

#[test]
fn a_retry_after_on_the_last_attempt_does_not_wait() {
    let h = Harness::with(|o| o.retries = Some(0.0));
    h.script("/auth/login", Reply::status(429).retry_after("5"));
    assert_eq!(h.err(login(&h)).code(), "RATE_LIMITED");
    assert_eq!(h.elapsed(), 0);
}

#[test]
fn refresh_retries_keep_the_same_unspent_token() {
    let h = Harness::with(|o| o.auto_refresh = Some(false));
    h.login();
    h.jump(HOUR + 1);
    h.script("/auth/refresh", Reply::network_error());
    h.script("/auth/refresh", Reply::status(502));
    assert_eq!(h.token().unwrap(), at(2));
    let refreshes = h.requests_to("/auth/refresh");
    assert_eq!(
        refreshes.iter().map(|r| r.t() - HOUR - 1).collect::<Vec<_>>(),
        [0, 100, 300]
    );
    assert!(refreshes.iter().all(|r| r.refresh_token() == Some(rt(1))));
}

// ----- API calls -----------------------------------------------------------------------------

fn api_times(h: &Harness, path: &str) -> Vec<i64> {
    h.requests_to(path).iter().map(|r| r.t()).collect()
}

#[test]
fn get_is_retried_on_gateway_errors_and_rate_limits_and_the_last_response_is_returned() {
    for status in [429, 502, 503, 504] {
        let h = Harness::new();
        h.login();
        h.script_n(PRODUCTS, 3, Reply::bytes(status, format!("busy {status}").into_bytes()));
        let r = h.get(PRODUCTS).unwrap();
        assert_eq!(
            r.response.status, status,
            "a final {status} is a Response, not an error"
        );
        assert_eq!(r.response.body.0, format!("busy {status}").into_bytes());
        assert_eq!(api_times(&h, PRODUCTS), [0, 100, 300], "{status}");
        assert_eq!(h.world.bodies_discarded.get(), 2, "retried responses are released");
        // And a later success is returned.
        h.script_n(PRODUCTS, 2, Reply::status(status));
        assert_eq!(h.get(PRODUCTS).unwrap().response.status, 200);
    }
}

#[test]
fn get_is_not_retried_on_500_or_other_statuses() {
    for status in [500, 501, 400, 403, 404, 409] {
        let h = Harness::new();
        h.login();
        h.script(PRODUCTS, Reply::status(status));
        assert_eq!(h.get(PRODUCTS).unwrap().response.status, status);
        assert_eq!(h.count(PRODUCTS), 1, "{status}");
    }
}

#[test]
fn get_is_retried_on_network_errors_and_timeouts() {
    let h = Harness::new();
    h.login();
    h.script(PRODUCTS, Reply::network_error());
    h.script(PRODUCTS, Reply::hang());
    assert_eq!(h.get(PRODUCTS).unwrap().response.status, 200);
    assert_eq!(api_times(&h, PRODUCTS), [0, 100, 100 + 10_000 + 200]);

    h.script_n(PRODUCTS, 3, Reply::network_error());
    let e = h.err(h.get(PRODUCTS));
    assert_eq!(e.code(), "NETWORK_ERROR");
    assert_eq!(h.count(PRODUCTS), 6);
}

#[test]
fn head_and_options_are_retried_like_get() {
    for method in ["HEAD", "OPTIONS"] {
        let h = Harness::new();
        h.login();
        h.script(PRODUCTS, Reply::status(503));
        assert_eq!(
            h.fetch(method, PRODUCTS, None, Abort::none()).unwrap().response.status,
            200
        );
        assert_eq!(h.count(PRODUCTS), 2);
    }
}

#[test]
fn non_idempotent_methods_are_sent_once() {
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let h = Harness::new();
        h.login();
        h.script(PRODUCTS, Reply::status(503));
        let r = h.fetch(method, PRODUCTS, Some("{}"), Abort::none()).unwrap();
        assert_eq!(r.response.status, 503, "{method}");
        assert_eq!(h.count(PRODUCTS), 1, "{method}");

        h.script(PRODUCTS, Reply::network_error());
        assert_eq!(
            h.err(h.fetch(method, PRODUCTS, Some("{}"), Abort::none())).code(),
            "NETWORK_ERROR"
        );
        h.script(PRODUCTS, Reply::hang());
        assert_eq!(
            h.err(h.fetch(method, PRODUCTS, Some("{}"), Abort::none())).code(),
            "TIMEOUT"
        );
        assert_eq!(h.count(PRODUCTS), 3, "{method}");
    }
}

#[test]
fn api_retry_after_is_honoured_and_one_over_the_cap_returns_the_response() {
    let h = Harness::new();
    h.login();
    h.script(PRODUCTS, Reply::status(429).retry_after("2"));
    assert_eq!(h.get(PRODUCTS).unwrap().response.status, 200);
    assert_eq!(api_times(&h, PRODUCTS), [0, 2_000]);

    h.script(PRODUCTS, Reply::status(429).retry_after("3600"));
    let r = h.get(PRODUCTS).unwrap();
    assert_eq!(r.response.status, 429);
    assert_eq!(r.response.retry_after.as_deref(), Some("3600"));
    assert_eq!(h.count(PRODUCTS), 3, "not retried");
}

#[test]
fn api_retries_zero_sends_once() {
    let h = Harness::with(|o| o.retries = Some(0.0));
    h.login();
    h.script(PRODUCTS, Reply::status(503));
    assert_eq!(h.get(PRODUCTS).unwrap().response.status, 503);
    assert_eq!(h.count(PRODUCTS), 1);
}
