import { type KeyObject, sign } from "node:crypto";
import { ecdsa_with_SHA256, ecdsa_with_SHA384 } from "../../pki/oids.ts";
import type { Signer } from "../../ports/signer.ts";

/**
 * A CA key as a node:crypto KeyObject. Signing runs on libuv's thread pool like
 * WebCrypto's, but the call itself costs the event loop a fifth of what
 * subtle.sign does (no WebIDL conversions, no P1363 round trip): the Node server's
 * signer. Workers use WebCryptoEcdsaSigner.
 */
export class NodeEcdsaSigner implements Signer {
  readonly signatureAlgorithm: string;
  private readonly hash: "sha256" | "sha384";

  constructor(private readonly key: KeyObject) {
    if (key.type !== "private" || key.asymmetricKeyType !== "ec") throw new Error("an EC private key is required");
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve !== "prime256v1" && curve !== "secp384r1") throw new Error(`unsupported CA curve ${curve}`);
    this.hash = curve === "secp384r1" ? "sha384" : "sha256";
    this.signatureAlgorithm = curve === "secp384r1" ? ecdsa_with_SHA384 : ecdsa_with_SHA256;
  }

  sign(data: Uint8Array): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      sign(this.hash, data, { key: this.key, dsaEncoding: "der" }, (err, signature) => {
        if (err) reject(err);
        else resolve(new Uint8Array(signature.buffer, signature.byteOffset, signature.byteLength));
      });
    });
  }
}
