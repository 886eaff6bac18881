// Attacks: what a hostile or broken environment does to the session, and what the public
// contract (API.md, "Additions") says must happen. Each test is bounded in time: every await
// that a defect could hang is raced against a timer (`within`), so a defect is a failure,
// never a hung run.
//
//  1. a custom `fetch` resolving to something that is not a Response (last: see below)
//  2. json() bodies: endless (timeoutMs), too large (maxResponseBytes, default 10 MiB)
//  3. storage calls that never settle
//  4. a login whose refresh token is already expired: no login storm
//  5. a refresh token past its expiry: SESSION_EXPIRED without a request
//  6. redaction of secrets inside long server messages, short passwords, bidi controls
//  7. revoke() against a 2xx without a JSON body
//  8. restore() finishing after login(): the older stored pair is not installed
//  9. nothing is sent after revoke() / dispose()
//
// The non-Response group runs last, its seven values concurrently (each against a reference
// server of its own): before the fix such a value throws a TypeError inside the wasm that
// escapes as an uncaught exception and leaves the call pending, so each hung call costs its
// 3 s bound once, and whatever state it leaves behind cannot be blamed on the other groups.

import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import {
  AuthSession,
  startServer,
  DEMO,
  clearCounters,
  errorTexts,
  recordEvents,
  checkInfo,
  mapStorage,
  spyFetch,
  sleep,
  waitFor,
  useServer,
} from "./helpers.mjs";
import {
  within,
  expectCode,
  sharedProcessErrors,
  assertNoWindows,
  wireFetch,
  startStreamServer,
  NOT_RESPONSES,
} from "./attack-helpers.mjs";

const USER = "canary";
const PASSWORD = "S3cr3t-Passw0rd-Canary-9q8w7e";
const SHORT_USER = "shorty";
const SHORT_PASSWORD = "pw1";

const server = useServer({
  users: { [DEMO.username]: DEMO.password, [USER]: PASSWORD, [SHORT_USER]: SHORT_PASSWORD },
});

const newSession = (extra = {}) => new AuthSession({ host: server.url, autoRefresh: false, ...extra });

/** Requests the reference server received for `path` (faulted ones included). */
const hits = (srv, path) => srv.log.filter((e) => e.path === path).length;

/** A storage operation that never settles. */
const never = () => new Promise(() => {});

/** Runs `fn` with a reference server of its own, closed afterwards. */
async function withServer(options, fn) {
  const srv = await startServer(options);
  try {
    return await fn(srv);
  } finally {
    await srv.close();
  }
}

const TEST = { timeout: 15_000 };

// ---------------------------------------------------------------------------------------
// 2. json() bodies

