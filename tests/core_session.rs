//! The session's life on the machine: login, single-flight refresh, failed and rejected
//! refreshes, expiry, the 401 replay, revoke, dispose and late answers.
// Native only: the harness reads JSON with the core's native reader.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use auth_session::core::machine::{Endpoint, Event, Need, Outcome, Output, Reason, Step, TokenStep, Waited};
use auth_session::core::Credentials;
use auth_session::core::Phase;
use common::*;

/// The answer to the revoke endpoint the guide does not show: RFC 7009's.
fn revoked() -> Reply {
    reply(200, r#"{"success":true,"data":{"revoked":true}}"#)
}

// ----- login ---------------------------------------------------------------------------------

#[test]
fn login_with_arguments_gives_an_active_session_with_the_servers_times() {
    let mut r = Run::new(config(|_| {}));
    let f = r.login(EPOCH);
    let req = r.open_send();
    assert_eq!(req.endpoint, Endpoint::Login);
    assert_eq!(req.url, "https://api.test/auth/login");
    assert_eq!(req.authorization, None);
    assert_eq!(req.max_bytes, 64 * 1024);
    assert_eq!(req.body, format!(r#"{{"username":"alice","password":"{PASSWORD}"}}"#));
    assert_eq!(r.outcome(f), None, "nothing settles before the answer");
    assert_eq!(r.m.info().state, Phase::Anonymous);

    let p1 = Pair::issued(1, EPOCH);
    let out = r.answer(EPOCH, ok(&p1));
    assert_eq!(
        out,
        [
            Output::Event(Event::Tokens(p1.info(Phase::Active), Reason::Login)),
            Output::Settle(f, Outcome::Done)
        ]
    );
    let info = r.m.result().unwrap();
    assert_eq!(info, p1.info(Phase::Active));
    assert_eq!(info.access_expires_at, Some(EPOCH + HOUR));
    assert_eq!(info.refresh_expires_at, Some(EPOCH + 7 * DAY));
    assert_eq!(r.token_now(EPOCH).unwrap(), at(1));
    assert_eq!(r.sends().len(), 1, "a fresh token needs no refresh");
}

#[test]
fn login_uses_the_configured_credentials_and_a_host_path_prefix() {
    let mut r = Run::new(config(|o| {
        with_credentials(o);
        o.host = Some("https://api.test/v2/".into());
    }));
    let f = r.login_with(EPOCH, None);
    let req = r.open_send();
    assert_eq!(req.url, "https://api.test/v2/auth/login");
    assert!(req.body.contains(PASSWORD));
    r.answer(EPOCH, ok(&Pair::issued(1, EPOCH)));
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.m.info().state, Phase::Active);
}

#[test]
fn login_without_arguments_or_credentials_is_a_config_error_without_a_request() {
    let mut r = Run::new(config(|_| {}));
    let e = fail(r.m.login(EPOCH, None));
    assert_eq!((e.code(), e.name(), e.status()), ("CONFIG_ERROR", "ConfigError", 0));
    assert_eq!(r.drain(), []);
    assert_eq!(r.m.info().state, Phase::Anonymous);
}

#[test]
fn wrong_credentials_are_the_servers_unauthorized_and_nothing_changes() {
    let mut r = Run::new(config(|_| {}));
    let f = r.login_with(EPOCH, Some(creds_with("wrong-CANARY-pw")));
    r.answer(
        EPOCH,
        error_envelope(401, "UnauthorizedError", "UNAUTHORIZED", "Invalid credentials"),
    );
    let e = r.failure(f);
    assert_eq!(
        (e.code(), e.name(), e.status(), e.retryable()),
        ("UNAUTHORIZED", "UnauthorizedError", 401, false)
    );
    assert_eq!(r.count(Endpoint::Login), 1, "a 401 is not retried");
    assert_eq!(r.m.info().state, Phase::Anonymous);
    assert_eq!(r.event_count("expired"), 0);
    assert_eq!(r.deadline(), None, "no timer, no retry");
}

#[test]
fn calls_before_login_are_not_authenticated_without_a_request() {
    let mut r = Run::new(config(|_| {}));
    assert_eq!(r.token_now(EPOCH).unwrap_err().code(), "NOT_AUTHENTICATED");
    assert_eq!(fail(r.refresh(EPOCH)).code(), "NOT_AUTHENTICATED");
    assert_eq!(token_fail(r.token_after_401(EPOCH, 0)).code(), "NOT_AUTHENTICATED");
    for need in [Need::Lenient, Need::Background, Need::Replay] {
        assert_eq!(token_fail(r.ask(EPOCH, need)).code(), "NOT_AUTHENTICATED");
    }
    assert!(r.log.is_empty());
}

#[test]
fn with_credentials_the_first_call_logs_in_by_itself_once_for_all_callers() {
    let mut r = Run::new(config(with_credentials));
    let flights: Vec<_> = (0..20).map(|_| wait_token(r.ask(EPOCH, Need::Lenient))).collect();
    assert!(flights.iter().all(|f| *f == flights[0]));
    assert_eq!(r.open_send().endpoint, Endpoint::Login);
    r.answer(EPOCH, ok(&Pair::issued(1, EPOCH)));
    let done = waited(&r.settled(flights[0]));
    for _ in &flights {
        assert_eq!(ready(&r.token(EPOCH, Need::Lenient, done, 1)), at(1));
    }
    assert_eq!(r.sends().len(), 1);
}

#[test]
fn a_second_login_replaces_the_tokens_and_the_timer() {
    let mut r = Run::new(config(|_| {}));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    assert_eq!(r.deadline(), Some(EPOCH + HOUR - MARGIN));
    let t = EPOCH + 10 * MINUTE;
    r.logged_in(t, &Pair::issued(2, t));
    assert_eq!(r.token_now(t).unwrap(), at(2));
    assert_eq!(r.deadline(), Some(t + HOUR - MARGIN), "one timer, the new pair's");
}

// ----- single flight -------------------------------------------------------------------------

#[test]
fn a_thousand_concurrent_callers_share_one_refresh() {
    let mut r = Run::new(config(no_timer));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let t = EPOCH + HOUR + 1; // the access token has expired
    let mut callers = Vec::new();
    for i in 0..1000 {
        let need = if i % 2 == 0 { Need::Strict } else { Need::Lenient };
        callers.push((need, wait_token(r.ask(t, need))));
    }
    let f = callers[0].1;
    assert!(callers.iter().all(|(_, g)| *g == f), "everyone waits for one flight");
    assert_eq!(r.count(Endpoint::Refresh), 1, "exactly one refresh request");
    assert_eq!(body_token(&r.open_send()), Some(rt(1)));

    r.answer(t + 50, ok(&Pair::issued(2, t + 50)));
    assert_eq!(r.settled(f), Outcome::Done);
    for (need, f) in callers {
        let step = r.token(t + 50, need, waited(&r.settled(f)), 1);
        assert_eq!(ready(&step), at(2));
    }
    assert_eq!(r.sends().len(), 2, "the login and one refresh");
    assert_eq!(r.event_count("tokens"), 2);
    assert_eq!(r.token_reasons(), [Reason::Login, Reason::Refresh]);
}

#[test]
fn callers_arriving_during_a_refresh_join_it_and_later_ones_use_the_result() {
    let mut r = Run::new(config(no_timer));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let t = EPOCH + HOUR;
    let first = wait_token(r.ask(t, Need::Strict));
    let second = wait_token(r.ask(t + 500, Need::Strict));
    assert_eq!(first, second);
    r.answer(t + 1_000, ok(&Pair::issued(2, t + 1_000)));
    let done = waited(&r.settled(first));
    assert_eq!(ready(&r.token(t + 1_000, Need::Strict, done, 1)), at(2));
    assert_eq!(r.token_now(t + 1_001).unwrap(), at(2));
    assert_eq!(r.count(Endpoint::Refresh), 1);
}

#[test]
fn explicit_refreshes_share_one_request_and_the_next_one_sends_the_new_token() {
    let mut r = Run::new(config(no_timer));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let t = EPOCH + SECOND;
    let flights: Vec<_> = (0..5).map(|_| wait(r.refresh(t))).collect();
    assert!(flights.iter().all(|f| *f == flights[0]));
    r.answer(t + 10, ok(&Pair::issued(2, t + 10)));
    assert_eq!(r.settled(flights[0]), Outcome::Done);
    assert_eq!(r.m.result().unwrap().access_expires_at, Some(t + 10 + HOUR));

    let f = wait(r.refresh(t + 20));
    assert_ne!(f, flights[0], "a new flight");
    r.answer(t + 20, ok(&Pair::issued(3, t + 20)));
    assert_eq!(r.refresh_tokens_sent(), [rt(1), rt(2)]);
}

#[test]
fn the_access_token_is_refreshed_first_when_it_is_inside_the_margin() {
    let mut r = Run::new(config(no_timer));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    assert_eq!(ready(&r.ask(EPOCH + HOUR - MARGIN - 1, Need::Strict)), at(1));
    let f = wait_token(r.ask(EPOCH + HOUR - MARGIN, Need::Lenient));
    assert_eq!(r.open_send().endpoint, Endpoint::Refresh);
    let t = EPOCH + HOUR - MARGIN;
    r.answer(t, ok(&Pair::issued(2, t)));
    assert_eq!(ready(&r.token(t, Need::Lenient, waited(&r.settled(f)), 1)), at(2));
}

// ----- a failed refresh ----------------------------------------------------------------------

/// 50 waiters, a refresh failing three times (the first attempt and two retries): every
/// waiter gets the same error, the tokens are kept, and the next call starts a new flight
/// with the same, unspent refresh token.
fn failed_refresh_rejects_every_waiter(failure: fn() -> Reply, code: &str) {
    let mut r = Run::new(config(no_timer));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let mut t = EPOCH + HOUR + 1;
    let callers: Vec<_> = (0..50)
        .map(|i| {
            let need = if i % 2 == 0 { Need::Strict } else { Need::Lenient };
            (need, wait_token(r.ask(t, need)))
        })
        .collect();
    let f = callers[0].1;
    for attempt in 0..3 {
        assert_eq!(body_token(&r.open_send()), Some(rt(1)), "attempt {attempt}");
        r.answer(t, failure());
        if attempt < 2 {
            assert_eq!(r.outcome(f), None, "retrying");
            t = r.fire();
        }
    }
    let e = r.failure(f);
    assert_eq!(e.code(), code);
    assert!(e.retryable());
    for (need, f) in &callers {
        // The access token has expired: not even a lenient fetch may use it.
        assert_eq!(r.token(t, *need, waited(&r.settled(*f)), 1), TokenStep::Rethrow);
    }
    assert_eq!(
        r.count(Endpoint::Refresh),
        3,
        "one flight: the first attempt and 2 retries"
    );
    let info = r.m.info();
    assert_eq!(
        (info.state, info.access_expires_at),
        (Phase::Active, Some(EPOCH + HOUR))
    );
    assert_eq!(r.event_count("expired"), 0);
    assert_eq!(r.event_count("error"), 0, "the callers were told; no event");

    let g = wait_token(r.ask(t, Need::Strict));
    assert_ne!(g, f, "the next call starts a new flight");
    r.answer(t, ok(&Pair::issued(2, t)));
    assert_eq!(ready(&r.token(t, Need::Strict, waited(&r.settled(g)), 1)), at(2));
    assert_eq!(r.refresh_tokens_sent(), [rt(1), rt(1), rt(1), rt(1)]);
}

#[test]
fn a_refresh_failing_with_503_rejects_every_waiter_and_the_next_call_starts_a_new_flight() {
    failed_refresh_rejects_every_waiter(|| status(503), "SERVER_ERROR");
}

#[test]
fn a_refresh_failing_with_network_errors_rejects_every_waiter_and_keeps_the_tokens() {
    failed_refresh_rejects_every_waiter(network, "NETWORK_ERROR");
}

#[test]
fn a_lenient_call_uses_a_still_valid_token_when_the_early_refresh_fails_but_a_strict_one_does_not() {
    let mut r = Run::new(config(|o| {
        no_timer(o);
        o.retries = Some(0.0);
    }));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let t = EPOCH + HOUR - MINUTE; // inside the margin, one minute left
    let lenient = wait_token(r.ask(t, Need::Lenient));
    let strict = wait_token(r.ask(t, Need::Strict));
    r.answer(t, status(503));
    let w = waited(&r.settled(lenient));
    assert_eq!(w, Waited::Failed { retryable: true });
    assert_eq!(ready(&r.token(t, Need::Lenient, w, 1)), at(1));
    assert_eq!(
        r.token(t, Need::Strict, waited(&r.settled(strict)), 1),
        TokenStep::Rethrow
    );
    // A failure that retrying cannot fix is not papered over.
    let f = wait_token(r.ask(t, Need::Lenient));
    r.answer(
        t,
        error_envelope(403, "ForbiddenError", "FORBIDDEN", "IP address not authorized"),
    );
    assert_eq!(r.token(t, Need::Lenient, waited(&r.settled(f)), 1), TokenStep::Rethrow);
}

// ----- a rejected refresh --------------------------------------------------------------------

#[test]
fn a_rejected_refresh_ends_the_session_once_for_every_waiter() {
    let mut r = Run::new(config(no_timer));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let t = EPOCH + HOUR + 1;
    let flights: Vec<_> = (0..30).map(|_| wait_token(r.ask(t, Need::Lenient))).collect();
    let explicit = wait(r.refresh(t));
    assert_eq!(explicit, flights[0]);
    r.answer(t + 10, unauthorized());
    let e = r.failure(explicit);
    assert_eq!(
        (e.code(), e.name(), e.status(), e.retryable()),
        ("SESSION_EXPIRED", "SessionExpiredError", 401, false)
    );
    assert_eq!(r.count(Endpoint::Refresh), 1);
    let info = r.m.info();
    assert_eq!(info.state, Phase::Expired);
    assert_eq!(
        (info.client_id, info.access_expires_at, info.refresh_expires_at),
        (None, None, None)
    );
    assert_eq!(r.event_count("expired"), 1);
    assert_eq!(r.event_count("error"), 0);

    let sent = r.sends().len();
    assert_eq!(r.token_now(t + 20).unwrap_err().code(), "SESSION_EXPIRED");
    assert_eq!(token_fail(r.token_after_401(t + 20, 1)).code(), "SESSION_EXPIRED");
    assert_eq!(fail(r.refresh(t + 20)).code(), "SESSION_EXPIRED");
    assert_eq!(r.m.result().unwrap_err().code(), "SESSION_EXPIRED");
    assert_eq!(r.sends().len(), sent, "no request after the session ended");
    assert_eq!(r.event_count("expired"), 1, "the end is reported once");
    assert_eq!(r.deadline(), None);

    // A new login starts over.
    r.logged_in(t + 30, &Pair::issued(2, t + 30));
    assert_eq!(r.token_now(t + 30).unwrap(), at(2));
}

#[test]
fn a_rejected_refresh_with_credentials_logs_in_again_transparently() {
    let mut r = Run::new(config(|o| {
        with_credentials(o);
        no_timer(o);
    }));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let t = EPOCH + HOUR + 1;
    let flights: Vec<_> = (0..30).map(|_| wait_token(r.ask(t, Need::Lenient))).collect();
    r.answer(t, unauthorized());
    assert_eq!(r.outcome(flights[0]), None, "the flight goes on as a login");
    let req = r.open_send();
    assert_eq!(req.endpoint, Endpoint::Login);
    assert!(req.body.contains(PASSWORD));
    r.answer(t, ok(&Pair::issued(2, t)));
    for f in flights {
        assert_eq!(ready(&r.token(t, Need::Lenient, waited(&r.settled(f)), 1)), at(2));
    }
    assert_eq!((r.count(Endpoint::Refresh), r.count(Endpoint::Login)), (1, 2));
    assert_eq!(r.event_count("expired"), 0);
    assert_eq!(r.m.info().state, Phase::Active);
}

/// Another account than the configured one (alice's).
fn bob() -> Credentials {
    Credentials {
        username: "bob".to_owned(),
        password: auth_session::core::secret::Password::new("bob-secret"),
    }
}

#[test]
fn a_session_logged_in_as_another_account_never_switches_to_the_configured_one() {
    let mut r = Run::new(config(|o| {
        with_credentials(o);
        no_timer(o);
    }));
    let bob = bob();
    let f = r.login_with(EPOCH, Some(bob));
    assert!(r.open_send().body.contains("bob"));
    r.answer(EPOCH, ok(&Pair::issued(1, EPOCH)));
    assert_eq!(r.settled(f), Outcome::Done);
    // bob's refresh token is rejected: the session ends, it does not log in as alice.
    let t = EPOCH + HOUR + 1;
    let f = wait_token(r.ask(t, Need::Lenient));
    r.answer(t, unauthorized());
    let e = r.failure(f);
    assert_eq!((e.code(), e.status()), ("SESSION_EXPIRED", 401));
    assert_eq!(r.count(Endpoint::Login), 1, "no login as the configured account");
    assert!(!r.sends().iter().any(|s| s.body.contains(PASSWORD)));
    assert_eq!(r.event_count("expired"), 1);
    // Later calls fail the same way instead of logging in as alice...
    assert_eq!(token_fail(r.ask(t + 1, Need::Strict)).code(), "SESSION_EXPIRED");
    assert_eq!(r.count(Endpoint::Login), 1);
    // ...until an explicit login() as the configured account.
    let f = r.login(t + 2);
    r.answer(t + 2, ok(&Pair::issued(2, t + 2)));
    assert_eq!(r.settled(f), Outcome::Done);
    let t = t + 2 + HOUR + 1;
    let f = wait_token(r.ask(t, Need::Lenient));
    r.answer(t, unauthorized());
    assert_eq!(
        r.open_send().endpoint,
        Endpoint::Login,
        "alice's session logs in again quietly"
    );
    assert!(r.open_send().body.contains(PASSWORD));
    r.answer(t, ok(&Pair::issued(3, t)));
    assert_eq!(r.settled(f), Outcome::Done);
}

#[test]
fn an_expired_refresh_token_of_another_account_ends_the_session_too() {
    let mut r = Run::new(config(|o| {
        with_credentials(o);
        no_timer(o);
    }));
    let bob = bob();
    let f = r.login_with(EPOCH, Some(bob));
    r.answer(EPOCH, ok(&Pair::issued(1, EPOCH)));
    assert_eq!(r.settled(f), Outcome::Done);
    let e = token_fail(r.ask(EPOCH + 8 * DAY, Need::Strict));
    assert_eq!(e.code(), "SESSION_EXPIRED");
    assert_eq!(r.count(Endpoint::Login), 1);
}

#[test]
fn a_failed_re_login_reports_the_end_once_and_its_own_error() {
    let mut r = Run::new(config(|o| {
        with_credentials(o);
        no_timer(o);
        o.retries = Some(0.0);
    }));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let t = EPOCH + HOUR + 1;
    let f = wait_token(r.ask(t, Need::Strict));
    r.answer(t, unauthorized());
    r.answer(t, error_envelope(403, "ForbiddenError", "FORBIDDEN", "IP not allowed"));
    let e = r.failure(f);
    assert_eq!((e.code(), e.status()), ("FORBIDDEN", 403));
    assert_eq!(r.event_count("expired"), 1);
    assert_eq!(r.m.info().state, Phase::Expired);
    // Credentials are there: the next call logs in again, and succeeds.
    let g = wait_token(r.ask(t, Need::Strict));
    assert_eq!(r.open_send().endpoint, Endpoint::Login);
    r.answer(t, ok(&Pair::issued(2, t)));
    assert_eq!(ready(&r.token(t, Need::Strict, waited(&r.settled(g)), 1)), at(2));
    assert_eq!(r.event_count("expired"), 1);
}

// ----- a refresh token past its expiry -------------------------------------------------------

#[test]
fn a_refresh_token_that_ran_out_is_never_sent_and_ends_the_session_once() {
    // Rewrite defect: an expired refresh token must not reach the server, whichever path
    // asks first (an explicit refresh, a call, the timer of a process that slept).
    for first in ["refresh", "token", "timer"] {
        let mut r = Run::new(config(|_| {}));
        r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
        let t = EPOCH + 7 * DAY;
        match first {
            "refresh" => assert_eq!(fail(r.refresh(t)).code(), "SESSION_EXPIRED"),
            "token" => assert_eq!(r.token_now(t).unwrap_err().code(), "SESSION_EXPIRED"),
            _ => {
                r.timeout(t);
            }
        }
        assert_eq!(r.sends().len(), 1, "{first}: only the login was sent");
        assert_eq!(r.event_count("expired"), 1, "{first}");
        assert_eq!(r.m.info().state, Phase::Expired, "{first}");
        assert_eq!(fail(r.refresh(t)).code(), "SESSION_EXPIRED", "{first}");
        assert_eq!(token_fail(r.ask(t, Need::Background)).code(), "SESSION_EXPIRED");
        assert_eq!(r.deadline(), None, "{first}");
        assert_eq!(r.sends().len(), 1, "{first}");
        assert_eq!(r.event_count("expired"), 1, "{first}: reported once");
    }
}

#[test]
fn a_refresh_token_that_ran_out_logs_in_again_with_credentials() {
    for first in ["refresh", "token", "timer"] {
        let mut r = Run::new(config(with_credentials));
        r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
        let t = EPOCH + 7 * DAY;
        let f = match first {
            "refresh" => Some(wait(r.refresh(t))),
            "token" => Some(wait_token(r.ask(t, Need::Strict))),
            _ => {
                r.timeout(t);
                None
            }
        };
        let sends = r.sends();
        assert_eq!(sends.len(), 2, "{first}");
        assert_eq!(sends[1].endpoint, Endpoint::Login, "{first}: no refresh request");
        assert_eq!(r.count(Endpoint::Refresh), 0);
        r.answer(t, ok(&Pair::issued(2, t)));
        if let Some(f) = f {
            assert_eq!(r.settled(f), Outcome::Done);
        }
        assert_eq!(r.token_now(t).unwrap(), at(2), "{first}");
        assert_eq!(r.event_count("expired"), 0, "{first}: a transparent re-login");
    }
}

// ----- the 401 replay ------------------------------------------------------------------------

#[test]
fn a_401_with_the_current_token_refreshes_once_and_replays_with_the_new_one() {
    let mut r = Run::new(config(|_| {}));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let t = EPOCH + MINUTE;
    let first = r.ask(t, Need::Lenient);
    assert_eq!(ready(&first), at(1));
    let f = wait_token(r.token_after_401(t, serial(&first)));
    assert_eq!(body_token(&r.open_send()), Some(rt(1)));
    r.answer(t, ok(&Pair::issued(2, t)));
    let replay = r.token(t, Need::Replay, waited(&r.settled(f)), 1);
    assert_eq!(ready(&replay), at(2));
    assert_ne!(serial(&replay), serial(&first));
    assert_eq!(r.count(Endpoint::Refresh), 1);
    assert_eq!(r.m.info().state, Phase::Active, "an API 401 does not end the session");
}

#[test]
fn a_401_carrying_an_old_token_replays_with_the_newer_one_without_refreshing() {
    let mut r = Run::new(config(no_timer));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let slow = r.ask(EPOCH, Need::Lenient);
    let f = wait(r.refresh(EPOCH + 1)); // token 2 exists while the first call is out
    r.answer(EPOCH + 1, ok(&Pair::issued(2, EPOCH + 1)));
    assert_eq!(r.settled(f), Outcome::Done);
    let replay = r.token_after_401(EPOCH + 1_000, serial(&slow));
    assert_eq!(ready(&replay), at(2));
    assert_eq!(r.count(Endpoint::Refresh), 1, "no refresh for the stale 401");
}

#[test]
fn many_401s_with_the_current_token_share_one_refresh() {
    let mut r = Run::new(config(no_timer));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let s = serial(&r.ask(EPOCH, Need::Lenient));
    let flights: Vec<_> = (0..10).map(|_| wait_token(r.token_after_401(EPOCH + 5, s))).collect();
    assert!(flights.iter().all(|f| *f == flights[0]));
    assert_eq!(r.count(Endpoint::Refresh), 1);
}

#[test]
fn a_401_whose_refresh_is_rejected_ends_the_session() {
    let mut r = Run::new(config(|_| {}));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let s = serial(&r.ask(EPOCH, Need::Lenient));
    let f = wait_token(r.token_after_401(EPOCH, s));
    r.answer(EPOCH, unauthorized());
    assert_eq!(r.failure(f).code(), "SESSION_EXPIRED");
    assert_eq!(
        r.token(EPOCH, Need::Replay, waited(&r.settled(f)), 1),
        TokenStep::Rethrow
    );
    assert_eq!(r.event_count("expired"), 1);
}

#[test]
fn a_spent_refresh_token_is_never_sent_twice() {
    let mut r = Run::new(config(|_| {}));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let mut n = 1;
    let mut issue = |r: &mut Run, t: i64| {
        n += 1;
        r.answer(t, ok(&Pair::issued(n, t)));
    };
    // The timer.
    let t = r.fire();
    issue(&mut r, t);
    // Concurrent callers after the token expired (the process slept through the timer).
    let t = t + 2 * HOUR;
    let f = wait_token(r.ask(t, Need::Strict));
    let _ = wait_token(r.ask(t, Need::Lenient));
    assert_eq!(wait(r.refresh(t)), f);
    issue(&mut r, t);
    // An explicit refresh, and the timer firing while it is out.
    let due = r.deadline().unwrap();
    let g = wait(r.refresh(due - SECOND));
    r.timeout(due);
    assert_eq!(wait(r.refresh(due)), g);
    issue(&mut r, due);
    // Two API calls that both meet a 401 with the current token.
    let t = due + 1;
    let s = serial(&r.ask(t, Need::Lenient));
    let a = wait_token(r.token_after_401(t, s));
    assert_eq!(wait_token(r.token_after_401(t, s)), a);
    issue(&mut r, t);
    // A day of timers.
    for _ in 0..24 {
        let t = r.fire();
        issue(&mut r, t);
    }
    let sent = r.refresh_tokens_sent();
    assert_eq!(sent.len(), 28);
    let mut unique = sent.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), sent.len(), "a refresh token was sent twice");
    assert_eq!(r.event_count("expired") + r.event_count("error"), 0);
}

