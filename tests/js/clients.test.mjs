// axios and ky with the session supplying the token (auth-session/clients), against the
// reference server: N concurrent 401s make one refresh, every call ends in a 200, and the
// token never goes to an origin the session does not allow. The ky scenarios run with ky 1
// and ky 2 (the `ky2` devDependency), whose hooks get different arguments.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { readFile } from "node:fs/promises";
import axios from "axios";
import ky1 from "ky";
import ky2 from "ky2"; // ky 2 (npm:ky@2): hooks get one state object, `prefixUrl` is `prefix`

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

const KY = [
  { name: "ky 1", ky: ky1, major: 1, prefix: (url) => ({ prefixUrl: url }) },
  { name: "ky 2", ky: ky2, major: 2, prefix: (url) => ({ prefix: url }) },
];

/** A `fetch` option that counts the requests it sends and the Authorization headers they carry. */
function countingFetch() {
  const sent = [];
  const fetchFn = (input, init) => {
    // ky passes a Request (and options that are not the Request's): read, never consume, it.
    sent.push((input instanceof Request ? input.headers : new Headers(init?.headers)).get("authorization"));
    return fetch(input, init);
  };
  return { fetchFn, sent };
}

for (const { name, ky, major, prefix } of KY) {
  describe(`${name} with kyHooks`, () => {
    it(`is ky ${major}`, async () => {
      // ky 2 refuses `prefixUrl`; ky 1 ignores `prefix`. Guards against both names
      // resolving to the same ky.
      // Neither exports its package.json: the manifest above the entry file.
      const entry = import.meta.resolve(major === 1 ? "ky" : "ky2");
      const { version } = JSON.parse(await readFile(new URL("../package.json", entry), "utf8"));
      assert.equal(Number(version.split(".")[0]), major);
    });

    it("the token goes with a request to the session's host", async () => {
      const session = new AuthSession({ host: server.url, credentials: DEMO, autoRefresh: false });
      await session.login();
      const { fetchFn, sent } = countingFetch();
      const api = ky.create({ ...prefix(server.url), retry: 0, fetch: fetchFn, hooks: kyHooks(session, ky) });
      assert.equal((await api.get("api/v1/products").json()).data.length, 4);
      assert.deepEqual(sent, [`Bearer ${await session.getAccessToken()}`]);
      session.dispose();
    });

    it("a 401 is replayed once, with the new token, through the same fetch", async () => {
      const session = new AuthSession({ host: server.url, credentials: DEMO, autoRefresh: false });
      await session.login();
      const old = await session.getAccessToken();
      server.expireAccessTokens();
      const before = server.stats.refresh;
      const { fetchFn, sent } = countingFetch();
      const api = ky.create({ ...prefix(server.url), retry: 0, fetch: fetchFn, hooks: kyHooks(session, ky) });
      const echoed = await api.post("api/v1/echo", { json: { seats: 5 } }).json();
      const fresh = await session.getAccessToken();
      assert.notEqual(fresh, old);
      assert.deepEqual(sent, [`Bearer ${old}`, `Bearer ${fresh}`], "one replay, with the new token, through the fetch option");
      assert.equal(server.stats.refresh - before, 1);
      assert.deepEqual([echoed.data.method, echoed.data.body], ["POST", '{"seats":5}'], "the replay sends the body again");
      session.dispose();
    });

    it("a second 401 is the caller's answer: no second replay", async () => {
      const session = new AuthSession({ host: server.url, credentials: DEMO, autoRefresh: false });
      await session.login();
      const { fetchFn, sent } = countingFetch();
      // The server expires every token it has issued, the replay's too.
      const expiring = (input, init) => {
        server.expireAccessTokens();
        return fetchFn(input, init);
      };
      const api = ky.create({ ...prefix(server.url), retry: 0, fetch: expiring, throwHttpErrors: false, hooks: kyHooks(session, ky) });
      const res = await api.get("api/v1/products");
      assert.equal(res.status, 401);
      await res.body?.cancel();
      assert.equal(sent.length, 2, "the request and one replay");
      session.dispose();
    });

    it(`${N} concurrent calls after the server expired the token: one refresh, all 200`, async () => {
      const session = new AuthSession({ host: server.url, credentials: DEMO, autoRefresh: false });
      await session.login();
      const api = ky.create({ ...prefix(server.url), retry: 0, hooks: kyHooks(session, ky) });
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

    it("with ky's default retries, a 401 is replayed once too", async () => {
      const session = new AuthSession({ host: server.url, credentials: DEMO, autoRefresh: false });
      await session.login();
      server.expireAccessTokens();
      const { fetchFn, sent } = countingFetch();
      const api = ky.create({ ...prefix(server.url), fetch: fetchFn, hooks: kyHooks(session, ky) });
      assert.equal((await api.get("api/v1/products").json()).data.length, 4);
      assert.equal(sent.length, 2);
      session.dispose();
    });

    it("the token never goes to another origin", async () => {
      const other = await otherOrigin();
      const session = new AuthSession({ host: server.url, credentials: DEMO, autoRefresh: false });
      try {
        await session.login();
        await ky.get(`${other.url}/x`, { retry: 0, hooks: kyHooks(session, ky) }).json();
        assert.deepEqual(other.seen, [null]);
      } finally {
        session.dispose();
        await other.close(); // also when it failed: an open server would keep the run alive
      }
    });
  });
}

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
