// Tests for the local reference server. Run: node --test tests/server/
// Plain global fetch only, so what is checked here is what any client sees on the wire.

import { describe, it, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { inspect } from "node:util";
import { fileURLToPath } from "node:url";
import { startServer, AUTH_BODY_LIMIT } from "./reference-server.mjs";

const SERVER_FILE = fileURLToPath(new URL("./reference-server.mjs", import.meta.url));
const DEMO = { username: "demo", password: "demo-password" };
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

// ----- helpers

function post(server, path, body, headers = {}) {
  return fetch(server.url + path, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function login(server, creds = DEMO) {
  const res = await post(server, "/auth/login", creds);
  assert.equal(res.status, 200);
  return (await res.json()).data;
}

const bearer = (token) => ({ authorization: `Bearer ${token}` });
const products = (server, token) =>
  fetch(`${server.url}/api/v1/products`, { headers: token ? bearer(token) : {} });

async function assertError(res, status, name, code, message) {
  assert.equal(res.status, status);
  assert.match(res.headers.get("content-type"), /^application\/json/);
  const body = await res.json();
  assert.deepEqual(Object.keys(body), ["error"]);
  assert.equal(body.error.name, name);
  assert.equal(body.error.code, code);
  assert.equal(typeof body.error.message, "string");
  if (message !== undefined) assert.equal(body.error.message, message);
  return body.error;
}

const assertUnauthorized = (res, message) => assertError(res, 401, "UnauthorizedError", "UNAUTHORIZED", message);
const assertValidation = (res) => assertError(res, 400, "ValidationException", "VALIDATION_FAILURE");

const control = async (server, path, body) => {
  const res = await fetch(`${server.url}/__control/${path}`, {
    method: body === undefined && path === "stats" ? "GET" : "POST",
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
};

// ----- suites

describe("reference server", () => {
  let server;
  before(async () => {
    server = await startServer({ users: { demo: "demo-password", alice: "alice-secret" } });
  });
  after(() => server.close());
  beforeEach(() => server.reset({ config: true }));

  describe("basics", () => {
    it("exposes url, port and origin without a trailing slash", () => {
      assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.equal(server.origin, server.url);
      assert.equal(server.url, `http://127.0.0.1:${server.port}`);
      assert.ok(server.port > 0);
    });

    it("sends CORS headers and the default Date header on every response", async () => {
      for (const res of [await fetch(`${server.url}/api/v1/public`), await fetch(`${server.url}/nope`)]) {
        assert.equal(res.headers.get("access-control-allow-origin"), "*");
        assert.equal(res.headers.get("access-control-allow-headers"), "content-type, authorization");
        assert.equal(res.headers.get("access-control-allow-methods"), "GET, POST, PUT, PATCH, DELETE, OPTIONS");
        assert.equal(res.headers.get("access-control-expose-headers"), "date, retry-after, location");
        const date = Date.parse(res.headers.get("date"));
        assert.ok(Math.abs(date - Date.now()) < 5_000);
        await res.arrayBuffer();
      }
    });

    it("answers OPTIONS with 204 and CORS headers on any path", async () => {
      for (const path of ["/auth/login", "/api/v1/products", "/whatever", "/__control/stats"]) {
        const res = await fetch(server.url + path, { method: "OPTIONS" });
        assert.equal(res.status, 204);
        assert.equal(res.headers.get("access-control-allow-origin"), "*");
        assert.equal(await res.text(), "");
      }
    });

    it("answers an unknown route with a 404 NOT_FOUND envelope", async () => {
      await assertError(await fetch(`${server.url}/nope`), 404, "NotFoundError", "NOT_FOUND");
      await assertError(await fetch(`${server.url}/api/v1/nope`), 404, "NotFoundError", "NOT_FOUND");
      await assertError(await fetch(`${server.url}/api/v1/products/`), 404, "NotFoundError", "NOT_FOUND");
    });

    it("answers a wrong method with a 405 envelope and an Allow header", async () => {
      const res = await fetch(`${server.url}/auth/login`);
      assert.equal(res.headers.get("allow"), "POST, OPTIONS");
      await assertError(res, 405, "MethodNotAllowedError", "METHOD_NOT_ALLOWED");
    });

    it("serves /api/v1/public without a token", async () => {
      const res = await fetch(`${server.url}/api/v1/public`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type"), /^application\/json/);
      assert.deepEqual(await res.json(), { success: true, data: { public: true } });
    });
  });

  describe("POST /auth/login", () => {
    it("returns a token pair in the success envelope", async () => {
      const before = Date.now();
      const res = await post(server, "/auth/login", DEMO);
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type"), /^application\/json/);
      const body = await res.json();
      assert.equal(body.success, true);
      const data = body.data;
      assert.deepEqual(Object.keys(data).sort(), [
        "access_expires_at",
        "access_token",
        "client_id",
        "refresh_expires_at",
        "refresh_token",
      ]);
      assert.match(data.access_token, JWT_SHAPE);
      assert.match(data.refresh_token, JWT_SHAPE);
      assert.notEqual(data.access_token, data.refresh_token);
      assert.equal(data.client_id, 123456);
      // RFC 3339 UTC from toISOString, one hour / seven days ahead.
      assert.equal(new Date(data.access_expires_at).toISOString(), data.access_expires_at);
      const access = Date.parse(data.access_expires_at) - before;
      const refresh = Date.parse(data.refresh_expires_at) - before;
      assert.ok(access >= 3_600_000 && access < 3_610_000, `access ttl ${access}`);
      assert.ok(refresh >= 7 * 86_400_000 && refresh < 7 * 86_400_000 + 10_000, `refresh ttl ${refresh}`);
      // The payload looks like a JWT's.
      const payload = JSON.parse(Buffer.from(data.access_token.split(".")[1], "base64url").toString());
      assert.equal(payload.typ, "access");
      assert.equal(payload.sub, "123456");
      assert.equal(payload.exp, Math.floor(Date.parse(data.access_expires_at) / 1000));
    });

    it("issues unique tokens every time and a stable client_id per user", async () => {
      const a = await login(server);
      const b = await login(server);
      const c = await login(server, { username: "alice", password: "alice-secret" });
      assert.notEqual(a.access_token, b.access_token);
      assert.notEqual(a.refresh_token, b.refresh_token);
      assert.equal(a.client_id, b.client_id);
      assert.equal(c.client_id, 123457);
    });

    it("rejects wrong credentials with 401 Invalid credentials", async () => {
      for (const creds of [
        { username: "demo", password: "wrong" },
        { username: "nobody", password: "demo-password" },
        { username: "__proto__", password: "x" },
        { username: "toString", password: "x" },
      ]) {
        await assertUnauthorized(await post(server, "/auth/login", creds), "Invalid credentials");
      }
    });

    it("rejects missing, empty or non-string fields with 400 VALIDATION_FAILURE", async () => {
      for (const body of [
        {},
        { username: "demo" },
        { password: "demo-password" },
        { username: "", password: "demo-password" },
        { username: "demo", password: "" },
        { username: 1, password: "demo-password" },
        { username: "demo", password: null },
        [],
        "\"a string\"",
        "null",
      ]) {
        await assertValidation(await post(server, "/auth/login", body));
      }
    });

    it("rejects invalid JSON with 400 SYNTAX_ERROR", async () => {
      for (const body of ["{", "", "{'username': 'demo'}", "not json"]) {
        await assertError(await post(server, "/auth/login", body), 400, "SyntaxError", "SYNTAX_ERROR");
      }
    });

    it("requires Content-Type: application/json", async () => {
      for (const type of ["text/plain", "application/x-www-form-urlencoded", undefined]) {
        const res = await fetch(`${server.url}/auth/login`, {
          method: "POST",
          headers: type ? { "content-type": type } : {},
          body: type === undefined ? undefined : JSON.stringify(DEMO),
        });
        await assertValidation(res);
      }
      // Parameters are fine.
      const ok = await post(server, "/auth/login", DEMO, { "content-type": "application/json; charset=utf-8" });
      assert.equal(ok.status, 200);
    });

    it("rejects bodies over 64 KiB with 413 PAYLOAD_TOO_LARGE and accepts exactly 64 KiB", async () => {
      const json = JSON.stringify(DEMO);
      const exact = json + " ".repeat(AUTH_BODY_LIMIT - json.length);
      assert.equal(Buffer.byteLength(exact), 65536);
      assert.equal((await post(server, "/auth/login", exact)).status, 200);
      await assertError(await post(server, "/auth/login", exact + " "), 413, "PayloadTooLargeError", "PAYLOAD_TOO_LARGE");
      await assertError(
        await post(server, "/auth/refresh", JSON.stringify({ refresh_token: "x".repeat(2_000_000) })),
        413,
        "PayloadTooLargeError",
        "PAYLOAD_TOO_LARGE",
      );
      // The connection is still usable afterwards.
      assert.equal((await post(server, "/auth/login", DEMO)).status, 200);
    });

    it("counts every login that reached the handler", async () => {
      await login(server);
      await post(server, "/auth/login", { username: "demo", password: "bad" });
      await post(server, "/auth/login", "{");
      assert.equal(server.stats.login, 3);
    });
  });

  describe("POST /auth/refresh", () => {
    it("rotates: returns a new pair, the old access token keeps working until expiry", async () => {
      const first = await login(server);
      const res = await post(server, "/auth/refresh", { refresh_token: first.refresh_token });
      assert.equal(res.status, 200);
      const { success, data } = await res.json();
      assert.equal(success, true);
      assert.match(data.access_token, JWT_SHAPE);
      assert.notEqual(data.access_token, first.access_token);
      assert.notEqual(data.refresh_token, first.refresh_token);
      assert.equal(data.client_id, first.client_id);
      assert.equal((await products(server, data.access_token)).status, 200);
      assert.equal((await products(server, first.access_token)).status, 200);
      // The new refresh token rotates again.
      const again = await post(server, "/auth/refresh", { refresh_token: data.refresh_token });
      assert.equal(again.status, 200);
      assert.equal(server.stats.refresh, 2);
    });

    it("treats reuse of a spent refresh token as theft: 401 and the whole family revoked", async () => {
      const first = await login(server);
      const other = await login(server); // another family, must survive
      const second = (await (await post(server, "/auth/refresh", { refresh_token: first.refresh_token })).json()).data;
      const third = (await (await post(server, "/auth/refresh", { refresh_token: second.refresh_token })).json()).data;

      await assertUnauthorized(await post(server, "/auth/refresh", { refresh_token: first.refresh_token }));
      assert.equal(server.stats.spentReuse, 1);

      for (const token of [first.access_token, second.access_token, third.access_token]) {
        await assertUnauthorized(await products(server, token));
      }
      await assertUnauthorized(await post(server, "/auth/refresh", { refresh_token: third.refresh_token }));
      assert.equal((await products(server, other.access_token)).status, 200);
      assert.equal((await post(server, "/auth/refresh", { refresh_token: other.refresh_token })).status, 200);
    });

    it("rejects unknown, expired and revoked refresh tokens, and access tokens, with 401", async () => {
      await assertUnauthorized(await post(server, "/auth/refresh", { refresh_token: "a.b.c" }));

      const pair = await login(server);
      await assertUnauthorized(await post(server, "/auth/refresh", { refresh_token: pair.access_token }));

      server.revokeAll();
      await assertUnauthorized(await post(server, "/auth/refresh", { refresh_token: pair.refresh_token }));

      server.config.refreshTtlMs = 30;
      const short = await login(server);
      await new Promise((r) => setTimeout(r, 60));
      await assertUnauthorized(await post(server, "/auth/refresh", { refresh_token: short.refresh_token }), "Refresh token expired");
      assert.equal(server.stats.spentReuse, 0);
    });

    it("validates the body", async () => {
      await assertValidation(await post(server, "/auth/refresh", {}));
      await assertValidation(await post(server, "/auth/refresh", { refresh_token: "" }));
      await assertValidation(await post(server, "/auth/refresh", { refresh_token: 42 }));
      await assertValidation(await post(server, "/auth/refresh", "{}", { "content-type": "text/plain" }));
      await assertError(await post(server, "/auth/refresh", "{"), 400, "SyntaxError", "SYNTAX_ERROR");
    });
  });

  describe("POST /auth/revoke", () => {
    it("revokes the family of the refresh token", async () => {
      const pair = await login(server);
      const other = await login(server);
      const res = await post(server, "/auth/revoke", { refresh_token: pair.refresh_token });
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { success: true, data: { revoked: true } });
      await assertUnauthorized(await products(server, pair.access_token));
      await assertUnauthorized(await post(server, "/auth/refresh", { refresh_token: pair.refresh_token }));
      assert.equal((await products(server, other.access_token)).status, 200);
      assert.equal(server.stats.revoke, 1);
    });

    it("also revokes the bearer's family", async () => {
      const a = await login(server);
      const b = await login(server);
      const res = await post(server, "/auth/revoke", { refresh_token: a.refresh_token }, bearer(b.access_token));
      assert.equal(res.status, 200);
      await assertUnauthorized(await products(server, a.access_token));
      await assertUnauthorized(await products(server, b.access_token));
    });

    it("succeeds for unknown and already revoked tokens", async () => {
      const pair = await login(server);
      for (const token of ["unknown", pair.refresh_token, pair.refresh_token]) {
        const res = await post(server, "/auth/revoke", { refresh_token: token }, bearer("garbage"));
        assert.equal(res.status, 200);
        assert.deepEqual(await res.json(), { success: true, data: { revoked: true } });
      }
    });

    it("validates the body", async () => {
      await assertValidation(await post(server, "/auth/revoke", {}));
      await assertValidation(await post(server, "/auth/revoke", { refresh_token: "" }));
      await assertValidation(await post(server, "/auth/revoke", "{}", { "content-type": "text/plain" }));
      await assertError(await post(server, "/auth/revoke", "nope"), 400, "SyntaxError", "SYNTAX_ERROR");
    });
  });

  describe("protected API", () => {
    it("GET /api/v1/products needs a valid bearer token", async () => {
      const pair = await login(server);
      const res = await products(server, pair.access_token);
      assert.equal(res.status, 200);
      const body = await res.json();
      assert.equal(body.success, true);
      assert.ok(body.data.length >= 3 && body.data.length <= 5);
      for (const p of body.data) {
        assert.equal(typeof p.id, "number");
        assert.equal(typeof p.name, "string");
      }
      assert.equal(server.stats.api, 1);
    });

    it("answers 401 with WWW-Authenticate for missing, malformed, unknown or refresh tokens", async () => {
      const pair = await login(server);
      for (const headers of [
        {},
        { authorization: "Basic ZGVtbzpkZW1v" },
        { authorization: "Bearer" },
        { authorization: "Bearer a.b.c" },
        bearer(pair.refresh_token),
      ]) {
        const res = await fetch(`${server.url}/api/v1/products`, { headers });
        assert.match(res.headers.get("www-authenticate"), /^Bearer/);
        await assertUnauthorized(res);
      }
    });

    it("rejects expired access tokens (TTL and expireAccessTokens)", async () => {
      server.config.accessTtlMs = 30;
      const short = await login(server);
      await new Promise((r) => setTimeout(r, 60));
      await assertUnauthorized(await products(server, short.access_token), "Access token expired");

      server.config.accessTtlMs = 3_600_000;
      const pair = await login(server);
      assert.equal((await products(server, pair.access_token)).status, 200);
      server.expireAccessTokens();
      await assertUnauthorized(await products(server, pair.access_token), "Access token expired");
      // Refresh tokens are unaffected: the client can recover.
      const res = await post(server, "/auth/refresh", { refresh_token: pair.refresh_token });
      const fresh = (await res.json()).data;
      assert.equal((await products(server, fresh.access_token)).status, 200);
    });

    it("rejects every token after revokeAll", async () => {
      const a = await login(server);
      const b = await login(server, { username: "alice", password: "alice-secret" });
      server.revokeAll();
      await assertUnauthorized(await products(server, a.access_token), "Access token revoked");
      await assertUnauthorized(await products(server, b.access_token));
      await assertUnauthorized(await post(server, "/auth/refresh", { refresh_token: b.refresh_token }));
      // New logins work.
      assert.equal((await products(server, (await login(server)).access_token)).status, 200);
    });

    it("ANY /api/v1/echo reflects the request but never the token", async () => {
      const pair = await login(server, { username: "alice", password: "alice-secret" });
      const res = await fetch(`${server.url}/api/v1/echo?a=1&b=two`, {
        method: "PUT",
        headers: { ...bearer(pair.access_token), "content-type": "text/plain" },
        body: "hello body",
      });
      assert.equal(res.status, 200);
      const text = await res.text();
      assert.ok(!text.includes(pair.access_token));
      assert.ok(!text.toLowerCase().includes("bearer"));
      assert.deepEqual(JSON.parse(text), {
        success: true,
        data: {
          method: "PUT",
          path: "/api/v1/echo",
          query: { a: "1", b: "two" },
          body: "hello body",
          contentType: "text/plain",
          clientId: 123457,
        },
      });
      for (const method of ["GET", "POST", "PATCH", "DELETE"]) {
        const r = await fetch(`${server.url}/api/v1/echo`, { method, headers: bearer(pair.access_token) });
        assert.equal(r.status, 200);
        const { data } = await r.json();
        assert.equal(data.method, method);
        assert.equal(data.contentType, null);
      }
      await assertUnauthorized(await fetch(`${server.url}/api/v1/echo`, { method: "POST", body: "x" }));
    });

    it("logs whether a request carried an Authorization header", async () => {
      await fetch(`${server.url}/api/v1/public`);
      await fetch(`${server.url}/api/v1/public`, { headers: bearer("x") });
      assert.deepEqual(server.log, [
        { method: "GET", path: "/api/v1/public", hasAuthorization: false, status: 200 },
        { method: "GET", path: "/api/v1/public", hasAuthorization: true, status: 200 },
      ]);
    });
  });

  describe("IP whitelist", () => {
    it("forbids every non-control request from an address not on the list", async () => {
      const pair = await login(server);
      server.config.whitelist = ["10.0.0.1"];
      const forbidden = (res) => assertError(res, 403, "ForbiddenError", "FORBIDDEN", "IP address not authorized");
      await forbidden(await post(server, "/auth/login", DEMO));
      await forbidden(await post(server, "/auth/refresh", { refresh_token: pair.refresh_token }));
      await forbidden(await post(server, "/auth/revoke", { refresh_token: pair.refresh_token }));
      await forbidden(await products(server, pair.access_token));
      await forbidden(await fetch(`${server.url}/api/v1/public`));
      await forbidden(await fetch(`${server.url}/unknown`));
      // Preflights and the control API still work.
      assert.equal((await fetch(`${server.url}/auth/login`, { method: "OPTIONS" })).status, 204);
      assert.equal((await control(server, "stats")).status, 200);
      assert.equal(server.stats.login, 1); // only the login before the whitelist reached the handler
      // The 403 did not touch the session.
      server.config.whitelist = [];
      assert.equal((await products(server, pair.access_token)).status, 200);
    });

    it("allows listed addresses, IPv4-mapped IPv6 entries included", async () => {
      for (const whitelist of [["127.0.0.1"], ["10.0.0.1", "::ffff:127.0.0.1"]]) {
        server.config.whitelist = whitelist;
        assert.equal((await post(server, "/auth/login", DEMO)).status, 200);
      }
    });
  });

  describe("Date skew", () => {
    it("sends a skewed Date and issues expiry times on the same skewed clock", async () => {
      const skew = 2 * 3_600_000;
      server.config.dateSkewMs = skew;
      const res = await post(server, "/auth/login", DEMO);
      const serverDate = Date.parse(res.headers.get("date"));
      assert.ok(Math.abs(serverDate - (Date.now() + skew)) < 5_000, res.headers.get("date"));
      assert.equal(res.headers.get("date"), new Date(serverDate).toUTCString());
      const data = (await res.json()).data;
      const ttl = Date.parse(data.access_expires_at) - serverDate;
      assert.ok(ttl > 3_590_000 && ttl < 3_610_000, `ttl on server clock ${ttl}`);
      // Error responses carry it too.
      const err = await fetch(`${server.url}/nope`);
      assert.ok(Math.abs(Date.parse(err.headers.get("date")) - (Date.now() + skew)) < 5_000);
    });
  });

  describe("fault injection", () => {
    it("answers with a status and a JSON body, then handles normally", async () => {
      server.fault({ path: "/auth/login" }, { status: 503, body: { error: { name: "X", code: "DOWN", message: "down" } } });
      const res = await post(server, "/auth/login", DEMO);
      assert.equal(res.status, 503);
      assert.equal(res.headers.get("access-control-allow-origin"), "*");
      assert.deepEqual(await res.json(), { error: { name: "X", code: "DOWN", message: "down" } });
      assert.equal((await post(server, "/auth/login", DEMO)).status, 200);
      assert.equal(server.stats.faults, 1);
      assert.equal(server.stats.login, 1);
      assert.deepEqual(server.log.map((e) => e.status), [503, 200]);
    });

    it("sends a raw string body, custom headers and an empty body", async () => {
      server.fault({ path: "/auth/login" }, {
        status: 502,
        body: "<html><body>Bad Gateway</body></html>",
        headers: { "content-type": "text/html" },
      });
      let res = await post(server, "/auth/login", DEMO);
      assert.equal(res.status, 502);
      assert.equal(res.headers.get("content-type"), "text/html");
      assert.equal(await res.text(), "<html><body>Bad Gateway</body></html>");

      server.fault({ path: "/auth/refresh" }, { status: 429, headers: { "retry-after": "2" } });
      res = await post(server, "/auth/refresh", { refresh_token: "x" });
      assert.equal(res.status, 429);
      assert.equal(res.headers.get("retry-after"), "2");
      assert.equal(await res.text(), "");
      assert.equal(server.stats.refresh, 0);
    });

    it("is consumed `times` times, Infinity is forever, and clearFaults removes it", async () => {
      const handle = server.fault({ path: "/api/v1/public" }, { status: 500 }, 2);
      assert.equal(handle.remaining, 2);
      const statuses = [];
      for (let i = 0; i < 3; i++) statuses.push((await fetch(`${server.url}/api/v1/public`)).status);
      assert.deepEqual(statuses, [500, 500, 200]);
      assert.equal(handle.remaining, 0);

      server.fault({ path: "/api/v1/public" }, { status: 500 }, Infinity);
      for (let i = 0; i < 5; i++) assert.equal((await fetch(`${server.url}/api/v1/public`)).status, 500);
      server.clearFaults();
      assert.equal((await fetch(`${server.url}/api/v1/public`)).status, 200);
      assert.equal(server.stats.faults, 7);
    });

    it("matches the exact path (query ignored) and the method when given", async () => {
      server.fault({ path: "/api/v1/public", method: "post" }, { status: 500 });
      server.fault({ path: "/api/v1" }, { status: 500 });
      assert.equal((await fetch(`${server.url}/api/v1/public?x=1`)).status, 200);
      assert.equal((await fetch(`${server.url}/api/v1/public?x=1`, { method: "POST" })).status, 500);
    });

    it("is not eaten by a CORS preflight unless it names OPTIONS", async () => {
      server.fault({ path: "/auth/login" }, { status: 500 });
      assert.equal((await fetch(`${server.url}/auth/login`, { method: "OPTIONS" })).status, 204);
      assert.equal((await post(server, "/auth/login", DEMO)).status, 500);
      server.fault({ path: "/auth/login", method: "OPTIONS" }, { status: 500 });
      assert.equal((await fetch(`${server.url}/auth/login`, { method: "OPTIONS" })).status, 500);
    });

    it("delays, alone (then normal handling) or combined with a status", async () => {
      server.fault({ path: "/auth/login" }, { delayMs: 150 });
      let t = performance.now();
      assert.equal((await post(server, "/auth/login", DEMO)).status, 200);
      assert.ok(performance.now() - t >= 140);

      server.fault({ path: "/auth/login" }, { delayMs: 100, status: 504 });
      t = performance.now();
      assert.equal((await post(server, "/auth/login", DEMO)).status, 504);
      assert.ok(performance.now() - t >= 90);
      assert.equal(server.stats.faults, 2);
    });

    it("drops the connection without a response", async () => {
      server.fault({ path: "/auth/login" }, { drop: true });
      await assert.rejects(post(server, "/auth/login", DEMO), TypeError);
      assert.equal(server.log.at(-1).status, 0);
      assert.equal(server.stats.login, 0);
      assert.equal((await post(server, "/auth/login", DEMO)).status, 200);
    });

    it("hangs until the client gives up", async () => {
      server.fault({ path: "/api/v1/public" }, { hang: true });
      await assert.rejects(
        fetch(`${server.url}/api/v1/public`, { signal: AbortSignal.timeout(150) }),
        (err) => err.name === "TimeoutError",
      );
      assert.equal((await fetch(`${server.url}/api/v1/public`)).status, 200);
    });

    it("redirects with a Location header (307 by default)", async () => {
      server.fault({ path: "/auth/login" }, { redirect: "http://elsewhere.invalid/steal" });
      let res = await fetch(`${server.url}/auth/login`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(DEMO),
        redirect: "manual",
      });
      assert.equal(res.status, 307);
      assert.equal(res.headers.get("location"), "http://elsewhere.invalid/steal");

      server.fault({ path: "/api/v1/public" }, { redirect: "/api/v1/public?moved=1", status: 302 });
      res = await fetch(`${server.url}/api/v1/public`, { redirect: "manual" });
      assert.equal(res.status, 302);
      assert.equal(res.headers.get("location"), "/api/v1/public?moved=1");
    });

    it("streams a huge body of exactly N bytes", async () => {
      server.fault({ path: "/auth/login" }, { hugeBody: 3_000_000 });
      const res = await post(server, "/auth/login", DEMO);
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type"), /^application\/json/);
      assert.equal(res.headers.get("content-length"), null); // chunked: a client must cap while reading
      const text = await res.text();
      assert.equal(Buffer.byteLength(text), 3_000_000);
      assert.equal(JSON.parse(text).success, true);

      server.fault({ path: "/auth/login" }, { hugeBody: 10 });
      assert.equal(Buffer.byteLength(await (await post(server, "/auth/login", DEMO)).text()), 10);
    });

    it("survives a client that stops reading a huge body", async () => {
      server.fault({ path: "/auth/login" }, { hugeBody: 200_000_000 });
      const res = await post(server, "/auth/login", DEMO);
      const reader = res.body.getReader();
      let read = 0;
      while (read < 1_000_000) read += (await reader.read()).value.length;
      await reader.cancel(); // what a size-capped client does
      assert.equal((await post(server, "/auth/login", DEMO)).status, 200);
    });

    it("rejects malformed faults", () => {
      assert.throws(() => server.fault({}, { status: 500 }), TypeError);
      assert.throws(() => server.fault({ path: "no-slash" }, { status: 500 }), TypeError);
      assert.throws(() => server.fault({ path: "/x" }, {}), TypeError);
      assert.throws(() => server.fault({ path: "/x" }, { drop: true, hang: true }), TypeError);
      assert.throws(() => server.fault({ path: "/x" }, { status: 1000 }), TypeError);
      assert.throws(() => server.fault({ path: "/x" }, { status: 500 }, 0), TypeError);
      assert.throws(() => server.fault({ path: "/x" }, { redirect: "/y", status: 200 }), TypeError);
    });
  });

  describe("stats, log and secrets", () => {
    it("counts requests, api calls and faults", async () => {
      const pair = await login(server);
      await post(server, "/auth/refresh", { refresh_token: pair.refresh_token });
      await post(server, "/auth/revoke", { refresh_token: "x" });
      await products(server, pair.access_token);
      await fetch(`${server.url}/api/v1/public`);
      await fetch(`${server.url}/nope`);
      server.fault({ path: "/nope" }, { status: 500 });
      await fetch(`${server.url}/nope`);
      await control(server, "stats"); // control traffic is not counted
      assert.deepEqual(server.stats, { login: 1, refresh: 1, revoke: 1, api: 2, spentReuse: 0, faults: 1, requests: 7 });
      assert.equal(server.log.length, 7);
      assert.deepEqual(Object.keys(server.log[0]), ["method", "path", "hasAuthorization", "status"]);
    });

    it("never keeps tokens or passwords where they could be printed", async () => {
      const pair = await login(server);
      await fetch(`${server.url}/api/v1/echo?token=${pair.access_token}`, { headers: bearer(pair.access_token) });
      const printed = [
        JSON.stringify(server.log),
        JSON.stringify(server.stats),
        JSON.stringify(server.config),
        inspect(server, { depth: 10 }),
        JSON.stringify((await control(server, "stats")).body),
        JSON.stringify((await control(server, "config", {})).body),
      ].join("\n");
      for (const secret of [pair.access_token, pair.refresh_token, "demo-password", "alice-secret"]) {
        assert.ok(!printed.includes(secret), "a secret was printable");
      }
      assert.equal(server.log.at(-1).path, "/api/v1/echo");
      // ...while the config still works for the server itself.
      assert.equal(server.config.users.demo, "demo-password");
    });

    it("reset clears tokens, stats and log in place, and faults", async () => {
      const pair = await login(server);
      const { stats, log } = server;
      server.fault({ path: "/api/v1/public" }, { status: 500 }, Infinity);
      server.reset();
      assert.equal(server.stats, stats);
      assert.equal(server.log, log);
      assert.equal(log.length, 0);
      assert.ok(Object.values(stats).every((v) => v === 0));
      assert.equal((await fetch(`${server.url}/api/v1/public`)).status, 200);
      await assertUnauthorized(await products(server, pair.access_token));
      await assertUnauthorized(await post(server, "/auth/refresh", { refresh_token: pair.refresh_token }));
      // Client ids stay stable across resets.
      assert.equal((await login(server)).client_id, pair.client_id);
    });

    it("reset keeps the config unless asked to restore it", async () => {
      server.config.accessTtlMs = 1000;
      server.reset();
      assert.equal(server.config.accessTtlMs, 1000);
      server.reset({ config: true });
      assert.equal(server.config.accessTtlMs, 3_600_000);
    });
  });

  describe("HTTP control API", () => {
    it("merges config and returns it without passwords", async () => {
      const { status, body } = await control(server, "config", {
        accessTtlMs: 5000,
        whitelist: ["10.1.1.1"],
        users: { bob: "bob-pw" },
        dateSkewMs: 1000,
      });
      assert.equal(status, 200);
      assert.deepEqual(body, {
        success: true,
        data: { accessTtlMs: 5000, refreshTtlMs: 7 * 86_400_000, whitelist: ["10.1.1.1"], users: ["bob"], dateSkewMs: 1000 },
      });
      assert.equal(server.config.users.bob, "bob-pw");
      assert.equal((await post(server, "/auth/login", { username: "bob", password: "bob-pw" })).status, 403);
      await control(server, "config", { whitelist: [] });
      const bob = await login(server, { username: "bob", password: "bob-pw" });
      assert.equal(bob.client_id, 123458); // after demo and alice
    });

    it("rejects invalid config with 400", async () => {
      for (const patch of [{ accessTtlMs: "1" }, { whitelist: "127.0.0.1" }, { users: { a: 1 } }, { nope: 1 }]) {
        const { status, body } = await control(server, "config", patch);
        assert.equal(status, 400);
        assert.equal(body.error.code, "VALIDATION_FAILURE");
      }
      assert.equal(server.config.accessTtlMs, 3_600_000);
    });

    it("adds faults (times -1 is forever), resets, expires and revokes", async () => {
      let r = await control(server, "fault", { match: { path: "/api/v1/public" }, action: { status: 418 }, times: -1 });
      assert.equal(r.status, 200);
      for (let i = 0; i < 3; i++) assert.equal((await fetch(`${server.url}/api/v1/public`)).status, 418);
      r = await control(server, "fault", { match: { path: "/x" }, action: { explode: true } });
      assert.equal(r.status, 400);

      r = await control(server, "stats");
      assert.equal(r.status, 200);
      assert.equal(r.body.data.stats.faults, 3);
      assert.equal(r.body.data.log.length, 3);
      assert.deepEqual(r.body.data.log[0], { method: "GET", path: "/api/v1/public", hasAuthorization: false, status: 418 });

      assert.equal((await control(server, "reset", {})).status, 200);
      assert.equal((await fetch(`${server.url}/api/v1/public`)).status, 200);
      assert.equal(server.stats.requests, 1);

      const pair = await login(server);
      assert.equal((await control(server, "expire-access", {})).status, 200);
      await assertUnauthorized(await products(server, pair.access_token), "Access token expired");
      assert.equal((await post(server, "/auth/refresh", { refresh_token: pair.refresh_token })).status, 200);

      const pair2 = await login(server);
      assert.equal((await control(server, "revoke-all", {})).status, 200);
      await assertUnauthorized(await post(server, "/auth/refresh", { refresh_token: pair2.refresh_token }));
    });

    it("reset with {config: true} restores the startup config", async () => {
      await control(server, "config", { whitelist: ["10.9.9.9"] });
      assert.equal((await control(server, "reset", { config: true })).status, 200);
      assert.deepEqual(server.config.whitelist, []);
      assert.equal((await fetch(`${server.url}/api/v1/public`)).status, 200);
    });

    it("is never faulted, whitelisted, counted or logged", async () => {
      server.fault({ path: "/__control/stats" }, { drop: true });
      server.config.whitelist = ["10.0.0.1"];
      const r = await control(server, "stats");
      assert.equal(r.status, 200);
      assert.deepEqual(r.body.data.stats, { login: 0, refresh: 0, revoke: 0, api: 0, spentReuse: 0, faults: 0, requests: 0 });
      assert.deepEqual(server.log, []);
    });

    it("answers unknown control routes and wrong methods with error envelopes", async () => {
      await assertError(await fetch(`${server.url}/__control/nope`, { method: "POST" }), 404, "NotFoundError", "NOT_FOUND");
      await assertError(await fetch(`${server.url}/__control/reset`), 405, "MethodNotAllowedError", "METHOD_NOT_ALLOWED");
      await assertError(
        await fetch(`${server.url}/__control/config`, { method: "POST", body: "{" }),
        400,
        "SyntaxError",
        "SYNTAX_ERROR",
      );
    });
  });
});

describe("lifecycle", () => {
  it("close() ends keep-alive and hung connections promptly and is idempotent", async () => {
    const server = await startServer();
    assert.equal((await fetch(`${server.url}/api/v1/public`)).status, 200); // leaves a keep-alive socket
    server.fault({ path: "/api/v1/public" }, { hang: true });
    server.fault({ path: "/auth/login" }, { delayMs: 60_000 });
    const hung = fetch(`${server.url}/api/v1/public`).then(
      () => "answered",
      () => "failed",
    );
    const delayed = post(server, "/auth/login", DEMO).then(
      () => "answered",
      () => "failed",
    );
    await new Promise((r) => setTimeout(r, 50));
    const t = performance.now();
    await Promise.all([server.close(), server.close()]);
    assert.ok(performance.now() - t < 1_000);
    assert.equal(await hung, "failed");
    assert.equal(await delayed, "failed");
    await assert.rejects(fetch(`${server.url}/api/v1/public`));
  });

  it("accepts startup options", async () => {
    const server = await startServer({
      accessTtlMs: 10_000,
      users: { zed: "zed-pw" },
      clientIdBase: 1000,
      whitelist: ["::ffff:127.0.0.1"],
    });
    try {
      const before = Date.now();
      const data = await login(server, { username: "zed", password: "zed-pw" });
      assert.equal(data.client_id, 1000);
      const ttl = Date.parse(data.access_expires_at) - before;
      assert.ok(ttl >= 10_000 && ttl < 11_000);
      assert.deepEqual(server.config.whitelist, ["127.0.0.1"]);
    } finally {
      await server.close();
    }
  });

  it("rejects invalid startup options and a busy port", async () => {
    await assert.rejects(startServer({ whitelist: "x" }), TypeError);
    await assert.rejects(startServer({ users: { a: "" } }), TypeError);
    const server = await startServer();
    try {
      await assert.rejects(startServer({ port: server.port }), { code: "EADDRINUSE" });
    } finally {
      await server.close();
    }
  });
});

describe("CLI", () => {
  /** Starts the CLI; resolves with the child, its first stdout line and a way to read the rest. */
  async function runCli(args) {
    const child = spawn(process.execPath, [SERVER_FILE, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
    const exited = once(child, "exit");
    while (!stdout.includes("\n")) {
      const ended = await Promise.race([once(child.stdout, "data").then(() => false), exited.then(() => true)]);
      if (ended) break;
    }
    return { child, exited, out: () => stdout, err: () => stderr };
  }

  for (const signal of ["SIGTERM", "SIGINT"]) {
    it(`prints exactly one URL line, serves, and exits 0 on ${signal}`, async () => {
      const { child, exited, out, err } = await runCli([
        "--port",
        "0",
        "--access-ttl",
        "60",
        "--refresh-ttl",
        "120",
        "--user",
        "alice:pa:ss",
        "--user",
        "bob:bob-pw",
      ]);
      try {
        const match = /^REFERENCE_SERVER_URL=(http:\/\/127\.0\.0\.1:\d+)\n$/.exec(out());
        assert.ok(match, `unexpected stdout ${JSON.stringify(out())}`);
        const server = { url: match[1] };
        const before = Date.now();
        const data = await login(server, { username: "alice", password: "pa:ss" });
        assert.equal(data.client_id, 123456);
        assert.equal((await login(server, { username: "bob", password: "bob-pw" })).client_id, 123457);
        const ttl = Date.parse(data.access_expires_at) - before;
        assert.ok(ttl >= 60_000 && ttl < 61_000);
        const refreshTtl = Date.parse(data.refresh_expires_at) - before;
        assert.ok(refreshTtl >= 120_000 && refreshTtl < 121_000);
        await assertUnauthorized(await post(server, "/auth/login", DEMO)); // --user replaces demo
      } finally {
        child.kill(signal);
      }
      const [code, sig] = await exited;
      assert.equal(code, 0);
      assert.equal(sig, null);
      assert.equal(out().split("\n").length, 2); // one line plus the trailing newline
      assert.equal(err(), "");
    });
  }

  it("exits 2 with usage on bad arguments", async () => {
    const { exited, out, err } = await runCli(["--port", "nope"]);
    const [code] = await exited;
    assert.equal(code, 2);
    assert.equal(out(), "");
    assert.match(err(), /usage/);
  });
});
