import { describe, expect, it } from "vitest";
import { answersAtEndOfTurn } from "../../server/adapters/node/end-of-turn.ts";

/** A turn's end that the test ends: the scheduled callbacks run when `end()` is called. */
function steppedTurns() {
  const scheduled: (() => void)[] = [];
  return {
    schedule: (run: () => void) => void scheduled.push(run),
    pending: () => scheduled.length,
    end: () => {
      for (const run of scheduled.splice(0)) run();
    },
  };
}

/** Lets every promise reaction that can run, run (no timers involved). */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

describe("answersAtEndOfTurn", () => {
  it("holds every answer of a turn until the turn ends, then hands them all out, in order", async () => {
    const turns = steppedTurns();
    const atEnd = answersAtEndOfTurn(turns.schedule);
    const handler = atEnd(async (n: number) => n * 2);
    const written: number[] = [];
    const a = handler(1).then((v) => written.push(v));
    const b = handler(2).then((v) => written.push(v));
    const c = atEnd((s: string) => s.length)("four").then((v) => written.push(v));
    await settle();
    expect(written).toEqual([]);
    // One end of turn for all of them, whichever handler they came through.
    expect(turns.pending()).toBe(1);
    turns.end();
    await Promise.all([a, b, c]);
    expect(written).toEqual([2, 4, 4]);
  });

  it("starts a new turn for answers ready after the last one ended", async () => {
    const turns = steppedTurns();
    const handler = answersAtEndOfTurn(turns.schedule)(async (n: number) => n);
    const first = handler(1);
    await settle();
    turns.end();
    expect(await first).toBe(1);
    let done = false;
    const second = handler(2).then((v) => {
      done = true;
      return v;
    });
    await settle();
    expect(done).toBe(false);
    expect(turns.pending()).toBe(1);
    turns.end();
    expect(await second).toBe(2);
  });

  it("does not hold a handler's failure", async () => {
    const turns = steppedTurns();
    const handler = answersAtEndOfTurn(turns.schedule)(async () => {
      throw new Error("refused");
    });
    await expect(handler()).rejects.toThrow("refused");
    expect(turns.pending()).toBe(0);
  });

  it("ends the turn in the event loop's check phase by default (after what setImmediate queued before)", async () => {
    const handler = answersAtEndOfTurn()(async () => "answer");
    const order: string[] = [];
    const queued = new Promise<void>((r) =>
      setImmediate(() => {
        order.push("queued before");
        r();
      }),
    );
    await handler().then((v) => order.push(v));
    await queued;
    expect(order).toEqual(["queued before", "answer"]);
  });
});
