//! The exported `AuthSession` class. Every method takes `&self` and returns at once (a
//! promise for the async ones): the Rust state lives behind the core's `Rc`, cloned into
//! each future, so concurrent calls from JavaScript never meet wasm-bindgen's "recursive use
//! of an object" error.

use std::rc::Rc;

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;

use super::bindings::{AbortSignal, Headers, Request, Url};
use super::error::to_js;
use super::executor;
use super::options::{self, credentials, WaitUntil};
use super::platform::{info_to_js, ApiKind, ApiRequest, EventKind, JsPlatform};
use super::wake::{settled, Sleep};
use crate::core::config::Credentials;
use crate::core::envelope::{api_json, ApiBody, ApiJson};
use crate::core::error::ErrorCode;
use crate::core::race::{race, Either};
use crate::core::{Abort, AuthError, Platform, Session, Storage};

/// A session against one API host: logs in, keeps the tokens fresh, and sends authenticated
/// requests. See the README for the whole contract.
#[wasm_bindgen]
pub struct AuthSession {
    core: Session<JsPlatform>,
    wait_until: Option<WaitUntil>,
}

/// A prepared `fetch`/`json` call.
struct Call {
    request: ApiRequest,
    url: String,
    method: String,
    /// With a `waitUntil`, a token inside the margin is used at once and refreshed behind.
    background: bool,
    wait_until: Option<WaitUntil>,
}

fn reject(e: AuthError) -> Promise {
    Promise::reject(&to_js(&e))
}

/// The caller's `AbortSignal` as a core [`Abort`]: a promise resolved by its `abort` event.
/// The listener is the promise's own `resolve` (no Rust closure to leak) and is removed when
/// the call ends.
struct SignalWatch {
    signal: AbortSignal,
    resolve: Option<Function>,
}

impl SignalWatch {
    /// No signal, nothing to watch (and no listener to add or remove).
    fn watch(signal: Option<AbortSignal>) -> (Option<SignalWatch>, Abort) {
        match signal {
            Some(s) => {
                let (w, a) = SignalWatch::new(s);
                (Some(w), a)
            }
            None => (None, Abort::none()),
        }
    }

    fn new(signal: AbortSignal) -> (SignalWatch, Abort) {
        if signal.aborted() {
            return (SignalWatch { signal, resolve: None }, Abort::new(Box::pin(async {})));
        }
        let mut resolve = None;
        let promise = Promise::new(&mut |res: Function, _rej: Function| {
            let once = js_sys::Object::new();
            let _ = Reflect::set(&once, &"once".into(), &JsValue::TRUE);
            signal.add_event_listener("abort", &res, &once);
            resolve = Some(res);
        });
        let fired = settled(&promise);
        (
            SignalWatch { signal, resolve },
            Abort::new(Box::pin(async move {
                let _ = fired.await;
            })),
        )
    }
}

impl Drop for SignalWatch {
    fn drop(&mut self) {
        if let Some(f) = &self.resolve {
            self.signal.remove_event_listener("abort", f);
        }
    }
}

impl AuthSession {
    /// What `fetch` and `json` check and build before any I/O; an `Err` is the rejected
    /// promise to return.
    fn prepare(&self, input: &JsValue, init: &JsValue, accept_json: bool) -> Result<Call, Promise> {
        if self.core.is_disposed() {
            return Err(reject(AuthError::new(ErrorCode::Disposed, "the session was disposed")));
        }
        let wait_until = self.call_wait_until(init).map_err(reject)?;
        let (request, url, method) = self
            .request(input, init, accept_json)
            .map_err(|e| Promise::reject(&e))?;
        Ok(Call {
            request,
            url,
            method,
            background: wait_until.is_some(),
            wait_until,
        })
    }

    /// The call's `init.waitUntil`, else the session's `waitUntil` option.
    fn call_wait_until(&self, init: &JsValue) -> Result<Option<WaitUntil>, AuthError> {
        if init.is_object() {
            if let Some(w) = WaitUntil::read(&options::get(init, "waitUntil"), "init.waitUntil")? {
                return Ok(Some(w));
            }
        }
        Ok(self.wait_until.clone())
    }

