/**
 * Refusals against a real `edgeid serve`: every bad request gets the right status and
 * a one-line text body, leaves an audit record on the device it names, does not
 * consume the bootstrap token, and does not take the server down.
 */
import { readFile } from "node:fs/promises";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { issueClientCert, opensslCa } from "./support/ca.ts";
import { cliCreateToken, type DeviceView, showDevice, type TokenRow } from "./support/cli.ts";
import { type EstPostOptions, estGet, estPost, expectOneLineError, type HttpResponse } from "./support/curl.ts";
import { normalizeSerial, opensslCsr, pkcs7ToPem, writePem, x509Serial } from "./support/openssl.ts";
import { makeWorkDir, removeDir } from "./support/process.ts";
import { addProfiles, cliInitDataDir, startServer, type TestServer } from "./support/server.ts";

const TD = "example.net";
const ENROLL = "est.simpleenroll";
const REENROLL = "est.simplereenroll";

let work: string;
let dataDir: string;
let server: TestServer;

beforeAll(async () => {
  work = await makeWorkDir("bad-input");
  ({ dataDir } = await cliInitDataDir(work, TD));
  await addProfiles(dataDir, {
    rsa: { keyTypes: ["RSA"] },
  });
  server = await startServer(dataDir, work);
});

afterAll(async () => {
  await server?.stop();
  await removeDir(work);
});

const basic = (t: TokenRow, user = t.deviceId): Pick<EstPostOptions, "basic"> => ({
  basic: { user, password: t.token },
});

/** A fresh, well-formed P-256 CSR for the device (subject CN=<id>). */
const goodCsr = (deviceId: string, tag = "good") =>
  opensslCsr(work, `${deviceId}-${tag}`, { subject: `/CN=${deviceId}` });

interface Enrolled {
  certFile: string;
  keyFile: string;
  serial: string;
}

/** A successful simpleenroll: 200 and one certificate for the device. */
async function expectEnrolls(
  t: TokenRow,
  opts: { label?: string; alg?: "P-256" | "RSA-2048"; tag?: string } = {},
): Promise<Enrolled> {
  const tag = opts.tag ?? "good";
  const csr = await opensslCsr(work, `${t.deviceId}-${tag}`, {
    subject: `/CN=${t.deviceId}`,
    alg: opts.alg ?? "P-256",
  });
  const r = await estPost(server, work, "simpleenroll", csr.base64, { ...basic(t), label: opts.label });
  expect(r.status, `good enrollment of ${t.deviceId} after a refusal: ${r.text}`).toBe(200);
  const [pem] = await pkcs7ToPem(work, r.body);
  expect(pem).toBeDefined();
  const certFile = await writePem(work, `${t.deviceId}-${tag}.pem`, pem as string);
  expect(new x509.X509Certificate(pem as string).subject).toBe(`CN=${t.deviceId}`);
  return { certFile, keyFile: csr.keyFile, serial: await x509Serial(certFile) };
}

function expectDenied(device: DeviceView, action: string, reason: string): void {
  const denied = device.audit.filter((a) => a.outcome === "denied" && a.action === action);
  expect(
    denied.map((a) => a.detail?.reason),
    `denied ${action} records of ${device.id}: ${JSON.stringify(device.audit)}`,
  ).toContain(reason);
}

async function expectServerUp(): Promise<void> {
  expect(server.isRunning(), server.log()).toBe(true);
  const r = await estGet(server, work, "cacerts");
  expect(r.status).toBe(200);
}

/**
 * The common shape of a refused enrollment that carries a valid token: one-line
 * error with `status`; the server survives; the same token still enrolls; the
 * device's audit trail holds the refusal with `reason`.
 */
async function refusalKeepsToken(
  deviceId: string,
  status: number,
  reason: string,
  send: (t: TokenRow) => Promise<HttpResponse>,
  opts: { profile?: string; label?: string; alg?: "P-256" | "RSA-2048" } = {},
): Promise<void> {
  const token = await cliCreateToken(dataDir, deviceId, opts.profile ? { profile: opts.profile } : {});
  const r = await send(token);
  expectOneLineError(r, status);
  if (status === 401) expect(r.headers["www-authenticate"]).toMatch(/^Basic realm="edgeid EST"/);
  expect(r.text).not.toContain(token.token);
  expect(server.isRunning(), server.log()).toBe(true);

  // Not consumed: the very same token enrolls now (which also proves the server is up).
  const enrolled = await expectEnrolls(token, { label: opts.label, alg: opts.alg });
  const device = await showDevice(dataDir, deviceId);
  expect(device.status).toBe("active");
  expect(normalizeSerial(device.currentSerial)).toBe(enrolled.serial);
  expect(normalizeSerial(device.tokens.find((t) => t.id === token.tokenId)?.usedSerial)).toBe(enrolled.serial);
  expectDenied(device, ENROLL, reason);
}

