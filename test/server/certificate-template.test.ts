/**
 * The fast issuance path (pki/certificate-template.ts) against the reference (the
 * ASN.1 object library through buildCertificate): same inputs, same bytes. Ed25519
 * signatures are deterministic, so with an Ed25519 signer whole certificates are
 * compared; with the P-256 CA the to-be-signed parts are compared and OpenSSL
 * verifies both certificates. RSA PKCS #1 v1.5 signatures are deterministic too, so
 * certificates of the RSA issuing CA (the legacy profile) are compared whole with the
 * real CA key.
 */
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type CertificateContent, referenceFields, templateFor } from "../../server/authority/issue.ts";
import {
  buildCertificate,
  type CertificateSigner,
  keyIdentifier,
  readCertificate,
} from "../../server/pki/certificate.ts";
import { encodeTime } from "../../server/pki/certificate-template.ts";
import { derTime, UTC_TIME } from "../../server/pki/der.ts";
import { describeKey } from "../../server/pki/keys.ts";
import { id_Ed25519 } from "../../server/pki/oids.ts";
import { pemCertificates } from "../../server/pki/pem.ts";
import { webCryptoDigest } from "../../server/pki/webcrypto-digest.ts";
import { crypto, type Harness, harness, T0, TEST_CONFIG } from "../support/fixtures.ts";

/** The test profiles plus one issued by the RSA hierarchy. */
const CONFIG = {
  ...TEST_CONFIG,
  profiles: {
    ...TEST_CONFIG.profiles,
    legacy: {
      issuer: "issuing-rsa" as const,
      keyTypes: ["RSA" as const, "P-256" as const],
      extendedKeyUsage: ["serverAuth" as const, "clientAuth" as const],
    },
  },
};

const digest = webCryptoDigest(crypto.subtle);

class Ed25519Signer implements CertificateSigner {
  readonly signatureAlgorithm = id_Ed25519;
  constructor(private readonly key: CryptoKey) {}
  async sign(data: Uint8Array): Promise<Uint8Array> {
    return new Uint8Array(await crypto.subtle.sign("Ed25519", this.key, data as BufferSource));
  }
}

async function spkiOf(alg: RsaHashedKeyGenParams | EcKeyGenParams | { name: "Ed25519" }): Promise<Uint8Array> {
  const pair = (await crypto.subtle.generateKey(alg, true, ["sign", "verify"])) as CryptoKeyPair;
  return new Uint8Array(await crypto.subtle.exportKey("spki", pair.publicKey));
}

const toPem = (der: Uint8Array) =>
  `-----BEGIN CERTIFICATE-----\n${Buffer.from(der).toString("base64")}\n-----END CERTIFICATE-----\n`;

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

interface Case {
  name: string;
  deviceId: string;
  profile: string;
  key: () => Promise<Uint8Array>;
  serial: Uint8Array;
  notBefore: Date;
  notAfter: Date;
}

