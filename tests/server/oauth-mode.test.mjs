// Tests for the reference server's OAuth 2.0 mode (token endpoint, rotation with reuse
// detection, client credentials, revocation, RFC 8414 metadata, and the faults a real
// authorization server will not produce on demand). Plain fetch only.
// Run: node --test tests/server/

import { describe, it, before, after, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { inspect } from "node:util";
import { startServer } from "./reference-server.mjs";

const SPECIAL_SECRET = "s3cr3t +%/:=&?~";
const CLIENTS = {
  "demo-client": { secret: "demo-client-secret", grantTypes: ["refresh_token", "client_credentials", "password"], scope: "read write" },
  "public-client": { secret: null, grantTypes: ["refresh_token", "password"], scope: "read write" },
  "special client": { secret: SPECIAL_SECRET, grantTypes: ["client_credentials"], scope: "read" },
  "no-refresh": { secret: "no-refresh-secret", grantTypes: ["password"] },
};
const DEMO = { client_id: "demo-client", client_secret: "demo-client-secret" };
const PUBLIC = { client_id: "public-client" };
const USER = { username: "demo", password: "demo-password" };

const formEncode = (s) => new URLSearchParams({ s }).toString().slice(2);
const basic = (id, secret, encode = true) =>
  `Basic ${Buffer.from(encode ? `${formEncode(id)}:${formEncode(secret)}` : `${id}:${secret}`).toString("base64")}`;

/** POSTs a form. `auth`: "basic" (default for a client with a secret), "post" or "none". */
async function form(server, path, client, fields, { auth, headers = {} } = {}) {
  const how = auth ?? (client?.client_secret ? "basic" : "none");
  const body = { ...fields };
  const h = { "content-type": "application/x-www-form-urlencoded", ...headers };
  if (client && how === "basic") h.authorization = basic(client.client_id, client.client_secret);
  if (client && how === "post") Object.assign(body, { client_id: client.client_id, client_secret: client.client_secret });
  if (client && how === "none") body.client_id = client.client_id;
  const res = await fetch(server.url + path, { method: "POST", headers: h, body: new URLSearchParams(body) });
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    // not JSON
  }
  return { status: res.status, headers: res.headers, text, body: json };
}

const token = (server, client, fields, opts) => form(server, "/oauth/token", client, fields, opts);
const revoke = (server, client, fields, opts) => form(server, "/oauth/revoke", client, fields, opts);
const passwordGrant = (server, client = DEMO, opts) => token(server, client, { grant_type: "password", ...USER }, opts);
const refreshGrant = (server, client, refreshToken, extra = {}, opts) =>
  token(server, client, { grant_type: "refresh_token", refresh_token: refreshToken, ...extra }, opts);
const products = (server, accessToken) =>
  fetch(`${server.url}/api/v1/products`, { headers: { authorization: `Bearer ${accessToken}` } });

function assertOauthError(res, status, error) {
  assert.equal(res.status, status);
  assert.match(res.headers.get("content-type"), /^application\/json/);
  assert.equal(res.headers.get("cache-control"), "no-store");
  assert.equal(res.body.error, error);
  assert.equal(typeof res.body.error_description, "string");
}

async function assertApiAccepts(server, accessToken) {
  const res = await products(server, accessToken);
  assert.equal(res.status, 200);
  assert.equal((await res.json()).success, true);
}

async function assertApiRefuses(server, accessToken) {
  const res = await products(server, accessToken);
  assert.equal(res.status, 401);
  assert.equal(res.headers.get("www-authenticate"), 'Bearer error="invalid_token"');
  await res.arrayBuffer();
}

