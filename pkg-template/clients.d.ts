import type { AuthSession } from "./index.js";

/**
 * axios interceptors: the session's token on requests to allowed origins, and one replay
 * after a 401 with `getAccessToken({ replacing })` (one refresh for any number of
 * concurrent 401s). Returns a function that removes them.
 */
export function useAxios(
  instance: {
    interceptors: {
      request: { use(onFulfilled: (config: any) => any): number; eject(id: number): void };
      response: { use(onFulfilled: undefined, onRejected: (error: any) => any): number; eject(id: number): void };
    };
    request(config: any): Promise<any>;
  },
  session: AuthSession,
): () => void;

/**
 * What ky 2 hands a hook: one state object. ky 1 hands the same values as positional
 * arguments `(request, options, response?, state)`.
 */
export interface KyHookState {
  request: Request;
  options: any;
  response?: Response;
  retryCount?: number;
}

/**
 * ky hooks (`beforeRequest`, `afterResponse`) doing the same, for ky 1 and ky 2 (each hook
 * takes the arguments of either); `ky` replays once after a 401. ky 2 also calls `init`,
 * which keeps its `fetch`, `timeout` and `throwHttpErrors` options for the replay.
 *
 * ky 1: `ky.create({ prefixUrl, hooks: kyHooks(session, ky) })`;
 * ky 2: `ky.create({ prefix, hooks: kyHooks(session, ky) })`.
 */
export function kyHooks(
  session: AuthSession,
  ky: (input: Request, options?: any) => PromiseLike<Response>,
): {
  init: Array<(options: any) => void>;
  beforeRequest: Array<(requestOrState: Request | KyHookState, ...rest: any[]) => Promise<void>>;
  afterResponse: Array<(requestOrState: Request | KyHookState, options?: any, response?: Response, ...rest: any[]) => Promise<Response>>;
};

export declare const sentTokenSymbol: unique symbol;
export declare const replayedSymbol: unique symbol;
