// The one JavaScript class of the package. It lives in JS (not Rust) because only a real
// `class … extends Error` gives users `err instanceof Error`, a stack and the usual
// `name: message` rendering. Rust constructs it through the import in src/wasm/error.rs,
// and every entry file re-exports this same module so `instanceof AuthError` holds.
export class AuthError extends Error {
  constructor(message, name, code, status, retryable) {
    super(message);
    Object.defineProperty(this, "name", { value: name, writable: true, configurable: true });
    this.code = code;
    this.status = status;
    this.retryable = retryable;
  }
}
