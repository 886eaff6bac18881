// Fleet chaos (issue 13 item 8): N Node processes (tests/chaos/chaos-worker.mjs), each with a
// SessionPool smaller than the tenants, on one real redis-server, making random json() calls
// to the reference server while access tokens live 3 s — and a seeded schedule of faults:
//
//   kill-any        kill -9 of a random process at a random moment
//   kill-refresh    kill -9 of the lease holder mid-refresh (its /auth/refresh held 1 s at
//                   the server, the process killed once the request is out)
//   kill-unwritten  kill -9 of the lease holder after the server rotated, before its record
//                   write (the worker's stall-put hook)
//   redis-restart   redis-server stopped (SIGTERM or SIGKILL) and started again on the same
//                   port while the processes run; appendonly yes + appendfsync always, so a
//                   restart keeps the record and the lease (see DECISIONS below)
//   stall           one process's Redis link stalled (its TCP proxy stops forwarding) for
//                   0.5-4 s, preferably the current lease holder's
//
// A killed process is replaced by a new one after 0.3-1.5 s. Every choice comes from one
// seeded PRNG (mulberry32): CHAOS_SEED picks it, CHAOS_SECONDS the length of the run.
// The fault kinds are dealt from a shuffled deck, so every kind comes up in every five faults.
//
// The invariants, checked on the journals the processes write synchronously (a kill -9
// loses none of it) and on the reference server's counters:
//   - spent-token reuses ≤ the "unavoidable" kills: a process killed with a refresh sent and
//     its pair not yet written (the docs' cost: one reuse, the family revoked, one re-login);
//   - logins ≤ tenants + unavoidable kills + kills during a login in flight;
//   - no failed call but TIMEOUT inside a documented window: while the lease of a killed or
//     stalled holder runs (from the fault to its end + the lease's ttl + 2.5 s slack), or while
//     Redis is down (the same window after it is back); and UNAUTHORIZED of a call in flight
//     when a reuse revoked the family (its one replay carried a pair of that family);
//   - every call settles within the bound computed below; the max is printed.
//
// DECISIONS. Redis runs with appendonly (fsync always): a restart is an outage, never a lost
// record, so it costs no login; node-redis and ioredis reconnect by themselves. Storage calls
// that fail during an outage or a stall are `error` events (STORAGE_ERROR), and the protocol
// goes on without the lease (see the figures for what that costs).

import { fork, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { startServer } from "../server/reference-server.mjs";
import { freePort, rawCommand as redisCommand, sleep, within } from "../redis/harness.mjs";
import { prng } from "./prng.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");

export const ACCESS_TTL_MS = 3000;
export const TIMEOUT_MS = 1500;
export const RETRIES = 1;
/** The session's default lease: timeoutMs × (retries + 4) + the backoffs' caps. */
export const LEASE_TTL_MS =
  TIMEOUT_MS * (RETRIES + 4) + Array.from({ length: RETRIES }, (_, i) => Math.min(5000, 200 * 2 ** i)).reduce((a, b) => a + b, 0);
/** One API call's own attempts: (retries + 1) × timeoutMs + the backoffs. */
const API_ATTEMPTS_MS = (RETRIES + 1) * TIMEOUT_MS + 200 * RETRIES;
/**
 * The bound every call must settle within: a call may wait for one refresh under its own
 * lease (the lease's ttl covers the acquire, the look, every attempt and the write), send its
 * attempts, get a 401, wait for a second refresh (or the quiet re-login after a refused spent
 * token, also under a lease) and replay its attempts: 2 leases + 2 × the attempts, + 2 s of
 * scheduling slack for a loaded 2-core machine.
 */
export const CALL_BOUND_MS = 2 * LEASE_TTL_MS + 2 * API_ATTEMPTS_MS + 2000;
/** After a fault, how long its documented TIMEOUTs may go on: the lease's ttl + slack. */
const WINDOW_MS = LEASE_TTL_MS + 2500;

export const KINDS = ["kill-any", "kill-refresh", "kill-unwritten", "redis-restart", "stall"];


