/**
 * Lifecycle controls for long-lived certificates: owner and location, the expiring
 * report, expiry alerts at per-profile points (once each, the tightest crossed, retried
 * when a channel fails), and the signed webhook, against a real HTTP receiver.
 */
import { createHmac } from "node:crypto";
import { createServer, type Server } from "node:http";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { webhookNotifier } from "../../server/adapters/webhook.ts";
import type { Actor } from "../../server/authority/actor.ts";
import { expiringReport, setDeviceMetadata } from "../../server/authority/lifecycle.ts";
import { FleetLoop, type FleetLoopOptions } from "../../server/frontends/mqtt/fleet-loop.ts";
import type { FleetLink } from "../../server/ports/fleet-link.ts";
import { createToken, generateKeys, type Harness, harness, makeCsr, peer, refusal } from "../support/fixtures.ts";
import { gate, manualScheduler } from "../support/gate.ts";
import { registerOperator } from "../support/operators.ts";

const OPERATOR: Actor = { id: "operator:op_test", role: "operator" };
const DAY = 86400;

class RecordingLink implements FleetLink {
  published: { topic: string; body: Record<string, unknown> }[] = [];
  async publish(topic: string, payload: string): Promise<void> {
    this.published.push({ topic, body: JSON.parse(payload) as Record<string, unknown> });
  }
  async disconnect(): Promise<number> {
    return 0;
  }
  connectedDevices(): undefined {
    return undefined;
  }
}

