import { z } from "zod";
import { type Actor, SERVER_ACTOR } from "../../authority/actor.ts";
import type { Authority } from "../../authority/authority.ts";
import { commandMessage } from "../../authority/commands.ts";
import type { FleetAuditOptions, FleetAuditReport } from "../../authority/fleet-audit.ts";
import type { ExpiryAlert } from "../../authority/lifecycle.ts";
import { commandTopic, FLEET_EVENTS, parseDeviceTopic, statusTopic } from "../../authority/mqtt-contract.ts";
import type { Scheduler } from "../../authority/responders.ts";
import type { FleetLink, InboundMessage, MessageOutcome } from "../../ports/fleet-link.ts";
import type { RevocationEntry } from "../../ports/storage.ts";

/**
 * The MQTT frontend: decodes what devices publish and calls one authority verb per
 * message; publishes queued commands; carries revocations to the broker. It works the
 * same over the embedded broker and over an external one (FleetLink).
 */

const iso = z.iso.datetime({ offset: true });
const serial = z.string().regex(/^[0-9a-fA-F]{1,40}$/);

const StatusMessage = z.object({
  v: z.literal(1),
  state: z.enum(["online", "offline", "rotating", "degraded", "revoked", "lost", "lost-identity"]),
  session: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  ts: iso,
  cert: z.object({ serial, notAfter: iso.optional(), keyAlg: z.string().max(32).optional() }).optional(),
  nextRenewAt: iso.nullable().optional(),
  lastRenew: z
    .object({ at: iso, ok: z.boolean(), error: z.string().max(500).optional() })
    .nullable()
    .optional(),
  agent: z.object({ version: z.string().max(64) }).optional(),
  /**
   * The device went back to its previous certificate (`serial`) after the broker or the EST
   * server refused the new one (`refused`) at its first use (docs/mqtt-contract.md). Checked
   * here; what the device reports of it is in its `identity-fallback` event.
   */
  fallback: z
    .object({ at: iso, by: z.enum(["mqtt", "est"]), reason: z.string().max(300), refused: serial, serial })
    .optional(),
  /** Set on statuses the server itself wrote (revocation); never ingested as the device's. */
  by: z.string().max(16).optional(),
});

const EventMessage = z.looseObject({
  id: z.string().regex(/^[\w.:-]{1,64}$/),
  type: z.string().regex(/^[\w.-]{1,64}$/),
  at: iso,
});

const CommandResultMessage = z.looseObject({
  opId: z.string().max(64),
  ok: z.boolean(),
  error: z.string().max(500).optional(),
});

/**
 * Messages being recorded at once. Beyond this the broker is delivering faster than the
 * database takes them: further messages are dropped and counted rather than queued
 * without bound (devices republish their status at every connection).
 */
export const MAX_IN_FLIGHT = 5000;

export interface FleetLoopOptions {
  /** The core; the loop uses its `broker` door. */
  authority: Authority;
  link: FleetLink;
  scheduler?: Scheduler;
  maxMessageBytes: number;
  /** Told of every inbound message's outcome (metrics). */
  onMessage?: (kind: string, outcome: MessageOutcome) => void;
  log: (level: "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>) => void;
  /** Milliseconds between scheduled fleet audits; 0 turns them off. */
  auditEveryMs: number;
  /** How long the revoked device gets to receive cmd/revoked before its connection is closed. */
  revokeGraceMs?: number;
  /** Milliseconds between scans for expiry alerts; 0 turns them off. */
  alertEveryMs?: number;
  /** Delivers an expiry alert elsewhere too (the webhook); a failure leaves it for the next scan. */
  notify?: (alert: Record<string, unknown>) => Promise<void>;
  /** Told how each scheduled expiry alert scan ended (metrics); "skipped": the previous one still ran. */
  onAlertScan?: (outcome: AlertScanOutcome) => void;
  /** False when no broker is reachable: queued commands then wait for a server that has one. */
  dispatchCommands?: boolean;
}

const DISPATCH_PAGE = 500;

export type AlertScanOutcome = "completed" | "failed" | "skipped";

export class FleetLoop {
  private dispatching: Promise<number> | undefined;
  private dispatchAgain = false;
  private timers: { cancel(): void }[] = [];
  private inFlight = 0;
  private alertScan: Promise<ExpiryAlert[]> | undefined;

