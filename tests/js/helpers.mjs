// Shared helpers of the JavaScript tests of the built package (not a test file itself:
// node --test only picks up *.test.mjs / *.test.cjs).
//
// Every ESM test imports the package from here, so the whole suite tests one entry: the
// file that the package's `exports` map resolves to for `import` under Node
// (`pkg/package.json` → exports["."].node.import = ./node.mjs; package.test.mjs checks that
// mapping by resolving the package by name).

import assert from "node:assert/strict";
import net from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { inspect } from "node:util";

import { before, after, beforeEach } from "node:test";
import { startServer as startReferenceServer } from "../server/reference-server.mjs";
export { AuthSession, AuthError } from "../../pkg/node.mjs";
export { startServer } from "../server/reference-server.mjs";
import { AuthError } from "../../pkg/node.mjs";

export { sleep };

export const DEMO = Object.freeze({ username: "demo", password: "demo-password" });

/** The client names of API.md's error table (server envelopes keep the server's name). */
export const CLIENT_NAMES = Object.freeze({
  NETWORK_ERROR: "NetworkError",
  TIMEOUT: "TimeoutError",
  ABORTED: "AbortError",
  INVALID_RESPONSE: "InvalidResponseError",
  SERVER_ERROR: "ServerError",
  RATE_LIMITED: "RateLimitedError",
  HTTP_ERROR: "HttpError",
  SESSION_EXPIRED: "SessionExpiredError",
  NOT_AUTHENTICATED: "NotAuthenticatedError",
  ORIGIN_NOT_ALLOWED: "OriginNotAllowedError",
  REDIRECT_BLOCKED: "RedirectBlockedError",
  RESPONSE_TOO_LARGE: "ResponseTooLargeError",
  CONFIG_ERROR: "ConfigError",
  DISPOSED: "DisposedError",
  STORAGE_ERROR: "StorageError",
});

/** Codes whose errors are retryable by nature (network, timeout, 5xx, 429). */
const RETRYABLE = new Set(["NETWORK_ERROR", "TIMEOUT", "SERVER_ERROR", "RATE_LIMITED"]);

/**
 * Checks that `err` is the package's AuthError with the expected fields. `expected.code` is
 * required; `name` defaults to the client name of the table, `status` to 0, `retryable` to
 * what the table implies (network, timeout, 5xx, 429). Pass `status: undefined` explicitly
 * via `anyStatus: true` to skip the status check.
 */
export function checkAuthError(err, expected, ErrorClass = AuthError) {
  const where = `${expected.code} (got ${err && err.code}: ${err && err.message})`;
  assert.ok(err instanceof ErrorClass, `instanceof AuthError: ${where}`);
  assert.ok(err instanceof Error, `instanceof Error: ${where}`);
  assert.equal(err.code, expected.code, `code: ${where}`);
  const name = "name" in expected ? expected.name : CLIENT_NAMES[expected.code];
  assert.equal(err.name, name, `name: ${where}`);
  if (!expected.anyStatus) assert.equal(err.status, expected.status ?? 0, `status: ${where}`);
  assert.equal(typeof err.status, "number", `status is a number: ${where}`);
  const retryable = "retryable" in expected ? expected.retryable : RETRYABLE.has(expected.code);
  assert.equal(err.retryable, retryable, `retryable: ${where}`);
  assert.equal(typeof err.message, "string");
  assert.ok(err.message.length > 0, "an error has a message");
  assert.equal(typeof err.stack, "string");
  return err;
}

/** Awaits `work` (a promise or a function returning one, or throwing) and checks the AuthError. */
export async function rejectsWith(work, expected, ErrorClass = AuthError) {
  let err;
  try {
    await (typeof work === "function" ? work() : work);
  } catch (e) {
    err = e;
  }
  assert.ok(err !== undefined, `expected ${expected.code}, but it succeeded`);
  return checkAuthError(err, expected, ErrorClass);
}

/** Runs a synchronous call that must throw an AuthError. */
export function throwsWith(fn, expected, ErrorClass = AuthError) {
  let err;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err !== undefined, `expected ${expected.code}, but it did not throw`);
  return checkAuthError(err, expected, ErrorClass);
}

/** Polls `predicate` until true or `timeoutMs` passes. */
export async function waitFor(predicate, { timeoutMs = 3000, intervalMs = 10, what = "condition" } = {}) {
  const start = Date.now();
  while (!(await predicate())) {
    if (Date.now() - start > timeoutMs) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** Resolves with the next payload of `event`, or rejects after `timeoutMs`. */
export function nextEvent(session, event, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no "${event}" event within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = session.on(event, (payload) => {
      clearTimeout(timer);
      off();
      resolve(payload);
    });
  });
}

/** Records every event of a session: `{ tokens: [...], expired: [...], revoked: [...], error: [...] }`. */
export function recordEvents(session) {
  const events = { tokens: [], expired: [], revoked: [], error: [] };
  for (const name of Object.keys(events)) session.on(name, (payload) => events[name].push(payload));
  return events;
}

