//! The one place an [`AuthError`] becomes a JavaScript `AuthError`, and the one place a
//! JavaScript failure (a rejected `fetch`, a throwing storage) becomes an [`AuthError`].
//! JavaScript messages are never copied wholesale: a `Headers` or storage error can quote
//! the value it was given, and that value may be a token.

use js_sys::Reflect;
use wasm_bindgen::prelude::*;

use crate::core::{AuthError, ErrorCode};

#[wasm_bindgen(module = "/src/wasm/auth_error.js")]
extern "C" {
    #[wasm_bindgen(js_name = AuthError)]
    type JsAuthError;
    #[wasm_bindgen(constructor, js_class = "AuthError")]
    fn new(message: &str, name: &str, code: &str, status: u16, retryable: bool) -> JsAuthError;
}

/// Builds the JavaScript `AuthError` for `e`.
pub fn to_js(e: &AuthError) -> JsValue {
    JsAuthError::new(e.message(), e.name(), e.code(), e.status(), e.retryable()).into()
}

/// The JS error's `name`, if it has a string one.
fn js_name(value: &JsValue) -> Option<String> {
    Reflect::get(value, &"name".into()).ok()?.as_string()
}

/// A safe description of a failed `fetch`: the error's name and, for Node's undici, the
/// system error code of its cause (`ECONNREFUSED`, `ECONNRESET`, `ENOTFOUND`…).
pub fn fetch_failure(value: &JsValue) -> AuthError {
    let name = js_name(value).unwrap_or_else(|| "Error".into());
    if name == "AbortError" {
        return crate::core::session::aborted();
    }
    let cause = Reflect::get(value, &"cause".into()).ok().filter(|c| c.is_object());
    let code = cause
        .as_ref()
        .and_then(|c| Reflect::get(c, &"code".into()).ok())
        .and_then(|c| c.as_string())
        .filter(|c| c.len() <= 40 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    let detail = match code {
        Some(code) => format!("the request failed ({name}: {code})"),
        None => format!("the request failed ({name})"),
    };
    AuthError::new(ErrorCode::Network, detail)
}

/// A failure of the user's storage object. `with_message`: copy the JS message (not for
/// `put`, whose argument is the token record).
pub fn storage_failure(op: &str, value: &JsValue, with_message: bool) -> AuthError {
    let name = js_name(value).unwrap_or_else(|| "Error".into());
    let message = with_message
        .then(|| Reflect::get(value, &"message".into()).ok().and_then(|m| m.as_string()))
        .flatten()
        .map(|m| m.chars().filter(|c| !c.is_control()).take(200).collect::<String>());
    let text = match message {
        Some(m) => format!("storage.{op} threw {name}: {m}"),
        None => format!("storage.{op} threw {name}"),
    };
    AuthError::new(ErrorCode::Storage, text)
}
