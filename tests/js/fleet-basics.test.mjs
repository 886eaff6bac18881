// The fleet issue's defects that a single process shows (issue 13), each as the attack that
// showed it on 0.2.0:
//   - a stored pair was used only after an explicit restore(): every new instance and every
//     pool miss logged in with the password;
//   - SessionPool disposed busy sessions (30 parallel calls over 3 tenants, max 2: 28
//     DISPOSED) and stringified object keys;
//   - after a rejected refresh, a session logged in as bob logged in again as alice;
//   - usernames with lone surrogates were silently altered (three names, one record);
//   - an encryptionKey the constructor accepted (Int8Array, DataView, an encrypt-only
//     CryptoKey) failed every write.
import { describe, it } from "node:test";
import assert from "node:assert/strict";

import { AuthSession, DEMO, mapStorage, rejectsWith, throwsWith, useServer } from "./helpers.mjs";
import { within } from "./attack-helpers.mjs";
import { SessionPool } from "../../pkg/node.mjs";

const BOB = Object.freeze({ username: "bob", password: "bob-password" });
const server = useServer({ users: { demo: "demo-password", bob: "bob-password" } });

describe("look before login", () => {
  it("a new session with storage adopts the stored pair on its first call: no second login", async () => {
    const storage = mapStorage();
    const first = new AuthSession({ host: server.url, credentials: DEMO, storage, autoRefresh: false });
    await first.json("/api/v1/products");
    assert.equal(server.stats.login, 1);
    // A new process (or isolate), no restore() call.
    const second = new AuthSession({ host: server.url, credentials: DEMO, storage, autoRefresh: false });
    const tokens = [];
    second.on("tokens", (e) => tokens.push(e.reason));
    assert.ok(Array.isArray(await second.json("/api/v1/products")));
    assert.equal(server.stats.login, 1, "the second session made no login");
    assert.deepEqual(tokens, ["adopt"]);
    first.dispose();
    second.dispose();
  });

  it("an explicit login() always logs in", async () => {
    const storage = mapStorage();
    const first = new AuthSession({ host: server.url, credentials: DEMO, storage, autoRefresh: false });
    await first.login();
    const second = new AuthSession({ host: server.url, credentials: DEMO, storage, autoRefresh: false });
    await second.login();
    assert.equal(server.stats.login, 2);
    first.dispose();
    second.dispose();
  });
});

describe("conditional writes", () => {
  it("a storage with putIfNewer is written through it, with each record's version", async () => {
    const map = new Map();
    const writes = [];
    const storage = {
      get: (k) => map.get(k)?.value ?? null,
      put() {
        throw new Error("put must not be used when putIfNewer exists");
      },
      putIfNewer(k, value, version) {
        writes.push(version);
        const cur = map.get(k);
        if (cur && cur.version >= version) return false;
        map.set(k, { value, version });
        return true;
      },
      delete: (k) => map.delete(k),
    };
    const errors = [];
    const session = new AuthSession({ host: server.url, credentials: DEMO, storage, autoRefresh: false });
    session.on("error", (e) => errors.push(e.code));
    await session.login();
    await session.refresh();
    await session.refresh();
    assert.deepEqual(writes, [1, 2, 3]);
    assert.equal(JSON.parse([...map.values()][0].value).version, 3);
    assert.deepEqual(errors, []);
    session.dispose();
  });
});

describe("a putIfNewer that misbehaves", () => {
  const cases = {
    "throws synchronously": () => {
      throw new Error("sync failure demo-password");
    },
    rejects: () => Promise.reject(new Error("async failure")),
    "answers garbage": () => ({ then: 42 }),
    "never settles": () => new Promise(() => {}),
  };
  for (const [name, putIfNewer] of Object.entries(cases)) {
    it(`${name}: the login still settles, the failure is a STORAGE_ERROR event at most, nothing leaks`, async () => {
      const map = new Map();
      const storage = { get: (k) => map.get(k) ?? null, put: () => {}, putIfNewer, delete: (k) => map.delete(k) };
      const errors = [];
      const session = new AuthSession({ host: server.url, credentials: DEMO, storage, timeoutMs: 300, autoRefresh: false });
      session.on("error", (e) => errors.push(e));
      const outcome = await within(session.login(), 3000, `login with a putIfNewer that ${name}`);
      assert.equal(outcome.ok, true, String(outcome.error?.code));
      assert.ok(errors.every((e) => e.code === "STORAGE_ERROR"), errors.map((e) => e.code).join());
      if (name !== "answers garbage") assert.equal(errors.length, 1, name);
      for (const e of errors) assert.doesNotMatch(JSON.stringify(e) + e.message + String(e.stack), /demo-password/);
      assert.ok(Array.isArray(await session.json("/api/v1/products")));
      session.dispose();
    });
  }
});

