/**
 * Revocation is final, end to end (issue 17): the attack that found the bug, with real
 * processes. Renewal loops (curl with the device's certificate and key, each renewing
 * with the certificate it last got) run against `edgeid serve` while an operator runs
 * `edgeid devices revoke` — a separate process on the same SQLite file. Afterwards:
 * the device is revoked, every certificate it holds is revoked in the database, in
 * `openssl ocsp` and in the CRL served, and no certificate was issued after the
 * revocation committed (audit ids are in commit order). Then token enrollments (curl)
 * racing their device's revocation over the operator API (curl): whichever wins, the
 * device ends revoked with no valid certificate and nothing issued after it.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { caFiles } from "./support/ca.ts";
import { cliCreateTokenBatch, edgeid } from "./support/cli.ts";
import { curl, estPost } from "./support/curl.ts";
import { enrollDevice } from "./support/enroll.ts";
import { pkcs7ToPem, writePem } from "./support/openssl.ts";
import { eventually, makeWorkDir, removeDir, run } from "./support/process.ts";
import { cliInitDataDir, startServer, type TestServer } from "./support/server.ts";

const ROUNDS = Number(process.env.RACE_ROUNDS ?? 8);
const LOOPS = 3;
/** A loop stops after this many renewals if the revocation never reached it (it always should). */
const MAX_RENEWALS = 40;

let work: string;
let server: TestServer;
let adminToken: string;

beforeAll(async () => {
  work = await makeWorkDir("race");
  const init = await cliInitDataDir(work, "race.example");
  const { dataDir } = init;
  adminToken = init.adminToken;
  server = await startServer(dataDir, work, 0, { mqtt: "off" });
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await removeDir(work);
});

