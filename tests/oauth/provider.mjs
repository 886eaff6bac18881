// A real OAuth 2.0 / OpenID Connect authorization server for the OAuth 2.0 standards mode
// (issue 14): `oidc-provider` (the certified OpenID provider for Node, an exact-version
// devDependency) on 127.0.0.1 with a random port, plus a small protected API on a second
// local server that validates bearer tokens the way a resource server does (introspection
// for opaque tokens, signature and claims for JWT access tokens).
//
//   const as = await startProvider({ accessTokenTtl: 3 });
//   const { refresh_token } = await obtainRefreshToken(as, { client: "public" });
//   ... as.stats, as.clients.basic, as.api.url ...
//   await as.close();
//
// Or as a CLI, for clients in other processes and runtimes:
//   node tests/oauth/provider.mjs --credentials-file PATH [--access-ttl S] [--refresh-ttl S]
//        [--format opaque|jwt]
// prints exactly one line, `OIDC_PROVIDER_URL=http://127.0.0.1:PORT`, writes the endpoints,
// clients (with their secrets and private JWKs) and users to PATH (mode 0600, never to
// stdout), serves the counters at GET <api url>/__control/stats, and runs until SIGINT/SIGTERM.
// `obtainRefreshToken(JSON.parse(readFileSync(PATH)))` works from another process.
//
// What is configured (and why, for the next engineer):
// - grants: authorization_code (PKCE S256 required), refresh_token, client_credentials;
//   revocation (RFC 7009) and introspection (RFC 7662) on; discovery at
//   /.well-known/openid-configuration, and the same document at the RFC 8414 path
//   /.well-known/oauth-authorization-server (oidc-provider 8 does not serve that one itself).
// - rotateRefreshToken: true. Every refresh consumes the presented refresh token and issues a
//   new one; presenting a consumed one is answered `invalid_grant` and oidc-provider revokes
//   the whole grant (every refresh and access token of it). Counted as `reuseDetected`.
// - resource indicators (RFC 8707): one resource server, the test API. `defaultResource`
//   returns it when a request names none, and `useGrantedResource` is true, so every access
//   token (authorization code, refresh, client credentials) is issued for the API, whether
//   or not the client sends `resource`. Any other `resource` is `invalid_target`.
// - access tokens are opaque by default (the API introspects them, so a revoked grant is
//   refused at once); `accessTokenFormat: "jwt"` issues RS256 JWT access tokens (RFC 9068)
//   that the API verifies against the provider's JWKS (those stay valid until they expire).
// - clients, one per client authentication method: `basic` (client_secret_basic), `special`
//   (client_secret_basic with a secret full of characters RFC 6749 §2.3.1 form-encodes),
//   `post` (client_secret_post), `scoped` (client_secret_basic with a registered scope
//   allow-list, for invalid_scope), `jwt` (private_key_jwt, ES256 and RS256 keys generated with
//   node:crypto; the private JWKs are in `clients.jwt.keys`), `public` (none). All but
//   `public` may use client_credentials.
// - login and consent are this file's own interaction pages (HTML forms, a real password
//   check), not oidc-provider's devInteractions (which accept any password and print a
//   warning); `obtainRefreshToken` drives them over HTTP with a cookie jar.
// - storage: a Map adapter per provider. oidc-provider 8's built-in memory adapter is one
//   1000-entry LRU shared by every provider in the process, which a long test would evict.
//
// Secrets: nothing here logs a token, secret or key. `stats` holds counts only.

import http from "node:http";
import { once } from "node:events";
import { writeFileSync } from "node:fs";
import { inspect, parseArgs } from "node:util";
import { isMain } from "../server/reference-server.mjs";
import {
  createHash,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  randomUUID,
  sign as cryptoSign,
  timingSafeEqual,
  verify as cryptoVerify,
} from "node:crypto";
import Provider, { errors } from "oidc-provider";

export const API_SCOPES = "api:read api:write";
const RESOURCE_SCOPES = API_SCOPES.split(" ");

const b64url = (value) => Buffer.from(value).toString("base64url");
const sha256 = (value) => createHash("sha256").update(value).digest();
const equalSecret = (a, b) => typeof b === "string" && timingSafeEqual(sha256(a), sha256(b));
const escapeHtml = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

// ---------------------------------------------------------------------------------------
// Storage: oidc-provider's adapter interface over one Map per provider.

