// Browser and Deno entry: the glue's default loader fetches auth_session_bg.wasm next to
// this file (bundlers recognise its `new URL(..., import.meta.url)`) and streams it into
// the compiler. Top-level await makes the exports ready when the import resolves.
import init from "./auth_session.js";

await init();

export { AuthSession } from "./session.js";
export { AuthError } from "./auth-error.js";
export { SessionPool } from "./pool.js";
