// The bench's contract-equivalent hand-written client (contenders/contract.mjs) against the
// reference server: it must really do what it claims, or the comparison means nothing.
//
//   node --test bench/contract.test.mjs
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer } from "../tests/server/reference-server.mjs";
import { ContractSession, ContractError } from "./contenders/contract.mjs";

const USER = { username: "demo", password: "demo-password" };
let server;
before(async () => {
  server = await startServer();
});
after(() => server.close());

const session = (opts = {}) => new ContractSession({ host: server.url, credentials: USER, autoRefresh: false, ...opts });

test("login, fetch and json with a valid token", async () => {
  server.reset();
  const s = session();
  await s.login();
  const res = await s.fetch("/api/v1/products");
  assert.equal(res.status, 200);
  assert.equal((await res.json()).success, true);
  const data = await s.json("/api/v1/products");
  assert.ok(Array.isArray(data) && data.length > 0);
  assert.equal(server.stats.refresh, 0);
  s.dispose();
});

test("a 401 refreshes once and replays once, for every concurrent caller", async () => {
  server.reset();
  const s = session();
  await s.login();
  server.expireAccessTokens();
  const results = await Promise.all(Array.from({ length: 20 }, () => s.json("/api/v1/products")));
  assert.equal(results.length, 20);
  assert.equal(server.stats.refresh, 1);
  assert.equal(server.stats.spentReuse, 0);
  s.dispose();
});

test("a second 401 is returned by fetch() and rejects json() with UNAUTHORIZED", async () => {
  server.reset();
  const s = session();
  await s.login();
  server.fault({ path: "/api/v1/products" }, { status: 401, body: { error: { name: "UnauthorizedError", code: "UNAUTHORIZED", message: "no" } } }, 2);
  const res = await s.fetch("/api/v1/products");
  assert.equal(res.status, 401);
  assert.equal(server.stats.refresh, 1);
  server.fault({ path: "/api/v1/products" }, { status: 401, body: { error: { name: "UnauthorizedError", code: "UNAUTHORIZED", message: "no" } } }, 2);
  await assert.rejects(s.json("/api/v1/products"), (e) => e instanceof ContractError && e.code === "UNAUTHORIZED" && e.status === 401);
  s.dispose();
});

test("a 503 is retried (GET), honouring Retry-After: 0", async () => {
  server.reset();
  const s = session();
  await s.login();
  server.fault({ path: "/api/v1/products" }, { status: 503, headers: { "retry-after": "0" } }, 2);
  const data = await s.json("/api/v1/products");
  assert.ok(Array.isArray(data));
  assert.equal(server.log.filter((e) => e.path === "/api/v1/products").length, 3);
  s.dispose();
});

test("a 503 on the last attempt: fetch() returns it, json() rejects SERVER_ERROR; POST is not retried", async () => {
  server.reset();
  const s = session({ retries: 1 });
  await s.login();
  server.fault({ path: "/api/v1/products" }, { status: 503 }, 2);
  assert.equal((await s.fetch("/api/v1/products")).status, 503);
  server.fault({ path: "/api/v1/products" }, { status: 503 }, 2);
  await assert.rejects(s.json("/api/v1/products"), (e) => e.code === "SERVER_ERROR" && e.status === 503 && e.retryable);
  server.fault({ path: "/api/v1/echo" }, { status: 503 }, 1);
  assert.equal((await s.fetch("/api/v1/echo", { method: "POST", json: { a: 1 } })).status, 503);
  assert.deepEqual((await s.json("/api/v1/echo", { method: "POST", json: { a: 1 } })).body, '{"a":1}');
  s.dispose();
});

test("Retry-After over maxRetryAfterSeconds: RATE_LIMITED at once (json), the response unretried (fetch)", async () => {
  server.reset();
  const s = session({ maxRetryAfterSeconds: 5 });
  await s.login();
  server.fault({ path: "/api/v1/products" }, { status: 429, headers: { "retry-after": "60" } }, 1);
  await assert.rejects(s.json("/api/v1/products"), (e) => e.code === "RATE_LIMITED" && e.status === 429 && e.retryAfter === 60);
  const date = new Date(Date.now() + 120_000).toUTCString();
  server.fault({ path: "/api/v1/products" }, { status: 503, headers: { "retry-after": date } }, 1);
  assert.equal((await s.fetch("/api/v1/products")).status, 503);
  assert.equal(server.log.filter((e) => e.path === "/api/v1/products").length, 2);
  s.dispose();
});

