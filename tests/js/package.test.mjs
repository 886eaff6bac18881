// The package as users get it: resolved by name through pkg/package.json's `exports`
// (a temporary node_modules/auth-session symlink to pkg/), under `import` and `require`.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdtemp, mkdir, symlink, rm, readFile, access } from "node:fs/promises";
import { realpathSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startServer } from "./helpers.mjs";

const run = promisify(execFile);
const PKG = fileURLToPath(new URL("../../pkg/", import.meta.url));

let dir;
let server;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "auth-session-consumer-"));
  await mkdir(path.join(dir, "node_modules"));
  await symlink(PKG, path.join(dir, "node_modules", "auth-session"), "dir");
  server = await startServer();
});
after(async () => {
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const node = (args) => run(process.execPath, args, { cwd: dir, timeout: 15_000 });

const SMOKE = `
  const session = new AuthSession({ host: process.argv.at(-1), autoRefresh: false });
  const info = await session.login("demo", "demo-password");
  const products = await session.json("/api/v1/products");
  const err = await session.fetch("https://example.com/").catch((e) => e);
  console.log(JSON.stringify({
    state: info.state, n: products.length,
    errIsAuthError: err instanceof AuthError, code: err.code,
  }));
  session.dispose();
`;

describe("package resolution by name", { concurrency: true }, () => {
  it('import "auth-session" resolves to node.mjs and works without an init call', async () => {
    const code = `
      import { AuthSession, AuthError } from "auth-session";
      console.log(import.meta.resolve("auth-session"));
      ${SMOKE}
    `;
    const { stdout, stderr } = await node(["--input-type=module", "-e", code, server.url]);
    const [resolved, result] = stdout.trim().split("\n");
    assert.equal(fileURLToPath(resolved), realpathSync(path.join(PKG, "node.mjs")));
    assert.deepEqual(JSON.parse(result), { state: "active", n: 4, errIsAuthError: true, code: "ORIGIN_NOT_ALLOWED" });
    assert.equal(stderr, "");
  });

  it('require("auth-session") resolves to node.cjs and works', async () => {
    const code = `
      const { AuthSession, AuthError } = require("auth-session");
      console.log(require.resolve("auth-session"));
      (async () => { ${SMOKE} })();
    `;
    const { stdout, stderr } = await node(["-e", code, server.url]);
    const [resolved, result] = stdout.trim().split("\n");
    assert.equal(resolved, realpathSync(path.join(PKG, "node.cjs")));
    assert.deepEqual(JSON.parse(result), { state: "active", n: 4, errIsAuthError: true, code: "ORIGIN_NOT_ALLOWED" });
    assert.equal(stderr, "");
  });

  it("every file and export target named by package.json exists", async () => {
    const manifest = JSON.parse(await readFile(path.join(PKG, "package.json"), "utf8"));
    assert.equal(manifest.name, "auth-session");
    const targets = [];
    const walk = (v) => {
      if (typeof v === "string") targets.push(v);
      else if (v && typeof v === "object") Object.values(v).forEach(walk);
    };
    walk(manifest.exports);
    for (const t of [...targets, ...manifest.files, manifest.types]) {
      await access(path.join(PKG, t)).catch(() => assert.fail(`pkg/${t} is missing`));
    }
  });

  it("every declaration file in the tarball is reached from an exports \"types\" entry", async () => {
    const manifest = JSON.parse(await readFile(path.join(PKG, "package.json"), "utf8"));
    // What npm would pack, as npm computes it.
    const { stdout } = await run("npm", ["pack", "--dry-run", "--json", "--ignore-scripts", "--loglevel=error"], {
      cwd: PKG,
      timeout: 30_000,
    });
    const packed = JSON.parse(stdout)[0].files.map((f) => f.path);
    const declarations = packed.filter((f) => /\.d\.[cm]?ts$/.test(f));
    assert.ok(declarations.includes("index.d.ts"), `no index.d.ts among the packed files: ${packed.join(", ")}`);

    // The roots: every string under a "types" condition of `exports`, at any depth.
    const roots = [];
    const walk = (value, underTypes) => {
      if (typeof value === "string") {
        if (underTypes) roots.push(value);
      } else if (value && typeof value === "object") {
        for (const [key, inner] of Object.entries(value)) walk(inner, underTypes || key === "types");
      }
    };
    walk(manifest.exports, false);
    assert.ok(roots.length > 0, "exports has no types entry");

    // The declaration file TypeScript takes for a relative specifier in a declaration file.
    const declarationFor = (from, spec) => {
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(from), spec));
      if (/\.d\.[cm]?ts$/.test(target)) return target;
      const m = /^(.*)\.(m?js|cjs)$/.exec(target);
      if (m) return `${m[1]}.d.${{ js: "ts", mjs: "mts", cjs: "cts" }[m[2]]}`;
      return `${target}.d.ts`;
    };
    const reached = new Set();
    const queue = roots.map((r) => path.posix.normalize(r));
    while (queue.length) {
      const file = queue.shift();
      if (reached.has(file)) continue;
      reached.add(file);
      const source = await readFile(path.join(PKG, file), "utf8").catch(() => assert.fail(`pkg/${file} (reached from exports) is missing`));
      const specs = [
        ...source.matchAll(/\b(?:from|import)\s*\(?\s*["'](\.{1,2}\/[^"']+)["']/g),
        ...source.matchAll(/\/\/\/\s*<reference\s+path\s*=\s*["']([^"']+)["']/g),
      ].map((m) => m[1]);
      for (const spec of specs) queue.push(declarationFor(file, spec));
    }
    const unreached = declarations.filter((f) => !reached.has(f));
    assert.deepEqual(unreached, [], `packed declaration files no exports "types" entry reaches (reached: ${[...reached].join(", ")})`);
  });
  // Start-up is paid on every cold start of a process or function. On Node 20 an ES import of
  // "node:fs" loads Node's streams (fs's lazy ReadStream getters), and the first touch of
  // globalThis.crypto loads WebCrypto: together about 8 ms, for one file read and a seed that
  // only a session signing client assertions needs from a CSPRNG.
  for (const [entry, code] of [
    ["import", `const { AuthSession } = await import("auth-session");`],
    ["require", `const { AuthSession } = require("auth-session");`],
  ]) {
    it(`${entry} and a session without a private key load neither Node's streams nor WebCrypto`, async () => {
      const probe = `
        const before = new Set(process.moduleLoadList);
        ${code}
        const session = new AuthSession({ host: "https://api.example.com", autoRefresh: false });
        session.dispose();
        const loaded = process.moduleLoadList.filter((m) => !before.has(m) && /crypto|stream/.test(m));
        process.stdout.write(JSON.stringify(loaded));
      `;
      const { stdout } = await node([entry === "import" ? "--input-type=module" : "--input-type=commonjs", "-e", probe]);
      assert.deepEqual(JSON.parse(stdout), []);
    });
  }

  it("the Node ESM entry loads where process.getBuiltinModule does not exist (Node before 20.16)", async () => {
    const probe = `
      delete process.getBuiltinModule;
      const { AuthSession } = await import("auth-session");
      const session = new AuthSession({ host: "https://api.example.com", autoRefresh: false });
      process.stdout.write(session.info.state);
      session.dispose();
    `;
    const { stdout } = await node(["--input-type=module", "-e", probe]);
    assert.equal(stdout, "anonymous");
  });

  it("a session signing client assertions seeds its random stream from the CSPRNG", async () => {
    const probe = `
      import { AuthSession } from "auth-session";
      const { privateKey } = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
      let drawn = 0;
      const real = crypto.getRandomValues.bind(crypto);
      crypto.getRandomValues = (a) => (drawn++, real(a));
      const session = new AuthSession({
        host: "https://api.example.com", autoRefresh: false,
        oauth: { tokenEndpoint: "https://as.example.com/token", clientId: "c", grant: "client_credentials", privateKey },
      });
      session.dispose();
      process.stdout.write(String(drawn));
    `;
    const { stdout } = await node(["--input-type=module", "-e", probe]);
    assert.equal(stdout, "1");
  });
});
