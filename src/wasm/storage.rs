//! `options.storage` as the core's [`Storage`]: any object with `get`, `put` and `delete`,
//! sync or async — a Workers KV namespace, Durable Object storage, or a `Map` wrapper.

use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;

use super::error::storage_failure;
use super::wake::settled;
use crate::core::error::ErrorCode;
use crate::core::{AuthError, LocalFuture, Storage};

pub struct JsStorage {
    object: JsValue,
}

impl JsStorage {
    /// Checks the object has the three methods, naming the missing one.
    pub fn new(object: JsValue) -> Result<JsStorage, AuthError> {
        if !object.is_object() {
            return Err(AuthError::config(
                "storage must be an object with get, put and delete methods",
            ));
        }
        for method in ["get", "put", "delete"] {
            let f = Reflect::get(&object, &method.into()).unwrap_or(JsValue::UNDEFINED);
            if !f.is_function() {
                return Err(AuthError::config(format!("storage.{method} must be a function")));
            }
        }
        Ok(JsStorage { object })
    }

    /// Calls `storage[op](args…)` and awaits its result, whether a value or a promise.
    fn call(&self, op: &'static str, args: &[JsValue]) -> LocalFuture<Result<JsValue, AuthError>> {
        let with_message = op != "put";
        let started = Reflect::get(&self.object, &op.into())
            .and_then(|f| f.dyn_into::<Function>())
            .and_then(|f| match args {
                [a] => f.call1(&self.object, a),
                [a, b] => f.call2(&self.object, a, b),
                _ => f.call0(&self.object),
            });
        Box::pin(async move {
            let value = started.map_err(|e| storage_failure(op, &e, with_message))?;
            settled(&Promise::resolve(&value))
                .await
                .map_err(|e| storage_failure(op, &e, with_message))
        })
    }
}

impl Storage for JsStorage {
    fn get(&self, key: &str) -> LocalFuture<Result<Option<String>, AuthError>> {
        let call = self.call("get", &[key.into()]);
        Box::pin(async move {
            let value = call.await?;
            if value.is_null() || value.is_undefined() {
                return Ok(None);
            }
            value.as_string().map(Some).ok_or_else(|| {
                AuthError::new(
                    ErrorCode::Storage,
                    "storage.get returned something other than a string, null or undefined",
                )
            })
        })
    }

    fn put(&self, key: &str, value: String) -> LocalFuture<Result<(), AuthError>> {
        let call = self.call("put", &[key.into(), value.into()]);
        Box::pin(async move { call.await.map(|_| ()) })
    }

    fn delete(&self, key: &str) -> LocalFuture<Result<(), AuthError>> {
        let call = self.call("delete", &[key.into()]);
        Box::pin(async move { call.await.map(|_| ()) })
    }
}
