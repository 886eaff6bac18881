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

#[allow(unused_imports)]
use crate::prelude::*;

mod api;

pub use api::{ApiFailure, ApiStep, Behind, BodyFailure, CallId, Wake, Want};

use alloc::collections::VecDeque;

use crate::core::config::{Config, Credentials, MAX_AUTH_RESPONSE_BYTES};
use crate::core::envelope::{self, read_auth_response, read_record, AuthBody, TokenPair};
use crate::core::error::{AuthError, Cause, ErrorCode};
use crate::core::json::Json;
use crate::core::retry::{self, backoff_ms, RetryAfter};
use crate::core::secret::{AccessToken, RefreshToken};
use crate::core::timing::{clock_skew, effective_margin, retry_delay};

/// Names a flight: one promise in the driver, any number of waiters.
pub type FlightId = u32;
/// Names one I/O the driver performs for the machine (an auth attempt or a storage call).
pub type IoId = u32;

/// A background refresh uses the current token only if it has at least this long to live,
/// so the request it authorises cannot expire on the way.
pub const BACKGROUND_MIN_LEFT_MS: i64 = 5_000;
/// How many flights one call may wait for before the machine calls the server's tokens
/// unusable: enough for a refresh, a re-login and a supersession, never a loop.
pub const MAX_ROUNDS: u32 = 4;
/// Same-origin redirects a `fetch` follows before it hands the redirect back.
pub const MAX_REDIRECTS: u32 = 20;

/// The `state` of `SessionInfo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Anonymous,
    Active,
    Expired,
    Revoked,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Anonymous => "anonymous",
            Phase::Active => "active",
            Phase::Expired => "expired",
            Phase::Revoked => "revoked",
        }
    }
}

/// What `session.info` shows: never a token. Times are the server's, in epoch ms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub state: Phase,
    pub client_id: Option<i64>,
    pub access_expires_at: Option<i64>,
    pub refresh_expires_at: Option<i64>,
}

/// Why a `tokens` event fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Login,
    Refresh,
    Restore,
    /// Another instance sharing the storage had already rotated the pair.
    Adopt,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Login => "login",
            Reason::Refresh => "refresh",
            Reason::Restore => "restore",
            Reason::Adopt => "adopt",
        }
    }
}

/// Something the session reports to `on(…)` listeners.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Tokens(SessionInfo, Reason),
    Expired(SessionInfo),
    Revoked(SessionInfo),
    Error(AuthError),
}

/// How a flight ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The operation succeeded (for `restore`: a record was installed).
    Done,
    /// `restore` found no usable record (or a newer login or revoke made the read moot).
    Nothing,
    Failed(AuthError),
    /// Superseded: ask the machine again ([`Machine::rejoin`], [`Machine::token`]).
    Again,
}

/// Which auth endpoint a request goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Login,
    Refresh,
    Revoke,
}

/// An auth request to send: `POST url`, `Content-Type: application/json`, this body,
/// redirects not followed. The driver bounds nothing itself: the machine's deadline covers
/// the attempt (headers and body) and cancels it.
#[derive(Clone, Debug, PartialEq)]
pub struct AuthRequest {
    pub id: IoId,
    pub endpoint: Endpoint,
    pub url: String,
    /// Holds a secret (password or refresh token): write it to the wire only.
    pub body: String,
    pub bearer: Option<AccessToken>,
    /// The largest body to read; over it the driver answers [`IoFailure::TooLarge`].
    pub max_bytes: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StorageOp {
    Get {
        id: IoId,
        key: String,
    },
    /// `value` holds the tokens: write it to the storage only. `version` is the record's
    /// rotation version: a storage that can compare-and-set (`putIfNewer`) writes only over
    /// a lower one, so a late write never replaces a newer record.
    Put {
        id: IoId,
        key: String,
        value: String,
        version: u64,
    },
    Delete {
        id: IoId,
        key: String,
    },
    /// Take the refresh lease of the record `key` for `ttl_ms` (storage with a lease only).
    Acquire {
        id: IoId,
        key: String,
        ttl_ms: u32,
    },
    /// Give back the lease `lease` of the record `key`; the answer is not awaited.
    Release {
        id: IoId,
        key: String,
        lease: String,
    },
}

/// What the driver must do next.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Send(AuthRequest),
    /// Abort this auth attempt or storage call; its answer, if any, will be ignored.
    Cancel(IoId),
    Storage(StorageOp),
    Settle(FlightId, Outcome),
    /// Wake the API call that waits on its deadline or backoff (see [`Wake`]).
    Call(CallId, Wake),
    Event(Event),
    /// A record for the `logger` hook (only after [`Machine::set_logging`]). Never a secret.
    Log(Log),
}

/// Why a refresh (or a login standing in for one) starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// `refresh()`.
    Manual,
    /// A call found the access token inside the refresh margin (or expired).
    Margin,
    /// A request was answered 401 with the current token.
    Unauthorized,
    /// The auto-refresh timer.
    Timer,
    /// A call with `waitUntil` inside the margin: refreshed behind the response.
    Background,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Manual => "manual",
            Why::Margin => "margin",
            Why::Unauthorized => "401",
            Why::Timer => "timer",
            Why::Background => "background",
        }
    }
}

/// What the `logger` hook is told: codes, statuses and delays, never a token or password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Log {
    Refresh {
        why: Why,
    },
    /// A login standing in for a refresh (credentials, no pair held).
    Login {
        why: Why,
    },
    Request {
        endpoint: Endpoint,
        attempt: u32,
    },
    /// An auth attempt's answer: its status (0: none) and, for a failure, the error code.
    Response {
        endpoint: Endpoint,
        status: u16,
        code: Option<String>,
    },
    Retry {
        endpoint: Endpoint,
        attempt: u32,
        delay_ms: u32,
        code: String,
    },
    /// An API call's attempt is sent.
    ApiRequest {
        attempt: u32,
    },
    /// An API attempt's answer: its status (0: none) and, without one, the error code.
    ApiResponse {
        status: u16,
        code: Option<&'static str>,
    },
    ApiRetry {
        attempt: u32,
        delay_ms: u32,
        code: &'static str,
    },
    /// An API call was redirected; `followed`: to a location that may receive the token.
    Redirect {
        status: u16,
        followed: bool,
    },
}

/// An auth response as the driver read it: status, the two headers the machine reads, and
/// the body after `JSON.parse`.
#[derive(Clone, Debug, PartialEq)]
pub struct AuthReply {
    pub status: u16,
    /// A 3xx, or a redirect the runtime refused to expose (a browser's `opaqueredirect`).
    pub redirected: bool,
    pub date: Option<String>,
    pub retry_after: Option<String>,
    pub body: AuthBody,
}

