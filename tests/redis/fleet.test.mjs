// A fleet: four Node processes, each with one AuthSession on one shared Redis record
// (storage: redisStorage, two processes on node-redis, two on ioredis), all making
// concurrent json() calls to the reference server while access tokens live 2.5 s.
//
// 1. Exactly one refresh per rotation: the server's refresh count equals the number of
//    pairs issued by refresh, 0 spent-token reuses (the server's reuse detection), 0 failed
//    requests; the other processes adopt the pair the lease holder stored.
// 2. The lease holder is killed (SIGKILL) in the middle of a refresh (the reference server
//    delays /auth/refresh, so it is mid-request): the others take the lease once it runs
//    out and go on, with at most one extra login and no failed request.
// 3. The holder is killed after the server rotated but before it stored the pair: the
//    record's refresh token is spent, so the survivor that takes over is refused once
//    (reuse detection) and logs in again; the others adopt; no failed request.
//
// The figures are printed (t.diagnostic) and end up in the runner's output. Uses the built
// package (pkg/, or AUTH_SESSION_PKG_DIR): scripts/build-pkg.sh first.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";

import { startServer } from "../server/reference-server.mjs";
import { Fleet } from "./fleet.mjs";
import { sleep, startRedis, until, within } from "./harness.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const pkg = resolve(process.env.AUTH_SESSION_PKG_DIR || join(root, "pkg"));

const INSTANCES = 4;
const ACCESS_TTL_MS = 2500;
const TIMEOUT_MS = 1500;
const RETRIES = 1;
/** What the session asks the lease for: every attempt of a refresh with its retries. */
const LEASE_TTL_MS = TIMEOUT_MS * (RETRIES + 4) + Array.from({ length: RETRIES }, (_, i) => Math.min(5000, 200 * 2 ** i)).reduce((a, b) => a + b, 0);
const LOAD = { concurrency: 3, pauseMs: 20 };

/** The processes, and every message they sent (in arrival order). */


const isRefresh = (m) => m.type === "tokens" && m.reason === "refresh";

