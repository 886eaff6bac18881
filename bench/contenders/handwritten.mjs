// What a careful user would write instead of installing auth-session: the same contract
// (login, single-flight refresh through one shared promise, refresh ahead of expiry with a
// margin, 401 → refresh once and replay once, reusing a newer token if one already exists)
// in plain JavaScript on top of `fetch`. No dependencies.
//
// It is deliberately good, not a strawman: the benchmark compares auth-session with the
// best a user would reasonably hand-roll. What it leaves out (and auth-session does): retry
// with backoff and jitter, Retry-After, per-attempt timeouts, clock-skew correction,
// origin checks on redirects, storage, events, error taxonomy.

export class HandwrittenSession {
  #host;
  #fetch;
  #marginMs;
  #autoRefresh;
  #credentials;
  #access = null;
  #refresh = null;
  #accessExpiresAt = 0;
  #generation = 0; // bumps with every new token pair: a 401 on an older one needs no refresh
  #inflight = null; // the one refresh in flight, shared by every caller
  #timer = null;
  #disposed = false;

  constructor({ host, credentials, refreshMarginSeconds = 300, autoRefresh = true, fetch } = {}) {
    if (typeof host !== "string" || !/^https?:\/\//.test(host)) throw new TypeError("host must be an http(s) URL");
    this.#host = host.replace(/\/+$/, "");
    this.#credentials = credentials;
    this.#marginMs = refreshMarginSeconds * 1000;
    this.#autoRefresh = autoRefresh;
    this.#fetch = fetch ?? globalThis.fetch.bind(globalThis);
  }

  get tokens() {
    return { access: this.#access, refresh: this.#refresh };
  }

  async login(username = this.#credentials?.username, password = this.#credentials?.password) {
    const data = await this.#post("/auth/login", { username, password });
    this.#adopt(data);
    return data.client_id;
  }

  /** Single-flight: concurrent callers share one request; a spent token is never resent. */
  refresh() {
    this.#inflight ??= this.#doRefresh().finally(() => {
      this.#inflight = null;
    });
    return this.#inflight;
  }

  async getAccessToken() {
    if (this.#disposed) throw new Error("disposed");
    if (this.#access === null) throw new Error("not logged in");
    if (Date.now() >= this.#accessExpiresAt - this.#marginMs) await this.refresh();
    return this.#access;
  }

  async fetch(input, init = {}) {
    const url = new URL(typeof input === "string" && input.startsWith("/") ? this.#host + input : input);
    if (url.origin !== new URL(this.#host).origin) throw new Error("refusing to send the token to another origin");
    const token = await this.getAccessToken();
    const generation = this.#generation;
    const response = await this.#send(url, init, token);
    if (response.status !== 401) return response;
    // Free the connection before replaying.
    await response.body?.cancel().catch(() => {});
    // Another caller may have refreshed while this request was in flight: use its token.
    if (generation === this.#generation) await this.refresh();
    return this.#send(url, init, this.#access);
  }

  async json(input, init) {
    const response = await this.fetch(input, init);
    const body = await response.json();
    if (!response.ok || body?.success !== true) throw new Error(`HTTP ${response.status}`);
    return body.data;
  }

  dispose() {
    this.#disposed = true;
    clearTimeout(this.#timer);
    this.#access = this.#refresh = null;
  }

  #send(url, init, token) {
    const headers = new Headers(init.headers);
    headers.set("authorization", `Bearer ${token}`);
    // Never follow a redirect with the token attached.
    return this.#fetch(url, { ...init, headers, redirect: "manual" });
  }

  async #doRefresh() {
    const refreshToken = this.#refresh;
    if (refreshToken === null) throw new Error("not logged in");
    try {
      this.#adopt(await this.#post("/auth/refresh", { refresh_token: refreshToken }));
    } catch (err) {
      if (err.status === 401 && this.#refresh === refreshToken) {
        this.#access = this.#refresh = null;
        if (this.#credentials) return this.login();
      }
      throw err;
    }
  }

  async #post(path, body) {
    const response = await this.#fetch(this.#host + path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      redirect: "manual",
    });
    const payload = await response.json().catch(() => null);
    if (!response.ok || payload?.success !== true) {
      const err = new Error(payload?.error?.message ?? `HTTP ${response.status}`);
      err.status = response.status;
      throw err;
    }
    const data = payload.data;
    if (typeof data?.access_token !== "string" || typeof data?.refresh_token !== "string" || !data.access_token) {
      throw new Error("invalid auth response");
    }
    return data;
  }

  #adopt(data) {
    if (this.#disposed) return;
    this.#access = data.access_token;
    this.#refresh = data.refresh_token;
    this.#accessExpiresAt = Date.parse(data.access_expires_at);
    this.#generation++;
    clearTimeout(this.#timer);
    if (this.#autoRefresh) {
      const delay = Math.max(0, this.#accessExpiresAt - this.#marginMs - Date.now());
      this.#timer = setTimeout(() => this.refresh().catch(() => {}), Math.min(delay, 2 ** 31 - 1));
      this.#timer.unref?.();
    }
  }
}
