/**
 * OCSP (RFC 6960): the request parser and the response builder, as hand-built DER.
 *
 * ```asn1
 * OCSPRequest ::= SEQUENCE {
 *   tbsRequest         TBSRequest,
 *   optionalSignature  [0] EXPLICIT Signature OPTIONAL }
 * TBSRequest ::= SEQUENCE {
 *   version            [0] EXPLICIT Version DEFAULT v1,
 *   requestorName      [1] EXPLICIT GeneralName OPTIONAL,
 *   requestList        SEQUENCE OF Request,
 *   requestExtensions  [2] EXPLICIT Extensions OPTIONAL }
 * Request ::= SEQUENCE {
 *   reqCert                  CertID,
 *   singleRequestExtensions  [0] EXPLICIT Extensions OPTIONAL }
 * CertID ::= SEQUENCE {
 *   hashAlgorithm   AlgorithmIdentifier,
 *   issuerNameHash  OCTET STRING,
 *   issuerKeyHash   OCTET STRING,
 *   serialNumber    CertificateSerialNumber }
 *
 * OCSPResponse ::= SEQUENCE {
 *   responseStatus  OCSPResponseStatus,      -- ENUMERATED
 *   responseBytes   [0] EXPLICIT ResponseBytes OPTIONAL }
 * ResponseBytes ::= SEQUENCE { responseType OBJECT IDENTIFIER, response OCTET STRING }
 * BasicOCSPResponse ::= SEQUENCE {
 *   tbsResponseData     ResponseData,
 *   signatureAlgorithm  AlgorithmIdentifier,
 *   signature           BIT STRING,
 *   certs               [0] EXPLICIT SEQUENCE OF Certificate OPTIONAL }
 * ResponseData ::= SEQUENCE {
 *   version             [0] EXPLICIT Version DEFAULT v1,
 *   responderID         ResponderID,         -- byKey [2] EXPLICIT KeyHash
 *   producedAt          GeneralizedTime,
 *   responses           SEQUENCE OF SingleResponse,
 *   responseExtensions  [1] EXPLICIT Extensions OPTIONAL }
 * SingleResponse ::= SEQUENCE {
 *   certID            CertID,
 *   certStatus        CertStatus,
 *   thisUpdate        GeneralizedTime,
 *   nextUpdate        [0] EXPLICIT GeneralizedTime OPTIONAL,
 *   singleExtensions  [1] EXPLICIT Extensions OPTIONAL }
 * CertStatus ::= CHOICE {
 *   good     [0] IMPLICIT NULL,
 *   revoked  [1] IMPLICIT RevokedInfo,
 *   unknown  [2] IMPLICIT UnknownInfo }
 * RevokedInfo ::= SEQUENCE {
 *   revocationTime    GeneralizedTime,
 *   revocationReason  [0] EXPLICIT CRLReason OPTIONAL }
 * ```
 */
import type { Digest } from "../ports/digest.ts";
import { type CertificateSigner, readCertificate } from "./certificate.ts";
import { isCrlReason } from "./crl.ts";
import {
  DerError,
  decodeOid,
  derTime,
  encodeOid,
  GENERALIZED_TIME,
  readChildren,
  readTlv,
  sequence,
  signatureAlgorithmIdentifier,
  TAG,
  type Tlv,
  tlv,
  toHex,
} from "./der.ts";
import { subjectPublicKeyBits } from "./keys.ts";
import { id_pkix_ocsp_basic, id_pkix_ocsp_nonce, id_sha1, id_sha256 } from "./oids.ts";

/** A malformed or unsupported OCSP request: answered with malformedRequest. */
export class OcspError extends Error {
  override name = "OcspError";
}

export type OcspHash = "SHA-1" | "SHA-256";

export interface OcspCertId {
  hashAlgorithm: OcspHash;
  issuerNameHash: Uint8Array;
  issuerKeyHash: Uint8Array;
  /** Lowercase hex magnitude, leading zero bytes stripped (the stored form); null when ≤ 0. */
  serial: string | null;
  /** The CertID element exactly as received: a response echoes it. */
  raw: Uint8Array;
}

export interface OcspRequest {
  certIds: OcspCertId[];
  /** The nonce extension's extnValue contents, echoed as-is. */
  nonce?: Uint8Array;
}

