//! Property tests of the session machine: random interleavings of user calls, server
//! answers, storage answers and time, with the invariants checked after every step.
//!
//! A case drives one [`Run`] the way the JavaScript driver would: every caller whose flight
//! settled asks the machine again at once (`token` with what it waited for, `rejoin` after an
//! `Again`), answers go to the open request or storage call, and time moves only forward.
//! The server is modelled just enough to know which refresh tokens it spent and which it
//! revoked; the storage keeps what was written (and what other instances wrote), with the
//! rotation versions they would write, and hands out old records too (an eventually
//! consistent store), records of another host or account and records of the previous
//! format, none of which may ever be installed. At the end a quiesce phase answers
//! everything and advances time until no work is left, and every flight handed out must
//! have settled exactly once.
//!
//! With a leasing storage the model also plays the store's lease: another instance may
//! take it first (then `acquire` answers `Empty` until its time to live is over, or until
//! it stores a pair), and only a free lease is granted. The machine must ask for the lease
//! only when it holds none, send a refresh only while it holds one (or after an `acquire`
//! failed) and only an attempt that ends within it, give back exactly the lease it holds,
//! never before the write of the pair it got under it, and hold none once all is done.
//! With the store granting one lease at a time, that makes at most one instance of a shared
//! store a refreshing holder at any time.
// Native only: the harness reads JSON with the core's native reader.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::collections::{HashMap, HashSet};

use auth_session::core::envelope::ApiBody;
use auth_session::core::fingerprint;
use auth_session::core::machine::{
    ApiFailure, ApiStep, AuthRequest, Behind, BodyFailure, CallId, Endpoint, Event, FlightId, IoFailure, IoId, Keep,
    Need, Outcome, Output, Persistence, Reason, Step, StorageOp, StorageReply, TokenStep, Waited, Wake, Want,
    MAX_ROUNDS,
};
use auth_session::core::Phase;
use common::*;
use proptest::prelude::*;

// ----- what a case is made of ----------------------------------------------------------------

#[derive(Clone, Debug)]
struct Setup {
    credentials: bool,
    storage: bool,
    /// The storage has `acquire`/`release` (only with `storage`).
    lease: bool,
    auto_refresh: bool,
    retries: u8,
    /// The server's clock minus ours; sent in a `Date` header with every answer.
    skew: i64,
    seed: u64,
}

/// Token lifetimes of the pairs the server issues.
#[derive(Clone, Copy, Debug)]
enum Ttl {
    /// The guide's: 1 hour and 7 days.
    Guide,
    /// Short-lived tokens: both die within minutes.
    Short { access: i64, refresh: i64 },
    /// A refresh token that has already expired: not a usable pair.
    Dead,
}

#[derive(Clone, Debug)]
enum Answer {
    Pair(Ttl),
    Unauthorized,
    Forbidden,
    Status(u16),
    RateLimited(Option<&'static str>),
    Network,
    NotAResponse,
    Garbage,
}

#[derive(Clone, Copy, Debug)]
enum Stored {
    /// What the storage holds now (the last successful write, ours or another instance's).
    Current,
    /// A pair another instance stored just now, one version above the newest record.
    Foreign,
    /// An old record: any the storage held before (an eventually consistent store).
    Stale(usize),
    /// A record with a higher version, of another host or (`true`) another account: absent
    /// for this session, except another account's when it has no credentials.
    Elsewhere(bool),
    /// A record of the previous format (v1): absent, and not an error.
    Legacy,
    Empty,
    Garbage,
    Failed,
}

#[derive(Clone, Debug)]
enum Act {
    Login {
        configured: bool,
    },
    Refresh,
    Token(Need),
    TokenAfter401,
    Revoke,
    Restore,
    Dispose,
    /// Answer the open auth request, if any.
    Auth(Answer),
    /// Answer a request that was already answered or cancelled.
    Late(usize, Answer),
    /// Answer the n-th open storage call (a `get` with `Stored`, a write with success or not).
    Storage(usize, Stored, bool),
    /// `handle_timeout` at the next deadline, `late` ms after it.
    Fire {
        late: i64,
    },
    /// Time passes without `handle_timeout` (the driver's timer has not run yet).
    Wait(i64),
    /// The process slept: time jumps, then `handle_timeout`.
    Sleep(i64),
    /// An API call (`fetch`/`json`) is made, answered or aborted.
    Api(ApiAct),
}

#[derive(Clone, Debug)]
enum ApiAct {
    Open {
        post: bool,
        json: bool,
        behind: bool,
    },
    /// Answer the n-th call that awaits an answer of that kind.
    Answer(usize, ApiAnswer),
    Abort(usize),
}

#[derive(Clone, Debug)]
enum ApiAnswer {
    Status(u16, Option<&'static str>),
    Network,
    NotAResponse,
    /// A 3xx to the host's origin or (`false`) another one, or without a Location.
    Redirect(u16, Option<bool>),
    /// The body of a `json()` call: an envelope, garbage, too large or unreadable.
    Body(u8),
}

fn api_act() -> impl Strategy<Value = Act> {
    let answer = prop_oneof![
        6 => (prop_oneof![Just(200u16), Just(201), Just(204), Just(304), Just(401), Just(404), Just(500), Just(502), Just(503), Just(429)],
              prop_oneof![Just(None), Just(Some("0")), Just(Some("2")), Just(Some("120")), Just(Some("soon"))])
            .prop_map(|(s, r)| ApiAnswer::Status(s, r)),
        2 => Just(ApiAnswer::Network),
        1 => Just(ApiAnswer::NotAResponse),
        2 => (prop_oneof![Just(301u16), Just(302), Just(303), Just(307)], prop_oneof![Just(Some(true)), Just(Some(false)), Just(None)])
            .prop_map(|(s, o)| ApiAnswer::Redirect(s, o)),
        3 => (0..4u8).prop_map(ApiAnswer::Body),
    ];
    prop_oneof![
        3 => (any::<bool>(), any::<bool>(), prop::bool::weighted(0.2))
            .prop_map(|(post, json, behind)| Act::Api(ApiAct::Open { post, json, behind })),
        8 => (any::<usize>(), answer).prop_map(|(i, a)| Act::Api(ApiAct::Answer(i, a))),
        1 => any::<usize>().prop_map(|i| Act::Api(ApiAct::Abort(i))),
    ]
}

fn need() -> impl Strategy<Value = Need> {
    prop_oneof![
        Just(Need::Strict),
        Just(Need::Lenient),
        Just(Need::Background),
        Just(Need::Replay)
    ]
}

fn ttl() -> impl Strategy<Value = Ttl> {
    prop_oneof![
        6 => Just(Ttl::Guide),
        3 => (1..=600i64, 1..=900i64).prop_map(|(a, r)| Ttl::Short { access: a * SECOND, refresh: r * SECOND }),
        1 => Just(Ttl::Dead),
    ]
}

fn answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        8 => ttl().prop_map(Answer::Pair),
        3 => Just(Answer::Unauthorized),
        1 => Just(Answer::Forbidden),
        2 => prop_oneof![Just(500u16), Just(502), Just(503)].prop_map(Answer::Status),
        2 => prop_oneof![Just(None), Just(Some("1")), Just(Some("0")), Just(Some("31")), Just(Some("soon"))]
            .prop_map(Answer::RateLimited),
        2 => Just(Answer::Network),
        1 => Just(Answer::NotAResponse),
        1 => Just(Answer::Garbage),
    ]
}

