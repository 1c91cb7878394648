import type { PeerInfo } from "../ports/client-identity.ts";
import { auditWrite } from "./audit.ts";
import { checkCsr } from "./csr-check.ts";
import type { AuthorityDeps } from "./deps.ts";
import type { Issued } from "./enroll.ts";
import { resolveProfile } from "./enroll.ts";
import { badRequest, forbidden } from "./errors.ts";
import { issueDeviceCertificate } from "./issue.ts";
import { authenticateClientCertificate } from "./provisioners/client-certificate.ts";
import type { RequestTrail } from "./trail.ts";

export interface ReenrollRequest {
  label?: string;
  csr: Uint8Array;
  peer: PeerInfo;
}

/**
 * simplereenroll (RFC 7030 §4.2.2): authenticated by the current certificate over
 * mutual TLS. The new certificate has the same subject and SAN (the server decides
 * names from the device id, so they cannot drift) and, where the profile says so, a
 * new key.
 */
export async function reenroll(deps: AuthorityDeps, req: ReenrollRequest, trail: RequestTrail): Promise<Issued> {
  const { certificate: current, device } = await authenticateClientCertificate(deps, req.peer.client, trail);
  const profile = resolveProfile(deps, current.profile);
  if (req.label !== undefined && resolveProfile(deps, req.label).name !== profile.name) {
    throw forbidden("wrong_profile", `certificate belongs to profile ${profile.name}; re-enroll under that label`);
  }
  const csr = await checkCsr(deps, req.csr, device.id, profile, true, device.names);
  if (profile.requireNewKeyOnReenroll && csr.keyFingerprint === current.keyFingerprint) {
    throw badRequest("key_reused", `profile ${profile.name} requires a new key at every re-enrollment`);
  }
  const { der, record } = await issueDeviceCertificate(deps, {
    deviceId: device.id,
    profile,
    spki: csr.spki,
    key: csr.key,
    keyFingerprint: csr.keyFingerprint,
    method: "reenroll",
    replacesSerial: current.serial,
    names: device.names ?? null,
  });
  const now = record.issuedAt;
  await deps.storage.apply([
    { kind: "insertCertificate", certificate: record },
    {
      kind: "upsertDevice",
      device: {
        ...device,
        updatedAt: now,
        lastEnrolledAt: now,
        currentSerial: record.serial,
        currentNotAfter: record.notAfter,
      },
    },
    auditWrite({
      at: now,
      actor: trail.actor,
      action: "est.simplereenroll",
      outcome: "success",
      deviceId: device.id,
      serial: record.serial,
      remote: req.peer.remoteAddress,
      detail: {
        profile: device.profile,
        replaces: current.serial,
        keyType: record.keyType,
        notAfter: record.notAfter.toISOString(),
      },
    }),
  ]);
  return { certificate: der, serial: record.serial, deviceId: device.id, notAfter: record.notAfter };
}
