/**
 * `edgeid devices bind-idevid` on a data directory: a manufacturer CA and IDevIDs made
 * with openssl, a pre-bound profile that trusts the CA, and the binding checked against
 * openssl's own SHA-256 fingerprint of the certificate.
 */
import { copyFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueClientCert, type OpensslCa, opensslCa } from "./support/ca.ts";
import { edgeid } from "./support/cli.ts";
import { openssl } from "./support/openssl.ts";
import { EDGEID_BIN, makeWorkDir, removeDir, run } from "./support/process.ts";
import { addProfiles, cliInitDataDir } from "./support/server.ts";

let work: string;
let dataDir: string;
let mfg: OpensslCa;

beforeAll(async () => {
  work = await makeWorkDir("idevid-bind");
  ({ dataDir } = await cliInitDataDir(work, "factory.example"));
  mfg = await opensslCa(work, "acme-mfg-ca", "/O=Acme Corp/CN=Acme Manufacturing CA");
  await copyFile(mfg.certFile, join(dataDir, "mfg-ca.pem"));
  await addProfiles(dataDir, { factory: { idevid: { trustBundle: "mfg-ca.pem", binding: "pre-bound" } } });
});

afterAll(async () => {
  await removeDir(work);
});

/** openssl's SHA-256 fingerprint of a PEM certificate, as lowercase hex. */
async function fingerprint(certFile: string): Promise<string> {
  const r = await openssl(["x509", "-in", certFile, "-noout", "-fingerprint", "-sha256"]);
  return (/=([0-9A-F:]+)/.exec(r.stdout)?.[1] ?? "").replace(/:/g, "").toLowerCase();
}

const bindIdevid = (args: string[]) =>
  run(process.execPath, [EDGEID_BIN, "devices", "bind-idevid", ...args, "--data", dataDir]);

describe("edgeid devices bind-idevid (data directory)", () => {
  it("binds a PEM IDevID to a new device id, and the audit trail shows it", async () => {
    const idevid = await issueClientCert(work, mfg, "idevid-cli", "/CN=Acme Sensor/serialNumber=SN-CLI");
    const r = await bindIdevid(["SN-CLI", "--cert", idevid.certFile, "--profile", "factory", "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const bound = JSON.parse(r.stdout) as Record<string, string>;
    expect(bound).toEqual({
      deviceId: "SN-CLI",
      fingerprint: await fingerprint(idevid.certFile),
      subject: "CN=Acme Sensor, serialNumber=SN-CLI",
      boundAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });

    const audit = await edgeid(["audit", "list", "--device", "SN-CLI", "--json", "--data", dataDir]);
    const [record] = audit.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { action: string; outcome: string; actor: string; detail: Record<string, string> });
    expect(record).toMatchObject({
      action: "device.bind-idevid",
      outcome: "success",
      actor: "cli",
      detail: { profile: "factory", fingerprint: bound.fingerprint?.slice(0, 16) },
    });

    // Once bound, a second binding for the id is refused and the first stays.
    const again = await bindIdevid(["SN-CLI", "--cert", idevid.certFile, "--profile", "factory"]);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe("edgeid: device SN-CLI is already bound to a manufacturer certificate\n");
  });

  it("binds a DER IDevID, and refuses one that names another device id", async () => {
    const idevid = await issueClientCert(work, mfg, "idevid-der", "/CN=Acme Sensor/serialNumber=SN-DER");
    const der = join(work, "idevid-der.der");
    await openssl(["x509", "-in", idevid.certFile, "-outform", "DER", "-out", der]);
    const mismatch = await bindIdevid(["SN-OTHER", "--cert", der, "--profile", "factory"]);
    expect(mismatch.code).toBe(1);
    expect(mismatch.stderr).toContain("names device SN-DER in subject.serialNumber, not SN-OTHER");
    const r = await bindIdevid(["SN-DER", "--cert", der, "--profile", "factory"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(
      `SN-DER bound to CN=Acme Sensor, serialNumber=SN-DER (sha256 ${await fingerprint(idevid.certFile)})\n`,
    );
  });

  it("refuses a certificate from a manufacturer the profile does not trust", async () => {
    const rogue = await opensslCa(work, "rogue-ca", "/CN=Rogue CA");
    const idevid = await issueClientCert(work, rogue, "idevid-rogue", "/CN=Acme Sensor/serialNumber=SN-ROGUE");
    const r = await bindIdevid(["SN-ROGUE", "--cert", idevid.certFile, "--profile", "factory"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("does not chain to a manufacturer CA trusted by profile factory");
  });
});