/** A new P-256 key (PKCS#8 PEM file) and a CSR for it (base64 DER). */
async function newKeyAndCsr(deviceId: string, name: string): Promise<{ keyFile: string; csr: string }> {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = (await crypto.subtle.generateKey(alg, true, ["sign", "verify"])) as CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${deviceId}`,
    keys,
    signingAlgorithm: alg,
  });
  const pkcs8 = Buffer.from(await crypto.subtle.exportKey("pkcs8", keys.privateKey)).toString("base64");
  const keyFile = join(work, `${name}.key`);
  await writeFile(
    keyFile,
    `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)?.join("\n")}\n-----END PRIVATE KEY-----\n`,
    {
      mode: 0o600,
    },
  );
  return { keyFile, csr: Buffer.from(csr.rawData).toString("base64") };
}

/**
 * Renews again and again with the certificate it last received, until refused. Calls
 * `onIssued` after each success; returns the refusals' status and first line.
 */
async function renewalLoop(
  deviceId: string,
  loop: number,
  start: { cert: string; key: string },
  onIssued: () => void,
): Promise<{ issued: number; refusal: string }> {
  let current = start;
  for (let i = 0; i < MAX_RENEWALS; i++) {
    const next = await newKeyAndCsr(deviceId, `${deviceId}-l${loop}-${i}`);
    const r = await estPost(server, work, "simplereenroll", next.csr, { cert: current.cert, key: current.key });
    if (r.status !== 200) return { issued: i, refusal: `${r.status} ${r.text.trim()}` };
    const [pem] = await pkcs7ToPem(work, r.body);
    current = { cert: await writePem(work, `${deviceId}-l${loop}-${i}.pem`, pem as string), key: next.keyFile };
    onIssued();
  }
  return { issued: MAX_RENEWALS, refusal: "never refused" };
}

describe("a revocation racing renewals, end to end", () => {
  it(`leaves nothing issued after it commits (${ROUNDS} rounds × ${LOOPS} curl renewal loops vs edgeid devices revoke)`, async () => {
    const { chainFile, issuingFile } = await caFiles(server, work);
    const refusals = new Map<string, number>();
    let wonBefore = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const id = `race-${round}`;
      const device = await enrollDevice(server, work, id);
      // The revocation starts once the loops have renewed a few times (more in later rounds).
      let issued = 0;
      let startRevocation: () => void = () => undefined;
      const revocationDue = new Promise<void>((r) => {
        startRevocation = r;
      });
      const due = 1 + (round % 4);
      const loops = Array.from({ length: LOOPS }, (_, loop) =>
        renewalLoop(id, loop, { cert: device.cert, key: device.key }, () => {
          if (++issued >= due) startRevocation();
        }),
      );
      // If every loop was refused before reaching `due` (they supersede one another), revoke anyway.
      void Promise.all(loops).then(() => startRevocation());
      await revocationDue;
      const revoked = await edgeid(["devices", "revoke", id, "--reason", "keyCompromise", "--data", server.dataDir]);
      expect(revoked.code, revoked.stderr).toBe(0);
      for (const r of await Promise.all(loops)) {
        wonBefore += r.issued;
        const first = r.refusal.slice(0, 40);
        refusals.set(first, (refusals.get(first) ?? 0) + 1);
      }
    }
    // Every loop ended refused, never by running out.
    expect(refusals.get("never refused")).toBeUndefined();
    expect(wonBefore).toBeGreaterThan(0);

    const db = new Database(join(server.dataDir, "edgeid.db"), { readonly: true });
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const id = `race-${round}`;
        const status = db.prepare("SELECT status FROM devices WHERE id = ?").get(id) as { status: string };
        expect(status.status).toBe("revoked");
        const valid = db.prepare("SELECT serial FROM certificates WHERE device_id = ? AND status = 'valid'").all(id);
        expect(valid).toEqual([]);
        const revokeId = (
          db
            .prepare(
              "SELECT id FROM audit_events WHERE device_id = ? AND action = 'device.revoke' AND outcome = 'success'",
            )
            .get(id) as { id: number }
        ).id;
        const after = db
          .prepare(
            "SELECT id, serial FROM audit_events WHERE device_id = ? AND action LIKE 'est.%' AND outcome = 'success' AND id > ?",
          )
          .all(id, revokeId);
        expect(after).toEqual([]);
      }
      // Independent checks of the last round's certificates: openssl ocsp and the served CRL.
      const last = db
        .prepare("SELECT serial, der FROM certificates WHERE device_id = ? ORDER BY issued_at")
        .all(`race-${ROUNDS - 1}`) as { serial: string; der: Buffer }[];
      expect(last.length).toBeGreaterThan(1);
      // The server learns of the CLI's revocation from the revocation feed; its next CRL lists them all.
      const norm = (hex: string) => hex.toLowerCase().replace(/^0+/, "");
      const listed = await eventually(
        async () => {
          const crl = await curl(work, `${server.url}/pki/crl/issuing-p256.crl`, { cacert: server.rootPemFile });
          const crlFile = join(work, "race.crl");
          await writeFile(crlFile, crl.body);
          const text = (await run("openssl", ["crl", "-inform", "DER", "-in", crlFile, "-noout", "-text"])).stdout;
          return new Set([...text.matchAll(/Serial Number: ([0-9A-F]+)/g)].map((m) => norm(m[1] as string)));
        },
        (serials) => last.every((c) => serials.has(norm(c.serial))),
      );
      expect(last.filter((c) => !listed.has(norm(c.serial)))).toEqual([]);
      for (const c of last) {
        const certFile = await writePem(
          work,
          `ocsp-${c.serial}.pem`,
          new x509.X509Certificate(new Uint8Array(c.der)).toString("pem"),
        );
        const ocsp = await run("openssl", [
          "ocsp",
          "-issuer",
          issuingFile,
          "-cert",
          certFile,
          "-url",
          `${server.url}/pki/ocsp`,
          "-CAfile",
          chainFile,
          "-no_nonce",
        ]);
        expect(ocsp.stdout, ocsp.stderr).toMatch(/: revoked/);
      }
    } finally {
      db.close();
    }
  }, 240_000);

  it("token enrollments racing the device's revocation over the operator API: revoked either way (24 rounds)", async () => {
    // About 60/40 either way here (4 runs); 24 rounds all one way would be ~1 in 200,000.
    const rounds = 24;
    const tokens = await cliCreateTokenBatch(server.dataDir, "tok-race-", rounds);
    const outcomes = new Map<string, number>();
    for (const [round, t] of tokens.entries()) {
      const csr = await newKeyAndCsr(t.deviceId, `${t.deviceId}-${round}`);
      // Both requests leave at once, each from its own curl process.
      const [enrolled, revoked] = await Promise.all([
        estPost(server, work, "simpleenroll", csr.csr, { basic: { user: t.deviceId, password: t.token } }),
        curl(work, `${server.url}/api/v1/devices/${t.deviceId}/revoke`, {
          method: "POST",
          bearer: adminToken,
          contentType: "application/json",
          body: JSON.stringify({ reason: "keyCompromise" }),
          cacert: server.rootPemFile,
        }),
      ]);
      expect(revoked.status, revoked.text).toBe(200);
      const key = `enroll ${enrolled.status}`;
      outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
      expect([200, 401, 403]).toContain(enrolled.status);
    }
    const db = new Database(join(server.dataDir, "edgeid.db"), { readonly: true });
    try {
      for (const t of tokens) {
        const device = db.prepare("SELECT status FROM devices WHERE id = ?").get(t.deviceId) as { status: string };
        expect(device.status).toBe("revoked");
        expect(
          db.prepare("SELECT serial FROM certificates WHERE device_id = ? AND status = 'valid'").all(t.deviceId),
        ).toEqual([]);
        const revokeId = (
          db
            .prepare(
              "SELECT id FROM audit_events WHERE device_id = ? AND action = 'device.revoke' AND outcome = 'success'",
            )
            .get(t.deviceId) as { id: number }
        ).id;
        expect(
          db
            .prepare(
              "SELECT id FROM audit_events WHERE device_id = ? AND action LIKE 'est.%' AND outcome = 'success' AND id > ?",
            )
            .all(t.deviceId, revokeId),
        ).toEqual([]);
      }
    } finally {
      db.close();
    }
    // Over the rounds both orders happen (an enrollment that won, one that lost).
    expect(outcomes.get("enroll 200") ?? 0).toBeGreaterThan(0);
    expect([...outcomes.keys()].some((k) => k !== "enroll 200")).toBe(true);
  }, 120_000);
});
