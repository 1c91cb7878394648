import { p1363ToDer } from "../pki/ecdsa-signature.ts";
import { ecdsa_with_SHA256, ecdsa_with_SHA384 } from "../pki/oids.ts";
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
