// The browser example: one AuthSession against the API host named in the query string
// (`?host=http://127.0.0.1:PORT`), logged in as the demo user, showing the session's life:
// its state, the access token's countdown, the events it emits and the last API result.
// No token is ever read or shown: the page only uses `info`, events, `json()` and errors.
//
// Query parameters:
//   host       the API base URL (required), e.g. http://127.0.0.1:8787
//   user, password   default demo / demo-password
//   autologin  "0" to wait for the Login button instead of logging in on load
//   margin     refreshMarginSeconds (default: the library's, capped at half a token's life)

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const host = params.get("host");
const username = params.get("user") ?? "demo";
const password = params.get("password") ?? "demo-password";

const ui = {
  badge: $("state-badge"),
  countdown: $("countdown"),
  bar: $("countdown-bar"),
  clientId: $("client-id"),
  accessAt: $("access-at"),
  refreshAt: $("refresh-at"),
  events: $("events"),
  noEvents: $("no-events"),
  apiStatus: $("api-status"),
  apiResult: $("api-result"),
  busy: $("busy"),
  problem: $("problem"),
  buttons: ["login", "call", "refresh", "revoke"].map($),
};

$("host").textContent = host ?? "(none)";

function showProblem(text) {
  ui.problem.textContent = text;
  ui.problem.style.display = "block";
}

const pad = (n, w = 2) => String(n).padStart(w, "0");
const clock = (d) =>
  `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
const when = (d) =>
  d instanceof Date
    ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(d).slice(0, 8)}`
    : "–";

/** What an AuthError (or anything thrown) says, in one line. Messages carry no secrets. */
const describe = (err) => (err && err.code ? `${err.code}: ${err.message}` : String(err?.message ?? err));

if (!host) {
  showProblem(
    "Add the API host to the address, e.g. ?host=http://127.0.0.1:8787 " +
      "(start one with: node tests/server/reference-server.mjs --port 8787 --access-ttl 20).",
  );
  ui.buttons.forEach((b) => (b.disabled = true));
} else {
  start().catch((err) => showProblem(`Could not start: ${describe(err)}`));
}

async function start() {
  // A dynamic import, so a package that fails to load (wasm not served, wrong MIME type)
  // is reported on the page instead of failing silently in the console.
  const { AuthSession } = await import("auth-session");

  const options = { host };
  if (params.has("margin")) options.refreshMarginSeconds = Number(params.get("margin"));
  const session = new AuthSession(options);

  // When the current access token was issued (locally), for the countdown bar.
  let issuedAt = null;

  function render() {
    const info = session.info;
    ui.badge.dataset.state = info.state;
    ui.badge.textContent = info.state;
    document.body.dataset.state = info.state;
    ui.clientId.textContent = info.clientId ?? "–";
    ui.accessAt.textContent = when(info.accessExpiresAt);
    ui.refreshAt.textContent = when(info.refreshExpiresAt);
    tick();
  }

  function tick() {
    const info = session.info;
    const at = info.accessExpiresAt;
    if (info.state !== "active" || !(at instanceof Date)) {
      ui.countdown.textContent = "no token";
      ui.bar.style.width = "0";
      return;
    }
    const left = at.getTime() - Date.now();
    ui.countdown.textContent = left > 0 ? formatSpan(left) : "expired: refresh due";
    const life = issuedAt ? at.getTime() - issuedAt : 0;
    ui.bar.style.width = life > 0 ? `${Math.max(0, Math.min(100, (left / life) * 100))}%` : "0";
  }

  function formatSpan(ms) {
    const s = ms / 1000;
    if (s < 60) return `${s.toFixed(1)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${pad(Math.floor(s % 60))} s`;
    return `${Math.floor(m / 60)} h ${pad(m % 60)} min`;
  }

  function logEvent(name, detail) {
    ui.noEvents?.remove();
    const li = document.createElement("li");
    li.dataset.event = name;
    const time = document.createElement("time");
    const now = new Date();
    time.dateTime = now.toISOString();
    time.textContent = clock(now);
    const tag = document.createElement("span");
    tag.className = `tag ${name}`;
    tag.textContent = name;
    const text = document.createElement("span");
    text.textContent = detail;
    li.append(time, tag, text);
    ui.events.prepend(li);
  }

  session.on("tokens", (info) => {
    issuedAt = Date.now();
    logEvent("tokens", `${info.reason} · access until ${info.accessExpiresAt ? clock(info.accessExpiresAt) : "?"}`);
    render();
  });
  session.on("expired", () => {
    logEvent("expired", "the session expired: log in again");
    render();
  });
  session.on("revoked", () => {
    logEvent("revoked", "tokens revoked and cleared");
    render();
  });
  session.on("error", (err) => {
    logEvent("error", describe(err));
    render();
  });

  /** Runs one button's action: a busy note while it runs, its failure shown, then a render. */
  async function action(label, fn) {
    ui.busy.style.color = "";
    ui.busy.textContent = `${label}…`;
    try {
      await fn();
      ui.busy.textContent = "";
    } catch (err) {
      ui.busy.style.color = "var(--state-revoked)";
      ui.busy.textContent = `${label} failed: ${describe(err)}`;
    } finally {
      render();
    }
  }

  const login = () => action("Logging in", () => session.login(username, password));

  $("login").addEventListener("click", login);
  $("refresh").addEventListener("click", () => action("Refreshing", () => session.refresh()));
  $("revoke").addEventListener("click", () => action("Revoking", () => session.revoke()));
  $("call").addEventListener("click", () =>
    action("Calling the API", async () => {
      const started = new Date();
      try {
        const data = await session.json("/api/v1/products");
        const count = Array.isArray(data) ? ` · ${data.length} items` : "";
        ui.apiStatus.className = "ok";
        ui.apiStatus.textContent = `GET /api/v1/products: OK${count} · ${clock(started)}`;
        ui.apiResult.textContent = JSON.stringify(data, null, 2);
        ui.apiResult.hidden = false;
      } catch (err) {
        ui.apiStatus.className = "fail";
        ui.apiStatus.textContent = `GET /api/v1/products failed · ${clock(started)}`;
        ui.apiResult.textContent = describe(err);
        ui.apiResult.hidden = false;
      }
    }),
  );

  setInterval(tick, 100);
  render();
  if (params.get("autologin") !== "0") await login();
}
