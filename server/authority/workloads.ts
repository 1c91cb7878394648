import type { Profile } from "../config/schema.ts";
import { base64url } from "../pki/base64.ts";
import {
  type DeviceRecord,
  StorageConflictError,
  type WorkloadEntryRecord,
  type WorkloadParentKind,
  type Write,
} from "../ports/storage.ts";
import { type Actor, requireRole } from "./actor.ts";
import { auditWrite } from "./audit.ts";
import { COMMAND_TTL_MS, MAX_COMMAND_TARGETS } from "./commands.ts";
import type { AuthorityDeps } from "./deps.ts";
import { badRequest, conflict, notFound } from "./errors.ts";
import { DEVICE_ID_RULE, isValidInventoryId, spiffeId } from "./identity.ts";
import { MAX_PAGE, type Page } from "./inventory.ts";
import { operatorGuards } from "./preconditions.ts";
import { REVOCATION_REASONS } from "./revoke.ts";

/**
 * Workload registration entries (SPIFFE): which workload (its selectors), on which
 * devices (the parent: one device, every device of a profile, or every device whose id
 * starts with a prefix), gets which SPIFFE ID, for how long, and for which JWT
 * audiences. Operators manage them through `authority.workloads`; devices read theirs
 * and get SVIDs for them through `authority.workloadSvids` (workload-svids.ts).
 */

type EntryDeps = Pick<
  AuthorityDeps,
  "storage" | "clock" | "crypto" | "config" | "profiles" | "onCommands" | "onRevocation"
>;

/** The TTL of an entry's X.509-SVIDs when the operator says none: one hour. */
export const DEFAULT_SVID_TTL = 3600;
/** The longest SVID TTL any entry may have unless its profile says less (profile `workloadMaxTtl`). */
export const SERVER_MAX_SVID_TTL = 24 * 3600;
/** The shortest SVID TTL: rotation needs some room. */
export const MIN_SVID_TTL = 60;
/** Selectors per entry. */
export const MAX_SELECTORS = 16;
/** JWT audiences per entry. */
export const MAX_JWT_AUDIENCES = 16;
/**
 * The entries that apply to one device, at most: what one device lists, and the
 * largest batch of X.509-SVIDs it asks for at once. A registration that would give a
 * device more is refused; over profiles and prefixes the first ones by id are served.
 */
export const MAX_ENTRIES_PER_DEVICE = 100;
const WRITE_CHUNK = 1000;

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const PREFIX = /^[A-Za-z0-9][A-Za-z0-9._~-]{0,63}$/;
const UNIT_TYPES = [
  "service",
  "socket",
  "scope",
  "slice",
  "timer",
  "target",
  "mount",
  "automount",
  "path",
  "swap",
  "device",
];
const UNIT = /^[A-Za-z0-9:_.\\@-]{1,255}$/;

export const SELECTOR_RULE =
  "unix:uid:<number>, unix:gid:<number>, unix:path:/<absolute path>, unix:sha256:<64 lowercase hex> or systemd:unit:<unit name>";

/** A selector exactly as the CLI and the agent spell it, or a 400 that says what is wrong. */
export function checkSelector(selector: string): string {
  const bad = (why: string) =>
    badRequest("bad_selector", `selector "${selector.slice(0, 80)}": ${why}; selectors are ${SELECTOR_RULE}`);
  if (typeof selector !== "string" || selector.length === 0) throw bad("empty");
  if (selector.length > 4200) throw bad("too long");
  const first = selector.indexOf(":");
  const second = selector.indexOf(":", first + 1);
  if (first < 0 || second < 0) throw bad("not type:key:value");
  const type = selector.slice(0, first);
  const key = selector.slice(first + 1, second);
  const value = selector.slice(second + 1);
  if (type === "unix") {
    if (key === "uid" || key === "gid") {
      if (!/^(0|[1-9][0-9]{0,9})$/.test(value) || Number(value) > 4294967294) {
        throw bad(`${key} is a decimal number 0-4294967294 without leading zeros`);
      }
      return selector;
    }
    if (key === "path") {
      if (!value.startsWith("/")) throw bad("the path must be absolute");
      if (value.length > 4096) throw bad("the path is longer than 4096 characters");
      // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused.
      if (/[\u0000-\u001f\u007f]/.test(value)) throw bad("the path contains a control character");
      if (
        value
          .split("/")
          .some((part, i, all) => part === "." || part === ".." || (part === "" && i > 0 && i < all.length))
      ) {
        if (value !== "/") throw bad("the path must be normalised (no empty, '.' or '..' parts, no trailing '/')");
      }
      return selector;
    }
    if (key === "sha256") {
      if (!/^[0-9a-f]{64}$/.test(value)) throw bad("sha256 is 64 lowercase hexadecimal digits");
      return selector;
    }
    throw bad(`unknown unix selector "${key.slice(0, 16)}" (uid, gid, path, sha256)`);
  }
  if (type === "systemd") {
    if (key !== "unit") throw bad(`unknown systemd selector "${key.slice(0, 16)}" (unit)`);
    const dot = value.lastIndexOf(".");
    if (!UNIT.test(value) || dot <= 0 || !UNIT_TYPES.includes(value.slice(dot + 1))) {
      throw bad(`a unit name such as foo.service (types: ${UNIT_TYPES.join(", ")})`);
    }
    return selector;
  }
  throw bad(`unknown selector type "${type.slice(0, 16)}"`);
}

