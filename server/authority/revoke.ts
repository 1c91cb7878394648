import { type CertificateRecord, type DeviceRecord, failedPrecondition, type Write } from "../ports/storage.ts";
import { type Actor, requireRole } from "./actor.ts";
import { auditWrite } from "./audit.ts";
import type { AuthorityDeps } from "./deps.ts";
import { badRequest, conflict, notFound } from "./errors.ts";
import { applyGuarded, guard, operatorGuards, preconditionConflict } from "./preconditions.ts";

/**
 * RFC 5280 §5.3.1 CRLReason codes an operator may give. Not offered: certificateHold
 * and removeFromCRL (revocation here is final), cACompromise and aACompromise (about
 * authorities, not devices).
 */
type RevokeDeps = Pick<AuthorityDeps, "storage" | "clock" | "onRevocation" | "profiles">;

export const REVOCATION_REASONS = {
  unspecified: 0,
  keyCompromise: 1,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  privilegeWithdrawn: 9,
} as const;

export type RevocationReason = keyof typeof REVOCATION_REASONS;

export const REASON_NAMES: Record<number, string> = {
  0: "unspecified",
  1: "keyCompromise",
  2: "cACompromise",
  3: "affiliationChanged",
  4: "superseded",
  5: "cessationOfOperation",
  6: "certificateHold",
  8: "removeFromCRL",
  9: "privilegeWithdrawn",
  10: "aACompromise",
};

export function reasonCode(name: string): number {
  const code = (REVOCATION_REASONS as Record<string, number>)[name];
  if (code === undefined) {
    throw badRequest(
      "bad_reason",
      `unknown revocation reason "${name.slice(0, 40)}"; use one of ${Object.keys(REVOCATION_REASONS).join(", ")}`,
    );
  }
  return code;
}

export interface RevokeDeviceRequest {
  deviceId: string;
  reason: RevocationReason;
  actor: Actor;
  /** "decommissioned": retired rather than compromised; the record is kept either way. */
  status?: "revoked" | "decommissioned";
  /**
   * A gateway: also revoke (or decommission) every appliance it enrolled, in the same
   * write set. Without it, its appliances keep their certificates.
   */
  cascade?: boolean;
}

export interface RevokedDevice {
  device: DeviceRecord;
  /** The certificates this revocation revoked (the appliances' too, with cascade). */
  serials: string[];
  /** With cascade: the appliances revoked with the gateway. */
  appliances?: string[];
}

/** Most appliances one cascade revokes in its single write set. */
export const MAX_CASCADE = 100_000;

/** Valid certificates that expired after `since`: those that still authenticate (or renew after expiry). */
const validSince = (c: CertificateRecord, since: number) => c.status === "valid" && c.notAfter.getTime() > since;

/**
 * The earliest expiry that still matters at `now`: an expired certificate may renew within
 * its profile's renewAfterExpiry window, so a revocation covers those too.
 */
function renewableSince(deps: Pick<AuthorityDeps, "profiles">, now: Date): Date {
  const window = Math.max(0, ...[...deps.profiles.values()].map((p) => p.renewAfterExpiry));
  return new Date(now.getTime() - window * 1000);
}

/** Attempts at a device revocation whose device changed (a renewal committed) between read and write. */
const REVOKE_ATTEMPTS = 5;

/**
 * Revokes a device in one write set: every unexpired certificate (into the revocation
 * feed that the CRL and OCSP follow), its unused bootstrap tokens, its IDevID binding
 * and its open enrollment requests; the device becomes revoked (or decommissioned).
 * Only an operator can bring it back. The cost is that of the device's own rows.
 *
 * The set is guarded like an issuance: it applies only to the device as it was read. A
 * renewal that commits in between makes it read again and retry, so the certificate
 * that renewal issued is revoked too and the audit record lists it; any issuance that
 * comes after finds the device revoked inside its own write set.
 */
export async function revokeDevice(deps: RevokeDeps, req: RevokeDeviceRequest): Promise<RevokedDevice> {
  requireRole(req.actor, "operator");
  const reason = reasonCode(req.reason);
  for (let attempt = 1; ; attempt++) {
    const plan = await planRevocation(deps, req, reason);
    try {
      await deps.storage.apply(plan.writes);
    } catch (err) {
      const failed = failedPrecondition(err);
      const changed = failed === "device_unchanged" || failed === "device_not_revoked" || failed === "appliance_count";
      if (changed && attempt < REVOKE_ATTEMPTS) continue;
      throw revocationConflict(err);
    }
    // OCSP answers and the CRL feed are current when this returns; the CRL is re-signed just after.
    await deps.onRevocation?.();
    return plan.result;
  }
}

