import { p1363ToDer } from "../pki/ecdsa-signature.ts";
import { ecdsa_with_SHA256, ecdsa_with_SHA384, sha256WithRSAEncryption } from "../pki/oids.ts";
import type { Signer } from "../ports/signer.ts";

/** A CA key held as a (non-extractable) WebCrypto ECDSA key: runs on Node and Workers. */
export class WebCryptoEcdsaSigner implements Signer {
  readonly signatureAlgorithm: string;
  private readonly hash: "SHA-256" | "SHA-384";

  constructor(
    private readonly key: CryptoKey,
    private readonly subtle: SubtleCrypto,
  ) {
    const curve = (key.algorithm as EcKeyAlgorithm).namedCurve;
    this.hash = curve === "P-384" ? "SHA-384" : "SHA-256";
    this.signatureAlgorithm = curve === "P-384" ? ecdsa_with_SHA384 : ecdsa_with_SHA256;
  }

  async sign(data: Uint8Array): Promise<Uint8Array> {
    const raw = await this.subtle.sign({ name: "ECDSA", hash: this.hash }, this.key, data as BufferSource);
    return p1363ToDer(new Uint8Array(raw));
  }
}

/** An RSA CA key held as a WebCrypto RSASSA-PKCS1-v1_5/SHA-256 key (the legacy hierarchy). */
export class WebCryptoRsaSigner implements Signer {
  readonly signatureAlgorithm = sha256WithRSAEncryption;

  constructor(
    private readonly key: CryptoKey,
    private readonly subtle: SubtleCrypto,
  ) {
    const alg = key.algorithm as RsaHashedKeyAlgorithm;
    if (alg.name !== "RSASSA-PKCS1-v1_5" || alg.hash.name !== "SHA-256") {
      throw new Error("an RSASSA-PKCS1-v1_5 SHA-256 key is required");
    }
  }

  async sign(data: Uint8Array): Promise<Uint8Array> {
    return new Uint8Array(await this.subtle.sign({ name: "RSASSA-PKCS1-v1_5" }, this.key, data as BufferSource));
  }
}