describe("json(): bodies that never end or are too large", () => {
  let stream;
  const streamSession = async (extra = {}) => {
    stream ??= await startStreamServer();
    const session = new AuthSession({ host: stream.url, autoRefresh: false, retries: 0, ...extra });
    const login = await within(session.login("user", "password"), 3000, "login() on the stream server");
    assert.ok(login.ok, `login: ${login.error?.code} ${login.error?.message}`);
    return session;
  };
  after(() => stream?.close());

  it("an endless 200 body: TIMEOUT within ~2 s (timeoutMs 500), and the server's connection is closed", TEST, async () => {
    const session = await streamSession({ timeoutMs: 500 });
    const outcome = await within(session.json("/api/endless"), 5000, "json() of an endless body");
    expectCode(outcome, "TIMEOUT", "json() of an endless body");
    assert.ok(outcome.ms < 2000, `TIMEOUT after ${Math.round(outcome.ms)} ms (timeoutMs 500)`);
    session.dispose();
    const entry = stream.last("/api/endless");
    assert.ok(entry, "the server saw the request");
    await waitFor(() => entry.closed, { timeoutMs: 2000, what: "the server to see the endless response's connection close" });
    assert.equal(entry.aborted, true, "the response was cut short by the client");
  });

  it("maxResponseBytes 1000: a 5000-byte body (streamed) is RESPONSE_TOO_LARGE and its stream is cancelled", TEST, async () => {
    const session = await streamSession({ maxResponseBytes: 1000, timeoutMs: 3000 });
    const outcome = await within(session.json("/api/slow-5000"), 3000, "json() of a 5000-byte body");
    expectCode(outcome, "RESPONSE_TOO_LARGE", "json() over maxResponseBytes");
    assert.equal(outcome.error.retryable, false);
    const entry = stream.last("/api/slow-5000");
    // The server needs ~1 s to send it all; a cancelled read closes the connection before.
    await waitFor(() => entry.closed, { timeoutMs: 2000, what: "the server to see the 5000-byte response close" });
    assert.equal(entry.aborted, true, `the body was cancelled (server sent ${entry.bytes} of 5000 bytes)`);
    assert.ok(entry.bytes < 5000, `server sent ${entry.bytes} bytes before the cancel`);
    // The same body with content-length, sent at once: refused too; small bodies still work.
    expectCode(await within(session.json("/api/5000"), 3000, "json() of 5000 bytes"), "RESPONSE_TOO_LARGE", "json() of 5000 bytes");
    const small = await within(session.json("/api/small"), 3000, "json() of a small body");
    assert.ok(small.ok, `a small body still works: ${small.error?.code}`);
    assert.deepEqual(small.value, { ok: true });
    session.dispose();
  });

  it("the default cap is 10,485,760 bytes: at the cap json() works, one byte over is RESPONSE_TOO_LARGE", TEST, async () => {
    const session = newSession({ retries: 0 });
    await session.login(DEMO.username, DEMO.password);
    const CAP = 10_485_760;
    server.fault({ path: "/api/v1/products" }, { hugeBody: CAP + 1 });
    const over = await within(session.json("/api/v1/products"), 5000, "json() one byte over the default cap");
    expectCode(over, "RESPONSE_TOO_LARGE", "json() one byte over the default cap");
    server.fault({ path: "/api/v1/products" }, { hugeBody: CAP });
    const at = await within(session.json("/api/v1/products"), 5000, "json() at the default cap");
    assert.ok(at.ok, `at the cap: ${at.error?.code} ${at.error?.message}`);
    assert.equal(at.value.length, CAP - 26);
    session.dispose();
  });
});

// ---------------------------------------------------------------------------------------
// 3. storage that never settles

describe("storage calls that never settle (timeoutMs 500)", () => {
  const TIMEOUT_MS = 500;

  it("storage.delete never settles: revoke() still reaches the server and settles", TEST, async () => {
    const storage = mapStorage();
    storage.delete = never;
    const session = newSession({ storage, timeoutMs: TIMEOUT_MS, retries: 0 });
    await session.login(DEMO.username, DEMO.password);
    clearCounters(server);
    const outcome = await within(session.revoke(), TIMEOUT_MS + 1500, "revoke() with a hung storage.delete");
    assert.equal(hits(server, "/auth/revoke"), 1, "the revoke request reached the server");
    assert.equal(server.stats.revoke, 1);
    if (!outcome.ok) expectCode(outcome, "STORAGE_ERROR", "revoke() with a hung storage.delete");
    checkInfo(session.info, "revoked");
    session.dispose();
  });

  it("storage.put never settles: login() resolves within ~timeoutMs and an error event STORAGE_ERROR follows", TEST, async () => {
    const storage = mapStorage();
    storage.put = never;
    const session = newSession({ storage, timeoutMs: TIMEOUT_MS, retries: 0 });
    const events = recordEvents(session);
    const outcome = await within(session.login(DEMO.username, DEMO.password), TIMEOUT_MS + 1000, "login() with a hung storage.put");
    assert.ok(outcome.ok, `login: ${outcome.error?.code}`);
    checkInfo(outcome.value, "active");
    await waitFor(() => events.error.length > 0, {
      timeoutMs: TIMEOUT_MS + 1500,
      what: "an error event for the hung storage.put",
    });
    assert.equal(events.error[0].code, "STORAGE_ERROR");
    const data = await within(session.json("/api/v1/products"), 3000, "json() after the hung put");
    assert.ok(data.ok, `the session works: ${data.error?.code}`);
    session.dispose();
  });

  it("storage.get never settles: restore() rejects STORAGE_ERROR within ~timeoutMs", TEST, async () => {
    const storage = mapStorage();
    storage.get = never;
    const session = newSession({ storage, timeoutMs: TIMEOUT_MS });
    const outcome = await within(session.restore(), TIMEOUT_MS + 1000, "restore() with a hung storage.get");
    expectCode(outcome, "STORAGE_ERROR", "restore() with a hung storage.get");
    checkInfo(session.info, "anonymous");
    assert.equal(server.stats.requests, 0);
    session.dispose();
  });

  it("storage.get never settles during the adoption after a refresh 401: refresh() settles (SESSION_EXPIRED)", TEST, async () => {
    const storage = mapStorage();
    const session = newSession({ storage, timeoutMs: TIMEOUT_MS, retries: 0 });
    const login = await within(session.login(DEMO.username, DEMO.password), 3000, "login()");
    assert.ok(login.ok, `login: ${login.error?.code}`);
    storage.get = never;
    server.fault(
      { path: "/auth/refresh" },
      { status: 401, body: { error: { name: "UnauthorizedError", code: "UNAUTHORIZED", message: "Refresh token revoked" } } },
    );
    // A read before the refresh and one after the 401 may each take timeoutMs.
    const outcome = await within(session.refresh(), 3 * TIMEOUT_MS + 1500, "refresh() with a hung storage.get");
    expectCode(outcome, "SESSION_EXPIRED", "refresh() rejected by the server");
    assert.equal(hits(server, "/auth/refresh"), 1);
    session.dispose();
  });
});

