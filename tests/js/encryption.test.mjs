// Encryption at rest (pkg-template/encryption.js): the storage wrapper on its own, imported
// from the template so these tests need no build. What the session does with it (options,
// STORAGE_ERROR events for UNREADABLE) is tested with the session.

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";

import { UNREADABLE, importKey, encryptedStorage } from "../../pkg-template/encryption.js";

// Every test is bounded: WebCrypto calls are fast, a hang is a bug.
const T = { timeout: 5000 };
const { subtle } = globalThis.crypto;

/** A token record shaped like the session's (two JWT-looking tokens). */
const TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZW1vIiwiZXhwIjoxODAwMDAwMDAwfQ.c2lnbmF0dXJlLW9mLXRoZS1hY2Nlc3MtdG9rZW4";
const REFRESH = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZW1vIiwidHlwIjoicmVmcmVzaCJ9.c2lnbmF0dXJlLW9mLXRoZS1yZWZyZXNo";
const RECORD = JSON.stringify({ v: 3, origin: "https://api.example.com", access_token: TOKEN, refresh_token: REFRESH });
const KEY = "auth-session:https://api.example.com:acct-1f2e3d";
const AD = "1f2e3d4c5b6a";

const bytes = (n, fill) => new Uint8Array(n).map((_, i) => (fill + i * 7) & 255);
const RAW32 = bytes(32, 1);
const RAW16 = bytes(16, 2);

/** Synchronous storage over a Map, returning null for a missing key. */
function syncStorage(map = new Map()) {
  return {
    map,
    get: (k) => (map.has(k) ? map.get(k) : null),
    put: (k, v) => void map.set(k, v),
    delete: (k) => map.delete(k),
  };
}

/** The same over promises settling on a later macrotask (as KV does), undefined when missing. */
function asyncStorage(map = new Map()) {
  return {
    map,
    get: async (k) => (await sleep(2), map.get(k)),
    put: async (k, v) => void (await sleep(2), map.set(k, v)),
    delete: async (k) => (await sleep(2), map.delete(k)),
  };
}

/** A bare Map's own methods (`set` standing in for `put`), bound to it. */
function mapWrapper(map = new Map()) {
  return { map, get: map.get.bind(map), put: map.set.bind(map), delete: map.delete.bind(map) };
}

const seal = (inner, key = RAW32, associatedData = AD) => encryptedStorage(inner, importKey(key), { associatedData });

/** The stored record's bytes (iv || ciphertext || tag), and back. */
const recordBytes = (stored) => {
  assert.ok(stored.startsWith("enc1."), "stored with the enc1. prefix");
  return new Uint8Array(Buffer.from(stored.slice(5), "base64url"));
};
const recordString = (b) => "enc1." + Buffer.from(b).toString("base64url");

/** Every spelling of key material an error message must not contain. */
function spellings(material) {
  if (typeof material === "string") return [material];
  const b = Buffer.from(material);
  return [b.toString("hex"), b.toString("base64"), b.toString("base64url"), [...b].join(","), [...b].join(", ")];
}

async function rejectsTypeError(promise, material) {
  let err;
  try {
    await promise;
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof TypeError, `expected a TypeError, got ${err}`);
  assert.ok(err.message.length > 0);
  if (material !== undefined) {
    // Spellings under 4 characters (a 0- or 1-byte key) could match anything by chance.
    for (const s of spellings(material).filter((x) => x.length >= 4)) {
      assert.ok(!err.message.includes(s), `the message shows key material: ${err.message}`);
      assert.ok(!String(err.stack).includes(s), "the stack shows key material");
    }
  }
  return err;
}

