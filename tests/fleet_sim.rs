//! A deterministic simulation of a fleet of sessions, in the manner of FoundationDB's
//! simulation and TigerBeetle's VOPR.
//!
//! The property tests drive one machine at a time against a model of everything around it;
//! they cannot see what only a fleet does wrong (a refresh that ignores the pair another
//! instance stored spends a token twice, and no single machine can tell). Here 2 to 6
//! machines share ONE model storage and ONE model auth server, and a seeded scheduler picks,
//! step by step, what happens next: a user call, an auth request reaching the server, its
//! answer (in time, late or never), a storage call landing (in time, late, or lost), a kill,
//! a stalled storage link, a timer, a clock jump. Global invariants are checked after every
//! step; at the end a quiesce phase answers everything and every flight and API call handed
//! out must have settled exactly once.
//!
//! The server rotates refresh tokens and detects reuse as a real one does: a refresh token
//! presented after it was rotated or rejected revokes its whole family. Some reuse is
//! unavoidable (README: "if it died after the server rotated but before it stored the pair,
//! the record's refresh token is spent"; and a plain storage without a lease: "two instances
//! refreshing at the same moment can still collide"), so every pair the server issues carries
//! a *taint*: the fault, if any, that kept it from reaching the store in time (its answer was
//! lost or late, its holder was killed, its write was lost, late, stalled or refused, it was
//! rotated outside the lease). A reuse is explained only by a taint of the pair the reused
//! token was rotated into (or, without a lease, by the race the README documents).
//!
//! A case drawn with `faults: 0` injects no fault and its network and store are never late
//! (everything lands shortly before its deadline, which stresses every bound the machine
//! derives from its deadlines): with a lease, no reuse may happen there but for an explicit
//! `login()` abandoning a write, and no holder's lease may run out before it gives it back
//! (see `Sim::lease_gaps`).
//!
//! The same simulation runs in OAuth 2.0 mode (`Mode`): the server reads form-encoded token
//! requests (`grant_type`, `refresh_token`) and answers as an RFC 6749 token endpoint does
//! (`{access_token, token_type, expires_in, refresh_token}` with a `Date`; `invalid_grant`
//! with a 400 for a spent, revoked or expired refresh token, and, like oidc-provider, a spent
//! one presented again revokes its whole family), and revocations (RFC 7009). Two grants:
//! a rotating refresh token given to every instance as the same seed (pair 1 of the server:
//! with a lease the fleet exchanges it exactly once, unless a documented fault loses the
//! family), and client credentials (no refresh token: each renewal is the grant again, and
//! the fleet's grants are bounded per access-token lifetime as logins are in provider mode).
//! The fault schedule, the scheduler and the invariants are shared; so is one more, checked
//! in every mode: a call fails only inside a window a fault, a server error or a documented
//! end (the family lost, this instance's own `revoke()`) opened (`Sim::failed`).
//!
//! `SIM_SEED=<n>` runs that one case (printing its trace), `SIM_CASES=<n>` that many cases
//! (seeds 1..=n), `SIM_STEPS=<n>` steps per case. A failing case prints its seed and trace.
//! The OAuth 2.0 variant reads `SIM_OAUTH_SEED`, `SIM_OAUTH_CASES`, `SIM_OAUTH_STEPS` and
//! `SIM_OAUTH_MODE` (`seeded` or `cc`: only that grant; both by default); `SIM_PER_SEED=1`
//! prints one line of figures per case.
// Native only: the harness reads JSON with the core's native reader.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::collections::HashSet;
use std::fmt::Write as _;

use auth_session::core::config::OAuthOptions;
use auth_session::core::machine::{
    ApiStep, AuthRequest, Behind, CallId, Endpoint, Event, FlightId, IoId, Keep, Need, Outcome, Output, Persistence,
    Reason, Step, StorageOp, StorageReply, TokenStep, Waited, Wake, Want, Wire, MAX_ROUNDS,
};
use auth_session::core::secret::Password;
use auth_session::core::AuthError;
use common::*;

/// Cases and steps by default: about 7 s in a debug build on a 2-core machine.
const DEFAULT_CASES: u64 = 2000;
const DEFAULT_STEPS: usize = 300;
/// OAuth 2.0 cases by default, per grant.
const DEFAULT_OAUTH_CASES: u64 = 600;

// ----- OAuth 2.0 -------------------------------------------------------------------------------

const TOKEN_URL: &str = "https://as.test/oauth/token";
const REVOKE_URL: &str = "https://as.test/oauth/revoke";
const CLIENT: &str = "fleet-client";
const SECRET: &str = "cs-CANARY-fleet";
/// The seed: the server's pair 1, whose refresh token every instance is given.
const SEED: u32 = 1;
/// How long the server's refresh tokens live (oidc-provider's default): a fleet asleep for
/// 8 days keeps its grant.
const OAUTH_REFRESH_TTL: i64 = 14 * DAY;

// ----- the scheduler's randomness ------------------------------------------------------------

/// SplitMix64: one `u64` of state, so a case is its seed and nothing else.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }

    /// True `per_mille` times in a thousand.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }

    /// An index picked by weight.
    fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut x = (self.next() % total as u64) as u32;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        unreachable!()
    }
}

// ----- what a case is ------------------------------------------------------------------------

/// The two storages the README offers a fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavour {
    /// `acquire`/`release`, and a conditional write: a record is only replaced by a higher
    /// version. The README's promise: exactly one instance refreshes.
    LeaseCas,
    /// A plain key-value store: last write wins, no lease. Sequential rotations are safe;
    /// concurrent ones may collide.
    Plain,
}

/// The protocol the fleet speaks, and its grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The provider's protocol, with `credentials` (a rejected refresh token: a quiet login).
    Provider,
    /// OAuth 2.0, grant `refresh_token`: every instance holds the same seed, spent once.
    Seeded,
    /// OAuth 2.0, grant `client_credentials`: no refresh token; the grant runs when due.
    ClientCredentials,
}

impl Mode {
    fn oauth(self) -> bool {
        self != Mode::Provider
    }
}

#[derive(Clone, Debug)]
struct Setup {
    mode: Mode,
    machines: usize,
    flavour: Flavour,
    retries: u8,
    auto_refresh: bool,
    /// How often faults are injected: 0 (none: the strictest cases), 1 or 2.
    faults: u32,
}

impl Setup {
    fn draw(rng: &mut Rng, mode: Mode) -> Setup {
        // A seeded fleet on a plain store collides at its first exchange most of the time
        // (documented; the family is lost): most seeded cases have the lease.
        let lease = if mode == Mode::Seeded { 850 } else { 650 };
        Setup {
            mode,
            machines: 2 + rng.below(5),
            flavour: if rng.chance(lease) {
                Flavour::LeaseCas
            } else {
                Flavour::Plain
            },
            retries: rng.below(3) as u8,
            auto_refresh: rng.chance(600),
            faults: rng.below(3) as u32,
        }
    }
}

// ----- the model auth server -----------------------------------------------------------------

/// Why a pair the server issued may never have reached the store in time. Any of these
/// makes a later reuse of the token it replaced unavoidable.
type Taint = &'static str;

/// A pair whose write an explicit `login()` cancelled.
const EXPLICIT: Taint = "an explicit login() abandoned its write";
/// A pair whose write a `revoke()` cancelled.
const REVOKED: Taint = "a revoke() abandoned its write";
/// A pair whose record a `revoke()` deleted from the store.
const DELETED: Taint = "its record was deleted by a revoke()";
/// What an API call that got a 401 to its replay is failed with (as `Sim::failed` sees it),
/// and its message when the token's family was revoked.
const API_401: &str = "API_401";
const FAMILY_REVOKED: &str = "its family was revoked";
/// See [`Sim::lease_gaps`].
const GAP: Taint = "its holder's lease ran out before the write (a stalled or late call)";

/// A pair the server issued: its place in its token family and what became of it.
#[derive(Clone, Debug)]
struct Issued {
    pair: Pair,
    family: usize,
    /// The pair this one's refresh token was rotated into.
    child: Option<u32>,
    /// The refresh token was presented after its rotation or its family's revocation.
    rejected: bool,
    /// A record of this pair was written to the store within its write's deadline.
    published: bool,
    taint: Option<Taint>,
}

/// A server with refresh-token rotation and reuse detection. Pairs are numbered from 1
/// (`at(n)`, `rt(n)`); a refresh token presented after it was rotated (or rejected) is a
/// reuse: the whole family is revoked, as a real server does.
#[derive(Default)]
struct Server {
    issued: Vec<Issued>,
    /// Per family: revoked.
    revoked: Vec<bool>,
    rotations: u32,
    refresh_requests: u32,
    quiet_logins: u32,
    /// Quiet logins sent without the lease after waiting out its holder.
    waited_out_logins: u32,
    explicit_logins: u32,
    reuses: u32,
    /// Reuses and what explained each.
    explained: Vec<Taint>,
    /// Refreshes refused for a revoked family or an expired token (not reuses).
    refused: u32,
    errors_served: u32,
    /// How long a refresh token lives.
    refresh_ttl: i64,
    /// Per family: revoked by a revocation request (RFC 7009), not by reuse detection.
    revoked_by_request: Vec<bool>,
    /// Revocation requests that revoked something.
    revocations: u32,
    /// OAuth 2.0 seeded: requests with the seed the server processed.
    seed_presentations: u32,
    /// Client credentials: quiet grants served while the fleet's newest token was due for
    /// renewal (or revoked, or there was none), and quiet grants served before it was.
    due_grants: u32,
    early_grants: u32,
    /// Grants a user's `refresh()` asked for (client credentials).
    manual_grants: u32,
    /// Rotations of a refresh token whose access token was not due, asked by no `refresh()`.
    early_rotations: u32,
    /// `invalid_grant` / 401 answers to refresh tokens (reuses and refusals).
    rejections: u32,
}

impl Server {
    fn get(&self, n: u32) -> &Issued {
        &self.issued[n as usize - 1]
    }

    fn get_mut(&mut self, n: u32) -> &mut Issued {
        &mut self.issued[n as usize - 1]
    }

    fn issue(&mut self, now: i64, family: usize) -> u32 {
        let n = self.issued.len() as u32 + 1;
        self.issued.push(Issued {
            pair: Pair::with_ttl(n, now, HOUR, self.refresh_ttl),
            family,
            child: None,
            rejected: false,
            published: false,
            taint: None,
        });
        n
    }

    fn taint(&mut self, n: u32, why: Taint) {
        let p = self.get_mut(n);
        p.taint.get_or_insert(why);
    }

    /// Whether pair `p` descends from pair `m` by rotation (a family is a chain).
    fn descends(&self, p: u32, m: u32) -> bool {
        p > m && self.get(p).family == self.get(m).family
    }

    /// Opens a token family (a login or a grant).
    fn family(&mut self) -> usize {
        self.revoked.push(false);
        self.revoked_by_request.push(false);
        self.revoked.len() - 1
    }

    /// Whether pair `n` is due for renewal at `now`: within the refresh margin of its
    /// access token's expiry (the machine counts from the answer's `Date`, whole seconds:
    /// up to a second early), or its family revoked.
    fn due(&self, n: u32, now: i64) -> bool {
        let p = self.get(n);
        self.revoked[p.family] || now >= p.pair.access_expires_at - MARGIN - SECOND
    }
}

/// What a request asks of the server, as the server reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ask {
    /// A new token family: the provider's login, the client credentials grant.
    Grant,
    /// A refresh token presented: the provider's refresh, OAuth's `grant_type=refresh_token`
    /// (the seed's exchange included).
    Present(u32),
    /// A revocation of the token of this pair, if the server knows it.
    Revoke(Option<u32>),
    Metadata,
}

