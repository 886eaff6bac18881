// Type-checked by tests/redis/adapter.test.mjs (tsc --noEmit -p tests/redis/types): the
// declarations of auth-session/redis accept the real clients' types and fit the session's
// `storage` option.
import { createClient, createCluster } from "redis";
import { Redis, Cluster } from "ioredis";
import { redisStorage, type RedisTokenStorage } from "../../../pkg-template/redis.js";
import type { AuthSessionOptions, TokenStorage } from "../../../pkg-template/index.js";

const nodeRedis = createClient({ url: "redis://127.0.0.1:6379" });
const nodeCluster = createCluster({ rootNodes: [{ url: "redis://127.0.0.1:7000" }] });
const ioredis = new Redis({ lazyConnect: true });
const ioCluster = new Cluster([{ host: "127.0.0.1", port: 7000 }], { lazyConnect: true });

const a: RedisTokenStorage = redisStorage(nodeRedis);
const b: TokenStorage = redisStorage(nodeCluster, { prefix: "tenant-a:" });
const c: TokenStorage = redisStorage(ioredis, { ttlSeconds: 7 * 86_400 });
const d: TokenStorage = redisStorage(ioCluster);
const e: TokenStorage = redisStorage({ sendCommand: async (args: string[]) => args.length });
const f: TokenStorage = redisStorage({ call: async (command: string, ...args: string[]) => command + args.length });

const options: AuthSessionOptions = { host: "https://api.example.com", storage: redisStorage(ioredis) };

async function use(s: RedisTokenStorage): Promise<void> {
  const record: string | null = await s.get("k");
  await s.put("k", record ?? "{}");
  const lease: string | null = await s.acquire("k", 30_000);
  if (lease !== null) {
    const released: boolean = await s.release("k", lease);
    void released;
  }
  const deleted: boolean = await s.delete("k");
  void deleted;
}

// @ts-expect-error: not a client
redisStorage({});
// @ts-expect-error: unknown option
redisStorage(nodeRedis, { prefx: "x" });
// @ts-expect-error: ttlSeconds is a number
redisStorage(nodeRedis, { ttlSeconds: "60" });

void [a, b, c, d, e, f, options, use];