describe("simpleenroll: malformed requests", () => {
  it("body that is not base64 → 400", async () => {
    await refusalKeepsToken("bad-b64", 400, "not_base64", (t) =>
      estPost(server, work, "simpleenroll", "%%% this is *not* base64! %%%\n", basic(t)),
    );
  });

  it("empty body → 400", async () => {
    await refusalKeepsToken("bad-empty", 400, "empty_body", (t) => estPost(server, work, "simpleenroll", "", basic(t)));
  });

  it("base64 of garbage → 400", async () => {
    const garbage = Buffer.from("this is certainly not a DER PKCS#10 certification request").toString("base64");
    await refusalKeepsToken("bad-garbage", 400, "csr_malformed", (t) =>
      estPost(server, work, "simpleenroll", `${garbage}\n`, basic(t)),
    );
  });

  it("CSR whose signature does not verify → 400", async () => {
    await refusalKeepsToken("bad-sig", 400, "csr_signature_invalid", async (t) => {
      // Signed over O=AAAAAAAAAAAA, then the signed bytes are changed to O=BBBBBBBBBBBB.
      const csr = await opensslCsr(work, "bad-sig-tampered", { subject: "/CN=bad-sig/O=AAAAAAAAAAAA" });
      const at = csr.der.indexOf("AAAAAAAAAAAA");
      expect(at).toBeGreaterThan(0);
      const tampered = Buffer.from(csr.der);
      tampered.write("BBBBBBBBBBBB", at, "latin1");
      return estPost(server, work, "simpleenroll", tampered.toString("base64"), basic(t));
    });
  });

  it("wrong Content-Type → 415", async () => {
    await refusalKeepsToken("bad-ctype", 415, "wrong_content_type", async (t) => {
      const csr = await goodCsr("bad-ctype", "as-text");
      return estPost(server, work, "simpleenroll", csr.base64, { ...basic(t), contentType: "text/plain" });
    });
  });

  it("no Content-Type (curl's form default) → 415", async () => {
    await refusalKeepsToken("bad-noctype", 415, "wrong_content_type", async (t) => {
      const csr = await goodCsr("bad-noctype", "as-form");
      // curl --data-binary defaults to application/x-www-form-urlencoded.
      return estPost(server, work, "simpleenroll", csr.base64, { ...basic(t), contentType: undefined });
    });
  });

  it("body over 64 KiB → 413", async () => {
    await refusalKeepsToken("bad-large", 413, "payload_too_large", async (t) => {
      // A valid CSR followed by whitespace (which base64 decoding skips) past the limit.
      const csr = await goodCsr("bad-large", "padded");
      const body = csr.base64 + "\n".repeat(64 * 1024 + 1 - csr.base64.length);
      expect(body.length).toBe(64 * 1024 + 1);
      return estPost(server, work, "simpleenroll", body, basic(t));
    });
  });

  it("chunked body over 64 KiB (no Content-Length) → 413", async () => {
    await refusalKeepsToken("bad-chunked", 413, "payload_too_large", (t) =>
      estPost(server, work, "simpleenroll", "A".repeat(80 * 1024), {
        ...basic(t),
        extraArgs: ["-H", "Transfer-Encoding: chunked"],
      }),
    );
  });
});