// ----- late answers --------------------------------------------------------------------------

#[test]
fn a_refresh_that_lands_after_revoke_is_ignored() {
    let mut r = Run::new(config(|_| {}));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let f = wait(r.refresh(EPOCH));
    let refresh = r.open_send();

    let out = r.revoke(EPOCH + 1);
    let g = wait(out);
    assert!(r.cancelled().contains(&refresh.id), "the refresh attempt is cancelled");
    assert_eq!(r.settled(f), Outcome::Again);
    // The refresh's caller asks again and sees the revoked session.
    assert_eq!(r.rejoin(), Step::Ready);
    assert_eq!(r.m.result().unwrap_err().code(), "NOT_AUTHENTICATED");

    let revoke = r.open_send();
    assert_eq!(revoke.endpoint, Endpoint::Revoke);
    assert_eq!(
        body_token(&revoke),
        Some(rt(1)),
        "the refresh token on the wire is revoked"
    );
    assert_eq!(revoke.authorization, Some(format!("Bearer {}", at(1))));
    r.answer(EPOCH + 2, revoked());
    assert_eq!(r.settled(g), Outcome::Done);

    // The refresh answer arrives.
    assert_eq!(r.answer_io(EPOCH + 5_000, refresh.id, ok(&Pair::issued(2, EPOCH))), []);
    let info = r.m.info();
    assert_eq!((info.state, info.client_id), (Phase::Revoked, None));
    assert_eq!(r.deadline(), None);
    assert_eq!(r.event_count("tokens"), 1, "the late pair was not taken");
    assert_eq!(r.token_now(EPOCH + 5_000).unwrap_err().code(), "NOT_AUTHENTICATED");
    assert_eq!(r.sends().len(), 3, "login, refresh, revoke");
}

