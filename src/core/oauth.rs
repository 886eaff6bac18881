//! OAuth 2.0 as a wire format: what the token and revocation endpoints are sent (RFC 6749,
//! RFC 7009, client authentication of RFC 6749 §2.3 and RFC 7523), what their answers
//! mean, and authorization-server metadata (RFC 8414, OpenID Connect discovery).
//!
//! The machine decides *when* to ask for a token exactly as in provider mode; this module
//! only changes *how* the asking is written and the answer read. Every secret stays in the
//! request body or the `Authorization` header the driver writes to the wire.

#[allow(unused_imports)]
use crate::prelude::*;

use crate::core::envelope::{ApiBody, ApiJson, AuthBody, TokenPair};
use crate::core::error::{AuthError, ErrorCode};
use crate::core::json::{self, Json};
use crate::core::secret::{AccessToken, Password, RefreshToken};
use crate::core::text::{self, cat, int};

/// An expiry the server did not state (no `expires_in`, no `refresh_token_expires_in`):
/// JavaScript's largest `Date`, so it compares as "never" and stores as a number.
pub const NEVER: i64 = 8_640_000_000_000_000;

/// How the client proves itself to the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// RFC 6749 §2.3.1: `Authorization: Basic`, id and secret form-encoded first (unless
    /// the server wants them as they are: [`OAuth::basic_plain`]).
    Basic,
    /// `client_id` and `client_secret` in the body.
    Post,
    /// RFC 7523: a JWT signed with the client's private key, by the driver's WebCrypto.
    PrivateKeyJwt,
    /// A public client: `client_id` in the body.
    None,
}

/// What `login()` (and a quiet login) asks the token endpoint for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// `grant_type=refresh_token` with the refresh token the application already holds.
    RefreshToken,
    ClientCredentials,
    /// The resource-owner password grant, with `credentials`.
    Password,
}

/// The OAuth 2.0 part of a session's configuration.
#[derive(Clone, Debug)]
pub struct OAuth {
    /// As configured: discovery's document must name exactly this issuer.
    pub issuer: Option<String>,
    /// Given, or discovered (then set once by the machine).
    pub token_endpoint: Option<String>,
    pub revocation_endpoint: Option<String>,
    pub client_id: String,
    pub client_secret: Option<Password>,
    pub auth: ClientAuth,
    pub basic_plain: bool,
    /// The JWS algorithm of the private key (private_key_jwt, from [`jws_alg`]), and its
    /// key id.
    pub alg: Option<&'static str>,
    pub kid: Option<String>,
    pub grant: Grant,
    /// The refresh token the application holds (grant `refresh_token`): used once.
    pub seed: Option<RefreshToken>,
    /// `scope`, `resource` and `audience`, form-encoded, each starting with `&`.
    pub params: String,
}

/// The JWS algorithm a private key signs client assertions with, from what the driver read
/// of the key: a private JWK's `kty`, `crv` and `alg`, or a WebCrypto `CryptoKey`'s algorithm
/// `name`, `namedCurve` and `hash` (the two vocabularies do not overlap). `None`: not a key
/// the package signs with in every runtime (RS256, PS256, ES256, ES384, EdDSA), or a JWK
/// whose `alg` names another algorithm than its type and curve allow.
///
/// A JWK that states no `alg` is used with the algorithm its type implies (RSA: RS256); one
/// that states an algorithm the package does not sign with (RS512) is refused, not signed with
/// another the server would reject.
pub fn jws_alg(kind: &str, curve: Option<&str>, hash: Option<&str>, declared: Option<&str>) -> Option<&'static str> {
    // (kind, curve, hash, algorithm); "" matches anything. The first row that fits wins: an
    // RSA JWK stating no `alg` signs RS256.
    const KEYS: [(&str, &str, &str, &str); 10] = [
        ("RSA", "", "", "RS256"),
        ("RSA", "", "", "PS256"),
        ("EC", "P-256", "", "ES256"),
        ("EC", "P-384", "", "ES384"),
        ("OKP", "Ed25519", "", "EdDSA"),
        ("RSASSA-PKCS1-v1_5", "", "SHA-256", "RS256"),
        ("RSA-PSS", "", "SHA-256", "PS256"),
        ("ECDSA", "P-256", "", "ES256"),
        ("ECDSA", "P-384", "", "ES384"),
        ("Ed25519", "", "", "EdDSA"),
    ];
    let fits = |want: &str, got: Option<&str>| want.is_empty() || got == Some(want);
    KEYS.iter()
        .find(|(k, c, h, a)| *k == kind && fits(c, curve) && fits(h, hash) && declared.map_or(true, |d| d == *a))
        .map(|row| row.3)
}

