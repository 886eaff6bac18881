//! Storage bound to its place (issue 8): the default key and the record name their host and
//! account, records carry a rotation version, and a refresh looks at the record first so
//! that a pair another instance already rotated is adopted instead of spending a token
//! twice.
// Native only: the harness reads JSON with the core's native reader.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::collections::HashSet;

use auth_session::core::fingerprint;
use auth_session::core::machine::{Endpoint, Need, Outcome, Output, Reason, StorageOp, StorageReply};
use auth_session::core::{Options, Phase};
use common::*;

const KEY: &str = "auth-session:https://api.test";
const OTHER_HOST: &str = "https://other.test";

fn storage_run(f: impl FnOnce(&mut Options)) -> Run {
    Run::with_storage(config(f))
}

/// A session configured with [`USER`]'s credentials, no auto-refresh.
fn creds_run(f: impl FnOnce(&mut Options)) -> Run {
    storage_run(|o| {
        with_credentials(o);
        no_timer(o);
        f(o);
    })
}

fn alice() -> String {
    fingerprint::account(USER)
}

fn bob() -> String {
    fingerprint::account("bob")
}

fn record(text: &str) -> StorageReply {
    StorageReply::Record(parse(text))
}

/// A record of the previous format (auth-session 0.1): no origin, account or version.
fn v1_record(p: &Pair) -> String {
    format!(
        r#"{{"v":1,"access_token":"{}","refresh_token":"{}","access_expires_at":{},"refresh_expires_at":{},"client_id":123456}}"#,
        p.access, p.refresh, p.access_expires_at, p.refresh_expires_at
    )
}

fn key_of(op: &StorageOp) -> &str {
    match op {
        StorageOp::Get { key, .. }
        | StorageOp::Put { key, .. }
        | StorageOp::Delete { key, .. }
        | StorageOp::Acquire { key, .. }
        | StorageOp::Release { key, .. } => key,
    }
}

/// The auth server, as far as rotation goes: every refresh token works once.
#[derive(Default)]
struct Server {
    issued: u32,
    spent: HashSet<String>,
    refreshes: usize,
    rejected: usize,
}

impl Server {
    /// Answers `r`'s open request at `now`: a login or a refresh issues the next pair, a
    /// refresh token sent a second time is refused.
    fn answer(&mut self, r: &mut Run, now: i64) {
        let req = r.open_send();
        if req.endpoint == Endpoint::Refresh {
            self.refreshes += 1;
            if !self.spent.insert(body_token(&req).unwrap()) {
                self.rejected += 1;
                r.answer(now, unauthorized());
                return;
            }
        }
        self.issued += 1;
        r.answer(now, ok(&Pair::issued(self.issued, now)));
    }
}

// ----- the key and the record ----------------------------------------------------------------

