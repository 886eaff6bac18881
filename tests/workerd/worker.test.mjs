// The example Worker (www-example/worker) in workerd, through Miniflare, against the
// reference server: the end-to-end path, the KV-backed restore after a restart, and many
// concurrent requests across a refresh (inside the margin, after expiry, and with the
// client of the request that started the refresh going away).
//
// Run by scripts/test-workerd.sh (Node 22: Miniflare needs it). WORKERD_TEST_VERBOSE=1
// prints everything workerd and Miniflare log.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { startServer } from "../server/reference-server.mjs";
import { Logs, PRODUCTS, USER, bundleWorker, getProducts, sleep, startWorker, tempDir, until, assertCleanLogs, JWT, assertAll200 } from "./harness.mjs";

/** No request may take this long: a hung request fails the test instead of stalling it. */
const REQUEST_TIMEOUT_MS = 20_000;

let tmp;
/** The example Worker, and a test Worker whose requests can give up (fixtures/). */
let modules;
let givesUpModules;
before(async () => {
  tmp = await tempDir();
  modules = await bundleWorker({ outdir: `${tmp.dir}/example/bundle` });
  givesUpModules = await bundleWorker({
    entry: fileURLToPath(new URL("./fixtures/gives-up-worker.mjs", import.meta.url)),
    outdir: `${tmp.dir}/gives-up/bundle`,
  });
});
after(() => tmp?.cleanup());

/** One reference server + one running Worker (+ its logs and KV dir), torn down after the test. */
async function setup(t, { server: serverOptions = {}, vars = {}, persist, worker: workerModules = modules } = {}) {
  const server = await startServer({ users: { [USER.username]: USER.password }, ...serverOptions });
  const logs = new Logs();
  const kv = persist ? null : await tempDir("auth-session-kv-");
  persist ??= kv.dir;
  const worker = await startWorker({ modules: workerModules, serverUrl: server.url, persist, logs, vars });
  const env = {
    server,
    logs,
    persist,
    worker,
    async restart() {
      await env.worker.mf.dispose();
      env.worker = await startWorker({ modules: workerModules, serverUrl: server.url, persist, logs, vars });
      return env.worker;
    },
    get: (init) => getProducts(env.worker.url, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS), ...init }),
    /** Like get(), and the Worker's own call gives up (AbortSignal) after `ms`. */
    getGivingUp: (ms) =>
      getProducts(env.worker.url, {
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        headers: { "x-give-up-after-ms": String(ms) },
      }),
  };
  t.after(async () => {
    await env.worker.mf.dispose().catch(() => {});
    await server.close();
    await kv?.cleanup();
  });
  return env;
}

function assertProducts(res, label = "response") {
  assert.equal(res.status, 200, `${label}: status ${res.status}, body ${res.text.slice(0, 300)}`);
  assert.deepEqual(JSON.parse(res.text), PRODUCTS, label);
  assert.doesNotMatch(res.text, JWT, `${label} holds a token`);
  for (const [name, value] of res.headers) assert.doesNotMatch(value, JWT, `${label} header ${name} holds a token`);
}


/** The token record the session keeps in KV (its value is never printed). */
async function storedRecord(worker) {
  const kv = await worker.mf.getKVNamespace("TOKENS");
  const { keys } = await kv.list();
  assert.equal(keys.length, 1, `KV holds ${keys.length} keys`);
  return kv.get(keys[0].name);
}

/** Fires `n` concurrent GET /products; each settles (a client error becomes a result). */
function burst(env, n) {
  return Promise.all(
    Array.from({ length: n }, (_, i) =>
      env.get().then(
        (r) => ({ ...r, i }),
        (e) => ({ status: `client ${e.name}`, text: e.message, i }),
      ),
    ),
  );
}

function assertAllProducts(results, label) {
  assertAll200(results, label);
  results.forEach((r) => assertProducts(r, `${label} #${r.i}`));
}

