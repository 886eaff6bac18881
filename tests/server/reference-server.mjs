// Local reference server for auth-session: speaks the protocol of /work/shared/PROTOCOL.md
// (login, rotating refresh with reuse detection, revoke, protected API, IP whitelist) and
// adds what a real server cannot give a test suite: fault injection, counters, a request log
// and an HTTP control API, so clients in other processes (Deno, Bun, workerd, the demo) can
// drive it too.
//
// OAuth 2.0 mode (issue 14), on the same server beside the provider protocol: a token
// endpoint (POST /oauth/token, form-encoded, RFC 6749 responses and errors) with the
// refresh_token (rotating, reuse revokes the grant), client_credentials and password grants;
// client_secret_basic, client_secret_post and none; a revocation endpoint (POST
// /oauth/revoke, RFC 7009); RFC 8414 metadata (GET /.well-known/oauth-authorization-server).
// Its access tokens are accepted by the same /api/ routes. The existing faults apply to these
// paths too (slow, dropped, hung, huge, any status/body/headers such as 503 + Retry-After or
// {"error":"temporarily_unavailable"}); two fault modifiers are OAuth's own:
// `omitRefreshToken` (this refresh answers without a refresh_token and does not rotate, so
// the client must keep the old one) and `dropResponse` (the request is fully handled, then the
// connection is reset: a rotation the client never hears of). Settings (rotation on/off, a
// reuse grace period, how Basic credentials are decoded) and counters: `server.oauth` and
// /__control/oauth. A skewed Date header: the existing `dateSkewMs`.
//
// Node 20 built-ins only. Used as a module (`startServer`) or as a CLI:
//   node tests/server/reference-server.mjs [--port N] [--host H] [--access-ttl SECONDS]
//        [--refresh-ttl SECONDS] [--user name:password]...
// The CLI prints exactly one line, `REFERENCE_SERVER_URL=http://127.0.0.1:PORT`, and runs
// until SIGINT/SIGTERM.
//
// Secrets: token values and passwords are never logged and never kept where a test could
// print them by accident. Tokens are stored by their SHA-256 digest only; the log records
// the path without the query string (a buggy client could put a token there); `config`
// redacts passwords in JSON.stringify and util.inspect.

