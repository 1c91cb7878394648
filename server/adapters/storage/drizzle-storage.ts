import { is, Placeholder } from "drizzle-orm";
import type { Write } from "../../ports/storage.ts";
import { StorageConflictError } from "../../ports/storage.ts";
import { auditReaders } from "./readers/audit.ts";
import { certificateReaders } from "./readers/certificates.ts";
import { type Db, StorageConnection } from "./readers/connection.ts";
import { deviceReaders } from "./readers/devices.ts";
import { enrollmentReaders } from "./readers/enrollments.ts";
import { fleetAuditReaders } from "./readers/fleet-audit.ts";
import { mqttReaders } from "./readers/mqtt.ts";
import { operatorReaders } from "./readers/operators.ts";
import { revocationReaders } from "./readers/revocations.ts";
import { tokenReaders } from "./readers/tokens.ts";
import { trustBundleReaders } from "./readers/trust-bundles.ts";
import { workloadReaders } from "./readers/workloads.ts";
import type { CompiledWrite } from "./sqlite-batch.mjs";
import { writeEntry } from "./writes/registry.ts";
import type { AuditSealing, StatementTemplate, WriteEntry } from "./writes/write-entry.ts";

export type { Db, Prepared } from "./readers/connection.ts";

/** The readers of every aggregate (readers/*.ts), over one connection. */
const AggregateReaders = trustBundleReaders(
  workloadReaders(
    fleetAuditReaders(
      mqttReaders(
        auditReaders(
          operatorReaders(
            enrollmentReaders(tokenReaders(revocationReaders(certificateReaders(deviceReaders(StorageConnection))))),
          ),
        ),
      ),
    ),
  ),
);

/**
 * Readers and write builders shared by the better-sqlite3 and D1 adapters; the
 * adapters differ only in how a write set is made atomic.
 */
export class DrizzleReaders extends AggregateReaders {
  private readonly templates = new Map<WriteEntry, StatementTemplate[]>();

  constructor(
    db: Db,
    private readonly auditSealing: AuditSealing = "in-sql",
  ) {
    super(db);
  }

  /**
   * One write as SQL statements with positional parameters, executed by the adapter
   * inside its atomic unit (a better-sqlite3 transaction; a D1 batch takes the same
   * form). Each kind's statements come from its entry (writes/registry.ts) and are
   * built once; per write only the parameters are filled in.
   */
  protected compile(w: Write): CompiledWrite[] {
    const entry = writeEntry(w);
    let templates = this.templates.get(entry);
    if (!templates) {
      const unsealed = this.auditSealing === "after-commit" ? entry.unsealedStatements?.(this.db) : undefined;
      templates = unsealed ?? entry.statements(this.db);
      this.templates.set(entry, templates);
    }
    const values = entry.values(w);
    return templates.map((t) => ({
      sql: t.sql,
      params: t.params.map((p) => (is(p, Placeholder) ? values[p.name] : p)),
    }));
  }
}

/** Maps a driver's UNIQUE/PRIMARY KEY violation, or a write guard's CHECK, to the port's conflict error. */
export function asConflict(err: unknown): StorageConflictError | undefined {
  for (let e: unknown = err; e; e = (e as { cause?: unknown }).cause) {
    const message = String((e as { message?: unknown }).message ?? "");
    const m = /(?:UNIQUE|CHECK) constraint failed: ([\w.]+)/.exec(message);
    if (m) return new StorageConflictError(message, m[1] as string);
  }
  return undefined;
}
