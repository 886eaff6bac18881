// The package's OAuth 2.0 mode in headless Chromium against a real authorization server
// (oidc-provider, tests/oauth/provider.mjs): a page loads pkg/web.mjs (the wasm by URL) and
//   - seeds a public client's session with a refresh token the test obtained through the
//     authorization-code flow, calls the protected API across several 2-second access-token
//     lifetimes (every refresh rotates; none may be reused), then revokes the grant;
//   - authenticates a confidential client with private_key_jwt: the assertion is signed by
//     Chromium's WebCrypto with an ES256 private JWK, and oidc-provider verifies it.
// The page returns counts and codes only: no token crosses back.
//
// Needs Debian's chromium at /usr/bin/chromium and a built pkg/. Run:
//   node --test tests/browser/oauth-page.test.mjs

import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { obtainRefreshToken, startProvider } from "../oauth/provider.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const PKG_DIR = path.join(root, "pkg");
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking"];
const TYPES = { ".html": "text/html; charset=utf-8", ".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm" };

/** Serves an empty page at / and pkg/ at /pkg/. */
async function startStaticServer() {
  const server = http.createServer(async (req, res) => {
    const { pathname } = new URL(req.url, "http://x");
    if (pathname === "/") return res.writeHead(200, { "content-type": TYPES[".html"] }).end("<!doctype html><title>oauth</title>");
    const file = path.resolve(PKG_DIR, `.${decodeURIComponent(pathname.slice("/pkg".length))}`);
    const type = TYPES[path.extname(file)];
    if (!pathname.startsWith("/pkg/") || !file.startsWith(PKG_DIR + path.sep) || !type) return res.writeHead(404).end();
    try {
      const body = await readFile(file);
      res.writeHead(200, { "content-type": type, "cache-control": "no-store" }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, url: `http://127.0.0.1:${server.address().port}` };
}

test("OAuth 2.0 mode in Chromium: a seeded rotating refresh token and a private_key_jwt client", { timeout: 90_000 }, async (t) => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/ensure-tools.sh --browser`);
  assert.ok(existsSync(path.join(PKG_DIR, "web.mjs")), "pkg/ is not built: run scripts/build-pkg.sh");
  const as = await startProvider({ accessTokenTtl: 2 });
  t.after(() => as.close());
  const site = await startStaticServer();
  t.after(() => new Promise((resolve) => site.server.close(resolve)));
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  t.after(() => browser.close());
  const page = await browser.newPage();
  const problems = [];
  page.on("pageerror", (err) => problems.push(`pageerror: ${err.message}`));
  await page.goto(site.url);

  const { refresh_token: seed } = await obtainRefreshToken(as, { client: "public" });
  as.resetStats();
  const rotating = await page.evaluate(
    async ({ issuer, tokenEndpoint, revocationEndpoint, api, clientId, seed }) => {
      const { AuthSession } = await import("/pkg/web.mjs");
      const session = new AuthSession({
        host: api,
        oauth: { tokenEndpoint, revocationEndpoint, clientId, refreshToken: seed },
      });
      let ok = 0;
      const failures = [];
      const end = Date.now() + 7_000;
      while (Date.now() < end) {
        try {
          const body = await session.json("/api/read");
          if (body.ok === true && body.sub === "alice") ok++;
        } catch (e) {
          failures.push(e.code);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      const before = session.info.state;
      await session.revoke();
      let after;
      try {
        await session.json("/api/read");
      } catch (e) {
        after = e.code;
      }
      return { ok, failures, before, state: session.info.state, after, issuer };
    },
    {
      issuer: as.issuer,
      tokenEndpoint: as.tokenEndpoint,
      revocationEndpoint: as.revocationEndpoint,
      api: as.api.url,
      clientId: as.clients.public.client_id,
      seed,
    },
  );
  t.diagnostic(`rotating: ${JSON.stringify({ ...rotating, refreshes: as.stats.refreshes })}`);
  assert.deepEqual(rotating.failures, [], "no failed call");
  assert.ok(rotating.ok >= 20, `calls answered: ${rotating.ok}`);
  assert.ok(as.stats.refreshes >= 3, `refreshes across the lifetimes: ${as.stats.refreshes}`);
  assert.equal(as.stats.reuseDetected, 0, "no refresh token reused");
  assert.equal(rotating.before, "active");
  assert.equal(rotating.state, "revoked");
  assert.equal(rotating.after, "NOT_AUTHENTICATED");
  assert.equal(as.stats.revocations, 1, "one revocation");
  assert.equal(as.stats.tokenErrors.invalid_grant ?? 0, 0, "no invalid_grant");
  assert.ok(as.stats.grantsRevoked >= 1, "the grant ended at the server");

  const jwt = await page.evaluate(
    async ({ tokenEndpoint, api, clientId, privateKey }) => {
      const { AuthSession } = await import("/pkg/web.mjs");
      const session = new AuthSession({ host: api, oauth: { tokenEndpoint, clientId, privateKey } });
      const first = await session.json("/api/read");
      await session.refresh();
      const second = await session.json("/api/read");
      return { first: first.client_id, second: second.client_id, refreshExpiresAt: session.info.refreshExpiresAt };
    },
    { tokenEndpoint: as.tokenEndpoint, api: as.api.url, clientId: as.clients.jwt.client_id, privateKey: as.clients.jwt.keys.ES256 },
  );
  assert.deepEqual(jwt, { first: as.clients.jwt.client_id, second: as.clients.jwt.client_id, refreshExpiresAt: null });
  assert.equal(as.stats.tokenRequests.client_credentials, 2, "two client_credentials grants, each with a fresh assertion");
  assert.deepEqual(problems, []);
});
