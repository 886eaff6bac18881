// The one contract smoke test of the installed package, run unchanged by every runtime:
// Node (ESM), Deno and Bun by scripts/test-runtimes.sh, from the packed tarball installed
// into a throwaway consumer project. Plain ESM on web-standard APIs only (fetch,
// AbortController, URL, console, performance), so workerd and browsers can run it too.
//
//   REFERENCE_SERVER_URL=http://127.0.0.1:PORT node smoke.mjs
//   REFERENCE_SERVER_URL=... deno run --allow-net --allow-env --allow-read smoke.mjs
//   REFERENCE_SERVER_URL=... bun smoke.mjs
//
// The server is tests/server/reference-server.mjs (user demo:demo-password): the checks
// read its counters through GET /__control/stats, so "a refresh happened" means the server
// saw exactly one more /auth/refresh, not that the client says so.
//
// Optional environment: SMOKE_EXPECT_ENTRY, the package file (e.g. "web.mjs") that
// `import "auth-session"` must resolve to in this runtime.
//
// Without REFERENCE_SERVER_URL nothing runs: a worker or a page imports `smoke` and calls
// it with the URL it has. Output: one line per check, then exactly
// `smoke: N passed, N failed`; the process exits non-zero on any failure.

import { AuthSession, AuthError } from "auth-session";

const USER = "demo";
const PASSWORD = "demo-password";

/** An environment variable in Node, Deno or Bun; undefined elsewhere (workerd, browsers). */
function env(name) {
  try {
    if (globalThis.Deno?.env) return globalThis.Deno.env.get(name);
    if (globalThis.Bun?.env) return globalThis.Bun.env[name];
    return globalThis.process?.env?.[name];
  } catch {
    // Deno without --allow-env.
    return undefined;
  }
}

function exit(code) {
  if (globalThis.Deno?.exit) globalThis.Deno.exit(code);
  else if (globalThis.process?.exit) globalThis.process.exit(code);
}

class CheckFailed extends Error {}

function assert(condition, message) {
  if (!condition) throw new CheckFailed(message);
}