/** Selectors: at least one, at most MAX_SELECTORS, each valid, none twice. */
export function checkSelectors(selectors: readonly string[] | undefined): string[] {
  if (!selectors || selectors.length === 0) {
    throw badRequest("selectors_missing", `an entry needs at least one selector (${SELECTOR_RULE})`);
  }
  if (selectors.length > MAX_SELECTORS) {
    throw badRequest("too_many_selectors", `an entry has at most ${MAX_SELECTORS} selectors`);
  }
  const out = selectors.map(checkSelector);
  if (new Set(out).size !== out.length) throw badRequest("bad_selector", "a selector is given twice");
  return out;
}

/**
 * A workload name: one or more SPIFFE path segments separated by '/' (SPIFFE-ID §2.2:
 * letters, digits, '.', '-', '_'; no empty, '.' or '..' segment), at most 255 characters.
 */
export function checkWorkloadName(name: string | undefined): string {
  const rule = `a name is 1-8 path segments separated by '/', each ${DEVICE_ID_RULE}; at most 255 characters`;
  if (!name) throw badRequest("bad_name", `the workload name is missing: ${rule}`);
  const segments = name.split("/");
  if (name.length > 255 || segments.length > 8 || !segments.every((s) => SEGMENT.test(s) && s !== "." && s !== "..")) {
    throw badRequest("bad_name", `workload name "${name.slice(0, 80)}" is not valid: ${rule}`);
  }
  return name;
}

function checkAudiences(audiences: readonly string[] | undefined): string[] {
  const out = [...(audiences ?? [])];
  if (out.length > MAX_JWT_AUDIENCES) {
    throw badRequest("too_many_audiences", `an entry has at most ${MAX_JWT_AUDIENCES} JWT audiences`);
  }
  for (const a of out) {
    if (typeof a !== "string" || a.length === 0 || a.length > 256 || !/^[\x21-\x7e]+$/.test(a)) {
      throw badRequest(
        "bad_audience",
        `JWT audience "${String(a).slice(0, 80)}": 1-256 printable ASCII characters, no spaces`,
      );
    }
  }
  if (new Set(out).size !== out.length) throw badRequest("bad_audience", "a JWT audience is given twice");
  return out;
}

/** The SPIFFE ID an entry gives a workload on one device. */
export function workloadSpiffeId(
  trustDomain: string,
  entry: Pick<WorkloadEntryRecord, "name" | "fleetWide">,
  deviceId: string,
): string {
  return entry.fleetWide
    ? `spiffe://${trustDomain}/workload/${entry.name}`
    : `${spiffeId(trustDomain, deviceId)}/workload/${entry.name}`;
}

/** How an entry's SPIFFE ID reads in lists: its ID, or the per-device pattern. */
export function entrySpiffeIdPattern(trustDomain: string, entry: WorkloadEntryRecord): string {
  return entry.spiffeId ?? `spiffe://${trustDomain}/device/{device}/workload/${entry.name}`;
}

/** Whether an entry's parent names this device. */
export function entryApplies(
  entry: Pick<WorkloadEntryRecord, "parentKind" | "parentValue">,
  device: Pick<DeviceRecord, "id" | "profile">,
): boolean {
  switch (entry.parentKind) {
    case "device":
      return entry.parentValue === device.id;
    case "profile":
      return entry.parentValue === device.profile;
    case "prefix":
      return device.id.startsWith(entry.parentValue);
  }
}

/** The longest SVID TTL for a profile's devices. */
export function maxSvidTtl(profile: Profile | undefined): number {
  return profile?.workloadMaxTtl ?? SERVER_MAX_SVID_TTL;
}

