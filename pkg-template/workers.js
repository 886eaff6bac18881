// auth-session/workers: one refresh per rotation for every isolate of a Worker, with a
// Durable Object as the coordinator.
//
// Workers KV cannot coordinate rotating refresh tokens: it is eventually consistent (another
// location reads the old, spent token for up to a minute) and takes about one write per
// second per key. A Durable Object is one strongly consistent instance per name, so it can
// own the refresh: `AuthBroker` holds the one real AuthSession of an account (tokens in its
// own storage, a refresh ahead of expiry on an alarm), and `brokeredSession()` gives each
// isolate a normal AuthSession whose auth calls go to the broker over RPC instead of to the
// API. The refresh token never leaves the Durable Object; isolates get the access token, its
// expiry and an opaque handle ("broker.<version>") in place of the refresh token.
//
// Measured in workerd (Miniflare): a Durable Object stub is an I/O object of the request
// that made it ("Cannot perform I/O on behalf of a different request"), so a session kept
// per isolate makes a new stub from the namespace for every auth call.

import { DurableObject } from "cloudflare:workers";
import { AuthSession, AuthError } from "./workerd.mjs";
import { OAUTH_API, readFetch, SCHEDULE } from "./session.js";

export { AuthSession, AuthError };

/** The broker's own key in its storage: the version of the pair it holds (it only grows). */
const VERSION_KEY = "auth-broker:version";
/** Set by `revoke()`, cleared by an explicit `login()`: a revoked account stays revoked for
 *  every isolate, and across the broker's restarts, until someone logs in on purpose. */
const REVOKED_KEY = "auth-broker:revoked";
/** What an isolate holds in place of the refresh token: this prefix and the pair's version. */
const HANDLE_PREFIX = "broker.";
/** The isolate session's credentials: never sent anywhere, they make `login()` without
 *  arguments and the re-login after a rejected refresh go to the broker. */
const PLACEHOLDER = Object.freeze({ username: "auth-broker", password: "auth-broker-placeholder-credentials" });
/** An expiry the authorization server did not state (OAuth 2.0), as handed to isolates. */
const UNKNOWN_EXPIRY = new Date("9999-12-31T23:59:59Z");
/** An alarm this close to the refresh time refreshes (alarms may fire a little early). */
const ALARM_EARLY_MS = 50;

const configError = (message) => new AuthError(message, "ConfigError", "CONFIG_ERROR", 0, false);

/**
 * What every RPC method of the broker answers: `{ ok: true, value }` or `{ ok: false, error }`,
 * plain data. An Error thrown across RPC keeps its own properties (code, status…) only under
 * workerd's `enhanced_error_serialization` flag, so at other compatibility dates the isolate
 * could not tell the broker's SESSION_EXPIRED from an unreachable broker; plain data reads the
 * same at every date. The broker never throws across RPC.
 */
const answered = (value) => ({ ok: true, value });

/** A failure of the broker as plain data: an AuthError's fields (its message is already
 *  redacted by the session), or, for anything else, its name only (a 503, retried). */
function failed(e) {
  if (e instanceof AuthError) {
    const error = {
      code: String(e.code),
      name: String(e.name),
      message: String(e.message),
      status: Number.isInteger(e.status) ? e.status : 0,
      retryable: e.retryable === true,
    };
    if (typeof e.retryAfter === "number" && Number.isFinite(e.retryAfter)) error.retryAfter = e.retryAfter;
    return { ok: false, error };
  }
  const name = e !== null && typeof e === "object" && typeof e.name === "string" ? e.name : typeof e;
  return {
    ok: false,
    error: { code: "SERVER_ERROR", name: "ServerError", message: `the broker failed (${name})`, status: 503, retryable: true },
  };
}

const accountRevoked = () =>
  new AuthError(
    "the account's session was revoked; an explicit login() starts a new one",
    "NotAuthenticatedError",
    "NOT_AUTHENTICATED",
    401,
    false,
  );

const sessionEnded = () =>
  new AuthError(
    "the broker holds no session (revoked, or never logged in): log in again",
    "SessionExpiredError",
    "SESSION_EXPIRED",
    401,
    false,
  );

/**
 * The Durable Object that alone logs in and refreshes for one account (one object per
 * account: `env.AUTH_BROKER.idFromName(account)`). Export it from the Worker's main module
 * and bind it (`[[durable_objects.bindings]]`, with a `[[migrations]]` entry).
 *
 * RPC methods: `pair()`, `login()`, `refresh(version)`, `revoke()` (each answers
 * `{ ok: true, value }` or `{ ok: false, error }`, never throws), `status()`. Isolates normally use them through
 * {@link brokeredSession}.
 */
