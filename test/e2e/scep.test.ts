/**
 * SCEP (RFC 8894) against a real `edgeid serve`, with a client nobody here wrote:
 * Debian's `scepclient` (micromdm's Go client). It enrolls an RSA-2048 appliance with
 * its bootstrap token as the challenge, the certificate verifies with `openssl verify`
 * against the RSA chain, and every refusal — wrong challenge, used token, another
 * device's id, a revoked device, a cipher the profile does not allow — comes back as
 * the right failInfo with an audit record. The client renews with its certificate
 * (RenewalReq) when it has one.
 *
 * The client talks plain HTTP to the public listener, as SCEP is designed (one case goes
 * to the HTTPS listener, where Go reads its trust anchors from SSL_CERT_FILE). scepclient 2.1 encrypts with single DES and signs with SHA-1 whatever
 * GetCACaps says, so the profile it uses allows legacy ciphers (`scep.legacyCiphers`).
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { edgeid, expectDeniedAudit, showDevice } from "./support/cli.ts";
import { normalizeSerial, opensslVerify, x509Serial, x509Subject } from "./support/openssl.ts";
import { makeWorkDir, removeDir, run } from "./support/process.ts";
import { addProfiles, cliInitDataDir, startServer, type TestServer } from "./support/server.ts";

let work: string;
let dataDir: string;
let server: TestServer;
let anchors: string;
let rsaChain: string;

async function tokenFor(deviceId: string, profile = "legacy"): Promise<string> {
  const r = await edgeid(["token", "create", "--data", dataDir, "--device", deviceId, "--profile", profile, "--json"]);
  return (JSON.parse(r.stdout.trim()) as { token: string }).token;
}

interface ScepRun {
  code: number;
  output: string;
  certFile: string;
}

/** One scepclient run; each device keeps its key, CSR and certificate in its own directory. */
async function scepclient(
  dir: string,
  opts: { label?: string; challenge?: string; cn: string; https?: boolean },
): Promise<ScepRun> {
  const home = join(work, dir);
  await mkdir(home, { recursive: true });
  const certFile = join(home, "cert.pem");
  const args = [
    "-server-url",
    `${opts.https ? server.url : server.publicHttp}/scep/${opts.label ?? "legacy"}`,
    "-cn",
    opts.cn,
    "-private-key",
    join(home, "key.pem"),
    "-certificate",
    certFile,
    ...(opts.challenge ? ["-challenge", opts.challenge] : []),
  ];
  const r = await run("scepclient", args, { env: { ...process.env, SSL_CERT_FILE: anchors }, timeoutMs: 60_000 });
  return { code: r.code, output: `${r.stdout}${r.stderr}`, certFile };
}

