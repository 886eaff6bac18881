// Refresh: the auto-refresh timer, single-flight across callers, 401 replay, rejected and
// expired refresh tokens, transparent re-login with credentials, and the server's clock.
//
// The timing tests wait for real timers (2-3 s each), so they run concurrently, each
// against its own server; the others share this file's server.

import { describe, it, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import {
  AuthSession,
  AuthError,
  startServer,
  DEMO,
  clearCounters,
  rejectsWith,
  recordEvents,
  nextEvent,
  checkInfo,
  sleep,
  waitFor,
  mapStorage,
  useServer,
} from "./helpers.mjs";

const server = useServer();

const hits = (srv, path) => srv.log.filter((e) => e.path === path).length;

async function loggedIn(extra = {}, srv = server) {
  const session = new AuthSession({ host: srv.url, autoRefresh: false, ...extra });
  await session.login(DEMO.username, DEMO.password);
  clearCounters(srv);
  return session;
}

/** Runs `fn` with a fresh server of its own, closed afterwards. */
async function withServer(options, fn) {
  const srv = await startServer(options);
  try {
    return await fn(srv);
  } finally {
    await srv.close();
  }
}

describe("timers (real time, run concurrently)", { concurrency: true }, () => {
  it("autoRefresh refreshes ahead of expiry: one refresh, a tokens event", () =>
    withServer({ accessTtlMs: 3000 }, async (srv) => {
      // Records when the client sends its refresh request.
      const refreshSentAt = [];
      const timedFetch = (input, init) => {
        const request = new Request(input, init);
        if (request.url.endsWith("/auth/refresh")) refreshSentAt.push(Date.now());
        return fetch(request);
      };
      const session = new AuthSession({ host: srv.url, refreshMarginSeconds: 1, fetch: timedFetch });
      const events = recordEvents(session);
      const loginStarted = Date.now();
      const first = await session.login(DEMO.username, DEMO.password);
      assert.equal(events.tokens.length, 1);
      const refreshed = await nextEvent(session, "tokens", 5000);
      // Margin 1 s on a 3 s token: sent at about 2 s, not early, and before the expiry.
      assert.equal(refreshSentAt.length, 1);
      const sentAfter = refreshSentAt[0] - loginStarted;
      assert.ok(sentAfter >= 1500, `refresh sent ${sentAfter} ms after login (too early)`);
      assert.ok(refreshSentAt[0] < first.accessExpiresAt.getTime(), `refresh sent ${sentAfter} ms after login, after expiry`);
      checkInfo(refreshed, "active");
      assert.ok(refreshed.accessExpiresAt > first.accessExpiresAt);
      assert.equal(srv.stats.refresh, 1);
      assert.equal(srv.stats.login, 1);
      assert.equal(srv.stats.spentReuse, 0);
      const { reason, ...refreshedInfo } = refreshed;
      assert.equal(reason, "refresh");
      assert.deepEqual(session.info, refreshedInfo);
      assert.equal(events.error.length, 0);
      // The new token works without another refresh.
      assert.equal((await session.json("/api/v1/products")).length, 4);
      assert.equal(srv.stats.refresh, 1);
      session.dispose();
    }));

  it("the timer keeps refreshing (re-armed after each refresh) and persists each pair", () =>
    withServer({ accessTtlMs: 1200 }, async (srv) => {
      const storage = mapStorage();
      const session = new AuthSession({ host: srv.url, refreshMarginSeconds: 1, storage });
      await session.login(DEMO.username, DEMO.password);
      await waitFor(() => storage.map.size === 1, { what: "the stored record" });
      const firstRecord = [...storage.map.values()][0];
      // Margin capped at half the remaining life: about every 600 ms.
      await waitFor(() => srv.stats.refresh >= 2, { timeoutMs: 3000, what: "two timer refreshes" });
      session.dispose();
      await waitFor(() => [...storage.map.values()][0] !== firstRecord, { what: "a new stored record" });
      assert.equal(srv.stats.spentReuse, 0);
      const refreshes = srv.stats.refresh;
      await sleep(800);
      assert.equal(srv.stats.refresh, refreshes, "no refresh after dispose()");
    }));

  it("a failing timer refresh is an error event, never an unhandled rejection; tokens kept", () =>
    withServer({ accessTtlMs: 3000 }, async (srv) => {
      const unhandled = [];
      const onUnhandled = (reason) => unhandled.push(reason);
      process.on("unhandledRejection", onUnhandled);
      try {
        srv.fault({ path: "/auth/refresh" }, { status: 503, body: "maintenance" }, Infinity);
        const session = new AuthSession({ host: srv.url, refreshMarginSeconds: 1, retries: 0 });
        const events = recordEvents(session);
        await session.login(DEMO.username, DEMO.password);
        const err = await nextEvent(session, "error", 4000);
        assert.ok(err instanceof AuthError, "the error event's payload is an AuthError");
        assert.equal(err.code, "SERVER_ERROR");
        assert.equal(err.status, 503);
        assert.equal(err.retryable, true);
        assert.equal(session.info.state, "active", "a temporary failure keeps the tokens");
        assert.equal((await session.json("/api/v1/products")).length, 4, "the token still works");
        assert.equal(events.expired.length, 0);
        session.dispose();
        await sleep(50);
        assert.deepEqual(unhandled, []);
      } finally {
        process.off("unhandledRejection", onUnhandled);
      }
    }));

  it("a timer refresh that is rejected ends the session: one expired event, no error event", () =>
    withServer({ accessTtlMs: 3000 }, async (srv) => {
      const session = new AuthSession({ host: srv.url, refreshMarginSeconds: 1 });
      const events = recordEvents(session);
      await session.login(DEMO.username, DEMO.password);
      srv.revokeAll();
      const info = await nextEvent(session, "expired", 4000);
      checkInfo(info, "expired");
      checkInfo(session.info, "expired");
      await sleep(50);
      assert.equal(events.expired.length, 1);
      assert.equal(events.error.length, 0);
      await rejectsWith(session.json("/api/v1/products"), { code: "SESSION_EXPIRED", anyStatus: true });
      session.dispose();
    }));

  it("without autoRefresh, a call within the margin refreshes first (no 401 on the wire)", () =>
    withServer({ accessTtlMs: 3000 }, async (srv) => {
      const session = await loggedIn({ refreshMarginSeconds: 1 }, srv);
      await sleep(2200); // inside the (1 s) margin, the token itself still valid
      assert.equal(srv.stats.refresh, 0, "no timer without autoRefresh");
      assert.equal((await session.json("/api/v1/products")).length, 4);
      assert.deepEqual(
        srv.log.map((e) => [e.path, e.status]),
        [
          ["/auth/refresh", 200],
          ["/api/v1/products", 200],
        ],
      );
      // getAccessToken: valid for at least the margin now.
      const token = await session.getAccessToken();
      assert.equal(typeof token, "string");
      assert.ok(session.info.accessExpiresAt.getTime() - Date.now() > 1000);
      assert.equal(srv.stats.refresh, 1);
      session.dispose();
    }));

  it("an expired refresh token ends the session without a request: SESSION_EXPIRED, one expired event", () =>
    withServer({ accessTtlMs: 800, refreshTtlMs: 1200 }, async (srv) => {
      const session = await loggedIn({ refreshMarginSeconds: 0 }, srv);
      const events = recordEvents(session);
      await sleep(1400);
      await rejectsWith(session.json("/api/v1/products"), { code: "SESSION_EXPIRED", anyStatus: true });
      await rejectsWith(session.getAccessToken(), { code: "SESSION_EXPIRED", anyStatus: true });
      await rejectsWith(session.refresh(), { code: "SESSION_EXPIRED", anyStatus: true });
      assert.equal(srv.stats.requests, 0, "an expired refresh token is not sent");
      assert.equal(events.expired.length, 1);
      checkInfo(session.info, "expired");
      session.dispose();
    }));

  it("with credentials, an expired refresh token leads to a transparent login", () =>
    withServer({ accessTtlMs: 800, refreshTtlMs: 1200 }, async (srv) => {
      const session = new AuthSession({
        host: srv.url,
        autoRefresh: false,
        refreshMarginSeconds: 0,
        credentials: DEMO,
      });
      await session.login();
      const events = recordEvents(session);
      await sleep(1400);
      assert.equal((await session.json("/api/v1/products")).length, 4);
      assert.equal(srv.stats.login, 2);
      assert.equal(srv.stats.refresh, 0);
      assert.equal(events.expired.length, 0);
      assert.equal(session.info.state, "active");
      session.dispose();
    }));

  it("server clock 1 h ahead (Date header): the timer still refreshes on time", () =>
    withServer({ accessTtlMs: 3000, dateSkewMs: 3_600_000 }, async (srv) => {
      const session = new AuthSession({ host: srv.url, refreshMarginSeconds: 1 });
      await session.login(DEMO.username, DEMO.password);
      // Without the Date-header correction the token would look valid for an hour.
      await nextEvent(session, "tokens", 5000);
      assert.equal(srv.stats.refresh, 1);
      assert.equal((await session.json("/api/v1/products")).length, 4);
      session.dispose();
    }));

  it("server clock 1 h behind (Date header): its tokens are accepted and used", () =>
    withServer({ accessTtlMs: 3000, dateSkewMs: -3_600_000 }, async (srv) => {
      const session = new AuthSession({ host: srv.url, refreshMarginSeconds: 1 });
      const info = await session.login(DEMO.username, DEMO.password);
      checkInfo(info, "active");
      assert.equal((await session.json("/api/v1/products")).length, 4);
      assert.equal(srv.stats.refresh, 0, "not refreshed at once");
      await nextEvent(session, "tokens", 4000);
      assert.equal(srv.stats.refresh, 1);
      session.dispose();
    }));
});

describe("single flight", () => {
  it("50 concurrent json() calls after the server expired the access token: exactly one refresh", async () => {
    const session = await loggedIn();
    const events = recordEvents(session);
    server.expireAccessTokens();
    const results = await Promise.all(Array.from({ length: 50 }, () => session.json("/api/v1/products")));
    assert.equal(results.length, 50);
    for (const r of results) assert.equal(r.length, 4);
    assert.equal(server.stats.refresh, 1);
    assert.equal(server.stats.spentReuse, 0);
    assert.equal(events.tokens.length, 1);
    const statuses = server.log.filter((e) => e.path === "/api/v1/products").map((e) => e.status);
    assert.equal(statuses.filter((s) => s === 200).length, 50);
    assert.ok(statuses.filter((s) => s === 401).length <= 50);
    session.dispose();
  });

  it("concurrent refresh() callers share one request (and one tokens event)", async () => {
    const session = await loggedIn();
    const events = recordEvents(session);
    server.fault({ path: "/auth/refresh" }, { delayMs: 200 });
    const infos = await Promise.all(Array.from({ length: 20 }, () => session.refresh()));
    assert.equal(server.stats.refresh, 1);
    for (const info of infos) assert.deepEqual(info, infos[0]);
    checkInfo(infos[0], "active");
    assert.equal(events.tokens.length, 1);
    // A later refresh() is a new request.
    await session.refresh();
    assert.equal(server.stats.refresh, 2);
    assert.equal(server.stats.spentReuse, 0);
    session.dispose();
  });

  it("refresh(), getAccessToken(), json() and fetch() together share one refresh", async () => {
    const session = await loggedIn();
    const old = await session.getAccessToken();
    server.fault({ path: "/auth/refresh" }, { delayMs: 150 });
    server.expireAccessTokens();
    const refreshing = session.refresh();
    const [info, token, data, res] = await Promise.all([
      refreshing,
      session.getAccessToken(),
      session.json("/api/v1/products"),
      session.fetch("/api/v1/products"),
    ]);
    checkInfo(info, "active");
    assert.equal(typeof token, "string");
    assert.equal(data.length, 4);
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.equal(server.stats.refresh, 1);
    assert.equal(server.stats.spentReuse, 0);
    assert.notEqual(await session.getAccessToken(), old, "the refreshed token is the one held");
    session.dispose();
  });

  it("a refresh fails for every waiter alike (temporary failure keeps the tokens)", async () => {
    const session = await loggedIn({ retries: 0 });
    server.fault({ path: "/auth/refresh" }, { status: 503, body: "down" });
    const outcomes = await Promise.allSettled(Array.from({ length: 5 }, () => session.refresh()));
    assert.equal(hits(server, "/auth/refresh"), 1);
    for (const o of outcomes) {
      assert.equal(o.status, "rejected");
      assert.equal(o.reason.code, "SERVER_ERROR");
    }
    assert.equal(session.info.state, "active");
    assert.equal((await session.json("/api/v1/products")).length, 4);
    await session.refresh();
    assert.equal(server.stats.spentReuse, 0);
    session.dispose();
  });
});

describe("401 replay", () => {
  it("after the server expired the access token, json() refreshes once and replays", async () => {
    const session = await loggedIn();
    server.expireAccessTokens();
    assert.equal((await session.json("/api/v1/products")).length, 4);
    assert.equal(server.stats.refresh, 1);
    assert.deepEqual(
      server.log.map((e) => [e.path, e.status, e.hasAuthorization]),
      [
        ["/api/v1/products", 401, true],
        ["/auth/refresh", 200, false],
        ["/api/v1/products", 200, true],
      ],
    );
    session.dispose();
  });

  it("a POST is replayed once with its body after a 401", async () => {
    const session = await loggedIn();
    server.expireAccessTokens();
    const data = await session.json("/api/v1/echo", { method: "POST", body: "replayed body" });
    assert.equal(data.body, "replayed body");
    assert.equal(data.method, "POST");
    assert.equal(hits(server, "/api/v1/echo"), 2);
    session.dispose();
  });

  it("a Request input with a body is replayed intact after a 401", async () => {
    const session = await loggedIn();
    server.expireAccessTokens();
    const request = new Request(`${server.url}/api/v1/echo?r=1`, {
      method: "PATCH",
      headers: { "content-type": "application/json", "x-trace": "abc" },
      body: JSON.stringify({ replay: true }),
    });
    const data = await session.json(request);
    assert.deepEqual(data, {
      method: "PATCH",
      path: "/api/v1/echo",
      query: { r: "1" },
      body: '{"replay":true}',
      contentType: "application/json",
      clientId: 123456,
    });
    assert.deepEqual(
      server.log.map((e) => [e.method, e.path, e.status]),
      [
        ["PATCH", "/api/v1/echo", 401],
        ["POST", "/auth/refresh", 200],
        ["PATCH", "/api/v1/echo", 200],
      ],
    );
    session.dispose();
  });

  it("a second 401 is returned as the Response (one refresh, one replay)", async () => {
    const session = await loggedIn();
    const unauthorized = {
      status: 401,
      body: { error: { name: "UnauthorizedError", code: "UNAUTHORIZED", message: "nope" } },
    };
    server.fault({ path: "/api/v1/products" }, unauthorized, 2);
    const res = await session.fetch("/api/v1/products");
    assert.equal(res.status, 401);
    assert.equal((await res.json()).error.code, "UNAUTHORIZED");
    assert.equal(hits(server, "/api/v1/products"), 2);
    assert.equal(server.stats.refresh, 1);
    // json() turns the final 401 into the server's error.
    clearCounters(server);
    server.fault({ path: "/api/v1/products" }, unauthorized, 2);
    await rejectsWith(session.json("/api/v1/products"), {
      code: "UNAUTHORIZED",
      name: "UnauthorizedError",
      status: 401,
      retryable: false,
    });
    assert.equal(server.stats.refresh, 1);
    assert.equal(session.info.state, "active");
    session.dispose();
  });

  it("with credentials, a rejected refresh logs in again transparently", async () => {
    const session = new AuthSession({ host: server.url, autoRefresh: false, credentials: DEMO });
    await session.login();
    clearCounters(server);
    const events = recordEvents(session);
    server.revokeAll();
    assert.equal((await session.json("/api/v1/products")).length, 4);
    assert.equal(server.stats.refresh, 1);
    assert.equal(server.stats.login, 1);
    assert.equal(events.expired.length, 0);
    assert.equal(session.info.state, "active");
    // refresh() after a server-side revoke, too.
    server.revokeAll();
    checkInfo(await session.refresh(), "active");
    assert.equal(server.stats.login, 2);
    assert.equal(events.expired.length, 0);
    session.dispose();
  });
});