#[test]
fn the_default_key_holds_the_account_fingerprint_never_the_username() {
    let keyed = |username: &str| {
        config(|o| {
            o.credentials = Some((username.to_owned(), auth_session::core::secret::Password::new(PASSWORD)));
        })
        .storage_key()
    };
    let key = keyed(USER);
    assert_eq!(key, format!("{KEY}#{}", alice()));
    let fp = key.rsplit('#').next().unwrap();
    assert_eq!(fp.len(), 16);
    assert!(fp.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    for username in [USER, "bob@example.com", "Tenant 42", "ä"] {
        let k = keyed(username);
        assert!(!k.contains(username), "{k}");
        assert!(!k.contains("hunter2"));
    }
    assert_ne!(keyed(USER), keyed("bob@example.com"), "one key per account");
    assert_eq!(config(|_| {}).storage_key(), KEY, "without credentials: the host alone");

    // Every call of a session with credentials uses it; the record names the account by
    // its fingerprint too.
    let mut r = creds_run(|_| {});
    let f = wait(r.restore(EPOCH));
    r.answer_get(EPOCH, StorageReply::Empty);
    assert_eq!(r.settled(f), Outcome::Nothing);
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    wait(r.refresh(EPOCH + 1));
    r.looked(EPOCH + 1, Pair::issued(1, EPOCH).stored());
    r.answer(EPOCH + 1, ok(&Pair::issued(2, EPOCH + 1)));
    r.answer_put(EPOCH + 1, StorageReply::Empty);
    wait(r.revoke(EPOCH + 2));
    let ops = r.all_storage_ops();
    assert_eq!(ops.len(), 6, "{ops:?}");
    assert!(ops.iter().all(|op| key_of(op) == key), "{ops:?}");
    for value in r.puts() {
        assert!(!value.contains(USER));
        assert_eq!(
            parse(&value).get("account").and_then(|a| a.as_str()),
            Some(alice().as_str())
        );
        assert_eq!(parse(&value).get("origin").and_then(|a| a.as_str()), Some(HOST));
    }
}

#[test]
fn a_login_installs_its_pair_at_once_and_settles_after_the_versioned_write() {
    let mut r = storage_run(|_| {});
    let f = r.login(EPOCH);
    let p1 = Pair::issued(1, EPOCH);
    r.answer(EPOCH, ok(&p1));
    assert_eq!(r.token_reasons(), [Reason::Login]);
    assert_eq!(r.token_now(EPOCH).unwrap(), at(1), "usable before the storage calls");
    assert!(matches!(&r.storage_ops()[..], [StorageOp::Get { .. }]));
    assert_eq!(r.outcome(f), None);
    // A caller's refresh joins the login still writing.
    assert_eq!(wait(r.refresh(EPOCH)), f);
    r.answer_get(EPOCH, StorageReply::Empty);
    assert_eq!(r.outcome(f), None);
    r.answer_put(EPOCH, StorageReply::Empty);
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.puts(), [p1.record()]);
    assert_eq!(r.errors(), []);
}

#[test]
fn versions_grow_with_every_rotation_and_a_login_stores_above_the_record() {
    let mut r = storage_run(no_timer);
    let p1 = Pair::issued(1, EPOCH);
    r.logged_in(EPOCH, &p1); // an empty store: version 1
    let mut t = EPOCH;
    let mut held = p1.clone();
    for n in 2..=4 {
        t += MINUTE;
        wait(r.refresh(t));
        r.looked(t, held.stored());
        held = Pair::issued(n, t);
        r.answer(t, ok(&held));
        r.answer_put(t, StorageReply::Empty);
    }
    let versions: Vec<u64> = r.puts().iter().map(|v| record_version(v)).collect();
    assert_eq!(versions, [1, 2, 3, 4]);
    assert_eq!(r.puts()[3], held.record());

    // Another instance logged in meanwhile and stored version 7: a login stores 8.
    t += MINUTE;
    let foreign = Pair::issued(30, t);
    let f = r.login(t);
    let p5 = Pair::issued(5, t);
    r.answer(t, ok(&p5));
    r.answer_get(t, foreign.stored_as(7, Some(&alice())));
    r.answer_put(t, StorageReply::Empty);
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.puts()[4], p5.record_as(8, Some(&alice())));
    assert_eq!(r.token_now(t).unwrap(), at(5), "a versioning read adopts nothing");

    // A refresh whose look fails still stores above everything seen.
    t += MINUTE;
    wait(r.refresh(t));
    r.looked(t, StorageReply::Failed(None));
    r.answer(t, ok(&Pair::issued(6, t)));
    r.answer_put(t, StorageReply::Empty);
    assert_eq!(record_version(&r.puts()[5]), 9);
    assert_eq!(r.errors().len(), 1);
    assert_eq!(r.token_reasons().iter().filter(|r| **r == Reason::Adopt).count(), 0);
}

