//! The refresh lease (a storage with `acquire`/`release`): of all the instances sharing a
//! record, the lease holder alone refreshes and the others adopt the pair it stores.
//!
//! Before a refresh the session looks at the record; with nothing newer there it takes the
//! lease for `leaseMs` (by default `timeoutMs × (retries + 4)` and the backoffs' ceilings: the
//! acquire, the look, every attempt and the write). Granted, it looks once more, refreshes, writes the
//! record and gives the lease back. Refused, it looks again after 100, 200, 400, 800, 1000…
//! ms, adopting the holder's pair when it appears and asking for the lease again while the
//! record has nothing newer; after twice the lease's time to live it gives up (TIMEOUT). A
//! lease the storage fails to give is an `error` event and the refresh goes out without it.
//! Every lease taken is given back when the operation ends, however it ends.
// Native only: the harness reads JSON with the core's native reader.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::collections::HashSet;

use auth_session::core::machine::{
    Endpoint, FlightId, Need, Outcome, Output, Reason, StorageOp, StorageReply, TokenStep,
};
use auth_session::core::{Options, Phase};
use common::*;

/// The lease's time to live with the default options: 10 s × (2 retries + 4), and the two
/// backoffs' ceilings (200 ms and 400 ms).
const TTL: i64 = 60 * SECOND + 600;

/// A session with a leasing storage and no auto-refresh (the tests say when to refresh).
fn lease_run(f: impl FnOnce(&mut Options)) -> Run {
    Run::with_lease(config(|o| {
        no_timer(o);
        f(o);
    }))
}

/// [`lease_run`] with [`USER`]'s credentials configured.
fn creds_lease_run() -> Run {
    lease_run(with_credentials)
}

fn lease(id: &str) -> StorageReply {
    StorageReply::Lease(id.to_owned())
}

/// What the outputs were, in order, one word each (logs left out).
fn kinds(outs: &[Output]) -> Vec<&'static str> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send(r) => Some(match r.endpoint {
                Endpoint::Login => "login",
                Endpoint::Refresh => "refresh",
                Endpoint::Revoke => "revoke",
                Endpoint::Discovery => "discovery",
            }),
            Output::Cancel(_) => Some("cancel"),
            Output::Storage(op) => Some(op_kind(op)),
            Output::Settle(_, Outcome::Done) => Some("done"),
            Output::Settle(_, Outcome::Nothing) => Some("nothing"),
            Output::Settle(_, Outcome::Failed(_)) => Some("failed"),
            Output::Settle(_, Outcome::Again) => Some("again"),
            Output::Event(e) => Some(event_kind(e)),
            Output::Call(..) => Some("call"),
            Output::Log(_) => None,
        })
        .collect()
}

/// The outputs of `r` since its log held `n`.
fn since(r: &Run, n: usize) -> Vec<&'static str> {
    kinds(&r.log[n..])
}

/// How long the lease of this `acquire` is asked for.
fn ttl_of(op: &StorageOp) -> i64 {
    match op {
        StorageOp::Acquire { ttl_ms, .. } => *ttl_ms as i64,
        other => panic!("not an acquire: {other:?}"),
    }
}

/// The auth server, as far as rotation goes: every refresh token works once.
#[derive(Default)]
struct Server {
    issued: u32,
    /// Every refresh token the server received, in order.
    received: Vec<String>,
    spent: HashSet<String>,
    rejected: usize,
    logins: usize,
}

impl Server {
    /// The server takes `r`'s open request at `now` and makes its answer: a login or a
    /// refresh issues the next pair, a refresh token it has seen before is refused. The
    /// answer is not delivered (the instance may be dead by then).
    fn receive(&mut self, r: &Run, now: i64) -> Reply {
        let req = r.open_send();
        match req.endpoint {
            Endpoint::Refresh => {
                let token = body_token(&req).unwrap();
                self.received.push(token.clone());
                if !self.spent.insert(token) {
                    self.rejected += 1;
                    return unauthorized();
                }
            }
            Endpoint::Login => self.logins += 1,
            Endpoint::Revoke | Endpoint::Discovery => return status(200),
        }
        self.issued += 1;
        ok(&Pair::issued(self.issued, now))
    }

    /// [`Server::receive`], and the answer delivered at `now`.
    fn answer(&mut self, r: &mut Run, now: i64) {
        let reply = self.receive(r, now);
        r.answer(now, reply);
    }
}

/// Logs `r` in through `server` at `now`, its versioning read and write served by `store`.
fn log_in(r: &mut Run, server: &mut Server, store: &mut MemoryStore, now: i64) {
    let f = r.login(now);
    server.answer(r, now);
    r.serve(now, store);
    assert_eq!(r.settled(f), Outcome::Done);
}

/// `restore()` at `now` from `store`: the instance takes the stored pair.
fn restored(r: &mut Run, store: &mut MemoryStore, now: i64) {
    let f = wait(r.restore(now));
    r.serve(now, store);
    assert_eq!(r.settled(f), Outcome::Done);
}

/// Answers `r`'s first open storage call from `store` at `now`; returns its kind.
fn serve_one(r: &mut Run, store: &mut MemoryStore, now: i64) -> &'static str {
    let op = r.storage_ops()[0].clone();
    let reply = store.answer_at(now, &op);
    r.answer_storage(now, op_id(&op), reply);
    op_kind(&op)
}

/// Fires the earliest deadline of any of `runs` that is due by `end`, then serves that
/// instance's storage at once; returns which instance and when, or None when nothing is due.
fn fire_next(runs: &mut [&mut Run], store: &mut MemoryStore, end: i64) -> Option<(usize, i64)> {
    let (i, t) = runs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.deadline().map(|t| (i, t)))
        .filter(|(_, t)| *t <= end)
        .min_by_key(|(i, t)| (*t, *i))?;
    runs[i].timeout(t);
    runs[i].serve(t, store);
    Some((i, t))
}

/// Runs every timer due by `end`, in time order, with the storage answering at once.
fn run_until(runs: &mut [&mut Run], store: &mut MemoryStore, end: i64) {
    while fire_next(runs, store, end).is_some() {}
}

/// Runs timers until one of `runs` has an auth request open; returns which and when.
fn run_until_send(runs: &mut [&mut Run], store: &mut MemoryStore, end: i64) -> (usize, i64) {
    loop {
        let (i, t) = fire_next(runs, store, end).expect("an auth request before the end");
        if runs[i].has_open_send() {
            return (i, t);
        }
    }
}

/// No refresh token was sent twice, by one instance or by two.
fn assert_each_refresh_token_sent_once(runs: &[&Run]) {
    let mut seen = HashSet::new();
    for r in runs {
        for token in r.refresh_tokens_sent() {
            assert!(seen.insert(token.clone()), "{token} sent twice");
        }
    }
}

/// Sets up `n` instances sharing `store`: the first logs in (pair 1), the others restore it.
fn fleet(n: usize, server: &mut Server, store: &mut MemoryStore) -> Vec<Run> {
    let mut runs: Vec<Run> = (0..n).map(|_| creds_lease_run()).collect();
    log_in(&mut runs[0], server, store, EPOCH);
    for r in &mut runs[1..] {
        restored(r, store, EPOCH);
    }
    for r in &mut runs {
        assert_eq!(r.token_now(EPOCH).unwrap(), at(1));
    }
    runs
}

// ----- one instance: the steps of a refresh under the lease ----------------------------------

