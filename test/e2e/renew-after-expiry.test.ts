/**
 * Renewal after expiry against a real `edgeid serve`, with curl presenting a client
 * certificate that has really expired (the TLS layer accepts it; the authority decides):
 * within the profile's renewAfterExpiry window it renews (audited as its own action);
 * past it the 403 names the window. And the real agent, off while its certificate
 * expired, renews by itself when it starts again. The certificates live 4 s so that they expire
 * during the test: this one waits for wall-clock time, the server has no clock to move.
 */

import { spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentStore } from "../../device-client/src/store.ts";
import { AGENT_BIN, AGENT_ENV, agentEnrollArgs } from "./support/agent.ts";
import { caFiles } from "./support/ca.ts";
import { cliCreateToken, edgeid } from "./support/cli.ts";
import { estPost, expectOneLineError } from "./support/curl.ts";
import { openssl, opensslCsrNewKeyP256, pkcs7ToPem, writePem, x509Serial } from "./support/openssl.ts";
import { eventually, makeWorkDir, removeDir, run } from "./support/process.ts";
import { addProfiles, cliInitDataDir, startServer, type TestServer } from "./support/server.ts";

let work: string;
let server: TestServer;

beforeAll(async () => {
  work = await makeWorkDir("renew-after-expiry");
  const { dataDir } = await cliInitDataDir(work, "away.example");
  await addProfiles(dataDir, {
    away: { validity: "4s", backdate: "0s", renewAfterExpiry: "1h" },
    gone: { validity: "4s", backdate: "0s", renewAfterExpiry: "1s" },
  });
  server = await startServer(dataDir, work, 0, { mqtt: "off" });
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await removeDir(work);
});

/** Enrolls under a label with openssl and curl: the certificate and key files. */
async function enroll(deviceId: string, label: string) {
  const { token } = await cliCreateToken(server.dataDir, deviceId, { profile: label });
  const csr = await opensslCsrNewKeyP256(work, deviceId);
  const r = await estPost(server, work, "simpleenroll", csr.base64, {
    label,
    basic: { user: deviceId, password: token },
  });
  expect(r.status, r.text).toBe(200);
  const [pem] = await pkcs7ToPem(work, r.body);
  const cert = await writePem(work, `${deviceId}.pem`, pem as string);
  return { cert, key: csr.keyFile, notAfter: Date.parse(new X509Certificate(pem as string).validTo) };
}