#[test]
fn a_versioning_read_that_fails_or_never_answers_is_an_error_and_the_pair_is_still_stored() {
    for reply in [StorageReply::Failed(None), StorageReply::Garbage] {
        let mut r = storage_run(|_| {});
        let f = r.login(EPOCH);
        r.answer(EPOCH, ok(&Pair::issued(1, EPOCH)));
        r.answer_get(EPOCH, reply.clone());
        assert_eq!(r.errors().len(), 1, "{reply:?}");
        assert_eq!(r.errors()[0].code(), "STORAGE_ERROR");
        r.answer_put(EPOCH, StorageReply::Empty);
        assert_eq!(r.settled(f), Outcome::Done);
        assert_eq!(r.puts(), [Pair::issued(1, EPOCH).record()]);
    }

    let mut r = storage_run(|_| {});
    let f = r.login(EPOCH);
    r.answer(EPOCH + 5, ok(&Pair::issued(1, EPOCH)));
    let get = op_id(&r.storage_ops()[0]);
    assert_eq!(r.deadline(), Some(EPOCH + 5 + TIMEOUT));
    assert_eq!(r.timeout(EPOCH + 4 + TIMEOUT), []);
    let out = r.timeout(EPOCH + 5 + TIMEOUT);
    assert!(out.contains(&Output::Cancel(get)));
    assert_eq!(r.errors().len(), 1);
    assert_eq!(r.outcome(f), None, "now it writes");
    assert_eq!(r.deadline(), Some(EPOCH + 5 + 2 * TIMEOUT));
    r.answer_put(EPOCH + 5 + TIMEOUT, StorageReply::Empty);
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.puts(), [Pair::issued(1, EPOCH).record()]);
    // The late answer changes nothing.
    let late = Pair::issued(9, EPOCH).stored_as(40, Some(&alice()));
    assert_eq!(r.answer_storage(EPOCH + DAY, get, late), []);
    assert_eq!(r.token_now(EPOCH + 6 + TIMEOUT).unwrap(), at(1));
}

#[test]
fn a_login_whose_versioning_read_times_out_still_stores_above_a_version_read_meanwhile() {
    // Found by the property tests: a restore's read, answered while the login's versioning
    // read hung, raised the version seen; the write after the timeout must go above it.
    let mut r = storage_run(|_| {});
    let f = r.login(EPOCH);
    let g = wait(r.restore(EPOCH));
    let restore_get = op_id(&r.storage_ops()[0]);
    let p1 = Pair::issued(1, EPOCH);
    r.answer(EPOCH, ok(&p1));
    let theirs = Pair::issued(9, EPOCH).stored_as(4, Some(&alice()));
    r.answer_storage(EPOCH, restore_get, theirs);
    assert_eq!(r.settled(g), Outcome::Nothing, "the login decides");
    r.timeout(EPOCH + TIMEOUT); // the versioning read never answers
    assert_eq!(r.errors().len(), 1);
    r.answer_put(EPOCH + TIMEOUT, StorageReply::Empty);
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.puts(), [p1.record_as(5, Some(&alice()))]);
}

// ----- look before you refresh ---------------------------------------------------------------

#[test]
fn a_refresh_finds_a_newer_record_adopts_it_and_sends_nothing() {
    let p1 = Pair::issued(1, EPOCH);
    let t = EPOCH + 20 * MINUTE;
    let p2 = Pair::issued(2, t - MINUTE); // another instance rotated a minute ago
                                          // Whoever starts the refresh: refresh(), a call that needs a token, the timer.
    for how in ["refresh", "token", "timer"] {
        let mut r = storage_run(|_| {});
        r.logged_in(EPOCH, &p1);
        let due = EPOCH + HOUR - MARGIN;
        let f = match how {
            "refresh" => Some(wait(r.refresh(t))),
            "token" => Some(wait_token(r.ask(due, Need::Strict))),
            _ => {
                assert_eq!(r.fire(), due);
                None
            }
        };
        assert!(!r.has_open_send(), "{how}: it looks first");
        let now = if how == "refresh" { t } else { due };
        r.looked(now, p2.stored());
        if let Some(f) = f {
            assert_eq!(r.settled(f), Outcome::Done, "{how}");
        }
        assert_eq!(r.count(Endpoint::Refresh), 0, "{how}: no refresh sent");
        assert_eq!(r.token_reasons(), [Reason::Login, Reason::Adopt], "{how}");
        assert_eq!(r.token_now(now).unwrap(), at(2));
        assert_eq!(r.m.info(), p2.info(Phase::Active));
        assert_eq!(r.puts().len(), 1, "{how}: an adopted pair is not written back");
        assert_eq!(r.errors(), [], "{how}");
        assert_eq!(
            r.deadline(),
            Some(p2.access_expires_at - MARGIN),
            "{how}: the timer follows it"
        );

        // The next refresh starts from the adopted pair, one version above it.
        let later = p2.access_expires_at - MARGIN;
        wait(r.refresh(later));
        r.looked(later, p2.stored());
        assert_eq!(r.refresh_tokens_sent(), [rt(2)], "{how}");
        r.answer(later, ok(&Pair::issued(3, later)));
        r.answer_put(later, StorageReply::Empty);
        assert_eq!(r.puts()[1], Pair::issued(3, later).record(), "{how}");
    }
}

