// The CommonJS smoke test of the installed package: `require("auth-session")` (node.cjs),
// run by scripts/test-runtimes.sh with Node and Bun from the packed tarball. A shorter twin
// of smoke.mjs (which holds the full list of checks), on the same reference server and the
// same counters from GET /__control/stats.
//
//   REFERENCE_SERVER_URL=http://127.0.0.1:PORT node smoke.cjs
//
// Ends with exactly `smoke: N passed, N failed`; exits non-zero on any failure.
"use strict";

const { AuthSession, AuthError } = require("auth-session");

const host = String(process.env.REFERENCE_SERVER_URL || "").replace(/\/+$/, "");
let passed = 0;
let failed = 0;

function assert(condition, message) {
  if (!condition) throw Object.assign(new Error(message), { isCheck: true });
}
function assertEqual(actual, expected, what) {
  assert(Object.is(actual, expected), `${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}
async function rejection(work, what) {
  try {
    await work();
  } catch (err) {
    return err;
  }
  assert(false, `${what}: expected a rejection, but it resolved`);
}
function assertAuthError(err, code, status, what) {
  assert(err instanceof AuthError, `${what}: not an instance of the package's AuthError (${err && err.message})`);
  assert(err instanceof Error, `${what}: not an instance of Error`);
  assertEqual(err.code, code, `${what}: code`);
  assertEqual(err.status, status, `${what}: status`);
}
async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   ${name}`);
  } catch (err) {
    failed++;
    console.log(`FAIL ${name}: ${err.isCheck ? err.message : `${err && err.code} ${err && err.message}`}`);
  }
}
async function control(method, route) {
  const res = await fetch(`${host}/__control/${route}`, {
    method,
    headers: method === "POST" ? { "content-type": "application/json" } : {},
    body: method === "POST" ? "{}" : undefined,
    signal: AbortSignal.timeout(5000),
  });
  const envelope = await res.json();
  if (!res.ok || envelope.success !== true) throw new Error(`control ${route}: HTTP ${res.status}`);
  return envelope.data;
}
async function counted(work) {
  const before = (await control("GET", "stats")).stats;
  const result = await work();
  const after = (await control("GET", "stats")).stats;
  const delta = {};
  for (const key of Object.keys(after)) delta[key] = after[key] - before[key];
  return { result, delta };
}

async function main() {
  assert(host, "REFERENCE_SERVER_URL is not set");
  await check('require("auth-session") resolves to node.cjs and gives the classes', () => {
    assert(require.resolve("auth-session").endsWith(`${require("node:path").sep}node.cjs`), require.resolve("auth-session"));
    assertEqual(typeof AuthSession, "function", "typeof AuthSession");
    assert(AuthError.prototype instanceof Error, "AuthError does not extend Error");
  });

  await control("POST", "reset");
  const session = new AuthSession({ host, retries: 0, timeoutMs: 5000 });

  await check("login with a wrong password rejects with AuthError UNAUTHORIZED (401)", async () => {
    const { result: err, delta } = await counted(() => rejection(() => session.login("demo", "wrong"), "login"));
    assertAuthError(err, "UNAUTHORIZED", 401, "bad password");
    assertEqual(delta.login, 1, "server /auth/login count");
  });

  await check('login, then json("/api/v1/products")', async () => {
    const info = await session.login("demo", "demo-password");
    assertEqual(info.state, "active", "info.state");
    const products = await session.json("/api/v1/products");
    assertEqual(products.length, 4, "products.length");
  });

  await check("server expires the access token: the next call refreshes once", async () => {
    await control("POST", "expire-access");
    const { result: products, delta } = await counted(() => session.json("/api/v1/products"));
    assertEqual(products.length, 4, "products.length");
    assertEqual(delta.refresh, 1, "server /auth/refresh count");
  });

  await check("revoke(), then a call rejects with AuthError NOT_AUTHENTICATED", async () => {
    const { delta } = await counted(() => session.revoke());
    assertEqual(delta.revoke, 1, "server /auth/revoke count");
    const err = await rejection(() => session.json("/api/v1/products"), "json");
    assertAuthError(err, "NOT_AUTHENTICATED", 0, "after revoke");
  });

  session.dispose();
}

main()
  .catch((err) => {
    failed++;
    console.log(`smoke: aborted: ${err && err.message}`);
  })
  .finally(() => {
    console.log(`smoke: ${passed} passed, ${failed} failed`);
    process.exit(failed === 0 ? 0 : 1);
  });
