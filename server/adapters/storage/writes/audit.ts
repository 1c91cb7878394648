import { auditEvents, fleetAuditRuns } from "../schema.ts";
import { raw, toDriver, type WriteTable } from "./write-entry.ts";

/** The audit columns the hash chain covers, in chain order (sqlite-batch.mjs auditHash). */
const AUDIT_FIELDS = ["at", "actor", "action", "outcome", "deviceId", "serial", "remote", "detail"];

/** Writes to the audit log and to the fleet audit's runs. */
export const auditWrites = {
  audit: {
    // The hash chain: the previous record's hash is read inside the same transaction
    // that appends, so concurrent writers (server, CLI) chain in commit order.
    // edgeid_audit_hash is registered on every connection (sqlite-batch.mjs).
    statements: () => [
      raw(
        `INSERT INTO audit_events (at, actor, action, outcome, device_id, serial, remote, detail, prev_hash, hash)
         SELECT ?, ?, ?, ?, ?, ?, ?, ?, h.prev, edgeid_audit_hash(h.prev, ?, ?, ?, ?, ?, ?, ?, ?)
         FROM (SELECT coalesce((SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1), '') AS prev) AS h`,
        ...AUDIT_FIELDS,
        ...AUDIT_FIELDS,
      ),
    ],
    // An audit record without its place in the hash chain, for a store that cannot
    // compute SHA-256 in SQL (D1): its adapter seals the rows afterwards, in id order.
    unsealedStatements: () => [
      raw(
        "INSERT INTO audit_events (at, actor, action, outcome, device_id, serial, remote, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        ...AUDIT_FIELDS,
      ),
    ],
    values: (w) => toDriver(auditEvents, w.event),
  },
  recordFleetAudit: {
    statements: () => [
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
    values: (w) => ({ ...toDriver(fleetAuditRuns, { ...w.run, id: null }), keep: w.keep }),
  },
} satisfies Partial<WriteTable>;
