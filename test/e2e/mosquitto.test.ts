/**
 * An external broker: a real `mosquitto` started with the configuration that
 * `edgeid mqtt mosquitto-config` writes, on a free port, and `edgeid serve` using it.
 * Status flows into the database through Mosquitto; its ACL keeps devices on their own
 * topics; commands go out through it; a revocation rewrites the CRL file, Mosquitto is
 * told to reload it, and the revoked certificate is refused at its next connection.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mqttConnect, type TestClient } from "../support/mqtt-client.ts";
import { serviceCert } from "./support/ca.ts";
import { edgeid } from "./support/cli.ts";
import { curl } from "./support/curl.ts";
import { enrollDevice } from "./support/enroll.ts";
import { type RunningMosquitto, startMosquitto } from "./support/mosquitto.ts";
import { normalizeSerial, openssl } from "./support/openssl.ts";
import { eventually, makeWorkDir, removeDir, run } from "./support/process.ts";
import { cliInitDataDir, startServer, type TestServer } from "./support/server.ts";

let work: string;
let adminToken: string;
let server: TestServer;
let broker: RunningMosquitto | undefined;
let url: string;
let files: Record<string, string>;
const devices: Record<string, { cert: string; key: string; serial: string }> = {};
const clients: TestClient[] = [];

const show = async (id: string) =>
  JSON.parse((await edgeid(["devices", "show", id, "--data", server.dataDir, "--json"])).stdout) as {
    reported: { state: string; session: number; source: string } | null;
  };

async function connect(id: string) {
  const d = devices[id] as { cert: string; key: string };
  const r = await mqttConnect(url, { clientId: id, cert: d.cert, key: d.key, ca: files.ca as string, timeoutMs: 5000 });
  if (r.ok) clients.push(r.c);
  return r;
}

beforeAll(async () => {
  work = await makeWorkDir("mosquitto");
  ({ adminToken } = await cliInitDataDir(work, "mosq.example"));
  const dataDir = join(work, "data");
  const mosquitto = await startMosquitto(dataDir, work, ["observer"]);
  ({ url, files } = mosquitto);
  broker = mosquitto;
  expect(url).toMatch(/^mqtts:\/\/127\.0\.0\.1:\d+$/);

  // No --mqtt-listen: with an external broker configured, the embedded one stays off.
  server = await startServer(dataDir, work, 0, { mqtt: "external" });
  expect(server.mqttUrl).toBeUndefined();
  await eventually(
    async () => server.log(),
    (log) => log.includes("connected to the external mqtt broker"),
  );
  for (const id of ["m-1", "m-2"]) devices[id] = await enrollDevice(server, work, id);
}, 90_000);

afterAll(async () => {
  await Promise.allSettled(clients.map((c) => c.client.end(true)));
  await server?.stop();
  await broker?.stop();
  await removeDir(work);
});

describe("Mosquitto as the external broker", () => {
  it("writes a configuration Mosquitto runs with: our CA, certificate identities, ACL, CRL", async () => {
    const conf = await readFile(files.config as string, "utf8");
    for (const line of [
      "require_certificate true",
      "use_identity_as_username true",
      `crlfile ${files.crl}`,
      `cafile ${files.ca}`,
      "allow_anonymous false",
    ]) {
      expect(conf).toContain(line);
    }
    const acl = await readFile(join(work, "broker", "acl"), "utf8");
    expect(acl).toContain("pattern write edgeid/v1/devices/%u/status");
    expect(acl).toContain("pattern read edgeid/v1/devices/%u/cmd/+");
    expect(acl).toContain("user service:observer\ntopic read edgeid/v1/#");
    // The CRL is our issuing CA's, valid now, and verifies with openssl.
    const crl = await openssl(["crl", "-in", files.crl as string, "-CAfile", files.ca as string, "-noout"]);
    expect(crl.stderr + crl.stdout).toContain("verify OK");
  });

  it("status flows through Mosquitto into the database; the ACL keeps devices on their own topics", async () => {
    const r = await connect("m-1");
    if (!r.ok) throw new Error(`${r.error}\n${broker?.log()}`);
    const m1 = r.c;
    // Another device's topic: Mosquitto drops it (MQTT 3.1.1 has no refusal to send).
    await m1.publish(
      "edgeid/v1/devices/m-2/status",
      { v: 1, state: "online", session: 9, ts: new Date().toISOString() },
      {
        retain: true,
      },
    );
    await m1.publish(
      "edgeid/v1/devices/m-1/status",
      {
        v: 1,
        state: "online",
        session: 2,
        ts: new Date().toISOString(),
        cert: { serial: devices["m-1"]?.serial },
        agent: { version: "mosq-test" },
      },
      { retain: true },
    );
    const shown = await eventually(
      () => show("m-1"),
      (d) => d.reported?.state === "online",
    );
    expect(shown.reported).toMatchObject({ session: 2, source: "device" });
    await m1.publish("edgeid/v1/devices/m-1/events", { id: "mq-1", type: "rotated", at: new Date().toISOString() });
    await eventually(
      () => edgeid(["devices", "show", "m-1", "--data", server.dataDir, "--json"]).then((x) => JSON.parse(x.stdout)),
      (d) => d.events.length === 1,
    );
    // Delivered in order after the forged status: that one never arrived.
    expect((await show("m-2")).reported).toBeNull();
  });

  it("commands go out through Mosquitto and results come back", async () => {
    const m1 = clients[0] as TestClient;
    expect(await m1.subscribe("edgeid/v1/devices/m-1/cmd/+")).toEqual([1]);
    const r = await curl(work, `${server.url}/api/v1/commands`, {
      method: "POST",
      bearer: adminToken,
      cacert: server.rootPemFile,
      contentType: "application/json",
      body: JSON.stringify({ command: "rotate", deviceId: "m-1" }),
    });
    expect(r.status, r.text).toBe(202);
    const opId = (JSON.parse(r.text) as { opIds: string[] }).opIds[0] as string;
    const cmd = await m1.next((m) => m.topic === "edgeid/v1/devices/m-1/cmd/rotate");
    expect(cmd.body.opId).toBe(opId);
    await m1.publish(`edgeid/v1/devices/m-1/cmd-result/${opId}`, { opId, ok: true });
    await eventually(
      () => edgeid(["commands", "show", opId, "--data", server.dataDir, "--json"]).then((x) => JSON.parse(x.stdout)),
      (c) => c.state === "succeeded",
    );
  });

  it("revocation: the CRL file is rewritten, Mosquitto reloads it, and the certificate is refused", async () => {
    const before = await connect("m-2");
    expect(before.ok).toBe(true);
    if (before.ok) await before.c.end();
    const serial = devices["m-2"]?.serial as string;

    const r = await curl(work, `${server.url}/api/v1/devices/m-2/revoke`, {
      method: "POST",
      bearer: adminToken,
      cacert: server.rootPemFile,
      contentType: "application/json",
      body: JSON.stringify({ reason: "keyCompromise" }),
    });
    expect(r.status, r.text).toBe(200);
    // The server writes the new CRL and signals the broker.
    await eventually(
      async () =>
        (await openssl(["crl", "-in", files.crl as string, "-noout", "-text"])).stdout
          .replace(/\s+/g, "")
          .toLowerCase(),
      (text) => text.includes(`serialnumber:${normalizeSerial(serial)}`) || text.includes(`serialnumber:0${serial}`),
    );
    await eventually(
      async () => server.log(),
      (log) => log.includes("told the mqtt broker to reload its CRL"),
    );
    // Reload is asynchronous in the broker: connect until it refuses (or give up).
    const refused = await eventually(
      () => connect("m-2"),
      (x) => !x.ok,
    );
    expect(refused.ok).toBe(false);
    // A certificate that is not revoked still connects after the reload.
    const still = await connect("m-1");
    expect(still.ok).toBe(true);

    // The retained status now says revoked, written by the server; read with mosquitto_sub
    // as a reader service (--reader observer in the generated ACL).
    const svc = await serviceCert(server.dataDir, "observer", join(work, "svc"));
    const sub = await run("mosquitto_sub", [
      "-h",
      "127.0.0.1",
      "-p",
      new URL(url).port,
      "--cafile",
      files.ca as string,
      "--cert",
      svc.cert,
      "--key",
      svc.key,
      "-i",
      "service:observer",
      "-t",
      "edgeid/v1/devices/m-2/status",
      "-C",
      "1",
      "-W",
      "10",
    ]);
    expect(sub.code, sub.stderr).toBe(0);
    expect(JSON.parse(sub.stdout)).toMatchObject({ v: 1, state: "revoked", by: "edgeid" });
    expect((await show("m-2")).reported).toMatchObject({ state: "revoked", source: "server" });
  });
});
