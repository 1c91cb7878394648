/**
 * The hybrid path against a real `edgeid serve`, with openssl and curl as the
 * independent clients: an RSA CSR through /.well-known/est/legacy/simpleenroll over
 * RSA-only TLS, verified against the RSA hierarchy that `edgeid init` made, with the
 * operator-declared DNS/IP names, CRL and OCSP from the RSA issuing CA; and a gateway
 * enrolling appliances over EST with its own certificate (namespace, quota, cascade).
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { edgeid, expectDeniedAudit } from "./support/cli.ts";
import { curl, expectOneLineError, type HttpResponse } from "./support/curl.ts";
import { openssl, opensslCsr, pkcs7ToPem, writePem, x509Serial, x509Text } from "./support/openssl.ts";
import { EDGEID_BIN, makeWorkDir, removeDir, run } from "./support/process.ts";
import { addProfiles, cliInitDataDir, startServer, type TestServer } from "./support/server.ts";

let work: string;
let dataDir: string;
let server: TestServer;
/** The RSA root, from `edgeid ca export --rsa`: the only anchor an RSA-only appliance has. */
let rsaRoot: string;
/** The RSA issuing CA and root, from the legacy label's /cacerts. */
let rsaChain: string;
let rsaIssuing: string;

/** curl as a TLS stack that can verify RSA only: TLS 1.2 with an RSA-authenticated cipher suite. */
const RSA_ONLY = ["--tls-max", "1.2", "--ciphers", "ECDHE-RSA-AES128-GCM-SHA256"];

const legacyEst = (op: string, opts: Parameters<typeof curl>[2] = {}) =>
  curl(work, `${server.est}/legacy/${op}`, {
    cacert: rsaRoot,
    ...opts,
    extraArgs: [...RSA_ONLY, ...(opts.extraArgs ?? [])],
  });

async function tokenFor(deviceId: string, profile: string, extra: string[] = []): Promise<string> {
  const r = await edgeid([
    "token",
    "create",
    "--data",
    dataDir,
    "--device",
    deviceId,
    "--profile",
    profile,
    "--json",
    ...extra,
  ]);
  return (JSON.parse(r.stdout.trim()) as { token: string }).token;
}

async function issued(r: HttpResponse, name: string): Promise<string> {
  expect(r.status, `body: ${r.text}`).toBe(200);
  const [pem] = await pkcs7ToPem(work, r.body);
  return writePem(work, `${name}.pem`, pem as string);
}

/** OCSP for a certificate of the RSA issuing CA: the request by openssl, sent by curl over RSA-only TLS. */
async function ocspStatus(certFile: string): Promise<string | undefined> {
  const reqFile = join(work, `${certFile.split("/").pop()}.ocsp-req`);
  await openssl(["ocsp", "-issuer", rsaIssuing, "-cert", certFile, "-no_nonce", "-reqout", reqFile]);
  const r = await curl(work, `${server.url}/pki/ocsp`, {
    method: "POST",
    body: await readFile(reqFile),
    contentType: "application/ocsp-request",
    cacert: rsaRoot,
    extraArgs: RSA_ONLY,
  });
  expect(r.status).toBe(200);
  const respFile = `${reqFile}.resp`;
  await writeFile(respFile, r.body);
  const check = await run("openssl", [
    "ocsp",
    "-respin",
    respFile,
    "-reqin",
    reqFile,
    "-issuer",
    rsaIssuing,
    "-cert",
    certFile,
    "-CAfile",
    rsaChain,
    "-no_nonce",
    "-resp_text",
  ]);
  const out = `${check.stdout}${check.stderr}`;
  expect(out, out).toContain("Response verify OK");
  expect(out).toContain("Signature Algorithm: sha256WithRSAEncryption");
  return /: (good|revoked|unknown)\b/.exec(check.stdout)?.[1];
}

beforeAll(async () => {
  work = await makeWorkDir("edgeid-hybrid-");
  dataDir = (await cliInitDataDir(work, "example.org")).dataDir;
  // init's gateway profile, with a small quota for the test.
  await addProfiles(dataDir, { gateway: { gateway: { applianceProfile: "appliance", maxAppliances: 2 } } });
  server = await startServer(dataDir, work, 0, { mqtt: "off" });
  rsaRoot = join(work, "rsa-root.pem");
  await writeFile(rsaRoot, (await edgeid(["ca", "export", "--rsa", "--data", dataDir])).stdout);
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await removeDir(work);
});

