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
// Keys: the record is `<prefix><key>`; its lease is `<prefix>\0lease\0<key>`, taken with
// `SET … NX PX <ttl>` and a random id, and given back with a compare-and-delete script, so
// a holder never deletes a lease another holder took after its own expired. Record keys
// may not contain NUL, so no record key reaches a lease's (tenant ids are often chosen by
// users: a record key ending in ":lease" must not occupy another tenant's lease).
//
// Conditional writes: `putIfNewer(key, value, version)` writes with a script only over a
// record of a lower version (the version is kept in a `#v<version>\n` header that `get`
// strips), so a holder whose link stalled and whose late write arrives after another
// holder's never rolls the record back. A stored version above 2^50 is not one a session
// writes (a bug, or a record meant to pin the versions at the top): it is replaced.
//
// Errors: the client's rejections are passed on as they are (the session reports them as
// STORAGE_ERROR, with their name and code only). Errors made here never hold a key's value
// or a lease id.

const RELEASE_SCRIPT =
  'if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end';
/** Writes ARGV[2] under version ARGV[1] unless the stored version is at least that (and not
 *  above ARGV[3], the highest a session writes); ARGV[4]: PX milliseconds, or "". 1: written. */
const PUT_IF_NEWER_SCRIPT = [
  'local cur = redis.call("get", KEYS[1])',
  "local v = 0",
  'if cur then local h = string.match(cur, "^#v(%d+)\\n") if h then v = tonumber(h) end end',
  "local new = tonumber(ARGV[1])",
  "if cur and v >= new and v <= tonumber(ARGV[3]) then return 0 end",
  'local value = "#v" .. ARGV[1] .. "\\n" .. ARGV[2]',
  'if ARGV[4] == "" then redis.call("set", KEYS[1], value) else redis.call("set", KEYS[1], value, "px", ARGV[4]) end',
  "return 1",
].join("\n");
/** The highest record version a session writes (src/core/envelope.rs MAX_RECORD_VERSION). */
const MAX_RECORD_VERSION = 2 ** 50;
const LEASE_NAMESPACE = "\u0000lease\u0000";
const VERSION_HEADER = /^#v\d+\n/;
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
  // NUL starts the lease namespace: no record key may reach it.
  if (key.includes("\u0000")) throw new TypeError("redisStorage: key must not contain NUL");
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
      // A conditional write's version header is the adapter's, not part of the record.
      const header = VERSION_HEADER.exec(reply);
      return header === null ? reply : reply.slice(header[0].length);
    },

    async put(key, value) {
      checkKey(key);
      if (typeof value !== "string") throw new TypeError("redisStorage: put() needs a string value");
      const args = ["SET", prefix + key, value];
      if (ttlMs > 0) args.push("PX", String(ttlMs));
      await send(args, prefix + key, false);
    },

    /**
     * Writes `value` only over a record of a lower version (or none): a late write never
     * replaces a newer record. Resolves true when it wrote, false when a newer record stays.
     */
    async putIfNewer(key, value, version) {
      checkKey(key);
      if (typeof value !== "string") throw new TypeError("redisStorage: putIfNewer() needs a string value");
      if (!Number.isSafeInteger(version) || version < 0 || version > MAX_RECORD_VERSION) {
        throw new TypeError("redisStorage: putIfNewer() needs a version from 0 to 2^50");
      }
      const args = ["EVAL", PUT_IF_NEWER_SCRIPT, "1", prefix + key, String(version), value, String(MAX_RECORD_VERSION)];
      args.push(ttlMs > 0 ? String(ttlMs) : "");
      return Number(await send(args, prefix + key, false)) === 1;
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
      const leaseKey = prefix + LEASE_NAMESPACE + key;
      const reply = text(await send(["SET", leaseKey, id, "NX", "PX", String(Math.ceil(ttlMs))], leaseKey, false));
      return reply === "OK" ? id : null;
    },

    /** Gives the lease back if `lease` still holds it; true when it did. */
    async release(key, lease) {
      checkKey(key);
      if (typeof lease !== "string" || lease === "") return false;
      const leaseKey = prefix + LEASE_NAMESPACE + key;
      const reply = await send(["EVAL", RELEASE_SCRIPT, "1", leaseKey, lease], leaseKey, false);
      return Number(reply) === 1;
    },
  };
}
