import { DerError, readChildren, readTlv, TAG, type Tlv, toHex } from "./der.ts";
import { decodeOidContent, describeKey, type KeyDescription } from "./keys.ts";
import { id_at_commonName, id_ce_subjectAltName, pkcs_9_at_extensionRequest } from "./oids.ts";
import { SignatureAlgorithmError, type SignatureVerifier, verifySignature } from "./verify.ts";

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
 * Read with the strict DER reader alone, and only as far as policy needs: the signed
 * bytes exactly as the client signed them, the key, the subject attributes and the
 * extensions asked for (with the subjectAltName names). test/server/pki.test.ts
 * compares it with @peculiar/asn1-csr.
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
    const signatureAlgorithm = decodeOidContent(algParts[0]);
    if (sig.content[0] !== 0) throw new CsrError("signature BIT STRING has unused bits");

    const subject = readName(infoParts[1]);
    const commonNames = subject.filter((a) => a.type === id_at_commonName);
    if (commonNames.length > 1) throw new CsrError("subject has more than one commonName");

    const requestedNames: RequestedName[] = [];
    const requestedExtensions: string[] = [];
    const attributes = infoParts[3];
    if (attributes && attributes.tag !== 0xa0) throw new CsrError("attributes are not [0]");
    if (infoParts.length > 4) throw new CsrError("unexpected elements after the attributes");
    for (const attr of attributes ? readChildren(attributes.content) : []) {
      const [type, values] = readChildren(expect(attr, TAG.SEQUENCE).content);
      if (decodeOidContent(expect(type, TAG.OID)) !== pkcs_9_at_extensionRequest) continue;
      for (const value of readChildren(expect(values, TAG.SET).content)) {
        for (const ext of readChildren(expect(value, TAG.SEQUENCE).content)) {
          const parts = readChildren(expect(ext, TAG.SEQUENCE).content);
          const extnID = decodeOidContent(expect(parts[0], TAG.OID));
          const extnValue = expect(parts[parts.length - 1], TAG.OCTET_STRING);
          requestedExtensions.push(extnID);
          if (extnID !== id_ce_subjectAltName) continue;
          for (const n of readChildren(expect(readTlv(extnValue.content), TAG.SEQUENCE).content)) {
            requestedNames.push(describeGeneralName(n));
          }
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

function expect(el: Tlv | undefined, tag: number): Tlv {
  if (!el || el.tag !== tag) throw new CsrError("malformed CertificationRequestInfo");
  return el;
}

const latin1 = new TextDecoder("latin1");
const utf8 = new TextDecoder("utf-8");
const utf16be = new TextDecoder("utf-16be");

/** DirectoryString and friends as text; anything else as RFC 4514 `#hex`. */
function directoryString(el: Tlv): string {
  switch (el.tag) {
    case TAG.UTF8_STRING:
      return utf8.decode(el.content);
    case TAG.PRINTABLE_STRING:
    case 0x12: // NumericString
    case 0x14: // TeletexString
    case 0x16: // IA5String
    case 0x1a: // VisibleString
      return latin1.decode(el.content);
    case 0x1e: // BMPString
      return utf16be.decode(el.content);
    default:
      return `#${toHex(el.raw)}`;
  }
}

/** Name ::= SEQUENCE OF SET OF AttributeTypeAndValue (RFC 5280 §4.1.2.4), flattened. */
function readName(name: Tlv | undefined): SubjectAttribute[] {
  const out: SubjectAttribute[] = [];
  for (const rdn of readChildren(expect(name, TAG.SEQUENCE).content)) {
    for (const atv of readChildren(expect(rdn, TAG.SET).content)) {
      const [type, value, ...rest] = readChildren(expect(atv, TAG.SEQUENCE).content);
      if (!value || rest.length > 0) throw new CsrError("malformed subject attribute");
      out.push({ type: decodeOidContent(expect(type, TAG.OID)), value: directoryString(value) });
    }
  }
  return out;
}

function ipText(octets: Uint8Array): string {
  if (octets.length === 4) return Array.from(octets).join(".");
  if (octets.length === 16) {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2)
      groups.push((((octets[i] as number) << 8) | (octets[i + 1] as number)).toString(16));
    return groups.join(":");
  }
  return `#${toHex(octets)}`;
}

/** GeneralName (RFC 5280 §4.2.1.6): the context tags [1] rfc822Name, [2] dNSName, [6] URI, [7] iPAddress. */
function describeGeneralName(n: Tlv): RequestedName {
  switch (n.tag) {
    case 0x86:
      return { type: "uri", value: latin1.decode(n.content) };
    case 0x82:
      return { type: "dns", value: latin1.decode(n.content) };
    case 0x87:
      return { type: "ip", value: ipText(n.content) };
    case 0x81:
      return { type: "email", value: latin1.decode(n.content) };
    default:
      return { type: "other", value: "a name of an unsupported type" };
  }
}

/**
 * Proof of possession: the CSR's signature under its own public key (RFC 2986 §3).
 * Returns false for a signature that does not verify; throws CsrError for a
 * signature algorithm we do not accept or that does not match the key.
 */
export async function verifyCsrSignature(csr: ParsedCsr, verifier: SignatureVerifier): Promise<boolean> {
  try {
    return await verifySignature(
      verifier,
      { spki: csr.spki, signatureAlgorithm: csr.signatureAlgorithm, signature: csr.signature, data: csr.info },
      csr.key,
    );
  } catch (err) {
    if (err instanceof SignatureAlgorithmError) throw new CsrError(`CSR ${err.message}`);
    throw err;
  }
}
