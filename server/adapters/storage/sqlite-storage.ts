import { closeSync, openSync } from "node:fs";
import { MessageChannel, type MessagePort, Worker } from "node:worker_threads";
import Database from "better-sqlite3";
import { drizzle } from "drizzle-orm/better-sqlite3";
import { migrate } from "drizzle-orm/better-sqlite3/migrator";
import type { Storage, Write } from "../../ports/storage.ts";
import { asConflict, type Db, DrizzleReaders } from "./drizzle-storage.ts";
import { schema } from "./schema.ts";
import { type BatchFailure, type CompiledWrite, commitBatch, configure, sealAuditRows } from "./sqlite-batch.mjs";

export const MIGRATIONS_DIR = new URL("../../../migrations", import.meta.url).pathname;

interface PendingSet {
  statements: CompiledWrite[];
  resolve(): void;
  reject(err: unknown): void;
}

export interface SqliteOptions {
  /**
   * Where write sets are committed: on this thread ("inline", for the CLI and tests)
   * or on a writer thread with its own connection ("thread", for the server: commits
   * and WAL checkpoints leave the event loop). Reads always use this thread's connection.
   */
  writer?: "inline" | "thread" | RemoteWriter;
}

/**
 * The writes of an extra event loop (a worker thread serving HTTPS next to the main
 * one): each write set goes whole to the process's one writer (`SqliteStorage` on the
 * main thread), which commits it in its group commit, guards and all. The database is
 * opened for reads only here: migrations and sealing are the main thread's.
 */
export interface RemoteWriter {
  apply(writes: readonly Write[]): Promise<void>;
  nextCrlNumber(issuer: string): Promise<bigint>;
  /**
   * A line of this loop's own to the writer thread (`connectWriter` on the main
   * thread): write sets are group-committed over it, without the main thread's event
   * loop in between; `apply` is then not used.
   */
  port?: MessagePort;
}

const WRITER_URL = new URL("./sqlite-writer.mjs", import.meta.url);

/** The embedded default: a SQLite file in WAL mode, migrations applied on open. */
export class SqliteStorage extends DrizzleReaders implements Storage {
  private pending: PendingSet[] = [];
  private inFlight: PendingSet[] | undefined;
  private closing: Promise<void> | undefined;
  private broken: Error | undefined;
  private writerGone = false;
  private readonly observers: ((writes: readonly Write[]) => void)[] = [];
  /** Ids of the SQL texts already sent to the writer thread. */
  private readonly sqlIds = new Map<string, number>();

  private constructor(
    db: Db,
    readonly sqlite: Database.Database,
    private readonly writer: Worker | MessagePort | undefined,
    private readonly remote?: RemoteWriter,
  ) {
    super(db);
    writer?.on("message", (reply: WriterReply) => this.settle(reply));
    if (writer instanceof Worker) {
      writer.on("error", (err) => this.fail(`writer thread failed: ${err.message}`));
      writer.on("exit", (code) => {
        this.writerGone = true;
        if (!this.closing) this.fail(`writer thread exited (${code})`);
      });
    } else {
      writer?.on("close", () => {
        this.writerGone = true;
        if (!this.closing) this.fail("the line to the writer thread closed");
      });
    }
  }

  static open(file: string, opts: SqliteOptions = {}): SqliteStorage {
    // Create the file 0600 ourselves: SQLite gives its -wal and -shm files the same mode.
    closeSync(openSync(file, "a", 0o600));
    const sqlite = new Database(file);
    configure(sqlite);
    const db = drizzle({ client: sqlite, schema });
    if (typeof opts.writer === "object") return new SqliteStorage(db, sqlite, opts.writer.port, opts.writer);
    migrate(db, { migrationsFolder: MIGRATIONS_DIR });
    sealAuditRows(sqlite);
    const writer =
      opts.writer === "thread" ? new Worker(WRITER_URL, { workerData: { file }, name: "sqlite-writer" }) : undefined;
    return new SqliteStorage(db, sqlite, writer);
  }

