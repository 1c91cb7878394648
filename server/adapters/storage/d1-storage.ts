import { drizzle } from "drizzle-orm/d1";
import type { Storage, Write } from "../../ports/storage.ts";
import { asConflict, type Db, DrizzleReaders } from "./drizzle-storage.ts";
import { schema } from "./schema.ts";

/** The parts of a D1 binding this adapter uses (the Workers type, structurally). */
export interface D1Like {
  prepare(sql: string): D1StatementLike;
  batch(statements: D1StatementLike[]): Promise<unknown[]>;
}

export interface D1StatementLike {
  bind(...values: unknown[]): D1StatementLike;
  all<T = Record<string, unknown>>(): Promise<{ results: T[] }>;
  first<T = Record<string, unknown>>(): Promise<T | null>;
}

interface UnsealedRow {
  id: number;
  at: number;
  actor: string;
  action: string;
  outcome: string;
  device_id: string | null;
  serial: string | null;
  remote: string | null;
  detail: string | null;
}

const SEAL_PAGE = 500;

/**
 * Storage on Cloudflare D1 (Workers): the same readers and write SQL as the SQLite
 * file, with each write set committed as one D1 `batch` (D1 runs a batch as one
 * transaction; it has no interactive ones). D1 cannot compute SHA-256 in SQL, so audit
 * records are inserted unsealed and chained right after the batch, in id order; the
 * chain is deterministic, so two isolates sealing at once write the same hashes and the
 * second one's conditional updates change nothing.
 */
export class D1Storage extends DrizzleReaders implements Storage {
  private readonly observers: ((writes: readonly Write[]) => void)[] = [];

  constructor(
    private readonly d1: D1Like,
    private readonly subtle: SubtleCrypto,
  ) {
    super(drizzle(d1 as never, { schema }) as unknown as Db, "after-commit");
  }

  async apply(writes: readonly Write[]): Promise<void> {
    const statements = writes.flatMap((w) => this.compile(w));
    try {
      await this.d1.batch(statements.map((s) => this.d1.prepare(s.sql).bind(...s.params.map(d1Value))));
    } catch (err) {
      throw asConflict(err) ?? err;
    }
    if (writes.some((w) => w.kind === "audit")) await this.sealAudit();
    for (const observe of this.observers) observe(writes);
  }

  observe(listener: (writes: readonly Write[]) => void): void {
    this.observers.push(listener);
  }

  /** Chains the unsealed audit records (see class comment); returns how many it sealed. */
  async sealAudit(): Promise<number> {
    let sealed = 0;
    for (;;) {
      const { results: rows } = await this.d1
        .prepare(
          `SELECT id, at, actor, action, outcome, device_id, serial, remote, detail FROM audit_events
           WHERE hash IS NULL ORDER BY id LIMIT ${SEAL_PAGE}`,
        )
        .all<UnsealedRow>();
      const first = rows[0];
      if (!first) return sealed;
      let prev =
        (
          await this.d1
            .prepare("SELECT hash FROM audit_events WHERE id < ? AND hash IS NOT NULL ORDER BY id DESC LIMIT 1")
            .bind(first.id)
            .first<{ hash: string }>()
        )?.hash ?? "";
      const updates: D1StatementLike[] = [];
      for (const r of rows) {
        const fields = [prev, r.at, r.actor, r.action, r.outcome, r.device_id, r.serial, r.remote, r.detail];
        const digest = await this.subtle.digest("SHA-256", new TextEncoder().encode(JSON.stringify(fields)));
        const hash = [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
        updates.push(
          this.d1
            .prepare("UPDATE audit_events SET prev_hash = ?, hash = ? WHERE id = ? AND hash IS NULL")
            .bind(prev, hash, r.id),
        );
        prev = hash;
      }
      await this.d1.batch(updates);
      sealed += rows.length;
      if (rows.length < SEAL_PAGE) return sealed;
    }
  }

  async close(): Promise<void> {}
}

/** D1 binds numbers, strings, null and ArrayBuffers; the compiled writes carry Buffers for blobs. */
function d1Value(v: unknown): unknown {
  if (v === undefined) return null;
  if (v instanceof Uint8Array) return v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength);
  if (typeof v === "boolean") return v ? 1 : 0;
  return v;
}
