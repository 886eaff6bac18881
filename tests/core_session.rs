//! The session's life: login, single-flight refresh, expiry, 401 replay, revoke, dispose,
//! late results and aborts, against the fake server on the fake clock.

mod common;

use auth_session::core::secret::Password;
use auth_session::core::{Abort, Credentials, Phase};
use common::*;
use futures::future::join_all;

fn no_timer(o: &mut auth_session::core::Options) {
    o.auto_refresh = Some(false);
}

// ----- 1. login ------------------------------------------------------------------------------

#[test]
fn login_with_arguments_gives_an_active_session_with_the_servers_times() {
    let h = Harness::new();
    let info = h.login();
    assert_eq!(info.state, Phase::Active);
    assert_eq!(info.client_id, Some(123_456));
    assert_eq!(info.access_expires_at, Some(EPOCH + HOUR));
    assert_eq!(info.refresh_expires_at, Some(EPOCH + 7 * DAY));
    assert_eq!(h.info(), info);

    let logins = h.requests_to("/auth/login");
    assert_eq!(logins.len(), 1);
    assert_eq!(logins[0].url, "https://api.test/auth/login");
    assert_eq!(logins[0].method, "POST");
    assert_eq!(logins[0].bearer, None);
    assert_eq!(
        logins[0].body.as_deref(),
        Some(format!(r#"{{"username":"alice","password":"{PASSWORD}"}}"#).as_str())
    );
    assert_eq!(h.event_count("tokens"), 1);
    assert_eq!(h.token().unwrap(), at(1));
    assert_eq!(h.total_requests(), 1, "a fresh token needs no refresh");
    assert_eq!(h.elapsed(), 0, "nothing waited");
}

#[test]
fn login_uses_the_configured_credentials_and_a_host_path_prefix() {
    let h = Harness::with(|o| {
        with_credentials(o);
        o.host = Some("https://api.test/v2/".into());
    });
    // The fake server serves the protocol at the root; answer the prefixed paths by script.
    h.script(
        "/v2/auth/login",
        Reply::json(200, &{
            let now = h.now();
            h.server().issue(now).envelope()
        }),
    );
    let info = h.run(h.session.login(None)).unwrap();
    assert_eq!(info.state, Phase::Active);
    let logins = h.requests_to("/v2/auth/login");
    assert_eq!(logins.len(), 1);
    assert_eq!(logins[0].url, "https://api.test/v2/auth/login");
    assert!(logins[0].body.as_deref().unwrap().contains(PASSWORD));
}

#[test]
fn login_without_arguments_or_credentials_is_a_config_error_without_a_request() {
    let h = Harness::new();
    let e = h.err(h.run(h.session.login(None)));
    assert_eq!((e.code(), e.name(), e.status()), ("CONFIG_ERROR", "ConfigError", 0));
    assert_eq!(h.total_requests(), 0);
    assert_eq!(h.info().state, Phase::Anonymous);
}

#[test]
fn wrong_credentials_are_the_servers_unauthorized_and_nothing_changes() {
    let h = Harness::new();
    let bad = Credentials {
        username: USER.into(),
        password: Password::new("wrong-CANARY-pw"),
    };
    let e = h.err(h.run(h.session.login(Some(bad))));
    assert_eq!(
        (e.code(), e.name(), e.status(), e.retryable()),
        ("UNAUTHORIZED", "UnauthorizedError", 401, false)
    );
    assert_eq!(h.count("/auth/login"), 1, "a 401 is not retried");
    assert_eq!(h.info().state, Phase::Anonymous);
    assert_eq!(h.event_count("expired"), 0);
    assert_eq!(h.live_timers(), 0);
}

#[test]
fn calls_before_login_are_not_authenticated_without_a_request() {
    let h = Harness::new();
    assert_eq!(h.err(h.token()).code(), "NOT_AUTHENTICATED");
    assert_eq!(h.err(h.get(PRODUCTS)).code(), "NOT_AUTHENTICATED");
    assert_eq!(h.err(h.refresh()).code(), "NOT_AUTHENTICATED");
    assert_eq!(h.total_requests(), 0);
}

#[test]
fn with_credentials_the_first_call_logs_in_by_itself() {
    let h = Harness::with(with_credentials);
    let tasks: Vec<_> = (0..20).map(|_| h.spawn_get(PRODUCTS)).collect();
    for r in h.run(join_all(tasks)) {
        assert_eq!(r.unwrap().response.status, 200);
    }
    assert_eq!(h.count("/auth/login"), 1, "one login for all callers");
    assert!(h
        .requests_to(PRODUCTS)
        .iter()
        .all(|r| r.bearer.as_deref() == Some(at(1).as_str())));
}

#[test]
fn a_second_login_replaces_the_tokens() {
    let h = Harness::new();
    h.login();
    h.login();
    assert_eq!(h.token().unwrap(), at(2));
    assert_eq!(
        h.live_timers(),
        1,
        "the first session's timer was replaced, not added to"
    );
}

// ----- 2. single flight ----------------------------------------------------------------------

#[test]
fn a_thousand_concurrent_callers_share_one_refresh() {
    let h = Harness::with(no_timer);
    h.login();
    h.jump(HOUR + 1); // the access token has expired
    h.script("/auth/refresh", Reply::server().delay(50));
    let tokens: Vec<_> = (0..500).map(|_| h.spawn_token()).collect();
    let gets: Vec<_> = (0..500).map(|_| h.spawn_get(PRODUCTS)).collect();
    let tokens = h.run(join_all(tokens));
    let gets = h.run(join_all(gets));

    assert_eq!(h.count("/auth/refresh"), 1, "exactly one refresh request");
    assert_eq!(h.requests_to("/auth/refresh")[0].refresh_token(), Some(rt(1)));
    assert!(tokens.into_iter().all(|t| t.unwrap() == at(2)));
    assert!(gets.into_iter().all(|r| r.unwrap().response.status == 200));
    let products = h.requests_to(PRODUCTS);
    assert_eq!(products.len(), 500);
    assert!(products.iter().all(|r| r.bearer.as_deref() == Some(at(2).as_str())));
    assert_eq!(h.event_count("tokens"), 2);
    assert_eq!(h.elapsed(), HOUR + 1 + 50);
}

#[test]
fn callers_arriving_during_a_refresh_join_it_and_later_ones_use_the_result() {
    let h = Harness::with(no_timer);
    h.login();
    h.jump(HOUR);
    h.script("/auth/refresh", Reply::server().delay(1_000));
    let first = h.spawn_token();
    h.advance(500);
    let second = h.spawn_token();
    h.advance(500);
    assert_eq!((first.take().unwrap(), second.take().unwrap()), (at(2), at(2)));
    let third = h.token().unwrap();
    assert_eq!(third, at(2));
    assert_eq!(h.count("/auth/refresh"), 1);
}

#[test]
fn explicit_refreshes_share_one_request_too() {
    let h = Harness::with(no_timer);
    h.login();
    h.jump(1_000);
    h.script("/auth/refresh", Reply::server().delay(10));
    let s = h.session.clone();
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let s = s.clone();
            h.spawn(async move { s.refresh(&mut Abort::none()).await })
        })
        .collect();
    let infos = h.run(join_all(calls));
    assert!(infos
        .iter()
        .all(|i| i.as_ref().unwrap().access_expires_at == Some(EPOCH + 1_000 + HOUR)));
    assert_eq!(h.count("/auth/refresh"), 1);
    // A refresh after that one is a new request with the new token.
    h.refresh().unwrap();
    let bodies: Vec<_> = h
        .requests_to("/auth/refresh")
        .iter()
        .map(|r| r.refresh_token().unwrap())
        .collect();
    assert_eq!(bodies, [rt(1), rt(2)]);
}

