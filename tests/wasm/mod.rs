//! The wasm layer in real JavaScript runtimes, shared by two test targets: `tests/wasm_node.rs`
//! (Node) and `tests/wasm_browser.rs` (headless Chromium), both run by wasm-bindgen-test-runner.
//! Options read from JS objects, requests built for `fetch`, errors converted to the JS
//! `AuthError`, `SessionInfo` with `Date`s, events, aborts and concurrent calls on one object.
//! The transport is a scripted `options.fetch`, so each test sees exactly what went on the
//! wire, and so the same tests run unchanged wherever `Response`, `Headers` and
//! `AbortController` exist (no network, no CORS).
//!
//! Not a test target of its own: cargo only builds `tests/*.rs` and `tests/*/main.rs`.

use std::cell::RefCell;
use std::rc::Rc;

use auth_session::wasm::AuthSession;
use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};
use wasm_bindgen_test::*;

const ACCESS: &str = "eyJ.canary-access.1";
const REFRESH: &str = "eyJ.canary-refresh.1";
const PASSWORD: &str = "canary-password-9";

#[derive(Clone, Debug, Default)]
struct Seen {
    url: String,
    method: String,
    authorization: Option<String>,
    content_type: Option<String>,
    redirect: String,
    body: String,
}

type Handler = Rc<dyn Fn(&Seen, usize) -> (u16, String)>;

/// An `options.fetch` that records each request and answers with `handler(request, n)`.
fn scripted(handler: Handler) -> (JsValue, Rc<RefCell<Vec<Seen>>>) {
    let seen: Rc<RefCell<Vec<Seen>>> = Rc::default();
    let log = seen.clone();
    let f = Closure::<dyn FnMut(JsValue, JsValue) -> Promise>::new(move |input: JsValue, init: JsValue| {
        // Called like fetch: (input, init). A Request of both shows what went on the wire.
        let ctor: Function = Reflect::get(&js_sys::global(), &"Request".into())
            .unwrap()
            .unchecked_into();
        let request = Reflect::construct(&ctor, &Array::of2(&input, &init)).unwrap();
        let log = log.clone();
        let handler = handler.clone();
        future_to_promise(async move {
            let get = |k: &str| Reflect::get(&request, &k.into()).unwrap();
            let headers = get("headers");
            let header = |name: &str| {
                let f: Function = Reflect::get(&headers, &"get".into()).unwrap().unchecked_into();
                f.call1(&headers, &name.into()).unwrap().as_string()
            };
            let text: Function = get("text").unchecked_into();
            let body = JsFuture::from(text.call0(&request).unwrap().unchecked_into::<Promise>()).await?;
            let s = Seen {
                url: get("url").as_string().unwrap(),
                method: get("method").as_string().unwrap(),
                authorization: header("authorization"),
                content_type: header("content-type"),
                redirect: get("redirect").as_string().unwrap_or_default(),
                body: body.as_string().unwrap_or_default(),
            };
            let n = log.borrow().len();
            log.borrow_mut().push(s.clone());
            let (status, text) = handler(&s, n);
            Ok(response(status, &text))
        })
    });
    (f.into_js_value(), seen)
}

fn response(status: u16, body: &str) -> JsValue {
    let init = Object::new();
    Reflect::set(&init, &"status".into(), &status.into()).unwrap();
    let headers = Object::new();
    Reflect::set(&headers, &"content-type".into(), &"application/json".into()).unwrap();
    Reflect::set(&init, &"headers".into(), &headers).unwrap();
    let ctor: Function = Reflect::get(&js_sys::global(), &"Response".into())
        .unwrap()
        .unchecked_into();
    let body: JsValue = if status == 204 { JsValue::NULL } else { body.into() };
    Reflect::construct(&ctor, &Array::of2(&body, &init)).unwrap()
}

fn pair(n: usize) -> String {
    let access = if n == 0 {
        ACCESS.to_owned()
    } else {
        format!("eyJ.canary-access.{}", n + 1)
    };
    let refresh = if n == 0 {
        REFRESH.to_owned()
    } else {
        format!("eyJ.canary-refresh.{}", n + 1)
    };
    format!(
        r#"{{"success":true,"data":{{"access_token":"{access}","refresh_token":"{refresh}",
        "access_expires_at":"2999-01-15T10:30:00Z","refresh_expires_at":"2999-01-22T09:30:00+00:00","client_id":123456}}}}"#
    )
}

