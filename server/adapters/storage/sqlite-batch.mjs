// One group commit on a better-sqlite3 connection, shared by the in-thread writer
// (sqlite-storage.ts) and the writer thread (sqlite-writer.mjs). Plain JavaScript so
// that a worker thread can load it without a TypeScript loader.

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
}
