// Runs every ```js example of the package's documentation (pkg-template/README.md and
// pkg-template/REFERENCE.md) against the reference server, so an example that stops working
// fails the test suite.
//
// An example is written for a user, with the user's host and account. To run it here, the
// test changes only what a user would change for their own API:
//   - the example host `https://api.example.com` becomes the reference server's URL;
//   - the credentials come from the environment the examples read (API_USERNAME and
//     API_PASSWORD: the server's demo user; TOKENS_KEY: 32 random bytes in base64;
//     REDIS_URL: a redis-server started for the Redis example);
//   - `/api/v1/orders` becomes `/api/v1/echo` (the reference server has products and an echo
//     endpoint that answers any method; orders are the README's example of a POST);
//   - `import … from "auth-session"` (and `auth-session/redis`, `require("auth-session")`,
//     Deno's `npm:auth-session`) point at the built package in pkg/, resolved through its
//     `exports` map with the runtime's conditions; other packages (axios, ky, redis) resolve
//     from the repository's node_modules.
//
// The info string after ```js says how a block runs:
//   ```js            an ES module in Node
//   ```js cjs        a CommonJS script in Node
//   ```js deno       a module in Deno (deno run --allow-net --allow-env --allow-read)
//   ```js bun        a module in Bun
//   ```js worker     a Worker module: its `fetch` handler is called in Node with an `env`
//                    (API_HOST, API_USERNAME, API_PASSWORD, a KV stand-in as TOKENS) and a
//                    `ctx` whose waitUntil promises are awaited; the response must be a 2xx
//   ```js redis      an ES module in Node, with a redis-server started for it (REDIS_URL)
//   ```js ky2        an ES module in Node, with `ky` resolving to ky 2 (the `ky2`
//                    devDependency, npm:ky@2) instead of the repository's ky 1
//   ```js no-run     shown, not run (a page, a Durable Object): each is a skipped test here
//
// A block passes when it exits 0 within the time limit, and neither its output nor its
// errors contain anything that looks like a token (the docs must never teach logging one).
//
// Needs the built package: `bash scripts/build-pkg.sh`.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

import { startServer } from "../server/reference-server.mjs";
import { extractBlocks } from "./markdown.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const pkgDir = join(root, "pkg");
const DOCS = ["pkg-template/README.md", "pkg-template/REFERENCE.md"];
const EXAMPLE_HOST = "https://api.example.com";
const TIME_LIMIT_MS = 30_000;
/** Three base64url parts, the first a JSON header: what a JWT (and the server's tokens) look like. */
const TOKEN_LIKE = /eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]{4,}/;
const MODES = new Set(["node", "cjs", "deno", "bun", "worker", "redis", "ky2", "no-run"]);

const requireHere = createRequire(import.meta.url);
const built = existsSync(join(pkgDir, "package.json"));
const pkgManifest = built ? JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")) : null;

/** The file the package's `exports` map gives `subpath` under `conditions` (in the map's key order). */
function exportsTarget(subpath, conditions) {
  const pick = (entry) => {
    if (typeof entry === "string") return entry;
    if (entry === null || typeof entry !== "object") return null;
    for (const [key, value] of Object.entries(entry)) {
      if (key === "default" || conditions.includes(key)) {
        const found = pick(value);
        if (found) return found;
      }
    }
    return null;
  };
  const target = pick(pkgManifest.exports[subpath]);
  if (!target) throw new Error(`pkg/package.json exports no ${subpath} for ${conditions.join(", ")}`);
  return join(pkgDir, target);
}

const CONDITIONS = {
  node: ["node", "import"],
  cjs: ["node", "require"],
  bun: ["bun", "node", "import"],
  deno: ["deno", "node", "import"],
};

/** A module specifier as the block's runtime would resolve it, made absolute. */
function resolveSpecifier(spec, runtime) {
  const conditions = CONDITIONS[runtime];
  const bare = spec.replace(/^npm:/, "");
  if (bare === "auth-session" || bare.startsWith("auth-session/")) {
    const file = exportsTarget(bare === "auth-session" ? "." : `./${bare.slice("auth-session/".length)}`, conditions);
    return runtime === "cjs" ? file : pathToFileURL(file).href;
  }
  if (spec.startsWith("node:") || spec.startsWith(".") || spec.startsWith("/") || /^[a-z]+:/.test(spec)) return spec;
  // Another package (axios, ky, redis): the repository's devDependency.
  return runtime === "cjs" ? requireHere.resolve(spec) : import.meta.resolve(spec);
}

