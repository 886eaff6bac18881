// Deno entry: the wasm is read from the file next to this one (`--allow-read` for it, as for
// any local file) and compiled while the import resolves. Not web.mjs's `fetch`: Deno's
// first `fetch` starts its HTTP client, about 10 ms of a cold start before any request.
import init from "./auth_session.js";

await init(Deno.readFileSync(new URL("./auth_session_bg.wasm", import.meta.url)));

export { AuthSession } from "./session.js";
export { AuthError } from "./auth-error.js";
export { SessionPool } from "./pool.js";
