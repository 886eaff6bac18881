// The package's OAuth 2.0 mode in Node against a real authorization server: oidc-provider
// (tests/oauth/provider.mjs, started and stopped here) and its protected API, which
// validates every bearer token by introspection. Contract: /work/notes/oauth-spec.md.
//
// What is checked, each time against the provider's own counters (never the library's word):
// - every client authentication method gets a token and calls the API through json()/fetch():
//   client_secret_basic, client_secret_post, private_key_jwt (ES256 and RS256), none (a
//   public client with a seeded refresh token); basicEncoding "form" and "plain";
// - a rotating refresh token, seeded from the authorization code flow, refreshed across 5+
//   access-token lifetimes under continuous calls: 0 reuses, no invalid_grant, 0 failures;
// - client credentials: 100 concurrent calls on a fresh session make one token request, and
//   100 more after the token expired make one more;
// - revoke() ends the grant at the server; discovery (RFC 8414, then OpenID Connect) and a
//   mismatched issuer; the error mapping, with no secret in any rendering of an error;
// - json() gives the API's JSON as is; an RFC 6750 invalid_token answer costs one refresh
//   and one replay.
//
// Run: node --test tests/oauth/session.test.mjs (about 30 s; uses the built package in pkg/).

import { describe, it, before, after, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { once } from "node:events";
import { randomBytes } from "node:crypto";
import {
  AuthSession,
  AuthError,
  errorTexts,
  assertNoSecrets,
  recordEvents,
  mapStorage,
  sleep,
} from "../js/helpers.mjs";
import { startProvider, obtainRefreshToken, tokenRequest, postForm } from "./provider.mjs";

const ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/** oidc-provider's access-token lifetime here (whole seconds: a token lives TTL-1 to TTL s). */
const TTL_S = 3;
const formEncode = (s) => new URLSearchParams({ s }).toString().slice(2);
const decodeJwtPart = (part) => JSON.parse(Buffer.from(part, "base64url").toString("utf8"));

/** The `oauth` client fields for one of the harness's clients. */
function clientOptions(as, name, { alg = "ES256" } = {}) {
  const c = as.clients[name];
  switch (c.token_endpoint_auth_method) {
    case "client_secret_basic":
      return { clientId: c.client_id, clientSecret: c.client_secret, clientAuth: "client_secret_basic" };
    case "client_secret_post":
      return { clientId: c.client_id, clientSecret: c.client_secret, clientAuth: "client_secret_post" };
    case "private_key_jwt":
      return { clientId: c.client_id, privateKey: c.keys[alg], clientAuth: "private_key_jwt" };
    case "none":
      return { clientId: c.client_id };
    default:
      throw new TypeError(`unknown method ${c.token_endpoint_auth_method}`);
  }
}

/**
 * A `fetch` option that forwards to the global fetch and records every request (URL, method,
 * headers, form fields) and, from a clone, the tokens the token endpoint issued. Held in
 * memory only: assertions compare values with `===` and never print them.
 */
function recorder({ rewrite } = {}) {
  const rec = {
    requests: [],
    issued: { access: [], refresh: [] },
    /** The requests to exactly `url` (/token is not /token/revocation). */
    to(url) {
      return this.requests.filter((r) => r.url === url);
    },
    /** The requests to the origin of `url`. */
    at(url) {
      const origin = new URL(url).origin;
      return this.requests.filter((r) => new URL(r.url).origin === origin);
    },
  };
  rec.fetch = async (input, init) => {
    const request = new Request(input, init);
    const entry = {
      url: request.url,
      method: request.method,
      headers: new Headers(request.headers),
      form: new URLSearchParams(request.method === "POST" ? await request.clone().text() : ""),
      status: 0,
    };
    rec.requests.push(entry);
    let response = await globalThis.fetch(request);
    if (rewrite) response = (await rewrite(entry, response)) ?? response;
    entry.status = response.status;
    if (response.status === 200 && (response.headers.get("content-type") ?? "").includes("json")) {
      try {
        const body = await response.clone().json();
        if (typeof body?.access_token === "string") rec.issued.access.push(body.access_token);
        if (typeof body?.refresh_token === "string") rec.issued.refresh.push(body.refresh_token);
      } catch {
        // not JSON
      }
    }
    return response;
  };
  return rec;
}

/** What `err` must be: the package's AuthError with this code, status and retryability. */
function checkError(err, { code, status, retryable = false, message }) {
  assert.ok(err instanceof AuthError, `an AuthError (got ${err?.name}: ${err?.message})`);
  assert.ok(err instanceof Error);
  assert.equal(err.code, code, `code (message: ${err.message})`);
  if (status !== undefined) assert.equal(err.status, status, `status of ${code}`);
  assert.equal(err.retryable, retryable, `retryable of ${code}`);
  assert.equal(typeof err.name, "string");
  assert.ok(err.name.length > 0);
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

/** The provider's introspection of `token`, asked by the client the token belongs to. */
async function introspect(as, clientName, token) {
  const res = await postForm(as, as.introspectionEndpoint, as.clients[clientName], { token });
  assert.equal(res.status, 200);
  return res.body;
}

const zeroErrors = (as) => assert.deepEqual(as.stats.tokenErrors, {}, "no token endpoint error at all");

// Every algorithm the machine may pick, signed by the runtime's WebCrypto and checked here
// with the public half: no server is needed to verify a signature (oidc-provider's client
// above has RS256 and ES256 keys only).
describe("private_key_jwt: the machine picks the algorithm, WebCrypto signs it", () => {
  const subtle = globalThis.crypto.subtle;
  const generate = (params) => subtle.generateKey(params, true, ["sign", "verify"]);
  const rsa = (name) => ({ name, modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" });
  const VERIFY = {
    RS256: { name: "RSASSA-PKCS1-v1_5" },
    PS256: { name: "RSA-PSS", saltLength: 32 },
    ES256: { name: "ECDSA", hash: "SHA-256" },
    ES384: { name: "ECDSA", hash: "SHA-384" },
    EdDSA: { name: "Ed25519" },
  };
  const cases = [
    ["an RSA JWK without alg", rsa("RSASSA-PKCS1-v1_5"), "jwk", undefined, "RS256"],
    ["an RSA JWK stating PS256", rsa("RSA-PSS"), "jwk", "PS256", "PS256"],
    ["an EC P-384 JWK", { name: "ECDSA", namedCurve: "P-384" }, "jwk", undefined, "ES384"],
    ["an Ed25519 JWK", { name: "Ed25519" }, "jwk", undefined, "EdDSA"],
    ["an RSA-PSS CryptoKey", rsa("RSA-PSS"), "key", undefined, "PS256"],
    ["an Ed25519 CryptoKey", { name: "Ed25519" }, "key", undefined, "EdDSA"],
  ];
  for (const [name, params, form, alg, expected] of cases) {
    it(`${name} signs ${expected}`, async () => {
      const { privateKey, publicKey } = await generate(params);
      const privateJwk = await subtle.exportKey("jwk", privateKey);
      delete privateJwk.alg;
      if (alg !== undefined) privateJwk.alg = alg;
      const bodies = [];
      const fetch = async (url, init) => {
        bodies.push(new URLSearchParams(init.body));
        return new Response(JSON.stringify({ access_token: "at-1", token_type: "Bearer", expires_in: 300 }), {
          headers: { "content-type": "application/json" },
        });
      };
      const s = new AuthSession({
        host: "https://api.example.com",
        autoRefresh: false,
        fetch,
        oauth: {
          tokenEndpoint: "https://as.example.com/token",
          clientId: "client-1",
          grant: "client_credentials",
          privateKey: form === "jwk" ? privateJwk : privateKey,
        },
      });
      try {
        await s.login();
      } finally {
        s.dispose();
      }
      assert.equal(bodies.length, 1);
      assert.equal(bodies[0].get("client_assertion_type"), ASSERTION_TYPE);
      const [h, c, sig] = bodies[0].get("client_assertion").split(".");
      assert.equal(decodeJwtPart(h).alg, expected);
      assert.equal(decodeJwtPart(c).aud, "https://as.example.com/token");
      const ok = await subtle.verify(VERIFY[expected], publicKey, Buffer.from(sig, "base64url"), new TextEncoder().encode(`${h}.${c}`));
      assert.ok(ok, "the signature verifies with the public key");
    });
  }
});

describe("OAuth 2.0 mode against oidc-provider", { timeout: 90_000 }, () => {
  let as;
  /** Sessions of the running test: disposed after it, so no timer of one test runs into the next. */
  let live = [];

  /** A session on the provider's API with the harness client `name`. */
  function session(name, oauth = {}, extra = {}, { alg } = {}) {
    const s = new AuthSession({
      host: as.api.url,
      oauth: {
        tokenEndpoint: as.tokenEndpoint,
        revocationEndpoint: as.revocationEndpoint,
        ...clientOptions(as, name, { alg }),
        ...oauth,
      },
      timeoutMs: 5000,
      retries: 1,
      ...extra,
    });
    live.push(s);
    return s;
  }

  before(async () => {
    as = await startProvider({ accessTokenTtl: TTL_S });
  });
  after(() => as?.close());
  beforeEach(() => {
    as.setAccessTokenTtl(TTL_S);
    as.resetStats();
  });
  afterEach(() => {
    for (const s of live) s.dispose();
    live = [];
    assert.equal(as.stats.serverErrors, 0, "the harness never failed inside");
  });

  describe("client authentication", () => {
    const cases = [
      { name: "basic", method: "client_secret_basic" },
      { name: "post", method: "client_secret_post" },
      { name: "jwt", method: "private_key_jwt", alg: "ES256" },
      { name: "jwt", method: "private_key_jwt", alg: "RS256" },
    ];
    for (const { name, method, alg } of cases) {
      it(`${method}${alg ? ` (${alg})` : ""}: client_credentials, then json() and fetch() reach the API`, async () => {
        const rec = recorder();
        const client = as.clients[name];
        const s = session(name, { scope: "api:read" }, { fetch: rec.fetch }, { alg });
        await s.login();
        assert.equal(s.info.state, "active");
        assert.ok(s.info.accessExpiresAt instanceof Date, "expires_in gave an expiry");
        const left = s.info.accessExpiresAt.getTime() - Date.now();
        assert.ok(left > (TTL_S - 2) * 1000 && left <= TTL_S * 1000 + 1500, `expiry ${left} ms ahead`);

        // json(): the API's JSON as it is, no envelope taken off.
        const body = await s.json("/api/me");
        assert.deepEqual(body, { ok: true, method: "GET", path: "/api/me", sub: null, client_id: client.client_id, scope: "api:read" });
        const res = await s.fetch("/api/things", { method: "POST" });
        assert.equal(res.status, 200);
        assert.deepEqual(await res.json(), { ok: true, method: "POST", path: "/api/things", sub: null, client_id: client.client_id, scope: "api:read" });
        assert.equal(as.stats.tokenIssued.client_credentials, 1);
        assert.equal(as.stats.tokenRequests.client_credentials, 1);
        assert.deepEqual(as.stats.api, { accepted: 2, refused: 0, forbidden: 0 });
        zeroErrors(as);

        // The token request, as the contract says.
        const [req, ...others] = rec.to(as.tokenEndpoint);
        assert.equal(others.length, 0, "one token request");
        assert.equal(req.method, "POST");
        assert.match(req.headers.get("content-type") ?? "", /^application\/x-www-form-urlencoded/);
        assert.match(req.headers.get("accept") ?? "", /application\/json/);
        assert.equal(req.form.get("grant_type"), "client_credentials");
        assert.equal(req.form.get("scope"), "api:read");
        const authorization = req.headers.get("authorization");
        if (method === "client_secret_basic") {
          assert.match(authorization ?? "", /^Basic [A-Za-z0-9+/]+=*$/);
          const decoded = Buffer.from(authorization.slice(6), "base64").toString("utf8");
          assert.ok(decoded === `${formEncode(client.client_id)}:${formEncode(client.client_secret)}`, "Basic carries id:secret, form-encoded");
          assert.equal(req.form.get("client_secret"), null);
          assert.equal(req.form.get("client_assertion"), null);
        } else if (method === "client_secret_post") {
          assert.equal(authorization, null, "no Authorization header with client_secret_post");
          assert.equal(req.form.get("client_id"), client.client_id);
          assert.ok(req.form.get("client_secret") === client.client_secret, "client_secret in the body");
        } else {
          assert.equal(authorization, null);
          assert.equal(req.form.get("client_secret"), null);
          assert.equal(req.form.get("client_id"), client.client_id);
          assert.equal(req.form.get("client_assertion_type"), ASSERTION_TYPE);
          const parts = req.form.get("client_assertion").split(".");
          assert.equal(parts.length, 3);
          const header = decodeJwtPart(parts[0]);
          const claims = decodeJwtPart(parts[1]);
          assert.equal(header.alg, alg);
          assert.equal(header.kid, client.keys[alg].kid, "the JWK's kid by default");
          assert.equal(claims.iss, client.client_id);
          assert.equal(claims.sub, client.client_id);
          assert.equal(claims.aud, as.tokenEndpoint);
          assert.equal(typeof claims.jti, "string");
          assert.ok(claims.jti.length >= 16, "a random jti");
          assert.equal(claims.exp - claims.iat, 60);
          assert.ok(Math.abs(claims.iat - Date.now() / 1000) < 30, "iat is now");
          // A second grant: a fresh jti (oidc-provider refuses a replayed one as invalid_client).
          await s.refresh();
          assert.equal(as.stats.tokenIssued.client_credentials, 2);
          const second = decodeJwtPart(rec.to(as.tokenEndpoint)[1].form.get("client_assertion").split(".")[1]);
          assert.notEqual(second.jti, claims.jti);
          zeroErrors(as);
        }
      });
    }

    it("private_key_jwt with keyId: the JWT header names the given kid", async () => {
      const rec = recorder();
      // The provider finds the key by kid; a wrong one would be invalid_client, so give the right one
      // from outside the JWK (a JWK without kid of its own).
      const { kid, ...jwk } = as.clients.jwt.keys.ES256;
      const s = session("jwt", { privateKey: jwk, keyId: kid }, { fetch: rec.fetch });
      await s.login();
      const header = decodeJwtPart(rec.to(as.tokenEndpoint)[0].form.get("client_assertion").split(".")[0]);
      assert.equal(header.kid, kid);
      assert.equal(header.alg, "ES256");
      assert.equal((await s.json("/api/me")).client_id, as.clients.jwt.client_id);
    });

    for (const alg of ["ES256", "RS256"]) {
      it(`private_key_jwt with a CryptoKey (${alg}) and keyId`, async () => {
        const { kid, alg: _alg, use: _use, ...jwk } = as.clients.jwt.keys[alg];
        const params = alg === "ES256" ? { name: "ECDSA", namedCurve: "P-256" } : { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
        const key = await crypto.subtle.importKey("jwk", jwk, params, false, ["sign"]);
        const rec = recorder();
        const s = session("jwt", { privateKey: key, keyId: kid }, { fetch: rec.fetch });
        assert.equal((await s.json("/api/me")).client_id, as.clients.jwt.client_id);
        const header = decodeJwtPart(rec.to(as.tokenEndpoint)[0].form.get("client_assertion").split(".")[0]);
        assert.deepEqual([header.alg, header.kid], [alg, kid]);
        assert.equal(as.stats.tokenIssued.client_credentials, 1);
        zeroErrors(as);
      });
    }

    it("none: a public client with a seeded refresh token", async () => {
      const seed = await obtainRefreshToken(as, { client: "public" });
      as.resetStats();
      const rec = recorder();
      const s = session("public", { refreshToken: seed.refresh_token }, { fetch: rec.fetch });
      const events = recordEvents(s);
      const body = await s.json("/api/me");
      assert.deepEqual(body, {
        ok: true,
        method: "GET",
        path: "/api/me",
        sub: "alice",
        client_id: as.clients.public.client_id,
        scope: as.api.scopes,
      });
      assert.equal(as.stats.refreshes, 1, "the seed was exchanged once");
      assert.equal(as.stats.tokenRequests.refresh_token, 1);
      assert.equal(as.stats.reuseDetected, 0);
      zeroErrors(as);
      const [req] = rec.to(as.tokenEndpoint);
      assert.equal(req.form.get("grant_type"), "refresh_token");
      assert.ok(req.form.get("refresh_token") === seed.refresh_token, "the seed was sent");
      assert.equal(req.form.get("client_id"), as.clients.public.client_id);
      assert.equal(req.form.get("client_secret"), null);
      assert.equal(req.headers.get("authorization"), null);
      assert.equal(events.tokens.length, 1);
      assert.equal(s.info.state, "active");
      // The rotated refresh token is the one used next (the seed is spent).
      await s.refresh();
      assert.equal(as.stats.refreshes, 2);
      const second = rec.to(as.tokenEndpoint)[1];
      assert.ok(second.form.get("refresh_token") === rec.issued.refresh[0], "the rotated refresh token was sent");
      assert.equal(as.stats.reuseDetected, 0);
      zeroErrors(as);
    });

    it('basicEncoding "form" (the default) encodes a secret with reserved characters; "plain" sends it raw', async () => {
      const special = as.clients.special;
      // The harness's `special` client: id and secret hold characters §2.3.1 encodes.
      assert.notEqual(formEncode(special.client_secret), special.client_secret);
      assert.notEqual(formEncode(special.client_id), special.client_id);

      const formRec = recorder();
      const form = session("special", { scope: "api:read" }, { fetch: formRec.fetch });
      await form.login();
      assert.equal((await form.json("/api/me")).client_id, special.client_id);
      const formAuth = Buffer.from(formRec.to(as.tokenEndpoint)[0].headers.get("authorization").slice(6), "base64").toString("utf8");
      assert.ok(formAuth === `${formEncode(special.client_id)}:${formEncode(special.client_secret)}`, "form-encoded id:secret");
      assert.equal(as.stats.tokenIssued.client_credentials, 1);

      // oidc-provider form-decodes Basic (as RFC 6749 says): the raw secret's "%" does not
      // decode, so the server refuses the request (invalid_request, 400).
      const plainRec = recorder();
      const plain = session("special", { basicEncoding: "plain" }, { fetch: plainRec.fetch });
      const err = await rejection(plain.login());
      checkError(err, { code: "VALIDATION_FAILURE", status: 400, message: /^invalid_request/ });
      const plainAuth = Buffer.from(plainRec.to(as.tokenEndpoint)[0].headers.get("authorization").slice(6), "base64").toString("utf8");
      assert.ok(plainAuth === `${special.client_id}:${special.client_secret}`, "raw id:secret");
      assertNoSecrets(errorTexts(err), [special.client_secret, formEncode(special.client_secret)], "the error");
      assert.equal(as.stats.tokenIssued.client_credentials, 1);
      assert.deepEqual(as.stats.tokenErrors, { invalid_request: 1 });
    });
  });

  it(`a rotating refresh token refreshed across 5+ lifetimes under continuous calls: 0 reuses, 0 failures`, { timeout: 40_000 }, async (t) => {
    const seed = await obtainRefreshToken(as, { client: "public" });
    as.resetStats();
    const s = session("public", { refreshToken: seed.refresh_token });
    const events = recordEvents(s);
    const lifetimeMs = TTL_S * 1000;
    const durationMs = Math.ceil(5.3 * lifetimeMs);
    const run = { calls: 0, ok: 0, failures: [] };
    const startedAt = Date.now();
    const until = startedAt + durationMs;
    const loop = async () => {
      while (Date.now() < until) {
        run.calls++;
        try {
          const body = await s.json("/api/me");
          if (body?.sub !== "alice") throw Object.assign(new Error("unexpected body"), { code: "BAD_BODY" });
          run.ok++;
        } catch (err) {
          run.failures.push({ code: err?.code ?? null, at: Date.now() - startedAt });
        }
        await sleep(15 + Math.random() * 20);
      }
    };
    await Promise.all(Array.from({ length: 4 }, loop));
    const elapsed = Date.now() - startedAt;
    // A refresh the last calls started may still be in flight: let it land.
    for (let i = 0; i < 100 && events.tokens.length !== as.stats.tokenRequests.refresh_token; i++) await sleep(20);
    const figures = {
      elapsed,
      calls: run.calls,
      failures: run.failures.length,
      refreshes: as.stats.refreshes,
      refreshRequests: as.stats.tokenRequests.refresh_token,
      tokensEvents: events.tokens.length,
      reasons: [...new Set(events.tokens.map((e) => e.reason))],
      api: { ...as.stats.api },
      reuseDetected: as.stats.reuseDetected,
      tokenErrors: { ...as.stats.tokenErrors },
    };
    t.diagnostic(`rotation: ${JSON.stringify(figures)}`);

    assert.deepEqual(run.failures, [], "no call failed");
    assert.equal(as.stats.reuseDetected, 0, "no rotated refresh token was presented again");
    assert.equal(as.stats.tokenErrors.invalid_grant ?? 0, 0, "no invalid_grant at all");
    zeroErrors(as);
    assert.ok(elapsed >= 5 * lifetimeMs, `ran ${elapsed} ms, 5+ lifetimes`);
    // The seed exchange, then at least one refresh per lifetime...
    assert.ok(as.stats.refreshes >= 6, `at least one refresh per lifetime (${as.stats.refreshes})`);
    // ...and not one per call: about one per half lifetime (refreshMarginSeconds is capped at
    // half the token's life; whole-second expiry times can make an interval shorter).
    const bound = Math.ceil(elapsed / (lifetimeMs / 3)) + 3;
    assert.ok(as.stats.refreshes <= bound, `refreshes ${as.stats.refreshes} <= ${bound}`);
    assert.equal(as.stats.tokenRequests.refresh_token, as.stats.refreshes, "every refresh request succeeded");
    assert.equal(events.tokens.length, as.stats.refreshes, "one tokens event per pair issued");
    assert.deepEqual(events.expired, []);
    assert.deepEqual(events.error.map((e) => e.code), []);
    assert.equal(as.stats.api.accepted, run.ok);
    assert.equal(as.stats.api.refused, 0, "no expired or revoked token was ever sent to the API");
    assert.ok(run.calls > 200, `calls kept running (${run.calls})`);
    assert.equal(s.info.state, "active");
  });

  it("client credentials: 100 concurrent json() calls make 1 token request; after expiry, 100 more make 1 more", { timeout: 20_000 }, async () => {
    const s = session("post", { scope: "api:read" }, { autoRefresh: false });
    const burst = async () => {
      const results = await Promise.allSettled(Array.from({ length: 100 }, () => s.json("/api/me")));
      const failed = results.filter((r) => r.status === "rejected").map((r) => r.reason?.code);
      assert.deepEqual(failed, [], "no call failed");
      for (const r of results) assert.equal(r.value.client_id, as.clients.post.client_id);
    };
    await burst();
    assert.equal(as.stats.tokenRequests.client_credentials, 1, "one token request for 100 cold calls");
    assert.equal(as.stats.tokenIssued.client_credentials, 1);
    assert.deepEqual(as.stats.api, { accepted: 100, refused: 0, forbidden: 0 });
    assert.equal(s.info.refreshExpiresAt, null, "no refresh token");

    // Past the token's expiry (its whole-second exp at the server too).
    const expiresAt = s.info.accessExpiresAt.getTime();
    await sleep(Math.max(0, expiresAt - Date.now()) + 1100);
    await burst();
    assert.equal(as.stats.tokenRequests.client_credentials, 2, "one more token request for 100 calls after expiry");
    assert.equal(as.stats.tokenIssued.client_credentials, 2);
    assert.deepEqual(as.stats.api, { accepted: 200, refused: 0, forbidden: 0 }, "the expired token was not sent");
    assert.equal(as.stats.tokenRequests.refresh_token, 0);
    zeroErrors(as);
  });

  describe("revoke()", () => {
    it("ends the grant at the server: the refresh token is refused, the access token inactive", async () => {
      const seed = await obtainRefreshToken(as, { client: "basic" });
      const rec = recorder();
      const s = session("basic", { refreshToken: seed.refresh_token }, { fetch: rec.fetch });
      const events = recordEvents(s);
      await s.json("/api/me");
      const access = await s.getAccessToken();
      const refresh = rec.issued.refresh.at(-1);
      assert.equal(typeof refresh, "string");
      assert.equal((await introspect(as, "basic", access)).active, true, "live before revoke()");
      as.resetStats();

      await s.revoke();
      assert.equal(s.info.state, "revoked");
      assert.equal(events.revoked.length, 1);
      assert.equal(as.stats.revocations, 1);
      assert.equal(as.stats.revocationErrors, 0);
      assert.equal(as.stats.grantsRevoked, 1, "the grant ended");
      const [req, ...more] = rec.to(as.revocationEndpoint);
      assert.equal(more.length, 0);
      assert.equal(req.method, "POST");
      assert.ok(req.form.get("token") === refresh, "the current refresh token was revoked");
      assert.equal(req.form.get("token_type_hint"), "refresh_token");
      assert.match(req.headers.get("authorization") ?? "", /^Basic /, "with the client's authentication");

      assert.equal((await introspect(as, "basic", access)).active, false, "the access token died with the grant");
      const after = await tokenRequest(as, as.clients.basic, { grant_type: "refresh_token", refresh_token: refresh });
      assert.equal(after.status, 400);
      assert.equal(after.body.error, "invalid_grant");
      const apiRes = await fetch(`${as.api.url}/api/me`, { headers: { authorization: `Bearer ${access}` } });
      assert.equal(apiRes.status, 401);
      await apiRes.arrayBuffer();

      // The session holds nothing: the seed is spent, so no token request is made.
      as.resetStats();
      checkError(await rejection(s.json("/api/me")), { code: "NOT_AUTHENTICATED" });
      assert.equal(as.stats.tokenRequests.refresh_token, 0, "a revoked session does not reuse its seed");
      assert.equal(as.stats.api.accepted, 0);
    });

    it("client credentials: revokes the access token (token_type_hint access_token)", async () => {
      const rec = recorder();
      const s = session("basic", {}, { fetch: rec.fetch });
      await s.json("/api/me");
      const access = await s.getAccessToken();
      await s.revoke();
      assert.equal(s.info.state, "revoked");
      const [req] = rec.to(as.revocationEndpoint);
      assert.ok(req.form.get("token") === access, "the access token was revoked");
      assert.equal(req.form.get("token_type_hint"), "access_token");
      assert.equal(as.stats.revocations, 1);
      assert.equal((await introspect(as, "basic", access)).active, false);
    });

    it("without a revocation endpoint: local state only", async () => {
      const rec = recorder();
      const s = new AuthSession({
        host: as.api.url,
        oauth: { tokenEndpoint: as.tokenEndpoint, ...clientOptions(as, "basic") },
        fetch: rec.fetch,
        timeoutMs: 5000,
      });
      live.push(s);
      await s.login();
      const access = await s.getAccessToken();
      await s.revoke();
      assert.equal(s.info.state, "revoked");
      assert.equal(as.stats.revocations + as.stats.revocationErrors, 0, "no revocation request");
      assert.equal(rec.to(as.revocationEndpoint).length, 0);
      assert.equal((await introspect(as, "basic", access)).active, true, "the server was not told");
    });
  });

  describe("discovery", () => {
    /** A small authorization-server front: serves metadata documents as the test says
     *  (status and body per path), everything else 404. Counts requests by path. */
    let front;
    before(async () => {
      const server = http.createServer((req, res) => {
        const path = new URL(req.url, "http://x").pathname;
        front.hits[path] = (front.hits[path] ?? 0) + 1;
        const doc = front.docs[path];
        if (!doc) {
          res.writeHead(404, { "content-type": "application/json" });
          return res.end('{"error":"not_found"}');
        }
        const body = JSON.stringify(doc);
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
        res.end(body);
      });
      server.listen(0, "127.0.0.1");
      await once(server, "listening");
      front = { server, url: `http://127.0.0.1:${server.address().port}`, docs: {}, hits: {} };
    });
    after(() => new Promise((resolve) => {
      front.server.close(resolve);
      front.server.closeAllConnections();
    }));
    beforeEach(() => {
      front.docs = {};
      front.hits = {};
    });
    const metadata = async () => (await fetch(as.metadataUrl)).json();

    it("with `issuer`: the RFC 8414 document, fetched once for the session's life", async () => {
      const rec = recorder();
      const s = new AuthSession({
        host: as.api.url,
        oauth: { issuer: as.issuer, ...clientOptions(as, "basic") },
        fetch: rec.fetch,
        timeoutMs: 5000,
      });
      live.push(s);
      await s.login();
      assert.equal((await s.json("/api/me")).client_id, as.clients.basic.client_id);
      await s.refresh();
      await s.revoke();
      const wellKnown = rec.requests.filter((r) => r.url.includes("/.well-known/"));
      assert.deepEqual(wellKnown.map((r) => [r.method, r.url]), [["GET", `${as.issuer}/.well-known/oauth-authorization-server`]]);
      assert.equal(rec.to(as.tokenEndpoint).length, 2, "the discovered token endpoint");
      assert.equal(as.stats.tokenIssued.client_credentials, 2);
      assert.equal(as.stats.revocations, 1, "the discovered revocation endpoint");
    });

    it("falls back to OpenID Connect discovery on a 404", async () => {
      const meta = await metadata();
      front.docs["/.well-known/openid-configuration"] = { ...meta, issuer: front.url };
      const s = new AuthSession({ host: as.api.url, oauth: { issuer: front.url, ...clientOptions(as, "post") }, timeoutMs: 5000 });
      live.push(s);
      assert.equal((await s.json("/api/me")).client_id, as.clients.post.client_id);
      assert.deepEqual(front.hits, { "/.well-known/oauth-authorization-server": 1, "/.well-known/openid-configuration": 1 });
      assert.equal(as.stats.tokenIssued.client_credentials, 1);
    });

    it("a document for another issuer is INVALID_RESPONSE, and no token request is made", async () => {
      const meta = await metadata();
      // The provider's own document, served by another origin: its issuer is not ours.
      front.docs["/.well-known/oauth-authorization-server"] = meta;
      const s = new AuthSession({ host: as.api.url, oauth: { issuer: front.url, ...clientOptions(as, "basic") }, timeoutMs: 5000 });
      live.push(s);
      const err = await rejection(s.json("/api/me"));
      checkError(err, { code: "INVALID_RESPONSE", retryable: false });
      assertNoSecrets(errorTexts(err), [as.clients.basic.client_secret], "the error");
      assert.equal(as.stats.tokenRequests.client_credentials, 0);
      assert.equal(as.stats.api.accepted + as.stats.api.refused, 0);

      // And a token endpoint that is neither https nor loopback.
      front.docs["/.well-known/oauth-authorization-server"] = { ...meta, issuer: front.url, token_endpoint: "http://as.example.com/token" };
      const s2 = new AuthSession({ host: as.api.url, oauth: { issuer: front.url, ...clientOptions(as, "basic") }, timeoutMs: 5000 });
      live.push(s2);
      checkError(await rejection(s2.login()), { code: "INVALID_RESPONSE", retryable: false });
      assert.equal(as.stats.tokenRequests.client_credentials, 0);
    });
  });

  describe("errors", () => {
    it("a wrong client secret is UNAUTHORIZED (401), with no secret in the error", async () => {
      const wrong = `wrong-${randomBytes(12).toString("base64url")}`;
      const s = session("basic", { clientSecret: wrong });
      const events = recordEvents(s);
      for (const work of [() => s.login(), () => s.json("/api/me")]) {
        const err = await rejection(work);
        checkError(err, { code: "UNAUTHORIZED", status: 401, message: /^invalid_client/ });
        assertNoSecrets(errorTexts(err), [wrong, as.clients.basic.client_secret], "the error");
      }
      assert.deepEqual(as.stats.tokenErrors, { invalid_client: 2 });
      assert.equal(as.stats.api.accepted + as.stats.api.refused, 0, "the API was not called");
      assert.equal(events.expired.length, 0);
      assert.notEqual(s.info.state, "active");
    });

    it("an invalid scope is FORBIDDEN", async () => {
      const s = session("scoped", { scope: "api:read offline_access" });
      const err = await rejection(s.login());
      checkError(err, { code: "FORBIDDEN", status: 400, message: /^invalid_scope/ });
      assertNoSecrets(errorTexts(err), [as.clients.scoped.client_secret], "the error");
      assert.deepEqual(as.stats.tokenErrors, { invalid_scope: 1 });
      // The same client with a scope it may have: the mapping was about the scope.
      const ok = session("scoped", { scope: "api:read" });
      assert.equal((await ok.json("/api/me")).scope, "api:read");
    });

    it("a spent seeded refresh token is SESSION_EXPIRED: `expired` once, state expired, no secret shown", async () => {
      const seed = await obtainRefreshToken(as, { client: "basic" });
      const rotated = await tokenRequest(as, as.clients.basic, { grant_type: "refresh_token", refresh_token: seed.refresh_token });
      assert.equal(rotated.status, 200);
      as.resetStats();
      const s = session("basic", { refreshToken: seed.refresh_token });
      const events = recordEvents(s);
      const err = await rejection(s.json("/api/me"));
      checkError(err, { code: "SESSION_EXPIRED", status: 400 });
      assertNoSecrets(
        errorTexts(err),
        [seed.refresh_token, seed.access_token, rotated.body.refresh_token, rotated.body.access_token, as.clients.basic.client_secret],
        "the error",
      );
      assert.equal(as.stats.tokenRequests.refresh_token, 1, "the spent token was sent once");
      assert.equal(as.stats.api.accepted + as.stats.api.refused, 0);
      // The session ends (the package's README: "the server answers invalid_grant, the
      // session ends (`expired`, `SESSION_EXPIRED`)").
      assert.equal(s.info.state, "expired");
      assert.equal(events.expired.length, 1);
      // Later calls fail at once, without sending it again.
      checkError(await rejection(s.json("/api/me")), { code: "SESSION_EXPIRED" });
      assert.equal(as.stats.tokenRequests.refresh_token, 1);
      assert.equal(events.expired.length, 1, "expired once per end");
      // The contract's message: "<error>: <error_description>".
      assert.match(err.message, /^invalid_grant: /);
    });

    it("an unknown seeded refresh token is SESSION_EXPIRED", async () => {
      const unknown = randomBytes(32).toString("base64url");
      const s = session("public", { refreshToken: unknown });
      const err = await rejection(s.refresh());
      checkError(err, { code: "SESSION_EXPIRED", status: 400 });
      assertNoSecrets(errorTexts(err), [unknown], "the error");
      assert.deepEqual(as.stats.tokenErrors, { invalid_grant: 1 });
      assert.equal(s.info.state, "expired");
    });
  });

  describe("configuration", () => {
    const base = () => ({ tokenEndpoint: as.tokenEndpoint, ...clientOptions(as, "basic") });
    const configError = (options, message) => {
      let err;
      try {
        new AuthSession(options).dispose();
      } catch (e) {
        err = e;
      }
      assert.ok(err !== undefined, `CONFIG_ERROR expected for ${message}`);
      checkError(err, { code: "CONFIG_ERROR", status: 0 });
      assertNoSecrets(errorTexts(err), [as.clients.basic.client_secret], "the error");
      assert.ok(err.message.length < 400, `a short message for ${message}: ${err.message.length} characters`);
    };
    it("refuses what the contract rules out, at construction, without a request", () => {
      configError({ host: as.api.url, oauth: base(), paths: { login: "/login" } }, "paths with oauth");
      configError({ host: as.api.url, oauth: { clientId: "x" } }, "neither issuer nor tokenEndpoint");
      configError({ host: as.api.url, oauth: { ...base(), tokenEndpoint: "http://as.example.com/token" } }, "an http token endpoint off loopback");
      configError({ host: as.api.url, oauth: { tokenEndpoint: as.tokenEndpoint } }, "no clientId");
      configError({ host: as.api.url, oauth: { ...base(), clientAuth: "private_key_jwt" } }, "private_key_jwt without privateKey");
      configError({ host: as.api.url, oauth: { ...base(), basicEncoding: "latin1" } }, "an unknown basicEncoding");
      configError({ host: as.api.url, oauth: { ...base(), grant: "implicit" } }, "an unknown grant");
      const { d: _d, ...publicHalf } = as.clients.jwt.keys.ES256;
      configError({ host: as.api.url, oauth: { clientId: "jwt-client", tokenEndpoint: as.tokenEndpoint, privateKey: publicHalf } }, "a public JWK");
      // A JWK that states an algorithm the package does not sign with, or one its type does
      // not allow, is refused, not signed with another algorithm the server would reject.
      const jwt = (privateKey) => ({ host: as.api.url, oauth: { clientId: "jwt-client", tokenEndpoint: as.tokenEndpoint, privateKey } });
      configError(jwt({ ...as.clients.jwt.keys.RS256, alg: "RS512" }), "an RSA JWK for RS512");
      configError(jwt({ ...as.clients.jwt.keys.ES256, alg: "ES384" }), "a P-256 JWK for ES384");
      configError(jwt({ ...as.clients.jwt.keys.ES256, crv: "P-521" }), "an EC JWK on P-521");
      configError(jwt({ kty: "oct", k: "c2VjcmV0", d: "x" }), "a symmetric JWK");
      // Garbage where the key's description is read: a number, a megabyte, a getter that throws.
      configError(jwt({ kty: 42, crv: {}, alg: [], d: "x" }), "a JWK of the wrong types");
      configError(jwt({ kty: "RSA".repeat(350_000), alg: "R".repeat(1 << 20), d: "x" }), "a megabyte of kty and alg");
      const forged = { [Symbol.toStringTag]: "CryptoKey", type: "private", usages: ["sign"] };
      Object.defineProperty(forged, "algorithm", { get() { throw new Error("boom"); } });
      configError(jwt(forged), "a CryptoKey look-alike whose algorithm throws");
      assert.equal(as.stats.tokenRequests.client_credentials, 0);
    });
  });

  describe("storage", () => {
    it("the record is bound to the token endpoint and the client: another client never adopts it", async () => {
      const storage = mapStorage();
      const basic = session("basic", {}, { storage });
      assert.equal((await basic.json("/api/me")).client_id, as.clients.basic.client_id);
      const post = session("post", {}, { storage });
      assert.equal((await post.json("/api/me")).client_id, as.clients.post.client_id);
      assert.equal(as.stats.tokenRequests.client_credentials, 2, "each client its own grant");
      // The same client on the same storage adopts the stored pair: no token request.
      const again = session("basic", {}, { storage });
      const events = recordEvents(again);
      assert.equal((await again.json("/api/me")).client_id, as.clients.basic.client_id);
      assert.equal(as.stats.tokenRequests.client_credentials, 2);
      assert.deepEqual(events.tokens.map((e) => e.reason), ["adopt"]);
      // Client credentials: the record holds no refresh token.
      const records = [...storage.map.values()].map((v) => JSON.parse(v));
      assert.equal(records.length, 2);
      for (const r of records) assert.equal(r.refresh_token, null);
    });
  });

  describe("API calls", () => {
    it("a 403 insufficient_scope is HTTP_ERROR 403, with no refresh", async () => {
      const s = session("post", { scope: "api:read" });
      const err = await rejection(s.json("/api/write"));
      checkError(err, { code: "HTTP_ERROR", status: 403 });
      assert.equal(as.stats.tokenRequests.client_credentials, 1, "insufficient_scope is not invalid_token");
      assert.deepEqual(as.stats.api, { accepted: 0, refused: 0, forbidden: 1 });
    });

    it("an empty 2xx body resolves undefined, as in provider mode", async () => {
      const rec = recorder({
        async rewrite(entry, response) {
          if (!entry.url.startsWith(as.api.url)) return response;
          await response.arrayBuffer();
          return new Response(null, { status: 204 });
        },
      });
      const s = session("post", {}, { fetch: rec.fetch });
      assert.equal(await s.json("/api/me"), undefined);
    });

    it("a 401 with WWW-Authenticate invalid_token: one refresh, one replay", async () => {
      const seed = await obtainRefreshToken(as, { client: "public" });
      const s = session("public", { refreshToken: seed.refresh_token });
      await s.json("/api/me");
      // The server revokes the access token the session holds (only that token: the grant lives).
      const access = await s.getAccessToken();
      const revoked = await postForm(as, as.revocationEndpoint, as.clients.public, { token: access, token_type_hint: "access_token" });
      assert.equal(revoked.status, 200);
      as.resetStats();
      const body = await s.json("/api/me");
      assert.equal(body.sub, "alice");
      assert.deepEqual(as.stats.api, { accepted: 1, refused: 1, forbidden: 0 }, "one refused attempt, one replay");
      assert.equal(as.stats.refreshes, 1, "one refresh");
      assert.equal(as.stats.reuseDetected, 0);
      zeroErrors(as);
      assert.notEqual(await s.getAccessToken(), access);
    });

    it("invalid_token in WWW-Authenticate counts as a 401 whatever the status", async () => {
      let rewritten = 0;
      const rec = recorder({
        async rewrite(entry, response) {
          if (!entry.url.startsWith(as.api.url) || rewritten > 0) return response;
          rewritten++;
          await response.arrayBuffer();
          return new Response(JSON.stringify({ error: "invalid_token" }), {
            status: 400,
            headers: { "content-type": "application/json", "www-authenticate": 'Bearer realm="test-api", error="invalid_token"' },
          });
        },
      });
      const s = session("post", {}, { fetch: rec.fetch });
      const body = await s.json("/api/me");
      assert.equal(body.client_id, as.clients.post.client_id);
      assert.equal(rewritten, 1);
      assert.equal(rec.at(as.api.url).length, 2, "one replay");
      assert.equal(as.stats.tokenIssued.client_credentials, 2, "the grant, then one more for the replay");
    });

    it("a replay answered 401 again fails the call after one refresh (no loop)", async () => {
      const rec = recorder({
        async rewrite(entry, response) {
          if (!entry.url.startsWith(as.api.url)) return response;
          await response.arrayBuffer();
          return new Response(JSON.stringify({ error: "invalid_token" }), {
            status: 401,
            headers: { "content-type": "application/json", "www-authenticate": 'Bearer error="invalid_token"' },
          });
        },
      });
      const s = session("post", {}, { fetch: rec.fetch });
      const err = await rejection(s.json("/api/me"));
      assert.ok(err instanceof AuthError, `an AuthError (${err?.code})`);
      assert.equal(err.status, 401);
      assert.equal(rec.at(as.api.url).length, 2, "the call and one replay");
      assert.equal(as.stats.tokenRequests.client_credentials, 2, "one grant and one refresh");
      assertNoSecrets(errorTexts(err), [...rec.issued.access, as.clients.post.client_secret], "the error");
    });

    it("the token goes to the API's origin only", async () => {
      const rec = recorder();
      const s = session("post", {}, { fetch: rec.fetch });
      await s.login();
      assert.equal(s.mayReceiveToken(`${as.api.url}/api/me`), true);
      assert.equal(s.mayReceiveToken(`${as.issuer}/token`), false);
      const err = await rejection(s.json(`${as.issuer}/me`));
      assert.ok(err instanceof AuthError);
      assert.equal(err.code, "ORIGIN_NOT_ALLOWED");
      assert.equal(rec.requests.filter((r) => r.url.startsWith(`${as.issuer}/me`)).length, 0);
    });
  });
});