export class AuthBroker extends DurableObject {
  /** The one real session (made on first use: its options come from env). */
  #session = null;
  /** The start (options, version, restore from storage), once; a failure is not kept. */
  #started = null;
  /** The version of the pair held: +1 for every login or refresh, kept in storage. */
  #version = 0;
  /** +1 whenever the pair changes or goes: a token read across a change is read again. */
  #epoch = 0;
  #loggingIn = null;
  /** `revoke()` was the last word (kept in storage): no pair, and no login but an explicit one. */
  #revoked = false;
  /** Whether an isolate asked since the last alarm refresh: an idle broker stops refreshing. */
  #used = true;
  #origin = "";

  /**
   * The broker's AuthSession options. The default reads `env.AUTH_SESSION_HOST`,
   * `env.AUTH_SESSION_USERNAME`, `env.AUTH_SESSION_PASSWORD` and (optional)
   * `env.AUTH_SESSION_REFRESH_MARGIN_SECONDS`. Override it to read other names or, for one
   * broker per account, `this.ctx.id.name`. Like every public method of a Durable Object it
   * can be called over RPC: read secrets from the `env` argument, never from `this.env`, so
   * such a call only returns what its caller passed in.
   * `storage` and `autoRefresh` are the broker's: its storage and its alarm.
   */
  sessionOptions(env) {
    const e = env ?? {};
    for (const name of ["AUTH_SESSION_HOST", "AUTH_SESSION_USERNAME", "AUTH_SESSION_PASSWORD"]) {
      if (typeof e[name] !== "string" || e[name] === "") {
        throw configError(`AuthBroker: ${name} is not set (a var or secret of the Worker that exports AuthBroker)`);
      }
    }
    const margin = e.AUTH_SESSION_REFRESH_MARGIN_SECONDS;
    return {
      host: e.AUTH_SESSION_HOST,
      credentials: { username: e.AUTH_SESSION_USERNAME, password: e.AUTH_SESSION_PASSWORD },
      refreshMarginSeconds: margin === undefined || margin === "" ? undefined : Number(margin),
    };
  }