describe("SessionPool", () => {
  it("never disposes a session in use: 30 parallel calls over 3 tenants with max 2 all succeed", async () => {
    const storage = mapStorage();
    const pool = new SessionPool({
      max: 2,
      create: (tenant) =>
        new AuthSession({ host: server.url, credentials: DEMO, storage, storageKey: `tenant:${tenant}`, autoRefresh: false }),
    });
    const calls = [];
    for (let i = 0; i < 30; i++) calls.push(pool.get(["a", "b", "c"][i % 3]).json("/api/v1/products"));
    const results = await Promise.allSettled(calls);
    const failed = results.filter((r) => r.status === "rejected").map((r) => r.reason.code);
    assert.deepEqual(failed, [], "no call broken by an eviction");
    // Idle now: the next get trims the pool back to its bound.
    pool.get("a");
    assert.equal(pool.size, 2);
    pool.dispose();
  });

  it("a pool miss finds the tenant's pair in storage: one login per tenant, not one per get", async () => {
    const storage = mapStorage();
    const pool = new SessionPool({
      max: 2,
      create: (tenant) =>
        new AuthSession({ host: server.url, credentials: DEMO, storage, storageKey: `tenant:${tenant}`, autoRefresh: false }),
    });
    for (const tenant of ["a", "b", "c", "a", "b", "c"]) await pool.get(tenant).json("/api/v1/products");
    assert.equal(server.stats.login, 3, "one login per tenant");
    pool.dispose();
  });

  it("keys are strings: anything else is a CONFIG_ERROR, never a stringified key", () => {
    const pool = new SessionPool({ max: 2, create: () => new AuthSession({ host: server.url }) });
    for (const key of [{}, { id: 1 }, 42, null, undefined, Symbol("x")]) {
      throwsWith(() => pool.get(key), { code: "CONFIG_ERROR", retryable: false });
    }
    assert.equal(pool.size, 0);
    pool.dispose();
  });
});

describe("one identity per session", () => {
  it("a session logged in as bob never logs in again as its credentials' account", async () => {
    const seen = [];
    const fetchFn = async (input, init) => {
      if (String(input).endsWith("/auth/login")) seen.push(JSON.parse(init.body).username);
      return fetch(input, init);
    };
    const session = new AuthSession({ host: server.url, credentials: DEMO, fetch: fetchFn, autoRefresh: false });
    await session.login(BOB.username, BOB.password);
    server.revokeAll(); // bob's refresh token is rejected from now on
    server.expireAccessTokens();
    await rejectsWith(session.json("/api/v1/products"), { code: "SESSION_EXPIRED", status: 401 });
    assert.deepEqual(seen, ["bob"], "no login as demo");
    assert.equal(session.info.state, "expired");
    session.dispose();
  });
});

describe("inputs accepted are inputs that work", () => {
  it("credentials with a lone surrogate are a CONFIG_ERROR before any request", async () => {
    for (const username of ["a\uD800", "\uDC00b", "x\uD83Dy"]) {
      throwsWith(() => new AuthSession({ host: server.url, credentials: { username, password: "p" } }), { code: "CONFIG_ERROR" });
    }
    const session = new AuthSession({ host: server.url });
    await rejectsWith(session.login("demo\uD800", "demo-password"), { code: "CONFIG_ERROR" });
    await rejectsWith(session.login("demo", "pw\uDFFF"), { code: "CONFIG_ERROR" });
    assert.equal(server.stats.requests, 0);
    // A well-formed pair of surrogates (an emoji) is fine.
    assert.doesNotThrow(() => new AuthSession({ host: server.url, credentials: { username: "😀", password: "p" } }));
    session.dispose();
  });

  it("every encryptionKey the constructor accepts writes and reads; the rest are CONFIG_ERROR", async () => {
    const raw = crypto.getRandomValues(new Uint8Array(32));
    const usable = [
      raw,
      raw.buffer.slice(0),
      new Int8Array(raw.buffer.slice(0)),
      new DataView(raw.buffer.slice(0)),
      new Uint16Array(raw.buffer.slice(0, 16)),
      await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]),
    ];
    for (const encryptionKey of usable) {
      const storage = mapStorage();
      const errors = [];
      const a = new AuthSession({ host: server.url, credentials: DEMO, storage, encryptionKey, autoRefresh: false });
      a.on("error", (e) => errors.push(e.code));
      await a.login();
      const b = new AuthSession({ host: server.url, credentials: DEMO, storage, encryptionKey, autoRefresh: false });
      assert.notEqual(await b.restore(), null, `${Object.prototype.toString.call(encryptionKey)} reads back`);
      assert.deepEqual(errors, []);
      a.dispose();
      b.dispose();
    }
    const encryptOnly = await crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt"]);
    const hmac = await crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    for (const encryptionKey of [encryptOnly, hmac, new Uint8Array(24), "0123456789abcdef", [1, 2, 3]]) {
      throwsWith(() => new AuthSession({ host: server.url, storage: mapStorage(), encryptionKey }), { code: "CONFIG_ERROR" });
    }
  });
});
