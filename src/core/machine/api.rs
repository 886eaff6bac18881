//! API calls (`fetch`/`json`) as operations of the machine.
//!
//! A call is opened with [`Machine::api_open`] and lives in the machine's table of calls
//! until it ends. Everything about it is decided here: which token it carries
//! ([`Machine::api_token`]), what an answer means ([`Machine::api_response`]): hand it
//! back, read the body, replay once after a 401, retry after a delay, follow a redirect or
//! fail; the verdict on a JSON body ([`Machine::api_body`]); and its deadlines. The driver
//! performs: it runs `fetch`, reads the body, resolves `Location` with the platform's URL
//! parser, and waits for the call's [`Output::Call`] wakes.
//!
//! **Deadlines are the machine's.** Each attempt has one (`timeoutMs`, headers and, for
//! `json()`, the body); a backoff has one. They take part in [`Machine::poll_timeout`], so
//! the driver's one timer covers API calls too, and a call settles when its deadline
//! passes whatever the `fetch` it was given does with its `AbortSignal`: the machine wakes
//! the call with [`Wake::Abandon`] (retry follows) or [`Wake::Fail`]. A caller's abort
//! ([`Machine::api_abort`]) and `dispose()` end it at once.
//!
//! A call's client-made errors name it: `GET /v1/items: no complete answer within
//! timeoutMs`, the path (never the query) withheld when it holds a secret of the session.

#[allow(unused_imports)]
use crate::prelude::*;

use super::{timeout_error, Log, Machine, Need, Output, TokenStep, Waited, MAX_REDIRECTS};
use crate::core::envelope::{ApiBody, ApiJson};
use crate::core::error::{AuthError, Cause, ErrorCode};
use crate::core::http_date::parse_retry_after;
use crate::core::retry::{self, backoff_ms, RetryAfter};
use crate::core::text::{self, cat, int};

/// Names an API call in the machine's table.
pub type CallId = u32;

/// What the caller of an API call gets back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// `fetch()`: the `Response` (HTTP statuses are not errors).
    Response,
    /// `json()`: the envelope's `data`, or an error.
    Data,
}

/// When the call must refresh behind its response rather than wait (a `waitUntil` given).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behind {
    No,
    WaitUntil,
}

/// What became of an API attempt that produced no response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiFailure {
    /// `fetch` threw or rejected: `cause` is the error's `name` and `code`, never its message.
    Network(Option<Cause>),
    /// What `fetch` resolved to is not a `Response`.
    NotAResponse,
}

/// Why a body could not be read for `json()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyFailure {
    Network(Option<Cause>),
    /// Larger than `maxResponseBytes`.
    TooLarge,
}

/// The answer to an API input: what the driver does next with the call.
#[derive(Clone, Debug, PartialEq)]
pub enum ApiStep {
    /// `fetch()`: hand the response to the caller. The call has ended.
    Return,
    /// `json()`: read the body (within the attempt's deadline and `maxResponseBytes`),
    /// then [`Machine::api_body`].
    Read,
    /// A redirect: resolve its `Location` against the request URL and tell
    /// [`Machine::api_location`] the origin (release the body first).
    Locate,
    /// Follow the redirect to the resolved location (`to_get`: as a body-less GET), with a
    /// token from [`Machine::api_token`].
    Follow { to_get: bool },
    /// Send again with a token from [`Machine::api_token`] (the replay after a 401).
    Token,
    /// Release the body and wait for the call's next [`Wake`] (a retry's backoff).
    Wait,
    /// `json()`'s verdict: the envelope's `data`. The call has ended.
    Data,
    /// `json()`'s verdict: nothing (a 2xx with an empty body). The call has ended.
    Nothing,
    /// `json()`'s verdict in OAuth 2.0 mode: the body's JSON as it is (no envelope).
    Whole,
    /// The call fails with this error. It has ended.
    Fail(AuthError),
    /// The call ended meanwhile (its deadline, an abort, `dispose()`): discard the answer.
    Gone,
}