#[test]
fn a_refresh_goes_out_when_the_record_is_not_a_newer_pair_of_this_host_and_account() {
    let p1 = Pair::issued(1, EPOCH);
    let p9 = Pair::issued(9, EPOCH + MINUTE);
    let a = alice();
    let b = bob();
    let a = Some(a.as_str());
    // The login is stored as version 5 (the store held 4); then the look finds:
    let cases: Vec<(&str, StorageReply, usize, u64)> = vec![
        ("our own record", p1.stored_as(5, a), 0, 6),
        ("another pair, the same version", p9.stored_as(5, a), 0, 6),
        ("another pair, older", p9.stored_as(4, a), 0, 6),
        ("our own pair, a higher version", p1.stored_as(6, a), 0, 7),
        ("a newer pair of another account", p9.stored_as(6, Some(&b)), 0, 6),
        ("a newer pair of no account", p9.stored_as(6, None), 0, 6),
        (
            "a newer pair of another host",
            record(&p9.record_of(OTHER_HOST, 6, a)),
            0,
            6,
        ),
        (
            "a newer pair under another path prefix",
            record(&p9.record_of("https://api.test/v2", 6, a)),
            0,
            6,
        ),
        (
            "a newer pair whose refresh token expired",
            Pair::issued(9, EPOCH - 8 * DAY).stored_as(6, a),
            0,
            7,
        ),
        ("nothing", StorageReply::Empty, 0, 6),
        ("a record of the previous format", record(&v1_record(&p9)), 0, 6),
        ("garbage", StorageReply::Garbage, 1, 6),
        ("a failed read", StorageReply::Failed(None), 1, 6),
    ];
    for (what, stored, errors, version) in cases {
        let mut r = creds_run(|_| {});
        r.logged_in_over(EPOCH, &p1, Pair::issued(4, EPOCH).stored_as(4, a));
        assert_eq!(record_version(&r.puts()[0]), 5);
        let t = EPOCH + 2 * MINUTE;
        let f = wait(r.refresh(t));
        r.looked(t, stored);
        assert_eq!(r.refresh_tokens_sent(), [rt(1)], "{what}");
        assert_eq!(r.token_reasons(), [Reason::Login], "{what}: nothing adopted");
        assert_eq!(r.errors().len(), errors, "{what}");
        let p2 = Pair::issued(2, t);
        r.answer(t, ok(&p2));
        r.answer_put(t, StorageReply::Empty);
        assert_eq!(r.settled(f), Outcome::Done, "{what}");
        assert_eq!(r.puts()[1], p2.record_as(version, a), "{what}");
    }
}

#[test]
fn a_look_that_never_answers_is_an_error_and_the_refresh_goes_out_at_the_timeout() {
    let mut r = storage_run(no_timer);
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let t = EPOCH + MINUTE;
    let f = wait(r.refresh(t));
    let get = op_id(&r.storage_ops()[0]);
    assert_eq!(r.deadline(), Some(t + TIMEOUT));
    let out = r.timeout(t + TIMEOUT);
    assert!(out.contains(&Output::Cancel(get)));
    assert_eq!(r.errors().len(), 1);
    assert_eq!(r.errors()[0].code(), "STORAGE_ERROR");
    assert_eq!(r.refresh_tokens_sent(), [rt(1)]);
    // A late answer with a newer pair changes nothing: the refresh is out.
    assert_eq!(r.answer_storage(t + TIMEOUT, get, Pair::issued(2, t).stored()), []);
    r.answer(t + TIMEOUT, ok(&Pair::issued(3, t + TIMEOUT)));
    r.answer_put(t + TIMEOUT, StorageReply::Empty);
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.token_now(t + TIMEOUT).unwrap(), at(3));
}

