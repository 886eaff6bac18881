import { HandwrittenSession } from "../contenders/handwritten.mjs";

const session = new HandwrittenSession({ host: "http://127.0.0.1:9", autoRefresh: false });
void globalThis.fetch;
process.stdout.write(`${performance.now()}\n`);
session.dispose();
