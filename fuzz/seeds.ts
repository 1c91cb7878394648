/**
 * Real inputs to mutate: PKCS#10 requests for P-256, P-384, RSA and Ed25519 keys with
 * extension requests (made with node:crypto, encoded by hand), SubjectPublicKeyInfos,
 * ECDSA signatures, OCSP requests in the spellings clients use, and a certificate.
 */
import { execFileSync } from "node:child_process";
import { createHash, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeOid, sequence, setOf, TAG, tlv, unsignedInteger } from "../server/pki/der.ts";

const text = (s: string) => new TextEncoder().encode(s);
const NULL = Uint8Array.of(TAG.NULL, 0);

const ALG = {
  "P-256": sequence(encodeOid("1.2.840.10045.4.3.2")),
  "P-384": sequence(encodeOid("1.2.840.10045.4.3.3")),
  RSA: sequence(encodeOid("1.2.840.113549.1.1.11"), NULL),
  Ed25519: sequence(encodeOid("1.3.101.112")),
} as const;

export type SeedKeyType = keyof typeof ALG;

export function generateKey(type: SeedKeyType): { publicKey: KeyObject; privateKey: KeyObject } {
  if (type === "RSA") return generateKeyPairSync("rsa", { modulusLength: 2048 });
  if (type === "Ed25519") return generateKeyPairSync("ed25519");
  return generateKeyPairSync("ec", { namedCurve: type });
}

function extensionRequest(deviceId: string): Uint8Array {
  const san = sequence(
    tlv(0x86, text(`spiffe://fuzz.test/device/${deviceId}`)),
    tlv(0x82, text(`${deviceId}.devices.fuzz.test`)),
    tlv(0x87, Uint8Array.of(10, 0, 0, 7)),
    tlv(0x87, Uint8Array.of(0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)),
    tlv(0x81, text(`${deviceId}@fuzz.test`)),
  );
  const extensions = sequence(
    sequence(encodeOid("2.5.29.17"), tlv(TAG.OCTET_STRING, san)),
    sequence(
      encodeOid("2.5.29.15"),
      tlv(0x01, Uint8Array.of(0xff)),
      tlv(TAG.OCTET_STRING, tlv(0x03, Uint8Array.of(7, 0x80))),
    ),
    sequence(
      encodeOid("2.5.29.37"),
      tlv(TAG.OCTET_STRING, sequence(encodeOid("1.3.6.1.5.5.7.3.2"), encodeOid("1.3.6.1.5.5.7.3.1"))),
    ),
    sequence(encodeOid("2.5.29.19"), tlv(TAG.OCTET_STRING, sequence())),
  );
  return sequence(encodeOid("1.2.840.113549.1.9.14"), setOf([extensions]));
}

/** A signed CSR, `CN=<deviceId>, O=fuzz`, optionally with an extension request and a challengePassword. */
export function makeCsr(
  type: SeedKeyType,
  deviceId: string,
  opts: { extensions?: boolean; challenge?: boolean; key?: { publicKey: KeyObject; privateKey: KeyObject } } = {},
): { der: Uint8Array; privateKey: KeyObject } {
  const { publicKey, privateKey } = opts.key ?? generateKey(type);
  const spki = new Uint8Array(publicKey.export({ type: "spki", format: "der" }));
  const subject = sequence(
    setOf([sequence(encodeOid("2.5.4.10"), tlv(TAG.PRINTABLE_STRING, text("fuzz")))]),
    setOf([sequence(encodeOid("2.5.4.3"), tlv(TAG.UTF8_STRING, text(deviceId)))]),
  );
  const attributes: Uint8Array[] = [];
  if (opts.extensions) attributes.push(extensionRequest(deviceId));
  if (opts.challenge) {
    attributes.push(sequence(encodeOid("1.2.840.113549.1.9.7"), setOf([tlv(TAG.UTF8_STRING, text("secret"))])));
  }
  const info = sequence(tlv(TAG.INTEGER, Uint8Array.of(0)), subject, spki, tlv(0xa0, ...attributes));
  const signature = new Uint8Array(
    sign(type === "Ed25519" ? null : type === "P-384" ? "sha384" : "sha256", info, privateKey),
  );
  return { der: sequence(info, ALG[type], tlv(TAG.BIT_STRING, Uint8Array.of(0), signature)), privateKey };
}

export interface OcspIssuer {
  /** SHA-1 and SHA-256 of the issuer's Name DER and of its subjectPublicKey bits. */
  sha1: { name: Uint8Array; key: Uint8Array };
  sha256: { name: Uint8Array; key: Uint8Array };
}

/** Hashes of made-up issuer bytes, for in-process runs where no CA exists. */
export function fakeIssuer(): OcspIssuer {
  const h = (alg: string, s: string) => new Uint8Array(createHash(alg).update(s).digest());
  return {
    sha1: { name: h("sha1", "name"), key: h("sha1", "key") },
    sha256: { name: h("sha256", "name"), key: h("sha256", "key") },
  };
}

