//! Reads the JavaScript options object into the core's [`Options`], reporting wrong JS types
//! by option name. Unknown options are refused: a misspelt `refreshMarginSecond` silently
//! ignored is a production incident later.

use js_sys::{Array, Function, Object, Reflect};
use wasm_bindgen::prelude::*;

use super::platform::FetchFn;
use super::storage::JsStorage;
use crate::core::secret::Password;
use crate::core::{AuthError, Options};

const KNOWN: [&str; 14] = [
    "host",
    "credentials",
    "refreshMarginSeconds",
    "autoRefresh",
    "timeoutMs",
    "retries",
    "maxRetryAfterSeconds",
    "paths",
    "fetch",
    "storage",
    "storageKey",
    "allowedOrigins",
    "allowInsecureHttp",
    "waitUntil",
];

/// Everything `new AuthSession(options)` takes.
pub struct JsOptions {
    pub options: Options,
    pub fetch: FetchFn,
    pub storage: Option<JsStorage>,
    pub wait_until: Option<WaitUntil>,
}

/// Where background work goes in a Worker: `ctx.waitUntil`, given as a (bound) function or
/// as the execution context itself.
#[derive(Clone)]
pub struct WaitUntil {
    this: JsValue,
    function: Function,
}

impl WaitUntil {
    /// Reads `value` (a function, or an object with a `waitUntil` method); `None` if undefined.
    pub fn read(value: &JsValue, field: &str) -> Result<Option<WaitUntil>, AuthError> {
        if !given(value) || value.is_null() {
            return Ok(None);
        }
        if let Some(function) = value.dyn_ref::<Function>() {
            return Ok(Some(WaitUntil {
                this: JsValue::UNDEFINED,
                function: function.clone(),
            }));
        }
        let method = get(value, "waitUntil");
        if value.is_object() && method.is_function() {
            return Ok(Some(WaitUntil {
                this: value.clone(),
                function: method.unchecked_into(),
            }));
        }
        Err(AuthError::config(format!(
            "{field} must be a function such as ctx.waitUntil.bind(ctx), or the context itself"
        )))
    }

    pub fn call(&self, promise: &JsValue) {
        let _ = self.function.call1(&self.this, promise);
    }
}

pub fn get(object: &JsValue, key: &str) -> JsValue {
    Reflect::get(object, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

fn given(v: &JsValue) -> bool {
    !v.is_undefined()
}

fn string(object: &JsValue, key: &str, field: &str) -> Result<Option<String>, AuthError> {
    let v = get(object, key);
    if !given(&v) {
        return Ok(None);
    }
    v.as_string()
        .map(Some)
        .ok_or_else(|| AuthError::config(format!("{field} must be a string")))
}

fn number(object: &JsValue, key: &str) -> Result<Option<f64>, AuthError> {
    let v = get(object, key);
    if !given(&v) {
        return Ok(None);
    }
    v.as_f64()
        .map(Some)
        .ok_or_else(|| AuthError::config(format!("{key} must be a number")))
}

fn boolean(object: &JsValue, key: &str) -> Result<Option<bool>, AuthError> {
    let v = get(object, key);
    if !given(&v) {
        return Ok(None);
    }
    v.as_bool()
        .map(Some)
        .ok_or_else(|| AuthError::config(format!("{key} must be a boolean")))
}

/// Reads `username`/`password` from JS values: both strings (the core checks emptiness).
pub fn credentials(username: &JsValue, password: &JsValue, field: &str) -> Result<(String, Password), AuthError> {
    let user = username
        .as_string()
        .ok_or_else(|| AuthError::config(format!("{field}username must be a string")))?;
    let pass = password
        .as_string()
        .ok_or_else(|| AuthError::config(format!("{field}password must be a string")))?;
    Ok((user, Password::new(pass)))
}

pub fn read(js: &JsValue) -> Result<JsOptions, AuthError> {
    if !js.is_object() || js.is_function() || Array::is_array(js) {
        return Err(AuthError::config(
            "options must be an object, e.g. { host: \"https://api.example.com\" }",
        ));
    }
    for key in Object::keys(js.unchecked_ref::<Object>()).iter() {
        let key = key.as_string().unwrap_or_default();
        if !KNOWN.contains(&key.as_str()) {
            let shown: String = key.chars().filter(|c| !c.is_control()).take(64).collect();
            return Err(AuthError::config(format!(
                "unknown option \"{shown}\"; known options: {}",
                KNOWN.join(", ")
            )));
        }
    }

    let creds = get(js, "credentials");
    let credentials = if !given(&creds) || creds.is_null() {
        None
    } else if creds.is_object() {
        Some(credentials(
            &get(&creds, "username"),
            &get(&creds, "password"),
            "credentials.",
        )?)
    } else {
        return Err(AuthError::config(
            "credentials must be an object { username, password }",
        ));
    };

    let paths = get(js, "paths");
    let (login_path, refresh_path, revoke_path) = if !given(&paths) {
        (None, None, None)
    } else if paths.is_object() {
        (
            string(&paths, "login", "paths.login")?,
            string(&paths, "refresh", "paths.refresh")?,
            string(&paths, "revoke", "paths.revoke")?,
        )
    } else {
        return Err(AuthError::config(
            "paths must be an object { login?, refresh?, revoke? }",
        ));
    };

    let origins = get(js, "allowedOrigins");
    let allowed_origins = if !given(&origins) {
        Vec::new()
    } else if Array::is_array(&origins) {
        let array: &Array = origins.unchecked_ref();
        let mut out = Vec::with_capacity(array.length() as usize);
        for (i, o) in array.iter().enumerate() {
            out.push(
                o.as_string()
                    .ok_or_else(|| AuthError::config(format!("allowedOrigins[{i}] must be a string")))?,
            );
        }
        out
    } else {
        return Err(AuthError::config("allowedOrigins must be an array of origins"));
    };

    let f = get(js, "fetch");
    let fetch = if !given(&f) {
        FetchFn::Global
    } else if let Some(function) = f.dyn_ref::<Function>() {
        FetchFn::Custom {
            this: JsValue::UNDEFINED,
            function: function.clone(),
        }
    } else if f.is_object() && get(&f, "fetch").is_function() {
        // A service binding passed as itself: call its method with the binding as `this`.
        FetchFn::Custom {
            function: get(&f, "fetch").unchecked_into(),
            this: f,
        }
    } else {
        return Err(AuthError::config(
            "fetch must be a function (or an object with a fetch method)",
        ));
    };

    let s = get(js, "storage");
    let storage = if given(&s) && !s.is_null() {
        Some(JsStorage::new(s)?)
    } else {
        None
    };

    Ok(JsOptions {
        options: Options {
            host: string(js, "host", "host")?,
            credentials,
            refresh_margin_seconds: number(js, "refreshMarginSeconds")?,
            auto_refresh: boolean(js, "autoRefresh")?,
            timeout_ms: number(js, "timeoutMs")?,
            retries: number(js, "retries")?,
            max_retry_after_seconds: number(js, "maxRetryAfterSeconds")?,
            login_path,
            refresh_path,
            revoke_path,
            storage_key: string(js, "storageKey", "storageKey")?,
            allowed_origins,
            allow_insecure_http: boolean(js, "allowInsecureHttp")?,
        },
        fetch,
        storage,
        wait_until: WaitUntil::read(&get(js, "waitUntil"), "waitUntil")?,
    })
}
