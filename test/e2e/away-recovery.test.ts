/**
 * Coming back after being away, against a real `edgeid serve` and the real agent:
 * a device revoked while it was off cannot come back (neither by renewal after expiry
 * nor through its manufacturer certificate), and a device enrolled with an IDevID that
 * was away past its profile's renewal window comes back through the IDevID by itself.
 * Certificates live 4 s so that they expire during the test: the test waits for
 * wall-clock time, as the server has no clock to move.
 */

import { spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { copyFile, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentStore } from "../../device-client/src/store.ts";
import { AGENT_BIN, AGENT_ENV, agentEnrollArgs } from "./support/agent.ts";
import { issueClientCert, type OpensslCa, opensslCa } from "./support/ca.ts";
import { cliCreateToken, edgeid } from "./support/cli.ts";
import { estPost, expectOneLineError } from "./support/curl.ts";
import { opensslCsr } from "./support/openssl.ts";
import { eventually, makeWorkDir, removeDir, run } from "./support/process.ts";
import { addProfiles, cliInitDataDir, startServer, type TestServer } from "./support/server.ts";

let work: string;
let server: TestServer;
let pin: string;
let mfg: OpensslCa;

beforeAll(async () => {
  work = await makeWorkDir("away-recovery");
  const { dataDir } = await cliInitDataDir(work, "away.example");
  mfg = await opensslCa(work, "acme-mfg-ca", "/O=Acme Corp/CN=Acme Manufacturing CA");
  await copyFile(mfg.certFile, join(dataDir, "mfg-ca.pem"));
  await addProfiles(dataDir, {
    away: { validity: "4s", backdate: "0s", renewAfterExpiry: "1h" },
    factory: {
      validity: "4s",
      backdate: "0s",
      renewAfterExpiry: "1s",
      idevid: { trustBundle: "mfg-ca.pem", deviceIdFrom: "subject.serialNumber" },
    },
  });
  server = await startServer(dataDir, work, 0, { mqtt: "off" });
  const root = new X509Certificate(await readFile(server.rootPemFile, "utf8"));
  pin = root.fingerprint256.replace(/:/g, "").toLowerCase();
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await removeDir(work);
});

const agent = (args: string[]) => run(process.execPath, [AGENT_BIN, ...args], { env: AGENT_ENV });
const current = (dir: string) => new AgentStore(dir).loadIdentity().chain[0] as X509Certificate;

/** Waits (wall clock) until `ms` after the certificate in `dir` expired. */
async function offUntilExpiredFor(dir: string, ms: number): Promise<X509Certificate> {
  const cert = current(dir);
  await eventually(
    async () => Date.now(),
    (t) => t > Date.parse(cert.validTo) + ms,
    20_000,
  );
  return cert;
}

/** Runs the agent in `dir` until `body` returns, then stops it. */
async function running<T>(dir: string, body: () => Promise<T>): Promise<T> {
  const child = spawn(process.execPath, [AGENT_BIN, "run", "--dir", dir], { env: AGENT_ENV, stdio: "ignore" });
  try {
    return await body();
  } finally {
    child.kill("SIGTERM");
    await new Promise((r) => child.once("exit", r));
  }
}

async function auditActions(deviceId: string): Promise<{ action: string; outcome?: string }[]> {
  const audit = await edgeid(["audit", "list", "--data", server.dataDir, "--device", deviceId, "--json"]);
  return audit.stdout
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { action: string; outcome?: string });
}

