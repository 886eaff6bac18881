// A fleet in OAuth 2.0 mode: four Node processes (tests/oauth/fixtures/fleet-worker.mjs), each
// with an AuthSession on one shared Redis record (the package's redisStorage, with its lease;
// two processes on node-redis, two on ioredis), against oidc-provider (tests/oauth/provider.mjs,
// in this process) with rotating refresh tokens and a short access-token lifetime.
//
// 1. All four are seeded with the same refresh token (from the authorization code flow) and
//    call the API continuously for 5+ access-token lifetimes: 0 reuses and no invalid_grant
//    at the provider, 0 failed calls, and as many refresh requests as rotations — one per
//    refresh interval for the whole fleet, not one per process.
// 2. Client credentials: 4 processes × 25 concurrent json() calls on a cold start make one
//    token request.
// 3. The lease holder is killed (SIGKILL) while its refresh request is on its way, before the
//    provider saw it: nothing is lost; the others refresh once its lease ran out.
// 4. The lease holder is killed after the provider rotated, before it stored the pair: the
//    documented cost of a rotating refresh token without credentials. The record's token is
//    spent; the first survivor to send it makes the provider revoke the grant (one reuse),
//    and every survivor's session ends with SESSION_EXPIRED; none retries it.
//
// Needs redis-server on PATH (started here on a free port) and the built package (pkg/, or
// AUTH_SESSION_PKG_DIR). Run: node --test tests/oauth/fleet-redis.test.mjs (about 50 s).

import assert from "node:assert/strict";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";

import { Fleet } from "../redis/fleet.mjs";
import { sleep, startRedis, until, within } from "../redis/harness.mjs";
import { startProvider, obtainRefreshToken } from "./provider.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const pkg = resolve(process.env.AUTH_SESSION_PKG_DIR || join(root, "pkg"));

const INSTANCES = 4;
const TTL_S = 3;
const LIFETIME_MS = TTL_S * 1000;
const TIMEOUT_MS = 4000;
const RETRIES = 1;
const LOAD = { concurrency: 2, pauseMs: 40 };

/** A pair the instance got from the token endpoint itself (not adopted from the record). */
const fromServer = (m) => m.type === "tokens" && m.reason !== "adopt" && m.reason !== "restore";

