//! Token storage: what is written when, `restore()`, failures of the storage itself, and two
//! processes sharing one record.

mod common;

use auth_session::core::{Abort, Phase};
use common::*;

#[test]
fn login_writes_the_record_refresh_rewrites_it_and_revoke_deletes_it() {
    let h = Harness::with_storage(|_| {});
    h.login();
    assert_eq!(h.storage_key(), "auth-session:https://api.test");
    assert_eq!(h.storage().puts.get(), 1);
    assert_eq!(h.stored(), Some(h.pair(1).record()));

    h.refresh().unwrap();
    assert_eq!(h.storage().puts.get(), 2);
    assert_eq!(h.stored(), Some(h.pair(2).record()));

    h.advance(HOUR - 300_000); // the timer's refresh is stored too
    assert_eq!(h.stored(), Some(h.pair(3).record()));

    h.revoke().unwrap();
    assert_eq!(h.storage().deletes.get(), 1);
    assert_eq!(h.stored(), None);
    assert!(h.storage().map.borrow().is_empty());
}

#[test]
fn the_storage_key_option_is_used() {
    let h = Harness::with_storage(|o| o.storage_key = Some("tenant-42".into()));
    h.login();
    assert!(h.storage().get_now("tenant-42").is_some());
    assert_eq!(h.storage().map.borrow().len(), 1);
}

#[test]
fn the_record_is_written_after_the_login_resolves_and_a_failed_write_is_an_error_event() {
    let h = Harness::with_storage(|_| {});
    h.storage().fail_put.set(true);
    let info = h.login();
    assert_eq!(info.state, Phase::Active, "a storage failure does not fail the login");
    let errors = h.error_events();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].code(), "STORAGE_ERROR");
    assert_eq!(h.stored(), None);
}

#[test]
fn restore_takes_a_stored_session() {
    let h = Harness::with_storage(|_| {});
    let pair = h.server().issue(EPOCH - 10 * 60_000); // issued 10 minutes ago by another process
    h.storage().map.borrow_mut().insert(h.storage_key(), pair.record());
    let info = h.run(h.session.restore()).unwrap().unwrap();
    assert_eq!(info.state, Phase::Active);
    assert_eq!(info.client_id, Some(123_456));
    assert_eq!(info.access_expires_at, Some(pair.access_expires_at));
    assert_eq!(h.total_requests(), 0, "restoring sends nothing");
    assert_eq!(h.event_count("tokens"), 1);
    assert_eq!(h.timer_delays(), [HOUR - 10 * 60_000 - 300_000]);
    assert_eq!(h.token().unwrap(), pair.access);
    assert_eq!(h.storage().puts.get(), 0, "restoring does not write back");
    // It refreshes when due, with the stored refresh token.
    h.advance(HOUR - 10 * 60_000 - 300_000);
    assert_eq!(h.requests_to("/auth/refresh")[0].refresh_token(), Some(pair.refresh));
    assert_eq!(h.stored(), Some(h.pair(2).record()));
}

#[test]
fn restore_of_an_expired_access_token_refreshes_at_once() {
    let h = Harness::with_storage(|_| {});
    let pair = h.server().issue(EPOCH - 2 * HOUR);
    h.storage().map.borrow_mut().insert(h.storage_key(), pair.record());
    assert_eq!(h.run(h.session.restore()).unwrap().unwrap().state, Phase::Active);
    assert_eq!(h.timer_delays(), [0]);
    h.advance(0);
    assert_eq!(h.count("/auth/refresh"), 1);
    assert_eq!(h.token().unwrap(), h.pair(2).access);
    assert_eq!(h.count("/auth/refresh"), 1);
}

#[test]
fn restore_ignores_a_record_whose_refresh_token_expired() {
    let h = Harness::with_storage(|_| {});
    let pair = h.server().issue(EPOCH - 8 * DAY);
    h.storage().map.borrow_mut().insert(h.storage_key(), pair.record());
    assert_eq!(h.run(h.session.restore()).unwrap(), None);
    assert_eq!(h.info().state, Phase::Anonymous);
    assert_eq!(h.live_timers(), 0);
    assert_eq!(h.total_requests(), 0);
    assert_eq!(h.err(h.token()).code(), "NOT_AUTHENTICATED");
}

#[test]
fn restore_without_a_record_is_none() {
    let h = Harness::with_storage(|_| {});
    assert_eq!(h.run(h.session.restore()).unwrap(), None);
    assert_eq!(h.storage().gets.get(), 1);
}

#[test]
fn restore_of_a_corrupt_record_is_a_storage_error() {
    for bad in [
        "{not json",
        "{}",
        r#"{"v":2,"access_token":"a"}"#,
        r#"{"v":1,"access_token":"a b","refresh_token":"r","access_expires_at":1,"refresh_expires_at":2}"#,
    ] {
        let h = Harness::with_storage(|_| {});
        h.storage().map.borrow_mut().insert(h.storage_key(), bad.to_owned());
        let e = h.err(h.run(h.session.restore()));
        assert_eq!((e.code(), e.name()), ("STORAGE_ERROR", "StorageError"), "{bad}");
        assert!(!e.message().contains("a b"), "the record is not quoted");
        assert_eq!(h.info().state, Phase::Anonymous);
    }
}

