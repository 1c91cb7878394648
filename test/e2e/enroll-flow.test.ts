/**
 * The happy path of RFC 7030 against a real `edgeid serve`, with openssl and curl as
 * the client: cacerts → csrattrs → simpleenroll (Basic upfront, Basic after a 401
 * challenge, Bearer) → verify → simplereenroll over mutual TLS; other key types;
 * batch tokens; the inventory as `edgeid devices` shows it.
 */
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cliCreateToken, cliCreateTokenBatch, listDevices, showDevice } from "./support/cli.ts";
import { estGet, estPost, expectOneLineError, type HttpResponse } from "./support/curl.ts";
import {
  keyPublicKey,
  normalizeSerial,
  openssl,
  opensslCsr,
  opensslCsrNewKeyP256,
  opensslVerify,
  pkcs7ToPem,
  writePem,
  x509PublicKey,
  x509Serial,
  x509Subject,
  x509Text,
} from "./support/openssl.ts";
import { makeWorkDir, removeDir } from "./support/process.ts";
import { cliInitDataDir, startServer, type TestServer } from "./support/server.ts";

const TD = "example.org";
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";

let work: string;
let dataDir: string;
let server: TestServer;
/** The chain served by /cacerts (issuing CA, root), as PEM. */
let chainFile: string;

/** A 200 enrollment response: PKCS#7 certs-only with exactly one certificate. */
async function issuedCert(r: HttpResponse, name: string): Promise<{ file: string; pem: string }> {
  expect(r.status, `body: ${r.text}`).toBe(200);
  expect(r.headers["content-type"]).toMatch(/^application\/pkcs7-mime\s*;\s*smime-type=certs-only$/i);
  const certs = await pkcs7ToPem(work, r.body);
  expect(certs).toHaveLength(1);
  const pem = certs[0] as string;
  // Second, independent parser: the same body through @peculiar/x509.
  const parsed = new x509.X509Certificates(r.text.replace(/\s+/g, ""));
  expect(parsed).toHaveLength(1);
  expect(parsed[0]?.toString("pem").replace(/\s+/g, "")).toBe(pem.replace(/\s+/g, ""));
  return { file: await writePem(work, `${name}.pem`, pem), pem };
}

async function expectVerifies(certFile: string): Promise<void> {
  const r = await opensslVerify(chainFile, certFile, ["-x509_strict", "-purpose", "sslclient"]);
  expect(r.code, r.stdout + r.stderr).toBe(0);
  expect(r.stdout).toContain(": OK");
}

/** The facts every device certificate must carry, read with `openssl x509 -text` and @peculiar/x509. */
async function expectDeviceCertificate(certFile: string, pem: string, deviceId: string): Promise<void> {
  expect(await x509Subject(certFile)).toBe(`subject=CN=${deviceId}`);
  const text = await x509Text(certFile);
  expect(text).toContain(`URI:spiffe://${TD}/device/${deviceId}`);
  expect(text).toMatch(/X509v3 Extended Key Usage:\s*\n\s*TLS Web Client Authentication\s*\n/);
  expect(text).toMatch(/X509v3 Basic Constraints: critical\s*\n\s*CA:FALSE/);
  expect(text).toContain("Issuer: O = example.org, CN = edgeid Issuing CA P-256");
  const crl = /X509v3 CRL Distribution Points:\s*\n\s*Full Name:\s*\n\s*URI:(\S+)/.exec(text)?.[1];
  const ocsp = /OCSP - URI:(\S+)/.exec(text)?.[1];
  // Revocation data over plain HTTP, at the public listener (RFC 5280 §4.2.1.13).
  expect(crl, `CRL DP ${crl}`).toBe(`${server.publicHttp}/pki/crl/issuing-p256.crl`);
  expect(ocsp, `OCSP ${ocsp}`).toBe(`${server.publicHttp}/pki/ocsp`);

  const cert = new x509.X509Certificate(pem);
  expect(cert.subject).toBe(`CN=${deviceId}`);
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  expect(san?.names.items.map((n) => [n.type, n.value])).toEqual([["url", `spiffe://${TD}/device/${deviceId}`]]);
  expect(cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages).toEqual([CLIENT_AUTH]);
  // Validity 72h, notBefore backdated 5 minutes.
  const now = Date.now();
  expect(cert.notAfter.getTime() - cert.notBefore.getTime()).toBe((72 * 3600 + 300) * 1000);
  expect(Math.abs(cert.notBefore.getTime() - (now - 300_000))).toBeLessThan(60_000);
}

beforeAll(async () => {
  work = await makeWorkDir("enroll");
  ({ dataDir } = await cliInitDataDir(work, TD));
  server = await startServer(dataDir, work);
});

afterAll(async () => {
  await server?.stop();
  await removeDir(work);
});