export interface WorkloadParent {
  device?: string;
  profile?: string;
  devicePrefix?: string;
}

export interface RegisterWorkloadRequest extends WorkloadParent {
  name: string;
  selectors: string[];
  /** Seconds; default DEFAULT_SVID_TTL. */
  ttl?: number;
  jwtAudiences?: string[];
  fleetWide?: boolean;
}

export interface UpdateWorkloadRequest {
  selectors?: string[];
  ttl?: number;
  jwtAudiences?: string[];
}

function parentOf(req: WorkloadParent): { kind: WorkloadParentKind; value: string } {
  const given = [
    req.device !== undefined ? { kind: "device" as const, value: req.device } : undefined,
    req.profile !== undefined ? { kind: "profile" as const, value: req.profile } : undefined,
    req.devicePrefix !== undefined ? { kind: "prefix" as const, value: req.devicePrefix } : undefined,
  ].filter((p) => p !== undefined);
  if (given.length !== 1) {
    throw badRequest("bad_parent", "name exactly one parent: a device, a profile, or a device-id prefix");
  }
  return given[0] as { kind: WorkloadParentKind; value: string };
}

/** The TTL an entry may have under its parent (checked again per device at issuance). */
function checkTtl(ttl: number | undefined, limitProfile: Profile | undefined): number {
  const value = ttl ?? DEFAULT_SVID_TTL;
  const max = maxSvidTtl(limitProfile);
  if (!Number.isInteger(value) || value < MIN_SVID_TTL || value > max) {
    throw badRequest(
      "bad_ttl",
      `the SVID TTL is ${MIN_SVID_TTL}-${max} seconds${limitProfile ? ` for profile ${limitProfile.name}` : ""} (got ${String(value).slice(0, 20)})`,
    );
  }
  return value;
}

/** The profile whose maximum TTL holds for a parent: the device's, the profile itself, none for a prefix. */
async function parentProfile(
  deps: EntryDeps,
  parent: { kind: WorkloadParentKind; value: string },
): Promise<{ profile: Profile | undefined; device: DeviceRecord | undefined }> {
  if (parent.kind === "device") {
    if (!isValidInventoryId(parent.value)) {
      throw badRequest("bad_device_id", `device id "${parent.value.slice(0, 64)}" is not valid: ${DEVICE_ID_RULE}`);
    }
    const device = await deps.storage.getDevice(parent.value);
    if (!device) throw notFound("unknown_device", `no device ${parent.value}`);
    return { profile: deps.profiles.get(device.profile), device };
  }
  if (parent.kind === "profile") {
    const profile = deps.profiles.get(parent.value);
    if (!profile) throw badRequest("unknown_profile", `no profile "${parent.value.slice(0, 32)}"`);
    return { profile, device: undefined };
  }
  if (!PREFIX.test(parent.value)) {
    throw badRequest(
      "bad_prefix",
      `device-id prefix "${parent.value.slice(0, 64)}": 1-64 characters, letters, digits, '.', '-', '_' or '~', starting with a letter or digit`,
    );
  }
  return { profile: undefined, device: undefined };
}

/** Active devices an entry's parent names: who must be told its set changed. */
async function activeDevicesOf(deps: EntryDeps, entry: WorkloadEntryRecord): Promise<string[]> {
  if (entry.parentKind === "device") {
    const device = await deps.storage.getDevice(entry.parentValue);
    return device?.status === "active" ? [device.id] : [];
  }
  const ids: string[] = [];
  let after: { id: string } | undefined;
  for (;;) {
    const page = await deps.storage.listDevices({
      status: "active",
      ...(entry.parentKind === "profile" ? { profile: entry.parentValue } : { idPrefix: entry.parentValue }),
      after,
      limit: MAX_PAGE,
    });
    ids.push(...page.map((d) => d.id));
    // Past the command limit the devices still learn of the change by polling.
    if (ids.length >= MAX_COMMAND_TARGETS) return ids.slice(0, MAX_COMMAND_TARGETS);
    const last = page[page.length - 1];
    if (!last || page.length < MAX_PAGE) return ids;
    after = { id: last.id };
  }
}

function newId(crypto: Crypto, prefix: string): string {
  return `${prefix}${base64url(crypto.getRandomValues(new Uint8Array(12)))}`;
}

