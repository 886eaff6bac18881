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

/** ky hooks (`beforeRequest`, `afterResponse`) doing the same; `ky` replays once after a 401. */
export function kyHooks(
  session: AuthSession,
  ky: (input: Request, options?: any) => PromiseLike<Response>,
): {
  beforeRequest: Array<(request: Request) => Promise<void>>;
  afterResponse: Array<(request: Request, options: any, response: Response) => Promise<Response>>;
};

export declare const sentTokenSymbol: unique symbol;
export declare const replayedSymbol: unique symbol;
