//! The native test harness of the sans-IO [`Machine`]: options made into a `Config`, token
//! pairs and server answers made into the values the driver would pass in, and [`Run`], a
//! machine plus a record of everything it polled out.
//!
//! There is no executor and no clock: every input takes the `now` the test passes, and the
//! test reads what the machine asks for (the open `Send`, the storage calls, the next
//! deadline) and answers it, straight-line, as the JavaScript driver would.
#![allow(dead_code)]

use std::collections::HashMap;

use auth_session::core::config::{Config, Credentials, Options};
use auth_session::core::envelope::{self, AuthBody, TokenPair};
use auth_session::core::fingerprint;
use auth_session::core::json::{self, Json};

include!("json_text.rs");
include!("encodings.rs");
use auth_session::core::machine::{
    AuthReply, AuthRequest, Endpoint, Event, FlightId, IoFailure, IoId, Keep, Machine, Need, Outcome, Output,
    Persistence, Reason, Step, StorageOp, StorageReply, TokenStep, Waited,
};
use auth_session::core::rfc3339::{civil_from_days, format_rfc3339};
use auth_session::core::secret::{AccessToken, Password, RefreshToken};
use auth_session::core::{AuthError, SessionInfo};

/// 2024-01-15T09:30:00Z, the guide's example day: tests start here.
pub const EPOCH: i64 = 1_705_311_000_000;
pub const HOST: &str = "https://api.test";
pub const USER: &str = "alice";
/// Every secret the suite handles carries this marker, so one search finds any leak.
pub const CANARY: &str = "CANARY";
pub const PASSWORD: &str = "pw-CANARY-hunter2";
pub const SECOND: i64 = 1_000;
pub const MINUTE: i64 = 60 * SECOND;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;
/// The default refresh margin (300 s) and attempt timeout (10 s).
pub const MARGIN: i64 = 5 * MINUTE;
pub const TIMEOUT: i64 = 10 * SECOND;
/// The largest delay `setTimeout` honours.
pub const MAX_TIMER: i64 = 2_147_483_647;
/// The seed of every [`Run`] unless a test picks another.
pub const SEED: u64 = 0x5eed;

// ----- options -------------------------------------------------------------------------------

pub fn options() -> Options {
    Options {
        host: Some(HOST.to_owned()),
        ..Options::default()
    }
}

/// The default options changed by `f`, validated.
pub fn config(f: impl FnOnce(&mut Options)) -> Config {
    let mut o = options();
    f(&mut o);
    o.validate().expect("valid options")
}

pub fn with_credentials(o: &mut Options) {
    o.credentials = Some((USER.to_owned(), Password::new(PASSWORD)));
}

pub fn no_timer(o: &mut Options) {
    o.auto_refresh = Some(false);
}

pub fn creds() -> Credentials {
    creds_with(PASSWORD)
}

pub fn creds_with(password: &str) -> Credentials {
    Credentials {
        username: USER.to_owned(),
        password: Password::new(password),
    }
}

// ----- token pairs ---------------------------------------------------------------------------

/// The access token of pair `n`.
pub fn at(n: u32) -> String {
    format!("at.{CANARY}.{n}")
}

/// The refresh token of pair `n`.
pub fn rt(n: u32) -> String {
    format!("rt.{CANARY}.{n}")
}

/// A token pair as a server issues it (times are the server's, epoch ms).
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    pub access: String,
    pub refresh: String,
    pub access_expires_at: i64,
    pub refresh_expires_at: i64,
    pub client_id: Option<i64>,
}

impl Pair {
    /// Pair `n`, issued at server time `at_ms` with the guide's lifetimes (1 hour, 7 days).
    pub fn issued(n: u32, at_ms: i64) -> Pair {
        Pair::with_ttl(n, at_ms, HOUR, 7 * DAY)
    }

    pub fn with_ttl(n: u32, at_ms: i64, access_ttl: i64, refresh_ttl: i64) -> Pair {
        Pair {
            access: at(n),
            refresh: rt(n),
            access_expires_at: at_ms + access_ttl,
            refresh_expires_at: at_ms + refresh_ttl,
            client_id: Some(123_456),
        }
    }

