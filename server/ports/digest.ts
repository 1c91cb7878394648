/**
 * Message digests for the core: key identifiers, fingerprints, token hashes. WebCrypto
 * everywhere; on Node a synchronous node:crypto hash sits behind the same signature
 * (WebCrypto's digest is a thread-pool job there, costly on the hot path).
 */
export type DigestAlgorithm = "SHA-1" | "SHA-256";

export type Digest = (algorithm: DigestAlgorithm, data: Uint8Array) => Promise<Uint8Array>;