/** A redis-server on a fixed port and directory, restartable: appendonly, fsync always. */
function redisServer(port, dir) {
  let child = null;
  let exited = null;
  let output = "";
  const reap = () => child?.kill("SIGKILL");
  process.on("exit", reap);
  return {
    port,
    async start() {
      child = spawn(
        "redis-server",
        ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", dir],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      child.stdout.on("data", (c) => (output = (output + c).slice(-4000)));
      child.stderr.on("data", (c) => (output = (output + c).slice(-4000)));
      exited = new Promise((r) => child.once("exit", r));
      child.on("error", () => {});
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline) {
        if ((await redisCommand(port, "PING", 500)) === "+PONG") return;
        await sleep(50);
      }
      throw new Error(`redis-server did not start on ${port}:\n${output}`);
    },
    async stop(signal = "SIGTERM") {
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    },
    dispose() {
      process.off("exit", reap);
    },
  };
}

/** A TCP proxy in front of Redis for one process: `stall(ms)` stops forwarding both ways. */
async function redisProxy(upstreamPort) {
  const pairs = new Set();
  let stalledUntil = 0;
  const server = net.createServer((down) => {
    const up = net.connect({ port: upstreamPort, host: "127.0.0.1" });
    const pair = { down, up };
    pairs.add(pair);
    const close = () => {
      pairs.delete(pair);
      down.destroy();
      up.destroy();
    };
    for (const [from, to] of [
      [down, up],
      [up, down],
    ]) {
      from.on("data", (chunk) => to.write(chunk));
      from.on("error", close);
      from.on("close", close);
    }
    if (Date.now() < stalledUntil) {
      down.pause();
      up.pause();
    }
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  let timer = null;
  return {
    port: server.address().port,
    stall(ms) {
      stalledUntil = Date.now() + ms;
      for (const { down, up } of pairs) {
        down.pause();
        up.pause();
      }
      clearTimeout(timer);
      timer = setTimeout(() => {
        for (const { down, up } of pairs) {
          down.resume();
          up.resume();
        }
      }, ms);
    },
    close() {
      clearTimeout(timer);
      for (const p of pairs) {
        p.down.destroy();
        p.up.destroy();
      }
      return new Promise((r) => server.close(r));
    },
  };
}

/**
 * Runs the chaos fleet for `seconds` with `seed`. Returns { figures, violations, journal }
 * (violations: strings, empty when every invariant held). `log(line)` gets progress lines.
 */
export async function runFleetChaos({ seed, seconds, processes = 4, tenants = 3, poolMax = 2, concurrency = 2, pauseMs = 40, pkg, log = () => {} }) {
  const random = prng(seed);
  const between = (lo, hi) => lo + random() * (hi - lo);
  const pick = (list) => list[Math.floor(random() * list.length)];
  const work = mkdtempSync(join(tmpdir(), "auth-session-chaos-"));
  const accounts = Array.from({ length: tenants }, (_, i) => (i === 0 ? ["demo", "demo-password"] : [`tenant${i}`, `pw-${i}-${seed}`]));
  const startedAt = Date.now();
  const at = () => Date.now() - startedAt;

  const redis = redisServer(await freePort(), work);
  await redis.start();
  const server = await startServer({ accessTtlMs: ACCESS_TTL_MS, users: Object.fromEntries(accounts) });

  const faults = []; // { kind, at, end, index?, ... } in ms since start
  const workers = []; // { index, child, proxy, journal, killedAt, exited }
  const holders = new Map(); // tenant -> index (from IPC, best effort)
  const messages = [];
  const waiters = new Set();
  let nextIndex = 0;

  // The server's reuse counter, watched: when each reuse happened (to attribute it).
  const reuseTimes = [];
  let lastReuse = 0;
  const reuseWatch = setInterval(() => {
    while (server.stats.spentReuse > lastReuse) {
      lastReuse++;
      reuseTimes.push(at());
    }
  }, 20);

  function waitFor(pred, ms) {
    const from = messages.length;
    return new Promise((resolveMsg) => {
      const check = () => {
        const m = messages.slice(from).find(pred);
        if (m) {
          waiters.delete(check);
          clearTimeout(timer);
          resolveMsg(m);
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        resolveMsg(null);
      }, ms);
      waiters.add(check);
    });
  }

  async function spawnWorker() {
    const index = nextIndex++;
    const proxy = await redisProxy(redis.port);
    const journal = join(work, `journal-${index}.jsonl`);
    writeFileSync(journal, "");
    const child = fork(join(here, "chaos-worker.mjs"), [], {
      env: {
        ...process.env,
        AUTH_SESSION_PKG_DIR: pkg,
        CHAOS_HOST: server.url,
        CHAOS_REDIS: `redis://127.0.0.1:${proxy.port}`,
        CHAOS_CLIENT: index % 2 === 0 ? "node-redis" : "ioredis",
        CHAOS_INDEX: String(index),
        CHAOS_SEED: String(seed),
        CHAOS_JOURNAL: journal,
        CHAOS_TENANTS: JSON.stringify(accounts),
        CHAOS_POOL_MAX: String(poolMax),
        CHAOS_TIMEOUT_MS: String(TIMEOUT_MS),
        CHAOS_RETRIES: String(RETRIES),
        CHAOS_CONCURRENCY: String(concurrency),
        CHAOS_PAUSE_MS: String(pauseMs),
      },
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    const w = { index, child, proxy, journal, killedAt: null, output: "", client: index % 2 === 0 ? "node-redis" : "ioredis" };
    const keep = (c) => (w.output = (w.output + c).slice(-4000));
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    w.exited = new Promise((r) => child.once("exit", (code, signal) => r({ code, signal })));
    child.on("error", () => {});
    child.on("message", (m) => {
      messages.push(m);
      if (m.type === "acquired") holders.set(m.tenant, m.index);
      if (m.type === "released" && holders.get(m.tenant) === m.index) holders.delete(m.tenant);
      for (const check of [...waiters]) check();
    });
    workers.push(w);
    const ready = await waitFor((m) => m.index === index && m.type === "ready", 30_000);
    if (!ready) throw new Error(`worker ${index} not ready:\n${w.output}`);
    return w;
  }

  const alive = () => workers.filter((w) => w.killedAt === null && w.child.exitCode === null && w.child.signalCode === null);

  async function kill(w, kind, extra = {}) {
    w.killedAt = at();
    w.child.kill("SIGKILL");
    await within(w.exited, 5000, `worker ${w.index} exit`);
    await w.proxy.close();
    faults.push({ kind, at: w.killedAt, end: w.killedAt, index: w.index, ...extra });
    log(`${(w.killedAt / 1000).toFixed(1)}s ${kind}: killed process ${w.index}`);
    // A replacement joins a little later.
    const timer = setTimeout(() => {
      pendingSpawns.delete(timer);
      if (!stopping) replacements.push(spawnWorker().catch((e) => e));
    }, between(300, 1500));
    pendingSpawns.add(timer);
  }
  const replacements = [];
  const pendingSpawns = new Set();
  let stopping = false;

  const actions = {
    async "kill-any"() {
      const candidates = alive();
      if (candidates.length < 2) return;
      await kill(pick(candidates), "kill-any");
    },
    async "kill-refresh"() {
      if (alive().length < 2) return;
      const fault = server.fault({ path: "/auth/refresh", method: "POST" }, { delayMs: 1000 }, 1);
      const out = await waitFor((m) => m.type === "auth-out" && m.path === "/auth/refresh", 4 * ACCESS_TTL_MS);
      // The message may arrive before the request reaches the server: let the fault take it.
      for (let i = 0; i < 50 && fault.remaining > 0; i++) await sleep(10);
      fault.cancel();
      const w = out && workers.find((x) => x.index === out.index && x.killedAt === null);
      if (!w) return log(`${(at() / 1000).toFixed(1)}s kill-refresh: no refresh went out`);
      await sleep(between(0, 400)); // somewhere in the request's held second
      await kill(w, "kill-refresh", { tenant: out.tenant });
    },
    async "kill-unwritten"() {
      const candidates = alive();
      if (candidates.length < 2) return;
      for (const w of candidates) w.child.send({ type: "stall-put", on: true });
      const putting = await waitFor((m) => m.type === "putting", 4 * ACCESS_TTL_MS);
      for (const w of alive()) if (w.child.connected) w.child.send({ type: "stall-put", on: false });
      const w = putting && workers.find((x) => x.index === putting.index && x.killedAt === null);
      if (!w) return log(`${(at() / 1000).toFixed(1)}s kill-unwritten: no holder wrote`);
      await kill(w, "kill-unwritten", { tenant: putting.tenant });
    },
    async "redis-restart"() {
      const signal = random() < 0.5 ? "SIGTERM" : "SIGKILL";
      const downMs = between(300, 2500);
      const keysBefore = await redisCommand(redis.port, "DBSIZE");
      const start = at();
      await redis.stop(signal);
      await sleep(downMs);
      await redis.start();
      const keysAfter = await redisCommand(redis.port, "DBSIZE");
      faults.push({ kind: "redis-restart", at: start, end: at(), signal, keysBefore, keysAfter });
      log(`${(start / 1000).toFixed(1)}s redis-restart (${signal}): down ${at() - start} ms, keys ${keysBefore} -> ${keysAfter}`);
    },
    async stall() {
      const candidates = alive();
      if (!candidates.length) return;
      const holding = candidates.filter((w) => [...holders.values()].includes(w.index));
      const w = holding.length && random() < 0.7 ? pick(holding) : pick(candidates);
      const ms = between(500, 4000);
      w.proxy.stall(ms);
      faults.push({ kind: "stall", at: at(), end: at() + ms, index: w.index, holder: holding.includes(w) });
      log(`${(at() / 1000).toFixed(1)}s stall: process ${w.index}'s Redis link for ${Math.round(ms)} ms${holding.includes(w) ? " (a lease holder)" : ""}`);
    },
  };

  let stopError = null;
  try {
    for (let i = 0; i < processes; i++) await spawnWorker();
    log(`seed ${seed}, ${seconds} s, ${processes} processes, ${tenants} tenants, pool max ${poolMax}, access ttl ${ACCESS_TTL_MS} ms, lease ${LEASE_TTL_MS} ms`);
    // Faults until the windows of the last one can close before the end.
    const chaosUntil = seconds * 1000 - WINDOW_MS;
    let deck = [];
    await sleep(2000);
    while (at() < chaosUntil) {
      if (!deck.length) {
        deck = [...KINDS];
        for (let i = deck.length - 1; i > 0; i--) {
          const j = Math.floor(random() * (i + 1));
          [deck[i], deck[j]] = [deck[j], deck[i]];
        }
      }
      const kind = deck.shift();
      await actions[kind]();
      await sleep(between(1000, 3500));
    }
    await sleep(Math.max(0, seconds * 1000 - at()));
  } catch (err) {
    stopError = err;
  }

  // Stop: every process finishes its calls, writes its journal, exits.
  stopping = true;
  for (const timer of pendingSpawns) clearTimeout(timer);
  await Promise.allSettled(replacements);
  const live = alive();
  for (const w of live) if (w.child.connected) w.child.send({ type: "stop" });
  await within(Promise.all(live.map((w) => w.exited)), 30_000, "processes stop").catch(() => {});
  for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill("SIGKILL");
  await Promise.all(workers.map((w) => w.proxy.close().catch(() => {})));
  clearInterval(reuseWatch);
  while (server.stats.spentReuse > lastReuse) {
    lastReuse++;
    reuseTimes.push(at());
  }
  const stats = { ...server.stats };
  await server.close();
  await redis.stop();
  redis.dispose();
  const elapsed = at();

  // ---- the journals
  const events = [];
  for (const w of workers) {
    const lines = readFileSync(w.journal, "utf8").split("\n").filter(Boolean);
    for (const line of lines) {
      try {
        const e = JSON.parse(line);
        e.t -= startedAt;
        events.push(e);
      } catch {
        // A line cut by the kill: not a whole event.
      }
    }
  }
  rmSync(work, { recursive: true, force: true });
  const byWorker = (i) => events.filter((e) => e.i === i);

  // What each killed process was doing: a refresh sent whose pair was not written (the
  // documented unavoidable case), a login in flight, the lease held.
  for (const f of faults.filter((x) => x.index !== undefined && x.kind.startsWith("kill"))) {
    const pending = new Map(); // tenant -> { refresh, login, holding }
    for (const e of byWorker(f.index)) {
      const p = pending.get(e.tenant) ?? { refresh: false, login: false, holding: false };
      pending.set(e.tenant, p);
      if (e.ev === "acquired" && e.taken) p.holding = true;
      if (e.ev === "released") p.holding = false;
      if (e.ev === "auth-out" && e.path === "/auth/refresh") p.refresh = true;
      if (e.ev === "auth-out" && e.path === "/auth/login") p.login = true;
      if (e.ev === "auth-in" && e.status !== 200) {
        if (e.path === "/auth/refresh") p.refresh = false;
        if (e.path === "/auth/login") p.login = false;
      }
      if (e.ev === "written") {
        p.refresh = false;
        p.login = false;
      }
    }
    const states = [...pending.values()];
    f.unwrittenRefresh = states.some((p) => p.refresh);
    f.loginInFlight = states.some((p) => p.login);
    f.heldLease = states.some((p) => p.holding);
  }

  const calls = events.filter((e) => e.ev === "call");
  const failed = calls.filter((e) => e.code !== null);
  const windowOf = (f) => [f.at - 1000, f.end + WINDOW_MS];
  const inWindow = (e, kinds, pred = () => true) =>
    faults.some((f) => kinds.includes(f.kind) && pred(f) && e.t >= windowOf(f)[0] && e.t - e.ms <= windowOf(f)[1]);
  const classify = (e) => {
    if (e.code === "UNAUTHORIZED" && reuseTimes.some((t) => e.t >= t && e.t - e.ms <= t + WINDOW_MS)) {
      // The family was revoked (a spent token was sent, the documented cost of a holder killed
      // between rotation and write): a call in flight got a 401 and its one replay went out
      // with a newer pair of the same family, revoked too. The docs count it with that cost.
      // (Replaying with the refused token itself, the bug this runner found, is fixed.)
      return "family-revoked";
    }
    if (e.code !== "TIMEOUT") return "undocumented";
    if (inWindow(e, ["kill-any", "kill-refresh", "kill-unwritten"], (f) => f.heldLease || f.unwrittenRefresh || f.loginInFlight)) return "dead-holder";
    if (inWindow(e, ["stall"])) return "stalled-link";
    if (inWindow(e, ["redis-restart"])) return "redis-down";
    return "undocumented";
  };
  const failureClasses = {};
  const failureCodes = {};
  for (const e of failed) {
    const c = classify(e);
    e.class = c;
    failureClasses[c] = (failureClasses[c] ?? 0) + 1;
    failureCodes[e.code] = (failureCodes[e.code] ?? 0) + 1;
  }
  const durations = calls.map((e) => e.ms).sort((a, b) => a - b);
  const pct = (p) => durations[Math.min(durations.length - 1, Math.floor(p * durations.length))] ?? 0;
  const kills = faults.filter((f) => f.kind.startsWith("kill"));
  const unavoidable = kills.filter((f) => f.unwrittenRefresh).length;
  const loginKills = kills.filter((f) => f.loginInFlight && !f.unwrittenRefresh).length;
  const errorEvents = {};
  for (const e of events.filter((x) => x.ev === "error-event")) errorEvents[e.code] = (errorEvents[e.code] ?? 0) + 1;
  const storageFails = {};
  for (const e of events.filter((x) => x.ev === "storage-fail")) storageFails[e.op] = (storageFails[e.op] ?? 0) + 1;
  const outage = (t) => faults.some((f) => (f.kind === "redis-restart" || f.kind === "stall") && t >= f.at - 200 && t <= f.end + TIMEOUT_MS + 500);
  const tokens = events.filter((e) => e.ev === "tokens");
  const count = (list, key) => list.reduce((o, x) => ((o[x[key]] = (o[x[key]] ?? 0) + 1), o), {});

  const figures = {
    seed,
    seconds: +(elapsed / 1000).toFixed(1),
    processes: { initial: processes, spawned: workers.length, clients: count(workers, "client") },
    tenants,
    poolMax,
    accessTtlMs: ACCESS_TTL_MS,
    timeoutMs: TIMEOUT_MS,
    retries: RETRIES,
    leaseTtlMs: LEASE_TTL_MS,
    faults: count(faults, "kind"),
    kills: {
      total: kills.length,
      holdingLease: kills.filter((f) => f.heldLease).length,
      unwrittenRefresh: unavoidable,
      loginInFlight: loginKills,
      byKind: Object.fromEntries(["kill-any", "kill-refresh", "kill-unwritten"].map((k) => [k, kills.filter((f) => f.kind === k).map((f) => (f.unwrittenRefresh ? "unwritten" : f.heldLease ? "holder" : "free")).join(",")])),
    },
    redisRestarts: faults.filter((f) => f.kind === "redis-restart").map((f) => ({ signal: f.signal, downMs: f.end - f.at, keys: `${f.keysBefore}->${f.keysAfter}` })),
    stalls: faults.filter((f) => f.kind === "stall").map((f) => `${Math.round(f.end - f.at)}ms${f.holder ? " holder" : ""}`),
    calls: calls.length,
    ok: calls.length - failed.length,
    failed: failed.length,
    failureCodes,
    failureClasses,
    callMs: { p50: pct(0.5), p99: pct(0.99), max: durations.at(-1) ?? 0, bound: CALL_BOUND_MS },
    server: { logins: stats.login, refreshes: stats.refresh, spentReuse: stats.spentReuse, apiRequests: stats.api },
    reuses: reuseTimes.map((t) => {
      const cause = kills.filter((f) => f.unwrittenRefresh && f.at <= t).at(-1);
      return `${(t / 1000).toFixed(1)}s${cause ? ` after ${cause.kind} of ${cause.index} at ${(cause.at / 1000).toFixed(1)}s` : ""}`;
    }),
    tokensByReason: count(tokens, "reason"),
    sessionsCreated: events.filter((e) => e.ev === "session").length,
    errorEvents,
    storageFailures: storageFails,
    storageFailuresOutsideOutages: events.filter((e) => e.ev === "storage-fail" && !outage(e.t)).length,
    expiredEvents: events.filter((e) => e.ev === "expired").length,
    leaseless: leaseless(events),
  };
  figures.reuseBound = unavoidable + figures.leaseless.refreshes;
  figures.loginBound = tenants + unavoidable + loginKills + figures.leaseless.refreshes + figures.leaseless.logins;

  const violations = [];
  if (stopError) violations.push(`the run stopped early: ${stopError.message}`);
  if (stats.spentReuse > figures.reuseBound) {
    violations.push(`spent-token reuses ${stats.spentReuse} > kills between rotation and write ${unavoidable} + refreshes sent without the lease ${figures.leaseless.refreshes}`);
  }
  if (stats.login > figures.loginBound) {
    violations.push(`logins ${stats.login} > ${figures.loginBound} (tenants + unavoidable kills + kills mid-login + refreshes and logins without the lease)`);
  }
  const undocumented = failed.filter((e) => e.class.startsWith("undocumented"));
  if (undocumented.length) {
    violations.push(`${undocumented.length} failed calls outside the documented windows: ${JSON.stringify(undocumented.slice(0, 8))}`);
  }
  const slow = calls.filter((e) => e.ms > CALL_BOUND_MS);
  if (slow.length) violations.push(`${slow.length} calls over ${CALL_BOUND_MS} ms: ${JSON.stringify(slow.slice(0, 5))}`);
  if (figures.expiredEvents) violations.push(`${figures.expiredEvents} sessions ended (expired) though they have credentials`);
  if (calls.length < seconds * processes * 5) violations.push(`only ${calls.length} calls in ${seconds} s`);
  return { figures, violations, events, faults };
}

/** Refreshes and logins a process sent while it did not hold its tenant's lease: after a
 *  failed or timed-out acquire the session goes on without the lease rather than block (a
 *  store without a lease: the docs' "the server may see a spent refresh token"), and a quiet
 *  login whose look at the record failed logs in (a new token family, no spent token). */
function leaseless(events) {
  const holding = new Set();
  const n = { refreshes: 0, logins: 0 };
  for (const e of events) {
    const k = `${e.i}/${e.tenant}`;
    if (e.ev === "acquired" && e.taken) holding.add(k);
    if (e.ev === "release") holding.delete(k);
    if (e.ev === "auth-out" && !holding.has(k)) {
      if (e.path === "/auth/refresh") n.refreshes++;
      if (e.path === "/auth/login") n.logins++;
    }
  }
  return n;
}

export const defaults = { pkg: resolve(process.env.AUTH_SESSION_PKG_DIR || join(root, "pkg")) };
