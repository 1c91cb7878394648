import type { Profile } from "../config/schema.ts";
import {
  authorityKeyIdentifier,
  basicConstraints,
  buildCertificate,
  crlDistributionPoint,
  encodeName,
  extendedKeyUsage,
  type KeyUsageName,
  keyIdentifier,
  keyUsage,
  ocspAccess,
  subjectAltName,
  subjectKeyIdentifier,
} from "../pki/certificate.ts";
import { toHex } from "../pki/der.ts";
import type { KeyDescription } from "../pki/keys.ts";
import { id_at_commonName, id_kp_clientAuth, id_kp_serverAuth } from "../pki/oids.ts";
import type { CertificateRecord, IssuanceMethod } from "../ports/storage.ts";
import type { AuthorityDeps } from "./deps.ts";
import { sha256Hex } from "./digest.ts";
import { spiffeId } from "./identity.ts";

export interface IssueInput {
  deviceId: string;
  profile: Profile;
  spki: Uint8Array;
  key: KeyDescription;
  keyFingerprint: string;
  method: IssuanceMethod;
  replacesSerial?: string | null;
  bootstrapTokenId?: string | null;
}

/**
 * 128 random bits as a positive INTEGER magnitude (RFC 5280 §4.1.2.2 allows up to
 * 20 octets; CA/B BR ask for ≥ 64 bits of CSPRNG output).
 */
export function randomSerial(crypto: Crypto): Uint8Array {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  return bytes.subarray(start);
}

export function crlUrl(publicUrl: string, caName: string): string {
  return `${publicUrl}/pki/crl/${caName}.crl`;
}

export function ocspUrl(publicUrl: string): string {
  return `${publicUrl}/pki/ocsp`;
}

export function keyUsageFor(key: KeyDescription): KeyUsageName[] {
  // RSA keys may do TLS key transport on legacy stacks; EC and EdDSA keys only sign.
  return key.kind === "RSA" ? ["digitalSignature", "keyEncipherment"] : ["digitalSignature"];
}

/** Builds and signs a device certificate; returns it with the record to store. */
export async function issueDeviceCertificate(
  deps: AuthorityDeps,
  input: IssueInput,
): Promise<{ der: Uint8Array; record: CertificateRecord }> {
  const now = deps.clock.now();
  const { profile } = input;
  const notBefore = new Date(Math.floor(now.getTime() / 1000) * 1000 - profile.backdate * 1000);
  const notAfter = new Date(Math.floor(now.getTime() / 1000) * 1000 + profile.validity * 1000);
  const serial = randomSerial(deps.crypto);
  const subtle = deps.crypto.subtle;
  const ekus = profile.extendedKeyUsage.map((e) => (e === "clientAuth" ? id_kp_clientAuth : id_kp_serverAuth));
  const der = await buildCertificate(
    {
      serial,
      issuer: deps.ca.subject,
      subject: encodeName([{ type: id_at_commonName, value: input.deviceId }]),
      notBefore,
      notAfter,
      spki: input.spki,
      extensions: [
        basicConstraints(false),
        keyUsage(keyUsageFor(input.key)),
        extendedKeyUsage(ekus),
        subjectKeyIdentifier(await keyIdentifier(input.spki, subtle)),
        authorityKeyIdentifier(deps.ca.keyId),
        subjectAltName([{ type: "uri", value: spiffeId(deps.config.trustDomain, input.deviceId) }]),
        crlDistributionPoint(crlUrl(deps.publicUrl, deps.ca.name)),
        ocspAccess(ocspUrl(deps.publicUrl)),
      ],
    },
    deps.ca.signer,
  );
  const record: CertificateRecord = {
    serial: toHex(serial),
    deviceId: input.deviceId,
    profile: profile.name,
    issuer: deps.ca.name,
    notBefore,
    notAfter,
    fingerprint: await sha256Hex(deps.crypto, der),
    keyFingerprint: input.keyFingerprint,
    keyType: input.key.label,
    status: "valid",
    revokedAt: null,
    revocationReason: null,
    der,
    issuedAt: now,
    method: input.method,
    replacesSerial: input.replacesSerial ?? null,
    bootstrapTokenId: input.bootstrapTokenId ?? null,
  };
  return { der, record };
}
