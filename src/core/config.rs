//! Session options: what users pass to `new AuthSession(options)`, validated once, up front.
//!
//! [`Options`] is the raw input (already typed by the JavaScript layer, which reports
//! wrong JS types itself); [`Config`] is what the session runs on. Every check names the
//! option at fault, so a CONFIG_ERROR tells the user exactly what to fix.

#[allow(unused_imports)]
use crate::prelude::*;

use crate::core::error::AuthError;
use crate::core::oauth::{jws_alg, ClientAuth, Grant, OAuth};
use crate::core::retry::{BACKOFF_BASE_MS, BACKOFF_CAP_MS};
use crate::core::secret::{Password, RefreshToken};
use crate::core::text::{cat, int};
use crate::core::url::{parse_absolute, BaseUrl, Origin};

/// Options as given, before validation. `None` means "not given": the default applies.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub host: Option<String>,
    pub credentials: Option<(String, Password)>,
    pub refresh_margin_seconds: Option<f64>,
    pub auto_refresh: Option<bool>,
    pub timeout_ms: Option<f64>,
    pub retries: Option<f64>,
    pub max_retry_after_seconds: Option<f64>,
    pub login_path: Option<String>,
    pub refresh_path: Option<String>,
    pub revoke_path: Option<String>,
    pub storage_key: Option<String>,
    pub allowed_origins: Vec<String>,
    pub allow_insecure_http: Option<bool>,
    pub max_response_bytes: Option<f64>,
    pub lease_ms: Option<f64>,
    /// Copied by the driver into every log record and event payload; validated here.
    pub label: Option<String>,
    /// OAuth 2.0 mode (`oauth` option): the token endpoint instead of the provider's paths.
    pub oauth: Option<OAuthOptions>,
    /// The API is an OAuth 2.0 resource server (implied by `oauth`): `json()` reads its JSON
    /// as it is and a Bearer `invalid_token` challenge is a 401. Set alone by the Workers
    /// isolate session, whose auth calls go to a broker in OAuth 2.0 mode.
    pub oauth_api: Option<bool>,
}

/// The `oauth` option as given.
#[derive(Clone, Debug, Default)]
pub struct OAuthOptions {
    pub issuer: Option<String>,
    pub token_endpoint: Option<String>,
    pub revocation_endpoint: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Password>,
    pub client_auth: Option<String>,
    pub basic_encoding: Option<String>,
    /// private_key_jwt: what the driver read of the private key — a JWK's `kty`, `crv` and
    /// `alg`, or a CryptoKey's algorithm `name`, `namedCurve` and `hash` — and its key id.
    /// The machine picks the JWS algorithm ([`jws_alg`]).
    pub key_type: Option<String>,
    pub key_curve: Option<String>,
    pub key_hash: Option<String>,
    pub key_alg: Option<String>,
    pub kid: Option<String>,
    pub grant: Option<String>,
    pub refresh_token: Option<Password>,
    pub scope: Option<String>,
    pub resources: Vec<String>,
    pub audience: Option<String>,
}

/// Username and password for `login()` without arguments and for transparent re-login.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub username: String,
    pub password: Password,
}

/// Validated options.
#[derive(Clone, Debug)]
pub struct Config {
    pub base: BaseUrl,
    pub credentials: Option<Credentials>,
    pub refresh_margin_ms: i64,
    pub auto_refresh: bool,
    pub timeout_ms: u32,
    pub retries: u32,
    pub max_retry_after_ms: u64,
    /// The largest API response body `json()` reads.
    pub max_response_bytes: u32,
    /// The refresh lease's time to live: by default the acquire, the look, every attempt of
    /// a refresh with its retries and their backoffs, and the record write (`timeoutMs ×
    /// (retries + 4)` plus the backoffs' ceilings); what a dead holder costs the others at
    /// most.
    pub lease_ms: u32,
    // Kept as given (None: the default) and joined when a request is built: an idle
    // session holds no copy of the host per endpoint.
    login_path: Option<String>,
    refresh_path: Option<String>,
    revoke_path: Option<String>,
    storage_key: Option<String>,
    /// The fingerprint of the configured account ([`crate::core::fingerprint::account`]).
    pub account: Option<String>,
    pub allowed_origins: Vec<Origin>,
    /// OAuth 2.0 mode; `None`: the provider's protocol.
    pub oauth: Option<Box<OAuth>>,
    /// See [`Options::oauth_api`].
    pub oauth_api: bool,
    pub allow_insecure_http: bool,
}

