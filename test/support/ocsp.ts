import * as pkijs from "pkijs";
import { encodeOid, fromHex, sequence, TAG, tlv, unsignedInteger } from "../../server/pki/der.ts";
import { issuerHashes } from "../../server/pki/ocsp.ts";
import { id_sha1, id_sha256 } from "../../server/pki/oids.ts";
import type { Harness } from "./fixtures.ts";

/** How a CertID spells itself: the hash, whether its NULL parameters are present, the serial's INTEGER content. */
export interface CertIdSpelling {
  hash?: "SHA-1" | "SHA-256";
  params?: "null" | "absent";
  /** The serialNumber INTEGER's content octets as sent (default: the minimal encoding of serialHex). */
  serialContent?: Uint8Array;
}

/** A one-CertID OCSP request for the P-256 issuing CA, built by hand (SHA-1 CertID, optional nonce). */
export async function ocspRequest(
  h: Harness,
  serialHex: string,
  nonce?: Uint8Array,
  spelling: CertIdSpelling = {},
): Promise<Uint8Array> {
  const hashes = await issuerHashes(h.ca.issuing.certificate, h.deps.digest);
  const hash = spelling.hash ?? "SHA-1";
  const oid = encodeOid(hash === "SHA-1" ? id_sha1 : id_sha256);
  const certId = sequence(
    spelling.params === "absent" ? sequence(oid) : sequence(oid, Uint8Array.of(TAG.NULL, 0)),
    tlv(TAG.OCTET_STRING, hashes[hash].name),
    tlv(TAG.OCTET_STRING, hashes[hash].key),
    spelling.serialContent ? tlv(TAG.INTEGER, spelling.serialContent) : unsignedInteger(fromHex(serialHex)),
  );
  const extensions = nonce
    ? [
        tlv(
          0xa2,
          sequence(sequence(encodeOid("1.3.6.1.5.5.7.48.1.2"), tlv(TAG.OCTET_STRING, tlv(TAG.OCTET_STRING, nonce)))),
        ),
      ]
    : [];
  return sequence(sequence(sequence(sequence(certId)), ...extensions));
}

/** The responder's only SingleResponse for a serial, read with pkijs; its certStatus tag: 0 good, 1 revoked, 2 unknown. */
export async function ocspStatus(h: Harness, serialHex: string, nonce?: Uint8Array) {
  const { der } = await h.responders.ocsp(await ocspRequest(h, serialHex, nonce));
  const outer = pkijs.OCSPResponse.fromBER(der as Uint8Array<ArrayBuffer>);
  const basic = pkijs.BasicOCSPResponse.fromBER(
    outer.responseBytes?.response.valueBlock.valueHexView as Uint8Array<ArrayBuffer>,
  );
  const single = basic.tbsResponseData.responses[0];
  return { tag: single?.certStatus.idBlock.tagNumber, single };
}
