// Browser and Deno entry: the glue's default loader fetches auth_session_bg.wasm next to
// this file (bundlers recognise its `new URL(..., import.meta.url)`) and streams it into
// the compiler. Top-level await makes the exports ready when the import resolves.
import init, { AuthSession } from "./auth_session.js";
import { AuthError } from "./@@AUTH_ERROR_SNIPPET@@";
import { addSessionExtras } from "./session-extras.js";

await init();
addSessionExtras(AuthSession);

export { AuthSession, AuthError };
