//! `Core`: the [`Machine`] behind a `#[wasm_bindgen]` class, driven by
//! `pkg-template/session.js`.
//!
//! Every method that can produce outputs takes the driver (`d`) as an argument and, before
//! it returns, hands each output to one of the driver's methods (`send`, `cancel`,
//! `storage`, `settle`, `event`) and re-arms the driver's one timer when the machine's
//! deadline changed. The driver is borrowed per call, never kept: a `JsValue` kept in Rust
//! would hold the session alive from wasm-bindgen's heap table, past its last user.
//!
//! The driver's methods only start work (a `fetch`, a storage call, a promise resolution,
//! an event queued for after the call); none calls back into `Core` synchronously, so the
//! `&mut self` borrow is never re-entered.
//!
//! Errors cross as plain descriptor objects made by `d.error(…)`; the driver builds the
//! `AuthError` where the user's call awaits it, so its stack shows that call.
//!
//! Small integers stand for the core's enums (`need`, `waited`, body kinds, outcomes,
//! events); `session.js` holds the same table.

#[allow(unused_imports)]
use crate::prelude::*;

use wasm_bindgen::prelude::*;

use super::json::{string_at, to_json};
use crate::core::config::Options;
use crate::core::envelope::{ApiBody, AuthBody};
use crate::core::machine::{
    ApiFailure, ApiStep, AuthReply, Behind, BodyFailure, Endpoint, Event, IoFailure, Keep, Log, Machine, Need, Outcome,
    Output, Persistence, SessionInfo, Step, StorageOp, StorageReply, TokenStep, Waited, Wake, Want,
};
use crate::core::secret::Password;
use crate::core::{AuthError, Cause, Credentials};

#[wasm_bindgen]
extern "C" {
    /// The JavaScript side of one session (see `pkg-template/session.js`).
    pub type Driver;

    #[wasm_bindgen(method)]
    fn send(this: &Driver, io: u32, endpoint: u8, url: &str, body: &str, bearer: Option<String>, max_bytes: u32);
    #[wasm_bindgen(method)]
    fn cancel(this: &Driver, io: u32);
    /// `op`: 0 get, 1 put (`version`: the record's version, for `putIfNewer`), 2 delete,
    /// 3 acquire (`value`: the lease's time to live in ms), 4 release (`value`: the lease id).
    #[wasm_bindgen(method)]
    fn storage(this: &Driver, op: u8, io: u32, key: &str, value: Option<String>, version: f64);
    /// `outcome`: 0 done, 1 nothing, 2 failed (with `error`), 3 again.
    #[wasm_bindgen(method)]
    fn settle(this: &Driver, flight: u32, outcome: u8, error: JsValue);
    /// Wakes API call `call`. `kind`: 0 abandon the attempt (a retry follows), 1 send
    /// again, 2 fail (with `error`).
    #[wasm_bindgen(method)]
    fn wake(this: &Driver, call: u32, kind: u8, error: JsValue);
    /// `kind`: 0 tokens (with `reason`), 1 expired, 2 revoked (payload: info), 3 error.
    #[wasm_bindgen(method)]
    fn event(this: &Driver, kind: u8, payload: JsValue, reason: &str);
    /// Arms the one timer for `at` (local epoch ms; `-1`: none). `keep`: work a caller
    /// awaits, so the timer keeps the process alive.
    #[wasm_bindgen(method)]
    fn arm(this: &Driver, at: f64, keep: bool);
    /// A record for the `logger` hook: `event` ("refresh", "login", "request", "response",
    /// "retry", "redirect") and the fields that apply (else undefined).
    #[wasm_bindgen(method)]
    #[allow(clippy::too_many_arguments)]
    fn log(
        this: &Driver,
        event: &str,
        endpoint: Option<String>,
        attempt: Option<u32>,
        status: Option<u16>,
        delay_ms: Option<u32>,
        code: Option<String>,
        trigger: Option<String>,
        followed: Option<bool>,
    );
    /// A `SessionInfo` object.
    #[wasm_bindgen(method)]
    fn info(this: &Driver, state: &str, client_id: Option<f64>, access: Option<f64>, refresh: Option<f64>) -> JsValue;
    /// An error descriptor: plain data, turned into an `AuthError` by the caller's await.
    #[wasm_bindgen(method)]
    fn error(
        this: &Driver,
        code: &str,
        name: &str,
        message: &str,
        status: u16,
        retryable: bool,
        retry_after: Option<u32>,
        cause_name: Option<String>,
        cause_code: Option<String>,
    ) -> JsValue;
}

