//! The session as a sans-IO state machine: every protocol decision, no I/O, no clock, no
//! futures.
//!
//! The driver (the JavaScript class in the npm package, or a test) feeds it inputs — a user
//! command, an auth response, a storage result, a timer firing — each with `now` (local epoch
//! milliseconds), and after every input drains [`Machine::poll_output`] and re-reads
//! [`Machine::poll_timeout`]. Outputs say what to do: send this auth request, cancel that one,
//! read or write storage, settle a flight's promise, emit an event. The driver performs them
//! and reports back with the same [`IoId`].
//!
//! **Flights.** A user call that has to wait (for a login, a refresh, a revoke, a restore) is
//! given a [`FlightId`]; the driver makes one promise per flight, and everyone waiting on the
//! same login or refresh awaits the same promise. That is what single-flight means here: at
//! most one auth operation exists at a time ([`Machine::op`]), and with it at most one auth
//! request open at the server. A flight ends with an [`Outcome`]; `Again` tells its waiters
//! that the operation was superseded (a `login` replaced a refresh, a `revoke` ended the
//! session) and that they should ask the machine again.
//!
//! **API calls** (`fetch`/`json`) are operations of the machine too (`api.rs`): a table of
//! calls in flight, each with its stage and deadline; which token, whether to replay, retry
//! or follow a redirect, after how long, and which error are decided there.
//!
//! After `revoke` or `dispose`, no output carries the old tokens: the pair is dropped from the
//! state before the revoke request is built, and a superseded attempt is cancelled, its late
//! answer ignored (its [`IoId`] no longer matches anything).
//!
//! **Where things are.** `io.rs`: what the driver sees (inputs, outputs, answers). `op.rs`:
//! the auth operation and its lifecycle. `storage.rs`: restore, looks, the lease, adoption
//! and writes. `pending.rs`: the I/O out with the driver, with deadlines. `api.rs`: API
//! calls. Here: the machine's state and its entry points.

#[allow(unused_imports)]
use crate::prelude::*;

mod api;
mod io;
mod op;
mod pending;
mod storage;

pub use api::{ApiFailure, ApiStep, Behind, BodyFailure, CallId, Wake, Want};
pub use io::{
    AuthReply, AuthRequest, Endpoint, Event, FlightId, IoFailure, IoId, Keep, Log, Need, Outcome, Output, Persistence,
    Phase, Reason, SessionInfo, Step, StorageOp, StorageReply, TokenStep, Waited, Why, Wire,
};

use op::{Next, Op, OpKind, Stage, Trigger};
use pending::{earliest, Pending, Purpose};

use alloc::collections::VecDeque;

use crate::core::config::{Config, Credentials};
use crate::core::envelope::TokenPair;
use crate::core::error::{AuthError, Cause, ErrorCode};
use crate::core::oauth::{Grant, NEVER};
use crate::core::secret::{AccessToken, RefreshToken};
use crate::core::timing::{effective_margin, retry_delay};

/// A background refresh uses the current token only if it has at least this long to live,
/// so the request it authorises cannot expire on the way.
pub const BACKGROUND_MIN_LEFT_MS: i64 = 5_000;
/// How many flights one call may wait for before the machine calls the server's tokens
/// unusable: enough for a refresh, a re-login and a supersession, never a loop.
pub const MAX_ROUNDS: u32 = 4;
/// Same-origin redirects a `fetch` follows before it hands the redirect back.
pub const MAX_REDIRECTS: u32 = 20;

/// A token pair as held: the server's pair plus local-clock deadlines.
#[derive(Clone, Debug)]
struct Held {
    pair: TokenPair,
    access_local: i64,
    refresh_local: i64,
    margin_ms: i64,
    serial: u32,
    /// The rotation version of the pair, as stored (see [`envelope::Stored`]).
    version: u64,
    /// The account fingerprint of whoever logged in, when known.
    account: Option<String>,
}

#[derive(Clone, Debug)]
enum State {
    Anonymous,
    Active(Held),
    Expired,
    Revoked,
    /// Terminal. Keeps the phase shown before, with no tokens.
    Disposed(Phase),
}

