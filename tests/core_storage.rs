//! Token storage: what is written when, `restore()`, adoption of a pair another instance
//! stored, and storage calls that fail, return garbage or never answer.
// Native only: the harness reads JSON with the core's native reader.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use auth_session::core::machine::{Endpoint, Need, Outcome, Output, Reason, Step, StorageOp, StorageReply};
use auth_session::core::{Cause, Phase};
use common::*;

const KEY: &str = "auth-session:https://api.test";

fn storage_run(f: impl FnOnce(&mut auth_session::core::Options)) -> Run {
    Run::with_storage(config(f))
}

#[test]
fn login_writes_the_record_refresh_rewrites_it_and_revoke_deletes_it() {
    let mut r = storage_run(|_| {});
    let f = r.login(EPOCH);
    let p1 = Pair::issued(1, EPOCH);
    r.answer(EPOCH, ok(&p1));
    // The pair is in at once; the login reads the record's version before it writes.
    assert_eq!(r.m.info(), p1.info(Phase::Active));
    assert!(matches!(&r.storage_ops()[..], [StorageOp::Get { key, .. }] if key == KEY));
    assert_eq!(r.outcome(f), None, "the login waits for its read and write");
    r.answer_get(EPOCH, StorageReply::Empty);
    let ops = r.storage_ops();
    assert!(
        matches!(&ops[..], [StorageOp::Put { key, value, .. }] if key == KEY && *value == p1.record()),
        "{ops:?}"
    );
    assert_eq!(r.outcome(f), None, "the login waits for its write");
    r.answer_put(EPOCH, StorageReply::Empty);
    assert_eq!(r.settled(f), Outcome::Done);

    // A refresh looks first: the record holds our own pair, so it refreshes.
    let g = wait(r.refresh(EPOCH + 1));
    assert!(matches!(&r.storage_ops()[..], [StorageOp::Get { key, .. }] if key == KEY));
    r.looked(EPOCH + 1, p1.stored());
    let p2 = Pair::issued(2, EPOCH + 1);
    r.answer(EPOCH + 1, ok(&p2));
    r.answer_put(EPOCH + 1, StorageReply::Empty);
    assert_eq!(r.settled(g), Outcome::Done);

    let t = r.fire(); // the timer's refresh looks and is stored too
    r.looked(t, p2.stored());
    let p3 = Pair::issued(3, t);
    r.answer(t, ok(&p3));
    r.answer_put(t, StorageReply::Empty);
    assert_eq!(r.puts(), [p1.record(), p2.record(), p3.record()]);

    let h = wait(r.revoke(t));
    assert!(matches!(&r.storage_ops()[..], [StorageOp::Delete { key, .. }] if key == KEY));
    assert_eq!(
        r.open_send().endpoint,
        Endpoint::Revoke,
        "the delete and the request run together"
    );
    r.answer_delete(t, StorageReply::Empty);
    assert_eq!(r.outcome(h), None, "the request is still out");
    r.answer(t, reply(200, ""));
    assert_eq!(r.settled(h), Outcome::Done);
    assert_eq!(r.storage_ops(), []);
    // Every storage call, in order: versioning read and write, then look and write twice,
    // then the delete.
    let calls: Vec<_> = r
        .all_storage_ops()
        .iter()
        .map(|op| {
            let key = match op {
                StorageOp::Get { key, .. } | StorageOp::Put { key, .. } | StorageOp::Delete { key, .. } => key,
                other => panic!("{other:?}"),
            };
            assert_eq!(key, KEY);
            op_kind(op)
        })
        .collect();
    assert_eq!(calls, ["get", "put", "get", "put", "get", "put", "delete"]);
}