fn stored() -> impl Strategy<Value = Stored> {
    prop_oneof![
        4 => Just(Stored::Current),
        2 => Just(Stored::Foreign),
        1 => any::<usize>().prop_map(Stored::Stale),
        1 => any::<bool>().prop_map(Stored::Elsewhere),
        1 => Just(Stored::Legacy),
        2 => Just(Stored::Empty),
        1 => Just(Stored::Garbage),
        1 => Just(Stored::Failed),
    ]
}

fn act() -> impl Strategy<Value = Act> {
    act_with(6)
}

/// Acts, with storage answers weighted `storage` (of about 45).
fn act_with(storage: u32) -> impl Strategy<Value = Act> {
    prop_oneof![
        3 => any::<bool>().prop_map(|configured| Act::Login { configured }),
        2 => Just(Act::Refresh),
        4 => need().prop_map(Act::Token),
        2 => Just(Act::TokenAfter401),
        1 => Just(Act::Revoke),
        1 => Just(Act::Restore),
        1 => prop::bool::weighted(0.1).prop_map(|d| if d { Act::Dispose } else { Act::Refresh }),
        12 => answer().prop_map(Act::Auth),
        2 => (any::<usize>(), answer()).prop_map(|(i, a)| Act::Late(i, a)),
        storage => (any::<usize>(), stored(), prop::bool::weighted(0.8)).prop_map(|(i, s, ok)| Act::Storage(i, s, ok)),
        5 => prop_oneof![Just(0i64), 1..=2_000i64].prop_map(|late| Act::Fire { late }),
        2 => (1..=120_000i64).prop_map(Act::Wait),
        1 => prop_oneof![Just(HOUR), Just(2 * HOUR), Just(DAY), Just(8 * DAY)].prop_map(Act::Sleep),
    ]
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.7),
        0..=2u8,
        prop_oneof![4 => Just(0i64), 1 => Just(HOUR), 1 => Just(-HOUR), 1 => Just(5 * SECOND)],
        any::<u64>(),
    )
        .prop_map(|(credentials, storage, auto_refresh, retries, skew, seed)| Setup {
            credentials,
            storage,
            // Set by the lease property only: the strategy draws what it drew before, so
            // the saved regressions still replay the same cases.
            lease: false,
            auto_refresh,
            retries,
            skew,
            seed,
        })
}

// ----- the driver and the model --------------------------------------------------------------

/// The number of the pair a token belongs to (its `client_id` in these cases).
fn token_number(token: &str) -> i64 {
    token.rsplit('.').next().unwrap().parse().unwrap()
}

/// A caller waiting for a flight, and what it does when the flight ends.
#[derive(Clone, Copy, Debug)]
enum Caller {
    /// `login()` or `refresh()`: `rejoin` after an `Again`.
    Session,
    /// `revoke()` or `restore()`: never superseded.
    Final,
    /// A token call: asks again with what it waited for.
    Token { need: Need, round: u32 },
    /// An API call waiting for a token.
    Api { call: CallId, round: u32 },
}

/// Where an API call is, as the driver sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum CallAt {
    /// Waiting for a token (a flight).
    Token,
    /// Its attempt is out, due by `deadline`.
    Sending { deadline: i64 },
    /// `json()` reads the body, due by `deadline`.
    Reading { deadline: i64 },
    /// Waiting for the machine's wake (a retry's backoff, or after an abandoned attempt).
    Backoff,
}

