// The AuthSession class: the JavaScript driver of the Rust state machine (`Core`, in the
// wasm). Rust decides; this file performs. It makes no protocol decision of its own: it
// runs `fetch`, storage calls and one timer, parses bodies with the platform's
// `JSON.parse` and `URL`, owns the promises (one per flight), and hands every result back
// to the machine, which answers with what to do next (see src/core/machine/). The machine
// is reached through auth_session.js, the glue of the wasm's one entry point.
//
// Rules this file keeps:
// - The machine is never re-entered: everything it asks for (`send`, `storage`, `settle`,
//   `event`, `arm`) only starts work, and events reach listeners after the machine call
//   that raised them has returned.
// - Every promise settles: each I/O has a deadline in the machine (auth calls, storage)
//   or here (API attempts), and a failure of the machine itself ends the session with
//   every pending flight rejected.
// - No secret leaves: errors are built from the machine's descriptors (already redacted)
//   plus the underlying error's `name` and `code`, never its message.

import { Core, OAUTH_OPTIONS } from "./auth_session.js";
import { AuthError } from "./auth-error.js";
import { encryptedStorage, importKey } from "./encryption.js";
import { readPrivateKey } from "./signer.js";

const KNOWN = new Set([
  "host", "credentials", "refreshMarginSeconds", "autoRefresh", "timeoutMs", "retries",
  "maxRetryAfterSeconds", "maxResponseBytes", "paths", "fetch", "storage", "storageKey",
  "allowedOrigins", "allowInsecureHttp", "waitUntil", "encryptionKey", "logger", "label", "leaseMs", "oauth",
]);
/** An option of the Workers isolate session (auth-session/workers): its API is an OAuth 2.0
 *  resource server, while its auth calls go to a broker. Not a user option. */
export const OAUTH_API = Symbol("auth-session.oauthApi");
const OAUTH_KNOWN = new Set([...OAUTH_OPTIONS, "privateKey", "keyId", "resource"]);
const MAX_TIMER_MS = 2_147_483_647;

// The small integers the boundary uses for the core's enums (src/boundary/mod.rs).
const NEED_STRICT = 0, NEED_LENIENT = 1, NEED_BACKGROUND = 2, NEED_REPLAY = 3;
const WAITED_NOTHING = 0, WAITED_DONE = 1, WAITED_RETRYABLE = 2, WAITED_FINAL = 3;
const DONE = 0, NOTHING = 1, FAILED = 2, AGAIN = 3;
const BODY_EMPTY = 0, BODY_NOT_JSON = 1, BODY_JSON = 2, BODY_TOO_LARGE = 3, BODY_UNREADABLE = 4;
// An API call's next step (src/boundary/mod.rs `api_step`) and its wakes.
const RETURN = 0, READ = 1, LOCATE = 2, FOLLOW = 3, FOLLOW_GET = 4, TOKEN = 5, WAIT = 6, DATA = 7, GONE = 9, WHOLE = 10;
const WAKE_ABANDON = 0, WAKE_SEND = 1, WAKE_FAIL = 2;
const EVENTS = ["tokens", "expired", "revoked", "error"];

const DESCRIPTOR = Symbol("auth-session.descriptor");

/** `session[IDLE]()`: nothing in flight (see pool.js). Not part of the public API. */
export const IDLE = Symbol("auth-session.idle");
/**
 * `session[SCHEDULE](now)`: the machine's timing of the held pair, for the Workers broker
 * whose timer is a Durable Object's alarm (see workers.js): `{ skewMs, dueAt, retryAt }`
 * (local epoch ms; `undefined`: none). Not part of the public API.
 */
export const SCHEDULE = Symbol("auth-session.schedule");


/** An error descriptor of the machine (or of this file) as the AuthError users get. */
function toError(d) {
  const err = new AuthError(d.message, d.name, d.code, d.status, d.retryable, d.retryAfter);
  if (d.cause) Object.defineProperty(err, "cause", { value: d.cause, writable: true, configurable: true });
  return err;
}

function describe(code, name, message, status = 0, retryable = false) {
  return { [DESCRIPTOR]: true, code, name, message, status, retryable, retryAfter: undefined, cause: undefined };
}

const configError = (message) => toError(describe("CONFIG_ERROR", "ConfigError", message));

/** `name` and `code` of a thrown value (and of its `cause`, as undici nests them). */
function causeOf(e) {
  try {
    if (e === null || (typeof e !== "object" && typeof e !== "function")) return [typeof e, undefined];
    const name = typeof e.name === "string" ? e.name : "Error";
    let code = typeof e.code === "string" ? e.code : undefined;
    const inner = e.cause;
    if (code === undefined && inner && typeof inner === "object" && typeof inner.code === "string") code = inner.code;
    return [name, code];
  } catch {
    return ["Error", undefined];
  }
}

const now = () => Date.now();
const isAbort = (signal) => signal != null && signal.aborted === true;

/** A plain check that `res` can be read as a Response (a custom fetch may return anything). */
function responseParts(res) {
  try {
    if (res === null || typeof res !== "object") return null;
    const status = res.status;
    const headers = res.headers;
    if (typeof status !== "number" || !Number.isInteger(status) || status < 0 || status > 999) return null;
    if (headers === null || typeof headers !== "object" || typeof headers.get !== "function") return null;
    return { status, headers, type: typeof res.type === "string" ? res.type : "basic" };
  } catch {
    return null;
  }
}

function header(headers, name) {
  try {
    const v = headers.get(name);
    return typeof v === "string" ? v : undefined;
  } catch {
    return undefined;
  }
}

function discard(res) {
  try {
    const p = res.body?.cancel?.();
    if (p && typeof p.catch === "function") p.catch(() => {});
  } catch {
    // Nothing left to release.
  }
}

class TooLarge extends Error {}

/**
 * Reads a whole body as text, at most `limit` bytes; over it the stream is cancelled and
 * TooLarge thrown. A declared Content-Length over the limit fails before reading.
 */
async function readText(res, limit, holder) {
  const declared = Number(header(res.headers, "content-length"));
  if (declared > limit) {
    discard(res);
    throw new TooLarge();
  }
  const body = res.body;
  if (body == null || typeof body.getReader !== "function") {
    if (typeof res.text !== "function") return "";
    const text = await res.text();
    if (typeof text !== "string") return "";
    if (text.length > limit) throw new TooLarge();
    return text;
  }
  const reader = body.getReader();
  if (holder) holder.reader = reader;
  const chunks = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      reader.cancel().catch(() => {});
      throw new TooLarge();
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return new TextDecoder().decode(chunks[0]);
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.byteLength;
  }
  return new TextDecoder().decode(all);
}