#[test]
fn the_holder_looks_takes_the_lease_looks_again_refreshes_writes_and_then_releases() {
    let p1 = Pair::issued(1, EPOCH);
    let p2 = Pair::issued(2, EPOCH + MINUTE);
    let mut r = lease_run(|_| {});
    r.logged_in(EPOCH, &p1);
    assert_eq!(r.acquires(), [] as [u32; 0], "a login takes no lease");
    let key = r.m.config().storage_key();

    let t = EPOCH + MINUTE;
    let n = r.log.len();
    let f = wait(r.refresh(t));
    assert_eq!(since(&r, n), ["get"], "first a look at the record");
    let out = r.looked(t, p1.stored());
    assert_eq!(kinds(&out), ["acquire"], "nothing newer: the lease");
    assert_eq!(
        r.storage_ops(),
        [StorageOp::Acquire {
            id: op_id(&r.storage_ops()[0]),
            key: key.clone(),
            ttl_ms: TTL as u32
        }]
    );
    let out = r.answer_acquire(t + 5, lease("L-1"));
    assert_eq!(
        kinds(&out),
        ["get"],
        "granted: one more look (the last holder may just have stored)"
    );
    let out = r.looked(t + 10, p1.stored());
    assert_eq!(kinds(&out), ["refresh"]);
    assert_eq!(r.refresh_tokens_sent(), [rt(1)]);

    let out = r.answer(t + 20, ok(&p2));
    assert_eq!(
        kinds(&out),
        ["tokens", "put"],
        "the lease is kept until the write is done"
    );
    assert_eq!(r.outcome(f), None);
    assert_eq!(record_version(&r.puts()[1]), 2);
    let out = r.answer_put(t + 30, StorageReply::Empty);
    assert_eq!(kinds(&out), ["release", "done"]);
    assert_eq!(r.releases(), ["L-1"]);
    assert!(matches!(&out[0], Output::Storage(StorageOp::Release { key: k, .. }) if *k == key));
    assert_eq!(r.token_reasons(), [Reason::Login, Reason::Refresh]);
    assert_eq!(r.errors(), []);

    // A release's answer is not awaited: whatever it is, nothing happens.
    let release = r.storage_ops()[0].clone();
    assert_eq!(op_kind(&release), "release");
    let out = r.answer_storage(t + 40, op_id(&release), StorageReply::Failed(None));
    assert_eq!(out, []);
    assert_eq!(r.deadline(), None);
}

#[test]
fn the_lease_covers_the_look_every_attempt_with_its_backoff_and_the_write() {
    for (timeout, retries, ttl) in [(10_000.0, 2.0, 60_600), (5_000.0, 0.0, 20_000), (1_000.0, 10.0, 45_200)] {
        let mut r = lease_run(|o| {
            o.timeout_ms = Some(timeout);
            o.retries = Some(retries);
        });
        r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
        wait(r.refresh(EPOCH + 1));
        r.looked(EPOCH + 1, StorageReply::Empty);
        assert_eq!(r.acquires(), [ttl], "timeoutMs {timeout}, retries {retries}");
    }
}

#[test]
fn the_second_look_adopts_a_pair_stored_before_the_lease_was_taken_and_gives_the_lease_back() {
    let p1 = Pair::issued(1, EPOCH);
    let p2 = Pair::issued(2, EPOCH + 30 * SECOND);
    let mut r = lease_run(|_| {});
    r.logged_in(EPOCH, &p1);
    let t = EPOCH + MINUTE;
    let f = wait(r.refresh(t));
    r.looked(t, p1.stored());
    r.answer_acquire(t, lease("L-1"));
    let out = r.looked(t, p2.stored());
    assert_eq!(kinds(&out), ["tokens", "release", "done"]);
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.releases(), ["L-1"]);
    assert_eq!(r.token_reasons(), [Reason::Login, Reason::Adopt]);
    assert_eq!(r.count(Endpoint::Refresh), 0);
    assert_eq!(r.token_now(t).unwrap(), at(2));
}

#[test]
fn a_newer_record_at_the_first_look_takes_no_lease_at_all() {
    let p1 = Pair::issued(1, EPOCH);
    let mut r = lease_run(|_| {});
    r.logged_in(EPOCH, &p1);
    let t = EPOCH + MINUTE;
    let f = wait(r.refresh(t));
    let out = r.looked(t, Pair::issued(2, t).stored());
    assert_eq!(kinds(&out), ["tokens", "done"]);
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!((r.acquires(), r.releases()), (vec![], vec![]));
}

#[test]
fn a_refused_lease_looks_again_after_100_200_400_800_then_every_1000_ms_and_adopts_the_holders_pair() {
    let p1 = Pair::issued(1, EPOCH);
    let mut r = lease_run(|_| {});
    r.logged_in(EPOCH, &p1);
    let t = EPOCH + MINUTE;
    let f = wait(r.refresh(t));
    r.looked(t, p1.stored());
    let mut now = t;
    let mut pauses = Vec::new();
    for _ in 0..7 {
        let out = r.answer_acquire(now, StorageReply::Empty);
        assert_eq!(kinds(&out), [] as [&str; 0], "refused: wait, no request");
        let next = r.deadline().unwrap();
        pauses.push(next - now);
        assert_eq!(kinds(&r.timeout(next - 1)), [] as [&str; 0], "not before its time");
        assert_eq!(kinds(&r.timeout(next)), ["get"]);
        now = next;
        // The holder has stored nothing yet: ask for the lease again.
        assert_eq!(kinds(&r.looked(now, p1.stored())), ["acquire"]);
    }
    assert_eq!(pauses, [100, 200, 400, 800, 1_000, 1_000, 1_000]);

    // The holder's pair appears: adopted, nothing sent, no lease to give back.
    r.answer_acquire(now, StorageReply::Empty);
    let next = r.fire();
    let out = r.looked(next, Pair::issued(2, next).stored());
    assert_eq!(kinds(&out), ["tokens", "done"], "{out:?}");
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.token_reasons(), [Reason::Login, Reason::Adopt]);
    assert_eq!(r.count(Endpoint::Refresh), 0);
    assert_eq!(r.releases(), [] as [String; 0]);
    assert_eq!(r.acquires().len(), 8);
    assert_eq!(r.errors(), []);
}

#[test]
fn a_refused_waiter_takes_the_lease_once_it_is_free_and_refreshes_itself() {
    let p1 = Pair::issued(1, EPOCH);
    let mut r = lease_run(|_| {});
    r.logged_in(EPOCH, &p1);
    let t = EPOCH + MINUTE;
    let f = wait(r.refresh(t));
    r.looked(t, p1.stored());
    r.answer_acquire(t, StorageReply::Empty);
    let t1 = r.fire();
    assert_eq!(t1, t + 100);
    // The holder failed and gave the lease back: the record has nothing newer.
    assert_eq!(kinds(&r.looked(t1, p1.stored())), ["acquire"]);
    assert_eq!(kinds(&r.answer_acquire(t1, lease("L-2"))), ["get"]);
    assert_eq!(kinds(&r.looked(t1, p1.stored())), ["refresh"]);
    r.answer(t1, ok(&Pair::issued(2, t1)));
    assert_eq!(kinds(&r.answer_put(t1, StorageReply::Empty)), ["release", "done"]);
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.releases(), ["L-2"]);
}