struct Case {
    r: Run,
    setup: Setup,
    now: i64,
    /// Every pair the server issued, by number (its `client_id`).
    pairs: HashMap<i64, Pair>,
    issued: u32,
    /// Refresh tokens the server rotated or rejected, as the machine was told.
    spent: HashSet<String>,
    /// Tokens of pairs revoked.
    revoked: HashSet<String>,
    /// The running revoke's flight and the tokens it may still send.
    revoking: Option<(FlightId, HashSet<String>)>,
    /// The record the storage holds.
    store: Option<String>,
    /// Every record the storage held, for stale reads.
    history: Vec<String>,
    /// The highest version of any record the storage held.
    top: u64,
    /// The highest version of a record of this host and account read by the machine: every
    /// pair it stores goes above it.
    read_max: u64,
    /// The `client_id`s of pairs whose records the session must treat as absent.
    elsewhere: HashSet<i64>,
    callers: Vec<(FlightId, Caller)>,
    handed_out: HashSet<FlightId>,
    /// Requests answered or cancelled: a late answer to one must change nothing.
    dead: Vec<IoId>,
    last_serial: u32,
    /// Whether the machine has read a `Date` header yet (and so knows the server's clock).
    knows_clock: bool,
    /// An `expired` event was the last word on the session: the next must not be another.
    ended: bool,
    /// How many outputs of `r.log` were checked.
    checked: usize,
    /// Open `acquire` calls and when each was made (a lease runs from then at the latest).
    acquiring: HashMap<IoId, i64>,
    /// The lease the machine holds: its id and when it runs out.
    lease: Option<(String, i64)>,
    /// The last `acquire` failed or timed out: the refresh goes out without the lease.
    lease_failed: bool,
    /// A pair came in under the lease and has not been written yet.
    unwritten: bool,
    /// Until when another instance holds the lease (on our clock).
    foreign_until: i64,
    /// Leases granted to the machine.
    granted: u32,
    /// API calls in flight, as the driver sees them.
    calls: Vec<(CallId, CallAt)>,
    /// Wakes of API calls not acted on yet.
    wakes: Vec<(CallId, Wake)>,
    /// API calls ended, each once.
    ended_calls: HashSet<CallId>,
}

impl Case {
    fn new(setup: Setup) -> Case {
        let config = config(|o| {
            if setup.credentials {
                with_credentials(o);
            }
            o.auto_refresh = Some(setup.auto_refresh);
            o.retries = Some(setup.retries as f64);
        });
        let persistence = match (setup.storage, setup.lease) {
            (false, _) => Persistence::MemoryOnly,
            (true, false) => Persistence::Storage,
            (true, true) => Persistence::StorageWithLease,
        };
        Case {
            r: Run::with_persistence(config, persistence, setup.seed),
            setup,
            now: EPOCH,
            pairs: HashMap::new(),
            issued: 0,
            spent: HashSet::new(),
            revoked: HashSet::new(),
            revoking: None,
            store: None,
            history: Vec::new(),
            top: 0,
            read_max: 0,
            elsewhere: HashSet::new(),
            callers: Vec::new(),
            handed_out: HashSet::new(),
            dead: Vec::new(),
            last_serial: 0,
            knows_clock: false,
            ended: false,
            checked: 0,
            acquiring: HashMap::new(),
            lease: None,
            lease_failed: false,
            unwritten: false,
            foreign_until: i64::MIN,
            granted: 0,
            calls: Vec::new(),
            wakes: Vec::new(),
            ended_calls: HashSet::new(),
        }
    }

    // ----- API calls, driven as session.js drives them ----------------------------------------

    fn call_at(&self, call: CallId) -> Option<usize> {
        self.calls.iter().position(|(c, _)| *c == call)
    }

    fn set_call(&mut self, call: CallId, at: CallAt) {
        let i = self.call_at(call).expect("a live call");
        self.calls[i].1 = at;
    }

    /// The call ended: once, and nobody waits for it any more.
    fn end_call(&mut self, call: CallId, error: Option<&auth_session::core::AuthError>) {
        assert!(self.ended_calls.insert(call), "API call {call} ended twice");
        if let Some(i) = self.call_at(call) {
            self.calls.swap_remove(i);
        }
        self.callers
            .retain(|(_, c)| !matches!(c, Caller::Api { call: c, .. } if *c == call));
        if let Some(e) = error {
            assert_no_secret(e.message());
            for t in self.revoked.iter().chain(self.spent.iter()) {
                assert!(!e.message().contains(t.as_str()), "an API error names a token");
            }
        }
    }

    fn api_token(&mut self, call: CallId, waited: Waited, round: u32) {
        let step = self.r.m.api_token(self.now, call, waited, round);
        self.r.drain();
        match step {
            TokenStep::Ready { token, .. } => {
                assert!(!self.r.m.is_disposed(), "a token for an API call after dispose()");
                assert!(
                    !self.revoked.contains(token.expose()),
                    "a revoked access token sent by an API call"
                );
                let deadline = self.now + self.timeout_ms();
                self.set_call(call, CallAt::Sending { deadline });
            }
            TokenStep::Wait(f) => {
                assert!(round <= MAX_ROUNDS + 1, "an API call waited {round} times: a loop");
                self.set_call(call, CallAt::Token);
                self.handed(f, Caller::Api { call, round });
            }
            TokenStep::Fail(e) => self.end_call(call, Some(&e)),
            TokenStep::Rethrow => self.end_call(call, None),
        }
    }

    fn on_api(&mut self, call: CallId, step: ApiStep, json: bool, deadline: i64) {
        match step {
            ApiStep::Return => {
                assert!(!json || self.r.m.api_calls() < usize::MAX);
                self.end_call(call, None)
            }
            ApiStep::Data | ApiStep::Nothing | ApiStep::Whole => self.end_call(call, None),
            ApiStep::Fail(e) => self.end_call(call, Some(&e)),
            ApiStep::Read => self.set_call(call, CallAt::Reading { deadline }),
            ApiStep::Follow { .. } | ApiStep::Token => self.api_token(call, Waited::Nothing, 0),
            ApiStep::Wait => self.set_call(call, CallAt::Backoff),
            ApiStep::Locate => panic!("Locate is answered by the caller of on_api"),
            ApiStep::Gone => panic!("API call {call}: an answer to a live attempt was ignored"),
        }
    }

