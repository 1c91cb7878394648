/**
 * The embedded MQTT broker of a real `edgeid serve`, with device certificates issued
 * over EST (openssl + curl) and mqtt.js clients driven by hand: who may connect, which
 * topics a device may use, status and events reaching the inventory, commands and
 * their results, revocation closing a live session, /metrics, and the fleet audit
 * publishing its findings.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mqttConnect, type TestClient } from "../support/mqtt-client.ts";
import { issueClientCert, opensslCa, serviceCert } from "./support/ca.ts";
import { edgeid, expectDeniedAudit, showDevice } from "./support/cli.ts";
import { curl } from "./support/curl.ts";
import { enrollDevice } from "./support/enroll.ts";
import { normalizeSerial } from "./support/openssl.ts";
import { eventually, makeWorkDir, removeDir } from "./support/process.ts";
import { cliInitDataDir, startServer, type TestServer } from "./support/server.ts";

let work: string;
let adminToken: string;
let server: TestServer;
let mqttUrl: string;
const devices: Record<string, { cert: string; key: string; serial: string }> = {};
const clients: TestClient[] = [];

const api = (method: "GET" | "POST", path: string, body?: unknown) =>
  curl(work, `${server.url}/api/v1/${path}`, {
    method,
    bearer: adminToken,
    cacert: server.rootPemFile,
    ...(body === undefined ? {} : { body: JSON.stringify(body), contentType: "application/json" }),
  });

async function device(id: string, opts: { clientId?: string; clean?: boolean } = {}) {
  const d = devices[id] as { cert: string; key: string };
  const r = await mqttConnect(mqttUrl, {
    clientId: opts.clientId ?? id,
    cert: d.cert,
    key: d.key,
    ca: server.rootPemFile,
    clean: opts.clean,
  });
  if (r.ok) clients.push(r.c);
  return r;
}

async function connected(id: string): Promise<TestClient> {
  const r = await device(id);
  if (!r.ok) throw new Error(`${id} could not connect: ${r.error}`);
  return r.c;
}

const statusDoc = (session: number, extra: Record<string, unknown> = {}) => ({
  v: 1,
  state: "online",
  session,
  ts: new Date().toISOString(),
  agent: { version: "test-1" },
  ...extra,
});

beforeAll(async () => {
  work = await makeWorkDir("fleet-mqtt");
  ({ adminToken } = await cliInitDataDir(work, "fleet.example"));
  server = await startServer(join(work, "data"), work);
  expect(server.mqttUrl).toMatch(/^mqtts:\/\/127\.0\.0\.1:\d+$/);
  mqttUrl = server.mqttUrl as string;
  for (const id of ["dev-a", "dev-b", "dev-c", "dev-d"]) devices[id] = await enrollDevice(server, work, id);
}, 60_000);

afterAll(async () => {
  await Promise.allSettled(clients.map((c) => c.client.end(true)));
  await server?.stop();
  await removeDir(work);
});

describe("embedded broker", () => {
  it("a device certificate connects; status and events reach the inventory", async () => {
    const a = await connected("dev-a");
    expect(await a.subscribe("edgeid/v1/devices/dev-a/cmd/+")).toEqual([1]);
    const serial = devices["dev-a"]?.serial as string;
    await a.publish("edgeid/v1/devices/dev-a/status", statusDoc(1, { cert: { serial, keyAlg: "P-256" } }), {
      retain: true,
    });
    await a.publish("edgeid/v1/devices/dev-a/events", { id: "evt-1", type: "rotated", at: new Date().toISOString() });
    await a.publish("edgeid/v1/devices/dev-a/events", { id: "evt-1", type: "rotated", at: new Date().toISOString() });
    const shown = await eventually(
      () => edgeid(["devices", "show", "dev-a", "--data", server.dataDir, "--json"]).then((r) => JSON.parse(r.stdout)),
      (d) => d.reported?.state === "online" && d.events?.length === 1,
    );
    expect(normalizeSerial(shown.reported.certSerial)).toBe(serial);
    expect(shown.reported).toMatchObject({ session: 1, agentVersion: "test-1", keyAlg: "P-256", source: "device" });
    expect(shown.events[0]).toMatchObject({ id: "evt-1", type: "rotated" });
    expect(shown.mqttSessions[0]).toMatchObject({ disconnectedAt: null, tookOver: false });
    // The same through the operator API.
    const viaApi = await api("GET", "devices/dev-a");
    expect(viaApi.status).toBe(200);
    expect(JSON.parse(viaApi.text).reported.state).toBe("online");
  });

  it("refuses a client without a certificate, a foreign CA's certificate and another device's client id", async () => {
    const none = await mqttConnect(mqttUrl, { clientId: "dev-a", ca: server.rootPemFile, timeoutMs: 5000 });
    expect(none.ok).toBe(false);

    const foreign = await opensslCa(work, "foreign-ca", "/CN=Foreign CA");
    const impostor = await issueClientCert(work, foreign, "impostor", "/CN=dev-a");
    const byForeign = await mqttConnect(mqttUrl, {
      clientId: "dev-a",
      cert: impostor.certFile,
      key: impostor.keyFile,
      ca: server.rootPemFile,
      timeoutMs: 5000,
    });
    expect(byForeign.ok).toBe(false);

    const mismatch = await device("dev-b", { clientId: "dev-a" });
    expect(mismatch).toMatchObject({ ok: false, error: expect.stringMatching(/not authori[sz]ed/i) });
    await expectDeniedAudit(server.dataDir, "dev-b", "mqtt.connect", "client_id_mismatch");
  });

  it("refuses cross-device publish and subscribe, and counts the refusals", async () => {
    const b = await connected("dev-b");
    expect(await b.subscribe("edgeid/v1/devices/dev-a/cmd/+")).toEqual([128]);
    expect(await b.subscribe("#")).toEqual([128]);
    expect(await b.subscribe("edgeid/v1/devices/dev-b/status")).toEqual([128]);
    expect(await b.subscribe("edgeid/v1/devices/dev-b/cmd/+")).toEqual([1]);
    // Publishing as another device: the broker drops the message and the connection.
    b.publish("edgeid/v1/devices/dev-a/status", statusDoc(99, { state: "offline" }), { retain: true }).catch(
      () => undefined,
    );
    await b.closed;
    const a = await showDevice(server.dataDir, "dev-a");
    expect((a as unknown as { reported: { state: string; session: number } }).reported).toMatchObject({
      state: "online",
      session: 1,
    });
    // A device may not send a command, not even to itself.
    const b2 = await connected("dev-b");
    b2.publish("edgeid/v1/devices/dev-b/cmd/rotate", { opId: "op_self" }).catch(() => undefined);
    await b2.closed;

    const metrics = await curl(work, `${server.url}/metrics`, { bearer: adminToken, cacert: server.rootPemFile });
    expect(metrics.status).toBe(200);
    const count = (reason: string) =>
      Number(new RegExp(`edgeid_mqtt_refused_total\\{reason="${reason}"\\} (\\d+)`).exec(metrics.text)?.[1] ?? 0);
    expect(count("subscribe_denied")).toBe(3);
    expect(count("publish_denied")).toBe(2);
    expect(count("client_id_mismatch")).toBe(1);
    expect(count("tls")).toBeGreaterThanOrEqual(2);
  });

  it("sends commands from the operator API and records the device's result", async () => {
    const a = clients.find((c) => c.client.options.clientId === "dev-a" && c.client.connected) as TestClient;
    const r = await api("POST", "commands", { command: "rotate", deviceId: "dev-a" });
    expect(r.status, r.text).toBe(202);
    const { opIds, count } = JSON.parse(r.text) as { opIds: string[]; count: number };
    expect(count).toBe(1);
    const cmd = await a.next((m) => m.topic === "edgeid/v1/devices/dev-a/cmd/rotate");
    expect(cmd.body.opId).toBe(opIds[0]);
    expect(cmd.retain).toBe(false);
    await a.publish(`edgeid/v1/devices/dev-a/cmd-result/${opIds[0]}`, { opId: opIds[0], ok: true });
    const done = await eventually(
      () => api("GET", `commands/${opIds[0]}`).then((x) => JSON.parse(x.text)),
      (c) => c.state === "succeeded",
    );
    expect(done).toMatchObject({
      deviceId: "dev-a",
      command: "rotate",
      createdBy: expect.stringMatching(/^operator:/),
    });

    // Queued by the CLI on the database: the server's poll publishes it.
    const cli = await edgeid([
      "commands",
      "send",
      "ca-update",
      "--device",
      "dev-a",
      "--data",
      server.dataDir,
      "--json",
    ]);
    const batch = JSON.parse(cli.stdout) as { opIds: string[] };
    const update = await a.next((m) => m.topic === "edgeid/v1/devices/dev-a/cmd/ca-update");
    expect(update.body.opId).toBe(batch.opIds[0]);

    const bad = await api("POST", "commands", { command: "reboot", deviceId: "dev-a" });
    expect(bad.status).toBe(400);
    const none = await api("POST", "commands", { command: "rotate" });
    expect(none.status).toBe(400);
    expect(JSON.parse(none.text).error.code).toBe("bad_targets");
  });

  it("revocation closes the live session within 5 s, refuses reconnection and overwrites the retained status", async () => {
    const svcDir = join(work, "observer");
    const svc = await serviceCert(server.dataDir, "observer", svcDir);
    expect(svc.identity).toBe("spiffe://fleet.example/service/observer");
    const observe = async () => {
      const r = await mqttConnect(mqttUrl, {
        clientId: "service:observer",
        cert: svc.cert,
        key: svc.key,
        ca: server.rootPemFile,
      });
      if (!r.ok) throw new Error(r.error);
      clients.push(r.c);
      return r.c;
    };
    const observer = await observe();
    expect(await observer.subscribe(["edgeid/v1/devices/dev-c/status", "edgeid/v1/fleet/events"])).toEqual([1, 1]);

    const c = await connected("dev-c");
    expect(await c.subscribe("edgeid/v1/devices/dev-c/cmd/+")).toEqual([1]);
    await c.publish("edgeid/v1/devices/dev-c/status", statusDoc(3), { retain: true });
    await observer.next((m) => m.body.state === "online" && m.body.session === 3);

    const r = await api("POST", "devices/dev-c/revoke", { reason: "keyCompromise" });
    expect(r.status, r.text).toBe(200);
    const answeredAt = Date.now();
    const told = await c.next((m) => m.topic === "edgeid/v1/devices/dev-c/cmd/revoked");
    expect(told.body.serials).toEqual([expect.any(String)]);
    const closedAt = await Promise.race([c.closed, new Promise<number>((res) => setTimeout(() => res(-1), 5000))]);
    expect(closedAt, "the broker did not close the revoked session within 5 s").toBeGreaterThan(0);
    expect(closedAt - answeredAt).toBeLessThan(5000);

    const revoked = await observer.next((m) => m.body.state === "revoked");
    expect(revoked.body).toMatchObject({ v: 1, session: 3, by: "edgeid" });
    // Retained: a new subscriber gets it too.
    const late = await observe();
    await late.subscribe("edgeid/v1/devices/dev-c/status");
    const retained = await late.next((m) => m.topic.endsWith("dev-c/status"));
    expect(retained.body).toMatchObject({ state: "revoked" });
    expect(retained.retain).toBe(true);

    const again = await device("dev-c");
    expect(again).toMatchObject({ ok: false, error: expect.stringMatching(/not authori[sz]ed/i) });
    await expectDeniedAudit(server.dataDir, "dev-c", "mqtt.connect", "certificate_revoked");
    const shown = JSON.parse((await edgeid(["devices", "show", "dev-c", "--data", server.dataDir, "--json"])).stdout);
    expect(shown.reported).toMatchObject({ state: "revoked", source: "server" });
    expect(shown.mqttSessions[0]).toMatchObject({ closeReason: "revoked" });
  });

  it("the fleet audit runs over the API and publishes its findings", async () => {
    const svcDir = join(work, "observer");
    const r0 = await mqttConnect(mqttUrl, {
      clientId: "service:observer.audit",
      cert: join(svcDir, "observer.pem"),
      key: join(svcDir, "observer.key"),
      ca: server.rootPemFile,
    });
    if (!r0.ok) throw new Error(r0.error);
    clients.push(r0.c);
    await r0.c.subscribe("edgeid/v1/fleet/events");
    // dev-d reports a certificate this server never issued.
    const d = await connected("dev-d");
    await d.publish("edgeid/v1/devices/dev-d/status", statusDoc(1, { cert: { serial: "0badc0ffee" } }), {
      retain: true,
    });
    await eventually(
      () => showDevice(server.dataDir, "dev-d") as Promise<unknown>,
      (x) => (x as { reported?: unknown }).reported !== null,
    );
    const r = await api("POST", "fleet/audit", {});
    expect(r.status, r.text).toBe(200);
    const report = JSON.parse(r.text) as { findings: { check: string; deviceId: string }[] };
    expect(report.findings).toContainEqual(
      expect.objectContaining({ check: "unknown-certificate", deviceId: "dev-d" }),
    );
    const published = await r0.c.next((m) => m.body.type === "audit-finding" && m.body.deviceId === "dev-d");
    expect(published.body.check).toBe("unknown-certificate");
    await r0.c.next((m) => m.body.type === "audit-summary");

    const cli = await edgeid(["audit", "fleet", "--data", server.dataDir, "--json"]);
    expect(JSON.parse(cli.stdout).findings).toContainEqual(
      expect.objectContaining({ check: "unknown-certificate", deviceId: "dev-d" }),
    );
  });

  it("--mqtt-listen off runs no broker", async () => {
    const quiet = await startServer(server.dataDir, work, 0, { mqtt: "off" });
    try {
      expect(quiet.mqttUrl).toBeUndefined();
      expect(quiet.log()).not.toContain("mqtt broker listening");
    } finally {
      await quiet.stop();
    }
  });

  it("serves Prometheus metrics to operators only", async () => {
    const anonymous = await curl(work, `${server.url}/metrics`, { cacert: server.rootPemFile });
    expect(anonymous.status).toBe(401);
    const m = await curl(work, `${server.url}/metrics`, { bearer: adminToken, cacert: server.rootPemFile });
    expect(m.headers["content-type"]).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(m.text).toContain('edgeid_enrollments_total{profile="device",method="token"} 4');
    expect(m.text).toContain('edgeid_revocations_total{kind="revoke",reason="keyCompromise"} 1');
    expect(m.text).toMatch(/edgeid_mqtt_connected_devices [1-9]/);
    expect(m.text).toContain('edgeid_devices{status="active"} 3');
    expect(m.text).toContain("edgeid_certificate_expiry_seconds_count 3");
    expect(m.text).toMatch(/edgeid_denials_total\{action="mqtt.connect",reason="certificate_revoked"\} 1/);
  });
});