#[test]
fn a_waiter_gives_up_with_timeout_after_twice_the_leases_time_to_live() {
    // timeoutMs 1 s, no retries: the lease lives 4 s, a waiter whose token is still valid
    // looks for the holder's pair 8 s at most (its callers do not wait: see below).
    let p1 = Pair::issued(1, EPOCH);
    let mut r = lease_run(|o| {
        o.timeout_ms = Some(1_000.0);
        o.retries = Some(0.0);
    });
    r.logged_in(EPOCH, &p1);
    let t = EPOCH + MINUTE;
    let f = wait(r.refresh(t));
    r.looked(t, p1.stored());
    assert_eq!(r.acquires(), [4_000]);
    r.answer_acquire(t, StorageReply::Empty);
    let mut now = t;
    while r.outcome(f).is_none() {
        now = r.fire();
        r.looked(now, p1.stored());
        if r.has_open_op("acquire") {
            assert!(
                now - t <= 8_000,
                "still asking for the lease {} ms after the first refusal",
                now - t
            );
            r.answer_acquire(now, StorageReply::Empty);
        }
    }
    // Looks at +100, +300, +700, +1500, … +7500: still within 8 s; +8500 gives up.
    assert_eq!(now, t + 8_500);
    let e = r.failure(f);
    assert_eq!((e.code(), e.retryable()), ("TIMEOUT", true));
    assert_eq!(r.count(Endpoint::Refresh), 0);
    assert_eq!(r.releases(), [] as [String; 0], "it never held the lease");
    assert_eq!(r.acquires().len(), 11);
    assert_eq!(r.deadline(), None);
    // The session is not over: the pair is still held and a later refresh starts afresh.
    assert_eq!(r.m.info().state, Phase::Active);
    wait(r.refresh(now + 1));
    r.looked(now + 1, p1.stored());
    r.answer_acquire(now + 1, lease("L-9"));
    r.looked(now + 1, p1.stored());
    assert_eq!(r.refresh_tokens_sent(), [rt(1)]);
}

#[test]
fn an_acquire_that_fails_is_an_error_and_the_refresh_goes_out_without_the_lease() {
    let p1 = Pair::issued(1, EPOCH);
    // The adapter throws...
    let mut r = lease_run(|_| {});
    r.logged_in(EPOCH, &p1);
    let t = EPOCH + MINUTE;
    let f = wait(r.refresh(t));
    r.looked(t, p1.stored());
    let out = r.answer_acquire(t, StorageReply::Failed(None));
    assert_eq!(
        kinds(&out),
        ["error", "refresh"],
        "no second look: the lease was not taken"
    );
    assert_eq!(r.errors()[0].code(), "STORAGE_ERROR");
    r.answer(t, ok(&Pair::issued(2, t)));
    assert_eq!(
        kinds(&r.answer_put(t, StorageReply::Empty)),
        ["done"],
        "no lease to give back"
    );
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.releases(), [] as [String; 0]);

    // ...or never answers: at timeoutMs the acquire is cancelled and the refresh goes out.
    let mut r = lease_run(|_| {});
    r.logged_in(EPOCH, &p1);
    let f = wait(r.refresh(t));
    r.looked(t, p1.stored());
    assert_eq!(r.deadline(), Some(t + TIMEOUT));
    let out = r.timeout(t + TIMEOUT);
    assert_eq!(kinds(&out), ["cancel", "error", "refresh"]);
    assert_eq!(r.storage_ops(), []);
    assert_eq!(r.errors()[0].code(), "STORAGE_ERROR");
    r.answer(t + TIMEOUT, ok(&Pair::issued(2, t + TIMEOUT)));
    r.answer_put(t + TIMEOUT, StorageReply::Empty);
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.releases(), [] as [String; 0]);
}

#[test]
fn a_refresh_token_that_ran_out_while_the_acquire_was_out_is_not_sent() {
    // The pair's refresh token lives 5 s; the acquire fails (late) or never answers, and by
    // then the token has run out: without the lease the refresh would go out, but not with
    // a dead token. Without credentials the session ends; with them it logs in again.
    let p1 = Pair::with_ttl(1, EPOCH, 2 * SECOND, 5 * SECOND);
    let t = EPOCH + SECOND;
    for (creds, never) in [(false, false), (false, true), (true, false), (true, true)] {
        let mut r = if creds { creds_lease_run() } else { lease_run(|_| {}) };
        r.logged_in(EPOCH, &p1);
        let f = wait(r.refresh(t));
        r.looked(t, p1.stored());
        let late = if never {
            r.timeout(t + TIMEOUT)
        } else {
            r.answer_acquire(t + 6 * SECOND, StorageReply::Failed(None))
        };
        assert_eq!(
            r.count(Endpoint::Refresh),
            0,
            "a refresh token past its expiry sent ({creds}, {never})"
        );
        if creds {
            assert_eq!(kinds(&late).last(), Some(&"login"), "{late:?}");
            assert_eq!(r.outcome(f), None);
        } else {
            assert_eq!(r.failure(f).code(), "SESSION_EXPIRED");
            assert_eq!(r.event_count("expired"), 1);
            assert_eq!(r.m.info().state, Phase::Expired);
        }
        assert_eq!(r.errors()[0].code(), "STORAGE_ERROR");
    }
}

// ----- every lease taken is given back --------------------------------------------------------

/// A session holding lease `L-1` with its refresh of `rt(1)` on the wire, at `EPOCH + MINUTE`.
fn holding(creds: bool) -> (Run, i64, u32) {
    holding_with(|o| {
        if creds {
            with_credentials(o);
        }
    })
}

fn holding_with(f: impl FnOnce(&mut Options)) -> (Run, i64, u32) {
    let p1 = Pair::issued(1, EPOCH);
    let mut r = lease_run(f);
    r.logged_in(EPOCH, &p1);
    let t = EPOCH + MINUTE;
    let f = wait(r.refresh(t));
    r.looked(t, p1.stored());
    r.answer_acquire(t, lease("L-1"));
    r.looked(t, p1.stored());
    assert_eq!(r.refresh_tokens_sent(), [rt(1)]);
    (r, t, f)
}

#[test]
fn the_release_waits_for_the_write_even_when_the_write_fails_or_never_answers() {
    // The write fails: an error, then the release.
    let (mut r, t, f) = holding(false);
    r.answer(t, ok(&Pair::issued(2, t)));
    let out = r.answer_put(t + 1, StorageReply::Failed(None));
    assert_eq!(kinds(&out), ["error", "release", "done"]);
    assert_eq!(r.settled(f), Outcome::Done);

    // The write never answers: at its deadline, cancelled, an error, then the release.
    let (mut r, t, f) = holding(false);
    r.answer(t, ok(&Pair::issued(2, t)));
    assert_eq!(kinds(&r.timeout(t + TIMEOUT - 1)), [] as [&str; 0]);
    let out = r.timeout(t + TIMEOUT);
    assert_eq!(kinds(&out), ["cancel", "error", "release", "done"]);
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.releases(), ["L-1"]);
}

#[test]
fn a_refresh_that_fails_gives_the_lease_back() {
    // A server error with no retries left.
    let (mut r, t, f) = holding_with(|o| o.retries = Some(0.0));
    let out = r.answer(t, status(503));
    assert_eq!(kinds(&out), ["release", "failed"]);
    assert_eq!(r.failure(f).status(), 503);
    assert_eq!(r.releases(), ["L-1"]);

    // A rejected refresh token, without credentials: the adoption read finds nothing, the
    // session ends, the lease goes back.
    let (mut r, t, f) = holding(false);
    let out = r.answer(t, unauthorized());
    assert_eq!(kinds(&out), ["get"], "the lease is kept while it reads for an adoption");
    let out = r.answer_get(t, Pair::issued(1, EPOCH).stored());
    assert_eq!(kinds(&out), ["expired", "release", "failed"]);
    assert_eq!(r.failure(f).code(), "SESSION_EXPIRED");
    assert_eq!(r.releases(), ["L-1"]);

    // With credentials it logs in again under the same lease and gives it back once the
    // login's pair is written (no version read: it read the record under the lease).
    let (mut r, t, f) = holding(true);
    r.answer(t, unauthorized());
    let out = r.answer_get(t, Pair::issued(1, EPOCH).stored());
    assert_eq!(kinds(&out), ["login"]);
    let out = r.answer(t, ok(&Pair::issued(3, t)));
    assert!(kinds(&out).contains(&"put"), "{:?}", kinds(&out));
    let out = r.answer_put(t, StorageReply::Empty);
    assert_eq!(kinds(&out), ["release", "done"]);
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.releases(), ["L-1"]);
    assert_eq!(r.count(Endpoint::Login), 2);
}

