// Node (and Bun) ESM entry: the wasm is read from disk next to this file and compiled
// synchronously, so the exports are ready when the import resolves. (Node's fetch cannot
// read file: URLs, so the web entry's loader does not work here.)
import { readFileSync } from "node:fs";
import { initSync } from "./auth_session.js";

initSync({ module: readFileSync(new URL("./auth_session_bg.wasm", import.meta.url)) });

export { AuthSession } from "./session.js";
export { AuthError } from "./auth-error.js";
export { SessionPool } from "./pool.js";
