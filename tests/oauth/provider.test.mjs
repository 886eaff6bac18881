// Proves the oidc-provider harness (tests/oauth/provider.mjs) with plain fetch, no
// auth-session code: what the standards mode will be tested against must itself be right.
// Run: node --test tests/oauth/

import { describe, it, before, after, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { randomUUID } from "node:crypto";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import { fileURLToPath } from "node:url";
import {
  startProvider,
  obtainRefreshToken,
  tokenRequest,
  postForm,
  clientAssertion,
  signJwt,
  publicJwk,
} from "./provider.mjs";

const ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

const callApi = (as, token, path = "/api/me") =>
  fetch(`${as.api.url}${path}`, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });

async function assertApiAccepts(as, token, expected = {}) {
  const res = await callApi(as, token);
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.ok, true);
  for (const [k, v] of Object.entries(expected)) assert.equal(body[k], v, k);
  return body;
}

async function assertApiRefuses(as, token) {
  const res = await callApi(as, token);
  assert.equal(res.status, 401);
  assert.match(res.headers.get("www-authenticate"), /^Bearer realm="test-api", error="invalid_token"/);
  assert.equal((await res.json()).error, "invalid_token");
}

const refresh = (as, client, refreshToken) =>
  tokenRequest(as, client, { grant_type: "refresh_token", refresh_token: refreshToken });

/** Waits until a token with `expires_in` seconds, received at `receivedAt`, is surely past its
 *  integer-second `exp` at the server. */
const waitPastExpiry = (receivedAt, expiresIn) =>
  sleep(Math.max(0, receivedAt + expiresIn * 1000 + 1100 - Date.now()));

