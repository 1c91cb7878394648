import { z } from "@hono/zod-openapi";
import type { FleetAuditReport } from "../../authority/fleet-audit.ts";
import { FLEET_CHECKS } from "../../authority/fleet-audit.ts";
import { applianceOf, spiffeId } from "../../authority/identity.ts";
import type { DeviceDetail } from "../../authority/inventory.ts";
import type { ExpiringRow } from "../../authority/lifecycle.ts";
import { REASON_NAMES } from "../../authority/revoke.ts";
import { entrySpiffeIdPattern } from "../../authority/workloads.ts";
import type {
  CertificateRecord,
  CommandRecord,
  DeviceEventRecord,
  DeviceMetadata,
  DeviceRecord,
  DeviceStatusRecord,
  IdevidBinding,
  MqttSessionRecord,
  OperatorRecord,
  PendingEnrollment,
  StoredAuditEvent,
  TokenRecord,
  WorkloadEntryRecord,
} from "../../ports/storage.ts";

/**
 * The JSON shapes of the operator API (and of the CLI's --json output): one zod
 * schema per shape for the OpenAPI document, one function per shape that fills it.
 */

const iso = (d: Date | null | undefined) => (d ? d.toISOString() : null);
const time = z.string().nullable().openapi({ format: "date-time" });

export const DeviceSchema = z
  .object({
    id: z.string(),
    identity: z.string().openapi({ example: "spiffe://example.org/device/dev-001" }),
    profile: z.string(),
    status: z.enum(["pending", "active", "revoked", "decommissioned"]),
    currentSerial: z.string().nullable(),
    currentNotAfter: time,
    lastEnrolledAt: time,
    /** The protocol of the device's latest enrollment or renewal; null before any (operator issuance). */
    protocol: z.enum(["est", "scep"]).nullable(),
    createdAt: time,
    updatedAt: time,
    /** Operator-declared names the device's certificates carry. */
    names: z.object({ dns: z.array(z.string()), ip: z.array(z.string()) }).optional(),
    /** An appliance: the gateway that enrolled it (its broker) and its name behind it. */
    broker: z.object({ gateway: z.string(), name: z.string() }).optional(),
  })
  .openapi("Device");

export function deviceView(d: DeviceRecord, trustDomain: string): z.infer<typeof DeviceSchema> {
  const appliance = applianceOf(d.id);
  return {
    id: d.id,
    identity: spiffeId(trustDomain, d.id),
    profile: d.profile,
    status: d.status,
    currentSerial: d.currentSerial,
    currentNotAfter: iso(d.currentNotAfter),
    lastEnrolledAt: iso(d.lastEnrolledAt),
    protocol: d.protocol ?? null,
    createdAt: iso(d.createdAt),
    updatedAt: iso(d.updatedAt),
    ...(d.names ? { names: d.names } : {}),
    ...(appliance ? { broker: appliance } : {}),
  };
}

export const CertificateSchema = z
  .object({
    serial: z.string(),
    deviceId: z.string(),
    status: z.enum(["valid", "revoked"]),
    profile: z.string(),
    issuer: z.string(),
    keyType: z.string(),
    notBefore: time,
    notAfter: time,
    fingerprint: z.string(),
    method: z.enum(["token", "reenroll", "idevid", "operator", "gateway", "workload"]),
    replacesSerial: z.string().nullable(),
    issuedAt: time,
    revokedAt: time,
    revocationReason: z.string().nullable(),
  })
  .openapi("Certificate");

export function certificateView(c: CertificateRecord): z.infer<typeof CertificateSchema> {
  return {
    serial: c.serial,
    deviceId: c.deviceId,
    status: c.status,
    profile: c.profile,
    issuer: c.issuer,
    keyType: c.keyType,
    notBefore: iso(c.notBefore),
    notAfter: iso(c.notAfter),
    fingerprint: c.fingerprint,
    method: c.method,
    replacesSerial: c.replacesSerial,
    issuedAt: iso(c.issuedAt),
    revokedAt: iso(c.revokedAt),
    revocationReason:
      c.status === "revoked" ? (REASON_NAMES[c.revocationReason ?? 0] ?? String(c.revocationReason)) : null,
  };
}

export const WorkloadSvidSchema = z
  .object({
    spiffeId: z.string(),
    entryId: z.string(),
    serial: z.string(),
    notAfter: time,
    status: z.enum(["valid", "revoked", "expired"]),
    issuedAt: time,
    revokedAt: time,
  })
  .openapi("WorkloadSvid", { description: "A workload X.509-SVID issued to the device (never its key)." });

