import { CertificationRequestInfo } from "@peculiar/asn1-csr";
import { AsnConvert } from "@peculiar/asn1-schema";
import { Extensions, GeneralNames, type Name } from "@peculiar/asn1-x509";
import { DerError, readChildren, readTlv, TAG } from "./der.ts";
import { decodeOidContent, describeKey, type KeyDescription } from "./keys.ts";
import { id_at_commonName, id_ce_subjectAltName, pkcs_9_at_extensionRequest } from "./oids.ts";
import { SignatureAlgorithmError, verifySignature } from "./verify.ts";

export type RequestedName =
  | { type: "uri"; value: string }
  | { type: "dns"; value: string }
  | { type: "ip"; value: string }
  | { type: "email"; value: string }
  | { type: "other"; value: string };

export interface SubjectAttribute {
  type: string;
  value: string;
}

export interface ParsedCsr {
  der: Uint8Array;
  /** certificationRequestInfo as signed. */
  info: Uint8Array;
  signatureAlgorithm: string;
  signature: Uint8Array;
  /** SubjectPublicKeyInfo, byte for byte as in the request. */
  spki: Uint8Array;
  key: KeyDescription;
  subject: SubjectAttribute[];
  commonName: string | undefined;
  /** Names asked for in the extensionRequest's subjectAltName. */
  requestedNames: RequestedName[];
  /** OIDs of every extension asked for. */
  requestedExtensions: string[];
}

export class CsrError extends Error {
  override name = "CsrError";
}

/**
 * ```asn1
 * CertificationRequest ::= SEQUENCE {                 -- RFC 2986 §4
 *   certificationRequestInfo CertificationRequestInfo,
 *   signatureAlgorithm AlgorithmIdentifier,
 *   signature          BIT STRING }
 * CertificationRequestInfo ::= SEQUENCE {
 *   version       INTEGER { v1(0) },
 *   subject       Name,
 *   subjectPKInfo SubjectPublicKeyInfo,
 *   attributes    [0] Attributes }
 * ```
 * The outer layers are split with the strict DER reader (so the signed bytes are
 * exactly what the client signed); the inner structure is read with asn1-csr.
 */
export function parseCsr(der: Uint8Array): ParsedCsr {
  try {
    const outer = readTlv(der);
    if (outer.tag !== TAG.SEQUENCE || outer.end !== der.length) throw new CsrError("not a DER SEQUENCE");
    const [info, sigAlg, sig, ...rest] = readChildren(outer.content);
    if (!info || !sigAlg || !sig || rest.length > 0 || sig.tag !== TAG.BIT_STRING || info.tag !== TAG.SEQUENCE) {
      throw new CsrError("not a CertificationRequest");
    }
    const infoParts = readChildren(info.content);
    const version = infoParts[0];
    const spkiEl = infoParts[2];
    if (!version || version.tag !== TAG.INTEGER || version.content.length !== 1 || version.content[0] !== 0) {
      throw new CsrError("unsupported CertificationRequestInfo version");
    }
    if (!spkiEl || spkiEl.tag !== TAG.SEQUENCE) throw new CsrError("missing subjectPKInfo");
    const algParts = readChildren(sigAlg.content);
    const signatureAlgorithm = decodeOidContent(algParts[0] as { tag: number; content: Uint8Array });
    if (sig.content[0] !== 0) throw new CsrError("signature BIT STRING has unused bits");

    const parsedInfo = AsnConvert.parse(info.raw, CertificationRequestInfo);
    const subject = flattenName(parsedInfo.subject);
    const commonNames = subject.filter((a) => a.type === id_at_commonName);
    if (commonNames.length > 1) throw new CsrError("subject has more than one commonName");

    const requestedNames: RequestedName[] = [];
    const requestedExtensions: string[] = [];
    for (const attr of parsedInfo.attributes ?? []) {
      if (attr.type !== pkcs_9_at_extensionRequest) continue;
      for (const value of attr.values) {
        const exts = AsnConvert.parse(value, Extensions);
        for (const ext of exts) {
          requestedExtensions.push(ext.extnID);
          if (ext.extnID !== id_ce_subjectAltName) continue;
          const names = AsnConvert.parse(ext.extnValue.buffer, GeneralNames);
          for (const n of names) requestedNames.push(describeGeneralName(n));
        }
      }
    }
    return {
      der,
      info: info.raw,
      signatureAlgorithm,
      signature: sig.content.subarray(1),
      spki: spkiEl.raw,
      key: describeKey(spkiEl.raw),
      subject,
      commonName: commonNames[0]?.value,
      requestedNames,
      requestedExtensions,
    };
  } catch (err) {
    if (err instanceof CsrError) throw err;
    if (err instanceof DerError) throw new CsrError(err.message);
    throw new CsrError("not a DER PKCS#10 certification request");
  }
}

function flattenName(name: Name): SubjectAttribute[] {
  const out: SubjectAttribute[] = [];
  for (const rdn of name) for (const atv of rdn) out.push({ type: atv.type, value: atv.value.toString() });
  return out;
}

function describeGeneralName(n: GeneralNames[number]): RequestedName {
  if (n.uniformResourceIdentifier !== undefined) return { type: "uri", value: n.uniformResourceIdentifier };
  if (n.dNSName !== undefined) return { type: "dns", value: n.dNSName };
  if (n.iPAddress !== undefined) return { type: "ip", value: n.iPAddress };
  if (n.rfc822Name !== undefined) return { type: "email", value: n.rfc822Name };
  return { type: "other", value: "a name of an unsupported type" };
}

/**
 * Proof of possession: the CSR's signature under its own public key (RFC 2986 §3).
 * Returns false for a signature that does not verify; throws CsrError for a
 * signature algorithm we do not accept or that does not match the key.
 */
export async function verifyCsrSignature(csr: ParsedCsr, subtle: SubtleCrypto): Promise<boolean> {
  try {
    return await verifySignature(
      subtle,
      { spki: csr.spki, signatureAlgorithm: csr.signatureAlgorithm, signature: csr.signature, data: csr.info },
      csr.key,
    );
  } catch (err) {
    if (err instanceof SignatureAlgorithmError) throw new CsrError(`CSR ${err.message}`);
    throw err;
  }
}