  /**
   * Group commit: the write sets that arrive while the event loop is busy (or while
   * the writer thread commits the previous batch) are committed together, in one
   * transaction. Each set stays all-or-nothing and is settled on its own: a conflict
   * fails only its own set (sqlite-batch.mjs).
   */
  async apply(writes: readonly Write[]): Promise<void> {
    if (this.closing) throw new Error("storage is closed");
    if (this.broken) throw this.broken;
    if (this.remote && !this.writer) {
      await this.remote.apply(writes);
      for (const observe of this.observers) observe(writes);
      return;
    }
    const statements = writes.flatMap((w) => this.compile(w));
    await new Promise<void>((resolve, reject) => {
      this.pending.push({ statements, resolve, reject });
      if (this.pending.length === 1 && !this.inFlight) setImmediate(this.flush);
    });
    for (const observe of this.observers) observe(writes);
  }

  override async nextCrlNumber(issuer: string): Promise<bigint> {
    return this.remote ? this.remote.nextCrlNumber(issuer) : super.nextCrlNumber(issuer);
  }

  /**
   * A line for another event loop to the writer thread (transfer it to that loop, for
   * its `RemoteWriter.port`): its write sets are committed by the same thread, in the
   * same order as everything else, without passing through this event loop. Their
   * observers are that loop's.
   */
  connectWriter(): MessagePort {
    if (!(this.writer instanceof Worker)) throw new Error("connectWriter needs the writer thread");
    const { port1, port2 } = new MessageChannel();
    this.writer.postMessage({ port: port2 }, [port2]);
    return port1;
  }

  /** Told of every write set after it committed (the metrics follow the audit records). */
  observe(listener: (writes: readonly Write[]) => void): void {
    this.observers.push(listener);
  }

  private readonly flush = (): void => {
    if (this.inFlight || this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    const sets = batch.map((b) => b.statements);
    if (this.writer) {
      this.inFlight = batch;
      const define: [number, string][] = [];
      const message = sets.map((set) =>
        set.map((s): [number, unknown[]] => {
          let id = this.sqlIds.get(s.sql);
          if (id === undefined) {
            id = this.sqlIds.size;
            this.sqlIds.set(s.sql, id);
            define.push([id, s.sql]);
          }
          return [id, s.params];
        }),
      );
      this.writer.postMessage({ define, sets: message });
      return;
    }
    this.inFlight = batch;
    try {
      this.settle({ failures: commitBatch(this.sqlite, sets) });
    } catch (err) {
      this.settle({ error: { message: String((err as Error).message), code: null } });
    }
  };

  /** The writer thread is gone: this write and every later one fails (the server answers 500). */
  private fail(message: string): void {
    this.broken = new Error(message);
    this.settle({ error: { message, code: null } });
    for (const set of this.pending.splice(0)) set.reject(this.broken);
  }

  private settle(reply: WriterReply): void {
    const batch = this.inFlight ?? [];
    this.inFlight = undefined;
    if ("closed" in reply) return;
    batch.forEach((set, i) => {
      const failure = "error" in reply ? reply.error : reply.failures[i];
      if (!failure) set.resolve();
      else set.reject(asConflict(failure) ?? new Error(`storage write failed: ${failure.message}`));
    });
    if (this.pending.length > 0) setImmediate(this.flush);
  }

  /** Commits what is pending, stops the writer thread, closes the connection. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    while (this.inFlight || this.pending.length > 0) {
      if (!this.inFlight) this.flush();
      await new Promise((r) => setImmediate(r));
    }
    if (this.writer && !(this.writer instanceof Worker)) {
      this.writer.close();
    } else if (this.writer && !this.writerGone) {
      const writer = this.writer;
      await new Promise<void>((resolve) => {
        writer.once("exit", () => resolve());
        writer.once("message", () => void writer.terminate());
        writer.postMessage("close");
      });
    }
    this.sqlite.close();
  }
}

type WriterReply = { failures: (BatchFailure | null)[] } | { error: BatchFailure } | { closed: true };
