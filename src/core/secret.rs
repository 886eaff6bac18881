//! Newtypes for the three secrets the library handles: access tokens, refresh tokens and
//! passwords. None implements `Display` or `Serialize`, and `Debug` prints `[redacted]`, so a
//! secret cannot reach a log line or an error message by accident: reading one takes an
//! explicit [`expose`](AccessToken::expose) at the few places that write a header, a request
//! body or a storage record.

#[allow(unused_imports)]
use crate::prelude::*;

use ::core::fmt;

use crate::core::error::AuthError;
use crate::core::text::{cat, int};

macro_rules! secret {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            /// The secret itself, for the header, body or record being written.
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

secret!(
    /// A bearer token for protected endpoints. Only ever built by [`AccessToken::parse`], so it
    /// is always safe to put in an `Authorization` header.
    AccessToken
);
secret!(
    /// A refresh token. Spent by one `/auth/refresh` call; never sent twice.
    RefreshToken
);
secret!(
    /// An API password, kept only when the user configured `credentials`.
    Password
);

/// Tokens larger than this are not tokens: a JWT of a B2B API is well under 2 KiB.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// A token must be non-empty visible ASCII (no space, no control characters). Anything else
/// cannot be a JWT and would either forge a header or make the runtime's `Headers` throw an
/// error that quotes the whole value.
fn check_token(field: &str, value: &str) -> Result<(), AuthError> {
    if value.is_empty() {
        return Err(AuthError::invalid_response(cat(&[field, " is empty"])));
    }
    if value.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::invalid_response(cat(&[
            field,
            " is longer than ",
            &int(MAX_TOKEN_BYTES as i64),
            " bytes",
        ])));
    }
    if !value.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(AuthError::invalid_response(cat(&[
            field,
            " contains whitespace, control or non-ASCII characters",
        ])));
    }
    Ok(())
}

impl AccessToken {
    pub fn parse(value: &str) -> Result<Self, AuthError> {
        check_token("access_token", value)?;
        Ok(AccessToken(value.to_owned()))
    }
}

impl RefreshToken {
    pub fn parse(value: &str) -> Result<Self, AuthError> {
        check_token("refresh_token", value)?;
        Ok(RefreshToken(value.to_owned()))
    }
}

impl Password {
    pub fn new(value: impl Into<String>) -> Self {
        Password(value.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let t = AccessToken::parse("eyJ.canary.token").unwrap();
        let r = RefreshToken::parse("eyJ.canary.refresh").unwrap();
        let p = Password::new("hunter2-canary");
        let all = format!("{t:?} {r:?} {p:?} {:?}", Some(&t));
        assert!(!all.contains("canary"), "{all}");
        assert!(all.contains("[redacted]"));
    }

    #[test]
    fn tokens_must_be_visible_ascii() {
        for bad in ["", "a b", "a\r\nb", "a\0b", "tök", "a\tb"] {
            let e = AccessToken::parse(bad).unwrap_err();
            assert_eq!(e.code(), "INVALID_RESPONSE");
            assert!(bad.is_empty() || !e.message().contains(bad), "message leaks the value");
        }
        assert_eq!(
            RefreshToken::parse(&"a".repeat(MAX_TOKEN_BYTES + 1))
                .unwrap_err()
                .code(),
            "INVALID_RESPONSE"
        );
        assert_eq!(
            AccessToken::parse("eyJhbGciOi.J9-_x~+/=").unwrap().expose(),
            "eyJhbGciOi.J9-_x~+/="
        );
    }
}