#[test]
fn a_login_that_lands_after_revoke_is_ignored() {
    let mut r = Run::new(config(|_| {}));
    let f = r.login(EPOCH);
    let login = r.open_send();
    let g = wait(r.revoke(EPOCH));
    assert_eq!(r.cancelled(), [login.id]);
    assert_eq!(r.settled(f), Outcome::Again);
    assert_eq!(r.rejoin(), Step::Ready);
    assert_eq!(r.m.result().unwrap_err().code(), "NOT_AUTHENTICATED");
    assert_eq!(r.settled(g), Outcome::Done, "nothing held: nothing to revoke");
    assert_eq!(r.answer_io(EPOCH + 1_000, login.id, ok(&Pair::issued(1, EPOCH))), []);
    assert_eq!(r.m.info().state, Phase::Revoked);
    assert_eq!(r.count(Endpoint::Revoke), 0);
    assert_eq!(r.deadline(), None);
}

#[test]
fn a_refresh_that_lands_after_a_new_login_loses_to_the_login() {
    let mut r = Run::new(config(no_timer));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let f = wait(r.refresh(EPOCH));
    let refresh = r.open_send();
    let g = r.login(EPOCH + 1);
    assert!(r.cancelled().contains(&refresh.id));
    assert_eq!(r.settled(f), Outcome::Again);
    assert_eq!(r.rejoin(), Step::Wait(g), "the refresh's caller waits for the login");
    r.answer(EPOCH + 2, ok(&Pair::issued(3, EPOCH + 2)));
    assert_eq!(r.answer_io(EPOCH + 5_000, refresh.id, ok(&Pair::issued(2, EPOCH))), []);
    assert_eq!(r.token_now(EPOCH + 5_000).unwrap(), at(3), "the login's tokens win");
    r.refresh(EPOCH + 6_000);
    assert_eq!(r.refresh_tokens_sent(), [rt(1), rt(3)]);
}

