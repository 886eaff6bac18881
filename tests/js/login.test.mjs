// login, SessionInfo, json(), fetch(), URL resolution (host prefix, URL and Request inputs),
// allowedOrigins and redirects of API requests.

import { describe, it, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import {
  AuthSession,
  AuthError,
  startServer,
  DEMO,
  checkInfo,
  recordEvents,
  rejectsWith,
  fakeTokenEnvelope,
  jsonResponse,
  clearCounters,
} from "./helpers.mjs";

const PRODUCTS = [
  { id: 1, name: "Starter plan" },
  { id: 2, name: "Team plan" },
  { id: 3, name: "Enterprise plan" },
  { id: 4, name: "Support add-on" },
];

let server;
let other; // a second origin

before(async () => {
  server = await startServer({ users: { demo: "demo-password", alice: "alice-password" } });
  other = await startServer();
});
after(async () => {
  await server?.close();
  await other?.close();
});
beforeEach(() => clearCounters(server, other));

const newSession = (extra = {}) => new AuthSession({ host: server.url, autoRefresh: false, ...extra });

describe("exports", () => {
  it("exports AuthSession and AuthError classes; AuthError extends Error", () => {
    assert.equal(typeof AuthSession, "function");
    assert.equal(typeof AuthError, "function");
    const e = new AuthError("m", "SomeName", "SOME_CODE", 418, true);
    assert.ok(e instanceof Error);
    assert.equal(e.message, "m");
    assert.equal(e.name, "SomeName");
    assert.equal(e.code, "SOME_CODE");
    assert.equal(e.status, 418);
    assert.equal(e.retryable, true);
  });
});

describe("login", () => {
  it("logs in with arguments and returns the SessionInfo", async () => {
    const session = newSession();
    checkInfo(session.info, "anonymous");
    const before = Date.now();
    const info = await session.login(DEMO.username, DEMO.password);
    checkInfo(info, "active");
    assert.equal(info.clientId, 123456);
    // Default server TTLs: access 1 h, refresh 7 days.
    assert.ok(Math.abs(info.accessExpiresAt.getTime() - (before + 3_600_000)) < 5_000);
    assert.ok(Math.abs(info.refreshExpiresAt.getTime() - (before + 7 * 86_400_000)) < 5_000);
    checkInfo(session.info, "active");
    assert.deepEqual(session.info, info);
    assert.deepEqual(JSON.parse(JSON.stringify(session)), JSON.parse(JSON.stringify(info)));
    assert.equal(server.stats.login, 1);
    assert.deepEqual(
      server.log.map((e) => [e.method, e.path, e.hasAuthorization, e.status]),
      [["POST", "/auth/login", false, 200]],
    );
    session.dispose();
  });

  it("logs in with options.credentials when called without arguments", async () => {
    const session = newSession({ credentials: { username: "alice", password: "alice-password" } });
    const info = await session.login();
    checkInfo(info, "active");
    assert.equal(info.clientId, 123457, "alice is the second user");
    assert.equal(server.stats.login, 1);
    session.dispose();
  });

  it("arguments take precedence over options.credentials", async () => {
    const session = newSession({ credentials: { username: "alice", password: "alice-password" } });
    const info = await session.login(DEMO.username, DEMO.password);
    assert.equal(info.clientId, 123456);
    session.dispose();
  });

  it("emits a tokens event with the new SessionInfo; on() returns an unsubscribe function", async () => {
    const session = newSession();
    const events = recordEvents(session);
    const seen = [];
    const off = session.on("tokens", (info) => seen.push(info));
    assert.equal(typeof off, "function");
    await session.login(DEMO.username, DEMO.password);
    assert.equal(events.tokens.length, 1);
    checkInfo(events.tokens[0], "active");
    assert.equal(seen.length, 1);
    off();
    off(); // harmless twice
    await session.login(DEMO.username, DEMO.password);
    assert.equal(events.tokens.length, 2);
    assert.equal(seen.length, 1, "an unsubscribed listener is not called");
    assert.equal(events.error.length, 0);
    session.dispose();
  });

  it("a second login replaces the session (new tokens, still active)", async () => {
    const session = newSession();
    const first = await session.login(DEMO.username, DEMO.password);
    const second = await session.login("alice", "alice-password");
    assert.equal(first.clientId, 123456);
    assert.equal(second.clientId, 123457);
    assert.equal(session.info.clientId, 123457);
    assert.deepEqual(await session.json("/api/v1/echo"), {
      method: "GET",
      path: "/api/v1/echo",
      query: {},
      body: "",
      contentType: null,
      clientId: 123457,
    });
    session.dispose();
  });

  it("info never contains a token (only the four public fields)", async () => {
    const session = newSession();
    await session.login(DEMO.username, DEMO.password);
    const token = await session.getAccessToken();
    assert.match(token, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    const text = JSON.stringify(session.info) + JSON.stringify(session);
    assert.ok(!text.includes(token));
    checkInfo(session.info, "active");
    session.dispose();
  });
});

describe("json() and fetch()", () => {
  let session;
  before(async () => {
    session = newSession();
    await session.login(DEMO.username, DEMO.password);
  });
  after(() => session.dispose());

  it("json() unwraps the success envelope", async () => {
    assert.deepEqual(await session.json("/api/v1/products"), PRODUCTS);
    assert.deepEqual(await session.json("/api/v1/public"), { public: true });
    assert.deepEqual(
      server.log.map((e) => [e.method, e.path, e.hasAuthorization, e.status]),
      [
        ["GET", "/api/v1/products", true, 200],
        ["GET", "/api/v1/public", true, 200],
      ],
    );
  });

  it("fetch() returns a real Response with the server's status and body, and sends the bearer", async () => {
    const res = await session.fetch("/api/v1/products");
    assert.ok(res instanceof Response);
    assert.equal(res.status, 200);
    assert.equal(res.ok, true);
    assert.match(res.headers.get("content-type"), /application\/json/);
    assert.deepEqual(await res.json(), { success: true, data: PRODUCTS });
    assert.equal(server.log.length, 1);
    assert.equal(server.log[0].hasAuthorization, true);
  });

  it("init.json sends a JSON body with content-type application/json, on fetch() and json()", async () => {
    const order = { sku: "team", seats: 5, note: "naïve \"quoted\"" };
    const echoed = await session.json("/api/v1/echo", { method: "POST", json: order });
    assert.equal(echoed.method, "POST");
    assert.equal(echoed.contentType, "application/json");
    assert.deepEqual(JSON.parse(echoed.body), order);
    // A content-type the caller set is kept; the method is never changed.
    const res = await session.fetch("/api/v1/echo", {
      method: "PUT",
      json: [1, 2],
      headers: { "content-type": "application/merge-patch+json" },
    });
    const { data } = await res.json();
    assert.deepEqual([data.method, data.contentType, data.body], ["PUT", "application/merge-patch+json", "[1,2]"]);
    // A Request input takes the JSON body too.
    const viaRequest = await session.json(new Request(`${server.url}/api/v1/echo`, { method: "POST" }), { json: { r: 1 } });
    assert.deepEqual([viaRequest.method, viaRequest.contentType, viaRequest.body], ["POST", "application/json", '{"r":1}']);
    // GET/HEAD with json, or json with a body: CONFIG_ERROR, nothing sent.
    const before = server.log.length;
    await rejectsWith(session.json("/api/v1/echo", { json: { a: 1 } }), { code: "CONFIG_ERROR" });
    await rejectsWith(session.fetch("/api/v1/echo", { method: "HEAD", json: 1 }), { code: "CONFIG_ERROR" });
    await rejectsWith(session.fetch("/api/v1/echo", { method: "POST", json: 1, body: "x" }), { code: "CONFIG_ERROR" });
    assert.equal(server.log.length, before, "nothing was sent");
  });

  it("fetch() returns non-2xx statuses instead of throwing", async () => {
    const res = await session.fetch("/api/v1/nothing-here");
    assert.equal(res.status, 404);
    const body = await res.json();
    assert.equal(body.error.code, "NOT_FOUND");
    server.fault({ path: "/api/v1/products" }, { status: 418, body: "teapot" });
    const teapot = await session.fetch("/api/v1/products");
    assert.equal(teapot.status, 418);
    assert.equal(await teapot.text(), "teapot");
  });

  it("fetch() passes method, headers and body through (echo)", async () => {
    const res = await session.fetch("/api/v1/echo?x=1&y=two", {
      method: "PUT",
      headers: { "content-type": "text/plain", "x-custom": "1" },
      body: "payload-ü",
    });
    assert.equal(res.status, 200);
    const { data } = await res.json();
    assert.deepEqual(data, {
      method: "PUT",
      path: "/api/v1/echo",
      query: { x: "1", y: "two" },
      body: "payload-ü",
      contentType: "text/plain",
      clientId: 123456,
    });
  });

  it("json() sends a JSON body with init and returns the data", async () => {
    const data = await session.json("/api/v1/echo", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ a: 1 }),
    });
    assert.equal(data.method, "POST");
    assert.equal(data.body, '{"a":1}');
    assert.equal(data.contentType, "application/json");
  });

  it(
    "accepts a URL input",
    async () => {
      const data = await session.json(new URL("/api/v1/echo?via=url", server.url));
      assert.deepEqual(data.query, { via: "url" });
      const res = await session.fetch(new URL("/api/v1/products", server.url));
      assert.equal(res.status, 200);
      await res.arrayBuffer();
      assert.ok(server.log.every((e) => e.hasAuthorization));
      // A URL of another origin is refused like a string would be (a rejection, not a throw).
      const pending = session.fetch(new URL("https://example.com/x"));
      assert.ok(pending instanceof Promise);
      await rejectsWith(pending, { code: "ORIGIN_NOT_ALLOWED" });
    },
  );

  it("accepts a Request input (method, headers and body kept)", async () => {
    const request = new Request(`${server.url}/api/v1/echo?via=request`, {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: "from a Request",
    });
    const data = await session.json(request);
    assert.deepEqual(data, {
      method: "POST",
      path: "/api/v1/echo",
      query: { via: "request" },
      body: "from a Request",
      contentType: "text/plain",
      clientId: 123456,
    });
    const res = await session.fetch(new Request(`${server.url}/api/v1/products`));
    assert.equal(res.status, 200);
    assert.deepEqual((await res.json()).data, PRODUCTS);
    assert.ok(server.log.every((e) => e.hasAuthorization));
  });

  it("an absolute URL string on the host's origin works", async () => {
    assert.deepEqual(await session.json(`${server.url}/api/v1/products`), PRODUCTS);
  });

  it("json() on a 204-like empty 200 resolves undefined", async () => {
    server.fault({ path: "/api/v1/products" }, { status: 200 });
    assert.equal(await session.json("/api/v1/products"), undefined);
  });

  it("the caller's Authorization header is replaced by the session's bearer", async () => {
    const data = await session.json("/api/v1/products", { headers: { authorization: "Bearer not-the-token" } });
    assert.deepEqual(data, PRODUCTS);
  });
});

