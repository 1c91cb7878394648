import { afterEach, describe, expect, it } from "vitest";
import { LoopHub } from "../../server/adapters/node/loops.ts";
import type { SharedOcspAnswer } from "../../server/authority/responders.ts";

const FAKE_LOOP = new URL("../support/fake-loop.mjs", import.meta.url);

const answer = (serial: string): SharedOcspAnswer => ({
  serial,
  certId: `30${serial}`,
  der: Uint8Array.of(0x30, 0x03, 0x0a, 0x01, 0x00),
  freshUntil: 1_000,
  feedSeq: 4,
});

/** What the loops were offered ({ loop, answers } per message), and a wait for the n-th. */
function offers() {
  const seen: { loop: number; answers: SharedOcspAnswer[] }[] = [];
  const waiters: { n: number; resolve(): void }[] = [];
  return {
    seen,
    add(events: unknown[]) {
      seen.push(...(events as typeof seen));
      for (const w of [...waiters]) {
        if (seen.length >= w.n) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
      }
    },
    count(n: number) {
      if (seen.length >= n) return Promise.resolve();
      return new Promise<void>((resolve) => waiters.push({ n, resolve }));
    },
  };
}

let hub: LoopHub | undefined;
afterEach(async () => {
  await hub?.close();
  hub = undefined;
});

describe("LoopHub shares cached OCSP answers between the loops", () => {
  it("adopts a loop's answers on the main thread and offers them to every other loop, not back", async () => {
    const offered = offers();
    const adopted: SharedOcspAnswer[][] = [];
    let loop = 2;
    hub = await LoopHub.start(
      2,
      FAKE_LOOP,
      // Loop 2 offers one answer once it is ready; loop 3 offers none.
      () => (loop++ === 2 ? { share: [answer("0a")] } : {}),
      {
        storage: { apply: async () => {}, nextCrlNumber: async () => 1n },
        revoked: async () => {},
        adoptAnswers: (a) => adopted.push(a),
        audited: (events) => offered.add(events),
        log: () => {},
        scheduler: { every: () => ({ cancel() {} }), after: () => ({ cancel() {} }) },
        now: () => 0,
      },
    );
    await offered.count(1);
    expect(adopted).toEqual([[answer("0a")]]);
    expect(offered.seen).toEqual([{ loop: 3, answers: [answer("0a")] }]);

    // The main thread's own answers of one turn reach each worker loop in one message.
    hub.shareAnswer(answer("0b"));
    hub.shareAnswer(answer("0c"));
    await offered.count(3);
    expect(offered.seen.slice(1).sort((a, b) => a.loop - b.loop)).toEqual([
      { loop: 2, answers: [answer("0b"), answer("0c")] },
      { loop: 3, answers: [answer("0b"), answer("0c")] },
    ]);
    expect(adopted).toHaveLength(1);
  });
});
