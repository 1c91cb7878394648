import { workloadEntries } from "../schema.ts";
import { REVOKED_CERTIFICATES_TO_FEED } from "./certificates.ts";
import { raw, rowInsert, toDriver, type WriteTable, writeOfFields } from "./write-entry.ts";

/** What pruning may delete of the rows it is given: workload SVIDs expired before the cutoff (a parameter). */
function prunable(table = "certificates"): string {
  return `${table}.workload_entry_id IS NOT NULL AND ${table}.not_after < ?`;
}

/** Writes to workload registration entries; their SVIDs are rows of certificates (writes/certificates.ts). */
export const workloadWrites = {
  // A new entry starts at revision 0 whatever the record says.
  insertWorkloadEntry: rowInsert(workloadEntries, (w) => ({ ...w.entry, revision: 0 })),
  updateWorkloadEntry: {
    statements: () => [
      // A D1 batch cannot branch: the SVIDs are revoked only when `revoke` is 1.
      raw(
        `${REVOKED_CERTIFICATES_TO_FEED} WHERE workload_entry_id = ? AND status = 'valid' AND ? = 1`,
        "at",
        "reason",
        "id",
        "revoke",
      ),
      raw(
        `UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ?
         WHERE workload_entry_id = ? AND status = 'valid' AND ? = 1`,
        "at",
        "reason",
        "id",
        "revoke",
      ),
      raw(
        `UPDATE workload_entries SET spiffe_id = ?, fleet_wide = ?, selectors = ?, ttl_seconds = ?,
         jwt_audiences = ?, updated_at = ?, revision = revision + 1 WHERE id = ?`,
        "spiffeId",
        "fleetWide",
        "selectors",
        "ttlSeconds",
        "jwtAudiences",
        "updatedAt",
        "id",
      ),
    ],
    values: (w) => ({
      ...toDriver(workloadEntries, w.entry),
      at: w.at.getTime(),
      reason: w.reason,
      revoke: w.revokeSvids ? 1 : 0,
    }),
  },
  deleteWorkloadEntry: writeOfFields(
    // Its SVIDs first: into the revocation feed (CRL, OCSP), then marked revoked.
    raw(`${REVOKED_CERTIFICATES_TO_FEED} WHERE workload_entry_id = ? AND status = 'valid'`, "at", "reason", "entryId"),
    raw(
      `UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ?
       WHERE workload_entry_id = ? AND status = 'valid'`,
      "at",
      "reason",
      "entryId",
    ),
    raw("DELETE FROM workload_entries WHERE id = ?", "entryId"),
  ),
  pruneWorkloadSvids: {
    statements: () => [
      // The keys' claims first (while their certificates are still there to say which):
      // a claim goes only when no certificate left after this write certifies the key.
      raw(
        `DELETE FROM device_keys WHERE as_sent = 0
         AND key_fingerprint IN (SELECT key_fingerprint FROM certificates
           WHERE serial IN (SELECT value FROM json_each(?)) AND ${prunable()})
         AND NOT EXISTS (SELECT 1 FROM certificates c WHERE c.key_fingerprint = device_keys.key_fingerprint
           AND NOT (c.serial IN (SELECT value FROM json_each(?)) AND ${prunable("c")}))`,
        "serials",
        "before",
        "serials",
        "before",
      ),
      raw(
        `DELETE FROM certificates WHERE serial IN (SELECT value FROM json_each(?)) AND ${prunable()}`,
        "serials",
        "before",
      ),
    ],
    values: (w) => ({ serials: JSON.stringify(w.serials), before: w.before.getTime() }),
  },
} satisfies Partial<WriteTable>;
