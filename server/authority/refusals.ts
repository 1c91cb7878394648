import type { Config } from "../config/schema.ts";
import { UNKNOWN_REMOTE } from "../ports/client-identity.ts";
import type { Clock } from "../ports/clock.ts";
import type { Storage, Write } from "../ports/storage.ts";
import { auditWrite, type DenialContext } from "./audit.ts";
import { AuthorityError } from "./errors.ts";
import { type AggregatedRefusals, RefusalBudget } from "./refusal-budget.ts";

export type RefusalDeps = { config: Config; clock: Clock; storage: Pick<Storage, "apply"> };

/** Who a refusal budget is kept for. */
export interface RefusalSource {
  action: string;
  /** The client's address as the transport saw it. */
  remote?: string | null;
  /** A device id the request names (EST: the HTTP Basic user, the device a token or certificate is for). */
  deviceId?: string | null;
}

const ADDRESS = "address:";
const DEVICE = "device:";

/**
 * The key a client address is counted under: IPv4 as is (an IPv4-mapped IPv6 address
 * is its IPv4 address), IPv6 by its /64, the smallest block one subscriber is given.
 */
export function addressKey(remote: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(remote);
  if (mapped) return mapped[1] as string;
  if (!remote.includes(":")) return remote;
  const [head = "", tail] = remote.toLowerCase().split("%")[0]?.split("::") ?? [];
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const groups =
    tail === undefined
      ? left
      : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ""))
    .join(":")}::/64`;
}

/**
 * Refused requests, on record and within bounds. Every refusal goes through here: it
 * is audited by itself while its client address (and, for enrollment, the device it
 * claims) is within the refused-request budget of the window; past the budget the
 * client is answered "rate limited" before any work (`admit`), and what it keeps
 * sending is counted into one aggregated record per key, action and reason ("N
 * refusals of reason R from A") written when the window closes. Requests that
 * succeed never spend budget, so a flood from one client does not limit another.
 */
export class Refusals {
  private readonly budget: RefusalBudget;
  private readonly exempt: Set<string>;

  constructor(private readonly deps: RefusalDeps) {
    const limits = deps.config.limits.refusals;
    this.exempt = new Set(limits.exempt.map(addressKey));
    this.budget = new RefusalBudget({
      perKey: (key) => (key.startsWith(DEVICE) ? limits.perDevice : limits.perAddress),
      windowMs: limits.window * 1000,
      maxKeys: limits.maxKeys,
    });
  }

  /** Keys tracked now. */
  get tracked(): number {
    return this.budget.size;
  }

  private keys(source: RefusalSource): string[] {
    const keys: string[] = [];
    // No address, no address budget (Cloudflare always passes one).
    if (source.remote && source.remote !== UNKNOWN_REMOTE) {
      const address = addressKey(source.remote);
      if (!this.exempt.has(address)) keys.push(ADDRESS + address);
    }
    // Only enrollment counts per device: an operator's refusals about a device do not limit it.
    if (source.deviceId && /^(est|scep)\./.test(source.action)) keys.push(DEVICE + source.deviceId.slice(0, 160));
    return keys;
  }

  /**
   * Refuses at once (`rate_limited`, with the seconds to wait) a client that spent its
   * budget; that refusal is counted, not written.
   */
  admit(source: RefusalSource): void {
    const keys = this.keys(source);
    if (keys.length === 0) return;
    const now = this.deps.clock.now().getTime();
    const over = this.budget.retryAfter(keys, now);
    if (!over) return;
    this.budget.note([over.key], source.action, "rate_limited", now);
    throw new AuthorityError(
      "rate_limited",
      `too many refused requests from this client; retry in ${over.seconds} s`,
      "rate_limited",
      { retryAfter: over.seconds },
    );
  }

  /** Records a refusal: by itself within the budget, else counted into the window's aggregate. */
  async record(ctx: DenialContext, err: AuthorityError): Promise<void> {
    // admit() counted its own refusals.
    if (err.code === "rate_limited") return this.flush();
    const now = this.deps.clock.now();
    const internal = err.code === "internal";
    const disposition = internal
      ? { record: true }
      : this.budget.note(
          this.keys({ action: ctx.action, remote: ctx.address ?? ctx.remote, deviceId: ctx.claimed ?? ctx.deviceId }),
          ctx.action,
          err.reason,
          now.getTime(),
        );
    const writes = this.closedWindows(now);
    if (disposition.record) {
      writes.push(
        auditWrite({
          at: now,
          actor: ctx.actor,
          action: ctx.action,
          outcome: internal ? "error" : "denied",
          deviceId: ctx.deviceId ?? null,
          serial: ctx.serial ?? null,
          remote: ctx.remote ?? null,
          detail: {
            reason: err.reason,
            message: err.publicMessage,
            ...(ctx.claimed ? { claimedDevice: ctx.claimed } : {}),
            ...ctx.detail,
          },
        }),
      );
    }
    if (writes.length > 0) await this.deps.storage.apply(writes);
  }

  /**
   * Counts a refusal that is not audited one by one (a malformed OCSP request: relying
   * parties are anonymous and their mistakes are not events); past the budget it is
   * part of the window's aggregate record like any other.
   */
  async count(source: RefusalSource, reason: string): Promise<void> {
    const now = this.deps.clock.now();
    this.budget.note(this.keys(source), source.action, reason, now.getTime());
    const writes = this.closedWindows(now);
    if (writes.length > 0) await this.deps.storage.apply(writes);
  }

  /** Writes the aggregates of the windows that closed; `all` closes every window (at shutdown). */
  async flush(all = false): Promise<void> {
    const writes = this.closedWindows(this.deps.clock.now(), all);
    if (writes.length > 0) await this.deps.storage.apply(writes);
  }

  private closedWindows(now: Date, all = false): Write[] {
    return this.budget.drain(now.getTime(), all).map((a) => aggregateRecord(a, now));
  }
}

function aggregateRecord(a: AggregatedRefusals, now: Date): Write {
  const address = a.key.startsWith(ADDRESS) ? a.key.slice(ADDRESS.length) : null;
  const device = a.key.startsWith(DEVICE) ? a.key.slice(DEVICE.length) : null;
  const who = address ? `address ${address}` : `clients claiming device ${device}`;
  return auditWrite({
    at: now,
    actor: "anonymous",
    action: a.action,
    outcome: "denied",
    // The claimed id is not proof: it goes in the detail, like claimedDevice on single records.
    deviceId: null,
    remote: address,
    detail: {
      reason: a.reason,
      message: `${a.count} refusals of reason ${a.reason} from ${who} between ${new Date(a.from).toISOString()} and ${new Date(a.to).toISOString()}`,
      aggregated: a.count,
      windowStart: new Date(a.from).toISOString(),
      windowEnd: new Date(a.to).toISOString(),
      ...(device ? { claimedDevice: device } : {}),
    },
  });
}