describe("oidc-provider harness", () => {
  let as;
  before(async () => {
    // oidc-provider's iat and exp are whole seconds: a token with a TTL of n seconds lives
    // between n-1 and n seconds. 3 leaves every test at least 2 s to use a fresh token.
    as = await startProvider({ accessTokenTtl: 3 });
  });
  after(() => as.close());
  beforeEach(() => as.resetStats());
  // The harness itself must never throw inside oidc-provider, the adapter or the pages.
  afterEach(() => assert.equal(as.stats.serverErrors, 0));

  describe("discovery", () => {
    it("serves OpenID discovery with every endpoint, grant and client authentication method", async () => {
      const res = await fetch(as.discoveryUrl);
      assert.equal(res.status, 200);
      const meta = await res.json();
      assert.equal(meta.issuer, as.issuer);
      assert.equal(meta.token_endpoint, as.tokenEndpoint);
      assert.equal(meta.revocation_endpoint, as.revocationEndpoint);
      assert.equal(meta.introspection_endpoint, as.introspectionEndpoint);
      assert.equal(meta.authorization_endpoint, as.authorizationEndpoint);
      assert.equal(meta.jwks_uri, as.jwksUri);
      for (const grant of ["authorization_code", "refresh_token", "client_credentials"]) {
        assert.ok(meta.grant_types_supported.includes(grant), grant);
      }
      for (const method of ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]) {
        assert.ok(meta.token_endpoint_auth_methods_supported.includes(method), method);
      }
      assert.ok(meta.code_challenge_methods_supported.includes("S256"));
      assert.ok(meta.scopes_supported.includes("offline_access"));
    });

    it("lets a browser page call the token endpoint (CORS)", async () => {
      const res = await fetch(as.tokenEndpoint, {
        method: "POST",
        headers: { origin: "http://127.0.0.1:9", "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ grant_type: "client_credentials", client_id: as.clients.post.client_id, client_secret: as.clients.post.client_secret }),
      });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("access-control-allow-origin"), "http://127.0.0.1:9");
      await res.arrayBuffer();
    });

    it("serves the same metadata at the RFC 8414 path", async () => {
      const oidc = await (await fetch(as.discoveryUrl)).json();
      const res = await fetch(as.metadataUrl);
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), oidc);
    });

    it("publishes public signing keys only", async () => {
      const { keys } = await (await fetch(as.jwksUri)).json();
      assert.ok(keys.length >= 1);
      for (const key of keys) {
        assert.equal(key.d, undefined);
        assert.equal(typeof key.kid, "string");
      }
    });
  });

  describe("authorization code flow (headless user)", () => {
    it("yields a refresh token and an access token the API accepts", async () => {
      const tokens = await obtainRefreshToken(as, { client: "public" });
      assert.equal(typeof tokens.refresh_token, "string");
      assert.ok(tokens.refresh_token.length >= 40);
      assert.equal(tokens.token_type, "Bearer");
      assert.equal(tokens.expires_in, 3);
      assert.equal(tokens.scope, "api:read api:write");
      assert.equal(as.stats.logins, 1);
      assert.equal(as.stats.consents, 1);
      assert.equal(as.stats.tokenIssued.authorization_code, 1);
      await assertApiAccepts(as, tokens.access_token, { sub: "alice", client_id: as.clients.public.client_id });
    });

    it("works for a confidential client too (client_secret_basic at the token endpoint)", async () => {
      const tokens = await obtainRefreshToken(as, { client: "basic" });
      assert.equal(typeof tokens.refresh_token, "string");
      await assertApiAccepts(as, tokens.access_token, { client_id: as.clients.basic.client_id });
    });

    it("fails on a wrong password, counting the failure", async () => {
      await assert.rejects(obtainRefreshToken(as, { password: "wrong" }), /login refused/);
      assert.equal(as.stats.loginFailures, 1);
      assert.equal(as.stats.logins, 0);
      assert.equal(as.stats.tokenRequests.authorization_code, 0);
    });

    it("gives no refresh token without offline_access", async () => {
      await assert.rejects(obtainRefreshToken(as, { scope: "openid api:read" }), /no refresh_token/);
      assert.equal(as.stats.tokenIssued.authorization_code, 1);
    });
  });

  describe("refresh token rotation", () => {
    it("rotates on every refresh; the access token expires and a refresh replaces it", async () => {
      const client = as.clients.public;
      as.setAccessTokenTtl(2); // lives 1-2 s: long enough to use, short enough to wait out
      try {
        let { refresh_token: current, access_token: access } = await obtainRefreshToken(as, { client: "public" });
        const seen = new Set([current]);
        for (let i = 0; i < 3; i++) {
          const res = await refresh(as, client, current);
          assert.equal(res.status, 200);
          assert.equal(res.body.token_type, "Bearer");
          assert.equal(res.body.expires_in, 2);
          assert.ok(!seen.has(res.body.refresh_token), "a new refresh token each time");
          seen.add(res.body.refresh_token);
          current = res.body.refresh_token;
          access = res.body.access_token;
        }
        await assertApiAccepts(as, access);
        const receivedAt = Date.now();
        await waitPastExpiry(receivedAt, 2);
        await assertApiRefuses(as, access);
        const res = await refresh(as, client, current);
        assert.equal(res.status, 200);
        await assertApiAccepts(as, res.body.access_token);
        assert.equal(as.stats.refreshes, 4);
        assert.equal(as.stats.tokenRequests.refresh_token, 4);
        assert.equal(as.stats.reuseDetected, 0);
        assert.equal(as.stats.api.refused, 1);
      } finally {
        as.setAccessTokenTtl(3);
      }
    });

    it("refuses a rotated refresh token with invalid_grant and revokes the whole grant", async () => {
      const client = as.clients.basic;
      const first = await obtainRefreshToken(as, { client: "basic" });
      const second = await refresh(as, client, first.refresh_token);
      assert.equal(second.status, 200);
      await assertApiAccepts(as, second.body.access_token);

      const reuse = await refresh(as, client, first.refresh_token);
      assert.equal(reuse.status, 400);
      assert.equal(reuse.body.error, "invalid_grant");
      assert.equal(as.stats.reuseDetected, 1);
      assert.equal(as.stats.grantsRevoked, 1);

      // The grant is gone: the newest refresh token and its access token die with it.
      const after = await refresh(as, client, second.body.refresh_token);
      assert.equal(after.status, 400);
      assert.equal(after.body.error, "invalid_grant");
      await assertApiRefuses(as, second.body.access_token);
      assert.equal(as.stats.tokenErrors.invalid_grant, 2);
      assert.equal(as.stats.reuseDetected, 1);
    });

    it("lets exactly one of five concurrent refreshes with the same token through, and revokes the grant", async () => {
      // What a fleet without single-flight does: the harness must see it, not hide it.
      const client = as.clients.public;
      const { refresh_token } = await obtainRefreshToken(as, { client: "public" });
      const answers = await Promise.all(Array.from({ length: 5 }, () => refresh(as, client, refresh_token)));
      const ok = answers.filter((r) => r.status === 200);
      assert.equal(ok.length, 1);
      for (const r of answers.filter((a) => a.status !== 200)) {
        assert.equal(r.status, 400);
        assert.equal(r.body.error, "invalid_grant");
      }
      assert.equal(as.stats.reuseDetected, 1);
      assert.equal(as.stats.grantsRevoked, 1);
      assert.equal(as.stats.invalidGrantDetails["refresh token already used"], 1);
      // The winner's new refresh token died with the grant.
      const after = await refresh(as, client, ok[0].body.refresh_token);
      assert.equal(after.body.error, "invalid_grant");
    });

    it("does not let one client use another client's refresh token", async () => {
      const { refresh_token } = await obtainRefreshToken(as, { client: "post" });
      const res = await refresh(as, as.clients.basic, refresh_token);
      assert.equal(res.status, 400);
      assert.equal(res.body.error, "invalid_grant");
    });
  });

  describe("client credentials and client authentication", () => {
    for (const name of ["basic", "special", "post", "jwt"]) {
      it(`issues a client_credentials token to the ${name} client that the API accepts`, async () => {
        const client = as.clients[name];
        const res = await tokenRequest(as, client, { grant_type: "client_credentials", scope: "api:read" });
        assert.equal(res.status, 200);
        assert.equal(res.body.token_type, "Bearer");
        assert.equal(res.body.expires_in, 3);
        assert.equal(res.body.scope, "api:read");
        assert.equal(res.body.refresh_token, undefined);
        const body = await assertApiAccepts(as, res.body.access_token, { client_id: client.client_id, sub: null });
        assert.equal(body.scope, "api:read");
        assert.equal(as.stats.tokenIssued.client_credentials, 1);
      });
    }

    it("signs private_key_jwt assertions with RS256 as well as ES256", async () => {
      const res = await tokenRequest(as, as.clients.jwt, { grant_type: "client_credentials" }, { alg: "RS256" });
      assert.equal(res.status, 200);
      await assertApiAccepts(as, res.body.access_token);
    });

    it("accepts the explicit resource indicator and refuses an unknown one", async () => {
      const ok = await tokenRequest(as, as.clients.post, { grant_type: "client_credentials", resource: as.api.resource });
      assert.equal(ok.status, 200);
      const bad = await tokenRequest(as, as.clients.post, { grant_type: "client_credentials", resource: "https://elsewhere.example/" });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.error, "invalid_target");
    });

    it("refuses a wrong secret with 401 invalid_client (and a challenge for Basic)", async () => {
      const basic = await tokenRequest(as, { ...as.clients.basic, client_secret: "wrong" }, { grant_type: "client_credentials" });
      assert.equal(basic.status, 401);
      assert.equal(basic.body.error, "invalid_client");
      assert.match(basic.headers.get("www-authenticate") ?? "", /^Basic /);
      const post = await tokenRequest(as, { ...as.clients.post, client_secret: "wrong" }, { grant_type: "client_credentials" });
      assert.equal(post.status, 401);
      assert.equal(post.body.error, "invalid_client");
      assert.equal(as.stats.tokenErrors.invalid_client, 2);
    });

    it("treats client_secret_basic and client_secret_post as one method, but not private_key_jwt", async () => {
      // oidc-provider quirk: a client registered for either secret method may use the other.
      const swapped = await tokenRequest(as, { ...as.clients.basic, token_endpoint_auth_method: "client_secret_post" }, { grant_type: "client_credentials" });
      assert.equal(swapped.status, 200);
      const secretForJwt = await tokenRequest(as, null, { grant_type: "client_credentials", client_id: as.clients.jwt.client_id, client_secret: "x" });
      assert.equal(secretForJwt.status, 401);
      assert.equal(secretForJwt.body.error, "invalid_client");
    });

    it("refuses client_credentials to the public client (invalid_request, not unauthorized_client)", async () => {
      // oidc-provider quirk: a grant type the client is not registered for is answered
      // invalid_request "requested grant type is not allowed for this client"; RFC 6749 says
      // unauthorized_client (the reference server's OAuth mode gives that one).
      const res = await tokenRequest(as, as.clients.public, { grant_type: "client_credentials" });
      assert.equal(res.status, 400);
      assert.equal(res.body.error, "invalid_request");
      const password = await tokenRequest(as, as.clients.basic, { grant_type: "password", username: "alice", password: "alice-password" });
      assert.equal(password.status, 400);
      assert.equal(password.body.error, "unsupported_grant_type");
    });

    it("drops an unknown client_credentials scope; a refresh asking for more scope is invalid_scope", async () => {
      const cc = await tokenRequest(as, as.clients.basic, { grant_type: "client_credentials", scope: "api:read admin" });
      assert.equal(cc.status, 200);
      assert.equal(cc.body.scope, "api:read");
      const { refresh_token } = await obtainRefreshToken(as, { client: "basic", scope: "openid offline_access api:read" });
      const wider = await tokenRequest(as, as.clients.basic, { grant_type: "refresh_token", refresh_token, scope: "api:read api:write" });
      assert.equal(wider.status, 400);
      assert.equal(wider.body.error, "invalid_scope");
      assert.equal(as.stats.reuseDetected, 0);
    });

    it("refuses a replayed, expired or foreign-key client assertion", async () => {
      const client = as.clients.jwt;
      const send = (assertion) =>
        tokenRequest(as, null, {
          grant_type: "client_credentials",
          client_id: client.client_id,
          client_assertion_type: ASSERTION_TYPE,
          client_assertion: assertion,
        });
      const assertion = clientAssertion({ clientId: client.client_id, audience: as.tokenEndpoint, privateJwk: client.keys.ES256 });
      assert.equal((await send(assertion)).status, 200);
      const replay = await send(assertion);
      assert.equal(replay.status, 401);
      assert.equal(replay.body.error, "invalid_client");

      const expired = clientAssertion({
        clientId: client.client_id,
        audience: as.tokenEndpoint,
        privateJwk: client.keys.ES256,
        now: Date.now() - 600_000,
      });
      assert.equal((await send(expired)).status, 401);

      // Same kid, another key: the signature does not verify.
      const other = (await import("node:crypto")).generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "jwk" });
      const forged = signJwt(
        { alg: "ES256", kid: client.keys.ES256.kid },
        { iss: client.client_id, sub: client.client_id, aud: as.tokenEndpoint, jti: randomUUID(), exp: Math.floor(Date.now() / 1000) + 60 },
        { ...other, alg: "ES256" },
      );
      assert.equal((await send(forged)).status, 401);
      assert.equal(as.stats.tokenErrors.invalid_client, 3);
      assert.equal(as.stats.tokenIssued.client_credentials, 1);
      assert.equal(publicJwk(client.keys.ES256).d, undefined);
    });
  });

  describe("revocation (RFC 7009)", () => {
    it("revoking the refresh token ends the grant: no refresh, its access token refused", async () => {
      const client = as.clients.basic;
      const tokens = await obtainRefreshToken(as, { client: "basic" });
      const res = await postForm(as, as.revocationEndpoint, client, { token: tokens.refresh_token, token_type_hint: "refresh_token" });
      assert.equal(res.status, 200);
      assert.equal(as.stats.revocations, 1);
      assert.equal(as.stats.grantsRevoked, 1);
      const after = await refresh(as, client, tokens.refresh_token);
      assert.equal(after.status, 400);
      assert.equal(after.body.error, "invalid_grant");
      await assertApiRefuses(as, tokens.access_token);
    });

    it("answers 200 for an unknown token and refuses an unauthenticated caller", async () => {
      const unknown = await postForm(as, as.revocationEndpoint, as.clients.post, { token: "not-a-token" });
      assert.equal(unknown.status, 200);
      const anonymous = await postForm(as, as.revocationEndpoint, { ...as.clients.post, client_secret: "wrong" }, { token: "x" });
      assert.equal(anonymous.status, 401);
      assert.equal(anonymous.body.error, "invalid_client");
      assert.equal(as.stats.revocations, 1);
      assert.equal(as.stats.revocationErrors, 1);
    });

    it("revokes a client_credentials access token", async () => {
      const client = as.clients.post;
      const { body } = await tokenRequest(as, client, { grant_type: "client_credentials" });
      await assertApiAccepts(as, body.access_token);
      const res = await postForm(as, as.revocationEndpoint, client, { token: body.access_token, token_type_hint: "access_token" });
      assert.equal(res.status, 200);
      await assertApiRefuses(as, body.access_token);
    });
  });

  describe("the protected API", () => {
    it("answers 401 with the RFC 6750 challenge for a bad token, and none without one", async () => {
      await assertApiRefuses(as, "not-a-real-token");
      await assertApiRefuses(as, "aaa.bbb.ccc");
      const missing = await callApi(as, undefined);
      assert.equal(missing.status, 401);
      assert.equal(missing.headers.get("www-authenticate"), 'Bearer realm="test-api"');
      await missing.arrayBuffer();
      assert.deepEqual(as.stats.api, { accepted: 0, refused: 3, forbidden: 0 });
    });

    it("answers a CORS preflight and exposes WWW-Authenticate to a browser page", async () => {
      const pre = await fetch(`${as.api.url}/api/me`, {
        method: "OPTIONS",
        headers: { origin: "http://127.0.0.1:9", "access-control-request-headers": "authorization" },
      });
      assert.equal(pre.status, 204);
      assert.equal(pre.headers.get("access-control-allow-origin"), "*");
      assert.match(pre.headers.get("access-control-allow-headers"), /authorization/);
      const res = await callApi(as, "bad");
      assert.match(res.headers.get("access-control-expose-headers"), /www-authenticate/);
      await res.arrayBuffer();
      assert.deepEqual(as.stats.api, { accepted: 0, refused: 1, forbidden: 0 });
    });

    it("answers 403 insufficient_scope when the token lacks api:write", async () => {
      const { body } = await tokenRequest(as, as.clients.post, { grant_type: "client_credentials", scope: "api:read" });
      const res = await callApi(as, body.access_token, "/api/write");
      assert.equal(res.status, 403);
      assert.match(res.headers.get("www-authenticate"), /error="insufficient_scope"/);
      await res.arrayBuffer();
      const { body: writer } = await tokenRequest(as, as.clients.post, { grant_type: "client_credentials", scope: "api:write" });
      assert.equal((await callApi(as, writer.access_token, "/api/write")).status, 200);
      assert.deepEqual(as.stats.api, { accepted: 1, refused: 0, forbidden: 1 });
    });
  });

  describe("counters", () => {
    it("count a known sequence exactly and reset in place", async () => {
      const stats = as.stats;
      const tokens = await obtainRefreshToken(as, { client: "post" });
      const r1 = await refresh(as, as.clients.post, tokens.refresh_token);
      await refresh(as, as.clients.post, tokens.refresh_token); // reuse
      await tokenRequest(as, as.clients.jwt, { grant_type: "client_credentials" });
      await tokenRequest(as, as.clients.jwt, { grant_type: "client_credentials" });
      await postForm(as, as.revocationEndpoint, as.clients.post, { token: r1.body.refresh_token });
      await callApi(as, "nope");
      assert.deepEqual(stats.tokenRequests, { authorization_code: 1, refresh_token: 2, client_credentials: 2, other: 0 });
      assert.deepEqual(stats.tokenIssued, { authorization_code: 1, refresh_token: 1, client_credentials: 2, other: 0 });
      assert.deepEqual(stats.tokenErrors, { invalid_grant: 1 });
      assert.deepEqual(stats.invalidGrantDetails, { "refresh token already used": 1 });
      assert.equal(stats.refreshes, 1);
      assert.equal(stats.reuseDetected, 1);
      assert.equal(stats.grantsRevoked, 1); // revoking a token of an already revoked grant revokes nothing more
      assert.equal(stats.revocations, 1);
      assert.equal(stats.serverErrors, 0);
      assert.deepEqual(stats.api, { accepted: 0, refused: 1, forbidden: 0 });
      as.resetStats();
      assert.equal(as.stats, stats);
      assert.equal(stats.refreshes, 0);
      assert.deepEqual(stats.tokenErrors, {});
    });
  });

});

