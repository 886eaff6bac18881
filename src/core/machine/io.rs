//! What passes between the machine and its driver: the inputs it is fed (auth and storage
//! answers, what a caller needs), the outputs it polls out (requests, storage calls,
//! settled flights, events, log records) and what its entry points answer.

#[allow(unused_imports)]
use crate::prelude::*;

use super::{CallId, Wake};
use crate::core::envelope::AuthBody;
use crate::core::error::{AuthError, Cause};
use crate::core::json::Json;
use crate::core::oauth::Signing;
use crate::core::secret::AccessToken;
/// Names a flight: one promise in the driver, any number of waiters.
pub type FlightId = u32;
/// Names one I/O the driver performs for the machine (an auth attempt or a storage call).
pub type IoId = u32;

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
    /// Superseded: ask the machine again ([`Machine::rejoin`](super::Machine::rejoin),
    /// [`Machine::token`](super::Machine::token)).
    Again,
}

/// Which auth endpoint a request goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Login,
    Refresh,
    Revoke,
    /// OAuth 2.0: the authorization server's metadata (RFC 8414 / OpenID discovery).
    Discovery,
}

/// How an auth request is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// `POST`, `Content-Type: application/json` (the provider's protocol).
    Json,
    /// `POST`, `Content-Type: application/x-www-form-urlencoded`, `Accept: application/json`.
    Form,
    /// `GET`, `Accept: application/json`, no body.
    Get,
}

/// An auth request to send: `POST url`, `Content-Type: application/json`, this body,
/// redirects not followed. The driver bounds nothing itself: the machine's deadline covers
/// the attempt (headers and body) and cancels it.
#[derive(Clone, Debug, PartialEq)]
pub struct AuthRequest {
    pub id: IoId,
    pub endpoint: Endpoint,
    pub url: String,
    pub wire: Wire,
    /// Holds a secret (password or refresh token): write it to the wire only.
    pub body: String,
    /// The `Authorization` header (`Bearer …`, `Basic …`): a secret too.
    pub authorization: Option<String>,
    /// private_key_jwt: the client assertion for the driver to sign with the client's key
    /// and append, `<input>.<signature>`, to `body`, which ends with `client_assertion=`.
    pub sign: Option<Signing>,
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
    /// A record for the `logger` hook (only after
    /// [`Machine::set_logging`](super::Machine::set_logging)). Never a secret.
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
    /// The runtime could not sign the client assertion (private_key_jwt) with the key it
    /// was given: nothing was sent. `cause`: the WebCrypto error's `name`.
    Unsigned(Option<Cause>),
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
    /// Nothing to wait for: read [`Machine::result`](super::Machine::result).
    Ready,
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

/// Whether the deadline of [`Machine::poll_timeout`](super::Machine::poll_timeout) is
/// awaited work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// A retry, an attempt's timeout or a storage deadline: someone awaits it.
    Alive,
    /// Only the auto-refresh: must not keep a process alive.
    Idle,
}