    /// The `data` of a login or refresh answer.
    pub fn data(&self) -> String {
        let mut out = String::from("{\"access_token\":");
        json::write_string(&mut out, &self.access);
        out.push_str(",\"refresh_token\":");
        json::write_string(&mut out, &self.refresh);
        out.push_str(&format!(
            ",\"access_expires_at\":\"{}\",\"refresh_expires_at\":\"{}\",\"client_id\":{}}}",
            format_rfc3339(self.access_expires_at),
            format_rfc3339(self.refresh_expires_at),
            self.client_id.map_or("null".to_owned(), |c| c.to_string())
        ));
        out
    }

    pub fn envelope(&self) -> String {
        format!(r#"{{"success":true,"data":{}}}"#, self.data())
    }

    pub fn token_pair(&self) -> TokenPair {
        TokenPair {
            access_token: AccessToken::parse(&self.access).unwrap(),
            refresh_token: Some(RefreshToken::parse(&self.refresh).unwrap()),
            access_expires_at: self.access_expires_at,
            refresh_expires_at: self.refresh_expires_at,
            client_id: self.client_id,
        }
    }

    /// The pair's number (the `n` of [`at`] and [`rt`]).
    pub fn n(&self) -> u64 {
        self.access.rsplit('.').next().and_then(|n| n.parse().ok()).unwrap_or(0)
    }

    /// The storage record the session writes for this pair: this host, [`USER`]'s account,
    /// and the pair's number as its rotation version (a session's first login stores
    /// version 1, each refresh one more).
    pub fn record(&self) -> String {
        self.record_as(self.n(), Some(&fingerprint::account(USER)))
    }

    /// The record of this pair with another version or account.
    pub fn record_as(&self, version: u64, account: Option<&str>) -> String {
        self.record_of(HOST, version, account)
    }

    /// The record of this pair as a session of the host `origin` (origin and path prefix)
    /// writes it.
    pub fn record_of(&self, origin: &str, version: u64, account: Option<&str>) -> String {
        envelope::write_record(&envelope::Stored {
            pair: self.token_pair(),
            origin: origin.to_owned(),
            account: account.map(str::to_owned),
            version,
        })
    }

    /// [`Pair::record_as`] as the driver hands it back from `get`.
    pub fn stored_as(&self, version: u64, account: Option<&str>) -> StorageReply {
        StorageReply::Record(parse(&self.record_as(version, account)))
    }

    /// The record as the driver hands it back from `get` (after `JSON.parse`).
    pub fn stored(&self) -> StorageReply {
        StorageReply::Record(parse(&self.record()))
    }

    pub fn info(&self, state: auth_session::core::Phase) -> SessionInfo {
        SessionInfo {
            state,
            client_id: self.client_id,
            access_expires_at: Some(self.access_expires_at),
            refresh_expires_at: Some(self.refresh_expires_at),
        }
    }
}

pub fn parse(text: &str) -> Json {
    parse_json(text.as_bytes()).expect("test JSON")
}

// ----- server answers ------------------------------------------------------------------------

/// What the driver passes to `handle_auth`.
pub type Reply = Result<AuthReply, IoFailure>;

/// A body as the driver read it: no bytes, text `JSON.parse` refused, or JSON.
pub fn body(text: &str) -> AuthBody {
    if text.is_empty() {
        return AuthBody::Empty;
    }
    match parse_json(text.as_bytes()) {
        Ok(doc) => AuthBody::Json(doc),
        Err(_) => AuthBody::NotJson,
    }
}

pub fn reply(status: u16, text: &str) -> Reply {
    Ok(AuthReply {
        status,
        redirected: false,
        date: None,
        retry_after: None,
        body: body(text),
    })
}

/// A 200 with the pair's success envelope.
pub fn ok(pair: &Pair) -> Reply {
    reply(200, &pair.envelope())
}

/// A status with an empty body.
pub fn status(status: u16) -> Reply {
    reply(status, "")
}

/// The server's error envelope.
pub fn error_envelope(status: u16, name: &str, code: &str, message: &str) -> Reply {
    let mut text = String::from("{\"error\":{\"name\":");
    json::write_string(&mut text, name);
    text.push_str(",\"code\":");
    json::write_string(&mut text, code);
    text.push_str(",\"message\":");
    json::write_string(&mut text, message);
    text.push_str("}}");
    reply(status, &text)
}

pub fn unauthorized() -> Reply {
    error_envelope(401, "UnauthorizedError", "UNAUTHORIZED", "Invalid or expired token")
}

pub fn network() -> Reply {
    Err(IoFailure::Network(None))
}

/// Headers on a reply.
pub trait ReplyExt {
    fn retry_after(self, value: &str) -> Self;
    fn date(self, value: &str) -> Self;
    fn redirected(self) -> Self;
}

impl ReplyExt for Reply {
    fn retry_after(self, value: &str) -> Self {
        self.map(|r| AuthReply {
            retry_after: Some(value.to_owned()),
            ..r
        })
    }
    fn date(self, value: &str) -> Self {
        self.map(|r| AuthReply {
            date: Some(value.to_owned()),
            ..r
        })
    }
    fn redirected(self) -> Self {
        self.map(|r| AuthReply { redirected: true, ..r })
    }
}

/// An IMF-fixdate (`Mon, 15 Jan 2024 09:30:00 GMT`), as servers send in `Date`.
pub fn http_date(ms: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = ms.div_euclid(DAY);
    let (y, m, d) = civil_from_days(days);
    let s = ms.rem_euclid(DAY) / 1000;
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[m as usize - 1],
        y,
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// The `refresh_token` of a refresh or revoke body.
pub fn body_token(req: &AuthRequest) -> Option<String> {
    let doc = parse_json(req.body.as_bytes()).ok()?;
    doc.get("refresh_token")?.as_str().map(str::to_owned)
}

pub fn event_kind(e: &Event) -> &'static str {
    match e {
        Event::Tokens(..) => "tokens",
        Event::Expired(_) => "expired",
        Event::Revoked(_) => "revoked",
        Event::Error(_) => "error",
    }
}

// ----- the run -------------------------------------------------------------------------------

/// A machine and everything it asked for. Every method that gives the machine an input
/// drains its outputs into [`Run::log`] and returns the new ones.
pub struct Run {
    pub m: Machine,
    /// Every output, in order.
    pub log: Vec<Output>,
    /// Sends neither answered nor cancelled.
    open: Vec<AuthRequest>,
    /// Storage calls neither answered nor cancelled.
    storage: Vec<StorageOp>,
    settled: HashMap<FlightId, Vec<Outcome>>,
}

impl Run {
    pub fn new(config: Config) -> Run {
        Run::with(config, false, SEED)
    }

