import { closeSync, openSync } from "node:fs";
import Database from "better-sqlite3";
import { drizzle } from "drizzle-orm/better-sqlite3";
import { migrate } from "drizzle-orm/better-sqlite3/migrator";
import type { Storage, Write } from "../../ports/storage.ts";
import { asConflict, type Db, DrizzleReaders } from "./drizzle-storage.ts";
import { schema } from "./schema.ts";

export const MIGRATIONS_DIR = new URL("../../../migrations", import.meta.url).pathname;

interface PendingSet {
  statements: { query: { run(params: Record<string, unknown>): unknown }; params: Record<string, unknown> }[];
  resolve(): void;
  reject(err: unknown): void;
}

/** The embedded default: a SQLite file in WAL mode, migrations applied on open. */
export class SqliteStorage extends DrizzleReaders implements Storage {
  private constructor(
    db: Db,
    readonly sqlite: Database.Database,
  ) {
    super(db);
  }

  static open(file: string): SqliteStorage {
    // Create the file 0600 ourselves: SQLite gives its -wal and -shm files the same mode.
    closeSync(openSync(file, "a", 0o600));
    const sqlite = new Database(file);
    sqlite.pragma("journal_mode = WAL");
    sqlite.pragma("synchronous = NORMAL");
    sqlite.pragma("busy_timeout = 5000");
    // 64 MiB of page cache: the certificate indexes are keyed by random values
    // (serial, fingerprints), so inserts touch pages all over them.
    sqlite.pragma("cache_size = -65536");
    // Savepoint journals (the group commit's slow path) in memory, not in temp files.
    sqlite.pragma("temp_store = MEMORY");
    sqlite.pragma("foreign_keys = ON");
    const db = drizzle({ client: sqlite, schema });
    migrate(db, { migrationsFolder: MIGRATIONS_DIR });
    return new SqliteStorage(db, sqlite);
  }

  /**
   * Group commit: the write sets that arrive while the event loop is busy are
   * committed together at the next turn, in one transaction. Each set stays
   * all-or-nothing and is settled on its own: the batch is first tried as a whole
   * (the common case: no conflicts, no savepoints); if any statement fails, that
   * attempt is rolled back and the batch is replayed with one savepoint per set, so
   * that a conflict fails only its own set.
   */
  async apply(writes: readonly Write[]): Promise<void> {
    const statements = writes.map((w) => this.statement(w));
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ statements, resolve, reject });
      if (this.pending.length === 1) setImmediate(this.flush);
    });
  }

  private pending: PendingSet[] = [];

  private readonly flush = (): void => {
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    const runSet = (set: PendingSet) => {
      for (const s of set.statements) s.query.run(s.params);
    };
    const failures: unknown[] = new Array(batch.length);
    try {
      try {
        this.sqlite.transaction(() => batch.forEach(runSet))();
      } catch {
        this.sqlite.transaction(() => {
          batch.forEach((set, i) => {
            try {
              // A nested better-sqlite3 transaction is a SAVEPOINT.
              this.sqlite.transaction(() => runSet(set))();
            } catch (err) {
              failures[i] = asConflict(err) ?? err;
            }
          });
        })();
      }
    } catch (err) {
      for (const set of batch) set.reject(err);
      return;
    }
    batch.forEach((set, i) => {
      if (failures[i] === undefined) set.resolve();
      else set.reject(failures[i]);
    });
  };

  close(): void {
    this.flush();
    this.sqlite.close();
  }
}
