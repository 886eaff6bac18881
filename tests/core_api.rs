//! API calls (`fetch`/`json`) as machine operations: which token, replay, retry, redirects,
//! deadlines, aborts, dispose and every error, straight-line with chosen times.
// Native only: the harness reads JSON with the core's native reader.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use auth_session::core::envelope::ApiBody;
use auth_session::core::machine::{
    ApiFailure, ApiStep, Behind, BodyFailure, CallId, Endpoint, Keep, Log, Output, TokenStep, Waited, Wake, Want,
    MAX_REDIRECTS,
};
use common::*;

const PATH: &str = "/v1/items";

fn active() -> Run {
    let mut r = Run::new(config(no_timer));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    r
}

fn open(r: &mut Run, method: &str, want: Want) -> CallId {
    r.m.api_open(method, PATH, want, Behind::No).expect("open")
}

/// Opens a call and starts its first attempt at `now` with the held token.
fn sent(r: &mut Run, now: i64, method: &str, want: Want) -> CallId {
    let call = open(r, method, want);
    let step = r.m.api_token(now, call, Waited::Nothing, 0);
    assert!(matches!(step, TokenStep::Ready { .. }), "{step:?}");
    r.drain();
    call
}

fn envelope_data() -> ApiBody {
    ApiBody {
        json: true,
        success: Some(true),
        has_data: true,
        ..ApiBody::default()
    }
}

/// The wakes the machine sent to `call` among `outs`.
fn wakes(outs: &[Output], call: CallId) -> Vec<Wake> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Call(c, w) if *c == call => Some(w.clone()),
            _ => None,
        })
        .collect()
}