#[test]
fn the_storage_key_option_is_used() {
    // As given, with or without credentials (no account is appended to a chosen key).
    for configured in [false, true] {
        let mut r = storage_run(|o| {
            o.storage_key = Some("tenant-42".into());
            if configured {
                with_credentials(o);
            }
        });
        r.login_with(EPOCH, (!configured).then(creds));
        r.answer(EPOCH, ok(&Pair::issued(1, EPOCH)));
        assert!(matches!(&r.storage_ops()[..], [StorageOp::Get { key, .. }] if key == "tenant-42"));
        r.answer_get(EPOCH, StorageReply::Empty);
        assert!(matches!(&r.storage_ops()[..], [StorageOp::Put { key, .. }] if key == "tenant-42"));
        r.answer_put(EPOCH, StorageReply::Empty);
        wait(r.refresh(EPOCH + 1));
        assert!(matches!(&r.storage_ops()[..], [StorageOp::Get { key, .. }] if key == "tenant-42"));
    }
}

#[test]
fn a_failed_write_is_an_error_event_and_the_login_still_succeeds() {
    let mut r = storage_run(|_| {});
    let f = r.login(EPOCH);
    r.answer(EPOCH, ok(&Pair::issued(1, EPOCH)));
    r.answer_get(EPOCH, StorageReply::Empty);
    r.answer_put(
        EPOCH,
        StorageReply::Failed(Some(Cause::new("QuotaExceededError", None))),
    );
    assert_eq!(r.settled(f), Outcome::Done, "a storage failure does not fail the login");
    assert_eq!(r.m.result().unwrap().state, Phase::Active);
    let errors = r.errors();
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].code(), errors[0].name()), ("STORAGE_ERROR", "StorageError"));
    assert_eq!(errors[0].cause().map(|c| c.name.as_str()), Some("QuotaExceededError"));
}

#[test]
fn a_write_that_never_answers_lets_the_login_settle_at_the_timeout() {
    // Rewrite defect: a storage adapter that never settles must not hold the login.
    let mut r = storage_run(|_| {});
    let f = r.login(EPOCH);
    r.answer(EPOCH + 100, ok(&Pair::issued(1, EPOCH)));
    r.answer_get(EPOCH + 100, StorageReply::Empty);
    let put = match &r.storage_ops()[..] {
        [op @ StorageOp::Put { .. }] => op_id(op),
        other => panic!("{other:?}"),
    };
    assert_eq!(r.deadline(), Some(EPOCH + 100 + TIMEOUT));
    assert_eq!(r.timeout(EPOCH + 100 + TIMEOUT - 1), []);
    let out = r.timeout(EPOCH + 100 + TIMEOUT);
    assert!(out.contains(&Output::Cancel(put)));
    assert_eq!(r.settled(f), Outcome::Done);
    let errors = r.errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].code(), "STORAGE_ERROR");
    assert_eq!(r.storage_ops(), []);
    assert_eq!(r.token_now(EPOCH + 100 + TIMEOUT).unwrap(), at(1));
    // The late answer changes nothing.
    assert_eq!(r.answer_storage(EPOCH + DAY, put, StorageReply::Empty), []);
}

// ----- restore -------------------------------------------------------------------------------

#[test]
fn restore_takes_a_stored_session() {
    let mut r = storage_run(|_| {});
    let pair = Pair::issued(7, EPOCH - 10 * MINUTE); // issued 10 minutes ago by another process
    let f = wait(r.restore(EPOCH));
    assert!(matches!(&r.storage_ops()[..], [StorageOp::Get { key, .. }] if key == KEY));
    r.answer_get(EPOCH, pair.stored());
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.m.info(), pair.info(Phase::Active));
    assert_eq!(r.sends().len(), 0, "restoring sends nothing");
    assert_eq!(r.token_reasons(), [Reason::Restore]);
    assert_eq!(r.deadline(), Some(EPOCH + HOUR - 10 * MINUTE - MARGIN));
    assert_eq!(r.token_now(EPOCH).unwrap(), at(7));
    assert_eq!(r.puts().len(), 0, "restoring does not write back");
    // It refreshes when due, with the stored refresh token (the record still holds it),
    // and stores the new pair one version above the restored one.
    let t = r.fire();
    r.looked(t, pair.stored());
    assert_eq!(body_token(&r.open_send()), Some(rt(7)));
    r.answer(t, ok(&Pair::issued(8, t)));
    assert_eq!(r.puts(), [Pair::issued(8, t).record()]);
    assert_eq!(record_version(&r.puts()[0]), 8);
}

