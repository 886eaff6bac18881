// Process and object lifecycle: timers never keep Node alive (child processes), dispose(),
// AbortSignal (alone and on a shared refresh), and heavy concurrency on one session.

import { describe, it, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import {
  AuthSession,
  startServer,
  DEMO,
  clearCounters,
  rejectsWith,
  recordEvents,
  checkInfo,
  sleep,
  waitFor,
  useServer,
} from "./helpers.mjs";

const fixture = (name) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

// Long-lived access tokens: a child's timer is due ~59 s after its login.
const server = useServer({ accessTtlMs: 60_000 });

const hits = (path) => server.log.filter((e) => e.path === path).length;

async function loggedIn(extra = {}) {
  const session = new AuthSession({ host: server.url, autoRefresh: false, ...extra });
  await session.login(DEMO.username, DEMO.password);
  clearCounters(server);
  return session;
}

/** Runs a fixture in a child node; resolves { code, signal, stdout, stderr, ms }. */
function runChild(file, args, timeoutMs = 30_000) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(process.execPath, [fixture(file), ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const killer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`child still running after ${timeoutMs} ms; stdout: ${stdout}; stderr: ${stderr}`));
    }, timeoutMs);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
  });
}

describe("timers never keep a Node process alive", { concurrency: true }, () => {
  for (const [file, mode] of [
    ["autorefresh-exit.mjs", "plain"],
    ["autorefresh-exit.mjs", "refreshed"],
    ["autorefresh-exit.mjs", "restored"],
    ["autorefresh-exit.cjs", "plain"],
  ]) {
    it(`${file} (${mode}): exits with 0 right after its script ends`, async () => {
      const { code, signal, stdout, stderr, ms } = await runChild(file, [server.url, mode]);
      // Start-up, login and one call, then exit: far sooner than the timer's ~59 s.
      assert.ok(ms < 20_000, `the child ran for ${ms} ms`);
      assert.equal(signal, null);
      assert.equal(code, 0, `exit code ${code}; stderr: ${stderr}`);
      const ready = /READY active 4 (\d+)/.exec(stdout);
      assert.ok(ready, `the child logged in and called the API; stdout: ${stdout}; stderr: ${stderr}`);
      assert.match(stdout, /EXIT 0/);
      // The exit follows the script's end at once (the timer is due ~59 s later).
      const sinceReady = Date.now() - Number(ready[1]);
      assert.ok(sinceReady < 3000, `exited ${sinceReady} ms after its last line`);
      assert.equal(stderr, "");
    });
  }
});

describe("an awaited deadline keeps a Node process alive", () => {
  it("a backoff of 1 s (Retry-After) in an otherwise idle process: the call completes", async () => {
    server.fault({ path: "/api/v1/products" }, { status: 503, headers: { "retry-after": "1" }, body: "busy" }, 1);
    const { code, stdout, stderr } = await runChild("retry-keeps-alive.mjs", [server.url]);
    assert.equal(code, 0, `stderr: ${stderr}`);
    const done = /DONE 4 (\d+)/.exec(stdout);
    assert.ok(done, `the call completed before the process exited; stdout: ${stdout}; stderr: ${stderr}`);
    assert.ok(Number(done[1]) >= 900, `the retry waited for Retry-After (${done[1]} ms)`);
    assert.equal(hits("/api/v1/products"), 2);
  });
});