fn failed(step: ApiStep) -> auth_session::core::AuthError {
    match step {
        ApiStep::Fail(e) => e,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn a_json_call_reads_its_body_within_the_attempts_deadline_and_ends() {
    let mut r = active();
    let call = sent(&mut r, EPOCH, "GET", Want::Data);
    assert_eq!(r.m.api_calls(), 1);
    assert_eq!(
        r.deadline(),
        Some(EPOCH + TIMEOUT),
        "the attempt's deadline is the machine's"
    );
    assert_eq!(r.keep(), Some(Keep::Alive), "a caller awaits it");
    assert_eq!(r.m.api_response(EPOCH + 5, call, 200, false, None), ApiStep::Read);
    assert_eq!(
        r.deadline(),
        Some(EPOCH + TIMEOUT),
        "the body shares the attempt's deadline"
    );
    assert_eq!(r.m.api_body(call, Ok(&envelope_data())), ApiStep::Data);
    assert_eq!(r.m.api_calls(), 0);
    assert_eq!(r.deadline(), None);
    assert_eq!(r.m.api_response(EPOCH + 6, call, 200, false, None), ApiStep::Gone);
}

#[test]
fn a_fetch_call_returns_any_status_it_does_not_retry() {
    let mut r = active();
    for status in [200, 201, 204, 304, 400, 403, 404, 409, 500, 501] {
        let call = sent(&mut r, EPOCH, "GET", Want::Response);
        assert_eq!(
            r.m.api_response(EPOCH, call, status, false, None),
            ApiStep::Return,
            "{status}"
        );
        assert_eq!(r.m.api_calls(), 0);
    }
}

#[test]
fn idempotent_calls_are_retried_on_gateway_errors_and_rate_limits_after_the_machines_backoff() {
    for status in [429, 502, 503, 504] {
        let mut r = active();
        let call = sent(&mut r, EPOCH, "GET", Want::Response);
        let mut now = EPOCH;
        for attempt in 0..2u32 {
            assert_eq!(
                r.m.api_response(now, call, status, false, None),
                ApiStep::Wait,
                "{status}"
            );
            let until = r.deadline().expect("a backoff deadline");
            assert!(
                until >= now && until - now < 200 << attempt,
                "{status}: {}",
                until - now
            );
            assert!(
                wakes(&r.timeout(until - 1), call).is_empty(),
                "not before the backoff ends"
            );
            assert_eq!(wakes(&r.timeout(until), call), [Wake::Send]);
            now = until;
            assert!(matches!(
                r.m.api_token(now, call, Waited::Nothing, 0),
                TokenStep::Ready { .. }
            ));
        }
        assert_eq!(
            r.m.api_response(now, call, status, false, None),
            ApiStep::Return,
            "a final {status} is a Response for fetch()"
        );
    }
}

#[test]
fn a_final_retryable_status_is_an_error_for_json_with_its_status() {
    let mut r = Run::new(config(|o| {
        no_timer(o);
        o.retries = Some(0.0);
    }));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let call = sent(&mut r, EPOCH, "GET", Want::Data);
    assert_eq!(r.m.api_response(EPOCH, call, 503, false, Some("5")), ApiStep::Read);
    let e = failed(r.m.api_body(call, Ok(&ApiBody::default())));
    assert_eq!((e.code(), e.status(), e.retryable()), ("SERVER_ERROR", 503, true));
    assert_eq!(e.retry_after(), Some(5), "AuthError.retryAfter");
    assert!(e.message().starts_with("GET /v1/items: "), "{}", e.message());
}

#[test]
fn non_idempotent_methods_are_not_retried() {
    let mut r = active();
    for status in [429, 502, 503, 504] {
        let call = sent(&mut r, EPOCH, "POST", Want::Response);
        assert_eq!(
            r.m.api_response(EPOCH, call, status, false, None),
            ApiStep::Return,
            "{status}"
        );
    }
    let call = sent(&mut r, EPOCH, "POST", Want::Response);
    let e = failed(r.m.api_failed(EPOCH, call, ApiFailure::Network(None)));
    assert_eq!(
        (e.code(), e.retryable()),
        ("NETWORK_ERROR", true),
        "a POST is not sent twice"
    );
    assert_eq!(r.m.api_calls(), 0);
}

#[test]
fn network_errors_are_retried_for_idempotent_calls_and_a_non_response_fails_at_once() {
    let mut r = active();
    let call = sent(&mut r, EPOCH, "GET", Want::Data);
    let mut now = EPOCH;
    for _ in 0..2 {
        assert_eq!(r.m.api_failed(now, call, ApiFailure::Network(None)), ApiStep::Wait);
        now = r.fire();
        assert!(matches!(
            r.m.api_token(now, call, Waited::Nothing, 0),
            TokenStep::Ready { .. }
        ));
    }
    let e = failed(r.m.api_failed(now, call, ApiFailure::Network(None)));
    assert_eq!((e.code(), e.retryable()), ("NETWORK_ERROR", true));
    assert_eq!(r.m.api_calls(), 0);

    let call = sent(&mut r, now, "GET", Want::Data);
    let e = failed(r.m.api_failed(now, call, ApiFailure::NotAResponse));
    assert_eq!((e.code(), e.retryable()), ("INVALID_RESPONSE", false));
}

#[test]
fn an_attempt_settles_at_its_deadline_whatever_fetch_does_and_is_retried_when_idempotent() {
    let mut r = active();
    let call = sent(&mut r, EPOCH, "GET", Want::Data);
    // fetch never answers (it ignores its AbortSignal): the deadline abandons the attempt.
    let outs = r.timeout(EPOCH + TIMEOUT);
    assert_eq!(wakes(&outs, call), [Wake::Abandon]);
    // Its late answer is not the call's any more.
    assert_eq!(
        r.m.api_response(EPOCH + TIMEOUT + 1, call, 200, false, None),
        ApiStep::Gone
    );
    let mut now = r.fire();
    assert_eq!(wakes(&r.log, call).last(), Some(&Wake::Send));
    assert!(matches!(
        r.m.api_token(now, call, Waited::Nothing, 0),
        TokenStep::Ready { .. }
    ));
    now += TIMEOUT;
    assert_eq!(wakes(&r.timeout(now), call), [Wake::Abandon]);
    now = r.fire();
    assert!(matches!(
        r.m.api_token(now, call, Waited::Nothing, 0),
        TokenStep::Ready { .. }
    ));
    // The last attempt's deadline ends the call.
    let outs = r.timeout(now + TIMEOUT);
    match wakes(&outs, call).as_slice() {
        [Wake::Fail(e)] => {
            assert_eq!((e.code(), e.retryable()), ("TIMEOUT", true));
            assert_eq!(e.message(), "GET /v1/items: no complete answer within timeoutMs");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.m.api_calls(), 0);
    assert_eq!(r.deadline(), None);
}

#[test]
fn a_post_that_times_out_fails_at_its_deadline_without_a_retry() {
    let mut r = active();
    let call = sent(&mut r, EPOCH, "POST", Want::Response);
    match wakes(&r.timeout(EPOCH + TIMEOUT), call).as_slice() {
        [Wake::Fail(e)] => assert_eq!(e.code(), "TIMEOUT"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_body_that_never_ends_fails_json_at_the_attempts_deadline() {
    let mut r = active();
    let call = sent(&mut r, EPOCH, "GET", Want::Data);
    assert_eq!(r.m.api_response(EPOCH + 9_000, call, 200, false, None), ApiStep::Read);
    match wakes(&r.timeout(EPOCH + TIMEOUT), call).as_slice() {
        [Wake::Fail(e)] => assert_eq!(e.code(), "TIMEOUT"),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.m.api_body(call, Ok(&envelope_data())), ApiStep::Gone);
}

#[test]
fn a_body_over_max_response_bytes_or_unreadable_fails_json() {
    let mut r = Run::new(config(|o| {
        no_timer(o);
        o.max_response_bytes = Some(1024.0);
    }));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let call = sent(&mut r, EPOCH, "GET", Want::Data);
    assert_eq!(r.m.api_response(EPOCH, call, 200, false, None), ApiStep::Read);
    let e = failed(r.m.api_body(call, Err(BodyFailure::TooLarge)));
    assert_eq!((e.code(), e.status()), ("RESPONSE_TOO_LARGE", 200));
    assert!(e.message().contains("maxResponseBytes (1024)"), "{}", e.message());
    let call = sent(&mut r, EPOCH, "GET", Want::Data);
    assert_eq!(r.m.api_response(EPOCH, call, 200, false, None), ApiStep::Read);
    let e = failed(r.m.api_body(call, Err(BodyFailure::Network(None))));
    assert_eq!((e.code(), e.retryable()), ("NETWORK_ERROR", true));
}

#[test]
fn retry_after_is_honoured_and_one_over_the_cap_fails_json_at_once_with_rate_limited() {
    let mut r = active();
    let call = sent(&mut r, EPOCH, "GET", Want::Data);
    assert_eq!(r.m.api_response(EPOCH, call, 429, false, Some("2")), ApiStep::Wait);
    assert_eq!(r.deadline(), Some(EPOCH + 2_000));
    r.timeout(EPOCH + 2_000);
    assert!(matches!(
        r.m.api_token(EPOCH + 2_000, call, Waited::Nothing, 0),
        TokenStep::Ready { .. }
    ));
    let now = EPOCH + 2_000;
    assert_eq!(
        r.m.api_response(now, call, 503, false, Some(&http_date(now + 7_000))),
        ApiStep::Wait
    );
    assert_eq!(r.deadline(), Some(now + 7_000));
    r.m.api_abort(call);

    // Over maxRetryAfterSeconds (30 s): RATE_LIMITED at once, the status kept, for any method.
    for (method, status) in [("GET", 503), ("GET", 429), ("POST", 503), ("POST", 500)] {
        let call = sent(&mut r, EPOCH, method, Want::Data);
        let e = failed(r.m.api_response(EPOCH, call, status, false, Some("120")));
        assert_eq!((e.code(), e.status()), ("RATE_LIMITED", status), "{method} {status}");
        assert_eq!(e.retry_after(), Some(120));
        assert_eq!(r.m.api_calls(), 0);
    }
    // fetch() never throws for a status: the response comes back unretried.
    let call = sent(&mut r, EPOCH, "GET", Want::Response);
    assert_eq!(r.m.api_response(EPOCH, call, 503, false, Some("120")), ApiStep::Return);
    // An unreadable Retry-After falls back to the backoff.
    let call = sent(&mut r, EPOCH, "GET", Want::Response);
    assert_eq!(r.m.api_response(EPOCH, call, 429, false, Some("soon")), ApiStep::Wait);
    assert!(r.deadline().unwrap() - EPOCH < 200);
}

#[test]
fn retries_zero_sends_once() {
    let mut r = Run::new(config(|o| {
        no_timer(o);
        o.retries = Some(0.0);
    }));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let call = sent(&mut r, EPOCH, "GET", Want::Response);
    assert_eq!(r.m.api_response(EPOCH, call, 503, false, None), ApiStep::Return);
    let call = sent(&mut r, EPOCH, "GET", Want::Response);
    assert!(matches!(
        wakes(&r.timeout(EPOCH + TIMEOUT), call).as_slice(),
        [Wake::Fail(_)]
    ));
}

#[test]
fn a_401_refreshes_once_and_replays_with_the_new_token_then_the_second_401_is_the_callers() {
    let mut r = active();
    let t = EPOCH + MINUTE;
    for (method, want) in [("GET", Want::Data), ("POST", Want::Response)] {
        let call = sent(&mut r, t, method, want);
        assert_eq!(r.m.api_response(t, call, 401, false, None), ApiStep::Token);
        let step = r.m.api_token(t, call, Waited::Nothing, 0);
        r.drain();
        let replay = if let TokenStep::Wait(f) = step {
            let n = r.count(Endpoint::Refresh) as u32;
            r.answer(t, ok(&Pair::issued(n + 1, t)));
            r.m.api_token(t, call, waited(&r.settled(f)), 1)
        } else {
            step
        };
        assert!(matches!(replay, TokenStep::Ready { .. }), "{replay:?}");
        match want {
            Want::Response => assert_eq!(r.m.api_response(t, call, 401, false, None), ApiStep::Return),
            Want::Data => {
                assert_eq!(r.m.api_response(t, call, 401, false, None), ApiStep::Read);
                let e = failed(r.m.api_body(call, Ok(&ApiBody::default())));
                assert_eq!((e.code(), e.status()), ("HTTP_ERROR", 401));
            }
        }
    }
    assert_eq!(r.count(Endpoint::Refresh), 2, "one refresh per rejected token");
}

#[test]
fn redirects_within_the_origin_are_followed_changing_the_method_as_fetch_does() {
    let mut r = active();
    for (status, method, to_get) in [
        (303, "POST", true),
        (303, "PUT", true),
        (303, "HEAD", false),
        (302, "POST", true),
        (301, "POST", true),
        (302, "GET", false),
        (307, "POST", false),
        (308, "PUT", false),
        (302, "PUT", false),
    ] {
        let call = sent(&mut r, EPOCH, method, Want::Data);
        assert_eq!(r.m.api_response(EPOCH, call, status, false, None), ApiStep::Locate);
        assert_eq!(
            r.m.api_location(call, Some(HOST)),
            ApiStep::Follow { to_get },
            "{status} {method}"
        );
        assert!(matches!(
            r.m.api_token(EPOCH, call, Waited::Nothing, 0),
            TokenStep::Ready { .. }
        ));
        // After a change to GET the call is idempotent: a 503 is retried.
        let expect = if to_get || matches!(method, "GET" | "HEAD") {
            ApiStep::Wait
        } else {
            ApiStep::Read
        };
        assert_eq!(
            r.m.api_response(EPOCH, call, 503, false, None),
            expect,
            "{status} {method}"
        );
        r.m.api_abort(call);
    }
}

#[test]
fn a_redirect_json_does_not_follow_rejects_and_fetch_returns_it() {
    let mut r = active();
    // Another origin: REDIRECT_BLOCKED with the 3xx status; a scheme downgrade is another origin.
    for origin in ["https://evil.test", "http://api.test"] {
        let call = sent(&mut r, EPOCH, "GET", Want::Data);
        assert_eq!(r.m.api_response(EPOCH, call, 302, false, None), ApiStep::Locate);
        let e = failed(r.m.api_location(call, Some(origin)));
        assert_eq!((e.code(), e.status()), ("REDIRECT_BLOCKED", 302), "{origin}");
        let call = sent(&mut r, EPOCH, "GET", Want::Response);
        assert_eq!(r.m.api_response(EPOCH, call, 302, false, None), ApiStep::Locate);
        assert_eq!(r.m.api_location(call, Some(origin)), ApiStep::Return);
    }
    // No usable Location (or a browser's opaque redirect): HTTP_ERROR with the status.
    let call = sent(&mut r, EPOCH, "GET", Want::Data);
    assert_eq!(r.m.api_response(EPOCH, call, 301, false, None), ApiStep::Locate);
    let e = failed(r.m.api_location(call, None));
    assert_eq!((e.code(), e.status()), ("HTTP_ERROR", 301));
    let call = sent(&mut r, EPOCH, "GET", Want::Data);
    assert_eq!(r.m.api_response(EPOCH, call, 0, true, None), ApiStep::Locate);
    assert_eq!(failed(r.m.api_location(call, None)).code(), "HTTP_ERROR");
    // A loop: followed MAX_REDIRECTS times, then HTTP_ERROR.
    let call = sent(&mut r, EPOCH, "GET", Want::Data);
    for _ in 0..MAX_REDIRECTS {
        assert_eq!(r.m.api_response(EPOCH, call, 302, false, None), ApiStep::Locate);
        assert_eq!(r.m.api_location(call, Some(HOST)), ApiStep::Follow { to_get: false });
        assert!(matches!(
            r.m.api_token(EPOCH, call, Waited::Nothing, 0),
            TokenStep::Ready { .. }
        ));
    }
    assert_eq!(r.m.api_response(EPOCH, call, 302, false, None), ApiStep::Locate);
    let e = failed(r.m.api_location(call, Some(HOST)));
    assert_eq!((e.code(), e.status()), ("HTTP_ERROR", 302));
    assert!(e.message().contains("too many redirects"), "{}", e.message());
    // 304 answers a conditional request: not a redirect.
    let call = sent(&mut r, EPOCH, "GET", Want::Response);
    assert_eq!(r.m.api_response(EPOCH, call, 304, false, None), ApiStep::Return);
    assert_eq!(r.m.api_calls(), 0);
}

#[test]
fn a_callers_abort_ends_the_call_at_once_and_its_late_answer_is_ignored() {
    let mut r = active();
    let call = sent(&mut r, EPOCH, "GET", Want::Data);
    let e = r.m.api_abort(call).expect("the call was live");
    assert_eq!(e.code(), "ABORTED");
    assert!(e.message().starts_with("GET /v1/items: "));
    assert_eq!(r.m.api_abort(call), None);
    assert_eq!(r.m.api_response(EPOCH, call, 200, false, None), ApiStep::Gone);
    assert_eq!(r.deadline(), None, "no deadline left behind");
    assert!(matches!(r.m.api_token(EPOCH, call, Waited::Nothing, 0), TokenStep::Fail(e) if e.code() == "ABORTED"));
}

#[test]
fn dispose_ends_every_call_with_disposed_and_no_call_opens_after() {
    let mut r = active();
    let sending = sent(&mut r, EPOCH, "GET", Want::Data);
    let waiting = sent(&mut r, EPOCH, "GET", Want::Response);
    assert_eq!(r.m.api_response(EPOCH, waiting, 503, false, None), ApiStep::Wait);
    let fresh = open(&mut r, "GET", Want::Data);
    let outs = r.dispose();
    for call in [sending, waiting, fresh] {
        match wakes(&outs, call).as_slice() {
            [Wake::Fail(e)] => assert_eq!(e.code(), "DISPOSED"),
            other => panic!("{call}: {other:?}"),
        }
    }
    assert_eq!(r.m.api_calls(), 0);
    assert_eq!(r.deadline(), None);
    let e = r.m.api_open("GET", PATH, Want::Data, Behind::No).unwrap_err();
    assert_eq!(e.code(), "DISPOSED");
}

#[test]
fn errors_never_carry_a_secret_in_the_path_or_the_servers_text() {
    let mut r = Run::new(config(|o| {
        no_timer(o);
        with_credentials(o);
    }));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let path = format!("/v1/items/{}", at(1));
    let call = r.m.api_open("GET", &path, Want::Data, Behind::No).unwrap();
    assert!(matches!(
        r.m.api_token(EPOCH, call, Waited::Nothing, 0),
        TokenStep::Ready { .. }
    ));
    let e = r.m.api_abort(call).unwrap();
    assert_eq!(
        e.message(),
        "GET (path withheld): the operation was aborted by its AbortSignal"
    );

    let call = sent(&mut r, EPOCH, "GET", Want::Data);
    assert_eq!(r.m.api_response(EPOCH, call, 400, false, None), ApiStep::Read);
    let body = ApiBody {
        json: true,
        error: Some((
            Some(format!("N{}", at(1))),
            "BAD".into(),
            Some(format!("{} {} {PASSWORD}", at(1), rt(1))),
        )),
        ..ApiBody::default()
    };
    let e = failed(r.m.api_body(call, Ok(&body)));
    assert_eq!(e.message(), "[redacted] [redacted] [redacted]");
    assert_eq!((e.name(), e.code()), ("ServerError", "SERVER_ERROR"));
}

#[test]
fn a_call_without_a_session_fails_with_not_authenticated_and_ends() {
    let mut r = Run::new(config(no_timer));
    let call = open(&mut r, "GET", Want::Data);
    match r.m.api_token(EPOCH, call, Waited::Nothing, 0) {
        TokenStep::Fail(e) => {
            assert_eq!(e.code(), "NOT_AUTHENTICATED");
            assert!(e.message().starts_with("GET /v1/items: "), "{}", e.message());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.m.api_calls(), 0);
}

#[test]
fn a_call_waiting_for_a_token_has_no_deadline_of_its_own() {
    let mut r = Run::new(config(|o| {
        no_timer(o);
        with_credentials(o);
    }));
    let call = open(&mut r, "GET", Want::Data);
    let f = wait_token(r.m.api_token(EPOCH, call, Waited::Nothing, 0));
    r.drain();
    // Only the login's deadline.
    assert_eq!(r.deadline(), Some(EPOCH + TIMEOUT));
    r.answer(EPOCH + 1, ok(&Pair::issued(1, EPOCH + 1)));
    assert_eq!(r.deadline(), None);
    let step = r.m.api_token(EPOCH + 1, call, waited(&r.settled(f)), 1);
    assert_eq!(ready(&step), at(1));
    assert_eq!(r.deadline(), Some(EPOCH + 1 + TIMEOUT));
}

#[test]
fn the_logger_sees_api_requests_responses_retries_and_redirects() {
    let mut r = active();
    r.m.set_logging(true);
    let call = sent(&mut r, EPOCH, "GET", Want::Data);
    assert_eq!(r.m.api_response(EPOCH, call, 503, false, Some("1")), ApiStep::Wait);
    r.timeout(EPOCH + 1_000);
    assert!(matches!(
        r.m.api_token(EPOCH + 1_000, call, Waited::Nothing, 0),
        TokenStep::Ready { .. }
    ));
    assert_eq!(r.m.api_response(EPOCH + 1_000, call, 302, false, None), ApiStep::Locate);
    assert!(matches!(
        r.m.api_location(call, Some("https://evil.test")),
        ApiStep::Fail(_)
    ));
    r.drain();
    let logs: Vec<Log> = r
        .log
        .iter()
        .filter_map(|o| match o {
            Output::Log(l) => Some(l.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        logs,
        [
            Log::ApiRequest { attempt: 0 },
            Log::ApiResponse {
                status: 503,
                code: None
            },
            Log::ApiRetry {
                attempt: 1,
                delay_ms: 1_000,
                code: "SERVER_ERROR"
            },
            Log::ApiRequest { attempt: 1 },
            Log::ApiResponse {
                status: 302,
                code: None
            },
            Log::Redirect {
                status: 302,
                followed: false
            },
        ]
    );
}