/// What the machine tells a call that is waiting on something other than its own input.
#[derive(Clone, Debug, PartialEq)]
pub enum Wake {
    /// The attempt's deadline passed and it will be retried: abort it and ignore its
    /// answer; a [`Wake::Send`] follows after the backoff.
    Abandon,
    /// The backoff is over: send again, with a token from [`Machine::api_token`].
    Send,
    /// The call ends with this error (its deadline, `dispose()`).
    Fail(AuthError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallStage {
    /// Asking for a token; `after_401`: the first ask after a 401 to the pair `serial`.
    Token {
        after_401: bool,
    },
    Sending {
        deadline: i64,
    },
    /// A 3xx; the driver resolves its `Location`.
    Redirected {
        deadline: i64,
    },
    Reading {
        deadline: i64,
    },
    Backoff {
        until: i64,
    },
}

/// One API call in flight.
#[derive(Clone, Debug)]
pub(super) struct Call {
    id: CallId,
    want: Want,
    behind: Behind,
    /// As sent (uppercase); a 303 turns it into GET.
    method: String,
    /// The URL's path, for messages; never the query.
    path: String,
    attempt: u32,
    redirects: u32,
    replayed: bool,
    /// The pair the current attempt carries.
    serial: u32,
    /// The status being handled, and its `Retry-After` (ms) when it was a 429 or 5xx.
    status: u16,
    retry_after_ms: Option<u64>,
    stage: CallStage,
}

impl Call {
    fn idempotent(&self) -> bool {
        retry::is_idempotent(&self.method)
    }

    fn deadline(&self) -> Option<i64> {
        match self.stage {
            CallStage::Token { .. } => None,
            CallStage::Sending { deadline }
            | CallStage::Redirected { deadline }
            | CallStage::Reading { deadline }
            | CallStage::Backoff { until: deadline } => Some(deadline),
        }
    }
}

fn aborted() -> AuthError {
    AuthError::new(ErrorCode::Aborted, "the operation was aborted by its AbortSignal")
}

impl Machine {
    /// Resolves a user's input against the host: absolute URLs pass through, anything else
    /// is appended to the host (its path prefix included).
    pub fn resolve(&self, input: &str) -> String {
        if crate::core::url::has_scheme(input) {
            input.to_owned()
        } else {
            self.config.base.join(input)
        }
    }

    /// May a request to `origin` (as WHATWG `URL` serialises it) carry the bearer token?
    pub fn check_origin(&self, origin: &str) -> Result<(), AuthError> {
        if self.config.may_receive_origin(origin) {
            return Ok(());
        }
        let shown: String = origin.chars().filter(|c| !c.is_control()).take(200).collect();
        let mut message = shown;
        message.push_str(" may not receive the bearer token; only the host's origin and allowedOrigins may");
        Err(AuthError::new(ErrorCode::OriginNotAllowed, message))
    }

    /// A new API call with `method` (uppercase, as it will be sent) to a URL whose path is
    /// `path` (its origin already checked with [`Machine::check_origin`]).
    pub fn api_open(&mut self, method: &str, path: &str, want: Want, behind: Behind) -> Result<CallId, AuthError> {
        let id = self.id();
        let call = Call {
            id,
            want,
            behind,
            method: method.to_owned(),
            path: path.to_owned(),
            attempt: 0,
            redirects: 0,
            replayed: false,
            serial: 0,
            status: 0,
            retry_after_ms: None,
            stage: CallStage::Token { after_401: false },
        };
        if self.is_disposed() {
            return Err(self.about_call(&call, super::disposed()));
        }
        self.calls.push(call);
        Ok(id)
    }

    /// The API calls in flight (opened and not ended).
    pub fn api_calls(&self) -> usize {
        self.calls.len()
    }

    fn call_at(&self, id: CallId) -> Option<usize> {
        self.calls.iter().position(|c| c.id == id)
    }

    /// Ends the call and returns `error` named after it.
    fn end_call(&mut self, at: usize, error: AuthError) -> AuthError {
        let call = self.calls.swap_remove(at);
        self.about_call(&call, error)
    }

    /// A client-made error names the call: `GET /v1/items: …`; a server's envelope error
    /// keeps the server's words. The path is withheld when it holds a secret.
    fn about_call(&self, call: &Call, error: AuthError) -> AuthError {
        if matches!(error.kind(), ErrorCode::Server { .. }) {
            return error;
        }
        let secrets = self.secrets();
        let tainted = secrets.iter().any(|s| !s.is_empty() && text::contains(&call.path, s));
        let path = if tainted { "(path withheld)" } else { call.path.as_str() };
        let message = cat(&[&call.method, " ", path, ": ", error.message()]);
        error.with_message(message).redact(&secrets)
    }

    /// Which token the call sends now. `waited`/`round` as for [`Machine::token`]. On
    /// `Ready` the attempt starts: its deadline runs from `now`.
    pub fn api_token(&mut self, now: i64, call: CallId, waited: Waited, round: u32) -> TokenStep {
        let Some(at) = self.call_at(call) else {
            return TokenStep::Fail(self.gone_error());
        };
        let c = &self.calls[at];
        let CallStage::Token { after_401 } = c.stage else {
            return TokenStep::Fail(self.end_call(at, invalid_order()));
        };
        let step = if after_401 && round == 0 {
            self.token_after_401(now, c.serial)
        } else {
            let need = match (c.replayed, c.behind) {
                (true, _) => Need::Replay,
                (false, Behind::WaitUntil) => Need::Background,
                (false, Behind::No) => Need::Lenient,
            };
            self.token(now, need, waited, round)
        };
        // The token step may have started or settled flights; the call is still at `at`
        // (only this file removes calls).
        match &step {
            TokenStep::Ready { serial, .. } => {
                let timeout = self.config.timeout_ms as i64;
                let c = &mut self.calls[at];
                c.serial = *serial;
                c.stage = CallStage::Sending {
                    deadline: now + timeout,
                };
                let attempt = c.attempt;
                self.log(Log::ApiRequest { attempt });
                step
            }
            TokenStep::Wait(_) => step,
            TokenStep::Fail(e) => {
                let e = e.clone();
                TokenStep::Fail(self.end_call(at, e))
            }
            TokenStep::Rethrow => {
                self.calls.swap_remove(at);
                step
            }
        }
    }

    fn gone_error(&self) -> AuthError {
        if self.is_disposed() {
            super::disposed()
        } else {
            aborted()
        }
    }

    /// The attempt got a response with `status` (`opaque_redirect`: a browser's
    /// `opaqueredirect`, whose status and location it hides) and, for a 429 or 5xx, its
    /// `Retry-After` header.
    pub fn api_response(
        &mut self,
        now: i64,
        call: CallId,
        status: u16,
        opaque_redirect: bool,
        retry_after: Option<&str>,
    ) -> ApiStep {
        self.api_challenged(now, call, status, opaque_redirect, retry_after, None)
    }

    /// [`Machine::api_response`] with the response's `WWW-Authenticate` header: in OAuth 2.0
    /// mode a Bearer `invalid_token` challenge is the 401 it means, whatever the status.
    pub fn api_challenged(
        &mut self,
        now: i64,
        call: CallId,
        status: u16,
        opaque_redirect: bool,
        retry_after: Option<&str>,
        www_authenticate: Option<&str>,
    ) -> ApiStep {
        let Some(at) = self.call_at(call) else {
            return ApiStep::Gone;
        };
        let CallStage::Sending { deadline } = self.calls[at].stage else {
            return ApiStep::Gone;
        };
        self.log(Log::ApiResponse { status, code: None });
        let retry_after_ms = if status == 429 || (500..600).contains(&status) {
            retry_after.and_then(|h| parse_retry_after(h, now))
        } else {
            None
        };
        let c = &mut self.calls[at];
        c.status = status;
        c.retry_after_ms = retry_after_ms;
        // 304 answers a conditional request: it is not a redirect.
        if opaque_redirect || ((300..400).contains(&status) && status != 304) {
            c.stage = CallStage::Redirected { deadline };
            return ApiStep::Locate;
        }
        // RFC 6750 §3.1: an OAuth 2.0 resource server may say so on a 400 or 403 too.
        let refused =
            status == 401 || (self.config.oauth_api && www_authenticate.is_some_and(crate::core::oauth::invalid_token));
        let c = &mut self.calls[at];
        if refused && !c.replayed {
            c.replayed = true;
            c.stage = CallStage::Token { after_401: true };
            return ApiStep::Token;
        }
        let (idempotent, attempt, want) = (c.idempotent(), c.attempt, c.want);
        let verdict = retry::retry_after(retry_after, now, self.config.max_retry_after_ms);
        if idempotent && retry::is_retryable_api_status(status) && attempt < self.config.retries {
            let delay = match verdict {
                RetryAfter::Backoff => Some(backoff_ms(attempt, self.random())),
                RetryAfter::Wait(ms) => Some(ms),
                RetryAfter::TooLong(_) => None,
            };
            if let Some(delay) = delay {
                let code = if status == 429 { "RATE_LIMITED" } else { "SERVER_ERROR" };
                self.backoff(now, at, delay, code);
                return ApiStep::Wait;
            }
        }
        if let RetryAfter::TooLong(ms) = verdict {
            if retry::is_retryable_api_status(status) || (500..600).contains(&status) {
                // Over maxRetryAfterSeconds: `json()` fails at once; `fetch()` hands the
                // response back unretried.
                return match want {
                    Want::Response => self.returned(at),
                    Want::Data => {
                        let e = retry::too_long(ms, status).with_retry_after_ms(Some(ms));
                        ApiStep::Fail(self.end_call(at, e))
                    }
                };
            }
        }
        match want {
            Want::Response => self.returned(at),
            Want::Data => {
                self.calls[at].stage = CallStage::Reading { deadline };
                ApiStep::Read
            }
        }
    }

    fn returned(&mut self, at: usize) -> ApiStep {
        self.calls.swap_remove(at);
        ApiStep::Return
    }

    /// Schedules the call's next attempt after `delay` ms.
    fn backoff(&mut self, now: i64, at: usize, delay: u32, code: &'static str) {
        let c = &mut self.calls[at];
        c.attempt += 1;
        c.stage = CallStage::Backoff {
            until: now + delay as i64,
        };
        let attempt = c.attempt;
        self.log(Log::ApiRetry {
            attempt,
            delay_ms: delay,
            code,
        });
    }

    /// The redirect's `Location`, resolved against the request URL: `Some(origin)` (WHATWG
    /// `URL#origin`), or `None` when there is none or it is not a URL. Only a location that
    /// may receive the token is followed, at most [`MAX_REDIRECTS`] times.
    pub fn api_location(&mut self, call: CallId, origin: Option<&str>) -> ApiStep {
        let Some(at) = self.call_at(call) else {
            return ApiStep::Gone;
        };
        let c = &self.calls[at];
        if !matches!(c.stage, CallStage::Redirected { .. }) {
            return ApiStep::Gone;
        }
        let allowed = origin.is_some_and(|o| self.config.may_receive_origin(o));
        let follow = allowed && c.redirects < MAX_REDIRECTS;
        let status = c.status;
        self.log(Log::Redirect {
            status,
            followed: follow,
        });
        if follow {
            let c = &mut self.calls[at];
            let method = c.method.as_str();
            let to_get = (status == 303 && method != "HEAD") || (matches!(status, 301 | 302) && method == "POST");
            if to_get {
                c.method = "GET".to_owned();
            }
            c.redirects += 1;
            c.stage = CallStage::Token { after_401: false };
            return ApiStep::Follow { to_get };
        }
        match self.calls[at].want {
            Want::Response => self.returned(at),
            Want::Data => {
                let e = if origin.is_some() && !allowed {
                    AuthError::new(
                        ErrorCode::RedirectBlocked,
                        "the server redirected to another origin; the redirect was not followed",
                    )
                } else if origin.is_some() {
                    AuthError::new(
                        ErrorCode::Http,
                        cat(&["too many redirects (more than ", &int(MAX_REDIRECTS as i64), ")"]),
                    )
                } else {
                    AuthError::new(
                        ErrorCode::Http,
                        cat(&[
                            "the server answered HTTP ",
                            &int(status as i64),
                            " without a usable Location",
                        ]),
                    )
                };
                ApiStep::Fail(self.end_call(at, e.with_status(status)))
            }
        }
    }

    /// The attempt produced no response.
    pub fn api_failed(&mut self, now: i64, call: CallId, failure: ApiFailure) -> ApiStep {
        let Some(at) = self.call_at(call) else {
            return ApiStep::Gone;
        };
        if !matches!(self.calls[at].stage, CallStage::Sending { .. }) {
            return ApiStep::Gone;
        }
        let error = match failure {
            ApiFailure::Network(cause) => {
                AuthError::new(ErrorCode::Network, "the request failed: no answer from the server").with_cause(cause)
            }
            ApiFailure::NotAResponse => AuthError::invalid_response("fetch did not resolve to a Response"),
        };
        self.log(Log::ApiResponse {
            status: 0,
            code: Some(client_code(&error)),
        });
        self.attempt_over(now, at, error)
    }

    /// An attempt that ended without an answer: retried when its method is idempotent and
    /// the error may pass, else the call fails.
    fn attempt_over(&mut self, now: i64, at: usize, error: AuthError) -> ApiStep {
        let c = &self.calls[at];
        if c.idempotent() && error.retryable() && c.attempt < self.config.retries {
            let delay = backoff_ms(c.attempt, self.random());
            self.backoff(now, at, delay, client_code(&error));
            return ApiStep::Wait;
        }
        ApiStep::Fail(self.end_call(at, error))
    }

    /// `json()`: the body as read (its shape, after `JSON.parse`), or why it could not be.
    pub fn api_body(&mut self, call: CallId, body: Result<&ApiBody, BodyFailure>) -> ApiStep {
        let Some(at) = self.call_at(call) else {
            return ApiStep::Gone;
        };
        if !matches!(self.calls[at].stage, CallStage::Reading { .. }) {
            return ApiStep::Gone;
        }
        let c = &self.calls[at];
        let status = c.status;
        let result = match body {
            Ok(shape) if self.config.oauth_api => crate::core::oauth::api_json(status, shape),
            Ok(shape) => crate::core::envelope::api_json(status, shape, &self.secrets()).map_err(|e| {
                let ms = c.retry_after_ms;
                e.with_retry_after_ms(ms)
            }),
            Err(BodyFailure::TooLarge) => Err(AuthError::new(
                ErrorCode::ResponseTooLarge,
                cat(&[
                    "the response body is larger than maxResponseBytes (",
                    &int(self.config.max_response_bytes as i64),
                    ")",
                ]),
            )
            .with_status(status)),
            Err(BodyFailure::Network(cause)) => {
                Err(AuthError::new(ErrorCode::Network, "the response body could not be read").with_cause(cause))
            }
        };
        match result {
            Ok(ApiJson::Data) => {
                self.calls.swap_remove(at);
                ApiStep::Data
            }
            Ok(ApiJson::Nothing) => {
                self.calls.swap_remove(at);
                ApiStep::Nothing
            }
            Ok(ApiJson::Whole) => {
                self.calls.swap_remove(at);
                ApiStep::Whole
            }
            Err(e) => ApiStep::Fail(self.end_call(at, e)),
        }
    }

    /// The caller's `AbortSignal` fired: the call ends now with ABORTED (its attempt, if
    /// any, is the driver's to abort). `None` when the call had already ended.
    pub fn api_abort(&mut self, call: CallId) -> Option<AuthError> {
        let at = self.call_at(call)?;
        Some(self.end_call(at, aborted()))
    }

    /// The driver is done with the call for a reason of its own (the runtime refused to
    /// build the next request). Nothing if it had already ended.
    pub fn api_close(&mut self, call: CallId) {
        if let Some(at) = self.call_at(call) {
            self.calls.swap_remove(at);
        }
    }

    /// The earliest deadline of the calls in flight.
    pub(super) fn calls_deadline(&self) -> Option<i64> {
        self.calls.iter().filter_map(Call::deadline).min()
    }

    /// Moves on every call whose deadline is due.
    pub(super) fn calls_timeout(&mut self, now: i64) {
        let mut at = 0;
        while at < self.calls.len() {
            let c = &self.calls[at];
            let id = c.id;
            let due = c.deadline().is_some_and(|d| d <= now);
            if !due {
                at += 1;
                continue;
            }
            match c.stage {
                CallStage::Backoff { .. } => {
                    self.calls[at].stage = CallStage::Token { after_401: false };
                    self.push(Output::Call(id, Wake::Send));
                    at += 1;
                }
                CallStage::Sending { .. } | CallStage::Redirected { .. } => {
                    self.log(Log::ApiResponse {
                        status: 0,
                        code: Some("TIMEOUT"),
                    });
                    match self.attempt_over(now, at, timeout_error()) {
                        ApiStep::Wait => {
                            self.push(Output::Call(id, Wake::Abandon));
                            at += 1;
                        }
                        // Ended (removed at `at`): the next call moved into its place.
                        ApiStep::Fail(e) => self.push(Output::Call(id, Wake::Fail(e))),
                        _ => at += 1,
                    }
                }
                CallStage::Reading { .. } => {
                    let e = self.end_call(at, timeout_error());
                    self.push(Output::Call(id, Wake::Fail(e)));
                }
                CallStage::Token { .. } => at += 1,
            }
        }
    }

    /// `dispose()`: every call ends with DISPOSED.
    pub(super) fn calls_dispose(&mut self) {
        for call in core::mem::take(&mut self.calls) {
            let e = self.about_call(&call, super::disposed());
            self.push(Output::Call(call.id, Wake::Fail(e)));
        }
    }
}

/// The code of a client-made error, as a static string for log records.
fn client_code(e: &AuthError) -> &'static str {
    match e.kind() {
        ErrorCode::Network => "NETWORK_ERROR",
        ErrorCode::Timeout => "TIMEOUT",
        _ => "INVALID_RESPONSE",
    }
}

/// An input for a call in another stage than it expects: a driver bug, reported as such
/// rather than acted on.
fn invalid_order() -> AuthError {
    AuthError::invalid_response("the call was driven out of order")
}
