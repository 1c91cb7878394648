import { spiffeId } from "../authority/identity.ts";
import type { CertificateRecord, DeviceRecord, StoredAuditEvent, TokenRecord } from "../ports/storage.ts";

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export function deviceJson(d: DeviceRecord) {
  return {
    id: d.id,
    profile: d.profile,
    status: d.status,
    currentSerial: d.currentSerial,
    createdAt: iso(d.createdAt),
    updatedAt: iso(d.updatedAt),
    lastEnrolledAt: iso(d.lastEnrolledAt),
  };
}

export function certificateJson(c: CertificateRecord) {
  return {
    serial: c.serial,
    status: c.status,
    profile: c.profile,
    keyType: c.keyType,
    notBefore: iso(c.notBefore),
    notAfter: iso(c.notAfter),
    fingerprint: c.fingerprint,
    method: c.method,
    replacesSerial: c.replacesSerial,
    issuedAt: iso(c.issuedAt),
  };
}

/** Tokens without their secrets (only the hash is stored, and it is not shown either). */
export function tokenJson(t: TokenRecord) {
  return {
    id: t.id,
    profile: t.profile,
    createdAt: iso(t.createdAt),
    expiresAt: iso(t.expiresAt),
    usedAt: iso(t.usedAt),
    usedSerial: t.usedSerial,
    revokedAt: iso(t.revokedAt),
  };
}

export function printDevices(rows: DeviceRecord[], json: boolean): void {
  if (json) {
    for (const d of rows) process.stdout.write(`${JSON.stringify(deviceJson(d))}\n`);
    return;
  }
  process.stdout.write(`${"ID".padEnd(24)} ${"STATUS".padEnd(10)} ${"PROFILE".padEnd(10)} LAST ENROLLED\n`);
  for (const d of rows) {
    process.stdout.write(
      `${d.id.padEnd(24)} ${d.status.padEnd(10)} ${d.profile.padEnd(10)} ${iso(d.lastEnrolledAt) ?? "-"}\n`,
    );
  }
}

export function printDevice(
  v: {
    device: DeviceRecord;
    trustDomain: string;
    certificates: CertificateRecord[];
    tokens: TokenRecord[];
    audit: StoredAuditEvent[];
  },
  json: boolean,
): void {
  const out = {
    ...deviceJson(v.device),
    identity: spiffeId(v.trustDomain, v.device.id),
    certificates: v.certificates.map(certificateJson),
    tokens: v.tokens.map(tokenJson),
    audit: v.audit.map((a) => ({
      id: a.id,
      at: iso(a.at),
      actor: a.actor,
      action: a.action,
      outcome: a.outcome,
      serial: a.serial,
      detail: a.detail,
    })),
  };
  if (json) {
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return;
  }
  process.stdout.write(
    `device    ${out.id}\nidentity  ${out.identity}\nstatus    ${out.status}\nprofile   ${out.profile}\n` +
      `current   ${out.currentSerial ?? "-"}\nenrolled  ${out.lastEnrolledAt ?? "-"}\n\ncertificates:\n`,
  );
  for (const c of out.certificates) {
    process.stdout.write(
      `  ${c.serial}  ${c.status.padEnd(7)} ${c.keyType.padEnd(8)} ${c.notBefore} .. ${c.notAfter}  ${c.method}\n`,
    );
  }
  process.stdout.write("\nrecent audit:\n");
  for (const a of out.audit) process.stdout.write(`  ${a.at}  ${a.action}  ${a.outcome}  ${a.actor}\n`);
}
