//! OAuth 2.0 mode at the machine level: what the token and revocation endpoints are sent
//! for each grant and client authentication, what their answers do to the session, the
//! authorization server's metadata, `json()` and Bearer challenges, and storage records.
//! Straight-line with chosen times, as the other `core_*` suites; every [`Run`] also checks
//! that nothing it printed holds a secret when it is dropped.
// Native only: the harness reads JSON with the core's native reader.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::collections::HashSet;

use auth_session::core::config::{Config, OAuthOptions, Options};
use auth_session::core::envelope::ApiBody;
use auth_session::core::machine::{
    ApiStep, AuthRequest, Behind, CallId, Endpoint, IoFailure, Need, Outcome, Persistence, Step, StorageReply,
    TokenStep, Waited, Want, Wire,
};
use auth_session::core::oauth::{ClientAuth, Grant};
use auth_session::core::secret::Password;
use auth_session::core::{AuthError, Phase};
use common::*;

const TOKEN_URL: &str = "https://as.test/oauth/token";
const REVOKE_URL: &str = "https://as.test/oauth/revoke";
/// A client id that form encoding changes (`:` and a space).
const CLIENT: &str = "client:1 x";
/// A client secret that form encoding changes (`%`, `+`, `/`).
const SECRET: &str = "cs-CANARY-s3cr%t+/";
/// The refresh token the application gives the session (grant `refresh_token`).
const SEED_RT: &str = "seed.CANARY.0";
const ISSUER: &str = "https://as.test/tenant/1";
const PATH: &str = "/v1/items";
const CHALLENGE: &str = r#"Bearer realm="api", error="invalid_token", error_description="expired""#;

// ----- options -------------------------------------------------------------------------------

/// A token endpoint and a client id; `f` adds the rest.
fn oauth(f: impl FnOnce(&mut OAuthOptions)) -> OAuthOptions {
    let mut o = OAuthOptions {
        token_endpoint: Some(TOKEN_URL.into()),
        client_id: Some(CLIENT.into()),
        ..OAuthOptions::default()
    };
    f(&mut o);
    o
}

/// Options in OAuth mode: `f` shapes `oauth`, `g` the rest.
fn options_with(f: impl FnOnce(&mut OAuthOptions), g: impl FnOnce(&mut Options)) -> Options {
    let mut o = options();
    o.oauth = Some(oauth(f));
    g(&mut o);
    o
}

fn oconfig_with(f: impl FnOnce(&mut OAuthOptions), g: impl FnOnce(&mut Options)) -> Config {
    options_with(f, g).validate().expect("valid options")
}

fn oconfig(f: impl FnOnce(&mut OAuthOptions)) -> Config {
    oconfig_with(f, |_| {})
}

/// client_secret_basic (the default with a secret).
fn basic(o: &mut OAuthOptions) {
    o.client_secret = Some(Password::new(SECRET));
}

fn post(o: &mut OAuthOptions) {
    basic(o);
    o.client_auth = Some("client_secret_post".into());
}

/// private_key_jwt: the driver read an EC P-256 JWK with this kid.
fn jwt(o: &mut OAuthOptions) {
    o.key_type = Some("EC".into());
    o.key_curve = Some("P-256".into());
    o.kid = Some("kid-1".into());
}

fn seeded(o: &mut OAuthOptions) {
    basic(o);
    o.refresh_token = Some(Password::new(SEED_RT));
}

fn password_grant(o: &mut OAuthOptions) {
    basic(o);
    o.grant = Some("password".into());
}

fn with_revocation(o: &mut OAuthOptions) {
    o.revocation_endpoint = Some(REVOKE_URL.into());
}

fn discovering(o: &mut OAuthOptions) {
    o.token_endpoint = None;
    o.issuer = Some(ISSUER.into());
}

/// The resource owner's password grant with [`USER`]'s credentials.
fn password_config(f: impl FnOnce(&mut OAuthOptions)) -> Config {
    oconfig_with(
        |o| {
            password_grant(o);
            f(o);
        },
        with_credentials,
    )
}

// ----- token endpoint answers ----------------------------------------------------------------

