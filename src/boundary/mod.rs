//! The boundary between the machine and JavaScript: one entry point, [`Boundary::step`],
//! taking one encoded input and giving one encoded output, and in the wasm two raw exports
//! around it (`io` and `step`, below) and no imports at all.
//!
//! Why not a `#[wasm_bindgen]` class: every exported method cost about 320 B of wasm and
//! 75 B of glue, and on Node 20 each distinct multi-value signature and import signature
//! adds to the module's compile time (0.2.x: 45 exports, 23 imports, 10 ms of start-up).
//! One entry point with single-value results compiles in a fraction of a millisecond, and
//! the decoding of inputs and encoding of outputs is plain Rust that `cargo test` runs
//! natively (tests/boundary.rs).
//!
//! An input is an opcode (`Op`), a session handle, then the opcode's fields (see
//! [`wire`]). The output is the records of every output the machine produced (each
//! performed by a method of the JavaScript driver: `send`, `cancel`, `storage`, `settle`,
//! `wake`, `event`, `arm`, `log`), then one result record (`Ret`). The JavaScript side is
//! `pkg-template/auth_session.js`; both hold the same numbering, written once here.
//!
//! No decision is made here: the boundary converts, and the machine decides. What needs no
//! decision stays in JavaScript (argument types, `JSON.parse`, `URL`).

#[allow(unused_imports)]
use crate::prelude::*;

mod tree;
pub mod wire;

use crate::core::config::{OAuthOptions, Options};
use crate::core::envelope::{ApiBody, AuthBody};
use crate::core::machine::{
    ApiFailure, ApiStep, AuthReply, Behind, BodyFailure, Endpoint, Event, IoFailure, Keep, Log, Machine, Need, Outcome,
    Output, Persistence, SessionInfo, Step, StorageOp, StorageReply, TokenStep, Waited, Wake, Want,
};
use crate::core::secret::Password;
use crate::core::{AuthError, Cause, Credentials};
use wire::{Reader, Writer};

/// The inputs. The numbers are the wire's; `auth_session.js` has the same list.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    New = 0,
    Free,
    Login,
    Refresh,
    Revoke,
    Restore,
    Rejoin,
    Dispose,
    Account,
    SetLogging,
    Schedule,
    Idle,
    Disposed,
    Result,
    Info,
    Token,
    TokenReplacing,
    TokenAfter401,
    TokenText,
    AuthReply,
    AuthFailed,
    StorageReply,
    Timeout,
    Resolve,
    CheckOrigin,
    MaxResponseBytes,
    ApiOpen,
    ApiToken,
    ApiResponse,
    ApiLocation,
    ApiFailed,
    ApiBody,
    ApiAbort,
    ApiClose,
}

const OPS: [Op; 34] = [
    Op::New,
    Op::Free,
    Op::Login,
    Op::Refresh,
    Op::Revoke,
    Op::Restore,
    Op::Rejoin,
    Op::Dispose,
    Op::Account,
    Op::SetLogging,
    Op::Schedule,
    Op::Idle,
    Op::Disposed,
    Op::Result,
    Op::Info,
    Op::Token,
    Op::TokenReplacing,
    Op::TokenAfter401,
    Op::TokenText,
    Op::AuthReply,
    Op::AuthFailed,
    Op::StorageReply,
    Op::Timeout,
    Op::Resolve,
    Op::CheckOrigin,
    Op::MaxResponseBytes,
    Op::ApiOpen,
    Op::ApiToken,
    Op::ApiResponse,
    Op::ApiLocation,
    Op::ApiFailed,
    Op::ApiBody,
    Op::ApiAbort,
    Op::ApiClose,
];

/// The output records: one per driver call, in the order the machine produced them.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rec {
    /// io u32, endpoint u8 (0 login, 1 refresh, 2 revoke), url, body, bearer (opt), max bytes u32.
    Send = 1,
    /// io u32.
    Cancel,
    /// op u8 (0 get, 1 put, 2 delete, 3 acquire, 4 release), io u32, key, value (opt), version f64.
    Storage,
    /// flight u32, outcome u8 (0 done, 1 nothing, 2 failed + error, 3 again).
    Settle,
    /// call u32, kind u8 (0 abandon the attempt, 1 send again, 2 fail + error).
    Wake,
    /// kind u8 (0 tokens + info + reason, 1 expired + info, 2 revoked + info, 3 error + error).
    Event,
    /// at f64 (-1: none), keep u8.
    Arm,
    /// event u8 (0 refresh, 1 login, 2 request, 3 response, 4 retry, 5 redirect), endpoint u8
    /// (0 login, 1 refresh, 2 revoke, 3 api, 255 none), attempt/status/delay as opt f64,
    /// code (opt), trigger (opt), followed u8 (0 none, 1 false, 2 true).
    Log,
}

