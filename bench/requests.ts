/**
 * Load material for the benchmark: device keys and PKCS#10 requests made with
 * node:crypto (OpenSSL), encoded by hand so that tens of thousands take seconds.
 * Independent of the server's CSR parser except for the generic DER helpers.
 */
import { generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { encodeBase64 } from "../server/pki/base64.ts";
import { encodeOid, readChildren, readTlv, sequence, setOf, TAG, tlv } from "../server/pki/der.ts";

const ECDSA_WITH_SHA256 = sequence(encodeOid("1.2.840.10045.4.3.2"));
const CN = encodeOid("2.5.4.3");

export interface DeviceRequest {
  deviceId: string;
  /** base64 DER PKCS#10, ready to POST. */
  body: string;
  key: KeyObject;
}

/** A P-256 key and `CN=<deviceId>` CSR (RFC 2986), signed with ecdsa-with-SHA256. */
export function makeRequest(deviceId: string): DeviceRequest {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const spki = new Uint8Array(publicKey.export({ type: "spki", format: "der" }));
  const subject = sequence(setOf([sequence(CN, tlv(TAG.UTF8_STRING, new TextEncoder().encode(deviceId)))]));
  const info = sequence(tlv(TAG.INTEGER, Uint8Array.of(0)), subject, spki, tlv(0xa0));
  const signature = new Uint8Array(sign("sha256", info, privateKey));
  const csr = sequence(info, ECDSA_WITH_SHA256, tlv(TAG.BIT_STRING, Uint8Array.of(0), signature));
  return { deviceId, body: encodeBase64(csr, 76), key: privateKey };
}

/** The first certificate of a base64 PKCS#7 certs-only response (RFC 7030 §4.2.3). */
export function certificateFromResponse(body: string): Uint8Array {
  const der = Buffer.from(body, "base64");
  const contentInfo = readChildren(readTlv(new Uint8Array(der)).content);
  const signedData = readChildren(readTlv((contentInfo[1] as { content: Uint8Array }).content).content);
  const certs = signedData.find((el) => el.tag === 0xa0);
  if (!certs) throw new Error("no certificates in the PKCS#7 response");
  return (readChildren(certs.content)[0] as { raw: Uint8Array }).raw;
}

export function certificatePem(der: Uint8Array): string {
  return `-----BEGIN CERTIFICATE-----\n${encodeBase64(der, 64)}\n-----END CERTIFICATE-----\n`;
}