    fn api(&mut self, act: &ApiAct) {
        let now = self.now;
        match act {
            ApiAct::Open { post, json, behind } => {
                let method = if *post { "POST" } else { "GET" };
                let want = if *json { Want::Data } else { Want::Response };
                let behind = if *behind { Behind::WaitUntil } else { Behind::No };
                match self.r.m.api_open(method, "/v1/items", want, behind) {
                    Ok(call) => {
                        assert!(!self.r.m.is_disposed(), "an API call opened after dispose()");
                        self.calls.push((call, CallAt::Token));
                        self.api_token(call, Waited::Nothing, 0);
                    }
                    Err(e) => assert_eq!(e.code(), "DISPOSED"),
                }
            }
            ApiAct::Abort(i) => {
                if self.calls.is_empty() {
                    return;
                }
                let (call, _) = self.calls[i % self.calls.len()];
                let e = self.r.m.api_abort(call).expect("a live call can be aborted");
                self.r.drain();
                assert_eq!(e.code(), "ABORTED");
                self.end_call(call, Some(&e));
            }
            ApiAct::Answer(i, answer) => {
                let body = matches!(answer, ApiAnswer::Body(_));
                let waiting: Vec<(CallId, i64)> = self
                    .calls
                    .iter()
                    .filter_map(|(c, at)| match (at, body) {
                        (CallAt::Sending { deadline }, false) | (CallAt::Reading { deadline }, true) => {
                            Some((*c, *deadline))
                        }
                        _ => None,
                    })
                    .collect();
                if waiting.is_empty() {
                    return;
                }
                let (call, deadline) = waiting[i % waiting.len()];
                // The driver reports only answers that beat the attempt's deadline (the
                // machine's wake ends a late one first).
                if now >= deadline {
                    return;
                }
                let step = match answer {
                    ApiAnswer::Status(status, retry_after) => {
                        self.r.m.api_response(now, call, *status, false, *retry_after)
                    }
                    ApiAnswer::Network => self.r.m.api_failed(now, call, ApiFailure::Network(None)),
                    ApiAnswer::NotAResponse => self.r.m.api_failed(now, call, ApiFailure::NotAResponse),
                    ApiAnswer::Redirect(status, to) => {
                        let step = self.r.m.api_response(now, call, *status, false, None);
                        self.r.drain();
                        assert_eq!(step, ApiStep::Locate);
                        let origin = to.map(|same| if same { HOST } else { "https://evil.test" });
                        self.r.m.api_location(call, origin)
                    }
                    ApiAnswer::Body(kind) => {
                        let envelope = ApiBody {
                            json: true,
                            success: Some(true),
                            has_data: true,
                            ..ApiBody::default()
                        };
                        let garbage = ApiBody::default();
                        match kind {
                            0 => self.r.m.api_body(call, Ok(&envelope)),
                            1 => self.r.m.api_body(call, Ok(&garbage)),
                            2 => self.r.m.api_body(call, Err(BodyFailure::TooLarge)),
                            _ => self.r.m.api_body(call, Err(BodyFailure::Network(None))),
                        }
                    }
                };
                self.r.drain();
                self.on_api(call, step, true, deadline);
            }
        }
    }

    /// Acts on the wakes the machine sent to API calls.
    fn wake_calls(&mut self) {
        while !self.wakes.is_empty() {
            let (call, wake) = self.wakes.remove(0);
            let at = self.call_at(call).map(|i| self.calls[i].1);
            match wake {
                Wake::Abandon => {
                    assert!(
                        matches!(at, Some(CallAt::Sending { .. })),
                        "{call}: abandoned in {at:?}"
                    );
                    self.set_call(call, CallAt::Backoff);
                }
                Wake::Send => {
                    assert_eq!(at, Some(CallAt::Backoff), "{call}: woken to send in {at:?}");
                    self.api_token(call, Waited::Nothing, 0);
                }
                Wake::Fail(e) => {
                    assert!(at.is_some(), "{call}: failed after it ended");
                    self.end_call(call, Some(&e));
                }
            }
        }
        if self.r.m.is_disposed() {
            assert_eq!(self.calls, [], "API calls live on after dispose()");
        }
    }

    fn timeout_ms(&self) -> i64 {
        self.r.m.config().timeout_ms as i64
    }

    /// The lease's time to live: the look, every attempt of a refresh with its backoff, and
    /// the write.
    fn ttl(&self) -> i64 {
        let backoffs: i64 = (0..self.setup.retries as u32).map(|i| (200i64 << i).min(5_000)).sum();
        self.timeout_ms() * (self.setup.retries as i64 + 4) + backoffs
    }

    /// What the store answers to the machine's `acquire` made at `asked`: a free lease is
    /// granted; otherwise (or when `what` says another instance asked first) it is refused.
    fn acquire(&mut self, what: Stored, asked: i64) -> StorageReply {
        let free = self.now >= self.foreign_until;
        match what {
            Stored::Garbage => StorageReply::Garbage,
            Stored::Failed => StorageReply::Failed(None),
            Stored::Foreign | Stored::Empty => {
                if free {
                    self.foreign_until = self.now + self.ttl();
                }
                StorageReply::Empty
            }
            _ if free => {
                self.granted += 1;
                let id = format!("lease-{}", self.granted);
                // The store's clock ran from when it took the call, no earlier than `asked`:
                // the machine must count from `asked`.
                self.lease = Some((id.clone(), asked + self.ttl()));
                StorageReply::Lease(id)
            }
            _ => StorageReply::Empty,
        }
    }

    /// A new pair, issued now on the server's clock.
    fn issue(&mut self, ttl: Ttl) -> Pair {
        self.issued += 1;
        let n = self.issued;
        let server_now = self.now + self.setup.skew;
        let mut p = match ttl {
            Ttl::Guide => Pair::issued(n, server_now),
            Ttl::Short { access, refresh } => Pair::with_ttl(n, server_now, access, refresh),
            Ttl::Dead => Pair::with_ttl(n, server_now, HOUR, -SECOND),
        };
        p.client_id = Some(n as i64);
        self.pairs.insert(n as i64, p.clone());
        p
    }

