// The documentation a user gets with the package (pkg-template/README.md, REFERENCE.md,
// CHANGELOG.md) against what the package ships: every option, method, event, error code and
// exported name of the type declarations is documented; every link resolves to a file in the
// tarball and an anchor that exists; no placeholder or repository-private pointer is left; and
// the reference and the changelog ship and are linked from both READMEs.

import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { extractBlocks, firstCells, linkTargets, section, withoutCode } from "./markdown.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const read = (path) => readFileSync(join(root, path), "utf8");
const TEMPLATE = "pkg-template";
const SHIPPED_DOCS = ["README.md", "REFERENCE.md", "CHANGELOG.md"];
const docs = Object.fromEntries(SHIPPED_DOCS.map((name) => [name, read(`${TEMPLATE}/${name}`)]));
const rootReadme = read("README.md");
const manifest = JSON.parse(read(`${TEMPLATE}/package.json`));
const types = read(`${TEMPLATE}/index.d.ts`);

/** The body of `export interface|class Name … { … }` in a declaration file (braces balanced). */
function declarationBody(source, kind, name) {
  const start = source.search(new RegExp(`export (?:declare )?${kind} ${name}\\b[^{]*\\{`));
  assert.ok(start >= 0, `no ${kind} ${name} in the declarations`);
  let depth = 0;
  for (let i = source.indexOf("{", start); i < source.length; i++) {
    if (source[i] === "{") depth++;
    else if (source[i] === "}" && --depth === 0) return source.slice(source.indexOf("{", start) + 1, i);
  }
  throw new Error(`unbalanced ${kind} ${name}`);
}

/** Member names declared at the top level of a body (comments removed). */
function memberNames(body) {
  const code = body.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
  const names = new Set();
  let depth = 0;
  for (const line of code.split("\n")) {
    if (depth === 0) {
      const m = /^\s*(?:readonly\s+|static\s+)?(\[Symbol\.\w+\]|[A-Za-z_$][\w$]*)\??\s*[(:<]/.exec(line);
      if (m && m[1] !== "constructor") names.add(m[1]);
    }
    for (const ch of line) depth += ch === "{" || ch === "(" ? 1 : ch === "}" || ch === ")" ? -1 : 0;
  }
  return [...names];
}

/** The string literals of `export type Name = "a" | "b" …;`. */
function unionMembers(source, name) {
  const m = new RegExp(`export type ${name} =([^;]*);`).exec(source);
  assert.ok(m, `no type ${name} in the declarations`);
  return [...m[1].matchAll(/"([^"]+)"/g)].map((x) => x[1]);
}

/** GitHub's (and npm's) heading anchors: text without markup, lower-cased, punctuation dropped, spaces to hyphens. */
function anchorsOf(markdown) {
  const seen = new Map();
  const anchors = new Set();
  for (const line of withoutCode(markdown).split("\n")) {
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const text = m[1].replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1").replace(/[`*]/g, "");
    let slug = text.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, "").replace(/\s/g, "-");
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    if (n > 0) slug = `${slug}-${n}`;
    anchors.add(slug);
  }
  return anchors;
}

/** Code spans and table cells mention names as `name`, `name(…)` or `name: …`. */
const mentions = (text, name) => new RegExp(`\`${name.replace(/[$[\].]/g, "\\$&")}[(\`<: ?]`).test(text);
const cellNames = (text) => firstCells(text).map((cell) => /^`?([^`(:\s]+)/.exec(cell)?.[1]);