/// An RFC 6749 token response with `pair` (its refresh token if `refresh`), answered at
/// `now` (its `Date`).
fn oauth_token(pair: &Pair, refresh: bool, now: i64) -> Reply {
    let mut text = format!(
        r#"{{"access_token":"{}","token_type":"Bearer","expires_in":{}"#,
        pair.access,
        (pair.access_expires_at - now) / SECOND
    );
    if refresh {
        let _ = write!(text, r#","refresh_token":"{}""#, pair.refresh);
    }
    text.push('}');
    reply(200, &text).date(&http_date(now))
}

/// The number of a token (`at.CANARY.7`, `rt.CANARY.7`: 7).
fn number(token: &str) -> u32 {
    token
        .rsplit('.')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a numbered token")
}

// ----- the model storage ---------------------------------------------------------------------

/// The one record all instances share (one account, one key), and its lease.
#[derive(Default)]
struct Store {
    /// The record: its text, version and pair number.
    record: Option<(String, u64, u32)>,
    lease: Option<(String, i64)>,
    granted: u32,
    /// Writes a conditional store refused (not above the stored version).
    refused: u32,
    /// Writes that replaced a record by a lower version (plain store only).
    rollbacks: u32,
}

// ----- I/O in flight ---------------------------------------------------------------------------

/// An auth request on its way: sent by instance `inst`, maybe processed by the server
/// (`served`: the reply it made and the pair it issued), maybe cancelled by the machine.
struct AuthIo {
    inst: u32,
    io: IoId,
    req: AuthRequest,
    deadline: i64,
    /// Sent while the store's lease was this instance's (lease flavour).
    under_lease: bool,
    /// Part of an explicit `login()` (not a login the session made by itself).
    explicit: bool,
    /// Sent without the lease, after an acquire timed out or a holder was waited out.
    waited_out: bool,
    /// Sent after the sender's look at the record timed out.
    blind: bool,
    /// Sent without the lease because of a fault (its acquire timed out, or a late answer
    /// found the lease run out), not because its holder was waited out.
    fault_excused: bool,
    /// Part of an op a user's `refresh()` started.
    manual: bool,
    served: Option<(Reply, Option<u32>)>,
    cancelled: bool,
}

/// A storage call on its way; it lands when the scheduler says (or never).
struct StoreIo {
    inst: u32,
    io: IoId,
    op: StorageOp,
    deadline: i64,
    cancelled: bool,
}

// ----- an instance -----------------------------------------------------------------------------

/// A caller waiting for a flight, and what it does when the flight ends.
#[derive(Clone, Copy, Debug)]
enum Caller {
    /// `login()` or `refresh()`: `rejoin` after an `Again`.
    Session,
    /// `getAccessToken()`: asks again with what it waited for.
    Token { need: Need, round: u32 },
    /// An API call waiting for a token.
    Api { call: CallId, round: u32 },
}

/// Where an API call is, as the driver sees it.
#[derive(Clone, Debug, PartialEq)]
enum CallAt {
    Token,
    Sending { deadline: i64, token: String },
    Backoff,
}

/// One process: a machine, the driver's view of its callers and calls, and what the
/// simulation knows about it.
struct Inst {
    id: u32,
    r: Run,
    checked: usize,
    callers: Vec<(FlightId, Caller)>,
    handed_out: Vec<FlightId>,
    calls: Vec<(CallId, CallAt)>,
    ended_calls: HashSet<CallId>,
    wakes: Vec<(CallId, Wake)>,
    /// The pair of the last record this machine read (and took in): a refresh of an older
    /// token of the same family after reading it ignores a newer stored pair.
    last_read: Option<u32>,
    /// Its last read of the record timed out: it refreshes without having looked ("a
    /// storage failure never blocks the protocol").
    blind: bool,
    /// Leases this machine was granted (their acquire answered in time).
    granted: HashSet<String>,
    /// The lease it was granted last and has not given back, and whether that lease
    /// running out under it was counted already.
    holding: Option<(String, bool)>,
    /// The last acquire of this machine timed out: the refresh goes out without the lease
    /// (a lease that cannot be taken never blocks a refresh).
    acquire_late: bool,
    /// The last acquire of this machine was refused: a cold instance that waited out the
    /// holder logs in itself.
    acquire_refused: bool,
    /// The flight of an explicit `login()` in progress.
    explicit: Option<FlightId>,
    /// Its storage link holds every answer back.
    stalled: bool,
    /// Pairs this machine got from the server and has not had written yet.
    unwritten: Vec<u32>,
    /// The flight of a user's `refresh()` that started an op (not one it joined).
    manual: Option<FlightId>,
    /// This instance called `revoke()` and has not logged in since.
    revoked_self: bool,
    /// Seeded: it held a pair (the seed's, or one it restored or adopted): its seed is spent.
    held_ever: bool,
    /// Until when a failed call of this instance is explained by an error the server (or
    /// the network) answered it.
    error_until: i64,
    /// When an acquire of this instance was last answered "taken" (another holder).
    blocked_at: Option<i64>,
    /// When the API last refused this instance's token (a 401).
    refused_at: Option<i64>,
    /// The flight of its last `revoke()`, and the pair it held then.
    revoke: Option<(FlightId, Option<u32>)>,
}

/// The options of every instance of a fleet in `mode`.
fn fleet_config(mode: Mode, auto_refresh: bool, retries: u8) -> auth_session::core::config::Config {
    config(|o| {
        o.auto_refresh = Some(auto_refresh);
        o.retries = Some(retries as f64);
        match mode {
            Mode::Provider => with_credentials(o),
            Mode::Seeded | Mode::ClientCredentials => {
                o.oauth = Some(OAuthOptions {
                    token_endpoint: Some(TOKEN_URL.into()),
                    revocation_endpoint: Some(REVOKE_URL.into()),
                    client_id: Some(CLIENT.into()),
                    client_secret: Some(Password::new(SECRET)),
                    refresh_token: (mode == Mode::Seeded).then(|| Password::new(rt(SEED))),
                    ..OAuthOptions::default()
                })
            }
        }
    })
}

impl Inst {
    fn new(id: u32, setup: &Setup, seed: u64) -> Inst {
        let cfg = fleet_config(setup.mode, setup.auto_refresh, setup.retries);
        let persistence = match setup.flavour {
            Flavour::LeaseCas => Persistence::StorageWithLease,
            Flavour::Plain => Persistence::Storage,
        };
        Inst {
            id,
            r: Run::with_persistence(cfg, persistence, seed),
            checked: 0,
            callers: Vec::new(),
            handed_out: Vec::new(),
            calls: Vec::new(),
            ended_calls: HashSet::new(),
            wakes: Vec::new(),
            last_read: None,
            blind: false,
            granted: HashSet::new(),
            holding: None,
            acquire_late: false,
            acquire_refused: false,
            explicit: None,
            stalled: false,
            unwritten: Vec::new(),
            manual: None,
            revoked_self: false,
            held_ever: false,
            error_until: i64::MIN,
            blocked_at: None,
            refused_at: None,
            revoke: None,
        }
    }

    fn explicit_open(&self) -> bool {
        self.explicit.is_some_and(|f| self.r.outcome(f).is_none())
    }

    fn manual_open(&self) -> bool {
        self.manual.is_some_and(|f| self.r.outcome(f).is_none())
    }
}

// ----- the simulation ----------------------------------------------------------------------------

/// Figures over all cases, for the report.
#[derive(Default, Debug)]
struct Figures {
    cases: u64,
    steps: u64,
    faults: u64,
    kills: u64,
    lost_writes: u64,
    stalls: u64,
    late: u64,
    lost_answers: u64,
    /// Auth and storage calls the machines gave up on (their deadline, or superseded).
    timeouts: u64,
    rotations: u64,
    refresh_requests: u64,
    quiet_logins: u64,
    waited_out_logins: u64,
    explicit_logins: u64,
    reuses: u64,
    adoptions: u64,
    refused_writes: u64,
    rollbacks: u64,
    api_calls: u64,
    api_401: u64,
    /// Quiet logins sent without the lease and without a failed acquire to excuse it.
    logins_outside_lease: u64,
    /// Holders whose lease ran out before they gave it back (see `Sim::lease_gaps`).
    lease_gaps: u64,
    /// Reuses by what explained them (`fault-free` ones apart: cases with `faults: 0`).
    explained: std::collections::BTreeMap<String, u64>,
    /// Requests the token endpoint processed (grants, refreshes, seed exchanges).
    token_requests: u64,
    seed_presentations: u64,
    revocations: u64,
    due_grants: u64,
    early_grants: u64,
    manual_grants: u64,
    early_rotations: u64,
    rejections: u64,
    /// Calls (token(), API calls, login(), refresh()) that failed, and API attempts the
    /// simulated API left unanswered past their deadline (not the session's doing).
    failed_calls: u64,
    api_timeouts: u64,
    /// Failed calls by the window that explained them.
    failures: std::collections::BTreeMap<String, u64>,
    /// Seeded: cases whose seed was exchanged exactly once, and cases that ended with the
    /// seed's family lost (by what explained its first reuse, or a revocation or expiry).
    seed_once: u64,
    lost: std::collections::BTreeMap<String, u64>,
}

impl Figures {
    fn add(&mut self, f: Figures) {
        self.cases += f.cases;
        self.steps += f.steps;
        self.faults += f.faults;
        self.kills += f.kills;
        self.lost_writes += f.lost_writes;
        self.stalls += f.stalls;
        self.late += f.late;
        self.lost_answers += f.lost_answers;
        self.timeouts += f.timeouts;
        self.rotations += f.rotations;
        self.refresh_requests += f.refresh_requests;
        self.quiet_logins += f.quiet_logins;
        self.explicit_logins += f.explicit_logins;
        self.waited_out_logins += f.waited_out_logins;
        self.reuses += f.reuses;
        self.adoptions += f.adoptions;
        self.refused_writes += f.refused_writes;
        self.rollbacks += f.rollbacks;
        self.api_calls += f.api_calls;
        self.api_401 += f.api_401;
        self.logins_outside_lease += f.logins_outside_lease;
        self.lease_gaps += f.lease_gaps;
        self.token_requests += f.token_requests;
        self.seed_presentations += f.seed_presentations;
        self.revocations += f.revocations;
        self.due_grants += f.due_grants;
        self.early_grants += f.early_grants;
        self.manual_grants += f.manual_grants;
        self.early_rotations += f.early_rotations;
        self.rejections += f.rejections;
        self.failed_calls += f.failed_calls;
        self.api_timeouts += f.api_timeouts;
        for (why, n) in f.explained {
            *self.explained.entry(why).or_default() += n;
        }
        for (why, n) in f.failures {
            *self.failures.entry(why).or_default() += n;
        }
        self.seed_once += f.seed_once;
        for (why, n) in f.lost {
            *self.lost.entry(why).or_default() += n;
        }
    }
}

struct Sim {
    setup: Setup,
    rng: Rng,
    now: i64,
    slots: Vec<Option<Inst>>,
    next_inst: u32,
    server: Server,
    store: Store,
    auth: Vec<AuthIo>,
    storage: Vec<StoreIo>,
    /// Fault events, family revocations, long sleeps and explicit logins so far: each may
    /// cost a quiet login.
    excuses: u32,
    trace: Vec<String>,
    /// The input being handed to a machine came after its deadline.
    late_input: bool,
    fig: Figures,
    step: usize,
    /// Explicit `login()`s and `revoke()`s so far.
    user_events: u32,
    /// Until when a failed call anywhere is explained by a fault (see `Sim::failed`), and
    /// what opened that window last.
    window_until: i64,
    window_why: &'static str,
}

/// How long a fault explains failed calls after it: a lease (at most `timeoutMs × 6` and
/// the backoffs) waited out twice, and a last attempt.
const WINDOW: i64 = 2 * 63 * SECOND + TIMEOUT;

/// What a fault did, for the trace and the figures.
macro_rules! trace {
    ($sim:expr, $($arg:tt)*) => {{
        let mut line = format!("{:>4} +{:>9}ms ", $sim.step, $sim.now - EPOCH);
        let _ = write!(line, $($arg)*);
        $sim.trace.push(line);
    }};
}

impl Sim {
    fn new(seed: u64, mode: Mode) -> Sim {
        let mut rng = Rng(seed);
        let setup = Setup::draw(&mut rng, mode);
        let server = Server {
            refresh_ttl: if mode.oauth() { OAUTH_REFRESH_TTL } else { 7 * DAY },
            ..Server::default()
        };
        let mut sim = Sim {
            slots: Vec::new(),
            setup,
            rng,
            now: EPOCH,
            next_inst: 0,
            server,
            store: Store::default(),
            auth: Vec::new(),
            storage: Vec::new(),
            excuses: 0,
            trace: Vec::new(),
            late_input: false,
            fig: Figures::default(),
            step: 0,
            user_events: 0,
            window_until: i64::MIN,
            window_why: "",
        };
        if mode == Mode::Seeded {
            // The consent the application holds: the seed, a pair of the server's own.
            let family = sim.server.family();
            let n = sim.server.issue(EPOCH, family);
            assert_eq!(n, SEED);
        }
        for _ in 0..sim.setup.machines {
            let inst = sim.spawn();
            sim.slots.push(Some(inst));
        }
        sim
    }

    fn spawn(&mut self) -> Inst {
        self.next_inst += 1;
        let seed = self.rng.next();
        Inst::new(self.next_inst, &self.setup, seed)
    }

    fn timeout(&self) -> i64 {
        TIMEOUT
    }

    fn live(&self) -> Vec<usize> {
        (0..self.slots.len()).filter(|&i| self.slots[i].is_some()).collect()
    }

    fn slot_of(&self, inst: u32) -> Option<usize> {
        self.slots.iter().position(|s| s.as_ref().is_some_and(|m| m.id == inst))
    }

    fn fault(&mut self) {
        self.fig.faults += 1;
        self.excuses += 1;
        self.open_window("a fault");
    }

    /// A fault (or a call that timed out, a clock jump) explains the calls that fail for a
    /// while.
    fn open_window(&mut self, why: &'static str) {
        if self.now + WINDOW >= self.window_until {
            self.window_until = self.now + WINDOW;
            self.window_why = why;
        }
    }

    // ----- the driver: outputs, callers, API calls ----------------------------------------------

    /// Takes in everything slot `s`'s machine output since the last look, then lets every
    /// caller whose flight settled ask again, until nothing more happens.
    fn settle(&mut self, s: usize) {
        loop {
            self.absorb(s);
            let m = self.slots[s].as_mut().unwrap();
            if let Some((call, wake)) = (!m.wakes.is_empty()).then(|| m.wakes.remove(0)) {
                self.wake(s, call, wake);
                continue;
            }
            let Some(i) = m.callers.iter().position(|(f, _)| m.r.outcome(*f).is_some()) else {
                return;
            };
            let (f, caller) = m.callers.swap_remove(i);
            let outcome = m.r.outcome(f).unwrap();
            let now = self.now;
            let error = match &outcome {
                Outcome::Failed(e) => Some(e.clone()),
                _ => None,
            };
            match caller {
                Caller::Session => {
                    if outcome == Outcome::Again {
                        let step = m.r.rejoin();
                        if let Step::Wait(f) = step {
                            m.handed_out.push(f);
                            m.callers.push((f, Caller::Session));
                        }
                    }
                    if let Some(e) = error {
                        self.failed(s, e.code(), e.message(), "login()/refresh()/revoke()");
                    }
                    // INVARIANT (RFC 7009): a revoke() that succeeded ended, at the server, the
                    // family of the pair it held.
                    let revoked = self.slots[s].as_ref().unwrap().revoke;
                    if let Some((_, Some(n))) = revoked.filter(|(r, _)| *r == f && outcome == Outcome::Done) {
                        let family = self.server.get(n).family;
                        assert!(
                            self.server.revoked[family],
                            "m{s}: revoke() of pair {n} left its family live"
                        );
                    }
                }
                Caller::Token { need, round } => {
                    let step = m.r.token(now, need, waited(&outcome), round + 1);
                    self.on_token(s, step, need, round + 1, error);
                }
                Caller::Api { call, round } => self.api_token(s, call, waited(&outcome), round + 1, error),
            }
        }
    }

    /// Reads the new outputs of slot `s`: sends and storage calls go on the wire.
    fn absorb(&mut self, s: usize) {
        let now = self.now;
        let deadline = now + self.timeout();
        let m = self.slots[s].as_mut().unwrap();
        let new: Vec<Output> = m.r.log[m.checked..].to_vec();
        m.checked = m.r.log.len();
        let inst = m.id;
        for out in new {
            match &out {
                Output::Storage(op) => trace!(self, "m{s} > {} #{}", op_kind(op), op_id(op)),
                Output::Cancel(io) => trace!(self, "m{s} > cancel #{io}"),
                Output::Settle(f, o) => trace!(self, "m{s} > settle {f} {}", outcome_word(o)),
                _ => {}
            }
            match out {
                Output::Send(req) => self.on_send(s, req, deadline),
                Output::Cancel(io) => {
                    // A call cancelled unanswered timed out (or was superseded): a slow
                    // store or server, which may cost a login.
                    let pending = self
                        .storage
                        .iter()
                        .any(|st| st.inst == inst && st.io == io && !st.cancelled)
                        || self.auth.iter().any(|a| a.inst == inst && a.io == io && !a.cancelled);
                    if pending {
                        self.excuses += 1;
                        self.fig.timeouts += 1;
                        // Past its deadline (not superseded by a login or revoke): the
                        // network or the store was slow, a fault whose calls may fail.
                        let overdue = self
                            .storage
                            .iter()
                            .filter(|st| st.inst == inst && st.io == io)
                            .map(|st| st.deadline)
                            .chain(
                                self.auth
                                    .iter()
                                    .filter(|a| a.inst == inst && a.io == io)
                                    .map(|a| a.deadline),
                            )
                            .any(|d| now >= d);
                        if overdue {
                            self.open_window("a call that timed out");
                        }
                    }
                    let m = self.slots[s].as_mut().unwrap();
                    // (A call superseded by a login or revoke did not time out.)
                    for st in self
                        .storage
                        .iter()
                        .filter(|st| st.inst == inst && st.io == io && now >= st.deadline)
                    {
                        match st.op {
                            StorageOp::Acquire { .. } => m.acquire_late = true,
                            StorageOp::Get { .. } => m.blind = true,
                            _ => {}
                        }
                    }
                    for a in self.auth.iter_mut().filter(|a| a.inst == inst && a.io == io) {
                        a.cancelled = true;
                        // The server already answered: that answer will never be taken.
                        if let Some((_, Some(n))) = a.served {
                            let p = &mut self.server.issued[n as usize - 1];
                            p.taint.get_or_insert("its answer was lost");
                        }
                    }
                    for st in self.storage.iter_mut().filter(|st| st.inst == inst && st.io == io) {
                        st.cancelled = true;
                    }
                }
                Output::Storage(op) => {
                    let io = op_id(&op);
                    if let StorageOp::Release { lease, .. } = &op {
                        // Given back: whatever the store says, it is not this machine's now.
                        let m = self.slots[s].as_mut().unwrap();
                        m.granted.remove(lease);
                        if m.holding.as_ref().is_some_and(|(id, _)| id == lease) {
                            m.holding = None;
                        }
                    }
                    if let StorageOp::Put { value, .. } = &op {
                        let n = number(&record_access_token(value));
                        trace!(self, "m{s} put pair {n} v{}", record_version(value));
                    }
                    self.storage.push(StoreIo {
                        inst,
                        io,
                        op,
                        deadline,
                        cancelled: false,
                    });
                }
                Output::Event(Event::Tokens(_, reason)) => {
                    if reason == Reason::Adopt {
                        self.fig.adoptions += 1;
                    }
                    let m = self.slots[s].as_mut().unwrap();
                    m.revoked_self = false;
                    m.held_ever = true;
                }
                Output::Call(call, wake) => self.slots[s].as_mut().unwrap().wakes.push((call, wake)),
                Output::Settle(..) | Output::Event(_) | Output::Log(_) => {}
            }
        }
    }

    /// A machine sends an auth request. For a refresh: the first global invariant.
    fn on_send(&mut self, s: usize, req: AuthRequest, deadline: i64) {
        let now = self.now;
        let ask = self.ask(&req);
        let m = self.slots[s].as_ref().unwrap();
        let under_lease = match &self.store.lease {
            Some((id, until)) => *until > now && m.granted.contains(id),
            None => false,
        };
        let explicit = req.endpoint == Endpoint::Login && m.explicit_open();
        let manual = !explicit && m.manual_open();
        // A late answer (past its deadline, its timer not run yet) may find the lease run out.
        let fault_excused = m.acquire_late || self.late_input;
        let excuse = fault_excused || (req.endpoint == Endpoint::Login && m.acquire_refused);
        let (inst, last_read, blind) = (m.id, m.last_read, m.blind);
        let lease = if under_lease { " (lease)" } else { "" };
        // INVARIANT (the seed once): a session that held a pair (the seed's, or one it
        // restored or adopted) never sends its seed again (README: "A session sends its seed
        // at most once").
        assert!(
            !(self.setup.mode == Mode::Seeded && ask == Ask::Present(SEED) && m.held_ever),
            "m{s} sends its seed again after holding a pair"
        );
        match ask {
            Ask::Present(t) => {
                let what = if req.endpoint == Endpoint::Login {
                    "seed"
                } else {
                    "refresh"
                };
                trace!(self, "m{s} SEND {what} rt{t}{lease}");
                // INVARIANT (look before refresh): a machine never refreshes with a token
                // (the seed included) whose successor it has just read in the record. This
                // is what adoption is for; no fault excuses it.
                if let Some(p) = last_read {
                    assert!(
                        !(self.server.get(t).child.is_some() && self.server.descends(p, t)),
                        "m{s} refreshes with rt{t} after reading pair {p}, a newer pair of the same \
                         family that the server issued by rotating rt{t}: the newer stored pair was ignored"
                    );
                }
            }
            Ask::Grant => trace!(
                self,
                "m{s} SEND {}{}{lease}",
                if self.setup.mode.oauth() { "grant" } else { "login" },
                if explicit { " (explicit)" } else { "" },
            ),
            Ask::Revoke(_) => trace!(self, "m{s} SEND revoke"),
            Ask::Metadata => trace!(self, "m{s} SEND discovery"),
        }
        // INVARIANT (one holder): with a lease, a refresh goes out under this instance's
        // lease, unless it could not get one (its acquire timed out) or a late answer found
        // it run out. A quiet login outside the lease costs at most a second login, never a
        // token, and is only counted: the re-login after a rejected refresh (`session_over`)
        // and the login after a late second look (`looked_before_login`) do not check that
        // the lease still runs, as `looked` does for a refresh. (A seed goes out as a login:
        // a reuse it causes must be explained by a fault, see `reuse`.)
        if self.setup.flavour == Flavour::LeaseCas && !explicit && !under_lease {
            match req.endpoint {
                Endpoint::Refresh => assert!(
                    excuse,
                    "m{s} sent a refresh without holding the lease (the store's: {:?}), and no acquire of it failed",
                    self.store.lease
                ),
                Endpoint::Login if !excuse => self.fig.logins_outside_lease += 1,
                _ => {}
            }
        }
        self.auth.push(AuthIo {
            inst,
            io: req.id,
            req,
            deadline,
            under_lease,
            explicit,
            waited_out: !under_lease && excuse,
            blind,
            fault_excused,
            manual,
            served: None,
            cancelled: false,
        });
    }

    /// What the server reads in a request. OAuth 2.0: the form, whatever the machine calls
    /// the request (the seed's exchange is a refresh token presented).
    fn ask(&self, req: &AuthRequest) -> Ask {
        if !self.setup.mode.oauth() {
            return match req.endpoint {
                Endpoint::Login => Ask::Grant,
                Endpoint::Refresh => Ask::Present(number(&body_token(req).expect("a refresh token"))),
                Endpoint::Revoke => Ask::Revoke(body_token(req).map(|t| number(&t))),
                Endpoint::Discovery => Ask::Metadata,
            };
        }
        assert_eq!(req.wire, Wire::Form, "{:?}", req.endpoint);
        assert!(
            req.authorization.as_deref().is_some_and(|a| a.starts_with("Basic ")),
            "no client authentication"
        );
        let field = |name| form_field(&req.body, name);
        match req.url.as_str() {
            TOKEN_URL => match field("grant_type").as_deref() {
                Some("client_credentials") => {
                    assert_eq!(self.setup.mode, Mode::ClientCredentials, "a client credentials grant");
                    assert_eq!(req.endpoint, Endpoint::Login);
                    Ask::Grant
                }
                Some("refresh_token") => {
                    let t = number(&field("refresh_token").expect("a refresh_token"));
                    // The seed goes out with the grant only, never as a refresh.
                    assert_eq!(
                        req.endpoint == Endpoint::Login,
                        t == SEED,
                        "rt{t} sent as {:?}",
                        req.endpoint
                    );
                    Ask::Present(t)
                }
                other => panic!("grant_type {other:?}"),
            },
            REVOKE_URL => {
                assert_eq!(req.endpoint, Endpoint::Revoke);
                Ask::Revoke(field("token").map(|t| number(&t)))
            }
            other => panic!("a request to {other}"),
        }
    }

    /// A token endpoint's answer with pair `n`.
    fn token_reply(&self, n: u32) -> Reply {
        let p = &self.server.get(n).pair;
        if !self.setup.mode.oauth() {
            return ok(p);
        }
        oauth_token(p, self.setup.mode == Mode::Seeded, self.now)
    }

    /// A refresh token refused: spent, of a revoked family, or expired.
    fn rejected_reply(&self) -> Reply {
        if !self.setup.mode.oauth() {
            return unauthorized();
        }
        reply(
            400,
            r#"{"error":"invalid_grant","error_description":"grant request is invalid"}"#,
        )
        .date(&http_date(self.now))
    }

    /// What a `token()` call got. `waited`: the error of the flight it waited for, if it failed.
    fn on_token(&mut self, s: usize, step: TokenStep, need: Need, round: u32, waited: Option<AuthError>) {
        let m = self.slots[s].as_mut().unwrap();
        match step {
            TokenStep::Ready { background, .. } => {
                if let Some(f) = background {
                    m.handed_out.push(f);
                }
            }
            TokenStep::Wait(f) => {
                assert!(round <= MAX_ROUNDS, "m{s}: a caller waited {round} times: a loop");
                m.handed_out.push(f);
                m.callers.push((f, Caller::Token { need, round }));
            }
            TokenStep::Fail(e) => self.failed(s, e.code(), e.message(), "token()"),
            TokenStep::Rethrow => {
                let e = waited.expect("a rethrow follows a failed flight");
                self.failed(s, e.code(), e.message(), "token()");
            }
        }
    }

    fn end_call(&mut self, s: usize, call: CallId) {
        let m = self.slots[s].as_mut().unwrap();
        assert!(m.ended_calls.insert(call), "m{s}: API call {call} ended twice");
        m.calls.retain(|(c, _)| *c != call);
        m.callers
            .retain(|(_, c)| !matches!(c, Caller::Api { call: c, .. } if *c == call));
    }

    fn set_call(&mut self, s: usize, call: CallId, at: CallAt) {
        let m = self.slots[s].as_mut().unwrap();
        let i = m.calls.iter().position(|(c, _)| *c == call).expect("a live call");
        m.calls[i].1 = at;
    }

    fn api_token(&mut self, s: usize, call: CallId, waited: Waited, round: u32, error: Option<AuthError>) {
        let now = self.now;
        let deadline = now + self.timeout();
        let m = self.slots[s].as_mut().unwrap();
        let step = m.r.m.api_token(now, call, waited, round);
        m.r.drain();
        match step {
            TokenStep::Ready { token, background, .. } => {
                if let Some(f) = background {
                    m.handed_out.push(f);
                }
                let token = token.expose().to_owned();
                self.set_call(s, call, CallAt::Sending { deadline, token });
            }
            TokenStep::Wait(f) => {
                assert!(round <= MAX_ROUNDS + 1, "m{s}: API call {call} waited {round} times");
                m.handed_out.push(f);
                m.callers.push((f, Caller::Api { call, round }));
                self.set_call(s, call, CallAt::Token);
            }
            TokenStep::Fail(e) => {
                self.end_call(s, call);
                self.failed(s, e.code(), e.message(), "API call");
            }
            TokenStep::Rethrow => {
                self.end_call(s, call);
                let e = error.expect("a rethrow follows a failed flight");
                self.failed(s, e.code(), e.message(), "API call");
            }
        }
    }

    fn wake(&mut self, s: usize, call: CallId, wake: Wake) {
        let m = self.slots[s].as_ref().unwrap();
        let at = m.calls.iter().find(|(c, _)| *c == call).map(|(_, at)| at.clone());
        match wake {
            Wake::Abandon => {
                assert!(
                    matches!(at, Some(CallAt::Sending { .. })),
                    "m{s}: {call} abandoned in {at:?}"
                );
                self.set_call(s, call, CallAt::Backoff);
            }
            Wake::Send => {
                assert_eq!(at, Some(CallAt::Backoff), "m{s}: {call} woken to send in {at:?}");
                self.api_token(s, call, Waited::Nothing, 0, None);
            }
            Wake::Fail(e) => {
                assert!(at.is_some(), "m{s}: {call} failed after it ended");
                // The simulated API left the attempt unanswered past its deadline: the
                // API's doing, not the session's.
                assert!(
                    matches!(at, Some(CallAt::Sending { .. })) && e.code() == "TIMEOUT",
                    "m{s}: {call} failed in {at:?}: {e}"
                );
                self.fig.api_timeouts += 1;
                self.end_call(s, call);
            }
        }
    }

    // ----- events ----------------------------------------------------------------------------

    /// One scheduler step: picks an event by weight and performs it.
    fn event(&mut self) {
        let f = self.setup.faults;
        // user: token, api open, api answer, refresh, login; server: serve+answer, serve
        // only, deliver, error; storage: deliver, late; time: tick, fire, jump, sleep;
        // faults: kill, start, stall, lose write, zombie serve.
        let weights = [
            14,
            10,
            14,
            3,
            1, // user
            14,
            3,
            6,
            2, // auth
            24,
            2 * f, // storage
            10,
            12,
            2,
            1, // time
            f,
            4,
            2 * f,
            f,
            f, // faults
        ];
        // OAuth 2.0: one more user event, revoke() (the provider's stream stays as it was).
        let mut weights = weights.to_vec();
        if self.setup.mode.oauth() {
            weights.push(1);
        }
        match self.rng.weighted(&weights) {
            0 => self.user_token(),
            1 => self.api_open(),
            2 => self.api_answer(),
            3 => self.user_refresh(),
            4 => {
                // Explicit logins are rare: one in a few cases.
                if self.rng.chance(300) {
                    self.user_login()
                }
            }
            5 => self.auth_serve(true),
            6 => self.auth_serve(false),
            7 => self.auth_deliver(),
            8 => self.auth_error(),
            9 => self.storage_deliver(false),
            10 => self.storage_deliver(true),
            11 => self.tick(),
            12 => self.fire_next(),
            13 => self.jump(),
            14 => {
                if self.rng.chance(100) {
                    self.sleep()
                }
            }
            15 => self.kill(),
            16 => self.start(),
            17 => self.stall(),
            18 => self.lose_write(),
            19 => self.zombie_serve(),
            20 => {
                // Rare: a seeded fleet does not outlive it.
                let per_mille = if self.setup.mode == Mode::Seeded { 40 } else { 150 };
                if self.rng.chance(per_mille) {
                    self.user_revoke()
                }
            }
            _ => unreachable!(),
        }
    }

    fn pick_live(&mut self) -> Option<usize> {
        let live = self.live();
        (!live.is_empty()).then(|| live[self.rng.below(live.len())])
    }

    fn user_token(&mut self) {
        let Some(s) = self.pick_live() else { return };
        let need = [Need::Strict, Need::Lenient, Need::Background][self.rng.below(3)];
        trace!(self, "m{s} token({need:?})");
        let now = self.now;
        let step = self.slots[s].as_mut().unwrap().r.token(now, need, Waited::Nothing, 0);
        self.on_token(s, step, need, 0, None);
        self.settle(s);
    }

    fn api_open(&mut self) {
        let Some(s) = self.pick_live() else { return };
        let behind = if self.rng.chance(200) {
            Behind::WaitUntil
        } else {
            Behind::No
        };
        trace!(self, "m{s} api open ({behind:?})");
        self.fig.api_calls += 1;
        let m = self.slots[s].as_mut().unwrap();
        let call =
            m.r.m
                .api_open("GET", "/v1/items", Want::Response, behind)
                .expect("open");
        m.calls.push((call, CallAt::Token));
        self.api_token(s, call, Waited::Nothing, 0, None);
        self.settle(s);
    }

    /// The API server answers a call in flight: 401 for an expired access token or one of
    /// a revoked family (the API checks with the auth server), else 200.
    fn api_answer(&mut self) {
        let now = self.now;
        let mut sending = Vec::new();
        for s in self.live() {
            for (call, at) in &self.slots[s].as_ref().unwrap().calls {
                if let CallAt::Sending { deadline, token } = at {
                    if now < *deadline {
                        sending.push((s, *call, token.clone()));
                    }
                }
            }
        }
        if sending.is_empty() {
            return;
        }
        let (s, call, token) = sending[self.rng.below(sending.len())].clone();
        let p = self.server.get(number(&token));
        let ok = now < p.pair.access_expires_at && !self.server.revoked[p.family];
        let status = if ok { 200 } else { 401 };
        if !ok {
            self.fig.api_401 += 1;
        }
        trace!(self, "m{s} api {call} answered {status} (at{})", number(&token));
        let m = self.slots[s].as_mut().unwrap();
        if !ok {
            m.refused_at = Some(now);
        }
        let step = m.r.m.api_response(now, call, status, false, None);
        m.r.drain();
        match step {
            ApiStep::Return => {
                self.end_call(s, call);
                if status == 401 {
                    // The replay was refused too: the caller gets the 401.
                    let family = self.server.get(number(&token)).family;
                    let why = if self.server.revoked[family] {
                        FAMILY_REVOKED
                    } else {
                        "refused"
                    };
                    self.failed(s, API_401, why, "API call");
                }
            }
            ApiStep::Token => self.api_token(s, call, Waited::Nothing, 0, None),
            ApiStep::Fail(e) => {
                self.end_call(s, call);
                self.failed(s, e.code(), e.message(), "API call");
            }
            other => panic!("m{s}: API call {call} answered {status}: unexpected {other:?}"),
        }
        self.settle(s);
    }

    fn user_refresh(&mut self) {
        let Some(s) = self.pick_live() else { return };
        trace!(self, "m{s} refresh()");
        let now = self.now;
        let m = self.slots[s].as_mut().unwrap();
        match m.r.refresh(now) {
            Step::Wait(f) => {
                if !m.handed_out.contains(&f) {
                    // A new op: its requests are this user's, not the fleet's own.
                    m.manual = Some(f);
                }
                m.handed_out.push(f);
                m.callers.push((f, Caller::Session));
            }
            Step::Fail(e) => self.failed(s, e.code(), e.message(), "refresh()"),
            Step::Ready => {}
        }
        self.settle(s);
    }

    fn user_login(&mut self) {
        let Some(s) = self.pick_live() else { return };
        trace!(self, "m{s} login()");
        self.login_now(s, EXPLICIT);
        self.settle(s);
    }

    /// An explicit `login()` on slot `s`. It supersedes whatever op the machine had: a pair
    /// that op got goes unwritten (its write is cancelled and its lease given back: the next
    /// holder may reuse the token that pair replaced; see the report of `abandon_op`), so
    /// those pairs get `taint`.
    fn login_now(&mut self, s: usize, taint: Taint) {
        let now = self.now;
        let m = self.slots[s].as_mut().unwrap();
        let step = m.r.m.login(now, None);
        m.r.drain();
        match step {
            Step::Wait(f) => {
                m.explicit = Some(f);
                m.handed_out.push(f);
                m.callers.push((f, Caller::Session));
                // A lease held for a refresh on the wire or a write in flight is left to run
                // out by design (the server may have rotated, the write may still land): not
                // a gap.
                if let Some((_, counted)) = m.holding.as_mut() {
                    *counted = true;
                }
                self.excuses += 1;
                self.user_events += 1;
                for n in self.slots[s].as_ref().unwrap().unwritten.clone() {
                    self.server.taint(n, taint);
                }
                self.taint_in_flight(s, taint);
            }
            // A seeded session whose seed is spent (documented: "give the session a new one").
            Step::Fail(e) => self.failed(s, e.code(), e.message(), "login()"),
            Step::Ready => {}
        }
    }

    /// OAuth 2.0: `revoke()` (RFC 7009), then `login()` at once, as an application that
    /// rotates its client's token. A seeded session cannot log in again (its seed is spent:
    /// documented); the revocation ends the grant for the whole fleet.
    fn user_revoke(&mut self) {
        let Some(s) = self.pick_live() else { return };
        trace!(self, "m{s} revoke()");
        // The record is deleted: one more grant (or the seed's family) is its cost.
        self.excuses += 1;
        self.user_events += 1;
        for n in self.slots[s].as_ref().unwrap().unwritten.clone() {
            self.server.taint(n, REVOKED);
        }
        self.taint_in_flight(s, REVOKED);
        let now = self.now;
        let m = self.slots[s].as_mut().unwrap();
        if let Some((_, counted)) = m.holding.as_mut() {
            *counted = true;
        }
        let held = m.r.m.access_token().map(|t| number(t.expose()));
        let step = m.r.revoke(now);
        m.revoked_self = true;
        match step {
            Step::Wait(f) => {
                m.revoke = Some((f, held));
                m.handed_out.push(f);
                m.callers.push((f, Caller::Session));
            }
            Step::Fail(e) => self.failed(s, e.code(), e.message(), "revoke()"),
            Step::Ready => {}
        }
        trace!(self, "m{s} login()");
        self.login_now(s, REVOKED);
        self.settle(s);
    }

    /// Pairs the server issued to slot `s` whose answers are still on their way: the user's
    /// login() or revoke() abandons them with the op that asked (the machine ignores them).
    fn taint_in_flight(&mut self, s: usize, taint: Taint) {
        let inst = self.slots[s].as_ref().unwrap().id;
        let issued: Vec<u32> = self
            .auth
            .iter()
            .filter(|a| a.inst == inst && !a.cancelled)
            .filter_map(|a| a.served.as_ref().and_then(|(_, n)| *n))
            .collect();
        for n in issued {
            self.server.taint(n, taint);
        }
    }

    /// An auth request the server has not answered and nobody cancelled, at random.
    fn pick_open(&mut self) -> Option<usize> {
        let open: Vec<usize> = (0..self.auth.len())
            .filter(|&k| self.auth[k].served.is_none() && !self.auth[k].cancelled)
            .collect();
        (!open.is_empty()).then(|| open[self.rng.below(open.len())])
    }

    /// The auth server takes an open request (`deliver`: and its answer reaches the machine
    /// at once; else the answer is held back).
    fn auth_serve(&mut self, deliver: bool) {
        let Some(k) = self.pick_open() else { return };
        self.serve(k);
        if deliver {
            self.deliver(k);
        }
    }

    /// The server answers an open request with a 503 or the network fails: nothing issued.
    fn auth_error(&mut self) {
        let Some(k) = self.pick_open() else { return };
        self.server.errors_served += 1;
        let reply = if self.rng.chance(500) { status(503) } else { network() };
        self.auth[k].served = Some((reply, None));
        // The call this answer fails (after its retries) is explained.
        if let Some(s) = self.slot_of(self.auth[k].inst) {
            self.slots[s].as_mut().unwrap().error_until = self.now + WINDOW;
        }
        self.deliver(k);
    }

    /// A request the machine had already cancelled reaches the server anyway (the abort
    /// came too late): the server acts on it, the answer goes nowhere.
    fn zombie_serve(&mut self) {
        let gone: Vec<usize> = (0..self.auth.len())
            .filter(|&k| self.auth[k].served.is_none() && self.auth[k].cancelled)
            .collect();
        if gone.is_empty() {
            return;
        }
        let k = gone[self.rng.below(gone.len())];
        self.fault();
        self.fig.lost_answers += 1;
        self.serve(k);
        self.drop_auth(k);
    }

    /// The server processes request `k`: a login (a grant) opens a family, a refresh (the
    /// seed's exchange too) rotates its token, or is a reuse (the family is revoked) or
    /// refused; a revocation revokes the family of its token.
    fn serve(&mut self, k: usize) {
        self.lease_gaps();
        let now = self.now;
        let a = &self.auth[k];
        let (explicit, manual, waited_out, under_lease) = (a.explicit, a.manual, a.waited_out, a.under_lease);
        let ask = self.ask(&a.req);
        // A request that reaches the server after its deadline (cancelled, or its sender
        // dead or its timer late): the network held it; whatever it does is a fault's.
        let late = a.cancelled || now > a.deadline || self.slot_of(a.inst).is_none();
        if late && !self.auth[k].cancelled {
            // (Zombies were counted when they were picked.)
            self.fault();
            self.fig.late += 1;
        }
        let s = self
            .slot_of(self.auth[k].inst)
            .map_or("dead".to_owned(), |s| format!("m{s}"));
        let cc = self.setup.mode == Mode::ClientCredentials;
        let (reply, issued) = match ask {
            Ask::Grant => {
                // Was the fleet's newest token due for renewal (or revoked, or none)?
                let newest = self.server.issued.len() as u32;
                let due = newest == 0 || self.server.due(newest, now);
                let family = self.server.family();
                let n = self.server.issue(now, family);
                if explicit {
                    self.server.explicit_logins += 1;
                } else if waited_out {
                    self.server.waited_out_logins += 1;
                    if cc {
                        // Documented ("the others wait up to timeoutMs for its record"), and
                        // the token it costs may be the holder's, which goes on.
                        self.excuses += 1;
                    }
                } else if cc && manual {
                    self.server.manual_grants += 1;
                } else {
                    self.server.quiet_logins += 1;
                    if cc && due {
                        self.server.due_grants += 1;
                    } else if cc {
                        self.server.early_grants += 1;
                    }
                }
                let early = if cc && !due { " (newest token not due)" } else { "" };
                trace!(
                    self,
                    "server: {} by {s} -> pair {n}{early}",
                    if cc { "grant" } else { "login" }
                );
                (self.token_reply(n), Some(n))
            }
            Ask::Present(t) => {
                let seed = self.setup.mode == Mode::Seeded && t == SEED;
                if seed {
                    self.server.seed_presentations += 1;
                } else {
                    self.server.refresh_requests += 1;
                }
                let p = self.server.get(t).clone();
                if p.child.is_some() || p.rejected {
                    self.reuse(t, k, late);
                    self.server.rejections += 1;
                    (self.rejected_reply(), None)
                } else if self.server.revoked[p.family] || now >= p.pair.refresh_expires_at {
                    self.server.refused += 1;
                    self.server.rejections += 1;
                    trace!(self, "server: refresh rt{t} by {s} refused (family revoked or expired)");
                    (self.rejected_reply(), None)
                } else {
                    if !seed && !manual && !self.server.due(t, now) {
                        // Nobody asked for it and its access token had time left.
                        self.server.early_rotations += 1;
                        trace!(self, "server: EARLY rotation of rt{t}");
                    }
                    let n = self.server.issue(now, p.family);
                    self.server.get_mut(t).child = Some(n);
                    self.server.rotations += 1;
                    if self.setup.flavour == Flavour::LeaseCas && !under_lease {
                        self.server.taint(n, "rotated outside the lease");
                    }
                    if late {
                        self.server.taint(n, "rotated by a request held past its deadline");
                    }
                    trace!(self, "server: refresh rt{t} by {s} -> pair {n}");
                    (self.token_reply(n), Some(n))
                }
            }
            Ask::Revoke(t) => {
                // RFC 7009 (OAuth 2.0 only; the provider's revoke is not modelled): the
                // token's family ends, whatever it was.
                if let Some(t) = t.filter(|_| self.setup.mode.oauth()) {
                    let family = self.server.get(t).family;
                    if !self.server.revoked[family] {
                        self.server.revoked[family] = true;
                        self.server.revoked_by_request[family] = true;
                        self.server.revocations += 1;
                    }
                    trace!(self, "server: revoke pair {t} by {s}: family {family} revoked");
                }
                (status(200), None)
            }
            Ask::Metadata => (status(200), None),
        };
        self.auth[k].served = Some((reply, issued));
    }

    /// A refresh token presented a second time. INVARIANT: every reuse is explained by a
    /// fault that kept the pair it was rotated into from reaching the store in time, by a
    /// request the network held past its deadline, by a look at the record that timed out
    /// (a storage failure never blocks a refresh), or, without a lease, by two refreshes at
    /// the same moment (the README documents the first and the last).
    fn reuse(&mut self, t: u32, k: usize, late: bool) {
        self.server.reuses += 1;
        let a = &self.auth[k];
        let (inst, under_lease, blind, fault_excused) = (a.inst, a.under_lease, a.blind, a.fault_excused);
        let p = self.server.get(t).clone();
        self.server.get_mut(t).rejected = true;
        let family_was_revoked = self.server.revoked[p.family];
        self.server.revoked[p.family] = true;
        if !family_was_revoked {
            // The revocation will cost a login: another excuse.
            self.excuses += 1;
        }
        let reuser = self.slot_of(inst);
        // Stalled writes of that pair count as soon as their deadline has passed.
        self.taint_overdue();
        self.lease_gaps();
        let by_taint = p.child.and_then(|n| self.server.get(n).taint);
        let by_rejection = (p.child.is_none() && p.rejected).then_some("already rejected: its family was revoked");
        // Without the lease for a fault (its acquire timed out, a late answer): not for a
        // holder waited out, whose refresh or seed may be on the wire.
        let race = (self.setup.flavour == Flavour::Plain || (!under_lease && fault_excused))
            .then_some("two refreshes at once without a lease");
        let held = late.then_some("the reusing request reached the server after its deadline");
        let blind = blind.then_some("the reuser's look timed out: it refreshed without looking");
        // OAuth 2.0: a family a revocation request ended is dead already; presenting one of
        // its tokens again costs nothing more.
        let revoked = self.server.revoked_by_request[p.family].then_some("its family was revoked by revoke()");
        let why = by_taint.or(by_rejection).or(race).or(held).or(blind).or(revoked);
        trace!(
            self,
            "server: REUSE of rt{t} (rotated into {:?}) by {}: {}",
            p.child,
            reuser.map_or("dead".to_owned(), |s| format!("m{s}")),
            why.unwrap_or("UNEXPLAINED")
        );
        let Some(why) = why else {
            let n = p.child.unwrap();
            let c = self.server.get(n);
            panic!(
                "rt{t} reused with no fault to explain it: pair {n} (its successor) was published: {}, \
                 its write pending: {}, lease: {:?}",
                c.published,
                self.storage.iter().any(
                    |st| matches!(&st.op, StorageOp::Put { value, .. } if number(&record_access_token(value)) == n)
                ),
                self.store.lease
            );
        };
        // INVARIANT: without faults, a lease means no reuse but for what a user did (an
        // explicit login(), a revoke()) and the known gap.
        if self.setup.faults == 0 && self.setup.flavour == Flavour::LeaseCas {
            let user = [EXPLICIT, GAP, REVOKED, DELETED, "its family was revoked by revoke()"];
            assert!(
                user.contains(&why),
                "a refresh token reused in a fault-free case with a lease: {why}"
            );
        }
        if t == SEED && self.setup.mode == Mode::Seeded {
            trace!(self, "server: the seed presented again ({why})");
        }
        self.server.explained.push(why);
    }

    /// The answer of request `k` reaches its machine, if the machine is alive and still
    /// wants it. An answer after the deadline, or to no one, is a fault of that pair.
    fn deliver(&mut self, k: usize) {
        let now = self.now;
        let a = self.auth.remove(k);
        let (reply, issued) = a.served.expect("served");
        let slot = self.slot_of(a.inst);
        if let Some(n) = issued {
            if a.cancelled || slot.is_none() {
                self.server.taint(n, "its answer was lost");
                self.fig.lost_answers += 1;
                self.fault();
            } else if now > a.deadline {
                self.server.taint(n, "its answer came after the deadline");
                self.fig.late += 1;
                self.fault();
            }
        }
        let Some(s) = slot else { return };
        trace!(
            self,
            "m{s} answer {:?} {}{}",
            a.req.endpoint,
            match &reply {
                Ok(r) => r.status.to_string(),
                Err(_) => "network".to_owned(),
            },
            if a.cancelled { " (cancelled: ignored)" } else { "" }
        );
        let m = self.slots[s].as_mut().unwrap();
        if let Some(n) = issued.filter(|_| !a.cancelled) {
            m.unwritten.push(n);
        }
        m.r.answer_io(now, a.io, reply);
        self.late_input = now > a.deadline;
        self.settle(s);
        self.late_input = false;
    }

    /// A served answer held back reaches its machine now.
    fn auth_deliver(&mut self) {
        let served: Vec<usize> = (0..self.auth.len())
            .filter(|&k| self.auth[k].served.is_some())
            .collect();
        if served.is_empty() {
            return;
        }
        let k = served[self.rng.below(served.len())];
        self.deliver(k);
    }

    fn drop_auth(&mut self, k: usize) {
        let a = self.auth.remove(k);
        if let Some((_, Some(n))) = a.served {
            self.server.taint(n, "its answer was lost");
        }
    }

    /// A storage call lands: it acts on the store, then its answer reaches the machine
    /// (`late`: only a call past its deadline, or cancelled, is picked).
    fn storage_deliver(&mut self, late: bool) {
        let now = self.now;
        let ready: Vec<usize> = (0..self.storage.len())
            .filter(|&k| {
                let st = &self.storage[k];
                let stalled = self
                    .slot_of(st.inst)
                    .is_some_and(|s| self.slots[s].as_ref().unwrap().stalled);
                !stalled && (!late || st.cancelled || now > st.deadline)
            })
            .collect();
        if ready.is_empty() {
            return;
        }
        let k = ready[self.rng.below(ready.len())];
        self.land(k, false);
    }

    /// Performs storage call `k` on the store (`lose`: a write answered OK but not stored)
    /// and hands the answer to its machine.
    fn land(&mut self, k: usize, lose: bool) {
        let now = self.now;
        let st = self.storage.remove(k);
        let slot = self.slot_of(st.inst);
        let late = st.cancelled || now > st.deadline || slot.is_none();
        if late {
            self.fig.late += 1;
            if !matches!(st.op, StorageOp::Release { .. }) {
                self.fault();
            }
        }
        let who = slot.map_or("dead".to_owned(), |s| format!("m{s}"));
        let who = format!("{who} #{}", st.io);
        let reply = match &st.op {
            StorageOp::Get { .. } => match &self.store.record {
                Some((text, v, n)) => {
                    trace!(self, "{who} get -> pair {n} v{v}{}", if late { " (late)" } else { "" });
                    StorageReply::Record(parse(text))
                }
                None => {
                    trace!(self, "{who} get -> empty{}", if late { " (late)" } else { "" });
                    StorageReply::Empty
                }
            },
            StorageOp::Put { value, .. } => {
                let (v, n) = (record_version(value), number(&record_access_token(value)));
                let stored = self.store.record.as_ref().map(|(_, v, _)| *v);
                let refused = self.setup.flavour == Flavour::LeaseCas && stored.is_some_and(|s| v <= s);
                if lose {
                    self.server.taint(n, "its write was lost");
                    trace!(self, "{who} put pair {n} v{v}: LOST");
                } else if refused {
                    self.store.refused += 1;
                    self.server
                        .taint(n, "its write was refused (not above the stored version)");
                    trace!(self, "{who} put pair {n} v{v}: refused (stored v{})", stored.unwrap());
                } else {
                    if stored.is_some_and(|s| v < s) {
                        // Last write wins: an older record replaces a newer one. Every pair
                        // newer than it is as good as unwritten.
                        self.store.rollbacks += 1;
                        for p in self.server.issued.iter_mut().filter(|p| p.pair.n() as u32 > n) {
                            p.taint.get_or_insert("the store rolled back to an older record");
                        }
                    }
                    // INVARIANT: with a conditional write the version never goes down.
                    if self.setup.flavour == Flavour::LeaseCas {
                        assert!(stored.map_or(true, |s| v > s), "the stored version went down");
                    }
                    self.store.record = Some((value.clone(), v, n));
                    if late {
                        self.server.taint(n, "its write landed after the deadline");
                    } else {
                        self.server.get_mut(n).published = true;
                    }
                    trace!(
                        self,
                        "{who} put pair {n} v{v}: stored{}",
                        if late { " (late)" } else { "" }
                    );
                }
                StorageReply::Empty
            }
            StorageOp::Delete { .. } => {
                // A revoke(): the family's pairs are as good as unwritten now (a cold
                // instance has only the spent seed left).
                if let Some((_, _, n)) = self.store.record.take() {
                    let family = self.server.get(n).family;
                    for p in self.server.issued.iter_mut().filter(|p| p.family == family) {
                        p.taint.get_or_insert(DELETED);
                    }
                }
                trace!(self, "{who} delete");
                StorageReply::Empty
            }
            StorageOp::Acquire { ttl_ms, .. } => {
                // Before the lease changes hands: did it run out under a holder?
                self.lease_gaps();
                let free = self.store.lease.as_ref().map_or(true, |(_, until)| now >= *until);
                if free {
                    self.store.granted += 1;
                    let id = format!("lease-{}", self.store.granted);
                    self.store.lease = Some((id.clone(), now + *ttl_ms as i64));
                    trace!(self, "{who} acquire -> {id}{}", if late { " (late)" } else { "" });
                    StorageReply::Lease(id)
                } else {
                    trace!(self, "{who} acquire -> taken");
                    StorageReply::Empty
                }
            }
            StorageOp::Release { lease, .. } => {
                if self.store.lease.as_ref().is_some_and(|(id, _)| id == lease) {
                    self.store.lease = None;
                }
                trace!(self, "{who} release {lease}");
                StorageReply::Empty
            }
        };
        let Some(s) = slot else { return };
        let m = self.slots[s].as_mut().unwrap();
        if !st.cancelled {
            match (&st.op, &reply) {
                (StorageOp::Get { .. }, StorageReply::Record(doc)) => {
                    m.last_read = doc.get("access_token").and_then(|t| t.as_str()).map(number);
                    m.blind = false;
                }
                (StorageOp::Get { .. }, _) => {
                    m.last_read = None;
                    m.blind = false;
                }
                (StorageOp::Acquire { .. }, StorageReply::Lease(id)) => {
                    m.granted.insert(id.clone());
                    m.holding = Some((id.clone(), false));
                    m.acquire_late = false;
                    m.acquire_refused = false;
                }
                (StorageOp::Acquire { .. }, _) => {
                    m.acquire_refused = true;
                    m.blocked_at = Some(now);
                }
                (StorageOp::Put { value, .. }, _) => {
                    let n = number(&record_access_token(value));
                    m.unwritten.retain(|u| *u != n);
                }
                _ => {}
            }
        }
        m.r.answer_storage(now, st.io, reply);
        self.late_input = late;
        self.settle(s);
        self.late_input = false;
    }

    // ----- faults ------------------------------------------------------------------------------

    /// kill -9: the machine is gone; its lease stays till its time to live, its requests
    /// and storage calls may still land, the pairs it had not written are lost.
    fn kill(&mut self) {
        let Some(s) = self.pick_live() else { return };
        self.fault();
        self.fig.kills += 1;
        let m = self.slots[s].take().unwrap();
        for n in &m.unwritten {
            self.server.taint(*n, "its holder was killed before writing it");
        }
        trace!(self, "m{s} KILLED (unwritten pairs {:?})", m.unwritten);
        // Its storage link goes with it: a held-back call may still land (zombie).
        drop(m);
        if self.rng.chance(700) {
            self.start_in(s);
        }
    }

    fn start(&mut self) {
        let empty: Vec<usize> = (0..self.slots.len()).filter(|&i| self.slots[i].is_none()).collect();
        if let Some(&s) = empty.first() {
            self.start_in(s);
        }
    }

    /// A new cold process in slot `s`: nothing held, its first call looks before it logs in.
    fn start_in(&mut self, s: usize) {
        let inst = self.spawn();
        trace!(self, "m{s} started cold (instance {})", inst.id);
        self.slots[s] = Some(inst);
    }

    /// A machine's storage link stalls (every answer held back), or recovers.
    fn stall(&mut self) {
        let Some(s) = self.pick_live() else { return };
        let m = self.slots[s].as_mut().unwrap();
        m.stalled = !m.stalled;
        let stalled = m.stalled;
        if stalled {
            self.fault();
            self.fig.stalls += 1;
        }
        trace!(
            self,
            "m{s} storage link {}",
            if stalled { "STALLED" } else { "recovered" }
        );
    }

    /// A write is answered OK but never stored.
    fn lose_write(&mut self) {
        let puts: Vec<usize> = (0..self.storage.len())
            .filter(|&k| matches!(self.storage[k].op, StorageOp::Put { .. }))
            .collect();
        if puts.is_empty() {
            return;
        }
        let k = puts[self.rng.below(puts.len())];
        self.fault();
        self.fig.lost_writes += 1;
        self.land(k, true);
    }

    /// A holder whose lease ran out (its time to live) before it gave it back. The lease
    /// covers the acquire, the look, every attempt and the write (`timeoutMs × (retries +
    /// 4)` and the backoffs), and a holder sends only an attempt whose write fits in it: in
    /// a fault-free case (every call in time) this never happens, and is asserted. With
    /// faults (a stalled link, a late answer) it can: such a holder's unwritten pairs are
    /// tainted and the event counted, so the simulation checks everything else. An explicit
    /// `login()` over a write in flight and a clock jump leave a lease to run out by design.
    /// See `a_write_slower_than_the_old_lease_no_longer_lets_the_next_holder_reuse_the_token`.
    fn lease_gaps(&mut self) {
        let now = self.now;
        for s in self.live() {
            let m = self.slots[s].as_ref().unwrap();
            let Some((id, counted)) = m.holding.clone() else {
                continue;
            };
            let held = self
                .store
                .lease
                .as_ref()
                .is_some_and(|(l, until)| *l == id && now < *until);
            if held || counted {
                continue;
            }
            let inst = m.id;
            let unwritten = m.unwritten.clone();
            let pending: Vec<u32> = self
                .storage
                .iter()
                .filter(|st| st.inst == inst && !st.cancelled)
                .filter_map(|st| match &st.op {
                    StorageOp::Put { value, .. } => Some(number(&record_access_token(value))),
                    _ => None,
                })
                .collect();
            let busy = !self.slots[s].as_ref().unwrap().r.m.is_idle();
            self.slots[s].as_mut().unwrap().holding.as_mut().unwrap().1 = true;
            if !busy && pending.is_empty() {
                continue;
            }
            assert!(
                self.setup.faults > 0 || self.setup.flavour != Flavour::LeaseCas,
                "m{s}: its lease {id} ran out before it gave it back, in a fault-free case"
            );
            self.excuses += 1;
            self.fig.lease_gaps += 1;
            trace!(self, "m{s} its lease {id} ran out before it gave it back (known gap)");
            for n in unwritten.into_iter().chain(pending) {
                self.server.taint(n, GAP);
            }
        }
    }

    /// A write whose deadline passed before it landed, or an answer that has not reached
    /// its machine by its deadline: its pair is as good as lost until it lands (and then it
    /// is late).
    fn taint_overdue(&mut self) {
        let now = self.now;
        let overdue: Vec<u32> = self
            .storage
            .iter()
            .filter(|st| now > st.deadline || st.cancelled)
            .filter_map(|st| match &st.op {
                StorageOp::Put { value, .. } => Some(number(&record_access_token(value))),
                _ => None,
            })
            .collect();
        for n in overdue {
            self.server.taint(n, "its write was held back past its deadline");
        }
        let unanswered: Vec<u32> = self
            .auth
            .iter()
            .filter(|a| now > a.deadline)
            .filter_map(|a| a.served.as_ref().and_then(|(_, n)| *n))
            .collect();
        for n in unanswered {
            self.server.taint(n, "its answer was held back past its deadline");
        }
    }

    // ----- time ----------------------------------------------------------------------------------

    fn tick(&mut self) {
        let dt = if self.rng.chance(700) {
            self.rng.range(1, 500)
        } else {
            self.rng.range(500, 15_000)
        };
        self.advance(dt);
    }

    /// Time passes. In a fault-free case (`faults: 0`) the network and the store are never
    /// late: whatever is due before the new time lands shortly before its deadline first (as
    /// late as that, to stress every bound the machine computes from its deadlines).
    fn advance(&mut self, dt: i64) {
        let target = self.now + dt;
        while self.setup.faults == 0 {
            let auth = (0..self.auth.len())
                .filter(|&k| !self.auth[k].cancelled && self.slot_of(self.auth[k].inst).is_some())
                .map(|k| (self.auth[k].deadline, k, true));
            let storage = (0..self.storage.len())
                .filter(|&k| {
                    let st = &self.storage[k];
                    !st.cancelled && self.slot_of(st.inst).is_some() && !matches!(st.op, StorageOp::Release { .. })
                })
                .map(|k| (self.storage[k].deadline, k, false));
            let Some((deadline, k, is_auth)) = auth.chain(storage).filter(|(d, _, _)| *d <= target).min() else {
                break;
            };
            let at = deadline - self.rng.range(1, 300);
            self.now = self.now.max(at);
            if is_auth {
                if self.auth[k].served.is_none() {
                    self.serve(k);
                }
                self.deliver(k);
            } else {
                self.land(k, false);
            }
        }
        self.now = self.now.max(target);
        self.taint_overdue();
    }

    /// The earliest timer of any machine fires (time moves to it if it is ahead, up to a
    /// little over an hour: the auto-refresh timer too).
    fn fire_next(&mut self) {
        let next = self
            .live()
            .into_iter()
            .filter_map(|s| self.slots[s].as_ref().unwrap().r.deadline().map(|t| (t, s)))
            .min();
        let Some((t, s)) = next else { return };
        if t > self.now + 2 * HOUR {
            return;
        }
        if t > self.now {
            self.advance(t - self.now);
        }
        trace!(self, "m{s} timer");
        let now = self.now;
        self.slots[s].as_mut().unwrap().r.timeout(now);
        self.settle(s);
    }

    /// A clock jump: past the refresh margin or the access token's expiry. Timers are late.
    fn jump(&mut self) {
        let dt = self.rng.range(10 * MINUTE, 2 * HOUR);
        trace!(self, "JUMP {} min", dt / MINUTE);
        self.asleep();
        self.advance(dt);
        // Every wait in progress (for a holder, a backoff) ran past its bound at once.
        self.open_window("a clock jump");
    }

    /// Every lease held now runs out while its holder is asleep: no machine can keep a lease
    /// across a jump of its clock, so that is no gap of the machine's.
    fn asleep(&mut self) {
        for m in self.slots.iter_mut().flatten() {
            if let Some((_, counted)) = m.holding.as_mut() {
                *counted = true;
            }
        }
    }

    /// The fleet sleeps past the refresh tokens' expiry: a login is due.
    fn sleep(&mut self) {
        trace!(self, "SLEEP 8 days");
        self.excuses += 1;
        self.asleep();
        self.advance(8 * DAY);
        self.open_window("a clock jump");
    }

    // ----- invariants -------------------------------------------------------------------------

    /// Checked after every step (the reuse and lease invariants are checked where they
    /// happen: at the server and at each send).
    fn check(&mut self) {
        self.lease_gaps();

        // INVARIANT: quiet logins under the lease: the first, plus one per fault, family
        // revocation or long sleep (a login sent after waiting out the holder is counted
        // apart). Only with a lease; a plain store documents that instances may collide.
        if self.setup.flavour == Flavour::LeaseCas {
            assert!(
                self.server.quiet_logins <= 1 + self.excuses + self.server.due_grants,
                "{} quiet logins with {} excuses",
                self.server.quiet_logins,
                self.excuses
            );
            // INVARIANT (client credentials): token requests per access-token lifetime are
            // bounded as logins are: a quiet grant while the fleet's newest token is not due
            // (nor revoked) needs a fault, an explicit login or a revocation to excuse it.
            assert!(
                self.server.early_grants <= self.excuses,
                "{} grants before the newest token was due, with {} excuses",
                self.server.early_grants,
                self.excuses
            );
        }
        // INVARIANT: a refresh token is rotated only when its access token is due (or its
        // family revoked), unless a user's refresh() asked for it.
        assert_eq!(self.server.early_rotations, 0, "a rotation nobody needed");
        // INVARIANT (the seed once, fleet-wide): with a lease and no fault, the fleet exchanges
        // the seed exactly once, unless a user's login() or revoke() lost the pair it got.
        if self.setup.mode == Mode::Seeded && self.setup.flavour == Flavour::LeaseCas && self.setup.faults == 0 {
            assert!(
                self.server.seed_presentations <= 1 + self.user_events,
                "the seed was presented {} times without a fault",
                self.server.seed_presentations
            );
        }
        for s in self.live() {
            let m = self.slots[s].as_ref().unwrap();
            assert!(!m.r.m.is_disposed());
        }
    }

    /// A call failed (`code`: the error's, or [`API_401`]). INVARIANT: only inside a window
    /// that explains it: a fault not long before (any instance's: a dead lease holder, a
    /// stalled store, a late answer hold the others up), an error the server answered this
    /// instance, a call with an expired token that waited `timeoutMs` for another holder
    /// (documented), the seed's family lost (revoked or expired: the fleet's grant is over,
    /// documented), this instance's own `revoke()`, or a `login()` with a spent seed.
    fn failed(&mut self, s: usize, code: &str, message: &str, what: &str) {
        self.fig.failed_calls += 1;
        let why = self.explain_failure(s, code, message, what);
        trace!(
            self,
            "m{s} {what} FAILED {code} {message:?}: {}",
            why.unwrap_or("UNEXPLAINED")
        );
        let Some(why) = why else {
            panic!("m{s}: {what} failed with {code} ({message}) outside any fault window");
        };
        let clean = if self.setup.faults == 0 { "fault-free, " } else { "" };
        *self.fig.failures.entry(format!("{clean}{code}: {why}")).or_default() += 1;
    }

    fn explain_failure(&self, s: usize, code: &str, message: &str, what: &str) -> Option<&'static str> {
        let m = self.slots[s].as_ref().unwrap();
        let now = self.now;
        // An ended session has its own causes, never a fault: the revoke, the lost family.
        match code {
            "NOT_AUTHENTICATED" => return m.revoked_self.then_some("this instance revoked its session"),
            "SESSION_EXPIRED" if what == "login()" && message.contains("oauth.refreshToken was used already") => {
                return Some("login() with a spent seed")
            }
            "SESSION_EXPIRED" => return self.family_lost().then_some("the seed's family is lost"),
            _ => {}
        }
        if code == API_401 && self.family_lost() {
            return Some("the seed's family is lost");
        }
        if code == API_401 && message == FAMILY_REVOKED {
            return Some("its replay carried a token of a family just revoked");
        }
        if now <= m.error_until {
            return Some("the server answered an error");
        }
        if now <= self.window_until {
            return Some(self.window_why);
        }
        // README: "a call whose token has expired waits timeoutMs for the holder's record,
        // then fails with TIMEOUT" (so does one whose token the API refused).
        let lease_wait = message.contains("another instance held the") && message.contains("lease");
        let recent = |t: Option<i64>| t.is_some_and(|t| now - t <= WINDOW);
        let expired = m.r.m.info().access_expires_at.map_or(true, |x| x <= now);
        if code == "TIMEOUT" && lease_wait && recent(m.blocked_at) && (expired || recent(m.refused_at)) {
            return Some("an expired or refused token waited timeoutMs for another holder");
        }
        None
    }

    /// Seeded: the family of the seed is over (revoked by reuse detection or a revocation,
    /// or its newest refresh token expired), and with it the fleet's grant.
    fn family_lost(&self) -> bool {
        if self.setup.mode != Mode::Seeded {
            return false;
        }
        let newest = self.server.issued.iter().rev().find(|p| p.family == 0).unwrap();
        self.server.revoked[0] || self.now >= newest.pair.refresh_expires_at
    }

    // ----- the case --------------------------------------------------------------------------------

    fn run(&mut self, steps: usize) {
        trace!(self, "setup {:?}", self.setup);
        for step in 1..=steps {
            self.step = step;
            self.event();
            self.check();
        }
        self.quiesce();
    }

    /// No more users or faults: every link recovers, every request and storage call is
    /// answered, timers run until no work is left. Then every flight and call handed out
    /// must have settled, each exactly once.
    fn quiesce(&mut self) {
        self.step += 1;
        trace!(self, "QUIESCE");
        for s in self.live() {
            self.slots[s].as_mut().unwrap().stalled = false;
        }
        for _ in 0..5_000 {
            if let Some(k) = (0..self.auth.len()).find(|&k| !self.auth[k].cancelled || self.auth[k].served.is_some()) {
                if self.auth[k].served.is_none() {
                    self.serve(k);
                }
                self.deliver(k);
                self.check();
                continue;
            }
            // Cancelled requests that never reached the server stay unserved.
            self.auth.clear();
            if !self.storage.is_empty() {
                self.land(0, false);
                self.check();
                continue;
            }
            let now = self.now;
            let live = self.live();
            // API calls in flight get their answer.
            if let Some(s) = live.iter().copied().find(|&s| {
                self.slots[s]
                    .as_ref()
                    .unwrap()
                    .calls
                    .iter()
                    .any(|(_, at)| matches!(at, CallAt::Sending { deadline, .. } if now < *deadline))
            }) {
                let _ = s;
                self.api_answer();
                continue;
            }
            let next = live
                .iter()
                .filter_map(|&s| {
                    let r = &self.slots[s].as_ref().unwrap().r;
                    r.m.poll_timeout()
                        .filter(|(_, k)| *k == Keep::Alive)
                        .map(|(t, _)| (t, s))
                })
                .min();
            match next {
                Some((t, s)) => {
                    if t > self.now {
                        self.now = t;
                    }
                    trace!(self, "m{s} timer (quiesce)");
                    let now = self.now;
                    self.slots[s].as_mut().unwrap().r.timeout(now);
                    self.settle(s);
                    self.check();
                }
                None => return self.check_end(),
            }
        }
        panic!("the fleet did not quiesce");
    }

    fn check_end(&mut self) {
        for s in self.live() {
            let m = self.slots[s].as_ref().unwrap();
            for f in &m.handed_out {
                assert!(m.r.outcome(*f).is_some(), "m{s}: flight {f} never settled");
            }
            assert_eq!(m.calls, [], "m{s}: API calls never ended");
            assert!(m.callers.is_empty(), "m{s}: callers still waiting");
            assert!(m.r.m.is_idle(), "m{s}: not idle after quiesce");
        }
    }

    fn figures(&mut self) {
        let f = &mut self.fig;
        f.token_requests = (self.server.quiet_logins
            + self.server.explicit_logins
            + self.server.waited_out_logins
            + self.server.manual_grants
            + self.server.refresh_requests
            + self.server.seed_presentations) as u64;
        f.seed_presentations = self.server.seed_presentations as u64;
        f.revocations = self.server.revocations as u64;
        f.due_grants = self.server.due_grants as u64;
        f.early_grants = self.server.early_grants as u64;
        f.manual_grants = self.server.manual_grants as u64;
        f.early_rotations = self.server.early_rotations as u64;
        f.rejections = self.server.rejections as u64;
        if self.setup.mode == Mode::Seeded {
            f.seed_once = (self.server.seed_presentations == 1) as u64;
        }
        let lost = self.family_lost();
        let f = &mut self.fig;
        if lost {
            let clean = if self.setup.faults == 0 { "fault-free, " } else { "" };
            let why = match self.server.explained.first() {
                _ if self.server.revoked_by_request[0] => "revoke()",
                Some(why) => why,
                None => "its refresh token expired",
            };
            *f.lost
                .entry(format!("{clean}{:?}: {why}", self.setup.flavour))
                .or_default() += 1;
        }
        f.cases = 1;
        f.steps = self.step as u64;
        f.rotations = self.server.rotations as u64;
        f.refresh_requests = self.server.refresh_requests as u64;
        f.quiet_logins = self.server.quiet_logins as u64;
        f.explicit_logins = self.server.explicit_logins as u64;
        f.waited_out_logins = self.server.waited_out_logins as u64;
        f.reuses = self.server.reuses as u64;
        f.refused_writes = self.store.refused as u64;
        let clean = if self.setup.faults == 0 { "fault-free, " } else { "" };
        for why in &self.server.explained {
            *f.explained
                .entry(format!("{clean}{:?}: {why}", self.setup.flavour))
                .or_default() += 1;
        }
        f.rollbacks = self.store.rollbacks as u64;
    }
}