// ----- 3. failed refresh ---------------------------------------------------------------------

fn failed_refresh_rejects_every_waiter(failure: Reply, code: &str) {
    let h = Harness::with(no_timer);
    h.login();
    h.jump(HOUR + 1);
    h.script_n("/auth/refresh", 3, failure.delay(5));
    let tokens: Vec<_> = (0..50).map(|_| h.spawn_token()).collect();
    let gets: Vec<_> = (0..50).map(|_| h.spawn_get(PRODUCTS)).collect();
    for r in h.run(join_all(tokens)) {
        let e = h.err(r);
        assert_eq!(e.code(), code);
        assert!(e.retryable());
    }
    for r in h.run(join_all(gets)) {
        assert_eq!(h.err(r).code(), code, "an expired token is not used");
    }
    let refreshes = h.requests_to("/auth/refresh");
    assert_eq!(refreshes.len(), 3, "one flight: the first attempt and 2 retries");
    let times: Vec<_> = refreshes.iter().map(|r| r.t() - (HOUR + 1)).collect();
    assert_eq!(times, [0, 5 + 100, 5 + 100 + 5 + 200]);
    assert_eq!(h.count(PRODUCTS), 0);
    // The tokens are kept.
    let info = h.info();
    assert_eq!(
        (info.state, info.access_expires_at),
        (Phase::Active, Some(EPOCH + HOUR))
    );
    assert_eq!(h.event_count("expired"), 0);

    // The next call starts a new flight, which works, with the same (unspent) refresh token.
    assert_eq!(h.token().unwrap(), at(2));
    let refreshes = h.requests_to("/auth/refresh");
    assert_eq!(refreshes.len(), 4);
    assert!(refreshes.iter().all(|r| r.refresh_token() == Some(rt(1))));
}

#[test]
fn a_refresh_failing_with_503_rejects_every_waiter_and_the_next_call_starts_a_new_flight() {
    failed_refresh_rejects_every_waiter(Reply::status(503), "SERVER_ERROR");
}

#[test]
fn a_refresh_failing_with_network_errors_rejects_every_waiter_and_keeps_the_tokens() {
    failed_refresh_rejects_every_waiter(Reply::network_error(), "NETWORK_ERROR");
}

#[test]
fn fetch_uses_a_still_valid_token_when_the_early_refresh_fails_but_get_access_token_does_not() {
    let h = Harness::with(no_timer);
    h.login();
    h.jump(HOUR - 60_000); // inside the 300 s margin, one minute left
    h.script_n("/auth/refresh", 3, Reply::status(503));
    let r = h.get(PRODUCTS).unwrap();
    assert_eq!(r.response.status, 200);
    assert_eq!(h.requests_to(PRODUCTS)[0].bearer.as_deref(), Some(at(1).as_str()));
    h.script_n("/auth/refresh", 3, Reply::status(503));
    assert_eq!(h.err(h.token()).code(), "SERVER_ERROR");
    assert_eq!(h.count("/auth/refresh"), 6);
}

// ----- 4. rejected refresh -------------------------------------------------------------------

