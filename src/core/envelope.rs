//! The provider's response envelopes and the token pair inside them.
//!
//! Success: `{"success": true, "data": …}`; error: `{"error": {"name", "code", "message"}}`.
//! Auth endpoints are read strictly: anything that is not exactly a success envelope with a
//! well-formed token pair is INVALID_RESPONSE, because acting on half a token pair loses the
//! session.

#[allow(unused_imports)]
use crate::prelude::*;

use crate::core::error::AuthError;
use crate::core::json::{self, Json};
use crate::core::rfc3339::parse_rfc3339;
use crate::core::secret::{AccessToken, RefreshToken};
use crate::core::text::{cat, int};

/// The `data` of a login or refresh response. Times are the server's, in epoch milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenPair {
    pub access_token: AccessToken,
    /// `None`: an OAuth 2.0 token without one (client credentials); the grant is asked again.
    pub refresh_token: Option<RefreshToken>,
    pub access_expires_at: i64,
    pub refresh_expires_at: i64,
    pub client_id: Option<i64>,
}

/// Largest integer a JavaScript number holds exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// An integer a JavaScript number holds exactly (`Number.isSafeInteger`). NaN fails the
/// comparisons; within the bounds `as i64` is exact, so the round trip finds fractions.
fn is_safe_integer(n: f64) -> bool {
    (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&n) && (n as i64) as f64 == n
}

/// A response body as the driver read it: `JSON.parse` ran on the platform.
#[derive(Clone, Debug, PartialEq)]
pub enum AuthBody {
    /// No bytes at all.
    Empty,
    /// Text that `JSON.parse` refused.
    NotJson,
    Json(Json),
}

/// Reads an auth endpoint's answer: the `data` of a success envelope, or the error it
/// reports. `secrets` are scrubbed from whatever the server says.
pub fn read_auth_response(status: u16, body: &AuthBody, secrets: &[&str]) -> Result<Json, AuthError> {
    if let AuthBody::Json(doc) = body {
        if let Some(e) = server_error(status, doc, secrets) {
            return Err(e);
        }
    }
    if !(200..300).contains(&status) {
        return Err(AuthError::from_status(status));
    }
    let AuthBody::Json(doc) = body else {
        return Err(AuthError::invalid_response("the response is not JSON").with_status(status));
    };
    match (doc.get("success").and_then(Json::as_bool), doc.get("data")) {
        (Some(true), Some(data)) => Ok(data.clone()),
        _ => Err(AuthError::invalid_response("the response is not a success envelope").with_status(status)),
    }
}

/// The server's error envelope, if the document is one. `code` must be a string; `name` and
/// `message` default when missing.
pub fn server_error(status: u16, doc: &Json, secrets: &[&str]) -> Option<AuthError> {
    let err = doc.get("error")?;
    let code = err.get("code")?.as_str()?;
    if code.is_empty() {
        return None;
    }
    let name = err.get("name").and_then(Json::as_str).unwrap_or("ServerError");
    let message = err
        .get("message")
        .and_then(Json::as_str)
        .unwrap_or("the server reported an error");
    Some(AuthError::from_server(status, name, code, message, secrets))
}

fn field<'a>(data: &'a Json, name: &str) -> Result<&'a Json, AuthError> {
    data.get(name)
        .ok_or_else(|| AuthError::invalid_response(cat(&["the token pair has no ", name])))
}

fn string<'a>(data: &'a Json, name: &str) -> Result<&'a str, AuthError> {
    field(data, name)?
        .as_str()
        .ok_or_else(|| AuthError::invalid_response(cat(&[name, " is not a string"])))
}

fn timestamp(data: &Json, name: &str) -> Result<i64, AuthError> {
    parse_rfc3339(string(data, name)?)
        .ok_or_else(|| AuthError::invalid_response(cat(&[name, " is not an RFC 3339 date-time with an offset"])))
}

