import type { Profile } from "../config/schema.ts";
import { CsrError, type ParsedCsr, parseCsr, verifyCsrSignature } from "../pki/csr.ts";
import { nonCanonical, otherSpellings, SpkiError } from "../pki/spki.ts";
import type { DeclaredNames } from "../ports/storage.ts";
import type { AuthorityDeps } from "./deps.ts";
import { sha256Hex } from "./digest.ts";
import { badRequest, forbidden } from "./errors.ts";
import { spiffeId } from "./identity.ts";
import { checkKeyAllowed } from "./policy/keys.ts";
import { checkRequestedNames } from "./policy/names.ts";

export interface CheckedCsr extends ParsedCsr {
  /**
   * SHA-256 of the SubjectPublicKeyInfo, lowercase hex. For a certified key the SPKI is
   * canonical (server/pki/spki.ts), so one key has one fingerprint.
   */
  keyFingerprint: string;
  /**
   * keyFingerprint first, then the fingerprints of the key's other spellings
   * (spki.ts `otherSpellings`), which records made before keys had to be canonical may
   * hold: compare a stored keyFingerprint against all of them.
   */
  keyFingerprints: string[];
}

/**
 * Shape and validate a CSR for a device under a profile, in the fixed order: parse,
 * key policy and canonical key encoding (cheap, before any crypto), proof of
 * possession, names, and a key that no other device holds a certificate for.
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
  if (certifiesKey) {
    checkKeyAllowed(profile, csr.key);
    requireCanonicalKey(csr.spki);
  }
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
  if (!certifiesKey) return { ...csr, keyFingerprint, keyFingerprints: [keyFingerprint] };
  // One key, one identity: a key already certified for another device is a cloned or
  // shared key (or a factory that flashed the same key twice). Certificates issued
  // before keys had to be canonical may record the key under another spelling (a
  // compressed point), so those spellings are looked up too.
  const keyFingerprints = [
    keyFingerprint,
    ...((await deps.storage.hasKeysAsSent())
      ? await Promise.all(otherSpellings(csr.spki).map((spelling) => sha256Hex(deps.digest, spelling)))
      : []),
  ];
  const holders = await deps.storage.listKeyHolders(keyFingerprints, 10);
  if (holders.some((holder) => holder !== deviceId)) {
    throw forbidden("key_in_use", "this public key is already certified for another device; generate a new key");
  }
  return { ...csr, keyFingerprint, keyFingerprints };
}

/**
 * Refuses an SPKI that is not the canonical spelling of its key (RFC 5280 §4.1.2.7 in
 * DER, an uncompressed EC point on a named curve, rsaEncryption with NULL and a minimal
 * RSAPublicKey, Ed25519 without parameters): one key must have one fingerprint. The
 * refusal says what is non-canonical and how to send it instead; the client re-encodes
 * its own key rather than the CA certifying bytes it did not send.
 */
export function requireCanonicalKey(spki: Uint8Array): void {
  let problem: ReturnType<typeof nonCanonical>;
  try {
    problem = nonCanonical(spki);
  } catch (err) {
    if (err instanceof SpkiError) throw badRequest("csr_malformed", `the public key is malformed: ${err.message}`, err);
    throw err;
  }
  if (problem) throw badRequest("key_not_canonical", problem.message);
}
