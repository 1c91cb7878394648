/**
 * The Worker (server/entry/worker.ts) inside workerd with a local D1 database: EST
 * enrollment with a token, re-enrollment with the identity Cloudflare passes in
 * `request.cf.tlsClientAuth` (present, absent, unverified, unknown, revoked), a token
 * used twice at once, OCSP and the CRL after a revocation, and the audit chain that the
 * D1 adapter seals after each batch.
 */
import "reflect-metadata";
import { applyD1Migrations, env, SELF } from "cloudflare:test";
import * as x509 from "@peculiar/x509";
import { beforeAll, describe, expect, it } from "vitest";
import { D1Storage } from "../../server/adapters/storage/d1-storage.ts";
import { CLI_ACTOR } from "../../server/authority/actor.ts";
import { verifyAuditChain } from "../../server/authority/audit-chain.ts";
import { createOperator } from "../../server/authority/operators.ts";
import { createTokens } from "../../server/authority/tokens.ts";
import worker from "../../server/entry/worker.ts";
import { pemCertificates } from "../../server/pki/pem.ts";
import { registerOperator } from "../support/operators.ts";
import { BASE, basic, certificateOf, coreDeps, csr, ocspStatus } from "./worker-client.ts";

const storage = new D1Storage(env.DB, crypto.subtle);
const deps = coreDeps(storage);

/** The operator revokeCertificateDirect acts as: operator actions are guarded on it being active. */
const TEST_OPERATOR = { id: "operator:test", role: "operator" } as const;

beforeAll(async () => {
  await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);
  await registerOperator({ storage }, TEST_OPERATOR);
});

async function token(deviceId: string): Promise<string> {
  const [t] = await createTokens(deps, { deviceIds: [deviceId], actor: "cli" });
  return (t as { token: string }).token;
}

async function enroll(deviceId: string, secret: string) {
  return SELF.fetch(`${BASE}/.well-known/est/simpleenroll`, {
    method: "POST",
    headers: { "content-type": "application/pkcs10", authorization: basic(deviceId, secret) },
    body: await csr(deviceId),
  });
}

const tlsClientAuth = (fingerprint: string, verified = "SUCCESS") => ({
  tlsClientAuth: { certPresented: "1", certVerified: verified, certFingerprintSHA256: fingerprint },
});

async function reenroll(deviceId: string, cf?: Record<string, unknown>) {
  return SELF.fetch(`${BASE}/.well-known/est/simplereenroll`, {
    method: "POST",
    headers: { "content-type": "application/pkcs10" },
    body: await csr(deviceId),
    ...(cf ? { cf } : {}),
  });
}

async function fingerprintOf(cert: x509.X509Certificate): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", cert.rawData);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

