// Leak check: many refresh cycles in one process, with the wasm memory and the JS heap
// measured after GC at checkpoints. Flat means: the wasm memory does not grow after the
// first checkpoint, and the heap after GC stays within a small band.
//
//   node --expose-gc bench/leak.mjs [cycles=100000] [package dir=pkg]
//
// The transport is a scripted `fetch` (no network): every login and refresh answers with a
// fresh pair, so each cycle runs the whole refresh path — machine, driver, flight promise,
// response parsing, token installation, events — and nothing else.
import path from "node:path";
import { pathToFileURL, fileURLToPath } from "node:url";

const cycles = Number(process.argv[2] ?? 100_000);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const pkg = path.resolve(process.argv[3] ?? process.env.AUTH_SESSION_PKG_DIR ?? path.join(root, "pkg"));
if (typeof globalThis.gc !== "function") {
  console.error("leak: run with node --expose-gc");
  process.exit(2);
}

const { wasmMemoryBytes: wasmBytes } = await import("./lib/wasm-memory.mjs");
const { AuthSession } = await import(pathToFileURL(path.join(pkg, "node.mjs")).href);

let n = 0;
const pair = () => {
  n++;
  const now = Date.now();
  return JSON.stringify({
    success: true,
    data: {
      access_token: `eyJ.access.${n}.${"x".repeat(600)}`,
      refresh_token: `eyJ.refresh.${n}.${"y".repeat(300)}`,
      access_expires_at: new Date(now + 3_600_000).toISOString(),
      refresh_expires_at: new Date(now + 7 * 86_400_000).toISOString(),
      client_id: 123456,
    },
  });
};
const fetch = async () => new Response(pair(), { status: 200, headers: { "content-type": "application/json" } });

const session = new AuthSession({
  host: "https://api.example.com",
  credentials: { username: "demo", password: "demo-password" },
  fetch,
  autoRefresh: false,
});
let events = 0;
session.on("tokens", () => events++);
await session.login();

const checkpoints = [];
const step = Math.max(1, Math.floor(cycles / 10));
const t0 = performance.now();
for (let i = 1; i <= cycles; i++) {
  await session.refresh();
  if (i % step === 0) {
    gc();
    await new Promise((r) => setImmediate(r));
    gc();
    checkpoints.push({ cycles: i, heapUsed: process.memoryUsage().heapUsed, wasm: wasmBytes() });
  }
}
const elapsed = performance.now() - t0;
session.dispose();

const first = checkpoints[0];
const last = checkpoints.at(-1);
const maxHeap = Math.max(...checkpoints.map((c) => c.heapUsed));
const minHeap = Math.min(...checkpoints.map((c) => c.heapUsed));
const wasmFlat = checkpoints.every((c) => c.wasm === first.wasm);
// A leak of even 16 bytes per cycle would add 1.4 MB over 90,000 cycles.
const heapFlat = maxHeap - minHeap < 1_000_000;
console.log("cycles     heapUsed after GC   wasm memory");
for (const c of checkpoints) {
  console.log(`${String(c.cycles).padStart(7)} ${String(c.heapUsed).padStart(19)} ${String(c.wasm).padStart(13)}`);
}
console.log(
  `leak: ${cycles} refresh cycles in ${(elapsed / 1000).toFixed(1)} s (${((elapsed * 1000) / cycles).toFixed(1)} µs each), ` +
    `${events} tokens events; wasm memory ${wasmFlat ? "flat" : "GREW"} at ${last.wasm} B; ` +
    `heap after GC within ${maxHeap - minHeap} B (${heapFlat ? "flat" : "GREW"})`,
);
process.exit(wasmFlat && heapFlat && events === cycles + 1 ? 0 : 1);
