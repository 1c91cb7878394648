import { idevidBindings, pendingEnrollments } from "../schema.ts";
import { raw, rowInsert, toBuffer, type WriteTable, writeOfFields } from "./write-entry.ts";

/** Writes to enrollments waiting for an operator (and their quota per device), and to IDevID bindings. */
export const enrollmentWrites = {
  insertPending: rowInsert(pendingEnrollments, (w) => ({ ...w.pending, csr: toBuffer(w.pending.csr) })),
  decidePending: writeOfFields(
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
  ),
  bindIdevid: rowInsert(idevidBindings, (w) => w.binding),
  // The primary key (transaction_id, sender_nonce) refuses a replayed pair.
  recordScepNonce: writeOfFields(
    raw("DELETE FROM scep_nonces WHERE seen_at < ?", "forgetBefore"),
    raw(
      "INSERT INTO scep_nonces (transaction_id, sender_nonce, seen_at) VALUES (?, ?, ?)",
      "transactionId",
      "senderNonce",
      "at",
    ),
  ),
  forgetScepNonce: writeOfFields(
    raw("DELETE FROM scep_nonces WHERE transaction_id = ? AND sender_nonce = ?", "transactionId", "senderNonce"),
  ),
  guardPendingQuota: {
    // Like the appliance quota (devices.ts): the CHECK on write_guards fails the set when over.
    statements: () => [
      raw(
        `INSERT INTO write_guards (name, ok) SELECT 'pending_quota', count(*) <= ? FROM pending_enrollments
         WHERE device_id = ? AND status = 'pending'`,
        "max",
        "deviceId",
      ),
      raw("DELETE FROM write_guards"),
    ],
    values: (w) => ({ max: w.max, deviceId: w.deviceId }),
  },
} satisfies Partial<WriteTable>;
