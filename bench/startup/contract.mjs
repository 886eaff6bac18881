import { ContractSession } from "../contenders/contract.mjs";

const session = new ContractSession({ host: "http://127.0.0.1:9", autoRefresh: false });
void globalThis.fetch;
process.stdout.write(`${performance.now()}\n`);
session.dispose();
