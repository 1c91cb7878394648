import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  dataPaths,
  ensureTlsCertificate,
  initDataDir,
  loadIssuingCa,
  readConfig,
} from "../../server/adapters/node/data-dir.ts";
import { pemCertificates } from "../../server/pki/pem.ts";
import { parseCert } from "../support/fixtures.ts";

describe("the listener's TLS certificate", () => {
  const dir = join(mkdtempSync(join(tmpdir(), "edgeid-tls-")), "data");
  const env = { EDGEID_CA_PASSPHRASE: "a test passphrase of some length" };
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const leaf = () => parseCert(pemCertificates(readFileSync(dataPaths(dir).tlsCert, "utf8"))[0] as Uint8Array);

  it("covers the hostnames plus localhost, 127.0.0.1 and ::1, for serverAuth, from the issuing CA", async () => {
    const t0 = new Date("2026-01-01T00:00:00Z");
    await initDataDir(dir, { trustDomain: "example.org", hostnames: ["est.example.org", "10.1.2.3"], now: t0 }, env);
    const cert = leaf();
    expect(cert.issuer).toBe("O=example.org, CN=edgeid Issuing CA P-256");
    expect(cert.notAfter.getTime() - t0.getTime()).toBe(90 * 86400_000);
    const text = JSON.stringify(cert.getExtension("2.5.29.17"));
    for (const name of ["est.example.org", "localhost", "10.1.2.3", "127.0.0.1", "::1"]) expect(text).toContain(name);
  });

  it("is renewed once less than 30 days are left, and not before", async () => {
    const ca = await loadIssuingCa(dir, env.EDGEID_CA_PASSPHRASE);
    const config = readConfig(dir);
    const serial = leaf().serialNumber;
    expect(
      await ensureTlsCertificate(dir, ca, config, env.EDGEID_CA_PASSPHRASE, new Date("2026-03-01T23:59:59Z")),
    ).toBe(false);
    expect(leaf().serialNumber).toBe(serial);
    expect(
      await ensureTlsCertificate(dir, ca, config, env.EDGEID_CA_PASSPHRASE, new Date("2026-03-02T00:00:01Z")),
    ).toBe(true);
    expect(leaf().serialNumber).not.toBe(serial);
    expect(leaf().notBefore.getTime()).toBe(new Date("2026-03-02T00:00:01Z").getTime() - 300_000);
  });
});
