// One adapter per contender, so the measuring code is the same for all of them:
//
//   const c = await makeClient(name, { host, autoRefresh });
//   await c.login();          // against the reference server, demo/demo-password
//   const ok = await c.get(); // authenticated GET /api/v1/products, body read and parsed;
//                             // true for a 200 with the success envelope, false otherwise
//   c.dispose();
//
// Each `get` does what a user of that client would write for "GET this JSON": fetch-based
// clients read `response.json()`, ky calls `.json()`, axios parses by itself.

// First: it catches the wasm instance the package makes when it is imported.
import { wasmMemoryBytes as wasmBytes } from "./wasm-memory.mjs";

export const USER = Object.freeze({ username: "demo", password: "demo-password" });
export const PRODUCTS = "/api/v1/products";

/** Contenders that can speak the reference server's protocol (supabase cannot: see run.mjs). */
export const CLIENTS = ["raw-fetch", "handwritten", "contract", "ky", "axios", "auth-session"];

export const LABELS = {
  "raw-fetch": "raw fetch (static header)",
  handwritten: "hand-written (floor)",
  contract: "hand-written (contract)",
  ky: "ky + hooks",
  axios: "axios + axios-auth-refresh",
  supabase: "@supabase/auth-js",
  "auth-session": "auth-session (ours, Node ESM)",
};

/** Logs in once with plain fetch; returns the token pair and its data envelope. */
/** A client with login, fetch and dispose (ours, and both hand-written ones), driven alike. */
function handWritten(session) {
  return {
    inner: session,
    login: () => session.login(),
    async get() {
      const res = await session.fetch(PRODUCTS);
      const body = await res.json();
      return res.status === 200 && isProducts(body);
    },
    dispose: () => session.dispose(),
  };
}

export async function rawLogin(host, user = USER) {
  const res = await fetch(`${host}/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(user),
  });
  const body = await res.json();
  if (res.status !== 200 || body?.success !== true) throw new Error(`login failed: HTTP ${res.status}`);
  return body.data;
}

const isProducts = (body) => body?.success === true && Array.isArray(body.data);

export async function makeClient(name, { host, autoRefresh = true } = {}) {
  switch (name) {
    case "raw-fetch": {
      // The floor: a token obtained once, a static header, nothing else.
      let headers = null;
      const url = `${host}${PRODUCTS}`;
      return {
        async login() {
          const data = await rawLogin(host);
          headers = { authorization: `Bearer ${data.access_token}` };
        },
        async get() {
          const res = await fetch(url, { headers });
          const body = await res.json();
          return res.status === 200 && isProducts(body);
        },
        get inner() {
          return headers;
        },
        dispose() {
          headers = null;
        },
      };
    }
    case "handwritten": {
      const { HandwrittenSession } = await import("../contenders/handwritten.mjs");
      return handWritten(new HandwrittenSession({ host, credentials: USER, autoRefresh }));
    }
    case "contract": {
      // The same contract as auth-session on these paths (timeouts, retries, skew, json()
      // envelope...): see contenders/contract.mjs. Used the way auth-session is used below.
      const { ContractSession } = await import("../contenders/contract.mjs");
      return handWritten(new ContractSession({ host, credentials: USER, autoRefresh }));
    }
    case "ky": {
      const { createKySession } = await import("../contenders/ky.mjs");
      const s = createKySession({ host });
      return {
        inner: s,
        login: () => s.login(USER.username, USER.password),
        async get() {
          // ky throws HTTPError for a non-2xx.
          return isProducts(await s.api.get(PRODUCTS.slice(1)).json());
        },
        dispose() {},
      };
    }
    case "axios": {
      const { createAxiosSession } = await import("../contenders/axios.mjs");
      const s = createAxiosSession({ host });
      return {
        inner: s,
        login: () => s.login(USER.username, USER.password),
        async get() {
          // axios rejects a non-2xx.
          const res = await s.api.get(PRODUCTS);
          return res.status === 200 && isProducts(res.data);
        },
        dispose() {},
      };
    }
    case "auth-session": {
      const { AuthSession } = await import("auth-session");
      return handWritten(new AuthSession({ host, credentials: USER, autoRefresh }));
    }
    default:
      throw new Error(`unknown contender ${name}`);
  }
}

/** auth-session's wasm linear memory in bytes (0 when the package is not loaded). */
export async function wasmMemoryBytes() {
  return wasmBytes();
}