/** [kind, value] of a body text for the machine. */
function parseBody(text) {
  if (text === "") return [BODY_EMPTY, undefined];
  try {
    return [BODY_JSON, JSON.parse(text)];
  } catch {
    return [BODY_NOT_JSON, undefined];
  }
}

function checkType(value, type, field) {
  if (value !== undefined && typeof value !== type) throw configError(`${field} must be a ${type}`);
  return value;
}

/** Reads `ctx.waitUntil` given as a function or as the context itself. */
function readWaitUntil(value, field) {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "function") return (p) => value(p);
  if (typeof value === "object" && typeof value.waitUntil === "function") return (p) => value.waitUntil(p);
  throw configError(`${field} must be a function such as ctx.waitUntil.bind(ctx), or the context itself`);
}

/** The runtime's fetch, looked up per call (tests and polyfills may replace it). */
const globalFetch = (input, init) => globalThis.fetch(input, init);

/** host -> [base, origin]: sessions of one host share these strings. */
const HOSTS = new Map();

/** The `fetch` option as a function: a function, or an object with a fetch method. */
export function readFetch(value) {
  if (value === undefined) return globalFetch;
  if (typeof value === "function") return (input, init) => value(input, init);
  if (value !== null && typeof value === "object" && typeof value.fetch === "function") {
    // A Workers service binding: called as a method, with the binding as `this`.
    return (input, init) => value.fetch(input, init);
  }
  throw configError("fetch must be a function (or an object with a fetch method)");
}

function readStorage(value) {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "object" && typeof value !== "function") {
    throw configError("storage must be an object with get, put and delete methods");
  }
  for (const m of ["get", "put", "delete"]) {
    if (typeof value[m] !== "function") throw configError(`storage.${m} must be a function`);
  }
  // The lease is optional, but it comes whole.
  if ((typeof value.acquire === "function") !== (typeof value.release === "function")) {
    throw configError("storage.acquire and storage.release go together: give both or neither");
  }
  return value;
}

/**
 * `encryptionKey`: an AES-GCM CryptoKey usable to encrypt and decrypt, or 16 or 32 raw key
 * bytes in any ArrayBuffer or view (copied: a later change to the caller's buffer changes
 * nothing); only with storage. What is accepted here works for every read and write.
 */
function readEncryptionKey(value, storage) {
  if (value === undefined || value === null) return undefined;
  if (storage === undefined) throw configError("encryptionKey needs storage: it encrypts the stored record");
  const isKey = typeof CryptoKey === "function" && value instanceof CryptoKey;
  if (isKey) {
    if (value.algorithm?.name !== "AES-GCM") throw configError("encryptionKey must be an AES-GCM key");
    const usages = Array.isArray(value.usages) ? value.usages : [];
    if (!usages.includes("encrypt") || !usages.includes("decrypt")) {
      throw configError('encryptionKey must be a CryptoKey with the usages "encrypt" and "decrypt"');
    }
    return value;
  }
  let bytes;
  if (value instanceof ArrayBuffer) bytes = new Uint8Array(value.slice(0));
  else if (ArrayBuffer.isView(value) && value.buffer instanceof ArrayBuffer) {
    bytes = new Uint8Array(value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength));
  }
  if (bytes === undefined || (bytes.byteLength !== 16 && bytes.byteLength !== 32)) {
    throw configError("encryptionKey must be an AES-GCM CryptoKey or 16 or 32 key bytes");
  }
  return bytes;
}

/** The seed of the machine's random stream: retry jitter and, when the session signs client
 *  assertions, their `jti`. A signing session seeds from the platform's CSPRNG (it loads
 *  WebCrypto to sign anyway); any other from Math.random, which V8 seeds per isolate from
 *  the operating system: enough for jitter, and on Node 20 the first touch of
 *  `globalThis.crypto` loads WebCrypto, 3-5 ms of a cold start. (workerd refuses random
 *  values in a Worker's global scope: there, Math.random too.) */
function seed(signs) {
  if (signs) {
    try {
      const [hi, lo] = globalThis.crypto.getRandomValues(new Uint32Array(2));
      return ((hi & 0x1fffff) * 4294967296 + lo) / 9007199254740992;
    } catch {}
  }
  return Math.random();
}

/** An option's name the package does not know is a typo to report, not to ignore. */
function checkKnown(options, known, prefix) {
  for (const key of Object.keys(options)) {
    if (!known.has(key)) {
      const shown = String(key).replace(/[\u0000-\u001f\u007f-\u009f]/g, "").slice(0, 64);
      throw configError(`unknown option "${prefix}${shown}"; known options: ${[...known].join(", ")}`);
    }
  }
}

/** The `oauth` option: its strings for the machine (which validates them) and, with a
 *  private key, the signer of client assertions. */
function readOAuth(value) {
  if (value === undefined) return [undefined, undefined];
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw configError('oauth must be an object, e.g. { tokenEndpoint: "https://auth.example.com/token", clientId: "…" }');
  }
  checkKnown(value, OAUTH_KNOWN, "oauth.");
  const o = { resources: [] };
  for (const k of OAUTH_OPTIONS) {
    o[k] = checkType(value[k], "string", `oauth.${k}`);
    if (o[k] !== undefined) checkWellFormed(o[k], `oauth.${k}`);
  }
  const r = value.resource;
  if (r !== undefined) {
    const list = Array.isArray(r) ? r : [r];
    list.forEach((v, i) => checkType(v, "string", Array.isArray(r) ? `oauth.resource[${i}]` : "oauth.resource"));
    o.resources = list;
  }
  let signer;
  if (value.privateKey !== undefined) {
    try {
      signer = readPrivateKey(value.privateKey, checkType(value.keyId, "string", "oauth.keyId"));
    } catch (e) {
      if (e instanceof AuthError) throw e;
      throw configError(e.message);
    }
    // What the key is; the machine picks the algorithm (or refuses the key).
    Object.assign(o, signer.describe);
    o.kid = signer.kid;
  }
  return [o, signer];
}

/** A username or password that UTF-8 cannot carry as it is (a lone UTF-16 surrogate). */
function checkWellFormed(value, field) {
  const wellFormed =
    typeof value.isWellFormed === "function" ? value.isWellFormed() : !/\p{Surrogate}/u.test(value);
  if (!wellFormed) throw configError(`${field} contains a lone UTF-16 surrogate and cannot be sent as it is`);
}

/** What an API attempt needs, built once per call. */
function isStream(body) {
  return (
    body != null &&
    typeof body === "object" &&
    (typeof body.getReader === "function" || typeof body[Symbol.asyncIterator] === "function")
  );
}

/**
 * The sessions whose machine call is running, innermost last (a driver method may run
 * another session's call: a `fetch` that calls back synchronously). An input for one of
 * them waits in its queue until its call returns.
 */
