/**
 * Zero-touch first boot with a manufacturer certificate (IDevID): a test manufacturer
 * CA made with openssl, a "factory" profile that trusts it, and curl presenting the
 * IDevID as its TLS client certificate with no token.
 */
import { copyFile } from "node:fs/promises";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueClientCert, type OpensslCa, opensslCa } from "./support/ca.ts";
import { showDevice } from "./support/cli.ts";
import { estGet, estPost, expectOneLineError } from "./support/curl.ts";
import {
  normalizeSerial,
  opensslCsr,
  opensslVerify,
  pkcs7ToPem,
  writePem,
  x509Serial,
  x509Subject,
  x509Text,
} from "./support/openssl.ts";
import { makeWorkDir, removeDir } from "./support/process.ts";
import { addProfiles, cliInitDataDir, startServer, type TestServer } from "./support/server.ts";

const TD = "factory.example";
const SERIAL = "SN12345";

let work: string;
let dataDir: string;
let server: TestServer;
let mfg: OpensslCa;
let idevid: { certFile: string; keyFile: string };
let ldevid: { certFile: string; keyFile: string; serial: string };

beforeAll(async () => {
  work = await makeWorkDir("idevid");
  ({ dataDir } = await cliInitDataDir(work, TD));
  mfg = await opensslCa(work, "acme-mfg-ca", "/O=Acme Corp/CN=Acme Manufacturing CA");
  idevid = await issueClientCert(work, mfg, "idevid", `/CN=Acme Sensor/serialNumber=${SERIAL}`);
  // The trust bundle lives in the data directory and is named relative to it.
  await copyFile(mfg.certFile, join(dataDir, "mfg-ca.pem"));
  await addProfiles(dataDir, {
    factory: { idevid: { trustBundle: "mfg-ca.pem", deviceIdFrom: "subject.serialNumber" } },
  });
  server = await startServer(dataDir, work);
});

afterAll(async () => {
  await server?.stop();
  await removeDir(work);
});

