/**
 * The fast issuance path: a certificate built directly as DER from a template.
 *
 * Everything that is the same for every certificate of one CA, profile and key kind
 * (version, signature algorithm, issuer, basicConstraints, keyUsage, extKeyUsage,
 * authorityKeyIdentifier, CRL distribution point, OCSP access) is encoded once, with
 * the library helpers of certificate.ts, when the template is made. Per certificate
 * only the variable parts are encoded by hand and spliced in: serial, validity,
 * subject, subjectPublicKeyInfo, subjectKeyIdentifier and subjectAltName (the SPIFFE
 * URI, then any DNS names and IP addresses an operator declared for the device).
 *
 * `buildCertificate` in certificate.ts stays the reference: for the same inputs both
 * produce the same bytes (test/server/certificate-template.test.ts).
 */
import { AsnConvert } from "@peculiar/asn1-schema";
import type { Extension } from "@peculiar/asn1-x509";
import type { CertificateSigner } from "./certificate.ts";
import {
  concat,
  derTime,
  encodeLength,
  encodeOid,
  GENERALIZED_TIME,
  sequence,
  signatureAlgorithmIdentifier,
  TAG,
  tlv,
  UTC_TIME,
} from "./der.ts";
import { id_at_commonName, id_ce_subjectAltName, id_ce_subjectKeyIdentifier } from "./oids.ts";

export interface TemplateFixed {
  issuer: Uint8Array;
  signatureAlgorithm: string;
  /** Extensions that come before subjectKeyIdentifier, in order. */
  before: Extension[];
  /** Between subjectKeyIdentifier and subjectAltName. */
  between: Extension[];
  /** After subjectAltName. */
  after: Extension[];
}

export interface TemplateVariables {
  /** Positive serial magnitude, big-endian, no sign byte. */
  serial: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  /** The subject's commonName (UTF8String). */
  commonName: string;
  spki: Uint8Array;
  subjectKeyId: Uint8Array;
  /** uniformResourceIdentifier entries of subjectAltName (IA5String), first. */
  uris: readonly string[];
  /** dNSName entries (IA5String), after the URIs: names an operator declared. */
  dns?: readonly string[];
  /** iPAddress entries (4 or 16 octets), last. */
  ips?: readonly Uint8Array[];
}

const VERSION_V3 = Uint8Array.of(0xa0, 0x03, 0x02, 0x01, 0x02);
const CN_OID = encodeOid(id_at_commonName);
const SKI_OID = encodeOid(id_ce_subjectKeyIdentifier);
const SAN_OID = encodeOid(id_ce_subjectAltName);
const utf8 = new TextEncoder();

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; whole seconds, Z. */
export function encodeTime(date: Date): Uint8Array {
  const year = date.getUTCFullYear();
  return derTime(year >= 1950 && year < 2050 ? UTC_TIME : GENERALIZED_TIME, date);
}

/** IA5String / time content: ASCII only (device ids and trust domains are ASCII by policy). */
function ascii(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f) throw new Error("IA5String value is not ASCII");
    out[i] = c;
  }
  return out;
}

function serialInteger(magnitude: Uint8Array): Uint8Array {
  return (magnitude[0] ?? 0) & 0x80
    ? concat([Uint8Array.of(TAG.INTEGER), encodeLength(magnitude.length + 1), Uint8Array.of(0), magnitude])
    : tlv(TAG.INTEGER, magnitude);
}

export class CertificateTemplate {
  private readonly head: Uint8Array;
  private readonly issuer: Uint8Array;
  private readonly algorithm: Uint8Array;
  private readonly before: Uint8Array;
  private readonly between: Uint8Array;
  private readonly after: Uint8Array;

  constructor(fixed: TemplateFixed) {
    const encode = (exts: Extension[]) => concat(exts.map((e) => new Uint8Array(AsnConvert.serialize(e))));
    this.algorithm = signatureAlgorithmIdentifier(fixed.signatureAlgorithm);
    this.head = VERSION_V3;
    this.issuer = fixed.issuer;
    this.before = encode(fixed.before);
    this.between = encode(fixed.between);
    this.after = encode(fixed.after);
  }

  /** The TBSCertificate DER for one certificate (RFC 5280 §4.1). */
  tbs(v: TemplateVariables): Uint8Array {
    const subject = sequence(tlv(TAG.SET, sequence(CN_OID, tlv(TAG.UTF8_STRING, utf8.encode(v.commonName)))));
    const ski = sequence(SKI_OID, tlv(TAG.OCTET_STRING, tlv(TAG.OCTET_STRING, v.subjectKeyId)));
    const names = v.uris.map((u) => tlv(0x86, ascii(u)));
    if (v.dns) for (const d of v.dns) names.push(tlv(0x82, ascii(d)));
    if (v.ips) for (const ip of v.ips) names.push(tlv(0x87, ip));
    const san = sequence(SAN_OID, tlv(TAG.OCTET_STRING, sequence(...names)));
    const extensions = tlv(0xa3, sequence(this.before, ski, this.between, san, this.after));
    return sequence(
      this.head,
      serialInteger(v.serial),
      this.algorithm,
      this.issuer,
      sequence(encodeTime(v.notBefore), encodeTime(v.notAfter)),
      subject,
      v.spki,
      extensions,
    );
  }

  /** Signs the TBSCertificate and wraps it: Certificate ::= SEQUENCE { tbs, algorithm, signature }. */
  async build(v: TemplateVariables, signer: CertificateSigner): Promise<Uint8Array> {
    const tbs = this.tbs(v);
    const signature = await signer.sign(tbs);
    return sequence(tbs, this.algorithm, tlv(TAG.BIT_STRING, Uint8Array.of(0), signature));
  }
}
