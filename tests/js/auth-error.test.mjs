// One AuthError across copies of the package (issue 9): the ESM and CJS entries in one
// process, and a second copy of the package in another directory, recognise each other's
// errors through the Symbol.for brand; toJSON carries what a log needs and no more.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { cp, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

import { AuthSession, AuthError } from "./helpers.mjs";

const pkg = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../pkg");
const require = createRequire(import.meta.url);

async function rejection(promise) {
  try {
    await promise;
  } catch (e) {
    return e;
  }
  assert.fail("expected a rejection");
}

describe("AuthError across copies", () => {
  it("an error of the CJS copy is instanceof the ESM class, and the reverse", async () => {
    const cjs = require(path.join(pkg, "node.cjs"));
    assert.notEqual(cjs.AuthError, AuthError, "two copies of the class");
    const fromCjs = await rejection(new cjs.AuthSession({ host: "https://api.example.com" }).refresh());
    const fromEsm = await rejection(new AuthSession({ host: "https://api.example.com" }).refresh());
    for (const e of [fromCjs, fromEsm]) {
      assert.ok(e instanceof AuthError && e instanceof cjs.AuthError && e instanceof Error);
      assert.ok(AuthError.is(e) && cjs.AuthError.is(e));
      assert.equal(e.code, "NOT_AUTHENTICATED");
    }
  });

  it("a copy of the package in another directory agrees too", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "auth-session-copy-"));
    try {
      await cp(pkg, dir, { recursive: true });
      const other = await import(pathToFileURL(path.join(dir, "node.mjs")).href);
      assert.notEqual(other.AuthError, AuthError);
      const e = await rejection(new other.AuthSession({ host: "https://api.example.com" }).login());
      assert.equal(e.code, "CONFIG_ERROR");
      assert.ok(e instanceof AuthError && AuthError.is(e));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("plain errors and look-alikes are not AuthErrors", () => {
    const fake = { name: "AuthError", code: "TIMEOUT", message: "x", status: 0, retryable: true };
    for (const v of [new Error("x"), fake, null, undefined, 42, "AuthError", Object.create(AuthError.prototype)]) {
      assert.equal(AuthError.is(v), false);
      assert.equal(v instanceof AuthError, false);
    }
    class Mine extends AuthError {}
    const mine = new Mine("m", "N", "C", 0, false);
    assert.ok(mine instanceof Mine && mine instanceof AuthError);
    assert.equal(new AuthError("m", "N", "C", 0, false) instanceof Mine, false);
  });

  it("toJSON gives name, code, message, status and retryable", async () => {
    const e = await rejection(new AuthSession({ host: "https://api.example.com" }).refresh());
    assert.deepEqual(JSON.parse(JSON.stringify(e)), {
      name: "NotAuthenticatedError",
      code: "NOT_AUTHENTICATED",
      message: e.message,
      status: 0,
      retryable: false,
    });
  });
});