/// `application/x-www-form-urlencoded` (the URL Standard's serializer): unreserved bytes as
/// they are, space as `+`, everything else percent-encoded.
pub fn form_encode(out: &mut String, value: &str) {
    for &b in value.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(b as char),
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[(b >> 4) as usize]));
                out.push(char::from(b"0123456789ABCDEF"[(b & 15) as usize]));
            }
        }
    }
}

/// `&name=value`, form-encoded.
pub fn param(out: &mut String, name: &str, value: &str) {
    if !out.is_empty() {
        out.push('&');
    }
    out.push_str(name);
    out.push('=');
    form_encode(out, value);
}

/// Base64 (RFC 4648 §4, padded) or base64url (§5, unpadded).
pub fn base64(bytes: &[u8], url: bool) -> String {
    let table: &[u8; 64] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n =
            (chunk[0] as u32) << 16 | (*chunk.get(1).unwrap_or(&0) as u32) << 8 | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..=chunk.len() {
            out.push(char::from(table[(n >> (18 - 6 * i)) as usize & 63]));
        }
        if !url {
            for _ in chunk.len()..3 {
                out.push('=');
            }
        }
    }
    out
}

/// A request to the token or revocation endpoint, as the machine hands it to the driver.
pub struct Form {
    pub body: String,
    /// The `Authorization` header (client_secret_basic): a secret.
    pub authorization: Option<String>,
    /// private_key_jwt: the assertion to sign.
    pub sign: Option<Signing>,
}

/// A client assertion to sign (private_key_jwt): the driver signs `input` with the client's
/// key by `alg` and appends `<input>.<signature>` to the body, which ends with
/// `client_assertion=`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signing {
    pub alg: &'static str,
    /// The JWT's signing input: header and claims, base64url.
    pub input: String,
}

impl OAuth {
    /// Adds the client's authentication to a form `body`. `aud` is the token endpoint,
    /// `now_s` the server's time in seconds, `jti` fresh for this assertion.
    pub fn authenticate(&self, mut body: String, aud: &str, now_s: i64, jti: &str) -> Form {
        let mut authorization = None;
        let mut sign = None;
        let secret = self.client_secret.as_ref().map_or("", |s| s.expose());
        match self.auth {
            ClientAuth::Basic => {
                let mut pair = String::new();
                if self.basic_plain {
                    pair.push_str(&self.client_id);
                    pair.push(':');
                    pair.push_str(secret);
                } else {
                    form_encode(&mut pair, &self.client_id);
                    pair.push(':');
                    form_encode(&mut pair, secret);
                }
                authorization = Some(cat(&["Basic ", &base64(pair.as_bytes(), false)]));
            }
            ClientAuth::Post => {
                param(&mut body, "client_id", &self.client_id);
                param(&mut body, "client_secret", secret);
            }
            ClientAuth::None => param(&mut body, "client_id", &self.client_id),
            ClientAuth::PrivateKeyJwt => {
                param(&mut body, "client_id", &self.client_id);
                param(
                    &mut body,
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                );
                body.push_str("&client_assertion=");
                let alg = self.alg.unwrap_or("RS256");
                let mut header = String::from("{\"alg\":");
                json::write_string(&mut header, alg);
                if let Some(kid) = &self.kid {
                    header.push_str(",\"kid\":");
                    json::write_string(&mut header, kid);
                }
                header.push_str(",\"typ\":\"JWT\"}");
                let mut claims = String::from("{\"iss\":");
                json::write_string(&mut claims, &self.client_id);
                claims.push_str(",\"sub\":");
                json::write_string(&mut claims, &self.client_id);
                claims.push_str(",\"aud\":");
                json::write_string(&mut claims, aud);
                claims.push_str(",\"jti\":");
                json::write_string(&mut claims, jti);
                claims.push_str(",\"iat\":");
                claims.push_str(&int(now_s));
                // A short life: an assertion is used once, at once.
                claims.push_str(",\"exp\":");
                claims.push_str(&int(now_s + 60));
                claims.push('}');
                sign = Some(Signing {
                    alg,
                    input: cat(&[&base64(header.as_bytes(), true), ".", &base64(claims.as_bytes(), true)]),
                });
            }
        }
        Form {
            body,
            authorization,
            sign,
        }
    }