function mapAdapter() {
  const store = new Map();
  let writes = 0;
  const now = () => Date.now();
  const get = (key) => {
    const entry = store.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt !== undefined && entry.expiresAt <= now()) {
      store.delete(key);
      return undefined;
    }
    return entry.value;
  };
  const set = (key, value, expiresIn) => {
    store.set(key, { value, expiresAt: expiresIn ? now() + expiresIn * 1000 : undefined });
    if (++writes % 500 === 0) {
      const t = now();
      for (const [k, e] of store) if (e.expiresAt !== undefined && e.expiresAt <= t) store.delete(k);
    }
  };
  const grantable = new Set(["AccessToken", "AuthorizationCode", "RefreshToken", "DeviceCode", "BackchannelAuthenticationRequest"]);

  return class MapAdapter {
    constructor(model) {
      this.model = model;
    }
    key(id) {
      return `${this.model}:${id}`;
    }
    async upsert(id, payload, expiresIn) {
      const key = this.key(id);
      if (this.model === "Session") set(`sessionUid:${payload.uid}`, id, expiresIn);
      if (grantable.has(this.model) && payload.grantId) {
        const grantKey = `grant:${payload.grantId}`;
        const list = get(grantKey);
        if (list) list.push(key);
        else set(grantKey, [key]);
      }
      if (payload.userCode) set(`userCode:${payload.userCode}`, id, expiresIn);
      set(key, payload, expiresIn);
    }
    async find(id) {
      return get(this.key(id));
    }
    async findByUid(uid) {
      const id = get(`sessionUid:${uid}`);
      return id === undefined ? undefined : get(`Session:${id}`);
    }
    async findByUserCode(userCode) {
      const id = get(`userCode:${userCode}`);
      return id === undefined ? undefined : this.find(id);
    }
    async consume(id) {
      const value = get(this.key(id));
      if (value) value.consumed = Math.floor(now() / 1000);
    }
    async destroy(id) {
      store.delete(this.key(id));
    }
    async revokeByGrantId(grantId) {
      const grantKey = `grant:${grantId}`;
      for (const key of get(grantKey) ?? []) store.delete(key);
      store.delete(grantKey);
    }
  };
}

// ---------------------------------------------------------------------------------------
// Keys and client assertions (node:crypto only)

function keyPair(kind) {
  const { privateKey } =
    kind === "ES256"
      ? generateKeyPairSync("ec", { namedCurve: "P-256" })
      : generateKeyPairSync("rsa", { modulusLength: 2048 });
  const jwk = privateKey.export({ format: "jwk" });
  return { ...jwk, kid: `${kind.toLowerCase()}-${randomUUID().slice(0, 8)}`, alg: kind, use: "sig" };
}

/** The public half of a private JWK. */
export function publicJwk(jwk) {
  const { d, p, q, dp, dq, qi, ...pub } = jwk;
  return pub;
}

/** Signs a JWS (compact) with a private JWK; ES256 (P-256, IEEE P1363 signature) or RS256. */
export function signJwt(header, payload, privateJwk) {
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  const key = { key: privateJwk, format: "jwk" };
  const signature =
    header.alg === "ES256"
      ? cryptoSign("sha256", Buffer.from(input), { ...key, dsaEncoding: "ieee-p1363" })
      : cryptoSign("sha256", Buffer.from(input), key);
  return `${input}.${signature.toString("base64url")}`;
}

/**
 * An RFC 7523 client assertion for private_key_jwt: iss = sub = client_id, aud = the token
 * endpoint (or the issuer), a fresh jti and a short lifetime (60 s unless `lifetime` says).
 */
export function clientAssertion({ clientId, audience, privateJwk, lifetime = 60, now = Date.now(), jti = randomUUID() }) {
  const iat = Math.floor(now / 1000);
  return signJwt(
    { alg: privateJwk.alg, kid: privateJwk.kid, typ: "JWT" },
    { iss: clientId, sub: clientId, aud: audience, jti, iat, exp: iat + lifetime },
    privateJwk,
  );
}

function verifyJws(token, jwks) {
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  let header;
  let payload;
  try {
    header = JSON.parse(Buffer.from(parts[0], "base64url"));
    payload = JSON.parse(Buffer.from(parts[1], "base64url"));
  } catch {
    return null;
  }
  const jwk = jwks.find((k) => k.kid === header.kid && k.alg === header.alg);
  if (!jwk || !["RS256", "ES256"].includes(header.alg)) return null;
  const key = createPublicKey({ key: jwk, format: "jwk" });
  const data = Buffer.from(`${parts[0]}.${parts[1]}`);
  const signature = Buffer.from(parts[2], "base64url");
  const ok =
    header.alg === "ES256"
      ? cryptoVerify("sha256", data, { key, dsaEncoding: "ieee-p1363" }, signature)
      : cryptoVerify("sha256", data, key, signature);
  return ok ? { header, payload } : null;
}

// ---------------------------------------------------------------------------------------
// Small HTTP helpers

async function readForm(req, limit = 64 * 1024) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw Object.assign(new Error("body too large"), { status: 413 });
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
}

function sendJson(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), "cache-control": "no-store", ...headers });
  res.end(text);
}

function sendHtml(res, status, html) {
  res.writeHead(status, { "content-type": "text/html; charset=utf-8", "content-length": Buffer.byteLength(html), "cache-control": "no-store" });
  res.end(html);
}

