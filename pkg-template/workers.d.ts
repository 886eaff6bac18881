// Type declarations of `auth-session/workers`: a Durable Object that alone logs in and
// refreshes for an account, and AuthSessions in every isolate that ask it instead of the API.
// Needs the Workers types (`wrangler types`, or @cloudflare/workers-types) for
// "cloudflare:workers".

import { DurableObject } from "cloudflare:workers";
import type { AuthSession, AuthSessionOptions, SessionInfo } from "./index.js";

export { AuthSession, AuthError } from "./index.js";
export type { AuthSessionOptions, SessionInfo, AuthErrorCode, TokensEvent, TokenStorage, WaitUntil, AuthRequestInit } from "./index.js";

/** What `AuthBroker.pair()` and `refresh()` return: the access token, never the refresh token. */
export interface BrokerPair {
  access_token: string;
  /** RFC 3339 instants, as the server sent them. */
  access_expires_at: string;
  refresh_expires_at: string;
  client_id: number | null;
  /** Grows with every login and refresh of the broker (kept across restarts). */
  version: number;
  /** The origin of the broker's `host`: a session of another host refuses the pair. */
  origin: string;
  /** The server's clock minus the broker's, when a `Date` header showed a difference (else 0). */
  skew_ms: number;
}

/** A broker's error as it crosses RPC: plain data (an AuthError's fields; messages carry no
 *  secret), read the same at every compatibility date. */
export interface BrokerError {
  code: string;
  name: string;
  message: string;
  status: number;
  retryable: boolean;
  /** The seconds the server asked to wait, when it said. */
  retryAfter?: number;
}

/** What `pair()`, `refresh()` and `revoke()` answer over RPC: they never throw. */
export type BrokerResult<T> = { ok: true; value: T } | { ok: false; error: BrokerError };

/** What `AuthBroker.status()` returns. Never contains a token. */
export interface BrokerStatus extends SessionInfo {
  version: number;
  /** `revoke()` was the last word: no login but an explicit one. */
  revoked: boolean;
  /** Why the broker could not start (e.g. `CONFIG_ERROR` for a missing var), else null. */
  error: { code: string; message: string } | null;
}

/**
 * The Durable Object that alone logs in and refreshes for one account
 * (`env.AUTH_BROKER.idFromName(account)`): one AuthSession with `autoRefresh: false`, its
 * tokens in the object's own storage (strongly consistent, kept across restarts), restored on
 * first use, refreshed ahead of expiry by an alarm (`ctx.storage.setAlarm`) while isolates use
 * it. The refresh token never leaves it.
 *
 * Export it (or a subclass) from the Worker's main module and bind it:
 *
 * ```toml
 * [[durable_objects.bindings]]
 * name = "AUTH_BROKER"
 * class_name = "AuthBroker"
 *
 * [[migrations]]
 * tag = "v1"
 * new_sqlite_classes = ["AuthBroker"]
 * ```
 *
 * `pair()`, `refresh()` and `revoke()` never throw over RPC: they answer a
 * {@link BrokerResult}, whose error is plain data (an Error's own properties cross RPC only
 * under workerd's `enhanced_error_serialization` flag). Compatibility dates from 2024-04-03.
 */
export declare class AuthBroker<Env = unknown> extends DurableObject<Env> {
  /**
   * The broker's AuthSession options. Default: `host` from `env.AUTH_SESSION_HOST`,
   * `credentials` from `env.AUTH_SESSION_USERNAME` and `env.AUTH_SESSION_PASSWORD`,
   * `refreshMarginSeconds` from `env.AUTH_SESSION_REFRESH_MARGIN_SECONDS` (optional); a
   * missing one is `CONFIG_ERROR`. `storage` and `autoRefresh` are the broker's own.
   *
   * Callable over RPC like any public method: read secrets from the `env` argument, not
   * from `this.env`.
   */
  sessionOptions(env: Env): Omit<AuthSessionOptions, "storage"> | Promise<Omit<AuthSessionOptions, "storage">>;

  /**
   * The current pair (logging in when the broker holds no session). `NOT_AUTHENTICATED`
   * (status 401) after `revoke()`, until an explicit `login()`.
   */
  pair(): Promise<BrokerResult<BrokerPair>>;

  /** An explicit login (an isolate session's `login()`): ends a revocation and logs in. */
  login(): Promise<BrokerResult<BrokerPair>>;

  /**
   * A pair newer than `version`: at once when the broker holds one; when `version` is the
   * current one, after one refresh shared by every caller meanwhile (any other number causes
   * no refresh: callers cannot force them). `SESSION_EXPIRED` (status 401) when the broker
   * holds no session.
   */
  refresh(version: number): Promise<BrokerResult<BrokerPair>>;

  /**
   * Revokes the account's session for every isolate and clears the broker's storage; the
   * account stays revoked (kept in storage, across restarts) until an explicit `login()`.
   */
  revoke(): Promise<BrokerResult<{ revoked: true }>>;

  /** What the broker holds, without a token. */
  status(): Promise<BrokerStatus>;

  /** Refreshes when the pair is due, then re-arms; an idle broker lets the pair lapse. */
  alarm(): Promise<void>;
}

/** Options of {@link brokeredSession}: AuthSession's, minus what belongs to the broker. */
export interface BrokeredSessionOptions extends Omit<AuthSessionOptions, "credentials" | "storage" | "storageKey" | "oauth"> {
  /** The broker's name (`idFromName`), when `target` is the namespace. */
  name?: string;
  /**
   * `true` when the broker's session is in OAuth 2.0 mode (its `sessionOptions` set `oauth`):
   * the isolate's API is an OAuth 2.0 resource server, so `json()` returns its JSON as is and
   * a Bearer `invalid_token` challenge counts as a 401. The client's settings stay the broker's.
   */
  oauth?: boolean;
}

/** A Durable Object namespace, a stub, or a function that returns a stub. */
export type BrokerTarget =
  | DurableObjectNamespace<AuthBroker<any>>
  | DurableObjectStub<AuthBroker<any>>
  | (() => DurableObjectStub<AuthBroker<any>>);

/**
 * A normal {@link AuthSession} (fetch, json, getAccessToken, errors and events as usual; the
 * access token cached in the isolate until the refresh margin) whose login, refresh and
 * revoke go to an {@link AuthBroker} over RPC. `revoke()` ends the account's session for every
 * isolate.
 *
 * A stub serves only the request that made it (workerd refuses I/O on behalf of another
 * request), so a session kept per isolate takes the namespace and a name, or a function
 * returning a stub.
 *
 * @example
 * ```ts
 * session ??= brokeredSession(env.AUTH_BROKER, { name: "main", host: env.AUTH_SESSION_HOST });
 * const products = await session.json("/api/v1/products", { waitUntil: ctx });
 * ```
 * @throws {AuthError} `CONFIG_ERROR` for invalid options.
 */
export declare function brokeredSession(target: BrokerTarget, options: BrokeredSessionOptions): AuthSession;
