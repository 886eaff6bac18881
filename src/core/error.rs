//! The one error type of the library, with the stable codes of the JavaScript contract.
//!
//! Every failure a user can see is an [`AuthError`]: a code from API.md's table (or the
//! server's own code when it sent an error envelope), a name, the HTTP status (0 when there
//! was none) and whether retrying later may help. Messages are written here or copied from
//! the server after [`AuthError::redact`]; they never carry a token or a password.

#[allow(unused_imports)]
use crate::prelude::*;

use ::core::fmt;

use crate::core::text;

/// What went wrong, as the stable `code` users branch on.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The server answered with an error envelope; its `name` and `code` are kept as sent.
    Server {
        name: String,
        code: String,
    },
    Network,
    Timeout,
    Aborted,
    InvalidResponse,
    ServerError,
    RateLimited,
    Http,
    SessionExpired,
    NotAuthenticated,
    OriginNotAllowed,
    RedirectBlocked,
    ResponseTooLarge,
    Config,
    Disposed,
    /// The configured storage threw, or held a record that is not ours (extension of API.md).
    Storage,
}

impl ErrorCode {
    /// The `code` property of the JavaScript `AuthError`.
    pub fn code(&self) -> &str {
        match self {
            ErrorCode::Server { code, .. } => code,
            ErrorCode::Network => "NETWORK_ERROR",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::Aborted => "ABORTED",
            ErrorCode::InvalidResponse => "INVALID_RESPONSE",
            ErrorCode::ServerError => "SERVER_ERROR",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Http => "HTTP_ERROR",
            ErrorCode::SessionExpired => "SESSION_EXPIRED",
            ErrorCode::NotAuthenticated => "NOT_AUTHENTICATED",
            ErrorCode::OriginNotAllowed => "ORIGIN_NOT_ALLOWED",
            ErrorCode::RedirectBlocked => "REDIRECT_BLOCKED",
            ErrorCode::ResponseTooLarge => "RESPONSE_TOO_LARGE",
            ErrorCode::Config => "CONFIG_ERROR",
            ErrorCode::Disposed => "DISPOSED",
            ErrorCode::Storage => "STORAGE_ERROR",
        }
    }

    /// The `name` property: the server's error name when it sent one, else the client's.
    pub fn name(&self) -> &str {
        match self {
            ErrorCode::Server { name, .. } => name,
            ErrorCode::Network => "NetworkError",
            ErrorCode::Timeout => "TimeoutError",
            ErrorCode::Aborted => "AbortError",
            ErrorCode::InvalidResponse => "InvalidResponseError",
            ErrorCode::ServerError => "ServerError",
            ErrorCode::RateLimited => "RateLimitedError",
            ErrorCode::Http => "HttpError",
            ErrorCode::SessionExpired => "SessionExpiredError",
            ErrorCode::NotAuthenticated => "NotAuthenticatedError",
            ErrorCode::OriginNotAllowed => "OriginNotAllowedError",
            ErrorCode::RedirectBlocked => "RedirectBlockedError",
            ErrorCode::ResponseTooLarge => "ResponseTooLargeError",
            ErrorCode::Config => "ConfigError",
            ErrorCode::Disposed => "DisposedError",
            ErrorCode::Storage => "StorageError",
        }
    }
}

/// The underlying error of a network or storage failure, as JavaScript described it: its
/// `name` and `code` (e.g. `TypeError`, `ECONNREFUSED`), never its message, which could
/// echo a URL, a header or a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    pub name: String,
    pub code: Option<String>,
}

impl Cause {
    /// Keeps only short identifier-like text: a name or code is a word, not a sentence.
    pub fn new(name: &str, code: Option<&str>) -> Cause {
        let word = |s: &str| -> String {
            s.chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                .take(64)
                .collect()
        };
        Cause {
            name: word(name),
            code: code.map(word).filter(|c| !c.is_empty()),
        }
    }
}

/// A failure of a session operation. Cheap to clone: one refresh failure is handed to every
/// caller that waited for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthError {
    code: ErrorCode,
    message: String,
    status: u16,
    retryable: bool,
    /// The seconds a server asked to wait (`Retry-After`) on the 429/5xx this error came
    /// from: what `AuthError.retryAfter` shows.
    retry_after: Option<u32>,
    cause: Option<Box<Cause>>,
}

/// Longest server-provided message we keep: enough for any real explanation, too short to
/// smuggle a response body into logs.
const MAX_SERVER_MESSAGE: usize = 300;

