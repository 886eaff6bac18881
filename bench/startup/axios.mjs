const t0 = performance.now();
const { createAxiosSession } = await import("../contenders/axios.mjs");

const session = createAxiosSession({ host: "http://127.0.0.1:9" });
const t1 = performance.now();
void globalThis.fetch;
process.stdout.write(`${performance.now()} ${t1 - t0}\n`);
void session;
