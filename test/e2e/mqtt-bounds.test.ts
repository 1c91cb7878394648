/**
 * The embedded broker of a real `edgeid serve` under abuse, with device certificates
 * issued over EST and raw TLS clients (node:tls) that do what mqtt.js would not: a
 * CONNECT announcing 256 MB from a revoked certificate, a connection that never sends
 * CONNECT, one that never finishes its TLS handshake, more connections per certificate
 * and in total than allowed, and a device that floods events.
 */
import { readFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { connect as tcpConnect } from "node:net";
import { join } from "node:path";
import { type TLSSocket, connect as tlsConnect } from "node:tls";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { mqttConnect } from "../support/mqtt-client.ts";
import { edgeid } from "./support/cli.ts";
import { curl } from "./support/curl.ts";
import { enrollDevice } from "./support/enroll.ts";
import { eventually, makeWorkDir, removeDir } from "./support/process.ts";
import { cliInitDataDir, startServer, type TestServer } from "./support/server.ts";

const CONNECT_TIMEOUT_S = 5;

let work: string;
let adminToken: string;
let server: TestServer;
let mqttUrl: URL;
const devices: Record<string, { cert: string; key: string; serial: string }> = {};
const sockets: TLSSocket[] = [];

const metrics = async () =>
  (await curl(work, `${server.url}/metrics`, { bearer: adminToken, cacert: server.rootPemFile })).text;
const refusals = (text: string, reason: string) =>
  Number(new RegExp(`edgeid_mqtt_refused_total\\{reason="${reason}"\\} (\\d+)`).exec(text)?.[1] ?? 0);

/** The server process's resident set, from /proc (bytes). */
function serverRss(): number {
  const status = readFileSync(`/proc/${server.process.pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) * 1024;
}

/** A TLS connection with a device's certificate, as it starts. */
function tlsOpen(id: string, localAddress?: string): TLSSocket {
  const d = devices[id] as { cert: string; key: string };
  const socket = tlsConnect({
    host: mqttUrl.hostname,
    port: Number(mqttUrl.port),
    ...(localAddress ? { localAddress } : {}),
    cert: readFileSync(d.cert),
    key: readFileSync(d.key),
    ca: readFileSync(server.rootPemFile),
  });
  sockets.push(socket);
  return socket;
}

/** The same, once the handshake is done (client side). */
function tlsAs(id: string): Promise<TLSSocket> {
  const socket = tlsOpen(id);
  return new Promise((resolve, reject) => {
    socket.once("secureConnect", () => resolve(socket));
    socket.once("error", reject);
  });
}

/** Resolves with the milliseconds until the socket closes, or -1 if it is still open after `ms`. */
function closedWithin(socket: { once(e: "close", f: () => void): unknown; destroyed: boolean }, ms: number) {
  const start = Date.now();
  return new Promise<number>((resolve) => {
    const timer = setTimeout(() => resolve(-1), ms);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(Date.now() - start);
    });
  });
}

beforeAll(async () => {
  work = await makeWorkDir("mqtt-bounds");
  ({ adminToken } = await cliInitDataDir(work, "bounds.example"));
  const file = join(work, "data", "edgeid.json");
  const config = JSON.parse(await readFile(file, "utf8")) as Record<string, unknown>;
  config.mqtt = {
    ...(config.mqtt as object),
    connectTimeout: `${CONNECT_TIMEOUT_S}s`,
    maxConnections: 6,
    maxConnectionsPerCertificate: 2,
    deviceMessagesPerMinute: 5,
    maxInflightMessages: 3,
  };
  await writeFile(file, `${JSON.stringify(config, null, 2)}\n`);
  server = await startServer(join(work, "data"), work);
  mqttUrl = new URL((server.mqttUrl as string).replace(/^mqtts:/, "https:"));
  for (const id of ["dev-a", "dev-b", "dev-c", "dev-d", "dev-r"]) devices[id] = await enrollDevice(server, work, id);
  const revoked = await curl(work, `${server.url}/api/v1/devices/dev-r/revoke`, {
    method: "POST",
    bearer: adminToken,
    cacert: server.rootPemFile,
    body: JSON.stringify({ reason: "keyCompromise" }),
    contentType: "application/json",
  });
  expect(revoked.status, revoked.text).toBe(200);
}, 120_000);

afterEach(() => {
  // What a test left open would count against the next one's connection bounds.
  for (const s of sockets.splice(0)) s.destroy();
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  await server?.stop();
  await removeDir(work);
});

describe("embedded broker bounds", () => {
  it("a revoked certificate announcing a 256 MB CONNECT is cut off at the header; the server does not grow", async () => {
    const rssBefore = serverRss();
    const socket = await tlsAs("dev-r");
    let sent = 0;
    let peakRss = rssBefore;
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, serverRss());
    }, 20);
    const started = Date.now();
    const closed = closedWithin(socket, 30_000);
    socket.on("error", () => undefined);
    // CONNECT (0x10) with Remaining Length 268,435,455 (ff ff ff 7f), then the body as fast as TLS takes it.
    socket.write(Buffer.from([0x10, 0xff, 0xff, 0xff, 0x7f]));
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    while (!socket.destroyed && sent < 200 * 1024 * 1024) {
      sent += chunk.length;
      if (!socket.write(chunk)) {
        await new Promise<void>((resolve) => {
          socket.once("drain", resolve);
          socket.once("close", resolve);
        });
      }
    }
    const closedAfter = await closed;
    const elapsedMs = Date.now() - started;
    clearInterval(sampler);
    peakRss = Math.max(peakRss, serverRss());
    const refused = await eventually(
      async () =>
        server
          .log()
          .split("\n")
          .flatMap((l) => {
            try {
              return [JSON.parse(l) as { msg?: string; reason?: string; bytesRead?: number }];
            } catch {
              return [];
            }
          })
          .find((e) => e.msg === "mqtt packet refused"),
      (e) => e !== undefined,
      5000,
    ).catch(() => undefined);
    // The figures, for the record (the assertions below are the test).
    process.stdout.write(
      `${JSON.stringify({
        attack: "256 MB CONNECT from a revoked certificate",
        clientBytesWritten: sent,
        serverMqttBytesReadAtRefusal: refused?.bytesRead,
        closedAfterMs: closedAfter,
        elapsedMs,
        serverRssBeforeMiB: +(rssBefore / 2 ** 20).toFixed(1),
        serverRssPeakMiB: +(peakRss / 2 ** 20).toFixed(1),
      })}\n`,
    );
    expect(closedAfter, "the server did not close the connection").toBeGreaterThanOrEqual(0);
    expect(refused).toMatchObject({ reason: "connect_too_large" });
    // Of the MQTT stream the server had read the header's 5 bytes, or the first TLS record (16 KiB) at most.
    expect(refused?.bytesRead).toBeLessThanOrEqual(16 * 1024 + 5);
    // What the client could hand to its kernel before the close arrived, not 200 MB.
    expect(sent).toBeLessThan(32 * 1024 * 1024);
    expect(peakRss - rssBefore).toBeLessThan(32 * 1024 * 1024);
    expect(refusals(await metrics(), "connect_too_large")).toBe(1);
  });

  it("an address that spent its refusal budget (60 oversized CONNECTs) is dropped before the TLS handshake", async () => {
    // From 127.0.0.7, so that the other tests' refusals (from 127.0.0.1) do not count.
    for (let i = 0; i < 60; i++) {
      const socket = tlsOpen("dev-r", "127.0.0.7");
      socket.on("error", () => undefined);
      await new Promise<void>((resolve, reject) => {
        socket.once("secureConnect", () => resolve());
        socket.once("close", () => reject(new Error(`connection ${i} closed before its handshake`)));
      });
      const closed = closedWithin(socket, 10_000);
      socket.write(Buffer.from([0x10, 0xff, 0xff, 0xff, 0x7f]));
      expect(await closed).toBeGreaterThanOrEqual(0);
    }
    const tlsRefusalsBefore = refusals(await metrics(), "tls");
    const dropped = tlsOpen("dev-r", "127.0.0.7");
    const outcome = await new Promise<string>((resolve) => {
      dropped.once("secureConnect", () => resolve("handshake"));
      dropped.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    });
    expect(outcome).not.toBe("handshake");
    // Another address is served.
    const other = tlsOpen("dev-a", "127.0.0.8");
    await new Promise<void>((resolve, reject) => {
      other.once("secureConnect", () => resolve());
      other.once("error", reject);
    });
    const after = await metrics();
    expect(refusals(after, "rate_limited")).toBeGreaterThanOrEqual(1);
    // Counted once, as rate limited: not also as a failed TLS handshake (nor logged as one).
    expect(refusals(after, "tls")).toBe(tlsRefusalsBefore);
    expect(server.log()).not.toContain("over its refusal budget");
  }, 60_000);

  it("a TLS connection that never sends CONNECT is closed after mqtt.connectTimeout, so is an unfinished handshake", async () => {
    const idle = await tlsAs("dev-a");
    const raw = tcpConnect({ host: mqttUrl.hostname, port: Number(mqttUrl.port) });
    raw.on("error", () => undefined);
    const [tlsClosed, tcpClosed] = await Promise.all([
      closedWithin(idle, (CONNECT_TIMEOUT_S + 10) * 1000),
      closedWithin(raw, (CONNECT_TIMEOUT_S + 10) * 1000),
    ]);
    expect(tlsClosed, "the idle TLS connection was never closed").toBeGreaterThan((CONNECT_TIMEOUT_S - 1) * 1000);
    raw.destroy();
    expect(tcpClosed, "the unfinished handshake was never closed").toBeGreaterThan((CONNECT_TIMEOUT_S - 1) * 1000);
  }, 30_000);

  it("allows mqtt.maxConnectionsPerCertificate connections per certificate and mqtt.maxConnections in all", async () => {
    const before = await metrics();
    const held = await Promise.all([tlsAs("dev-a"), tlsAs("dev-a")]);
    const third = tlsOpen("dev-a");
    third.on("error", () => undefined);
    // Refused as soon as the server saw the certificate: well before the connect timeout.
    expect(await closedWithin(third, (CONNECT_TIMEOUT_S - 2) * 1000)).toBeGreaterThanOrEqual(0);
    expect(held.map((s) => s.destroyed)).toEqual([false, false]);
    // Another certificate still gets in.
    held.push(...(await Promise.all([tlsAs("dev-b"), tlsAs("dev-b"), tlsAs("dev-c"), tlsAs("dev-c")])));
    // Six open: the seventh TCP connection is dropped before its TLS handshake.
    const seventh = tlsAs("dev-d").then(
      () => "handshake completed",
      (err: Error) => err.message,
    );
    expect(await seventh).not.toBe("handshake completed");
    expect(held.map((s) => s.destroyed)).toEqual([false, false, false, false, false, false]);
    const after = await metrics();
    expect(refusals(after, "too_many_connections_per_certificate")).toBe(
      refusals(before, "too_many_connections_per_certificate") + 1,
    );
    expect(refusals(after, "too_many_connections")).toBe(refusals(before, "too_many_connections") + 1);
  }, 30_000);

  it("a client with mqtt.maxInflightMessages QoS 2 messages awaiting PUBREL is closed at the next one", async () => {
    const socket = await tlsAs("dev-c");
    socket.on("error", () => undefined);
    let received = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
    });
    const receivedAtLeast = (n: number) =>
      eventually(
        async () => received.length,
        (len) => len >= n,
        10_000,
      );
    const frame = (typeByte: number, body: Buffer) => Buffer.concat([Buffer.from([typeByte, body.length]), body]);
    const str = (v: string) => Buffer.concat([Buffer.from([0, v.length]), Buffer.from(v)]);
    // CONNECT, MQTT 3.1.1, clean session, keepalive 60 s, client id dev-c.
    socket.write(frame(0x10, Buffer.concat([str("MQTT"), Buffer.from([4, 0x02, 0, 60]), str("dev-c")])));
    await receivedAtLeast(4);
    expect([...received.subarray(0, 4)]).toEqual([0x20, 2, 0, 0]);
    // QoS 2 PUBLISH (0x34) with message ids 1..3, never released: three PUBRECs.
    const publish = (id: number) =>
      frame(0x34, Buffer.concat([str("edgeid/v1/devices/dev-c/events"), Buffer.from([0, id]), Buffer.from("{}")]));
    const closed = closedWithin(socket, 10_000);
    for (const id of [1, 2, 3]) socket.write(publish(id));
    await receivedAtLeast(4 + 3 * 4);
    expect([...received.subarray(4, 16)]).toEqual([0x50, 2, 0, 1, 0x50, 2, 0, 2, 0x50, 2, 0, 3]);
    expect(socket.destroyed).toBe(false);
    socket.write(publish(4));
    expect(await closed, "the fourth unreleased QoS 2 message did not close the connection").toBeGreaterThanOrEqual(0);
    expect(received.length).toBe(16);
  });

  it("a device's events beyond mqtt.deviceMessagesPerMinute are dropped and counted, not stored", async () => {
    const r = await mqttConnect(server.mqttUrl as string, {
      clientId: "dev-b",
      cert: devices["dev-b"]?.cert,
      key: devices["dev-b"]?.key,
      ca: server.rootPemFile,
    });
    if (!r.ok) throw new Error(r.error);
    try {
      for (let i = 0; i < 8; i++) {
        await r.c.publish("edgeid/v1/devices/dev-b/events", {
          id: `flood-${i}`,
          type: "flood",
          at: new Date().toISOString(),
        });
      }
      const text = await eventually(metrics, (m) =>
        m.includes('edgeid_mqtt_messages_total{kind="events",outcome="over_quota"} 3'),
      );
      expect(text).toContain('edgeid_mqtt_messages_total{kind="events",outcome="accepted"} 5');
      const shown = JSON.parse((await edgeid(["devices", "show", "dev-b", "--data", server.dataDir, "--json"])).stdout);
      expect((shown.events as { id: string }[]).map((e) => e.id).sort()).toEqual([
        "flood-0",
        "flood-1",
        "flood-2",
        "flood-3",
        "flood-4",
      ]);
    } finally {
      await r.c.end();
    }
  });
});
