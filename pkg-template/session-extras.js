// What the generated class cannot express, added once to AuthSession.prototype by every
// entry: `using` support that runs the idempotent dispose(), and a Node/Deno/Bun inspect
// view built from toJSON(), which never holds a token.

const dispose = Symbol.dispose ?? Symbol.for("Symbol.dispose");
const inspectCustom = Symbol.for("nodejs.util.inspect.custom");

/** @param {Function} AuthSession the class from the wasm-bindgen glue */
export function addSessionExtras(AuthSession) {
  const proto = AuthSession.prototype;
  // The glue sets [Symbol.dispose] to free(), which releases the Rust object at once but
  // neither cancels timers nor settles waiters, and throws if called twice.
  define(proto, dispose, function () {
    this.dispose();
  });
  define(proto, inspectCustom, function (depth, options, inspect) {
    if (depth < 0) {
      return typeof options?.stylize === "function"
        ? options.stylize("[AuthSession]", "special")
        : "[AuthSession]";
    }
    let info;
    try {
      info = this.toJSON();
    } catch {
      // free() was called: the Rust side is gone.
      return "AuthSession { <freed> }";
    }
    if (typeof inspect !== "function") return info;
    const nested = { ...options, depth: options.depth == null ? null : options.depth - 1 };
    return `AuthSession ${inspect(info, nested)}`;
  });
}

function define(target, key, value) {
  Object.defineProperty(target, key, { value, writable: true, configurable: true, enumerable: false });
}
