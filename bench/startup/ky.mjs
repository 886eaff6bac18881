import { createKySession } from "../contenders/ky.mjs";

const session = createKySession({ host: "http://127.0.0.1:9" });
void globalThis.fetch;
process.stdout.write(`${performance.now()}\n`);
void session;
