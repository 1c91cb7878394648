// The writer thread of SqliteStorage ({ writer: "thread" }): its own connection to the
// database file, committing the batches the event loop sends, so that statement
// execution, commits and WAL checkpoints happen off the event loop.

import { parentPort, workerData } from "node:worker_threads";
import Database from "better-sqlite3";
import { commitBatch, configure } from "./sqlite-batch.mjs";

const db = new Database(workerData.file);
configure(db);

/** SQL texts by the id the event loop gave them: each text crosses the thread once. */
const texts = [];

parentPort.on("message", (message) => {
  if (message === "close") {
    db.close();
    parentPort.postMessage({ closed: true });
    return;
  }
  for (const [id, sql] of message.define) texts[id] = sql;
  const sets = message.sets.map((set) => set.map(([id, params]) => ({ sql: texts[id], params })));
  try {
    parentPort.postMessage({ failures: commitBatch(db, sets) });
  } catch (err) {
    parentPort.postMessage({ error: { message: String(err?.message ?? err), code: err?.code ?? null } });
  }
});