async function listen(server, host) {
  server.listen(0, host);
  await once(server, "listening");
  return server.address().port;
}

function closeServer(server) {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

const page = (title, body) =>
  `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head><body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;

// ---------------------------------------------------------------------------------------
// The harness

const newStats = () => ({
  /** Token endpoint requests by grant_type (every answer, success or error). */
  tokenRequests: { authorization_code: 0, refresh_token: 0, client_credentials: 0, other: 0 },
  /** Successful token responses by grant_type. */
  tokenIssued: { authorization_code: 0, refresh_token: 0, client_credentials: 0, other: 0 },
  /** Token endpoint error answers by OAuth error code (invalid_grant, invalid_client, ...). */
  tokenErrors: {},
  /** Successful refresh_token grants (each one rotated the refresh token when rotation is on). */
  refreshes: 0,
  /** A consumed (rotated) refresh token presented again: the grant was revoked. Only the
   *  first reuse counts: after the revocation the grant's tokens are simply not found (see
   *  invalidGrantDetails). A fleet that never reuses has 0 here AND no invalid_grant at all. */
  reuseDetected: 0,
  /** invalid_grant answers by oidc-provider's internal detail ("refresh token already used",
   *  "refresh token not found", "grant not found", ...): never a token value. */
  invalidGrantDetails: {},
  /** Grants revoked (reuse detection, refresh token revocation, authorization code reuse). */
  grantsRevoked: 0,
  /** 200 answers of the revocation endpoint, and its error answers. */
  revocations: 0,
  revocationErrors: 0,
  introspections: 0,
  logins: 0,
  loginFailures: 0,
  consents: 0,
  /** Exceptions inside oidc-provider or the adapter: any non-zero value is a harness bug. */
  serverErrors: 0,
  api: { accepted: 0, refused: 0, forbidden: 0 },
});

function resetInPlace(target, fresh) {
  for (const key of Object.keys(target)) delete target[key];
  Object.assign(target, fresh);
}

/**
 * Starts oidc-provider and the protected test API.
 * @param {object} [options]
 * @param {number} [options.accessTokenTtl=5] access token lifetime, seconds (also client credentials)
 * @param {number} [options.refreshTokenTtl=3600] refresh token lifetime, seconds
 * @param {"opaque"|"jwt"} [options.accessTokenFormat="opaque"]
 * @param {boolean} [options.rotateRefreshToken=true]
 * @param {Record<string,string>} [options.users] username → password
 * @param {string} [options.audience] the `aud` of access tokens (default: the resource indicator)
 */
export async function startProvider(options = {}) {
  const host = options.host ?? "127.0.0.1";
  const settings = {
    accessTokenTtl: options.accessTokenTtl ?? 5,
    refreshTokenTtl: options.refreshTokenTtl ?? 3600,
    accessTokenFormat: options.accessTokenFormat ?? "opaque",
  };
  const users = { ...(options.users ?? { alice: "alice-password" }) };
  const stats = newStats();

  // Two servers: the authorization server and the resource server (the API), as in life.
  const asServer = http.createServer();
  const apiServer = http.createServer();
  const asPort = await listen(asServer, host);
  const apiPort = await listen(apiServer, host);
  const issuer = `http://${host}:${asPort}`;
  const apiUrl = `http://${host}:${apiPort}`;
  const resource = `${apiUrl}/api`;
  const audience = options.audience ?? resource;
  const redirectUri = `${apiUrl}/callback`;

  const providerKeys = [keyPair("RS256")];
  const jwtKeys = { ES256: keyPair("ES256"), RS256: keyPair("RS256") };
  const secret = () => randomBytes(24).toString("base64url");
  const confidential = ["authorization_code", "refresh_token", "client_credentials"];
  const clients = {
    basic: { client_id: "basic-client", client_secret: secret(), token_endpoint_auth_method: "client_secret_basic" },
    special: {
      // RFC 6749 Appendix A: ids and secrets are VSCHAR (%x20-7E), so no non-ASCII here.
      client_id: "special:client id",
      client_secret: `${secret()} +%/:=&?~`,
      token_endpoint_auth_method: "client_secret_basic",
    },
    post: { client_id: "post-client", client_secret: secret(), token_endpoint_auth_method: "client_secret_post" },
    // Registered with a `scope` allow-list (oidc-provider checks it against its own scopes
    // only, so "openid"; the API's scopes pass unchecked): client_credentials asking for
    // offline_access is `invalid_scope`, which no other client here can get.
    scoped: {
      client_id: "scoped-client",
      client_secret: secret(),
      token_endpoint_auth_method: "client_secret_basic",
      scope: "openid",
    },
    jwt: { client_id: "jwt-client", token_endpoint_auth_method: "private_key_jwt", keys: jwtKeys },
    public: { client_id: "public-client", token_endpoint_auth_method: "none" },
  };
  const apiClient = { client_id: "test-api", client_secret: secret() };
  // A client printed by accident (a failing assertion, a console.log) shows no secret and no
  // private key; the properties themselves are ordinary for the tests to use.
  for (const client of Object.values(clients)) {
    const shown = () => ({
      ...client,
      ...(client.client_secret ? { client_secret: "[redacted]" } : {}),
      ...(client.keys ? { keys: Object.fromEntries(Object.entries(client.keys).map(([a, k]) => [a, publicJwk(k)])) } : {}),
    });
    Object.defineProperties(client, {
      toJSON: { value: shown, enumerable: false },
      [inspect.custom]: { value: shown, enumerable: false },
    });
  }

  const providerClients = [
    ...["basic", "special", "post", "scoped"].map((name) => ({
      client_id: clients[name].client_id,
      client_secret: clients[name].client_secret,
      token_endpoint_auth_method: clients[name].token_endpoint_auth_method,
      ...(clients[name].scope ? { scope: clients[name].scope } : {}),
      grant_types: confidential,
      response_types: ["code"],
      redirect_uris: [redirectUri],
    })),
    {
      client_id: clients.jwt.client_id,
      token_endpoint_auth_method: "private_key_jwt",
      jwks: { keys: Object.values(jwtKeys).map(publicJwk) },
      grant_types: confidential,
      response_types: ["code"],
      redirect_uris: [redirectUri],
    },
    {
      client_id: clients.public.client_id,
      token_endpoint_auth_method: "none",
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      redirect_uris: [redirectUri],
    },
    // The API itself: a resource-server-only client that may introspect.
    {
      client_id: apiClient.client_id,
      client_secret: apiClient.client_secret,
      token_endpoint_auth_method: "client_secret_basic",
      grant_types: [],
      response_types: [],
      redirect_uris: [],
    },
  ];

  const provider = new Provider(issuer, {
    adapter: mapAdapter(),
    clients: providerClients,
    jwks: { keys: providerKeys },
    cookies: { keys: [randomBytes(32).toString("base64url")] },
    findAccount: async (ctx, sub) =>
      Object.hasOwn(users, sub) ? { accountId: sub, claims: async () => ({ sub }) } : undefined,
    interactions: { url: async (ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      revocation: { enabled: true },
      // Only the API (and a client asking about its own token) may introspect.
      introspection: {
        enabled: true,
        allowedPolicy: async (ctx, client, token) =>
          client.clientId === apiClient.client_id || token.clientId === client.clientId,
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (ctx, client, oneOf) => oneOf ?? resource,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, indicator) => {
          if (indicator !== resource) throw new errors.InvalidTarget();
          return {
            scope: API_SCOPES,
            audience,
            accessTokenTTL: settings.accessTokenTtl,
            accessTokenFormat: settings.accessTokenFormat,
            ...(settings.accessTokenFormat === "jwt" ? { jwt: { sign: { alg: "RS256" } } } : {}),
          };
        },
      },
    },
    // oidc-provider 8 refuses every cross-origin call to the token, revocation and
    // introspection endpoints by default; the browser page's OAuth case needs them.
    clientBasedCORS: () => true,
    rotateRefreshToken: options.rotateRefreshToken ?? true,
    ttl: {
      AccessToken: () => settings.accessTokenTtl,
      ClientCredentials: () => settings.accessTokenTtl,
      RefreshToken: () => settings.refreshTokenTtl,
      Grant: () => Math.max(settings.refreshTokenTtl, 14 * 86400),
      AuthorizationCode: 60,
      Interaction: 600,
      Session: 3600,
      IdToken: 3600,
    },
    // Never render a token, secret or stack on an error page.
    renderError: async (ctx, out) => {
      ctx.type = "html";
      ctx.body = page("Error", `<p>${escapeHtml(out.error)}</p>`);
    },
  });

  // ----- counters (events and a Koa post-middleware; counts only, never values)
  const grantOf = (ctx) => {
    const g = ctx.oidc?.params?.grant_type;
    return Object.hasOwn(stats.tokenRequests, g) && g !== "other" ? g : "other";
  };
  provider.use(async (ctx, next) => {
    await next();
    const route = ctx.oidc?.route;
    if (route === "token") {
      const grant = grantOf(ctx);
      stats.tokenRequests[grant]++;
      if (ctx.status === 200) stats.tokenIssued[grant]++;
      if (grant === "refresh_token" && ctx.status === 200) stats.refreshes++;
    } else if (route === "revocation") {
      if (ctx.status === 200) stats.revocations++;
      else stats.revocationErrors++;
    } else if (route === "introspection") {
      stats.introspections++;
    }
  });
  provider.on("grant.error", (ctx, err) => {
    const code = err?.error ?? "server_error";
    stats.tokenErrors[code] = (stats.tokenErrors[code] ?? 0) + 1;
    if (err?.error_detail === "refresh token already used") stats.reuseDetected++;
    if (code === "invalid_grant") {
      const detail = typeof err.error_detail === "string" ? err.error_detail : "(none)";
      stats.invalidGrantDetails[detail] = (stats.invalidGrantDetails[detail] ?? 0) + 1;
    }
  });
  provider.on("grant.revoked", () => stats.grantsRevoked++);
  provider.on("server_error", () => stats.serverErrors++);

  // ----- login and consent pages (what a user's browser sees)
  async function interaction(req, res, url) {
    const m = /^\/interaction\/([^/]+)(?:\/(login|confirm|abort))?$/.exec(url.pathname);
    if (!m) return sendHtml(res, 404, page("Not found", ""));
    const [, uid, action] = m;
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== uid) return sendHtml(res, 400, page("Wrong interaction", ""));
    const { prompt, params, session } = details;

    if (!action && req.method === "GET") {
      if (prompt.name === "login") return sendHtml(res, 200, loginPage(uid, params.client_id));
      if (prompt.name === "consent") return sendHtml(res, 200, consentPage(uid, params, prompt.details));
      return sendHtml(res, 501, page("Unsupported prompt", ""));
    }
    if (req.method !== "POST") return sendHtml(res, 405, page("Method not allowed", ""));
    const form = await readForm(req);

    if (action === "abort") {
      return provider.interactionFinished(req, res, { error: "access_denied", error_description: "End-User aborted interaction" }, { mergeWithLastSubmission: false });
    }
    if (action === "login") {
      if (prompt.name !== "login") return sendHtml(res, 400, page("Not a login prompt", ""));
      const username = form.get("username") ?? "";
      if (!Object.hasOwn(users, username) || !equalSecret(users[username], form.get("password"))) {
        stats.loginFailures++;
        return sendHtml(res, 200, loginPage(uid, params.client_id, "Invalid username or password"));
      }
      stats.logins++;
      return provider.interactionFinished(req, res, { login: { accountId: username } }, { mergeWithLastSubmission: false });
    }
    if (action === "confirm") {
      if (prompt.name !== "consent") return sendHtml(res, 400, page("Not a consent prompt", ""));
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      const d = prompt.details;
      if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(" "));
      if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(d.missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(" "));
      }
      const grantId = await grant.save();
      stats.consents++;
      return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    }
    return sendHtml(res, 404, page("Not found", ""));
  }

  const loginPage = (uid, clientId, error) =>
    page(
      "Sign in",
      `<p>to continue to ${escapeHtml(clientId)}</p>${error ? `<p role="alert">${escapeHtml(error)}</p>` : ""}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<input name="username" autocomplete="username"><input name="password" type="password">
<button type="submit">Sign in</button></form>
<form method="post" action="/interaction/${escapeHtml(uid)}/abort"><button>Cancel</button></form>`,
    );

  const consentPage = (uid, params, details) =>
    page(
      "Authorize",
      `<p>${escapeHtml(params.client_id)} asks for: ${escapeHtml(params.scope ?? "")}</p>
<ul>${Object.entries(details.missingResourceScopes ?? {})
        .map(([r, s]) => `<li>${escapeHtml(r)}: ${escapeHtml(s.join(" "))}</li>`)
        .join("")}</ul>
<form method="post" action="/interaction/${escapeHtml(uid)}/confirm"><input type="hidden" name="prompt" value="consent"><button type="submit">Allow</button></form>
<form method="post" action="/interaction/${escapeHtml(uid)}/abort"><button>Deny</button></form>`,
    );

  const providerCallback = provider.callback();
  asServer.on("request", (req, res) => {
    const url = new URL(req.url, issuer);
    if (url.pathname.startsWith("/interaction/")) {
      interaction(req, res, url).catch((err) => {
        stats.serverErrors++;
        if (!res.headersSent) sendHtml(res, err.status === 413 ? 413 : 500, page("Error", ""));
        else res.destroy();
      });
      return;
    }
    // RFC 8414 metadata: the OpenID discovery document is a superset of it.
    if (url.pathname === "/.well-known/oauth-authorization-server") req.url = "/.well-known/openid-configuration";
    providerCallback(req, res);
  });

  // ----- the protected API (a resource server)
  let jwksCache = null;
  async function providerJwks(kid) {
    if (!jwksCache || !jwksCache.some((k) => k.kid === kid)) {
      const res = await fetch(`${issuer}/jwks`);
      jwksCache = (await res.json()).keys;
    }
    return jwksCache;
  }

  async function validate(token) {
    if (token.split(".").length === 3) {
      let kid;
      try {
        kid = JSON.parse(Buffer.from(token.split(".")[0], "base64url")).kid;
      } catch {
        return { error: "malformed token" };
      }
      const verified = verifyJws(token, await providerJwks(kid));
      if (!verified) return { error: "bad signature" };
      const { header, payload } = verified;
      const now = Math.floor(Date.now() / 1000);
      if (header.typ !== "at+jwt") return { error: "not an access token" };
      if (payload.iss !== issuer) return { error: "wrong issuer" };
      if (!(typeof payload.exp === "number" && now < payload.exp)) return { error: "expired" };
      if (![payload.aud].flat().includes(audience)) return { error: "wrong audience" };
      return { claims: payload };
    }
    const res = await fetch(`${issuer}/token/introspection`, {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        authorization: `Basic ${Buffer.from(`${encodeURIComponent(apiClient.client_id)}:${encodeURIComponent(apiClient.client_secret)}`).toString("base64")}`,
      },
      body: new URLSearchParams({ token, token_type_hint: "access_token" }),
    });
    if (res.status !== 200) throw new Error(`introspection answered ${res.status}`);
    const claims = await res.json();
    if (!claims.active) return { error: "inactive" };
    if (claims.token_type !== "Bearer") return { error: "not a bearer access token" };
    if (![claims.aud].flat().includes(audience)) return { error: "wrong audience" };
    return { claims };
  }

  async function api(req, res) {
    const url = new URL(req.url, apiUrl);
    if (!url.pathname.startsWith("/api/")) return sendJson(res, 404, { error: "not_found" });
    const refuse = (header, description) => {
      stats.api.refused++;
      sendJson(res, 401, { error: "invalid_token", error_description: description }, { "www-authenticate": header });
    };
    const m = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(req.headers.authorization ?? "");
    // RFC 6750 §3.1: no error code when the request carried no token at all.
    if (!m) return refuse('Bearer realm="test-api"', "no bearer token");
    const result = await validate(m[1]);
    if (result.error) {
      return refuse(`Bearer realm="test-api", error="invalid_token", error_description="${result.error}"`, result.error);
    }
    const scopes = new Set((result.claims.scope ?? "").split(" ").filter(Boolean));
    if (url.pathname === "/api/write" && !scopes.has("api:write")) {
      stats.api.forbidden++;
      return sendJson(res, 403, { error: "insufficient_scope" }, { "www-authenticate": 'Bearer realm="test-api", error="insufficient_scope", scope="api:write"' });
    }
    stats.api.accepted++;
    const { sub, client_id: clientId, scope } = result.claims;
    sendJson(res, 200, { ok: true, method: req.method, path: url.pathname, sub: sub ?? null, client_id: clientId, scope: scope ?? "" });
  }

  apiServer.on("request", (req, res) => {
    // A browser page may call the API too: it must be able to read the RFC 6750 challenge.
    res.setHeader("access-control-allow-origin", "*");
    res.setHeader("access-control-expose-headers", "www-authenticate, date");
    if (req.method === "OPTIONS") {
      res.writeHead(204, {
        "access-control-allow-headers": "authorization, content-type",
        "access-control-allow-methods": "GET, POST, PUT, PATCH, DELETE",
        "access-control-max-age": "600",
      });
      return res.end();
    }
    // Counters only (no token, no secret), for tests driving the harness from another process.
    if (req.url === "/__control/stats") return sendJson(res, 200, stats);
    api(req, res).catch(() => {
      if (!res.headersSent) sendJson(res, 503, { error: "temporarily_unavailable" });
      else res.destroy();
    });
  });

  let closing = null;
  const harness = {
    issuer,
    port: asPort,
    provider,
    discoveryUrl: `${issuer}/.well-known/openid-configuration`,
    metadataUrl: `${issuer}/.well-known/oauth-authorization-server`,
    authorizationEndpoint: `${issuer}/auth`,
    tokenEndpoint: `${issuer}/token`,
    revocationEndpoint: `${issuer}/token/revocation`,
    introspectionEndpoint: `${issuer}/token/introspection`,
    jwksUri: `${issuer}/jwks`,
    redirectUri,
    api: { url: apiUrl, resource, audience, scopes: API_SCOPES },
    clients,
    users,
    stats,
    settings,
    /** Lifetimes for tokens issued from now on (seconds). */
    setAccessTokenTtl(seconds) {
      settings.accessTokenTtl = seconds;
    },
    setRefreshTokenTtl(seconds) {
      settings.refreshTokenTtl = seconds;
    },
    resetStats() {
      resetInPlace(stats, newStats());
    },
    /** Everything a client in another process needs, secrets included: write it to a private
     *  file, never to a log. JSON.stringify(harness) and inspect(harness) show none of it. */
    credentials() {
      const { provider: _p, stats: _s, settings: _t, clients: _c, users: _u, ...data } = harness;
      const plain = Object.fromEntries(
        Object.entries(harness).filter(([k, v]) => k in data && typeof v !== "function"),
      );
      return structuredClone({
        ...plain,
        clients: Object.fromEntries(Object.entries(clients).map(([n, c]) => [n, { ...c }])),
        users: { ...users },
        statsUrl: `${apiUrl}/__control/stats`,
      });
    },
    close() {
      closing ??= Promise.all([closeServer(asServer), closeServer(apiServer)]).then(() => {});
      return closing;
    },
  };
  const shownHarness = () => ({
    issuer,
    api: harness.api,
    clients: Object.keys(clients),
    users: Object.keys(users),
    settings: { ...settings },
    stats,
  });
  Object.defineProperties(harness, {
    toJSON: { value: shownHarness, enumerable: false },
    [inspect.custom]: { value: shownHarness, enumerable: false },
  });
  if (Symbol.asyncDispose) harness[Symbol.asyncDispose] = harness.close;
  return harness;
}