/// Parses the token pair of a login or refresh response.
pub fn parse_token_pair(data: &Json) -> Result<TokenPair, AuthError> {
    if !data.is_object() {
        return Err(AuthError::invalid_response("data is not an object"));
    }
    let access_token = AccessToken::parse(string(data, "access_token")?)?;
    let refresh_token = Some(RefreshToken::parse(string(data, "refresh_token")?)?);
    let access_expires_at = timestamp(data, "access_expires_at")?;
    let refresh_expires_at = timestamp(data, "refresh_expires_at")?;
    let client_id = match data.get("client_id") {
        None | Some(Json::Null) => None,
        Some(v) => match v.as_f64() {
            Some(n) if is_safe_integer(n) => Some(n as i64),
            _ => return Err(AuthError::invalid_response("client_id is not an integer")),
        },
    };
    Ok(TokenPair {
        access_token,
        refresh_token,
        access_expires_at,
        refresh_expires_at,
        client_id,
    })
}

/// The shape of an API response body that `json()` read, as the JavaScript layer saw it
/// after `JSON.parse` (the data itself stays a JS value and never crosses into Rust).
#[derive(Clone, Debug, Default)]
pub struct ApiBody {
    /// The body was empty.
    pub empty: bool,
    /// The body parsed as JSON.
    pub json: bool,
    /// `success` when it is a boolean.
    pub success: Option<bool>,
    /// A `data` member is present.
    pub has_data: bool,
    /// `error.name`, `error.code`, `error.message` when `error.code` is a non-empty string.
    pub error: Option<(Option<String>, String, Option<String>)>,
}

/// What `json()` resolves with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiJson {
    /// The envelope's `data`.
    Data,
    /// Nothing: a 2xx answer with an empty body (a 204 to a DELETE, say).
    Nothing,
    /// The whole document (OAuth 2.0 mode: APIs answer without an envelope).
    Whole,
}

/// Decides `json()`'s outcome: an error envelope is the server's error whatever the status;
/// another non-2xx is SERVER_ERROR / RATE_LIMITED / HTTP_ERROR; a 2xx must be a success
/// envelope (or empty).
pub fn api_json(status: u16, body: &ApiBody, secrets: &[&str]) -> Result<ApiJson, AuthError> {
    if let Some((name, code, message)) = &body.error {
        return Err(AuthError::from_server(
            status,
            name.as_deref().unwrap_or("ServerError"),
            code,
            message.as_deref().unwrap_or("the server reported an error"),
            secrets,
        ));
    }
    if !(200..300).contains(&status) {
        return Err(AuthError::from_status(status));
    }
    if body.empty {
        return Ok(ApiJson::Nothing);
    }
    if !body.json {
        return Err(AuthError::invalid_response("the response is not JSON").with_status(status));
    }
    if body.success == Some(true) && body.has_data {
        Ok(ApiJson::Data)
    } else {
        Err(AuthError::invalid_response("the response is not a success envelope").with_status(status))
    }
}

/// Writes the JSON body of a login request.
pub fn login_body(username: &str, password: &str) -> String {
    let mut out = String::with_capacity(32 + username.len() + password.len());
    out.push_str("{\"username\":");
    json::write_string(&mut out, username);
    out.push_str(",\"password\":");
    json::write_string(&mut out, password);
    out.push('}');
    out
}

/// Writes the JSON body of a refresh or revoke request.
pub fn refresh_token_body(token: &RefreshToken) -> String {
    let mut out = String::with_capacity(20 + token.expose().len());
    out.push_str("{\"refresh_token\":");
    json::write_string(&mut out, token.expose());
    out.push('}');
    out
}

/// The storage record format version. Version 1 (auth-session 0.1) had no origin, account
/// or rotation version: such a record is treated as absent.
const RECORD_FORMAT: f64 = 2.0;
/// The highest record version there is (2^50): far above any count of rotations, and far
/// below 2^53, so a version can always grow. A record above it (a bug elsewhere, or a
/// record written to pin the versions at the top) is not ours: it is treated as unreadable,
/// and a compare-and-set store lets a valid version replace it (see `redis.js`).
pub const MAX_RECORD_VERSION: u64 = 1 << 50;
const LEGACY_FORMAT: f64 = 1.0;

/// A stored session: the pair plus what binds it to its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub pair: TokenPair,
    /// The host (origin and path prefix) the pair was issued by.
    pub origin: String,
    /// The account fingerprint ([`crate::core::fingerprint::account`]) of whoever logged in,
    /// when the session knew it.
    pub account: Option<String>,
    /// Grows with every rotation: a record is newer than another when its version is higher.
    pub version: u64,
}