/// An I/O attempt that produced no usable response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoFailure {
    /// The request never got an answer (refused, reset, DNS). `cause`: the underlying
    /// error's `name` and `code`, never its message.
    Network(Option<Cause>),
    /// What came back is not a response at all (a custom `fetch` resolving to garbage).
    NotAResponse,
    /// The body was larger than the request's `max_bytes`.
    TooLarge,
}

/// What a storage call produced.
#[derive(Clone, Debug, PartialEq)]
pub enum StorageReply {
    /// `put` or `delete` succeeded, or `get` found nothing.
    Empty,
    /// `get` found a record; the driver has run `JSON.parse` on it.
    Record(Json),
    /// `get` found something that is not a JSON record of ours.
    Garbage,
    /// The adapter threw or rejected. `cause` as for [`IoFailure::Network`].
    Failed(Option<Cause>),
    /// `acquire` took the lease, under this id (`Empty`: another holder has it).
    Lease(String),
}

/// What a caller needs the token for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// `getAccessToken()`: valid for at least the margin.
    Strict,
    /// A `fetch`: when a refresh fails for a temporary reason, a token that is still valid
    /// is better than no call.
    Lenient,
    /// A `fetch` with a `waitUntil`: inside the margin, use the current token now and
    /// refresh behind the response.
    Background,
    /// The replay after a 401: only a token other than the rejected one will do.
    Replay,
}

/// What happened to the flight a caller waited for before asking again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waited {
    Nothing,
    Done,
    Failed { retryable: bool },
}

/// The answer to "which token do I send?".
#[derive(Clone, Debug, PartialEq)]
pub enum TokenStep {
    /// Send this token. `serial` names the pair (pass it back after a 401); `background` is
    /// a refresh started behind this call, for the caller's `waitUntil`.
    Ready {
        token: AccessToken,
        serial: u32,
        background: Option<FlightId>,
    },
    Wait(FlightId),
    Fail(AuthError),
    /// Fail with the error of the flight just waited for.
    Rethrow,
}

/// What a caller of `login`/`refresh`/`revoke`/`restore` does next.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    Wait(FlightId),
    Fail(AuthError),
    /// Nothing to wait for: read [`Machine::result`].
    Ready,
}

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

/// Who started an operation: a timer-driven refresh reports its failure as an `error`
/// event and retries later; a user call reports to its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trigger {
    User,
    Timer,
}

#[derive(Clone, Debug)]
enum OpKind {
    /// `relogin`: a re-login after a rejected refresh (the session is already `expired`).
    Login {
        creds: Credentials,
        relogin: bool,
        /// A login the session makes by itself (first use, or after its pair ended): with
        /// storage it looks for a pair another instance stored first, and with a lease it
        /// runs under it. An explicit `login()` is not quiet: it always logs in.
        quiet: bool,
    },
    Refresh {
        token: RefreshToken,
    },
    /// The pair being revoked left the state when the revoke began; `delete` is the storage
    /// delete running beside the request, `failure` the first error to report.
    Revoke {
        pair: Option<TokenPair>,
        bearer_ok: bool,
        delete: Option<(IoId, i64)>,
        failure: Option<AuthError>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Not started: waits for the revoke before it (at most one auth request at a time).
    Queued,
    Sending {
        io: IoId,
        deadline: i64,
    },
    Backoff {
        until: i64,
    },
    /// A refresh was rejected: reading storage for a pair another instance stored.
    Adopting {
        io: IoId,
        deadline: i64,
    },
    /// Before a refresh: reading storage for a newer pair another instance stored (then no
    /// refresh is needed, and no refresh token is spent twice).
    Looking {
        io: IoId,
        deadline: i64,
    },
    /// After a login: reading the record's version, so the new pair is stored as newer.
    Versioning {
        io: IoId,
        deadline: i64,
    },
    /// Taking the refresh lease.
    Leasing {
        io: IoId,
        deadline: i64,
    },
    /// Another instance holds the lease: look again at `until` for the pair it stores.
    Waiting {
        until: i64,
    },
    /// The new pair is in; waiting (at most the timeout) for its storage write.
    Persisting {
        io: IoId,
        deadline: i64,
    },
    /// A revoke whose request is done, waiting for its storage delete.
    Finishing,
}

#[derive(Clone, Debug)]
struct Op {
    flight: FlightId,
    kind: OpKind,
    trigger: Trigger,
    attempt: u32,
    stage: Stage,
    /// The refresh lease this op holds (storage with a lease only), and until when.
    lease: Option<(String, i64)>,
    /// Since when this op waits for another holder's lease, and how many rounds.
    waiting: Option<(i64, u32)>,
    /// Started by `refresh()`: its callers want new tokens, not the ones they hold.
    manual: bool,
    /// The API refused the held token (a 401): its callers cannot go on with it, so they
    /// are never released to it, and wait for another holder's pair at most `timeoutMs`.
    unauthorized: bool,
}

impl Op {
    /// A new op, not started yet.
    fn new(flight: FlightId, kind: OpKind, trigger: Trigger) -> Op {
        Op {
            flight,
            kind,
            trigger,
            attempt: 0,
            stage: Stage::Queued,
            lease: None,
            waiting: None,
            manual: false,
            unauthorized: false,
        }
    }

