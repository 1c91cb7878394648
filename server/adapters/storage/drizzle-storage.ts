import { eq, getTableColumns, is, Placeholder, type SQL, sql, type Table } from "drizzle-orm";
import type { Precondition, Write } from "../../ports/storage.ts";
import { StorageConflictError } from "../../ports/storage.ts";
import { auditReaders } from "./readers/audit.ts";
import { certificateReaders } from "./readers/certificates.ts";
import { StorageConnection } from "./readers/connection.ts";
import { deviceReaders } from "./readers/devices.ts";
import { enrollmentReaders } from "./readers/enrollments.ts";
import { fleetAuditReaders } from "./readers/fleet-audit.ts";
import { mqttReaders } from "./readers/mqtt.ts";
import { operatorReaders } from "./readers/operators.ts";
import { revocationReaders } from "./readers/revocations.ts";
import { tokenReaders } from "./readers/tokens.ts";
import {
  auditEvents,
  bootstrapTokens,
  certificates,
  commands,
  dashboardSessions,
  deviceEvents,
  deviceMetadata,
  deviceStatus,
  devices,
  fleetAuditRuns,
  idevidBindings,
  mqttSessions,
  operators,
  pendingEnrollments,
} from "./schema.ts";
import type { CompiledWrite } from "./sqlite-batch.mjs";

export type { Db, Prepared } from "./readers/connection.ts";

/** The readers of every aggregate (readers/*.ts), over one connection. */
const AggregateReaders = fleetAuditReaders(
  mqttReaders(
    auditReaders(
      operatorReaders(
        enrollmentReaders(tokenReaders(revocationReaders(certificateReaders(deviceReaders(StorageConnection))))),
      ),
    ),
  ),
);

/**
 * Readers and write builders shared by the better-sqlite3 and D1 adapters; the
 * adapters differ only in how a write set is made atomic.
 */
export class DrizzleReaders extends AggregateReaders {
  /**
   * One write as SQL statements with positional parameters, executed by the adapter
   * inside its atomic unit (a better-sqlite3 transaction; a D1 batch takes the same
   * form). The SQL of each kind is built once; per write only the parameters are
   * filled in.
   */
  protected compile(w: Write): CompiledWrite[] {
    const values = writeValues(w);
    return this.writeTemplates(w).map((t) => ({
      sql: t.sql,
      params: t.params.map((p) => (is(p, Placeholder) ? values[p.name] : p)),
    }));
  }

  /**
   * An audit record without its place in the hash chain, for a store that cannot
   * compute SHA-256 in SQL (D1): its adapter seals the rows afterwards, in id order.
   */
  protected compileUnsealedAudit(w: Extract<Write, { kind: "audit" }>): CompiledWrite {
    const values = writeValues(w);
    return {
      sql: "INSERT INTO audit_events (at, actor, action, outcome, device_id, serial, remote, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      params: AUDIT_FIELDS.map((f) => values[f]),
    };
  }

  private readonly templates = new Map<string, Template[]>();

  private writeTemplates(w: Write): Template[] {
    const key = w.kind === "require" ? `require:${w.precondition.name}` : w.kind;
    let t = this.templates.get(key);
    if (!t) {
      t =
        w.kind === "require"
          ? [PRECONDITIONS[w.precondition.name]]
          : [...(RAW[w.kind] ?? [this.writeQuery(w.kind).toSQL()]), ...(ALSO[w.kind] ?? [])];
      this.templates.set(key, t);
    }
    return t;
  }

