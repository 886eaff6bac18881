// Retries: which calls are retried on what, how often, and what a caller finally sees.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { AuthSession, DEMO, clearCounters, rejectsWith, useServer } from "./helpers.mjs";

const server = useServer();

const hits = (path, method) => server.log.filter((e) => e.path === path && (!method || e.method === method)).length;

async function loggedIn(extra = {}) {
  const session = new AuthSession({ host: server.url, autoRefresh: false, ...extra });
  await session.login(DEMO.username, DEMO.password);
  clearCounters(server);
  return session;
}

describe("fetch() and json() retries", () => {
  it("a GET is retried on a 503 and succeeds", async () => {
    const session = await loggedIn({ retries: 2 });
    server.fault({ path: "/api/v1/products" }, { status: 503, body: "busy" }, 1);
    assert.equal((await session.json("/api/v1/products")).length, 4);
    assert.deepEqual(
      server.log.map((e) => [e.method, e.path, e.status]),
      [
        ["GET", "/api/v1/products", 503],
        ["GET", "/api/v1/products", 200],
      ],
    );
    session.dispose();
  });

  it("a GET is retried up to `retries` times, then the last 503 Response is returned", async () => {
    const session = await loggedIn({ retries: 2 });
    server.fault({ path: "/api/v1/products" }, { status: 503, body: "still busy" }, 5);
    const res = await session.fetch("/api/v1/products");
    assert.equal(res.status, 503);
    assert.equal(await res.text(), "still busy");
    assert.equal(hits("/api/v1/products"), 3, "one attempt plus two retries");
    session.dispose();
  });

  it("502, 504 and 429 are retried for GET; 500 and other 4xx are not", async () => {
    const session = await loggedIn({ retries: 1 });
    for (const status of [502, 504]) {
      clearCounters(server);
      server.fault({ path: "/api/v1/products" }, { status, body: "x" });
      assert.equal((await session.fetch("/api/v1/products")).status, 200, `after ${status}`);
      assert.equal(hits("/api/v1/products"), 2, `${status} retried`);
    }
    clearCounters(server);
    server.fault({ path: "/api/v1/products" }, { status: 429, headers: { "retry-after": "0" } });
    assert.equal((await session.fetch("/api/v1/products")).status, 200);
    assert.equal(hits("/api/v1/products"), 2, "429 retried");
    for (const status of [500, 400, 403, 404]) {
      clearCounters(server);
      server.fault({ path: "/api/v1/products" }, { status, body: "x" });
      const res = await session.fetch("/api/v1/products");
      assert.equal(res.status, status);
      await res.arrayBuffer();
      assert.equal(hits("/api/v1/products"), 1, `${status} not retried`);
    }
    session.dispose();
  });

  it("a POST answered 503 is sent once and the 503 Response returned", async () => {
    const session = await loggedIn({ retries: 2 });
    server.fault({ path: "/api/v1/echo", method: "POST" }, { status: 503, body: "busy" }, 1);
    const res = await session.fetch("/api/v1/echo", { method: "POST", body: "once" });
    assert.equal(res.status, 503);
    assert.equal(await res.text(), "busy");
    assert.equal(hits("/api/v1/echo", "POST"), 1);
    session.dispose();
  });

  it("PUT, PATCH and DELETE are not retried either; json() reports the 503", async () => {
    const session = await loggedIn({ retries: 2 });
    for (const method of ["PUT", "PATCH", "DELETE"]) {
      clearCounters(server);
      server.fault({ path: "/api/v1/echo", method }, { status: 503, body: "busy" }, 1);
      await rejectsWith(session.json("/api/v1/echo", { method, body: method === "DELETE" ? undefined : "x" }), {
        code: "SERVER_ERROR",
        status: 503,
      });
      assert.equal(hits("/api/v1/echo", method), 1, method);
    }
    session.dispose();
  });

  it("a POST whose connection drops is not retried (NETWORK_ERROR)", async () => {
    const session = await loggedIn({ retries: 2 });
    server.fault({ path: "/api/v1/echo", method: "POST" }, { drop: true }, 1);
    await rejectsWith(session.fetch("/api/v1/echo", { method: "POST", body: "x" }), { code: "NETWORK_ERROR" });
    assert.equal(hits("/api/v1/echo"), 1);
    session.dispose();
  });

  it("a GET whose connection drops is retried", async () => {
    const session = await loggedIn({ retries: 2 });
    server.fault({ path: "/api/v1/products" }, { drop: true }, 1);
    assert.equal((await session.json("/api/v1/products")).length, 4);
    assert.equal(hits("/api/v1/products"), 2);
    session.dispose();
  });

  it("retries: 0 means one attempt", async () => {
    const session = await loggedIn({ retries: 0 });
    server.fault({ path: "/api/v1/products" }, { status: 503, body: "busy" }, 1);
    assert.equal((await session.fetch("/api/v1/products")).status, 503);
    assert.equal(hits("/api/v1/products"), 1);
    session.dispose();
  });
});

describe("auth call retries", () => {
  it("login is retried on a 503, a dropped connection and a 429 with Retry-After", async () => {
    const session = new AuthSession({ host: server.url, autoRefresh: false, retries: 3 });
    server.fault({ path: "/auth/login" }, { status: 503, body: "busy" });
    server.fault({ path: "/auth/login" }, { drop: true });
    server.fault({ path: "/auth/login" }, { status: 429, headers: { "retry-after": "0" } });
    const info = await session.login(DEMO.username, DEMO.password);
    assert.equal(info.state, "active");
    assert.equal(hits("/auth/login"), 4);
    assert.equal(server.stats.login, 1, "one request reached the handler");
    session.dispose();
  });

  it("login retries stop at `retries` (SERVER_ERROR, state unchanged)", async () => {
    const session = new AuthSession({ host: server.url, autoRefresh: false, retries: 1 });
    server.fault({ path: "/auth/login" }, { status: 500, body: "<h1>oops</h1>" }, 5);
    await rejectsWith(session.login(DEMO.username, DEMO.password), { code: "SERVER_ERROR", status: 500 });
    assert.equal(hits("/auth/login"), 2);
    assert.equal(session.info.state, "anonymous");
    session.dispose();
  });

  it("a refresh is retried on a 502 and the refresh token is sent again only after a failure", async () => {
    const session = await loggedIn({ retries: 2 });
    server.fault({ path: "/auth/refresh" }, { status: 502, body: "bad gateway" });
    const info = await session.refresh();
    assert.equal(info.state, "active");
    assert.equal(hits("/auth/refresh"), 2);
    assert.equal(server.stats.spentReuse, 0);
    session.dispose();
  });

  it("a timed-out refresh attempt is retried (timeoutMs per attempt)", async () => {
    const session = await loggedIn({ retries: 1, timeoutMs: 500 });
    server.fault({ path: "/auth/refresh" }, { hang: true });
    const started = Date.now();
    const info = await session.refresh();
    assert.equal(info.state, "active");
    assert.ok(Date.now() - started >= 480);
    assert.equal(hits("/auth/refresh"), 2);
    session.dispose();
  });

  it("a Retry-After within the cap is honoured", async () => {
    const session = new AuthSession({ host: server.url, autoRefresh: false, retries: 1 });
    server.fault({ path: "/auth/login" }, { status: 503, headers: { "retry-after": "1" } });
    const started = Date.now();
    await session.login(DEMO.username, DEMO.password);
    const took = Date.now() - started;
    assert.ok(took >= 900, `waited ${took} ms for Retry-After: 1`);
    assert.ok(took < 6000, `waited ${took} ms`);
    assert.equal(hits("/auth/login"), 2);
    session.dispose();
  });
});
