import { and, eq, getTableName, type SQL, sql } from "drizzle-orm";
import type { BaseSQLiteDatabase, SQLiteColumn, SQLiteTable } from "drizzle-orm/sqlite-core";
import type { schema } from "../schema.ts";

// biome-ignore lint/suspicious/noExplicitAny: one implementation serves the sync (better-sqlite3) and async (D1) drivers.
export type Db = BaseSQLiteDatabase<any, any, typeof schema>;

/** What drizzle's prepare() gives back, for both the sync and the async drivers. */
export interface Prepared {
  run(params?: Record<string, unknown>): unknown;
  get(params?: Record<string, unknown>): unknown;
  all(params?: Record<string, unknown>): unknown;
}

/**
 * The connection every group of readers builds on, with the statements it prepared.
 * Each group (readers/devices.ts, readers/certificates.ts, …) is a mixin over it,
 * composed into one class in drizzle-storage.ts.
 */
export class StorageConnection {
  private readonly statements = new Map<string, Prepared>();

  constructor(protected readonly db: Db) {}

  /** A prepared statement, made on first use and kept for the life of the connection. */
  protected prepared(name: string, build: () => { prepare(): Prepared }): Prepared {
    let p = this.statements.get(name);
    if (!p) {
      p = build().prepare();
      this.statements.set(name, p);
    }
    return p;
  }

  /** The row whose `column` equals `value` (a unique or primary key), by a statement prepared once. */
  protected async findOne<T>(table: SQLiteTable, column: SQLiteColumn, value: string): Promise<T | undefined> {
    const q = this.prepared(`one:${getTableName(table)}.${column.name}`, () =>
      this.db
        .select()
        .from(table)
        .where(eq(column, sql.placeholder("value"))),
    );
    return (await q.get({ value })) as T | undefined;
  }

  /** A page of `table`: the rows that meet every condition (all of them without one), in `order`, at most `limit`. */
  protected async page<T>(table: SQLiteTable, conds: (SQL | undefined)[], order: SQL[], limit: number): Promise<T[]> {
    return (await this.db
      .select()
      .from(table)
      .where(conds.length ? and(...conds) : undefined)
      .orderBy(...order)
      .limit(limit)
      .all()) as T[];
  }
}

/** A class a group of readers extends: StorageConnection or a composition over it (TypeScript mixins take `any[]`). */
// biome-ignore lint/suspicious/noExplicitAny: a mixin's base constructor must take `...args: any[]`.
export type ConnectionClass = new (...args: any[]) => StorageConnection;
