//! Time in the machine: the deadlines `poll_timeout` reports (the auto-refresh, attempt
//! timeouts, retries), what `handle_timeout` does when one is reached, how a timer-driven
//! refresh fails, and how the server's clock (its `Date` header) moves the schedule.
//! Clamping a delay to what `setTimeout` honours is the driver's job; the machine reports
//! the true time.
// Native only: the harness reads JSON with the core's native reader.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use auth_session::core::machine::{Endpoint, Keep, Need, Outcome};
use auth_session::core::Phase;
use common::*;

#[test]
fn the_timer_is_armed_at_expiry_minus_the_margin_and_keeps_nothing_alive() {
    for (margin, due) in [(None, HOUR - MARGIN), (Some(60.0), HOUR - MINUTE), (Some(0.0), HOUR)] {
        let mut r = Run::new(config(|o| o.refresh_margin_seconds = margin));
        r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
        assert_eq!(r.m.poll_timeout(), Some((EPOCH + due, Keep::Idle)), "{margin:?}");
    }
}

#[test]
fn handle_timeout_before_a_deadline_does_nothing() {
    let mut r = Run::new(config(|_| {}));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let due = r.deadline().unwrap();
    for t in [EPOCH, EPOCH + MINUTE, due - 1] {
        assert_eq!(r.timeout(t), []);
        assert_eq!(r.deadline(), Some(due));
    }
    r.timeout(due);
    assert_eq!(r.open_send().endpoint, Endpoint::Refresh);
}

#[test]
fn short_tokens_use_half_their_life_as_the_margin() {
    let mut r = Run::new(config(|_| {}));
    r.logged_in(EPOCH, &Pair::with_ttl(1, EPOCH, MINUTE, 7 * DAY));
    assert_eq!(r.deadline(), Some(EPOCH + 30 * SECOND));
    // The token counts as fresh until then: calls do not refresh first.
    assert_eq!(r.token_now(EPOCH + 30 * SECOND - 1).unwrap(), at(1));
    r.timeout(EPOCH + 30 * SECOND - 1);
    assert_eq!(r.count(Endpoint::Refresh), 0);
    let t = r.fire();
    assert_eq!(t, EPOCH + 30 * SECOND);
    r.answer(t, ok(&Pair::with_ttl(2, t, MINUTE, 7 * DAY)));
    assert_eq!(r.deadline(), Some(t + 30 * SECOND));
}

#[test]
fn a_deadline_longer_than_set_timeout_allows_is_reported_as_is() {
    let mut r = Run::new(config(|_| {}));
    r.logged_in(EPOCH, &Pair::with_ttl(1, EPOCH, 30 * DAY, 60 * DAY));
    let due = EPOCH + 30 * DAY - MARGIN;
    assert_eq!(r.deadline(), Some(due));
    assert!(due - EPOCH > MAX_TIMER, "the driver clamps and re-arms");
    // A clamped timer fires early: nothing happens, the deadline stands.
    assert_eq!(r.timeout(EPOCH + MAX_TIMER), []);
    assert_eq!(r.deadline(), Some(due));
    r.timeout(due - 1);
    assert_eq!(r.count(Endpoint::Refresh), 0);
    r.timeout(due);
    assert_eq!(r.count(Endpoint::Refresh), 1);
}

#[test]
fn the_timer_refreshes_once_and_arms_the_next_one() {
    let mut r = Run::new(config(|_| {}));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let t = r.fire();
    assert_eq!(t, EPOCH + HOUR - MARGIN);
    let req = r.open_send();
    assert_eq!(body_token(&req), Some(rt(1)));
    assert_eq!(
        r.m.poll_timeout(),
        Some((t + TIMEOUT, Keep::Alive)),
        "the attempt's timeout"
    );
    r.answer(t, ok(&Pair::issued(2, t)));
    assert_eq!(r.m.poll_timeout(), Some((t + HOUR - MARGIN, Keep::Idle)));
    assert_eq!(r.event_count("tokens"), 2);
    assert_eq!(r.m.info().access_expires_at, Some(t + HOUR));
    // The new token is used without another request.
    assert_eq!(r.token_now(t).unwrap(), at(2));
    // A day of timers: one refresh per 55 minutes, never two at once.
    let end = EPOCH + DAY;
    let mut n = 2;
    while r.deadline().unwrap() <= end {
        let t = r.fire();
        n += 1;
        r.answer(t, ok(&Pair::issued(n, t)));
    }
    assert_eq!(r.count(Endpoint::Refresh) as i64, DAY / (HOUR - MARGIN));
    assert_eq!(r.event_count("error"), 0);
}