    fn reply(&mut self, answer: &Answer) -> (Reply, Option<Pair>) {
        let date = http_date(self.now + self.setup.skew);
        let (reply, pair) = match answer {
            Answer::Pair(ttl) => {
                let p = self.issue(*ttl);
                (ok(&p), Some(p))
            }
            Answer::Unauthorized => (unauthorized(), None),
            Answer::Forbidden => (
                error_envelope(403, "ForbiddenError", "FORBIDDEN", "IP address not authorized"),
                None,
            ),
            Answer::Status(s) => (reply(*s, "<html>busy</html>"), None),
            Answer::RateLimited(None) => (status(429), None),
            Answer::RateLimited(Some(v)) => (status(429).retry_after(v), None),
            Answer::Network => (Err(IoFailure::Network(None)), None),
            Answer::NotAResponse => (Err(IoFailure::NotAResponse), None),
            Answer::Garbage => (reply(200, "{\"success\":tru"), None),
        };
        (reply.date(&date), pair)
    }

    fn handed(&mut self, f: FlightId, caller: Caller) {
        self.handed_out.insert(f);
        self.callers.push((f, caller));
    }

    fn on_token(&mut self, step: TokenStep, need: Need, round: u32) {
        match step {
            TokenStep::Ready {
                token,
                serial,
                background,
            } => {
                assert!(
                    !self.revoked.contains(token.expose()),
                    "a revoked access token handed out"
                );
                assert!(
                    !self.elsewhere.contains(&token_number(token.expose())),
                    "the access token of another host's or account's record handed out"
                );
                self.last_serial = serial;
                if let Some(f) = background {
                    self.handed_out.insert(f);
                }
            }
            TokenStep::Wait(f) => {
                assert!(round <= MAX_ROUNDS, "a caller waited {round} times: a loop");
                self.handed(f, Caller::Token { need, round });
            }
            TokenStep::Fail(_) | TokenStep::Rethrow => {}
        }
    }

    fn on_step(&mut self, step: Step, caller: Caller) -> Option<FlightId> {
        match step {
            Step::Wait(f) => {
                self.handed(f, caller);
                Some(f)
            }
            Step::Fail(_) | Step::Ready => None,
        }
    }

    /// Callers whose flight settled ask again, until none can.
    fn continue_callers(&mut self) {
        loop {
            self.check_outputs();
            self.wake_calls();
            let Some(i) = self.callers.iter().position(|(f, _)| self.r.outcome(*f).is_some()) else {
                return;
            };
            let (f, caller) = self.callers.swap_remove(i);
            let outcome = self.r.outcome(f).unwrap();
            match caller {
                Caller::Session => {
                    if outcome == Outcome::Again {
                        let step = self.r.rejoin();
                        if step == Step::Ready {
                            let _ = self.r.m.result();
                        }
                        self.on_step(step, Caller::Session);
                    } else if outcome == Outcome::Done {
                        let _ = self.r.m.result();
                    }
                }
                Caller::Final => assert_ne!(outcome, Outcome::Again, "a revoke or restore is never superseded"),
                Caller::Token { need, round } => {
                    let step = self.r.token(self.now, need, waited(&outcome), round + 1);
                    self.on_token(step, need, round + 1);
                }
                Caller::Api { call, round } => self.api_token(call, waited(&outcome), round + 1),
            }
            self.check_outputs();
        }
    }

    /// Checks every output not checked yet.
    fn check_outputs(&mut self) {
        let new: Vec<Output> = self.r.log[self.checked..].to_vec();
        self.checked = self.r.log.len();
        for (k, out) in new.iter().cloned().enumerate() {
            if let Output::Event(Event::Tokens(_, Reason::Login | Reason::Refresh)) = &out {
                // A pair that came in under the lease is written before the lease goes back.
                self.unwritten |= self.lease.is_some();
            }
            match out {
                Output::Call(call, wake) => self.wakes.push((call, wake)),
                Output::Send(req) => self.check_send(&req),
                Output::Storage(StorageOp::Acquire { id, ttl_ms, .. }) => {
                    assert!(self.setup.lease, "an acquire without a leasing storage");
                    assert_eq!(self.lease, None, "an acquire while holding a lease");
                    assert_eq!(ttl_ms as i64, self.ttl(), "the lease's time to live");
                    self.acquiring.insert(id, self.now);
                    self.lease_failed = false;
                }
                Output::Storage(StorageOp::Release { lease, .. }) => {
                    let held = self.lease.take().map(|(id, _)| id);
                    assert_eq!(
                        held.as_deref(),
                        Some(lease.as_str()),
                        "released a lease it does not hold"
                    );
                    if self.unwritten {
                        // Only an op dropped before its write gives its lease back unwritten.
                        let dropped = matches!(new.get(k + 1), Some(Output::Settle(_, Outcome::Again)))
                            || matches!(new.get(k + 1), Some(Output::Settle(_, Outcome::Failed(e))) if e.code() == "DISPOSED");
                        assert!(dropped, "the lease given back before the pair got under it was written");
                        self.unwritten = false;
                    }
                }
                Output::Storage(StorageOp::Put { value, .. }) => {
                    self.unwritten = false;
                    for t in &self.revoked {
                        assert!(
                            !value.contains(&format!("\"{t}\"")),
                            "a revoked token written to storage"
                        );
                    }
                    let doc = parse(&value);
                    assert_eq!(doc.get("origin").and_then(|o| o.as_str()), Some(HOST));
                    let version = record_version(&value);
                    assert!(
                        version > self.read_max,
                        "a pair stored as version {version}, not above version {} read before",
                        self.read_max
                    );
                }
                Output::Event(Event::Tokens(info, _))
                    if info.client_id.is_some_and(|c| self.elsewhere.contains(&c)) =>
                {
                    panic!("a pair of another host's or account's record installed")
                }
                Output::Cancel(io) => {
                    if self.acquiring.remove(&io).is_some() {
                        // A timed-out acquire counts as failed (an abandoned op sends nothing).
                        self.lease_failed = true;
                    }
                    // An op abandoned with its refresh on the wire gives no lease back: the
                    // server may have rotated the token, so the lease runs out in the store.
                    let rest = &new[k + 1..];
                    let released = rest
                        .iter()
                        .any(|o| matches!(o, Output::Storage(StorageOp::Release { .. })));
                    let abandoned = rest.iter().any(|o| {
                        matches!(o, Output::Settle(_, Outcome::Again))
                            || matches!(o, Output::Settle(_, Outcome::Failed(e)) if e.code() == "DISPOSED")
                    });
                    if self.lease.is_some() && abandoned && !released {
                        if let Some((_, until)) = self.lease.take() {
                            self.foreign_until = self.foreign_until.max(until);
                        }
                        self.unwritten = false;
                    }
                    self.dead.push(io);
                }
                Output::Event(Event::Expired(_)) => {
                    assert!(!self.ended, "the end of the session was reported twice");
                    self.ended = true;
                }
                Output::Event(Event::Tokens(..) | Event::Revoked(_)) => self.ended = false,
                Output::Settle(f, _) if self.revoking.as_ref().is_some_and(|(g, _)| *g == f) => {
                    self.revoking = None;
                }
                _ => {}
            }
        }
    }