    fn endpoint(&self) -> Endpoint {
        match self.kind {
            OpKind::Login { .. } => Endpoint::Login,
            OpKind::Refresh { .. } => Endpoint::Refresh,
            OpKind::Revoke { .. } => Endpoint::Revoke,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Restore {
    flight: FlightId,
    io: IoId,
    deadline: i64,
    /// The state's epoch when the read began: a read older than the current pair is moot.
    epoch: u32,
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
    restore: Option<Restore>,
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
            restore: None,
            refresh_at: None,
            epoch: 0,
            serial: 0,
            next_id: 1,
            spent: [0; 4],
            spent_next: 0,
            newest: i64::MIN,
            expiry_reported: false,
            rng: seed | 1,
            outputs: VecDeque::new(),
            last_error: None,
            reply_status: 0,
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
        let mut work: Option<i64> = None;
        let mut add = |t: i64| work = Some(work.map_or(t, |w: i64| w.min(t)));
        for op in [&self.op, &self.queued].into_iter().flatten() {
            match op.stage {
                Stage::Sending { deadline, .. }
                | Stage::Adopting { deadline, .. }
                | Stage::Looking { deadline, .. }
                | Stage::Versioning { deadline, .. }
                | Stage::Leasing { deadline, .. }
                | Stage::Persisting { deadline, .. } => add(deadline),
                Stage::Backoff { until } | Stage::Waiting { until } => add(until),
                Stage::Queued | Stage::Finishing => {}
            }
            if let OpKind::Revoke {
                delete: Some((_, deadline)),
                ..
            } = op.kind
            {
                add(deadline);
            }
        }
        if let Some(r) = &self.restore {
            add(r.deadline);
        }
        if let Some(c) = self.calls_deadline() {
            add(c);
        }
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
            access_expires_at: held.map(|h| h.pair.access_expires_at),
            refresh_expires_at: held.map(|h| h.pair.refresh_expires_at),
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
        self.op.is_none() && self.queued.is_none() && self.restore.is_none() && self.calls.is_empty()
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
            out.push(h.pair.refresh_token.expose());
        }
        if let Some(c) = &self.config.credentials {
            out.push(c.password.expose());
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
                    out.push(p.refresh_token.expose());
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

    fn mark_spent(&mut self, token: &RefreshToken) {
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
        let Some(creds) = creds.or_else(|| self.config.credentials.clone()) else {
            return Step::Fail(AuthError::config(
                "login() needs a username and a password, or options.credentials",
            ));
        };
        self.log(Log::Login { why: Why::Manual });
        let kind = OpKind::Login {
            creds,
            relogin: false,
            quiet: false,
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
            let token = p.refresh_token.clone();
            self.mark_spent(&token);
        }
        let delete = self.has_storage.then(|| {
            let io = self.id();
            let key = self.config.storage_key();
            self.push(Output::Storage(StorageOp::Delete { id: io, key }));
            (io, now + self.config.timeout_ms as i64)
        });
        let kind = OpKind::Revoke {
            pair,
            bearer_ok,
            delete,
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
        if let Some(r) = &self.restore {
            return Step::Wait(r.flight);
        }
        let flight = self.id();
        let io = self.id();
        let key = self.config.storage_key();
        self.push(Output::Storage(StorageOp::Get { id: io, key }));
        self.restore = Some(Restore {
            flight,
            io,
            deadline: now + self.config.timeout_ms as i64,
            epoch: self.epoch,
        });
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
        if let Some(r) = self.restore.take() {
            self.push(Output::Cancel(r.io));
            self.push(Output::Settle(r.flight, Outcome::Failed(disposed())));
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
        if let Some(h) = self.held() {
            let token = h.pair.refresh_token.clone();
            let manual = why == Why::Manual;
            if self.is_spent(&token) {
                // The held refresh token was rejected already (a login superseded the
                // adoption that followed the 401, then failed): it is never sent again; go
                // on as after that 401 (adopt from storage, else expire or log in again).
                let flight = self.id();
                let kind = OpKind::Refresh { token };
                self.refresh_rejected(now, Op::new(flight, kind, trigger));
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

    // ----- operations -------------------------------------------------------------------------

    fn start(&mut self, now: i64, kind: OpKind, trigger: Trigger) -> FlightId {
        let flight = self.id();
        let mut op = Op::new(flight, kind, trigger);
        if self.has_storage && matches!(op.kind, OpKind::Refresh { .. } | OpKind::Login { quiet: true, .. }) {
            // Look before you refresh: another instance sharing the storage may have
            // rotated the pair already; its newer pair is adopted, no token spent. Look
            // before a quiet login too: another instance (or this one before a restart)
            // may hold a valid pair, and N cold instances should make one login, not N.
            op.stage = self.read_stage(now, StageRead::Look);
            self.op = Some(Box::new(op));
            return flight;
        }
        self.send(now, &mut op);
        if op.stage == Stage::Finishing && !matches!(op.kind, OpKind::Revoke { delete: Some(_), .. }) {
            // A revoke with nothing to send and nothing to delete is done at once.
            self.finish_revoke(now, op);
        } else {
            self.op = Some(Box::new(op));
        }
        flight
    }

    /// Sends the op's next attempt.
    fn send(&mut self, now: i64, op: &mut Op) {
        let c = &self.config;
        let (endpoint, url, body, bearer) = match &op.kind {
            OpKind::Login { creds, .. } => (
                Endpoint::Login,
                c.login_url(),
                envelope::login_body(&creds.username, creds.password.expose()),
                None,
            ),
            OpKind::Refresh { token } => (
                Endpoint::Refresh,
                c.refresh_url(),
                envelope::refresh_token_body(token),
                None,
            ),
            OpKind::Revoke {
                pair: Some(p),
                bearer_ok,
                ..
            } => (
                Endpoint::Revoke,
                c.revoke_url(),
                envelope::refresh_token_body(&p.refresh_token),
                bearer_ok.then(|| p.access_token.clone()),
            ),
            OpKind::Revoke { pair: None, .. } => {
                // Nothing to tell the server: only the storage delete remains.
                op.stage = Stage::Finishing;
                return;
            }
        };
        let io = self.id();
        self.log(Log::Request {
            endpoint,
            attempt: op.attempt,
        });
        op.stage = Stage::Sending {
            io,
            deadline: now + self.config.timeout_ms as i64,
        };
        self.push(Output::Send(AuthRequest {
            id: io,
            endpoint,
            url,
            body,
            bearer,
            max_bytes: MAX_AUTH_RESPONSE_BYTES,
        }));
    }

    /// Drops the op in progress: its attempt is cancelled, its flight settled.
    fn abandon_op(&mut self, outcome: Outcome) {
        if let Some(op) = self.op.take().map(|o| *o) {
            match op.stage {
                Stage::Sending { io, .. }
                | Stage::Adopting { io, .. }
                | Stage::Looking { io, .. }
                | Stage::Versioning { io, .. }
                | Stage::Leasing { io, .. }
                | Stage::Persisting { io, .. } => self.push(Output::Cancel(io)),
                Stage::Queued | Stage::Backoff { .. } | Stage::Waiting { .. } | Stage::Finishing => {}
            }
            if let OpKind::Revoke {
                delete: Some((io, _)), ..
            } = op.kind
            {
                self.push(Output::Cancel(io));
            }
            // A refresh already on the wire may have rotated the token at the server: its
            // lease is left to run out, so no other instance refreshes (with the spent token)
            // before the write that will never come is past.
            // So is the lease of an op whose new pair is being written: the write goes on (the
            // driver only stops waiting for it), and the others must not look before it lands.
            let on_the_wire = matches!(op.kind, OpKind::Refresh { .. }) && matches!(op.stage, Stage::Sending { .. });
            let writing = matches!(op.stage, Stage::Persisting { .. });
            if !on_the_wire && !writing {
                self.release(&op);
            }
            self.push(Output::Settle(op.flight, outcome));
        }
    }

    /// Gives back the op's lease, if it holds one (the answer is not awaited: a lease that
    /// is not given back runs out by itself).
    fn release(&mut self, op: &Op) {
        if let Some((lease, _)) = &op.lease {
            let io = self.id();
            let key = self.config.storage_key();
            self.push(Output::Storage(StorageOp::Release {
                id: io,
                key,
                lease: lease.clone(),
            }));
        }
    }

    /// How long a refresh lease is taken for (`leaseMs`). A holder sends an attempt only
    /// when the attempt and the write of its answer end within the lease: past it, another
    /// instance may hold the lease and look at a record that does not have the new pair yet.
    fn lease_ttl(&self) -> u32 {
        self.config.lease_ms
    }

    /// A restore's read is moot once a login or revoke has begun: it resolves `null`.
    fn abandon_restore(&mut self) {
        if let Some(r) = self.restore.take() {
            self.push(Output::Cancel(r.io));
            self.push(Output::Settle(r.flight, Outcome::Nothing));
        }
    }

    /// Ends the op with `outcome` and starts what was queued behind it.
    fn finish(&mut self, now: i64, op: Op, outcome: Outcome) {
        if let Outcome::Failed(e) = &outcome {
            if op.trigger == Trigger::Timer {
                self.timer_failed(now, e);
            } else if self.refresh_at.is_none() && e.retryable() && self.config.auto_refresh {
                // The timer fired while this caller's refresh was out and left it to it:
                // the caller has the error; the auto-refresh must still try again later.
                if let Some(h) = self.held() {
                    self.refresh_at = retry_delay(h.access_local, now).map(|d| now + d as i64);
                }
            }
            if !matches!(op.kind, OpKind::Revoke { .. }) {
                self.last_error = Some(Box::new(e.clone()));
            }
        } else if !matches!(op.kind, OpKind::Revoke { .. }) {
            self.last_error = None;
        }
        self.release(&op);
        self.push(Output::Settle(op.flight, outcome));
        if let Some(mut next) = self.queued.take().map(|o| *o) {
            self.epoch = self.epoch.wrapping_add(1);
            self.send(now, &mut next);
            self.op = Some(Box::new(next));
        }
    }

    /// A timer-driven refresh failed: nobody awaits it, so it is an `error` event (the end
    /// of the session has its own), and a temporary failure is retried later.
    fn timer_failed(&mut self, now: i64, e: &AuthError) {
        if !matches!(e.kind(), ErrorCode::SessionExpired | ErrorCode::Disposed) {
            self.emit(Event::Error(e.clone()));
        }
        if e.retryable() && self.config.auto_refresh {
            if let Some(h) = self.held() {
                self.refresh_at = retry_delay(h.access_local, now).map(|d| now + d as i64);
            }
        }
    }

    // ----- inputs: auth responses -------------------------------------------------------------

    /// The answer to [`Output::Send`] `io`. Answers to cancelled or unknown ids are ignored.
    pub fn handle_auth(&mut self, now: i64, io: IoId, reply: Result<AuthReply, IoFailure>) {
        let Some(op) = self.op.take().map(|o| *o) else { return };
        if !matches!(op.stage, Stage::Sending { io: i, .. } if i == io) {
            self.op = Some(Box::new(op));
            return;
        }
        let (result, retry_after) = self.read_reply(now, &op, reply);
        let endpoint = op.endpoint();
        let error = match result {
            Ok(data) => {
                self.log(Log::Response {
                    endpoint,
                    status: self.reply_status,
                    code: None,
                });
                return self.succeeded(now, op, data);
            }
            Err(e) => e,
        };
        self.log(Log::Response {
            endpoint,
            status: error.status(),
            code: Some(error.code().to_owned()),
        });
        if let (OpKind::Refresh { .. }, true) = (&op.kind, error.is_unauthorized()) {
            return self.refresh_rejected(now, op);
        }
        self.attempt_failed(now, op, error, retry_after.as_deref());
    }

    /// A client-made message about the op's request: `POST /auth/refresh: <what>` (the path
    /// as configured; never a query or a secret).
    fn about(&self, op: &Op, what: &str) -> String {
        let endpoint = match op.endpoint() {
            Endpoint::Login => 0,
            Endpoint::Refresh => 1,
            Endpoint::Revoke => 2,
        };
        crate::core::text::cat(&["POST ", self.config.auth_path(endpoint), ": ", what])
    }

    /// Reads an auth reply into the envelope's `data` or an error, redacted.
    fn read_reply(
        &mut self,
        now: i64,
        op: &Op,
        reply: Result<AuthReply, IoFailure>,
    ) -> (Result<Json, AuthError>, Option<String>) {
        self.reply_status = 0;
        let reply = match reply {
            Ok(r) => r,
            Err(IoFailure::Network(cause)) => {
                let e = AuthError::new(ErrorCode::Network, self.about(op, "no answer from the server"));
                return (Err(e.with_cause(cause)), None);
            }
            Err(IoFailure::NotAResponse) => {
                return (
                    Err(AuthError::invalid_response(
                        self.about(op, "fetch did not resolve to a Response"),
                    )),
                    None,
                )
            }
            Err(IoFailure::TooLarge) => {
                return (
                    Err(AuthError::new(
                        ErrorCode::ResponseTooLarge,
                        self.about(op, "the response is larger than an auth response may be (64 KiB)"),
                    )),
                    None,
                )
            }
        };
        if reply.redirected {
            let e = AuthError::new(
                ErrorCode::RedirectBlocked,
                "an auth endpoint answered with a redirect; it was not followed",
            )
            .with_status(reply.status);
            return (Err(e), None);
        }
        if let Some(skew) = clock_skew(reply.date.as_deref(), now) {
            self.skew_ms = skew;
        }
        // A bad token pair is judged later; it keeps the status it came with (and the
        // logger shows it).
        self.reply_status = reply.status;
        let revoke = matches!(op.kind, OpKind::Revoke { .. });
        if revoke && (200..300).contains(&reply.status) {
            // RFC 7009: a 2xx is success whatever the body says.
            return (Ok(Json::Null), None);
        }
        let secrets = self.secrets_with(Some(op));
        let result = read_auth_response(reply.status, &reply.body, &secrets);
        (result, reply.retry_after)
    }

    fn attempt_failed(&mut self, now: i64, mut op: Op, error: AuthError, retry_after: Option<&str>) {
        if error.retryable() && op.attempt < self.config.retries {
            let delay = match retry::retry_after(retry_after, now, self.config.max_retry_after_ms) {
                RetryAfter::Backoff => Some(backoff_ms(op.attempt, self.random())),
                RetryAfter::Wait(ms) => Some(ms),
                RetryAfter::TooLong(_) => None,
            };
            if let Some(delay) = delay {
                self.log(Log::Retry {
                    endpoint: op.endpoint(),
                    attempt: op.attempt + 1,
                    delay_ms: delay,
                    code: error.code().to_owned(),
                });
                op.attempt += 1;
                op.stage = Stage::Backoff {
                    until: now + delay as i64,
                };
                self.op = Some(Box::new(op));
                return;
            }
        }
        let error = match retry::retry_after(retry_after, now, self.config.max_retry_after_ms) {
            RetryAfter::TooLong(ms) if error.retryable() => retry::too_long(ms, error.status()),
            _ => error,
        };
        let waited = retry_after.and_then(|h| crate::core::http_date::parse_retry_after(h, now));
        self.op_failed(now, op, error.with_retry_after_ms(waited));
    }

    /// The one `expired` event of an end of the session.
    fn report_expired(&mut self) {
        let info = self.info();
        self.emit(Event::Expired(info));
        self.expiry_reported = true;
    }

    /// The op failed for good. A failed re-login ends the session (one `expired` event);
    /// a failed revoke has cleared local state already.
    fn op_failed(&mut self, now: i64, op: Op, error: AuthError) {
        match &op.kind {
            OpKind::Login { relogin: true, .. } => self.report_expired(),
            OpKind::Revoke { delete: Some(_), .. } => {
                // The storage delete is still out: finish when it answers.
                let mut op = op;
                if let OpKind::Revoke { failure, .. } = &mut op.kind {
                    failure.get_or_insert(error);
                }
                op.stage = Stage::Finishing;
                self.op = Some(Box::new(op));
                return;
            }
            _ => {}
        }
        self.finish(now, op, Outcome::Failed(error));
    }

    fn succeeded(&mut self, now: i64, mut op: Op, data: Json) {
        let reason = match &op.kind {
            OpKind::Revoke { .. } => return self.revoke_sent(now, op),
            OpKind::Login { .. } => Reason::Login,
            OpKind::Refresh { .. } => Reason::Refresh,
        };
        let pair = envelope::parse_token_pair(&data)
            .and_then(|p| self.check_fresh(now, p))
            .map_err(|e| e.with_status(self.reply_status));
        let pair = match pair {
            Ok(p) => p,
            Err(e) => return self.op_failed(now, op, e),
        };
        let account = match &op.kind {
            OpKind::Refresh { token } => {
                let token = token.clone();
                self.mark_spent(&token);
                self.held().and_then(|h| h.account.clone())
            }
            OpKind::Login { creds, .. } => Some(crate::core::fingerprint::account(&creds.username)),
            OpKind::Revoke { .. } => None,
        };
        let version = self.seen_version.max(self.held().map_or(0, |h| h.version)) + 1;
        self.install(now, pair, reason, version, account);
        if !self.has_storage {
            return self.finish(now, op, Outcome::Done);
        }
        if reason == Reason::Login && op.lease.is_none() {
            // A login did not look first: read the record's version so ours is stored as
            // the newer one. (A login under the lease looked while holding it: nobody has
            // written since, and its write must fit in the lease.)
            op.stage = self.read_stage(now, StageRead::Version);
            self.op = Some(Box::new(op));
        } else {
            self.persist(now, op);
        }
    }

    /// Writes the held pair as the newest record; the op ends when the write does (or its
    /// deadline passes).
    fn persist(&mut self, now: i64, mut op: Op) {
        let Some(h) = self.held() else {
            return self.finish(now, op, Outcome::Done);
        };
        let version = h.version;
        let value = envelope::write_record(&envelope::Stored {
            pair: h.pair.clone(),
            origin: self.config.record_origin(),
            account: h.account.clone(),
            version,
        });
        let io = self.id();
        let key = self.config.storage_key();
        self.push(Output::Storage(StorageOp::Put {
            id: io,
            key,
            value,
            version,
        }));
        op.stage = Stage::Persisting {
            io,
            deadline: now + self.config.timeout_ms as i64,
        };
        self.op = Some(Box::new(op));
    }

    /// Starts a storage read for `why` and returns the stage that waits for it.
    fn read_stage(&mut self, now: i64, why: StageRead) -> Stage {
        let io = self.id();
        let key = self.config.storage_key();
        self.push(Output::Storage(StorageOp::Get { id: io, key }));
        let deadline = now + self.config.timeout_ms as i64;
        match why {
            StageRead::Look => Stage::Looking { io, deadline },
            StageRead::Version => Stage::Versioning { io, deadline },
            StageRead::Adopt => Stage::Adopting { io, deadline },
        }
    }

    /// A pair fresh from the server must be usable: unexpired on both tokens (judged on the
    /// server's clock) and not a refresh token we spent.
    fn check_fresh(&self, now: i64, pair: TokenPair) -> Result<TokenPair, AuthError> {
        if pair.access_expires_at - self.skew_ms <= now {
            return Err(AuthError::invalid_response(
                "the server issued an access token that has already expired",
            ));
        }
        if pair.refresh_expires_at - self.skew_ms <= now {
            return Err(AuthError::invalid_response(
                "the server issued a refresh token that has already expired",
            ));
        }
        if self.is_spent(&pair.refresh_token) {
            return Err(AuthError::invalid_response(
                "the server issued a refresh token that was already spent",
            ));
        }
        Ok(pair)
    }

    /// Takes a pair into the state, arms the auto-refresh and tells listeners.
    fn install(&mut self, now: i64, pair: TokenPair, reason: Reason, version: u64, account: Option<String>) {
        self.newest = self.newest.max(pair.access_expires_at);
        self.expiry_reported = false;
        let access_local = pair.access_expires_at - self.skew_ms;
        let refresh_local = pair.refresh_expires_at - self.skew_ms;
        let margin_ms = effective_margin(self.config.refresh_margin_ms, access_local, now);
        self.serial = self.serial.wrapping_add(1);
        self.epoch = self.epoch.wrapping_add(1);
        self.refresh_at = self.config.auto_refresh.then_some(access_local - margin_ms);
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

    /// The refresh token was rejected (401). Another instance sharing the storage may have
    /// rotated it first: look there, else the session ends (or logs in again).
    fn refresh_rejected(&mut self, now: i64, mut op: Op) {
        if let OpKind::Refresh { token } = &op.kind {
            let token = token.clone();
            self.mark_spent(&token);
        }
        if self.has_storage {
            op.stage = self.read_stage(now, StageRead::Adopt);
            self.op = Some(Box::new(op));
            return;
        }
        self.session_over(now, op);
    }

    /// No newer pair anywhere: `expired`, then a re-login when credentials allow.
    fn session_over(&mut self, now: i64, mut op: Op) {
        // A call may have found the refresh token expired while this op was out: that
        // already ended the session and reported it; the end is reported once.
        let reported = matches!(self.state, State::Expired) && self.expiry_reported;
        self.state = State::Expired;
        self.refresh_at = None;
        self.epoch = self.epoch.wrapping_add(1);
        match self.relogin_credentials() {
            Some(creds) => {
                // The record was looked at already (the adoption after the rejection).
                op.kind = OpKind::Login {
                    creds,
                    relogin: !reported,
                    quiet: false,
                };
                op.attempt = 0;
                self.send(now, &mut op);
                self.op = Some(Box::new(op));
            }
            None => {
                if !reported {
                    self.report_expired();
                }
                let e = AuthError::new(
                    ErrorCode::SessionExpired,
                    "the refresh token was rejected; the session has ended",
                )
                .with_status(401);
                self.finish(now, op, Outcome::Failed(e));
            }
        }
    }

    /// The revoke request is done; the op ends once its storage delete has too.
    fn revoke_sent(&mut self, now: i64, mut op: Op) {
        if let OpKind::Revoke { delete: Some(_), .. } = op.kind {
            op.stage = Stage::Finishing;
            self.op = Some(Box::new(op));
            return;
        }
        self.finish_revoke(now, op);
    }

    fn finish_revoke(&mut self, now: i64, op: Op) {
        let outcome = match &op.kind {
            OpKind::Revoke { failure: Some(e), .. } => Outcome::Failed(e.clone()),
            _ => Outcome::Done,
        };
        self.finish(now, op, outcome);
    }

    // ----- inputs: storage --------------------------------------------------------------------

    /// The answer to [`Output::Storage`] `io`.
    pub fn handle_storage(&mut self, now: i64, io: IoId, reply: StorageReply) {
        if let Some(r) = self.restore.filter(|r| r.io == io) {
            self.restore = None;
            return self.restored(now, r, reply);
        }
        let Some(mut op) = self.op.take().map(|o| *o) else {
            return;
        };
        match op.stage {
            Stage::Adopting { io: i, .. } if i == io => self.adopt(now, op, reply),
            Stage::Looking { io: i, .. } if i == io => self.looked(now, op, reply),
            Stage::Leasing { io: i, .. } if i == io => self.leased(now, op, reply),
            Stage::Versioning { io: i, .. } if i == io => {
                if let Err(e) = self.stored_record(now, &reply) {
                    self.emit(Event::Error(e));
                }
                // The read raised `seen_version`: the held pair goes above it.
                let above = self.seen_version + 1;
                if let State::Active(h) = &mut self.state {
                    h.version = h.version.max(above);
                }
                self.persist(now, op);
            }
            Stage::Persisting { io: i, .. } if i == io => {
                if let StorageReply::Failed(cause) = reply {
                    self.emit(Event::Error(storage_error(
                        "the storage adapter failed to write the session",
                        cause,
                    )));
                }
                self.finish(now, op, Outcome::Done);
            }
            _ => {
                if let OpKind::Revoke { delete, failure, .. } = &mut op.kind {
                    if delete.is_some_and(|(i, _)| i == io) {
                        *delete = None;
                        if let StorageReply::Failed(cause) = reply {
                            let e = storage_error("the storage adapter failed to delete the session", cause);
                            self.outputs.push_back(Output::Event(Event::Error(e.clone())));
                            failure.get_or_insert(e);
                        }
                        if op.stage == Stage::Finishing {
                            return self.finish_revoke(now, op);
                        }
                    }
                }
                self.op = Some(Box::new(op));
            }
        }
    }

    /// Reads a stored record, or nothing. A record is usable when it parses, belongs to this
    /// host and (with credentials) this account, and its refresh token is unexpired and not
    /// one we spent. A record that is not ours to read is reported (`error` event) and
    /// treated as absent; one of another host or account is simply absent.
    fn stored_record(&mut self, now: i64, reply: &StorageReply) -> Result<Option<envelope::Stored>, AuthError> {
        let garbage = || storage_error("the stored session record is not one this client can read", None);
        let stored = match reply {
            StorageReply::Record(doc) => match read_record(doc) {
                Ok(s) => s,
                Err(_) => {
                    self.emit(Event::Error(garbage()));
                    None
                }
            },
            StorageReply::Garbage => {
                self.emit(Event::Error(garbage()));
                None
            }
            StorageReply::Empty | StorageReply::Lease(_) => None,
            StorageReply::Failed(cause) => {
                return Err(storage_error(
                    "the storage adapter failed to read the session",
                    cause.clone(),
                ))
            }
        };
        let stored = stored.filter(|s| {
            s.origin == self.config.record_origin()
                && (self.config.account.is_none() || s.account == self.config.account)
        });
        if let Some(s) = &stored {
            self.seen_version = self.seen_version.max(s.version);
        }
        Ok(stored.filter(|s| s.pair.refresh_expires_at - self.skew_ms > now && !self.is_spent(&s.pair.refresh_token)))
    }

    /// Before a refresh: a newer record (another instance rotated) is adopted instead.
    fn looked(&mut self, now: i64, mut op: Op, reply: StorageReply) {
        let stored = match self.stored_record(now, &reply) {
            Ok(s) => s,
            Err(e) => {
                // A storage failure never blocks the protocol: refresh as without storage.
                self.emit(Event::Error(e));
                None
            }
        };
        if matches!(op.kind, OpKind::Login { .. }) {
            return self.looked_before_login(now, op, stored);
        }
        let held = self.held().map(|h| (h.version, h.pair.refresh_token.clone()));
        let newer = stored.filter(|s| {
            held.as_ref()
                .is_some_and(|(v, t)| s.version > *v && s.pair.refresh_token != *t)
        });
        if let Some(s) = newer {
            self.install(now, s.pair, Reason::Adopt, s.version, s.account);
            return self.finish(now, op, Outcome::Done);
        }
        // The refresh token may have run out while we read.
        if !self.held().is_some_and(|h| now < h.refresh_local) {
            return match self.expire_if_due(now) {
                Some(e) => self.finish(now, op, Outcome::Failed(e)),
                None => self.session_over(now, op),
            };
        }
        if self.has_lease && op.lease.is_none() {
            // Only the lease holder refreshes; it looks again once it holds the lease.
            // With an expired token, callers wait for the holder's pair at most timeoutMs;
            // with a valid one nobody waits, and the look goes on until the holder's lease
            // must have run out.
            let valid = self.held().is_some_and(|h| now < h.access_local) && !op.unauthorized;
            let bound = if valid {
                2 * self.lease_ttl() as i64
            } else {
                self.config.timeout_ms as i64
            };
            if op.waiting.is_some_and(|(since, _)| now - since > bound) {
                let e = AuthError::new(
                    ErrorCode::Timeout,
                    "another instance held the refresh lease for longer than its time to live",
                );
                return self.finish(now, op, Outcome::Failed(e));
            }
            return self.acquire(now, op);
        }
        // As for a retry (see `handle_timeout_once`): a holder sends only an attempt that
        // ends within its lease. Slow storage calls (the acquire, this look) may have used
        // up so much of it (with no retries the lease is only twice the timeout) that
        // another instance could take the lease and send the same token meanwhile.
        if op
            .lease
            .as_ref()
            .is_some_and(|(_, until)| now + 2 * self.config.timeout_ms as i64 > *until)
        {
            let e = AuthError::new(ErrorCode::Timeout, "the refresh lease would run out before the refresh");
            return self.finish(now, op, Outcome::Failed(e));
        }
        self.send(now, &mut op);
        self.op = Some(Box::new(op));
    }

    /// Asks for the refresh lease; the op waits in `Leasing` for the answer.
    fn acquire(&mut self, now: i64, mut op: Op) {
        let io = self.id();
        let key = self.config.storage_key();
        let ttl_ms = self.lease_ttl();
        self.push(Output::Storage(StorageOp::Acquire { id: io, key, ttl_ms }));
        op.stage = Stage::Leasing {
            io,
            deadline: now + self.config.timeout_ms as i64,
        };
        self.op = Some(Box::new(op));
    }

    /// A quiet login looked at the record: a usable pair (by the rules of `restore`) is
    /// adopted; else, with a lease, only its holder logs in and the others wait for its
    /// record, at most `timeoutMs`, before they log in themselves.
    fn looked_before_login(&mut self, now: i64, mut op: Op, stored: Option<envelope::Stored>) {
        // Not older than any pair this session held: an older record's tokens are spent.
        if let Some(s) = stored.filter(|s| s.pair.access_expires_at > self.newest) {
            self.install(now, s.pair, Reason::Adopt, s.version, s.account);
            return self.finish(now, op, Outcome::Done);
        }
        let timeout = self.config.timeout_ms as i64;
        if let Some((_, until)) = &op.lease {
            // As for a refresh: the attempt and the write of its pair must end within the
            // lease, or another instance may take it and log in as well. Slow storage calls
            // used it up: give it back and ask again (another instance may log in meanwhile,
            // and this one adopts its pair).
            if now + 2 * timeout > *until {
                self.release(&op);
                op.lease = None;
                op.waiting.get_or_insert((now, 0));
            }
        }
        if self.has_lease && op.lease.is_none() {
            let waited_out = op.waiting.is_some_and(|(since, _)| now - since >= timeout);
            if !waited_out {
                return self.acquire(now, op);
            }
            // No holder's record within timeoutMs: log in without the lease (a second
            // login costs a token family, never a spent token).
            op.waiting = None;
        }
        self.send(now, &mut op);
        self.op = Some(Box::new(op));
    }

    /// The answer to `acquire`: holding the lease, look once more (the previous holder may
    /// have just stored its pair) and refresh; else wait for the holder's pair.
    fn leased(&mut self, now: i64, mut op: Op, reply: StorageReply) {
        match reply {
            StorageReply::Lease(id) => {
                // The storage started the lease's clock when `acquire` reached it, at some
                // time between the call and this answer: count from the call (the Leasing
                // deadline less the timeout), never from the answer, or a slow answer would
                // let this holder believe in a lease that another may already have taken.
                let asked = match op.stage {
                    Stage::Leasing { deadline, .. } => deadline - self.config.timeout_ms as i64,
                    _ => now,
                };
                op.lease = Some((id, asked + self.lease_ttl() as i64));
                op.stage = self.read_stage(now, StageRead::Look);
            }
            StorageReply::Empty => {
                // Another instance refreshes: its pair will be in the record soon. Look at
                // 100 ms, then 200, 400... at most every second.
                let (since, round) = op.waiting.unwrap_or((now, 0));
                op.waiting = Some((since, round + 1));
                let valid = self.held().is_some_and(|h| now < h.access_local);
                let release = !op.manual && !op.unauthorized;
                if round == 0 && valid && release && matches!(op.kind, OpKind::Refresh { .. }) {
                    // Its callers still hold a valid token: they go out with it now (asked
                    // again, the machine hands it out) instead of waiting for the holder.
                    // The look for the holder's pair goes on under a new flight.
                    self.push(Output::Settle(op.flight, Outcome::Again));
                    op.flight = self.id();
                }
                let pause = (100i64 << round.min(4)).min(1_000);
                op.stage = Stage::Waiting { until: now + pause };
            }
            failed => {
                // A lease the storage cannot give (it threw, or answered something that is
                // neither a lease id nor "taken") never blocks the protocol: refresh.
                let cause = match failed {
                    StorageReply::Failed(cause) => cause,
                    _ => None,
                };
                self.emit(Event::Error(storage_error(
                    "the storage adapter failed to take the refresh lease",
                    cause,
                )));
                op.waiting = None;
                // As in `looked`: the refresh token may have run out while the acquire was
                // out (up to timeoutMs); a dead token is not sent.
                let refresh = matches!(op.kind, OpKind::Refresh { .. });
                if refresh && !self.held().is_some_and(|h| now < h.refresh_local) {
                    return match self.expire_if_due(now) {
                        Some(e) => self.finish(now, op, Outcome::Failed(e)),
                        None => self.session_over(now, op),
                    };
                }
                self.send(now, &mut op);
            }
        }
        self.op = Some(Box::new(op));
    }

    fn adopt(&mut self, now: i64, op: Op, reply: StorageReply) {
        let stored = match self.stored_record(now, &reply) {
            Ok(s) => s,
            Err(e) => {
                self.emit(Event::Error(e));
                None
            }
        };
        // Only a pair issued after ours is newer. An older record (a write of ours that
        // failed, a stale read of an eventually consistent store) holds a spent token.
        let held = self.held().map(|h| (h.version, h.pair.access_expires_at));
        // (`map_or`, not `is_none_or`: the MSRV is 1.81.)
        match stored.filter(|s| held.map_or(true, |(v, x)| s.version > v || s.pair.access_expires_at > x)) {
            Some(s) => {
                self.install(now, s.pair, Reason::Adopt, s.version, s.account);
                self.finish(now, op, Outcome::Done);
            }
            None => self.session_over(now, op),
        }
    }

    fn restored(&mut self, now: i64, r: Restore, reply: StorageReply) {
        let stored = match self.stored_record(now, &reply) {
            Ok(s) => s,
            Err(e) => return self.push(Output::Settle(r.flight, Outcome::Failed(e))),
        };
        // An op still running decides the session, not this read: a pair restored beside
        // it would be replaced by a login's or refresh's result, would let a refresh retry
        // send its own (maybe expired) token for another pair, or, beside a revoke, would
        // let the next refresh replace the revoke op (two requests open, the revoke never
        // settled).
        if r.epoch != self.epoch || self.is_disposed() || self.op.is_some() {
            // A login, a refresh, a revoke or a dispose came after the read began.
            return self.push(Output::Settle(r.flight, Outcome::Nothing));
        }
        // Only a pair at least as new as any held before (a stale read, or a record our
        // failed writes left behind, holds a spent refresh token).
        match stored.filter(|s| s.pair.access_expires_at >= self.newest) {
            Some(s) => {
                self.install(now, s.pair, Reason::Restore, s.version, s.account);
                self.push(Output::Settle(r.flight, Outcome::Done));
            }
            None => self.push(Output::Settle(r.flight, Outcome::Nothing)),
        }
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

    fn handle_timeout_once(&mut self, now: i64) {
        if let Some(r) = self.restore.filter(|r| r.deadline <= now) {
            self.restore = None;
            self.push(Output::Cancel(r.io));
            let e = storage_error("the storage adapter did not answer within timeoutMs", None);
            self.push(Output::Settle(r.flight, Outcome::Failed(e)));
        }
        if let Some(mut op) = self.op.take().map(|o| *o) {
            if let OpKind::Revoke { delete, failure, .. } = &mut op.kind {
                if let Some((io, deadline)) = *delete {
                    if deadline <= now {
                        let e = storage_error("the storage adapter did not answer within timeoutMs", None);
                        *delete = None;
                        failure.get_or_insert(e.clone());
                        self.outputs.push_back(Output::Cancel(io));
                        self.outputs.push_back(Output::Event(Event::Error(e)));
                    }
                }
            }
            match op.stage {
                Stage::Sending { io, deadline } if deadline <= now => {
                    self.push(Output::Cancel(io));
                    let e = AuthError::new(
                        ErrorCode::Timeout,
                        self.about(&op, "no complete answer within timeoutMs"),
                    );
                    self.attempt_failed(now, op, e, None);
                }
                Stage::Backoff { until } if until <= now => {
                    // No pair held: a call found the refresh token expired while we waited.
                    let ran_out = matches!(op.kind, OpKind::Refresh { .. })
                        && !self.held().is_some_and(|h| now < h.refresh_local);
                    // A holder whose lease would run out before this attempt's deadline and its write
                    // stops: another instance may take the lease and refresh meanwhile.
                    let lease_out = op
                        .lease
                        .as_ref()
                        .is_some_and(|(_, until)| now + 2 * self.config.timeout_ms as i64 > *until);
                    if lease_out {
                        let e = AuthError::new(ErrorCode::Timeout, "the refresh lease ran out before a retry");
                        self.finish(now, op, Outcome::Failed(e));
                    } else if !ran_out {
                        self.send(now, &mut op);
                        self.op = Some(Box::new(op));
                    } else if let Some(e) = self.expire_if_due(now) {
                        // The refresh token ran out while the retry waited: it is not sent.
                        // The session ends here, as it would for a call made now...
                        self.finish(now, op, Outcome::Failed(e));
                    } else {
                        // ...or, with credentials, logs in again in the same flight.
                        self.session_over(now, op);
                    }
                }
                Stage::Adopting { io, deadline } if deadline <= now => {
                    self.push(Output::Cancel(io));
                    self.adopt(now, op, StorageReply::Failed(None));
                }
                Stage::Looking { io, deadline } if deadline <= now => {
                    self.push(Output::Cancel(io));
                    self.looked(now, op, StorageReply::Failed(None));
                }
                Stage::Leasing { io, deadline } if deadline <= now => {
                    self.push(Output::Cancel(io));
                    self.leased(now, op, StorageReply::Failed(None));
                }
                Stage::Waiting { until } if until <= now => {
                    op.stage = self.read_stage(now, StageRead::Look);
                    self.op = Some(Box::new(op));
                }
                Stage::Versioning { io, deadline } if deadline <= now => {
                    self.push(Output::Cancel(io));
                    let e = storage_error("the storage adapter did not answer within timeoutMs", None);
                    self.emit(Event::Error(e));
                    // Still above every version read meanwhile (a restore's read may have
                    // raised `seen_version` since the pair was installed).
                    let above = self.seen_version + 1;
                    if let State::Active(h) = &mut self.state {
                        h.version = h.version.max(above);
                    }
                    self.persist(now, op);
                }
                Stage::Persisting { io, deadline } if deadline <= now => {
                    self.push(Output::Cancel(io));
                    let e = storage_error("the storage adapter did not answer within timeoutMs", None);
                    self.emit(Event::Error(e));
                    self.finish(now, op, Outcome::Done);
                }
                Stage::Finishing if !matches!(op.kind, OpKind::Revoke { delete: Some(_), .. }) => {
                    self.finish_revoke(now, op);
                }
                _ => self.op = Some(Box::new(op)),
            }
        }
        self.calls_timeout(now);
        if self.refresh_at.is_some_and(|t| t <= now) {
            self.refresh_at = None;
            self.timer_fired(now);
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
        if self.other_account {
            return None;
        }
        self.config.credentials.clone()
    }
}

fn ready(h: &Held, background: Option<FlightId>) -> TokenStep {
    TokenStep::Ready {
        token: h.pair.access_token.clone(),
        serial: h.serial,
        background,
    }
}

/// Why the machine reads the stored record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StageRead {
    Look,
    Version,
    Adopt,
}

/// Whether the session has a `storage` to keep its pair in, and whether that storage can
/// give a refresh lease (`acquire`/`release`): then of all instances sharing the record,
/// one refreshes at a time and the others adopt what it stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    MemoryOnly,
    Storage,
    StorageWithLease,
}

/// Whether the deadline of [`Machine::poll_timeout`] is awaited work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// A retry, an attempt's timeout or a storage deadline: someone awaits it.
    Alive,
    /// Only the auto-refresh: must not keep a process alive.
    Idle,
}
