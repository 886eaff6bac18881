// A Worker as a strict TypeScript user writes it, with @cloudflare/workers-types: every
// line must type-check against the package's declarations.
import { AuthSession, AuthError, SessionPool, type TokenStorage } from "auth-session";

interface Env {
  API: Fetcher;
  TOKENS: KVNamespace;
  API_HOST: string;
  API_USERNAME: string;
  API_PASSWORD: string;
}

let session: AuthSession | undefined;

export default {
  async fetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
    session ??= new AuthSession({
      host: env.API_HOST,
      credentials: { username: env.API_USERNAME, password: env.API_PASSWORD },
      fetch: env.API, // a service binding
      storage: env.TOKENS, // a KV namespace, as is
      autoRefresh: false,
    });
    try {
      const products = await session.json<{ id: number }[]>("/api/v1/products", { waitUntil: ctx });
      const created = await session.fetch("/api/v1/orders", { method: "POST", json: { sku: "x" }, waitUntil: ctx });
      return Response.json({ n: products.length, status: created.status, url: request.url });
    } catch (err) {
      if (AuthError.is(err)) return Response.json(err.toJSON(), { status: 502 });
      throw err;
    }
  },
} satisfies ExportedHandler<Env>;

// Durable Object storage, as is.
export class Tokens {
  readonly session: AuthSession;
  constructor(state: DurableObjectState, env: Env) {
    this.session = new AuthSession({ host: env.API_HOST, storage: state.storage, storageKey: "tokens" });
  }
}

// A Map wrapper, and a storage with the lease.
const map = new Map<string, string>();
export const mapStorage: TokenStorage = {
  get: (key) => map.get(key),
  put: (key, value) => void map.set(key, value),
  delete: (key) => map.delete(key),
  acquire: async (_key, _ttlMs) => "lease-1",
  release: async () => {},
};

export const pool = new SessionPool({ max: 10, create: (tenant) => new AuthSession({ host: `https://${tenant}.example.com` }) });

// @ts-expect-error: fetch must be a function or an object with a fetch method
new AuthSession({ host: "https://api.example.com", fetch: {} });
