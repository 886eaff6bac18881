//! Where the token may go (origins, redirects), what an auth response must look like to be
//! believed, and that no secret reaches an error, an event or `info` (every [`Run`] also
//! checks everything it printed when it is dropped).
// Native only: the harness reads JSON with the core's native reader.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use auth_session::core::machine::{Endpoint, IoFailure, Need, Outcome};
use auth_session::core::{AuthError, Phase};
use common::*;

// ----- redirects and origins -----------------------------------------------------------------

#[test]
fn an_auth_endpoint_answering_a_redirect_is_redirect_blocked() {
    for status in [301, 302, 303, 307, 308, 0] {
        // 0: an opaque redirect (what a browser shows for redirect: "manual").
        let mut r = Run::new(config(|_| {}));
        let f = r.login(EPOCH);
        r.answer(EPOCH, reply(status, "").redirected());
        let e = r.failure(f);
        assert_eq!(
            (e.code(), e.name(), e.status(), e.retryable()),
            ("REDIRECT_BLOCKED", "RedirectBlockedError", status, false)
        );
        assert_eq!(r.sends().len(), 1, "not followed, not retried");
        assert_eq!(r.deadline(), None);
    }
}

#[test]
fn a_redirected_refresh_is_blocked_and_the_tokens_are_kept() {
    let mut r = Run::new(config(no_timer));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let f = wait(r.refresh(EPOCH));
    r.answer(EPOCH, reply(307, "").redirected());
    assert_eq!(r.failure(f).code(), "REDIRECT_BLOCKED");
    assert_eq!(r.m.info().state, Phase::Active);
    assert_eq!(r.token_now(EPOCH).unwrap(), at(1));
}

#[test]
fn only_the_hosts_origin_and_allowed_origins_may_receive_the_token() {
    let r = Run::new(config(|o| o.allowed_origins = vec!["https://files.test".into()]));
    assert_eq!(r.m.check_origin("https://api.test"), Ok(()));
    assert_eq!(r.m.check_origin("https://files.test"), Ok(()));
    for origin in [
        "https://evil.test",
        "http://api.test",
        "https://api.test:444",
        "https://api.test.evil.test",
        "https://files.test:8443",
        "null",
        "",
    ] {
        let e = r.m.check_origin(origin).unwrap_err();
        assert_eq!(
            (e.code(), e.name()),
            ("ORIGIN_NOT_ALLOWED", "OriginNotAllowedError"),
            "{origin}"
        );
    }
    // `URL#origin` never holds a control character; should a driver pass one, it is not echoed.
    let e = r.m.check_origin("https://evil.test\r\nX-Injected: 1").unwrap_err();
    assert!(!e.message().contains(['\r', '\n']), "{e}");
}

#[test]
fn relative_inputs_resolve_against_the_host_and_its_prefix() {
    let r = Run::new(config(|o| o.host = Some("https://api.test/v2".into())));
    assert_eq!(r.m.resolve("api/v1/products"), "https://api.test/v2/api/v1/products");
    assert_eq!(
        r.m.resolve("/api/v1/products?x=1"),
        "https://api.test/v2/api/v1/products?x=1"
    );
    assert_eq!(r.m.resolve("https://other.test/x"), "https://other.test/x");
    assert_eq!(r.m.config().login_url(), "https://api.test/v2/auth/login");
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
        "[]",
        r#"{"success":false,"data":{}}"#,
        r#"{"success":true}"#,
        r#"{"success":true,"data":"token"}"#,
        &pair_json(r"a\r\nX-Evil: 1", Some("r1"), "2024-01-15T10:30:00Z"),
        &pair_json("", Some("r1"), "2024-01-15T10:30:00Z"),
        &pair_json("a b", Some("r1"), "2024-01-15T10:30:00Z"),
        &pair_json("at1", None, "2024-01-15T10:30:00Z"),
        &pair_json("at1", Some("r1"), "2024-01-15T10:30:00"),
        &pair_json("at1", Some("r1"), "2024-01-15"),
        &pair_json("at1", Some("r1"), "2024-01-15T09:00:00Z"), // already expired
    ] {
        let mut r = Run::new(config(|_| {}));
        let f = r.login(EPOCH);
        r.answer(EPOCH, reply(200, body));
        let e = r.failure(f);
        assert_eq!(
            (e.code(), e.name(), e.retryable()),
            ("INVALID_RESPONSE", "InvalidResponseError", false),
            "{body}"
        );
        assert_eq!(r.count(Endpoint::Login), 1, "{body}");
        assert_eq!(r.m.info().state, Phase::Anonymous);
        assert_eq!(r.deadline(), None);
        assert!(!e.message().contains("X-Evil"), "{e}");
    }
}