    /// A run whose driver has a `TokenStorage`.
    pub fn with_storage(config: Config) -> Run {
        Run::with(config, true, SEED)
    }

    /// A run whose driver has a `TokenStorage` with `acquire`/`release` (a refresh lease).
    pub fn with_lease(config: Config) -> Run {
        Run::with_persistence(config, Persistence::StorageWithLease, SEED)
    }

    pub fn with(config: Config, storage: bool, seed: u64) -> Run {
        let persistence = if storage {
            Persistence::Storage
        } else {
            Persistence::MemoryOnly
        };
        Run::with_persistence(config, persistence, seed)
    }

    pub fn with_persistence(config: Config, persistence: Persistence, seed: u64) -> Run {
        Run {
            m: Machine::new(config, persistence, seed),
            log: Vec::new(),
            open: Vec::new(),
            storage: Vec::new(),
            settled: HashMap::new(),
        }
    }

    /// Polls every output out, keeps track of what is open and settled, and returns them.
    pub fn drain(&mut self) -> Vec<Output> {
        let mut new = Vec::new();
        while let Some(out) = self.m.poll_output() {
            match &out {
                Output::Send(req) => {
                    self.open.push(req.clone());
                    assert!(self.open.len() <= 1, "two auth requests open at once: {:?}", self.open);
                }
                Output::Cancel(io) => {
                    self.open.retain(|r| r.id != *io);
                    self.storage.retain(|op| op_id(op) != *io);
                }
                Output::Storage(op) => self.storage.push(op.clone()),
                Output::Settle(f, outcome) => {
                    let all = self.settled.entry(*f).or_default();
                    all.push(outcome.clone());
                    assert_eq!(all.len(), 1, "flight {f} settled twice: {all:?}");
                }
                Output::Event(_) | Output::Log(_) | Output::Call(..) => {}
            }
            new.push(out);
        }
        self.log.extend(new.iter().cloned());
        new
    }