fn outcome_word(o: &Outcome) -> String {
    match o {
        Outcome::Done => "done".to_owned(),
        Outcome::Nothing => "nothing".to_owned(),
        Outcome::Again => "again".to_owned(),
        Outcome::Failed(e) => e.code().to_owned(),
    }
}

// ----- the runner ----------------------------------------------------------------------------

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Runs the case of `seed` in `mode`; on failure prints its seed and trace and panics.
fn run_case(seed: u64, steps: usize, print: bool, mode: Mode) -> Figures {
    let mut sim = Sim::new(seed, mode);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.run(steps)));
    if print || result.is_err() {
        eprintln!("----- fleet_sim {mode:?} seed {seed}: trace -----");
        for line in &sim.trace {
            eprintln!("{line}");
        }
    }
    if let Err(e) = result {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        let replay = match mode {
            Mode::Provider => format!("SIM_SEED={seed}"),
            Mode::Seeded => format!("SIM_OAUTH_MODE=seeded SIM_OAUTH_SEED={seed}"),
            Mode::ClientCredentials => format!("SIM_OAUTH_MODE=cc SIM_OAUTH_SEED={seed}"),
        };
        panic!("fleet_sim {mode:?} failed at seed {seed} (replay: {replay}): {msg}");
    }
    sim.figures();
    sim.fig
}