/// The result record that ends every output.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ret {
    /// `undefined`.
    Nothing = 16,
    /// f64.
    Number,
    /// opt string.
    Text,
    /// u8.
    Flag,
    /// an info.
    Info,
    /// an error: the driver throws it.
    Error,
    /// value f64 (see `token`), background flight u32.
    Token,
    /// skew ms, due at, retry at (f64; -1: none).
    Schedule,
    /// The input was not one this encoding makes (a bug of the JavaScript side).
    Malformed,
}

/// The state machine of one `AuthSession`, as the boundary holds it.
struct Session {
    machine: Machine,
    /// The deadline last handed to the driver's `arm`, so the timer is re-armed only on a
    /// change.
    armed: Option<(i64, Keep)>,
}

/// Every session of one wasm instance, and the buffers of the one entry point.
#[derive(Default)]
pub struct Boundary {
    sessions: Vec<Option<Box<Session>>>,
    free: Vec<u32>,
    /// Where the JavaScript side writes an input (see `io`).
    pub input: Vec<u8>,
    out: Writer,
}

impl Boundary {
    /// Runs one input; returns the output (records, then one result record).
    pub fn step(&mut self, input: &[u8]) -> &[u8] {
        self.run_framed(input);
        &self.out.bytes[4..]
    }

    /// The output with its byte length (u32) in front, as the wasm export hands it over.
    fn run_framed(&mut self, input: &[u8]) {
        self.out.bytes.clear();
        self.out.u32(0);
        if self.run(&mut Reader::new(input)).is_none() {
            self.out.bytes.truncate(4);
            self.out.u8(Ret::Malformed as u8);
        }
        let n = (self.out.bytes.len() - 4) as u32;
        self.out.bytes[..4].copy_from_slice(&n.to_le_bytes());
    }

    /// Runs the input buffer's first `len` bytes; returns the framed output.
    pub fn step_input(&mut self, len: usize) -> &[u8] {
        let input = core::mem::take(&mut self.input);
        let n = len.min(input.len());
        self.run_framed(&input[..n]);
        self.input = input;
        &self.out.bytes
    }

    /// The number of sessions alive (not freed).
    pub fn sessions(&self) -> usize {
        self.sessions.len() - self.free.len()
    }

    fn run(&mut self, r: &mut Reader) -> Option<()> {
        let op = *OPS.get(r.u8()? as usize)?;
        let handle = r.u32()?;
        if op == Op::New {
            return self.create(r);
        }
        if op == Op::Free {
            let slot = self.sessions.get_mut((handle as usize).checked_sub(1)?)?;
            slot.take()?;
            self.free.push(handle);
            self.out.u8(Ret::Nothing as u8);
            return Some(());
        }
        let Boundary { sessions, out, .. } = self;
        let session = sessions.get_mut((handle as usize).checked_sub(1)?)?.as_deref_mut()?;
        session.input(op, r, out)
    }