#[test]
fn a_login_whose_refresh_token_has_already_expired_is_invalid_and_does_not_loop() {
    // Rewrite defect: such a pair used to be installed, found expired at once, and logged
    // in again for ever.
    let mut r = Run::new(config(with_credentials));
    let dead = Pair::with_ttl(1, EPOCH, HOUR, -SECOND);
    let f = wait_token(r.ask(EPOCH, Need::Strict));
    r.answer(EPOCH, ok(&dead));
    let e = r.failure(f);
    assert_eq!(e.code(), "INVALID_RESPONSE");
    assert_eq!(
        r.token(EPOCH, Need::Strict, waited(&r.settled(f)), 1),
        auth_session::core::machine::TokenStep::Rethrow
    );
    assert_eq!(r.m.info().state, Phase::Anonymous);
    assert_eq!(r.count(Endpoint::Login), 1);
    assert_eq!(r.deadline(), None, "nothing scheduled");

    // Tokens that are technically unexpired but die before they can be used: a caller
    // asks at most MAX_ROUNDS times, then gives up with INVALID_RESPONSE.
    let mut r = Run::new(config(with_credentials));
    let mut t = EPOCH;
    let mut waited_for = auth_session::core::machine::Waited::Nothing;
    let mut round = 0;
    let e = loop {
        match r.token(t, Need::Strict, waited_for, round) {
            auth_session::core::machine::TokenStep::Wait(f) => {
                r.answer(t, ok(&Pair::with_ttl(round + 1, t, 10, 20)));
                waited_for = waited(&r.settled(f));
                round += 1;
                t += 11; // the access token died on the way to the caller
            }
            auth_session::core::machine::TokenStep::Fail(e) => break e,
            other => panic!("{other:?}"),
        }
        assert!(round <= auth_session::core::machine::MAX_ROUNDS, "looping");
    };
    assert_eq!(e.code(), "INVALID_RESPONSE");
    assert_eq!(round, auth_session::core::machine::MAX_ROUNDS);
}

#[test]
fn a_refresh_response_without_a_refresh_token_keeps_the_old_pair() {
    let mut r = Run::new(config(no_timer));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let t = EPOCH + 10 * MINUTE;
    for body in [
        pair_json("at.new", None, "2024-01-15T11:00:00Z"),
        pair_json(r"at\r\nInjected: yes", Some("rt.x"), "2024-01-15T11:00:00Z"),
    ] {
        let f = wait(r.refresh(t));
        r.answer(t, reply(200, &body));
        assert_eq!(r.failure(f).code(), "INVALID_RESPONSE");
        let info = r.m.info();
        assert_eq!(
            (info.state, info.access_expires_at),
            (Phase::Active, Some(EPOCH + HOUR))
        );
        assert_eq!(r.token_now(t).unwrap(), at(1));
    }
    assert_eq!(r.event_count("tokens"), 1);
}

#[test]
fn a_refresh_answered_with_a_refresh_token_already_spent_is_invalid() {
    let mut r = Run::new(config(no_timer));
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let f = wait(r.refresh(EPOCH + 1));
    r.answer(EPOCH + 1, ok(&Pair::issued(2, EPOCH + 1)));
    assert_eq!(r.settled(f), Outcome::Done);
    let g = wait(r.refresh(EPOCH + 2));
    let replayed = Pair {
        access: "at.fresh".into(),
        ..Pair::issued(1, EPOCH + 2)
    };
    r.answer(EPOCH + 2, ok(&replayed));
    assert_eq!(r.failure(g).code(), "INVALID_RESPONSE");
    assert_eq!(r.token_now(EPOCH + 2).unwrap(), at(2));
}

