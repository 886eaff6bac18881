//! The wasm glue (`src/wasm/core.rs`, `src/wasm/json.rs`) in real JavaScript runtimes, shared
//! by two test targets: `tests/wasm_node.rs` (Node) and `tests/wasm_browser.rs` (headless
//! Chromium), both run by wasm-bindgen-test-runner.
//!
//! The exported `Core` class is driven the way `pkg-template/session.js` drives it: through
//! the class wasm-bindgen generated (its argument conversions, its getters, its `throw`s),
//! with `new Core(…)` given the arguments session.js builds from an options object, and with
//! a recording driver written in JavaScript (below) whose `info`/`error` build the same plain
//! objects as session.js's. Each test feeds the class what session.js would (`JSON.parse`d
//! bodies, header strings, integer codes), and values no `JSON.parse` returns, and checks
//! every call the glue makes on the driver. Nothing here is asynchronous: the glue never
//! awaits, so each call's outputs are in the driver's log when it returns.
//!
//! Every call goes through `Reflect.apply`/`Reflect.construct`, so a throw is seen as the JS
//! value thrown: it must be a descriptor this driver's `error()` made, never anything else.
//! The tests use only ECMAScript built-ins (no Node or DOM API), so both runtimes run them
//! unchanged.
//!
//! Not a test target of its own: cargo only builds `tests/*.rs` and `tests/*/main.rs`.

use std::fmt;

use auth_session::core::fingerprint;
use auth_session::wasm::Core;
use js_sys::{Array, Function, Reflect, JSON};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

#[wasm_bindgen(inline_js = r#"
const MADE = new WeakSet();

// The driver: every output call is logged as [method, ...args]; `info` and `error` return
// what session.js's do (session.js: #driver), and are counted in `built`.
export function driver() {
  const d = { log: [], built: [] };
  for (const m of ["send", "cancel", "storage", "settle", "event", "arm", "wake"]) {
    d[m] = (...args) => {
      d.log.push([m, ...args]);
    };
  }
  d.info = (state, clientId, access, refresh) => {
    d.built.push("info");
    return {
      state,
      clientId: clientId ?? null,
      accessExpiresAt: access === undefined ? null : new Date(access),
      refreshExpiresAt: refresh === undefined ? null : new Date(refresh),
    };
  };
  d.error = (code, name, message, status, retryable, retryAfter, causeName, causeCode) => {
    d.built.push("error");
    const e = { code, name, message, status, retryable, retryAfter, cause: undefined };
    if (causeName !== undefined) e.cause = causeCode === undefined ? { name: causeName } : { name: causeName, code: causeCode };
    MADE.add(e);
    return e;
  };
  return d;
}

export function take_log(d) {
  const log = d.log;
  d.log = [];
  d.built = [];
  return log;
}

export function built(d) {
  return d.built.slice();
}

export function is_descriptor(v) {
  return v !== null && typeof v === "object" && MADE.has(v);
}

// The arguments of `new Core(…)` for an options object, as session.js's constructor passes
// them (after its own type checks; `storage: true` stands for a storage adapter).
export function core_args(d, o) {
  const paths = o.paths === undefined ? ["", "", ""] : ["login", "refresh", "revoke"].map((k) => o.paths[k] ?? "");
  return [
    d, o.host, o.credentials?.username, o.credentials?.password,
    o.refreshMarginSeconds, o.timeoutMs, o.retries, o.maxRetryAfterSeconds,
    o.autoRefresh, paths, o.storageKey, o.allowedOrigins ?? [], o.allowInsecureHttp,
    o.maxResponseBytes, o.leaseMs, o.label, o.storage === true ? 1 : 0, 0.5,
  ];
}

// Any value as text for an assertion message; never throws.
export function show(v) {
  try {
    if (v instanceof Error) return `${v.name}: ${v.message}`;
    const s = JSON.stringify(v, (k, x) =>
      x === undefined ? "<undefined>" : typeof x === "number" && !Number.isFinite(x) ? String(x) : typeof x === "bigint" ? `${x}n` : x);
    return s === undefined ? String(v) : s;
  } catch {
    try {
      return String(v);
    } catch {
      return "<unprintable>";
    }
  }
}

export function http_date(ms) {
  return new Date(ms).toUTCString();
}

export function iso(ms) {
  return new Date(ms).toISOString();
}

// ----- values no JSON.parse returns --------------------------------------------------------

function thrower(secret) {
  return () => {
    throw new Error(`a getter holding ${secret}`);
  };
}
function nest(n, leaf) {
  let v = leaf;
  for (let i = 0; i < n; i++) v = { a: v };
  return v;
}
function revoked(target) {
  const { proxy, revoke } = Proxy.revocable(target, {});
  revoke();
  return proxy;
}
function sparse() {
  const a = [];
  a.length = 2 ** 32 - 1;
  return a;
}
// `width` members per level, all the same child: width^depth values when walked as a tree.
function shared(width, depth) {
  let v = 0;
  for (let i = 0; i < depth; i++) {
    const o = {};
    for (let j = 0; j < width; j++) o[`k${j}`] = v;
    v = o;
  }
  return v;
}
function getter(o, key, get) {
  return Object.defineProperty(o, key, { get, enumerable: true, configurable: true });
}

// [name, value] pairs, each an auth response body that must read as INVALID_RESPONSE; `good`
// is a JSON.parse'd success envelope. Whatever a getter or trap throws holds `secret`.
export function hostile_auth(good, secret) {
  const boom = thrower(secret);
  const data = () => ({ ...good.data });
  const env = (d) => ({ success: true, data: d });
  const cycle = { success: true };
  cycle.data = cycle;
  return Object.entries({
    "the document nested 100 deep": nest(100, good),
    "data nested 100 deep": env(nest(100, data())),
    "an array for the document": [good],
    "an array for data": env([data()]),
    "an array for the access token": env({ ...data(), access_token: [good.data.access_token] }),
    "success as a string": { success: "true", data: data() },
    "success as a Boolean object": { success: new Boolean(true), data: data() },
    "success NaN": { success: NaN, data: data() },
    "expiry times as numbers": env({ ...data(), access_expires_at: Date.parse(good.data.access_expires_at) }),
    "client_id as a string": env({ ...data(), client_id: String(good.data.client_id) }),
    "client_id NaN": env({ ...data(), client_id: NaN }),
    "client_id Infinity": env({ ...data(), client_id: Infinity }),
    "client_id -Infinity": env({ ...data(), client_id: -Infinity }),
    "a throwing getter for data": getter({ success: true }, "data", boom),
    "a throwing getter for success": getter({ data: data() }, "success", boom),
    "a throwing getter for the access token": env(getter(data(), "access_token", boom)),
    "an array with a throwing index getter for data": env(getter([], "0", boom)),
    "a Proxy whose ownKeys throws": new Proxy(good, { ownKeys: boom }),
    "a Proxy whose get throws": new Proxy(good, { get: boom }),
    "a Proxy whose getOwnPropertyDescriptor throws, for data": env(new Proxy(data(), { getOwnPropertyDescriptor: boom })),
    "a revoked Proxy": revoked(good),
    "a revoked Proxy for data": env(revoked(data())),
    "an array Proxy whose length throws, for data": env(new Proxy([], { get: (t, k) => (k === "length" ? boom() : Reflect.get(t, k)) })),
    "an array Proxy whose length is 2^53, for data": env(new Proxy([], { get: (t, k) => (k === "length" ? 2 ** 53 : undefined) })),
    "a sparse array of length 2^32-1 for data": env(sparse()),
    "a sparse array of length 2^32-1 beside data": { ...good, extra: sparse() },
    "8 shared children over 20 levels beside data": { ...good, extra: shared(8, 20) },
    "a cycle": cycle,
    "a function for data": env(() => data()),
    "a symbol for data": env(Symbol("data")),
    "a BigInt for data": env(10n),
    "undefined for data": env(undefined),
    "a Date for data": env(new Date(0)),
    "a toJSON method for data": env({ toJSON: () => data() }),
    "data inherited from a prototype": env(Object.create(data())),
  });
}

// [name, value] pairs: a valid success envelope with junk where the protocol reads nothing.
export function harmless_auth(good, secret) {
  const boom = thrower(secret);
  const selfish = { ...good };
  selfish.self = selfish;
  return Object.entries({
    "a throwing index getter beside data": { ...good, extra: getter([1], "0", boom) },
    "a revoked Proxy beside data": { ...good, extra: revoked({}) },
    "a Proxy whose ownKeys throws, beside the tokens": { ...good, data: { ...good.data, extra: new Proxy({}, { ownKeys: boom }) } },
    "100 levels beside the tokens": { ...good, data: { ...good.data, extra: nest(100, 1) } },
    "NaN and -Infinity beside data": { ...good, a: NaN, b: -Infinity },
    "a throwing getter for error": getter({ ...good }, "error", boom),
    "a cycle beside data": selfish,
    "a symbol, a function and a BigInt beside the tokens": { ...good, data: { ...good.data, s: Symbol(), f: () => 1, b: 1n } },
  });
}

// [name, value] pairs, each a storage record (after session.js's JSON.parse) that must read
// as "not one this client can read"; `good` is a valid record.
export function hostile_record(good, secret) {
  const boom = thrower(secret);
  const rec = (o) => ({ ...good, ...o });
  return Object.entries({
    "the record nested 100 deep": nest(100, good),
    "an array for the record": [good],
    "v as a string": rec({ v: String(good.v) }),
    "v NaN": rec({ v: NaN }),
    "v 3, a format of the future": rec({ v: 3 }),
    "no v": rec({ v: undefined }),
    "no origin": rec({ origin: undefined }),
    "origin as an array": rec({ origin: [good.origin] }),
    "account as a number": rec({ account: 7 }),
    "an account longer than a fingerprint can be": rec({ account: "a".repeat(65) }),
    "no version": rec({ version: undefined }),
    "version as a string": rec({ version: String(good.version) }),
    "version negative": rec({ version: -1 }),
    "version 1.5": rec({ version: 1.5 }),
    "version 2^53": rec({ version: 2 ** 53 }),
    "version Infinity": rec({ version: Infinity }),
    "times as strings": rec({ access_expires_at: String(good.access_expires_at) }),
    "a time NaN": rec({ refresh_expires_at: NaN }),
    "a time Infinity": rec({ access_expires_at: Infinity }),
    "client_id as a string": rec({ client_id: "7" }),
    "an array for a token": rec({ refresh_token: [good.refresh_token] }),
    "a throwing getter for v": getter({ ...good }, "v", boom),
    "a throwing getter for the refresh token": getter({ ...good }, "refresh_token", boom),
    "a Proxy whose ownKeys throws": new Proxy(good, { ownKeys: boom }),
    "a Proxy whose get throws": new Proxy(good, { get: boom }),
    "a revoked Proxy": revoked(good),
    "a sparse array of length 2^32-1 beside the tokens": rec({ extra: sparse() }),
    "8 shared children over 20 levels beside the tokens": rec({ extra: shared(8, 20) }),
    "inherited from a prototype": Object.create(good),
  });
}

// [name, body, expected] for api_json(d, 200, 2, body): "data", "nothing" or an error code.
export function hostile_api(secret) {
  const boom = thrower(secret);
  return [
    ["a revoked Proxy", revoked({ success: true, data: 1 }), "INVALID_RESPONSE"],
    ["a Proxy whose get throws", new Proxy({ success: true, data: 1 }, { get: boom }), "INVALID_RESPONSE"],
    ["a Proxy whose has throws", new Proxy({ success: true, data: 1 }, { has: boom }), "INVALID_RESPONSE"],
    ["a throwing getter for success", getter({ data: 1 }, "success", boom), "INVALID_RESPONSE"],
    ["a throwing getter for error", getter({ success: true, data: 1 }, "error", boom), "data"],
    ["an error Proxy whose get throws", { success: true, data: 1, error: new Proxy({}, { get: boom }) }, "data"],
    ["a throwing getter for error.code", { error: getter({}, "code", boom) }, "INVALID_RESPONSE"],
    ["a revoked Proxy for error", { error: revoked({ code: "X" }) }, "INVALID_RESPONSE"],
    ["a Boolean object for success", { success: new Boolean(true), data: 1 }, "INVALID_RESPONSE"],
    ["a function", () => 1, "INVALID_RESPONSE"],
    ["a symbol", Symbol("x"), "INVALID_RESPONSE"],
    ["a BigInt", 1n, "INVALID_RESPONSE"],
    ["a String object for error.code", { error: { code: new String("X") } }, "INVALID_RESPONSE"],
  ];
}
"#)]
extern "C" {
    fn driver() -> JsValue;
    fn take_log(d: &JsValue) -> Array;
    fn built(d: &JsValue) -> Array;
    fn is_descriptor(v: &JsValue) -> bool;
    fn core_args(d: &JsValue, options: &JsValue) -> Array;
    fn show(v: &JsValue) -> String;
    fn http_date(ms: f64) -> String;
    fn iso(ms: f64) -> String;
    fn hostile_auth(good: &JsValue, secret: &str) -> Array;
    fn harmless_auth(good: &JsValue, secret: &str) -> Array;
    fn hostile_record(good: &JsValue, secret: &str) -> Array;
    fn hostile_api(secret: &str) -> Array;
}