// ---------------------------------------------------------------------------------------
// Client helpers (plain fetch): client authentication and token requests

/**
 * The headers and form fields that authenticate `client` at `endpoint` by its registered
 * method. client_secret_basic encodes id and secret as RFC 6749 §2.3.1 says
 * (application/x-www-form-urlencoded, then Base64).
 */
export function clientAuth(harness, client, { endpoint = harness.tokenEndpoint, alg = "ES256" } = {}) {
  const formEncode = (s) => new URLSearchParams({ s }).toString().slice(2);
  switch (client.token_endpoint_auth_method) {
    case "client_secret_basic":
      return {
        headers: {
          authorization: `Basic ${Buffer.from(`${formEncode(client.client_id)}:${formEncode(client.client_secret)}`).toString("base64")}`,
        },
        fields: {},
      };
    case "client_secret_post":
      return { headers: {}, fields: { client_id: client.client_id, client_secret: client.client_secret } };
    case "private_key_jwt":
      return {
        headers: {},
        fields: {
          client_id: client.client_id,
          client_assertion_type: "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
          client_assertion: clientAssertion({ clientId: client.client_id, audience: endpoint, privateJwk: client.keys[alg] }),
        },
      };
    case "none":
      return { headers: {}, fields: { client_id: client.client_id } };
    default:
      throw new TypeError(`unknown client authentication method ${client.token_endpoint_auth_method}`);
  }
}

