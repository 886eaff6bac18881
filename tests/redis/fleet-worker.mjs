// One instance of the fleet (tests/redis/fleet.test.mjs): a Node process with one
// AuthSession on a shared Redis record, driven by its parent over IPC.
//
// Environment: FLEET_HOST (reference server), FLEET_REDIS (redis:// URL), FLEET_CLIENT
// ("node-redis" or "ioredis"), FLEET_PREFIX, FLEET_INDEX, FLEET_TIMEOUT_MS, FLEET_RETRIES,
// AUTH_SESSION_PKG_DIR.
// Parent → child: { type: "login" | "restore" | "run" | "stall-put" | "stop", ... }.
// Child → parent: { type: "ready" | "started" | "acquired" | "released" | "putting" | "tokens" |
//   "error-event" | "expired" | "run-done" | "stopped" | "fatal", ... }. Nothing sent holds
//   a token.

import { pathToFileURL } from "node:url";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { connectRedis, toParent, watchedStorage } from "./fleet.mjs";
import { closeClient } from "./harness.mjs";

const env = process.env;
const pkg = env.AUTH_SESSION_PKG_DIR;
const index = Number(env.FLEET_INDEX);
const send = toParent(index);

const { AuthSession } = await import(pathToFileURL(join(pkg, "node.mjs")).href);
const { redisStorage } = await import(pathToFileURL(join(pkg, "redis.js")).href);

const client = await connectRedis(env.FLEET_REDIS, env.FLEET_CLIENT);

// The adapter, watched (fleet.mjs): the parent learns who holds the lease, and with
// "stall-put" on, the holder dies announcing its write. Written with `put` under the lease.
const stall = { put: false };
const { storage } = watchedStorage(redisStorage(client, { prefix: env.FLEET_PREFIX }), send, stall, { versioned: false });

const session = new AuthSession({
  host: env.FLEET_HOST,
  credentials: { username: "demo", password: "demo-password" },
  storage,
  timeoutMs: Number(env.FLEET_TIMEOUT_MS),
  retries: Number(env.FLEET_RETRIES),
});
session.on("tokens", (info) =>
  send({ type: "tokens", reason: info.reason, accessExpiresAt: info.accessExpiresAt?.getTime() ?? null }),
);
session.on("error", (err) => send({ type: "error-event", code: err.code, name: err.name }));
session.on("expired", () => send({ type: "expired" }));

let running = false;
let stats = { calls: 0, ok: 0, failures: [] };

async function loop(until, pauseMs) {
  while (running && Date.now() < until) {
    stats.calls++;
    try {
      const data = await session.json("/api/v1/products");
      if (!Array.isArray(data)) throw Object.assign(new Error("unexpected data"), { code: "BAD_DATA" });
      stats.ok++;
    } catch (err) {
      if (stats.failures.length < 1000) stats.failures.push({ code: err?.code ?? null, name: err?.name ?? null, at: Date.now() });
      else stats.failures.length++;
    }
    await sleep(pauseMs + Math.random() * pauseMs);
  }
}

let loops = [];

process.on("message", async (message) => {
  try {
    switch (message.type) {
      case "login":
        await session.login();
        send({ type: "started", state: session.info.state });
        break;
      case "restore": {
        const info = await session.restore();
        send({ type: "started", state: info?.state ?? null });
        break;
      }
      case "run": {
        // `concurrency` loops of json() calls for `durationMs`, then the figures of this run.
        running = true;
        stats = { calls: 0, ok: 0, failures: [] };
        const until = Date.now() + message.durationMs;
        loops = Array.from({ length: message.concurrency }, () => loop(until, message.pauseMs));
        await Promise.all(loops);
        running = false;
        const info = session.info;
        await send({
          type: "run-done",
          calls: stats.calls,
          ok: stats.ok,
          failures: stats.failures,
          state: info.state,
          accessExpiresAt: info.accessExpiresAt?.getTime() ?? null,
        });
        break;
      }
      case "stall-put":
        stall.put = message.on === true;
        break;
      case "stop": {
        running = false;
        await Promise.race([Promise.all(loops), sleep(3000)]);
        session.dispose();
        await closeClient(client);
        await send({ type: "stopped" });
        process.exit(0);
      }
    }
  } catch (err) {
    send({ type: "fatal", code: err?.code ?? null, name: err?.name ?? null, message: String(err?.message).slice(0, 200) });
  }
});

send({ type: "ready", pid: process.pid });
