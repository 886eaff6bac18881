// A Cloudflare Worker that serves `GET /products` from the B2B API with ONE refresh per token
// rotation, however many isolates run it. The AuthBroker Durable Object (exported below, bound
// as AUTH_BROKER) alone logs in and refreshes: it keeps the tokens in its own strongly
// consistent storage and refreshes ahead of expiry on an alarm. Each isolate keeps a brokered
// AuthSession: a normal session, its access token cached in the isolate, whose login and
// refresh are RPC calls to the broker. The refresh token never leaves the Durable Object.
//
// Configuration (wrangler.toml / secrets):
//   AUTH_SESSION_HOST                    var     base URL of the API (broker and isolates)
//   AUTH_SESSION_USERNAME, _PASSWORD     secrets the service account (read by the broker only)
//   AUTH_SESSION_REFRESH_MARGIN_SECONDS  var     optional, default 300: the broker's margin
//   REFRESH_MARGIN_SECONDS               var     optional, default 300: the isolates' margin
//   AUTH_BROKER                          Durable Object namespace of class AuthBroker
//
// The response never holds a token: only the products, or `{ "error": CODE }`.
import { AuthBroker, AuthError, brokeredSession } from "auth-session/workers";

// The Durable Object class must be exported by the Worker's main module.
export { AuthBroker };

/** One session per isolate, created on the first request (env is only known then). */
let session = null;

function sessionFor(env) {
  session ??= brokeredSession(env.AUTH_BROKER, {
    // One broker per account: this Worker calls the API as one account.
    name: "main",
    host: env.AUTH_SESSION_HOST,
    refreshMarginSeconds: env.REFRESH_MARGIN_SECONDS ? Number(env.REFRESH_MARGIN_SECONDS) : undefined,
  });
  return session;
}

/** HTTP status for an AuthError code. The client of this Worker cannot fix the Worker's
 *  own credentials or the API's failures, so most map to a 5xx. */
const STATUS_BY_CODE = {
  CONFIG_ERROR: 500, // a missing var or secret (the broker's CONFIG_ERROR arrives with status 503)
  DISPOSED: 500,
  STORAGE_ERROR: 503,
  RATE_LIMITED: 503,
  SERVER_ERROR: 502, // also: the broker could not be reached after the session's retries
  TIMEOUT: 504,
  ABORTED: 499,
  NETWORK_ERROR: 502,
  HTTP_ERROR: 502,
  INVALID_RESPONSE: 502,
  RESPONSE_TOO_LARGE: 502,
  REDIRECT_BLOCKED: 502,
  ORIGIN_NOT_ALLOWED: 502,
  // The service account was rejected: the Worker is misconfigured, not the caller.
  UNAUTHORIZED: 502,
  FORBIDDEN: 502,
  SESSION_EXPIRED: 502,
  NOT_AUTHENTICATED: 502,
};

function errorResponse(err) {
  if (!(err instanceof AuthError)) {
    console.error("products: unexpected error", err?.name, err?.message);
    return json({ error: "INTERNAL_ERROR" }, 500);
  }
  // AuthError messages never hold a token or a password: safe to log.
  console.error(`products: ${err.code} (status ${err.status}): ${err.message}`);
  if (err.code === "NOT_AUTHENTICATED" || err.code === "SESSION_EXPIRED") {
    // The session was revoked (revoke() ends it for every isolate): the next request makes a
    // new session, whose first call asks the broker, which logs in again.
    session = null;
  }
  const headers = err.code === "RATE_LIMITED" || err.status === 503 ? { "retry-after": "30" } : {};
  return json({ error: err.code }, STATUS_BY_CODE[err.code] ?? 502, headers);
}

function json(body, status = 200, headers = {}) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store", ...headers },
  });
}

export default {
  async fetch(request, env, ctx) {
    const { pathname } = new URL(request.url);
    if (pathname !== "/products") return json({ error: "NOT_FOUND" }, 404);
    if (request.method !== "GET" && request.method !== "HEAD") {
      return json({ error: "METHOD_NOT_ALLOWED" }, 405, { allow: "GET, HEAD" });
    }
    try {
      // The first call logs in through the broker (which restores its stored pair, or logs
      // in once for every isolate). waitUntil: inside the margin, a token with time left is
      // used at once and the next pair is fetched from the broker after the response.
      const products = await sessionFor(env).json("/api/v1/products", { waitUntil: ctx });
      return json(products);
    } catch (err) {
      return errorResponse(err);
    }
  },
};
