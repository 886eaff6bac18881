//! The session: state machine, single-flight refresh, 401 replay, retries, revoke.
//!
//! States: `Anonymous` (never logged in), `Active` (a token pair is held), `Expired` (the
//! refresh token was rejected or ran out), `Revoked` (the user revoked). Disposal is a flag
//! on top: every call after it fails with DISPOSED.
//!
//! Concurrency model: one JavaScript thread, state in a `RefCell` that is never borrowed
//! across an `.await`. Login and refresh run as *flights*: a spawned task that performs the
//! call and applies its result, while any number of callers wait on the [`Flight`]. A
//! generation counter, bumped by `login`, `revoke`, `restore` and `dispose`, marks flights
//! started before them as stale: a stale flight's tokens are never applied (after a revoke
//! they are revoked on the server too), and its waiters simply look at the session again.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use crate::core::config::{Config, Credentials, MAX_AUTH_RESPONSE_BYTES};
use crate::core::envelope::{self, parse_token_pair, read_auth_response, TokenPair};
use crate::core::error::{AuthError, ErrorCode};
use crate::core::flight::Flight;
use crate::core::json::Json;
use crate::core::platform::{Event, Incoming, LocalFuture, Outgoing, OutgoingBody, Platform, Storage};
use crate::core::race::{race, Either};
use crate::core::retry::{self, backoff_ms, RetryAfter};
use crate::core::secret::{AccessToken, RefreshToken};
use crate::core::timing::{clock_skew, effective_margin, retry_delay, timer_delay};
use crate::core::url::parse_absolute;

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

/// The caller's abort signal, as a future that resolves when it fires.
pub struct Abort(Option<LocalFuture<()>>);

impl Abort {
    pub fn none() -> Self {
        Abort(None)
    }

    pub fn new(fired: LocalFuture<()>) -> Self {
        Abort(Some(fired))
    }

    /// Runs `work` unless the signal fires first, in which case `work` is dropped (a request
    /// aborts; a shared flight goes on for the others) and the result is ABORTED.
    pub async fn guard<F>(&mut self, work: F) -> Result<F::Output, AuthError>
    where
        F: std::future::Future + Unpin,
    {
        match &mut self.0 {
            None => Ok(work.await),
            Some(fired) => match race(work, fired.as_mut()).await {
                Either::Left(out) => Ok(out),
                Either::Right(()) => Err(aborted()),
            },
        }
    }
}

pub fn aborted() -> AuthError {
    AuthError::new(ErrorCode::Aborted, "the operation was aborted by its AbortSignal")
}

/// A response to a user's API request, with the time its attempt started (json() bounds the
/// body read by what is left of the same attempt's timeout).
pub struct Fetched<B> {
    pub response: Incoming<B>,
    pub attempt_started_ms: i64,
}

/// A token pair as held: the server's pair plus local-clock deadlines.
struct Held {
    pair: TokenPair,
    access_expires_local: i64,
    refresh_expires_local: i64,
    margin_ms: i64,
}

struct State<T> {
    phase: Phase,
    disposed: bool,
    held: Option<Held>,
    generation: u64,
    flight: Option<Flight>,
    timer: Option<T>,
    /// A storage write in progress, so `background_work` can hand it to `waitUntil`.
    persisting: Option<Flight>,
    /// The server's clock minus ours.
    skew_ms: i64,
}

struct Shared<P: Platform> {
    platform: P,
    config: Config,
    storage: Option<Rc<dyn Storage>>,
    state: RefCell<State<P::Timer>>,
}

/// An authenticated session against one API host.
pub struct Session<P: Platform> {
    shared: Rc<Shared<P>>,
}

impl<P: Platform> Clone for Session<P> {
    fn clone(&self) -> Self {
        Session {
            shared: self.shared.clone(),
        }
    }
}

enum FlightKind {
    Login(Credentials),
    Refresh,
}

/// What `ensure_token` decided while holding the state.
enum Step {
    Ready(AccessToken),
    Wait(Flight),
    Fail(AuthError),
}

/// A successful auth call: the envelope's `data` and the clock offset its `Date` showed.
struct AuthReply {
    data: Json,
    skew: Option<i64>,
    status: u16,
}

/// A failed auth attempt, with the `Retry-After` that came with it.
type AttemptError = (AuthError, Option<String>);

const MAX_REDIRECTS: u32 = 20;

/// A background refresh uses the current token only if it has at least this long to live,
/// so the request it authorises cannot expire on the way.
pub const BACKGROUND_MIN_LEFT_MS: i64 = 5_000;