export function workloadSvidView(c: CertificateRecord, now: Date): z.infer<typeof WorkloadSvidSchema> {
  return {
    spiffeId: c.spiffeId ?? "",
    entryId: c.workloadEntryId ?? "",
    serial: c.serial,
    notAfter: iso(c.notAfter),
    status: c.status === "revoked" ? "revoked" : c.notAfter.getTime() <= now.getTime() ? "expired" : "valid",
    issuedAt: iso(c.issuedAt),
    revokedAt: iso(c.revokedAt),
  };
}

export const WorkloadEntrySchema = z
  .object({
    id: z.string(),
    parent: z.object({ kind: z.enum(["device", "profile", "prefix"]), value: z.string() }),
    name: z.string(),
    spiffeId: z.string().openapi({
      description:
        "the SPIFFE ID; with {device} where each device gets its own (spiffe://<td>/device/<id>/workload/<name>)",
    }),
    fleetWide: z.boolean(),
    selectors: z.array(z.string()),
    ttlSeconds: z.number().int(),
    jwtAudiences: z.array(z.string()),
    revision: z.number().int(),
    createdAt: time,
    updatedAt: time,
    createdBy: z.string(),
  })
  .openapi("WorkloadEntry", { description: "A workload registration entry." });

export function workloadEntryView(e: WorkloadEntryRecord, trustDomain: string): z.infer<typeof WorkloadEntrySchema> {
  return {
    id: e.id,
    parent: { kind: e.parentKind, value: e.parentValue },
    name: e.name,
    spiffeId: entrySpiffeIdPattern(trustDomain, e),
    fleetWide: e.fleetWide,
    selectors: e.selectors,
    ttlSeconds: e.ttlSeconds,
    jwtAudiences: e.jwtAudiences,
    revision: e.revision ?? 0,
    createdAt: iso(e.createdAt),
    updatedAt: iso(e.updatedAt),
    createdBy: e.createdBy,
  };
}

export const TokenSchema = z
  .object({
    id: z.string(),
    deviceId: z.string(),
    profile: z.string(),
    state: z.enum(["unused", "used", "revoked", "expired"]),
    createdAt: time,
    createdBy: z.string(),
    expiresAt: time,
    usedAt: time,
    usedSerial: z.string().nullable(),
    revokedAt: time,
    /** Names declared with the token; the device's certificates carry them once it enrolls with it. */
    names: z.object({ dns: z.array(z.string()), ip: z.array(z.string()) }).optional(),
  })
  .openapi("Token", { description: "A bootstrap token without its secret (only a hash is stored)." });

export function tokenView(t: TokenRecord, now: Date): z.infer<typeof TokenSchema> {
  const state = t.usedAt
    ? "used"
    : t.revokedAt
      ? "revoked"
      : t.expiresAt.getTime() <= now.getTime()
        ? "expired"
        : "unused";
  return {
    id: t.id,
    deviceId: t.deviceId,
    profile: t.profile,
    state,
    createdAt: iso(t.createdAt),
    createdBy: t.createdBy,
    expiresAt: iso(t.expiresAt),
    usedAt: iso(t.usedAt),
    usedSerial: t.usedSerial,
    revokedAt: iso(t.revokedAt),
    ...(t.names ? { names: t.names } : {}),
  };
}

export const EnrollmentSchema = z
  .object({
    id: z.string(),
    deviceId: z.string(),
    profile: z.string(),
    status: z.enum(["pending", "approved", "rejected", "issued"]),
    method: z.enum(["token", "idevid", "gateway"]),
    requestedBy: z.string(),
    keyType: z.string(),
    keyFingerprint: z.string(),
    remote: z.string().nullable(),
    createdAt: time,
    decidedAt: time,
    decidedBy: z.string().nullable(),
    decisionReason: z.string().nullable(),
    serial: z.string().nullable(),
  })
  .openapi("Enrollment", { description: "An enrollment request that waits for (or had) an operator's decision." });

export function enrollmentView(p: PendingEnrollment): z.infer<typeof EnrollmentSchema> {
  return {
    id: p.id,
    deviceId: p.deviceId,
    profile: p.profile,
    status: p.status,
    method: p.method,
    requestedBy: p.requestedBy,
    keyType: p.keyType,
    keyFingerprint: p.keyFingerprint,
    remote: p.remote,
    createdAt: iso(p.createdAt),
    decidedAt: iso(p.decidedAt),
    decidedBy: p.decidedBy,
    decisionReason: p.decisionReason,
    serial: p.serial,
  };
}