/** POSTs a form to `endpoint` with `client`'s authentication. Returns { status, headers, body }. */
export async function postForm(harness, endpoint, client, fields, options = {}) {
  const auth = client ? clientAuth(harness, client, { endpoint, ...options }) : { headers: {}, fields: {} };
  const res = await fetch(endpoint, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", accept: "application/json", ...auth.headers },
    body: new URLSearchParams({ ...auth.fields, ...fields }),
  });
  const text = await res.text();
  let body = text;
  try {
    body = text ? JSON.parse(text) : text;
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, headers: res.headers, body };
}

/** A token request (grant_type and its fields) from `client`. */
export const tokenRequest = (harness, client, fields, options) => postForm(harness, harness.tokenEndpoint, client, fields, options);

// ---------------------------------------------------------------------------------------
// The authorization-code flow, driven headlessly the way a user's browser would

class CookieJar {
  #cookies = [];
  store(url, res) {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(";").map((s) => s.trim());
      const eq = pair.indexOf("=");
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      let path = "/";
      let expired = false;
      for (const attr of attrs) {
        const [k, v = ""] = attr.split("=");
        const key = k.toLowerCase();
        if (key === "path") path = v || "/";
        if (key === "max-age" && Number(v) <= 0) expired = true;
        if (key === "expires" && Date.parse(v) <= Date.now()) expired = true;
      }
      this.#cookies = this.#cookies.filter((c) => !(c.name === name && c.path === path));
      if (!expired) this.#cookies.push({ name, value, path, origin: new URL(url).origin });
    }
  }
  header(url) {
    const { origin, pathname } = new URL(url);
    const matches = this.#cookies.filter(
      (c) => c.origin === origin && (pathname === c.path || pathname.startsWith(c.path.endsWith("/") ? c.path : `${c.path}/`)),
    );
    return matches.map((c) => `${c.name}=${c.value}`).join("; ");
  }
}

