// One group commit on a better-sqlite3 connection, shared by the in-thread writer
// (sqlite-storage.ts) and the writer thread (sqlite-writer.mjs). Plain JavaScript so
// that a worker thread can load it without a TypeScript loader.

import { createHash } from "node:crypto";

/** Prepared statements by SQL text, per connection. */
const caches = new WeakMap();

function prepared(db, sql) {
  let cache = caches.get(db);
  if (!cache) {
    cache = new Map();
    caches.set(db, cache);
  }
  let stmt = cache.get(sql);
  if (!stmt) {
    stmt = db.prepare(sql);
    cache.set(sql, stmt);
  }
  return stmt;
}

/**
 * Commits write sets (arrays of { sql, params }) in one transaction. The batch is first
 * tried whole (no savepoints: the common case has no conflicts); if any statement
 * fails, that attempt is rolled back and the batch is replayed with one savepoint per
 * set, so that a failure fails only its own set. Returns, per set, null or the error
 * as { message, code }. Throws if the transaction itself cannot commit.
 */
export function commitBatch(db, sets) {
  const runSet = (set) => {
    for (const s of set) prepared(db, s.sql).run(s.params);
  };
  const failures = sets.map(() => null);
  try {
    db.transaction(() => {
      for (const set of sets) runSet(set);
    })();
    return failures;
  } catch {
    // fall through to the replay
  }
  db.transaction(() => {
    sets.forEach((set, i) => {
      try {
        // A nested better-sqlite3 transaction is a SAVEPOINT.
        db.transaction(() => runSet(set))();
      } catch (err) {
        failures[i] = { message: String(err?.message ?? err), code: err?.code ?? null };
      }
    });
  })();
  return failures;
}

/** The connection settings every edgeid connection uses (WAL, see sqlite-storage.ts). */
export function configure(db) {
  db.pragma("journal_mode = WAL");
  // FULL: a commit is on disk before anyone is told it happened. A device never holds
  // a certificate the inventory lost, and a redeemed token stays redeemed across a power
  // cut. Group commit makes this one fsync per batch, on the writer thread.
  db.pragma("synchronous = FULL");
  db.pragma("busy_timeout = 5000");
  // 64 MiB of page cache: the certificate indexes are keyed by random values
  // (serial, fingerprints), so inserts touch pages all over them.
  db.pragma("cache_size = -65536");
  // Savepoint journals (the replay path) in memory, not in temp files.
  db.pragma("temp_store = MEMORY");
  db.pragma("foreign_keys = ON");
  db.function("edgeid_audit_hash", { deterministic: true, varargs: true }, (...fields) => auditHash(fields));
}

/**
 * The audit hash chain: SHA-256 (hex) of the JSON array [prevHash, at, actor, action,
 * outcome, deviceId, serial, remote, detail] with the stored column values. The same
 * function exists in the core (authority/audit-chain.ts), which verifies the chain.
 */
export function auditHash(fields) {
  return createHash("sha256").update(JSON.stringify(fields)).digest("hex");
}

/**
 * Seals audit rows written before the chain existed (migration 0003), in id order,
 * continuing from the last sealed row. Runs once per database; a no-op afterwards.
 */
export function sealAuditRows(db) {
  const unsealed = db
    .prepare(
      "SELECT id, at, actor, action, outcome, device_id, serial, remote, detail FROM audit_events WHERE hash IS NULL ORDER BY id",
    )
    .all();
  if (unsealed.length === 0) return 0;
  const update = db.prepare("UPDATE audit_events SET prev_hash = ?, hash = ? WHERE id = ?");
  db.transaction(() => {
    for (const r of unsealed) {
      const prev =
        db.prepare("SELECT hash FROM audit_events WHERE id < ? AND hash IS NOT NULL ORDER BY id DESC LIMIT 1").get(r.id)
          ?.hash ?? "";
      const hash = auditHash([prev, r.at, r.actor, r.action, r.outcome, r.device_id, r.serial, r.remote, r.detail]);
      update.run(prev, hash, r.id);
    }
  })();
  return unsealed.length;
}
