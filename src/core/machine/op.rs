//! The auth operation: a login, refresh or revoke (at most one at a time, see
//! [`Machine::op`]) from its start to the end of its flight: its attempts and their
//! retries, what an auth answer means, the pair it installs, and what it leaves to the op
//! queued behind it.

#[allow(unused_imports)]
use crate::prelude::*;

use super::pending::Purpose;
use super::{
    AuthReply, AuthRequest, Endpoint, Event, FlightId, IoFailure, IoId, Log, Machine, Outcome, Output, Reason, State,
    Wire,
};
use crate::core::config::{Credentials, MAX_AUTH_RESPONSE_BYTES};
use crate::core::envelope::{self, read_auth_response, TokenPair};
use crate::core::error::{AuthError, ErrorCode};
use crate::core::json::Json;
use crate::core::oauth::{self, Grant, Signing};
use crate::core::retry::{self, backoff_ms, RetryAfter};
use crate::core::secret::RefreshToken;
use crate::core::timing::{clock_skew, retry_delay};

/// Who started an operation: a timer-driven refresh reports its failure as an `error`
/// event and retries later; a user call reports to its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Trigger {
    User,
    Timer,
}

#[derive(Clone, Debug)]
pub(super) enum OpKind {
    /// `relogin`: a re-login after a rejected refresh (the session is already `expired`).
    Login {
        creds: Credentials,
        relogin: bool,
        /// A login the session makes by itself (first use, or after its pair ended): with
        /// storage it looks for a pair another instance stored first, and with a lease it
        /// runs under it. An explicit `login()` is not quiet: it always logs in.
        quiet: bool,
    },
    Refresh {
        token: RefreshToken,
    },
    /// The pair being revoked left the state when the revoke began; `failure` is the first
    /// error to report, of the request or of the storage delete beside it
    /// ([`Purpose::Delete`]).
    Revoke {
        pair: Option<TokenPair>,
        bearer_ok: bool,
        failure: Option<AuthError>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stage {
    /// Not started: waits for the revoke before it (at most one auth request at a time).
    Queued,
    /// Its attempt or one of its storage calls is out: its entry in [`Machine::pending`]
    /// says which.
    Io,
    Backoff {
        until: i64,
    },
    /// Another instance holds the lease: look again at `until` for the pair it stores.
    Waiting {
        until: i64,
    },
    /// A revoke whose request is done, waiting for its storage delete.
    Finishing,
}

#[derive(Clone, Debug)]
pub(super) struct Op {
    pub(super) flight: FlightId,
    pub(super) kind: OpKind,
    pub(super) trigger: Trigger,
    pub(super) attempt: u32,
    pub(super) stage: Stage,
    /// The refresh lease this op holds (storage with a lease only), and until when.
    pub(super) lease: Option<(String, i64)>,
    /// Since when this op waits for another holder's lease, and how many rounds.
    pub(super) waiting: Option<(i64, u32)>,
    /// Started by `refresh()`: its callers want new tokens, not the ones they hold.
    pub(super) manual: bool,
    /// The API refused the held token (a 401): its callers cannot go on with it, so they
    /// are never released to it, and wait for another holder's pair at most `timeoutMs`.
    pub(super) unauthorized: bool,
    /// OAuth 2.0 discovery in progress for this op: 1 RFC 8414's document asked, 2 OpenID
    /// Connect's (after a 404); 0 none.
    pub(super) discovery: u8,
    /// OAuth 2.0: the server's `invalid_grant` that ended the grant this op sent, for the
    /// SESSION_EXPIRED it ends with (its status and words, redacted).
    pub(super) rejection: Option<Box<AuthError>>,
    /// OAuth 2.0: the server's time of the last answer, which `expires_in` counts from.
    pub(super) anchor: i64,
}

impl Op {
    /// A new op, not started yet.
    pub(super) fn new(flight: FlightId, kind: OpKind, trigger: Trigger) -> Op {
        Op {
            flight,
            kind,
            trigger,
            attempt: 0,
            stage: Stage::Queued,
            lease: None,
            waiting: None,
            manual: false,
            unauthorized: false,
            discovery: 0,
            rejection: None,
            anchor: 0,
        }
    }

    pub(super) fn endpoint(&self) -> Endpoint {
        if self.discovery > 0 {
            return Endpoint::Discovery;
        }
        match self.kind {
            OpKind::Login { .. } => Endpoint::Login,
            OpKind::Refresh { .. } => Endpoint::Refresh,
            OpKind::Revoke { .. } => Endpoint::Revoke,
        }
    }
}

/// What becomes of the op a handler was given. Handlers take the op out of its slot and
/// return it here; [`Machine::apply`] is the one place that puts it back or ends it.
#[must_use]
pub(super) enum Next {
    /// The op goes on, in the stage the handler left it in.
    Stay(Op),
    /// The op ends with this outcome; the op queued behind it, if any, starts.
    Done(Op, Outcome),
}

/// A revoke ends with the first error of its request or delete, if any.
pub(super) fn revoke_ended(op: Op) -> Next {
    let outcome = match &op.kind {
        OpKind::Revoke { failure: Some(e), .. } => Outcome::Failed(e.clone()),
        _ => Outcome::Done,
    };
    Next::Done(op, outcome)
}

impl Machine {
    // ----- operations -------------------------------------------------------------------------

    /// Puts the op back in its slot, or ends it.
    pub(super) fn apply(&mut self, now: i64, next: Next) {
        match next {
            Next::Stay(op) => self.op = Some(Box::new(op)),
            Next::Done(op, outcome) => self.finish(now, op, outcome),
        }
    }

    pub(super) fn start(&mut self, now: i64, kind: OpKind, trigger: Trigger) -> FlightId {
        let flight = self.id();
        let mut op = Op::new(flight, kind, trigger);
        if self.has_storage && matches!(op.kind, OpKind::Refresh { .. } | OpKind::Login { quiet: true, .. }) {
            // Look before you refresh: another instance sharing the storage may have
            // rotated the pair already; its newer pair is adopted, no token spent. Look
            // before a quiet login too: another instance (or this one before a restart)
            // may hold a valid pair, and N cold instances should make one login, not N.
            op.stage = self.read_stage(now, Purpose::Look);
            self.apply(now, Next::Stay(op));
            return flight;
        }
        self.send(now, &mut op);
        let next = if op.stage == Stage::Finishing && !self.deleting() {
            // A revoke with nothing to send and nothing to delete is done at once.
            revoke_ended(op)
        } else {
            Next::Stay(op)
        };
        self.apply(now, next);
        flight
    }

    /// Sends the op's next attempt.
    pub(super) fn send(&mut self, now: i64, op: &mut Op) {
        // A fresh `jti` for each client assertion.
        let jti = match self.config.oauth.as_deref().map(|o| o.auth) {
            Some(oauth::ClientAuth::PrivateKeyJwt) => self.nonce(),
            _ => String::new(),
        };
        let c = &self.config;
        if let OpKind::Revoke { pair: None, .. } = op.kind {
            // Nothing to tell the server: only the storage delete remains.
            op.stage = Stage::Finishing;
            return;
        }
        let (endpoint, url, wire, body, authorization, sign) = if let Some(o) = c.oauth.as_deref() {
            let Some(token_endpoint) = o.token_endpoint.clone() else {
                // The endpoints are not known yet: the issuer's metadata first.
                op.discovery = op.discovery.max(1);
                let url = oauth::metadata_url(o.issuer.as_deref().unwrap_or(""), op.discovery == 2);
                return self.dispatch(now, op, Endpoint::Discovery, url, Wire::Get, String::new(), None, None);
            };
            let (endpoint, url, body) = match &op.kind {
                OpKind::Login { creds, .. } => (
                    Endpoint::Login,
                    token_endpoint.clone(),
                    o.grant_body(&creds.username, creds.password.expose(), o.seed.as_ref()),
                ),
                OpKind::Refresh { token } => (Endpoint::Refresh, token_endpoint.clone(), oauth::refresh_body(token)),
                OpKind::Revoke { pair: Some(p), .. } if o.revocation_endpoint.is_some() => (
                    Endpoint::Revoke,
                    o.revocation_endpoint.clone().unwrap_or_default(),
                    oauth::revoke_body(p),
                ),
                OpKind::Revoke { .. } => {
                    // No revocation endpoint (or nothing to revoke): local state and storage only.
                    op.stage = Stage::Finishing;
                    return;
                }
            };
            let form = o.authenticate(body, &token_endpoint, (now + self.skew_ms) / 1000, &jti);
            (endpoint, url, Wire::Form, form.body, form.authorization, form.sign)
        } else {
            let (endpoint, url, body, bearer) = match &op.kind {
                OpKind::Login { creds, .. } => (
                    Endpoint::Login,
                    c.login_url(),
                    envelope::login_body(&creds.username, creds.password.expose()),
                    None,
                ),
                OpKind::Refresh { token } => (
                    Endpoint::Refresh,
                    c.refresh_url(),
                    envelope::refresh_token_body(token),
                    None,
                ),
                OpKind::Revoke {
                    pair: Some(p),
                    bearer_ok,
                    ..
                } => match &p.refresh_token {
                    Some(t) => (
                        Endpoint::Revoke,
                        c.revoke_url(),
                        envelope::refresh_token_body(t),
                        bearer_ok.then(|| crate::core::text::cat(&["Bearer ", p.access_token.expose()])),
                    ),
                    None => {
                        op.stage = Stage::Finishing;
                        return;
                    }
                },
                OpKind::Revoke { pair: None, .. } => {
                    // Nothing to tell the server: only the storage delete remains.
                    op.stage = Stage::Finishing;
                    return;
                }
            };
            (endpoint, url, Wire::Json, body, bearer, None)
        };
        self.dispatch(now, op, endpoint, url, wire, body, authorization, sign);
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &mut self,
        now: i64,
        op: &mut Op,
        endpoint: Endpoint,
        url: String,
        wire: Wire,
        body: String,
        authorization: Option<String>,
        sign: Option<Signing>,
    ) {
        let io = self.id();
        self.log(Log::Request {
            endpoint,
            attempt: op.attempt,
        });
        self.expect(now, io, Purpose::Attempt);
        op.stage = Stage::Io;
        self.push(Output::Send(AuthRequest {
            id: io,
            endpoint,
            url,
            wire,
            body,
            authorization,
            sign,
            max_bytes: MAX_AUTH_RESPONSE_BYTES,
        }));
    }

    /// Hands the op in progress, out of its slot, to `handler` (nothing without one) and
    /// applies the transition it returns.
    pub(super) fn with_op(&mut self, now: i64, handler: impl FnOnce(&mut Machine, Op) -> Next) {
        if let Some(op) = self.op.take() {
            let next = handler(self, *op);
            self.apply(now, next);
        }
    }

    /// Drops the op in progress: its I/O is cancelled (a revoke's delete too), its flight
    /// settled.
    pub(super) fn abandon_op(&mut self, outcome: Outcome) {
        if let Some(op) = self.op.take().map(|o| *o) {
            let mut keep_lease = false;
            for p in self.take_ops_io() {
                self.push(Output::Cancel(p.io));
                // A refresh already on the wire may have rotated the token at the server: its
                // lease is left to run out, so no other instance refreshes (with the spent token)
                // before the write that will never come is past.
                // So is the lease of an op whose new pair is being written: the write goes on (the
                // driver only stops waiting for it), and the others must not look before it lands.
                keep_lease |= match p.purpose {
                    Purpose::Attempt => match op.kind {
                        OpKind::Refresh { .. } => true,
                        // So may an exchange of the application's refresh token, which this
                        // session will never send again.
                        OpKind::Login { .. } if self.seed().is_some() => {
                            self.seed_used = true;
                            true
                        }
                        _ => false,
                    },
                    Purpose::Persist => true,
                    _ => false,
                };
            }
            if !keep_lease {
                self.release(&op);
            }
            self.push(Output::Settle(op.flight, outcome));
        }
    }

    /// Ends the op with `outcome` and starts what was queued behind it.
    pub(super) fn finish(&mut self, now: i64, op: Op, outcome: Outcome) {
        if let Outcome::Failed(e) = &outcome {
            if op.trigger == Trigger::Timer {
                self.timer_failed(now, e);
            } else if self.refresh_at.is_none() && e.retryable() && self.config.auto_refresh {
                // The timer fired while this caller's refresh was out and left it to it:
                // the caller has the error; the auto-refresh must still try again later.
                if let Some(h) = self.held() {
                    self.refresh_at = retry_delay(h.access_local, now).map(|d| now + d as i64);
                }
            }
            if !matches!(op.kind, OpKind::Revoke { .. }) {
                self.last_error = Some(Box::new(e.clone()));
            }
        } else if !matches!(op.kind, OpKind::Revoke { .. }) {
            self.last_error = None;
        }
        self.release(&op);
        self.push(Output::Settle(op.flight, outcome));
        if let Some(mut next) = self.queued.take().map(|o| *o) {
            self.epoch = self.epoch.wrapping_add(1);
            if self.has_storage && matches!(next.kind, OpKind::Login { quiet: true, .. }) {
                // A quiet login (a seeded one included) looks at the record first, and takes
                // the lease, whether it starts at once or after the revoke it waited for.
                next.stage = self.read_stage(now, Purpose::Look);
            } else {
                self.send(now, &mut next);
            }
            self.apply(now, Next::Stay(next));
        }
    }

    /// A timer-driven refresh failed: nobody awaits it, so it is an `error` event (the end
    /// of the session has its own), and a temporary failure is retried later.
    pub(super) fn timer_failed(&mut self, now: i64, e: &AuthError) {
        if !matches!(e.kind(), ErrorCode::SessionExpired | ErrorCode::Disposed) {
            self.emit(Event::Error(e.clone()));
        }
        if e.retryable() && self.config.auto_refresh {
            if let Some(h) = self.held() {
                self.refresh_at = retry_delay(h.access_local, now).map(|d| now + d as i64);
            }
        }
    }

    // ----- inputs: auth responses -------------------------------------------------------------

    /// The answer to [`Output::Send`] `io`. Answers to cancelled or unknown ids are ignored.
    pub fn handle_auth(&mut self, now: i64, io: IoId, reply: Result<AuthReply, IoFailure>) {
        if self.take_io(io, |p| p == Purpose::Attempt).is_none() {
            return;
        }
        self.with_op(now, |m, op| m.answered(now, op, reply));
    }

    /// The op's attempt got `reply`.
    fn answered(&mut self, now: i64, op: Op, reply: Result<AuthReply, IoFailure>) -> Next {
        if op.discovery > 0 {
            return self.discovered(now, op, reply);
        }
        let mut op = op;
        let (result, retry_after) = self.read_reply(now, &mut op, reply);
        let endpoint = op.endpoint();
        let error = match result {
            Ok(data) => {
                self.log(Log::Response {
                    endpoint,
                    status: self.reply_status,
                    code: None,
                });
                return self.succeeded(now, op, data);
            }
            Err(e) => e,
        };
        self.log(Log::Response {
            endpoint,
            status: error.status(),
            code: Some(error.code().to_owned()),
        });
        let rejected = match self.config.oauth.as_deref() {
            Some(_) => self.reply_rejected,
            None => error.is_unauthorized(),
        };
        if rejected && self.config.oauth.is_some() {
            op.rejection = Some(Box::new(error.clone()));
        }
        if let (OpKind::Refresh { .. }, true) = (&op.kind, rejected) {
            return self.refresh_rejected(now, op);
        }
        if let (OpKind::Login { .. }, true, Some(seed)) = (&op.kind, rejected, self.seed()) {
            // The application's refresh token is dead (spent or revoked): it is never sent
            // again, and the session ends as after a rejected refresh.
            self.mark_spent(&seed);
            return self.session_over(now, op);
        }
        self.attempt_failed(now, op, error, retry_after.as_deref())
    }

    /// A client-made message about the op's request: `POST /auth/refresh: <what>` (the path
    /// as configured; never a query or a secret).
    pub(super) fn about(&self, op: &Op, what: &str) -> String {
        let endpoint = match op.endpoint() {
            Endpoint::Login => 0,
            Endpoint::Refresh => 1,
            Endpoint::Revoke => 2,
            Endpoint::Discovery => return crate::core::text::cat(&["the authorization server metadata: ", what]),
        };
        let path = match self.config.oauth.as_deref() {
            Some(o) if endpoint == 2 => o.revocation_endpoint.as_deref().unwrap_or(""),
            Some(o) => o.token_endpoint.as_deref().unwrap_or(""),
            None => self.config.auth_path(endpoint),
        };
        crate::core::text::cat(&["POST ", path, ": ", what])
    }

    /// Reads an auth reply into the envelope's `data` or an error, redacted.
    pub(super) fn read_reply(
        &mut self,
        now: i64,
        op: &mut Op,
        reply: Result<AuthReply, IoFailure>,
    ) -> (Result<Json, AuthError>, Option<String>) {
        self.reply_status = 0;
        self.reply_rejected = false;
        let reply = match reply {
            Ok(r) => r,
            Err(IoFailure::Network(cause)) => {
                let e = AuthError::new(ErrorCode::Network, self.about(op, "no answer from the server"));
                return (Err(e.with_cause(cause)), None);
            }
            Err(IoFailure::Unsigned(cause)) => {
                // The key is wrong for the job: no retry mends it.
                let e = AuthError::config("oauth.privateKey could not sign the client assertion");
                return (Err(e.with_cause(cause)), None);
            }
            Err(IoFailure::NotAResponse) => {
                return (
                    Err(AuthError::invalid_response(
                        self.about(op, "fetch did not resolve to a Response"),
                    )),
                    None,
                )
            }
            Err(IoFailure::TooLarge) => {
                return (
                    Err(AuthError::new(
                        ErrorCode::ResponseTooLarge,
                        self.about(op, "the response is larger than an auth response may be (64 KiB)"),
                    )),
                    None,
                )
            }
        };
        if reply.redirected {
            let e = AuthError::new(
                ErrorCode::RedirectBlocked,
                "an auth endpoint answered with a redirect; it was not followed",
            )
            .with_status(reply.status);
            return (Err(e), None);
        }
        // OAuth 2.0's `expires_in` counts from the answer: its `Date` when sane (whole
        // seconds, so never later than the server's instant), else our clock corrected by
        // the skew known so far.
        op.anchor = now + self.skew_ms;
        if let Some(skew) = clock_skew(reply.date.as_deref(), now) {
            self.skew_ms = skew;
            op.anchor = reply
                .date
                .as_deref()
                .and_then(|d| crate::core::http_date::parse_http_date(d.trim()))
                .unwrap_or(now + skew);
        }
        // A bad token pair is judged later; it keeps the status it came with (and the
        // logger shows it).
        self.reply_status = reply.status;
        let revoke = matches!(op.kind, OpKind::Revoke { .. });
        if revoke && (200..300).contains(&reply.status) {
            // RFC 7009: a 2xx is success whatever the body says.
            return (Ok(Json::Null), None);
        }
        // `Retry-After` counts on a 429 or 5xx only (RFC 9110: a wait for a busy server).
        let mut reply = reply;
        if !(reply.status == 429 || (500..600).contains(&reply.status)) {
            reply.retry_after = None;
        }
        let secrets = self.secrets_with(Some(op));
        if self.config.oauth.is_some() {
            if let Some((e, rejected)) = oauth::token_error(reply.status, &reply.body, &secrets) {
                self.reply_rejected = rejected;
                return (Err(e), reply.retry_after);
            }
            if !(200..300).contains(&reply.status) {
                return (Err(AuthError::from_status(reply.status)), reply.retry_after);
            }
            // Read as a token response by `succeeded`.
            return match reply.body {
                crate::core::envelope::AuthBody::Json(doc) => (Ok(doc), None),
                _ => (
                    Err(AuthError::invalid_response("the token response is not JSON").with_status(reply.status)),
                    None,
                ),
            };
        }
        let result = read_auth_response(reply.status, &reply.body, &secrets);
        (result, reply.retry_after)
    }

    /// The answer to a metadata request: the endpoints are kept for the session's life and
    /// the op goes on to its own request; a 404 from RFC 8414's location tries OpenID
    /// Connect's.
    fn discovered(&mut self, now: i64, mut op: Op, reply: Result<AuthReply, IoFailure>) -> Next {
        let (result, retry_after) = match reply {
            Ok(r) if !r.redirected && r.status == 404 && op.discovery == 1 => {
                op.discovery = 2;
                self.send(now, &mut op);
                return Next::Stay(op);
            }
            Ok(r) if !r.redirected && (200..300).contains(&r.status) => {
                let allow_http = self.config.allow_insecure_http;
                let url_ok = |u: &str| {
                    crate::core::url::parse_absolute(u)
                        .is_ok_and(|p| p.origin.is_https() || p.origin.is_loopback() || allow_http)
                };
                let issuer = self
                    .config
                    .oauth
                    .as_deref()
                    .and_then(|o| o.issuer.clone())
                    .unwrap_or_default();
                (
                    oauth::read_metadata(&issuer, &r.body, url_ok).map_err(|e| e.with_status(r.status)),
                    None,
                )
            }
            other => {
                let (result, retry_after) = self.read_reply(now, &mut op, other);
                (
                    result.and(Err(AuthError::invalid_response("the metadata request failed"))),
                    retry_after,
                )
            }
        };
        match result {
            Ok((token, revocation)) => {
                if let Some(o) = self.config.oauth.as_deref_mut() {
                    o.token_endpoint = Some(token);
                    o.revocation_endpoint = o.revocation_endpoint.take().or(revocation);
                }
                op.discovery = 0;
                self.send(now, &mut op);
                if op.stage == Stage::Finishing && !self.deleting() {
                    return revoke_ended(op);
                }
                Next::Stay(op)
            }
            Err(e) => {
                self.log(Log::Response {
                    endpoint: Endpoint::Discovery,
                    status: e.status(),
                    code: Some(e.code().to_owned()),
                });
                self.attempt_failed(now, op, e, retry_after.as_deref())
            }
        }
    }

    pub(super) fn attempt_failed(&mut self, now: i64, mut op: Op, error: AuthError, retry_after: Option<&str>) -> Next {
        if error.retryable() && op.attempt < self.config.retries {
            let delay = match retry::retry_after(retry_after, now, self.config.max_retry_after_ms) {
                RetryAfter::Backoff => Some(backoff_ms(op.attempt, self.random())),
                RetryAfter::Wait(ms) => Some(ms),
                RetryAfter::TooLong(_) => None,
            };
            if let Some(delay) = delay {
                self.log(Log::Retry {
                    endpoint: op.endpoint(),
                    attempt: op.attempt + 1,
                    delay_ms: delay,
                    code: error.code().to_owned(),
                });
                op.attempt += 1;
                op.stage = Stage::Backoff {
                    until: now + delay as i64,
                };
                return Next::Stay(op);
            }
        }
        let error = match retry::retry_after(retry_after, now, self.config.max_retry_after_ms) {
            RetryAfter::TooLong(ms) if error.retryable() => retry::too_long(ms, error.status()),
            _ => error,
        };
        let waited = retry_after.and_then(|h| crate::core::http_date::parse_retry_after(h, now));
        self.op_failed(op, error.with_retry_after_ms(waited))
    }

    /// The op failed for good. A failed re-login ends the session (one `expired` event);
    /// a failed revoke has cleared local state already.
    pub(super) fn op_failed(&mut self, op: Op, error: AuthError) -> Next {
        match &op.kind {
            OpKind::Login { relogin: true, .. } => self.report_expired(),
            OpKind::Revoke { .. } if self.deleting() => {
                // The storage delete is still out: finish when it answers.
                let mut op = op;
                if let OpKind::Revoke { failure, .. } = &mut op.kind {
                    failure.get_or_insert(error);
                }
                op.stage = Stage::Finishing;
                return Next::Stay(op);
            }
            _ => {}
        }
        Next::Done(op, Outcome::Failed(error))
    }

    pub(super) fn succeeded(&mut self, now: i64, mut op: Op, data: Json) -> Next {
        let reason = match &op.kind {
            OpKind::Revoke { .. } => return self.revoke_sent(op),
            OpKind::Login { .. } => Reason::Login,
            OpKind::Refresh { .. } => Reason::Refresh,
        };
        let pair = match self.config.oauth.as_deref() {
            None => envelope::parse_token_pair(&data),
            Some(o) => {
                let body = envelope::AuthBody::Json(data);
                oauth::read_token_response(self.reply_status, &body, op.anchor).map(|mut p| {
                    // No new refresh token: the one sent stays valid (RFC 6749 §6).
                    let sent = match &op.kind {
                        OpKind::Refresh { token } => Some(token.clone()),
                        OpKind::Login { .. } if o.grant == Grant::RefreshToken => o.seed.clone(),
                        _ => None,
                    };
                    if p.refresh_token.is_none() && sent.is_some() {
                        p.refresh_token = sent;
                        p.refresh_expires_at = self.held().map_or(oauth::NEVER, |h| h.pair.refresh_expires_at);
                    }
                    p
                })
            }
        }
        .and_then(|p| self.check_fresh(now, p))
        .map_err(|e| e.with_status(self.reply_status));
        let pair = match pair {
            Ok(p) => p,
            Err(e) => return self.op_failed(op, e),
        };
        // The token sent is spent, unless the answer kept it.
        let sent = match &op.kind {
            OpKind::Refresh { token } => Some(token.clone()),
            OpKind::Login { .. } => self.seed(),
            OpKind::Revoke { .. } => None,
        };
        if let Some(t) = sent.filter(|t| pair.refresh_token.as_ref() != Some(t)) {
            self.mark_spent(&t);
        }
        let account = match &op.kind {
            OpKind::Refresh { .. } => self.held().and_then(|h| h.account.clone()),
            OpKind::Login { creds, .. } => Some(self.config.account_of(&creds.username)),
            OpKind::Revoke { .. } => None,
        };
        let version = self.seen_version.max(self.held().map_or(0, |h| h.version)) + 1;
        self.install(now, pair, reason, version, account);
        if !self.has_storage {
            return Next::Done(op, Outcome::Done);
        }
        if reason == Reason::Login && op.lease.is_none() {
            // A login did not look first: read the record's version so ours is stored as
            // the newer one. (A login under the lease looked while holding it: nobody has
            // written since, and its write must fit in the lease.)
            op.stage = self.read_stage(now, Purpose::Version);
            Next::Stay(op)
        } else {
            self.persist(now, op)
        }
    }

    /// A pair fresh from the server must be usable: unexpired on both tokens (judged on the
    /// server's clock) and not a refresh token we spent.
    pub(super) fn check_fresh(&self, now: i64, pair: TokenPair) -> Result<TokenPair, AuthError> {
        if pair.access_expires_at - self.skew_ms <= now {
            return Err(AuthError::invalid_response(
                "the server issued an access token that has already expired",
            ));
        }
        if pair.refresh_expires_at - self.skew_ms <= now {
            return Err(AuthError::invalid_response(
                "the server issued a refresh token that has already expired",
            ));
        }
        if self.spent_pair(&pair) {
            return Err(AuthError::invalid_response(
                "the server issued a refresh token that was already spent",
            ));
        }
        Ok(pair)
    }

    /// No newer pair anywhere: `expired`, then a re-login when credentials allow.
    pub(super) fn session_over(&mut self, now: i64, mut op: Op) -> Next {
        // A call may have found the refresh token expired while this op was out: that
        // already ended the session and reported it; the end is reported once.
        let reported = matches!(self.state, State::Expired) && self.expiry_reported;
        self.state = State::Expired;
        self.refresh_at = None;
        self.epoch = self.epoch.wrapping_add(1);
        match self.relogin_credentials() {
            Some(creds) => {
                // The record was looked at already (the adoption after the rejection).
                op.kind = OpKind::Login {
                    creds,
                    relogin: !reported,
                    quiet: false,
                };
                op.attempt = 0;
                self.send(now, &mut op);
                Next::Stay(op)
            }
            None => {
                if !reported {
                    self.report_expired()
                }
                let e = match op.rejection.take() {
                    // OAuth 2.0: the server's invalid_grant, its status and words kept.
                    Some(r) => {
                        AuthError::new(ErrorCode::SessionExpired, r.message().to_owned()).with_status(r.status())
                    }
                    None => AuthError::new(
                        ErrorCode::SessionExpired,
                        "the refresh token was rejected; the session has ended",
                    )
                    .with_status(401),
                };
                Next::Done(op, Outcome::Failed(e))
            }
        }
    }

    /// The revoke request is done; the op ends once its storage delete has too.
    pub(super) fn revoke_sent(&mut self, mut op: Op) -> Next {
        if self.deleting() {
            op.stage = Stage::Finishing;
            return Next::Stay(op);
        }
        revoke_ended(op)
    }
}