#[test]
fn concurrent_logins_both_resolve_with_the_last_ones_tokens() {
    let mut r = Run::new(config(|_| {}));
    let a = r.login(EPOCH);
    let first = r.open_send();
    let b = r.login(EPOCH + 1);
    assert_eq!(r.cancelled(), [first.id]);
    assert_eq!(r.settled(a), Outcome::Again);
    assert_eq!(r.rejoin(), Step::Wait(b));
    r.answer(EPOCH + 100, ok(&Pair::issued(2, EPOCH + 100)));
    assert_eq!(r.settled(b), Outcome::Done);
    assert_eq!(r.m.result().unwrap().state, Phase::Active);
    assert_eq!(r.answer_io(EPOCH + 200, first.id, ok(&Pair::issued(1, EPOCH))), []);
    assert_eq!(r.token_now(EPOCH + 200).unwrap(), at(2));
}

#[test]
fn a_failed_login_keeps_the_previous_session_and_its_timer() {
    let mut r = Run::new(config(|_| {}));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let f = r.login_with(EPOCH, Some(creds_with("wrong-CANARY")));
    r.answer(
        EPOCH,
        error_envelope(401, "UnauthorizedError", "UNAUTHORIZED", "Invalid credentials"),
    );
    assert_eq!(r.failure(f).code(), "UNAUTHORIZED");
    assert_eq!(r.m.info().state, Phase::Active);
    assert_eq!(r.token_now(EPOCH).unwrap(), at(1));
    assert_eq!(
        r.deadline(),
        Some(EPOCH + HOUR - MARGIN),
        "the auto-refresh is still armed"
    );
    r.fire();
    assert_eq!(r.count(Endpoint::Refresh), 1);
}

