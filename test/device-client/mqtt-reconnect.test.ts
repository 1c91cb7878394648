/**
 * The agent's MQTT reporter against a real broker (aedes over TLS) that refuses its
 * CONNECT: it asks again, later each time (doubling, with jitter, bounded), and is back
 * to the base delay once the broker accepts. Without this, a CONNACK refusal (a broker
 * restarting, over a budget) left the agent disconnected until its next rotation.
 * The base delay is a parameter (10 ms here), so nothing waits for seconds. And it says
 * whether the broker granted its command subscription: a refused one leaves it deaf.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MqttReporter } from "../../device-client/src/status.ts";
import { type TestBroker, testBroker } from "./support/broker.ts";
import { pki } from "./support/pki.ts";
import { until } from "./support/until.ts";

describe("MQTT reporter: a broker that refuses the connection", () => {
  let dir: string;
  let broker: TestBroker;
  let reporter: MqttReporter | undefined;
  let logs: { msg: string; fields?: Record<string, unknown> }[];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "edgeid-agent-reconnect-"));
    logs = [];
  });
  afterEach(async () => {
    await reporter?.stop();
    await broker?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A reporter for the test device against the test broker, started; `over` sets what a test needs. */
  const startReporter = (
    p: Awaited<ReturnType<typeof pki>>,
    now: number,
    over: Partial<ConstructorParameters<typeof MqttReporter>[0]> = {},
  ): MqttReporter => {
    const serial = p.device.node.serialNumber.toLowerCase();
    const r = new MqttReporter({
      url: broker.url,
      deviceId: "gw-t",
      tls: () => ({ key: p.device.key, cert: p.device.pem, serial, trust: [p.root.node] }),
      now: () => now,
      queueFile: join(dir, "events.jsonl"),
      writeFile: (file, data) => writeFileSync(file, data),
      onCommand: async () => ({ ok: true }),
      log: (msg, fields) => logs.push({ msg, ...(fields ? { fields } : {}) }),
      random: () => 1,
      reconnectMs: 10,
      ...over,
    });
    r.start({ state: "online" } as never);
    return r;
  };

  it("says whether the broker granted its command subscription", async () => {
    const now = Date.now();
    const p = await pki(now);
    broker = await testBroker(p.server);
    const serial = p.device.node.serialNumber.toLowerCase();
    const start = () => startReporter(p, now);
    const said = () => logs.filter((l) => l.msg.startsWith("mqtt subscri"));
    reporter = start();
    await until("the SUBACK", () => said().length === 1);
    expect(said()).toEqual([{ msg: "mqtt subscribed", fields: { topic: "edgeid/v1/devices/gw-t/cmd/+" } }]);
    await reporter.stop();

    broker.refuseSubscriptions.add(serial);
    logs = [];
    reporter = start();
    await until("the SUBACK", () => said().length === 1);
    expect(said()).toEqual([
      {
        msg: "mqtt subscription refused",
        fields: { topic: "edgeid/v1/devices/gw-t/cmd/+", error: expect.stringMatching(/Subscribe error|QoS 128/) },
      },
    ]);
  });

  it("is asked again after each refusal, with doubling jittered delays, and connects once the broker accepts", async () => {
    const now = Date.now();
    const p = await pki(now);
    broker = await testBroker(p.server);
    const serial = p.device.node.serialNumber.toLowerCase();
    // Server unavailable (3), the answer of a broker that is not ready.
    broker.refuse.set(serial, 3);
    const connected: string[] = [];
    reporter = startReporter(p, now, { onConnected: (s) => connected.push(s), maxReconnectMs: 40 });
    await until("four refusals", () => broker.connects.length >= 4);
    broker.refuse.delete(serial);
    await until("a connection", () => connected.length === 1);

    const refusedAt = broker.connects.findIndex((c) => c.code === 0);
    expect(refusedAt).toBeGreaterThanOrEqual(4);
    expect(broker.connects.slice(0, refusedAt).every((c) => c.code === 3 && c.serial === serial)).toBe(true);
    const delays = logs.filter((l) => l.msg === "mqtt connection refused; asking again later").map((l) => l.fields);
    // random() = 1: the upper bound of each draw; doubling from 10 ms, bounded by 40 ms.
    expect(delays.slice(0, 4)).toEqual([
      { code: 3, refusals: 1, delayMs: 20 },
      { code: 3, refusals: 2, delayMs: 40 },
      { code: 3, refusals: 3, delayMs: 40 },
      { code: 3, refusals: 4, delayMs: 40 },
    ]);
    expect(connected).toEqual([serial]);
  });
});