test("the reference and the changelog ship in the tarball and are linked from both READMEs", () => {
  for (const name of ["REFERENCE.md", "CHANGELOG.md"]) {
    assert.ok(manifest.files.includes(name), `pkg-template/package.json "files" lacks ${name}`);
    const list = /expected_files=\(([\s\S]*?)\)/.exec(read("scripts/test-runtimes.sh"))?.[1] ?? "";
    assert.ok(list.split(/\s+/).includes(name), `scripts/test-runtimes.sh expected_files lacks ${name}`);
    assert.ok(linkTargets(docs["README.md"]).includes(`./${name}`), `pkg-template/README.md does not link ./${name}`);
    assert.ok(
      linkTargets(rootReadme).some((target) => target.split("#")[0] === `${TEMPLATE}/${name}`),
      `README.md does not link ${TEMPLATE}/${name}`,
    );
  }
  const version = /^\[package\][\s\S]*?^version\s*=\s*"([^"]+)"/m.exec(read("Cargo.toml"))[1];
  assert.match(docs["CHANGELOG.md"], new RegExp(`^## ${version.replaceAll(".", "\\.")}\\b`, "m"), `CHANGELOG.md has no "## ${version}"`);
});

test("no placeholder and no pointer to what users cannot see", () => {
  assert.equal(manifest.repository, undefined, "pkg-template/package.json: no repository field rather than a fake one");
  assert.doesNotMatch(JSON.stringify(manifest), /example\.invalid/);
  for (const [name, text] of [...Object.entries(docs).map(([n, t]) => [`${TEMPLATE}/${n}`, t]), ["README.md", rootReadme]]) {
    assert.doesNotMatch(text, /example\.invalid/, `${name}: a placeholder link`);
    assert.doesNotMatch(text, /\.\.\/shared|\bAPI\.md\b|\bPROTOCOL\.md\b/, `${name}: points at files users never see`);
    for (const target of linkTargets(text)) {
      if (!/^[a-z]+:/i.test(target)) continue;
      const host = new URL(target).hostname;
      assert.doesNotMatch(host, /(^|\.)(example\.(com|org|net)|[^.]+\.(invalid|example|test|localhost))$/, `${name}: a placeholder link ${target}`);
    }
  }
});