describe("IDevID first boot (profile factory)", () => {
  it("the test IDevID is what a manufacturer would ship", async () => {
    expect(await x509Subject(idevid.certFile)).toBe(`subject=serialNumber=${SERIAL},CN=Acme Sensor`);
    expect(await x509Text(idevid.certFile)).toContain("TLS Web Client Authentication");
    const v = await opensslVerify(mfg.certFile, idevid.certFile, ["-purpose", "sslclient"]);
    expect(v.code, v.stdout + v.stderr).toBe(0);
  });

  it("enrolls with the IDevID as TLS client certificate and no token → 200", async () => {
    const csr = await opensslCsr(work, "ldevid-1", { subject: `/CN=${SERIAL}` });
    const r = await estPost(server, work, "simpleenroll", csr.base64, {
      label: "factory",
      cert: idevid.certFile,
      key: idevid.keyFile,
    });
    expect(r.status, r.text).toBe(200);
    expect(r.trace).not.toMatch(/^> Authorization:/m);
    expect(r.headers["content-type"]).toMatch(/^application\/pkcs7-mime\s*;\s*smime-type=certs-only$/i);
    const [pem] = await pkcs7ToPem(work, r.body);
    const certFile = await writePem(work, "ldevid-1.pem", pem as string);

    expect(await x509Subject(certFile)).toBe(`subject=CN=${SERIAL}`);
    const text = await x509Text(certFile);
    expect(text).toContain(`URI:spiffe://${TD}/device/${SERIAL}`);
    expect(text).toContain("TLS Web Client Authentication");
    const cert = new x509.X509Certificate(pem as string);
    expect(cert.subject).toBe(`CN=${SERIAL}`);
    expect(cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.items.map((n) => n.value)).toEqual([
      `spiffe://${TD}/device/${SERIAL}`,
    ]);
    // Issued by this server's CA (chain from /cacerts), not by the manufacturer's.
    const cacerts = await estGet(server, work, "cacerts");
    const chainFile = await writePem(work, "cacerts-chain.pem", await pkcs7ToPem(work, cacerts.body));
    const ours = await opensslVerify(chainFile, certFile, ["-x509_strict", "-purpose", "sslclient"]);
    expect(ours.code, ours.stdout + ours.stderr).toBe(0);
    const theirs = await opensslVerify(mfg.certFile, certFile);
    expect(theirs.code).not.toBe(0);
    ldevid = { certFile, keyFile: csr.keyFile, serial: await x509Serial(certFile) };

    const device = await showDevice(dataDir, SERIAL);
    expect(device.status).toBe("active");
    expect(device.profile).toBe("factory");
    expect(normalizeSerial(device.currentSerial)).toBe(ldevid.serial);
    expect(device.certificates.map((c) => c.method)).toEqual(["idevid"]);
    expect(device.tokens).toEqual([]);
    const ok = device.audit.find((a) => a.action === "est.simpleenroll" && a.outcome === "success");
    expect(ok?.actor).toMatch(/^idevid:/);
  });

  it("the certificate from the IDevID enrollment re-enrolls over mutual TLS", async () => {
    const csr = await opensslCsr(work, "ldevid-2", { subject: `/CN=${SERIAL}` });
    const r = await estPost(server, work, "simplereenroll", csr.base64, {
      label: "factory",
      cert: ldevid.certFile,
      key: ldevid.keyFile,
    });
    expect(r.status, r.text).toBe(200);
    const [pem] = await pkcs7ToPem(work, r.body);
    const certFile = await writePem(work, "ldevid-2.pem", pem as string);
    expect(await x509Subject(certFile)).toBe(`subject=CN=${SERIAL}`);
    expect(await x509Serial(certFile)).not.toBe(ldevid.serial);
  });

  it("a second IDevID with the same serialNumber but another key → 403", async () => {
    const clone = await issueClientCert(work, mfg, "idevid-clone", `/CN=Acme Sensor/serialNumber=${SERIAL}`);
    const csr = await opensslCsr(work, "clone-req", { subject: `/CN=${SERIAL}` });
    const r = await estPost(server, work, "simpleenroll", csr.base64, {
      label: "factory",
      cert: clone.certFile,
      key: clone.keyFile,
    });
    expectOneLineError(r, 403);
    expect(server.isRunning()).toBe(true);
    const device = await showDevice(dataDir, SERIAL);
    expect(device.certificates).toHaveLength(2);
    expect(
      device.audit
        .filter((a) => a.outcome === "denied" && a.action === "est.simpleenroll")
        .map((a) => a.detail?.reason),
    ).toContain("idevid_mismatch");
  });

  it("an IDevID from an untrusted manufacturer → 403", async () => {
    const other = await opensslCa(work, "other-mfg-ca", "/O=Other Corp/CN=Other Manufacturing CA");
    const foreign = await issueClientCert(work, other, "idevid-foreign", "/CN=Other Sensor/serialNumber=SN54321");
    const csr = await opensslCsr(work, "foreign-req", { subject: "/CN=SN54321" });
    const r = await estPost(server, work, "simpleenroll", csr.base64, {
      label: "factory",
      cert: foreign.certFile,
      key: foreign.keyFile,
    });
    expectOneLineError(r, 403);
    expect(server.isRunning()).toBe(true);
  });

  it("no client certificate and no token → 401 with a Basic challenge", async () => {
    const csr = await opensslCsr(work, "anonymous-req", { subject: `/CN=${SERIAL}` });
    const r = await estPost(server, work, "simpleenroll", csr.base64, { label: "factory" });
    expectOneLineError(r, 401);
    expect(r.headers["www-authenticate"]).toMatch(/^Basic realm="edgeid EST"/);
  });

  it("the IDevID is not accepted on a profile that does not trust the manufacturer → 401", async () => {
    const csr = await opensslCsr(work, "default-label-req", { subject: `/CN=${SERIAL}` });
    const r = await estPost(server, work, "simpleenroll", csr.base64, { cert: idevid.certFile, key: idevid.keyFile });
    expectOneLineError(r, 401);
    expect(server.isRunning()).toBe(true);
  });
});
