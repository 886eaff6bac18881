// Many tenants in one process: one AuthSession per account, at most `max` alive. The least
// recently used session is disposed when a new one would exceed the bound, so a service
// with an open-ended set of tenants keeps a bounded number of timers, tokens and sockets.
// Each session keeps its own record (the default storage key carries a hash of its account),
// so an evicted tenant restores its tokens from storage next time instead of logging in.

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

  /** The session of `key`, created on first use. */
  get(key) {
    const k = String(key);
    let session = this.#sessions.get(k);
    if (session !== undefined) {
      // Most recently used last.
      this.#sessions.delete(k);
      this.#sessions.set(k, session);
      return session;
    }
    session = this.#create(k);
    this.#sessions.set(k, session);
    while (this.#sessions.size > this.#max) {
      const [oldest, evicted] = this.#sessions.entries().next().value;
      this.#sessions.delete(oldest);
      evicted.dispose();
    }
    return session;
  }

  /** Disposes and forgets the session of `key` (its stored record stays). */
  delete(key) {
    const k = String(key);
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