    // ----- user commands ---------------------------------------------------------------------

    pub fn login(&mut self, now: i64) -> FlightId {
        self.login_with(now, Some(creds()))
    }

    /// `login()` with these credentials (None: the configured ones); expects a wait.
    pub fn login_with(&mut self, now: i64, c: Option<Credentials>) -> FlightId {
        let step = self.m.login(now, c);
        self.drain();
        wait(step)
    }

    pub fn refresh(&mut self, now: i64) -> Step {
        let step = self.m.refresh(now);
        self.drain();
        step
    }

    pub fn revoke(&mut self, now: i64) -> Step {
        let step = self.m.revoke(now);
        self.drain();
        step
    }

    pub fn restore(&mut self, now: i64) -> Step {
        let step = self.m.restore(now);
        self.drain();
        step
    }

    pub fn dispose(&mut self) -> Vec<Output> {
        self.m.dispose();
        self.drain()
    }

    pub fn rejoin(&mut self) -> Step {
        let step = self.m.rejoin();
        self.drain();
        step
    }

    pub fn token(&mut self, now: i64, need: Need, waited: Waited, round: u32) -> TokenStep {
        let step = self.m.token(now, need, waited, round);
        self.drain();
        step
    }

    /// A first `token()` call with `need`.
    pub fn ask(&mut self, now: i64, need: Need) -> TokenStep {
        self.token(now, need, Waited::Nothing, 0)
    }

    /// `getAccessToken()` that must resolve without waiting.
    pub fn token_now(&mut self, now: i64) -> Result<String, AuthError> {
        match self.ask(now, Need::Strict) {
            TokenStep::Ready { token, .. } => Ok(token.expose().to_owned()),
            TokenStep::Fail(e) => Err(e),
            other => panic!("expected a token or an error at once, got {other:?}"),
        }
    }

    pub fn token_after_401(&mut self, now: i64, serial: u32) -> TokenStep {
        let step = self.m.token_after_401(now, serial);
        self.drain();
        step
    }

    // ----- the auth requests -----------------------------------------------------------------

