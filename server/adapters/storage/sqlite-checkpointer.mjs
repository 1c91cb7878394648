// The checkpointer thread of the SQLite writer thread (sqlite-writer.mjs): its own
// connection, copying committed WAL pages into the database file (a PASSIVE checkpoint:
// it never blocks the writer or a reader) while the writer commits the next batch.
// Asks that arrive while it works wait for the next turn; a checkpoint copies every
// page committed by then.

import { parentPort, workerData } from "node:worker_threads";
import Database from "better-sqlite3";
import { configure } from "./sqlite-batch.mjs";

const db = new Database(workerData.file);
configure(db);
// Only this thread's own asks checkpoint on this connection (it never writes).
db.pragma("wal_autocheckpoint = 0");

parentPort.on("message", (message) => {
  if (message === "close") {
    db.close();
    parentPort.close();
    return;
  }
  db.pragma("wal_checkpoint(PASSIVE)");
});
