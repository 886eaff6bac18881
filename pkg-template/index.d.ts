// Type declarations of the auth-session package; REFERENCE.md describes the same API.
// Hand-written, like the glue: the types users see are the driver's, not the wasm's.

/**
 * A client session for the API: logs in, keeps the access token fresh (one refresh at a
 * time, however many callers), sends authenticated requests, and revokes.
 *
 * The package loads and instantiates its WebAssembly when it is imported; there is no
 * init call.
 *
 * @example
 * ```ts
 * import { AuthSession, AuthError } from "auth-session";
 *
 * const session = new AuthSession({
 *   host: "https://api.example.com",
 *   credentials: { username: "svc-reports", password: process.env.API_PASSWORD! },
 * });
 * await session.login();
 * const report = await session.json<Report>("/reports/42");
 * session.on("error", (err) => console.warn(err.code, err.message));
 * await session.revoke();
 * ```
 */
export class AuthSession {
  /**
   * Validates the options; makes no request.
   * @throws {AuthError} `CONFIG_ERROR` when an option is missing or invalid (for example a
   * `host` that is not an absolute URL, or `http://` to a host other than localhost
   * without `allowInsecureHttp`).
   */
  constructor(options: AuthSessionOptions);

  /**
   * Logs in with the given credentials, or with `options.credentials` when called without
   * arguments, and stores the tokens (in `options.storage` too, when given).
   * Resolves with the new session info; emits `tokens`.
   * @throws {AuthError} `CONFIG_ERROR` without arguments and without `options.credentials`
   * (no request is made); the server's code (e.g. `UNAUTHORIZED`) for rejected credentials.
   */
  login(username?: string, password?: string): Promise<SessionInfo>;

  /**
   * Exchanges the refresh token for a new pair now. Single-flight: concurrent callers
   * (and `fetch`, `json`, `getAccessToken` and the auto-refresh timer) share one request.
   * @throws {AuthError} `SESSION_EXPIRED` when the server rejects the refresh token or it
   * has expired (unless `credentials` allow a transparent new login); `NOT_AUTHENTICATED`
   * without a session.
   */
  refresh(): Promise<SessionInfo>;

  /**
   * Revokes the session on the server and clears it locally (memory and storage), cancelling
   * timers. Local state is cleared even when the server call fails; the error is then still
   * thrown. Afterwards calls fail with `NOT_AUTHENTICATED` until the next `login`.
   */
  revoke(): Promise<void>;

  /**
   * `fetch` with the bearer token. Relative inputs resolve against `host` (including its
   * path prefix). Refreshes first when the token expires within `refreshMarginSeconds`; on a
   * 401 refreshes once and replays once. HTTP statuses are returned, not thrown.
   *
   * `init.signal` aborts this call only (`ABORTED`), also while it waits for a refresh
   * shared with other callers; the refresh itself goes on.
   * @throws {AuthError} for the failures in the error table (`NETWORK_ERROR`, `TIMEOUT`,
   * `ABORTED`, `ORIGIN_NOT_ALLOWED`, `SESSION_EXPIRED`, `NOT_AUTHENTICATED`, `DISPOSED`, …).
   */
  fetch(input: string | URL | Request, init?: AuthRequestInit): Promise<Response>;

  /**
   * Like {@link AuthSession.fetch}, then parses the body and unwraps the API envelope
   * `{ "success": true, "data": X }` to `X`. With the `oauth` option: the API's JSON as is
   * (no envelope), `undefined` for an empty 2xx body.
   * @throws {AuthError} the server's code for an error envelope; `SERVER_ERROR` or
   * `HTTP_ERROR` for a non-2xx status without one; `INVALID_RESPONSE` for a body that is
   * not the envelope. With `oauth`: `SERVER_ERROR`, `RATE_LIMITED` or `HTTP_ERROR` for a
   * non-2xx status.
   */
  json<T = unknown>(input: string | URL | Request, init?: AuthRequestInit): Promise<T>;