beforeAll(async () => {
  work = await makeWorkDir("edgeid-scep-");
  ({ dataDir } = await cliInitDataDir(work, "scep.test"));
  const init = JSON.parse(await readFile(join(dataDir, "edgeid.json"), "utf8")) as {
    profiles: Record<string, Record<string, unknown>>;
  };
  await addProfiles(dataDir, {
    // The legacy profile as `edgeid init` wrote it, for firmware that only does DES and SHA-1.
    legacy: { ...init.profiles.legacy, scep: { legacyCiphers: true } },
    // The same without the fallback: AES and SHA-256 only (what `edgeid init` writes).
    modern: { ...init.profiles.legacy, scep: {} },
  });
  server = await startServer(dataDir, work);
  expect(server.publicHttp).toMatch(/^http:\/\//);
  // The listener presents a P-256 and an RSA certificate; Go may pick either.
  anchors = join(work, "anchors.pem");
  rsaChain = join(work, "rsa-chain.pem");
  const ca = (f: string) => readFile(join(dataDir, "ca", f), "utf8");
  await writeFile(anchors, (await ca("root-ca.pem")) + (await ca("root-ca-rsa.pem")));
  await writeFile(rsaChain, (await ca("issuing-rsa.pem")) + (await ca("root-ca-rsa.pem")));
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await removeDir(work);
});

describe("SCEP with Debian's scepclient", () => {
  it("enrolls an RSA-2048 appliance with its token as the challenge; openssl verifies it against the RSA chain", async () => {
    const token = await tokenFor("scep-app-1");
    const r = await scepclient("app-1", { challenge: token, cn: "scep-app-1" });
    expect(r.code, r.output).toBe(0);
    expect(r.output).toContain("pkiStatus=SUCCESS");
    const verify = await opensslVerify(rsaChain, r.certFile);
    expect(verify.code, verify.stdout + verify.stderr).toBe(0);
    // The server decides the names: CN = device id, whatever else the client put in its subject.
    expect(await x509Subject(r.certFile)).toMatch(/^subject=CN\s?=\s?scep-app-1$/);
    const device = await showDevice(dataDir, "scep-app-1");
    expect(device.status).toBe("active");
    expect((device as unknown as { protocol: string }).protocol).toBe("scep");
    expect(device.audit.some((a) => a.action === "scep.pkcsreq" && a.outcome === "success")).toBe(true);
    const text = await edgeid(["devices", "show", "scep-app-1", "--data", dataDir]);
    expect(text.stdout).toMatch(/enrolled\s+\S+ over SCEP/);
  });

  it("renews with the current certificate (RenewalReq): a new certificate, audited as scep.renewalreq", async () => {
    const before = await x509Serial(join(work, "app-1", "cert.pem"));
    const r = await scepclient("app-1", { cn: "scep-app-1" });
    expect(r.code, r.output).toBe(0);
    const after = await x509Serial(r.certFile);
    expect(after).not.toBe(before);
    expect((await opensslVerify(rsaChain, r.certFile)).code).toBe(0);
    const device = await showDevice(dataDir, "scep-app-1");
    // openssl prints the serial without a leading zero nibble.
    expect(normalizeSerial(device.currentSerial?.toLowerCase())).toBe(normalizeSerial(after.toLowerCase()));
    expect(device.audit.some((a) => a.action === "scep.renewalreq" && a.outcome === "success")).toBe(true);
  });

  it("refuses a wrong challenge (here over the HTTPS listener): badRequest, audited", async () => {
    await tokenFor("scep-app-2");
    const r = await scepclient("app-2", { challenge: "edt_not-the-token", cn: "scep-app-2", https: true });
    expect(r.code).not.toBe(0);
    expect(r.output).toContain("failInfo: badRequest (2)");
    await expectDeniedAudit(dataDir, "scep-app-2", "scep.pkcsreq", "token_unknown");
  });

  it("refuses a used token: badRequest, audited", async () => {
    const token = await tokenFor("scep-app-3");
    expect((await scepclient("app-3", { challenge: token, cn: "scep-app-3" })).code).toBe(0);
    const r = await scepclient("app-3-again", { challenge: token, cn: "scep-app-3" });
    expect(r.output).toContain("failInfo: badRequest (2)");
    await expectDeniedAudit(dataDir, "scep-app-3", "scep.pkcsreq", "token_used");
  });

  it("refuses a CSR for another device id: badRequest, audited", async () => {
    const token = await tokenFor("scep-app-4");
    const r = await scepclient("app-4", { challenge: token, cn: "scep-app-5" });
    expect(r.output).toContain("failInfo: badRequest (2)");
    await expectDeniedAudit(dataDir, "scep-app-4", "scep.pkcsreq", "token_wrong_device");
  });

  it("refuses a revoked device's renewal: badRequest, audited", async () => {
    const token = await tokenFor("scep-app-6");
    expect((await scepclient("app-6", { challenge: token, cn: "scep-app-6" })).code).toBe(0);
    await edgeid(["devices", "revoke", "scep-app-6", "--data", dataDir, "--reason", "keyCompromise"]);
    const r = await scepclient("app-6", { cn: "scep-app-6" });
    expect(r.output).toContain("failInfo: badRequest (2)");
    await expectDeniedAudit(dataDir, "scep-app-6", "scep.renewalreq", "client_certificate_revoked");
  });

  it("refuses the client's DES and SHA-1 where the profile allows AES and SHA-256 only: badAlg", async () => {
    const token = await tokenFor("scep-app-7", "modern");
    const caps = await fetchCaps("modern");
    expect(caps).toEqual(expect.arrayContaining(["POSTPKIOperation", "SHA-256", "AES", "SCEPStandard", "Renewal"]));
    expect(caps).not.toContain("DES3");
    const r = await scepclient("app-7", { label: "modern", challenge: token, cn: "scep-app-7" });
    expect(r.output).toContain("failInfo: badAlg (0)");
  });
});

async function fetchCaps(label: string): Promise<string[]> {
  const r = await run("curl", ["-sS", `${server.publicHttp}/scep/${label}?operation=GetCACaps`]);
  return r.stdout.trim().split("\n");
}