    fn check_send(&mut self, req: &AuthRequest) {
        let may_carry = |t: &str| {
            !self.revoked.contains(t)
                || (req.endpoint == Endpoint::Revoke && self.revoking.as_ref().is_some_and(|(_, ts)| ts.contains(t)))
        };
        if let Some(token) = body_token(req) {
            assert!(
                !self.elsewhere.contains(&token_number(&token)),
                "the refresh token of another host's or account's record sent"
            );
            // A revoke may name a spent token (the held one after a 401): revoking it only
            // asks the server to end a family it may have ended already.
            assert!(
                req.endpoint == Endpoint::Revoke || !self.spent.contains(&token),
                "a spent refresh token sent again ({:?})",
                req.endpoint
            );
            assert!(may_carry(&token), "a revoked refresh token sent ({:?})", req.endpoint);
            if req.endpoint == Endpoint::Refresh && self.knows_clock {
                let n: i64 = token.rsplit('.').next().unwrap().parse().unwrap();
                let p = &self.pairs[&n];
                // The `Date` header has a resolution of one second.
                assert!(
                    p.refresh_expires_at - self.setup.skew > self.now - SECOND,
                    "a refresh token past its expiry sent"
                );
            }
        }
        if let Some(bearer) = req.authorization.as_deref().and_then(|a| a.strip_prefix("Bearer ")) {
            assert!(may_carry(bearer), "a revoked access token sent");
        }
        if self.setup.lease && req.endpoint == Endpoint::Refresh {
            match &self.lease {
                Some((_, until)) => assert!(
                    self.now + self.timeout_ms() <= *until,
                    "a refresh attempt that would end {} ms after the lease",
                    self.now + self.timeout_ms() - until
                ),
                None => assert!(self.lease_failed, "a refresh sent without the lease"),
            }
        }
    }

    /// `handle_timeout(now)`, then: nothing is due any more, and the next deadline is one
    /// `setTimeout` can express.
    fn timeout(&mut self) {
        self.r.timeout(self.now);
        if let Some((t, _)) = self.r.m.poll_timeout() {
            assert!(t > self.now, "a deadline at or before now right after handle_timeout");
            assert!(t - self.now <= MAX_TIMER, "a deadline further than 2^31-1 ms");
        }
        // No API call outlives its deadline: once the timer has run, every call whose
        // attempt was due has been woken (retried or failed).
        self.check_outputs();
        self.wake_calls();
        for (call, at) in &self.calls {
            if let CallAt::Sending { deadline } | CallAt::Reading { deadline } = at {
                assert!(*deadline > self.now, "API call {call} outlived its deadline");
            }
        }
    }