#[test]
fn a_failed_timer_refresh_is_an_error_event_and_is_retried_later() {
    let mut r = Run::new(config(|_| {}));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let mut t = r.fire();
    r.answer(t, status(503));
    for _ in 0..2 {
        t = r.fire();
        r.answer(t, status(503));
    }
    assert_eq!(r.count(Endpoint::Refresh), 3, "the refresh and its two retries");
    let errors = r.errors();
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].code(), errors[0].status()), ("SERVER_ERROR", 503));
    assert_eq!(r.m.info().state, Phase::Active, "the tokens are kept");
    // Retried after half the remaining life, at most 30 s.
    assert_eq!(r.m.poll_timeout(), Some((t + 30 * SECOND, Keep::Idle)));
    let t = r.fire();
    r.answer(t, ok(&Pair::issued(2, t)));
    assert_eq!(r.count(Endpoint::Refresh), 4);
    assert_eq!(r.event_count("tokens"), 2);
    assert_eq!(r.deadline(), Some(t + HOUR - MARGIN));
    assert_eq!(r.event_count("error"), 1);
}

#[test]
fn a_timer_refresh_failing_until_expiry_stops_retrying_and_the_next_call_refreshes() {
    let mut r = Run::new(config(|o| o.retries = Some(0.0)));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let mut t = EPOCH;
    while let Some(due) = r.deadline() {
        assert!(due > t, "time moves on");
        t = r.fire();
        if r.has_open_send() {
            r.answer(t, network());
        }
    }
    let n = r.count(Endpoint::Refresh);
    assert!(
        (10..=20).contains(&n),
        "{n} attempts between the first timer and expiry"
    );
    assert_eq!(r.event_count("error"), n);
    assert!(t >= EPOCH + HOUR, "gave up once the access token expired");
    let f = wait_token(r.ask(t, Need::Strict));
    r.answer(t, ok(&Pair::issued(2, t)));
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.deadline(), Some(t + HOUR - MARGIN), "re-armed by the new pair");
}

#[test]
fn a_rejected_timer_refresh_ends_the_session_without_an_error_event() {
    let mut r = Run::new(config(|_| {}));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let t = r.fire();
    r.answer(t, unauthorized());
    assert_eq!(r.count(Endpoint::Refresh), 1);
    assert_eq!(r.event_count("expired"), 1);
    assert_eq!(r.event_count("error"), 0);
    assert_eq!(r.m.info().state, Phase::Expired);
    assert_eq!(r.deadline(), None);
}

#[test]
fn a_non_retryable_timer_failure_is_reported_and_not_re_armed() {
    let mut r = Run::new(config(|_| {}));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let t = r.fire();
    r.answer(
        t,
        error_envelope(403, "ForbiddenError", "FORBIDDEN", "IP address not authorized"),
    );
    let errors = r.errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (errors[0].code(), errors[0].name(), errors[0].status()),
        ("FORBIDDEN", "ForbiddenError", 403)
    );
    assert_eq!(r.deadline(), None);
    // The next call tries again on its own.
    let f = wait_token(r.ask(t, Need::Strict));
    r.answer(t, ok(&Pair::issued(2, t)));
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.deadline(), Some(t + HOUR - MARGIN));
}

#[test]
fn auto_refresh_off_arms_no_timer() {
    let mut r = Run::new(config(no_timer));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    assert_eq!(r.deadline(), None);
    assert_eq!(r.timeout(EPOCH + 2 * HOUR), []);
    let t = EPOCH + 2 * HOUR;
    let f = wait_token(r.ask(t, Need::Strict));
    r.answer(t, ok(&Pair::issued(2, t)));
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.deadline(), None);
}