describe("encryptedStorage: round trip", () => {
  for (const [name, make] of [
    ["synchronous storage", syncStorage],
    ["asynchronous storage", asyncStorage],
    ["a Map's own methods", mapWrapper],
  ]) {
    it(`${name}: put, get, delete`, T, async () => {
      const inner = make();
      const storage = seal(inner);
      assert.equal(await storage.put(KEY, RECORD), undefined);
      assert.equal(inner.map.size, 1);
      assert.equal(await storage.get(KEY), RECORD);
      await storage.delete(KEY);
      assert.equal(inner.map.size, 0);
      // A missing record is whatever the inner storage says it is: null or undefined.
      assert.equal(await storage.get(KEY), inner.get(KEY) instanceof Promise ? undefined : inner.get(KEY));
    });
  }

  it("a missing record passes through as null or undefined", T, async () => {
    assert.equal(await seal(syncStorage()).get(KEY), null);
    assert.equal(await seal(asyncStorage()).get(KEY), undefined);
  });

  it("get, put and delete always return promises, even over a synchronous storage", T, async () => {
    const storage = seal(syncStorage());
    for (const p of [storage.put(KEY, RECORD), storage.get(KEY), storage.delete(KEY)]) assert.ok(p instanceof Promise);
  });

  it("non-ASCII and empty values survive", T, async () => {
    const storage = seal(syncStorage());
    for (const value of ["", "ü€😀 \u0000 \u202e", "x".repeat(100_000)]) {
      await storage.put(KEY, value);
      assert.equal(await storage.get(KEY), value);
    }
  });

  it("empty associatedData is allowed, and is the default", T, async () => {
    const inner = syncStorage();
    await encryptedStorage(inner, importKey(RAW32), { associatedData: "" }).put(KEY, RECORD);
    assert.equal(await encryptedStorage(inner, importKey(RAW32)).get(KEY), RECORD);
  });

  it("a record written by one wrapper is read by another over the same key and AAD (another isolate)", T, async () => {
    const inner = asyncStorage();
    await seal(inner).put(KEY, RECORD);
    assert.equal(await seal(inner).get(KEY), RECORD);
  });

  it("the key may be given as a CryptoKey instead of a promise", T, async () => {
    const inner = syncStorage();
    const storage = encryptedStorage(inner, await importKey(RAW32), { associatedData: AD });
    await storage.put(KEY, RECORD);
    assert.equal(await storage.get(KEY), RECORD);
  });
});

describe("encryptedStorage: what is stored", () => {
  it("no part of the plaintext is stored, in the string or in its decoded bytes", T, async () => {
    const inner = syncStorage();
    await seal(inner).put(KEY, RECORD);
    const stored = inner.map.get(KEY);
    assert.equal(typeof stored, "string");
    const decoded = Buffer.from(recordBytes(stored)).toString("latin1");
    // Any 6 consecutive characters of the tokens (JWTs are base64url themselves, so they
    // would show in the stored string as is); random data matches one by chance with
    // probability ~1e-8 here.
    for (const secret of [TOKEN, REFRESH, '"access_token"']) {
      for (let i = 0; i + 6 <= secret.length; i++) {
        const piece = secret.slice(i, i + 6);
        assert.ok(!stored.includes(piece), `stored string contains plaintext at ${i}`);
        assert.ok(!decoded.includes(piece), `stored bytes contain plaintext at ${i}`);
      }
    }
  });

  it("format: enc1. + base64url(iv[12] || AES-GCM(ciphertext+tag)), AAD auth-session\\n<key>\\n<associatedData>", T, async () => {
    const inner = syncStorage();
    await seal(inner).put(KEY, RECORD);
    const stored = inner.map.get(KEY);
    assert.match(stored, /^enc1\.[A-Za-z0-9_-]+$/, "unpadded base64url");
    const b = recordBytes(stored);
    assert.equal(b.length, 12 + new TextEncoder().encode(RECORD).length + 16);
    // Opened here with plain WebCrypto and the documented AAD: the format is what we promise.
    const key = await subtle.importKey("raw", RAW32, "AES-GCM", false, ["decrypt"]);
    const plain = await subtle.decrypt(
      { name: "AES-GCM", iv: b.subarray(0, 12), additionalData: new TextEncoder().encode(`auth-session\n${KEY}\n${AD}`) },
      key,
      b.subarray(12),
    );
    assert.equal(new TextDecoder().decode(plain), RECORD);
  });

  it("every write uses a fresh IV: the same value twice is stored differently", T, async () => {
    const inner = syncStorage();
    const storage = seal(inner);
    const records = new Set();
    const ivs = new Set();
    for (let i = 0; i < 50; i++) {
      await storage.put(KEY, RECORD);
      const stored = inner.map.get(KEY);
      records.add(stored);
      ivs.add(Buffer.from(recordBytes(stored).subarray(0, 12)).toString("hex"));
    }
    assert.equal(records.size, 50);
    assert.equal(ivs.size, 50);
  });
});

