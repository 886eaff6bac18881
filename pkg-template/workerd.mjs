// Cloudflare Workers (workerd) entry: workerd forbids compiling wasm from bytes, so the
// module is imported as a precompiled WebAssembly.Module (wrangler and esbuild's workerd
// setups turn a .wasm import into one) and instantiated synchronously at module scope.
import wasmModule from "./auth_session_bg.wasm";
import { initSync } from "./auth_session.js";
import { timersPerRequest } from "./session.js";

initSync({ module: wasmModule });
// A workerd timer ends with the request that set it: each session keeps its own.
timersPerRequest();

export { AuthSession } from "./session.js";
export { AuthError } from "./auth-error.js";
export { SessionPool } from "./pool.js";
