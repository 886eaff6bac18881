// auth-session/redis (pkg-template/redis.js, shipped as is) against a real redis-server,
// through both npm clients: node-redis (`redis`) and ioredis. Then the shapes the adapter
// detects (plain objects, node-redis legacy mode and cluster, ioredis Cluster) and the
// errors it passes on or makes.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";

import { redisStorage } from "../../pkg-template/redis.js";
import { closeClient, connectClients, sleep, startRedis, within } from "./harness.mjs";

const T = { timeout: 30_000 };
const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const RECORD = JSON.stringify({ v: 3, access: "a.b.c", refresh: "d.e.f", note: "ünïcödé ✓" });

let redis;
let clients;
let keySerial = 0;
/** A key no other test uses (one server for the whole file). */
const freshKey = (name) => `test:${process.pid}:${++keySerial}:${name}`;

before(async () => {
  redis = await within(startRedis(), 20_000, "start redis-server");
  clients = await connectClients(redis.url);
});

after(async () => {
  await clients?.close();
  await redis?.stop();
});

/** Where the adapter keeps the lease of `key`: a namespace no record key can reach. */
const leaseKey = (key) => `\u0000lease\u0000${key}`;

/** Raw commands through node-redis, to look at what the adapter wrote. */
const raw = (...args) => clients["node-redis"].sendCommand(args.map(String));

