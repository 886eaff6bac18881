// Canary secrets: the password and every token value the server issued must never appear in
// an error (message, stack, String, JSON, inspect, cause), in `info`, in
// JSON.stringify/util.inspect of the session, in an event payload, in console output, or in
// a request URL. Tokens are learnt from the wire (a `fetch` option reading response clones),
// not from the library.

import { describe, it, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { inspect, format } from "node:util";
import {
  AuthSession,
  startServer,
  clearCounters,
  spyFetch,
  errorTexts,
  assertNoSecrets,
  recordEvents,
  mapStorage,
  sleep,
  waitFor,
  useServer,
} from "./helpers.mjs";

const PASSWORD = "canary-PASSWORD-7f3a";
const USER = "canary";

const server = useServer({ users: { [USER]: PASSWORD }, accessTtlMs: 60_000 });

/** Replaces console.* while `fn` runs; returns everything written through it. */
async function captureConsole(fn) {
  const lines = [];
  const methods = ["log", "info", "warn", "error", "debug", "trace", "dir", "table"];
  const saved = Object.fromEntries(methods.map((m) => [m, console[m]]));
  for (const m of methods) console[m] = (...args) => lines.push(format(...args));
  try {
    await fn();
  } finally {
    Object.assign(console, saved);
  }
  return lines;
}

/** Everything a user could print about a session. */
function sessionTexts(session) {
  const out = [];
  for (const f of [
    () => inspect(session),
    () => inspect(session, { showHidden: true, depth: Infinity, getters: true }),
    () => JSON.stringify(session),
    () => JSON.stringify(session.info),
    () => inspect(session.info, { showHidden: true, depth: Infinity }),
    () => String(session),
    () => JSON.stringify(Object.getOwnPropertyNames(session).map((k) => [k, String(session[k])])),
    () => format("%o", session),
  ]) {
    try {
      out.push(String(f()));
    } catch (e) {
      out.push(`<threw ${e && e.name}>`);
    }
  }
  return out;
}

const eventTexts = (events) =>
  Object.values(events)
    .flat()
    .flatMap((p) => (p instanceof Error ? errorTexts(p) : [JSON.stringify(p), inspect(p, { depth: Infinity })]));

describe("canary secrets never leak", () => {
  it("through errors, info, inspect, JSON, events, console and URLs across the whole lifecycle", async () => {
    const spy = spyFetch();
    const errors = [];
    const texts = [];
    const storage = mapStorage();
    let session;
    const events = { tokens: [], expired: [], revoked: [], error: [] };
    const catchAll = async (p) => {
      try {
        await (typeof p === "function" ? p() : p);
      } catch (e) {
        errors.push(e);
      }
    };

    const consoleLines = await captureConsole(async () => {
      session = new AuthSession({
        host: server.url,
        fetch: spy.fetch,
        credentials: { username: USER, password: PASSWORD },
        refreshMarginSeconds: 1,
        timeoutMs: 1000,
        retries: 0,
        storage,
      });
      for (const name of Object.keys(events)) session.on(name, (p) => events[name].push(p));
      texts.push(...sessionTexts(session));

      // A server that echoes the password in its error message (and in a 5xx page).
      server.fault(
        { path: "/auth/login" },
        { status: 401, body: { error: { name: "UnauthorizedError", code: "UNAUTHORIZED", message: `bad password ${PASSWORD}` } } },
      );
      await catchAll(session.login());
      server.fault({ path: "/auth/login" }, { status: 500, body: `<pre>password=${PASSWORD}</pre>` });
      await catchAll(session.login());
      server.fault({ path: "/auth/login" }, { status: 400, body: `{"error":"${PASSWORD}"}` });
      await catchAll(session.login());
      await catchAll(session.login(USER, `${PASSWORD}-wrong`));

      await session.login();
      texts.push(...sessionTexts(session));
      const [access, refresh] = [...spy.tokens];
      assert.ok(access && refresh, "tokens learnt from the wire");

      // An API error envelope (its message is the server's; the next test has one quoting the token).
      server.fault(
        { path: "/api/v1/products" },
        { status: 403, body: { error: { name: "ForbiddenError", code: "FORBIDDEN", message: "refused" } } },
      );
      await catchAll(session.json("/api/v1/products"));
      // A refresh endpoint that echoes the refresh token in a validation error.
      server.fault(
        { path: "/auth/refresh" },
        { status: 400, body: { error: { name: "ValidationException", code: "VALIDATION_FAILURE", message: `bad ${refresh}` } } },
      );
      await catchAll(session.refresh());
      server.fault({ path: "/auth/refresh" }, { status: 503, body: `refresh_token=${refresh}` });
      await catchAll(session.refresh());
      // Transport failures, timeouts, aborts, origins.
      server.fault({ path: "/api/v1/products" }, { drop: true });
      await catchAll(session.json("/api/v1/products"));
      server.fault({ path: "/api/v1/products" }, { hang: true });
      await catchAll(session.fetch("/api/v1/products"));
      await catchAll(session.json("/api/v1/products", { signal: AbortSignal.abort() }));
      await catchAll(session.fetch(`https://evil.example/steal?x=1`));
      server.fault({ path: "/api/v1/products" }, { status: 500, body: `<html>${access}</html>` });
      await catchAll(session.json("/api/v1/products"));
      server.fault({ path: "/api/v1/products" }, { status: 404, body: `no ${access}` });
      await catchAll(session.json("/api/v1/products"));
      server.fault({ path: "/api/v1/products" }, { status: 200, body: `not json ${access}` });
      await catchAll(session.json("/api/v1/products"));
      texts.push(...sessionTexts(session));

      // A refresh, then the server revokes everything: with credentials a new login follows.
      await session.refresh();
      server.revokeAll();
      await session.json("/api/v1/products");
      texts.push(...sessionTexts(session));

      // Revoke with a failing server, then everything is NOT_AUTHENTICATED.
      server.fault({ path: "/auth/revoke" }, { status: 500, body: `${[...spy.tokens].join(" ")}` });
      await catchAll(session.revoke());
      await catchAll(session.json("/api/v1/products"));
      await catchAll(session.getAccessToken());
      texts.push(...sessionTexts(session));
      session.dispose();
      await catchAll(session.json("/api/v1/products"));
      texts.push(...sessionTexts(session));
    });

    const secrets = [PASSWORD, ...spy.tokens];
    assert.ok(spy.tokens.size >= 6, `saw ${spy.tokens.size} tokens (login, refresh, re-login)`);
    assert.ok(errors.length >= 15, `collected ${errors.length} errors`);
    assertNoSecrets(errors.flatMap(errorTexts), secrets, "an error");
    assertNoSecrets(texts, secrets, "the session's printed form");
    assertNoSecrets(eventTexts(events), secrets, "an event payload");
    assert.ok(events.tokens.length >= 3);
    assert.ok(events.revoked.length === 1);
    assertNoSecrets(consoleLines, secrets, "console output");
    assertNoSecrets(
      spy.requests.map((r) => r.url),
      secrets,
      "a request URL",
    );
    // The codes are the expected ones (the leak check above is only meaningful if the
    // failures happened as planned).
    assert.deepEqual(
      errors.map((e) => e.code),
      [
        "UNAUTHORIZED",
        "SERVER_ERROR",
        "HTTP_ERROR",
        "UNAUTHORIZED",
        "FORBIDDEN",
        "VALIDATION_FAILURE",
        "SERVER_ERROR",
        "NETWORK_ERROR",
        "TIMEOUT",
        "ABORTED",
        "ORIGIN_NOT_ALLOWED",
        "SERVER_ERROR",
        "HTTP_ERROR",
        "INVALID_RESPONSE",
        "SERVER_ERROR",
        "NOT_AUTHENTICATED",
        "NOT_AUTHENTICATED",
        "DISPOSED",
      ],
    );
  });

  it(
    "json(): an API error envelope quoting the bearer token is redacted",
    async () => {
      const spy = spyFetch();
      const session = new AuthSession({ host: server.url, fetch: spy.fetch, autoRefresh: false });
      await session.login(USER, PASSWORD);
      const access = await session.getAccessToken();
      server.fault(
        { path: "/api/v1/products" },
        { status: 403, body: { error: { name: "ForbiddenError", code: "FORBIDDEN", message: `token ${access} refused` } } },
      );
      const err = await session.json("/api/v1/products").catch((e) => e);
      assert.equal(err.code, "FORBIDDEN");
      assert.equal(err.status, 403);
      assertNoSecrets(errorTexts(err), [PASSWORD, ...spy.tokens], "an API error");
      session.dispose();
    },
  );

  it("a custom fetch that throws with the Authorization header in its message: NETWORK_ERROR without it", async () => {
    const spy = spyFetch();
    let fail = false;
    const leaky = async (input, init) => {
      const request = new Request(input, init);
      if (fail) {
        const auth = request.headers.get("authorization");
        const err = new TypeError(`fetch failed for ${request.url} with ${auth}`);
        err.cause = { code: `ECONN ${auth}`, header: auth, password: PASSWORD };
        throw err;
      }
      return spy.fetch(request);
    };
    const session = new AuthSession({ host: server.url, fetch: leaky, retries: 0, autoRefresh: false });
    const events = recordEvents(session);
    await session.login(USER, PASSWORD);
    fail = true;
    const errors = [];
    for (const call of [() => session.json("/api/v1/products"), () => session.fetch("/api/v1/products"), () => session.refresh()]) {
      try {
        await call();
        assert.fail("expected a failure");
      } catch (e) {
        errors.push(e);
      }
    }
    assert.deepEqual(
      errors.map((e) => e.code),
      ["NETWORK_ERROR", "NETWORK_ERROR", "NETWORK_ERROR"],
    );
    const secrets = [PASSWORD, ...spy.tokens];
    assertNoSecrets(errors.flatMap(errorTexts), secrets, "a NETWORK_ERROR");
    assertNoSecrets(eventTexts(events), secrets, "an event");
    session.dispose();
  });

  it("a failing login fetch that quotes the request body does not leak the password", async () => {
    const leaky = async (input, init) => {
      const request = new Request(input, init);
      const body = await request.text();
      throw new Error(`cannot send ${body}`);
    };
    const session = new AuthSession({ host: server.url, fetch: leaky, retries: 0 });
    const err = await session.login(USER, PASSWORD).catch((e) => e);
    assert.equal(err.code, "NETWORK_ERROR");
    assertNoSecrets(errorTexts(err), [PASSWORD], "the login error");
    session.dispose();
  });

  it("a storage whose put throws quoting the record does not leak tokens", async () => {
    const spy = spyFetch();
    const storage = {
      get: () => null,
      put: (key, value) => {
        throw new Error(`cannot write ${value}`);
      },
      delete() {},
    };
    const session = new AuthSession({ host: server.url, fetch: spy.fetch, storage, autoRefresh: false });
    const events = recordEvents(session);
    await session.login(USER, PASSWORD);
    await waitFor(() => events.error.length === 1, { what: "the storage error event" });
    assert.equal(events.error[0].code, "STORAGE_ERROR");
    assertNoSecrets(eventTexts(events), [PASSWORD, ...spy.tokens], "a storage error");
    session.dispose();
  });

  it("the timer's background error events carry no token", async () => {
    const srv = await startServer({ users: { [USER]: PASSWORD }, accessTtlMs: 1200 });
    try {
      const spy = spyFetch();
      const session = new AuthSession({ host: srv.url, fetch: spy.fetch, refreshMarginSeconds: 1, retries: 0 });
      const events = recordEvents(session);
      const lines = await captureConsole(async () => {
        await session.login(USER, PASSWORD);
        const [, refresh] = [...spy.tokens];
        srv.fault({ path: "/auth/refresh" }, { status: 503, body: `spent ${refresh}` }, Infinity);
        await waitFor(() => events.error.length >= 1, { timeoutMs: 3000, what: "a timer error event" });
        session.dispose();
        await sleep(20);
      });
      assertNoSecrets([...eventTexts(events), ...lines], [PASSWORD, ...spy.tokens], "a timer error");
    } finally {
      await srv.close();
    }
  });
});
