import type { Profile } from "../config/schema.ts";
import { type Actor, requireRole } from "./actor.ts";
import { auditWrite } from "./audit.ts";
import type { AuthorityDeps } from "./deps.ts";
import { badRequest } from "./errors.ts";

/**
 * Fleet audits: what AWS IoT Device Defender checks, computed from our own records.
 * Each check is one bounded query; a check that finds more than `limit` problems says
 * so (`truncated`) instead of reading the whole fleet into memory.
 */

export const FLEET_CHECKS = [
  "certificate-expiring",
  "device-not-seen",
  "revoked-still-connected",
  "cloned-identity",
  "superseded-renewal",
  "unknown-certificate",
  "revoked-certificate-in-use",
  "weak-key",
  "returned-after-expiry",
] as const;
export type FleetCheck = (typeof FLEET_CHECKS)[number];

export type Severity = "critical" | "high" | "medium" | "low";

export interface Finding {
  check: FleetCheck;
  severity: Severity;
  deviceId: string;
  serial: string | null;
  message: string;
}

export interface FleetAuditOptions {
  /** Seconds. Unset: per profile, 30 days or a quarter of its validity, whichever is shorter. */
  expiringWithin?: number;
  /** Seconds without any message from a device that has reported before (default 24 h). */
  notSeenFor?: number;
  /** Seconds back in which connection takeovers are counted (default 1 h). */
  cloneWindow?: number;
  /** Takeovers of a still-open session with the same certificate that make a finding (default 2). */
  cloneTakeovers?: number;
  /** Findings per check (default 1000). */
  limit?: number;
  /**
   * Called between chunks of the checks that scan whole tables (reported certificates,
   * key types), so that a server answers other requests meanwhile.
   */
  afterChunk?: () => Promise<void>;
  /** Rows per chunk of those checks (default AUDIT_SCAN_CHUNK). */
  scanChunk?: number;
  /** Seconds back in which renewals after expiry are reported (default 7 days). */
  returnedWithin?: number;
}

/** Findings kept with each stored run (the most severe); the counts have the totals. */
export const STORED_FINDINGS = 200;
/** Runs kept for the dashboard. */
export const STORED_AUDIT_RUNS = 20;

/** Rows per chunk of a full-table check. */
export const AUDIT_SCAN_CHUNK = 5000;

export interface FleetAuditReport {
  at: Date;
  parameters: { notSeenFor: number; cloneWindow: number; cloneTakeovers: number; expiringWithin: number | null };
  counts: Record<FleetCheck, number>;
  /** Checks that had more findings than the limit. */
  truncated: FleetCheck[];
  findings: Finding[];
}

type AuditDeps = Pick<AuthorityDeps, "storage" | "clock" | "profiles">;

const DAY = 86400;

/** Why a key is weak: below absolute floors, or no longer what its profile accepts. */
export function weakKeyReason(keyType: string, profile: Profile | undefined): string | null {
  const rsa = /^RSA-(\d+)$/.exec(keyType);
  if (rsa) {
    const bits = Number(rsa[1]);
    if (bits < 2048) return `RSA key of ${bits} bits (under 2048)`;
    if (profile && !profile.keyTypes.includes("RSA"))
      return `RSA keys are no longer accepted by profile ${profile.name}`;
    if (profile && bits < profile.rsaMinBits)
      return `RSA key of ${bits} bits; profile ${profile.name} now needs ${profile.rsaMinBits}`;
    return null;
  }
  if (keyType === "P-256" || keyType === "P-384" || keyType === "Ed25519") {
    if (profile && !(profile.keyTypes as string[]).includes(keyType)) {
      return `${keyType} keys are no longer accepted by profile ${profile.name}`;
    }
    return null;
  }
  if (keyType === "P-521") return profile ? `P-521 keys are not accepted by profile ${profile.name}` : null;
  return `key type ${keyType}`;
}

function defaultExpiryWindow(profile: Profile): number {
  return Math.min(30 * DAY, Math.floor(profile.validity / 4));
}