for (const kind of ["node-redis", "ioredis"]) {
  describe(`redisStorage with ${kind}`, () => {
    const client = () => clients[kind];

    test("get / put / delete round trip", T, async () => {
      const s = redisStorage(client());
      const key = freshKey("round-trip");
      assert.equal(await within(s.get(key), 5000, "get"), null, "an absent record reads as null");
      assert.equal(await within(s.put(key, RECORD), 5000, "put"), undefined);
      assert.equal(await within(s.get(key), 5000, "get"), RECORD, "the value comes back byte for byte");
      assert.equal(await raw("PTTL", key), -1, "no ttlSeconds: the record is kept without expiry");
      await s.put(key, "second");
      assert.equal(await s.get(key), "second", "put overwrites");
      assert.equal(await within(s.delete(key), 5000, "delete"), true);
      assert.equal(await s.get(key), null);
      assert.equal(await s.delete(key), false, "deleting an absent record resolves false");
    });

    test("putIfNewer writes only over a lower version: a late write never rolls the record back", T, async () => {
      const s = redisStorage(client());
      const key = freshKey("cas");
      assert.equal(await s.putIfNewer(key, "v2 record", 2), true, "an absent record is written");
      assert.equal(await s.get(key), "v2 record", "get strips the version header");
      assert.equal(await s.putIfNewer(key, "v3 record", 3), true);
      assert.equal(await s.putIfNewer(key, "late v2 record", 2), false, "a late lower write is refused");
      assert.equal(await s.putIfNewer(key, "other v3 record", 3), false, "so is an equal one");
      assert.equal(await s.get(key), "v3 record");
      // Concurrent writers: the highest version wins whatever the order.
      const versions = [7, 4, 9, 5, 8, 6];
      await Promise.all(versions.map((v) => s.putIfNewer(key, `v${v} record`, v)));
      assert.equal(await s.get(key), "v9 record");
      // A record pinned at the top of the range (not one a session writes) is replaced.
      await raw("SET", key, `#v${2 ** 53 - 1}\npinned`);
      assert.equal(await s.putIfNewer(key, "v10 record", 10), true);
      assert.equal(await s.get(key), "v10 record");
      // A record written by plain put (0.2, or a store without versions) counts as version 0.
      await s.put(key, "raw record");
      assert.equal(await s.putIfNewer(key, "v1 record", 1), true);
      await assert.rejects(s.putIfNewer(key, "x", 2 ** 51), TypeError);
      await assert.rejects(s.putIfNewer(key, "x", -1), TypeError);
    });

    test("a record key cannot reach a lease: a key ending in :lease is just a record", T, async () => {
      const s = redisStorage(client());
      const key = freshKey("tenant");
      const lease = await s.acquire(key, 10_000);
      assert.ok(lease);
      await s.put(`${key}:lease`, "a record of a tenant named '<key>:lease'");
      assert.equal(await raw("GET", leaseKey(key)), lease, "the lease is untouched");
      assert.equal(await s.acquire(key, 10_000), null, "and still held");
      await assert.rejects(s.put(`a\u0000lease\u0000${key}`, "x"), TypeError, "NUL is refused in record keys");
      await s.release(key, lease);
    });

    test("ttlSeconds sets an expiry on every write", T, async () => {
      const s = redisStorage(client(), { ttlSeconds: 60 });
      const key = freshKey("ttl");
      await s.put(key, RECORD);
      const pttl = await raw("PTTL", key);
      assert.ok(pttl > 55_000 && pttl <= 60_000, `PTTL ${pttl}`);
      const short = redisStorage(client(), { ttlSeconds: 0.2 });
      await short.put(key, RECORD);
      assert.equal(await short.get(key), RECORD);
      await sleep(350);
      assert.equal(await short.get(key), null, "the record expired");
    });

    test("acquire is exclusive, across clients and storages", T, async () => {
      const key = freshKey("exclusive");
      const storages = [
        redisStorage(clients["node-redis"]),
        redisStorage(clients.ioredis),
        redisStorage(client()),
      ];
      const results = await within(
        Promise.all(Array.from({ length: 24 }, (_, i) => storages[i % 3].acquire(key, 10_000))),
        5000,
        "24 concurrent acquires",
      );
      const taken = results.filter((r) => r !== null);
      assert.equal(taken.length, 1, `exactly one acquire wins (got ${taken.length})`);
      assert.equal(typeof taken[0], "string");
      assert.ok(taken[0].length >= 16, "the lease id is a random id");
      assert.ok(results.every((r) => r === null || typeof r === "string"), "losers resolve null");
      assert.equal(await raw("GET", leaseKey(key)), taken[0], "the lease lives at <prefix>\\0lease\\0<key>");
      const pttl = await raw("PTTL", leaseKey(key));
      assert.ok(pttl > 9000 && pttl <= 10_000, `lease PTTL ${pttl}`);
      assert.equal(await raw("EXISTS", key), 0, "taking the lease writes no record");
      // Given back, it can be taken again, under a new id.
      assert.equal(await storages[0].release(key, taken[0]), true);
      const again = await storages[1].acquire(key, 10_000);
      assert.equal(typeof again, "string");
      assert.notEqual(again, taken[0], "every acquire draws a new id");
      await storages[1].release(key, again);
    });

    test("release gives back only its own lease", T, async () => {
      const s = redisStorage(client());
      const key = freshKey("release");
      const lease = await s.acquire(key, 10_000);
      assert.ok(lease);
      assert.equal(await s.release(key, "not-the-holder"), false, "a wrong id releases nothing");
      assert.equal(await s.release(key, ""), false);
      assert.equal(await raw("GET", leaseKey(key)), lease, "the holder still has it");
      assert.equal(await s.acquire(key, 10_000), null, "and it is still taken");
      assert.equal(await s.release(key, lease), true, "the holder's id releases it");
      assert.equal(await raw("EXISTS", leaseKey(key)), 0);
      assert.equal(await s.release(key, lease), false, "a second release is a no-op");
      // A holder whose lease expired must not delete the next holder's lease.
      const first = await s.acquire(key, 100);
      await sleep(200);
      const second = await s.acquire(key, 10_000);
      assert.ok(first && second && first !== second);
      assert.equal(await s.release(key, first), false, "the expired holder's release is refused");
      assert.equal(await raw("GET", leaseKey(key)), second, "the new holder keeps its lease");
      await s.release(key, second);
      // Releasing the lease leaves the record alone, and deleting the record the lease.
      await s.put(key, RECORD);
      const third = await s.acquire(key, 10_000);
      await s.release(key, third);
      assert.equal(await s.get(key), RECORD);
      const fourth = await s.acquire(key, 10_000);
      await s.delete(key);
      assert.equal(await raw("GET", leaseKey(key)), fourth, "delete() never touches a lease");
      await s.release(key, fourth);
    });

    test("an expired lease is free again (a dead holder loses it after ttlMs)", T, async () => {
      const s = redisStorage(client());
      const key = freshKey("expiry");
      const lease = await s.acquire(key, 300);
      assert.ok(lease);
      assert.equal(await s.acquire(key, 300), null, "taken while the ttl runs");
      await sleep(150);
      assert.equal(await s.acquire(key, 300), null, "still taken half way");
      await sleep(300);
      const next = await s.acquire(key, 300);
      assert.ok(next, "free once the ttl has passed");
      assert.notEqual(next, lease);
      // Fractional ttlMs rounds up to whole milliseconds (PX takes an integer).
      await sleep(400);
      assert.ok(await s.acquire(key, 0.5));
    });

    test("prefix is prepended to every key, so tenants on one Redis stay apart", T, async () => {
      const key = freshKey("prefix");
      const a = redisStorage(client(), { prefix: "tenant-a:" });
      const b = redisStorage(client(), { prefix: "tenant-b:" });
      const none = redisStorage(client());
      await a.put(key, "record of a");
      await b.put(key, "record of b");
      assert.equal(await raw("GET", `tenant-a:${key}`), "record of a");
      assert.equal(await raw("GET", `tenant-b:${key}`), "record of b");
      assert.equal(await none.get(key), null, "no record under the bare key");
      assert.equal(await a.get(key), "record of a");
      assert.equal(await b.get(key), "record of b");
      const leaseA = await a.acquire(key, 10_000);
      const leaseB = await b.acquire(key, 10_000);
      assert.ok(leaseA && leaseB, "each tenant has its own lease");
      assert.equal(await raw("GET", "tenant-a:" + leaseKey(key)), leaseA);
      assert.equal(await raw("GET", "tenant-b:" + leaseKey(key)), leaseB);
      assert.equal(await b.release(key, leaseA), false, "a lease id of another prefix releases nothing");
      assert.equal(await a.release(key, leaseA), true);
      assert.equal(await raw("GET", "tenant-b:" + leaseKey(key)), leaseB);
      assert.equal(await a.delete(key), true);
      assert.equal(await b.get(key), "record of b", "delete under one prefix leaves the other");
      await b.release(key, leaseB);
      await b.delete(key);
    });

    test("the client's errors reject as they are, and the values stay out of messages made here", T, async () => {
      const s = redisStorage(client());
      const key = freshKey("errors");
      // A key of another type: the server's WRONGTYPE error, from the client, unchanged.
      await raw("LPUSH", key, "x");
      const err0 = await within(s.get(key), 5000, "get of a list").then(
        () => assert.fail("get should reject"),
        (e) => e,
      );
      assert.ok(err0 instanceof Error, `${kind} rejects with an Error`);
      assert.match(err0.message, /WRONGTYPE/);
      // SET NX on a lease key of another type answers nil (taken); the release script's
      // GET fails there, and the client reports the script error.
      await raw("LPUSH", leaseKey(key), "x");
      assert.equal(await within(s.acquire(key, 1000), 5000, "acquire"), null);
      await assert.rejects(within(s.release(key, "id"), 5000, "release on a list"), (e) => e instanceof Error);
      // Bad arguments: TypeErrors that never show the value.
      const secret = "eyJ.secret-refresh-token.sig";
      const err = await s.put(key, { token: secret }).catch((e) => e);
      assert.ok(err instanceof TypeError);
      assert.ok(!err.message.includes(secret) && !err.message.includes("token"), err.message);
      await assert.rejects(s.get(42), TypeError);
      await assert.rejects(s.acquire(key, 0), TypeError);
      await assert.rejects(s.acquire(key, Number.NaN), TypeError);
      await assert.rejects(s.acquire(key, "1000"), TypeError);
      assert.equal(await s.release(key, undefined), false, "no lease id: nothing to release");
      await raw("DEL", key, leaseKey(key));
    });

    test("a closed client rejects every call (no hang)", T, async () => {
      const { createClient } = await import("redis");
      const { default: Redis } = await import("ioredis");
      let c;
      if (kind === "node-redis") {
        c = createClient({ url: redis.url, socket: { reconnectStrategy: false } });
        c.on("error", () => {});
        await within(c.connect(), 5000, "connect");
      } else {
        c = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
        c.on("error", () => {});
        await within(c.connect(), 5000, "connect");
      }
      const s = redisStorage(c);
      const key = freshKey("closed");
      await s.put(key, RECORD);
      await closeClient(c);
      for (const [what, call] of [
        ["get", () => s.get(key)],
        ["put", () => s.put(key, RECORD)],
        ["delete", () => s.delete(key)],
        ["acquire", () => s.acquire(key, 1000)],
        ["release", () => s.release(key, "id")],
      ]) {
        const err = await within(call(), 5000, `${what} on a closed ${kind} client`).then(
          () => assert.fail(`${what} should reject`),
          (e) => e,
        );
        assert.ok(err instanceof Error, `${what}: an Error`);
        assert.ok(!String(err.message).includes(RECORD), `${what}: the value is not in the message`);
      }
      await raw("DEL", key);
    });
  });
}

