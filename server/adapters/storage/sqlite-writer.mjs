// The writer thread of SqliteStorage ({ writer: "thread" }): its own connection to the
// database file, committing the batches the event loop sends, so that statement
// execution, commits and WAL checkpoints happen off the event loop. The other event
// loops of `edgeid serve --loops N` send theirs on ports of their own: this one thread
// commits them all, and the batches that arrive in the same turn share a transaction.

import { parentPort, workerData } from "node:worker_threads";
import Database from "better-sqlite3";
import { commitBatch, configure } from "./sqlite-batch.mjs";

const db = new Database(workerData.file);
configure(db);

/**
 * Batches that arrived and are not committed yet, with the port each came on. Batches
 * of several ports that arrive in the same turn are committed in one transaction (one
 * fsync), each set still all-or-nothing on its own; each port gets its sets' answers.
 */
let queued = [];

function commitQueued() {
  const batches = queued;
  queued = [];
  const sets = batches.flatMap((b) => b.sets);
  let failures;
  try {
    failures = commitBatch(db, sets);
  } catch (err) {
    const error = { message: String(err?.message ?? err), code: err?.code ?? null };
    for (const b of batches) b.port.postMessage({ error });
    return;
  }
  let at = 0;
  for (const b of batches) {
    b.port.postMessage({ failures: failures.slice(at, at + b.sets.length) });
    at += b.sets.length;
  }
}

/** Takes the batches that arrive on one port. SQL texts are known by the id the sender gave them, per port. */
function serve(port) {
  const texts = [];
  port.on("message", (message) => {
    if (message === "close") {
      // A loop's port is only let go of; the connection is the main thread's to close.
      if (port !== parentPort) {
        port.close();
        return;
      }
      if (queued.length > 0) commitQueued();
      db.close();
      port.postMessage({ closed: true });
      return;
    }
    // Another event loop's own line to this writer (SqliteStorage#connectWriter).
    if (message?.port) {
      serve(message.port);
      return;
    }
    for (const [id, sql] of message.define) texts[id] = sql;
    const sets = message.sets.map((set) => set.map(([id, params]) => ({ sql: texts[id], params })));
    if (queued.length === 0) setImmediate(commitQueued);
    queued.push({ port, sets });
  });
}

serve(parentPort);
