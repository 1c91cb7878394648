import type { DeviceMetadata, DeviceRecord, DeviceStatusRecord, Write } from "../ports/storage.ts";
import { type Actor, requireRole } from "./actor.ts";
import { auditWrite } from "./audit.ts";
import type { AuthorityDeps } from "./deps.ts";
import { badRequest, notFound } from "./errors.ts";
import { listDevices, MAX_PAGE, type Page } from "./inventory.ts";

/**
 * Lifecycle controls for certificates that nothing renews on its own (long-lived ones on
 * appliances): who owns a device and where it is, a report of what expires soon, and
 * alerts at configured points before expiry.
 */

type LifecycleDeps = Pick<AuthorityDeps, "storage" | "clock" | "profiles">;

const MAX_TEXT = 200;

export interface MetadataChange {
  /** A string sets it, null clears it, absent leaves it. */
  owner?: string | null;
  location?: string | null;
}

function checkText(name: string, v: string | null | undefined): void {
  if (v === undefined || v === null) return;
  if (v.length === 0 || v.length > MAX_TEXT || /\p{Cc}/u.test(v)) {
    throw badRequest("bad_metadata", `${name} is 1-${MAX_TEXT} characters without control characters`);
  }
}

/** Sets a device's owner and location (operator); audited with the old and new values. */
export async function setDeviceMetadata(
  deps: LifecycleDeps,
  actor: Actor,
  deviceId: string,
  change: MetadataChange,
): Promise<DeviceMetadata> {
  requireRole(actor, "operator");
  checkText("owner", change.owner);
  checkText("location", change.location);
  if (!(await deps.storage.getDevice(deviceId))) throw notFound("unknown_device", `no device ${deviceId.slice(0, 64)}`);
  const before = await deps.storage.getDeviceMetadata(deviceId);
  const now = deps.clock.now();
  const metadata: DeviceMetadata = {
    deviceId,
    owner: change.owner === undefined ? (before?.owner ?? null) : change.owner,
    location: change.location === undefined ? (before?.location ?? null) : change.location,
    updatedAt: now,
    updatedBy: actor.id,
  };
  await deps.storage.apply([
    { kind: "setDeviceMetadata", metadata },
    auditWrite({
      at: now,
      actor: actor.id,
      action: "device.metadata",
      outcome: "success",
      deviceId,
      remote: actor.remote ?? null,
      detail: { owner: metadata.owner, location: metadata.location },
    }),
  ]);
  return metadata;
}

export interface ExpiringRow {
  device: DeviceRecord;
  metadata: DeviceMetadata | undefined;
  reported: DeviceStatusRecord | undefined;
  /** Seconds left on the current certificate (negative: expired). */
  secondsLeft: number;
}

/**
 * Active devices whose current certificate expires within `within` seconds, soonest
 * first (one index range per page), with their owner, location and last report.
 */
export async function expiringReport(
  deps: LifecycleDeps,
  actor: Actor,
  req: { within: number; profile?: string; cursor?: string; limit?: number },
): Promise<Page<ExpiringRow>> {
  requireRole(actor, "auditor");
  const page = await listDevices(deps, actor, {
    status: "active",
    ...(req.profile ? { profile: req.profile } : {}),
    expiringWithin: req.within,
    cursor: req.cursor,
    limit: req.limit ?? MAX_PAGE,
  });
  const now = deps.clock.now().getTime();
  const items: ExpiringRow[] = [];
  for (const device of page.items) {
    items.push({
      device,
      metadata: await deps.storage.getDeviceMetadata(device.id),
      reported: await deps.storage.getDeviceStatus(device.id),
      secondsLeft: Math.round(((device.currentNotAfter?.getTime() ?? now) - now) / 1000),
    });
  }
  return { items, nextCursor: page.nextCursor };
}

