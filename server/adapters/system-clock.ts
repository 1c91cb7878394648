import type { Clock } from "../ports/clock.ts";

/** The runtime's clock, for the entry points; the core and the tests take any Clock. */
export const systemClock: Clock = { now: () => new Date() };
