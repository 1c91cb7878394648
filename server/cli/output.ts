import type { z } from "@hono/zod-openapi";
import type { ChainReport } from "../authority/audit-chain.ts";
import type {
  AuditEventSchema,
  CommandSchema,
  DeviceDetailSchema,
  DeviceSchema,
  EnrollmentSchema,
  ExpiringSchema,
  FleetAuditSchema,
  OperatorSchema,
  TokenSchema,
} from "../frontends/http/views.ts";

/**
 * CLI output: with --json the operator API's JSON shapes (one object, or one per
 * line for lists); otherwise short human-readable lines.
 */

type Row = Record<string, unknown>;
const out = (s: string) => process.stdout.write(s);
const dash = (v: unknown) => (v === null || v === undefined ? "-" : String(v));

export function printList<T extends Row>(
  items: T[],
  json: boolean,
  columns: [string, keyof T, number][],
  continued = false,
): void {
  if (json) {
    for (const item of items) out(`${JSON.stringify(item)}\n`);
    return;
  }
  if (!continued) out(`${columns.map(([title, , width]) => title.padEnd(width)).join(" ")}\n`);
  for (const item of items) out(`${columns.map(([, key, width]) => dash(item[key]).padEnd(width)).join(" ")}\n`);
}

export function printObject(value: Row, json: boolean): void {
  if (json) {
    out(`${JSON.stringify(value)}\n`);
    return;
  }
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== "object" || v === null) out(`${k.padEnd(16)} ${dash(v)}\n`);
  }
}

/** On stderr, so that stdout stays one JSON object per line. */
export function printNextCursor(cursor: string | null): void {
  if (cursor) process.stderr.write(`more: --cursor ${cursor}\n`);
}

export const DEVICE_COLUMNS: [string, keyof z.infer<typeof DeviceSchema>, number][] = [
  ["ID", "id", 24],
  ["STATUS", "status", 14],
  ["PROFILE", "profile", 10],
  ["EXPIRES", "currentNotAfter", 24],
  ["LAST ENROLLED", "lastEnrolledAt", 24],
  ["PROTOCOL", "protocol", 8],
];

export const TOKEN_COLUMNS: [string, keyof z.infer<typeof TokenSchema>, number][] = [
  ["ID", "id", 18],
  ["DEVICE", "deviceId", 24],
  ["STATE", "state", 8],
  ["PROFILE", "profile", 10],
  ["EXPIRES", "expiresAt", 24],
];

export const ENROLLMENT_COLUMNS: [string, keyof z.infer<typeof EnrollmentSchema>, number][] = [
  ["ID", "id", 18],
  ["DEVICE", "deviceId", 24],
  ["STATUS", "status", 9],
  ["KEY", "keyType", 8],
  ["REQUESTED", "createdAt", 24],
  ["BY", "requestedBy", 24],
];

export const AUDIT_COLUMNS: [string, keyof z.infer<typeof AuditEventSchema>, number][] = [
  ["ID", "id", 8],
  ["AT", "at", 24],
  ["ACTION", "action", 22],
  ["OUTCOME", "outcome", 8],
  ["DEVICE", "deviceId", 20],
  ["ACTOR", "actor", 24],
];

export const OPERATOR_COLUMNS: [string, keyof z.infer<typeof OperatorSchema>, number][] = [
  ["ID", "id", 16],
  ["NAME", "name", 16],
  ["ROLE", "role", 9],
  ["EXPIRES", "expiresAt", 24],
  ["REVOKED", "revokedAt", 24],
];