#[test]
fn restore_of_an_expired_access_token_refreshes_at_once() {
    let mut r = storage_run(|_| {});
    let f = wait(r.restore(EPOCH));
    r.answer_get(EPOCH, Pair::issued(1, EPOCH - 2 * HOUR).stored());
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.m.info().state, Phase::Active);
    assert_eq!(r.deadline(), Some(EPOCH - HOUR), "due already");
    r.timeout(EPOCH);
    // Callers join the refresh while it looks and while it is sent.
    let f = wait_token(r.ask(EPOCH, Need::Strict));
    r.looked(EPOCH, Pair::issued(1, EPOCH - 2 * HOUR).stored());
    assert_eq!(body_token(&r.open_send()), Some(rt(1)));
    assert_eq!(wait_token(r.ask(EPOCH, Need::Strict)), f);
    assert_eq!(wait_token(r.ask(EPOCH, Need::Lenient)), f);
    assert_eq!(r.count(Endpoint::Refresh), 1);
}

#[test]
fn restore_ignores_a_record_whose_refresh_token_expired() {
    let mut r = storage_run(|_| {});
    let f = wait(r.restore(EPOCH));
    r.answer_get(EPOCH, Pair::issued(1, EPOCH - 8 * DAY).stored());
    assert_eq!(r.settled(f), Outcome::Nothing);
    assert_eq!(r.m.info().state, Phase::Anonymous);
    assert_eq!(r.deadline(), None);
    assert_eq!(r.sends().len(), 0);
    assert_eq!(r.token_now(EPOCH).unwrap_err().code(), "NOT_AUTHENTICATED");
}

#[test]
fn restore_without_a_record_is_nothing() {
    let mut r = storage_run(|_| {});
    let f = wait(r.restore(EPOCH));
    r.answer_get(EPOCH, StorageReply::Empty);
    assert_eq!(r.settled(f), Outcome::Nothing);
    assert_eq!(r.all_storage_ops().len(), 1);
    assert_eq!(r.event_count("error"), 0);
}

#[test]
fn restore_of_a_garbage_record_is_nothing_and_an_error_event() {
    // (A record of the previous format, v1, is not garbage: see core_binding.rs.)
    let records = [
        "{}",
        r#"{"v":2,"access_token":"a"}"#,
        r#"{"v":2,"origin":"https://api.test","account":null,"version":1,"access_token":"a b","refresh_token":"r","access_expires_at":1,"refresh_expires_at":2,"client_id":null}"#,
        r#"{"v":2,"origin":"https://api.test","account":null,"version":-1,"access_token":"a","refresh_token":"r","access_expires_at":1,"refresh_expires_at":2,"client_id":null}"#,
        r#"{"v":2,"account":null,"version":1,"access_token":"a","refresh_token":"r","access_expires_at":1,"refresh_expires_at":2,"client_id":null}"#,
        r#"{"v":3,"origin":"https://api.test","account":null,"version":1,"access_token":"a","refresh_token":"r","access_expires_at":1,"refresh_expires_at":2,"client_id":null}"#,
        "null",
        "[1,2]",
    ];
    let replies = records
        .iter()
        .map(|t| StorageReply::Record(parse(t)))
        .chain([StorageReply::Garbage]);
    for stored in replies {
        let mut r = storage_run(|_| {});
        let f = wait(r.restore(EPOCH));
        r.answer_get(EPOCH, stored.clone());
        assert_eq!(r.settled(f), Outcome::Nothing, "{stored:?}");
        assert_eq!(r.m.info().state, Phase::Anonymous);
        let errors = r.errors();
        assert_eq!(errors.len(), 1, "{stored:?}");
        assert_eq!(errors[0].code(), "STORAGE_ERROR");
        assert!(!errors[0].message().contains("a b"), "the record is not quoted");
    }
}