    #[inline(never)]
    fn create(&mut self, r: &mut Reader) -> Option<()> {
        let host = r.opt_str()?;
        let username = r.opt_str()?;
        let password = r.opt_str()?;
        let refresh_margin_seconds = r.opt_f64()?;
        let timeout_ms = r.opt_f64()?;
        let retries = r.opt_f64()?;
        let max_retry_after_seconds = r.opt_f64()?;
        let auto_refresh = r.opt_bool()?;
        let mut path = || -> Option<Option<String>> { Some(r.opt_str()?.filter(|p| !p.is_empty())) };
        let (login_path, refresh_path, revoke_path) = (path()?, path()?, path()?);
        let storage_key = r.opt_str()?;
        let n = r.u32()?;
        let mut allowed_origins = Vec::new();
        for _ in 0..n {
            allowed_origins.push(r.string()?);
        }
        let allow_insecure_http = r.opt_bool()?;
        let max_response_bytes = r.opt_f64()?;
        let lease_ms = r.opt_f64()?;
        let label = r.opt_str()?;
        let persistence = match r.u8()? {
            0 => Persistence::MemoryOnly,
            1 => Persistence::Storage,
            _ => Persistence::StorageWithLease,
        };
        let seed = r.f64()?;
        let oauth = match r.u8()? {
            0 => None,
            _ => {
                // The `oauth` option's strings, in the glue's order: OAUTH_OPTIONS, then
                // OAUTH_KEY (what the driver read of the private key, and its id).
                let mut f: [Option<String>; 16] = Default::default();
                for v in &mut f {
                    *v = r.opt_str()?;
                }
                let mut resources = Vec::new();
                for _ in 0..r.u32()? {
                    resources.push(r.string()?);
                }
                let [issuer, token_endpoint, revocation_endpoint, client_id, client_secret, client_auth, basic_encoding, grant, refresh_token, scope, audience, key_type, key_curve, key_hash, key_alg, kid] =
                    f;
                Some(OAuthOptions {
                    issuer,
                    token_endpoint,
                    revocation_endpoint,
                    client_id,
                    client_secret: client_secret.map(Password::new),
                    client_auth,
                    basic_encoding,
                    key_type,
                    key_curve,
                    key_hash,
                    key_alg,
                    kid,
                    grant,
                    refresh_token: refresh_token.map(Password::new),
                    scope,
                    audience,
                    resources,
                })
            }
        };
        let oauth_api = r.opt_bool()?;
        let options = Options {
            oauth_api,
            oauth,
            host,
            credentials: username.zip(password).map(|(u, p)| (u, Password::new(p))),
            refresh_margin_seconds,
            auto_refresh,
            timeout_ms,
            retries,
            max_retry_after_seconds,
            login_path,
            refresh_path,
            revoke_path,
            storage_key,
            allowed_origins,
            allow_insecure_http,
            max_response_bytes,
            lease_ms,
            label,
        };
        match options.validate() {
            Err(e) => error_ret(&mut self.out, &e),
            Ok(config) => {
                let session = Box::new(Session {
                    machine: Machine::new(config, persistence, (seed * 9_007_199_254_740_991.0) as u64),
                    armed: None,
                });
                let handle = match self.free.pop() {
                    Some(h) => {
                        self.sessions[h as usize - 1] = Some(session);
                        h
                    }
                    None => {
                        self.sessions.push(Some(session));
                        self.sessions.len() as u32
                    }
                };
                self.out.u8(Ret::Number as u8);
                self.out.f64(handle as f64);
            }
        }
        Some(())
    }
}

impl Session {
    /// Each input of any size is a function of its own (`#[inline(never)]`): the engine
    /// compiles a wasm function on its first call, so the constructor's first step compiles
    /// the dispatch and `create`, not every input's code inlined into one 21 KB function
    /// (2 ms of Node 20's start-up when it was one).
    fn input(&mut self, op: Op, r: &mut Reader, w: &mut Writer) -> Option<()> {
        let m = &mut self.machine;
        match op {
            Op::New | Op::Free => return None,
            Op::Login => self.op_login(r, w)?,
            Op::Refresh | Op::Revoke | Op::Restore => self.op_command(op, r, w)?,
            Op::Rejoin => {
                let step = m.rejoin();
                self.step(w, step);
            }
            Op::Dispose => {
                m.dispose();
                self.drain(w);
                w.u8(Ret::Nothing as u8);
            }
            Op::Account => text_ret(w, m.config().account.as_deref()),
            Op::SetLogging => self.op_set_logging(r, w)?,
            Op::Schedule => self.op_schedule(r, w)?,
            Op::Idle => flag_ret(w, m.is_idle()),
            Op::Disposed => flag_ret(w, m.is_disposed()),
            Op::Result => match m.result() {
                Ok(i) => {
                    w.u8(Ret::Info as u8);
                    info(w, &i);
                }
                Err(e) => error_ret(w, &e),
            },
            Op::Info => {
                w.u8(Ret::Info as u8);
                info(w, &m.info());
            }
            Op::Token => self.op_token(r, w)?,
            Op::TokenReplacing => self.op_token_replacing(r, w)?,
            Op::TokenAfter401 => self.op_token_after_401(r, w)?,
            // The held pair's access token: the driver asks only when the serial a token
            // step gave is not the one it holds, so the text crosses once per pair.
            Op::TokenText => text_ret(w, m.access_token().map(|t| t.expose())),
            Op::AuthReply => self.op_auth_reply(r, w)?,
            Op::AuthFailed => self.op_auth_failed(r, w)?,
            Op::StorageReply => self.op_storage_reply(r, w)?,
            Op::Timeout => self.op_timeout(r, w)?,
            Op::Resolve => self.op_resolve(r, w)?,
            Op::CheckOrigin => match m.check_origin(r.str()?) {
                Ok(()) => w.u8(Ret::Nothing as u8),
                Err(e) => error_ret(w, &e),
            },
            Op::MaxResponseBytes => number_ret(w, m.config().max_response_bytes as f64),
            Op::ApiOpen => self.op_api_open(r, w)?,
            Op::ApiToken => self.op_api_token(r, w)?,
            Op::ApiResponse => self.op_api_response(r, w)?,
            Op::ApiLocation => self.op_api_location(r, w)?,
            Op::ApiFailed => self.op_api_failed(r, w)?,
            Op::ApiBody => self.op_api_body(r, w)?,
            Op::ApiAbort => self.op_api_abort(r, w)?,
            Op::ApiClose => self.op_api_close(r, w)?,
        }
        Some(())
    }