// ----- revoke --------------------------------------------------------------------------------

#[test]
fn revoke_clears_locally_first_then_tells_the_server() {
    let mut r = Run::new(config(|_| {}));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let f = wait(r.revoke(EPOCH));
    // While the server call is out, the session is already cleared.
    assert_eq!(r.outcome(f), None);
    let info = r.m.info();
    assert_eq!(
        (info.state, info.client_id, info.access_expires_at),
        (Phase::Revoked, None, None)
    );
    assert_eq!(r.event_count("revoked"), 1);
    assert_eq!(r.token_now(EPOCH).unwrap_err().code(), "NOT_AUTHENTICATED");
    assert_eq!(fail(r.refresh(EPOCH)).code(), "NOT_AUTHENTICATED");

    let req = r.open_send();
    assert_eq!(
        (req.endpoint, req.url.as_str()),
        (Endpoint::Revoke, "https://api.test/auth/revoke")
    );
    assert_eq!(body_token(&req), Some(rt(1)));
    assert_eq!(req.authorization, Some(format!("Bearer {}", at(1))));
    r.answer(EPOCH + 1_000, revoked());
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.deadline(), None, "no timer survives revoke");
    assert_eq!(r.timeout(EPOCH + 2 * DAY), []);
}

#[test]
fn revoke_succeeds_on_any_2xx_whatever_the_body() {
    // Rewrite defect: a 200 with an empty body (or any other) is success (RFC 7009).
    for (status, text) in [
        (200, ""),
        (204, ""),
        (200, "<html>ok</html>"),
        (200, r#"{"success":false}"#),
    ] {
        let mut r = Run::new(config(|_| {}));
        r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
        let f = wait(r.revoke(EPOCH));
        r.answer(EPOCH, reply(status, text));
        assert_eq!(r.settled(f), Outcome::Done, "{status} {text:?}");
        assert_eq!(r.count(Endpoint::Revoke), 1);
    }
}

fn revoke_fails_on_the_server_but_clears(failure: Reply, code: &str) {
    let mut r = Run::new(config(|o| o.retries = Some(0.0)));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let f = wait(r.revoke(EPOCH));
    r.answer(EPOCH, failure);
    assert_eq!(r.failure(f).code(), code);
    assert_eq!(r.count(Endpoint::Revoke), 1);
    assert_eq!(r.m.info().state, Phase::Revoked);
    assert_eq!(r.event_count("revoked"), 1);
    assert_eq!(r.deadline(), None);

    let sent = r.sends().len();
    assert_eq!(r.token_now(EPOCH).unwrap_err().code(), "NOT_AUTHENTICATED");
    assert_eq!(fail(r.refresh(EPOCH)).code(), "NOT_AUTHENTICATED");
    r.timeout(EPOCH + 8 * DAY);
    assert_eq!(r.sends().len(), sent, "no request after revoke");
    // A new login works.
    let t = EPOCH + 8 * DAY;
    r.logged_in(t, &Pair::issued(2, t));
    assert_eq!(r.token_now(t).unwrap(), at(2));
}

#[test]
fn revoke_clears_even_when_the_server_answers_500() {
    revoke_fails_on_the_server_but_clears(status(500), "SERVER_ERROR");
}

#[test]
fn revoke_clears_even_when_the_network_fails() {
    revoke_fails_on_the_server_but_clears(network(), "NETWORK_ERROR");
}

#[test]
fn revoke_retries_the_server_call_with_the_same_tokens() {
    let mut r = Run::new(config(|_| {}));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let f = wait(r.revoke(EPOCH));
    r.answer(EPOCH, status(503));
    let t = r.fire();
    r.answer(t, status(503));
    let t = r.fire();
    r.answer(t, revoked());
    assert_eq!(r.settled(f), Outcome::Done);
    let revokes = r.sends_to(Endpoint::Revoke);
    assert_eq!(revokes.len(), 3);
    assert!(revokes.iter().all(|q| body_token(q) == Some(rt(1))));
}

#[test]
fn revoke_without_a_session_sends_nothing_and_a_second_revoke_joins_the_first() {
    let mut r = Run::new(config(|_| {}));
    let f = wait(r.revoke(EPOCH));
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.sends().len(), 0);
    assert_eq!(r.m.info().state, Phase::Revoked);
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let g = wait(r.revoke(EPOCH));
    assert_eq!(wait(r.revoke(EPOCH)), g);
    r.answer(EPOCH, revoked());
    let h = wait(r.revoke(EPOCH));
    assert_eq!(r.settled(h), Outcome::Done);
    assert_eq!(r.count(Endpoint::Revoke), 1);
    assert_eq!(r.event_count("revoked"), 3);
}