describe("host and paths", () => {
  it("a host with a trailing slash works against the real server", async () => {
    const session = new AuthSession({ host: `${server.url}/`, autoRefresh: false });
    await session.login(DEMO.username, DEMO.password);
    assert.deepEqual(await session.json("/api/v1/products"), PRODUCTS);
    assert.deepEqual(
      server.log.map((e) => e.path),
      ["/auth/login", "/api/v1/products"],
    );
    session.dispose();
  });

  /** A fake API at https://api.test/v2 that records every URL it is asked for. */
  function fakeApi() {
    const urls = [];
    const fetchFn = async (input, init) => {
      const request = new Request(input, init);
      urls.push({ url: request.url, method: request.method, authorization: request.headers.get("authorization") });
      const path = new URL(request.url).pathname;
      if (/\/(login|refresh|token|session\/new)$/.test(path)) return jsonResponse(fakeTokenEnvelope());
      if (/\/revoke$/.test(path)) return jsonResponse({ success: true, data: { revoked: true } });
      return jsonResponse({ success: true, data: { path } });
    };
    return { urls, fetch: fetchFn };
  }

  it("auth paths and relative inputs are appended to a host's path prefix", async () => {
    const api = fakeApi();
    const session = new AuthSession({ host: "https://api.test/v2", fetch: api.fetch, autoRefresh: false });
    await session.login("u", "p");
    assert.deepEqual(await session.json("/api/v1/products"), { path: "/v2/api/v1/products" });
    await session.refresh();
    const res = await session.fetch("/things?q=1");
    assert.equal(res.status, 200);
    await session.revoke();
    assert.deepEqual(
      api.urls.map((u) => [u.method, u.url]),
      [
        ["POST", "https://api.test/v2/auth/login"],
        ["GET", "https://api.test/v2/api/v1/products"],
        ["POST", "https://api.test/v2/auth/refresh"],
        ["GET", "https://api.test/v2/things?q=1"],
        ["POST", "https://api.test/v2/auth/revoke"],
      ],
    );
    assert.equal(api.urls[0].authorization, null, "login carries no bearer");
    assert.match(api.urls[1].authorization, /^Bearer \S+$/);
    assert.match(api.urls[3].authorization, /^Bearer \S+$/);
    assert.notEqual(api.urls[1].authorization, api.urls[3].authorization, "the refresh rotated the token");
  });

  it("a prefix with a trailing slash gives the same URLs", async () => {
    const api = fakeApi();
    const session = new AuthSession({ host: "https://api.test/v2/", fetch: api.fetch, autoRefresh: false });
    await session.login("u", "p");
    await session.json("/api/v1/products");
    assert.deepEqual(
      api.urls.map((u) => u.url),
      ["https://api.test/v2/auth/login", "https://api.test/v2/api/v1/products"],
    );
    session.dispose();
  });

  it("custom paths are appended to the prefix", async () => {
    const api = fakeApi();
    const session = new AuthSession({
      host: "https://api.test/v2",
      fetch: api.fetch,
      autoRefresh: false,
      paths: { login: "/session/new", refresh: "/session/token", revoke: "/session/revoke" },
    });
    await session.login("u", "p");
    await session.refresh();
    await session.revoke();
    assert.deepEqual(
      api.urls.map((u) => u.url),
      ["https://api.test/v2/session/new", "https://api.test/v2/session/token", "https://api.test/v2/session/revoke"],
    );
  });

  it("an object with a fetch method (a service binding) is called with itself as this", async () => {
    const api = fakeApi();
    const binding = {
      calls: 0,
      fetch(input, init) {
        assert.equal(this, binding);
        this.calls++;
        return api.fetch(input, init);
      },
    };
    const session = new AuthSession({ host: "https://api.test", fetch: binding, autoRefresh: false });
    await session.login("u", "p");
    assert.deepEqual(await session.json("/x"), { path: "/x" });
    assert.equal(binding.calls, 2);
    session.dispose();
  });
});

