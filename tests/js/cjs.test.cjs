// The CommonJS entry (pkg/node.cjs, what `require("auth-session")` resolves to under Node):
// the exports, a login + json smoke test, errors, and the inspect/dispose extras.

const { describe, it, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { inspect } = require("node:util");
const path = require("node:path");
const { pathToFileURL } = require("node:url");

const pkg = require("../../pkg/node.cjs");
const { AuthSession, AuthError } = pkg;

let server;
before(async () => {
  const { startServer } = await import(pathToFileURL(path.join(__dirname, "../server/reference-server.mjs")).href);
  server = await startServer();
});
after(() => server && server.close());

describe("CommonJS entry", () => {
  it("require() gives AuthSession and AuthError, ready without an init call", () => {
    assert.equal(typeof AuthSession, "function");
    assert.equal(typeof AuthError, "function");
    assert.ok(Object.keys(pkg).includes("AuthSession"));
    assert.ok(Object.keys(pkg).includes("AuthError"));
    assert.ok(new AuthError("m", "N", "C", 0, false) instanceof Error);
    // Constructing needs the wasm instantiated already.
    new AuthSession({ host: "https://api.example.com" }).dispose();
  });

  it("login + json smoke test", async () => {
    const session = new AuthSession({ host: server.url, autoRefresh: false });
    const info = await session.login("demo", "demo-password");
    assert.equal(info.state, "active");
    assert.equal(info.clientId, 123456);
    assert.ok(info.accessExpiresAt instanceof Date);
    assert.ok(info.refreshExpiresAt instanceof Date);
    const products = await session.json("/api/v1/products");
    assert.equal(products.length, 4);
    assert.deepEqual(products[0], { id: 1, name: "Starter plan" });
    const res = await session.fetch("/api/v1/public");
    assert.ok(res instanceof Response);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { success: true, data: { public: true } });
    assert.deepEqual(
      server.log.map((e) => [e.path, e.hasAuthorization]),
      [
        ["/auth/login", false],
        ["/api/v1/products", true],
        ["/api/v1/public", true],
      ],
    );
    await session.revoke();
    assert.equal(server.stats.revoke, 1);
    assert.equal(session.info.state, "revoked");
    session.dispose();
  });

  it("errors are the CJS AuthError with code, name, status and retryable", async () => {
    const session = new AuthSession({ host: server.url, autoRefresh: false });
    const err = await session.login("demo", "wrong").catch((e) => e);
    assert.ok(err instanceof AuthError);
    assert.ok(err instanceof Error);
    assert.equal(err.code, "UNAUTHORIZED");
    assert.equal(err.name, "UnauthorizedError");
    assert.equal(err.status, 401);
    assert.equal(err.retryable, false);
    const notAuth = await session.json("/api/v1/products").catch((e) => e);
    assert.ok(notAuth instanceof AuthError);
    assert.equal(notAuth.code, "NOT_AUTHENTICATED");
    assert.equal(notAuth.name, "NotAuthenticatedError");
    let config;
    try {
      new AuthSession({ host: "http://example.com" });
    } catch (e) {
      config = e;
    }
    assert.ok(config instanceof AuthError);
    assert.equal(config.code, "CONFIG_ERROR");
    assert.equal(config.name, "ConfigError");
    session.dispose();
  });

  it("inspect, JSON and Symbol.dispose work on the CJS class too", async () => {
    const session = new AuthSession({ host: server.url, autoRefresh: false });
    await session.login("demo", "demo-password");
    const token = await session.getAccessToken();
    const shown = inspect(session) + JSON.stringify(session);
    assert.match(shown, /active/);
    assert.ok(!shown.includes(token));
    assert.ok(!shown.includes("demo-password"));
    session[Symbol.dispose]();
    session[Symbol.dispose]();
    const err = await session.json("/api/v1/products").catch((e) => e);
    assert.equal(err.code, "DISPOSED");
  });
});
