import { cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  dataPaths,
  ensureTlsCertificates,
  initDataDir,
  loadIssuingCas,
  readConfig,
} from "../../server/adapters/node/data-dir.ts";
import { pemCertificates } from "../../server/pki/pem.ts";
import { parseCert } from "../support/fixtures.ts";

describe("the listener's TLS certificate", () => {
  // One data directory, initialised once: the first test only reads it, the renewal
  // test works on a copy of its own, so either runs alone or in any order.
  const root = mkdtempSync(join(tmpdir(), "edgeid-tls-"));
  const initialised = join(root, "data");
  const env = { EDGEID_CA_PASSPHRASE: "a test passphrase of some length" };
  const t0 = new Date("2026-01-01T00:00:00Z");
  beforeAll(() =>
    initDataDir(initialised, { trustDomain: "example.org", hostnames: ["est.example.org", "10.1.2.3"], now: t0 }, env),
  );
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const leaf = (dir: string) =>
    parseCert(pemCertificates(readFileSync(dataPaths(dir).tlsCert, "utf8"))[0] as Uint8Array);
  const rsaLeaf = (dir: string) =>
    parseCert(pemCertificates(readFileSync(dataPaths(dir).tlsRsaCert, "utf8"))[0] as Uint8Array);

  it("covers the hostnames plus localhost, 127.0.0.1 and ::1, for serverAuth, from the issuing CA", () => {
    const cert = leaf(initialised);
    expect(cert.issuer).toBe("O=example.org, CN=edgeid Issuing CA P-256");
    expect(cert.notAfter.getTime() - t0.getTime()).toBe(90 * 86400_000);
    const text = JSON.stringify(cert.getExtension("2.5.29.17"));
    for (const name of ["est.example.org", "localhost", "10.1.2.3", "127.0.0.1", "::1"]) expect(text).toContain(name);
    // The second listener certificate, for clients that verify RSA only: an RSA key, from the RSA CA.
    const rsa = rsaLeaf(initialised);
    expect(rsa.issuer).toBe("O=example.org, CN=edgeid Issuing CA RSA");
    expect(rsa.publicKey.algorithm.name).toBe("RSASSA-PKCS1-v1_5");
    expect(rsa.signatureAlgorithm.name).toBe("RSASSA-PKCS1-v1_5");
    expect(JSON.stringify(rsa.getExtension("2.5.29.17"))).toContain("est.example.org");
  });

  it("is renewed once less than 30 days are left, and not before", async () => {
    const dir = join(root, "renewal");
    cpSync(initialised, dir, { recursive: true });
    const cas = await loadIssuingCas(dir, env.EDGEID_CA_PASSPHRASE);
    const config = readConfig(dir);
    const serial = leaf(dir).serialNumber;
    const rsaSerial = rsaLeaf(dir).serialNumber;
    expect(
      await ensureTlsCertificates(dir, cas, config, env.EDGEID_CA_PASSPHRASE, new Date("2026-03-01T23:59:59Z")),
    ).toEqual([]);
    expect(leaf(dir).serialNumber).toBe(serial);
    expect(
      await ensureTlsCertificates(dir, cas, config, env.EDGEID_CA_PASSPHRASE, new Date("2026-03-02T00:00:01Z")),
    ).toEqual(["issuing-p256", "issuing-rsa"]);
    expect(rsaLeaf(dir).serialNumber).not.toBe(rsaSerial);
    expect(leaf(dir).serialNumber).not.toBe(serial);
    expect(leaf(dir).notBefore.getTime()).toBe(new Date("2026-03-02T00:00:01Z").getTime() - 300_000);
    // The copy renewed; the directory it was copied from kept its certificates.
    expect(leaf(initialised).serialNumber).toBe(serial);
  });
});
