//! The auto-refresh timer: when it is armed, what it does when it fires, how it fails, and
//! how the server's clock (its `Date` header) moves it.

mod common;

use auth_session::core::Phase;
use common::*;

const MAX_TIMER: i64 = 2_147_483_647;

#[test]
fn the_timer_is_armed_at_expiry_minus_the_margin() {
    let h = Harness::new();
    h.login();
    assert_eq!(h.timer_delays(), [HOUR - 300_000]);
    let h = Harness::with(|o| o.refresh_margin_seconds = Some(60.0));
    h.login();
    assert_eq!(h.timer_delays(), [HOUR - 60_000]);
    let h = Harness::with(|o| o.refresh_margin_seconds = Some(0.0));
    h.login();
    assert_eq!(h.timer_delays(), [HOUR]);
}

#[test]
fn short_tokens_use_half_their_life_as_the_margin() {
    let h = Harness::new();
    h.server().access_ttl_ms = 60_000;
    h.login();
    assert_eq!(h.timer_delays(), [30_000]);
    // The token counts as fresh until then: calls do not refresh first.
    assert_eq!(h.get(PRODUCTS).unwrap().response.status, 200);
    assert_eq!(h.token().unwrap(), at(1));
    assert_eq!(h.count("/auth/refresh"), 0);
    h.advance(29_999);
    assert_eq!(h.count("/auth/refresh"), 0);
    h.advance(1);
    assert_eq!(h.count("/auth/refresh"), 1);
    assert_eq!(h.timer_delays(), [30_000]);
}

#[test]
fn a_timer_longer_than_set_timeout_allows_is_clamped_and_re_armed() {
    let h = Harness::new();
    {
        let mut s = h.server();
        s.access_ttl_ms = 30 * DAY;
        s.refresh_ttl_ms = 60 * DAY;
    }
    h.login();
    let due = 30 * DAY - 300_000;
    assert_eq!(h.timer_delays(), [MAX_TIMER]);
    h.advance(MAX_TIMER);
    assert_eq!(
        h.count("/auth/refresh"),
        0,
        "fired early: re-armed instead of refreshing"
    );
    assert_eq!(h.timer_delays(), [due - MAX_TIMER]);
    h.advance(due - MAX_TIMER - 1);
    assert_eq!(h.count("/auth/refresh"), 0);
    h.advance(1);
    assert_eq!(h.count("/auth/refresh"), 1);
    assert_eq!(h.requests_to("/auth/refresh")[0].t(), due);
    assert_eq!(h.timer_delays(), [MAX_TIMER]);
}

#[test]
fn the_timer_refreshes_once_and_arms_the_next_one() {
    let h = Harness::new();
    h.login();
    h.advance(HOUR - 300_000);
    assert_eq!(h.count("/auth/refresh"), 1);
    assert_eq!(h.requests_to("/auth/refresh")[0].t(), HOUR - 300_000);
    assert_eq!(h.timer_delays(), [HOUR - 300_000]);
    assert_eq!(h.event_count("tokens"), 2);
    assert_eq!(h.info().access_expires_at, Some(EPOCH + 2 * HOUR - 300_000));
    // The new token is used without another request.
    let before = h.total_requests();
    assert_eq!(h.token().unwrap(), at(2));
    assert_eq!(h.total_requests(), before);
    // A day of timers: one refresh per 55 minutes, never two at once.
    h.advance(DAY);
    let n = h.count("/auth/refresh");
    assert_eq!(n, 1 + (DAY / (HOUR - 300_000)) as usize);
    assert_eq!(h.live_timers(), 1);
    assert_eq!(h.event_count("error"), 0);
}

#[test]
fn a_failed_timer_refresh_is_an_error_event_and_is_retried_later() {
    let h = Harness::new();
    h.login();
    h.script_n("/auth/refresh", 3, Reply::status(503));
    h.advance(HOUR - 300_000 + 300); // the refresh and its two retries
    assert_eq!(h.count("/auth/refresh"), 3);
    let errors = h.error_events();
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].code(), errors[0].status()), ("SERVER_ERROR", 503));
    assert_eq!(h.info().state, Phase::Active, "the tokens are kept");
    // Retried after half the remaining life, at most 30 s.
    assert_eq!(h.timer_delays(), [30_000]);
    h.advance(30_000);
    assert_eq!(h.count("/auth/refresh"), 4);
    assert_eq!(h.event_count("tokens"), 2);
    assert_eq!(h.timer_delays(), [HOUR - 300_000]);
    assert_eq!(h.event_count("error"), 1);
}

#[test]
fn a_timer_refresh_failing_until_expiry_stops_retrying_and_the_next_call_refreshes() {
    let h = Harness::with(|o| o.retries = Some(0.0));
    h.login();
    h.script_n("/auth/refresh", 100, Reply::network_error());
    h.advance(HOUR + 60_000);
    let n = h.count("/auth/refresh");
    assert!(
        (10..=20).contains(&n),
        "{n} attempts between the first timer and expiry"
    );
    assert_eq!(h.event_count("error"), n);
    assert_eq!(h.live_timers(), 0, "after expiry the timer gives up");
    h.clear_scripts();
    assert_eq!(h.token().unwrap(), at(2));
    assert_eq!(h.live_timers(), 1);
}

#[test]
fn a_rejected_timer_refresh_ends_the_session_without_an_error_event() {
    let h = Harness::new();
    h.login();
    h.server().revoke_everything();
    h.advance(HOUR);
    assert_eq!(h.count("/auth/refresh"), 1);
    assert_eq!(h.event_count("expired"), 1);
    assert_eq!(h.event_count("error"), 0);
    assert_eq!(h.info().state, Phase::Expired);
    assert_eq!(h.live_timers(), 0);
}

