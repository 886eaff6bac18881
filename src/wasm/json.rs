//! A `JSON.parse`d JavaScript value as the core's [`Json`] tree. Only auth responses (capped
//! at 64 KiB) and storage records come through here; an API body's data never does.
//!
//! `session.js` hands in only what `JSON.parse` returned, but `Core` is a public class and
//! any value may arrive: whatever it is, it becomes a tree (what cannot be read is `null`),
//! never an exception, a trap or an endless walk. So every JavaScript operation here that can
//! run user code (a getter, a Proxy trap) goes through a `catch` import, and the walk is
//! bounded in depth and in size. (Fixed: `Array.isArray`, `Object.keys` and the element reads
//! of js-sys's `Array::iter` are not `catch` imports, so a revoked Proxy, a throwing
//! `ownKeys` trap or a throwing index getter escaped as a raw exception, leaving the `Core`
//! borrowed for good; a sparse array of length 2^32 - 1 trapped on allocation, and an object
//! graph sharing children, e.g. 8 keys over 16 levels, walked 8^16 values.)

#[allow(unused_imports)]
use crate::prelude::*;

use js_sys::{Array, Reflect};
use wasm_bindgen::prelude::*;

use crate::core::json::Json;

/// Deeper than any document of the protocol; deeper values are cut to `null`.
const MAX_DEPTH: u32 = 16;
/// More values than a 64 KiB auth response can hold (each takes two bytes or more); a larger
/// value is no document of the protocol and reads as `null` as a whole.
const MAX_VALUES: u32 = 65_536;

#[wasm_bindgen]
extern "C" {
    /// Throws for a revoked Proxy.
    #[wasm_bindgen(js_namespace = Array, js_name = isArray, catch)]
    fn is_array(value: &JsValue) -> Result<bool, JsValue>;
    /// Runs a Proxy's `ownKeys` and `getOwnPropertyDescriptor` traps. The array it returns is
    /// a fresh, ordinary one.
    #[wasm_bindgen(js_namespace = Object, js_name = keys, catch)]
    fn own_keys(value: &JsValue) -> Result<Array, JsValue>;
}

pub fn to_json(value: &JsValue) -> Json {
    let mut budget = MAX_VALUES;
    convert(value, 0, &mut budget).unwrap_or(Json::Null)
}

/// `None` once more than [`MAX_VALUES`] values were seen.
fn convert(value: &JsValue, depth: u32, budget: &mut u32) -> Option<Json> {
    *budget = budget.checked_sub(1)?;
    if let Some(s) = value.as_string() {
        return Some(Json::String(s));
    }
    if let Some(n) = value.as_f64() {
        return Some(Json::Number(n));
    }
    if let Some(b) = value.as_bool() {
        return Some(Json::Bool(b));
    }
    if depth >= MAX_DEPTH || !value.is_object() {
        return Some(Json::Null);
    }
    match is_array(value) {
        Ok(true) => {
            // `length` may be anything a getter or trap returns: `as` saturates (NaN is 0),
            // and the budget ends the walk of a sparse array long before 2^32 elements.
            let length = Reflect::get(value, &JsValue::from_str("length"))
                .ok()
                .and_then(|l| l.as_f64());
            let mut items = Vec::new();
            for i in 0..length.unwrap_or(0.0) as u32 {
                let v = Reflect::get_u32(value, i).unwrap_or(JsValue::NULL);
                items.push(convert(&v, depth + 1, budget)?);
            }
            Some(Json::Array(items))
        }
        Ok(false) => {
            let Ok(keys) = own_keys(value) else {
                return Some(Json::Null);
            };
            let mut members = Vec::new();
            for key in keys.iter() {
                let v = Reflect::get(value, &key).unwrap_or(JsValue::NULL);
                members.push((key.as_string().unwrap_or_default(), convert(&v, depth + 1, budget)?));
            }
            Some(Json::Object(members))
        }
        Err(_) => Some(Json::Null),
    }
}

/// A string property of a plain object, if it is one.
pub fn string_at(value: &JsValue, key: &str) -> Option<String> {
    Reflect::get(value, &JsValue::from_str(key)).ok()?.as_string()
}