#[test]
fn a_refresh_token_that_ran_out_during_the_look_is_not_sent() {
    let mut r = storage_run(no_timer);
    r.logged_in(EPOCH, &Pair::with_ttl(1, EPOCH, MINUTE, 2 * MINUTE));
    let f = wait(r.refresh(EPOCH + MINUTE));
    r.looked(
        EPOCH + 2 * MINUTE,
        Pair::with_ttl(1, EPOCH, MINUTE, 2 * MINUTE).stored(),
    );
    assert_eq!(r.count(Endpoint::Refresh), 0);
    assert_eq!(r.failure(f).code(), "SESSION_EXPIRED");
    assert_eq!(r.event_count("expired"), 1);
}

// ----- the record's account and host ---------------------------------------------------------

#[test]
fn a_record_of_another_account_is_absent_for_restore_and_for_adoption_after_a_401() {
    // Two accounts under one chosen key: each sees only its own record.
    let theirs = Pair::issued(9, EPOCH);
    let mut r = creds_run(|o| o.storage_key = Some("shared".into()));
    let f = wait(r.restore(EPOCH));
    r.answer_get(EPOCH, theirs.stored_as(9, Some(&bob())));
    assert_eq!(r.settled(f), Outcome::Nothing);
    assert_eq!(r.m.info().state, Phase::Anonymous);
    assert_eq!(r.errors(), [], "another account's record is absent, not garbage");
    assert_eq!(r.sends().len(), 0);

    // Its version does not count either: the login is stored as version 1.
    let p1 = Pair::issued(1, EPOCH);
    r.logged_in_over(EPOCH, &p1, theirs.stored_as(9, Some(&bob())));
    assert_eq!(r.puts(), [p1.record()]);

    // After a 401 the adoption read finds their newer pair: absent; a re-login follows.
    let t = EPOCH + 2 * MINUTE;
    let g = wait(r.refresh(t));
    r.looked(t, theirs.stored_as(10, Some(&bob())));
    r.answer(t, unauthorized());
    r.answer_get(t, theirs.stored_as(10, Some(&bob())));
    assert_eq!(r.open_send().endpoint, Endpoint::Login);
    r.answer(t, ok(&Pair::issued(2, t)));
    r.answer_get(t, theirs.stored_as(10, Some(&bob())));
    r.answer_put(t, StorageReply::Empty);
    assert_eq!(r.settled(g), Outcome::Done);
    assert_eq!(r.token_now(t).unwrap(), at(2));
    assert_eq!(r.token_reasons(), [Reason::Login, Reason::Login]);
    assert_eq!(r.refresh_tokens_sent(), [rt(1)], "their refresh token is never sent");
    assert!(r.sends().iter().all(|s| s.authorization.is_none()));
    assert_eq!(r.errors(), []);
}

#[test]
fn a_session_without_credentials_takes_its_hosts_record_of_any_account() {
    let p5 = Pair::issued(5, EPOCH);
    for account in [Some(bob()), Some(alice()), None] {
        let mut r = storage_run(no_timer);
        let f = wait(r.restore(EPOCH));
        r.answer_get(EPOCH, p5.stored_as(5, account.as_deref()));
        assert_eq!(r.settled(f), Outcome::Done, "{account:?}");
        assert_eq!(r.token_reasons(), [Reason::Restore]);
        // Its refresh keeps the record's account.
        wait(r.refresh(EPOCH + 1));
        r.looked(EPOCH + 1, p5.stored_as(5, account.as_deref()));
        r.answer(EPOCH + 1, ok(&Pair::issued(6, EPOCH + 1)));
        r.answer_put(EPOCH + 1, StorageReply::Empty);
        assert_eq!(
            r.puts(),
            [Pair::issued(6, EPOCH + 1).record_as(6, account.as_deref())],
            "{account:?}"
        );
        // ...and it adopts a newer pair of its host whoever stored it.
        wait(r.refresh(EPOCH + 2));
        r.looked(EPOCH + 2, Pair::issued(7, EPOCH + 2).stored_as(7, Some(&bob())));
        assert_eq!(r.token_now(EPOCH + 2).unwrap(), at(7));
        assert_eq!(r.count(Endpoint::Refresh), 1);
    }
    // But not the record of another host.
    let mut r = storage_run(no_timer);
    let f = wait(r.restore(EPOCH));
    r.answer_get(EPOCH, record(&p5.record_of(OTHER_HOST, 5, None)));
    assert_eq!(r.settled(f), Outcome::Nothing);
    assert_eq!(r.errors(), []);
}