/// A token response (RFC 6749 §5.1) with `extra` members (each starting with `,`).
fn token_with(access: &str, refresh: Option<&str>, expires_in: Option<u32>, extra: &str) -> Reply {
    let mut t = format!(r#"{{"access_token":"{access}","token_type":"Bearer""#);
    if let Some(r) = refresh {
        t.push_str(&format!(r#","refresh_token":"{r}""#));
    }
    if let Some(e) = expires_in {
        t.push_str(&format!(r#","expires_in":{e}"#));
    }
    t.push_str(extra);
    t.push('}');
    reply(200, &t)
}

fn token(access: &str, refresh: Option<&str>, expires_in: Option<u32>) -> Reply {
    token_with(access, refresh, expires_in, "")
}

/// Pair `n` for an hour, with its refresh token.
fn pair_reply(n: u32) -> Reply {
    token(&at(n), Some(&rt(n)), Some(3600))
}

/// Access token `n` for an hour, no refresh token (client credentials).
fn access_reply(n: u32) -> Reply {
    token(&at(n), None, Some(3600))
}

/// An error response (RFC 6749 §5.2).
fn oauth_error(status: u16, error: &str, description: &str) -> Reply {
    let mut t = String::from("{\"error\":");
    t.push_str(&serde_json::to_string(error).unwrap());
    t.push_str(",\"error_description\":");
    t.push_str(&serde_json::to_string(description).unwrap());
    t.push('}');
    reply(status, &t)
}

fn metadata(issuer: &str, token_endpoint: &str, revocation: Option<&str>) -> Reply {
    let mut t = format!(r#"{{"issuer":"{issuer}","token_endpoint":"{token_endpoint}""#);
    if let Some(r) = revocation {
        t.push_str(&format!(r#","revocation_endpoint":"{r}""#));
    }
    t.push_str(r#","grant_types_supported":["client_credentials","refresh_token"]}"#);
    reply(200, &t)
}

// ----- reading requests ----------------------------------------------------------------------

/// Every value of field `name`.
fn fields(req: &AuthRequest, name: &str) -> Vec<String> {
    form(&req.body)
        .into_iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v)
        .collect()
}

/// The one value of field `name`, if the body has it (panics on repeats).
fn field(req: &AuthRequest, name: &str) -> Option<String> {
    let all = fields(req, name);
    assert!(all.len() <= 1, "{name} sent {} times: {}", all.len(), req.body);
    all.into_iter().next()
}

/// Base64 (RFC 4648 §4, padded).
fn b64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The header and claims of a client assertion's signing input (`<header>.<claims>`).
fn assertion(req: &AuthRequest) -> (serde_json::Value, serde_json::Value) {
    let signing = req.sign.as_ref().expect("a signing input");
    assert_eq!(signing.alg, "ES256");
    let input = signing.input.as_str();
    let parts: Vec<&str> = input.split('.').collect();
    assert_eq!(parts.len(), 2, "{input}");
    let read = |p: &str| serde_json::from_slice::<serde_json::Value>(&b64url_decode(p)).expect("JSON");
    (read(parts[0]), read(parts[1]))
}

fn jti(req: &AuthRequest) -> String {
    assertion(req).1["jti"].as_str().expect("a jti").to_owned()
}

/// The `Authorization: Basic` value of RFC 6749 §2.3.1 (id and secret form-encoded).
fn basic_header() -> String {
    // "client%3A1+x:cs-CANARY-s3cr%25t%2B%2F", computed independently of the crate.
    "Basic Y2xpZW50JTNBMSt4OmNzLUNBTkFSWS1zM2NyJTI1dCUyQiUyRg==".to_owned()
}

fn expect_form(req: &AuthRequest, endpoint: Endpoint, url: &str) {
    assert_eq!(req.endpoint, endpoint, "{req:?}");
    assert_eq!(req.wire, Wire::Form, "{req:?}");
    assert_eq!(req.url, url);
}

// ----- driving -------------------------------------------------------------------------------

/// `login()` (the session's grant) answered with `answer`: the session is active.
fn logged_in(r: &mut Run, now: i64, answer: Reply) {
    let f = r.login_with(now, None);
    r.answer(now, answer);
    if r.has_open_op("get") {
        r.answer_get(now, StorageReply::Empty);
        r.answer_put(now, StorageReply::Empty);
    }
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.m.info().state, Phase::Active);
}

/// A password-grant session holding pair 1 (the login's answer), no auto-refresh.
fn password_session(f: impl FnOnce(&mut OAuthOptions)) -> Run {
    let mut r = Run::new(oconfig_with(
        |o| {
            password_grant(o);
            f(o);
        },
        |o| {
            with_credentials(o);
            no_timer(o);
        },
    ));
    logged_in(&mut r, EPOCH, pair_reply(1));
    r
}

fn failed_step(step: ApiStep) -> AuthError {
    match step {
        ApiStep::Fail(e) => e,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// Opens an API call and sends its first attempt with the held token.
fn api_sent(r: &mut Run, now: i64, method: &str, want: Want) -> CallId {
    let call = r.m.api_open(method, PATH, want, Behind::No).expect("open");
    let step = r.m.api_token(now, call, Waited::Nothing, 0);
    assert!(matches!(step, TokenStep::Ready { .. }), "{step:?}");
    r.drain();
    call
}

fn json_body() -> ApiBody {
    ApiBody {
        json: true,
        ..ApiBody::default()
    }
}

// ----- config --------------------------------------------------------------------------------

#[test]
fn invalid_oauth_options_are_config_errors_that_never_echo_a_secret() {
    type Case = (&'static str, Box<dyn FnOnce(&mut Options)>, &'static str);
    let with_oauth = |f: fn(&mut OAuthOptions)| -> Box<dyn FnOnce(&mut Options)> {
        Box::new(move |o: &mut Options| {
            let mut a = o.oauth.take().unwrap();
            f(&mut a);
            o.oauth = Some(a);
        })
    };
    let cases: Vec<Case> = vec![
        (
            "a scope of a megabyte",
            with_oauth(|a| a.scope = Some("s ".repeat(500_000))),
            "oauth.scope is longer than 4096 bytes",
        ),
        (
            "no endpoint, no issuer",
            with_oauth(|a| a.token_endpoint = None),
            "oauth needs tokenEndpoint or issuer",
        ),
        (
            "empty clientId",
            with_oauth(|a| a.client_id = Some(String::new())),
            "oauth.clientId must be a non-empty string",
        ),
        (
            "no clientId",
            with_oauth(|a| a.client_id = None),
            "oauth.clientId must be a non-empty string",
        ),
        (
            "basic without a secret",
            with_oauth(|a| {
                a.client_secret = None;
                a.client_auth = Some("client_secret_basic".into());
            }),
            "oauth.clientAuth needs its credential",
        ),
        (
            "post without a secret",
            with_oauth(|a| {
                a.client_secret = Some(Password::new(""));
                a.client_auth = Some("client_secret_post".into());
            }),
            "oauth.clientAuth needs its credential",
        ),
        (
            "private_key_jwt without a key",
            with_oauth(|a| a.client_auth = Some("private_key_jwt".into())),
            "oauth.clientAuth needs its credential",
        ),
        (
            "unknown clientAuth",
            with_oauth(|a| a.client_auth = Some("client_secret_jwt".into())),
            "oauth.clientAuth must be one of: client_secret_basic client_secret_post private_key_jwt none",
        ),
        (
            "unknown grant",
            with_oauth(|a| a.grant = Some("authorization_code".into())),
            "oauth.grant must be one of: refresh_token client_credentials password",
        ),
        (
            "unknown basicEncoding",
            with_oauth(|a| a.basic_encoding = Some("raw".into())),
            "oauth.basicEncoding must be one of: form plain",
        ),
        (
            "a secret key",
            with_oauth(|a| a.key_type = Some("oct".into())),
            "oauth.privateKey must be",
        ),
        (
            "a JWK stating an algorithm the package does not sign with",
            with_oauth(|a| {
                a.key_type = Some("RSA".into());
                a.key_alg = Some("RS512".into());
            }),
            "oauth.privateKey must be",
        ),
        (
            "a JWK whose alg does not fit its type",
            with_oauth(|a| {
                a.key_type = Some("EC".into());
                a.key_curve = Some("P-256".into());
                a.key_alg = Some("ES384".into());
            }),
            "oauth.privateKey must be",
        ),
        (
            "a CryptoKey with another hash",
            with_oauth(|a| {
                a.key_type = Some("RSASSA-PKCS1-v1_5".into());
                a.key_hash = Some("SHA-512".into());
            }),
            "oauth.privateKey must be",
        ),
        (
            "http token endpoint",
            with_oauth(|a| a.token_endpoint = Some("http://as.test/token".into())),
            "oauth.tokenEndpoint uses http:// with a host other than localhost",
        ),
        (
            "http issuer",
            with_oauth(|a| {
                a.token_endpoint = None;
                a.issuer = Some("http://as.test".into());
            }),
            "oauth.issuer uses http://",
        ),
        (
            "http revocation endpoint",
            with_oauth(|a| a.revocation_endpoint = Some("http://10.0.0.1/revoke".into())),
            "oauth.revocationEndpoint uses http://",
        ),
        (
            "endpoint with a fragment",
            with_oauth(|a| a.token_endpoint = Some("https://as.test/token#x".into())),
            "oauth.tokenEndpoint must not have a fragment",
        ),
        (
            "relative resource",
            with_oauth(|a| a.resources = vec!["api".into()]),
            "oauth.resource",
        ),
        (
            "paths with oauth",
            Box::new(|o: &mut Options| o.login_path = Some("/auth/login".into())),
            "paths are the provider protocol's",
        ),
        (
            "credentials with client_credentials",
            Box::new(|o: &mut Options| {
                with_credentials(o);
                o.oauth.as_mut().unwrap().grant = Some("client_credentials".into());
            }),
            "credentials are for oauth.grant \"password\" only",
        ),
        (
            "credentials with the refresh_token grant",
            Box::new(|o: &mut Options| {
                with_credentials(o);
                o.oauth.as_mut().unwrap().refresh_token = Some(Password::new(SEED_RT));
            }),
            "credentials are for oauth.grant \"password\" only",
        ),
        (
            "refresh_token grant without a refresh token",
            with_oauth(|a| a.grant = Some("refresh_token".into())),
            "oauth.grant \"refresh_token\" needs oauth.refreshToken",
        ),
        (
            "a refresh token that is not a token",
            with_oauth(|a| a.refresh_token = Some(Password::new("seed CANARY with spaces"))),
            "oauth.refreshToken must be a token",
        ),
    ];
    let n = cases.len();
    for (name, f, expected) in cases {
        // A secret everywhere one fits, so an echo of any of them would show.
        let mut o = options_with(basic, |_| {});
        f(&mut o);
        let e = o.validate().map(|_| ()).expect_err(name);
        assert_eq!(
            (e.code(), e.status(), e.retryable()),
            ("CONFIG_ERROR", 0, false),
            "{name}: {e}"
        );
        assert!(e.message().contains(expected), "{name}: {}", e.message());
        assert_no_secret(&format!("{e} {e:?}"));
    }
    assert_eq!(n, 24);
    // The same options without the fault are valid: each case failed for its own reason.
    options_with(basic, |_| {}).validate().expect("the base is valid");
}

#[test]
fn http_endpoints_are_allowed_on_loopback_or_with_allow_insecure_http() {
    for url in ["http://localhost:8080/token", "http://127.0.0.1/token"] {
        let c = oconfig(|o| o.token_endpoint = Some(url.into()));
        assert_eq!(c.oauth.unwrap().token_endpoint.as_deref(), Some(url));
    }
    let c = oconfig_with(
        |o| o.token_endpoint = Some("http://as.test/token".into()),
        |o| o.allow_insecure_http = Some(true),
    );
    assert!(c.allow_insecure_http);
}

#[test]
fn client_auth_and_grant_defaults_follow_what_is_given() {
    let o = |f: fn(&mut OAuthOptions)| *oconfig(f).oauth.unwrap();
    let c = o(|_| {});
    assert_eq!((c.auth, c.grant), (ClientAuth::None, Grant::ClientCredentials));
    let c = o(basic);
    assert_eq!(
        (c.auth, c.grant, c.basic_plain),
        (ClientAuth::Basic, Grant::ClientCredentials, false)
    );
    let c = o(jwt);
    assert_eq!((c.auth, c.alg), (ClientAuth::PrivateKeyJwt, Some("ES256")));
    let c = o(seeded);
    assert_eq!((c.auth, c.grant), (ClientAuth::Basic, Grant::RefreshToken));
    // Without credentials the session's grant stands for the login: no username.
    let cfg = oconfig(basic);
    assert_eq!(cfg.credentials.as_ref().map(|c| c.username.as_str()), Some(""));
}

#[test]
fn the_password_grant_without_credentials_runs_only_with_login_username_password() {
    let mut r = Run::new(oconfig(password_grant));
    assert!(r.m.config().credentials.is_none());
    assert_eq!(fail(r.m.login(EPOCH, None)).code(), "CONFIG_ERROR");
    assert_eq!(token_fail(r.ask(EPOCH, Need::Strict)).code(), "NOT_AUTHENTICATED");
    r.drain();
    assert!(r.sends().is_empty());
    let f = r.login_with(EPOCH, Some(creds()));
    assert_eq!(
        r.open_send().body,
        "grant_type=password&username=alice&password=pw-CANARY-hunter2"
    );
    r.answer(EPOCH, pair_reply(1));
    assert_eq!(r.settled(f), Outcome::Done);
}

#[test]
fn credentials_without_a_grant_default_to_the_password_grant() {
    let c = options_with(basic, with_credentials).validate();
    let c = c.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.oauth.as_ref().unwrap().grant, Grant::Password);
    let mut r = Run::new(c);
    r.login_with(EPOCH, None);
    assert_eq!(field(&r.open_send(), "grant_type").as_deref(), Some("password"));
}

// ----- requests: grants and client authentication --------------------------------------------

#[test]
fn client_credentials_with_basic_auth_sends_the_form_encoded_pair_and_the_grants_parameters() {
    let mut r = Run::new(oconfig(|o| {
        basic(o);
        o.scope = Some("read write".into());
        o.audience = Some("aud 1".into());
        o.resources = vec!["https://api.test".into(), "https://files.test/x".into()];
    }));
    r.login_with(EPOCH, None);
    let req = r.open_send();
    expect_form(&req, Endpoint::Login, TOKEN_URL);
    assert_eq!(
        req.body,
        "grant_type=client_credentials&scope=read+write&audience=aud+1\
         &resource=https%3A%2F%2Fapi.test&resource=https%3A%2F%2Ffiles.test%2Fx"
    );
    assert_eq!(fields(&req, "resource"), ["https://api.test", "https://files.test/x"]);
    assert_eq!(req.authorization.as_deref(), Some(&*basic_header()));
    assert_eq!(
        req.authorization.as_deref(),
        Some(&*format!("Basic {}", b64(b"client%3A1+x:cs-CANARY-s3cr%25t%2B%2F")))
    );
    assert_eq!(req.sign, None);
    assert_eq!(field(&req, "client_id"), None, "basic: the id is in the header only");
    assert_eq!(field(&req, "client_secret"), None);
}

#[test]
fn basic_encoding_plain_sends_the_id_and_secret_as_they_are() {
    let mut r = Run::new(oconfig(|o| {
        basic(o);
        o.basic_encoding = Some("plain".into());
    }));
    r.login_with(EPOCH, None);
    let req = r.open_send();
    assert_eq!(
        req.authorization.as_deref(),
        Some("Basic Y2xpZW50OjEgeDpjcy1DQU5BUlktczNjciV0Ky8=")
    );
    assert_eq!(
        req.authorization.as_deref(),
        Some(&*format!("Basic {}", b64(format!("{CLIENT}:{SECRET}").as_bytes())))
    );
    assert_eq!(req.body, "grant_type=client_credentials");
}

#[test]
fn client_secret_post_and_none_put_the_client_in_the_body() {
    let mut r = Run::new(oconfig(post));
    r.login_with(EPOCH, None);
    let req = r.open_send();
    expect_form(&req, Endpoint::Login, TOKEN_URL);
    assert_eq!(
        req.body,
        "grant_type=client_credentials&client_id=client%3A1+x&client_secret=cs-CANARY-s3cr%25t%2B%2F"
    );
    assert_eq!(field(&req, "client_secret").as_deref(), Some(SECRET));
    assert_eq!(
        (
            req.authorization.as_deref(),
            req.sign.as_ref().map(|s| s.input.as_str())
        ),
        (None, None)
    );

    let mut r = Run::new(oconfig(|_| {}));
    r.login_with(EPOCH, None);
    let req = r.open_send();
    assert_eq!(req.body, "grant_type=client_credentials&client_id=client%3A1+x");
    assert_eq!(
        (
            req.authorization.as_deref(),
            req.sign.as_ref().map(|s| s.input.as_str())
        ),
        (None, None)
    );
}

#[test]
fn the_password_grant_sends_the_credentials_and_the_scope() {
    let mut r = Run::new(password_config(|o| o.scope = Some("read".into())));
    let f = r.login_with(EPOCH, None);
    let req = r.open_send();
    expect_form(&req, Endpoint::Login, TOKEN_URL);
    assert_eq!(
        req.body,
        "grant_type=password&username=alice&password=pw-CANARY-hunter2&scope=read"
    );
    assert_eq!(req.authorization.as_deref(), Some(&*basic_header()));
    r.answer(EPOCH, pair_reply(1));
    assert_eq!(r.settled(f), Outcome::Done);
    // login(username, password) runs the grant for another user.
    let f = r.login_with(EPOCH, Some(creds_with("other-CANARY")));
    let req = r.open_send();
    assert_eq!(field(&req, "password").as_deref(), Some("other-CANARY"));
    r.answer(EPOCH, pair_reply(2));
    assert_eq!(r.settled(f), Outcome::Done);
}

#[test]
fn login_with_a_username_is_refused_for_grants_other_than_password() {
    let mut r = Run::new(oconfig(basic));
    let e = fail(r.m.login(EPOCH, Some(creds())));
    assert_eq!(e.code(), "CONFIG_ERROR");
    r.drain();
    assert!(r.sends().is_empty());
}

#[test]
fn the_refresh_token_grant_sends_the_seed_once_then_refreshes_without_the_grants_parameters() {
    let mut r = Run::new(oconfig_with(
        |o| {
            seeded(o);
            o.scope = Some("read write".into());
            o.resources = vec!["https://api.test".into()];
        },
        no_timer,
    ));
    let f = r.login_with(EPOCH, None);
    let req = r.open_send();
    expect_form(&req, Endpoint::Login, TOKEN_URL);
    assert_eq!(
        req.body,
        "grant_type=refresh_token&refresh_token=seed.CANARY.0&scope=read+write&resource=https%3A%2F%2Fapi.test"
    );
    assert_eq!(req.authorization.as_deref(), Some(&*basic_header()));
    r.answer(EPOCH, pair_reply(1));
    assert_eq!(r.settled(f), Outcome::Done);

    let f = wait(r.refresh(EPOCH + MINUTE));
    let req = r.open_send();
    expect_form(&req, Endpoint::Refresh, TOKEN_URL);
    assert_eq!(req.body, "grant_type=refresh_token&refresh_token=rt.CANARY.1");
    assert_eq!(req.authorization.as_deref(), Some(&*basic_header()));
    r.answer(EPOCH + MINUTE, pair_reply(2));
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.token_now(EPOCH + MINUTE).unwrap(), at(2));
    // The seed was rotated: spent, a second login() may not send it.
    let e = fail(r.m.login(EPOCH + MINUTE, None));
    assert_eq!(e.code(), "SESSION_EXPIRED");
    r.drain();
    assert_eq!(r.sends().len(), 2);
}

#[test]
fn private_key_jwt_writes_an_assertion_for_the_driver_to_sign() {
    let mut r = Run::new(oconfig_with(jwt, no_timer));
    let f = r.login_with(EPOCH, None);
    let req = r.open_send();
    expect_form(&req, Endpoint::Login, TOKEN_URL);
    assert_eq!(
        req.body,
        "grant_type=client_credentials&client_id=client%3A1+x\
         &client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer\
         &client_assertion="
    );
    assert!(req.body.ends_with("&client_assertion="), "the driver appends the JWT");
    assert_eq!(req.authorization, None);
    let (header, claims) = assertion(&req);
    assert_eq!(
        header,
        serde_json::json!({"alg": "ES256", "kid": "kid-1", "typ": "JWT"})
    );
    let first = claims["jti"].as_str().unwrap().to_owned();
    assert!(
        first.len() == 32 && first.bytes().all(|b| b.is_ascii_hexdigit()),
        "128 bits in hex: {first}"
    );
    let iat = EPOCH / 1000;
    assert_eq!(
        claims,
        serde_json::json!({
            "iss": CLIENT, "sub": CLIENT, "aud": TOKEN_URL, "jti": first, "iat": iat, "exp": iat + 60
        })
    );
    // The server's clock is 10 minutes ahead: later assertions are dated by it.
    r.answer(EPOCH, access_reply(1).date(&http_date(EPOCH + 10 * MINUTE)));
    assert_eq!(r.settled(f), Outcome::Done);
    let t = EPOCH + 2 * MINUTE;
    wait(r.refresh(t));
    let req = r.open_send();
    assert_eq!(req.endpoint, Endpoint::Login, "client credentials: the grant again");
    let (_, claims) = assertion(&req);
    let iat = (t + 10 * MINUTE) / 1000;
    assert_eq!(
        (claims["iat"].as_i64(), claims["exp"].as_i64()),
        (Some(iat), Some(iat + 60))
    );
    assert_ne!(claims["jti"].as_str(), Some(&*first), "a fresh jti for each assertion");
    r.answer(t, access_reply(2));
    assert_eq!(r.token_now(t).unwrap(), at(2));
}

#[test]
fn an_assertion_that_cannot_be_signed_is_a_config_error_and_not_retried() {
    let mut r = Run::new(oconfig(jwt));
    let f = r.login_with(EPOCH, None);
    r.answer(EPOCH, Err(IoFailure::Unsigned(None)));
    let e = r.failure(f);
    assert_eq!((e.code(), e.retryable()), ("CONFIG_ERROR", false));
    assert_eq!(r.sends().len(), 1);
    assert_eq!(r.deadline(), None, "no retry is scheduled");
}

#[test]
fn no_two_assertions_share_a_jti_within_a_session_or_across_seeds() {
    let mut all = HashSet::new();
    let mut total = 0;
    for seed in [SEED, 1, 0x1234_5678_9abc_def0, u64::MAX, 0x5eed_0000] {
        let mut r = Run::with(oconfig_with(jwt, no_timer), false, seed);
        let mut t = EPOCH;
        for n in 1..=25 {
            wait(r.refresh(t));
            let req = r.open_send();
            assert!(
                all.insert(jti(&req)),
                "seed {seed:#x}, assertion {n}: a jti seen before"
            );
            total += 1;
            r.answer(t, access_reply(n));
            t += SECOND;
        }
    }
    assert_eq!((all.len(), total), (125, 125));
}

#[test]
fn seeds_that_differ_in_their_lowest_bit_give_different_jtis() {
    let first = |seed| {
        let mut r = Run::with(oconfig(jwt), false, seed);
        r.login_with(EPOCH, None);
        jti(&r.open_send())
    };
    assert_ne!(first(2), first(3));
    assert_ne!(first(SEED), first(SEED ^ 1));
}

// ----- token responses -----------------------------------------------------------------------

#[test]
fn expires_in_counts_from_the_servers_date_header() {
    for skew in [10 * MINUTE, -10 * MINUTE, 0] {
        let mut r = Run::new(oconfig(basic));
        let f = r.login_with(EPOCH, None);
        r.answer(
            EPOCH,
            token_with(&at(1), None, Some(3600), r#","refresh_token_expires_in":86400"#).date(&http_date(EPOCH + skew)),
        );
        assert_eq!(r.settled(f), Outcome::Done);
        let info = r.m.info();
        assert_eq!(info.access_expires_at, Some(EPOCH + skew + HOUR), "skew {skew}");
        assert_eq!(info.refresh_expires_at, Some(EPOCH + skew + DAY), "skew {skew}");
        assert_eq!(info.client_id, None);
        // The refresh runs on our clock: an hour less the margin from now.
        assert_eq!(r.deadline(), Some(EPOCH + HOUR - MARGIN), "skew {skew}");
    }
}

#[test]
fn without_expires_in_the_token_has_no_known_expiry_and_is_used_until_a_401() {
    let mut r = Run::new(oconfig(basic));
    logged_in(&mut r, EPOCH, token(&at(1), None, None));
    let info = r.m.info();
    assert_eq!((info.access_expires_at, info.refresh_expires_at), (None, None));
    assert_eq!(r.deadline(), None, "no auto-refresh");
    let later = EPOCH + 400 * DAY;
    assert_eq!(r.token_now(later).unwrap(), at(1));
    assert_eq!(r.sends().len(), 1);
    // The API refuses it: the grant runs again.
    let serial = serial(&r.ask(later, Need::Lenient));
    let f = wait_token(r.token_after_401(later, serial));
    let req = r.open_send();
    assert_eq!(field(&req, "grant_type").as_deref(), Some("client_credentials"));
    r.answer(later, token(&at(2), None, None));
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.token_now(later).unwrap(), at(2));
    assert_eq!(r.count(Endpoint::Login), 2);
}

#[test]
fn a_refresh_without_a_new_refresh_token_keeps_the_old_one_and_a_rotation_replaces_it() {
    let mut r = Run::new(oconfig_with(
        |o| {
            password_grant(o);
            o.scope = Some("read".into());
        },
        |o| {
            with_credentials(o);
            no_timer(o);
        },
    ));
    logged_in(
        &mut r,
        EPOCH,
        token_with(&at(1), Some(&rt(1)), Some(3600), r#","refresh_token_expires_in":86400"#),
    );
    assert_eq!(r.m.info().refresh_expires_at, Some(EPOCH + DAY));
    let sent = |r: &Run| -> Vec<String> {
        r.sends_to(Endpoint::Refresh)
            .iter()
            .map(|q| field(q, "refresh_token").unwrap())
            .collect()
    };

    let t = EPOCH + MINUTE;
    let f = wait(r.refresh(t));
    let req = r.open_send();
    assert_eq!(req.body, "grant_type=refresh_token&refresh_token=rt.CANARY.1");
    r.answer(t, token(&at(2), None, Some(3600)));
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.token_now(t).unwrap(), at(2));
    assert_eq!(
        r.m.info().refresh_expires_at,
        Some(EPOCH + DAY),
        "the kept token keeps its expiry"
    );

    // Not spent: the next refresh sends it again.
    let f = wait(r.refresh(t + MINUTE));
    r.answer(t + MINUTE, pair_reply(3));
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(
        r.m.info().refresh_expires_at,
        None,
        "the new token's expiry is not known"
    );

    // Rotated: the new one is sent from now on, the old one is spent.
    let f = wait(r.refresh(t + 2 * MINUTE));
    r.answer(t + 2 * MINUTE, token(&at(4), Some(&rt(1)), Some(3600)));
    let e = r.failure(f);
    assert_eq!(e.code(), "INVALID_RESPONSE", "{e}");
    assert_eq!(sent(&r), [rt(1), rt(1), rt(3)]);
    assert_eq!(r.token_now(t + 2 * MINUTE).unwrap(), at(3));
}

// ----- client credentials --------------------------------------------------------------------

#[test]
fn client_credentials_hold_no_refresh_token_and_run_the_grant_again_when_due() {
    let mut r = Run::new(oconfig(basic));
    logged_in(&mut r, EPOCH, access_reply(1));
    assert_eq!(r.deadline(), Some(EPOCH + HOUR - MARGIN));
    let t = r.fire();
    let req = r.open_send();
    expect_form(&req, Endpoint::Login, TOKEN_URL);
    assert_eq!(req.body, "grant_type=client_credentials");
    assert_eq!(req.authorization.as_deref(), Some(&*basic_header()));
    r.answer(t, access_reply(2));
    assert_eq!(r.token_now(t).unwrap(), at(2));
    assert_eq!(r.deadline(), Some(t + HOUR - MARGIN));
    // refresh() too runs the grant.
    let f = wait(r.refresh(t + SECOND));
    assert_eq!(
        field(&r.open_send(), "grant_type").as_deref(),
        Some("client_credentials")
    );
    r.answer(t + SECOND, access_reply(3));
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!((r.count(Endpoint::Login), r.count(Endpoint::Refresh)), (3, 0));
    assert_eq!(r.event_count("error"), 0);
}

#[test]
fn concurrent_token_requests_make_one_grant_request() {
    let mut r = Run::new(oconfig(basic));
    let flights: Vec<_> = (0..10)
        .map(|i| {
            let need = if i % 2 == 0 { Need::Strict } else { Need::Lenient };
            wait_token(r.ask(EPOCH, need))
        })
        .collect();
    assert!(flights.iter().all(|f| *f == flights[0]), "{flights:?}");
    assert_eq!(r.sends().len(), 1);
    assert_eq!(r.open_send().endpoint, Endpoint::Login);
    r.answer(EPOCH, access_reply(1));
    let outcome = r.settled(flights[0]);
    assert_eq!(outcome, Outcome::Done);
    for _ in 0..10 {
        assert_eq!(ready(&r.token(EPOCH, Need::Strict, waited(&outcome), 1)), at(1));
    }
    assert_eq!(r.sends().len(), 1);
}

#[test]
fn cold_instances_sharing_a_leased_store_make_one_grant_request() {
    let cfg = oconfig(basic);
    let mut store = MemoryStore::default();
    let mut runs: Vec<Run> = (0..3)
        .map(|i| Run::with_persistence(cfg.clone(), Persistence::StorageWithLease, SEED + 2 * i))
        .collect();
    let mut flights = Vec::new();
    for r in runs.iter_mut() {
        flights.push(wait_token(r.ask(EPOCH, Need::Strict)));
        r.serve(EPOCH, &mut store);
    }
    assert_eq!(runs.iter().map(|r| r.sends().len()).collect::<Vec<_>>(), [1, 0, 0]);
    runs[0].answer(EPOCH, access_reply(1));
    runs[0].serve(EPOCH, &mut store);
    assert_eq!(runs[0].settled(flights[0]), Outcome::Done);
    let key = cfg.storage_key();
    assert_eq!(record_access_token(&store.records[&key]), at(1));
    assert!(
        store.records[&key].contains("\"refresh_token\":null"),
        "{}",
        store.records[&key]
    );
    for (r, f) in runs.iter_mut().zip(&flights).skip(1) {
        let t = r.fire();
        r.serve(t, &mut store);
        assert_eq!(r.settled(*f), Outcome::Done);
        assert_eq!(ready(&r.token(t, Need::Strict, Waited::Done, 1)), at(1));
    }
    assert_eq!(runs.iter().map(|r| r.sends().len()).sum::<usize>(), 1);
}

// ----- OAuth errors --------------------------------------------------------------------------

#[test]
fn invalid_grant_on_a_refresh_of_the_seed_ends_the_session_without_a_new_grant() {
    // The seed was rotated by the login, or kept (the login answer had no refresh token).
    for rotated in [true, false] {
        let mut r = Run::new(oconfig_with(seeded, no_timer));
        let answer = if rotated { pair_reply(1) } else { access_reply(1) };
        logged_in(&mut r, EPOCH, answer);
        let f = wait(r.refresh(EPOCH + MINUTE));
        let sent = if rotated { rt(1) } else { SEED_RT.to_owned() };
        assert_eq!(field(&r.open_send(), "refresh_token"), Some(sent));
        r.answer(EPOCH + MINUTE, oauth_error(400, "invalid_grant", "token revoked"));
        let e = r.failure(f);
        assert_eq!((e.code(), e.retryable()), ("SESSION_EXPIRED", false), "{e}");
        assert_eq!(r.event_count("expired"), 1);
        assert_eq!(r.m.info().state, Phase::Expired);
        assert_eq!(r.sends().len(), 2, "no new grant: the seed is spent");
        let e = fail(r.m.login(EPOCH + MINUTE, None));
        assert_eq!(e.code(), "SESSION_EXPIRED");
        let e = token_fail(r.ask(EPOCH + MINUTE, Need::Strict));
        assert_eq!(e.code(), "SESSION_EXPIRED");
        r.drain();
        assert_eq!(r.sends().len(), 2, "rotated {rotated}");
    }
}

#[test]
fn invalid_grant_on_a_refresh_of_the_password_grant_logs_in_again_transparently() {
    let mut r = password_session(|_| {});
    let t = EPOCH + MINUTE;
    let f = wait(r.refresh(t));
    r.answer(t, oauth_error(400, "invalid_grant", "refresh token expired"));
    let req = r.open_send();
    expect_form(&req, Endpoint::Login, TOKEN_URL);
    assert_eq!(
        req.body,
        "grant_type=password&username=alice&password=pw-CANARY-hunter2"
    );
    r.answer(t, pair_reply(2));
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.m.info().state, Phase::Active);
    assert_eq!(r.token_now(t).unwrap(), at(2));
    assert_eq!(r.event_count("expired"), 0);
    assert_eq!((r.count(Endpoint::Login), r.count(Endpoint::Refresh)), (2, 1));
}

#[test]
fn invalid_grant_on_the_seed_grant_is_session_expired_and_the_seed_is_never_sent_again() {
    for quiet in [false, true] {
        let mut r = Run::new(oconfig(seeded));
        let f = if quiet {
            wait_token(r.ask(EPOCH, Need::Strict))
        } else {
            r.login_with(EPOCH, None)
        };
        assert_eq!(field(&r.open_send(), "refresh_token").as_deref(), Some(SEED_RT));
        r.answer(EPOCH, oauth_error(400, "invalid_grant", "unknown refresh token"));
        let e = r.failure(f);
        assert_eq!(
            (e.code(), e.status(), e.retryable()),
            ("SESSION_EXPIRED", 400, false),
            "{e}"
        );
        assert!(e.message().contains("invalid_grant: unknown refresh token"), "{e}");
        let e = fail(r.m.login(EPOCH + SECOND, None));
        assert_eq!(e.code(), "SESSION_EXPIRED");
        // A call has no token and starts nothing.
        let e = token_fail(r.ask(EPOCH + SECOND, Need::Strict));
        assert_eq!(e.code(), "SESSION_EXPIRED");
        r.drain();
        assert_eq!(r.sends().len(), 1, "quiet {quiet}: never sent again");
        assert!(!r.has_open_send());
    }
}

#[test]
fn oauth_errors_map_to_the_packages_codes_and_are_not_retried() {
    let cases = [
        ("invalid_client", 401, "UNAUTHORIZED"),
        ("unauthorized_client", 400, "FORBIDDEN"),
        ("access_denied", 403, "FORBIDDEN"),
        ("invalid_scope", 400, "FORBIDDEN"),
        ("invalid_target", 400, "FORBIDDEN"),
        ("invalid_request", 400, "VALIDATION_FAILURE"),
        ("unsupported_grant_type", 400, "VALIDATION_FAILURE"),
        ("something_new", 400, "VALIDATION_FAILURE"),
    ];
    for (error, status, code) in cases {
        let mut r = Run::new(oconfig(basic));
        let f = r.login_with(EPOCH, None);
        r.answer(EPOCH, oauth_error(status, error, "no luck"));
        let e = r.failure(f);
        assert_eq!((e.code(), e.status(), e.retryable()), (code, status, false), "{error}");
        assert_eq!(e.message(), format!("{error}: no luck"));
        assert_eq!(r.sends().len(), 1, "{error}: not retried");
        assert_eq!(r.deadline(), None);
        assert_eq!(r.m.info().state, Phase::Anonymous);
    }
    // invalid_grant on the password grant itself: wrong credentials, not an ended session.
    let mut r = Run::new(password_config(|_| {}));
    let f = r.login_with(EPOCH, None);
    r.answer(EPOCH, oauth_error(400, "invalid_grant", "bad password"));
    let e = r.failure(f);
    assert_eq!((e.code(), e.status()), ("UNAUTHORIZED", 400));
    assert_eq!(r.sends().len(), 1);
}

#[test]
fn invalid_client_on_a_refresh_is_unauthorized_and_keeps_the_session() {
    let mut r = password_session(|_| {});
    let f = wait(r.refresh(EPOCH + MINUTE));
    r.answer(EPOCH + MINUTE, oauth_error(401, "invalid_client", "client disabled"));
    let e = r.failure(f);
    assert_eq!((e.code(), e.status()), ("UNAUTHORIZED", 401));
    assert_eq!(r.m.info().state, Phase::Active);
    assert_eq!(r.event_count("expired"), 0);
    assert_eq!(r.sends().len(), 2, "no re-login");
    assert_eq!(r.token_now(EPOCH + MINUTE).unwrap(), at(1));
    // The refresh token was not spent: the next refresh sends it again.
    wait(r.refresh(EPOCH + 2 * MINUTE));
    assert_eq!(field(&r.open_send(), "refresh_token"), Some(rt(1)));
}

#[test]
fn temporarily_unavailable_and_slow_down_are_retried() {
    for (status, error, code) in [
        (503, "temporarily_unavailable", "SERVER_ERROR"),
        (500, "server_error", "SERVER_ERROR"),
        (400, "slow_down", "RATE_LIMITED"),
    ] {
        let mut r = Run::new(oconfig(basic));
        let f = r.login_with(EPOCH, None);
        r.answer(EPOCH, oauth_error(status, error, "busy"));
        assert_eq!(r.outcome(f), None, "{error}: retried, not failed");
        assert!(!r.has_open_send());
        let t = r.fire();
        assert!(t > EPOCH && t < EPOCH + SECOND, "{error}: a backoff, {}", t - EPOCH);
        let req = r.open_send();
        assert_eq!(
            (req.endpoint, req.body.as_str()),
            (Endpoint::Login, "grant_type=client_credentials")
        );
        r.answer(t, access_reply(1));
        assert_eq!(r.settled(f), Outcome::Done);
        assert_eq!(r.sends().len(), 2);

        // Until the retries run out: then the error, retryable, with its status.
        let mut r = Run::new(oconfig(basic));
        let f = r.login_with(EPOCH, None);
        r.answer(EPOCH, oauth_error(status, error, "busy"));
        for _ in 0..2 {
            let t = r.fire();
            r.answer(t, oauth_error(status, error, "busy"));
        }
        let e = r.failure(f);
        assert_eq!((e.code(), e.status(), e.retryable()), (code, status, true), "{error}");
        assert_eq!(r.sends().len(), 3, "{error}: 1 + retries (2)");
    }
}

#[test]
fn error_descriptions_are_redacted_of_every_secret_the_session_holds() {
    // The client secret, on the grant.
    let mut r = Run::new(oconfig(post));
    let f = r.login_with(EPOCH, None);
    r.answer(
        EPOCH,
        oauth_error(401, "invalid_client", &format!("client_secret {SECRET} does not match")),
    );
    let e = r.failure(f);
    assert_eq!(e.message(), "invalid_client: client_secret [redacted] does not match");

    // The seed.
    let mut r = Run::new(oconfig(seeded));
    let f = r.login_with(EPOCH, None);
    r.answer(
        EPOCH,
        oauth_error(400, "invalid_grant", &format!("{SEED_RT} is unknown")),
    );
    let e = r.failure(f);
    assert!(e.message().contains("invalid_grant: [redacted] is unknown"), "{e}");

    // The held tokens, the password and the client secret, on a refresh.
    let mut r = password_session(|_| {});
    let f = wait(r.refresh(EPOCH + MINUTE));
    let description = format!("refresh_token={} access={} pw={PASSWORD} secret={SECRET}", rt(1), at(1));
    r.answer(EPOCH + MINUTE, oauth_error(400, "invalid_request", &description));
    let e = r.failure(f);
    assert_eq!(
        (e.code(), e.message()),
        (
            "VALIDATION_FAILURE",
            "invalid_request: refresh_token=[redacted] access=[redacted] pw=[redacted] secret=[redacted]"
        )
    );
    // A retryable one too (its message is rebuilt after the redaction).
    let f = wait(r.refresh(EPOCH + 2 * MINUTE));
    for _ in 0..3 {
        let t = EPOCH + 2 * MINUTE;
        r.answer(t, oauth_error(503, "temporarily_unavailable", SECRET));
        if r.outcome(f).is_none() {
            r.fire();
        }
    }
    let e = r.failure(f);
    assert_eq!(
        (e.code(), e.message()),
        ("SERVER_ERROR", "temporarily_unavailable: [redacted]")
    );
}

// ----- discovery -----------------------------------------------------------------------------

const RFC8414_URL: &str = "https://as.test/.well-known/oauth-authorization-server/tenant/1";
const OPENID_URL: &str = "https://as.test/tenant/1/.well-known/openid-configuration";
const FOUND_TOKEN: &str = "https://as.test/tenant/1/token";
const FOUND_REVOKE: &str = "https://as.test/tenant/1/revoke";

#[test]
fn discovery_asks_rfc_8414_first_and_keeps_the_endpoints() {
    let mut r = Run::new(oconfig(|o| {
        basic(o);
        discovering(o);
    }));
    let f = r.login_with(EPOCH, None);
    let req = r.open_send();
    assert_eq!(
        (req.endpoint, req.wire, req.url.as_str(), req.body.as_str()),
        (Endpoint::Discovery, Wire::Get, RFC8414_URL, "")
    );
    assert_eq!(
        (
            req.authorization.as_deref(),
            req.sign.as_ref().map(|s| s.input.as_str())
        ),
        (None, None)
    );
    r.answer(EPOCH, metadata(ISSUER, FOUND_TOKEN, Some(FOUND_REVOKE)));
    assert_eq!(r.outcome(f), None);
    let req = r.open_send();
    expect_form(&req, Endpoint::Login, FOUND_TOKEN);
    assert_eq!(req.authorization.as_deref(), Some(&*basic_header()));
    r.answer(EPOCH, access_reply(1));
    assert_eq!(r.settled(f), Outcome::Done);
    // The second operation goes straight to the token endpoint.
    let f = wait(r.refresh(EPOCH + MINUTE));
    expect_form(&r.open_send(), Endpoint::Login, FOUND_TOKEN);
    r.answer(EPOCH + MINUTE, access_reply(2));
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.count(Endpoint::Discovery), 1);
    assert_eq!(r.sends().len(), 3);
}

#[test]
fn a_404_from_rfc_8414_tries_openid_connect_discovery() {
    let mut r = Run::new(oconfig(|o| {
        basic(o);
        discovering(o);
    }));
    let f = r.login_with(EPOCH, None);
    assert_eq!(r.open_send().url, RFC8414_URL);
    r.answer(EPOCH, status(404));
    let req = r.open_send();
    assert_eq!(
        (req.endpoint, req.wire, req.url.as_str()),
        (Endpoint::Discovery, Wire::Get, OPENID_URL)
    );
    r.answer(EPOCH, metadata(ISSUER, FOUND_TOKEN, None));
    expect_form(&r.open_send(), Endpoint::Login, FOUND_TOKEN);
    r.answer(EPOCH, access_reply(1));
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.sends().len(), 3);

    // Neither document: the operation fails with the second answer.
    let mut r = Run::new(oconfig(|o| {
        basic(o);
        discovering(o);
    }));
    let f = r.login_with(EPOCH, None);
    r.answer(EPOCH, status(404));
    r.answer(EPOCH, status(404));
    let e = r.failure(f);
    assert_eq!((e.code(), e.status()), ("HTTP_ERROR", 404));
    assert_eq!((r.count(Endpoint::Discovery), r.count(Endpoint::Login)), (2, 0));
}

#[test]
fn metadata_naming_another_issuer_or_an_insecure_endpoint_is_invalid_response() {
    for (issuer, endpoint) in [
        ("https://evil.test/tenant/1", FOUND_TOKEN),
        ("https://as.test/tenant/1/", FOUND_TOKEN),
        (ISSUER, "http://as.test/tenant/1/token"),
        (ISSUER, "/tenant/1/token"),
    ] {
        let mut r = Run::new(oconfig(|o| {
            basic(o);
            discovering(o);
        }));
        let f = r.login_with(EPOCH, None);
        r.answer(EPOCH, metadata(issuer, endpoint, None));
        let e = r.failure(f);
        assert_eq!(
            (e.code(), e.status(), e.retryable()),
            ("INVALID_RESPONSE", 200, false),
            "{issuer} {endpoint}"
        );
        assert_eq!(r.sends().len(), 1, "nothing sent to a token endpoint");
        // Nothing was kept: the next operation asks again.
        r.login_with(EPOCH + SECOND, None);
        assert_eq!(r.open_send().endpoint, Endpoint::Discovery);
    }
}

#[test]
fn private_key_jwt_addresses_the_discovered_token_endpoint() {
    let mut r = Run::new(oconfig(|o| {
        jwt(o);
        discovering(o);
    }));
    r.login_with(EPOCH, None);
    let req = r.open_send();
    assert_eq!(req.sign, None, "no assertion for the metadata");
    r.answer(EPOCH, metadata(ISSUER, FOUND_TOKEN, None));
    let req = r.open_send();
    let (_, claims) = assertion(&req);
    assert_eq!(claims["aud"].as_str(), Some(FOUND_TOKEN));
}

#[test]
fn revoke_uses_the_discovered_revocation_endpoint() {
    let mut r = Run::new(oconfig_with(
        |o| {
            password_grant(o);
            discovering(o);
        },
        with_credentials,
    ));
    let f = r.login_with(EPOCH, None);
    r.answer(EPOCH, metadata(ISSUER, FOUND_TOKEN, Some(FOUND_REVOKE)));
    r.answer(EPOCH, pair_reply(1));
    assert_eq!(r.settled(f), Outcome::Done);
    let f = wait(r.revoke(EPOCH + MINUTE));
    let req = r.open_send();
    expect_form(&req, Endpoint::Revoke, FOUND_REVOKE);
    assert_eq!(req.body, "token=rt.CANARY.1&token_type_hint=refresh_token");
    assert_eq!(req.authorization.as_deref(), Some(&*basic_header()));
    r.answer(EPOCH + MINUTE, status(200));
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.count(Endpoint::Discovery), 1);
}

// ----- revoke --------------------------------------------------------------------------------

#[test]
fn revoke_sends_the_refresh_token_with_the_clients_authentication() {
    let mut r = password_session(with_revocation);
    let f = wait(r.revoke(EPOCH + MINUTE));
    assert_eq!(r.m.info().state, Phase::Revoked, "local state is cleared at once");
    assert_eq!(r.event_count("revoked"), 1);
    let req = r.open_send();
    expect_form(&req, Endpoint::Revoke, REVOKE_URL);
    assert_eq!(req.body, "token=rt.CANARY.1&token_type_hint=refresh_token");
    assert_eq!(req.authorization.as_deref(), Some(&*basic_header()));
    r.answer(EPOCH + MINUTE, status(200));
    assert_eq!(r.settled(f), Outcome::Done);

    // client_secret_post: in the body.
    let mut r = password_session(|o| {
        with_revocation(o);
        o.client_auth = Some("client_secret_post".into());
    });
    wait(r.revoke(EPOCH + MINUTE));
    let req = r.open_send();
    assert_eq!(
        req.body,
        "token=rt.CANARY.1&token_type_hint=refresh_token&client_id=client%3A1+x&client_secret=cs-CANARY-s3cr%25t%2B%2F"
    );
    assert_eq!(req.authorization, None);
}

#[test]
fn revoke_of_a_client_credentials_token_sends_the_access_token() {
    let mut r = Run::new(oconfig(|o| {
        basic(o);
        with_revocation(o);
    }));
    logged_in(&mut r, EPOCH, access_reply(1));
    let f = wait(r.revoke(EPOCH));
    let req = r.open_send();
    expect_form(&req, Endpoint::Revoke, REVOKE_URL);
    assert_eq!(req.body, "token=at.CANARY.1&token_type_hint=access_token");
    r.answer(EPOCH, oauth_error(400, "unsupported_token_type", "no"));
    // The answer does not matter to the local state.
    assert!(matches!(r.settled(f), Outcome::Failed(_)));
    assert_eq!(r.m.info().state, Phase::Revoked);
    assert_eq!(token_fail(r.ask(EPOCH, Need::Strict)).code(), "NOT_AUTHENTICATED");
    r.drain();
    assert_eq!(r.sends().len(), 2);
}

#[test]
fn without_a_revocation_endpoint_revoke_sends_nothing_and_clears_the_session() {
    let mut r = password_session(|_| {});
    let f = wait(r.revoke(EPOCH + MINUTE));
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.count(Endpoint::Revoke), 0);
    assert_eq!(r.sends().len(), 1, "the login only");
    assert_eq!(r.m.info().state, Phase::Revoked);
    assert_eq!(r.event_count("revoked"), 1);

    // With storage: the record is deleted, nothing is sent.
    let mut r = Run::with_storage(oconfig(basic));
    logged_in(&mut r, EPOCH, access_reply(1));
    let f = wait(r.revoke(EPOCH + MINUTE));
    assert_eq!(r.outcome(f), None, "waits for the delete");
    r.answer_delete(EPOCH + MINUTE, StorageReply::Empty);
    assert_eq!(r.settled(f), Outcome::Done);
    assert_eq!(r.sends().len(), 1);
}

#[test]
fn revoke_with_nothing_held_sends_no_discovery() {
    let mut r = Run::new(oconfig(|o| {
        basic(o);
        discovering(o);
    }));
    let step = r.revoke(EPOCH);
    assert_eq!(r.sends().len(), 0, "{:?}", r.sends());
    match step {
        Step::Wait(f) => assert_eq!(r.settled(f), Outcome::Done),
        other => panic!("{other:?}"),
    }
}

// ----- API calls -----------------------------------------------------------------------------

#[test]
fn json_in_oauth_mode_resolves_to_the_apis_own_json() {
    let mut r = password_session(|_| {});
    let t = EPOCH + MINUTE;
    let call = api_sent(&mut r, t, "GET", Want::Data);
    assert_eq!(r.m.api_response(t, call, 200, false, None), ApiStep::Read);
    assert_eq!(r.m.api_body(call, Ok(&json_body())), ApiStep::Whole);
    assert_eq!(r.m.api_calls(), 0);

    // What looks like the provider's error envelope is the API's document too.
    let call = api_sent(&mut r, t, "GET", Want::Data);
    assert_eq!(r.m.api_response(t, call, 200, false, None), ApiStep::Read);
    let envelope = ApiBody {
        json: true,
        success: Some(false),
        error: Some((None, "NOPE".into(), Some("no".into()))),
        ..ApiBody::default()
    };
    assert_eq!(r.m.api_body(call, Ok(&envelope)), ApiStep::Whole);

    let call = api_sent(&mut r, t, "DELETE", Want::Data);
    assert_eq!(r.m.api_response(t, call, 204, false, None), ApiStep::Read);
    let empty = ApiBody {
        empty: true,
        ..ApiBody::default()
    };
    assert_eq!(r.m.api_body(call, Ok(&empty)), ApiStep::Nothing);

    let call = api_sent(&mut r, t, "GET", Want::Data);
    assert_eq!(r.m.api_response(t, call, 404, false, None), ApiStep::Read);
    let e = failed_step(r.m.api_body(call, Ok(&json_body())));
    assert_eq!((e.code(), e.status()), ("HTTP_ERROR", 404));

    let call = api_sent(&mut r, t, "POST", Want::Data);
    assert_eq!(r.m.api_response(t, call, 500, false, None), ApiStep::Read);
    let e = failed_step(r.m.api_body(call, Ok(&json_body())));
    assert_eq!((e.code(), e.status(), e.retryable()), ("SERVER_ERROR", 500, true));

    let call = api_sent(&mut r, t, "POST", Want::Data);
    assert_eq!(r.m.api_response(t, call, 429, false, None), ApiStep::Read);
    let e = failed_step(r.m.api_body(call, Ok(&json_body())));
    assert_eq!((e.code(), e.status()), ("RATE_LIMITED", 429));

    let call = api_sent(&mut r, t, "GET", Want::Data);
    assert_eq!(r.m.api_response(t, call, 200, false, None), ApiStep::Read);
    let e = failed_step(r.m.api_body(call, Ok(&ApiBody::default())));
    assert_eq!((e.code(), e.status()), ("INVALID_RESPONSE", 200));
    assert_eq!(r.m.api_calls(), 0);
    assert_eq!(r.sends().len(), 1);
}

#[test]
fn a_bearer_invalid_token_challenge_on_a_403_refreshes_once_and_replays() {
    let mut r = password_session(|_| {});
    let t = EPOCH + MINUTE;
    let call = api_sent(&mut r, t, "GET", Want::Data);
    assert_eq!(
        r.m.api_challenged(t, call, 403, false, None, Some(CHALLENGE)),
        ApiStep::Token
    );
    let step = r.m.api_token(t, call, Waited::Nothing, 0);
    r.drain();
    let f = wait_token(step);
    let req = r.open_send();
    assert_eq!(
        (req.endpoint, field(&req, "refresh_token")),
        (Endpoint::Refresh, Some(rt(1)))
    );
    r.answer(t, pair_reply(2));
    let replay = r.m.api_token(t, call, waited(&r.settled(f)), 1);
    assert_eq!(ready(&replay), at(2));
    // The replay is refused too: that answer is the caller's.
    assert_eq!(
        r.m.api_challenged(t, call, 403, false, None, Some(CHALLENGE)),
        ApiStep::Read
    );
    let e = failed_step(r.m.api_body(call, Ok(&json_body())));
    assert_eq!((e.code(), e.status()), ("HTTP_ERROR", 403));
    assert_eq!(r.count(Endpoint::Refresh), 1);

    // Another Bearer error is not a refused token.
    let call = api_sent(&mut r, t, "GET", Want::Response);
    let scope = r#"Bearer error="insufficient_scope", scope="admin""#;
    assert_eq!(
        r.m.api_challenged(t, call, 403, false, None, Some(scope)),
        ApiStep::Return
    );
    assert_eq!(r.count(Endpoint::Refresh), 1);
}

#[test]
fn a_challenged_client_credentials_token_is_replaced_by_the_grant() {
    let mut r = Run::new(oconfig_with(basic, no_timer));
    logged_in(&mut r, EPOCH, access_reply(1));
    let call = api_sent(&mut r, EPOCH, "POST", Want::Response);
    assert_eq!(
        r.m.api_challenged(EPOCH, call, 400, false, None, Some(CHALLENGE)),
        ApiStep::Token
    );
    let f = wait_token(r.m.api_token(EPOCH, call, Waited::Nothing, 0));
    r.drain();
    assert_eq!(
        field(&r.open_send(), "grant_type").as_deref(),
        Some("client_credentials")
    );
    r.answer(EPOCH, access_reply(2));
    assert_eq!(ready(&r.m.api_token(EPOCH, call, waited(&r.settled(f)), 1)), at(2));
    assert_eq!(r.m.api_response(EPOCH, call, 200, false, None), ApiStep::Return);
    assert_eq!(r.count(Endpoint::Login), 2);
}

#[test]
fn in_provider_mode_a_bearer_challenge_on_a_403_is_not_replayed() {
    let mut r = Run::new(config(no_timer));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let t = EPOCH + MINUTE;
    let call = api_sent(&mut r, t, "GET", Want::Response);
    assert_eq!(
        r.m.api_challenged(t, call, 403, false, None, Some(CHALLENGE)),
        ApiStep::Return
    );
    let call = api_sent(&mut r, t, "GET", Want::Data);
    assert_eq!(
        r.m.api_challenged(t, call, 403, false, None, Some(CHALLENGE)),
        ApiStep::Read
    );
    assert_eq!(r.count(Endpoint::Refresh), 0);
    // A 401 is a 401 in both modes.
    let call = api_sent(&mut r, t, "GET", Want::Response);
    assert_eq!(
        r.m.api_challenged(t, call, 401, false, None, Some(CHALLENGE)),
        ApiStep::Token
    );
}

// ----- storage -------------------------------------------------------------------------------

#[test]
fn a_client_credentials_pair_is_stored_without_a_refresh_token_and_restored() {
    let cfg = oconfig(basic);
    let mut r = Run::with_storage(cfg.clone());
    logged_in(&mut r, EPOCH, access_reply(1));
    let puts = r.puts();
    assert_eq!(puts.len(), 1);
    let record = parse(&puts[0]);
    assert_eq!(
        record.get("refresh_token"),
        Some(&auth_session::core::json::Json::Null),
        "{}",
        puts[0]
    );
    assert_eq!(record_access_token(&puts[0]), at(1));
    assert_eq!(record.get("account").and_then(|a| a.as_str()), cfg.account.as_deref());

    // Another instance restores it and uses it without asking the server.
    let mut s = Run::with_storage(cfg.clone());
    let f = wait(s.restore(EPOCH + MINUTE));
    s.answer_get(EPOCH + MINUTE, StorageReply::Record(parse(&puts[0])));
    assert_eq!(s.settled(f), Outcome::Done);
    let info = s.m.info();
    assert_eq!(
        (info.state, info.access_expires_at, info.refresh_expires_at),
        (Phase::Active, Some(EPOCH + HOUR), None)
    );
    assert_eq!(s.token_now(EPOCH + MINUTE).unwrap(), at(1));
    assert!(s.sends().is_empty());
    // When due it runs the grant (after a look at the record, which holds this very pair).
    assert_eq!(s.deadline(), Some(EPOCH + HOUR - MARGIN));
    let t = s.fire();
    s.answer_get(t, StorageReply::Record(parse(&puts[0])));
    let req = s.open_send();
    assert_eq!(
        (req.endpoint, req.body.as_str()),
        (Endpoint::Login, "grant_type=client_credentials")
    );

    // A cold instance adopts the stored pair on its first call.
    let mut c = Run::with_storage(cfg);
    let f = wait_token(c.ask(EPOCH + MINUTE, Need::Strict));
    c.answer_get(EPOCH + MINUTE, StorageReply::Record(parse(&puts[0])));
    assert_eq!(c.settled(f), Outcome::Done);
    assert_eq!(ready(&c.token(EPOCH + MINUTE, Need::Strict, Waited::Done, 1)), at(1));
    assert!(c.sends().is_empty());
}

#[test]
fn the_account_is_the_token_endpoint_and_the_client_and_two_clients_never_share_a_record() {
    let a = oconfig(|o| {
        basic(o);
        o.client_id = Some("client-a".into());
    });
    let b = oconfig(|o| {
        basic(o);
        o.client_id = Some("client-b".into());
    });
    let a_again = oconfig(|o| {
        post(o);
        o.client_id = Some("client-a".into());
    });
    let other_server = oconfig(|o| {
        basic(o);
        o.client_id = Some("client-a".into());
        o.token_endpoint = Some("https://as2.test/token".into());
    });
    assert!(a.account.is_some());
    assert_ne!(a.account, b.account);
    assert_ne!(a.storage_key(), b.storage_key());
    assert_eq!(a.account, a_again.account, "the client, not how it authenticates");
    assert_ne!(a.account, other_server.account);
    // The client's own token (client credentials) is never a user's (a seeded refresh token).
    let delegated = oconfig(|o| {
        basic(o);
        o.client_id = Some("client-a".into());
        o.grant = Some("refresh_token".into());
        o.refresh_token = Some(Password::new("seed.rt"));
    });
    assert_ne!(
        a.account, delegated.account,
        "a client's own token and a user's share no record"
    );
    // And the user, with the password grant.
    let bob = oconfig_with(password_grant, |o| {
        o.credentials = Some(("bob".into(), Password::new(PASSWORD)));
    });
    assert_ne!(password_config(|_| {}).account, bob.account);

    // A record client A wrote is not client B's.
    let mut r = Run::with_storage(a);
    logged_in(&mut r, EPOCH, access_reply(1));
    let record = r.puts().pop().unwrap();
    let mut s = Run::with_storage(b);
    let f = wait(s.restore(EPOCH));
    s.answer_get(EPOCH, StorageReply::Record(parse(&record)));
    assert_eq!(s.settled(f), Outcome::Nothing);
    assert_eq!(s.m.info().state, Phase::Anonymous);
}

#[test]
fn login_with_the_seed_adopts_the_pair_another_instance_stored_and_never_sends_the_seed() {
    let cfg = oconfig_with(seeded, no_timer);
    // Instance A exchanges the seed (looking at the record first) and stores the pair.
    let mut a = Run::with_storage(cfg.clone());
    let f = a.login_with(EPOCH, None);
    assert!(!a.has_open_send(), "the record first");
    a.answer_get(EPOCH, StorageReply::Empty);
    assert_eq!(field(&a.open_send(), "refresh_token").as_deref(), Some(SEED_RT));
    a.answer(EPOCH, pair_reply(1));
    a.answer_get(EPOCH, StorageReply::Empty);
    a.answer_put(EPOCH, StorageReply::Empty);
    assert_eq!(a.settled(f), Outcome::Done);
    let record = a.puts().pop().unwrap();
    assert_eq!(
        parse(&record).get("refresh_token").and_then(|t| t.as_str()),
        Some(&*rt(1))
    );

    // Instance B, given the same seed, adopts A's pair instead of sending it.
    let mut b = Run::with_storage(cfg);
    let t = EPOCH + MINUTE;
    let f = b.login_with(t, None);
    b.answer_get(t, StorageReply::Record(parse(&record)));
    assert_eq!(b.settled(f), Outcome::Done);
    assert!(b.sends().is_empty());
    assert_eq!(b.token_now(t).unwrap(), at(1));
    // Its refresh sends A's refresh token.
    wait(b.refresh(t));
    b.answer_get(t, StorageReply::Record(parse(&record)));
    let req = b.open_send();
    assert_eq!(
        (req.endpoint, field(&req, "refresh_token")),
        (Endpoint::Refresh, Some(rt(1)))
    );
}

#[test]
fn an_instance_that_restored_a_seeded_pair_never_sends_the_seed_after_invalid_grant() {
    let cfg = oconfig_with(seeded, no_timer);
    // The pair another instance got for the seed, in the store.
    let record = Pair::issued(1, EPOCH).record_of(HOST, 1, cfg.account.as_deref());
    let mut b = Run::with_storage(cfg);
    let f = wait(b.restore(EPOCH));
    b.answer_get(EPOCH, StorageReply::Record(parse(&record)));
    assert_eq!(b.settled(f), Outcome::Done);
    let t = EPOCH + MINUTE;
    let f = wait(b.refresh(t));
    b.answer_get(t, StorageReply::Record(parse(&record)));
    assert_eq!(field(&b.open_send(), "refresh_token"), Some(rt(1)));
    b.answer(t, oauth_error(400, "invalid_grant", "refresh token reused"));
    // Nothing newer in the store: the session ends.
    b.answer_get(t, StorageReply::Empty);
    let seeds: Vec<_> = b
        .sends()
        .iter()
        .filter(|q| field(q, "refresh_token").as_deref() == Some(SEED_RT))
        .map(|q| q.endpoint)
        .collect();
    assert_eq!(seeds, [], "the seed was sent again");
    assert_eq!(b.failure(f).code(), "SESSION_EXPIRED");
    assert_eq!(b.event_count("expired"), 1);
    assert_eq!(b.sends().len(), 1);
}
