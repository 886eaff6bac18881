// private_key_jwt (RFC 7523): the signature of a client assertion, by the runtime's WebCrypto.
// The machine picks the algorithm from what this module reads of the key (`describe`) and
// writes the assertion (header and claims, a fresh jti, a short life); this module only
// turns the key the user gave into a WebCrypto key once and signs what it is handed with
// the algorithm it is told. The key never leaves the closure: no error, log line or inspect
// shows it.

// JWS algorithm -> [importKey parameters, sign parameters]: WebCrypto's names for the
// algorithms the machine may pick.
const ALGS = {
  RS256: [{ name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" }, { name: "RSASSA-PKCS1-v1_5" }],
  PS256: [{ name: "RSA-PSS", hash: "SHA-256" }, { name: "RSA-PSS", saltLength: 32 }],
  ES256: [{ name: "ECDSA", namedCurve: "P-256" }, { name: "ECDSA", hash: "SHA-256" }],
  ES384: [{ name: "ECDSA", namedCurve: "P-384" }, { name: "ECDSA", hash: "SHA-384" }],
  EdDSA: [{ name: "Ed25519" }, { name: "Ed25519" }],
};
// The members of a private JWK that carry key material (`alg`, `use`, `key_ops` are left
// out: WebCrypto refuses a JWK whose `key_ops` lack "sign").
const MATERIAL = ["kty", "crv", "n", "e", "d", "p", "q", "dp", "dq", "qi", "x", "y"];
const encoder = new TextEncoder();

const tag = (value) => Object.prototype.toString.call(value);
const text = (v) => (typeof v === "string" ? v : undefined);

/** What the machine chooses the algorithm from: a private JWK's `kty`, `crv` and `alg`, or a
 *  CryptoKey's algorithm `name`, `namedCurve` and `hash`. */
function describe(key, isKey) {
  if (isKey) {
    const a = key.algorithm ?? {};
    return { keyType: text(a.name) ?? "", keyCurve: text(a.namedCurve), keyHash: text(a.hash?.name) };
  }
  return { keyType: text(key.kty) ?? "", keyCurve: text(key.crv), keyAlg: text(key.alg) };
}

function base64url(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * `oauth.privateKey` (a private JWK or a CryptoKey that can sign) and `oauth.keyId`:
 * `{ describe, kid, sign(input, alg) }`, where `sign` resolves to the JWS signature in
 * base64url. Throws a TypeError naming what is wrong (never the key) for a value that is
 * not a private key at all; which keys the package signs with is the machine's rule.
 */
export function readPrivateKey(value, keyId) {
  const isKey = value !== null && typeof value === "object" && tag(value) === "[object CryptoKey]";
  if (!isKey && (value === null || typeof value !== "object" || Array.isArray(value))) {
    throw new TypeError("oauth.privateKey must be a private JWK object or a CryptoKey");
  }
  if (isKey && (value.type !== "private" || !value.usages?.includes("sign"))) {
    throw new TypeError('oauth.privateKey must be a private CryptoKey with the usage "sign"');
  }
  if (!isKey && typeof value.d !== "string") {
    throw new TypeError("oauth.privateKey must be a private JWK (it has no \"d\")");
  }
  const kid = keyId ?? (!isKey && typeof value.kid === "string" ? value.kid : undefined);
  let key;
  if (isKey) key = () => Promise.resolve(value);
  else {
    const jwk = {};
    for (const k of MATERIAL) if (value[k] !== undefined) jwk[k] = value[k];
    // Copied now: a later change to the caller's object changes nothing. Imported at the
    // first assertion, with the algorithm the machine picked (an import error is that
    // request's failure, as for a bad key).
    let imported;
    key = (alg) => (imported ??= Promise.resolve().then(() => crypto.subtle.importKey("jwk", jwk, ALGS[alg][0], false, ["sign"])));
  }
  return {
    describe: describe(value, isKey),
    kid,
    async sign(input, alg) {
      if (!Object.hasOwn(ALGS, alg)) throw new TypeError("no WebCrypto algorithm for this assertion");
      const k = await key(alg);
      const signature = await crypto.subtle.sign(ALGS[alg][1], k, encoder.encode(input));
      return base64url(new Uint8Array(signature));
    },
  };
}
