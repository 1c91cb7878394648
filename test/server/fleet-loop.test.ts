/**
 * The fleet loop's core against a real SQLite file, with the clock stepped by hand:
 * the session ordering rule, event deduplication, the command outbox, revocation
 * carried to the broker, who may connect, topic authorization, fleet audits and metrics.
 * The broker side is a recording FleetLink here; test/e2e/fleet-mqtt.test.ts runs the
 * real embedded broker and test/e2e/mosquitto.test.ts a real Mosquitto.
 */
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { type Actor, CLI_ACTOR } from "../../server/authority/actor.ts";
import { issueCommands } from "../../server/authority/commands.ts";
import { admitMqttClient, mqttSessionOpened } from "../../server/authority/device-reports.ts";
import { type FleetCheck, runFleetAudit } from "../../server/authority/fleet-audit.ts";
import { mayPublish, maySubscribe } from "../../server/authority/mqtt-contract.ts";
import { revokeCertificate, revokeDevice } from "../../server/authority/revoke.ts";
import { parseConfig, profilesOf } from "../../server/config/schema.ts";
import { FleetMetrics } from "../../server/frontends/metrics/fleet-metrics.ts";
import { FleetLoop } from "../../server/frontends/mqtt/fleet-loop.ts";
import type { FleetLink } from "../../server/ports/fleet-link.ts";
import {
  createToken,
  generateKeys,
  type Harness,
  harness,
  makeCsr,
  peer,
  refusal,
  TEST_CONFIG,
} from "../support/fixtures.ts";
import { gate, manualScheduler } from "../support/gate.ts";
import { registerOperator } from "../support/operators.ts";

const OPERATOR: Actor = { id: "operator:op_test", role: "operator" };
const HOUR = 3600_000;

class RecordingLink implements FleetLink {
  published: { topic: string; body: Record<string, unknown>; retain: boolean }[] = [];
  disconnected: string[] = [];
  async publish(topic: string, payload: string, opts: { retain: boolean }): Promise<void> {
    this.published.push({ topic, body: JSON.parse(payload) as Record<string, unknown>, retain: opts.retain });
  }
  async disconnect(serial: string): Promise<number> {
    this.disconnected.push(serial);
    return 1;
  }
  connectedDevices(): number {
    return 0;
  }
}

