// Many sessions, one store (issue 8): the record bound to its host and account, look
// before refresh, the optional lease, and encryption at rest — against the reference
// server with its reuse detection on (a spent refresh token sent again revokes the family).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { webcrypto } from "node:crypto";

import { AuthSession, DEMO, mapStorage, sleep, useServer, checkAuthError } from "./helpers.mjs";

const server = useServer({ users: { demo: "demo-password", other: "other-password" } });
const OTHER = { username: "other", password: "other-password" };

function session(options = {}) {
  return new AuthSession({ host: server.url, autoRefresh: false, credentials: DEMO, ...options });
}

/** A Map-backed store with the lease capability, its TTL honoured on a real clock. */
function leaseStorage(map = new Map()) {
  const leases = new Map();
  let next = 0;
  const calls = { acquire: 0, granted: 0, release: 0 };
  return {
    map,
    calls,
    get: (k) => map.get(k) ?? null,
    put: (k, v) => void map.set(k, v),
    delete: (k) => void map.delete(k),
    async acquire(key, ttlMs) {
      calls.acquire++;
      await sleep(1);
      const held = leases.get(key);
      if (held && held.until > Date.now()) return null;
      const id = `lease-${++next}`;
      leases.set(key, { id, until: Date.now() + ttlMs });
      calls.granted++;
      return id;
    },
    async release(key, id) {
      calls.release++;
      if (leases.get(key)?.id === id) leases.delete(key);
    },
  };
}

