// Runs the example Worker (www-example/worker) in workerd through Miniflare, against the
// reference server, the way `wrangler dev` would: the source bundled by esbuild with
// wrangler's settings (platform "neutral", conditions workerd/worker/browser, the package's
// .wasm kept as a separate CompiledWasm module), the KV namespace persisted on disk so a
// second Miniflare (a restarted Worker) sees what the first one wrote, and every line
// workerd prints (console output, runtime warnings) captured for assertions.
//
// Needs Node >= 22.12 (Miniflare): scripts/test-workerd.sh runs it with the `node22`
// devDependency. The package comes from AUTH_SESSION_PKG_DIR, default <repo>/pkg.
import assert from "node:assert/strict";
import { cp, mkdtemp, mkdir, readFile, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Miniflare, Log, LogLevel, convertV4MiniflareOptions } from "miniflare";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const workerDir = path.join(root, "www-example/worker");
export const pkgDir = path.resolve(process.env.AUTH_SESSION_PKG_DIR ?? path.join(root, "pkg"));
export const USER = { username: "demo", password: "demo-password" };

/** The example's compatibility_date, so the tests run the Worker as it is configured. */
export async function compatibilityDate() {
  const toml = await readFile(path.join(workerDir, "wrangler.toml"), "utf8");
  const m = /^compatibility_date\s*=\s*"([0-9-]+)"/m.exec(toml);
  if (!m) throw new Error("no compatibility_date in www-example/worker/wrangler.toml");
  return m[1];
}