    /// The body of a grant request (before client authentication).
    pub fn grant_body(&self, username: &str, password: &str, seed: Option<&RefreshToken>) -> String {
        let mut body = String::new();
        match self.grant {
            Grant::ClientCredentials => param(&mut body, "grant_type", "client_credentials"),
            Grant::Password => {
                param(&mut body, "grant_type", "password");
                param(&mut body, "username", username);
                param(&mut body, "password", password);
            }
            Grant::RefreshToken => {
                param(&mut body, "grant_type", "refresh_token");
                param(&mut body, "refresh_token", seed.map_or("", |t| t.expose()));
            }
        }
        body.push_str(&self.params);
        body
    }
}

/// The body of a refresh request.
pub fn refresh_body(token: &RefreshToken) -> String {
    let mut body = String::new();
    param(&mut body, "grant_type", "refresh_token");
    param(&mut body, "refresh_token", token.expose());
    body
}

/// The body of an RFC 7009 revocation: the refresh token when there is one (revoking it
/// ends the grant at servers that tie the access token to it), else the access token.
pub fn revoke_body(pair: &TokenPair) -> String {
    let mut body = String::new();
    match &pair.refresh_token {
        Some(r) => {
            param(&mut body, "token", r.expose());
            param(&mut body, "token_type_hint", "refresh_token");
        }
        None => {
            param(&mut body, "token", pair.access_token.expose());
            param(&mut body, "token_type_hint", "access_token");
        }
    }
    body
}

/// An RFC 6749 §5.2 error response, mapped to the package's codes. The second value says
/// whether the grant it answered is dead (`invalid_grant`): for a refresh, the session's
/// end.
pub fn token_error(status: u16, body: &AuthBody, secrets: &[&str]) -> Option<(AuthError, bool)> {
    let AuthBody::Json(doc) = body else { return None };
    let error = doc.get("error")?.as_str()?;
    if error.is_empty() {
        return None;
    }
    let (code, name) = match error {
        "invalid_grant" | "invalid_client" => ("UNAUTHORIZED", "UnauthorizedError"),
        "unauthorized_client" | "access_denied" | "invalid_scope" | "invalid_target" => ("FORBIDDEN", "ForbiddenError"),
        "temporarily_unavailable" | "server_error" => ("SERVER_ERROR", "ServerError"),
        "slow_down" => ("RATE_LIMITED", "RateLimitedError"),
        _ => ("VALIDATION_FAILURE", "ValidationError"),
    };
    let description = doc.get("error_description").and_then(Json::as_str).unwrap_or("");
    let message = if description.is_empty() {
        error.to_owned()
    } else {
        cat(&[error, ": ", description])
    };
    // The server's words, scrubbed of every secret like any server text.
    let e = AuthError::from_server(status, name, code, &message, secrets);
    let e = match code {
        "SERVER_ERROR" => AuthError::new(ErrorCode::ServerError, e.message().to_owned()).with_status(status),
        "RATE_LIMITED" => AuthError::new(ErrorCode::RateLimited, e.message().to_owned()).with_status(status),
        _ => e,
    };
    Some((e, error == "invalid_grant"))
}