#[test]
fn an_auth_response_over_the_cap_is_response_too_large() {
    let mut r = Run::new(config(|_| {}));
    let f = r.login(EPOCH);
    assert_eq!(r.open_send().max_bytes, 64 * 1024);
    r.answer(EPOCH, Err(IoFailure::TooLarge));
    let e = r.failure(f);
    assert_eq!(
        (e.code(), e.name(), e.retryable()),
        ("RESPONSE_TOO_LARGE", "ResponseTooLargeError", false)
    );
    assert_eq!(r.count(Endpoint::Login), 1);
}

#[test]
fn a_fetch_that_resolves_to_something_else_is_invalid_response_for_that_call_only() {
    let mut r = Run::new(config(|_| {}));
    let f = r.login(EPOCH);
    r.answer(EPOCH, Err(IoFailure::NotAResponse));
    assert_eq!(r.failure(f).code(), "INVALID_RESPONSE");
    assert_eq!(r.count(Endpoint::Login), 1);
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    assert_eq!(r.token_now(EPOCH).unwrap(), at(1), "the session goes on working");
}

#[test]
fn an_auth_response_with_an_absurd_timestamp_or_client_id_is_invalid() {
    for data in [
        r#"{"access_token":"a1","refresh_token":"r1","access_expires_at":"2024-13-01T00:00:00Z","refresh_expires_at":"2024-01-22T09:30:00Z"}"#,
        r#"{"access_token":"a1","refresh_token":"r1","access_expires_at":"2024-01-15T10:30:00Z","refresh_expires_at":"2024-01-22T09:30:00Z","client_id":"7"}"#,
        r#"{"access_token":"a1","refresh_token":"r1","access_expires_at":"2024-01-15T10:30:00Z","refresh_expires_at":"2024-01-22T09:30:00Z","client_id":1.5}"#,
        r#"{"access_token":1,"refresh_token":"r1","access_expires_at":"2024-01-15T10:30:00Z","refresh_expires_at":"2024-01-22T09:30:00Z"}"#,
    ] {
        let mut r = Run::new(config(|_| {}));
        let f = r.login(EPOCH);
        r.answer(EPOCH, reply(200, &format!(r#"{{"success":true,"data":{data}}}"#)));
        assert_eq!(r.failure(f).code(), "INVALID_RESPONSE", "{data}");
    }
    // Fractional seconds and other offsets are fine.
    let mut r = Run::new(config(|_| {}));
    let f = r.login(EPOCH);
    let data = r#"{"access_token":"a1","refresh_token":"r1","access_expires_at":"2024-01-15T11:30:00.250+01:00","refresh_expires_at":"2024-01-22T09:30:00Z","client_id":null}"#;
    r.answer(EPOCH, reply(200, &format!(r#"{{"success":true,"data":{data}}}"#)));
    assert_eq!(r.settled(f), Outcome::Done);
    let info = r.m.info();
    assert_eq!(
        (info.access_expires_at, info.client_id),
        (Some(EPOCH + HOUR + 250), None)
    );
}

// ----- secrets -------------------------------------------------------------------------------

/// Whether any 8 consecutive characters of `secret` appear in `text`.
fn leaks(text: &str, secret: &str) -> bool {
    let chars: Vec<char> = secret.chars().collect();
    chars
        .windows(8.min(chars.len()))
        .any(|w| text.contains(&w.iter().collect::<String>()))
}

fn shown(e: &AuthError) -> String {
    format!("{} | {} | {} | {e} | {e:?}", e.message(), e.name(), e.code())
}

#[test]
fn server_messages_echoing_secrets_are_redacted() {
    let mut r = Run::new(config(|o| o.retries = Some(0.0)));
    // A login error that quotes the password.
    let f = r.login(EPOCH);
    r.answer(
        EPOCH,
        error_envelope(
            400,
            "ValidationException",
            "VALIDATION_FAILURE",
            &format!("password {PASSWORD} is too weak"),
        ),
    );
    let e = r.failure(f);
    assert_eq!(
        (e.code(), e.message()),
        ("VALIDATION_FAILURE", "password [redacted] is too weak")
    );
    // A refresh error that quotes the refresh token, in its message and in its name.
    r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
    let f = wait(r.refresh(EPOCH));
    r.answer(
        EPOCH,
        error_envelope(
            400,
            "ValidationException",
            "VALIDATION_FAILURE",
            &format!("token {} is malformed", rt(1)),
        ),
    );
    assert_eq!(r.failure(f).message(), "token [redacted] is malformed");
    let f = wait(r.refresh(EPOCH));
    r.answer(EPOCH, error_envelope(400, &rt(1), "X", "m"));
    let e = r.failure(f);
    assert_eq!((e.code(), e.name()), ("SERVER_ERROR", "ServerError"));
    let f = wait(r.refresh(EPOCH));
    r.answer(EPOCH, error_envelope(400, "N", &format!("E_{}", at(1)), "m"));
    assert_eq!(r.failure(f).code(), "SERVER_ERROR");
    // A revoke error that quotes either token: they left the state when the revoke began.
    let f = wait(r.revoke(EPOCH));
    r.answer(EPOCH, error_envelope(500, "E", "E", &format!("{} / {}", at(1), rt(1))));
    assert_eq!(r.failure(f).message(), "[redacted] / [redacted]");
}

#[test]
fn a_secret_is_removed_from_the_whole_text_before_it_is_shortened() {
    // Rewrite defect: shortening first left a secret's prefix behind the cut.
    for filler in (0..=320).step_by(1) {
        let pad = "x".repeat(filler);
        let mut r = Run::new(config(|o| o.retries = Some(0.0)));
        let f = r.login(EPOCH);
        let text = format!("{pad}{PASSWORD} and more");
        r.answer(EPOCH, error_envelope(400, &text, &text, &text));
        let e = r.failure(f);
        assert!(!leaks(&shown(&e), PASSWORD), "filler {filler}: {}", shown(&e));
    }
    // The same for a token the session holds, in a refresh's error.
    for filler in [0, 50, 56, 60, 63, 64, 250, 290, 295, 299, 300] {
        let pad = "y".repeat(filler);
        let mut r = Run::new(config(|o| o.retries = Some(0.0)));
        r.logged_in(EPOCH, &Pair::issued(1, EPOCH));
        let f = wait(r.refresh(EPOCH));
        let text = format!("{pad}{}", rt(1));
        r.answer(EPOCH, error_envelope(400, &text, &text, &text));
        let e = r.failure(f);
        assert!(!leaks(&shown(&e), &rt(1)), "filler {filler}: {}", shown(&e));
    }
}

#[test]
fn secrets_shorter_than_four_characters_are_redacted_too() {
    for password in ["Zq9", "k7", "#"] {
        let mut r = Run::new(config(|o| o.retries = Some(0.0)));
        let f = r.login_with(EPOCH, Some(creds_with(password)));
        r.answer(
            EPOCH,
            error_envelope(
                401,
                &format!("Bad{password}"),
                "UNAUTHORIZED",
                &format!("password '{password}' is wrong"),
            ),
        );
        let e = r.failure(f);
        assert!(!e.message().contains(password), "{password}: {}", e.message());
        assert!(e.message().contains("[redacted]"), "{}", e.message());
        assert_eq!((e.name(), e.code()), ("ServerError", "SERVER_ERROR"), "{password}");
    }
}

#[test]
fn bidi_and_control_characters_are_stripped_from_what_the_server_says() {
    let controls: Vec<char> = ('\u{202A}'..='\u{202E}').chain('\u{2066}'..='\u{2069}').collect();
    let dirty: String = controls.iter().fold(String::from("bad\r\nInjected: 1\t"), |mut s, c| {
        s.push(*c);
        s.push('z');
        s
    });
    let mut r = Run::new(config(|o| o.retries = Some(0.0)));
    let f = r.login(EPOCH);
    r.answer(
        EPOCH,
        error_envelope(400, &format!("Name{dirty}"), &format!("CODE{dirty}"), &dirty),
    );
    let e = r.failure(f);
    for text in [e.message(), e.name(), e.code()] {
        assert!(!text.contains(controls.as_slice()), "{text:?}");
        assert!(!text.chars().any(char::is_control), "{text:?}");
    }
    assert!(e.message().starts_with("badInjected: 1"), "{}", e.message());

    // A secret split by an invisible character is still found.
    let mut r = Run::new(config(|o| o.retries = Some(0.0)));
    let f = r.login(EPOCH);
    let (a, b) = PASSWORD.split_at(6);
    r.answer(EPOCH, error_envelope(400, "N", "C", &format!("{a}\u{202E}{b}")));
    let e = r.failure(f);
    assert!(!leaks(&shown(&e), PASSWORD), "{}", shown(&e));
}