/// Runs `seeds` in `mode` and prints the figures (one line per case when there are few).
fn run_cases(mode: Mode, seeds: &[u64], steps: usize) {
    let print = seeds.len() == 1;
    let started = std::time::Instant::now();
    let mut total = Figures::default();
    for &seed in seeds {
        let f = run_case(seed, steps, print, mode);
        if seeds.len() <= 20 || env("SIM_PER_SEED") == Some(1) {
            eprintln!(
                "fleet_sim {mode:?} seed {seed}: {} token requests ({} seed, {} grants due, {} early, {} refreshes), \
                 {} rotations, {} reuses, {} rejections, {} failed calls, {} faults{}",
                f.token_requests,
                f.seed_presentations,
                f.due_grants,
                f.early_grants,
                f.refresh_requests,
                f.rotations,
                f.reuses,
                f.rejections,
                f.failed_calls,
                f.faults,
                if f.lost.is_empty() { "" } else { ", family lost" },
            );
        }
        total.add(f);
    }
    let explained = std::mem::take(&mut total.explained);
    let failures = std::mem::take(&mut total.failures);
    let lost = std::mem::take(&mut total.lost);
    eprintln!("fleet_sim {mode:?}: {total:?} in {:.1?}", started.elapsed());
    for (why, n) in explained {
        eprintln!("  reuses explained by {why}: {n}");
    }
    for (why, n) in failures {
        eprintln!("  failed calls, {why}: {n}");
    }
    for (why, n) in lost {
        eprintln!("  the seed's family lost, {why}: {n} cases");
    }
}

