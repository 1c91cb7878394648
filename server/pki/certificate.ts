import { AsnConvert, OctetString } from "@peculiar/asn1-schema";
import {
  AccessDescription,
  AlgorithmIdentifier,
  AttributeTypeAndValue,
  AttributeValue,
  AuthorityInfoAccessSyntax,
  AuthorityKeyIdentifier,
  BasicConstraints,
  Certificate,
  CRLDistributionPoints,
  DistributionPoint,
  DistributionPointName,
  ExtendedKeyUsage,
  Extension,
  Extensions,
  GeneralName,
  KeyIdentifier,
  KeyUsage,
  KeyUsageFlags,
  Name,
  RelativeDistinguishedName,
  SubjectAlternativeName,
  SubjectKeyIdentifier,
  SubjectPublicKeyInfo,
  TBSCertificate,
  Validity,
  Version,
} from "@peculiar/asn1-x509";
import type { Digest } from "../ports/digest.ts";
import type { Signer } from "../ports/signer.ts";
import { DerError, readChildren, readTlv } from "./der.ts";
import { subjectPublicKeyBits } from "./keys.ts";
import {
  id_ad_ocsp,
  id_ce_authorityKeyIdentifier,
  id_ce_basicConstraints,
  id_ce_cRLDistributionPoints,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
  id_ce_subjectAltName,
  id_ce_subjectKeyIdentifier,
  id_pe_authorityInfoAccess,
  RSA_PKCS1_SIGNATURES,
} from "./oids.ts";

/** Something that signs with a CA key: the Signer port. */
export type CertificateSigner = Signer;

export interface NameAttribute {
  type: string;
  value: string;
}

export function encodeName(attributes: readonly NameAttribute[]): Uint8Array {
  const name = new Name(
    attributes.map(
      (a) =>
        new RelativeDistinguishedName([
          new AttributeTypeAndValue({ type: a.type, value: new AttributeValue({ utf8String: a.value }) }),
        ]),
    ),
  );
  return new Uint8Array(AsnConvert.serialize(name));
}

export interface CertificateFields {
  /** Positive serial magnitude, big-endian, no sign byte. */
  serial: Uint8Array;
  issuer: Uint8Array;
  subject: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  spki: Uint8Array;
  extensions: Extension[];
}

/**
 * ```asn1
 * Certificate ::= SEQUENCE {                           -- RFC 5280 §4.1
 *   tbsCertificate       TBSCertificate,
 *   signatureAlgorithm   AlgorithmIdentifier,
 *   signatureValue       BIT STRING }
 * ```
 * The reference (library) way of producing a certificate.
 */
export async function buildCertificate(fields: CertificateFields, signer: CertificateSigner): Promise<Uint8Array> {
  const signatureAlgorithm = new AlgorithmIdentifier({
    algorithm: signer.signatureAlgorithm,
    // RFC 4055 §5: NULL parameters for RSA PKCS #1 v1.5; none for ECDSA and EdDSA.
    ...(RSA_PKCS1_SIGNATURES.has(signer.signatureAlgorithm) ? { parameters: null } : {}),
  });
  const serial = fields.serial;
  const serialWithSign = (serial[0] ?? 0) & 0x80 ? Uint8Array.of(0, ...serial) : serial;
  const tbs = new TBSCertificate({
    version: Version.v3,
    serialNumber: bufferOf(serialWithSign),
    signature: signatureAlgorithm,
    issuer: AsnConvert.parse(bufferOf(fields.issuer), Name),
    validity: new Validity({ notBefore: fields.notBefore, notAfter: fields.notAfter }),
    subject: AsnConvert.parse(bufferOf(fields.subject), Name),
    subjectPublicKeyInfo: AsnConvert.parse(bufferOf(fields.spki), SubjectPublicKeyInfo),
    extensions: new Extensions(fields.extensions),
  });
  const tbsDer = new Uint8Array(AsnConvert.serialize(tbs));
  const signature = await signer.sign(tbsDer);
  const cert = new Certificate({
    tbsCertificate: tbs,
    signatureAlgorithm,
    signatureValue: bufferOf(signature),
  });
  return new Uint8Array(AsnConvert.serialize(cert));
}

/** An ArrayBuffer holding exactly these bytes (a pooled view's .buffer is the whole pool). */
function bufferOf(bytes: Uint8Array): ArrayBuffer {
  return Uint8Array.prototype.slice.call(bytes).buffer as ArrayBuffer;
}

function extension(extnID: string, critical: boolean, value: unknown): Extension {
  return new Extension({ extnID, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });
}

/** RFC 5280 §4.2.1.9; critical in every certificate we issue. */
export function basicConstraints(ca: boolean, pathLenConstraint?: number): Extension {
  return extension(id_ce_basicConstraints, true, new BasicConstraints({ cA: ca, pathLenConstraint }));
}

export type KeyUsageName = keyof typeof KeyUsageFlags;

/** RFC 5280 §4.2.1.3; critical. */
export function keyUsage(usages: readonly KeyUsageName[]): Extension {
  let flags = 0;
  for (const u of usages) flags |= KeyUsageFlags[u];
  return extension(id_ce_keyUsage, true, new KeyUsage(flags));
}

export function extendedKeyUsage(purposes: readonly string[]): Extension {
  return extension(id_ce_extKeyUsage, false, new ExtendedKeyUsage([...purposes]));
}

export function subjectKeyIdentifier(keyId: Uint8Array): Extension {
  return extension(id_ce_subjectKeyIdentifier, false, new SubjectKeyIdentifier(bufferOf(keyId)));
}