describe("the example Worker in workerd", () => {
  test("GET /products logs in once, passes the products through and never a token", async (t) => {
    const env = await setup(t);
    assertProducts(await env.get(), "first");
    assertProducts(await env.get(), "second");
    assert.equal(env.server.stats.login, 1);
    assert.equal(env.server.stats.api, 2);
    // Every API call carried a bearer token; nothing else was called.
    assert.deepEqual(
      env.server.log.map((e) => `${e.method} ${e.path} ${e.status}`),
      ["POST /auth/login 200", "GET /api/v1/products 200", "GET /api/v1/products 200"],
    );
    const res = await fetch(new URL("/other", env.worker.url));
    assert.equal(res.status, 404);
    await res.arrayBuffer();
    const post = await fetch(new URL("/products", env.worker.url), { method: "POST" });
    assert.equal(post.status, 405);
    await post.arrayBuffer();
    assertCleanLogs(env.logs);
  });

  test("maps a rejected service account to 502 with the error code only", async (t) => {
    const env = await setup(t, { vars: { API_PASSWORD: "wrong-password" } });
    const res = await env.get();
    assert.equal(res.status, 502);
    assert.deepEqual(JSON.parse(res.text), { error: "UNAUTHORIZED" });
    assert.doesNotMatch(res.text, /wrong-password/);
    // The failure is not cached: the next request tries again.
    await env.get();
    assert.equal(env.server.stats.login, 2);
  });

  test("KV-backed restore: a restarted Worker uses the stored tokens, no new login", async (t) => {
    const env = await setup(t);
    assertProducts(await env.get(), "before the restart");
    assert.equal(env.server.stats.login, 1);
    const record = await storedRecord(env.worker);
    assert.ok(record, "the session stored its tokens in KV");

    // A new workerd process, new isolate, same KV persistence.
    await env.restart();
    assertProducts(await env.get(), "after the restart");
    assert.equal(env.server.stats.login, 1, "the restarted Worker logged in again instead of restoring");
    assert.equal(env.server.stats.refresh, 0);
    assert.equal(env.server.stats.api, 2);
    assertCleanLogs(env.logs);
  });

  test("a cold isolate: 30 concurrent first requests share one restore and one login", async (t) => {
    const env = await setup(t);
    const results = await burst(env, 30);
    assertAllProducts(results, "cold burst");
    assert.equal(env.server.stats.login, 1);
    assertCleanLogs(env.logs);
  });

  test(
    "40 concurrent requests inside the refresh margin are served at once; one background refresh, stored in KV",
    { timeout: 60_000 },
    async (t) => {
      // The margin is capped at half the token's life, and a background refresh needs 5 s
      // left: 14 s tokens and a 7 s margin give a window from 7 s to 9 s after login.
      const env = await setup(t, { server: { accessTtlMs: 14_000 }, vars: { REFRESH_MARGIN_SECONDS: "7" } });
      const loginAt = Date.now();
      assertProducts(await env.get(), "login");
      const before = await storedRecord(env.worker);
      await sleep(loginAt + 7_400 - Date.now());
      // The refresh takes 2.5 s: requests that waited for it would take that long.
      env.server.fault({ path: "/auth/refresh" }, { delayMs: 2_500 }, 1);
      const started = Date.now();
      const results = await burst(env, 40);
      const took = Date.now() - started;
      assertAllProducts(results, "in-margin burst");
      assert.ok(took < 2_000, `the burst took ${took} ms: requests waited for the refresh`);
      assert.ok(env.server.log.some((e) => e.path === "/auth/refresh"), "no refresh was started");

      // The refresh and its KV write finish after the responses (ctx.waitUntil).
      assert.ok(
        await until(async () => (await storedRecord(env.worker)) !== before, 8_000),
        "the refreshed tokens never reached KV",
      );
      assert.equal(env.server.stats.refresh, 1);
      assert.equal(env.server.stats.login, 1);
      assert.equal(env.server.stats.spentReuse, 0);

      // A restarted Worker picks up the refreshed pair: no login, no second refresh.
      await env.restart();
      assertProducts(await env.get(), "after restart");
      assert.equal(env.server.stats.login, 1);
      assert.equal(env.server.stats.refresh, 1);
      assertCleanLogs(env.logs);
    },
  );

  test("40 concurrent requests with the access token expired all wait for one refresh", { timeout: 60_000 }, async (t) => {
    const env = await setup(t, { server: { accessTtlMs: 2_000 }, vars: { REFRESH_MARGIN_SECONDS: "1" } });
    assertProducts(await env.get(), "login");
    await sleep(2_300);
    // The refreshed token lives long: one refresh serves the whole burst.
    env.server.config.accessTtlMs = 60_000;
    const results = await burst(env, 40);
    assertAllProducts(results, "expired burst");
    assert.equal(env.server.stats.refresh, 1);
    assert.equal(env.server.stats.login, 1);
    assert.equal(env.server.stats.spentReuse, 0);
    assertCleanLogs(env.logs);
  });

  test(
    "the client of the request that started the refresh disconnects: the 29 others still succeed",
    { timeout: 60_000 },
    async (t) => {
      const env = await setup(t, { server: { accessTtlMs: 2_000 }, vars: { REFRESH_MARGIN_SECONDS: "1" } });
      assertProducts(await env.get(), "login");
      await sleep(2_300);
      env.server.config.accessTtlMs = 60_000;
      // The refresh answers after 1.5 s: time for others to join and for the first client
      // to give up while it is in flight.
      env.server.fault({ path: "/auth/refresh" }, { delayMs: 1_500 }, 1);
      const starter = new AbortController();
      const first = env.get({ signal: starter.signal }).then(
        (r) => ({ status: r.status }),
        (e) => ({ status: `client ${e.name}` }),
      );
      assert.ok(
        await until(() => env.server.log.some((e) => e.path === "/auth/refresh"), 5_000),
        "the first request did not start a refresh",
      );
      const others = burst(env, 29);
      await sleep(300);
      starter.abort();
      const results = await others;
      assert.equal((await first).status, "client AbortError");
      assertAllProducts(results, "the others");
      assert.equal(env.server.stats.refresh, 1, "the refresh was sent again");
      assert.equal(env.server.stats.spentReuse, 0);
      assert.equal(env.server.stats.login, 1, "the refreshed pair was lost: the Worker logged in again");
      // The Worker is not wedged afterwards.
      assertProducts(await env.get(), "afterwards");
      assertCleanLogs(env.logs);
    },
  );

  test(
    "the request that started the refresh ENDS while it is in flight: the 29 others still succeed",
    { timeout: 60_000 },
    async (t) => {
      // Under Miniflare a client disconnect does not end the Worker's request (measured:
      // its timers and fetches go on), so the previous test cannot make the starter end.
      // Here the starter's own call gives up after 300 ms (ABORTED, 499) and its request
      // completes while the refresh it started still waits 1.5 s for the server: workerd
      // then cancels what that request left pending unless it was handed to waitUntil.
      const env = await setup(t, {
        worker: givesUpModules,
        server: { accessTtlMs: 2_000 },
        vars: { REFRESH_MARGIN_SECONDS: "1" },
      });
      assertProducts(await env.get(), "login");
      await sleep(2_300);
      env.server.config.accessTtlMs = 60_000;
      env.server.fault({ path: "/auth/refresh" }, { delayMs: 1_500 }, 1);
      const first = env.getGivingUp(300);
      assert.ok(
        await until(() => env.server.log.some((e) => e.path === "/auth/refresh"), 5_000),
        "the first request did not start a refresh",
      );
      const results = await burst(env, 29);
      const starter = await first;
      assert.equal(starter.status, 499, `the starter answered ${starter.status} ${starter.text}`);
      assertAllProducts(results, "the others");
      assert.equal(env.server.stats.refresh, 1, "the refresh was sent again");
      assert.equal(env.server.stats.spentReuse, 0);
      assert.equal(env.server.stats.login, 1, "the refreshed pair was lost: the Worker logged in again");
      assertProducts(await env.get(), "afterwards");
      assertCleanLogs(env.logs);
    },
  );
});