#[test]
fn a_fleet_sharing_one_store_and_one_server_never_reuses_a_token_without_a_fault() {
    let steps = env("SIM_STEPS").map_or(DEFAULT_STEPS, |n| n as usize);
    let seeds: Vec<u64> = match env("SIM_SEED") {
        Some(seed) => vec![seed],
        None => (1..=env("SIM_CASES").unwrap_or(DEFAULT_CASES)).collect(),
    };
    run_cases(Mode::Provider, &seeds, steps);
}

/// The OAuth 2.0 fleet: a seeded rotating refresh token (exchanged once by the fleet) and
/// client credentials (grants bounded per lifetime), on the provider's fault schedule.
#[test]
fn an_oauth_fleet_exchanges_its_seed_once_and_bounds_its_grants() {
    let steps = env("SIM_OAUTH_STEPS").map_or(DEFAULT_STEPS, |n| n as usize);
    let seeds: Vec<u64> = match env("SIM_OAUTH_SEED") {
        Some(seed) => vec![seed],
        None => (1..=env("SIM_OAUTH_CASES").unwrap_or(DEFAULT_OAUTH_CASES)).collect(),
    };
    let modes = match std::env::var("SIM_OAUTH_MODE").as_deref() {
        Ok("seeded") => vec![Mode::Seeded],
        Ok("cc") => vec![Mode::ClientCredentials],
        Ok(other) if !other.is_empty() => panic!("SIM_OAUTH_MODE is seeded or cc, not {other}"),
        _ => vec![Mode::Seeded, Mode::ClientCredentials],
    };
    for mode in modes {
        run_cases(mode, &seeds, steps);
    }
}