#[test]
fn two_hosts_sharing_one_storage_key_never_cross() {
    let shared = |host: &'static str| {
        Run::with_storage(config(|o| {
            o.host = Some(host.to_owned());
            o.storage_key = Some("shared".into());
            no_timer(o);
        }))
    };
    let mut store = MemoryStore::default();
    let mut a = shared(HOST);
    let mut b = shared(OTHER_HOST);
    let mut c = shared("https://api.test/v2"); // the same origin, another path prefix

    let f = a.login(EPOCH);
    a.answer(EPOCH, ok(&Pair::issued(1, EPOCH)));
    a.serve(EPOCH, &mut store);
    assert_eq!(a.settled(f), Outcome::Done);
    assert_eq!(store.version("shared"), Some(1));

    for other in [&mut b, &mut c] {
        let f = wait(other.restore(EPOCH + 1));
        other.serve(EPOCH + 1, &mut store);
        assert_eq!(other.settled(f), Outcome::Nothing);
        assert_eq!(other.m.info().state, Phase::Anonymous);
        assert_eq!(other.errors(), []);
    }

    // B logs in and overwrites the key (tenants without credentials need distinct keys);
    // A's record did not count for its version.
    let f = b.login(EPOCH + 2);
    assert!(b.open_send().url.starts_with(OTHER_HOST));
    b.answer(EPOCH + 2, ok(&Pair::issued(50, EPOCH + 2)));
    b.serve(EPOCH + 2, &mut store);
    assert_eq!(b.settled(f), Outcome::Done);
    assert_eq!(store.version("shared"), Some(1));
    assert_eq!(record_access_token(&store.records["shared"]), at(50));

    // A's refresh neither adopts B's pair at the look nor after the 401.
    let t = EPOCH + 3 * MINUTE;
    let g = wait(a.refresh(t));
    a.serve(t, &mut store);
    assert_eq!(a.refresh_tokens_sent(), [rt(1)]);
    a.answer(t, unauthorized());
    a.serve(t, &mut store);
    assert_eq!(a.failure(g).code(), "SESSION_EXPIRED");
    assert_eq!(a.m.info().state, Phase::Expired);
    assert!(!a.token_reasons().contains(&Reason::Adopt));
    // Nor does the other path prefix restore it.
    let h = wait(c.restore(t));
    c.serve(t, &mut store);
    assert_eq!(c.settled(h), Outcome::Nothing);
    assert_eq!(b.token_now(t).unwrap(), at(50));
}

#[test]
fn a_record_of_the_previous_format_is_absent_without_an_error() {
    let p1 = Pair::issued(1, EPOCH);
    let old = || record(&v1_record(&p1));

    let mut r = storage_run(|_| {});
    let f = wait(r.restore(EPOCH));
    r.answer_get(EPOCH, old());
    assert_eq!(r.settled(f), Outcome::Nothing);
    assert_eq!(r.m.info().state, Phase::Anonymous);

    // A login's versioning read: stored as version 1, over it.
    r.logged_in_over(EPOCH, &p1, old());
    assert_eq!(r.puts(), [p1.record()]);

    // A look, then the adoption read after a 401.
    let t = EPOCH + MINUTE;
    let g = wait(r.refresh(t));
    r.looked(t, old());
    assert_eq!(r.refresh_tokens_sent(), [rt(1)]);
    r.answer(t, unauthorized());
    r.answer_get(t, old());
    assert_eq!(r.failure(g).code(), "SESSION_EXPIRED");
    assert_eq!(r.errors(), [], "a v1 record is not reported");
}