#[test]
fn a_rejected_refresh_ends_the_session_once_for_every_waiter() {
    let h = Harness::with(no_timer);
    h.login();
    h.jump(HOUR + 1);
    h.server().revoke_everything();
    h.script("/auth/refresh", Reply::server().delay(10));
    let tokens: Vec<_> = (0..30).map(|_| h.spawn_token()).collect();
    let gets: Vec<_> = (0..30).map(|_| h.spawn_get(PRODUCTS)).collect();
    for r in h
        .run(join_all(tokens))
        .into_iter()
        .chain(h.run(join_all(gets)).into_iter().map(|r| r.map(|_| String::new())))
    {
        let e = h.err(r);
        assert_eq!(
            (e.code(), e.name(), e.retryable()),
            ("SESSION_EXPIRED", "SessionExpiredError", false)
        );
    }
    assert_eq!(h.count("/auth/refresh"), 1);
    let info = h.info();
    assert_eq!(info.state, Phase::Expired);
    assert_eq!(
        (info.client_id, info.access_expires_at, info.refresh_expires_at),
        (None, None, None)
    );
    assert_eq!(h.event_count("expired"), 1);
    assert_eq!(h.event_count("error"), 0);

    let before = h.total_requests();
    assert_eq!(h.err(h.token()).code(), "SESSION_EXPIRED");
    assert_eq!(h.err(h.get(PRODUCTS)).code(), "SESSION_EXPIRED");
    assert_eq!(h.err(h.refresh()).code(), "SESSION_EXPIRED");
    assert_eq!(h.total_requests(), before, "no request after the session ended");
    assert_eq!(h.event_count("expired"), 1, "the end is reported once");
    assert_eq!(h.live_timers(), 0);

    // A new login starts over.
    assert_eq!(h.login().state, Phase::Active);
    assert_eq!(h.token().unwrap(), at(2));
}

#[test]
fn a_rejected_refresh_with_credentials_logs_in_again_transparently() {
    let h = Harness::with(|o| {
        with_credentials(o);
        o.auto_refresh = Some(false);
    });
    h.run(h.session.login(None)).unwrap();
    h.jump(HOUR + 1);
    h.server().revoke_everything();
    let tasks: Vec<_> = (0..30).map(|_| h.spawn_get(PRODUCTS)).collect();
    for r in h.run(join_all(tasks)) {
        assert_eq!(r.unwrap().response.status, 200);
    }
    assert_eq!(h.count("/auth/refresh"), 1);
    assert_eq!(h.count("/auth/login"), 2, "the first login and one re-login");
    assert!(h
        .requests_to(PRODUCTS)
        .iter()
        .all(|r| r.bearer.as_deref() == Some(at(2).as_str())));
    assert_eq!(h.event_count("expired"), 0);
    assert_eq!(h.info().state, Phase::Active);
}

#[test]
fn a_refresh_token_that_ran_out_ends_the_session_without_a_request() {
    let h = Harness::with(no_timer);
    h.login();
    h.jump(7 * DAY);
    assert_eq!(h.err(h.token()).code(), "SESSION_EXPIRED");
    assert_eq!(h.err(h.get(PRODUCTS)).code(), "SESSION_EXPIRED");
    assert_eq!(h.total_requests(), 1);
    assert_eq!(h.event_count("expired"), 1);
    assert_eq!(h.info().state, Phase::Expired);
}

#[test]
fn a_refresh_token_that_ran_out_logs_in_again_with_credentials() {
    let h = Harness::with(|o| {
        with_credentials(o);
        o.auto_refresh = Some(false);
    });
    h.run(h.session.login(None)).unwrap();
    h.jump(7 * DAY);
    assert_eq!(h.token().unwrap(), at(2));
    assert_eq!((h.count("/auth/login"), h.count("/auth/refresh")), (2, 0));
    assert_eq!(h.event_count("expired"), 0);
}

#[test]
fn a_failed_re_login_reports_the_end_and_its_own_error() {
    let h = Harness::with(|o| {
        with_credentials(o);
        o.auto_refresh = Some(false);
        o.retries = Some(0.0);
    });
    h.run(h.session.login(None)).unwrap();
    h.jump(HOUR + 1);
    h.server().revoke_everything();
    h.script(
        "/auth/login",
        Reply::error(403, "ForbiddenError", "FORBIDDEN", "IP not allowed"),
    );
    let e = h.err(h.token());
    assert_eq!((e.code(), e.status()), ("FORBIDDEN", 403));
    assert_eq!(h.event_count("expired"), 1);
    assert_eq!(h.info().state, Phase::Expired);
    // Credentials are there: the next call tries to log in again, and succeeds.
    assert_eq!(h.token().unwrap(), at(2));
    assert_eq!(h.info().state, Phase::Active);
}

// ----- 5. spent refresh tokens ---------------------------------------------------------------

#[test]
fn a_spent_refresh_token_is_never_sent_twice() {
    let h = Harness::new();
    h.login();
    // Timer-driven refresh.
    h.advance(HOUR - 300_000);
    assert_eq!(h.count("/auth/refresh"), 1);
    // Concurrent callers after the token expired (the process slept through the timer).
    h.jump(HOUR);
    h.script("/auth/refresh", Reply::server().delay(20));
    let tasks: Vec<_> = (0..40).map(|_| h.spawn_token()).collect();
    assert!(h.run(join_all(tasks)).into_iter().all(|t| t.is_ok()));
    // Explicit refreshes in parallel with a timer that fires at the same time.
    let s = h.session.clone();
    let explicit: Vec<_> = (0..3)
        .map(|_| {
            let s = s.clone();
            h.spawn(async move { s.refresh(&mut Abort::none()).await })
        })
        .collect();
    h.run(join_all(explicit)).into_iter().for_each(|r| assert!(r.is_ok()));
    // Two API calls that both meet a 401 with the current token.
    h.script_n(PRODUCTS, 2, Reply::unauthorized().delay(5));
    let gets: Vec<_> = (0..2).map(|_| h.spawn_get(PRODUCTS)).collect();
    assert!(h
        .run(join_all(gets))
        .into_iter()
        .all(|r| r.unwrap().response.status == 200));
    // And more timer refreshes.
    h.advance(3 * HOUR);

    let sent: Vec<String> = h
        .requests_to("/auth/refresh")
        .iter()
        .map(|r| r.refresh_token().unwrap())
        .collect();
    assert!(sent.len() >= 6, "{sent:?}");
    let mut unique = sent.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), sent.len(), "a refresh token was sent twice");
    assert_eq!(h.server().spent_reuse, 0);
    assert_eq!(h.event_count("expired") + h.event_count("error"), 0);
}