/** A port on 127.0.0.1 that nothing listens on (bound, then closed). */
export async function closedPort() {
  const srv = net.createServer();
  await new Promise((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/** A Map-backed synchronous TokenStorage; `calls` records the operations (never values). */
export function mapStorage(map = new Map()) {
  const calls = [];
  return {
    map,
    calls,
    get(key) {
      calls.push(["get", key]);
      return map.has(key) ? map.get(key) : null;
    },
    put(key, value) {
      calls.push(["put", key]);
      map.set(key, value);
    },
    delete(key) {
      calls.push(["delete", key]);
      map.delete(key);
    },
  };
}

/** The same over promises that settle on a later macrotask, as a KV namespace does. */
export function asyncMapStorage(map = new Map(), delayMs = 5) {
  const calls = [];
  return {
    map,
    calls,
    async get(key) {
      calls.push(["get", key]);
      await sleep(delayMs);
      return map.has(key) ? map.get(key) : undefined;
    },
    async put(key, value) {
      calls.push(["put", key]);
      await sleep(delayMs);
      map.set(key, value);
    },
    async delete(key) {
      calls.push(["delete", key]);
      await sleep(delayMs);
      return map.delete(key);
    },
  };
}

/**
 * A `fetch` option that forwards to the global fetch and records, per request, its URL,
 * method and whether it carried a bearer; and reads (from a clone) every token the auth
 * endpoints issued, so tests know the token values without trusting the library.
 */
export function spyFetch() {
  const requests = [];
  const tokens = new Set();
  const fetchFn = async (input, init) => {
    const request = new Request(input, init);
    const authorization = request.headers.get("authorization");
    requests.push({ url: request.url, method: request.method, authorization });
    const response = await globalThis.fetch(request);
    if (new URL(request.url).pathname.startsWith("/auth/") && response.status === 200) {
      try {
        const body = await response.clone().json();
        for (const key of ["access_token", "refresh_token"]) {
          if (typeof body?.data?.[key] === "string") tokens.add(body.data[key]);
        }
      } catch {
        // not JSON: nothing to learn
      }
    }
    return response;
  };
  return { fetch: fetchFn, requests, tokens };
}

/** A made-up, well-formed token pair envelope for fake `fetch` functions. */
export function fakeTokenEnvelope({ accessTtlMs = 3_600_000, refreshTtlMs = 86_400_000, clientId = 42 } = {}) {
  const now = Date.now();
  const token = (kind) =>
    `${Buffer.from('{"alg":"HS256"}').toString("base64url")}.${Buffer.from(
      JSON.stringify({ typ: kind, n: Math.random() }),
    ).toString("base64url")}.sig${Math.random().toString(36).slice(2)}`;
  return {
    success: true,
    data: {
      access_token: token("access"),
      refresh_token: token("refresh"),
      access_expires_at: new Date(now + accessTtlMs).toISOString(),
      refresh_expires_at: new Date(now + refreshTtlMs).toISOString(),
      client_id: clientId,
    },
  };
}

export const jsonResponse = (body, status = 200, headers = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });

/** Every way an error can be turned into text. */
export function errorTexts(err) {
  const out = [];
  const push = (f) => {
    try {
      out.push(String(f()));
    } catch (e) {
      out.push(`<threw ${e && e.name}>`);
    }
  };
  push(() => err.message);
  push(() => err.stack);
  push(() => String(err));
  push(() => JSON.stringify(err));
  push(() => JSON.stringify(Object.getOwnPropertyNames(err).map((k) => [k, String(err[k])])));
  push(() => inspect(err, { showHidden: true, depth: Infinity, getters: true }));
  push(() => (err && err.cause !== undefined ? inspect(err.cause, { showHidden: true, depth: Infinity }) : ""));
  return out;
}

/** Asserts that none of `texts` contains any of `secrets`. */
export function assertNoSecrets(texts, secrets, context = "output") {
  const list = [...secrets].filter((s) => typeof s === "string" && s.length > 0);
  assert.ok(list.length > 0, "there are secrets to look for");
  for (const text of texts) {
    for (const secret of list) {
      if (String(text).includes(secret)) {
        // The text is shown with the secret masked: a failing run must not print it either.
        const shown = String(text).split(secret).join("<SECRET>").slice(0, 300);
        assert.fail(`${context} contains a secret (${secret.length} chars, masked): ${shown}`);
      }
    }
  }
}

/** Checks a SessionInfo's shape: exactly the four fields, with the right types. */
export function checkInfo(info, state) {
  // A `tokens` event's payload is the SessionInfo plus why it fired.
  const keys = ["accessExpiresAt", "clientId", "refreshExpiresAt", "state"];
  if ("reason" in info) {
    assert.ok(["login", "refresh", "restore", "adopt"].includes(info.reason), `reason ${info.reason}`);
    keys.splice(1, 0, "reason");
    keys.sort();
  }
  assert.deepEqual(Object.keys(info).sort(), keys);
  assert.equal(info.state, state);
  if (state === "active") {
    assert.equal(typeof info.clientId, "number");
    assert.ok(info.accessExpiresAt instanceof Date, "accessExpiresAt is a Date");
    assert.ok(info.refreshExpiresAt instanceof Date, "refreshExpiresAt is a Date");
    assert.ok(!Number.isNaN(info.accessExpiresAt.getTime()));
    assert.ok(!Number.isNaN(info.refreshExpiresAt.getTime()));
  } else {
    assert.equal(info.clientId, null);
    assert.equal(info.accessExpiresAt, null);
    assert.equal(info.refreshExpiresAt, null);
  }
  return info;
}

/** Like server.reset(), but keeps the issued tokens: zeroes the stats, empties the log and
 *  clears faults, so a test can assert on exact counts while sessions of earlier tests live on. */
export function clearCounters(...servers) {
  for (const server of servers) {
    for (const key of Object.keys(server.stats)) server.stats[key] = 0;
    server.log.length = 0;
    server.clearFaults();
  }
}

/**
 * The test file's reference server: started before its tests, closed after, counters
 * cleared before each test. Reads like the server object itself (`server.url`,
 * `server.fault(…)`) while it is running.
 */
export function useServer(options) {
  let current;
  before(async () => {
    current = await startReferenceServer(options);
  });
  after(() => current?.close());
  beforeEach(() => clearCounters(current));
  return new Proxy(
    {},
    {
      get(_, key) {
        const value = current[key];
        return typeof value === "function" ? value.bind(current) : value;
      },
    },
  );
}