const HASHES: Record<string, { name: OcspHash; length: number }> = {
  [id_sha1]: { name: "SHA-1", length: 20 },
  [id_sha256]: { name: "SHA-256", length: 32 },
};
/** RFC 5280 §4.1.2.2: at most 20 octets, plus a leading zero that keeps it positive. */
const MAX_SERIAL_OCTETS = 21;
const CONTEXT_0 = 0xa0;
const CONTEXT_1 = 0xa1;
const CONTEXT_2 = 0xa2;
const ENUMERATED = 0x0a;
const BOOLEAN = 0x01;
/** Larger than any sane nonce (RFC 8954 asks for 1..32 octets) but bounds what is echoed. */
const MAX_NONCE = 128;

function expectTag(el: Tlv | undefined, tag: number, what: string): Tlv {
  if (!el || el.tag !== tag) throw new OcspError(`malformed OCSP request: expected ${what}`);
  return el;
}

/**
 * Strict on the structure, lenient where clients differ: the v1 version may be encoded
 * explicitly, the hash AlgorithmIdentifier may carry NULL parameters or none, and a
 * requestorName and optionalSignature are skipped (requests are not authenticated).
 */
export function parseOcspRequest(der: Uint8Array, maxRequests: number): OcspRequest {
  try {
    return parseRequest(der, maxRequests);
  } catch (e) {
    if (e instanceof DerError) throw new OcspError(`malformed OCSP request: ${e.message}`);
    throw e;
  }
}

function parseRequest(der: Uint8Array, maxRequests: number): OcspRequest {
  const outer = expectTag(readTlv(der), TAG.SEQUENCE, "OCSPRequest");
  if (outer.end !== der.length) throw new OcspError("malformed OCSP request: trailing bytes");
  const [tbs, signature, ...rest] = readChildren(outer.content);
  const tbsRequest = expectTag(tbs, TAG.SEQUENCE, "TBSRequest");
  if ((signature && signature.tag !== CONTEXT_0) || rest.length > 0) {
    throw new OcspError("malformed OCSP request: unexpected element after TBSRequest");
  }
  const fields = readChildren(tbsRequest.content);
  let i = 0;
  if (fields[i]?.tag === CONTEXT_0) {
    const version = (fields[i++] as Tlv).content;
    if (version.length !== 3 || version[0] !== TAG.INTEGER || version[1] !== 1 || version[2] !== 0) {
      throw new OcspError("malformed OCSP request: unsupported version");
    }
  }
  if (fields[i]?.tag === CONTEXT_1) i++;
  const list = expectTag(fields[i++], TAG.SEQUENCE, "requestList");
  const extensions = fields[i]?.tag === CONTEXT_2 ? fields[i++] : undefined;
  if (i !== fields.length) throw new OcspError("malformed OCSP request: unexpected element in TBSRequest");

  const certIds: OcspCertId[] = [];
  for (let at = 0; at < list.content.length; ) {
    if (certIds.length === maxRequests) throw new OcspError(`too many requests (at most ${maxRequests})`);
    const request = expectTag(readTlv(list.content, at), TAG.SEQUENCE, "Request");
    at = request.end;
    const [certId, singleExtensions, ...more] = readChildren(request.content);
    if ((singleExtensions && singleExtensions.tag !== CONTEXT_0) || more.length > 0) {
      throw new OcspError("malformed OCSP request: unexpected element in Request");
    }
    certIds.push(parseCertId(expectTag(certId, TAG.SEQUENCE, "CertID")));
  }
  if (certIds.length === 0) throw new OcspError("malformed OCSP request: empty requestList");
  const nonce = extensions ? findNonce(extensions) : undefined;
  return nonce ? { certIds, nonce } : { certIds };
}