/** A fresh temporary directory, removed by the returned `cleanup`. */
export async function tempDir(prefix = "auth-session-workerd-") {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * Bundles a Worker entry like wrangler does. "auth-session" resolves to the built package
 * through its package.json `exports` (so the `workerd` condition picks workerd.mjs), via a
 * node_modules link in `outdir`'s parent, whatever the example's own node_modules holds.
 * Returns Miniflare's module list: the bundle first, then the .wasm next to it.
 */
export async function bundleWorker({ entry = path.join(workerDir, "src/index.mjs"), outdir, usesPackage = true }) {
  const linkRoot = path.join(path.dirname(outdir), "resolve");
  await mkdir(path.join(linkRoot, "node_modules"), { recursive: true });
  await symlink(pkgDir, path.join(linkRoot, "node_modules/auth-session")).catch((e) => {
    if (e.code !== "EEXIST") throw e;
  });
  const thePackage = {
    name: "auth-session from AUTH_SESSION_PKG_DIR",
    setup(b) {
      b.onResolve({ filter: /^auth-session(\/.*)?$/ }, (args) =>
        args.pluginData?.fromPlugin
          ? undefined
          : b.resolve(args.path, { kind: args.kind, resolveDir: linkRoot, pluginData: { fromPlugin: true } }),
      );
    },
  };
  const result = await build({
    entryPoints: [entry],
    outdir,
    entryNames: "worker",
    outExtension: { ".js": ".mjs" },
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    conditions: ["workerd", "worker", "browser"],
    mainFields: ["module", "main"],
    loader: { ".wasm": "copy" },
    // The runtime's own modules (DurableObject from "cloudflare:workers"), as wrangler does.
    external: ["cloudflare:*"],
    assetNames: "[name]-[hash]",
    plugins: [thePackage],
    logLevel: "silent",
    metafile: true,
  });
  if (result.warnings.length) {
    throw new Error(`esbuild warnings: ${result.warnings.map((w) => w.text).join("; ")}`);
  }
  const inputs = Object.keys(result.metafile.inputs);
  if (usesPackage && !inputs.some((p) => p.endsWith("workerd.mjs"))) {
    throw new Error(`the bundle did not use the package's workerd entry: ${inputs.join(", ")}`);
  }
  // What wrangler would upload: the bundle, then each .wasm as a compiled module.
  const modules = [{ type: "ESModule", path: path.resolve(outdir, "worker.mjs") }];
  for (const out of Object.keys(result.metafile.outputs)) {
    if (out.endsWith(".wasm")) modules.push({ type: "CompiledWasm", path: path.resolve(out) });
  }
  if (modules.length !== (usesPackage ? 2 : 1)) {
    throw new Error(`expected ${usesPackage ? "one .wasm" : "no .wasm"} next to the bundle, got ${modules.length - 1}`);
  }
  return modules;
}

/** Collects what workerd prints (console.* of the Worker, runtime warnings) and what
 *  Miniflare itself logs. */
export class Logs {
  lines = [];
  push(source, level, message) {
    this.lines.push({ at: Date.now(), source, level, message: String(message) });
    if (process.env.WORKERD_TEST_VERBOSE) console.error(`[${source}:${level}] ${message}`);
  }
  text() {
    return this.lines.map((l) => `[${l.source}:${l.level}] ${l.message}`).join("\n");
  }
  /** Lines matching one of the patterns, except workerd's notes of its own alarm scheduling. */
  matching(patterns) {
    return this.lines.filter((l) => patterns.some((p) => p.test(l.message)) && !WORKERD_NOTES.some((p) => p.test(l.message)));
  }
}

/** What workerd logs (as a "NOSENTRY" warning: not a fault) when a Durable Object's alarm comes
 *  due just after the object deleted it or moved it later: the alarm manager had already
 *  queued the old time, so workerd cancels that handler run before it starts and keeps the
 *  time in storage (src/workerd/io/actor-sqlite.c++, armAlarmHandler). The broker deletes its
 *  alarm on a revoke and re-arms it on every new pair, so a revoke or a refresh landing in the
 *  alarm's last milliseconds prints it ("localAlarmState = 0ns": the alarm was deleted). The
 *  handler it cancels never ran, so nothing of ours was interrupted. */
const WORKERD_NOTES = [/^NOSENTRY SQLite alarm handler canceled with requestScheduledAlarm\./];

/** What workerd prints when a request's promise was settled from another request's context,
 *  when a request was cancelled because nothing could complete it any more, or when I/O
 *  crossed requests: each is a broken single-flight, whatever the status the client saw. */
export const CROSS_CONTEXT_OR_HANG = [
  /different request context/i,
  /code had hung/i,
  /will never generate a response/i,
  /on behalf of a different request/i,
  /cross-request/i,
  /cancel/i,
  /Uncaught/i,
  /unhandled/i,
  /panicked|unreachable/i,
];

/** Miniflare's own log lines, into a Logs list. */
export class CaptureLog extends Log {
  constructor(logs) {
    super(LogLevel.DEBUG);
    this.logs = logs;
  }
  log(message) {
    this.logs.push("miniflare", "log", message);
  }
}

/** Options every Miniflare here takes: no network (a placeholder Request.cf instead of
 *  fetching the real one, no dev registry) and workerd's logs captured into `logs`. */
function isolated(logs) {
  return {
    cf: false,
    enableDevRegistry: false,
    log: new CaptureLog(logs),
    handleStructuredLogs: ({ level, message }) => logs.push("workerd", level, message),
  };
}

/**
 * Starts the example Worker (`modules` from bundleWorker) in workerd. `persist` is the directory KV is kept in (share it
 * to restart the Worker with the same KV). Resolves when workerd answers.
 * @returns {Promise<{ mf: Miniflare, url: URL, options: object }>}
 */
export async function startWorker({ modules, serverUrl, persist, logs, vars = {} }) {
  const options = convertV4MiniflareOptions({
    modules,
    modulesRoot: path.dirname(modules[0].path),
    compatibilityDate: await compatibilityDate(),
    bindings: {
      API_HOST: serverUrl,
      API_USERNAME: USER.username,
      API_PASSWORD: USER.password,
      ...vars,
    },
    kvNamespaces: { TOKENS: "tokens" },
    resourcePersistencePath: persist,
    ...isolated(logs),
  });
  const mf = new Miniflare(options);
  const url = await mf.ready;
  return { mf, url, options };
}

/** Awaits `promise` for at most `ms`, else rejects naming `label`: no await can hang a test. */
export function within(ms, promise, label) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${label}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * The broker script and client scripts in one Miniflare, each client its own isolate
 * reachable over real HTTP; the clients know no credentials (only the broker logs in).
 * `persist`: where the Durable Object's storage lives (share it to restart with the same
 * storage). `brokerMarginS`/`clientMarginS`: the refresh margins (the isolates' smaller).
 * @returns {Promise<{ mf: Miniflare, urls: URL[] }>}
 */
export async function startBrokerCluster({
  modules,
  serverUrl,
  persist,
  logs,
  clients,
  brokerMarginS,
  clientMarginS,
  brokerVars = {},
  clientVars = {},
  compatibilityDate: date,
}) {
  const common = { modules, modulesRoot: path.dirname(modules[0].path), compatibilityDate: date ?? (await compatibilityDate()) };
  const options = convertV4MiniflareOptions({
    workers: [
      {
        name: "broker",
        ...common,
        bindings: {
          AUTH_SESSION_HOST: serverUrl,
          AUTH_SESSION_USERNAME: USER.username,
          AUTH_SESSION_PASSWORD: USER.password,
          AUTH_SESSION_REFRESH_MARGIN_SECONDS: String(brokerMarginS),
          ...brokerVars,
        },
        durableObjects: { AUTH_BROKER: { className: "AuthBroker", useSQLite: true } },
      },
      ...clients.map((name) => ({
        name,
        ...common,
        bindings: {
          AUTH_SESSION_HOST: serverUrl,
          CLIENT_MARGIN_SECONDS: String(clientMarginS),
          REFRESH_MARGIN_SECONDS: String(clientMarginS),
          ...clientVars,
        },
        durableObjects: { AUTH_BROKER: { className: "AuthBroker", scriptName: "broker", useSQLite: true } },
        unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
      })),
    ],
    resourcePersistencePath: persist,
    ...isolated(logs),
  });
  const mf = new Miniflare(options);
  try {
    await within(30_000, mf.ready, "Miniflare start");
    const urls = await within(10_000, Promise.all(clients.map((n) => mf.unsafeGetDirectURL(n))), "worker URLs");
    return { mf, urls };
  } catch (e) {
    await within(30_000, mf.dispose(), "Miniflare dispose").catch(() => {});
    throw e;
  }
}

/**
 * An example Worker as a user has it after `npm install`: its files (without build output,
 * local secrets or node_modules) copied to `app`, and auth-session in its node_modules (a
 * link to the built package).
 */
export async function userCopy(exampleDir, app) {
  await cp(exampleDir, app, {
    recursive: true,
    filter: (src) => !/(^|[/\\])(node_modules|\.wrangler|dist|\.dev\.vars)$/.test(path.relative(exampleDir, src)),
  });
  await mkdir(path.join(app, "node_modules"), { recursive: true });
  await symlink(pkgDir, path.join(app, "node_modules/auth-session"));
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `predicate` every 20 ms until it holds or `ms` passes; returns whether it held. */
export async function until(predicate, ms = 5000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await predicate()) return true;
    await sleep(20);
  }
  return predicate();
}