#[test]
fn a_login_a_revoke_or_a_dispose_that_supersedes_the_holder_gives_the_lease_back() {
    // Superseded while its refresh is on the wire: the server may have rotated the token, so
    // the lease is left to run out (no other instance refreshes with the maybe-spent token
    // before then). A login.
    let (mut r, t, f) = holding(false);
    let n = r.log.len();
    r.login(t + 1);
    assert_eq!(since(&r, n), ["cancel", "again", "login"]);
    assert_eq!(r.settled(f), Outcome::Again);
    assert!(r.releases().is_empty());

    // A revoke.
    let (mut r, t, f) = holding(false);
    let n = r.log.len();
    wait(r.revoke(t + 1));
    assert_eq!(since(&r, n), ["cancel", "again", "revoked", "delete", "revoke"]);
    assert_eq!(r.settled(f), Outcome::Again);
    assert!(r.releases().is_empty());

    // A dispose.
    let (mut r, _, f) = holding(false);
    let out = r.dispose();
    assert_eq!(kinds(&out), ["cancel", "failed"]);
    assert_eq!(r.failure(f).code(), "DISPOSED");
    assert!(r.releases().is_empty());

    // Superseded at every other stage while holding: the second look, the write.
    let (mut r, t, _) = holding(false);
    r.answer(t, ok(&Pair::issued(2, t)));
    r.dispose();
    assert_eq!(
        r.releases(),
        [] as [String; 0],
        "disposed while writing: the write goes on, so the lease is left to run out"
    );
    let p1 = Pair::issued(1, EPOCH);
    let mut r = lease_run(|_| {});
    r.logged_in(EPOCH, &p1);
    wait(r.refresh(t));
    r.looked(t, p1.stored());
    r.answer_acquire(t, lease("L-7"));
    let n = r.log.len();
    r.login(t);
    assert_eq!(
        since(&r, n),
        ["cancel", "release", "again", "login"],
        "superseded during the second look"
    );
    assert_eq!(r.releases(), ["L-7"]);
}

#[test]
fn an_op_superseded_before_it_holds_a_lease_releases_nothing() {
    let p1 = Pair::issued(1, EPOCH);
    let t = EPOCH + MINUTE;
    // While the acquire is out: cancelled, nothing to release (no id is known).
    let mut r = lease_run(|_| {});
    r.logged_in(EPOCH, &p1);
    wait(r.refresh(t));
    r.looked(t, p1.stored());
    let out = r.dispose();
    assert_eq!(kinds(&out), ["cancel", "failed"]);
    // While waiting for another holder.
    let mut r = lease_run(|_| {});
    r.logged_in(EPOCH, &p1);
    wait(r.refresh(t));
    r.looked(t, p1.stored());
    r.answer_acquire(t, StorageReply::Empty);
    let n = r.log.len();
    wait(r.revoke(t + 50));
    assert_eq!(since(&r, n), ["again", "revoked", "delete", "revoke"]);
    assert_eq!(r.releases(), [] as [String; 0]);
    assert_eq!(r.deadline(), Some(t + 50 + TIMEOUT), "the waiter's wake-up is gone");
}

// ----- a holder never outlives its lease ------------------------------------------------------

#[test]
fn a_holder_whose_retry_would_outlive_its_lease_stops_with_timeout_instead_of_sending() {
    // The lease runs 60.6 s from t. A Retry-After of 29 s at t + 11 s retries at t + 40 s:
    // that attempt and the write of its answer end by t + 60 s, inside the lease: it goes out.
    let (mut r, t, f) = holding(false);
    r.answer(t + 11 * SECOND, status(503).retry_after("29"));
    assert_eq!(r.deadline(), Some(t + 40 * SECOND));
    let out = r.timeout(t + 40 * SECOND);
    assert_eq!(kinds(&out), ["refresh"]);
    r.answer(t + 41 * SECOND, ok(&Pair::issued(2, t + 41 * SECOND)));
    r.answer_put(t + 41 * SECOND, StorageReply::Empty);
    assert_eq!(r.settled(f), Outcome::Done);

    // 30 s: it and its write would end at t + 61 s, after the lease: TIMEOUT, the lease
    // given back.
    let (mut r, t, f) = holding(false);
    r.answer(t + 11 * SECOND, status(503).retry_after("30"));
    assert_eq!(r.deadline(), Some(t + 41 * SECOND));
    let out = r.timeout(t + 41 * SECOND);
    assert_eq!(kinds(&out), ["release", "failed"]);
    let e = r.failure(f);
    assert_eq!((e.code(), e.retryable()), ("TIMEOUT", true));
    assert_eq!(r.count(Endpoint::Refresh), 1, "no attempt past the lease");
    assert_eq!(r.releases(), ["L-1"]);
    assert_eq!(r.m.info().state, Phase::Active, "the pair is still held");
}

#[test]
fn a_holder_whose_attempts_all_time_out_ends_inside_its_lease() {
    // Every attempt hangs: three attempts of 10 s with their backoffs end before the 60.6 s
    // lease does, and the last one gives it back.
    let (mut r, t, f) = holding(false);
    let mut last_deadline = 0;
    while r.outcome(f).is_none() {
        if r.has_open_send() {
            last_deadline = r.deadline().unwrap();
        }
        r.fire();
    }
    assert_eq!(r.count(Endpoint::Refresh), 3);
    assert!(
        last_deadline <= t + TTL,
        "an attempt ran until {} ms",
        last_deadline - t
    );
    assert_eq!(r.failure(f).code(), "TIMEOUT");
    assert_eq!(r.releases(), ["L-1"]);
}

#[test]
fn the_lease_runs_from_when_it_was_asked_for_not_from_when_the_answer_came() {
    // The storage takes the lease when `acquire` reaches it (at t, till t + 60.6 s) and its
    // answer comes 9 s later. A holder that counted from the answer would believe it held
    // the lease till t + 69.6 s, and send an attempt (and write) that ends after another
    // instance may have taken the lease.
    let p1 = Pair::issued(1, EPOCH);
    let mut store = MemoryStore::default();
    let mut a = lease_run(|_| {});
    a.logged_in(EPOCH, &p1);
    store.records.insert(a.m.config().storage_key(), a.puts()[0].clone());
    let key = a.m.config().storage_key();
    let t = EPOCH + MINUTE;
    let f = wait(a.refresh(t));
    assert_eq!(serve_one(&mut a, &mut store, t), "get");
    // `acquire` reaches the storage at t; its answer reaches the session at t + 9 s.
    let acquire = a.storage_ops()[0].clone();
    assert_eq!(ttl_of(&acquire), TTL);
    let granted = store.answer_at(t, &acquire);
    a.answer_storage(t + 9 * SECOND, op_id(&acquire), granted);
    a.serve(t + 9 * SECOND, &mut store);
    assert_eq!(a.refresh_tokens_sent(), [rt(1)]);
    // A Retry-After of 30 s at t + 11 s: the retry and its write would run from t + 41 s
    // to t + 61 s.
    a.answer(t + 11 * SECOND, status(503).retry_after("30"));
    let retry_at = a.deadline().unwrap();
    assert_eq!(retry_at, t + 41 * SECOND);
    a.timeout(retry_at);
    assert_eq!(
        a.count(Endpoint::Refresh),
        1,
        "a retry that would end at t + 61 s went out under a lease that ran out at t + 60.6 s"
    );
    assert_eq!(a.failure(f).code(), "TIMEOUT");
    assert!(store.holder(t + TTL, &key).is_none());
}

