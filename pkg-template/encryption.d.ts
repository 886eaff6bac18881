// Types of encryption.js: encryption at rest of the token record (AES-GCM, WebCrypto).

/**
 * What {@link EncryptedStorage.get} returns for a record it cannot open: not encrypted by
 * this module, truncated, tampered with, sealed under another key, or moved from another
 * storage key or account. `Symbol.for("auth-session.unreadable")`.
 */
export declare const UNREADABLE: unique symbol;

/** A key as {@link importKey} accepts it: an AES-GCM `CryptoKey` or 16 or 32 raw bytes. */
export type EncryptionKey = CryptoKey | Uint8Array | ArrayBuffer;

/**
 * The AES-GCM key for {@link encryptedStorage}: a `CryptoKey` (AES-GCM, usages encrypt and
 * decrypt) as is, or raw bytes (16 or 32) imported as a non-extractable key.
 * @throws {TypeError} (as a rejection) for anything else; the message never shows the key.
 */
export declare function importKey(key: EncryptionKey): Promise<CryptoKey>;

/** The storage `encryptedStorage` wraps; methods may be synchronous or return promises. */
export interface InnerStorage {
  get(key: string): Promise<unknown> | unknown;
  put(key: string, value: string): Promise<unknown> | unknown;
  delete(key: string): Promise<unknown> | unknown;
}

export interface EncryptedStorageOptions {
  /**
   * Bound into every record (e.g. the account's fingerprint), so a session with another
   * value cannot open it. Default `""`; must not contain a newline.
   */
  associatedData?: string;
}

/** The wrapper's own methods; all return promises. */
export interface EncryptedStorage {
  /** The plaintext; `null`/`undefined` as the inner storage returned them; {@link UNREADABLE} for a record that does not open. */
  get(key: string): Promise<string | null | undefined | typeof UNREADABLE>;
  /** Stores `"enc1." + base64url(iv || ciphertext || tag)` under a fresh random IV. */
  put(key: string, value: string): Promise<void>;
  delete(key: string): Promise<unknown>;
}

/**
 * Wraps `storage` so that every value is sealed with AES-GCM; the additional authenticated
 * data binds a record to its storage key and `associatedData`. `acquire` and `release` of the
 * inner storage, when present, are passed through (bound to it).
 * @throws {TypeError} when `storage` lacks get/put/delete or `associatedData` is not a string without newlines.
 */
export declare function encryptedStorage<S extends InnerStorage>(
  storage: S,
  cryptoKeyPromise: CryptoKey | PromiseLike<CryptoKey>,
  options?: EncryptedStorageOptions,
): EncryptedStorage & Pick<S, Extract<keyof S, "acquire" | "release">>;
