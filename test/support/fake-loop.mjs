// A stand-in for server/entry/loop.ts in the LoopHub tests: speaks the hub's protocol
// (ready/failed, answers to revoked and close) and, as workerData says, fails to start
// or exits with code 3 once it reported ready (or at the first CRL published). With
// `share`, it offers those OCSP answers once it is ready; every `ocspAnswers` notice it
// is offered it hands back as an `audited` notice, { loop, answers }, for the test to see.
import { parentPort, workerData } from "node:worker_threads";

parentPort.on("message", (m) => {
  if (m.op === "crl" && workerData.exitOnCrl) process.exit(3);
  if (m.op === "ocspAnswers") {
    parentPort.postMessage({ id: 0, op: "audited", events: [{ loop: workerData.loop, answers: m.answers }] });
  }
  if (m.answer || !m.id) return;
  parentPort.postMessage({ id: m.id, answer: true, value: m.op === "revoked" ? workerData.generation : undefined });
});
if (workerData.fail) {
  parentPort.postMessage({ id: 0, op: "failed", message: "could not listen" });
} else {
  parentPort.postMessage({ id: 0, op: "ready" });
  if (workerData.share) parentPort.postMessage({ id: 0, op: "ocspAnswers", answers: workerData.share });
  if (workerData.crash) setImmediate(() => process.exit(3));
}