    /// Every Send, in order.
    pub fn sends(&self) -> Vec<AuthRequest> {
        self.log
            .iter()
            .filter_map(|o| match o {
                Output::Send(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn sends_to(&self, endpoint: Endpoint) -> Vec<AuthRequest> {
        self.sends().into_iter().filter(|r| r.endpoint == endpoint).collect()
    }

    pub fn count(&self, endpoint: Endpoint) -> usize {
        self.sends_to(endpoint).len()
    }

    /// The refresh tokens of every refresh request, in order.
    pub fn refresh_tokens_sent(&self) -> Vec<String> {
        self.sends_to(Endpoint::Refresh)
            .iter()
            .map(|r| body_token(r).unwrap())
            .collect()
    }

    /// The one open Send; panics unless exactly one is open.
    pub fn open_send(&self) -> AuthRequest {
        assert_eq!(self.open.len(), 1, "expected one open auth request: {:?}", self.open);
        self.open[0].clone()
    }

    pub fn has_open_send(&self) -> bool {
        !self.open.is_empty()
    }

    /// Answers the open Send at `now`.
    pub fn answer(&mut self, now: i64, reply: Reply) -> Vec<Output> {
        let req = self.open_send();
        self.answer_io(now, req.id, reply)
    }

    /// Answers Send `io` (open or not: a late answer to a cancelled one is a test too).
    pub fn answer_io(&mut self, now: i64, io: IoId, reply: Reply) -> Vec<Output> {
        self.open.retain(|r| r.id != io);
        self.m.handle_auth(now, io, reply);
        self.drain()
    }

    // ----- storage ---------------------------------------------------------------------------

    /// Storage calls neither answered nor cancelled, in order.
    pub fn storage_ops(&self) -> Vec<StorageOp> {
        self.storage.clone()
    }

    /// Every storage call, in order.
    pub fn all_storage_ops(&self) -> Vec<StorageOp> {
        self.log
            .iter()
            .filter_map(|o| match o {
                Output::Storage(op) => Some(op.clone()),
                _ => None,
            })
            .collect()
    }

    /// The values of every `put`, in order.
    pub fn puts(&self) -> Vec<String> {
        self.all_storage_ops()
            .into_iter()
            .filter_map(|op| match op {
                StorageOp::Put { value, .. } => Some(value),
                _ => None,
            })
            .collect()
    }

    fn open_op(&self, kind: &str) -> IoId {
        let ids: Vec<IoId> = self
            .storage
            .iter()
            .filter(|op| op_kind(op) == kind)
            .map(op_id)
            .collect();
        assert_eq!(ids.len(), 1, "expected one open storage {kind}: {:?}", self.storage);
        ids[0]
    }

    pub fn answer_storage(&mut self, now: i64, io: IoId, reply: StorageReply) -> Vec<Output> {
        self.storage.retain(|op| op_id(op) != io);
        self.m.handle_storage(now, io, reply);
        self.drain()
    }

    /// Answers the one open `get`.
    pub fn answer_get(&mut self, now: i64, reply: StorageReply) -> Vec<Output> {
        let io = self.open_op("get");
        self.answer_storage(now, io, reply)
    }

    /// Answers the one open `put` (`Empty`: written; `Failed`: the adapter threw).
    pub fn answer_put(&mut self, now: i64, reply: StorageReply) -> Vec<Output> {
        let io = self.open_op("put");
        self.answer_storage(now, io, reply)
    }

    pub fn answer_delete(&mut self, now: i64, reply: StorageReply) -> Vec<Output> {
        let io = self.open_op("delete");
        self.answer_storage(now, io, reply)
    }

    /// Answers the one open `acquire` (`Lease(id)`: taken; `Empty`: another holder has it).
    pub fn answer_acquire(&mut self, now: i64, reply: StorageReply) -> Vec<Output> {
        let io = self.open_op("acquire");
        self.answer_storage(now, io, reply)
    }

    /// Whether a storage call of `kind` ("get", "acquire"…) is open.
    pub fn has_open_op(&self, kind: &str) -> bool {
        self.storage.iter().any(|op| op_kind(op) == kind)
    }

    /// The lease ids of every `release`, in order.
    pub fn releases(&self) -> Vec<String> {
        self.all_storage_ops()
            .into_iter()
            .filter_map(|op| match op {
                StorageOp::Release { lease, .. } => Some(lease),
                _ => None,
            })
            .collect()
    }

    /// The `ttl_ms` of every `acquire`, in order.
    pub fn acquires(&self) -> Vec<u32> {
        self.all_storage_ops()
            .into_iter()
            .filter_map(|op| match op {
                StorageOp::Acquire { ttl_ms, .. } => Some(ttl_ms),
                _ => None,
            })
            .collect()
    }

    // ----- time ------------------------------------------------------------------------------

    /// When the machine wants `handle_timeout` next.
    pub fn deadline(&self) -> Option<i64> {
        self.m.poll_timeout().map(|(t, _)| t)
    }

    pub fn keep(&self) -> Option<Keep> {
        self.m.poll_timeout().map(|(_, k)| k)
    }

    pub fn timeout(&mut self, now: i64) -> Vec<Output> {
        self.m.handle_timeout(now);
        self.drain()
    }

    /// Calls `handle_timeout` at the next deadline; returns that time.
    pub fn fire(&mut self) -> i64 {
        let t = self.deadline().expect("a deadline");
        self.timeout(t);
        t
    }

    // ----- results ---------------------------------------------------------------------------

    /// How flight `f` ended, if it has.
    pub fn outcome(&self, f: FlightId) -> Option<Outcome> {
        self.settled.get(&f).map(|all| all[0].clone())
    }

    /// How flight `f` ended; panics if it has not.
    pub fn settled(&self, f: FlightId) -> Outcome {
        self.outcome(f).unwrap_or_else(|| panic!("flight {f} has not settled"))
    }

    /// The error flight `f` failed with; panics otherwise.
    pub fn failure(&self, f: FlightId) -> AuthError {
        match self.settled(f) {
            Outcome::Failed(e) => e,
            other => panic!("flight {f} ended {other:?}, not with an error"),
        }
    }

    pub fn events(&self) -> Vec<Event> {
        self.log
            .iter()
            .filter_map(|o| match o {
                Output::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    /// Events of one kind: "tokens", "expired", "revoked", "error".
    pub fn event_count(&self, kind: &str) -> usize {
        self.events().iter().filter(|e| event_kind(e) == kind).count()
    }

    pub fn errors(&self) -> Vec<AuthError> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Error(err) => Some(err),
                _ => None,
            })
            .collect()
    }

    /// The reasons of every `tokens` event, in order.
    pub fn token_reasons(&self) -> Vec<Reason> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Tokens(_, reason) => Some(reason),
                _ => None,
            })
            .collect()
    }

    pub fn cancelled(&self) -> Vec<IoId> {
        self.log
            .iter()
            .filter_map(|o| match o {
                Output::Cancel(io) => Some(*io),
                _ => None,
            })
            .collect()
    }

    // ----- shortcuts -------------------------------------------------------------------------

    /// Logs in at `now` and answers with `pair` (with storage: the versioning read finds an
    /// empty store, the write succeeds): an active session.
    pub fn logged_in(&mut self, now: i64, pair: &Pair) {
        self.logged_in_over(now, pair, StorageReply::Empty);
    }

    /// [`Run::logged_in`] where the versioning read that follows the login (with storage)
    /// answers `current`, what the store holds.
    pub fn logged_in_over(&mut self, now: i64, pair: &Pair, current: StorageReply) {
        let f = self.login(now);
        self.answer(now, ok(pair));
        if self.storage.iter().any(|op| op_kind(op) == "get") {
            assert_eq!(self.outcome(f), None, "the login waits for its versioning read");
            self.answer_get(now, current);
            self.answer_put(now, StorageReply::Empty);
        }
        assert_eq!(self.settled(f), Outcome::Done);
    }

    /// Answers the look that comes before a refresh (with storage) with `current`; the
    /// refresh request follows unless the record is adopted.
    pub fn looked(&mut self, now: i64, current: StorageReply) -> Vec<Output> {
        assert!(!self.has_open_send(), "the look comes before the request");
        self.answer_get(now, current)
    }

    /// Answers every open storage call from `store`, and every call those answers lead to,
    /// in order: a `TokenStorage` that answers at once (a lease taken now runs from `now`).
    pub fn serve(&mut self, now: i64, store: &mut MemoryStore) {
        while let Some(op) = self.storage.first().cloned() {
            let reply = store.answer_at(now, &op);
            self.answer_storage(now, op_id(&op), reply);
        }
    }

    /// Everything this run printed that a user could see (events, outcomes, info), for the
    /// secret checks. Send bodies and storage values carry secrets by design.
    pub fn printable(&self) -> Vec<String> {
        let mut out = Vec::new();
        for o in &self.log {
            match o {
                Output::Event(Event::Error(e)) | Output::Settle(_, Outcome::Failed(e)) => {
                    out.push(format!("{e} {e:?}"));
                }
                Output::Send(r) => out.push(format!("{:?}", r.authorization.is_some())),
                Output::Storage(_) => {}
                other => out.push(format!("{other:?}")),
            }
        }
        out.push(format!("{:?}", self.m.info()));
        out.push(format!("{:?}", self.m.config()));
        out
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        // Every test doubles as a secrecy test: nothing it printed may hold a secret.
        for text in self.printable() {
            assert_no_secret(&text);
        }
    }
}

pub fn assert_no_secret(text: &str) {
    assert!(
        !text.contains(CANARY) && !text.contains("hunter2"),
        "a secret leaked: {text}"
    );
}

/// An in-memory `TokenStorage` that several runs (instances of the session) can share, with
/// the refresh lease of `acquire`/`release` (a `SET NX PX` and a compare-and-delete).
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    pub records: HashMap<String, String>,
    /// The lease of each key: its id and when it runs out (the `now` it was taken + its TTL).
    pub leases: HashMap<String, (String, i64)>,
    /// How many leases were handed out (ids are `lease-1`, `lease-2`…).
    pub granted: u32,
}

impl MemoryStore {
    /// Performs a storage call and gives the driver's answer. A lease call needs the time:
    /// [`MemoryStore::answer_at`].
    pub fn answer(&mut self, op: &StorageOp) -> StorageReply {
        match op {
            StorageOp::Get { key, .. } => match self.records.get(key) {
                Some(v) => StorageReply::Record(parse(v)),
                None => StorageReply::Empty,
            },
            StorageOp::Put { key, value, .. } => {
                self.records.insert(key.clone(), value.clone());
                StorageReply::Empty
            }
            StorageOp::Delete { key, .. } => {
                self.records.remove(key);
                StorageReply::Empty
            }
            StorageOp::Acquire { .. } | StorageOp::Release { .. } => {
                panic!("a lease call needs the time: answer_at, not answer ({op:?})")
            }
        }
    }

