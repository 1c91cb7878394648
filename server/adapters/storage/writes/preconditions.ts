import type { Precondition, PreconditionName } from "../../../ports/storage.ts";
import { fieldValues, raw, type WriteEntry } from "./write-entry.ts";

type PreconditionOf<N extends PreconditionName> = Extract<Precondition, { name: N }>;

/** A `require` write of one precondition. */
type RequireWrite<N extends PreconditionName> = { kind: "require"; precondition: PreconditionOf<N> };

/**
 * A precondition: a row that fails its CHECK is inserted only when the condition fails
 * (schema.ts write_guards). `params` name the precondition's fields that `failsWhen`
 * takes, in order (a Date as ms).
 */
function guard<N extends PreconditionName>(
  name: N,
  failsWhen: string,
  ...params: string[]
): WriteEntry<RequireWrite<N>> {
  const statement = raw(`INSERT INTO write_guards (name, ok) SELECT '${name}', 0 WHERE ${failsWhen}`, ...params);
  return { statements: () => [statement], values: ({ precondition }) => fieldValues(precondition, params) };
}

/**
 * The statement of a `require` write, one per precondition (ports/storage.ts
 * Precondition); each reads one row by its key.
 */
export const PRECONDITIONS: { [N in PreconditionName]: WriteEntry<RequireWrite<N>> } = {
  device_unchanged: {
    ...guard(
      "device_unchanged",
      "coalesce((SELECT revision FROM devices WHERE id = ?), -1) <> ?",
      "deviceId",
      "revision",
    ),
    // An absent device is revision -1.
    values: ({ precondition: p }) => ({ deviceId: p.deviceId, revision: p.revision ?? -1 }),
  },
  device_active: guard(
    "device_active",
    "coalesce((SELECT status FROM devices WHERE id = ?), '') <> 'active'",
    "deviceId",
  ),
  device_not_revoked: guard(
    "device_not_revoked",
    "coalesce((SELECT status FROM devices WHERE id = ?), '') NOT IN ('pending', 'active')",
    "deviceId",
  ),
  certificate_valid: guard(
    "certificate_valid",
    "NOT EXISTS (SELECT 1 FROM certificates WHERE serial = ? AND status = 'valid' AND not_after > ?)",
    "serial",
    "at",
  ),
  certificate_unrevoked: guard(
    "certificate_unrevoked",
    "NOT EXISTS (SELECT 1 FROM certificates WHERE serial = ? AND status = 'valid')",
    "serial",
  ),
  certificate_unused: guard(
    "certificate_unused",
    "EXISTS (SELECT 1 FROM certificates WHERE serial = ? AND first_used_at IS NOT NULL)",
    "serial",
  ),
  token_usable: guard(
    "token_usable",
    `NOT EXISTS (SELECT 1 FROM bootstrap_tokens WHERE id = ? AND used_at IS NULL AND revoked_at IS NULL
     AND expires_at > ?)`,
    "tokenId",
    "at",
  ),
  token_unused: guard(
    "token_unused",
    "NOT EXISTS (SELECT 1 FROM bootstrap_tokens WHERE id = ? AND used_at IS NULL AND revoked_at IS NULL)",
    "tokenId",
  ),
  idevid_bound: guard(
    "idevid_bound",
    "NOT EXISTS (SELECT 1 FROM idevid_bindings WHERE device_id = ? AND fingerprint = ? AND revoked_at IS NULL)",
    "deviceId",
    "fingerprint",
  ),
  pending_status: guard(
    "pending_status",
    "NOT EXISTS (SELECT 1 FROM pending_enrollments WHERE id = ? AND status = ?)",
    "id",
    "status",
  ),
  appliance_count: {
    ...guard(
      "appliance_count",
      "(SELECT count(*) FROM devices WHERE id > ? AND id < ? AND status IN ('active', 'pending')) <> ?",
      "from",
      "to",
      "count",
    ),
    // The gateway's appliances are the ids in (`<gateway>~`, `<gateway>~\x7f`).
    values: ({ precondition: p }) => ({ from: `${p.gatewayId}~`, to: `${p.gatewayId}~\x7f`, count: p.count }),
  },
  workload_entry_unchanged: guard(
    "workload_entry_unchanged",
    "coalesce((SELECT revision FROM workload_entries WHERE id = ?), -1) <> ?",
    "entryId",
    "revision",
  ),
  // Through certificates_key_device (key → rows): a device's own key, ever, or another
  // entry's SVID that is still valid.
  workload_key_free: guard(
    "workload_key_free",
    `EXISTS (SELECT 1 FROM certificates WHERE key_fingerprint = ? AND (workload_entry_id IS NULL
     OR (workload_entry_id <> ? AND status = 'valid' AND not_after > ?)))`,
    "keyFingerprint",
    "entryId",
    "at",
  ),
  operator_active: guard(
    "operator_active",
    `NOT EXISTS (SELECT 1 FROM operators WHERE id = ? AND revoked_at IS NULL
     AND (expires_at IS NULL OR expires_at > ?))`,
    "operatorId",
    "at",
  ),
};