// ---------------------------------------------------------------------------------------
// 4. and 5. refresh tokens that are already expired

describe("expired refresh tokens", () => {
  it("credentials + a login whose refresh token is already expired: 5 json() calls, at most 5 logins", TEST, () =>
    withServer({ refreshTtlMs: -60_000 }, async (srv) => {
      const session = new AuthSession({
        host: srv.url,
        credentials: { username: DEMO.username, password: DEMO.password },
        retries: 0,
      });
      const codes = [];
      for (let i = 0; i < 5; i++) {
        const outcome = await within(session.json("/api/v1/products"), 5000, `json() #${i + 1}`);
        codes.push(outcome.ok ? "ok" : outcome.error?.code);
      }
      await sleep(300); // a timer-driven storm would show here
      session.dispose();
      const logins = hits(srv, "/auth/login");
      assert.ok(logins >= 1, "it logged in");
      assert.ok(logins <= 5, `${logins} logins for 5 json() calls (results: ${codes.join(", ")})`);
      assert.equal(hits(srv, "/auth/refresh"), 0, "an expired refresh token is never sent");
    }),
  );

  it("a refresh token past its expiry: refresh() rejects SESSION_EXPIRED without a request to /auth/refresh", TEST, () =>
    withServer({ accessTtlMs: 500, refreshTtlMs: 700 }, async (srv) => {
      const session = new AuthSession({ host: srv.url, autoRefresh: false, retries: 0 });
      const events = recordEvents(session);
      await session.login(DEMO.username, DEMO.password);
      await sleep(900); // past the refresh token's expiry
      clearCounters(srv);
      const outcome = await within(session.refresh(), 3000, "refresh() with an expired refresh token");
      expectCode(outcome, "SESSION_EXPIRED", "refresh() with an expired refresh token", { quiet: true });
      assert.equal(hits(srv, "/auth/refresh"), 0, "no request to /auth/refresh");
      assert.equal(srv.stats.requests, 0, "no request at all");
      checkInfo(session.info, "expired");
      assert.equal(events.expired.length, 1, "one expired event");
      session.dispose();
    }),
  );
});

// ---------------------------------------------------------------------------------------
// 6. redaction

const FILLER = "lorem ipsum dolor sit amet, consectetur adipiscing elit ".repeat(8).slice(0, 290);
const BIDI = /[\u202A-\u202E\u2066-\u2069]/u;

/** Every text of an error that the redaction rules cover (message, name, code, stack, JSON, …). */
const allTexts = (err) => [
  String(err?.message),
  String(err?.name),
  String(err?.code),
  String(err?.stack),
  JSON.stringify(err),
  ...errorTexts(err),
];

const envelope = (status, message, name = "ForbiddenError", code = "FORBIDDEN") => ({
  status,
  body: { error: { name, code, message } },
});

