// One process of the chaos fleet (tests/chaos/fleet-chaos.mjs): a SessionPool over several
// tenants (accounts), each session on the shared Redis record of its account, making random
// json() calls until told to stop or killed.
//
// Everything the parent must still know after a `kill -9` goes to a journal file, written
// synchronously (appendFileSync: in the kernel before the next statement runs, so a kill
// cannot lose it): every call's outcome and duration, every auth request and answer, the
// lease taken and given back, every record write begun and ended, the sessions' events.
// IPC messages are for the parent's kill decisions only (they may be lost with the process).
//
// Environment: CHAOS_HOST, CHAOS_REDIS (redis:// URL, through this process's own proxy),
// CHAOS_CLIENT ("node-redis" | "ioredis"), CHAOS_INDEX, CHAOS_SEED, CHAOS_JOURNAL,
// CHAOS_TENANTS (JSON [[username, password], ...]), CHAOS_POOL_MAX, CHAOS_TIMEOUT_MS,
// CHAOS_RETRIES, CHAOS_CONCURRENCY, CHAOS_PAUSE_MS, AUTH_SESSION_PKG_DIR.
// Parent → child: { type: "stall-put", on } | { type: "stop" }.
// Child → parent: ready | acquired | released | auth-out | putting | stopped. No token is
// ever journaled or sent.

import { appendFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { prng } from "./prng.mjs";

const env = process.env;
const index = Number(env.CHAOS_INDEX);
const journalPath = env.CHAOS_JOURNAL;
const journal = (ev, fields = {}) => appendFileSync(journalPath, `${JSON.stringify({ t: Date.now(), i: index, ev, ...fields })}\n`);
const send = (message) => {
  if (process.connected) process.send({ index, at: Date.now(), ...message }, () => {});
};
process.on("disconnect", () => process.exit(0));

// The choice of tenant is seeded: the timing is not reproducible, but the mix per process is.
const random = prng(Number(env.CHAOS_SEED) * 1000 + index);

const pkg = env.AUTH_SESSION_PKG_DIR;
const { AuthSession, SessionPool } = await import(pathToFileURL(join(pkg, "node.mjs")).href);
const { redisStorage } = await import(pathToFileURL(join(pkg, "redis.js")).href);

let client;
if (env.CHAOS_CLIENT === "ioredis") {
  const { default: Redis } = await import("ioredis");
  client = new Redis(env.CHAOS_REDIS, { lazyConnect: true, maxRetriesPerRequest: 1 });
  client.on("error", () => {});
  await client.connect();
} else {
  const { createClient } = await import("redis");
  client = createClient({ url: env.CHAOS_REDIS });
  client.on("error", () => {});
  await client.connect();
}

const tenants = JSON.parse(env.CHAOS_TENANTS);
const timeoutMs = Number(env.CHAOS_TIMEOUT_MS);
const retries = Number(env.CHAOS_RETRIES);
const inner = redisStorage(client, { prefix: "chaos:" });

// With `stallPut` on, the next lease holder to write the pair it got from the server says so
// and waits there (the parent kills it: the server has rotated, the record holds the spent pair).
let stallPut = false;
/** The storage of one tenant's session, watched; passes putIfNewer through (the conditional
 *  write the docs' guarantee rests on). */
function watchedStorage(tenant) {
  let holding = false;
  const beforeWrite = async () => {
    if (stallPut && holding) {
      stallPut = false;
      journal("putting", { tenant });
      send({ type: "putting", tenant });
      await sleep(5000);
    }
  };
  const wrap = async (op, fn) => {
    try {
      return await fn();
    } catch (err) {
      journal("storage-fail", { tenant, op, code: err?.code ?? err?.name ?? null });
      throw err;
    }
  };
  return {
    get: (key) => wrap("get", () => inner.get(key)),
    delete: (key) => wrap("delete", () => inner.delete(key)),
    async put(key, value) {
      await beforeWrite();
      journal("put", { tenant });
      await wrap("put", () => inner.put(key, value));
      journal("written", { tenant, holding });
    },
    async putIfNewer(key, value, version) {
      await beforeWrite();
      journal("put", { tenant, version });
      const wrote = await wrap("putIfNewer", () => inner.putIfNewer(key, value, version));
      journal("written", { tenant, version, wrote, holding });
      return wrote;
    },
    async acquire(key, ttlMs) {
      journal("acquire", { tenant, ttlMs });
      const lease = await wrap("acquire", () => inner.acquire(key, ttlMs));
      if (lease !== null) holding = true;
      journal("acquired", { tenant, taken: lease !== null });
      if (lease !== null) send({ type: "acquired", tenant, ttlMs });
      return lease;
    },
    async release(key, lease) {
      holding = false;
      journal("release", { tenant });
      const released = await wrap("release", () => inner.release(key, lease));
      journal("released", { tenant, released });
      send({ type: "released", tenant });
      return released;
    },
  };
}

/** The platform's fetch, with every auth request and its answer journaled. */
function watchedFetch(tenant) {
  return async (input, init) => {
    const url = typeof input === "string" ? input : input.url;
    const path = new URL(url).pathname;
    if (!path.startsWith("/auth/")) return fetch(input, init);
    journal("auth-out", { tenant, path });
    send({ type: "auth-out", tenant, path });
    try {
      const res = await fetch(input, init);
      journal("auth-in", { tenant, path, status: res.status });
      return res;
    } catch (err) {
      journal("auth-in", { tenant, path, status: 0, error: err?.name ?? null });
      throw err;
    }
  };
}

let created = 0;
const pool = new SessionPool({
  max: Number(env.CHAOS_POOL_MAX),
  create(tenant) {
    created++;
    const [username, password] = tenants.find(([u]) => u === tenant);
    const session = new AuthSession({
      host: env.CHAOS_HOST,
      credentials: { username, password },
      storage: watchedStorage(tenant),
      fetch: watchedFetch(tenant),
      timeoutMs,
      retries,
      label: `${index}/${tenant}`,
    });
    journal("session", { tenant });
    session.on("tokens", (info) => journal("tokens", { tenant, reason: info.reason, exp: info.accessExpiresAt?.getTime() ?? null }));
    session.on("error", (err) => journal("error-event", { tenant, code: err.code }));
    session.on("expired", () => journal("expired", { tenant }));
    return session;
  },
});

let running = true;
const concurrency = Number(env.CHAOS_CONCURRENCY);
const pauseMs = Number(env.CHAOS_PAUSE_MS);

async function loop() {
  while (running) {
    const [tenant] = tenants[Math.floor(random() * tenants.length)];
    const started = Date.now();
    let code = null;
    try {
      const data = await pool.get(tenant).json("/api/v1/products");
      if (!Array.isArray(data)) code = "BAD_DATA";
    } catch (err) {
      code = err?.code ?? err?.name ?? "UNKNOWN";
    }
    if (!running && code === "DISPOSED") break; // stopping: not a failed call
    journal("call", { tenant, ms: Date.now() - started, code });
    await sleep(pauseMs / 2 + random() * pauseMs);
  }
}

const loops = Array.from({ length: concurrency }, () => loop());

process.on("message", async (message) => {
  if (message.type === "stall-put") stallPut = message.on === true;
  if (message.type === "stop") {
    running = false;
    await Promise.race([Promise.all(loops), sleep(20_000)]);
    journal("stopped", { sessionsCreated: created });
    pool.dispose();
    try {
      if (typeof client.call === "function") client.disconnect();
      else await Promise.race([client.close?.() ?? client.quit(), sleep(1000)]);
    } catch {
      // Closing is best effort.
    }
    send({ type: "stopped" });
    setTimeout(() => process.exit(0), 100);
  }
});

journal("ready", { pid: process.pid });
send({ type: "ready", pid: process.pid });
