// The browser example page (www-example/browser/), driven for real in Debian's headless
// Chromium through playwright-core: it loads the built package (pkg/web.mjs, the wasm by
// URL) from a static server, logs in against the reference server, calls the API, lives
// through an automatic refresh (4-second access tokens) and is revoked. At "active" and
// "revoked" it takes a screenshot, decodes it and checks the state badge's colour; it also
// checks that no token ever reaches the page's text or markup.
//
// Needs Debian's chromium at /usr/bin/chromium (scripts/ensure-tools.sh --browser) and a
// built pkg/ (scripts/build-pkg.sh). Run: node --test tests/browser/*.test.mjs
// Screenshots are kept under the OS temp dir; their paths are printed.

import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { PNG } from "pngjs";
import { startServer } from "../server/reference-server.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const PAGE_DIR = path.join(root, "www-example/browser");
const PKG_DIR = path.join(root, "pkg");
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
// As root in a container: no sandbox; nothing that talks to the network on its own.
// playwright-core adds --headless and a fresh temporary --user-data-dir itself.
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-dev-shm-usage",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** The page's state colours (index.html's --state-* custom properties), as RGB. */
const STATE_RGB = {
  anonymous: [0x6b, 0x72, 0x80],
  active: [0x16, 0xa3, 0x4a],
  expired: [0xea, 0x58, 0x0c],
  revoked: [0xdc, 0x26, 0x26],
};

const CONTENT_TYPES = {
  ".html": "text/html; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".wasm": "application/wasm",
  ".json": "application/json",
  ".css": "text/css; charset=utf-8",
  ".ts": "text/plain; charset=utf-8",
  ".cts": "text/plain; charset=utf-8",
};

