/** One signature to check, as verify-pool.ts sends it (plain data: it crosses to the worker). */
export interface SignatureCheck {
  kind: "EC" | "RSA" | "Ed25519" | "unknown";
  /** EC: the subjectPublicKey bits (0x04 ‖ X ‖ Y when uncompressed). */
  point: Uint8Array | undefined;
  hash: "SHA-256" | "SHA-384" | "SHA-512" | undefined;
  spki: Uint8Array;
  signature: Uint8Array;
  data: Uint8Array;
}

export type CheckResult = boolean | "bad-key";

export function checkSignature(r: SignatureCheck, rawImport?: boolean): CheckResult | Promise<CheckResult>;
