// The benchmark's server process: the project's reference server (tests/server), started in
// its own process so that its CPU time never lands on a client's event loop.
//
//   node bench/lib/server-child.mjs        → prints one line `BENCH_SERVER_URL=http://127.0.0.1:PORT`
//
// Two changes, local to this process. The listen backlog is raised from Node's default 511
// to 4096. A refresh storm opens up to 10,000 connections at once (undici and Node's http
// agent both open a socket per concurrent request); with a 511 backlog the kernel drops
// SYNs and the clients wait for the 1 s / 3 s SYN retransmits, which would measure the
// kernel's retry timer instead of the client. And the keep-alive timeout is 65 s instead of
// Node's 5 s (a common load-balancer value): in a 10,000-call storm the replays wait for the
// one refresh, which the server answers after the other 9,999 requests; by then the first
// sockets have idled past 5 s, the server closes them while the client reuses them, and
// calls fail with socket errors: that measures the race with the server's timer, not the
// client. The reference server itself is not edited.
//
// It exits when its parent goes away (IPC disconnect), on SIGTERM/SIGINT,
// so an interrupted benchmark never leaves it behind.
import net from "node:net";
import { fileURLToPath } from "node:url";

const BACKLOG = 4096;
const KEEP_ALIVE_MS = 65_000;
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if ("keepAliveTimeout" in this) {
    this.keepAliveTimeout = KEEP_ALIVE_MS;
    this.headersTimeout = KEEP_ALIVE_MS + 1000;
  }
  if (typeof args[0] === "number" || args[0] === undefined) {
    const [port, host, ...rest] = args;
    const cb = rest.find((a) => typeof a === "function");
    return listen.call(this, { port: port ?? 0, host: typeof host === "string" ? host : undefined, backlog: BACKLOG }, cb);
  }
  if (args[0] && typeof args[0] === "object" && args[0].backlog === undefined) {
    args[0] = { ...args[0], backlog: BACKLOG };
  }
  return listen.apply(this, args);
};

const serverPath = fileURLToPath(new URL("../../tests/server/reference-server.mjs", import.meta.url));
const { startServer } = await import(serverPath);

const server = await startServer({ users: { demo: "demo-password" } });
process.stdout.write(`BENCH_SERVER_URL=${server.url}\n`);

let closing = false;
function shutdown(code = 0) {
  if (closing) return;
  closing = true;
  // close() also ends keep-alive sockets; never wait long for it.
  setTimeout(() => process.exit(code), 1000).unref();
  server.close().then(() => process.exit(code));
}
process.on("SIGTERM", () => shutdown(0));
process.on("SIGINT", () => shutdown(0));
// Spawned with an IPC channel by run.mjs: it closes when the parent is gone, even after a
// SIGKILL. (Started by hand, without one, it runs until a signal.)
if (process.send) process.on("disconnect", () => shutdown(0));
