/**
 * The hybrid path (issue 7) through the core, on a real SQLite file with real keys:
 * the legacy profile issued by the RSA hierarchy (certificates, CRL and OCSP per CA,
 * /cacerts per label), operator-declared DNS/IP names, and gateway-brokered appliance
 * enrollment with its quota and cascade revocation.
 */
import * as x509 from "@peculiar/x509";
import * as pkijs from "pkijs";
import { afterEach, describe, expect, it } from "vitest";
import type { Actor } from "../../server/authority/actor.ts";
import { checkIssuers } from "../../server/authority/deps.ts";
import { signForDevice } from "../../server/authority/operator-issue.ts";
import { revokeCertificate, revokeDevice } from "../../server/authority/revoke.ts";
import { type ConfigInput, INIT_PROFILES, parseConfig } from "../../server/config/schema.ts";
import { deviceView } from "../../server/frontends/http/views.ts";
import { encodeOid, fromHex, sequence, TAG, tlv, unsignedInteger } from "../../server/pki/der.ts";
import { issuerHashes } from "../../server/pki/ocsp.ts";
import { id_sha1, sha256WithRSAEncryption } from "../../server/pki/oids.ts";
import {
  crypto,
  generateKeys,
  type Harness,
  harness,
  makeCsr,
  parseCert,
  peer,
  refusal,
  TEST_CONFIG,
} from "../support/fixtures.ts";
import { registerOperator } from "../support/operators.ts";

const OPERATOR: Actor = { id: "operator:op_test", role: "operator" };

/** A harness with OPERATOR registered (operator actions need their operator active). */
async function setup(opts?: Parameters<typeof harness>[0]): Promise<Harness> {
  const h = await harness(opts);
  await registerOperator(h, OPERATOR);
  return h;
}

const CONFIG: ConfigInput = {
  ...TEST_CONFIG,
  profiles: {
    ...TEST_CONFIG.profiles,
    legacy: {
      issuer: "issuing-rsa",
      keyTypes: ["RSA", "P-256"],
      validity: "365d",
      extendedKeyUsage: ["serverAuth", "clientAuth"],
    },
    gateway: { gateway: { applianceProfile: "appliance", maxAppliances: 2 } },
    appliance: { issuer: "issuing-rsa", keyTypes: ["RSA", "P-256"], validity: "90d" },
  },
};

let h: Harness;
afterEach(() => h?.close());

const sanOf = (der: Uint8Array) =>
  parseCert(der)
    .getExtension(x509.SubjectAlternativeNameExtension)
    ?.names.toJSON()
    .map((n) => `${n.type}:${n.value}`);

async function token(deviceId: string, opts: { profile?: string; names?: { dns?: string[]; ip?: string[] } } = {}) {
  const [t] = await h.authority.createTokens({ deviceIds: [deviceId], actor: "test", ...opts });
  return (t as { token: string }).token;
}

async function enroll(
  deviceId: string,
  o: {
    label?: string;
    keys?: CryptoKeyPair;
    sans?: x509.JsonGeneralName[];
    names?: { dns?: string[]; ip?: string[] };
  } = {},
) {
  const secret = await token(deviceId, { profile: o.label, names: o.names });
  const keys = o.keys ?? (await generateKeys("P-256"));
  const issued = await h.authority.enroll({
    label: o.label,
    csr: await makeCsr(keys, { sans: o.sans }),
    credentials: { type: "basic", username: deviceId, password: secret },
    peer: peer(),
  });
  return { ...issued, keys };
}

