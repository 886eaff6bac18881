// A fleet of Node child processes for the Redis fleet tests (tests/redis/fleet.test.mjs and
// tests/oauth/fleet-redis.test.mjs): each runs a worker script, talks to the test over IPC
// (every message it sends is kept, with when it arrived), and is stopped, or killed, at the end.

import assert from "node:assert/strict";
import { fork } from "node:child_process";

import { sleep, within } from "./harness.mjs";

export class Fleet {
  children = [];
  messages = [];
  #waiters = new Set();

  /** `worker`: the script each instance runs. */
  constructor(worker) {
    this.worker = worker;
  }

  spawn(index, env) {
    const child = fork(this.worker, [], {
      env: { ...process.env, ...env, FLEET_INDEX: String(index) },
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    child.output = "";
    const keep = (chunk) => (child.output = (child.output + chunk).slice(-4000));
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    child.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    child.on("message", (m) => {
      this.messages.push({ ...m, receivedAt: Date.now() });
      for (const w of this.#waiters) w();
    });
    child.on("error", () => {});
    this.children[index] = child;
    return child;
  }

  /** The first message at or after `from` matching `pred`, waiting up to `ms`. */
  waitFor(pred, ms, what, from = 0) {
    const find = () => this.messages.slice(from).find(pred);
    const found = find();
    if (found) return Promise.resolve(found);
    let waiter;
    const p = new Promise((resolve) => {
      waiter = () => {
        const m = find();
        if (m) resolve(m);
      };
      this.#waiters.add(waiter);
    });
    return within(p, ms, what).finally(() => this.#waiters.delete(waiter));
  }

  /** One message per instance (type `type`, session `id`) after `from`; a `fatal` fails at once. */
  async each(type, id, ms, from) {
    const out = [];
    for (let i = 0; i < this.children.length; i++) {
      const m = await this.waitFor(
        (x) => x.index === i && ((x.type === type && x.id === id) || x.type === "fatal"),
        ms,
        `${type} ${id} from instance ${i}`,
        from,
      );
      assert.notEqual(m.type, "fatal", `instance ${i}: ${JSON.stringify(m)}\n${this.children[i].output}`);
      out.push(m);
    }
    return out;
  }

  send(index, message) {
    const child = this.children[index];
    if (child?.connected) child.send(message);
  }

  sendAll(message) {
    for (let i = 0; i < this.children.length; i++) this.send(i, message);
  }

  alive(index) {
    const c = this.children[index];
    return c && c.exitCode === null && c.signalCode === null;
  }

  since(from, pred = () => true) {
    return this.messages.slice(from).filter(pred);
  }

  async stopAll() {
    const alive = this.children.map((_, i) => i).filter((i) => this.alive(i));
    for (const i of alive) this.send(i, { type: "stop" });
    await Promise.race([Promise.all(alive.map((i) => this.children[i].exited)), sleep(6000)]);
    for (const c of this.children) {
      if (c && c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    }
    await Promise.race([Promise.all(this.children.map((c) => c?.exited)), sleep(3000)]);
  }
}

/**
 * A worker's channel to its parent: `send(message)` stamps it with the worker's `index` and
 * the time and resolves once it is handed over. The parent's death ends the worker too
 * (never an orphan holding a port or a lease).
 */
export function toParent(index) {
  process.on("disconnect", () => process.exit(0));
  return (message) =>
    new Promise((resolve) => {
      if (!process.connected) return resolve();
      process.send({ index, at: Date.now(), ...message }, () => resolve());
    });
}

/** A connected Redis client for a worker: ioredis when `kind` is "ioredis", else node-redis.
 *  Connection errors are the commands' to report, not an uncaught event. */
export async function connectRedis(url, kind) {
  if (kind === "ioredis") {
    const { default: Redis } = await import("ioredis");
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    client.on("error", () => {});
    await client.connect();
    return client;
  }
  const { createClient } = await import("redis");
  const client = createClient({ url });
  client.on("error", () => {});
  await client.connect();
  return client;
}

/**
 * A worker's storage adapter, watched: the parent learns who holds the lease ("acquired",
 * "released"), and while `stall.put` is on, the lease holder announces the write of the pair
 * it just got ("putting") and waits there 3 s: the parent kills it, the server has rotated
 * and the record still holds the spent pair. `versioned: false` hides the adapter's
 * `putIfNewer` (the session then writes with `put` under its lease).
 * `held(what)`: the same announce-and-wait for other steps (`stall[what]`, message `type`).
 */
export function watchedStorage(inner, send, stall, { versioned = true } = {}) {
  let holding = false;
  const held = async (what, type) => {
    if (stall[what] && holding) {
      await send({ type });
      await new Promise((resolve) => setTimeout(resolve, 3000));
    }
  };
  const storage = {
    get: (key) => inner.get(key),
    async put(key, value) {
      await held("put", "putting");
      return inner.put(key, value);
    },
    delete: (key) => inner.delete(key),
    async acquire(key, ttlMs) {
      const lease = await inner.acquire(key, ttlMs);
      if (lease !== null) holding = true;
      send({ type: "acquired", taken: lease !== null, ttlMs });
      return lease;
    },
    async release(key, lease) {
      holding = false;
      const released = await inner.release(key, lease);
      send({ type: "released", released });
      return released;
    },
  };
  if (versioned && typeof inner.putIfNewer === "function") {
    storage.putIfNewer = async (key, value, version) => {
      await held("put", "putting");
      return inner.putIfNewer(key, value, version);
    };
  }
  return { storage, held };
}
