/**
 * The bound on each client's outgoing QoS 1/2 queue, on aedes' own in-memory
 * persistence: messages beyond the bound are dropped and counted, an acknowledged
 * message makes room again, and clients are bounded apart.
 */
import { Aedes } from "aedes";
import { afterEach, describe, expect, it } from "vitest";
import { boundOutgoingQueues, type OutgoingQueues } from "../../server/adapters/node/bounded-outgoing-queue.ts";

type Persistence = OutgoingQueues & {
  outgoingStream(client: { id: string }): AsyncIterable<{ brokerCounter: number }>;
  outgoingUpdate(client: { id: string }, packet: unknown): Promise<void>;
};

let broker: Aedes | undefined;
afterEach(async () => {
  await new Promise<void>((resolve) => (broker ? broker.close(() => resolve()) : resolve()));
  broker = undefined;
});

const message = (n: number) => ({
  cmd: "publish",
  topic: "edgeid/v1/devices/dev-1/status",
  payload: Buffer.from("{}"),
  qos: 1,
  retain: false,
  dup: false,
  brokerId: "test-broker",
  brokerCounter: n,
});

async function queued(p: Persistence, id: string): Promise<number[]> {
  const out: number[] = [];
  for await (const packet of p.outgoingStream({ id })) out.push(packet.brokerCounter);
  return out;
}

describe("bounded outgoing queues", () => {
  it("queues at most maxQueued unacknowledged messages per client; an acknowledgement makes room", async () => {
    broker = await Aedes.createBroker();
    const p = (broker as unknown as { persistence: Persistence }).persistence;
    const dropped: string[] = [];
    const waiting = boundOutgoingQueues(p, 3, (id) => dropped.push(id));
    for (let n = 1; n <= 5; n++) await p.outgoingEnqueueCombi([{ clientId: "svc" }, { clientId: "dev" }], message(n));
    await p.outgoingEnqueue({ clientId: "dev" }, message(6));
    expect(await queued(p, "svc")).toEqual([1, 2, 3]);
    expect(await queued(p, "dev")).toEqual([1, 2, 3]);
    expect(dropped).toEqual(["svc", "dev", "svc", "dev", "dev"]);
    expect(waiting("svc")).toBe(3);

    // Delivered with message id 7, then PUBACKed: one place frees up for that client only.
    await p.outgoingUpdate({ id: "svc" }, { ...message(1), messageId: 7 });
    expect(await p.outgoingClearMessageId({ id: "svc" }, { messageId: 7 })).toBeTruthy();
    // A PUBACK for nothing queued frees nothing.
    expect(await p.outgoingClearMessageId({ id: "svc" }, { messageId: 99 })).toBeFalsy();
    expect(waiting("svc")).toBe(2);
    await p.outgoingEnqueueCombi([{ clientId: "svc" }, { clientId: "dev" }], message(8));
    await p.outgoingEnqueueCombi([{ clientId: "svc" }], message(9));
    expect(await queued(p, "svc")).toEqual([2, 3, 8]);
    expect(await queued(p, "dev")).toEqual([1, 2, 3]);
    expect(dropped.slice(5)).toEqual(["dev", "svc"]);
  });
});