fn descriptor(d: &Driver, e: &AuthError) -> JsValue {
    let cause = e.cause();
    d.error(
        e.code(),
        e.name(),
        e.message(),
        e.status(),
        e.retryable(),
        e.retry_after(),
        cause.map(|c| c.name.clone()),
        cause.and_then(|c| c.code.clone()),
    )
}

fn endpoint_name(e: Endpoint) -> Option<String> {
    Some(
        match e {
            Endpoint::Login => "login",
            Endpoint::Refresh => "refresh",
            Endpoint::Revoke => "revoke",
        }
        .to_owned(),
    )
}

fn log(d: &Driver, record: Log) {
    let api = || Some("api".to_owned());
    let text = |s: &str| Some(s.to_owned());
    match record {
        Log::Refresh { why } => d.log("refresh", None, None, None, None, None, text(why.as_str()), None),
        Log::Login { why } => d.log("login", None, None, None, None, None, text(why.as_str()), None),
        Log::Request { endpoint, attempt } => d.log(
            "request",
            endpoint_name(endpoint),
            Some(attempt),
            None,
            None,
            None,
            None,
            None,
        ),
        Log::Response { endpoint, status, code } => d.log(
            "response",
            endpoint_name(endpoint),
            None,
            Some(status),
            None,
            code,
            None,
            None,
        ),
        Log::Retry {
            endpoint,
            attempt,
            delay_ms,
            code,
        } => d.log(
            "retry",
            endpoint_name(endpoint),
            Some(attempt),
            None,
            Some(delay_ms),
            Some(code),
            None,
            None,
        ),
        Log::ApiRequest { attempt } => d.log("request", api(), Some(attempt), None, None, None, None, None),
        Log::ApiResponse { status, code } => d.log(
            "response",
            api(),
            None,
            Some(status),
            None,
            code.map(|c| c.to_owned()),
            None,
            None,
        ),
        Log::ApiRetry {
            attempt,
            delay_ms,
            code,
        } => d.log(
            "retry",
            api(),
            Some(attempt),
            None,
            Some(delay_ms),
            text(code),
            None,
            None,
        ),
        Log::Redirect { status, followed } => {
            d.log("redirect", api(), None, Some(status), None, None, None, Some(followed))
        }
    }
}

fn info_js(d: &Driver, i: &SessionInfo) -> JsValue {
    d.info(
        i.state.as_str(),
        i.client_id.map(|v| v as f64),
        i.access_expires_at.map(|v| v as f64),
        i.refresh_expires_at.map(|v| v as f64),
    )
}

fn cause(name: Option<String>, code: Option<String>) -> Option<Cause> {
    name.map(|n| Cause::new(&n, code.as_deref()))
}

/// The session state machine of one `AuthSession`.
#[wasm_bindgen]
pub struct Core {
    machine: Machine,
    /// The deadline last handed to `d.arm`, so the timer is re-armed only on a change.
    armed: Option<(i64, Keep)>,
    /// Of the last `Ready` token step: a background flight (0: none). Its token is the held
    /// pair's, read from the machine (no copy of it is kept here).
    background: u32,
}

