/**
 * The device agent (device-client/) against a real `edgeid serve` process and its
 * embedded MQTT broker: first boot with a token and with an IDevID, repeated rotation
 * with a short lifetime reported over MQTT, SIGKILL at every step of a rotation, the
 * server down for a while, the broker away (events queued, then delivered), and
 * revocation. The test watches the broker with the server's own service identity
 * (`edgeid mqtt service-cert --name edgeid`), which may also send commands.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect, type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentStore } from "../../device-client/src/store.ts";
import { INIT_PROFILES } from "../../server/config/schema.ts";
import { mqttConnect } from "../support/mqtt-client.ts";
import { AGENT_BIN, AGENT_ENV, agentEnrollArgs } from "./support/agent.ts";
import { issueClientCert, opensslCa, serviceCert } from "./support/ca.ts";
import { cliCreateToken, edgeid, showDevice } from "./support/cli.ts";
import { enrollDevice } from "./support/enroll.ts";
import { makeWorkDir, removeDir, run, sleep } from "./support/process.ts";
import { addProfiles, cliInitDataDir, startServer, type TestServer } from "./support/server.ts";

let work: string;
let dataDir: string;
let server: TestServer;
let port: number;
let mqttPort: number;
let mqttUrl: string;
let rootPem: string;
let observerFiles: { cert: string; key: string };
let fingerprint: string;
let observer: MqttClient;
const messages: { topic: string; body: Record<string, unknown> }[] = [];

const agent = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  run(process.execPath, [AGENT_BIN, ...args], { env: { ...AGENT_ENV, ...env }, timeoutMs: 60_000 });

interface RunningAgent {
  child: ChildProcess;
  log(): string;
  count(msg: string): number;
  stop(): Promise<void>;
}

function startAgent(dir: string, extra: string[] = []): RunningAgent {
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

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/** `edgeid-agent enroll` for a device with a token, into `<work>/agent-<id>`. */
function enrollArgs(deviceId: string, token: string, extra: string[] = []): string[] {
  return agentEnrollArgs(server, fingerprint, deviceId, token, join(work, `agent-${deviceId}`), extra);
}

async function enrollAgent(deviceId: string, extra: string[] = [], profile?: string): Promise<string> {
  const { token } = await cliCreateToken(dataDir, deviceId, profile ? { profile } : {});
  const r = await agent(enrollArgs(deviceId, token, extra));
  expect(r.code, r.stderr).toBe(0);
  return join(work, `agent-${deviceId}`);
}

/** The agent directory holds a key and certificate that match, from our CA. */
function expectValidPair(dir: string): X509Certificate {
  const identity = new AgentStore(dir).loadIdentity(); // throws if the key does not match
  const leaf = identity.chain[0] as X509Certificate;
  const issuing = new AgentStore(dir).loadTrust().find((c) => leaf.checkIssued(c));
  expect(issuing && leaf.verify(issuing.publicKey)).toBe(true);
  return leaf;
}

/** A service identity subscribed to every device topic, recording what it sees. */
function watch(url: string): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const c = connect(url, {
      clientId: `service:edgeid.observer-${Math.random().toString(36).slice(2, 8)}`,
      cert: readFileSync(observerFiles.cert),
      key: readFileSync(observerFiles.key),
      ca: rootPem,
      reconnectPeriod: 500,
    });
    c.on("message", (topic, payload) => {
      try {
        messages.push({ topic, body: JSON.parse(payload.toString()) as Record<string, unknown> });
      } catch {
        // not JSON
      }
    });
    c.once("connect", () => c.subscribe("edgeid/v1/devices/#", { qos: 1 }, (err) => (err ? reject(err) : resolve(c))));
    c.once("error", reject);
  });
}

/** The device's MQTT connections as the broker recorded them (newest first, up to 5). */
async function mqttSessions(deviceId: string): Promise<{ serial: string; closeReason: string | null }[]> {
  return JSON.parse((await edgeid(["devices", "show", deviceId, "--data", dataDir, "--json"])).stdout).mqttSessions;
}

const statusOf = (deviceId: string) =>
  messages.filter((m) => m.topic === `edgeid/v1/devices/${deviceId}/status`).map((m) => m.body);