  constructor(private readonly o: FleetLoopOptions) {}

  start(): void {
    const s = this.o.scheduler;
    if (!s) return;
    if (this.o.dispatchCommands !== false) {
      // Commands queued by other processes (the CLI) are found by this poll.
      this.timers.push(
        s.every(this.o.authority.broker.pollMs, () => void this.dispatch().catch(() => undefined)),
        s.every(60_000, () => void this.expireCommands().catch(() => undefined)),
      );
    }
    if (this.o.alertEveryMs) {
      const scan = () => {
        if (this.alertScan) {
          this.o.onAlertScan?.("skipped");
          return;
        }
        this.alerts().then(
          () => this.o.onAlertScan?.("completed"),
          (err: unknown) => {
            this.o.log("error", "expiry alert scan failed", { err });
            this.o.onAlertScan?.("failed");
          },
        );
      };
      this.timers.push(s.after(0, scan), s.every(this.o.alertEveryMs, scan));
    }
    if (this.o.auditEveryMs > 0) {
      // One scheduled audit at a time: on a fleet large enough that one outlasts the
      // interval, overlapping audits would each run slower and pile up.
      let auditing = false;
      const audit = () => {
        if (auditing) {
          this.o.log("warn", "scheduled fleet audit skipped: the previous one is still running");
          return;
        }
        auditing = true;
        this.audit(SERVER_ACTOR)
          .catch((err: unknown) => this.o.log("error", "fleet audit failed", { err }))
          .finally(() => {
            auditing = false;
          });
      };
      this.timers.push(s.every(this.o.auditEveryMs, audit));
    }
  }

  stop(): void {
    for (const t of this.timers.splice(0)) t.cancel();
  }

  /** One inbound message. Never throws: a bad message is counted and dropped. */
  async receive(m: InboundMessage): Promise<MessageOutcome> {
    const topic = parseDeviceTopic(m.topic);
    const kind = topic?.kind ?? "other";
    if (this.inFlight >= MAX_IN_FLIGHT) {
      this.o.onMessage?.(kind, "dropped");
      return "dropped";
    }
    this.inFlight++;
    try {
      const outcome = await this.handle(m, topic).catch((err: unknown) => {
        this.o.log("error", "mqtt message failed", { err, topic: m.topic.slice(0, 200) });
        return "ignored" as const;
      });
      this.o.onMessage?.(kind, outcome);
      return outcome;
    } finally {
      this.inFlight--;
    }
  }