function span(seconds: number): string {
  const abs = Math.abs(seconds);
  if (abs >= 2 * DAY) return `${Math.round(seconds / DAY)}d`;
  if (abs >= 7200) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 60)}m`;
}

/** Runs every check; records one audit row with the counts. */
export async function runFleetAudit(
  deps: AuditDeps,
  actor: Actor,
  opts: FleetAuditOptions = {},
): Promise<FleetAuditReport> {
  requireRole(actor, "auditor");
  for (const [k, v] of Object.entries(opts)) {
    if (k === "afterChunk") continue;
    if (v !== undefined && (!Number.isInteger(v) || (v as number) < 0)) {
      throw badRequest("bad_parameter", `${k} must be a whole number ≥ 0`);
    }
  }
  const afterChunk = opts.afterChunk ?? (async () => undefined);
  const scanChunk = Math.max(1, opts.scanChunk ?? AUDIT_SCAN_CHUNK);
  const now = deps.clock.now();
  const limit = Math.min(opts.limit ?? 1000, 10_000);
  const notSeenFor = opts.notSeenFor ?? DAY;
  const cloneWindow = opts.cloneWindow ?? 3600;
  const cloneTakeovers = Math.max(1, opts.cloneTakeovers ?? 2);
  const findings: Finding[] = [];
  const counts = Object.fromEntries(FLEET_CHECKS.map((c) => [c, 0])) as Record<FleetCheck, number>;
  const truncated = new Set<FleetCheck>();
  const add = (f: Finding) => {
    counts[f.check]++;
    if (counts[f.check] > limit) {
      truncated.add(f.check);
      return;
    }
    findings.push(f);
  };
  const { storage } = deps;

  // Certificates expiring: by profile, each one index range on (expiry, id).
  for (const profile of deps.profiles.values()) {
    const window = opts.expiringWithin ?? defaultExpiryWindow(profile);
    const devices = await storage.listDevices({
      status: "active",
      profile: profile.name,
      expiringBefore: new Date(now.getTime() + window * 1000),
      limit: limit + 1,
    });
    for (const d of devices) {
      const left = Math.round(((d.currentNotAfter?.getTime() ?? 0) - now.getTime()) / 1000);
      add({
        check: "certificate-expiring",
        severity: left <= 0 ? "critical" : left < window / 4 ? "high" : "medium",
        deviceId: d.id,
        serial: d.currentSerial,
        message: left <= 0 ? `certificate expired ${span(-left)} ago` : `certificate expires in ${span(left)}`,
      });
    }
  }

  for (const s of await storage.staleDevices(new Date(now.getTime() - notSeenFor * 1000), limit + 1)) {
    add({
      check: "device-not-seen",
      severity: "medium",
      deviceId: s.deviceId,
      serial: s.certSerial,
      message: `not heard from for ${span((now.getTime() - s.lastSeenAt.getTime()) / 1000)} (last state ${s.state})`,
    });
  }

  const connected = new Set<string>();
  for (const s of await storage.revokedButConnected(limit + 1)) {
    connected.add(s.deviceId);
    add({
      check: "revoked-still-connected",
      severity: "critical",
      deviceId: s.deviceId,
      serial: s.serial,
      message: `connected to the broker since ${s.connectedAt.toISOString()} with a revoked identity`,
    });
  }
  // Through an external broker the server sees no connections, only messages.
  const heard: Awaited<ReturnType<typeof storage.heardAfterRevocation>>["rows"] = [];
  for (let after: string | null = ""; after !== null; ) {
    const chunk = await storage.heardAfterRevocation(after, scanChunk);
    heard.push(...chunk.rows);
    after = chunk.next;
    if (after !== null) await afterChunk();
  }
  for (const s of heard) {
    if (connected.has(s.deviceId)) continue;
    add({
      check: "revoked-still-connected",
      severity: "critical",
      deviceId: s.deviceId,
      serial: s.certSerial,
      message: `sent a message at ${s.lastSeenAt.toISOString()}, after its revocation at ${s.revokedAt.toISOString()}`,
    });
  }

  const takeovers = new Map<string, { deviceId: string; n: number; remotes: Set<string> }>();
  for (const s of await storage.takeovers(new Date(now.getTime() - cloneWindow * 1000), 10 * limit)) {
    const t = takeovers.get(s.serial) ?? { deviceId: s.deviceId, n: 0, remotes: new Set<string>() };
    t.n++;
    if (s.remote) t.remotes.add(s.remote.replace(/:\d+$/, ""));
    takeovers.set(s.serial, t);
  }
  for (const [serial, t] of takeovers) {
    if (t.n < cloneTakeovers) continue;
    add({
      check: "cloned-identity",
      severity: "critical",
      deviceId: t.deviceId,
      serial,
      message: `the same certificate took over a live connection ${t.n} times in ${span(cloneWindow)} (from ${[...t.remotes].join(", ") || "unknown addresses"})`,
    });
  }

  // Devices that came back after their certificate expired (renewAfterExpiry): how long
  // they were past expiry tells where connectivity or power is failing.
  const returnedWithin = opts.returnedWithin ?? 7 * DAY;
  for (const r of await storage.renewalsAfterExpiry(new Date(now.getTime() - returnedWithin * 1000), limit + 1)) {
    add({
      check: "returned-after-expiry",
      severity: "low",
      deviceId: r.deviceId,
      serial: r.serial,
      message: `came back ${span(r.expiredForSeconds)} after its certificate expired and renewed with it at ${r.at.toISOString()}`,
    });
  }

  // A renewal with a certificate whose successor is in use: someone else holds an old key.
  const superseded = new Map<string, { deviceId: string; serial: string | null; n: number; remotes: Set<string> }>();
  for (const r of await storage.supersededRenewals(new Date(now.getTime() - cloneWindow * 1000), 10 * limit)) {
    const key = `${r.deviceId} ${r.serial ?? ""}`;
    const s = superseded.get(key) ?? { deviceId: r.deviceId, serial: r.serial, n: 0, remotes: new Set<string>() };
    s.n++;
    if (r.remote) s.remotes.add(r.remote.replace(/:\d+$/, ""));
    superseded.set(key, s);
  }
  for (const s of superseded.values()) {
    add({
      check: "superseded-renewal",
      severity: "critical",
      deviceId: s.deviceId,
      serial: s.serial,
      message: `a superseded certificate tried to renew ${s.n} time(s) in ${span(cloneWindow)} (from ${[...s.remotes].join(", ") || "unknown addresses"}) while its successor was in use: a possible clone`,
    });
  }

  const reported: Awaited<ReturnType<typeof storage.reportedCertificateProblems>>["problems"] = [];
  for (let after: string | null = ""; after !== null; ) {
    const chunk = await storage.reportedCertificateProblems(after, scanChunk);
    reported.push(...chunk.problems);
    after = chunk.next;
    if (after !== null) await afterChunk();
  }
  for (const p of reported) {
    if (!p.issuedTo) {
      add({
        check: "unknown-certificate",
        severity: "high",
        deviceId: p.deviceId,
        serial: p.serial,
        message: `reports certificate ${p.serial}, which this server did not issue`,
      });
    } else if (p.issuedTo !== p.deviceId) {
      add({
        check: "unknown-certificate",
        severity: "critical",
        deviceId: p.deviceId,
        serial: p.serial,
        message: `reports certificate ${p.serial}, which was issued to ${p.issuedTo}`,
      });
    } else {
      add({
        check: "revoked-certificate-in-use",
        severity: "high",
        deviceId: p.deviceId,
        serial: p.serial,
        message: `reports certificate ${p.serial}, which is revoked`,
      });
    }
  }

  const keyTypes = new Map<string, { profile: string; keyType: string }>();
  for (let after: string | null = ""; after !== null; ) {
    const chunk = await storage.keyTypeCounts(now, after, scanChunk);
    for (const c of chunk.counts) keyTypes.set(`${c.profile}\u0000${c.keyType}`, c);
    after = chunk.next;
    if (after !== null) await afterChunk();
  }
  for (const { profile, keyType } of keyTypes.values()) {
    const reason = weakKeyReason(keyType, deps.profiles.get(profile));
    if (!reason) continue;
    for (const c of await storage.certificatesWithKeyType(profile, keyType, now, limit + 1)) {
      add({ check: "weak-key", severity: "high", deviceId: c.deviceId, serial: c.serial, message: reason });
    }
  }

  const report: FleetAuditReport = {
    at: now,
    parameters: { notSeenFor, cloneWindow, cloneTakeovers, expiringWithin: opts.expiringWithin ?? null },
    counts,
    truncated: [...truncated],
    findings,
  };
  const rank: Record<Severity, number> = { critical: 0, high: 1, medium: 2, low: 3 };
  await storage.apply([
    {
      kind: "recordFleetAudit",
      run: {
        at: now,
        actor: actor.id,
        counts,
        truncated: report.truncated,
        // The most severe first (a stable sort keeps each check's own order).
        findings: [...findings].sort((a, b) => rank[a.severity] - rank[b.severity]).slice(0, STORED_FINDINGS),
      },
      keep: STORED_AUDIT_RUNS,
    },
    auditWrite({
      at: now,
      actor: actor.id,
      action: "fleet.audit",
      outcome: "success",
      remote: actor.remote ?? null,
      detail: Object.fromEntries(Object.entries(counts).filter(([, n]) => n > 0)),
    }),
  ]);
  return report;
}