#[test]
fn a_holder_whose_storage_was_slow_does_not_send_an_attempt_that_would_outlive_its_lease() {
    // No retries: the lease lives 4 × 10 s. The acquire and the second look take 9.9 s and
    // 11 s (a slow store's answer arriving after its deadline is still taken), so the attempt
    // could only start at t + 20.9 s, and it and its write run till t + 40.9 s, past the
    // lease's end at t + 40 s (when another instance may take it and send the same token).
    let p1 = Pair::issued(1, EPOCH);
    let mut store = MemoryStore::default();
    let mut server = Server::default();
    let mut a = lease_run(|o| o.retries = Some(0.0));
    let mut b = lease_run(|o| o.retries = Some(0.0));
    a.logged_in(EPOCH, &p1);
    let key = a.m.config().storage_key();
    store.records.insert(key.clone(), a.puts()[0].clone());
    server.issued = 1;
    restored(&mut b, &mut store, EPOCH);

    let t = EPOCH + MINUTE;
    let fa = wait(a.refresh(t));
    assert_eq!(serve_one(&mut a, &mut store, t), "get");
    let acquire = a.storage_ops()[0].clone();
    assert_eq!(ttl_of(&acquire), 4 * TIMEOUT);
    let granted = store.answer_at(t, &acquire);
    a.answer_storage(t + 9_900, op_id(&acquire), granted);
    let look = a.storage_ops()[0].clone();
    let current = store.answer_at(t + 9_900, &look);
    a.answer_storage(t + 20_900, op_id(&look), current);
    assert_eq!(
        a.refresh_tokens_sent(),
        [] as [String; 0],
        "an attempt and its write from t + 20.9 s to t + 40.9 s under a lease that ends at t + 40 s"
    );
    assert_eq!(a.failure(fa).code(), "TIMEOUT");
    assert_eq!(kinds(&a.log[a.log.len() - 2..]), ["release", "failed"]);
    a.serve(t + 18 * SECOND, &mut store);
    assert!(store.holder(t + 18 * SECOND, &key).is_none(), "given back");

    // B, due meanwhile, takes the lease and refreshes alone.
    let fb = wait(b.refresh(t + 18 * SECOND));
    b.serve(t + 18 * SECOND, &mut store);
    server.answer(&mut b, t + 19 * SECOND);
    b.serve(t + 19 * SECOND, &mut store);
    assert_eq!(b.settled(fb), Outcome::Done);
    assert_eq!(server.received, [rt(1)]);
    assert_each_refresh_token_sent_once(&[&a, &b]);
}

// ----- instances sharing one store ------------------------------------------------------------

#[test]
fn of_four_instances_due_at_once_the_lease_holder_alone_refreshes_and_the_others_adopt_its_pair() {
    let mut store = MemoryStore::default();
    let mut server = Server::default();
    let mut runs = fleet(4, &mut server, &mut store);
    let key = runs[0].m.config().storage_key();

    // Inside the refresh margin every instance needs a new token at once.
    let t = EPOCH + HOUR - MARGIN + SECOND;
    let flights: Vec<_> = runs.iter_mut().map(|r| wait_token(r.ask(t, Need::Strict))).collect();
    for r in runs.iter_mut() {
        r.serve(t, &mut store);
    }
    assert_eq!(
        runs[0].refresh_tokens_sent(),
        [rt(1)],
        "the first to ask holds the lease"
    );
    for (r, f) in runs[1..].iter_mut().zip(&flights[1..]) {
        assert_eq!(r.acquires(), [TTL as u32], "each asked for the lease once");
        assert!(!r.has_open_send());
        // Their token is still valid: their callers stop waiting and go out with it now,
        // leaving the refresh to the holder.
        assert_eq!(r.settled(*f), Outcome::Again);
        assert_eq!(r.token_now(t).unwrap(), at(1));
    }
    assert_eq!(store.holder(t, &key), Some("lease-1"));

    // The others look again while the holder's request is out, and are refused again.
    {
        let mut all: Vec<&mut Run> = runs.iter_mut().collect();
        run_until(&mut all, &mut store, t + 250);
    }
    for r in &runs[1..] {
        assert_eq!(r.acquires().len(), 2, "a look at +100 ms, refused again");
    }

    // The holder's pair comes back, is written, and the lease is given back.
    server.answer(&mut runs[0], t + 250);
    runs[0].serve(t + 250, &mut store);
    assert_eq!(runs[0].settled(flights[0]), Outcome::Done);
    assert_eq!(runs[0].releases(), ["lease-1"]);
    assert_eq!(store.holder(t + 250, &key), None);
    assert_eq!(store.version(&key), Some(2));

    // At their next look the others find it and adopt it.
    {
        let mut all: Vec<&mut Run> = runs.iter_mut().collect();
        run_until(&mut all, &mut store, t + 10 * SECOND);
    }
    for (i, (r, f)) in runs.iter_mut().zip(&flights).enumerate() {
        let first = if i == 0 { Outcome::Done } else { Outcome::Again };
        assert_eq!(r.settled(*f), first);
        assert_eq!(r.token_now(t + 300).unwrap(), at(2));
        assert_eq!(r.deadline(), None, "nothing left to do");
    }
    assert_eq!(runs[0].token_reasons(), [Reason::Login, Reason::Refresh]);
    for r in &runs[1..] {
        assert_eq!(r.token_reasons(), [Reason::Restore, Reason::Adopt]);
        assert_eq!(r.sends(), [], "a waiter sends nothing");
        assert_eq!(r.releases(), [] as [String; 0], "and never held a lease");
        assert_eq!(r.puts(), [] as [String; 0], "nor writes the pair it adopted");
        assert_eq!(r.errors(), []);
    }
    assert_eq!((server.received.len(), server.rejected), (1, 0));
    assert_each_refresh_token_sent_once(&runs.iter().collect::<Vec<_>>());
    assert_eq!(store.granted, 1, "one lease in all");
}

#[test]
fn instances_that_take_turns_rotate_once_each_and_never_spend_a_token_twice() {
    // Three instances, each due in turn over a day of rotations, with the others adopting.
    let mut store = MemoryStore::default();
    let mut server = Server::default();
    let mut runs = fleet(3, &mut server, &mut store);
    let mut t = EPOCH;
    for round in 0..12u32 {
        t += HOUR - MARGIN + SECOND;
        let mut flights = Vec::new();
        // All due; the one that asks first varies.
        for k in 0..3 {
            let i = (round as usize + k) % 3;
            flights.push((i, wait(runs[i].refresh(t))));
            runs[i].serve(t, &mut store);
        }
        let holder = round as usize % 3;
        server.answer(&mut runs[holder], t + 20);
        runs[holder].serve(t + 20, &mut store);
        {
            let mut all: Vec<&mut Run> = runs.iter_mut().collect();
            run_until(&mut all, &mut store, t + 5 * SECOND);
        }
        for (i, f) in flights {
            assert_eq!(runs[i].settled(f), Outcome::Done, "round {round}, instance {i}");
            assert_eq!(runs[i].token_now(t + 5 * SECOND).unwrap(), at(round + 2));
        }
        t += 5 * SECOND;
    }
    assert_eq!((server.received.len(), server.rejected), (12, 0));
    assert_each_refresh_token_sent_once(&runs.iter().collect::<Vec<_>>());
    for r in &runs {
        assert_eq!(r.count(Endpoint::Refresh), 4);
        assert_eq!(r.releases().len(), 4, "every lease taken was given back");
    }
}

