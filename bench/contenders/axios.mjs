// axios with axios-auth-refresh, the way its README shows it: a request interceptor sets the
// bearer (refreshing first when the token is inside the margin), createAuthRefresh turns a
// 401 into a refresh and a replay. The refresh is single-flight through a shared promise and
// goes through a separate axios instance, so it never passes the interceptors.
import axios from "axios";
import { createAuthRefresh } from "axios-auth-refresh";

export function createAxiosSession({ host, marginSeconds = 300 }) {
  const marginMs = marginSeconds * 1000;
  const state = { access: null, refresh: null, accessExpiresAt: 0 };
  let inflight = null;
  const authApi = axios.create({ baseURL: host });

  const adopt = (data) => {
    state.access = data.access_token;
    state.refresh = data.refresh_token;
    state.accessExpiresAt = Date.parse(data.access_expires_at);
  };
  const refresh = () =>
    (inflight ??= authApi
      .post("/auth/refresh", { refresh_token: state.refresh })
      .then((res) => adopt(res.data.data))
      .finally(() => {
        inflight = null;
      }));

  const api = axios.create({ baseURL: host });
  api.interceptors.request.use(async (config) => {
    if (Date.now() >= state.accessExpiresAt - marginMs) await refresh();
    config.headers.Authorization = `Bearer ${state.access}`;
    return config;
  });
  createAuthRefresh(api, async (failedRequest) => {
    await refresh();
    failedRequest.response.config.headers.Authorization = `Bearer ${state.access}`;
  });

  return {
    api,
    state,
    refresh,
    async login(username, password) {
      const res = await authApi.post("/auth/login", { username, password });
      adopt(res.data.data);
    },
  };
}
