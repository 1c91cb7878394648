import {
  and,
  asc,
  desc,
  eq,
  getTableColumns,
  getTableName,
  gt,
  is,
  Placeholder,
  type SQL,
  sql,
  type Table,
} from "drizzle-orm";
import type { BaseSQLiteDatabase, SQLiteColumn, SQLiteTable } from "drizzle-orm/sqlite-core";
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
import type { CompiledWrite } from "./sqlite-batch.mjs";

// biome-ignore lint/suspicious/noExplicitAny: one implementation serves the sync (better-sqlite3) and async (D1) drivers.
export type Db = BaseSQLiteDatabase<any, any, typeof schema>;

/**
 * Readers and write builders shared by the better-sqlite3 and D1 adapters; the
 * adapters differ only in how a write set is made atomic.
 */
export class DrizzleReaders {
  private readonly statements = new Map<string, Prepared>();

  constructor(protected readonly db: Db) {}

  /** The row whose `column` equals `value` (a unique or primary key), by a statement prepared once. */
  private async findOne<T>(table: SQLiteTable, column: SQLiteColumn, value: string): Promise<T | undefined> {
    const q = this.prepared(`one:${getTableName(table)}.${column.name}`, () =>
      this.db
        .select()
        .from(table)
        .where(eq(column, sql.placeholder("value"))),
    );
    return (await q.get({ value })) as T | undefined;
  }

  async getDevice(id: string): Promise<DeviceRecord | undefined> {
    return this.findOne(devices, devices.id, id);
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
      .where(eq(certificates.deviceId, deviceId))
      .orderBy(desc(certificates.issuedAt))
      .all();
    return rows.map((r: typeof certificates.$inferSelect) => toCertificate(r));
  }

  async listKeyHolders(keyFingerprint: string, limit: number): Promise<string[]> {
    const q = this.prepared("listKeyHolders", () =>
      this.db
        .select({ deviceId: certificates.deviceId })
        .from(certificates)
        .where(eq(certificates.keyFingerprint, sql.placeholder("keyFingerprint")))
        .limit(sql.placeholder("limit")),
    );
    const rows = (await q.all({ keyFingerprint, limit })) as { deviceId: string }[];
    return [...new Set(rows.map((r) => r.deviceId))];
  }

  async getTokenByHash(hash: string): Promise<TokenRecord | undefined> {
    return this.findOne(bootstrapTokens, bootstrapTokens.hash, hash);
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
    return this.findOne(idevidBindings, idevidBindings.deviceId, deviceId);
  }

  async getIdevidBindingByFingerprint(fingerprint: string): Promise<IdevidBinding | undefined> {
    return this.findOne(idevidBindings, idevidBindings.fingerprint, fingerprint);
  }

  async getOperatorByTokenHash(hash: string): Promise<OperatorRecord | undefined> {
    return this.findOne(operators, operators.tokenHash, hash);
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

  /**
   * One write as SQL text with positional parameters, executed by the adapter inside
   * its atomic unit (a better-sqlite3 transaction; a D1 batch takes the same form).
   * The SQL of each kind is built by drizzle once; per write only the parameters are
   * filled in.
   */
  protected statement(w: Write): CompiledWrite {
    const template = this.writeTemplate(w.kind);
    let values: Record<string, unknown>;
    switch (w.kind) {
      case "upsertDevice":
        values = toDriver(devices, w.device);
        break;
      case "insertCertificate":
        values = toDriver(certificates, { ...w.certificate, der: toBuffer(w.certificate.der) });
        break;
      case "redeemToken":
        values = { tokenId: w.tokenId, at: w.at.getTime(), serial: w.serial };
        break;
      case "insertToken":
        values = toDriver(bootstrapTokens, w.token);
        break;
      case "bindIdevid":
        values = toDriver(idevidBindings, w.binding);
        break;
      case "insertOperator":
        values = toDriver(operators, w.operator);
        break;
      case "audit":
        values = toDriver(auditEvents, w.event);
        break;
    }
    return { sql: template.sql, params: template.params.map((p) => (is(p, Placeholder) ? values[p.name] : p)) };
  }

  private readonly templates = new Map<string, { sql: string; params: unknown[] }>();

  private writeTemplate(kind: Write["kind"]): { sql: string; params: unknown[] } {
    let t = this.templates.get(kind);
    if (!t) {
      t = this.writeQuery(kind).toSQL();
      this.templates.set(kind, t);
    }
    return t;
  }

  private writeQuery(kind: Write["kind"]): { toSQL(): { sql: string; params: unknown[] } } {
    switch (kind) {
      case "upsertDevice": {
        const set: Record<string, SQL> = {};
        for (const [key, column] of Object.entries(getTableColumns(devices))) {
          if (key !== "id") set[key] = sql.raw(`excluded."${column.name}"`);
        }
        return this.db.insert(devices).values(placeholders(devices)).onConflictDoUpdate({ target: devices.id, set });
      }
      case "insertCertificate":
        return this.db.insert(certificates).values(placeholders(certificates));
      case "redeemToken":
        return this.db
          .update(bootstrapTokens)
          .set({ usedAt: sql`${sql.placeholder("at")}`, usedSerial: sql`${sql.placeholder("serial")}` })
          .where(eq(bootstrapTokens.id, sql.placeholder("tokenId")));
      case "insertToken":
        return this.db.insert(bootstrapTokens).values(placeholders(bootstrapTokens));
      case "bindIdevid":
        return this.db.insert(idevidBindings).values(placeholders(idevidBindings));
      case "insertOperator":
        return this.db.insert(operators).values(placeholders(operators));
      case "audit": {
        // The id is the table's own AUTOINCREMENT.
        const { id: _id, ...columns } = placeholders(auditEvents);
        return this.db.insert(auditEvents).values(columns);
      }
    }
  }

  /** A prepared statement, made on first use and kept for the life of the connection. */
  protected prepared(name: string, build: () => { prepare(): Prepared }): Prepared {
    let p = this.statements.get(name);
    if (!p) {
      p = build().prepare();
      this.statements.set(name, p);
    }
    return p;
  }
}

/** What drizzle's prepare() gives back, for both the sync and the async drivers. */
export interface Prepared {
  run(params?: Record<string, unknown>): unknown;
  get(params?: Record<string, unknown>): unknown;
  all(params?: Record<string, unknown>): unknown;
}

/**
 * `{ column: placeholder }` for every column of a table. The placeholders are plain SQL,
 * so drizzle binds what it is given: toDriver() converts values to driver values first.
 */
function placeholders<T extends Table>(table: T): Record<keyof T["_"]["columns"], SQL> {
  const out: Record<string, SQL> = {};
  for (const key of Object.keys(getTableColumns(table))) out[key] = sql`${sql.placeholder(key)}`;
  return out as Record<keyof T["_"]["columns"], SQL>;
}

/** A record as driver values (Date → ms, JSON → text), through each column's own mapping. */
function toDriver(table: Table, values: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const record = values as Record<string, unknown>;
  for (const [key, column] of Object.entries(getTableColumns(table))) {
    const v = record[key];
    out[key] = v === null || v === undefined ? null : column.mapToDriverValue(v);
  }
  return out;
}

type CertificateRow = typeof certificates.$inferSelect;

function toCertificate(row: CertificateRow): CertificateRecord {
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