describe("a device revoked while it was away", () => {
  it("does not come back by renewal after expiry: the agent reports revoked and keeps its old certificate", async () => {
    const { token } = await cliCreateToken(server.dataDir, "gw-stolen", { profile: "away" });
    const dir = join(work, "agent-gw-stolen");
    const enrolled = await agent(agentEnrollArgs(server, pin, "gw-stolen", token, dir, ["--label", "away"]));
    expect(enrolled.code, enrolled.stderr).toBe(0);
    await edgeid(["devices", "revoke", "gw-stolen", "--reason", "keyCompromise", "--data", server.dataDir]);
    const before = await offUntilExpiredFor(dir, 1000);

    await running(dir, async () => {
      const st = await eventually(
        async () => new AgentStore(dir).loadState(),
        (s) => s.revoked !== null,
        20_000,
      );
      expect(st.revoked?.by).toBe("est");
    });
    expect(current(dir).serialNumber).toBe(before.serialNumber);
    const actions = await auditActions("gw-stolen");
    expect(actions.map((a) => a.action)).not.toContain("est.renew_after_expiry");
    expect(actions.filter((a) => a.action === "est.simplereenroll" && a.outcome === "denied").length).toBeGreaterThan(
      0,
    );
    const shown = JSON.parse(
      (await edgeid(["devices", "show", "gw-stolen", "--data", server.dataDir, "--json"])).stdout,
    );
    expect(shown.status).toBe("revoked");
  }, 60_000);

  it("does not come back through its IDevID either: the agent stops at revoked, and the IDevID is refused", async () => {
    const idevid = await issueClientCert(work, mfg, "idevid-revoked", "/CN=Acme Sensor/serialNumber=SN-REVOKED");
    const dir = join(work, "agent-sn-revoked");
    const enrolled = await agent([
      "enroll",
      "--server",
      server.url,
      "--ca-fingerprint",
      `sha256:${pin}`,
      "--device",
      "SN-REVOKED",
      "--idevid-cert",
      idevid.certFile,
      "--idevid-key",
      idevid.keyFile,
      "--label",
      "factory",
      "--dir",
      dir,
    ]);
    expect(enrolled.code, enrolled.stderr).toBe(0);
    await edgeid(["devices", "revoke", "SN-REVOKED", "--reason", "keyCompromise", "--data", server.dataDir]);
    const before = await offUntilExpiredFor(dir, 2500);

    await running(dir, async () => {
      // The renewal is refused as revoked by the verified server: the agent stops there
      // and does not fall through to its IDevID.
      const st = await eventually(
        async () => new AgentStore(dir).loadState(),
        (s) => s.revoked !== null || s.lostIdentity !== null,
        20_000,
      );
      expect(st.revoked?.by).toBe("est");
      expect(st.lostIdentity).toBeNull();
    });
    // And whoever holds the IDevID (the device, or whoever took it) is refused too.
    const csr = await opensslCsr(work, "sn-revoked-again", { subject: "/CN=SN-REVOKED" });
    const again = await estPost(server, work, "simpleenroll", csr.base64, {
      label: "factory",
      cert: idevid.certFile,
      key: idevid.keyFile,
    });
    expectOneLineError(again, 403);
    expect(again.text).toMatch(/revoked/);
    expect(current(dir).serialNumber).toBe(before.serialNumber);
    const shown = JSON.parse(
      (await edgeid(["devices", "show", "SN-REVOKED", "--data", server.dataDir, "--json"])).stdout,
    );
    expect(shown.status).toBe("revoked");
    expect(shown.certificates).toHaveLength(1);
  }, 60_000);
});

describe("a device enrolled with its IDevID, away past the renewal window", () => {
  it("comes back by itself through the IDevID, with a new key", async () => {
    const idevid = await issueClientCert(work, mfg, "idevid-away", "/CN=Acme Sensor/serialNumber=SN-AWAY");
    const dir = join(work, "agent-sn-away");
    const enrolled = await agent([
      "enroll",
      "--server",
      server.url,
      "--ca-fingerprint",
      `sha256:${pin}`,
      "--device",
      "SN-AWAY",
      "--idevid-cert",
      idevid.certFile,
      "--idevid-key",
      idevid.keyFile,
      "--label",
      "factory",
      "--dir",
      dir,
    ]);
    expect(enrolled.code, enrolled.stderr).toBe(0);
    const before = await offUntilExpiredFor(dir, 2500);

    const after = await running(dir, () =>
      eventually(
        async () => current(dir),
        (c) => c.serialNumber !== before.serialNumber,
        20_000,
      ),
    );
    expect(Date.parse(after.validTo)).toBeGreaterThan(Date.parse(before.validTo));
    expect(after.publicKey.export({ format: "der", type: "spki" })).not.toEqual(
      before.publicKey.export({ format: "der", type: "spki" }),
    );
    expect(new AgentStore(dir).loadState().lostIdentity).toBeNull();
    const actions = (await auditActions("SN-AWAY")).map((a) => a.action);
    // The renewal past the window was refused; the IDevID enrollment then succeeded.
    expect(actions.filter((a) => a === "est.simpleenroll")).toHaveLength(2);
    expect(actions).not.toContain("est.renew_after_expiry");
  }, 60_000);
});