#[test]
fn revoke_after_the_access_token_expired_sends_no_bearer() {
    let mut r = Run::new(config(no_timer));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    wait(r.revoke(EPOCH + HOUR + 1));
    let req = r.open_send();
    assert_eq!(req.authorization, None);
    assert_eq!(body_token(&req), Some(rt(1)));
}

#[test]
fn a_login_during_a_revoke_waits_for_it_and_a_later_login_replaces_it() {
    let mut r = Run::new(config(|_| {}));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let f = wait(r.revoke(EPOCH));
    let a = r.login(EPOCH + 1);
    assert_eq!(r.open_send().endpoint, Endpoint::Revoke, "one request at a time");
    let b = r.login(EPOCH + 2);
    assert_eq!(r.settled(a), Outcome::Again);
    assert_eq!(r.rejoin(), Step::Wait(b));
    // A token call while the login waits: the session is revoked until the login lands.
    assert_eq!(r.token_now(EPOCH + 2).unwrap_err().code(), "NOT_AUTHENTICATED");
    r.answer(EPOCH + 3, revoked());
    assert_eq!(r.settled(f), Outcome::Done);
    let login = r.open_send();
    assert_eq!(login.endpoint, Endpoint::Login);
    r.answer(EPOCH + 4, ok(&Pair::issued(2, EPOCH + 4)));
    assert_eq!(r.settled(b), Outcome::Done);
    assert_eq!(r.token_now(EPOCH + 4).unwrap(), at(2));
}

