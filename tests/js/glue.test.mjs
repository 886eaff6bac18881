// The glue of the wasm's one entry point (pkg/auth_session.js) against the real module in
// Node: what session.js relies on it for, below the session's own tests. The encoding
// itself is tested natively (tests/boundary.rs); here, what only JavaScript can get wrong:
// UTF-8 both ways, values JSON.parse returns at their limits, memory growing under a view,
// and a driver method that runs another session's call while records are still being read.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
// The glue as web.mjs and workerd.mjs load it (node.mjs bundles its own copy).
import { Core, initSync } from "../../pkg/auth_session.js";

const wasm = initSync({ module: readFileSync(new URL("../../pkg/auth_session_bg.wasm", import.meta.url)) });
// session.js puts the driver's methods on Core's prototype (a core is its own driver, and the
// constructor's step uses it); these are the ones a constructor's output can call.
Core.prototype.error = (code, name, message, status, retryable, retryAfter, causeName, causeCode) => ({
  code, name, message, status, retryable, retryAfter, causeName, causeCode,
});

const T0 = Date.UTC(2024, 0, 15, 9, 30);
const HOUR = 3600_000;

/** A driver that records every call, with session.js's `info` and `error` shapes. */
function driver(hooks = {}) {
  const d = { calls: [] };
  for (const m of ["send", "cancel", "storage", "settle", "event", "arm", "wake", "log"]) {
    d[m] = (...args) => {
      d.calls.push([m, ...args]);
      hooks[m]?.(...args);
    };
  }
  d.info = (state, clientId, access, refresh) => ({ state, clientId: clientId ?? null, access, refresh });
  d.error = (code, name, message, status, retryable, retryAfter, causeName, causeCode) => ({
    code, name, message, status, retryable, retryAfter, causeName, causeCode,
  });
  return d;
}

function core(d, { username = "alice", password = "pw", storage = 0, label } = {}) {
  return new Core(d, "https://api.test", username, password, undefined, undefined, 0, undefined, false,
    ["", "", ""], undefined, [], undefined, undefined, undefined, label, storage, 0.25);
}

const iso = (ms) => new Date(ms).toISOString();
const envelope = (n) => ({
  success: true,
  data: {
    access_token: `at.${n}`, refresh_token: `rt.${n}`,
    access_expires_at: iso(T0 + HOUR), refresh_expires_at: iso(T0 + 24 * HOUR), client_id: 7,
  },
});

test("UTF-8 crosses both ways unchanged: credentials, labels and the server's text", () => {
  const d = driver();
  const username = "zoë-ユーザー-😀";
  const c = core(d, { username, password: "pässwörd-🔑", label: "tenant-ü" });
  const flight = c.login(d, T0);
  const [, io, endpoint, wire, url, body] = d.calls.find(([m]) => m === "send");
  assert.equal(endpoint, 0);
  assert.equal(wire, 0, "JSON");
  assert.equal(url, "https://api.test/auth/login");
  assert.deepEqual(JSON.parse(body), { username, password: "pässwörd-🔑" });
  d.calls.length = 0;
  const message = "mot de passe refusé — ✗";
  c.auth_reply(d, T0 + 10, io, 401, false, undefined, undefined, 2, {
    success: false, error: { name: "AuthError", code: "INVALID_CREDENTIALS", message },
  });
  const [, settled, outcome, error] = d.calls.find(([m]) => m === "settle");
  assert.equal(settled, flight);
  assert.equal(outcome, 2);
  assert.equal(error.code, "INVALID_CREDENTIALS");
  assert.equal(error.status, 401);
  assert.ok(error.message.includes("mot de passe refusé"), error.message);
});