describe("JWT access tokens (RFC 9068)", () => {
  let as;
  before(async () => {
    as = await startProvider({ accessTokenFormat: "jwt", accessTokenTtl: 30 });
  });
  after(() => as.close());

  it("issues signed JWT access tokens the API verifies without introspection", async () => {
    const { status, body } = await tokenRequest(as, as.clients.basic, { grant_type: "client_credentials", scope: "api:read" });
    assert.equal(status, 200);
    const parts = body.access_token.split(".");
    assert.equal(parts.length, 3);
    const header = JSON.parse(Buffer.from(parts[0], "base64url"));
    const claims = JSON.parse(Buffer.from(parts[1], "base64url"));
    assert.equal(header.typ, "at+jwt");
    assert.equal(header.alg, "RS256");
    assert.equal(claims.aud, as.api.audience);
    assert.equal(claims.iss, as.issuer);
    assert.equal(claims.client_id, as.clients.basic.client_id);
    await assertApiAccepts(as, body.access_token, { client_id: as.clients.basic.client_id });
    assert.equal(as.stats.introspections, 0);

    // One changed claim and the signature no longer verifies.
    const forged = `${parts[0]}.${Buffer.from(JSON.stringify({ ...claims, scope: "api:write" })).toString("base64url")}.${parts[2]}`;
    await assertApiRefuses(as, forged);
  });

  it("a user's tokens through the code flow are JWTs too", async () => {
    const tokens = await obtainRefreshToken(as, { client: "jwt" });
    assert.equal(tokens.access_token.split(".").length, 3);
    await assertApiAccepts(as, tokens.access_token, { sub: "alice" });
  });
});