describe("the legacy profile over EST (openssl + curl)", () => {
  it("serves the RSA chain to a client that verifies RSA only: TLS and /cacerts", async () => {
    const r = await legacyEst("cacerts");
    expect(r.status, r.text).toBe(200);
    const [issuing, root] = await pkcs7ToPem(work, r.body);
    rsaIssuing = await writePem(work, "rsa-issuing.pem", issuing as string);
    rsaChain = await writePem(work, "rsa-chain.pem", [issuing as string, root as string]);
    expect(await x509Text(rsaIssuing)).toContain("Subject: O = example.org, CN = edgeid Issuing CA RSA");
    expect(await x509Text(rsaIssuing)).toContain("Public-Key: (3072 bit)");
    const rootFile = await writePem(work, "rsa-root-from-cacerts.pem", root as string);
    expect(await x509Text(rootFile)).toContain("Public-Key: (4096 bit)");
    expect(await openssl(["x509", "-in", rootFile, "-noout", "-fingerprint", "-sha256"])).toEqual(
      await openssl(["x509", "-in", rsaRoot, "-noout", "-fingerprint", "-sha256"]),
    );
    // The TLS handshake of an RSA-only client: RSA server key, chain verified by the RSA root.
    const s = await run("openssl", [
      "s_client",
      "-connect",
      new URL(server.url).host,
      "-tls1_2",
      "-sigalgs",
      "RSA+SHA256",
      "-CAfile",
      rsaRoot,
      "-verify_return_error",
    ]);
    const out = `${s.stdout}${s.stderr}`;
    expect(out).toContain("Verify return code: 0 (ok)");
    expect(out).toMatch(/Server public key is 2048 bit/);
    expect(out).toContain("CN = edgeid Issuing CA RSA");
    // A modern client still gets the P-256 chain.
    const m = await run("openssl", ["s_client", "-connect", new URL(server.url).host, "-CAfile", server.rootPemFile]);
    expect(`${m.stdout}${m.stderr}`).toContain("Verify return code: 0 (ok)");
    expect(`${m.stdout}${m.stderr}`).toMatch(/Server public key is 256 bit/);
  });

  it("issues for an RSA CSR: CN, SPIFFE URI, the declared DNS/IP names, both EKUs, CRL and OCSP; openssl verifies the RSA chain", async () => {
    const token = await tokenFor("printer-7", "legacy", [
      "--dns",
      "printer-7.plant.example",
      "--ip",
      "10.20.30.40",
      "--ip",
      "fd00::7",
    ]);
    const csr = await opensslCsr(work, "printer-7", {
      alg: "RSA-2048",
      addext: ["subjectAltName=DNS:printer-7.plant.example"],
    });
    const leaf = await issued(
      await legacyEst("simpleenroll", {
        method: "POST",
        body: csr.base64,
        contentType: "application/pkcs10",
        basic: { user: "printer-7", password: token },
      }),
      "printer-7",
    );
    for (const purpose of ["sslserver", "sslclient"]) {
      const v = await run("openssl", [
        "verify",
        "-x509_strict",
        "-purpose",
        purpose,
        "-CAfile",
        rsaRoot,
        "-untrusted",
        rsaIssuing,
        leaf,
      ]);
      expect(v.stdout.trim(), v.stderr).toBe(`${leaf}: OK`);
    }
    // Not under the P-256 root: a separate hierarchy.
    const other = await run("openssl", ["verify", "-CAfile", server.rootPemFile, "-untrusted", rsaIssuing, leaf]);
    expect(other.code).not.toBe(0);
    const text = await x509Text(leaf);
    expect(text).toContain("Subject: CN = printer-7");
    expect(text).toContain("Signature Algorithm: sha256WithRSAEncryption");
    expect(text).toContain("Public-Key: (2048 bit)");
    expect(text).toContain(
      "URI:spiffe://example.org/device/printer-7, DNS:printer-7.plant.example, IP Address:10.20.30.40, IP Address:FD00:0:0:0:0:0:0:7",
    );
    expect(text).toContain("TLS Web Server Authentication, TLS Web Client Authentication");
    expect(text).toContain(`URI:${server.publicHttp}/pki/crl/issuing-rsa.crl`);
    expect(text).toContain(`OCSP - URI:${server.publicHttp}/pki/ocsp`);
    const days = (await openssl(["x509", "-in", leaf, "-noout", "-startdate", "-enddate"])).stdout;
    const [start, end] = [...days.matchAll(/=(.+)/g)].map((m) => Date.parse(m[1] as string));
    expect(((end as number) - (start as number)) / 86400_000).toBeCloseTo(365, 1);
    expect(await ocspStatus(leaf)).toBe("good");
  });

  it("never takes a DNS name from the CSR alone", async () => {
    const token = await tokenFor("printer-8", "legacy");
    const csr = await opensslCsr(work, "printer-8", { alg: "RSA-2048", addext: ["subjectAltName=DNS:bank.example"] });
    const r = await legacyEst("simpleenroll", {
      method: "POST",
      body: csr.base64,
      contentType: "application/pkcs10",
      basic: { user: "printer-8", password: token },
    });
    expectOneLineError(r, 403);
    expect(r.text).toContain("DNS:bank.example");
    await expectDeniedAudit(dataDir, "printer-8", "est.simpleenroll", "name_not_allowed");
  });

  it("revocation reaches the RSA CA's CRL and OCSP", async () => {
    const leaf = join(work, "printer-7.pem");
    await edgeid(["devices", "revoke", "printer-7", "--data", dataDir, "--reason", "keyCompromise"]);
    const serial = await x509Serial(leaf);
    let crlText = "";
    for (let i = 0; i < 50 && !crlText.toLowerCase().includes(serial); i++) {
      const r = await curl(work, `${server.url}/pki/crl/issuing-rsa.crl`, { cacert: rsaRoot, extraArgs: RSA_ONLY });
      expect(r.status).toBe(200);
      const file = join(work, `rsa-${i}.crl`);
      await writeFile(file, r.body);
      const c = await run("openssl", ["crl", "-inform", "DER", "-in", file, "-CAfile", rsaChain, "-noout", "-text"]);
      expect(c.stderr).toContain("verify OK");
      crlText = c.stdout.replace(/Serial Number: 0*/g, "Serial Number: ");
      if (!crlText.toLowerCase().includes(serial)) await new Promise((res) => setTimeout(res, 100));
    }
    expect(crlText.toLowerCase()).toContain(`serial number: ${serial}`);
    expect(await ocspStatus(leaf)).toBe("revoked");
  });
});

