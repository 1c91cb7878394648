import { and, asc, count, eq, gt, gte, isNotNull, lt, or, type SQL, sql } from "drizzle-orm";
import type { DeviceMetadata, DeviceQuery, DeviceRecord, DeviceStatus } from "../../../ports/storage.ts";
import { deviceMetadata, devices } from "../schema.ts";
import type { ConnectionClass } from "./connection.ts";

/** Devices: the inventory, its counts and its expiry distribution, and operator metadata. */
export function deviceReaders<B extends ConnectionClass>(Base: B) {
  return class DeviceReaders extends Base {
    async getDevice(id: string): Promise<DeviceRecord | undefined> {
      return this.findOne(devices, devices.id, id);
    }

    async listDevices(q: DeviceQuery): Promise<DeviceRecord[]> {
      const conds: (SQL | undefined)[] = [];
      // By expiry, an index ending in (expiry, id) must drive the query: `+status` keeps
      // SQLite from choosing the status index and sorting the whole match instead; with a
      // profile, (profile, expiry, id) is that index.
      const byExpiry = q.expiringBefore !== undefined;
      if (q.gateway) conds.push(...applianceRange(q.gateway));
      // Device ids are printable ASCII, so DEL sorts after every id with the prefix.
      if (q.idPrefix) conds.push(gte(devices.id, q.idPrefix), lt(devices.id, `${q.idPrefix}\x7f`));
      if (q.status) conds.push(byExpiry ? sql`+${devices.status} = ${q.status}` : eq(devices.status, q.status));
      if (q.profile) conds.push(eq(devices.profile, q.profile));
      if (q.expiringBefore) {
        // Ordered by (expiry, id) on devices_not_after_id: a keyset page is one index range.
        conds.push(isNotNull(devices.currentNotAfter), lt(devices.currentNotAfter, q.expiringBefore));
        if (q.after?.notAfter !== undefined) {
          // A row value: one index range from the cursor on (2.6× faster per page than the
          // equivalent OR, which SQLite evaluates row by row).
          conds.push(sql`(${devices.currentNotAfter}, ${devices.id}) > (${q.after.notAfter}, ${q.after.id})`);
        }
        return this.page(devices, conds, [asc(devices.currentNotAfter), asc(devices.id)], q.limit);
      }
      if (q.after) conds.push(gt(devices.id, q.after.id));
      return this.page(devices, conds, [asc(devices.id)], q.limit);
    }

    async countAppliances(gatewayId: string): Promise<number> {
      const [row] = await this.db
        .select({ n: count() })
        .from(devices)
        .where(and(...applianceRange(gatewayId), or(eq(devices.status, "active"), eq(devices.status, "pending"))))
        .all();
      return (row as { n: number } | undefined)?.n ?? 0;
    }

    async countDevicesByStatus(): Promise<Record<DeviceStatus, number>> {
      const rows = await this.db
        .select({ status: devices.status, n: count() })
        .from(devices)
        .groupBy(devices.status)
        .all();
      const out: Record<DeviceStatus, number> = { pending: 0, active: 0, revoked: 0, decommissioned: 0 };
      for (const r of rows as { status: DeviceStatus; n: number }[]) out[r.status] = r.n;
      return out;
    }

    async expiryHistogram(
      now: Date,
      bounds: readonly number[],
      after: string,
      scan: number,
    ): Promise<{ counts: number[]; total: number; sum: number; next: string | null }> {
      const rows = (await this.db
        .select({ id: devices.id, notAfter: sql<number | null>`${devices.currentNotAfter}` })
        .from(devices)
        .where(and(eq(devices.status, "active"), gt(devices.id, after)))
        .orderBy(asc(devices.id))
        .limit(scan)
        .all()) as { id: string; notAfter: number | null }[];
      const at = now.getTime();
      const counts = bounds.map(() => 0);
      let total = 0;
      let sum = 0;
      for (const r of rows) {
        if (r.notAfter === null) continue;
        const left = (r.notAfter - at) / 1000;
        total++;
        sum += left;
        bounds.forEach((b, i) => {
          if (left <= b) counts[i] = (counts[i] as number) + 1;
        });
      }
      return { counts, total, sum, next: rows.length === scan ? (rows.at(-1)?.id ?? null) : null };
    }

    async expiryByBucket(from: Date, until: Date, bucketMs: number): Promise<{ bucket: number; count: number }[]> {
      // One range of (status, expiry): counted from the index, the table is not read.
      // Integer division (drivers may bind a JS number as REAL).
      const bucket = sql<number>`CAST((${devices.currentNotAfter} - ${from.getTime()}) / ${Math.max(1, Math.floor(bucketMs))} AS INTEGER)`;
      return (await this.db
        .select({ bucket, count: count() })
        .from(devices)
        .where(
          and(eq(devices.status, "active"), gte(devices.currentNotAfter, from), lt(devices.currentNotAfter, until)),
        )
        .groupBy(bucket)
        .orderBy(bucket)
        .all()) as { bucket: number; count: number }[];
    }

    async getDeviceMetadata(deviceId: string): Promise<DeviceMetadata | undefined> {
      return this.findOne(deviceMetadata, deviceMetadata.deviceId, deviceId);
    }
  };
}

/**
 * The ids `<gateway>~…`: '~' sorts after every other character of a device id and
 * DEL after '~', so they are exactly the ids in (`<gateway>~`, `<gateway>~\x7f`), one
 * range of the primary key.
 */
function applianceRange(gatewayId: string): SQL[] {
  return [gt(devices.id, `${gatewayId}~`), lt(devices.id, `${gatewayId}~\x7f`)];
}