/// A server: login and refresh issue pairs, products need the current token.
fn api_server() -> Handler {
    Rc::new(|seen: &Seen, _| {
        let path = seen.url.trim_start_matches("https://api.test/v2");
        match path {
            "/auth/login" => (200, pair(0)),
            "/auth/refresh" => (200, pair(1)),
            "/auth/revoke" => (200, r#"{"success":true,"data":{"revoked":true}}"#.into()),
            "/api/v1/products" if seen.authorization.is_some() => (200, r#"{"success":true,"data":[{"id":1}]}"#.into()),
            "/api/v1/empty" => (204, String::new()),
            _ => (
                401,
                r#"{"error":{"name":"UnauthorizedError","code":"UNAUTHORIZED","message":"no"}}"#.into(),
            ),
        }
    })
}

fn options(fetch: &JsValue, extra: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    Reflect::set(&o, &"host".into(), &"https://api.test/v2".into()).unwrap();
    Reflect::set(&o, &"fetch".into(), fetch).unwrap();
    for (k, v) in extra {
        Reflect::set(&o, &(*k).into(), v).unwrap();
    }
    o.into()
}

fn prop(v: &JsValue, k: &str) -> JsValue {
    Reflect::get(v, &k.into()).unwrap()
}

fn code_of(err: &JsValue) -> String {
    prop(err, "code").as_string().unwrap_or_default()
}

async fn settle(p: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(p).await
}

fn session() -> (AuthSession, Rc<RefCell<Vec<Seen>>>) {
    let (fetch, seen) = scripted(api_server());
    (AuthSession::new(options(&fetch, &[])).unwrap(), seen)
}

#[wasm_bindgen_test]
fn bad_options_throw_config_errors_naming_the_option() {
    let (fetch, _) = scripted(api_server());
    let cases: Vec<(JsValue, &str)> = vec![
        (Object::new().into(), "host is required"),
        (
            options(&fetch, &[("timeoutMs", "10".into())]),
            "timeoutMs must be a number",
        ),
        (
            options(&fetch, &[("retries", (-1).into())]),
            "retries must be an integer",
        ),
        (
            options(&fetch, &[("refreshMargin", 1.into())]),
            "unknown option \"refreshMargin\"",
        ),
        (
            options(&fetch, &[("autoRefresh", 1.into())]),
            "autoRefresh must be a boolean",
        ),
        (options(&fetch, &[("fetch", 5.into())]), "fetch must be a function"),
        (
            options(&fetch, &[("storage", Object::new().into())]),
            "storage.get must be a function",
        ),
        (
            options(&fetch, &[("allowedOrigins", "https://x.test".into())]),
            "allowedOrigins must be an array",
        ),
        (
            options(&fetch, &[("credentials", Object::new().into())]),
            "credentials.username must be a string",
        ),
        (JsValue::from_str("https://api.test"), "options must be an object"),
    ];
    for (opts, expected) in cases {
        let err = AuthSession::new(opts).err().expect("must throw");
        assert!(err.is_instance_of::<js_sys::Error>());
        assert_eq!(code_of(&err), "CONFIG_ERROR");
        assert_eq!(prop(&err, "name").as_string().as_deref(), Some("ConfigError"));
        let message = prop(&err, "message").as_string().unwrap();
        assert!(
            message.starts_with(expected),
            "{message:?} should start with {expected:?}"
        );
    }
}

#[wasm_bindgen_test]
async fn login_sends_json_without_following_redirects_and_returns_info_with_dates() {
    let (s, seen) = session();
    let info = settle(s.login("api-user".into(), PASSWORD.into())).await.unwrap();
    assert_eq!(prop(&info, "state").as_string().as_deref(), Some("active"));
    assert_eq!(prop(&info, "clientId").as_f64(), Some(123456.0));
    let at = prop(&info, "accessExpiresAt");
    assert!(at.is_instance_of::<js_sys::Date>());
    assert_eq!(at.unchecked_ref::<js_sys::Date>().get_time(), 32_473_391_400_000.0);
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1);
    let login = &seen[0];
    assert_eq!(login.url, "https://api.test/v2/auth/login");
    assert_eq!(login.method, "POST");
    assert_eq!(login.redirect, "manual");
    assert_eq!(login.content_type.as_deref(), Some("application/json"));
    assert_eq!(login.authorization, None);
    assert_eq!(
        login.body,
        format!(r#"{{"username":"api-user","password":"{PASSWORD}"}}"#)
    );
    let shown = js_sys::JSON::stringify(&s.info()).unwrap().as_string().unwrap();
    assert!(!shown.contains("canary"), "{shown}");
}

#[wasm_bindgen_test]
async fn json_adds_the_bearer_resolves_relative_inputs_and_unwraps_data() {
    let (s, seen) = session();
    settle(s.login("u".into(), PASSWORD.into())).await.unwrap();
    let data = settle(s.json("api/v1/products".into(), JsValue::UNDEFINED))
        .await
        .unwrap();
    assert!(Array::is_array(&data));
    assert_eq!(prop(&Array::from(&data).get(0), "id").as_f64(), Some(1.0));
    let empty = settle(s.json("/api/v1/empty".into(), JsValue::UNDEFINED))
        .await
        .unwrap();
    assert!(empty.is_undefined());
    let seen = seen.borrow();
    assert_eq!(seen[1].url, "https://api.test/v2/api/v1/products");
    assert_eq!(
        seen[1].authorization.as_deref(),
        Some(format!("Bearer {ACCESS}").as_str())
    );
    assert_eq!(seen[1].redirect, "manual");
}

#[wasm_bindgen_test]
async fn a_401_refreshes_once_and_replays_with_the_new_token() {
    let (fetch, seen) = scripted(Rc::new(|s: &Seen, _| match s.url.as_str() {
        "https://api.test/v2/auth/login" => (200, pair(0)),
        "https://api.test/v2/auth/refresh" => (200, pair(1)),
        _ if s.authorization.as_deref() == Some("Bearer eyJ.canary-access.2") => {
            (200, r#"{"success":true,"data":"fresh"}"#.into())
        }
        _ => (
            401,
            r#"{"error":{"name":"UnauthorizedError","code":"UNAUTHORIZED","message":"expired"}}"#.into(),
        ),
    }));
    let s = AuthSession::new(options(&fetch, &[])).unwrap();
    settle(s.login("u".into(), PASSWORD.into())).await.unwrap();
    let data = settle(s.json("/api/v1/products".into(), JsValue::UNDEFINED))
        .await
        .unwrap();
    assert_eq!(data.as_string().as_deref(), Some("fresh"));
    let urls: Vec<String> = seen
        .borrow()
        .iter()
        .map(|s| s.url.replace("https://api.test/v2", ""))
        .collect();
    assert_eq!(
        urls,
        ["/auth/login", "/api/v1/products", "/auth/refresh", "/api/v1/products"]
    );
    assert_eq!(seen.borrow()[2].body, format!(r#"{{"refresh_token":"{REFRESH}"}}"#));
}

#[wasm_bindgen_test]
async fn server_errors_become_auth_errors_without_secrets() {
    let (fetch, _) = scripted(Rc::new(|_: &Seen, _| {
        (
            401,
            format!(
                r#"{{"error":{{"name":"UnauthorizedError","code":"UNAUTHORIZED","message":"bad password {PASSWORD}"}}}}"#
            ),
        )
    }));
    let s = AuthSession::new(options(&fetch, &[])).unwrap();
    let err = settle(s.login("u".into(), PASSWORD.into())).await.unwrap_err();
    assert!(err.is_instance_of::<js_sys::Error>());
    assert_eq!(code_of(&err), "UNAUTHORIZED");
    assert_eq!(prop(&err, "status").as_f64(), Some(401.0));
    assert_eq!(prop(&err, "retryable").as_bool(), Some(false));
    let message = prop(&err, "message").as_string().unwrap();
    let stack = prop(&err, "stack").as_string().unwrap_or_default();
    assert!(!message.contains(PASSWORD) && !stack.contains(PASSWORD), "{message}");
    assert!(message.contains("[redacted]"));
}

#[wasm_bindgen_test]
async fn calls_before_login_after_revoke_and_after_dispose() {
    let (s, seen) = session();
    let err = settle(s.get_access_token()).await.unwrap_err();
    assert_eq!(code_of(&err), "NOT_AUTHENTICATED");
    let err = settle(s.login(JsValue::UNDEFINED, JsValue::UNDEFINED))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "CONFIG_ERROR");
    assert!(seen.borrow().is_empty());

    settle(s.login("u".into(), PASSWORD.into())).await.unwrap();
    assert_eq!(
        settle(s.get_access_token()).await.unwrap().as_string().as_deref(),
        Some(ACCESS)
    );
    settle(s.revoke()).await.unwrap();
    assert_eq!(prop(&s.info(), "state").as_string().as_deref(), Some("revoked"));
    let revoke = seen.borrow().last().cloned().unwrap();
    assert_eq!(revoke.body, format!(r#"{{"refresh_token":"{REFRESH}"}}"#));
    assert_eq!(
        revoke.authorization.as_deref(),
        Some(format!("Bearer {ACCESS}").as_str())
    );
    let err = settle(s.json("/api/v1/products".into(), JsValue::UNDEFINED))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "NOT_AUTHENTICATED");

    s.dispose();
    s.dispose();
    let err = settle(s.fetch("/api/v1/products".into(), JsValue::UNDEFINED))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "DISPOSED");
}

#[wasm_bindgen_test]
async fn events_reach_listeners_until_unsubscribed() {
    let (s, _) = session();
    let count = Rc::new(RefCell::new(Vec::<String>::new()));
    let c = count.clone();
    let listener = Closure::<dyn FnMut(JsValue)>::new(move |info: JsValue| {
        c.borrow_mut().push(prop(&info, "state").as_string().unwrap());
    })
    .into_js_value();
    let off = s.on("tokens", listener.clone()).unwrap();
    let c = count.clone();
    let revoked =
        Closure::<dyn FnMut(JsValue)>::new(move |_| c.borrow_mut().push("revoked-event".into())).into_js_value();
    s.on("revoked", revoked).unwrap();
    assert_eq!(code_of(&s.on("nope", listener).unwrap_err()), "CONFIG_ERROR");
    settle(s.login("u".into(), PASSWORD.into())).await.unwrap();
    off.call0(&JsValue::UNDEFINED).unwrap();
    off.call0(&JsValue::UNDEFINED).unwrap();
    settle(s.refresh()).await.unwrap();
    settle(s.revoke()).await.unwrap();
    assert_eq!(*count.borrow(), ["active", "revoked-event"]);
}

#[wasm_bindgen_test]
async fn an_aborted_signal_rejects_with_aborted_before_any_request() {
    let (s, seen) = session();
    settle(s.login("u".into(), PASSWORD.into())).await.unwrap();
    let ctor: Function = Reflect::get(&js_sys::global(), &"AbortController".into())
        .unwrap()
        .unchecked_into();
    let controller = Reflect::construct(&ctor, &Array::new()).unwrap();
    let abort: Function = prop(&controller, "abort").unchecked_into();
    abort.call0(&controller).unwrap();
    let init = Object::new();
    Reflect::set(&init, &"signal".into(), &prop(&controller, "signal")).unwrap();
    let err = settle(s.fetch("/api/v1/products".into(), init.into()))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "ABORTED");
    assert_eq!(seen.borrow().len(), 1, "only the login went out");
}

#[wasm_bindgen_test]
async fn concurrent_calls_on_one_object_share_one_refresh() {
    let (s, seen) = session();
    settle(s.login("u".into(), PASSWORD.into())).await.unwrap();
    let calls = Array::new();
    for i in 0..100 {
        let p = if i % 2 == 0 {
            s.refresh()
        } else {
            s.json("/api/v1/products".into(), JsValue::UNDEFINED)
        };
        calls.push(&p);
    }
    settle(Promise::all(&calls)).await.unwrap();
    let refreshes = seen
        .borrow()
        .iter()
        .filter(|r| r.url.ends_with("/auth/refresh"))
        .count();
    assert_eq!(refreshes, 1);
}

#[wasm_bindgen_test]
async fn other_origins_never_get_the_token() {
    let (s, seen) = session();
    settle(s.login("u".into(), PASSWORD.into())).await.unwrap();
    let err = settle(s.fetch("https://evil.test/steal".into(), JsValue::UNDEFINED))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), "ORIGIN_NOT_ALLOWED");
    assert!(prop(&err, "message")
        .as_string()
        .unwrap()
        .starts_with("https://evil.test may not receive"));
    assert_eq!(seen.borrow().len(), 1);
}