    #[inline(never)]
    fn op_login(&mut self, r: &mut Reader, w: &mut Writer) -> Option<()> {
        let m = &mut self.machine;
        let now = r.now()?;
        let creds = r.opt_str()?.zip(r.opt_str()?).map(|(username, p)| Credentials {
            username,
            password: Password::new(p),
        });
        if let Some(c) = &creds {
            if c.username.is_empty() || c.password.expose().is_empty() {
                error_ret(w, &AuthError::config("login() needs a non-empty username and password"));
                return Some(());
            }
        }
        let step = m.login(now, creds);
        self.step(w, step);
        Some(())
    }

    /// `refresh()`, `revoke()` and `restore()`: a user command with only `now`.
    #[inline(never)]
    fn op_command(&mut self, op: Op, r: &mut Reader, w: &mut Writer) -> Option<()> {
        let now = r.now()?;
        let m = &mut self.machine;
        let step = match op {
            Op::Refresh => m.refresh(now),
            Op::Revoke => m.revoke(now),
            _ => m.restore(now),
        };
        self.step(w, step);
        Some(())
    }

    #[inline(never)]
    fn op_set_logging(&mut self, r: &mut Reader, w: &mut Writer) -> Option<()> {
        let m = &mut self.machine;
        m.set_logging(r.bool()?);
        w.u8(Ret::Nothing as u8);
        Some(())
    }

    #[inline(never)]
    fn op_schedule(&mut self, r: &mut Reader, w: &mut Writer) -> Option<()> {
        let m = &mut self.machine;
        let now = r.now()?;
        w.u8(Ret::Schedule as u8);
        w.f64(m.skew_ms() as f64);
        w.f64(m.due_at().map_or(-1.0, |t| t as f64));
        w.f64(m.retry_at(now).map_or(-1.0, |t| t as f64));
        Some(())
    }

    #[inline(never)]
    fn op_token(&mut self, r: &mut Reader, w: &mut Writer) -> Option<()> {
        let m = &mut self.machine;
        let now = r.now()?;
        let need = match r.u8()? {
            0 => Need::Strict,
            1 => Need::Lenient,
            2 => Need::Background,
            _ => Need::Replay,
        };
        let waited = waited_of(r.u8()?);
        let step = m.token(now, need, waited, r.u32()?);
        self.token_step(w, step);
        Some(())
    }

    #[inline(never)]
    fn op_token_replacing(&mut self, r: &mut Reader, w: &mut Writer) -> Option<()> {
        let m = &mut self.machine;
        let now = r.now()?;
        let step = m.token_replacing(now, r.str()?);
        self.token_step(w, step);
        Some(())
    }

    #[inline(never)]
    fn op_token_after_401(&mut self, r: &mut Reader, w: &mut Writer) -> Option<()> {
        let now = r.now()?;
        let step = self.machine.token_after_401(now, r.u32()?);
        self.token_step(w, step);
        Some(())
    }

    #[inline(never)]
    fn op_auth_reply(&mut self, r: &mut Reader, w: &mut Writer) -> Option<()> {
        let m = &mut self.machine;
        let now = r.now()?;
        let io = r.u32()?;
        let status = r.u32()? as u16;
        let redirected = r.bool()?;
        let date = r.opt_str()?;
        let retry_after = r.opt_str()?;
        // 0 empty, 1 not JSON, 2 JSON (a tree follows).
        let body = match r.u8()? {
            0 => AuthBody::Empty,
            2 => AuthBody::Json(tree::read(r)?),
            _ => AuthBody::NotJson,
        };
        let reply = AuthReply {
            status,
            redirected,
            date,
            retry_after,
            body,
        };
        m.handle_auth(now, io, Ok(reply));
        self.nothing(w);
        Some(())
    }