describe("gateway-brokered enrollment (openssl + curl)", () => {
  let gwCert: string;
  let gwKey: string;
  const applianceCsr = (name: string, uri: string) =>
    opensslCsr(work, name, { alg: "RSA-2048", subject: `/CN=${name}`, addext: [`subjectAltName=URI:${uri}`] });
  const brokered = async (csr: { base64: string }) =>
    curl(work, `${server.est}/appliance/simpleenroll`, {
      method: "POST",
      body: csr.base64,
      contentType: "application/pkcs10",
      cert: gwCert,
      key: gwKey,
      cacert: server.rootPemFile,
    });

  beforeAll(async () => {
    const token = await tokenFor("gw-9", "gateway");
    const csr = await opensslCsr(work, "gw-9");
    const r = await curl(work, `${server.est}/gateway/simpleenroll`, {
      method: "POST",
      body: csr.base64,
      contentType: "application/pkcs10",
      basic: { user: "gw-9", password: token },
      cacert: server.rootPemFile,
    });
    gwCert = await issued(r, "gw-9");
    gwKey = csr.keyFile;
  });

  it("a gateway enrolls an appliance in its namespace with its own certificate", async () => {
    const uri = "spiffe://example.org/gateway/gw-9/appliance/cam-1";
    const leaf = await issued(await brokered(await applianceCsr("cam-1", uri)), "cam-1");
    const v = await run("openssl", [
      "verify",
      "-purpose",
      "sslclient",
      "-CAfile",
      rsaRoot,
      "-untrusted",
      rsaIssuing,
      leaf,
    ]);
    expect(v.stdout.trim(), v.stderr).toBe(`${leaf}: OK`);
    const text = await x509Text(leaf);
    expect(text).toContain(`URI:${uri}`);
    expect(text).toContain("Subject: CN = gw-9~cam-1");
    const shown = JSON.parse((await edgeid(["devices", "show", "gw-9~cam-1", "--data", dataDir, "--json"])).stdout);
    expect(shown.broker).toEqual({ gateway: "gw-9", name: "cam-1" });
    expect(shown.identity).toBe(uri);
    expect(shown.certificates[0].method).toBe("gateway");
  });

  it("refuses a name outside its namespace, and more appliances than its quota", async () => {
    const outside = await brokered(
      await applianceCsr("cam-x", "spiffe://example.org/gateway/gw-other/appliance/cam-x"),
    );
    expectOneLineError(outside, 403);
    expect(outside.text).toContain("spiffe://example.org/gateway/gw-9/appliance/<name>");
    await expectDeniedAudit(dataDir, "gw-9", "est.simpleenroll", "appliance_outside_namespace");
    await issued(
      await brokered(await applianceCsr("cam-2", "spiffe://example.org/gateway/gw-9/appliance/cam-2")),
      "cam-2",
    );
    const over = await brokered(await applianceCsr("cam-3", "spiffe://example.org/gateway/gw-9/appliance/cam-3"));
    expectOneLineError(over, 403);
    expect(over.text).toContain("the most its profile allows (2)");
    await expectDeniedAudit(dataDir, "gw-9", "est.simpleenroll", "appliance_quota_exceeded");
    const listed = (await edgeid(["devices", "list", "--gateway", "gw-9", "--data", dataDir, "--json"])).stdout
      .trim()
      .split("\n")
      .map((l) => (JSON.parse(l) as { id: string }).id);
    expect(listed).toEqual(["gw-9~cam-1", "gw-9~cam-2"]);
  });

  it("revoking the gateway with --cascade revokes its appliances (CRL and OCSP too)", async () => {
    const r = await edgeid([
      "devices",
      "revoke",
      "gw-9",
      "--cascade",
      "--reason",
      "keyCompromise",
      "--data",
      dataDir,
      "--json",
    ]);
    const out = JSON.parse(r.stdout) as { appliances: string[]; revokedSerials: string[] };
    expect(out.appliances.sort()).toEqual(["gw-9~cam-1", "gw-9~cam-2"]);
    expect(out.revokedSerials).toHaveLength(3);
    for (const id of out.appliances) {
      const shown = JSON.parse((await edgeid(["devices", "show", id, "--data", dataDir, "--json"])).stdout);
      expect(shown.status).toBe("revoked");
    }
    // The server notices the CLI's revocation through its poll; OCSP then says revoked.
    const cam = join(work, "cam-1.pem");
    let status: string | undefined;
    for (let i = 0; i < 50 && status !== "revoked"; i++) {
      status = await ocspStatus(cam);
      if (status !== "revoked") await new Promise((res) => setTimeout(res, 100));
    }
    expect(status).toBe("revoked");
    // And the revoked gateway can enroll nothing more.
    const again = await brokered(await applianceCsr("cam-4", "spiffe://example.org/gateway/gw-9/appliance/cam-4"));
    expectOneLineError(again, 403);
  });
});

