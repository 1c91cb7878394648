import * as x509 from "@peculiar/x509";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AuthorityError } from "../../server/authority/errors.ts";
import { reinstateDevice, revokeDevice } from "../../server/authority/revoke.ts";
import { basicConstraints, buildCertificate, encodeName, keyUsage } from "../../server/pki/certificate.ts";
import { id_at_commonName, id_at_serialNumber } from "../../server/pki/oids.ts";
import {
  createToken,
  crypto,
  generateKeys,
  type Harness,
  harness,
  makeCsr,
  makeTestCa,
  parseCert,
  peer,
  T0,
  type TestCa,
} from "../support/fixtures.ts";
import { registerOperator } from "../support/operators.ts";

async function makeIdevid(mfg: TestCa, serialNumber: string, notAfter = new Date(T0.getTime() + 10 * 365 * 86400_000)) {
  const keys = await generateKeys("P-256");
  return buildCertificate(
    {
      serial: crypto.getRandomValues(new Uint8Array(8)).map((b, i) => (i === 0 ? (b & 0x7f) | 1 : b)),
      issuer: mfg.issuing.subject,
      subject: encodeName([
        { type: id_at_commonName, value: "Acme Sensor" },
        { type: id_at_serialNumber, value: serialNumber },
      ]),
      notBefore: new Date(T0.getTime() - 86400_000),
      notAfter,
      spki: new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey)),
      extensions: [basicConstraints(false), keyUsage(["digitalSignature"])],
    },
    mfg.issuing.signer,
  );
}

describe("zero-touch first boot with a manufacturer certificate (IDevID)", () => {
  let h: Harness;
  let acme: TestCa;

  beforeEach(async () => {
    acme = await makeTestCa(T0, "Acme");
    h = await harness({
      config: {
        trustDomain: "example.org",
        profiles: { device: {}, factory: { idevid: { trustBundle: "acme.pem" } } },
      },
      // The manufacturer's root is the anchor; the device presents leaf + intermediate.
      idevidAnchors: new Map([["factory", [acme.root]]]),
    });
  });
  afterEach(() => h.close());

  const enroll = async (chain: Uint8Array[] | undefined, label = "factory") =>
    h.authority.enroll({ label, csr: await makeCsr(await generateKeys("P-256")), peer: peer(chain) });
  const reason = (p: Promise<unknown>) =>
    p.then(
      () => "accepted",
      (e: AuthorityError) => `${e.code}:${e.reason}`,
    );

  it("enrolls the device named by the IDevID serialNumber and binds it", async () => {
    const idevid = await makeIdevid(acme, "SN12345");
    const issued = await enroll([idevid, acme.issuing.certificate]);
    const cert = parseCert(issued.certificate);
    expect(cert.subject).toBe("CN=SN12345");
    expect(cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON()).toEqual([
      { type: "url", value: "spiffe://example.org/device/SN12345" },
    ]);
    expect((await h.storage.getIdevidBinding("SN12345"))?.subject).toBe("CN=Acme Sensor, serialNumber=SN12345");
    // The same IDevID may enroll again (e.g. after a factory reset)...
    expect((await enroll([idevid, acme.issuing.certificate])).deviceId).toBe("SN12345");
  });

  it("refuses the IDevID of a revoked device, and still after an operator reinstates it", async () => {
    const idevid = await makeIdevid(acme, "SN-LOST");
    await enroll([idevid, acme.issuing.certificate]);
    const operator = await registerOperator(h, { id: "operator:op_t", role: "operator" });
    await revokeDevice(h.deps, { deviceId: "SN-LOST", reason: "keyCompromise", actor: operator });
    expect((await h.storage.getIdevidBinding("SN-LOST"))?.revokedAt).toEqual(h.clock.now());
    expect(await reason(enroll([idevid, acme.issuing.certificate]))).toBe("forbidden:device_not_enrollable");
    await reinstateDevice(h.deps, { deviceId: "SN-LOST", actor: operator });
    expect((await h.storage.getDevice("SN-LOST"))?.status).toBe("pending");
    expect(await reason(enroll([idevid, acme.issuing.certificate]))).toBe("forbidden:idevid_revoked");
    // The way back in is a bootstrap token from an operator.
    const token = await createToken(h, "SN-LOST", { profile: "factory" });
    const issued = await h.authority.enroll({
      label: "factory",
      csr: await makeCsr(await generateKeys("P-256")),
      credentials: { type: "basic", username: "SN-LOST", password: token },
      peer: peer(),
    });
    expect(issued.deviceId).toBe("SN-LOST");
    const audit = await h.storage.listAudit({ deviceId: "SN-LOST", limit: 10 });
    expect(audit.map((a) => [a.action, a.outcome, a.detail?.reason ?? null])).toEqual(
      expect.arrayContaining([
        ["device.revoke", "success", "keyCompromise"],
        ["est.simpleenroll", "denied", "device_not_enrollable"],
        ["device.reinstate", "success", null],
        ["est.simpleenroll", "denied", "idevid_revoked"],
      ]),
    );
  });

  it("refuses a second IDevID claiming an already bound device id", async () => {
    await enroll([await makeIdevid(acme, "SN1"), acme.issuing.certificate]);
    expect(await reason(enroll([await makeIdevid(acme, "SN1"), acme.issuing.certificate]))).toBe(
      "forbidden:idevid_mismatch",
    );
  });

  it("refuses untrusted manufacturers, missing intermediates, expiry, and profiles without IDevID", async () => {
    const rogue = await makeTestCa(T0, "Rogue");
    expect(await reason(enroll([await makeIdevid(rogue, "SN2"), rogue.issuing.certificate]))).toBe(
      "forbidden:idevid_untrusted",
    );
    expect(await reason(enroll([await makeIdevid(acme, "SN3")]))).toBe("forbidden:idevid_untrusted");
    const expiring = await makeIdevid(acme, "SN4", new Date(T0.getTime() + 1000));
    h.clock.advance(2);
    expect(await reason(enroll([expiring, acme.issuing.certificate]))).toBe("forbidden:idevid_expired");
    expect(await reason(enroll([await makeIdevid(acme, "SN5"), acme.issuing.certificate], "device"))).toBe(
      "unauthenticated:credentials_missing",
    );
  });

  it("refuses an IDevID whose serialNumber is not a usable device id", async () => {
    expect(await reason(enroll([await makeIdevid(acme, "../../x"), acme.issuing.certificate]))).toBe(
      "forbidden:idevid_no_device_id",
    );
  });
});