impl AuthError {
    /// A client-side error; `retryable` follows from the code (network trouble, timeouts,
    /// 5xx and rate limits may pass; everything else will not without a change).
    #[inline(never)]
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let retryable = matches!(
            code,
            ErrorCode::Network | ErrorCode::Timeout | ErrorCode::ServerError | ErrorCode::RateLimited
        );
        AuthError {
            code,
            message: message.into(),
            status: 0,
            retryable,
            retry_after: None,
            cause: None,
        }
    }

    /// An error the server described in its error envelope. Retryable only for 5xx and 429.
    ///
    /// Every secret in `secrets` is removed from the whole text first, then control and
    /// bidi characters are stripped, then the text is shortened: in the other order a secret
    /// cut by the shortening would leave its prefix behind. A name or code that held a
    /// secret is replaced by the client's generic one.
    pub fn from_server(status: u16, name: &str, code: &str, message: &str, secrets: &[&str]) -> Self {
        let holds_secret = |s: &str| secrets.iter().any(|x| !x.is_empty() && text::contains(s, x));
        // Judged on the text as sent, before stripping or shortening could cut a secret.
        let tainted =
            holds_secret(name) || holds_secret(code) || holds_secret(&strip(name)) || holds_secret(&strip(code));
        let (name, code) = (clean(name, 64), clean(code, 64));
        let (name, code) = if tainted || code.is_empty() {
            ("ServerError".to_owned(), "SERVER_ERROR".to_owned())
        } else {
            (name, code)
        };
        AuthError {
            code: ErrorCode::Server { name, code },
            // Scrubbed before and after stripping: an invisible character inside a secret
            // must not save it from the first pass, nor a secret inside a password from the
            // second.
            message: clean(&scrub(&strip(&scrub(message, secrets)), secrets), MAX_SERVER_MESSAGE),
            status,
            retryable: status >= 500 || status == 429,
            retry_after: None,
            cause: None,
        }
    }

    /// A non-2xx answer without an error envelope: SERVER_ERROR for 5xx, RATE_LIMITED for 429,
    /// HTTP_ERROR otherwise.
    pub fn from_status(status: u16) -> Self {
        let code = match status {
            429 => ErrorCode::RateLimited,
            500..=599 => ErrorCode::ServerError,
            _ => ErrorCode::Http,
        };
        AuthError::new(
            code,
            crate::core::text::cat(&["the server answered HTTP ", &crate::core::text::int(status as i64)]),
        )
        .with_status(status)
    }

    #[inline(never)]
    pub fn config(message: impl Into<String>) -> Self {
        AuthError::new(ErrorCode::Config, message)
    }

    #[inline(never)]
    pub fn invalid_response(message: impl Into<String>) -> Self {
        AuthError::new(ErrorCode::InvalidResponse, message)
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// The same error with another message (a client-made message, never server text).
    pub fn with_message(mut self, message: String) -> Self {
        self.message = message;
        self
    }

    pub fn with_cause(mut self, cause: Option<Cause>) -> Self {
        self.cause = cause.map(Box::new);
        self
    }

    /// Records the server's `Retry-After` (already read into milliseconds) as whole
    /// seconds, rounded up; only errors made from a 429 or 5xx carry one.
    pub fn with_retry_after_ms(mut self, ms: Option<u64>) -> Self {
        if self.status == 429 || (500..600).contains(&self.status) {
            self.retry_after = ms.map(|ms| ms.div_ceil(1000).min(u32::MAX as u64) as u32);
        }
        self
    }

    /// `AuthError.retryAfter`: the seconds the server asked to wait, if it said.
    pub fn retry_after(&self) -> Option<u32> {
        self.retry_after
    }

    pub fn cause(&self) -> Option<&Cause> {
        self.cause.as_deref()
    }

    pub fn code(&self) -> &str {
        self.code.code()
    }

    pub fn name(&self) -> &str {
        self.code.name()
    }

    pub fn kind(&self) -> &ErrorCode {
        &self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn retryable(&self) -> bool {
        self.retryable
    }

    /// True for the server's 401 envelope or a bare 401: the credential we sent is dead.
    pub fn is_unauthorized(&self) -> bool {
        self.status == 401
    }

    /// Removes every occurrence of the given secrets (however short) from the message, name
    /// and code. Server text is already scrubbed by [`AuthError::from_server`]; this is the
    /// second line for text assembled elsewhere.
    pub fn redact(mut self, secrets: &[&str]) -> Self {
        self.message = scrub(&self.message, secrets);
        if let ErrorCode::Server { name, code } = &mut self.code {
            if secrets
                .iter()
                .any(|s| !s.is_empty() && (text::contains(name, s) || text::contains(code, s)))
            {
                *name = "ServerError".into();
                *code = "SERVER_ERROR".into();
            }
        }
        self
    }
}

/// Replaces every occurrence of every non-empty secret, longest first (so a secret that
/// contains another is removed whole).
fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut sorted: Vec<&str> = secrets.iter().copied().filter(|s| !s.is_empty()).collect();
    // A handful of secrets: an insertion sort is all it takes (and no sort routine in the wasm).
    for i in 1..sorted.len() {
        let mut j = i;
        while j > 0 && sorted[j - 1].len() < sorted[j].len() {
            sorted.swap(j - 1, j);
            j -= 1;
        }
    }
    let mut out = text.to_owned();
    for secret in sorted {
        if let Some(scrubbed) = text::replace_all(&out, secret, "[redacted]") {
            out = scrubbed;
        }
    }
    out
}