export function authorityKeyIdentifier(keyId: Uint8Array): Extension {
  return extension(
    id_ce_authorityKeyIdentifier,
    false,
    new AuthorityKeyIdentifier({ keyIdentifier: new KeyIdentifier(bufferOf(keyId)) }),
  );
}

export type SanEntry = { type: "uri"; value: string } | { type: "dns"; value: string } | { type: "ip"; value: string };

/**
 * RFC 5280 §4.2.1.6: non-critical because every certificate we issue has a non-empty
 * subject.
 */
export function subjectAltName(names: readonly SanEntry[]): Extension {
  return extension(
    id_ce_subjectAltName,
    false,
    new SubjectAlternativeName(
      names.map((n) =>
        n.type === "uri"
          ? new GeneralName({ uniformResourceIdentifier: n.value })
          : n.type === "dns"
            ? new GeneralName({ dNSName: n.value })
            : new GeneralName({ iPAddress: n.value }),
      ),
    ),
  );
}

export function crlDistributionPoint(url: string): Extension {
  return extension(
    id_ce_cRLDistributionPoints,
    false,
    new CRLDistributionPoints([
      new DistributionPoint({
        distributionPoint: new DistributionPointName({
          fullName: [new GeneralName({ uniformResourceIdentifier: url })],
        }),
      }),
    ]),
  );
}

export function ocspAccess(url: string): Extension {
  return extension(
    id_pe_authorityInfoAccess,
    false,
    new AuthorityInfoAccessSyntax([
      new AccessDescription({
        accessMethod: id_ad_ocsp,
        accessLocation: new GeneralName({ uniformResourceIdentifier: url }),
      }),
    ]),
  );
}

/**
 * The revocation URLs a certificate names: the fullName URIs of its CRL distribution
 * points (RFC 5280 §4.2.1.13) and the id-ad-ocsp locations of its authority information
 * access (§4.2.2.1). Throws DerError when `der` is not a certificate.
 */
export function readRevocationUrls(der: Uint8Array): { crl: string[]; ocsp: string[] } {
  let cert: Certificate;
  try {
    cert = AsnConvert.parse(bufferOf(der), Certificate);
  } catch (e) {
    throw new DerError(`not a DER certificate: ${e instanceof Error ? e.message : String(e)}`);
  }
  const out = { crl: [] as string[], ocsp: [] as string[] };
  for (const ext of cert.tbsCertificate.extensions ?? []) {
    if (ext.extnID === id_ce_cRLDistributionPoints) {
      for (const dp of AsnConvert.parse(ext.extnValue.buffer, CRLDistributionPoints)) {
        for (const name of dp.distributionPoint?.fullName ?? []) {
          if (name.uniformResourceIdentifier) out.crl.push(name.uniformResourceIdentifier);
        }
      }
    } else if (ext.extnID === id_pe_authorityInfoAccess) {
      for (const ad of AsnConvert.parse(ext.extnValue.buffer, AuthorityInfoAccessSyntax)) {
        const uri = ad.accessLocation.uniformResourceIdentifier;
        if (ad.accessMethod === id_ad_ocsp && uri) out.ocsp.push(uri);
      }
    }
  }
  return out;
}

/**
 * Key identifier by RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT
 * STRING value (without tag, length and unused-bits byte) — what OpenSSL computes too.
 */
export async function keyIdentifier(spki: Uint8Array, digest: Digest): Promise<Uint8Array> {
  return digest("SHA-1", subjectPublicKeyBits(spki));
}

/** The parts of a certificate that the authority reads back. */
export interface CertificateSummary {
  der: Uint8Array;
  tbs: Uint8Array;
  serialHex: string;
  issuer: Uint8Array;
  subject: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  spki: Uint8Array;
  signatureAlgorithm: string;
  signature: Uint8Array;
}

/** Throws DerError when `der` is not a certificate. */
export function readCertificate(der: Uint8Array): CertificateSummary {
  let cert: Certificate;
  try {
    cert = AsnConvert.parse(bufferOf(der), Certificate);
  } catch (e) {
    // asn1js throws whatever it meets on damaged input, RangeError from a DataView included.
    throw new DerError(`not a DER certificate: ${e instanceof Error ? e.message : String(e)}`);
  }
  const tbs = cert.tbsCertificate;
  const outer = readTlv(der);
  const [tbsEl] = readChildren(outer.content);
  const tbsChildren = readChildren((tbsEl as { content: Uint8Array }).content);
  // version [0] is present in every v3 certificate: serial, sig, issuer, validity, subject, spki follow.
  const offset = tbsChildren[0]?.tag === 0xa0 ? 1 : 0;
  const pick = (i: number) => (tbsChildren[offset + i] as { raw: Uint8Array }).raw;
  let serial = new Uint8Array(tbs.serialNumber);
  while (serial.length > 1 && serial[0] === 0) serial = serial.subarray(1);
  return {
    der,
    tbs: (tbsEl as { raw: Uint8Array }).raw,
    serialHex: Array.from(serial, (b) => b.toString(16).padStart(2, "0")).join(""),
    issuer: pick(2),
    subject: pick(4),
    notBefore: tbs.validity.notBefore.getTime(),
    notAfter: tbs.validity.notAfter.getTime(),
    spki: pick(5),
    signatureAlgorithm: cert.signatureAlgorithm.algorithm,
    signature: new Uint8Array(cert.signatureValue),
  };
}