#[test]
fn no_timer_survives_revoke_or_dispose() {
    let mut r = Run::new(config(|_| {}));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    wait(r.revoke(EPOCH));
    r.answer(EPOCH, reply(200, ""));
    assert_eq!(r.deadline(), None);
    assert_eq!(r.timeout(EPOCH + 2 * DAY), []);

    let mut r = Run::new(config(|_| {}));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    r.dispose();
    assert_eq!(r.deadline(), None);
    assert_eq!(r.timeout(EPOCH + 2 * DAY), []);
    assert_eq!(r.count(Endpoint::Refresh), 0);
}

#[test]
fn a_timer_firing_while_callers_refresh_joins_their_flight() {
    let mut r = Run::new(config(|_| {}));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let t = EPOCH + HOUR - MARGIN;
    let flights: Vec<_> = (0..5).map(|_| wait_token(r.ask(t, Need::Strict))).collect();
    assert_eq!(
        r.m.poll_timeout(),
        Some((t, Keep::Alive)),
        "the timer is due, and work is out"
    );
    assert_eq!(r.timeout(t), []);
    assert_eq!(r.count(Endpoint::Refresh), 1);
    r.answer(t + 100, ok(&Pair::issued(2, t + 100)));
    assert!(flights.iter().all(|f| r.settled(*f) == Outcome::Done));
    assert_eq!(r.count(Endpoint::Refresh), 1);
    assert_eq!(r.deadline(), Some(t + 100 + HOUR - MARGIN));
}

#[test]
fn after_handle_timeout_the_next_deadline_is_later() {
    // Whatever the jitter (even a backoff of 0 ms), one handle_timeout(now) does all that is
    // due at `now`: the driver is never asked to come back at once.
    let mut zero_backoffs = 0;
    for seed in 1..=3_000 {
        let mut r = Run::with(config(|_| {}), false, seed);
        r.login(EPOCH);
        let t = r.fire(); // the attempt times out; the retry waits for its backoff
        if r.has_open_send() {
            zero_backoffs += 1; // the backoff was 0: sent at once
        }
        assert!(r.deadline().unwrap() > t, "seed {seed}");
    }
    assert!(zero_backoffs > 0, "the seeds cover a zero backoff");
}

#[test]
fn dispose_during_a_timer_refresh_reports_nothing_afterwards() {
    let mut r = Run::new(config(|_| {}));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let t = r.fire();
    let req = r.open_send();
    let before = r.events().len();
    let out = r.dispose();
    assert!(out.contains(&auth_session::core::machine::Output::Cancel(req.id)));
    r.answer_io(t + 1_000, req.id, ok(&Pair::issued(2, t)));
    r.timeout(t + DAY);
    assert_eq!(
        r.events().len(),
        before,
        "no event after dispose: {:?}",
        &r.events()[before..]
    );
    assert_eq!(r.deadline(), None);
}

// ----- clock skew ----------------------------------------------------------------------------

#[test]
fn a_server_clock_an_hour_ahead_moves_the_refresh_to_the_servers_schedule() {
    let mut r = Run::new(config(|_| {}));
    let server_now = EPOCH + HOUR;
    let f = r.login(EPOCH);
    r.answer(EPOCH, ok(&Pair::issued(1, server_now)).date(&http_date(server_now)));
    assert_eq!(r.settled(f), Outcome::Done);
    // The server's times are reported as they are...
    assert_eq!(r.m.info().access_expires_at, Some(EPOCH + 2 * HOUR));
    // ...but the timer runs on the local clock, an hour less.
    assert_eq!(r.deadline(), Some(EPOCH + HOUR - MARGIN));

    // Calls judge the token on the server's clock too: 4 minutes before its server-side
    // expiry it is due, without the timer.
    let mut r = Run::new(config(no_timer));
    r.login(EPOCH);
    r.answer(EPOCH, ok(&Pair::issued(1, server_now)).date(&http_date(server_now)));
    let t = EPOCH + HOUR - 4 * MINUTE;
    wait_token(r.ask(t, Need::Strict));
    assert_eq!(r.count(Endpoint::Refresh), 1);
}

