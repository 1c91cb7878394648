// The writer thread of SqliteStorage ({ writer: "thread" }): its own connection to the
// database file, committing the batches the event loop sends, so that statement
// execution, commits and WAL checkpoints happen off the event loop. The other event
// loops of `edgeid serve --loops N` send theirs on ports of their own: this one thread
// commits them all, and the batches that arrive in the same turn share a transaction.
// WAL checkpoints are a thread of their own (sqlite-checkpointer.mjs), so that a COMMIT
// no longer waits for ~1,000 pages to be copied into the database file and synced.

import { parentPort, Worker, workerData } from "node:worker_threads";
import Database from "better-sqlite3";
import { commitBatch, configure } from "./sqlite-batch.mjs";

const db = new Database(workerData.file);
configure(db);

/**
 * Write sets committed between two requests to the checkpointer: at an enrollment's
 * 6–14 WAL pages, 100 sets are about as many pages as SQLite's automatic checkpoint
 * waits for (1,000).
 */
const SETS_PER_CHECKPOINT = 100;
/**
 * The writer's own automatic checkpoint is the safety net: it copies what the
 * checkpointer has not (all of it, should the checkpointer thread be gone) once the WAL
 * holds this many pages, inside a COMMIT as SQLite does by default. Under sustained
 * load it is also what starts the WAL over (SQLite restarts the file only when a write
 * begins with every frame copied, which a checkpoint beside the writer seldom leaves),
 * so the WAL grows to about this many pages (~40 MiB) before it does.
 */
const WAL_PAGES_BEFORE_THE_WRITER_CHECKPOINTS = 10_000;
const DEFAULT_AUTOCHECKPOINT = 1_000;

let checkpointer = new Worker(new URL("./sqlite-checkpointer.mjs", import.meta.url), {
  workerData: { file: workerData.file },
  name: "wal-checkpoint",
});
db.pragma(`wal_autocheckpoint = ${WAL_PAGES_BEFORE_THE_WRITER_CHECKPOINTS}`);
/** Set by close(): what runs once the checkpointer has closed its connection and exited. */
let afterCheckpointer;
checkpointer.on("error", (err) => {
  process.emitWarning(`SQLite checkpointer thread failed (${err.message}): the writer checkpoints again`);
});
checkpointer.on("exit", () => {
  checkpointer = undefined;
  if (afterCheckpointer) afterCheckpointer();
  // Gone while serving: checkpoints go back into the writer's COMMITs; nothing is lost.
  else db.pragma(`wal_autocheckpoint = ${DEFAULT_AUTOCHECKPOINT}`);
});
let setsSinceCheckpoint = 0;

/** Asks the checkpointer for a checkpoint once enough sets have committed since the last ask. */
function committed(sets) {
  setsSinceCheckpoint += sets;
  if (!checkpointer || setsSinceCheckpoint < SETS_PER_CHECKPOINT) return;
  setsSinceCheckpoint = 0;
  checkpointer.postMessage("checkpoint");
}

/** Lets the checkpointer finish and close its connection, then closes the writer's. */
function close(done) {
  const finish = () => {
    db.close();
    done();
  };
  if (!checkpointer) {
    finish();
    return;
  }
  afterCheckpointer = finish;
  checkpointer.postMessage("close");
}

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
  committed(sets.length);
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
      close(() => port.postMessage({ closed: true }));
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
