const t0 = performance.now();
const { HandwrittenSession } = await import("../contenders/handwritten.mjs");

const session = new HandwrittenSession({ host: "http://127.0.0.1:9", autoRefresh: false });
const t1 = performance.now();
void globalThis.fetch;
process.stdout.write(`${performance.now()} ${t1 - t0}\n`);
session.dispose();
