import { dashboardSessions, operators } from "../schema.ts";
import { raw, rowInsert, type WriteTable, writeOfFields } from "./write-entry.ts";

/** Writes to operators and their dashboard sessions. */
export const operatorWrites = {
  insertOperator: rowInsert(operators, (w) => w.operator),
  revokeOperator: writeOfFields(
    raw("UPDATE operators SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", "at", "operatorId"),
  ),
  insertDashboardSession: rowInsert(dashboardSessions, (w) => w.session),
  touchDashboardSession: writeOfFields(
    raw(
      "UPDATE dashboard_sessions SET last_seen_at = ?, expires_at = ? WHERE id_hash = ?",
      "at",
      "expiresAt",
      "idHash",
    ),
  ),
  deleteDashboardSession: writeOfFields(raw("DELETE FROM dashboard_sessions WHERE id_hash = ?", "idHash")),
  purgeDashboardSessions: writeOfFields(
    raw(
      `DELETE FROM dashboard_sessions WHERE expires_at <= ? OR operator_id IN
       (SELECT id FROM operators WHERE revoked_at IS NOT NULL OR (expires_at IS NOT NULL AND expires_at <= ?))`,
      "at",
      "at",
    ),
  ),
} satisfies Partial<WriteTable>;