describe("client shapes", () => {
  /** A fake that records what it is asked and answers from the real server. */
  const recording = (style) => {
    const calls = [];
    const real = clients["node-redis"];
    const forward = (args) => real.sendCommand(args.map(String));
    const shapes = {
      sendCommand: { sendCommand: (args) => (calls.push(args), forward(args)) },
      call: { call: (...args) => (calls.push(args), forward(args)) },
      // ioredis has both; its sendCommand takes a Command object, so `call` must win.
      both: {
        call: (...args) => (calls.push(args), forward(args)),
        sendCommand: () => assert.fail("sendCommand must not be used when call exists"),
      },
      cluster: {
        sendCommand: (firstKey, readonly, args) => (calls.push([firstKey, readonly, args]), forward(args)),
        getSlotMaster: () => ({}),
      },
      legacy: {
        sendCommand: () => assert.fail("the callback API must not be used"),
        v4: { sendCommand: (args) => (calls.push(args), forward(args)) },
      },
      buffers: {
        sendCommand: async (args) => {
          calls.push(args);
          const reply = await forward(args);
          return typeof reply === "string" ? Buffer.from(reply) : reply;
        },
      },
    };
    return { client: shapes[style], calls };
  };

  test("a plain object with sendCommand gets one array of strings", T, async () => {
    const { client, calls } = recording("sendCommand");
    const s = redisStorage(client, { prefix: "p:", ttlSeconds: 30 });
    const key = freshKey("plain");
    await s.put(key, "v");
    assert.deepEqual(calls[0], ["SET", `p:${key}`, "v", "PX", "30000"]);
    assert.equal(await s.get(key), "v");
    assert.deepEqual(calls[1], ["GET", `p:${key}`]);
    const lease = await s.acquire(key, 1500.2);
    assert.deepEqual(calls[2].slice(0, 2), ["SET", `p:\u0000lease\u0000${key}`]);
    assert.equal(calls[2][2], lease);
    assert.deepEqual(calls[2].slice(3), ["NX", "PX", "1501"]);
    assert.equal(await s.release(key, lease), true);
    assert.equal(calls[3][0], "EVAL");
    assert.match(calls[3][1], /redis\.call\("get", KEYS\[1\]\) == ARGV\[1\]/);
    assert.deepEqual(calls[3].slice(2), ["1", `p:\u0000lease\u0000${key}`, lease]);
    assert.equal(await s.delete(key), true);
    assert.deepEqual(calls[4], ["DEL", `p:${key}`]);
    for (const args of calls) assert.ok(args.every((a) => typeof a === "string"), "strings only");
  });

  test("a plain object with call gets the arguments spread (ioredis style)", T, async () => {
    const { client, calls } = recording("call");
    const s = redisStorage(client);
    const key = freshKey("call");
    await s.put(key, "v");
    assert.deepEqual(calls[0], ["SET", key, "v"]);
    assert.equal(await s.get(key), "v");
    const lease = await s.acquire(key, 1000);
    assert.ok(lease);
    assert.equal(await s.release(key, lease), true);
    await s.delete(key);
  });

  test("call wins over sendCommand (ioredis has both)", T, async () => {
    const { client, calls } = recording("both");
    const s = redisStorage(client);
    const key = freshKey("both");
    await s.put(key, "v");
    assert.equal(await s.get(key), "v");
    assert.equal(calls.length, 2);
    await s.delete(key);
  });

  test("node-redis cluster shape: the key routes, GET is read-only", T, async () => {
    const { client, calls } = recording("cluster");
    const s = redisStorage(client, { prefix: "c:" });
    const key = freshKey("cluster");
    await s.put(key, "v");
    assert.equal(await s.get(key), "v");
    const lease = await s.acquire(key, 1000);
    await s.release(key, lease);
    await s.delete(key);
    assert.deepEqual(calls[0].slice(0, 2), [`c:${key}`, false]);
    assert.deepEqual(calls[1], [`c:${key}`, true, ["GET", `c:${key}`]]);
    assert.equal(calls[2][0], `c:\u0000lease\u0000${key}`);
    assert.equal(calls[3][0], `c:\u0000lease\u0000${key}`, "EVAL is routed by its key, not by the script");
    assert.equal(calls[3][2][0], "EVAL");
  });

  test("node-redis v4 legacy mode: the promise API under v4 is used", T, async () => {
    const { client, calls } = recording("legacy");
    const s = redisStorage(client);
    const key = freshKey("legacy");
    await s.put(key, "v");
    assert.equal(await s.get(key), "v");
    assert.equal(calls.length, 2);
    await s.delete(key);
  });

  test("Buffer replies are read as UTF-8 text", T, async () => {
    const { client } = recording("buffers");
    const s = redisStorage(client);
    const key = freshKey("buffers");
    await s.put(key, RECORD);
    assert.equal(await s.get(key), RECORD);
    const lease = await s.acquire(key, 1000);
    assert.equal(typeof lease, "string");
    assert.equal(await s.acquire(key, 1000), null);
    assert.equal(await s.release(key, lease), true);
    await s.delete(key);
  });

  test("a client error is passed on as the same object", T, async () => {
    const boom = Object.assign(new Error("connection lost"), { code: "ECONNRESET" });
    const s = redisStorage({ sendCommand: () => Promise.reject(boom) });
    for (const call of [() => s.get("k"), () => s.put("k", "v"), () => s.delete("k"), () => s.acquire("k", 10), () => s.release("k", "id")]) {
      assert.equal(await call().catch((e) => e), boom);
    }
    // A client that throws synchronously rejects too (never a synchronous throw from a method).
    const sync = redisStorage({ call: () => { throw boom; } });
    const p = sync.get("k");
    assert.ok(p instanceof Promise);
    assert.equal(await p.catch((e) => e), boom);
  });

  test("a reply of the wrong kind is an error that shows no value", T, async () => {
    const s = redisStorage({ sendCommand: async () => ({ secret: "eyJ.value" }) });
    const err = await s.get("k").catch((e) => e);
    assert.ok(err instanceof Error);
    assert.equal(err.code, "ERR_REDIS_REPLY");
    assert.ok(!err.message.includes("eyJ"));
  });

  test("options and clients are checked when the storage is made", () => {
    for (const bad of [undefined, null, 42, "redis://x", {}, { get() {}, set() {} }]) {
      assert.throws(() => redisStorage(bad), TypeError);
    }
    const c = { sendCommand: async () => null };
    assert.throws(() => redisStorage(c, { prefx: "x" }), /unknown option "prefx"/);
    assert.throws(() => redisStorage(c, { prefix: 1 }), TypeError);
    assert.throws(() => redisStorage(c, { ttlSeconds: 0 }), TypeError);
    assert.throws(() => redisStorage(c, { ttlSeconds: -1 }), TypeError);
    assert.throws(() => redisStorage(c, { ttlSeconds: Infinity }), TypeError);
    assert.throws(() => redisStorage(c, "p:"), TypeError);
    const s = redisStorage(c, { prefix: "", ttlSeconds: 1 });
    assert.deepEqual(Object.keys(s).sort(), ["acquire", "delete", "get", "put", "putIfNewer", "release"]);
  });
});

