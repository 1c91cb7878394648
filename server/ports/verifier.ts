/**
 * Signature checks for the core. WebCrypto (pki/verify.ts webCryptoVerifier) runs
 * everywhere; the Node server puts a worker-thread verifier here so that key import
 * and verification leave the event loop.
 */

/** What a public key is, as far as the checks care (pki/keys.ts describeKey reads it from an SPKI). */
export type KeyDescription =
  | { kind: "EC"; curve: "P-256" | "P-384" | "P-521" | "P-192" | `unknown curve ${string}`; label: string }
  | { kind: "RSA"; bits: number; exponent: number; label: string }
  | { kind: "Ed25519"; label: "Ed25519" }
  | { kind: "unknown"; oid: string; label: string };

export interface VerifyRequest {
  spki: Uint8Array;
  key: KeyDescription;
  /** Absent for Ed25519. */
  hash?: "SHA-256" | "SHA-384" | "SHA-512";
  /** As carried in X.509/PKCS#10 (DER ECDSA-Sig-Value for ECDSA). */
  signature: Uint8Array;
  data: Uint8Array;
}

/**
 * Whatever checks signatures: WebCrypto everywhere (webCryptoVerifier), a faster
 * runtime-specific one where there is one. Resolves false for a signature that does not
 * verify; rejects with SignatureAlgorithmError for a key that cannot be imported.
 */
export interface SignatureVerifier {
  verify(req: VerifyRequest): Promise<boolean>;
}