/// Reads a token endpoint's answer into a token pair. `anchor` is the server's time of the
/// answer (its `Date`, else our clock corrected by the known skew): `expires_in` counts
/// from it.
pub fn read_token_response(status: u16, body: &AuthBody, anchor: i64) -> Result<TokenPair, AuthError> {
    if !(200..300).contains(&status) {
        return Err(AuthError::from_status(status));
    }
    let AuthBody::Json(doc) = body else {
        return Err(AuthError::invalid_response("the token response is not JSON").with_status(status));
    };
    let bad = |why: &str| AuthError::invalid_response(cat(&["the token response ", why])).with_status(status);
    if !doc.is_object() {
        return Err(bad("is not an object"));
    }
    let access = doc
        .get("access_token")
        .and_then(Json::as_str)
        .ok_or_else(|| bad("has no access_token"))?;
    let access_token = AccessToken::parse(access).map_err(|e| e.with_status(status))?;
    match doc.get("token_type").and_then(Json::as_str) {
        Some(t) if t.eq_ignore_ascii_case("bearer") => {}
        _ => return Err(bad("is not a Bearer token (token_type)")),
    }
    let refresh_token = match doc.get("refresh_token") {
        None | Some(Json::Null) => None,
        Some(v) => Some(
            RefreshToken::parse(
                v.as_str()
                    .ok_or_else(|| bad("has a refresh_token that is not a string"))?,
            )
            .map_err(|e| e.with_status(status))?,
        ),
    };
    let seconds = |name: &str| -> Result<i64, AuthError> {
        let n = match doc.get(name) {
            None | Some(Json::Null) => return Ok(NEVER),
            // Some servers send a numeric string.
            Some(Json::String(t)) if !t.is_empty() && t.len() < 9 && t.bytes().all(|b| b.is_ascii_digit()) => {
                t.bytes().fold(0.0, |n, b| n * 10.0 + (b - b'0') as f64)
            }
            Some(v) => v.as_f64().unwrap_or(-1.0),
        };
        // A year is far beyond any token's life.
        if (0.0..=31_622_400.0).contains(&n) {
            Ok(anchor + (n * 1000.0) as i64)
        } else {
            Err(bad(&cat(&["has an invalid ", name])))
        }
    };
    Ok(TokenPair {
        access_token,
        refresh_token,
        access_expires_at: seconds("expires_in")?,
        refresh_expires_at: seconds("refresh_token_expires_in")?,
        client_id: None,
    })
}

/// Where RFC 8414 puts an issuer's metadata (`/.well-known/oauth-authorization-server`
/// inserted before the issuer's path), or, second, OpenID Connect discovery's
/// (`/.well-known/openid-configuration` appended).
pub fn metadata_url(issuer: &str, openid: bool) -> String {
    let issuer = issuer.trim_end_matches('/');
    if openid {
        return cat(&[issuer, "/.well-known/openid-configuration"]);
    }
    let after_scheme = text::find(issuer, "://").map_or(0, |i| i + 3);
    let (origin, path) = match issuer[after_scheme..].find('/') {
        Some(i) => issuer.split_at(after_scheme + i),
        None => (issuer, ""),
    };
    cat(&[origin, "/.well-known/oauth-authorization-server", path])
}

