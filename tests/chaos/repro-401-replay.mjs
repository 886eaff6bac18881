// Repro of a bug the chaos fleet found (not part of the test command; the native test
// `a_replay_after_a_401_waits_for_another_holders_pair_and_never_resends_the_refused_token`
// in tests/core_lease.rs holds the fix):
//   node tests/chaos/repro-401-replay.mjs
// A session whose access token the server rejects (401: its family was revoked, e.g. after
// another instance's spent-token reuse) while another instance holds the refresh lease. It
// used to replay with the same rejected token (a second 401: UNAUTHORIZED). Fixed: the
// replay waits for the holder's pair, at most timeoutMs (here the holder never writes, so
// the call fails with TIMEOUT after one API request).
import { join, resolve, dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { startServer } from "../server/reference-server.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const pkg = resolve(process.env.AUTH_SESSION_PKG_DIR || join(root, "pkg"));
const { AuthSession } = await import(pathToFileURL(join(pkg, "node.mjs")).href);

const server = await startServer({ accessTtlMs: 60_000 });
const records = new Map();
let leaseTaken = false; // another instance holds the lease
const storage = {
  get: (k) => records.get(k) ?? null,
  put: (k, v) => void records.set(k, v),
  delete: (k) => records.delete(k),
  acquire: () => (leaseTaken ? null : "lease-1"),
  release: () => true,
};
const session = new AuthSession({
  host: server.url,
  credentials: { username: "demo", password: "demo-password" },
  storage,
  timeoutMs: 1500,
  retries: 1,
});
await session.login();
server.revokeAll(); // the family is revoked at the server
leaseTaken = true; // and another instance is the lease holder (e.g. logging in again)
const before = { ...server.stats };
const started = Date.now();
let outcome;
try {
  await session.json("/api/v1/products");
  outcome = "ok";
} catch (err) {
  outcome = err.code;
}
console.log(
  JSON.stringify({
    outcome,
    ms: Date.now() - started,
    apiRequests: server.stats.api - before.api,
    refreshes: server.stats.refresh - before.refresh,
    logins: server.stats.login - before.login,
  }),
);
session.dispose();
await server.close();