test("a timeout settles the call even when fetch ignores its signal, then retries", async () => {
  server.reset();
  let calls = 0;
  // A fetch that never settles and never looks at its signal, on the first API attempt.
  const fetch = (url, init) => (String(url).endsWith("/api/v1/products") && calls++ === 0 ? new Promise(() => {}) : globalThis.fetch(url, init));
  const s = session({ fetch, timeoutMs: 200 });
  await s.login();
  const t0 = performance.now();
  const data = await s.json("/api/v1/products");
  assert.ok(Array.isArray(data));
  assert.equal(calls, 2);
  assert.ok(performance.now() - t0 < 1500);
  // No retries: TIMEOUT after one attempt.
  calls = 0;
  const s0 = session({ fetch, timeoutMs: 100, retries: 0 });
  await s0.login();
  await assert.rejects(s0.fetch("/api/v1/products"), (e) => e.code === "TIMEOUT" && e.name === "TimeoutError" && e.retryable);
  s.dispose();
  s0.dispose();
});

test("a hanging server: TIMEOUT per attempt; the caller's abort settles at once", async () => {
  server.reset();
  const s = session({ timeoutMs: 150, retries: 1 });
  await s.login();
  server.fault({ path: "/api/v1/products" }, { hang: true }, 2);
  await assert.rejects(s.json("/api/v1/products"), (e) => e.code === "TIMEOUT");
  server.fault({ path: "/api/v1/products" }, { hang: true }, 1);
  const ac = new AbortController();
  const s2 = session({ timeoutMs: 10_000 });
  await s2.login();
  const p = s2.fetch("/api/v1/products", { signal: ac.signal });
  setTimeout(() => ac.abort(), 50);
  const t0 = performance.now();
  await assert.rejects(p, (e) => e.code === "ABORTED");
  assert.ok(performance.now() - t0 < 1000);
  s.dispose();
  s2.dispose();
});

test("refresh ahead of expiry (margin capped at half the lifetime), anchored to the server's Date", async () => {
  server.reset({ config: true });
  // Access tokens live 10 s; the margin (300 s) is capped at 5 s: not due yet.
  server.config.accessTtlMs = 10_000;
  const s = session();
  await s.login();
  await s.json("/api/v1/products");
  assert.equal(server.stats.refresh, 0);
  // The server's clock runs 1 h behind: its 10 s token expires at "now − 1 h + 10 s" by our clock.
  server.config.dateSkewMs = -3_600_000;
  const s2 = session();
  await s2.login();
  await s2.json("/api/v1/products");
  assert.equal(server.stats.refresh, 0, "a skewed server clock must not look like an expired token");
  // A token with 4 s left of 10 s is due (inside half its lifetime): one refresh, shared.
  server.config.dateSkewMs = 0;
  server.config.accessTtlMs = 1_000;
  const s3 = session({ refreshMarginSeconds: 300 });
  await s3.login();
  server.config.accessTtlMs = 3_600_000;
  await new Promise((r) => setTimeout(r, 600));
  await Promise.all(Array.from({ length: 10 }, () => s3.json("/api/v1/products")));
  assert.equal(server.stats.refresh, 1);
  server.reset({ config: true });
  for (const x of [s, s2, s3]) x.dispose();
});

test("a rejected refresh logs in again with the credentials", async () => {
  server.reset();
  const s = session();
  await s.login();
  server.revokeAll();
  assert.ok(Array.isArray(await s.json("/api/v1/products")));
  assert.equal(server.stats.login, 2);
  const bare = new ContractSession({ host: server.url, autoRefresh: false });
  await bare.login(USER.username, USER.password);
  server.revokeAll();
  await assert.rejects(bare.json("/api/v1/products"), (e) => e.code === "SESSION_EXPIRED");
  s.dispose();
  bare.dispose();
});

test("redirects: same origin followed, another origin never", async () => {
  server.reset();
  const s = session();
  await s.login();
  server.fault({ path: "/api/v1/old" }, { redirect: "/api/v1/products", status: 302 }, 1);
  assert.ok(Array.isArray(await s.json("/api/v1/old")));
  server.fault({ path: "/api/v1/old" }, { redirect: "https://evil.example/steal", status: 302 }, 2);
  await assert.rejects(s.json("/api/v1/old"), (e) => e.code === "REDIRECT_BLOCKED" && e.status === 302);
  assert.equal((await s.fetch("/api/v1/old")).status, 302);
  await assert.rejects(s.fetch("https://evil.example/x"), (e) => e.code === "ORIGIN_NOT_ALLOWED");
  s.dispose();
});

test("json() caps the body it reads", async () => {
  server.reset();
  const s = session({ maxResponseBytes: 1000 });
  await s.login();
  await assert.rejects(s.json("/api/v1/echo", { method: "POST", body: "x".repeat(5000) }), (e) => e.code === "RESPONSE_TOO_LARGE");
  s.dispose();
});