/** The only SingleResponse of a one-CertID OCSP request for this CA and serial. */
async function ocsp(caCert: Uint8Array, serialHex: string) {
  const hashes = await issuerHashes(caCert, h.deps.digest);
  const certId = sequence(
    sequence(encodeOid(id_sha1), Uint8Array.of(TAG.NULL, 0)),
    tlv(TAG.OCTET_STRING, hashes["SHA-1"].name),
    tlv(TAG.OCTET_STRING, hashes["SHA-1"].key),
    unsignedInteger(fromHex(serialHex)),
  );
  const { der, status } = await h.responders.ocsp(sequence(sequence(sequence(sequence(certId)))));
  if (status !== "successful") return { status };
  const outer = pkijs.OCSPResponse.fromBER(der as Uint8Array<ArrayBuffer>);
  const basic = pkijs.BasicOCSPResponse.fromBER(
    outer.responseBytes?.response.valueBlock.valueHexView as Uint8Array<ArrayBuffer>,
  );
  return { status, basic, tag: basic.tbsResponseData.responses[0]?.certStatus.idBlock.tagNumber };
}

function crlSerials(ca: string): string[] {
  const crl = h.responders.currentCrl(ca);
  if (!crl) throw new Error(`no CRL for ${ca}`);
  const parsed = pkijs.CertificateRevocationList.fromBER(crl.der as Uint8Array<ArrayBuffer>);
  return (parsed.revokedCertificates ?? []).map((r) =>
    Buffer.from(r.userCertificate.valueBlock.valueHexView).toString("hex").replace(/^00/, ""),
  );
}

