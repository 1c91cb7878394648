import { InvalidArgumentError } from "commander";
import { REVOCATION_REASONS } from "../authority/revoke.ts";
import { parseDuration } from "../config/duration.ts";

/** Option values and their parsers, shared by the command groups. */

export const DEFAULT_DATA = "./edgeid-data";

export const REASONS = Object.keys(REVOCATION_REASONS);

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("must be a positive integer");
  return n;
}

/** A duration option, checked here and passed on as written (e.g. "7d"). */
export function durationText(value: string): string {
  try {
    parseDuration(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  return value;
}

export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** --dns/--ip as declared names, or undefined when neither was given. */
export function declaredNamesOf(opts: { dns: string[]; ip: string[] }): { dns: string[]; ip: string[] } | undefined {
  return opts.dns.length + opts.ip.length > 0 ? { dns: opts.dns, ip: opts.ip } : undefined;
}
