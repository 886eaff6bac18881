// Encryption at rest for the token record: a storage wrapper that seals every value with
// AES-GCM before it reaches the user's storage (KV, Durable Object storage, a Map...) and
// opens it on the way back. The session passes it in place of `options.storage`.
//
// Only WebCrypto (`globalThis.crypto.subtle`), TextEncoder and TextDecoder: the same file runs
// in Node 20+, workerd, Deno, Bun and browsers, with no Buffer and no dependency.
//
// Stored format: "enc1." + base64url(iv (12 bytes) || ciphertext || tag (16 bytes)), no
// padding. The version prefix lets a later format sit next to this one, and tells our
// records from plaintext ones written before encryption was turned on.
//
// Nothing here puts a key, an IV, a ciphertext or a plaintext into an error message: these
// errors end up in logs and in the session's `error` events.

/**
 * What `get` returns for a record it cannot open: not ours (plaintext, another format),
 * truncated, tampered with, sealed under another key, or moved from another storage key or
 * account. The session reports it as STORAGE_ERROR and treats the record as absent.
 * Registered (`Symbol.for`) so every copy of the package agrees on it.
 */
export const UNREADABLE = Symbol.for("auth-session.unreadable");

const PREFIX = "enc1.";
const IV_BYTES = 12;
const TAG_BYTES = 16;
const encoder = new TextEncoder();
// fatal: a record that authenticates but is not UTF-8 was not written by us.
const decoder = new TextDecoder("utf-8", { fatal: true });

function subtle() {
  const s = globalThis.crypto?.subtle;
  // Browsers hide crypto.subtle outside secure contexts (plain http on a non-local host).
  if (!s) throw new TypeError("encryption needs WebCrypto (crypto.subtle), which this runtime does not provide");
  return s;
}

const tag = (value) => Object.prototype.toString.call(value);

function isCryptoKey(value) {
  // The tag also recognises a key from another realm (an iframe, a vm context).
  return (typeof CryptoKey === "function" && value instanceof CryptoKey) || tag(value) === "[object CryptoKey]";
}

/** What a rejected key was, for an error message: its kind and size, never its contents. */
function describeKind(value) {
  if (value === null) return "null";
  if (ArrayBuffer.isView(value) || tag(value) === "[object ArrayBuffer]") {
    return `${tag(value).slice(8, -1)} of ${value.byteLength} bytes`;
  }
  return typeof value === "object" ? tag(value).slice(8, -1) : typeof value;
}

/**
 * The AES-GCM key for {@link encryptedStorage}: a WebCrypto `CryptoKey` (AES-GCM, usages
 * encrypt and decrypt) as is, or raw key bytes (16 or 32) imported as a non-extractable key,
 * so the key cannot be read back out of the session.
 *
 * @param {CryptoKey | Uint8Array | ArrayBuffer} key
 * @returns {Promise<CryptoKey>}
 * @throws {TypeError} anything else; the message names what is wrong, never the key.
 */
export async function importKey(key) {
  if (isCryptoKey(key)) {
    const name = key.algorithm?.name;
    if (name !== "AES-GCM") {
      throw new TypeError(`encryption key: an AES-GCM CryptoKey is needed, this one is for ${typeof name === "string" ? name : "another algorithm"}`);
    }
    const usages = Array.isArray(key.usages) ? key.usages : [];
    const missing = ["encrypt", "decrypt"].filter((u) => !usages.includes(u));
    if (missing.length > 0) {
      throw new TypeError(`encryption key: the CryptoKey lacks the usage${missing.length > 1 ? "s" : ""} ${missing.join(" and ")}`);
    }
    return key;
  }
  // Uint8Array covers Node's Buffer; other views are refused rather than guessed at.
  const isBytes = tag(key) === "[object Uint8Array]" || tag(key) === "[object ArrayBuffer]";
  if (!isBytes) {
    throw new TypeError(`encryption key: a CryptoKey or 16 or 32 raw bytes (Uint8Array or ArrayBuffer) are needed, got ${describeKind(key)}`);
  }
  // 24-byte (AES-192) keys are refused: Chromium's WebCrypto does not support them.
  if (key.byteLength !== 16 && key.byteLength !== 32) {
    throw new TypeError(`encryption key: 16 or 32 bytes are needed, got ${key.byteLength}`);
  }
  return subtle().importKey("raw", key, { name: "AES-GCM" }, false, ["encrypt", "decrypt"]);
}

/**
 * Wraps `storage` so that what it stores is sealed with AES-GCM under the key
 * `cryptoKeyPromise` resolves to (see {@link importKey}).
 *
 * Each value is bound to where it is stored: the additional authenticated data is
 * `"auth-session\n" + key + "\n" + associatedData`, so a record copied to another storage
 * key, or read by a session of another account (another `associatedData`), does not open.
 *
 * - `put(key, value)`: seals `value` under a fresh random IV, then calls the inner `put`.
 * - `get(key)`: `null`/`undefined` as the inner storage gave them; the plaintext of a record
 *   that opens; {@link UNREADABLE} for any other value (never throws for a bad record).
 * - `delete(key)`: the inner `delete`.
 * - `putIfNewer(key, value, version)`: seals `value`, then the inner `putIfNewer`, when it
 *   has one (a compare-and-set store such as `redisStorage`).
 * - `acquire` / `release`: the inner storage's own, when it has them.
 *
 * The inner storage's errors propagate unchanged, as does a rejection of `cryptoKeyPromise`.
 *
 * @param {{ get: Function, put: Function, delete: Function, acquire?: Function, release?: Function }} storage
 * @param {Promise<CryptoKey> | CryptoKey} cryptoKeyPromise
 * @param {{ associatedData?: string }} [options] `associatedData`: default "", no newline
 */