describe("redaction of secrets in server messages", () => {
  for (const which of ["access", "refresh"]) {
    it(`json(): an API error message of 290 chars of filler then the ${which} token leaks no 8-char piece of it`, TEST, async () => {
      const wire = wireFetch();
      const session = newSession({ fetch: wire.fetch, retries: 0 });
      await session.login(USER, PASSWORD);
      const secret = wire.issued[0]?.[which];
      assert.ok(secret && secret.length > 40, "the token was learnt from the wire");
      server.fault({ path: "/api/v1/products" }, envelope(403, `${FILLER}${secret}`));
      const outcome = await within(session.json("/api/v1/products"), 3000, "json() of an error envelope");
      const err = expectCode(outcome, "FORBIDDEN", "the server's error", { name: "ForbiddenError", quiet: true });
      assert.equal(err.status, 403);
      assertNoWindows(allTexts(err), secret, `the json() error (${which} token)`);
      session.dispose();
    });
  }

  it("json(): a token in the server's error name and code leaks no 8-char piece of it", TEST, async () => {
    const wire = wireFetch();
    const session = newSession({ fetch: wire.fetch, retries: 0 });
    await session.login(USER, PASSWORD);
    const { access, refresh } = wire.issued[0];
    server.fault(
      { path: "/api/v1/products" },
      envelope(403, "refused", `Forbidden${FILLER.slice(0, 40).replace(/\W/g, "")}${access}`, `CODE_${refresh}`),
    );
    const outcome = await within(session.json("/api/v1/products"), 3000, "json() of an error envelope");
    assert.equal(outcome.ok, false, "json() rejects");
    assertNoWindows(allTexts(outcome.error), access, "the json() error (access token in name)");
    assertNoWindows(allTexts(outcome.error), refresh, "the json() error (refresh token in code)");
    session.dispose();
  });

  it("login(): an error message of 290 chars of filler then the password leaks no 8-char piece of it", TEST, async () => {
    const session = newSession({ retries: 0 });
    server.fault(
      { path: "/auth/login" },
      envelope(401, `${FILLER}${PASSWORD}`, "UnauthorizedError", "UNAUTHORIZED"),
    );
    const outcome = await within(session.login(USER, PASSWORD), 3000, "login() with an echoing server");
    const err = expectCode(outcome, "UNAUTHORIZED", "the login error", { name: "UnauthorizedError", quiet: true });
    assertNoWindows(allTexts(err), PASSWORD, "the login error");
    session.dispose();
  });

  it(`login(): a password shorter than 4 chars ("${SHORT_PASSWORD}") echoed in the error message is redacted`, TEST, async () => {
    const session = newSession({ retries: 0 });
    server.fault(
      { path: "/auth/login" },
      envelope(401, `Invalid credentials: password "${SHORT_PASSWORD}" is wrong`, "UnauthorizedError", "UNAUTHORIZED"),
    );
    const outcome = await within(session.login(SHORT_USER, SHORT_PASSWORD), 3000, "login() with an echoing server");
    const err = expectCode(outcome, "UNAUTHORIZED", "the login error", { name: "UnauthorizedError", quiet: true });
    assertNoWindows(allTexts(err), SHORT_PASSWORD, "the login error (short password)");
    // The control: the same message without a secret in it is kept.
    assert.match(err.message, /Invalid credentials/);
    session.dispose();
  });

  it("bidi controls (U+202A–U+202E, U+2066–U+2069) in a server's message and name are stripped", TEST, async () => {
    const trick = "txt.exe\u202Eexe.txt \u202A\u202B\u202C\u202D\u2066\u2067\u2068\u2069 end";
    const session = newSession({ retries: 0 });
    server.fault({ path: "/auth/login" }, envelope(401, `login ${trick}`, "Unauthorized\u202EError", "UNAUTHORIZED"));
    const login = await within(session.login(DEMO.username, DEMO.password), 3000, "login()");
    assert.equal(login.ok, false);
    await session.login(DEMO.username, DEMO.password);
    server.fault({ path: "/api/v1/products" }, envelope(403, `api ${trick}`, "Forbidden\u2066Error", "FORBIDDEN"));
    const api = await within(session.json("/api/v1/products"), 3000, "json()");
    assert.equal(api.ok, false);
    for (const [what, err] of [
      ["login", login.error],
      ["json", api.error],
    ]) {
      assert.equal(err.code, what === "login" ? "UNAUTHORIZED" : "FORBIDDEN");
      for (const [field, text] of [
        ["message", err.message],
        ["name", err.name],
        ["code", err.code],
        ["JSON", JSON.stringify(err)],
        ["stack", err.stack],
      ]) {
        const found = BIDI.exec(String(text));
        assert.equal(found, null, `${what} error ${field} has U+${found?.[0].codePointAt(0).toString(16).toUpperCase()}`);
      }
      assert.match(err.message, /end/, `${what}: the visible text is kept`);
    }
    session.dispose();
  });
});

