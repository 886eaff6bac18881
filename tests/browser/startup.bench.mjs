// Import + instantiate + `new AuthSession` of the browser entry (pkg/web.mjs) in headless
// Chromium: a fresh browser context per sample (no module or HTTP cache carried over),
// timed inside the page with performance.now() around the dynamic import. Median of N (7).
//
//   node tests/browser/startup.bench.mjs [N]      # after scripts/build-pkg.sh
import http from "node:http";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { chromium } from "playwright-core";

const root = path.resolve(fileURLToPath(import.meta.url), "../../..");
const n = Number(process.argv[2] ?? 7);
const types = { ".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm", ".html": "text/html" };
const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, "http://x");
  if (url.pathname === "/") {
    res.writeHead(200, { "content-type": "text/html" }).end("<!doctype html><title>startup</title>");
    return;
  }
  const file = path.join(root, path.normalize(url.pathname));
  if (!file.startsWith(path.join(root, "pkg") + path.sep)) return res.writeHead(404).end();
  try {
    res.writeHead(200, { "content-type": types[path.extname(file)] ?? "application/octet-stream" }).end(await readFile(file));
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const origin = `http://127.0.0.1:${server.address().port}`;
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const samples = [];
try {
  for (let i = 0; i < n; i++) {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(origin + "/");
    samples.push(
      await page.evaluate(async () => {
        const t0 = performance.now();
        const { AuthSession } = await import("/pkg/web.mjs");
        new AuthSession({ host: "https://api.example.com" });
        return performance.now() - t0;
      }),
    );
    await context.close();
  }
} finally {
  await browser.close();
  server.close();
}
samples.sort((a, b) => a - b);
console.log(`chromium web.mjs import+instantiate+new: median ${samples[samples.length >> 1].toFixed(1)} ms of ${n} (${samples.map((s) => s.toFixed(1)).join(", ")})`);