// ----- 6. 401 replay -------------------------------------------------------------------------

#[test]
fn a_401_with_the_current_token_refreshes_once_and_replays() {
    let h = Harness::new();
    h.login();
    h.script(PRODUCTS, Reply::unauthorized());
    let r = h.get(PRODUCTS).unwrap();
    assert_eq!(r.response.status, 200);
    assert_eq!(
        r.response.body.0,
        br#"{"success":true,"data":[{"id":1,"name":"widget"}]}"#
    );
    let bearers: Vec<_> = h.requests_to(PRODUCTS).into_iter().map(|r| r.bearer.unwrap()).collect();
    assert_eq!(bearers, [at(1), at(2)]);
    assert_eq!(h.count("/auth/refresh"), 1);
    assert_eq!(h.world.bodies_discarded.get(), 1, "the 401's body was released");
}

#[test]
fn a_second_401_is_returned_as_the_response() {
    let h = Harness::new();
    h.login();
    h.script_n(PRODUCTS, 2, Reply::unauthorized());
    let r = h.get(PRODUCTS).unwrap();
    assert_eq!(r.response.status, 401);
    assert!(String::from_utf8_lossy(&r.response.body.0).contains("UNAUTHORIZED"));
    assert_eq!(h.count(PRODUCTS), 2);
    assert_eq!(h.count("/auth/refresh"), 1);
    assert_eq!(h.info().state, Phase::Active, "an API 401 does not end the session");
}

#[test]
fn a_401_carrying_an_old_token_replays_with_the_newer_one_without_refreshing() {
    let h = Harness::with(no_timer);
    h.login();
    h.script(PRODUCTS, Reply::unauthorized().delay(1_000));
    let slow = h.spawn_get(PRODUCTS);
    h.run_until_stalled();
    h.refresh().unwrap(); // token 2 exists while the first call is out
    assert!(!slow.done());
    let r = h.run(slow).unwrap();
    assert_eq!(r.response.status, 200);
    let bearers: Vec<_> = h.requests_to(PRODUCTS).into_iter().map(|r| r.bearer.unwrap()).collect();
    assert_eq!(bearers, [at(1), at(2)]);
    assert_eq!(h.count("/auth/refresh"), 1, "no refresh for the stale 401");
}

