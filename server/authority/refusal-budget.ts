/**
 * A budget of refused requests per key (a client address, a claimed device id) and
 * window. Within the budget every refusal is recorded on its own; beyond it the key
 * is answered "rate limited" before any work, and its refusals are only counted, to
 * be recorded as one aggregated line per key, action and reason when the window
 * closes. Pure state: the caller passes the time; memory is bounded by `maxKeys`
 * (the oldest window is closed early when a new key would exceed it).
 */

export interface RefusalBudgetLimits {
  /** Refusals per window recorded one by one; the next request of the key is refused at once. */
  perKey: (key: string) => number;
  windowMs: number;
  /** Keys tracked at once. */
  maxKeys: number;
  /** Distinct (action, reason) pairs counted per key; further ones are counted under "other". */
  maxKinds?: number;
}

/** What a closed window held beyond its budget: one audit line each. */
export interface AggregatedRefusals {
  key: string;
  action: string;
  reason: string;
  count: number;
  from: number;
  to: number;
}

interface Window {
  start: number;
  refused: number;
  /** "action reason" → count, for the refusals past the budget. */
  beyond: Map<string, number>;
}

/** Whether a refusal goes on record by itself or is counted into its key's window. */
export type RefusalDisposition = { record: true } | { record: false; key: string };

const OTHER = "other other";

export class RefusalBudget {
  private readonly windows = new Map<string, Window>();
  private readonly closed: AggregatedRefusals[] = [];
  private readonly maxKinds: number;

  constructor(private readonly limits: RefusalBudgetLimits) {
    this.maxKinds = limits.maxKinds ?? 16;
  }

  /** Keys tracked now (for tests and metrics). */
  get size(): number {
    return this.windows.size;
  }

  /**
   * Seconds until the first of `keys` that spent its budget may be refused again, or
   * undefined when none has. Admission costs no write.
   */
  retryAfter(keys: readonly string[], now: number): { key: string; seconds: number } | undefined {
    this.expire(now);
    for (const key of keys) {
      const w = this.windows.get(key);
      if (w && w.refused >= this.limits.perKey(key)) {
        return { key, seconds: Math.max(1, Math.ceil((w.start + this.limits.windowMs - now) / 1000)) };
      }
    }
    return undefined;
  }

  /**
   * Counts one refusal against every key. It is recorded by itself while each key is
   * within its budget; otherwise it is counted under the first key past it.
   */
  note(keys: readonly string[], action: string, reason: string, now: number): RefusalDisposition {
    this.expire(now);
    let over: string | undefined;
    for (const key of keys) {
      let w = this.windows.get(key);
      if (!w) {
        this.makeRoom(now);
        w = { start: now, refused: 0, beyond: new Map() };
        this.windows.set(key, w);
      }
      w.refused++;
      if (over === undefined && w.refused > this.limits.perKey(key)) over = key;
    }
    if (over === undefined) return { record: true };
    const w = this.windows.get(over) as Window;
    let kind = `${action} ${reason}`;
    if (!w.beyond.has(kind) && w.beyond.size >= this.maxKinds) kind = OTHER;
    w.beyond.set(kind, (w.beyond.get(kind) ?? 0) + 1);
    return { record: false, key: over };
  }

  /** The aggregates of windows closed so far (by time, by eviction, or all with `all`), once each. */
  drain(now: number, all = false): AggregatedRefusals[] {
    this.expire(now);
    if (all) for (const key of [...this.windows.keys()]) this.close(key, now);
    return this.closed.splice(0);
  }

  /** Windows are kept in the order they opened, so the expired ones are at the front. */
  private expire(now: number): void {
    for (const [key, w] of this.windows) {
      if (w.start + this.limits.windowMs > now) break;
      this.close(key, w.start + this.limits.windowMs);
    }
  }

  private makeRoom(now: number): void {
    while (this.windows.size >= this.limits.maxKeys) {
      const oldest = this.windows.keys().next().value as string;
      this.close(oldest, now);
    }
  }

  private close(key: string, to: number): void {
    const w = this.windows.get(key);
    if (!w) return;
    this.windows.delete(key);
    for (const [kind, count] of w.beyond) {
      const space = kind.indexOf(" ");
      this.closed.push({ key, action: kind.slice(0, space), reason: kind.slice(space + 1), count, from: w.start, to });
    }
  }
}