// ----- fixtures -----------------------------------------------------------------------------

const HOST: &str = "https://api.test/v2";
/// Local "now" of the tests (a whole second, so HTTP dates are exact).
const T0: f64 = 1_700_000_000_000.0;
const HOUR: f64 = 3_600_000.0;
const WEEK: f64 = 7.0 * 24.0 * HOUR;
const ACCESS: &str = "eyJ.canary-access.1";
const REFRESH: &str = "eyJ.canary-refresh.1";
const ACCESS2: &str = "eyJ.canary-access.2";
const REFRESH2: &str = "eyJ.canary-refresh.2";
const PASSWORD: &str = "canary-password-9";
const SECRETS: [&str; 5] = [ACCESS, REFRESH, ACCESS2, REFRESH2, PASSWORD];
const MAX_AUTH_BYTES: f64 = 65_536.0;

// Outcomes of `settle` and kinds of `event`, as session.js names them.
const DONE: f64 = 0.0;
const NOTHING: f64 = 1.0;
const FAILED: f64 = 2.0;
const AGAIN: f64 = 3.0;
const TOKENS: f64 = 0.0;
const EXPIRED: f64 = 1.0;
const REVOKED: f64 = 2.0;
const ERROR: f64 = 3.0;
// Body kinds.
const EMPTY: u32 = 0;
const NOT_JSON: u32 = 1;
const JSON_BODY: u32 = 2;

thread_local! {
    /// The JS class wasm-bindgen generated for `Core`, reached through an instance.
    static CLASS: Function = {
        let d = driver();
        let core = Core::new(
            d.unchecked_ref(), Some(HOST.into()), None, None, None, None, None, None, None,
            Vec::new(), None, Vec::new(), None, None, None, None, 0, 0.5,
        )
        .expect("a valid host");
        get(&JsValue::from(core), "constructor").unchecked_into()
    };
}

/// JS arguments from Rust values: `args![T0, io, "text", true, JsValue::UNDEFINED]`.
macro_rules! args {
    ($($x:expr),* $(,)?) => {
        vec![$(JsValue::from($x)),*] as Vec<JsValue>
    };
}

fn get(v: &JsValue, key: &str) -> JsValue {
    Reflect::get(v, &JsValue::from_str(key)).unwrap_or_else(|_| panic!("reading {key} of {}", show(v)))
}

fn num(v: &JsValue) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {}", show(v)))
}

fn text(v: &JsValue) -> String {
    v.as_string().unwrap_or_else(|| panic!("not a string: {}", show(v)))
}

fn parse(json: &str) -> JsValue {
    JSON::parse(json).unwrap_or_else(|_| panic!("bad JSON in a test: {json}"))
}

/// Options as JSON, with `host` and the overrides given.
fn options(extra: &str) -> JsValue {
    let sep = if extra.is_empty() { "" } else { "," };
    parse(&format!(r#"{{"host":"{HOST}"{sep}{extra}}}"#))
}

/// A `JSON.parse`d success envelope of a login or refresh.
fn envelope(access: &str, refresh: &str, access_at: f64, refresh_at: f64, client_id: Option<i64>) -> JsValue {
    let client = client_id.map_or("null".to_owned(), |c| c.to_string());
    parse(&format!(
        r#"{{"success":true,"data":{{"access_token":"{access}","refresh_token":"{refresh}",
        "access_expires_at":"{}","refresh_expires_at":"{}","client_id":{client}}}}}"#,
        iso(access_at),
        iso(refresh_at)
    ))
}

/// The usual first pair: an hour of access, a week of refresh, from `T0`.
fn first_pair() -> JsValue {
    envelope(ACCESS, REFRESH, T0 + HOUR, T0 + WEEK, Some(123_456))
}

/// What a stored record (format v2) says about its place: the host it was issued by (origin
/// and path prefix), the account fingerprint of whoever logged in (or none), and its
/// rotation version.
struct Place<'a> {
    origin: &'a str,
    account: Option<&'a str>,
    version: u64,
}

/// The place of a record [`HOST`]'s sessions without credentials read: no account.
const HERE: Place<'static> = Place {
    origin: HOST,
    account: None,
    version: 1,
};

/// A storage record as `write_record` stores it (format v2), `JSON.parse`d; written here by
/// hand, so that the format itself is checked.
fn stored(
    place: &Place,
    access: &str,
    refresh: &str,
    access_at: f64,
    refresh_at: f64,
    client_id: Option<i64>,
) -> JsValue {
    let account = place.account.map_or("null".to_owned(), |a| format!(r#""{a}""#));
    let client = client_id.map_or("null".to_owned(), |c| c.to_string());
    parse(&format!(
        r#"{{"v":2,"origin":"{}","account":{account},"version":{},"access_token":"{access}",
        "refresh_token":"{refresh}","access_expires_at":{access_at},"refresh_expires_at":{refresh_at},
        "client_id":{client}}}"#,
        place.origin, place.version
    ))
}

/// The first pair's tokens as a record of [`HERE`], with these expiry times and client 7.
fn record(access_at: f64, refresh_at: f64) -> JsValue {
    stored(&HERE, ACCESS, REFRESH, access_at, refresh_at, Some(7))
}

/// The first pair's tokens as a record of `place`, valid from `T0` for an hour and a week.
fn record_of(place: &Place) -> JsValue {
    stored(place, ACCESS, REFRESH, T0 + HOUR, T0 + WEEK, Some(7))
}

/// A record of the previous format (auth-session 0.1): no origin, account or version.
fn v1_record(access_at: f64, refresh_at: f64) -> JsValue {
    parse(&format!(
        r#"{{"v":1,"access_token":"{ACCESS}","refresh_token":"{REFRESH}","access_expires_at":{access_at},
        "refresh_expires_at":{refresh_at},"client_id":7}}"#
    ))
}

/// One driver call: the method and its arguments.
struct Call {
    m: String,
    a: Vec<JsValue>,
    shown: String,
}

impl Call {
    fn arg(&self, i: usize) -> &JsValue {
        &self.a[i]
    }
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

fn names(calls: &[Call]) -> Vec<&str> {
    calls.iter().map(|c| c.m.as_str()).collect()
}

/// An error descriptor as the driver's `error()` built it.
#[derive(Debug, PartialEq)]
struct Desc {
    code: String,
    name: String,
    message: String,
    status: f64,
    retryable: bool,
    retry_after: Option<f64>,
    cause: Option<(String, Option<String>)>,
}

fn desc(v: &JsValue) -> Desc {
    assert!(is_descriptor(v), "not a descriptor of the driver: {}", show(v));
    let cause = get(v, "cause");
    Desc {
        code: text(&get(v, "code")),
        name: text(&get(v, "name")),
        message: text(&get(v, "message")),
        status: num(&get(v, "status")),
        retryable: get(v, "retryable").as_bool().expect("retryable is a boolean"),
        retry_after: get(v, "retryAfter").as_f64(),
        cause: (!cause.is_undefined()).then(|| (text(&get(&cause, "name")), get(&cause, "code").as_string())),
    }
}

/// No secret in the calls, except where it must go: an auth request's body and bearer, and
/// the value of a storage `put`.
fn assert_no_secret(calls: &[Call]) {
    for c in calls {
        let shown: Vec<String> =
            c.a.iter()
                .enumerate()
                .filter(|(i, _)| !matches!((c.m.as_str(), i), ("send", 3 | 4) | ("storage", 3)))
                .map(|(_, v)| show(v))
                .collect();
        for s in SECRETS {
            assert!(!shown.iter().any(|x| x.contains(s)), "{s} in {c:?}");
        }
    }
}

/// What `token()` and `token_after_401()` answer: the serial of the pair to send (> 0), minus
/// a flight to await (< 0), or 0: rethrow the error of the flight awaited.
#[derive(Debug, PartialEq)]
enum Token {
    Ready(f64),
    Wait(f64),
    Rethrow,
}

fn token_step(v: &JsValue) -> Token {
    let n = num(v);
    assert_eq!(n.fract(), 0.0, "{n}");
    if n > 0.0 {
        Token::Ready(n)
    } else if n < 0.0 {
        Token::Wait(-n)
    } else {
        Token::Rethrow
    }
}

/// A `Core` and its driver.
struct S {
    core: JsValue,
    d: JsValue,
}

/// `new Core(...)` from an options object: the instance, or what the constructor threw.
fn construct(options: &JsValue) -> (Result<JsValue, JsValue>, JsValue) {
    let d = driver();
    let args = core_args(&d, options);
    let made = CLASS.with(|class| Reflect::construct(class, &args));
    (made, d)
}

impl S {
    fn new(options: &JsValue) -> S {
        let (made, d) = construct(options);
        let core = made.unwrap_or_else(|e| panic!("new Core({}) threw {}", show(options), show(&e)));
        S { core, d }
    }

    /// `core[method](...args)`, as `Reflect.apply`: the value, or what was thrown.
    fn apply(&self, method: &str, args: Vec<JsValue>) -> Result<JsValue, JsValue> {
        let f: Function = get(&self.core, method)
            .dyn_into()
            .unwrap_or_else(|_| panic!("Core has no method {method}"));
        let list = Array::new();
        for a in &args {
            list.push(a);
        }
        Reflect::apply(&f, &self.core, &list)
    }

    /// `core[method](d, ...args)`, which must not throw.
    fn ok(&self, method: &str, args: Vec<JsValue>) -> JsValue {
        self.bare(method, [vec![self.d.clone()], args].concat())
    }

    /// `core[method](...args)` (a method without the driver), which must not throw.
    fn bare(&self, method: &str, args: Vec<JsValue>) -> JsValue {
        self.apply(method, args)
            .unwrap_or_else(|e| panic!("{method} threw {}", show(&e)))
    }

    /// `core[method](d, ...args)`, which must throw a descriptor.
    fn throws(&self, method: &str, args: Vec<JsValue>) -> Desc {
        match self.apply(method, [vec![self.d.clone()], args].concat()) {
            Ok(v) => panic!("{method} returned {} instead of throwing", show(&v)),
            Err(e) => desc(&e),
        }
    }

    /// The driver calls since the last `take`.
    fn take(&self) -> Vec<Call> {
        take_log(&self.d)
            .iter()
            .map(|entry| {
                let a: Array = entry.clone().unchecked_into();
                Call {
                    m: text(&a.get(0)),
                    a: a.iter().skip(1).collect(),
                    shown: show(&entry),
                }
            })
            .collect()
    }

    /// `token(d, now, need, waited, round)`, read as session.js reads it.
    fn token(&self, now: f64, need: u32, waited: u32, round: u32) -> Token {
        token_step(&self.ok("token", args![now, need, waited, round]))
    }

    fn token_after_401(&self, now: f64, serial: u32) -> Token {
        token_step(&self.ok("token_after_401", args![now, serial]))
    }

    /// `token_text()`: the access token of the pair the last `Ready` step named.
    fn token_text(&self) -> Option<String> {
        let v = self.bare("token_text", args![]);
        assert!(v.is_undefined() || v.is_string(), "{}", show(&v));
        v.as_string()
    }

    fn prop(&self, name: &str) -> JsValue {
        get(&self.core, name)
    }

    /// `login(d, now, user, password)`: the flight, and the io of the one request sent.
    fn login(&self, now: f64, user: &str, password: &str) -> (f64, f64) {
        let flight = num(&self.ok("login", args![now, user, password]));
        let calls = self.take();
        assert_eq!(names(&calls), ["send", "arm"], "{calls:?}");
        (flight, num(calls[0].arg(0)))
    }

    /// `auth_reply` with no `Date` or `Retry-After`: the calls it made.
    fn reply(&self, now: f64, io: f64, status: u16, kind: u32, body: JsValue) -> Vec<Call> {
        let r = self.ok(
            "auth_reply",
            args![
                now,
                io,
                status,
                false,
                JsValue::UNDEFINED,
                JsValue::UNDEFINED,
                kind,
                body
            ],
        );
        assert!(r.is_undefined());
        self.take()
    }

