// auth-session/workers in workerd, through Miniflare, with real Durable Objects: one broker
// script exports AuthBroker; four other scripts (each its own isolate) bind its namespace and
// serve requests through brokered sessions, against the reference server with access tokens
// of 2.5 s, spent-token reuse detection and counters.
//
// What must hold: exactly one refresh at the server per rotation however many isolates and
// streams, never a spent refresh token sent again, no failed request, also when the broker
// restarts mid-run (its storage kept) or the whole runtime restarts.
//
// Run by scripts/test-workerd.sh (Node 22: Miniflare needs it). WORKERD_TEST_VERBOSE=1
// prints what workerd logs; BROKER_TEST_FIGURES=1 prints each run's figures.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startServer } from "../server/reference-server.mjs";
import { Logs, PRODUCTS, USER, bundleWorker, compatibilityDate, pkgDir, root, sleep, startBrokerCluster, tempDir, within, userCopy, clientGet, clientGetJson, assertCleanLogs, loadStreams, JWT, brokerStatus, isolateStats, report, assertAll200 } from "./harness.mjs";

const brokerExampleDir = path.join(root, "www-example/worker-broker");
const fixture = fileURLToPath(new URL("./fixtures/broker-worker.mjs", import.meta.url));

const ACCESS_TTL_MS = 2_500;
/** The broker refreshes 1 s before expiry (its alarm); isolates ask 0.5 s before. */
const BROKER_MARGIN_S = 1;
const CLIENT_MARGIN_S = 0.5;
/** A rotation every TTL - broker margin. */
const ROTATION_MS = ACCESS_TTL_MS - BROKER_MARGIN_S * 1000;
const CLIENTS = ["c1", "c2", "c3", "c4"];
const STREAMS = 8;
const REQUEST_TIMEOUT_MS = 10_000;
/** Compatibility dates without workerd's `enhanced_error_serialization`: the oldest the
 *  broker supports (JavaScript RPC to Durable Objects is on from 2024-04-03) and one of 2025. */
const OLD_DATES = ["2024-04-03", "2025-01-01"];
/** The examples' date (www-example/worker/wrangler.toml), under which the other tests run. */
const CURRENT_DATE = await compatibilityDate();
/** The name the fixture gives its broker (idFromName). */
const BROKER_NAME = "acct";



let tmp;
let fixtureModules;
let exampleModules;
let compat;
before(async () => {
  tmp = await tempDir("auth-session-broker-");
  compat = await compatibilityDate();
  fixtureModules = await within(60_000, bundleWorker({ entry: fixture, outdir: `${tmp.dir}/fixture/bundle` }), "bundle the fixture");
  exampleModules = await within(
    60_000,
    bundleWorker({ entry: path.join(brokerExampleDir, "src/index.mjs"), outdir: `${tmp.dir}/example/bundle` }),
    "bundle the example",
  );
});
after(() => tmp?.cleanup());

/** The broker and the client scripts (see the harness's startBrokerCluster). */
function startCluster({ clients = CLIENTS, compatibilityDate = compat, ...rest }) {
  return startBrokerCluster({ clients, compatibilityDate, brokerMarginS: BROKER_MARGIN_S, clientMarginS: CLIENT_MARGIN_S, ...rest });
}

/** One reference server with short tokens, one cluster, torn down after the test. */
async function setup(t, { modules = fixtureModules, brokerVars, clientVars, compatibilityDate } = {}) {
  const server = await within(10_000, startServer({ users: { [USER.username]: USER.password }, accessTtlMs: ACCESS_TTL_MS }), "server start");
  const logs = new Logs();
  const store = await tempDir("auth-session-do-");
  const start = () => startCluster({ modules, serverUrl: server.url, persist: store.dir, logs, brokerVars, clientVars, compatibilityDate });
  const env = { server, logs, cluster: null };
  // Registered before anything can fail, so a failed start still releases the server.
  t.after(async () => {
    if (env.cluster) await within(30_000, env.cluster.mf.dispose(), "Miniflare dispose").catch(() => {});
    await within(10_000, server.close(), "server close").catch(() => {});
    await store.cleanup();
  });
  env.cluster = await start();
  env.restart = async () => {
    const old = env.cluster;
    env.cluster = null;
    await within(30_000, old.mf.dispose(), "Miniflare dispose");
    env.cluster = await start();
  };
  env.evictBroker = () =>
    within(10_000, env.cluster.mf.unsafeEvictDurableObject("broker", "AuthBroker", { name: BROKER_NAME }), "evict the broker");
  return env;
}