describe("a fleet of Node processes on one Redis record", { timeout: 150_000 }, () => {
  let redis;
  let server;
  const fleet = new Fleet(join(here, "fleet-worker.mjs"));
  const figures = {};

  before(async () => {
    redis = await within(startRedis(), 20_000, "start redis-server");
    server = await startServer({ accessTtlMs: ACCESS_TTL_MS });
    for (let i = 0; i < INSTANCES; i++) {
      fleet.spawn(i, {
        AUTH_SESSION_PKG_DIR: pkg,
        FLEET_HOST: server.url,
        FLEET_REDIS: redis.url,
        FLEET_CLIENT: i % 2 === 0 ? "node-redis" : "ioredis",
        FLEET_PREFIX: "fleet-test:",
        FLEET_TIMEOUT_MS: String(TIMEOUT_MS),
        FLEET_RETRIES: String(RETRIES),
      });
    }
    for (let i = 0; i < INSTANCES; i++) {
      await fleet
        .waitFor((m) => m.index === i && (m.type === "ready" || m.type === "fatal"), 30_000, `instance ${i} ready`)
        .then((m) => assert.equal(m.type, "ready", `instance ${i}: ${JSON.stringify(m)}`))
        .catch((err) => {
          throw new Error(`${err.message}\n${fleet.children[i].output}`);
        });
    }
  });

  after(async () => {
    await fleet.stopAll();
    await server?.close();
    await redis?.stop();
  });

  test("the package exports ./redis (resolved by name, as users import it)", { timeout: 30_000 }, () => {
    const manifest = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8"));
    assert.deepEqual(manifest.exports["./redis"], { types: "./redis.d.ts", default: "./redis.js" });
    assert.ok(manifest.files.includes("redis.js") && manifest.files.includes("redis.d.ts"));
    assert.equal(
      readFileSync(join(pkg, "redis.js"), "utf8"),
      readFileSync(join(root, "pkg-template/redis.js"), "utf8"),
      "pkg/redis.js is pkg-template/redis.js as is (rebuild pkg/ after editing it)",
    );
    const consumer = mkdtempSync(join(tmpdir(), "auth-session-redis-consumer-"));
    try {
      mkdirSync(join(consumer, "node_modules"));
      symlinkSync(pkg, join(consumer, "node_modules", "auth-session"), "dir");
      const probe = spawnSync(
        process.execPath,
        [
          "--input-type=module",
          "-e",
          'const m = await import("auth-session/redis"); const s = m.redisStorage({ call: async () => null }); ' +
            'console.log(Object.keys(m).join(","), typeof s.acquire, typeof s.release, await s.get("k"));',
        ],
        { cwd: consumer, encoding: "utf8", timeout: 20_000 },
      );
      assert.equal(probe.status, 0, probe.stderr);
      assert.equal(probe.stdout.trim(), "redisStorage function function null");
    } finally {
      rmSync(consumer, { recursive: true, force: true });
    }
  });

  test("four processes: exactly one refresh per rotation, no reuse, no failed request", { timeout: 60_000 }, async (t) => {
    // One login; the others restore its record.
    fleet.send(0, { type: "login" });
    const login = await fleet.waitFor((m) => m.index === 0 && (m.type === "started" || m.type === "fatal"), 10_000, "login");
    assert.equal(login.state, "active", JSON.stringify(login));
    for (let i = 1; i < INSTANCES; i++) fleet.send(i, { type: "restore" });
    for (let i = 1; i < INSTANCES; i++) {
      const m = await fleet.waitFor((x) => x.index === i && (x.type === "started" || x.type === "fatal"), 10_000, `restore ${i}`);
      assert.equal(m.state, "active", `instance ${i} restored the shared record: ${JSON.stringify(m)}`);
    }

    const durationMs = Math.ceil(5.2 * ACCESS_TTL_MS);
    const startedAt = Date.now();
    const from = fleet.messages.length;
    for (let i = 0; i < INSTANCES; i++) fleet.send(i, { type: "run", durationMs, ...LOAD });
    const done = [];
    for (let i = 0; i < INSTANCES; i++) {
      done.push(await fleet.waitFor((m) => m.index === i && m.type === "run-done", durationMs + 15_000, `run ${i}`, from));
    }
    const elapsed = Date.now() - startedAt;

    // The server counts a refresh when the request arrives, the instance reports it once the
    // pair is in: let one in flight land.
    const refreshEvents = () => fleet.since(0, isRefresh);
    await until(() => server.stats.refresh === refreshEvents().length, 3000);
    const refreshes = refreshEvents();
    const rotations = new Set(refreshes.map((m) => m.accessExpiresAt)).size;
    const adopts = fleet.since(0, (m) => m.type === "tokens" && m.reason === "adopt");
    const failures = done.flatMap((d) => d.failures);
    const calls = done.reduce((n, d) => n + d.calls, 0);
    Object.assign(figures, {
      instances: INSTANCES,
      seconds: +(elapsed / 1000).toFixed(1),
      accessTtlMs: ACCESS_TTL_MS,
      calls,
      failedRequests: done.reduce((n, d) => n + (d.calls - d.ok), 0),
      rotations,
      serverRefreshes: server.stats.refresh,
      spentReuses: server.stats.spentReuse,
      logins: server.stats.login,
      adoptions: adopts.length,
      refreshesByInstance: Array.from({ length: INSTANCES }, (_, i) => refreshes.filter((m) => m.index === i).length),
      leaseTaken: fleet.since(0, (m) => m.type === "acquired" && m.taken).length,
      leaseBusy: fleet.since(0, (m) => m.type === "acquired" && !m.taken).length,
      errorEvents: fleet.since(0, (m) => m.type === "error-event").map((m) => m.code),
    });
    t.diagnostic(`fleet: ${JSON.stringify(figures)}`);

    assert.deepEqual(failures, [], "no json() call failed");
    assert.equal(figures.failedRequests, 0);
    assert.equal(server.stats.spentReuse, 0, "no spent refresh token was ever sent");
    assert.equal(server.stats.login, 1, "one login for the whole fleet");
    assert.equal(server.stats.refresh, refreshes.length, "every /auth/refresh request made exactly one rotation");
    assert.equal(rotations, refreshes.length, "no pair was issued twice over");
    assert.ok(elapsed >= 5 * ACCESS_TTL_MS, `ran ${elapsed} ms, at least 5 access-token lifetimes`);
    assert.ok(rotations >= 5, `at least 5 rotations (${rotations})`);
    // One rotation per refresh interval, never two at once: consecutive refreshes are at
    // least a good part of a lifetime apart (the session refreshes at half life).
    const times = refreshes.map((m) => m.at).sort((a, b) => a - b);
    const gaps = times.slice(1).map((t, i) => t - times[i]);
    assert.ok(gaps.every((g) => g >= ACCESS_TTL_MS / 5), `refresh gaps ${gaps.join(", ")} ms`);
    assert.ok(rotations <= Math.ceil((elapsed + 2 * ACCESS_TTL_MS) / (ACCESS_TTL_MS / 2)) + 1, `no more rotations than lifetimes allow (${rotations})`);
    // The others wait and adopt the pair the holder stored: every rotation (but the last,
    // which may land as the run ends) reached every instance, by its refresh or by adoption.
    const pairs = [...new Set(refreshes.map((m) => m.accessExpiresAt))];
    for (const pair of pairs.slice(0, -1)) {
      const reached = new Set(fleet.since(0, (m) => m.type === "tokens" && m.accessExpiresAt === pair).map((m) => m.index));
      assert.equal(reached.size, INSTANCES, `a pair reached instances ${[...reached]}`);
    }
    for (let i = 0; i < INSTANCES; i++) {
      assert.ok(done[i].calls > 50, `instance ${i} made calls (${done[i].calls})`);
    }
    assert.equal(figures.errorEvents.length, 0, `no error events: ${figures.errorEvents}`);
  });

  test("the lease holder is killed mid-refresh: the others take over after the lease's ttl", { timeout: 60_000 }, async (t) => {
    assert.ok(figures.rotations, "runs after the fleet test");
    const before = { ...server.stats };
    const from = fleet.messages.length;
    // The next refresh request waits at the server, so its sender is mid-refresh.
    const fault = server.fault({ path: "/auth/refresh", method: "POST" }, { delayMs: 1000 }, 1);
    const durationMs = 4 * ACCESS_TTL_MS + LEASE_TTL_MS;
    for (let i = 0; i < INSTANCES; i++) fleet.send(i, { type: "run", durationMs, ...LOAD });

    assert.ok(await until(() => fault.remaining === 0, 3 * ACCESS_TTL_MS, 2), "a refresh reached the server");
    // The holder: the instance whose acquire took the lease (and has not given it back).
    let holder;
    await until(() => {
      const taken = fleet.since(from, (m) => m.type === "acquired" && m.taken);
      const last = taken.at(-1);
      if (last && !fleet.since(fleet.messages.indexOf(last), (m) => m.index === last.index && m.type === "released").length) {
        holder = last.index;
      }
      return holder !== undefined;
    }, 2000, 2);
    assert.notEqual(holder, undefined, "the lease holder announced its acquire");
    const killedAt = Date.now();
    fleet.children[holder].kill("SIGKILL");
    const exit = await within(fleet.children[holder].exited, 5000, "holder exit");
    assert.equal(exit.signal, "SIGKILL");
    const survivors = Array.from({ length: INSTANCES }, (_, i) => i).filter((i) => i !== holder);

    const done = [];
    for (const i of survivors) {
      done.push(await fleet.waitFor((m) => m.index === i && m.type === "run-done", durationMs + 20_000, `run ${i}`, from));
    }
    await until(() => server.stats.refresh - before.refresh === fleet.since(from, isRefresh).length + 1, 3000);

    const after = fleet.since(from);
    const firstNewPair = after.find((m) => m.type === "tokens" && (m.reason === "refresh" || m.reason === "login") && m.at > killedAt);
    const refreshesAfterKill = after.filter((m) => isRefresh(m) && m.at > killedAt);
    const failures = done.flatMap((d) => d.failures);
    const phase = {
      killedInstance: holder,
      survivors: survivors.length,
      leaseTtlMs: LEASE_TTL_MS,
      recoveryMs: firstNewPair ? firstNewPair.at - killedAt : null,
      calls: done.reduce((n, d) => n + d.calls, 0),
      failedRequests: done.reduce((n, d) => n + (d.calls - d.ok), 0),
      failureCodes: [...new Set(failures.map((f) => f.code))],
      serverRefreshes: server.stats.refresh - before.refresh,
      rotationsAfterKill: new Set(refreshesAfterKill.map((m) => m.accessExpiresAt)).size,
      extraLogins: server.stats.login - before.login,
      spentReuses: server.stats.spentReuse - before.spentReuse,
      errorEvents: after.filter((m) => m.type === "error-event").map((m) => m.code),
      expiredEvents: after.filter((m) => m.type === "expired").length,
    };
    // The documented cost of a dead holder: while its lease runs, a call whose access token
    // has expired waits timeoutMs for the holder's record, then fails with TIMEOUT; a call
    // with a valid token goes out with it. Nothing else fails.
    const documented = (f) => f !== null && f.code === "TIMEOUT" && f.at >= killedAt - 1000 && f.at <= killedAt + LEASE_TTL_MS + 2500;
    phase.timeoutsWhileLeaseHeld = failures.filter(documented).length;
    figures.kill = phase;
    t.diagnostic(`kill: ${JSON.stringify(phase)}`);

    assert.deepEqual(failures.filter((f) => !documented(f)), [], "no survivor's json() call failed otherwise");
    assert.ok(phase.extraLogins <= 1, `at most one extra login (${phase.extraLogins})`);
    assert.ok(phase.spentReuses <= phase.extraLogins, "a spent token was sent only if the dead holder's refresh had spent it");
    assert.ok(firstNewPair, "the survivors got a new pair");
    assert.ok(!fleet.since(from, (m) => m.index === holder && m.type === "tokens" && m.at > killedAt).length);
    // Nobody refreshes while the dead holder's lease still runs: the first new pair comes
    // once it ran out (and not much later).
    assert.ok(phase.recoveryMs <= LEASE_TTL_MS + 2500, `recovered in ${phase.recoveryMs} ms`);
    // Then one refresh per rotation again, by the survivors only.
    assert.ok(phase.rotationsAfterKill >= 2, `rotations after the kill: ${phase.rotationsAfterKill}`);
    assert.equal(refreshesAfterKill.length, phase.rotationsAfterKill, "one refresh per rotation after the kill");
    assert.ok(refreshesAfterKill.every((m) => survivors.includes(m.index)));
    assert.equal(phase.expiredEvents, 0, "no survivor's session ended");
  });

  test("the holder is killed after the server rotated, before it stored the pair: one extra login", { timeout: 60_000 }, async (t) => {
    assert.ok(figures.kill, "runs after the kill test");
    const alive = Array.from({ length: INSTANCES }, (_, i) => i).filter((i) => fleet.alive(i));
    assert.ok(alive.length >= 2);
    const before = { ...server.stats };
    const from = fleet.messages.length;
    // The holder announces the write of its new pair and waits: it dies there, so the
    // refresh token in the record is one the server has already spent.
    for (const i of alive) fleet.send(i, { type: "stall-put", on: true });
    const durationMs = 4 * ACCESS_TTL_MS + LEASE_TTL_MS;
    for (const i of alive) fleet.send(i, { type: "run", durationMs, ...LOAD });
    const putting = await fleet.waitFor((m) => m.type === "putting", 3 * ACCESS_TTL_MS, "a holder writing its new pair", from);
    const killedAt = Date.now();
    fleet.children[putting.index].kill("SIGKILL");
    const survivors = alive.filter((i) => i !== putting.index);
    for (const i of survivors) fleet.send(i, { type: "stall-put", on: false });
    const exit = await within(fleet.children[putting.index].exited, 5000, "holder exit");
    assert.equal(exit.signal, "SIGKILL");

    const done = [];
    for (const i of survivors) {
      done.push(await fleet.waitFor((m) => m.index === i && m.type === "run-done", durationMs + 20_000, `run ${i}`, from));
    }
    const after = fleet.since(from);
    const firstNewPair = after.find((m) => m.type === "tokens" && (m.reason === "refresh" || m.reason === "login") && m.at > killedAt);
    const refreshesAfterKill = after.filter((m) => isRefresh(m) && m.at > killedAt);
    const failures = done.flatMap((d) => d.failures);
    const phase = {
      killedInstance: putting.index,
      survivors: survivors.length,
      recoveryMs: firstNewPair ? firstNewPair.at - killedAt : null,
      recoveredBy: firstNewPair?.reason ?? null,
      calls: done.reduce((n, d) => n + d.calls, 0),
      failedRequests: done.reduce((n, d) => n + (d.calls - d.ok), 0),
      failureCodes: [...new Set(failures.map((f) => f.code))],
      serverRefreshes: server.stats.refresh - before.refresh,
      rotationsAfterKill: new Set(refreshesAfterKill.map((m) => m.accessExpiresAt)).size,
      extraLogins: server.stats.login - before.login,
      spentReuses: server.stats.spentReuse - before.spentReuse,
      errorEvents: after.filter((m) => m.type === "error-event").map((m) => m.code),
      expiredEvents: after.filter((m) => m.type === "expired").length,
    };
    const documented = (f) => f !== null && f.code === "TIMEOUT" && f.at >= killedAt - 1000 && f.at <= killedAt + LEASE_TTL_MS + 2500;
    phase.timeoutsWhileLeaseHeld = failures.filter(documented).length;
    figures.killAfterRotation = phase;
    t.diagnostic(`kill after rotation: ${JSON.stringify(phase)}`);

    assert.deepEqual(failures.filter((f) => !documented(f)), [], "no survivor's json() call failed otherwise");
    // The record's refresh token was spent by the dead holder: the one survivor that takes
    // the lease sends it once (the server's reuse detection revokes the family), logs in
    // again with the credentials, and the others adopt that pair.
    assert.ok(phase.extraLogins <= 1, `at most one extra login (${phase.extraLogins})`);
    assert.ok(phase.spentReuses <= 1, `the spent token was sent at most once (${phase.spentReuses})`);
    assert.equal(phase.extraLogins, phase.spentReuses, "a login again only after the refused spent token");
    assert.ok(firstNewPair, "the survivors got a new pair");
    assert.ok(phase.recoveryMs <= LEASE_TTL_MS + 2500, `recovered in ${phase.recoveryMs} ms`);
    assert.ok(phase.rotationsAfterKill >= 2, `rotations after the kill: ${phase.rotationsAfterKill}`);
    assert.equal(refreshesAfterKill.length, phase.rotationsAfterKill, "one refresh per rotation after the kill");
    assert.equal(phase.expiredEvents, 0, "no survivor's session ended (credentials log in again)");
  });
});