async function planRevocation(
  deps: RevokeDeps,
  req: RevokeDeviceRequest,
  reason: number,
): Promise<{ writes: Write[]; result: RevokedDevice }> {
  const status = req.status ?? "revoked";
  const device = await deps.storage.getDevice(req.deviceId);
  if (!device) throw notFound("unknown_device", `no device ${req.deviceId}`);
  if (device.status === "revoked" || device.status === "decommissioned") {
    throw conflict("already_revoked", `device ${device.id} is already ${device.status}`);
  }
  const now = deps.clock.now();
  const action = status === "revoked" ? "device.revoke" : "device.decommission";
  const targets = [device];
  if (req.cascade) {
    const appliances = await deps.storage.listDevices({ gateway: device.id, limit: MAX_CASCADE });
    targets.push(...appliances.filter((a) => a.status !== "revoked" && a.status !== "decommissioned"));
  }
  const writes: Write[] = [
    guard({ name: "device_unchanged", deviceId: device.id, revision: device.revision ?? 0 }),
    ...operatorGuards(req.actor, now),
    // An appliance enrolled after the cascade read them makes it read again (and revoke it too).
    ...(req.cascade ? [guard({ name: "appliance_count", gatewayId: device.id, count: targets.length - 1 })] : []),
  ];
  const all: string[] = [];
  const since = renewableSince(deps, now);
  for (const target of targets) {
    // Its workload SVIDs go with it (revokeDevice revokes every certificate of the device).
    const serials = [
      ...(await deps.storage.listCertificates(target.id)),
      ...(await deps.storage.listWorkloadSvids(target.id, 1000)),
    ]
      .filter((c) => validSince(c, since.getTime()))
      .map((c) => c.serial);
    all.push(...serials);
    const cascaded = target !== device;
    writes.push(
      // An appliance revoked on its own meanwhile makes the cascade read again and leave it out.
      ...(cascaded ? [guard({ name: "device_not_revoked", deviceId: target.id })] : []),
      { kind: "revokeDevice", deviceId: target.id, at: now, expiredSince: since, reason: reason || null, status },
      auditWrite({
        at: now,
        actor: req.actor.id,
        action,
        outcome: "success",
        deviceId: target.id,
        remote: req.actor.remote ?? null,
        detail: {
          reason: req.reason,
          certificates: serials.length,
          serials: serials.join(",").slice(0, 2000),
          ...(cascaded ? { cascadeFrom: device.id } : {}),
          ...(req.cascade && !cascaded ? { appliances: targets.length - 1 } : {}),
        },
      }),
    );
  }
  return {
    writes,
    result: {
      device: { ...device, status, updatedAt: now },
      serials: all,
      ...(req.cascade ? { appliances: targets.slice(1).map((t) => t.id) } : {}),
    },
  };
}

/** A revocation whose preconditions kept failing, or that another operator's change beat. */
function revocationConflict(err: unknown) {
  const failed = failedPrecondition(err);
  return failed ? preconditionConflict(failed) : err;
}

export interface RevokeCertificateRequest {
  serial: string;
  reason: RevocationReason;
  actor: Actor;
}

/** Revokes one certificate; the device keeps its state (it may enroll again with a token). */
export async function revokeCertificate(deps: RevokeDeps, req: RevokeCertificateRequest): Promise<CertificateRecord> {
  requireRole(req.actor, "operator");
  const reason = reasonCode(req.reason);
  const serial = req.serial.toLowerCase();
  const cert = /^[0-9a-f]{1,40}$/.test(serial) ? await deps.storage.getCertificate(serial) : undefined;
  if (!cert) throw notFound("unknown_certificate", `no certificate with serial ${req.serial.slice(0, 64)}`);
  const now = deps.clock.now();
  if (cert.status === "revoked") throw conflict("already_revoked", `certificate ${serial} is already revoked`);
  if (cert.notAfter.getTime() <= now.getTime()) {
    throw conflict("certificate_expired", `certificate ${serial} has expired; there is nothing to revoke`);
  }
  const recheck = async () => {
    if ((await deps.storage.getCertificate(serial))?.status === "revoked") {
      throw conflict("already_revoked", `certificate ${serial} is already revoked`);
    }
  };
  await applyGuarded(
    deps,
    [
      guard({ name: "certificate_valid", serial, at: now }),
      ...operatorGuards(req.actor, now),
      { kind: "revokeCertificate", serial, at: now, reason: reason || null },
      auditWrite({
        at: now,
        actor: req.actor.id,
        action: "certificate.revoke",
        outcome: "success",
        deviceId: cert.deviceId,
        serial,
        remote: req.actor.remote ?? null,
        detail: { reason: req.reason },
      }),
    ],
    recheck,
  );
  // OCSP answers and the CRL feed are current when this returns; the CRL is re-signed just after.
  await deps.onRevocation?.();
  return { ...cert, status: "revoked", revokedAt: now, revocationReason: reason || null };
}

/**
 * The operator's way back in for a revoked or retired device: it becomes pending and
 * may enroll again with a new bootstrap token. Its old certificates stay revoked, and
 * a revoked IDevID binding stays revoked (that key may be the compromised one).
 */
export async function reinstateDevice(
  deps: Pick<AuthorityDeps, "storage" | "clock">,
  req: { deviceId: string; actor: Actor; note?: string },
): Promise<DeviceRecord> {
  requireRole(req.actor, "operator");
  const device = await deps.storage.getDevice(req.deviceId);
  if (!device) throw notFound("unknown_device", `no device ${req.deviceId.slice(0, 64)}`);
  if (device.status !== "revoked" && device.status !== "decommissioned") {
    throw conflict("not_revoked", `device ${device.id} is ${device.status}; only a revoked device is reinstated`);
  }
  const now = deps.clock.now();
  await applyGuarded(
    deps,
    [
      guard({ name: "device_unchanged", deviceId: device.id, revision: device.revision ?? 0 }),
      ...operatorGuards(req.actor, now),
      { kind: "reinstateDevice", deviceId: device.id, at: now },
      auditWrite({
        at: now,
        actor: req.actor.id,
        action: "device.reinstate",
        outcome: "success",
        deviceId: device.id,
        remote: req.actor.remote ?? null,
        detail: { from: device.status, ...(req.note ? { note: req.note.slice(0, 200) } : {}) },
      }),
    ],
    async () => {
      const again = await deps.storage.getDevice(device.id);
      if (again && again.status !== "revoked" && again.status !== "decommissioned") {
        throw conflict("not_revoked", `device ${device.id} is ${again.status}; only a revoked device is reinstated`);
      }
    },
  );
  return { ...device, status: "pending", updatedAt: now, currentSerial: null, currentNotAfter: null };
}
