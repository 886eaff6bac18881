// A Cloudflare Worker that serves `GET /products` from the B2B API through one AuthSession
// per isolate. The tokens live in a KV namespace (binding TOKENS), so a new isolate (a
// deploy, an eviction, another location) picks up the current pair instead of logging in
// again, and a refresh done by one isolate is adopted by the others.
//
// Configuration (wrangler.toml / secrets):
//   API_HOST                  var     base URL of the API, e.g. "https://api.example.com"
//   API_USERNAME, API_PASSWORD secrets the service account (`wrangler secret put …`)
//   REFRESH_MARGIN_SECONDS    var     optional, default 300: refresh this long before expiry
//   TOKENS                    KV      where the session keeps its tokens
//
// The response never holds a token: only the products, or `{ "error": CODE }`.
import { AuthSession, AuthError } from "auth-session";

/** One session per isolate, created on the first request (env is only known then). */
let session = null;
/** restore() (and a login when KV holds no usable session), once per isolate. */
let ready = null;

function sessionFor(env) {
  session ??= new AuthSession({
    host: env.API_HOST,
    credentials: { username: env.API_USERNAME, password: env.API_PASSWORD },
    storage: env.TOKENS,
    refreshMarginSeconds: env.REFRESH_MARGIN_SECONDS ? Number(env.REFRESH_MARGIN_SECONDS) : undefined,
    // Timers die with the request that set them: refresh on demand instead (each call
    // below hands the refresh to ctx.waitUntil).
    autoRefresh: false,
  });
  return session;
}

/**
 * Loads the tokens from KV once per isolate; logs in when KV has none. Concurrent first
 * requests share the one promise. It is handed to ctx.waitUntil so that it completes even
 * when the client of the request that started it goes away (workerd cancels a request's
 * pending I/O when it ends, and the others are waiting on that I/O). A failure is not
 * cached: the next request tries again.
 */
function whenReady(s, ctx) {
  if (!ready) {
    const p = (async () => {
      const restored = await s.restore();
      if (!restored) await s.login();
    })();
    ready = p;
    p.catch(() => {
      if (ready === p) ready = null;
    });
    ctx.waitUntil(p.catch(() => {}));
  }
  return ready;
}

/** HTTP status for an AuthError code. The client of this Worker cannot fix the Worker's
 *  own credentials or the API's failures, so most map to a 5xx. */
const STATUS_BY_CODE = {
  CONFIG_ERROR: 500, // a missing var or secret
  DISPOSED: 500,
  STORAGE_ERROR: 503, // KV failed or holds a malformed record
  RATE_LIMITED: 503,
  TIMEOUT: 504,
  ABORTED: 499, // our own client went away
  NETWORK_ERROR: 502,
  SERVER_ERROR: 502,
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
  if (err.code === "SESSION_EXPIRED" || err.code === "NOT_AUTHENTICATED") {
    // The session ended (e.g. revoked elsewhere): log in again on the next request.
    ready = null;
  }
  const headers = err.code === "RATE_LIMITED" || err.code === "STORAGE_ERROR" ? { "retry-after": "30" } : {};
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
      const s = sessionFor(env);
      await whenReady(s, ctx);
      // waitUntil: a token inside the refresh margin is used as is and the refresh (plus
      // its KV write) finishes in the background, after this response.
      const products = await s.json("/api/v1/products", { waitUntil: ctx });
      return json(products);
    } catch (err) {
      return errorResponse(err);
    }
  },
};