const CASES: Case[] = [
  {
    name: "P-256 key, ordinary serial",
    deviceId: "gw-0001",
    profile: "device",
    key: () => spkiOf({ name: "ECDSA", namedCurve: "P-256" }),
    serial: Uint8Array.from([0x1f, ...Array(15).fill(0xab)]),
    notBefore: new Date("2026-03-01T11:55:00Z"),
    notAfter: new Date("2026-03-04T12:00:00Z"),
  },
  {
    name: "serial with the high bit set (needs a sign byte), long id (lengths past 127)",
    deviceId: `d-${"x".repeat(62)}`,
    profile: "device",
    key: () => spkiOf({ name: "ECDSA", namedCurve: "P-384" }),
    serial: Uint8Array.from(Array(16).fill(0xff)),
    notBefore: new Date("2049-12-31T23:59:59Z"),
    notAfter: new Date("2050-01-01T00:00:00Z"),
  },
  {
    name: "RSA key (keyEncipherment too), one-byte serial",
    deviceId: "printer.7",
    profile: "rsa",
    key: () =>
      spkiOf({
        name: "RSASSA-PKCS1-v1_5",
        modulusLength: 2048,
        publicExponent: Uint8Array.of(1, 0, 1),
        hash: "SHA-256",
      }),
    serial: Uint8Array.of(0x05),
    notBefore: new Date("2026-01-01T00:00:00Z"),
    notAfter: new Date("2026-01-31T00:00:00Z"),
  },
  {
    name: "RSA key, legacy profile: RSA issuing CA, serverAuth+clientAuth",
    deviceId: "plc-17",
    profile: "legacy",
    key: () =>
      spkiOf({
        name: "RSASSA-PKCS1-v1_5",
        modulusLength: 3072,
        publicExponent: Uint8Array.of(1, 0, 1),
        hash: "SHA-256",
      }),
    serial: Uint8Array.of(0x80, 0x01),
    notBefore: new Date("2026-01-01T00:00:00Z"),
    notAfter: new Date("2027-01-01T00:00:00Z"),
  },
  {
    name: "P-256 key, legacy profile (RSA issuing CA)",
    deviceId: "hmi-3",
    profile: "legacy",
    key: () => spkiOf({ name: "ECDSA", namedCurve: "P-256" }),
    serial: Uint8Array.of(0x31, 0x02),
    notBefore: new Date("2026-01-01T00:00:00Z"),
    notAfter: new Date("2027-01-01T00:00:00Z"),
  },
  {
    name: "Ed25519 key",
    deviceId: "sensor_42",
    profile: "device",
    key: () => spkiOf({ name: "Ed25519" }),
    serial: Uint8Array.from([0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
    notBefore: T0,
    notAfter: new Date(T0.getTime() + 3600_000),
  },
];

async function contentOf(hh: Harness, c: Case): Promise<CertificateContent> {
  const spki = await c.key();
  const profile = hh.deps.profiles.get(c.profile);
  if (!profile) throw new Error(`no profile ${c.profile}`);
  return {
    deviceId: c.deviceId,
    profile,
    key: describeKey(spki),
    spki,
    serial: c.serial,
    notBefore: c.notBefore,
    notAfter: c.notAfter,
    subjectKeyId: await keyIdentifier(spki, digest),
  };
}

function fastVariables(hh: Harness, c: CertificateContent) {
  return {
    serial: c.serial,
    notBefore: c.notBefore,
    notAfter: c.notAfter,
    commonName: c.deviceId,
    spki: c.spki,
    subjectKeyId: c.subjectKeyId,
    uris: [`spiffe://${hh.deps.config.trustDomain}/device/${c.deviceId}`],
  };
}

describe("fast issuance path", () => {
  it.each(CASES)("builds the same DER as the library: $name", async (c) => {
    h = await harness({ config: CONFIG });
    const ed = (await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"])) as CryptoKeyPair;
    const content = await contentOf(h, c);
    const issuer = h.deps.cas.get(content.profile.issuer);
    if (!issuer) throw new Error(`no CA ${content.profile.issuer}`);

    // With a deterministic signer (Ed25519 in place of the P-256 CA, or the real RSA
    // CA): whole certificates, byte for byte.
    const edCa = { ...h.deps.ca, signer: new Ed25519Signer(ed.privateKey) };
    const edDeps = { ...h.deps, ca: edCa, cas: new Map([...h.deps.cas, [edCa.name, edCa]]) };
    const signer = (edDeps.cas.get(issuer.name) ?? issuer).signer;
    const reference = await buildCertificate(referenceFields(edDeps, content), signer);
    const fast = await templateFor(edDeps, content.profile, content.key).build(fastVariables(h, content), signer);
    expect(Buffer.from(fast).toString("hex")).toBe(Buffer.from(reference).toString("hex"));
    expect(readCertificate(fast).issuer).toEqual(issuer.subject);

    // With the real CA (randomised ECDSA for P-256): the signed parts are identical.
    const realReference = await buildCertificate(referenceFields(h.deps, content), issuer.signer);
    const realFast = templateFor(h.deps, content.profile, content.key).tbs(fastVariables(h, content));
    expect(Buffer.from(realFast).toString("hex")).toBe(Buffer.from(readCertificate(realReference).tbs).toString("hex"));
  });

  it("reuses one template per CA, profile and key usage", async () => {
    h = await harness();
    const p256 = describeKey(await spkiOf({ name: "ECDSA", namedCurve: "P-256" }));
    const ed = describeKey(await spkiOf({ name: "Ed25519" }));
    const rsa = describeKey(
      await spkiOf({
        name: "RSASSA-PKCS1-v1_5",
        modulusLength: 2048,
        publicExponent: Uint8Array.of(1, 0, 1),
        hash: "SHA-256",
      }),
    );
    const device = h.deps.profiles.get("device");
    const rsaProfile = h.deps.profiles.get("rsa");
    if (!device || !rsaProfile) throw new Error("test profiles missing");
    expect(templateFor(h.deps, device, p256)).toBe(templateFor(h.deps, device, ed));
    expect(templateFor(h.deps, rsaProfile, rsa)).not.toBe(templateFor(h.deps, rsaProfile, p256));
    expect(templateFor(h.deps, device, p256)).not.toBe(templateFor(h.deps, rsaProfile, p256));
  });

  it("issues certificates that OpenSSL verifies, from both paths, each against its own CA's chain", async () => {
    h = await harness({ config: CONFIG });
    const dir = h.dir;
    const rsaCa = h.rsaCa;
    if (!rsaCa) throw new Error("the harness made no RSA CA");
    writeFileSync(join(dir, "root.pem"), toPem(h.ca.root));
    writeFileSync(join(dir, "issuing.pem"), toPem(h.deps.ca.certificate));
    writeFileSync(join(dir, "root-rsa.pem"), toPem(rsaCa.root));
    writeFileSync(join(dir, "issuing-rsa.pem"), toPem(rsaCa.issuing.certificate));
    for (const c of CASES.filter((x) => x.notAfter.getTime() < Date.UTC(2049, 0))) {
      const content = await contentOf(h, {
        ...c,
        notBefore: new Date(Date.now() - 60_000),
        notAfter: new Date(Date.now() + 3600_000),
      });
      const rsa = content.profile.issuer === "issuing-rsa";
      const signer = rsa ? rsaCa.issuing.signer : h.deps.ca.signer;
      const viaLibrary = await buildCertificate(referenceFields(h.deps, content), signer);
      const viaTemplate = await templateFor(h.deps, content.profile, content.key).build(
        fastVariables(h, content),
        signer,
      );
      for (const [label, der] of [
        ["library", viaLibrary],
        ["template", viaTemplate],
      ] as const) {
        const file = join(dir, `${label}.pem`);
        writeFileSync(file, toPem(der));
        const out = execFileSync("openssl", [
          "verify",
          "-x509_strict",
          "-purpose",
          "sslclient",
          "-CAfile",
          join(dir, rsa ? "root-rsa.pem" : "root.pem"),
          "-untrusted",
          join(dir, rsa ? "issuing-rsa.pem" : "issuing.pem"),
          file,
        ]).toString();
        expect(out.trim(), `${c.name} via ${label}`).toBe(`${file}: OK`);
        expect(pemCertificates(toPem(der))[0]).toEqual(der);
      }
    }
  });
});

describe("certificate times", () => {
  it("are UTCTime until the end of 2049 and GeneralizedTime from 2050 (RFC 5280 §4.1.2.5)", () => {
    const text = (d: string) => Buffer.from(encodeTime(new Date(d))).toString("latin1");
    expect(text("2049-12-31T23:59:59Z")).toBe("\x17\x0d491231235959Z");
    expect(text("2050-01-01T00:00:00Z")).toBe("\x18\x0f20500101000000Z");
    expect(text("2026-03-01T09:05:07Z")).toBe("\x17\x0d260301090507Z");
    expect(text("1950-01-01T00:00:00.999Z")).toBe("\x17\x0d500101000000Z");
    expect(text("1949-12-31T23:59:59Z")).toBe("\x18\x0f19491231235959Z");
    expect(text("9999-12-31T23:59:59Z")).toBe("\x18\x0f99991231235959Z");
    // No DER time holds a fifth year digit, nor an invalid date.
    expect(() => encodeTime(new Date("+010000-01-01T00:00:00Z"))).toThrow(RangeError);
    expect(() => encodeTime(new Date(Number.NaN))).toThrow(RangeError);
    // UTCTime's two digits mean 1950-2049 only: asked for another year, it refuses.
    expect(() => derTime(UTC_TIME, new Date("2050-01-01T00:00:00Z"))).toThrow(RangeError);
    expect(() => derTime(UTC_TIME, new Date("1949-12-31T23:59:59Z"))).toThrow(RangeError);
  });
});
