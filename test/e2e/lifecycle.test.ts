/**
 * Lifecycle controls against a real `edgeid serve`: an appliance profile with expiry
 * alert points, a device enrolled over EST (openssl + curl), its owner and location set
 * with the CLI, the expiry alert delivered to a signed webhook (a real HTTP receiver in
 * the test) and on the MQTT fleet topic, and the expiring report as CSV.
 */
import { createHmac } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mqttConnect, type TestClient } from "../support/mqtt-client.ts";
import { serviceCert } from "./support/ca.ts";
import { cliCreateToken, edgeid } from "./support/cli.ts";
import { curl, estPost } from "./support/curl.ts";
import {
  keyPublicKey,
  openssl,
  opensslCsr,
  opensslCsrNewKeyP256,
  opensslVerify,
  pkcs7ToPem,
  splitPem,
  writePem,
  x509PublicKey,
  x509Serial,
  x509Subject,
  x509Text,
} from "./support/openssl.ts";
import { EDGEID_BIN, eventually, makeWorkDir, removeDir, run } from "./support/process.ts";
import { addProfiles, cliInitDataDir, startServer, type TestServer } from "./support/server.ts";

let work: string;
let dataDir: string;
let adminToken: string;
/** The admin operator token, for the CLI against the server's API (--server). */
let tokenFile: string;
let server: TestServer;
let hook: Server;
let observer: TestClient;
const SECRET = "webhook secret for the test";
const received: { signature: string | undefined; body: string }[] = [];

beforeAll(async () => {
  work = await makeWorkDir("lifecycle");
  ({ dataDir, adminToken } = await cliInitDataDir(work, "plant.example"));
  hook = createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8").on("data", (c: string) => {
      body += c;
    });
    req.on("end", () => {
      received.push({ signature: req.headers["x-edgeid-signature"] as string | undefined, body });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => hook.listen(0, "127.0.0.1", () => r()));
  await writeFile(join(dataDir, "webhook-secret"), `${SECRET}\n`, { mode: 0o600 });
  // 20-day certificates with a 30-day alert point: due as soon as one is issued.
  await addProfiles(dataDir, { appliance: { validity: "20d", expiryAlerts: ["30d", "7d"], serverKeygen: true } });
  const configFile = join(dataDir, "edgeid.json");
  const config = JSON.parse(await readFile(configFile, "utf8"));
  config.alerts = {
    scanInterval: "1s",
    webhook: {
      url: `http://127.0.0.1:${(hook.address() as { port: number }).port}/edgeid`,
      secretFile: "webhook-secret",
    },
  };
  await writeFile(configFile, JSON.stringify(config));
  server = await startServer(dataDir, work);
  tokenFile = join(work, "admin-token");
  await writeFile(tokenFile, adminToken, { mode: 0o600 });
  const svc = await serviceCert(dataDir, "observer", join(work, "svc"));
  const r = await mqttConnect(server.mqttUrl as string, {
    clientId: "service:observer",
    cert: svc.cert,
    key: svc.key,
    ca: server.rootPemFile,
  });
  if (!r.ok) throw new Error(r.error);
  observer = r.c;
  await observer.subscribe("edgeid/v1/fleet/events");
}, 60_000);

afterAll(async () => {
  await observer?.end();
  await server?.stop();
  await new Promise<void>((r) => (hook ? hook.close(() => r()) : r()));
  await removeDir(work);
});