function assertEqual(actual, expected, what) {
  assert(Object.is(actual, expected), `${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

/** Awaits `work` and returns what it rejected with; fails the check when it resolved. */
async function rejection(work, what) {
  try {
    await work();
  } catch (err) {
    return err;
  }
  throw new CheckFailed(`${what}: expected a rejection, but it resolved`);
}

/** Checks the AuthError contract: the package's class, an Error, the fields' types. */
function assertAuthError(err, code, status, what) {
  assert(err instanceof AuthError, `${what}: not an instance of the package's AuthError (${describe(err)})`);
  assert(err instanceof Error, `${what}: not an instance of Error`);
  assertEqual(err.code, code, `${what}: code`);
  assertEqual(err.status, status, `${what}: status`);
  assertEqual(typeof err.name, "string", `${what}: typeof name`);
  assertEqual(typeof err.retryable, "boolean", `${what}: typeof retryable`);
  assert(typeof err.message === "string" && err.message.length > 0, `${what}: empty message`);
}

function describe(value) {
  if (value instanceof Error) return `${value.constructor?.name} ${value.code ?? ""} ${value.message}`;
  return String(value);
}

/**
 * Runs every check against the reference server at `serverUrl`.
 * @param {string} serverUrl e.g. "http://127.0.0.1:8787"
 * @param {{ log?: (line: string) => void, expectEntry?: string }} [options]
 * @returns {Promise<{ passed: number, failed: number }>}
 */
export async function smoke(serverUrl, { log = (line) => console.log(line), expectEntry } = {}) {
  const host = String(serverUrl).replace(/\/+$/, "");
  let passed = 0;
  let failed = 0;

  async function check(name, fn) {
    try {
      await fn();
      passed++;
      log(`ok   ${name}`);
    } catch (err) {
      failed++;
      // A check's own failure, or an unexpected error: its code and message never hold a
      // token (the package's contract), so printing them is safe.
      log(`FAIL ${name}: ${err instanceof CheckFailed ? err.message : describe(err)}`);
    }
  }

  /** The control API, with a deadline so a wedged server fails the check instead of hanging. */
  async function control(method, route, body) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), 5000);
    try {
      const res = await fetch(`${host}/__control/${route}`, {
        method,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: abort.signal,
      });
      const envelope = await res.json();
      if (!res.ok || envelope.success !== true) throw new CheckFailed(`control ${route}: HTTP ${res.status}`);
      return envelope.data;
    } finally {
      clearTimeout(timer);
    }
  }
  const stats = async () => (await control("GET", "stats")).stats;
  /** Runs `work`, then returns how much each server counter moved. */
  async function counted(work) {
    const before = await stats();
    const result = await work();
    const after = await stats();
    const delta = {};
    for (const key of Object.keys(after)) delta[key] = after[key] - (before[key] ?? 0);
    return { result, delta };
  }

  // --- The package itself -------------------------------------------------------------------
  await check("import: AuthSession and AuthError are classes; AuthError extends Error", () => {
    assertEqual(typeof AuthSession, "function", "typeof AuthSession");
    assertEqual(typeof AuthError, "function", "typeof AuthError");
    assert(AuthError.prototype instanceof Error, "AuthError.prototype is not an Error");
  });

  if (expectEntry) {
    await check(`import "auth-session" resolves to ${expectEntry}`, () => {
      // import.meta.resolve: Node 20.6+, Deno, Bun and browsers.
      const resolved = import.meta.resolve("auth-session");
      assert(resolved.endsWith(`/auth-session/${expectEntry}`), `resolved to ${resolved}`);
    });
  }

  await check("new AuthSession with an invalid host throws AuthError CONFIG_ERROR", async () => {
    const err = await rejection(() => new AuthSession({ host: "not a url" }), "constructor");
    assertAuthError(err, "CONFIG_ERROR", 0, "bad host");
  });

  // The control API resets the counters, faults and sessions of earlier runs.
  await control("POST", "reset", {});

  // autoRefresh stays on (the default): its timer must not keep the process alive or fire
  // an unhandled rejection; the server's access tokens last an hour, far from the margin.
  const session = new AuthSession({ host, retries: 0, timeoutMs: 5000 });
  const events = { tokens: 0, revoked: 0, error: 0 };
  for (const name of Object.keys(events)) session.on(name, () => events[name]++);

  // --- Errors from the server ---------------------------------------------------------------
  await check("login with a wrong password rejects with AuthError UNAUTHORIZED (401)", async () => {
    const { result: err, delta } = await counted(() => rejection(() => session.login(USER, "wrong-password"), "login"));
    assertAuthError(err, "UNAUTHORIZED", 401, "bad password");
    assertEqual(err.retryable, false, "retryable");
    assert(!err.message.includes("wrong-password"), "the message holds the password");
    assertEqual(delta.login, 1, "server /auth/login count");
    assertEqual(session.info.state, "anonymous", "state after a failed login");
  });

  // --- Login and an API call ----------------------------------------------------------------
  await check("login resolves with an active SessionInfo", async () => {
    const { result: info, delta } = await counted(() => session.login(USER, PASSWORD));
    assertEqual(info.state, "active", "info.state");
    assertEqual(typeof info.clientId, "number", "typeof info.clientId");
    assert(info.accessExpiresAt instanceof Date && info.accessExpiresAt > new Date(), "accessExpiresAt is a future Date");
    assert(info.refreshExpiresAt instanceof Date, "refreshExpiresAt is a Date");
    assertEqual(delta.login, 1, "server /auth/login count");
    assertEqual(events.tokens, 1, "tokens events");
    assertEqual(session.info.state, "active", "session.info.state");
  });

  await check('json("/api/v1/products") unwraps the envelope', async () => {
    const { result: products, delta } = await counted(() => session.json("/api/v1/products"));
    assert(Array.isArray(products), "not an array");
    assertEqual(products.length, 4, "products.length");
    assertEqual(typeof products[0].name, "string", "typeof products[0].name");
    assertEqual(delta.api, 1, "server /api count");
    assertEqual(delta.refresh, 0, "server /auth/refresh count");
  });

  await check("fetch returns the Response as is (404 is not thrown)", async () => {
    const res = await session.fetch("/api/v1/missing");
    assertEqual(res.status, 404, "status");
    assertEqual((await res.json()).error.code, "NOT_FOUND", "error code");
  });

  await check("fetch and json take a URL and a Request as input, not only a string", async () => {
    const url = new URL(`${host}/api/v1/products`);
    assertEqual((await session.fetch(url)).status, 200, "fetch(URL) status");
    assertEqual((await session.json(url)).length, 4, "json(URL) length");
    assertEqual((await session.fetch(new Request(url))).status, 200, "fetch(Request) status");
  });

  await check("no token in info or JSON.stringify(session)", async () => {
    const token = await session.getAccessToken();
    assert(typeof token === "string" && token.length > 0, "getAccessToken gave no token");
    assert(!JSON.stringify(session).includes(token), "JSON.stringify(session) holds the token");
    assert(!JSON.stringify(session.info).includes(token), "info holds the token");
  });

  // --- Refresh ------------------------------------------------------------------------------
  await check("server expires the access token: the next call refreshes once and replays", async () => {
    await control("POST", "expire-access");
    const tokensBefore = events.tokens;
    const { result: products, delta } = await counted(() => session.json("/api/v1/products"));
    assertEqual(products.length, 4, "products.length");
    assertEqual(delta.refresh, 1, "server /auth/refresh count");
    assertEqual(delta.api, 2, "server /api count (the 401, then the replay)");
    assertEqual(events.tokens, tokensBefore + 1, "tokens events");
  });

  await check("refresh(): concurrent callers share one /auth/refresh", async () => {
    const { result: infos, delta } = await counted(() =>
      Promise.all([session.refresh(), session.refresh(), session.getAccessToken()]),
    );
    assertEqual(infos[0].state, "active", "info.state");
    assertEqual(delta.refresh, 1, "server /auth/refresh count");
    assertEqual(delta.spentReuse, 0, "server spent-token reuse count");
  });

  await check("an aborted signal rejects with AuthError ABORTED", async () => {
    const abort = new AbortController();
    abort.abort();
    const err = await rejection(() => session.json("/api/v1/products", { signal: abort.signal }), "json");
    assertAuthError(err, "ABORTED", 0, "aborted");
  });

  await check("another origin never gets the token: ORIGIN_NOT_ALLOWED", async () => {
    const err = await rejection(() => session.fetch("https://other.invalid/api"), "fetch");
    assertAuthError(err, "ORIGIN_NOT_ALLOWED", 0, "other origin");
  });

  // --- Revoke -------------------------------------------------------------------------------
  await check("revoke() revokes on the server and ends the session", async () => {
    const { delta } = await counted(() => session.revoke());
    assertEqual(delta.revoke, 1, "server /auth/revoke count");
    assertEqual(session.info.state, "revoked", "info.state");
    assertEqual(session.info.clientId, null, "info.clientId");
    assertEqual(events.revoked, 1, "revoked events");
  });

  await check("after revoke() a call rejects with AuthError NOT_AUTHENTICATED, sending nothing", async () => {
    const { result: err, delta } = await counted(() => rejection(() => session.json("/api/v1/products"), "json"));
    assertAuthError(err, "NOT_AUTHENTICATED", 0, "after revoke");
    assertEqual(err.name, "NotAuthenticatedError", "name");
    assertEqual(delta.requests, 0, "server request count");
  });

  await check("dispose() is idempotent; then calls reject with DISPOSED", async () => {
    session.dispose();
    session[Symbol.dispose]();
    const err = await rejection(() => session.login(USER, PASSWORD), "login");
    assertAuthError(err, "DISPOSED", 0, "after dispose");
  });

  await check("no error events", () => assertEqual(events.error, 0, "error events"));

  // --- OAuth 2.0 mode ------------------------------------------------------------------------
  const oauthStats = async () => (await control("GET", "oauth")).stats;

  await check("OAuth 2.0: discovery, client_credentials with client_secret_basic, json() as is, one token for 20 calls", async () => {
    const before = await oauthStats();
    const oauth = new AuthSession({
      host,
      oauth: { issuer: host, clientId: "demo-client", clientSecret: "demo-client-secret", scope: "read" },
    });
    try {
      const bodies = await Promise.all(Array.from({ length: 20 }, () => oauth.json("/api/v1/products")));
      // The reference API answers with its envelope: OAuth 2.0 mode returns the JSON whole.
      assert(bodies.every((b) => b.success === true && Array.isArray(b.data)), "json() did not return the whole body");
      const after = await oauthStats();
      assertEqual(after.metadata - before.metadata, 1, "metadata requests");
      assertEqual(after.clientCredentials - before.clientCredentials, 1, "client_credentials grants");
      assertEqual(oauth.info.refreshExpiresAt, null, "info.refreshExpiresAt");
      await oauth.revoke();
      assertEqual((await oauthStats()).revoked - after.revoked, 1, "tokens revoked at the server");
    } finally {
      oauth.dispose();
    }
  });

  await check("OAuth 2.0: private_key_jwt assertions signed by this runtime's WebCrypto verify (ES256, RS256)", async () => {
    const subtle = globalThis.crypto.subtle;
    for (const [alg, gen, verifyParams] of [
      ["ES256", { name: "ECDSA", namedCurve: "P-256" }, { name: "ECDSA", hash: "SHA-256" }],
      ["RS256", { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" }, { name: "RSASSA-PKCS1-v1_5" }],
    ]) {
      const pair = await subtle.generateKey(gen, true, ["sign", "verify"]);
      const jwk = { ...(await subtle.exportKey("jwk", pair.privateKey)), kid: `k-${alg}` };
      const seen = [];
      const tokenEndpoint = "https://as.invalid/token";
      const oauth = new AuthSession({
        host,
        oauth: { tokenEndpoint, clientId: "jwt-client", privateKey: jwk },
        // The authorization server, played here: it checks the assertion as a server would.
        async fetch(url, init) {
          if (url !== tokenEndpoint) return fetch(url, init);
          const form = new URLSearchParams(init.body);
          const [h, c, sig] = form.get("client_assertion").split(".");
          const bytes = (t) => Uint8Array.from(atob(t.replace(/-/g, "+").replace(/_/g, "/")), (ch) => ch.charCodeAt(0));
          const valid = await subtle.verify(verifyParams, pair.publicKey, bytes(sig), new TextEncoder().encode(`${h}.${c}`));
          seen.push({ valid, header: JSON.parse(new TextDecoder().decode(bytes(h))), claims: JSON.parse(new TextDecoder().decode(bytes(c))), form });
          return new Response(JSON.stringify({ access_token: `at.${alg}.${seen.length}`, token_type: "Bearer", expires_in: 60 }), {
            headers: { "content-type": "application/json" },
          });
        },
      });
      try {
        await oauth.getAccessToken();
        await oauth.refresh();
      } finally {
        oauth.dispose();
      }
      assertEqual(seen.length, 2, `${alg}: token requests`);
      for (const { valid, header, claims, form } of seen) {
        assert(valid, `${alg}: the signature does not verify`);
        assertEqual(header.alg, alg, `${alg}: header.alg`);
        assertEqual(header.kid, `k-${alg}`, `${alg}: header.kid`);
        assertEqual(claims.iss, "jwt-client", `${alg}: iss`);
        assertEqual(claims.sub, "jwt-client", `${alg}: sub`);
        assertEqual(claims.aud, tokenEndpoint, `${alg}: aud`);
        assertEqual(claims.exp - claims.iat, 60, `${alg}: lifetime`);
        assertEqual(form.get("client_assertion_type"), "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", `${alg}: assertion type`);
        assertEqual(form.get("grant_type"), "client_credentials", `${alg}: grant_type`);
      }
      assert(seen[0].claims.jti !== seen[1].claims.jti, `${alg}: two assertions share a jti`);
    }
  });

  log(`smoke: ${passed} passed, ${failed} failed`);
  return { passed, failed };
}

const serverUrl = env("REFERENCE_SERVER_URL");
if (serverUrl) {
  let code = 1;
  try {
    const { failed } = await smoke(serverUrl, { expectEntry: env("SMOKE_EXPECT_ENTRY") });
    code = failed === 0 ? 0 : 1;
  } catch (err) {
    console.log(`smoke: aborted: ${describe(err)}`);
    console.log("smoke: 0 passed, 1 failed");
  }
  exit(code);
}
