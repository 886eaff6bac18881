// The package's OAuth 2.0 mode against the reference server's OAuth mode
// (tests/server/reference-server.mjs), for what a real authorization server will not do on
// demand: a refresh answered without a new refresh token, a token response lost after the
// server rotated, reuse detection between two sessions, raw Basic decoding, a skewed Date,
// and the error table with exact OAuth error codes. Contract: /work/notes/oauth-spec.md.
//
// Run: node --test tests/oauth/reference.test.mjs (a few seconds; uses the built package in pkg/).

import { describe, it, before, after, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { AuthSession, AuthError, errorTexts, assertNoSecrets, recordEvents } from "../js/helpers.mjs";
import { startServer } from "../server/reference-server.mjs";

const SPECIAL_SECRET = "s3cr3t +%/:=&?~";
const CLIENTS = {
  "demo-client": { secret: "demo-client-secret", grantTypes: ["refresh_token", "client_credentials", "password"], scope: "read write" },
  "public-client": { secret: null, grantTypes: ["refresh_token", "password"], scope: "read write" },
  "raw-client": { secret: SPECIAL_SECRET, grantTypes: ["client_credentials"], scope: "read" },
};
const DEMO = { clientId: "demo-client", clientSecret: "demo-client-secret" };
const USER = { username: "demo", password: "demo-password" };
const PRODUCTS_PATH = "/api/v1/products";

/** A password grant by plain fetch: the refresh token a session is then seeded with. */
async function seed(server) {
  const res = await fetch(server.oauth.tokenEndpoint, {
    method: "POST",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      authorization: `Basic ${Buffer.from(`${DEMO.clientId}:${DEMO.clientSecret}`).toString("base64")}`,
    },
    body: new URLSearchParams({ grant_type: "password", ...USER }),
  });
  assert.equal(res.status, 200);
  return res.json();
}

function checkError(err, { code, status, retryable = false, message }) {
  assert.ok(err instanceof AuthError, `an AuthError (got ${err?.name}: ${err?.message})`);
  assert.equal(err.code, code, `code (message: ${err.message})`);
  if (status !== undefined) assert.equal(err.status, status, `status of ${code}`);
  assert.equal(err.retryable, retryable, `retryable of ${code}`);
  if (message) assert.match(err.message, message);
  return err;
}

async function rejection(work) {
  try {
    await (typeof work === "function" ? work() : work);
  } catch (e) {
    return e;
  }
  assert.fail("expected a rejection, but it succeeded");
}