import http from "node:http";
import { createHash, randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { inspect, parseArgs } from "node:util";
import { pathToFileURL } from "node:url";
import { realpathSync } from "node:fs";

/** Largest body accepted by the auth (and control) endpoints, per the brief. */
export const AUTH_BODY_LIMIT = 64 * 1024;
/** /api/v1/echo accepts more, but never an unbounded body. */
const ECHO_BODY_LIMIT = 1024 * 1024;
/** A too-large body is drained (discarded) up to this size so the client can finish sending
 *  and read the 413; beyond it the connection is closed after the response. */
const DRAIN_LIMIT = 8 * 1024 * 1024;
/** The log is a ring: a long-running demo must not grow it without bound. */
const LOG_LIMIT = 10_000;

const CORS_HEADERS = Object.freeze({
  "access-control-allow-origin": "*",
  "access-control-allow-headers": "content-type, authorization",
  "access-control-allow-methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
  "access-control-expose-headers": "date, retry-after, location",
});

const PRODUCTS = Object.freeze([
  { id: 1, name: "Starter plan" },
  { id: 2, name: "Team plan" },
  { id: 3, name: "Enterprise plan" },
  { id: 4, name: "Support add-on" },
]);

const DEFAULTS = Object.freeze({
  port: 0,
  host: "127.0.0.1",
  accessTtlMs: 3_600_000,
  refreshTtlMs: 7 * 86_400_000,
  users: { demo: "demo-password" },
  whitelist: [],
  clientIdBase: 123456,
  dateSkewMs: 0,
});

const CONFIG_KEYS = ["accessTtlMs", "refreshTtlMs", "whitelist", "users", "dateSkewMs"];
const FAULT_KINDS = ["status", "drop", "hang", "redirect", "hugeBody"];
/** Fault modifiers: the request is still handled, differently (OAuth token endpoint only). */
const FAULT_MODIFIERS = ["omitRefreshToken", "dropResponse"];

/** OAuth 2.0 clients when `startServer` is given none. `secret: null` is a public client
 *  (token_endpoint_auth_method none). Secrets are test constants, like the demo password. */
const OAUTH_DEFAULT_CLIENTS = Object.freeze({
  "demo-client": { secret: "demo-client-secret", grantTypes: ["refresh_token", "client_credentials", "password"], scope: "read write" },
  "public-client": { secret: null, grantTypes: ["refresh_token", "password"], scope: "read write" },
});
const OAUTH_GRANTS = ["refresh_token", "client_credentials", "password"];
const OAUTH_SETTINGS_DEFAULTS = Object.freeze({
  /** Every refresh consumes the refresh token and issues a new one. Off: no refresh_token in
   *  refresh responses and the old one stays valid (servers that never rotate). */
  rotateRefreshTokens: true,
  /** A rotated refresh token presented again within this many ms of its rotation is honoured
   *  (a new pair, the grant lives on), as Okta's and Auth0's leeway do. 0: any reuse is theft. */
  reuseGraceMs: 0,
  /** "form": Basic credentials are application/x-www-form-urlencoded then Base64 (RFC 6749
   *  §2.3.1). "raw": used as they are, as some servers do (the client's opt-out). */
  basicDecoding: "form",
});

// ---------------------------------------------------------------------------------------
// Small helpers

const b64url = (value) => Buffer.from(value).toString("base64url");
const digest = (token) => createHash("sha256").update(token).digest("hex");
const digestBytes = (value) => createHash("sha256").update(value).digest();

/** `::ffff:127.0.0.1` (an IPv4 peer on a dual-stack socket) compares as `127.0.0.1`. */
const normalizeIp = (ip) => (typeof ip === "string" && ip.startsWith("::ffff:") ? ip.slice(7) : ip);

const isNonEmptyString = (v) => typeof v === "string" && v.length > 0;
const isPlainObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

/** Media type only, parameters (charset) ignored, case-insensitive. */
function isJsonContentType(header) {
  if (typeof header !== "string") return false;
  return header.split(";")[0].trim().toLowerCase() === "application/json";
}

/** Constant-time password comparison (digests make the lengths equal). */
function passwordMatches(expected, given) {
  if (typeof expected !== "string") return false;
  return timingSafeEqual(digestBytes(expected), digestBytes(given));
}

/** Validation error thrown by the programmatic API and turned into 400 by the control API. */
class ConfigValidationError extends TypeError {}

/** Checks the config keys the control API and `startServer` accept; returns a clean copy. */
function validateConfigPatch(patch) {
  if (!isPlainObject(patch)) throw new ConfigValidationError("config must be a JSON object");
  const out = {};
  for (const [key, value] of Object.entries(patch)) {
    if (!CONFIG_KEYS.includes(key)) throw new ConfigValidationError(`unknown config key: ${key}`);
    if (key === "whitelist") {
      if (!Array.isArray(value) || !value.every(isNonEmptyString)) {
        throw new ConfigValidationError("whitelist must be an array of IP address strings");
      }
      out.whitelist = value.map(normalizeIp);
    } else if (key === "users") {
      if (!isPlainObject(value) || !Object.entries(value).every(([u, p]) => u && isNonEmptyString(p))) {
        throw new ConfigValidationError("users must map non-empty usernames to non-empty passwords");
      }
      out.users = { ...value };
    } else {
      // TTLs may be zero or negative on purpose: it issues already-expired tokens.
      if (typeof value !== "number" || !Number.isFinite(value)) {
        throw new ConfigValidationError(`${key} must be a finite number (milliseconds)`);
      }
      out[key] = value;
    }
  }
  return out;
}

/** Normalizes and checks a fault; throws ConfigValidationError on a malformed one. */
function validateFault(match, action, times) {
  if (!isPlainObject(match) || typeof match.path !== "string" || !match.path.startsWith("/")) {
    throw new ConfigValidationError("fault match needs a path starting with '/'");
  }
  if (match.method !== undefined && !isNonEmptyString(match.method)) {
    throw new ConfigValidationError("fault match.method must be a non-empty string");
  }
  if (!isPlainObject(action)) throw new ConfigValidationError("fault action must be an object");
  const kinds = FAULT_KINDS.filter((k) => action[k] !== undefined && action[k] !== false);
  // `redirect` may carry its own `status`; any other combination is ambiguous.
  const terminal = kinds.filter((k) => !(k === "status" && action.redirect !== undefined));
  if (terminal.length > 1) {
    throw new ConfigValidationError(`fault action combines ${terminal.join(" and ")}; use one`);
  }
  const modifiers = FAULT_MODIFIERS.filter((k) => action[k] !== undefined && action[k] !== false);
  for (const k of modifiers) {
    if (action[k] !== true) throw new ConfigValidationError(`${k} must be true`);
  }
  if (terminal.length > 0 && modifiers.length > 0) {
    throw new ConfigValidationError(`fault action combines ${terminal[0]} and ${modifiers[0]}; use one`);
  }
  if (terminal.length === 0 && modifiers.length === 0 && action.delayMs === undefined) {
    throw new ConfigValidationError(`fault action needs one of delayMs, ${[...FAULT_KINDS, ...FAULT_MODIFIERS].join(", ")}`);
  }
  if (action.delayMs !== undefined && !(Number.isFinite(action.delayMs) && action.delayMs >= 0)) {
    throw new ConfigValidationError("delayMs must be a non-negative number");
  }
  if (action.status !== undefined && !(Number.isInteger(action.status) && action.status >= 100 && action.status <= 599)) {
    throw new ConfigValidationError("status must be an integer HTTP status");
  }
  if (action.redirect !== undefined) {
    if (!isNonEmptyString(action.redirect)) throw new ConfigValidationError("redirect must be a URL string");
    if (action.status !== undefined && (action.status < 300 || action.status > 399)) {
      throw new ConfigValidationError("a redirect status must be 3xx");
    }
  }
  if (action.hugeBody !== undefined && !(Number.isSafeInteger(action.hugeBody) && action.hugeBody >= 0)) {
    throw new ConfigValidationError("hugeBody must be a byte count");
  }
  if (action.headers !== undefined && !isPlainObject(action.headers)) {
    throw new ConfigValidationError("headers must be an object");
  }
  if (action.body !== undefined && typeof action.body !== "string" && !isPlainObject(action.body) && !Array.isArray(action.body)) {
    throw new ConfigValidationError("body must be a string or a JSON object/array");
  }
  if (!(times === Infinity || (Number.isSafeInteger(times) && times > 0))) {
    throw new ConfigValidationError("times must be a positive integer or Infinity");
  }
  return {
    match: { path: match.path, method: match.method?.toUpperCase() },
    action: structuredClone(action),
    times,
  };
}

/**
 * Reads the request body into a string, up to `limit` bytes. Past the limit the rest is
 * drained and discarded (so the client can finish writing and read our 413 instead of a
 * connection reset), and `{ tooLarge: true }` is returned. Invalid UTF-8 yields `text: null`.
 */
function readBody(req, limit) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    let tooLarge = false;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (tooLarge) {
        if (size > DRAIN_LIMIT) {
          req.pause();
          resolve({ tooLarge: true, closeAfter: true });
        }
        return;
      }
      if (size > limit) {
        tooLarge = true;
        chunks.length = 0;
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (tooLarge) return resolve({ tooLarge: true });
      try {
        resolve({ text: new TextDecoder("utf-8", { fatal: true }).decode(Buffer.concat(chunks)) });
      } catch {
        resolve({ text: null });
      }
    });
    req.on("error", reject);
    // The client went away mid-body: settle (a no-op if already settled) instead of hanging.
    req.on("close", () => reject(new Error("request aborted")));
  });
}

// ---------------------------------------------------------------------------------------
// The server

/**
 * Starts a reference server.
 * @param {object} [options]
 * @returns {Promise<object>} the ReferenceServer handle (see the exported shape at the bottom)
 */
