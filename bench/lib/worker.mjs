// One measurement in one fresh process (spawned by bench/run.mjs): the client side only; the
// reference server runs in its own process. Prints one JSON line on stdout.
//
//   node --expose-gc bench/lib/worker.mjs '{"job":"throughput","contender":"ky","host":"http://…",…}'
//
// Jobs:
//   throughput  {contender, concurrency, durationMs, warmupMs}
//   storm       {contender, n, mode: "valid" | "client-expired" | "server-expired", order: "EVVE" | "VEEV"}
//   memory      {contender, sessions}
//   refresh-rtt {samples}
import { readdirSync } from "node:fs";
import http from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { makeClient, rawLogin, wasmMemoryBytes } from "./contenders.mjs";

const job = JSON.parse(process.argv[2]);
const { host } = job;

// Spawned with an IPC channel by run.mjs: if the parent dies, stop at once.
if (process.send) {
  process.on("disconnect", () => process.exit(130));
  process.channel?.unref();
}

/** The server's control API, over node:http on a connection of its own (agent: false), so
 *  it never queues behind, or shares a pooled socket with, the client being measured. */
function control(path, body) {
  const payload = body === undefined ? null : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${host}/__control/${path}`,
      {
        method: payload === null ? "GET" : "POST",
        agent: false,
        headers: payload === null ? {} : { "content-type": "application/json", "content-length": Buffer.byteLength(payload) },
      },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => {
          if (res.statusCode !== 200) return reject(new Error(`control ${path}: HTTP ${res.statusCode}`));
          try {
            resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")).data);
          } catch (err) {
            reject(err);
          }
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(payload ?? undefined);
  });
}
const stats = async () => (await control("stats")).stats;

async function gcFully(rounds = 4) {
  if (typeof globalThis.gc !== "function") return;
  for (let i = 0; i < rounds; i++) {
    globalThis.gc();
    await sleep(20); // lets FinalizationRegistry callbacks and closed sockets settle
  }
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

/** Runs `concurrency` loops of `client.get()` for `ms`; returns count, errors, latencies. */
async function loadFor(client, concurrency, ms, record) {
  const end = performance.now() + ms;
  let ok = 0;
  let errors = 0;
  const lat = record ? [] : null;
  const loop = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      let good = false;
      try {
        good = await client.get();
      } catch {
        good = false;
      }
      if (good) ok++;
      else errors++;
      if (lat) lat.push(performance.now() - t0);
    }
  };
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  await Promise.all(Array.from({ length: concurrency }, loop));
  const cpu = process.cpuUsage(cpu0);
  const elapsed = performance.now() - t0;
  // The client's own CPU (the server runs in another process): user + system, per request.
  const cpuUsPerRequest = (cpu.user + cpu.system) / Math.max(1, ok + errors);
  return { ok, errors, elapsed, lat, cpuUsPerRequest };
}

async function throughput({ contender, concurrency, durationMs, warmupMs }) {
  await control("reset", { config: true });
  const client = await makeClient(contender, { host });
  await client.login();
  await loadFor(client, concurrency, warmupMs, false);
  const { ok, errors, elapsed, lat, cpuUsPerRequest } = await loadFor(client, concurrency, durationMs, true);
  lat.sort((a, b) => a - b);
  const s = await stats();
  client.dispose();
  return {
    requests: ok + errors,
    errors,
    elapsedMs: elapsed,
    reqPerSec: (ok / elapsed) * 1000,
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    cpuUsPerRequest,
    refreshes: s.refresh,
  };
}

/** File descriptors this process holds (sockets, mostly); null where /proc is missing. */
function openFds() {
  try {
    return readdirSync("/proc/self/fd").length;
  } catch {
    return null;
  }
}

/** Makes the client's access token expired, the way `mode` says. */
async function expire(client, mode) {
  if (mode === "client-expired") {
    // A token the client KNOWS is expired: log in once more while the server issues
    // short-lived access tokens, restore the normal TTL (so the refresh gets a 1 h token),
    // and wait until the short one has expired. (A client may refuse a token that is already
    // expired when it arrives, so the TTL grows if the login was too slow for it.)
    let ttl = 400;
    let issuedAt;
    for (;;) {
      await control("config", { accessTtlMs: ttl });
      issuedAt = Date.now();
      try {
        await client.login();
        break;
      } catch (err) {
        if (ttl >= 6400) throw err;
        ttl *= 2;
      } finally {
        await control("config", { accessTtlMs: 3_600_000 });
      }
    }
    await sleep(Math.max(0, issuedAt + ttl + 50 - Date.now()));
  } else if (mode === "server-expired") {
    // A token the client believes valid but the server has expired: every call gets a 401.
    await control("expire-access", {});
  }
}

/** N concurrent calls, timed, with the server's counters and the peak memory around them. */
async function phase(client, n) {
  await gcFully();
  const before = await stats();
  const mem0 = process.memoryUsage();
  let heapPeak = mem0.heapUsed;
  let rssPeak = mem0.rss;
  const sampler = setInterval(() => {
    const m = process.memoryUsage();
    if (m.heapUsed > heapPeak) heapPeak = m.heapUsed;
    if (m.rss > rssPeak) rssPeak = m.rss;
  }, 5);

  const t0 = performance.now();
  const results = await Promise.allSettled(Array.from({ length: n }, () => client.get()));
  const timeMs = performance.now() - t0;

  clearInterval(sampler);
  const mem1 = process.memoryUsage();
  heapPeak = Math.max(heapPeak, mem1.heapUsed);
  // The kernel's high-water mark catches peaks the 5 ms sampler (starved by a busy loop)
  // missed; it is the process's lifetime peak, so it only means something for the first phase.
  rssPeak = Math.max(rssPeak, mem1.rss, process.resourceUsage().maxRSS * 1024);
  const after = await stats();
  const fds = openFds();
  const lost = results.filter((r) => r.status !== "fulfilled" || r.value !== true).length;
  const firstError = results.find((r) => r.status === "rejected")?.reason;
  return {
    timeMs,
    lost,
    refreshes: after.refresh - before.refresh,
    apiRequests: after.api - before.api,
    spentReuse: after.spentReuse - before.spentReuse,
    openFds: fds,
    rssDelta: rssPeak - mem0.rss,
    heapDelta: heapPeak - mem0.heapUsed,
    firstError: firstError
      ? `${firstError.name ?? "Error"}: ${firstError.code ?? ""} ${String(firstError.message).slice(0, 120)}`
      : null,
  };
}

/**
 * A refresh storm and its valid-token control in ONE process, paired: after a warm-up of N
 * valid calls (at most POOL_CAP: JIT, and the pooled connections open, so no phase pays for
 * opening them), the phases
 * run in an ABBA order (`EVVE` or `VEEV`: E = expired token, V = valid token), which cancels
 * a linear drift. Peak memory is only comparable for the first phase of a process.
 * mode "valid" (raw fetch, which cannot refresh): `VV`.
 */
async function storm({ contender, n, mode, order }) {
  await control("reset", { config: true });
  const client = await makeClient(contender, { host, autoRefresh: false });
  await client.login();
  const warm = await Promise.allSettled(Array.from({ length: Math.min(n, POOL_CAP) }, () => client.get()));
  if (warm.some((r) => r.status !== "fulfilled" || r.value !== true)) throw new Error("warm-up requests failed");
  const phases = [];
  for (const kind of mode === "valid" ? "VV" : order) {
    if (kind === "E") await expire(client, mode);
    phases.push({ kind, ...(await phase(client, n)) });
  }
  client.dispose();
  return { phases };
}

const WARM_SESSIONS = 256;

async function memory({ contender, sessions }) {
  await control("reset", { config: true });
  const tokens = await rawLogin(host); // for the token byte count only
  const tokenBytes = tokens.access_token.length + tokens.refresh_token.length;
  const BATCH = 64; // logins in flight at once
  // Before the baseline, everything that is not per session: the contender's code loaded and
  // JIT-compiled, fetch's resource-timing buffer full (250 entries), BATCH pooled connections
  // open (tens of KB each). Warm-up sessions are kept alive, not freed: freed memory would
  // be reused by the measured sessions and hide their cost.
  const warmKept = [];
  for (let i = 0; i < WARM_SESSIONS; i += BATCH) {
    const batch = [];
    for (let j = 0; j < BATCH; j++) batch.push(await makeClient(contender, { host }));
    await Promise.all(batch.map((c) => c.login()));
    await Promise.all(batch.map((c) => c.get()));
    warmKept.push(...batch);
  }
  const warm = () => fetch(`${host}/api/v1/public`).then((r) => r.arrayBuffer());
  await Promise.all(Array.from({ length: BATCH }, warm));
  if (contender === "axios") {
    const { default: axios } = await import("axios"); // its own pool: Node's http.globalAgent
    await Promise.all(Array.from({ length: BATCH }, () => axios.get(`${host}/api/v1/public`)));
  }
  const wasmOf = contender === "auth-session" ? wasmMemoryBytes : async () => 0;
  await gcFully(6);
  const m0 = process.memoryUsage();
  const w0 = await wasmOf();

  // Only each client's own object is kept (not the adapter around it): what a user holds.
  const kept = [];
  const t0 = performance.now();
  for (let i = 0; i < sessions; i += BATCH) {
    const batch = [];
    for (let j = i; j < Math.min(sessions, i + BATCH); j++) batch.push(await makeClient(contender, { host }));
    await Promise.all(batch.map((c) => c.login()));
    for (const c of batch) kept.push(c.inner);
  }
  const loginMs = performance.now() - t0;

  await gcFully(6);
  const m1 = process.memoryUsage();
  const w1 = await wasmOf();
  const heap = m1.heapUsed - m0.heapUsed;
  const arrayBuffers = m1.arrayBuffers - m0.arrayBuffers;
  const external = m1.external - m0.external;
  const wasm = w1 - w0;
  // V8 counts ArrayBuffers AND wasm memories in `external`; never count the wasm twice.
  const total = heap + Math.max(external, arrayBuffers + wasm);
  const result = {
    sessions,
    tokenBytes,
    loginMs,
    heap,
    arrayBuffers,
    external,
    wasm,
    rss: m1.rss - m0.rss,
    perSession: total / sessions,
    beyondTokens: total / sessions - tokenBytes,
  };
  // Every session stays alive until measured.
  if (kept.length !== sessions || kept.some((k) => !k) || warmKept.length < WARM_SESSIONS) throw new Error("lost a session");
  return result;
}

async function refreshRtt({ samples }) {
  await control("reset", { config: true });
  let { refresh_token: token } = await rawLogin(host);
  const times = [];
  for (let i = 0; i < samples + 2; i++) {
    const t0 = performance.now();
    const res = await fetch(`${host}/auth/refresh`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ refresh_token: token }),
    });
    const body = await res.json();
    if (res.status !== 200) throw new Error(`refresh: HTTP ${res.status}`);
    token = body.data.refresh_token;
    if (i >= 2) times.push(performance.now() - t0); // two warm-up round trips
  }
  times.sort((a, b) => a - b);
  return { medianMs: times[Math.floor(times.length / 2)], samples: times };
}

/**
 * Caps the connection pools at POOL_CAP sockets per origin, the same for every contender:
 * Node's fetch (undici's global Agent, which Node creates on first use; its class is taken
 * from that instance, so this is Node's own undici, no dependency) and Node's http.globalAgent
 * (axios). Uncapped, a pool opens a socket per concurrent request, and a 10,000-call 401
 * storm (each 401 followed at once by its replay) reaches ~2 × 10,000 sockets: past this
 * machine's file-descriptor limit (20,000, not raisable here) in the client, and in the server.
 */
const POOL_CAP = 4096;
async function capPools() {
  const key = Symbol.for("undici.globalDispatcher.1");
  await (await fetch(`${host}/api/v1/public`)).arrayBuffer();
  const old = globalThis[key];
  if (old?.constructor) {
    globalThis[key] = new old.constructor({ connections: POOL_CAP });
    await old.close();
  }
  http.globalAgent.maxSockets = POOL_CAP;
}

const jobs = { throughput, storm, memory, "refresh-rtt": refreshRtt };
try {
  await capPools();
  const result = await jobs[job.job](job);
  process.stdout.write(`${JSON.stringify({ ok: true, result })}\n`);
  process.exit(0);
} catch (err) {
  process.stdout.write(`${JSON.stringify({ ok: false, error: String(err?.stack ?? err) })}\n`);
  process.exit(1);
}