describe("encryptedStorage: records that do not open are UNREADABLE (never thrown, never garbage)", () => {
  it("UNREADABLE is the registered symbol auth-session.unreadable", T, () => {
    assert.equal(typeof UNREADABLE, "symbol");
    assert.equal(UNREADABLE, Symbol.for("auth-session.unreadable"));
  });

  it("another key: raw bytes, another length, a generated CryptoKey", T, async () => {
    const inner = syncStorage();
    await seal(inner, RAW32).put(KEY, RECORD);
    assert.equal(await seal(inner, bytes(32, 99)).get(KEY), UNREADABLE);
    assert.equal(await seal(inner, RAW16).get(KEY), UNREADABLE);
    const generated = await subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
    assert.equal(await seal(inner, generated).get(KEY), UNREADABLE);
    assert.equal(await seal(inner, RAW32).get(KEY), RECORD, "the right key still opens it");
  });

  it("one flipped bit anywhere (IV, ciphertext, tag) makes the record unreadable", T, async () => {
    const inner = syncStorage();
    const storage = seal(inner);
    await storage.put(KEY, RECORD);
    const original = recordBytes(inner.map.get(KEY));
    const n = original.length;
    const positions = [0, 5, 11, 12, 13, Math.floor(n / 2), n - 17, n - 16, n - 8, n - 1];
    for (const pos of positions) {
      for (const bit of [0, 7]) {
        const b = original.slice();
        b[pos] ^= 1 << bit;
        inner.map.set(KEY, recordString(b));
        assert.equal(await storage.get(KEY), UNREADABLE, `bit ${bit} of byte ${pos} of ${n}`);
      }
    }
    inner.map.set(KEY, recordString(original));
    assert.equal(await storage.get(KEY), RECORD, "the untouched record still opens");
  });

  it("an edited base64url string: another character, padding, whitespace, a non-canonical last character", T, async () => {
    const inner = syncStorage();
    const storage = seal(inner);
    await storage.put(KEY, RECORD);
    const stored = inner.map.get(KEY);
    const swap = (s, i) => s.slice(0, i) + (s[i] === "A" ? "B" : "A") + s.slice(i + 1);
    const edits = [
      swap(stored, 5),
      swap(stored, 20),
      swap(stored, stored.length - 1),
      stored + "=",
      stored + "==",
      stored.slice(0, 30) + " " + stored.slice(30),
      stored.slice(0, 30) + "+" + stored.slice(31),
      stored.slice(0, 30) + "/" + stored.slice(31),
      stored.slice(0, 30) + "é" + stored.slice(31),
      stored + "A", // one character more: not a whole byte
    ];
    // Unused low bits of the last character set: decodes to the same bytes, yet refused, so
    // that a record has one spelling.
    const rest = (stored.length - 5) % 4;
    if (rest !== 0) {
      const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
      const last = alphabet.indexOf(stored.at(-1));
      edits.push(stored.slice(0, -1) + alphabet[last | 1]);
    }
    for (const edited of edits) {
      if (edited === stored) continue;
      inner.map.set(KEY, edited);
      assert.equal(await storage.get(KEY), UNREADABLE, `edited record of length ${edited.length}`);
    }
  });

  it("truncated records: inside the prefix, inside the IV, at the tag, one byte short", T, async () => {
    const inner = syncStorage();
    const storage = seal(inner);
    await storage.put(KEY, RECORD);
    const stored = inner.map.get(KEY);
    const b = recordBytes(stored);
    const byteCuts = [0, 1, 6, 11, 12, 13, 27, 28, b.length - 16, b.length - 15, b.length - 1];
    for (const cut of byteCuts) {
      inner.map.set(KEY, recordString(b.subarray(0, cut)));
      assert.equal(await storage.get(KEY), UNREADABLE, `cut to ${cut} of ${b.length} bytes`);
    }
    const charCuts = [0, 1, 4, 5, 6, 7, 10, 21, 40, stored.length - 2, stored.length - 1];
    for (const cut of charCuts) {
      inner.map.set(KEY, stored.slice(0, cut));
      assert.equal(await storage.get(KEY), UNREADABLE, `cut to ${cut} of ${stored.length} characters`);
    }
  });

  it("a record moved to another storage key", T, async () => {
    const inner = syncStorage();
    const storage = seal(inner);
    await storage.put(KEY, RECORD);
    for (const other of [KEY + "x", "auth-session:https://api.example.com:acct-999999", "", KEY.toUpperCase()]) {
      inner.map.set(other, inner.map.get(KEY));
      assert.equal(await storage.get(other), UNREADABLE, `moved to ${JSON.stringify(other)}`);
    }
  });

  it("another associatedData (another account), including empty vs not", T, async () => {
    const inner = syncStorage();
    await seal(inner, RAW32, AD).put(KEY, RECORD);
    for (const other of ["", "0000", AD + " ", AD.slice(1)]) {
      assert.equal(await seal(inner, RAW32, other).get(KEY), UNREADABLE, `associatedData ${JSON.stringify(other)}`);
    }
    await seal(inner, RAW32, "").put(KEY, RECORD);
    assert.equal(await seal(inner, RAW32, "x").get(KEY), UNREADABLE);
  });

  it("key and associatedData cannot trade a newline: the AAD encoding is unambiguous", T, async () => {
    // "a\nb" + "c" and "a" + "b\nc" would give the same AAD; a newline in associatedData is refused.
    assert.throws(() => encryptedStorage(syncStorage(), importKey(RAW32), { associatedData: "b\nc" }), TypeError);
    const inner = syncStorage();
    const storage = seal(inner, RAW32, "c");
    await storage.put("a\nb", RECORD);
    assert.equal(await storage.get("a\nb"), RECORD, "a newline in the storage key itself is fine");
  });

  it("a plaintext record, or anything that is not ours", T, async () => {
    const inner = syncStorage();
    const storage = seal(inner);
    const values = [
      RECORD, // written before encryption was turned on
      "",
      "enc1",
      "enc1.",
      "ENC1." + "A".repeat(60),
      "enc2." + "A".repeat(60),
      " enc1." + "A".repeat(60),
      "enc1." + "A".repeat(60), // well-formed, all zero bytes: authentication fails
      42,
      true,
      { access_token: TOKEN },
      new Uint8Array(64),
      Symbol("x"),
    ];
    for (const v of values) {
      inner.map.set(KEY, v);
      const got = await storage.get(KEY);
      assert.equal(got, UNREADABLE, `value of type ${typeof v}`);
    }
  });
});