  private writeQuery(kind: Write["kind"]): { toSQL(): Template } {
    switch (kind) {
      case "upsertDevice": {
        const set: Record<string, SQL> = {};
        for (const [key, column] of Object.entries(getTableColumns(devices))) {
          if (key !== "id") set[key] = sql.raw(`excluded."${column.name}"`);
        }
        // Every change of the row raises its revision (the device_unchanged precondition).
        set.revision = sql.raw(`"devices"."revision" + 1`);
        return this.db.insert(devices).values(placeholders(devices)).onConflictDoUpdate({ target: devices.id, set });
      }
      case "insertCertificate":
        return this.db.insert(certificates).values(placeholders(certificates));
      case "redeemToken":
        return this.db
          .update(bootstrapTokens)
          .set({ usedAt: sql`${sql.placeholder("at")}`, usedSerial: sql`${sql.placeholder("serial")}` })
          .where(eq(bootstrapTokens.id, sql.placeholder("tokenId")));
      case "insertToken":
        return this.db.insert(bootstrapTokens).values(placeholders(bootstrapTokens));
      case "bindIdevid":
        return this.db.insert(idevidBindings).values(placeholders(idevidBindings));
      case "insertOperator":
        return this.db.insert(operators).values(placeholders(operators));
      case "insertPending":
        return this.db.insert(pendingEnrollments).values(placeholders(pendingEnrollments));
      case "insertCommand":
        return this.db.insert(commands).values(placeholders(commands));
      case "openMqttSession":
        return this.db.insert(mqttSessions).values(placeholders(mqttSessions));
      case "insertDashboardSession":
        return this.db.insert(dashboardSessions).values(placeholders(dashboardSessions));
      case "setDeviceMetadata": {
        const set: Record<string, SQL> = {};
        for (const [key, column] of Object.entries(getTableColumns(deviceMetadata))) {
          if (key !== "deviceId") set[key] = sql.raw(`excluded."${column.name}"`);
        }
        return this.db
          .insert(deviceMetadata)
          .values(placeholders(deviceMetadata))
          .onConflictDoUpdate({ target: deviceMetadata.deviceId, set });
      }
      default:
        throw new Error(`no SQL for write ${kind}`);
    }
  }
}

/**
 * `{ column: placeholder }` for every column of a table. The placeholders are plain SQL,
 * so drizzle binds what it is given: toDriver() converts values to driver values first.
 */
function placeholders<T extends Table>(table: T): Record<keyof T["_"]["columns"], SQL> {
  const out: Record<string, SQL> = {};
  for (const key of Object.keys(getTableColumns(table))) out[key] = sql`${sql.placeholder(key)}`;
  return out as Record<keyof T["_"]["columns"], SQL>;
}

/** A record as driver values (Date → ms, JSON → text), through each column's own mapping. */
function toDriver(table: Table, values: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const record = values as Record<string, unknown>;
  for (const [key, column] of Object.entries(getTableColumns(table))) {
    const v = record[key];
    out[key] = v === null || v === undefined ? null : column.mapToDriverValue(v);
  }
  return out;
}

