// The writer thread of SqliteStorage ({ writer: "thread" }): its own connection to the
// database file, committing the batches the event loop sends, so that statement
// execution, commits and WAL checkpoints happen off the event loop.

import { parentPort, workerData } from "node:worker_threads";
import Database from "better-sqlite3";
import { commitBatch, configure } from "./sqlite-batch.mjs";

const db = new Database(workerData.file);
configure(db);

parentPort.on("message", (message) => {
  if (message === "close") {
    db.close();
    parentPort.postMessage({ closed: true });
    return;
  }
  try {
    parentPort.postMessage({ failures: commitBatch(db, message) });
  } catch (err) {
    parentPort.postMessage({ error: { message: String(err?.message ?? err), code: err?.code ?? null } });
  }
});
