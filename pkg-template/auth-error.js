// The error class of the package: a real `class … extends Error`, so users get
// `err instanceof Error`, a stack and the usual `name: message` rendering. The session
// (session.js) builds every AuthError at the await of the user's call, from the machine's
// descriptor, so the stack shows that call. Every entry re-exports this one module.
export class AuthError extends Error {
  constructor(message, name, code, status, retryable) {
    super(message);
    Object.defineProperty(this, "name", { value: name, writable: true, configurable: true });
    this.code = code;
    this.status = status;
    this.retryable = retryable;
  }
}