#[test]
fn a_holder_that_dies_before_sending_loses_the_lease_after_its_ttl_and_another_refreshes() {
    let mut store = MemoryStore::default();
    let mut server = Server::default();
    let mut runs = fleet(3, &mut server, &mut store);
    let (mut b, mut c) = (runs.pop().unwrap(), runs.pop().unwrap());
    let mut a = runs.pop().unwrap();
    let key = a.m.config().storage_key();

    // A takes the lease at t and dies during its second look: nothing was sent.
    let t = EPOCH + MINUTE;
    wait(a.refresh(t));
    assert_eq!(serve_one(&mut a, &mut store, t), "get");
    assert_eq!(serve_one(&mut a, &mut store, t), "acquire");
    assert!(a.has_open_op("get"));
    assert_eq!(a.sends().len(), 1, "the login only");
    drop(a);
    assert_eq!(store.holder(t, &key), Some("lease-1"));

    // B and C are due a second later; the lease is A's till t + 40 s.
    let fb = wait(b.refresh(t + SECOND));
    let fc = wait(c.refresh(t + SECOND));
    b.serve(t + SECOND, &mut store);
    c.serve(t + SECOND, &mut store);
    let (i, sent_at) = run_until_send(&mut [&mut b, &mut c], &mut store, t + 2 * TTL);
    assert_eq!(i, 0, "B asked first after the lease ran out");
    assert!(
        (t + TTL..t + TTL + SECOND).contains(&sent_at),
        "sent {} ms after the dead holder took the lease",
        sent_at - t
    );
    assert_eq!(store.holder(sent_at, &key), Some("lease-2"));
    server.answer(&mut b, sent_at + 100);
    b.serve(sent_at + 100, &mut store);
    run_until(&mut [&mut b, &mut c], &mut store, sent_at + 10 * SECOND);
    assert_eq!((b.settled(fb), c.settled(fc)), (Outcome::Done, Outcome::Done));
    assert_eq!(b.token_now(sent_at + 10 * SECOND).unwrap(), at(2));
    assert_eq!(c.token_now(sent_at + 10 * SECOND).unwrap(), at(2));
    assert_eq!(c.token_reasons(), [Reason::Restore, Reason::Adopt]);
    assert_eq!(b.releases(), ["lease-2"]);
    assert_eq!((server.received.clone(), server.rejected), (vec![rt(1)], 0));
    assert_each_refresh_token_sent_once(&[&b, &c]);
}

#[test]
fn a_holder_whose_request_hangs_and_whose_timers_never_run_loses_the_lease_after_its_ttl() {
    // A frozen isolate: A's refresh is on the wire and nothing of A runs any more. The
    // request never reached the server, so the next holder's refresh with rt1 succeeds.
    let mut store = MemoryStore::default();
    let mut server = Server::default();
    let mut runs = fleet(2, &mut server, &mut store);
    let mut b = runs.pop().unwrap();
    let mut a = runs.pop().unwrap();
    let key = a.m.config().storage_key();
    let t = EPOCH + MINUTE;
    wait(a.refresh(t));
    a.serve(t, &mut store);
    assert_eq!(a.refresh_tokens_sent(), [rt(1)]);

    let fb = wait(b.refresh(t + 500));
    b.serve(t + 500, &mut store);
    let (_, sent_at) = run_until_send(&mut [&mut b], &mut store, t + 2 * TTL);
    assert!((t + TTL..t + TTL + SECOND).contains(&sent_at), "{}", sent_at - t);
    assert_eq!(b.acquires().last(), Some(&(TTL as u32)));
    server.answer(&mut b, sent_at);
    b.serve(sent_at, &mut store);
    assert_eq!(b.settled(fb), Outcome::Done);
    assert_eq!(store.holder(sent_at, &key), None);
    assert_eq!((server.received.clone(), server.rejected), (vec![rt(1)], 0));
    drop(a);
}

#[test]
fn a_holder_that_dies_after_the_server_rotated_leaves_a_spent_token_and_the_next_holder_logs_in_once() {
    // A's refresh reached the server (rt1 rotated to pair 2) and A died before writing it.
    // The next holder, after the lease ran out, finds nothing newer, sends rt1, is refused
    // and, with credentials, logs in once; the third instance adopts that login's pair.
    let mut store = MemoryStore::default();
    let mut server = Server::default();
    let mut runs = fleet(3, &mut server, &mut store);
    let (mut c, mut b) = (runs.pop().unwrap(), runs.pop().unwrap());
    let mut a = runs.pop().unwrap();
    let key = a.m.config().storage_key();
    let t = EPOCH + MINUTE;
    wait(a.refresh(t));
    a.serve(t, &mut store);
    let lost = server.receive(&a, t + 100);
    assert!(lost.is_ok());
    drop(a);

    let fb = wait(b.refresh(t + SECOND));
    let fc = wait(c.refresh(t + 2 * SECOND));
    b.serve(t + SECOND, &mut store);
    c.serve(t + 2 * SECOND, &mut store);
    let (i, sent_at) = run_until_send(&mut [&mut b, &mut c], &mut store, t + 2 * TTL);
    assert_eq!(i, 0);
    assert!(sent_at >= t + TTL);
    assert_eq!(b.refresh_tokens_sent(), [rt(1)]);
    server.answer(&mut b, sent_at);
    assert_eq!(server.rejected, 1, "the dead holder's rt1 was spent");
    // The adoption read finds nothing newer: a login, still under B's lease.
    b.serve(sent_at, &mut store);
    assert_eq!(b.open_send().endpoint, Endpoint::Login);
    assert_eq!(store.holder(sent_at, &key), Some("lease-2"));
    server.answer(&mut b, sent_at + 100);
    b.serve(sent_at + 100, &mut store);
    assert_eq!(b.settled(fb), Outcome::Done);
    assert_eq!(b.releases(), ["lease-2"]);
    assert_eq!(store.holder(sent_at + 100, &key), None);
    run_until(&mut [&mut b, &mut c], &mut store, sent_at + 10 * SECOND);
    assert_eq!(c.settled(fc), Outcome::Done);

    // Pair 2 went to the dead A; B logged in for pair 3 and C adopted it.
    assert_eq!(b.token_now(sent_at + 10 * SECOND).unwrap(), at(3));
    assert_eq!(c.token_now(sent_at + 10 * SECOND).unwrap(), at(3));
    assert_eq!(b.token_reasons(), [Reason::Restore, Reason::Login]);
    assert_eq!(c.token_reasons(), [Reason::Restore, Reason::Adopt]);
    assert_eq!(b.event_count("expired"), 0, "a re-login that works ends nothing");
    // One login (besides the fleet's first), rt1 received twice: the dead holder's and the
    // refused one; no other token twice, no other refusal.
    assert_eq!(server.logins, 2);
    assert_eq!((server.received.clone(), server.rejected), (vec![rt(1), rt(1)], 1));
    assert_each_refresh_token_sent_once(&[&b, &c]);
    assert_eq!(c.sends(), []);
}

#[test]
fn without_credentials_the_next_holder_after_a_spent_token_ends_the_session_and_gives_the_lease_back() {
    let mut store = MemoryStore::default();
    let mut server = Server::default();
    let mut a = lease_run(|_| {});
    let mut b = lease_run(|_| {});
    log_in(&mut a, &mut server, &mut store, EPOCH);
    restored(&mut b, &mut store, EPOCH);
    let key = a.m.config().storage_key();
    let t = EPOCH + MINUTE;
    wait(a.refresh(t));
    a.serve(t, &mut store);
    let _ = server.receive(&a, t);
    drop(a);

    let fb = wait(b.refresh(t + SECOND));
    b.serve(t + SECOND, &mut store);
    let (_, sent_at) = run_until_send(&mut [&mut b], &mut store, t + 2 * TTL);
    server.answer(&mut b, sent_at);
    b.serve(sent_at, &mut store);
    assert_eq!(b.failure(fb).code(), "SESSION_EXPIRED");
    assert_eq!(b.event_count("expired"), 1);
    assert_eq!(b.releases(), ["lease-2"]);
    assert_eq!(store.holder(sent_at, &key), None);
}

