import { RENEW_AFTER_EXPIRY } from "../../authority/reenroll.ts";
import type { Clock } from "../../ports/clock.ts";
import type { AuditEvent, Storage } from "../../ports/storage.ts";
import { boundedLabel, Metrics } from "./registry.ts";

/**
 * edgeid's metrics. Counters follow the audit trail (every enrollment, renewal,
 * refusal and revocation is an audit record, observed as it commits); gauges and the
 * expiry histogram are read from the database when scraped, cached briefly.
 */

/** Histogram bounds, seconds left on the current certificate (≤ 0: expired). */
export const EXPIRY_BUCKETS = [0, 3600, 6 * 3600, 24 * 3600, 3 * 86400, 7 * 86400, 30 * 86400, 90 * 86400, 365 * 86400];
const SCRAPE_CACHE_MS = 10_000;
const SCAN_CHUNK = 5000;

const METHODS = ["token", "idevid", "reenroll", "operator", "gateway"];
const MQTT_KINDS = ["status", "events", "cmd-result", "cmd", "other"];
const MQTT_OUTCOMES = ["accepted", "ignored", "malformed", "oversized", "dropped", "over_quota"];

export interface FleetMetricsSource {
  storage: Pick<Storage, "countDevicesByStatus" | "expiryHistogram">;
  clock: Clock;
  profiles: readonly string[];
  /** Devices on the embedded broker now (undefined without one). */
  connectedDevices: () => number | undefined;
}

export class FleetMetrics {
  readonly registry = new Metrics();
  private readonly enrollments = this.registry.counter(
    "edgeid_enrollments_total",
    "Certificates issued by simpleenroll.",
  );
  private readonly renewals = this.registry.counter("edgeid_renewals_total", "Certificates issued by simplereenroll.");
  private readonly renewalsAfterExpiry = this.registry.counter(
    "edgeid_renewals_after_expiry_total",
    "Renewals with an expired certificate, within the profile's renewAfterExpiry window (also in edgeid_renewals_total).",
  );
  private readonly denials = this.registry.counter(
    "edgeid_denials_total",
    "Refused requests (EST, operator API, MQTT connect) by action and reason; past a client's refusal budget, counted when its window closes.",
  );
  private readonly revocations = this.registry.counter(
    "edgeid_revocations_total",
    "Revocations by what was revoked (device, decommission, certificate).",
  );
  private readonly commands = this.registry.counter("edgeid_commands_total", "Commands queued to devices.");
  private readonly mqttMessages = this.registry.counter(
    "edgeid_mqtt_messages_total",
    "Messages from devices by topic kind and outcome.",
  );
  private readonly mqttRefused = this.registry.counter(
    "edgeid_mqtt_refused_total",
    "MQTT connections, publishes and subscriptions the embedded broker refused, by reason.",
  );
  private readonly alertScans = this.registry.counter(
    "edgeid_expiry_alert_scans_total",
    "Scheduled expiry alert scans by outcome (completed, failed; skipped: the previous scan was still running).",
  );
  private cache: {
    at: number;
    counts?: Record<string, number>;
    histogram?: { counts: number[]; total: number; sum: number };
  } = {
    at: -Infinity,
  };

  constructor(private readonly source: FleetMetricsSource) {
    const r = this.registry;
    r.gauge("edgeid_devices", "Devices by status.", async () => {
      const { counts } = await this.snapshot();
      return Object.entries(counts ?? {}).map(([status, value]) => ({ labels: { status }, value }));
    });
    r.gauge("edgeid_mqtt_connected_devices", "Devices connected to the embedded broker.", () => {
      const n = source.connectedDevices();
      return n === undefined ? [] : [{ value: n }];
    });
    r.histogram(
      "edgeid_certificate_expiry_seconds",
      "Active devices by seconds left on their current certificate.",
      async () => {
        const { histogram } = await this.snapshot();
        const h = histogram ?? { counts: EXPIRY_BUCKETS.map(() => 0), total: 0, sum: 0 };
        return {
          buckets: EXPIRY_BUCKETS.map((le, i) => ({ le, count: h.counts[i] ?? 0 })),
          count: h.total,
          sum: h.sum,
        };
      },
    );
  }

  private async snapshot() {
    const now = this.source.clock.now();
    if (now.getTime() - this.cache.at < SCRAPE_CACHE_MS) return this.cache;
    this.cache = {
      at: now.getTime(),
      counts: await this.source.storage.countDevicesByStatus(),
      histogram: await this.histogram(now),
    };
    return this.cache;
  }

  /** Over the active devices in chunks, yielding between them: a scrape never stalls the server. */
  private async histogram(now: Date) {
    const h = { counts: EXPIRY_BUCKETS.map(() => 0), total: 0, sum: 0 };
    for (let after: string | null = ""; after !== null; ) {
      const chunk = await this.source.storage.expiryHistogram(now, EXPIRY_BUCKETS, after, SCAN_CHUNK);
      chunk.counts.forEach((n, i) => {
        h.counts[i] = (h.counts[i] as number) + n;
      });
      h.total += chunk.total;
      h.sum += chunk.sum;
      after = chunk.next;
      if (after !== null) await new Promise((r) => setTimeout(r, 0));
    }
    return h;
  }

  /** Called with each committed audit record. */
  observe(e: AuditEvent): void {
    const d = e.detail ?? {};
    const profile = boundedLabel(String(d.profile ?? ""), this.source.profiles);
    if (e.outcome === "denied" || e.outcome === "error") {
      // An aggregated record stands for `aggregated` refusals (authority/refusals.ts).
      this.denials(
        { action: e.action.slice(0, 48), reason: String(d.reason ?? "unknown").slice(0, 48) },
        Number(d.aggregated) || 1,
      );
      return;
    }
    if (e.outcome !== "success") return;
    // The inventory changed: the next scrape reads it again instead of the cached counts.
    if (/^(est|device|certificate)\./.test(e.action)) this.cache = { at: -Infinity };
    switch (e.action) {
      case "est.simpleenroll":
      case "est.serverkeygen":
        this.enrollments({ profile, method: boundedLabel(String(d.method ?? ""), METHODS) });
        break;
      case "est.simplereenroll":
        this.renewals({ profile });
        break;
      case RENEW_AFTER_EXPIRY:
        this.renewals({ profile });
        this.renewalsAfterExpiry({ profile });
        break;
      case "device.revoke":
      case "device.decommission":
      case "certificate.revoke":
        this.revocations({
          kind: e.action.split(".")[1] as string,
          reason: String(d.reason ?? "unspecified").slice(0, 32),
        });
        break;
      case "command.rotate":
      case "command.ca-update":
        if (e.actor.startsWith("device:")) break;
        this.commands({ command: e.action.slice("command.".length) }, Number(d.devices ?? 1));
        break;
    }
  }

  mqttMessage(kind: string, outcome: string): void {
    this.mqttMessages({ kind: boundedLabel(kind, MQTT_KINDS), outcome: boundedLabel(outcome, MQTT_OUTCOMES) });
  }

  alertScan(outcome: "completed" | "failed" | "skipped"): void {
    this.alertScans({ outcome });
  }

  mqttRefusal(reason: string): void {
    this.mqttRefused({ reason: reason.slice(0, 48) });
  }

  render(): Promise<string> {
    return this.registry.render();
  }
}
