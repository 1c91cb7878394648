import { MessageChannel } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import { LoopLink, loopCount, reusePortSupported } from "../../server/adapters/node/loops.ts";
import { StorageConflictError } from "../../server/ports/storage.ts";

describe("event loop count", () => {
  it("needs reusePort (Node 22.12+, 23.1+) for more than one loop", () => {
    expect(reusePortSupported("20.20.2")).toBe(false);
    expect(reusePortSupported("22.11.0")).toBe(false);
    expect(reusePortSupported("22.12.0")).toBe(true);
    expect(reusePortSupported("23.0.0")).toBe(false);
    expect(reusePortSupported("23.1.0")).toBe(true);
    expect(reusePortSupported("26.12.1")).toBe(true);
    expect(loopCount(4, { version: "20.20.2", cores: 8 })).toMatchObject({ loops: 1, reason: expect.any(String) });
    expect(loopCount("auto", { version: "24.0.0", cores: 8 })).toEqual({ loops: 8 });
    expect(loopCount(3, { version: "24.0.0", cores: 2 })).toEqual({ loops: 3 });
    expect(loopCount(1, { version: "20.0.0", cores: 2 })).toEqual({ loops: 1 });
  });
});

/** The main thread's side, played by the test over a MessageChannel. */
function mainSide(answer: (m: { op: string } & Record<string, unknown>) => unknown) {
  const { port1, port2 } = new MessageChannel();
  const seen: ({ op: string } & Record<string, unknown>)[] = [];
  port2.on("message", (m: { id: number; op: string; answer?: true }) => {
    if (m.answer || !m.id) return;
    seen.push(m);
    try {
      port2.postMessage({ id: m.id, answer: true, value: answer(m) });
    } catch (err) {
      const e = err as StorageConflictError;
      port2.postMessage({
        id: m.id,
        answer: true,
        error: { message: e.message, name: e.name, constraint: e.constraint },
      });
    }
  });
  const link = new LoopLink(port1);
  return {
    link,
    seen,
    close: () => {
      port1.close();
      port2.close();
    },
  };
}

describe("LoopLink", () => {
  it("forwards whole write sets and gives a guard's conflict back as StorageConflictError", async () => {
    const side = mainSide((m) => {
      if (m.op === "apply" && (m.writes as unknown[]).length === 2) {
        throw new StorageConflictError("CHECK constraint failed: token_unused", "token_unused");
      }
      return undefined;
    });
    const at = new Date(0);
    await side.link.writer.apply([{ kind: "require", precondition: { type: "token_unused", tokenId: "t" } } as never]);
    const err = await side.link.writer
      .apply([{ kind: "require" } as never, { kind: "audit", event: { at } } as never])
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageConflictError);
    expect((err as StorageConflictError).constraint).toBe("token_unused");
    expect(side.seen.map((m) => (m.writes as unknown[]).length)).toEqual([1, 2]);
    // Dates and bytes cross as they are.
    const second = side.seen[1]?.writes as { event?: { at: Date } }[];
    expect(second[1]?.event?.at).toEqual(at);
    side.close();
  });

  it("sends the fleet audit without its callbacks (the main thread's fleet loop sets its own)", async () => {
    const side = mainSide(() => ({ findings: [] }));
    const report = await side.link.fleet.audit({ id: "operator:x", role: "admin" }, {
      limit: 5,
      afterChunk: async () => undefined,
    } as never);
    expect(report).toEqual({ findings: [] });
    expect(side.seen[0]?.args).toEqual([{ id: "operator:x", role: "admin" }, { limit: 5 }]);
    side.close();
  });

  it("offers the OCSP answers it caches in one message per turn, and hands those offered to it to its handler", async () => {
    const { port1, port2 } = new MessageChannel();
    const link = new LoopLink(port1);
    const posted: { op: string; answers?: unknown[] }[] = [];
    const got = new Promise<void>((resolve) =>
      port2.on("message", (m: { op: string }) => {
        posted.push(m);
        if (m.op === "ocspAnswers") resolve();
      }),
    );
    const a = { serial: "0a", certId: "30", der: Uint8Array.of(5, 0), freshUntil: 9, feedSeq: 1 };
    const b = { ...a, serial: "0b" };
    link.shareAnswer(a);
    link.shareAnswer(b);
    await got;
    expect(posted).toEqual([{ id: 0, op: "ocspAnswers", answers: [a, b] }]);

    const offered: unknown[] = [];
    const handled = new Promise<void>((resolve) =>
      link.listen({
        revoked: async () => undefined,
        crl: () => undefined,
        tls: () => undefined,
        ocspAnswers: (answers) => {
          offered.push(...answers);
          resolve();
        },
        close: async () => undefined,
      }),
    );
    port2.postMessage({ id: 0, op: "ocspAnswers", answers: [b] });
    await handled;
    expect(offered).toEqual([b]);
    port1.close();
    port2.close();
  });

  it("serves the main thread's notices once it listens, the early ones first", async () => {
    const { port1, port2 } = new MessageChannel();
    const link = new LoopLink(port1);
    const answers: unknown[] = [];
    const answered = new Promise<void>((resolve) =>
      port2.on("message", (m: { answer?: true }) => {
        if (!m.answer) return;
        answers.push(m);
        resolve();
      }),
    );
    // The notice reaches the link before it listens (the link's own listener runs first).
    const arrived = new Promise((resolve) => port1.once("message", resolve));
    port2.postMessage({ id: 7, op: "revoked" });
    await arrived;
    const order: string[] = [];
    let crlServed!: () => void;
    const served = new Promise<void>((resolve) => {
      crlServed = resolve;
    });
    link.listen({
      revoked: async () => {
        order.push("revoked");
      },
      crl: () => {
        order.push("crl");
        crlServed();
      },
      tls: () => undefined,
      ocspAnswers: () => undefined,
      close: async () => undefined,
    });
    port2.postMessage({ id: 0, op: "crl", crl: {} });
    await Promise.all([served, answered]);
    expect(order).toEqual(["revoked", "crl"]);
    expect(answers).toEqual([{ id: 7, answer: true }]);
    port1.close();
    port2.close();
  });
});
