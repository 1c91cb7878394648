/**
 * What the machine charges for waking another thread, printed beside OpenSSL's rate.
 * Every enrollment crosses threads (event loop → signature worker → event loop →
 * SQLite writer → event loop) and processes (load generator ↔ server over loopback);
 * on virtual machines a wake-up of an idle CPU can cost more than an ECDSA signature.
 */

import { Worker } from "node:worker_threads";

export interface WakeupCost {
  /** µs the sender spends in postMessage when the receiving thread sleeps. */
  toSleepingThread: number;
  /** µs per postMessage in a burst (the receiver is awake: no wake-up). */
  burst: number;
  /** µs for a message to a sleeping thread and its answer back. */
  roundTrip: number;
}

const ECHO = `const { parentPort } = require("node:worker_threads");
parentPort.on("message", (m) => { if (m === "ping") parentPort.postMessage("pong"); });`;

export async function threadWakeup(samples = 300): Promise<WakeupCost> {
  const worker = new Worker(ECHO, { eval: true });
  try {
    await new Promise<void>((resolve, reject) => {
      worker.once("online", () => resolve());
      worker.once("error", reject);
    });
    const idle = () => new Promise((r) => setTimeout(r, 2));
    let sleeping = 0;
    let roundTrips = 0;
    for (let i = 0; i < samples; i++) {
      await idle();
      const t = performance.now();
      worker.postMessage(0);
      sleeping += performance.now() - t;
      await idle();
      const u = performance.now();
      await new Promise<void>((resolve) => {
        worker.once("message", () => resolve());
        worker.postMessage("ping");
      });
      roundTrips += performance.now() - u;
    }
    const burstCount = 20_000;
    const b = performance.now();
    for (let i = 0; i < burstCount; i++) worker.postMessage(0);
    const burst = performance.now() - b;
    return {
      toSleepingThread: (sleeping * 1000) / samples,
      burst: (burst * 1000) / burstCount,
      roundTrip: (roundTrips * 1000) / samples,
    };
  } finally {
    await worker.terminate();
  }
}

export function describeWakeup(w: WakeupCost): string {
  return (
    `thread wake-up: postMessage to a sleeping worker ${w.toSleepingThread.toFixed(1)} µs (sender side),` +
    ` ${w.burst.toFixed(1)} µs to an awake one · round trip from sleep ${w.roundTrip.toFixed(0)} µs`
  );
}