// ---------------------------------------------------------------------------------------
// 7. revoke() against a 2xx without a JSON body

describe("revoke(): any 2xx is success (RFC 7009)", () => {
  for (const [label, action] of [
    ["200 with an empty body", { status: 200 }],
    ["204 No Content", { status: 204 }],
    ["200 with a text body", { status: 200, body: "OK" }],
  ]) {
    it(`a ${label} resolves`, TEST, async () => {
      const session = newSession({ retries: 0 });
      await session.login(DEMO.username, DEMO.password);
      clearCounters(server);
      server.fault({ path: "/auth/revoke" }, action);
      const outcome = await within(session.revoke(), 3000, `revoke() answered ${label}`);
      assert.ok(outcome.ok, `revoke() rejected: ${outcome.error?.code} ${outcome.error?.message}`);
      assert.equal(outcome.value, undefined);
      assert.equal(hits(server, "/auth/revoke"), 1, "one revoke request, not retried");
      checkInfo(session.info, "revoked");
      session.dispose();
    });
  }
});

// ---------------------------------------------------------------------------------------
// 8. restore() racing login()

describe("restore() finishing after login()", () => {
  it("does not install the older stored pair: the next refresh sends the login's refresh token, no reuse", TEST, async () => {
    const storage = mapStorage();
    const key = "attack-restore-race";
    // An earlier process stored a pair; its refresh token was then spent elsewhere (rotated
    // by another instance whose write never landed), so sending it again is token reuse.
    const spyA = spyFetch();
    const a = newSession({ storage, storageKey: key, fetch: spyA.fetch });
    await a.login(DEMO.username, DEMO.password);
    await waitFor(() => storage.map.has(key), { what: "the first record" });
    a.dispose();
    const [, staleRefresh] = [...spyA.tokens];
    assert.ok(staleRefresh, "the stored refresh token was learnt from the wire");
    const spent = await fetch(`${server.url}/auth/refresh`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ refresh_token: staleRefresh }),
    });
    assert.equal(spent.status, 200);
    await spent.arrayBuffer();
    clearCounters(server);

    // The second session's first storage read returns what was stored when it was called,
    // but only after its login has finished (or after 1 s, if login waits for restore).
    let loginDone;
    const loginFinished = new Promise((resolve) => (loginDone = resolve));
    let firstGet = true;
    const slow = {
      get(k) {
        const value = storage.map.has(k) ? storage.map.get(k) : null;
        if (!firstGet) return value;
        firstGet = false;
        return Promise.race([loginFinished.then(() => sleep(20)), sleep(1000)]).then(() => value);
      },
      put: (k, v) => storage.put(k, v),
      delete: (k) => storage.delete(k),
    };
    const wire = wireFetch();
    const b = newSession({ storage: slow, storageKey: key, fetch: wire.fetch });
    const restoring = within(b.restore(), 3000, "restore()");
    const loggingIn = within(b.login(DEMO.username, DEMO.password), 3000, "login()").finally(() => loginDone());
    const [, login] = await Promise.all([restoring, loggingIn]);
    assert.ok(login.ok, `login: ${login.error?.code}`);
    checkInfo(b.info, "active");
    const loginPair = wire.issued.find((p) => p.path === "/auth/login");
    assert.ok(loginPair, "the login's pair was learnt from the wire");

    const refreshed = await within(b.refresh(), 3000, "refresh() after the race");
    const data = await within(b.json("/api/v1/products"), 3000, "json() after the race");
    const sent = wire.refreshTokensSent();
    assert.ok(!sent.includes(staleRefresh), "the older stored refresh token was sent again");
    assert.equal(server.stats.spentReuse, 0, "the server saw no refresh token reuse");
    assert.deepEqual(sent.length, 1, "one refresh");
    assert.ok(sent[0] === loginPair.refresh, "the refresh sent the login's refresh token");
    assert.ok(refreshed.ok, `refresh(): ${refreshed.error?.code}`);
    assert.ok(data.ok, `json(): ${data.error?.code}`);
    assert.equal(data.value.length, 4);
    b.dispose();
  });
});

