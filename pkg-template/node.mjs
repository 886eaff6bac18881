// Node (and Bun) ESM entry: the wasm is read from disk next to this file and compiled
// synchronously, so the exports are ready when the import resolves. (Node's fetch cannot
// read file: URLs, so the web entry's loader does not work here.)
//
// `process.getBuiltinModule` (Node 20.16+, 22.3+, Bun), else `require`, rather than
// `import ... from "node:fs"`: an ES import of a built-in builds its whole namespace, and fs's
// lazy `ReadStream` getters then load Node's streams, 2-3 ms of a cold start on Node 20 for
// one synchronous read. (No top-level await: bundlers that emit CommonJS cannot take it.)
import { createRequire } from "node:module";
import { initSync } from "./auth_session.js";

const { readFileSync } = globalThis.process?.getBuiltinModule?.("node:fs") ?? createRequire(import.meta.url)("node:fs");
initSync({ module: readFileSync(new URL("./auth_session_bg.wasm", import.meta.url)) });

export { AuthSession } from "./session.js";
export { AuthError } from "./auth-error.js";
export { SessionPool } from "./pool.js";
