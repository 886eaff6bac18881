import { AuthSession } from "auth-session";

const session = new AuthSession({ host: "http://127.0.0.1:9", autoRefresh: false });
void globalThis.fetch;
process.stdout.write(`${performance.now()}\n`);
session.dispose();
