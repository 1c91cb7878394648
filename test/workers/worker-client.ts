import { env, SELF } from "cloudflare:test";
import * as x509 from "@peculiar/x509";
import * as pkijs from "pkijs";
import type { D1Storage } from "../../server/adapters/storage/d1-storage.ts";
import { systemClock } from "../../server/adapters/system-clock.ts";
import { parseConfig, profilesOf } from "../../server/config/schema.ts";
import { encodeOid, fromHex, sequence, TAG, tlv, unsignedInteger } from "../../server/pki/der.ts";
import { issuerHashes } from "../../server/pki/ocsp.ts";
import { id_sha1 } from "../../server/pki/oids.ts";
import { pemCertificates } from "../../server/pki/pem.ts";
import { webCryptoDigest } from "../../server/pki/webcrypto-digest.ts";

/** The Worker's base URL in these tests. */
export const BASE = "https://edgeid.workers.example";

/** certStatus tag of a one-CertID OCSP request to the Worker over POST: 0 good, 1 revoked, 2 unknown. */
export async function ocspStatus(
  serialHex: string,
  fetch: (url: string, init: RequestInit) => Promise<Response> = (url, init) => SELF.fetch(url, init),
  base = BASE,
): Promise<number | undefined> {
  const [issuing] = pemCertificates(env.CA_CHAIN);
  const hashes = await issuerHashes(issuing as Uint8Array, webCryptoDigest(crypto.subtle));
  const certId = sequence(
    sequence(encodeOid(id_sha1), Uint8Array.of(TAG.NULL, 0)),
    tlv(TAG.OCTET_STRING, hashes["SHA-1"].name),
    tlv(TAG.OCTET_STRING, hashes["SHA-1"].key),
    unsignedInteger(fromHex(serialHex)),
  );
  const r = await fetch(`${base}/pki/ocsp`, {
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

/** A PKCS#10 request (base64 DER) for a new P-256 key, subject CN=<cn>. */
export async function csr(cn: string): Promise<string> {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = (await crypto.subtle.generateKey(alg, true, ["sign", "verify"])) as CryptoKeyPair;
  const req = await x509.Pkcs10CertificateRequestGenerator.create({ name: `CN=${cn}`, keys, signingAlgorithm: alg });
  return btoa(String.fromCharCode(...new Uint8Array(req.rawData)));
}

/** An HTTP Basic Authorization header value. */
export const basic = (user: string, password: string) => `Basic ${btoa(`${user}:${password}`)}`;

/** The certificate of a certs-only PKCS#7 EST answer (base64). */
export function certificateOf(body: string): x509.X509Certificate {
  const der = Uint8Array.from(atob(body.replace(/\s+/g, "")), (c) => c.charCodeAt(0));
  const content = pkijs.ContentInfo.fromBER(der);
  const signed = new pkijs.SignedData({ schema: content.content });
  const cert = signed.certificates?.[0] as pkijs.Certificate;
  return new x509.X509Certificate(cert.toSchema().toBER(false));
}

/** The Worker's configuration, as its bindings give it. */
export const config = parseConfig(JSON.parse(env.EDGEID_CONFIG));

/** What the authority's verbs need, over a D1 storage, for calling them beside the Worker. */
export function coreDeps(storage: D1Storage) {
  return {
    storage,
    clock: systemClock,
    crypto,
    digest: webCryptoDigest(crypto.subtle),
    config,
    profiles: profilesOf(config),
  };
}