// ----- what the simulation found -----------------------------------------------------------------

/// FOUND by the simulation (fault-free), FIXED: the lease lived `timeoutMs × (retries + 2)`
/// and covered the looks and the attempts but not the write after the answer, so the next
/// holder could refresh with the token the server had just rotated. The lease now covers
/// the look, every attempt and the write (`timeoutMs × (retries + 3)` and the backoffs), and
/// a holder sends only an attempt whose answer can still be written within it.
#[test]
fn a_write_slower_than_the_old_lease_no_longer_lets_the_next_holder_reuse_the_token() {
    let lease_run = || {
        Run::with_lease(config(|o| {
            no_timer(o);
            o.retries = Some(0.0); // the lease lives 3 × 10 s
        }))
    };
    let (mut a, mut b) = (lease_run(), lease_run());
    let mut store = MemoryStore::default();
    let key = a.m.config().storage_key();
    let p1 = Pair::issued(1, EPOCH);
    store.records.insert(key.clone(), p1.record());
    for r in [&mut a, &mut b] {
        let f = wait(r.restore(EPOCH));
        r.serve(EPOCH, &mut store);
        assert_eq!(r.settled(f), Outcome::Done);
    }

    // A looks, takes the lease at t (until t + 20 s); its second look answers at t + 9.9 s,
    // in time; the refresh goes out (it ends by t + 19.9 s, inside the lease).
    let t = EPOCH + MINUTE;
    let fa = wait(a.refresh(t));
    let look = a.storage_ops()[0].clone();
    let reply = store.answer_at(t, &look);
    a.answer_storage(t, op_id(&look), reply);
    let acquire = a.storage_ops()[0].clone();
    let reply = store.answer_at(t, &acquire);
    a.answer_storage(t, op_id(&acquire), reply);
    let look = a.storage_ops()[0].clone();
    let reply = store.answer_at(t + 9_900, &look);
    a.answer_storage(t + 9_900, op_id(&look), reply);
    assert_eq!(a.refresh_tokens_sent(), [rt(1)]);
    // The server rotates rt1 and answers at t + 19.8 s, in time. A writes pair 2...
    a.answer(t + 19_800, ok(&Pair::issued(2, t + 19_800)));
    assert!(a.has_open_op("put"));

    // ...and its write, in time too (its deadline is t + 29.8 s), lands at t + 25 s. Meanwhile
    // the lease ran out at t + 20 s: B, due at t + 20.1 s, takes it, finds pair 1 and sends rt1.
    let fb = wait(b.refresh(t + 20_100));
    b.serve(t + 20_100, &mut store);
    let put = a.storage_ops()[0].clone();
    let reply = store.answer_at(t + 25_000, &put);
    a.answer_storage(t + 25_000, op_id(&put), reply);
    assert_eq!(a.settled(fa), Outcome::Done);
    assert_eq!(b.outcome(fb), None);
    assert_eq!(
        b.refresh_tokens_sent(),
        [] as [String; 0],
        "B sent rt1, which the server rotated into pair 2 under A's lease: a reuse"
    );
}

