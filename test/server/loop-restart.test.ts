import { afterEach, describe, expect, it } from "vitest";
import { LoopHub } from "../../server/adapters/node/loops.ts";
import type { Scheduler } from "../../server/authority/responders.ts";

const FAKE_LOOP = new URL("../support/fake-loop.mjs", import.meta.url);

/** Timers that run only when the test fires them, and a clock the test moves. */
function manualTime() {
  const pending: { ms: number; run(): void; cancelled: boolean }[] = [];
  let now = 0;
  const scheduler: Scheduler = {
    every: () => ({ cancel() {} }),
    after(ms, run) {
      const t = { ms, run, cancelled: false };
      pending.push(t);
      return {
        cancel() {
          t.cancelled = true;
        },
      };
    },
  };
  return {
    scheduler,
    now: () => now,
    advance(ms: number) {
      now += ms;
    },
    /** The delays asked for so far that were not cancelled. */
    delays: () => pending.filter((t) => !t.cancelled).map((t) => t.ms),
    fire() {
      const t = pending.find((p) => !p.cancelled);
      if (!t) throw new Error("no timer to fire");
      pending.splice(pending.indexOf(t), 1);
      t.run();
    },
  };
}

function logs() {
  const lines: { level: string; msg: string; fields?: Record<string, unknown> }[] = [];
  const waiters: { msg: string; count: number; resolve(): void }[] = [];
  return {
    lines,
    log(level: "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>) {
      lines.push({ level, msg, fields });
      for (const w of [...waiters]) {
        if (lines.filter((l) => l.msg === w.msg).length >= w.count) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
      }
    },
    /** Resolves once `msg` was logged `count` times in all. */
    seen(msg: string, count = 1) {
      if (lines.filter((l) => l.msg === msg).length >= count) return Promise.resolve();
      return new Promise<void>((resolve) => waiters.push({ msg, count, resolve }));
    },
  };
}

const hubs: LoopHub[] = [];
afterEach(async () => {
  await Promise.all(hubs.splice(0).map((h) => h.close()));
});

function start(generations: Record<string, unknown>[], time = manualTime(), log = logs()) {
  let generation = 0;
  const data = () => ({ ...(generations[generation] ?? {}), generation: generation++ });
  const deps = {
    storage: { apply: async () => {}, nextCrlNumber: async () => 1n },
    revoked: async () => {},
    log: log.log,
    scheduler: time.scheduler,
    now: time.now,
  };
  return LoopHub.start(1, FAKE_LOOP, data, deps).then((hub) => {
    hubs.push(hub);
    return { hub, time, log, spawned: () => generation };
  });
}

describe("LoopHub restarts a loop that exits", () => {
  it("starts it again after 1 s, doubling while it keeps failing, with the data of the moment", async () => {
    const { hub, time, log, spawned } = await start([{ crash: true }, { fail: true }, {}]);
    const first = hub.threadIds()[0];
    await log.seen("event loop exited");
    expect(log.lines.find((l) => l.msg === "event loop exited")?.fields).toMatchObject({ loop: 2, code: 3 });
    expect(time.delays()).toEqual([1000]);

    // The second start fails: it is ended and tried again after twice the delay.
    time.advance(1000);
    time.fire();
    await log.seen("event loop did not restart");
    expect(spawned()).toBe(2);
    await expect.poll(() => time.delays()).toEqual([2000]);

    time.advance(2000);
    time.fire();
    await log.seen("event loop restarted");
    expect(spawned()).toBe(3);
    expect(hub.size).toBe(1);
    const [now] = hub.threadIds();
    expect(now).not.toBe(first);
    // The new loop takes part in the revocation fan-out.
    await expect(hub.revoked()).resolves.toBeUndefined();
    expect(time.delays()).toEqual([]);
  });

  it("starts from the first delay again once a loop ran a minute", async () => {
    const { hub, time, log } = await start([{ crash: true }, { crash: true }, { exitOnCrl: true }]);
    await log.seen("event loop exited");
    expect(time.delays()).toEqual([1000]);
    time.fire();
    await log.seen("event loop exited", 2);
    // Exited at once again: twice the delay.
    expect(time.delays()).toEqual([2000]);
    time.fire();
    await log.seen("event loop restarted");
    // The third runs a minute, then exits: back to the first delay.
    time.advance(60_000);
    hub.publish({} as Parameters<LoopHub["publish"]>[0]);
    await log.seen("event loop exited", 3);
    expect(time.delays()).toEqual([1000]);
  });

  it("does not restart a loop that failed to start with the server, nor after close", async () => {
    await expect(start([{ fail: true }])).rejects.toThrow(/could not listen/);

    const { hub, time, log } = await start([{ crash: true }]);
    await log.seen("event loop exited");
    expect(time.delays()).toEqual([1000]);
    await hub.close();
    expect(time.delays()).toEqual([]);
    expect(log.lines.map((l) => l.msg)).not.toContain("event loop restarting");
  });
});
