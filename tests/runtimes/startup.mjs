// Import + instantiate cost of the package, measured inside one fresh process: from just
// before `import("auth-session")` (which loads the entry, the glue and the wasm, and
// instantiates the wasm) to the end of the first `new AuthSession(...)`. Printed as
// `startup <ms>`; scripts/test-runtimes.sh runs it 7 times per runtime and takes the median,
// next to the whole process's wall time. Runs unchanged in Node, Deno and Bun.
const start = performance.now();
const { AuthSession } = await import("auth-session");
const session = new AuthSession({ host: "http://127.0.0.1:9", autoRefresh: false });
const ready = performance.now();
session.dispose();
console.log(`startup ${(ready - start).toFixed(3)}`);
