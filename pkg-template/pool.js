// Many tenants in one process: one AuthSession per account, at most `max` idle ones kept.
// When a new session would exceed the bound, the least recently used IDLE sessions are
// disposed (no call and no auth or storage work in flight, so their pair is written): a
// session in use is never disposed under its callers, and while more than `max` are busy the
// pool holds them all and trims at its next `get`. Each session keeps its own record (the
// default storage key carries a hash of its account), so an evicted tenant's next session
// finds its pair in storage instead of logging in again.

import { AuthError } from "./auth-error.js";
import { IDLE } from "./session.js";

const configError = (message) => new AuthError(message, "ConfigError", "CONFIG_ERROR", 0, false);

/** A key as the pool compares it: a string, exactly as given (never another value stringified). */
function keyOf(key) {
  if (typeof key !== "string") {
    throw configError(`SessionPool keys must be strings (got ${key === null ? "null" : typeof key}); pass a tenant id`);
  }
  return key;
}

export class SessionPool {
  #max;
  #create;
  /** key -> session, in order of last use (a Map iterates in insertion order). */
  #sessions = new Map();

  /**
   * @param {{ max?: number, create: (key: string) => import("./index.d.ts").AuthSession }} options
   */
  constructor({ max = 1000, create } = {}) {
    if (!Number.isInteger(max) || max < 1) throw new TypeError("SessionPool: max must be a positive integer");
    if (typeof create !== "function") throw new TypeError("SessionPool: create must be a function (key) => AuthSession");
    this.#max = max;
    this.#create = create;
  }

  /** The session of `key` (a string), created on first use. */
  get(key) {
    const k = keyOf(key);
    let session = this.#sessions.get(k);
    if (session !== undefined) {
      // Most recently used last.
      this.#sessions.delete(k);
      this.#sessions.set(k, session);
      this.#trim(session);
      return session;
    }
    session = this.#create(k);
    this.#sessions.set(k, session);
    this.#trim(session);
    return session;
  }

  /** Disposes the least recently used idle sessions until at most `max` are kept. */
  #trim(keep) {
    if (this.#sessions.size <= this.#max) return;
    for (const [k, s] of this.#sessions) {
      if (this.#sessions.size <= this.#max) break;
      if (s === keep || !isIdle(s)) continue;
      this.#sessions.delete(k);
      s.dispose();
    }
  }

  /** Disposes and forgets the session of `key` (its stored record stays). */
  delete(key) {
    const k = keyOf(key);
    const session = this.#sessions.get(k);
    if (session === undefined) return false;
    this.#sessions.delete(k);
    session.dispose();
    return true;
  }

  get size() {
    return this.#sessions.size;
  }

  /** Disposes every session. */
  dispose() {
    for (const session of this.#sessions.values()) session.dispose();
    this.#sessions.clear();
  }

  [Symbol.dispose ?? Symbol.for("Symbol.dispose")]() {
    this.dispose();
  }
}

/** A session of this package tells whether it is idle; anything else `create` made is never
 *  judged busy (it is disposed as before). */
function isIdle(session) {
  const idle = session?.[IDLE];
  return typeof idle === "function" ? idle.call(session) : true;
}
