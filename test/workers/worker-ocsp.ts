import { env, SELF } from "cloudflare:test";
import * as pkijs from "pkijs";
import { encodeOid, fromHex, sequence, TAG, tlv, unsignedInteger } from "../../server/pki/der.ts";
import { issuerHashes } from "../../server/pki/ocsp.ts";
import { id_sha1 } from "../../server/pki/oids.ts";
import { pemCertificates } from "../../server/pki/pem.ts";
import { webCryptoDigest } from "../../server/ports/digest.ts";

/** The Worker's base URL in these tests. */
export const BASE = "https://edgeid.workers.example";

/** certStatus tag of a one-CertID OCSP request to the Worker over POST: 0 good, 1 revoked, 2 unknown. */
export async function ocspStatus(serialHex: string): Promise<number | undefined> {
  const [issuing] = pemCertificates(env.CA_CHAIN);
  const hashes = await issuerHashes(issuing as Uint8Array, webCryptoDigest(crypto.subtle));
  const certId = sequence(
    sequence(encodeOid(id_sha1), Uint8Array.of(TAG.NULL, 0)),
    tlv(TAG.OCTET_STRING, hashes["SHA-1"].name),
    tlv(TAG.OCTET_STRING, hashes["SHA-1"].key),
    unsignedInteger(fromHex(serialHex)),
  );
  const r = await SELF.fetch(`${BASE}/pki/ocsp`, {
    method: "POST",
    headers: { "content-type": "application/ocsp-request" },
    body: sequence(sequence(sequence(sequence(certId)))) as Uint8Array<ArrayBuffer>,
  });
  const outer = pkijs.OCSPResponse.fromBER(new Uint8Array(await r.arrayBuffer()));
  const basicResponse = pkijs.BasicOCSPResponse.fromBER(
    outer.responseBytes?.response.valueBlock.valueHexView as Uint8Array<ArrayBuffer>,
  );
  return basicResponse.tbsResponseData.responses[0]?.certStatus.idBlock.tagNumber;
}
