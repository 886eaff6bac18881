// revoke() and options.storage (sync and async), restore(), STORAGE_ERROR.

import { describe, it, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import {
  AuthSession,
  startServer,
  DEMO,
  clearCounters,
  rejectsWith,
  checkAuthError,
  throwsWith,
  recordEvents,
  checkInfo,
  mapStorage,
  asyncMapStorage,
  waitFor,
  sleep,
  useServer,
} from "./helpers.mjs";

const server = useServer();

const newSession = (extra = {}) => new AuthSession({ host: server.url, autoRefresh: false, ...extra });

describe("revoke()", () => {
  it("revokes on the server, clears locally, emits revoked; later calls NOT_AUTHENTICATED", async () => {
    const session = newSession();
    const events = recordEvents(session);
    await session.login(DEMO.username, DEMO.password);
    const token = await session.getAccessToken();
    assert.equal(await session.revoke(), undefined);
    assert.equal(server.stats.revoke, 1);
    checkInfo(session.info, "revoked");
    assert.equal(events.revoked.length, 1);
    checkInfo(events.revoked[0], "revoked");
    // The server no longer accepts the old access token.
    const res = await fetch(`${server.url}/api/v1/products`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.status, 401);
    clearCounters(server);
    await rejectsWith(session.json("/api/v1/products"), { code: "NOT_AUTHENTICATED" });
    await rejectsWith(session.fetch("/api/v1/products"), { code: "NOT_AUTHENTICATED" });
    await rejectsWith(session.refresh(), { code: "NOT_AUTHENTICATED" });
    await rejectsWith(session.getAccessToken(), { code: "NOT_AUTHENTICATED" });
    assert.equal(server.stats.requests, 0, "no request carries the old tokens");
    // A new login starts over.
    await session.login(DEMO.username, DEMO.password);
    assert.equal((await session.json("/api/v1/products")).length, 4);
    session.dispose();
  });

  it("a failing server call still clears the session, and the error is reported", async () => {
    const session = newSession({ retries: 0 });
    const events = recordEvents(session);
    await session.login(DEMO.username, DEMO.password);
    server.fault({ path: "/auth/revoke" }, { status: 500, body: "<html>down</html>" });
    await rejectsWith(session.revoke(), { code: "SERVER_ERROR", status: 500 });
    checkInfo(session.info, "revoked");
    assert.equal(events.revoked.length, 1);
    clearCounters(server);
    await rejectsWith(session.json("/api/v1/products"), { code: "NOT_AUTHENTICATED" });
    assert.equal(server.stats.requests, 0);
    session.dispose();
  });

  it("a revoke that cannot reach the server still clears (NETWORK_ERROR reported)", async () => {
    const session = newSession({ retries: 0 });
    await session.login(DEMO.username, DEMO.password);
    server.fault({ path: "/auth/revoke" }, { drop: true });
    await rejectsWith(session.revoke(), { code: "NETWORK_ERROR" });
    checkInfo(session.info, "revoked");
    session.dispose();
  });

  it("no late refresh brings a revoked session back", async () => {
    const session = newSession();
    await session.login(DEMO.username, DEMO.password);
    server.fault({ path: "/auth/refresh" }, { delayMs: 300 });
    // The refresh in flight resolves or rejects, but the session stays revoked.
    const refreshing = session.refresh().catch(() => {});
    await sleep(50);
    await session.revoke();
    await refreshing;
    await sleep(350);
    checkInfo(session.info, "revoked");
    await rejectsWith(session.json("/api/v1/products"), { code: "NOT_AUTHENTICATED" });
    assert.equal(server.stats.spentReuse, 0);
    session.dispose();
  });

  it("revoke() before login is harmless and leaves the session revoked", async () => {
    const session = newSession();
    await session.revoke();
    assert.equal(server.stats.revoke, 0, "nothing to revoke on the server");
    checkInfo(session.info, "revoked");
    await rejectsWith(session.json("/api/v1/products"), { code: "NOT_AUTHENTICATED" });
    session.dispose();
  });

  it("revoke() cancels the auto-refresh timer", async () => {
    const srv = await startServer({ accessTtlMs: 1200 });
    try {
      const session = new AuthSession({ host: srv.url, refreshMarginSeconds: 1 });
      await session.login(DEMO.username, DEMO.password);
      await session.revoke();
      await sleep(900); // past the timer's due time (600 ms)
      assert.equal(srv.stats.refresh, 0);
      session.dispose();
    } finally {
      await srv.close();
    }
  });
});

describe("storage", () => {
  for (const [kind, make] of [
    ["sync Map", mapStorage],
    ["async", asyncMapStorage],
  ]) {
    it(`${kind} storage: login writes, another session restores and calls the API, revoke deletes`, async () => {
      const storage = make();
      const first = newSession({ storage, storageKey: "demo-session" });
      await first.login(DEMO.username, DEMO.password);
      await waitFor(() => storage.map.has("demo-session"), { what: "the stored record" });
      assert.equal(storage.map.size, 1);
      const record = storage.map.get("demo-session");
      assert.equal(typeof record, "string");
      first.dispose();
      assert.ok(storage.map.has("demo-session"), "dispose() keeps the stored record");

      const second = newSession({ storage, storageKey: "demo-session" });
      const events = recordEvents(second);
      const info = await second.restore();
      checkInfo(info, "active");
      assert.equal(info.clientId, 123456);
      assert.deepEqual(second.info, info);
      assert.equal(events.tokens.length, 1, "restore emits tokens");
      assert.equal((await second.json("/api/v1/products")).length, 4);
      assert.equal(server.stats.login, 1, "no second login");
      assert.equal(server.stats.refresh, 0);

      // A refresh updates the record.
      await second.refresh();
      await waitFor(() => storage.map.get("demo-session") !== record, { what: "the updated record" });

      await second.revoke();
      assert.equal(storage.map.has("demo-session"), false, "revoke deletes the record");
      assert.deepEqual(
        storage.calls.filter(([op]) => op === "delete"),
        [["delete", "demo-session"]],
      );
      const third = newSession({ storage, storageKey: "demo-session" });
      assert.equal(await third.restore(), null);
      checkInfo(third.info, "anonymous");
      second.dispose();
      third.dispose();
    });
  }

  it("the default storageKey is used when none is given", async () => {
    const storage = mapStorage();
    const session = newSession({ storage });
    await session.login(DEMO.username, DEMO.password);
    await waitFor(() => storage.map.size === 1);
    const [key] = storage.map.keys();
    assert.equal(typeof key, "string");
    assert.ok(key.length > 0);
    const other = newSession({ storage });
    checkInfo(await other.restore(), "active");
    session.dispose();
    other.dispose();
  });

  it("restore() with an empty storage resolves null and makes no request", async () => {
    const session = newSession({ storage: mapStorage() });
    assert.equal(await session.restore(), null);
    assert.equal(server.stats.requests, 0);
    checkInfo(session.info, "anonymous");
    session.dispose();
  });

  it("a restored session whose access token the server expired refreshes on the 401", async () => {
    const storage = mapStorage();
    const first = newSession({ storage });
    await first.login(DEMO.username, DEMO.password);
    await waitFor(() => storage.map.size === 1);
    first.dispose();
    server.expireAccessTokens();
    const second = newSession({ storage });
    await second.restore();
    assert.equal((await second.json("/api/v1/products")).length, 4);
    assert.equal(server.stats.refresh, 1);
    second.dispose();
  });

  it("a corrupt record restores nothing and is reported as a STORAGE_ERROR event", async () => {
    const wrongType = { get: () => 42, put() {}, delete() {} };
    const values = ["not json", "{}", '{"v":99}', JSON.stringify({ v: 2, access_token: "" }), "[]", "null", "7"];
    const storages = [...values.map((v) => mapStorage(new Map([["k", v]]))), wrongType];
    for (const storage of storages) {
      const session = newSession({ storage, storageKey: "k" });
      const errors = [];
      session.on("error", (e) => errors.push(e));
      assert.equal(await session.restore(), null);
      assert.equal(errors.length, 1, "one error event");
      checkAuthError(errors[0], { code: "STORAGE_ERROR", name: "StorageError", status: 0, retryable: false });
      checkInfo(session.info, "anonymous");
      session.dispose();
    }
  });

  it("a record of the previous format (0.1) restores nothing, without an error event", async () => {
    const v1 = JSON.stringify({ v: 1, access_token: "eyJ.a", refresh_token: "eyJ.r", access_expires_at: Date.now() + 3.6e6, refresh_expires_at: Date.now() + 8.64e7, client_id: 1 });
    const session = newSession({ storage: mapStorage(new Map([["k", v1]])), storageKey: "k" });
    const errors = [];
    session.on("error", (e) => errors.push(e));
    assert.equal(await session.restore(), null);
    assert.equal(errors.length, 0);
    session.dispose();
  });

  it("a storage that throws is STORAGE_ERROR (sync throw and rejected promise)", async () => {
    const throwing = { get() { throw new Error("disk on fire"); }, put() {}, delete() {} };
    await rejectsWith(newSession({ storage: throwing }).restore(), { code: "STORAGE_ERROR" });
    const rejecting = { get: async () => { throw new TypeError("kv down"); }, put() {}, delete() {} };
    await rejectsWith(newSession({ storage: rejecting }).restore(), { code: "STORAGE_ERROR" });
  });

  it("a failing put after login is an error event; the login itself succeeds", async () => {
    const storage = { get: () => null, put: async () => { throw new Error("quota"); }, delete() {} };
    const session = newSession({ storage });
    const events = recordEvents(session);
    checkInfo(await session.login(DEMO.username, DEMO.password), "active");
    await waitFor(() => events.error.length === 1, { what: "an error event" });
    assert.equal(events.error[0].code, "STORAGE_ERROR");
    assert.equal((await session.json("/api/v1/products")).length, 4);
    session.dispose();
  });

  it("a failing delete on revoke still clears the session and reports STORAGE_ERROR", async () => {
    const storage = mapStorage();
    storage.delete = () => {
      throw new Error("read-only");
    };
    const session = newSession({ storage });
    await session.login(DEMO.username, DEMO.password);
    await rejectsWith(session.revoke(), { code: "STORAGE_ERROR" });
    checkInfo(session.info, "revoked");
    assert.equal(server.stats.revoke, 1, "the server revoke still happens");
    session.dispose();
  });

  it("a storage without put (or get, or delete) is CONFIG_ERROR", () => {
    for (const storage of [
      { get() {}, delete() {} },
      { put() {}, delete() {} },
      { get() {}, put() {} },
      { get() {}, put: "nope", delete() {} },
    ]) {
      throwsWith(() => newSession({ storage }), { code: "CONFIG_ERROR" });
    }
  });

  it("a Map itself is not a TokenStorage (no put); a Map wrapper is", () => {
    throwsWith(() => newSession({ storage: new Map() }), { code: "CONFIG_ERROR" });
    newSession({ storage: mapStorage() }).dispose();
  });
});