#[test]
fn a_revoke_supersedes_a_login_queued_behind_the_previous_revoke() {
    let mut r = Run::new(config(|_| {}));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let f = wait(r.revoke(EPOCH));
    let a = r.login(EPOCH);
    assert_eq!(wait(r.revoke(EPOCH)), f);
    assert_eq!(r.settled(a), Outcome::Again);
    r.answer(EPOCH, revoked());
    assert_eq!(r.settled(f), Outcome::Done);
    assert!(!r.has_open_send(), "the superseded login is never sent");
    assert_eq!(r.count(Endpoint::Login), 1);
}

// ----- dispose -------------------------------------------------------------------------------

#[test]
fn dispose_releases_waiters_at_once_and_stops_everything() {
    let mut r = Run::new(config(|_| {}));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let t = EPOCH + HOUR + 1;
    let f = wait(r.refresh(t));
    let tokens: Vec<_> = (0..10).map(|_| wait_token(r.ask(t, Need::Strict))).collect();
    let refresh = r.open_send();

    let out = r.dispose();
    assert!(out.contains(&Output::Cancel(refresh.id)));
    let e = r.failure(f);
    assert_eq!((e.code(), e.name()), ("DISPOSED", "DisposedError"));
    for g in tokens {
        assert_eq!(g, f);
        assert_eq!(r.token(t, Need::Strict, waited(&r.settled(g)), 1), TokenStep::Rethrow);
    }
    assert_eq!(r.deadline(), None);
    assert!(r.m.is_disposed());

    // The late refresh answer arrives.
    assert_eq!(r.answer_io(t + 10_000, refresh.id, ok(&Pair::issued(2, t))), []);
    assert_eq!(r.deadline(), None, "the late refresh did not arm a timer");
    let info = r.m.info();
    assert_eq!((info.client_id, info.access_expires_at), (None, None), "tokens dropped");
    let t = t + 10_000;
    for e in [
        r.token_now(t).unwrap_err(),
        token_fail(r.token_after_401(t, 1)),
        fail(r.refresh(t)),
        fail(r.revoke(t)),
        fail(r.m.login(t, Some(creds()))),
        fail(r.rejoin()),
    ] {
        assert_eq!((e.code(), e.name()), ("DISPOSED", "DisposedError"));
    }
    assert_eq!(r.dispose(), [], "idempotent");
    assert_eq!(r.timeout(t + 8 * DAY), []);
    assert_eq!(r.sends().len(), 2);
    assert_eq!(r.event_count("tokens"), 1);
}

// ----- background refresh (Workers' waitUntil) -----------------------------------------------

#[test]
fn inside_the_margin_a_background_call_uses_the_current_token_and_refreshes_behind_it() {
    let mut r = Run::new(config(no_timer));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let t = EPOCH + HOUR - 200 * SECOND;
    let step = r.ask(t, Need::Background);
    let TokenStep::Ready {
        token,
        background: Some(f),
        ..
    } = step
    else {
        panic!("expected a token and a background refresh, got {step:?}")
    };
    assert_eq!(token.expose(), at(1));
    assert_eq!(r.open_send().endpoint, Endpoint::Refresh);
    // A second background call shares the refresh.
    let TokenStep::Ready { background, .. } = r.ask(t, Need::Background) else {
        panic!()
    };
    assert_eq!(background, Some(f));
    r.answer(t + 1_000, ok(&Pair::issued(2, t + 1_000)));
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.token_now(t + 1_000).unwrap(), at(2));
}

#[test]
fn a_background_call_waits_when_the_token_has_under_five_seconds_left() {
    let mut r = Run::new(config(no_timer));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let t = EPOCH + HOUR - 4 * SECOND;
    let f = wait_token(r.ask(t, Need::Background));
    r.answer(t, ok(&Pair::issued(2, t)));
    assert_eq!(ready(&r.token(t, Need::Background, waited(&r.settled(f)), 1)), at(2));
}

