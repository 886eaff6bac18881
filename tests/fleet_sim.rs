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
//! `SIM_SEED=<n>` runs that one case (printing its trace), `SIM_CASES=<n>` that many cases
//! (seeds 1..=n), `SIM_STEPS=<n>` steps per case. A failing case prints its seed and trace.
// Native only: the harness reads JSON with the core's native reader.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::collections::HashSet;
use std::fmt::Write as _;

use auth_session::core::machine::{
    ApiStep, AuthRequest, Behind, CallId, Endpoint, Event, FlightId, IoId, Keep, Need, Outcome, Output, Persistence,
    Reason, Step, StorageOp, StorageReply, TokenStep, Waited, Wake, Want, MAX_ROUNDS,
};
use common::*;

/// Cases and steps by default: about 7 s in a debug build on a 2-core machine.
const DEFAULT_CASES: u64 = 2000;
const DEFAULT_STEPS: usize = 300;

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

#[derive(Clone, Debug)]
struct Setup {
    machines: usize,
    flavour: Flavour,
    retries: u8,
    auto_refresh: bool,
    /// How often faults are injected: 0 (none: the strictest cases), 1 or 2.
    faults: u32,
}

impl Setup {
    fn draw(rng: &mut Rng) -> Setup {
        Setup {
            machines: 2 + rng.below(5),
            flavour: if rng.chance(650) {
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
            pair: Pair::issued(n, now),
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
}

impl Inst {
    fn new(id: u32, setup: &Setup, seed: u64) -> Inst {
        let cfg = config(|o| {
            with_credentials(o);
            o.auto_refresh = Some(setup.auto_refresh);
            o.retries = Some(setup.retries as f64);
        });
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
        }
    }

    fn explicit_open(&self) -> bool {
        self.explicit.is_some_and(|f| self.r.outcome(f).is_none())
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
}

/// What a fault did, for the trace and the figures.
macro_rules! trace {
    ($sim:expr, $($arg:tt)*) => {{
        let mut line = format!("{:>4} +{:>9}ms ", $sim.step, $sim.now - EPOCH);
        let _ = write!(line, $($arg)*);
        $sim.trace.push(line);
    }};
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng(seed);
        let setup = Setup::draw(&mut rng);
        let mut sim = Sim {
            slots: Vec::new(),
            setup,
            rng,
            now: EPOCH,
            next_inst: 0,
            server: Server::default(),
            store: Store::default(),
            auth: Vec::new(),
            storage: Vec::new(),
            excuses: 0,
            trace: Vec::new(),
            late_input: false,
            fig: Figures::default(),
            step: 0,
        };
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
            match caller {
                Caller::Session => {
                    if outcome == Outcome::Again {
                        let step = m.r.rejoin();
                        if let Step::Wait(f) = step {
                            m.handed_out.push(f);
                            m.callers.push((f, Caller::Session));
                        }
                    }
                }
                Caller::Token { need, round } => {
                    let step = m.r.token(now, need, waited(&outcome), round + 1);
                    self.on_token(s, step, need, round + 1);
                }
                Caller::Api { call, round } => self.api_token(s, call, waited(&outcome), round + 1),
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
                    }
                    let m = self.slots[s].as_mut().unwrap();
                    for st in self.storage.iter().filter(|st| st.inst == inst && st.io == io) {
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
                }
                Output::Call(call, wake) => self.slots[s].as_mut().unwrap().wakes.push((call, wake)),
                Output::Settle(..) | Output::Event(_) | Output::Log(_) => {}
            }
        }
    }

