/**
 * /serverkeygen (RFC 7030 §4.4) against a real `edgeid serve`, with curl and openssl as
 * the client: the multipart response holds a PKCS#8 key and the certificate for it
 * (not for the CSR's key), P-256 or RSA as the profile says; the key is nowhere in the
 * server's database; profiles that do not allow it refuse, and say so in the audit.
 */
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cliCreateToken, edgeid, expectDeniedAudit, showDevice } from "./support/cli.ts";
import { curl, estPost, type HttpResponse } from "./support/curl.ts";
import {
  keyPublicKey,
  openssl,
  opensslCsr,
  opensslCsrNewKeyP256,
  pkcs7ToPem,
  writePem,
  x509PublicKey,
  x509Serial,
} from "./support/openssl.ts";
import { makeWorkDir, removeDir, run } from "./support/process.ts";
import { addProfiles, cliInitDataDir, startServer, type TestServer } from "./support/server.ts";

let work: string;
let dataDir: string;
let server: TestServer;

beforeAll(async () => {
  work = await makeWorkDir("serverkeygen");
  ({ dataDir } = await cliInitDataDir(work, "keygen.example"));
  await addProfiles(dataDir, {
    keyless: { serverKeygen: true, keyTypes: ["P-256"], validity: "30d" },
    "keyless-rsa": { serverKeygen: true, keyTypes: ["RSA", "P-256"], rsaMinBits: 2048, validity: "30d" },
  });
  server = await startServer(dataDir, work, 0, { mqtt: "off" });
}, 60_000);

afterAll(async () => {
  await server?.stop();
  await removeDir(work);
});

/** The parts of a multipart/mixed body: headers and the base64-decoded content. */
function parts(r: HttpResponse): { type: string; der: Buffer }[] {
  const boundary = /boundary=([^;\s]+)/.exec(r.headers["content-type"] ?? "")?.[1];
  if (!boundary) throw new Error(`not multipart: ${r.headers["content-type"]}`);
  const sections = r.text.split(`--${boundary}`);
  expect(sections.at(-1)?.startsWith("--")).toBe(true); // the closing delimiter
  return sections.slice(1, -1).map((section) => {
    const [head = "", body = ""] = section.replace(/^\r\n/, "").split("\r\n\r\n");
    const headers = Object.fromEntries(
      head.split("\r\n").map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]),
    );
    expect(headers["content-transfer-encoding"]).toBe("base64");
    return { type: headers["content-type"] as string, der: Buffer.from(body.replace(/\s+/g, ""), "base64") };
  });
}

async function keygen(deviceId: string, profile: string) {
  const { token } = await cliCreateToken(dataDir, deviceId, { profile });
  const csr = await opensslCsrNewKeyP256(work, deviceId);
  const r = await estPost(server, work, "serverkeygen", csr.base64, {
    label: profile,
    basic: { user: deviceId, password: token },
  });
  return { r, csr, token };
}

