import { asc, desc, eq, gt, lt, type SQL, sql } from "drizzle-orm";
import type { AuditChainRow, AuditQuery, StoredAuditEvent } from "../../../ports/storage.ts";
import { auditEvents } from "../schema.ts";
import type { ConnectionClass } from "./connection.ts";

/** The audit log: filtered pages of it, and its rows as stored for checking the hash chain. */
export function auditReaders<B extends ConnectionClass>(Base: B) {
  return class AuditReaders extends Base {
    async listAudit(q: AuditQuery): Promise<StoredAuditEvent[]> {
      const conds: (SQL | undefined)[] = [];
      if (q.deviceId) conds.push(eq(auditEvents.deviceId, q.deviceId));
      if (q.actor) conds.push(eq(auditEvents.actor, q.actor));
      if (q.action) conds.push(eq(auditEvents.action, q.action));
      if (q.before !== undefined) conds.push(lt(auditEvents.id, q.before));
      const rows = await this.page<typeof auditEvents.$inferSelect>(
        auditEvents,
        conds,
        [desc(auditEvents.id)],
        q.limit,
      );
      return rows.map(({ prevHash: _p, hash: _h, ...r }: typeof auditEvents.$inferSelect) => ({
        ...r,
        detail: r.detail ?? undefined,
      }));
    }

    async auditChain(afterId: number, limit: number): Promise<AuditChainRow[]> {
      // Raw column values: the chain is over the stored text, not its parsed form.
      const q = this.prepared("auditChain", () =>
        this.db
          .select({
            id: auditEvents.id,
            at: sql<number>`${auditEvents.at}`,
            actor: auditEvents.actor,
            action: auditEvents.action,
            outcome: auditEvents.outcome,
            deviceId: auditEvents.deviceId,
            serial: auditEvents.serial,
            remote: auditEvents.remote,
            detail: sql<string | null>`${auditEvents.detail}`,
            prevHash: auditEvents.prevHash,
            hash: auditEvents.hash,
          })
          .from(auditEvents)
          .where(gt(auditEvents.id, sql.placeholder("afterId")))
          .orderBy(asc(auditEvents.id))
          .limit(sql.placeholder("limit")),
      );
      return (await q.all({ afterId, limit })) as AuditChainRow[];
    }
  };
}