describe("importKey", () => {
  it("raw 16- and 32-byte keys (Uint8Array, ArrayBuffer, Buffer, a view into a larger buffer) and a CryptoKey work", T, async () => {
    const backing = new Uint8Array(64).fill(5);
    const keys = [
      RAW16,
      RAW32,
      RAW32.buffer.slice(0),
      Buffer.from(RAW16),
      backing.subarray(16, 48),
      await subtle.generateKey({ name: "AES-GCM", length: 128 }, false, ["encrypt", "decrypt"]),
      await subtle.generateKey({ name: "AES-GCM", length: 256 }, true, ["encrypt", "decrypt", "wrapKey"]),
    ];
    for (const [i, key] of keys.entries()) {
      const inner = syncStorage();
      const storage = seal(inner, key);
      await storage.put(KEY, RECORD);
      assert.equal(await storage.get(KEY), RECORD, `key ${i}`);
    }
  });

  it("raw bytes become a non-extractable AES-GCM key; a CryptoKey is returned as is", T, async () => {
    const key = await importKey(RAW32);
    assert.equal(key.algorithm.name, "AES-GCM");
    assert.equal(key.algorithm.length, 256);
    assert.equal(key.extractable, false);
    assert.deepEqual([...key.usages].sort(), ["decrypt", "encrypt"]);
    await assert.rejects(subtle.exportKey("raw", key));
    assert.equal((await importKey(RAW16)).algorithm.length, 128);
    const given = await subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
    assert.equal(await importKey(given), given);
  });

  it("a record sealed with raw bytes opens with a CryptoKey imported from the same bytes", T, async () => {
    const inner = syncStorage();
    await seal(inner, RAW32).put(KEY, RECORD);
    const same = await subtle.importKey("raw", RAW32, "AES-GCM", false, ["encrypt", "decrypt"]);
    assert.equal(await seal(inner, same).get(KEY), RECORD);
  });

  it("wrong lengths are a TypeError that gives the length, never the bytes", T, async () => {
    for (const n of [0, 1, 15, 17, 24, 31, 33, 64]) {
      const raw = bytes(n, 200);
      const err = await rejectsTypeError(importKey(raw), raw);
      assert.match(err.message, new RegExp(`\\b${n}\\b`));
      await rejectsTypeError(importKey(raw.buffer), raw);
    }
  });

  it("a string, numbers, null, other views and objects are a TypeError that never shows the value", T, async () => {
    const secret = "0123456789abcdef0123456789abcdef"; // 32 characters: the classic mistake
    const err = await rejectsTypeError(importKey(secret), secret);
    assert.match(err.message, /string/);
    await rejectsTypeError(importKey(btoa(secret)), btoa(secret));
    for (const v of [undefined, null, 42, 42n, true, {}, [...RAW32], new Uint16Array(16), new DataView(new ArrayBuffer(32)), new Int8Array(32)]) {
      await rejectsTypeError(importKey(v), Array.isArray(v) ? RAW32 : undefined);
    }
    await rejectsTypeError(importKey({ raw: RAW32, algorithm: { name: "AES-GCM" }, usages: ["encrypt", "decrypt"] }), RAW32);
  });

  it("a CryptoKey for HMAC, AES-CBC or AES-KW is a TypeError naming the algorithm, never the key", T, async () => {
    const hmac = await subtle.generateKey({ name: "HMAC", hash: "SHA-256", length: 256 }, true, ["sign", "verify"]);
    const hmacRaw = new Uint8Array(await subtle.exportKey("raw", hmac));
    assert.match((await rejectsTypeError(importKey(hmac), hmacRaw)).message, /HMAC/);
    const cbc = await subtle.generateKey({ name: "AES-CBC", length: 256 }, true, ["encrypt", "decrypt"]);
    const cbcRaw = new Uint8Array(await subtle.exportKey("raw", cbc));
    assert.match((await rejectsTypeError(importKey(cbc), cbcRaw)).message, /AES-CBC/);
    const kw = await subtle.generateKey({ name: "AES-KW", length: 256 }, false, ["wrapKey", "unwrapKey"]);
    assert.match((await rejectsTypeError(importKey(kw))).message, /AES-KW/);
  });

  it("an AES-GCM CryptoKey without the decrypt (or encrypt) usage is a TypeError naming the usage", T, async () => {
    const encryptOnly = await subtle.importKey("raw", RAW32, "AES-GCM", false, ["encrypt"]);
    assert.match((await rejectsTypeError(importKey(encryptOnly), RAW32)).message, /decrypt/);
    const decryptOnly = await subtle.importKey("raw", RAW32, "AES-GCM", false, ["decrypt"]);
    const err = await rejectsTypeError(importKey(decryptOnly), RAW32);
    assert.match(err.message, /encrypt/);
    assert.doesNotMatch(err.message, /decrypt/);
    const neither = await subtle.importKey("raw", RAW32, "AES-GCM", true, ["wrapKey"]);
    assert.match((await rejectsTypeError(importKey(neither), RAW32)).message, /encrypt and decrypt/);
  });

  it("importKey never throws synchronously: bad keys reject", T, async () => {
    const p = importKey("nope");
    assert.ok(p instanceof Promise);
    await assert.rejects(p, TypeError);
  });
});