#[test]
fn a_non_retryable_timer_failure_is_reported_and_not_re_armed() {
    let h = Harness::new();
    h.login();
    h.script(
        "/auth/refresh",
        Reply::error(403, "ForbiddenError", "FORBIDDEN", "IP address not authorized"),
    );
    h.advance(HOUR - 300_000);
    let errors = h.error_events();
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (errors[0].code(), errors[0].name(), errors[0].status()),
        ("FORBIDDEN", "ForbiddenError", 403)
    );
    assert_eq!(h.live_timers(), 0);
    // The next call tries again on its own.
    assert_eq!(h.token().unwrap(), at(2));
    assert_eq!(h.live_timers(), 1);
}

#[test]
fn auto_refresh_off_arms_no_timer() {
    let h = Harness::with(|o| o.auto_refresh = Some(false));
    h.login();
    assert_eq!(h.live_timers(), 0);
    h.advance(2 * HOUR);
    assert_eq!(h.count("/auth/refresh"), 0);
    assert_eq!(h.token().unwrap(), at(2));
    assert_eq!(h.live_timers(), 0);
}

#[test]
fn no_timer_survives_revoke_or_dispose() {
    let h = Harness::new();
    h.login();
    assert_eq!(h.live_timers(), 1);
    h.revoke().unwrap();
    assert_eq!(h.live_timers(), 0);
    h.advance(2 * DAY);
    assert_eq!(h.count("/auth/refresh"), 0);

    let h = Harness::new();
    h.login();
    h.session.dispose();
    assert_eq!(h.live_timers(), 0);
    h.advance(2 * DAY);
    assert_eq!(h.count("/auth/refresh"), 0);
    assert_eq!(h.pending_sleeps(), 0);
}

#[test]
fn a_timer_firing_while_callers_refresh_joins_their_flight() {
    // Inside the margin: the callers' refresh and the timer share one request.
    let h = Harness::new();
    h.login();
    h.jump(HOUR - 300_000);
    h.script("/auth/refresh", Reply::server().delay(100));
    let callers: Vec<_> = (0..5).map(|_| h.spawn_token()).collect();
    h.run_until_stalled();
    h.advance(200);
    assert!(callers.iter().all(|c| c.done() && c.take().unwrap() == at(2)));
    assert_eq!(h.count("/auth/refresh"), 1);
    assert_eq!(h.live_timers(), 1);
}

// ----- clock skew ----------------------------------------------------------------------------

#[test]
fn a_server_clock_an_hour_ahead_moves_the_refresh_to_the_servers_schedule() {
    let h = Harness::new();
    {
        let mut s = h.server();
        s.skew_ms = HOUR;
        s.send_date = true;
    }
    let info = h.login();
    // The server's times are reported as they are...
    assert_eq!(info.access_expires_at, Some(EPOCH + 2 * HOUR));
    // ...but the timer runs on the local clock, an hour less.
    assert_eq!(h.timer_delays(), [HOUR - 300_000]);
    h.advance(HOUR - 300_000);
    assert_eq!(h.count("/auth/refresh"), 1);
    assert_eq!(h.timer_delays(), [HOUR - 300_000]);
    // Calls judge the token on the server's clock too: 4 minutes before its server-side
    // expiry it is due, without the timer.
    let h2 = Harness::with(|o| o.auto_refresh = Some(false));
    {
        let mut s = h2.server();
        s.skew_ms = HOUR;
        s.send_date = true;
    }
    h2.login();
    h2.jump(HOUR - 240_000);
    assert_eq!(h2.token().unwrap(), at(2));
    assert_eq!(h2.count("/auth/refresh"), 1);
}

#[test]
fn a_server_clock_an_hour_behind_is_followed_too() {
    let h = Harness::new();
    {
        let mut s = h.server();
        s.skew_ms = -HOUR;
        s.send_date = true;
    }
    let info = h.login();
    assert_eq!(info.access_expires_at, Some(EPOCH));
    assert_eq!(h.timer_delays(), [HOUR - 300_000]);
    assert_eq!(h.token().unwrap(), at(1), "not considered expired");
}

#[test]
fn without_a_date_header_the_local_clock_is_trusted() {
    let h = Harness::new();
    h.server().skew_ms = HOUR;
    h.login();
    assert_eq!(h.timer_delays(), [2 * HOUR - 300_000]);
}

#[test]
fn a_skew_within_the_noise_or_an_absurd_date_is_ignored() {
    let h = Harness::new();
    h.server().skew_ms = 1_000;
    h.server().send_date = true;
    h.login();
    assert_eq!(h.timer_delays(), [HOUR + 1_000 - 300_000]);

    let h = Harness::new();
    h.script("/auth/login", Reply::server().date("Thu, 01 Jan 1970 00:00:00 GMT"));
    h.login();
    assert_eq!(h.timer_delays(), [HOUR - 300_000]);

    let h = Harness::new();
    h.script("/auth/login", Reply::server().date("garbage"));
    h.login();
    assert_eq!(h.timer_delays(), [HOUR - 300_000]);
}

#[test]
fn dispose_during_a_timer_refresh_reports_nothing_afterwards() {
    let h = Harness::new();
    h.login();
    h.script("/auth/refresh", Reply::server().delay(1_000));
    h.advance(HOUR - 300_000);
    assert_eq!(h.count("/auth/refresh"), 1);
    let before = h.events().len();
    h.session.dispose();
    h.advance(10_000);
    assert_eq!(
        h.events().len(),
        before,
        "no event after dispose: {:?}",
        &h.events()[before..]
    );
    assert_eq!(h.live_timers(), 0);
}