describe("one-node Redis Cluster", () => {
  let node;
  before(async () => {
    node = await within(startRedis({ cluster: true }), 20_000, "start a cluster node");
  });
  after(async () => {
    await node?.stop();
  });

  test("node-redis createCluster and ioredis Cluster", T, async () => {
    const { createCluster } = await import("redis");
    const { default: Redis } = await import("ioredis");
    const nr = createCluster({ rootNodes: [{ url: node.url }], defaults: { socket: { reconnectStrategy: false } } });
    nr.on("error", () => {});
    const io = new Redis.Cluster([{ host: "127.0.0.1", port: node.port }], {
      lazyConnect: true,
      clusterRetryStrategy: () => null,
      redisOptions: { maxRetriesPerRequest: 1 },
    });
    io.on("error", () => {});
    try {
      await within(nr.connect(), 10_000, "node-redis cluster connect");
      await within(io.connect(), 10_000, "ioredis cluster connect");
      const a = redisStorage(nr, { prefix: "{t}:" });
      const b = redisStorage(io, { prefix: "{t}:" });
      const key = freshKey("cluster");
      await within(a.put(key, RECORD), 5000, "put");
      assert.equal(await within(b.get(key), 5000, "get"), RECORD);
      const results = await within(Promise.all([a.acquire(key, 5000), b.acquire(key, 5000), a.acquire(key, 5000), b.acquire(key, 5000)]), 5000, "acquire");
      const winners = results.filter(Boolean);
      assert.equal(winners.length, 1);
      const holder = results.indexOf(winners[0]) % 2 === 0 ? a : b;
      const other = holder === a ? b : a;
      assert.equal(await other.release(key, "wrong"), false);
      assert.equal(await holder.release(key, winners[0]), true);
      assert.equal(await b.delete(key), true);
      assert.equal(await a.get(key), null);
    } finally {
      await within(nr.close?.() ?? nr.quit(), 3000, "close node-redis cluster").catch(() => nr.destroy?.());
      io.disconnect();
    }
  });
});

test("redis.d.ts accepts the real clients' types and fits the session's storage option", { timeout: 60_000 }, () => {
  // tests/redis/types/check.ts: node-redis and ioredis clients and clusters, plain objects,
  // the result as AuthSessionOptions["storage"], and @ts-expect-error for what must fail.
  const tsc = spawnSync(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "--noEmit", "-p", join(here, "types")], {
    encoding: "utf8",
    timeout: 50_000,
  });
  assert.equal(tsc.error, undefined);
  assert.equal(tsc.status, 0, `${tsc.stdout}${tsc.stderr}`);
});
