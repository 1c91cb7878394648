import type { Scheduler } from "../../authority/responders.ts";

/** Poll timers on Node that do not keep the process alive (each event loop has its own). */
export const nodeScheduler: Scheduler = {
  every(ms, run) {
    const timer = setInterval(run, ms);
    timer.unref();
    return { cancel: () => clearInterval(timer) };
  },
  after(ms, run) {
    const timer = setTimeout(run, ms);
    timer.unref();
    return { cancel: () => clearTimeout(timer) };
  },
};

/** How often an event loop writes the aggregated refusals of windows that closed. */
export const REFUSAL_FLUSH_MS = 15_000;

/** How often the main thread applies the JWT-SVID key schedule (keys are published a key lifetime ahead). */
export const JWT_ROTATION_MS = 60_000;

/** How often the main thread prunes workload SVIDs expired longer than the retention. */
export const SVID_PRUNE_MS = 3_600_000;
