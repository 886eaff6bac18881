//! The core's [`Platform`] over the JavaScript runtime: `fetch` (the global one, or the
//! user's `options.fetch`, e.g. a Workers service binding), timers, `Date.now()`,
//! `Math.random()`, `spawn_local`, and the listeners of `on(…)`.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Date, Function, Math, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;

use super::bindings::{object, AbortController, AbortSignal, Headers, ReadResult, Request, Response, Url};
use super::error::{fetch_failure, to_js};
use super::timers::Timer;
use super::wake::{settled, Sleep};
use crate::core::error::ErrorCode;
use crate::core::platform::Signal;
use crate::core::{AuthError, Event, Incoming, LocalFuture, Outgoing, OutgoingBody, Platform, SessionInfo};

/// The function that sends requests, and the `this` it is called with.
pub enum FetchFn {
    /// `globalThis.fetch`, looked up at every call so a polyfill or test double installed
    /// later is honoured.
    Global,
    /// `options.fetch`: a function, or an object with a `fetch` method (a service binding).
    Custom { this: JsValue, function: Function },
}

/// A user's API request, kept so a refresh-and-replay or a retry sends it again.
pub struct ApiRequest {
    pub kind: ApiKind,
    /// The caller's `AbortSignal`, when it gave one: linked to every attempt so that aborting
    /// also stops reading a body already handed to the caller.
    pub signal: Option<AbortSignal>,
}

pub enum ApiKind {
    /// A string or URL input whose body can be sent twice (none, a string, bytes, a Blob,
    /// FormData, URLSearchParams): each attempt is `fetch(url, {...init, headers, …})`.
    /// The fast path: no `Request` is built up front, so no extra AbortSignal either.
    Init {
        /// The caller's init (or undefined), copied per attempt.
        init: JsValue,
        /// The caller's headers merged once; `authorization` is set per attempt.
        headers: Headers,
    },
    /// A `Request` input, or a body that can be read only once (a stream): a `Request`
    /// template, cloned per attempt.
    Template(Request),
}
/// An unread response and the controller of its attempt. Dropped while armed, it aborts the
/// attempt (a timed-out auth call, a discarded retry): nothing keeps running unobserved.
pub struct Body {
    pub response: Response,
    controller: AbortController,
    armed: bool,
}

impl Body {
    /// The caller owns the body from now on; our controller must not abort it.
    pub fn into_response(mut self) -> Response {
        self.armed = false;
        self.response.clone()
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        if self.armed {
            self.controller.abort();
        }
    }
}

/// Aborts an attempt that is dropped before its response arrives (the core's timeout).
struct AbortOnDrop(Option<AbortController>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.abort();
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Tokens,
    Expired,
    Revoked,
    Error,
}

impl EventKind {
    pub fn parse(name: &str) -> Option<EventKind> {
        Some(match name {
            "tokens" => EventKind::Tokens,
            "expired" => EventKind::Expired,
            "revoked" => EventKind::Revoked,
            "error" => EventKind::Error,
            _ => return None,
        })
    }
}

pub struct JsPlatform {
    pub fetch: FetchFn,
    pub listeners: Rc<RefCell<Vec<(EventKind, Function)>>>,
}

fn network_error(message: &str) -> AuthError {
    AuthError::new(ErrorCode::Network, message.to_owned())
}

impl JsPlatform {
    fn call_fetch(&self, input: &JsValue, init: &JsValue) -> Result<Promise, JsValue> {
        let (this, function) = match &self.fetch {
            FetchFn::Custom { this, function } => (this.clone(), function.clone()),
            FetchFn::Global => {
                let global: JsValue = js_sys::global().into();
                let f = Reflect::get(&global, &"fetch".into())?;
                (global, f.dyn_into::<Function>()?)
            }
        };
        let result = function.call2(&this, input, init)?;
        // A custom fetch may return a plain value; Promise.resolve makes it awaitable.
        Ok(Promise::resolve(&result))
    }

