// auth-session/redis: a TokenStorage on Redis, with the refresh lease, for Node fleets
// (many processes, one record per account).
//
//   import { createClient } from "redis";          // or: import Redis from "ioredis";
//   import { redisStorage } from "auth-session/redis";
//   const client = await createClient({ url }).connect();
//   const session = new AuthSession({ host, credentials, storage: redisStorage(client) });
//
// No dependency: the caller passes a connected client. The adapter speaks raw commands
// (GET, SET, DEL, EVAL) through the client's generic command call, so it does not depend
// on any client version's high-level signatures:
//   - ioredis (Redis and Cluster) and anything with `call(name, ...args)`;
//   - node-redis v4-v6 (`sendCommand([name, ...args])`), its legacy mode (`client.v4`) and
//     its cluster (`sendCommand(firstKey, isReadonly, args)`);
//   - a plain object with either `call` or `sendCommand`.
//
// Keys: the record is `<prefix><key>`; its lease is `<prefix><key>:lease`, taken with
// `SET … NX PX <ttl>` and a random id, and given back with a compare-and-delete script, so
// a holder never deletes a lease another holder took after its own expired.
//
// Errors: the client's rejections are passed on as they are (the session reports them as
// STORAGE_ERROR, with their name and code only). Errors made here never hold a key's value
// or a lease id.

const RELEASE_SCRIPT =
  'if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end';
const LEASE_SUFFIX = ":lease";
const OPTIONS = new Set(["prefix", "ttlSeconds"]);

const decoder = new TextDecoder();

/** A reply as text: node-redis with a Buffer type mapping, or a client's `…Buffer` variant. */
function text(reply) {
  if (reply instanceof Uint8Array) return decoder.decode(reply);
  return reply;
}

function storageError(message, code) {
  const err = new Error(`redisStorage: ${message}`);
  err.name = "RedisStorageError";
  err.code = code;
  return err;
}

/** A random lease id: a UUID, or 128 random bits in hex where randomUUID is missing. */
function leaseId() {
  const c = globalThis.crypto;
  if (typeof c?.randomUUID === "function") return c.randomUUID();
  if (typeof c?.getRandomValues === "function") {
    const bytes = c.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  throw storageError("no crypto.randomUUID or crypto.getRandomValues in this runtime", "ERR_NO_CRYPTO");
}

/**
 * `send(args, key, readonly)` for the client's shape: `args` is the whole command, all
 * strings; `key` the one key it touches (a cluster routes by it). Detection order matters:
 * ioredis also has a `sendCommand`, which takes a Command object.
 */
function commandSender(client) {
  if (client === null || (typeof client !== "object" && typeof client !== "function")) {
    throw new TypeError("redisStorage: client must be a connected node-redis or ioredis client");
  }
  if (typeof client.call === "function") {
    // ioredis: call(name, ...args) (Redis and Cluster alike).
    return (args) => client.call(...args);
  }
  if (typeof client.sendCommand === "function") {
    if (typeof client.getSlotMaster === "function") {
      // node-redis cluster: the key routes the command.
      return (args, key, readonly) => client.sendCommand(key, readonly, args);
    }
    if (client.v4 !== null && typeof client.v4 === "object" && typeof client.v4.sendCommand === "function") {
      // node-redis v4 in legacy mode: the promise API lives under `v4`.
      return (args) => client.v4.sendCommand(args);
    }
    return (args) => client.sendCommand(args);
  }
  throw new TypeError(
    "redisStorage: client must be a connected node-redis client (sendCommand) or an ioredis client (call)",
  );
}

function readOptions(options) {
  if (options === undefined || options === null) return { prefix: "", ttlMs: 0 };
  if (typeof options !== "object") throw new TypeError("redisStorage: options must be an object { prefix?, ttlSeconds? }");
  for (const key of Object.keys(options)) {
    if (!OPTIONS.has(key)) {
      const shown = String(key).replace(/[\u0000-\u001f\u007f-\u009f]/g, "").slice(0, 64);
      throw new TypeError(`redisStorage: unknown option "${shown}"; known options: prefix, ttlSeconds`);
    }
  }
  const { prefix = "", ttlSeconds } = options;
  if (typeof prefix !== "string") throw new TypeError("redisStorage: prefix must be a string");
  let ttlMs = 0;
  if (ttlSeconds !== undefined) {
    if (typeof ttlSeconds !== "number" || !Number.isFinite(ttlSeconds) || ttlSeconds <= 0) {
      throw new TypeError("redisStorage: ttlSeconds must be a positive number");
    }
    ttlMs = Math.max(1, Math.ceil(ttlSeconds * 1000));
  }
  return { prefix, ttlMs };
}

const checkKey = (key) => {
  if (typeof key !== "string") throw new TypeError("redisStorage: key must be a string");
};

/**
 * A TokenStorage on Redis, with the refresh lease (`acquire`/`release`).
 * @param {object} client a connected node-redis or ioredis client (or an object with
 *   `sendCommand(args)` or `call(name, ...args)`)
 * @param {{ prefix?: string, ttlSeconds?: number }} [options]
 */
export function redisStorage(client, options) {
  const send = commandSender(client);
  const { prefix, ttlMs } = readOptions(options);

  return {
    async get(key) {
      checkKey(key);
      const reply = text(await send(["GET", prefix + key], prefix + key, true));
      if (reply === null || reply === undefined) return null;
      if (typeof reply !== "string") throw storageError("GET answered something other than a string", "ERR_REDIS_REPLY");
      return reply;
    },

    async put(key, value) {
      checkKey(key);
      if (typeof value !== "string") throw new TypeError("redisStorage: put() needs a string value");
      const args = ["SET", prefix + key, value];
      if (ttlMs > 0) args.push("PX", String(ttlMs));
      await send(args, prefix + key, false);
    },

    async delete(key) {
      checkKey(key);
      return Number(await send(["DEL", prefix + key], prefix + key, false)) > 0;
    },

    /** Takes the lease of `key` for `ttlMs`: its id, or null while another holder has it. */
    async acquire(key, ttlMs) {
      checkKey(key);
      if (typeof ttlMs !== "number" || !Number.isFinite(ttlMs) || ttlMs <= 0) {
        throw new TypeError("redisStorage: acquire() needs a positive ttlMs");
      }
      const id = leaseId();
      const leaseKey = prefix + key + LEASE_SUFFIX;
      const reply = text(await send(["SET", leaseKey, id, "NX", "PX", String(Math.ceil(ttlMs))], leaseKey, false));
      return reply === "OK" ? id : null;
    },

    /** Gives the lease back if `lease` still holds it; true when it did. */
    async release(key, lease) {
      checkKey(key);
      if (typeof lease !== "string" || lease === "") return false;
      const leaseKey = prefix + key + LEASE_SUFFIX;
      const reply = await send(["EVAL", RELEASE_SCRIPT, "1", leaseKey, lease], leaseKey, false);
      return Number(reply) === 1;
    },
  };
}
