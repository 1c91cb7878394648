/**
 * Where the CPU of one operation goes, by the role of each server thread, against what
 * a target rate leaves on this machine's cores. Every thread of the server and the load
 * generator shares the same cores, so a rate target is a budget for all of them
 * together: at R operations/s on C cores, C × 10⁶ / R µs of CPU per operation.
 */

/** Issue 23's targets for this machine. */
export const ENROLL_TARGET_RATIO = 0.4;
export const REENROLL_TARGET_RATE = 800;
export const OCSP_TARGET_RATE = 10_000;

export type Role =
  | "event loops"
  | "signature checks"
  | "SQLite writer"
  | "WAL checkpoints"
  | "V8 helpers"
  | "other threads";

const ROLES: readonly Role[] = [
  "event loops",
  "signature checks",
  "SQLite writer",
  "WAL checkpoints",
  "V8 helpers",
  "other threads",
];

/**
 * A server thread's role, from the name the server gives it (Node 24+ passes a worker's
 * name to the kernel; Node 20 and 22 name every thread "node") or, for an event loop, from
 * the thread ids the server logs.
 */
export function roleOf(name: string, isLoop: boolean): Role {
  if (isLoop || /^loop-\d+$/.test(name)) return "event loops";
  if (/^verify-\d+$/.test(name)) return "signature checks";
  if (name === "sqlite-writer") return "SQLite writer";
  if (name === "wal-checkpoint") return "WAL checkpoints";
  if (/(^|-)V8Worker$/.test(name)) return "V8 helpers";
  return "other threads";
}

export interface ThreadUse {
  name: string;
  isLoop: boolean;
  /** CPU seconds the thread used in the measured window. */
  seconds: number;
}

export interface CpuBudget {
  /** µs of CPU per operation by role; "other threads" also holds threads that ended in the window. */
  byRole: { role: Role; us: number }[];
  serverUs: number;
  clientUs: number;
  totalUs: number;
  /** What the target rate leaves per operation on `cores`, for server and load generator together. */
  budgetUs: number;
}

export function cpuBudget(input: {
  threads: ThreadUse[];
  /** The server process's CPU seconds in the window (every thread, including those that ended). */
  serverSeconds: number;
  clientSeconds: number;
  operations: number;
  cores: number;
  targetRate: number;
}): CpuBudget {
  const n = Math.max(1, input.operations);
  const seconds = new Map<Role, number>(ROLES.map((r) => [r, 0]));
  for (const t of input.threads) {
    const role = roleOf(t.name, t.isLoop);
    if (role !== "other threads") seconds.set(role, (seconds.get(role) ?? 0) + t.seconds);
  }
  const named = [...seconds.values()].reduce((a, b) => a + b, 0);
  seconds.set("other threads", Math.max(0, input.serverSeconds - named));
  const byRole = ROLES.map((role) => ({ role, us: ((seconds.get(role) ?? 0) * 1e6) / n }));
  const serverUs = (input.serverSeconds * 1e6) / n;
  const clientUs = (input.clientSeconds * 1e6) / n;
  return {
    byRole,
    serverUs,
    clientUs,
    totalUs: serverUs + clientUs,
    budgetUs: (input.cores * 1e6) / input.targetRate,
  };
}

/** Two lines for the bench's report. */
export function describeBudget(b: CpuBudget, what: string, target: string, cores: number): string[] {
  const roles = b.byRole
    .filter((r) => r.us >= 0.5)
    .map((r) => `${r.role} ${r.us.toFixed(0)}`)
    .join(", ");
  return [
    `  CPU per ${what}: ${b.totalUs.toFixed(0)} µs = server ${b.serverUs.toFixed(0)} (${roles}) + load generator ${b.clientUs.toFixed(0)}`,
    `  ${target} leaves ${b.budgetUs.toFixed(0)} µs per ${what} on ${cores} cores, server and load generator together` +
      ` (${((b.budgetUs / b.totalUs) * 100).toFixed(0)} % of what one takes now)`,
  ];
}