const eventsOf = (deviceId: string, type: string) =>
  messages.filter((m) => m.topic === `edgeid/v1/devices/${deviceId}/events` && m.body.type === type).map((m) => m.body);

beforeAll(async () => {
  work = await makeWorkDir("edgeid-agent-");
  const init = await cliInitDataDir(work, "example.org");
  dataDir = init.dataDir;
  const mfg = await opensslCa(work, "mfg", "/O=Acme/CN=Acme Manufacturing CA");
  await run("cp", [mfg.certFile, join(dataDir, "acme.pem")]);
  await addProfiles(dataDir, {
    device: { validity: "12s", backdate: "0s" },
    slow: { validity: "40s", backdate: "0s" },
    factory: { idevid: { trustBundle: "acme.pem" }, validity: "12s", backdate: "0s" },
    vetted: { approval: "manual", retryAfter: "1s" },
    // The legacy profile as `init` writes it (RSA hierarchy), with a short life to rotate in the test.
    legacy: { ...INIT_PROFILES.legacy, validity: "16s", backdate: "0s", expiryAlerts: [] },
  });
  // Fixed ports, so that the server (and its broker) can be restarted where the agents expect it.
  const probe = await startServer(dataDir, work);
  port = Number(new URL(probe.url).port);
  mqttPort = Number(new URL(probe.mqttUrl as string).port);
  await probe.stop();
  server = await startServer(dataDir, work, port, { mqtt: `127.0.0.1:${mqttPort}` });
  mqttUrl = server.mqttUrl as string;
  rootPem = readFileSync(server.rootPemFile, "utf8");
  fingerprint = new X509Certificate(rootPem).fingerprint256.replace(/:/g, "").toLowerCase();
  // The server's own service identity: it reads every device topic and may send any command.
  observerFiles = await serviceCert(dataDir, "edgeid", join(work, "svc"));
  observer = await watch(mqttUrl);
  // The IDevID of one gateway, made by the "manufacturer" with openssl.
  await issueClientCert(work, mfg, "idevid-sn77", "/O=Acme/CN=Acme Gateway/serialNumber=SN-77");
}, 90_000);

afterAll(async () => {
  observer?.end(true);
  await server?.stop();
  await removeDir(work);
});