describe("simpleenroll: key policy", () => {
  it("RSA-1024 key on the device profile → 400", async () => {
    await refusalKeepsToken("bad-rsa1024", 400, "key_not_allowed", async (t) => {
      const csr = await opensslCsr(work, "bad-rsa1024-key", { subject: "/CN=bad-rsa1024", alg: "RSA-1024" });
      return estPost(server, work, "simpleenroll", csr.base64, basic(t));
    });
  });

  it("RSA-2048 key on the device profile (no RSA there) → 400", async () => {
    await refusalKeepsToken("bad-rsa-device", 400, "key_not_allowed", async (t) => {
      const csr = await opensslCsr(work, "bad-rsa-device-key", { subject: "/CN=bad-rsa-device", alg: "RSA-2048" });
      return estPost(server, work, "simpleenroll", csr.base64, basic(t));
    });
  });

  it("P-192 key → 400", async () => {
    await refusalKeepsToken("bad-p192", 400, "key_not_allowed", async (t) => {
      const csr = await opensslCsr(work, "bad-p192-key", { subject: "/CN=bad-p192", alg: "P-192" });
      return estPost(server, work, "simpleenroll", csr.base64, basic(t));
    });
  });

  it("RSA-2048 is accepted on a profile that allows RSA (label /rsa/)", async () => {
    const token = await cliCreateToken(dataDir, "rsa-ok", { profile: "rsa" });
    const enrolled = await expectEnrolls(token, { label: "rsa", alg: "RSA-2048" });
    const text = await readFile(enrolled.certFile, "utf8");
    const cert = new x509.X509Certificate(text);
    expect(cert.publicKey.algorithm.name).toBe("RSASSA-PKCS1-v1_5");
    const device = await showDevice(dataDir, "rsa-ok");
    expect(device.profile).toBe("rsa");
    expect(device.certificates[0]?.keyType).toBe("RSA-2048");
  });

  it("RSA-1024 is refused on the RSA profile too → 400", async () => {
    await refusalKeepsToken(
      "bad-rsa1024-rsa",
      400,
      "key_not_allowed",
      async (t) => {
        const csr = await opensslCsr(work, "bad-rsa1024-rsa-key", { subject: "/CN=bad-rsa1024-rsa", alg: "RSA-1024" });
        return estPost(server, work, "simpleenroll", csr.base64, { ...basic(t), label: "rsa" });
      },
      { profile: "rsa", label: "rsa", alg: "RSA-2048" },
    );
  });

  it("a device-profile token at the /rsa/ label → 403", async () => {
    await refusalKeepsToken("bad-label", 403, "token_wrong_profile", async (t) => {
      const csr = await goodCsr("bad-label", "at-rsa");
      return estPost(server, work, "simpleenroll", csr.base64, { ...basic(t), label: "rsa" });
    });
  });
});

describe("simpleenroll: names", () => {
  it("CSR asking for another device's SPIFFE ID (SAN URI) → 403", async () => {
    await refusalKeepsToken("bad-san", 403, "name_not_allowed", async (t) => {
      const csr = await opensslCsr(work, "bad-san-req", {
        subject: "/CN=bad-san",
        addext: [`subjectAltName=URI:spiffe://${TD}/device/victim-device`],
      });
      return estPost(server, work, "simpleenroll", csr.base64, basic(t));
    });
  });

  it("CSR asking for another device's CN → 403", async () => {
    await refusalKeepsToken("bad-cn", 403, "name_not_allowed", async (t) => {
      const csr = await opensslCsr(work, "bad-cn-req", { subject: "/CN=victim-device" });
      return estPost(server, work, "simpleenroll", csr.base64, basic(t));
    });
  });
});

