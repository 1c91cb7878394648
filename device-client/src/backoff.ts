/**
 * Retry delays for renewal. Network errors and 5xx back off exponentially with full
 * jitter (a random delay between 0 and the exponential bound, so that a fleet that lost
 * its server together does not come back together), capped by a share of the remaining
 * lifetime: the closer the certificate is to expiry, the more often the agent tries.
 */
export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
  /** The cap is at most this fraction of the time left before expiry. */
  lifetimeShare: number;
  /** Never less than this (ms) between attempts. */
  minMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 2_000, maxMs: 3_600_000, lifetimeShare: 1 / 8, minMs: 500 };

export function backoffDelay(
  attempt: number,
  remainingMs: number,
  random: () => number,
  o: BackoffOptions = DEFAULT_BACKOFF,
): number {
  const cap = Math.max(o.minMs, Math.min(o.maxMs, remainingMs * o.lifetimeShare));
  const bound = Math.min(cap, o.baseMs * 2 ** Math.min(attempt, 30));
  return Math.max(o.minMs, Math.floor(random() * bound));
}