describe("edgeid-agent", () => {
  it("refuses a server whose CA does not match the pinned fingerprint, and sends no token", async () => {
    const { token } = await cliCreateToken(dataDir, "gw-pin");
    const r = await agent([
      "enroll",
      "--server",
      server.url,
      "--ca-fingerprint",
      `sha256:${"ab".repeat(32)}`,
      "--device",
      "gw-pin",
      "--token",
      token,
      "--dir",
      join(work, "agent-pin"),
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("do not match the pinned fingerprint");
    const shown = JSON.parse((await edgeid(["devices", "show", "gw-pin", "--data", dataDir, "--json"])).stdout);
    expect(shown.tokens[0].usedAt).toBeNull();
  });

  it("runs in the legacy profile: an RSA key, the RSA chain (on TLS too), renewal at the same fraction", async () => {
    // Pinned to the RSA root only, as an appliance that cannot verify ECDSA would be.
    const rsaRoot = join(work, "rsa-root.pem");
    writeFileSync(rsaRoot, (await edgeid(["ca", "export", "--rsa", "--data", dataDir])).stdout);
    const { token } = await cliCreateToken(dataDir, "plc-agent", { profile: "legacy" });
    const dir = join(work, "agent-plc-agent");
    const r = await agent([
      "enroll",
      "--server",
      server.url,
      "--ca-file",
      rsaRoot,
      "--device",
      "plc-agent",
      "--token",
      token,
      "--dir",
      dir,
      "--label",
      "legacy",
      "--key-type",
      "RSA-2048",
      "--renew-fraction",
      "0.5",
      "--mqtt",
      mqttUrl,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const first = expectValidPair(dir);
    expect(first.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect(first.issuer).toContain("CN=edgeid Issuing CA RSA");
    // Its trust is the RSA hierarchy alone: every TLS connection it made got the RSA chain.
    const trust = new AgentStore(dir).loadTrust();
    expect(trust.length).toBe(2);
    expect(trust.every((c) => c.publicKey.asymmetricKeyType === "rsa")).toBe(true);
    const a = startAgent(dir);
    try {
      await until("two rotations", () => a.count("renewed") >= 2, 45_000);
      const now = expectValidPair(dir);
      expect(now.serialNumber).not.toBe(first.serialNumber);
      expect(now.issuer).toBe(first.issuer);
      expect(now.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
      await until("an RSA status over MQTT", () =>
        statusOf("plc-agent").some((s) => (s.cert as { serial: string }).serial === now.serialNumber.toLowerCase()),
      );
      const status = statusOf("plc-agent").findLast(
        (s) => (s.cert as { serial: string }).serial === now.serialNumber.toLowerCase(),
      ) as { cert: { keyAlg: string }; nextRenewAt: string };
      expect(status.cert.keyAlg).toBe("RSA-2048");
      // Renewal at half the life (less up to 5 % jitter), as for any profile. The agent
      // counts the life from the certificate's arrival, within a second or two of notBefore
      // (whole seconds, no backdate in this profile).
      const notBefore = Date.parse(now.validFrom);
      const life = Date.parse(now.validTo) - notBefore;
      const next = Date.parse(status.nextRenewAt);
      expect(next).toBeLessThanOrEqual(notBefore + 2000 + 0.5 * life);
      expect(next).toBeGreaterThanOrEqual(notBefore + 0.45 * (life - 2000));
    } finally {
      await a.stop();
    }
    const shown = JSON.parse((await edgeid(["devices", "show", "plc-agent", "--data", dataDir, "--json"])).stdout);
    expect(shown.profile).toBe("legacy");
    expect(shown.certificates.every((c: { issuer: string }) => c.issuer === "issuing-rsa")).toBe(true);
    expect(shown.certificates.filter((c: { method: string }) => c.method === "reenroll").length).toBeGreaterThanOrEqual(
      2,
    );
  }, 60_000); // two renewals of a 16 s certificate (~22 s) plus RSA keys and enrollment: its own wait allows 45 s

  it("enrolls with a token, rotates with a new key again and again, and reports over MQTT", async () => {
    const hookLog = join(work, "gw-rot-hook.log");
    const dir = await enrollAgent("gw-rot", [
      "--mqtt",
      mqttUrl,
      "--renew-fraction",
      "0.5",
      "--hook",
      `echo "$EDGEID_DEVICE $EDGEID_CERT" >> ${hookLog}`,
    ]);
    expect(statSync(join(dir, "identity.pem")).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "key.pem")).mode & 0o777).toBe(0o600);
    const first = expectValidPair(dir);
    const a = startAgent(dir);
    try {
      await until("three rotations", () => a.count("renewed") >= 3, 45_000);
      const now = expectValidPair(dir);
      expect(now.serialNumber).not.toBe(first.serialNumber);
      expect(now.publicKey.export({ format: "pem", type: "spki" })).not.toBe(
        first.publicKey.export({ format: "pem", type: "spki" }),
      );
      await until("the status of the latest certificate", () =>
        statusOf("gw-rot").some((s) => (s.cert as { serial: string }).serial === now.serialNumber.toLowerCase()),
      );
      const status = statusOf("gw-rot").at(-1) as Record<string, unknown>;
      expect(status).toMatchObject({ v: 1, state: "online", agent: { version: "0.1.0" } });
      expect(status).toHaveProperty("cert.keyAlg", "P-256");
      expect(status).toHaveProperty("lastRenew.ok", true);
      expect(typeof status.nextRenewAt).toBe("string");
      const rotated = eventsOf("gw-rot", "rotated");
      expect(rotated.length).toBeGreaterThanOrEqual(3);
      expect(new Set(rotated.map((e) => e.serial)).size).toBe(rotated.length);
      // Sessions increase, and the broker saw the agent come back with each new certificate.
      const sessions = rotated.map((e) => e.session as number);
      expect([...sessions].sort((x, y) => x - y)).toEqual(sessions);
      const seen = new Set((await mqttSessions("gw-rot")).map((m) => m.serial));
      expect(seen.size).toBeGreaterThanOrEqual(3);
      // Each new certificate was confirmed by the broker's CONNACK, which deleted the previous slot.
      await until("three confirmations", () => a.count("new certificate confirmed; previous identity removed") >= 3);
      // The hook ran after each rotation, with the paths of the new files.
      const hooked = readFileSync(hookLog, "utf8").trim().split("\n");
      expect(hooked.length).toBeGreaterThanOrEqual(3);
      expect(hooked[0]).toBe(`gw-rot ${join(dir, "cert.pem")}`);
    } finally {
      await a.stop();
    }
    await until("offline", () => statusOf("gw-rot").at(-1)?.state === "offline");
    const shown = JSON.parse((await edgeid(["devices", "show", "gw-rot", "--data", dataDir, "--json"])).stdout);
    expect(shown.certificates.filter((c: { method: string }) => c.method === "reenroll").length).toBeGreaterThanOrEqual(
      3,
    );
  }, 90_000);

  it("answers MQTT commands: rotate renews at once, ca-update refreshes the bundle, others are refused", async () => {
    const dir = await enrollAgent("gw-cmd", ["--mqtt", mqttUrl, "--renew-fraction", "0.9"]);
    const a = startAgent(dir);
    try {
      await until("online", () => statusOf("gw-cmd").some((s) => s.state === "online"));
      await until("the command subscription", () => a.log().includes("mqtt connected"));
      await sleep(300);
      // Through the server's command outbox, as an operator sends them.
      const queue = async (cmd: "rotate" | "ca-update") => {
        const r = await edgeid(["commands", "send", cmd, "--device", "gw-cmd", "--data", dataDir, "--json"]);
        return (JSON.parse(r.stdout) as { opIds: string[] }).opIds[0] as string;
      };
      const recorded = async (opId: string) =>
        JSON.parse((await edgeid(["commands", "show", opId, "--data", dataDir, "--json"])).stdout).state as string;
      const result = (opId: string) => messages.find((m) => m.topic === `edgeid/v1/devices/gw-cmd/cmd-result/${opId}`);
      const rotate = await queue("rotate");
      await until("the rotate result", () => result(rotate) !== undefined);
      expect(result(rotate)?.body).toMatchObject({ opId: rotate, ok: true });
      await until("the rotation", () => a.count("renewed") >= 1, 15_000);
      await until("the result recorded", async () => (await recorded(rotate)) === "succeeded");
      // Sent while the agent may be reconnecting with its new certificate: the persistent
      // session keeps it for the agent.
      const caUpdate = await queue("ca-update");
      await until("the ca-update result", () => result(caUpdate) !== undefined);
      expect(result(caUpdate)?.body).toMatchObject({ ok: true });
      // A command the server never sends, published with the server's identity.
      observer.publish(
        "edgeid/v1/devices/gw-cmd/cmd/selfdestruct",
        JSON.stringify({ opId: "op-x", issuedAt: new Date().toISOString() }),
        { qos: 1 },
      );
      await until("the refusal", () => result("op-x") !== undefined);
      expect(result("op-x")?.body).toMatchObject({ ok: false, error: "unknown command selfdestruct" });
    } finally {
      await a.stop();
    }
  }, 60_000);

  it("waits out 202 Retry-After at first boot until an operator approves", async () => {
    const { token } = await cliCreateToken(dataDir, "gw-vet", { profile: "vetted" });
    const dir = join(work, "agent-gw-vet");
    const enrolling = agent(enrollArgs("gw-vet", token, ["--label", "vetted"]));
    let requestId: string | undefined;
    await until("the pending request", async () => {
      const listed = (await edgeid(["enrollments", "list", "--data", dataDir, "--json"])).stdout;
      requestId = listed
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { id: string; deviceId: string })
        .find((p) => p.deviceId === "gw-vet")?.id;
      return requestId !== undefined;
    });
    await sleep(1500); // at least one more 202 while it waits
    await edgeid(["enrollments", "approve", requestId as string, "--data", dataDir]);
    const r = await enrolling;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain("enrollment pending approval");
    expect(expectValidPair(dir).subject).toBe("CN=gw-vet");
  }, 60_000);

  it("enrolls with a manufacturer certificate (IDevID) instead of a token", async () => {
    const dir = join(work, "agent-sn77");
    const r = await agent([
      "enroll",
      "--server",
      server.url,
      "--ca-file",
      server.rootPemFile,
      "--device",
      "SN-77",
      "--label",
      "factory",
      "--idevid-cert",
      join(work, "idevid-sn77.pem"),
      "--idevid-key",
      join(work, "idevid-sn77.key"),
      "--key-type",
      "P-384",
      "--dir",
      dir,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const leaf = expectValidPair(dir);
    expect(leaf.subject).toBe("CN=SN-77");
    const status = JSON.parse((await agent(["status", "--dir", dir, "--json"])).stdout);
    expect(status).toMatchObject({ deviceId: "SN-77", keyAlg: "P-384", state: "online" });
    // It keeps where its IDevID is: the rung it enrolls with again if its identity is ever lost.
    expect(new AgentStore(dir).loadConfig().idevid).toEqual({
      cert: join(work, "idevid-sn77.pem"),
      key: join(work, "idevid-sn77.key"),
    });
    const renewed = await agent(["renew", "--now", "--dir", dir]);
    expect(renewed.stdout, renewed.stderr).toMatch(/^renewed: /);
  });

  it("always holds a valid matching pair when killed at any step of a rotation, and finishes it on restart", async () => {
    const dir = await enrollAgent("gw-crash");
    let before = expectValidPair(dir);
    for (const step of [
      "key-generated",
      "response-received",
      "previous-saved",
      "identity-staged",
      "identity-renamed",
      "identity-synced",
      "exported",
    ]) {
      const killed = await agent(["renew", "--now", "--dir", dir], { EDGEID_AGENT_CRASH_AT: step });
      expect([step, killed.signal]).toEqual([step, "SIGKILL"]);
      const held = expectValidPair(dir);
      const switched = held.serialNumber !== before.serialNumber;
      // Up to the rename the old pair stands; from it on, the new one.
      expect([step, switched]).toEqual([step, ["identity-renamed", "identity-synced", "exported"].includes(step)]);
      const again = await agent(["renew", "--now", "--dir", dir]);
      expect(again.code, `${step}: ${again.stderr}`).toBe(0);
      const after = expectValidPair(dir);
      expect(after.serialNumber).not.toBe(held.serialNumber);
      // The exported copies match the identity again.
      expect(new X509Certificate(readFileSync(join(dir, "cert.pem"))).serialNumber).toBe(after.serialNumber);
      before = after;
    }
  }, 120_000);

  it("backs off while the server is down and renews when it is back", async () => {
    const dir = await enrollAgent("gw-down", ["--label", "slow", "--renew-fraction", "0.15"], "slow");
    const a = startAgent(dir);
    try {
      await server.stop();
      await until("two failed attempts", () => a.count("renewal failed; backing off") >= 2, 30_000);
      expect(a.count("renewed")).toBe(0);
      server = await startServer(dataDir, work, port, { mqtt: `127.0.0.1:${mqttPort}` });
      await until("the renewal", () => a.count("renewed") >= 1, 30_000);
      const waits = a
        .log()
        .split("\n")
        .filter((l) => l.includes("backing off"))
        .map((l) => (JSON.parse(l) as { waitMs: number }).waitMs);
      // Full jitter under a cap of 1/8 of the ~34 s left: never longer than that.
      for (const w of waits) expect(w).toBeLessThanOrEqual(40_000 / 8);
    } finally {
      await a.stop();
    }
    expectValidPair(dir);
  }, 90_000);

  it("queues events while the broker is away and delivers them when it comes back", async () => {
    // A port where no broker listens yet; a second server on the same database brings one up there later.
    const spare = await startServer(dataDir, work, 0);
    const brokerPort = Number(new URL(spare.mqttUrl as string).port);
    await spare.stop();
    const dir = await enrollAgent("gw-queue", ["--mqtt", `mqtts://127.0.0.1:${brokerPort}`]);
    const a = startAgent(dir);
    let late: TestServer | undefined;
    try {
      await sleep(500);
      a.child.kill("SIGUSR1"); // renew now, whatever the broker does
      await until("a renewal without a broker", () => a.count("renewed") >= 1, 20_000);
      // The "renewed" log line comes just before the event is written to the queue file.
      const queueFile = join(dir, "events.jsonl");
      await until("the rotated event queued on disk", () =>
        existsSync(queueFile) ? readFileSync(queueFile, "utf8").includes('"type":"rotated"') : false,
      );
      late = await startServer(dataDir, work, 0, { mqtt: `127.0.0.1:${brokerPort}` });
      await until("an empty queue", () => readFileSync(join(dir, "events.jsonl"), "utf8") === "", 20_000);
      // Ingested into the inventory by the broker's server.
      await until("the queued event in the inventory", async () => {
        const shown = JSON.parse((await edgeid(["devices", "show", "gw-queue", "--data", dataDir, "--json"])).stdout);
        return shown.events.some((e: { type: string }) => e.type === "rotated");
      });
    } finally {
      await a.stop();
      await late?.stop();
    }
  }, 60_000);

  it("the broker closes a connection whose certificate expires (a device that did not rotate)", async () => {
    const d = await enrollDevice(server, work, "gw-expire");
    const r = await mqttConnect(mqttUrl, { clientId: "gw-expire", cert: d.cert, key: d.key, ca: server.rootPemFile });
    if (!r.ok) throw new Error(r.error);
    const notAfter = new X509Certificate(readFileSync(d.cert)).validTo;
    const closedAt = await r.c.closed;
    // Closed at the certificate's expiry (12 s lifetime here), not before.
    expect(closedAt).toBeGreaterThanOrEqual(Date.parse(notAfter) - 1000);
    expect((await mqttSessions("gw-expire"))[0]?.closeReason).toBe("expired");
    const again = await mqttConnect(mqttUrl, {
      clientId: "gw-expire",
      cert: d.cert,
      key: d.key,
      ca: server.rootPemFile,
    });
    expect(again.ok).toBe(false);
  }, 30_000);

  it("stops renewing once revoked, says so in its status, and over MQTT", async () => {
    const dir = await enrollAgent("gw-rev", ["--mqtt", mqttUrl, "--renew-fraction", "0.3"]);
    const a = startAgent(dir);
    try {
      await until("online", () => statusOf("gw-rev").some((s) => s.state === "online"));
      await edgeid(["devices", "revoke", "gw-rev", "--reason", "keyCompromise", "--data", dataDir]);
      // The server tells the agent (cmd/revoked), closes its connection and overwrites its status.
      await until("the revoked state", () => statusOf("gw-rev").at(-1)?.state === "revoked", 20_000);
      await until("the agent in state revoked", () => a.log().includes("renewal stopped"), 20_000);
      // Its own "revoked" event went out before the broker cut it off, or waits on disk (or
      // both for a moment: the queue file is rewritten once the broker acknowledged it).
      const delivered = eventsOf("gw-rev", "revoked").length;
      const queued = readFileSync(join(dir, "events.jsonl"), "utf8").includes('"revoked"');
      expect(delivered).toBeLessThanOrEqual(1);
      expect(delivered === 1 || queued).toBe(true);
      // The live connection was closed by the revocation. Regression (a run under load):
      // the agent was rotating when the revocation landed — its old connection closed
      // normally, and its new certificate, revoked with the device, was refused at CONNECT.
      const sessions = await mqttSessions("gw-rev");
      expect(sessions.filter((s) => s.closeReason === null)).toEqual([]);
      if (sessions[0]?.closeReason !== "revoked") {
        const { currentSerial } = await showDevice(dataDir, "gw-rev");
        expect([sessions[0]?.closeReason, sessions[0]?.serial === currentSerial]).toEqual(["closed", false]);
      }
      const renewedAtRevocation = a.count("renewed");
      await sleep(5_000); // longer than the time to the next renewal
      expect(a.count("renewed")).toBe(renewedAtRevocation);
    } finally {
      await a.stop();
    }
    const status = JSON.parse((await agent(["status", "--dir", dir, "--json"])).stdout);
    expect(status.state).toBe("revoked");
    expect(status.lastError).toMatch(/revoked/);
  }, 60_000);
});