export function encryptedStorage(storage, cryptoKeyPromise, { associatedData = "" } = {}) {
  if (storage === null || (typeof storage !== "object" && typeof storage !== "function")) {
    throw new TypeError("encryptedStorage: storage must be an object with get, put and delete methods");
  }
  for (const m of ["get", "put", "delete"]) {
    if (typeof storage[m] !== "function") throw new TypeError(`encryptedStorage: storage.${m} must be a function`);
  }
  if (typeof associatedData !== "string") throw new TypeError("encryptedStorage: associatedData must be a string");
  // With no newline in associatedData, the last newline of the AAD separates the storage key
  // from it, so no (key, associatedData) pair can pass for another.
  if (associatedData.includes("\n")) throw new TypeError("encryptedStorage: associatedData must not contain a newline");

  const keyPromise = Promise.resolve(cryptoKeyPromise);
  // A bad key is reported by each call that needs it, not as an unhandled rejection when the
  // session is built and nothing has been stored yet.
  keyPromise.catch(() => {});
  const aad = (key) => encoder.encode(`auth-session\n${key}\n${associatedData}`);

  /** `value` sealed for `key`: what the inner storage keeps. */
  const seal = async (key, value) => {
    if (typeof value !== "string") throw new TypeError("encryptedStorage: put needs a string value");
    const cryptoKey = await keyPromise;
    // A random 96-bit IV per write: with one key, collisions stay negligible far beyond the
    // writes a token record sees (NIST SP 800-38D allows 2^32 random IVs per key).
    const iv = globalThis.crypto.getRandomValues(new Uint8Array(IV_BYTES));
    const sealed = new Uint8Array(
      await subtle().encrypt({ name: "AES-GCM", iv, additionalData: aad(key) }, cryptoKey, encoder.encode(value)),
    );
    const record = new Uint8Array(IV_BYTES + sealed.length);
    record.set(iv);
    record.set(sealed, IV_BYTES);
    return PREFIX + toBase64url(record);
  };

  const wrapped = {
    async get(key) {
      const stored = await storage.get(key);
      if (stored === null || stored === undefined) return stored;
      const cryptoKey = await keyPromise;
      return open(cryptoKey, aad(key), stored);
    },
    async put(key, value) {
      await storage.put(key, await seal(key, value));
    },
    async delete(key) {
      return storage.delete(key);
    },
  };
  // Passed through bound, not wrapped: locking has nothing to encrypt.
  for (const m of ["acquire", "release"]) {
    if (typeof storage[m] === "function") wrapped[m] = storage[m].bind(storage);
  }
  // The conditional write seals its value; the version travels in the clear (it is no
  // secret, and the store compares it without reading the record).
  if (typeof storage.putIfNewer === "function") {
    wrapped.putIfNewer = async (key, value, version) => storage.putIfNewer(key, await seal(key, value), version);
  }
  return Object.freeze(wrapped);
}

/** The plaintext of a stored value, or UNREADABLE: any failure here means "not our record". */
async function open(cryptoKey, additionalData, stored) {
  if (typeof stored !== "string" || !stored.startsWith(PREFIX)) return UNREADABLE;
  const record = fromBase64url(stored.slice(PREFIX.length));
  if (record === undefined || record.length < IV_BYTES + TAG_BYTES) return UNREADABLE;
  try {
    const plain = await subtle().decrypt(
      { name: "AES-GCM", iv: record.subarray(0, IV_BYTES), additionalData },
      cryptoKey,
      record.subarray(IV_BYTES),
    );
    return decoder.decode(plain);
  } catch {
    // Authentication failed (tampered, another key, another AAD) or not UTF-8. The error
    // carries nothing useful and must not be shown: the marker says it all.
    return UNREADABLE;
  }
}

// ----- base64url (RFC 4648 §5, no padding) ------------------------------------------------
// Hand-written: btoa/atob work on "binary strings" and Buffer is Node-only.

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const VALUES = new Int8Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) VALUES[ALPHABET.charCodeAt(i)] = i;

function toBase64url(bytes) {
  let out = "";
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63] + ALPHABET[n & 63];
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i] << 16;
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63];
  } else if (rest === 2) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63];
  }
  return out;
}

/**
 * The bytes of canonical unpadded base64url `text`, or undefined. Strict (no padding, no
 * whitespace, unused trailing bits zero) so that one record has exactly one spelling.
 */
function fromBase64url(text) {
  const rest = text.length % 4;
  if (rest === 1) return undefined;
  const out = new Uint8Array(((text.length - rest) / 4) * 3 + (rest === 0 ? 0 : rest - 1));
  let o = 0;
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const v = c < 128 ? VALUES[c] : -1;
    if (v < 0) return undefined;
    n = (n << 6) | v;
    if (i % 4 === 3) {
      out[o++] = n >> 16;
      out[o++] = (n >> 8) & 255;
      out[o++] = n & 255;
      n = 0;
    }
  }
  if (rest === 2) {
    if (n & 15) return undefined;
    out[o++] = n >> 4;
  } else if (rest === 3) {
    if (n & 3) return undefined;
    out[o++] = n >> 10;
    out[o++] = (n >> 2) & 255;
  }
  return out;
}