function parseForms(html) {
  const forms = [];
  for (const m of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
    const attr = (src, name) => new RegExp(`\\b${name}="([^"]*)"`, "i").exec(src)?.[1];
    const unescape = (s) => s?.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");
    const inputs = {};
    for (const input of m[2].matchAll(/<input\b([^>]*)>/gi)) {
      const name = attr(input[1], "name");
      if (name) inputs[unescape(name)] = unescape(attr(input[1], "value") ?? "");
    }
    forms.push({ action: unescape(attr(m[1], "action")), method: (attr(m[1], "method") ?? "get").toUpperCase(), inputs });
  }
  return forms;
}

/**
 * Obtains an initial refresh token the way a real user would: an authorization request with
 * PKCE (S256), scope offline_access and prompt=consent (oidc-provider drops offline_access
 * without it), the login page and the consent page submitted with a cookie jar, the code
 * from the redirect exchanged at the token endpoint with the client's own authentication.
 * @returns {Promise<{refresh_token: string, access_token: string, expires_in: number, scope: string, token_type: string}>}
 */
export async function obtainRefreshToken(harness, {
  client = "public",
  username = Object.keys(harness.users)[0],
  password = harness.users[username],
  scope = `openid offline_access ${API_SCOPES}`,
  resource,
} = {}) {
  const c = typeof client === "string" ? harness.clients[client] : client;
  const verifier = randomBytes(32).toString("base64url");
  const state = randomBytes(16).toString("base64url");
  const authUrl = new URL(harness.authorizationEndpoint);
  authUrl.search = new URLSearchParams({
    client_id: c.client_id,
    response_type: "code",
    redirect_uri: harness.redirectUri,
    scope,
    prompt: "consent",
    state,
    code_challenge: createHash("sha256").update(verifier).digest("base64url"),
    code_challenge_method: "S256",
    ...(resource ? { resource } : {}),
  }).toString();

  const jar = new CookieJar();
  let request = { url: authUrl.href, method: "GET" };
  let code;
  for (let step = 0; step < 20 && code === undefined; step++) {
    const headers = { cookie: jar.header(request.url), accept: "text/html" };
    if (request.body) headers["content-type"] = "application/x-www-form-urlencoded";
    const res = await fetch(request.url, { method: request.method, headers, body: request.body, redirect: "manual" });
    jar.store(request.url, res);
    if (res.status >= 300 && res.status < 400) {
      await res.arrayBuffer();
      const location = new URL(res.headers.get("location"), request.url);
      if (location.href.startsWith(harness.redirectUri)) {
        const error = location.searchParams.get("error");
        if (error) throw new Error(`authorization failed: ${error}`);
        if (location.searchParams.get("state") !== state) throw new Error("authorization response state mismatch");
        code = location.searchParams.get("code");
        break;
      }
      request = { url: location.href, method: "GET" };
      continue;
    }
    const html = await res.text();
    if (res.status !== 200) throw new Error(`authorization flow: HTTP ${res.status} at ${new URL(request.url).pathname}`);
    const forms = parseForms(html).filter((f) => f.method === "POST" && !f.action.endsWith("/abort"));
    if (forms.length === 0) throw new Error(`authorization flow: no form at ${new URL(request.url).pathname}`);
    const form = forms[0];
    const fields = { ...form.inputs };
    if ("username" in fields) {
      if (html.includes('role="alert"')) throw new Error("authorization flow: login refused");
      fields.username = username;
      fields.password = password;
    }
    request = { url: new URL(form.action, request.url).href, method: "POST", body: new URLSearchParams(fields).toString() };
  }
  if (!code) throw new Error("authorization flow: no code after 20 steps");

  const res = await tokenRequest(harness, c, {
    grant_type: "authorization_code",
    code,
    redirect_uri: harness.redirectUri,
    code_verifier: verifier,
    ...(resource ? { resource } : {}),
  });
  if (res.status !== 200) throw new Error(`authorization code exchange: HTTP ${res.status} ${res.body?.error ?? ""}`);
  if (!res.body.refresh_token) throw new Error("authorization code exchange: no refresh_token in the response");
  const { refresh_token, access_token, expires_in, scope: granted, token_type } = res.body;
  return { refresh_token, access_token, expires_in, scope: granted, token_type };
}