function parseCertId(el: Tlv): OcspCertId {
  const [algorithm, nameHash, keyHash, serial, ...more] = readChildren(el.content);
  if (more.length > 0) throw new OcspError("malformed OCSP request: unexpected element in CertID");
  const [oid, params, ...extra] = readChildren(expectTag(algorithm, TAG.SEQUENCE, "AlgorithmIdentifier").content);
  if ((params && (params.tag !== TAG.NULL || params.content.length !== 0)) || extra.length > 0) {
    throw new OcspError("malformed OCSP request: unexpected hash algorithm parameters");
  }
  const oidText = decodeOid(expectTag(oid, TAG.OID, "hash algorithm OID").content);
  const hash = HASHES[oidText];
  if (!hash) throw new OcspError(`unsupported hash algorithm ${oidText}`);
  const name = expectTag(nameHash, TAG.OCTET_STRING, "issuerNameHash").content;
  const key = expectTag(keyHash, TAG.OCTET_STRING, "issuerKeyHash").content;
  if (name.length !== hash.length || key.length !== hash.length) {
    throw new OcspError(`malformed OCSP request: issuer hashes are not ${hash.name} digests`);
  }
  const number = expectTag(serial, TAG.INTEGER, "serialNumber").content;
  if (number.length === 0) throw new OcspError("malformed OCSP request: empty serialNumber");
  // DER INTEGERs are minimal (X.690 §8.3.2): one serial has one spelling, so padding
  // cannot make one certificate's answer many.
  if (!minimalInteger(number)) {
    throw new OcspError("malformed OCSP request: serialNumber is not a minimal DER INTEGER");
  }
  if (number.length > MAX_SERIAL_OCTETS) {
    throw new OcspError(`malformed OCSP request: serialNumber longer than ${MAX_SERIAL_OCTETS} octets`);
  }
  return {
    hashAlgorithm: hash.name,
    issuerNameHash: name.slice(),
    issuerKeyHash: key.slice(),
    serial: serialHex(number),
    raw: el.raw.slice(),
  };
}

/** X.690 §8.3.2: the first nine bits of an INTEGER's content are not all zeros or all ones. */
function minimalInteger(content: Uint8Array): boolean {
  if (content.length < 2) return true;
  const [first, second] = content as unknown as [number, number];
  return !((first === 0x00 && (second & 0x80) === 0) || (first === 0xff && (second & 0x80) !== 0));
}

/** A positive INTEGER's magnitude as stored; null for zero and negative numbers. */
function serialHex(content: Uint8Array): string | null {
  if ((content[0] as number) & 0x80) return null;
  let start = 0;
  while (start < content.length && content[start] === 0) start++;
  return start === content.length ? null : toHex(content.subarray(start));
}

/** requestExtensions: [2] EXPLICIT SEQUENCE OF Extension { extnID, critical DEFAULT FALSE, extnValue }. */
function findNonce(extensions: Tlv): Uint8Array | undefined {
  const [list, ...more] = readChildren(extensions.content);
  if (more.length > 0) throw new OcspError("malformed OCSP request: unexpected element in requestExtensions");
  let nonce: Uint8Array | undefined;
  for (const ext of readChildren(expectTag(list, TAG.SEQUENCE, "Extensions").content)) {
    const parts = readChildren(expectTag(ext, TAG.SEQUENCE, "Extension").content);
    const [oid, critical] = parts;
    const hasCritical = parts.length === 3;
    if (parts.length < 2 || parts.length > 3 || (hasCritical && critical?.tag !== BOOLEAN)) {
      throw new OcspError("malformed OCSP request: malformed Extension");
    }
    const value = expectTag(parts[parts.length - 1], TAG.OCTET_STRING, "extnValue").content;
    if (decodeOid(expectTag(oid, TAG.OID, "extnID").content) !== id_pkix_ocsp_nonce) continue;
    if (nonce) throw new OcspError("malformed OCSP request: repeated nonce extension");
    if (value.length > MAX_NONCE) throw new OcspError(`nonce longer than ${MAX_NONCE} bytes`);
    nonce = value.slice();
  }
  return nonce;
}

export type OcspStatus =
  | { type: "good" }
  | { type: "revoked"; revokedAt: Date; reason: number | null }
  | { type: "unknown" };

export interface OcspSingle {
  /** The CertID as received (OcspCertId.raw). */
  certId: Uint8Array;
  status: OcspStatus;
  thisUpdate: Date;
  nextUpdate: Date;
}

/** RFC 6960 times are GeneralizedTime throughout (YYYYMMDDHHMMSSZ, whole seconds). */
const generalizedTime = (date: Date): Uint8Array => derTime(GENERALIZED_TIME, date);

const GOOD = Uint8Array.of(0x80, 0x00);
const UNKNOWN = Uint8Array.of(0x82, 0x00);

