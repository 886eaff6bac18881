//! Just enough URL handling for the two questions the session asks: where does a path go
//! (the host may carry a path prefix, and paths are appended to it as the guide's
//! `{{host}}/auth/login` is), and may this URL receive the bearer token (its origin must be
//! the host's or one of `allowedOrigins`).
//!
//! The JavaScript layer normalises URLs with the runtime's WHATWG `URL` before they reach
//! the core; this parser is strict about what it accepts rather than forgiving, because a
//! mistake here sends a token to the wrong place.

#[allow(unused_imports)]
use crate::prelude::*;

use ::core::fmt;

use crate::core::text::{self, cat, int};

/// `scheme://host[:port]`, lowercase, default port omitted: the unit the bearer token is
/// scoped to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin(String);

impl Origin {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for `localhost`, `127.0.0.1` and `[::1]`: the only hosts that may use plain
    /// `http://` without `allowInsecureHttp`.
    pub fn is_loopback(&self) -> bool {
        let host = text::find(&self.0, "://").map_or("", |i| &self.0[i + 3..]);
        let host = match host.rfind(':') {
            Some(i) if !host.ends_with(']') => &host[..i],
            _ => host,
        };
        matches!(host, "localhost" | "127.0.0.1" | "[::1]")
    }

    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An absolute `http(s)` URL split into its origin and the rest (path, query, fragment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AbsoluteUrl {
    pub origin: Origin,
    /// Starts with `/` (an empty path becomes `/`), then query and fragment as given.
    pub rest: String,
}

/// Why a URL was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UrlError {
    NotAbsolute,
    UnsupportedScheme,
    HasUserInfo,
    BadHost,
    BadPort,
    BadCharacter,
}

impl UrlError {
    /// Why, as the end of a sentence that names the URL's field.
    pub fn as_str(&self) -> &'static str {
        match self {
            UrlError::NotAbsolute => "is not an absolute URL",
            UrlError::UnsupportedScheme => "must use http: or https:",
            UrlError::HasUserInfo => "must not contain a user name or password",
            UrlError::BadHost => "has an invalid host",
            UrlError::BadPort => "has an invalid port",
            UrlError::BadCharacter => "contains whitespace or control characters",
        }
    }
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// True when `input` starts with a URL scheme (`letter (letter | digit | + - .)* :`), i.e. is
/// not a path to resolve against the host.
pub fn has_scheme(input: &str) -> bool {
    let Some(colon) = input.find(':') else { return false };
    let scheme = &input[..colon];
    let mut chars = scheme.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Parses an absolute http(s) URL.
pub fn parse_absolute(input: &str) -> Result<AbsoluteUrl, UrlError> {
    if input.chars().any(|c| c.is_control() || c == ' ') {
        return Err(UrlError::BadCharacter);
    }
    let i = text::find(input, "://").ok_or(UrlError::NotAbsolute)?;
    let (scheme, after) = (&input[..i], &input[i + 3..]);
    if !has_scheme(input) {
        return Err(UrlError::NotAbsolute);
    }
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return Err(UrlError::UnsupportedScheme),
    };
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    if authority.contains('@') {
        return Err(UrlError::HasUserInfo);
    }
    let (host, port) = split_host_port(authority)?;
    let mut origin = cat(&[&scheme, "://", &host]);
    if let Some(port) = port.filter(|p| *p != default_port) {
        origin.push(':');
        origin.push_str(&int(port as i64));
    }
    let rest = if rest.starts_with('/') {
        rest.to_owned()
    } else {
        cat(&["/", rest])
    };
    Ok(AbsoluteUrl {
        origin: Origin(origin),
        rest,
    })
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), UrlError> {
    let (host, port) = if let Some(stripped) = authority.strip_prefix('[') {
        let close = stripped.find(']').ok_or(UrlError::BadHost)?;
        let inner = &stripped[..close];
        if inner.is_empty() || !inner.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
            return Err(UrlError::BadHost);
        }
        let after = &stripped[close + 1..];
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(UrlError::BadPort)?),
        };
        (cat(&["[", &inner.to_ascii_lowercase(), "]"]), port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let valid = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
        if !valid {
            return Err(UrlError::BadHost);
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port {
        None | Some("") => None,
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().map_err(|_| UrlError::BadPort)?)
        }
        Some(_) => return Err(UrlError::BadPort),
    };
    Ok((host, port))
}