impl<P: Platform> Session<P> {
    pub fn new(platform: P, config: Config, storage: Option<Rc<dyn Storage>>) -> Self {
        let state = State {
            phase: Phase::Anonymous,
            disposed: false,
            held: None,
            generation: 0,
            flight: None,
            timer: None,
            persisting: None,
            skew_ms: 0,
        };
        Session {
            shared: Rc::new(Shared {
                platform,
                config,
                storage,
                state: RefCell::new(state),
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    pub fn platform(&self) -> &P {
        &self.shared.platform
    }

    fn now(&self) -> i64 {
        self.shared.platform.now_ms()
    }

    pub fn info(&self) -> SessionInfo {
        info_of(&self.shared.state.borrow())
    }

    pub fn is_disposed(&self) -> bool {
        self.shared.state.borrow().disposed
    }

    /// The error a call gets when the session holds no usable tokens and cannot get any.
    fn state_error(&self, st: &State<P::Timer>) -> Option<AuthError> {
        if st.disposed {
            return Some(AuthError::new(ErrorCode::Disposed, "the session was disposed"));
        }
        let creds = self.shared.config.credentials.is_some();
        match st.phase {
            Phase::Active => None,
            Phase::Revoked => Some(AuthError::new(
                ErrorCode::NotAuthenticated,
                "the session was revoked; call login() to start a new one",
            )),
            Phase::Anonymous if !creds => Some(AuthError::new(
                ErrorCode::NotAuthenticated,
                "not logged in; call login() first",
            )),
            Phase::Expired if !creds => Some(AuthError::new(
                ErrorCode::SessionExpired,
                "the session has expired; call login() to start a new one",
            )),
            Phase::Anonymous | Phase::Expired => None,
        }
    }

    fn info_or_error(&self) -> Result<SessionInfo, AuthError> {
        let st = self.shared.state.borrow();
        match self.state_error(&st) {
            Some(e) => Err(e),
            None if st.phase == Phase::Active => Ok(info_of(&st)),
            None => Err(AuthError::new(ErrorCode::NotAuthenticated, "not logged in")),
        }
    }

    fn emit(&self, events: Vec<Event>) {
        for e in events {
            self.shared.platform.emit(e);
        }
    }

    /// Scrubs the secrets this session holds (tokens, configured password) from an error that
    /// quotes a server's words, e.g. an API error envelope read by `json()`.
    pub fn redact(&self, error: AuthError) -> AuthError {
        let st = self.shared.state.borrow();
        let mut secrets: Vec<&str> = Vec::with_capacity(3);
        if let Some(h) = &st.held {
            secrets.push(h.pair.access_token.expose());
            secrets.push(h.pair.refresh_token.expose());
        }
        if let Some(c) = &self.shared.config.credentials {
            secrets.push(c.password.expose());
        }
        error.redact(&secrets)
    }

    // ----- flights -------------------------------------------------------------------------

    /// Joins the flight in progress, or starts one of `kind`.
    fn join_or_start(&self, st: &mut State<P::Timer>, kind: FlightKind) -> Flight {
        match &st.flight {
            Some(f) if !f.is_done() => f.clone(),
            _ => self.start_flight(st, kind),
        }
    }

    fn start_flight(&self, st: &mut State<P::Timer>, kind: FlightKind) -> Flight {
        let flight = Flight::with_signal(self.shared.platform.signal());
        st.flight = Some(flight.clone());
        let generation = st.generation;
        let session = self.clone();
        let task_flight = flight.clone();
        self.shared.platform.spawn(Box::pin(async move {
            let result = match kind {
                FlightKind::Login(creds) => session.do_login(&creds, generation).await,
                FlightKind::Refresh => session.do_refresh(generation).await,
            };
            let stale = {
                let mut st = session.shared.state.borrow_mut();
                if st.flight.as_ref().is_some_and(|f| f.same(&task_flight)) {
                    st.flight = None;
                }
                st.generation != generation
            };
            // Waiters of a superseded flight look at the session again instead of failing
            // with an error that no longer describes it.
            task_flight.complete(if stale { Ok(()) } else { result });
        }));
        flight
    }

    async fn do_login(&self, creds: &Credentials, generation: u64) -> Result<(), AuthError> {
        let body = envelope::login_body(&creds.username, creds.password.expose());
        let secrets = [creds.password.expose(), creds.username.as_str()];
        let reply = self
            .auth_call(&self.shared.config.login_url, &body, None, &secrets)
            .await?;
        let pair = parse_token_pair(&reply.data).map_err(|e| e.with_status(reply.status))?;
        self.apply(pair, generation, None, reply.skew, true)
            .map_err(|e| e.with_status(reply.status))
    }

    async fn do_refresh(&self, generation: u64) -> Result<(), AuthError> {
        let token = {
            let st = self.shared.state.borrow();
            match &st.held {
                Some(h) if st.generation == generation => h.pair.refresh_token.clone(),
                _ => return Ok(()),
            }
        };
        let body = envelope::refresh_token_body(&token);
        match self
            .auth_call(&self.shared.config.refresh_url, &body, None, &[token.expose()])
            .await
        {
            Ok(reply) => {
                let pair = parse_token_pair(&reply.data).map_err(|e| e.with_status(reply.status))?;
                self.apply(pair, generation, Some(&token), reply.skew, true)
                    .map_err(|e| e.with_status(reply.status))
            }
            Err(e) if e.is_unauthorized() => {
                // Another process sharing our storage may have rotated the token first.
                if self.adopt_stored(generation, token.expose()).await {
                    return Ok(());
                }
                self.rejected(generation).await
            }
            Err(e) => Err(e),
        }
    }

    /// After a refresh 401: if storage holds a newer pair (another isolate refreshed), use it.
    async fn adopt_stored(&self, generation: u64, spent: &str) -> bool {
        let Some(storage) = self.shared.storage.clone() else {
            return false;
        };
        let Ok(Some(text)) = storage.get(&self.shared.config.storage_key).await else {
            return false;
        };
        let Ok(pair) = envelope::read_record(&text) else {
            return false;
        };
        let (skew, held_access_expires_at) = {
            let st = self.shared.state.borrow();
            (st.skew_ms, st.held.as_ref().map(|h| h.pair.access_expires_at))
        };
        // Only a pair issued after ours is newer. An older record (a write of ours that failed,
        // or a stale read from an eventually consistent store such as Workers KV) holds a
        // refresh token that was spent already: adopting it would send that token again.
        let older = held_access_expires_at.is_some_and(|held| pair.access_expires_at <= held);
        if pair.refresh_token.expose() == spent || older || pair.refresh_expires_at - skew <= self.now() {
            return false;
        }
        self.apply(pair, generation, None, None, false).is_ok()
    }

    /// The refresh token was rejected: the session ends, unless credentials let us log in again.
    async fn rejected(&self, generation: u64) -> Result<(), AuthError> {
        let info = {
            let mut st = self.shared.state.borrow_mut();
            if st.generation != generation || st.disposed {
                return Ok(());
            }
            st.held = None;
            st.timer = None;
            st.phase = Phase::Expired;
            info_of(&st)
        };
        let expired = AuthError::new(
            ErrorCode::SessionExpired,
            "the refresh token was rejected; the session has ended",
        )
        .with_status(401);
        match &self.shared.config.credentials {
            None => {
                self.emit(vec![Event::Expired(info)]);
                Err(expired)
            }
            Some(creds) => match self.do_login(creds, generation).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    self.emit(vec![Event::Expired(info)]);
                    Err(e)
                }
            },
        }
    }

    /// Takes a new token pair into the session (unless the flight is stale), arms the timer,
    /// tells listeners and persists it.
    ///
    /// `spent`: the refresh token a refresh flight sent. Its result is also taken when a newer
    /// generation (a login) started meanwhile but the session still holds that spent token
    /// (the login failed or is still out): the server has rotated it, so the old pair is dead.
    fn apply(
        &self,
        pair: TokenPair,
        generation: u64,
        spent: Option<&RefreshToken>,
        skew: Option<i64>,
        fresh: bool,
    ) -> Result<(), AuthError> {
        let now = self.now();
        let info = {
            let mut st = self.shared.state.borrow_mut();
            let holds_spent = spent.is_some_and(|t| {
                st.phase == Phase::Active && st.held.as_ref().is_some_and(|h| &h.pair.refresh_token == t)
            });
            if (st.generation != generation && !holds_spent) || st.disposed {
                let disposed = st.disposed;
                drop(st);
                if fresh && !disposed {
                    // Issued for a session that has moved on (revoked, or replaced by a newer
                    // login): nobody will ever use this pair, so it is revoked on the server.
                    let session = self.clone();
                    self.shared.platform.spawn(Box::pin(async move {
                        let _ = session.revoke_pair(&pair, now).await;
                    }));
                } else if let (true, Some(_), Some(storage)) = (fresh, spent, self.shared.storage.clone()) {
                    // Disposed while refreshing: the refresh spent the stored token, so the new
                    // pair is stored for the next process that restores the record.
                    let (key, record) = (self.shared.config.storage_key.clone(), envelope::write_record(&pair));
                    self.shared.platform.spawn(Box::pin(async move {
                        let _ = storage.put(&key, record).await;
                    }));
                }
                return Ok(());
            }
            if let Some(s) = skew {
                st.skew_ms = s;
            }
            let access_expires_local = pair.access_expires_at - st.skew_ms;
            let refresh_expires_local = pair.refresh_expires_at - st.skew_ms;
            if fresh && access_expires_local <= now {
                return Err(AuthError::invalid_response(
                    "the server issued an access token that has already expired",
                ));
            }
            let margin_ms = effective_margin(self.shared.config.refresh_margin_ms, access_expires_local, now);
            let record = self.shared.storage.is_some().then(|| envelope::write_record(&pair));
            st.held = Some(Held {
                pair,
                access_expires_local,
                refresh_expires_local,
                margin_ms,
            });
            st.phase = Phase::Active;
            self.arm_timer(&mut st, access_expires_local - margin_ms);
            if let (true, Some(record)) = (fresh, record) {
                self.persist(&mut st, record);
            }
            info_of(&st)
        };
        self.emit(vec![Event::Tokens(info)]);
        Ok(())
    }

    /// Writes the record in the background: waiters need not wait for a KV write.
    fn persist(&self, st: &mut State<P::Timer>, record: String) {
        let Some(storage) = self.shared.storage.clone() else {
            return;
        };
        let generation = st.generation;
        let done = Flight::new();
        st.persisting = Some(done.clone());
        let session = self.clone();
        self.shared.platform.spawn(Box::pin(async move {
            let current = session.shared.state.borrow().generation == generation;
            if current {
                if let Err(e) = storage.put(&session.shared.config.storage_key, record).await {
                    session.emit(vec![Event::Error(e)]);
                }
            }
            done.complete(Ok(()));
        }));
    }

    /// Work still running after a call returned: a refresh started in the background and the
    /// storage write that follows it. A Worker hands this to `ctx.waitUntil` so the isolate
    /// finishes it after the response has gone out. `None` when nothing is pending.
    pub fn background_work(&self) -> Option<LocalFuture<()>> {
        fn pending<T>(st: &State<T>) -> Vec<Flight> {
            [&st.flight, &st.persisting]
                .into_iter()
                .flatten()
                .filter(|f| !f.is_done())
                .cloned()
                .collect()
        }
        if pending(&self.shared.state.borrow()).is_empty() {
            return None;
        }
        let session = self.clone();
        Some(Box::pin(async move {
            // A finished refresh starts a storage write: look again until nothing is left.
            loop {
                let flights = pending(&session.shared.state.borrow());
                if flights.is_empty() {
                    return;
                }
                for f in flights {
                    let _ = f.wait().await;
                }
            }
        }))
    }

    // ----- the auto-refresh timer ---------------------------------------------------------

    fn arm_timer(&self, st: &mut State<P::Timer>, due_local: i64) {
        st.timer = None;
        if !self.shared.config.auto_refresh {
            return;
        }
        let delay = timer_delay(due_local, self.now());
        let weak: Weak<Shared<P>> = Rc::downgrade(&self.shared);
        let callback = Box::new(move || {
            if let Some(shared) = weak.upgrade() {
                Session { shared }.on_timer(due_local);
            }
        });
        st.timer = Some(self.shared.platform.set_timer(delay, callback));
    }

    /// The timer fired. A live timer always belongs to the tokens held now: every change of
    /// tokens re-arms it and every end of the session drops it. (A generation check here would
    /// kill auto-refresh after a login() that failed, which bumps the generation but keeps the
    /// tokens.)
    fn on_timer(&self, due_local: i64) {
        let now = self.now();
        let (flight, generation) = {
            let mut st = self.shared.state.borrow_mut();
            st.timer = None;
            if st.disposed || st.phase != Phase::Active {
                return;
            }
            if now < due_local {
                // The delay was clamped to what setTimeout honours: wait some more.
                self.arm_timer(&mut st, due_local);
                return;
            }
            (self.join_or_start(&mut st, FlightKind::Refresh), st.generation)
        };
        let session = self.clone();
        self.shared.platform.spawn(Box::pin(async move {
            let Err(e) = flight.wait().await else { return };
            // The end of the session has its own event; a dispose() is the user's own doing.
            if !matches!(e.kind(), ErrorCode::SessionExpired | ErrorCode::Disposed) {
                session.emit(vec![Event::Error(e.clone())]);
            }
            if e.retryable() {
                let mut st = session.shared.state.borrow_mut();
                if st.generation == generation && !st.disposed && st.timer.is_none() {
                    let expires = st.held.as_ref().map(|h| h.access_expires_local);
                    if let Some(delay) = expires.and_then(|x| retry_delay(x, session.now())) {
                        let due = session.now() + delay as i64;
                        session.arm_timer(&mut st, due);
                    }
                }
            }
        }));
    }

    // ----- getting a usable token -----------------------------------------------------------

    /// A token to send now. `strict`: it must stay valid for the margin (getAccessToken);
    /// otherwise a token that is still valid is used when a refresh fails for a temporary
    /// reason (fetch: better a call with a working token than no call).
    pub async fn ensure_token(&self, strict: bool, abort: &mut Abort) -> Result<AccessToken, AuthError> {
        self.token_for(strict, false, abort).await
    }

    /// `background`: inside the margin, start the refresh but use the current token now (it
    /// still has at least [`BACKGROUND_MIN_LEFT_MS`] to live); the caller hands
    /// [`Session::background_work`] to `waitUntil`.
    async fn token_for(&self, strict: bool, background: bool, abort: &mut Abort) -> Result<AccessToken, AuthError> {
        for _ in 0..4 {
            let (step, events) = self.decide(background);
            self.emit(events);
            let flight = match step {
                Step::Ready(token) => return Ok(token),
                Step::Fail(e) => return Err(e),
                Step::Wait(f) => f,
            };
            match abort.guard(flight.wait()).await? {
                Ok(()) => {}
                Err(e) => {
                    if !strict && e.retryable() {
                        if let Some(token) = self.still_valid() {
                            return Ok(token);
                        }
                    }
                    return Err(e);
                }
            }
        }
        // Four rounds without a usable token: the server keeps issuing tokens we cannot use.
        self.still_valid()
            .ok_or_else(|| AuthError::invalid_response("the server's tokens expire before they can be used"))
    }

    fn decide(&self, background: bool) -> (Step, Vec<Event>) {
        let now = self.now();
        let mut st = self.shared.state.borrow_mut();
        if let Some(e) = self.state_error(&st) {
            return (Step::Fail(e), vec![]);
        }
        let creds = self.shared.config.credentials.clone();
        if st.phase == Phase::Active {
            let h = st.held.as_ref().expect("an active session holds tokens");
            if now < h.refresh_expires_local {
                if now + h.margin_ms < h.access_expires_local {
                    return (Step::Ready(h.pair.access_token.clone()), vec![]);
                }
                if background && now + BACKGROUND_MIN_LEFT_MS < h.access_expires_local {
                    let token = h.pair.access_token.clone();
                    self.join_or_start(&mut st, FlightKind::Refresh);
                    return (Step::Ready(token), vec![]);
                }
                return (Step::Wait(self.join_or_start(&mut st, FlightKind::Refresh)), vec![]);
            }
            // The refresh token ran out: the session is over.
            st.held = None;
            st.timer = None;
            st.phase = Phase::Expired;
            if creds.is_none() {
                let e = AuthError::new(
                    ErrorCode::SessionExpired,
                    "the refresh token has expired; call login() again",
                );
                return (Step::Fail(e), vec![Event::Expired(info_of(&st))]);
            }
        }
        match creds {
            Some(c) => (Step::Wait(self.join_or_start(&mut st, FlightKind::Login(c))), vec![]),
            None => (
                Step::Fail(AuthError::new(ErrorCode::NotAuthenticated, "not logged in")),
                vec![],
            ),
        }
    }

    fn still_valid(&self) -> Option<AccessToken> {
        let st = self.shared.state.borrow();
        let h = st.held.as_ref().filter(|_| st.phase == Phase::Active && !st.disposed)?;
        (self.now() < h.access_expires_local).then(|| h.pair.access_token.clone())
    }

    /// After a 401 for `used`: refresh, unless the session already holds a newer token.
    async fn refresh_if_current(&self, used: &AccessToken) -> Result<(), AuthError> {
        let flight = {
            let mut st = self.shared.state.borrow_mut();
            if let Some(e) = self.state_error(&st) {
                return Err(e);
            }
            match &st.held {
                Some(h) if st.phase == Phase::Active && &h.pair.access_token == used => {
                    self.join_or_start(&mut st, FlightKind::Refresh)
                }
                _ => return Ok(()),
            }
        };
        flight.wait().await
    }

    // ----- the public operations ------------------------------------------------------------

    /// Logs in with the given credentials, or the configured ones.
    pub async fn login(&self, credentials: Option<Credentials>) -> Result<SessionInfo, AuthError> {
        if self.is_disposed() {
            return Err(AuthError::new(ErrorCode::Disposed, "the session was disposed"));
        }
        let creds = credentials
            .or_else(|| self.shared.config.credentials.clone())
            .ok_or_else(|| AuthError::config("login() needs a username and password, or options.credentials"))?;
        let (flight, generation) = {
            let mut st = self.shared.state.borrow_mut();
            if st.disposed {
                return Err(AuthError::new(ErrorCode::Disposed, "the session was disposed"));
            }
            st.generation += 1;
            let superseded = st.flight.take();
            let flight = self.start_flight(&mut st, FlightKind::Login(creds));
            let generation = st.generation;
            drop(st);
            if let Some(old) = superseded {
                old.complete(Ok(()));
            }
            (flight, generation)
        };
        self.wait_flight(flight, generation, &mut Abort::none()).await?;
        self.info_or_error()
    }

    /// Waits for `flight`, started or joined at `generation`. When a newer login superseded
    /// it (its waiters are released at once), waits for that login too: the caller resolves
    /// with the session's outcome, not with the state in between ("not logged in" while a
    /// login is on its way).
    async fn wait_flight(&self, mut flight: Flight, mut generation: u64, abort: &mut Abort) -> Result<(), AuthError> {
        loop {
            abort.guard(flight.wait()).await??;
            let st = self.shared.state.borrow();
            if st.generation == generation {
                return Ok(());
            }
            match st.flight.as_ref().filter(|f| !f.is_done() && !f.same(&flight)) {
                Some(newer) => {
                    flight = newer.clone();
                    generation = st.generation;
                }
                None => return Ok(()),
            }
        }
    }

    /// Refreshes now (sharing a refresh already in flight).
    pub async fn refresh(&self, abort: &mut Abort) -> Result<SessionInfo, AuthError> {
        let flight = {
            let mut st = self.shared.state.borrow_mut();
            if let Some(e) = self.state_error(&st) {
                return Err(e);
            }
            let kind = match (&st.phase, &self.shared.config.credentials) {
                (Phase::Active, _) => FlightKind::Refresh,
                (_, Some(c)) => FlightKind::Login(c.clone()),
                (_, None) => return Err(AuthError::new(ErrorCode::NotAuthenticated, "not logged in")),
            };
            (self.join_or_start(&mut st, kind), st.generation)
        };
        self.wait_flight(flight.0, flight.1, abort).await?;
        self.info_or_error()
    }

    /// A token valid for at least the margin.
    pub async fn access_token(&self, abort: &mut Abort) -> Result<AccessToken, AuthError> {
        self.ensure_token(true, abort).await
    }

    /// Ends the session: local state first (no later request carries the tokens, no late
    /// refresh brings them back), then the stored record, then the server.
    pub async fn revoke(&self) -> Result<(), AuthError> {
        let (held, info, superseded) = {
            let mut st = self.shared.state.borrow_mut();
            if st.disposed {
                return Err(AuthError::new(ErrorCode::Disposed, "the session was disposed"));
            }
            st.generation += 1;
            st.timer = None;
            st.phase = Phase::Revoked;
            (st.held.take(), info_of(&st), st.flight.take())
        };
        if let Some(old) = superseded {
            old.complete(Ok(()));
        }
        self.emit(vec![Event::Revoked(info)]);
        let mut first_error = None;
        if let Some(storage) = self.shared.storage.clone() {
            if let Err(e) = storage.delete(&self.shared.config.storage_key).await {
                first_error = Some(e);
            }
        }
        if let Some(h) = held {
            let bearer_valid_until = h.access_expires_local;
            if let Err(e) = self.revoke_pair(&h.pair, bearer_valid_until).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn revoke_pair(&self, pair: &TokenPair, access_valid_until_local: i64) -> Result<(), AuthError> {
        let body = envelope::refresh_token_body(&pair.refresh_token);
        let bearer = (self.now() < access_valid_until_local).then_some(&pair.access_token);
        let secrets = [pair.refresh_token.expose(), pair.access_token.expose()];
        self.auth_call(&self.shared.config.revoke_url, &body, bearer, &secrets)
            .await
            .map(|_| ())
    }

    /// Loads the stored record, if any. A record whose refresh token has expired is ignored.
    pub async fn restore(&self) -> Result<Option<SessionInfo>, AuthError> {
        let storage = self
            .shared
            .storage
            .clone()
            .ok_or_else(|| AuthError::config("restore() needs options.storage"))?;
        if self.is_disposed() {
            return Err(AuthError::new(ErrorCode::Disposed, "the session was disposed"));
        }
        let text = storage.get(&self.shared.config.storage_key).await?;
        let Some(text) = text else { return Ok(None) };
        let pair = envelope::read_record(&text)?;
        let generation = {
            let mut st = self.shared.state.borrow_mut();
            if st.disposed {
                return Err(AuthError::new(ErrorCode::Disposed, "the session was disposed"));
            }
            if pair.refresh_expires_at - st.skew_ms <= self.now() {
                return Ok(None);
            }
            st.generation += 1;
            st.generation
        };
        self.apply(pair, generation, None, None, false)?;
        Ok(Some(self.info()))
    }

    /// Stops everything: timers cancelled, tokens dropped from memory, waiters released with
    /// DISPOSED. Idempotent. The stored record is kept (another process may use it).
    pub fn dispose(&self) {
        let superseded = {
            let mut st = self.shared.state.borrow_mut();
            if st.disposed {
                return;
            }
            st.disposed = true;
            st.generation += 1;
            st.timer = None;
            st.held = None;
            st.flight.take()
        };
        if let Some(old) = superseded {
            old.complete(Err(AuthError::new(ErrorCode::Disposed, "the session was disposed")));
        }
    }

    /// Resolves a user's input against the host: absolute URLs pass through, anything else is
    /// appended to the host (its path prefix included).
    pub fn resolve(&self, input: &str) -> String {
        if crate::core::url::has_scheme(input) {
            input.to_owned()
        } else {
            self.shared.config.base.join(input)
        }
    }

    // ----- HTTP -----------------------------------------------------------------------------

    /// One auth endpoint call with timeouts and retries. `secrets` are scrubbed from errors.
    async fn auth_call(
        &self,
        url: &str,
        body: &str,
        bearer: Option<&AccessToken>,
        secrets: &[&str],
    ) -> Result<AuthReply, AuthError> {
        let config = &self.shared.config;
        let platform = &self.shared.platform;
        let mut attempt = 0;
        loop {
            let outcome = race(
                Box::pin(self.auth_attempt(url, body, bearer)),
                platform.sleep(config.timeout_ms),
            )
            .await;
            let (error, retry_after_header) = match outcome {
                Either::Left(Ok(reply)) => return Ok(reply),
                Either::Left(Err(failed)) => failed,
                Either::Right(()) => (timeout_error(config.timeout_ms), None),
            };
            let error = error.redact(secrets);
            if !error.retryable() || attempt >= config.retries {
                return Err(error);
            }
            let delay = match retry::retry_after(retry_after_header.as_deref(), self.now(), config.max_retry_after_ms) {
                RetryAfter::Backoff => backoff_ms(attempt, platform.random()),
                RetryAfter::Wait(ms) => ms,
                RetryAfter::TooLong(ms) => return Err(retry::too_long(ms, error.status())),
            };
            platform.sleep(delay).await;
            attempt += 1;
        }
    }

    async fn auth_attempt(
        &self,
        url: &str,
        body: &str,
        bearer: Option<&AccessToken>,
    ) -> Result<AuthReply, AttemptError> {
        let platform = &self.shared.platform;
        let request = Outgoing {
            url,
            method: "POST",
            bearer,
            body: OutgoingBody::Json(body),
        };
        let response = platform.send(request).await.map_err(|e| (e, None))?;
        if response.opaque_redirect || (300..400).contains(&response.status) {
            platform.discard(response.body);
            let e = AuthError::new(
                ErrorCode::RedirectBlocked,
                "an auth endpoint answered with a redirect; it was not followed",
            )
            .with_status(response.status);
            return Err((e, None));
        }
        let skew = clock_skew(response.date.as_deref(), self.now());
        let status = response.status;
        let bytes = platform
            .read_body(response.body, MAX_AUTH_RESPONSE_BYTES)
            .await
            .map_err(|e| (e.with_status(status), None))?;
        match read_auth_response(status, &bytes) {
            Ok(data) => Ok(AuthReply { data, skew, status }),
            Err(e) => Err((e, response.retry_after)),
        }
    }

    /// Sends a user's API request with the bearer token: refresh first when due, one
    /// refresh-and-replay after a 401, retries of idempotent methods, same-origin redirects
    /// followed with the token and other redirects handed back unfollowed.
    pub async fn fetch(
        &self,
        request: P::Request,
        url: String,
        method: String,
        abort: Abort,
    ) -> Result<Fetched<P::Body>, AuthError> {
        self.fetch_with(request, url, method, abort, false).await
    }

    /// [`Session::fetch`], refreshing in the background (see [`Session::background_work`])
    /// when `background` is set and the token is inside the margin but still good.
    pub async fn fetch_with(
        &self,
        request: P::Request,
        url: String,
        method: String,
        mut abort: Abort,
        background: bool,
    ) -> Result<Fetched<P::Body>, AuthError> {
        let config = &self.shared.config;
        let platform = &self.shared.platform;
        // The input is not quoted: its path or query may carry something private.
        let target = parse_absolute(&url).map_err(|e| {
            AuthError::new(
                ErrorCode::OriginNotAllowed,
                format!("the URL {e}; only the host's origin and allowedOrigins may receive the bearer token"),
            )
        })?;
        if !config.may_receive_token(&target.origin) {
            return Err(origin_error(target.origin.as_str()));
        }
        let idempotent = retry::is_idempotent(&method);
        let (mut url, mut method, mut drop_body) = (url, method, false);
        let (mut attempt, mut redirects, mut replayed) = (0u32, 0u32, false);
        loop {
            let token = self.token_for(false, background, &mut abort).await?;
            let attempt_started_ms = self.now();
            let send = platform.send(Outgoing {
                url: &url,
                method: &method,
                bearer: Some(&token),
                body: OutgoingBody::Api {
                    request: &request,
                    drop_body,
                },
            });
            let response = match abort.guard(race(send, platform.sleep(config.timeout_ms))).await? {
                Either::Left(Ok(response)) => response,
                failed => {
                    let e = match failed {
                        Either::Left(Err(e)) => e,
                        _ => timeout_error(config.timeout_ms),
                    };
                    if idempotent && e.retryable() && attempt < config.retries {
                        abort
                            .guard(platform.sleep(backoff_ms(attempt, platform.random())))
                            .await?;
                        attempt += 1;
                        continue;
                    }
                    return Err(e);
                }
            };
            let status = response.status;
            if (300..400).contains(&status) && status != 304 {
                if let Some(next) = response.location.as_deref().and_then(|l| parse_absolute(l).ok()) {
                    if config.may_receive_token(&next.origin) && redirects < MAX_REDIRECTS {
                        let location = response.location.clone().unwrap_or_default();
                        platform.discard(response.body);
                        if status == 303 && method != "HEAD" || matches!(status, 301 | 302) && method == "POST" {
                            method = "GET".into();
                            drop_body = true;
                        }
                        url = location;
                        redirects += 1;
                        continue;
                    }
                }
                // Another origin (or a loop): handed back as is; the token never goes there.
                return Ok(Fetched {
                    response,
                    attempt_started_ms,
                });
            }
            if status == 401 && !replayed {
                replayed = true;
                platform.discard(response.body);
                abort.guard(Box::pin(self.refresh_if_current(&token))).await??;
                continue;
            }
            if idempotent && retry::is_retryable_api_status(status) && attempt < config.retries {
                let delay =
                    match retry::retry_after(response.retry_after.as_deref(), self.now(), config.max_retry_after_ms) {
                        RetryAfter::Backoff => backoff_ms(attempt, platform.random()),
                        RetryAfter::Wait(ms) => ms,
                        RetryAfter::TooLong(_) => {
                            return Ok(Fetched {
                                response,
                                attempt_started_ms,
                            })
                        }
                    };
                platform.discard(response.body);
                abort.guard(platform.sleep(delay)).await?;
                attempt += 1;
                continue;
            }
            return Ok(Fetched {
                response,
                attempt_started_ms,
            });
        }
    }
}

fn timeout_error(timeout_ms: u32) -> AuthError {
    AuthError::new(
        ErrorCode::Timeout,
        format!("no complete answer within timeoutMs ({timeout_ms} ms)"),
    )
}

fn origin_error(origin: &str) -> AuthError {
    // Only the origin is shown: a URL's path or query may carry data the user considers private.
    let shown: String = origin.chars().filter(|c| !c.is_control()).take(200).collect();
    AuthError::new(
        ErrorCode::OriginNotAllowed,
        format!("{shown} may not receive the bearer token; only the host's origin and allowedOrigins may"),
    )
}

fn info_of<T>(st: &State<T>) -> SessionInfo {
    let held = st.held.as_ref();
    SessionInfo {
        state: st.phase,
        client_id: held.and_then(|h| h.pair.client_id),
        access_expires_at: held.map(|h| h.pair.access_expires_at),
        refresh_expires_at: held.map(|h| h.pair.refresh_expires_at),
    }
}