function toBuffer(bytes: Uint8Array): Buffer {
  // drizzle's blob(buffer) column wants a Buffer; D1 and better-sqlite3 both accept one.
  return bytes instanceof Buffer ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Maps a driver's UNIQUE/PRIMARY KEY violation, or a write guard's CHECK, to the port's conflict error. */
export function asConflict(err: unknown): StorageConflictError | undefined {
  for (let e: unknown = err; e; e = (e as { cause?: unknown }).cause) {
    const message = String((e as { message?: unknown }).message ?? "");
    const m = /(?:UNIQUE|CHECK) constraint failed: ([\w.]+)/.exec(message);
    if (m) return new StorageConflictError(message, m[1] as string);
  }
  return undefined;
}

type Template = { sql: string; params: unknown[] };

/** Hand-written SQL (with named parameters, in order) for the writes that touch many rows. */
function raw(text: string, ...names: string[]): Template {
  return { sql: text.replace(/\s+/g, " ").trim(), params: names.map((n) => sql.placeholder(n)) };
}

const AUDIT_FIELDS = ["at", "actor", "action", "outcome", "deviceId", "serial", "remote", "detail"];

/** A certificate's first use (CertificateRecord.firstUsedAt); later uses change nothing. */
const MARK_USED = "UPDATE certificates SET first_used_at = ? WHERE serial = ? AND first_used_at IS NULL";

const REVOKED_CERTIFICATES_TO_FEED = `INSERT INTO revocations (serial, issuer, device_id, revoked_at, reason, not_after)
  SELECT serial, issuer, device_id, ?, ?, not_after FROM certificates`;

/**
 * The writes that are conditional or set-based. Each touches only the rows of one
 * device, token or certificate through an index, so its cost does not grow with the
 * number of certificates already revoked.
 */
const RAW: Partial<Record<Write["kind"], Template[]>> = {
  markCertificateUsed: [raw(MARK_USED, "at", "serial")],
  // The CHECK on write_guards fails (and the transaction with it) when the count is over.
  guardApplianceQuota: [
    raw(
      `INSERT INTO write_guards (name, ok) SELECT 'appliance_quota', count(*) <= ? FROM devices
       WHERE id > ? AND id < ? AND status IN ('active', 'pending')`,
      "max",
      "from",
      "to",
    ),
    raw("DELETE FROM write_guards"),
  ],
  revokeDevice: [
    raw(
      `${REVOKED_CERTIFICATES_TO_FEED} WHERE device_id = ? AND status = 'valid' AND not_after > ?`,
      "at",
      "reason",
      "deviceId",
      "at",
    ),
    raw(
      `UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ?
       WHERE device_id = ? AND status = 'valid' AND not_after > ?`,
      "at",
      "reason",
      "deviceId",
      "at",
    ),
    raw(
      "UPDATE devices SET status = ?, updated_at = ?, revision = revision + 1 WHERE id = ?",
      "status",
      "at",
      "deviceId",
    ),
    raw(
      "UPDATE bootstrap_tokens SET revoked_at = ? WHERE device_id = ? AND used_at IS NULL AND revoked_at IS NULL",
      "at",
      "deviceId",
    ),
    raw("UPDATE idevid_bindings SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL", "at", "deviceId"),
    raw(
      `UPDATE pending_enrollments SET status = 'rejected', updated_at = ?, decided_at = ?, decided_by = 'revocation',
       decision_reason = 'the device was revoked' WHERE device_id = ? AND status IN ('pending', 'approved')`,
      "at",
      "at",
      "deviceId",
    ),
  ],
  revokeCertificate: [
    raw(`${REVOKED_CERTIFICATES_TO_FEED} WHERE serial = ? AND status = 'valid'`, "at", "reason", "serial"),
    raw(
      "UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ? WHERE serial = ? AND status = 'valid'",
      "at",
      "reason",
      "serial",
    ),
  ],
  reinstateDevice: [
    raw(
      `UPDATE devices SET status = 'pending', updated_at = ?, current_serial = NULL, current_not_after = NULL,
       revision = revision + 1 WHERE id = ? AND status IN ('revoked', 'decommissioned')`,
      "at",
      "deviceId",
    ),
  ],
  revokeToken: [
    raw(
      "UPDATE bootstrap_tokens SET revoked_at = ? WHERE id = ? AND used_at IS NULL AND revoked_at IS NULL",
      "at",
      "tokenId",
    ),
  ],
  revokeOperator: [raw("UPDATE operators SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", "at", "operatorId")],
  decidePending: [
    raw(
      `UPDATE pending_enrollments SET status = ?, updated_at = ?, decided_at = coalesce(decided_at, ?),
       decided_by = coalesce(?, decided_by), decision_reason = coalesce(?, decision_reason), serial = coalesce(?, serial)
       WHERE id = ? AND status = ?`,
      "status",
      "at",
      "at",
      "by",
      "reason",
      "serial",
      "id",
      "from",
    ),
  ],
  // The session rule (ports/storage.ts recordStatus), decided inside the upsert.
  recordStatus: [
    raw(
      `INSERT INTO device_status (device_id, state, session, reported_at, last_seen_at, cert_serial, cert_not_after,
         key_alg, next_renew_at, agent_version, last_renew, source)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'device')
       ON CONFLICT (device_id) DO UPDATE SET state = excluded.state, session = excluded.session,
         reported_at = excluded.reported_at, last_seen_at = max(device_status.last_seen_at, excluded.last_seen_at),
         cert_serial = excluded.cert_serial, cert_not_after = excluded.cert_not_after, key_alg = excluded.key_alg,
         next_renew_at = excluded.next_renew_at, agent_version = excluded.agent_version,
         last_renew = excluded.last_renew, source = 'device'
       WHERE excluded.session > device_status.session
         OR (excluded.session = device_status.session AND device_status.source = 'device'
             AND (excluded.reported_at >= device_status.reported_at OR ? = 1))`,
      "deviceId",
      "state",
      "session",
      "reportedAt",
      "lastSeenAt",
      "certSerial",
      "certNotAfter",
      "keyAlg",
      "nextRenewAt",
      "agentVersion",
      "lastRenew",
      "force",
    ),
  ],
  overwriteStatus: [
    raw(
      `INSERT INTO device_status (device_id, state, session, reported_at, last_seen_at, source)
       VALUES (?, ?, 0, ?, 0, 'server')
       ON CONFLICT (device_id) DO UPDATE SET state = excluded.state, reported_at = excluded.reported_at, source = 'server'`,
      "deviceId",
      "state",
      "at",
    ),
  ],
  touchDevice: [
    raw("UPDATE device_status SET last_seen_at = max(last_seen_at, ?) WHERE device_id = ?", "at", "deviceId"),
  ],
  insertEvent: [
    raw(
      `INSERT INTO device_events (device_id, event_id, type, at, received_at, body) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (device_id, event_id) DO NOTHING`,
      "deviceId",
      "eventId",
      "type",
      "at",
      "receivedAt",
      "body",
    ),
  ],
  markCommandSent: [
    raw("UPDATE commands SET state = 'sent', sent_at = ? WHERE op_id = ? AND state = 'queued'", "at", "opId"),
  ],
  commandResult: [
    raw(
      `UPDATE commands SET state = ?, result_at = ?, error = ?
       WHERE op_id = ? AND device_id = ? AND state IN ('queued', 'sent', 'expired')`,
      "state",
      "at",
      "error",
      "opId",
      "deviceId",
    ),
  ],
  expireCommands: [
    raw("UPDATE commands SET state = 'expired' WHERE state IN ('queued', 'sent') AND expires_at <= ?", "at"),
  ],
  closeMqttSession: [
    raw(
      "UPDATE mqtt_sessions SET disconnected_at = ?, close_reason = ? WHERE id = ? AND disconnected_at IS NULL",
      "at",
      "reason",
      "id",
    ),
  ],
  closeAllMqttSessions: [
    raw("UPDATE mqtt_sessions SET disconnected_at = ?, close_reason = ? WHERE disconnected_at IS NULL", "at", "reason"),
  ],
  recordExpiryAlert: [
    raw(
      `INSERT INTO expiry_alerts (serial, threshold_days, device_id, sent_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (serial, threshold_days) DO NOTHING`,
      "serial",
      "thresholdDays",
      "deviceId",
      "at",
    ),
  ],
  touchDashboardSession: [
    raw(
      "UPDATE dashboard_sessions SET last_seen_at = ?, expires_at = ? WHERE id_hash = ?",
      "at",
      "expiresAt",
      "idHash",
    ),
  ],
  deleteDashboardSession: [raw("DELETE FROM dashboard_sessions WHERE id_hash = ?", "idHash")],
  purgeDashboardSessions: [
    raw(
      `DELETE FROM dashboard_sessions WHERE expires_at <= ? OR operator_id IN
       (SELECT id FROM operators WHERE revoked_at IS NOT NULL OR (expires_at IS NOT NULL AND expires_at <= ?))`,
      "at",
      "at",
    ),
  ],
  recordFleetAudit: [
    raw(
      "INSERT INTO fleet_audit_runs (at, actor, counts, truncated, findings) VALUES (?, ?, ?, ?, ?)",
      "at",
      "actor",
      "counts",
      "truncated",
      "findings",
    ),
    raw("DELETE FROM fleet_audit_runs WHERE id <= (SELECT max(id) FROM fleet_audit_runs) - ?", "keep"),
  ],
  // The hash chain: the previous record's hash is read inside the same transaction
  // that appends, so concurrent writers (server, CLI) chain in commit order.
  // edgeid_audit_hash is registered on every connection (sqlite-batch.mjs).
  audit: [
    raw(
      `INSERT INTO audit_events (at, actor, action, outcome, device_id, serial, remote, detail, prev_hash, hash)
       SELECT ?, ?, ?, ?, ?, ?, ?, ?, h.prev, edgeid_audit_hash(h.prev, ?, ?, ?, ?, ?, ?, ?, ?)
       FROM (SELECT coalesce((SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1), '') AS prev) AS h`,
      ...AUDIT_FIELDS,
      ...AUDIT_FIELDS,
    ),
  ],
};

/** A precondition's parameters as driver values (an absent device is revision -1). */
function preconditionValues(p: Precondition): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(p)) out[k] = v instanceof Date ? v.getTime() : v;
  if (p.name === "device_unchanged") out.revision = p.revision ?? -1;
  if (p.name === "appliance_count") Object.assign(out, { from: `${p.gatewayId}~`, to: `${p.gatewayId}~\x7f` });
  return out;
}