pub const DEFAULT_REFRESH_MARGIN_SECONDS: f64 = 300.0;
pub const DEFAULT_TIMEOUT_MS: f64 = 10_000.0;
pub const DEFAULT_RETRIES: f64 = 2.0;
pub const DEFAULT_MAX_RETRY_AFTER_SECONDS: f64 = 30.0;
pub const DEFAULT_MAX_RESPONSE_BYTES: f64 = 10_485_760.0;
/// A label is a name for logs (a tenant, a pool key), not a document.
pub const MAX_LABEL_CHARS: usize = 64;
/// Auth responses larger than this are refused unread: a token pair is a few KiB at most.
pub const MAX_AUTH_RESPONSE_BYTES: usize = 64 * 1024;
/// The largest delay `setTimeout` honours; longer ones fire at once in Node.
pub const MAX_TIMER_DELAY_MS: u32 = 2_147_483_647;

fn number(field: &str, value: Option<f64>, default: f64, min: f64, max: f64, integer: bool) -> Result<f64, AuthError> {
    let v = value.unwrap_or(default);
    // Within [min, max] (at most 2^31) `as i64` is exact for integers: no `fract` (std-only).
    if !v.is_finite() || v < min || v > max || (integer && (v as i64) as f64 != v) {
        let kind = if integer { "an integer" } else { "a number" };
        return Err(AuthError::config(cat(&[
            field,
            " must be ",
            kind,
            " from ",
            &int(min as i64),
            " to ",
            &int(max as i64),
        ])));
    }
    Ok(v)
}

fn path(field: &str, value: Option<String>) -> Result<Option<String>, AuthError> {
    let Some(p) = value else { return Ok(None) };
    let ok = p.starts_with('/')
        && !p.starts_with("//")
        && p.len() <= 2048
        && p.bytes().all(|b| (0x21..=0x7e).contains(&b))
        && !p.contains(['#', '\\']);
    if !ok {
        return Err(AuthError::config(cat(&[
            field,
            " must be a path starting with a single \"/\", without spaces, control characters or a fragment",
        ])));
    }
    Ok(Some(p))
}

fn check_scheme(field: &str, origin: &Origin, allow_insecure_http: bool) -> Result<(), AuthError> {
    if origin.is_https() || origin.is_loopback() || allow_insecure_http {
        Ok(())
    } else {
        Err(AuthError::config(cat(&[
            field,
            " uses http:// with a host other than localhost or 127.0.0.1; use https:// (or set allowInsecureHttp)",
        ])))
    }
}