#[test]
fn restore_without_storage_is_a_config_error_and_after_dispose_disposed() {
    let mut r = Run::new(config(|_| {}));
    assert_eq!(fail(r.restore(EPOCH)).code(), "CONFIG_ERROR");
    let mut r = storage_run(|_| {});
    r.dispose();
    assert_eq!(fail(r.restore(EPOCH)).code(), "DISPOSED");
    assert_eq!(r.all_storage_ops().len(), 0);
}

#[test]
fn a_failing_storage_get_is_a_storage_error() {
    let mut r = storage_run(|_| {});
    let f = wait(r.restore(EPOCH));
    r.answer_get(EPOCH, StorageReply::Failed(Some(Cause::new("Error", Some("EIO")))));
    let e = r.failure(f);
    assert_eq!(
        (e.code(), e.name(), e.retryable()),
        ("STORAGE_ERROR", "StorageError", false)
    );
    assert_eq!(e.cause().and_then(|c| c.code.as_deref()), Some("EIO"));
    assert_eq!(r.m.info().state, Phase::Anonymous);
}

#[test]
fn a_restore_whose_read_never_answers_fails_at_the_timeout() {
    // Rewrite defect: a storage adapter that never settles must not hold restore().
    let mut r = storage_run(|_| {});
    let f = wait(r.restore(EPOCH));
    let get = op_id(&r.storage_ops()[0]);
    assert_eq!(r.deadline(), Some(EPOCH + TIMEOUT));
    let out = r.timeout(EPOCH + TIMEOUT);
    assert!(out.contains(&Output::Cancel(get)));
    assert_eq!(r.failure(f).code(), "STORAGE_ERROR");
    assert_eq!(r.deadline(), None);
    assert_eq!(r.answer_storage(EPOCH + DAY, get, Pair::issued(1, EPOCH).stored()), []);
    assert_eq!(r.m.info().state, Phase::Anonymous, "the late record is not installed");
}

#[test]
fn concurrent_restores_share_one_read() {
    let mut r = storage_run(|_| {});
    let f = wait(r.restore(EPOCH));
    assert_eq!(wait(r.restore(EPOCH + 1)), f);
    assert_eq!(r.all_storage_ops().len(), 1);
    r.answer_get(EPOCH + 2, Pair::issued(1, EPOCH).stored());
    assert_eq!(r.settled(f), Outcome::Done);
}

#[test]
fn a_restore_read_that_answers_after_a_login_does_not_install_the_old_pair() {
    // Rewrite defect, both orders: the restore began before the login (the login makes it
    // moot at once), or during it (the login's pair lands first).
    let old = Pair::issued(1, EPOCH - MINUTE);

    let mut r = storage_run(|_| {});
    let f = wait(r.restore(EPOCH));
    let get = op_id(&r.storage_ops()[0]);
    let g = r.login(EPOCH + 1);
    assert!(r.cancelled().contains(&get));
    assert_eq!(r.settled(f), Outcome::Nothing);
    r.answer(EPOCH + 2, ok(&Pair::issued(2, EPOCH + 2)));
    r.answer_get(EPOCH + 2, old.stored()); // the login's versioning read
    r.answer_put(EPOCH + 2, StorageReply::Empty);
    assert_eq!(r.settled(g), Outcome::Done);
    assert_eq!(r.answer_storage(EPOCH + 3, get, old.stored()), []);
    assert_eq!(r.token_now(EPOCH + 3).unwrap(), at(2));

    let mut r = storage_run(|_| {});
    let g = r.login(EPOCH);
    let f = wait(r.restore(EPOCH + 1));
    let get = op_id(&r.storage_ops()[0]);
    r.answer(EPOCH + 2, ok(&Pair::issued(2, EPOCH + 2)));
    r.answer_storage(EPOCH + 3, get, old.stored());
    assert_eq!(r.settled(f), Outcome::Nothing);
    r.answer_get(EPOCH + 3, old.stored()); // the login's versioning read
    r.answer_put(EPOCH + 3, StorageReply::Empty);
    assert_eq!(r.settled(g), Outcome::Done);
    assert_eq!(r.token_now(EPOCH + 3).unwrap(), at(2));
    assert_eq!(r.token_reasons(), [Reason::Login]);
    // Stored above the version the read saw.
    assert_eq!(r.puts(), [Pair::issued(2, EPOCH + 2).record()]);
}