    /// Performs a storage call at `now`: `acquire` takes the key's lease for `ttl_ms` from
    /// `now` unless an unexpired one is held (`Empty`); `release` deletes the lease only
    /// while it still holds that id.
    pub fn answer_at(&mut self, now: i64, op: &StorageOp) -> StorageReply {
        match op {
            StorageOp::Acquire { key, ttl_ms, .. } => {
                if self.holder(now, key).is_some() {
                    return StorageReply::Empty;
                }
                self.granted += 1;
                let id = format!("lease-{}", self.granted);
                self.leases.insert(key.clone(), (id.clone(), now + *ttl_ms as i64));
                StorageReply::Lease(id)
            }
            StorageOp::Release { key, lease, .. } => {
                if self.leases.get(key).is_some_and(|(id, _)| id == lease) {
                    self.leases.remove(key);
                }
                StorageReply::Empty
            }
            _ => self.answer(op),
        }
    }

    /// The id of the unexpired lease of `key` at `now`, if one is held.
    pub fn holder(&self, now: i64, key: &str) -> Option<&str> {
        self.leases
            .get(key)
            .filter(|(_, until)| now < *until)
            .map(|(id, _)| id.as_str())
    }

    /// The version of the record under `key`.
    pub fn version(&self, key: &str) -> Option<u64> {
        self.records.get(key).map(|v| record_version(v))
    }
}

/// The `version` of a stored record.
pub fn record_version(record: &str) -> u64 {
    parse(record).get("version").and_then(Json::as_f64).expect("a version") as u64
}

/// The access token of a stored record.
pub fn record_access_token(record: &str) -> String {
    parse(record)
        .get("access_token")
        .and_then(Json::as_str)
        .expect("an access token")
        .to_owned()
}

pub fn op_id(op: &StorageOp) -> IoId {
    match op {
        StorageOp::Get { id, .. }
        | StorageOp::Put { id, .. }
        | StorageOp::Delete { id, .. }
        | StorageOp::Acquire { id, .. }
        | StorageOp::Release { id, .. } => *id,
    }
}

pub fn op_kind(op: &StorageOp) -> &'static str {
    match op {
        StorageOp::Get { .. } => "get",
        StorageOp::Put { .. } => "put",
        StorageOp::Delete { .. } => "delete",
        StorageOp::Acquire { .. } => "acquire",
        StorageOp::Release { .. } => "release",
    }
}