  private async handle(m: InboundMessage, topic: ReturnType<typeof parseDeviceTopic>): Promise<MessageOutcome> {
    if (!topic || topic.deviceId !== m.deviceId || topic.kind === "cmd") return "ignored";
    if (m.payload.byteLength > this.o.maxMessageBytes) return "oversized";
    const { broker } = this.o.authority;
    // Every message a device sends counts, well-formed or not: beyond its budget nothing reaches the database.
    if (!broker.withinQuota(m.deviceId)) return "over_quota";
    let json: unknown;
    try {
      json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(m.payload));
    } catch {
      return "malformed";
    }
    switch (topic.kind) {
      case "status": {
        const doc = StatusMessage.safeParse(json);
        if (!doc.success) return "malformed";
        if (doc.data.by === "edgeid") return "ignored";
        const d = doc.data;
        const applied = await broker.status(
          m.deviceId,
          {
            state: d.state,
            session: d.session,
            ts: new Date(d.ts),
            cert: d.cert
              ? {
                  serial: normalSerial(d.cert.serial),
                  notAfter: d.cert.notAfter ? new Date(d.cert.notAfter) : null,
                  keyAlg: d.cert.keyAlg ?? null,
                }
              : null,
            nextRenewAt: d.nextRenewAt ? new Date(d.nextRenewAt) : null,
            lastRenew: d.lastRenew ?? null,
            agentVersion: d.agent?.version ?? null,
          },
          { currentConnection: m.currentConnection },
        );
        return applied ? "accepted" : "ignored";
      }
      case "events": {
        const e = EventMessage.safeParse(json);
        if (!e.success) return "malformed";
        await broker.event(m.deviceId, {
          id: e.data.id,
          type: e.data.type,
          at: new Date(e.data.at),
          body: e.data as Record<string, unknown>,
        });
        return "accepted";
      }
      case "cmd-result": {
        const r = CommandResultMessage.safeParse(json);
        if (!r.success || r.data.opId !== topic.name) return "malformed";
        const closed = await broker.commandResult(m.deviceId, {
          opId: r.data.opId,
          ok: r.data.ok,
          error: r.data.error ?? null,
        });
        return closed ? "accepted" : "ignored";
      }
    }
    return "ignored";
  }

  /** Publishes queued commands (single flight; a call during a run makes one more run). */
  dispatch(): Promise<number> {
    if (this.o.dispatchCommands === false) return Promise.resolve(0);
    if (this.dispatching) {
      this.dispatchAgain = true;
      return this.dispatching;
    }
    this.dispatching = (async () => {
      let sent = 0;
      try {
        do {
          this.dispatchAgain = false;
          for (;;) {
            const queued = await this.o.authority.broker.queuedCommands(DISPATCH_PAGE);
            for (const c of queued) {
              await this.o.link.publish(commandTopic(c.deviceId, c.command), JSON.stringify(commandMessage(c)), {
                retain: false,
              });
              await this.o.authority.broker.commandSent(c.opId);
              sent++;
            }
            if (queued.length < DISPATCH_PAGE) break;
          }
        } while (this.dispatchAgain);
      } finally {
        this.dispatching = undefined;
      }
      return sent;
    })();
    return this.dispatching;
  }

  async expireCommands(): Promise<void> {
    await this.o.authority.broker.expireCommands();
  }

  /**
   * Revocations reach the broker: the device is told (`cmd/revoked`), its live
   * connections with that certificate are closed without their last will, and, when
   * the certificate was its current identity, its retained status becomes `revoked`.
   */
  async revoked(entries: RevocationEntry[]): Promise<void> {
    const { link } = this.o;
    const { broker } = this.o.authority;
    const byDevice = new Map<string, RevocationEntry[]>();
    for (const e of entries) byDevice.set(e.deviceId, [...(byDevice.get(e.deviceId) ?? []), e]);
    await Promise.all(
      [...byDevice].map(async ([deviceId, revoked]) => {
        const now = broker.now();
        const serials = revoked.map((e) => e.serial);
        const target = deviceId.startsWith("service:") ? undefined : await broker.revocationTarget(deviceId);
        const device = target?.device;
        const identityGone =
          device !== undefined &&
          (device.status === "revoked" ||
            device.status === "decommissioned" ||
            serials.includes(device.currentSerial ?? ""));
        if (device && identityGone) {
          const body = { opId: `revoked-${now.getTime()}`, issuedAt: now.toISOString(), serials };
          await link.publish(commandTopic(device.id, "revoked"), JSON.stringify(body), { retain: false });
          await new Promise<void>((resolve) => {
            if (!this.o.scheduler || !this.o.revokeGraceMs) return resolve();
            this.o.scheduler.after(this.o.revokeGraceMs, resolve);
          });
        }
        let closed = 0;
        for (const serial of serials) closed += await link.disconnect(serial, "revoked");
        if (device && identityGone) {
          await link.publish(
            statusTopic(device.id),
            JSON.stringify({
              v: 1,
              state: "revoked",
              session: target?.session ?? 0,
              ts: broker.now().toISOString(),
              cert: { serial: device.currentSerial ?? serials[0] },
              by: "edgeid",
            }),
            { retain: true },
          );
          await broker.revokedStatus(device.id);
        }
        this.o.log("info", "revocation carried to the broker", {
          device: deviceId,
          serials,
          closedConnections: closed,
        });
      }),
    );
  }