/// The session state machine. See the module docs.
pub struct Machine {
    config: Config,
    has_storage: bool,
    has_lease: bool,
    logging: bool,
    state: State,
    /// The server's clock minus ours.
    skew_ms: i64,
    op: Option<Box<Op>>,
    /// A login asked for while a revoke was on the wire: starts when the revoke ends.
    queued: Option<Box<Op>>,
    /// The I/O out with the driver: the op's, a revoke's delete, a restore's read.
    pending: Vec<Pending>,
    /// When the auto-refresh timer is due (local clock), while a pair is held.
    refresh_at: Option<i64>,
    /// Bumped whenever the held pair or the session's standing changes.
    epoch: u32,
    serial: u32,
    next_id: u32,
    /// Fingerprints of refresh tokens spent (rotated away or rejected): never sent or
    /// installed again. A small ring: the token itself is not kept.
    spent: [u64; 4],
    spent_next: usize,
    /// The latest `access_expires_at` of any pair held so far. A stored record older than
    /// this is one we rotated away from (its refresh token is spent, maybe long since out
    /// of `spent`): `restore` never installs it.
    newest: i64,
    /// The `expired` event for the session's current end has fired: a re-login that fails
    /// later, while it is still expired, reports nothing more (one event per end).
    expiry_reported: bool,
    rng: u64,
    outputs: VecDeque<Output>,
    /// The result of the last user operation that settled `Done`, for [`Machine::result`].
    last_error: Option<Box<AuthError>>,
    /// The status of the auth reply being handled.
    reply_status: u16,
    /// OAuth 2.0: that reply said `invalid_grant` (the grant sent is dead).
    reply_rejected: bool,
    /// OAuth 2.0: the application's refresh token (the seed) was exchanged or rejected, or
    /// a pair descending from it was restored: it is never sent again. A flag of its own, not
    /// the ring of spent tokens, which forgets after a few rotations.
    seed_used: bool,
    /// The highest record version read from storage: a pair of ours is stored above it.
    seen_version: u64,
    /// The API calls in flight (see `api.rs`).
    calls: Vec<api::Call>,
    /// The serial of a pair the API refused (a 401): a replay never gets it again.
    rejected: Option<u32>,
    /// The last pair came from a `login(username, password)` of another account than
    /// `credentials`: a transparent re-login would switch accounts, so there is none.
    other_account: bool,
}

