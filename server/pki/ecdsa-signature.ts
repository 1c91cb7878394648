import { concat, DerError, readChildren, readTlv, sequence, TAG, unsignedInteger } from "./der.ts";

/**
 * WebCrypto produces and consumes ECDSA signatures as r || s (IEEE P1363); X.509 and
 * PKCS#10 carry them as
 *
 * ```asn1
 * ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }   -- RFC 5480 §2.2.3 / RFC 3279
 * ```
 */
export function p1363ToDer(raw: Uint8Array): Uint8Array {
  const half = raw.length / 2;
  return sequence(unsignedInteger(raw.subarray(0, half)), unsignedInteger(raw.subarray(half)));
}

export function derToP1363(der: Uint8Array, coordinateLength: number): Uint8Array {
  const outer = readTlv(der);
  if (outer.tag !== TAG.SEQUENCE || outer.end !== der.length) throw new DerError("ECDSA signature is not a SEQUENCE");
  const parts = readChildren(outer.content);
  if (parts.length !== 2 || parts.some((p) => p.tag !== TAG.INTEGER)) {
    throw new DerError("ECDSA signature is not two INTEGERs");
  }
  const fixed = parts.map((p) => {
    let v = p.content;
    while (v.length > 1 && v[0] === 0) v = v.subarray(1);
    if (v.length > coordinateLength) throw new DerError("ECDSA signature value too large");
    const padded = new Uint8Array(coordinateLength);
    padded.set(v, coordinateLength - v.length);
    return padded;
  });
  return concat(fixed);
}