#[wasm_bindgen]
impl Core {
    /// Validates the options (JavaScript checked their types). Throws an error descriptor.
    #[wasm_bindgen(constructor)]
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        d: &Driver,
        host: Option<String>,
        username: Option<String>,
        password: Option<String>,
        refresh_margin_seconds: Option<f64>,
        timeout_ms: Option<f64>,
        retries: Option<f64>,
        max_retry_after_seconds: Option<f64>,
        auto_refresh: Option<bool>,
        paths: Vec<String>,
        storage_key: Option<String>,
        allowed_origins: Vec<String>,
        allow_insecure_http: Option<bool>,
        max_response_bytes: Option<f64>,
        lease_ms: Option<f64>,
        label: Option<String>,
        storage: u8,
        seed: f64,
    ) -> Result<Core, JsValue> {
        // `paths`: login, refresh, revoke; "" where not given.
        let path = |i: usize| paths.get(i).filter(|p| !p.is_empty()).cloned();
        let options = Options {
            host,
            credentials: username.zip(password).map(|(u, p)| (u, Password::new(p))),
            refresh_margin_seconds,
            auto_refresh,
            timeout_ms,
            retries,
            max_retry_after_seconds,
            login_path: path(0),
            refresh_path: path(1),
            revoke_path: path(2),
            storage_key,
            allowed_origins,
            allow_insecure_http,
            max_response_bytes,
            lease_ms,
            label,
        };
        let config = options.validate().map_err(|e| descriptor(d, &e))?;
        Ok(Core {
            machine: Machine::new(
                config,
                match storage {
                    0 => Persistence::MemoryOnly,
                    1 => Persistence::Storage,
                    _ => Persistence::StorageWithLease,
                },
                (seed * 9_007_199_254_740_991.0) as u64,
            ),
            armed: None,
            background: 0,
        })
    }

    /// Hands every pending output to the driver and re-arms its timer if needed.
    fn drain(&mut self, d: &Driver) {
        while let Some(output) = self.machine.poll_output() {
            match output {
                Output::Send(r) => {
                    let endpoint = match r.endpoint {
                        Endpoint::Login => 0,
                        Endpoint::Refresh => 1,
                        Endpoint::Revoke => 2,
                    };
                    let bearer = r.bearer.map(|t| t.expose().to_owned());
                    d.send(r.id, endpoint, &r.url, &r.body, bearer, r.max_bytes as u32);
                }
                Output::Cancel(io) => d.cancel(io),
                Output::Storage(StorageOp::Get { id, key }) => d.storage(0, id, &key, None, 0.0),
                Output::Storage(StorageOp::Put {
                    id,
                    key,
                    value,
                    version,
                }) => d.storage(1, id, &key, Some(value), version as f64),
                Output::Storage(StorageOp::Delete { id, key }) => d.storage(2, id, &key, None, 0.0),
                Output::Storage(StorageOp::Acquire { id, key, ttl_ms }) => {
                    d.storage(3, id, &key, Some(crate::core::text::int(ttl_ms as i64)), 0.0)
                }
                Output::Storage(StorageOp::Release { id, key, lease }) => d.storage(4, id, &key, Some(lease), 0.0),
                Output::Settle(flight, outcome) => match outcome {
                    Outcome::Done => d.settle(flight, 0, JsValue::UNDEFINED),
                    Outcome::Nothing => d.settle(flight, 1, JsValue::UNDEFINED),
                    Outcome::Failed(e) => d.settle(flight, 2, descriptor(d, &e)),
                    Outcome::Again => d.settle(flight, 3, JsValue::UNDEFINED),
                },
                Output::Call(call, Wake::Abandon) => d.wake(call, 0, JsValue::UNDEFINED),
                Output::Call(call, Wake::Send) => d.wake(call, 1, JsValue::UNDEFINED),
                Output::Call(call, Wake::Fail(e)) => d.wake(call, 2, descriptor(d, &e)),
                Output::Event(Event::Tokens(i, reason)) => d.event(0, info_js(d, &i), reason.as_str()),
                Output::Event(Event::Expired(i)) => d.event(1, info_js(d, &i), ""),
                Output::Event(Event::Revoked(i)) => d.event(2, info_js(d, &i), ""),
                Output::Event(Event::Error(e)) => d.event(3, descriptor(d, &e), ""),
                Output::Log(record) => log(d, record),
            }
        }
        let next = self.machine.poll_timeout();
        if next != self.armed {
            self.armed = next;
            match next {
                Some((at, keep)) => d.arm(at as f64, keep == Keep::Alive),
                None => d.arm(-1.0, false),
            }
        }
    }

    /// A `Step` as JavaScript sees it: a flight to await (> 0), or 0 for "read `result`".
    fn step(&mut self, d: &Driver, step: Step) -> Result<u32, JsValue> {
        self.drain(d);
        match step {
            Step::Wait(f) => Ok(f),
            Step::Ready => Ok(0),
            Step::Fail(e) => Err(descriptor(d, &e)),
        }
    }

    pub fn login(
        &mut self,
        d: &Driver,
        now: f64,
        username: Option<String>,
        password: Option<String>,
    ) -> Result<u32, JsValue> {
        let creds = username.zip(password).map(|(username, p)| Credentials {
            username,
            password: Password::new(p),
        });
        if let Some(c) = &creds {
            if c.username.is_empty() || c.password.expose().is_empty() {
                let e = AuthError::config("login() needs a non-empty username and password");
                return Err(descriptor(d, &e));
            }
        }
        let step = self.machine.login(now as i64, creds);
        self.step(d, step)
    }

    pub fn refresh(&mut self, d: &Driver, now: f64) -> Result<u32, JsValue> {
        let step = self.machine.refresh(now as i64);
        self.step(d, step)
    }

    pub fn revoke(&mut self, d: &Driver, now: f64) -> Result<u32, JsValue> {
        let step = self.machine.revoke(now as i64);
        self.step(d, step)
    }

    pub fn restore(&mut self, d: &Driver, now: f64) -> Result<u32, JsValue> {
        let step = self.machine.restore(now as i64);
        self.step(d, step)
    }

    pub fn rejoin(&mut self, d: &Driver) -> Result<u32, JsValue> {
        let step = self.machine.rejoin();
        self.step(d, step)
    }

    pub fn dispose(&mut self, d: &Driver) {
        self.machine.dispose();
        self.drain(d);
    }

    /// The configured account's fingerprint (no credentials: none).
    pub fn account(&self) -> Option<String> {
        self.machine.config().account.clone()
    }

    /// Turns on the records for the `logger` hook.
    pub fn set_logging(&mut self, on: bool) {
        self.machine.set_logging(on);
    }

    /// For the Workers broker, whose timer is a Durable Object's alarm: [`Machine::skew_ms`],
    /// [`Machine::due_at`] and [`Machine::retry_at`] (-1: none).
    pub fn skew_ms(&self) -> f64 {
        self.machine.skew_ms() as f64
    }

    pub fn due_at(&self) -> f64 {
        self.machine.due_at().map_or(-1.0, |t| t as f64)
    }

    pub fn retry_at(&self, now: f64) -> f64 {
        self.machine.retry_at(now as i64).map_or(-1.0, |t| t as f64)
    }

    /// [`Machine::is_idle`]: what `SessionPool` asks before it disposes a session.
    pub fn idle(&self) -> bool {
        self.machine.is_idle()
    }

    pub fn disposed(&self) -> bool {
        self.machine.is_disposed()
    }

    /// The session's info after a settled `login`/`refresh`, or the error descriptor.
    pub fn result(&self, d: &Driver) -> Result<JsValue, JsValue> {
        self.machine
            .result()
            .map(|i| info_js(d, &i))
            .map_err(|e| descriptor(d, &e))
    }

    pub fn info(&self, d: &Driver) -> JsValue {
        info_js(d, &self.machine.info())
    }

    /// `need`: 0 strict, 1 lenient, 2 background, 3 replay. `waited`: 0 nothing, 1 done,
    /// 2 failed (retryable), 3 failed (final). Returns the serial of the pair whose access
    /// token to send (> 0; the driver reads the text with `token_text` only when the serial
    /// changed, and `background` for a refresh started behind the call), minus the flight
    /// to await (< 0), or 0: rethrow the error of the flight just awaited.
    pub fn token(&mut self, d: &Driver, now: f64, need: u8, waited: u8, round: u32) -> Result<f64, JsValue> {
        let need = match need {
            0 => Need::Strict,
            1 => Need::Lenient,
            2 => Need::Background,
            _ => Need::Replay,
        };
        let step = self.machine.token(now as i64, need, waited_of(waited), round);
        self.token_step(d, step)
    }

    /// [`Machine::token_replacing`]: a server rejected the token `rejected`.
    pub fn token_replacing(&mut self, d: &Driver, now: f64, rejected: &str) -> Result<f64, JsValue> {
        let step = self.machine.token_replacing(now as i64, rejected);
        self.token_step(d, step)
    }

    pub fn token_after_401(&mut self, d: &Driver, now: f64, serial: u32) -> Result<f64, JsValue> {
        let step = self.machine.token_after_401(now as i64, serial);
        self.token_step(d, step)
    }

    fn token_step(&mut self, d: &Driver, step: TokenStep) -> Result<f64, JsValue> {
        self.drain(d);
        match step {
            TokenStep::Ready { serial, background, .. } => {
                self.background = background.unwrap_or(0);
                Ok(serial as f64)
            }
            TokenStep::Wait(f) => Ok(-(f as f64)),
            TokenStep::Rethrow => Ok(0.0),
            TokenStep::Fail(e) => Err(descriptor(d, &e)),
        }
    }

    /// The access token of the last `Ready` step: the held pair's (a `Ready` step always
    /// hands out the held pair, and the driver asks right after it). Crossing into
    /// JavaScript costs a string copy, so the driver asks only when the serial it got is not
    /// the one it holds. After a revoke, an expiry or a dispose there is none.
    pub fn token_text(&self) -> Option<String> {
        self.machine.access_token().map(|t| t.expose().to_owned())
    }

    #[wasm_bindgen(getter)]
    pub fn background(&self) -> u32 {
        self.background
    }

    /// The answer to `d.send(io, …)`. `kind`: 0 empty body, 1 not JSON, 2 JSON (`body` is
    /// what `JSON.parse` returned).
    #[allow(clippy::too_many_arguments)]
    pub fn auth_reply(
        &mut self,
        d: &Driver,
        now: f64,
        io: u32,
        status: u16,
        redirected: bool,
        date: Option<String>,
        retry_after: Option<String>,
        kind: u8,
        body: JsValue,
    ) {
        let body = match kind {
            0 => AuthBody::Empty,
            2 => AuthBody::Json(to_json(&body)),
            _ => AuthBody::NotJson,
        };
        let reply = AuthReply {
            status,
            redirected,
            date,
            retry_after,
            body,
        };
        self.machine.handle_auth(now as i64, io, Ok(reply));
        self.drain(d);
    }

    /// `d.send(io, …)` produced no usable response. `kind`: 0 network failure (with the
    /// underlying error's name and code), 1 not a Response, 2 body over `max_bytes`.
    pub fn auth_failed(
        &mut self,
        d: &Driver,
        now: f64,
        io: u32,
        kind: u8,
        cause_name: Option<String>,
        cause_code: Option<String>,
    ) {
        let failure = match kind {
            0 => IoFailure::Network(cause(cause_name, cause_code)),
            1 => IoFailure::NotAResponse,
            _ => IoFailure::TooLarge,
        };
        self.machine.handle_auth(now as i64, io, Err(failure));
        self.drain(d);
    }

    /// The answer to `d.storage(…, io, …)`. `kind`: 0 done or nothing found (or the lease
    /// not taken), 1 a record (`value` is what `JSON.parse` returned), 2 garbage, 3 the
    /// adapter failed, 4 the lease taken (`value`: its id).
    // Eight with `self`: clippy's limit is seven (the wasm32 clippy run failed here).
    #[allow(clippy::too_many_arguments)]
    pub fn storage_reply(
        &mut self,
        d: &Driver,
        now: f64,
        io: u32,
        kind: u8,
        value: JsValue,
        cause_name: Option<String>,
        cause_code: Option<String>,
    ) {
        let reply = match kind {
            0 => StorageReply::Empty,
            1 => StorageReply::Record(to_json(&value)),
            2 => StorageReply::Garbage,
            4 => match value.as_string() {
                Some(id) if !id.is_empty() && id.len() <= 256 => StorageReply::Lease(id),
                _ => StorageReply::Garbage,
            },
            _ => StorageReply::Failed(cause(cause_name, cause_code)),
        };
        self.machine.handle_storage(now as i64, io, reply);
        self.drain(d);
    }

    /// The timer handed to `d.arm` fired.
    pub fn timeout(&mut self, d: &Driver, now: f64) {
        self.armed = None;
        self.machine.handle_timeout(now as i64);
        self.drain(d);
    }

    // ----- API calls --------------------------------------------------------------------

    /// A `fetch` input resolved against the host (its path prefix included).
    pub fn resolve(&self, input: &str) -> String {
        self.machine.resolve(input)
    }

    /// Throws ORIGIN_NOT_ALLOWED unless `origin` may receive the bearer token.
    pub fn check_origin(&self, d: &Driver, origin: &str) -> Result<(), JsValue> {
        self.machine.check_origin(origin).map_err(|e| descriptor(d, &e))
    }

    /// `maxResponseBytes` as validated: the most `json()` reads of a body.
    pub fn max_response_bytes(&self) -> u32 {
        self.machine.config().max_response_bytes
    }

    /// Opens an API call. `want`: 0 `fetch()`, 1 `json()`; `behind`: a `waitUntil` was
    /// given. Returns the call's id, or throws (DISPOSED).
    pub fn api_open(&mut self, d: &Driver, method: &str, path: &str, want: u8, behind: bool) -> Result<u32, JsValue> {
        let want = if want == 1 { Want::Data } else { Want::Response };
        let behind = if behind { Behind::WaitUntil } else { Behind::No };
        let opened = self.machine.api_open(method, path, want, behind);
        opened.map_err(|e| descriptor(d, &e))
    }

    /// [`Machine::api_token`]; `waited` and the result as for [`Core::token`].
    pub fn api_token(&mut self, d: &Driver, now: f64, call: u32, waited: u8, round: u32) -> Result<f64, JsValue> {
        let step = self.machine.api_token(now as i64, call, waited_of(waited), round);
        self.token_step(d, step)
    }

    /// The attempt's response: its status, whether it is a browser's `opaqueredirect`, and
    /// its `Retry-After` header. Returns an [`ApiStep`] code (see `api_code`), or throws.
    pub fn api_response(
        &mut self,
        d: &Driver,
        now: f64,
        call: u32,
        status: u16,
        opaque: bool,
        retry_after: Option<String>,
    ) -> Result<u8, JsValue> {
        let step = self
            .machine
            .api_response(now as i64, call, status, opaque, retry_after.as_deref());
        self.api_code(d, step)
    }

    /// The redirect's `Location` origin (`URL#origin`), if it is a URL at all.
    pub fn api_location(&mut self, d: &Driver, call: u32, origin: Option<String>) -> Result<u8, JsValue> {
        let step = self.machine.api_location(call, origin.as_deref());
        self.api_code(d, step)
    }

    /// The attempt produced no response. `kind`: 0 `fetch` threw or rejected (with the
    /// error's name and code), 1 not a Response.
    pub fn api_failed(
        &mut self,
        d: &Driver,
        now: f64,
        call: u32,
        kind: u8,
        cause_name: Option<String>,
        cause_code: Option<String>,
    ) -> Result<u8, JsValue> {
        let failure = match kind {
            0 => ApiFailure::Network(cause(cause_name, cause_code)),
            _ => ApiFailure::NotAResponse,
        };
        let step = self.machine.api_failed(now as i64, call, failure);
        self.api_code(d, step)
    }

    /// `json()`'s body. `kind`: 0 empty, 1 not JSON, 2 JSON (`body` is what `JSON.parse`
    /// returned), 3 over `maxResponseBytes`, 4 unreadable (with the error's name and code).
    pub fn api_body(
        &mut self,
        d: &Driver,
        call: u32,
        kind: u8,
        body: &JsValue,
        cause_name: Option<String>,
        cause_code: Option<String>,
    ) -> Result<u8, JsValue> {
        let step = match kind {
            3 => self.machine.api_body(call, Err(BodyFailure::TooLarge)),
            4 => self
                .machine
                .api_body(call, Err(BodyFailure::Network(cause(cause_name, cause_code)))),
            _ => {
                let shape = api_shape(kind, body);
                self.machine.api_body(call, Ok(&shape))
            }
        };
        self.api_code(d, step)
    }

    /// The caller's signal fired: the call's ABORTED descriptor, or undefined when it had
    /// already ended.
    pub fn api_abort(&mut self, d: &Driver, call: u32) -> JsValue {
        let e = self.machine.api_abort(call);
        self.drain(d);
        e.map_or(JsValue::UNDEFINED, |e| descriptor(d, &e))
    }

    /// The driver gave up on the call for its own reason (the runtime refused a request).
    pub fn api_close(&mut self, d: &Driver, call: u32) {
        self.machine.api_close(call);
        self.drain(d);
    }

    /// 0 return the response, 1 read the body, 2 locate the redirect, 3 follow it, 4 follow
    /// it as a body-less GET, 5 ask for a token again, 6 wait for a wake, 7 resolve with
    /// `data`, 8 resolve with nothing, 9 gone (discard); a failure throws its descriptor.
    fn api_code(&mut self, d: &Driver, step: ApiStep) -> Result<u8, JsValue> {
        self.drain(d);
        Ok(match step {
            ApiStep::Return => 0,
            ApiStep::Read => 1,
            ApiStep::Locate => 2,
            ApiStep::Follow { to_get: false } => 3,
            ApiStep::Follow { to_get: true } => 4,
            ApiStep::Token => 5,
            ApiStep::Wait => 6,
            ApiStep::Data => 7,
            ApiStep::Nothing => 8,
            ApiStep::Gone => 9,
            ApiStep::Fail(e) => return Err(descriptor(d, &e)),
        })
    }
}

fn waited_of(waited: u8) -> Waited {
    match waited {
        0 => Waited::Nothing,
        1 => Waited::Done,
        2 => Waited::Failed { retryable: true },
        _ => Waited::Failed { retryable: false },
    }
}

/// What `json()`'s verdict reads of a parsed body: the envelope's shape, never its data.
fn api_shape(kind: u8, body: &JsValue) -> ApiBody {
    let mut shape = ApiBody {
        empty: kind == 0,
        json: kind == 2,
        ..ApiBody::default()
    };
    if kind == 2 && body.is_object() {
        let get = |k: &str| js_sys::Reflect::get(body, &JsValue::from_str(k)).unwrap_or(JsValue::UNDEFINED);
        shape.success = get("success").as_bool();
        shape.has_data = js_sys::Reflect::has(body, &JsValue::from_str("data")).unwrap_or(false);
        let error = get("error");
        if error.is_object() {
            if let Some(code) = string_at(&error, "code").filter(|c| !c.is_empty()) {
                shape.error = Some((string_at(&error, "name"), code, string_at(&error, "message")));
            }
        }
    }
    shape
}