/// Serialises a stored session for `TokenStorage.put`. Times are stored as the server gave
/// them, so every isolate that restores the record applies its own clock offset.
pub fn write_record(stored: &Stored) -> String {
    let pair = &stored.pair;
    let refresh = pair.refresh_token.as_ref().map_or("", |t| t.expose());
    let mut out = String::with_capacity(192 + pair.access_token.expose().len() + refresh.len());
    out.push_str("{\"v\":2,\"origin\":");
    json::write_string(&mut out, &stored.origin);
    out.push_str(",\"account\":");
    match &stored.account {
        Some(a) => json::write_string(&mut out, a),
        None => out.push_str("null"),
    }
    out.push_str(",\"version\":");
    out.push_str(&int(stored.version.min(MAX_SAFE_INTEGER as u64) as i64));
    out.push_str(",\"access_token\":");
    json::write_string(&mut out, pair.access_token.expose());
    out.push_str(",\"refresh_token\":");
    match &pair.refresh_token {
        Some(_) => json::write_string(&mut out, refresh),
        None => out.push_str("null"),
    }
    out.push_str(",\"access_expires_at\":");
    out.push_str(&int(pair.access_expires_at));
    out.push_str(",\"refresh_expires_at\":");
    out.push_str(&int(pair.refresh_expires_at));
    match pair.client_id {
        Some(id) => {
            out.push_str(",\"client_id\":");
            out.push_str(&int(id));
            out.push('}');
        }
        None => out.push_str(",\"client_id\":null}"),
    }
    out
}

/// Reads a record written by [`write_record`], after the driver's `JSON.parse`. `Ok(None)`:
/// a record of the previous format, which says nothing about its host or account.
pub fn read_record(doc: &Json) -> Result<Option<Stored>, AuthError> {
    let bad = |why: &'static str| AuthError::new(crate::core::error::ErrorCode::Storage, why);
    match doc.get("v").and_then(Json::as_f64) {
        Some(v) if v == RECORD_FORMAT => {}
        Some(v) if v == LEGACY_FORMAT => return Ok(None),
        _ => return Err(bad("the stored session record has an unknown format version")),
    }
    let time = |name: &str| match doc.get(name).and_then(Json::as_f64) {
        Some(n) if is_safe_integer(n) => Ok(n as i64),
        _ => Err(bad("the stored session record has an invalid expiry time")),
    };
    let token = |name: &str| {
        doc.get(name)
            .and_then(Json::as_str)
            .ok_or_else(|| bad("the stored session record has no tokens"))
    };
    let origin = doc
        .get("origin")
        .and_then(Json::as_str)
        .ok_or_else(|| bad("the stored session record has no origin"))?;
    let account = match doc.get("account") {
        None | Some(Json::Null) => None,
        Some(Json::String(a)) if a.len() <= 64 => Some(a.clone()),
        Some(_) => return Err(bad("the stored session record has an invalid account")),
    };
    let version = match doc.get("version").and_then(Json::as_f64) {
        Some(n) if is_safe_integer(n) && n >= 0.0 && n <= MAX_RECORD_VERSION as f64 => n as u64,
        _ => return Err(bad("the stored session record has an invalid version")),
    };
    let pair = TokenPair {
        access_token: AccessToken::parse(token("access_token")?)
            .map_err(|_| bad("the stored session record holds an invalid access token"))?,
        refresh_token: match doc.get("refresh_token") {
            Some(Json::Null) => None,
            _ => Some(
                RefreshToken::parse(token("refresh_token")?)
                    .map_err(|_| bad("the stored session record holds an invalid refresh token"))?,
            ),
        },
        access_expires_at: time("access_expires_at")?,
        refresh_expires_at: time("refresh_expires_at")?,
        client_id: match doc.get("client_id") {
            None | Some(Json::Null) => None,
            Some(v) => match v.as_f64() {
                Some(n) if is_safe_integer(n) => Some(n as i64),
                _ => return Err(bad("the stored session record has an invalid client_id")),
            },
        },
    };
    Ok(Some(Stored {
        pair,
        origin: origin.to_owned(),
        account,
        version,
    }))
}

