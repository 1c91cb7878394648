import type { Write } from "../ports/storage.ts";
import { type Actor, requireRole } from "./actor.ts";
import { auditWrite } from "./audit.ts";
import { checkCsr } from "./csr-check.ts";
import type { AuthorityDeps } from "./deps.ts";
import { type Issued, resolveProfile } from "./enroll.ts";
import { badRequest, conflict, forbidden } from "./errors.ts";
import { DEVICE_ID_RULE, isValidDeviceId } from "./identity.ts";
import { issueDeviceCertificate } from "./issue.ts";

/**
 * An operator signs an appliance's CSR (appliances with no EST client: `edgeid legacy
 * sign`, POST /api/v1/devices/{id}/certificates). The same checks as enrollment — the
 * profile's key policy, names decided by the server, one key per identity — with the
 * operator's role instead of a bootstrap token. The device is created (active) if new.
 */
export async function signForDevice(
  deps: AuthorityDeps,
  actor: Actor,
  req: { deviceId: string; profile: string; csr: Uint8Array },
): Promise<Issued> {
  requireRole(actor, "operator");
  if (!isValidDeviceId(req.deviceId)) throw badRequest("bad_device_id", `device ids are ${DEVICE_ID_RULE}`);
  if (!deps.profiles.has(req.profile)) throw badRequest("unknown_profile", `no profile "${req.profile.slice(0, 32)}"`);
  const profile = resolveProfile(deps, req.profile);
  const existing = await deps.storage.getDevice(req.deviceId);
  if (existing && (existing.status === "revoked" || existing.status === "decommissioned")) {
    throw forbidden("device_not_enrollable", `device ${req.deviceId} is ${existing.status}; reinstate it first`);
  }
  if (existing && existing.status === "active" && existing.profile !== profile.name) {
    throw conflict("wrong_profile", `device ${req.deviceId} holds a ${existing.profile} certificate`);
  }
  const csr = await checkCsr(deps, req.csr, req.deviceId, profile);
  const { der, record } = await issueDeviceCertificate(deps, {
    deviceId: req.deviceId,
    profile,
    spki: csr.spki,
    key: csr.key,
    keyFingerprint: csr.keyFingerprint,
    method: "operator",
    replacesSerial: existing?.currentSerial ?? null,
  });
  const now = record.issuedAt;
  const writes: Write[] = [
    { kind: "insertCertificate", certificate: record },
    {
      kind: "upsertDevice",
      device: {
        id: req.deviceId,
        profile: profile.name,
        status: "active",
        createdAt: existing?.createdAt ?? now,
        updatedAt: now,
        lastEnrolledAt: now,
        currentSerial: record.serial,
        currentNotAfter: record.notAfter,
      },
    },
    auditWrite({
      at: now,
      actor: actor.id,
      action: "certificate.sign",
      outcome: "success",
      deviceId: req.deviceId,
      serial: record.serial,
      remote: actor.remote ?? null,
      detail: { profile: profile.name, keyType: record.keyType, notAfter: record.notAfter.toISOString() },
    }),
  ];
  await deps.storage.apply(writes);
  return { certificate: der, serial: record.serial, deviceId: req.deviceId, notAfter: record.notAfter };
}

/** A CSR as operators hand it over: PEM (CERTIFICATE REQUEST) or base64 DER. */
export function decodeCsrText(text: string): Uint8Array {
  const pem = /-----BEGIN (?:NEW )?CERTIFICATE REQUEST-----([\s\S]*?)-----END (?:NEW )?CERTIFICATE REQUEST-----/.exec(
    text,
  );
  const b64 = (pem ? pem[1] : text)?.replace(/\s+/g, "") ?? "";
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw badRequest("csr_malformed", "the CSR is neither PEM nor base64 DER");
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}
