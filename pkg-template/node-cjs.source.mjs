// Source of node.cjs, the CommonJS entry for `require("auth-session")`: the same logic as
// node.mjs, bundled by scripts/assemble-pkg.mjs with esbuild into one CJS file. It is not
// shipped. Only the wasm location differs: CommonJS has __dirname, not import.meta.url.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { initSync } from "./auth_session.js";

initSync({ module: readFileSync(join(__dirname, "auth_session_bg.wasm")) });

export { AuthSession } from "./session.js";
export { AuthError } from "./auth-error.js";
export { SessionPool } from "./pool.js";
