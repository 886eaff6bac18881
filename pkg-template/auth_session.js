// The glue between the driver (session.js) and the wasm's one entry point (src/boundary):
// it encodes each call of `Core` as one input, runs `step`, and hands the output's records
// to the driver's methods (`send`, `cancel`, `storage`, `settle`, `wake`, `event`, `arm`,
// `log`) before it returns or throws the call's result. It decides nothing; the numbering
// of inputs, records and results is src/boundary/mod.rs's.
//
// The module has no imports and exports `memory`, `io(len)` (where to write an input of
// `len` bytes: the buffer keeps what was written when it grows) and `step(len)` (run it;
// returns where the output is: its u32 length, then the records). Inputs are written and
// outputs read in place, in the wasm's memory, with no copy and no allocation per call. A
// driver method that runs another session's call (a `fetch` that calls back synchronously)
// would overwrite the output being read: the rest of it is copied out first (see `run`).

let wasm;
// The wasm's memory, as bytes and as a DataView (made again when the memory grows).
let mem = new Uint8Array(0);
let mv = new DataView(mem.buffer);
// The input buffer (`io`): where it is, its size, and the length written so far.
let input = 0;
let inputCap = 0;
let at = 0;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const NONE = 0xffffffff;

// Deeper than any document of the protocol, more values than a 64 KiB auth response holds
// (src/boundary/tree.rs holds the input to the same bounds), and a string longer than one
// could: a record from a hostile storage reads as nothing rather than growing the wasm's
// memory (which never shrinks) by three times its length.
const MAX_DEPTH = 16;
const MAX_VALUES = 65536;
const MAX_STRING = 65536;

function views() {
  if (mem.byteLength === 0 || mem.buffer !== wasm.memory.buffer) {
    mem = new Uint8Array(wasm.memory.buffer);
    mv = new DataView(wasm.memory.buffer);
  }
}
function room(n) {
  if (at + n <= inputCap) return;
  inputCap = Math.max(inputCap * 2, at + n, 256);
  input = wasm.io(inputCap);
  views();
}
function u8(v) {
  room(1);
  mem[input + at++] = v;
}
function u32(v) {
  room(4);
  mv.setUint32(input + at, v, true);
  at += 4;
}
function f64(v) {
  room(8);
  mv.setFloat64(input + at, v, true);
  at += 8;
}
function str(s) {
  if (s === undefined || s === null) return u32(NONE);
  const n = s.length;
  room(4 + n * 3);
  const o = input + at + 4;
  // ASCII (methods, paths, URLs) byte by byte; the rest through the encoder.
  let i = 0;
  for (; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f) break;
    mem[o + i] = c;
  }
  let written = i;
  if (i < n) written += encoder.encodeInto(i === 0 ? s : s.slice(i), mem.subarray(o + i, o + n * 3)).written;
  mv.setUint32(input + at, written, true);
  at += 4 + written;
}
function optF64(v) {
  if (v === undefined) return u8(0);
  u8(1);
  f64(v);
}
function optBool(v) {
  u8(v === undefined ? 0 : v ? 2 : 1);
}
function begin(op, handle) {
  views();
  at = 0;
  u8(op);
  u32(handle);
}

/** A `JSON.parse`d value as src/boundary/tree.rs reads it. */
function tree(value) {
  const start = at;
  const budget = { left: MAX_VALUES };
  try {
    if (walk(value, 0, budget)) return;
  } catch {
    // Not reachable with what JSON.parse returns; anything else reads as null.
  }
  at = start;
  u8(0);
}
function walk(v, depth, budget) {
  if (--budget.left < 0) return false;
  switch (typeof v) {
    case "string":
      if (v.length > MAX_STRING) return false;
      u8(4);
      str(v);
      return true;
    case "number":
      if (!Number.isFinite(v)) break;
      u8(3);
      f64(v);
      return true;
    case "boolean":
      u8(v ? 2 : 1);
      return true;
    case "object":
      if (v === null || depth >= MAX_DEPTH) break;
      if (Array.isArray(v)) {
        u8(5);
        u32(v.length);
        for (let i = 0; i < v.length; i++) if (!walk(v[i], depth + 1, budget)) return false;
        return true;
      }
      {
        const keys = Object.keys(v);
        u8(6);
        u32(keys.length);
        for (const k of keys) {
          str(k);
          if (!walk(v[k], depth + 1, budget)) return false;
        }
      }
      return true;
  }
  u8(0);
  return true;
}