    #[inline(never)]
    fn op_auth_failed(&mut self, r: &mut Reader, w: &mut Writer) -> Option<()> {
        let m = &mut self.machine;
        let now = r.now()?;
        let io = r.u32()?;
        // 0 network failure (with a cause), 1 not a Response, 2 body over the cap, 3 the
        // client assertion could not be signed (with a cause).
        let failure = match r.u8()? {
            0 => IoFailure::Network(cause(r)?),
            1 => IoFailure::NotAResponse,
            3 => IoFailure::Unsigned(cause(r)?),
            _ => IoFailure::TooLarge,
        };
        m.handle_auth(now, io, Err(failure));
        self.nothing(w);
        Some(())
    }

    #[inline(never)]
    fn op_storage_reply(&mut self, r: &mut Reader, w: &mut Writer) -> Option<()> {
        let m = &mut self.machine;
        let now = r.now()?;
        let io = r.u32()?;
        // 0 done or nothing (or the lease not taken), 1 a record (a tree follows),
        // 2 garbage, 3 the adapter failed (a cause follows), 4 the lease taken (its id).
        let reply = match r.u8()? {
            0 => StorageReply::Empty,
            1 => StorageReply::Record(tree::read(r)?),
            2 => StorageReply::Garbage,
            4 => match r.opt_str()? {
                Some(id) if !id.is_empty() && id.len() <= 256 => StorageReply::Lease(id),
                _ => StorageReply::Garbage,
            },
            _ => StorageReply::Failed(cause(r)?),
        };
        m.handle_storage(now, io, reply);
        self.nothing(w);
        Some(())
    }

    #[inline(never)]
    fn op_timeout(&mut self, r: &mut Reader, w: &mut Writer) -> Option<()> {
        let now = r.now()?;
        self.armed = None;
        self.machine.handle_timeout(now);
        self.nothing(w);
        Some(())
    }

    #[inline(never)]
    fn op_resolve(&mut self, r: &mut Reader, w: &mut Writer) -> Option<()> {
        let m = &mut self.machine;
        let url = m.resolve(r.str()?);
        text_ret(w, Some(&url));
        Some(())
    }

    #[inline(never)]
    fn op_api_open(&mut self, r: &mut Reader, w: &mut Writer) -> Option<()> {
        let m = &mut self.machine;
        let method = r.str()?;
        let path = r.str()?;
        let want = if r.u8()? == 1 { Want::Data } else { Want::Response };
        let behind = if r.bool()? { Behind::WaitUntil } else { Behind::No };
        match m.api_open(method, path, want, behind) {
            Ok(call) => number_ret(w, call as f64),
            Err(e) => error_ret(w, &e),
        }
        Some(())
    }

    #[inline(never)]
    fn op_api_token(&mut self, r: &mut Reader, w: &mut Writer) -> Option<()> {
        let m = &mut self.machine;
        let now = r.now()?;
        let call = r.u32()?;
        let waited = waited_of(r.u8()?);
        let step = m.api_token(now, call, waited, r.u32()?);
        self.token_step(w, step);
        Some(())
    }

    #[inline(never)]
    fn op_api_response(&mut self, r: &mut Reader, w: &mut Writer) -> Option<()> {
        let m = &mut self.machine;
        let now = r.now()?;
        let call = r.u32()?;
        let status = r.u32()? as u16;
        let opaque = r.bool()?;
        let retry_after = r.str();
        let www_authenticate = r.str();
        let step = m.api_challenged(now, call, status, opaque, retry_after, www_authenticate);
        self.api_step(w, step);
        Some(())
    }

    #[inline(never)]
    fn op_api_location(&mut self, r: &mut Reader, w: &mut Writer) -> Option<()> {
        let m = &mut self.machine;
        let call = r.u32()?;
        let step = m.api_location(call, r.str());
        self.api_step(w, step);
        Some(())
    }

    #[inline(never)]
    fn op_api_failed(&mut self, r: &mut Reader, w: &mut Writer) -> Option<()> {
        let m = &mut self.machine;
        let now = r.now()?;
        let call = r.u32()?;
        // 0 `fetch` threw or rejected (a cause follows), 1 not a Response.
        let failure = match r.u8()? {
            0 => ApiFailure::Network(cause(r)?),
            _ => ApiFailure::NotAResponse,
        };
        let step = m.api_failed(now, call, failure);
        self.api_step(w, step);
        Some(())
    }

    #[inline(never)]
    fn op_api_body(&mut self, r: &mut Reader, w: &mut Writer) -> Option<()> {
        let m = &mut self.machine;
        let call = r.u32()?;
        // 0 empty, 1 not JSON, 2 JSON (its shape follows), 3 over the cap,
        // 4 unreadable (a cause follows).
        let step = match r.u8()? {
            3 => m.api_body(call, Err(BodyFailure::TooLarge)),
            4 => m.api_body(call, Err(BodyFailure::Network(cause(r)?))),
            kind => {
                let shape = api_shape(kind, r)?;
                m.api_body(call, Ok(&shape))
            }
        };
        self.api_step(w, step);
        Some(())
    }

