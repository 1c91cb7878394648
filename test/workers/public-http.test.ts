/**
 * Revocation data over plain HTTP on Workers: with a public http base configured
 * (PUBLIC_HTTP_URL, or publicHttpUrl in EDGEID_CONFIG), certificates name http:// CRL
 * and OCSP URLs, and a request that reached the Worker over plain HTTP is answered by the
 * public app only — the same paths as the Node server's public listener (CRL, OCSP, CA
 * certificates, /healthz); everything else is 404 there and no credential is read.
 */
import "reflect-metadata";
import { applyD1Migrations, env } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { D1Storage } from "../../server/adapters/storage/d1-storage.ts";
import { createTokens } from "../../server/authority/tokens.ts";
import worker from "../../server/entry/worker.ts";
import { readRevocationUrls } from "../../server/pki/certificate.ts";
import { pemCertificates } from "../../server/pki/pem.ts";
import { BASE, basic, certificateOf, coreDeps, csr, ocspStatus } from "./worker-client.ts";

const HTTP_BASE = BASE.replace(/^https:/, "http:");
const storage = new D1Storage(env.DB, crypto.subtle);
const deps = coreDeps(storage);
/** The Worker's bindings with a public http base: one object, so the isolate builds its app once. */
const withHttp = { ...env, PUBLIC_HTTP_URL: HTTP_BASE };

const call = (url: string, init: RequestInit = {}, bindings: unknown = withHttp) =>
  worker.fetch(new Request(url, init), bindings as never, {});

async function token(deviceId: string): Promise<string> {
  const [t] = await createTokens(deps, { deviceIds: [deviceId], actor: "cli" });
  return (t as { token: string }).token;
}

const enrollAt = async (base: string, deviceId: string, secret: string) =>
  call(`${base}/.well-known/est/simpleenroll`, {
    method: "POST",
    headers: { "content-type": "application/pkcs10", authorization: basic(deviceId, secret) },
    body: await csr(deviceId),
  });

beforeAll(async () => {
  await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);
});

describe("plain HTTP on Workers", () => {
  it("issues certificates with http:// CRL and OCSP URLs, answered over plain HTTP", async () => {
    const r = await enrollAt(BASE, "wk-http-1", await token("wk-http-1"));
    expect(r.status, await r.clone().text()).toBe(200);
    const cert = certificateOf(await r.text());
    expect(readRevocationUrls(new Uint8Array(cert.rawData))).toEqual({
      crl: [`${HTTP_BASE}/pki/crl/issuing-p256.crl`],
      ocsp: [`${HTTP_BASE}/pki/ocsp`],
    });
    const serial = cert.serialNumber.toLowerCase();
    const over = (url: string, init: RequestInit) => call(url, init);
    expect(await ocspStatus(serial, over, HTTP_BASE)).toBe(0);
    expect(await ocspStatus(serial, over, BASE)).toBe(0);

    const crl = await call(`${HTTP_BASE}/pki/crl/issuing-p256.crl`);
    expect([crl.status, crl.headers.get("content-type")]).toEqual([200, "application/pkix-crl"]);
    const crt = await call(`${HTTP_BASE}/pki/ca/issuing-p256.crt`);
    expect([crt.status, crt.headers.get("content-type")]).toEqual([200, "application/pkix-cert"]);
    expect(new Uint8Array(await crt.arrayBuffer())).toEqual(pemCertificates(env.CA_CHAIN)[0]);
    const p7c = await call(`${HTTP_BASE}/pki/ca/issuing-p256.p7c`);
    expect(p7c.status).toBe(200);
    const health = await call(`${HTTP_BASE}/healthz`);
    expect([health.status, await health.text()]).toEqual([200, "ok\n"]);
  });

  it("answers 404 over plain HTTP to everything that is not public, and reads no credential", async () => {
    const secret = await token("wk-http-2");
    for (const path of [
      "/",
      "/api/v1/devices",
      "/.well-known/est/cacerts",
      "/.well-known/est/simpleenroll",
      "/dashboard",
      "/metrics",
    ]) {
      for (const method of ["GET", "POST"]) {
        const r = await call(`${HTTP_BASE}${path}`, {
          method,
          headers: { authorization: basic("wk-http-2", secret), "content-type": "application/pkcs10" },
          ...(method === "POST" ? { body: await csr("wk-http-2") } : {}),
        });
        expect([path, method, r.status, await r.text()]).toEqual([path, method, 404, "not found\n"]);
      }
    }
    // The token made the device "pending"; nothing over plain HTTP enrolled it.
    expect(await storage.getDevice("wk-http-2")).toMatchObject({ status: "pending", currentSerial: null });
    // The token was not spent: it enrolls over https.
    const r = await enrollAt(BASE, "wk-http-2", secret);
    expect(r.status, await r.clone().text()).toBe(200);
  });

  it("without a public http base, keeps https:// URLs and one app for both schemes (wrangler dev serves http)", async () => {
    // Other bindings: the isolate builds its app again from them.
    const r = await call(
      `${BASE}/.well-known/est/simpleenroll`,
      {
        method: "POST",
        headers: { "content-type": "application/pkcs10", authorization: basic("wk-http-3", await token("wk-http-3")) },
        body: await csr("wk-http-3"),
      },
      env,
    );
    expect(r.status, await r.clone().text()).toBe(200);
    const cert = certificateOf(await r.text());
    expect(readRevocationUrls(new Uint8Array(cert.rawData))).toEqual({
      crl: [`${BASE}/pki/crl/issuing-p256.crl`],
      ocsp: [`${BASE}/pki/ocsp`],
    });
    expect((await call(`${HTTP_BASE}/.well-known/est/cacerts`, {}, env)).status).toBe(200);
  });
});