#[test]
fn a_holder_that_gives_up_lets_a_waiter_take_the_lease_at_once_a_disposed_one_lets_it_run_out() {
    // Released leases do not make the others wait for the time to live.
    let mut store = MemoryStore::default();
    let mut server = Server::default();
    let mut runs = fleet(3, &mut server, &mut store);
    let (mut c, mut b) = (runs.pop().unwrap(), runs.pop().unwrap());
    let mut a = runs.pop().unwrap();
    let t = EPOCH + MINUTE;
    wait(a.refresh(t));
    a.serve(t, &mut store);
    let fb = wait(b.refresh(t));
    b.serve(t, &mut store);
    assert_eq!(b.acquires().len(), 1);

    // A is disposed with its request out: that request may have reached the server, so its
    // lease runs out rather than being given back; B takes over at the time to live.
    a.dispose();
    a.serve(t + 50, &mut store);
    assert!(a.releases().is_empty());
    let (i, sent_at) = run_until_send(&mut [&mut b], &mut store, t + 2 * TTL);
    assert_eq!(i, 0);
    assert!(
        sent_at >= t + TTL && sent_at <= t + TTL + SECOND,
        "B sent at {} ms",
        sent_at - t
    );

    // The server fails B's attempts: B retries, gives up, gives the lease back, and C, due
    // meanwhile, takes it at its next look.
    let fc = wait(c.refresh(t + 200));
    c.serve(t + 200, &mut store);
    assert_eq!(c.acquires().len(), 1);
    b.answer(t + 300, status(500));
    let mut now = t + 300;
    while b.outcome(fb).is_none() {
        now = b.fire();
        if b.has_open_send() {
            b.answer(now, status(500));
        }
    }
    b.serve(now, &mut store);
    assert_eq!(b.failure(fb).status(), 500);
    assert_eq!(b.releases(), ["lease-2"]);
    let (_, c_sent) = run_until_send(&mut [&mut c], &mut store, now + TTL);
    assert!(c_sent <= now + SECOND, "C waited {} ms after the release", c_sent - now);
    server.answer(&mut c, c_sent);
    c.serve(c_sent, &mut store);
    assert_eq!(c.settled(fc), Outcome::Done);
    assert_eq!(c.releases(), ["lease-3"]);
    assert_eq!(server.rejected, 0);
}

#[test]
fn an_acquire_answered_with_garbage_is_reported_and_the_refresh_goes_out_without_a_lease() {
    let p1 = Pair::issued(1, EPOCH);
    let mut r = lease_run(|_| {});
    r.logged_in(EPOCH, &p1);
    let t = EPOCH + MINUTE;
    let f = wait(r.refresh(t));
    r.looked(t, p1.stored());
    let out = r.answer_acquire(t, StorageReply::Garbage);
    assert_eq!(kinds(&out), ["error", "refresh"]);
    assert_eq!(r.refresh_tokens_sent(), [rt(1)]);
    r.answer(t, ok(&Pair::issued(2, t)));
    r.answer_put(t, StorageReply::Empty);
    assert_eq!(r.settled(f), Outcome::Done);
    assert!(r.releases().is_empty(), "no lease was held");
}

// ----- look before login: cold instances ------------------------------------------------------

/// A cold instance's first call: it asks for a token with nothing held.
fn cold_call(r: &mut Run, now: i64) -> FlightId {
    wait_token(r.ask(now, Need::Lenient))
}

#[test]
fn a_cold_instance_adopts_the_stored_pair_instead_of_logging_in() {
    let mut server = Server::default();
    let mut store = MemoryStore::default();
    let mut first = creds_lease_run();
    log_in(&mut first, &mut server, &mut store, EPOCH);
    // A new process: no restore() called, the first call finds the pair in storage.
    let mut cold = creds_lease_run();
    let f = cold_call(&mut cold, EPOCH + MINUTE);
    assert_eq!(since(&cold, 0), ["get"], "it looks before it logs in");
    cold.serve(EPOCH + MINUTE, &mut store);
    assert_eq!(cold.settled(f), Outcome::Done);
    assert_eq!(cold.token_now(EPOCH + MINUTE).unwrap(), at(1));
    assert_eq!(cold.count(Endpoint::Login), 0);
    assert_eq!(cold.token_reasons(), [Reason::Adopt]);
    assert_eq!(server.logins, 1);
}

#[test]
fn n_cold_instances_make_one_login_under_the_lease_and_the_others_adopt_its_record() {
    let mut server = Server::default();
    let mut store = MemoryStore::default();
    let mut runs: Vec<Run> = (0..5).map(|_| creds_lease_run()).collect();
    let flights: Vec<FlightId> = runs.iter_mut().map(|r| cold_call(r, EPOCH)).collect();
    // Every instance looks (nothing stored), then asks for the lease: one gets it.
    for r in &mut runs {
        r.serve(EPOCH, &mut store);
    }
    let holders: Vec<usize> = (0..5).filter(|&i| runs[i].has_open_send()).collect();
    assert_eq!(holders.len(), 1, "one login on the wire");
    let h = holders[0];
    assert_eq!(runs[h].open_send().endpoint, Endpoint::Login);
    let t = EPOCH + 50;
    server.answer(&mut runs[h], t);
    runs[h].serve(t, &mut store);
    assert_eq!(runs[h].settled(flights[h]), Outcome::Done);
    assert!(
        store.version(&runs[h].m.config().storage_key()).is_some(),
        "written under the lease"
    );
    // The others look again after their pause and adopt the holder's pair.
    let mut refs: Vec<&mut Run> = runs.iter_mut().collect();
    run_until(&mut refs, &mut store, EPOCH + TIMEOUT);
    for (i, r) in runs.iter_mut().enumerate() {
        assert_eq!(r.settled(flights[i]), Outcome::Done, "instance {i}");
        assert_eq!(r.token_now(EPOCH + TIMEOUT).unwrap(), at(1), "instance {i}");
        assert_eq!(r.count(Endpoint::Login), usize::from(i == h));
    }
    assert_eq!(server.logins, 1);
    assert_eq!(
        store.holder(EPOCH + TIMEOUT, &runs[0].m.config().storage_key()),
        None,
        "the lease went back"
    );
}

#[test]
fn a_cold_instance_waits_at_most_timeout_ms_for_a_holder_that_never_writes_then_logs_in_itself() {
    let mut server = Server::default();
    let mut store = MemoryStore::default();
    let mut dead = creds_lease_run();
    let mut cold = creds_lease_run();
    let _ = cold_call(&mut dead, EPOCH);
    dead.serve(EPOCH, &mut store);
    assert!(
        dead.has_open_send(),
        "the first instance holds the lease and logs in..."
    );
    drop(dead); // ...and dies there (kill -9): its lease stays until its time to live.
    let f = cold_call(&mut cold, EPOCH + 1);
    cold.serve(EPOCH + 1, &mut store);
    assert!(!cold.has_open_send(), "the lease is held: it waits");
    let (_, t) = run_until_send(&mut [&mut cold], &mut store, EPOCH + 2 * TIMEOUT);
    let waited = t - (EPOCH + 1);
    assert!((TIMEOUT..=TIMEOUT + 1_000).contains(&waited), "waited {waited} ms");
    assert_eq!(cold.open_send().endpoint, Endpoint::Login);
    server.answer(&mut cold, t);
    cold.serve(t, &mut store);
    assert_eq!(cold.settled(f), Outcome::Done);
    assert_eq!(cold.token_now(t).unwrap(), at(1));
}