    #[inline(never)]
    fn op_api_abort(&mut self, r: &mut Reader, w: &mut Writer) -> Option<()> {
        let m = &mut self.machine;
        let e = m.api_abort(r.u32()?);
        self.drain(w);
        match e {
            Some(e) => error_ret(w, &e),
            None => w.u8(Ret::Nothing as u8),
        }
        Some(())
    }

    #[inline(never)]
    fn op_api_close(&mut self, r: &mut Reader, w: &mut Writer) -> Option<()> {
        let m = &mut self.machine;
        m.api_close(r.u32()?);
        self.nothing(w);
        Some(())
    }

    fn nothing(&mut self, w: &mut Writer) {
        self.drain(w);
        w.u8(Ret::Nothing as u8);
    }

    /// A [`Step`]: a flight to await (> 0), or 0 for "read `result`"; a failure is thrown.
    fn step(&mut self, w: &mut Writer, step: Step) {
        self.drain(w);
        match step {
            Step::Wait(f) => number_ret(w, f as f64),
            Step::Ready => number_ret(w, 0.0),
            Step::Fail(e) => error_ret(w, &e),
        }
    }

    /// The serial of the pair whose access token to send (> 0), minus the flight to await
    /// (< 0), or 0: rethrow the error of the flight just awaited; with the background flight
    /// started behind a ready token (0: none).
    fn token_step(&mut self, w: &mut Writer, step: TokenStep) {
        self.drain(w);
        let (value, background) = match step {
            TokenStep::Ready { serial, background, .. } => (serial as f64, background.unwrap_or(0)),
            TokenStep::Wait(f) => (-(f as f64), 0),
            TokenStep::Rethrow => (0.0, 0),
            TokenStep::Fail(e) => return error_ret(w, &e),
        };
        w.u8(Ret::Token as u8);
        w.f64(value);
        w.u32(background);
    }

    /// 0 return the response, 1 read the body, 2 locate the redirect, 3 follow it, 4 follow
    /// it as a body-less GET, 5 ask for a token again, 6 wait for a wake, 7 resolve with
    /// `data`, 8 resolve with nothing, 9 gone (discard); a failure is thrown.
    fn api_step(&mut self, w: &mut Writer, step: ApiStep) {
        self.drain(w);
        let code = match step {
            ApiStep::Return => 0,
            ApiStep::Read => 1,
            ApiStep::Locate => 2,
            ApiStep::Follow { to_get: false } => 3,
            ApiStep::Follow { to_get: true } => 4,
            ApiStep::Token => 5,
            ApiStep::Wait => 6,
            ApiStep::Data => 7,
            ApiStep::Nothing => 8,
            ApiStep::Gone => 9,
            ApiStep::Whole => 10,
            ApiStep::Fail(e) => return error_ret(w, &e),
        };
        number_ret(w, code as f64);
    }

