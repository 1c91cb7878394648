import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { listenerUrl, revocationBase } from "../../server/authority/issue.ts";
import { parseConfig } from "../../server/config/schema.ts";
import type { RequestLog } from "../../server/frontends/http/request-log.ts";
import { createPublicApp, PUBLIC_ROUTES } from "../../server/public-app.ts";
import { createToken, type Harness, harness } from "../support/fixtures.ts";

/** The public (plain HTTP) app in process: what it serves, what it refuses, what it logs and audits. */
describe("the public app", () => {
  let h: Harness;
  let app: ReturnType<typeof createPublicApp>;
  let logged: RequestLog[];

  beforeEach(async () => {
    h = await harness();
    logged = [];
    app = createPublicApp({
      authority: h.authority,
      responders: h.responders,
      peer: () => ({ remoteAddress: "192.0.2.7" }),
      logger: { request: (e) => logged.push(e), error: () => undefined },
    });
  });
  afterEach(() => h.close());

  it("serves the CRL, OCSP's refusals, the CA certificates and /healthz, logged as the public listener", async () => {
    const crl = await app.request("http://pki.test/pki/crl/issuing-p256.crl");
    expect([crl.status, crl.headers.get("content-type")]).toEqual([200, "application/pkix-crl"]);
    const ocsp = await app.request("http://pki.test/pki/ocsp", {
      method: "POST",
      headers: { "content-type": "application/ocsp-request" },
      body: new Uint8Array([0x30, 0x00]),
    });
    expect([ocsp.status, ocsp.headers.get("content-type")]).toEqual([400, "application/ocsp-response"]);
    const crt = await app.request("http://pki.test/pki/ca/issuing-p256.crt");
    expect(new Uint8Array(await crt.arrayBuffer())).toEqual(h.deps.ca.certificate);
    expect((await app.request("http://pki.test/healthz")).status).toBe(200);
    expect(logged.map((e) => [e.path, e.status, e.remote, e.listener])).toEqual([
      ["/pki/crl/issuing-p256.crl", 200, "192.0.2.7", "public"],
      ["/pki/ocsp", 400, "192.0.2.7", "public"],
      ["/pki/ca/issuing-p256.crt", 200, "192.0.2.7", "public"],
      ["/healthz", 200, "192.0.2.7", "public"],
    ]);
  });

  it("answers 404 to everything else, with no audit record and no credential read", async () => {
    const token = await createToken(h, "dev-plain");
    const before = await h.storage.listAudit({ limit: 1000 });
    for (const path of [
      "/",
      "/api/v1/devices",
      "/.well-known/est/cacerts",
      "/.well-known/est/simpleenroll",
      "/dashboard",
      "/metrics",
      // Workload identity needs the device's certificate over mutual TLS: HTTPS only.
      "/workload/v1/entries",
      "/workload/v1/x509-svids",
    ]) {
      for (const method of ["GET", "POST", "PUT", "DELETE"]) {
        const r = await app.request(`http://pki.test${path}`, {
          method,
          headers: { authorization: `Basic ${Buffer.from(`dev-plain:${token}`).toString("base64")}` },
          ...(method === "GET" || method === "DELETE" ? {} : { body: "x" }),
        });
        expect([path, method, r.status, await r.text()]).toEqual([path, method, 404, "not found\n"]);
      }
    }
    expect(await h.storage.listAudit({ limit: 1000 })).toEqual(before);
  });

  it("is composed from PUBLIC_ROUTES, and from a given list", async () => {
    // CRL/OCSP/CA certificates, SCEP, and the SPIFFE bundle.
    expect(PUBLIC_ROUTES).toHaveLength(3);
    const bare = createPublicApp(
      {
        authority: h.authority,
        responders: h.responders,
        peer: () => ({ remoteAddress: "192.0.2.7" }),
        logger: { request: () => undefined, error: () => undefined },
      },
      [],
    );
    expect((await bare.request("http://pki.test/pki/crl/issuing-p256.crl")).status).toBe(404);
    expect((await bare.request("http://pki.test/spiffe/bundle")).status).toBe(404);
    expect((await app.request("http://pki.test/spiffe/bundle")).status).toBe(200);
    expect((await bare.request("http://pki.test/healthz")).status).toBe(200);
  });
});

describe("the revocation URL base", () => {
  const https = "https://127.0.0.1:8443";
  const publicHttp = "http://127.0.0.1:8080";
  it("is publicHttpUrl, else a configured publicUrl, else the public listener, else the HTTPS listener", () => {
    expect(
      revocationBase({ publicHttpUrl: "http://pki.example", publicUrl: "https://est.example" }, { https, publicHttp }),
    ).toEqual({
      url: "http://pki.example",
      from: "publicHttpUrl",
    });
    expect(revocationBase({ publicUrl: "https://est.example" }, { https, publicHttp })).toEqual({
      url: "https://est.example",
      from: "publicUrl",
    });
    expect(revocationBase({}, { https, publicHttp })).toEqual({ url: publicHttp, from: "publicListen" });
    expect(revocationBase({}, { https })).toEqual({ url: https, from: "listen" });
  });

  it("names a wildcard listener by the first hostname, and brackets IPv6", () => {
    expect(listenerUrl("http", "0.0.0.0", 8080, ["pki.example"])).toBe("http://pki.example:8080");
    expect(listenerUrl("http", "::1", 8080, [])).toBe("http://[::1]:8080");
    expect(listenerUrl("https", "10.0.0.2", 8443, ["x"])).toBe("https://10.0.0.2:8443");
  });

  it("configures publicListen (default 127.0.0.1:8080, or off) and an http:// publicHttpUrl", () => {
    const base = { trustDomain: "example.org" };
    expect(parseConfig(base).publicListen).toBe("127.0.0.1:8080");
    expect(parseConfig({ ...base, publicListen: "off" }).publicListen).toBe("off");
    expect(parseConfig({ ...base, publicHttpUrl: "http://pki.example/" }).publicHttpUrl).toBe("http://pki.example");
    expect(() => parseConfig({ ...base, publicListen: "8080" })).toThrow(/HOST:PORT or "off"/);
    expect(() => parseConfig({ ...base, publicHttpUrl: "https://pki.example" })).toThrow(/an http:\/\/ URL/);
  });
});