/** A precondition: a row that fails its CHECK is inserted only when the condition fails (schema.ts write_guards). */
function precondition(name: Precondition["name"], failsWhen: string, ...params: string[]): Template {
  return raw(`INSERT INTO write_guards (name, ok) SELECT '${name}', 0 WHERE ${failsWhen}`, ...params);
}

/** One statement per precondition (ports/storage.ts Precondition); each reads one row by its key. */
const PRECONDITIONS: Record<Precondition["name"], Template> = {
  device_unchanged: precondition(
    "device_unchanged",
    "coalesce((SELECT revision FROM devices WHERE id = ?), -1) <> ?",
    "deviceId",
    "revision",
  ),
  device_active: precondition(
    "device_active",
    "coalesce((SELECT status FROM devices WHERE id = ?), '') <> 'active'",
    "deviceId",
  ),
  device_not_revoked: precondition(
    "device_not_revoked",
    "coalesce((SELECT status FROM devices WHERE id = ?), '') NOT IN ('pending', 'active')",
    "deviceId",
  ),
  certificate_valid: precondition(
    "certificate_valid",
    "NOT EXISTS (SELECT 1 FROM certificates WHERE serial = ? AND status = 'valid' AND not_after > ?)",
    "serial",
    "at",
  ),
  certificate_unused: precondition(
    "certificate_unused",
    "EXISTS (SELECT 1 FROM certificates WHERE serial = ? AND first_used_at IS NOT NULL)",
    "serial",
  ),
  token_usable: precondition(
    "token_usable",
    `NOT EXISTS (SELECT 1 FROM bootstrap_tokens WHERE id = ? AND used_at IS NULL AND revoked_at IS NULL
     AND expires_at > ?)`,
    "tokenId",
    "at",
  ),
  token_unused: precondition(
    "token_unused",
    "NOT EXISTS (SELECT 1 FROM bootstrap_tokens WHERE id = ? AND used_at IS NULL AND revoked_at IS NULL)",
    "tokenId",
  ),
  idevid_bound: precondition(
    "idevid_bound",
    "NOT EXISTS (SELECT 1 FROM idevid_bindings WHERE device_id = ? AND fingerprint = ? AND revoked_at IS NULL)",
    "deviceId",
    "fingerprint",
  ),
  pending_status: precondition(
    "pending_status",
    "NOT EXISTS (SELECT 1 FROM pending_enrollments WHERE id = ? AND status = ?)",
    "id",
    "status",
  ),
  appliance_count: precondition(
    "appliance_count",
    "(SELECT count(*) FROM devices WHERE id > ? AND id < ? AND status IN ('active', 'pending')) <> ?",
    "from",
    "to",
    "count",
  ),
  operator_active: precondition(
    "operator_active",
    `NOT EXISTS (SELECT 1 FROM operators WHERE id = ? AND revoked_at IS NULL
     AND (expires_at IS NULL OR expires_at > ?))`,
    "operatorId",
    "at",
  ),
};

