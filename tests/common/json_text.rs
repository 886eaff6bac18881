// JSON text as the core's `Json`, for native tests: serde_json reads it (the package parses
// with the platform's `JSON.parse`, which native tests do not have). Included by
// `tests/common/mod.rs` and by the core's own unit tests (`src/core/envelope.rs`), each with
// `Json` in scope: the two crates name the type by different paths.

/// Parses `bytes` as one JSON document.
pub fn parse_json(bytes: &[u8]) -> Result<Json, serde_json::Error> {
    serde_json::from_slice::<serde_json::Value>(bytes).map(json_of)
}

fn json_of(v: serde_json::Value) -> Json {
    match v {
        serde_json::Value::Null => Json::Null,
        serde_json::Value::Bool(b) => Json::Bool(b),
        serde_json::Value::Number(n) => Json::Number(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Json::String(s),
        serde_json::Value::Array(items) => Json::Array(items.into_iter().map(json_of).collect()),
        serde_json::Value::Object(members) => {
            Json::Object(members.into_iter().map(|(k, v)| (k, json_of(v))).collect())
        }
    }
}