    /// A machine sends an auth request. For a refresh: the first global invariant.
    fn on_send(&mut self, s: usize, req: AuthRequest, deadline: i64) {
        let now = self.now;
        let m = self.slots[s].as_ref().unwrap();
        let under_lease = match &self.store.lease {
            Some((id, until)) => *until > now && m.granted.contains(id),
            None => false,
        };
        let explicit = req.endpoint == Endpoint::Login && m.explicit_open();
        // A late answer (past its deadline, its timer not run yet) may find the lease run out.
        let excuse = m.acquire_late || self.late_input || (req.endpoint == Endpoint::Login && m.acquire_refused);
        let (inst, last_read, blind) = (m.id, m.last_read, m.blind);
        match req.endpoint {
            Endpoint::Refresh => {
                let t = number(&body_token(&req).unwrap());
                trace!(
                    self,
                    "m{s} SEND refresh rt{t}{}",
                    if under_lease { " (lease)" } else { "" }
                );
                // INVARIANT (look before refresh): a machine never refreshes with a token
                // whose successor it has just read in the record. This is what adoption
                // is for; no fault excuses it.
                if let Some(p) = last_read {
                    assert!(
                        !(self.server.get(t).child.is_some() && self.server.descends(p, t)),
                        "m{s} refreshes with rt{t} after reading pair {p}, a newer pair of the same \
                         family that the server issued by rotating rt{t}: the newer stored pair was ignored"
                    );
                }
            }
            Endpoint::Login => trace!(
                self,
                "m{s} SEND login{}{}",
                if explicit { " (explicit)" } else { "" },
                if under_lease { " (lease)" } else { "" }
            ),
            Endpoint::Revoke | Endpoint::Discovery => trace!(self, "m{s} SEND revoke"),
        }
        // INVARIANT (one holder): with a lease, a refresh goes out under this instance's
        // lease, unless it could not get one (its acquire timed out) or a late answer found
        // it run out. A quiet login outside the lease costs at most a second login, never a
        // token, and is only counted: the re-login after a rejected refresh (`session_over`)
        // and the login after a late second look (`looked_before_login`) do not check that
        // the lease still runs, as `looked` does for a refresh.
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
            served: None,
            cancelled: false,
        });
    }

    fn on_token(&mut self, s: usize, step: TokenStep, need: Need, round: u32) {
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
            TokenStep::Fail(_) | TokenStep::Rethrow => {}
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

    fn api_token(&mut self, s: usize, call: CallId, waited: Waited, round: u32) {
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
            TokenStep::Fail(_) | TokenStep::Rethrow => self.end_call(s, call),
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
                self.api_token(s, call, Waited::Nothing, 0);
            }
            Wake::Fail(_) => {
                assert!(at.is_some(), "m{s}: {call} failed after it ended");
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
        self.on_token(s, step, need, 0);
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
        self.api_token(s, call, Waited::Nothing, 0);
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
        let step = m.r.m.api_response(now, call, status, false, None);
        m.r.drain();
        match step {
            ApiStep::Return => self.end_call(s, call),
            ApiStep::Token => self.api_token(s, call, Waited::Nothing, 0),
            ApiStep::Fail(_) => self.end_call(s, call),
            other => panic!("m{s}: API call {call} answered {status}: unexpected {other:?}"),
        }
        self.settle(s);
    }

    fn user_refresh(&mut self) {
        let Some(s) = self.pick_live() else { return };
        trace!(self, "m{s} refresh()");
        let now = self.now;
        let m = self.slots[s].as_mut().unwrap();
        if let Step::Wait(f) = m.r.refresh(now) {
            m.handed_out.push(f);
            m.callers.push((f, Caller::Session));
        }
        self.settle(s);
    }

    fn user_login(&mut self) {
        let Some(s) = self.pick_live() else { return };
        trace!(self, "m{s} login()");
        // It supersedes whatever op the machine had: a pair that op got goes unwritten (its
        // write is cancelled and its lease given back: the next holder may reuse the token
        // that pair replaced; see the report of `abandon_op`).
        self.excuses += 1;
        for n in self.slots[s].as_ref().unwrap().unwritten.clone() {
            self.server.taint(n, EXPLICIT);
        }
        let now = self.now;
        let m = self.slots[s].as_mut().unwrap();
        // A lease held for a refresh on the wire or a write in flight is left to run out by
        // design (the server may have rotated, the write may still land): not a gap.
        if let Some((_, counted)) = m.holding.as_mut() {
            *counted = true;
        }
        let f = m.r.login_with(now, None);
        m.explicit = Some(f);
        m.handed_out.push(f);
        m.callers.push((f, Caller::Session));
        self.settle(s);
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

    /// The server processes request `k`: a login opens a family, a refresh rotates its
    /// token, or is a reuse (the family is revoked) or refused.
    fn serve(&mut self, k: usize) {
        self.lease_gaps();
        let now = self.now;
        let a = &self.auth[k];
        let (endpoint, explicit, waited_out, under_lease) = (a.req.endpoint, a.explicit, a.waited_out, a.under_lease);
        let token = body_token(&a.req);
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
        let (reply, issued) = match endpoint {
            Endpoint::Login => {
                let family = self.server.revoked.len();
                self.server.revoked.push(false);
                let n = self.server.issue(now, family);
                if explicit {
                    self.server.explicit_logins += 1;
                } else if waited_out {
                    self.server.waited_out_logins += 1;
                } else {
                    self.server.quiet_logins += 1;
                }
                trace!(self, "server: login by {s} -> pair {n}");
                (ok(&self.server.get(n).pair), Some(n))
            }
            Endpoint::Refresh => {
                let t = number(&token.unwrap());
                self.server.refresh_requests += 1;
                let p = self.server.get(t).clone();
                if p.child.is_some() || p.rejected {
                    self.reuse(t, k, late);
                    (unauthorized(), None)
                } else if self.server.revoked[p.family] || now >= p.pair.refresh_expires_at {
                    self.server.refused += 1;
                    trace!(self, "server: refresh rt{t} by {s} refused (family revoked or expired)");
                    (unauthorized(), None)
                } else {
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
                    (ok(&self.server.get(n).pair), Some(n))
                }
            }
            Endpoint::Revoke | Endpoint::Discovery => (status(200), None),
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
        let (inst, under_lease, blind) = (self.auth[k].inst, self.auth[k].under_lease, self.auth[k].blind);
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
        let race =
            (self.setup.flavour == Flavour::Plain || !under_lease).then_some("two refreshes at once without a lease");
        let held = late.then_some("the reusing request reached the server after its deadline");
        let blind = blind.then_some("the reuser's look timed out: it refreshed without looking");
        let why = by_taint.or(by_rejection).or(race).or(held).or(blind);
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
        // INVARIANT: without faults, a lease means no reuse but for the two known causes.
        if self.setup.faults == 0 && self.setup.flavour == Flavour::LeaseCas {
            assert!(
                why == EXPLICIT || why == GAP,
                "a refresh token reused in a fault-free case with a lease: {why}"
            );
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
                self.store.record = None;
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
                (StorageOp::Acquire { .. }, _) => m.acquire_refused = true,
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
                self.server.quiet_logins <= 1 + self.excuses,
                "{} quiet logins with {} excuses",
                self.server.quiet_logins,
                self.excuses
            );
        }
        for s in self.live() {
            let m = self.slots[s].as_ref().unwrap();
            assert!(!m.r.m.is_disposed());
        }
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

/// Runs the case of `seed`; on failure prints its seed and trace and panics.
fn run_case(seed: u64, steps: usize, print: bool) -> Figures {
    let mut sim = Sim::new(seed);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.run(steps)));
    if print || result.is_err() {
        eprintln!("----- fleet_sim seed {seed}: trace -----");
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
        panic!("fleet_sim failed at seed {seed} (replay: SIM_SEED={seed}): {msg}");
    }
    sim.figures();
    sim.fig
}

#[test]
fn a_fleet_sharing_one_store_and_one_server_never_reuses_a_token_without_a_fault() {
    let steps = env("SIM_STEPS").map_or(DEFAULT_STEPS, |n| n as usize);
    let seeds: Vec<u64> = match env("SIM_SEED") {
        Some(seed) => vec![seed],
        None => (1..=env("SIM_CASES").unwrap_or(DEFAULT_CASES)).collect(),
    };
    let print = seeds.len() == 1;
    let started = std::time::Instant::now();
    let mut total = Figures::default();
    for seed in seeds {
        let f = run_case(seed, steps, print);
        total.cases += f.cases;
        total.steps += f.steps;
        total.faults += f.faults;
        total.kills += f.kills;
        total.lost_writes += f.lost_writes;
        total.stalls += f.stalls;
        total.late += f.late;
        total.lost_answers += f.lost_answers;
        total.timeouts += f.timeouts;
        total.rotations += f.rotations;
        total.refresh_requests += f.refresh_requests;
        total.quiet_logins += f.quiet_logins;
        total.explicit_logins += f.explicit_logins;
        total.waited_out_logins += f.waited_out_logins;
        total.reuses += f.reuses;
        total.adoptions += f.adoptions;
        total.refused_writes += f.refused_writes;
        total.rollbacks += f.rollbacks;
        total.api_calls += f.api_calls;
        total.api_401 += f.api_401;
        total.logins_outside_lease += f.logins_outside_lease;
        total.lease_gaps += f.lease_gaps;
        for (why, n) in f.explained {
            *total.explained.entry(why).or_default() += n;
        }
    }
    let explained = std::mem::take(&mut total.explained);
    eprintln!("fleet_sim: {total:?} in {:.1?}", started.elapsed());
    for (why, n) in explained {
        eprintln!("  reuses explained by {why}: {n}");
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