  /**
   * The current access token, its expiry, the client id and the pair's version; logs in
   * when the broker holds no session. The refresh token stays here.
   * @returns {Promise<BrokerResult<BrokerPair>>}
   */
  async pair() {
    this.#used = true;
    try {
      await this.#ready();
      if (this.#revoked) throw accountRevoked();
      const state = this.#session.info.state;
      if (state === "revoked" || state === "expired") await this.#login();
      return answered(await this.#current());
    } catch (e) {
      return failed(e);
    }
  }

  /**
   * An explicit login (an isolate's `login()`): ends a revocation, logs in, and answers the
   * new pair as `pair()` does.
   * @returns {Promise<BrokerResult<BrokerPair>>}
   */
  async login() {
    this.#used = true;
    try {
      await this.#ready();
      if (this.#revoked) {
        this.#revoked = false;
        await this.ctx.storage.delete(REVOKED_KEY);
      }
      await this.#login();
      return answered(await this.#current());
    } catch (e) {
      return failed(e);
    }
  }

  /**
   * A pair newer than `version`. Only the holder of the current pair (`version` is the
   * broker's version) causes a refresh (single-flight: every isolate that asks meanwhile
   * shares it); an older version gets the current pair at once, and any other number
   * nothing more than that: a caller cannot force refreshes. Fails with SESSION_EXPIRED
   * (status 401) when the broker holds no session.
   * @returns {Promise<BrokerResult<BrokerPair>>}
   */
  async refresh(version) {
    this.#used = true;
    try {
      await this.#ready();
      const s = this.#session;
      if (this.#revoked || s.info.state !== "active") throw sessionEnded();
      if (version === this.#version) await s.refresh();
      return answered(await this.#current());
    } catch (e) {
      return failed(e);
    }
  }

  /** Ends the account's session for every isolate: the server is told, storage cleared. */
  async revoke() {
    try {
      await this.#ready();
      // Kept before anything else: a revoke that fails half-way still leaves the account
      // revoked for every isolate (and for the next instance of the broker).
      this.#revoked = true;
      await this.ctx.storage.put(REVOKED_KEY, true);
      await this.ctx.storage.deleteAlarm().catch(() => {});
      if (this.#session.info.state === "active" || this.#loggingIn) await this.#session.revoke();
      return answered({ revoked: true });
    } catch (e) {
      return failed(e);
    }
  }

  /** What the broker holds, without a token. */
  async status() {
    let failed;
    try {
      await this.#ready();
    } catch (e) {
      failed = e;
    }
    const info = this.#session?.info;
    return {
      state: info?.state ?? "anonymous",
      clientId: info?.clientId ?? null,
      accessExpiresAt: info?.accessExpiresAt ?? null,
      refreshExpiresAt: info?.refreshExpiresAt ?? null,
      version: this.#version,
      revoked: this.#revoked,
      error: failed ? { code: failed.code ?? "INTERNAL", message: String(failed.message) } : null,
    };
  }

  /** Refreshes ahead of expiry, then re-arms (the tokens event does). Never throws: a
   *  failure re-arms for a later try, as the session's own timer would. */
  async alarm() {
    try {
      await this.#ready();
    } catch {
      return; // Misconfigured: the next RPC reports it.
    }
    const s = this.#session;
    if (this.#revoked || s.info.state !== "active") return;
    // Nobody asked since the last refresh: let the pair lapse; the next call refreshes.
    if (!this.#used) return;
    if (Date.now() < this.#dueAt() - ALARM_EARLY_MS) return this.#arm();
    this.#used = false;
    try {
      await s.refresh();
    } catch {
      // When to try again is the session's rule, as for its own timer.
      const retryAt = s[SCHEDULE](Date.now()).retryAt;
      if (s.info.state === "active" && retryAt !== undefined) {
        await this.ctx.storage.setAlarm(retryAt).catch(() => {});
      }
    }
  }

  // ----- inside ----------------------------------------------------------------------------

  #ready() {
    if (!this.#started) {
      const p = this.#start();
      this.#started = p;
      p.catch(() => {
        if (this.#started === p) this.#started = null;
      });
    }
    return this.#started;
  }

  async #start() {
    const given = await this.sessionOptions(this.env);
    if (given === null || typeof given !== "object") {
      throw configError("AuthBroker: sessionOptions(env) must return AuthSession options");
    }
    const { storage, autoRefresh, fetch, ...options } = given;
    if (storage !== undefined) {
      throw configError("AuthBroker: the broker keeps the tokens in its own storage; sessionOptions must not set storage");
    }
    const send = readFetch(fetch);
    const session = new AuthSession({
      ...options,
      // The alarm refreshes: it survives the object's eviction, a timer does not.
      autoRefresh: false,
      storage: this.ctx.storage,
      fetch: send,
    });
    this.#origin = new URL(options.host.trim()).origin;
    session.on("tokens", (info) => this.#installed(info));
    const gone = () => {
      this.#epoch++;
      this.ctx.storage.deleteAlarm().catch(() => {});
    };
    session.on("revoked", gone);
    session.on("expired", gone);
    const stored = await this.ctx.storage.get(VERSION_KEY);
    this.#version = Number.isSafeInteger(stored) && stored > 0 ? stored : 0;
    this.#revoked = (await this.ctx.storage.get(REVOKED_KEY)) === true;
    this.#session = session;
    try {
      await session.restore();
    } catch {
      // Reported to the session's error listeners; the next call logs in.
    }
  }

  /** The session holds a new pair (tokens event): a new version, the next alarm. */
  #installed(info) {
    this.#epoch++;
    if (info.reason !== "restore" || this.#version === 0) {
      this.#version += 1;
      // The output gate holds this call's answer until the write is durable.
      this.ctx.storage.put(VERSION_KEY, this.#version).catch(() => {});
    }
    this.#arm();
  }

  /** When the session counts the pair as due (its expiry on our clock, less its margin):
   *  the machine's answer, not a copy of its rule. */
  #dueAt() {
    return this.#session?.[SCHEDULE](Date.now()).dueAt ?? Infinity;
  }

  #arm() {
    const at = this.#dueAt();
    if (Number.isFinite(at)) this.ctx.storage.setAlarm(Math.max(at, Date.now())).catch(() => {});
  }

  #login() {
    if (!this.#loggingIn) {
      const p = this.#session.login().finally(() => {
        if (this.#loggingIn === p) this.#loggingIn = null;
      });
      this.#loggingIn = p;
    }
    return this.#loggingIn;
  }

  /** The current pair for an isolate. The token, its expiry and the version are read
   *  together: a token read across a change of pair is read again. */
  async #current() {
    const s = this.#session;
    for (let round = 0; ; round++) {
      const epoch = this.#epoch;
      const token = await s.getAccessToken();
      if (this.#epoch !== epoch && round < 3) continue;
      const info = s.info;
      if (info.state !== "active") throw sessionEnded();
      return {
        access_token: token,
        // OAuth 2.0 servers may not state an expiry (no expires_in, no refresh token
        // lifetime): "unknown" reaches the isolate as the latest date its reader takes.
        access_expires_at: (info.accessExpiresAt ?? UNKNOWN_EXPIRY).toISOString(),
        refresh_expires_at: (info.refreshExpiresAt ?? UNKNOWN_EXPIRY).toISOString(),
        client_id: info.clientId,
        version: this.#version,
        origin: this.#origin,
        // The server's clock minus ours as the session read it (0 within the noise).
        skew_ms: s[SCHEDULE](Date.now()).skewMs,
      };
    }
  }
}

// ----- the isolate side -----------------------------------------------------------------

/** A Durable Object namespace (a stub has an `id`; any other name on it is an RPC method). */
function isNamespace(t) {
  return (
    t !== null &&
    typeof t === "object" &&
    typeof t.idFromName === "function" &&
    typeof t.get === "function" &&
    t.id === undefined
  );
}

/** How to get a stub for one auth call. */
function stubSource(target, name) {
  if (isNamespace(target)) {
    if (typeof name !== "string" || name === "") {
      throw configError("brokeredSession(namespace, { name }): name the broker, e.g. after the account");
    }
    return () => target.get(target.idFromName(name));
  }
  if (name !== undefined) throw configError("brokeredSession: name goes with a Durable Object namespace, not a stub");
  if (typeof target === "function" && typeof target.pair !== "function") return () => target();
  if (target !== null && (typeof target === "object" || typeof target === "function")) return () => target;
  throw configError("brokeredSession needs a Durable Object namespace (with { name }), a stub, or a function returning a stub");
}

/** The absolute URLs of the session's auth calls, as the session joins them to `host`. */
function authRoutes(host, paths) {
  const url = new URL(host.trim());
  const base = url.origin + url.pathname.replace(/\/+$/, "");
  const join = (path, fallback) => {
    const p = path ?? fallback;
    return new URL(base + (p.startsWith("/") ? "" : "/") + p).href;
  };
  return {
    origin: url.origin,
    routes: new Map([
      [join(paths?.login, "/auth/login"), "login"],
      [join(paths?.refresh, "/auth/refresh"), "refresh"],
      [join(paths?.revoke, "/auth/revoke"), "revoke"],
    ]),
  };
}

function envelope(status, body, headers = {}) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store", ...headers },
  });
}

const errorEnvelope = (status, name, code, message) => envelope(status, { error: { name, code, message } });

/** The version in an isolate's handle, from the refresh request's body. */
function handleVersion(body) {
  try {
    const token = JSON.parse(body).refresh_token;
    if (typeof token !== "string" || !token.startsWith(HANDLE_PREFIX)) return undefined;
    const v = Number(token.slice(HANDLE_PREFIX.length));
    return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
  } catch {
    return undefined;
  }
}

/** The broker's plain error data (`{ ok: false, error }`) as an AuthError, or undefined when
 *  it is not one (then the answer is garbage: a 503). */
function brokerError(data) {
  if (data === null || typeof data !== "object") return undefined;
  const { code, name, message, status, retryable, retryAfter } = data;
  if (typeof code !== "string" || code === "" || typeof name !== "string" || name === "") return undefined;
  return new AuthError(
    typeof message === "string" ? message : "",
    name,
    code,
    Number.isInteger(status) && status >= 0 && status <= 999 ? status : 0,
    retryable === true,
    typeof retryAfter === "number" && Number.isFinite(retryAfter) && retryAfter >= 0 ? retryAfter : undefined,
  );
}

/**
 * The broker's AuthError as the API would have said it, for the isolate's session to read.
 * Client errors keep their status (401 ends or renews the isolate's pair; 403 is final); the
 * rest is 503, so the isolate's retries and backoff apply, after `retryAfter` if the broker's
 * server asked for a wait.
 */
function brokerFailure(err) {
  const s = err.status;
  const status = s >= 400 && s < 500 && s !== 429 ? s : 503;
  const headers = err.retryAfter === undefined || status !== 503 ? {} : { "retry-after": String(Math.ceil(err.retryAfter)) };
  return envelope(status, { error: { name: err.name, code: err.code, message: err.message } }, headers);
}

/** The RPC itself failed (the broker restarting, overloaded, unreachable) or answered
 *  something else than a result: a plain 503, retried. */
const unreachable = () => new Response(null, { status: 503 });

function raceSignal(promise, signal) {
  if (signal == null) return promise;
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason ?? new DOMException("The operation was aborted", "AbortError"));
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

/**
 * A normal AuthSession whose login, refresh and revoke go to an {@link AuthBroker} instead of
 * the API; every other request goes out with the session's `fetch` as usual.
 *
 * `target` is the Durable Object namespace (`env.AUTH_BROKER`) with `options.name`, a
 * function returning a stub, or a stub (a stub serves only the request that made it, so
 * a session kept across requests needs one of the other two). `options` are AuthSession's,
 * without `credentials`, `storage` and `storageKey` (the broker's); `autoRefresh` defaults
 * to false. `oauth: true` when the broker's session is in OAuth 2.0 mode: the isolate's
 * API is then an OAuth 2.0 resource server (`json()` returns its JSON as is, a Bearer
 * `invalid_token` challenge is a 401); the client's settings stay the broker's.
 */
export function brokeredSession(target, options) {
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw configError(
      'brokeredSession(env.AUTH_BROKER, { name, host }): options must be an object, e.g. { name: "main", host: "https://api.example.com" }',
    );
  }
  const { name, oauth, ...rest } = options;
  if (oauth !== undefined && typeof oauth !== "boolean") {
    throw configError(
      "brokeredSession: oauth is true or false here (the broker's sessionOptions hold the OAuth 2.0 client's settings)",
    );
  }
  for (const key of ["credentials", "storage", "storageKey"]) {
    if (rest[key] !== undefined) {
      throw configError(`brokeredSession: ${key} belongs to the broker (AuthBroker.sessionOptions), not to the isolate's session`);
    }
  }
  const stubFor = stubSource(target, name);
  const send = readFetch(rest.fetch);
  let known;
  const session = new AuthSession({
    autoRefresh: false,
    ...rest,
    [OAUTH_API]: oauth === true,
    credentials: PLACEHOLDER,
    fetch(input, init) {
      if (typeof input === "string" && init !== undefined && String(init.method).toUpperCase() === "POST") {
        known ??= authRoutes(rest.host, rest.paths);
        let href;
        try {
          href = new URL(input).href;
        } catch {
          href = undefined;
        }
        const route = href === undefined ? undefined : known.routes.get(href);
        if (route !== undefined) return answer(route, init);
      }
      return send(input, init);
    },
  });

  // An explicit `login()` of this session reaches the broker as one (it ends a revocation);
  // the login the session makes by itself asks for the current pair.
  let explicit = 0;
  const quietLogin = session.login;
  Object.defineProperty(session, "login", {
    async value(...args) {
      explicit++;
      try {
        return await quietLogin.apply(session, args);
      } finally {
        explicit--;
      }
    },
    writable: true,
    configurable: true,
  });

  async function answer(route, init) {
    let call;
    try {
      const stub = stubFor();
      if (route === "login") call = explicit > 0 ? stub.login() : stub.pair();
      else if (route === "revoke") call = stub.revoke();
      else {
        const version = handleVersion(init.body);
        if (version === undefined) {
          return errorEnvelope(401, "UnauthorizedError", "UNAUTHORIZED", "not a refresh handle of the broker");
        }
        call = stub.refresh(version);
      }
    } catch {
      return unreachable();
    }
    let result;
    try {
      result = await raceSignal(Promise.resolve(call), init.signal);
    } catch (e) {
      if (init.signal?.aborted) throw e;
      return unreachable();
    }
    if (result === null || typeof result !== "object") return unreachable();
    if (result.ok === false) {
      const err = brokerError(result.error);
      return err === undefined ? unreachable() : brokerFailure(err);
    }
    if (result.ok !== true) return unreachable();
    if (route === "revoke") return envelope(200, { success: true, data: { revoked: true } });
    const reply = result.value;
    if (reply === null || typeof reply !== "object") return unreachable();
    if (typeof reply.origin === "string" && reply.origin !== known.origin) {
      // Never send the broker's token to another API than the one it was issued by.
      const message = `the broker serves ${reply.origin}, this session's host is ${known.origin}`;
      return errorEnvelope(400, "ConfigError", "CONFIG_ERROR", message);
    }
    const data = {
      access_token: reply.access_token,
      refresh_token: HANDLE_PREFIX + reply.version,
      access_expires_at: reply.access_expires_at,
      refresh_expires_at: reply.refresh_expires_at,
    };
    if (reply.client_id !== null && reply.client_id !== undefined) data.client_id = reply.client_id;
    // The broker's reading of the server's clock, for the isolate's expiry judgement.
    const skew = Number(reply.skew_ms);
    const headers =
      Number.isFinite(skew) && skew !== 0 ? { date: new Date(Date.now() + skew).toUTCString() } : {};
    return envelope(200, { success: true, data }, headers);
  }

  return session;
}