/// Two cold seeded instances on one store with a lease: A's first call finds the record empty,
/// takes the lease, looks again and sends the seed (its flight is returned); B has not asked.
fn a_holds_the_lease_and_sends_the_seed() -> (MemoryStore, Run, Run, FlightId) {
    let cfg = fleet_config(Mode::Seeded, false, 0);
    let mut store = MemoryStore::default();
    let mut a = Run::with_persistence(cfg.clone(), Persistence::StorageWithLease, 1);
    let b = Run::with_persistence(cfg, Persistence::StorageWithLease, 2);
    let fa = wait_token(a.ask(EPOCH, Need::Strict));
    a.serve(EPOCH, &mut store);
    assert_eq!(form_field(&a.open_send().body, "refresh_token"), Some(rt(SEED)));
    (store, a, b, fa)
}

/// FOUND by the OAuth 2.0 simulation (fault-free, with a lease), FIXED: a cold instance that
/// finds the lease taken waits `timeoutMs` for the holder's record, then ran the grant itself
/// without the lease (`looked_before_login`). With client credentials that costs one more
/// token; with a seed it sent the seed the holder had just exchanged, and the server, seeing
/// a spent refresh token, revoked the whole grant: every instance ended with SESSION_EXPIRED.
/// Every call here is answered within `timeoutMs`. Now the waiting call fails with TIMEOUT
/// and the next one looks again, and adopts the holder's pair.
#[test]
fn a_cold_instance_that_waited_out_the_holder_never_sends_the_seed_the_holder_exchanged() {
    let (mut store, mut a, mut b, fa) = a_holds_the_lease_and_sends_the_seed();
    // B's first call: the record is empty, the lease is A's: B waits for A's record.
    let fb = wait_token(b.ask(EPOCH, Need::Strict));
    b.serve(EPOCH, &mut store);
    assert!(!b.has_open_send());
    // The server exchanges the seed; its answer reaches A after 9.9 s (in time).
    let t = EPOCH + 9_900;
    a.answer(t, oauth_token(&Pair::issued(2, EPOCH), true, EPOCH));
    assert!(a.has_open_op("put"), "A writes the pair");
    // B looks again and again while A's write is on its way (a write may take timeoutMs).
    while b.outcome(fb).is_none() && !b.has_open_send() {
        let now = b.fire();
        assert!(now < t + TIMEOUT, "B waited past A's write deadline");
        b.serve(now, &mut store);
    }
    assert!(
        !b.has_open_send(),
        "B sent the seed without the lease while A, which holds it, had exchanged the seed and was writing the pair"
    );
    let e = b.failure(fb);
    assert_eq!(e.code(), "TIMEOUT", "{e}");
    // A's write lands; B's next call adopts pair 2 and sends nothing.
    let put = a.storage_ops()[0].clone();
    let t = t + 5_000;
    let reply = store.answer_at(t, &put);
    a.answer_storage(t, op_id(&put), reply);
    a.serve(t, &mut store);
    assert_eq!(a.settled(fa), Outcome::Done);
    let fb = wait_token(b.ask(t, Need::Strict));
    b.serve(t, &mut store);
    assert_eq!(b.settled(fb), Outcome::Done);
    assert_eq!(ready(&b.token(t, Need::Strict, Waited::Done, 1)), at(2));
    assert!(b.sends().is_empty());
}

