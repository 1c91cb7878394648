// One signature check with node:crypto, for the verify worker (verify-worker.mjs; the
// tests call it directly to try both EC key imports). Plain JavaScript so that the
// worker needs no loader.
import { createPublicKey, KeyObject, verify, webcrypto } from "node:crypto";

const HASHES = { "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512" };

const CURVES = { 65: "P-256", 97: "P-384", 133: "P-521" };

const [major, minor] = process.versions.openssl.split(".").map(Number);

/**
 * How an uncompressed EC point is imported. OpenSSL 3.0's generic SPKI decoder is slow,
 * and WebCrypto's "raw" import skips it (Node 20, OpenSSL 3.0.19: 190 against 250 µs
 * a P-256 import and check). OpenSSL 3.5's decoder is fast, and there the DER import is
 * the cheaper one (Node 22.23, 24 and 26, OpenSSL 3.5.9: 108–118 against 137–153 µs).
 */
const EC_RAW_IMPORT = major < 3 || (major === 3 && minor < 5);

/**
 * The key as a KeyObject, or a promise of it (the WebCrypto import; its work is done
 * before it resolves, on the calling thread).
 */
function importKey(r, rawImport) {
  if (rawImport && r.kind === "EC" && r.point && r.point[0] === 4 && CURVES[r.point.length]) {
    return webcrypto.subtle
      .importKey("raw", r.point, { name: "ECDSA", namedCurve: CURVES[r.point.length] }, true, ["verify"])
      .then((key) => KeyObject.from(key));
  }
  return createPublicKey({ key: Buffer.from(r.spki), format: "der", type: "spki" });
}

function checkWith(r, key) {
  try {
    if (r.kind === "Ed25519") return verify(null, r.data, key, r.signature);
    const hash = HASHES[r.hash];
    if (!hash) return false;
    return verify(hash, r.data, r.kind === "EC" ? { key, dsaEncoding: "der" } : key, r.signature);
  } catch {
    // A malformed signature is a signature that does not verify.
    return false;
  }
}

/**
 * true / false, or "bad-key" when the SubjectPublicKeyInfo cannot be imported; a
 * promise of it when the key goes in through WebCrypto.
 * r: { kind, point (EC: the subjectPublicKey bits), hash, spki, signature, data };
 * rawImport: how an uncompressed EC point goes in (the tests try both on every line).
 */
export function checkSignature(r, rawImport = EC_RAW_IMPORT) {
  let key;
  try {
    key = importKey(r, rawImport);
  } catch {
    return "bad-key";
  }
  if (key instanceof KeyObject) return checkWith(r, key);
  return key.then(
    (k) => checkWith(r, k),
    () => "bad-key",
  );
}