    /// Logged in at `T0` with [`first_pair`] (with storage: the versioning read answered
    /// "nothing stored", then the record written, as version 1).
    fn logged_in(options: &JsValue) -> S {
        let s = S::new(options);
        let (flight, io) = s.login(T0, "api-user", PASSWORD);
        let mut calls = s.reply(T0 + 10.0, io, 200, JSON_BODY, first_pair());
        let read = calls
            .iter()
            .find(|c| c.m == "storage")
            .map(|c| (num(c.arg(0)), num(c.arg(1))));
        if let Some((op, read)) = read {
            assert_eq!(op, 0.0, "the versioning read comes first: {calls:?}");
            let more = storage_reply_at(&s, T0 + 20.0, read, 0, JsValue::UNDEFINED, None);
            let put = more.iter().find(|c| c.m == "storage").expect("the put");
            assert_eq!(num(put.arg(0)), 1.0, "a put: {more:?}");
            assert_eq!(num(&get(&parse(&text(put.arg(3))), "version")), 1.0);
            let put = num(put.arg(1));
            calls.extend(more);
            calls.extend(storage_reply_at(&s, T0 + 30.0, put, 0, JsValue::UNDEFINED, None));
        }
        let settle = calls.iter().find(|c| c.m == "settle").expect("the login settled");
        assert_eq!((num(settle.arg(0)), num(settle.arg(1))), (flight, DONE), "{calls:?}");
        s
    }
}

fn assert_settled(calls: &[Call], flight: f64, outcome: f64) -> Option<Desc> {
    let settles: Vec<&Call> = calls.iter().filter(|c| c.m == "settle").collect();
    assert_eq!(settles.len(), 1, "one settle in {calls:?}");
    let c = settles[0];
    assert_eq!((num(c.arg(0)), num(c.arg(1))), (flight, outcome), "{c:?}");
    if outcome == FAILED {
        Some(desc(c.arg(2)))
    } else {
        assert!(c.arg(2).is_undefined(), "{c:?}");
        None
    }
}

fn assert_date(v: &JsValue, ms: f64) {
    assert!(v.is_instance_of::<js_sys::Date>(), "not a Date: {}", show(v));
    assert_eq!(v.unchecked_ref::<js_sys::Date>().get_time(), ms);
}

fn assert_info(info: &JsValue, state: &str, client_id: Option<f64>, times: Option<(f64, f64)>) {
    assert_eq!(text(&get(info, "state")), state, "{}", show(info));
    match client_id {
        Some(id) => assert_eq!(num(&get(info, "clientId")), id),
        None => assert!(get(info, "clientId").is_null(), "{}", show(info)),
    }
    match times {
        Some((access, refresh)) => {
            assert_date(&get(info, "accessExpiresAt"), access);
            assert_date(&get(info, "refreshExpiresAt"), refresh);
        }
        None => {
            assert!(get(info, "accessExpiresAt").is_null(), "{}", show(info));
            assert!(get(info, "refreshExpiresAt").is_null(), "{}", show(info));
        }
    }
}

// ----- construction -------------------------------------------------------------------------

#[wasm_bindgen_test]
fn the_class_takes_every_option_and_calls_the_driver_for_nothing_yet() {
    let s = S::new(&options(&format!(
        r#""credentials":{{"username":"api-user","password":"{PASSWORD}"}},"refreshMarginSeconds":60,
        "timeoutMs":5000,"retries":1,"maxRetryAfterSeconds":10,"autoRefresh":false,
        "paths":{{"login":"/session/new","refresh":"/session/refresh","revoke":"/session/end"}},
        "storageKey":"k1","allowedOrigins":["https://files.test:8443"],"allowInsecureHttp":false,"storage":true"#
    )));
    assert!(s.take().is_empty());
    assert_info(&s.ok("info", args![]), "anonymous", None, None);
    assert_eq!(s.bare("disposed", args![]).as_bool(), Some(false));
    assert_eq!(num(&s.prop("background")), 0.0);
    assert_eq!(s.token_text(), None);
    assert_eq!(
        text(&s.bare("resolve", args!["api/x?q=1"])),
        "https://api.test/v2/api/x?q=1"
    );
    assert_eq!(text(&s.bare("resolve", args!["/api/x"])), "https://api.test/v2/api/x");
    assert_eq!(
        text(&s.bare("resolve", args!["https://other.test/y"])),
        "https://other.test/y"
    );
    for (origin, may) in [
        ("https://api.test", true),
        ("https://files.test:8443", true),
        ("https://files.test", false),
        ("http://api.test", false),
    ] {
        assert_eq!(
            s.apply("check_origin", args![s.d.clone(), origin]).is_ok(),
            may,
            "{origin}"
        );
    }

    // login() without arguments uses the credentials, on the configured path and timeout.
    let flight = num(&s.ok("login", args![T0, JsValue::UNDEFINED, JsValue::UNDEFINED]));
    let calls = s.take();
    assert_eq!(names(&calls), ["send", "arm"], "{calls:?}");
    assert_eq!(text(calls[0].arg(2)), "https://api.test/v2/session/new");
    let body = parse(&text(calls[0].arg(3)));
    assert_eq!(text(&get(&body, "password")), PASSWORD);
    assert_eq!(
        (num(calls[1].arg(0)), calls[1].arg(1).as_bool()),
        (T0 + 5_000.0, Some(true))
    );

    // The session's account: the username's fingerprint, never the username.
    let account = fingerprint::account("api-user");
    assert_eq!(
        s.bare("account", args![]).as_string().as_deref(),
        Some(account.as_str())
    );

    // The pair is in at once; then the record's version is read under storageKey and the
    // record written there, and the login settles. With autoRefresh false there is no timer
    // once the pair is stored.
    let calls = s.reply(T0 + 10.0, num(calls[0].arg(0)), 200, JSON_BODY, first_pair());
    assert_eq!(names(&calls), ["event", "storage", "arm"], "{calls:?}");
    assert_eq!(text(calls[0].arg(2)), "login");
    assert_eq!(
        (num(calls[1].arg(0)), text(calls[1].arg(2))),
        (0.0, "k1".to_owned()),
        "a get: {calls:?}"
    );
    assert!(calls[1].arg(3).is_undefined(), "{calls:?}");
    assert_eq!(
        (num(calls[2].arg(0)), calls[2].arg(1).as_bool()),
        (T0 + 5_010.0, Some(true))
    );
    assert_no_secret(&calls);
    let calls = storage_reply_at(&s, T0 + 20.0, num(calls[1].arg(1)), 0, JsValue::UNDEFINED, None);
    assert_eq!(names(&calls), ["storage", "arm"], "{calls:?}");
    let put = &calls[0];
    assert_eq!(
        (num(put.arg(0)), text(put.arg(2))),
        (1.0, "k1".to_owned()),
        "a put: {put:?}"
    );
    let value = text(put.arg(3));
    assert!(!value.contains("api-user"), "{value}");
    let written = parse(&value);
    assert_eq!(num(&get(&written, "v")), 2.0);
    assert_eq!(text(&get(&written, "origin")), HOST);
    assert_eq!(text(&get(&written, "account")), account);
    assert_eq!(num(&get(&written, "version")), 1.0, "nothing was stored before");
    assert_eq!(
        (num(calls[1].arg(0)), calls[1].arg(1).as_bool()),
        (T0 + 5_020.0, Some(true))
    );
    let calls = storage_reply_at(&s, T0 + 30.0, num(put.arg(1)), 0, JsValue::UNDEFINED, None);
    assert_settled(&calls, flight, DONE);
    assert_eq!(names(&calls), ["settle", "arm"], "{calls:?}");
    assert_eq!((num(calls[1].arg(0)), calls[1].arg(1).as_bool()), (-1.0, Some(false)));
}

#[wasm_bindgen_test]
fn bad_options_throw_config_descriptors_naming_the_option() {
    let cases: Vec<(JsValue, &str)> = vec![
        (parse("{}"), "host is required"),
        (parse(r#"{"host":"api.test"}"#), "host "),
        (parse(r#"{"host":"ftp://api.test"}"#), "host "),
        (parse(r#"{"host":"http://api.test"}"#), "host uses http://"),
        (options(r#""refreshMarginSeconds":-1"#), "refreshMarginSeconds must be"),
        (
            options(r#""refreshMarginSeconds":86401"#),
            "refreshMarginSeconds must be",
        ),
        (options(r#""timeoutMs":0"#), "timeoutMs must be"),
        (options(r#""timeoutMs":1.5"#), "timeoutMs must be"),
        (options(r#""timeoutMs":2147483648"#), "timeoutMs must be"),
        (options(r#""retries":11"#), "retries must be"),
        (options(r#""retries":-1"#), "retries must be"),
        (options(r#""retries":0.5"#), "retries must be"),
        (options(r#""maxRetryAfterSeconds":-1"#), "maxRetryAfterSeconds must be"),
        (options(r#""paths":{"login":"auth/login"}"#), "paths.login must be"),
        (options(r#""paths":{"login":"/a#b"}"#), "paths.login must be"),
        (
            options(r#""paths":{"refresh":"//evil.test/x"}"#),
            "paths.refresh must be",
        ),
        (options(r#""paths":{"revoke":"/a b"}"#), "paths.revoke must be"),
        (options(r#""storageKey":"""#), "storageKey must be"),
        (
            options(&format!(r#""storageKey":"{}""#, "k".repeat(513))),
            "storageKey must be",
        ),
        (
            options(r#""allowedOrigins":["https://ok.test","https://x.test/path"]"#),
            "allowedOrigins[1]",
        ),
        (
            options(r#""allowedOrigins":["http://cdn.test"]"#),
            "allowedOrigins[0] uses http://",
        ),
        (options(r#""allowedOrigins":["not an origin"]"#), "allowedOrigins[0]"),
        (
            options(&format!(r#""credentials":{{"username":"","password":"{PASSWORD}"}}"#)),
            "credentials.username",
        ),
        (
            options(r#""credentials":{"username":"api-user","password":""}"#),
            "credentials.password",
        ),
    ];
    // Numbers JSON cannot hold.
    let mut cases = cases;
    for (key, value) in [
        ("refreshMarginSeconds", f64::NAN),
        ("timeoutMs", f64::INFINITY),
        ("retries", f64::NAN),
        ("maxRetryAfterSeconds", f64::INFINITY),
    ] {
        let o = options("");
        Reflect::set(&o, &key.into(), &value.into()).unwrap();
        cases.push((o, key));
    }
    for (o, expected) in cases {
        let (made, d) = construct(&o);
        let e = match made {
            Ok(_) => panic!("new Core({}) did not throw", show(&o)),
            Err(e) => desc(&e),
        };
        assert_eq!(
            (e.code.as_str(), e.name.as_str()),
            ("CONFIG_ERROR", "ConfigError"),
            "{e:?}"
        );
        assert_eq!((e.status, e.retryable, &e.cause), (0.0, false, &None), "{e:?}");
        assert!(
            e.message.starts_with(expected),
            "{:?} should start with {expected:?}",
            e.message
        );
        assert!(!e.message.contains(PASSWORD), "{e:?}");
        assert_eq!(built(&d).length(), 1, "one descriptor for {}", show(&o));
        assert_eq!(take_log(&d).length(), 0, "no output for {}", show(&o));
    }
    // What the checks above must not refuse.
    for o in [
        parse(r#"{"host":"http://localhost:8080"}"#),
        parse(r#"{"host":"http://127.0.0.1:8080/base/"}"#),
        parse(r#"{"host":"http://api.internal","allowInsecureHttp":true,"allowedOrigins":["http://cdn.internal"]}"#),
        options(r#""refreshMarginSeconds":0,"timeoutMs":1,"retries":0,"maxRetryAfterSeconds":0"#),
    ] {
        S::new(&o);
    }
}

#[wasm_bindgen_test]
fn login_arguments_are_checked_before_anything_is_sent() {
    let s = S::new(&options(""));
    let e = s.throws("login", args![T0, "", PASSWORD]);
    assert_eq!(e.code, "CONFIG_ERROR");
    assert!(e.message.starts_with("login() needs a non-empty"), "{e:?}");
    let e = s.throws("login", args![T0, "api-user", ""]);
    assert_eq!(e.code, "CONFIG_ERROR");
    // Neither given and no credentials configured.
    let e = s.throws("login", args![T0, JsValue::UNDEFINED, JsValue::UNDEFINED]);
    assert_eq!(e.code, "CONFIG_ERROR");
    assert!(e.message.contains("options.credentials"), "{e:?}");
    // restore() without storage.
    let e = s.throws("restore", args![T0]);
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("CONFIG_ERROR", "restore() needs options.storage")
    );
    assert!(s.take().is_empty());
}

// ----- login ---------------------------------------------------------------------------------

#[wasm_bindgen_test]
fn login_sends_exactly_one_request_and_arms_a_kept_timer() {
    let s = S::new(&options(r#""timeoutMs":5000"#));
    let user = "api-\"user\"\u{e9}\\";
    let flight = num(&s.ok("login", args![T0, user, PASSWORD]));
    assert!(flight >= 1.0 && flight.fract() == 0.0, "{flight}");
    let calls = s.take();
    assert_eq!(names(&calls), ["send", "arm"], "{calls:?}");
    let send = &calls[0];
    let io = num(send.arg(0));
    assert!(io >= 1.0 && io != flight, "{send:?}");
    assert_eq!(num(send.arg(1)), 0.0, "endpoint: login");
    assert_eq!(text(send.arg(2)), "https://api.test/v2/auth/login");
    let body = parse(&text(send.arg(3)));
    let keys: Vec<String> = js_sys::Object::keys(body.unchecked_ref::<js_sys::Object>())
        .iter()
        .map(|k| text(&k))
        .collect();
    assert_eq!(keys, ["username", "password"]);
    assert_eq!(text(&get(&body, "username")), user);
    assert_eq!(text(&get(&body, "password")), PASSWORD);
    assert!(send.arg(4).is_undefined(), "no bearer on a login: {send:?}");
    assert_eq!(num(send.arg(5)), MAX_AUTH_BYTES);
    assert_eq!(
        (num(calls[1].arg(0)), calls[1].arg(1).as_bool()),
        (T0 + 5_000.0, Some(true))
    );
    assert_no_secret(&calls);
    // Nothing settles before the answer, and asking again changes nothing.
    assert_info(&s.ok("info", args![]), "anonymous", None, None);
    assert!(s.take().is_empty());
}

#[wasm_bindgen_test]
fn a_success_envelope_settles_done_and_emits_tokens_with_dates() {
    let s = S::new(&options(r#""refreshMarginSeconds":60"#));
    let (flight, io) = s.login(T0, "api-user", PASSWORD);
    let calls = s.reply(T0 + 10.0, io, 200, JSON_BODY, first_pair());
    assert_eq!(names(&calls), ["event", "settle", "arm"], "{calls:?}");
    let event = &calls[0];
    assert_eq!(num(event.arg(0)), TOKENS);
    assert_eq!(text(event.arg(2)), "login");
    assert_info(event.arg(1), "active", Some(123_456.0), Some((T0 + HOUR, T0 + WEEK)));
    assert_settled(&calls, flight, DONE);
    // The idle auto-refresh: refreshMarginSeconds before the access token expires.
    assert_eq!(
        (num(calls[2].arg(0)), calls[2].arg(1).as_bool()),
        (T0 + HOUR - 60_000.0, Some(false))
    );
    assert_no_secret(&calls);

    assert_info(
        &s.ok("result", args![]),
        "active",
        Some(123_456.0),
        Some((T0 + HOUR, T0 + WEEK)),
    );
    assert_info(
        &s.ok("info", args![]),
        "active",
        Some(123_456.0),
        Some((T0 + HOUR, T0 + WEEK)),
    );
    // token(): the pair's serial, its text from token_text(), no background refresh.
    assert_eq!(s.token(T0 + 20.0, 0, 0, 0), Token::Ready(1.0));
    assert_eq!(s.token_text().as_deref(), Some(ACCESS));
    assert_eq!(num(&s.prop("background")), 0.0);
    assert!(s.take().is_empty(), "nothing to do, no timer change");
    // A late duplicate of the answer is ignored.
    assert!(s.reply(T0 + 30.0, io, 200, JSON_BODY, first_pair()).is_empty());
}

#[wasm_bindgen_test]
fn a_server_clock_ahead_moves_the_timer_not_the_info() {
    let s = S::new(&options(r#""refreshMarginSeconds":60"#));
    let (flight, io) = s.login(T0, "api-user", PASSWORD);
    // The server's clock is two hours ahead; its pair lasts an hour from its own now.
    let server_now = T0 + 2.0 * HOUR;
    let body = envelope(ACCESS, REFRESH, server_now + HOUR, server_now + WEEK, None);
    s.ok(
        "auth_reply",
        args![
            T0,
            io,
            200u32,
            false,
            http_date(server_now),
            JsValue::UNDEFINED,
            JSON_BODY,
            body
        ],
    );
    let calls = s.take();
    assert_settled(&calls, flight, DONE);
    assert_info(
        calls[0].arg(1),
        "active",
        None,
        Some((server_now + HOUR, server_now + WEEK)),
    );
    let arm = calls.iter().find(|c| c.m == "arm").unwrap();
    assert_eq!(num(arm.arg(0)), T0 + HOUR - 60_000.0, "{arm:?}");
}

#[wasm_bindgen_test]
fn a_second_login_supersedes_the_first_and_rejoin_finds_it() {
    let s = S::new(&options(""));
    let (first, io1) = s.login(T0, "a", PASSWORD);
    let second = num(&s.ok("login", args![T0 + 1.0, "b", PASSWORD]));
    let calls = s.take();
    assert_eq!(names(&calls), ["cancel", "settle", "send", "arm"], "{calls:?}");
    assert_eq!(num(calls[0].arg(0)), io1);
    assert_settled(&calls, first, AGAIN);
    assert_ne!(num(calls[2].arg(0)), io1);
    assert_eq!(num(&s.ok("rejoin", args![])), second);
    // The cancelled attempt's answer is ignored.
    assert!(s.reply(T0 + 2.0, io1, 200, JSON_BODY, first_pair()).is_empty());
    let io2 = num(calls[2].arg(0));
    let calls = s.reply(T0 + 3.0, io2, 200, JSON_BODY, first_pair());
    assert_settled(&calls, second, DONE);
    // Nothing left to join: read `result`.
    assert_eq!(num(&s.ok("rejoin", args![])), 0.0);
}

// ----- failures of the auth request ---------------------------------------------------------

fn error_envelope(name: &str, code: &str, message: &str) -> JsValue {
    let o = js_sys::Object::new();
    let e = js_sys::Object::new();
    Reflect::set(&e, &"name".into(), &name.into()).unwrap();
    Reflect::set(&e, &"code".into(), &code.into()).unwrap();
    Reflect::set(&e, &"message".into(), &message.into()).unwrap();
    Reflect::set(&o, &"error".into(), &e).unwrap();
    // Through JSON, as session.js hands it over.
    parse(&text(&JSON::stringify(&o).unwrap().into()))
}

/// A fresh session (no retries) whose login got `status` and `body`: the failure.
fn failed_login(status: u16, kind: u32, body: JsValue) -> Desc {
    let s = S::new(&options(r#""retries":0"#));
    let (flight, io) = s.login(T0, "api-user", PASSWORD);
    let calls = s.reply(T0 + 10.0, io, status, kind, body);
    assert_eq!(names(&calls), ["settle", "arm"], "{calls:?}");
    assert_eq!((num(calls[1].arg(0)), calls[1].arg(1).as_bool()), (-1.0, Some(false)));
    assert_no_secret(&calls);
    assert_info(&s.ok("info", args![]), "anonymous", None, None);
    assert_settled(&calls, flight, FAILED).unwrap()
}

#[wasm_bindgen_test]
fn error_envelopes_settle_failed_with_the_servers_code_and_no_secret() {
    let e = failed_login(
        401,
        JSON_BODY,
        error_envelope(
            "UnauthorizedError",
            "UNAUTHORIZED",
            &format!("bad password {PASSWORD} for api-user"),
        ),
    );
    assert_eq!(
        (e.code.as_str(), e.name.as_str()),
        ("UNAUTHORIZED", "UnauthorizedError")
    );
    assert_eq!((e.status, e.retryable, &e.cause), (401.0, false, &None));
    assert_eq!(e.message, "bad password [redacted] for api-user");

    // A secret in the name or code: the client's generic ones instead.
    let e = failed_login(
        403,
        JSON_BODY,
        error_envelope(&format!("E{PASSWORD}"), "FORBIDDEN", "no"),
    );
    assert_eq!(
        (e.code.as_str(), e.name.as_str(), e.status),
        ("SERVER_ERROR", "ServerError", 403.0)
    );
    let e = failed_login(
        403,
        JSON_BODY,
        error_envelope("ForbiddenError", &format!("X_{PASSWORD}"), "no"),
    );
    assert_eq!((e.code.as_str(), e.name.as_str()), ("SERVER_ERROR", "ServerError"));

    // Redacted before it is shortened: no prefix of the password survives the cut.
    let long = format!("{}{PASSWORD}{}", "x".repeat(290), "y".repeat(10_000));
    let e = failed_login(400, JSON_BODY, error_envelope("BadRequestError", "BAD_REQUEST", &long));
    assert!(e.message.chars().count() <= 301, "{}", e.message.len());
    assert!(!e.message.contains(&PASSWORD[..6]), "{}", e.message);
    // Control and bidi characters are not shown.
    let e = failed_login(
        400,
        JSON_BODY,
        error_envelope("E", "BAD", "line\r\nForged: yes\u{202e}"),
    );
    assert_eq!(e.message, "lineForged: yes");

    // A 5xx envelope is retryable; its code is still the server's.
    let e = failed_login(
        503,
        JSON_BODY,
        error_envelope("MaintenanceError", "MAINTENANCE", "later"),
    );
    assert_eq!((e.code.as_str(), e.status, e.retryable), ("MAINTENANCE", 503.0, true));
    // An error envelope wins over a 2xx status.
    let e = failed_login(200, JSON_BODY, error_envelope("E", "LOCKED", "locked"));
    assert_eq!((e.code.as_str(), e.status), ("LOCKED", 200.0));
}

#[wasm_bindgen_test]
fn refresh_errors_redact_the_tokens_and_a_rejected_refresh_ends_the_session() {
    let s = S::logged_in(&options(r#""retries":0"#));
    assert_eq!(s.token(T0 + 20.0, 0, 0, 0), Token::Ready(1.0));
    let flight = num(&s.ok("refresh", args![T0 + HOUR / 2.0]));
    let calls = s.take();
    assert_eq!(names(&calls), ["send", "arm"], "{calls:?}");
    assert_eq!(num(calls[0].arg(1)), 1.0, "endpoint: refresh");
    assert_eq!(text(calls[0].arg(2)), "https://api.test/v2/auth/refresh");
    assert_eq!(text(calls[0].arg(3)), format!(r#"{{"refresh_token":"{REFRESH}"}}"#));
    assert!(calls[0].arg(4).is_undefined());
    let message = format!("token {REFRESH} (with {ACCESS}) for {PASSWORD} is not allowed");
    let calls = s.reply(
        T0 + HOUR / 2.0,
        num(calls[0].arg(0)),
        403,
        JSON_BODY,
        error_envelope("ForbiddenError", "FORBIDDEN", &message),
    );
    let e = assert_settled(&calls, flight, FAILED).unwrap();
    assert_eq!((e.code.as_str(), e.status), ("FORBIDDEN", 403.0));
    // The password was never this session's (it was passed to login): only the tokens go.
    assert_eq!(
        e.message,
        format!("token [redacted] (with [redacted]) for {PASSWORD} is not allowed")
    );
    // Still active: a 403 is not a rejected token.
    assert_info(
        &s.ok("info", args![]),
        "active",
        Some(123_456.0),
        Some((T0 + HOUR, T0 + WEEK)),
    );

    // A 401 rejects the refresh token: `expired`, then SESSION_EXPIRED with the status.
    let flight = num(&s.ok("refresh", args![T0 + HOUR / 2.0]));
    let io = num(s.take()[0].arg(0));
    let body = error_envelope("UnauthorizedError", "UNAUTHORIZED", "refresh token revoked");
    let calls = s.reply(T0 + HOUR / 2.0, io, 401, JSON_BODY, body);
    assert_eq!(names(&calls), ["event", "settle", "arm"], "{calls:?}");
    assert_eq!(num(calls[0].arg(0)), EXPIRED);
    assert_eq!(text(calls[0].arg(2)), "");
    assert_info(calls[0].arg(1), "expired", None, None);
    let e = assert_settled(&calls, flight, FAILED).unwrap();
    assert_eq!(
        (e.code.as_str(), e.name.as_str(), e.status),
        ("SESSION_EXPIRED", "SessionExpiredError", 401.0)
    );
    assert_eq!((num(calls[2].arg(0)), calls[2].arg(1).as_bool()), (-1.0, Some(false)));
    let e = s.throws("token", args![T0 + HOUR / 2.0, 0u32, 0u32, 0u32]);
    assert_eq!(e.code, "SESSION_EXPIRED");
    assert_eq!(s.token_text(), None);
}

#[wasm_bindgen_test]
fn statuses_redirects_and_non_envelopes_map_to_client_codes() {
    let e = failed_login(500, NOT_JSON, JsValue::UNDEFINED);
    assert_eq!((e.code.as_str(), e.status, e.retryable), ("SERVER_ERROR", 500.0, true));
    let e = failed_login(429, EMPTY, JsValue::UNDEFINED);
    assert_eq!((e.code.as_str(), e.status, e.retryable), ("RATE_LIMITED", 429.0, true));
    let e = failed_login(404, JSON_BODY, parse(r#"{"message":"no such route"}"#));
    assert_eq!(
        (e.code.as_str(), e.name.as_str(), e.status, e.retryable),
        ("HTTP_ERROR", "HttpError", 404.0, false)
    );
    let e = failed_login(200, NOT_JSON, JsValue::UNDEFINED);
    assert_eq!((e.code.as_str(), e.status), ("INVALID_RESPONSE", 200.0));
    let e = failed_login(200, EMPTY, JsValue::UNDEFINED);
    assert_eq!((e.code.as_str(), e.status), ("INVALID_RESPONSE", 200.0));
    let e = failed_login(200, JSON_BODY, parse(r#"{"success":false,"data":{}}"#));
    assert_eq!(e.code, "INVALID_RESPONSE");
    // An error envelope whose code is not a non-empty string is no error envelope.
    let e = failed_login(403, JSON_BODY, parse(r#"{"error":{"code":403,"message":"x"}}"#));
    assert_eq!((e.code.as_str(), e.status), ("HTTP_ERROR", 403.0));
    let e = failed_login(403, JSON_BODY, parse(r#"{"error":{"code":"","message":"x"}}"#));
    assert_eq!(e.code, "HTTP_ERROR");

    // A redirect (3xx, or a browser's opaqueredirect) is never followed.
    let s = S::new(&options(r#""retries":0"#));
    let (flight, io) = s.login(T0, "api-user", PASSWORD);
    s.ok(
        "auth_reply",
        args![
            T0,
            io,
            302u32,
            true,
            JsValue::UNDEFINED,
            JsValue::UNDEFINED,
            EMPTY,
            JsValue::UNDEFINED
        ],
    );
    let e = assert_settled(&s.take(), flight, FAILED).unwrap();
    assert_eq!(
        (e.code.as_str(), e.status, e.retryable),
        ("REDIRECT_BLOCKED", 302.0, false)
    );
}

#[wasm_bindgen_test]
fn auth_failures_timeouts_and_retries() {
    // No response: network (with the cause's name and code, cleaned), not a Response, too large.
    for (kind, name, code, expected, retryable) in [
        (0u32, Some("TypeError"), Some("ECONNREFUSED"), "NETWORK_ERROR", true),
        (0, Some("Type Error\n<b>"), Some("E CONN"), "NETWORK_ERROR", true),
        (0, None, None, "NETWORK_ERROR", true),
        (1, None, None, "INVALID_RESPONSE", false),
        (2, None, None, "RESPONSE_TOO_LARGE", false),
    ] {
        let s = S::new(&options(r#""retries":0"#));
        let (flight, io) = s.login(T0, "api-user", PASSWORD);
        s.ok("auth_failed", args![T0 + 1.0, io, kind, name, code]);
        let e = assert_settled(&s.take(), flight, FAILED).unwrap();
        assert_eq!(
            (e.code.as_str(), e.retryable, e.status),
            (expected, retryable, 0.0),
            "{e:?}"
        );
        match name {
            Some("TypeError") => assert_eq!(e.cause, Some(("TypeError".into(), Some("ECONNREFUSED".into())))),
            Some(_) => assert_eq!(e.cause, Some(("TypeErrorb".into(), Some("ECONN".into())))),
            None => assert_eq!(e.cause, None),
        }
    }

    // The deadline: the attempt is cancelled and fails with TIMEOUT.
    let s = S::new(&options(r#""retries":0,"timeoutMs":5000"#));
    let (flight, io) = s.login(T0, "api-user", PASSWORD);
    s.ok("timeout", args![T0 + 4_999.0]);
    let calls = s.take();
    assert_eq!(
        names(&calls),
        ["arm"],
        "an early timer re-arms the same deadline: {calls:?}"
    );
    assert_eq!(
        (num(calls[0].arg(0)), calls[0].arg(1).as_bool()),
        (T0 + 5_000.0, Some(true))
    );
    s.ok("timeout", args![T0 + 5_000.0]);
    let calls = s.take();
    // The timer that fired is not re-armed: nothing else is due.
    assert_eq!(names(&calls), ["cancel", "settle"], "{calls:?}");
    assert_eq!(num(calls[0].arg(0)), io);
    let e = assert_settled(&calls, flight, FAILED).unwrap();
    assert_eq!(
        (e.code.as_str(), e.name.as_str(), e.retryable),
        ("TIMEOUT", "TimeoutError", true)
    );
    assert!(
        s.reply(T0 + 6_000.0, io, 200, JSON_BODY, first_pair()).is_empty(),
        "too late"
    );

    // A retryable failure waits (Retry-After, within maxRetryAfterSeconds), then sends again.
    let s = S::new(&options(r#""retries":1,"timeoutMs":5000"#));
    let (flight, io) = s.login(T0, "api-user", PASSWORD);
    s.ok(
        "auth_reply",
        args![
            T0 + 100.0,
            io,
            503u32,
            false,
            JsValue::UNDEFINED,
            "2",
            NOT_JSON,
            JsValue::UNDEFINED
        ],
    );
    let calls = s.take();
    assert_eq!(names(&calls), ["arm"], "{calls:?}");
    assert_eq!(
        (num(calls[0].arg(0)), calls[0].arg(1).as_bool()),
        (T0 + 2_100.0, Some(true))
    );
    s.ok("timeout", args![T0 + 2_100.0]);
    let calls = s.take();
    assert_eq!(names(&calls), ["send", "arm"], "{calls:?}");
    let io2 = num(calls[0].arg(0));
    assert_ne!(io2, io);
    assert_eq!(text(calls[0].arg(2)), "https://api.test/v2/auth/login");
    assert_eq!(
        (num(calls[1].arg(0)), calls[1].arg(1).as_bool()),
        (T0 + 7_100.0, Some(true))
    );
    let calls = s.reply(T0 + 2_200.0, io2, 200, JSON_BODY, first_pair());
    assert_settled(&calls, flight, DONE);

    // A Retry-After over maxRetryAfterSeconds fails at once with RATE_LIMITED.
    let s = S::new(&options(r#""retries":2,"maxRetryAfterSeconds":30"#));
    let (flight, io) = s.login(T0, "api-user", PASSWORD);
    s.ok(
        "auth_reply",
        args![
            T0,
            io,
            429u32,
            false,
            JsValue::UNDEFINED,
            "120",
            EMPTY,
            JsValue::UNDEFINED
        ],
    );
    let e = assert_settled(&s.take(), flight, FAILED).unwrap();
    assert_eq!((e.code.as_str(), e.status), ("RATE_LIMITED", 429.0));
    assert!(e.message.contains("120 s"), "{e:?}");
}

// ----- values no JSON.parse returns ---------------------------------------------------------

#[wasm_bindgen_test]
fn auth_bodies_that_are_not_json_shaped_are_invalid_responses_and_never_throw() {
    let good = first_pair();
    let cases = hostile_auth(&good, PASSWORD);
    assert!(cases.length() > 30);
    // One session for all: a throw that escaped would leave it unusable.
    let s = S::new(&options(r#""retries":0"#));
    for case in cases.iter() {
        let case: Array = case.unchecked_into();
        let name = text(&case.get(0));
        let (flight, io) = s.login(T0, "api-user", PASSWORD);
        let r = s.apply(
            "auth_reply",
            args![
                s.d.clone(),
                T0,
                io,
                200u32,
                false,
                JsValue::UNDEFINED,
                JsValue::UNDEFINED,
                JSON_BODY,
                case.get(1)
            ],
        );
        if let Err(e) = r {
            panic!("{name}: auth_reply threw {}", show(&e));
        }
        let calls = s.take();
        assert_eq!(names(&calls), ["settle", "arm"], "{name}: {calls:?}");
        let e = assert_settled(&calls, flight, FAILED).unwrap();
        assert_eq!(
            (e.code.as_str(), e.status),
            ("INVALID_RESPONSE", 200.0),
            "{name}: {e:?}"
        );
        assert_no_secret(&calls);
    }
    // And it still works.
    let (flight, io) = s.login(T0, "api-user", PASSWORD);
    assert_settled(&s.reply(T0, io, 200, JSON_BODY, first_pair()), flight, DONE);
}

#[wasm_bindgen_test]
fn junk_where_the_protocol_reads_nothing_does_not_spoil_a_good_pair() {
    let good = first_pair();
    for case in harmless_auth(&good, PASSWORD).iter() {
        let case: Array = case.unchecked_into();
        let name = text(&case.get(0));
        let s = S::new(&options(r#""retries":0"#));
        let (flight, io) = s.login(T0, "api-user", PASSWORD);
        let r = s.apply(
            "auth_reply",
            args![
                s.d.clone(),
                T0,
                io,
                200u32,
                false,
                JsValue::UNDEFINED,
                JsValue::UNDEFINED,
                JSON_BODY,
                case.get(1)
            ],
        );
        if let Err(e) = r {
            panic!("{name}: auth_reply threw {}", show(&e));
        }
        let calls = s.take();
        assert_settled(&calls, flight, DONE);
        assert_info(calls[0].arg(1), "active", Some(123_456.0), Some((T0 + HOUR, T0 + WEEK)));
    }
}

// ----- storage -------------------------------------------------------------------------------

const STORED: &str = r#""storage":true,"storageKey":"session-1","timeoutMs":5000"#;

/// A session with storage whose `restore()` is waiting: the flight and the read's io.
fn restoring() -> (S, f64, f64) {
    let s = S::new(&options(STORED));
    let flight = num(&s.ok("restore", args![T0]));
    let calls = s.take();
    assert_eq!(names(&calls), ["storage", "arm"], "{calls:?}");
    let c = &calls[0];
    assert_eq!(
        (num(c.arg(0)), text(c.arg(2))),
        (0.0, "session-1".to_owned()),
        "a get: {c:?}"
    );
    assert!(c.arg(3).is_undefined(), "{c:?}");
    assert_eq!(
        (num(calls[1].arg(0)), calls[1].arg(1).as_bool()),
        (T0 + 5_000.0, Some(true))
    );
    let io = num(c.arg(1));
    (s, flight, io)
}

/// `storage_reply` at `T0 + 1`: the calls it made.
fn storage_reply(s: &S, io: f64, kind: u32, value: JsValue, cause: Option<(&str, &str)>) -> Vec<Call> {
    storage_reply_at(s, T0 + 1.0, io, kind, value, cause)
}

fn storage_reply_at(s: &S, now: f64, io: f64, kind: u32, value: JsValue, cause: Option<(&str, &str)>) -> Vec<Call> {
    let (name, code) = cause.map_or((None, None), |(n, c)| (Some(n), Some(c)));
    let r = s.ok("storage_reply", args![now, io, kind, value, name, code]);
    assert!(r.is_undefined());
    s.take()
}

#[wasm_bindgen_test]
fn restore_installs_a_stored_record() {
    let (s, flight, io) = restoring();
    let calls = storage_reply(&s, io, 1, record(T0 + HOUR, T0 + WEEK), None);
    assert_eq!(names(&calls), ["event", "settle", "arm"], "{calls:?}");
    assert_eq!(
        (num(calls[0].arg(0)), text(calls[0].arg(2))),
        (TOKENS, "restore".to_owned())
    );
    assert_info(calls[0].arg(1), "active", Some(7.0), Some((T0 + HOUR, T0 + WEEK)));
    assert_settled(&calls, flight, DONE);
    assert_eq!(
        (num(calls[2].arg(0)), calls[2].arg(1).as_bool()),
        (T0 + HOUR - 300_000.0, Some(false))
    );
    assert_no_secret(&calls);
    assert_eq!(s.token(T0 + 2.0, 0, 0, 0), Token::Ready(1.0));
    assert_eq!(s.token_text().as_deref(), Some(ACCESS));
    // The default key is the host (origin and path prefix)...
    let s = S::new(&options(r#""storage":true"#));
    s.ok("restore", args![T0]);
    assert_eq!(text(s.take()[0].arg(2)), "auth-session:https://api.test/v2");
    // ...and with credentials, the host and the account's fingerprint (never the username).
    let s = S::new(&options(&format!(
        r#""storage":true,"credentials":{{"username":"api-user","password":"{PASSWORD}"}}"#
    )));
    s.ok("restore", args![T0]);
    let key = text(s.take()[0].arg(2));
    assert_eq!(
        key,
        format!("auth-session:https://api.test/v2#{}", fingerprint::account("api-user"))
    );
    assert!(!key.contains("api-user"), "{key}");
}

/// A session with credentials (user "api-user") and storage under "session-1", whose
/// `restore()` is waiting: the flight and the read's io.
fn restoring_as_api_user() -> (S, f64, f64) {
    let s = S::new(&options(&format!(
        r#"{STORED},"credentials":{{"username":"api-user","password":"{PASSWORD}"}}"#
    )));
    let flight = num(&s.ok("restore", args![T0]));
    let calls = s.take();
    assert_eq!(names(&calls), ["storage", "arm"], "{calls:?}");
    assert_eq!(
        (num(calls[0].arg(0)), text(calls[0].arg(2))),
        (0.0, "session-1".to_owned())
    );
    (s, flight, num(calls[0].arg(1)))
}

#[wasm_bindgen_test]
fn a_record_of_the_previous_format_restores_nothing_and_is_not_reported() {
    let (s, flight, io) = restoring();
    let calls = storage_reply(&s, io, 1, v1_record(T0 + HOUR, T0 + WEEK), None);
    assert_eq!(names(&calls), ["settle", "arm"], "no error event: {calls:?}");
    assert_settled(&calls, flight, NOTHING);
    assert_eq!((num(calls[1].arg(0)), calls[1].arg(1).as_bool()), (-1.0, Some(false)));
    assert_info(&s.ok("info", args![]), "anonymous", None, None);
    assert_eq!(s.token_text(), None);
    assert_eq!(
        s.throws("token", args![T0 + 2.0, 0u32, 0u32, 0u32]).code,
        "NOT_AUTHENTICATED"
    );

    // A login's versioning read finds it: not reported either, and the new record is
    // written over it as the first version.
    let (_, io) = s.login(T0 + 10.0, "api-user", PASSWORD);
    let calls = s.reply(T0 + 20.0, io, 200, JSON_BODY, first_pair());
    assert_eq!(names(&calls), ["event", "storage", "arm"], "{calls:?}");
    assert_eq!(num(calls[1].arg(0)), 0.0, "a get: {calls:?}");
    let calls = storage_reply_at(
        &s,
        T0 + 30.0,
        num(calls[1].arg(1)),
        1,
        v1_record(T0 + HOUR, T0 + WEEK),
        None,
    );
    assert_eq!(names(&calls), ["storage", "arm"], "no error event: {calls:?}");
    assert_eq!(num(calls[0].arg(0)), 1.0, "a put: {calls:?}");
    let written = parse(&text(calls[0].arg(3)));
    assert_eq!((num(&get(&written, "v")), num(&get(&written, "version"))), (2.0, 1.0));
}

#[wasm_bindgen_test]
fn a_record_of_another_account_or_host_restores_nothing() {
    let mine = fingerprint::account("api-user");
    let theirs = fingerprint::account("someone-else");
    assert_ne!(mine, theirs);
    for (name, place) in [
        (
            "another account, under the same key",
            Place {
                account: Some(&theirs),
                version: 9,
                ..HERE
            },
        ),
        ("no account, with credentials configured", Place { version: 9, ..HERE }),
        (
            "this account of another host",
            Place {
                origin: "https://api.test/v1",
                account: Some(&mine),
                version: 9,
            },
        ),
    ] {
        let (s, flight, io) = restoring_as_api_user();
        let calls = storage_reply(&s, io, 1, record_of(&place), None);
        assert_eq!(
            names(&calls),
            ["settle", "arm"],
            "{name}: absent, not garbage: {calls:?}"
        );
        assert_settled(&calls, flight, NOTHING);
        assert_info(&s.ok("info", args![]), "anonymous", None, None);
        assert_eq!(s.token_text(), None, "{name}");
    }
    // The same record of this account and host is restored.
    let (s, flight, io) = restoring_as_api_user();
    let place = Place {
        account: Some(&mine),
        version: 9,
        ..HERE
    };
    let calls = storage_reply(&s, io, 1, record_of(&place), None);
    assert_eq!(names(&calls), ["event", "settle", "arm"], "{calls:?}");
    assert_eq!(text(calls[0].arg(2)), "restore");
    assert_settled(&calls, flight, DONE);
    assert_eq!(s.token(T0 + 2.0, 0, 0, 0), Token::Ready(1.0));
    assert_eq!(s.token_text().as_deref(), Some(ACCESS));
}

#[wasm_bindgen_test]
fn restore_reports_garbage_failures_and_nothing() {
    // Garbage (session.js: not JSON, or not an object): an error event, and nothing restored.
    let (s, flight, io) = restoring();
    let calls = storage_reply(&s, io, 2, JsValue::UNDEFINED, None);
    assert_eq!(names(&calls), ["event", "settle", "arm"], "{calls:?}");
    assert_eq!(num(calls[0].arg(0)), ERROR);
    let e = desc(calls[0].arg(1));
    assert_eq!((e.code.as_str(), e.name.as_str()), ("STORAGE_ERROR", "StorageError"));
    assert_eq!(e.message, "the stored session record is not one this client can read");
    assert_settled(&calls, flight, NOTHING);

    // Found nothing.
    let (s, flight, io) = restoring();
    let calls = storage_reply(&s, io, 0, JsValue::UNDEFINED, None);
    assert_eq!(names(&calls), ["settle", "arm"], "{calls:?}");
    assert_settled(&calls, flight, NOTHING);

    // The adapter failed: the flight fails, with the cause's name and code.
    let (s, flight, io) = restoring();
    let calls = storage_reply(&s, io, 3, JsValue::UNDEFINED, Some(("QuotaExceededError", "E42")));
    let e = assert_settled(&calls, flight, FAILED).unwrap();
    assert_eq!(e.code, "STORAGE_ERROR");
    assert_eq!(e.cause, Some(("QuotaExceededError".into(), Some("E42".into()))));

    // A record whose refresh token has expired is no session.
    let (s, flight, io) = restoring();
    let calls = storage_reply(&s, io, 1, record(T0 - HOUR, T0 - 1.0), None);
    assert_eq!(names(&calls), ["settle", "arm"], "{calls:?}");
    assert_settled(&calls, flight, NOTHING);

    // No answer within timeoutMs: cancelled, STORAGE_ERROR; a late answer is ignored.
    let (s, flight, io) = restoring();
    s.ok("timeout", args![T0 + 5_000.0]);
    let calls = s.take();
    // The timer that fired is not re-armed: nothing else is due.
    assert_eq!(names(&calls), ["cancel", "settle"], "{calls:?}");
    assert_eq!(num(calls[0].arg(0)), io);
    let e = assert_settled(&calls, flight, FAILED).unwrap();
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("STORAGE_ERROR", "the storage adapter did not answer within timeoutMs")
    );
    assert!(storage_reply(&s, io, 1, record(T0 + HOUR, T0 + WEEK), None).is_empty());
    assert_info(&s.ok("info", args![]), "anonymous", None, None);
}

#[wasm_bindgen_test]
fn stored_records_that_are_not_json_shaped_are_garbage_and_never_throw() {
    let good = record(T0 + HOUR, T0 + WEEK);
    let cases = hostile_record(&good, REFRESH);
    assert!(cases.length() > 25);
    let s = S::new(&options(STORED));
    for case in cases.iter() {
        let case: Array = case.unchecked_into();
        let name = text(&case.get(0));
        let flight = num(&s.ok("restore", args![T0]));
        let io = num(s.take()[0].arg(1));
        let r = s.apply(
            "storage_reply",
            args![
                s.d.clone(),
                T0,
                io,
                1u32,
                case.get(1),
                JsValue::UNDEFINED,
                JsValue::UNDEFINED
            ],
        );
        if let Err(e) = r {
            panic!("{name}: storage_reply threw {}", show(&e));
        }
        let calls = s.take();
        assert_eq!(names(&calls), ["event", "settle", "arm"], "{name}: {calls:?}");
        assert_eq!(desc(calls[0].arg(1)).code, "STORAGE_ERROR", "{name}");
        assert_settled(&calls, flight, NOTHING);
        assert_no_secret(&calls);
    }
    let flight = num(&s.ok("restore", args![T0]));
    let io = num(s.take()[0].arg(1));
    assert_settled(&storage_reply(&s, io, 1, good, None), flight, DONE);
}

#[wasm_bindgen_test]
fn a_new_pair_is_written_to_storage_before_the_login_settles() {
    let s = S::new(&options(STORED));
    let (flight, io) = s.login(T0, "api-user", PASSWORD);
    // The pair is in at once; the login first reads the record to learn its version.
    let calls = s.reply(T0 + 10.0, io, 200, JSON_BODY, first_pair());
    assert_eq!(names(&calls), ["event", "storage", "arm"], "{calls:?}");
    assert_eq!(text(calls[0].arg(2)), "login");
    let read = &calls[1];
    assert_eq!(
        (num(read.arg(0)), text(read.arg(2))),
        (0.0, "session-1".to_owned()),
        "a get: {read:?}"
    );
    assert!(read.arg(3).is_undefined(), "{read:?}");
    assert_eq!(
        (num(calls[2].arg(0)), calls[2].arg(1).as_bool()),
        (T0 + 5_010.0, Some(true))
    );
    assert_no_secret(&calls);
    assert_eq!(
        s.token(T0 + 10.0, 0, 0, 0),
        Token::Ready(1.0),
        "usable before the write"
    );
    assert_eq!(s.token_text().as_deref(), Some(ACCESS));
    assert!(s.take().is_empty());

    // Another instance stored version 7 meanwhile: ours is written as version 8, and the
    // record read is not adopted.
    let theirs = stored(
        &Place { version: 7, ..HERE },
        ACCESS2,
        REFRESH2,
        T0 + HOUR,
        T0 + WEEK,
        None,
    );
    let calls = storage_reply_at(&s, T0 + 20.0, num(read.arg(1)), 1, theirs, None);
    assert_eq!(names(&calls), ["storage", "arm"], "{calls:?}");
    let put = &calls[0];
    assert_eq!(
        (num(put.arg(0)), text(put.arg(2))),
        (1.0, "session-1".to_owned()),
        "a put: {put:?}"
    );
    let value = text(put.arg(3));
    assert!(!value.contains("api-user"), "{value}");
    let written = parse(&value);
    let keys: Vec<String> = js_sys::Object::keys(written.unchecked_ref::<js_sys::Object>())
        .iter()
        .map(|k| text(&k))
        .collect();
    assert_eq!(
        keys,
        [
            "v",
            "origin",
            "account",
            "version",
            "access_token",
            "refresh_token",
            "access_expires_at",
            "refresh_expires_at",
            "client_id"
        ]
    );
    assert_eq!(num(&get(&written, "v")), 2.0);
    assert_eq!(text(&get(&written, "origin")), HOST);
    // The account of whoever logged in, though no credentials are configured.
    assert_eq!(text(&get(&written, "account")), fingerprint::account("api-user"));
    assert_eq!(num(&get(&written, "version")), 8.0, "above the version read");
    assert_eq!(text(&get(&written, "access_token")), ACCESS);
    assert_eq!(text(&get(&written, "refresh_token")), REFRESH);
    assert_eq!(num(&get(&written, "access_expires_at")), T0 + HOUR);
    assert_eq!(num(&get(&written, "refresh_expires_at")), T0 + WEEK);
    assert_eq!(num(&get(&written, "client_id")), 123_456.0);
    assert_eq!(
        (num(calls[1].arg(0)), calls[1].arg(1).as_bool()),
        (T0 + 5_020.0, Some(true))
    );
    assert_no_secret(&calls);
    assert_eq!(s.token(T0 + 20.0, 0, 0, 0), Token::Ready(1.0), "no adoption");
    assert_eq!(s.token_text().as_deref(), Some(ACCESS));
    assert!(s.take().is_empty());

    // A failed write is reported, and the login still succeeds.
    let calls = storage_reply_at(
        &s,
        T0 + 30.0,
        num(put.arg(1)),
        3,
        JsValue::UNDEFINED,
        Some(("QuotaExceededError", "")),
    );
    assert_eq!(names(&calls), ["event", "settle", "arm"], "{calls:?}");
    let e = desc(calls[0].arg(1));
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("STORAGE_ERROR", "the storage adapter failed to write the session")
    );
    assert_eq!(e.cause, Some(("QuotaExceededError".into(), None)));
    assert_settled(&calls, flight, DONE);
    assert_eq!(
        (num(calls[2].arg(0)), calls[2].arg(1).as_bool()),
        (T0 + HOUR - 300_000.0, Some(false))
    );
}

/// `refresh(now)` on a logged-in session with storage: the flight, and the io of the look
/// (the read of the record) that comes before any refresh request.
fn refresh_looking(s: &S, now: f64) -> (f64, f64) {
    let flight = num(&s.ok("refresh", args![now]));
    let calls = s.take();
    assert_eq!(names(&calls), ["storage", "arm"], "a look, no request yet: {calls:?}");
    assert_eq!(
        (num(calls[0].arg(0)), text(calls[0].arg(2))),
        (0.0, "session-1".to_owned()),
        "a get: {calls:?}"
    );
    assert_eq!(
        (num(calls[1].arg(0)), calls[1].arg(1).as_bool()),
        (now + 5_000.0, Some(true))
    );
    (flight, num(calls[0].arg(1)))
}

#[wasm_bindgen_test]
fn a_rejected_refresh_adopts_a_newer_stored_pair_or_ends_the_session() {
    let now = T0 + HOUR / 2.0;
    // The pair another instance sharing the storage rotated to: a higher version.
    let newer = || {
        stored(
            &Place { version: 2, ..HERE },
            ACCESS2,
            REFRESH2,
            now + HOUR,
            now + WEEK,
            None,
        )
    };
    let adopted = |s: &S, calls: &[Call], flight: f64| {
        assert_eq!(names(calls), ["event", "settle", "arm"], "{calls:?}");
        assert_eq!(
            (num(calls[0].arg(0)), text(calls[0].arg(2))),
            (TOKENS, "adopt".to_owned())
        );
        assert_info(calls[0].arg(1), "active", None, Some((now + HOUR, now + WEEK)));
        assert_settled(calls, flight, DONE);
        assert_eq!(
            (num(calls[2].arg(0)), calls[2].arg(1).as_bool()),
            (now + HOUR - 300_000.0, Some(false)),
            "the auto-refresh of the adopted pair"
        );
        assert_no_secret(calls);
        assert_eq!(s.token(now + 30.0, 0, 0, 0), Token::Ready(2.0));
        assert_eq!(s.token_text().as_deref(), Some(ACCESS2));
    };

    // It stored its pair before this refresh: the look finds it, no refresh is sent.
    let s = S::logged_in(&options(STORED));
    let (flight, look) = refresh_looking(&s, now);
    let calls = storage_reply_at(&s, now + 10.0, look, 1, newer(), None);
    adopted(&s, &calls, flight);

    // It stored its pair after the look (which found ours): our refresh token is rejected,
    // the record is read again and its pair adopted.
    let s = S::logged_in(&options(STORED));
    let (flight, look) = refresh_looking(&s, now);
    let ours = stored(&HERE, ACCESS, REFRESH, T0 + HOUR, T0 + WEEK, Some(123_456));
    let calls = storage_reply_at(&s, now + 1.0, look, 1, ours, None);
    assert_eq!(
        names(&calls),
        ["send", "arm"],
        "not newer than the pair held: {calls:?}"
    );
    assert_eq!(num(calls[0].arg(1)), 1.0, "endpoint: refresh");
    assert_eq!(text(calls[0].arg(3)), format!(r#"{{"refresh_token":"{REFRESH}"}}"#));
    assert_eq!(
        (num(calls[1].arg(0)), calls[1].arg(1).as_bool()),
        (now + 5_001.0, Some(true))
    );
    let calls = s.reply(now + 10.0, num(calls[0].arg(0)), 401, EMPTY, JsValue::UNDEFINED);
    assert_eq!(names(&calls), ["storage", "arm"], "{calls:?}");
    assert_eq!(
        (num(calls[0].arg(0)), text(calls[0].arg(2))),
        (0.0, "session-1".to_owned()),
        "a get"
    );
    assert_eq!(
        (num(calls[1].arg(0)), calls[1].arg(1).as_bool()),
        (now + 5_010.0, Some(true))
    );
    let calls = storage_reply_at(&s, now + 20.0, num(calls[0].arg(1)), 1, newer(), None);
    adopted(&s, &calls, flight);

    // Nothing stored before the refresh, and garbage after the rejection: reported, and the
    // session is over.
    let s = S::logged_in(&options(STORED));
    let (flight, look) = refresh_looking(&s, now);
    let calls = storage_reply_at(&s, now + 1.0, look, 0, JsValue::UNDEFINED, None);
    assert_eq!(names(&calls), ["send", "arm"], "{calls:?}");
    let calls = s.reply(now + 2.0, num(calls[0].arg(0)), 401, EMPTY, JsValue::UNDEFINED);
    assert_eq!(names(&calls), ["storage", "arm"], "{calls:?}");
    let calls = storage_reply_at(&s, now + 3.0, num(calls[0].arg(1)), 2, JsValue::UNDEFINED, None);
    assert_eq!(names(&calls), ["event", "event", "settle", "arm"], "{calls:?}");
    assert_eq!(
        (num(calls[0].arg(0)), desc(calls[0].arg(1)).code),
        (ERROR, "STORAGE_ERROR".to_owned())
    );
    assert_eq!(num(calls[1].arg(0)), EXPIRED);
    assert_info(calls[1].arg(1), "expired", None, None);
    let e = assert_settled(&calls, flight, FAILED).unwrap();
    assert_eq!((e.code.as_str(), e.status), ("SESSION_EXPIRED", 401.0));
    assert_eq!((num(calls[3].arg(0)), calls[3].arg(1).as_bool()), (-1.0, Some(false)));
    assert_eq!(s.token_text(), None);
}

// ----- tokens for API calls ------------------------------------------------------------------

#[wasm_bindgen_test]
fn token_returns_a_serial_a_flight_or_zero() {
    // No session and no credentials.
    let s = S::new(&options(""));
    let e = s.throws("token", args![T0, 0u32, 0u32, 0u32]);
    assert_eq!(
        (e.code.as_str(), e.name.as_str()),
        ("NOT_AUTHENTICATED", "NotAuthenticatedError")
    );

    // With credentials, the first call logs in: a flight to await.
    let s = S::new(&options(&format!(
        r#""credentials":{{"username":"api-user","password":"{PASSWORD}"}}"#
    )));
    let Token::Wait(flight) = s.token(T0, 0, 0, 0) else {
        panic!("no flight to await")
    };
    assert_eq!(s.token_text(), None);
    let calls = s.take();
    assert_eq!(names(&calls), ["send", "arm"], "{calls:?}");
    assert_eq!(num(calls[0].arg(1)), 0.0, "a login");
    // Another caller joins the same flight.
    assert_eq!(s.token(T0, 1, 0, 0), Token::Wait(flight));
    assert!(s.take().is_empty());
    let calls = s.reply(T0 + 10.0, num(calls[0].arg(0)), 200, JSON_BODY, first_pair());
    assert_settled(&calls, flight, DONE);
    assert_eq!(s.token(T0 + 20.0, 0, 1, 1), Token::Ready(1.0));
    assert_eq!(s.token_text().as_deref(), Some(ACCESS));
    assert_eq!(num(&s.prop("background")), 0.0);
    // After a final failure: 0, rethrow what was awaited.
    assert_eq!(s.token(T0 + 20.0, 0, 3, 1), Token::Rethrow);
    // After a retryable one, a fetch (lenient) still gets a token that is valid.
    assert_eq!(s.token(T0 + 20.0, 1, 2, 1), Token::Ready(1.0));
    assert_eq!(s.token(T0 + 20.0, 0, 2, 1), Token::Rethrow, "strict does not");
}

#[wasm_bindgen_test]
fn background_refresh_and_the_replay_after_a_401() {
    let s = S::logged_in(&options(r#""refreshMarginSeconds":600"#));
    // Inside the margin with five minutes left: the token now, a refresh behind it.
    let now = T0 + HOUR - 300_000.0;
    assert_eq!(s.token(now, 2, 0, 0), Token::Ready(1.0));
    assert_eq!(s.token_text().as_deref(), Some(ACCESS));
    let background = num(&s.prop("background"));
    assert!(background > 0.0);
    let calls = s.take();
    assert_eq!(names(&calls), ["send", "arm"], "{calls:?}");
    assert_eq!(num(calls[0].arg(1)), 1.0, "a refresh");
    assert_eq!(text(calls[0].arg(3)), format!(r#"{{"refresh_token":"{REFRESH}"}}"#));
    // getAccessToken() (strict) waits for that refresh.
    assert_eq!(s.token(now, 0, 0, 0), Token::Wait(background));
    let calls = s.reply(
        now,
        num(calls[0].arg(0)),
        200,
        JSON_BODY,
        envelope(ACCESS2, REFRESH2, now + HOUR, now + WEEK, Some(9)),
    );
    assert_eq!(names(&calls), ["event", "settle", "arm"], "{calls:?}");
    assert_eq!(text(calls[0].arg(2)), "refresh");
    assert_settled(&calls, background, DONE);
    assert_eq!(s.token(now, 0, 1, 1), Token::Ready(2.0));
    assert_eq!(s.token_text().as_deref(), Some(ACCESS2));
    assert_eq!(num(&s.prop("background")), 0.0);

    // A 401 to a request sent with the old pair: the new token, no refresh.
    assert_eq!(s.token_after_401(now, 1), Token::Ready(2.0));
    assert_eq!(s.token_text().as_deref(), Some(ACCESS2));
    assert!(s.take().is_empty());
    // A 401 to the current pair: a refresh with the current refresh token.
    let Token::Wait(flight) = s.token_after_401(now, 2) else {
        panic!("no refresh to await")
    };
    let calls = s.take();
    assert_eq!(names(&calls), ["send", "arm"], "{calls:?}");
    assert_eq!(text(calls[0].arg(3)), format!(r#"{{"refresh_token":"{REFRESH2}"}}"#));
    assert_eq!(num(&s.ok("rejoin", args![])), flight);
}

// ----- API calls -----------------------------------------------------------------------------

// API call steps (src/wasm/core.rs `api_code`).
const RETURN: f64 = 0.0;
const READ: f64 = 1.0;
const LOCATE: f64 = 2.0;
const FOLLOW: f64 = 3.0;
const FOLLOW_GET: f64 = 4.0;
const REPLAY: f64 = 5.0;
const WAIT: f64 = 6.0;
const DATA: f64 = 7.0;
const NO_DATA: f64 = 8.0;
const GONE: f64 = 9.0;

impl S {
    /// Opens an API call (`json`: `json()` rather than `fetch()`) and starts its attempt.
    fn call(&self, method: &str, json: bool) -> f64 {
        let call = num(&self.ok("api_open", args![method, "/v1/items", u32::from(json), false]));
        let serial = num(&self.ok("api_token", args![T0 + 1.0, call, 0, 0]));
        assert!(serial > 0.0, "a token for the call: {serial}");
        call
    }

    /// `api_response` for `call`: the step code, or the descriptor thrown.
    fn respond(&self, call: f64, status: u16, retry_after: Option<&str>) -> Result<f64, Desc> {
        self.apply(
            "api_response",
            args![self.d.clone(), T0 + 1.0, call, status, false, retry_after],
        )
        .map(|v| num(&v))
        .map_err(|e| desc(&e))
    }
}

#[wasm_bindgen_test]
fn api_json_verdicts() {
    let s = S::logged_in(&options(&format!(
        r#""credentials":{{"username":"api-user","password":"{PASSWORD}"}}"#
    )));
    // A POST: never retried, so every status reaches the body's verdict.
    let verdict = |status: u16, kind: u32, body: JsValue| {
        let call = s.call("POST", true);
        assert_eq!(s.respond(call, status, None), Ok(READ), "{status}");
        s.apply(
            "api_body",
            args![s.d.clone(), call, kind, body, JsValue::UNDEFINED, JsValue::UNDEFINED],
        )
    };
    let data = |status: u16, kind: u32, body: JsValue| verdict(status, kind, body).map(|v| num(&v) == DATA);
    let error = |status: u16, kind: u32, body: JsValue| match verdict(status, kind, body) {
        Ok(v) => panic!("api_body returned {}", show(&v)),
        Err(e) => desc(&e),
    };
    assert_eq!(data(200, JSON_BODY, parse(r#"{"success":true,"data":[1]}"#)), Ok(true));
    assert_eq!(data(201, JSON_BODY, parse(r#"{"success":true,"data":null}"#)), Ok(true));
    assert_eq!(data(204, EMPTY, JsValue::UNDEFINED), Ok(false));
    assert_eq!(data(200, EMPTY, JsValue::UNDEFINED), Ok(false));
    for (status, kind, body, code) in [
        (200u16, NOT_JSON, JsValue::UNDEFINED, "INVALID_RESPONSE"),
        (200, JSON_BODY, parse(r#"{"success":true}"#), "INVALID_RESPONSE"),
        (200, JSON_BODY, parse(r#"{"data":1}"#), "INVALID_RESPONSE"),
        (
            200,
            JSON_BODY,
            parse(r#"{"success":"true","data":1}"#),
            "INVALID_RESPONSE",
        ),
        (200, JSON_BODY, parse("[1,2]"), "INVALID_RESPONSE"),
        (200, JSON_BODY, parse(r#""text""#), "INVALID_RESPONSE"),
        (200, JSON_BODY, JsValue::NULL, "INVALID_RESPONSE"),
        (503, NOT_JSON, JsValue::UNDEFINED, "SERVER_ERROR"),
        (429, EMPTY, JsValue::UNDEFINED, "RATE_LIMITED"),
        (404, JSON_BODY, parse(r#"{"success":true,"data":1}"#), "HTTP_ERROR"),
        (403, JSON_BODY, parse(r#"{"error":{"code":403}}"#), "HTTP_ERROR"),
    ] {
        let e = error(status, kind, body);
        assert_eq!((e.code.as_str(), e.status), (code, status as f64), "{e:?}");
        assert_eq!(e.retryable, matches!(code, "SERVER_ERROR" | "RATE_LIMITED"), "{e:?}");
        assert!(e.message.starts_with("POST /v1/items: "), "{e:?}");
    }
    // The server's error, whatever the status, without any secret of the session.
    let message = format!("{ACCESS} / {REFRESH} / {PASSWORD}");
    let e = error(403, JSON_BODY, error_envelope("ForbiddenError", "FORBIDDEN", &message));
    assert_eq!(
        (e.code.as_str(), e.name.as_str(), e.status, e.retryable),
        ("FORBIDDEN", "ForbiddenError", 403.0, false)
    );
    assert_eq!(e.message, "[redacted] / [redacted] / [redacted]");
    let e = error(200, JSON_BODY, error_envelope("E", "QUOTA", "over"));
    assert_eq!((e.code.as_str(), e.status), ("QUOTA", 200.0));
    let e = error(500, JSON_BODY, error_envelope("N", &format!("X{ACCESS}"), "m"));
    assert_eq!(
        (e.code.as_str(), e.name.as_str(), e.retryable),
        ("SERVER_ERROR", "ServerError", true)
    );
    // Defaults for a missing name and message.
    let e = error(409, JSON_BODY, parse(r#"{"error":{"code":"CONFLICT"}}"#));
    assert_eq!(
        (e.code.as_str(), e.name.as_str(), e.message.as_str()),
        ("CONFLICT", "ServerError", "the server reported an error")
    );
    // Unreadable bodies.
    let call = s.call("GET", true);
    assert_eq!(s.respond(call, 200, None), Ok(READ));
    let e = desc(
        &s.apply(
            "api_body",
            args![
                s.d.clone(),
                call,
                3,
                JsValue::UNDEFINED,
                JsValue::UNDEFINED,
                JsValue::UNDEFINED
            ],
        )
        .unwrap_err(),
    );
    assert_eq!((e.code.as_str(), e.status), ("RESPONSE_TOO_LARGE", 200.0));
    let call = s.call("GET", true);
    assert_eq!(s.respond(call, 200, None), Ok(READ));
    let e = desc(
        &s.apply(
            "api_body",
            args![s.d.clone(), call, 4, JsValue::UNDEFINED, "TypeError", "ECONNRESET"],
        )
        .unwrap_err(),
    );
    assert_eq!((e.code.as_str(), e.retryable), ("NETWORK_ERROR", true));
    assert_eq!(e.cause, Some(("TypeError".into(), Some("ECONNRESET".into()))));

    // Bodies no JSON.parse returns: a verdict or a descriptor, nothing else.
    for case in hostile_api(ACCESS).iter() {
        let case: Array = case.unchecked_into();
        let (name, expected) = (text(&case.get(0)), text(&case.get(2)));
        match verdict(200, JSON_BODY, case.get(1)) {
            Ok(v) => assert_eq!(num(&v) == DATA, expected == "data", "{name}: {}", show(&v)),
            Err(e) => assert_eq!(desc(&e).code, expected, "{name}"),
        }
    }
    assert!(!s.take().iter().any(|c| c.m == "send" || c.m == "storage"));
}

#[wasm_bindgen_test]
fn check_origin_throws_origin_not_allowed() {
    let s = S::new(&options(r#""allowedOrigins":["https://files.test:8443"]"#));
    for ok in ["https://api.test", "https://files.test:8443"] {
        assert!(s.ok("check_origin", args![ok]).is_undefined(), "{ok}");
    }
    for (origin, shown) in [
        ("https://evil.test", "https://evil.test"),
        ("https://files.test", "https://files.test"),
        ("http://api.test", "http://api.test"),
        ("https://api.test:8443", "https://api.test:8443"),
        ("null", "null"),
        ("https://evil.test\r\nX-Forged: 1\u{0}", "https://evil.testX-Forged: 1"),
    ] {
        let e = s.throws("check_origin", args![origin]);
        assert_eq!(
            (e.code.as_str(), e.name.as_str()),
            ("ORIGIN_NOT_ALLOWED", "OriginNotAllowedError")
        );
        assert_eq!((e.status, e.retryable), (0.0, false));
        assert_eq!(
            e.message,
            format!("{shown} may not receive the bearer token; only the host's origin and allowedOrigins may")
        );
    }
    assert!(s.take().is_empty());
}

#[wasm_bindgen_test]
fn api_steps_redirects_and_failures() {
    let s = S::logged_in(&options(r#""retries":2,"maxRetryAfterSeconds":30"#));
    let step = |method: &str, json: bool, status: u16, retry_after: Option<&str>| {
        let call = s.call(method, json);
        let got = s.respond(call, status, retry_after);
        s.bare("api_close", args![s.d.clone(), call]);
        got
    };
    assert_eq!(step("GET", false, 200, None), Ok(RETURN));
    assert_eq!(step("GET", true, 200, None), Ok(READ));
    assert_eq!(step("POST", false, 401, None), Ok(REPLAY), "replay after a 401");
    assert_eq!(
        step("GET", false, 503, None),
        Ok(WAIT),
        "a retry after the machine's backoff"
    );
    assert_eq!(step("POST", false, 503, Some("2")), Ok(RETURN), "not idempotent");
    assert_eq!(step("GET", false, 500, None), Ok(RETURN), "a plain 500 is returned");
    assert_eq!(step("GET", false, 304, None), Ok(RETURN), "304 is not a redirect");
    assert_eq!(step("GET", false, 302, None), Ok(LOCATE));
    assert_eq!(step("GET", false, 429, Some("120")), Ok(RETURN), "fetch(): handed back");
    let e = step("GET", true, 429, Some("120")).unwrap_err();
    assert_eq!(
        (e.code.as_str(), e.status, e.retry_after),
        ("RATE_LIMITED", 429.0, Some(120.0))
    );

    // The Location's origin as WHATWG URL gives it; the machine decides whether it may get the token.
    let locate = |method: &str, json: bool, status: u16, origin: Option<&str>| {
        let call = s.call(method, json);
        assert_eq!(s.respond(call, status, None), Ok(LOCATE));
        let got = s
            .apply("api_location", args![s.d.clone(), call, origin])
            .map(|v| num(&v))
            .map_err(|e| desc(&e));
        s.bare("api_close", args![s.d.clone(), call]);
        got
    };
    assert_eq!(locate("GET", false, 301, Some("https://api.test")), Ok(FOLLOW));
    assert_eq!(locate("POST", false, 302, Some("https://api.test")), Ok(FOLLOW_GET));
    assert_eq!(locate("PUT", false, 303, Some("https://api.test")), Ok(FOLLOW_GET));
    assert_eq!(locate("HEAD", false, 303, Some("https://api.test")), Ok(FOLLOW));
    assert_eq!(locate("POST", false, 307, Some("https://api.test")), Ok(FOLLOW));
    assert_eq!(locate("GET", false, 301, Some("https://evil.test")), Ok(RETURN));
    assert_eq!(locate("GET", false, 301, None), Ok(RETURN));
    let e = locate("GET", true, 301, Some("https://evil.test")).unwrap_err();
    assert_eq!((e.code.as_str(), e.status), ("REDIRECT_BLOCKED", 301.0));
    let e = locate("GET", true, 302, None).unwrap_err();
    assert_eq!((e.code.as_str(), e.status), ("HTTP_ERROR", 302.0));

    let failure = |method: &str, kind: u32, name: Option<&str>, code: Option<&str>| {
        let call = s.call(method, false);
        let got = s
            .apply("api_failed", args![s.d.clone(), T0 + 1.0, call, kind, name, code])
            .map(|v| num(&v))
            .map_err(|e| desc(&e));
        s.bare("api_close", args![s.d.clone(), call]);
        got
    };
    assert_eq!(failure("GET", 0, Some("TypeError"), Some("ECONNRESET")), Ok(WAIT));
    let e = failure("POST", 0, Some("TypeError"), Some("ECONNRESET")).unwrap_err();
    assert_eq!((e.code.as_str(), e.retryable), ("NETWORK_ERROR", true));
    assert_eq!(e.cause, Some(("TypeError".into(), Some("ECONNRESET".into()))));
    let e = failure("GET", 1, None, None).unwrap_err();
    assert_eq!((e.code.as_str(), e.retryable), ("INVALID_RESPONSE", false));

    // An abort ends the call; what arrives after is discarded.
    let call = s.call("GET", true);
    let e = desc(&s.bare("api_abort", args![s.d.clone(), call]));
    assert_eq!(e.code, "ABORTED");
    assert!(s.bare("api_abort", args![s.d.clone(), call]).is_undefined());
    assert_eq!(s.respond(call, 200, None), Ok(GONE));

    // The attempt's deadline is the driver's one timer; when it passes, the call is woken.
    let call = s.call("POST", false);
    let calls = s.take();
    let armed = calls.iter().rev().find(|c| c.m == "arm").expect("armed");
    assert_eq!(num(armed.arg(0)), T0 + 1.0 + 10_000.0);
    s.bare("timeout", args![s.d.clone(), T0 + 1.0 + 10_000.0]);
    let calls = s.take();
    let wake = calls.iter().find(|c| c.m == "wake").expect("woken");
    assert_eq!((num(wake.arg(0)), num(wake.arg(1))), (call, 2.0));
    assert_eq!(desc(wake.arg(2)).code, "TIMEOUT");

    // dispose() wakes every call with DISPOSED.
    let call = s.call("GET", true);
    s.take();
    s.bare("dispose", args![s.d.clone()]);
    let calls = s.take();
    let wake = calls.iter().find(|c| c.m == "wake").expect("woken");
    assert_eq!((num(wake.arg(0)), desc(wake.arg(2)).code.as_str()), (call, "DISPOSED"));
    let e = s.throws("api_open", args!["GET", "/v1/items", 1, false]);
    assert_eq!(e.code, "DISPOSED");
    let _ = NO_DATA;
}

// ----- revoke and dispose --------------------------------------------------------------------

#[wasm_bindgen_test]
fn revoke_clears_the_session_first_and_sends_the_pair() {
    let s = S::logged_in(&options(r#""timeoutMs":5000"#));
    assert_eq!(s.token(T0 + 50.0, 0, 0, 0), Token::Ready(1.0));
    assert_eq!(s.token_text().as_deref(), Some(ACCESS));
    let flight = num(&s.ok("revoke", args![T0 + 100.0]));
    let calls = s.take();
    assert_eq!(names(&calls), ["event", "send", "arm"], "{calls:?}");
    assert_eq!((num(calls[0].arg(0)), text(calls[0].arg(2))), (REVOKED, String::new()));
    assert_info(calls[0].arg(1), "revoked", None, None);
    let send = &calls[1];
    assert_eq!(num(send.arg(1)), 2.0, "endpoint: revoke");
    assert_eq!(text(send.arg(2)), "https://api.test/v2/auth/revoke");
    assert_eq!(text(send.arg(3)), format!(r#"{{"refresh_token":"{REFRESH}"}}"#));
    assert_eq!(send.arg(4).as_string().as_deref(), Some(ACCESS), "the bearer");
    assert_eq!(
        (num(calls[2].arg(0)), calls[2].arg(1).as_bool()),
        (T0 + 5_100.0, Some(true))
    );
    assert_no_secret(&calls);
    // Already revoked for everyone else, and the glue keeps no copy of the access token.
    assert_eq!(s.token_text(), None);
    let e = s.throws("token", args![T0 + 100.0, 0u32, 0u32, 0u32]);
    assert_eq!(e.code, "NOT_AUTHENTICATED");
    assert!(e.message.contains("revoked"), "{e:?}");
    // RFC 7009: a 2xx is success whatever the body.
    let calls = s.reply(T0 + 200.0, num(send.arg(0)), 200, NOT_JSON, JsValue::UNDEFINED);
    assert_eq!(names(&calls), ["settle", "arm"], "{calls:?}");
    assert_settled(&calls, flight, DONE);
    assert_eq!((num(calls[1].arg(0)), calls[1].arg(1).as_bool()), (-1.0, Some(false)));
}

#[wasm_bindgen_test]
fn dispose_settles_every_pending_flight_with_disposed() {
    let s = S::new(&options(STORED));
    let (login, login_io) = s.login(T0, "api-user", PASSWORD);
    let restore = num(&s.ok("restore", args![T0]));
    let restore_io = num(s.take()[0].arg(1));
    assert!(s.ok("dispose", args![]).is_undefined());
    let calls = s.take();
    assert_eq!(
        names(&calls),
        ["cancel", "settle", "cancel", "settle", "arm"],
        "{calls:?}"
    );
    assert_eq!((num(calls[0].arg(0)), num(calls[2].arg(0))), (login_io, restore_io));
    for (c, flight) in [(&calls[1], login), (&calls[3], restore)] {
        assert_eq!((num(c.arg(0)), num(c.arg(1))), (flight, FAILED), "{c:?}");
        let e = desc(c.arg(2));
        assert_eq!((e.code.as_str(), e.name.as_str()), ("DISPOSED", "DisposedError"));
        assert_eq!(
            (e.message.as_str(), e.status, e.retryable),
            ("the session was disposed", 0.0, false)
        );
    }
    assert_eq!((num(calls[4].arg(0)), calls[4].arg(1).as_bool()), (-1.0, Some(false)));
    assert_eq!(s.bare("disposed", args![]).as_bool(), Some(true));
    assert_eq!(s.token_text(), None);
    // Every later call fails with DISPOSED; late answers are ignored; dispose is idempotent.
    assert_eq!(s.throws("login", args![T0, "api-user", PASSWORD]).code, "DISPOSED");
    assert_eq!(s.throws("refresh", args![T0]).code, "DISPOSED");
    assert_eq!(s.throws("revoke", args![T0]).code, "DISPOSED");
    assert_eq!(s.throws("restore", args![T0]).code, "DISPOSED");
    assert_eq!(s.throws("rejoin", args![]).code, "DISPOSED");
    assert_eq!(s.throws("token", args![T0, 0u32, 0u32, 0u32]).code, "DISPOSED");
    assert_eq!(s.throws("result", args![]).code, "DISPOSED");
    assert!(s.reply(T0, login_io, 200, JSON_BODY, first_pair()).is_empty());
    assert!(storage_reply(&s, restore_io, 1, record(T0 + HOUR, T0 + WEEK), None).is_empty());
    s.ok("timeout", args![T0 + 10_000.0]);
    s.ok("dispose", args![]);
    let calls = s.take();
    assert!(calls.is_empty(), "{calls:?}");
    assert_info(&s.ok("info", args![]), "anonymous", None, None);

    // An active session: disposed, it shows its last state and holds no token.
    let s = S::logged_in(&options(""));
    assert_eq!(s.token(T0 + 50.0, 0, 0, 0), Token::Ready(1.0));
    s.ok("dispose", args![]);
    let calls = s.take();
    assert_eq!(names(&calls), ["arm"], "the auto-refresh timer goes: {calls:?}");
    assert_eq!((num(calls[0].arg(0)), calls[0].arg(1).as_bool()), (-1.0, Some(false)));
    assert_eq!(s.token_text(), None);
    assert_info(&s.ok("info", args![]), "active", None, None);

    // A revoke on the wire and a login queued behind it.
    let s = S::logged_in(&options(""));
    let revoke = num(&s.ok("revoke", args![T0 + 100.0]));
    let revoke_io = num(s.take().iter().find(|c| c.m == "send").unwrap().arg(0));
    let queued = num(&s.ok("login", args![T0 + 100.0, "api-user", PASSWORD]));
    assert!(s.take().is_empty(), "one auth request at a time");
    s.ok("dispose", args![]);
    let calls = s.take();
    assert_eq!(names(&calls), ["cancel", "settle", "settle", "arm"], "{calls:?}");
    assert_eq!(num(calls[0].arg(0)), revoke_io);
    assert_eq!(assert_settled(&calls[1..2], revoke, FAILED).unwrap().code, "DISPOSED");
    assert_eq!(assert_settled(&calls[2..3], queued, FAILED).unwrap().code, "DISPOSED");
    assert_info(&s.ok("info", args![]), "revoked", None, None);
}