/**
 * Applies an entry change with the `workloads-changed` command for every active device
 * it applies to: the first chunk of commands in the change's own write set, the rest
 * after it. Then the fleet loop publishes them (and revocations are carried out).
 */
async function applyChange(
  deps: EntryDeps,
  actor: Actor,
  change: Write[],
  entry: WorkloadEntryRecord,
  revoked: boolean,
): Promise<void> {
  const now = deps.clock.now();
  const devices = await activeDevicesOf(deps, entry);
  const batchId = newId(deps.crypto, "b_");
  const commands: Write[] = devices.map((deviceId) => ({
    kind: "insertCommand",
    command: {
      opId: newId(deps.crypto, "op_"),
      batchId,
      deviceId,
      command: "workloads-changed",
      state: "queued",
      createdAt: now,
      createdBy: actor.id,
      expiresAt: new Date(now.getTime() + COMMAND_TTL_MS),
      sentAt: null,
      resultAt: null,
      error: null,
    },
  }));
  try {
    await deps.storage.apply([...operatorGuards(actor, now), ...change, ...commands.slice(0, WRITE_CHUNK)]);
  } catch (err) {
    if (err instanceof StorageConflictError && err.constraint.startsWith("workload_entries.")) {
      throw conflict(
        "entry_exists",
        `an entry named ${entry.name} already exists for ${entry.parentKind} ${entry.parentValue}`,
      );
    }
    throw err;
  }
  for (let i = WRITE_CHUNK; i < commands.length; i += WRITE_CHUNK) {
    await deps.storage.apply(commands.slice(i, i + WRITE_CHUNK));
  }
  if (revoked) await deps.onRevocation?.();
  if (commands.length > 0) await deps.onCommands?.();
}

function entryDetail(td: string, e: WorkloadEntryRecord): Record<string, string | number | boolean | null> {
  return {
    entry: e.id,
    parent: `${e.parentKind}:${e.parentValue}`,
    name: e.name,
    spiffeId: entrySpiffeIdPattern(td, e),
    selectors: e.selectors.join(" "),
    ttl: e.ttlSeconds,
    jwtAudiences: e.jwtAudiences.join(" "),
    fleetWide: e.fleetWide,
  };
}

export async function registerWorkload(
  deps: EntryDeps,
  actor: Actor,
  req: RegisterWorkloadRequest,
): Promise<WorkloadEntryRecord> {
  requireRole(actor, "operator");
  const parent = parentOf(req);
  const name = checkWorkloadName(req.name);
  const selectors = checkSelectors(req.selectors);
  const jwtAudiences = checkAudiences(req.jwtAudiences);
  const { profile, device } = await parentProfile(deps, parent);
  const ttlSeconds = checkTtl(req.ttl, profile);
  const td = deps.config.trustDomain;
  const fleetWide = req.fleetWide === true;
  const spiffe = fleetWide
    ? `spiffe://${td}/workload/${name}`
    : parent.kind === "device"
      ? workloadSpiffeId(td, { name, fleetWide }, parent.value)
      : null;
  if ((spiffe ?? `spiffe://${td}/device/${"x".repeat(64)}/workload/${name}`).length > 2048) {
    throw badRequest("bad_name", "the SPIFFE ID would be longer than 2048 bytes");
  }
  if (
    device &&
    (await deps.storage.workloadEntriesFor(device, MAX_ENTRIES_PER_DEVICE)).length >= MAX_ENTRIES_PER_DEVICE
  ) {
    throw conflict("too_many_entries", `device ${device.id} has ${MAX_ENTRIES_PER_DEVICE} entries already`);
  }
  const now = deps.clock.now();
  const entry: WorkloadEntryRecord = {
    id: newId(deps.crypto, "we_"),
    parentKind: parent.kind,
    parentValue: parent.value,
    name,
    spiffeId: spiffe,
    fleetWide,
    selectors,
    ttlSeconds,
    jwtAudiences,
    revision: 0,
    createdAt: now,
    updatedAt: now,
    createdBy: actor.id,
  };
  await applyChange(
    deps,
    actor,
    [
      { kind: "insertWorkloadEntry", entry },
      auditWrite({
        at: now,
        actor: actor.id,
        action: "workload.register",
        outcome: "success",
        deviceId: parent.kind === "device" ? parent.value : null,
        remote: actor.remote ?? null,
        detail: entryDetail(td, entry),
      }),
    ],
    entry,
    false,
  );
  return entry;
}

/**
 * Changes an entry's selectors, TTL or JWT audiences. New selectors revoke the SVIDs
 * issued under the old ones (superseded): a workload that no longer matches must not
 * keep serving its identity until it expires.
 */