  /**
   * An access token valid for at least `refreshMarginSeconds`, refreshing first if needed.
   * For callers that must set the header themselves; prefer {@link AuthSession.fetch}.
   * `init.signal` stops the wait for a shared refresh (`ABORTED`).
   *
   * `init.replacing`: the token a server just rejected (a 401 to a request you sent
   * yourself, e.g. with axios or ky). If the session already holds another token, that one
   * comes back at once; else the session refreshes — one refresh however many callers
   * report the same token — and returns the new one.
   */
  getAccessToken(init?: { signal?: AbortSignal; replacing?: string }): Promise<string>;

  /**
   * Loads the tokens saved in `options.storage` (for example after a restart). Resolves
   * with the restored session info, or `null` when the storage holds no session, one whose
   * refresh token has expired, or a record this client cannot read (that one is also an
   * `error` event with `STORAGE_ERROR`), or when a `login`/`revoke` came first.
   * @throws {AuthError} `STORAGE_ERROR` when the storage throws or does not answer within
   * `timeoutMs`.
   */
  restore(): Promise<SessionInfo | null>;

  /**
   * Whether a request to `url` (absolute, or relative to `host`) may carry the bearer token:
   * the host's origin or one of `allowedOrigins`. For clients that set the header
   * themselves; `auth-session/clients` uses it.
   */
  mayReceiveToken(url: string | URL): boolean;

  /** The current state and expiry times. Never contains a token. */
  readonly info: SessionInfo;

  /**
   * Subscribes to session events. Returns a function that unsubscribes.
   * - `tokens`: the session holds new tokens (payload: the new info, plus `reason`: `login`,
   *   `refresh`, `restore`, or `adopt` for a pair another instance stored);
   * - `expired`: the session ended because the refresh token was rejected or expired;
   * - `revoked`: `revoke()` ended the session;
   * - `error`: a background failure (e.g. a timer-driven refresh); never an unhandled
   *   rejection.
   *
   * No payload ever holds a token.
   */
  on(event: "tokens", listener: (info: TokensEvent) => void): () => void;
  on(event: "expired" | "revoked", listener: (info: SessionEvent) => void): () => void;
  on(event: "error", listener: (error: AuthError) => void): () => void;
  on(event: AuthSessionEvent, listener: (payload: SessionInfo | AuthError) => void): () => void;

  /**
   * Ends the session locally: cancels timers and drops the tokens from memory. Later calls
   * fail with `DISPOSED`. Idempotent.
   */
  dispose(): void;

  /**
   * Same as {@link AuthSession.dispose}, for explicit resource management where the runtime
   * or the compiler supports it (TypeScript's `using`, down-levelled; not Node 20's own
   * parser: there, call `dispose()` in a `finally`).
   */
  [Symbol.dispose](): void;

  /** The same as {@link AuthSession.info}; what `JSON.stringify(session)` writes. */
  toJSON(): SessionInfo;
}

/**
 * Many tenants in one process: one {@link AuthSession} per key (an account, a tenant id),
 * created on first use by `create`, at most `max` alive (default 1000): the least recently
 * used is disposed when a new one would exceed the bound. Each session keeps its own stored
 * record, so an evicted tenant restores instead of logging in again.
 *
 * @example
 * ```ts
 * const pool = new SessionPool({
 *   max: 500,
 *   create: (tenant) => new AuthSession({ host, credentials: credentialsOf(tenant), storage }),
 * });
 * const orders = await pool.get(tenantId).json("/api/v1/orders");
 * ```
 */
export class SessionPool {
  constructor(options: { max?: number; create: (key: string) => AuthSession });
  /** The session of `key`, created on first use. */
  get(key: string): AuthSession;
  /** Disposes and forgets the session of `key`; its stored record stays. */
  delete(key: string): boolean;
  readonly size: number;
  /** Disposes every session. */
  dispose(): void;
  [Symbol.dispose](): void;
}

/** The events of {@link AuthSession.on}. */
export type AuthSessionEvent = "tokens" | "expired" | "revoked" | "error";

export interface AuthSessionOptions {
  /**
   * Base URL of the API, e.g. `"https://api.example.com"`. May carry a path prefix
   * (`"https://x.test/v2"`): auth paths and relative request inputs are appended to it.
   */
  host: string;

  /**
   * Credentials for `login()` without arguments, and for a transparent new login when the
   * refresh token is rejected or has expired. With `oauth`: the resource owner's, for the
   * `password` grant.
   */
  credentials?: { username: string; password: string };

