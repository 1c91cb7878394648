/**
 * A bound on each client's outgoing QoS 1/2 queue in aedes' persistence. A client with a
 * persistent session (clean: false) gets every message for its subscriptions queued
 * until it acknowledges it, also while it is offline: without a bound, a subscriber that
 * never comes back (or never sends PUBACK) grows the broker without end. Beyond
 * `maxQueued` unacknowledged messages, further ones for that client are dropped (and
 * counted) instead of queued.
 */

interface Subscriber {
  clientId: string;
}

/** The part of aedes' persistence (promise style) that holds outgoing messages. */
export interface OutgoingQueues {
  outgoingEnqueue(sub: Subscriber, packet: unknown): Promise<unknown>;
  outgoingEnqueueCombi(subs: Subscriber[], packet: unknown): Promise<unknown>;
  outgoingClearMessageId(client: { id: string }, packet: unknown): Promise<unknown>;
}

/** Bounds the queues of `persistence` in place; returns how many messages wait for a client. */
export function boundOutgoingQueues(
  persistence: OutgoingQueues,
  maxQueued: number,
  onDropped: (clientId: string) => void,
): (clientId: string) => number {
  const queued = new Map<string, number>();
  const enqueue = persistence.outgoingEnqueueCombi.bind(persistence);
  const clear = persistence.outgoingClearMessageId.bind(persistence);
  const admit = (subs: Subscriber[]) =>
    subs.filter((sub) => {
      const n = queued.get(sub.clientId) ?? 0;
      if (n >= maxQueued) {
        onDropped(sub.clientId);
        return false;
      }
      queued.set(sub.clientId, n + 1);
      return true;
    });
  persistence.outgoingEnqueue = async (sub, packet) => {
    const admitted = admit([sub]);
    if (admitted.length > 0) await enqueue(admitted, packet);
  };
  persistence.outgoingEnqueueCombi = async (subs, packet) => {
    const admitted = admit(subs);
    if (admitted.length > 0) await enqueue(admitted, packet);
  };
  persistence.outgoingClearMessageId = async (client, packet) => {
    const removed = await clear(client, packet);
    if (removed) {
      const n = (queued.get(client.id) ?? 1) - 1;
      if (n > 0) queued.set(client.id, n);
      else queued.delete(client.id);
    }
    return removed;
  };
  return (clientId) => queued.get(clientId) ?? 0;
}
