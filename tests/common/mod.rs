//! The native test harness of the session: a fake clock with timers, a driver that advances
//! it only when every task is stuck, a scripted fake of the provider's server that records
//! every request, a fake `TokenStorage`, and the `Platform` that ties them to the core.
//!
//! Nothing here sleeps for real: time moves only when the driver finds no task that can make
//! progress, and then straight to the next deadline, so a test of a 25-day timer takes
//! microseconds and every delay can be asserted to the millisecond.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::{pin, Pin};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use auth_session::core::envelope::{self, TokenPair};
use auth_session::core::json::{self, Json};
use auth_session::core::rfc3339::{civil_from_days, format_rfc3339};
use auth_session::core::secret::{AccessToken, RefreshToken};
use auth_session::core::session::Fetched;
use auth_session::core::{
    Abort, AuthError, Credentials, ErrorCode, Event, Incoming, LocalFuture, Options, Outgoing, OutgoingBody, Platform,
    Session, SessionInfo, Storage,
};
use futures::executor::{LocalPool, LocalSpawner};
use futures::task::{ArcWake, LocalSpawnExt};

/// 2024-01-15T09:30:00Z, the guide's example day: the fake clock starts here.
pub const EPOCH: i64 = 1_705_311_000_000;
pub const HOST: &str = "https://api.test";
pub const PRODUCTS: &str = "/api/v1/products";
pub const USER: &str = "alice";
/// Every secret the suite handles carries this marker, so one search finds any leak.
pub const CANARY: &str = "CANARY";
pub const PASSWORD: &str = "pw-CANARY-hunter2";
pub const HOUR: i64 = 3_600_000;
pub const DAY: i64 = 24 * HOUR;

// ----- the fake clock ----------------------------------------------------------------------

struct SleepSlot {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

enum Deadline {
    Sleep(Rc<SleepSlot>),
    Timer(Box<dyn FnOnce()>),
}

type Key = (i64, u64);

/// A `sleep(ms)`: resolves when the driver's clock reaches its deadline; dropping it cancels.
struct Sleep {
    slot: Rc<SleepSlot>,
    world: Weak<World>,
    key: Key,
}

impl Future for Sleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.slot.fired.get() {
            return Poll::Ready(());
        }
        *self.slot.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(world) = self.world.upgrade() {
            world.deadlines.borrow_mut().remove(&self.key);
        }
    }
}

/// The auto-refresh timer handle: dropping it cancels the callback.
pub struct TestTimer {
    world: Weak<World>,
    key: Key,
}

impl Drop for TestTimer {
    fn drop(&mut self) {
        if let Some(world) = self.world.upgrade() {
            world.deadlines.borrow_mut().remove(&self.key);
        }
    }
}

// ----- the scripted server -----------------------------------------------------------------

/// One request as the server saw it. `bearer` is the plain token, for assertions.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub url: String,
    pub path: String,
    pub method: String,
    pub bearer: Option<String>,
    pub body: Option<String>,
    pub at_ms: i64,
}

impl Recorded {
    /// The `refresh_token` of a refresh or revoke body.
    pub fn refresh_token(&self) -> Option<String> {
        let doc = json::parse(self.body.as_deref()?.as_bytes()).ok()?;
        doc.get("refresh_token")?.as_str().map(str::to_owned)
    }

    /// Time since the fake epoch, in ms.
    pub fn t(&self) -> i64 {
        self.at_ms - EPOCH
    }
}

#[derive(Clone, Debug)]
enum ReplyKind {
    /// The fake server answers (and changes its state) as PROTOCOL.md says.
    Server,
    Fixed,
    NetworkError,
    /// No answer, ever (until the caller's timeout drops the request).
    Hang,
}

/// A scripted answer for the next request to a path.
#[derive(Clone, Debug)]
pub struct Reply {
    kind: ReplyKind,
    pub status: u16,
    pub body: Vec<u8>,
    pub retry_after: Option<String>,
    pub date: Option<String>,
    pub location: Option<String>,
    pub opaque_redirect: bool,
    /// The answer arrives after this much fake time.
    pub delay_ms: u32,
}