  /** Refresh when the access token expires within this many seconds. Default 300. */
  refreshMarginSeconds?: number;

  /**
   * Refresh ahead of expiry on a timer. Default true. Timers never keep a Node process
   * alive; in Workers, pass `waitUntil` so the refresh outlives the request.
   */
  autoRefresh?: boolean;

  /**
   * Milliseconds per HTTP attempt (headers and body for auth calls and `json`; when it fires
   * the body read is aborted and the connection released), and per storage call. Default 10000.
   */
  timeoutMs?: number;

  /**
   * The largest body `json()` reads; over it, `RESPONSE_TOO_LARGE` and the body stream is
   * cancelled. Default 10485760 (10 MiB). Auth responses have their own 64 KiB cap.
   */
  maxResponseBytes?: number;

  /**
   * Extra attempts after the first for temporary failures (network, timeout, 5xx, 429),
   * with exponential backoff and full jitter. Default 2; `0` means one attempt.
   */
  retries?: number;

  /** A `Retry-After` longer than this fails at once with `RATE_LIMITED`. Default 30. */
  maxRetryAfterSeconds?: number;

  /**
   * Endpoint paths, appended to `host`. Defaults: `/auth/login`, `/auth/refresh`,
   * `/auth/revoke`. Cannot be combined with `oauth`.
   */
  paths?: { login?: string; refresh?: string; revoke?: string };

  /**
   * OAuth 2.0 mode: the tokens come from an OAuth 2.0 token endpoint (RFC 6749) instead of
   * the provider protocol's `/auth/*` paths, and `json()` resolves to the API's JSON as is.
   * `host` stays the API's base URL, the only origin (with `allowedOrigins`) that receives
   * the access token. Everything else (single-flight refresh, refresh ahead of expiry, the
   * replay after a 401, `storage` and its lease, `encryptionKey`, `logger`) works the same.
   * Cannot be combined with `paths`.
   */
  oauth?: OAuthOptions;

  /**
   * The fetch to use: a function called like `fetch(input, init)`, or an object with a
   * `fetch` method, called as a method (a Workers service binding, a `Fetcher`). Default
   * `globalThis.fetch`.
   */
  fetch?: FetchFunction | { fetch(input: any, init?: any): Promise<Response> };

  /** Where tokens persist between processes or requests (a Workers KV namespace or Durable Object storage fits). Default: memory only. */
  storage?: TokenStorage;

  /**
   * The key of the record in `storage`. Default: derived from `host` and, with
   * `credentials`, the account (a hash of the username, never the username), so tenants
   * sharing one store never share a record. Sessions without `credentials` know no
   * account: give each tenant its own `storageKey`.
   */
  storageKey?: string;

  /**
   * Encrypts the stored record (AES-GCM with the runtime's WebCrypto; the record's key and
   * account are authenticated with it). An AES-GCM `CryptoKey`, or 16 or 32 raw key bytes.
   * A record that does not open (another key, tampered, truncated) is treated as absent and
   * reported as a `STORAGE_ERROR` event.
   */
  encryptionKey?: CryptoKey | Uint8Array | ArrayBuffer;

  /**
   * Receives a structured record of everything the session does with the auth server: a
   * refresh starting and why (`trigger`: `manual`, `margin`, `401`, `timer`, `background`),
   * a login, each auth request (`endpoint`, `attempt`), its response (`status`, and `code`
   * for a failure), each retry (`delayMs`, `code`); for API calls (`endpoint: "api"`) each
   * attempt, its response, each retry and each redirect (`followed`). Never a token, a
   * password or a body. Called after the session's own work; a logger that throws is ignored.
   */
  logger?: (record: LogRecord) => void;

  /**
   * A name for this session's records (at most 64 characters, no control characters): copied
   * as `label` into every log record and every `tokens`, `expired` and `revoked` payload.
   * Never put a secret in it.
   */
  label?: string;

  /**
   * The refresh lease's time to live in ms, with a storage that has `acquire`/`release`.
   * Default: `timeoutMs × (retries + 4)` plus the backoffs' ceilings (60.6 s with the
   * defaults): the acquire, the look, every attempt of a refresh and the record write.
   * At least `4 × timeoutMs`. A holder that dies costs the others at most this long without
   * a refresh; their calls go on with their still-valid tokens meanwhile.
   */
  leaseMs?: number;