#[test]
fn an_explicit_login_always_logs_in_without_looking() {
    let mut server = Server::default();
    let mut store = MemoryStore::default();
    let mut first = creds_lease_run();
    log_in(&mut first, &mut server, &mut store, EPOCH);
    let mut second = creds_lease_run();
    let f = second.login(EPOCH + 1);
    assert_eq!(since(&second, 0), ["login"], "no look, no lease: an explicit login");
    server.answer(&mut second, EPOCH + 1);
    second.serve(EPOCH + 1, &mut store);
    assert_eq!(second.settled(f), Outcome::Done);
    assert_eq!(server.logins, 2);
}

#[test]
fn a_stored_pair_older_than_one_this_session_held_is_not_adopted_before_a_re_login() {
    let mut server = Server::default();
    let mut store = MemoryStore::default();
    let mut r = creds_lease_run();
    log_in(&mut r, &mut server, &mut store, EPOCH);
    let old = store.records.clone();
    // The session moves on to pair 2 (its record written), then the store rolls back.
    let f = wait(r.refresh(EPOCH + MINUTE));
    r.serve(EPOCH + MINUTE, &mut store);
    server.answer(&mut r, EPOCH + MINUTE);
    r.serve(EPOCH + MINUTE, &mut store);
    assert_eq!(r.settled(f), Outcome::Done);
    store.records = old;
    // Pair 2's refresh token expires: the quiet re-login looks, finds pair 1 (older), logs in.
    let t = EPOCH + 8 * DAY;
    let f = cold_call(&mut r, t);
    r.serve(t, &mut store);
    assert_eq!(r.open_send().endpoint, Endpoint::Login);
    server.answer(&mut r, t);
    r.serve(t, &mut store);
    assert_eq!(r.settled(f), Outcome::Done);
    assert!(!r.token_reasons().contains(&Reason::Adopt));
}

// ----- waiting has bounds ---------------------------------------------------------------------

#[test]
fn the_lease_lives_lease_ms_when_set_and_never_less_than_one_attempt_and_the_write() {
    let p1 = Pair::issued(1, EPOCH);
    let mut r = lease_run(|o| o.lease_ms = Some(45_000.0));
    r.logged_in(EPOCH, &p1);
    wait(r.refresh(EPOCH + MINUTE));
    r.looked(EPOCH + MINUTE, p1.stored());
    assert_eq!(r.acquires(), [45_000]);
    for bad in [0.0, 39_999.0, 1.5e10, f64::NAN] {
        let mut o = options();
        o.lease_ms = Some(bad);
        let e = o.validate().unwrap_err();
        assert_eq!(e.code(), "CONFIG_ERROR");
        assert!(e.message().starts_with("leaseMs"), "{}", e.message());
    }
}

#[test]
fn with_an_expired_token_a_call_waits_for_another_holder_at_most_timeout_ms() {
    let p1 = Pair::issued(1, EPOCH);
    let mut r = lease_run(|o| o.timeout_ms = Some(2_000.0));
    r.logged_in(EPOCH, &p1);
    // The access token has expired: the call cannot go out without a new one.
    let t = EPOCH + HOUR + 1;
    let f = wait_token(r.ask(t, Need::Lenient));
    r.looked(t, p1.stored());
    r.answer_acquire(t, StorageReply::Empty);
    let mut now = t;
    while r.outcome(f).is_none() {
        now = r.fire();
        r.looked(now, p1.stored());
        if r.has_open_op("acquire") {
            r.answer_acquire(now, StorageReply::Empty);
        }
    }
    assert!(now - t <= 2_000 + 1_000, "waited {} ms", now - t);
    assert_eq!(r.failure(f).code(), "TIMEOUT");
    assert_eq!(r.count(Endpoint::Refresh), 0);
}

#[test]
fn with_a_valid_token_a_call_inside_the_margin_never_waits_for_another_holder() {
    let p1 = Pair::issued(1, EPOCH);
    let mut r = lease_run(|_| {});
    r.logged_in(EPOCH, &p1);
    let t = EPOCH + HOUR - MARGIN + SECOND;
    let f = wait_token(r.ask(t, Need::Lenient));
    r.looked(t, p1.stored());
    r.answer_acquire(t, StorageReply::Empty);
    // Refused: the caller is released and goes out with the token it has.
    assert_eq!(r.settled(f), Outcome::Again);
    assert_eq!(ready(&r.ask(t, Need::Lenient)), at(1));
    assert_eq!(r.token_now(t + SECOND).unwrap(), at(1), "getAccessToken() too");
    // The look for the holder's pair goes on behind, and adopts it when stored.
    let now = r.fire();
    let outs = r.looked(now, Pair::issued(2, now).stored_as(2, None));
    assert!(kinds(&outs).contains(&"tokens"), "{:?}", kinds(&outs));
    assert_eq!(r.token_now(now).unwrap(), at(2));
    assert_eq!(r.count(Endpoint::Refresh), 0);
}

#[test]
fn a_replay_after_a_401_waits_for_another_holders_pair_and_never_resends_the_refused_token() {
    // Found by the fleet chaos runner: the API refuses the held token (its family was revoked
    // after a reuse elsewhere) while another instance holds the lease. The call's refresh is
    // refused the lease; the token has not expired, but the replay must not carry it again.
    use auth_session::core::machine::{ApiStep, Behind, Waited, Want};
    let p1 = Pair::issued(1, EPOCH);
    let mut r = lease_run(|_| {});
    r.logged_in(EPOCH, &p1);
    let t = EPOCH + MINUTE;
    let call = r.m.api_open("GET", "/v1/items", Want::Data, Behind::No).unwrap();
    assert!(matches!(
        r.m.api_token(t, call, Waited::Nothing, 0),
        TokenStep::Ready { .. }
    ));
    assert_eq!(r.m.api_response(t, call, 401, false, None), ApiStep::Token);
    let f = wait_token(r.m.api_token(t, call, Waited::Nothing, 0));
    r.drain();
    r.looked(t, p1.stored());
    r.answer_acquire(t, StorageReply::Empty);
    assert_eq!(
        r.outcome(f),
        None,
        "a caller whose token was refused is not released to it"
    );
    // The holder stores pair 2: the next look adopts it, and the replay carries it.
    let now = r.fire();
    r.looked(now, Pair::issued(2, now).stored_as(2, None));
    assert_eq!(r.settled(f), Outcome::Done);
    match r.m.api_token(now, call, waited(&r.settled(f)), 1) {
        TokenStep::Ready { token, .. } => assert_eq!(token.expose(), at(2)),
        other => panic!("{other:?}"),
    }
    // A token call that asks for a replay of the refused pair waits too, and at most
    // timeoutMs for a holder that never writes.
    let mut r = lease_run(|o| o.timeout_ms = Some(2_000.0));
    r.logged_in(EPOCH, &p1);
    let serial = serial(&r.ask(t, Need::Lenient));
    let f = wait_token(r.token_after_401(t, serial));
    r.looked(t, p1.stored());
    r.answer_acquire(t, StorageReply::Empty);
    let g = wait_token(r.token(t, Need::Replay, Waited::Nothing, 1));
    assert_eq!(f, g, "the replay joins the refresh, it is not handed the refused token");
    let mut now = t;
    while r.outcome(f).is_none() {
        now = r.fire();
        r.looked(now, p1.stored());
        if r.has_open_op("acquire") {
            r.answer_acquire(now, StorageReply::Empty);
        }
    }
    assert!(now - t <= 3_000, "waited {} ms", now - t);
    assert_eq!(r.failure(f).code(), "TIMEOUT");
}