impl Options {
    /// Validates every option and applies the defaults of API.md.
    pub fn validate(self) -> Result<Config, AuthError> {
        let host = self.host.ok_or_else(|| AuthError::config("host is required"))?;
        let base = BaseUrl::parse(host.trim()).map_err(|e| {
            AuthError::config(cat(&[
                "host ",
                e.as_str(),
                " (expected e.g. \"https://api.example.com\")",
            ]))
        })?;
        let allow_insecure_http = self.allow_insecure_http.unwrap_or(false);
        check_scheme("host", base.origin(), allow_insecure_http)?;

        let credentials = match self.credentials {
            Some((username, password)) => {
                if username.is_empty() {
                    return Err(AuthError::config("credentials.username must be a non-empty string"));
                }
                if password.expose().is_empty() {
                    return Err(AuthError::config("credentials.password must be a non-empty string"));
                }
                Some(Credentials { username, password })
            }
            None => None,
        };

        let margin = number(
            "refreshMarginSeconds",
            self.refresh_margin_seconds,
            DEFAULT_REFRESH_MARGIN_SECONDS,
            0.0,
            86_400.0,
            false,
        )?;
        let timeout = number(
            "timeoutMs",
            self.timeout_ms,
            DEFAULT_TIMEOUT_MS,
            1.0,
            MAX_TIMER_DELAY_MS as f64,
            true,
        )?;
        let retries = number("retries", self.retries, DEFAULT_RETRIES, 0.0, 10.0, true)?;
        let max_retry_after = number(
            "maxRetryAfterSeconds",
            self.max_retry_after_seconds,
            DEFAULT_MAX_RETRY_AFTER_SECONDS,
            0.0,
            86_400.0,
            false,
        )?;

        let max_response_bytes = number(
            "maxResponseBytes",
            self.max_response_bytes,
            DEFAULT_MAX_RESPONSE_BYTES,
            1.0,
            MAX_TIMER_DELAY_MS as f64,
            true,
        )?;
        let lease_ms = match self.lease_ms {
            // What the lease must cover, from when it is asked for: the acquire's answer, the
            // look at the record, every attempt with the backoffs between them, and the write
            // of the new pair (each storage call and attempt may take up to timeoutMs).
            None => {
                let backoffs: f64 = (0..retries as u32)
                    .map(|i| (BACKOFF_BASE_MS * (1u64 << i) as f64).min(BACKOFF_CAP_MS))
                    .sum();
                timeout * (retries + 4.0) + backoffs
            }
            // At least the acquire, the look, one attempt and the write.
            Some(_) => number(
                "leaseMs",
                self.lease_ms,
                0.0,
                4.0 * timeout,
                MAX_TIMER_DELAY_MS as f64,
                true,
            )
            .map_err(|e| {
                AuthError::config(cat(&[
                    e.message(),
                    " (at least 4 × timeoutMs: the acquire, the look, one attempt and the record write)",
                ]))
            })?,
        }
        .min(MAX_TIMER_DELAY_MS as f64);
        if let Some(label) = &self.label {
            // Characters counted as the bytes that start one: `chars().count()` brings core's
            // vectorised counter (0.8 KB of wasm) for a 64-character limit.
            let chars = label.bytes().filter(|&b| (b as i8) >= -0x40).count();
            if chars > MAX_LABEL_CHARS || label.chars().any(|c| c.is_control()) {
                return Err(AuthError::config(
                    "label must be a string of at most 64 characters without control characters",
                ));
            }
        }

        let login_path = path("paths.login", self.login_path)?;
        let refresh_path = path("paths.refresh", self.refresh_path)?;
        let revoke_path = path("paths.revoke", self.revoke_path)?;

        if self.storage_key.as_ref().is_some_and(|k| k.is_empty() || k.len() > 512) {
            return Err(AuthError::config(
                "storageKey must be a non-empty string of at most 512 bytes",
            ));
        }

        let mut allowed_origins = Vec::with_capacity(self.allowed_origins.len());
        for (i, o) in self.allowed_origins.iter().enumerate() {
            let field = cat(&["allowedOrigins[", &int(i as i64), "]"]);
            let url = parse_absolute(o.trim()).map_err(|e| AuthError::config(cat(&[&field, " ", e.as_str()])))?;
            if url.rest != "/" {
                return Err(AuthError::config(cat(&[
                    &field,
                    " must be an origin (scheme://host[:port]) without a path, query or fragment",
                ])));
            }
            check_scheme(&field, &url.origin, allow_insecure_http)?;
            allowed_origins.push(url.origin);
        }

        let oauth = match self.oauth {
            None => None,
            Some(o) => {
                if login_path.is_some() || refresh_path.is_some() || revoke_path.is_some() {
                    return Err(AuthError::config(
                        "paths are the provider protocol's; with oauth, set oauth.tokenEndpoint or oauth.issuer",
                    ));
                }
                Some(Box::new(o.validate(allow_insecure_http, credentials.is_some())?))
            }
        };
        // In OAuth mode a grant without a user still "logs in": the machine's credentials
        // stand for the grant (the username, when there is one, names the account).
        let credentials = match (&oauth, credentials) {
            // Without credentials, `login(username, password)` runs the grant.
            (Some(o), c) if o.grant == Grant::Password => c,
            (Some(_), Some(_)) => return Err(AuthError::config("credentials are for oauth.grant \"password\" only")),
            (Some(_), None) => Some(Credentials {
                username: String::new(),
                password: Password::new(""),
            }),
            (None, c) => c,
        };
        let account = credentials.as_ref().map(|c| account_of(oauth.as_deref(), &c.username));

        Ok(Config {
            oauth_api: oauth.is_some() || self.oauth_api == Some(true),
            oauth,
            allow_insecure_http,
            login_path,
            refresh_path,
            revoke_path,
            storage_key: self.storage_key,
            account,
            base,
            credentials,
            refresh_margin_ms: (margin * 1000.0 + 0.5) as i64,
            auto_refresh: self.auto_refresh.unwrap_or(true),
            timeout_ms: timeout as u32,
            retries: retries as u32,
            max_retry_after_ms: (max_retry_after * 1000.0 + 0.5) as u64,
            max_response_bytes: max_response_bytes as u32,
            lease_ms: lease_ms as u32,
            allowed_origins,
        })
    }
}