  /** Origins besides the host's that may receive the bearer token, e.g. `"https://files.example.com"`. */
  allowedOrigins?: string[];

  /** Allow `http://` hosts other than localhost and 127.0.0.1. Default false. */
  allowInsecureHttp?: boolean;

  /**
   * Keeps background work (a refresh, a storage write) alive beyond the current request,
   * and lets a call inside the refresh margin go out at once with the current token while
   * the refresh finishes behind it. In a Worker pass `ctx` itself or
   * `ctx.waitUntil.bind(ctx)`: workerd cancels work left pending when the request that
   * started it ends. Per call: `session.json(url, { waitUntil: ctx })`.
   */
  waitUntil?: WaitUntil;
}

/**
 * The `oauth` option of {@link AuthSessionOptions}: where the token endpoint is, how the
 * client authenticates, and which grant gets the first tokens. Give `issuer` or
 * `tokenEndpoint`, and `clientId`.
 *
 * Token requests are `POST`s, form-encoded, asking for JSON, never following a redirect.
 * A refresh sends `grant_type=refresh_token` when the session holds a refresh token (an
 * answer without a new one keeps the old one); otherwise it runs the grant again.
 *
 * @example
 * ```ts
 * const session = new AuthSession({
 *   host: "https://api.example.com",
 *   oauth: {
 *     tokenEndpoint: "https://auth.example.com/oauth2/token",
 *     clientId: "reports-service",
 *     clientSecret: process.env.OAUTH_CLIENT_SECRET!,
 *     scope: "reports:read",
 *   },
 * });
 * const report = await session.json<Report>("/reports/42"); // the API's JSON as is
 * ```
 */
export interface OAuthOptions {
  /**
   * The authorization server's issuer identifier, for discovery: the first auth operation
   * reads `<origin>/.well-known/oauth-authorization-server<issuer path>` (RFC 8414) and, on
   * a 404, `<issuer>/.well-known/openid-configuration`. The document's `issuer` must equal
   * this exactly; its `token_endpoint` (and `revocation_endpoint`) are used for the
   * session's life. A bad document fails that operation with `INVALID_RESPONSE`.
   */
  issuer?: string;

  /**
   * The token endpoint, an absolute `https://` URL (`http://` only for localhost and
   * 127.0.0.1, unless `allowInsecureHttp`). Default: discovered from `issuer`.
   */
  tokenEndpoint?: string;

  /**
   * The revocation endpoint (RFC 7009) that `revoke()` calls. Default: discovered from
   * `issuer`, else none: `revoke()` then clears the session and the stored record only.
   */
  revocationEndpoint?: string;

  /** The client identifier registered with the authorization server. */
  clientId: string;

  /** The client secret, for `client_secret_basic` (the default with it) or `client_secret_post`. */
  clientSecret?: string;

  /**
   * For `private_key_jwt` (RFC 7523), the default with it: a private JWK (RSA: RS256, or
   * PS256 if its `alg` says so; EC P-256: ES256, P-384: ES384; Ed25519: EdDSA) or a
   * `CryptoKey` of one of these; a JWK whose `alg` names another algorithm is a
   * `CONFIG_ERROR`. Each token request carries a fresh assertion signed
   * with the runtime's WebCrypto: `iss` and `sub` the client id, `aud` the token endpoint,
   * a random `jti`, `exp` 60 seconds after `iat`.
   */
  privateKey?: JsonWebKey | CryptoKey;

  /** The `kid` of the assertion's header. Default: the JWK's `kid`. */
  keyId?: string;

  /**
   * How the client authenticates at the token and revocation endpoints. Default:
   * `private_key_jwt` with `privateKey`, `client_secret_basic` with `clientSecret`, else
   * `none` (`client_id` in the body: a public client).
   */
  clientAuth?: "client_secret_basic" | "client_secret_post" | "private_key_jwt" | "none";

  /**
   * `client_secret_basic` only. `"form"` (default): the id and the secret are form-encoded
   * before Base64, as RFC 6749 §2.3.1 says; `"plain"`: used raw, for servers that expect that.
   */
  basicEncoding?: "form" | "plain";

