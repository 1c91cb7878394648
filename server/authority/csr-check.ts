import type { Profile } from "../config/schema.ts";
import { CsrError, type ParsedCsr, parseCsr, verifyCsrSignature } from "../pki/csr.ts";
import type { DeclaredNames } from "../ports/storage.ts";
import type { AuthorityDeps } from "./deps.ts";
import { sha256Hex } from "./digest.ts";
import { badRequest, forbidden } from "./errors.ts";
import { spiffeId } from "./identity.ts";
import { checkKeyAllowed } from "./policy/keys.ts";
import { checkRequestedNames } from "./policy/names.ts";

export interface CheckedCsr extends ParsedCsr {
  /** SHA-256 of the SubjectPublicKeyInfo, lowercase hex. */
  keyFingerprint: string;
}

/**
 * Shape and validate a CSR for a device under a profile, in the fixed order: parse,
 * key policy (cheap, before any crypto), proof of possession, names, and a key that
 * no other device holds a certificate for.
 */
export async function checkCsr(
  deps: AuthorityDeps,
  der: Uint8Array,
  deviceId: string,
  profile: Profile,
  /**
   * False for /serverkeygen: the CSR's key only signs the request and is not certified,
   * so the key policy and the one-key-one-identity check do not apply to it.
   */
  certifiesKey = true,
  /** DNS names and IP addresses an operator declared for the device: the CSR may ask for them. */
  declared?: DeclaredNames | null,
): Promise<CheckedCsr> {
  let csr: ParsedCsr;
  try {
    csr = parseCsr(der);
  } catch (err) {
    throw badRequest("csr_malformed", "body is not a DER PKCS#10 certification request", err);
  }
  if (certifiesKey) checkKeyAllowed(profile, csr.key);
  let ok: boolean;
  try {
    ok = await verifyCsrSignature(csr, deps.verifier);
  } catch (err) {
    if (err instanceof CsrError) throw badRequest("csr_signature_algorithm", err.message, err);
    throw err;
  }
  if (!ok) throw badRequest("csr_signature_invalid", "CSR signature does not verify with its public key");
  checkRequestedNames(csr, deviceId, spiffeId(deps.config.trustDomain, deviceId), deps.config.limits, declared);
  const keyFingerprint = await sha256Hex(deps.digest, csr.spki);
  if (!certifiesKey) return { ...csr, keyFingerprint };
  // One key, one identity: a key already certified for another device is a cloned or
  // shared key (or a factory that flashed the same key twice).
  const holders = await deps.storage.listKeyHolders(keyFingerprint, 10);
  if (holders.some((holder) => holder !== deviceId)) {
    throw forbidden("key_in_use", "this public key is already certified for another device; generate a new key");
  }
  return { ...csr, keyFingerprint };
}