#[test]
fn a_failed_background_refresh_is_an_error_event() {
    let mut r = Run::new(config(|o| {
        no_timer(o);
        o.retries = Some(0.0);
    }));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let t = EPOCH + HOUR - 200 * SECOND;
    let TokenStep::Ready {
        background: Some(f), ..
    } = r.ask(t, Need::Background)
    else {
        panic!()
    };
    r.answer(t, status(502));
    assert_eq!(r.failure(f).code(), "SERVER_ERROR");
    let errors = r.errors();
    assert_eq!(errors.len(), 1, "nobody awaits it: the failure is reported as an event");
    assert_eq!((errors[0].code(), errors[0].status()), ("SERVER_ERROR", 502));
}

// ----- superseded attempts -------------------------------------------------------------------

#[test]
fn login_revoke_and_dispose_cancel_the_attempt_they_supersede() {
    for command in ["login", "revoke", "dispose"] {
        for stage in ["sending", "backoff"] {
            let mut r = Run::new(config(no_timer));
            r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
            let f = wait(r.refresh(EPOCH + 1));
            let first = r.open_send();
            if stage == "backoff" {
                r.answer(EPOCH + 1, status(503));
                assert!(!r.has_open_send());
            }
            match command {
                "login" => {
                    r.login(EPOCH + 2);
                }
                "revoke" => {
                    wait(r.revoke(EPOCH + 2));
                }
                _ => {
                    r.dispose();
                }
            }
            if stage == "sending" {
                assert!(r.cancelled().contains(&first.id), "{command} {stage}");
            }
            assert!(r.outcome(f).is_some(), "{command} {stage}: the refresh's flight ended");
            // Answer whatever the command sent, then let time run.
            if r.has_open_send() {
                let req = r.open_send();
                let answer = match req.endpoint {
                    Endpoint::Login => ok(&Pair::issued(2, EPOCH + 2)),
                    _ => reply(200, ""),
                };
                r.answer(EPOCH + 2, answer);
            }
            r.answer_io(EPOCH + 3, first.id, ok(&Pair::issued(9, EPOCH)));
            r.timeout(EPOCH + HOUR);
            let later: Vec<_> = r
                .sends()
                .into_iter()
                .skip_while(|s| s.id != first.id)
                .skip(1)
                .filter(|s| s.endpoint == Endpoint::Refresh)
                .collect();
            assert_eq!(later, [], "{command} {stage}: no refresh after the supersession");
            assert_eq!(
                r.count(Endpoint::Refresh),
                1,
                "{command} {stage}: the backoff's retry never ran"
            );
        }
    }
}

#[test]
fn at_most_one_auth_request_is_open_whatever_the_callers_do() {
    // Every Run checks this on each output; here the calls that could start a second one
    // come together: a refresh, a login replacing it, a revoke, a login queued behind it.
    let mut r = Run::new(config(with_credentials));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    wait(r.refresh(EPOCH));
    wait_token(r.token_after_401(EPOCH, 1));
    r.login(EPOCH);
    wait(r.revoke(EPOCH));
    r.login(EPOCH);
    assert_eq!(token_fail(r.ask(EPOCH, Need::Strict)).code(), "NOT_AUTHENTICATED");
    assert_eq!(r.open_send().endpoint, Endpoint::Revoke);
    r.answer(EPOCH, reply(200, ""));
    assert_eq!(r.open_send().endpoint, Endpoint::Login);
}

#[test]
fn a_refresh_token_that_runs_out_during_a_retry_backoff_is_not_sent() {
    // Found by the property tests: the retry after a backoff used to send the token
    // whatever its expiry.
    for credentials in [false, true] {
        let mut r = Run::new(config(|o| {
            no_timer(o);
            if credentials {
                with_credentials(o);
            }
            o.max_retry_after_seconds = Some(600.0);
        }));
        r.logged_in(EPOCH, &Pair::with_ttl(1, EPOCH, MINUTE, 2 * MINUTE));
        let f = wait(r.refresh(EPOCH + MINUTE));
        r.answer(EPOCH + MINUTE, status(503).retry_after("300"));
        r.fire(); // five minutes later: the refresh token died a minute after the 503
        assert_eq!(r.refresh_tokens_sent(), [rt(1)], "credentials {credentials}");
        if credentials {
            assert_eq!(r.open_send().endpoint, Endpoint::Login);
            let t = EPOCH + 6 * MINUTE;
            r.answer(t, ok(&Pair::issued(2, t)));
            assert_eq!(r.settled(f), Outcome::Done);
            assert_eq!(r.event_count("expired"), 0);
        } else {
            assert_eq!(r.failure(f).code(), "SESSION_EXPIRED");
            assert_eq!(r.event_count("expired"), 1);
            assert_eq!(r.m.info().state, Phase::Expired);
        }
    }
}

#[test]
fn the_end_of_a_session_is_reported_once_however_many_re_logins_fail() {
    // Found by the property tests: every failed re-login while expired used to report it.
    let mut r = Run::new(config(|o| {
        with_credentials(o);
        no_timer(o);
        o.retries = Some(0.0);
    }));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let f = wait(r.refresh(EPOCH));
    r.answer(EPOCH, unauthorized());
    r.answer(EPOCH, status(503)); // the re-login
    assert_eq!(r.failure(f).code(), "SERVER_ERROR");
    assert_eq!(r.event_count("expired"), 1);
    for i in 1..=3 {
        let g = wait(r.refresh(EPOCH + i));
        r.answer(EPOCH + i, network());
        assert_eq!(r.failure(g).code(), "NETWORK_ERROR");
    }
    assert_eq!(r.event_count("expired"), 1);
    // Without credentials: a call finds the token expired (reported), then the refresh that
    // was already out is rejected: still one report.
    let mut r = Run::new(config(no_timer));
    r.logged_in(EPOCH, &Pair::with_ttl(1, EPOCH, MINUTE, 2 * MINUTE));
    let f = wait(r.refresh(EPOCH + 2 * MINUTE - 1));
    assert_eq!(r.token_now(EPOCH + 2 * MINUTE).unwrap_err().code(), "SESSION_EXPIRED");
    r.answer(EPOCH + 2 * MINUTE, unauthorized());
    assert_eq!(r.failure(f).code(), "SESSION_EXPIRED");
    assert_eq!(r.event_count("expired"), 1);
}