// ----- instances sharing one store -----------------------------------------------------------

#[test]
fn an_instance_finds_the_pair_another_rotated_and_never_sends_the_spent_token() {
    // A and B share a store: A refreshes and stores pair 2; later B, still holding pair 1,
    // is due too. Its look finds version 2 and adopts it: rt1, spent by A, is not sent.
    let mut store = MemoryStore::default();
    let mut server = Server::default();
    let mut a = storage_run(with_credentials);
    let mut b = storage_run(with_credentials);
    let key = a.m.config().storage_key();

    let f = a.login_with(EPOCH, None);
    server.answer(&mut a, EPOCH);
    a.serve(EPOCH, &mut store);
    assert_eq!(a.settled(f), Outcome::Done);
    let g = wait(b.restore(EPOCH + 1));
    b.serve(EPOCH + 1, &mut store);
    assert_eq!(b.settled(g), Outcome::Done);
    assert_eq!(b.token_now(EPOCH + 1).unwrap(), at(1));

    let due = EPOCH + HOUR - MARGIN;
    assert_eq!(a.fire(), due);
    a.serve(due, &mut store);
    server.answer(&mut a, due);
    a.serve(due, &mut store);
    assert_eq!(store.version(&key), Some(2));
    assert_eq!(a.token_now(due).unwrap(), at(2));

    // B's timer runs a little later.
    assert_eq!(b.deadline(), Some(due));
    b.timeout(due + 50);
    b.serve(due + 50, &mut store);
    assert_eq!(b.count(Endpoint::Refresh), 0, "B sends no refresh");
    assert_eq!(b.token_reasons(), [Reason::Restore, Reason::Adopt]);
    assert_eq!(b.token_now(due + 50).unwrap(), at(2));
    assert_eq!((server.refreshes, server.rejected), (1, 0));
    assert_eq!(b.puts(), [] as [String; 0], "B writes nothing back");

    // And the other way round: B rotates next, A adopts.
    let due = Pair::issued(2, due).access_expires_at - MARGIN;
    b.timeout(due);
    b.serve(due, &mut store);
    server.answer(&mut b, due);
    b.serve(due, &mut store);
    a.timeout(due + 50);
    a.serve(due + 50, &mut store);
    assert_eq!(a.token_now(due + 50).unwrap(), at(3));
    assert_eq!(a.token_reasons(), [Reason::Login, Reason::Refresh, Reason::Adopt]);
    assert_eq!(store.version(&key), Some(3));
    assert_eq!((server.refreshes, server.rejected), (2, 0));
    assert_eq!(a.errors(), []);
    assert_eq!(b.errors(), []);
}

#[test]
fn instances_that_look_at_the_same_time_end_on_one_pair() {
    // Both look before either has stored: both send rt1, the server refuses the second,
    // whose adoption read then finds the first one's pair.
    let mut store = MemoryStore::default();
    let mut server = Server::default();
    let mut a = storage_run(no_timer);
    let mut b = storage_run(no_timer);
    a.login(EPOCH);
    server.answer(&mut a, EPOCH);
    a.serve(EPOCH, &mut store);
    wait(b.restore(EPOCH));
    b.serve(EPOCH, &mut store);

    let t = EPOCH + 10 * MINUTE;
    let fa = wait(a.refresh(t));
    let fb = wait(b.refresh(t));
    a.serve(t, &mut store);
    b.serve(t, &mut store);
    server.answer(&mut a, t);
    a.serve(t, &mut store);
    server.answer(&mut b, t);
    b.serve(t, &mut store);
    assert_eq!(a.settled(fa), Outcome::Done);
    assert_eq!(b.settled(fb), Outcome::Done);
    assert_eq!((server.refreshes, server.rejected), (2, 1));
    assert_eq!(a.token_now(t).unwrap(), at(2));
    assert_eq!(b.token_now(t).unwrap(), at(2));
    assert_eq!(b.token_reasons(), [Reason::Restore, Reason::Adopt]);
    assert_eq!(b.event_count("expired"), 0);
    assert_eq!(store.version(KEY), Some(2));
}