describe("lifecycle", () => {
  it("close() stops both servers and is idempotent", async () => {
    const as = await startProvider();
    const { refresh_token } = await obtainRefreshToken(as);
    assert.ok(refresh_token);
    await Promise.all([as.close(), as.close()]);
    await assert.rejects(fetch(as.discoveryUrl));
    await assert.rejects(fetch(`${as.api.url}/api/me`));
  });

  it("two providers in one process keep separate storage", async () => {
    const [a, b] = await Promise.all([startProvider(), startProvider()]);
    try {
      const { refresh_token } = await obtainRefreshToken(a);
      const res = await refresh(b, b.clients.public, refresh_token);
      assert.equal(res.status, 400);
      assert.equal(res.body.error, "invalid_grant");
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});

describe("secrets and the CLI", () => {
  it("a harness or client printed by accident shows no secret, private key or password", async () => {
    const as = await startProvider();
    try {
      const printed = [
        JSON.stringify(as),
        inspect(as, { depth: 10 }),
        JSON.stringify(as.clients),
        inspect(as.clients, { depth: 10 }),
      ].join("\n");
      const secrets = [
        as.clients.basic.client_secret,
        as.clients.special.client_secret,
        as.clients.post.client_secret,
        as.clients.jwt.keys.ES256.d,
        as.clients.jwt.keys.RS256.d,
        as.users.alice,
      ];
      for (const secret of secrets) assert.ok(!printed.includes(secret), "a secret was printable");
      // ...while the credentials for another process carry them.
      const creds = JSON.stringify(as.credentials());
      for (const secret of secrets) assert.ok(creds.includes(secret));
    } finally {
      await as.close();
    }
  });

  it("runs as a CLI: one stdout line, a private credentials file, counters over HTTP, exit on SIGTERM", async () => {
    const dir = mkdtempSync(join(tmpdir(), "oidc-harness-"));
    const file = join(dir, "credentials.json");
    const child = spawn(
      process.execPath,
      [fileURLToPath(new URL("./provider.mjs", import.meta.url)), "--credentials-file", file, "--access-ttl", "2"],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    try {
      let out = "";
      let err = "";
      child.stderr.on("data", (d) => (err += d));
      for await (const chunk of child.stdout) {
        out += chunk;
        if (out.includes("\n")) break;
      }
      const m = /^OIDC_PROVIDER_URL=(http:\/\/127\.0\.0\.1:\d+)\n$/.exec(out);
      assert.ok(m, "one URL line");
      const creds = JSON.parse(readFileSync(file, "utf8"));
      assert.equal(creds.issuer, m[1]);
      assert.equal(statSync(file).mode & 0o777, 0o600);
      // The code flow and a refresh, from this process, against the child's provider.
      const tokens = await obtainRefreshToken(creds, { client: "jwt" });
      assert.equal(tokens.expires_in, 2);
      const res = await refresh(creds, creds.clients.jwt, tokens.refresh_token);
      assert.equal(res.status, 200);
      assert.equal((await callApi(creds, res.body.access_token)).status, 200);
      const stats = await (await fetch(creds.statsUrl)).json();
      assert.equal(stats.refreshes, 1);
      assert.equal(stats.tokenIssued.authorization_code, 1);
      assert.equal(stats.api.accepted, 1);
      child.kill("SIGTERM");
      const [code] = await once(child, "exit");
      assert.equal(code, 0);
      assert.equal(err, "");
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