export function printDevice(d: z.infer<typeof DeviceDetailSchema>, json: boolean): void {
  if (json) {
    out(`${JSON.stringify(d)}\n`);
    return;
  }
  out(
    `device    ${d.id}\nidentity  ${d.identity}\nstatus    ${d.status}\nprofile   ${d.profile}\n` +
      `current   ${dash(d.currentSerial)} (expires ${dash(d.currentNotAfter)})\nenrolled  ${dash(d.lastEnrolledAt)}${d.protocol ? ` over ${d.protocol.toUpperCase()}` : ""}\n` +
      `owner     ${dash(d.owner)}\nlocation  ${dash(d.location)}\n`,
  );
  if (d.names)
    out(`names     ${[...d.names.dns.map((n) => `DNS:${n}`), ...d.names.ip.map((n) => `IP:${n}`)].join(", ")}\n`);
  if (d.broker) out(`broker    gateway ${d.broker.gateway} (appliance ${d.broker.name})\n`);
  if (d.idevid) out(`idevid    ${d.idevid.subject}${d.idevid.revokedAt ? " (revoked)" : ""}\n`);
  const r = d.reported;
  if (r) {
    out(
      `\nreported (MQTT, ${r.source === "server" ? "written by the server" : "by the device"}):\n` +
        `  state      ${r.state} (session ${r.session}, at ${dash(r.reportedAt)})\n` +
        `  last seen  ${dash(r.lastSeenAt)}\n` +
        `  cert       ${dash(r.certSerial)} (expires ${dash(r.certNotAfter)}, ${dash(r.keyAlg)})\n` +
        `  next renew ${dash(r.nextRenewAt)}\n  agent      ${dash(r.agentVersion)}\n`,
    );
    if (r.lastRenew)
      out(`  last renew ${r.lastRenew.at} ${r.lastRenew.ok ? "ok" : `failed: ${dash(r.lastRenew.error)}`}\n`);
  } else out("\nreported   nothing over MQTT yet\n");
  out("\ncertificates:\n");
  for (const c of d.certificates) {
    out(`  ${c.serial}  ${c.status.padEnd(7)} ${c.keyType.padEnd(8)} ${c.notBefore} .. ${c.notAfter}  ${c.method}\n`);
  }
  if (d.workloadSvids.length) {
    out("\nworkload SVIDs:\n");
    for (const w of d.workloadSvids) {
      out(`  ${w.serial}  ${w.status.padEnd(7)} expires ${dash(w.notAfter)}  ${w.spiffeId}  (entry ${w.entryId})\n`);
    }
  }
  if (d.events.length) {
    out("\nrecent events:\n");
    for (const e of d.events) out(`  ${e.at}  ${e.type}  ${e.id}\n`);
  }
  if (d.commands.length) {
    out("\nrecent commands:\n");
    for (const c of d.commands)
      out(`  ${c.createdAt}  ${c.command.padEnd(9)} ${c.state.padEnd(9)} ${c.opId}${c.error ? ` ${c.error}` : ""}\n`);
  }
  if (d.mqttSessions.length) {
    out("\nmqtt connections:\n");
    for (const m of d.mqttSessions) {
      out(
        `  ${m.connectedAt} .. ${dash(m.disconnectedAt)}  ${dash(m.remote)}  ${dash(m.closeReason)}${m.tookOver ? " (took over)" : ""}\n`,
      );
    }
  }
  out("\nrecent audit:\n");
  for (const a of d.audit) out(`  ${a.at}  ${a.action}  ${a.outcome}  ${a.actor}\n`);
}

export function printChainReport(r: ChainReport, json: boolean): void {
  if (json) {
    out(`${JSON.stringify(r)}\n`);
    return;
  }
  if (r.ok) out(`audit chain intact: ${r.records} records, head ${dash(r.head)} (record ${dash(r.lastId)})\n`);
  else out(`audit chain BROKEN at record ${r.broken?.id}: ${r.broken?.problem}\n(${r.records} records read)\n`);
}

export const COMMAND_COLUMNS: [string, keyof z.infer<typeof CommandSchema>, number][] = [
  ["OP", "opId", 20],
  ["DEVICE", "deviceId", 24],
  ["COMMAND", "command", 9],
  ["STATE", "state", 9],
  ["CREATED", "createdAt", 24],
  ["RESULT", "resultAt", 24],
];

export function printFleetAudit(r: z.infer<typeof FleetAuditSchema>, json: boolean): void {
  if (json) {
    out(`${JSON.stringify(r)}\n`);
    return;
  }
  const total = r.findings.length;
  out(`fleet audit at ${r.at}: ${total === 0 ? "no findings" : `${total} finding${total === 1 ? "" : "s"}`}\n`);
  for (const [check, n] of Object.entries(r.counts)) if (n > 0) out(`  ${check.padEnd(28)} ${n}\n`);
  if (r.truncated.length) out(`  (more than the limit: ${r.truncated.join(", ")})\n`);
  if (total) out("\n");
  for (const f of r.findings) {
    out(`${f.severity.padEnd(9)} ${f.check.padEnd(27)} ${f.deviceId.padEnd(24)} ${f.message}\n`);
  }
}

export const EXPIRING_COLUMNS: [string, keyof z.infer<typeof ExpiringSchema>, number][] = [
  ["DEVICE", "deviceId", 24],
  ["PROFILE", "profile", 10],
  ["EXPIRES", "notAfter", 24],
  ["DAYS", "daysLeft", 6],
  ["OWNER", "owner", 20],
  ["LOCATION", "location", 20],
  ["LAST SEEN", "lastSeenAt", 24],
];

/** RFC 4180: fields with a comma, quote or line break are quoted, quotes doubled. */
function csvField(v: unknown): string {
  const s = v === null || v === undefined ? "" : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function printCsv<T extends Row>(items: T[], columns: (keyof T & string)[], header: boolean): void {
  if (header) out(`${columns.join(",")}\r\n`);
  for (const item of items) out(`${columns.map((c) => csvField(item[c])).join(",")}\r\n`);
}