    /// Prepares `fetch(input, init)`: the URL (relative inputs appended to the host, path
    /// prefix included), the method, and what each attempt needs. Bad input (an invalid
    /// method or header) throws the runtime's own TypeError here, before any I/O.
    fn request(
        &self,
        input: &JsValue,
        init: &JsValue,
        accept_json: bool,
    ) -> Result<(ApiRequest, String, String), JsValue> {
        let user_signal = if init.is_object() {
            options::get(init, "signal")
        } else {
            JsValue::UNDEFINED
        };
        let user_signal: Option<AbortSignal> = user_signal.is_object().then(|| user_signal.unchecked_into());
        let text = match input.as_string() {
            Some(s) => Some(s),
            // `instanceof Request`, or a Request of another realm or fetch implementation.
            None if input.is_instance_of::<Request>() || is_request_like(input) => None,
            None if input.is_object() => Some(input.unchecked_ref::<js_sys::Object>().to_string().into()),
            None => return Err(js_sys::TypeError::new("fetch() input must be a string, a URL or a Request").into()),
        };
        let Some(text) = text else {
            let template = Request::new(input, init)?;
            let headers = template.headers();
            if accept_json && !headers.has("accept") {
                headers.set("accept", "application/json")?;
            }
            let (url, method) = (template.url(), template.method());
            let signal = Some(template.signal().unchecked_into());
            return Ok((
                ApiRequest {
                    kind: ApiKind::Template(template),
                    signal,
                },
                url,
                method,
            ));
        };
        let joined = self.core.resolve(&text);
        // Absolute inputs are normalised by the runtime's URL parser before the origin check;
        // a relative input is appended after the host's own path, so it cannot change the
        // origin, and only needs normalising when it holds characters to percent-encode.
        let url = if crate::core::url::has_scheme(&text)
            || !joined.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'\\')
        {
            Url::new(&joined)?.href()
        } else {
            joined
        };
        let body = if init.is_object() {
            options::get(init, "body")
        } else {
            JsValue::UNDEFINED
        };
        let once_only = body.is_object() && (has(&body, "getReader") || has_async_iterator(&body));
        if once_only {
            // A stream can be read once: a template Request tees it for a replay.
            let template = Request::new(&JsValue::from_str(&url), init)?;
            if accept_json && !template.headers().has("accept") {
                template.headers().set("accept", "application/json")?;
            }
            let method = template.method();
            return Ok((
                ApiRequest {
                    kind: ApiKind::Template(template),
                    signal: user_signal,
                },
                url,
                method,
            ));
        }
        let method = if init.is_object() {
            options::get(init, "method").as_string()
        } else {
            None
        };
        let method = normalize_method(method.as_deref().unwrap_or("GET"))?;
        let given_headers = if init.is_object() {
            options::get(init, "headers")
        } else {
            JsValue::UNDEFINED
        };
        let headers = Headers::new(&given_headers)?;
        if accept_json && !headers.has("accept") {
            headers.set("accept", "application/json")?;
        }
        let kind = ApiKind::Init {
            init: init.clone(),
            headers,
        };
        Ok((
            ApiRequest {
                kind,
                signal: user_signal,
            },
            url,
            method,
        ))
    }
}

fn has(value: &JsValue, key: &str) -> bool {
    Reflect::has(value, &key.into()).unwrap_or(false)
}

fn is_request_like(input: &JsValue) -> bool {
    input.is_object() && has(input, "url") && has(input, "method") && has(input, "headers")
}

fn has_async_iterator(value: &JsValue) -> bool {
    Reflect::has(value, &js_sys::Symbol::async_iterator().into()).unwrap_or(false)
}

/// What `new Request` does to a method: a token, not CONNECT/TRACE/TRACK, and the six
/// standard methods uppercased.
fn normalize_method(method: &str) -> Result<String, JsValue> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if method.is_empty() || !method.bytes().all(tchar) {
        return Err(js_sys::TypeError::new("fetch() init.method is not a valid HTTP method").into());
    }
    let upper = method.to_ascii_uppercase();
    if matches!(upper.as_str(), "CONNECT" | "TRACE" | "TRACK") {
        return Err(js_sys::TypeError::new("fetch() init.method is a forbidden method").into());
    }
    Ok(match upper.as_str() {
        "DELETE" | "GET" | "HEAD" | "OPTIONS" | "POST" | "PUT" => upper,
        _ => method.to_owned(),
    })
}