const BUSY = [];

/**
 * Set by the workerd entry: there a timer belongs to the request that set it (it is
 * cancelled when that request ends), so sessions keep a timer each instead of sharing one.
 */
let TIMERS_PER_REQUEST = false;
export function timersPerRequest() {
  TIMERS_PER_REQUEST = true;
}

// ----- one timer for every session ------------------------------------------------------
// A binary min-heap of sessions by deadline; each session is in it at most once (its slot),
// so re-arming is a sift and disarming a removal: no stale entries, no spurious wakeups.
// The runtime timer is set for the earliest deadline; it keeps the process alive only while
// some session's deadline is one a caller awaits (`keep`), never for an idle auto-refresh.

const HEAP = [];
let DUE, SLOT, SET_SLOT, FIRE;
/** Armed sessions whose deadline a caller awaits. */
let KEPT = 0;
let timer;
let timerAt = -1;
let timerKept = false;

function heapSwap(i, j) {
  const a = HEAP[i], b = HEAP[j];
  HEAP[i] = b;
  HEAP[j] = a;
  SET_SLOT(b, i);
  SET_SLOT(a, j);
}
function siftUp(i) {
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (DUE(HEAP[parent]) <= DUE(HEAP[i])) return;
    heapSwap(i, parent);
    i = parent;
  }
}
function siftDown(i) {
  for (;;) {
    const l = 2 * i + 1, r = l + 1;
    let m = i;
    if (l < HEAP.length && DUE(HEAP[l]) < DUE(HEAP[m])) m = l;
    if (r < HEAP.length && DUE(HEAP[r]) < DUE(HEAP[m])) m = r;
    if (m === i) return;
    heapSwap(i, m);
    i = m;
  }
}
function heapPlace(s) {
  let i = SLOT(s);
  if (i < 0) {
    i = HEAP.length;
    HEAP.push(s);
    SET_SLOT(s, i);
  }
  siftUp(i);
  siftDown(SLOT(s));
}
function heapRemove(s) {
  const i = SLOT(s);
  if (i < 0) return;
  const last = HEAP.length - 1;
  if (i !== last) heapSwap(i, last);
  HEAP.pop();
  SET_SLOT(s, -1);
  if (i < HEAP.length) {
    const moved = HEAP[i];
    siftUp(i);
    siftDown(SLOT(moved));
  }
}

/** Sets the runtime timer for the earliest deadline (if it is not set for it already). */
function schedule() {
  const at = HEAP.length > 0 ? DUE(HEAP[0]) : -1;
  const keep = KEPT > 0;
  if (at === timerAt && keep === timerKept) return;
  // A timer set earlier than the earliest deadline fires, finds nothing due and re-arms:
  // cheaper than a clear and set on every deadline that moves later (each API call's).
  if (at >= 0 && timerAt >= 0 && timerAt <= at && keep === timerKept) return;
  clearTimeout(timer);
  timer = undefined;
  timerAt = at;
  timerKept = keep;
  if (at < 0) return;
  // Longer delays fire at once in Node: the sessions are told early and re-arm.
  timer = setTimeout(fire, Math.min(Math.max(at - now(), 0), MAX_TIMER_MS));
  if (!keep) {
    if (typeof timer?.unref === "function") timer.unref();
    else if (typeof globalThis.Deno?.unrefTimer === "function") globalThis.Deno.unrefTimer(timer);
  }
}

function fire() {
  timer = undefined;
  timerAt = -1;
  const t = now();
  // Every session due now, taken out first: a session fed its timeout may re-arm at once.
  const due = [];
  while (HEAP.length > 0 && DUE(HEAP[0]) <= t) {
    const s = HEAP[0];
    heapRemove(s);
    due.push(s);
  }
  for (const s of due) FIRE(s);
  schedule();
}

export class AuthSession {
  #core;
  #fetch;
  #storage;
  #maxBytes;
  /**
   * The options most sessions leave out, in one object made only when one is given:
   * `label` (copied into every log record and event payload), `logger` (structured records
   * of what the session does, never a secret) and `waitUntil`.
   */
  #extra = null;
  // Collections are made on first use: an idle session (thousands per process in a
  // multi-tenant service) holds none of them.
  /** event name -> Set of listeners */
  #listeners = null;
  /** flight id -> { promise, resolve } */
  #flights = null;
  /**
   * [flight, [outcome, error]] of flights settled before anyone asked for their promise:
   * kept until the next machine call, since a caller asks right after the call that gave
   * it the flight (and a flight nobody awaits, such as the timer's, is then forgotten).
   */
  #early = null;
  /** io id -> AbortController (auth) or true (storage): what is still expected. */
  #io = null;
  /** When the machine's one deadline is due (local epoch ms; -1: none), whether a caller
   *  awaits it, and this session's place in the process's deadline heap (-1: none). */
  #due = -1;
  #keep = false;
  /** In the heap: this session's index (-1: none); with TIMERS_PER_REQUEST: its timer. */
  #slot = -1;
  /** Events raised during the current machine call, delivered after it. */
  #events = null;
  /** Inputs that arrived while a machine call of this session was running (see BUSY). */
  #queue = null;
  /** API call id -> its wakes ({ resolve, pending }), while the call awaits one. */
  #calls = null;
  #broken = undefined;
  /** [the host with its path prefix, as the machine joins paths to it; its origin], shared
   *  by the sessions of one host. */
  #host;
  /** Other origins the machine allowed to receive the token. */
  #allowed = null;
  /** The access token last handed out, and the serial of its pair. */
  #tokenText = "";
  #tokenSerial = -1;