    fn step(&mut self, act: &Act) {
        let now = self.now;
        match act {
            Act::Login { configured } => {
                let creds = (!configured).then(creds);
                let step = self.r.m.login(now, creds);
                self.r.drain();
                self.on_step(step, Caller::Session);
            }
            Act::Refresh => {
                let step = self.r.refresh(now);
                self.on_step(step, Caller::Session);
            }
            Act::Token(need) => {
                let step = self.r.ask(now, *need);
                self.on_token(step, *need, 0);
            }
            Act::TokenAfter401 => {
                let step = self.r.token_after_401(now, self.last_serial);
                self.on_token(step, Need::Replay, 0);
            }
            Act::Revoke => {
                let info = self.r.m.info();
                let running = self.revoking.is_some();
                let mut tokens = HashSet::new();
                if info.state == Phase::Active && !self.r.m.is_disposed() {
                    let p = &self.pairs[&info.client_id.unwrap()];
                    tokens.insert(p.access.clone());
                    tokens.insert(p.refresh.clone());
                    self.revoked.extend(tokens.iter().cloned());
                }
                let step = self.r.revoke(now);
                if let Some(f) = self.on_step(step, Caller::Final) {
                    if !running && self.r.outcome(f).is_none() {
                        self.revoking = Some((f, tokens));
                    }
                }
            }
            Act::Restore => {
                let step = self.r.restore(now);
                self.on_step(step, Caller::Final);
            }
            Act::Api(a) => self.api(a),
            Act::Dispose => {
                self.r.dispose();
            }
            Act::Auth(answer) => {
                if self.r.has_open_send() {
                    let req = self.r.open_send();
                    let (reply, pair) = self.reply(answer);
                    let before = self.r.m.info();
                    self.knows_clock |= reply.is_ok();
                    self.r.answer(now, reply);
                    self.dead.push(req.id);
                    if req.endpoint == Endpoint::Refresh {
                        let token = body_token(&req).unwrap();
                        let rotated = pair.is_some_and(|p| {
                            self.r.m.info().client_id == p.client_id && before.client_id != p.client_id
                        });
                        if rotated || matches!(answer, Answer::Unauthorized) {
                            self.spent.insert(token);
                        }
                    }
                }
            }
            Act::Late(i, answer) => {
                if !self.dead.is_empty() {
                    let io = self.dead[i % self.dead.len()];
                    let (reply, _) = self.reply(answer);
                    let before = self.r.m.info();
                    let deadline = self.r.m.poll_timeout();
                    self.r.m.handle_auth(now, io, reply);
                    assert_eq!(self.r.drain(), [], "a late answer did something");
                    assert_eq!(self.r.m.info(), before);
                    assert_eq!(self.r.m.poll_timeout(), deadline);
                }
            }
            Act::Storage(i, what, success) => {
                let ops = self.r.storage_ops();
                if !ops.is_empty() {
                    let op = ops[i % ops.len()].clone();
                    let reply = match (&op, success) {
                        (StorageOp::Get { .. }, _) => self.read(*what, *i),
                        (StorageOp::Acquire { id, .. }, true) => {
                            let asked = self.acquiring[id];
                            self.acquire(*what, asked)
                        }
                        (StorageOp::Release { .. }, true) => StorageReply::Empty,
                        (StorageOp::Put { value, .. }, true) => {
                            self.hold(value.clone());
                            StorageReply::Empty
                        }
                        (StorageOp::Delete { .. }, true) => {
                            self.store = None;
                            StorageReply::Empty
                        }
                        (_, false) => StorageReply::Failed(None),
                    };
                    if let StorageOp::Acquire { id, .. } = &op {
                        self.acquiring.remove(id);
                        // Garbage (neither a lease id nor "taken") counts as a failed acquire.
                        self.lease_failed = matches!(reply, StorageReply::Failed(_) | StorageReply::Garbage);
                    }
                    let readable = matches!(&reply, StorageReply::Empty | StorageReply::Record(_));
                    let out = self.r.answer_storage(now, op_id(&op), reply);
                    if let StorageOp::Release { .. } = &op {
                        assert_eq!(out, [], "the answer to a release did something");
                    }
                    if readable && matches!(op, StorageOp::Get { .. }) {
                        // Only garbage and failed calls are storage errors (a record of another
                        // place or of the previous format is absent, silently). A look may end a
                        // timer's refresh with another error: a lease that ran out meanwhile.
                        assert!(
                            !out.iter()
                                .any(|o| matches!(o, Output::Event(Event::Error(e)) if e.code() == "STORAGE_ERROR")),
                            "a readable record ({what:?}) reported as an error: {out:?}"
                        );
                    }
                    self.dead.push(op_id(&op));
                }
            }
            Act::Fire { late } => {
                if let Some(t) = self.r.deadline() {
                    self.now = self.now.max(t + late);
                    self.timeout();
                }
            }
            Act::Wait(ms) => self.now += ms,
            Act::Sleep(ms) => {
                self.now += ms;
                self.timeout();
            }
        }
        self.check_outputs();
        self.continue_callers();
    }

    /// The storage now holds `record`.
    fn hold(&mut self, record: String) {
        self.top = self.top.max(record_version(&record));
        self.history.push(record.clone());
        self.store = Some(record);
    }

    /// What a `get` answers. Every record of this host (and, with credentials, this
    /// account) raises the version the next write must go above.
    fn read(&mut self, what: Stored, i: usize) -> StorageReply {
        let ours = |v: &String| StorageReply::Record(parse(v));
        let record = match what {
            Stored::Current => self.store.clone(),
            Stored::Foreign => {
                // Another instance stored its pair (and gave back the lease if it held it).
                self.foreign_until = self.foreign_until.min(self.now);
                let p = self.issue(Ttl::Guide);
                let record = p.record_as(self.top + 1, Some(&fingerprint::account(USER)));
                self.hold(record.clone());
                Some(record)
            }
            Stored::Stale(_) if self.history.is_empty() => None,
            Stored::Stale(k) => Some(self.history[k.wrapping_add(i) % self.history.len()].clone()),
            Stored::Elsewhere(account) => {
                let p = self.issue(Ttl::Guide);
                let version = self.top + 5;
                if account {
                    let bob = fingerprint::account("bob");
                    if self.setup.credentials {
                        self.elsewhere.insert(p.client_id.unwrap());
                    } else {
                        // A session without credentials knows no account: it may take this.
                        self.read_max = self.read_max.max(version);
                    }
                    return StorageReply::Record(parse(&p.record_as(version, Some(&bob))));
                }
                self.elsewhere.insert(p.client_id.unwrap());
                let record = p.record_of("https://other.test", version, Some(&fingerprint::account(USER)));
                return StorageReply::Record(parse(&record));
            }
            Stored::Legacy => {
                let p = self.issue(Ttl::Guide);
                self.elsewhere.insert(p.client_id.unwrap());
                let legacy = format!(
                    r#"{{"v":1,"access_token":"{}","refresh_token":"{}","access_expires_at":{},"refresh_expires_at":{},"client_id":{}}}"#,
                    p.access,
                    p.refresh,
                    p.access_expires_at,
                    p.refresh_expires_at,
                    p.client_id.unwrap()
                );
                return StorageReply::Record(parse(&legacy));
            }
            Stored::Empty => None,
            Stored::Garbage => return StorageReply::Garbage,
            Stored::Failed => return StorageReply::Failed(None),
        };
        match record {
            Some(v) => {
                self.read_max = self.read_max.max(record_version(&v));
                ours(&v)
            }
            None => StorageReply::Empty,
        }
    }