const get = (url, pathname = "/products") => clientGet(url, pathname, REQUEST_TIMEOUT_MS);
const getJson = (url, pathname) => clientGetJson(url, pathname, REQUEST_TIMEOUT_MS);

const load = (env, ms, during) => loadStreams({ urls: () => env.cluster.urls, get, streams: STREAMS, ms, during });


function assertAllProducts(results, label) {
  assertAll200(results, label);
  for (const r of results) assert.deepEqual(JSON.parse(r.text), PRODUCTS, label);
}

/** The RPC calls the fixture's broker logged after line `from`, with their outcome
 *  ("refresh -> SESSION_EXPIRED"). */
const brokerCalls = (logs, from = 0) =>
  logs.lines
    .slice(from)
    .map((l) => /auth-broker: rpc (.*)/.exec(l.message)?.[1])
    .filter(Boolean);



/** Waits until the broker's current pair is between 0.3 s and 1.1 s old: far from a refresh
 *  on either side, so a restart now cannot cut a refresh in flight. */
async function awayFromRefresh(env) {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const { accessExpiresAt } = await brokerStatus(env);
    const age = Date.now() - (Date.parse(accessExpiresAt) - ACCESS_TTL_MS);
    if (age >= 300 && age <= 1_100) return;
    await sleep(age < 300 ? 300 - age : 50);
  }
  throw new Error("the broker's pair never reached a quiet moment");
}

