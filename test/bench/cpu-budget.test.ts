import { describe, expect, it } from "vitest";
import { cpuBudget, describeBudget, roleOf } from "../../bench/cpu-budget.ts";

describe("the bench's CPU budget", () => {
  it("tells a thread's role by the name the server gives it, on every Node line", () => {
    expect(roleOf("loop-2", false)).toBe("event loops");
    // The main thread is loop 1: known by its id, whatever Node calls it.
    expect(roleOf("node-MainThread", true)).toBe("event loops");
    expect(roleOf("node", true)).toBe("event loops");
    expect(roleOf("verify-1", false)).toBe("signature checks");
    expect(roleOf("sqlite-writer", false)).toBe("SQLite writer");
    expect(roleOf("wal-checkpoint", false)).toBe("WAL checkpoints");
    expect(roleOf("V8Worker", false)).toBe("V8 helpers"); // Node 24
    expect(roleOf("node-V8Worker", false)).toBe("V8 helpers"); // Node 26
    // Node 20 names no thread; unknown names are not guessed.
    expect(roleOf("node", false)).toBe("other threads");
    expect(roleOf("libuv-worker", false)).toBe("other threads");
    expect(roleOf("verify", false)).toBe("other threads");
  });

  it("splits the server's CPU per operation by role, the rest (and ended threads) under other", () => {
    const b = cpuBudget({
      threads: [
        { name: "node-MainThread", isLoop: true, seconds: 6 },
        { name: "loop-2", isLoop: true, seconds: 4 },
        { name: "verify-1", isLoop: false, seconds: 1.5 },
        { name: "verify-2", isLoop: false, seconds: 1.5 },
        { name: "sqlite-writer", isLoop: false, seconds: 4 },
        { name: "V8Worker", isLoop: false, seconds: 0.5 },
        { name: "libuv-worker", isLoop: false, seconds: 0.25 },
      ],
      // 0.25 s more than the live threads: a thread that ended in the window.
      serverSeconds: 18,
      clientSeconds: 2,
      operations: 20_000,
      cores: 2,
      targetRate: 5_000,
    });
    expect(Object.fromEntries(b.byRole.map((r) => [r.role, r.us]))).toEqual({
      "event loops": 500,
      "signature checks": 150,
      "SQLite writer": 200,
      "WAL checkpoints": 0,
      "V8 helpers": 25,
      "other threads": 25,
    });
    expect(b.serverUs).toBe(900);
    expect(b.clientUs).toBe(100);
    expect(b.totalUs).toBe(1000);
    expect(b.budgetUs).toBe(400);
    expect(describeBudget(b, "enrollment", "the target (5000/s)", 2)).toEqual([
      "  CPU per enrollment: 1000 µs = server 900 (event loops 500, signature checks 150, SQLite writer 200, V8 helpers 25, other threads 25) + load generator 100",
      "  the target (5000/s) leaves 400 µs per enrollment on 2 cores, server and load generator together (40 % of what one takes now)",
    ]);
  });

  it("does not count named threads twice when the process total is below their sum (clock ticks)", () => {
    const b = cpuBudget({
      threads: [{ name: "sqlite-writer", isLoop: false, seconds: 1.01 }],
      serverSeconds: 1,
      clientSeconds: 0,
      operations: 1_000,
      cores: 2,
      targetRate: 1_000,
    });
    expect(b.byRole.find((r) => r.role === "other threads")?.us).toBe(0);
  });
});
