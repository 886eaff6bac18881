// Cloudflare Workers (workerd) entry: workerd forbids compiling wasm from bytes, so the
// module is imported as a precompiled WebAssembly.Module (wrangler and esbuild's workerd
// setups turn a .wasm import into one) and instantiated synchronously at module scope.
import wasmModule from "./auth_session_bg.wasm";
import { initSync, AuthSession } from "./auth_session.js";
import { AuthError } from "./@@AUTH_ERROR_SNIPPET@@";
import { addSessionExtras } from "./session-extras.js";

initSync({ module: wasmModule });
addSessionExtras(AuthSession);

export { AuthSession, AuthError };
