import type { Clock } from "../ports/clock.ts";

/**
 * How many messages each device may have recorded per minute (status, events, command
 * results): a token bucket per device that refills `perMinute` tokens a minute and
 * holds at most `perMinute`, so a device may burst a minute's worth and then sends at
 * the rate. Memory is bounded: a device idle for a minute has a full bucket, the same
 * as no entry, so such entries are swept; beyond `maxDevices` the least recently seen
 * device is forgotten (it starts again with a full bucket).
 */

const MINUTE_MS = 60_000;

interface Bucket {
  tokens: number;
  at: number;
}

export interface DeviceMessageQuotaOptions {
  perMinute: number;
  clock: Clock;
  /** Devices tracked at once (default 100,000). */
  maxDevices?: number;
}

export class DeviceMessageQuota {
  /** In order of last use (re-inserted on every take): the first entry is the oldest. */
  private readonly buckets = new Map<string, Bucket>();
  private readonly maxDevices: number;
  private lastSweep: number;

  constructor(private readonly o: DeviceMessageQuotaOptions) {
    this.maxDevices = o.maxDevices ?? 100_000;
    this.lastSweep = o.clock.now().getTime();
  }

  /** Takes one message from the device's budget; false when it has none left (the message is to be dropped). */
  take(deviceId: string): boolean {
    const now = this.o.clock.now().getTime();
    if (now - this.lastSweep >= MINUTE_MS) this.sweep(now);
    const { perMinute } = this.o;
    const bucket = this.buckets.get(deviceId);
    let tokens = perMinute;
    if (bucket) {
      this.buckets.delete(deviceId);
      tokens = Math.min(perMinute, bucket.tokens + (Math.max(0, now - bucket.at) * perMinute) / MINUTE_MS);
    }
    const allowed = tokens >= 1;
    this.buckets.set(deviceId, { tokens: allowed ? tokens - 1 : tokens, at: now });
    if (this.buckets.size > this.maxDevices) {
      const oldest = this.buckets.keys().next().value;
      if (oldest !== undefined) this.buckets.delete(oldest);
    }
    return allowed;
  }

  /** Devices tracked now. */
  get size(): number {
    return this.buckets.size;
  }

  /** Drops the entries of devices idle for a minute (their buckets are full again). */
  private sweep(now: number): void {
    this.lastSweep = now;
    for (const [id, b] of this.buckets) {
      if (now - b.at < MINUTE_MS) break; // the rest were used more recently
      this.buckets.delete(id);
    }
  }
}
