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
use crate::core::envelope::{ApiBody, ApiJson, AuthBody};
use crate::core::machine::{
    ApiFailure, ApiStep, AuthReply, Endpoint, Event, IoFailure, Keep, Log, Machine, Need, Outcome, Output, Persistence,
    Replay, SessionInfo, Step, StorageOp, StorageReply, TokenStep, Waited,
};
use crate::core::secret::{AccessToken, Password};
use crate::core::{AuthError, Cause, Credentials};

#[wasm_bindgen]
extern "C" {
    /// The JavaScript side of one session (see `pkg-template/session.js`).
    pub type Driver;

    #[wasm_bindgen(method)]
    fn send(this: &Driver, io: u32, endpoint: u8, url: &str, body: &str, bearer: Option<String>, max_bytes: u32);
    #[wasm_bindgen(method)]
    fn cancel(this: &Driver, io: u32);
    /// `op`: 0 get, 1 put, 2 delete, 3 acquire (`value`: the lease's time to live in ms),
    /// 4 release (`value`: the lease id).
    #[wasm_bindgen(method)]
    fn storage(this: &Driver, op: u8, io: u32, key: &str, value: Option<String>);
    /// `outcome`: 0 done, 1 nothing, 2 failed (with `error`), 3 again.
    #[wasm_bindgen(method)]
    fn settle(this: &Driver, flight: u32, outcome: u8, error: JsValue);
    /// `kind`: 0 tokens (with `reason`), 1 expired, 2 revoked (payload: info), 3 error.
    #[wasm_bindgen(method)]
    fn event(this: &Driver, kind: u8, payload: JsValue, reason: &str);
    /// Arms the one timer for `at` (local epoch ms; `-1`: none). `keep`: work a caller
    /// awaits, so the timer keeps the process alive.
    #[wasm_bindgen(method)]
    fn arm(this: &Driver, at: f64, keep: bool);
    /// A record for the `logger` hook: `event` ("refresh", "login", "request", "response",
    /// "retry") and the fields that apply (else undefined).
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
    match record {
        Log::Refresh { why } => d.log("refresh", None, None, None, None, None, Some(why.as_str().to_owned())),
        Log::Login { why } => d.log("login", None, None, None, None, None, Some(why.as_str().to_owned())),
        Log::Request { endpoint, attempt } => d.log(
            "request",
            endpoint_name(endpoint),
            Some(attempt),
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
        ),
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
    /// Of the last `Ready` token step: the token and a background flight (0: none).
    token: Option<AccessToken>,
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
            token: None,
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
                Output::Storage(StorageOp::Get { id, key }) => d.storage(0, id, &key, None),
                Output::Storage(StorageOp::Put { id, key, value }) => d.storage(1, id, &key, Some(value)),
                Output::Storage(StorageOp::Delete { id, key }) => d.storage(2, id, &key, None),
                Output::Storage(StorageOp::Acquire { id, key, ttl_ms }) => {
                    d.storage(3, id, &key, Some(crate::core::text::int(ttl_ms as i64)))
                }
                Output::Storage(StorageOp::Release { id, key, lease }) => d.storage(4, id, &key, Some(lease)),
                Output::Settle(flight, outcome) => match outcome {
                    Outcome::Done => d.settle(flight, 0, JsValue::UNDEFINED),
                    Outcome::Nothing => d.settle(flight, 1, JsValue::UNDEFINED),
                    Outcome::Failed(e) => d.settle(flight, 2, descriptor(d, &e)),
                    Outcome::Again => d.settle(flight, 3, JsValue::UNDEFINED),
                },
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
        // The copy kept for `token_text` must not outlive the pair: after a revoke, an expiry
        // or a dispose nothing may hand out the old token.
        if self.machine.is_disposed() || self.machine.info().state != crate::core::machine::Phase::Active {
            self.token = None;
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
        let waited = match waited {
            0 => Waited::Nothing,
            1 => Waited::Done,
            2 => Waited::Failed { retryable: true },
            _ => Waited::Failed { retryable: false },
        };
        let step = self.machine.token(now as i64, need, waited, round);
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
            TokenStep::Ready {
                token,
                serial,
                background,
            } => {
                self.token = Some(token);
                self.background = background.unwrap_or(0);
                Ok(serial as f64)
            }
            TokenStep::Wait(f) => Ok(-(f as f64)),
            TokenStep::Rethrow => Ok(0.0),
            TokenStep::Fail(e) => Err(descriptor(d, &e)),
        }
    }

    /// The access token of the last `Ready` step. Crossing into JavaScript costs a string
    /// copy, so the driver asks only when the serial it got is not the one it holds.
    pub fn token_text(&self) -> Option<String> {
        self.token.as_ref().map(|t| t.expose().to_owned())
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

    /// An API attempt got no response. `kind`: 0 network (with the cause), 1 timeout, 2 not
    /// a Response. Returns the delay before the retry, or throws the error.
    #[allow(clippy::too_many_arguments)]
    pub fn api_failure(
        &mut self,
        d: &Driver,
        kind: u8,
        cause_name: Option<String>,
        cause_code: Option<String>,
        method: &str,
        attempt: u32,
    ) -> Result<u32, JsValue> {
        let failure = match kind {
            0 => ApiFailure::Network(cause(cause_name, cause_code)),
            1 => ApiFailure::Timeout,
            _ => ApiFailure::NotAResponse,
        };
        match self.machine.api_failure(failure, method, attempt) {
            ApiStep::Retry(ms) => Ok(ms),
            ApiStep::Fail(e) => Err(descriptor(d, &e)),
            _ => Ok(0),
        }
    }

    /// An API attempt got `status`: -1 return it, -2 replay after a 401, else the delay
    /// before a retry.
    pub fn api_status(
        &mut self,
        now: f64,
        status: u16,
        retry_after: Option<String>,
        method: &str,
        attempt: u32,
        replayed: bool,
    ) -> f64 {
        let replay = if replayed { Replay::Done } else { Replay::NotYet };
        match self
            .machine
            .api_status(now as i64, status, retry_after.as_deref(), method, attempt, replay)
        {
            ApiStep::Replay => -2.0,
            ApiStep::Retry(ms) => ms as f64,
            _ => -1.0,
        }
    }

    /// A redirect to an API request: 0 hand it back, 1 follow, 2 follow as a body-less GET.
    pub fn api_redirect(&self, status: u16, method: &str, location_origin: Option<String>, redirects: u32) -> u8 {
        match self
            .machine
            .api_redirect(status, method, location_origin.as_deref(), redirects)
        {
            ApiStep::Follow { to_get: false } => 1,
            ApiStep::Follow { to_get: true } => 2,
            _ => 0,
        }
    }

    /// `json()`'s verdict on a body. `kind` as for [`Core::auth_reply`]. Returns true when
    /// the caller resolves with `body.data`, false with `undefined`; throws the error.
    pub fn api_json(&self, d: &Driver, status: u16, kind: u8, body: &JsValue) -> Result<bool, JsValue> {
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
        match self.machine.api_json(status, &shape) {
            Ok(ApiJson::Data) => Ok(true),
            Ok(ApiJson::Nothing) => Ok(false),
            Err(e) => Err(descriptor(d, &e)),
        }
    }
}