export async function startServer(options = {}) {
  const opts = { ...DEFAULTS, ...options };
  // Validate what the config shares with the control API, so both reject the same mistakes.
  const initialConfig = {
    accessTtlMs: opts.accessTtlMs,
    refreshTtlMs: opts.refreshTtlMs,
    whitelist: opts.whitelist,
    users: opts.users,
    dateSkewMs: opts.dateSkewMs,
  };
  Object.assign(initialConfig, validateConfigPatch(initialConfig));
  if (!Number.isSafeInteger(opts.clientIdBase)) throw new TypeError("clientIdBase must be an integer");

  const config = cloneConfig(initialConfig);
  // Printing the config (by accident, in a failing test) must not print passwords.
  Object.defineProperties(config, {
    toJSON: { value: () => publicConfig(config), enumerable: false },
    [inspect.custom]: { value: () => publicConfig(config), enumerable: false },
  });

  const stats = { login: 0, refresh: 0, revoke: 0, api: 0, spentReuse: 0, faults: 0, requests: 0 };
  const log = [];
  let faults = [];
  let nextFaultId = 1;
  /** sha256(token) → { kind: "access"|"refresh", family, expiresAt, spent } */
  const tokens = new Map();
  /** Families (one per login) are what reuse detection and revoke act upon. */
  const families = new Set();
  /** Stable client ids: the initial users in order, later users as they first appear. */
  const clientIds = new Map();
  for (const name of Object.keys(config.users)) clientIds.set(name, opts.clientIdBase + clientIds.size);
  const clientIdFor = (name) => {
    if (!clientIds.has(name)) clientIds.set(name, opts.clientIdBase + clientIds.size);
    return clientIds.get(name);
  };

  // ----- OAuth 2.0 mode state. Client secrets live only in this closure (never printable).
  const oauthClients = validateOauthClients(opts.oauthClients ?? OAUTH_DEFAULT_CLIENTS);
  const oauthSettings = { ...OAUTH_SETTINGS_DEFAULTS, ...validateOauthSettings(opts.oauth ?? {}) };
  const initialOauthSettings = { ...oauthSettings };
  const newOauthStats = () => ({
    token: 0, // token endpoint requests, any answer
    issued: 0, // 200 answers of the token endpoint
    refresh: 0, // successful refresh_token grants
    clientCredentials: 0, // successful client_credentials grants
    password: 0, // successful password grants
    reuse: 0, // a rotated refresh token presented again: the grant was revoked
    graceReuse: 0, // ...presented again within reuseGraceMs: honoured
    notRotated: 0, // refresh answered without a refresh_token (rotation off or omitRefreshToken)
    droppedResponses: 0, // dropResponse: handled, then the connection was reset
    revoke: 0, // revocation endpoint requests
    revoked: 0, // tokens actually revoked there
    metadata: 0, // RFC 8414 metadata requests
    errors: 0, // error answers of the token and revocation endpoints (any code)
  });
  const oauthStats = newOauthStats();
  /** OAuth error answers by code (invalid_grant, invalid_client, ...). */
  const oauthErrors = {};
  /** What the last token request asked for (no secret): a test checks pass-through with it. */
  let lastTokenRequest = null;

  // Aborted by close(): ends pending fault delays instead of letting them keep the process up.
  const lifetime = new AbortController();

  /** The simulated server clock. `dateSkewMs` shifts everything the server judges and says
   *  (Date header, issued expiry times, expiry checks) so the skew is self-consistent, as a
   *  real server whose clock is off would be. */
  const serverNow = () => Date.now() + (Number(config.dateSkewMs) || 0);

  // ----- tokens

  function mintToken(clientId, typ, expiresAt) {
    const header = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
    const payload = b64url(
      JSON.stringify({ sub: String(clientId), typ, exp: Math.floor(expiresAt / 1000), jti: randomUUID() }),
    );
    // Opaque: the "signature" is random, so tokens are unique and unforgeable by tests.
    return `${header}.${payload}.${randomBytes(32).toString("base64url")}`;
  }

  function issuePair(family) {
    const now = serverNow();
    const accessExpiresAt = now + Number(config.accessTtlMs);
    const refreshExpiresAt = now + Number(config.refreshTtlMs);
    const accessToken = mintToken(family.clientId, "access", accessExpiresAt);
    const refreshToken = mintToken(family.clientId, "refresh", refreshExpiresAt);
    tokens.set(digest(accessToken), { kind: "access", family, expiresAt: accessExpiresAt, spent: false });
    tokens.set(digest(refreshToken), { kind: "refresh", family, expiresAt: refreshExpiresAt, spent: false });
    return {
      access_token: accessToken,
      refresh_token: refreshToken,
      access_expires_at: new Date(accessExpiresAt).toISOString(),
      refresh_expires_at: new Date(refreshExpiresAt).toISOString(),
      client_id: family.clientId,
    };
  }

  const lookup = (token) => (isNonEmptyString(token) ? tokens.get(digest(token)) : undefined);

  function revokeFamily(family) {
    family.revoked = true;
  }

  /** Returns the access-token record of a valid `Authorization: Bearer`, or an error message. */
  function authenticate(req) {
    const match = /^Bearer +([^\s]+) *$/i.exec(req.headers.authorization ?? "");
    if (!match) return { error: "Missing or malformed bearer token" };
    const record = lookup(match[1]);
    if (!record || record.kind !== "access") return { error: "Invalid access token" };
    if (record.family.revoked || record.revoked) return { error: "Access token revoked" };
    if (serverNow() >= record.expiresAt) return { error: "Access token expired" };
    return { record };
  }

  // ----- responses

  /** Every response goes through here: CORS, the (possibly skewed) Date, and the log status
   *  recorded before anything is sent, so a test that awaited the response sees it. */
  function writeHead(ctx, status, headers = {}) {
    if (ctx.entry) ctx.entry.status = status;
    const skew = Number(config.dateSkewMs) || 0;
    // Node adds its own Date header unless one is set; only replace it when skewed.
    const date = skew ? { date: new Date(serverNow()).toUTCString() } : {};
    ctx.res.writeHead(status, { ...CORS_HEADERS, ...date, ...headers });
  }

  function sendJson(ctx, status, payload, headers = {}) {
    const body = JSON.stringify(payload);
    writeHead(ctx, status, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(body),
      ...headers,
    });
    ctx.res.end(body);
  }

  const sendData = (ctx, data, status = 200) => sendJson(ctx, status, { success: true, data });

  function sendError(ctx, status, name, code, message, headers) {
    sendJson(ctx, status, { error: { name, code, message } }, headers);
  }

  const validation = (ctx, message) => sendError(ctx, 400, "ValidationException", "VALIDATION_FAILURE", message);
  const unauthorized = (ctx, message, headers) =>
    sendError(ctx, 401, "UnauthorizedError", "UNAUTHORIZED", message, headers);
  const notFound = (ctx) => sendError(ctx, 404, "NotFoundError", "NOT_FOUND", `No route for ${ctx.path}`);

  function methodNotAllowed(ctx, allowed) {
    sendError(ctx, 405, "MethodNotAllowedError", "METHOD_NOT_ALLOWED", `Use ${allowed.join(" or ")}`, {
      allow: [...allowed, "OPTIONS"].join(", "),
    });
  }

  function tooLarge(ctx, limit, closeAfter) {
    sendError(
      ctx,
      413,
      "PayloadTooLargeError",
      "PAYLOAD_TOO_LARGE",
      `Request body exceeds ${limit} bytes`,
      closeAfter ? { connection: "close" } : {},
    );
  }

  /**
   * Reads a JSON object body; on any problem sends the error response and returns null.
   * `requireJsonType`: the auth endpoints insist on Content-Type: application/json.
   */
  async function readJsonObject(ctx, { requireJsonType = true, allowEmpty = false } = {}) {
    if (requireJsonType && !isJsonContentType(ctx.req.headers["content-type"])) {
      validation(ctx, "Content-Type must be application/json");
      return null;
    }
    const body = await readBody(ctx.req, AUTH_BODY_LIMIT);
    if (body.tooLarge) {
      tooLarge(ctx, AUTH_BODY_LIMIT, body.closeAfter);
      return null;
    }
    if (allowEmpty && body.text !== null && body.text.trim() === "") return {};
    let value;
    try {
      if (body.text === null) throw new SyntaxError("invalid UTF-8");
      value = JSON.parse(body.text);
    } catch {
      sendError(ctx, 400, "SyntaxError", "SYNTAX_ERROR", "Request body is not valid JSON");
      return null;
    }
    if (!isPlainObject(value)) {
      validation(ctx, "Request body must be a JSON object");
      return null;
    }
    return value;
  }

  // ----- faults

  function takeFault(method, path) {
    const index = faults.findIndex(
      (f) =>
        f.times > 0 &&
        f.match.path === path &&
        // A fault without a method must not be eaten by a browser's CORS preflight.
        (f.match.method ? f.match.method === method : method !== "OPTIONS"),
    );
    if (index === -1) return null;
    const fault = faults[index];
    fault.times -= 1;
    if (fault.times <= 0) faults.splice(index, 1);
    return fault;
  }

  function addFault(match, action, times = 1) {
    const fault = { id: nextFaultId++, ...validateFault(match, action, times) };
    faults.push(fault);
    return {
      id: fault.id,
      /** How many more requests this fault will hit (0 once used up or cleared). */
      get remaining() {
        return faults.includes(fault) ? fault.times : 0;
      },
      cancel() {
        faults = faults.filter((f) => f !== fault);
      },
    };
  }

  /** Applies a consumed fault. Returns true when the request is fully handled by it. */
  async function applyFault(ctx, action) {
    if (action.delayMs) await sleep(action.delayMs, undefined, { signal: lifetime.signal });
    const { req, res } = ctx;
    if (action.drop) {
      // Connection reset, no response: what a crashed upstream or a flaky network looks like.
      if (ctx.entry) ctx.entry.status = 0;
      req.socket.destroy();
      return true;
    }
    if (action.hang) {
      // Never answer; close() (or the client giving up) ends it. Drain so the client's
      // upload is not stuck on backpressure.
      if (ctx.entry) ctx.entry.status = 0;
      req.resume();
      return true;
    }
    if (action.redirect !== undefined) {
      writeHead(ctx, action.status ?? 307, { location: action.redirect, "content-length": 0, ...action.headers });
      res.end();
      return true;
    }
    if (action.hugeBody !== undefined) {
      await streamHugeBody(ctx, action.hugeBody, action.headers);
      return true;
    }
    if (action.status !== undefined) {
      const { body } = action;
      if (body === undefined) {
        writeHead(ctx, action.status, { "content-length": 0, ...action.headers });
        res.end();
      } else if (typeof body === "string") {
        // Raw text, e.g. a proxy's HTML error page; headers may set the content type.
        writeHead(ctx, action.status, {
          "content-type": "text/plain; charset=utf-8",
          "content-length": Buffer.byteLength(body),
          ...action.headers,
        });
        res.end(body);
      } else {
        sendJson(ctx, action.status, body, action.headers);
      }
      return true;
    }
    return false; // delay only: handle normally
  }

  /** Streams a 200 JSON body of exactly `size` bytes (chunked), respecting backpressure and
   *  stopping as soon as the client goes away (a size-capped client aborts early). */
  async function streamHugeBody(ctx, size, headers) {
    const { res } = ctx;
    const prefix = Buffer.from('{"success":true,"data":"');
    const suffix = Buffer.from('"}');
    writeHead(ctx, 200, { "content-type": "application/json", ...headers });
    const gone = () => res.destroyed || !res.socket || res.socket.destroyed;
    const write = async (buf) => {
      if (gone()) return false;
      if (!res.write(buf)) {
        await new Promise((resolve) => {
          const done = () => {
            res.off("drain", done);
            res.off("close", done);
            resolve();
          };
          res.on("drain", done);
          res.on("close", done);
        });
      }
      return !gone();
    };
    if (size < prefix.length + suffix.length) {
      await write(prefix.subarray(0, size));
    } else {
      const filler = Buffer.alloc(64 * 1024, "x");
      let left = size - prefix.length - suffix.length;
      if (!(await write(prefix))) return;
      while (left > 0) {
        const n = Math.min(left, filler.length);
        if (!(await write(filler.subarray(0, n)))) return;
        left -= n;
      }
      await write(suffix);
    }
    if (!gone()) res.end();
  }

  // ----- routes

  async function handleLogin(ctx) {
    stats.login++;
    if (ctx.req.method !== "POST") return methodNotAllowed(ctx, ["POST"]);
    const body = await readJsonObject(ctx);
    if (!body) return;
    const { username, password } = body;
    if (!isNonEmptyString(username) || !isNonEmptyString(password)) {
      return validation(ctx, "username and password must be non-empty strings");
    }
    const users = isPlainObject(config.users) ? config.users : {};
    // Object.hasOwn: "__proto__" or "toString" must not count as users.
    if (!Object.hasOwn(users, username) || !passwordMatches(users[username], password)) {
      return unauthorized(ctx, "Invalid credentials");
    }
    const family = { clientId: clientIdFor(username), revoked: false };
    families.add(family);
    sendData(ctx, issuePair(family));
  }

  async function handleRefresh(ctx) {
    stats.refresh++;
    if (ctx.req.method !== "POST") return methodNotAllowed(ctx, ["POST"]);
    const body = await readJsonObject(ctx);
    if (!body) return;
    if (!isNonEmptyString(body.refresh_token)) return validation(ctx, "refresh_token must be a non-empty string");
    const record = lookup(body.refresh_token);
    if (!record || record.kind !== "refresh") return unauthorized(ctx, "Invalid refresh token");
    if (record.spent) {
      // Reuse of a rotated token: either a client bug (two refreshes racing) or a stolen
      // token. Like real servers, assume theft and kill the whole family.
      stats.spentReuse++;
      revokeFamily(record.family);
      return unauthorized(ctx, "Refresh token already used; session revoked");
    }
    if (record.family.revoked) return unauthorized(ctx, "Refresh token revoked");
    if (serverNow() >= record.expiresAt) return unauthorized(ctx, "Refresh token expired");
    record.spent = true;
    sendData(ctx, issuePair(record.family));
  }

  async function handleRevoke(ctx) {
    stats.revoke++;
    if (ctx.req.method !== "POST") return methodNotAllowed(ctx, ["POST"]);
    const body = await readJsonObject(ctx);
    if (!body) return;
    if (!isNonEmptyString(body.refresh_token)) return validation(ctx, "refresh_token must be a non-empty string");
    // RFC 7009: any token we know is revoked with its family; unknown ones still succeed.
    const record = lookup(body.refresh_token);
    if (record) revokeFamily(record.family);
    const bearer = /^Bearer +([^\s]+) *$/i.exec(ctx.req.headers.authorization ?? "");
    const accessRecord = bearer && lookup(bearer[1]);
    if (accessRecord && accessRecord.kind === "access") revokeFamily(accessRecord.family);
    sendData(ctx, { revoked: true });
  }

  async function handleApi(ctx) {
    stats.api++;
    const { req, path } = ctx;
    if (path === "/api/v1/public") {
      if (req.method !== "GET" && req.method !== "HEAD") return methodNotAllowed(ctx, ["GET", "HEAD"]);
      return sendData(ctx, { public: true });
    }
    if (path !== "/api/v1/products" && path !== "/api/v1/echo") return notFound(ctx);
    if (path === "/api/v1/products" && req.method !== "GET" && req.method !== "HEAD") {
      return methodNotAllowed(ctx, ["GET", "HEAD"]);
    }
    const auth = authenticate(req);
    if (auth.error) {
      return unauthorized(ctx, auth.error, { "www-authenticate": 'Bearer error="invalid_token"' });
    }
    if (path === "/api/v1/products") return sendData(ctx, PRODUCTS);
    // Echo: what the server received, minus the Authorization header (never echo a token).
    const body = await readBody(req, ECHO_BODY_LIMIT);
    if (body.tooLarge) return tooLarge(ctx, ECHO_BODY_LIMIT, body.closeAfter);
    sendData(ctx, {
      method: req.method,
      path,
      query: Object.fromEntries(ctx.url.searchParams),
      body: body.text ?? "",
      contentType: req.headers["content-type"] ?? null,
      clientId: auth.record.family.clientId,
    });
  }

  // ----- OAuth 2.0 mode (RFC 6749 token endpoint, RFC 7009 revocation, RFC 8414 metadata)

  const NO_STORE = { "cache-control": "no-store", pragma: "no-cache" };

  function oauthError(ctx, status, error, description, headers = {}) {
    oauthStats.errors++;
    oauthErrors[error] = (oauthErrors[error] ?? 0) + 1;
    sendJson(ctx, status, { error, error_description: description }, { ...NO_STORE, ...headers });
  }

  /** Reads an application/x-www-form-urlencoded body; on a problem answers and returns null.
   *  RFC 6749 §3.2: a parameter sent more than once is invalid_request. */
  async function readForm(ctx) {
    if (ctx.req.method !== "POST") {
      oauthError(ctx, 405, "invalid_request", "Use POST", { allow: "POST, OPTIONS" });
      return null;
    }
    const type = (ctx.req.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
    if (type !== "application/x-www-form-urlencoded") {
      oauthError(ctx, 400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded");
      return null;
    }
    const body = await readBody(ctx.req, AUTH_BODY_LIMIT);
    if (body.tooLarge) {
      oauthError(ctx, 413, "invalid_request", `Request body exceeds ${AUTH_BODY_LIMIT} bytes`, body.closeAfter ? { connection: "close" } : {});
      return null;
    }
    if (body.text === null) {
      oauthError(ctx, 400, "invalid_request", "Request body is not UTF-8");
      return null;
    }
    const params = new URLSearchParams(body.text);
    const seen = new Set();
    for (const key of params.keys()) {
      // resource (RFC 8707) and audience may repeat; nothing else may.
      if (seen.has(key) && key !== "resource" && key !== "audience") {
        oauthError(ctx, 400, "invalid_request", `Parameter ${key} is repeated`);
        return null;
      }
      seen.add(key);
    }
    return params;
  }

  /** Client authentication: Basic, client_secret in the body, or a public client's client_id
   *  alone. Returns { client, method } or answers invalid_client / invalid_request and returns null. */
  function authenticateClient(ctx, params) {
    const header = ctx.req.headers.authorization;
    const bodySecret = params.get("client_secret");
    const bodyId = params.get("client_id");
    const refuse = (method, description) => {
      // RFC 6749 §5.2: 401, and a challenge for the scheme the client tried.
      oauthError(ctx, 401, "invalid_client", description, method === "client_secret_basic" ? { "www-authenticate": 'Basic realm="reference-server", charset="UTF-8"' } : {});
      return null;
    };
    if (header !== undefined) {
      const m = /^Basic +([A-Za-z0-9+/]+=*) *$/i.exec(header);
      if (!m) return refuse("client_secret_basic", "Malformed Basic credentials");
      const decoded = Buffer.from(m[1], "base64").toString("utf8");
      const colon = decoded.indexOf(":");
      if (colon < 0) return refuse("client_secret_basic", "Malformed Basic credentials");
      if (bodySecret !== null) {
        oauthError(ctx, 400, "invalid_request", "More than one client authentication method");
        return null;
      }
      let id = decoded.slice(0, colon);
      let secret = decoded.slice(colon + 1);
      if (oauthSettings.basicDecoding === "form") {
        try {
          id = decodeURIComponent(id.replace(/\+/g, "%20"));
          secret = decodeURIComponent(secret.replace(/\+/g, "%20"));
        } catch {
          return refuse("client_secret_basic", "Basic credentials are not form-encoded");
        }
      }
      if (bodyId !== null && bodyId !== id) {
        oauthError(ctx, 400, "invalid_request", "client_id in the body and in Basic differ");
        return null;
      }
      const client = oauthClients.get(id);
      if (!client || client.secret === null || !passwordMatches(client.secret, secret)) {
        return refuse("client_secret_basic", "Client authentication failed");
      }
      return { client, method: "client_secret_basic" };
    }
    if (bodyId === null) return refuse("none", "No client authentication");
    const client = oauthClients.get(bodyId);
    if (bodySecret !== null) {
      if (!client || client.secret === null || !passwordMatches(client.secret, bodySecret)) {
        return refuse("client_secret_post", "Client authentication failed");
      }
      return { client, method: "client_secret_post" };
    }
    if (!client || client.secret !== null) return refuse("none", "Client authentication failed");
    return { client, method: "none" };
  }

  /** Splits a scope parameter; null when absent. */
  const scopeList = (value) => (value === null ? null : value.split(" ").filter(Boolean));

  function issueOauth(ctx, family, { refresh }) {
    const now = serverNow();
    const accessExpiresAt = now + Number(config.accessTtlMs);
    const accessToken = mintToken(family.subject, "access", accessExpiresAt);
    tokens.set(digest(accessToken), { kind: "access", family, expiresAt: accessExpiresAt, spent: false });
    const out = {
      access_token: accessToken,
      token_type: "Bearer",
      // Whole seconds, never more than the token really lives.
      expires_in: Math.max(0, Math.floor(Number(config.accessTtlMs) / 1000)),
    };
    if (refresh) {
      const refreshExpiresAt = now + Number(config.refreshTtlMs);
      const refreshToken = mintToken(family.subject, "refresh", refreshExpiresAt);
      tokens.set(digest(refreshToken), { kind: "refresh", family, expiresAt: refreshExpiresAt, spent: false, spentAt: 0 });
      out.refresh_token = refreshToken;
    }
    if (family.scope) out.scope = family.scope;
    return out;
  }

  function sendTokenResponse(ctx, payload) {
    oauthStats.issued++;
    if (ctx.modifiers?.dropResponse) {
      // Committed, then lost on the way back: what a client retrying a refresh runs into.
      oauthStats.droppedResponses++;
      if (ctx.entry) ctx.entry.status = 0;
      ctx.req.socket.destroy();
      return;
    }
    sendJson(ctx, 200, payload, NO_STORE);
  }

  async function handleOauthToken(ctx) {
    oauthStats.token++;
    const params = await readForm(ctx);
    if (!params) return;
    const auth = authenticateClient(ctx, params);
    if (!auth) return;
    const { client } = auth;
    const grantType = params.get("grant_type");
    lastTokenRequest = {
      grant_type: grantType,
      client_id: client.id,
      auth_method: auth.method,
      scope: params.get("scope"),
      resource: params.getAll("resource"),
      audience: params.getAll("audience"),
    };
    if (grantType === null) return oauthError(ctx, 400, "invalid_request", "grant_type is required");
    if (!OAUTH_GRANTS.includes(grantType)) return oauthError(ctx, 400, "unsupported_grant_type", `grant_type ${grantType} is not supported`);
    if (!client.grantTypes.includes(grantType)) {
      return oauthError(ctx, 400, "unauthorized_client", `The client may not use grant_type ${grantType}`);
    }
    const requested = scopeList(params.get("scope"));
    if (requested && client.scope && requested.some((s) => !client.scope.includes(s))) {
      return oauthError(ctx, 400, "invalid_scope", "A requested scope is not allowed for this client");
    }

    if (grantType === "client_credentials") {
      if (client.secret === null) return oauthError(ctx, 400, "unauthorized_client", "A public client cannot use client_credentials");
      const scope = (requested ?? client.scope ?? []).join(" ");
      const family = { clientId: client.id, oauthClient: client.id, subject: client.id, scope, revoked: false };
      families.add(family);
      oauthStats.clientCredentials++;
      return sendTokenResponse(ctx, issueOauth(ctx, family, { refresh: false }));
    }

    if (grantType === "password") {
      const username = params.get("username");
      const password = params.get("password");
      if (!isNonEmptyString(username) || !isNonEmptyString(password)) {
        return oauthError(ctx, 400, "invalid_request", "username and password are required");
      }
      const users = isPlainObject(config.users) ? config.users : {};
      if (!Object.hasOwn(users, username) || !passwordMatches(users[username], password)) {
        return oauthError(ctx, 400, "invalid_grant", "Invalid resource owner credentials");
      }
      const scope = (requested ?? client.scope ?? []).join(" ");
      const family = { clientId: clientIdFor(username), oauthClient: client.id, subject: username, scope, revoked: false };
      families.add(family);
      oauthStats.password++;
      return sendTokenResponse(ctx, issueOauth(ctx, family, { refresh: client.grantTypes.includes("refresh_token") }));
    }

    // refresh_token
    const presented = params.get("refresh_token");
    if (!isNonEmptyString(presented)) return oauthError(ctx, 400, "invalid_request", "refresh_token is required");
    const record = lookup(presented);
    if (!record || record.kind !== "refresh" || record.family.oauthClient !== client.id) {
      return oauthError(ctx, 400, "invalid_grant", "Invalid refresh token");
    }
    const { family } = record;
    if (family.revoked) return oauthError(ctx, 400, "invalid_grant", "Refresh token revoked");
    if (record.spent) {
      if (serverNow() - record.spentAt <= Number(oauthSettings.reuseGraceMs)) {
        oauthStats.graceReuse++;
      } else {
        // Reuse of a rotated token: a race or a theft. Like real servers, kill the grant.
        oauthStats.reuse++;
        revokeFamily(family);
        return oauthError(ctx, 400, "invalid_grant", "Refresh token already used; grant revoked");
      }
    }
    if (serverNow() >= record.expiresAt) return oauthError(ctx, 400, "invalid_grant", "Refresh token expired");
    if (requested) {
      const granted = family.scope.split(" ");
      if (requested.some((s) => !granted.includes(s))) {
        return oauthError(ctx, 400, "invalid_scope", "A requested scope exceeds the grant");
      }
    }
    const rotate = oauthSettings.rotateRefreshTokens && !ctx.modifiers?.omitRefreshToken;
    if (rotate && !record.spent) {
      record.spent = true;
      record.spentAt = serverNow();
    }
    if (!rotate) oauthStats.notRotated++;
    oauthStats.refresh++;
    const payload = issueOauth(ctx, family, { refresh: rotate });
    if (requested) payload.scope = requested.join(" ");
    return sendTokenResponse(ctx, payload);
  }

  async function handleOauthRevoke(ctx) {
    oauthStats.revoke++;
    const params = await readForm(ctx);
    if (!params) return;
    const auth = authenticateClient(ctx, params);
    if (!auth) return;
    const token = params.get("token");
    if (!isNonEmptyString(token)) return oauthError(ctx, 400, "invalid_request", "token is required");
    const hint = params.get("token_type_hint");
    if (hint !== null && hint !== "access_token" && hint !== "refresh_token") {
      return oauthError(ctx, 400, "unsupported_token_type", `token_type_hint ${hint} is not supported`);
    }
    // RFC 7009 §2.2: unknown, invalid or other clients' tokens still answer 200.
    const record = lookup(token);
    if (record && record.family.oauthClient === auth.client.id) {
      if (record.kind === "refresh") revokeFamily(record.family);
      else record.revoked = true;
      oauthStats.revoked++;
    }
    writeHead(ctx, 200, { ...NO_STORE, "content-length": 0 });
    ctx.res.end();
  }

  function handleOauthMetadata(ctx) {
    oauthStats.metadata++;
    if (ctx.req.method !== "GET" && ctx.req.method !== "HEAD") return methodNotAllowed(ctx, ["GET", "HEAD"]);
    const methods = ["client_secret_basic", "client_secret_post", "none"];
    const scopes = [...new Set([...oauthClients.values()].flatMap((c) => c.scope ?? []))];
    sendJson(ctx, 200, {
      issuer: origin,
      token_endpoint: `${origin}/oauth/token`,
      revocation_endpoint: `${origin}/oauth/revoke`,
      grant_types_supported: OAUTH_GRANTS,
      token_endpoint_auth_methods_supported: methods,
      revocation_endpoint_auth_methods_supported: methods,
      response_types_supported: [],
      scopes_supported: scopes,
    });
  }

  // ----- control API (never faulted, never whitelisted, not counted or logged)

  async function handleControl(ctx) {
    const { req, path } = ctx;
    const route = path.slice("/__control/".length);
    const expect = (method) => {
      if (req.method === method) return true;
      methodNotAllowed(ctx, [method]);
      return false;
    };
    const readOptional = () => readJsonObject(ctx, { requireJsonType: false, allowEmpty: true });
    const guard = (fn) => {
      try {
        return fn();
      } catch (err) {
        if (err instanceof ConfigValidationError) return validation(ctx, err.message);
        throw err;
      }
    };
    switch (route) {
      case "config": {
        if (req.method === "GET") return sendData(ctx, publicConfig(config));
        if (!expect("POST")) return;
        const body = await readOptional();
        if (!body) return;
        return guard(() => {
          Object.assign(config, validateConfigPatch(body));
          sendData(ctx, publicConfig(config));
        });
      }
      case "fault": {
        if (!expect("POST")) return;
        const body = await readOptional();
        if (!body) return;
        // JSON has no Infinity: -1 means "forever".
        const times = body.times === undefined ? 1 : body.times === -1 ? Infinity : body.times;
        return guard(() => {
          const handle = addFault(body.match, body.action, times);
          sendData(ctx, { id: handle.id, times: body.times ?? 1 });
        });
      }
      case "clear-faults":
        if (!expect("POST")) return;
        server.clearFaults();
        return sendData(ctx, { cleared: true });
      case "reset": {
        if (!expect("POST")) return;
        const body = await readOptional();
        if (!body) return;
        server.reset({ config: body.config === true });
        return sendData(ctx, { reset: true });
      }
      case "expire-access":
        if (!expect("POST")) return;
        server.expireAccessTokens();
        return sendData(ctx, { expired: true });
      case "revoke-all":
        if (!expect("POST")) return;
        server.revokeAll();
        return sendData(ctx, { revoked: true });
      case "oauth": {
        // GET: settings, client ids and OAuth counters; POST: patch the settings.
        if (req.method === "GET") return sendData(ctx, server.oauth.snapshot());
        if (!expect("POST")) return;
        const body = await readOptional();
        if (!body) return;
        return guard(() => {
          Object.assign(oauthSettings, validateOauthSettings(body));
          sendData(ctx, server.oauth.snapshot());
        });
      }
      case "stats":
        if (!expect("GET")) return;
        return sendData(ctx, { stats: { ...stats }, log: log.map((e) => ({ ...e })) });
      default:
        return notFound(ctx);
    }
  }

  // ----- dispatch

  async function handle(req, res) {
    let url;
    try {
      // Prefixing the origin keeps "//x" a path instead of a protocol-relative URL.
      url = new URL(`http://reference.invalid${req.url.startsWith("/") ? "" : "/"}${req.url}`);
    } catch {
      url = new URL("http://reference.invalid/");
    }
    const ctx = { req, res, url, path: url.pathname, entry: null };

    if (ctx.path.startsWith("/__control/")) {
      if (req.method !== "OPTIONS") return handleControl(ctx);
      writeHead(ctx, 204);
      return res.end();
    }

    stats.requests++;
    // Path only, no query string: a token a buggy client put in the URL must not land here.
    ctx.entry = { method: req.method, path: ctx.path, hasAuthorization: req.headers.authorization !== undefined, status: null };
    log.push(ctx.entry);
    if (log.length > LOG_LIMIT) log.splice(0, log.length - LOG_LIMIT);

    const fault = takeFault(req.method, ctx.path);
    if (fault) {
      stats.faults++;
      if (await applyFault(ctx, fault.action)) return;
      ctx.modifiers = fault.action;
    }

    if (req.method === "OPTIONS") {
      writeHead(ctx, 204);
      return res.end();
    }

    const whitelist = Array.isArray(config.whitelist) ? config.whitelist : [];
    if (whitelist.length > 0 && !whitelist.map(normalizeIp).includes(normalizeIp(req.socket.remoteAddress))) {
      return sendError(ctx, 403, "ForbiddenError", "FORBIDDEN", "IP address not authorized");
    }

    switch (ctx.path) {
      case "/auth/login":
        return handleLogin(ctx);
      case "/auth/refresh":
        return handleRefresh(ctx);
      case "/auth/revoke":
        return handleRevoke(ctx);
      case "/oauth/token":
        return handleOauthToken(ctx);
      case "/oauth/revoke":
        return handleOauthRevoke(ctx);
      case "/.well-known/oauth-authorization-server":
        return handleOauthMetadata(ctx);
      default:
        if (ctx.path.startsWith("/api/")) return handleApi(ctx);
        return notFound(ctx);
    }
  }

  const httpServer = http.createServer((req, res) => {
    handle(req, res).catch((err) => {
      // close() aborted a fault delay: the socket is gone, nothing to answer.
      if (lifetime.signal.aborted) return;
      if (!res.headersSent) {
        const ctx = { req, res, entry: null };
        sendError(ctx, 500, "InternalServerError", "INTERNAL_ERROR", "Reference server error");
      } else {
        res.destroy(err);
      }
    });
  });

  await new Promise((resolve, reject) => {
    httpServer.once("error", reject);
    httpServer.listen(opts.port, opts.host, () => {
      httpServer.off("error", reject);
      resolve();
    });
  });

  const { port, address } = httpServer.address();
  const origin = `http://${address.includes(":") ? `[${address}]` : address}:${port}`;
  let closing = null;

  const server = {
    url: origin,
    port,
    origin,
    stats,
    log,
    config,
    fault: addFault,
    clearFaults() {
      faults = [];
    },
    /** Clears tokens, stats (in place), log (in place) and faults. `{ config: true }` also
     *  restores the config the server started with (handy between cross-process tests). */
    reset({ config: restoreConfig = false } = {}) {
      tokens.clear();
      families.clear();
      for (const key of Object.keys(stats)) stats[key] = 0;
      Object.assign(oauthStats, newOauthStats());
      for (const key of Object.keys(oauthErrors)) delete oauthErrors[key];
      lastTokenRequest = null;
      log.length = 0;
      faults = [];
      if (restoreConfig) {
        Object.assign(config, cloneConfig(initialConfig));
        Object.assign(oauthSettings, initialOauthSettings);
      }
    },
    revokeAll() {
      for (const family of families) revokeFamily(family);
    },
    /** The OAuth 2.0 mode: settings (mutable), counters (reset by reset()), client ids. */
    oauth: {
      settings: oauthSettings,
      stats: oauthStats,
      errors: oauthErrors,
      get lastTokenRequest() {
        return lastTokenRequest && structuredClone(lastTokenRequest);
      },
      clients: Object.freeze(
        Object.fromEntries(
          [...oauthClients.values()].map((c) => [c.id, Object.freeze({ public: c.secret === null, grantTypes: [...c.grantTypes], scope: c.scope ? c.scope.join(" ") : null })]),
        ),
      ),
      tokenEndpoint: `${origin}/oauth/token`,
      revocationEndpoint: `${origin}/oauth/revoke`,
      metadataUrl: `${origin}/.well-known/oauth-authorization-server`,
      /** Revokes every grant of one OAuth client (what an admin's "disconnect app" does). */
      revokeClient(clientId) {
        for (const family of families) if (family.oauthClient === clientId) revokeFamily(family);
      },
      snapshot() {
        return {
          settings: { ...oauthSettings },
          clients: Object.keys(server.oauth.clients),
          stats: { ...oauthStats },
          errors: { ...oauthErrors },
        };
      },
    },
    expireAccessTokens() {
      const past = serverNow() - 1;
      for (const record of tokens.values()) {
        if (record.kind === "access") record.expiresAt = Math.min(record.expiresAt, past);
      }
    },
    close() {
      closing ??= new Promise((resolve) => {
        lifetime.abort();
        httpServer.close(() => resolve());
        // Keep-alive and hung sockets would otherwise hold close() open.
        httpServer.closeAllConnections();
      });
      return closing;
    },
  };
  if (Symbol.asyncDispose) server[Symbol.asyncDispose] = server.close;
  return server;
}

/** Checks the OAuth clients option: { [client_id]: { secret: string|null, grantTypes, scope } }. */
function validateOauthClients(clients) {
  if (!isPlainObject(clients)) throw new TypeError("oauthClients must map client ids to client objects");
  const out = new Map();
  for (const [id, c] of Object.entries(clients)) {
    const vschar = /^[\x20-\x7e]+$/; // RFC 6749 Appendix A
    if (!vschar.test(id)) throw new TypeError(`OAuth client id ${JSON.stringify(id)} must be printable ASCII`);
    if (!isPlainObject(c)) throw new TypeError(`OAuth client ${id} must be an object`);
    if (c.secret !== null && !(isNonEmptyString(c.secret) && vschar.test(c.secret))) {
      throw new TypeError(`OAuth client ${id}: secret must be printable ASCII, or null for a public client`);
    }
    const grantTypes = c.grantTypes ?? ["refresh_token"];
    if (!Array.isArray(grantTypes) || !grantTypes.every((g) => OAUTH_GRANTS.includes(g))) {
      throw new TypeError(`OAuth client ${id}: grantTypes must be some of ${OAUTH_GRANTS.join(", ")}`);
    }
    if (c.scope !== undefined && c.scope !== null && typeof c.scope !== "string") {
      throw new TypeError(`OAuth client ${id}: scope must be a space-separated string`);
    }
    out.set(id, { id, secret: c.secret, grantTypes: [...grantTypes], scope: c.scope ? c.scope.split(" ").filter(Boolean) : null });
  }
  return out;
}

/** Checks a patch of the OAuth settings (startup option `oauth`, POST /__control/oauth). */
function validateOauthSettings(patch) {
  if (!isPlainObject(patch)) throw new ConfigValidationError("OAuth settings must be a JSON object");
  const out = {};
  for (const [key, value] of Object.entries(patch)) {
    if (key === "rotateRefreshTokens") {
      if (typeof value !== "boolean") throw new ConfigValidationError("rotateRefreshTokens must be a boolean");
    } else if (key === "reuseGraceMs") {
      if (!(Number.isFinite(value) && value >= 0)) throw new ConfigValidationError("reuseGraceMs must be a non-negative number");
    } else if (key === "basicDecoding") {
      if (value !== "form" && value !== "raw") throw new ConfigValidationError('basicDecoding must be "form" or "raw"');
    } else {
      throw new ConfigValidationError(`unknown OAuth setting: ${key}`);
    }
    out[key] = value;
  }
  return out;
}

function cloneConfig(c) {
  return {
    accessTtlMs: c.accessTtlMs,
    refreshTtlMs: c.refreshTtlMs,
    whitelist: [...c.whitelist],
    users: { ...c.users },
    dateSkewMs: c.dateSkewMs,
  };
}

/** The config as it may be shown: user names, never passwords. */
function publicConfig(c) {
  return {
    accessTtlMs: c.accessTtlMs,
    refreshTtlMs: c.refreshTtlMs,
    whitelist: Array.isArray(c.whitelist) ? [...c.whitelist] : [],
    users: isPlainObject(c.users) ? Object.keys(c.users) : [],
    dateSkewMs: c.dateSkewMs,
  };
}

// ---------------------------------------------------------------------------------------
// CLI

function parseCli(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: "string" },
      host: { type: "string" },
      "access-ttl": { type: "string" },
      "refresh-ttl": { type: "string" },
      user: { type: "string", multiple: true },
    },
    strict: true,
    allowPositionals: false,
  });
  const options = {};
  const number = (flag, value, { integer = false } = {}) => {
    const n = Number(value);
    if (value === "" || !Number.isFinite(n) || n < 0 || (integer && !Number.isInteger(n))) {
      throw new TypeError(`--${flag} needs a non-negative ${integer ? "integer" : "number"}, got ${JSON.stringify(value)}`);
    }
    return n;
  };
  if (values.port !== undefined) options.port = number("port", values.port, { integer: true });
  if (values.host !== undefined) options.host = values.host;
  if (values["access-ttl"] !== undefined) options.accessTtlMs = number("access-ttl", values["access-ttl"]) * 1000;
  if (values["refresh-ttl"] !== undefined) options.refreshTtlMs = number("refresh-ttl", values["refresh-ttl"]) * 1000;
  if (values.user) {
    // Given users replace the default demo user.
    options.users = {};
    for (const spec of values.user) {
      const colon = spec.indexOf(":");
      if (colon <= 0 || colon === spec.length - 1) throw new TypeError("--user needs name:password");
      options.users[spec.slice(0, colon)] = spec.slice(colon + 1);
    }
  }
  return options;
}

async function main() {
  let options;
  try {
    options = parseCli(process.argv.slice(2));
  } catch (err) {
    // Usage errors only (never a secret): stderr, exit 2.
    process.stderr.write(
      `reference-server: ${err.message}\nusage: reference-server.mjs [--port N] [--host H] [--access-ttl S] [--refresh-ttl S] [--user name:password]...\n`,
    );
    process.exit(2);
  }
  const server = await startServer(options);
  process.stdout.write(`REFERENCE_SERVER_URL=${server.url}\n`);
  const shutdown = () => {
    server.close().then(() => process.exit(0));
  };
  process.once("SIGINT", shutdown);
  process.once("SIGTERM", shutdown);
}

/** True when the module at `moduleUrl` (its import.meta.url) is the entry point. That URL is
 *  always the real path, so argv[1] is resolved too (a symlinked or relative invocation must
 *  still start the CLI). Also used by tests/oauth/provider.mjs. */
export function isMain(moduleUrl) {
  if (!process.argv[1]) return false;
  try {
    return moduleUrl === pathToFileURL(realpathSync(process.argv[1])).href;
  } catch {
    return moduleUrl === pathToFileURL(process.argv[1]).href;
  }
}

if (isMain(import.meta.url)) await main();