describe("simpleenroll: tokens", () => {
  it("unknown token → 401 with a Basic challenge", async () => {
    await refusalKeepsToken("bad-unknown-token", 401, "token_unknown", async (t) => {
      const csr = await goodCsr("bad-unknown-token", "wrong-secret");
      const forged = { ...t, token: `edt_${"x".repeat(43)}` };
      return estPost(server, work, "simpleenroll", csr.base64, basic(forged));
    });
  });

  it("unknown Bearer token → 401 with a Basic challenge", async () => {
    const csr = await opensslCsr(work, "bearer-unknown", { subject: "/O=nobody" });
    const r = await estPost(server, work, "simpleenroll", csr.base64, { bearer: "edt_doesnotexist" });
    expectOneLineError(r, 401);
    expect(r.headers["www-authenticate"]).toMatch(/^Basic realm="edgeid EST"/);
    await expectServerUp();
  });

  it("token of device A with username B → 403; A's token still works", async () => {
    // "bad-owner-b" is not a device on this server; the token belongs to "bad-owner-a".
    await refusalKeepsToken("bad-owner-a", 403, "token_wrong_device", async (t) => {
      const csr = await opensslCsr(work, "bad-owner-b-req", { subject: "/CN=bad-owner-b" });
      return estPost(server, work, "simpleenroll", csr.base64, basic(t, "bad-owner-b"));
    });
  });

  it("already-used token → 401", async () => {
    const token = await cliCreateToken(dataDir, "bad-used-token");
    const first = await expectEnrolls(token, { tag: "first" });
    const csr = await goodCsr("bad-used-token", "second");
    const r = await estPost(server, work, "simpleenroll", csr.base64, basic(token));
    expectOneLineError(r, 401);
    expect(r.headers["www-authenticate"]).toMatch(/^Basic realm="edgeid EST"/);
    await expectServerUp();
    const device = await showDevice(dataDir, "bad-used-token");
    expect(device.certificates).toHaveLength(1);
    expect(normalizeSerial(device.currentSerial)).toBe(first.serial);
    expectDenied(device, ENROLL, "token_used");
  });

  it("the same token sent from six connections at once enrolls exactly once", async () => {
    const token = await cliCreateToken(dataDir, "bad-race");
    const csrs = await Promise.all(Array.from({ length: 6 }, (_, i) => goodCsr("bad-race", `race-${i}`)));
    const results = await Promise.all(
      csrs.map((csr) => estPost(server, work, "simpleenroll", csr.base64, basic(token))),
    );
    const statuses = results.map((r) => r.status).sort();
    expect(statuses).toEqual([200, 401, 401, 401, 401, 401]);
    const device = await showDevice(dataDir, "bad-race");
    expect(device.certificates).toHaveLength(1);
    expect(device.tokens[0]?.usedAt).not.toBeNull();
  });
});

describe("simplereenroll refusals", () => {
  let renewable: Enrolled;

  beforeAll(async () => {
    renewable = await expectEnrolls(await cliCreateToken(dataDir, "reenroll-dev"), { tag: "initial" });
  });

  it("without a client certificate → 403", async () => {
    const csr = await goodCsr("reenroll-dev", "no-cert");
    const r = await estPost(server, work, "simplereenroll", csr.base64);
    expectOneLineError(r, 403);
    await expectServerUp();
  });

  it("with a certificate from another CA → 403", async () => {
    // A throwaway CA issues a look-alike client certificate for an enrolled device.
    const rogue = await opensslCa(work, "rogue-ca", "/O=Rogue/CN=Rogue CA");
    const lookalike = await issueClientCert(work, rogue, "rogue-leaf", "/CN=reenroll-dev");
    const csr = await goodCsr("reenroll-dev", "rogue");
    const r = await estPost(server, work, "simplereenroll", csr.base64, {
      cert: lookalike.certFile,
      key: lookalike.keyFile,
    });
    expectOneLineError(r, 403);
    await expectServerUp();
    const device = await showDevice(dataDir, "reenroll-dev");
    expect(device.certificates).toHaveLength(1);
    expect(normalizeSerial(device.currentSerial)).toBe(renewable.serial);
  });

  it("with the same key → 400; a new key then works", async () => {
    const sameKey = await opensslCsr(work, "reenroll-dev-same", {
      subject: "/CN=reenroll-dev",
      keyFile: renewable.keyFile,
    });
    const r = await estPost(server, work, "simplereenroll", sameKey.base64, {
      cert: renewable.certFile,
      key: renewable.keyFile,
    });
    expectOneLineError(r, 400);
    expect(server.isRunning()).toBe(true);
    expectDenied(await showDevice(dataDir, "reenroll-dev"), REENROLL, "key_reused");

    const fresh = await goodCsr("reenroll-dev", "fresh");
    const ok = await estPost(server, work, "simplereenroll", fresh.base64, {
      cert: renewable.certFile,
      key: renewable.keyFile,
    });
    expect(ok.status, ok.text).toBe(200);
  });
});

describe("the server after all of the above", () => {
  it("is still running and never answered 5xx", async () => {
    await expectServerUp();
    const statuses = server
      .log()
      .split("\n")
      .filter((l) => l.includes('"msg":"request"'))
      .map((l) => (JSON.parse(l) as { status: number }).status);
    expect(statuses.length).toBeGreaterThan(20);
    expect(statuses.filter((s) => s >= 500)).toEqual([]);
  });
});
