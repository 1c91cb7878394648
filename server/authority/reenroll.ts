import type { PeerInfo } from "../ports/client-identity.ts";
import type { EnrollmentProtocol, Write } from "../ports/storage.ts";
import { auditWrite } from "./audit.ts";
import type { Caller } from "./caller.ts";
import { checkCsr } from "./csr-check.ts";
import type { AuthorityDeps } from "./deps.ts";
import type { Issued } from "./enrollment-request.ts";
import { badRequest, forbidden } from "./errors.ts";
import { issueDeviceCertificate } from "./issue.ts";
import { applyGuarded, guard } from "./preconditions.ts";
import { resolveProfile } from "./profiles.ts";
import { authenticateClientCertificate } from "./provisioners/client-certificate.ts";
import { REVOCATION_REASONS } from "./revoke.ts";

/** The audit action of a renewal with an expired certificate (its own action: metrics and the fleet audit count it). */
export const RENEW_AFTER_EXPIRY = "est.renew_after_expiry";

export interface ReenrollRequest {
  label?: string;
  csr: Uint8Array;
  peer: PeerInfo;
  /** "scep": a RenewalReq signed with the current certificate (RFC 8894 §3.3.1.2). */
  protocol?: EnrollmentProtocol;
}

/**
 * simplereenroll (RFC 7030 §4.2.2): authenticated by the current certificate over
 * mutual TLS. The new certificate has the same subject and SAN (the server decides
 * names from the device id, so they cannot drift) and, where the profile says so, a
 * new key. The write set carries what authentication found (device unchanged, the
 * presented certificate still valid, for a lost-response retry its successor still
 * unused), so a revocation that commits while the CSR is verified and signed wins.
 */
export async function reenroll(deps: AuthorityDeps, req: ReenrollRequest, caller: Caller): Promise<Issued> {
  const {
    certificate: presented,
    device,
    supersedes,
    expiredFor,
  } = await authenticateClientCertificate(deps, req.peer.client, caller);
  const profile = resolveProfile(deps, presented.profile);
  if (req.label !== undefined && resolveProfile(deps, req.label).name !== profile.name) {
    throw forbidden("wrong_profile", `certificate belongs to profile ${profile.name}; re-enroll under that label`);
  }
  const csr = await checkCsr(deps, req.csr, device.id, profile, true, device.names);
  // Any spelling of the presented key is the same key (its stored fingerprint may predate canonical keys).
  const sameKey = csr.keyFingerprints.includes(presented.keyFingerprint);
  if (profile.reenroll === "rekey" && sameKey) {
    throw badRequest("key_reused", `profile ${profile.name} requires a new key at every re-enrollment`);
  }
  // A retry replaces the unused successor it supersedes; the lineage stays a chain.
  const replaced = supersedes ?? presented;
  const { der, record } = await issueDeviceCertificate(deps, {
    deviceId: device.id,
    profile,
    spki: csr.spki,
    key: csr.key,
    keyFingerprint: csr.keyFingerprint,
    method: "reenroll",
    protocol: req.protocol ?? "est",
    replacesSerial: replaced.serial,
    names: device.names ?? null,
  });
  const now = record.issuedAt;
  const writes: Write[] = [
    guard({ name: "device_unchanged", deviceId: device.id, revision: device.revision ?? 0 }),
    // After expiry: never revoked (its expiry is the point); device_unchanged keeps it current.
    expiredFor === undefined
      ? guard({ name: "certificate_valid", serial: presented.serial, at: now })
      : guard({ name: "certificate_unrevoked", serial: presented.serial }),
    { kind: "markCertificateUsed", serial: presented.serial, at: now },
  ];
  if (supersedes) {
    writes.push(
      guard({ name: "certificate_valid", serial: supersedes.serial, at: now }),
      guard({ name: "certificate_unused", serial: supersedes.serial }),
      // Nobody ever used it, and nobody may: the device never received it.
      { kind: "revokeCertificate", serial: supersedes.serial, at: now, reason: REVOCATION_REASONS.superseded },
    );
  }
  writes.push(
    { kind: "insertCertificate", certificate: record },
    {
      kind: "upsertDevice",
      device: {
        ...device,
        updatedAt: now,
        lastEnrolledAt: now,
        currentSerial: record.serial,
        currentNotAfter: record.notAfter,
        protocol: record.protocol ?? null,
      },
    },
    auditWrite({
      at: now,
      actor: caller.actor,
      action:
        expiredFor !== undefined
          ? RENEW_AFTER_EXPIRY
          : req.protocol === "scep"
            ? "scep.renewalreq"
            : "est.simplereenroll",
      outcome: "success",
      deviceId: device.id,
      serial: record.serial,
      remote: req.peer.remoteAddress,
      detail: {
        profile: device.profile,
        replaces: replaced.serial,
        ...(sameKey ? { sameKey: true } : {}),
        ...(supersedes ? { retryOf: presented.serial, revokedUnused: supersedes.serial } : {}),
        ...(expiredFor !== undefined
          ? { expiredAt: presented.notAfter.toISOString(), expiredForSeconds: Math.round(expiredFor / 1000) }
          : {}),
        keyType: record.keyType,
        notAfter: record.notAfter.toISOString(),
      },
    }),
  );
  await applyGuarded(deps, writes, async () => {
    await authenticateClientCertificate(deps, req.peer.client, caller);
  });
  if (supersedes) await deps.onRevocation?.();
  return { certificate: der, serial: record.serial, deviceId: device.id, notAfter: record.notAfter };
}