describe("a fleet of Node processes in OAuth 2.0 mode on one Redis record", { timeout: 120_000 }, () => {
  let redis;
  let as;
  const fleet = new Fleet(join(here, "fixtures", "fleet-worker.mjs"));

  before(async () => {
    redis = await within(startRedis(), 20_000, "start redis-server");
    as = await startProvider({ accessTokenTtl: TTL_S });
    for (let i = 0; i < INSTANCES; i++) {
      fleet.spawn(i, {
        AUTH_SESSION_PKG_DIR: pkg,
        FLEET_REDIS: redis.url,
        FLEET_CLIENT: i % 2 === 0 ? "node-redis" : "ioredis",
      });
    }
    for (let i = 0; i < INSTANCES; i++) {
      const m = await fleet
        .waitFor((x) => x.index === i && (x.type === "ready" || x.type === "fatal"), 20_000, `instance ${i} ready`)
        .catch((err) => {
          throw new Error(`${err.message}\n${fleet.children[i].output}`);
        });
      assert.equal(m.type, "ready", `instance ${i}: ${JSON.stringify(m)}\n${fleet.children[i].output}`);
    }
  });

  after(async () => {
    await fleet.stopAll();
    await as?.close();
    await redis?.stop();
  });

  /** Disposes session `id` in every instance and waits until all have. */
  async function dispose(id) {
    const from = fleet.messages.length;
    fleet.sendAll({ type: "dispose", id });
    await fleet.each("disposed", id, 10_000, from);
  }

  /** Creates session `id` in every instance and waits until all have it. */
  async function sessions(id, oauth, prefix, extra = {}) {
    const from = fleet.messages.length;
    fleet.sendAll({
      type: "session",
      id,
      host: as.api.url,
      oauth: { tokenEndpoint: as.tokenEndpoint, revocationEndpoint: as.revocationEndpoint, ...oauth },
      prefix,
      timeoutMs: TIMEOUT_MS,
      retries: RETRIES,
      ...extra,
    });
    await fleet.each("session-ready", id, 10_000, from);
  }

  test("one seeded refresh token, 5+ lifetimes of continuous calls: 0 reuses, 0 failures, one refresh per rotation", { timeout: 45_000 }, async (t) => {
    const client = as.clients.basic;
    const seed = await obtainRefreshToken(as, { client: "basic" });
    as.resetStats();
    await sessions("rt", { clientId: client.client_id, clientSecret: client.client_secret, refreshToken: seed.refresh_token }, "oauth-fleet-rt:");

    const durationMs = Math.ceil(5.3 * LIFETIME_MS);
    const from = fleet.messages.length;
    const startedAt = Date.now();
    fleet.sendAll({ type: "run", id: "rt", durationMs, path: "/api/me", ...LOAD });
    const done = await fleet.each("run-done", "rt", durationMs + 20_000, from);
    const elapsed = Date.now() - startedAt;

    // The provider counts a refresh when it answers; the instance reports the pair once it is
    // stored: let one in flight land.
    const obtained = () => fleet.since(from, fromServer);
    await until(() => as.stats.tokenIssued.refresh_token === obtained().length, 3000);
    const pairs = obtained();
    const stats = as.stats;
    const failures = done.flatMap((d) => d.failures);
    const figures = {
      instances: INSTANCES,
      seconds: +(elapsed / 1000).toFixed(1),
      ttlSeconds: TTL_S,
      calls: done.reduce((n, d) => n + d.calls, 0),
      failedCalls: done.reduce((n, d) => n + (d.calls - d.ok), 0),
      failureCodes: [...new Set(failures.map((f) => f.code))],
      refreshRequests: stats.tokenRequests.refresh_token,
      refreshes: stats.refreshes,
      pairsFromServer: pairs.length,
      pairsByInstance: Array.from({ length: INSTANCES }, (_, i) => pairs.filter((m) => m.index === i).length),
      adoptions: fleet.since(from, (m) => m.type === "tokens" && m.reason === "adopt").length,
      reuseDetected: stats.reuseDetected,
      tokenErrors: { ...stats.tokenErrors },
      api: { ...stats.api },
      errorEvents: fleet.since(from, (m) => m.type === "error-event").map((m) => m.code),
      expiredEvents: fleet.since(from, (m) => m.type === "expired").length,
    };
    t.diagnostic(`fleet rotation: ${JSON.stringify(figures)}`);

    assert.deepEqual(failures, [], "no json() call failed");
    assert.equal(stats.reuseDetected, 0, "no rotated refresh token was presented again");
    assert.deepEqual(stats.tokenErrors, {}, "no invalid_grant (nor any other token error)");
    assert.equal(stats.tokenRequests.refresh_token, stats.refreshes, "every refresh request rotated");
    assert.equal(stats.tokenRequests.client_credentials + stats.tokenRequests.other, 0);
    assert.ok(elapsed >= 5 * LIFETIME_MS, `ran ${elapsed} ms, 5+ lifetimes`);
    // The seed exchange, then at least one refresh per lifetime...
    assert.ok(stats.refreshes >= 6, `refreshes ${stats.refreshes}`);
    // ...for the fleet, not per process: about one per half lifetime (the session's margin is
    // capped at half the token's life; whole-second expiry times can make an interval
    // shorter), far from 4 processes' worth.
    const bound = Math.ceil(elapsed / (LIFETIME_MS / 3)) + 3;
    assert.ok(stats.refreshes <= bound, `refreshes ${stats.refreshes} <= ${bound}`);
    // Each pair the provider issued reached exactly one instance from the server; the others adopted it.
    assert.equal(pairs.length, stats.tokenIssued.refresh_token, "refresh requests = rotations");
    const times = pairs.map((m) => m.at).sort((a, b) => a - b);
    const gaps = times.slice(1).map((x, i) => x - times[i]);
    assert.ok(gaps.every((g) => g >= LIFETIME_MS / 12), `refreshes spread out, not racing: gaps ${gaps.join(", ")} ms`);
    assert.ok(figures.adoptions >= INSTANCES - 1, `the others adopted stored pairs (${figures.adoptions})`);
    for (let i = 0; i < INSTANCES; i++) assert.ok(done[i].calls > 30, `instance ${i} kept calling (${done[i].calls})`);
    assert.equal(stats.api.refused, 0, "no expired or revoked token was sent to the API");
    assert.deepEqual(figures.errorEvents, []);
    assert.equal(figures.expiredEvents, 0);
  });

  test("client credentials: 4 processes × 25 concurrent calls on a cold start make one token request", { timeout: 20_000 }, async (t) => {
    const client = as.clients.post;
    as.resetStats();
    await dispose("rt");
    await sessions("cc", { clientId: client.client_id, clientSecret: client.client_secret, clientAuth: "client_secret_post", scope: "api:read" }, "oauth-fleet-cc:");
    const from = fleet.messages.length;
    fleet.sendAll({ type: "burst", id: "cc", n: 25, path: "/api/me" });
    const done = await fleet.each("burst-done", "cc", 15_000, from);
    const failures = done.flatMap((d) => d.failures);
    const figures = {
      ok: done.reduce((n, d) => n + d.ok, 0),
      failureCodes: failures.map((f) => f.code),
      tokenRequests: { ...as.stats.tokenRequests },
      pairsFromServer: fleet.since(from, (m) => m.id === "cc" && fromServer(m)).map((m) => m.index),
      adoptions: fleet.since(from, (m) => m.id === "cc" && m.type === "tokens" && m.reason === "adopt").length,
      api: { ...as.stats.api },
    };
    t.diagnostic(`fleet client credentials: ${JSON.stringify(figures)}`);
    assert.deepEqual(failures, [], "no call failed");
    assert.equal(figures.ok, INSTANCES * 25);
    assert.equal(as.stats.tokenRequests.client_credentials, 1, "one token request for the fleet");
    assert.equal(as.stats.tokenIssued.client_credentials, 1);
    assert.equal(figures.pairsFromServer.length, 1, "one instance got the token from the server");
    assert.equal(figures.adoptions, INSTANCES - 1, "the others adopted it from the record");
    assert.deepEqual(as.stats.api, { accepted: INSTANCES * 25, refused: 0, forbidden: 0 });
    assert.deepEqual(as.stats.tokenErrors, {});
  });
  test("client credentials: 100 concurrent calls on an expired token make one token request for the fleet", { timeout: 20_000 }, async (t) => {
    const client = as.clients.basic;
    // No timer: the token is renewed only when calls find it expired, so the burst is what
    // asks for it.
    await dispose("cc");
    await sessions("cc-expired", { clientId: client.client_id, clientSecret: client.client_secret, scope: "api:read" }, "oauth-fleet-cc-expired:", { autoRefresh: false });
    const burst = async () => {
      const from = fleet.messages.length;
      fleet.sendAll({ type: "burst", id: "cc-expired", n: 25, path: "/api/me" });
      const done = await fleet.each("burst-done", "cc-expired", 15_000, from);
      return {
        ok: done.reduce((n, d) => n + d.ok, 0),
        failures: done.flatMap((d) => d.failures),
        fromServer: fleet.since(from, (m) => m.id === "cc-expired" && fromServer(m)).length,
      };
    };
    as.resetStats();
    const cold = await burst();
    assert.equal(as.stats.tokenRequests.client_credentials, 1, "one token request on the cold start");
    // Past the token's life (whole seconds at the provider): every instance holds it expired.
    await sleep(TTL_S * 1000 + 1200);
    as.resetStats();
    const expired = await burst();
    t.diagnostic(`fleet client credentials, expired: ${JSON.stringify({ cold, expired, tokenRequests: as.stats.tokenRequests, api: as.stats.api })}`);
    assert.deepEqual([...cold.failures, ...expired.failures], [], "no call failed");
    assert.equal(cold.ok + expired.ok, 2 * INSTANCES * 25);
    assert.equal(as.stats.tokenRequests.client_credentials, 1, "one token request for the fleet on the expired token");
    assert.equal(expired.fromServer, 1, "one instance got it from the server, the others adopted it");
    assert.equal(as.stats.api.refused, 0, "no expired token reached the API");
  });
  // The kill tests: a short lease (its floor, 4 × timeoutMs), so that a dead holder costs the
  // others seconds, not the default's 20 s.
  const KILL = { timeoutMs: 1500, retries: 1, leaseMs: 6000 };
  const alive = () => Array.from({ length: INSTANCES }, (_, i) => i).filter((i) => fleet.alive(i));

  /** A seeded session `id` in every live instance, calling continuously; resolves once a pair
   *  from the provider is in and the fleet has called with it a while. */
  async function seededRun(id, durationMs) {
    const client = as.clients.basic;
    const seed = await obtainRefreshToken(as, { client: "basic" });
    const live = alive();
    let from = fleet.messages.length;
    for (const i of live) {
      fleet.send(i, {
        type: "session",
        id,
        host: as.api.url,
        oauth: { tokenEndpoint: as.tokenEndpoint, clientId: client.client_id, clientSecret: client.client_secret, refreshToken: seed.refresh_token },
        prefix: `oauth-fleet-${id}:`,
        ...KILL,
      });
    }
    for (const i of live) await fleet.waitFor((m) => m.index === i && m.type === "session-ready" && m.id === id, 10_000, `session ${id} in ${i}`, from);
    from = fleet.messages.length;
    for (const i of live) fleet.send(i, { type: "run", id, durationMs, path: "/api/me", ...LOAD });
    await fleet.waitFor((m) => m.id === id && fromServer(m), 10_000, "the seed exchanged", from).catch((e) => {
      throw new Error(`${e.message}: ${JSON.stringify(fleet.since(from).filter((m) => m.type !== "acquired" && m.type !== "released").slice(0, 12))}`);
    });
    await sleep(500);
    return { from, live };
  }

  /** Kills the first live instance that announces `what` ("token-request" or "putting"). */
  async function killAt(what, from, live) {
    const m = await fleet.waitFor((x) => x.type === what, 4 * LIFETIME_MS, `a lease holder's ${what}`, from);
    const killedAt = Date.now();
    fleet.children[m.index].kill("SIGKILL");
    const survivors = live.filter((i) => i !== m.index);
    for (const i of survivors) fleet.send(i, { type: "stall" });
    const exit = await within(fleet.children[m.index].exited, 5000, "holder exit");
    assert.equal(exit.signal, "SIGKILL");
    return { killed: m.index, killedAt, survivors };
  }

  test("the lease holder is stalled (SIGSTOP) after the rotation, within its lease: it writes the pair on waking, 0 reuses", { timeout: 40_000 }, async (t) => {
    for (const id of ["rt", "cc", "cc-expired"]) fleet.sendAll({ type: "dispose", id });
    as.resetStats();
    const durationMs = 4 * LIFETIME_MS;
    const { from, live } = await seededRun("stall", durationMs);
    for (const i of live) fleet.send(i, { type: "stall", put: true });
    const m = await fleet.waitFor((x) => x.type === "putting", 4 * LIFETIME_MS, "a lease holder writing its new pair", from);
    const stalledAt = Date.now();
    fleet.children[m.index].kill("SIGSTOP");
    for (const i of live) if (i !== m.index) fleet.send(i, { type: "stall" });
    // Stopped for 3 s of its 6 s lease (the worker's own 3 s hold runs out meanwhile), then
    // woken: it writes the pair the provider rotated for it.
    await sleep(3000);
    fleet.children[m.index].kill("SIGCONT");
    fleet.send(m.index, { type: "stall" });
    const done = [];
    for (const i of live) done.push(await fleet.waitFor((x) => x.index === i && x.type === "run-done" && x.id === "stall", durationMs + 20_000, `run ${i}`, from));
    const failures = done.flatMap((d) => d.failures);
    // While the holder sleeps, a call whose token has expired waits timeoutMs for its record
    // and fails with TIMEOUT; the sleeper's own calls time out when it wakes.
    const documented = (f) => f.code === "TIMEOUT" && f.at >= stalledAt - 1000 && f.at <= stalledAt + KILL.leaseMs + 2500;
    const figures = {
      stalled: m.index,
      calls: done.reduce((n, d) => n + d.calls, 0),
      failed: failures.length,
      documentedTimeouts: failures.filter(documented).length,
      refreshRequests: as.stats.tokenRequests.refresh_token,
      refreshes: as.stats.refreshes,
      reuseDetected: as.stats.reuseDetected,
      tokenErrors: { ...as.stats.tokenErrors },
      pairsAfterWake: fleet.since(from, (x) => x.id === "stall" && x.type === "tokens" && x.at > stalledAt).map((x) => `${x.index}:${x.reason}`),
      states: done.map((d) => d.state),
    };
    t.diagnostic(`stall after the rotation: ${JSON.stringify(figures)}`);

    assert.deepEqual(failures.filter((f) => !documented(f)), [], "no call failed otherwise");
    assert.equal(as.stats.reuseDetected, 0, "no refresh token was presented twice");
    assert.deepEqual(as.stats.tokenErrors, {}, "no invalid_grant");
    assert.equal(as.stats.tokenRequests.refresh_token, as.stats.refreshes, "every refresh request rotated");
    assert.ok(figures.pairsAfterWake.includes(`${m.index}:refresh`), "the sleeper installed the pair it was rotated");
    assert.deepEqual(figures.states, live.map(() => "active"));
    assert.equal(fleet.since(from, (x) => x.id === "stall" && x.type === "expired").length, 0);
  });

  test("the lease holder is killed before its refresh reached the provider: nothing is lost, the others take over", { timeout: 40_000 }, async (t) => {
    for (const i of alive()) fleet.send(i, { type: "dispose", id: "stall" });
    as.resetStats();
    const durationMs = 4 * LIFETIME_MS + KILL.leaseMs;
    const { from, live } = await seededRun("kill-token", durationMs);
    for (const i of live) fleet.send(i, { type: "stall", token: true });
    const { killed, killedAt, survivors } = await killAt("token-request", from, live);
    // Counted from the kill (the dead holder's request never left it).
    const before = { requests: as.stats.tokenRequests.refresh_token, refreshes: as.stats.refreshes };

    const done = [];
    for (const i of survivors) done.push(await fleet.waitFor((m) => m.index === i && m.type === "run-done" && m.id === "kill-token", durationMs + 20_000, `run ${i}`, from));
    const obtained = () => fleet.since(from, (m) => m.id === "kill-token" && fromServer(m) && m.at > killedAt);
    await until(() => as.stats.refreshes - before.refreshes === obtained().length, 3000);
    const pairs = obtained();
    const failures = done.flatMap((d) => d.failures);
    // A dead holder's documented cost: while its lease lives, a call whose access token has
    // expired waits timeoutMs for the holder's record, then fails with TIMEOUT.
    const documented = (f) => f.code === "TIMEOUT" && f.at >= killedAt - 1000 && f.at <= killedAt + KILL.leaseMs + 2500;
    const figures = {
      killed,
      recoveryMs: pairs.length ? pairs[0].at - killedAt : null,
      calls: done.reduce((n, d) => n + d.calls, 0),
      failed: failures.length,
      timeoutsWhileLeaseHeld: failures.filter(documented).length,
      refreshRequestsAfterKill: as.stats.tokenRequests.refresh_token - before.requests,
      refreshesAfterKill: as.stats.refreshes - before.refreshes,
      pairsFromServer: pairs.map((m) => m.index),
      reuseDetected: as.stats.reuseDetected,
      tokenErrors: { ...as.stats.tokenErrors },
      states: done.map((d) => d.state),
    };
    t.diagnostic(`kill before the rotation: ${JSON.stringify(figures)}`);

    assert.deepEqual(failures.filter((f) => !documented(f)), [], "no call failed otherwise");
    assert.equal(as.stats.reuseDetected, 0, "no refresh token was presented twice");
    assert.deepEqual(as.stats.tokenErrors, {}, "no invalid_grant");
    // The dead holder's request never left it: every refresh request after the kill rotated,
    // and each new pair reached one survivor from the provider (the others adopted it).
    assert.equal(figures.refreshRequestsAfterKill, figures.refreshesAfterKill);
    assert.equal(pairs.length, figures.refreshesAfterKill);
    assert.ok(pairs.every((m) => survivors.includes(m.index)));
    assert.ok(figures.refreshesAfterKill >= 2, `rotations after the kill: ${figures.refreshesAfterKill}`);
    assert.ok(figures.recoveryMs !== null && figures.recoveryMs <= KILL.leaseMs + 2500, `recovered in ${figures.recoveryMs} ms`);
    assert.deepEqual(figures.states, survivors.map(() => "active"));
    assert.equal(fleet.since(from, (m) => m.id === "kill-token" && m.type === "expired").length, 0);
  });

  test("the lease holder is killed after the provider rotated, before the write: the grant is lost, once, cleanly", { timeout: 40_000 }, async (t) => {
    for (const i of alive()) fleet.send(i, { type: "dispose", id: "kill-token" });
    as.resetStats();
    const durationMs = 2 * LIFETIME_MS + KILL.leaseMs;
    const { from, live } = await seededRun("kill-put", durationMs);
    assert.ok(live.length >= 3, "three instances left");
    for (const i of live) fleet.send(i, { type: "stall", put: true });
    const { killed, killedAt, survivors } = await killAt("putting", from, live);
    // The dead holder's refresh was answered (the provider rotated) before it announced the
    // write: every refresh request from here on presents a token of the lost grant.
    const atKill = as.stats.tokenRequests.refresh_token;

    const done = [];
    for (const i of survivors) done.push(await fleet.waitFor((m) => m.index === i && m.type === "run-done" && m.id === "kill-put", durationMs + 20_000, `run ${i}`, from));
    const failures = done.flatMap((d) => d.failures);
    const expired = fleet.since(from, (m) => m.id === "kill-put" && m.type === "expired").map((m) => m.index);
    const documented = (f) =>
      (f.code === "TIMEOUT" && f.at >= killedAt - 1000 && f.at <= killedAt + KILL.leaseMs + 2500) ||
      (f.code === "SESSION_EXPIRED" && f.at >= killedAt);
    const figures = {
      killed,
      refreshRequestsAfterKill: as.stats.tokenRequests.refresh_token - atKill,
      reuseDetected: as.stats.reuseDetected,
      grantsRevoked: as.stats.grantsRevoked,
      tokenErrors: { ...as.stats.tokenErrors },
      failureCodes: [...new Set(failures.map((f) => f.code))],
      expired,
      states: done.map((d) => d.state),
      newPairsAfterKill: fleet.since(from, (m) => m.id === "kill-put" && m.type === "tokens" && m.at > killedAt).length,
    };
    t.diagnostic(`kill after the rotation: ${JSON.stringify(figures)}`);

    // The spent token was presented once by the first survivor to hold the lease: the
    // provider revoked the grant. The others were refused too (the grant is gone), each at
    // most once: no retries of a refused refresh token.
    assert.equal(as.stats.reuseDetected, 1, "one reuse");
    assert.equal(as.stats.grantsRevoked, 1);
    assert.ok(figures.refreshRequestsAfterKill >= 1 && figures.refreshRequestsAfterKill <= survivors.length, `refused requests ${figures.refreshRequestsAfterKill}`);
    assert.deepEqual(as.stats.tokenErrors, { invalid_grant: figures.refreshRequestsAfterKill });
    assert.equal(figures.newPairsAfterKill, 0);
    // Every survivor's session ended, once, and says so; its calls fail at once with
    // SESSION_EXPIRED from then on (none hangs: every run ended).
    assert.deepEqual([...expired].sort(), [...survivors].sort());
    assert.deepEqual(figures.states, survivors.map(() => "expired"));
    assert.deepEqual(failures.filter((f) => !documented(f)), [], "no other failure");
    assert.ok(failures.some((f) => f.code === "SESSION_EXPIRED"));
  });
});