describe("serverkeygen", () => {
  it("returns a new P-256 key and its certificate; the server keeps no copy", async () => {
    const { r, csr } = await keygen("kl-01", "keyless");
    expect(r.status, r.text).toBe(200);
    expect(r.headers["content-type"]).toMatch(/^multipart\/mixed; boundary=/);
    expect(r.headers["cache-control"]).toBe("no-store");
    const [key, certs] = parts(r);
    if (!key || !certs) throw new Error("expected two parts");
    expect(key.type).toBe("application/pkcs8");
    expect(certs.type).toBe("application/pkcs7-mime; smime-type=certs-only");
    const keyDer = join(work, "kl-01.key.der");
    await writeFile(keyDer, key.der, { mode: 0o600 });
    const keyPem = join(work, "kl-01.key.pem");
    await openssl(["pkey", "-inform", "DER", "-in", keyDer, "-out", keyPem]);
    expect((await openssl(["pkey", "-in", keyPem, "-noout", "-text"])).stdout).toContain("prime256v1");
    const [pem] = await pkcs7ToPem(work, certs.der.toString("base64"));
    const cert = await writePem(work, "kl-01.pem", pem as string);
    // The certificate is for the server-made key, not for the key that signed the CSR.
    expect(await x509PublicKey(cert)).toBe(await keyPublicKey(keyPem));
    expect(await x509PublicKey(cert)).not.toBe(await keyPublicKey(csr.keyFile));
    // Nowhere in the database file or its WAL.
    for (const f of (await readdir(dataDir)).filter((n) => n.startsWith("edgeid.db"))) {
      expect((await readFile(join(dataDir, f))).includes(key.der), f).toBe(false);
    }
    const device = await showDevice(dataDir, "kl-01");
    const audit = device.audit.find((a) => a.action === "est.serverkeygen");
    expect(audit).toMatchObject({ outcome: "success", detail: { keyGeneratedByServer: true, keyType: "P-256" } });
  });

  it("makes an RSA key where the profile prefers RSA", async () => {
    const { r } = await keygen("kl-rsa", "keyless-rsa");
    expect(r.status, r.text).toBe(200);
    const [key] = parts(r);
    const keyDer = join(work, "kl-rsa.key.der");
    await writeFile(keyDer, key?.der as Buffer, { mode: 0o600 });
    expect((await openssl(["pkey", "-inform", "DER", "-in", keyDer, "-noout", "-text"])).stdout).toMatch(
      /Private-Key: \(2048 bit/,
    );
  });

  const RSA_ONLY_TLS = ["--tls-max", "1.2", "--ciphers", "ECDHE-RSA-AES128-GCM-SHA256"];

  /** serverkeygen at init's legacy label over RSA-only TLS: the appliance's key and certificate files. */
  async function legacyKeygen(deviceId: string) {
    const rsaRoot = join(work, "rsa-root.pem");
    await writeFile(rsaRoot, (await edgeid(["ca", "export", "--rsa", "--data", dataDir])).stdout);
    const { token } = await cliCreateToken(dataDir, deviceId, { profile: "legacy" });
    const csr = await opensslCsrNewKeyP256(work, deviceId);
    const r = await curl(work, `${server.est}/legacy/serverkeygen`, {
      method: "POST",
      body: csr.base64,
      contentType: "application/pkcs10",
      basic: { user: deviceId, password: token },
      cacert: rsaRoot,
      extraArgs: RSA_ONLY_TLS,
    });
    expect(r.status, r.text).toBe(200);
    const [key, certs] = parts(r);
    const keyDer = join(work, `${deviceId}.key.der`);
    await writeFile(keyDer, key?.der as Buffer, { mode: 0o600 });
    const keyPem = join(work, `${deviceId}.key.pem`);
    await openssl(["pkey", "-inform", "DER", "-in", keyDer, "-out", keyPem]);
    expect(certs?.type).toBe("application/pkcs7-mime; smime-type=certs-only");
    // In 64-column lines, as `openssl base64 -d` wants them.
    const [pem] = await pkcs7ToPem(work, (certs as { der: Buffer }).der.toString("base64").replace(/.{64}/g, "$&\n"));
    return { rsaRoot, keyPem, cert: await writePem(work, `${deviceId}.pem`, pem as string) };
  }

  it("at init's legacy label: an RSA key and a certificate of the RSA hierarchy, over RSA-only TLS", async () => {
    const { rsaRoot, keyPem, cert } = await legacyKeygen("plc-keyless");
    expect((await openssl(["pkey", "-in", keyPem, "-noout", "-text"])).stdout).toMatch(/Private-Key: \(2048 bit/);
    expect(await x509PublicKey(cert)).toBe(await keyPublicKey(keyPem));
    const chain = await estGetRsa(rsaRoot);
    const v = await run("openssl", ["verify", "-CAfile", rsaRoot, "-untrusted", chain, cert]);
    expect(v.stdout.trim(), v.stderr).toBe(`${cert}: OK`);
  });

  it("the legacy appliance renews with the key the server made (same key, new serial); the device label refuses", async () => {
    const { rsaRoot, keyPem, cert } = await legacyKeygen("plc-renew");

    // The appliance has no key generator: its renewal CSR is signed with the key it has.
    const renewalCsr = await opensslCsr(work, "plc-renew-again", { keyFile: keyPem, subject: "/CN=plc-renew" });
    const renewal = (label: string) =>
      curl(work, `${server.est}/${label}simplereenroll`, {
        method: "POST",
        body: renewalCsr.base64,
        contentType: "application/pkcs10",
        cert,
        key: keyPem,
        cacert: rsaRoot,
        extraArgs: RSA_ONLY_TLS,
      });
    const renewed = await renewal("legacy/");
    expect(renewed.status, renewed.text).toBe(200);
    const [renewedPem] = await pkcs7ToPem(work, renewed.body);
    const renewedCert = await writePem(work, "plc-renew-2.pem", renewedPem as string);
    expect(await x509Serial(renewedCert)).not.toBe(await x509Serial(cert));
    expect(await x509PublicKey(renewedCert)).toBe(await keyPublicKey(keyPem));
    const device = await showDevice(dataDir, "plc-renew");
    expect(device.audit.find((a) => a.action === "est.simplereenroll")).toMatchObject({
      outcome: "success",
      detail: { sameKey: true },
    });

    // The same request on the device label: this certificate is not the device profile's.
    const refused = await renewal("device/");
    expect(refused.status).toBe(403);
    await expectDeniedAudit(dataDir, "plc-renew", "est.simplereenroll", "wrong_profile");
  });

  it("a device (rekey profile) that renews with its current key is refused", async () => {
    const { token } = await cliCreateToken(dataDir, "dev-samekey");
    const csr = await opensslCsrNewKeyP256(work, "dev-samekey");
    const enrolled = await estPost(server, work, "simpleenroll", csr.base64, {
      basic: { user: "dev-samekey", password: token },
    });
    expect(enrolled.status, enrolled.text).toBe(200);
    const cert = await writePem(work, "dev-samekey.pem", (await pkcs7ToPem(work, enrolled.body))[0] as string);
    const again = await estPost(server, work, "simplereenroll", csr.base64, { cert, key: csr.keyFile });
    expect(again.status).toBe(400);
    await expectDeniedAudit(dataDir, "dev-samekey", "est.simplereenroll", "key_reused");
  });

  /** The legacy label's /cacerts (the RSA issuing CA first), fetched over RSA-only TLS. */
  async function estGetRsa(rsaRoot: string): Promise<string> {
    const r = await curl(work, `${server.est}/legacy/cacerts`, {
      cacert: rsaRoot,
      extraArgs: RSA_ONLY_TLS,
    });
    expect(r.status).toBe(200);
    return writePem(work, "rsa-chain.pem", await pkcs7ToPem(work, r.body));
  }

  it("is refused where the profile does not allow it, and the token stays unused", async () => {
    const { token } = await cliCreateToken(dataDir, "plain-01");
    const csr = await opensslCsrNewKeyP256(work, "plain-01");
    const r = await estPost(server, work, "serverkeygen", csr.base64, { basic: { user: "plain-01", password: token } });
    expect(r.status).toBe(403);
    expect(r.text).toMatch(/does not allow server-side key generation/);
    await expectDeniedAudit(dataDir, "plain-01", "est.serverkeygen", "serverkeygen_not_allowed");
    const ok = await estPost(server, work, "simpleenroll", csr.base64, {
      basic: { user: "plain-01", password: token },
    });
    expect(ok.status).toBe(200);
    const again = await keygen("kl-01", "keyless");
    expect(again.r.status).toBe(200);
    const replay = await estPost(server, work, "serverkeygen", again.csr.base64, {
      label: "keyless",
      basic: { user: "kl-01", password: again.token },
    });
    expect(replay.status).toBe(401);
    const wrongType = await estPost(server, work, "serverkeygen", again.csr.base64, {
      label: "keyless",
      contentType: "text/plain",
      basic: { user: "kl-01", password: again.token },
    });
    expect(wrongType.status).toBe(415);
  });
});
