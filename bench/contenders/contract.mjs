// What a careful engineer would write by hand to get the SAME contract auth-session gives on
// the paths the benchmark measures, in plain JavaScript on top of `fetch`, no dependencies:
//
// - login with username/password; an AuthSession-like class with fetch(input, init) and
//   json(input, init);
// - every attempt bounded by `timeoutMs` (default 10 000): an AbortController AND a timer that
//   settles the call even when the fetch ignores its signal; the caller's `signal` settles the
//   call at once (ABORTED);
// - retries (`retries`, default 2) with exponential backoff and full jitter (base 200 ms, cap
//   5 s): GET/HEAD/OPTIONS on network errors, timeouts, 429/502/503/504; auth calls on network
//   errors, timeouts, 429 and 5xx; `Retry-After` (seconds or an HTTP date) honoured up to
//   `maxRetryAfterSeconds` (30), RATE_LIMITED above it;
// - single-flight refresh through one shared promise, ahead of expiry by a margin (300 s, at
//   most half the token's lifetime), the expiry judged on the server's clock (its `Date`
//   header); a rejected refresh logs in again with `credentials`, else SESSION_EXPIRED;
// - a 401 refreshes once (or uses the newer token another caller already got) and replays
//   once; a second 401 is returned;
// - json(): the body read with a size cap (10 MiB) inside the attempt's deadline, the
//   `{success, data}` envelope unwrapped, errors as ContractError (code, status, retryable);
// - redirects with `redirect: "manual"`, followed (≤ 5 hops) only within the host's origin.
//
// What it leaves out (auth-session has them): storage and leases, events, logging, revoke,
// redaction of secrets in server messages, allowedOrigins, SessionPool, the Workers pieces.
// The bench's other hand-written client (handwritten.mjs) is the floor: no timeouts, retries
// or error taxonomy at all.

const IDEMPOTENT = new Set(["GET", "HEAD", "OPTIONS"]);
const RETRY_STATUS = new Set([429, 502, 503, 504]);
const BACKOFF_BASE_MS = 200;
const BACKOFF_CAP_MS = 5000;
const MAX_REDIRECTS = 5;
const AUTH_MAX_BYTES = 64 * 1024;
const SKEW_NOISE_MS = 2000; // a Date header has 1 s resolution: smaller offsets are noise
const TOKEN = /^[^\s\x00-\x1f\x7f]+$/;
const RFC3339 = /^\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$/;

export class ContractError extends Error {
  constructor(code, message, { name = "ContractError", status = 0, retryable = false, retryAfter, cause } = {}) {
    super(message, cause ? { cause } : undefined);
    this.name = name;
    this.code = code;
    this.status = status;
    this.retryable = retryable;
    if (retryAfter !== undefined) this.retryAfter = retryAfter;
  }
}

const fail = (code, name, message, extra) => new ContractError(code, message, { name, ...extra });
const aborted = () => fail("ABORTED", "AbortError", "the caller aborted");
const backoff = (attempt) => Math.random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** (attempt - 1));
const isRedirect = (status) => status >= 300 && status < 400;
const discard = (res) => res?.body?.cancel().catch(() => {});

/** Seconds to wait from a Retry-After header (delta-seconds or an HTTP date, judged against
 *  the same response's Date), or undefined. */
function retryAfterOf(res) {
  const v = res.headers.get("retry-after");
  if (v === null) return undefined;
  if (/^\s*\d+\s*$/.test(v)) return Number(v);
  const at = Date.parse(v);
  if (!Number.isFinite(at)) return undefined;
  const now = Date.parse(res.headers.get("date") ?? "") || Date.now();
  return Math.max(0, Math.ceil((at - now) / 1000));
}