// ---------------------------------------------------------------------------------------
// 9. nothing is sent after revoke() / dispose()

describe("nothing is sent after the session ends", () => {
  it("after revoke() resolves, a pending refresh retry is never sent", TEST, async () => {
    const wire = wireFetch();
    const session = newSession({ fetch: wire.fetch, retries: 3 });
    await session.login(DEMO.username, DEMO.password);
    const oldRefresh = wire.issued[0].refresh;
    clearCounters(server);
    server.fault({ path: "/auth/refresh" }, { status: 503, headers: { "retry-after": "1" } }, Infinity);
    const refreshing = within(session.refresh(), 4000, "the refresh() during revoke()");
    await waitFor(() => server.log.some((e) => e.path === "/auth/refresh" && e.status === 503), {
      what: "the first refresh attempt's 503",
    });
    const revoked = await within(session.revoke(), 3000, "revoke()");
    const revokedAt = performance.now();
    const logMark = server.log.length;
    assert.ok(revoked.ok, `revoke(): ${revoked.error?.code}`);
    assert.equal(hits(server, "/auth/revoke"), 1);
    await sleep(2000); // past the Retry-After of 1 s
    const late = server.log.slice(logMark).filter((e) => e.path.startsWith("/auth/"));
    assert.deepEqual(
      late.map((e) => e.path),
      [],
      "auth requests sent after revoke() resolved",
    );
    const lateWithToken = wire.requests.filter((r) => r.at > revokedAt && r.refreshToken === oldRefresh);
    assert.equal(lateWithToken.length, 0, "requests carrying the old refresh token after revoke()");
    assert.equal(hits(server, "/auth/refresh"), 1, "one refresh attempt in all");
    const outcome = await refreshing;
    if (outcome.ok) assert.notEqual(outcome.value?.state, "active", "the refresh() does not bring the session back");
    checkInfo(session.info, "revoked");
    session.dispose();
  });

  it("after dispose(), a pending login retry is never sent", TEST, async () => {
    const session = newSession({ retries: 3 });
    server.fault({ path: "/auth/login" }, { status: 503, headers: { "retry-after": "1" } }, Infinity);
    const login = session.login(DEMO.username, DEMO.password);
    login.catch(() => {}); // judged below
    await waitFor(() => server.log.some((e) => e.path === "/auth/login" && e.status === 503), {
      what: "the first login attempt's 503",
    });
    session.dispose();
    const outcome = await within(login, 1000, "login() after dispose()");
    await sleep(2000); // past the Retry-After of 1 s
    assert.equal(hits(server, "/auth/login"), 1, "login requests in all (a retry was sent after dispose())");
    expectCode(outcome, "DISPOSED", "login() after dispose()");
  });
});

// ---------------------------------------------------------------------------------------
// 1. a custom fetch that resolves to something that is not a Response
//
// The seven values run concurrently, each against a reference server of its own (a hung
// call costs its 3 s bound once per value, not seven times in a row).

/**
 * A `fetch` option that forwards to the global fetch, except for the paths matching
 * `bad`, for which it resolves (after 30 ms, so concurrent callers overlap) to a fresh
 * `make()` value without sending anything.
 */
function brokenFetch() {
  const state = { bad: null, make: null, badCalls: 0 };
  state.fetch = async (input, init) => {
    const request = new Request(input, init);
    const path = new URL(request.url).pathname;
    if (state.bad && state.bad.test(path)) {
      state.badCalls++;
      await sleep(30);
      return state.make();
    }
    return globalThis.fetch(request);
  };
  return state;
}

/** Runs `fn`; no uncaught exception or unhandled rejection may escape meanwhile. A failure of
 *  `fn` names the escaped ones too (they usually explain a hung call). The collector is
 *  process-wide: while the seven values run concurrently, an escape is seen by all of them. */
async function withoutEscapes(what, fn) {
  const trap = sharedProcessErrors();
  const mark = trap.mark();
  const describe = (list) =>
    [...new Set(list.map((x) => `${x && x.name}: ${String(x && x.message).slice(0, 100)}`))].slice(0, 4).join("; ");
  try {
    await fn();
  } catch (e) {
    const escaped = trap.since(mark);
    if (escaped.length > 0 && e instanceof assert.AssertionError) {
      e.message += ` [and ${escaped.length} uncaught exception(s)/unhandled rejection(s): ${describe(escaped)}]`;
    }
    throw e;
  }
  await sleep(50);
  const escaped = trap.since(mark);
  assert.equal(escaped.length, 0, `${what}: uncaught exceptions / unhandled rejections: ${describe(escaped)}`);
}

