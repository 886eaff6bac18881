// A strict TypeScript consumer of the package (ESM, `module: nodenext`): every member of the
// API used with the types a user relies on, and wrong usage that must not compile. Only
// type-checked (`tsc --noEmit`, scripts/test-runtimes.sh); never run.
import { AuthError, AuthSession } from "auth-session";
import type {
  AuthErrorCode,
  AuthSessionEvent,
  AuthSessionOptions,
  SessionInfo,
  TokenStorage,
} from "auth-session";

/** A TokenStorage of its own (sync methods), like a user's. */
class MemoryStorage implements TokenStorage {
  readonly #items = new Map<string, string>();
  get(key: string): string | undefined {
    return this.#items.get(key);
  }
  put(key: string, value: string): void {
    this.#items.set(key, value);
  }
  delete(key: string): boolean {
    return this.#items.delete(key);
  }
}

/** An async one, shaped like a Workers KV namespace. */
const kvLike: TokenStorage = {
  get: async (_key: string): Promise<string | null> => null,
  put: async (_key: string, _value: string): Promise<void> => {},
  delete: async (_key: string): Promise<void> => {},
};

const options: AuthSessionOptions = {
  host: "https://api.example.com/v2",
  credentials: { username: "svc-reports", password: "not-a-real-password" },
  refreshMarginSeconds: 300,
  autoRefresh: true,
  timeoutMs: 10_000,
  retries: 2,
  maxRetryAfterSeconds: 30,
  paths: { login: "/auth/login", refresh: "/auth/refresh", revoke: "/auth/revoke" },
  fetch: globalThis.fetch,
  storage: new MemoryStorage(),
  storageKey: "auth-session:svc-reports",
  allowedOrigins: ["https://files.example.com"],
  allowInsecureHttp: false,
  waitUntil: (promise: Promise<unknown>) => void promise.catch(() => {}),
};

interface Product {
  id: number;
  name: string;
}

export async function useEverything(): Promise<Product[]> {
  using session = new AuthSession(options);
  const other = new AuthSession({ host: "http://127.0.0.1:8787", storage: kvLike });

  const loggedIn: SessionInfo = await session.login();
  const explicit: SessionInfo = await other.login("demo", "demo-password");
  const refreshed: SessionInfo = await session.refresh();
  const restored: SessionInfo | null = await session.restore();

  const products: Product[] = await session.json<Product[]>("/api/v1/products");
  const untyped: unknown = await session.json(new URL("https://api.example.com/v2/api/v1/products"));
  const controller = new AbortController();
  const res: Response = await session.fetch("/api/v1/echo", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ hello: "world" }),
    signal: controller.signal,
  });
  const viaRequest: Response = await session.fetch(new Request("https://api.example.com/v2/x"));
  const token: string = await session.getAccessToken();

  const info: SessionInfo = session.info;
  const state: "anonymous" | "active" | "expired" | "revoked" = info.state;
  const clientId: number | null = info.clientId;
  const accessExpiresAt: Date | null = info.accessExpiresAt;
  const refreshExpiresAt: Date | null = info.refreshExpiresAt;
  const snapshot: SessionInfo = session.toJSON();

  const offTokens: () => void = session.on("tokens", (next) => {
    const when: Date | null = next.accessExpiresAt;
    void when;
  });
  session.on("expired", (next: SessionInfo) => void next.state);
  session.on("revoked", (next) => void next.clientId);
  session.on("error", (error) => {
    const code: AuthErrorCode | (string & {}) = error.code;
    const status: number = error.status;
    const retryable: boolean = error.retryable;
    void [code, status, retryable, error.name, error.message];
  });
  const event: AuthSessionEvent = "tokens";
  session.on(event, (payload: SessionInfo | AuthError) => void payload);
  offTokens();

  try {
    await other.json<Product[]>("/api/v1/products");
  } catch (err) {
    if (err instanceof AuthError) {
      switch (err.code) {
        case "SESSION_EXPIRED":
          await other.login("demo", "demo-password");
          break;
        case "NOT_AUTHENTICATED":
        case "RATE_LIMITED":
        case "UNAUTHORIZED":
        case "A_CODE_ONLY_THE_SERVER_KNOWS":
          break;
        default:
          throw err;
      }
    }
  }
  const made = new AuthError("message", "ServerError", "SERVER_ERROR", 503, true);
  const asError: Error = made;

  await session.revoke();
  other.dispose();
  other[Symbol.dispose]();

  void [loggedIn, explicit, refreshed, restored, untyped, res, viaRequest, token];
  void [state, clientId, accessExpiresAt, refreshExpiresAt, snapshot, asError];
  return products;
}

// --- Wrong usage: each line below must be a type error ----------------------------------------
export function wrongUsage(session: AuthSession, info: SessionInfo): void {
  // @ts-expect-error host is required
  new AuthSession({});
  // @ts-expect-error options are required
  new AuthSession();
  // @ts-expect-error retries is a number
  new AuthSession({ host: "https://api.example.com", retries: "2" });
  // @ts-expect-error an unknown option
  new AuthSession({ host: "https://api.example.com", refreshMargin: 60 });
  // @ts-expect-error credentials need a password
  new AuthSession({ host: "https://api.example.com", credentials: { username: "svc" } });
  // @ts-expect-error a storage needs put()
  new AuthSession({ host: "https://api.example.com", storage: { get: () => null, delete: () => {} } });
  // @ts-expect-error login takes strings
  void session.login("demo", 1234);
  // @ts-expect-error json takes a string, URL or Request
  void session.json(42);
  // @ts-expect-error there is no such event
  session.on("refreshed", () => {});
  // @ts-expect-error an error listener receives an AuthError, not a SessionInfo
  session.on("error", (payload: SessionInfo) => void payload);
  // @ts-expect-error info is read-only
  session.info = info;
  // @ts-expect-error SessionInfo.state is a closed union
  const state: SessionInfo["state"] = "logged-in";
  // @ts-expect-error the token is a string, not a SessionInfo
  const notInfo: Promise<SessionInfo> = session.getAccessToken();
  // @ts-expect-error dispose returns nothing to await on
  session.dispose().then(() => {});
  void [state, notInfo];
}