// Native only: the documents are read with serde_json, a native dev-dependency.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    include!("../../tests/common/json_text.rs");

    const PAIR: &str = r#"{"success":true,"data":{"access_token":"eyJ.a.1","refresh_token":"eyJ.r.1",
        "access_expires_at":"2024-01-15T10:30:00Z","refresh_expires_at":"2024-01-22T09:30:00.5+01:00","client_id":123456}}"#;

    fn body(text: &[u8]) -> AuthBody {
        match parse_json(text) {
            _ if text.is_empty() => AuthBody::Empty,
            Ok(doc) => AuthBody::Json(doc),
            Err(_) => AuthBody::NotJson,
        }
    }

    fn read(status: u16, text: &[u8]) -> Result<Json, AuthError> {
        read_auth_response(status, &body(text), &[])
    }

    fn record(text: &str) -> Result<Option<Stored>, AuthError> {
        read_record(
            &parse_json(text.as_bytes())
                .map_err(|_| AuthError::new(crate::core::error::ErrorCode::Storage, "not JSON"))?,
        )
    }

    fn pair_of(body: &str) -> Result<TokenPair, AuthError> {
        parse_token_pair(&read(200, body.as_bytes())?)
    }

    #[test]
    fn reads_the_guides_token_pair() {
        let p = pair_of(PAIR).unwrap();
        assert_eq!(p.access_token.expose(), "eyJ.a.1");
        assert_eq!(p.refresh_token.as_ref().unwrap().expose(), "eyJ.r.1");
        assert_eq!(p.access_expires_at, 1_705_314_600_000);
        assert_eq!(p.refresh_expires_at, 1_705_912_200_500);
        assert_eq!(p.client_id, Some(123_456));
    }

    #[test]
    fn error_envelopes_become_server_errors() {
        let body = br#"{"error":{"name":"UnauthorizedError","code":"UNAUTHORIZED","message":"Invalid credentials"}}"#;
        let e = read(401, body).unwrap_err();
        assert_eq!(
            (e.code(), e.name(), e.status(), e.message()),
            ("UNAUTHORIZED", "UnauthorizedError", 401, "Invalid credentials")
        );
        let e = read(403, br#"{"error":{"code":"FORBIDDEN"}}"#).unwrap_err();
        assert_eq!((e.code(), e.name()), ("FORBIDDEN", "ServerError"));
    }

    #[test]
    fn bodies_without_envelopes_map_by_status() {
        assert_eq!(
            read(502, b"<html>Bad gateway</html>").unwrap_err().code(),
            "SERVER_ERROR"
        );
        assert_eq!(read(429, b"").unwrap_err().code(), "RATE_LIMITED");
        let e = read(404, b"not found").unwrap_err();
        assert_eq!((e.code(), e.status()), ("HTTP_ERROR", 404));
        for body in [
            "",
            "<html>",
            "[]",
            r#"{"success":false,"data":{}}"#,
            r#"{"success":true}"#,
            r#"{"data":{}}"#,
        ] {
            assert_eq!(
                read(200, body.as_bytes()).unwrap_err().code(),
                "INVALID_RESPONSE",
                "{body}"
            );
        }
    }

    #[test]
    fn malformed_pairs_are_invalid_responses() {
        let cases = [
            r#"{"success":true,"data":[]}"#,
            r#"{"success":true,"data":{"refresh_token":"r","access_expires_at":"2024-01-15T10:30:00Z","refresh_expires_at":"2024-01-15T10:30:00Z"}}"#,
            r#"{"success":true,"data":{"access_token":"","refresh_token":"r","access_expires_at":"2024-01-15T10:30:00Z","refresh_expires_at":"2024-01-15T10:30:00Z"}}"#,
            r#"{"success":true,"data":{"access_token":"a b","refresh_token":"r","access_expires_at":"2024-01-15T10:30:00Z","refresh_expires_at":"2024-01-15T10:30:00Z"}}"#,
            r#"{"success":true,"data":{"access_token":"a","refresh_token":"r\r\nX: y","access_expires_at":"2024-01-15T10:30:00Z","refresh_expires_at":"2024-01-15T10:30:00Z"}}"#,
            r#"{"success":true,"data":{"access_token":"a","access_expires_at":"2024-01-15T10:30:00Z","refresh_expires_at":"2024-01-15T10:30:00Z"}}"#,
            r#"{"success":true,"data":{"access_token":"a","refresh_token":"r","access_expires_at":"2024-01-15","refresh_expires_at":"2024-01-15T10:30:00Z"}}"#,
            r#"{"success":true,"data":{"access_token":"a","refresh_token":"r","access_expires_at":"2024-01-15T10:30:00","refresh_expires_at":"2024-01-15T10:30:00Z"}}"#,
            r#"{"success":true,"data":{"access_token":"a","refresh_token":"r","access_expires_at":1705314600,"refresh_expires_at":"2024-01-15T10:30:00Z"}}"#,
            r#"{"success":true,"data":{"access_token":"a","refresh_token":"r","access_expires_at":"2024-01-15T10:30:00Z","refresh_expires_at":"2024-01-15T10:30:00Z","client_id":"12"}}"#,
            r#"{"success":true,"data":{"access_token":"a","refresh_token":"r","access_expires_at":"2024-01-15T10:30:00Z","refresh_expires_at":"2024-01-15T10:30:00Z","client_id":1.5}}"#,
        ];
        for c in cases {
            let e = pair_of(c).unwrap_err();
            assert_eq!(e.code(), "INVALID_RESPONSE", "{c}");
        }
    }

    #[test]
    fn api_json_outcomes() {
        let data = ApiBody {
            json: true,
            success: Some(true),
            has_data: true,
            ..ApiBody::default()
        };
        assert_eq!(api_json(200, &data, &[]), Ok(ApiJson::Data));
        assert_eq!(
            api_json(
                204,
                &ApiBody {
                    empty: true,
                    ..ApiBody::default()
                },
                &[]
            ),
            Ok(ApiJson::Nothing)
        );
        let err = ApiBody {
            json: true,
            error: Some((None, "FORBIDDEN".into(), Some("no".into()))),
            ..ApiBody::default()
        };
        let e = api_json(403, &err, &[]).unwrap_err();
        assert_eq!(
            (e.code(), e.name(), e.status(), e.message()),
            ("FORBIDDEN", "ServerError", 403, "no")
        );
        assert_eq!(api_json(200, &err, &[]).unwrap_err().code(), "FORBIDDEN");
        assert_eq!(
            api_json(
                503,
                &ApiBody {
                    json: false,
                    ..ApiBody::default()
                },
                &[]
            )
            .unwrap_err()
            .code(),
            "SERVER_ERROR"
        );
        assert_eq!(api_json(429, &data, &[]).unwrap_err().code(), "RATE_LIMITED");
        let e = api_json(404, &data, &[]).unwrap_err();
        assert_eq!((e.code(), e.status()), ("HTTP_ERROR", 404));
        assert_eq!(
            api_json(200, &ApiBody::default(), &[]).unwrap_err().code(),
            "INVALID_RESPONSE"
        );
        let not_envelope = ApiBody {
            json: true,
            ..ApiBody::default()
        };
        assert_eq!(
            api_json(200, &not_envelope, &[]).unwrap_err().code(),
            "INVALID_RESPONSE"
        );
    }

    #[test]
    fn request_bodies_escape_everything() {
        assert_eq!(
            login_body("u\"1", "p\\w\n"),
            r#"{"username":"u\"1","password":"p\\w\n"}"#
        );
        let t = RefreshToken::parse("eyJ.r").unwrap();
        assert_eq!(refresh_token_body(&t), r#"{"refresh_token":"eyJ.r"}"#);
    }

    #[test]
    fn storage_records_round_trip_and_reject_garbage() {
        let p = pair_of(PAIR).unwrap();
        let stored = Stored {
            pair: p.clone(),
            origin: "https://api.example.com/v2".into(),
            account: Some("0123456789abcdef".into()),
            version: 7,
        };
        assert_eq!(record(&write_record(&stored)).unwrap(), Some(stored.clone()));
        let plain = Stored {
            pair: TokenPair { client_id: None, ..p },
            account: None,
            ..stored
        };
        assert_eq!(record(&write_record(&plain)).unwrap(), Some(plain));
        assert_eq!(
            record(r#"{"v":1,"access_token":"a"}"#).unwrap(),
            None,
            "the old format is absent"
        );
        for bad in ["", "{}", r#"{"v":3}"#, r#"{"v":2,"access_token":"a"}"#, "null"] {
            let e = record(bad).unwrap_err();
            assert_eq!(e.code(), "STORAGE_ERROR", "{bad}");
        }
    }
}
