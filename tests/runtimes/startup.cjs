// The CommonJS twin of startup.mjs: `require("auth-session")` (node.cjs) + the first
// `new AuthSession(...)`, timed inside one fresh process. Printed as `startup <ms>`.
"use strict";
const start = performance.now();
const { AuthSession } = require("auth-session");
const session = new AuthSession({ host: "http://127.0.0.1:9", autoRefresh: false });
const ready = performance.now();
session.dispose();
console.log(`startup ${(ready - start).toFixed(3)}`);