/// The configured `host`: an origin plus an optional path prefix (no trailing slash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    origin: Origin,
    prefix: String,
}

impl BaseUrl {
    /// Parses `host`; a query or fragment makes no sense on a base and is refused.
    pub fn parse(host: &str) -> Result<Self, UrlError> {
        let url = parse_absolute(host)?;
        if url.rest.contains(['?', '#']) {
            return Err(UrlError::BadCharacter);
        }
        let prefix = url.rest.trim_end_matches('/').to_owned();
        Ok(BaseUrl {
            origin: url.origin,
            prefix,
        })
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Appends a path (with or without its leading `/`) to the base, prefix included:
    /// `https://x.test/v2` + `/auth/login` = `https://x.test/v2/auth/login`.
    pub fn join(&self, path: &str) -> String {
        let sep = if path.starts_with('/') { "" } else { "/" };
        cat(&[self.origin.as_str(), &self.prefix, sep, path])
    }

    /// The base as a string, used as the default storage key.
    pub fn as_string(&self) -> String {
        cat(&[self.origin.as_str(), &self.prefix])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised() {
        let u = parse_absolute("HTTPS://API.Example.com:443/a/b?q=1#f").unwrap();
        assert_eq!(u.origin.as_str(), "https://api.example.com");
        assert_eq!(u.rest, "/a/b?q=1#f");
        assert_eq!(
            parse_absolute("http://127.0.0.1:8080").unwrap().origin.as_str(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            parse_absolute("http://[::1]:80/x").unwrap().origin.as_str(),
            "http://[::1]"
        );
        assert_eq!(parse_absolute("https://x.test?y").unwrap().rest, "/?y");
    }

    #[test]
    fn dangerous_urls_are_refused() {
        assert_eq!(parse_absolute("https://user:pw@x.test/"), Err(UrlError::HasUserInfo));
        assert_eq!(parse_absolute("ftp://x.test/"), Err(UrlError::UnsupportedScheme));
        assert_eq!(parse_absolute("/relative"), Err(UrlError::NotAbsolute));
        assert_eq!(parse_absolute("https://x.test:99999/"), Err(UrlError::BadPort));
        assert_eq!(parse_absolute("https://x.test:8a/"), Err(UrlError::BadPort));
        assert_eq!(parse_absolute("https://x test/"), Err(UrlError::BadCharacter));
        assert_eq!(parse_absolute("https://x.test/\r\n"), Err(UrlError::BadCharacter));
        assert_eq!(parse_absolute("https:///path"), Err(UrlError::BadHost));
        assert_eq!(parse_absolute("https://[zz]/"), Err(UrlError::BadHost));
    }

    #[test]
    fn loopback_detection() {
        for (url, lo) in [
            ("http://localhost:3000", true),
            ("http://127.0.0.1", true),
            ("http://[::1]:1", true),
            ("http://localhost.evil.test", false),
            ("http://10.0.0.1", false),
        ] {
            assert_eq!(parse_absolute(url).unwrap().origin.is_loopback(), lo, "{url}");
        }
    }

    #[test]
    fn base_joins_paths_after_its_prefix() {
        let b = BaseUrl::parse("https://x.test/v2/").unwrap();
        assert_eq!(b.join("/auth/login"), "https://x.test/v2/auth/login");
        assert_eq!(
            b.join("api/v1/products?page=2"),
            "https://x.test/v2/api/v1/products?page=2"
        );
        let b = BaseUrl::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(b.join("/auth/refresh"), "http://127.0.0.1:9000/auth/refresh");
        assert!(BaseUrl::parse("https://x.test/?q").is_err());
    }

    #[test]
    fn scheme_detection() {
        assert!(has_scheme("https://x"));
        assert!(has_scheme("data:text/plain,hi"));
        assert!(!has_scheme("/api/v1:x"));
        assert!(!has_scheme("api/v1"));
        assert!(!has_scheme("1http://x"));
    }
}
