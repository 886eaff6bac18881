// axios and ky with the session supplying the token (auth-session/clients), against the
// reference server: N concurrent 401s make one refresh, every call ends in a 200, and the
// token never goes to an origin the session does not allow.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import axios from "axios";
import ky from "ky";

import { AuthSession, DEMO, useServer } from "./helpers.mjs";
import { useAxios, kyHooks } from "../../pkg/clients.js";

const server = useServer();
const N = 50;

/** A server on another origin that records the Authorization headers it receives. */
async function otherOrigin() {
  const seen = [];
  const s = http.createServer((req, res) => {
    seen.push(req.headers.authorization ?? null);
    res.setHeader("content-type", "application/json");
    res.end('{"ok":true}');
  });
  await new Promise((r) => s.listen(0, "127.0.0.1", r));
  return { url: `http://localhost:${s.address().port}`, seen, close: () => new Promise((r) => s.close(r)) };
}

describe("axios with useAxios", () => {
  it(`${N} concurrent calls after the server expired the token: one refresh, all 200`, async () => {
    const session = new AuthSession({ host: server.url, credentials: DEMO, autoRefresh: false });
    await session.login();
    const api = axios.create({ baseURL: server.url });
    const remove = useAxios(api, session);
    assert.equal((await api.get("/api/v1/products")).data.data.length, 4);
    server.expireAccessTokens();
    const before = server.stats.refresh;
    const results = await Promise.allSettled(Array.from({ length: N }, () => api.get("/api/v1/products")));
    assert.deepEqual(results.filter((r) => r.status === "rejected").map((r) => r.reason?.message), []);
    assert.ok(results.every((r) => r.value.status === 200));
    assert.equal(server.stats.refresh - before, 1, "one refresh for every 401");
    assert.equal(server.stats.spentReuse, 0);
    remove();
    session.dispose();
  });

  it("the token never goes to another origin", async () => {
    const other = await otherOrigin();
    const session = new AuthSession({ host: server.url, credentials: DEMO, autoRefresh: false });
    await session.login();
    const api = axios.create();
    useAxios(api, session);
    await api.get(`${other.url}/x`);
    assert.deepEqual(other.seen, [null]);
    session.dispose();
    await other.close();
  });
});

describe("ky with kyHooks", () => {
  it(`${N} concurrent calls after the server expired the token: one refresh, all 200`, async () => {
    const session = new AuthSession({ host: server.url, credentials: DEMO, autoRefresh: false });
    await session.login();
    const api = ky.create({ prefixUrl: server.url, retry: 0, hooks: kyHooks(session, ky) });
    assert.equal((await api.get("api/v1/products").json()).data.length, 4);
    server.expireAccessTokens();
    const before = server.stats.refresh;
    const results = await Promise.allSettled(Array.from({ length: N }, () => api.get("api/v1/products").json()));
    assert.deepEqual(results.filter((r) => r.status === "rejected").map((r) => r.reason?.message), []);
    assert.ok(results.every((r) => r.value.data.length === 4));
    assert.equal(server.stats.refresh - before, 1, "one refresh for every 401");
    assert.equal(server.stats.spentReuse, 0);
    session.dispose();
  });

  it("the token never goes to another origin", async () => {
    const other = await otherOrigin();
    const session = new AuthSession({ host: server.url, credentials: DEMO, autoRefresh: false });
    await session.login();
    await ky.get(`${other.url}/x`, { retry: 0, hooks: kyHooks(session, ky) }).json();
    assert.deepEqual(other.seen, [null]);
    session.dispose();
    await other.close();
  });
});

describe("getAccessToken({ replacing })", () => {
  it("refreshes only while the rejected token is the current one", async () => {
    const session = new AuthSession({ host: server.url, credentials: DEMO, autoRefresh: false });
    await session.login();
    const first = await session.getAccessToken();
    const before = server.stats.refresh;
    const all = await Promise.all(Array.from({ length: 20 }, () => session.getAccessToken({ replacing: first })));
    assert.equal(server.stats.refresh - before, 1);
    assert.equal(new Set(all).size, 1);
    assert.notEqual(all[0], first);
    // Reporting the old token again: the session has moved on, no refresh.
    assert.equal(await session.getAccessToken({ replacing: first }), all[0]);
    assert.equal(server.stats.refresh - before, 1);
    session.dispose();
  });
});
