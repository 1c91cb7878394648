import { base64url, decodeBase64 } from "../pki/base64.ts";
import type {
  CertificateRecord,
  CommandRecord,
  DeviceEventRecord,
  DeviceMetadata,
  DeviceRecord,
  DeviceStatus,
  DeviceStatusRecord,
  IdevidBinding,
  MqttSessionRecord,
  PendingEnrollment,
  PendingStatus,
  StoredAuditEvent,
  TokenRecord,
} from "../ports/storage.ts";
import { type Actor, requireRole } from "./actor.ts";
import { auditWrite } from "./audit.ts";
import type { AuthorityDeps } from "./deps.ts";
import { badRequest, conflict, notFound } from "./errors.ts";
import { applyGuarded, guard, operatorGuards } from "./preconditions.ts";
import { type CreatedToken, createTokens } from "./tokens.ts";

type ReadDeps = Pick<AuthorityDeps, "storage" | "clock">;

export const MAX_PAGE = 1000;

export interface Page<T> {
  items: T[];
  /** Opaque: pass it back to get the next page; null on the last page. */
  nextCursor: string | null;
}

function encodeCursor(value: object): string {
  return base64url(new TextEncoder().encode(JSON.stringify(value)));
}

function decodeCursor<T>(cursor: string | undefined, valid: (v: unknown) => v is T): T | undefined {
  if (cursor === undefined) return undefined;
  try {
    const value: unknown = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(decodeBase64(cursor)));
    if (valid(value)) return value;
  } catch {
    // fall through
  }
  throw badRequest("bad_cursor", "cursor is not one this server returned");
}

function checkLimit(limit: number | undefined, fallback = 100): number {
  const n = limit ?? fallback;
  if (!Number.isInteger(n) || n < 1 || n > MAX_PAGE) throw badRequest("bad_limit", `limit is 1-${MAX_PAGE}`);
  return n;
}

export interface DeviceListRequest {
  status?: DeviceStatus;
  profile?: string;
  /** Only the appliances this gateway enrolled. */
  gateway?: string;
  /** Seconds: only devices whose current certificate expires within this long. */
  expiringWithin?: number;
  /** Only devices whose id starts with this (a search by id). */
  idPrefix?: string;
  cursor?: string;
  /** For id-ordered lists, the same as a cursor: continue after this device id. */
  afterId?: string;
  limit?: number;
}

type DeviceCursor = { id: string; na?: number };
const isDeviceCursor = (v: unknown): v is DeviceCursor =>
  typeof v === "object" &&
  v !== null &&
  typeof (v as DeviceCursor).id === "string" &&
  ((v as DeviceCursor).na === undefined || typeof (v as DeviceCursor).na === "number");

/**
 * The inventory, keyset-paginated: each page is one index range (by id, or by
 * (expiry, id) with `expiringWithin`), so page 10,000 costs what page 1 costs.
 */
export async function listDevices(deps: ReadDeps, actor: Actor, req: DeviceListRequest): Promise<Page<DeviceRecord>> {
  requireRole(actor, "auditor");
  const limit = checkLimit(req.limit);
  if (req.idPrefix !== undefined && !/^[\x21-\x7e]{1,128}$/.test(req.idPrefix)) {
    throw badRequest("bad_search", "a device id search is 1-128 printable characters without spaces");
  }
  const after = decodeCursor(req.cursor, isDeviceCursor) ?? (req.afterId ? { id: req.afterId } : undefined);
  const expiringBefore =
    req.expiringWithin === undefined ? undefined : new Date(deps.clock.now().getTime() + req.expiringWithin * 1000);
  const items = await deps.storage.listDevices({
    status: req.status,
    profile: req.profile,
    ...(req.gateway ? { gateway: req.gateway } : {}),
    ...(req.idPrefix ? { idPrefix: req.idPrefix } : {}),
    expiringBefore,
    after: after && { id: after.id, notAfter: after.na },
    limit,
  });
  const last = items[items.length - 1];
  const nextCursor =
    items.length === limit && last
      ? encodeCursor(expiringBefore ? { id: last.id, na: last.currentNotAfter?.getTime() ?? 0 } : { id: last.id })
      : null;
  return { items, nextCursor };
}

