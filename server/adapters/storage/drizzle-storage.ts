import { and, asc, desc, eq, gt, type SQL } from "drizzle-orm";
import type { BaseSQLiteDatabase } from "drizzle-orm/sqlite-core";
import type {
  CertificateRecord,
  DeviceQuery,
  DeviceRecord,
  IdevidBinding,
  OperatorRecord,
  StoredAuditEvent,
  TokenRecord,
  Write,
} from "../../ports/storage.ts";
import { StorageConflictError } from "../../ports/storage.ts";
import {
  auditEvents,
  bootstrapTokens,
  certificates,
  devices,
  idevidBindings,
  operators,
  type schema,
} from "./schema.ts";

// biome-ignore lint/suspicious/noExplicitAny: one implementation serves the sync (better-sqlite3) and async (D1) drivers.
export type Db = BaseSQLiteDatabase<any, any, typeof schema>;

/**
 * Readers and write builders shared by the better-sqlite3 and D1 adapters; the
 * adapters differ only in how a write set is made atomic.
 */
export class DrizzleReaders {
  constructor(protected readonly db: Db) {}

  async getDevice(id: string): Promise<DeviceRecord | undefined> {
    return this.db.select().from(devices).where(eq(devices.id, id)).get();
  }

  async listDevices(q: DeviceQuery): Promise<DeviceRecord[]> {
    const conds: SQL[] = [];
    if (q.status) conds.push(eq(devices.status, q.status));
    if (q.profile) conds.push(eq(devices.profile, q.profile));
    if (q.after) conds.push(gt(devices.id, q.after));
    return this.db
      .select()
      .from(devices)
      .where(conds.length ? and(...conds) : undefined)
      .orderBy(asc(devices.id))
      .limit(q.limit)
      .all();
  }

  async getCertificate(serial: string): Promise<CertificateRecord | undefined> {
    const row = await this.db.select().from(certificates).where(eq(certificates.serial, serial)).get();
    return row && toCertificate(row);
  }

  async getCertificateByFingerprint(fingerprint: string): Promise<CertificateRecord | undefined> {
    const row = await this.db.select().from(certificates).where(eq(certificates.fingerprint, fingerprint)).get();
    return row && toCertificate(row);
  }

  async listCertificates(deviceId: string): Promise<CertificateRecord[]> {
    const rows = await this.db
      .select()
      .from(certificates)
      .where(eq(certificates.deviceId, deviceId))
      .orderBy(desc(certificates.issuedAt))
      .all();
    return rows.map((r: typeof certificates.$inferSelect) => toCertificate(r));
  }

  async listCertificatesByKey(keyFingerprint: string, limit: number): Promise<CertificateRecord[]> {
    const rows = await this.db
      .select()
      .from(certificates)
      .where(eq(certificates.keyFingerprint, keyFingerprint))
      .limit(limit)
      .all();
    return rows.map((r: typeof certificates.$inferSelect) => toCertificate(r));
  }

  async getTokenByHash(hash: string): Promise<TokenRecord | undefined> {
    return this.db.select().from(bootstrapTokens).where(eq(bootstrapTokens.hash, hash)).get();
  }

  async listTokens(deviceId: string): Promise<TokenRecord[]> {
    return this.db
      .select()
      .from(bootstrapTokens)
      .where(eq(bootstrapTokens.deviceId, deviceId))
      .orderBy(desc(bootstrapTokens.createdAt))
      .all();
  }

  async getIdevidBinding(deviceId: string): Promise<IdevidBinding | undefined> {
    return this.db.select().from(idevidBindings).where(eq(idevidBindings.deviceId, deviceId)).get();
  }

  async getIdevidBindingByFingerprint(fingerprint: string): Promise<IdevidBinding | undefined> {
    return this.db.select().from(idevidBindings).where(eq(idevidBindings.fingerprint, fingerprint)).get();
  }

  async getOperatorByTokenHash(hash: string): Promise<OperatorRecord | undefined> {
    return this.db.select().from(operators).where(eq(operators.tokenHash, hash)).get();
  }

  async listAudit(q: { deviceId?: string; limit: number }): Promise<StoredAuditEvent[]> {
    const rows = await this.db
      .select()
      .from(auditEvents)
      .where(q.deviceId ? eq(auditEvents.deviceId, q.deviceId) : undefined)
      .orderBy(desc(auditEvents.id))
      .limit(q.limit)
      .all();
    return rows.map((r: typeof auditEvents.$inferSelect) => ({ ...r, detail: r.detail ?? undefined }));
  }

  /** The statement for one write; executed by the adapter inside its atomic unit. */
  protected statement(w: Write) {
    switch (w.kind) {
      case "upsertDevice": {
        const { id, ...rest } = w.device;
        return this.db.insert(devices).values(w.device).onConflictDoUpdate({ target: devices.id, set: rest });
      }
      case "insertCertificate":
        return this.db.insert(certificates).values({ ...w.certificate, der: toBuffer(w.certificate.der) });
      case "redeemToken":
        return this.db
          .update(bootstrapTokens)
          .set({ usedAt: w.at, usedSerial: w.serial })
          .where(eq(bootstrapTokens.id, w.tokenId));
      case "insertToken":
        return this.db.insert(bootstrapTokens).values(w.token);
      case "bindIdevid":
        return this.db.insert(idevidBindings).values(w.binding);
      case "insertOperator":
        return this.db.insert(operators).values(w.operator);
      case "audit":
        return this.db.insert(auditEvents).values({
          at: w.event.at,
          actor: w.event.actor,
          action: w.event.action,
          outcome: w.event.outcome,
          deviceId: w.event.deviceId ?? null,
          serial: w.event.serial ?? null,
          remote: w.event.remote ?? null,
          detail: w.event.detail ?? null,
        });
    }
  }
}

function toCertificate(row: typeof certificates.$inferSelect): CertificateRecord {
  return { ...row, der: new Uint8Array(row.der.buffer, row.der.byteOffset, row.der.byteLength) };
}

function toBuffer(bytes: Uint8Array): Buffer {
  // drizzle's blob(buffer) column wants a Buffer; D1 and better-sqlite3 both accept one.
  return bytes instanceof Buffer ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Maps a driver's UNIQUE/PRIMARY KEY violation to the port's conflict error. */
export function asConflict(err: unknown): StorageConflictError | undefined {
  for (let e: unknown = err; e; e = (e as { cause?: unknown }).cause) {
    const message = String((e as { message?: unknown }).message ?? "");
    const m = /UNIQUE constraint failed: ([\w.]+)/.exec(message);
    if (m) return new StorageConflictError(message, m[1] as string);
  }
  return undefined;
}