// ----- revoke and storage --------------------------------------------------------------------

#[test]
fn revoke_with_a_failing_delete_still_clears_and_revokes_on_the_server() {
    let mut r = storage_run(|_| {});
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let f = wait(r.revoke(EPOCH));
    r.answer_delete(EPOCH, StorageReply::Failed(None));
    assert_eq!(r.outcome(f), None);
    r.answer(EPOCH, reply(200, ""));
    assert_eq!(r.failure(f).code(), "STORAGE_ERROR");
    assert_eq!(r.event_count("error"), 1);
    assert_eq!(r.m.info().state, Phase::Revoked);
    assert_eq!(r.count(Endpoint::Revoke), 1);
    assert_eq!(r.token_now(EPOCH).unwrap_err().code(), "NOT_AUTHENTICATED");
}

#[test]
fn revoke_reaches_the_server_and_settles_when_the_delete_never_answers() {
    // Rewrite defect: a hanging storage adapter must not keep the revoke from the server.
    let mut r = storage_run(|_| {});
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let f = wait(r.revoke(EPOCH));
    let delete = op_id(&r.storage_ops()[0]);
    let req = r.open_send();
    assert_eq!((req.endpoint, body_token(&req)), (Endpoint::Revoke, Some(rt(1))));
    r.answer(EPOCH + 50, reply(200, ""));
    assert_eq!(r.outcome(f), None, "waits at most the timeout for the delete");
    assert_eq!(r.deadline(), Some(EPOCH + TIMEOUT));
    let out = r.timeout(EPOCH + TIMEOUT);
    assert!(out.contains(&Output::Cancel(delete)));
    assert_eq!(r.failure(f).code(), "STORAGE_ERROR");
    assert_eq!(r.event_count("error"), 1);
    assert_eq!(r.deadline(), None);
    assert_eq!(r.answer_storage(EPOCH + DAY, delete, StorageReply::Empty), []);

    // The request hangs too (and is not retried): both are given up at the deadline.
    let mut r = storage_run(|o| o.retries = Some(0.0));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let f = wait(r.revoke(EPOCH));
    r.timeout(EPOCH + TIMEOUT);
    let e = r.failure(f);
    assert!(matches!(e.code(), "STORAGE_ERROR" | "TIMEOUT"), "{e}");
    assert_eq!(r.storage_ops(), []);
    assert!(!r.has_open_send());
}

#[test]
fn a_restore_during_revoke_does_not_bring_the_revoked_pair_back() {
    // The read may see the record before the delete lands (or the delete may fail): the
    // revoked tokens must not come back either way.
    let p1 = Pair::issued(1, EPOCH);
    let mut r = storage_run(|_| {});
    r.logged_in(EPOCH, &p1);
    let f = wait(r.revoke(EPOCH));
    let g = wait(r.restore(EPOCH + 1));
    r.answer_get(EPOCH + 2, p1.stored());
    assert_eq!(r.settled(g), Outcome::Nothing);
    r.answer_delete(EPOCH + 3, StorageReply::Empty);
    r.answer(EPOCH + 3, reply(200, ""));
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.m.info().state, Phase::Revoked);

    let mut r = storage_run(|_| {});
    r.logged_in(EPOCH, &p1);
    let f = wait(r.revoke(EPOCH));
    r.answer_delete(EPOCH, StorageReply::Failed(None));
    r.answer(EPOCH, reply(200, ""));
    assert_eq!(r.failure(f).code(), "STORAGE_ERROR");
    let g = wait(r.restore(EPOCH + 1));
    r.answer_get(EPOCH + 1, p1.stored());
    assert_eq!(r.settled(g), Outcome::Nothing, "the record the delete left is revoked");
    assert_eq!(r.token_now(EPOCH + 1).unwrap_err().code(), "NOT_AUTHENTICATED");
    assert_eq!(r.sends().len(), 2, "login and revoke");
}