describe("dispose()", () => {
  it("is idempotent; [Symbol.dispose] disposes; later calls reject with DISPOSED", async () => {
    const a = await loggedIn();
    a.dispose();
    a.dispose();
    await rejectsWith(a.json("/api/v1/products"), { code: "DISPOSED" });
    const b = await loggedIn();
    assert.equal(typeof b[Symbol.dispose], "function");
    b[Symbol.dispose]();
    b[Symbol.dispose]();
    b.dispose();
    await rejectsWith(b.fetch("/api/v1/products"), { code: "DISPOSED" });
    await rejectsWith(b.getAccessToken(), { code: "DISPOSED" });
    assert.equal(server.stats.requests, 0);
    // info still answers, without tokens.
    assert.equal(b.info.clientId, null);
    assert.equal(b.info.accessExpiresAt, null);
  });

  it("a disposed session's timer never fires", async () => {
    const srv = await startServer({ accessTtlMs: 1200 });
    try {
      const kept = new AuthSession({ host: srv.url, refreshMarginSeconds: 1 });
      const disposed = new AuthSession({ host: srv.url, refreshMarginSeconds: 1 });
      await kept.login(DEMO.username, DEMO.password);
      await disposed.login(DEMO.username, DEMO.password);
      const events = recordEvents(disposed);
      disposed.dispose();
      // Both timers were due at ~600 ms; wait past that (and past a second round).
      await sleep(1300);
      assert.ok(srv.stats.refresh >= 1, "the control session refreshed");
      const controlRefreshes = srv.stats.refresh;
      kept.dispose();
      await sleep(700);
      assert.equal(srv.stats.refresh, controlRefreshes, "no refresh from either after dispose()");
      assert.equal(events.tokens.length + events.error.length + events.expired.length, 0);
    } finally {
      await srv.close();
    }
  });

  it("pending callers of a refresh in flight are released by dispose()", async () => {
    const session = await loggedIn();
    server.fault({ path: "/auth/refresh" }, { delayMs: 500 });
    const pending = session.refresh();
    await waitFor(() => hits("/auth/refresh") === 1, { what: "the refresh request" });
    session.dispose();
    await rejectsWith(pending, { code: "DISPOSED" });
    const entry = server.log.find((e) => e.path === "/auth/refresh");
    assert.equal(entry.status, null, "released before the refresh was answered");
    // dispose() aborted the attempt; let the server finish handling it, so it is not
    // counted by the next test.
    await sleep(700);
  });
});

describe("AbortSignal", () => {
  it("aborting a pending fetch (hang) rejects ABORTED quickly and keeps the session", async () => {
    const session = await loggedIn({ timeoutMs: 5000 });
    server.fault({ path: "/api/v1/products" }, { hang: true });
    const controller = new AbortController();
    const pending = session.fetch("/api/v1/products", { signal: controller.signal });
    await sleep(100);
    const started = Date.now();
    controller.abort();
    await rejectsWith(pending, { code: "ABORTED" });
    assert.ok(Date.now() - started < 2000, `rejected ${Date.now() - started} ms after abort() (timeoutMs 5000)`);
    assert.equal(session.info.state, "active");
    assert.equal((await session.json("/api/v1/products")).length, 4);
    session.dispose();
  });

  it("AbortSignal.timeout() works like any signal", async () => {
    const session = await loggedIn({ timeoutMs: 5000 });
    server.fault({ path: "/api/v1/products" }, { hang: true });
    const started = Date.now();
    await rejectsWith(session.json("/api/v1/products", { signal: AbortSignal.timeout(150) }), { code: "ABORTED" });
    assert.ok(Date.now() - started < 3000, "the signal, not timeoutMs (5000)");
    session.dispose();
  });

  it("a caller aborting while it waits on a shared refresh rejects at once; the others succeed", async () => {
    const session = await loggedIn({ timeoutMs: 5000 });
    server.fault({ path: "/auth/refresh" }, { delayMs: 600 });
    server.expireAccessTokens();
    const controller = new AbortController();
    const settled = [];
    const track = (name, p) => p.finally(() => settled.push(name));
    const others = Array.from({ length: 5 }, () => track("other", session.json("/api/v1/products")));
    const aborting = track("aborted", session.json("/api/v1/products", { signal: controller.signal }));
    const abortingFetch = track("aborted", session.fetch("/api/v1/products", { signal: controller.signal }));
    // All of them now wait for the (delayed) refresh.
    await waitFor(() => hits("/auth/refresh") === 1, { what: "the refresh request" });
    controller.abort();
    await rejectsWith(aborting, { code: "ABORTED" });
    await rejectsWith(abortingFetch, { code: "ABORTED" });
    const refreshEntry = server.log.find((e) => e.path === "/auth/refresh");
    assert.equal(refreshEntry.status, null, "rejected at once, before the refresh was answered");
    const results = await Promise.all(others);
    assert.deepEqual(settled, ["aborted", "aborted", "other", "other", "other", "other", "other"]);
    for (const r of results) assert.equal(r.length, 4);
    assert.equal(server.stats.refresh, 1, "the refresh went on, once");
    assert.equal(server.stats.spentReuse, 0);
    checkInfo(session.info, "active");
    session.dispose();
  });

  it("a signal aborted after the response arrived does not break the result", async () => {
    const session = await loggedIn();
    const controller = new AbortController();
    const data = await session.json("/api/v1/products", { signal: controller.signal });
    controller.abort();
    assert.equal(data.length, 4);
    session.dispose();
  });
});