/// The endpoints of a metadata document, checked: it names exactly `issuer`, and its
/// endpoints are absolute URLs that `url_ok` accepts (scheme rules of the session).
pub fn read_metadata(
    issuer: &str,
    body: &AuthBody,
    url_ok: impl Fn(&str) -> bool,
) -> Result<(String, Option<String>), AuthError> {
    let bad = |why: &str| AuthError::invalid_response(cat(&["the authorization server metadata ", why]));
    let AuthBody::Json(doc) = body else {
        return Err(bad("is not JSON"));
    };
    if doc.get("issuer").and_then(Json::as_str) != Some(issuer) {
        return Err(bad("names another issuer than the one configured"));
    }
    let endpoint = |name: &str| match doc.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(u)) if url_ok(u) => Ok(Some(u.clone())),
        Some(_) => Err(bad(&cat(&["has an invalid ", name]))),
    };
    let token = endpoint("token_endpoint")?.ok_or_else(|| bad("has no token_endpoint"))?;
    Ok((token, endpoint("revocation_endpoint")?))
}

/// `json()` in OAuth 2.0 mode: a 2xx's JSON as it is (an empty body: nothing); another
/// status is SERVER_ERROR / RATE_LIMITED / HTTP_ERROR.
pub fn api_json(status: u16, body: &ApiBody) -> Result<ApiJson, AuthError> {
    if !(200..300).contains(&status) {
        return Err(AuthError::from_status(status));
    }
    if body.empty {
        Ok(ApiJson::Nothing)
    } else if body.json {
        Ok(ApiJson::Whole)
    } else {
        Err(AuthError::invalid_response("the response is not JSON").with_status(status))
    }
}

