/**
 * The per-device message budget of the MQTT path (a token bucket per device), with the
 * clock stepped by hand: the burst, the refill rate, devices apart, and bounded memory.
 */
import { describe, expect, it } from "vitest";
import { DeviceMessageQuota } from "../../server/authority/device-message-quota.ts";
import { ManualClock, T0 } from "../support/fixtures.ts";

const takeN = (q: DeviceMessageQuota, id: string, n: number) =>
  Array.from({ length: n }, () => q.take(id)).filter(Boolean).length;

describe("device message quota", () => {
  it("allows a minute's worth at once, then the rate; each device has its own budget", () => {
    const clock = new ManualClock(T0);
    const q = new DeviceMessageQuota({ perMinute: 60, clock });
    expect(takeN(q, "dev-1", 100)).toBe(60);
    expect(q.take("dev-1")).toBe(false);
    expect(takeN(q, "dev-2", 10)).toBe(10);
    clock.advance(1);
    expect(takeN(q, "dev-1", 5)).toBe(1);
    clock.advance(10);
    expect(takeN(q, "dev-1", 20)).toBe(10);
    // Refused attempts do not earn anything: a device that keeps sending stays at the rate.
    for (let s = 0; s < 120; s++) {
      clock.advance(0.5);
      takeN(q, "dev-1", 10);
    }
    clock.advance(0.5);
    expect(takeN(q, "dev-1", 10)).toBe(0);
    clock.advance(0.5);
    expect(takeN(q, "dev-1", 10)).toBe(1);
    // After a quiet minute the whole budget is back.
    clock.advance(60);
    expect(takeN(q, "dev-1", 100)).toBe(60);
  });

  it("forgets devices idle for a minute, and never tracks more than maxDevices", () => {
    const clock = new ManualClock(T0);
    const q = new DeviceMessageQuota({ perMinute: 5, clock, maxDevices: 100 });
    for (let i = 0; i < 1000; i++) q.take(`dev-${i}`);
    expect(q.size).toBe(100);
    // The most recent 100 are kept; a forgotten device starts with a full budget.
    expect(takeN(q, "dev-999", 10)).toBe(4);
    expect(takeN(q, "dev-0", 10)).toBe(5);
    clock.advance(30);
    q.take("dev-recent");
    clock.advance(31);
    q.take("dev-now");
    expect(q.size).toBe(2);
  });
});
