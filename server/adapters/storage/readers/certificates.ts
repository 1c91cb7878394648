import { and, desc, eq, inArray, isNull, sql } from "drizzle-orm";
import type { CertificateRecord } from "../../../ports/storage.ts";
import { certificates, deviceKeys, expiryAlerts } from "../schema.ts";
import type { ConnectionClass } from "./connection.ts";

/** Certificates: by serial or fingerprint, per device, the keys they certify, and their expiry alerts. */
export function certificateReaders<B extends ConnectionClass>(Base: B) {
  return class CertificateReaders extends Base {
    async getCertificate(serial: string): Promise<CertificateRecord | undefined> {
      const row = await this.findOne<CertificateRow>(certificates, certificates.serial, serial);
      return row && toCertificate(row);
    }

    async getCertificateByFingerprint(fingerprint: string): Promise<CertificateRecord | undefined> {
      const row = await this.findOne<CertificateRow>(certificates, certificates.fingerprint, fingerprint);
      return row && toCertificate(row);
    }

    async listCertificates(deviceId: string): Promise<CertificateRecord[]> {
      const rows = await this.db
        .select()
        .from(certificates)
        // The device's own certificates; its workload SVIDs are listWorkloadSvids'.
        .where(and(eq(certificates.deviceId, deviceId), isNull(certificates.workloadEntryId)))
        .orderBy(desc(certificates.issuedAt))
        .all();
      return rows.map((r: CertificateRow) => toCertificate(r));
    }

    async listKeyHolders(keyFingerprints: readonly string[], limit: number): Promise<string[]> {
      // device_keys holds every certified key (claimed with its certificate; migration 0008
      // copied the older ones): one primary-key probe per spelling, one statement.
      const n = keyFingerprints.length;
      if (n === 0) return [];
      const q = this.prepared(`listKeyHolders:${n}`, () =>
        this.db
          .select({ deviceId: deviceKeys.deviceId })
          .from(deviceKeys)
          .where(
            inArray(
              deviceKeys.keyFingerprint,
              keyFingerprints.map((_, i) => sql.placeholder(`f${i}`)),
            ),
          )
          .limit(sql.placeholder("limit")),
      );
      const params: Record<string, unknown> = { limit };
      keyFingerprints.forEach((f, i) => {
        params[`f${i}`] = f;
      });
      const rows = (await q.all(params)) as { deviceId: string }[];
      return [...new Set(rows.map((r) => r.deviceId))];
    }

    private keysAsSent: Promise<boolean> | undefined;

    async hasKeysAsSent(): Promise<boolean> {
      // Such rows come only from migration 0008, which ran before this connection was
      // used (Node: at open; Workers: before deploy), and never change: asked once.
      this.keysAsSent ??= (async () => {
        const row = await this.db
          .select({ one: sql<number>`1` })
          .from(deviceKeys)
          .where(eq(deviceKeys.asSent, 1))
          .limit(1)
          .get();
        return row !== undefined;
      })();
      return this.keysAsSent;
    }

    async expiryAlertSent(serial: string, thresholdDays: number): Promise<boolean> {
      const q = this.prepared("expiryAlertSent", () =>
        this.db
          .select({ serial: expiryAlerts.serial })
          .from(expiryAlerts)
          .where(
            and(
              eq(expiryAlerts.serial, sql.placeholder("serial")),
              eq(expiryAlerts.thresholdDays, sql.placeholder("thresholdDays")),
            ),
          ),
      );
      return (await q.get({ serial, thresholdDays })) !== undefined;
    }
  };
}

export type CertificateRow = typeof certificates.$inferSelect;

export function toCertificate(row: CertificateRow): CertificateRecord {
  return { ...row, der: new Uint8Array(row.der.buffer, row.der.byteOffset, row.der.byteLength) };
}