// ----- adoption after a 401 ------------------------------------------------------------------

#[test]
fn another_process_rotated_the_token_the_session_adopts_the_stored_pair() {
    let mut r = storage_run(no_timer);
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let t = EPOCH + HOUR - 100 * SECOND;
    // Process B spent rt1 and stored pair 2 a moment ago.
    let p1 = Pair::issued(1, EPOCH);
    let p2 = Pair::issued(2, t - SECOND);
    let flights: Vec<_> = (0..3).map(|_| wait_token(r.ask(t, Need::Strict))).collect();
    // The look still saw pair 1 (B stored pair 2 just after): rt1 goes out and is refused.
    r.looked(t, p1.stored());
    r.answer(t, unauthorized());
    assert_eq!(r.outcome(flights[0]), None, "looking in storage first");
    r.answer_get(t, p2.stored());
    assert_eq!(r.settled(flights[0]), Outcome::Done);
    for f in flights {
        assert_eq!(ready(&r.token(t, Need::Strict, waited(&r.settled(f)), 1)), at(2));
    }
    assert_eq!(r.token_reasons(), [Reason::Login, Reason::Adopt]);
    assert_eq!(r.event_count("expired"), 0);
    assert_eq!(r.m.info().state, Phase::Active);
    assert_eq!(r.puts().len(), 1, "an adopted pair is not written back");
    // The next refresh uses the adopted refresh token.
    wait(r.refresh(t + 1));
    r.looked(t + 1, p2.stored());
    assert_eq!(r.refresh_tokens_sent(), [rt(1), rt(2)]);
}

#[test]
fn a_refresh_401_with_nothing_newer_in_storage_ends_the_session() {
    let p1 = Pair::issued(1, EPOCH);
    for stored in [
        p1.stored(),                               // the same (rejected) pair
        Pair::issued(9, EPOCH - 8 * DAY).stored(), // a pair whose refresh token expired
        StorageReply::Empty,
        StorageReply::Garbage,
        StorageReply::Failed(None),
    ] {
        let mut r = storage_run(no_timer);
        r.logged_in(EPOCH, &p1);
        let t = EPOCH + HOUR;
        let f = wait_token(r.ask(t, Need::Strict));
        r.looked(t, p1.stored());
        r.answer(t, unauthorized());
        r.answer_get(t, stored.clone());
        assert_eq!(r.failure(f).code(), "SESSION_EXPIRED", "{stored:?}");
        assert_eq!(r.event_count("expired"), 1);
        assert_eq!(r.m.info().state, Phase::Expired);
    }
}

#[test]
fn an_adoption_read_that_never_answers_ends_the_session_at_the_timeout_or_logs_in_again() {
    let mut r = storage_run(|o| {
        no_timer(o);
        with_credentials(o);
    });
    let p1 = Pair::issued(1, EPOCH);
    r.logged_in(EPOCH, &p1);
    let t = EPOCH + HOUR;
    let f = wait_token(r.ask(t, Need::Strict));
    r.looked(t, p1.stored());
    r.answer(t, unauthorized());
    let get = op_id(&r.storage_ops()[0]);
    assert_eq!(r.deadline(), Some(t + TIMEOUT));
    let out = r.timeout(t + TIMEOUT);
    assert!(out.contains(&Output::Cancel(get)));
    assert_eq!(r.open_send().endpoint, Endpoint::Login, "credentials: a re-login");
    r.answer(t + TIMEOUT, ok(&Pair::issued(2, t + TIMEOUT)));
    r.answer_get(t + TIMEOUT, p1.stored());
    r.answer_put(t + TIMEOUT, StorageReply::Empty);
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.event_count("expired"), 0);
    assert_eq!(r.errors().len(), 1, "the read that never answered");
    assert_eq!(r.puts()[1], Pair::issued(2, t + TIMEOUT).record());
}

