//! Where the token may go (origins, redirects), what an auth response must look like to be
//! believed, and that no secret reaches an error, an event or `info`.

mod common;

use auth_session::core::secret::Password;
use auth_session::core::{Abort, Credentials, Phase};
use common::*;

// ----- redirects and origins -----------------------------------------------------------------

#[test]
fn an_auth_endpoint_answering_a_redirect_is_redirect_blocked() {
    for status in [301, 302, 303, 307, 308] {
        let h = Harness::new();
        h.script(
            "/auth/login",
            Reply::redirect(status, "https://api.test/auth/elsewhere"),
        );
        let e = h.err(h.run(h.session.login(Some(creds()))));
        assert_eq!(
            (e.code(), e.name(), e.status(), e.retryable()),
            ("REDIRECT_BLOCKED", "RedirectBlockedError", status, false)
        );
        assert_eq!(h.total_requests(), 1, "the Location was not requested, and no retry");
        assert_eq!(h.world.bodies_discarded.get(), 1);
    }
    // An opaque redirect (what a browser shows for redirect: "manual").
    let h = Harness::new();
    h.script("/auth/login", Reply::status(0).opaque());
    assert_eq!(h.err(h.run(h.session.login(Some(creds())))).code(), "REDIRECT_BLOCKED");
}

#[test]
fn a_redirected_refresh_is_blocked_and_the_tokens_are_kept() {
    let h = Harness::with(|o| o.auto_refresh = Some(false));
    h.login();
    h.script("/auth/refresh", Reply::redirect(307, "https://evil.test/auth/refresh"));
    assert_eq!(h.err(h.refresh()).code(), "REDIRECT_BLOCKED");
    assert_eq!(h.info().state, Phase::Active);
    assert!(h.requests().iter().all(|r| r.url.starts_with(HOST)));
}

#[test]
fn a_same_origin_redirect_is_followed_with_the_bearer() {
    let h = Harness::new();
    h.login();
    h.script(
        "/api/v1/old",
        Reply::redirect(302, "https://api.test/api/v1/products?page=2"),
    );
    let r = h.get("/api/v1/old").unwrap();
    assert_eq!(r.response.status, 200);
    let reqs = h.requests();
    let api: Vec<_> = reqs.iter().filter(|r| r.path.starts_with("/api/")).collect();
    assert_eq!(api.len(), 2);
    assert_eq!(api[1].url, "https://api.test/api/v1/products?page=2");
    assert!(api
        .iter()
        .all(|r| r.bearer.as_deref() == Some(at(1).as_str()) && r.method == "GET"));
}

