/**
 * What the device agent's end-to-end files share: a real `edgeid serve` process with its
 * embedded MQTT broker on fixed ports (so a test may restart it where the agents expect
 * it), short-lived profiles to rotate in, a manufacturer CA with one gateway's IDevID,
 * and an observer on the broker with the server's own service identity (`edgeid mqtt
 * service-cert --name edgeid`), which records every device message and may send commands.
 * `useAgentHarness()` registers the file's beforeAll/afterAll and returns the harness.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { connect, type MqttClient } from "mqtt";
import { afterAll, beforeAll, expect } from "vitest";
import { AgentStore } from "../../../device-client/src/store.ts";
import { INIT_PROFILES } from "../../../server/config/schema.ts";
import { AGENT_BIN, AGENT_ENV, agentEnrollArgs } from "./agent.ts";
import { issueClientCert, opensslCa, serviceCert } from "./ca.ts";
import { cliCreateToken, edgeid } from "./cli.ts";
import { freePort, makeWorkDir, removeDir, run, sleep } from "./process.ts";
import { addProfiles, cliInitDataDir, startServer, type TestServer } from "./server.ts";

export type { TestServer };

export interface RunningAgent {
  child: ChildProcess;
  log(): string;
  count(msg: string): number;
  stop(): Promise<void>;
}

export interface AgentHarness {
  work: string;
  dataDir: string;
  /** The running server; a test that restarts it assigns the new one here. */
  server: TestServer;
  port: number;
  mqttPort: number;
  mqttUrl: string;
  rootPem: string;
  fingerprint: string;
  observer: MqttClient;
  /** Every JSON message the observer saw on a device topic, in order. */
  messages: { topic: string; body: Record<string, unknown> }[];
}

/** `edgeid-agent <args>` to completion. */
export const agent = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  run(process.execPath, [AGENT_BIN, ...args], { env: { ...AGENT_ENV, ...env }, timeoutMs: 60_000 });

/** `edgeid-agent run --dir <dir>` in the background, its log collected. */
export function startAgent(dir: string, extra: string[] = []): RunningAgent {
  const child = spawn(process.execPath, [AGENT_BIN, "run", "--dir", dir, ...extra], {
    env: AGENT_ENV,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stderr?.setEncoding("utf8").on("data", (c: string) => {
    out += c;
  });
  child.stdout?.setEncoding("utf8").on("data", (c: string) => {
    out += c;
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  return {
    child,
    log: () => out,
    count: (msg) => out.split("\n").filter((l) => l.includes(`"msg":"${msg}"`)).length,
    stop: async () => {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

export async function until(what: string, check: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** The agent directory holds a key and certificate that match, from our CA. */
export function expectValidPair(dir: string): X509Certificate {
  const identity = new AgentStore(dir).loadIdentity(); // throws if the key does not match
  const leaf = identity.chain[0] as X509Certificate;
  const issuing = new AgentStore(dir).loadTrust().find((c) => leaf.checkIssued(c));
  expect(issuing && leaf.verify(issuing.publicKey)).toBe(true);
  return leaf;
}

/** A service identity subscribed to every device topic, recording what it sees. */
function watch(h: AgentHarness, files: { cert: string; key: string }): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const c = connect(h.mqttUrl, {
      clientId: `service:edgeid.observer-${Math.random().toString(36).slice(2, 8)}`,
      cert: readFileSync(files.cert),
      key: readFileSync(files.key),
      ca: h.rootPem,
      reconnectPeriod: 500,
    });
    c.on("message", (topic, payload) => {
      try {
        h.messages.push({ topic, body: JSON.parse(payload.toString()) as Record<string, unknown> });
      } catch {
        // not JSON
      }
    });
    c.once("connect", () => c.subscribe("edgeid/v1/devices/#", { qos: 1 }, (err) => (err ? reject(err) : resolve(c))));
    c.once("error", reject);
  });
}

/** Sets up the server, profiles, IDevID and observer for this file; torn down after it. */
export function useAgentHarness(prefix: string) {
  const h = { messages: [] } as unknown as AgentHarness;

  beforeAll(async () => {
    h.work = await makeWorkDir(prefix);
    const init = await cliInitDataDir(h.work, "example.org");
    h.dataDir = init.dataDir;
    const mfg = await opensslCa(h.work, "mfg", "/O=Acme/CN=Acme Manufacturing CA");
    await run("cp", [mfg.certFile, join(h.dataDir, "acme.pem")]);
    await addProfiles(h.dataDir, {
      device: { validity: "12s", backdate: "0s" },
      slow: { validity: "40s", backdate: "0s" },
      factory: { idevid: { trustBundle: "acme.pem" }, validity: "12s", backdate: "0s" },
      vetted: { approval: "manual", retryAfter: "1s" },
      // The legacy profile as `init` writes it (RSA hierarchy), with a short life to rotate in the test.
      legacy: { ...INIT_PROFILES.legacy, validity: "16s", backdate: "0s", expiryAlerts: [] },
    });
    // Fixed ports, so that the server (and its broker) can be restarted where the agents expect it.
    h.port = await freePort();
    h.mqttPort = await freePort();
    h.server = await startServer(h.dataDir, h.work, h.port, { mqtt: `127.0.0.1:${h.mqttPort}` });
    h.mqttUrl = h.server.mqttUrl as string;
    h.rootPem = readFileSync(h.server.rootPemFile, "utf8");
    h.fingerprint = new X509Certificate(h.rootPem).fingerprint256.replace(/:/g, "").toLowerCase();
    // The server's own service identity: it reads every device topic and may send any command.
    h.observer = await watch(h, await serviceCert(h.dataDir, "edgeid", join(h.work, "svc")));
    // The IDevID of one gateway, made by the "manufacturer" with openssl.
    await issueClientCert(h.work, mfg, "idevid-sn77", "/O=Acme/CN=Acme Gateway/serialNumber=SN-77");
  }, 90_000);

  afterAll(async () => {
    h.observer?.end(true);
    await h.server?.stop();
    if (h.work) await removeDir(h.work);
  });

  /** `edgeid-agent enroll` for a device with a token, into `<work>/agent-<id>`. */
  const enrollArgs = (deviceId: string, token: string, extra: string[] = []): string[] =>
    agentEnrollArgs(h.server, h.fingerprint, deviceId, token, join(h.work, `agent-${deviceId}`), extra);

  return {
    h,
    enrollArgs,
    async enrollAgent(deviceId: string, extra: string[] = [], profile?: string): Promise<string> {
      const { token } = await cliCreateToken(h.dataDir, deviceId, profile ? { profile } : {});
      const r = await agent(enrollArgs(deviceId, token, extra));
      expect(r.code, r.stderr).toBe(0);
      return join(h.work, `agent-${deviceId}`);
    },
    /** The device's MQTT connections as the broker recorded them (newest first, up to 5). */
    async mqttSessions(deviceId: string): Promise<{ serial: string; closeReason: string | null }[]> {
      return JSON.parse((await edgeid(["devices", "show", deviceId, "--data", h.dataDir, "--json"])).stdout)
        .mqttSessions;
    },
    statusOf: (deviceId: string) =>
      h.messages.filter((m) => m.topic === `edgeid/v1/devices/${deviceId}/status`).map((m) => m.body),
    eventsOf: (deviceId: string, type: string) =>
      h.messages
        .filter((m) => m.topic === `edgeid/v1/devices/${deviceId}/events` && m.body.type === type)
        .map((m) => m.body),
  };
}