/// The fingerprint of an account: the username in provider mode; in OAuth mode the
/// authorization server, the client, whose tokens the grant gets (the client's own, a user's
/// by a refresh token, a named user's) and the username, so that two clients of one API,
/// or one client's own token and a user's, never share a record.
fn account_of(oauth: Option<&OAuth>, username: &str) -> String {
    match oauth {
        None => crate::core::fingerprint::account(username),
        Some(o) => crate::core::fingerprint::account(&cat(&[
            o.issuer.as_deref().or(o.token_endpoint.as_deref()).unwrap_or(""),
            "\n",
            &o.client_id,
            match o.grant {
                Grant::ClientCredentials => "\nclient\n",
                Grant::RefreshToken => "\ndelegated\n",
                Grant::Password => "\nuser\n",
            },
            username,
        ])),
    }
}

/// The index of `value` among `names` (`None`: not given), or a CONFIG_ERROR naming them.
fn choice(field: &str, value: Option<&str>, names: &[&str]) -> Result<Option<usize>, AuthError> {
    let Some(v) = value else { return Ok(None) };
    match names.iter().position(|n| *n == v) {
        Some(i) => Ok(Some(i)),
        None => {
            let mut m = cat(&[field, " must be one of:"]);
            for n in names {
                m.push(' ');
                m.push_str(n);
            }
            Err(AuthError::config(m))
        }
    }
}

/// An endpoint option: an absolute URL without a fragment, on https (or allowed http).
fn endpoint(field: &str, value: Option<String>, allow_insecure_http: bool) -> Result<Option<String>, AuthError> {
    let Some(v) = value else { return Ok(None) };
    let u = parse_absolute(&v).map_err(|e| AuthError::config(cat(&[field, " ", e.as_str()])))?;
    check_scheme(field, &u.origin, allow_insecure_http)?;
    if u.rest.contains('#') {
        return Err(AuthError::config(cat(&[field, " must not have a fragment"])));
    }
    Ok(Some(v))
}

impl OAuthOptions {
    #[inline(never)]
    /// `has_credentials`: `credentials` were given, which makes the password grant the default.
    fn validate(self, allow_insecure_http: bool, has_credentials: bool) -> Result<OAuth, AuthError> {
        let issuer = endpoint("oauth.issuer", self.issuer, allow_insecure_http)?;
        let token_endpoint = endpoint("oauth.tokenEndpoint", self.token_endpoint, allow_insecure_http)?;
        let revocation_endpoint = endpoint(
            "oauth.revocationEndpoint",
            self.revocation_endpoint,
            allow_insecure_http,
        )?;
        if issuer.is_none() && token_endpoint.is_none() {
            return Err(AuthError::config("oauth needs tokenEndpoint or issuer (discovery)"));
        }
        let client_id = self
            .client_id
            .filter(|c| !c.is_empty() && c.len() <= 1024)
            .ok_or_else(|| AuthError::config("oauth.clientId must be a non-empty string"))?;
        let client_secret = self.client_secret.filter(|s| !s.expose().is_empty());
        let alg = match self.key_type.as_deref() {
            None => None,
            Some(kind) => Some(
                jws_alg(kind, self.key_curve.as_deref(), self.key_hash.as_deref(), self.key_alg.as_deref()).ok_or_else(
                    || {
                        AuthError::config(
                            "oauth.privateKey must be an RSA (RS256, PS256), EC P-256/P-384 (ES256, ES384) or Ed25519 (EdDSA) private key, and a JWK's \"alg\" one of these for its type",
                        )
                    },
                )?,
            ),
        };
        const AUTHS: [ClientAuth; 4] = [
            ClientAuth::Basic,
            ClientAuth::Post,
            ClientAuth::PrivateKeyJwt,
            ClientAuth::None,
        ];
        let auth = match choice(
            "oauth.clientAuth",
            self.client_auth.as_deref(),
            &["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        )? {
            Some(i) => AUTHS[i],
            None if alg.is_some() => ClientAuth::PrivateKeyJwt,
            None if client_secret.is_some() => ClientAuth::Basic,
            None => ClientAuth::None,
        };
        let missing = match auth {
            ClientAuth::Basic | ClientAuth::Post => client_secret.is_none(),
            ClientAuth::PrivateKeyJwt => alg.is_none(),
            ClientAuth::None => false,
        };
        if missing {
            return Err(AuthError::config(
                "oauth.clientAuth needs its credential: clientSecret for client_secret_basic and client_secret_post, privateKey for private_key_jwt",
            ));
        }
        let basic_plain = choice(
            "oauth.basicEncoding",
            self.basic_encoding.as_deref(),
            &["form", "plain"],
        )? == Some(1);
        let seed = match self.refresh_token {
            None => None,
            Some(t) => Some(
                RefreshToken::parse(t.expose())
                    .map_err(|_| AuthError::config("oauth.refreshToken must be a token: visible ASCII, no spaces"))?,
            ),
        };
        const GRANTS: [Grant; 3] = [Grant::RefreshToken, Grant::ClientCredentials, Grant::Password];
        let grant = match choice(
            "oauth.grant",
            self.grant.as_deref(),
            &["refresh_token", "client_credentials", "password"],
        )? {
            Some(i) => GRANTS[i],
            None if seed.is_some() => Grant::RefreshToken,
            None if has_credentials => Grant::Password,
            None => Grant::ClientCredentials,
        };
        if grant == Grant::RefreshToken && seed.is_none() {
            return Err(AuthError::config(
                "oauth.grant \"refresh_token\" needs oauth.refreshToken",
            ));
        }
        let mut params = String::new();
        let pairs = [("scope", &self.scope), ("audience", &self.audience)];
        for (name, v) in pairs
            .into_iter()
            .filter_map(|(n, v)| Some((n, v.as_deref()?)))
            .chain(self.resources.iter().map(|r| ("resource", r.as_str())))
        {
            if v.len() > 4096 {
                // Sent with every grant: a parameter, not a document.
                return Err(AuthError::config(cat(&["oauth.", name, " is longer than 4096 bytes"])));
            }
            if name == "resource" {
                // RFC 8707: an absolute URI without a fragment.
                endpoint("oauth.resource", Some(v.to_owned()), true)?;
            }
            params.push('&');
            params.push_str(name);
            params.push('=');
            crate::core::oauth::form_encode(&mut params, v);
        }
        Ok(OAuth {
            issuer,
            token_endpoint,
            revocation_endpoint,
            client_id,
            client_secret,
            auth,
            basic_plain,
            alg,
            kid: self.kid.filter(|k| !k.is_empty()),
            grant,
            seed,
            params,
        })
    }
}

impl Config {
    /// The account fingerprint of a login as `username`.
    pub fn account_of(&self, username: &str) -> String {
        account_of(self.oauth.as_deref(), username)
    }

