// Shared helpers of the Redis tests (not a test file: node --test picks up *.test.mjs only).
//
// Each test file starts its own redis-server on a free loopback port
// (`redis-server --port N --save '' --appendonly no`, nothing written to disk) and stops it
// in `after`. Every await that could hang is raced against a timer (`within`).

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

export { sleep };

/** Resolves with `promise`, or rejects after `ms` naming `what`. */
/** Waits until `check()` is true, polling every `step` ms; false after `ms`. */
export async function until(check, ms, step = 10) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (check()) return true;
    await sleep(step);
  }
  return check();
}

export function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([Promise.resolve(promise), timeout]).finally(() => clearTimeout(timer));
}

/** A loopback port that was free a moment ago. */
export async function freePort() {
  const server = net.createServer();
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Sends one inline command to a Redis port and returns the first reply line (or null). */
export function rawCommand(port, line, ms = 1000) {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: "127.0.0.1" });
    let data = "";
    const done = (value) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(value);
    };
    const timer = setTimeout(() => done(null), ms);
    socket.on("connect", () => socket.write(`${line}\r\n`));
    socket.on("data", (chunk) => {
      data += chunk;
      if (data.includes("\r\n")) done(data.split("\r\n")[0]);
    });
    socket.on("error", () => done(null));
  });
}

/**
 * Starts a redis-server on a free port (a retry or two if another process took the port
 * in between). `cluster: true` makes it a one-node cluster owning every slot.
 * Returns { port, url, stop() }.
 */
export async function startRedis({ cluster = false } = {}) {
  let lastError;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), "auth-session-redis-"));
    const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir];
    if (cluster) {
      // Announce the loopback address: without it CLUSTER SLOTS names no host, and ioredis
      // finds no node to connect to.
      args.push("--cluster-enabled", "yes", "--cluster-config-file", join(dir, "nodes.conf"), "--cluster-announce-ip", "127.0.0.1");
    }
    let child;
    try {
      child = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    // Never outlive the test process, even when it ends without running `after`.
    const reap = () => child.kill("SIGKILL");
    process.once("exit", reap);
    child.once("exit", () => process.off("exit", reap));
    let output = "";
    child.stdout.on("data", (c) => (output = (output + c).slice(-4000)));
    child.stderr.on("data", (c) => (output = (output + c).slice(-4000)));
    const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    const spawnError = new Promise((resolve) => child.once("error", resolve));
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 2000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    };
    // Ready when it answers PING.
    const deadline = Date.now() + 10_000;
    let ready = false;
    let failed = null;
    spawnError.then((e) => (failed = e));
    exited.then((e) => (failed ??= new Error(`redis-server exited (${e.code ?? e.signal})`)));
    while (Date.now() < deadline && !failed) {
      if ((await rawCommand(port, "PING", 500)) === "+PONG") {
        ready = true;
        break;
      }
      await sleep(50);
    }
    if (ready && cluster) {
      ready = false;
      await rawCommand(port, "CLUSTER ADDSLOTSRANGE 0 16383");
      while (Date.now() < deadline && !failed) {
        const info = await rawCommandAll(port, "CLUSTER INFO");
        if (info?.includes("cluster_state:ok")) {
          ready = true;
          break;
        }
        await sleep(100);
      }
    }
    if (ready) return { port, url: `redis://127.0.0.1:${port}`, stop };
    await stop();
    if (failed?.code === "ENOENT") {
      throw new Error("redis-server is not installed (scripts/ensure-tools.sh --redis installs it)");
    }
    lastError = new Error(`redis-server did not start on port ${port}: ${failed?.message ?? "no PONG"}\n${output}`);
  }
  throw lastError;
}

/** Like rawCommand, but the whole reply that arrives within `ms`. */
function rawCommandAll(port, line, ms = 500) {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: "127.0.0.1" });
    let data = "";
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(data || null);
    }, ms);
    socket.on("connect", () => socket.write(`${line}\r\n`));
    socket.on("data", (chunk) => {
      data += chunk;
      // A bulk reply: "$len\r\n<body>\r\n".
      const m = /^\$(\d+)\r\n/.exec(data);
      if (m && Buffer.byteLength(data) >= m[0].length + Number(m[1]) + 2) {
        clearTimeout(timer);
        socket.destroy();
        resolve(data);
      }
    });
    socket.on("error", () => {
      clearTimeout(timer);
      resolve(null);
    });
  });
}

/** The two clients, connected to `url`: [name, client, close()] each. */
export async function connectClients(url) {
  const { createClient } = await import("redis");
  const { default: Redis } = await import("ioredis");
  const nodeRedis = createClient({ url, socket: { reconnectStrategy: false, connectTimeout: 5000 } });
  nodeRedis.on("error", () => {});
  await within(nodeRedis.connect(), 10_000, "node-redis connect");
  const ioredis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  ioredis.on("error", () => {});
  await within(ioredis.connect(), 10_000, "ioredis connect");
  return {
    "node-redis": nodeRedis,
    ioredis,
    async close() {
      await Promise.allSettled([closeClient(nodeRedis), closeClient(ioredis)]);
    },
  };
}

/** Closes a node-redis or ioredis client, whatever state it is in. */
export async function closeClient(client) {
  try {
    if (typeof client.call === "function") {
      client.disconnect();
    } else if (client.isOpen) {
      await within(client.close?.() ?? client.quit(), 2000, "node-redis close").catch(() => client.destroy?.());
    }
  } catch {
    // Already closed.
  }
}
