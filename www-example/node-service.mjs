// A small Node service that sells "products" it fetches from the B2B API, through one
// AuthSession shared by every incoming request. Run it against any host:
//
//   API_HOST=https://api.example.com API_USERNAME=… API_PASSWORD=… node www-example/node-service.mjs
//
// With DEMO=1 (what `bash scripts/demo.sh` does, against the local reference server with
// short-lived tokens) it also plays a client of itself for a few seconds and prints the
// session's life: login, calls, a refresh ahead of expiry, revoke, shutdown.
import http from "node:http";
import { AuthSession, AuthError } from "auth-session";

const host = process.env.API_HOST ?? "http://127.0.0.1:8787";
const session = new AuthSession({
  host,
  credentials: { username: process.env.API_USERNAME ?? "demo", password: process.env.API_PASSWORD ?? "demo-password" },
  // Short demo tokens live seconds, not an hour: refresh 2 s ahead instead of 5 minutes.
  refreshMarginSeconds: Number(process.env.REFRESH_MARGIN_SECONDS ?? 300),
});

const t0 = Date.now();
const log = (...args) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s]`, ...args);
const until = (d) => (d ? `${((d - Date.now()) / 1000).toFixed(1)} s` : "-");

session.on("tokens", (info) => log(`tokens   ${info.reason}: access expires in ${until(info.accessExpiresAt)}`));
session.on("expired", () => log("expired  the refresh token was rejected"));
session.on("revoked", (info) => log(`revoked  state=${info.state}`));
session.on("error", (err) => log(`error    ${err.code}: ${err.message}`));

const service = http.createServer(async (req, res) => {
  if (req.url !== "/products") {
    res.writeHead(404).end();
    return;
  }
  try {
    const products = await session.json("/api/v1/products");
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(products));
  } catch (err) {
    // An AuthError carries a stable code and never a token: safe to log and to map.
    const status = err instanceof AuthError && err.code === "FORBIDDEN" ? 403 : 502;
    log(`request failed: ${err.code ?? err.name}: ${err.message}`);
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify({ error: err.code }));
  }
});

await new Promise((resolve) => service.listen(Number(process.env.PORT ?? 0), "127.0.0.1", resolve));
const url = `http://127.0.0.1:${service.address().port}`;
log(`service  listening on ${url}, API host ${host}`);

if (process.env.DEMO) {
  const info = await session.login();
  log(`login    client ${info.clientId}, access expires in ${until(info.accessExpiresAt)}`);
  const seconds = Number(process.env.DEMO_SECONDS ?? 8);
  for (let i = 1; i <= seconds; i++) {
    const res = await fetch(`${url}/products`);
    const body = await res.json();
    log(`GET /products -> ${res.status}, ${Array.isArray(body) ? body.length + " products" : JSON.stringify(body)}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  log(`session  ${JSON.stringify(session)}`);
  await session.revoke();
  try {
    await session.json("/api/v1/products");
  } catch (err) {
    log(`after revoke: ${err.code} (${err.name})`);
  }
  session.dispose();
  service.close();
  log("done");
}