/** Waits `ms`, rejecting with ABORTED when the caller's signal fires. */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(aborted());
    const onAbort = () => {
      clearTimeout(timer);
      reject(aborted());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** `promise`, or ABORTED at once when the caller's signal fires (the work goes on for others). */
function abortable(promise, signal) {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(aborted());
  let onAbort;
  return Promise.race([
    promise,
    new Promise((_, reject) => signal.addEventListener("abort", (onAbort = () => reject(aborted())), { once: true })),
  ]).finally(() => signal.removeEventListener("abort", onAbort));
}

/** The body as text, at most `max` bytes (RESPONSE_TOO_LARGE beyond, the stream cancelled). */
async function readText(res, max) {
  if (Number(res.headers.get("content-length")) > max) {
    discard(res);
    throw fail("RESPONSE_TOO_LARGE", "ResponseTooLargeError", `response body over ${max} bytes`, { status: res.status });
  }
  if (!res.body) return "";
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return text + decoder.decode();
    total += value.byteLength;
    if (total > max) {
      reader.cancel().catch(() => {});
      throw fail("RESPONSE_TOO_LARGE", "ResponseTooLargeError", `response body over ${max} bytes`, { status: res.status });
    }
    text += decoder.decode(value, { stream: true });
  }
}

/** The error for a non-2xx answer: the server's envelope when it sent one. */
function httpError(res, text, retryAfter) {
  const { status } = res;
  const retryable = status === 429 || status >= 500;
  let env;
  try {
    env = JSON.parse(text)?.error;
  } catch {}
  if (env && typeof env.code === "string") {
    return fail(env.code, typeof env.name === "string" ? env.name : "HttpError", String(env.message ?? `HTTP ${status}`).slice(0, 200), { status, retryable, retryAfter });
  }
  if (status === 429) return fail("RATE_LIMITED", "RateLimitedError", "HTTP 429", { status, retryable, retryAfter });
  if (status >= 500) return fail("SERVER_ERROR", "ServerError", `HTTP ${status}`, { status, retryable, retryAfter });
  return fail("HTTP_ERROR", "HttpError", `HTTP ${status}`, { status });
}

export class ContractSession {
  #base;
  #origin;
  #fetch;
  #credentials;
  #account = null; // the username the pair belongs to: a re-login never switches accounts
  #marginMs;
  #autoRefresh;
  #timeoutMs;
  #retries;
  #maxRetryAfter;
  #maxBytes;
  #access = null;
  #refresh = null;
  #dueAt = 0; // local clock: refresh from here on
  #expiresAt = 0; // local clock: the access token is dead from here on
  #refreshExpiresAt = Infinity;
  #skewMs = 0; // the server's clock minus ours
  #generation = 0; // bumps with every new pair: a 401 on an older one needs no refresh
  #inflight = null; // the one refresh in flight, shared by every caller
  #timer = null;
  #disposed = false;

  constructor({
    host,
    credentials,
    refreshMarginSeconds = 300,
    autoRefresh = true,
    timeoutMs = 10_000,
    retries = 2,
    maxRetryAfterSeconds = 30,
    maxResponseBytes = 10 * 1024 * 1024,
    fetch,
  } = {}) {
    let url;
    try {
      url = new URL(host);
    } catch {
      throw fail("CONFIG_ERROR", "ConfigError", "host must be an absolute URL");
    }
    const local = /^(localhost|127\.0\.0\.1|\[::1\])$/.test(url.hostname);
    if (url.protocol !== "https:" && !(url.protocol === "http:" && local)) {
      throw fail("CONFIG_ERROR", "ConfigError", "host must be https (http only for localhost)");
    }
    const num = (v, min) => Number.isFinite(v) && v >= min;
    if (!num(refreshMarginSeconds, 0) || !num(timeoutMs, 1) || !Number.isInteger(retries) || retries < 0 || !num(maxRetryAfterSeconds, 0) || !num(maxResponseBytes, 0)) {
      throw fail("CONFIG_ERROR", "ConfigError", "invalid numeric option");
    }
    this.#base = url.href.replace(/\/+$/, "");
    this.#origin = url.origin;
    this.#credentials = credentials;
    this.#marginMs = refreshMarginSeconds * 1000;
    this.#autoRefresh = autoRefresh;
    this.#timeoutMs = timeoutMs;
    this.#retries = retries;
    this.#maxRetryAfter = maxRetryAfterSeconds;
    this.#maxBytes = maxResponseBytes;
    this.#fetch = fetch ?? globalThis.fetch.bind(globalThis);
  }

  // ----- auth