    /// The path of an auth endpoint (`login`, `refresh`, `revoke`), for messages: errors
    /// name the request they are about.
    pub fn auth_path(&self, endpoint: usize) -> &str {
        match endpoint {
            0 => self.login_path.as_deref().unwrap_or("/auth/login"),
            1 => self.refresh_path.as_deref().unwrap_or("/auth/refresh"),
            _ => self.revoke_path.as_deref().unwrap_or("/auth/revoke"),
        }
    }

    pub fn login_url(&self) -> String {
        self.base.join(self.login_path.as_deref().unwrap_or("/auth/login"))
    }

    pub fn refresh_url(&self) -> String {
        self.base.join(self.refresh_path.as_deref().unwrap_or("/auth/refresh"))
    }

    pub fn revoke_url(&self) -> String {
        self.base.join(self.revoke_path.as_deref().unwrap_or("/auth/revoke"))
    }

    /// The key of the stored record: `storageKey`, else one derived from the host and,
    /// with credentials, the account (its fingerprint: never the username in clear), so
    /// that tenants sharing a store never share a record by default.
    pub fn storage_key(&self) -> String {
        match (&self.storage_key, &self.account) {
            (Some(k), _) => k.clone(),
            (None, Some(a)) => cat(&["auth-session:", &self.base.as_string(), "#", a]),
            (None, None) => cat(&["auth-session:", &self.base.as_string()]),
        }
    }

    /// What a stored record calls its host: the origin and path prefix.
    pub fn record_origin(&self) -> String {
        self.base.as_string()
    }

    /// May a request to this origin carry the bearer token?
    pub fn may_receive_token(&self, origin: &Origin) -> bool {
        origin == self.base.origin() || self.allowed_origins.contains(origin)
    }