#[test]
fn an_older_stored_pair_is_not_adopted_after_a_401() {
    let mut r = storage_run(no_timer);
    let p1 = Pair::issued(1, EPOCH);
    r.logged_in(EPOCH, &p1);
    let t = EPOCH + 10 * MINUTE;
    let f = wait(r.refresh(t));
    r.looked(t, p1.stored());
    r.answer(t, ok(&Pair::issued(2, t)));
    r.answer_put(t, StorageReply::Failed(None)); // pair 2 held, the record still holds pair 1
    assert_eq!(r.settled(f), Outcome::Done);
    let t = t + HOUR;
    let g = wait_token(r.ask(t, Need::Strict));
    r.looked(t, p1.stored()); // older than the pair held: not adopted
    r.answer(t, unauthorized());
    r.answer_get(t, p1.stored());
    assert_eq!(r.failure(g).code(), "SESSION_EXPIRED");
    assert_eq!(r.refresh_tokens_sent(), [rt(1), rt(2)], "rt1 is never sent again");
    assert_eq!(r.event_count("expired"), 1);
}

#[test]
fn a_restore_and_its_answer_while_a_refresh_is_out_share_nothing_but_the_session() {
    // restore() during a refresh: the read and the request are independent; the rotated
    // pair from the server is the one kept.
    let mut r = storage_run(no_timer);
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let f = wait(r.refresh(EPOCH + 1));
    r.looked(EPOCH + 1, Pair::issued(1, EPOCH).stored());
    let g = wait(r.restore(EPOCH + 1));
    assert_ne!(f, g);
    r.answer(EPOCH + 2, ok(&Pair::issued(2, EPOCH + 2)));
    r.answer_get(EPOCH + 3, Pair::issued(1, EPOCH).stored());
    assert_eq!(r.settled(g), Outcome::Nothing, "the refresh made the read moot");
    r.answer_put(EPOCH + 3, StorageReply::Empty);
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.token_now(EPOCH + 3).unwrap(), at(2));
    assert_eq!(r.rejoin(), Step::Ready);
}

#[test]
fn a_stale_record_is_never_restored_over_newer_tokens() {
    // A store that lost our writes (or an eventually consistent one) hands back pair 1
    // after five rotations: its refresh token was spent long ago and must not be installed,
    // whether the session is active or ended since.
    for end_first in [false, true] {
        let p1 = Pair::issued(1, EPOCH);
        let mut r = storage_run(no_timer);
        r.logged_in(EPOCH, &p1);
        let mut t = EPOCH;
        for n in 2..=6 {
            t += MINUTE;
            let f = wait(r.refresh(t));
            r.looked(t, p1.stored()); // pair 1, version 1: older than the pair held
            r.answer(t, ok(&Pair::issued(n, t)));
            r.answer_put(t, StorageReply::Failed(None));
            assert_eq!(r.settled(f), Outcome::Done);
        }
        if end_first {
            let f = wait(r.refresh(t));
            r.looked(t, p1.stored());
            r.answer(t, unauthorized());
            r.answer_get(t, StorageReply::Empty);
            assert_eq!(r.failure(f).code(), "SESSION_EXPIRED");
        }
        let g = wait(r.restore(t));
        r.answer_get(t, p1.stored());
        assert_eq!(r.settled(g), Outcome::Nothing, "end_first {end_first}");
        let _ = r.refresh(t);
        if !r.storage_ops().is_empty() {
            r.looked(t, p1.stored());
            assert_eq!(r.token_reasons().last(), Some(&Reason::Refresh), "not adopted");
        }
        assert!(
            !r.refresh_tokens_sent()[1..].contains(&rt(1)),
            "end_first {end_first}: a spent refresh token was sent again"
        );
    }
}