/// FOUND by the OAuth 2.0 simulation, FIXED: `login()` with a seed reads the record under
/// the lease before it sends the seed (README: "`login()` looks first too"), but a `login()`
/// called while a `revoke()` ran was queued, and the revoke's end started it with its
/// request at once. A cold instance's `revoke(); login()` thus sent the seed while another
/// instance held the lease and was exchanging it: a reuse, and the server revoked the grant.
#[test]
fn a_login_queued_behind_a_revoke_looks_at_the_record_before_it_sends_the_seed() {
    let cfg = fleet_config(Mode::Seeded, false, 0);
    let mut r = Run::with_persistence(cfg, Persistence::StorageWithLease, 1);
    // A cold instance: revoke() (nothing held: only the record is deleted), then login().
    let revoke = wait(r.revoke(EPOCH));
    let login = r.login_with(EPOCH, None);
    assert_eq!(r.storage_ops().len(), 1, "the revoke's delete: {:?}", r.storage_ops());
    r.answer_delete(EPOCH, StorageReply::Empty);
    assert_eq!(r.settled(revoke), Outcome::Done);
    assert_eq!(r.outcome(login), None);
    assert!(
        !r.has_open_send(),
        "the queued login() sent the seed at once; it must read the record (and take the lease) first"
    );
    let kinds: Vec<&str> = r.storage_ops().iter().map(op_kind).collect();
    assert_eq!(kinds, ["get"]);
}

/// FOUND by the OAuth 2.0 simulation, FIXED: the machine remembered spent refresh tokens in
/// a ring of 4 fingerprints, the seed among them. After 4 rotations it had forgotten that its
/// seed was spent: `login()` on the active session, which fails with SESSION_EXPIRED after 1
/// to 3 rotations, sent the seed again (a reuse: the server revokes the grant), and so would
/// a transparent re-login. README: "A session sends its seed at most once."
#[test]
fn a_session_never_sends_its_seed_again_however_many_rotations_followed() {
    for rotations in 0..6u32 {
        let mut r = Run::new(fleet_config(Mode::Seeded, false, 0));
        let f = r.login_with(EPOCH, None);
        assert_eq!(form_field(&r.open_send().body, "refresh_token"), Some(rt(SEED)));
        r.answer(EPOCH, oauth_token(&Pair::issued(2, EPOCH), true, EPOCH));
        assert_eq!(r.settled(f), Outcome::Done);
        let mut t = EPOCH;
        for n in 2..2 + rotations {
            t += MINUTE;
            let f = wait(r.refresh(t));
            assert_eq!(form_field(&r.open_send().body, "refresh_token"), Some(rt(n)));
            r.answer(t, oauth_token(&Pair::issued(n + 1, t), true, t));
            assert_eq!(r.settled(f), Outcome::Done);
        }
        match r.m.login(t + MINUTE, None) {
            Step::Fail(e) => assert_eq!(e.code(), "SESSION_EXPIRED", "after {rotations} rotations: {e}"),
            other => {
                r.drain();
                let sent = r
                    .has_open_send()
                    .then(|| form_field(&r.open_send().body, "refresh_token"));
                panic!("after {rotations} rotations, login() went on ({other:?}) and sent {sent:?}: the spent seed");
            }
        }
    }
}

/// FOUND by the OAuth 2.0 simulation, OPEN (a gap next to the fix above, not a broken
/// documented promise): an instance whose `acquire` times out (or throws) goes on without the
/// lease ("a storage failure never blocks the protocol"). With a seed that means sending it
/// while another instance may hold the lease and have exchanged it: the server revokes the
/// grant. In the simulation's faulty seeded cases with a lease, about three in four losses of
/// the seed's family begin this way (a slow store, then a second exchange). The fix above
/// makes a waited-out instance fail instead of sending the seed; the same reasoning holds
/// when the acquire's answer never came.
#[test]
fn an_instance_whose_acquire_timed_out_never_sends_the_seed_the_holder_exchanges() {
    let (_store, mut a, mut b, fa) = a_holds_the_lease_and_sends_the_seed();
    // B: the record is empty; its acquire gets no answer within timeoutMs (a slow link).
    let fb = wait_token(b.ask(EPOCH, Need::Strict));
    b.answer_get(EPOCH, StorageReply::Empty);
    assert!(b.has_open_op("acquire"));
    // The server exchanges the seed for A (A writes the pair); B's acquire times out.
    a.answer(
        EPOCH + SECOND,
        oauth_token(&Pair::issued(2, EPOCH + SECOND), true, EPOCH + SECOND),
    );
    let t = b.fire();
    assert_eq!(t, EPOCH + TIMEOUT);
    let seeds: Vec<String> = b
        .sends()
        .iter()
        .filter_map(|q| form_field(&q.body, "refresh_token"))
        .collect();
    assert_eq!(
        seeds,
        [] as [String; 0],
        "B sent the seed without the lease while A, which holds it, had exchanged it (flight {fb}, A's {fa})"
    );
}