test("a reply deeper than the protocol or larger than the memory the module has still settles the flight", () => {
  const d = driver();
  const c = core(d);
  const flight = c.login(d, T0);
  const io = d.calls.find(([m]) => m === "send")[1];
  // 20 levels of nesting (cut to null at 16) and 200,000 strings of 8 bytes: the module's
  // memory grows while the input is copied in, under the glue's cached view.
  let deep = { end: true };
  for (let i = 0; i < 20; i++) deep = { deep };
  const body = { ...envelope(1), extra: Array.from({ length: 200_000 }, (_, i) => `s${i}`.padEnd(8, "x")), deep };
  d.calls.length = 0;
  c.auth_reply(d, T0 + 10, io, 200, false, undefined, undefined, 2, body);
  // Over the 65,536-value budget: the whole body reads as null, which is no envelope.
  const settle = d.calls.find(([m]) => m === "settle");
  assert.equal(settle[1], flight);
  assert.equal(settle[2], 2, "failed: not an envelope");
  // The session goes on: a second login with a plain envelope succeeds.
  d.calls.length = 0;
  const again = c.login(d, T0 + 20);
  const io2 = d.calls.find(([m]) => m === "send")[1];
  d.calls.length = 0;
  c.auth_reply(d, T0 + 30, io2, 200, false, undefined, undefined, 2, { ...envelope(2), deep });
  assert.deepEqual(d.calls.find(([m]) => m === "settle").slice(1, 3), [again, 0]);
  assert.equal(c.token(d, T0 + 40, 0, 0, 0) > 0, true);
  assert.equal(c.token_text(), "at.2");
});

test("a driver method that runs another session's call mid-output loses no record of either", () => {
  const inner = driver();
  const other = core(inner);
  let nested = 0;
  const d = driver({
    // Runs while the outer output is being read: a `fetch` that calls back synchronously.
    send() {
      nested = other.login(inner, T0);
    },
  });
  const c = core(d);
  const flight = c.login(d, T0);
  assert.ok(flight > 0 && nested > 0);
  // The outer output: its send, its arm, then its result (the flight) — all read.
  assert.deepEqual(d.calls.map(([m]) => m), ["send", "arm"]);
  assert.deepEqual(inner.calls.map(([m]) => m), ["send", "arm"]);
  assert.equal(d.calls[0][4], "https://api.test/auth/login");
});

test("errors thrown by a call are the driver's descriptors; results of every type come back", () => {
  const d = driver();
  assert.throws(
    () => new Core(d, "ftp://api.test", undefined, undefined, NaN, undefined, undefined, undefined, undefined,
      ["", "", ""], undefined, [], undefined, undefined, undefined, undefined, 0, 0),
    (e) => e.code === "CONFIG_ERROR" && e.name === "ConfigError" && !(e instanceof Error),
  );
  const c = core(d, { storage: 1 });
  assert.equal(c.resolve("/v1/items?q=1"), "https://api.test/v1/items?q=1");
  assert.equal(c.max_response_bytes(), 10 * 1024 * 1024);
  assert.equal(typeof c.account(), "string");
  assert.equal(c.idle(), true);
  assert.equal(c.disposed(), false);
  const [skew, due, retry] = c.schedule(T0);
  assert.deepEqual([skew, due, retry], [0, -1, -1]);
  assert.throws(() => c.check_origin(d, "https://evil.test"), (e) => e.code === "ORIGIN_NOT_ALLOWED");
  c.dispose(d);
  assert.equal(c.disposed(), true);
  assert.throws(() => c.api_open(d, "GET", "/v1", 0, false), (e) => e.code === "DISPOSED");
});

test("a string longer than any document of the protocol reads as nothing, without growing the wasm's memory", () => {
  const d = driver();
  const c = core(d);
  const flight = c.login(d, T0);
  const io = d.calls.find(([m]) => m === "send")[1];
  const before = wasm.memory.buffer.byteLength;
  const body = { ...envelope(1), data: { ...envelope(1).data, access_token: "a".repeat(3_000_000) } };
  d.calls.length = 0;
  c.auth_reply(d, T0 + 10, io, 200, false, undefined, undefined, 2, body);
  const settle = d.calls.find(([m]) => m === "settle");
  assert.equal(settle[1], flight);
  assert.equal(settle[2], 2, "failed: the body read as nothing, which is no envelope");
  assert.ok(wasm.memory.buffer.byteLength - before < 1 << 20, "the 3 MB string never crossed");
});
