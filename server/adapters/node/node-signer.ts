import { constants, type KeyObject, sign } from "node:crypto";
import { ecdsa_with_SHA256, ecdsa_with_SHA384, sha256WithRSAEncryption } from "../../pki/oids.ts";
import type { Signer } from "../../ports/signer.ts";

/**
 * A CA key as a node:crypto KeyObject: the Node server's signer (Workers use
 * WebCryptoEcdsaSigner). It signs synchronously, on the event loop: an ECDSA P-256
 * signature is ~20 µs, less than handing the job to libuv's pool and being woken for
 * the answer costs on a small machine (`npm run bench` on 2 cores: +5 % enrollments/s
 * against the pool, and a fifth of subtle.sign's cost per call).
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

  async sign(data: Uint8Array): Promise<Uint8Array> {
    const signature = sign(this.hash, data, { key: this.key, dsaEncoding: "der" });
    return new Uint8Array(signature.buffer, signature.byteOffset, signature.byteLength);
  }
}

/**
 * An RSA CA key: sha256WithRSAEncryption (PKCS #1 v1.5), the one RSA signature that
 * every legacy TLS stack verifies (RSASSA-PSS is not). A 3072-bit signature costs about
 * 2 ms, so it runs on the event loop only for the low-volume legacy path.
 */
export class NodeRsaSigner implements Signer {
  readonly signatureAlgorithm = sha256WithRSAEncryption;

  constructor(private readonly key: KeyObject) {
    if (key.type !== "private" || key.asymmetricKeyType !== "rsa") throw new Error("an RSA private key is required");
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < 2048) throw new Error(`RSA CA key of ${bits} bits; at least 2048 are required`);
  }

  async sign(data: Uint8Array): Promise<Uint8Array> {
    const signature = sign("sha256", data, { key: this.key, padding: constants.RSA_PKCS1_PADDING });
    return new Uint8Array(signature.buffer, signature.byteOffset, signature.byteLength);
  }
}

/** The signer for a CA private key of either kind. */
export function nodeSigner(key: KeyObject): Signer {
  return key.asymmetricKeyType === "rsa" ? new NodeRsaSigner(key) : new NodeEcdsaSigner(key);
}