/** The block as it runs here: host, paths and module specifiers replaced (see the header). */
function prepare(code, runtime, mode) {
  const specifier = (spec) => JSON.stringify(resolveSpecifier(mode === "ky2" && spec === "ky" ? "ky2" : spec, runtime));
  return code
    .replaceAll(EXAMPLE_HOST, serverUrl)
    .replaceAll("/api/v1/orders", "/api/v1/echo")
    .replace(/(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(["'])([^"']+)\2/g, (_, before, _q, spec) => before + specifier(spec))
    .replace(/\brequire\(\s*(["'])([^"']+)\1\s*\)/g, (_, _q, spec) => `require(${specifier(spec)})`);
}

/** Where a runtime's executable is: the repository's devDependencies first, then PATH. */
function tool(name) {
  const local = join(root, "node_modules", ".bin", name);
  if (existsSync(local)) return local;
  for (const dir of (process.env.PATH ?? "").split(":")) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return null;
}

function run(command, args, { cwd, env }) {
  return new Promise((resolveRun) => {
    const child = spawn(command, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => (stdout += chunk));
    child.stderr.on("data", (chunk) => (stderr += chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), TIME_LIMIT_MS);
    child.on("error", (err) => {
      clearTimeout(timer);
      resolveRun({ code: -1, signal: null, stdout, stderr: stderr + String(err) });
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolveRun({ code, signal, stdout, stderr });
    });
  });
}

/** The driver of a ```js worker block: its default export's fetch, as workerd would call it. */
function workerDriver(moduleFile) {
  return `
import worker from ${JSON.stringify(pathToFileURL(moduleFile).href)};

// A KV namespace as far as the examples use one (get/put/delete of strings).
const kv = new Map();
const TOKENS = {
  async get(key) { return kv.get(key) ?? null; },
  async put(key, value) { kv.set(key, String(value)); },
  async delete(key) { kv.delete(key); },
};
const env = {
  API_HOST: ${JSON.stringify(serverUrl)},
  API_USERNAME: process.env.API_USERNAME,
  API_PASSWORD: process.env.API_PASSWORD,
  TOKENS,
  TOKENS_KEY: process.env.TOKENS_KEY,
};
for (let i = 0; i < 3; i++) {
  const pending = [];
  const ctx = { waitUntil(promise) { pending.push(promise); }, passThroughOnException() {} };
  const response = await worker.fetch(new Request("https://worker.example/"), env, ctx);
  await Promise.all(pending);
  const text = await response.text();
  if (!response.ok) throw new Error(\`request \${i + 1}: the Worker answered \${response.status}: \${text}\`);
  console.log(\`request \${i + 1}: \${response.status} \${text.slice(0, 120)}\`);
}
if (kv.size !== 1) throw new Error(\`expected one record in KV, found \${kv.size}\`);
`;
}

/** A loopback port that was free a moment ago. */
async function freePort() {
  const server = net.createServer();
  await new Promise((ok, fail) => server.once("error", fail).listen(0, "127.0.0.1", ok));
  const { port } = server.address();
  await new Promise((ok) => server.close(ok));
  return port;
}

/** A throwaway redis-server (nothing written to disk); null when there is none to start. */
async function startRedis() {
  const binary = tool("redis-server");
  if (!binary) return null;
  const port = await freePort();
  const child = spawn(binary, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (chunk) => (output += chunk));
  const ready = await new Promise((ok) => {
    const timer = setTimeout(() => ok(false), 10_000);
    const check = () => {
      if (/ready to accept connections/i.test(output)) {
        clearTimeout(timer);
        ok(true);
      }
    };
    child.stdout.on("data", check);
    child.on("exit", () => {
      clearTimeout(timer);
      ok(false);
    });
  });
  if (!ready) {
    child.kill();
    throw new Error(`redis-server did not start: ${output.slice(-500)}`);
  }
  return { url: `redis://127.0.0.1:${port}`, stop: () => child.kill() };
}

let server;
let serverUrl;
let work;
let redis;
const baseEnv = {
  ...process.env,
  API_USERNAME: "demo",
  API_PASSWORD: "demo-password",
  TOKENS_KEY: randomBytes(32).toString("base64"),
  NO_COLOR: "1",
  DENO_NO_UPDATE_CHECK: "1",
};
delete baseEnv.NODE_TEST_CONTEXT; // the blocks are scripts, not tests of this runner
delete baseEnv.NODE_OPTIONS;

before(async () => {
  assert.ok(built, "pkg/ is not built: run bash scripts/build-pkg.sh");
  server = await startServer();
  serverUrl = server.url;
  work = mkdtempSync(join(tmpdir(), "auth-session-docs-"));
  baseEnv.DENO_DIR = join(work, "deno-dir");
});

after(async () => {
  redis?.stop();
  await server?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

const blocks = DOCS.flatMap((doc) => {
  const path = join(root, doc);
  if (!existsSync(path)) throw new Error(`${doc} is missing`);
  return extractBlocks(readFileSync(path, "utf8"))
    .filter((block) => block.lang === "js")
    .map((block) => ({ ...block, doc }));
});

test("the documentation has runnable examples, each block's mode is known", () => {
  assert.ok(blocks.length >= 10, `only ${blocks.length} js blocks found`);
  for (const block of blocks) {
    assert.ok(MODES.has(block.mode), `${block.doc}:${block.line}: unknown info string "js ${block.tags.join(" ")}"`);
  }
});

let serial = 0;
for (const block of blocks) {
  const name = `${block.doc.replace("pkg-template/", "")}:${block.line} (${block.mode})`;
  if (block.mode === "no-run") {
    const why = block.code.split("\n").find((line) => line.trim().startsWith("//"))?.trim() ?? "no-run";
    test(name, { skip: `no-run: ${why}` }, () => {});
    continue;
  }
  test(name, async (t) => {
    const n = ++serial;
    const cwd = mkdtempSync(join(work, `block-${n}-`));
    const env = { ...baseEnv };
    const runtime = ["worker", "redis", "ky2"].includes(block.mode) ? "node" : block.mode;
    const code = prepare(block.code, runtime, block.mode);
    let command;
    let args;
    if (block.mode === "cjs") {
      writeFileSync(join(cwd, "example.cjs"), code);
      [command, args] = [process.execPath, ["example.cjs"]];
    } else if (block.mode === "deno") {
      const deno = tool("deno");
      if (!deno) return t.skip("deno is not installed (npm ci installs it)");
      writeFileSync(join(cwd, "example.mjs"), code);
      [command, args] = [deno, ["run", "--no-prompt", "--allow-net", "--allow-env", "--allow-read", "example.mjs"]];
    } else if (block.mode === "bun") {
      const bun = tool("bun");
      if (!bun) return t.skip("bun is not installed (npm ci installs it)");
      writeFileSync(join(cwd, "example.mjs"), code);
      [command, args] = [bun, ["--no-install", "example.mjs"]];
    } else if (block.mode === "worker") {
      writeFileSync(join(cwd, "worker.mjs"), code);
      writeFileSync(join(cwd, "driver.mjs"), workerDriver(join(cwd, "worker.mjs")));
      [command, args] = [process.execPath, ["driver.mjs"]];
    } else {
      if (block.mode === "redis") {
        redis ??= await startRedis();
        if (!redis) return t.skip("redis-server is not installed (scripts/ensure-tools.sh --redis installs it)");
        env.REDIS_URL = redis.url;
      }
      writeFileSync(join(cwd, "example.mjs"), code);
      [command, args] = [process.execPath, ["example.mjs"]];
    }
    const result = await run(command, args, { cwd, env });
    const where = `${block.doc}:${block.line}`;
    const shown = [
      `exit ${result.code}${result.signal ? ` (${result.signal}: over ${TIME_LIMIT_MS} ms?)` : ""}`,
      `--- stdout\n${result.stdout.trimEnd()}`,
      `--- stderr\n${result.stderr.trimEnd()}`,
      `--- the block as run (${relative(root, cwd) || cwd})\n${code}`,
    ].join("\n");
    assert.equal(result.code, 0, `${where}: the example failed\n${shown}`);
    assert.doesNotMatch(result.stdout + result.stderr, TOKEN_LIKE, `${where}: the example printed a token\n${shown}`);
    const printed = result.stdout.replace(/\s+/g, " ").trim();
    if (printed) t.diagnostic(`printed: ${printed.length > 200 ? `${printed.slice(0, 200)}…` : printed}`);
  });
}