fn fingerprint(token: &str) -> u64 {
    // FNV-1a: only to recognise a token we spent, never to protect one.
    token.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn disposed() -> AuthError {
    AuthError::new(ErrorCode::Disposed, "the session was disposed")
}

fn timeout_error() -> AuthError {
    AuthError::new(ErrorCode::Timeout, "no complete answer within timeoutMs")
}

fn not_logged_in() -> AuthError {
    AuthError::new(ErrorCode::NotAuthenticated, "not logged in; call login() first")
}

/// A storage failure, reported as an `error` event and never blocking the protocol.
fn storage_error(what: &'static str, cause: Option<Cause>) -> AuthError {
    AuthError::new(ErrorCode::Storage, what).with_cause(cause)
}

impl Machine {
    /// A machine for validated options. `seed` feeds the retry jitter (the driver passes a
    /// random number; tests a fixed one).
    pub fn new(config: Config, persistence: Persistence, seed: u64) -> Machine {
        Machine {
            config,
            has_storage: persistence != Persistence::MemoryOnly,
            has_lease: persistence == Persistence::StorageWithLease,
            logging: false,
            state: State::Anonymous,
            skew_ms: 0,
            op: None,
            queued: None,
            pending: Vec::new(),
            refresh_at: None,
            epoch: 0,
            serial: 0,
            next_id: 1,
            spent: [0; 4],
            spent_next: 0,
            newest: i64::MIN,
            expiry_reported: false,
            // xorshift needs a state other than 0; every seed gives its own stream.
            rng: match seed ^ 0x9e37_79b9_7f4a_7c15 {
                0 => 1,
                s => s,
            },
            outputs: VecDeque::new(),
            last_error: None,
            reply_status: 0,
            reply_rejected: false,
            seed_used: false,
            seen_version: 0,
            calls: Vec::new(),
            rejected: None,
            other_account: false,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    // ----- outputs ----------------------------------------------------------------------------

    /// The next thing the driver must do. Drain it after every input.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        let out = self.outputs.pop_front();
        if out.is_none() && self.outputs.capacity() > 0 {
            // Drained: give the buffer back. An idle session (thousands per process in a
            // multi-tenant service) holds no queue; outputs are rare enough to allocate anew.
            self.outputs = VecDeque::new();
        }
        out
    }

    /// When [`Machine::handle_timeout`] must be called next (local epoch ms), and whether
    /// that deadline is work a caller awaits (keep the process alive) rather than the idle
    /// auto-refresh timer. Any input may change the answer: read it after each.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<(i64, Keep)> {
        let work = earliest(self.io_deadline(), self.op_timer());
        let work = earliest(work, self.calls_deadline());
        match (work, self.refresh_at) {
            (Some(w), Some(r)) if r < w => Some((r, Keep::Alive)),
            (Some(w), _) => Some((w, Keep::Alive)),
            (None, Some(r)) => Some((r, Keep::Idle)),
            (None, None) => None,
        }
    }

    fn push(&mut self, output: Output) {
        self.outputs.push_back(output);
    }

    fn emit(&mut self, event: Event) {
        self.push(Output::Event(event));
    }

    /// Records what happens for the `logger` hook, when one is set.
    fn log(&mut self, record: Log) {
        if self.logging {
            self.push(Output::Log(record));
        }
    }

    /// Turns the [`Output::Log`] records on (the driver has a `logger`).
    pub fn set_logging(&mut self, on: bool) {
        self.logging = on;
    }

    fn id(&mut self) -> IoId {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    fn random(&mut self) -> f64 {
        // xorshift64*: jitter only.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// 128 bits of the session's random stream, in hex: an assertion's `jti`. The stream is
    /// seeded by the driver from the platform's random source, so no two instances share it.
    fn nonce(&mut self) -> String {
        let mut out = String::with_capacity(32);
        for _ in 0..2 {
            self.random();
            let mut x = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
            for _ in 0..16 {
                out.push(char::from(b"0123456789abcdef"[(x >> 60) as usize]));
                x <<= 4;
            }
        }
        out
    }

    // ----- state ------------------------------------------------------------------------------

    pub fn info(&self) -> SessionInfo {
        let (state, held) = match &self.state {
            State::Anonymous => (Phase::Anonymous, None),
            State::Active(h) => (Phase::Active, Some(h)),
            State::Expired => (Phase::Expired, None),
            State::Revoked => (Phase::Revoked, None),
            State::Disposed(p) => (*p, None),
        };
        SessionInfo {
            state,
            client_id: held.and_then(|h| h.pair.client_id),
            // An expiry the server did not state is unknown, not a date.
            access_expires_at: held.map(|h| h.pair.access_expires_at).filter(|t| *t < NEVER),
            refresh_expires_at: held.map(|h| h.pair.refresh_expires_at).filter(|t| *t < NEVER),
        }
    }

    /// The held pair's access token (what every `Ready` token step hands out).
    pub fn access_token(&self) -> Option<&AccessToken> {
        self.held().map(|h| &h.pair.access_token)
    }

    /// The server's clock minus ours, as read from auth responses' `Date` headers (0 within
    /// the header's noise): for a driver that hands the pair on (the Workers broker).
    pub fn skew_ms(&self) -> i64 {
        self.skew_ms
    }

    /// When the held pair is due for a refresh (local clock): its expiry less the margin the
    /// machine uses for it. For a driver whose timer is not the machine's (a Durable
    /// Object's alarm). `None` without a pair.
    pub fn due_at(&self) -> Option<i64> {
        self.held().map(|h| h.access_local - h.margin_ms)
    }

    /// When to try again after a refresh such a driver started failed for a temporary
    /// reason (as the machine's own timer would); `None` once the access token has expired.
    pub fn retry_at(&self, now: i64) -> Option<i64> {
        let h = self.held()?;
        retry_delay(h.access_local, now).map(|d| now + d as i64)
    }

    /// No call and no auth or storage operation in flight: disposing now breaks nothing and
    /// loses nothing (a pair that came in has been written, or its write has failed).
    pub fn is_idle(&self) -> bool {
        self.op.is_none() && self.queued.is_none() && self.pending.is_empty() && self.calls.is_empty()
    }

    pub fn is_disposed(&self) -> bool {
        matches!(self.state, State::Disposed(_))
    }

    fn held(&self) -> Option<&Held> {
        match &self.state {
            State::Active(h) => Some(h),
            _ => None,
        }
    }

    /// The error a call gets when the session holds no tokens and cannot get any.
    fn state_error(&self) -> Option<AuthError> {
        let creds = self.relogin_credentials().is_some();
        match self.state {
            State::Disposed(_) => Some(disposed()),
            State::Active(_) => None,
            State::Revoked => Some(AuthError::new(
                ErrorCode::NotAuthenticated,
                "the session was revoked; call login() to start a new one",
            )),
            State::Anonymous if !creds => Some(not_logged_in()),
            State::Expired if !creds => Some(AuthError::new(
                ErrorCode::SessionExpired,
                "the session has expired; call login() to start a new one",
            )),
            State::Anonymous | State::Expired => None,
        }
    }

    /// What a settled `login`/`refresh` resolves with: the info of an active session, or
    /// why there is none.
    pub fn result(&self) -> Result<SessionInfo, AuthError> {
        match self.state_error() {
            Some(e) => Err(e),
            None if self.held().is_some() => Ok(self.info()),
            None => Err(self.last_error.as_deref().cloned().unwrap_or_else(not_logged_in)),
        }
    }

    /// Every secret the session knows right now: scrubbed from whatever a server says.
    fn secrets(&self) -> Vec<&str> {
        self.secrets_with(None)
    }

    /// [`Machine::secrets`] plus those of `taken`, an op out of `self.op` while it is handled.
    fn secrets_with<'a>(&'a self, taken: Option<&'a Op>) -> Vec<&'a str> {
        let mut out = Vec::with_capacity(6);
        if let Some(h) = self.held() {
            out.push(h.pair.access_token.expose());
            out.extend(h.pair.refresh_token.as_ref().map(|t| t.expose()));
        }
        if let Some(c) = &self.config.credentials {
            out.push(c.password.expose());
        }
        if let Some(o) = &self.config.oauth {
            out.extend(o.client_secret.as_ref().map(|s| s.expose()));
            out.extend(o.seed.as_ref().map(|t| t.expose()));
        }
        for op in [self.op.as_deref(), self.queued.as_deref(), taken]
            .into_iter()
            .flatten()
        {
            match &op.kind {
                OpKind::Login { creds, .. } => out.push(creds.password.expose()),
                OpKind::Refresh { token } => out.push(token.expose()),
                OpKind::Revoke { pair: Some(p), .. } => {
                    out.push(p.access_token.expose());
                    out.extend(p.refresh_token.as_ref().map(|t| t.expose()));
                }
                OpKind::Revoke { pair: None, .. } => {}
            }
        }
        out
    }

    /// Scrubs the secrets this session holds from an error that quotes a server's words
    /// (an API error envelope read by `json()`).
    pub fn redact(&self, error: AuthError) -> AuthError {
        error.redact(&self.secrets())
    }

    fn is_spent(&self, token: &RefreshToken) -> bool {
        self.spent.contains(&fingerprint(token.expose()))
    }

    /// [`Machine::is_spent`] for a pair's refresh token, if it has one.
    fn spent_pair(&self, pair: &TokenPair) -> bool {
        pair.refresh_token.as_ref().is_some_and(|t| self.is_spent(t))
    }

    fn mark_spent(&mut self, token: &RefreshToken) {
        if self.config.oauth.as_deref().and_then(|o| o.seed.as_ref()) == Some(token) {
            self.seed_used = true;
        }
        let f = fingerprint(token.expose());
        if !self.spent.contains(&f) {
            self.spent[self.spent_next] = f;
            self.spent_next = (self.spent_next + 1) % self.spent.len();
        }
    }

    // ----- user commands ----------------------------------------------------------------------

    /// `login(username?, password?)`: `creds` given, else the configured credentials.
    pub fn login(&mut self, now: i64, creds: Option<Credentials>) -> Step {
        if self.is_disposed() {
            return Step::Fail(disposed());
        }
        if let Some(o) = self.config.oauth.as_deref() {
            if creds.is_some() && o.grant != Grant::Password {
                return Step::Fail(AuthError::config(
                    "login(username, password) is for oauth.grant \"password\"; call login() to run the session's grant",
                ));
            }
            if o.grant == Grant::RefreshToken {
                // There is one seed: a login() while its exchange runs joins it (replacing it
                // would abandon an exchange the server may have made, and spend the seed).
                if let Some(op) = self.op.as_ref().filter(|op| matches!(op.kind, OpKind::Login { .. })) {
                    return Step::Wait(op.flight);
                }
            }
            if self.seed_spent() {
                return Step::Fail(AuthError::new(
                    ErrorCode::SessionExpired,
                    "the refresh token given as oauth.refreshToken was used already; give the session a new one",
                ));
            }
        }
        let Some(creds) = creds.or_else(|| self.config.credentials.clone()) else {
            return Step::Fail(AuthError::config(
                "login() needs a username and a password, or options.credentials",
            ));
        };
        self.log(Log::Login { why: Why::Manual });
        // The application's refresh token is a grant that can be spent: a login with it looks
        // at the stored record first (and runs under the lease), like the session's own, so
        // that it never sends a seed another instance already exchanged (a reuse the server
        // would punish by revoking the grant).
        let quiet = self
            .config
            .oauth
            .as_deref()
            .is_some_and(|o| o.grant == Grant::RefreshToken);
        let kind = OpKind::Login {
            creds,
            relogin: false,
            quiet,
        };
        // A login replaces a login or refresh in progress; it waits for a revoke.
        match &self.op {
            Some(op) if matches!(op.kind, OpKind::Revoke { .. }) => {
                let flight = match &self.queued {
                    Some(q) => {
                        self.push(Output::Settle(q.flight, Outcome::Again));
                        self.id()
                    }
                    None => self.id(),
                };
                self.queued = Some(Box::new(Op::new(flight, kind, Trigger::User)));
                Step::Wait(flight)
            }
            _ => {
                self.abandon_op(Outcome::Again);
                self.abandon_restore();
                self.epoch = self.epoch.wrapping_add(1);
                Step::Wait(self.start(now, kind, Trigger::User))
            }
        }
    }

    /// `refresh()`: joins the login or refresh in progress, or starts a refresh (a login
    /// when only credentials are left).
    pub fn refresh(&mut self, now: i64) -> Step {
        if let Some(e) = self.state_error() {
            return Step::Fail(e);
        }
        if let Some(f) = self.joinable() {
            return Step::Wait(f);
        }
        match self.expire_if_due(now) {
            Some(e) => Step::Fail(e),
            None => match self.start_getting_tokens(now, Trigger::User, Why::Manual) {
                Some(f) => Step::Wait(f),
                None => Step::Fail(self.state_error().unwrap_or_else(not_logged_in)),
            },
        }
    }

    /// After an `Again`: the login or refresh that superseded the caller's, if any.
    pub fn rejoin(&mut self) -> Step {
        if self.is_disposed() {
            return Step::Fail(disposed());
        }
        match self.joinable() {
            Some(f) => Step::Wait(f),
            None => Step::Ready,
        }
    }

    /// `revoke()`: local state is cleared at once (no later request carries the tokens, no
    /// late refresh brings them back), then the storage delete and the server revoke run.
    pub fn revoke(&mut self, now: i64) -> Step {
        if self.is_disposed() {
            return Step::Fail(disposed());
        }
        if let Some(op) = &self.op {
            if matches!(op.kind, OpKind::Revoke { .. }) {
                // A login queued behind the running revoke is superseded by this one.
                let flight = op.flight;
                if let Some(q) = self.queued.take().map(|o| *o) {
                    self.push(Output::Settle(q.flight, Outcome::Again));
                }
                return Step::Wait(flight);
            }
        }
        // A refresh being sent has the held refresh token on the wire: the revoke sends it
        // too (revoking a spent token is harmless; the server revokes its family).
        let pair = match ::core::mem::replace(&mut self.state, State::Revoked) {
            State::Active(h) => Some((h.pair, now < h.access_local)),
            _ => None,
        };
        self.abandon_op(Outcome::Again);
        self.abandon_restore();
        self.refresh_at = None;
        self.epoch = self.epoch.wrapping_add(1);
        let info = self.info();
        self.emit(Event::Revoked(info));
        let (pair, bearer_ok) = match pair {
            Some((p, ok)) => (Some(p), ok),
            None => (None, false),
        };
        if let Some(p) = &pair {
            // A revoked refresh token counts as spent: a restore (or adoption) that reads the
            // record before the delete lands, or after it failed, must not bring it back.
            if let Some(token) = p.refresh_token.clone() {
                self.mark_spent(&token);
            }
        }
        if self.has_storage {
            let io = self.id();
            let key = self.config.storage_key();
            self.push(Output::Storage(StorageOp::Delete { id: io, key }));
            self.expect(now, io, Purpose::Delete);
        }
        let kind = OpKind::Revoke {
            pair,
            bearer_ok,
            failure: None,
        };
        Step::Wait(self.start(now, kind, Trigger::User))
    }

    /// `restore()`: reads the stored record. Without storage: CONFIG_ERROR.
    pub fn restore(&mut self, now: i64) -> Step {
        if !self.has_storage {
            return Step::Fail(AuthError::config("restore() needs options.storage"));
        }
        if self.is_disposed() {
            return Step::Fail(disposed());
        }
        if let Some((flight, _)) = self.restoring() {
            return Step::Wait(flight);
        }
        let flight = self.id();
        let io = self.id();
        let key = self.config.storage_key();
        self.push(Output::Storage(StorageOp::Get { id: io, key }));
        let epoch = self.epoch;
        self.expect(now, io, Purpose::Restore { flight, epoch });
        Step::Wait(flight)
    }

    /// `dispose()`: everything stops; every pending flight fails with DISPOSED. Idempotent.
    /// The stored record is kept (another process may use it).
    pub fn dispose(&mut self) {
        if self.is_disposed() {
            return;
        }
        let phase = self.info().state;
        self.state = State::Disposed(phase);
        self.refresh_at = None;
        self.epoch = self.epoch.wrapping_add(1);
        self.abandon_op(Outcome::Failed(disposed()));
        if let Some(q) = self.queued.take().map(|o| *o) {
            self.push(Output::Settle(q.flight, Outcome::Failed(disposed())));
        }
        if let Some((io, flight)) = self.take_restore() {
            self.push(Output::Cancel(io));
            self.push(Output::Settle(flight, Outcome::Failed(disposed())));
        }
        self.calls_dispose();
    }

    // ----- tokens for API calls ---------------------------------------------------------------

    /// Which token a call sends. `waited` is what became of the flight this caller waited
    /// for last time it asked; `round` counts those waits (per call).
    pub fn token(&mut self, now: i64, need: Need, waited: Waited, round: u32) -> TokenStep {
        if let Waited::Failed { retryable } = waited {
            if retryable && matches!(need, Need::Lenient | Need::Background) {
                if let Some(ready) = self.still_valid(now) {
                    return ready;
                }
            }
            return TokenStep::Rethrow;
        }
        if let Some(e) = self.state_error() {
            return TokenStep::Fail(e);
        }
        if round >= MAX_ROUNDS {
            return self.still_valid(now).unwrap_or_else(|| {
                TokenStep::Fail(AuthError::invalid_response(
                    "the server's tokens expire before they can be used",
                ))
            });
        }
        if let Some(e) = self.expire_if_due(now) {
            return TokenStep::Fail(e);
        }
        // A replay never gets the pair the API refused (it waits for the refresh instead).
        let refused = need == Need::Replay && self.held().is_some_and(|h| self.rejected == Some(h.serial));
        if let Some(h) = self.held().filter(|_| !refused) {
            if now + h.margin_ms < h.access_local {
                return ready(h, None);
            }
            if need == Need::Background && now + BACKGROUND_MIN_LEFT_MS < h.access_local {
                let h = h.clone();
                // Nobody awaits a background refresh: its failure is an `error` event.
                let flight = self
                    .joinable()
                    .or_else(|| self.start_getting_tokens(now, Trigger::Timer, Why::Background));
                return ready(&h, flight);
            }
        }
        if let Some(h) = self.held() {
            // Another instance holds the refresh lease: a token that is still valid goes out
            // now and the refresh is left to the holder (whose pair is adopted when stored).
            if now < h.access_local && need != Need::Replay && self.waits_for_another_holder() {
                return ready(h, None);
            }
        }
        if let Some(f) = self.joinable() {
            if refused {
                self.mark_unauthorized();
            }
            return TokenStep::Wait(f);
        }
        let step = match self.start_getting_tokens(now, Trigger::User, Why::Margin) {
            Some(f) => TokenStep::Wait(f),
            None => TokenStep::Fail(self.state_error().unwrap_or_else(not_logged_in)),
        };
        if refused {
            self.mark_unauthorized();
        }
        step
    }

    /// After a 401 to a request sent with the pair `serial`: a newer token if one exists,
    /// else a refresh (shared with everyone else). Never refreshes for a token that was
    /// already replaced.
    pub fn token_after_401(&mut self, now: i64, serial: u32) -> TokenStep {
        if let Some(e) = self.state_error() {
            return TokenStep::Fail(e);
        }
        match self.held() {
            Some(h) if h.serial != serial && now < h.access_local => ready(h, None),
            held => {
                if held.is_some_and(|h| h.serial == serial) {
                    self.rejected = Some(serial);
                }
                if let Some(e) = self.expire_if_due(now) {
                    return TokenStep::Fail(e);
                }
                let step = match self.joinable() {
                    Some(f) => TokenStep::Wait(f),
                    None => match self.start_getting_tokens(now, Trigger::User, Why::Unauthorized) {
                        Some(f) => TokenStep::Wait(f),
                        None => TokenStep::Fail(self.state_error().unwrap_or_else(not_logged_in)),
                    },
                };
                self.mark_unauthorized();
                step
            }
        }
    }

    /// The refresh in progress serves a caller whose token the API refused.
    fn mark_unauthorized(&mut self) {
        if let Some(op) = self.op.as_mut().filter(|op| matches!(op.kind, OpKind::Refresh { .. })) {
            op.unauthorized = true;
        }
    }

    /// For clients that set the header themselves (axios, ky): a server rejected `rejected`.
    /// When the session has moved on to another token, that one; else a refresh (shared),
    /// exactly as [`Machine::token_after_401`] for the pair held now.
    pub fn token_replacing(&mut self, now: i64, rejected: &str) -> TokenStep {
        let serial = match self.held() {
            Some(h) if h.pair.access_token.expose() == rejected => h.serial,
            // Another token (or none) is current: never refresh for a replaced one.
            Some(h) => h.serial.wrapping_add(1),
            None => 0,
        };
        self.token_after_401(now, serial)
    }

    fn still_valid(&self, now: i64) -> Option<TokenStep> {
        self.held().filter(|h| now < h.access_local).map(|h| ready(h, None))
    }

    /// The refresh in progress waits for another instance that holds the lease.
    fn waits_for_another_holder(&self) -> bool {
        self.queued.is_none()
            && self
                .op
                .as_ref()
                .is_some_and(|op| matches!(op.kind, OpKind::Refresh { .. }) && op.waiting.is_some())
    }

    /// The login or refresh flight in progress (not a revoke: nothing to join there).
    fn joinable(&self) -> Option<FlightId> {
        match &self.queued {
            Some(q) => Some(q.flight),
            None => self
                .op
                .as_ref()
                .filter(|op| !matches!(op.kind, OpKind::Revoke { .. }))
                .map(|op| op.flight),
        }
    }

    /// An active session whose refresh token has run out ends here (one `expired` event);
    /// with credentials it is left to a re-login.
    fn expire_if_due(&mut self, now: i64) -> Option<AuthError> {
        let due = self.held().is_some_and(|h| now >= h.refresh_local);
        if !due {
            return None;
        }
        self.state = State::Expired;
        self.refresh_at = None;
        self.epoch = self.epoch.wrapping_add(1);
        match self.relogin_credentials() {
            // A re-login follows; `expired` fires only if it fails.
            Some(_) => None,
            None => Some({
                self.report_expired();
                AuthError::new(
                    ErrorCode::SessionExpired,
                    "the refresh token has expired; call login() again",
                )
            }),
        }
    }

    /// Starts a refresh (a pair is held) or a login (credentials are configured).
    fn start_getting_tokens(&mut self, now: i64, trigger: Trigger, why: Why) -> Option<FlightId> {
        match self.held() {
            Some(_) => self.log(Log::Refresh { why }),
            None => self.log(Log::Login { why }),
        }
        // A pair without a refresh token (OAuth client credentials) is renewed by the grant.
        if let Some(token) = self.held().and_then(|h| h.pair.refresh_token.clone()) {
            let manual = why == Why::Manual;
            if self.is_spent(&token) {
                // The held refresh token was rejected already (a login superseded the
                // adoption that followed the 401, then failed): it is never sent again; go
                // on as after that 401 (adopt from storage, else expire or log in again).
                let flight = self.id();
                let kind = OpKind::Refresh { token };
                let next = self.refresh_rejected(now, Op::new(flight, kind, trigger));
                self.apply(now, next);
                return Some(flight);
            }
            let flight = self.start(now, OpKind::Refresh { token }, trigger);
            if let Some(op) = self.op.as_mut().filter(|op| op.flight == flight) {
                op.manual = manual;
            }
            return Some(flight);
        }
        let creds = self.relogin_credentials()?;
        // Once the end was reported (a re-login failed), a later login is a plain one.
        let relogin = matches!(self.state, State::Expired) && !self.expiry_reported;
        Some(self.start(
            now,
            OpKind::Login {
                creds,
                relogin,
                quiet: true,
            },
            trigger,
        ))
    }

    /// The one `expired` event of an end of the session.
    fn report_expired(&mut self) {
        let info = self.info();
        self.emit(Event::Expired(info));
        self.expiry_reported = true;
    }

    /// Takes a pair into the state, arms the auto-refresh and tells listeners.
    fn install(&mut self, now: i64, pair: TokenPair, reason: Reason, version: u64, account: Option<String>) {
        if matches!(reason, Reason::Restore | Reason::Adopt) {
            // A stored pair of a session seeded with a refresh token descends from a seed
            // that some instance exchanged: ours, most likely. It is never sent again (a
            // reuse the server would punish by revoking the grant), unless it is still the
            // pair's own refresh token (a server that does not rotate).
            if let Some(seed) = self.seed().filter(|s| pair.refresh_token.as_ref() != Some(s)) {
                self.mark_spent(&seed);
            }
        }
        self.newest = self.newest.max(pair.access_expires_at);
        self.expiry_reported = false;
        let access_local = pair.access_expires_at - self.skew_ms;
        let refresh_local = pair.refresh_expires_at - self.skew_ms;
        let margin_ms = effective_margin(self.config.refresh_margin_ms, access_local, now);
        self.serial = self.serial.wrapping_add(1);
        self.epoch = self.epoch.wrapping_add(1);
        self.refresh_at =
            (self.config.auto_refresh && pair.access_expires_at < NEVER).then_some(access_local - margin_ms);
        self.other_account = matches!((&account, &self.config.account), (Some(a), Some(c)) if a != c);
        self.state = State::Active(Held {
            pair,
            access_local,
            refresh_local,
            margin_ms,
            serial: self.serial,
            version,
            account,
        });
        let info = self.info();
        self.emit(Event::Tokens(info, reason));
    }

    // ----- inputs: time -----------------------------------------------------------------------

    /// The deadline of [`Machine::poll_timeout`] has passed (or any time: early calls do
    /// nothing). Afterwards every deadline is later than `now`.
    pub fn handle_timeout(&mut self, now: i64) {
        // One call does all that is due at `now`: an attempt that timed out and whose
        // jittered backoff is 0 ms is retried at once, not handed back as a deadline that
        // has already passed. Each pass moves every due item on; the bound is a guard.
        for _ in 0..4 {
            self.handle_timeout_once(now);
            if !self.poll_timeout().is_some_and(|(t, _)| t <= now) {
                break;
            }
        }
    }

    /// One pass: what was due when it began. What a handler sets up for `now` (a backoff
    /// of 0 ms after a timeout) is the next pass's.
    fn handle_timeout_once(&mut self, now: i64) {
        let timer_due = self.op_timer().is_some_and(|t| t <= now);
        while let Some(p) = self.take_due(now) {
            self.io_timed_out(now, p);
        }
        if timer_due {
            self.with_op(now, |m, op| m.op_timer_fired(now, op));
        }
        self.calls_timeout(now);
        if self.refresh_at.is_some_and(|t| t <= now) {
            self.refresh_at = None;
            self.timer_fired(now);
        }
    }

    /// The I/O of `p` did not end by its deadline: it is cancelled and handled as failed.
    fn io_timed_out(&mut self, now: i64, p: Pending) {
        self.push(Output::Cancel(p.io));
        let storage_timeout = || storage_error("the storage adapter did not answer within timeoutMs", None);
        match p.purpose {
            Purpose::Restore { flight, .. } => self.push(Output::Settle(flight, Outcome::Failed(storage_timeout()))),
            Purpose::Delete => {
                let e = storage_timeout();
                self.emit(Event::Error(e.clone()));
                self.deleted(now, Some(e));
            }
            Purpose::Attempt => self.with_op(now, |m, op| {
                let e = AuthError::new(ErrorCode::Timeout, m.about(&op, "no complete answer within timeoutMs"));
                m.attempt_failed(now, op, e, None)
            }),
            Purpose::Adopt => self.with_op(now, |m, op| m.adopt(now, op, StorageReply::Failed(None))),
            Purpose::Look => self.with_op(now, |m, op| m.looked(now, op, StorageReply::Failed(None))),
            Purpose::Acquire => self.with_op(now, |m, op| m.leased(now, op, p.deadline, StorageReply::Failed(None))),
            Purpose::Version => {
                self.emit(Event::Error(storage_timeout()));
                self.with_op(now, |m, op| m.versioned(now, op));
            }
            Purpose::Persist => self.with_op(now, |m, op| m.persisted(op, Some(storage_timeout()))),
        }
    }

    /// When the op's own timer is due: its backoff or its wait for another lease holder
    /// (neither waits for I/O, so neither is in the pending table).
    fn op_timer(&self) -> Option<i64> {
        match self.op.as_ref()?.stage {
            Stage::Backoff { until } | Stage::Waiting { until } => Some(until),
            Stage::Queued | Stage::Io | Stage::Finishing => None,
        }
    }

    /// The op's backoff or wait is over.
    fn op_timer_fired(&mut self, now: i64, mut op: Op) -> Next {
        match op.stage {
            Stage::Backoff { .. } => {
                // No pair held: a call found the refresh token expired while we waited.
                let ran_out =
                    matches!(op.kind, OpKind::Refresh { .. }) && !self.held().is_some_and(|h| now < h.refresh_local);
                // A holder whose lease would run out before this attempt's deadline and its write
                // stops: another instance may take the lease and refresh meanwhile.
                let lease_out = op
                    .lease
                    .as_ref()
                    .is_some_and(|(_, until)| now + 2 * self.config.timeout_ms as i64 > *until);
                if lease_out {
                    let e = AuthError::new(ErrorCode::Timeout, "the refresh lease ran out before a retry");
                    Next::Done(op, Outcome::Failed(e))
                } else if !ran_out {
                    self.send(now, &mut op);
                    Next::Stay(op)
                } else if let Some(e) = self.expire_if_due(now) {
                    // The refresh token ran out while the retry waited: it is not sent.
                    // The session ends here, as it would for a call made now...
                    Next::Done(op, Outcome::Failed(e))
                } else {
                    // ...or, with credentials, logs in again in the same flight.
                    self.session_over(now, op)
                }
            }
            Stage::Waiting { .. } => {
                op.stage = self.read_stage(now, Purpose::Look);
                Next::Stay(op)
            }
            Stage::Queued | Stage::Io | Stage::Finishing => Next::Stay(op),
        }
    }

    /// The auto-refresh is due: refresh (or join the flight in progress).
    fn timer_fired(&mut self, now: i64) {
        if self.held().is_none() || self.op.is_some() {
            return;
        }
        if self.expire_if_due(now).is_some() {
            return;
        }
        if self.held().is_none() && self.relogin_credentials().is_none() {
            return;
        }
        self.start_getting_tokens(now, Trigger::Timer, Why::Timer);
    }

    /// The credentials of a transparent login (first use, or after the refresh token was
    /// rejected or expired): `credentials`, unless the session was logged in as another
    /// account, which it never leaves without an explicit `login()`.
    fn relogin_credentials(&self) -> Option<Credentials> {
        if self.other_account || self.seed_spent() {
            return None;
        }
        self.config.credentials.clone()
    }

    /// OAuth 2.0 with the application's refresh token as the grant: that token was used
    /// (rotated or rejected), so the grant cannot run again.
    fn seed_spent(&self) -> bool {
        self.config
            .oauth
            .as_deref()
            .is_some_and(|o| o.grant == Grant::RefreshToken && (self.seed_used || o.seed.is_none()))
    }

    /// The application's refresh token, when it is the session's grant (OAuth 2.0).
    pub(super) fn seed(&self) -> Option<RefreshToken> {
        self.config
            .oauth
            .as_deref()
            .filter(|o| o.grant == Grant::RefreshToken)
            .and_then(|o| o.seed.clone())
    }
}

fn ready(h: &Held, background: Option<FlightId>) -> TokenStep {
    TokenStep::Ready {
        token: h.pair.access_token.clone(),
        serial: h.serial,
        background,
    }
}