  constructor(options) {
    if (options === null || typeof options !== "object" || Array.isArray(options)) {
      throw configError('options must be an object, e.g. { host: "https://api.example.com" }');
    }
    checkKnown(options, KNOWN, "");
    const o = options;
    checkType(o.host, "string", "host");
    let username, password;
    if (o.credentials !== undefined && o.credentials !== null) {
      if (typeof o.credentials !== "object") throw configError("credentials must be an object { username, password }");
      username = o.credentials.username;
      password = o.credentials.password;
      if (typeof username !== "string") throw configError("credentials.username must be a string");
      if (typeof password !== "string") throw configError("credentials.password must be a string");
      checkWellFormed(username, "credentials.username");
      checkWellFormed(password, "credentials.password");
    }
    const numbers = ["refreshMarginSeconds", "timeoutMs", "retries", "maxRetryAfterSeconds"].map((k) =>
      checkType(o[k], "number", k),
    );
    checkType(o.autoRefresh, "boolean", "autoRefresh");
    checkType(o.allowInsecureHttp, "boolean", "allowInsecureHttp");
    checkType(o.storageKey, "string", "storageKey");
    let paths = ["", "", ""];
    if (o.paths !== undefined) {
      if (o.paths === null || typeof o.paths !== "object") throw configError("paths must be an object { login?, refresh?, revoke? }");
      paths = ["login", "refresh", "revoke"].map((k) => checkType(o.paths[k], "string", `paths.${k}`) ?? "");
      if (paths.some((p, i) => p === "" && o.paths[["login", "refresh", "revoke"][i]] === "")) {
        throw configError("paths must be non-empty paths starting with a single \"/\"");
      }
    }
    let origins = [];
    if (o.allowedOrigins !== undefined) {
      if (!Array.isArray(o.allowedOrigins)) throw configError("allowedOrigins must be an array of origins");
      origins = o.allowedOrigins.map((v, i) => checkType(v, "string", `allowedOrigins[${i}]`) ?? String(v));
    }
    checkType(o.maxResponseBytes, "number", "maxResponseBytes");
    checkType(o.leaseMs, "number", "leaseMs");
    checkType(o.label, "string", "label");
    const [oauth, signer] = readOAuth(o.oauth);
    this.#fetch = readFetch(o.fetch);
    this.#storage = readStorage(o.storage);
    const encryptionKey = readEncryptionKey(o.encryptionKey, this.#storage);
    if (o.logger !== undefined && typeof o.logger !== "function") throw configError("logger must be a function");
    const waitUntil = readWaitUntil(o.waitUntil, "waitUntil");
    if (o.label !== undefined || o.logger !== undefined || waitUntil !== undefined || signer !== undefined) {
      this.#extra = { label: o.label, logger: o.logger, waitUntil, signer };
    }
    try {
      this.#core = new Core(
        this,
        o.host,
        username,
        password,
        ...numbers,
        o.autoRefresh,
        paths,
        o.storageKey,
        origins,
        o.allowInsecureHttp,
        o.maxResponseBytes,
        o.leaseMs,
        o.label,
        this.#storage === undefined ? 0 : typeof this.#storage.acquire === "function" ? 2 : 1,
        seed(signer !== undefined),
        oauth,
        o[OAUTH_API] === true || undefined,
      );
    } catch (e) {
      throw this.#error(e);
    }
    // Validated by the core above; the body reader needs it at hand.
    this.#maxBytes = this.#core.max_response_bytes();
    if (o.logger !== undefined) this.#core.set_logging(true);
    if (encryptionKey !== undefined) {
      // Every record sealed with AES-GCM by the runtime's WebCrypto; its key and account
      // are authenticated with it, so a record moved elsewhere does not open.
      const key = importKey(encryptionKey);
      key.catch(() => {}); // each storage call reports a bad key as STORAGE_ERROR
      this.#storage = encryptedStorage(this.#storage, key, { associatedData: this.#core.account() ?? "" });
    }
    let host = HOSTS.get(o.host);
    if (host === undefined) {
      const base = this.#core.resolve("/").slice(0, -1);
      host = [base, new URL(base).origin];
      if (HOSTS.size < 256) HOSTS.set(o.host, host);
    }
    this.#host = host;
  }