describe("edgeid on Workers with D1", () => {
  it("serves cacerts and enrolls with a token", async () => {
    const cacerts = await SELF.fetch(`${BASE}/.well-known/est/cacerts`);
    expect(cacerts.status).toBe(200);
    expect(cacerts.headers.get("content-type")).toMatch(/^application\/pkcs7-mime/);
    const r = await enroll("wk-1", await token("wk-1"));
    expect(r.status, await r.clone().text()).toBe(200);
    const cert = certificateOf(await r.text());
    expect(cert.subject).toBe("CN=wk-1");
    const san = cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON();
    expect(san).toEqual([{ type: "url", value: "spiffe://workers.example/device/wk-1" }]);
    const [issuing] = pemCertificates(env.CA_CHAIN);
    expect(cert.issuer).toBe(new x509.X509Certificate(issuing as Uint8Array<ArrayBuffer>).subject);
    expect((await storage.getDevice("wk-1"))?.status).toBe("active");
    // The audit records of the batch were sealed into the hash chain.
    const chain = await verifyAuditChain(deps, CLI_ACTOR);
    expect(chain.ok).toBe(true);
    expect(chain.records).toBeGreaterThanOrEqual(2);
  });

  it("serves csrattrs and the operator API (bearer token, roles)", async () => {
    const attrs = await SELF.fetch(`${BASE}/.well-known/est/csrattrs`);
    expect(attrs.status).toBe(200);
    expect(attrs.headers.get("content-type")).toBe("application/csrattrs");
    const { token: bearer } = await createOperator(deps, { name: "wk-auditor", role: "auditor", actor: CLI_ACTOR });
    const anonymous = await SELF.fetch(`${BASE}/api/v1/devices`);
    expect(anonymous.status).toBe(401);
    await token("wk-listed");
    const listed = await SELF.fetch(`${BASE}/api/v1/devices?limit=100`, {
      headers: { authorization: `Bearer ${bearer}` },
    });
    expect(listed.status).toBe(200);
    const page = (await listed.json()) as { items: { id: string; status: string }[] };
    expect(page.items).toContainEqual(expect.objectContaining({ id: "wk-listed", status: "pending" }));
    // An auditor may read but not revoke.
    const refused = await SELF.fetch(`${BASE}/api/v1/devices/wk-listed/revoke`, {
      method: "POST",
      headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
      body: JSON.stringify({ reason: "keyCompromise" }),
    });
    expect(refused.status).toBe(403);
  });

  it("ingests device messages relayed by `edgeid bridge` (no broker reaches a Worker)", async () => {
    expect((await enroll("wk-br", await token("wk-br"))).status).toBe(200);
    const { token: operator } = await createOperator(deps, { name: "wk-bridge", role: "operator", actor: CLI_ACTOR });
    const { token: auditor } = await createOperator(deps, { name: "wk-reader", role: "auditor", actor: CLI_ACTOR });
    const messages = [
      {
        topic: "edgeid/v1/devices/wk-br/status",
        payload: JSON.stringify({ v: 1, state: "online", session: 3, ts: new Date().toISOString() }),
      },
      {
        topic: "edgeid/v1/devices/wk-br/events",
        payload: JSON.stringify({ id: "wk-ev-1", type: "rotated", at: new Date().toISOString() }),
      },
      { topic: "edgeid/v1/devices/wk-br/status", payload: "not json" },
    ];
    const post = (bearer: string) =>
      SELF.fetch(`${BASE}/api/v1/fleet/messages`, {
        method: "POST",
        headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
        body: JSON.stringify({ messages }),
      });
    expect((await post(auditor)).status).toBe(403);
    const r = await post(operator);
    expect(r.status, await r.clone().text()).toBe(200);
    expect(await r.json()).toEqual({ outcomes: ["accepted", "accepted", "malformed"] });
    expect((await storage.getDeviceStatus("wk-br"))?.session).toBe(3);
    expect((await storage.listDeviceEvents("wk-br", undefined, 10)).map((e) => e.eventId)).toEqual(["wk-ev-1"]);
  });

  it("runs expiry alerts and the fleet audit from the Cron Trigger, and serves /metrics", async () => {
    const [t] = await createTokens(deps, { deviceIds: ["wk-app"], profile: "appliance", actor: "cli" });
    const r = await SELF.fetch(`${BASE}/.well-known/est/appliance/simpleenroll`, {
      method: "POST",
      headers: { "content-type": "application/pkcs10", authorization: basic("wk-app", (t as { token: string }).token) },
      body: await csr("wk-app"),
    });
    expect(r.status).toBe(200);
    const serial = (await storage.getDevice("wk-app"))?.currentSerial as string;
    expect(await storage.expiryAlertSent(serial, 30)).toBe(false);
    await worker.scheduled({}, env as never);
    // 20 days left, under the 30-day point: alerted once, and audited as such.
    expect(await storage.expiryAlertSent(serial, 30)).toBe(true);
    const audit = await storage.listAudit({ action: "fleet.audit", limit: 1 });
    expect(audit[0]?.actor).toBe("server");
    const { token: reader } = await createOperator(deps, { name: "wk-metrics", role: "auditor", actor: CLI_ACTOR });
    const metrics = await SELF.fetch(`${BASE}/metrics`, { headers: { authorization: `Bearer ${reader}` } });
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toMatch(/^edgeid_devices\{status="active"\} \d+$/m);
  });

  it("serves the dashboard from D1: sign-in, a session, the overview, a revoke through the form", async () => {
    const { token: bearer } = await createOperator(deps, { name: "wk-dash", role: "operator", actor: CLI_ACTOR });
    const enrolled = await enroll("wk-dash-dev", await token("wk-dash-dev"));
    expect(enrolled.status).toBe(200);
    const form = (fields: Record<string, string>, cookie?: string) => ({
      method: "POST",
      redirect: "manual" as const,
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        "sec-fetch-site": "same-origin",
        ...(cookie ? { cookie } : {}),
      },
      body: new URLSearchParams(fields).toString(),
    });
    const login = await SELF.fetch(`${BASE}/dashboard/login`, form({ token: bearer }));
    expect(login.status).toBe(303);
    const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0] ?? "";
    expect(cookie).toMatch(/^__Host-edgeid_session=eds_/);
    const overview = await SELF.fetch(`${BASE}/dashboard`, { headers: { cookie } });
    expect(overview.status).toBe(200);
    const html = await overview.text();
    expect(html).toContain("wk-dash (operator)");
    expect(html).toContain('data-testid="expiry-chart"');
    const csrf = /name="_csrf" value="([^"]+)"/.exec(html)?.[1] ?? "";
    const forged = await SELF.fetch(
      `${BASE}/dashboard/devices/wk-dash-dev/revoke`,
      form({ reason: "keyCompromise", confirm: "yes" }, cookie),
    );
    expect(forged.status).toBe(403);
    const revoked = await SELF.fetch(
      `${BASE}/dashboard/devices/wk-dash-dev/revoke`,
      form({ _csrf: csrf, reason: "keyCompromise", confirm: "yes" }, cookie),
    );
    expect(revoked.status).toBe(303);
    expect((await storage.getDevice("wk-dash-dev"))?.status).toBe("revoked");
    const page = await (await SELF.fetch(`${BASE}/dashboard/devices/wk-dash-dev`, { headers: { cookie } })).text();
    expect(page).toContain('data-testid="device-status">revoked<');
    expect((await verifyAuditChain(deps, CLI_ACTOR)).ok).toBe(true);
  });

  it("makes the key at serverkeygen (multipart: PKCS#8 key and certificate)", async () => {
    const [t] = await createTokens(deps, { deviceIds: ["wk-kg"], profile: "keyless", actor: "cli" });
    const r = await SELF.fetch(`${BASE}/.well-known/est/keyless/serverkeygen`, {
      method: "POST",
      headers: { "content-type": "application/pkcs10", authorization: basic("wk-kg", (t as { token: string }).token) },
      body: await csr("wk-kg"),
    });
    expect(r.status, await r.clone().text()).toBe(200);
    expect(r.headers.get("content-type")).toMatch(/^multipart\/mixed; boundary=/);
    const text = await r.text();
    expect(text).toContain("application/pkcs8");
    expect(text).toContain("application/pkcs7-mime; smime-type=certs-only");
    expect((await storage.getDevice("wk-kg"))?.status).toBe("active");
  });

  it("accepts a token used twice at once exactly once", async () => {
    const secret = await token("wk-race");
    const answers = await Promise.all([
      enroll("wk-race", secret),
      enroll("wk-race", secret),
      enroll("wk-race", secret),
    ]);
    expect(answers.map((a) => a.status).sort()).toEqual([200, 401, 401]);
    expect((await storage.listCertificates("wk-race")).length).toBe(1);
  });

  it("re-enrolls with the fingerprint Cloudflare passes, under the same rules as on Node", async () => {
    const first = certificateOf(await (await enroll("wk-2", await token("wk-2"))).text());
    const fp = await fingerprintOf(first);
    const absent = await reenroll("wk-2");
    expect(absent.status).toBe(403);
    expect(await absent.text()).toMatch(/needs the TLS client certificate/);
    const unverified = await reenroll("wk-2", tlsClientAuth(fp, "FAILED:self signed certificate"));
    expect(unverified.status).toBe(403);
    expect(await unverified.text()).toMatch(/could not verify the client certificate/);
    const unknown = await reenroll("wk-2", tlsClientAuth("ab".repeat(32)));
    expect(unknown.status).toBe(403);
    expect(await unknown.text()).toMatch(/not issued by this CA/);
    const renewed = await reenroll("wk-2", tlsClientAuth(fp));
    expect(renewed.status, await renewed.clone().text()).toBe(200);
    const second = certificateOf(await renewed.text());
    expect(second.serialNumber).not.toBe(first.serialNumber);
    // The replaced certificate may retry only while its successor stands; revoke the successor.
    const revoke = await revokeCertificateDirect(second.serialNumber.toLowerCase().replace(/^00(?=[89a-f])/, ""));
    expect(revoke).toBe(true);
    const revoked = await reenroll("wk-2", tlsClientAuth(await fingerprintOf(second)));
    expect(revoked.status).toBe(403);
    expect(await revoked.text()).toMatch(/revoked/);
  });

  it("answers 429 with Retry-After past a client's refusal budget (by cf-connecting-ip), not to other clients", async () => {
    let n = 0;
    const from = (ip: string) =>
      SELF.fetch(`${BASE}/.well-known/est/simpleenroll`, {
        method: "POST",
        headers: {
          "content-type": "application/pkcs10",
          // A new device id each time: the address is what runs out.
          authorization: basic(`flood-${n++}`, "edt_wrong"),
          "cf-connecting-ip": ip,
        },
        body: "MAo=",
      });
    const statuses: number[] = [];
    // The default budget: 60 refusals per address and minute.
    for (let i = 0; i < 62; i++) statuses.push((await from("198.51.100.71")).status);
    expect(statuses.slice(0, 60).every((s) => s === 401)).toBe(true);
    const limited = await from("198.51.100.71");
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get("retry-after"))).toBeGreaterThan(0);
    expect((await from("198.51.100.72")).status).toBe(401);
    const recorded = await storage.listAudit({ action: "est.simpleenroll", limit: 1000 });
    expect(recorded.filter((r) => r.remote === "198.51.100.71")).toHaveLength(60);
  });

  it("answers OCSP and serves the CRL with a revocation made elsewhere (another isolate, the CLI)", async () => {
    const cert = certificateOf(await (await enroll("wk-3", await token("wk-3"))).text());
    // The inventory's serial: the INTEGER's magnitude, without a sign byte.
    const serial = cert.serialNumber.toLowerCase().replace(/^00(?=[89a-f])/, "");
    expect(await ocspStatus(serial)).toBe(0);
    await revokeCertificateDirect(serial);
    expect(await ocspStatus(serial)).toBe(1);
    const crl = await SELF.fetch(`${BASE}/pki/crl/issuing-p256.crl`);
    expect(crl.status).toBe(200);
    const parsed = new x509.X509Crl(await crl.arrayBuffer());
    const [issuing] = pemCertificates(env.CA_CHAIN);
    expect(
      await parsed.verify({ publicKey: new x509.X509Certificate(issuing as Uint8Array<ArrayBuffer>).publicKey }),
    ).toBe(true);
    expect(parsed.entries.map((e) => e.serialNumber.toLowerCase().replace(/^00(?=[89a-f])/, ""))).toContain(serial);
  });
});

/** A revocation committed straight to D1, as another isolate or the CLI would. */
async function revokeCertificateDirect(serial: string): Promise<boolean> {
  const { revokeCertificate } = await import("../../server/authority/revoke.ts");
  const r = await revokeCertificate(deps as never, {
    serial,
    reason: "keyCompromise",
    actor: TEST_OPERATOR,
  });
  return r.status === "revoked";
}
