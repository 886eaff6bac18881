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

/**
 * ky hooks: `ky.create({ prefixUrl, hooks: kyHooks(session, ky) })` (or `.extend`).
 * `ky` is the ky instance used to replay a request once after a 401.
 */
export function kyHooks(session, ky) {
  return {
    beforeRequest: [
      async (request) => {
        if (!session.mayReceiveToken(request.url)) return;
        const token = await session.getAccessToken();
        request.headers.set("Authorization", `Bearer ${token}`);
      },
    ],
    afterResponse: [
      async (request, options, response) => {
        // ky hands this hook a clone of the request it sent: the header tells which token
        // was rejected.
        const sent = request.headers.get("Authorization");
        if (response.status !== 401 || !sent?.startsWith("Bearer ") || !session.mayReceiveToken(request.url)) {
          return response;
        }
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

export { SENT as sentTokenSymbol, REPLAYED as replayedSymbol };