const BOUND = 3000;

describe("a custom fetch resolving to something that is not a Response", { concurrency: true }, () => {
  for (const [label, make] of NOT_RESPONSES) {
    describe(`resolving to ${label}`, { concurrency: false }, () => {
      const srv = useServer();
      const sessionOn = (extra = {}) => new AuthSession({ host: srv.url, autoRefresh: false, retries: 0, ...extra });

      it("login() rejects INVALID_RESPONSE; a later login with a good fetch works", TEST, () =>
        withoutEscapes("login() with a non-Response", async () => {
          const broken = brokenFetch();
          const session = sessionOn({ fetch: broken.fetch });
          Object.assign(broken, { bad: /^\/auth\/login$/, make });
          const outcome = await within(session.login(DEMO.username, DEMO.password), BOUND, "login()");
          expectCode(outcome, "INVALID_RESPONSE", "login() with a non-Response");
          assert.equal(broken.badCalls, 1);
          checkInfo(session.info, "anonymous");
          broken.bad = null;
          const again = await within(session.login(DEMO.username, DEMO.password), BOUND, "login() with a good fetch");
          assert.ok(again.ok, `the later login: ${again.error?.code}`);
          const data = await within(session.json("/api/v1/products"), BOUND, "json()");
          assert.ok(data.ok, `json(): ${data.error?.code}`);
          session.dispose();
        }),
      );

      it("refresh(): five concurrent callers all reject INVALID_RESPONSE; a later refresh works", TEST, () =>
        withoutEscapes("refresh() with a non-Response", async () => {
          const broken = brokenFetch();
          const session = sessionOn({ fetch: broken.fetch });
          await session.login(DEMO.username, DEMO.password);
          clearCounters(srv);
          Object.assign(broken, { bad: /^\/auth\/refresh$/, make });
          const waiters = Array.from({ length: 5 }, (_, i) => within(session.refresh(), BOUND, `refresh() waiter #${i + 1}`));
          const outcomes = await Promise.all(waiters);
          outcomes.forEach((o, i) => expectCode(o, "INVALID_RESPONSE", `refresh() waiter #${i + 1}`));
          assert.equal(broken.badCalls, 1, "one refresh request for all waiters");
          assert.equal(srv.stats.refresh, 0);
          checkInfo(session.info, "active");
          broken.bad = null;
          const again = await within(session.refresh(), BOUND, "refresh() with a good fetch");
          assert.ok(again.ok, `the later refresh: ${again.error?.code}`);
          const data = await within(session.json("/api/v1/products"), BOUND, "json()");
          assert.ok(data.ok, `json(): ${data.error?.code}`);
          assert.equal(srv.stats.spentReuse, 0);
          session.dispose();
        }),
      );

      it("json() and fetch() of an API path reject INVALID_RESPONSE; later calls work", TEST, () =>
        withoutEscapes("json()/fetch() with a non-Response", async () => {
          const broken = brokenFetch();
          const session = sessionOn({ fetch: broken.fetch });
          await session.login(DEMO.username, DEMO.password);
          Object.assign(broken, { bad: /^\/api\//, make });
          const viaJson = await within(session.json("/api/v1/products"), BOUND, "json()");
          expectCode(viaJson, "INVALID_RESPONSE", "json() with a non-Response");
          const viaFetch = await within(session.fetch("/api/v1/products"), BOUND, "fetch()");
          expectCode(viaFetch, "INVALID_RESPONSE", "fetch() with a non-Response");
          assert.equal(broken.badCalls, 2);
          broken.bad = null;
          const data = await within(session.json("/api/v1/products"), BOUND, "json() with a good fetch");
          assert.ok(data.ok, `json(): ${data.error?.code}`);
          assert.equal(data.value.length, 4);
          const res = await within(session.fetch("/api/v1/products"), BOUND, "fetch() with a good fetch");
          assert.ok(res.ok, `fetch(): ${res.error?.code}`);
          assert.equal(res.value.status, 200);
          await res.value.arrayBuffer();
          session.dispose();
        }),
      );
    });
  }
});