describe("lifecycle controls", () => {
  it("labels an appliance, alerts before its certificate expires, and reports it", async () => {
    const { token } = await cliCreateToken(dataDir, "plc-07", { profile: "appliance" });
    const csr = await opensslCsrNewKeyP256(work, "plc-07");
    const res = await estPost(server, work, "simpleenroll", csr.base64, {
      label: "appliance",
      basic: { user: "plc-07", password: token },
    });
    expect(res.status, res.text).toBe(200);
    const [pem] = await pkcs7ToPem(work, res.body);
    const serial = await x509Serial(await writePem(work, "plc-07.pem", pem as string));
    await edgeid([
      "devices",
      "label",
      "plc-07",
      "--owner",
      'OT team "line 4"',
      "--location",
      "Plant 2, hall B",
      "--data",
      dataDir,
    ]);

    // The webhook: one POST, signed with the configured secret.
    await eventually(
      async () => received.length,
      (n) => n >= 1,
    );
    const [hit] = received;
    const body = JSON.parse(hit?.body ?? "{}") as Record<string, unknown>;
    expect(body).toMatchObject({
      type: "certificate-expiring",
      deviceId: "plc-07",
      profile: "appliance",
      thresholdDays: 30,
    });
    expect(String(body.serial).replace(/^0+/, "")).toBe(serial);
    expect(hit?.signature).toBe(
      `sha256=${createHmac("sha256", SECRET)
        .update(hit?.body ?? "")
        .digest("hex")}`,
    );
    // And on the fleet topic, with the same id.
    const event = await observer.next((m) => m.body.type === "certificate-expiring");
    expect(event.body.id).toBe(body.id);
    // Once: two later scans (every second here; one at a time) do not send it again. The
    // scan that sent it may not have completed yet when the count is read.
    const scans = async () => {
      const m = await curl(work, `${server.url}/metrics`, { bearer: adminToken, cacert: server.rootPemFile });
      return Number(/^edgeid_expiry_alert_scans_total\{outcome="completed"\} (\d+)$/m.exec(m.text)?.[1] ?? 0);
    };
    const atAlert = await scans();
    await expect.poll(scans, { timeout: 10_000, interval: 200 }).toBeGreaterThanOrEqual(atAlert + 2);
    expect(received).toHaveLength(1);

    const csv = (await edgeid(["report", "expiring", "--within", "30d", "--csv", "--data", dataDir])).stdout;
    const lines = csv.trimEnd().split("\r\n");
    expect(lines[0]).toBe("deviceId,profile,serial,notAfter,daysLeft,owner,location,lastSeenAt,reportedState");
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/^plc-07,appliance,[0-9a-f]+,[^,]+,(19\.9|20),"OT team ""line 4""","Plant 2, hall B",,$/);
    const json = (await edgeid(["report", "expiring", "--within", "30d", "--json", "--data", dataDir])).stdout;
    expect(JSON.parse(json.trim())).toMatchObject({
      deviceId: "plc-07",
      owner: 'OT team "line 4"',
      location: "Plant 2, hall B",
    });
    const shown = JSON.parse((await edgeid(["devices", "show", "plc-07", "--data", dataDir, "--json"])).stdout);
    expect(shown).toMatchObject({ owner: 'OT team "line 4"', location: "Plant 2, hall B" });
  }, 60_000); // CLI processes (each loads the server's TypeScript) around two expiry-alert scans: 14-18 s here

  it("an operator signs an appliance's CSR, on the data directory or through the API", async () => {
    // The appliance made its own key and CSR (PEM), and has no EST client.
    const csr = await opensslCsr(work, "plc-09", { alg: "P-256" });
    const pemCsr = join(work, "plc-09.csr.pem");
    await openssl(["req", "-inform", "DER", "-in", csr.derFile, "-out", pemCsr]);
    const out = join(work, "plc-09.chain.pem");
    await edgeid([
      "legacy",
      "sign",
      "--device",
      "plc-09",
      "--csr",
      pemCsr,
      "--profile",
      "appliance",
      "--out",
      out,
      "--data",
      dataDir,
    ]);
    const [leaf, ...chain] = splitPem(await readFile(out, "utf8"));
    const leafFile = await writePem(work, "plc-09.leaf.pem", leaf as string);
    const chainFile = await writePem(work, "plc-09.issuing.pem", chain);
    const verified = await opensslVerify(server.rootPemFile, leafFile, ["-untrusted", chainFile]);
    expect(verified.stdout).toContain("OK");
    expect(await x509Subject(leafFile)).toMatch(/CN ?= ?plc-09$/);
    expect(await x509PublicKey(leafFile)).toBe(await keyPublicKey(csr.keyFile));
    expect(await x509Text(leafFile)).toContain("URI:spiffe://plant.example/device/plc-09");
    const shown = JSON.parse((await edgeid(["devices", "show", "plc-09", "--data", dataDir, "--json"])).stdout);
    expect(shown).toMatchObject({ status: "active", profile: "appliance" });
    expect(shown.certificates[0]).toMatchObject({ method: "operator" });
    expect(shown.audit.map((a: { action: string }) => a.action)).toContain("certificate.sign");

    // Through the API with an operator token (remote CLI); an RSA key is not in this profile.
    const remote = ["--server", server.url, "--token-file", tokenFile, "--cacert", server.rootPemFile];
    const other = await opensslCsr(work, "plc-10", { alg: "P-256" });
    const viaApi = JSON.parse(
      (
        await edgeid([
          "legacy",
          "sign",
          "--device",
          "plc-10",
          "--csr",
          other.derFile.replace(/\.der$/, ".b64"),
          "--profile",
          "appliance",
          "--json",
          ...remote,
        ])
      ).stdout,
    );
    expect(viaApi).toMatchObject({ deviceId: "plc-10", certificate: expect.stringContaining("BEGIN CERTIFICATE") });
    const rsa = await opensslCsr(work, "plc-11", { alg: "RSA-2048" });
    const refused = await run(process.execPath, [
      EDGEID_BIN,
      "legacy",
      "sign",
      "--device",
      "plc-11",
      "--csr",
      rsa.derFile.replace(/\.der$/, ".b64"),
      "--profile",
      "appliance",
      ...remote,
    ]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/key type RSA-2048 is not allowed/);
    const named = await opensslCsr(work, "plc-12", { alg: "P-256", addext: ["subjectAltName=DNS:evil.example"] });
    const refusedNames = await run(process.execPath, [
      EDGEID_BIN,
      "legacy",
      "sign",
      "--device",
      "plc-12",
      "--csr",
      named.derFile.replace(/\.der$/, ".b64"),
      "--profile",
      "appliance",
      ...remote,
    ]);
    expect(refusedNames.code).toBe(1);
    const denied = (
      await edgeid(["audit", "list", "--action", "certificate.sign", "--device", "plc-11", "--json", "--data", dataDir])
    ).stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { outcome: string; detail: { reason: string } });
    expect(denied.map((d) => [d.outcome, d.detail.reason])).toEqual([["denied", "key_not_allowed"]]);
    expect((await edgeid(["devices", "list", "--data", dataDir, "--json"])).stdout).not.toContain("plc-11");
  }, 60_000); // RSA keys and CLI processes on the data directory and through the API: 17-22 s here

  it("issues a PKCS#12 file that openssl imports: AES by default, 3DES when asked", async () => {
    const pw = join(work, "p12-password");
    await writeFile(pw, "correct horse battery\n", { mode: 0o600 });
    const remote = ["--server", server.url, "--token-file", tokenFile, "--cacert", server.rootPemFile];
    const cases = [
      {
        device: "plc-20",
        where: ["--data", dataDir],
        extra: [],
        mac: "MAC: sha256",
        cipher: "PBES2, PBKDF2, AES-256-CBC",
      },
      {
        device: "plc-21",
        where: remote,
        extra: ["--legacy-encryption"],
        mac: "MAC: sha1",
        cipher: "pbeWithSHA1And3-KeyTripleDES-CBC",
      },
    ];
    for (const c of cases) {
      const out = join(work, `${c.device}.p12`);
      const r = JSON.parse(
        (
          await edgeid([
            "legacy",
            "issue",
            "--device",
            c.device,
            "--profile",
            "appliance",
            "--out",
            out,
            "--password-file",
            pw,
            "--json",
            ...c.extra,
            ...c.where,
          ])
        ).stdout,
      ) as Record<string, unknown>;
      expect(r).not.toHaveProperty("privateKey");
      const info = await openssl([
        "pkcs12",
        "-in",
        out,
        "-passin",
        `file:${pw}`,
        "-info",
        "-nodes",
        "-out",
        join(work, `${c.device}.all.pem`),
      ]);
      expect(info.stderr + info.stdout).toContain(c.mac);
      expect(info.stderr + info.stdout).toContain(c.cipher);
      const all = await readFile(join(work, `${c.device}.all.pem`), "utf8");
      const keyFile = await writePem(
        work,
        `${c.device}.key.pem`,
        all.slice(all.indexOf("-----BEGIN PRIVATE KEY-----")),
      );
      const [leaf] = splitPem(all.slice(all.indexOf("-----BEGIN CERTIFICATE-----")));
      const leafFile = await writePem(work, `${c.device}.cert.pem`, leaf as string);
      expect(await x509Subject(leafFile)).toMatch(new RegExp(`CN ?= ?${c.device}$`));
      expect(await x509PublicKey(leafFile)).toBe(await keyPublicKey(keyFile));
      expect((await readFile(out)).length).toBeGreaterThan(500);
    }
    // A profile that does not allow server-side keys, and a short password, are refused.
    const refused = await run(process.execPath, [
      EDGEID_BIN,
      "legacy",
      "issue",
      "--device",
      "x-1",
      "--profile",
      "device",
      "--out",
      join(work, "x.p12"),
      "--password-file",
      pw,
      "--data",
      dataDir,
    ]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/does not allow server-side key generation/);
    await writeFile(join(work, "short"), "short");
    const short = await run(process.execPath, [
      EDGEID_BIN,
      "legacy",
      "issue",
      "--device",
      "x-2",
      "--profile",
      "appliance",
      "--out",
      join(work, "y.p12"),
      "--password-file",
      join(work, "short"),
      "--data",
      dataDir,
    ]);
    expect(short.code).toBe(1);
    expect(short.stderr).toMatch(/at least 8 characters/);
  });
});
