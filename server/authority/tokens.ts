import { formatDuration } from "../config/duration.ts";
import type { DeviceRecord, Write } from "../ports/storage.ts";
import type { Actor } from "./actor.ts";
import { auditWrite } from "./audit.ts";
import type { AuthorityDeps } from "./deps.ts";
import { sha256Hex } from "./digest.ts";
import { badRequest, forbidden } from "./errors.ts";
import { DEVICE_ID_RULE, isValidDeviceId } from "./identity.ts";
import { declareNames, namesDetail, serverNames } from "./policy/names.ts";
import { applyGuarded, guard, operatorGuards } from "./preconditions.ts";
import { newTokenId, newTokenSecret } from "./provisioners/token.ts";

export interface CreateTokensRequest {
  deviceIds: string[];
  profile?: string;
  /** Seconds; defaults to the configured token TTL. */
  ttl?: number;
  actor: string;
  /** The operator asking, when it is one: it must still be active when the tokens are written. */
  operator?: Actor;
  /**
   * DNS names and IP addresses the operator declares for the device (one device per
   * request): its certificates carry them from its enrollment with this token on.
   */
  names?: { dns?: string[]; ip?: string[] };
}

export interface CreatedToken {
  deviceId: string;
  profile: string;
  tokenId: string;
  /** The secret, shown once and never stored. */
  token: string;
  expiresAt: Date;
}

/**
 * Most bootstrap tokens one request creates, from any frontend (API, dashboard, CLI).
 * One request is one write set, and a write set holds the only SQLite writer while it
 * commits: 10,000 tokens hold it for about a second (100,000 held it for ~9 s, with
 * every enrollment waiting behind it). Larger batches are several requests of one
 * series (`width` keeps their numbering alike); the CLI splits them by itself.
 */
export const MAX_TOKENS_PER_REQUEST = 10_000;

/** The one check of that limit. */
export function checkTokenCount(count: number): void {
  if (count < 1 || count > MAX_TOKENS_PER_REQUEST) {
    throw badRequest("count_out_of_range", `between 1 and ${MAX_TOKENS_PER_REQUEST} tokens per request`);
  }
}

/** The digits a series' numbers are padded to: at least 4, and enough for its last number. */
export function seriesWidth(start: number, count: number): number {
  return Math.max(4, String(start + count - 1).length);
}

/**
 * Device ids of a production batch: `<prefix><number>`, zero-padded to `width` digits
 * (by default the series' own width; a part of a larger series passes the whole one's).
 */
export function batchDeviceIds(
  prefix: string,
  start: number,
  count: number,
  width = seriesWidth(start, count),
): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}${String(start + i).padStart(width, "0")}`);
}

/**
 * Creates one-time bootstrap tokens, one per device id, in one write set: the
 * devices are pre-registered as pending (an existing device keeps its state).
 */
export async function createTokens(
  deps: Pick<AuthorityDeps, "storage" | "clock" | "crypto" | "digest" | "config" | "profiles"> & { publicUrl?: string },
  req: CreateTokensRequest,
): Promise<CreatedToken[]> {
  const profileName = req.profile ?? "device";
  if (!deps.profiles.has(profileName)) throw badRequest("unknown_profile", `no profile "${profileName}"`);
  const ttl = req.ttl ?? deps.config.tokens.defaultTtl;
  if (ttl <= 0 || ttl > deps.config.tokens.maxTtl) {
    throw badRequest(
      "ttl_out_of_range",
      `token ttl must be between 1s and ${formatDuration(deps.config.tokens.maxTtl)}`,
    );
  }
  checkTokenCount(req.deviceIds.length);
  const unique = new Set(req.deviceIds);
  if (unique.size !== req.deviceIds.length) throw badRequest("duplicate_device", "device ids must be unique");
  const names = req.names
    ? (declareNames(req.names, deps.config.limits.maxRequestedNames, serverNames(deps)) ?? null)
    : null;
  if (names && req.deviceIds.length !== 1) {
    throw badRequest("names_need_one_device", "DNS and IP names are declared for one device at a time");
  }
  const now = deps.clock.now();
  const expiresAt = new Date(now.getTime() + ttl * 1000);
  const writes: Write[] = req.operator ? operatorGuards(req.operator, now) : [];
  const created: CreatedToken[] = [];
  for (const deviceId of req.deviceIds) {
    if (!isValidDeviceId(deviceId))
      throw badRequest("bad_device_id", `device id "${deviceId}" is invalid: ${DEVICE_ID_RULE}`);
    const existing = await deps.storage.getDevice(deviceId);
    if (existing && existing.status !== "pending" && existing.status !== "active") {
      throw forbidden("device_not_enrollable", `device ${deviceId} is ${existing.status}`);
    }
    const token = newTokenSecret(deps.crypto);
    const tokenId = newTokenId(deps.crypto);
    const device: DeviceRecord = existing ?? {
      id: deviceId,
      profile: profileName,
      status: "pending",
      createdAt: now,
      updatedAt: now,
      lastEnrolledAt: null,
      currentSerial: null,
      currentNotAfter: null,
    };
    // Decided on this read: a revocation (or a first enrollment) committing meanwhile fails the set.
    writes.push(guard({ name: "device_unchanged", deviceId, revision: existing?.revision ?? null }));
    if (!existing) writes.push({ kind: "upsertDevice", device });
    writes.push({
      kind: "insertToken",
      token: {
        id: tokenId,
        hash: await sha256Hex(deps.digest, token),
        deviceId,
        profile: profileName,
        createdAt: now,
        expiresAt,
        usedAt: null,
        usedSerial: null,
        revokedAt: null,
        createdBy: req.actor,
        names,
      },
    });
    writes.push(
      auditWrite({
        at: now,
        actor: req.actor,
        action: "token.create",
        outcome: "success",
        deviceId,
        detail: {
          tokenId,
          profile: profileName,
          expiresAt: expiresAt.toISOString(),
          ...namesDetail(names),
        },
      }),
    );
    created.push({ deviceId, profile: profileName, tokenId, token, expiresAt });
  }
  await applyGuarded(deps, writes, async () => {
    for (const deviceId of req.deviceIds) {
      const again = await deps.storage.getDevice(deviceId);
      if (again && again.status !== "pending" && again.status !== "active") {
        throw forbidden("device_not_enrollable", `device ${deviceId} is ${again.status}`);
      }
    }
  });
  return created;
}
