import type { BackoffOptions } from "./backoff.ts";
import type { CrashStep } from "./store.ts";

/**
 * No clock on a gateway can be earlier than this build: the first floor of the time
 * the agent trusts (then the last saved time and the server's Date header raise it).
 */
export const BUILD_TIME = Date.parse("2026-11-24T00:00:00Z");

export const HOUR = 3_600_000;

export interface Timers {
  setTimeout(run: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Time, randomness, timers and side effects are parameters, so tests control them. */
export interface AgentDeps {
  now: () => number;
  random: () => number;
  timers: Timers;
  log: (level: "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>) => void;
  /** Fault injection: called at each step of a rotation (tests stop the process there). */
  crash?: (step: CrashStep) => void;
  backoff?: BackoffOptions;
  buildTime?: number;
  /** Runs the post-rotation hook; by default a shell command with the file paths in its environment. */
  runHook?: (command: string, env: Record<string, string>) => Promise<void>;
}

export const nodeDeps = (overrides: Partial<AgentDeps> = {}): AgentDeps => ({
  now: () => Date.now(),
  random: Math.random,
  timers: {
    setTimeout: (run, ms) => setTimeout(run, ms),
    clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  },
  log: (level, msg, fields) =>
    process.stderr.write(`${JSON.stringify({ level, time: new Date().toISOString(), msg, ...fields })}\n`),
  ...overrides,
});