  async login(username = this.#credentials?.username, password = this.#credentials?.password) {
    if (this.#disposed) throw fail("DISPOSED", "DisposedError", "the session was disposed");
    if (typeof username !== "string" || typeof password !== "string") throw fail("CONFIG_ERROR", "ConfigError", "no credentials");
    const { data, res } = await this.#auth("/auth/login", { username, password });
    this.#adopt(data, res);
    this.#account = username;
    return data.client_id;
  }

  /** Single-flight: concurrent callers share one request; a spent token is never resent. */
  refresh() {
    this.#inflight ??= this.#doRefresh().finally(() => {
      this.#inflight = null;
    });
    return this.#inflight;
  }

  async getAccessToken(signal) {
    if (this.#disposed) throw fail("DISPOSED", "DisposedError", "the session was disposed");
    if (this.#access === null) throw fail("NOT_AUTHENTICATED", "NotAuthenticatedError", "not logged in");
    if (Date.now() < this.#dueAt) return this.#access;
    const token = this.#access;
    try {
      await abortable(this.refresh(), signal);
    } catch (err) {
      // A temporary failure inside the margin: the token still works, use it.
      if (err.retryable && this.#access === token && Date.now() < this.#expiresAt) return token;
      throw err;
    }
    return this.#access;
  }

  async #doRefresh() {
    const refreshToken = this.#refresh;
    const generation = this.#generation;
    if (refreshToken === null) throw fail("NOT_AUTHENTICATED", "NotAuthenticatedError", "not logged in");
    try {
      if (Date.now() >= this.#refreshExpiresAt) throw fail("SESSION_EXPIRED", "SessionExpiredError", "refresh token expired");
      const { data, res } = await this.#auth("/auth/refresh", { refresh_token: refreshToken });
      // A login while this refresh was in flight installed a newer pair: keep that one.
      if (generation === this.#generation) this.#adopt(data, res);
    } catch (err) {
      if ((err.status === 401 || err.code === "SESSION_EXPIRED") && this.#refresh === refreshToken) {
        this.#clear();
        if (this.#credentials && this.#credentials.username === this.#account) return void (await this.login());
        throw fail("SESSION_EXPIRED", "SessionExpiredError", "the session expired", { status: err.status });
      }
      throw err;
    }
  }

  /** POST an auth endpoint: retried on network errors, timeouts, 429 and 5xx; no redirects. */
  async #auth(path, payload) {
    const init = { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(payload) };
    const { res, text } = await this.#exchange(this.#base + path, init, undefined, AUTH_MAX_BYTES, true);
    if (isRedirect(res.status)) throw fail("REDIRECT_BLOCKED", "RedirectBlockedError", "an auth endpoint redirected", { status: res.status });
    if (!res.ok) throw httpError(res, text, retryAfterOf(res));
    let data;
    try {
      const body = JSON.parse(text);
      if (body?.success === true) data = body.data;
    } catch {}
    const date = (v) => typeof v === "string" && RFC3339.test(v) && Number.isFinite(Date.parse(v));
    if (!data || !TOKEN.test(data.access_token) || !TOKEN.test(data.refresh_token) || !date(data.access_expires_at)) {
      throw fail("INVALID_RESPONSE", "InvalidResponseError", "invalid auth response", { status: res.status });
    }
    if (path === "/auth/refresh" && data.refresh_token === this.#refresh) {
      throw fail("INVALID_RESPONSE", "InvalidResponseError", "refresh did not rotate the refresh token", { status: res.status });
    }
    return { data, res };
  }

  #adopt(data, res) {
    if (this.#disposed) return;
    // The server's clock, from its Date header: expiry times are the server's.
    const serverNow = Date.parse(res.headers.get("date") ?? "");
    if (Number.isFinite(serverNow)) {
      const skew = serverNow - Date.now();
      this.#skewMs = Math.abs(skew) < SKEW_NOISE_MS ? 0 : skew;
    }
    const now = Date.now();
    this.#access = data.access_token;
    this.#refresh = data.refresh_token;
    this.#expiresAt = Date.parse(data.access_expires_at) - this.#skewMs;
    const refreshAt = Date.parse(data.refresh_expires_at);
    this.#refreshExpiresAt = Number.isFinite(refreshAt) ? refreshAt - this.#skewMs : Infinity;
    this.#dueAt = this.#expiresAt - Math.min(this.#marginMs, Math.max(0, this.#expiresAt - now) / 2);
    this.#generation++;
    clearTimeout(this.#timer);
    if (this.#autoRefresh) {
      this.#timer = setTimeout(() => this.refresh().catch(() => {}), Math.min(Math.max(0, this.#dueAt - now), 2 ** 31 - 1));
      this.#timer.unref?.();
    }
  }

  #clear() {
    this.#access = this.#refresh = null;
    this.#dueAt = this.#expiresAt = 0;
    clearTimeout(this.#timer);
  }

  dispose() {
    this.#disposed = true;
    this.#clear();
  }

  // ----- API calls

  /** Never throws for an HTTP status; the body stream is the caller's. */
  async fetch(input, init) {
    return (await this.#call(input, init ?? {}, false)).res;
  }

  /** Resolves to the envelope's `data`; anything else rejects with a ContractError. */
  async json(input, init) {
    const { res, text } = await this.#call(input, init ?? {}, true);
    const { status } = res;
    if (isRedirect(status)) {
      const to = URL.canParse(res.headers.get("location") ?? "", res.url || this.#base) ? new URL(res.headers.get("location"), res.url || this.#base) : null;
      if (to && to.origin !== this.#origin) throw fail("REDIRECT_BLOCKED", "RedirectBlockedError", "redirect to another origin", { status });
      throw fail("HTTP_ERROR", "HttpError", `HTTP ${status} not followed`, { status });
    }
    const retryAfter = status === 429 || status >= 500 ? retryAfterOf(res) : undefined;
    if (retryAfter > this.#maxRetryAfter) throw fail("RATE_LIMITED", "RateLimitedError", `Retry-After ${retryAfter} s over the cap`, { status, retryable: true, retryAfter });
    if (!res.ok) throw httpError(res, text, retryAfter);
    let body;
    try {
      body = JSON.parse(text);
    } catch {}
    if (body?.success !== true || !("data" in body)) throw fail("INVALID_RESPONSE", "InvalidResponseError", "no success envelope", { status });
    return body.data;
  }

  async #call(input, init, read) {
    let url;
    let { method = "GET", headers, body, signal, json } = init;
    if (input instanceof Request) {
      url = new URL(input.url);
      method = init.method ?? input.method;
      headers = init.headers ?? input.headers;
      signal = init.signal ?? input.signal;
      if (body === undefined && input.body) body = await input.arrayBuffer();
    } else if (typeof input === "string" && !/^[a-z][a-z\d+.-]*:/i.test(input)) {
      url = new URL(this.#base + (input.startsWith("/") ? "" : "/") + input);
    } else {
      url = new URL(input);
    }
    if (url.origin !== this.#origin) throw fail("ORIGIN_NOT_ALLOWED", "OriginNotAllowedError", "refusing to send the token to another origin");
    method = method.toUpperCase();
    headers = new Headers(headers);
    if (json !== undefined) {
      if (method === "GET" || method === "HEAD" || body != null) throw fail("CONFIG_ERROR", "ConfigError", "init.json needs a method with a body and no init.body");
      body = JSON.stringify(json);
      if (!headers.has("content-type")) headers.set("content-type", "application/json");
    }
    // A stream can be sent once only: buffer it so a retry or a replay can send it again.
    if (body instanceof ReadableStream) body = await new Response(body).arrayBuffer();

    const token = await this.getAccessToken(signal);
    const generation = this.#generation;
    headers.set("authorization", `Bearer ${token}`);
    const out = await this.#follow(url, { method, headers, body }, signal, read);
    if (out.res.status !== 401) return out;
    if (!read) discard(out.res);
    // Another caller may have refreshed while this request was in flight: use its token.
    if (generation === this.#generation) await abortable(this.refresh(), signal);
    headers.set("authorization", `Bearer ${this.#access}`);
    return this.#follow(url, { method, headers, body }, signal, read);
  }

  /** Follows redirects within the host's origin (≤ MAX_REDIRECTS hops); returns any other 3xx. */
  async #follow(url, init, signal, read) {
    for (let hops = 0; ; hops++) {
      const out = await this.#exchange(url, init, signal, this.#maxBytes, false, read);
      const { res } = out;
      const location = isRedirect(res.status) ? res.headers.get("location") : null;
      if (location === null || hops >= MAX_REDIRECTS || !URL.canParse(location, url)) return out;
      const next = new URL(location, url);
      if (next.origin !== this.#origin) return out;
      discard(res);
      if (res.status === 303 || (res.status <= 302 && init.method === "POST")) {
        const headers = new Headers(init.headers);
        headers.delete("content-type");
        init = { method: init.method === "HEAD" ? "HEAD" : "GET", headers, body: undefined };
      }
      url = next;
    }
  }

  /** Attempts with retries. `auth`: POST retried on 5xx too (login/refresh). */
  async #exchange(url, init, signal, maxBytes, auth, read = true) {
    const attempts = auth || IDEMPOTENT.has(init.method) ? this.#retries + 1 : 1;
    for (let attempt = 1; ; attempt++) {
      let delay;
      try {
        const out = await this.#attempt(url, init, signal, read ? maxBytes : 0);
        const { res } = out;
        if (!(RETRY_STATUS.has(res.status) || (auth && res.status >= 500)) || attempt >= attempts) return out;
        const retryAfter = retryAfterOf(res);
        if (retryAfter > this.#maxRetryAfter) {
          if (auth) throw fail("RATE_LIMITED", "RateLimitedError", `Retry-After ${retryAfter} s over the cap`, { status: res.status, retryable: true, retryAfter });
          return out;
        }
        if (!read) discard(res);
        delay = retryAfter !== undefined ? retryAfter * 1000 : backoff(attempt);
      } catch (err) {
        if ((err.code !== "NETWORK_ERROR" && err.code !== "TIMEOUT") || attempt >= attempts) throw err;
        delay = backoff(attempt);
      }
      await sleep(delay, signal);
    }
  }

  /** One attempt, settled by `timeoutMs` whatever the fetch does with its signal; reads the
   *  body (headers and body both inside the deadline) when `maxBytes` > 0. */
  #attempt(url, init, signal, maxBytes) {
    if (signal?.aborted) return Promise.reject(aborted());
    const controller = new AbortController();
    let timer;
    let onAbort;
    let pending;
    const deadline = new Promise((_, reject) => {
      const stop = (err) => {
        controller.abort(err);
        reject(err);
        // A fetch that ignored its signal may still answer: free that connection.
        pending?.then(({ res }) => discard(res), () => {});
      };
      timer = setTimeout(() => stop(fail("TIMEOUT", "TimeoutError", `no answer within ${this.#timeoutMs} ms`, { retryable: true })), this.#timeoutMs);
      if (signal) signal.addEventListener("abort", (onAbort = () => stop(aborted())), { once: true });
    });
    pending = (async () => {
      let res;
      try {
        res = await this.#fetch(url, {
          ...init,
          signal: signal ? AbortSignal.any([signal, controller.signal]) : controller.signal,
          redirect: "manual",
        });
      } catch (err) {
        if (controller.signal.aborted) throw controller.signal.reason;
        throw fail("NETWORK_ERROR", "NetworkError", "the request failed", { retryable: true, cause: err });
      }
      if (!(res instanceof Response)) throw fail("INVALID_RESPONSE", "InvalidResponseError", "fetch did not return a Response");
      if (maxBytes === 0 || isRedirect(res.status)) {
        if (maxBytes !== 0) discard(res);
        return { res, text: "" };
      }
      try {
        return { res, text: await readText(res, maxBytes) };
      } catch (err) {
        if (controller.signal.aborted) throw controller.signal.reason;
        if (err instanceof ContractError) throw err;
        throw fail("NETWORK_ERROR", "NetworkError", "the body read failed", { retryable: true, cause: err });
      }
    })();
    return Promise.race([pending, deadline]).finally(() => {
      clearTimeout(timer);
      if (onAbort) signal.removeEventListener("abort", onAbort);
    });
  }
}