  // The driver's methods, on the prototype of the glue's `Core`: a session's core is its own
  // driver (`core.s` is the session), so a session holds no driver object of its own. They
  // only start work: none calls the machine back.
  static {
    Object.assign(Core.prototype, {
      send(io, endpoint, wire, url, body, authorization, sign, signAlg, maxBytes) {
        this.s.#send(io, wire, url, body, authorization, sign, signAlg, maxBytes);
      },
      cancel(io) {
        const s = this.s;
        const c = s.#io?.get(io);
        s.#ioDone(io);
        if (c instanceof AbortController) c.abort();
      },
      storage(op, io, key, value, version) {
        this.s.#storageCall(op, io, key, value, version);
      },
      wake(call, kind, error) {
        const box = this.s.#calls?.get(call);
        if (box === undefined) return;
        if (box.resolve) box.resolve({ wake: kind, error });
        else box.pending = { wake: kind, error };
      },
      settle(flight, outcome, error) {
        const s = this.s;
        const flights = (s.#flights ??= new Map());
        const f = flights.get(flight);
        if (f) {
          flights.delete(flight);
          if (flights.size === 0) s.#flights = null;
          f.resolve([outcome, error]);
        } else {
          (s.#early ??= []).push([flight, [outcome, error]]);
        }
      },
      log(event, endpoint, attempt, status, delayMs, code, trigger, followed) {
        const record = { time: new Date(), event };
        const label = this.s.#extra?.label;
        if (label !== undefined) record.label = label;
        if (endpoint !== undefined) record.endpoint = endpoint;
        if (attempt !== undefined) record.attempt = attempt;
        if (status !== undefined) record.status = status;
        if (delayMs !== undefined) record.delayMs = delayMs;
        if (code !== undefined) record.code = code;
        if (trigger !== undefined) record.trigger = trigger;
        if (followed !== undefined) record.followed = followed;
        (this.s.#events ??= []).push(["log", record]);
      },
      event(kind, payload, reason) {
        if (kind === 0) payload.reason = reason;
        const label = this.s.#extra?.label;
        if (kind !== 3 && label !== undefined) payload.label = label;
        (this.s.#events ??= []).push([EVENTS[kind], payload]);
      },
      arm(at, keep) {
        this.s.#arm(at, keep);
      },
      info(state, clientId, access, refresh) {
        return {
          state,
          clientId: clientId ?? null,
          accessExpiresAt: access === undefined ? null : new Date(access),
          refreshExpiresAt: refresh === undefined ? null : new Date(refresh),
        };
      },
      error(code, name, message, status, retryable, retryAfter, causeName, causeCode) {
        const d = describe(code, name, message, status, retryable);
        d.retryAfter = retryAfter;
        if (causeName !== undefined) d.cause = causeCode === undefined ? { name: causeName } : { name: causeName, code: causeCode };
        return d;
      },
    });
  }

  // ----- the driver: what the machine asks for ---------------------------------------------

  /**
   * Runs one machine call, then delivers the events it raised. A failure of the machine
   * itself (a bug: it never throws anything but descriptors) ends the session.
   */
  #call(fn) {
    if (this.#broken) throw this.#broken;
    this.#early = null;
    BUSY.push(this);
    try {
      return fn(this.#core, this.#core);
    } catch (e) {
      if (e && e[DESCRIPTOR]) throw e;
      this.#break(e);
      throw this.#broken;
    } finally {
      BUSY.pop();
      this.#flush();
      this.#drainQueue();
    }
  }

  /**
   * An input whose answer nobody awaits here (an I/O result, a timer, an abort): fed in now,
   * or, when it arrives while the machine is handling a call (a `fetch` or storage adapter
   * that answers or throws synchronously, a listener calling back), right after that call.
   * A failure is already reported to the waiters by the machine (or by #break).
   */
  #feed(fn) {
    if (BUSY.includes(this)) {
      (this.#queue ??= []).push(fn);
      return;
    }
    try {
      this.#call(fn);
    } catch {
      // Reported to the waiters.
    }
  }

  #drainQueue() {
    const queue = this.#queue;
    if (queue === null) return;
    this.#queue = null;
    for (const fn of queue) this.#feed(fn);
  }

  #flush() {
    const events = this.#events;
    if (events === null) return;
    this.#events = null;
    for (const [name, payload] of events) {
      if (name === "log") {
        try {
          const logger = this.#extra?.logger;
          if (logger !== undefined) logger(payload);
        } catch {
          // A logger's failure is its own.
        }
        continue;
      }
      const listeners = this.#listeners?.[name];
      if (!listeners) continue;
      // Each listener of an `error` event gets its own AuthError, built here.
      for (const listener of [...listeners]) {
        try {
          listener(name === "error" ? toError(payload) : payload);
        } catch {
          // A listener's failure is its own; the session goes on.
        }
      }
    }
  }

  /** The machine failed: nothing it holds can be trusted, so every waiter is released. */
  #break(e) {
    const [name] = causeOf(e);
    this.#broken = describe("DISPOSED", "DisposedError", `the session stopped after an internal error (${name})`);
    for (const [, c] of this.#io ?? []) if (c instanceof AbortController) c.abort();
    this.#io = null;
    this.#arm(-1, false);
    for (const [, f] of this.#flights ?? []) f.resolve([FAILED, this.#broken]);
    this.#flights = null;
  }

  /** A thrown descriptor as an AuthError (anything else is passed on as is). */
  #error(e) {
    return e && e[DESCRIPTOR] ? toError(e) : e;
  }

  /**
   * The machine's one deadline, kept in the process's heap of deadlines (one runtime timer
   * for every session: thousands of idle sessions hold no timer object each, and a call's
   * deadline replaced by a later one costs no timer call).
   */
  #arm(at, keep) {
    if (TIMERS_PER_REQUEST) {
      // workerd: a timer belongs to the request that set it and ends with it, so one timer
      // for the whole isolate would be lost with the first request that set it. Each
      // session sets its own, in the request of the machine call that armed it.
      clearTimeout(this.#slot);
      this.#slot = -1;
      if (at >= 0) this.#slot = setTimeout(() => FIRE(this), Math.min(Math.max(at - now(), 0), MAX_TIMER_MS));
      return;
    }
    if (this.#keep) KEPT--;
    this.#keep = at >= 0 && keep;
    if (this.#keep) KEPT++;
    this.#due = at;
    if (at < 0) heapRemove(this);
    else heapPlace(this);
    schedule();
  }

  // The heap's access to a session's deadline and slot (module functions below).
  static {
    DUE = (s) => s.#due;
    SLOT = (s) => s.#slot;
    SET_SLOT = (s, i) => {
      s.#slot = i;
    };
    FIRE = (s) => {
      if (s.#keep) KEPT--;
      s.#keep = false;
      s.#due = -1;
      if (TIMERS_PER_REQUEST) s.#slot = -1;
      s.#feed((c, d) => c.timeout(d, now()));
    };
  }

  /** An auth request for the machine: no redirects, the machine's deadline. `wire`: 0 POST
   *  JSON, 1 POST form (OAuth 2.0), 2 GET (metadata). `sign`: a client assertion's signing
   *  input, whose JWT completes the body. */
  #send(io, wire, url, body, authorization, sign, signAlg, maxBytes) {
    const ctrl = new AbortController();
    (this.#io ??= new Map()).set(io, ctrl);
    const headers =
      wire === 0
        ? { "content-type": "application/json" }
        : wire === 1
          ? { "content-type": "application/x-www-form-urlencoded", accept: "application/json" }
          : { accept: "application/json" };
    if (authorization !== undefined) headers.authorization = authorization;
    const init = { method: wire === 2 ? "GET" : "POST", headers, redirect: "manual", signal: ctrl.signal };
    if (wire !== 2) init.body = body;
    const signer = this.#extra?.signer;
    const live = () => this.#io?.get(io) === ctrl;
    const report = (fn) => {
      if (!live()) return;
      this.#ioDone(io);
      this.#feed(fn);
    };
    (async () => {
      let res;
      if (sign !== undefined) {
        try {
          if (signer === undefined) throw new TypeError("no private key");
          init.body = `${body}${sign}.${await signer.sign(sign, signAlg)}`;
        } catch (e) {
          const [name, code] = causeOf(e);
          return report((c, d) => c.auth_failed(d, now(), io, 3, name, code));
        }
        if (!live()) return;
      }
      try {
        // Called after the machine call that asked for it: a fetch that throws or answers
        // synchronously is an answer like any other.
        await undefined;
        res = await this.#fetch(url, init);
      } catch (e) {
        const [name, code] = causeOf(e);
        return report((c, d) => c.auth_failed(d, now(), io, 0, name, code));
      }
      const parts = responseParts(res);
      if (parts === null) return report((c, d) => c.auth_failed(d, now(), io, 1, undefined, undefined));
      if (!live()) return discard(res);
      const { status, headers: h, type } = parts;
      const redirected = type === "opaqueredirect" || (status >= 300 && status < 400);
      const date = header(h, "date");
      const retryAfter = header(h, "retry-after");
      let text;
      if (redirected) {
        discard(res);
        text = "";
      } else {
        try {
          text = await readText(res, maxBytes);
        } catch (e) {
          if (e instanceof TooLarge) return report((c, d) => c.auth_failed(d, now(), io, 2, undefined, undefined));
          const [name, code] = causeOf(e);
          return report((c, d) => c.auth_failed(d, now(), io, 0, name, code));
        }
      }
      const [kind, value] = parseBody(text);
      report((c, d) => c.auth_reply(d, now(), io, status, redirected, date, retryAfter, kind, value));
    })();
  }

  /** An I/O is answered or cancelled: forget it (and the map, once empty). */
  #ioDone(io) {
    const map = this.#io;
    if (!map) return;
    map.delete(io);
    if (map.size === 0) this.#io = null;
  }

  /** A storage call for the machine, run after the current call (never re-entering it). */
  #storageCall(op, io, key, value, version) {
    (this.#io ??= new Map()).set(io, true);
    const s = this.#storage;
    const report = (fn) => {
      if (!this.#io?.has(io)) return;
      this.#ioDone(io);
      this.#feed(fn);
    };
    Promise.resolve()
      .then(() => {
        switch (op) {
          case 0: return s.get(key);
          // A store that can compare-and-set writes only over a lower version.
          case 1: return typeof s.putIfNewer === "function" ? s.putIfNewer(key, value, version) : s.put(key, value);
          case 2: return s.delete(key);
          case 3: return s.acquire(key, Number(value));
          default: return s.release(key, value);
        }
      })
      .then(
        (v) => {
          if (op === 3) {
            // acquire: a lease id, or "another holder has it" (null, undefined, false);
            // anything else is garbage the machine reports.
            const kind = typeof v === "string" && v !== "" ? 4 : v === null || v === undefined || v === false ? 0 : 2;
            return report((c, d) => c.storage_reply(d, now(), io, kind, kind === 4 ? v : undefined, undefined, undefined));
          }
          if (op !== 0 || v === null || v === undefined) {
            return report((c, d) => c.storage_reply(d, now(), io, 0, undefined, undefined, undefined));
          }
          let parsed;
          try {
            parsed = typeof v === "string" ? JSON.parse(v) : undefined;
          } catch {
            parsed = undefined;
          }
          const kind = parsed !== null && typeof parsed === "object" ? 1 : 2;
          report((c, d) => c.storage_reply(d, now(), io, kind, parsed, undefined, undefined));
        },
        (e) => {
          const [name, code] = causeOf(e);
          report((c, d) => c.storage_reply(d, now(), io, 3, undefined, name, code));
        },
      );
  }

  // ----- flights ---------------------------------------------------------------------------

  /** The promise of `flight`, resolving with [outcome, descriptor]. */
  #promise(flight) {
    const early = this.#early?.find(([id]) => id === flight);
    if (early) return Promise.resolve(early[1]);
    const flights = (this.#flights ??= new Map());
    let f = flights.get(flight);
    if (!f) {
      let resolve;
      const promise = new Promise((r) => (resolve = r));
      f = { promise, resolve };
      flights.set(flight, f);
    }
    return f.promise;
  }

  /** Awaits a flight, or the caller's signal (ABORTED at once; the flight goes on). */
  #wait(flight, signal, waitUntil) {
    const p = this.#promise(flight);
    if (waitUntil) waitUntil(p.then(() => undefined));
    if (signal == null) return p;
    if (signal.aborted) return Promise.reject(toError(aborted()));
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(toError(aborted()));
      signal.addEventListener("abort", onAbort, { once: true });
      p.then((v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      });
    });
  }

  /** Runs a user operation that may wait for flights (login, refresh, revoke, restore). */
  async #operation(start) {
    let flight = this.#call(start);
    let outcome = DONE;
    while (flight > 0) {
      const [o, err] = await this.#wait(flight);
      if (o === FAILED) throw toError(err);
      if (o !== AGAIN) {
        outcome = o;
        break;
      }
      flight = this.#call((c, d) => c.rejoin(d));
    }
    return outcome;
  }

  /**
   * A token for a call: `need` as the machine knows it. Returns [token, serial] at once
   * when the machine has one (the common case costs no await), else a promise of it that
   * waits for flights as the machine says.
   */
  #token(need, signal, waitUntil, after401Serial) {
    const step =
      after401Serial !== undefined
        ? this.#call((c, d) => c.token_after_401(d, now(), after401Serial))
        : this.#call((c, d) => c.token(d, now(), need, WAITED_NOTHING, 0));
    return this.#tokenStep(step, need, signal, waitUntil);
  }

  /** [token, serial] now for a ready step, else a promise of it after the waits. */
  #tokenStep(step, need, signal, waitUntil) {
    if (step > 0) return this.#ready(step, waitUntil);
    return this.#tokenAfterWaits(step, need, signal, waitUntil);
  }