    /// Writes every pending output as a record, then re-arms the timer if the deadline moved.
    fn drain(&mut self, w: &mut Writer) {
        while let Some(output) = self.machine.poll_output() {
            match output {
                Output::Send(q) => {
                    w.u8(Rec::Send as u8);
                    w.u32(q.id);
                    w.u8(endpoint(q.endpoint));
                    w.u8(q.wire as u8);
                    w.str(&q.url);
                    w.str(&q.body);
                    w.opt_str(q.authorization.as_deref());
                    w.opt_str(q.sign.as_ref().map(|s| s.input.as_str()));
                    w.opt_str(q.sign.as_ref().map(|s| s.alg));
                    w.u32(q.max_bytes as u32);
                }
                Output::Cancel(io) => {
                    w.u8(Rec::Cancel as u8);
                    w.u32(io);
                }
                Output::Storage(op) => {
                    w.u8(Rec::Storage as u8);
                    let (code, id, key, value, version) = match &op {
                        StorageOp::Get { id, key } => (0, *id, key, None, 0),
                        StorageOp::Put {
                            id,
                            key,
                            value,
                            version,
                        } => (1, *id, key, Some(value.as_str()), *version),
                        StorageOp::Delete { id, key } => (2, *id, key, None, 0),
                        StorageOp::Acquire { id, key, ttl_ms } => {
                            w.u8(3);
                            w.u32(*id);
                            w.str(key);
                            w.str(&crate::core::text::int(*ttl_ms as i64));
                            w.f64(0.0);
                            continue;
                        }
                        StorageOp::Release { id, key, lease } => (4, *id, key, Some(lease.as_str()), 0),
                    };
                    w.u8(code);
                    w.u32(id);
                    w.str(key);
                    w.opt_str(value);
                    w.f64(version as f64);
                }
                Output::Settle(flight, outcome) => {
                    w.u8(Rec::Settle as u8);
                    w.u32(flight);
                    match outcome {
                        Outcome::Done => w.u8(0),
                        Outcome::Nothing => w.u8(1),
                        Outcome::Failed(e) => {
                            w.u8(2);
                            error(w, &e);
                        }
                        Outcome::Again => w.u8(3),
                    }
                }
                Output::Call(call, wake) => {
                    w.u8(Rec::Wake as u8);
                    w.u32(call);
                    match wake {
                        Wake::Abandon => w.u8(0),
                        Wake::Send => w.u8(1),
                        Wake::Fail(e) => {
                            w.u8(2);
                            error(w, &e);
                        }
                    }
                }
                Output::Event(event) => {
                    w.u8(Rec::Event as u8);
                    match event {
                        Event::Tokens(i, reason) => {
                            w.u8(0);
                            info(w, &i);
                            w.str(reason.as_str());
                        }
                        Event::Expired(i) => {
                            w.u8(1);
                            info(w, &i);
                        }
                        Event::Revoked(i) => {
                            w.u8(2);
                            info(w, &i);
                        }
                        Event::Error(e) => {
                            w.u8(3);
                            error(w, &e);
                        }
                    }
                }
                Output::Log(record) => log(w, record),
            }
        }
        let next = self.machine.poll_timeout();
        if next != self.armed {
            self.armed = next;
            w.u8(Rec::Arm as u8);
            match next {
                Some((at, keep)) => {
                    w.f64(at as f64);
                    w.bool(keep == Keep::Alive);
                }
                None => {
                    w.f64(-1.0);
                    w.bool(false);
                }
            }
        }
    }
}

fn endpoint(e: Endpoint) -> u8 {
    match e {
        Endpoint::Login => 0,
        Endpoint::Refresh => 1,
        Endpoint::Revoke => 2,
        Endpoint::Discovery => 4,
    }
}

const API: u8 = 3;
const NO_ENDPOINT: u8 = 255;

/// The fields a log record may carry; what does not apply stays unset.
struct LogFields<'a> {
    event: u8,
    endpoint: u8,
    attempt: Option<u32>,
    status: Option<u16>,
    delay: Option<u32>,
    code: Option<&'a str>,
    trigger: Option<&'a str>,
    followed: u8,
}

fn log(w: &mut Writer, record: Log) {
    let f = |event, endpoint| LogFields {
        event,
        endpoint,
        attempt: None,
        status: None,
        delay: None,
        code: None,
        trigger: None,
        followed: 0,
    };
    let fields = match &record {
        Log::Refresh { why } => LogFields {
            trigger: Some(why.as_str()),
            ..f(0, NO_ENDPOINT)
        },
        Log::Login { why } => LogFields {
            trigger: Some(why.as_str()),
            ..f(1, NO_ENDPOINT)
        },
        Log::Request { endpoint: e, attempt } => LogFields {
            attempt: Some(*attempt),
            ..f(2, endpoint(*e))
        },
        Log::Response {
            endpoint: e,
            status,
            code,
        } => LogFields {
            status: Some(*status),
            code: code.as_deref(),
            ..f(3, endpoint(*e))
        },
        Log::Retry {
            endpoint: e,
            attempt,
            delay_ms,
            code,
        } => LogFields {
            attempt: Some(*attempt),
            delay: Some(*delay_ms),
            code: Some(code.as_ref()),
            ..f(4, endpoint(*e))
        },
        Log::ApiRequest { attempt } => LogFields {
            attempt: Some(*attempt),
            ..f(2, API)
        },
        Log::ApiResponse { status, code } => LogFields {
            status: Some(*status),
            code: code.as_deref(),
            ..f(3, API)
        },
        Log::ApiRetry {
            attempt,
            delay_ms,
            code,
        } => LogFields {
            attempt: Some(*attempt),
            delay: Some(*delay_ms),
            code: Some(*code),
            ..f(4, API)
        },
        Log::Redirect { status, followed } => LogFields {
            status: Some(*status),
            followed: 1 + *followed as u8,
            ..f(5, API)
        },
    };
    w.u8(Rec::Log as u8);
    w.u8(fields.event);
    w.u8(fields.endpoint);
    w.opt_f64(fields.attempt.map(f64::from));
    w.opt_f64(fields.status.map(f64::from));
    w.opt_f64(fields.delay.map(f64::from));
    w.opt_str(fields.code);
    w.opt_str(fields.trigger);
    w.u8(fields.followed);
}

