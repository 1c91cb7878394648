import type { Digest } from "../ports/digest.ts";

/** The Digest port over WebCrypto: every runtime has it (Node puts a faster one behind the same port). */
export function webCryptoDigest(subtle: SubtleCrypto): Digest {
  return async (algorithm, data) => new Uint8Array(await subtle.digest(algorithm, data as BufferSource));
}
