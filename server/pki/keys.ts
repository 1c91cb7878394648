import type { KeyDescription } from "../ports/verifier.ts";
import { DerError, decodeOid, readChildren, readTlv, TAG } from "./der.ts";
import {
  id_Ed448,
  id_Ed25519,
  id_ecPublicKey,
  rsaEncryption,
  secp192r1,
  secp256r1,
  secp384r1,
  secp521r1,
} from "./oids.ts";

/** What kind of public key a SubjectPublicKeyInfo holds, as policy needs to see it. */
export type { KeyDescription };

const CURVES: Record<string, "P-256" | "P-384" | "P-521" | "P-192"> = {
  [secp256r1]: "P-256",
  [secp384r1]: "P-384",
  [secp521r1]: "P-521",
  [secp192r1]: "P-192",
};

export function decodeOidContent(el: { tag: number; content: Uint8Array } | undefined): string {
  if (el?.tag !== TAG.OID) throw new DerError("expected an OBJECT IDENTIFIER");
  return decodeOid(el.content);
}

/**
 * The subjectPublicKey BIT STRING's value (without the unused-bits byte): an EC point,
 * an RSAPublicKey, an Ed25519 key. Throws DerError if the SPKI is malformed.
 */
export function subjectPublicKeyBits(spki: Uint8Array): Uint8Array {
  const [, bits] = readChildren(readTlv(spki).content);
  if (!bits || bits.tag !== TAG.BIT_STRING) throw new DerError("malformed SubjectPublicKeyInfo");
  return bits.content.subarray(1);
}

/**
 * ```asn1
 * SubjectPublicKeyInfo ::= SEQUENCE {
 *   algorithm         AlgorithmIdentifier,
 *   subjectPublicKey  BIT STRING }
 * RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }   -- RFC 8017 A.1.1
 * ```
 */
export function describeKey(spki: Uint8Array): KeyDescription {
  const outer = readTlv(spki);
  if (outer.tag !== TAG.SEQUENCE) throw new DerError("SubjectPublicKeyInfo is not a SEQUENCE");
  const [algorithm, publicKey] = readChildren(outer.content);
  if (!algorithm || !publicKey || publicKey.tag !== TAG.BIT_STRING)
    throw new DerError("malformed SubjectPublicKeyInfo");
  const algParts = readChildren(algorithm.content);
  const oid = decodeOidContent(algParts[0]);
  if (oid === id_ecPublicKey) {
    const params = algParts[1];
    if (!params || params.tag !== TAG.OID)
      return { kind: "EC", curve: "unknown curve explicit", label: "EC (explicit parameters)" };
    const curveOid = decodeOidContent(params);
    const curve = CURVES[curveOid] ?? (`unknown curve ${curveOid}` as const);
    return { kind: "EC", curve, label: CURVES[curveOid] ?? `EC ${curveOid}` };
  }
  if (oid === rsaEncryption) {
    const rsaKey = readTlv(publicKey.content, 1);
    const [modulus, exponent] = readChildren(rsaKey.content);
    if (!modulus || !exponent || modulus.tag !== TAG.INTEGER || exponent.tag !== TAG.INTEGER) {
      throw new DerError("malformed RSAPublicKey");
    }
    let m = modulus.content;
    while (m.length > 0 && m[0] === 0) m = m.subarray(1);
    const bits = m.length === 0 ? 0 : (m.length - 1) * 8 + (32 - Math.clz32(m[0] as number));
    let e = 0;
    for (const b of exponent.content.subarray(0, 6)) e = e * 256 + b;
    if (exponent.content.length > 6) e = Number.MAX_SAFE_INTEGER;
    return { kind: "RSA", bits, exponent: e, label: `RSA-${bits}` };
  }
  if (oid === id_Ed25519) return { kind: "Ed25519", label: "Ed25519" };
  if (oid === id_Ed448) return { kind: "unknown", oid, label: "Ed448" };
  return { kind: "unknown", oid, label: `key algorithm ${oid}` };
}