  /**
   * Sends the expiry alerts that are due: an event on the fleet topic (its id is stable
   * per certificate and point, so a repeat can be dropped) and the webhook, if any. An
   * alert is recorded as sent once every channel took it; otherwise the next scan retries.
   * One scan at a time: a call while one runs joins it. A second scan started while a slow
   * webhook holds the first would read that scan's alerts as still due and send them again.
   */
  alerts(): Promise<ExpiryAlert[]> {
    this.alertScan ??= this.scanAlerts().finally(() => {
      this.alertScan = undefined;
    });
    return this.alertScan;
  }

  private async scanAlerts(): Promise<ExpiryAlert[]> {
    const { link } = this.o;
    const { broker } = this.o.authority;
    const sent: ExpiryAlert[] = [];
    for await (const page of broker.dueExpiryAlerts()) {
      const delivered: { alert: ExpiryAlert; channels: string[] }[] = [];
      for (const a of page) {
        const event = {
          v: 1,
          id: a.id,
          type: "certificate-expiring",
          at: broker.now().toISOString(),
          deviceId: a.deviceId,
          profile: a.profile,
          serial: a.serial,
          notAfter: a.notAfter.toISOString(),
          thresholdDays: a.thresholdDays,
          secondsLeft: a.secondsLeft,
          owner: a.owner,
          location: a.location,
        };
        const channels = ["mqtt"];
        try {
          await link.publish(FLEET_EVENTS, JSON.stringify(event), { retain: false });
          if (this.o.notify) {
            await this.o.notify(event);
            channels.push("webhook");
          }
        } catch (err) {
          this.o.log("warn", "expiry alert not delivered; retried at the next scan", {
            device: a.deviceId,
            error: (err as Error).message,
          });
          continue;
        }
        delivered.push({ alert: a, channels });
      }
      // One write set per page; then the event loop serves others before the next page.
      await broker.expiryAlertsSent(delivered);
      sent.push(...delivered.map((d) => d.alert));
      await new Promise((r) => setTimeout(r, 0));
    }
    return sent;
  }

  /** Runs the fleet audit and publishes its findings on the fleet events topic. */
  async audit(actor: Actor, opts: FleetAuditOptions = {}): Promise<FleetAuditReport> {
    const report = await this.o.authority.broker.audit(actor, {
      // Between chunks of the full-table checks the server answers other requests.
      afterChunk: () => new Promise((r) => setTimeout(r, 0)),
      ...opts,
    });
    await publishAudit(this.o.link, report).catch((err: unknown) =>
      this.o.log("warn", "could not publish audit findings", { err }),
    );
    return report;
  }
}

/** Serials as the inventory writes them: lowercase hex, whole octets. */
function normalSerial(hex: string): string {
  const h = hex.toLowerCase();
  return h.length % 2 === 1 ? `0${h}` : h;
}

/** Findings as events on the fleet topic (one message each, then a summary). */
export async function publishAudit(link: FleetLink, report: FleetAuditReport): Promise<void> {
  const at = report.at.toISOString();
  const runId = `audit-${report.at.getTime()}`;
  for (const [i, f] of report.findings.entries()) {
    await link.publish(FLEET_EVENTS, JSON.stringify({ v: 1, id: `${runId}-${i}`, type: "audit-finding", at, ...f }), {
      retain: false,
    });
  }
  await link.publish(
    FLEET_EVENTS,
    JSON.stringify({ v: 1, id: runId, type: "audit-summary", at, counts: report.counts, truncated: report.truncated }),
    { retain: false },
  );
}
