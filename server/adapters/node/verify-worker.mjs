// Worker thread of WorkerVerifier (verify-pool.ts): checks batches of signatures with
// node:crypto, off the event loop. Plain JavaScript so that it needs no loader.
import { createPublicKey, verify } from "node:crypto";
import { parentPort } from "node:worker_threads";

const HASHES = { "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512" };

const CURVES = { 65: "P-256", 97: "P-384", 133: "P-521" };

/**
 * The key as a KeyObject. An uncompressed EC point goes in as a JWK: OpenSSL 3's
 * generic DER decoder costs half again as much as building the key from coordinates.
 */
function importKey(r) {
  if (r.kind === "EC" && r.point && r.point[0] === 4 && CURVES[r.point.length]) {
    const n = (r.point.length - 1) / 2;
    const point = Buffer.from(r.point.buffer, r.point.byteOffset, r.point.byteLength);
    return createPublicKey({
      key: {
        kty: "EC",
        crv: CURVES[r.point.length],
        x: point.subarray(1, 1 + n).toString("base64url"),
        y: point.subarray(1 + n).toString("base64url"),
      },
      format: "jwk",
    });
  }
  return createPublicKey({ key: Buffer.from(r.spki), format: "der", type: "spki" });
}

/** true / false, or "bad-key" when the SubjectPublicKeyInfo cannot be imported. */
function check(r) {
  let key;
  try {
    key = importKey(r);
  } catch {
    return "bad-key";
  }
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

parentPort.on("message", (batch) => {
  parentPort.postMessage(batch.map(check));
});