export interface DeviceDetail {
  device: DeviceRecord;
  certificates: CertificateRecord[];
  /** Its workload X.509-SVIDs, newest first (the latest 100). */
  workloadSvids: CertificateRecord[];
  tokens: TokenRecord[];
  idevid: IdevidBinding | undefined;
  /** Owner and location, as operators declared them. */
  metadata: DeviceMetadata | undefined;
  /** What the device last reported over MQTT. */
  reported: DeviceStatusRecord | undefined;
  /** Its latest events, newest first. */
  events: DeviceEventRecord[];
  /** Its latest commands. */
  commands: CommandRecord[];
  /** Its latest MQTT connections (embedded broker). */
  mqttSessions: MqttSessionRecord[];
  audit: StoredAuditEvent[];
}

export async function showDevice(deps: ReadDeps, actor: Actor, id: string): Promise<DeviceDetail> {
  requireRole(actor, "auditor");
  const device = await deps.storage.getDevice(id);
  if (!device) throw notFound("unknown_device", `no device ${id.slice(0, 64)}`);
  return {
    device,
    certificates: await deps.storage.listCertificates(id),
    workloadSvids: await deps.storage.listWorkloadSvids(id, 100),
    tokens: await deps.storage.listTokens(id),
    idevid: await deps.storage.getIdevidBinding(id),
    metadata: await deps.storage.getDeviceMetadata(id),
    reported: await deps.storage.getDeviceStatus(id),
    events: await deps.storage.listDeviceEvents(id, undefined, 20),
    commands: (await deps.storage.listCommands({ deviceId: id, limit: 1000 }))
      .sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime())
      .slice(0, 10),
    mqttSessions: await deps.storage.listMqttSessions(id, 5),
    audit: await deps.storage.listAudit({ deviceId: id, limit: 20 }),
  };
}

export async function fleetCounts(deps: ReadDeps, actor: Actor): Promise<Record<DeviceStatus, number>> {
  requireRole(actor, "auditor");
  return deps.storage.countDevicesByStatus();
}

export async function getCertificate(deps: ReadDeps, actor: Actor, serial: string): Promise<CertificateRecord> {
  requireRole(actor, "auditor");
  const s = serial.toLowerCase();
  const cert = /^[0-9a-f]{1,40}$/.test(s) ? await deps.storage.getCertificate(s) : undefined;
  if (!cert) throw notFound("unknown_certificate", `no certificate with serial ${serial.slice(0, 64)}`);
  return cert;
}

export interface TokenListRequest {
  deviceId?: string;
  state?: "unused" | "used" | "revoked" | "expired";
  cursor?: string;
  limit?: number;
}

const isIdCursor = (v: unknown): v is { id: string } =>
  typeof v === "object" && v !== null && typeof (v as { id: unknown }).id === "string";

/** Bootstrap tokens without their secrets (only hashes are stored; those are not shown either). */
export async function listTokens(deps: ReadDeps, actor: Actor, req: TokenListRequest): Promise<Page<TokenRecord>> {
  requireRole(actor, "auditor");
  const limit = checkLimit(req.limit);
  const after = decodeCursor(req.cursor, isIdCursor);
  const items = await deps.storage.queryTokens({
    deviceId: req.deviceId,
    state: req.state,
    now: deps.clock.now(),
    after: after?.id,
    limit,
  });
  const last = items[items.length - 1];
  return { items, nextCursor: items.length === limit && last ? encodeCursor({ id: last.id }) : null };
}

