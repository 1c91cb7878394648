import { and, asc, desc, eq, gt, inArray, isNotNull, lt, or, type SQL, sql } from "drizzle-orm";
import type { CertificateRecord, WorkloadEntryQuery, WorkloadEntryRecord } from "../../../ports/storage.ts";
import { certificates, workloadEntries } from "../schema.ts";
import { type CertificateRow, toCertificate } from "./certificates.ts";
import type { ConnectionClass } from "./connection.ts";

/** Workload registration entries, the entries that apply to a device, and the SVIDs issued for them. */
export function workloadReaders<B extends ConnectionClass>(Base: B) {
  return class WorkloadReaders extends Base {
    async getWorkloadEntry(id: string): Promise<WorkloadEntryRecord | undefined> {
      return this.findOne<WorkloadEntryRecord>(workloadEntries, workloadEntries.id, id);
    }

    async listWorkloadEntries(q: WorkloadEntryQuery): Promise<WorkloadEntryRecord[]> {
      const conds: (SQL | undefined)[] = [];
      if (q.parentKind) conds.push(eq(workloadEntries.parentKind, q.parentKind));
      if (q.parentValue !== undefined) conds.push(eq(workloadEntries.parentValue, q.parentValue));
      if (q.after) conds.push(gt(workloadEntries.id, q.after));
      return this.page(workloadEntries, conds, [asc(workloadEntries.id)], q.limit);
    }

    async workloadEntriesFor(device: { id: string; profile: string }, limit: number): Promise<WorkloadEntryRecord[]> {
      // The device's own entries and its profile's are probes of the (kind, value, name)
      // index; prefixes are compared with the id (the prefix entries are read through it too).
      const q = this.prepared("workloadEntriesFor", () =>
        this.db
          .select()
          .from(workloadEntries)
          .where(
            or(
              and(eq(workloadEntries.parentKind, "device"), eq(workloadEntries.parentValue, sql.placeholder("id"))),
              and(
                eq(workloadEntries.parentKind, "profile"),
                eq(workloadEntries.parentValue, sql.placeholder("profile")),
              ),
              and(
                eq(workloadEntries.parentKind, "prefix"),
                sql`substr(${sql.placeholder("id")}, 1, length(${workloadEntries.parentValue})) = ${workloadEntries.parentValue}`,
              ),
            ),
          )
          .orderBy(asc(workloadEntries.id))
          .limit(sql.placeholder("limit")),
      );
      return (await q.all({ id: device.id, profile: device.profile, limit })) as WorkloadEntryRecord[];
    }

    async listWorkloadSvids(deviceId: string, limit: number): Promise<CertificateRecord[]> {
      const rows = await this.db
        .select()
        .from(certificates)
        .where(and(eq(certificates.deviceId, deviceId), isNotNull(certificates.workloadEntryId)))
        .orderBy(desc(certificates.issuedAt))
        .limit(limit)
        .all();
      return rows.map((r: CertificateRow) => toCertificate(r));
    }

    async expiredWorkloadSvids(before: Date, limit: number): Promise<string[]> {
      const q = this.prepared("expiredWorkloadSvids", () =>
        this.db
          .select({ serial: certificates.serial })
          .from(certificates)
          .where(and(isNotNull(certificates.workloadEntryId), lt(certificates.notAfter, sql.placeholder("before"))))
          .orderBy(asc(certificates.notAfter), asc(certificates.serial))
          .limit(sql.placeholder("limit")),
      );
      const rows = (await q.all({ before: before.getTime(), limit })) as { serial: string }[];
      return rows.map((r) => r.serial);
    }

    async certificatesWithKey(keyFingerprints: readonly string[], limit: number): Promise<CertificateRecord[]> {
      if (keyFingerprints.length === 0) return [];
      const rows = await this.db
        .select()
        .from(certificates)
        .where(inArray(certificates.keyFingerprint, [...keyFingerprints]))
        .limit(limit)
        .all();
      return rows.map((r: CertificateRow) => toCertificate(r));
    }
  };
}
