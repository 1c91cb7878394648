/**
 * Pruning expired workload X.509-SVIDs (issue 24): over a real SQLite file with real
 * keys and a manual clock. What is past the retention goes with its key's claim; what
 * is unexpired, within the retention, revoked but unexpired, or the device's own
 * certificate stays; CRLs and OCSP answer the same for every certificate still valid.
 */
import * as x509 from "@peculiar/x509";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Actor } from "../../server/authority/actor.ts";
import { RevocationResponders } from "../../server/authority/responders.ts";
import { createToken, generateKeys, type Harness, harness, makeCsr, peer, TEST_CONFIG } from "../support/fixtures.ts";
import { ocspStatus } from "../support/ocsp.ts";
import { registerOperator } from "../support/operators.ts";

const OPERATOR: Actor = { id: "operator:op_prune", role: "operator", remote: "192.0.2.7" };
const HOUR = 3600;
const DAY = 86400;

describe("pruning expired workload SVIDs", () => {
  let h: Harness;

  const setup = async (svidRetention?: string) => {
    h = await harness({
      config: {
        ...TEST_CONFIG,
        profiles: { ...TEST_CONFIG.profiles, device: { validity: "30d" } },
        ...(svidRetention ? { spiffe: { svidRetention } } : {}),
      },
    });
    await registerOperator(h, OPERATOR);
  };
  afterEach(() => h.close());

  const enroll = async (deviceId: string) => {
    const token = await createToken(h, deviceId);
    const keys = await generateKeys("P-256");
    const issued = await h.authority.enroll({
      csr: await makeCsr(keys),
      credentials: { type: "basic", username: deviceId, password: token },
      peer: peer(),
    });
    return { cert: issued.certificate, keys };
  };
  const register = (device: string, name: string) =>
    h.authority.workloads.register(OPERATOR, { device, name, selectors: ["unix:uid:1000"], ttl: HOUR });
  /** One SVID for the entry (a fresh key unless one is given); its serial and key fingerprint. */
  const svid = async (cert: Uint8Array, entryId: string, keys?: CryptoKeyPair) => {
    const k = keys ?? (await generateKeys("P-256"));
    const [s] = (await h.authority.workloadSvids.issueX509(peer([cert]), [{ entryId, csr: await makeCsr(k) }])).svids;
    const serial = s?.serial as string;
    const row = await h.storage.getCertificate(serial);
    return { serial, keyFingerprint: row?.keyFingerprint as string, keys: k };
  };
  const claim = (fingerprint: string) =>
    h.storage.sqlite.prepare("SELECT device_id FROM device_keys WHERE key_fingerprint = ?").get(fingerprint) as
      | { device_id: string }
      | undefined;
  const pruneAudits = async () =>
    (await h.storage.listAudit({ action: "workload.svids_pruned", limit: 100 })).map((e) => e.detail?.count);

  describe("with the default retention (7 days)", () => {
    beforeEach(() => setup());

    it("deletes SVIDs expired longer than the retention and their keys' claims, and nothing else", async () => {
      const { cert } = await enroll("gw-1");
      const deviceCert = (await h.storage.listCertificates("gw-1"))[0];
      const web = await register("gw-1", "web");
      const db = await register("gw-1", "db");
      const old = await svid(cert, web.id); // expires at T0+1h
      const reused = await svid(cert, db.id); // its key is certified again below
      h.clock.advance(2 * DAY);
      const recent = await svid(cert, web.id); // expires at T0+2d+1h
      const again = await svid(cert, db.id, reused.keys);
      expect(again.keyFingerprint).toBe(reused.keyFingerprint);

      // T0+8d+2h: `old` and `reused` expired 8 days ago; `recent` 6 days ago (retained).
      h.clock.advance(6 * DAY + 2 * HOUR);
      // Nothing at T0+7d+1h: exactly 7 days after `old` expired is not older than the retention.
      h.clock.advance(-(DAY + HOUR));
      expect((await h.authority.workloadSvids.prune()).pruned).toBe(0);
      expect(await pruneAudits()).toEqual([]);
      h.clock.advance(DAY + HOUR);

      const r = await h.authority.workloadSvids.prune();
      expect(r).toMatchObject({ pruned: 2, batches: 1 });
      expect(r.before.getTime()).toBe(h.clock.now().getTime() - 7 * DAY * 1000);
      expect(await h.storage.getCertificate(old.serial)).toBeUndefined();
      expect(await h.storage.getCertificate(reused.serial)).toBeUndefined();
      expect(await h.storage.getCertificate(recent.serial)).toBeDefined();
      expect(await h.storage.getCertificate(again.serial)).toBeDefined();
      // The claim of a key no certificate holds any more goes; one still certified stays.
      expect(claim(old.keyFingerprint)).toBeUndefined();
      expect(claim(reused.keyFingerprint)).toEqual({ device_id: "gw-1" });
      expect(claim(recent.keyFingerprint)).toEqual({ device_id: "gw-1" });
      // The device's own certificate and its key's claim are untouched.
      expect((await h.storage.listCertificates("gw-1")).map((c) => c.serial)).toEqual([deviceCert?.serial]);
      expect(claim(deviceCert?.keyFingerprint as string)).toEqual({ device_id: "gw-1" });
      // One audit record with the count; a run that finds nothing writes none.
      expect(await pruneAudits()).toEqual([2]);
      expect((await h.authority.workloadSvids.prune()).pruned).toBe(0);
      expect(await pruneAudits()).toEqual([2]);
      const [audit] = await h.storage.listAudit({ action: "workload.svids_pruned", limit: 1 });
      expect(audit).toMatchObject({ actor: "server", outcome: "success" });
      expect(audit?.detail?.expiredBefore).toBe(r.before.toISOString());
      // The audit chain still verifies.
      expect((await h.authority.audit.verify(OPERATOR)).ok).toBe(true);
    });

    it("never deletes a device's own certificates, however long expired", async () => {
      const { cert } = await enroll("gw-1");
      const web = await register("gw-1", "web");
      const s = await svid(cert, web.id);
      h.clock.advance(400 * DAY);
      expect((await h.authority.workloadSvids.prune()).pruned).toBe(1);
      expect(await h.storage.getCertificate(s.serial)).toBeUndefined();
      const own = await h.storage.listCertificates("gw-1");
      expect(own).toHaveLength(1);
      expect(claim(own[0]?.keyFingerprint as string)).toEqual({ device_id: "gw-1" });
      // Even when asked by serial, the write deletes no device certificate.
      await h.storage.apply([
        { kind: "pruneWorkloadSvids", serials: [own[0]?.serial as string], before: h.clock.now() },
      ]);
      expect(await h.storage.listCertificates("gw-1")).toHaveLength(1);
    });

    it("deletes in bounded batches, each write set with its own audit record, at most maxBatches per run", async () => {
      const { cert } = await enroll("gw-1");
      const entries = await Promise.all(["a", "b", "c", "d", "e"].map((n) => register("gw-1", n)));
      const serials: string[] = [];
      for (const e of entries) serials.push((await svid(cert, e.id)).serial);
      h.clock.advance(10 * DAY);
      const first = await h.authority.workloadSvids.prune({ batch: 2, maxBatches: 2 });
      expect(first).toMatchObject({ pruned: 4, batches: 2 });
      expect(await h.storage.expiredWorkloadSvids(first.before, 10)).toHaveLength(1);
      const second = await h.authority.workloadSvids.prune({ batch: 2, maxBatches: 2 });
      expect(second).toMatchObject({ pruned: 1, batches: 1 });
      for (const s of serials) expect(await h.storage.getCertificate(s)).toBeUndefined();
      expect(await pruneAudits()).toEqual([1, 2, 2]);
    });
  });

  describe("with no retention at all", () => {
    beforeEach(() => setup("0s"));

    it("keeps a revoked SVID until it has expired: the CRL and OCSP still list it", async () => {
      const { cert } = await enroll("gw-1");
      const gone = await register("gw-1", "gone");
      const stays = await register("gw-1", "stays");
      const revoked = await svid(cert, gone.id);
      const valid = await svid(cert, stays.id);
      await h.authority.workloads.delete(OPERATOR, gone.id);
      h.clock.advance(30 * 60);
      const expired = await svid(cert, stays.id); // expires at T0+1.5h
      h.clock.advance(30 * 60); // T0+1h: `revoked` and `valid` expire now (notAfter is not before now)
      expect((await h.authority.workloadSvids.prune()).pruned).toBe(0);
      h.clock.advance(10); // `revoked` and `valid` expired; `expired` has not
      const r = await h.authority.workloadSvids.prune();
      expect(r.pruned).toBe(2);
      expect(await h.storage.getCertificate(revoked.serial)).toBeUndefined();
      expect(await h.storage.getCertificate(valid.serial)).toBeUndefined();
      expect(await h.storage.getCertificate(expired.serial)).toBeDefined();

      // A revoked SVID with time left is never pruned; CRLs and OCSP built afresh still list it.
      const third = await register("gw-1", "third");
      const late = await svid(cert, third.id);
      await h.authority.workloads.delete(OPERATOR, third.id);
      h.clock.advance(50 * 60);
      expect((await h.authority.workloadSvids.prune()).pruned).toBe(1); // `expired` only
      expect(await h.storage.getCertificate(late.serial)).toMatchObject({ status: "revoked" });
      const fresh = new RevocationResponders(h.deps);
      await fresh.start();
      try {
        const crl = new x509.X509Crl(fresh.currentCrl("issuing-p256")?.der as Uint8Array<ArrayBuffer>);
        expect(crl.entries.map((e) => e.serialNumber)).toContain(late.serial);
        // The pruned, expired one has left the CRL as RFC 5280 allows.
        expect(crl.entries.map((e) => e.serialNumber)).not.toContain(revoked.serial);
        expect((await ocspStatus({ ...h, responders: fresh }, late.serial)).tag).toBe(1);
      } finally {
        fresh.stop();
      }
    });
  });
});