describe("OAuth 2.0 mode against the reference server", { timeout: 50_000 }, () => {
  let server;
  let live = [];

  /** A session on the reference server; `oauth` adds to (or replaces) the demo client's options. */
  function session(oauth = {}, extra = {}, client = DEMO) {
    const s = new AuthSession({
      host: server.url,
      oauth: {
        tokenEndpoint: server.oauth.tokenEndpoint,
        revocationEndpoint: server.oauth.revocationEndpoint,
        ...client,
        ...oauth,
      },
      autoRefresh: false,
      timeoutMs: 3000,
      retries: 1,
      ...extra,
    });
    live.push(s);
    return s;
  }

  before(async () => {
    server = await startServer({ oauthClients: CLIENTS });
  });
  after(() => server?.close());
  beforeEach(() => server.reset({ config: true }));
  afterEach(() => {
    for (const s of live) s.dispose();
    live = [];
  });

  it("json() resolves to the API's JSON as it is (the server's envelope is not taken off)", async () => {
    const { refresh_token } = await seed(server);
    const s = session({ refreshToken: refresh_token });
    const body = await s.json(PRODUCTS_PATH);
    assert.equal(body.success, true);
    assert.equal(body.data.length, 4);
    assert.equal(server.oauth.stats.refresh, 1);
  });

  it("a refresh answered without a new refresh token keeps the old one", async () => {
    const { refresh_token } = await seed(server);
    const s = session({ refreshToken: refresh_token });
    server.fault({ path: "/oauth/token" }, { omitRefreshToken: true });
    await s.refresh(); // answered without refresh_token: the seed stays valid and is kept
    assert.equal(server.oauth.stats.notRotated, 1);
    assert.ok(s.info.state === "active");
    await s.refresh(); // the seed again: now rotated
    await s.refresh(); // the rotated one
    assert.equal((await s.json(PRODUCTS_PATH)).success, true);
    assert.equal(server.oauth.stats.refresh, 3);
    assert.equal(server.oauth.stats.reuse, 0);
    assert.deepEqual(server.oauth.errors, {});
  });

  it("a token response lost after the rotation: with the server's reuse grace, the retry is honoured", async () => {
    server.oauth.settings.reuseGraceMs = 5000;
    const { refresh_token } = await seed(server);
    const s = session({ refreshToken: refresh_token }, { retries: 2 });
    const events = recordEvents(s);
    server.fault({ path: "/oauth/token" }, { dropResponse: true });
    // The lost answer is a network error: retried within refresh(), or by the next refresh().
    const err = await s.refresh().then(() => null, (e) => e);
    if (err !== null) {
      checkError(err, { code: "NETWORK_ERROR", retryable: true });
      await s.refresh();
    }
    assert.equal(server.oauth.stats.droppedResponses, 1);
    assert.equal(server.oauth.stats.graceReuse, 1, "the retry sent the same refresh token once more");
    assert.equal(server.oauth.stats.reuse, 0);
    await s.refresh();
    assert.equal((await s.json(PRODUCTS_PATH)).success, true);
    assert.equal(server.oauth.stats.refresh, 3);
    assert.equal(server.oauth.stats.reuse, 0);
    assert.equal(events.expired.length, 0);
  });

  it("a token response lost after the rotation, no grace: the session ends after one reuse, not more", async () => {
    const { refresh_token } = await seed(server);
    const s = session({ refreshToken: refresh_token }, { retries: 2 });
    const events = recordEvents(s);
    await s.refresh(); // the seed exchanged: the session holds a rotated refresh token
    server.fault({ path: "/oauth/token" }, { dropResponse: true });
    // A retry inside refresh() (or the next refresh) presents the spent token: the server
    // revokes the grant, and the session is over.
    let err = await rejection(s.refresh());
    if (err?.code === "NETWORK_ERROR") err = await rejection(s.refresh());
    checkError(err, { code: "SESSION_EXPIRED", status: 400, message: /^invalid_grant: / });
    assert.equal(server.oauth.stats.droppedResponses, 1);
    assert.equal(server.oauth.stats.reuse, 1);
    assert.equal(s.info.state, "expired");
    assert.equal(events.expired.length, 1);
    checkError(await rejection(s.json(PRODUCTS_PATH)), { code: "SESSION_EXPIRED" });
    assert.equal(server.oauth.stats.reuse, 1, "the spent token is not sent again");
    assert.equal(server.oauth.stats.refresh, 2);
  });

  it("reuse detection: a second session with the same (spent) seed gets SESSION_EXPIRED and the grant is revoked", async () => {
    const { refresh_token } = await seed(server);
    const first = session({ refreshToken: refresh_token });
    assert.equal((await first.json(PRODUCTS_PATH)).success, true);
    const firstEvents = recordEvents(first);
    const second = session({ refreshToken: refresh_token });
    const err = await rejection(second.json(PRODUCTS_PATH));
    // (The second session's state and events after a rejected seed: session.test.mjs.)
    checkError(err, { code: "SESSION_EXPIRED", status: 400, message: /invalid_grant: Refresh token already used/ });
    assertNoSecrets(errorTexts(err), [refresh_token, DEMO.clientSecret], "the error");
    assert.equal(server.oauth.stats.reuse, 1);
    // The grant is gone: the first session's rotated refresh token is refused too, and its
    // access token with it (the API's 401 leads to a refresh, which ends that session).
    const firstErr = await rejection(first.json(PRODUCTS_PATH));
    checkError(firstErr, { code: "SESSION_EXPIRED", status: 400, message: /^invalid_grant: Refresh token revoked/ });
    assert.equal(first.info.state, "expired");
    assert.equal(firstEvents.expired.length, 1);
    assert.equal(server.oauth.stats.refresh, 1);
    assert.equal(server.oauth.stats.reuse, 1);
  });

  it('basicEncoding "plain" for a server that decodes Basic raw; "form" for one that follows RFC 6749', async () => {
    const raw = { clientId: "raw-client", clientSecret: SPECIAL_SECRET };
    const cc = { grant: "client_credentials" };
    // RFC 6749 decoding (the default): form works, plain is refused.
    await session(cc, {}, raw).login();
    const plainRefused = await rejection(session({ ...cc, basicEncoding: "plain" }, {}, raw).login());
    checkError(plainRefused, { code: "UNAUTHORIZED", status: 401, message: /^invalid_client/ });
    assertNoSecrets(errorTexts(plainRefused), [SPECIAL_SECRET], "the error");
    // Raw decoding: plain works, form is refused.
    server.oauth.settings.basicDecoding = "raw";
    await session({ ...cc, basicEncoding: "plain" }, {}, raw).login();
    checkError(await rejection(session({ ...cc, basicEncoding: "form" }, {}, raw).login()), { code: "UNAUTHORIZED", status: 401 });
    assert.equal(server.oauth.stats.clientCredentials, 2);
    assert.deepEqual(server.oauth.errors, { invalid_client: 2 });
  });

  it('grant "password" with login(username, password) instead of `credentials`', async () => {
    const s = session({ grant: "password" });
    await s.login(USER.username, USER.password);
    assert.equal(server.oauth.stats.password, 1);
    assert.equal(server.oauth.lastTokenRequest.grant_type, "password");
    assert.equal((await s.json(PRODUCTS_PATH)).success, true);
  });

  it("scope, resource (repeated) and audience go with the grant, not with a refresh", async () => {
    const s = session({
      grant: "password",
      scope: "read",
      resource: ["https://api.example/", "https://other.example/"],
      audience: "orders",
    }, { credentials: USER });
    await s.login();
    assert.deepEqual(server.oauth.lastTokenRequest, {
      grant_type: "password",
      client_id: "demo-client",
      auth_method: "client_secret_basic",
      scope: "read",
      resource: ["https://api.example/", "https://other.example/"],
      audience: ["orders"],
    });
    await s.refresh();
    const refresh = server.oauth.lastTokenRequest;
    assert.equal(refresh.grant_type, "refresh_token");
    assert.equal(refresh.scope, null);
    assert.deepEqual(refresh.resource, []);
    assert.deepEqual(refresh.audience, []);
  });

  for (const skew of [-3_600_000, 3_600_000]) {
    it(`expires_in is anchored to the response's Date header (a server clock an hour ${skew < 0 ? "behind" : "ahead"})`, async () => {
      server.config.dateSkewMs = skew;
      server.config.accessTtlMs = 3000;
      const s = session({ grant: "password" }, { credentials: USER, autoRefresh: true, refreshMarginSeconds: 1 });
      const events = recordEvents(s);
      await s.login();
      // Used, not taken for long expired (behind) ...
      assert.equal((await s.json(PRODUCTS_PATH)).success, true);
      assert.equal(server.oauth.stats.refresh, 0, "not refreshed at once");
      // ... and refreshed on time, not an hour late (ahead).
      const deadline = Date.now() + 4500;
      while (server.oauth.stats.refresh === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.equal(server.oauth.stats.refresh, 1, "the timer refreshed within the token's life");
      assert.equal(server.oauth.stats.password, 1);
      assert.equal(events.expired.length, 0);
      assert.equal((await s.json(PRODUCTS_PATH)).success, true);
    });
  }

  it("revoke(): the session and its stored record are cleared whatever the revocation endpoint answers", async () => {
    const map = new Map();
    const storage = { get: (k) => map.get(k) ?? null, put: (k, v) => void map.set(k, v), delete: (k) => void map.delete(k) };
    const s = session({ grant: "password" }, { credentials: USER, storage, retries: 0 });
    const events = recordEvents(s);
    await s.login();
    assert.equal(map.size, 1);
    server.fault({ path: "/oauth/revoke" }, { status: 503, body: { error: "temporarily_unavailable" } });
    await s.revoke().catch((err) => assert.ok(err instanceof AuthError));
    assert.equal(s.info.state, "revoked");
    assert.equal(map.size, 0, "the record was deleted");
    assert.equal(events.revoked.length, 1);
    assert.equal(server.stats.faults, 1, "the revocation request was sent");
  });

  describe("a hostile or broken authorization server", () => {
    /** The demo client's grant, its token endpoint faulted with `action` (every request). */
    async function grantUnder(path, action, oauth = {}) {
      server.fault({ path }, action, Infinity);
      const s = session(oauth, { timeoutMs: 1000, retries: 1 });
      const started = Date.now();
      const err = await s.json(PRODUCTS_PATH).then(
        () => assert.fail("resolved"),
        (e) => e,
      );
      return { err, ms: Date.now() - started, s };
    }

    it("a token answer larger than an auth answer may be is RESPONSE_TOO_LARGE, read no further", async () => {
      const { err } = await grantUnder("/oauth/token", { hugeBody: 5 * 1024 * 1024 });
      assert.equal(err.code, "RESPONSE_TOO_LARGE", err.message);
    });

    it("metadata larger than an auth answer may be is RESPONSE_TOO_LARGE too", async () => {
      const { err } = await grantUnder("/.well-known/oauth-authorization-server", { hugeBody: 5 * 1024 * 1024 }, {
        issuer: server.url,
        tokenEndpoint: undefined,
        revocationEndpoint: undefined,
      });
      assert.equal(err.code, "RESPONSE_TOO_LARGE", err.message);
    });

    it("a token endpoint that never answers: TIMEOUT after timeoutMs per attempt, nothing pending", async () => {
      const { err, ms } = await grantUnder("/oauth/token", { hang: true });
      assert.equal(err.code, "TIMEOUT", err.message);
      // Two attempts of 1 s and a backoff of at most 0.2 s, plus scheduling slack.
      assert.ok(ms < 4000, `settled after ${ms} ms`);
    });

    it("a token endpoint that redirects is REDIRECT_BLOCKED: the client's secret never follows", async () => {
      const { err } = await grantUnder("/oauth/token", { redirect: "https://attacker.invalid/token", status: 307 });
      assert.equal(err.code, "REDIRECT_BLOCKED", err.message);
      assert.equal(err.status, 307);
    });

    it("an error_description with the client secret, control and bidi characters comes back scrubbed", async () => {
      const secret = DEMO.clientSecret;
      server.fault({ path: "/oauth/token" }, {
        status: 401,
        body: { error: "invalid_client", error_description: `bad ${secret}\u202e\u0007 ${"x".repeat(2000)}` },
      });
      const s = session({}, { retries: 0 });
      const err = await s.json(PRODUCTS_PATH).then(() => assert.fail("resolved"), (e) => e);
      assert.equal(err.code, "UNAUTHORIZED");
      for (const text of errorTexts(err)) {
        assert.ok(!text.includes(secret), text.slice(0, 200));
        assert.ok(!/[\u202e\u0007]/.test(text), "control or bidi characters kept");
      }
      // Cut at 300 characters of the server's text, and an ellipsis.
      assert.ok(err.message.length <= 301 && err.message.endsWith("…"), `message of ${err.message.length} characters`);
    });
  });

  describe("the error table", () => {
    const cases = [
      {
        what: "invalid_grant on the grant (wrong password) → UNAUTHORIZED",
        make: () => session({ grant: "password" }, { credentials: { username: "demo", password: "wrong-password" } }),
        expect: { code: "UNAUTHORIZED", status: 400, message: /^invalid_grant/ },
        secrets: ["wrong-password"],
      },
      {
        what: "invalid_client → UNAUTHORIZED",
        make: () => session({ clientSecret: "not-the-secret", grant: "client_credentials" }),
        expect: { code: "UNAUTHORIZED", status: 401, message: /^invalid_client/ },
        secrets: ["not-the-secret"],
      },
      {
        what: "unauthorized_client → FORBIDDEN",
        make: () => session({ grant: "client_credentials" }, {}, { clientId: "public-client" }),
        expect: { code: "FORBIDDEN", status: 400, message: /^unauthorized_client/ },
      },
      {
        what: "invalid_scope → FORBIDDEN",
        make: () => session({ grant: "client_credentials", scope: "read admin" }),
        expect: { code: "FORBIDDEN", status: 400, message: /^invalid_scope/ },
      },
      {
        what: "invalid_request → VALIDATION_FAILURE",
        fault: { status: 400, body: { error: "invalid_request", error_description: "bad" } },
        expect: { code: "VALIDATION_FAILURE", status: 400, message: /^invalid_request/ },
      },
      {
        what: "an unknown error code → VALIDATION_FAILURE",
        fault: { status: 400, body: { error: "something_else", error_description: "odd" } },
        expect: { code: "VALIDATION_FAILURE", status: 400 },
      },
      {
        what: "temporarily_unavailable (503) → SERVER_ERROR, retryable",
        fault: { status: 503, headers: { "retry-after": "1" }, body: { error: "temporarily_unavailable", error_description: "maintenance" } },
        expect: { code: "SERVER_ERROR", status: 503, retryable: true },
      },
      {
        what: "slow_down (429) → RATE_LIMITED, retryable",
        fault: { status: 429, headers: { "retry-after": "1" }, body: { error: "slow_down", error_description: "easy" } },
        expect: { code: "RATE_LIMITED", status: 429, retryable: true },
      },
    ];
    for (const c of cases) {
      it(c.what, async () => {
        if (c.fault) server.fault({ path: "/oauth/token" }, c.fault, 1);
        const s = c.make ? c.make() : session({ grant: "client_credentials" }, { retries: 0 });
        const err = await rejection(s.login());
        checkError(err, c.expect);
        assertNoSecrets(errorTexts(err), [DEMO.clientSecret, ...(c.secrets ?? [])], "the error");
        // JSON.stringify(error) gives the code too (a logged error says what happened).
        assert.equal(JSON.parse(JSON.stringify(err)).code, c.expect.code);
      });
    }

    it("invalid_grant on a refresh with password credentials: the grant runs again, quietly", async () => {
      const s = session({ grant: "password" }, { credentials: USER });
      const events = recordEvents(s);
      await s.login();
      server.revokeAll();
      await s.refresh();
      assert.equal(server.oauth.stats.password, 2);
      assert.deepEqual(server.oauth.errors, { invalid_grant: 1 });
      assert.equal(events.expired.length, 0);
      assert.equal(s.info.state, "active");
      assert.equal((await s.json(PRODUCTS_PATH)).success, true);
    });

    it("a token_type other than Bearer is INVALID_RESPONSE; bearer in any case is accepted", async () => {
      server.fault({ path: "/oauth/token" }, { status: 200, body: { access_token: "abc", token_type: "mac", expires_in: 60 } }, 1);
      checkError(await rejection(session({ grant: "client_credentials" }).login()), { code: "INVALID_RESPONSE" });
      server.fault({ path: "/oauth/token" }, { status: 200, body: { access_token: "abc", token_type: "bEaReR", expires_in: 60 } }, 1);
      const s = session({ grant: "client_credentials" });
      await s.login();
      assert.equal(await s.getAccessToken(), "abc");
    });

    it("no expires_in: no known expiry, the token is used until the API answers 401", async () => {
      const real = await seed(server);
      server.fault({ path: "/oauth/token" }, { status: 200, body: { access_token: real.access_token, token_type: "Bearer" } }, 1);
      const s = session({ grant: "client_credentials" });
      await s.login();
      assert.equal(s.info.accessExpiresAt, null);
      assert.equal((await s.json(PRODUCTS_PATH)).success, true);
      server.expireAccessTokens();
      // 401 → the grant again (client credentials) → replay.
      assert.equal((await s.json(PRODUCTS_PATH)).success, true);
      assert.equal(server.oauth.stats.clientCredentials, 1);
    });
  });
});