export async function issueTokens(
  deps: Parameters<typeof createTokens>[0],
  actor: Actor,
  req: { deviceIds: string[]; profile?: string; ttl?: number; names?: { dns?: string[]; ip?: string[] } },
): Promise<CreatedToken[]> {
  requireRole(actor, "operator");
  return createTokens(deps, { ...req, actor: actor.id, operator: actor });
}

export async function revokeToken(
  deps: Pick<AuthorityDeps, "storage" | "clock">,
  actor: Actor,
  tokenId: string,
): Promise<TokenRecord> {
  requireRole(actor, "operator");
  const token = await deps.storage.getToken(tokenId);
  if (!token) throw notFound("unknown_token", `no token ${tokenId.slice(0, 64)}`);
  if (token.usedAt)
    throw conflict("token_used", `token ${token.id} was already used (certificate ${token.usedSerial})`);
  if (token.revokedAt) throw conflict("already_revoked", `token ${token.id} is already revoked`);
  const now = deps.clock.now();
  // Guarded: a redemption that commits first wins, and this revocation then says so.
  await applyGuarded(
    deps,
    [
      guard({ name: "token_unused", tokenId: token.id }),
      ...operatorGuards(actor, now),
      { kind: "revokeToken", tokenId: token.id, at: now },
      auditWrite({
        at: now,
        actor: actor.id,
        action: "token.revoke",
        outcome: "success",
        deviceId: token.deviceId,
        remote: actor.remote ?? null,
        detail: { tokenId: token.id },
      }),
    ],
    async () => {
      const again = await deps.storage.getToken(token.id);
      if (again?.usedAt) {
        throw conflict("token_used", `token ${token.id} was already used (certificate ${again.usedSerial})`);
      }
      if (again?.revokedAt) throw conflict("already_revoked", `token ${token.id} is already revoked`);
    },
  );
  return { ...token, revokedAt: now };
}

export async function listEnrollments(
  deps: ReadDeps,
  actor: Actor,
  req: { status?: PendingStatus; deviceId?: string; cursor?: string; limit?: number },
): Promise<Page<PendingEnrollment>> {
  requireRole(actor, "auditor");
  const limit = checkLimit(req.limit);
  const after = decodeCursor(req.cursor, isIdCursor);
  const items = await deps.storage.listPending({
    status: req.status,
    ...(req.deviceId ? { deviceId: req.deviceId } : {}),
    after: after?.id,
    limit,
  });
  const last = items[items.length - 1];
  return { items, nextCursor: items.length === limit && last ? encodeCursor({ id: last.id }) : null };
}

export async function readAudit(
  deps: ReadDeps,
  actor: Actor,
  req: { deviceId?: string; actor?: string; action?: string; cursor?: string; limit?: number },
): Promise<Page<StoredAuditEvent>> {
  requireRole(actor, "auditor");
  const limit = checkLimit(req.limit);
  const before = decodeCursor(
    req.cursor,
    (v): v is { before: number } =>
      typeof v === "object" && v !== null && Number.isInteger((v as { before: unknown }).before),
  );
  const items = await deps.storage.listAudit({
    deviceId: req.deviceId,
    actor: req.actor,
    action: req.action,
    before: before?.before,
    limit,
  });
  const last = items[items.length - 1];
  return { items, nextCursor: items.length === limit && last ? encodeCursor({ before: last.id }) : null };
}

/** A device's events, newest first (`before`: a seq from the previous page). */
export async function listDeviceEvents(
  deps: ReadDeps,
  actor: Actor,
  deviceId: string,
  req: { before?: number; limit?: number },
): Promise<{ items: DeviceEventRecord[]; nextBefore: number | null }> {
  requireRole(actor, "auditor");
  const limit = checkLimit(req.limit);
  if (!(await deps.storage.getDevice(deviceId))) throw notFound("unknown_device", `no device ${deviceId.slice(0, 64)}`);
  const items = await deps.storage.listDeviceEvents(deviceId, req.before, limit);
  const last = items[items.length - 1];
  return { items, nextBefore: items.length === limit && last ? last.seq : null };
}