  /**
   * The grant that gets the first tokens (`login()`, or the first call that needs a token).
   * Default: `refresh_token` with `refreshToken`, `password` with `credentials`, else
   * `client_credentials`. A refresh answered `invalid_grant` ends the session
   * (`SESSION_EXPIRED`), except that `client_credentials`, and `password` with
   * `credentials`, run the grant again.
   */
  grant?: "refresh_token" | "client_credentials" | "password";

  /**
   * A refresh token the application already holds (one consent, obtained elsewhere): the
   * seed of the `refresh_token` grant. A session sends it at most once; with `storage`, a
   * stored pair is adopted instead, so a newer, rotated token wins over the seed.
   */
  refreshToken?: string;

  /** The `scope` parameter (space-separated), sent with the grant (not with a refresh). */
  scope?: string;

  /** The `resource` parameter (RFC 8707), repeated for an array; sent with the grant. */
  resource?: string | string[];

  /** An `audience` parameter, for servers that take one; sent with the grant. */
  audience?: string;
}

/**
 * A fetch implementation: the runtime's `fetch`, a test double, an instrumented wrapper.
 * Its parameters are loose on purpose, so every runtime's own `fetch` type fits.
 */
export type FetchFunction = (input: any, init?: any) => Promise<Response>;

/** `ctx.waitUntil` as a function, or the execution context that has it. */
export type WaitUntil = ((promise: Promise<unknown>) => void) | { waitUntil(promise: Promise<unknown>): void };

/** `RequestInit` plus the per-call `waitUntil` (see {@link AuthSessionOptions.waitUntil}) and `json`. */
export interface AuthRequestInit extends RequestInit {
  waitUntil?: WaitUntil;
  /**
   * A JSON body: sent as `JSON.stringify(json)` with `content-type: application/json`
   * (unless `headers` set one). The method is not changed: with `GET`/`HEAD`, or together
   * with a `body`, it is a `CONFIG_ERROR`.
   */
  json?: unknown;
}

/** What the `logger` option receives. */
export interface LogRecord {
  time: Date;
  event: "refresh" | "login" | "request" | "response" | "retry" | "redirect";
  /** The auth endpoint, `"api"` for an API call (`fetch`/`json`), or `"discovery"` for the
   *  authorization server's metadata (OAuth 2.0 mode with `issuer`). In OAuth 2.0 mode
   *  `"login"` is the session's grant and `"refresh"` a refresh_token grant, both at the token
   *  endpoint. */
  endpoint?: "login" | "refresh" | "revoke" | "api" | "discovery";
  attempt?: number;
  status?: number;
  delayMs?: number;
  code?: string;
  trigger?: "manual" | "margin" | "401" | "timer" | "background";
  /** For `redirect`: whether the redirect was followed. */
  followed?: boolean;
  /** The session's `label` option, when set. */
  label?: string;
}

/** The payload of the `tokens` event: the new info and why the tokens changed. */
export interface TokensEvent extends SessionEvent {
  reason: "login" | "refresh" | "restore" | "adopt";
}

/** The payload of the `expired` and `revoked` events (and the base of `tokens`'s). */
export interface SessionEvent extends SessionInfo {
  /** The session's `label` option, when set. */
  label?: string;
}

/**
 * Persistent token storage: the same shape as a Workers KV namespace and Durable Object
 * storage, so either can be passed as is. Methods may be synchronous or return promises.
 * The stored value is a string holding the tokens: keep it out of logs.
 */
export interface TokenStorage {
  get(key: string): Promise<string | null | undefined> | string | null | undefined;
  put(key: string, value: string): Promise<void> | void;
  delete(key: string): Promise<unknown> | unknown;
  /**
   * Optional, with `release`: take the refresh lease of the record `key` for `ttlMs`.
   * Resolve a lease id (a non-empty string) when taken, `null` when another holder has it.
   * Of all sessions sharing the record, the holder alone refreshes; the others wait and
   * adopt the pair it stores. `auth-session/redis` implements it with `SET NX PX`.
   */
  acquire?(key: string, ttlMs: number): Promise<string | null | undefined> | string | null | undefined;
  /** Give the lease back if `lease` still holds it (never another holder's). */
  release?(key: string, lease: string): Promise<unknown> | unknown;
  /**
   * Optional: a conditional write. Store `value` only if the stored record's `version` is
   * lower (or there is none); the session then writes with it instead of `put`, so a late
   * write (a holder whose link stalled) never replaces a newer record. `auth-session/redis`
   * implements it with a script.
   */
  putIfNewer?(key: string, value: string, version: number): Promise<unknown> | unknown;
}

