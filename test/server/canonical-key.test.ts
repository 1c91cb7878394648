/**
 * Canonical keys (issue 17): one key has one SPKI spelling, so "one key, one identity"
 * holds. Regression: the same P-256 key with a compressed point (`openssl ec -conv_form
 * compressed`) had other SPKI bytes and was certified for two devices.
 */
import { execFileSync } from "node:child_process";
import { createPrivateKey, ECDH, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CertificationRequest, CertificationRequestInfo } from "@peculiar/asn1-csr";
import { AsnConvert } from "@peculiar/asn1-schema";
import { AlgorithmIdentifier, Name, SubjectPublicKeyInfo } from "@peculiar/asn1-x509";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { checkCsr } from "../../server/authority/csr-check.ts";
import { generateDeviceKey } from "../../server/authority/keygen.ts";
import { profileSchema } from "../../server/config/schema.ts";
import { encodeName } from "../../server/pki/certificate.ts";
import { parseCsr } from "../../server/pki/csr.ts";
import { concat, encodeOid, fromHex, readTlv, sequence, TAG, tlv, toHex } from "../../server/pki/der.ts";
import {
  ecdsa_with_SHA256,
  ecdsa_with_SHA384,
  id_at_commonName,
  id_ecPublicKey,
  rsaEncryption,
  secp256r1,
  sha256WithRSAEncryption,
} from "../../server/pki/oids.ts";
import { encodeSpki, nonCanonical, otherSpellings, readSpki, SpkiError } from "../../server/pki/spki.ts";
import { cliCreateToken, expectDeniedAudit } from "../e2e/support/cli.ts";
import { estPost, expectOneLineError } from "../e2e/support/curl.ts";
import { openssl as opensslAsync, opensslCsr } from "../e2e/support/openssl.ts";
import { makeWorkDir, removeDir } from "../e2e/support/process.ts";
import { cliInitDataDir, startServer, type TestServer } from "../e2e/support/server.ts";
import {
  createToken,
  crypto,
  generateKeys,
  type Harness,
  harness,
  type KeyKind,
  makeCsr,
  peer,
  refusal,
} from "../support/fixtures.ts";

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "edgeid-canonical-"));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

let fileSeq = 0;
/** Runs the openssl CLI; returns stdout as bytes. */
function openssl(args: string[]): Uint8Array {
  return new Uint8Array(execFileSync("openssl", args, { stdio: ["ignore", "pipe", "pipe"] }));
}
function tmpFile(ext: string): string {
  return join(work, `f${++fileSeq}.${ext}`);
}

/** A new EC key made by `openssl genpkey`; returns the PEM file. */
function opensslEcKey(curve: "P-256" | "P-384"): string {
  const file = tmpFile("key");
  openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", `ec_paramgen_curve:${curve}`, "-out", file]);
  return file;
}

/** The key's SPKI as `openssl ec -pubout -conv_form <form>` writes it. */
function opensslSpki(keyFile: string, form: "uncompressed" | "compressed" | "hybrid"): Uint8Array {
  return openssl(["ec", "-in", keyFile, "-pubout", "-conv_form", form, "-outform", "DER"]);
}

/** `openssl ec -conv_form compressed` on the private key, then `openssl req -new -key` with it. */
function opensslCompressedCsr(keyFile: string, cn: string): Uint8Array {
  const compressedKey = tmpFile("key");
  openssl(["ec", "-in", keyFile, "-conv_form", "compressed", "-out", compressedKey]);
  const csr = tmpFile("csr");
  openssl(["req", "-new", "-key", compressedKey, "-subj", `/CN=${cn}`, "-outform", "DER", "-out", csr]);
  openssl(["req", "-inform", "DER", "-in", csr, "-noout", "-verify"]);
  return new Uint8Array(readFileSync(csr));
}

async function spkiOf(keys: CryptoKeyPair): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
}

