import { encodeOid, sequence, setOf, unsignedInteger } from "./der.ts";
import {
  ecdsa_with_SHA256,
  ecdsa_with_SHA384,
  id_Ed25519,
  id_ecPublicKey,
  rsaEncryption,
  secp256r1,
  secp384r1,
  sha256WithRSAEncryption,
} from "./oids.ts";

export type KeyType = "P-256" | "P-384" | "Ed25519" | "RSA";

/**
 * The CSR attributes response (RFC 7030 §4.5.2):
 *
 * ```asn1
 * CsrAttrs ::= SEQUENCE SIZE (0..MAX) OF AttrOrOID
 * AttrOrOID ::= CHOICE { oid OBJECT IDENTIFIER, attribute Attribute }
 * Attribute ::= SEQUENCE { type OBJECT IDENTIFIER, values SET SIZE(1..MAX) OF ANY }
 * ```
 *
 * The preferred key type comes first, as in the RFC's example: an EC key is asked for
 * with the id-ecPublicKey attribute carrying the curve; an RSA key with the
 * rsaEncryption attribute carrying the smallest modulus accepted (RFC 9908 §3.4 asks
 * for a key size this way); Ed25519 as its bare algorithm OID. The signature
 * algorithm for the preferred key follows as a bare OID (Ed25519 names its own).
 */
export function encodeCsrAttrs(keyTypes: readonly KeyType[], rsaMinBits = 2048): Uint8Array {
  const items: Uint8Array[] = [];
  for (const k of keyTypes) {
    if (k === "P-256") items.push(sequence(encodeOid(id_ecPublicKey), setOf([encodeOid(secp256r1)])));
    if (k === "P-384") items.push(sequence(encodeOid(id_ecPublicKey), setOf([encodeOid(secp384r1)])));
    if (k === "Ed25519") items.push(encodeOid(id_Ed25519));
    if (k === "RSA") items.push(sequence(encodeOid(rsaEncryption), setOf([rsaBits(rsaMinBits)])));
  }
  const first = keyTypes[0];
  if (first === "P-256") items.push(encodeOid(ecdsa_with_SHA256));
  if (first === "P-384") items.push(encodeOid(ecdsa_with_SHA384));
  if (first === "RSA") items.push(encodeOid(sha256WithRSAEncryption));
  return sequence(...items);
}

function rsaBits(bits: number): Uint8Array {
  return unsignedInteger(new Uint8Array([(bits >> 8) & 0xff, bits & 0xff]));
}