    /// Answers everything and advances time until no work is left; then every flight
    /// handed out has settled and every caller is done.
    fn quiesce(&mut self) {
        // Enough for a waiter to outwait another instance's lease (one look a second).
        for _ in 0..1_000 {
            self.continue_callers();
            if self.r.has_open_send() {
                let endpoint = self.r.open_send().endpoint;
                let answer = if endpoint == Endpoint::Revoke {
                    Answer::Status(200)
                } else {
                    Answer::Pair(Ttl::Guide)
                };
                self.step(&Act::Auth(answer));
                continue;
            }
            if !self.r.storage_ops().is_empty() {
                self.step(&Act::Storage(0, Stored::Current, true));
                continue;
            }
            let overdue = self.calls.iter().any(|(_, at)| {
                matches!(at, CallAt::Sending { deadline } | CallAt::Reading { deadline } if *deadline <= self.now)
            });
            if overdue {
                self.step(&Act::Fire { late: 0 });
                continue;
            }
            if let Some(answer) = self.calls.iter().find_map(|(_, at)| match at {
                CallAt::Sending { deadline } if *deadline > self.now => Some(ApiAnswer::Status(200, None)),
                CallAt::Reading { deadline } if *deadline > self.now => Some(ApiAnswer::Body(0)),
                _ => None,
            }) {
                self.step(&Act::Api(ApiAct::Answer(0, answer)));
                continue;
            }
            match self.r.m.poll_timeout() {
                Some((_, Keep::Alive)) => self.step(&Act::Fire { late: 0 }),
                _ => break,
            }
        }
        self.continue_callers();
        assert!(!self.r.has_open_send(), "an auth request is still open");
        assert_eq!(self.r.storage_ops(), [], "a storage call is still open");
        assert!(
            !matches!(self.r.m.poll_timeout(), Some((_, Keep::Alive))),
            "work is still pending after quiescing"
        );
        for f in &self.handed_out {
            assert!(
                self.r.outcome(*f).is_some(),
                "flight {f} was handed out and never settled"
            );
        }
        assert!(self.callers.is_empty(), "callers still waiting: {:?}", self.callers);
        assert_eq!(self.calls, [], "API calls never ended");
        assert_eq!(self.r.m.api_calls(), 0, "API calls left in the machine");
        assert_eq!(self.lease, None, "a lease never given back");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, max_shrink_iters: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_under_any_interleaving(setup in setup(), acts in prop::collection::vec(act(), 1..60)) {
        let mut case = Case::new(setup);
        for act in &acts {
            case.step(act);
        }
        case.quiesce();
    }

    /// With storage always on and answered often: looks, versioning reads, adoptions and
    /// records of other instances, hosts and accounts in every order.
    #[test]
    fn invariants_hold_when_instances_share_the_storage(
        setup in setup().prop_map(|s| Setup { storage: true, ..s }),
        acts in prop::collection::vec(act_with(16), 1..60),
    ) {
        let mut case = Case::new(setup);
        for act in &acts {
            case.step(act);
        }
        case.quiesce();
    }

    /// API calls beside everything else: every call ends once, by its deadline at the
    /// latest, never carries a revoked token, and none opens or gets a token after dispose.
    #[test]
    fn invariants_hold_with_api_calls(
        setup in setup(),
        acts in prop::collection::vec(prop_oneof![3 => act(), 2 => api_act()], 1..80),
    ) {
        let mut case = Case::new(setup);
        for act in [Act::Login { configured: false }, Act::Auth(Answer::Pair(Ttl::Guide))] {
            case.step(&act);
        }
        for act in &acts {
            case.step(act);
        }
        case.quiesce();
    }

    /// A leasing storage: `acquire` granted, refused (another instance holds the lease, maybe
    /// storing its pair later), failed or never answered, beside every storage answer above.
    #[test]
    fn invariants_hold_with_a_refresh_lease(
        setup in setup().prop_map(|s| Setup { storage: true, lease: true, ..s }),
        logged_in in any::<bool>(),
        acts in prop::collection::vec(act_with(16), 1..60),
    ) {
        let mut case = Case::new(setup);
        if logged_in {
            // Half the cases start with a session (and its record) in place, so that most
            // of their acts meet a refresh under the lease.
            for act in [
                Act::Login { configured: false },
                Act::Auth(Answer::Pair(Ttl::Guide)),
                Act::Storage(0, Stored::Current, true),
                Act::Storage(0, Stored::Current, true),
            ] {
                case.step(&act);
            }
        }
        for act in &acts {
            case.step(act);
        }
        case.quiesce();
    }
}

/// A long run with the guide's tokens only: many rotations, so the spent-token and
/// revoked-token checks see old tokens come back from storage if they ever could.
#[test]
fn many_rotations_never_resend_an_old_token() {
    let setup = Setup {
        credentials: true,
        storage: true,
        lease: false,
        auto_refresh: true,
        retries: 2,
        skew: 0,
        seed: 42,
    };
    let mut case = Case::new(setup);
    let mut k = 0usize;
    for round in 0..200 {
        let acts = [
            Act::Token(Need::Strict),
            Act::Auth(Answer::Pair(Ttl::Guide)),
            Act::Storage(0, Stored::Current, round % 3 != 0),
            Act::Fire { late: 0 },
            Act::Auth(if round % 7 == 0 {
                Answer::Unauthorized
            } else {
                Answer::Pair(Ttl::Guide)
            }),
            Act::Storage(0, Stored::Stale(k), true),
            Act::Storage(0, Stored::Current, true),
            if round % 11 == 0 { Act::Revoke } else { Act::Restore },
            Act::Storage(0, Stored::Stale(k + 1), round % 2 == 0),
            Act::Storage(0, Stored::Current, true),
            Act::Auth(Answer::Status(200)),
            Act::Login { configured: true },
        ];
        for act in &acts {
            case.step(act);
            k = k.wrapping_add(7);
        }
    }
    case.quiesce();
}