// ----- running one input -----------------------------------------------------------------

const REC_SEND = 1, REC_CANCEL = 2, REC_STORAGE = 3, REC_SETTLE = 4, REC_WAKE = 5, REC_EVENT = 6, REC_ARM = 7, REC_LOG = 8;
const RET_NOTHING = 16, RET_NUMBER = 17, RET_TEXT = 18, RET_FLAG = 19, RET_INFO = 20, RET_ERROR = 21, RET_TOKEN = 22,
  RET_SCHEDULE = 23;
const LOG_EVENTS = ["refresh", "login", "request", "response", "retry", "redirect"];
const ENDPOINTS = ["login", "refresh", "revoke", "api", "discovery"];

// The output being read: its bytes (the wasm's memory, or a copy of what was left of it when
// a nested call came), the read position and the end.
let out = mem;
let outView = mv;
let p = 0;
let end = 0;

function rU8() {
  return out[p++];
}
function rU32() {
  const v = outView.getUint32(p, true);
  p += 4;
  return v;
}
function rF64() {
  const v = outView.getFloat64(p, true);
  p += 8;
  return v;
}
function rStr() {
  const n = rU32();
  if (n === NONE) return undefined;
  const s = decoder.decode(out.subarray(p, p + n));
  p += n;
  return s;
}
function rOptF64() {
  return rU8() === 0 ? undefined : rF64();
}
function rInfo(d) {
  return d.info(rStr(), rOptF64(), rOptF64(), rOptF64());
}
function rError(d) {
  return d.error(rStr(), rStr(), rStr(), rU32(), rU8() === 1, rOptF64(), rStr(), rStr());
}

// A call a driver method makes into another session while records are read (a `fetch`
// that calls back synchronously) would overwrite them: the rest of the outer output is
// copied out first and read from the copy afterwards.
const outer = [];
let depth = 0;
// Of the last token step: the background flight it started (0: none).
let background = 0;

/** Runs the input written so far; performs its records on `d`; returns or throws its result. */
function run(d) {
  if (depth++ > 0) {
    const rest = out.slice(p, end);
    outer.push(rest, new DataView(rest.buffer), 0, rest.length);
  }
  try {
    return read(d);
  } finally {
    if (--depth > 0) [out, outView, p, end] = outer.splice(-4, 4);
  }
}

function read(d) {
  const o = wasm.step(at);
  views();
  out = mem;
  outView = mv;
  p = o + 4;
  end = p + mv.getUint32(o, true);
  // Records until the result; each driver method only starts work (see session.js).
  for (;;) {
    const tag = rU8();
    switch (tag) {
      case REC_SEND: {
        const io = rU32(), endpoint = rU8(), wire = rU8(), url = rStr(), body = rStr(), authorization = rStr();
        const sign = rStr(), signAlg = rStr();
        d.send(io, endpoint, wire, url, body, authorization, sign, signAlg, rU32());
        break;
      }
      case REC_CANCEL:
        d.cancel(rU32());
        break;
      case REC_STORAGE: {
        const op = rU8(), io = rU32(), key = rStr(), value = rStr();
        d.storage(op, io, key, value, rF64());
        break;
      }
      case REC_SETTLE: {
        const flight = rU32(), outcome = rU8();
        d.settle(flight, outcome, outcome === 2 ? rError(d) : undefined);
        break;
      }
      case REC_WAKE: {
        const call = rU32(), kind = rU8();
        d.wake(call, kind, kind === 2 ? rError(d) : undefined);
        break;
      }
      case REC_EVENT: {
        const kind = rU8();
        if (kind === 3) d.event(kind, rError(d), "");
        else {
          const info = rInfo(d);
          d.event(kind, info, kind === 0 ? rStr() : "");
        }
        break;
      }
      case REC_ARM: {
        const when = rF64();
        d.arm(when, rU8() === 1);
        break;
      }
      case REC_LOG: {
        const event = LOG_EVENTS[rU8()], endpoint = ENDPOINTS[rU8()];
        const attempt = rOptF64(), status = rOptF64(), delay = rOptF64(), code = rStr(), trigger = rStr(), followed = rU8();
        d.log(event, endpoint, attempt, status, delay, code, trigger, followed === 0 ? undefined : followed === 2);
        break;
      }
      case RET_NOTHING:
        return undefined;
      case RET_NUMBER:
        return rF64();
      case RET_TEXT:
        return rStr();
      case RET_FLAG:
        return rU8() === 1;
      case RET_INFO:
        return rInfo(d);
      case RET_ERROR:
        throw rError(d);
      case RET_TOKEN: {
        const v = rF64();
        background = rU32();
        return v;
      }
      case RET_SCHEDULE:
        return [rF64(), rF64(), rF64()];
      default:
        throw new Error(`auth-session: the wasm refused an input (record ${tag})`);
    }
  }
}

