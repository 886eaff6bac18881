// Type declarations of `auth-session/redis`: a TokenStorage on Redis with the refresh lease.
// No dependency on a Redis client's types: any client of these shapes is accepted.

/** node-redis v4-v6 (`createClient()`), or any object with a node-redis style `sendCommand`. */
export interface NodeRedisLike {
  sendCommand(args: string[]): Promise<unknown>;
}

/** node-redis v4-v6 cluster (`createCluster()`): the first key routes the command. */
export interface NodeRedisClusterLike {
  sendCommand(firstKey: string | undefined, isReadonly: boolean | undefined, args: string[]): Promise<unknown>;
  getSlotMaster(slot: number): unknown;
}

/** node-redis v4 in legacy mode: the promise API lives under `v4`. */
export interface NodeRedisLegacyLike {
  sendCommand(...args: any[]): unknown;
  v4: NodeRedisLike;
}

/** ioredis (`new Redis()`, `new Redis.Cluster()`), or any object with an ioredis style `call`. */
export interface IORedisLike {
  call(command: string, ...args: string[]): Promise<unknown>;
}

export type RedisClientLike = NodeRedisLike | NodeRedisClusterLike | NodeRedisLegacyLike | IORedisLike;

export interface RedisStorageOptions {
  /** Prepended to every key (the record `<prefix><key>`, its lease `<prefix><key>:lease`). Default "". */
  prefix?: string;
  /** Expire the record this many seconds after each write. Default: no expiry. */
  ttlSeconds?: number;
}

/**
 * A `TokenStorage` with the refresh lease: pass it as `storage` to every `AuthSession`
 * that shares the record, in every process. Each method rejects with the client's own
 * error when a command fails (the session reports it as `STORAGE_ERROR`).
 */
export interface RedisTokenStorage {
  /** `GET <prefix><key>`: the record, or null. */
  get(key: string): Promise<string | null>;
  /** `SET <prefix><key> <value>` (with `PX` when `ttlSeconds` is set). */
  put(key: string, value: string): Promise<void>;
  /**
   * Stores the record only over a lower version (a script; the version is kept in a header
   * that `get` strips): true when it wrote. The session writes with it, so a late write never
   * rolls the record back.
   */
  putIfNewer(key: string, value: string, version: number): Promise<boolean>;
  /** `DEL <prefix><key>`: true when there was a record. The lease is left alone. */
  delete(key: string): Promise<boolean>;
  /** `SET <prefix>\0lease\0<key> <random id> NX PX <ttlMs>`: the lease id when taken, null when another holder has it. */
  acquire(key: string, ttlMs: number): Promise<string | null>;
  /** Deletes the lease only if `lease` still holds it (compare-and-delete script): true when it did. */
  release(key: string, lease: string): Promise<boolean>;
}

/**
 * A `TokenStorage` on Redis, with the refresh lease, for Node fleets.
 *
 * @param client a connected client: node-redis (`redis` on npm, v4-v6), ioredis, or an
 *   object with `sendCommand(args)` or `call(name, ...args)`.
 * @throws {TypeError} when the client has neither shape or an option is invalid.
 *
 * @example
 * ```ts
 * import { createClient } from "redis";
 * import { AuthSession } from "auth-session";
 * import { redisStorage } from "auth-session/redis";
 *
 * const client = await createClient({ url: process.env.REDIS_URL }).connect();
 * const session = new AuthSession({
 *   host: "https://api.example.com",
 *   credentials: { username: "svc-reports", password: process.env.API_PASSWORD! },
 *   storage: redisStorage(client, { prefix: "auth-session:" }),
 * });
 * ```
 */
export function redisStorage(client: RedisClientLike, options?: RedisStorageOptions): RedisTokenStorage;