#[test]
fn a_server_clock_an_hour_behind_is_followed_too() {
    let mut r = Run::new(config(|_| {}));
    let server_now = EPOCH - HOUR;
    r.login(EPOCH);
    r.answer(EPOCH, ok(&Pair::issued(1, server_now)).date(&http_date(server_now)));
    assert_eq!(r.m.info().access_expires_at, Some(EPOCH));
    assert_eq!(r.deadline(), Some(EPOCH + HOUR - MARGIN));
    assert_eq!(r.token_now(EPOCH).unwrap(), at(1), "not considered expired");
}

#[test]
fn without_a_date_header_the_local_clock_is_trusted() {
    let mut r = Run::new(config(|_| {}));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH + HOUR));
    assert_eq!(r.deadline(), Some(EPOCH + 2 * HOUR - MARGIN));
}

#[test]
fn a_skew_within_the_noise_or_an_absurd_date_is_ignored() {
    for (date, pair_at, due) in [
        (
            http_date(EPOCH + SECOND),
            EPOCH + SECOND,
            EPOCH + SECOND + HOUR - MARGIN,
        ),
        ("Thu, 01 Jan 1970 00:00:00 GMT".to_owned(), EPOCH, EPOCH + HOUR - MARGIN),
        ("garbage".to_owned(), EPOCH, EPOCH + HOUR - MARGIN),
    ] {
        let mut r = Run::new(config(|_| {}));
        r.login(EPOCH);
        r.answer(EPOCH, ok(&Pair::issued(1, pair_at)).date(&date));
        assert_eq!(r.deadline(), Some(due), "{date}");
    }
}

#[test]
fn a_timer_that_fired_during_a_callers_failed_refresh_tries_again_later() {
    // The timer joined a refresh a caller had started; that refresh failed for a temporary
    // reason. The caller has its error; the auto-refresh must not be lost with it.
    let mut r = Run::new(config(|o| o.retries = Some(0.0)));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let due = r.deadline().unwrap();
    let f = wait(r.refresh(due - 1));
    assert_eq!(r.timeout(due), [], "the timer joins the caller's refresh");
    r.answer(due, status(503));
    assert_eq!(r.failure(f).code(), "SERVER_ERROR");
    assert_eq!(r.event_count("error"), 0, "the caller was told");
    assert_eq!(r.m.poll_timeout(), Some((due + 30 * SECOND, Keep::Idle)));
    let t = r.fire();
    assert_eq!(r.count(Endpoint::Refresh), 2);
    r.answer(t, ok(&Pair::issued(2, t)));
    assert_eq!(r.deadline(), Some(t + HOUR - MARGIN));
}

#[test]
fn a_driver_with_a_timer_of_its_own_reads_the_machines_schedule() {
    // The Workers broker's alarm: the skew, when the pair is due and when to try again are
    // the machine's answers, the same as its own timer's.
    let mut r = Run::new(config(no_timer));
    assert_eq!((r.m.due_at(), r.m.retry_at(EPOCH), r.m.skew_ms()), (None, None, 0));
    let server_now = EPOCH - HOUR;
    r.login(EPOCH);
    r.answer(EPOCH, ok(&Pair::issued(1, server_now)).date(&http_date(server_now)));
    assert_eq!(r.m.skew_ms(), -HOUR);
    assert_eq!(
        r.m.due_at(),
        Some(EPOCH + HOUR - MARGIN),
        "on our clock, less the margin"
    );
    let t = EPOCH + HOUR - MARGIN;
    assert_eq!(
        r.m.retry_at(t),
        Some(t + 30 * SECOND),
        "half the life left, at most 30 s"
    );
    assert_eq!(
        r.m.retry_at(EPOCH + HOUR - 10 * SECOND),
        Some(EPOCH + HOUR - 5 * SECOND)
    );
    assert_eq!(r.m.retry_at(EPOCH + HOUR), None, "expired: the next call refreshes");
}
