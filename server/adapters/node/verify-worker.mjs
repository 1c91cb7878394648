// Worker thread of WorkerVerifier (verify-pool.ts): checks batches of signatures with
// node:crypto, off the event loop. Plain JavaScript so that it needs no loader.
import { createPublicKey, verify } from "node:crypto";
import { parentPort } from "node:worker_threads";

const HASHES = { "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512" };

/** true / false, or "bad-key" when the SubjectPublicKeyInfo cannot be imported. */
function check(r) {
  let key;
  try {
    key = createPublicKey({ key: Buffer.from(r.spki), format: "der", type: "spki" });
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