impl Reply {
    fn of(kind: ReplyKind, status: u16, body: &[u8]) -> Self {
        Reply {
            kind,
            status,
            body: body.to_vec(),
            retry_after: None,
            date: None,
            location: None,
            opaque_redirect: false,
            delay_ms: 0,
        }
    }
    /// Let the fake server answer (the state change happens when the request arrives).
    pub fn server() -> Self {
        Reply::of(ReplyKind::Server, 0, b"")
    }
    pub fn status(status: u16) -> Self {
        Reply::of(ReplyKind::Fixed, status, b"")
    }
    pub fn json(status: u16, body: &str) -> Self {
        Reply::of(ReplyKind::Fixed, status, body.as_bytes())
    }
    pub fn bytes(status: u16, body: Vec<u8>) -> Self {
        Reply {
            body,
            ..Reply::of(ReplyKind::Fixed, status, b"")
        }
    }
    /// The server's error envelope.
    pub fn error(status: u16, name: &str, code: &str, message: &str) -> Self {
        let mut body = String::from("{\"error\":{\"name\":");
        json::write_string(&mut body, name);
        body.push_str(",\"code\":");
        json::write_string(&mut body, code);
        body.push_str(",\"message\":");
        json::write_string(&mut body, message);
        body.push_str("}}");
        Reply::json(status, &body)
    }
    pub fn unauthorized() -> Self {
        Reply::error(401, "UnauthorizedError", "UNAUTHORIZED", "Invalid or expired token")
    }
    pub fn redirect(status: u16, location: &str) -> Self {
        Reply {
            location: Some(location.to_owned()),
            ..Reply::status(status)
        }
    }
    pub fn network_error() -> Self {
        Reply::of(ReplyKind::NetworkError, 0, b"")
    }
    pub fn hang() -> Self {
        Reply::of(ReplyKind::Hang, 0, b"")
    }
    pub fn delay(mut self, ms: u32) -> Self {
        self.delay_ms = ms;
        self
    }
    pub fn retry_after(mut self, value: &str) -> Self {
        self.retry_after = Some(value.to_owned());
        self
    }
    pub fn date(mut self, value: &str) -> Self {
        self.date = Some(value.to_owned());
        self
    }
    pub fn opaque(mut self) -> Self {
        self.opaque_redirect = true;
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshState {
    Live,
    Spent,
    Revoked,
}

/// The provider as PROTOCOL.md describes it: login, rotating refresh, revoke, and protected
/// endpoints that want a current access token. Tokens are numbered and carry the canary.
pub struct FakeServer {
    pub access_ttl_ms: i64,
    pub refresh_ttl_ms: i64,
    /// The server's clock minus the fake local clock.
    pub skew_ms: i64,
    /// Send a `Date` header with every answer of the fake server.
    pub send_date: bool,
    pub client_id: i64,
    issued: u64,
    /// access token → expiry (server time), revoked flag
    pub access: HashMap<String, (i64, bool)>,
    /// refresh token → expiry (server time), state
    pub refresh: HashMap<String, (i64, RefreshState)>,
    /// Refresh requests that carried a token already spent (must stay 0).
    pub spent_reuse: u32,
    /// Every pair issued, in order (pair n is `pairs[n - 1]`).
    pub pairs: Vec<IssuedPair>,
}

impl FakeServer {
    fn new() -> Self {
        FakeServer {
            access_ttl_ms: HOUR,
            refresh_ttl_ms: 7 * DAY,
            skew_ms: 0,
            send_date: false,
            client_id: 123_456,
            issued: 0,
            access: HashMap::new(),
            refresh: HashMap::new(),
            spent_reuse: 0,
            pairs: Vec::new(),
        }
    }

    /// Issues a new pair at server time `now` and returns it.
    pub fn issue(&mut self, now: i64) -> IssuedPair {
        self.issued += 1;
        let n = self.issued;
        let pair = IssuedPair {
            access: format!("at.{CANARY}.{n}"),
            refresh: format!("rt.{CANARY}.{n}"),
            access_expires_at: now + self.access_ttl_ms,
            refresh_expires_at: now + self.refresh_ttl_ms,
            client_id: self.client_id,
        };
        self.access.insert(pair.access.clone(), (pair.access_expires_at, false));
        self.refresh
            .insert(pair.refresh.clone(), (pair.refresh_expires_at, RefreshState::Live));
        self.pairs.push(pair.clone());
        pair
    }

    /// What another process does: spends `refresh` and gets a new pair (None if refused).
    pub fn rotate(&mut self, refresh: &str, now: i64) -> Option<IssuedPair> {
        match self.refresh.get_mut(refresh) {
            Some((exp, state)) if *state == RefreshState::Live && now < *exp => {
                *state = RefreshState::Spent;
            }
            Some((_, RefreshState::Spent)) => {
                self.spent_reuse += 1;
                return None;
            }
            _ => return None,
        }
        Some(self.issue(now))
    }

    /// Revokes every token issued so far (the family is dead).
    pub fn revoke_everything(&mut self) {
        for v in self.access.values_mut() {
            v.1 = true;
        }
        for v in self.refresh.values_mut() {
            if v.1 == RefreshState::Live {
                v.1 = RefreshState::Revoked;
            }
        }
    }

    pub fn access_valid(&self, token: &str, now: i64) -> bool {
        matches!(self.access.get(token), Some((exp, false)) if now < *exp)
    }

    fn answer(&mut self, req: &Recorded, now: i64) -> (u16, String) {
        let body = req.body.as_deref().map(|b| json::parse(b.as_bytes()));
        let field = |name: &str| -> Option<String> {
            match &body {
                Some(Ok(doc)) => doc.get(name).and_then(Json::as_str).map(str::to_owned),
                _ => None,
            }
        };
        let unauthorized = || {
            (
                401,
                r#"{"error":{"name":"UnauthorizedError","code":"UNAUTHORIZED","message":"Invalid or expired token"}}"#
                    .to_owned(),
            )
        };
        if !req.url.starts_with(HOST) {
            // Another origin: a plain API that says who called.
            return (200, r#"{"success":true,"data":{"other":true}}"#.to_owned());
        }
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/auth/login") => {
                if matches!(&body, Some(Err(_))) {
                    return (
                        400,
                        r#"{"error":{"name":"SyntaxError","code":"SYNTAX_ERROR","message":"Invalid JSON"}}"#.into(),
                    );
                }
                if field("username").as_deref() == Some(USER) && field("password").as_deref() == Some(PASSWORD) {
                    (200, self.issue(now).envelope())
                } else {
                    (401, r#"{"error":{"name":"UnauthorizedError","code":"UNAUTHORIZED","message":"Invalid credentials"}}"#.into())
                }
            }
            ("POST", "/auth/refresh") => match field("refresh_token").and_then(|t| self.rotate(&t, now)) {
                Some(pair) => (200, pair.envelope()),
                None => unauthorized(),
            },
            ("POST", "/auth/revoke") => {
                if let Some(t) = field("refresh_token") {
                    if let Some(v) = self.refresh.get_mut(&t) {
                        v.1 = RefreshState::Revoked;
                    }
                }
                if let Some(b) = &req.bearer {
                    if let Some(v) = self.access.get_mut(b) {
                        v.1 = true;
                    }
                }
                (200, r#"{"success":true,"data":{"revoked":true}}"#.to_owned())
            }
            (_, p) if p.starts_with("/api/") => match &req.bearer {
                Some(b) if self.access_valid(b, now) => {
                    (200, r#"{"success":true,"data":[{"id":1,"name":"widget"}]}"#.to_owned())
                }
                _ => unauthorized(),
            },
            _ => (
                404,
                r#"{"error":{"name":"NotFound","code":"NOT_FOUND","message":"no such route"}}"#.to_owned(),
            ),
        }
    }
}

/// A token pair as issued by the fake server (times are the server's).
#[derive(Clone, Debug)]
pub struct IssuedPair {
    pub access: String,
    pub refresh: String,
    pub access_expires_at: i64,
    pub refresh_expires_at: i64,
    pub client_id: i64,
}

impl IssuedPair {
    pub fn data(&self) -> String {
        format!(
            r#"{{"access_token":"{}","refresh_token":"{}","access_expires_at":"{}","refresh_expires_at":"{}","client_id":{}}}"#,
            self.access,
            self.refresh,
            format_rfc3339(self.access_expires_at),
            format_rfc3339(self.refresh_expires_at),
            self.client_id
        )
    }
    pub fn envelope(&self) -> String {
        format!(r#"{{"success":true,"data":{}}}"#, self.data())
    }
    /// The storage record the session would write for this pair.
    pub fn record(&self) -> String {
        envelope::write_record(&TokenPair {
            access_token: AccessToken::parse(&self.access).unwrap(),
            refresh_token: RefreshToken::parse(&self.refresh).unwrap(),
            access_expires_at: self.access_expires_at,
            refresh_expires_at: self.refresh_expires_at,
            client_id: Some(self.client_id),
        })
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

// ----- the world: clock, executor hooks, server, records ------------------------------------

/// An `on(…)` listener.
type Listener = Rc<dyn Fn(&Event)>;

pub struct World {
    now: Cell<i64>,
    seq: Cell<u64>,
    deadlines: RefCell<BTreeMap<Key, Deadline>>,
    spawner: LocalSpawner,
    random: Cell<f64>,
    pub server: RefCell<FakeServer>,
    scripts: RefCell<HashMap<String, VecDeque<Reply>>>,
    requests: RefCell<Vec<Recorded>>,
    events: RefCell<Vec<Event>>,
    listener: RefCell<Option<Listener>>,
    /// Every error a test looked at, formatted with `{}` and `{:?}` (checked for secrets).
    seen: RefCell<Vec<String>>,
    pub bodies_read: Cell<u32>,
    pub bodies_discarded: Cell<u32>,
}

impl World {
    pub fn now(&self) -> i64 {
        self.now.get()
    }

    fn add_deadline(&self, ms: u32, d: Deadline) -> Key {
        let seq = self.seq.get() + 1;
        self.seq.set(seq);
        let key = (self.now() + i64::from(ms), seq);
        self.deadlines.borrow_mut().insert(key, d);
        key
    }

    fn sleep(self: &Rc<Self>, ms: u32) -> Sleep {
        let slot = Rc::new(SleepSlot {
            fired: Cell::new(false),
            waker: RefCell::new(None),
        });
        let key = self.add_deadline(ms, Deadline::Sleep(slot.clone()));
        Sleep {
            slot,
            world: Rc::downgrade(self),
            key,
        }
    }

    /// Fires the earliest deadline at or before `limit` (any, without a limit), moving the
    /// clock to it. False when there is none.
    fn fire_next(&self, limit: Option<i64>) -> bool {
        let next = {
            let mut d = self.deadlines.borrow_mut();
            match d.keys().next().copied() {
                Some(k) if limit.map_or(true, |l| k.0 <= l) => d.remove(&k).map(|v| (k, v)),
                _ => None,
            }
        };
        let Some(((at, _), deadline)) = next else { return false };
        if at > self.now() {
            self.now.set(at);
        }
        match deadline {
            Deadline::Sleep(slot) => {
                slot.fired.set(true);
                let waker = slot.waker.borrow_mut().take();
                if let Some(w) = waker {
                    w.wake();
                }
            }
            Deadline::Timer(callback) => callback(),
        }
        true
    }

    pub fn note(&self, text: String) {
        self.seen.borrow_mut().push(text);
    }
}

// ----- the platform --------------------------------------------------------------------------

/// A user's API request (the body is cloned per attempt, as the wasm layer clones a Request).
#[derive(Clone, Debug, Default)]
pub struct ApiReq {
    pub body: Option<String>,
}

/// An unread response body.
#[derive(Debug)]
pub struct TestBody(pub Vec<u8>);

pub struct TestPlatform {
    world: Rc<World>,
}

fn path_of(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    let path = path.split(['?', '#']).next().unwrap_or("/");
    path.to_owned()
}

impl Platform for TestPlatform {
    type Body = TestBody;
    type Request = ApiReq;
    type Timer = TestTimer;

    fn send(&self, request: Outgoing<'_, ApiReq>) -> LocalFuture<Result<Incoming<TestBody>, AuthError>> {
        let w = &self.world;
        let body = match request.body {
            OutgoingBody::Json(text) => Some(text.to_owned()),
            OutgoingBody::Api { request, drop_body } => {
                if drop_body {
                    None
                } else {
                    request.body.clone()
                }
            }
        };
        let rec = Recorded {
            url: request.url.to_owned(),
            path: path_of(request.url),
            method: request.method.to_owned(),
            bearer: request.bearer.map(|t| t.expose().to_owned()),
            body,
            at_ms: w.now(),
        };
        w.requests.borrow_mut().push(rec.clone());
        let scripted = w.scripts.borrow_mut().get_mut(&rec.path).and_then(VecDeque::pop_front);
        let reply = scripted.unwrap_or_else(Reply::server);
        let (status, bytes, date) = match reply.kind {
            ReplyKind::Hang => return Box::pin(std::future::pending()),
            ReplyKind::NetworkError => {
                let sleep = w.sleep(reply.delay_ms);
                return Box::pin(async move {
                    sleep.await;
                    Err(AuthError::new(ErrorCode::Network, "connection refused (fake)"))
                });
            }
            ReplyKind::Fixed => (reply.status, reply.body.clone(), reply.date.clone()),
            ReplyKind::Server => {
                let mut server = w.server.borrow_mut();
                let server_now = w.now() + server.skew_ms;
                let (status, body) = server.answer(&rec, server_now);
                let date = reply
                    .date
                    .clone()
                    .or_else(|| server.send_date.then(|| http_date(server_now)));
                (status, body.into_bytes(), date)
            }
        };
        let incoming = Incoming {
            status,
            opaque_redirect: reply.opaque_redirect,
            location: reply.location.clone(),
            retry_after: reply.retry_after.clone(),
            date,
            body: TestBody(bytes),
        };
        let sleep = w.sleep(reply.delay_ms);
        Box::pin(async move {
            sleep.await;
            Ok(incoming)
        })
    }

    fn read_body(&self, body: TestBody, limit: usize) -> LocalFuture<Result<Vec<u8>, AuthError>> {
        self.world.bodies_read.set(self.world.bodies_read.get() + 1);
        let result = if body.0.len() > limit {
            Err(AuthError::new(
                ErrorCode::ResponseTooLarge,
                format!("the response is larger than {limit} bytes"),
            ))
        } else {
            Ok(body.0)
        };
        Box::pin(std::future::ready(result))
    }

    fn discard(&self, _body: TestBody) {
        self.world.bodies_discarded.set(self.world.bodies_discarded.get() + 1);
    }

    fn now_ms(&self) -> i64 {
        self.world.now()
    }

    fn random(&self) -> f64 {
        self.world.random.get()
    }

    fn sleep(&self, ms: u32) -> LocalFuture<()> {
        Box::pin(self.world.sleep(ms))
    }

    fn set_timer(&self, ms: u32, callback: Box<dyn FnOnce()>) -> TestTimer {
        let key = self.world.add_deadline(ms, Deadline::Timer(callback));
        TestTimer {
            world: Rc::downgrade(&self.world),
            key,
        }
    }

    fn spawn(&self, task: LocalFuture<()>) {
        self.world.spawner.spawn_local(task).expect("spawn");
    }

    fn emit(&self, event: Event) {
        self.world.events.borrow_mut().push(event.clone());
        // Listeners run synchronously, as JavaScript listeners do, and may call back in.
        let listener = self.world.listener.borrow().clone();
        if let Some(listener) = listener {
            listener(&event);
        }
    }
}

// ----- the storage ---------------------------------------------------------------------------

/// A `TokenStorage` over a map, with counters and switchable failures.
#[derive(Default)]
pub struct FakeStorage {
    pub map: RefCell<HashMap<String, String>>,
    pub gets: Cell<u32>,
    pub puts: Cell<u32>,
    pub deletes: Cell<u32>,
    pub fail_get: Cell<bool>,
    pub fail_put: Cell<bool>,
    pub fail_delete: Cell<bool>,
}

fn storage_error(op: &str) -> AuthError {
    AuthError::new(ErrorCode::Storage, format!("storage.{op} failed (fake)"))
}

impl FakeStorage {
    pub fn get_now(&self, key: &str) -> Option<String> {
        self.map.borrow().get(key).cloned()
    }
}

impl Storage for FakeStorage {
    fn get(&self, key: &str) -> LocalFuture<Result<Option<String>, AuthError>> {
        self.gets.set(self.gets.get() + 1);
        let r = if self.fail_get.get() {
            Err(storage_error("get"))
        } else {
            Ok(self.map.borrow().get(key).cloned())
        };
        Box::pin(std::future::ready(r))
    }
    fn put(&self, key: &str, value: String) -> LocalFuture<Result<(), AuthError>> {
        self.puts.set(self.puts.get() + 1);
        let r = if self.fail_put.get() {
            Err(storage_error("put"))
        } else {
            self.map.borrow_mut().insert(key.to_owned(), value);
            Ok(())
        };
        Box::pin(std::future::ready(r))
    }
    fn delete(&self, key: &str) -> LocalFuture<Result<(), AuthError>> {
        self.deletes.set(self.deletes.get() + 1);
        let r = if self.fail_delete.get() {
            Err(storage_error("delete"))
        } else {
            self.map.borrow_mut().remove(key);
            Ok(())
        };
        Box::pin(std::future::ready(r))
    }
}

// ----- abort signals -------------------------------------------------------------------------

#[derive(Default)]
struct AbortShared {
    fired: Cell<bool>,
    wakers: RefCell<Vec<Waker>>,
}

/// Fires the `Abort` it was made with.
pub struct AbortTrigger(Rc<AbortShared>);

impl AbortTrigger {
    pub fn fire(&self) {
        self.0.fired.set(true);
        for w in self.0.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

struct AbortFired(Rc<AbortShared>);

impl Future for AbortFired {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.fired.get() {
            Poll::Ready(())
        } else {
            self.0.wakers.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        }
    }
}

/// An abort signal and the switch that fires it.
pub fn abort_pair() -> (Abort, AbortTrigger) {
    let shared = Rc::new(AbortShared::default());
    (Abort::new(Box::pin(AbortFired(shared.clone()))), AbortTrigger(shared))
}

// ----- tasks ---------------------------------------------------------------------------------

struct TaskSlot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

/// A spawned task's outcome: poll `done()`/`take()`, or await it.
pub struct Task<T>(Rc<RefCell<TaskSlot<T>>>);

impl<T> Task<T> {
    pub fn done(&self) -> bool {
        self.0.borrow().value.is_some()
    }
    /// The result; panics if the task has not finished.
    pub fn take(&self) -> T {
        self.0.borrow_mut().value.take().expect("the task has not finished")
    }
}

impl<T> Future for Task<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut slot = self.0.borrow_mut();
        match slot.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

struct Flag(AtomicBool);

impl ArcWake for Flag {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.0.store(true, Ordering::SeqCst);
    }
}

// ----- the harness ---------------------------------------------------------------------------

pub type TestSession = Session<TestPlatform>;

pub fn options() -> Options {
    Options {
        host: Some(HOST.to_owned()),
        ..Options::default()
    }
}

pub fn creds() -> Credentials {
    Credentials {
        username: USER.to_owned(),
        password: auth_session::core::secret::Password::new(PASSWORD),
    }
}

pub fn with_credentials(o: &mut Options) {
    o.credentials = Some((USER.to_owned(), auth_session::core::secret::Password::new(PASSWORD)));
}

/// One fake world (clock, executor, server) with a session in it.
pub struct Harness {
    pool: RefCell<LocalPool>,
    pub world: Rc<World>,
    pub session: TestSession,
    pub storage: Option<Rc<FakeStorage>>,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

impl Harness {
    pub fn new() -> Self {
        Harness::build(|_| {}, false)
    }

    /// A harness whose options are first changed by `f`.
    pub fn with(f: impl FnOnce(&mut Options)) -> Self {
        Harness::build(f, false)
    }

    /// Like [`Harness::with`], with a fake storage.
    pub fn with_storage(f: impl FnOnce(&mut Options)) -> Self {
        Harness::build(f, true)
    }

    pub fn build(f: impl FnOnce(&mut Options), storage: bool) -> Self {
        let pool = LocalPool::new();
        let world = Rc::new(World {
            now: Cell::new(EPOCH),
            seq: Cell::new(0),
            deadlines: RefCell::new(BTreeMap::new()),
            spawner: pool.spawner(),
            random: Cell::new(0.5),
            server: RefCell::new(FakeServer::new()),
            scripts: RefCell::new(HashMap::new()),
            requests: RefCell::new(Vec::new()),
            events: RefCell::new(Vec::new()),
            listener: RefCell::new(None),
            seen: RefCell::new(Vec::new()),
            bodies_read: Cell::new(0),
            bodies_discarded: Cell::new(0),
        });
        let storage = storage.then(|| Rc::new(FakeStorage::default()));
        let session = make_session(&world, &storage, f);
        Harness {
            pool: RefCell::new(pool),
            world,
            session,
            storage,
        }
    }

    /// Another session in the same world, sharing the server, the clock and the storage
    /// (another process or isolate of the same application).
    pub fn new_session(&self, f: impl FnOnce(&mut Options)) -> TestSession {
        make_session(&self.world, &self.storage, f)
    }

    // ----- driving ---------------------------------------------------------------------------

    /// Drives `fut` to completion: runs every task until none can progress, then moves the
    /// clock to the next deadline. Panics on a deadlock (pending with nothing scheduled).
    pub fn run<F: Future>(&self, fut: F) -> F::Output {
        let mut fut = pin!(fut);
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = futures::task::waker(flag.clone());
        let mut cx = Context::from_waker(&waker);
        for _ in 0..1_000_000 {
            flag.0.store(false, Ordering::SeqCst);
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                self.run_until_stalled();
                return v;
            }
            self.run_until_stalled();
            if flag.0.load(Ordering::SeqCst) {
                continue;
            }
            if !self.world.fire_next(None) {
                panic!("deadlock: future pending with no timer");
            }
        }
        panic!("run: the future did not finish after a million steps");
    }

    /// Runs every task that can progress, without moving the clock.
    pub fn run_until_stalled(&self) {
        self.pool.borrow_mut().run_until_stalled();
    }

    /// Moves the clock forward by `ms`, firing every deadline on the way in order.
    pub fn advance(&self, ms: i64) {
        let target = self.now() + ms;
        self.run_until_stalled();
        while self.world.fire_next(Some(target)) {
            self.run_until_stalled();
        }
        self.world.now.set(target);
        self.run_until_stalled();
    }

    /// Moves the clock without firing anything (a process that was asleep).
    pub fn jump(&self, ms: i64) {
        self.world.now.set(self.now() + ms);
    }

    /// Spawns a task on the pool; its result is kept in the returned [`Task`].
    pub fn spawn<T: 'static>(&self, fut: impl Future<Output = T> + 'static) -> Task<T> {
        let slot = Rc::new(RefCell::new(TaskSlot {
            value: None,
            waker: None,
        }));
        let out = slot.clone();
        self.world
            .spawner
            .spawn_local(async move {
                let v = fut.await;
                let waker = {
                    let mut s = out.borrow_mut();
                    s.value = Some(v);
                    s.waker.take()
                };
                if let Some(w) = waker {
                    w.wake();
                }
            })
            .expect("spawn");
        Task(slot)
    }

    pub fn now(&self) -> i64 {
        self.world.now()
    }

    /// Fake time elapsed since the epoch.
    pub fn elapsed(&self) -> i64 {
        self.now() - EPOCH
    }

    pub fn set_random(&self, r: f64) {
        self.world.random.set(r);
    }

    // ----- the server --------------------------------------------------------------------------

    /// Queues an answer for the next request to `path` (the fake server answers otherwise).
    pub fn script(&self, path: &str, reply: Reply) {
        self.world
            .scripts
            .borrow_mut()
            .entry(path.to_owned())
            .or_default()
            .push_back(reply);
    }

    pub fn script_n(&self, path: &str, n: usize, reply: Reply) {
        for _ in 0..n {
            self.script(path, reply.clone());
        }
    }

    pub fn clear_scripts(&self) {
        self.world.scripts.borrow_mut().clear();
    }

    pub fn server(&self) -> std::cell::RefMut<'_, FakeServer> {
        self.world.server.borrow_mut()
    }

    /// The n-th pair the fake server issued (from 1).
    pub fn pair(&self, n: usize) -> IssuedPair {
        self.world.server.borrow().pairs[n - 1].clone()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.world.requests.borrow().clone()
    }

    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.world
            .requests
            .borrow()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    pub fn count(&self, path: &str) -> usize {
        self.world.requests.borrow().iter().filter(|r| r.path == path).count()
    }

    pub fn total_requests(&self) -> usize {
        self.world.requests.borrow().len()
    }

    // ----- timers and events -------------------------------------------------------------------

    /// Auto-refresh timers still scheduled (sleeps excluded).
    pub fn live_timers(&self) -> usize {
        self.world
            .deadlines
            .borrow()
            .values()
            .filter(|d| matches!(d, Deadline::Timer(_)))
            .count()
    }

    /// How far ahead each scheduled timer is, in ms.
    pub fn timer_delays(&self) -> Vec<i64> {
        let now = self.now();
        self.world
            .deadlines
            .borrow()
            .iter()
            .filter(|(_, d)| matches!(d, Deadline::Timer(_)))
            .map(|((at, _), _)| at - now)
            .collect()
    }

    pub fn pending_sleeps(&self) -> usize {
        self.world
            .deadlines
            .borrow()
            .values()
            .filter(|d| matches!(d, Deadline::Sleep(_)))
            .count()
    }

    pub fn events(&self) -> Vec<Event> {
        self.world.events.borrow().clone()
    }

    /// Calls `f` synchronously for every event, like an `on(…)` listener.
    pub fn on_event(&self, f: impl Fn(&Event) + 'static) {
        *self.world.listener.borrow_mut() = Some(Rc::new(f));
    }

    pub fn clear_events(&self) {
        self.world.events.borrow_mut().clear();
    }

    /// Events by kind: "tokens", "expired", "revoked", "error".
    pub fn event_count(&self, kind: &str) -> usize {
        self.world
            .events
            .borrow()
            .iter()
            .filter(|e| event_kind(e) == kind)
            .count()
    }

    pub fn error_events(&self) -> Vec<AuthError> {
        self.world
            .events
            .borrow()
            .iter()
            .filter_map(|e| match e {
                Event::Error(err) => Some(err.clone()),
                _ => None,
            })
            .collect()
    }

    // ----- session shortcuts -------------------------------------------------------------------

    pub fn info(&self) -> SessionInfo {
        let info = self.session.info();
        self.world.note(format!("{info:?}"));
        info
    }

    /// Logs in with the fake server's user; panics on failure.
    pub fn login(&self) -> SessionInfo {
        self.run(self.session.login(Some(creds()))).expect("login")
    }

    /// `getAccessToken()`, as a plain string.
    pub fn token(&self) -> Result<String, AuthError> {
        let r = self.run(async { self.session.access_token(&mut Abort::none()).await });
        self.check(r.map(|t| t.expose().to_owned()))
    }

    /// `refresh()`, no abort.
    pub fn refresh(&self) -> Result<SessionInfo, AuthError> {
        let r = self.run(async { self.session.refresh(&mut Abort::none()).await });
        self.check(r)
    }

    pub fn revoke(&self) -> Result<(), AuthError> {
        let r = self.run(self.session.revoke());
        self.check(r)
    }

    /// `fetch(path)` with GET, no abort.
    pub fn get(&self, path: &str) -> Result<Fetched<TestBody>, AuthError> {
        self.fetch("GET", path, None, Abort::none())
    }

    pub fn fetch(
        &self,
        method: &str,
        input: &str,
        body: Option<&str>,
        abort: Abort,
    ) -> Result<Fetched<TestBody>, AuthError> {
        let url = self.session.resolve(input);
        let req = ApiReq {
            body: body.map(str::to_owned),
        };
        let r = self.run(self.session.fetch(req, url, method.to_owned(), abort));
        self.check(r)
    }

    /// A spawned `fetch` (GET), for concurrency tests.
    pub fn spawn_get(&self, path: &str) -> Task<Result<Fetched<TestBody>, AuthError>> {
        let s = self.session.clone();
        let url = s.resolve(path);
        self.spawn(async move { s.fetch(ApiReq::default(), url, "GET".into(), Abort::none()).await })
    }

    /// A spawned `getAccessToken()`.
    pub fn spawn_token(&self) -> Task<Result<String, AuthError>> {
        let s = self.session.clone();
        self.spawn(async move { s.access_token(&mut Abort::none()).await.map(|t| t.expose().to_owned()) })
    }

    /// Notes an error (or passes a success through) so the final secret check sees it.
    pub fn check<T>(&self, r: Result<T, AuthError>) -> Result<T, AuthError> {
        if let Err(e) = &r {
            self.world.note(format!("{e} {e:?}"));
        }
        r
    }

    /// The error of `r`; panics on success.
    pub fn err<T>(&self, r: Result<T, AuthError>) -> AuthError {
        match self.check(r) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e,
        }
    }

    pub fn storage(&self) -> &FakeStorage {
        self.storage.as_deref().expect("a harness with storage")
    }

    pub fn storage_key(&self) -> String {
        self.session.config().storage_key.clone()
    }

    pub fn stored(&self) -> Option<String> {
        self.storage().get_now(&self.storage_key())
    }

    /// Every formatted error and event this harness saw (for the secret checks).
    pub fn everything_printed(&self) -> Vec<String> {
        let mut out = self.world.seen.borrow().clone();
        for e in self.world.events.borrow().iter() {
            out.push(format!("{e:?}"));
            if let Event::Error(err) = e {
                out.push(format!("{err}"));
            }
        }
        out.push(format!("{:?}", self.session.info()));
        out
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        // Every test doubles as a secrecy test: nothing it printed may hold a secret.
        for text in self.everything_printed() {
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

pub fn event_kind(e: &Event) -> &'static str {
    match e {
        Event::Tokens(_) => "tokens",
        Event::Expired(_) => "expired",
        Event::Revoked(_) => "revoked",
        Event::Error(_) => "error",
    }
}

/// The access token of the n-th pair the fake server issued.
pub fn at(n: u32) -> String {
    format!("at.{CANARY}.{n}")
}

/// The refresh token of the n-th pair the fake server issued.
pub fn rt(n: u32) -> String {
    format!("rt.{CANARY}.{n}")
}

fn make_session(world: &Rc<World>, storage: &Option<Rc<FakeStorage>>, f: impl FnOnce(&mut Options)) -> TestSession {
    let mut o = options();
    f(&mut o);
    let config = o.validate().expect("valid options");
    let storage = storage.clone().map(|s| s as Rc<dyn Storage>);
    Session::new(TestPlatform { world: world.clone() }, config, storage)
}