#[test]
fn a_post_is_replayed_with_its_body_after_a_401() {
    let h = Harness::new();
    h.login();
    h.script("/api/v1/orders", Reply::unauthorized());
    h.script("/api/v1/orders", Reply::json(201, r#"{"success":true,"data":{}}"#));
    let r = h
        .fetch("POST", "/api/v1/orders", Some(r#"{"qty":2}"#), Abort::none())
        .unwrap();
    assert_eq!(r.response.status, 201);
    let orders = h.requests_to("/api/v1/orders");
    assert_eq!(orders.len(), 2);
    assert!(orders
        .iter()
        .all(|r| r.method == "POST" && r.body.as_deref() == Some(r#"{"qty":2}"#)));
    assert_eq!(orders[1].bearer.as_deref(), Some(at(2).as_str()));
}

#[test]
fn a_401_whose_refresh_is_rejected_ends_the_session() {
    let h = Harness::new();
    h.login();
    h.server().revoke_everything();
    let e = h.err(h.get(PRODUCTS));
    assert_eq!(e.code(), "SESSION_EXPIRED");
    assert_eq!((h.count(PRODUCTS), h.count("/auth/refresh")), (1, 1));
    assert_eq!(h.event_count("expired"), 1);
}

#[test]
fn fetch_refreshes_first_when_the_token_is_due() {
    let h = Harness::with(no_timer);
    h.login();
    h.jump(HOUR - 299_000); // inside the margin
    assert_eq!(h.get(PRODUCTS).unwrap().response.status, 200);
    assert_eq!(
        h.requests().iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        ["/auth/login", "/auth/refresh", PRODUCTS]
    );
    assert_eq!(h.requests_to(PRODUCTS)[0].bearer.as_deref(), Some(at(2).as_str()));
}

// ----- 9. late results -----------------------------------------------------------------------

#[test]
fn a_refresh_that_lands_after_revoke_is_discarded_and_revoked_on_the_server() {
    let h = Harness::with_storage(|_| {});
    h.login();
    h.script("/auth/refresh", Reply::server().delay(5_000));
    let s = h.session.clone();
    let waiter = h.spawn(async move { s.refresh(&mut Abort::none()).await });
    h.run_until_stalled();
    assert_eq!(h.count("/auth/refresh"), 1);

    h.revoke().unwrap();
    assert_eq!(
        h.err(h.run(waiter)).code(),
        "NOT_AUTHENTICATED",
        "the waiter sees the revoked session"
    );
    assert_eq!(h.count("/auth/revoke"), 1);
    h.advance(10_000); // the refresh answer arrives

    let info = h.info();
    assert_eq!((info.state, info.client_id), (Phase::Revoked, None));
    assert_eq!(h.live_timers(), 0);
    assert_eq!(h.event_count("tokens"), 1, "the late pair was not taken");
    assert_eq!(h.stored(), None, "nor stored");
    let revokes: Vec<_> = h
        .requests_to("/auth/revoke")
        .iter()
        .map(|r| r.refresh_token().unwrap())
        .collect();
    assert_eq!(revokes, [rt(1), rt(2)], "the late pair is revoked on the server too");
    assert_eq!(h.server().refresh[&rt(2)].1, RefreshState::Revoked);
    assert_eq!(h.err(h.get(PRODUCTS)).code(), "NOT_AUTHENTICATED");
    assert!(h
        .requests()
        .iter()
        .all(|r| r.bearer.as_deref() != Some(at(2).as_str()) || r.path == "/auth/revoke"));
}

#[test]
fn a_login_that_lands_after_revoke_is_revoked_too() {
    let h = Harness::new();
    h.script("/auth/login", Reply::server().delay(1_000));
    let s = h.session.clone();
    let login = h.spawn(async move { s.login(Some(creds())).await });
    h.run_until_stalled();
    h.revoke().unwrap();
    let e = h.err(h.run(login));
    assert_eq!(e.code(), "NOT_AUTHENTICATED");
    h.advance(2_000);
    assert_eq!(h.info().state, Phase::Revoked);
    assert_eq!(
        h.requests_to("/auth/revoke")
            .iter()
            .map(|r| r.refresh_token().unwrap())
            .collect::<Vec<_>>(),
        [rt(1)]
    );
    assert_eq!(h.live_timers(), 0);
}

#[test]
fn dispose_releases_waiters_at_once_and_stops_everything() {
    let h = Harness::new();
    h.login();
    assert_eq!(h.live_timers(), 1);
    h.script("/auth/refresh", Reply::server().delay(5_000));
    let s = h.session.clone();
    let explicit = h.spawn(async move { s.refresh(&mut Abort::none()).await });
    h.run_until_stalled();
    assert_eq!(h.count("/auth/refresh"), 1);

    let t0 = h.now();
    h.session.dispose();
    h.run_until_stalled();
    assert!(explicit.done(), "released without waiting for the server");
    assert_eq!(h.err(explicit.take()).code(), "DISPOSED");
    assert_eq!(h.now(), t0);
    assert_eq!(h.live_timers(), 0);

    h.advance(10_000); // the late refresh answer arrives
    assert_eq!(h.live_timers(), 0, "the late refresh did not arm a timer");
    let info = h.info();
    assert_eq!(
        (info.client_id, info.access_expires_at),
        (None, None),
        "tokens dropped from memory"
    );
    for e in [
        h.err(h.token()),
        h.err(h.get(PRODUCTS)),
        h.err(h.refresh()),
        h.err(h.revoke()),
        h.err(h.run(h.session.login(Some(creds())))),
    ] {
        assert_eq!((e.code(), e.name()), ("DISPOSED", "DisposedError"));
    }
    h.session.dispose(); // idempotent
    assert_eq!(h.count("/auth/refresh"), 1);
    assert_eq!(
        h.count("/auth/revoke") + h.count("/auth/login"),
        1,
        "only the first login"
    );
    assert_eq!(h.event_count("tokens"), 1);
}

#[test]
fn dispose_releases_refresh_waiters_with_disposed() {
    let h = Harness::with(no_timer);
    h.login();
    h.jump(HOUR + 1);
    h.script("/auth/refresh", Reply::server().delay(5_000));
    let tokens: Vec<_> = (0..10).map(|_| h.spawn_token()).collect();
    let gets: Vec<_> = (0..10).map(|_| h.spawn_get(PRODUCTS)).collect();
    h.run_until_stalled();
    assert!(tokens.iter().all(|w| !w.done()) && gets.iter().all(|w| !w.done()));
    h.session.dispose();
    h.run_until_stalled();
    for w in tokens {
        assert!(w.done(), "released at once");
        assert_eq!(h.err(w.take()).code(), "DISPOSED");
    }
    for w in gets {
        assert!(w.done(), "released at once");
        assert_eq!(h.err(w.take()).code(), "DISPOSED");
    }
    h.advance(10_000);
    assert_eq!(h.live_timers(), 0);
    assert_eq!(h.count(PRODUCTS), 0);
}

#[test]
fn a_refresh_that_lands_after_a_new_login_loses_to_the_login() {
    let h = Harness::with(no_timer);
    h.login();
    h.script("/auth/refresh", Reply::server().delay(5_000));
    let s = h.session.clone();
    let waiter = h.spawn(async move { s.refresh(&mut Abort::none()).await });
    h.run_until_stalled();
    assert_eq!(h.count("/auth/refresh"), 1); // issued pair 2, delivered late
    h.login(); // pair 3
    h.advance(10_000);
    let _ = h.run(waiter);
    assert_eq!(h.token().unwrap(), at(3), "the login's tokens win");
    assert_eq!(h.get(PRODUCTS).unwrap().response.status, 200);
    assert_eq!(h.requests_to(PRODUCTS)[0].bearer.as_deref(), Some(at(3).as_str()));
    // The next refresh uses the login's refresh token.
    h.refresh().unwrap();
    assert_eq!(h.requests_to("/auth/refresh")[1].refresh_token(), Some(rt(3)));
}

#[test]
fn concurrent_logins_both_resolve_with_the_last_ones_tokens() {
    let h = Harness::new();
    h.script("/auth/login", Reply::server().delay(100));
    h.script("/auth/login", Reply::server().delay(100));
    let a = {
        let s = h.session.clone();
        h.spawn(async move { s.login(Some(creds())).await })
    };
    h.run_until_stalled();
    let b = {
        let s = h.session.clone();
        h.spawn(async move { s.login(Some(creds())).await })
    };
    let (a, b) = h.run(futures::future::join(a, b));
    let b = b.unwrap();
    assert_eq!(b.state, Phase::Active);
    let a = h.check(a).unwrap();
    assert_eq!(
        a.state,
        Phase::Active,
        "the superseded login resolves with the session that replaced it"
    );
    assert_eq!(h.token().unwrap(), at(2));
}

// ----- 10. revoke ----------------------------------------------------------------------------

#[test]
fn revoke_clears_locally_first_then_tells_the_server() {
    let h = Harness::with_storage(|_| {});
    h.login();
    assert!(h.stored().is_some());
    h.script("/auth/revoke", Reply::server().delay(1_000));
    let s = h.session.clone();
    let revoke = h.spawn(async move { s.revoke().await });
    h.run_until_stalled();
    // While the server call is out, the session is already cleared.
    assert!(!revoke.done());
    let info = h.info();
    assert_eq!(
        (info.state, info.client_id, info.access_expires_at),
        (Phase::Revoked, None, None)
    );
    assert_eq!(h.event_count("revoked"), 1);
    assert_eq!(h.stored(), None);
    assert_eq!(h.live_timers(), 0);
    assert_eq!(h.err(h.token()).code(), "NOT_AUTHENTICATED");

    h.run(revoke).unwrap();
    let revokes = h.requests_to("/auth/revoke");
    assert_eq!(revokes.len(), 1);
    assert_eq!(revokes[0].method, "POST");
    assert_eq!(revokes[0].refresh_token(), Some(rt(1)));
    assert_eq!(revokes[0].bearer.as_deref(), Some(at(1).as_str()));
    assert_eq!(h.server().refresh[&rt(1)].1, RefreshState::Revoked);
    assert_eq!(h.storage().deletes.get(), 1);
}

fn revoke_fails_on_the_server_but_clears(failure: Reply, code: &str) {
    let h = Harness::with(|o| o.retries = Some(0.0));
    h.login();
    h.script("/auth/revoke", failure);
    let e = h.err(h.revoke());
    assert_eq!(e.code(), code);
    assert_eq!(h.count("/auth/revoke"), 1);
    assert_eq!(h.info().state, Phase::Revoked);
    assert_eq!(h.event_count("revoked"), 1);
    assert_eq!(h.live_timers(), 0);

    let mark = h.total_requests();
    assert_eq!(h.err(h.token()).code(), "NOT_AUTHENTICATED");
    assert_eq!(h.err(h.get(PRODUCTS)).code(), "NOT_AUTHENTICATED");
    assert_eq!(h.err(h.refresh()).code(), "NOT_AUTHENTICATED");
    h.advance(8 * DAY);
    assert_eq!(h.total_requests(), mark, "no request after revoke");
    for r in h.requests().iter().skip(mark) {
        assert_ne!(r.bearer.as_deref(), Some(at(1).as_str()));
    }
    // A new login works.
    h.login();
    assert_eq!(h.token().unwrap(), at(2));
}

#[test]
fn revoke_clears_even_when_the_server_answers_500() {
    revoke_fails_on_the_server_but_clears(Reply::status(500), "SERVER_ERROR");
}

#[test]
fn revoke_clears_even_when_the_network_fails() {
    revoke_fails_on_the_server_but_clears(Reply::network_error(), "NETWORK_ERROR");
}

#[test]
fn revoke_retries_the_server_call_with_the_default_retries() {
    let h = Harness::new();
    h.login();
    h.script_n("/auth/revoke", 2, Reply::status(503));
    h.revoke().unwrap();
    let times: Vec<_> = h.requests_to("/auth/revoke").iter().map(|r| r.t()).collect();
    assert_eq!(times, [0, 100, 300]);
    assert!(h
        .requests_to("/auth/revoke")
        .iter()
        .all(|r| r.refresh_token() == Some(rt(1))));
}

#[test]
fn revoke_without_a_session_sends_nothing_and_a_revoked_session_stays_revoked() {
    let h = Harness::new();
    h.revoke().unwrap();
    assert_eq!(h.total_requests(), 0);
    assert_eq!(h.info().state, Phase::Revoked);
    h.login();
    h.revoke().unwrap();
    h.revoke().unwrap();
    assert_eq!(h.count("/auth/revoke"), 1);
}

#[test]
fn revoke_after_the_access_token_expired_sends_no_bearer() {
    let h = Harness::with(no_timer);
    h.login();
    h.jump(HOUR + 1);
    h.revoke().unwrap();
    let r = &h.requests_to("/auth/revoke")[0];
    assert_eq!(r.bearer, None);
    assert_eq!(r.refresh_token(), Some(rt(1)));
}

// ----- 15. abort -----------------------------------------------------------------------------

#[test]
fn an_aborted_waiter_leaves_at_once_and_the_refresh_completes_for_the_others() {
    let h = Harness::with(no_timer);
    h.login();
    h.jump(HOUR + 1);
    h.script("/auth/refresh", Reply::server().delay(1_000));
    let (abort, trigger) = abort_pair();
    let aborted = {
        let s = h.session.clone();
        let url = s.resolve(PRODUCTS);
        h.spawn(async move { s.fetch(ApiReq::default(), url, "GET".into(), abort).await.map(|_| ()) })
    };
    let (mut abort2, trigger2) = abort_pair();
    let aborted_refresh = {
        let s = h.session.clone();
        h.spawn(async move { s.refresh(&mut abort2).await.map(|_| ()) })
    };
    let others: Vec<_> = (0..10).map(|_| h.spawn_token()).collect();
    h.run_until_stalled();
    assert_eq!(h.count("/auth/refresh"), 1);
    let t0 = h.now();
    trigger.fire();
    trigger2.fire();
    h.run_until_stalled();
    assert!(aborted.done() && aborted_refresh.done(), "released without waiting");
    assert_eq!(h.now(), t0);
    for e in [h.err(aborted.take()), h.err(aborted_refresh.take())] {
        assert_eq!((e.code(), e.name(), e.retryable()), ("ABORTED", "AbortError", false));
    }
    assert!(others.iter().all(|t| !t.done()));
    for t in h.run(join_all(others)) {
        assert_eq!(t.unwrap(), at(2));
    }
    assert_eq!(h.count("/auth/refresh"), 1);
    assert_eq!(h.count(PRODUCTS), 0);
    assert_eq!(h.info().state, Phase::Active);
}

#[test]
fn an_abort_during_the_request_or_the_backoff_is_aborted() {
    let h = Harness::new();
    h.login();
    h.script(PRODUCTS, Reply::server().delay(1_000));
    let (abort, trigger) = abort_pair();
    let s = h.session.clone();
    let url = s.resolve(PRODUCTS);
    let t = h.spawn(async move { s.fetch(ApiReq::default(), url, "GET".into(), abort).await.map(|_| ()) });
    h.run_until_stalled();
    trigger.fire();
    h.run_until_stalled();
    assert_eq!(h.err(t.take()).code(), "ABORTED");
    assert_eq!(h.pending_sleeps(), 0, "the request and its timeout were dropped");

    h.script(PRODUCTS, Reply::status(503));
    let (abort, trigger) = abort_pair();
    let s = h.session.clone();
    let url = s.resolve(PRODUCTS);
    let t = h.spawn(async move { s.fetch(ApiReq::default(), url, "GET".into(), abort).await.map(|_| ()) });
    h.advance(50); // the 503 came back; the backoff (100 ms) is running
    assert!(!t.done());
    trigger.fire();
    h.run_until_stalled();
    assert_eq!(h.err(t.take()).code(), "ABORTED");
    h.advance(1_000);
    assert_eq!(h.count(PRODUCTS), 2, "no retry after the abort");
}

#[test]
fn an_already_fired_abort_sends_nothing() {
    let h = Harness::new();
    h.login();
    let (abort, trigger) = abort_pair();
    trigger.fire();
    let e = h.err(h.fetch("GET", PRODUCTS, None, abort));
    assert_eq!(e.code(), "ABORTED");
    // The request future is created before the race but dropped unpolled: whether it counts
    // as sent is the platform's business; the session must not wait for it.
    assert_eq!(h.elapsed(), 0);
}

// ----- failed logins keep the session that was there -----------------------------------------

#[test]
fn a_failed_login_keeps_the_previous_session_and_its_timer() {
    let h = Harness::new();
    h.login();
    let bad = Credentials {
        username: USER.into(),
        password: Password::new("wrong-CANARY"),
    };
    assert_eq!(h.err(h.run(h.session.login(Some(bad)))).code(), "UNAUTHORIZED");
    assert_eq!(h.info().state, Phase::Active);
    assert_eq!(h.token().unwrap(), at(1));
    h.advance(HOUR - 300_000);
    assert_eq!(h.count("/auth/refresh"), 1, "the auto-refresh timer still works");
    assert_eq!(h.live_timers(), 1);
}

#[test]
fn a_failed_login_during_a_refresh_does_not_lose_the_rotated_pair() {
    let h = Harness::with(no_timer);
    h.login();
    h.script("/auth/refresh", Reply::server().delay(1_000));
    h.script(
        "/auth/login",
        Reply::error(401, "UnauthorizedError", "UNAUTHORIZED", "Invalid credentials").delay(10),
    );
    let s = h.session.clone();
    let refresh = h.spawn(async move { s.refresh(&mut Abort::none()).await });
    h.run_until_stalled();
    let bad = Credentials {
        username: USER.into(),
        password: Password::new("wrong-CANARY"),
    };
    assert_eq!(h.err(h.run(h.session.login(Some(bad)))).code(), "UNAUTHORIZED");
    let _ = h.run(refresh);
    h.advance(2_000);
    // The server spent rt1 and issued pair 2: the session must hold pair 2, not the dead rt1.
    assert_eq!(h.info().state, Phase::Active);
    h.jump(HOUR + 1);
    assert_eq!(h.token().unwrap(), at(3));
    assert_eq!(h.requests_to("/auth/refresh")[1].refresh_token(), Some(rt(2)));
    assert_eq!(h.server().spent_reuse, 0);
    assert_eq!(h.event_count("expired"), 0);
}

#[test]
fn revoke_during_a_retry_backoff_stops_the_request() {
    let h = Harness::new();
    h.login();
    h.script(PRODUCTS, Reply::status(503));
    let get = h.spawn_get(PRODUCTS);
    h.advance(50); // the 503 is back; the backoff runs
    assert!(!get.done());
    h.revoke().unwrap();
    h.advance(1_000);
    assert_eq!(h.err(get.take()).code(), "NOT_AUTHENTICATED");
    assert_eq!(h.count(PRODUCTS), 1, "no request after revoke");
}

// ----- listeners that call back in -----------------------------------------------------------

#[test]
fn listeners_may_call_back_into_the_session_from_any_event() {
    let h = Harness::with_storage(|o| o.retries = Some(0.0));
    let s = h.session.clone();
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let log = seen.clone();
    h.on_event(move |e| {
        // Reading state and starting work from inside a listener must not hit a borrowed
        // RefCell (a JavaScript listener runs synchronously inside emit()).
        log.borrow_mut().push((event_kind(e), s.info().state));
        if let auth_session::core::Event::Expired(_) = e {
            s.dispose();
        }
    });
    h.login(); // tokens
    h.storage().fail_put.set(true);
    h.refresh().unwrap(); // tokens + error (storage)
    h.script("/auth/refresh", Reply::status(503));
    h.advance(HOUR - 300_000); // timer refresh fails: error
    h.server().revoke_everything();
    h.advance(30_000); // timer retry is rejected: expired, and the listener disposes
    let seen = seen.borrow().clone();
    assert_eq!(
        seen.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        ["tokens", "tokens", "error", "error", "expired"]
    );
    assert_eq!(seen[0].1, Phase::Active);
    assert_eq!(seen[4].1, Phase::Expired);
    assert!(h.session.is_disposed());
    assert_eq!(h.live_timers(), 0);
    assert_eq!(h.err(h.token()).code(), "DISPOSED");
}

#[test]
fn a_listener_that_revokes_on_tokens_leaves_a_revoked_session() {
    let h = Harness::new();
    let s = h.session.clone();
    let once = std::cell::Cell::new(false);
    let pending = std::rc::Rc::new(std::cell::RefCell::new(None));
    let slot = pending.clone();
    h.on_event(move |e| {
        if let auth_session::core::Event::Tokens(_) = e {
            if !once.replace(true) {
                let s = s.clone();
                *slot.borrow_mut() = Some(Box::pin(async move { s.revoke().await }));
            }
        }
    });
    h.login();
    let revoke: std::pin::Pin<Box<dyn std::future::Future<Output = _>>> = pending.borrow_mut().take().unwrap();
    h.run(revoke).unwrap();
    assert_eq!(h.info().state, Phase::Revoked);
    assert_eq!(h.live_timers(), 0);
    assert_eq!(h.requests_to("/auth/revoke")[0].refresh_token(), Some(rt(1)));
}

#[test]
fn a_refresh_landing_while_a_login_is_out_is_taken_and_then_the_login_wins() {
    let h = Harness::with_storage(|o| o.auto_refresh = Some(false));
    h.login();
    h.script("/auth/refresh", Reply::server().delay(100));
    h.script("/auth/login", Reply::server().delay(500));
    let s = h.session.clone();
    let refresh = h.spawn(async move { s.refresh(&mut Abort::none()).await });
    h.run_until_stalled();
    let s = h.session.clone();
    let login = h.spawn(async move { s.login(Some(creds())).await });
    h.advance(200); // the refresh (pair 2) has landed, the login (pair 3) has not
    assert_eq!(
        h.stored(),
        Some(h.pair(2).record()),
        "the rotated pair replaced the spent one"
    );
    h.advance(400);
    assert_eq!(h.run(login).unwrap().state, Phase::Active);
    let _ = h.run(refresh);
    assert_eq!(h.token().unwrap(), at(3));
    assert_eq!(h.stored(), Some(h.pair(3).record()));
}

#[test]
fn a_refresh_overtaken_by_a_login_is_revoked_on_the_server() {
    let h = Harness::with(no_timer);
    h.login();
    h.script("/auth/refresh", Reply::server().delay(5_000));
    let s = h.session.clone();
    let waiter = h.spawn(async move { s.refresh(&mut Abort::none()).await });
    h.run_until_stalled();
    h.login(); // pair 3 wins; pair 2 arrives late and is nobody's
    h.advance(10_000);
    let _ = h.run(waiter);
    let revoked: Vec<_> = h
        .requests_to("/auth/revoke")
        .iter()
        .map(|r| r.refresh_token().unwrap())
        .collect();
    assert_eq!(revoked, [rt(2)], "only the orphaned pair is revoked");
    assert_eq!(h.token().unwrap(), at(3));
}

#[test]
fn a_refresh_that_lands_after_dispose_is_stored_for_the_next_process() {
    let h = Harness::with_storage(no_timer);
    h.login();
    assert!(h.stored().unwrap().contains(&rt(1)));
    h.script("/auth/refresh", Reply::server().delay(5_000));
    let s = h.session.clone();
    let waiter = h.spawn(async move { s.refresh(&mut Abort::none()).await });
    h.run_until_stalled();
    h.session.dispose();
    assert_eq!(h.err(h.run(waiter)).code(), "DISPOSED");
    h.advance(10_000);
    let stored = h.stored().expect("a record");
    assert!(
        stored.contains(&rt(2)),
        "rt(1) was spent by the refresh; the record holds its successor"
    );
    assert_eq!(h.count("/auth/revoke"), 0);
    assert_eq!(h.live_timers(), 0);
}

// ----- background refresh (Workers' waitUntil) -------------------------------------------------

fn background_get(
    h: &Harness,
) -> Task<Result<auth_session::core::session::Fetched<TestBody>, auth_session::core::AuthError>> {
    let s = h.session.clone();
    let url = s.resolve(PRODUCTS);
    h.spawn(async move {
        s.fetch_with(ApiReq::default(), url, "GET".into(), Abort::none(), true)
            .await
    })
}

#[test]
fn inside_the_margin_a_background_fetch_uses_the_current_token_and_refreshes_behind_it() {
    let h = Harness::with_storage(no_timer);
    h.login();
    assert!(
        h.session.background_work().is_none(),
        "nothing pending after a plain login's write"
    );
    h.jump(HOUR - 200_000); // inside the 300 s margin, 200 s left
    h.script("/auth/refresh", Reply::server().delay(1_000));
    let call = background_get(&h);
    h.advance(500); // the refresh answers after 1000 ms
    assert!(call.done(), "the call did not wait for the refresh");
    assert_eq!(call.take().unwrap().response.status, 200);
    assert_eq!(h.requests_to(PRODUCTS)[0].bearer.as_deref(), Some(at(1).as_str()));
    assert_eq!(h.count("/auth/refresh"), 1, "the refresh is under way");
    let work = h.session.background_work().expect("the refresh is pending");
    h.run(work);
    assert_eq!(h.token().unwrap(), at(2));
    assert!(
        h.stored().unwrap().contains(&rt(2)),
        "background work includes the storage write"
    );
    assert!(h.session.background_work().is_none());
}

#[test]
fn a_background_fetch_waits_when_the_token_has_under_five_seconds_left() {
    let h = Harness::with(no_timer);
    h.login();
    h.jump(HOUR - 4_000);
    h.script("/auth/refresh", Reply::server().delay(1_000));
    let call = background_get(&h);
    h.run_until_stalled();
    assert!(!call.done(), "waits for the refresh");
    let r = h.run(call).unwrap();
    assert_eq!(r.response.status, 200);
    assert_eq!(h.requests_to(PRODUCTS)[0].bearer.as_deref(), Some(at(2).as_str()));
}
