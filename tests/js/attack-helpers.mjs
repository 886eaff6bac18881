// Helpers of attacks.test.mjs (not a test file itself: node --test only picks up *.test.mjs).
// Everything here is bounded in time: an await that could hang is raced against a timer,
// and the small HTTP servers close every connection when they close.

import assert from "node:assert/strict";
import http from "node:http";
import { performance } from "node:perf_hooks";
import { AuthError, CLIENT_NAMES, fakeTokenEnvelope, sleep } from "./helpers.mjs";

/**
 * Awaits `work` (a promise, or a function returning one) for at most `ms`. Resolves with
 * `{ ok: true, value, ms }` or `{ ok: false, error, ms }`; fails the test when it is still
 * pending after `ms` (a hung promise is a defect, never a hung test run).
 */
export async function within(work, ms, what) {
  const started = performance.now();
  let timer;
  const timedOut = new Promise((resolve) => {
    timer = setTimeout(() => resolve({ timedOut: true }), ms);
  });
  const settled = Promise.resolve()
    .then(() => (typeof work === "function" ? work() : work))
    .then(
      (value) => ({ ok: true, value }),
      (error) => ({ ok: false, error }),
    );
  const outcome = await Promise.race([settled, timedOut]);
  clearTimeout(timer);
  if (outcome.timedOut) assert.fail(`${what}: still pending after ${ms} ms`);
  outcome.ms = performance.now() - started;
  return outcome;
}

/**
 * Checks that an outcome of `within` is a rejection with the package's AuthError of `code`
 * (and the client name of API.md's table, unless `name` is given). `quiet`: the failure
 * message does not quote the error's message (it may hold a secret under test).
 */
export function expectCode(outcome, code, what, { name = CLIENT_NAMES[code], quiet = false } = {}) {
  const err = outcome.error;
  const shown = (e) =>
    e && typeof e === "object"
      ? `${e.code ?? "<no code>"} / ${e.name}${quiet ? "" : `: ${String(e.message).slice(0, 160)}`}`
      : String(e);
  assert.equal(outcome.ok, false, `${what}: expected ${code}, but it resolved`);
  assert.ok(err instanceof AuthError, `${what}: expected an AuthError ${code}, got ${shown(err)}`);
  assert.ok(err instanceof Error, `${what}: an AuthError is an Error`);
  assert.equal(err.code, code, `${what}: expected ${code}, got ${shown(err)}`);
  if (name !== undefined) assert.equal(err.name, name, `${what}: name of ${code}`);
  assert.equal(typeof err.status, "number", `${what}: status is a number`);
  return err;
}

let shared = null;

/**
 * One collector of uncaught exceptions and unhandled rejections for the whole process,
 * installed on first use and kept (tests running concurrently share it instead of each
 * adding listeners). `mark()` then `since(mark)` gives what escaped in between.
 */
export function sharedProcessErrors() {
  if (!shared) {
    const errors = [];
    const onError = (e) => errors.push(e);
    process.on("uncaughtException", onError);
    process.on("unhandledRejection", onError);
    shared = { errors, mark: () => errors.length, since: (mark) => errors.slice(mark) };
  }
  return shared;
}

/**
 * Fails when any of `texts` contains a substring of `secret` of `size` characters (every
 * window is checked; a secret shorter than `size` is looked for whole). The failure names
 * the text and the window's position, never the secret.
 */
export function assertNoWindows(texts, secret, context, size = 8) {
  assert.ok(typeof secret === "string" && secret.length > 0, "a secret to look for");
  const n = Math.min(size, secret.length);
  for (let i = 0; i + n <= secret.length; i++) {
    const window = secret.slice(i, i + n);
    texts.forEach((text, j) => {
      if (String(text).includes(window)) {
        assert.fail(
          `${context}: text #${j} contains characters ${i}..${i + n} of a ${secret.length}-char secret`,
        );
      }
    });
  }
}

/**
 * A `fetch` option that forwards to the global fetch and records every request (path, time,
 * the refresh token in an auth body) and the token pairs the auth endpoints issued, learnt
 * from response clones so tests know the values without trusting the library.
 */
