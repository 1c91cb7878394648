// Worker thread of WorkerVerifier (verify-pool.ts): checks batches of signatures with
// node:crypto, off the event loop. Plain JavaScript so that it needs no loader.
import { createPublicKey, KeyObject, verify, webcrypto } from "node:crypto";
import { parentPort } from "node:worker_threads";

const HASHES = { "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512" };

const CURVES = { 65: "P-256", 97: "P-384", 133: "P-521" };

/**
 * The key as a KeyObject. An uncompressed EC point goes in through WebCrypto's "raw"
 * import (the point is checked to be on the curve): a third of the cost of OpenSSL 3's
 * generic SPKI decoder, and less than building the key from JWK coordinates.
 */
async function importKey(r) {
  if (r.kind === "EC" && r.point && r.point[0] === 4 && CURVES[r.point.length]) {
    const key = await webcrypto.subtle.importKey(
      "raw",
      r.point,
      { name: "ECDSA", namedCurve: CURVES[r.point.length] },
      true,
      ["verify"],
    );
    return KeyObject.from(key);
  }
  return createPublicKey({ key: Buffer.from(r.spki), format: "der", type: "spki" });
}

/** true / false, or "bad-key" when the SubjectPublicKeyInfo cannot be imported. */
async function check(r) {
  let key;
  try {
    key = await importKey(r);
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

// Batches are answered in the order they came (the pool relies on it).
let chain = Promise.resolve();
parentPort.on("message", (batch) => {
  chain = chain.then(async () => {
    try {
      const results = [];
      for (const r of batch) results.push(await check(r));
      parentPort.postMessage(results);
    } catch (err) {
      // Answer the batch anyway: the pool fails these checks and the chain goes on.
      parentPort.postMessage({ error: String(err?.message ?? err) });
    }
  });
});