/// state, then client id, access and refresh expiry (opt f64).
fn info(w: &mut Writer, i: &SessionInfo) {
    w.str(i.state.as_str());
    w.opt_f64(i.client_id.map(|v| v as f64));
    w.opt_f64(i.access_expires_at.map(|v| v as f64));
    w.opt_f64(i.refresh_expires_at.map(|v| v as f64));
}

/// code, name, message, status u32, retryable u8, retry after (opt f64), cause name and
/// code (opt). Already redacted by the core: nothing here reads a secret.
fn error(w: &mut Writer, e: &AuthError) {
    let c = e.cause();
    w.str(e.code());
    w.str(e.name());
    w.str(e.message());
    w.u32(e.status() as u32);
    w.bool(e.retryable());
    w.opt_f64(e.retry_after().map(f64::from));
    w.opt_str(c.map(|c| c.name.as_str()));
    w.opt_str(c.and_then(|c| c.code.as_deref()));
}

fn error_ret(w: &mut Writer, e: &AuthError) {
    w.u8(Ret::Error as u8);
    error(w, e);
}

fn number_ret(w: &mut Writer, v: f64) {
    w.u8(Ret::Number as u8);
    w.f64(v);
}

fn flag_ret(w: &mut Writer, v: bool) {
    w.u8(Ret::Flag as u8);
    w.bool(v);
}

fn text_ret(w: &mut Writer, s: Option<&str>) {
    w.u8(Ret::Text as u8);
    w.opt_str(s);
}

/// The underlying error of a failed `fetch` or storage call: its name (opt) and code (opt).
fn cause(r: &mut Reader) -> Option<Option<Cause>> {
    let name = r.opt_str()?;
    let code = r.opt_str()?;
    Some(name.map(|n| Cause::new(&n, code.as_deref())))
}

fn waited_of(waited: u8) -> Waited {
    match waited {
        0 => Waited::Nothing,
        1 => Waited::Done,
        2 => Waited::Failed { retryable: true },
        _ => Waited::Failed { retryable: false },
    }
}

/// What `json()`'s verdict reads of a parsed body: the envelope's shape, never its data.
/// For JSON: `success` (0 not a boolean, 1 false, 2 true), whether `data` is present, then
/// `error`'s code, name and message where `error` is an object and they are strings.
fn api_shape(kind: u8, r: &mut Reader) -> Option<ApiBody> {
    let mut shape = ApiBody {
        empty: kind == 0,
        json: kind == 2,
        ..ApiBody::default()
    };
    if kind == 2 {
        shape.success = r.opt_bool()?;
        shape.has_data = r.bool()?;
        let code = r.opt_str()?;
        let name = r.opt_str()?;
        let message = r.opt_str()?;
        if let Some(code) = code.filter(|c| !c.is_empty()) {
            shape.error = Some((name, code, message));
        }
    }
    Some(shape)
}

/// The raw exports of the package's wasm. A panic traps (see lib.rs); the driver then ends
/// every session of the instance with an error.
#[cfg(target_arch = "wasm32")]
mod exports {
    use super::Boundary;
    use core::cell::UnsafeCell;

    struct Global(UnsafeCell<Option<Boundary>>);
    // SAFETY: wasm32-unknown-unknown without the atomics feature runs on one thread.
    unsafe impl Sync for Global {}
    static BOUNDARY: Global = Global(UnsafeCell::new(None));

    fn boundary() -> &'static mut Boundary {
        // SAFETY: one thread, and the exports below are never re-entered (there are no
        // imports, so nothing can call back into the module while one runs).
        unsafe { (*BOUNDARY.0.get()).get_or_insert_with(Boundary::default) }
    }

    /// Room for an input of `len` bytes: returns where to write it.
    #[no_mangle]
    pub extern "C" fn io(len: u32) -> *mut u8 {
        let b = boundary();
        if b.input.len() < len as usize {
            b.input.resize(len as usize, 0);
        }
        b.input.as_mut_ptr()
    }

    /// Runs the input of `len` bytes written at `io`'s address. Returns where the output is:
    /// its byte length (u32), then the output.
    #[no_mangle]
    pub extern "C" fn step(len: u32) -> *const u8 {
        boundary().step_input(len as usize).as_ptr()
    }
}