#[test]
fn redirects_change_the_method_as_fetch_does() {
    let h = Harness::new();
    h.login();
    let body = Some(r#"{"a":1}"#);
    // 303 and a POST's 301/302 become a body-less GET; 307/308 keep method and body.
    for (status, method, expect_method, expect_body) in [
        (303, "POST", "GET", None),
        (302, "POST", "GET", None),
        (301, "POST", "GET", None),
        (307, "POST", "POST", body),
        (308, "PUT", "PUT", body),
        (302, "PUT", "PUT", body),
    ] {
        h.script("/api/v1/from", Reply::redirect(status, "https://api.test/api/v1/to"));
        let r = h.fetch(method, "/api/v1/from", body, Abort::none()).unwrap();
        assert_eq!(r.response.status, 200);
        let to = h.requests_to("/api/v1/to").pop().unwrap();
        assert_eq!(
            (to.method.as_str(), to.body.as_deref()),
            (expect_method, expect_body),
            "{status} {method}"
        );
    }
}

#[test]
fn a_cross_origin_redirect_is_returned_unfollowed() {
    let h = Harness::new();
    h.login();
    h.script("/api/v1/old", Reply::redirect(302, "https://evil.test/steal"));
    let r = h.get("/api/v1/old").unwrap();
    assert_eq!(r.response.status, 302);
    assert_eq!(r.response.location.as_deref(), Some("https://evil.test/steal"));
    assert!(
        h.requests().iter().all(|r| r.url.starts_with(HOST)),
        "the other origin never got a request"
    );
    // Scheme and port changes are other origins too.
    for location in [
        "http://api.test/api/v1/products",
        "https://api.test:8443/api/v1/products",
        "https://api.test.evil.test/x",
    ] {
        h.script("/api/v1/old", Reply::redirect(301, location));
        assert_eq!(h.get("/api/v1/old").unwrap().response.status, 301, "{location}");
    }
    assert!(h.requests().iter().all(|r| r.url.starts_with("https://api.test/")));
}

#[test]
fn a_redirect_loop_stops_and_returns_the_redirect() {
    let h = Harness::new();
    h.login();
    h.script_n("/api/v1/loop", 50, Reply::redirect(302, "https://api.test/api/v1/loop"));
    let r = h.get("/api/v1/loop").unwrap();
    assert_eq!(r.response.status, 302);
    assert_eq!(h.count("/api/v1/loop"), 21, "the request and 20 redirects");
}

#[test]
fn an_absolute_url_to_another_origin_is_origin_not_allowed_without_a_request() {
    let h = Harness::new();
    h.login();
    for url in [
        "https://evil.test/api",
        "http://api.test/api/v1/products",
        "https://api.test:444/api",
        "https://api.test.evil.test/api",
        "https://user:pw@api.test/api",
        "ftp://api.test/x",
    ] {
        let e = h.err(h.fetch("GET", url, None, Abort::none()));
        assert_eq!(
            (e.code(), e.name()),
            ("ORIGIN_NOT_ALLOWED", "OriginNotAllowedError"),
            "{url}"
        );
    }
    assert_eq!(h.total_requests(), 1, "only the login");
}

#[test]
fn allowed_origins_receive_the_token_and_may_be_redirected_to() {
    let h = Harness::with(|o| o.allowed_origins = vec!["https://files.test".into()]);
    h.login();
    let r = h
        .fetch("GET", "https://files.test/report.pdf", None, Abort::none())
        .unwrap();
    assert_eq!(r.response.status, 200);
    let files: Vec<_> = h
        .requests()
        .into_iter()
        .filter(|r| r.url.starts_with("https://files.test/"))
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].bearer.as_deref(), Some(at(1).as_str()));

    h.script("/api/v1/export", Reply::redirect(302, "https://files.test/export.csv"));
    assert_eq!(h.get("/api/v1/export").unwrap().response.status, 200);
    let last = h.requests().pop().unwrap();
    assert_eq!(
        (last.url.as_str(), last.bearer.as_deref()),
        ("https://files.test/export.csv", Some(at(1).as_str()))
    );
    assert_eq!(
        h.err(h.fetch("GET", "https://other.test/", None, Abort::none())).code(),
        "ORIGIN_NOT_ALLOWED"
    );
}

#[test]
fn relative_inputs_resolve_against_the_host_and_its_prefix() {
    let h = Harness::with(|o| o.host = Some("https://api.test/v2".into()));
    h.script(
        "/v2/auth/login",
        Reply::json(200, &{
            let now = h.now();
            h.server().issue(now).envelope()
        }),
    );
    h.run(h.session.login(Some(creds()))).unwrap();
    h.script("/v2/api/v1/products", Reply::json(200, "{}"));
    h.get("api/v1/products").unwrap();
    h.script("/v2/api/v1/products", Reply::json(200, "{}"));
    h.get("/api/v1/products?x=1").unwrap();
    let urls: Vec<_> = h.requests().into_iter().map(|r| r.url).collect();
    assert_eq!(
        urls,
        [
            "https://api.test/v2/auth/login",
            "https://api.test/v2/api/v1/products",
            "https://api.test/v2/api/v1/products?x=1"
        ]
    );
}

// ----- invalid auth responses ----------------------------------------------------------------