#[test]
fn restore_without_storage_is_a_config_error() {
    let h = Harness::new();
    let e = h.err(h.run(h.session.restore()));
    assert_eq!(e.code(), "CONFIG_ERROR");
}

#[test]
fn a_failing_storage_get_is_a_storage_error() {
    let h = Harness::with_storage(|_| {});
    h.storage().fail_get.set(true);
    assert_eq!(h.err(h.run(h.session.restore())).code(), "STORAGE_ERROR");
}

#[test]
fn revoke_with_a_failing_delete_still_clears_and_revokes_on_the_server() {
    let h = Harness::with_storage(|_| {});
    h.login();
    h.storage().fail_delete.set(true);
    let e = h.err(h.revoke());
    assert_eq!(e.code(), "STORAGE_ERROR");
    assert_eq!(h.info().state, Phase::Revoked);
    assert_eq!(h.count("/auth/revoke"), 1);
    assert_eq!(h.err(h.token()).code(), "NOT_AUTHENTICATED");
}

#[test]
fn restore_after_dispose_is_disposed() {
    let h = Harness::with_storage(|_| {});
    h.session.dispose();
    assert_eq!(h.err(h.run(h.session.restore())).code(), "DISPOSED");
}

#[test]
fn another_process_rotated_the_token_the_session_adopts_the_stored_pair() {
    let h = Harness::with_storage(|o| o.auto_refresh = Some(false));
    h.login(); // process A: pair 1, stored
    let b = h.new_session(|o| o.auto_refresh = Some(false));
    assert!(h.run(b.restore()).unwrap().is_some());
    h.jump(HOUR - 100_000); // both are inside the margin
    h.run(b.refresh(&mut Abort::none())).unwrap(); // process B spends rt1: pair 2, stored
    assert_eq!(h.stored(), Some(h.pair(2).record()));
    h.clear_events();

    // Process A refreshes with rt1, which the server answers 401; storage has pair 2.
    let token = h.token().unwrap();
    assert_eq!(token, at(2));
    let refreshes: Vec<_> = h
        .requests_to("/auth/refresh")
        .iter()
        .map(|r| r.refresh_token().unwrap())
        .collect();
    assert_eq!(refreshes, [rt(1), rt(1)], "B's refresh, then A's (answered 401)");
    assert_eq!(h.event_count("expired"), 0);
    assert_eq!(h.info().state, Phase::Active);
    assert_eq!(h.get(PRODUCTS).unwrap().response.status, 200);
    assert_eq!(h.requests_to(PRODUCTS)[0].bearer.as_deref(), Some(at(2).as_str()));
    // A's next refresh uses the adopted refresh token.
    h.refresh().unwrap();
    assert_eq!(h.requests_to("/auth/refresh")[2].refresh_token(), Some(rt(2)));
    assert_eq!(h.server().spent_reuse, 1, "only A's unavoidable 401");
}

#[test]
fn a_refresh_401_with_nothing_newer_in_storage_ends_the_session() {
    let h = Harness::with_storage(|o| o.auto_refresh = Some(false));
    h.login();
    h.server().revoke_everything();
    h.jump(HOUR);
    assert_eq!(h.err(h.token()).code(), "SESSION_EXPIRED");
    assert_eq!(h.event_count("expired"), 1);
    // The stored record holds the same (rejected) pair: it is not adopted.
    assert_eq!(h.info().state, Phase::Expired);
}

#[test]
fn a_stored_pair_whose_refresh_token_expired_is_not_adopted() {
    let h = Harness::with_storage(|o| o.auto_refresh = Some(false));
    h.login();
    let stale = h.server().issue(EPOCH - 8 * DAY);
    h.storage().map.borrow_mut().insert(h.storage_key(), stale.record());
    h.server().revoke_everything();
    h.jump(HOUR);
    assert_eq!(h.err(h.token()).code(), "SESSION_EXPIRED");
}

#[test]
fn an_older_stored_pair_is_not_adopted_after_a_401() {
    let h = Harness::with_storage(|o| o.auto_refresh = Some(false));
    h.login(); // pair 1 stored
    h.jump(10 * 60_000);
    h.storage().fail_put.set(true);
    h.refresh().unwrap(); // pair 2 held, the record still holds pair 1 (rt1, spent)
    assert_eq!(h.stored(), Some(h.pair(1).record()));
    h.server().revoke_everything();
    h.jump(HOUR);
    assert_eq!(h.err(h.token()).code(), "SESSION_EXPIRED");
    let sent: Vec<_> = h
        .requests_to("/auth/refresh")
        .iter()
        .map(|r| r.refresh_token().unwrap())
        .collect();
    assert_eq!(sent, [rt(1), rt(2)], "rt1 is never sent again");
    assert_eq!(h.server().spent_reuse, 0);
    assert_eq!(h.event_count("expired"), 1);
}