const control = async (server, path, body) => {
  const res = await fetch(`${server.url}/__control/${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
};

describe("reference server, OAuth 2.0 mode", () => {
  let server;
  before(async () => {
    server = await startServer({ oauthClients: CLIENTS });
  });
  after(() => server.close());
  beforeEach(() => server.reset({ config: true }));

  describe("RFC 8414 metadata", () => {
    it("describes the token and revocation endpoints, grants and authentication methods", async () => {
      const res = await fetch(`${server.url}/.well-known/oauth-authorization-server`);
      assert.equal(res.status, 200);
      const meta = await res.json();
      assert.equal(meta.issuer, server.url);
      assert.equal(meta.token_endpoint, `${server.url}/oauth/token`);
      assert.equal(meta.revocation_endpoint, `${server.url}/oauth/revoke`);
      assert.equal(server.oauth.tokenEndpoint, meta.token_endpoint);
      assert.deepEqual(meta.grant_types_supported, ["refresh_token", "client_credentials", "password"]);
      assert.deepEqual(meta.token_endpoint_auth_methods_supported, ["client_secret_basic", "client_secret_post", "none"]);
      assert.deepEqual(meta.scopes_supported.sort(), ["read", "write"]);
      assert.equal(server.oauth.stats.metadata, 1);
    });

    it("is served by the default clients when startServer is given none", async () => {
      const plain = await startServer();
      try {
        assert.deepEqual(Object.keys(plain.oauth.clients), ["demo-client", "public-client"]);
        const res = await passwordGrant(plain, DEMO);
        assert.equal(res.status, 200);
      } finally {
        await plain.close();
      }
    });
  });

  describe("token endpoint", () => {
    it("answers the password grant with an RFC 6749 token response the API accepts", async () => {
      const res = await passwordGrant(server);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get("cache-control"), "no-store");
      assert.equal(res.headers.get("pragma"), "no-cache");
      assert.deepEqual(Object.keys(res.body).sort(), ["access_token", "expires_in", "refresh_token", "scope", "token_type"]);
      assert.equal(res.body.token_type, "Bearer");
      assert.equal(res.body.expires_in, 3600);
      assert.equal(res.body.scope, "read write");
      await assertApiAccepts(server, res.body.access_token);
      assert.equal(server.oauth.stats.password, 1);
      assert.equal(server.oauth.lastTokenRequest.auth_method, "client_secret_basic");
    });

    it("authenticates with client_secret_post and as a public client (none)", async () => {
      const post = await passwordGrant(server, DEMO, { auth: "post" });
      assert.equal(post.status, 200);
      assert.equal(server.oauth.lastTokenRequest.auth_method, "client_secret_post");
      const none = await passwordGrant(server, PUBLIC);
      assert.equal(none.status, 200);
      assert.equal(server.oauth.lastTokenRequest.auth_method, "none");
      // A confidential client cannot skip its secret.
      assertOauthError(await passwordGrant(server, { client_id: "demo-client" }, { auth: "none" }), 401, "invalid_client");
    });

    it("decodes Basic credentials as RFC 6749 §2.3.1 says, or raw when told to", async () => {
      const special = { client_id: "special client", client_secret: SPECIAL_SECRET };
      const encoded = basic(special.client_id, special.client_secret, true);
      const raw = basic(special.client_id, special.client_secret, false);
      const cc = (authorization) => token(server, null, { grant_type: "client_credentials" }, { headers: { authorization } });
      assert.equal((await cc(encoded)).status, 200);
      const refused = await cc(raw);
      assertOauthError(refused, 401, "invalid_client");
      assert.match(refused.headers.get("www-authenticate"), /^Basic realm="reference-server"/);

      // Raw Basic cannot carry a ':' in the client id; that is one reason RFC 6749 encodes.
      server.oauth.settings.basicDecoding = "raw";
      assert.equal((await cc(raw)).status, 200);
      assertOauthError(await cc(encoded), 401, "invalid_client");
    });

    it("answers the RFC 6749 error codes", async () => {
      const s = server;
      assertOauthError(await token(s, DEMO, { grant_type: "urn:example:nope" }), 400, "unsupported_grant_type");
      assertOauthError(await token(s, DEMO, {}), 400, "invalid_request");
      assertOauthError(await token(s, PUBLIC, { grant_type: "client_credentials" }), 400, "unauthorized_client");
      assertOauthError(await token(s, { client_id: "no-refresh", client_secret: "no-refresh-secret" }, { grant_type: "client_credentials" }), 400, "unauthorized_client");
      assertOauthError(await token(s, DEMO, { grant_type: "client_credentials", scope: "read admin" }), 400, "invalid_scope");
      assertOauthError(await token(s, DEMO, { grant_type: "password", username: "demo", password: "wrong" }), 400, "invalid_grant");
      assertOauthError(await refreshGrant(s, DEMO, "not-a-token"), 400, "invalid_grant");
      assertOauthError(await token(s, DEMO, { grant_type: "refresh_token" }), 400, "invalid_request");

      const badBasic = await token(s, { ...DEMO, client_secret: "wrong" }, { grant_type: "client_credentials" });
      assertOauthError(badBasic, 401, "invalid_client");
      assert.match(badBasic.headers.get("www-authenticate"), /^Basic /);
      const badPost = await token(s, { ...DEMO, client_secret: "wrong" }, { grant_type: "client_credentials" }, { auth: "post" });
      assertOauthError(badPost, 401, "invalid_client");
      assert.equal(badPost.headers.get("www-authenticate"), null);
      assertOauthError(await token(s, null, { grant_type: "client_credentials" }), 401, "invalid_client");
      // Two authentication methods at once, a repeated parameter, JSON instead of a form.
      assertOauthError(
        await token(s, DEMO, { grant_type: "client_credentials", client_secret: DEMO.client_secret }),
        400,
        "invalid_request",
      );
      const repeated = await fetch(`${s.url}/oauth/token`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", authorization: basic(DEMO.client_id, DEMO.client_secret) },
        body: "grant_type=client_credentials&scope=read&scope=write",
      });
      assertOauthError({ status: repeated.status, headers: repeated.headers, body: await repeated.json() }, 400, "invalid_request");
      const json = await fetch(`${s.url}/oauth/token`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ grant_type: "client_credentials" }),
      });
      assert.equal(json.status, 400);
      assert.equal((await json.json()).error, "invalid_request");
      const get = await fetch(`${s.url}/oauth/token`);
      assert.equal(get.status, 405);
      assert.equal((await get.json()).error, "invalid_request");

      assert.deepEqual(s.oauth.errors, {
        unsupported_grant_type: 1,
        invalid_request: 6,
        unauthorized_client: 2,
        invalid_scope: 1,
        invalid_grant: 2,
        invalid_client: 3,
      });
      assert.equal(s.oauth.stats.errors, 15);
      assert.equal(s.oauth.stats.issued, 0);
    });

    it("passes scope, resource and audience through to what the server saw", async () => {
      const res = await token(server, DEMO, {
        grant_type: "client_credentials",
        scope: "read",
        resource: "https://api.example/",
        audience: "orders",
      });
      assert.equal(res.status, 200);
      assert.equal(res.body.scope, "read");
      assert.deepEqual(server.oauth.lastTokenRequest, {
        grant_type: "client_credentials",
        client_id: "demo-client",
        auth_method: "client_secret_basic",
        scope: "read",
        resource: ["https://api.example/"],
        audience: ["orders"],
      });
    });
  });

  describe("client credentials", () => {
    it("issues an access token without a refresh token; it expires like any other", async () => {
      server.config.accessTtlMs = 1000;
      const res = await token(server, DEMO, { grant_type: "client_credentials" });
      assert.equal(res.status, 200);
      assert.equal(res.body.refresh_token, undefined);
      assert.equal(res.body.expires_in, 1);
      assert.equal(res.body.scope, "read write");
      await assertApiAccepts(server, res.body.access_token);
      server.expireAccessTokens();
      await assertApiRefuses(server, res.body.access_token);
      assert.equal(server.oauth.stats.clientCredentials, 1);
    });
  });

  describe("refresh token rotation", () => {
    it("rotates every refresh; reusing a rotated token revokes the whole grant and is counted", async () => {
      const first = (await passwordGrant(server, PUBLIC)).body;
      const second = await refreshGrant(server, PUBLIC, first.refresh_token);
      assert.equal(second.status, 200);
      assert.notEqual(second.body.refresh_token, first.refresh_token);
      const third = await refreshGrant(server, PUBLIC, second.body.refresh_token);
      assert.equal(third.status, 200);
      await assertApiAccepts(server, third.body.access_token);

      assertOauthError(await refreshGrant(server, PUBLIC, first.refresh_token), 400, "invalid_grant");
      assert.equal(server.oauth.stats.reuse, 1);
      // The grant is gone: the newest refresh token and the live access token too.
      assertOauthError(await refreshGrant(server, PUBLIC, third.body.refresh_token), 400, "invalid_grant");
      await assertApiRefuses(server, third.body.access_token);
      assert.equal(server.oauth.stats.reuse, 1);
      assert.equal(server.oauth.stats.refresh, 2);
    });

    it("refuses another client's refresh token without revoking it", async () => {
      const { refresh_token } = (await passwordGrant(server, PUBLIC)).body;
      assertOauthError(await refreshGrant(server, DEMO, refresh_token), 400, "invalid_grant");
      assert.equal((await refreshGrant(server, PUBLIC, refresh_token)).status, 200);
    });

    it("narrows scope on request and refuses a wider one (invalid_scope)", async () => {
      const { refresh_token } = (await token(server, DEMO, { grant_type: "password", ...USER, scope: "read" })).body;
      assertOauthError(await refreshGrant(server, DEMO, refresh_token, { scope: "read write" }), 400, "invalid_scope");
      const ok = await refreshGrant(server, DEMO, refresh_token, { scope: "read" });
      assert.equal(ok.status, 200);
      assert.equal(ok.body.scope, "read");
    });

    it("an expired refresh token is invalid_grant", async () => {
      server.config.refreshTtlMs = -1;
      const { refresh_token } = (await passwordGrant(server)).body;
      assertOauthError(await refreshGrant(server, DEMO, refresh_token), 400, "invalid_grant");
      assert.equal(server.oauth.stats.reuse, 0);
    });

    it("honours a reuse within reuseGraceMs", async () => {
      server.oauth.settings.reuseGraceMs = 10_000;
      const { refresh_token } = (await passwordGrant(server)).body;
      assert.equal((await refreshGrant(server, DEMO, refresh_token)).status, 200);
      const again = await refreshGrant(server, DEMO, refresh_token);
      assert.equal(again.status, 200);
      assert.equal((await refreshGrant(server, DEMO, again.body.refresh_token)).status, 200);
      assert.equal(server.oauth.stats.graceReuse, 1);
      assert.equal(server.oauth.stats.reuse, 0);
    });

    it("without rotation, answers without refresh_token and the old one keeps working", async () => {
      server.oauth.settings.rotateRefreshTokens = false;
      const { refresh_token } = (await passwordGrant(server)).body;
      for (let i = 0; i < 3; i++) {
        const res = await refreshGrant(server, DEMO, refresh_token);
        assert.equal(res.status, 200);
        assert.equal(res.body.refresh_token, undefined);
        await assertApiAccepts(server, res.body.access_token);
      }
      assert.equal(server.oauth.stats.notRotated, 3);
      assert.equal(server.oauth.stats.reuse, 0);
    });

    it("a client without the refresh_token grant gets no refresh token", async () => {
      const res = await passwordGrant(server, { client_id: "no-refresh", client_secret: "no-refresh-secret" });
      assert.equal(res.status, 200);
      assert.equal(res.body.refresh_token, undefined);
    });
  });

  describe("revocation (RFC 7009)", () => {
    it("revoking a refresh token ends the grant; its access token is refused", async () => {
      const pair = (await passwordGrant(server)).body;
      const res = await revoke(server, DEMO, { token: pair.refresh_token, token_type_hint: "refresh_token" });
      assert.equal(res.status, 200);
      assert.equal(res.text, "");
      assert.equal(res.headers.get("cache-control"), "no-store");
      assertOauthError(await refreshGrant(server, DEMO, pair.refresh_token), 400, "invalid_grant");
      await assertApiRefuses(server, pair.access_token);
      assert.equal(server.oauth.stats.revoked, 1);
      assert.equal(server.oauth.stats.reuse, 0);
    });

    it("revoking an access token ends that token only", async () => {
      const pair = (await passwordGrant(server, PUBLIC)).body;
      assert.equal((await revoke(server, PUBLIC, { token: pair.access_token })).status, 200);
      await assertApiRefuses(server, pair.access_token);
      const next = await refreshGrant(server, PUBLIC, pair.refresh_token);
      assert.equal(next.status, 200);
      await assertApiAccepts(server, next.body.access_token);
    });

    it("answers 200 for unknown and other clients' tokens, revoking nothing", async () => {
      const pair = (await passwordGrant(server, PUBLIC)).body;
      assert.equal((await revoke(server, DEMO, { token: "unknown" })).status, 200);
      assert.equal((await revoke(server, DEMO, { token: pair.refresh_token })).status, 200);
      assert.equal((await refreshGrant(server, PUBLIC, pair.refresh_token)).status, 200);
      assert.equal(server.oauth.stats.revoke, 2);
      assert.equal(server.oauth.stats.revoked, 0);
    });

    it("refuses an unauthenticated caller, a missing token and an unknown hint", async () => {
      assertOauthError(await revoke(server, { ...DEMO, client_secret: "wrong" }, { token: "x" }), 401, "invalid_client");
      assertOauthError(await revoke(server, DEMO, {}), 400, "invalid_request");
      assertOauthError(await revoke(server, DEMO, { token: "x", token_type_hint: "id_token" }), 400, "unsupported_token_type");
    });

    it("revokeClient ends every grant of one client", async () => {
      const mine = (await passwordGrant(server, PUBLIC)).body;
      const theirs = (await passwordGrant(server, DEMO)).body;
      server.oauth.revokeClient("public-client");
      assertOauthError(await refreshGrant(server, PUBLIC, mine.refresh_token), 400, "invalid_grant");
      assert.equal((await refreshGrant(server, DEMO, theirs.refresh_token)).status, 200);
    });
  });

  describe("faults a real server will not produce on demand", () => {
    it("503 with Retry-After and temporarily_unavailable, then normal service", async () => {
      server.fault(
        { path: "/oauth/token", method: "POST" },
        { status: 503, headers: { "retry-after": "2" }, body: { error: "temporarily_unavailable", error_description: "maintenance" } },
      );
      const down = await passwordGrant(server);
      assert.equal(down.status, 503);
      assert.equal(down.headers.get("retry-after"), "2");
      assert.equal(down.body.error, "temporarily_unavailable");
      assert.equal((await passwordGrant(server)).status, 200);
      assert.equal(server.stats.faults, 1);
      assert.equal(server.oauth.stats.password, 1);
    });

    it("a slow answer, a broken body, an oversized body", async () => {
      server.fault({ path: "/oauth/token" }, { delayMs: 300 });
      const t0 = Date.now();
      assert.equal((await passwordGrant(server)).status, 200);
      assert.ok(Date.now() - t0 >= 290);

      server.fault({ path: "/oauth/token" }, { status: 200, body: '{"access_token": "trunc', headers: { "content-type": "application/json" } });
      const broken = await passwordGrant(server);
      assert.equal(broken.status, 200);
      assert.equal(broken.body, null); // not JSON

      server.fault({ path: "/oauth/token" }, { hugeBody: 2 * 1024 * 1024 });
      const huge = await passwordGrant(server);
      assert.equal(huge.text.length, 2 * 1024 * 1024);
      assert.equal(server.oauth.stats.password, 1); // only the slow one reached the handler
    });

    it("omitRefreshToken: one refresh answers without refresh_token; the old one must be kept", async () => {
      const { refresh_token } = (await passwordGrant(server)).body;
      server.fault({ path: "/oauth/token" }, { omitRefreshToken: true });
      const first = await refreshGrant(server, DEMO, refresh_token);
      assert.equal(first.status, 200);
      assert.equal(first.body.refresh_token, undefined);
      const second = await refreshGrant(server, DEMO, refresh_token);
      assert.equal(second.status, 200);
      assert.equal(typeof second.body.refresh_token, "string");
      assertOauthError(await refreshGrant(server, DEMO, refresh_token), 400, "invalid_grant"); // now rotated
      assert.equal(server.oauth.stats.notRotated, 1);
      assert.equal(server.oauth.stats.reuse, 1);
    });

    it("dropResponse: the rotation happens, the answer is lost, a naive retry is a reuse", async () => {
      const { refresh_token } = (await passwordGrant(server)).body;
      server.fault({ path: "/oauth/token" }, { dropResponse: true });
      await assert.rejects(refreshGrant(server, DEMO, refresh_token));
      assert.equal(server.oauth.stats.droppedResponses, 1);
      assertOauthError(await refreshGrant(server, DEMO, refresh_token), 400, "invalid_grant");
      assert.equal(server.oauth.stats.reuse, 1);

      // With a grace period the same retry is honoured.
      server.oauth.settings.reuseGraceMs = 5_000;
      const again = (await passwordGrant(server)).body;
      server.fault({ path: "/oauth/token" }, { dropResponse: true });
      await assert.rejects(refreshGrant(server, DEMO, again.refresh_token));
      assert.equal((await refreshGrant(server, DEMO, again.refresh_token)).status, 200);
      assert.equal(server.oauth.stats.graceReuse, 1);
    });

    it("a Date header skewed from local time, with expires_in still relative", async () => {
      server.config.dateSkewMs = -3_600_000;
      const res = await passwordGrant(server);
      assert.equal(res.status, 200);
      const skew = Date.parse(res.headers.get("date")) - Date.now();
      assert.ok(Math.abs(skew + 3_600_000) < 5_000, `skew ${skew}`);
      assert.equal(res.body.expires_in, 3600);
      await assertApiAccepts(server, res.body.access_token);
    });

    it("rejects malformed OAuth fault modifiers", () => {
      assert.throws(() => server.fault({ path: "/oauth/token" }, { omitRefreshToken: "yes" }), /must be true/);
      assert.throws(() => server.fault({ path: "/oauth/token" }, { dropResponse: true, status: 500 }), /combines/);
    });
  });

  describe("control API and secrets", () => {
    it("GET /__control/oauth shows settings, client ids and counters; POST patches settings", async () => {
      await passwordGrant(server);
      let r = await control(server, "oauth");
      assert.equal(r.status, 200);
      assert.deepEqual(r.body.data.settings, { rotateRefreshTokens: true, reuseGraceMs: 0, basicDecoding: "form" });
      assert.deepEqual(r.body.data.clients, Object.keys(CLIENTS));
      assert.equal(r.body.data.stats.password, 1);
      r = await control(server, "oauth", { rotateRefreshTokens: false, reuseGraceMs: 100 });
      assert.equal(r.status, 200);
      assert.equal(server.oauth.settings.rotateRefreshTokens, false);
      r = await control(server, "oauth", { basicDecoding: "latin1" });
      assert.equal(r.status, 400);
      r = await control(server, "oauth", { nope: 1 });
      assert.equal(r.status, 400);
      server.reset({ config: true });
      assert.deepEqual({ ...server.oauth.settings }, { rotateRefreshTokens: true, reuseGraceMs: 0, basicDecoding: "form" });
      assert.equal(server.oauth.stats.password, 0);
    });

    it("never exposes client secrets or tokens", async () => {
      const pair = (await passwordGrant(server)).body;
      await revoke(server, DEMO, { token: pair.access_token });
      const printed = [
        inspect(server, { depth: 10, getters: true }),
        JSON.stringify(server.oauth.snapshot()),
        JSON.stringify(server.oauth.lastTokenRequest),
        JSON.stringify((await control(server, "oauth")).body),
        JSON.stringify(server.log),
      ].join("\n");
      for (const secret of [pair.access_token, pair.refresh_token, "demo-client-secret", SPECIAL_SECRET, "demo-password"]) {
        assert.ok(!printed.includes(secret), "a secret was printable");
      }
    });

    it("rejects invalid OAuth startup options", async () => {
      await assert.rejects(startServer({ oauthClients: { "ü": { secret: "x" } } }), /printable ASCII/);
      await assert.rejects(startServer({ oauthClients: { a: { secret: "x", grantTypes: ["implicit"] } } }), /grantTypes/);
      await assert.rejects(startServer({ oauth: { basicDecoding: "latin1" } }), /basicDecoding/);
    });
  });
});
