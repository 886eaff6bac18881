// Every error code of API.md's table that can be provoked, with code, name, status and
// retryable, and the server counters proving what was (not) sent.

import { describe, it, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import {
  AuthSession,
  AuthError,
  startServer,
  DEMO,
  clearCounters,
  closedPort,
  rejectsWith,
  throwsWith,
  recordEvents,
  checkInfo,
  mapStorage,
  useServer,
} from "./helpers.mjs";

const server = useServer();

const session0 = (extra = {}) => new AuthSession({ host: server.url, autoRefresh: false, ...extra });

async function loggedIn(extra = {}) {
  const session = session0(extra);
  await session.login(DEMO.username, DEMO.password);
  clearCounters(server);
  return session;
}

/** Requests the server received for `path` (faulted ones included, unlike stats.login). */
const hits = (path) => server.log.filter((e) => e.path === path).length;

/** The status of an INVALID_RESPONSE from an auth call: the 200 it came with. */
const authCallStatus = (err) => assert.equal(err.status, 200, `status ${err.status}`);

const envelope = (status, name, code, message = "boom") => ({
  status,
  body: { error: { name, code, message } },
});

describe("errors from the server's envelope", () => {
  it("UNAUTHORIZED: a wrong password (sent once, never retried)", async () => {
    const session = session0({ retries: 2 });
    const err = await rejectsWith(session.login(DEMO.username, "wrong-password"), {
      code: "UNAUTHORIZED",
      name: "UnauthorizedError",
      status: 401,
      retryable: false,
    });
    assert.equal(err.message, "Invalid credentials", "the server's message is kept");
    assert.equal(server.stats.login, 1);
    checkInfo(session.info, "anonymous");
    session.dispose();
  });

  it("UNAUTHORIZED: an unknown user", async () => {
    const session = session0();
    await rejectsWith(session.login("nobody", "x"), {
      code: "UNAUTHORIZED",
      name: "UnauthorizedError",
      status: 401,
      retryable: false,
    });
    session.dispose();
  });

  it("VALIDATION_FAILURE: a 400 envelope on login", async () => {
    server.fault({ path: "/auth/login" }, envelope(400, "ValidationException", "VALIDATION_FAILURE", "bad input"));
    const session = session0();
    const err = await rejectsWith(session.login(DEMO.username, DEMO.password), {
      code: "VALIDATION_FAILURE",
      name: "ValidationException",
      status: 400,
      retryable: false,
    });
    assert.equal(err.message, "bad input");
    assert.equal(hits("/auth/login"), 1);
    session.dispose();
  });

  it("SYNTAX_ERROR: a 400 SyntaxError envelope", async () => {
    server.fault({ path: "/auth/login" }, envelope(400, "SyntaxError", "SYNTAX_ERROR", "Request body is not valid JSON"));
    const session = session0();
    await rejectsWith(session.login(DEMO.username, DEMO.password), {
      code: "SYNTAX_ERROR",
      name: "SyntaxError",
      status: 400,
      retryable: false,
    });
    session.dispose();
  });

  it("FORBIDDEN: a server whose IP whitelist excludes us", async () => {
    const walled = await startServer({ whitelist: ["10.9.9.9"] });
    try {
      const session = new AuthSession({ host: walled.url, autoRefresh: false, retries: 2 });
      await rejectsWith(session.login(DEMO.username, DEMO.password), {
        code: "FORBIDDEN",
        name: "ForbiddenError",
        status: 403,
        retryable: false,
      });
      assert.equal(walled.stats.requests, 1, "a 403 is not retried");
      session.dispose();
    } finally {
      await walled.close();
    }
  });

  it("any other server code is passed through (json() on an API error envelope)", async () => {
    const session = await loggedIn();
    await rejectsWith(session.json("/api/v1/does-not-exist"), {
      code: "NOT_FOUND",
      name: "NotFoundError",
      status: 404,
      retryable: false,
    });
    await rejectsWith(session.json("/api/v1/products", { method: "POST" }), {
      code: "METHOD_NOT_ALLOWED",
      name: "MethodNotAllowedError",
      status: 405,
      retryable: false,
    });
    server.fault({ path: "/api/v1/products" }, envelope(503, "Unavailable", "MAINTENANCE"), 10);
    await rejectsWith(session.json("/api/v1/products"), {
      code: "MAINTENANCE",
      name: "Unavailable",
      status: 503,
      retryable: true,
    });
    server.clearFaults();
    // An error envelope counts even with a 200.
    server.fault({ path: "/api/v1/products" }, envelope(200, "Weird", "WEIRD"));
    await rejectsWith(session.json("/api/v1/products"), { code: "WEIRD", name: "Weird", status: 200, retryable: false });
    session.dispose();
  });
});

describe("transport errors", () => {
  it("NETWORK_ERROR: connection refused", async () => {
    const port = await closedPort();
    const session = new AuthSession({ host: `http://127.0.0.1:${port}`, retries: 0, autoRefresh: false });
    await rejectsWith(session.login(DEMO.username, DEMO.password), { code: "NETWORK_ERROR", status: 0, retryable: true });
    checkInfo(session.info, "anonymous");
    session.dispose();
  });

  it("NETWORK_ERROR carries the underlying error's name and code as its cause, and a stack of the caller", async () => {
    const port = await closedPort();
    const session = new AuthSession({ host: `http://127.0.0.1:${port}`, retries: 0, autoRefresh: false });
    // V8 keeps an async caller in the stack when it awaits (a bare `return promise` drops it).
    async function callerOfLogin() {
      return await session.login(DEMO.username, DEMO.password);
    }
    const err = await rejectsWith(callerOfLogin(), { code: "NETWORK_ERROR", status: 0, retryable: true });
    // Node's fetch: TypeError("fetch failed") with cause.code ECONNREFUSED. Only name and code.
    assert.deepEqual(err.cause, { name: "TypeError", code: "ECONNREFUSED" });
    assert.ok(!/wasm-function|wasm:\/\//.test(err.stack), `no wasm frames in the stack:\n${err.stack}`);
    assert.match(err.stack, /callerOfLogin/, "the stack shows the user's call");
    const api = new AuthSession({ host: `http://127.0.0.1:${port}`, retries: 0, autoRefresh: false, fetch: async () => {
      const e = new Error("connect ECONNRESET 10.0.0.1:443 with Bearer eyJ.secret");
      e.code = "ECONNRESET";
      throw e;
    } });
    const e2 = await rejectsWith(api.login(DEMO.username, DEMO.password), { code: "NETWORK_ERROR" });
    assert.deepEqual(e2.cause, { name: "Error", code: "ECONNRESET" });
    assert.ok(!JSON.stringify({ c: e2.cause, m: e2.message }).includes("eyJ"), "the underlying message is not copied");
    session.dispose();
    api.dispose();
  });

  it("NETWORK_ERROR: a dropped connection on login, and on a GET via fetch()", async () => {
    server.fault({ path: "/auth/login" }, { drop: true });
    const session = session0({ retries: 0 });
    await rejectsWith(session.login(DEMO.username, DEMO.password), { code: "NETWORK_ERROR" });
    assert.equal(hits("/auth/login"), 1);
    await session.login(DEMO.username, DEMO.password);
    server.fault({ path: "/api/v1/products" }, { drop: true });
    await rejectsWith(session.fetch("/api/v1/products"), { code: "NETWORK_ERROR" });
    server.fault({ path: "/api/v1/products" }, { drop: true });
    await rejectsWith(session.json("/api/v1/products"), { code: "NETWORK_ERROR" });
    assert.equal(session.info.state, "active", "a network failure keeps the session");
    session.dispose();
  });

  it("TIMEOUT: a hung login with timeoutMs 200 and retries 0", async () => {
    server.fault({ path: "/auth/login" }, { hang: true });
    const session = session0({ timeoutMs: 200, retries: 0 });
    const started = Date.now();
    await rejectsWith(session.login(DEMO.username, DEMO.password), { code: "TIMEOUT", status: 0, retryable: true });
    const took = Date.now() - started;
    assert.ok(took >= 180 && took < 4000, `timed out after ${took} ms`);
    assert.equal(hits("/auth/login"), 1);
    session.dispose();
  });

  it("TIMEOUT: a slow API answer (delayMs) for fetch() and json()", async () => {
    const session = await loggedIn({ timeoutMs: 500, retries: 0 });
    server.fault({ path: "/api/v1/products" }, { delayMs: 1500 });
    await rejectsWith(session.fetch("/api/v1/products"), { code: "TIMEOUT" });
    server.fault({ path: "/api/v1/products" }, { hang: true });
    await rejectsWith(session.json("/api/v1/products"), { code: "TIMEOUT" });
    assert.equal(session.info.state, "active");
    session.dispose();
  });

  it("TIMEOUT: a GET is retried after a timeout (retries 1) and then succeeds", async () => {
    const session = await loggedIn({ timeoutMs: 500, retries: 1 });
    server.fault({ path: "/api/v1/products" }, { hang: true });
    const data = await session.json("/api/v1/products");
    assert.equal(data.length, 4);
    assert.equal(server.log.filter((e) => e.path === "/api/v1/products").length, 2);
    session.dispose();
  });

  it("ABORTED: the caller's signal fires while the request hangs", async () => {
    const session = await loggedIn({ timeoutMs: 5000, retries: 2 });
    server.fault({ path: "/api/v1/products" }, { hang: true });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const started = Date.now();
    await rejectsWith(session.fetch("/api/v1/products", { signal: controller.signal }), {
      code: "ABORTED",
      name: "AbortError",
      status: 0,
      retryable: false,
    });
    assert.ok(Date.now() - started < 3000, "rejected long before timeoutMs");
    assert.equal(server.log.length, 1, "an aborted call is not retried");
    session.dispose();
  });

  it("ABORTED: an already-aborted signal sends nothing", async () => {
    const session = await loggedIn();
    await rejectsWith(session.json("/api/v1/products", { signal: AbortSignal.abort() }), { code: "ABORTED" });
    await rejectsWith(session.fetch("/api/v1/products", { signal: AbortSignal.abort() }), { code: "ABORTED" });
    assert.equal(server.stats.requests, 0);
    session.dispose();
  });

  it("ABORTED: json() aborted while the body is being read", async () => {
    const session = await loggedIn({ timeoutMs: 5000 });
    // Headers arrive at once, the body never ends: a huge body streamed slowly is not
    // available, so abort while json() waits for a hanging response instead.
    server.fault({ path: "/api/v1/products" }, { hang: true });
    const controller = new AbortController();
    const pending = session.json("/api/v1/products", { signal: controller.signal });
    setTimeout(() => controller.abort(new Error("stop")), 50);
    await rejectsWith(pending, { code: "ABORTED" });
    session.dispose();
  });
});

describe("bad responses", () => {
  it("INVALID_RESPONSE: a 200 login answer that is not the envelope", async () => {
    const session = session0({ retries: 2 });
    for (const body of [{ hello: "world" }, "not json at all", { success: true, data: { access_token: "x" } }]) {
      server.fault({ path: "/auth/login" }, { status: 200, body });
      await rejectsWith(session.login(DEMO.username, DEMO.password), {
        code: "INVALID_RESPONSE",
        anyStatus: true,
        retryable: false,
      }).then(authCallStatus);
    }
    assert.equal(hits("/auth/login"), 3, "an invalid answer is not retried");
    checkInfo(session.info, "anonymous");
    session.dispose();
  });

  it("INVALID_RESPONSE: empty tokens, tokens with whitespace, timestamps without an offset", async () => {
    const good = () => ({
      access_token: "aaa.bbb.ccc",
      refresh_token: "ddd.eee.fff",
      access_expires_at: new Date(Date.now() + 3_600_000).toISOString(),
      refresh_expires_at: new Date(Date.now() + 86_400_000).toISOString(),
      client_id: 7,
    });
    const variants = [
      { access_token: "" },
      { refresh_token: "" },
      { access_token: "aaa bbb" },
      { refresh_token: "ddd\neee" },
      { access_expires_at: "2030-01-01T00:00:00" },
      { refresh_expires_at: "2030-01-01" },
      { access_expires_at: "tomorrow" },
      { access_expires_at: 12345 },
      { client_id: "seven" },
    ];
    const session = session0({ retries: 0 });
    for (const patch of variants) {
      server.fault({ path: "/auth/login" }, { status: 200, body: { success: true, data: { ...good(), ...patch } } });
      await rejectsWith(
        session.login(DEMO.username, DEMO.password),
        { code: "INVALID_RESPONSE", anyStatus: true },
      ).then(authCallStatus).catch((e) => {
        e.message = `${JSON.stringify(patch)}: ${e.message}`;
        throw e;
      });
    }
    // The good shape itself is accepted (the fake tokens are only unknown to the API).
    server.fault({ path: "/auth/login" }, { status: 200, body: { success: true, data: good() } });
    const info = await session.login(DEMO.username, DEMO.password);
    assert.equal(info.clientId, 7);
    session.dispose();
  });

  it("INVALID_RESPONSE: a refresh answer without a new refresh token keeps the old pair", async () => {
    const session = await loggedIn({ retries: 0 });
    const before = session.info;
    server.fault(
      { path: "/auth/refresh" },
      {
        status: 200,
        body: {
          success: true,
          data: {
            access_token: "aaa.bbb.ccc",
            access_expires_at: new Date(Date.now() + 3_600_000).toISOString(),
            refresh_expires_at: new Date(Date.now() + 86_400_000).toISOString(),
            client_id: 123456,
          },
        },
      },
    );
    await rejectsWith(session.refresh(), { code: "INVALID_RESPONSE", anyStatus: true }).then(authCallStatus);
    assert.deepEqual(session.info, before, "the old pair is kept");
    assert.equal((await session.json("/api/v1/products")).length, 4, "and still works");
    // The old refresh token still works too (it was never spent).
    await session.refresh();
    assert.equal(server.stats.spentReuse, 0);
    session.dispose();
  });

  it(
    "INVALID_RESPONSE from a token pair carries the 200 it came with",
    async () => {
      const session = session0({ retries: 0 });
      server.fault({ path: "/auth/login" }, { status: 200, body: { success: true, data: { access_token: "x" } } });
      await rejectsWith(session.login(DEMO.username, DEMO.password), { code: "INVALID_RESPONSE", status: 200 });
      session.dispose();
    },
  );

  it("INVALID_RESPONSE: json() on a 200 that is not a success envelope", async () => {
    const session = await loggedIn();
    server.fault({ path: "/api/v1/products" }, { status: 200, body: "<html>hi</html>" });
    await rejectsWith(session.json("/api/v1/products"), { code: "INVALID_RESPONSE", status: 200 });
    server.fault({ path: "/api/v1/products" }, { status: 200, body: { items: [] } });
    await rejectsWith(session.json("/api/v1/products"), { code: "INVALID_RESPONSE", status: 200 });
    server.fault({ path: "/api/v1/products" }, { status: 200, body: { success: false, data: 1 } });
    await rejectsWith(session.json("/api/v1/products"), { code: "INVALID_RESPONSE", status: 200 });
    session.dispose();
  });

  it("SERVER_ERROR: a 500 HTML page on login (retries 0)", async () => {
    server.fault(
      { path: "/auth/login" },
      { status: 500, body: "<html><body>Internal error</body></html>", headers: { "content-type": "text/html" } },
    );
    const session = session0({ retries: 0 });
    await rejectsWith(session.login(DEMO.username, DEMO.password), {
      code: "SERVER_ERROR",
      status: 500,
      retryable: true,
    });
    assert.equal(hits("/auth/login"), 1);
    session.dispose();
  });

  it("SERVER_ERROR: json() on a 5xx without an envelope", async () => {
    const session = await loggedIn({ retries: 0 });
    server.fault({ path: "/api/v1/products" }, { status: 502, body: "Bad Gateway" });
    await rejectsWith(session.json("/api/v1/products"), { code: "SERVER_ERROR", status: 502, retryable: true });
    server.fault({ path: "/api/v1/products" }, { status: 500 });
    await rejectsWith(session.json("/api/v1/products"), { code: "SERVER_ERROR", status: 500, retryable: true });
    session.dispose();
  });

  it("RATE_LIMITED: a Retry-After over the cap fails at once", async () => {
    server.fault({ path: "/auth/login" }, { status: 429, body: "slow down", headers: { "retry-after": "999" } });
    const session = session0({ retries: 2 });
    const started = Date.now();
    await rejectsWith(session.login(DEMO.username, DEMO.password), {
      code: "RATE_LIMITED",
      status: 429,
      retryable: true,
    });
    assert.ok(Date.now() - started < 5000, "no waiting for the 999 s");
    assert.equal(hits("/auth/login"), 1);
    session.dispose();
  });

  it("RATE_LIMITED: a 429 after the retries are used up", async () => {
    server.fault({ path: "/auth/login" }, { status: 429, headers: { "retry-after": "0" } }, 2);
    const session = session0({ retries: 1 });
    await rejectsWith(session.login(DEMO.username, DEMO.password), { code: "RATE_LIMITED", status: 429 });
    assert.equal(hits("/auth/login"), 2);
    session.dispose();
  });

  it("RATE_LIMITED: json() on a 429 (retries 0) and a lower maxRetryAfterSeconds", async () => {
    const session = await loggedIn({ retries: 0 });
    server.fault({ path: "/api/v1/products" }, { status: 429, body: "" });
    await rejectsWith(session.json("/api/v1/products"), { code: "RATE_LIMITED", status: 429 });
    session.dispose();
    server.fault({ path: "/auth/login" }, { status: 429, headers: { "retry-after": "3" } });
    const strict = session0({ retries: 2, maxRetryAfterSeconds: 1 });
    await rejectsWith(strict.login(DEMO.username, DEMO.password), { code: "RATE_LIMITED", status: 429 });
    strict.dispose();
  });

  it("HTTP_ERROR: json() on a 404 plain-text answer", async () => {
    const session = await loggedIn();
    server.fault({ path: "/api/v1/products" }, { status: 404, body: "Not Found" });
    await rejectsWith(session.json("/api/v1/products"), {
      code: "HTTP_ERROR",
      name: "HttpError",
      status: 404,
      retryable: false,
    });
    server.fault({ path: "/api/v1/products" }, { status: 409, body: { not: "an error envelope" } });
    await rejectsWith(session.json("/api/v1/products"), { code: "HTTP_ERROR", status: 409 });
    assert.equal(server.log.length, 2, "4xx are never retried");
    session.dispose();
  });

  it("HTTP_ERROR: a 4xx without an envelope on login", async () => {
    server.fault({ path: "/auth/login" }, { status: 404, body: "no such route" });
    const session = session0({ retries: 2 });
    await rejectsWith(session.login(DEMO.username, DEMO.password), { code: "HTTP_ERROR", status: 404 });
    assert.equal(hits("/auth/login"), 1);
    session.dispose();
  });

  it("REDIRECT_BLOCKED: login answered by a redirect; the target receives nothing", async () => {
    const target = await startServer();
    try {
      for (const status of [307, 302, 308]) {
        server.fault({ path: "/auth/login" }, { redirect: `${target.url}/auth/login`, status });
        const session = session0({ retries: 2 });
        await rejectsWith(session.login(DEMO.username, DEMO.password), {
          code: "REDIRECT_BLOCKED",
          status,
          retryable: false,
        });
        session.dispose();
      }
      // Same origin too: the auth endpoints never follow.
      server.fault({ path: "/auth/login" }, { redirect: `${server.url}/auth/other`, status: 307 });
      const session = session0();
      await rejectsWith(session.login(DEMO.username, DEMO.password), { code: "REDIRECT_BLOCKED", status: 307 });
      assert.equal(target.stats.requests, 0, "the redirect target received nothing");
      assert.equal(hits("/auth/login"), 4, "no retry of a redirect");
      assert.ok(!server.log.some((e) => e.path === "/auth/other"));
      session.dispose();
    } finally {
      await target.close();
    }
  });

  it("REDIRECT_BLOCKED: a refresh answered by a redirect keeps the session", async () => {
    const target = await startServer();
    try {
      const session = await loggedIn();
      server.fault({ path: "/auth/refresh" }, { redirect: `${target.url}/auth/refresh`, status: 307 });
      await rejectsWith(session.refresh(), { code: "REDIRECT_BLOCKED", status: 307 });
      assert.equal(target.stats.requests, 0);
      assert.equal(session.info.state, "active");
      session.dispose();
    } finally {
      await target.close();
    }
  });

  it("RESPONSE_TOO_LARGE: a 200 000-byte login answer", async () => {
    server.fault({ path: "/auth/login" }, { hugeBody: 200_000 });
    const session = session0({ retries: 2 });
    await rejectsWith(session.login(DEMO.username, DEMO.password), {
      code: "RESPONSE_TOO_LARGE",
      anyStatus: true,
      retryable: false,
    });
    assert.equal(hits("/auth/login"), 1);
    checkInfo(session.info, "anonymous");
    session.dispose();
  });
});

describe("auth failures on refresh keep the session when temporary", () => {
  it("RESPONSE_TOO_LARGE and TIMEOUT on refresh: tokens kept, session still usable", async () => {
    const session = await loggedIn({ retries: 0, timeoutMs: 500 });
    server.fault({ path: "/auth/refresh" }, { hugeBody: 200_000 });
    await rejectsWith(session.refresh(), { code: "RESPONSE_TOO_LARGE", anyStatus: true, retryable: false });
    assert.equal(session.info.state, "active");
    server.fault({ path: "/auth/refresh" }, { hang: true });
    await rejectsWith(session.refresh(), { code: "TIMEOUT" });
    assert.equal(session.info.state, "active");
    assert.equal((await session.json("/api/v1/products")).length, 4);
    checkInfo(await session.refresh(), "active");
    assert.equal(server.stats.spentReuse, 0);
    session.dispose();
  });
});

/** json, fetch, refresh and getAccessToken all reject with `expected`, and nothing is sent. */
async function everyCallRejects(session, expected) {
  await rejectsWith(session.json("/api/v1/products"), expected);
  await rejectsWith(session.fetch("/api/v1/products"), expected);
  await rejectsWith(session.refresh(), expected);
  await rejectsWith(session.getAccessToken(), expected);
  assert.equal(server.stats.requests, 0);
}

describe("session-state errors", () => {
  it("NOT_AUTHENTICATED: before login", async () => {
    const session = session0();
    const expected = { code: "NOT_AUTHENTICATED", status: 0, retryable: false };
    await everyCallRejects(session, expected);
    session.dispose();
  });

  it("NOT_AUTHENTICATED: after revoke", async () => {
    const session = await loggedIn();
    await session.revoke();
    clearCounters(server);
    const expected = { code: "NOT_AUTHENTICATED" };
    await everyCallRejects(session, expected);
    session.dispose();
  });

  it("SESSION_EXPIRED: the server revoked everything; one expired event", async () => {
    const session = await loggedIn();
    const events = recordEvents(session);
    server.revokeAll();
    const err = await rejectsWith(session.refresh(), { code: "SESSION_EXPIRED", anyStatus: true, retryable: false });
    assert.ok(err.status === 401 || err.status === 0);
    checkInfo(session.info, "expired");
    assert.equal(events.expired.length, 1);
    checkInfo(events.expired[0], "expired");
    assert.equal(events.error.length, 0);
    assert.equal(server.stats.refresh, 1);
    clearCounters(server);
    // Until the next login: SESSION_EXPIRED, no request.
    await rejectsWith(session.json("/api/v1/products"), { code: "SESSION_EXPIRED", anyStatus: true });
    await rejectsWith(session.refresh(), { code: "SESSION_EXPIRED", anyStatus: true });
    await rejectsWith(session.getAccessToken(), { code: "SESSION_EXPIRED", anyStatus: true });
    assert.equal(server.stats.requests, 0);
    assert.equal(events.expired.length, 1, "still one expired event");
    await session.login(DEMO.username, DEMO.password);
    assert.equal((await session.json("/api/v1/products")).length, 4);
    session.dispose();
  });

  it("SESSION_EXPIRED: json() after a server-side revoke (401, then the refresh is rejected)", async () => {
    const session = await loggedIn();
    const events = recordEvents(session);
    server.revokeAll();
    await rejectsWith(session.json("/api/v1/products"), { code: "SESSION_EXPIRED", anyStatus: true });
    assert.equal(server.stats.refresh, 1);
    assert.equal(events.expired.length, 1);
    assert.equal(server.stats.spentReuse, 0);
    session.dispose();
  });

  it("ORIGIN_NOT_ALLOWED: fetch() to another origin (nothing sent)", async () => {
    const session = await loggedIn();
    await rejectsWith(session.fetch("https://example.com/api"), {
      code: "ORIGIN_NOT_ALLOWED",
      status: 0,
      retryable: false,
    });
    await rejectsWith(session.json("http://127.0.0.1:1/api"), { code: "ORIGIN_NOT_ALLOWED" });
    assert.equal(server.stats.requests, 0);
    session.dispose();
  });

  it("DISPOSED: every call after dispose()", async () => {
    const session = await loggedIn();
    session.dispose();
    const expected = { code: "DISPOSED", status: 0, retryable: false };
    await rejectsWith(() => session.login(DEMO.username, DEMO.password), expected);
    await rejectsWith(() => session.refresh(), expected);
    await rejectsWith(() => session.json("/api/v1/products"), expected);
    await rejectsWith(() => session.fetch("/api/v1/products"), expected);
    await rejectsWith(() => session.getAccessToken(), expected);
    await rejectsWith(() => session.revoke(), expected);
    assert.equal(server.stats.requests, 0);
    // `info` still answers and holds no tokens.
    assert.equal(session.info.clientId, null);
  });

  it("DISPOSED: restore() after dispose()", async () => {
    const session = session0({ storage: mapStorage() });
    session.dispose();
    await rejectsWith(() => session.restore(), { code: "DISPOSED" });
  });
});

describe("CONFIG_ERROR", () => {
  const config = (options, what) =>
    throwsWith(() => new AuthSession(options), { code: "CONFIG_ERROR", status: 0, retryable: false }).message;

  it("refuses bad options in the constructor", () => {
    const good = { host: "https://api.example.com" };
    const cases = [
      undefined,
      null,
      "https://api.example.com",
      [],
      {},
      { host: "" },
      { host: "not a url" },
      { host: "/relative" },
      { host: 42 },
      { host: "http://example.com" },
      { host: "ftp://example.com" },
      { ...good, retries: -1 },
      { ...good, retries: 1.5 },
      { ...good, retries: "2" },
      { ...good, timeoutMs: 0 },
      { ...good, timeoutMs: Number.NaN },
      { ...good, timeoutMs: "100" },
      { ...good, refreshMarginSeconds: -1 },
      { ...good, maxRetryAfterSeconds: -5 },
      { ...good, autoRefresh: "yes" },
      { ...good, unknownOption: true },
      { ...good, refreshMarginSecond: 10 },
      { ...good, credentials: "demo:demo" },
      { ...good, credentials: { username: "demo" } },
      { ...good, credentials: { username: "", password: "x" } },
      { ...good, credentials: { username: "x", password: "" } },
      { ...good, paths: { login: "auth/login" } },
      { ...good, paths: "/auth" },
      { ...good, fetch: "fetch" },
      { ...good, allowedOrigins: "https://a.example.com" },
      { ...good, allowedOrigins: ["not an origin"] },
      { ...good, allowedOrigins: ["http://files.example.com"] },
      { ...good, storage: { get() {}, delete() {} } },
      { ...good, storage: { put() {}, delete() {} } },
      { ...good, storage: { get() {}, put() {} } },
      { ...good, storage: "localStorage" },
      { ...good, storageKey: "" },
      { ...good, allowInsecureHttp: "true" },
    ];
    for (const options of cases) {
      try {
        config(options);
      } catch (e) {
        e.message = `options ${JSON.stringify(options)}: ${e.message}`;
        throw e;
      }
    }
  });

  it("names the option at fault", () => {
    assert.match(config({ host: "https://x.example", retries: -1 }), /retries/);
    assert.match(config({ host: "https://x.example", bogus: 1 }), /bogus/);
    assert.match(config({ host: "https://x.example", storage: { get() {}, delete() {} } }), /put/);
    assert.match(config({}), /host/);
  });

  it("accepts good options (including the insecure-http escape hatch and localhost)", () => {
    for (const options of [
      { host: "https://api.example.com" },
      { host: "https://api.example.com/v2/" },
      { host: "http://localhost:8080" },
      { host: "http://127.0.0.1:8080" },
      { host: "http://example.com", allowInsecureHttp: true },
      {
        host: "https://api.example.com",
        credentials: { username: "u", password: "p" },
        refreshMarginSeconds: 0,
        autoRefresh: false,
        timeoutMs: 1,
        retries: 0,
        maxRetryAfterSeconds: 0,
        paths: { login: "/l", refresh: "/r", revoke: "/v" },
        fetch: globalThis.fetch,
        storage: mapStorage(),
        storageKey: "k",
        allowedOrigins: ["https://files.example.com"],
        allowInsecureHttp: false,
      },
    ]) {
      new AuthSession(options).dispose();
    }
  });

  it("login() without arguments and without credentials: CONFIG_ERROR, no request", async () => {
    const session = session0();
    await rejectsWith(session.login(), { code: "CONFIG_ERROR" });
    await rejectsWith(session.login("", ""), { code: "CONFIG_ERROR" });
    await rejectsWith(session.login("demo", ""), { code: "CONFIG_ERROR" });
    await rejectsWith(() => session.login("demo"), { code: "CONFIG_ERROR" });
    await rejectsWith(() => session.login(42, "x"), { code: "CONFIG_ERROR" });
    assert.equal(server.stats.requests, 0);
    session.dispose();
  });

  it("restore() without storage and on() with a bad event are CONFIG_ERRORs", async () => {
    const session = session0();
    await rejectsWith(() => session.restore(), { code: "CONFIG_ERROR" });
    throwsWith(() => session.on("bogus", () => {}), { code: "CONFIG_ERROR" });
    throwsWith(() => session.on("tokens", "not a function"), { code: "CONFIG_ERROR" });
    session.dispose();
  });

  it(
    "accepts the waitUntil option that index.d.ts declares",
    () => {
      const promises = [];
      new AuthSession({ host: "https://api.example.com", waitUntil: (p) => promises.push(p) }).dispose();
    },
  );
});

describe("the AuthError class", () => {
  it("errors thrown by the package are instances of the exported AuthError", async () => {
    const session = session0();
    const err = await session.json("/x").catch((e) => e);
    assert.ok(err instanceof AuthError);
    assert.equal(Object.getPrototypeOf(err), AuthError.prototype);
    assert.ok(Object.prototype.toString.call(err), "[object Error]");
    session.dispose();
  });
});