/** The public view of a session. Never contains a token. */
export interface SessionInfo {
  /**
   * - `anonymous`: no login yet;
   * - `active`: tokens held;
   * - `expired`: the refresh token was rejected or expired;
   * - `revoked`: `revoke()` ended the session.
   */
  state: "anonymous" | "active" | "expired" | "revoked";
  /** The client id the server returned at login, or `null` without a session. */
  clientId: number | null;
  /** When the access token expires (corrected for the server's clock), or `null`. */
  accessExpiresAt: Date | null;
  /** When the refresh token expires (corrected for the server's clock), or `null`. */
  refreshExpiresAt: Date | null;
}

/**
 * Every code the package can throw. Server error envelopes may carry other codes, so
 * {@link AuthError.code} also accepts any string.
 */
export type AuthErrorCode =
  // From the server's error envelope (the server may send others):
  | "VALIDATION_FAILURE"
  | "SYNTAX_ERROR"
  | "UNAUTHORIZED"
  | "FORBIDDEN"
  // Made by the client:
  | "NETWORK_ERROR"
  | "TIMEOUT"
  | "ABORTED"
  | "INVALID_RESPONSE"
  | "SERVER_ERROR"
  | "RATE_LIMITED"
  | "HTTP_ERROR"
  | "SESSION_EXPIRED"
  | "NOT_AUTHENTICATED"
  | "ORIGIN_NOT_ALLOWED"
  | "REDIRECT_BLOCKED"
  | "RESPONSE_TOO_LARGE"
  | "CONFIG_ERROR"
  | "DISPOSED"
  | "STORAGE_ERROR";

/**
 * The one error class of the package. Messages never contain a token or a password.
 *
 * @example
 * ```ts
 * try {
 *   await session.json("/reports");
 * } catch (err) {
 *   if (err instanceof AuthError && err.code === "SESSION_EXPIRED") await session.login(user, pass);
 *   else throw err;
 * }
 * ```
 */
export class AuthError extends Error {
  /**
   * Made by the package; exported for `instanceof` and for test doubles.
   */
  constructor(message: string, name: string, code: string, status: number, retryable: boolean, retryAfter?: number);
  /** The server's error name when it sent one, else the client's (e.g. `"TimeoutError"`). */
  name: string;
  /** What went wrong; see {@link AuthErrorCode}. */
  code: AuthErrorCode | (string & {});
  /** The HTTP status, or 0 when there was no response. */
  status: number;
  /** Whether trying again later may succeed (network, timeout, 5xx, 429). */
  retryable: boolean;
  /**
   * The seconds the server asked to wait (`Retry-After`, seconds or an HTTP date, at least
   * 0) on errors made from a 429 or 5xx that carried one (`RATE_LIMITED` included).
   */
  retryAfter?: number;
  /**
   * For network and storage failures: the underlying error's `name` and `code` (e.g.
   * `{ name: "TypeError", code: "ECONNREFUSED" }`), never its message.
   */
  cause?: { name: string; code?: string };
  /**
   * True for an `AuthError` of any copy of the package (its ESM and CommonJS entries,
   * another version, another directory): they share the brand
   * `Symbol.for("auth-session.AuthError")`. `value instanceof AuthError` agrees.
   */
  static is(value: unknown): value is AuthError;
  /** `{ name, code, message, status, retryable }` (and `retryAfter` when set): what `JSON.stringify` writes. */
  toJSON(): { name: string; code: string; message: string; status: number; retryable: boolean; retryAfter?: number };
}

declare global {
  // For TypeScript libs older than ES2025's disposable declarations, as @types/node does.
  interface SymbolConstructor {
    readonly dispose: unique symbol;
  }
}