describe("a data directory made before the RSA hierarchy existed", () => {
  it("refuses to serve profiles of the RSA CA until `edgeid ca add-rsa` creates it", async () => {
    const older = await makeWorkDir("edgeid-hybrid-upgrade-");
    try {
      const dir = (await cliInitDataDir(older, "example.org")).dataDir;
      // What an earlier release left: no RSA root, issuing CA or RSA listener certificate.
      await run("sh", ["-c", `rm ${dir}/ca/*rsa* ${dir}/tls/server-rsa.*`]);
      const refused = await run(process.execPath, [EDGEID_BIN, "serve", "--data", dir, "--listen", "127.0.0.1:0"]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain("profile legacy is issued by issuing-rsa");
      expect(refused.stderr).toContain("edgeid ca add-rsa");
      const added = await edgeid(["ca", "add-rsa", "--data", dir]);
      expect(added.stdout).toContain("issuing-rsa.pem");
      const root = join(older, "rsa-root.pem");
      await writeFile(root, (await edgeid(["ca", "export", "--rsa", "--data", dir])).stdout);
      expect(await x509Text(root)).toContain("Subject: O = example.org, CN = edgeid Root CA RSA");
      expect((await run(process.execPath, [EDGEID_BIN, "ca", "add-rsa", "--data", dir])).stderr).toContain(
        "already exists",
      );
      const s = await startServer(dir, older, 0, { mqtt: "off" });
      try {
        const r = await curl(older, `${s.est}/legacy/cacerts`, { cacert: root, extraArgs: RSA_ONLY });
        expect(r.status).toBe(200);
      } finally {
        await s.stop();
      }
    } finally {
      await removeDir(older);
    }
    // Two RSA-4096 and two RSA-3072 key generations (init, then add-rsa), whose time has a
    // long tail, plus seven CLI processes: 13-30 s here, so the budget is not the default 30 s.
  }, 120_000);
});