/// The flight of a step that must wait.
pub fn wait(step: Step) -> FlightId {
    match step {
        Step::Wait(f) => f,
        other => panic!("expected to wait, got {other:?}"),
    }
}

pub fn wait_token(step: TokenStep) -> FlightId {
    match step {
        TokenStep::Wait(f) => f,
        other => panic!("expected to wait, got {other:?}"),
    }
}

/// The token of a `Ready`.
pub fn ready(step: &TokenStep) -> String {
    match step {
        TokenStep::Ready { token, .. } => token.expose().to_owned(),
        other => panic!("expected a token, got {other:?}"),
    }
}

pub fn serial(step: &TokenStep) -> u32 {
    match step {
        TokenStep::Ready { serial, .. } => *serial,
        other => panic!("expected a token, got {other:?}"),
    }
}

/// The error of a step that fails at once.
pub fn fail(step: Step) -> AuthError {
    match step {
        Step::Fail(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

pub fn token_fail(step: TokenStep) -> AuthError {
    match step {
        TokenStep::Fail(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// What a waiter passes back to `token()` after its flight ended.
pub fn waited(outcome: &Outcome) -> Waited {
    match outcome {
        Outcome::Done | Outcome::Nothing => Waited::Done,
        Outcome::Failed(e) => Waited::Failed {
            retryable: e.retryable(),
        },
        Outcome::Again => Waited::Nothing,
    }
}