describe("storage bound to its account and host", () => {
  it("the default key holds the host and a hash of the account, never the username", async () => {
    const storage = mapStorage();
    const a = session({ storage });
    await a.login();
    const [key] = [...storage.map.keys()];
    assert.match(key, /^auth-session:http:\/\/127\.0\.0\.1:\d+#[0-9a-f]{16}$/);
    assert.ok(!key.includes("demo"), key);
    const record = JSON.parse(storage.map.get(key));
    assert.equal(record.v, 2);
    assert.equal(record.origin, server.url);
    assert.equal(record.account, key.split("#")[1]);
    assert.equal(record.version, 1);
    a.dispose();
  });

  it("two accounts on one store never get each other's tokens (default keys and one shared key)", async () => {
    const storage = mapStorage();
    const a = session({ storage });
    const b = session({ storage, credentials: OTHER });
    await a.login();
    assert.equal(await b.restore(), null, "B's default key is its own");
    await b.login();
    assert.equal(storage.map.size, 2);
    a.dispose();
    b.dispose();

    const shared = mapStorage();
    const a2 = session({ storage: shared, storageKey: "tenant" });
    await a2.login();
    const b2 = session({ storage: shared, storageKey: "tenant", credentials: OTHER });
    assert.equal(await b2.restore(), null, "a record of another account is absent");
    const echoes = [];
    // B's own login then works and its calls go out as B.
    await b2.login();
    echoes.push(await b2.json("/api/v1/echo", { method: "POST", json: {} }));
    assert.equal(echoes[0].clientId, (await b2.refresh()).clientId);
    a2.dispose();
    b2.dispose();
  });

  it("two hosts sharing one storageKey never cross", async () => {
    const storage = mapStorage();
    const a = session({ storage, storageKey: "one-key" });
    await a.login();
    // The same server under another name: another host for the session.
    const otherHost = server.url.replace("127.0.0.1", "localhost");
    const b = session({ storage, storageKey: "one-key", host: otherHost });
    assert.equal(await b.restore(), null, "a record of another host is absent");
    a.dispose();
    b.dispose();
  });
});

describe("look before you refresh (plain storage, no lease)", () => {
  it("A refreshes, later B refreshes: B adopts A's pair and sends no spent token", async () => {
    const storage = mapStorage();
    const a = session({ storage });
    await a.login();
    const b = session({ storage });
    assert.equal((await b.restore()).state, "active");
    const adopted = [];
    b.on("tokens", (info) => adopted.push(info.reason));
    await a.refresh();
    assert.equal(server.stats.refresh, 1);
    await b.refresh();
    assert.deepEqual(adopted, ["adopt"], "B took A's newer pair from the store");
    assert.equal(server.stats.refresh, 1, "B sent no refresh");
    assert.equal(server.stats.spentReuse, 0);
    assert.equal((await b.json("/api/v1/products")).length, 4);
    assert.equal((await a.json("/api/v1/products")).length, 4);
    a.dispose();
    b.dispose();
  });

  it("versions grow with every rotation and an older record never replaces a newer one", async () => {
    const storage = mapStorage();
    const a = session({ storage });
    await a.login();
    const key = [...storage.map.keys()][0];
    const version = () => JSON.parse(storage.map.get(key)).version;
    assert.equal(version(), 1);
    await a.refresh();
    await a.refresh();
    assert.equal(version(), 3);
    // A second instance logging in on its own stores above what it finds.
    const b = session({ storage });
    await b.login();
    assert.equal(version(), 4);
    a.dispose();
    b.dispose();
  });
});

describe("the lease: one refresh for many sessions", () => {
  it("8 sessions sharing a lease-capable store, all calling with an expired token: 1 refresh, 0 reuse, 0 failures", async () => {
    const storage = leaseStorage();
    const first = session({ storage });
    await first.login();
    const sessions = [first];
    for (let i = 1; i < 8; i++) {
      const s = session({ storage });
      assert.equal((await s.restore()).state, "active");
      sessions.push(s);
    }
    server.expireAccessTokens();
    const results = await Promise.allSettled(sessions.flatMap((s) => [s.refresh(), s.json("/api/v1/products")]));
    const failed = results.filter((r) => r.status === "rejected");
    assert.deepEqual(failed.map((r) => r.reason?.code), [], "no call failed");
    assert.equal(server.stats.refresh, 1, "one refresh for all eight");
    assert.equal(server.stats.spentReuse, 0);
    assert.ok(storage.calls.granted >= 1);
    assert.equal(storage.calls.release, storage.calls.granted, "every lease taken was given back");
    for (const s of sessions) s.dispose();
  });

  it("a storage whose acquire throws is reported and never blocks the refresh", async () => {
    const storage = { ...leaseStorage(), acquire: async () => { throw new Error("lease backend down"); } };
    const a = session({ storage });
    const errors = [];
    a.on("error", (e) => errors.push(e));
    await a.login();
    await a.refresh();
    assert.equal(server.stats.refresh, 1);
    assert.equal(errors.length, 1);
    checkAuthError(errors[0], { code: "STORAGE_ERROR" });
    a.dispose();
  });

  it("an acquire that never settles or answers garbage is reported, and the refresh still goes out", async () => {
    for (const acquire of [() => new Promise(() => {}), () => 42, () => ({ id: "x" })]) {
      const storage = { ...leaseStorage(), acquire };
      const a = session({ storage, timeoutMs: 300 });
      const errors = [];
      a.on("error", (e) => errors.push(e));
      await a.login();
      const before = server.stats.refresh;
      const started = Date.now();
      await a.refresh();
      assert.equal(server.stats.refresh - before, 1);
      assert.ok(Date.now() - started < 2_000, "bounded by timeoutMs");
      assert.equal(errors.length, 1);
      checkAuthError(errors[0], { code: "STORAGE_ERROR" });
      a.dispose();
    }
  });

  it("acquire without release (or the reverse) is a CONFIG_ERROR", () => {
    const { acquire, release, ...plain } = leaseStorage();
    for (const storage of [{ ...plain, acquire }, { ...plain, release }]) {
      assert.throws(() => session({ storage }), (e) => e.code === "CONFIG_ERROR");
    }
  });
});

describe("encryption at rest", () => {
  const KEY = webcrypto.getRandomValues(new Uint8Array(32));

  it("the record is sealed: no token in it, and a session with the same key restores it", async () => {
    const storage = mapStorage();
    const a = session({ storage, encryptionKey: KEY });
    const tokens = new Set();
    const spy = async (input, init) => {
      const res = await fetch(input, init);
      if (String(input).includes("/auth/")) {
        const body = await res.clone().json();
        for (const k of ["access_token", "refresh_token"]) if (body.data?.[k]) tokens.add(body.data[k]);
      }
      return res;
    };
    const b0 = session({ storage, encryptionKey: KEY, fetch: spy });
    await b0.login();
    const [value] = [...storage.map.values()];
    assert.match(value, /^enc1\./);
    for (const t of tokens) {
      for (let i = 0; i + 8 <= t.length; i += 8) assert.ok(!value.includes(t.slice(i, i + 8)), "no piece of a token");
    }
    assert.equal((await a.restore()).state, "active");
    assert.equal((await a.json("/api/v1/products")).length, 4);
    a.dispose();
    b0.dispose();
  });

  it("a wrong key, a tampered record and a truncated one are absent and reported", async () => {
    const storage = mapStorage();
    const a = session({ storage, encryptionKey: KEY });
    await a.login();
    const [key] = [...storage.map.keys()];
    const sealed = storage.map.get(key);
    const variants = [
      [sealed, webcrypto.getRandomValues(new Uint8Array(32))],
      [sealed.slice(0, -3) + (sealed.at(-3) === "A" ? "B" : "A") + sealed.slice(-2), KEY],
      [sealed.slice(0, 20), KEY],
      ["enc1.", KEY],
    ];
    for (const [value, encryptionKey] of variants) {
      storage.map.set(key, value);
      const b = session({ storage, encryptionKey });
      const errors = [];
      b.on("error", (e) => errors.push(e));
      assert.equal(await b.restore(), null);
      assert.equal(errors.length, 1);
      checkAuthError(errors[0], { code: "STORAGE_ERROR" });
      b.dispose();
    }
    a.dispose();
  });

  it("encryptionKey is checked up front: bytes of the wrong length, or no storage, are a CONFIG_ERROR", () => {
    for (const options of [{ encryptionKey: new Uint8Array(15), storage: mapStorage() }, { encryptionKey: KEY }]) {
      assert.throws(() => session(options), (e) => e.code === "CONFIG_ERROR");
    }
  });
});

describe("many tenants in one process: SessionPool", () => {
  it("one session per key, distinct records, at most max alive (the least recently used disposed)", async () => {
    const { SessionPool } = await import("../../pkg/node.mjs");
    const storage = mapStorage();
    const accounts = { demo: DEMO, other: OTHER };
    const created = [];
    const pool = new SessionPool({
      max: 2,
      create: (tenant) => {
        const s = session({ storage, credentials: accounts[tenant.split(":")[0]] });
        created.push(tenant);
        return s;
      },
    });
    const a = pool.get("demo:1");
    assert.equal(pool.get("demo:1"), a, "the same session for the same key");
    const b = pool.get("other:1");
    await a.login();
    await b.login();
    assert.equal(storage.map.size, 2, "each account its own record");
    pool.get("demo:1"); // used last: "other:1" is now the oldest
    pool.get("demo:2"); // a third: "other:1" goes
    assert.equal(pool.size, 2);
    await assert.rejects(b.json("/api/v1/products"), (e) => e.code === "DISPOSED");
    assert.equal((await a.json("/api/v1/products")).length, 4);
    // Evicted and asked for again: a new session, which restores from its record.
    const b2 = pool.get("other:1");
    assert.notEqual(b2, b);
    assert.equal((await b2.restore()).state, "active");
    assert.equal(server.stats.login, 2, "the evicted tenant did not log in again");
    assert.deepEqual(created, ["demo:1", "other:1", "demo:2", "other:1"]);
    pool.dispose();
    assert.equal(pool.size, 0);
    assert.throws(() => new SessionPool({ max: 0, create: () => a }), TypeError);
  });
});