describe("lifecycle controls", () => {
  let h: Harness;

  beforeEach(async () => {
    h = await harness({
      config: {
        trustDomain: "example.org",
        profiles: {
          device: {},
          appliance: { keyTypes: ["RSA", "P-256"], validity: "90d", expiryAlerts: ["30d", "7d", "1d"] },
        },
      },
    });
    await registerOperator(h, OPERATOR);
  });
  afterEach(() => h.close());

  const enroll = async (deviceId: string, profile = "appliance") => {
    const token = await createToken(h, deviceId, { profile });
    return h.authority.enroll({
      csr: await makeCsr(await generateKeys("P-256")),
      credentials: { type: "basic", username: deviceId, password: token },
      peer: peer(),
      label: profile,
    });
  };

  /** A fleet loop with no timers and no audit, for the expiry alerts; `over` sets what a test needs. */
  const alertLoop = (link: FleetLink, over: Partial<FleetLoopOptions> = {}) =>
    new FleetLoop({
      authority: h.authority,
      link,
      maxMessageBytes: 4096,
      log: () => undefined,
      auditEveryMs: 0,
      ...over,
    });

  it("owner and location: set, kept, cleared, checked and audited", async () => {
    await enroll("app-1");
    expect(
      await setDeviceMetadata(h.deps, OPERATOR, "app-1", { owner: "OT team", location: "Plant 2, line 4" }),
    ).toMatchObject({ owner: "OT team", location: "Plant 2, line 4", updatedBy: "operator:op_test" });
    expect(await setDeviceMetadata(h.deps, OPERATOR, "app-1", { location: null })).toMatchObject({
      owner: "OT team",
      location: null,
    });
    expect(await refusal(setDeviceMetadata(h.deps, OPERATOR, "app-1", { owner: "x\ny" }))).toMatchObject({
      reason: "bad_metadata",
    });
    expect(await refusal(setDeviceMetadata(h.deps, OPERATOR, "app-1", { owner: "" }))).toMatchObject({
      reason: "bad_metadata",
    });
    expect(await refusal(setDeviceMetadata(h.deps, OPERATOR, "nobody", { owner: "a" }))).toMatchObject({
      code: "not_found",
    });
    expect(
      await refusal(setDeviceMetadata(h.deps, { id: "operator:aud", role: "auditor" }, "app-1", { owner: "a" })),
    ).toMatchObject({ code: "forbidden" });
    const audit = await h.storage.listAudit({ deviceId: "app-1", action: "device.metadata", limit: 5 });
    expect(audit.map((a) => a.detail)).toEqual([
      { owner: "OT team", location: null },
      { owner: "OT team", location: "Plant 2, line 4" },
    ]);
  });

  it("the expiring report lists active devices soonest first, with owner and location", async () => {
    await enroll("app-old");
    h.clock.advance(40 * DAY);
    await enroll("app-mid");
    h.clock.advance(10 * DAY);
    await enroll("app-new");
    await enroll("dev-short", "device"); // 72 h: expires first of all
    await setDeviceMetadata(h.deps, OPERATOR, "app-old", { owner: "facilities" });
    // Left: dev-short 3 days, app-old 40, app-mid 80, app-new 90 (outside the window).
    const r = await expiringReport(h.deps, OPERATOR, { within: 85 * DAY });
    expect(r.items.map((i) => [i.device.id, Math.round(i.secondsLeft / DAY)])).toEqual([
      ["dev-short", 3],
      ["app-old", 40],
      ["app-mid", 80],
    ]);
    expect(r.items[1]?.metadata?.owner).toBe("facilities");
    // Paged: the cursor continues in expiry order.
    const first = await expiringReport(h.deps, OPERATOR, { within: 85 * DAY, limit: 2 });
    const rest = await expiringReport(h.deps, OPERATOR, {
      within: 85 * DAY,
      limit: 2,
      cursor: first.nextCursor ?? undefined,
    });
    expect([...first.items, ...rest.items].map((i) => i.device.id)).toEqual(["dev-short", "app-old", "app-mid"]);
  });

  it("expiry alerts: once per point, the tightest one crossed, only for profiles with alert points", async () => {
    const link = new RecordingLink();
    const notified: Record<string, unknown>[] = [];
    let webhookUp = true;
    const loop = alertLoop(link, {
      notify: async (a) => {
        if (!webhookUp) throw new Error("webhook down");
        notified.push(a);
      },
    });
    const a = await enroll("app-1");
    await enroll("dev-1", "device");
    await setDeviceMetadata(h.deps, OPERATOR, "app-1", { owner: "OT team", location: "Plant 2" });
    expect(await loop.alerts()).toEqual([]);

    h.clock.advance(61 * DAY); // 29 days left
    const first = await loop.alerts();
    expect(first.map((x) => [x.deviceId, x.thresholdDays])).toEqual([["app-1", 30]]);
    expect(link.published).toEqual([
      {
        topic: "edgeid/v1/fleet/events",
        body: expect.objectContaining({
          v: 1,
          id: `expiry-${a.serial}-30d`,
          type: "certificate-expiring",
          deviceId: "app-1",
          serial: a.serial,
          thresholdDays: 30,
          owner: "OT team",
          location: "Plant 2",
        }),
      },
    ]);
    expect(notified).toHaveLength(1);
    expect(await loop.alerts()).toEqual([]); // sent once

    // The webhook is down at the 7-day point: not recorded, retried at the next scan.
    h.clock.advance(23 * DAY); // 6 days left
    webhookUp = false;
    expect(await loop.alerts()).toEqual([]);
    webhookUp = true;
    expect((await loop.alerts()).map((x) => x.thresholdDays)).toEqual([7]);
    expect(notified.map((n) => n.thresholdDays)).toEqual([30, 7]);

    // A second appliance whose 30- and 7-day points passed while nobody looked: only 1 day.
    h.clock.advance(-84 * DAY);
    const b = await enroll("app-2");
    h.clock.advance(89.5 * DAY);
    expect((await loop.alerts()).map((x) => [x.deviceId, x.thresholdDays])).toContainEqual(["app-2", 1]);
    expect(link.published.filter((p) => p.body.deviceId === "app-2").map((p) => p.body.id)).toEqual([
      `expiry-${b.serial}-1d`,
    ]);
    // The short-lived device profile has no alert points.
    expect(link.published.some((p) => p.body.deviceId === "dev-1")).toBe(false);
    const audited = await h.storage.listAudit({ action: "alert.expiry", limit: 10 });
    expect(audited.map((x) => [x.deviceId, x.detail?.thresholdDays, x.detail?.channels])).toContainEqual([
      "app-1",
      7,
      "mqtt,webhook",
    ]);
  });

  it("expiry alerts: one scan at a time, so a slow webhook never gets the same alert twice", async () => {
    const link = new RecordingLink();
    const notified: Record<string, unknown>[] = [];
    const webhook = gate();
    const { scheduler, ticks } = manualScheduler();
    const outcomes: string[] = [];
    const loop = alertLoop(link, {
      dispatchCommands: false,
      alertEveryMs: 1000,
      scheduler,
      onAlertScan: (o) => outcomes.push(o),
      notify: async (a) => {
        notified.push(a);
        await webhook.passed; // the webhook takes its time
      },
    });
    await enroll("app-1");
    h.clock.advance(61 * DAY); // 29 days left: the 30-day alert is due
    loop.start();
    const [first, every] = ticks as [() => void, () => void];
    first();
    await vi.waitFor(() => expect(notified).toHaveLength(1));
    every(); // the next scheduled scan while the webhook still holds the first
    const joined = loop.alerts(); // and a direct call (the Worker's cron)
    expect(outcomes).toEqual(["skipped"]);
    webhook.open();
    expect((await joined).map((a) => a.thresholdDays)).toEqual([30]);
    await vi.waitFor(() => expect(outcomes).toEqual(["skipped", "completed"]));
    every();
    await vi.waitFor(() => expect(outcomes).toEqual(["skipped", "completed", "completed"]));
    expect(notified).toHaveLength(1);
    expect(link.published).toHaveLength(1);
  });

  it("expiry alerts over many devices: all sent in one scan, a write set per page, none twice", async () => {
    const link = new RecordingLink();
    const loop = alertLoop(link);
    // 600 appliances with certificates 20 days from expiry, written straight into storage.
    const now = h.clock.now();
    const notAfter = new Date(now.getTime() + 20 * DAY * 1000);
    const writes = Array.from({ length: 600 }, (_, i) => {
      const id = `bulk-${String(i).padStart(4, "0")}`;
      const serial = (0x1000 + i).toString(16);
      return [
        {
          kind: "upsertDevice" as const,
          device: {
            id,
            profile: "appliance",
            status: "active" as const,
            createdAt: now,
            updatedAt: now,
            lastEnrolledAt: now,
            currentSerial: serial,
            currentNotAfter: notAfter,
          },
        },
        {
          kind: "insertCertificate" as const,
          certificate: {
            serial,
            deviceId: id,
            profile: "appliance",
            issuer: "issuing-p256",
            notBefore: now,
            notAfter,
            fingerprint: `f${serial}`,
            keyFingerprint: `k${serial}`,
            keyType: "P-256",
            status: "valid" as const,
            revokedAt: null,
            revocationReason: null,
            der: Uint8Array.of(0),
            issuedAt: now,
            method: "operator" as const,
            replacesSerial: null,
            bootstrapTokenId: null,
          },
        },
      ];
    });
    await h.storage.apply(writes.flat());
    const commits: number[] = [];
    h.storage.observe((ws) => {
      const recorded = ws.filter((w) => w.kind === "recordExpiryAlert").length;
      if (recorded > 0) commits.push(recorded);
    });
    const sent = await loop.alerts();
    expect(sent).toHaveLength(600);
    expect(new Set(sent.map((a) => a.deviceId)).size).toBe(600);
    expect(link.published).toHaveLength(600);
    expect(commits).toEqual([250, 250, 100]);
    expect(await loop.alerts()).toEqual([]);
  });

  describe("webhook", () => {
    let server: Server;
    let url: string;
    const received: { headers: Record<string, string | string[] | undefined>; body: string }[] = [];
    let status = 204;

    beforeEach(async () => {
      received.length = 0;
      server = createServer((req, res) => {
        let body = "";
        req.setEncoding("utf8").on("data", (c: string) => {
          body += c;
        });
        req.on("end", () => {
          received.push({ headers: req.headers, body });
          res.writeHead(status).end();
        });
      });
      await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
      url = `http://127.0.0.1:${(server.address() as { port: number }).port}/hooks/edgeid`;
    });
    afterEach(() => new Promise<void>((r) => server.close(() => r())));

    it("POSTs JSON signed with HMAC-SHA256, and fails on a non-2xx answer", async () => {
      const notify = webhookNotifier({ url, secret: "s3cret", timeoutMs: 2000 });
      await notify({ type: "certificate-expiring", deviceId: "app-1" });
      const [hit] = received;
      expect(hit?.headers["content-type"]).toBe("application/json");
      expect(JSON.parse(hit?.body ?? "{}")).toEqual({ type: "certificate-expiring", deviceId: "app-1" });
      const expected = createHmac("sha256", "s3cret")
        .update(hit?.body ?? "")
        .digest("hex");
      expect(hit?.headers["x-edgeid-signature"]).toBe(`sha256=${expected}`);
      status = 500;
      await expect(notify({ type: "x" })).rejects.toThrow(/answered 500/);
      status = 204;
      // Without a secret, no signature header.
      await webhookNotifier({ url, timeoutMs: 2000 })({ type: "y" });
      expect(received.at(-1)?.headers["x-edgeid-signature"]).toBeUndefined();
    });
  });
});
