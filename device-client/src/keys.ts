import { createPublicKey, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { children, oid, readTlv, seq, tlv } from "./der.ts";

export type KeyType = "P-256" | "P-384" | "Ed25519" | "RSA-2048" | "RSA-3072";
export const KEY_TYPES: readonly KeyType[] = ["P-256", "P-384", "Ed25519", "RSA-2048", "RSA-3072"];

export function generateKey(type: KeyType): KeyObject {
  switch (type) {
    case "P-256":
      return generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
    case "P-384":
      return generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey;
    case "Ed25519":
      return generateKeyPairSync("ed25519").privateKey;
    case "RSA-2048":
    case "RSA-3072":
      return generateKeyPairSync("rsa", { modulusLength: type === "RSA-2048" ? 2048 : 3072 }).privateKey;
  }
}

/** The signature algorithm a key signs its CSR with, and the digest node:crypto takes for it. */
function algorithmOf(key: KeyObject): { id: Uint8Array; hash: string | null } {
  if (key.asymmetricKeyType === "ed25519") return { id: seq(oid("1.3.101.112")), hash: null };
  if (key.asymmetricKeyType === "rsa") {
    return { id: seq(oid("1.2.840.113549.1.1.11"), Uint8Array.of(0x05, 0x00)), hash: "sha256" };
  }
  const p384 = key.asymmetricKeyDetails?.namedCurve === "secp384r1";
  return { id: seq(oid(p384 ? "1.2.840.10045.4.3.3" : "1.2.840.10045.4.3.2")), hash: p384 ? "sha384" : "sha256" };
}

/** A PKCS#10 request (RFC 2986) for CN=<commonName>; the server decides every other name. */
export function makeCsr(key: KeyObject, commonName: string): Uint8Array {
  const spki = new Uint8Array(createPublicKey(key).export({ type: "spki", format: "der" }));
  const cn = seq(oid("2.5.4.3"), tlv(0x0c, new TextEncoder().encode(commonName)));
  const info = seq(tlv(0x02, Uint8Array.of(0)), seq(tlv(0x31, cn)), spki, tlv(0xa0));
  const { id, hash } = algorithmOf(key);
  const signature = new Uint8Array(sign(hash, info, key));
  return seq(info, id, tlv(0x03, Uint8Array.of(0), signature));
}

/** The certificates of a base64 PKCS#7 certs-only body (RFC 7030 §4.1.3, §4.2.3). */
export function certsFromPkcs7(base64: string): Uint8Array[] {
  const der = new Uint8Array(Buffer.from(base64.replace(/\s+/g, ""), "base64"));
  const [, explicit] = children(readTlv(der).content);
  if (!explicit) throw new Error("not a PKCS#7 ContentInfo");
  const signedData = children(readTlv(explicit.content).content);
  const certs = signedData.find((el) => el.tag === 0xa0);
  return certs ? children(certs.content).map((c) => c.raw.slice()) : [];
}

export const toPem = (label: string, der: Uint8Array) =>
  `-----BEGIN ${label}-----\n${Buffer.from(der)
    .toString("base64")
    .replace(/(.{64})/g, "$1\n")
    .replace(/\n$/, "")}\n-----END ${label}-----\n`;

export function pemBlocks(text: string, label: string): Uint8Array[] {
  const re = new RegExp(`-----BEGIN ${label}-----([\\s\\S]+?)-----END ${label}-----`, "g");
  return [...text.matchAll(re)].map((m) => new Uint8Array(Buffer.from((m[1] as string).replace(/\s+/g, ""), "base64")));
}