    /// Builds the `(input, init)` of one attempt.
    fn build(&self, request: &Outgoing<'_, ApiRequest>, signal: &AbortSignal) -> Result<(JsValue, JsValue), AuthError> {
        let fail = |_| network_error("the request could not be built");
        let bearer = request.bearer.map(|t| format!("Bearer {}", t.expose()));
        match &request.body {
            OutgoingBody::Json(body) => {
                let headers = object();
                let _ = Reflect::set(&headers, &"content-type".into(), &"application/json".into());
                let _ = Reflect::set(&headers, &"accept".into(), &"application/json".into());
                if let Some(b) = &bearer {
                    let _ = Reflect::set(&headers, &"authorization".into(), &b.into());
                }
                let init = object();
                let set = |k: &str, v: &JsValue| Reflect::set(&init, &k.into(), v).map(|_| ()).map_err(fail);
                set("method", &"POST".into())?;
                set("headers", &headers)?;
                set("body", &JsValue::from_str(body))?;
                set("redirect", &"manual".into())?;
                set("signal", signal)?;
                // Never send cookies of a browser context to the auth endpoints.
                set("credentials", &"omit".into())?;
                Ok((JsValue::from_str(request.url), init.into()))
            }
            OutgoingBody::Api {
                request: api,
                drop_body,
            } => match &api.kind {
                ApiKind::Init { init: user, headers } => {
                    let init = object();
                    if user.is_object() {
                        Object::assign(&init, user.unchecked_ref());
                    }
                    if let Some(b) = &bearer {
                        headers.set("authorization", b).map_err(fail)?;
                    }
                    let set = |k: &str, v: &JsValue| Reflect::set(&init, &k.into(), v).map(|_| ()).map_err(fail);
                    set("headers", headers)?;
                    set("redirect", &"manual".into())?;
                    set("signal", signal)?;
                    if *drop_body {
                        set("method", &JsValue::from_str(request.method))?;
                        set("body", &JsValue::UNDEFINED)?;
                    }
                    Ok((JsValue::from_str(request.url), init.into()))
                }
                ApiKind::Template(template) => {
                    let copy = template.try_clone().map_err(fail)?;
                    let headers = Headers::new(&copy.headers()).map_err(fail)?;
                    if let Some(b) = &bearer {
                        headers.set("authorization", b).map_err(fail)?;
                    }
                    let init = object();
                    let set = |k: &str, v: &JsValue| Reflect::set(&init, &k.into(), v).map(|_| ()).map_err(fail);
                    set("headers", &headers)?;
                    set("redirect", &"manual".into())?;
                    set("signal", signal)?;
                    if request.url == template.url() && !drop_body {
                        // The common case: the template with our headers, redirect mode and signal.
                        Ok((Request::new(&copy, &init).map_err(fail)?.into(), JsValue::UNDEFINED))
                    } else {
                        // After a redirect: a new URL, and the body only for 307/308.
                        set("method", &JsValue::from_str(request.method))?;
                        if !drop_body && !copy.body().is_null() {
                            set("body", &copy.body())?;
                            set("duplex", &"half".into())?;
                        }
                        Ok((JsValue::from_str(request.url), init.into()))
                    }
                }
            },
        }
    }
}

/// `AbortSignal.any` where the runtime has it; otherwise the caller's signal is linked to
/// our controller by a listener.
fn link_signals(caller: &AbortSignal, controller: &AbortController) -> AbortSignal {
    let ours = controller.signal();
    if caller.aborted() {
        controller.abort();
        return ours;
    }
    let any = Reflect::get(&js_sys::global(), &"AbortSignal".into())
        .and_then(|c| Reflect::get(&c, &"any".into()))
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok());
    if let Some(any) = any {
        let both = Array::of2(caller, &ours);
        if let Ok(signal) = any.call1(&JsValue::NULL, &both) {
            return signal.unchecked_into();
        }
    }
    if let Ok(abort) = Reflect::get(controller, &"abort".into()).and_then(|f| f.dyn_into::<Function>()) {
        let bound = abort.bind0(controller);
        let options = object();
        let _ = Reflect::set(&options, &"once".into(), &JsValue::TRUE);
        caller.add_event_listener("abort", &bound, &options);
    }
    ours
}

impl Platform for JsPlatform {
    type Body = Body;
    type Request = ApiRequest;
    type Timer = Timer;