describe("EST enrollment flow (openssl + curl)", () => {
  it("cacerts: base64 PKCS#7 certs-only with the issuing CA and the exported root", async () => {
    const r = await estGet(server, work, "cacerts");
    expect(r.status).toBe(200);
    expect(r.headers["content-type"]).toMatch(/^application\/pkcs7-mime/);
    const certs = await pkcs7ToPem(work, r.body);
    expect(certs).toHaveLength(2);
    chainFile = await writePem(work, "cacerts-chain.pem", certs);
    // CertificateSet is a SET OF: tell the two apart by subject, not by position.
    const files = await Promise.all(certs.map((c, i) => writePem(work, `cacerts-${i}.pem`, c)));
    const subjects = await Promise.all(files.map(x509Subject));
    expect([...subjects].sort()).toEqual([
      "subject=CN=edgeid Issuing CA P-256,O=example.org",
      "subject=CN=edgeid Root CA,O=example.org",
    ]);
    const issuingFile = files[subjects.indexOf("subject=CN=edgeid Issuing CA P-256,O=example.org")] as string;
    const rootFile = files[subjects.indexOf("subject=CN=edgeid Root CA,O=example.org")] as string;

    // The root in /cacerts is the anchor `edgeid ca export` printed.
    const fp = async (f: string) => (await openssl(["x509", "-in", f, "-noout", "-fingerprint", "-sha256"])).stdout;
    expect(await fp(rootFile)).toBe(await fp(server.rootPemFile));
    // The issuing CA chains to the root.
    const v = await opensslVerify(server.rootPemFile, issuingFile);
    expect(v.code, v.stdout + v.stderr).toBe(0);

    // Second parser agrees.
    const parsed = new x509.X509Certificates(r.text.replace(/\s+/g, ""));
    expect(parsed.map((c) => c.subject).sort()).toEqual([
      "O=example.org, CN=edgeid Issuing CA P-256",
      "O=example.org, CN=edgeid Root CA",
    ]);
  });

  it("csrattrs: application/csrattrs that openssl asn1parse decodes", async () => {
    const r = await estGet(server, work, "csrattrs");
    expect(r.status).toBe(200);
    expect(r.headers["content-type"]).toMatch(/^application\/csrattrs/);
    const der = join(work, "csrattrs.der");
    const b64 = await writePem(work, "csrattrs.b64", r.text.replace(/\r/g, ""));
    await openssl(["base64", "-d", "-in", b64, "-out", der]);
    const parsed = (await openssl(["asn1parse", "-inform", "DER", "-in", der])).stdout;
    expect(parsed).toMatch(/^\s*0:d=0\s+hl=\d+\s+l=\s*\d+\s+cons: SEQUENCE/);
    expect(parsed).toContain(":id-ecPublicKey");
    expect(parsed).toContain(":prime256v1");
    expect(parsed).toContain(":secp384r1");
    expect(parsed).toContain(":ED25519");
    expect(parsed).toContain(":ecdsa-with-SHA256");
    // P-256 (the preferred type) comes first.
    expect(parsed.indexOf(":prime256v1")).toBeLessThan(parsed.indexOf(":secp384r1"));
  });

  let basicCert: { file: string; pem: string; keyFile: string; serial: string };

  it("simpleenroll with HTTP Basic sent upfront (curl --basic -u id:token)", async () => {
    const token = await cliCreateToken(dataDir, "dev-basic");
    const csr = await opensslCsrNewKeyP256(work, "dev-basic");
    const r = await estPost(server, work, "simpleenroll", csr.base64, {
      basic: { user: "dev-basic", password: token.token },
    });
    // Exactly one request: credentials went with the first one.
    expect(r.trace.match(/^> POST /gm)).toHaveLength(1);
    expect(r.trace).toMatch(/^> Authorization: Basic /m);
    const { file, pem } = await issuedCert(r, "dev-basic");
    await expectVerifies(file);
    await expectDeviceCertificate(file, pem, "dev-basic");
    // The certificate certifies the key from the CSR.
    expect(await x509PublicKey(file)).toBe(await keyPublicKey(csr.keyFile));
    basicCert = { file, pem, keyFile: csr.keyFile, serial: await x509Serial(file) };
  });

  it("simpleenroll without credentials: 401 with a Basic challenge (RFC 7030 §3.2.3)", async () => {
    const csr = await opensslCsr(work, "dev-challenge-probe", { subject: "/CN=dev-challenge" });
    const r = await estPost(server, work, "simpleenroll", csr.base64);
    expectOneLineError(r, 401);
    expect(r.headers["www-authenticate"]).toMatch(/^Basic realm="edgeid EST"/);
  });

  it("simpleenroll with the challenge flow (curl --anyauth): 401 first, then Basic and 200", async () => {
    const token = await cliCreateToken(dataDir, "dev-challenge");
    const csr = await opensslCsrNewKeyP256(work, "dev-challenge");
    const r = await estPost(server, work, "simpleenroll", csr.base64, {
      basic: { user: "dev-challenge", password: token.token },
      anyauth: true,
    });
    // Two requests: the first without Authorization, answered 401 + WWW-Authenticate.
    expect(r.trace.match(/^> POST /gm)).toHaveLength(2);
    expect(r.trace.match(/^> Authorization: Basic /gm)).toHaveLength(1);
    expect(r.trace).toMatch(/^< HTTP\/1\.1 401 /m);
    expect(r.trace).toMatch(/^< www-authenticate: Basic realm="edgeid EST"/im);
    expect(r.trace.indexOf("< HTTP/1.1 401")).toBeLessThan(r.trace.indexOf("> Authorization: Basic"));
    expect(r.rawHeaders).toMatch(/HTTP\/1\.1 401[\s\S]*HTTP\/1\.1 200/);
    const { file, pem } = await issuedCert(r, "dev-challenge");
    await expectVerifies(file);
    await expectDeviceCertificate(file, pem, "dev-challenge");
  });

  it("simpleenroll with a Bearer token", async () => {
    const token = await cliCreateToken(dataDir, "dev-bearer");
    // An empty subject is fine: the server decides the names.
    const csr = await opensslCsr(work, "dev-bearer", { subject: "/O=ignored" });
    const r = await estPost(server, work, "simpleenroll", csr.base64, { bearer: token.token });
    expect(r.trace).toMatch(/^> Authorization: Bearer edt_/m);
    const { file, pem } = await issuedCert(r, "dev-bearer");
    await expectVerifies(file);
    await expectDeviceCertificate(file, pem, "dev-bearer");
  });

  it("simpleenroll with a P-384 key", async () => {
    const token = await cliCreateToken(dataDir, "dev-p384");
    const csr = await opensslCsr(work, "dev-p384", { alg: "P-384" });
    const r = await estPost(server, work, "simpleenroll", csr.base64, {
      basic: { user: "dev-p384", password: token.token },
    });
    const { file, pem } = await issuedCert(r, "dev-p384");
    await expectVerifies(file);
    await expectDeviceCertificate(file, pem, "dev-p384");
    expect(await x509Text(file)).toMatch(/Public-Key: \(384 bit\)[\s\S]*NIST CURVE: P-384/);
    expect(await x509PublicKey(file)).toBe(await keyPublicKey(csr.keyFile));
  });

  it("simpleenroll with an Ed25519 key (openssl genpkey -algorithm ed25519)", async () => {
    const token = await cliCreateToken(dataDir, "dev-ed25519");
    const csr = await opensslCsr(work, "dev-ed25519", { alg: "Ed25519" });
    const r = await estPost(server, work, "simpleenroll", csr.base64, {
      basic: { user: "dev-ed25519", password: token.token },
    });
    const { file, pem } = await issuedCert(r, "dev-ed25519");
    await expectVerifies(file);
    await expectDeviceCertificate(file, pem, "dev-ed25519");
    expect(await x509Text(file)).toMatch(/Public Key Algorithm: ED25519/);
    expect(await x509PublicKey(file)).toBe(await keyPublicKey(csr.keyFile));
  });

  it("simplereenroll over mutual TLS (curl --cert/--key) with a new key", async () => {
    const csr = await opensslCsr(work, "dev-basic-renew", { subject: "/CN=dev-basic" });
    const r = await estPost(server, work, "simplereenroll", csr.base64, {
      cert: basicCert.file,
      key: basicCert.keyFile,
    });
    const { file, pem } = await issuedCert(r, "dev-basic-renewed");
    await expectVerifies(file);
    await expectDeviceCertificate(file, pem, "dev-basic");
    expect(await x509Subject(file)).toBe(await x509Subject(basicCert.file));
    const sanOf = (p: string) =>
      new x509.X509Certificate(p).getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON();
    expect(sanOf(pem)).toEqual(sanOf(basicCert.pem));
    const newSerial = await x509Serial(file);
    expect(newSerial).not.toBe(basicCert.serial);
    expect(await x509PublicKey(file)).not.toBe(await x509PublicKey(basicCert.file));
    expect(await x509PublicKey(file)).toBe(await keyPublicKey(csr.keyFile));

    const device = await showDevice(dataDir, "dev-basic");
    expect(device.status).toBe("active");
    expect(normalizeSerial(device.currentSerial)).toBe(newSerial);
    const renewed = device.certificates.find((c) => normalizeSerial(c.serial) === newSerial);
    expect(renewed?.method).toBe("reenroll");
    expect(normalizeSerial(renewed?.replacesSerial)).toBe(basicCert.serial);
    expect(device.audit.some((a) => a.action === "est.simplereenroll" && a.outcome === "success")).toBe(true);

    // The renewed certificate renews in turn.
    const next = await opensslCsr(work, "dev-basic-renew2", { subject: "/CN=dev-basic" });
    const r2 = await estPost(server, work, "simplereenroll", next.base64, { cert: file, key: csr.keyFile });
    const second = await issuedCert(r2, "dev-basic-renewed2");
    await expectVerifies(second.file);
    expect(await x509Serial(second.file)).not.toBe(newSerial);
  });

  it("batch tokens (--count 3 --device-prefix): one of the devices enrolls", async () => {
    const rows = await cliCreateTokenBatch(dataDir, "batch-", 3);
    expect(rows.map((t) => t.deviceId)).toEqual(["batch-0001", "batch-0002", "batch-0003"]);
    expect(new Set(rows.map((t) => t.token)).size).toBe(3);
    for (const t of rows) {
      expect(t.profile).toBe("device");
      expect(t.token).toMatch(/^edt_/);
      expect(Date.parse(t.expiresAt)).toBeGreaterThan(Date.now());
    }
    const listed = await listDevices(dataDir);
    for (const id of ["batch-0001", "batch-0002", "batch-0003"]) {
      expect(listed.find((d) => d.id === id)?.status).toBe("pending");
    }

    const token = rows[1] as (typeof rows)[number];
    const csr = await opensslCsrNewKeyP256(work, "batch-0002");
    const r = await estPost(server, work, "simpleenroll", csr.base64, {
      basic: { user: "batch-0002", password: token.token },
    });
    const { file, pem } = await issuedCert(r, "batch-0002");
    await expectVerifies(file);
    await expectDeviceCertificate(file, pem, "batch-0002");
    const serial = await x509Serial(file);

    const device = await showDevice(dataDir, "batch-0002");
    expect(device.status).toBe("active");
    expect(device.identity).toBe(`spiffe://${TD}/device/batch-0002`);
    expect(normalizeSerial(device.currentSerial)).toBe(serial);
    expect(device.certificates.map((c) => normalizeSerial(c.serial))).toEqual([serial]);
    expect(device.certificates[0]?.method).toBe("token");
    expect(device.certificates[0]?.keyType).toBe("P-256");
    expect(device.tokens).toHaveLength(1);
    expect(device.tokens[0]?.id).toBe(token.tokenId);
    expect(device.tokens[0]?.usedAt).not.toBeNull();
    expect(normalizeSerial(device.tokens[0]?.usedSerial)).toBe(serial);
    const success = device.audit.find((a) => a.action === "est.simpleenroll" && a.outcome === "success");
    expect(success?.actor).toBe(`token:${token.tokenId}`);

    const others = await listDevices(dataDir);
    expect(others.find((d) => d.id === "batch-0001")?.status).toBe("pending");
    expect(others.find((d) => d.id === "batch-0003")?.status).toBe("pending");
  });

  it("devices show reflects status and certificates of every enrolled device", async () => {
    const expected: Record<string, { count: number; keyType: string }> = {
      "dev-basic": { count: 3, keyType: "P-256" },
      "dev-challenge": { count: 1, keyType: "P-256" },
      "dev-bearer": { count: 1, keyType: "P-256" },
      "dev-p384": { count: 1, keyType: "P-384" },
      "dev-ed25519": { count: 1, keyType: "Ed25519" },
    };
    // Read-only CLI calls: run them side by side.
    const shown = await Promise.all(Object.keys(expected).map((id) => showDevice(dataDir, id)));
    for (const d of shown) {
      const id = d.id;
      const want = expected[id] as { count: number; keyType: string };
      expect(d.status, id).toBe("active");
      expect(d.profile).toBe("device");
      expect(d.certificates, id).toHaveLength(want.count);
      expect(
        d.certificates.every((c) => c.keyType === want.keyType),
        id,
      ).toBe(true);
      expect(d.certificates.map((c) => c.serial)).toContain(d.currentSerial);
      for (const c of d.certificates) {
        expect(Date.parse(c.notAfter) - Date.parse(c.notBefore)).toBe((72 * 3600 + 300) * 1000);
      }
    }
    // The listing agrees.
    const listed = await listDevices(dataDir);
    for (const id of Object.keys(expected)) expect(listed.find((d) => d.id === id)?.status).toBe("active");
  });

  it("the server is still running and logged every request", async () => {
    expect(server.isRunning()).toBe(true);
    expect(server.log()).toContain('"path":"/.well-known/est/simplereenroll","status":200');
    // No secrets in the log.
    expect(server.log()).not.toMatch(/edt_[A-Za-z0-9_-]{20,}/);
  });
});