// ---------------------------------------------------------------------------------------
// CLI

async function main() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        "credentials-file": { type: "string" },
        "access-ttl": { type: "string" },
        "refresh-ttl": { type: "string" },
        format: { type: "string" },
      },
      strict: true,
    }));
    if (!values["credentials-file"]) throw new TypeError("--credentials-file is required");
    for (const flag of ["access-ttl", "refresh-ttl"]) {
      if (values[flag] !== undefined && !(Number.isInteger(Number(values[flag])) && Number(values[flag]) > 0)) {
        throw new TypeError(`--${flag} needs a positive whole number of seconds`);
      }
    }
    if (values.format !== undefined && !["opaque", "jwt"].includes(values.format)) throw new TypeError("--format is opaque or jwt");
  } catch (err) {
    process.stderr.write(`provider: ${err.message}\nusage: provider.mjs --credentials-file PATH [--access-ttl S] [--refresh-ttl S] [--format opaque|jwt]\n`);
    process.exit(2);
  }
  const harness = await startProvider({
    accessTokenTtl: values["access-ttl"] === undefined ? undefined : Number(values["access-ttl"]),
    refreshTokenTtl: values["refresh-ttl"] === undefined ? undefined : Number(values["refresh-ttl"]),
    accessTokenFormat: values.format,
  });
  writeFileSync(values["credentials-file"], JSON.stringify(harness.credentials(), null, 2), { mode: 0o600 });
  process.stdout.write(`OIDC_PROVIDER_URL=${harness.issuer}\n`);
  const shutdown = () => harness.close().then(() => process.exit(0));
  process.once("SIGINT", shutdown);
  process.once("SIGTERM", shutdown);
}

if (isMain(import.meta.url)) await main();