/** GET <worker>/products over real HTTP (so a client abort is a real disconnect). */
export async function getProducts(url, { signal, headers } = {}) {
  const res = await fetch(new URL("/products", url), { signal, headers });
  const text = await res.text();
  return { status: res.status, text, headers: res.headers };
}

/** The reference server's products, as the Worker must pass them through. */
export const PRODUCTS = [
  { id: 1, name: "Starter plan" },
  { id: 2, name: "Team plan" },
  { id: 3, name: "Enterprise plan" },
  { id: 4, name: "Support add-on" },
];

/** GET `pathname` from a client script within `timeoutMs`; a client-side failure becomes a
 *  result too: { status, text, isolate, headers }. */
export async function clientGet(url, pathname, timeoutMs = 10_000) {
  try {
    const res = await fetch(new URL(pathname, url), { signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    return { status: res.status, text, isolate: res.headers.get("x-isolate"), headers: res.headers };
  } catch (e) {
    return { status: `client ${e.name}`, text: String(e.message) };
  }
}

/** {@link clientGet}, which must answer 200 with JSON: the parsed body. */
export async function clientGetJson(url, pathname, timeoutMs) {
  const r = await clientGet(url, pathname, timeoutMs);
  assert.equal(r.status, 200, `${pathname}: ${r.status} ${r.text.slice(0, 300)}`);
  return JSON.parse(r.text);
}

/** A JWT anywhere in a text: no response, stat or log of the fixtures may hold one. */
export const JWT = /eyJ[\w-]+\.[\w-]+\.[\w-]+/;

/** The broker cluster's Durable Object status, read through the first client script. */
export const brokerStatus = (env) => clientGetJson(env.cluster.urls[0], "/broker");

/** Every client isolate's counters (and that they are distinct isolates, holding no token). */
export async function isolateStats(env) {
  const stats = await Promise.all(env.cluster.urls.map((u) => clientGetJson(u, "/stats")));
  assert.equal(new Set(stats.map((s) => s.isolate)).size, env.cluster.urls.length, "each client script is its own isolate");
  for (const s of stats) assert.doesNotMatch(JSON.stringify(s), JWT);
  return stats;
}

/** Results counted by status: { 200: n, "client TimeoutError": m, ... }. */
export function tally(results) {
  const by = {};
  for (const r of results) by[r.status] = (by[r.status] ?? 0) + 1;
  return by;
}

/** Every result answered 200, none holding a token (the statuses of any that did not). */
export function assertAll200(results, label) {
  const failed = results.filter((r) => r.status !== 200);
  assert.equal(
    failed.length,
    0,
    `${label}: ${failed.length}/${results.length} failed, statuses ${JSON.stringify(tally(results))}; first: ` +
      `${failed[0]?.status} ${failed[0]?.text?.split("\n")[0]}`,
  );
  for (const r of results) assert.doesNotMatch(r.text, JWT, `${label}: a response holds a token`);
}

/** A test's figures on stderr, with BROKER_TEST_FIGURES or WORKERD_TEST_VERBOSE set. */
export function report(label, figures) {
  if (process.env.BROKER_TEST_FIGURES || process.env.WORKERD_TEST_VERBOSE) console.error(`figures (${label}): ${JSON.stringify(figures)}`);
}

/** Fails with the offending lines when workerd reported a cross-request promise, a hung
 *  request or an uncaught error (`allowed`: patterns a test expects). */
export function assertCleanLogs(logs, allowed = []) {
  const bad = logs.matching(CROSS_CONTEXT_OR_HANG).filter((l) => !allowed.some((p) => p.test(l.message)));
  assert.equal(
    bad.length,
    0,
    `workerd/miniflare reported:\n${bad
      .slice(0, 10)
      .map((l) => `  [${l.source}:${l.level}] ${l.message.split("\n")[0]}`)
      .join("\n")}${bad.length > 10 ? `\n  … ${bad.length - 10} more` : ""}`,
  );
}

/**
 * `streams` request loops for `ms`, each going round the client scripts `urls()` (so every
 * isolate serves every stream) with `get`, 20 ms apart. `during(started)` runs alongside (e.g.
 * restarts the broker). Each result gets `at` (ms since the start) and `stream`.
 */
export async function loadStreams({ urls, get, streams, ms, during }) {
  const results = [];
  const started = Date.now();
  const end = started + ms;
  const loops = Array.from({ length: streams }, async (_, s) => {
    for (let i = 0; Date.now() < end; i++) {
      const list = urls();
      const r = await get(list[(s + i) % list.length]);
      results.push({ ...r, at: Date.now() - started, stream: s });
      await sleep(20);
    }
  });
  await within(ms + 60_000, Promise.all([...loops, during?.(started)]), "load");
  return results;
}
