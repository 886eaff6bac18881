//! A `JSON.parse`d JavaScript value as the core's [`Json`] tree. Only auth responses (capped
//! at 64 KiB) and storage records come through here; an API body's data never does.

use js_sys::{Array, Object, Reflect};
use wasm_bindgen::{JsCast, JsValue};

use crate::core::json::Json;

/// Deeper than any document of the protocol; deeper values are cut to `null`.
const MAX_DEPTH: u32 = 16;

pub fn to_json(value: &JsValue) -> Json {
    convert(value, 0)
}

fn convert(value: &JsValue, depth: u32) -> Json {
    if let Some(s) = value.as_string() {
        return Json::String(s);
    }
    if let Some(n) = value.as_f64() {
        return Json::Number(n);
    }
    if let Some(b) = value.as_bool() {
        return Json::Bool(b);
    }
    if depth >= MAX_DEPTH || !value.is_object() {
        return Json::Null;
    }
    if Array::is_array(value) {
        let array: &Array = value.unchecked_ref();
        return Json::Array(array.iter().map(|v| convert(&v, depth + 1)).collect());
    }
    let object: &Object = value.unchecked_ref();
    let members = Object::keys(object)
        .iter()
        .map(|key| {
            let v = Reflect::get(value, &key).unwrap_or(JsValue::NULL);
            (key.as_string().unwrap_or_default(), convert(&v, depth + 1))
        })
        .collect();
    Json::Object(members)
}

/// A string property of a plain object, if it is one.
pub fn string_at(value: &JsValue, key: &str) -> Option<String> {
    Reflect::get(value, &JsValue::from_str(key)).ok()?.as_string()
}