/** OCSP requests in the spellings clients use (RFC 6960 §4.1.1). */
export function makeOcspRequests(issuer: OcspIssuer, serials: Uint8Array[]): Uint8Array[] {
  const sha1Oid = encodeOid("1.3.14.3.2.26");
  const sha256Oid = encodeOid("2.16.840.1.101.3.4.2.1");
  const certId = (serial: Uint8Array, sha256: boolean, params: boolean) => {
    const oid = sha256 ? sha256Oid : sha1Oid;
    const h = sha256 ? issuer.sha256 : issuer.sha1;
    return sequence(
      params ? sequence(oid, NULL) : sequence(oid),
      tlv(TAG.OCTET_STRING, h.name),
      tlv(TAG.OCTET_STRING, h.key),
      unsignedInteger(serial),
    );
  };
  const nonce = (n: Uint8Array) =>
    tlv(0xa2, sequence(sequence(encodeOid("1.3.6.1.5.5.7.48.1.2"), tlv(TAG.OCTET_STRING, tlv(TAG.OCTET_STRING, n)))));
  const out: Uint8Array[] = [];
  const first = serials[0] ?? Uint8Array.of(1);
  out.push(sequence(sequence(sequence(sequence(certId(first, false, true))))));
  out.push(sequence(sequence(sequence(sequence(certId(first, true, false))), nonce(new Uint8Array(16).fill(7)))));
  out.push(
    sequence(
      sequence(
        tlv(0xa0, tlv(TAG.INTEGER, Uint8Array.of(0))),
        tlv(0xa1, tlv(0x82, text("client.fuzz.test"))),
        sequence(...serials.map((s, i) => sequence(certId(s, i % 2 === 0, i % 3 !== 0)))),
        nonce(new Uint8Array(32).fill(1)),
      ),
      tlv(0xa0, sequence(ALG["P-256"], tlv(TAG.BIT_STRING, Uint8Array.of(0), new Uint8Array(70)))),
    ),
  );
  out.push(
    sequence(
      sequence(
        sequence(
          sequence(
            certId(first, false, true),
            tlv(0xa0, sequence(sequence(encodeOid("1.3.6.1.5.5.7.48.1.7"), tlv(TAG.OCTET_STRING, sequence())))),
          ),
        ),
      ),
    ),
  );
  return out;
}

export interface SeedCorpus {
  csrs: Uint8Array[];
  spkis: Uint8Array[];
  signatures: Uint8Array[];
  ocsp: Uint8Array[];
  certificates: Uint8Array[];
}

/** A self-signed P-256 certificate with extensions, made by openssl. */
export function opensslCertificate(): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), "edgeid-fuzz-"));
  try {
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        join(dir, "k.pem"),
      ].concat(
        ["-out", join(dir, "c.der"), "-outform", "DER", "-subj", "/O=fuzz/CN=fuzz-ca", "-days", "2"],
        ["-addext", "subjectAltName=DNS:fuzz.test,IP:127.0.0.1,URI:spiffe://fuzz.test/x"],
      ),
      { stdio: "ignore" },
    );
    return new Uint8Array(readFileSync(join(dir, "c.der")));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The in-process corpus; `certificates` and `issuer` come from a server when there is one. */
export function makeCorpus(
  certificates: Uint8Array[] = [opensslCertificate()],
  issuer: OcspIssuer = fakeIssuer(),
): SeedCorpus {
  const csrs: Uint8Array[] = [];
  const spkis: Uint8Array[] = [];
  const signatures: Uint8Array[] = [];
  for (const type of ["P-256", "P-384", "RSA", "Ed25519"] as const) {
    const key = generateKey(type);
    spkis.push(new Uint8Array(key.publicKey.export({ type: "spki", format: "der" })));
    if (type === "P-256" || type === "P-384")
      signatures.push(new Uint8Array(sign("sha256", text("data"), key.privateKey)));
    csrs.push(makeCsr(type, `fuzz-${type.toLowerCase()}`, { key }).der);
    csrs.push(makeCsr(type, `fuzz-${type.toLowerCase()}-ext`, { key, extensions: true, challenge: true }).der);
  }
  const serials = [
    Uint8Array.of(1),
    Uint8Array.of(0x7f, 0xee, 0x10, 0x22, 0x33, 0x44, 0x55, 0x66),
    new Uint8Array(20).fill(0x41),
  ];
  return { csrs, spkis, signatures, ocsp: makeOcspRequests(issuer, serials), certificates };
}

const CORPUS_FILE = new URL("./corpus.json", import.meta.url);

/** The committed corpus (`tsx fuzz/seeds.ts` writes it): the same seed gives the same inputs on every machine. */
export function loadCorpus(): SeedCorpus {
  const hex = JSON.parse(readFileSync(CORPUS_FILE, "utf8")) as Record<keyof SeedCorpus, string[]>;
  const bytes = (list: string[]) => list.map((h) => new Uint8Array(Buffer.from(h, "hex")));
  return {
    csrs: bytes(hex.csrs),
    spkis: bytes(hex.spkis),
    signatures: bytes(hex.signatures),
    ocsp: bytes(hex.ocsp),
    certificates: bytes(hex.certificates),
  };
}

if (process.argv[1] && new URL(`file://${process.argv[1]}`).href === import.meta.url) {
  const corpus = makeCorpus();
  const hex = Object.fromEntries(
    Object.entries(corpus).map(([k, list]) => [k, (list as Uint8Array[]).map((b) => Buffer.from(b).toString("hex"))]),
  );
  writeFileSync(CORPUS_FILE, `${JSON.stringify(hex, null, 2)}\n`);
}
