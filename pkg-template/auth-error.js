// The error class of the package: a real `class … extends Error`, so users get
// `err instanceof Error`, a stack and the usual `name: message` rendering. The session
// (session.js) builds every AuthError at the await of the user's call, from the machine's
// descriptor, so the stack shows that call. Every entry re-exports this one module.
//
// A process can hold several copies of this class (the ESM and the CJS entry, two versions
// in a dependency tree): each error carries a brand registered with Symbol.for, and
// `instanceof` and `AuthError.is` check the brand, so every copy recognises every other's
// errors — and future versions agree on the same brand.

const BRAND = Symbol.for("auth-session.AuthError");

export class AuthError extends Error {
  constructor(message, name, code, status, retryable, retryAfter) {
    super(message);
    Object.defineProperty(this, "name", { value: name, writable: true, configurable: true });
    this.code = code;
    this.status = status;
    this.retryable = retryable;
    /** The seconds the server asked to wait (`Retry-After` on a 429 or 5xx), if it said. */
    this.retryAfter = retryAfter;
    Object.defineProperty(this, BRAND, { value: true });
  }

  /** True for an AuthError of any copy of the package. */
  static is(value) {
    return value !== null && (typeof value === "object" || typeof value === "function") && value[BRAND] === true;
  }

  static [Symbol.hasInstance](value) {
    // Subclasses keep the ordinary prototype check; AuthError itself checks the brand.
    return this === AuthError ? AuthError.is(value) : Function.prototype[Symbol.hasInstance].call(this, value);
  }

  /** What JSON.stringify writes (an Error's own fields are not enumerable). */
  toJSON() {
    const json = { name: this.name, code: this.code, message: this.message, status: this.status, retryable: this.retryable };
    if (this.retryAfter !== undefined) json.retryAfter = this.retryAfter;
    return json;
  }
}
