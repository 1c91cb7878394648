// Worker thread of WorkerVerifier (verify-pool.ts): checks batches of signatures with
// node:crypto, off the event loop. Plain JavaScript so that it needs no loader.
import { parentPort } from "node:worker_threads";
import { checkSignature } from "./signature-check.mjs";

// Batches are answered in the order they came (the pool relies on it).
let chain = Promise.resolve();
parentPort.on("message", (batch) => {
  chain = chain.then(async () => {
    try {
      const results = [];
      for (const r of batch) results.push(await checkSignature(r));
      parentPort.postMessage(results);
    } catch (err) {
      // Answer the batch anyway: the pool fails these checks and the chain goes on.
      parentPort.postMessage({ error: String(err?.message ?? err) });
    }
  });
});