describe("auth-session/workers: a Durable Object broker", () => {
  test(
    `${STREAMS} streams on ${CLIENTS.length} isolates for 6 token lifetimes: one refresh per rotation, no reuse, no failure`,
    { timeout: 90_000 },
    async (t) => {
      const env = await setup(t);
      const runMs = 6 * ACCESS_TTL_MS;
      const results = await load(env, runMs);
      const broker = await brokerStatus(env);
      const stats = await isolateStats(env);
      const { server } = env;
      const rotations = broker.version - 1; // version 1 is the login
      const figures = {
        isolates: stats.length,
        streams: STREAMS,
        requests: results.length,
        failed: results.filter((r) => r.status !== 200).length,
        lifetimes: runMs / ACCESS_TTL_MS,
        rotations,
        serverLogins: server.stats.login,
        serverRefreshes: server.stats.refresh,
        spentReuse: server.stats.spentReuse,
        isolatePairsFromBroker: stats.reduce((n, s) => n + s.login + s.refresh, 0),
      };
      report("broker: steady", figures);
      t.diagnostic(JSON.stringify(figures));

      assertAllProducts(results, "steady run");
      assert.equal(server.stats.spentReuse, 0, "a spent refresh token was sent again");
      assert.equal(server.stats.login, 1, "one login for every isolate");
      // Exactly one refresh at the server per rotation, and rotations at the broker's pace:
      // at least one per lifetime, never more than one per rotation period.
      assert.equal(server.stats.refresh, rotations, `server refreshes ${server.stats.refresh} vs rotations ${rotations}`);
      assert.ok(rotations >= runMs / ACCESS_TTL_MS - 1, `only ${rotations} rotations in ${runMs} ms`);
      assert.ok(rotations <= Math.ceil(runMs / ROTATION_MS) + 1, `${rotations} rotations in ${runMs} ms: more than one per ${ROTATION_MS} ms`);
      // Every isolate took part: it logged in once (through the broker) and followed the
      // rotations; the server saw none of that.
      for (const s of stats) {
        assert.equal(s.login, 1, `isolate ${s.isolate} logged in ${s.login} times`);
        assert.ok(s.refresh >= rotations - 2, `isolate ${s.isolate} followed ${s.refresh} of ${rotations} rotations`);
        assert.equal(s.errors, 0);
      }
      // Isolates' own auth calls never reach the API: only the broker's.
      const authCalls = server.log.filter((e) => e.path.startsWith("/auth/"));
      assert.equal(authCalls.length, server.stats.login + server.stats.refresh);
      assertCleanLogs(env.logs);
    },
  );

  test("the broker restarted twice mid-run (evicted, storage kept): no reuse, no failure, no new login", { timeout: 90_000 }, async (t) => {
    const env = await setup(t);
    const runMs = 6 * ACCESS_TTL_MS;
    let restarts = 0;
    const results = await load(env, runMs, async (started) => {
      for (const at of [runMs / 3, (2 * runMs) / 3]) {
        await sleep(Math.max(0, started + at - Date.now()));
        await awayFromRefresh(env);
        await env.evictBroker();
        restarts++;
      }
    });
    const broker = await brokerStatus(env);
    const stats = await isolateStats(env);
    const { server } = env;
    const started = env.logs.lines.filter((l) => /auth-broker: instance started/.test(l.message)).length;
    const figures = {
      isolates: stats.length,
      streams: STREAMS,
      brokerRestarts: restarts,
      brokerInstances: started,
      requests: results.length,
      failed: results.filter((r) => r.status !== 200).length,
      lifetimes: runMs / ACCESS_TTL_MS,
      rotations: broker.version - 1,
      serverLogins: server.stats.login,
      serverRefreshes: server.stats.refresh,
      spentReuse: server.stats.spentReuse,
    };
    report("broker: broker restarts", figures);
    t.diagnostic(JSON.stringify(figures));

    assert.equal(restarts, 2);
    assert.ok(started >= 3, `the broker started ${started} times`);
    assertAllProducts(results, "run with broker restarts");
    assert.equal(server.stats.spentReuse, 0, "a spent refresh token was sent again");
    // The restarted broker restored its pair (and version) from its storage.
    assert.equal(server.stats.login, 1, "a restarted broker logged in again");
    assert.equal(server.stats.refresh, broker.version - 1);
    assert.ok(broker.version - 1 <= Math.ceil(runMs / ROTATION_MS) + 1);
    for (const s of stats) assert.equal(s.login, 1, `isolate ${s.isolate} logged in ${s.login} times`);
    // An eviction may cut short an alarm handler that is waiting to run: workerd says so.
    assertCleanLogs(env.logs, [/alarm handler canceled/i]);
  });

  test("the whole runtime restarted (Durable Object storage persisted): the new broker restores, no login", { timeout: 90_000 }, async (t) => {
    const env = await setup(t);
    const first = await load(env, 2 * ACCESS_TTL_MS);
    const before = await brokerStatus(env);
    await env.restart();
    const second = await load(env, 3 * ACCESS_TTL_MS);
    const after = await brokerStatus(env);
    const stats = await isolateStats(env);
    const { server } = env;
    const figures = {
      isolates: stats.length,
      streams: STREAMS,
      requests: first.length + second.length,
      failed: [...first, ...second].filter((r) => r.status !== 200).length,
      versionBefore: before.version,
      versionAfter: after.version,
      serverLogins: server.stats.login,
      serverRefreshes: server.stats.refresh,
      spentReuse: server.stats.spentReuse,
    };
    report("broker: runtime restart", figures);
    t.diagnostic(JSON.stringify(figures));

    assertAllProducts([...first, ...second], "around a runtime restart");
    assert.equal(server.stats.spentReuse, 0);
    assert.equal(server.stats.login, 1, "the new broker logged in instead of restoring");
    assert.ok(after.version > before.version, "versions go on from the stored one");
    assert.equal(server.stats.refresh, after.version - 1);
    // The new isolates logged in through the broker, which restored its pair.
    for (const s of stats) assert.equal(s.login, 1);
    assertCleanLogs(env.logs);
  });

  test("an idle broker refreshes once on its alarm, then lets the pair lapse; the next request refreshes once", { timeout: 60_000 }, async (t) => {
    const env = await setup(t);
    const [c1, c2] = env.cluster.urls;
    assertAllProducts([await get(c1)], "first");
    assert.equal((await brokerStatus(env)).version, 1);
    // No request for 2.4 lifetimes: the alarm refreshes once (an isolate had asked since the
    // last refresh), then nobody asks and the alarm stops.
    await sleep(2.4 * ACCESS_TTL_MS);
    assert.equal(env.server.stats.refresh, 1, "the alarm refreshed once");
    assert.equal((await getJson(c1, "/broker")).version, 2);
    await sleep(ACCESS_TTL_MS);
    assert.equal(env.server.stats.refresh, 1, "an idle broker kept refreshing");
    // Both pairs have expired: the next requests (two isolates, together) share one refresh.
    const results = await Promise.all([get(c1), get(c2), get(c1), get(c2)]);
    assertAllProducts(results, "after idling");
    assert.equal(env.server.stats.refresh, 2);
    assert.equal(env.server.stats.login, 1);
    assert.equal(env.server.stats.spentReuse, 0);
    assertCleanLogs(env.logs);
  });

  test("revoke() in one isolate ends the account's session for every isolate until an explicit login()", { timeout: 60_000 }, async (t) => {
    const env = await setup(t);
    const urls = env.cluster.urls;
    assertAllProducts(await Promise.all(urls.map((u) => get(u))), "before");
    assert.deepEqual(await getJson(urls[0], "/revoke"), { revoked: true });
    assert.equal(env.server.stats.revoke, 1);
    const status = await brokerStatus(env);
    assert.equal(status.state, "revoked");
    assert.equal(status.revoked, true);
    // The other isolates' access tokens are refused by the API; the broker answers their
    // refresh with SESSION_EXPIRED and their quiet re-login with NOT_AUTHENTICATED: the
    // account stays revoked, nobody logs it back in behind the user's back.
    for (const r of await Promise.all([...urls, ...urls].map((u) => get(u)))) {
      assert.equal(r.status, 502, r.text);
      assert.equal(JSON.parse(r.text).error, "NOT_AUTHENTICATED", r.text);
    }
    assert.equal(env.server.stats.login, 1, "no login after the revoke");
    assert.equal((await brokerStatus(env)).revoked, true);
    // An explicit login() ends the revocation: one login, and every isolate is served again.
    assert.deepEqual(await getJson(urls[1], "/login"), { state: "active" });
    assertAllProducts(await Promise.all([...urls, ...urls].map((u) => get(u))), "after the explicit login");
    assert.equal(env.server.stats.login, 2);
    assert.equal(env.server.stats.spentReuse, 0);
    const broker = await brokerStatus(env);
    assert.equal(broker.state, "active");
    assert.equal(broker.revoked, false);
    assertCleanLogs(env.logs);
  });

  test("a caller cannot force refreshes: only the current version causes one, single-flight", { timeout: 60_000 }, async (t) => {
    const env = await setup(t);
    const [c1] = env.cluster.urls;
    assertAllProducts([await get(c1)], "before");
    const refreshes = env.server.stats.refresh;
    const { version } = await brokerStatus(env);
    // Numbers that are not the current version: no refresh, the current pair.
    for (const v of [version + 1, version + 1000, -1, 0, version - 1]) {
      const r = await getJson(c1, `/rpc-refresh?version=${v}`);
      assert.equal(r.answer?.ok, true, JSON.stringify(r));
    }
    assert.equal(env.server.stats.refresh, refreshes, "no refresh for a version that is not the current one");
    // Three calls with the version each caller held: one refresh (the later ones present a
    // version that is no longer current).
    const answers = await Promise.all([1, 2, 3].map(() => getJson(c1, `/rpc-refresh?version=${version}`)));
    for (const r of answers) assert.equal(r.answer?.ok, true, JSON.stringify(r));
    assert.equal(env.server.stats.refresh, refreshes + 1);
    assert.equal((await brokerStatus(env)).version, version + 1);
    assertCleanLogs(env.logs);
  });

  test("the server refuses every token at once after the broker rotated: an isolate with the older pair fails one call, then recovers", { timeout: 60_000 }, async (t) => {
    // What the broker chaos documents after its api-401 fault (API_401_WINDOW_MS), made
    // deterministic: the broker's newest pair dies with the older one, so the isolate that
    // held the older pair is handed the newest after its 401, and its one replay is refused
    // too (the contract: one refresh, one replay). Its next call presents the newest
    // version, which the broker then refreshes.
    const env = await setup(t);
    const [c1] = env.cluster.urls;
    assertAllProducts([await get(c1)], "before");
    const { version } = await brokerStatus(env);
    // Another caller rotates: the broker holds version + 1, c1's isolate still holds version.
    assert.equal((await getJson(c1, `/rpc-refresh?version=${version}`)).answer?.ok, true);
    assert.equal((await brokerStatus(env)).version, version + 1);
    const refreshes = env.server.stats.refresh;
    env.server.expireAccessTokens();
    const failed = await get(c1);
    assert.equal(failed.status, 502, failed.text);
    assert.equal(JSON.parse(failed.text).error, "UNAUTHORIZED", failed.text);
    assert.equal(env.server.stats.refresh, refreshes, "the older version causes no refresh");
    assertAllProducts([await get(c1)], "the next call");
    assert.equal(env.server.stats.refresh, refreshes + 1, "the newest version, refused, causes one");
    assert.equal(env.server.stats.spentReuse, 0);
    assertCleanLogs(env.logs);
  });

  test("brokeredSession: custom paths, a stub, a stub factory; another host, an unreachable broker, bad options", { timeout: 60_000 }, async (t) => {
    const env = await setup(t);
    const [c1] = env.cluster.urls;
    for (const route of ["/paths", "/stub", "/factory"]) {
      const body = await getJson(c1, route);
      assert.deepEqual(body.products, PRODUCTS, route);
    }
    assert.equal(env.server.stats.login, 1, "every way reaches the one broker");
    // The broker's RPC answer carries the access token, never the refresh token.
    const { resultKeys, keys } = await getJson(c1, "/pair-keys");
    assert.deepEqual(resultKeys, ["ok", "value"]);
    assert.deepEqual(keys, ["access_expires_at", "access_token", "client_id", "origin", "refresh_expires_at", "skew_ms", "version"]);
    // The isolates' auth paths (/x/login…) never reached the API.
    assert.ok(!env.server.log.some((e) => e.path.startsWith("/x/")));

    const other = JSON.parse((await get(c1, "/other-host")).text);
    assert.equal(other.error, "CONFIG_ERROR", JSON.stringify(other));
    assert.match(other.message, /the broker serves http:\/\/127\.0\.0\.1:\d+, this session's host is http:\/\/localhost:\d+/);
    const down = JSON.parse((await get(c1, "/rpc-down")).text);
    assert.deepEqual([down.error, down.status], ["SERVER_ERROR", 503], JSON.stringify(down));
    assert.deepEqual((await getJson(c1, "/config-errors")).codes, Array(5).fill("CONFIG_ERROR"));
    assert.equal(env.server.stats.login, 1);
    assertCleanLogs(env.logs);
  });

  test("the broker's errors reach the isolate's caller with their code", { timeout: 60_000 }, async (t) => {
    await t.test("a rejected password: UNAUTHORIZED, status 401", async (t) => {
      const env = await setup(t, { brokerVars: { AUTH_SESSION_PASSWORD: "wrong" } });
      const body = JSON.parse((await get(env.cluster.urls[0])).text);
      assert.deepEqual([body.error, body.status], ["UNAUTHORIZED", 401], JSON.stringify(body));
      assert.doesNotMatch(JSON.stringify(body), /wrong/);
      assert.equal(env.server.stats.login, 1, "a 401 is not retried");
    });
    await t.test("a missing var: CONFIG_ERROR naming it", async (t) => {
      const env = await setup(t, { brokerVars: { AUTH_SESSION_HOST: "" } });
      const body = JSON.parse((await get(env.cluster.urls[0])).text);
      assert.equal(body.error, "CONFIG_ERROR", JSON.stringify(body));
      assert.match(body.message, /AUTH_SESSION_HOST is not set/);
      const status = await brokerStatus(env);
      assert.equal(status.error.code, "CONFIG_ERROR");
      assert.equal(env.server.stats.requests, 0);
    });
  });

  // An Error thrown by a Durable Object reaches its RPC caller with its own properties (code,
  // status…) only under workerd's `enhanced_error_serialization`, which older compatibility
  // dates lack: there a broker that throws its AuthErrors sends a bare Error, which the isolate
  // can only take for an unreachable broker (503, retried, SERVER_ERROR). The broker's answers
  // must be plain data, read the same at every date.
  for (const date of [CURRENT_DATE, ...OLD_DATES]) {
    test(`compatibility date ${date}: the broker's SESSION_EXPIRED and UNAUTHORIZED cross RPC as data and reach the isolates at once`, { timeout: 60_000 }, async (t) => {
      const env = await setup(t, { compatibilityDate: date });
      const [c1, c2, c3] = env.cluster.urls;
      assertAllProducts(await Promise.all([get(c1), get(c2)]), "before");

      // 1. SESSION_EXPIRED: c1 revokes the account's session. c2's access token is now
      // refused by the API; the broker answers its refresh with SESSION_EXPIRED (401), which
      // ends c2's pair at once, and its quiet re-login with NOT_AUTHENTICATED (401): the
      // account stays revoked until an explicit login(), which c2 then makes.
      let seen = env.logs.lines.length;
      assert.deepEqual(await getJson(c1, "/revoke"), { revoked: true });
      let started = Date.now();
      const afterRevoke = await get(c2);
      const revokedMs = Date.now() - started;
      assert.equal(afterRevoke.status, 502, afterRevoke.text);
      assert.deepEqual(
        (({ error, status, retryable }) => ({ error, status, retryable }))(JSON.parse(afterRevoke.text)),
        { error: "NOT_AUTHENTICATED", status: 401, retryable: false },
      );
      const revokeCalls = brokerCalls(env.logs, seen);
      assert.deepEqual(revokeCalls.slice(0, 2), ["revoke -> ok", "refresh -> SESSION_EXPIRED"], JSON.stringify(revokeCalls));
      assert.deepEqual(revokeCalls.slice(-1), ["pair -> NOT_AUTHENTICATED"], JSON.stringify(revokeCalls));
      assert.deepEqual(await getJson(c2, "/login"), { state: "active" });
      assertAllProducts([await get(c2)], "after the explicit login");
      // 2. UNAUTHORIZED: the account's session ends at the server (tokens revoked, password
      // changed). Asked by a caller of its own, the broker's refresh and re-login are refused:
      // it answers the server's UNAUTHORIZED, then SESSION_EXPIRED (it holds no session).
      const { version } = await brokerStatus(env);
      env.server.revokeAll();
      env.server.config.users = { [USER.username]: "changed-password" };
      const raw = await getJson(c3, `/rpc-refresh?version=${version}`);
      const again = await getJson(c3, `/rpc-refresh?version=${version}`);
      // c2's caller then gets UNAUTHORIZED: an isolate session has credentials (placeholders
      // that send its login to the broker), so like any session with credentials it logs in
      // again rather than report SESSION_EXPIRED; c3, never logged in, gets the same.
      seen = env.logs.lines.length;
      const logins = env.server.stats.login;
      started = Date.now();
      const ended = await get(c2);
      const endedMs = Date.now() - started;
      const refused = await get(c3);
      const calls = brokerCalls(env.logs, seen);
      t.diagnostic(JSON.stringify({ date, revokedMs, endedMs, calls, serverLogins: env.server.stats.login - logins, raw, again }));

      // What crossed RPC: result objects, the same at every date, no Error.
      for (const [r, code, name] of [
        [raw, "UNAUTHORIZED", "UnauthorizedError"],
        [again, "SESSION_EXPIRED", "SessionExpiredError"],
      ]) {
        assert.equal(r.threw, undefined, JSON.stringify(r));
        assert.equal(r.answer.ok, false, JSON.stringify(r));
        const { message, ...fields } = r.answer.error;
        assert.deepEqual(fields, { code, name, status: 401, retryable: false }, JSON.stringify(r));
        assert.equal(typeof message, "string");
        assert.doesNotMatch(message, /changed-password|demo-password|eyJ/);
      }

      for (const r of [ended, refused]) {
        assert.equal(r.status, 502, `${r.status} ${r.text}`);
        assert.doesNotMatch(r.text, /changed-password|demo-password|auth-broker-placeholder/);
        assert.doesNotMatch(r.text, JWT);
        const { error, name, status, retryable, retryAfter } = JSON.parse(r.text);
        assert.deepEqual(
          { error, name, status, retryable, retryAfter },
          { error: "UNAUTHORIZED", name: "UnauthorizedError", status: 401, retryable: false, retryAfter: null },
          r.text,
        );
      }
      // Each answer taken once: no retry of a refused refresh or login. (c2 may ask for a
      // refresh twice: once inside its margin, once after the API's 401.)
      const refreshes = calls.filter((c) => c.startsWith("refresh"));
      assert.ok(refreshes.length >= 1 && refreshes.length <= 2 && refreshes.every((c) => c === "refresh -> SESSION_EXPIRED"), JSON.stringify(calls));
      assert.deepEqual(calls.slice(refreshes.length), ["pair -> UNAUTHORIZED", "pair -> UNAUTHORIZED"], JSON.stringify(calls));
      const c2stats = await getJson(c2, "/stats");
      // Two ends of c2's session: the revoke, then the server's revocation.
      assert.deepEqual([c2stats.expired, c2stats.errors, c2stats.info.state], [2, 0, "expired"], JSON.stringify(c2stats));
      assert.ok(revokedMs < 3_000 && endedMs < 3_000, `${revokedMs} ms, ${endedMs} ms`);
      assert.equal(env.server.stats.login - logins, 2, "one refused login per isolate");
      assertCleanLogs(env.logs);
    });
  }

  test("the example (www-example/worker-broker) on 4 isolates: one login, one refresh per rotation, no token out", { timeout: 90_000 }, async (t) => {
    const env = await setup(t, { modules: exampleModules });
    const runMs = 4 * ACCESS_TTL_MS;
    const results = await load(env, runMs);
    assertAllProducts(results, "example");
    for (const r of results) for (const [name, value] of r.headers) assert.doesNotMatch(value, JWT, `header ${name}`);
    const { server } = env;
    const refreshes = server.stats.refresh;
    t.diagnostic(JSON.stringify({ requests: results.length, logins: server.stats.login, refreshes, spentReuse: server.stats.spentReuse }));
    assert.equal(server.stats.login, 1);
    assert.equal(server.stats.spentReuse, 0);
    assert.ok(refreshes >= runMs / ACCESS_TTL_MS - 1 && refreshes <= Math.ceil(runMs / ROTATION_MS) + 1, `${refreshes} refreshes in ${runMs} ms`);
    const notFound = await get(env.cluster.urls[0], "/other");
    assert.equal(notFound.status, 404);
    assertCleanLogs(env.logs);
  });

  test("wrangler deploy --dry-run bundles the example with its Durable Object, without a warning; the bundle runs", { timeout: 90_000 }, async (t) => {
    const work = await tempDir("auth-session-wrangler-broker-");
    t.after(work.cleanup);
    const app = path.join(work.dir, "app");
    await userCopy(brokerExampleDir, app);
    const outdir = path.join(work.dir, "out");
    const { code, out } = await within(
      80_000,
      run(process.execPath, [path.join(root, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--outdir", outdir], {
        cwd: app,
        env: {
          ...process.env,
          WRANGLER_SEND_METRICS: "false",
          WRANGLER_LOG_PATH: path.join(work.dir, "logs"),
          NO_COLOR: "1",
          FORCE_COLOR: "0",
        },
      }),
      "wrangler",
    );
    assert.equal(code, 0, `wrangler failed:\n${out}`);
    assert.match(out, /--dry-run: exiting now/);
    assert.match(out, /env\.AUTH_BROKER \(AuthBroker\)\s+Durable Object/);
    const warnings = out.split("\n").filter((l) => /warn|▲|\[WARNING\]|deprecat/i.test(l));
    assert.deepEqual(warnings, [], `wrangler warned:\n${out}`);

    const files = await readdir(outdir);
    const wasm = files.filter((f) => f.endsWith(".wasm"));
    assert.equal(wasm.length, 1, `output: ${files.join(", ")}`);
    assert.deepEqual(await readFile(path.join(outdir, wasm[0])), await readFile(path.join(pkgDir, "auth_session_bg.wasm")));
    const bundle = await readFile(path.join(outdir, "index.js"), "utf8");
    assert.match(bundle, /from "cloudflare:workers"/);
    assert.match(bundle, /initSync\(\{ module: wasmModule\d* \}\)/);

    // What wrangler would upload runs: as the broker's script and as two clients.
    const server = await startServer({ users: { [USER.username]: USER.password } });
    t.after(() => server.close());
    const logs = new Logs();
    const { mf, urls } = await startCluster({
      modules: [
        { type: "ESModule", path: path.join(outdir, "index.js") },
        { type: "CompiledWasm", path: path.join(outdir, wasm[0]) },
      ],
      serverUrl: server.url,
      persist: path.join(work.dir, "do"),
      logs,
      clients: ["c1", "c2"],
    });
    t.after(() => within(30_000, mf.dispose(), "Miniflare dispose"));
    assertAllProducts(await Promise.all([get(urls[0]), get(urls[1])]), "wrangler's bundle");
    assert.equal(server.stats.login, 1);
  });
});

function run(cmd, args, options) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...options, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, out }));
  });
}