describe("the legacy profile and the RSA hierarchy", () => {
  it("issues RSA-signed certificates from the RSA issuing CA with both EKUs, CRL and OCSP pointers", async () => {
    h = await setup({ config: CONFIG });
    const rsaCa = h.rsaCa;
    if (!rsaCa) throw new Error("no RSA CA");
    const issued = await enroll("plc-1", { label: "legacy", keys: await generateKeys("RSA-2048") });
    const cert = parseCert(issued.certificate);
    expect(cert.issuer).toBe(parseCert(rsaCa.issuing.certificate).subject);
    expect(cert.signatureAlgorithm.name).toBe("RSASSA-PKCS1-v1_5");
    expect(await cert.verify({ publicKey: parseCert(rsaCa.issuing.certificate).publicKey, signatureOnly: true })).toBe(
      true,
    );
    expect(cert.notAfter.getTime() - cert.notBefore.getTime()).toBe((365 * 86400 + 300) * 1000);
    const eku = cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages;
    expect(eku).toEqual([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]);
    const crlDp = JSON.stringify(cert.getExtension(x509.CRLDistributionPointsExtension)?.distributionPoints);
    expect(crlDp).toContain("/pki/crl/issuing-rsa.crl");
    expect(cert.getExtension(x509.AuthorityInfoAccessExtension)?.ocsp[0]?.value).toBe(
      "https://est.example.org:8443/pki/ocsp",
    );
    expect(sanOf(issued.certificate)).toEqual(["url:spiffe://example.org/device/plc-1"]);
    expect((await h.storage.getCertificate(issued.serial))?.issuer).toBe("issuing-rsa");
    // A device-profile certificate still comes from the P-256 CA.
    const modern = await enroll("sensor-1");
    expect(parseCert(modern.certificate).signatureAlgorithm.name).toBe("ECDSA");
  });

  it("serves each label's chain at /cacerts", async () => {
    h = await setup({ config: CONFIG });
    expect(h.authority.cacerts("legacy")).toEqual([h.rsaCa?.issuing.certificate, h.rsaCa?.root]);
    expect(h.authority.cacerts()).toEqual([h.ca.issuing.certificate, h.ca.root]);
    expect(h.authority.cacerts("device")).toEqual(h.authority.cacerts());
  });

  it("keeps one CRL per CA and answers OCSP for either, signed by the certificate's issuer", async () => {
    h = await setup({ config: CONFIG });
    const rsaCa = h.rsaCa;
    if (!rsaCa) throw new Error("no RSA CA");
    const legacy = await enroll("plc-2", { label: "legacy", keys: await generateKeys("RSA-2048") });
    const modern = await enroll("sensor-2");
    const numbers = () => ["issuing-p256", "issuing-rsa"].map((ca) => h.responders.currentCrl(ca)?.number);
    const [p256Before, rsaBefore] = numbers();
    await revokeCertificate(h.deps, { serial: legacy.serial, reason: "keyCompromise", actor: OPERATOR });
    // Only the CRL that gained an entry is re-signed (the harness has no scheduler: before revoke returns).
    expect(numbers()).toEqual([p256Before, (rsaBefore as bigint) + 1n]);
    expect(crlSerials("issuing-rsa")).toEqual([legacy.serial]);
    expect(crlSerials("issuing-p256")).toEqual([]);
    const rsaCrl = parseCert(rsaCa.issuing.certificate);
    const crl = new x509.X509Crl(h.responders.currentCrl("issuing-rsa")?.der as Uint8Array<ArrayBuffer>);
    expect(await crl.verify({ publicKey: rsaCrl.publicKey })).toBe(true);

    const revoked = await ocsp(rsaCa.issuing.certificate, legacy.serial);
    expect(revoked.tag).toBe(1);
    expect(revoked.basic?.signatureAlgorithm.algorithmId).toBe(sha256WithRSAEncryption);
    const signed = revoked.basic?.tbsResponseData.tbsView as Uint8Array<ArrayBuffer>;
    const key = await crypto.subtle.importKey(
      "spki",
      rsaCrl.publicKey.rawData,
      { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
      false,
      ["verify"],
    );
    const signature = revoked.basic?.signature.valueBlock.valueHexView as Uint8Array<ArrayBuffer>;
    expect(await crypto.subtle.verify("RSASSA-PKCS1-v1_5", key, signature, signed)).toBe(true);

    expect((await ocsp(h.ca.issuing.certificate, modern.serial)).tag).toBe(0);
    // A serial asked about under the wrong issuer is not one of that CA's certificates.
    expect((await ocsp(h.ca.issuing.certificate, legacy.serial)).tag).toBe(2);
    expect((await ocsp(rsaCa.issuing.certificate, modern.serial)).tag).toBe(2);
  });

  it("lets an operator issue for less than the profile's validity, never more", async () => {
    h = await setup({ config: CONFIG });
    const csr = async () => makeCsr(await generateKeys("RSA-2048"));
    const short = await signForDevice(h.deps, OPERATOR, {
      deviceId: "ups-1",
      profile: "legacy",
      csr: await csr(),
      validity: 30 * 86400,
      names: { dns: ["ups-1.example.org"] },
    });
    const cert = parseCert(short.certificate);
    expect(cert.notAfter.getTime() - cert.notBefore.getTime()).toBe((30 * 86400 + 300) * 1000);
    expect(sanOf(short.certificate)).toEqual(["url:spiffe://example.org/device/ups-1", "dns:ups-1.example.org"]);
    for (const validity of [366 * 86400, 10]) {
      const r = await refusal(
        signForDevice(h.deps, OPERATOR, { deviceId: "ups-2", profile: "legacy", csr: await csr(), validity }),
      );
      expect(r.reason).toBe("validity_out_of_range");
    }
    expect(await h.storage.getDevice("ups-2")).toBeUndefined();
  });

  it("lets legacy and appliance certificates renew with the same key; devices and gateways rekey", () => {
    const profiles = parseConfig({ trustDomain: "example.org", profiles: INIT_PROFILES }).profiles;
    expect(Object.fromEntries(Object.entries(profiles).map(([name, p]) => [name, p.reenroll]))).toEqual({
      device: "rekey",
      legacy: "renew-or-rekey",
      gateway: "rekey",
      appliance: "renew-or-rekey",
    });
    // The setting's earlier spelling still means what it said.
    const old = (requireNewKeyOnReenroll: boolean) =>
      parseConfig({ trustDomain: "example.org", profiles: { device: { requireNewKeyOnReenroll } } }).profiles.device
        ?.reenroll;
    expect(old(true)).toBe("rekey");
    expect(old(false)).toBe("renew-or-rekey");
    expect(() => parseConfig({ trustDomain: "example.org", profiles: { device: { reenroll: "renew" } } })).toThrow(
      /reenroll/,
    );
  });

  it("refuses a configuration whose profile names a CA the data directory lacks", async () => {
    h = await setup();
    const config = parseConfig(CONFIG);
    expect(() => checkIssuers(config, h.deps.cas)).toThrow(
      /profile legacy is issued by issuing-rsa.*edgeid ca add-rsa/,
    );
  });
});

describe("operator-declared DNS and IP names", () => {
  it("puts the token's names in the certificate after the SPIFFE ID, and keeps them at re-enrollment", async () => {
    h = await setup({ config: CONFIG });
    const names = { dns: ["printer.example.org", "Printer-2.Example.ORG"], ip: ["10.0.0.7", "2001:DB8:0::7"] };
    const issued = await enroll("printer-1", { label: "legacy", names });
    expect(sanOf(issued.certificate)).toEqual([
      "url:spiffe://example.org/device/printer-1",
      "dns:printer.example.org",
      "dns:printer-2.example.org",
      "ip:10.0.0.7",
      "ip:2001:db8::7",
    ]);
    expect((await h.storage.getDevice("printer-1"))?.names).toEqual({
      dns: ["printer.example.org", "printer-2.example.org"],
      ip: ["10.0.0.7", "2001:db8::7"],
    });
    const renewed = await h.authority.reenroll({
      label: "legacy",
      csr: await makeCsr(await generateKeys("P-256")),
      peer: peer([issued.certificate]),
    });
    expect(sanOf(renewed.certificate)).toEqual(sanOf(issued.certificate));
    const audit = await h.storage.listAudit({ deviceId: "printer-1", limit: 10 });
    expect(audit.find((a) => a.action === "token.create")?.detail?.names).toBe(
      "printer.example.org,printer-2.example.org,10.0.0.7,2001:db8::7",
    );
  });

  it("lets a CSR ask for declared names only", async () => {
    h = await setup({ config: CONFIG });
    const names = { dns: ["hmi.example.org"], ip: ["192.0.2.5"] };
    const ok = await enroll("hmi-1", {
      label: "legacy",
      names,
      sans: [
        { type: "dns", value: "hmi.example.org" },
        { type: "ip", value: "192.0.2.5" },
      ],
    });
    expect(sanOf(ok.certificate)).toContain("dns:hmi.example.org");
    const undeclared = await refusal(
      enroll("hmi-2", { label: "legacy", names, sans: [{ type: "dns", value: "evil.example.org" }] }),
    );
    expect(undeclared.code).toBe("forbidden");
    expect(undeclared.reason).toBe("name_not_allowed");
    // Without declared names a CSR's DNS name is refused as before.
    expect((await refusal(enroll("hmi-3", { sans: [{ type: "dns", value: "hmi.example.org" }] }))).reason).toBe(
      "name_not_allowed",
    );
    expect((await h.storage.getDevice("hmi-2"))?.status).toBe("pending");
  });

  it("refuses malformed names, too many names, and names for a batch", async () => {
    h = await setup({ config: CONFIG });
    const create = (deviceIds: string[], names: { dns?: string[]; ip?: string[] }) =>
      h.authority.createTokens({ deviceIds, actor: "test", profile: "legacy", names });
    expect((await refusal(create(["a-1"], { dns: ["*.example.org"] }))).reason).toBe("bad_dns_name");
    expect((await refusal(create(["a-1"], { dns: ["10.0.0.1"] }))).reason).toBe("bad_dns_name");
    expect((await refusal(create(["a-1"], { ip: ["10.0.0.256"] }))).reason).toBe("bad_ip_address");
    expect((await refusal(create(["a-1"], { ip: ["example.org"] }))).reason).toBe("bad_ip_address");
    const many = Array.from({ length: 9 }, (_, i) => `h${i}.example.org`);
    expect((await refusal(create(["a-1"], { dns: many }))).reason).toBe("too_many_names");
    expect((await refusal(create(["a-1", "a-2"], { dns: ["a.example.org"] }))).reason).toBe("names_need_one_device");
    expect(await h.storage.getDevice("a-1")).toBeUndefined();
  });

  it("refuses the server's own names however they are spelled, when declared and again at issuance", async () => {
    h = await setup({
      config: {
        ...CONFIG,
        hostnames: ["est.plant.example", "10.9.8.7"],
        mqtt: {
          external: {
            url: "mqtts://broker.plant.example:8883",
            clientCert: "c.pem",
            clientKey: "k.pem",
            ca: "ca.pem",
            brokerHostnames: ["mqtt-2.plant.example"],
          },
        },
      },
    });
    const create = (names: { dns?: string[]; ip?: string[] }) =>
      h.authority.createTokens({ deviceIds: ["a-1"], actor: "test", profile: "legacy", names });
    // The configured host names, the public URL's host, and the loopback names the
    // listener certificate always carries.
    for (const names of [
      { dns: ["EST.Plant.Example"] },
      { dns: ["est.example.org"] },
      { dns: ["broker.plant.example"] },
      { dns: ["mqtt-2.plant.example"] },
      { dns: ["localhost"] },
      { ip: ["10.9.8.7"] },
      { ip: ["127.0.0.1"] },
      { ip: ["0:0:0:0:0:0:0:1"] },
      { dns: ["ok.example.org"], ip: ["10.9.8.7"] },
    ]) {
      const r = await refusal(create(names));
      expect(r.reason, JSON.stringify(names)).toBe("name_reserved");
      expect(r.code).toBe("forbidden");
    }
    await expect(create({ dns: ["est.plant.example"] })).rejects.toThrow(
      /est\.plant\.example is a name of the edgeid server itself/,
    );
    expect(await create({ dns: ["a-1.plant.example"] })).toHaveLength(1);

    // A name declared before it became the server's (its configuration changed since):
    // the next issuance is refused, audited, and nothing is written.
    const issued = await enroll("ups-9", { label: "legacy", names: { dns: ["mqtt.plant.example"] } });
    h.deps.config.hostnames.push("mqtt.plant.example");
    const renewed = await refusal(
      h.authority.reenroll({
        label: "legacy",
        csr: await makeCsr(await generateKeys("P-256")),
        peer: peer([issued.certificate]),
      }),
    );
    expect(renewed.reason).toBe("name_reserved");
    const device = await h.storage.getDevice("ups-9");
    expect(device?.currentSerial).toBe(parseCert(issued.certificate).serialNumber.toLowerCase());
    const audit = await h.storage.listAudit({ deviceId: "ups-9", limit: 10 });
    expect(audit.find((a) => a.outcome === "denied")?.detail).toMatchObject({ reason: "name_reserved" });
    const operatorIssued = await refusal(
      signForDevice(h.deps, OPERATOR, {
        deviceId: "ups-10",
        profile: "legacy",
        csr: await makeCsr(await generateKeys("P-256")),
        names: { dns: ["mqtt.plant.example"] },
      }),
    );
    expect(operatorIssued.reason).toBe("name_reserved");
  });
});

describe("gateway-brokered enrollment", () => {
  const applianceUri = (gw: string, name: string) => `spiffe://example.org/gateway/${gw}/appliance/${name}`;

  async function gateway(id = "gw-1") {
    return enroll(id, { label: "gateway" });
  }

  /** label null: the default EST path. */
  const brokered = async (gwCert: Uint8Array, sans: x509.JsonGeneralName[], label: string | null = "appliance") =>
    h.authority.enroll({
      label: label ?? undefined,
      csr: await makeCsr(await generateKeys("RSA-2048"), { sans }),
      peer: peer([gwCert]),
    });

  it("enrolls an appliance in the gateway's namespace, recorded with the gateway as its broker", async () => {
    h = await setup({ config: CONFIG });
    const gw = await gateway();
    const issued = await brokered(gw.certificate, [{ type: "url", value: applianceUri("gw-1", "cam-1") }]);
    expect(issued.deviceId).toBe("gw-1~cam-1");
    expect(sanOf(issued.certificate)).toEqual([`url:${applianceUri("gw-1", "cam-1")}`]);
    expect(parseCert(issued.certificate).subject).toBe("CN=gw-1~cam-1");
    expect(parseCert(issued.certificate).issuer).toBe(parseCert(h.rsaCa?.issuing.certificate as Uint8Array).subject);
    const device = await h.storage.getDevice("gw-1~cam-1");
    expect(device?.profile).toBe("appliance");
    const view = deviceView(device as NonNullable<typeof device>, "example.org");
    expect(view.broker).toEqual({ gateway: "gw-1", name: "cam-1" });
    expect(view.identity).toBe(applianceUri("gw-1", "cam-1"));
    const cert = await h.storage.getCertificate(issued.serial);
    expect(cert?.method).toBe("gateway");
    const [audit] = await h.storage.listAudit({ deviceId: "gw-1~cam-1", limit: 1 });
    expect(audit?.actor).toBe("device:gw-1");
    expect(audit?.detail?.broker).toBe("gw-1");
    expect(audit?.detail?.brokerSerial).toBe(gw.serial);
    // The gateway renews the appliance: a new certificate that follows the first.
    const again = await brokered(gw.certificate, [{ type: "url", value: applianceUri("gw-1", "cam-1") }]);
    expect((await h.storage.getCertificate(again.serial))?.replacesSerial).toBe(issued.serial);
  });

  it("refuses names outside the namespace, a missing name, the wrong label and non-gateway devices", async () => {
    h = await setup({ config: CONFIG });
    const gw = await gateway();
    await gateway("gw-2");
    for (const uri of [
      applianceUri("gw-2", "cam-1"),
      "spiffe://example.org/device/cam-1",
      "spiffe://other.org/gateway/gw-1/appliance/x",
    ]) {
      const r = await refusal(brokered(gw.certificate, [{ type: "url", value: uri }]));
      expect(r.reason, uri).toBe("appliance_outside_namespace");
    }
    expect((await refusal(brokered(gw.certificate, []))).reason).toBe("appliance_name_missing");
    expect((await refusal(brokered(gw.certificate, [{ type: "dns", value: "cam.example.org" }]))).reason).toBe(
      "appliance_name_missing",
    );
    const uri = [{ type: "url" as const, value: applianceUri("gw-1", "cam-1") }];
    expect((await refusal(brokered(gw.certificate, uri, null))).reason).toBe("gateway_wrong_label");
    expect((await refusal(brokered(gw.certificate, uri, "legacy"))).reason).toBe("gateway_wrong_label");
    // A device of another profile is no broker: its certificate renews at simplereenroll.
    const plain = await enroll("sensor-9");
    expect((await refusal(brokered(plain.certificate, uri))).reason).toBe("use_simplereenroll");
    expect((await h.storage.listDevices({ gateway: "gw-1", limit: 10 })).length).toBe(0);
    const denials = await h.storage.listAudit({ action: "est.simpleenroll", limit: 20 });
    expect(denials.filter((d) => d.outcome === "denied" && d.actor === "device:gw-1").length).toBeGreaterThanOrEqual(5);
  });

  it("holds the gateway to its quota; revoked appliances free their place", async () => {
    h = await setup({ config: CONFIG });
    const gw = await gateway();
    const one = await brokered(gw.certificate, [{ type: "url", value: applianceUri("gw-1", "a") }]);
    await brokered(gw.certificate, [{ type: "url", value: applianceUri("gw-1", "b") }]);
    const over = await refusal(brokered(gw.certificate, [{ type: "url", value: applianceUri("gw-1", "c") }]));
    expect(over.reason).toBe("appliance_quota_exceeded");
    expect(await h.storage.getDevice("gw-1~c")).toBeUndefined();
    // Renewing an appliance it holds is not a new one.
    await brokered(gw.certificate, [{ type: "url", value: applianceUri("gw-1", "a") }]);
    await revokeDevice(h.deps, { deviceId: one.deviceId, reason: "cessationOfOperation", actor: OPERATOR });
    await brokered(gw.certificate, [{ type: "url", value: applianceUri("gw-1", "c") }]);
    expect(await h.storage.countAppliances("gw-1")).toBe(2);
    // A revoked appliance cannot be enrolled again by its gateway.
    expect((await refusal(brokered(gw.certificate, [{ type: "url", value: applianceUri("gw-1", "a") }]))).reason).toBe(
      "device_not_enrollable",
    );
  });

  it("keeps the quota under concurrent enrollments: the count is checked again inside the transaction", async () => {
    h = await setup({ config: CONFIG });
    const gw = await gateway();
    const csrs = await Promise.all(
      ["p", "q", "r", "s", "t"].map(async (name) =>
        makeCsr(await generateKeys("P-256"), { sans: [{ type: "url", value: applianceUri("gw-1", name) }] }),
      ),
    );
    // All five pass the first count (nothing is written yet); only two may commit.
    const results = await Promise.allSettled(
      csrs.map((csr) => h.authority.enroll({ label: "appliance", csr, peer: peer([gw.certificate]) })),
    );
    expect(results.filter((r) => r.status === "fulfilled").length).toBe(2);
    for (const r of results.filter((x) => x.status === "rejected")) {
      expect((r as PromiseRejectedResult).reason.reason).toBe("appliance_quota_exceeded");
    }
    expect(await h.storage.countAppliances("gw-1")).toBe(2);
    expect((await h.storage.listDevices({ gateway: "gw-1", limit: 10 })).length).toBe(2);
  });

  it("refuses a revoked gateway, and revokes its appliances with it when the operator cascades", async () => {
    h = await setup({ config: CONFIG });
    const gw1 = await gateway("gw-1");
    const gw2 = await gateway("gw-2");
    const a = await brokered(gw1.certificate, [{ type: "url", value: applianceUri("gw-1", "a") }]);
    const b = await brokered(gw2.certificate, [{ type: "url", value: applianceUri("gw-2", "b") }]);
    const r1 = await revokeDevice(h.deps, {
      deviceId: "gw-1",
      reason: "keyCompromise",
      actor: OPERATOR,
      cascade: true,
    });
    expect(r1.appliances).toEqual(["gw-1~a"]);
    expect(r1.serials.sort()).toEqual([gw1.serial, a.serial].sort());
    expect((await h.storage.getDevice("gw-1~a"))?.status).toBe("revoked");
    const [cascadeAudit] = await h.storage.listAudit({ deviceId: "gw-1~a", action: "device.revoke", limit: 1 });
    expect(cascadeAudit?.detail?.cascadeFrom).toBe("gw-1");
    await h.responders.rebuildCrls();
    expect(crlSerials("issuing-rsa")).toEqual([a.serial]);
    expect(crlSerials("issuing-p256")).toEqual([gw1.serial]);
    const refused = await refusal(brokered(gw1.certificate, [{ type: "url", value: applianceUri("gw-1", "z") }]));
    expect(refused.reason).toBe("client_certificate_revoked");
    // Without cascade the appliances keep their certificates.
    const r2 = await revokeDevice(h.deps, { deviceId: "gw-2", reason: "superseded", actor: OPERATOR });
    expect(r2.appliances).toBeUndefined();
    expect((await h.storage.getDevice("gw-2~b"))?.status).toBe("active");
    expect((await h.storage.getCertificate(b.serial))?.status).toBe("valid");
  });

  it("refuses a gateway profile whose appliance profile does not exist or is itself a gateway", () => {
    const bad = (applianceProfile: string) =>
      parseConfig({ ...CONFIG, profiles: { ...CONFIG.profiles, gateway: { gateway: { applianceProfile } } } });
    expect(() => bad("nothing")).toThrow(/applianceProfile/);
    expect(() => bad("gateway")).toThrow(/applianceProfile/);
    expect(() => bad("device")).toThrow(/applianceProfile/);
    expect(() => bad("appliance")).not.toThrow();
  });
});