/** Serves www-example/browser/ at / and pkg/ at /pkg/, GET and HEAD only, no directory walks. */
async function startStaticServer() {
  const server = http.createServer(async (req, res) => {
    try {
      const { pathname } = new URL(req.url, "http://x");
      let base = PAGE_DIR;
      let rel = decodeURIComponent(pathname);
      if (rel === "/pkg" || rel.startsWith("/pkg/")) {
        base = PKG_DIR;
        rel = rel.slice("/pkg".length);
      }
      if (rel === "/" || rel === "") rel = "/index.html";
      const file = path.resolve(base, `.${rel}`);
      const type = CONTENT_TYPES[path.extname(file)];
      if ((req.method !== "GET" && req.method !== "HEAD") || !file.startsWith(base + path.sep) || !type) {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found");
        return;
      }
      const body = await readFile(file);
      res.writeHead(200, { "content-type": type, "content-length": body.length, "cache-control": "no-store" });
      res.end(req.method === "HEAD" ? undefined : body);
    } catch {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, url: `http://127.0.0.1:${server.address().port}` };
}

/** Decodes a PNG and returns the RGB at (x, y), in device pixels. */
function pixel(png, x, y) {
  const i = (png.width * Math.round(y) + Math.round(x)) * 4;
  return [png.data[i], png.data[i + 1], png.data[i + 2]];
}

const close = (a, b, tolerance = 3) => a.every((v, i) => Math.abs(v - b[i]) <= tolerance);
const hex = (rgb) => `#${rgb.map((v) => v.toString(16).padStart(2, "0")).join("")}`;

/**
 * Screenshots the page, saves it, and checks the state badge's colour: the pixel at the
 * badge's vertical centre in its left padding (text never reaches it), and the colour most of
 * the badge is painted in (the centre itself may fall on a glyph of the white label).
 */
async function checkBadge(page, state, file, t) {
  const badge = page.locator("#state-badge");
  assert.equal(await badge.getAttribute("data-state"), state);
  assert.equal((await badge.innerText()).trim().toLowerCase(), state);
  const box = await badge.boundingBox();
  assert.ok(box && box.width > 100 && box.height > 40, `the badge is large: ${JSON.stringify(box)}`);
  const shot = await page.screenshot({ path: file });
  t.diagnostic(`screenshot (${state}): ${file}`);
  const png = PNG.sync.read(shot);
  const want = STATE_RGB[state];

  const cy = box.y + box.height / 2;
  const padding = pixel(png, box.x + 10, cy);
  assert.ok(close(padding, want), `badge padding at the centre row is ${hex(padding)}, want ${hex(want)} (${state})`);

  const counts = new Map();
  let total = 0;
  for (let y = Math.ceil(box.y + 4); y < box.y + box.height - 4; y += 2) {
    for (let x = Math.ceil(box.x + 4); x < box.x + box.width - 4; x += 2) {
      const key = hex(pixel(png, x, y));
      counts.set(key, (counts.get(key) ?? 0) + 1);
      total += 1;
    }
  }
  const [dominant, n] = [...counts].sort((a, b) => b[1] - a[1])[0];
  assert.equal(dominant, hex(want), `the badge is mostly ${dominant}, want ${hex(want)} (${state})`);
  assert.ok(n / total > 0.6, `${Math.round((100 * n) / total)}% of the badge is its state colour`);
  // The centre is the state colour or the white label on it, nothing else.
  const centre = pixel(png, box.x + box.width / 2, cy);
  const onLabel = centre.every((v, i) => v >= want[i] - 3);
  assert.ok(onLabel, `badge centre ${hex(centre)} is neither ${hex(want)} nor its white label`);
}

test("the example page shows a session's life in Chromium, without ever showing a token", { timeout: 90_000 }, async (t) => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/ensure-tools.sh --browser`);
  assert.ok(existsSync(path.join(PKG_DIR, "web.mjs")), "pkg/ is not built: run scripts/build-pkg.sh");

  const api = await startServer({ accessTtlMs: 4000 });
  t.after(() => api.close());
  const site = await startStaticServer();
  t.after(() => new Promise((resolve) => site.server.close(resolve)));
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  t.after(() => browser.close());

  const context = await browser.newContext({ viewport: { width: 1000, height: 860 }, deviceScaleFactor: 1 });
  const page = await context.newPage();

  // Learn every token the server hands out, from the wire, to look for it on the page later.
  const tokens = new Set();
  const reads = [];
  page.on("response", (response) => {
    const { pathname } = new URL(response.url());
    if (response.request().method() !== "POST" || !/^\/auth\/(login|refresh)$/.test(pathname)) return;
    if (response.status() !== 200) return;
    reads.push(
      response.json().then(
        (body) => {
          for (const key of ["access_token", "refresh_token"]) {
            if (typeof body?.data?.[key] === "string") tokens.add(body.data[key]);
          }
        },
        () => {},
      ),
    );
  });
  const problems = [];
  page.on("pageerror", (err) => problems.push(`pageerror: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`console: ${msg.text()} (${msg.location().url})`);
  });

  const dir = await mkdtemp(path.join(os.tmpdir(), "auth-session-example-"));
  const url = `${site.url}/?host=${encodeURIComponent(api.url)}`;
  t.diagnostic(`page: ${url}`);
  await page.goto(url);

  // Logged in on load.
  await page.locator('#state-badge[data-state="active"]').waitFor({ timeout: 15_000 });
  await page.locator('#events li[data-event="tokens"]').first().waitFor();
  assert.match(await page.locator("#countdown").innerText(), /^\d+\.\d s$/);
  assert.match(await page.locator("#client-id").innerText(), /^\d+$/);
  await checkBadge(page, "active", path.join(dir, "1-active.png"), t);

  // Call API: the products come back.
  await page.click("#call");
  await page.locator("#api-status.ok").waitFor({ timeout: 10_000 });
  assert.match(await page.locator("#api-status").innerText(), /OK · 4 items/);
  assert.match(await page.locator("#api-result").innerText(), /Starter plan/);

  // 4-second tokens: the session refreshes by itself well before they run out.
  await page.waitForFunction(() => document.querySelectorAll('#events li[data-event="tokens"]').length >= 2, null, {
    timeout: 15_000,
  });
  assert.ok(api.stats.refresh >= 1, "the refresh reached the server");
  assert.equal(await page.locator('#state-badge').getAttribute("data-state"), "active");

  // Revoke: red badge, a revoked event, no countdown, and the API refuses politely.
  await page.click("#revoke");
  await page.locator('#state-badge[data-state="revoked"]').waitFor({ timeout: 10_000 });
  await page.locator('#events li[data-event="revoked"]').waitFor();
  assert.equal(api.stats.revoke, 1);
  assert.equal(await page.locator("#countdown").innerText(), "no token");
  await page.click("#call");
  await page.locator("#api-status.fail").waitFor({ timeout: 10_000 });
  assert.match(await page.locator("#api-result").innerText(), /^NOT_AUTHENTICATED: /);
  await checkBadge(page, "revoked", path.join(dir, "2-revoked.png"), t);

  // No token anywhere on the page: not in its text, not in its markup.
  await Promise.all(reads);
  assert.ok(tokens.size >= 4, `the wire carried a login and a refresh pair (${tokens.size} tokens seen)`);
  const text = await page.evaluate(() => document.body.innerText);
  const html = await page.content();
  for (const token of tokens) {
    assert.ok(!text.includes(token), "a token is shown on the page");
    assert.ok(!html.includes(token), "a token is in the page's markup");
  }
  assert.deepEqual(problems, [], "no page errors or console errors");
  await writeFile(path.join(dir, "page.txt"), text);
  t.diagnostic(`page text: ${path.join(dir, "page.txt")}`);
});
