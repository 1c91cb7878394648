import { closeSync, openSync } from "node:fs";
import Database from "better-sqlite3";
import { drizzle } from "drizzle-orm/better-sqlite3";
import { migrate } from "drizzle-orm/better-sqlite3/migrator";
import type { Storage, Write } from "../../ports/storage.ts";
import { asConflict, type Db, DrizzleReaders } from "./drizzle-storage.ts";
import { schema } from "./schema.ts";

export const MIGRATIONS_DIR = new URL("../../../migrations", import.meta.url).pathname;

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
    sqlite.pragma("foreign_keys = ON");
    const db = drizzle({ client: sqlite, schema });
    migrate(db, { migrationsFolder: MIGRATIONS_DIR });
    return new SqliteStorage(db, sqlite);
  }

  async apply(writes: readonly Write[]): Promise<void> {
    const statements = writes.map((w) => this.statement(w));
    try {
      this.sqlite.transaction(() => {
        for (const s of statements) s.run();
      })();
    } catch (err) {
      throw asConflict(err) ?? err;
    }
  }

  close(): void {
    this.sqlite.close();
  }
}