function certStatus(status: OcspStatus): Uint8Array {
  if (status.type === "good") return GOOD;
  if (status.type === "unknown") return UNKNOWN;
  const time = generalizedTime(status.revokedAt);
  if (status.reason === null) return tlv(CONTEXT_1, time);
  if (!isCrlReason(status.reason)) throw new RangeError(`invalid CRL reason code ${status.reason}`);
  return tlv(CONTEXT_1, time, tlv(CONTEXT_0, Uint8Array.of(ENUMERATED, 0x01, status.reason)));
}

export function encodeSingleResponse(s: OcspSingle): Uint8Array {
  return sequence(
    s.certId,
    certStatus(s.status),
    generalizedTime(s.thisUpdate),
    tlv(CONTEXT_0, generalizedTime(s.nextUpdate)),
  );
}

export interface OcspResponseInput {
  /** ResponderID byKey: SHA-1 of the responder's subjectPublicKey BIT STRING value. */
  responderKeyHash: Uint8Array;
  producedAt: Date;
  /** Outputs of encodeSingleResponse. */
  responses: readonly Uint8Array[];
  /** The request's nonce (OcspRequest.nonce), echoed in responseExtensions. */
  nonce?: Uint8Array;
  /** Certificates for the client to verify the signature with, e.g. a delegated responder's. */
  certs?: readonly Uint8Array[];
  /** Signature algorithm OID; must be the signer's. */
  signatureAlgorithm: string;
}

const SUCCESSFUL = Uint8Array.of(ENUMERATED, 0x01, 0x00);
const BASIC_OID = encodeOid(id_pkix_ocsp_basic);
const NONCE_OID = encodeOid(id_pkix_ocsp_nonce);

/** A successful OCSPResponse carrying a BasicOCSPResponse signed over the ResponseData DER. */
export async function buildOcspResponse(input: OcspResponseInput, signer: CertificateSigner): Promise<Uint8Array> {
  if (input.signatureAlgorithm !== signer.signatureAlgorithm) {
    throw new Error(
      `signature algorithm ${input.signatureAlgorithm} is not the signer's (${signer.signatureAlgorithm})`,
    );
  }
  const data = [
    tlv(CONTEXT_2, tlv(TAG.OCTET_STRING, input.responderKeyHash)),
    generalizedTime(input.producedAt),
    tlv(TAG.SEQUENCE, ...input.responses),
  ];
  if (input.nonce) data.push(tlv(CONTEXT_1, sequence(sequence(NONCE_OID, tlv(TAG.OCTET_STRING, input.nonce)))));
  const responseData = sequence(...data);
  const signature = await signer.sign(responseData);
  const basic = [
    responseData,
    signatureAlgorithmIdentifier(input.signatureAlgorithm),
    tlv(TAG.BIT_STRING, Uint8Array.of(0), signature),
  ];
  if (input.certs) basic.push(tlv(CONTEXT_0, tlv(TAG.SEQUENCE, ...input.certs)));
  return sequence(SUCCESSFUL, tlv(CONTEXT_0, sequence(BASIC_OID, tlv(TAG.OCTET_STRING, sequence(...basic)))));
}

/** malformedRequest(1), internalError(2), tryLater(3), sigRequired(5), unauthorized(6): no responseBytes. */
export function ocspErrorResponse(status: 1 | 2 | 3 | 5 | 6): Uint8Array {
  return Uint8Array.of(TAG.SEQUENCE, 0x03, ENUMERATED, 0x01, status);
}

export interface IssuerHashes {
  "SHA-1": { name: Uint8Array; key: Uint8Array };
  "SHA-256": { name: Uint8Array; key: Uint8Array };
}

/**
 * What a CertID names its issuer by: hashes of the CA's subject Name DER and of its
 * subjectPublicKey BIT STRING value (without the unused-bits byte).
 */
export async function issuerHashes(caCertificate: Uint8Array, digest: Digest): Promise<IssuerHashes> {
  const { subject, spki } = readCertificate(caCertificate);
  const key = subjectPublicKeyBits(spki);
  const [name1, key1, name256, key256] = await Promise.all([
    digest("SHA-1", subject),
    digest("SHA-1", key),
    digest("SHA-256", subject),
    digest("SHA-256", key),
  ]);
  return { "SHA-1": { name: name1, key: key1 }, "SHA-256": { name: name256, key: key256 } };
}
