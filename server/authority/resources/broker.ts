import type { CommandRecord } from "../../ports/storage.ts";
import type { Actor } from "../actor.ts";
import { DeviceMessageQuota } from "../device-message-quota.ts";
import {
  type DeviceEventReport,
  markRevokedStatus,
  recordCommandResult,
  recordEvent,
  recordStatus,
  type StatusReport,
} from "../device-reports.ts";
import { type FleetAuditOptions, runFleetAudit } from "../fleet-audit.ts";
import { dueExpiryAlertPages, type ExpiryAlert, markExpiryAlertsSent } from "../lifecycle.ts";
import type { Door } from "./door.ts";

/**
 * The server's side of the MQTT contract, for the fleet loop: what devices report,
 * the commands and expiry alerts to deliver, what a revocation changes at the broker.
 * The fleet loop acts as the server itself (devices authenticated at the broker), so
 * these verbs check no operator role.
 */
export class Broker {
  private quota: DeviceMessageQuota | undefined;

  constructor(private readonly door: Door) {}

  private get deps() {
    return this.door.deps;
  }

  /** The core's clock: the times the fleet loop stamps on what it publishes. */
  now(): Date {
    return this.deps.clock.now();
  }

  /** How often commands queued by other processes (the CLI) are looked for. */
  get pollMs(): number {
    return this.deps.config.revocation.pollMs;
  }

  /**
   * Takes one message from the device's per-minute budget (mqtt.deviceMessagesPerMinute);
   * false means the message is to be dropped unrecorded.
   */
  withinQuota(deviceId: string): boolean {
    this.quota ??= new DeviceMessageQuota({
      perMinute: this.deps.config.mqtt.deviceMessagesPerMinute,
      clock: this.deps.clock,
    });
    return this.quota.take(deviceId);
  }

  status(deviceId: string, report: StatusReport, opts: { currentConnection: boolean }): Promise<boolean> {
    return recordStatus(this.deps, deviceId, report, opts);
  }

  event(deviceId: string, event: DeviceEventReport): Promise<void> {
    return recordEvent(this.deps, deviceId, event);
  }

  /** Whether the result closed a command of this device (see recordCommandResult). */
  commandResult(deviceId: string, result: { opId: string; ok: boolean; error: string | null }): Promise<boolean> {
    return recordCommandResult(this.deps, deviceId, result);
  }

  /** Commands waiting to be published, oldest first. */
  queuedCommands(limit: number): Promise<CommandRecord[]> {
    return this.deps.storage.queuedCommands(limit);
  }

  async commandSent(opId: string): Promise<void> {
    await this.deps.storage.apply([{ kind: "markCommandSent", opId, at: this.deps.clock.now() }]);
  }

  async expireCommands(): Promise<void> {
    await this.deps.storage.apply([{ kind: "expireCommands", at: this.deps.clock.now() }]);
  }

  /** The device a revocation concerns, and the session of its last status (for the retained `revoked`). */
  async revocationTarget(deviceId: string) {
    const device = await this.deps.storage.getDevice(deviceId);
    const status = device && (await this.deps.storage.getDeviceStatus(device.id));
    return device && { device, session: status?.session ?? 0 };
  }

  revokedStatus(deviceId: string): Promise<void> {
    return markRevokedStatus(this.deps, deviceId);
  }

  dueExpiryAlerts(): AsyncGenerator<ExpiryAlert[]> {
    return dueExpiryAlertPages(this.deps);
  }

  expiryAlertsSent(sent: { alert: ExpiryAlert; channels: string[] }[]): Promise<void> {
    return markExpiryAlertsSent(this.deps, sent);
  }

  /** The fleet audit with the configured thresholds where the caller gives none. */
  audit(actor: Actor, opts: FleetAuditOptions = {}) {
    const { notSeenFor, cloneWindow, cloneTakeovers } = this.deps.config.fleet;
    return runFleetAudit(this.deps, actor, { notSeenFor, cloneWindow, cloneTakeovers, ...opts });
  }
}