describe("renewal after expiry, over mutual TLS with the expired certificate", () => {
  it("renews within the window, refuses past it with the window named", async () => {
    const away = await enroll("dev-away", "away");
    const gone = await enroll("dev-gone", "gone");
    // Both expired, and dev-gone more than its 1 s window ago.
    await eventually(
      async () => Date.now(),
      (t) => t > Math.max(away.notAfter, gone.notAfter) + 2500,
      20_000,
    );
    const expiredCheck = await openssl(["x509", "-in", away.cert, "-noout", "-checkend", "0"]).catch((e: Error) => e);
    expect(expiredCheck).toBeInstanceOf(Error);

    const renewCsr = await opensslCsrNewKeyP256(work, "dev-away-next", "/CN=dev-away");
    const renewed = await estPost(server, work, "simplereenroll", renewCsr.base64, {
      label: "away",
      cert: away.cert,
      key: away.key,
    });
    expect(renewed.status, renewed.text).toBe(200);
    const [pem] = await pkcs7ToPem(work, renewed.body);
    const next = await writePem(work, "dev-away-next.pem", pem as string);
    const { issuingFile } = await caFiles(server, work);
    await openssl(["verify", "-CAfile", server.rootPemFile, "-untrusted", issuingFile, next]);
    expect(await x509Serial(next)).not.toBe(await x509Serial(away.cert));

    const refused = await estPost(
      server,
      work,
      "simplereenroll",
      (await opensslCsrNewKeyP256(work, "dev-gone-next", "/CN=dev-gone")).base64,
      {
        label: "gone",
        cert: gone.cert,
        key: gone.key,
      },
    );
    expectOneLineError(refused, 403);
    expect(refused.text).toMatch(/past the 1s in which profile gone renews expired certificates \(renewAfterExpiry\)/);

    const audit = await edgeid(["audit", "list", "--data", server.dataDir, "--device", "dev-away", "--json"]);
    const actions = audit.stdout
      .trim()
      .split("\n")
      .map((l) => (JSON.parse(l) as { action: string }).action);
    expect(actions).toContain("est.renew_after_expiry");
  }, 60_000);

  it("brings the real agent back by itself after it was off past its certificate's expiry", async () => {
    const { token } = await cliCreateToken(server.dataDir, "gw-away", { profile: "away" });
    const dir = join(work, "agent-gw-away");
    const root = new X509Certificate(await readFile(server.rootPemFile, "utf8"));
    const fingerprint = root.fingerprint256.replace(/:/g, "").toLowerCase();
    const enrolled = await run(
      process.execPath,
      [AGENT_BIN, ...agentEnrollArgs(server, fingerprint, "gw-away", token, dir, ["--label", "away"])],
      { env: AGENT_ENV },
    );
    expect(enrolled.code, enrolled.stderr).toBe(0);
    const before = new AgentStore(dir).loadIdentity().chain[0] as X509Certificate;
    // The agent is off while its certificate expires.
    await eventually(
      async () => Date.now(),
      (t) => t > Date.parse(before.validTo) + 1000,
      20_000,
    );
    const agent = spawn(process.execPath, [AGENT_BIN, "run", "--dir", dir], { env: AGENT_ENV, stdio: "ignore" });
    try {
      const after = await eventually(
        async () => new AgentStore(dir).loadIdentity().chain[0] as X509Certificate,
        (c) => c.serialNumber !== before.serialNumber,
        20_000,
      );
      expect(Date.parse(after.validTo)).toBeGreaterThan(Date.now());
      const audit = await edgeid(["audit", "list", "--data", server.dataDir, "--device", "gw-away", "--json"]);
      expect(audit.stdout).toContain('"action":"est.renew_after_expiry"');
    } finally {
      agent.kill("SIGTERM");
      await new Promise((r) => agent.once("exit", r));
    }
  }, 60_000);

  it("an agent past the window reports lost-identity and waits; enroll --token on its directory brings it back in place", async () => {
    const { token } = await cliCreateToken(server.dataDir, "gw-gone", { profile: "gone" });
    const dir = join(work, "agent-gw-gone");
    const root = new X509Certificate(await readFile(server.rootPemFile, "utf8"));
    const pin = root.fingerprint256.replace(/:/g, "").toLowerCase();
    const enroll = (secret: string) =>
      run(process.execPath, [AGENT_BIN, ...agentEnrollArgs(server, pin, "gw-gone", secret, dir, ["--label", "gone"])], {
        env: AGENT_ENV,
      });
    expect((await enroll(token)).code).toBe(0);
    const first = new AgentStore(dir).loadIdentity().chain[0] as X509Certificate;
    // Off past expiry and past the profile's 1 s window.
    await eventually(
      async () => Date.now(),
      (t) => t > Date.parse(first.validTo) + 2500,
      20_000,
    );
    const agent = spawn(process.execPath, [AGENT_BIN, "run", "--dir", dir], { env: AGENT_ENV, stdio: "ignore" });
    try {
      const lost = await eventually(
        async () => new AgentStore(dir).loadState(),
        (st) => st.lostIdentity !== null,
        20_000,
      );
      expect(lost.lostIdentity?.reason).toMatch(/HTTP 403: .*past the 1s in which profile gone renews/);
      const status = await run(process.execPath, [AGENT_BIN, "status", "--dir", dir, "--json"], { env: AGENT_ENV });
      expect(JSON.parse(status.stdout)).toMatchObject({ state: "lost-identity" });
      const sessionBefore = lost.session;

      // The operator's new token, enrolled on the same directory while the agent runs.
      const { token: again } = await cliCreateToken(server.dataDir, "gw-gone", { profile: "gone" });
      const reenrolled = await enroll(again);
      expect(reenrolled.code, reenrolled.stderr).toBe(0);
      expect(reenrolled.stdout).toMatch(/asked the running agent \(pid \d+\) to load it/);
      const back = await eventually(
        async () =>
          JSON.parse(
            (await run(process.execPath, [AGENT_BIN, "status", "--dir", dir, "--json"], { env: AGENT_ENV })).stdout,
          ),
        (st: { state: string; serial: string; session: number }) =>
          st.state !== "lost-identity" && st.serial !== first.serialNumber.toLowerCase(),
        20_000,
      );
      expect(back.session).toBeGreaterThan(sessionBefore);
    } finally {
      agent.kill("SIGTERM");
      await new Promise((r) => agent.once("exit", r));
    }
  }, 60_000);
});