test("every relative link of the shipped docs points at a file in the tarball and an anchor that exists", () => {
  const shipped = new Set(["README.md", "LICENSE", "package.json", ...manifest.files]);
  for (const [name, text] of Object.entries(docs)) {
    for (const target of linkTargets(text)) {
      if (/^[a-z]+:/i.test(target)) continue;
      const [file, anchor] = target.split("#");
      const file2 = file === "" ? name : normalize(file).replace(/^\.\//, "");
      assert.ok(shipped.has(file2), `${name}: link ${target}: ${file2} is not in the tarball`);
      if (anchor !== undefined) {
        const body = docs[file2];
        assert.ok(body, `${name}: link ${target}: anchors are only checked in the shipped docs`);
        assert.ok(anchorsOf(body).has(anchor), `${name}: link ${target}: no heading #${anchor} in ${file2}`);
      }
    }
  }
  for (const target of linkTargets(rootReadme)) {
    if (/^[a-z]+:/i.test(target) || target.startsWith("#")) continue;
    assert.ok(existsSync(join(root, target.split("#")[0])), `README.md: link ${target} does not resolve`);
  }
});

test("every option is in the README's and the reference's option tables, and the constructor knows it", async () => {
  const options = memberNames(declarationBody(types, "interface", "AuthSessionOptions"));
  assert.ok(options.length >= 15, `parsed only ${options.length} options`);
  const readmeOptions = cellNames(section(docs["README.md"], /^Options$/) ?? "");
  const referenceOptions = cellNames(section(docs["REFERENCE.md"], /^AuthSessionOptions$/) ?? "");
  for (const option of options) {
    assert.ok(readmeOptions.includes(option), `README.md "Options" table lacks ${option}`);
    assert.ok(referenceOptions.includes(option), `REFERENCE.md "AuthSessionOptions" table lacks ${option}`);
  }
  const { AuthSession } = await import("../../pkg/node.mjs");
  for (const option of new Set([...readmeOptions, ...referenceOptions].filter((o) => o && o !== "host" && /^[a-z]\w*$/i.test(o)))) {
    if (["json", "waitUntil", "signal"].includes(option) && !options.includes(option)) continue; // per-call fields
    assert.doesNotThrow(
      () => new AuthSession({ host: "https://api.example.com", [option]: undefined }).dispose(),
      `the constructor refuses the documented option ${option}`,
    );
  }
});

test("every method, event and error code is documented in the README and the reference", () => {
  const methods = memberNames(declarationBody(types, "class", "AuthSession"));
  const readmeMethods = section(docs["README.md"], /^Methods$/) ?? "";
  for (const method of methods) {
    const name = method === "[Symbol.dispose]" ? "[Symbol.dispose]" : method;
    assert.ok(mentions(readmeMethods, name) || readmeMethods.includes(`\`${name}`), `README.md "Methods" lacks ${name}`);
    assert.ok(docs["REFERENCE.md"].includes(`\`${name}`), `REFERENCE.md lacks ${name}`);
  }
  for (const event of unionMembers(types, "AuthSessionEvent")) {
    assert.ok(cellNames(section(docs["README.md"], /^Events$/) ?? "").includes(event), `README.md "Events" table lacks ${event}`);
    assert.ok(cellNames(section(docs["REFERENCE.md"], /^Events$/) ?? "").includes(event), `REFERENCE.md "Events" table lacks ${event}`);
  }
  const readmeErrors = section(docs["README.md"], /^Errors$/) ?? "";
  const referenceCodes = cellNames(section(docs["REFERENCE.md"], /^AuthErrorCode$/) ?? "");
  for (const code of unionMembers(types, "AuthErrorCode")) {
    assert.ok(readmeErrors.includes(`\`${code}\``), `README.md "Errors" lacks ${code}`);
    assert.ok(referenceCodes.includes(code), `REFERENCE.md "AuthErrorCode" table lacks ${code}`);
  }
  for (const member of memberNames(declarationBody(types, "class", "AuthError"))) {
    assert.ok(docs["REFERENCE.md"].includes(`\`${member}`) || docs["REFERENCE.md"].includes(`.${member}`), `REFERENCE.md lacks AuthError ${member}`);
  }
  for (const member of ["AuthError.is", "toJSON"]) {
    assert.ok(docs["README.md"].includes(member) && docs["REFERENCE.md"].includes(member), `AuthError's ${member} is undocumented`);
  }
});

test("every entry point and every name its declarations export is in the reference", () => {
  const reference = docs["REFERENCE.md"];
  const entries = section(reference, /^Entry points$/) ?? "";
  for (const [subpath, target] of Object.entries(manifest.exports)) {
    const specifier = subpath === "." ? "auth-session" : `auth-session/${subpath.slice(2)}`;
    assert.ok(entries.includes(`\`${specifier}\``), `REFERENCE.md "Entry points" lacks ${specifier}`);
    const declarations = typeof target === "object" ? (target.types?.default ?? target.types) : null;
    if (typeof declarations !== "string") continue;
    const source = read(join(TEMPLATE, declarations));
    for (const [, name] of source.matchAll(/^export (?:declare )?(?:class|function|const|interface|type|abstract class) (\w+)/gm)) {
      assert.ok(mentions(reference, name) || reference.includes(`\`${name}\``), `REFERENCE.md lacks ${name} (${specifier})`);
    }
  }
});

test("the docs' code never hands a refresh to the first request's ctx", () => {
  for (const [name, text] of Object.entries(docs)) {
    for (const block of extractBlocks(text)) {
      assert.doesNotMatch(block.code, /waitUntil\s*:\s*\(?\s*\w+\s*\)?\s*=>\s*ctx\.waitUntil/, `${name}:${block.line}: a session-level closure over ctx`);
    }
  }
});

test("the repository README starts with what a user does", () => {
  const first = extractBlocks(rootReadme)[0];
  assert.ok(first && first.code.includes("npm install auth-session"), "README.md's first code block is not the install");
  const install = rootReadme.indexOf("npm install auth-session");
  const commands = rootReadme.indexOf("## The two commands");
  assert.ok(commands > install, `"The two commands" comes after the user's first steps`);
});
