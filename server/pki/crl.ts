/**
 * X.509 v2 CRLs (RFC 5280 §5), built directly as DER.
 *
 * A CRL of a large fleet holds ~10⁵ entries and is rebuilt on every update, so each
 * revokedCertificates element is encoded once (encodeCrlEntry, cached by the caller per
 * serial) and buildCrl only splices the cached bytes into a single allocation.
 *
 * ```asn1
 * CertificateList ::= SEQUENCE {
 *   tbsCertList          TBSCertList,
 *   signatureAlgorithm   AlgorithmIdentifier,
 *   signatureValue       BIT STRING }
 * TBSCertList ::= SEQUENCE {
 *   version              Version OPTIONAL,        -- v2
 *   signature            AlgorithmIdentifier,
 *   issuer               Name,
 *   thisUpdate           Time,
 *   nextUpdate           Time OPTIONAL,
 *   revokedCertificates  SEQUENCE OF SEQUENCE {
 *     userCertificate      CertificateSerialNumber,
 *     revocationDate       Time,
 *     crlEntryExtensions   Extensions OPTIONAL } OPTIONAL,
 *   crlExtensions        [0] EXPLICIT Extensions OPTIONAL }
 * ```
 */
import type { CertificateSigner } from "./certificate.ts";
import { encodeTime } from "./certificate-template.ts";
import {
  concat,
  encodeOid,
  fromHex,
  GENERALIZED_TIME,
  lengthSize,
  putHeader,
  putTime,
  sequence,
  signatureAlgorithmIdentifier,
  TAG,
  tlv,
  UTC_TIME,
  unsignedInteger,
} from "./der.ts";
import { id_ce_authorityKeyIdentifier, id_ce_cRLNumber, id_ce_cRLReasons } from "./oids.ts";

export interface CrlEntry {
  /** Lowercase hex of the positive serial magnitude, no sign byte, no leading 00 bytes (the stored form). */
  serial: string;
  revokedAt: Date;
  /** RFC 5280 §5.3.1 CRLReason code; null or 0 (unspecified) → no reasonCode extension. */
  reason: number | null;
}

export interface CrlInput {
  /** Issuer Name, DER. */
  issuer: Uint8Array;
  /** The issuer's keyIdentifier (its subjectKeyIdentifier). */
  authorityKeyId: Uint8Array;
  thisUpdate: Date;
  nextUpdate: Date;
  crlNumber: bigint;
  /** Outputs of encodeCrlEntry, in any order. */
  entries: readonly Uint8Array[];
  /** Signature algorithm OID; must be the signer's. */
  signatureAlgorithm: string;
}

/** RFC 5280 §5.3.1 CRLReason: 0..10, 7 is unused. */
export function isCrlReason(code: number): boolean {
  return Number.isInteger(code) && code >= 0 && code <= 10 && code !== 7;
}

const VERSION_V2 = Uint8Array.of(TAG.INTEGER, 0x01, 0x01);
/** crlEntryExtensions holding only reasonCode: everything but the ENUMERATED value's byte. */
const REASON_EXTENSIONS = sequence(
  sequence(encodeOid(id_ce_cRLReasons), tlv(TAG.OCTET_STRING, Uint8Array.of(0x0a, 0x01, 0x00))),
).subarray(0, -1);
const AKI_OID = encodeOid(id_ce_authorityKeyIdentifier);
const CRL_NUMBER_OID = encodeOid(id_ce_cRLNumber);
/** RFC 5280 §5.2.3: a CRL number is at most 20 octets. */
const CRL_NUMBER_LIMIT = 1n << 159n;

function hexDigit(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x61 && code <= 0x66) return code - 0x57;
  return -1;
}

