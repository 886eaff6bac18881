// private_key_jwt (RFC 7523): the signature of a client assertion, by the runtime's WebCrypto.
// The machine writes the assertion (header and claims, a fresh jti, a short life); this
// module only turns the key the user gave into a WebCrypto key once and signs what it is
// handed. The key never leaves the closure: no error, log line or inspect shows it.

// JWS algorithm -> [importKey parameters, sign parameters].
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

/** The JWS algorithm of a private JWK, or of a CryptoKey's WebCrypto algorithm. */
function algorithmOf(key, isKey) {
  if (isKey) {
    const a = key.algorithm ?? {};
    if (a.name === "RSASSA-PKCS1-v1_5" && a.hash?.name === "SHA-256") return "RS256";
    if (a.name === "RSA-PSS" && a.hash?.name === "SHA-256") return "PS256";
    if (a.name === "ECDSA") return a.namedCurve === "P-256" ? "ES256" : a.namedCurve === "P-384" ? "ES384" : undefined;
    if (a.name === "Ed25519") return "EdDSA";
    return undefined;
  }
  if (typeof key.alg === "string" && key.alg in ALGS) return key.alg;
  if (key.kty === "RSA") return "RS256";
  if (key.kty === "EC") return key.crv === "P-256" ? "ES256" : key.crv === "P-384" ? "ES384" : undefined;
  if (key.kty === "OKP" && key.crv === "Ed25519") return "EdDSA";
  return undefined;
}

function base64url(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * `oauth.privateKey` (a private JWK or a CryptoKey that can sign) and `oauth.keyId`:
 * `{ alg, kid, sign(input) }`, where `sign` resolves to the JWS signature in base64url.
 * Throws a TypeError naming what is wrong (never the key) for a key no runtime could use.
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
  const alg = algorithmOf(value, isKey);
  if (alg === undefined) {
    throw new TypeError(
      "oauth.privateKey must be an RSA (RS256, PS256), EC P-256/P-384 (ES256, ES384) or Ed25519 (EdDSA) private key",
    );
  }
  const kid = keyId ?? (!isKey && typeof value.kid === "string" ? value.kid : undefined);
  const [importParams, signParams] = ALGS[alg];
  let key;
  if (isKey) key = Promise.resolve(value);
  else {
    const jwk = {};
    for (const k of MATERIAL) if (value[k] !== undefined) jwk[k] = value[k];
    // Copied now: a later change to the caller's object changes nothing. Imported at the
    // first assertion (an import error is that request's failure, as for a bad key).
    let imported;
    key = {
      then(resolve, reject) {
        imported ??= Promise.resolve().then(() => crypto.subtle.importKey("jwk", jwk, importParams, false, ["sign"]));
        return imported.then(resolve, reject);
      },
    };
  }
  return {
    alg,
    kid,
    async sign(input) {
      const k = await key;
      const signature = await crypto.subtle.sign(signParams, k, encoder.encode(input));
      return base64url(new Uint8Array(signature));
    },
  };
}