#[wasm_bindgen]
impl AuthSession {
    /// `new AuthSession(options)`; throws `AuthError` CONFIG_ERROR naming the bad option.
    /// Creates no timer and does no I/O (safe at a Worker's module scope).
    #[wasm_bindgen(constructor)]
    pub fn new(options: JsValue) -> Result<AuthSession, JsValue> {
        let js = options::read(&options).map_err(|e| to_js(&e))?;
        let config = js.options.validate().map_err(|e| to_js(&e))?;
        let platform = JsPlatform {
            fetch: js.fetch,
            listeners: Default::default(),
        };
        let storage = js.storage.map(|s| Rc::new(s) as Rc<dyn Storage>);
        Ok(AuthSession {
            core: Session::new(platform, config, storage),
            wait_until: js.wait_until,
        })
    }

    /// `login(username?, password?)`: without arguments, `options.credentials`.
    pub fn login(&self, username: JsValue, password: JsValue) -> Promise {
        let creds = if username.is_undefined() && password.is_undefined() {
            None
        } else {
            match credentials(&username, &password, "login() ") {
                Ok((username, password)) if !username.is_empty() && !password.expose().is_empty() => {
                    Some(Credentials { username, password })
                }
                Ok(_) => return reject(AuthError::config("login() needs a non-empty username and password")),
                Err(e) => return reject(e),
            }
        };
        let core = self.core.clone();
        executor::promise(
            async move {
                let info = core.login(creds).await;
                Ok(info_to_js(&info.map_err(|e| to_js(&e))?))
            },
            self.wait_until.clone(),
        )
    }

    /// Refreshes now; concurrent callers share one request.
    pub fn refresh(&self) -> Promise {
        let core = self.core.clone();
        executor::promise(
            async move {
                let info = core.refresh(&mut Abort::none()).await;
                Ok(info_to_js(&info.map_err(|e| to_js(&e))?))
            },
            self.wait_until.clone(),
        )
    }

    /// Revokes on the server and clears local state (even when the server call fails).
    pub fn revoke(&self) -> Promise {
        let core = self.core.clone();
        executor::promise(
            async move {
                core.revoke().await.map_err(|e| to_js(&e))?;
                Ok(JsValue::UNDEFINED)
            },
            self.wait_until.clone(),
        )
    }

    /// Loads tokens from `options.storage`; resolves `null` when there is no usable record.
    pub fn restore(&self) -> Promise {
        let core = self.core.clone();
        executor::promise(
            async move {
                match core.restore().await.map_err(|e| to_js(&e))? {
                    Some(info) => Ok(info_to_js(&info)),
                    None => Ok(JsValue::NULL),
                }
            },
            self.wait_until.clone(),
        )
    }

    /// A bearer token valid for at least `refreshMarginSeconds`.
    #[wasm_bindgen(js_name = getAccessToken)]
    pub fn get_access_token(&self) -> Promise {
        let core = self.core.clone();
        executor::promise(
            async move {
                let token = core.access_token(&mut Abort::none()).await.map_err(|e| to_js(&e))?;
                Ok(JsValue::from_str(token.expose()))
            },
            self.wait_until.clone(),
        )
    }

    /// `fetch` with the bearer token; see the README for refresh, replay and retry rules.
    pub fn fetch(&self, input: JsValue, init: JsValue) -> Promise {
        let call = match self.prepare(&input, &init, false) {
            Ok(call) => call,
            Err(rejected) => return rejected,
        };
        let core = self.core.clone();
        executor::promise(
            async move {
                let (_watch, abort) = SignalWatch::watch(call.request.signal.clone());
                let fetched = core
                    .fetch_with(call.request, call.url, call.method, abort, call.background)
                    .await;
                Ok(fetched.map_err(|e| to_js(&e))?.response.body.into_response().into())
            },
            call.wait_until,
        )
    }