/** One revokedCertificates element; callers cache these bytes per serial. */
export function encodeCrlEntry(e: CrlEntry): Uint8Array {
  const hex = e.serial;
  if (hex.length === 0 || hex.length % 2 !== 0 || (hex.startsWith("00") && hex.length > 2)) {
    throw new Error(`invalid serial ${JSON.stringify(hex)}: expected minimal lowercase hex`);
  }
  if (e.reason !== null && !isCrlReason(e.reason)) throw new RangeError(`invalid CRL reason code ${e.reason}`);
  const magnitude = hex.length / 2;
  const pad = hexDigit(hex.charCodeAt(0)) >= 8 ? 1 : 0;
  const serialLength = magnitude + pad;
  const year = e.revokedAt.getUTCFullYear();
  if (!(year >= 0 && year <= 9999)) throw new RangeError("invalid revocation date");
  const utc = year >= 1950 && year < 2050;
  const withReason = e.reason !== null && e.reason !== 0;
  const bodyLength =
    1 + lengthSize(serialLength) + serialLength + (utc ? 15 : 17) + (withReason ? REASON_EXTENSIONS.length + 1 : 0);
  const out = new Uint8Array(1 + lengthSize(bodyLength) + bodyLength);
  let at = putHeader(out, 0, TAG.SEQUENCE, bodyLength);
  at = putHeader(out, at, TAG.INTEGER, serialLength);
  if (pad) out[at++] = 0;
  for (let i = 0; i < hex.length; i += 2) {
    const hi = hexDigit(hex.charCodeAt(i));
    const lo = hexDigit(hex.charCodeAt(i + 1));
    if (hi < 0 || lo < 0) throw new Error(`invalid serial ${JSON.stringify(hex)}: expected minimal lowercase hex`);
    out[at++] = (hi << 4) | lo;
  }
  at = putTime(out, at, utc ? UTC_TIME : GENERALIZED_TIME, e.revokedAt);
  if (withReason) {
    out.set(REASON_EXTENSIONS, at);
    out[at + REASON_EXTENSIONS.length] = e.reason as number;
  }
  return out;
}

/** crlExtensions: authorityKeyIdentifier (keyIdentifier only) and cRLNumber, both non-critical. */
function crlExtensions(authorityKeyId: Uint8Array, crlNumber: bigint): Uint8Array {
  if (crlNumber < 0n || crlNumber >= CRL_NUMBER_LIMIT) throw new RangeError(`CRL number out of range: ${crlNumber}`);
  const hex = crlNumber.toString(16);
  const number = unsignedInteger(fromHex(hex.length % 2 ? `0${hex}` : hex));
  return tlv(
    0xa0,
    sequence(
      sequence(AKI_OID, tlv(TAG.OCTET_STRING, sequence(tlv(0x80, authorityKeyId)))),
      sequence(CRL_NUMBER_OID, tlv(TAG.OCTET_STRING, number)),
    ),
  );
}

/**
 * Signs the TBSCertList and wraps it. Two buffers of the CRL's size: the TBSCertList, with
 * the entries copied straight in, and the CertificateList, whose header depends on the
 * signature's length.
 */
export async function buildCrl(input: CrlInput, signer: CertificateSigner): Promise<Uint8Array> {
  if (input.signatureAlgorithm !== signer.signatureAlgorithm) {
    throw new Error(
      `signature algorithm ${input.signatureAlgorithm} is not the signer's (${signer.signatureAlgorithm})`,
    );
  }
  const algorithm = signatureAlgorithmIdentifier(input.signatureAlgorithm);
  const head = concat([
    VERSION_V2,
    algorithm,
    input.issuer,
    encodeTime(input.thisUpdate),
    encodeTime(input.nextUpdate),
  ]);
  const extensions = crlExtensions(input.authorityKeyId, input.crlNumber);
  let entriesLength = 0;
  for (const entry of input.entries) entriesLength += entry.length;
  // RFC 5280 §5.1.2.6: with no revoked certificates the list is absent, not empty.
  const revokedLength = input.entries.length === 0 ? 0 : 1 + lengthSize(entriesLength) + entriesLength;
  const tbsLength = head.length + revokedLength + extensions.length;
  const tbs = new Uint8Array(1 + lengthSize(tbsLength) + tbsLength);
  let at = putHeader(tbs, 0, TAG.SEQUENCE, tbsLength);
  tbs.set(head, at);
  at += head.length;
  if (input.entries.length > 0) {
    at = putHeader(tbs, at, TAG.SEQUENCE, entriesLength);
    for (const entry of input.entries) {
      tbs.set(entry, at);
      at += entry.length;
    }
  }
  tbs.set(extensions, at);

  const signature = await signer.sign(tbs);
  const bitStringLength = 1 + signature.length;
  const listLength = tbs.length + algorithm.length + 1 + lengthSize(bitStringLength) + bitStringLength;
  const out = new Uint8Array(1 + lengthSize(listLength) + listLength);
  at = putHeader(out, 0, TAG.SEQUENCE, listLength);
  out.set(tbs, at);
  at += tbs.length;
  out.set(algorithm, at);
  at += algorithm.length;
  at = putHeader(out, at, TAG.BIT_STRING, bitStringLength);
  out[at++] = 0;
  out.set(signature, at);
  return out;
}
