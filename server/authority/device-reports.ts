import type { DeviceStatusRecord, MqttSessionRecord, Write } from "../ports/storage.ts";
import { auditWrite } from "./audit.ts";
import type { AuthorityDeps } from "./deps.ts";
import { sha256Hex } from "./digest.ts";
import { AuthorityError, forbidden, unauthenticated } from "./errors.ts";
import { isValidInventoryId } from "./identity.ts";
import type { Refusals } from "./refusals.ts";

/**
 * The device side of the fleet loop (the MQTT contract in docs/mqtt-contract.md):
 * who may connect to the broker, and what a device's status, events and command
 * results change. The MQTT frontend decodes; these verbs decide and record.
 */

type ReportDeps = Pick<AuthorityDeps, "storage" | "clock" | "digest">;

/** Service identities (the server's own broker client, integrations) are `service:<name>`. */
export const SERVICE_PREFIX = "service:";
const SERVICE_NAME = /^[a-z0-9][a-z0-9-]{0,31}$/;

export function isValidServiceName(name: string): boolean {
  return SERVICE_NAME.test(name);
}

export type MqttIdentity =
  | { kind: "device"; deviceId: string; serial: string; notAfter: Date }
  | { kind: "service"; name: string; serial: string; notAfter: Date };

export interface MqttConnect {
  /** The TLS client certificate, DER (already chain-checked by the TLS layer). */
  certificate: Uint8Array;
  clientId: string;
  /** Address and port, for the records. */
  remote: string | null;
  /** The address alone: what the refusal budget is kept for. */
  address: string | null;
}

/**
 * Decides who a broker connection is, from the live database (not a CRL file): the
 * certificate must be one this server issued, not revoked, within its validity, and
 * its device active; a device's MQTT client id is its device id. Refusals are audited.
 */
export async function admitMqttClient(deps: ReportDeps, refusals: Refusals, req: MqttConnect): Promise<MqttIdentity> {
  let claimed: string | null = null;
  // A client past its refusal budget is dropped before anything is read or written.
  refusals.admit({ action: "mqtt.connect", remote: req.address });
  try {
    const fingerprint = await sha256Hex(deps.digest, req.certificate);
    const cert = await deps.storage.getCertificateByFingerprint(fingerprint);
    if (!cert) throw unauthenticated("unknown_certificate", "this certificate was not issued by this server");
    claimed = cert.deviceId;
    // A workload's SVID is the workload's identity, not its device's.
    if (cert.workloadEntryId) {
      throw forbidden(
        "workload_svid",
        "a workload SVID does not identify its device; connect with the device certificate",
      );
    }
    if (cert.status === "revoked") throw forbidden("certificate_revoked", "the certificate is revoked");
    const now = deps.clock.now().getTime();
    if (cert.notAfter.getTime() <= now) throw forbidden("certificate_expired", "the certificate has expired");
    if (cert.notBefore.getTime() > now)
      throw forbidden("certificate_not_yet_valid", "the certificate is not valid yet");
    if (cert.deviceId.startsWith(SERVICE_PREFIX)) {
      // A service may run several clients: "service:<name>" or "service:<name>.<anything>"
      // ('.' is not in service names, so one service can never take another's client id).
      if (req.clientId !== cert.deviceId && !req.clientId.startsWith(`${cert.deviceId}.`)) {
        throw forbidden(
          "client_id_mismatch",
          `a ${cert.deviceId} client id is "${cert.deviceId}" or starts with "${cert.deviceId}."`,
        );
      }
      return {
        kind: "service",
        name: cert.deviceId.slice(SERVICE_PREFIX.length),
        serial: cert.serial,
        notAfter: cert.notAfter,
      };
    }
    const device = await deps.storage.getDevice(cert.deviceId);
    if (device?.status !== "active") {
      throw forbidden("device_not_active", `device ${cert.deviceId} is ${device?.status ?? "unknown"}`);
    }
    if (req.clientId !== cert.deviceId) {
      throw forbidden("client_id_mismatch", `the MQTT client id must be the device id ${cert.deviceId}`);
    }
    return { kind: "device", deviceId: cert.deviceId, serial: cert.serial, notAfter: cert.notAfter };
  } catch (err) {
    const e =
      err instanceof AuthorityError
        ? err
        : new AuthorityError("internal", "internal error", "internal", { cause: err });
    await refusals.record(
      {
        action: "mqtt.connect",
        actor: claimed ? `device:${claimed}` : "anonymous",
        deviceId: claimed && isValidInventoryId(claimed) ? claimed : null,
        remote: req.remote,
        address: req.address,
        detail: { clientId: req.clientId.slice(0, 64) },
      },
      e,
    );
    throw e;
  }
}