describe("encryptedStorage: the inner storage and the key", () => {
  it("acquire and release are passed through, bound to the inner storage, with their results", T, async () => {
    const calls = [];
    const lock = { token: "lock-1" };
    const inner = {
      ...syncStorage(),
      acquire(...args) {
        calls.push(["acquire", this, args]);
        return Promise.resolve(lock);
      },
      release(...args) {
        calls.push(["release", this, args]);
        return "released";
      },
    };
    const storage = seal(inner);
    const { acquire, release } = storage; // detached: still bound to the inner storage
    assert.equal(await acquire("k", { ttlMs: 100 }), lock);
    assert.equal(release("k", lock), "released");
    assert.deepEqual(calls, [
      ["acquire", inner, ["k", { ttlMs: 100 }]],
      ["release", inner, ["k", lock]],
    ]);
  });

  it("without acquire/release on the inner storage, the wrapper has none", T, () => {
    const storage = seal(syncStorage());
    assert.equal("acquire" in storage, false);
    assert.equal("release" in storage, false);
    assert.deepEqual(Object.keys(storage).sort(), ["delete", "get", "put"]);
    assert.ok(Object.isFrozen(storage));
  });

  it("errors of the inner storage propagate unchanged (thrown synchronously or rejected)", T, async () => {
    for (const mode of ["throw", "reject"]) {
      const errors = { get: new Error("get failed"), put: new RangeError("put failed"), delete: Object.assign(new Error("x"), { code: "EIO" }) };
      const fail = (op) => (mode === "throw" ? () => { throw errors[op]; } : () => Promise.reject(errors[op]));
      const storage = seal({ get: fail("get"), put: fail("put"), delete: fail("delete") });
      for (const [op, call] of [["get", () => storage.get(KEY)], ["put", () => storage.put(KEY, RECORD)], ["delete", () => storage.delete(KEY)]]) {
        let caught;
        try {
          const p = call();
          assert.ok(p instanceof Promise, `${op} returns a promise even when the inner ${op} throws`);
          await p;
        } catch (e) {
          caught = e;
        }
        assert.equal(caught, errors[op], `${mode}: ${op}'s own error object`);
      }
    }
  });

  it("a non-error thrown value propagates as is too", T, async () => {
    const storage = seal({ get: () => { throw "plain string"; }, put() {}, delete() {} });
    await assert.rejects(storage.get(KEY), (e) => e === "plain string");
  });

  it("a bad key rejects each call that needs it (not get of a missing record) and is never an unhandled rejection", T, async () => {
    const unhandled = [];
    const onUnhandled = (reason) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const inner = syncStorage();
      const storage = encryptedStorage(inner, importKey("not a key"), { associatedData: AD });
      await sleep(20); // let an unhandled rejection surface, if there were one
      assert.deepEqual(unhandled, []);
      await assert.rejects(storage.put(KEY, RECORD), TypeError);
      assert.equal(inner.map.size, 0, "nothing stored without a key");
      assert.equal(await storage.get(KEY), null);
      inner.map.set(KEY, "enc1.AAAA");
      await assert.rejects(storage.get(KEY), TypeError);
      await storage.delete(KEY);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });

  it("put of a non-string value is a TypeError that does not show the value; nothing is stored", T, async () => {
    const inner = syncStorage();
    const storage = seal(inner);
    for (const v of [{ access_token: TOKEN }, 42, undefined, null]) {
      const err = await rejectsTypeError(storage.put(KEY, v));
      assert.ok(!err.message.includes(TOKEN));
    }
    assert.equal(inner.map.size, 0);
  });

  it("a storage without get/put/delete, or associatedData that is not a string, is a TypeError", T, () => {
    const key = importKey(RAW32);
    for (const s of [null, undefined, 42, "kv", {}, { get() {}, put() {} }, { get() {}, put: 1, delete() {} }]) {
      assert.throws(() => encryptedStorage(s, key, { associatedData: AD }), TypeError);
    }
    for (const ad of [null, 42, {}, ["a"]]) {
      assert.throws(() => encryptedStorage(syncStorage(), key, { associatedData: ad }), TypeError);
    }
  });

  it("concurrent writes and reads each see a whole record", T, async () => {
    const inner = asyncStorage();
    const storage = seal(inner);
    const values = Array.from({ length: 20 }, (_, i) => JSON.stringify({ v: i, access_token: TOKEN }));
    await Promise.all(values.map((v, i) => storage.put(`${KEY}:${i}`, v)));
    const read = await Promise.all(values.map((_, i) => storage.get(`${KEY}:${i}`)));
    assert.deepEqual(read, values);
  });
});