fn pair_json(access: &str, refresh: Option<&str>, access_exp: &str) -> String {
    let refresh = refresh
        .map(|r| format!(r#""refresh_token":"{r}","#))
        .unwrap_or_default();
    format!(
        r#"{{"success":true,"data":{{"access_token":"{access}",{refresh}"access_expires_at":"{access_exp}","refresh_expires_at":"2024-01-22T09:30:00Z","client_id":1}}}}"#
    )
}

#[test]
fn malformed_login_responses_are_invalid_response_and_not_retried() {
    for body in [
        "{not json",
        "<html>ok</html>",
        "",
        r#"{"success":false,"data":{}}"#,
        r#"{"success":true}"#,
        r#"{"success":true,"data":"token"}"#,
        &pair_json("a\r\nX-Evil: 1", Some("r1"), "2024-01-15T10:30:00Z"),
        &pair_json("", Some("r1"), "2024-01-15T10:30:00Z"),
        &pair_json("a b", Some("r1"), "2024-01-15T10:30:00Z"),
        &pair_json("at1", None, "2024-01-15T10:30:00Z"),
        &pair_json("at1", Some("r1"), "2024-01-15T10:30:00"),
        &pair_json("at1", Some("r1"), "2024-01-15"),
        &pair_json("at1", Some("r1"), "2024-01-15T09:00:00Z"), // already expired
    ] {
        let h = Harness::new();
        h.script("/auth/login", Reply::json(200, body));
        let e = h.err(h.run(h.session.login(Some(creds()))));
        assert_eq!(
            (e.code(), e.name(), e.retryable()),
            ("INVALID_RESPONSE", "InvalidResponseError", false),
            "{body}"
        );
        assert_eq!(h.count("/auth/login"), 1, "{body}");
        assert_eq!(h.info().state, Phase::Anonymous);
        assert_eq!(h.live_timers(), 0);
        assert!(!e.message().contains("X-Evil"), "{e}");
    }
}

#[test]
fn a_refresh_response_without_a_refresh_token_keeps_the_old_pair() {
    let h = Harness::with(|o| o.auto_refresh = Some(false));
    h.login();
    h.jump(10 * 60_000);
    h.script(
        "/auth/refresh",
        Reply::json(200, &pair_json("at.new", None, "2024-01-15T11:00:00Z")),
    );
    let e = h.err(h.refresh());
    assert_eq!(e.code(), "INVALID_RESPONSE");
    let info = h.info();
    assert_eq!(
        (info.state, info.access_expires_at),
        (Phase::Active, Some(EPOCH + HOUR))
    );
    assert_eq!(h.event_count("tokens"), 1);
    // The old access token is still the one used.
    h.get(PRODUCTS).unwrap();
    assert_eq!(h.requests_to(PRODUCTS)[0].bearer.as_deref(), Some(at(1).as_str()));
}

#[test]
fn a_refresh_response_with_a_cr_lf_token_keeps_the_old_pair() {
    let h = Harness::with(|o| o.auto_refresh = Some(false));
    h.login();
    h.script(
        "/auth/refresh",
        Reply::json(
            200,
            &pair_json("at\r\nInjected: yes", Some("rt.x"), "2024-01-15T11:00:00Z"),
        ),
    );
    assert_eq!(h.err(h.refresh()).code(), "INVALID_RESPONSE");
    assert_eq!(h.token().unwrap(), at(1));
}

#[test]
fn an_auth_response_over_64_kib_is_response_too_large() {
    let h = Harness::new();
    let mut big = h.server().issue(EPOCH).envelope().into_bytes();
    big.resize(64 * 1024 + 1, b' ');
    h.script("/auth/login", Reply::bytes(200, big));
    let e = h.err(h.run(h.session.login(Some(creds()))));
    assert_eq!(
        (e.code(), e.name(), e.status()),
        ("RESPONSE_TOO_LARGE", "ResponseTooLargeError", 200)
    );
    assert_eq!(h.count("/auth/login"), 1);
    // Exactly 64 KiB (valid JSON padded with spaces) is accepted.
    let mut fits = h.server().issue(EPOCH).envelope().into_bytes();
    fits.resize(64 * 1024, b' ');
    h.script("/auth/login", Reply::bytes(200, fits));
    assert_eq!(h.run(h.session.login(Some(creds()))).unwrap().state, Phase::Active);
}

#[test]
fn an_auth_response_with_an_absurd_timestamp_or_client_id_is_invalid() {
    for data in [
        r#"{"access_token":"a1","refresh_token":"r1","access_expires_at":"2024-13-01T00:00:00Z","refresh_expires_at":"2024-01-22T09:30:00Z"}"#,
        r#"{"access_token":"a1","refresh_token":"r1","access_expires_at":"2024-01-15T10:30:00Z","refresh_expires_at":"2024-01-22T09:30:00Z","client_id":"7"}"#,
        r#"{"access_token":1,"refresh_token":"r1","access_expires_at":"2024-01-15T10:30:00Z","refresh_expires_at":"2024-01-22T09:30:00Z"}"#,
    ] {
        let h = Harness::new();
        h.script(
            "/auth/login",
            Reply::json(200, &format!(r#"{{"success":true,"data":{data}}}"#)),
        );
        assert_eq!(
            h.err(h.run(h.session.login(Some(creds())))).code(),
            "INVALID_RESPONSE",
            "{data}"
        );
    }
    // Fractional seconds and other offsets are fine.
    let h = Harness::new();
    let data = r#"{"access_token":"a1","refresh_token":"r1","access_expires_at":"2024-01-15T11:30:00.250+01:00","refresh_expires_at":"2024-01-22T09:30:00Z","client_id":null}"#;
    h.script(
        "/auth/login",
        Reply::json(200, &format!(r#"{{"success":true,"data":{data}}}"#)),
    );
    let info = h.run(h.session.login(Some(creds()))).unwrap();
    assert_eq!(
        (info.access_expires_at, info.client_id),
        (Some(EPOCH + HOUR + 250), None)
    );
}

// ----- secrets -------------------------------------------------------------------------------

#[test]
fn server_messages_echoing_secrets_are_redacted() {
    let h = Harness::with(|o| o.retries = Some(0.0));
    // A login error that quotes the password.
    h.script(
        "/auth/login",
        Reply::error(
            400,
            "ValidationException",
            "VALIDATION_FAILURE",
            &format!("password {PASSWORD} is too weak"),
        ),
    );
    let e = h.err(h.run(h.session.login(Some(creds()))));
    assert_eq!(e.code(), "VALIDATION_FAILURE");
    assert!(e.message().contains("[redacted]"), "{e}");
    // A refresh error that quotes the refresh token, in its message and its name.
    h.login();
    h.script(
        "/auth/refresh",
        Reply::error(
            400,
            "ValidationException",
            "VALIDATION_FAILURE",
            &format!("token {} is malformed", rt(1)),
        ),
    );
    let e = h.err(h.refresh());
    assert!(e.message().contains("[redacted]"), "{e}");
    h.script("/auth/refresh", Reply::error(400, &rt(1), "X", "m"));
    let e = h.err(h.refresh());
    assert_eq!((e.code(), e.name()), ("SERVER_ERROR", "ServerError"));
    // A revoke error that quotes either token.
    h.script(
        "/auth/revoke",
        Reply::error(500, "E", "E", &format!("{} / {}", at(1), rt(1))),
    );
    let e = h.err(h.revoke());
    assert_eq!(e.message(), "[redacted] / [redacted]");
}

#[test]
fn nothing_printable_holds_a_secret_across_a_whole_session() {
    let h = Harness::with_storage(|o| {
        with_credentials(o);
        o.retries = Some(1.0);
    });
    let mut printed = Vec::new();
    let mut note = |s: String| printed.push(s);
    h.run(h.session.login(None)).unwrap();
    note(format!("{:?}", h.session.config()));
    note(format!("{:?}", h.session.info()));
    note(format!("{:?}", creds()));
    note(format!(
        "{:?}",
        Credentials {
            username: "u".into(),
            password: Password::new(PASSWORD)
        }
    ));
    let token = h.run(h.session.access_token(&mut Abort::none())).unwrap();
    note(format!("{token:?}"));
    // Failures of every kind, each carrying secrets in what the server sent back.
    h.script("/auth/refresh", Reply::status(503));
    h.script("/auth/refresh", Reply::json(200, &format!("{{{}", rt(1))));
    note(format!("{:?}", h.refresh()));
    h.script(
        "/auth/refresh",
        Reply::error(401, "UnauthorizedError", "UNAUTHORIZED", &format!("{} spent", rt(1))),
    );
    h.script(
        "/auth/login",
        Reply::error(
            401,
            "UnauthorizedError",
            "UNAUTHORIZED",
            &format!("bad password {PASSWORD}"),
        ),
    );
    note(format!("{:?}", h.refresh()));
    h.advance(2 * HOUR);
    h.script(PRODUCTS, Reply::unauthorized());
    note(format!("{:?}", h.get(PRODUCTS).map(|r| r.response.status)));
    note(format!(
        "{:?}",
        h.fetch("GET", &format!("https://evil.test/?t={}", at(1)), None, Abort::none())
            .map(|_| ())
    ));
    note(format!("{:?}", h.revoke()));
    note(format!("{:?}", h.session.info()));
    for e in h.events() {
        note(format!("{e:?}"));
    }
    printed.extend(h.everything_printed());
    assert!(printed.len() > 10);
    for text in &printed {
        assert_no_secret(text);
    }
    // The canaries were really in play.
    assert!(h
        .requests()
        .iter()
        .any(|r| r.body.as_deref().is_some_and(|b| b.contains(CANARY))));
}

#[test]
fn an_unparsable_url_is_refused_without_quoting_it() {
    let h = Harness::new();
    h.login();
    for url in [
        format!("ftp://api.test/x?token={}", at(1)),
        format!("https://api.test:99999/x?token={}", at(1)),
        format!("https://exa mple.test/?token={}", at(1)),
    ] {
        let e = h.err(h.fetch("GET", &url, None, Abort::none()));
        assert_eq!(e.code(), "ORIGIN_NOT_ALLOWED", "{url}");
        assert!(!e.message().contains("token="), "the URL's query is not repeated: {e}");
    }
    assert_eq!(h.total_requests(), 1);
}