export const AuditEventSchema = z
  .object({
    id: z.number().int(),
    at: time,
    actor: z.string(),
    action: z.string(),
    outcome: z.enum(["success", "denied", "pending", "error"]),
    deviceId: z.string().nullable(),
    serial: z.string().nullable(),
    remote: z.string().nullable(),
    detail: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])).nullable(),
  })
  .openapi("AuditEvent");

export function auditView(a: StoredAuditEvent): z.infer<typeof AuditEventSchema> {
  return {
    id: a.id,
    at: iso(a.at),
    actor: a.actor,
    action: a.action,
    outcome: a.outcome,
    deviceId: a.deviceId ?? null,
    serial: a.serial ?? null,
    remote: a.remote ?? null,
    detail: a.detail ?? null,
  };
}

export const OperatorSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    role: z.enum(["admin", "operator", "auditor"]),
    createdAt: time,
    createdBy: z.string().nullable(),
    expiresAt: time,
    revokedAt: time,
  })
  .openapi("Operator");

export function operatorView(o: OperatorRecord): z.infer<typeof OperatorSchema> {
  return {
    id: o.id,
    name: o.name,
    role: o.role,
    createdAt: iso(o.createdAt),
    createdBy: o.createdBy,
    expiresAt: iso(o.expiresAt),
    revokedAt: iso(o.revokedAt),
  };
}

export const IdevidSchema = z
  .object({ fingerprint: z.string(), subject: z.string(), boundAt: time, revokedAt: time })
  .openapi("IdevidBinding");

export function idevidView(b: IdevidBinding): z.infer<typeof IdevidSchema> {
  return { fingerprint: b.fingerprint, subject: b.subject, boundAt: iso(b.boundAt), revokedAt: iso(b.revokedAt) };
}

export const DeviceIdevidSchema = z
  .object({ deviceId: z.string(), fingerprint: z.string(), subject: z.string(), boundAt: time })
  .openapi("DeviceIdevidBinding", { description: "A manufacturer certificate (IDevID) bound to a device id." });

export function deviceIdevidView(b: IdevidBinding): z.infer<typeof DeviceIdevidSchema> {
  return { deviceId: b.deviceId, fingerprint: b.fingerprint, subject: b.subject, boundAt: iso(b.boundAt) };
}

export const ErrorSchema = z
  .object({
    error: z.object({
      code: z.string().openapi({ example: "unknown_device" }),
      message: z.string(),
      issues: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
    }),
  })
  .openapi("Error");

export const ReportedStatusSchema = z
  .object({
    state: z.string(),
    session: z.number(),
    reportedAt: time,
    lastSeenAt: time,
    certSerial: z.string().nullable(),
    certNotAfter: time,
    keyAlg: z.string().nullable(),
    nextRenewAt: time,
    agentVersion: z.string().nullable(),
    lastRenew: z.object({ at: z.string(), ok: z.boolean(), error: z.string().optional() }).nullable(),
    source: z.enum(["device", "server"]),
  })
  .openapi("ReportedStatus", { description: "What the device last said over MQTT (the session rule applied)." });

export function reportedStatusView(s: DeviceStatusRecord): z.infer<typeof ReportedStatusSchema> {
  return {
    state: s.state,
    session: s.session,
    reportedAt: iso(s.reportedAt),
    // 0: never heard from (a status the server wrote before the device ever reported).
    lastSeenAt: s.lastSeenAt.getTime() > 0 ? iso(s.lastSeenAt) : null,
    certSerial: s.certSerial,
    certNotAfter: iso(s.certNotAfter),
    keyAlg: s.keyAlg,
    nextRenewAt: iso(s.nextRenewAt),
    agentVersion: s.agentVersion,
    lastRenew: s.lastRenew,
    source: s.source,
  };
}

export const DeviceEventSchema = z
  .object({
    seq: z.number(),
    id: z.string(),
    type: z.string(),
    at: time,
    receivedAt: time,
    body: z.record(z.string(), z.unknown()),
  })
  .openapi("DeviceEvent");

export function deviceEventView(e: DeviceEventRecord): z.infer<typeof DeviceEventSchema> {
  return { seq: e.seq, id: e.eventId, type: e.type, at: iso(e.at), receivedAt: iso(e.receivedAt), body: e.body };
}

export const CommandSchema = z
  .object({
    opId: z.string(),
    batchId: z.string(),
    deviceId: z.string(),
    command: z.string(),
    state: z.enum(["queued", "sent", "succeeded", "failed", "expired"]),
    createdAt: time,
    createdBy: z.string(),
    expiresAt: time,
    sentAt: time,
    resultAt: time,
    error: z.string().nullable(),
  })
  .openapi("Command");