#[test]
fn a_refresh_token_rejected_during_a_superseded_adoption_is_never_sent_again() {
    // A 401, then a login that replaces the adoption read, then fails: the session still
    // holds the rejected pair, and the next refresh must not send its token.
    let mut r = storage_run(no_timer);
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let f = wait(r.refresh(EPOCH + 1));
    r.looked(EPOCH + 1, Pair::issued(1, EPOCH).stored());
    r.answer(EPOCH + 1, unauthorized());
    let g = r.login(EPOCH + 2);
    assert_eq!(r.settled(f), Outcome::Again);
    r.answer(EPOCH + 2, status(503));
    let t = r.fire();
    r.answer(t, status(503));
    let t = r.fire();
    r.answer(t, status(503));
    assert_eq!(r.failure(g).code(), "SERVER_ERROR");
    assert_eq!(r.m.info().state, Phase::Active);

    let h = wait(r.refresh(t));
    assert_eq!(r.refresh_tokens_sent(), [rt(1)], "rt1 was rejected: not sent again");
    // No look: the held token is known spent, so this is the adoption read after a 401.
    r.answer_get(t, StorageReply::Empty);
    assert_eq!(r.failure(h).code(), "SESSION_EXPIRED");
    assert_eq!(r.event_count("expired"), 1);
}

#[test]
fn a_restore_read_answering_while_a_refresh_is_out_installs_nothing() {
    // Found by the property tests: a pair restored beside a running refresh let that
    // refresh's retry send its own token after it had expired (the checks looked at the
    // restored pair).
    let mut r = storage_run(no_timer);
    let p1 = Pair::with_ttl(1, EPOCH, MINUTE, MINUTE);
    r.logged_in(EPOCH, &p1);
    let g = wait(r.restore(EPOCH + 1));
    let restore_get = op_id(&r.storage_ops()[0]);
    let f = wait(r.refresh(EPOCH + 1));
    r.answer_storage(EPOCH + 2, restore_get, Pair::issued(2, EPOCH + 2).stored());
    assert_eq!(r.settled(g), Outcome::Nothing, "the refresh decides");
    r.looked(EPOCH + 2, p1.stored());
    assert_eq!(r.m.info().client_id, Some(123_456));
    assert_eq!(r.token_reasons(), [Reason::Login]);
    r.timeout(EPOCH + 2 + TIMEOUT); // the refresh attempt (sent after the look) times out
    r.timeout(EPOCH + HOUR); // and its retry is due long after rt1 expired
    assert_eq!(r.refresh_tokens_sent(), [rt(1)]);
    assert_eq!(r.failure(f).code(), "SESSION_EXPIRED");
}

#[test]
fn every_write_carries_its_version_and_a_record_pinned_at_the_top_of_the_range_is_not_ours() {
    use auth_session::core::envelope::MAX_RECORD_VERSION;
    let mut r = storage_run(|_| {});
    let f = r.login(EPOCH);
    r.answer(EPOCH, ok(&Pair::issued(1, EPOCH)));
    // The versioning read finds a record pinned at 2^53 - 1: unreadable, not a version to
    // write above (which would leave no room to grow).
    r.answer_get(EPOCH, Pair::issued(9, EPOCH).stored_as((1 << 53) - 1, None));
    let put = r.storage_ops();
    match &put[..] {
        [StorageOp::Put { version, value, .. }] => {
            assert_eq!(*version, 1, "the write's version is the record's");
            assert_eq!(record_version(value), 1);
        }
        other => panic!("{other:?}"),
    }
    r.answer_put(EPOCH, StorageReply::Empty);
    assert_eq!(r.settled(f), Outcome::Done);
    assert!(
        r.errors().iter().any(|e| e.code() == "STORAGE_ERROR"),
        "the pinned record is reported"
    );
    // The highest version a record may have is still one it can grow from.
    let f = wait(r.restore(EPOCH + 1));
    r.answer_get(
        EPOCH + 1,
        Pair::issued(2, EPOCH + 1).stored_as(MAX_RECORD_VERSION, None),
    );
    assert_eq!(r.settled(f), Outcome::Done, "a record at 2^50 is readable");
}