/** Statements that follow a write's own (the same parameters). */
const ALSO: Partial<Record<Write["kind"], Template[]>> = {
  // One key, one identity: the key is claimed for the device unless the device holds it
  // already; another device's claim fails the primary key (KEY_HOLDER_CONSTRAINT).
  insertCertificate: [
    raw(
      `INSERT INTO device_keys (key_fingerprint, device_id) SELECT ?, ?
       WHERE NOT EXISTS (SELECT 1 FROM device_keys WHERE key_fingerprint = ? AND device_id = ?)`,
      "keyFingerprint",
      "deviceId",
      "keyFingerprint",
      "deviceId",
    ),
  ],
  // A connection or a status report with a certificate of the device is a use of it.
  openMqttSession: [raw(`${MARK_USED} AND device_id = ?`, "connectedAt", "serial", "deviceId")],
  recordStatus: [raw(`${MARK_USED} AND device_id = ?`, "lastSeenAt", "certSerial", "deviceId")],
};

/** The parameters of one write, as driver values. */
function writeValues(w: Write): Record<string, unknown> {
  switch (w.kind) {
    case "require":
      return preconditionValues(w.precondition);
    case "upsertDevice":
      // A new row starts at revision 0; an existing one is raised in SQL.
      return { ...toDriver(devices, w.device), revision: 0 };
    case "markCertificateUsed":
      return { serial: w.serial, at: w.at.getTime() };
    case "insertCertificate":
      return toDriver(certificates, { ...w.certificate, der: toBuffer(w.certificate.der) });
    case "redeemToken":
      return { tokenId: w.tokenId, at: w.at.getTime(), serial: w.serial };
    case "insertToken":
      return toDriver(bootstrapTokens, w.token);
    case "bindIdevid":
      return toDriver(idevidBindings, w.binding);
    case "insertOperator":
      return toDriver(operators, w.operator);
    case "revokeOperator":
      return { operatorId: w.operatorId, at: w.at.getTime() };
    case "revokeDevice":
      return { deviceId: w.deviceId, at: w.at.getTime(), reason: w.reason, status: w.status };
    case "revokeCertificate":
      return { serial: w.serial, at: w.at.getTime(), reason: w.reason };
    case "revokeToken":
      return { tokenId: w.tokenId, at: w.at.getTime() };
    case "reinstateDevice":
      return { deviceId: w.deviceId, at: w.at.getTime() };
    case "insertPending":
      return toDriver(pendingEnrollments, { ...w.pending, csr: toBuffer(w.pending.csr) });
    case "decidePending":
      return {
        id: w.id,
        from: w.from,
        status: w.status,
        at: w.at.getTime(),
        by: w.by,
        reason: w.reason,
        serial: w.serial,
      };
    case "audit":
      return toDriver(auditEvents, w.event);
    case "recordStatus":
      return { ...toDriver(deviceStatus, w.status), force: w.force ? 1 : 0 };
    case "overwriteStatus":
      return { deviceId: w.deviceId, state: w.state, at: w.at.getTime() };
    case "touchDevice":
      return { deviceId: w.deviceId, at: w.at.getTime() };
    case "guardApplianceQuota":
      return { from: `${w.gatewayId}~`, to: `${w.gatewayId}~\x7f`, max: w.max };
    case "insertEvent":
      return toDriver(deviceEvents, w.event);
    case "insertCommand":
      return toDriver(commands, w.command);
    case "markCommandSent":
      return { opId: w.opId, at: w.at.getTime() };
    case "commandResult":
      return { opId: w.opId, deviceId: w.deviceId, state: w.state, at: w.at.getTime(), error: w.error };
    case "expireCommands":
      return { at: w.at.getTime() };
    case "openMqttSession":
      return toDriver(mqttSessions, w.session);
    case "closeMqttSession":
      return { id: w.id, at: w.at.getTime(), reason: w.reason };
    case "closeAllMqttSessions":
      return { at: w.at.getTime(), reason: w.reason };
    case "setDeviceMetadata":
      return toDriver(deviceMetadata, w.metadata);
    case "recordExpiryAlert":
      return { serial: w.serial, thresholdDays: w.thresholdDays, deviceId: w.deviceId, at: w.at.getTime() };
    case "insertDashboardSession":
      return toDriver(dashboardSessions, w.session);
    case "touchDashboardSession":
      return { idHash: w.idHash, at: w.at.getTime(), expiresAt: w.expiresAt.getTime() };
    case "deleteDashboardSession":
      return { idHash: w.idHash };
    case "purgeDashboardSessions":
      return { at: w.at.getTime() };
    case "recordFleetAudit":
      return { ...toDriver(fleetAuditRuns, { ...w.run, id: null }), keep: w.keep };
  }
}
