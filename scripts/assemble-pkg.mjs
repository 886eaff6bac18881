#!/usr/bin/env node
// Assembles the npm package in pkg/ from the wasm and pkg-template/.
// Run by scripts/build-pkg.sh after cargo and wasm-opt; it compiles nothing.
//
// Inputs (environment, defaults for this repository):
//   AUTH_SESSION_WASM         the wasm-opt'ed module             (target/pkg-wasm/auth_session_bg.wasm)
//   AUTH_SESSION_CRATE_DIR    crate whose Cargo.toml gives the version (the repository)
//   AUTH_SESSION_PKG_DIR      output                             (pkg)
//
// The package: the wasm, the glue of its one entry point (auth_session.js), the
// driver (session.js) and AuthError (auth-error.js), one entry per runtime from
// pkg-template/, node.cjs bundled from pkg-template/node-cjs.source.mjs, and the
// hand-written index.d.ts (+ index.d.cts).

import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const env = (name, fallback) => resolve(process.env[name] || fallback);

const crateDir = env("AUTH_SESSION_CRATE_DIR", root);
const wasmPath = env("AUTH_SESSION_WASM", join(crateDir, "target", "pkg-wasm", "auth_session_bg.wasm"));
const pkgDir = env("AUTH_SESSION_PKG_DIR", join(root, "pkg"));
const templateDir = join(root, "pkg-template");

const WASM = "auth_session_bg.wasm";
// Template files that are build inputs, not package contents.
const BUILD_ONLY = new Set(["node-cjs.source.mjs"]);

function fail(message) {
  console.error(`assemble-pkg: ${message}`);
  process.exit(1);
}

function filesUnder(dir) {
  return readdirSync(dir, { recursive: true })
    .map((name) => join(dir, name))
    .filter((path) => statSync(path).isFile());
}

function crateVersion(cargoToml) {
  // The [package] table's own `version = "x.y.z"`; a workspace-inherited version is not
  // supported (the crate is not in a workspace).
  const text = readFileSync(cargoToml, "utf8");
  const table = text.split(/^\[/m).find((part) => part.startsWith("package]"));
  const match = table?.match(/^version\s*=\s*"([^"]+)"/m);
  if (!match) fail(`no [package] version in ${cargoToml}`);
  return match[1];
}

// --- Check the inputs ---------------------------------------------------------------------
for (const path of [wasmPath, join(templateDir, "package.json")]) {
  if (!existsSync(path)) fail(`missing ${path} (run scripts/build-pkg.sh)`);
}
// --- Start from an empty pkg/ -------------------------------------------------------------
rmSync(pkgDir, { recursive: true, force: true });
mkdirSync(pkgDir, { recursive: true });

cpSync(wasmPath, join(pkgDir, WASM));

// --- Template files -----------------------------------------------------------------------
for (const name of readdirSync(templateDir)) {
  if (BUILD_ONLY.has(name) || name === "package.json") continue;
  const source = join(templateDir, name);
  if (!statSync(source).isFile()) fail(`unexpected directory in pkg-template: ${name}`);
  if (/\.(m?js|cjs)$/.test(name)) {
    writeFileSync(join(pkgDir, name), readFileSync(source, "utf8"));
  } else {
    cpSync(source, join(pkgDir, name));
  }
}
// For `require` users under TypeScript's node16/nodenext resolution: a .d.ts in a
// "type": "module" package describes an ES module, so CommonJS importers need a .d.cts.
cpSync(join(templateDir, "index.d.ts"), join(pkgDir, "index.d.cts"));

const manifest = JSON.parse(readFileSync(join(templateDir, "package.json"), "utf8"));
manifest.version = crateVersion(join(crateDir, "Cargo.toml"));
writeFileSync(join(pkgDir, "package.json"), JSON.stringify(manifest, null, 2) + "\n");

// --- node.cjs: the Node entry's logic as one CommonJS file --------------------------------
// Bundled rather than re-exported from the ESM files, so that require() users get a plain
// CJS module (no require(esm), which Node 20 lacks).
const cjsSource = readFileSync(join(templateDir, "node-cjs.source.mjs"), "utf8");
await build({
  stdin: { contents: cjsSource, resolveDir: pkgDir, sourcefile: "node-cjs.source.mjs", loader: "js" },
  outfile: join(pkgDir, "node.cjs"),
  // Paths in the bundle's comments relative to pkg/, so the output does not depend on cwd.
  absWorkingDir: pkgDir,
  bundle: true,
  format: "cjs",
  platform: "node",
  target: "node20",
  // The glue's async loader (`new URL(..., import.meta.url)`) is dead code here: tree
  // shaking drops it, and import.meta is never read in CommonJS.
  logOverride: { "empty-import-meta": "silent" },
  legalComments: "none",
  banner: { js: "// auth-session: CommonJS entry for Node, bundled from the ESM files by scripts/assemble-pkg.mjs." },
  logLevel: "warning",
});

// --- node.mjs: the Node ESM entry as one file -------------------------------------------
// Node 20's ESM loader costs about 2 ms per module file at start-up: the entry and the five
// files it imports took 13 ms more to import than the same code as one CommonJS file. So the
// Node entry (Node ESM and Bun) is bundled like node.cjs; the other entries stay files
// (bundlers and wrangler bundle them, and workers.js shares session.js with workerd.mjs).
// Nothing else Node loads imports session.js, so no second copy of a class is made.
await build({
  stdin: { contents: readFileSync(join(templateDir, "node.mjs"), "utf8"), resolveDir: pkgDir, sourcefile: "node.mjs", loader: "js" },
  outfile: join(pkgDir, "node.mjs"),
  allowOverwrite: true,
  absWorkingDir: pkgDir,
  bundle: true,
  format: "esm",
  platform: "node",
  target: "node20",
  legalComments: "none",
  banner: { js: "// auth-session: ES module entry for Node and Bun, bundled from the ESM files by scripts/assemble-pkg.mjs." },
  logLevel: "warning",
});

// --- Check what ships ---------------------------------------------------------------------
const shipped = new Set(["package.json", "README.md", "LICENSE", ...manifest.files.map((f) => f.replace(/\/$/, ""))]);
for (const name of readdirSync(pkgDir)) {
  if (!shipped.has(name)) fail(`pkg/${name} is not listed in pkg-template/package.json "files"`);
}
for (const name of shipped) {
  if (!existsSync(join(pkgDir, name))) fail(`"files" lists ${name}, which the build did not produce`);
}

console.log(`assemble-pkg: ${relative(process.cwd(), pkgDir) || "."} is auth-session@${manifest.version}`);