// ----- Core: one session's machine --------------------------------------------------------

/** The `oauth` option's strings, in the order src/boundary/mod.rs reads them. */
export const OAUTH_OPTIONS = ["issuer", "tokenEndpoint", "revocationEndpoint", "clientId", "clientSecret", "clientAuth",
  "basicEncoding", "grant", "refreshToken", "scope", "audience"];
/** What the driver read of `oauth.privateKey` (the machine picks the algorithm from it) and
 *  the key id; sent after OAUTH_OPTIONS. */
export const OAUTH_KEY = ["keyType", "keyCurve", "keyHash", "keyAlg", "kid"];

// Opcodes (src/boundary/mod.rs `Op`).
const NEW = 0, FREE = 1, LOGIN = 2, REFRESH = 3, REVOKE = 4, RESTORE = 5, REJOIN = 6, DISPOSE = 7, ACCOUNT = 8,
  SET_LOGGING = 9, SCHEDULE = 10, IDLE = 11, DISPOSED = 12, RESULT = 13, INFO = 14, TOKEN = 15, TOKEN_REPLACING = 16,
  TOKEN_AFTER_401 = 17, TOKEN_TEXT = 18, AUTH_REPLY = 19, AUTH_FAILED = 20, STORAGE_REPLY = 21, TIMEOUT = 22,
  RESOLVE = 23, CHECK_ORIGIN = 24, MAX_RESPONSE_BYTES = 25, API_OPEN = 26, API_TOKEN = 27, API_RESPONSE = 28,
  API_LOCATION = 29, API_FAILED = 30, API_BODY = 31, API_ABORT = 32, API_CLOSE = 33;

// A session the program dropped: its machine is freed with it. (workerd at older compatibility
// dates has no FinalizationRegistry: there a machine lives as long as its isolate.)
// A failure to free (the instance trapped earlier) is not worth an uncaught exception.
const FREED =
  typeof FinalizationRegistry === "function"
    ? new FinalizationRegistry((handle) => {
        try {
          begin(FREE, handle);
          run(null);
        } catch {
          // The machine's memory stays; nothing else depends on it.
        }
      })
    : { register() {} };

/**
 * The machine of one session. Every method that can produce outputs takes the driver; the
 * driver's methods are put on this prototype by session.js, so a core is its own driver.
 */
export class Core {
  #h;
  /** The session this core drives (read by the driver's methods). */
  s;

  /**
   * Validates the options (session.js checked their types); throws an error descriptor.
   * `s`: the session; `paths`: login, refresh, revoke ("" where not given); `oauth`: the
   * `oauth` option's strings (OAUTH_OPTIONS, then OAUTH_KEY), `resources` an array, or undefined.
   */
  constructor(s, host, username, password, margin, timeout, retries, maxRetryAfter, autoRefresh, paths, storageKey,
    origins, allowInsecureHttp, maxResponseBytes, leaseMs, label, storage, seed, oauth, oauthApi) {
    if (wasm === undefined) throw new Error("auth-session: the wasm module is not initialised");
    this.s = s;
    begin(NEW, 0);
    str(host);
    str(username);
    str(password);
    optF64(margin);
    optF64(timeout);
    optF64(retries);
    optF64(maxRetryAfter);
    optBool(autoRefresh);
    for (let i = 0; i < 3; i++) str(paths[i]);
    str(storageKey);
    u32(origins.length);
    for (const o of origins) str(o);
    optBool(allowInsecureHttp);
    optF64(maxResponseBytes);
    optF64(leaseMs);
    str(label);
    u8(storage);
    f64(seed);
    if (oauth === undefined) u8(0);
    else {
      u8(1);
      for (const k of OAUTH_OPTIONS) str(oauth[k]);
      for (const k of OAUTH_KEY) str(oauth[k]);
      u32(oauth.resources.length);
      for (const r of oauth.resources) str(r);
    }
    optBool(oauthApi);
    this.#h = run(this);
    FREED.register(this, this.#h);
  }

  /** 0 (none) or the background flight the last ready token step started. */
  background = 0;

  #token(d) {
    background = 0;
    const v = run(d);
    this.background = background;
    return v;
  }