describe("fleet loop", () => {
  let h: Harness;
  let link: RecordingLink;
  let loop: FleetLoop;

  beforeEach(async () => {
    h = await harness();
    await registerOperator(h, OPERATOR);
    link = new RecordingLink();
    loop = new FleetLoop({
      authority: h.authority,
      link,
      maxMessageBytes: 4096,
      log: () => undefined,
      auditEveryMs: 0,
    });
  });
  afterEach(() => h.close());

  /** ManualClock steps in seconds; these tests think in milliseconds. */
  const advanceMs = (ms: number) => h.clock.advance(ms / 1000);

  const enroll = async (deviceId: string, kind: "P-256" | "RSA-2048" = "P-256", profile?: string) => {
    const token = await createToken(h, deviceId, profile ? { profile } : {});
    const issued = await h.authority.enroll({
      csr: await makeCsr(await generateKeys(kind)),
      credentials: { type: "basic", username: deviceId, password: token },
      peer: peer(),
      ...(profile ? { label: profile } : {}),
    });
    return issued;
  };

  const status = (deviceId: string, doc: Record<string, unknown>, currentConnection = true) =>
    loop.receive({
      deviceId,
      topic: `edgeid/v1/devices/${deviceId}/status`,
      payload: Buffer.from(JSON.stringify({ v: 1, ts: h.clock.now().toISOString(), ...doc })),
      currentConnection,
    });

  describe("status and the session rule", () => {
    it("a late last will of an older session never replaces a newer online", async () => {
      await enroll("dev-1");
      const ts1 = h.clock.now().toISOString();
      expect(await status("dev-1", { state: "online", session: 1, ts: ts1 })).toBe("accepted");
      advanceMs(60_000);
      expect(await status("dev-1", { state: "online", session: 2, agent: { version: "1.2.3" } })).toBe("accepted");
      advanceMs(1000);
      // Session 1's will, carrying session 1's timestamp, arrives now.
      expect(await status("dev-1", { state: "lost", session: 1, ts: ts1 }, false)).toBe("ignored");
      const s = await h.storage.getDeviceStatus("dev-1");
      expect(s).toMatchObject({ state: "online", session: 2, agentVersion: "1.2.3", source: "device" });
    });

    it("takes a status that reports a fallback to the previous certificate; refuses a malformed one", async () => {
      await enroll("dev-1");
      const at = h.clock.now().toISOString();
      const fallback = {
        at,
        by: "mqtt",
        reason: "CONNACK 5: Connection refused: Not authorized",
        refused: "5eed02",
        serial: "4a01",
      };
      expect(await status("dev-1", { state: "degraded", session: 2, fallback })).toBe("accepted");
      expect((await h.storage.getDeviceStatus("dev-1"))?.state).toBe("degraded");
      advanceMs(1000);
      expect(
        await status("dev-1", { state: "degraded", session: 2, fallback: { ...fallback, refused: "not hex" } }),
      ).toBe("malformed");
      expect(await status("dev-1", { state: "degraded", session: 2, fallback: { ...fallback, by: "ftp" } })).toBe(
        "malformed",
      );
    });

    it("within a session a newer report wins and an older one is dropped", async () => {
      await enroll("dev-1");
      const early = h.clock.now().toISOString();
      advanceMs(5000);
      expect(await status("dev-1", { state: "rotating", session: 3 })).toBe("accepted");
      expect(await status("dev-1", { state: "degraded", session: 3, ts: early })).toBe("ignored");
      advanceMs(5000);
      expect(await status("dev-1", { state: "online", session: 3 })).toBe("accepted");
      expect((await h.storage.getDeviceStatus("dev-1"))?.state).toBe("online");
    });

    it("the last will of the current connection applies although its timestamp is from the connect", async () => {
      await enroll("dev-1");
      const connectedAt = h.clock.now().toISOString();
      await status("dev-1", { state: "online", session: 4, ts: connectedAt });
      advanceMs(10_000);
      await status("dev-1", { state: "degraded", session: 4 });
      advanceMs(10_000);
      // A will of a connection that was since replaced does not count...
      expect(await status("dev-1", { state: "lost", session: 4, ts: connectedAt }, false)).toBe("ignored");
      // ...the current connection's does.
      expect(await status("dev-1", { state: "lost", session: 4, ts: connectedAt }, true)).toBe("accepted");
      const s = await h.storage.getDeviceStatus("dev-1");
      expect(s?.state).toBe("lost");
      // A will is not a sign of life: last seen stays at the degraded report.
      expect(s?.lastSeenAt.getTime()).toBe(h.clock.now().getTime() - 10_000);
    });

    it("status fields are stored; bad documents are refused and change nothing", async () => {
      const issued = await enroll("dev-1");
      const notAfter = issued.notAfter.toISOString();
      await status("dev-1", {
        state: "online",
        session: 1,
        cert: { serial: issued.serial.toUpperCase(), notAfter, keyAlg: "P-256" },
        nextRenewAt: new Date(h.clock.now().getTime() + 48 * HOUR).toISOString(),
        lastRenew: { at: h.clock.now().toISOString(), ok: true },
        agent: { version: "0.1.0" },
      });
      const s = await h.storage.getDeviceStatus("dev-1");
      expect(s).toMatchObject({ certSerial: issued.serial, keyAlg: "P-256", agentVersion: "0.1.0" });
      expect(s?.certNotAfter?.toISOString()).toBe(notAfter);
      expect(s?.lastRenew).toEqual({ at: h.clock.now().toISOString(), ok: true });

      const raw = (payload: string | Buffer) =>
        loop.receive({
          deviceId: "dev-1",
          topic: "edgeid/v1/devices/dev-1/status",
          payload: Buffer.from(payload),
          currentConnection: true,
        });
      expect(await raw("not json")).toBe("malformed");
      expect(await raw(Buffer.from([0xff, 0xfe, 0x00]))).toBe("malformed");
      expect(await raw(JSON.stringify({ v: 2, state: "online", session: 9, ts: h.clock.now().toISOString() }))).toBe(
        "malformed",
      );
      expect(await raw(JSON.stringify({ v: 1, state: "hacked", session: 9, ts: h.clock.now().toISOString() }))).toBe(
        "malformed",
      );
      expect(await raw(JSON.stringify({ v: 1, state: "online", session: -1, ts: "yesterday" }))).toBe("malformed");
      expect(await raw("x".repeat(5000))).toBe("oversized");
      // A message on another device's topic (the broker names the publisher) is dropped.
      expect(
        await loop.receive({
          deviceId: "dev-1",
          topic: "edgeid/v1/devices/dev-2/status",
          payload: Buffer.from(JSON.stringify({ v: 1, state: "online", session: 99, ts: h.clock.now().toISOString() })),
          currentConnection: true,
        }),
      ).toBe("ignored");
      expect(await h.storage.getDeviceStatus("dev-2")).toBeUndefined();
      expect((await h.storage.getDeviceStatus("dev-1"))?.session).toBe(1);
    });
  });

  describe("events", () => {
    it("are appended once per id and cannot be edited", async () => {
      await enroll("dev-1");
      const event = (id: string, type: string) =>
        loop.receive({
          deviceId: "dev-1",
          topic: "edgeid/v1/devices/dev-1/events",
          payload: Buffer.from(JSON.stringify({ id, type, at: h.clock.now().toISOString(), serial: "ab" })),
          currentConnection: true,
        });
      expect(await event("e-1", "rotated")).toBe("accepted");
      expect(await event("e-1", "rotated")).toBe("accepted"); // a QoS 1 redelivery
      expect(await event("e-2", "renewal-refused")).toBe("accepted");
      const events = await h.storage.listDeviceEvents("dev-1", undefined, 10);
      expect(events.map((e) => e.eventId)).toEqual(["e-2", "e-1"]);
      expect(events[1]?.body).toMatchObject({ id: "e-1", type: "rotated", serial: "ab" });
      const db = new Database(`${h.dir}/edgeid.db`);
      try {
        expect(() => db.prepare("UPDATE device_events SET type = 'x'").run()).toThrow(/append-only/);
        expect(() => db.prepare("DELETE FROM device_events").run()).toThrow(/append-only/);
      } finally {
        db.close();
      }
    });
  });

  describe("per-device quota", () => {
    it("messages beyond a device's budget are dropped and counted, not written; other devices are unaffected", async () => {
      const q = await harness({ config: { ...TEST_CONFIG, mqtt: { deviceMessagesPerMinute: 3 } } });
      try {
        const outcomes: string[] = [];
        const quotaLoop = new FleetLoop({
          authority: q.authority,
          link,
          maxMessageBytes: 4096,
          onMessage: (kind, outcome) => outcomes.push(`${kind}:${outcome}`),
          log: () => undefined,
          auditEveryMs: 0,
        });
        for (const id of ["dev-1", "dev-2"]) {
          await q.authority.enroll({
            csr: await makeCsr(await generateKeys("P-256")),
            credentials: { type: "basic", username: id, password: await createToken(q, id) },
            peer: peer(),
          });
        }
        const event = (deviceId: string, id: string) =>
          quotaLoop.receive({
            deviceId,
            topic: `edgeid/v1/devices/${deviceId}/events`,
            payload: Buffer.from(JSON.stringify({ id, type: "flood", at: q.clock.now().toISOString() })),
            currentConnection: true,
          });
        const sent = [];
        for (let i = 0; i < 10; i++) sent.push(await event("dev-1", `e-${i}`));
        expect(sent).toEqual([...Array(3).fill("accepted"), ...Array(7).fill("over_quota")]);
        expect(outcomes.filter((o) => o === "events:over_quota")).toHaveLength(7);
        expect((await q.storage.listDeviceEvents("dev-1", undefined, 100)).map((e) => e.eventId)).toEqual([
          "e-2",
          "e-1",
          "e-0",
        ]);
        // A status counts against the same budget; another device has its own.
        const status = await quotaLoop.receive({
          deviceId: "dev-1",
          topic: "edgeid/v1/devices/dev-1/status",
          payload: Buffer.from(JSON.stringify({ v: 1, state: "online", session: 1, ts: q.clock.now().toISOString() })),
          currentConnection: true,
        });
        expect(status).toBe("over_quota");
        expect(await q.storage.getDeviceStatus("dev-1")).toBeUndefined();
        expect(await event("dev-2", "x-1")).toBe("accepted");
        // 20 s later one more message (3 a minute) is let through.
        q.clock.advance(20);
        expect(await event("dev-1", "e-late")).toBe("accepted");
        expect(await event("dev-1", "e-later")).toBe("over_quota");
      } finally {
        await q.close();
      }
    });
  });

  describe("commands", () => {
    it("are queued, published on the device's cmd topic, and closed by that device's result", async () => {
      await enroll("dev-1");
      await enroll("dev-2");
      const batch = await issueCommands(h.deps, OPERATOR, "rotate", { deviceId: "dev-1" });
      expect(batch.count).toBe(1);
      const opId = batch.opIds[0] as string;
      expect((await h.storage.getCommand(opId))?.state).toBe("queued");
      expect(await loop.dispatch()).toBe(1);
      expect(link.published).toEqual([
        {
          topic: "edgeid/v1/devices/dev-1/cmd/rotate",
          body: { opId, issuedAt: h.clock.now().toISOString() },
          retain: false,
        },
      ]);
      expect((await h.storage.getCommand(opId))?.state).toBe("sent");
      expect(await loop.dispatch()).toBe(0);

      const result = (deviceId: string, body: Record<string, unknown>) =>
        loop.receive({
          deviceId,
          topic: `edgeid/v1/devices/${deviceId}/cmd-result/${opId}`,
          payload: Buffer.from(JSON.stringify(body)),
          currentConnection: true,
        });
      // Another device cannot close it, and a command that does not exist is not created.
      expect(await result("dev-2", { opId, ok: true })).toBe("ignored");
      expect((await h.storage.getCommand(opId))?.state).toBe("sent");
      const unknown = "op_unknown";
      expect(
        await loop.receive({
          deviceId: "dev-1",
          topic: `edgeid/v1/devices/dev-1/cmd-result/${unknown}`,
          payload: Buffer.from(JSON.stringify({ opId: unknown, ok: true })),
          currentConnection: true,
        }),
      ).toBe("ignored");
      expect(await h.storage.getCommand(unknown)).toBeUndefined();
      expect(await result("dev-1", { opId: "op_other", ok: true })).toBe("malformed");
      await result("dev-1", { opId, ok: false, error: "renewal refused: key_not_allowed" });
      expect(await h.storage.getCommand(opId)).toMatchObject({
        state: "failed",
        error: "renewal refused: key_not_allowed",
      });
      // A repeated answer changes nothing and records nothing more.
      expect(await result("dev-1", { opId, ok: true })).toBe("ignored");
      expect((await h.storage.getCommand(opId))?.state).toBe("failed");
      const audit = await h.storage.listAudit({ deviceId: "dev-1", action: "command.rotate", limit: 5 });
      expect(audit.map((a) => [a.actor, a.outcome])).toEqual([
        ["device:dev-1", "error"],
        ["operator:op_test", "success"],
      ]);
    });

    it("go to a filtered set of active devices; bad requests are refused", async () => {
      await enroll("dev-1");
      await enroll("dev-2");
      await enroll("rsa-1", "RSA-2048", "rsa");
      await enroll("dev-gone");
      await revokeDevice(h.deps, { deviceId: "dev-gone", reason: "keyCompromise", actor: OPERATOR });
      const all = await issueCommands(h.deps, OPERATOR, "ca-update", { all: true });
      expect(all.count).toBe(3);
      const rsa = await issueCommands(h.deps, OPERATOR, "rotate", { profile: "rsa" });
      expect(rsa.count).toBe(1);
      expect((await h.storage.getCommand(rsa.opIds[0] as string))?.deviceId).toBe("rsa-1");
      // Within 100 hours: every device profile certificate (72 h), not the 30-day RSA one.
      const soon = await issueCommands(h.deps, OPERATOR, "rotate", { expiringWithin: 100 * 3600 });
      expect(soon.count).toBe(2);

      expect(await refusal(issueCommands(h.deps, OPERATOR, "reboot", { all: true }))).toEqual({
        code: "bad_request",
        reason: "bad_command",
      });
      expect(await refusal(issueCommands(h.deps, OPERATOR, "rotate", {}))).toEqual({
        code: "bad_request",
        reason: "bad_targets",
      });
      expect(await refusal(issueCommands(h.deps, OPERATOR, "rotate", { deviceId: "dev-1", all: true }))).toMatchObject({
        reason: "bad_targets",
      });
      expect(await refusal(issueCommands(h.deps, OPERATOR, "rotate", { deviceId: "dev-gone" }))).toMatchObject({
        reason: "device_not_active",
      });
      expect(await refusal(issueCommands(h.deps, OPERATOR, "rotate", { deviceId: "nobody" }))).toMatchObject({
        code: "not_found",
      });
      expect(
        await refusal(issueCommands(h.deps, { id: "operator:a", role: "auditor" }, "rotate", { all: true })),
      ).toMatchObject({ code: "forbidden" });
    });

    it("expire when nobody answers", async () => {
      await enroll("dev-1");
      const { opIds } = await issueCommands(h.deps, OPERATOR, "rotate", { deviceId: "dev-1" });
      await loop.dispatch();
      advanceMs(23 * HOUR);
      await loop.expireCommands();
      expect((await h.storage.getCommand(opIds[0] as string))?.state).toBe("sent");
      advanceMs(2 * HOUR);
      await loop.expireCommands();
      expect((await h.storage.getCommand(opIds[0] as string))?.state).toBe("expired");
    });
  });

  describe("revocation at the broker", () => {
    it("tells the device, closes its connections and overwrites its retained status", async () => {
      const issued = await enroll("dev-1");
      await status("dev-1", { state: "online", session: 7, cert: { serial: issued.serial } });
      const feed: string[][] = [];
      h.responders.onRevocations((entries) => {
        feed.push(entries.map((e) => e.serial));
        void loop.revoked(entries);
      });
      await revokeDevice(h.deps, { deviceId: "dev-1", reason: "keyCompromise", actor: OPERATOR });
      expect(feed).toEqual([[issued.serial]]);
      await expect.poll(() => link.published.length).toBe(2);
      expect(link.published[0]).toMatchObject({
        topic: "edgeid/v1/devices/dev-1/cmd/revoked",
        retain: false,
        body: { serials: [issued.serial] },
      });
      expect(link.disconnected).toEqual([issued.serial]);
      expect(link.published[1]).toMatchObject({
        topic: "edgeid/v1/devices/dev-1/status",
        retain: true,
        body: { v: 1, state: "revoked", session: 7, by: "edgeid" },
      });
      await expect.poll(async () => (await h.storage.getDeviceStatus("dev-1"))?.source).toBe("server");
      // What the device still had in flight for that session does not undo it.
      advanceMs(1000);
      expect(await status("dev-1", { state: "online", session: 7 })).toBe("ignored");
      // The server's own retained status, read back through an external broker, is not the device's.
      expect(await status("dev-1", { state: "revoked", session: 7, by: "edgeid" })).toBe("ignored");
      expect((await h.storage.getDeviceStatus("dev-1"))?.state).toBe("revoked");
    });
  });

  describe("who may connect", () => {
    it("only a valid certificate we issued, of an active device, with its own id as client id", async () => {
      const a = await enroll("dev-a");
      const b = await enroll("dev-b");
      const cert = async (serial: string) => (await h.storage.getCertificate(serial))?.der as Uint8Array;
      const admit = (certificate: Uint8Array, clientId: string) =>
        admitMqttClient(h.deps, h.authority.refusals, {
          certificate,
          clientId,
          remote: "127.0.0.1:5000",
          address: "127.0.0.1",
        });

      expect(await admit(await cert(a.serial), "dev-a")).toMatchObject({
        kind: "device",
        deviceId: "dev-a",
        serial: a.serial,
      });
      expect(await refusal(admit(await cert(a.serial), "dev-b"))).toEqual({
        code: "forbidden",
        reason: "client_id_mismatch",
      });
      expect(await refusal(admit(h.ca.root, "dev-a"))).toEqual({
        code: "unauthenticated",
        reason: "unknown_certificate",
      });
      await revokeCertificate(h.deps, { serial: b.serial, reason: "keyCompromise", actor: OPERATOR });
      expect(await refusal(admit(await cert(b.serial), "dev-b"))).toMatchObject({ reason: "certificate_revoked" });
      advanceMs(73 * HOUR);
      expect(await refusal(admit(await cert(a.serial), "dev-a"))).toMatchObject({ reason: "certificate_expired" });

      const denied = await h.storage.listAudit({ action: "mqtt.connect", limit: 10 });
      expect(denied.map((d) => [d.outcome, d.detail?.reason])).toEqual([
        ["denied", "certificate_expired"],
        ["denied", "certificate_revoked"],
        ["denied", "unknown_certificate"],
        ["denied", "client_id_mismatch"],
      ]);
    });

    it("a device that is no longer active is refused even with a valid certificate", async () => {
      const a = await enroll("dev-a");
      const der = (await h.storage.getCertificate(a.serial))?.der as Uint8Array;
      // Decommissioned by hand in the database: the check reads the device row live.
      const db = new Database(`${h.dir}/edgeid.db`);
      db.prepare("UPDATE devices SET status = 'decommissioned' WHERE id = 'dev-a'").run();
      db.close();
      expect(
        await refusal(
          admitMqttClient(h.deps, h.authority.refusals, {
            certificate: der,
            clientId: "dev-a",
            remote: null,
            address: null,
          }),
        ),
      ).toMatchObject({
        reason: "device_not_active",
      });
    });
  });

  describe("topic authorization", () => {
    const dev = { kind: "device" as const, deviceId: "dev-1", serial: "01", notAfter: new Date() };
    const svc = { kind: "service" as const, name: "edgeid", serial: "02", notAfter: new Date() };

    it("a device publishes under its own prefix only, and never a command", () => {
      expect(mayPublish(dev, "edgeid/v1/devices/dev-1/status")).toBe(true);
      expect(mayPublish(dev, "edgeid/v1/devices/dev-1/events")).toBe(true);
      expect(mayPublish(dev, "edgeid/v1/devices/dev-1/cmd-result/op_1")).toBe(true);
      expect(mayPublish(dev, "edgeid/v1/devices/dev-1/cmd/rotate")).toBe(false);
      expect(mayPublish(dev, "edgeid/v1/devices/dev-2/status")).toBe(false);
      expect(mayPublish(dev, "edgeid/v1/devices/dev-1/status/extra")).toBe(false);
      expect(mayPublish(dev, "edgeid/v1/fleet/events")).toBe(false);
      expect(mayPublish(dev, "$SYS/broker")).toBe(false);
    });

    it("a device subscribes to its own commands only; a service reads everything", () => {
      expect(maySubscribe(dev, "edgeid/v1/devices/dev-1/cmd/+")).toBe(true);
      expect(maySubscribe(dev, "edgeid/v1/devices/dev-1/cmd/rotate")).toBe(true);
      expect(maySubscribe(dev, "edgeid/v1/devices/dev-1/cmd/#")).toBe(false);
      expect(maySubscribe(dev, "edgeid/v1/devices/dev-1/#")).toBe(false);
      expect(maySubscribe(dev, "edgeid/v1/devices/dev-2/cmd/+")).toBe(false);
      expect(maySubscribe(dev, "edgeid/v1/devices/+/cmd/+")).toBe(false);
      expect(maySubscribe(dev, "#")).toBe(false);
      expect(maySubscribe(svc, "edgeid/v1/#")).toBe(true);
      expect(maySubscribe(svc, "#")).toBe(false);
      // Only the server's own service identity sends commands; no service writes statuses.
      expect(mayPublish(svc, "edgeid/v1/devices/dev-1/cmd/rotate")).toBe(true);
      expect(mayPublish(svc, "edgeid/v1/devices/dev-1/status")).toBe(false);
      const observer = { ...svc, name: "observer" };
      expect(maySubscribe(observer, "edgeid/v1/#")).toBe(true);
      expect(mayPublish(observer, "edgeid/v1/devices/dev-1/cmd/rotate")).toBe(false);
    });
  });

  describe("fleet audit", () => {
    const findings = async (actor: Actor = CLI_ACTOR, deps = h.deps) => {
      const r = await runFleetAudit(deps, actor, { notSeenFor: 3600, cloneWindow: 3600 });
      return r.findings.map((f) => `${f.check} ${f.deviceId}`).sort();
    };

    it("finds nothing in a healthy fleet", async () => {
      for (const id of ["dev-1", "dev-2"]) {
        const issued = await enroll(id);
        await status(id, { state: "online", session: 1, cert: { serial: issued.serial } });
        const session = `s-${id}`;
        await mqttSessionOpened(h.deps, {
          id: session,
          deviceId: id,
          serial: issued.serial,
          remote: "127.0.0.1:1",
          connectedAt: h.clock.now(),
          disconnectedAt: null,
          closeReason: null,
          tookOver: null,
        });
      }
      await enroll("rsa-1", "RSA-2048", "rsa");
      expect(await findings()).toEqual([]);
      const report = await runFleetAudit(h.deps, CLI_ACTOR);
      expect(Object.values(report.counts).every((n) => n === 0)).toBe(true);
      expect((await h.storage.listAudit({ action: "fleet.audit", limit: 1 }))[0]?.outcome).toBe("success");
    });

    it("each check finds its problem in a constructed fleet, and nothing else", async () => {
      // Expiring: enrolled first, then 60 h pass (12 h left of 72 h; the window is 18 h).
      await enroll("dev-expiring");
      advanceMs(58 * HOUR);
      const silent = await enroll("dev-silent");
      await status("dev-silent", { state: "online", session: 1, cert: { serial: silent.serial } });
      advanceMs(2 * HOUR);

      const ok = await enroll("dev-ok");
      await status("dev-ok", { state: "online", session: 1, cert: { serial: ok.serial } });

      // A revoked device whose connection is still open.
      const rev = await enroll("dev-revoked");
      await mqttSessionOpened(h.deps, {
        id: "s-rev",
        deviceId: "dev-revoked",
        serial: rev.serial,
        remote: "10.0.0.1:4000",
        connectedAt: h.clock.now(),
        disconnectedAt: null,
        closeReason: null,
        tookOver: null,
      });
      await revokeDevice(h.deps, { deviceId: "dev-revoked", reason: "keyCompromise", actor: OPERATOR });

      // One certificate, two places: each connection takes over the other's live one.
      const clone = await enroll("dev-clone");
      await status("dev-clone", { state: "online", session: 1, cert: { serial: clone.serial } });
      for (const [id, took] of [
        ["c1", null],
        ["c2", "c1"],
        ["c3", "c2"],
      ] as const) {
        await mqttSessionOpened(h.deps, {
          id,
          deviceId: "dev-clone",
          serial: clone.serial,
          remote: id === "c2" ? "10.0.0.9:1" : "10.0.0.8:1",
          connectedAt: h.clock.now(),
          disconnectedAt: null,
          closeReason: null,
          tookOver: took,
        });
      }

      // Reports a certificate we never issued; another reports dev-ok's.
      await enroll("dev-foreign");
      await status("dev-foreign", { state: "online", session: 1, cert: { serial: "0badc0ffee" } });
      await enroll("dev-borrowed");
      await status("dev-borrowed", { state: "online", session: 1, cert: { serial: ok.serial } });

      // Still uses a certificate that was revoked (the device itself stays active).
      const rc = await enroll("dev-revoked-cert");
      await revokeCertificate(h.deps, { serial: rc.serial, reason: "superseded", actor: OPERATOR });
      await status("dev-revoked-cert", { state: "online", session: 1, cert: { serial: rc.serial } });

      // RSA-2048, acceptable when issued; the rsa profile now asks for 3072.
      await enroll("rsa-weak", "RSA-2048", "rsa");
      const tightened = parseConfig({
        trustDomain: "example.org",
        profiles: { device: {}, rsa: { keyTypes: ["RSA", "P-256"], validity: "30d", rsaMinBits: 3072 } },
      });
      const deps = { ...h.deps, profiles: profilesOf(tightened) };

      const expected: [FleetCheck, string][] = [
        ["certificate-expiring", "dev-expiring"],
        ["device-not-seen", "dev-silent"],
        ["revoked-still-connected", "dev-revoked"],
        ["cloned-identity", "dev-clone"],
        ["unknown-certificate", "dev-foreign"],
        ["unknown-certificate", "dev-borrowed"],
        ["revoked-certificate-in-use", "dev-revoked-cert"],
        ["weak-key", "rsa-weak"],
      ];
      expect(await findings(CLI_ACTOR, deps)).toEqual(expected.map(([c, d]) => `${c} ${d}`).sort());
      // The same when the full-table checks scan two rows at a time, yielding between chunks.
      let chunks = 0;
      const chunked = await runFleetAudit(deps, CLI_ACTOR, {
        notSeenFor: 3600,
        scanChunk: 2,
        afterChunk: async () => {
          chunks++;
        },
      });
      expect(chunked.findings.map((f) => `${f.check} ${f.deviceId}`).sort()).toEqual(
        expected.map(([c, d]) => `${c} ${d}`).sort(),
      );
      expect(chunks).toBeGreaterThan(5);
      const report = await runFleetAudit(deps, CLI_ACTOR, { notSeenFor: 3600 });
      expect(report.findings.find((f) => f.check === "weak-key")?.message).toMatch(/3072/);
      expect(report.findings.find((f) => f.check === "cloned-identity")?.message).toMatch(
        /2 times.*10\.0\.0\.8, 10\.0\.0\.9|2 times.*10\.0\.0\.9, 10\.0\.0\.8/,
      );
      expect(report.findings.find((f) => f.deviceId === "dev-borrowed")?.message).toMatch(/issued to dev-ok/);

      // The loop publishes each finding, then a summary, on the fleet events topic.
      await loop.audit(CLI_ACTOR, { notSeenFor: 3600 });
      const fleet = link.published.filter((p) => p.topic === "edgeid/v1/fleet/events");
      expect(fleet.filter((p) => p.body.type === "audit-finding")).toHaveLength(expected.length - 1); // weak key: default profiles
      expect(fleet.at(-1)?.body).toMatchObject({ type: "audit-summary", counts: { "cloned-identity": 1 } });
    });

    it("reports devices that came back after their certificate expired, and for how long they were past it", async () => {
      const away = await enroll("dev-away");
      h.clock.advance(5 * 86400);
      await h.authority.reenroll({
        csr: await makeCsr(await generateKeys("P-256")),
        peer: peer([(await h.storage.getCertificate(away.serial))?.der as Uint8Array]),
      });
      const report = await runFleetAudit(h.deps, CLI_ACTOR, {});
      const found = report.findings.filter((f) => f.check === "returned-after-expiry");
      expect(found.map((f) => [f.deviceId, f.severity])).toEqual([["dev-away", "low"]]);
      expect(found[0]?.message).toMatch(/^came back 2d after its certificate expired/);
      // A week later it is no longer news.
      h.clock.advance(8 * 86400);
      const later = await runFleetAudit(h.deps, CLI_ACTOR, {});
      expect(later.findings.filter((f) => f.check === "returned-after-expiry")).toEqual([]);
    });

    it("an auditor may run it; it is bounded per check", async () => {
      for (let i = 0; i < 3; i++) {
        await enroll(`dev-${i}`);
        await status(`dev-${i}`, { state: "online", session: 1 });
      }
      advanceMs(2 * HOUR);
      const r = await runFleetAudit(h.deps, { id: "operator:aud", role: "auditor" }, { notSeenFor: 3600, limit: 2 });
      expect(r.counts["device-not-seen"]).toBe(3);
      expect(r.findings.filter((f) => f.check === "device-not-seen")).toHaveLength(2);
      expect(r.truncated).toEqual(["device-not-seen"]);
    });
  });

  it("runs one scheduled fleet audit at a time: a tick while one runs is skipped and said", async () => {
    const { scheduler, ticks } = manualScheduler();
    const logged: string[] = [];
    const finished = gate();
    const audit = h.authority.broker.audit.bind(h.authority.broker);
    const audits = vi.spyOn(h.authority.broker, "audit").mockImplementation(async (actor, opts) => {
      await finished.passed; // a fleet large enough that an audit outlasts the interval
      return audit(actor, opts);
    });
    const scheduled = new FleetLoop({
      authority: h.authority,
      link,
      maxMessageBytes: 4096,
      log: (_level, msg) => void logged.push(msg),
      auditEveryMs: 1000,
      dispatchCommands: false,
      scheduler,
    });
    scheduled.start();
    const [tick] = ticks as [() => void];
    tick();
    tick();
    expect(audits).toHaveBeenCalledTimes(1);
    expect(logged).toEqual(["scheduled fleet audit skipped: the previous one is still running"]);
    finished.open();
    await vi.waitFor(() => expect(link.published.some((p) => p.body.type === "audit-summary")).toBe(true));
    // What is left of that audit is promise callbacks, all run before the next macrotask.
    await new Promise((r) => setImmediate(r));
    tick();
    expect(audits).toHaveBeenCalledTimes(2);
    audits.mockRestore();
  });

  describe("metrics", () => {
    it("counts what the audit trail records, and reads gauges and the expiry histogram from the database", async () => {
      const metrics = new FleetMetrics({
        storage: h.storage,
        clock: h.clock,
        profiles: ["device", "rsa"],
        connectedDevices: () => 2,
      });
      h.storage.observe((writes) => {
        for (const w of writes) if (w.kind === "audit") metrics.observe(w.event);
      });
      await enroll("dev-1");
      await enroll("dev-2");
      await enroll("rsa-1", "RSA-2048", "rsa");
      await h.authority
        .enroll({
          csr: await makeCsr(await generateKeys("P-256")),
          credentials: { type: "basic", username: "dev-3", password: "edt_wrong" },
          peer: peer(),
        })
        .catch(() => undefined);
      // A renewal over mutual TLS with dev-1's certificate.
      const dev1 = (await h.storage.getDevice("dev-1"))?.currentSerial as string;
      await h.authority.reenroll({
        csr: await makeCsr(await generateKeys("P-256")),
        peer: peer([(await h.storage.getCertificate(dev1))?.der as Uint8Array]),
      });
      await revokeDevice(h.deps, { deviceId: "dev-2", reason: "keyCompromise", actor: OPERATOR });
      metrics.mqttRefusal("certificate_revoked");
      metrics.mqttMessage("status", "accepted");
      const text = await metrics.render();
      expect(text).toContain('edgeid_enrollments_total{profile="device",method="token"} 2');
      expect(text).toContain('edgeid_enrollments_total{profile="rsa",method="token"} 1');
      expect(text).toContain('edgeid_renewals_total{profile="device"} 1');
      expect(text).toMatch(/edgeid_denials_total\{action="est.simpleenroll",reason="[a-z_]+"\} 1/);
      expect(text).toContain('edgeid_revocations_total{kind="revoke",reason="keyCompromise"} 1');
      expect(text).toContain('edgeid_mqtt_refused_total{reason="certificate_revoked"} 1');
      expect(text).toContain('edgeid_mqtt_messages_total{kind="status",outcome="accepted"} 1');
      expect(text).toContain("edgeid_mqtt_connected_devices 2");
      expect(text).toContain('edgeid_devices{status="active"} 2');
      expect(text).toContain('edgeid_devices{status="revoked"} 1');
      // Active devices: two 72 h certificates (dev-1, rsa is 30 d).
      expect(text).toContain('edgeid_certificate_expiry_seconds_bucket{le="86400"} 0');
      expect(text).toContain('edgeid_certificate_expiry_seconds_bucket{le="259200"} 1');
      expect(text).toContain('edgeid_certificate_expiry_seconds_bucket{le="2592000"} 2');
      expect(text).toContain('edgeid_certificate_expiry_seconds_bucket{le="+Inf"} 2');
      expect(text).toContain("edgeid_certificate_expiry_seconds_count 2");
      expect(text).toMatch(/# TYPE edgeid_certificate_expiry_seconds histogram/);
      // A renewal after expiry: dev-4 offline for 4 days (72 h certificates).
      await enroll("dev-4");
      h.clock.advance(4 * 86400);
      const dev4 = (await h.storage.getDevice("dev-4"))?.currentSerial as string;
      await h.authority.reenroll({
        csr: await makeCsr(await generateKeys("P-256")),
        peer: peer([(await h.storage.getCertificate(dev4))?.der as Uint8Array]),
      });
      // An aggregated refusal record counts as the refusals it stands for.
      metrics.observe({
        at: h.clock.now(),
        actor: "anonymous",
        action: "pki.ocsp",
        outcome: "denied",
        detail: { reason: "rate_limited", aggregated: 42 },
      });
      const after = await metrics.render();
      expect(after).toContain('edgeid_renewals_total{profile="device"} 2');
      expect(after).toContain('edgeid_renewals_after_expiry_total{profile="device"} 1');
      expect(after).toContain('edgeid_denials_total{action="pki.ocsp",reason="rate_limited"} 42');
    });
  });
});