/** A status document as the frontend decoded it (shape already checked). */
export interface StatusReport {
  state: string;
  session: number;
  ts: Date;
  cert: { serial: string; notAfter: Date | null; keyAlg: string | null } | null;
  nextRenewAt: Date | null;
  lastRenew: { at: string; ok: boolean; error?: string } | null;
  agentVersion: string | null;
}

/**
 * Applies a status report by the session rule: a report from an older session (a late
 * last will) never replaces a newer one. A last will ("lost") of the connection that is
 * still the device's current one is applied even though its timestamp is the one from
 * when the connection was made. Returns whether it was applied.
 */
export async function recordStatus(
  deps: ReportDeps,
  deviceId: string,
  report: StatusReport,
  opts: { currentConnection: boolean },
): Promise<boolean> {
  const now = deps.clock.now();
  const status: DeviceStatusRecord = {
    deviceId,
    state: report.state,
    session: report.session,
    reportedAt: report.ts,
    lastSeenAt: report.state === "lost" ? ((await deps.storage.getDeviceStatus(deviceId))?.lastSeenAt ?? now) : now,
    certSerial: report.cert?.serial ?? null,
    certNotAfter: report.cert?.notAfter ?? null,
    keyAlg: report.cert?.keyAlg ?? null,
    nextRenewAt: report.nextRenewAt,
    agentVersion: report.agentVersion,
    lastRenew: report.lastRenew,
    source: "device",
  };
  await deps.storage.apply([
    { kind: "recordStatus", status, force: report.state === "lost" && opts.currentConnection },
  ]);
  const stored = await deps.storage.getDeviceStatus(deviceId);
  return stored?.session === report.session && stored.state === report.state && stored.source === "device";
}

export interface DeviceEventReport {
  id: string;
  type: string;
  at: Date;
  body: Record<string, unknown>;
}

/** Appends a device event (a repeat of an id already stored is dropped). */
export async function recordEvent(deps: ReportDeps, deviceId: string, event: DeviceEventReport): Promise<void> {
  const now = deps.clock.now();
  await deps.storage.apply([
    {
      kind: "insertEvent",
      event: { deviceId, eventId: event.id, type: event.type, at: event.at, receivedAt: now, body: event.body },
    },
    { kind: "touchDevice", deviceId, at: now },
  ]);
}

/** Command states a device's result may still close (a late answer closes an expired command). */
const ANSWERABLE = new Set(["queued", "sent", "expired"]);

/**
 * A device answered a command: the command is closed, only by the device it was sent to
 * and only once. Returns whether it was: a result for a command that does not exist,
 * belongs to another device or was already answered records nothing but the sign of life.
 */
export async function recordCommandResult(
  deps: ReportDeps,
  deviceId: string,
  result: { opId: string; ok: boolean; error: string | null },
): Promise<boolean> {
  const now = deps.clock.now();
  const command = await deps.storage.getCommand(result.opId);
  const writes: Write[] = [{ kind: "touchDevice", deviceId, at: now }];
  const answerable = command !== undefined && command.deviceId === deviceId && ANSWERABLE.has(command.state);
  if (command && answerable) {
    writes.push(
      {
        kind: "commandResult",
        opId: result.opId,
        deviceId,
        state: result.ok ? "succeeded" : "failed",
        at: now,
        error: result.error,
      },
      auditWrite({
        at: now,
        actor: `device:${deviceId}`,
        action: `command.${command.command}`,
        outcome: result.ok ? "success" : "error",
        deviceId,
        detail: { opId: result.opId, ...(result.error ? { error: result.error } : {}) },
      }),
    );
  }
  await deps.storage.apply(writes);
  return answerable;
}

/** The broker saw a connection open; `tookOver` names a still-open session with the same certificate. */
export async function mqttSessionOpened(deps: ReportDeps, session: MqttSessionRecord): Promise<void> {
  const writes: Write[] = [{ kind: "openMqttSession", session }];
  if (!session.deviceId.startsWith(SERVICE_PREFIX)) {
    writes.push({ kind: "touchDevice", deviceId: session.deviceId, at: session.connectedAt });
  }
  await deps.storage.apply(writes);
}

export async function mqttSessionClosed(deps: ReportDeps, id: string, reason: string): Promise<void> {
  await deps.storage.apply([{ kind: "closeMqttSession", id, at: deps.clock.now(), reason }]);
}

/** The server's own status for a device whose identity was revoked. */
export async function markRevokedStatus(deps: ReportDeps, deviceId: string): Promise<void> {
  await deps.storage.apply([{ kind: "overwriteStatus", deviceId, state: "revoked", at: deps.clock.now() }]);
}