export async function updateWorkload(
  deps: EntryDeps,
  actor: Actor,
  id: string,
  req: UpdateWorkloadRequest,
): Promise<WorkloadEntryRecord> {
  requireRole(actor, "operator");
  const entry = await getEntry(deps, id);
  const selectors = req.selectors === undefined ? entry.selectors : checkSelectors(req.selectors);
  const jwtAudiences = req.jwtAudiences === undefined ? entry.jwtAudiences : checkAudiences(req.jwtAudiences);
  const { profile } = await parentProfile(deps, { kind: entry.parentKind, value: entry.parentValue });
  const ttlSeconds = req.ttl === undefined ? entry.ttlSeconds : checkTtl(req.ttl, profile);
  const now = deps.clock.now();
  const reselected = selectors.join("\n") !== entry.selectors.join("\n");
  const updated: WorkloadEntryRecord = {
    ...entry,
    selectors,
    jwtAudiences,
    ttlSeconds,
    updatedAt: now,
    revision: (entry.revision ?? 0) + 1,
  };
  await applyChange(
    deps,
    actor,
    [
      {
        kind: "require",
        precondition: { name: "workload_entry_unchanged", entryId: id, revision: entry.revision ?? 0 },
      },
      {
        kind: "updateWorkloadEntry",
        entry: updated,
        revokeSvids: reselected,
        at: now,
        reason: REVOCATION_REASONS.superseded,
      },
      auditWrite({
        at: now,
        actor: actor.id,
        action: "workload.update",
        outcome: "success",
        deviceId: entry.parentKind === "device" ? entry.parentValue : null,
        remote: actor.remote ?? null,
        detail: { ...entryDetail(deps.config.trustDomain, updated), svidsRevoked: reselected },
      }),
    ],
    updated,
    reselected,
  );
  return updated;
}

/** Deletes an entry; its SVIDs are revoked (cessationOfOperation) in the same write set. */
export async function deleteWorkload(deps: EntryDeps, actor: Actor, id: string): Promise<WorkloadEntryRecord> {
  requireRole(actor, "operator");
  const entry = await getEntry(deps, id);
  const now = deps.clock.now();
  await applyChange(
    deps,
    actor,
    [
      { kind: "deleteWorkloadEntry", entryId: id, at: now, reason: REVOCATION_REASONS.cessationOfOperation },
      auditWrite({
        at: now,
        actor: actor.id,
        action: "workload.delete",
        outcome: "success",
        deviceId: entry.parentKind === "device" ? entry.parentValue : null,
        remote: actor.remote ?? null,
        detail: entryDetail(deps.config.trustDomain, entry),
      }),
    ],
    entry,
    true,
  );
  return entry;
}

async function getEntry(deps: Pick<AuthorityDeps, "storage">, id: string): Promise<WorkloadEntryRecord> {
  const entry = typeof id === "string" && id.length <= 64 ? await deps.storage.getWorkloadEntry(id) : undefined;
  if (!entry) throw notFound("unknown_entry", `no workload entry ${String(id).slice(0, 64)}`);
  return entry;
}

export async function showWorkload(
  deps: Pick<AuthorityDeps, "storage">,
  actor: Actor,
  id: string,
): Promise<WorkloadEntryRecord> {
  requireRole(actor, "auditor");
  return getEntry(deps, id);
}

export interface WorkloadListRequest {
  /** Only the entries that apply to this device (its own, its profile's, its prefixes'). */
  device?: string;
  cursor?: string;
  limit?: number;
}

export async function listWorkloads(
  deps: Pick<AuthorityDeps, "storage">,
  actor: Actor,
  req: WorkloadListRequest,
): Promise<Page<WorkloadEntryRecord>> {
  requireRole(actor, "auditor");
  const limit = req.limit ?? 100;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) {
    throw badRequest("bad_limit", `limit is 1-${MAX_PAGE}`);
  }
  if (req.device !== undefined) {
    const device = await deps.storage.getDevice(req.device);
    if (!device) throw notFound("unknown_device", `no device ${req.device.slice(0, 64)}`);
    const items = await deps.storage.workloadEntriesFor(device, MAX_ENTRIES_PER_DEVICE);
    return { items, nextCursor: null };
  }
  const items = await deps.storage.listWorkloadEntries({ after: req.cursor, limit });
  const last = items[items.length - 1];
  return { items, nextCursor: items.length === limit && last ? last.id : null };
}
