// `wrangler deploy --dry-run` of the example Worker: wrangler (4, on Node 22) bundles the
// package through its `workerd` export condition, keeps the .wasm as a separate compiled
// module, and warns about nothing. Then the bundle wrangler would upload runs in workerd.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { startServer } from "../server/reference-server.mjs";
import { Logs, PRODUCTS, USER, pkgDir, root, startWorker, tempDir, userCopy, workerDir } from "./harness.mjs";

const wrangler = path.join(root, "node_modules/wrangler/bin/wrangler.js");

function run(cmd, args, options) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...options, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, out }));
  });
}

test("wrangler deploy --dry-run bundles the example with the package's wasm, without a warning", { timeout: 90_000 }, async (t) => {
  const tmp = await tempDir("auth-session-wrangler-");
  t.after(tmp.cleanup);
  // The example as a user has it after `npm install`: its files, and auth-session in its
  // node_modules (here: a link to the built package).
  const app = path.join(tmp.dir, "app");
  await userCopy(workerDir, app);

  const outdir = path.join(tmp.dir, "out");
  // process.execPath: this suite runs on Node 22, which wrangler 4 needs.
  const { code, out } = await run(process.execPath, [wrangler, "deploy", "--dry-run", "--outdir", outdir], {
    cwd: app,
    env: {
      ...process.env,
      WRANGLER_SEND_METRICS: "false",
      WRANGLER_LOG_PATH: path.join(tmp.dir, "logs"),
      NO_COLOR: "1",
      FORCE_COLOR: "0",
    },
  });
  assert.equal(code, 0, `wrangler failed:\n${out}`);
  assert.match(out, /--dry-run: exiting now/);
  assert.match(out, /env\.TOKENS .*KV Namespace/);
  const warnings = out.split("\n").filter((l) => /warn|▲|\[WARNING\]|deprecat/i.test(l));
  assert.deepEqual(warnings, [], `wrangler warned:\n${out}`);

  // One bundle plus the package's .wasm, byte for byte, imported as a module.
  const files = await readdir(outdir);
  const wasm = files.filter((f) => f.endsWith(".wasm"));
  assert.equal(wasm.length, 1, `output: ${files.join(", ")}`);
  assert.ok(files.includes("index.js"), `output: ${files.join(", ")}`);
  assert.deepEqual(await readFile(path.join(outdir, wasm[0])), await readFile(path.join(pkgDir, "auth_session_bg.wasm")));
  const bundle = await readFile(path.join(outdir, "index.js"), "utf8");
  assert.match(bundle, new RegExp(`import \\w+ from "\\./${wasm[0].replace(/[.]/g, "\\.")}"`));
  // The workerd entry (initSync with the imported module), not the browser one (fetch + compile).
  assert.match(bundle, /initSync\(\{ module: wasmModule\d* \}\)/);
  assert.doesNotMatch(bundle, /import\.meta\.url/);

  // What wrangler would upload runs in workerd.
  const server = await startServer({ users: { [USER.username]: USER.password } });
  t.after(() => server.close());
  const logs = new Logs();
  const { mf, url } = await startWorker({
    modules: [
      { type: "ESModule", path: path.join(outdir, "index.js") },
      { type: "CompiledWasm", path: path.join(outdir, wasm[0]) },
    ],
    serverUrl: server.url,
    persist: path.join(tmp.dir, "kv"),
    logs,
  });
  t.after(() => mf.dispose());
  const res = await fetch(new URL("/products", url));
  assert.equal(res.status, 200, await res.clone().text());
  assert.deepEqual(await res.json(), PRODUCTS);
  assert.equal(server.stats.login, 1);
});
