/**
 * `edgeid bridge`: a real Mosquitto configured for the deployment's CA, a server with
 * no broker of its own (as on Workers: `--mqtt-listen off`, no external broker), and
 * the bridge as a child process relaying device messages to the operator API. Status
 * and events arrive; what devices publish while the bridge is down arrives once it is
 * back (the broker kept it in the bridge's persistent session: nothing is acknowledged
 * before the server took it).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mqttConnect, type TestClient } from "../support/mqtt-client.ts";
import { serviceCert } from "./support/ca.ts";
import { edgeid } from "./support/cli.ts";
import { enrollDevice } from "./support/enroll.ts";
import { type RunningMosquitto, startMosquitto } from "./support/mosquitto.ts";
import { EDGEID_BIN, eventually, makeWorkDir, removeDir } from "./support/process.ts";
import { cliInitDataDir, startServer, type TestServer } from "./support/server.ts";

let work: string;
let server: TestServer;
let broker: RunningMosquitto | undefined;
let url: string;
let files: Record<string, string>;
let bridgeArgs: string[];
let bridge: { child: ChildProcess; log: () => string } | undefined;
let device: { cert: string; key: string; serial: string };
let client: TestClient | undefined;

function startBridgeProcess(): { child: ChildProcess; log: () => string } {
  const child = spawn(process.execPath, [EDGEID_BIN, "bridge", ...bridgeArgs], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout?.on("data", (c: Buffer) => {
    out += c.toString();
  });
  child.stderr?.on("data", (c: Buffer) => {
    out += c.toString();
  });
  return { child, log: () => out };
}

async function stopBridge(): Promise<void> {
  const b = bridge;
  bridge = undefined;
  if (!b || b.child.exitCode !== null) return;
  const exited = new Promise((r) => b.child.once("exit", r));
  b.child.kill("SIGTERM");
  await exited;
}

const show = async (id: string) =>
  JSON.parse((await edgeid(["devices", "show", id, "--data", server.dataDir, "--json"])).stdout) as {
    reported: { state: string; session: number; source: string } | null;
    events: { id: string; type: string }[];
  };

beforeAll(async () => {
  work = await makeWorkDir("bridge");
  const { adminToken, dataDir } = await cliInitDataDir(work, "bridge.example");
  broker = await startMosquitto(dataDir, work, ["bridge"]);
  ({ url, files } = broker);
  // The deployment itself has no broker (as a Worker has none): only the bridge carries messages.
  const configFile = join(dataDir, "edgeid.json");
  const config = JSON.parse(await readFile(configFile, "utf8")) as { mqtt?: Record<string, unknown> };
  delete config.mqtt;
  await writeFile(configFile, `${JSON.stringify(config, null, 2)}\n`);

  server = await startServer(dataDir, work, 0, { mqtt: "off" });
  device = await enrollDevice(server, work, "br-1");
  const svc = await serviceCert(dataDir, "bridge", join(work, "svc"));
  const tokenFile = join(work, "operator-token");
  await writeFile(tokenFile, adminToken, { mode: 0o600 });
  bridgeArgs = [
    "--mqtt-url",
    url,
    "--cert",
    svc.cert,
    "--key",
    svc.key,
    "--ca",
    files.ca as string,
    "--server",
    server.url,
    "--token-file",
    tokenFile,
    "--cacert",
    server.rootPemFile,
    "--flush-ms",
    "100",
  ];
  bridge = startBridgeProcess();
  await eventually(
    async () => bridge?.log() ?? "",
    (log) => log.includes("bridge connected to the mqtt broker"),
  );
  const r = await mqttConnect(url, {
    clientId: "br-1",
    cert: device.cert,
    key: device.key,
    ca: files.ca as string,
    timeoutMs: 5000,
  });
  if (!r.ok) throw new Error(`${r.error}\n${broker?.log()}`);
  client = r.c;
}, 90_000);

afterAll(async () => {
  await client?.end();
  await stopBridge();
  await server?.stop();
  await broker?.stop();
  await removeDir(work);
});

const status = (session: number) => ({
  v: 1,
  state: "online",
  session,
  ts: new Date().toISOString(),
  cert: { serial: device.serial },
  agent: { version: "bridge-test" },
});

describe("edgeid bridge", () => {
  it("relays a device's status and events to a server with no broker", async () => {
    const c = client as TestClient;
    await c.publish("edgeid/v1/devices/br-1/status", status(1), { retain: true });
    await c.publish("edgeid/v1/devices/br-1/events", { id: "br-ev-1", type: "rotated", at: new Date().toISOString() });
    const shown = await eventually(
      () => show("br-1"),
      (d) => d.reported?.session === 1 && d.events.some((e) => e.id === "br-ev-1"),
    );
    expect(shown.reported).toMatchObject({ state: "online", source: "device" });
  });

  it("delivers what was published while the bridge was down once it is back", async () => {
    await stopBridge();
    const c = client as TestClient;
    await c.publish("edgeid/v1/devices/br-1/status", status(2), { retain: true });
    await c.publish("edgeid/v1/devices/br-1/events", { id: "br-ev-2", type: "rotated", at: new Date().toISOString() });
    // Published (QoS 1, acknowledged by the broker) while the bridge, the server's only
    // way in, has exited: the server has the first session's status still.
    expect((await show("br-1")).reported?.session).toBe(1);
    bridge = startBridgeProcess();
    const shown = await eventually(
      () => show("br-1"),
      (d) => d.reported?.session === 2 && d.events.some((e) => e.id === "br-ev-2"),
    );
    expect(shown.events.filter((e) => e.id === "br-ev-2")).toHaveLength(1);
  });
});
