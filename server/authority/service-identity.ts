import {
  authorityKeyIdentifier,
  basicConstraints,
  buildCertificate,
  crlDistributionPoint,
  encodeName,
  extendedKeyUsage,
  keyIdentifier,
  keyUsage,
  ocspAccess,
  subjectAltName,
  subjectKeyIdentifier,
} from "../pki/certificate.ts";
import { toHex } from "../pki/der.ts";
import { describeKey } from "../pki/keys.ts";
import { id_at_commonName, id_kp_clientAuth } from "../pki/oids.ts";
import type { CertificateRecord } from "../ports/storage.ts";
import { type Actor, requireRole } from "./actor.ts";
import { auditWrite } from "./audit.ts";
import type { AuthorityDeps } from "./deps.ts";
import { isValidServiceName, SERVICE_PREFIX } from "./device-reports.ts";
import { sha256Hex } from "./digest.ts";
import { badRequest } from "./errors.ts";
import { crlUrl, keyUsageFor, ocspUrl, randomSerial } from "./issue.ts";

/**
 * Certificates for services rather than devices: the edgeid server's own client of an
 * external broker, or an integration that reads fleet topics. The identity is
 * spiffe://<td>/service/<name> with CN `service:<name>` (a name no device id can have:
 * device ids have no ':'). They are recorded like device certificates, so they are in
 * the CRL, OCSP and the broker's live check, and `certs revoke` revokes them.
 */

export const SERVICE_VALIDITY_DAYS = 90;

export interface ServiceCertificateRequest {
  name: string;
  /** The service's public key (SubjectPublicKeyInfo DER); its private key never leaves the caller. */
  spki: Uint8Array;
  validityDays?: number;
}

export async function issueServiceCertificate(
  deps: AuthorityDeps,
  actor: Actor,
  req: ServiceCertificateRequest,
): Promise<{ der: Uint8Array; record: CertificateRecord }> {
  requireRole(actor, "admin");
  if (!isValidServiceName(req.name)) {
    throw badRequest("bad_service_name", "service names are 1-32 lowercase letters, digits or '-'");
  }
  const key = describeKey(req.spki);
  if (
    !(key.kind === "EC" && (key.curve === "P-256" || key.curve === "P-384")) &&
    !(key.kind === "RSA" && key.bits >= 2048)
  ) {
    throw badRequest("key_not_allowed", `a service key must be P-256, P-384 or RSA ≥ 2048 (got ${key.label})`);
  }
  const now = deps.clock.now();
  const days = req.validityDays ?? SERVICE_VALIDITY_DAYS;
  const cn = `${SERVICE_PREFIX}${req.name}`;
  const serial = randomSerial(deps.crypto);
  const notBefore = new Date(Math.floor(now.getTime() / 1000) * 1000 - 300_000);
  const notAfter = new Date(notBefore.getTime() + 300_000 + days * 86400_000);
  const der = await buildCertificate(
    {
      serial,
      issuer: deps.ca.subject,
      subject: encodeName([{ type: id_at_commonName, value: cn }]),
      notBefore,
      notAfter,
      spki: req.spki,
      extensions: [
        basicConstraints(false),
        keyUsage(keyUsageFor(key)),
        extendedKeyUsage([id_kp_clientAuth]),
        subjectKeyIdentifier(await keyIdentifier(req.spki, deps.digest)),
        authorityKeyIdentifier(deps.ca.keyId),
        subjectAltName([{ type: "uri", value: `spiffe://${deps.config.trustDomain}/service/${req.name}` }]),
        crlDistributionPoint(crlUrl(deps.publicUrl, deps.ca.name)),
        ocspAccess(ocspUrl(deps.publicUrl)),
      ],
    },
    deps.ca.signer,
  );
  const record: CertificateRecord = {
    serial: toHex(serial),
    deviceId: cn,
    profile: "service",
    issuer: deps.ca.name,
    notBefore,
    notAfter,
    fingerprint: await sha256Hex(deps.digest, der),
    keyFingerprint: await sha256Hex(deps.digest, req.spki),
    keyType: key.label,
    status: "valid",
    revokedAt: null,
    revocationReason: null,
    der,
    issuedAt: now,
    method: "operator",
    replacesSerial: null,
    bootstrapTokenId: null,
  };
  await deps.storage.apply([
    { kind: "insertCertificate", certificate: record },
    auditWrite({
      at: now,
      actor: actor.id,
      action: "service.certificate",
      outcome: "success",
      serial: record.serial,
      remote: actor.remote ?? null,
      detail: { service: req.name, keyType: key.label, notAfter: notAfter.toISOString() },
    }),
  ]);
  return { der, record };
}
