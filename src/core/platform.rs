//! What the session needs from the world, as small traits: HTTP, a clock, sleeping,
//! background tasks, timers, storage and event delivery. The wasm layer implements them over
//! `fetch`, `setTimeout` and `Date.now()`; tests implement them with a scripted server and a
//! fake clock, which is how the whole protocol is proven natively.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use crate::core::error::AuthError;
pub use crate::core::flight::Signal;
use crate::core::secret::AccessToken;
use crate::core::session::SessionInfo;

/// A boxed single-threaded future: everything here runs on one JavaScript thread.
pub type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// One HTTP request the session sends.
pub struct Outgoing<'a, R> {
    pub url: &'a str,
    pub method: &'a str,
    /// `Authorization: Bearer …` when set. The session only sets it for allowed origins.
    pub bearer: Option<&'a AccessToken>,
    pub body: OutgoingBody<'a, R>,
}

pub enum OutgoingBody<'a, R> {
    /// An auth call: `POST`, `Content-Type: application/json`, this body, redirects not followed.
    Json(&'a str),
    /// A user's API request, replayable (the platform clones it per attempt). `drop_body` is
    /// set after a 303 (or a 301/302 of a POST) turned it into a body-less GET.
    Api { request: &'a R, drop_body: bool },
}

/// The head of a response, with the body left unread.
pub struct Incoming<B> {
    pub status: u16,
    /// True for a redirect the runtime refused to expose (a browser's `opaqueredirect`).
    pub opaque_redirect: bool,
    /// `Location`, already resolved against the request URL.
    pub location: Option<String>,
    pub retry_after: Option<String>,
    pub date: Option<String>,
    pub body: B,
}

/// Something the session reports to `on(…)` listeners.
#[derive(Clone, Debug)]
pub enum Event {
    Tokens(SessionInfo),
    Expired(SessionInfo),
    Revoked(SessionInfo),
    Error(AuthError),
}

pub trait Platform: 'static {
    /// An unread response body.
    type Body: 'static;
    /// A user's API request, kept so it can be sent again after a refresh or a retry.
    type Request: 'static;
    /// A scheduled callback; dropping it cancels the callback.
    type Timer: 'static;

    /// Sends a request and resolves with the response head. Network failures are
    /// NETWORK_ERROR; the caller's abort is ABORTED. Dropping the future aborts the request.
    fn send(&self, request: Outgoing<'_, Self::Request>) -> LocalFuture<Result<Incoming<Self::Body>, AuthError>>;
    /// Reads a whole body, failing with RESPONSE_TOO_LARGE past `limit` bytes.
    fn read_body(&self, body: Self::Body, limit: usize) -> LocalFuture<Result<Vec<u8>, AuthError>>;
    /// Releases a body that will not be read (frees the connection).
    fn discard(&self, body: Self::Body);

    /// Milliseconds since the Unix epoch on the local clock.
    fn now_ms(&self) -> i64;
    /// A uniform random number in [0, 1), for retry jitter.
    fn random(&self) -> f64;
    /// Resolves after `ms`. Keeps a Node process alive while pending (a retry in progress is
    /// work the user awaits); dropping it cancels the underlying timer.
    fn sleep(&self, ms: u32) -> LocalFuture<()>;
    /// Calls `callback` after `ms` without keeping the process alive (the auto-refresh timer).
    fn set_timer(&self, ms: u32, callback: Box<dyn FnOnce()>) -> Self::Timer;
    /// Runs a task to completion independently of whoever started it.
    fn spawn(&self, task: LocalFuture<()>);
    /// Delivers an event to the listeners registered for it.
    fn emit(&self, event: Event);
    /// How waiters of a shared login or refresh are woken: `None` (the default) wakes them
    /// directly; JavaScript returns one promise per flight (see [`Signal`]).
    fn signal(&self) -> Option<Rc<dyn Signal>> {
        None
    }
}

/// Where tokens persist between processes and isolates: the shape of a Workers KV namespace.
pub trait Storage {
    fn get(&self, key: &str) -> LocalFuture<Result<Option<String>, AuthError>>;
    fn put(&self, key: &str, value: String) -> LocalFuture<Result<(), AuthError>>;
    fn delete(&self, key: &str) -> LocalFuture<Result<(), AuthError>>;
}
