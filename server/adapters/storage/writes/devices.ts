import { sql } from "drizzle-orm";
import { deviceMetadata, devices } from "../schema.ts";
import { REVOKED_CERTIFICATES_TO_FEED } from "./certificates.ts";
import { raw, toDriver, upsertRow, type WriteTable, writeOfFields } from "./write-entry.ts";

/** Writes to devices: the inventory row, its lifecycle, its metadata, a gateway's appliance quota. */
export const deviceWrites = {
  upsertDevice: {
    // Every change of the row raises its revision (the device_unchanged precondition).
    // Status and profile are set apart, each only where it changes: a renewal changes
    // neither, and a first enrollment only the status, so neither rewrites the entries
    // of the indexes on the other (two of the five on this table) for nothing.
    statements: (db) => [
      upsertRow(
        db,
        devices,
        devices.id,
        {
          revision: sql.raw(`"devices"."revision" + 1`),
          // A write that does not say which protocol keeps the one the device last enrolled with.
          protocol: sql.raw(`COALESCE(excluded."enrollment_protocol", "devices"."enrollment_protocol")`),
        },
        [devices.status, devices.profile],
      ),
      raw("UPDATE devices SET status = ? WHERE id = ? AND status <> ?", "status", "id", "status"),
      raw("UPDATE devices SET profile = ? WHERE id = ? AND profile <> ?", "profile", "id", "profile"),
    ],
    // A new row starts at revision 0; an existing one is raised in SQL.
    values: (w) => ({ ...toDriver(devices, w.device), revision: 0 }),
  },
  revokeDevice: writeOfFields(
    raw(
      `${REVOKED_CERTIFICATES_TO_FEED} WHERE device_id = ? AND status = 'valid' AND not_after > ?`,
      "at",
      "reason",
      "deviceId",
      "expiredSince",
    ),
    raw(
      `UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ?
       WHERE device_id = ? AND status = 'valid' AND not_after > ?`,
      "at",
      "reason",
      "deviceId",
      "expiredSince",
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
  ),
  reinstateDevice: writeOfFields(
    raw(
      `UPDATE devices SET status = 'pending', updated_at = ?, current_serial = NULL, current_not_after = NULL,
       revision = revision + 1 WHERE id = ? AND status IN ('revoked', 'decommissioned')`,
      "at",
      "deviceId",
    ),
  ),
  guardApplianceQuota: {
    // The CHECK on write_guards fails (and the transaction with it) when the count is over.
    statements: () => [
      raw(
        `INSERT INTO write_guards (name, ok) SELECT 'appliance_quota', count(*) <= ? FROM devices
         WHERE id > ? AND id < ? AND status IN ('active', 'pending')`,
        "max",
        "from",
        "to",
      ),
      raw("DELETE FROM write_guards"),
    ],
    // The gateway's appliances are the ids in (`<gateway>~`, `<gateway>~\x7f`).
    values: (w) => ({ from: `${w.gatewayId}~`, to: `${w.gatewayId}~\x7f`, max: w.max }),
  },
  setDeviceMetadata: {
    statements: (db) => [upsertRow(db, deviceMetadata, deviceMetadata.deviceId)],
    values: (w) => toDriver(deviceMetadata, w.metadata),
  },
} satisfies Partial<WriteTable>;