async function nodePrivateKey(keys: CryptoKeyPair): Promise<KeyObject> {
  const pkcs8 = Buffer.from(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
  return createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" });
}

/**
 * The compressed-point SPKI of an EC key, by hand: node's ECDH.convertKey compresses the
 * point and @peculiar/asn1-x509 wraps it (independent of server/pki/spki.ts).
 */
async function handCompressedSpki(keys: CryptoKeyPair): Promise<Uint8Array> {
  const curve = (keys.publicKey.algorithm as EcKeyAlgorithm).namedCurve;
  const raw = Buffer.from(await crypto.subtle.exportKey("raw", keys.publicKey));
  const compressed = ECDH.convertKey(
    raw,
    curve === "P-256" ? "prime256v1" : "secp384r1",
    undefined,
    undefined,
    "compressed",
  );
  const info = AsnConvert.parse(await spkiOf(keys), SubjectPublicKeyInfo);
  info.subjectPublicKey = new Uint8Array(compressed as Buffer).buffer as ArrayBuffer;
  return new Uint8Array(AsnConvert.serialize(info));
}

/**
 * A PKCS#10 request carrying exactly these SPKI bytes, signed with the real private key:
 * CertificationRequestInfo from @peculiar/asn1-csr, signature from node:crypto.
 */
function csrWithSpki(spki: Uint8Array, privateKey: KeyObject, cn: string): Uint8Array {
  const info = new CertificationRequestInfo({
    subject: AsnConvert.parse(encodeName([{ type: id_at_commonName, value: cn }]), Name),
    subjectPKInfo: AsnConvert.parse(spki, SubjectPublicKeyInfo),
  });
  const infoDer = new Uint8Array(AsnConvert.serialize(info));
  const type = privateKey.asymmetricKeyType;
  const curve = privateKey.asymmetricKeyDetails?.namedCurve;
  const hash = type === "ec" && curve === "secp384r1" ? "sha384" : "sha256";
  const signatureAlgorithm =
    type === "rsa"
      ? new AlgorithmIdentifier({ algorithm: sha256WithRSAEncryption, parameters: null })
      : new AlgorithmIdentifier({ algorithm: hash === "sha384" ? ecdsa_with_SHA384 : ecdsa_with_SHA256 });
  const signature = sign(hash, infoDer, { key: privateKey, dsaEncoding: "der" });
  const der = new Uint8Array(
    AsnConvert.serialize(
      new CertificationRequest({
        certificationRequestInfo: info,
        signatureAlgorithm,
        signature: new Uint8Array(signature).buffer as ArrayBuffer,
      }),
    ),
  );
  // The request carries the SPKI byte for byte (the encoder did not normalise it).
  expect(toHex(parseCsr(der).spki)).toBe(toHex(spki));
  return der;
}

/** The parts of an RSA SPKI from node:crypto, for rebuilding it in other spellings. */
function rsaParts(spki: Uint8Array): { modulus: Uint8Array; exponent: Uint8Array; rsaPublicKey: Uint8Array } {
  const outer = readTlv(spki);
  const algorithm = readTlv(outer.content);
  const bits = readTlv(outer.content, algorithm.end);
  const rsaPublicKey = bits.content.subarray(1);
  const seq = readTlv(rsaPublicKey);
  const modulus = readTlv(seq.content);
  const exponent = readTlv(seq.content, modulus.end);
  return { modulus: modulus.content, exponent: exponent.content, rsaPublicKey };
}

const rsaAlgorithm = (params: Uint8Array[]) => sequence(encodeOid(rsaEncryption), ...params);
const NULL = Uint8Array.of(TAG.NULL, 0);
const bitString = (...content: Uint8Array[]) => tlv(TAG.BIT_STRING, Uint8Array.of(0), ...content);

describe("server/pki/spki.ts", () => {
  it.each<KeyKind>(["P-256", "P-384", "Ed25519", "RSA-2048"])(
    "a %s key from WebCrypto is canonical, and re-encodes to the same bytes",
    async (kind) => {
      const spki = await spkiOf(await generateKeys(kind));
      const reading = readSpki(spki);
      expect(reading.canonical).toBe(true);
      if (!reading.canonical) return;
      expect(toHex(encodeSpki(reading.material))).toBe(toHex(spki));
      expect(nonCanonical(spki)).toBeUndefined();
    },
  );

  it("keys from node:crypto are canonical (P-256, P-384, Ed25519, RSA-2048, RSA-3072 e=3)", () => {
    const pairs = [
      generateKeyPairSync("ec", { namedCurve: "P-256" }),
      generateKeyPairSync("ec", { namedCurve: "P-384" }),
      generateKeyPairSync("ed25519"),
      generateKeyPairSync("rsa", { modulusLength: 2048 }),
      generateKeyPairSync("rsa", { modulusLength: 3072, publicExponent: 3 }),
    ];
    for (const { publicKey } of pairs) {
      const spki = new Uint8Array(publicKey.export({ format: "der", type: "spki" }));
      expect(nonCanonical(spki), publicKey.asymmetricKeyType).toBeUndefined();
    }
  });

  it("server-generated keys (serverkeygen, keygen.ts) are canonical for every key type a profile can prefer", async () => {
    for (const keyTypes of [["P-256"], ["P-384"], ["Ed25519"], ["RSA"]] as const) {
      const profile = { ...profileSchema.parse({ keyTypes: [...keyTypes] }), name: "kg" };
      const { spki } = await generateDeviceKey(crypto, profile);
      expect(nonCanonical(spki), keyTypes[0]).toBeUndefined();
    }
  });

  it.each(["P-256", "P-384"] as const)(
    "a compressed %s point written by openssl ec -conv_form compressed is refused, and so is the hybrid form",
    (curve) => {
      const key = opensslEcKey(curve);
      expect(nonCanonical(opensslSpki(key, "uncompressed"))).toBeUndefined();
      const compressed = nonCanonical(opensslSpki(key, "compressed"));
      expect(compressed?.kind).toBe("ec_point_compressed");
      expect(compressed?.message).toBe(
        `the ${curve} public key uses the compressed point form; send the uncompressed form (RFC 5480 §2.2; openssl ec -conv_form uncompressed)`,
      );
      expect(nonCanonical(opensslSpki(key, "hybrid"))?.kind).toBe("ec_point_hybrid");
    },
  );

  it.each(["P-256", "P-384"] as const)("a CSR made by openssl req -new -key with a compressed %s key", (curve) => {
    const csr = parseCsr(opensslCompressedCsr(opensslEcKey(curve), "dev-c"));
    expect(csr.spki[csr.spki.length - (curve === "P-256" ? 33 : 49)]).toBeOneOf([0x02, 0x03]);
    expect(nonCanonical(csr.spki)?.kind).toBe("ec_point_compressed");
  });

  it.each<KeyKind>(["P-256", "P-384"])("a %s point compressed by hand (ECDH.convertKey) is refused", async (kind) => {
    const keys = await generateKeys(kind);
    const compressed = await handCompressedSpki(keys);
    expect(nonCanonical(compressed)?.kind).toBe("ec_point_compressed");
    // And it is the first "other spelling" of the uncompressed key.
    expect(toHex(otherSpellings(await spkiOf(keys))[0] as Uint8Array)).toBe(toHex(compressed));
  });

  it.each(["P-256", "P-384"] as const)(
    "the other spellings of an uncompressed %s key are what openssl writes for the compressed and hybrid forms",
    (curve) => {
      // Keys until both parities of Y occurred (0x02 and 0x03); 40 keys miss one with p = 2^-39.
      const prefixes = new Set<number>();
      for (let i = 0; i < 40 && prefixes.size < 2; i++) {
        const key = opensslEcKey(curve);
        const [compressed, hybrid, ...rest] = otherSpellings(opensslSpki(key, "uncompressed"));
        expect(rest).toEqual([]);
        expect(toHex(compressed as Uint8Array)).toBe(toHex(opensslSpki(key, "compressed")));
        expect(toHex(hybrid as Uint8Array)).toBe(toHex(opensslSpki(key, "hybrid")));
        prefixes.add(
          (compressed as Uint8Array)[(compressed as Uint8Array).length - (curve === "P-256" ? 33 : 49)] as number,
        );
      }
      expect([...prefixes].sort()).toEqual([0x02, 0x03]);
    },
  );

  it("other spellings: RSA without its NULL parameters; none for Ed25519; refused for a non-canonical SPKI", async () => {
    const rsa = await spkiOf(await generateKeys("RSA-2048"));
    const { rsaPublicKey } = rsaParts(rsa);
    expect(otherSpellings(rsa).map(toHex)).toEqual([toHex(sequence(rsaAlgorithm([]), bitString(rsaPublicKey)))]);
    expect(otherSpellings(await spkiOf(await generateKeys("Ed25519")))).toEqual([]);
    expect(() => otherSpellings(opensslSpki(opensslEcKey("P-256"), "compressed"))).toThrow(SpkiError);
  });

  describe("RSA spellings of a real RSA-2048 key (node:crypto)", () => {
    const spki = new Uint8Array(
      generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey.export({ format: "der", type: "spki" }),
    );
    const { modulus, exponent, rsaPublicKey } = rsaParts(spki);

    it("the parts rebuild the original bytes (the test's own encoder is right)", () => {
      expect(toHex(sequence(rsaAlgorithm([NULL]), bitString(rsaPublicKey)))).toBe(toHex(spki));
      expect(modulus[0]).toBe(0x00);
    });

    it("missing NULL parameters", () => {
      const reading = readSpki(sequence(rsaAlgorithm([]), bitString(rsaPublicKey)));
      expect(reading.canonical).toBe(false);
      if (reading.canonical) return;
      expect(reading.problem.kind).toBe("rsa_parameters");
      expect(reading.problem.message).toContain("lacks its NULL parameters");
      // Same key: the canonical re-encoding is node's own SPKI.
      expect(toHex(reading.canonicalSpki as Uint8Array)).toBe(toHex(spki));
    });

    it("a non-minimal modulus INTEGER (an extra leading 0x00)", () => {
      const padded = sequence(tlv(TAG.INTEGER, Uint8Array.of(0), modulus), tlv(TAG.INTEGER, exponent));
      const problem = nonCanonical(sequence(rsaAlgorithm([NULL]), bitString(padded)));
      expect(problem?.kind).toBe("rsa_integer");
      expect(problem?.message).toContain("modulus INTEGER has 1 leading zero bytes too many");
    });

    it("a non-minimal publicExponent INTEGER", () => {
      const padded = sequence(tlv(TAG.INTEGER, modulus), tlv(TAG.INTEGER, Uint8Array.of(0), exponent));
      expect(nonCanonical(sequence(rsaAlgorithm([NULL]), bitString(padded)))?.message).toContain("publicExponent");
    });

    it("trailing bytes inside the BIT STRING, after the RSAPublicKey", () => {
      const problem = nonCanonical(sequence(rsaAlgorithm([NULL]), bitString(rsaPublicKey, Uint8Array.of(0, 0))));
      expect(problem?.kind).toBe("trailing_data");
      expect(problem?.message).toContain("2 bytes follow the RSAPublicKey");
    });

    it("trailing bytes after the SPKI", () => {
      const problem = nonCanonical(concat([spki, Uint8Array.of(0x05, 0x00)]));
      expect(problem?.kind).toBe("trailing_data");
      expect(problem?.message).toContain("2 bytes follow the SubjectPublicKeyInfo");
    });

    it("a BER (non-minimal) length", () => {
      // The outer SEQUENCE length 0x0122 written with three length octets.
      const ber = concat([Uint8Array.of(0x30, 0x83, 0x00), spki.subarray(2)]);
      expect(nonCanonical(ber)?.kind).toBe("not_der");
    });

    it("a negative modulus is malformed, not another spelling", () => {
      const negative = sequence(tlv(TAG.INTEGER, modulus.subarray(1)), tlv(TAG.INTEGER, exponent));
      expect(() => readSpki(sequence(rsaAlgorithm([NULL]), bitString(negative)))).toThrow(SpkiError);
    });
  });

  it("EC: explicit curve parameters (openssl -param_enc explicit), a point of the wrong length, unused bits", async () => {
    const key = opensslEcKey("P-256");
    const explicit = openssl(["ec", "-in", key, "-pubout", "-param_enc", "explicit", "-outform", "DER"]);
    expect(nonCanonical(explicit)?.kind).toBe("ec_parameters");

    const uncompressed = opensslSpki(key, "uncompressed");
    const point = uncompressed.subarray(uncompressed.length - 65);
    const algorithm = sequence(encodeOid(id_ecPublicKey), encodeOid(secp256r1));
    const long = sequence(algorithm, bitString(point, Uint8Array.of(0)));
    expect(nonCanonical(long)?.kind).toBe("ec_point_length");
    const unused = sequence(algorithm, tlv(TAG.BIT_STRING, Uint8Array.of(3), point));
    expect(nonCanonical(unused)?.kind).toBe("bit_string_unused_bits");
    // The control: the same parts with 0 unused bits are openssl's bytes.
    expect(toHex(sequence(algorithm, bitString(point)))).toBe(toHex(uncompressed));
  });

  it("Ed25519: parameters present (NULL) are refused", async () => {
    const spki = await spkiOf(await generateKeys("Ed25519"));
    const key = spki.subarray(spki.length - 32);
    const withNull = sequence(sequence(encodeOid("1.3.101.112"), NULL), bitString(key));
    expect(nonCanonical(withNull)?.kind).toBe("ed25519_parameters");
    expect(toHex(sequence(sequence(encodeOid("1.3.101.112")), bitString(key)))).toBe(toHex(spki));
  });

  it("a non-minimal OID encoding is caught by comparing with the re-encoding", async () => {
    // X.690 §8.19.2: a subidentifier's first octet is never 0x80. These decode to the same
    // OIDs (1.3.101.112, 1.2.840.10045.3.1.7), so only the re-encoding tells them apart.
    const ed = await spkiOf(await generateKeys("Ed25519"));
    const paddedEd = sequence(sequence(tlv(TAG.OID, fromHex("2b806570"))), bitString(ed.subarray(ed.length - 32)));
    expect(nonCanonical(paddedEd)?.kind).toBe("not_der");
    const ec = await spkiOf(await generateKeys("P-256"));
    const paddedCurve = sequence(
      sequence(encodeOid(id_ecPublicKey), tlv(TAG.OID, fromHex("2a8648ce3d03018007"))),
      bitString(ec.subarray(ec.length - 65)),
    );
    expect(nonCanonical(paddedCurve)?.kind).toBe("not_der");
    // The control: unpadded, the same parts are WebCrypto's bytes.
    const plainCurve = sequence(
      sequence(encodeOid(id_ecPublicKey), tlv(TAG.OID, fromHex("2a8648ce3d030107"))),
      bitString(ec.subarray(ec.length - 65)),
    );
    expect(toHex(plainCurve)).toBe(toHex(ec));
  });
});

describe("canonical keys through the authority", () => {
  let h: Harness;
  beforeEach(async () => {
    h = await harness();
  });
  afterEach(() => h.close());

  /** As migration 0008 leaves a database that held certificates: a key row copied as sent. */
  function markUpgraded(target: Harness): void {
    target.storage.sqlite
      .prepare("INSERT INTO device_keys (key_fingerprint, device_id, as_sent) VALUES ('00', 'old', 1)")
      .run();
  }

  async function enrollWith(deviceId: string, csr: Uint8Array) {
    const token = await createToken(h, deviceId);
    return h.authority.enroll({ csr, credentials: { type: "bearer", token }, peer: peer() });
  }

  it.each<KeyKind>(["P-256", "P-384"])(
    "regression: the compressed spelling of dev-a's %s key is refused for dev-b with key_not_canonical, token unused",
    async (kind) => {
      const keys = await generateKeys(kind);
      await enrollWith("dev-a", await makeCsr(keys));
      const compressedCsr = csrWithSpki(await handCompressedSpki(keys), await nodePrivateKey(keys), "dev-b");
      // The hand-made request is a good one: openssl verifies its signature.
      const file = tmpFile("csr");
      writeFileSync(file, compressedCsr);
      openssl(["req", "-inform", "DER", "-in", file, "-noout", "-verify"]);

      const token = await createToken(h, "dev-b");
      const refused = await refusal(
        h.authority.enroll({ csr: compressedCsr, credentials: { type: "bearer", token }, peer: peer() }),
      );
      expect(refused).toEqual({ code: "bad_request", reason: "key_not_canonical" });
      const err = await h.authority
        .enroll({ csr: compressedCsr, credentials: { type: "bearer", token }, peer: peer() })
        .catch((e: Error) => e);
      expect((err as Error).message).toBe(
        `the ${kind} public key uses the compressed point form; send the uncompressed form (RFC 5480 §2.2; openssl ec -conv_form uncompressed)`,
      );
      // Nothing consumed, nothing issued.
      const tokens = await h.storage.listTokens("dev-b");
      expect(tokens.map((t) => t.usedAt)).toEqual([null]);
      expect(await h.storage.listCertificates("dev-b")).toEqual([]);
      const audit = await h.storage.listAudit({ deviceId: "dev-b", limit: 10 });
      expect(audit.filter((a) => a.outcome === "denied").map((a) => a.detail?.reason)).toContain("key_not_canonical");
      // The same token then works with a key of dev-b's own.
      const ok = await h.authority.enroll({
        csr: await makeCsr(await generateKeys(kind)),
        credentials: { type: "bearer", token },
        peer: peer(),
      });
      expect(ok.deviceId).toBe("dev-b");
    },
  );

  it("a CSR made by openssl req -new -key with a compressed key is refused, even for a new key", async () => {
    const csr = opensslCompressedCsr(opensslEcKey("P-256"), "dev-c");
    expect(await refusal(enrollWith("dev-c", csr))).toEqual({ code: "bad_request", reason: "key_not_canonical" });
  });

  it("RSA with missing NULL parameters is refused where RSA is allowed", async () => {
    const keys = await generateKeys("RSA-2048");
    const { rsaPublicKey } = rsaParts(await spkiOf(keys));
    const csr = csrWithSpki(sequence(rsaAlgorithm([]), bitString(rsaPublicKey)), await nodePrivateKey(keys), "app-1");
    const token = await createToken(h, "app-1", { profile: "rsa" });
    const refused = await refusal(
      h.authority.enroll({ label: "rsa", csr, credentials: { type: "bearer", token }, peer: peer() }),
    );
    expect(refused).toEqual({ code: "bad_request", reason: "key_not_canonical" });
  });

  it.each(["compressed", "hybrid"] as const)(
    "a certificate stored before this change with the %s spelling of a key keeps it from another device",
    async (form) => {
      const keyFile = opensslEcKey("P-256");
      const oldSpki = opensslSpki(keyFile, form);
      const fingerprint = toHex(new Uint8Array(await crypto.subtle.digest("SHA-256", oldSpki as BufferSource)));
      // A database from before canonical keys (migration 0008 copied its keys as sent).
      markUpgraded(h);
      // Data from before: dev-a's certificate row records the key under the other spelling.
      await enrollWith("dev-a", await makeCsr(await generateKeys("P-256")));
      const current = (await h.storage.listCertificates("dev-a"))[0];
      if (!current) throw new Error("dev-a has no certificate");
      await h.storage.apply([
        {
          kind: "insertCertificate",
          certificate: {
            ...current,
            serial: "0badc0de",
            fingerprint: "00".repeat(32),
            keyFingerprint: fingerprint,
            bootstrapTokenId: null,
          },
        },
      ]);
      // As migration 0008 copies it: a fingerprint of the key as it was sent.
      h.storage.sqlite.prepare("UPDATE device_keys SET as_sent = 1 WHERE key_fingerprint = ?").run(fingerprint);
      expect(await h.storage.listKeyHolders([fingerprint], 10)).toEqual(["dev-a"]);

      // dev-b sends the same key, uncompressed (openssl req with the original key file).
      const csr = tmpFile("csr");
      openssl(["req", "-new", "-key", keyFile, "-subj", "/CN=dev-b", "-outform", "DER", "-out", csr]);
      const refused = await refusal(enrollWith("dev-b", new Uint8Array(readFileSync(csr))));
      expect(refused).toEqual({ code: "forbidden", reason: "key_in_use" });
      expect((await h.storage.listTokens("dev-b")).map((t) => t.usedAt)).toEqual([null]);
      // dev-a itself may still enroll with that key (same device, e.g. after a factory reset).
      const again = tmpFile("csr");
      openssl(["req", "-new", "-key", keyFile, "-subj", "/CN=dev-a", "-outform", "DER", "-out", again]);
      expect((await enrollWith("dev-a", new Uint8Array(readFileSync(again)))).deviceId).toBe("dev-a");
    },
  );

  it("the fingerprint recorded for a certified key is SHA-256 of its canonical SPKI", async () => {
    const keys = await generateKeys("P-256");
    const issued = await enrollWith("dev-f", await makeCsr(keys));
    const spki = await spkiOf(keys);
    expect((await h.storage.getCertificate(issued.serial))?.keyFingerprint).toBe(
      toHex(new Uint8Array(await crypto.subtle.digest("SHA-256", spki as BufferSource))),
    );
  });

  it("checkCsr hands back the fingerprints of every spelling openssl writes, canonical first, where older keys exist", async () => {
    const keyFile = opensslEcKey("P-256");
    const csr = tmpFile("csr");
    openssl(["req", "-new", "-key", keyFile, "-subj", "/CN=dev-s", "-outform", "DER", "-out", csr]);
    const profile = h.deps.profiles.get("device");
    if (!profile) throw new Error("no device profile");
    // A database that never held a key certified as sent needs no other spelling.
    const fresh = await checkCsr(h.deps, new Uint8Array(readFileSync(csr)), "dev-s", profile);
    expect(fresh.keyFingerprints).toEqual([fresh.keyFingerprint]);
    // A database with a key copied by migration 0008 (as sent), on a new connection:
    // every spelling is looked up.
    const upgraded = await harness();
    try {
      markUpgraded(upgraded);
      const checked = await checkCsr(upgraded.deps, new Uint8Array(readFileSync(csr)), "dev-s", profile);
      const sha256 = async (b: Uint8Array) =>
        toHex(new Uint8Array(await crypto.subtle.digest("SHA-256", b as BufferSource)));
      const expected = await Promise.all(
        (["uncompressed", "compressed", "hybrid"] as const).map((form) => sha256(opensslSpki(keyFile, form))),
      );
      expect(checked.keyFingerprints).toEqual(expected);
      expect(checked.keyFingerprint).toBe(expected[0]);
    } finally {
      await upgraded.close();
    }
  });

  it("serverkeygen leaves the CSR's key alone: a compressed key may sign the request", async () => {
    const sk = await harness({
      config: { trustDomain: "example.org", profiles: { device: {}, kg: { serverKeygen: true } } },
    });
    try {
      const keys = await generateKeys("P-256");
      const csr = csrWithSpki(await handCompressedSpki(keys), await nodePrivateKey(keys), "dev-k");
      const [t] = await sk.authority.createTokens({ deviceIds: ["dev-k"], actor: "test", profile: "kg" });
      const issued = await sk.authority.enroll({
        label: "kg",
        serverKeygen: true,
        csr,
        credentials: { type: "bearer", token: (t as { token: string }).token },
        peer: peer(),
      });
      expect(issued.deviceId).toBe("dev-k");
    } finally {
      await sk.close();
    }
  });
});

describe("over EST with the real server, openssl and curl", () => {
  let dir: string;
  let server: TestServer | undefined;
  beforeAll(async () => {
    dir = await makeWorkDir("canonical");
    const { dataDir } = await cliInitDataDir(dir, "example.org");
    server = await startServer(dataDir, dir, 0, { mqtt: "off" });
  });
  afterAll(async () => {
    await server?.stop();
    await removeDir(dir);
  });

  it("a CSR with the compressed spelling of an enrolled key, made by openssl req, gets 400 naming the fix", async () => {
    const s = server as TestServer;
    const csrA = await opensslCsr(dir, "dev-a", { alg: "P-256" });
    const tokenA = await cliCreateToken(s.dataDir, "dev-a");
    const okA = await estPost(s, dir, "simpleenroll", csrA.base64, {
      basic: { user: "dev-a", password: tokenA.token },
    });
    expect(okA.status, okA.text).toBe(200);

    const compressedKey = join(dir, "dev-a-compressed.key");
    await opensslAsync(["ec", "-in", csrA.keyFile, "-conv_form", "compressed", "-out", compressedKey]);
    const csrB = await opensslCsr(dir, "dev-b", { keyFile: compressedKey });
    const tokenB = await cliCreateToken(s.dataDir, "dev-b");
    const refused = await estPost(s, dir, "simpleenroll", csrB.base64, {
      basic: { user: "dev-b", password: tokenB.token },
    });
    expectOneLineError(refused, 400);
    expect(refused.text).toBe(
      "the P-256 public key uses the compressed point form; send the uncompressed form (RFC 5480 §2.2; openssl ec -conv_form uncompressed)\n",
    );
    await expectDeniedAudit(s.dataDir, "dev-b", "est.simpleenroll", "key_not_canonical");
    // The token was not consumed: dev-b enrolls with it once it sends a key of its own.
    const own = await opensslCsr(dir, "dev-b-own", { alg: "P-256", subject: "/CN=dev-b" });
    const okB = await estPost(s, dir, "simpleenroll", own.base64, {
      basic: { user: "dev-b", password: tokenB.token },
    });
    expect(okB.status, okB.text).toBe(200);
  });
});
