import type { Profile } from "../config/schema.ts";
import { CsrError, type ParsedCsr, parseCsr, verifyCsrSignature } from "../pki/csr.ts";
import type { AuthorityDeps } from "./deps.ts";
import { badRequest } from "./errors.ts";
import { spiffeId } from "./identity.ts";
import { checkKeyAllowed } from "./policy/keys.ts";
import { checkRequestedNames } from "./policy/names.ts";

/**
 * Shape and validate a CSR for a device under a profile, in the fixed order: parse,
 * key policy (cheap, before any crypto), proof of possession, names.
 */
export async function checkCsr(
  deps: AuthorityDeps,
  der: Uint8Array,
  deviceId: string,
  profile: Profile,
): Promise<ParsedCsr> {
  let csr: ParsedCsr;
  try {
    csr = parseCsr(der);
  } catch (err) {
    throw badRequest("csr_malformed", "body is not a DER PKCS#10 certification request", err);
  }
  checkKeyAllowed(profile, csr.key);
  let ok: boolean;
  try {
    ok = await verifyCsrSignature(csr, deps.crypto.subtle);
  } catch (err) {
    if (err instanceof CsrError) throw badRequest("csr_signature_algorithm", err.message, err);
    throw err;
  }
  if (!ok) throw badRequest("csr_signature_invalid", "CSR signature does not verify with its public key");
  checkRequestedNames(csr, deviceId, spiffeId(deps.config.trustDomain, deviceId), deps.config.limits);
  return csr;
}
