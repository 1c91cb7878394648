/**
 * Correctness under load, against a real `edgeid serve`: many enrollments in flight
 * at once over keep-alive HTTPS (so that the group commit batches them), and the same
 * token raced from several connections. Afterwards the SQLite file itself is read:
 * unique serials, every certificate a client received recorded exactly once, every
 * token used exactly once.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Job, runLoad } from "../../bench/load.ts";
import { cliCreateTokenBatch } from "./support/cli.ts";
import { makeWorkDir, removeDir } from "./support/process.ts";
import { cliInitDataDir, setLimits, startServer, type TestServer } from "./support/server.ts";

const DEVICES = 240;
const RACERS = 12;

/**
 * One event loop, and (on Node lines with reusePort) three: the connections spread over
 * the loops, whose write sets all go to the one writer.
 */
const [major = 0, minor = 0] = process.versions.node.split(".").map(Number);
const reusePort = major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
const LOOP_RUNS = reusePort ? [1, 3] : [1];

async function csrFor(deviceId: string): Promise<string> {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = (await crypto.subtle.generateKey(alg, false, ["sign", "verify"])) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${deviceId}`,
    keys,
    signingAlgorithm: alg,
  });
  return Buffer.from(csr.rawData).toString("base64");
}

const basic = (deviceId: string, token: string) => ({
  authorization: `Basic ${Buffer.from(`${deviceId}:${token}`).toString("base64")}`,
});

/** The certificate inside a base64 PKCS#7 certs-only body, read with @peculiar/x509. */
function certificateOf(body: string): x509.X509Certificate {
  const certs = new x509.X509Certificates(body.replace(/\s+/g, ""));
  expect(certs).toHaveLength(1);
  return certs[0] as x509.X509Certificate;
}

describe.each(LOOP_RUNS)("enrollment under concurrent load (%i event loops)", (loops) => {
  let work: string;
  let server: TestServer;

  beforeAll(async () => {
    work = await makeWorkDir("load");
    const { dataDir } = await cliInitDataDir(work, "load.example");
    // The racers claim one device id RACERS times at once; past the per-device refusal
    // budget (10) the last of them would be answered 429. This test is about the token race.
    await setLimits(dataDir, { refusals: { perDevice: RACERS } });
    server = await startServer(dataDir, work, 0, { args: ["--loops", String(loops)] });
  }, 60_000);

  afterAll(async () => {
    await server?.stop();
    await removeDir(work);
  });

  it("issues exactly one certificate per token, even when a token is raced", async () => {
    const tokens = await cliCreateTokenBatch(server.dataDir, "load-", DEVICES + 1);
    const raced = tokens[DEVICES];
    if (!raced) throw new Error("token batch is short");
    const racedCsr = await csrFor(raced.deviceId);
    const jobs: Job[] = [];
    for (const t of tokens.slice(0, DEVICES)) {
      jobs.push({ headers: basic(t.deviceId, t.token), body: await csrFor(t.deviceId) });
    }
    // Interleave the racers with the ordinary requests so they share batches.
    for (let i = 0; i < RACERS; i++) {
      jobs.splice(i * 17, 0, { headers: basic(raced.deviceId, raced.token), body: racedCsr });
    }
    const ca = await readFile(server.rootPemFile, "utf8");
    const result = await runLoad(jobs, {
      url: `${server.est}/simpleenroll`,
      ca,
      concurrency: 48,
      seconds: 120,
    });
    expect(result.started).toBe(jobs.length);

    const issued = new Map<string, x509.X509Certificate>();
    const racedStatuses: number[] = [];
    jobs.forEach((job, i) => {
      const outcome = result.outcomes[i];
      if (!outcome) throw new Error(`job ${i} did not finish`);
      if (job.body === racedCsr) {
        racedStatuses.push(outcome.status);
        if (outcome.status !== 200) expect(outcome.body).toMatch(/already been used/);
      } else {
        expect(outcome.status, outcome.body).toBe(200);
      }
      if (outcome.status === 200) {
        const cert = certificateOf(outcome.body);
        expect(issued.has(cert.serialNumber), `serial ${cert.serialNumber} twice`).toBe(false);
        issued.set(cert.serialNumber, cert);
      }
    });
    expect(racedStatuses.filter((s) => s === 200)).toHaveLength(1);
    expect(racedStatuses.filter((s) => s === 401)).toHaveLength(RACERS - 1);
    expect(issued.size).toBe(DEVICES + 1);
    if (loops > 1) {
      // The load did spread: request lines of more than one loop.
      const served = new Set(
        server
          .log()
          .split("\n")
          .filter((l) => l.includes('"msg":"request"'))
          .map((l) => (JSON.parse(l) as { loop?: number }).loop),
      );
      expect(served.size).toBeGreaterThan(1);
    }

    await server.stop();
    const db = new Database(join(server.dataDir, "edgeid.db"), { readonly: true });
    try {
      const rows = db
        .prepare("select serial, fingerprint, bootstrap_token_id as tokenId, device_id as deviceId from certificates")
        .all() as { serial: string; fingerprint: string; tokenId: string; deviceId: string }[];
      expect(rows).toHaveLength(DEVICES + 1);
      expect(new Set(rows.map((r) => r.serial)).size).toBe(rows.length);
      const byFingerprint = new Map(rows.map((r) => [r.fingerprint, r]));
      for (const cert of issued.values()) {
        const fingerprint = createHash("sha256").update(Buffer.from(cert.rawData)).digest("hex");
        const row = byFingerprint.get(fingerprint);
        expect(row, `certificate ${cert.serialNumber} is recorded`).toBeDefined();
        expect(row?.serial.replace(/^0+/, "")).toBe(cert.serialNumber.toLowerCase().replace(/^0+/, ""));
        expect(cert.subject).toBe(`CN=${row?.deviceId}`);
      }
      const used = db
        .prepare("select id, used_serial as usedSerial from bootstrap_tokens where used_at is not null")
        .all() as { id: string; usedSerial: string }[];
      expect(used).toHaveLength(DEVICES + 1);
      const bySerial = new Map(rows.map((r) => [r.serial, r]));
      for (const t of used) expect(bySerial.get(t.usedSerial)?.tokenId).toBe(t.id);
      const audited = db
        .prepare("select count(*) from audit_events where action = 'est.simpleenroll' and outcome = 'success'")
        .pluck()
        .get();
      expect(audited).toBe(DEVICES + 1);
      const refusedRaces = db
        .prepare("select count(*) from audit_events where action = 'est.simpleenroll' and outcome = 'denied'")
        .pluck()
        .get();
      expect(refusedRaces).toBe(RACERS - 1);
    } finally {
      db.close();
    }
  }, 120_000);
});
