// A way in for existing HTTP clients (auth-session/clients): axios interceptors and ky
// hooks that let the session supply the token while the client sends the requests.
//
// Both keep the session's rules: the token goes only to origins the session allows
// (session.mayReceiveToken), a 401 is answered by getAccessToken({ replacing }) — which
// refreshes only if the rejected token is still the current one, so N concurrent 401s make
// one refresh — and a request is replayed once.

const SENT = Symbol("auth-session.sentToken");
const REPLAYED = Symbol("auth-session.replayed");

function setHeader(headers, value) {
  if (typeof headers?.set === "function") headers.set("Authorization", value);
  else headers.Authorization = value;
}

/**
 * Installs a request and a response interceptor on an axios instance. Returns a function
 * that removes them.
 */
export function useAxios(instance, session) {
  const request = instance.interceptors.request.use(async (config) => {
    const url = config.baseURL ? new URL(config.url ?? "", config.baseURL) : config.url;
    if (!session.mayReceiveToken(url)) return config;
    const token = await session.getAccessToken();
    config.headers ??= {};
    setHeader(config.headers, `Bearer ${token}`);
    config[SENT] = token;
    return config;
  });
  const response = instance.interceptors.response.use(undefined, async (error) => {
    const config = error?.config;
    if (error?.response?.status !== 401 || !config || config[SENT] === undefined || config[REPLAYED]) throw error;
    config[REPLAYED] = true;
    // The request interceptor runs again and picks up the token this call settled on.
    await session.getAccessToken({ replacing: config[SENT] });
    return instance.request(config);
  });
  return () => {
    instance.interceptors.request.eject(request);
    instance.interceptors.response.eject(response);
  };
}

// ky 2 no longer gives hooks the options that shape the sending (`fetch`, `timeout`,
// `throwHttpErrors`); its `init` hook, which ky 1 does not have and never calls, sees them
// and keeps them under this key of the request's `context` for the replay.
const KY_SEND = Symbol("auth-session.kySendOptions");

/**
 * A ky hook's arguments in one shape. ky 1 calls hooks with positional arguments
 * `(request, options, response?, state)`; ky 2 with one state object
 * `{ request, options, response?, retryCount }`. Told apart by what arrives, not by version.
 */
function kyHookArgs(args) {
  const [first] = args;
  if (first !== null && typeof first === "object" && "request" in first && "options" in first) {
    return { ky2: true, request: first.request, options: first.options, response: first.response };
  }
  return { ky2: false, request: args[0], options: args[1], response: args[2] };
}

/**
 * ky hooks, for ky 1 and ky 2: `ky.create({ prefixUrl, hooks: kyHooks(session, ky) })` with
 * ky 1, `ky.create({ prefix, hooks: kyHooks(session, ky) })` with ky 2 (or `.extend`).
 * `ky` is the ky instance used to replay a request once after a 401.
 */
export function kyHooks(session, ky) {
  return {
    init: [
      (options) => {
        const { fetch, timeout, throwHttpErrors } = options;
        options.context = { ...options.context, [KY_SEND]: { fetch, timeout, throwHttpErrors } };
      },
    ],
    beforeRequest: [
      async (...args) => {
        const { request } = kyHookArgs(args);
        if (!session.mayReceiveToken(request.url)) return;
        const token = await session.getAccessToken();
        request.headers.set("Authorization", `Bearer ${token}`);
      },
    ],
    afterResponse: [
      async (...args) => {
        const { ky2, request, options, response } = kyHookArgs(args);
        // ky hands this hook the request it sent, or a clone of it: the header tells which
        // token was rejected.
        const sent = request.headers.get("Authorization");
        if (response.status !== 401 || !sent?.startsWith("Bearer ") || !session.mayReceiveToken(request.url)) {
          return response;
        }
        if (ky2) return replayKy2(session, ky, request, options, response, sent.slice(7));
        // Not awaited: ky hands the hook a tee'd clone, whose cancel settles only when the
        // other branch is cancelled too.
        response.body?.cancel().catch(() => {});
        const fresh = await session.getAccessToken({ replacing: sent.slice(7) });
        const again = new Request(request);
        again.headers.set("Authorization", `Bearer ${fresh}`);
        // Without hooks: the replay is sent once, and its answer is the caller's.
        const { prefixUrl, headers, ...rest } = options;
        return ky(again, { ...rest, hooks: {}, retry: 0 });
      },
    ],
  };
}

/**
 * The replay after a 401 under ky 2. Its hook gets the request it sent itself when retries
 * are off (`retry: 0`): a body is then spent, and is taken again from `options.body`. Its
 * `options` hold `prefix` (and maybe `baseUrl`) instead of `prefixUrl`, which ky 2 rejects,
 * and lack `fetch`, `timeout` and `throwHttpErrors`, which the `init` hook kept.
 */
async function replayKy2(session, ky, request, options, response, rejected) {
  const { prefix, prefixUrl, baseUrl, headers, context, ...rest } = options;
  let again;
  try {
    again = request.bodyUsed ? new Request(request, { body: rest.body, duplex: "half" }) : new Request(request);
  } catch {
    // A body that cannot be sent again (a stream already read): the 401 is the answer.
    return response;
  }
  response.body?.cancel().catch(() => {});
  const fresh = await session.getAccessToken({ replacing: rejected });
  again.headers.set("Authorization", `Bearer ${fresh}`);
  const { [KY_SEND]: send, ...ownContext } = context ?? {};
  return ky(again, { ...rest, ...send, context: ownContext, hooks: {}, retry: 0 });
}

export { SENT as sentTokenSymbol, REPLAYED as replayedSymbol };