export interface ExpiryAlert {
  /** Stable per certificate and threshold, so that a consumer can drop a repeat. */
  id: string;
  deviceId: string;
  profile: string;
  serial: string;
  notAfter: Date;
  /** The alert point crossed, in days before expiry. */
  thresholdDays: number;
  secondsLeft: number;
  owner: string | null;
  location: string | null;
}

/** Devices read per page when looking for due alerts: one page is a few milliseconds of reads. */
const ALERT_PAGE = 250;

/**
 * The alerts due now, a page at a time: for every profile with alert points, each
 * active device whose certificate has crossed one and has not been alerted for it.
 * Only the tightest point crossed is due (a server that was down across 30 d and 7 d
 * sends the 7 d alert). Pages let the caller send and record each batch and yield
 * before reading on, so that alerts switched on over a large fleet do not hold the
 * server up.
 */
export async function* dueExpiryAlertPages(deps: LifecycleDeps): AsyncGenerator<ExpiryAlert[]> {
  const now = deps.clock.now();
  for (const profile of deps.profiles.values()) {
    if (profile.expiryAlerts.length === 0) continue;
    const points = [...profile.expiryAlerts].sort((a, b) => a - b);
    const widest = points[points.length - 1] as number;
    const expiringBefore = new Date(now.getTime() + widest * 1000);
    let after: { id: string; notAfter?: number } | undefined;
    for (;;) {
      const page = await deps.storage.listDevices({
        status: "active",
        profile: profile.name,
        expiringBefore,
        after,
        limit: ALERT_PAGE,
      });
      const due: ExpiryAlert[] = [];
      for (const d of page) {
        if (!d.currentSerial || !d.currentNotAfter) continue;
        const left = (d.currentNotAfter.getTime() - now.getTime()) / 1000;
        if (left <= 0) continue; // expired: the fleet audit's concern, not an advance warning
        const point = points.find((p) => left <= p);
        if (point === undefined) continue;
        const days = Math.round(point / 86400);
        if (await deps.storage.expiryAlertSent(d.currentSerial, days)) continue;
        const meta = await deps.storage.getDeviceMetadata(d.id);
        due.push({
          id: `expiry-${d.currentSerial}-${days}d`,
          deviceId: d.id,
          profile: profile.name,
          serial: d.currentSerial,
          notAfter: d.currentNotAfter,
          thresholdDays: days,
          secondsLeft: Math.round(left),
          owner: meta?.owner ?? null,
          location: meta?.location ?? null,
        });
      }
      if (due.length > 0) yield due;
      const last = page[page.length - 1];
      if (!last || page.length < ALERT_PAGE) break;
      after = { id: last.id, notAfter: last.currentNotAfter?.getTime() };
    }
  }
}

/** Every alert due now (see dueExpiryAlertPages). */
export async function dueExpiryAlerts(deps: LifecycleDeps): Promise<ExpiryAlert[]> {
  const all: ExpiryAlert[] = [];
  for await (const page of dueExpiryAlertPages(deps)) all.push(...page);
  return all;
}

/**
 * Records that alerts went out (none is sent again for that certificate and point):
 * one write set for a batch, each alert with its channels.
 */
export async function markExpiryAlertsSent(
  deps: Pick<AuthorityDeps, "storage" | "clock">,
  sent: { alert: ExpiryAlert; channels: string[] }[],
): Promise<void> {
  if (sent.length === 0) return;
  const now = deps.clock.now();
  await deps.storage.apply(
    sent.flatMap(({ alert: a, channels }): Write[] => [
      { kind: "recordExpiryAlert", serial: a.serial, thresholdDays: a.thresholdDays, deviceId: a.deviceId, at: now },
      auditWrite({
        at: now,
        actor: "server",
        action: "alert.expiry",
        outcome: "success",
        deviceId: a.deviceId,
        serial: a.serial,
        detail: { thresholdDays: a.thresholdDays, notAfter: a.notAfter.toISOString(), channels: channels.join(",") },
      }),
    ]),
  );
}
