const t0 = performance.now();
const { createKySession } = await import("../contenders/ky.mjs");

const session = createKySession({ host: "http://127.0.0.1:9" });
const t1 = performance.now();
void globalThis.fetch;
process.stdout.write(`${performance.now()} ${t1 - t0}\n`);
void session;