    /// [`Config::may_receive_token`] for an origin as WHATWG `URL#origin` serialises it
    /// (lowercase scheme and host, default port omitted: the same form as [`Origin`]).
    pub fn may_receive_origin(&self, origin: &str) -> bool {
        self.base.origin().as_str() == origin || self.allowed_origins.iter().any(|o| o.as_str() == origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(host: &str) -> Options {
        Options {
            host: Some(host.into()),
            ..Options::default()
        }
    }

    fn err(o: Options) -> String {
        let e = o.validate().unwrap_err();
        assert_eq!(e.code(), "CONFIG_ERROR");
        e.message().to_owned()
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = opts("https://api.example.com/v2/").validate().unwrap();
        assert_eq!(c.refresh_margin_ms, 300_000);
        assert!(c.auto_refresh);
        assert_eq!((c.timeout_ms, c.retries, c.max_retry_after_ms), (10_000, 2, 30_000));
        assert_eq!(c.login_url(), "https://api.example.com/v2/auth/login");
        assert_eq!(c.refresh_url(), "https://api.example.com/v2/auth/refresh");
        assert_eq!(c.revoke_url(), "https://api.example.com/v2/auth/revoke");
        assert_eq!(c.storage_key(), "auth-session:https://api.example.com/v2");
    }

    #[test]
    fn every_bad_option_is_named() {
        assert!(err(Options::default()).starts_with("host"));
        assert!(err(opts("api.example.com")).starts_with("host"));
        assert!(err(opts("http://api.example.com")).contains("allowInsecureHttp"));
        assert!(opts("http://localhost:8080").validate().is_ok());
        assert!(Options {
            allow_insecure_http: Some(true),
            ..opts("http://api.internal")
        }
        .validate()
        .is_ok());
        assert!(err(Options {
            refresh_margin_seconds: Some(-1.0),
            ..opts("https://x.test")
        })
        .starts_with("refreshMarginSeconds"));
        assert!(err(Options {
            refresh_margin_seconds: Some(f64::NAN),
            ..opts("https://x.test")
        })
        .starts_with("refreshMarginSeconds"));
        assert!(err(Options {
            timeout_ms: Some(0.0),
            ..opts("https://x.test")
        })
        .starts_with("timeoutMs"));
        assert!(err(Options {
            timeout_ms: Some(1.5),
            ..opts("https://x.test")
        })
        .starts_with("timeoutMs"));
        assert!(err(Options {
            retries: Some(11.0),
            ..opts("https://x.test")
        })
        .starts_with("retries"));
        assert!(err(Options {
            max_retry_after_seconds: Some(f64::INFINITY),
            ..opts("https://x.test")
        })
        .starts_with("maxRetryAfterSeconds"));
        assert!(err(Options {
            login_path: Some("auth/login".into()),
            ..opts("https://x.test")
        })
        .starts_with("paths.login"));
        assert!(err(Options {
            refresh_path: Some("//evil.test/x".into()),
            ..opts("https://x.test")
        })
        .starts_with("paths.refresh"));
        assert!(err(Options {
            revoke_path: Some("/a b".into()),
            ..opts("https://x.test")
        })
        .starts_with("paths.revoke"));
        assert!(err(Options {
            storage_key: Some(String::new()),
            ..opts("https://x.test")
        })
        .starts_with("storageKey"));
        assert!(err(Options {
            allowed_origins: vec!["https://ok.test".into(), "https://x.test/path".into()],
            ..opts("https://x.test")
        })
        .starts_with("allowedOrigins[1]"));
        assert!(err(Options {
            allowed_origins: vec!["http://cdn.test".into()],
            ..opts("https://x.test")
        })
        .starts_with("allowedOrigins[0]"));
        let creds = Some((String::new(), Password::new("p")));
        assert!(err(Options {
            credentials: creds,
            ..opts("https://x.test")
        })
        .starts_with("credentials.username"));
        let creds = Some(("u".to_owned(), Password::new("")));
        assert!(err(Options {
            credentials: creds,
            ..opts("https://x.test")
        })
        .starts_with("credentials.password"));
    }

    #[test]
    fn token_scope_is_the_host_origin_plus_allowed_origins() {
        let c = Options {
            allowed_origins: vec!["https://files.example.com".into()],
            ..opts("https://api.example.com/v2")
        }
        .validate()
        .unwrap();
        let origin = |u: &str| parse_absolute(u).unwrap().origin;
        assert!(c.may_receive_token(&origin("https://api.example.com/other")));
        assert!(c.may_receive_token(&origin("https://files.example.com/x")));
        assert!(!c.may_receive_token(&origin("http://api.example.com/")));
        assert!(!c.may_receive_token(&origin("https://api.example.com:8443/")));
        assert!(!c.may_receive_token(&origin("https://evil.test/")));
    }
}