describe("origins and redirects of API requests", () => {
  let session;
  before(async () => {
    session = newSession({ allowedOrigins: [other.url] });
    await session.login(DEMO.username, DEMO.password);
  });
  after(() => session.dispose());

  it("an allowed extra origin receives the bearer", async () => {
    assert.deepEqual(await session.json(`${other.url}/api/v1/public`), { public: true });
    assert.equal(other.log.length, 1);
    assert.equal(other.log[0].hasAuthorization, true);
  });

  it("a request to another origin is refused before anything is sent", async () => {
    const third = await startServer();
    try {
      await rejectsWith(session.fetch(`${third.url}/api/v1/public`), { code: "ORIGIN_NOT_ALLOWED" });
      await rejectsWith(session.json(`${third.url}/api/v1/public`), { code: "ORIGIN_NOT_ALLOWED" });
      await rejectsWith(session.fetch("https://example.com/x"), { code: "ORIGIN_NOT_ALLOWED" });
      await rejectsWith(session.fetch(new Request(`${third.url}/api/v1/public`)), { code: "ORIGIN_NOT_ALLOWED" });
      // Same host, another port, is another origin; so is another scheme.
      const port = new URL(server.url).port;
      await rejectsWith(session.fetch(`http://localhost:${port}/api/v1/public`), { code: "ORIGIN_NOT_ALLOWED" });
      assert.equal(third.stats.requests, 0);
      assert.equal(server.stats.requests, 0);
    } finally {
      await third.close();
    }
  });

  it("a same-origin redirect is safe (followed with the bearer or handed back)", async () => {
    server.fault({ path: "/api/v1/old" }, { redirect: `${server.url}/api/v1/products`, status: 307 });
    const res = await session.fetch("/api/v1/old");
    if (res.status === 200) {
      assert.deepEqual((await res.json()).data, PRODUCTS);
      assert.deepEqual(
        server.log.map((e) => [e.path, e.hasAuthorization]),
        [
          ["/api/v1/old", true],
          ["/api/v1/products", true],
        ],
      );
    } else {
      assert.equal(res.status, 307);
    }
  });

  it("a redirect to a foreign origin never carries the token there", async () => {
    const third = await startServer();
    try {
      server.fault({ path: "/api/v1/products" }, { redirect: `${third.url}/api/v1/public`, status: 302 });
      const res = await session.fetch("/api/v1/products");
      await res.arrayBuffer().catch(() => {});
      assert.ok(
        third.log.every((e) => !e.hasAuthorization),
        "the foreign origin never receives an Authorization header",
      );
      server.fault({ path: "/api/v1/products" }, { redirect: `${third.url}/api/v1/public`, status: 307 });
      await session.json("/api/v1/products").catch(() => {});
      assert.ok(third.log.every((e) => !e.hasAuthorization));
    } finally {
      await third.close();
    }
  });
});