export function commandView(c: CommandRecord): z.infer<typeof CommandSchema> {
  return {
    ...c,
    createdAt: iso(c.createdAt),
    expiresAt: iso(c.expiresAt),
    sentAt: iso(c.sentAt),
    resultAt: iso(c.resultAt),
  };
}

export const MqttSessionSchema = z
  .object({
    serial: z.string(),
    remote: z.string().nullable(),
    connectedAt: time,
    disconnectedAt: time,
    closeReason: z.string().nullable(),
    tookOver: z.boolean(),
  })
  .openapi("MqttSession");

export function mqttSessionView(s: MqttSessionRecord): z.infer<typeof MqttSessionSchema> {
  return {
    serial: s.serial,
    remote: s.remote,
    connectedAt: iso(s.connectedAt),
    disconnectedAt: iso(s.disconnectedAt),
    closeReason: s.closeReason,
    tookOver: s.tookOver !== null,
  };
}

export const FindingSchema = z
  .object({
    check: z.enum(FLEET_CHECKS),
    severity: z.enum(["critical", "high", "medium", "low"]),
    deviceId: z.string(),
    serial: z.string().nullable(),
    message: z.string(),
  })
  .openapi("Finding");

export const FleetAuditSchema = z
  .object({
    at: time,
    parameters: z.object({
      notSeenFor: z.number(),
      cloneWindow: z.number(),
      cloneTakeovers: z.number(),
      expiringWithin: z.number().nullable(),
    }),
    counts: z.record(z.string(), z.number()),
    truncated: z.array(z.string()),
    findings: z.array(FindingSchema),
  })
  .openapi("FleetAudit");

export function fleetAuditView(r: FleetAuditReport): z.infer<typeof FleetAuditSchema> {
  return { ...r, at: iso(r.at) };
}

export const MetadataSchema = z
  .object({ owner: z.string().nullable(), location: z.string().nullable(), updatedAt: time, updatedBy: z.string() })
  .openapi("DeviceMetadata");

export function metadataView(m: DeviceMetadata): z.infer<typeof MetadataSchema> {
  return { owner: m.owner, location: m.location, updatedAt: iso(m.updatedAt), updatedBy: m.updatedBy };
}

export const ExpiringSchema = z
  .object({
    deviceId: z.string(),
    profile: z.string(),
    serial: z.string().nullable(),
    notAfter: time,
    daysLeft: z.number(),
    owner: z.string().nullable(),
    location: z.string().nullable(),
    lastSeenAt: time,
    reportedState: z.string().nullable(),
  })
  .openapi("ExpiringCertificate");

export function expiringView(r: ExpiringRow): z.infer<typeof ExpiringSchema> {
  return {
    deviceId: r.device.id,
    profile: r.device.profile,
    serial: r.device.currentSerial,
    notAfter: iso(r.device.currentNotAfter),
    daysLeft: Math.round((r.secondsLeft / 86400) * 10) / 10,
    owner: r.metadata?.owner ?? null,
    location: r.metadata?.location ?? null,
    lastSeenAt: r.reported && r.reported.lastSeenAt.getTime() > 0 ? iso(r.reported.lastSeenAt) : null,
    reportedState: r.reported?.state ?? null,
  };
}

export const DeviceDetailSchema = DeviceSchema.extend({
  owner: z.string().nullable(),
  location: z.string().nullable(),
  certificates: z.array(CertificateSchema),
  workloadSvids: z.array(WorkloadSvidSchema),
  tokens: z.array(TokenSchema),
  idevid: IdevidSchema.nullable(),
  reported: ReportedStatusSchema.nullable(),
  events: z.array(DeviceEventSchema),
  commands: z.array(CommandSchema),
  mqttSessions: z.array(MqttSessionSchema),
  audit: z.array(AuditEventSchema),
}).openapi("DeviceDetail");

export function deviceDetailView(d: DeviceDetail, trustDomain: string, now: Date): z.infer<typeof DeviceDetailSchema> {
  return {
    ...deviceView(d.device, trustDomain),
    owner: d.metadata?.owner ?? null,
    location: d.metadata?.location ?? null,
    certificates: d.certificates.map(certificateView),
    workloadSvids: d.workloadSvids.map((c) => workloadSvidView(c, now)),
    tokens: d.tokens.map((t) => tokenView(t, now)),
    idevid: d.idevid ? idevidView(d.idevid) : null,
    reported: d.reported ? reportedStatusView(d.reported) : null,
    events: d.events.map(deviceEventView),
    commands: d.commands.map(commandView),
    mqttSessions: d.mqttSessions.map(mqttSessionView),
    audit: d.audit.map(auditView),
  };
}
