// ky with hooks, the way ky's README shows it: `beforeRequest` sets the bearer (refreshing
// first when the token is inside the margin), `afterResponse` turns a 401 into one refresh
// and a forced retry (`ky.retry`). The refresh is single-flight through a shared promise, as
// any careful user would add. What it does not do (the hand-written client does): check
// whether a newer token already exists before refreshing on a 401.
import ky from "ky";

export function createKySession({ host, marginSeconds = 300 }) {
  const marginMs = marginSeconds * 1000;
  const state = { access: null, refresh: null, accessExpiresAt: 0 };
  let inflight = null;
  const authApi = ky.create({ prefixUrl: host, retry: 0 });

  const adopt = (data) => {
    state.access = data.access_token;
    state.refresh = data.refresh_token;
    state.accessExpiresAt = Date.parse(data.access_expires_at);
  };
  const refresh = () =>
    (inflight ??= authApi
      .post("auth/refresh", { json: { refresh_token: state.refresh } })
      .json()
      .then((body) => adopt(body.data))
      .finally(() => {
        inflight = null;
      }));

  const api = ky.create({
    prefixUrl: host,
    hooks: {
      beforeRequest: [
        async (request, _options, { retryCount }) => {
          if (retryCount !== 0) return; // a retry carries the header afterResponse set
          if (Date.now() >= state.accessExpiresAt - marginMs) await refresh();
          request.headers.set("authorization", `Bearer ${state.access}`);
        },
      ],
      afterResponse: [
        async (request, _options, response, { retryCount }) => {
          if (response.status !== 401 || retryCount !== 0) return;
          await refresh();
          const headers = new Headers(request.headers);
          headers.set("authorization", `Bearer ${state.access}`);
          // delay: 0, or ky waits its default backoff (~300 ms) before the replay.
          return ky.retry({ request: new Request(request, { headers }), delay: 0, code: "TOKEN_REFRESHED" });
        },
      ],
    },
  });

  return {
    api,
    state,
    refresh,
    async login(username, password) {
      const body = await authApi.post("auth/login", { json: { username, password } }).json();
      adopt(body.data);
    },
  };
}