/// Does a `WWW-Authenticate` header hold a Bearer challenge with
/// `error="invalid_token"` (RFC 6750 §3)? Parameter names and the scheme are
/// case-insensitive; the value may be quoted or not.
pub fn invalid_token(header: &str) -> bool {
    let h = header.as_bytes();
    let mut in_bearer = false;
    let mut i = 0;
    while i < h.len() {
        // A token starts here: an auth-scheme (no `=` after it) or a parameter name.
        while i < h.len() && matches!(h[i], b' ' | b',' | b'\t') {
            i += 1;
        }
        let start = i;
        while i < h.len() && !matches!(h[i], b' ' | b',' | b'=' | b'\t') {
            i += 1;
        }
        let name = &h[start..i];
        while i < h.len() && h[i] == b' ' {
            i += 1;
        }
        if i < h.len() && h[i] == b'=' {
            i += 1;
            while i < h.len() && h[i] == b' ' {
                i += 1;
            }
            let value_start;
            let value_end;
            if i < h.len() && h[i] == b'"' {
                i += 1;
                value_start = i;
                while i < h.len() && h[i] != b'"' {
                    i += if h[i] == b'\\' { 2 } else { 1 };
                }
                value_end = i.min(h.len());
                i += 1;
            } else {
                value_start = i;
                while i < h.len() && !matches!(h[i], b',' | b' ') {
                    i += 1;
                }
                value_end = i;
            }
            if in_bearer && name.eq_ignore_ascii_case(b"error") && &h[value_start..value_end] == b"invalid_token" {
                return true;
            }
        } else if !name.is_empty() {
            in_bearer = name.eq_ignore_ascii_case(b"bearer");
        }
    }
    false
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    include!("../../tests/common/json_text.rs");
    #[allow(dead_code)]
    mod encodings {
        include!("../../tests/common/encodings.rs");
    }
    use encodings::b64url_decode;

    fn body(text: &str) -> AuthBody {
        AuthBody::Json(parse_json(text.as_bytes()).unwrap())
    }

    fn client(auth: ClientAuth) -> OAuth {
        OAuth {
            issuer: None,
            token_endpoint: Some("https://as.example/token".into()),
            revocation_endpoint: None,
            client_id: "c li:ent".into(),
            client_secret: Some(Password::new("s3cr%t+/")),
            auth,
            basic_plain: false,
            alg: Some("ES256"),
            kid: Some("k1".into()),
            grant: Grant::ClientCredentials,
            seed: None,
            params: "&scope=read+write".into(),
        }
    }

    #[test]
    fn the_signing_algorithm_follows_the_key() {
        let some = |s: &'static str| Some(s);
        for (kind, curve, hash, declared, alg) in [
            // Private JWKs: kty, crv, alg.
            ("RSA", None, None, None, some("RS256")),
            ("RSA", None, None, some("RS256"), some("RS256")),
            ("RSA", None, None, some("PS256"), some("PS256")),
            ("RSA", None, None, some("RS512"), None),
            ("RSA", None, None, some("ES256"), None),
            ("EC", some("P-256"), None, None, some("ES256")),
            ("EC", some("P-256"), None, some("ES256"), some("ES256")),
            ("EC", some("P-256"), None, some("ES384"), None),
            ("EC", some("P-384"), None, None, some("ES384")),
            ("EC", some("P-521"), None, None, None),
            ("EC", None, None, None, None),
            ("OKP", some("Ed25519"), None, None, some("EdDSA")),
            ("OKP", some("Ed25519"), None, some("EdDSA"), some("EdDSA")),
            ("OKP", some("Ed25519"), None, some("ES256"), None),
            ("OKP", some("X25519"), None, None, None),
            ("oct", None, None, some("HS256"), None),
            // CryptoKeys: algorithm name, namedCurve, hash.
            ("RSASSA-PKCS1-v1_5", None, some("SHA-256"), None, some("RS256")),
            ("RSASSA-PKCS1-v1_5", None, some("SHA-384"), None, None),
            ("RSA-PSS", None, some("SHA-256"), None, some("PS256")),
            ("ECDSA", some("P-256"), None, None, some("ES256")),
            ("ECDSA", some("P-384"), None, None, some("ES384")),
            ("ECDSA", some("P-521"), None, None, None),
            ("Ed25519", None, None, None, some("EdDSA")),
            ("HMAC", None, some("SHA-256"), None, None),
            ("", None, None, None, None),
        ] {
            assert_eq!(
                jws_alg(kind, curve, hash, declared),
                alg,
                "{kind} {curve:?} {hash:?} {declared:?}"
            );
        }
    }

    #[test]
    fn form_encoding_is_the_url_standards() {
        let mut out = String::new();
        form_encode(&mut out, "a b+c/é~*-._");
        assert_eq!(out, "a+b%2Bc%2F%C3%A9%7E*-._");
    }

    #[test]
    fn base64_both_alphabets() {
        assert_eq!(base64(b"", false), "");
        assert_eq!(base64(b"f", false), "Zg==");
        assert_eq!(base64(b"fo", false), "Zm8=");
        assert_eq!(base64(b"foo", false), "Zm9v");
        assert_eq!(base64(b"\xfb\xff", true), "-_8");
        assert_eq!(base64(b"\xfb\xff", false), "+/8=");
    }

    #[test]
    fn client_authentication_methods() {
        let c = client(ClientAuth::Basic);
        let f = c.authenticate(
            "grant_type=client_credentials".into(),
            "https://as.example/token",
            0,
            "j",
        );
        // RFC 6749 §2.3.1: form-encoded, then base64: "c+li%3Aent:s3cr%25t%2B%2F".
        assert_eq!(
            f.authorization.as_deref(),
            Some("Basic YytsaSUzQWVudDpzM2NyJTI1dCUyQiUyRg==")
        );
        assert_eq!(f.body, "grant_type=client_credentials");
        let plain = OAuth {
            basic_plain: true,
            ..client(ClientAuth::Basic)
        };
        let f = plain.authenticate(String::new(), "", 0, "j");
        assert_eq!(
            f.authorization.as_deref(),
            Some(&*cat(&["Basic ", &base64(b"c li:ent:s3cr%t+/", false)]))
        );
        let f = client(ClientAuth::Post).authenticate("a=b".into(), "", 0, "j");
        assert_eq!(f.body, "a=b&client_id=c+li%3Aent&client_secret=s3cr%25t%2B%2F");
        assert!(f.authorization.is_none());
        let f = client(ClientAuth::None).authenticate("a=b".into(), "", 0, "j");
        assert_eq!(f.body, "a=b&client_id=c+li%3Aent");
        let f = client(ClientAuth::PrivateKeyJwt).authenticate(
            "a=b".into(),
            "https://as.example/token",
            1_700_000_000,
            "jti-1",
        );
        assert!(f.body.ends_with("&client_assertion="), "{}", f.body);
        assert!(f
            .body
            .contains("client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"));
        let signing = f.sign.unwrap();
        assert_eq!(signing.alg, "ES256");
        let (h, c) = signing.input.split_once('.').unwrap();
        let decode = |s: &str| String::from_utf8(b64url_decode(s)).unwrap();
        assert_eq!(decode(h), r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#);
        assert_eq!(
            decode(c),
            r#"{"iss":"c li:ent","sub":"c li:ent","aud":"https://as.example/token","jti":"jti-1","iat":1700000000,"exp":1700000060}"#
        );
    }

    #[test]
    fn grant_bodies() {
        let mut c = client(ClientAuth::Post);
        assert_eq!(
            c.grant_body("", "", None),
            "grant_type=client_credentials&scope=read+write"
        );
        c.grant = Grant::Password;
        assert_eq!(
            c.grant_body("al ice", "p&w=", None),
            "grant_type=password&username=al+ice&password=p%26w%3D&scope=read+write"
        );
        c.grant = Grant::RefreshToken;
        let seed = RefreshToken::parse("r.1").unwrap();
        assert_eq!(
            c.grant_body("", "", Some(&seed)),
            "grant_type=refresh_token&refresh_token=r.1&scope=read+write"
        );
        assert_eq!(refresh_body(&seed), "grant_type=refresh_token&refresh_token=r.1");
    }

    #[test]
    fn token_responses() {
        let p = read_token_response(
            200,
            &body(r#"{"access_token":"a.1","token_type":"bearer","expires_in":60,"refresh_token":"r.2","scope":"x"}"#),
            1_000_000,
        )
        .unwrap();
        assert_eq!(p.access_token.expose(), "a.1");
        assert_eq!(p.refresh_token.as_ref().map(|r| r.expose()), Some("r.2"));
        assert_eq!((p.access_expires_at, p.refresh_expires_at), (1_060_000, NEVER));
        let p = read_token_response(
            200,
            &body(r#"{"access_token":"a","token_type":"Bearer","expires_in":"30","refresh_token_expires_in":100}"#),
            0,
        )
        .unwrap();
        assert_eq!(
            (p.access_expires_at, p.refresh_expires_at, p.refresh_token),
            (30_000, 100_000, None)
        );
        let p = read_token_response(200, &body(r#"{"access_token":"a","token_type":"Bearer"}"#), 5).unwrap();
        assert_eq!(p.access_expires_at, NEVER);
        for bad in [
            r#"[]"#,
            r#"{"token_type":"Bearer"}"#,
            r#"{"access_token":"a","token_type":"DPoP"}"#,
            r#"{"access_token":"a"}"#,
            r#"{"access_token":"a b","token_type":"Bearer"}"#,
            r#"{"access_token":"a","token_type":"Bearer","expires_in":-1}"#,
            r#"{"access_token":"a","token_type":"Bearer","expires_in":1e300}"#,
            r#"{"access_token":"a","token_type":"Bearer","refresh_token":7}"#,
        ] {
            assert_eq!(
                read_token_response(200, &body(bad), 0).unwrap_err().code(),
                "INVALID_RESPONSE",
                "{bad}"
            );
        }
        assert_eq!(
            read_token_response(200, &AuthBody::NotJson, 0).unwrap_err().code(),
            "INVALID_RESPONSE"
        );
    }

    #[test]
    fn error_responses_map_to_the_packages_codes() {
        let cases = [
            ("invalid_grant", 400, "UNAUTHORIZED", true, false),
            ("invalid_client", 401, "UNAUTHORIZED", false, false),
            ("invalid_scope", 400, "FORBIDDEN", false, false),
            ("unauthorized_client", 400, "FORBIDDEN", false, false),
            ("invalid_request", 400, "VALIDATION_FAILURE", false, false),
            ("whatever", 400, "VALIDATION_FAILURE", false, false),
            ("temporarily_unavailable", 503, "SERVER_ERROR", false, true),
            ("slow_down", 400, "RATE_LIMITED", false, true),
        ];
        for (error, status, code, dead, retryable) in cases {
            let doc = body(&cat(&[
                r#"{"error":""#,
                error,
                r#"","error_description":"bad s3cret here"}"#,
            ]));
            let (e, rejected) = token_error(status, &doc, &["s3cret"]).unwrap();
            assert_eq!(
                (e.code(), rejected, e.retryable(), e.status()),
                (code, dead, retryable, status),
                "{error}"
            );
            assert!(e.message().starts_with(error), "{}", e.message());
            assert!(!e.message().contains("s3cret"), "{}", e.message());
        }
        assert!(token_error(400, &body(r#"{"error":""}"#), &[]).is_none());
        assert!(token_error(400, &AuthBody::Empty, &[]).is_none());
    }

    #[test]
    fn bearer_challenges() {
        for yes in [
            r#"Bearer error="invalid_token""#,
            r#"Bearer realm="api", error="invalid_token", error_description="expired""#,
            r#"Basic realm="x", bearer ERROR=invalid_token"#,
            r#"DPoP algs="ES256", Bearer error="invalid_token""#,
        ] {
            assert!(invalid_token(yes), "{yes}");
        }
        // A megabyte of header is read once, linearly, and found or not.
        let huge = cat(&["Bearer ", &"realm=\"x\", ".repeat(80_000), "error=\"invalid_token\""]);
        assert!(invalid_token(&huge));
        assert!(!invalid_token(&"\"".repeat(1_000_000)));
        assert!(!invalid_token(&"Bearer error=\"".repeat(100_000)));
        for no in [
            "",
            "Bearer",
            r#"Bearer error="insufficient_scope""#,
            r#"Bearer error_description="invalid_token""#,
            r#"Basic error="invalid_token""#,
            r#"Bearer realm="error="invalid_token"""#,
            r#"Bearer error="invalid_token_x""#,
        ] {
            assert!(!invalid_token(no), "{no}");
        }
    }

    #[test]
    fn metadata() {
        assert_eq!(
            metadata_url("https://as.example", false),
            "https://as.example/.well-known/oauth-authorization-server"
        );
        assert_eq!(
            metadata_url("https://as.example/t/1/", false),
            "https://as.example/.well-known/oauth-authorization-server/t/1"
        );
        assert_eq!(
            metadata_url("https://as.example/t/1", true),
            "https://as.example/t/1/.well-known/openid-configuration"
        );
        let ok = |u: &str| u.starts_with("https://");
        let doc = body(
            r#"{"issuer":"https://as.example","token_endpoint":"https://as.example/token","revocation_endpoint":"https://as.example/rev"}"#,
        );
        assert_eq!(
            read_metadata("https://as.example", &doc, ok).unwrap(),
            ("https://as.example/token".into(), Some("https://as.example/rev".into()))
        );
        for bad in [
            r#"{"issuer":"https://evil.example","token_endpoint":"https://as.example/token"}"#,
            r#"{"issuer":"https://as.example"}"#,
            r#"{"issuer":"https://as.example","token_endpoint":"http://as.example/token"}"#,
            r#"{"issuer":"https://as.example","token_endpoint":"https://as.example/token","revocation_endpoint":1}"#,
        ] {
            assert_eq!(
                read_metadata("https://as.example", &body(bad), ok).unwrap_err().code(),
                "INVALID_RESPONSE",
                "{bad}"
            );
        }
    }
}
