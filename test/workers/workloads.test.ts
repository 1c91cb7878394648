/**
 * Workload identity on Workers with D1: entries registered beside the Worker (the core
 * over the D1 adapter), the device's entries and X.509-SVIDs through the Worker with the
 * identity Cloudflare passes in `request.cf.tlsClientAuth`, the guards of the issuance
 * batch in a D1 batch, and the entry's deletion revoking its SVIDs (OCSP says so).
 */
import "reflect-metadata";
import { applyD1Migrations, env, SELF } from "cloudflare:test";
import * as x509 from "@peculiar/x509";
import { beforeAll, describe, expect, it } from "vitest";
import { D1Storage } from "../../server/adapters/storage/d1-storage.ts";
import { createTokens } from "../../server/authority/tokens.ts";
import { pruneWorkloadSvids } from "../../server/authority/workload-pruning.ts";
import { deleteWorkload, registerWorkload } from "../../server/authority/workloads.ts";
import { registerOperator } from "../support/operators.ts";
import { BASE, basic, certificateOf, coreDeps, csr, ocspStatus } from "./worker-client.ts";

const storage = new D1Storage(env.DB, crypto.subtle);
const deps = coreDeps(storage);
const OPERATOR = { id: "operator:wl", role: "operator" } as const;

beforeAll(async () => {
  await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);
  await registerOperator({ storage }, OPERATOR);
});

async function enrolled(deviceId: string): Promise<string> {
  const [t] = await createTokens(deps, { deviceIds: [deviceId], actor: "cli" });
  const r = await SELF.fetch(`${BASE}/.well-known/est/simpleenroll`, {
    method: "POST",
    headers: { "content-type": "application/pkcs10", authorization: basic(deviceId, (t as { token: string }).token) },
    body: await csr(deviceId),
  });
  expect(r.status, await r.clone().text()).toBe(200);
  const digest = await crypto.subtle.digest("SHA-256", certificateOf(await r.text()).rawData);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

const cf = (fingerprint: string) => ({
  tlsClientAuth: { certPresented: "1", certVerified: "SUCCESS", certFingerprintSHA256: fingerprint },
});

describe("workload identity on Workers with D1", () => {
  it("serves a device its entries and X.509-SVIDs, refuses other devices' entries, revokes on delete", async () => {
    const fingerprint = await enrolled("wl-1");
    await enrolled("wl-2");
    const entry = await registerWorkload(deps, OPERATOR, {
      devicePrefix: "wl-1",
      name: "agent",
      selectors: ["systemd:unit:agent.service"],
      ttl: 600,
    });
    const theirs = await registerWorkload(deps, OPERATOR, { device: "wl-2", name: "x", selectors: ["unix:uid:7"] });

    const entries = await SELF.fetch(`${BASE}/workload/v1/entries`, { cf: cf(fingerprint) });
    expect(entries.status, await entries.clone().text()).toBe(200);
    const body = (await entries.json()) as { trustDomain: string; entries: { id: string; spiffeId: string }[] };
    expect(body.trustDomain).toBe("workers.example");
    expect(body.entries.map((e) => [e.id, e.spiffeId])).toEqual([
      [entry.id, "spiffe://workers.example/device/wl-1/workload/agent"],
    ]);
    expect((await SELF.fetch(`${BASE}/workload/v1/entries`)).status).toBe(403);

    const post = async (entryIds: string[]) =>
      SELF.fetch(`${BASE}/workload/v1/x509-svids`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          requests: await Promise.all(entryIds.map(async (id) => ({ entryId: id, csr: await csr("x") }))),
        }),
        cf: cf(fingerprint),
      });
    const refused = await post([entry.id, theirs.id]);
    expect(refused.status).toBe(403);
    expect(await storage.listWorkloadSvids("wl-1", 10)).toEqual([]);

    const r = await post([entry.id]);
    expect(r.status, await r.clone().text()).toBe(200);
    const issued = (await r.json()) as { svids: { certificate: string; serial: string; notAfter: string }[] };
    const svid = issued.svids[0] as (typeof issued.svids)[number];
    const cert = new x509.X509Certificate(Uint8Array.from(atob(svid.certificate), (c) => c.charCodeAt(0)));
    expect(cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON()).toEqual([
      { type: "url", value: "spiffe://workers.example/device/wl-1/workload/agent" },
    ]);
    expect(cert.getExtension(x509.BasicConstraintsExtension)?.ca).toBe(false);
    expect(cert.notAfter.getTime() - Date.now()).toBeLessThanOrEqual(600_000);
    expect(await ocspStatus(svid.serial)).toBe(0);

    await deleteWorkload(deps, OPERATOR, entry.id);
    expect((await storage.getCertificate(svid.serial))?.status).toBe("revoked");
    // The Worker reads revocations from D1 (its OCSP answers follow the feed).
    expect(await ocspStatus(svid.serial)).toBe(1);
  });

  it("prunes SVIDs expired longer than the retention in a D1 batch, with their key's claim, not the device's certificate", async () => {
    const fingerprint = await enrolled("wl-3");
    const entry = await registerWorkload(deps, OPERATOR, { device: "wl-3", name: "p", selectors: ["unix:uid:9"] });
    const r = await SELF.fetch(`${BASE}/workload/v1/x509-svids`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ requests: [{ entryId: entry.id, csr: await csr("x") }] }),
      cf: cf(fingerprint),
    });
    expect(r.status, await r.clone().text()).toBe(200);
    const [svid] = ((await r.json()) as { svids: { serial: string }[] }).svids;
    const serial = (svid as { serial: string }).serial;
    const key = (await storage.getCertificate(serial))?.keyFingerprint as string;
    const claimed = async () =>
      (
        await env.DB.prepare("SELECT device_id FROM device_keys WHERE key_fingerprint = ?")
          .bind(key)
          .first<{ device_id: string }>()
      )?.device_id ?? null;
    expect(await claimed()).toBe("wl-3");

    // Within the retention (7 days after its notAfter) it stays.
    const at = (days: number) => ({ now: () => new Date(Date.now() + days * 86_400_000) });
    expect((await pruneWorkloadSvids({ ...deps, clock: at(7) })).pruned).toBe(0);
    expect(await storage.getCertificate(serial)).toBeDefined();
    const run = await pruneWorkloadSvids({ ...deps, clock: at(8) });
    expect(run.pruned).toBeGreaterThanOrEqual(1);
    expect(await storage.getCertificate(serial)).toBeUndefined();
    expect(await claimed()).toBeNull();
    // The device's own certificate (expired by then too) is untouched.
    expect((await storage.listCertificates("wl-3")).map((c) => c.fingerprint)).toEqual([fingerprint]);
    const [audit] = await storage.listAudit({ action: "workload.svids_pruned", limit: 1 });
    expect(audit?.detail?.count).toBe(run.pruned);
  });
});