    /// `fetch`, then unwraps `{"success": true, "data": X}` to `X`; errors are `AuthError`s.
    pub fn json(&self, input: JsValue, init: JsValue) -> Promise {
        let call = match self.prepare(&input, &init, true) {
            Ok(call) => call,
            Err(rejected) => return rejected,
        };
        let core = self.core.clone();
        executor::promise(
            async move {
                let (_watch_body, mut abort) = SignalWatch::watch(call.request.signal.clone());
                let (_watch, abort_fetch) = SignalWatch::watch(call.request.signal.clone());
                let fetched = core
                    .fetch_with(call.request, call.url, call.method, abort_fetch, call.background)
                    .await;
                let fetched = fetched.map_err(|e| to_js(&e))?;
                let status = fetched.response.status;
                let response = fetched.response.body.into_response();
                // The body read gets what is left of the attempt's timeout.
                let timeout = core.config().timeout_ms as i64;
                let left = (fetched.attempt_started_ms + timeout - core.platform().now_ms()).clamp(0, timeout) as u32;
                let text = response
                    .text()
                    .map_err(|_| to_js(&AuthError::new(ErrorCode::Network, "the body could not be read")))?;
                let read = race(settled(&text), Sleep::new(left));
                let text = match abort.guard(read).await.map_err(|e| to_js(&e))? {
                    Either::Left(Ok(t)) => t.as_string().unwrap_or_default(),
                    Either::Left(Err(e)) => return Err(to_js(&super::error::fetch_failure(&e))),
                    Either::Right(()) => {
                        let e = AuthError::new(
                            ErrorCode::Timeout,
                            format!("the response body did not arrive within timeoutMs ({timeout} ms)"),
                        );
                        return Err(to_js(&e.with_status(status)));
                    }
                };
                let (shape, value) = classify(&text);
                match api_json(status, &shape).map_err(|e| to_js(&core.redact(e)))? {
                    ApiJson::Data => Ok(Reflect::get(&value, &"data".into()).unwrap_or(JsValue::UNDEFINED)),
                    ApiJson::Nothing => Ok(JsValue::UNDEFINED),
                }
            },
            call.wait_until,
        )
    }

    /// What the session holds, never a token.
    #[wasm_bindgen(getter)]
    pub fn info(&self) -> JsValue {
        info_to_js(&self.core.info())
    }

    /// `JSON.stringify(session)` shows the same as `info`.
    #[wasm_bindgen(js_name = toJSON)]
    pub fn to_json(&self) -> JsValue {
        self.info()
    }

    /// Subscribes to "tokens" | "expired" | "revoked" | "error"; returns the unsubscribe function.
    pub fn on(&self, event: &str, listener: JsValue) -> Result<Function, JsValue> {
        let kind = EventKind::parse(event).ok_or_else(|| {
            to_js(&AuthError::config(
                "on() takes \"tokens\", \"expired\", \"revoked\" or \"error\"",
            ))
        })?;
        let listener: Function = listener
            .dyn_into()
            .map_err(|_| to_js(&AuthError::config("on() needs a listener function")))?;
        let weak = Rc::downgrade(&self.core.platform().listeners);
        self.core
            .platform()
            .listeners
            .borrow_mut()
            .push((kind, listener.clone()));
        let off = Closure::<dyn FnMut()>::new(move || {
            if let Some(listeners) = weak.upgrade() {
                let mut list = listeners.borrow_mut();
                if let Some(i) = list.iter().position(|(k, f)| *k == kind && f == &listener) {
                    list.remove(i);
                }
            }
        });
        Ok(off.into_js_value().unchecked_into())
    }

    /// Cancels timers, drops tokens from memory, removes listeners; idempotent. Later calls
    /// reject with DISPOSED.
    pub fn dispose(&self) {
        self.core.dispose();
        self.core.platform().listeners.borrow_mut().clear();
    }
}

/// Reads the envelope shape of an API body with `JSON.parse`; the data stays a JS value.
fn classify(text: &str) -> (ApiBody, JsValue) {
    if text.trim().is_empty() {
        return (
            ApiBody {
                empty: true,
                ..ApiBody::default()
            },
            JsValue::UNDEFINED,
        );
    }
    let Ok(value) = js_sys::JSON::parse(text) else {
        return (ApiBody::default(), JsValue::UNDEFINED);
    };
    let mut shape = ApiBody {
        json: true,
        ..ApiBody::default()
    };
    if value.is_object() {
        let get = |o: &JsValue, k: &str| Reflect::get(o, &k.into()).unwrap_or(JsValue::UNDEFINED);
        shape.success = get(&value, "success").as_bool();
        shape.has_data = Reflect::has(&value, &"data".into()).unwrap_or(false);
        let error = get(&value, "error");
        if error.is_object() {
            if let Some(code) = get(&error, "code").as_string().filter(|c| !c.is_empty()) {
                shape.error = Some((
                    get(&error, "name").as_string(),
                    code,
                    get(&error, "message").as_string(),
                ));
            }
        }
    }
    (shape, value)
}