    fn send(&self, request: Outgoing<'_, ApiRequest>) -> LocalFuture<Result<Incoming<Body>, AuthError>> {
        let controller = AbortController::new();
        let caller_signal = match &request.body {
            OutgoingBody::Api { request: api, .. } => api.signal.clone(),
            OutgoingBody::Json(_) => None,
        };
        let signal = match &caller_signal {
            Some(caller) => link_signals(caller, &controller),
            None => controller.signal(),
        };
        let is_auth = matches!(request.body, OutgoingBody::Json(_));
        let url = request.url.to_owned();
        let sent = self
            .build(&request, &signal)
            .and_then(|(input, init)| self.call_fetch(&input, &init).map_err(|e| fetch_failure(&e)));
        Box::pin(async move {
            let mut guard = AbortOnDrop(Some(controller));
            let promise = sent?;
            let response: Response = match settled(&promise).await {
                Ok(r) => r.unchecked_into(),
                Err(e) => {
                    if caller_signal.is_some_and(|s| s.aborted()) {
                        return Err(crate::core::session::aborted());
                    }
                    return Err(fetch_failure(&e));
                }
            };
            // Only the headers the core may look at for this status: each read crosses into JS.
            let status = response.status();
            let headers = response.headers();
            let location = if (300..400).contains(&status) {
                headers
                    .get("location")
                    .and_then(|l| Url::new_with_base(&l, &url).ok())
                    .map(|u| u.href())
            } else {
                None
            };
            let retry_after = if status == 429 || status >= 500 {
                headers.get("retry-after")
            } else {
                None
            };
            Ok(Incoming {
                status,
                opaque_redirect: status == 0 && response.kind() == "opaqueredirect",
                location,
                retry_after,
                date: if is_auth { headers.get("date") } else { None },
                body: Body {
                    response,
                    controller: guard.0.take().expect("controller present"),
                    armed: true,
                },
            })
        })
    }

    fn read_body(&self, body: Body, limit: usize) -> LocalFuture<Result<Vec<u8>, AuthError>> {
        Box::pin(async move {
            let mut body = body;
            let too_large = || {
                AuthError::new(
                    ErrorCode::ResponseTooLarge,
                    format!("the response body is larger than {limit} bytes"),
                )
            };
            let declared = body
                .response
                .headers()
                .get("content-length")
                .and_then(|v| v.trim().parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit as u64) {
                return Err(too_large());
            }
            let Some(stream) = body.response.body() else {
                body.armed = false;
                return Ok(Vec::new());
            };
            let reader = stream.get_reader().map_err(|e| fetch_failure(&e))?;
            let mut bytes = Vec::new();
            loop {
                let chunk: ReadResult = settled(&reader.read())
                    .await
                    .map_err(|e| fetch_failure(&e))?
                    .unchecked_into();
                if chunk.done() {
                    break;
                }
                let Some(value) = chunk.value() else { continue };
                if bytes.len() + value.length() as usize > limit {
                    let _ = reader.cancel();
                    return Err(too_large());
                }
                let start = bytes.len();
                bytes.resize(start + value.length() as usize, 0);
                value.copy_to(&mut bytes[start..]);
            }
            body.armed = false;
            Ok(bytes)
        })
    }

    fn discard(&self, body: Body) {
        drop(body);
    }

    fn now_ms(&self) -> i64 {
        Date::now() as i64
    }

    fn random(&self) -> f64 {
        Math::random()
    }

    fn sleep(&self, ms: u32) -> LocalFuture<()> {
        Box::pin(Sleep::new(ms))
    }

    fn set_timer(&self, ms: u32, callback: Box<dyn FnOnce()>) -> Timer {
        Timer::new(ms, callback)
    }

    fn spawn(&self, task: LocalFuture<()>) {
        super::executor::spawn_background(task);
    }

    fn signal(&self) -> Option<Rc<dyn Signal>> {
        Some(Rc::new(super::executor::JsSignal::new()))
    }

    fn emit(&self, event: Event) {
        let (kind, payload) = match &event {
            Event::Tokens(info) => (EventKind::Tokens, info_to_js(info)),
            Event::Expired(info) => (EventKind::Expired, info_to_js(info)),
            Event::Revoked(info) => (EventKind::Revoked, info_to_js(info)),
            Event::Error(e) => (EventKind::Error, to_js(e)),
        };
        // A snapshot: a listener may unsubscribe (or subscribe) while we iterate.
        let listeners: Vec<Function> = self
            .listeners
            .borrow()
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, f)| f.clone())
            .collect();
        for listener in listeners {
            // A throwing listener must not break the session or the other listeners.
            let _ = listener.call1(&JsValue::UNDEFINED, &payload);
        }
    }
}

/// `SessionInfo` as JavaScript sees it: dates as `Date`, absent values as `null`.
pub fn info_to_js(info: &SessionInfo) -> JsValue {
    let o = object();
    let date = |ms: Option<i64>| ms.map_or(JsValue::NULL, |ms| Date::new(&JsValue::from_f64(ms as f64)).into());
    let _ = Reflect::set(&o, &"state".into(), &info.state.as_str().into());
    let _ = Reflect::set(
        &o,
        &"clientId".into(),
        &info.client_id.map_or(JsValue::NULL, |id| JsValue::from_f64(id as f64)),
    );
    let _ = Reflect::set(&o, &"accessExpiresAt".into(), &date(info.access_expires_at));
    let _ = Reflect::set(&o, &"refreshExpiresAt".into(), &date(info.refresh_expires_at));
    o.into()
}
