import { getTableColumns, is, Placeholder, type SQL, sql, type Table } from "drizzle-orm";
import type { SQLiteColumn, SQLiteTable } from "drizzle-orm/sqlite-core";
import type { Write } from "../../../ports/storage.ts";
import type { Db } from "../readers/connection.ts";

/**
 * One statement of a write: SQL with positional parameters, each a named placeholder
 * (filled in from the write's values) or a value drizzle put there itself.
 */
export interface StatementTemplate {
  sql: string;
  params: unknown[];
}

/** The write of one kind. */
export type WriteOf<K extends Write["kind"]> = Extract<Write, { kind: K }>;

/**
 * Everything one kind of write does: its statements and the values they take, used by
 * both adapters (a better-sqlite3 transaction; a D1 batch runs the same statements).
 */
export interface WriteEntry<W extends Write = Write> {
  /**
   * The statements, in order. Built once per connection and kept (`db` gives drizzle's
   * SQL dialect); per write only the parameters are filled in.
   */
  statements(db: Db): StatementTemplate[];
  /** The statements instead, for a store that seals audit records after the commit (see AuditSealing). */
  unsealedStatements?(db: Db): StatementTemplate[];
  /** The write's parameters as driver values, by placeholder name. */
  values(w: W): Record<string, unknown>;
}

/**
 * The entry of every kind of write but `require`, whose statement is its precondition's
 * (writes/preconditions.ts). Each file of writes exports the entries of one aggregate,
 * `satisfies Partial<WriteTable>`; writes/registry.ts puts them together.
 */
export type WriteTable = { [K in Exclude<Write["kind"], "require">]: WriteEntry<WriteOf<K>> };

/**
 * How audit records get their place in the hash chain: in their INSERT (SQLite, where
 * edgeid_audit_hash is registered on every connection), or by the adapter after the
 * commit (D1, which cannot compute SHA-256 in SQL).
 */
export type AuditSealing = "in-sql" | "after-commit";

/**
 * Hand-written SQL (with named parameters, in order) for the writes that are conditional
 * or set-based. Each touches only the rows of one device, token or certificate through
 * an index, so its cost does not grow with the number of certificates already revoked.
 */
export function raw(text: string, ...names: string[]): StatementTemplate {
  return { sql: text.replace(/\s+/g, " ").trim(), params: names.map((n) => sql.placeholder(n)) };
}

/**
 * The entry of a write whose statements take the write's own fields: each parameter
 * is named after one (a Date is bound as ms).
 */
export function writeOfFields<W extends Write>(...statements: StatementTemplate[]): WriteEntry<W> {
  const names = [...new Set(statements.flatMap((s) => s.params.flatMap((p) => (is(p, Placeholder) ? [p.name] : []))))];
  return { statements: () => statements, values: (w) => fieldValues(w, names) };
}

/** The fields `names` of a record as driver values (a Date as ms). */
export function fieldValues(record: object, names: readonly string[]): Record<string, unknown> {
  const fields = record as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const n of names) {
    const v = fields[n];
    out[n] = v instanceof Date ? v.getTime() : v;
  }
  return out;
}

/**
 * The entry of a write that inserts one whole row of `table`, the record `row(w)` with
 * every column a parameter named after it; then `also`, statements on the same values.
 */
export function rowInsert<W extends Write>(
  table: SQLiteTable,
  row: (w: W) => object,
  ...also: StatementTemplate[]
): WriteEntry<W> {
  return {
    statements: (db) => [db.insert(table).values(placeholders(table)).toSQL(), ...also],
    values: (w) => toDriver(table, row(w)),
  };
}

/**
 * An INSERT of a whole row that, when the row with its `key` exists, sets every other
 * column to the new value instead (`extra` overrides a column's new value). Columns in
 * `leave` are left out of that update: SQLite rewrites the entry of every index on a
 * column the SET names, changed or not, so a caller sets an indexed column that seldom
 * changes with a statement of its own that matches only when it does.
 */
export function upsertRow(
  db: Db,
  table: SQLiteTable,
  key: SQLiteColumn,
  extra: Record<string, SQL> = {},
  leave: readonly SQLiteColumn[] = [],
): StatementTemplate {
  const set: Record<string, SQL> = {};
  for (const [name, column] of Object.entries(getTableColumns(table))) {
    if (column !== key && !leave.includes(column)) set[name] = sql.raw(`excluded."${column.name}"`);
  }
  return db
    .insert(table)
    .values(placeholders(table))
    .onConflictDoUpdate({ target: key, set: { ...set, ...extra } })
    .toSQL();
}

/**
 * `{ column: placeholder }` for every column of a table. The placeholders are plain SQL,
 * so drizzle binds what it is given: toDriver() converts values to driver values first.
 */
function placeholders(table: Table): Record<string, SQL> {
  const out: Record<string, SQL> = {};
  for (const key of Object.keys(getTableColumns(table))) out[key] = sql`${sql.placeholder(key)}`;
  return out;
}

/** A record as driver values (Date → ms, JSON → text), through each column's own mapping. */
export function toDriver(table: Table, values: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const record = values as Record<string, unknown>;
  for (const [key, column] of Object.entries(getTableColumns(table))) {
    const v = record[key];
    out[key] = v === null || v === undefined ? null : column.mapToDriverValue(v);
  }
  return out;
}

export function toBuffer(bytes: Uint8Array): Buffer {
  // drizzle's blob(buffer) column wants a Buffer; D1 and better-sqlite3 both accept one.
  return bytes instanceof Buffer ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
