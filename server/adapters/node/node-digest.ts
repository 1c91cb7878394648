import { createHash } from "node:crypto";
import type { Digest } from "../../ports/digest.ts";

const NAMES = { "SHA-1": "sha1", "SHA-256": "sha256" } as const;

/** node:crypto hashing: synchronous, no thread-pool hop. */
export const nodeDigest: Digest = async (algorithm, data) => {
  const out = createHash(NAMES[algorithm]).update(data).digest();
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
};
