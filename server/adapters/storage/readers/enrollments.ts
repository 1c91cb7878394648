import { and, asc, desc, eq, gt, type SQL, sql } from "drizzle-orm";
import type { IdevidBinding, PendingEnrollment, PendingStatus } from "../../../ports/storage.ts";
import { idevidBindings, pendingEnrollments } from "../schema.ts";
import type { ConnectionClass } from "./connection.ts";

/** Enrollment requests waiting for an operator, and the IDevID bindings devices enroll with. */
export function enrollmentReaders<B extends ConnectionClass>(Base: B) {
  return class EnrollmentReaders extends Base {
    async getPending(id: string): Promise<PendingEnrollment | undefined> {
      const row = await this.findOne<PendingRow>(pendingEnrollments, pendingEnrollments.id, id);
      return row && toPending(row);
    }

    async findPending(deviceId: string, keyFingerprint: string): Promise<PendingEnrollment | undefined> {
      const row = await this.db
        .select()
        .from(pendingEnrollments)
        .where(
          and(
            eq(pendingEnrollments.deviceId, deviceId),
            eq(pendingEnrollments.keyFingerprint, keyFingerprint),
            sql`${pendingEnrollments.status} in ('pending', 'approved', 'rejected')`,
          ),
        )
        .orderBy(desc(pendingEnrollments.createdAt))
        .limit(1)
        .get();
      return row && toPending(row as PendingRow);
    }

    async listPending(q: {
      status?: PendingStatus;
      deviceId?: string;
      after?: string;
      limit: number;
    }): Promise<PendingEnrollment[]> {
      const conds: (SQL | undefined)[] = [];
      if (q.status) conds.push(eq(pendingEnrollments.status, q.status));
      if (q.deviceId) conds.push(eq(pendingEnrollments.deviceId, q.deviceId));
      if (q.after) conds.push(gt(pendingEnrollments.id, q.after));
      const rows = await this.page<PendingRow>(pendingEnrollments, conds, [asc(pendingEnrollments.id)], q.limit);
      return rows.map((r: PendingRow) => toPending(r));
    }

    async getIdevidBinding(deviceId: string): Promise<IdevidBinding | undefined> {
      return this.findOne(idevidBindings, idevidBindings.deviceId, deviceId);
    }

    async getIdevidBindingByFingerprint(fingerprint: string): Promise<IdevidBinding | undefined> {
      return this.findOne(idevidBindings, idevidBindings.fingerprint, fingerprint);
    }
  };
}

type PendingRow = typeof pendingEnrollments.$inferSelect;

function toPending(row: PendingRow): PendingEnrollment {
  return { ...row, csr: new Uint8Array(row.csr.buffer, row.csr.byteOffset, row.csr.byteLength) };
}