export function wireFetch() {
  const requests = [];
  const issued = [];
  const fetchFn = async (input, init) => {
    const request = new Request(input, init);
    const path = new URL(request.url).pathname;
    const entry = { path, method: request.method, at: performance.now(), refreshToken: null };
    if (path.startsWith("/auth/") && request.method === "POST") {
      try {
        entry.refreshToken = JSON.parse(await request.clone().text())?.refresh_token ?? null;
      } catch {
        // not JSON: nothing to learn
      }
    }
    requests.push(entry);
    const response = await globalThis.fetch(request);
    if ((path === "/auth/login" || path === "/auth/refresh") && response.status === 200) {
      try {
        const data = (await response.clone().json())?.data;
        if (typeof data?.access_token === "string") {
          issued.push({ path, access: data.access_token, refresh: data.refresh_token });
        }
      } catch {
        // not JSON
      }
    }
    return response;
  };
  return {
    fetch: fetchFn,
    requests,
    issued,
    /** Refresh tokens sent to /auth/refresh, in order. */
    refreshTokensSent: () => requests.filter((r) => r.path === "/auth/refresh").map((r) => r.refreshToken),
  };
}

/**
 * A small HTTP server whose API bodies misbehave, recording for each request whether the
 * client went away before the response was complete (`aborted`).
 *
 * - POST /auth/login: a well-formed token pair (made up).
 * - GET /api/small: `{"success":true,"data":{"ok":true}}`.
 * - GET /api/endless: a 200 JSON body that never ends (1 KiB every 20 ms).
 * - GET /api/slow-5000: a valid 5000-byte JSON body, chunked, 500 bytes every 100 ms.
 * - GET /api/5000: the same 5000 bytes at once, with content-length.
 */
export async function startStreamServer() {
  const requests = [];
  const big = Buffer.from(`{"success":true,"data":"${"x".repeat(5000 - 26)}"}`);
  assert.equal(big.length, 5000);
  const server = http.createServer((req, res) => {
    const path = new URL(req.url, "http://stream.invalid").pathname;
    const entry = { method: req.method, path, closed: false, finished: false, aborted: false, bytes: 0 };
    requests.push(entry);
    res.on("close", () => {
      entry.closed = true;
      entry.finished = res.writableFinished;
      entry.aborted = !res.writableFinished;
    });
    req.resume();
    const sendJson = (value) => {
      const body = JSON.stringify(value);
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
    };
    if (path === "/auth/login" || path === "/auth/refresh") return req.on("end", () => sendJson(fakeTokenEnvelope()));
    if (path === "/auth/revoke") return req.on("end", () => sendJson({ success: true, data: { revoked: true } }));
    if (path === "/api/small") return sendJson({ success: true, data: { ok: true } });
    if (path === "/api/endless") {
      res.writeHead(200, { "content-type": "application/json" });
      res.write('{"success":true,"data":"');
      const chunk = Buffer.alloc(1024, "x");
      const timer = setInterval(() => {
        if (res.destroyed) return;
        res.write(chunk);
        entry.bytes += chunk.length;
      }, 20);
      res.on("close", () => clearInterval(timer));
      return;
    }
    if (path === "/api/slow-5000") {
      res.writeHead(200, { "content-type": "application/json" });
      let offset = 0;
      const step = () => {
        if (res.destroyed) return;
        const slice = big.subarray(offset, offset + 500);
        offset += slice.length;
        entry.bytes += slice.length;
        if (offset >= big.length) return res.end(slice);
        res.write(slice);
      };
      step();
      const timer = setInterval(step, 100);
      res.on("close", () => clearInterval(timer));
      return;
    }
    if (path === "/api/5000") {
      res.writeHead(200, { "content-type": "application/json", "content-length": big.length });
      entry.bytes = big.length;
      return res.end(big);
    }
    res.writeHead(404, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: { name: "NotFoundError", code: "NOT_FOUND", message: "no route" } }));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    last: (path) => requests.filter((r) => r.path === path).at(-1),
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** The values a broken custom `fetch` may resolve to instead of a Response (made fresh per call). */
export const NOT_RESPONSES = Object.freeze([
  ["undefined", () => undefined],
  ["null", () => null],
  ["{}", () => ({})],
  ["{ status: 200 }", () => ({ status: 200 })],
  ["a string", () => "HTTP/1.1 200 OK"],
  [
    "an object whose headers has no get()",
    () => ({
      status: 200,
      ok: true,
      headers: {},
      body: null,
      text: async () => "{}",
      json: async () => ({}),
    }),
  ],
  [
    "an object whose status getter throws",
    () => ({
      get status() {
        throw new Error("status getter exploded");
      },
      ok: true,
      headers: new Headers(),
      body: null,
    }),
  ],
]);