/// Characters that reorder or hide text when shown: bidi embeddings, overrides and
/// isolates, and the invisible marks.
fn is_bidi_or_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{061C}' | '\u{FEFF}')
}

/// Printable text only: no control characters (they forge log lines), no bidi controls
/// (they disguise them).
fn strip(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() && !is_bidi_or_invisible(*c))
        .collect()
}

/// [`strip`], then at most `max_chars` characters.
fn clean(text: &str, max_chars: usize) -> String {
    let mut kept = text.chars().filter(|c| !c.is_control() && !is_bidi_or_invisible(*c));
    let mut out: String = kept.by_ref().take(max_chars).collect();
    if kept.next().is_some() {
        out.push('…');
    }
    out
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.name(), self.code(), self.message)
    }
}

impl ::core::error::Error for AuthError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_match_the_contract() {
        let cases = [
            (ErrorCode::Network, "NETWORK_ERROR", "NetworkError", true),
            (ErrorCode::Timeout, "TIMEOUT", "TimeoutError", true),
            (ErrorCode::Aborted, "ABORTED", "AbortError", false),
            (
                ErrorCode::InvalidResponse,
                "INVALID_RESPONSE",
                "InvalidResponseError",
                false,
            ),
            (ErrorCode::ServerError, "SERVER_ERROR", "ServerError", true),
            (ErrorCode::RateLimited, "RATE_LIMITED", "RateLimitedError", true),
            (ErrorCode::Http, "HTTP_ERROR", "HttpError", false),
            (
                ErrorCode::SessionExpired,
                "SESSION_EXPIRED",
                "SessionExpiredError",
                false,
            ),
            (
                ErrorCode::NotAuthenticated,
                "NOT_AUTHENTICATED",
                "NotAuthenticatedError",
                false,
            ),
            (
                ErrorCode::OriginNotAllowed,
                "ORIGIN_NOT_ALLOWED",
                "OriginNotAllowedError",
                false,
            ),
            (
                ErrorCode::RedirectBlocked,
                "REDIRECT_BLOCKED",
                "RedirectBlockedError",
                false,
            ),
            (
                ErrorCode::ResponseTooLarge,
                "RESPONSE_TOO_LARGE",
                "ResponseTooLargeError",
                false,
            ),
            (ErrorCode::Config, "CONFIG_ERROR", "ConfigError", false),
            (ErrorCode::Disposed, "DISPOSED", "DisposedError", false),
            (ErrorCode::Storage, "STORAGE_ERROR", "StorageError", false),
        ];
        for (kind, code, name, retryable) in cases {
            let e = AuthError::new(kind, "m");
            assert_eq!(
                (e.code(), e.name(), e.retryable(), e.status()),
                (code, name, retryable, 0)
            );
        }
    }

    #[test]
    fn server_errors_keep_name_and_code_and_are_retryable_only_for_5xx_and_429() {
        let e = AuthError::from_server(403, "ForbiddenError", "FORBIDDEN", "IP address not authorized", &[]);
        assert_eq!(
            (e.code(), e.name(), e.status(), e.retryable()),
            ("FORBIDDEN", "ForbiddenError", 403, false)
        );
        assert!(AuthError::from_server(503, "X", "Y", "", &[]).retryable());
        assert!(AuthError::from_server(429, "X", "Y", "", &[]).retryable());
        assert!(!AuthError::from_server(401, "X", "Y", "", &[]).retryable());
    }

    #[test]
    fn status_without_envelope_maps_to_client_codes() {
        assert_eq!(AuthError::from_status(502).code(), "SERVER_ERROR");
        assert_eq!(AuthError::from_status(429).code(), "RATE_LIMITED");
        let e = AuthError::from_status(404);
        assert_eq!((e.code(), e.name(), e.status()), ("HTTP_ERROR", "HttpError", 404));
    }

    #[test]
    fn server_messages_are_cleaned_capped_and_redacted() {
        let long = "x".repeat(1000);
        let e = AuthError::from_server(400, "N", "C", &long, &[]);
        assert!(e.message().chars().count() <= MAX_SERVER_MESSAGE + 1);
        let e = AuthError::from_server(400, "N", "C", "bad\r\nInjected: line", &[]);
        assert!(!e.message().contains('\n') && !e.message().contains('\r'));
        let e = AuthError::from_server(401, "N", "C", "token sekret-token-123 is unknown", &[])
            .redact(&["sekret-token-123"]);
        assert_eq!(e.message(), "token [redacted] is unknown");
        let e = AuthError::from_server(401, "sekret-token-123", "C", "m", &[]).redact(&["sekret-token-123"]);
        assert_eq!(e.name(), "ServerError");
    }
}