  login(d, now, username, password) {
    begin(LOGIN, this.#h);
    f64(now);
    str(username);
    str(password);
    return run(d);
  }
  refresh(d, now) {
    return this.#now(REFRESH, d, now);
  }
  revoke(d, now) {
    return this.#now(REVOKE, d, now);
  }
  restore(d, now) {
    return this.#now(RESTORE, d, now);
  }
  rejoin(d) {
    begin(REJOIN, this.#h);
    return run(d);
  }
  dispose(d) {
    begin(DISPOSE, this.#h);
    run(d);
  }
  /** The configured account's fingerprint (no credentials: undefined). */
  account() {
    begin(ACCOUNT, this.#h);
    return run(null);
  }
  set_logging(on) {
    begin(SET_LOGGING, this.#h);
    u8(on ? 1 : 0);
    run(null);
  }
  /** [skew ms, due at, retry at] (local epoch ms; -1: none), for the Workers broker. */
  schedule(now) {
    begin(SCHEDULE, this.#h);
    f64(now);
    return run(null);
  }
  idle() {
    begin(IDLE, this.#h);
    return run(null);
  }
  disposed() {
    begin(DISPOSED, this.#h);
    return run(null);
  }
  /** The info after a settled login/refresh, or throws the error descriptor. */
  result(d) {
    begin(RESULT, this.#h);
    return run(d);
  }
  /** The session's info now (`info` is the driver's builder of such an object). */
  session_info(d) {
    begin(INFO, this.#h);
    return run(d);
  }
  /**
   * `need`: 0 strict, 1 lenient, 2 background, 3 replay. `waited`: 0 nothing, 1 done,
   * 2 failed (retryable), 3 failed (final). Returns the serial of the pair whose token to
   * send (> 0; read it with `token_text` when the serial changed), minus the flight to
   * await (< 0), or 0: rethrow the error of the flight just awaited.
   */
  token(d, now, need, waited, round) {
    begin(TOKEN, this.#h);
    f64(now);
    u8(need);
    u8(waited);
    u32(round);
    return this.#token(d);
  }
  token_replacing(d, now, rejected) {
    begin(TOKEN_REPLACING, this.#h);
    f64(now);
    str(rejected);
    return this.#token(d);
  }
  token_after_401(d, now, serial) {
    begin(TOKEN_AFTER_401, this.#h);
    f64(now);
    u32(serial);
    return this.#token(d);
  }
  token_text() {
    begin(TOKEN_TEXT, this.#h);
    return run(null);
  }
  /** `kind`: 0 empty body, 1 not JSON, 2 JSON (`body`: what JSON.parse returned). */
  auth_reply(d, now, io, status, redirected, date, retryAfter, kind, body) {
    begin(AUTH_REPLY, this.#h);
    f64(now);
    u32(io);
    u32(status);
    u8(redirected ? 1 : 0);
    str(date);
    str(retryAfter);
    u8(kind);
    if (kind === 2) tree(body);
    run(d);
  }
  /** `kind`: 0 network failure (with a cause), 1 not a Response, 2 body over the cap, 3 the
   *  client assertion could not be signed (with a cause). */
  auth_failed(d, now, io, kind, causeName, causeCode) {
    begin(AUTH_FAILED, this.#h);
    f64(now);
    u32(io);
    u8(kind);
    if (kind === 0 || kind === 3) {
      str(causeName);
      str(causeCode);
    }
    run(d);
  }
  /**
   * `kind`: 0 done or nothing, 1 a record (`value`: what JSON.parse returned), 2 garbage,
   * 3 the adapter failed (with a cause), 4 the lease taken (`value`: its id).
   */
  storage_reply(d, now, io, kind, value, causeName, causeCode) {
    begin(STORAGE_REPLY, this.#h);
    f64(now);
    u32(io);
    u8(kind);
    if (kind === 1) tree(value);
    else if (kind === 4) str(value);
    else if (kind === 3) {
      str(causeName);
      str(causeCode);
    }
    run(d);
  }
  timeout(d, now) {
    this.#now(TIMEOUT, d, now);
  }
  /** An input whose only field is `now`. */
  #now(op, d, now) {
    begin(op, this.#h);
    f64(now);
    return run(d);
  }
  /** A `fetch` input resolved against the host. */
  resolve(input) {
    begin(RESOLVE, this.#h);
    str(input);
    return run(null);
  }
  /** Throws ORIGIN_NOT_ALLOWED unless `origin` may receive the bearer token. */
  check_origin(d, origin) {
    begin(CHECK_ORIGIN, this.#h);
    str(origin);
    run(d);
  }
  max_response_bytes() {
    begin(MAX_RESPONSE_BYTES, this.#h);
    return run(null);
  }
  /** `want`: 0 fetch(), 1 json(); `behind`: a waitUntil was given. The call's id. */
  api_open(d, method, path, want, behind) {
    begin(API_OPEN, this.#h);
    str(method);
    str(path);
    u8(want);
    u8(behind ? 1 : 0);
    return run(d);
  }
  api_token(d, now, call, waited, round) {
    begin(API_TOKEN, this.#h);
    f64(now);
    u32(call);
    u8(waited);
    u32(round);
    return this.#token(d);
  }
  api_response(d, now, call, status, opaque, retryAfter, wwwAuthenticate) {
    begin(API_RESPONSE, this.#h);
    f64(now);
    u32(call);
    u32(status);
    u8(opaque ? 1 : 0);
    str(retryAfter);
    str(wwwAuthenticate);
    return run(d);
  }
  /** The redirect's `Location` origin, if it is a URL at all. */
  api_location(d, call, origin) {
    begin(API_LOCATION, this.#h);
    u32(call);
    str(origin);
    return run(d);
  }
  /** `kind`: 0 fetch threw or rejected (with a cause), 1 not a Response. */
  api_failed(d, now, call, kind, causeName, causeCode) {
    begin(API_FAILED, this.#h);
    f64(now);
    u32(call);
    u8(kind);
    if (kind === 0) {
      str(causeName);
      str(causeCode);
    }
    return run(d);
  }
  /**
   * json()'s body. `kind`: 0 empty, 1 not JSON, 2 JSON (`body`: what JSON.parse returned;
   * only its envelope's shape crosses, never its data), 3 over the cap, 4 unreadable.
   */
  api_body(d, call, kind, body, causeName, causeCode) {
    begin(API_BODY, this.#h);
    u32(call);
    u8(kind);
    if (kind === 4) {
      str(causeName);
      str(causeCode);
    } else if (kind === 2) {
      const o = body !== null && typeof body === "object" ? body : undefined;
      const success = o?.success;
      optBool(typeof success === "boolean" ? success : undefined);
      u8(o !== undefined && "data" in o ? 1 : 0);
      const e = o?.error;
      const text = (k) => (e !== null && typeof e === "object" && typeof e[k] === "string" ? e[k] : undefined);
      str(text("code"));
      str(text("name"));
      str(text("message"));
    }
    return run(d);
  }
  /** The caller's abort: the ABORTED descriptor, or undefined when the call had ended. */
  api_abort(d, call) {
    begin(API_ABORT, this.#h);
    u32(call);
    try {
      return run(d);
    } catch (e) {
      if (e instanceof Error) throw e;
      return e;
    }
  }
  api_close(d, call) {
    begin(API_CLOSE, this.#h);
    u32(call);
    run(d);
  }
}

// ----- loading ----------------------------------------------------------------------------

function ready(instance) {
  wasm = instance.exports;
  return wasm;
}

/** Instantiates the module at once (`module`: a WebAssembly.Module or its bytes). */
export function initSync(options) {
  if (wasm !== undefined) return wasm;
  const module = options?.module;
  const m = module instanceof WebAssembly.Module ? module : new WebAssembly.Module(module);
  return ready(new WebAssembly.Instance(m, {}));
}

/**
 * Fetches, compiles and instantiates the module (default: auth_session_bg.wasm next to this
 * file; bundlers recognise the `new URL(…, import.meta.url)`). `input`: a URL, a Response,
 * a WebAssembly.Module or the bytes.
 */
export default async function init(input) {
  if (wasm !== undefined) return wasm;
  input ??= new URL("auth_session_bg.wasm", import.meta.url);
  if (typeof input === "string" || input instanceof URL) input = fetch(input);
  input = await input;
  if (input instanceof WebAssembly.Module) return ready(await WebAssembly.instantiate(input, {}));
  if (typeof Response === "function" && input instanceof Response) {
    if (typeof WebAssembly.instantiateStreaming === "function" && input.headers.get("content-type")?.startsWith("application/wasm")) {
      return ready((await WebAssembly.instantiateStreaming(input, {})).instance);
    }
    input = await input.arrayBuffer();
  }
  return ready((await WebAssembly.instantiate(input, {})).instance);
}
