import { encodeOid, sequence, setOf, TAG, tlv } from "./der.ts";
import { id_data, id_signedData } from "./oids.ts";

/**
 * A "certs-only" CMS SignedData (RFC 7030 §4.1.3, §4.2.3; RFC 5652 §5.1): no signers,
 * no content, just the certificates.
 *
 * ```asn1
 * ContentInfo ::= SEQUENCE {
 *   contentType ContentType,                 -- id-signedData
 *   content [0] EXPLICIT ANY DEFINED BY contentType }
 * SignedData ::= SEQUENCE {
 *   version CMSVersion,                      -- 1
 *   digestAlgorithms DigestAlgorithmIdentifiers,   -- empty SET
 *   encapContentInfo EncapsulatedContentInfo,      -- id-data, no eContent
 *   certificates [0] IMPLICIT CertificateSet OPTIONAL,
 *   crls [1] IMPLICIT RevocationInfoChoices OPTIONAL,
 *   signerInfos SignerInfos }                -- empty SET
 * ```
 */
const VERSION_1 = tlv(TAG.INTEGER, Uint8Array.of(1));
const EMPTY_SET = tlv(TAG.SET, new Uint8Array(0));
const DATA_CONTENT = sequence(encodeOid(id_data));
const SIGNED_DATA_OID = encodeOid(id_signedData);

export function certsOnly(certificates: readonly Uint8Array[]): Uint8Array {
  const signedData = sequence(
    VERSION_1,
    EMPTY_SET,
    DATA_CONTENT,
    // [0] IMPLICIT SET OF: same DER ordering rule as SET OF, constructed context tag 0.
    retag(setOf(certificates), 0xa0),
    EMPTY_SET,
  );
  return sequence(SIGNED_DATA_OID, tlv(0xa0, signedData));
}

function retag(element: Uint8Array, tag: number): Uint8Array {
  const out = element.slice();
  out[0] = tag;
  return out;
}
