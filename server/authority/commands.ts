import { base64url } from "../pki/base64.ts";
import type { CommandName, CommandRecord, CommandState, DeviceStatus, Write } from "../ports/storage.ts";
import { type Actor, requireRole } from "./actor.ts";
import { auditWrite } from "./audit.ts";
import type { AuthorityDeps } from "./deps.ts";
import { badRequest, notFound } from "./errors.ts";
import { MAX_PAGE, type Page } from "./inventory.ts";

/**
 * Commands to devices over MQTT (`edgeid/v1/devices/<id>/cmd/<name>`). They are
 * written to the `commands` table first (the outbox) by the API or the CLI; the
 * server's fleet loop publishes what is queued and the device's cmd-result closes it.
 * A command nobody answered expires.
 */

type CommandDeps = Pick<AuthorityDeps, "storage" | "clock" | "crypto" | "onCommands">;

/** What an operator may send; `revoked` is the server's own, sent on revocation. */
export const OPERATOR_COMMANDS = ["rotate", "ca-update"] as const;
export type OperatorCommand = (typeof OPERATOR_COMMANDS)[number];

/** One request reaches at most this many devices; larger fleets are addressed by filter pages. */
export const MAX_COMMAND_TARGETS = 100_000;
const WRITE_CHUNK = 1000;
/** A command not answered within this long is marked expired (the device may still act on it). */
export const COMMAND_TTL_MS = 24 * 3600_000;

export interface CommandTargets {
  /** One device, or every device that matches the filter (active devices only). */
  deviceId?: string;
  profile?: string;
  /** Seconds: devices whose current certificate expires within this long. */
  expiringWithin?: number;
  /** Every active device. Must be said explicitly when no other filter is given. */
  all?: boolean;
}

export interface IssuedCommands {
  batchId: string;
  command: OperatorCommand;
  count: number;
  /** The op ids of the first few commands (all of them for up to 100 devices). */
  opIds: string[];
}

function newId(crypto: Crypto, prefix: string): string {
  return `${prefix}${base64url(crypto.getRandomValues(new Uint8Array(12)))}`;
}

/** Queues a command for one device or a filtered set; returns once it is recorded. */
export async function issueCommands(
  deps: CommandDeps,
  actor: Actor,
  command: string,
  targets: CommandTargets,
): Promise<IssuedCommands> {
  requireRole(actor, "operator");
  if (!(OPERATOR_COMMANDS as readonly string[]).includes(command)) {
    throw badRequest("bad_command", `unknown command "${command.slice(0, 32)}"; use ${OPERATOR_COMMANDS.join(" or ")}`);
  }
  const name = command as OperatorCommand;
  const filtered = targets.profile !== undefined || targets.expiringWithin !== undefined;
  if (targets.deviceId !== undefined && (filtered || targets.all)) {
    throw badRequest("bad_targets", "name one device, or a filter, not both");
  }
  if (targets.deviceId === undefined && !filtered && !targets.all) {
    throw badRequest("bad_targets", "name a device, a filter (profile, expiringWithin), or all devices explicitly");
  }
  const now = deps.clock.now();
  const deviceIds: string[] = [];
  if (targets.deviceId !== undefined) {
    const device = await deps.storage.getDevice(targets.deviceId);
    if (!device) throw notFound("unknown_device", `no device ${targets.deviceId.slice(0, 64)}`);
    if (device.status !== "active") {
      throw badRequest("device_not_active", `device ${device.id} is ${device.status}; commands go to active devices`);
    }
    deviceIds.push(device.id);
  } else {
    const expiringBefore =
      targets.expiringWithin === undefined ? undefined : new Date(now.getTime() + targets.expiringWithin * 1000);
    let after: { id: string; notAfter?: number } | undefined;
    for (;;) {
      const page = await deps.storage.listDevices({
        status: "active" as DeviceStatus,
        profile: targets.profile,
        expiringBefore,
        after,
        limit: MAX_PAGE,
      });
      for (const d of page) deviceIds.push(d.id);
      if (deviceIds.length > MAX_COMMAND_TARGETS) {
        throw badRequest(
          "too_many_targets",
          `more than ${MAX_COMMAND_TARGETS} devices match; narrow the filter (profile, expiringWithin)`,
        );
      }
      const last = page[page.length - 1];
      if (!last || page.length < MAX_PAGE) break;
      after = { id: last.id, notAfter: expiringBefore ? last.currentNotAfter?.getTime() : undefined };
    }
  }
  const batchId = newId(deps.crypto, "b_");
  const records: CommandRecord[] = deviceIds.map((deviceId) => ({
    opId: newId(deps.crypto, "op_"),
    batchId,
    deviceId,
    command: name,
    state: "queued",
    createdAt: now,
    createdBy: actor.id,
    expiresAt: new Date(now.getTime() + COMMAND_TTL_MS),
    sentAt: null,
    resultAt: null,
    error: null,
  }));
  // One write set per chunk: a large batch does not hold the writer for long at once.
  for (let i = 0; i < records.length || i === 0; i += WRITE_CHUNK) {
    const chunk = records.slice(i, i + WRITE_CHUNK);
    const writes: Write[] = chunk.map((command) => ({ kind: "insertCommand", command }));
    if (i === 0) {
      writes.push(
        auditWrite({
          at: now,
          actor: actor.id,
          action: `command.${name}`,
          outcome: "success",
          deviceId: targets.deviceId ?? null,
          remote: actor.remote ?? null,
          detail: {
            batchId,
            devices: records.length,
            ...(targets.profile ? { profile: targets.profile } : {}),
            ...(targets.expiringWithin !== undefined ? { expiringWithin: targets.expiringWithin } : {}),
            ...(targets.all ? { all: true } : {}),
          },
        }),
      );
    }
    await deps.storage.apply(writes);
  }
  await deps.onCommands?.();
  return { batchId, command: name, count: records.length, opIds: records.slice(0, 100).map((r) => r.opId) };
}

export interface CommandListRequest {
  deviceId?: string;
  batchId?: string;
  state?: CommandState;
  cursor?: string;
  limit?: number;
}

export async function listCommands(
  deps: Pick<AuthorityDeps, "storage">,
  actor: Actor,
  req: CommandListRequest,
): Promise<Page<CommandRecord>> {
  requireRole(actor, "auditor");
  const limit = req.limit ?? 100;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE)
    throw badRequest("bad_limit", `limit is 1-${MAX_PAGE}`);
  const items = await deps.storage.listCommands({
    deviceId: req.deviceId,
    batchId: req.batchId,
    state: req.state,
    after: req.cursor,
    limit,
  });
  const last = items[items.length - 1];
  return { items, nextCursor: items.length === limit && last ? last.opId : null };
}

export async function getCommand(
  deps: Pick<AuthorityDeps, "storage">,
  actor: Actor,
  opId: string,
): Promise<CommandRecord> {
  requireRole(actor, "auditor");
  const c = await deps.storage.getCommand(opId);
  if (!c) throw notFound("unknown_command", `no command ${opId.slice(0, 64)}`);
  return c;
}

/** The body a device receives on `cmd/<name>`. */
export function commandMessage(c: Pick<CommandRecord, "opId" | "createdAt">): Record<string, unknown> {
  return { opId: c.opId, issuedAt: c.createdAt.toISOString() };
}

export type { CommandName };
