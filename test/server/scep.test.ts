/**
 * SCEP (RFC 8894) through the core, on a real SQLite file with real keys and a manual
 * clock: every operation and every refusal with its failInfo and audit record. The
 * requests are built by an independent pkijs client (test/support/scep-client.ts).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import { afterEach, describe, expect, it } from "vitest";
import { ensureScepRa } from "../../server/adapters/node/scep-ra.ts";
import { createApp } from "../../server/app.ts";
import type { Actor } from "../../server/authority/actor.ts";
import { revokeDevice } from "../../server/authority/revoke.ts";
import type { ScepRequest } from "../../server/authority/scep.ts";
import { type ConfigInput, parseConfig } from "../../server/config/schema.ts";
import { deviceView } from "../../server/frontends/http/views.ts";
import { certsOnly } from "../../server/pki/pkcs7.ts";
import type { DeviceRecord } from "../../server/ports/storage.ts";
import { createPublicApp } from "../../server/public-app.ts";
import { createToken, type Harness, harness, parseCert, T0 } from "../support/fixtures.ts";
import { registerOperator } from "../support/operators.ts";
import {
  type CertRep,
  certificatesOf,
  crlsOf,
  envelope,
  FAIL,
  issuerAndSerialOf,
  issuerAndSubject,
  MESSAGE,
  type MessageOptions,
  newScepDevice,
  pkiMessage,
  readCertRep,
  type ScepDevice,
  scepCsr,
  type TestCipher,
} from "../support/scep-client.ts";

const OPERATOR: Actor = { id: "operator:op_scep", role: "operator" };
const SUCCESS = 0;
const FAILURE = 2;
const PENDING = 3;

const CONFIG: ConfigInput = {
  trustDomain: "example.org",
  profiles: {
    device: {},
    legacy: {
      issuer: "issuing-rsa",
      keyTypes: ["RSA"],
      validity: "365d",
      reenroll: "renew-or-rekey",
      expiryAlerts: ["30d"],
      scep: {},
    },
    old: { issuer: "issuing-rsa", keyTypes: ["RSA"], validity: "365d", scep: { legacyCiphers: true } },
    manual: { issuer: "issuing-rsa", keyTypes: ["RSA"], approval: "manual", scep: {} },
    est: { issuer: "issuing-rsa", keyTypes: ["RSA"] },
  },
};

let h: Harness | undefined;
let ra: Uint8Array;

afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function setup(): Promise<Harness> {
  h = await harness({ config: CONFIG });
  const made = await ensureScepRa(h.dir, h.deps.cas, "test passphrase", T0);
  if (!made) throw new Error("no RSA hierarchy");
  h.deps.scepRa = () => made.ra;
  ra = made.ra.certificate;
  await registerOperator(h, OPERATOR);
  return h;
}

function operation(
  h: Harness,
  message: Uint8Array,
  label = "legacy",
): ReturnType<Harness["authority"]["scepOperation"]> {
  const req: ScepRequest = {
    label,
    message,
    peer: { remoteAddress: "192.0.2.7" },
    crlOf: (ca) => h.responders.currentCrl(ca)?.der,
  };
  return h.authority.scepOperation(req);
}

interface Ask {
  device: ScepDevice;
  label?: string;
  messageType?: number;
  content: Uint8Array;
  cipher?: TestCipher;
  recipient?: Uint8Array;
  extra?: Partial<MessageOptions>;
}

async function ask(h: Harness, a: Ask): Promise<CertRep & { raw: Uint8Array }> {
  const message = await pkiMessage({
    messageType: a.messageType ?? MESSAGE.PKCSReq,
    content: envelope(a.content, a.recipient ?? ra, a.cipher),
    device: a.device,
    ...a.extra,
  });
  const reply = await operation(h, message, a.label);
  return { ...(await readCertRep(reply.body, a.device)), raw: reply.body };
}

async function enrollOver(h: Harness, deviceId: string, label = "legacy") {
  const device = await newScepDevice();
  const token = await createToken(h, deviceId, { profile: label });
  const rep = await ask(h, { device, label, content: await scepCsr(device, deviceId, token) });
  return { device, token, rep };
}

async function lastAudit(h: Harness, deviceId: string) {
  const page = await h.storage.listAudit({ deviceId, limit: 1 });
  return page[0];
}

describe("SCEP GetCACaps and GetCACert", () => {
  it("advertises AES and SHA-256 (and DES3/SHA-1 only where a profile allows them); the RA certificate comes first", async () => {
    const h = await setup();
    expect(h.authority.scepCapabilities("legacy")).toEqual(
      expect.arrayContaining(["POSTPKIOperation", "SHA-256", "AES", "SCEPStandard", "Renewal"]),
    );
    expect(h.authority.scepCapabilities("legacy")).not.toContain("DES3");
    expect(h.authority.scepCapabilities("old")).toEqual(expect.arrayContaining(["DES3", "SHA-1"]));
    const certs = certificatesOf(certsOnly(h.authority.scepCaCertificates("legacy"))).map(parseCert);
    expect(certs).toHaveLength(3);
    const raCert = certs.find((c) => c.subject.includes("SCEP RA")) as x509.X509Certificate;
    // The RA is certified by the RSA issuing CA (also in the answer), for signatures and key transport.
    expect(raCert.issuer).toBe(parseCert(h.rsaCa?.issuing.certificate as Uint8Array).subject);
    expect(certs.map((c) => c.subject)).toContain(raCert.issuer);
    const ku = raCert.getExtension(x509.KeyUsagesExtension);
    expect(ku?.usages).toBe(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment);
  });

  it("is configured only on profiles issued by the RSA hierarchy", () => {
    expect(() => parseConfig({ trustDomain: "example.org", profiles: { device: { scep: {} } } })).toThrow(
      /SCEP is offered only for profiles issued by the RSA hierarchy/,
    );
  });

  it("is not offered for a profile without `scep`, nor an unknown label", async () => {
    const h = await setup();
    expect(() => h.authority.scepCapabilities("est")).toThrow(/not offered over SCEP/);
    expect(() => h.authority.scepCaCertificates("nope")).toThrow(/no EST label/);
  });
});

describe("SCEP PKCSReq", () => {
  it("issues with the bootstrap token as the challenge; the certificate is encrypted to the requester", async () => {
    const h = await setup();
    const { rep } = await enrollOver(h, "app-1");
    expect(rep.status).toBe(SUCCESS);
    expect(rep.signatureValid).toBe(true);
    expect(parseCert(rep.signer).subject).toContain("SCEP RA");
    const [issued] = certificatesOf(rep.content as Uint8Array);
    const cert = parseCert(issued as Uint8Array);
    // The server decides the names: CN = device id (the CSR's O is dropped), SPIFFE SAN.
    expect(cert.subject).toBe("CN=app-1");
    expect(cert.issuer).toBe(parseCert(h.rsaCa?.issuing.certificate as Uint8Array).subject);
    const device = await h.storage.getDevice("app-1");
    expect(device?.status).toBe("active");
    expect(device?.protocol).toBe("scep");
    // The operator API and the CLI render devices through this view.
    expect(deviceView(device as DeviceRecord, "example.org").protocol).toBe("scep");
    expect((await h.storage.getCertificate(device?.currentSerial as string))?.protocol).toBe("scep");
    const audit = await lastAudit(h, "app-1");
    expect(audit).toMatchObject({
      action: "scep.pkcsreq",
      outcome: "success",
      actor: expect.stringMatching(/^token:/),
    });
  });

  it("answers the transaction: transactionID and recipientNonce are the request's", async () => {
    const h = await setup();
    const device = await newScepDevice();
    const token = await createToken(h, "app-tx", { profile: "legacy" });
    const nonce = new Uint8Array(16).fill(7);
    const rep = await ask(h, {
      device,
      content: await scepCsr(device, "app-tx", token),
      extra: { transactionId: "tx-123", senderNonce: nonce },
    });
    expect(rep.transactionId).toBe("tx-123");
    expect(rep.recipientNonce).toEqual(nonce);
  });

  const refusals: [string, (h: Harness, d: ScepDevice) => Promise<Uint8Array>, number, string, string][] = [
    ["a wrong challenge", async (_h, d) => scepCsr(d, "app-2", "edt_wrong"), FAIL.badRequest, "app-2", "token_unknown"],
    ["no challenge", async (_h, d) => scepCsr(d, "app-2"), FAIL.badRequest, "anonymous", "challenge_missing"],
    [
      "a CSR for another device id",
      async (h, d) => scepCsr(d, "app-other", await createToken(h, "app-3", { profile: "legacy" })),
      FAIL.badRequest,
      "app-3",
      "token_wrong_device",
    ],
  ];
  for (const [what, csr, failInfo, deviceId, reason] of refusals) {
    it(`refuses ${what}: FAILURE ${failInfo}, audited (${reason})`, async () => {
      const h = await setup();
      const device = await newScepDevice();
      const rep = await ask(h, { device, content: await csr(h, device) });
      expect(rep.status).toBe(FAILURE);
      expect(rep.failInfo).toBe(failInfo);
      expect(rep.signatureValid).toBe(true);
      const page = await h.storage.listAudit({ limit: 5 });
      const denied = page.find((a) => a.outcome === "denied");
      expect(denied).toMatchObject({ action: "scep.pkcsreq", detail: expect.objectContaining({ reason }) });
      if (deviceId !== "anonymous") expect(denied?.deviceId).toBe(deviceId);
    });
  }

  it("refuses a used token, and a revoked device", async () => {
    const h = await setup();
    const { token } = await enrollOver(h, "app-4");
    const again = await newScepDevice();
    const used = await ask(h, { device: again, content: await scepCsr(again, "app-4", token) });
    expect(used).toMatchObject({ status: FAILURE, failInfo: FAIL.badRequest });
    expect(await lastAudit(h, "app-4")).toMatchObject({
      outcome: "denied",
      detail: expect.objectContaining({ reason: "token_used" }),
    });

    // A second token made before the device was revoked: revocation takes it with the device.
    const second = await createToken(h, "app-5", { profile: "legacy" });
    await enrollOver(h, "app-5");
    await revokeDevice(h.deps, { deviceId: "app-5", reason: "keyCompromise", actor: OPERATOR });
    const fresh = await newScepDevice();
    const revoked = await ask(h, { device: fresh, content: await scepCsr(fresh, "app-5", second) });
    expect(revoked).toMatchObject({ status: FAILURE, failInfo: FAIL.badRequest });
    expect(await lastAudit(h, "app-5")).toMatchObject({
      action: "scep.pkcsreq",
      outcome: "denied",
      detail: expect.objectContaining({ reason: "token_revoked" }),
    });
  });

  it("refuses a token of another profile", async () => {
    const h = await setup();
    const device = await newScepDevice();
    const token = await createToken(h, "app-6", { profile: "old" });
    const rep = await ask(h, { device, content: await scepCsr(device, "app-6", token) });
    expect(rep).toMatchObject({ status: FAILURE, failInfo: FAIL.badRequest });
    expect(await lastAudit(h, "app-6")).toMatchObject({
      detail: expect.objectContaining({ reason: "token_wrong_profile" }),
    });
  });
});

describe("SCEP RenewalReq", () => {
  it("renews with the current certificate as the signer (the same rules as simplereenroll)", async () => {
    const h = await setup();
    const { device, rep } = await enrollOver(h, "app-r");
    const [issued] = certificatesOf(rep.content as Uint8Array);
    const holder: ScepDevice = { ...device, certificate: issued as Uint8Array };
    h.clock.advance(86400);
    const renewed = await ask(h, {
      device: holder,
      messageType: MESSAGE.RenewalReq,
      content: await scepCsr(device, "app-r"),
    });
    expect(renewed.status).toBe(SUCCESS);
    const [next] = certificatesOf(renewed.content as Uint8Array);
    expect(parseCert(next as Uint8Array).serialNumber).not.toBe(parseCert(issued as Uint8Array).serialNumber);
    expect(await lastAudit(h, "app-r")).toMatchObject({ action: "scep.renewalreq", outcome: "success" });
  });

  it("refuses a revoked device (badRequest), an unknown certificate (badCertId)", async () => {
    const h = await setup();
    const { device, rep } = await enrollOver(h, "app-rv");
    const [issued] = certificatesOf(rep.content as Uint8Array);
    await revokeDevice(h.deps, { deviceId: "app-rv", reason: "keyCompromise", actor: OPERATOR });
    const holder: ScepDevice = { ...device, certificate: issued as Uint8Array };
    const revoked = await ask(h, {
      device: holder,
      messageType: MESSAGE.RenewalReq,
      content: await scepCsr(device, "app-rv"),
    });
    expect(revoked).toMatchObject({ status: FAILURE, failInfo: FAIL.badRequest });
    expect(await lastAudit(h, "app-rv")).toMatchObject({
      action: "scep.renewalreq",
      detail: expect.objectContaining({ reason: "client_certificate_revoked" }),
    });
    const stranger = await newScepDevice();
    const unknown = await ask(h, {
      device: stranger,
      messageType: MESSAGE.RenewalReq,
      content: await scepCsr(stranger, "app-rv"),
    });
    expect(unknown).toMatchObject({ status: FAILURE, failInfo: FAIL.badCertId });
  });
});

describe("SCEP RenewalReq after expiry", () => {
  it("refuses an expired certificate where the profile does not renew after expiry: badTime", async () => {
    const h = await setup();
    const { device, rep } = await enrollOver(h, "app-old");
    const [issued] = certificatesOf(rep.content as Uint8Array);
    h.clock.advance(366 * 86400);
    const late = await ask(h, {
      device: { ...device, certificate: issued as Uint8Array },
      messageType: MESSAGE.RenewalReq,
      content: await scepCsr(device, "app-old"),
    });
    expect(late).toMatchObject({ status: FAILURE, failInfo: FAIL.badTime });
    expect(await lastAudit(h, "app-old")).toMatchObject({
      action: "scep.renewalreq",
      detail: expect.objectContaining({ reason: "client_certificate_expired" }),
    });
  });
});

describe("SCEP CertPoll (manual approval)", () => {
  it("answers PENDING until an operator approves; the next poll gets the certificate, audited as scep.certpoll", async () => {
    const h = await setup();
    const device = await newScepDevice();
    const token = await createToken(h, "app-m", { profile: "manual" });
    const csr = await scepCsr(device, "app-m", token);
    const first = await ask(h, { device, label: "manual", content: csr });
    expect(first.status).toBe(PENDING);
    const poll = () =>
      ask(h, {
        device,
        label: "manual",
        messageType: MESSAGE.CertPoll,
        content: issuerAndSubject(h.rsaCa?.issuing.certificate as Uint8Array, "app-m"),
      });
    expect((await poll()).status).toBe(PENDING);
    const [request] = await h.storage.listPending({ status: "pending", limit: 10 });
    await h.authority.enrollments.approve(OPERATOR, request?.id as string);
    const issued = await poll();
    expect(issued.status).toBe(SUCCESS);
    const [cert] = certificatesOf(issued.content as Uint8Array);
    expect(parseCert(cert as Uint8Array).subject).toBe("CN=app-m");
    expect(await lastAudit(h, "app-m")).toMatchObject({ action: "scep.certpoll", outcome: "success" });
    expect((await h.storage.getPending(request?.id as string))?.status).toBe("issued");
    // Issued once: the request's token is spent, and a poll finds nothing waiting.
    expect(await poll()).toMatchObject({ status: FAILURE });
    expect(await ask(h, { device, label: "manual", content: csr })).toMatchObject({
      status: FAILURE,
      failInfo: FAIL.badRequest,
    });
  });

  it("takes the identical PKCSReq again while it is PENDING (Debian's scepclient resends it), and refuses it once answered", async () => {
    const h = await setup();
    const device = await newScepDevice();
    const token = await createToken(h, "app-same", { profile: "manual" });
    const message = await pkiMessage({
      messageType: MESSAGE.PKCSReq,
      content: envelope(await scepCsr(device, "app-same", token), ra),
      device,
    });
    const send = async () => readCertRep((await operation(h, message, "manual")).body, device);
    expect((await send()).status).toBe(PENDING);
    expect((await send()).status).toBe(PENDING);
    const [request] = await h.storage.listPending({ status: "pending", limit: 10 });
    await h.authority.enrollments.approve(OPERATOR, request?.id as string);
    expect((await send()).status).toBe(SUCCESS);
    expect(await send()).toMatchObject({ status: FAILURE, failInfo: FAIL.badRequest });
  });

  it("answers FAILURE once rejected, and badCertId for a key with no request", async () => {
    const h = await setup();
    const device = await newScepDevice();
    const token = await createToken(h, "app-n", { profile: "manual" });
    expect((await ask(h, { device, label: "manual", content: await scepCsr(device, "app-n", token) })).status).toBe(
      PENDING,
    );
    const [request] = await h.storage.listPending({ status: "pending", limit: 10 });
    await h.authority.enrollments.reject(OPERATOR, request?.id as string, "not ours");
    const body = issuerAndSubject(h.rsaCa?.issuing.certificate as Uint8Array, "app-n");
    const rejected = await ask(h, { device, label: "manual", messageType: MESSAGE.CertPoll, content: body });
    expect(rejected).toMatchObject({ status: FAILURE, failInfo: FAIL.badRequest });
    const other = await newScepDevice();
    const none = await ask(h, { device: other, label: "manual", messageType: MESSAGE.CertPoll, content: body });
    expect(none).toMatchObject({ status: FAILURE, failInfo: FAIL.badCertId });
  });
});

describe("SCEP GetCRL", () => {
  it("returns the issuing CA's current CRL, encrypted to the requester", async () => {
    const h = await setup();
    const { device, rep } = await enrollOver(h, "app-crl");
    const [issued] = certificatesOf(rep.content as Uint8Array);
    const crl = await ask(h, {
      device: { ...device, certificate: issued as Uint8Array },
      messageType: MESSAGE.GetCRL,
      content: issuerAndSerialOf(issued as Uint8Array),
    });
    expect(crl.status).toBe(SUCCESS);
    const [list] = crlsOf(crl.content as Uint8Array);
    expect(list).toBeDefined();
  });
});

describe("SCEP CMS checks", () => {
  it("refuses a tampered signature (badMessageCheck), a message encrypted to another certificate (badMessageCheck), garbage (badRequest)", async () => {
    const h = await setup();
    const device = await newScepDevice();
    const token = await createToken(h, "app-c", { profile: "legacy" });
    const csr = await scepCsr(device, "app-c", token);
    const tampered = await ask(h, { device, content: csr, extra: { tamper: true } });
    expect(tampered).toMatchObject({ status: FAILURE, failInfo: FAIL.badMessageCheck });
    const elsewhere = await ask(h, { device, content: csr, recipient: h.rsaCa?.issuing.certificate as Uint8Array });
    expect(elsewhere).toMatchObject({ status: FAILURE, failInfo: FAIL.badMessageCheck });
    for (const garbage of [new Uint8Array(0), new TextEncoder().encode("hello"), Uint8Array.of(0x30, 0x82, 0xff)]) {
      const reply = await operation(h, garbage);
      expect(reply).toMatchObject({ status: "FAILURE", failInfo: "badRequest" });
      const rep = await readCertRep(reply.body, device);
      expect(rep).toMatchObject({ status: FAILURE, failInfo: FAIL.badRequest, signatureValid: true });
    }
    // Nothing was issued and the token is still usable.
    expect((await ask(h, { device, content: csr })).status).toBe(SUCCESS);
  });

  it("refuses SHA-1 and DES without the legacy fallback (badAlg), and takes them where a profile allows them", async () => {
    const h = await setup();
    const device = await newScepDevice();
    const token = await createToken(h, "app-a", { profile: "legacy" });
    const csr = await scepCsr(device, "app-a", token);
    expect(await ask(h, { device, content: csr, extra: { digest: "SHA-1" } })).toMatchObject({
      status: FAILURE,
      failInfo: FAIL.badAlg,
    });
    expect(await ask(h, { device, content: csr, cipher: "des-cbc" })).toMatchObject({
      status: FAILURE,
      failInfo: FAIL.badAlg,
    });
    const oldToken = await createToken(h, "app-old", { profile: "old" });
    const oldCsr = await scepCsr(device, "app-old", oldToken);
    const old = await ask(h, {
      device,
      label: "old",
      content: oldCsr,
      cipher: "des-ede3-cbc",
      extra: { digest: "SHA-1" },
    });
    expect(old.status).toBe(SUCCESS);
  });

  it("refuses a replayed transactionID/senderNonce pair, and a signingTime far from now (badTime)", async () => {
    const h = await setup();
    const device = await newScepDevice();
    const token = await createToken(h, "app-p", { profile: "legacy" });
    const message = await pkiMessage({
      messageType: MESSAGE.PKCSReq,
      content: envelope(await scepCsr(device, "app-p", token), ra),
      device,
    });
    expect((await readCertRep((await operation(h, message)).body, device)).status).toBe(SUCCESS);
    const replay = await readCertRep((await operation(h, message)).body, device);
    expect(replay).toMatchObject({ status: FAILURE, failInfo: FAIL.badRequest });
    expect((await h.storage.listAudit({ limit: 1 }))[0]).toMatchObject({
      detail: expect.objectContaining({ reason: "replayed_nonce" }),
    });
    const late = await ask(h, {
      device,
      content: await scepCsr(device, "app-p"),
      extra: { signingTime: new Date(T0.getTime() - 30 * 86400_000) },
    });
    expect(late).toMatchObject({ status: FAILURE, failInfo: FAIL.badTime });
  });
});

describe("SCEP over HTTP (/scep, /scep/<label>)", () => {
  const app = (h: Harness) =>
    createApp({
      authority: h.authority,
      responders: h.responders,
      peer: () => ({ remoteAddress: "192.0.2.9" }),
      logger: { request: () => undefined, error: () => undefined },
    });

  it("serves GetCACaps as text, GetCACert as application/x-x509-ca-ra-cert, PKIOperation by POST and by GET", async () => {
    const h = await setup();
    const a = app(h);
    const caps = await a.request("http://scep.test/scep/legacy?operation=GetCACaps");
    expect(caps.status).toBe(200);
    expect((await caps.text()).split("\n")).toContain("SCEPStandard");
    const cacert = await a.request("http://scep.test/scep/legacy?operation=GetCACert");
    expect(cacert.headers.get("content-type")).toBe("application/x-x509-ca-ra-cert");
    const cgi = await a.request("http://scep.test/scep/legacy/pkiclient.exe?operation=GetCACert");
    expect(new Uint8Array(await cgi.arrayBuffer())).toEqual(new Uint8Array(await cacert.clone().arrayBuffer()));
    expect(certificatesOf(new Uint8Array(await cacert.arrayBuffer()))).toHaveLength(3);

    const device = await newScepDevice();
    const token = await createToken(h, "app-http", { profile: "legacy" });
    const message = await pkiMessage({
      messageType: MESSAGE.PKCSReq,
      content: envelope(await scepCsr(device, "app-http", token), ra),
      device,
    });
    const byGet = await a.request(
      `http://scep.test/scep/legacy?operation=PKIOperation&message=${encodeURIComponent(Buffer.from(message).toString("base64"))}`,
    );
    expect(byGet.status).toBe(200);
    expect(byGet.headers.get("content-type")).toBe("application/x-pki-message");
    expect((await readCertRep(new Uint8Array(await byGet.arrayBuffer()), device)).status).toBe(SUCCESS);
    // The same message again, by POST: a replay.
    const byPost = await a.request("http://scep.test/scep/legacy?operation=PKIOperation", {
      method: "POST",
      body: message as Uint8Array<ArrayBuffer>,
      headers: { "content-type": "application/x-pki-message" },
    });
    expect(await readCertRep(new Uint8Array(await byPost.arrayBuffer()), device)).toMatchObject({
      status: FAILURE,
      failInfo: FAIL.badRequest,
    });
  });

  it("answers garbage with a CertRep (never a 500), an oversized body 413, an unknown operation 400, an unknown label 404", async () => {
    const h = await setup();
    const a = app(h);
    const garbage = await a.request("http://scep.test/scep/legacy?operation=PKIOperation&message=%%%");
    expect(garbage.status).toBe(200);
    expect((await readCertRep(new Uint8Array(await garbage.arrayBuffer()), await newScepDevice())).failInfo).toBe(
      FAIL.badRequest,
    );
    const big = await a.request("http://scep.test/scep/legacy?operation=PKIOperation", {
      method: "POST",
      body: new Uint8Array(h.authority.config.limits.maxBodyBytes + 1),
    });
    expect(big.status).toBe(413);
    expect((await a.request("http://scep.test/scep/legacy?operation=GetNextCACert")).status).toBe(400);
    expect((await a.request("http://scep.test/scep/nope?operation=GetCACaps")).status).toBe(404);
    expect((await a.request("http://scep.test/scep/est?operation=GetCACert")).status).toBe(404);
    const audited = await h.storage.listAudit({ limit: 10 });
    expect(audited.map((e) => e.detail?.reason)).toEqual(
      expect.arrayContaining(["payload_too_large", "unknown_operation", "unknown_label", "scep_not_offered"]),
    );
  });
});

describe("SCEP on the public (plain HTTP) app", () => {
  it("serves GetCACaps, GetCACert and PKIOperation, as SCEP is designed (RFC 8894 §4.1)", async () => {
    const h = await setup();
    const a = createPublicApp({
      authority: h.authority,
      responders: h.responders,
      peer: () => ({ remoteAddress: "192.0.2.10" }),
      logger: { request: () => undefined, error: () => undefined },
    });
    expect((await (await a.request("http://scep.test/scep/legacy?operation=GetCACaps")).text()).split("\n")).toContain(
      "AES",
    );
    const cacert = await a.request("http://scep.test/scep/legacy?operation=GetCACert");
    expect(certificatesOf(new Uint8Array(await cacert.arrayBuffer()))).toHaveLength(3);
    const device = await newScepDevice();
    const token = await createToken(h, "app-public", { profile: "legacy" });
    const message = await pkiMessage({
      messageType: MESSAGE.PKCSReq,
      content: envelope(await scepCsr(device, "app-public", token), ra),
      device,
    });
    const r = await a.request("http://scep.test/scep/legacy?operation=PKIOperation", {
      method: "POST",
      body: message as Uint8Array<ArrayBuffer>,
    });
    expect((await readCertRep(new Uint8Array(await r.arrayBuffer()), device)).status).toBe(SUCCESS);
  });
});

describe("SCEP limits and the RA key", () => {
  it("turns a client that spent its refusal budget away with 429 before reading its message", async () => {
    h = await harness({ config: { ...CONFIG, limits: { refusals: { perAddress: 3, tarpit: "0s" } } } });
    const made = await ensureScepRa(h.dir, h.deps.cas, "test passphrase", T0);
    h.deps.scepRa = () => made?.ra;
    const a = createApp({
      authority: h.authority,
      responders: h.responders,
      peer: () => ({ remoteAddress: "198.51.100.3" }),
      logger: { request: () => undefined, error: () => undefined },
      delay: async () => undefined,
    });
    const garbage = () =>
      a.request("http://scep.test/scep/legacy?operation=PKIOperation", { method: "POST", body: "not a message" });
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await garbage()).status);
    expect(statuses).toEqual([200, 200, 200, 429, 429]);
  });

  it("keeps the RA key encrypted at rest, and renews the certificate with a third of its 90 days left", async () => {
    const h = await setup();
    expect(readFileSync(join(h.dir, "ca", "scep-ra.key"), "utf8")).toContain("BEGIN ENCRYPTED PRIVATE KEY");
    const same = await ensureScepRa(h.dir, h.deps.cas, "test passphrase", new Date(T0.getTime() + 59 * 86400_000));
    expect(same?.renewed).toBe(false);
    expect(same?.ra.certificate).toEqual(ra);
    const renewed = await ensureScepRa(h.dir, h.deps.cas, "test passphrase", new Date(T0.getTime() + 61 * 86400_000));
    expect(renewed?.renewed).toBe(true);
    expect(renewed?.ra.certificate).not.toEqual(ra);
    // The replaced RA still decrypts what a client encrypts to it (GetCACert fetched before the renewal).
    expect(renewed?.ra.retired?.certificate).toEqual(ra);
    h.deps.scepRa = () => renewed?.ra;
    h.clock.advance(61 * 86400);
    const { rep } = await enrollOver(h, "app-rollover");
    expect(rep.status).toBe(SUCCESS);
    expect(parseCert(rep.signer).serialNumber).toBe(parseCert(renewed?.ra.certificate as Uint8Array).serialNumber);
    expect(readFileSync(join(h.dir, "ca", "scep-ra-retired.key"), "utf8")).toContain("BEGIN ENCRYPTED PRIVATE KEY");
    // Once its certificate has expired, the retired RA is gone.
    const later = await ensureScepRa(h.dir, h.deps.cas, "test passphrase", new Date(T0.getTime() + 91 * 86400_000));
    expect(later?.ra.retired).toBeUndefined();
    await expect(ensureScepRa(h.dir, h.deps.cas, "wrong passphrase", T0)).rejects.toThrow(/cannot decrypt/);
  });
});