  async #tokenAfterWaits(step, need, signal, waitUntil) {
    let failure;
    for (let round = 1; ; round++) {
      if (step > 0) return this.#ready(step, waitUntil);
      if (step === 0) throw toError(failure);
      const [o, err] = await this.#wait(-step, signal, waitUntil);
      failure = err;
      const waited = o === FAILED ? (err.retryable ? WAITED_RETRYABLE : WAITED_FINAL) : o === AGAIN ? WAITED_NOTHING : WAITED_DONE;
      step = this.#call((c, d) => c.token(d, now(), need, waited, round));
    }
  }

  /** [token, serial] for a ready step; a refresh started behind the call goes to waitUntil. */
  #ready(serial, waitUntil) {
    if (waitUntil) {
      const background = this.#core.background;
      if (background > 0) waitUntil(this.#promise(background).then(() => undefined));
    }
    // The text crosses the boundary once per pair, not once per call.
    if (serial !== this.#tokenSerial) {
      this.#tokenText = this.#core.token_text();
      this.#tokenSerial = serial;
    }
    return [this.#tokenText, serial];
  }

  // ----- the public API --------------------------------------------------------------------

  get info() {
    return this.#core.session_info(this.#core);
  }

  /**
   * May a request to `url` carry the bearer token (the host's origin, or allowedOrigins)?
   * For clients that set the header themselves (see auth-session/clients).
   */
  mayReceiveToken(url) {
    let origin;
    try {
      origin = new URL(String(url), this.#host[0] + "/").origin;
    } catch {
      return false;
    }
    try {
      this.#checkOrigin(origin);
      return true;
    } catch {
      return false;
    }
  }

  toJSON() {
    return this.info;
  }

  on(event, listener) {
    if (!EVENTS.includes(event)) throw configError(`unknown event "${String(event).slice(0, 32)}"; events: ${EVENTS.join(", ")}`);
    if (typeof listener !== "function") throw configError("listener must be a function");
    const listeners = ((this.#listeners ??= {})[event] ??= new Set());
    listeners.add(listener);
    return () => listeners.delete(listener);
  }

  async login(username, password) {
    if ((username === undefined) !== (password === undefined)) {
      throw configError("login() takes both a username and a password, or neither");
    }
    if (username !== undefined && (typeof username !== "string" || typeof password !== "string")) {
      throw configError("login() username and password must be strings");
    }
    if (username !== undefined) {
      checkWellFormed(username, "login() username");
      checkWellFormed(password, "login() password");
    }
    try {
      await this.#operation((c, d) => c.login(d, now(), username, password));
      return this.#call((c, d) => c.result(d));
    } catch (e) {
      throw this.#error(e);
    }
  }

  async refresh() {
    try {
      await this.#operation((c, d) => c.refresh(d, now()));
      return this.#call((c, d) => c.result(d));
    } catch (e) {
      throw this.#error(e);
    }
  }

  async revoke() {
    this.#tokenText = "";
    this.#tokenSerial = -1;
    try {
      await this.#operation((c, d) => c.revoke(d, now()));
    } catch (e) {
      throw this.#error(e);
    }
  }

  async restore() {
    try {
      const outcome = await this.#operation((c, d) => c.restore(d, now()));
      return outcome === DONE ? this.info : null;
    } catch (e) {
      throw this.#error(e);
    }
  }

  async getAccessToken(init) {
    try {
      const replacing = init?.replacing;
      if (replacing !== undefined && typeof replacing !== "string") {
        throw configError("getAccessToken({ replacing }) takes the token a server rejected, as a string");
      }
      let got =
        replacing === undefined
          ? this.#token(NEED_STRICT, init?.signal)
          : this.#tokenStep(this.#call((c, d) => c.token_replacing(d, now(), replacing)), NEED_REPLAY, init?.signal);
      if (!Array.isArray(got)) got = await got;
      const [token] = got;
      return token;
    } catch (e) {
      throw this.#error(e);
    }
  }

  [SCHEDULE](at) {
    const [skewMs, dueAt, retryAt] = this.#core.schedule(at);
    const some = (t) => (t < 0 ? undefined : t);
    return { skewMs, dueAt: some(dueAt), retryAt: some(retryAt) };
  }

  /** No call, no auth or storage work in flight: disposing now breaks and loses nothing. */
  [IDLE]() {
    if (this.#broken) return true;
    return this.#io === null && this.#calls === null && this.#core.idle();
  }

  dispose() {
    if (this.#broken) return;
    this.#tokenText = "";
    this.#tokenSerial = -1;
    // Every API call in flight is woken with DISPOSED by the machine.
    this.#call((c, d) => c.dispose(d));
    this.#arm(-1, false);
  }

  fetch(input, init) {
    return this.#api(input, init, false);
  }

  json(input, init) {
    return this.#api(input, init, true);
  }

  /** Builds what every attempt of `fetch`/`json` sends; throws the runtime's TypeError for bad input. */
  #prepare(input, init, asJson) {
    const given = init ?? {};
    let url;
    let template;
    if (typeof input === "string" && input.charCodeAt(0) === 47 /* "/" */) {
      // The common case: a path. The host (with its prefix) as the machine joins it.
      url = new URL(this.#host[0] + input);
    } else if (typeof input === "string" || input instanceof URL) {
      url = new URL(this.#core.resolve(String(input)));
    } else if (input !== null && typeof input === "object" && typeof input.url === "string" && typeof input.method === "string") {
      template = new Request(input, init);
      url = new URL(template.url);
    } else if (input !== null && typeof input === "object") {
      url = new URL(this.#core.resolve(String(input)));
    } else {
      throw new TypeError("fetch() input must be a string, a URL or a Request");
    }
    this.#checkOrigin(url.origin);
    let body = given.body;
    const headers = new Headers(template ? template.headers : given.headers);
    if (given.json !== undefined) {
      const m = String(given.method ?? template?.method ?? "GET").toUpperCase();
      if (m === "GET" || m === "HEAD") throw configError("init.json cannot be sent with GET or HEAD");
      if (body !== undefined && body !== null) throw configError("init.json and init.body cannot both be given");
      body = JSON.stringify(given.json);
      if (!headers.has("content-type")) headers.set("content-type", "application/json");
    }
    if (asJson && !headers.has("accept")) headers.set("accept", "application/json");
    const method = String(template ? template.method : given.method ?? "GET").toUpperCase();
    if (template && given.json !== undefined) {
      // A Request input with a JSON body from `init.json`: the template carries it.
      template = new Request(template, { body, headers });
    }
    if (!template && isStream(body)) {
      // A stream can be read once: a Request tees it for each replay.
      template = new Request(url, { ...given, body, headers, method, duplex: "half" });
    }
    return { url, method, headers, body, template, init: given };
  }

  /** The machine's verdict on an origin, remembered (the options never change). */
  #checkOrigin(origin) {
    if (origin === this.#host[1] || this.#allowed?.has(origin)) return;
    this.#call((c, d) => c.check_origin(d, origin));
    const allowed = (this.#allowed ??= new Set());
    if (allowed.size < 64) allowed.add(origin);
  }

  async #api(input, init, asJson) {
    let id = 0;
    try {
      const call = this.#prepare(input, init, asJson);
      const signal = call.init.signal ?? call.template?.signal;
      const waitUntil = call.init.waitUntil !== undefined ? readWaitUntil(call.init.waitUntil, "init.waitUntil") : this.#extra?.waitUntil;
      id = this.#call((c, d) => c.api_open(d, call.method, call.url.pathname, asJson ? 1 : 0, waitUntil !== undefined));
      return await this.#attempts(id, call, signal, waitUntil, asJson);
    } catch (e) {
      throw this.#error(e);
    }
  }

  /**
   * The next thing that happens to API call `box`: a wake from the machine ({ wake, error }:
   * its deadline, a backoff's end, an abort, dispose) or, when `io` is given, what `io`
   * resolves to ({ io }), whichever comes first.
   */
  #next(box, io) {
    const pending = box.pending;
    if (pending !== null) {
      box.pending = null;
      return Promise.resolve(pending);
    }
    return new Promise((resolve) => {
      // This wait's own waker: a late `io` of an earlier wait never resolves a later one.
      const wake = (w) => {
        if (box.resolve !== wake) return;
        box.resolve = null;
        resolve(w);
      };
      box.resolve = wake;
      io?.then((v) => wake({ io: v }));
    });
  }

  async #attempts(id, call, signal, waitUntil, asJson) {
    let { url, method, body } = call;
    const box = { resolve: null, pending: null };
    (this.#calls ??= new Map()).set(id, box);
    let ctrl;
    const onAbort = () => {
      ctrl?.abort();
      this.#feed((c, d) => {
        const e = c.api_abort(d, id);
        if (e !== undefined) this.#core.wake(id, WAKE_FAIL, e);
      });
    };
    signal?.addEventListener?.("abort", onAbort, { once: true });
    try {
      if (isAbort(signal)) onAbort();
      for (;;) {
        let got = this.#apiToken(id, box, waitUntil);
        if (!Array.isArray(got)) got = await got;
        const [token] = got;
        call.headers.set("authorization", `Bearer ${token}`);
        ctrl = new AbortController();
        const attempt = this.#fetchAttempt(call, url, method, body, ctrl.signal);
        let next = await this.#next(box, attempt);
        if (next.wake !== undefined) {
          // The machine ended the attempt (its deadline): whatever fetch does with its
          // signal, the call goes on (or fails) without it.
          ctrl.abort();
          attempt.then((r) => r.res && discard(r.res));
          if (next.wake === WAKE_ABANDON) next = await this.#next(box);
          if (next.wake === WAKE_FAIL) throw toError(next.error);
          continue;
        }
        const { res, error } = next.io;
        const parts = error === undefined ? responseParts(res) : null;
        if (parts === null) {
          const [name, code] = error === undefined ? [] : causeOf(error);
          const kind = error === undefined ? 1 : 0;
          const step = this.#call((c, d) => c.api_failed(d, now(), id, kind, name, code));
          if (step === WAIT) await this.#waitForSend(box);
          continue;
        }
        const { status, headers, type } = parts;
        let step = this.#call((c, d) =>
          c.api_response(
            d,
            now(),
            id,
            status,
            type === "opaqueredirect",
            header(headers, "retry-after"),
            header(headers, "www-authenticate"),
          ),
        );
        if (step === LOCATE) {
          const next = this.#location(headers, url);
          step = this.#call((c, d) => c.api_location(d, id, next?.origin));
          if (step === FOLLOW || step === FOLLOW_GET) {
            discard(res);
            url = next;
            if (step === FOLLOW_GET) {
              method = "GET";
              body = undefined;
              call.headers.delete("content-type");
              call.template = undefined;
            }
            continue;
          }
        }
        if (step === RETURN) {
          // The caller reads this response's body: its signal must stay as it is.
          ctrl = undefined;
          return res;
        }
        if (step === READ) {
          const data = await this.#readJson(id, box, res);
          // The body is read whole: nothing is left to stop. (An abort here cost every
          // json() call a DOMException and an abort event through fetch's listeners: about
          // a tenth of a request's CPU.)
          ctrl = undefined;
          return data;
        }
        discard(res);
        if (step === WAIT) await this.#waitForSend(box);
        else if (step === GONE) {
          const w = await this.#next(box);
          if (w.wake === WAKE_FAIL) throw toError(w.error);
        }
        // TOKEN (the replay after a 401) and a finished wait: the next attempt.
      }
    } catch (e) {
      // Every AuthError here is the machine's, which has ended the call; anything else (the
      // runtime refusing to build a request) ends it here. An ordinary return needs neither.
      if (!AuthError.is(e)) this.#feed((c, d) => c.api_close(d, id));
      throw e;
    } finally {
      ctrl?.abort();
      signal?.removeEventListener?.("abort", onAbort);
      this.#calls?.delete(id);
      if (this.#calls?.size === 0) this.#calls = null;
    }
  }

  /** Waits out a retry's backoff (the machine's timer); its failure is the call's. */
  async #waitForSend(box) {
    const w = await this.#next(box);
    if (w.wake === WAKE_FAIL) throw toError(w.error);
  }

  /** Starts one attempt. Never throws: a fetch that throws synchronously is a failure. */
  #fetchAttempt(call, url, method, body, signal) {
    try {
      const request = call.template
        ? new Request(call.template.clone(), { headers: call.headers, redirect: "manual", signal })
        : undefined;
      const p = request
        ? this.#fetch(request)
        : this.#fetch(url.href, { ...call.init, method, headers: call.headers, body, redirect: "manual", signal });
      return Promise.resolve(p).then(
        (res) => ({ res }),
        (error) => ({ error: error ?? new Error() }),
      );
    } catch (error) {
      return Promise.resolve({ error: error ?? new Error() });
    }
  }

  /**
   * The call's token: [token, serial] at once when the machine has one, else a promise of
   * it after the flights it waits for (or the call's wake: abort, dispose).
   */
  #apiToken(id, box, waitUntil) {
    const step = this.#call((c, d) => c.api_token(d, now(), id, WAITED_NOTHING, 0));
    if (step > 0) return this.#ready(step, waitUntil);
    return this.#apiTokenAfterWaits(id, box, step, waitUntil);
  }

  async #apiTokenAfterWaits(id, box, step, waitUntil) {
    let failure;
    for (let round = 1; ; round++) {
      if (step > 0) return this.#ready(step, waitUntil);
      if (step === 0) throw toError(failure);
      const flight = this.#promise(-step);
      if (waitUntil) waitUntil(flight.then(() => undefined));
      const next = await this.#next(box, flight);
      if (next.wake !== undefined) {
        if (next.wake === WAKE_FAIL) throw toError(next.error);
        continue;
      }
      const [o, err] = next.io;
      failure = err;
      const waited = o === FAILED ? (err.retryable ? WAITED_RETRYABLE : WAITED_FINAL) : o === AGAIN ? WAITED_NOTHING : WAITED_DONE;
      step = this.#call((c, d) => c.api_token(d, now(), id, waited, round));
    }
  }

  /** `Location` resolved against the request URL, if it is a URL at all. */
  #location(headers, base) {
    const location = header(headers, "location");
    if (location === undefined) return undefined;
    try {
      return new URL(location, base);
    } catch {
      return undefined;
    }
  }

  /** json(): the body, read until the attempt's deadline (the machine's wake) or the cap. */
  async #readJson(id, box, res) {
    const holder = { reader: undefined };
    const read = readText(res, this.#maxBytes, holder).then(
      (text) => ({ text }),
      (error) => ({ error }),
    );
    const next = await this.#next(box, read);
    if (next.wake !== undefined) {
      // Its deadline, an abort or dispose: the read stops here, whatever the stream does.
      if (holder.reader) holder.reader.cancel().catch(() => {});
      else discard(res);
      throw toError(next.error);
    }
    const { text, error } = next.io;
    let kind, value, name, code;
    if (error !== undefined) {
      kind = error instanceof TooLarge ? BODY_TOO_LARGE : BODY_UNREADABLE;
      [name, code] = causeOf(error);
    } else {
      [kind, value] = parseBody(text);
    }
    const step = this.#call((c, d) => c.api_body(d, id, kind, value, name, code));
    if (step === DATA) return value.data;
    if (step === WHOLE) return value;
    if (step === GONE) {
      const w = await this.#next(box);
      throw toError(w.error);
    }
    return undefined;
  }
}

function aborted() {
  return describe("ABORTED", "AbortError", "the operation was aborted by its AbortSignal");
}

// `using session = new AuthSession(…)` runs dispose(); Node/Deno/Bun's inspect shows the
// info (never a token).
const disposeSymbol = Symbol.dispose ?? Symbol.for("Symbol.dispose");
Object.defineProperty(AuthSession.prototype, disposeSymbol, {
  value() {
    this.dispose();
  },
  writable: true,
  configurable: true,
});
Object.defineProperty(AuthSession.prototype, Symbol.for("nodejs.util.inspect.custom"), {
  value(depth, options, inspect) {
    if (depth < 0) return typeof options?.stylize === "function" ? options.stylize("[AuthSession]", "special") : "[AuthSession]";
    const info = this.info;
    if (typeof inspect !== "function") return info;
    return `AuthSession ${inspect(info, { ...options, depth: options.depth == null ? null : options.depth - 1 })}`;
  },
  writable: true,
  configurable: true,
});