describe("concurrency on one session", () => {
  it("200 parallel fetch() calls all succeed (no 'recursive use of an object')", async () => {
    const session = await loggedIn();
    const results = await Promise.allSettled(
      Array.from({ length: 200 }, (_, i) => session.fetch(`/api/v1/echo?i=${i}`)),
    );
    const failures = results.filter((r) => r.status === "rejected").map((r) => String(r.reason?.message));
    assert.deepEqual(failures, []);
    const bodies = await Promise.all(results.map((r) => r.value.json()));
    assert.deepEqual(
      bodies.map((b) => b.data.query.i),
      Array.from({ length: 200 }, (_, i) => String(i)),
    );
    assert.equal(hits("/api/v1/echo"), 200);
    session.dispose();
  });

  it("mixed calls in parallel (fetch, json, refresh, getAccessToken, info, on) never throw", async () => {
    const session = await loggedIn();
    server.expireAccessTokens();
    const calls = [];
    for (let i = 0; i < 60; i++) {
      calls.push(session.fetch("/api/v1/products").then((r) => r.status));
      calls.push(session.json("/api/v1/public").then(() => 200));
      if (i % 10 === 0) calls.push(session.refresh().then((info) => info.state));
      if (i % 7 === 0) calls.push(session.getAccessToken().then((t) => typeof t));
      calls.push(Promise.resolve(session.info.state));
      const off = session.on("tokens", () => {});
      off();
    }
    const outcomes = await Promise.allSettled(calls);
    const failures = outcomes.filter((o) => o.status === "rejected").map((o) => String(o.reason?.message));
    assert.deepEqual(failures, []);
    for (const o of outcomes) assert.ok([200, "active", "string"].includes(o.value), String(o.value));
    assert.equal(server.stats.spentReuse, 0);
    session.dispose();
  });

  it("listeners that call back into the session (reentrancy) work", async () => {
    const session = new AuthSession({ host: server.url, autoRefresh: false });
    const seen = [];
    session.on("tokens", (info) => {
      seen.push(session.info.state, info.state);
      session.json("/api/v1/public").then((d) => seen.push(d.public));
    });
    await session.login(DEMO.username, DEMO.password);
    await session.refresh();
    await sleep(50);
    assert.deepEqual(seen.slice(0, 2), ["active", "active"]);
    assert.equal(seen.filter((x) => x === true).length, 2);
    session.dispose();
  });

  it("many sessions side by side are independent", async () => {
    const sessions = Array.from({ length: 20 }, () => new AuthSession({ host: server.url, autoRefresh: false }));
    await Promise.all(sessions.map((s) => s.login(DEMO.username, DEMO.password)));
    await sessions[0].revoke();
    const results = await Promise.allSettled(sessions.map((s) => s.json("/api/v1/products")));
    assert.equal(results[0].status, "rejected");
    assert.equal(results[0].reason.code, "NOT_AUTHENTICATED");
    for (const r of results.slice(1)) assert.equal(r.value.length, 4);
    for (const s of sessions) s.dispose();
  });
});
