import { base64url } from "../pki/base64.ts";
import type { JwtKeyVault } from "../ports/trust-bundles.ts";

const utf8 = new TextEncoder();

function fromBase64url(text: string): Uint8Array {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/**
 * JWT signing keys sealed into the store (Workers, where a secret cannot be written at
 * run time): the PKCS#8 key encrypted with AES-256-GCM under a key derived (HKDF-SHA256)
 * from a secret of the Worker, the kid as associated data (a sealed key moved to
 * another row does not open). Runs on any WebCrypto.
 */
export class SealedJwtKeyVault implements JwtKeyVault {
  private readonly wrapping: Promise<CryptoKey>;
  private readonly subtle: SubtleCrypto;

  constructor(
    private readonly crypto: Crypto,
    secret: string,
  ) {
    const subtle = crypto.subtle;
    this.subtle = subtle;
    if (secret.length < 32) throw new Error("the JWT key sealing secret must have at least 32 characters");
    this.wrapping = subtle.importKey("raw", utf8.encode(secret), "HKDF", false, ["deriveKey"]).then((ikm) =>
      subtle.deriveKey(
        {
          name: "HKDF",
          hash: "SHA-256",
          salt: new Uint8Array(32),
          info: utf8.encode("edgeid jwt-svid signing key v1"),
        },
        ikm,
        { name: "AES-GCM", length: 256 },
        false,
        ["encrypt", "decrypt"],
      ),
    );
  }

  async keep(kid: string, privateKey: CryptoKey): Promise<string> {
    const pkcs8 = new Uint8Array(await this.subtle.exportKey("pkcs8", privateKey));
    const iv = this.crypto.getRandomValues(new Uint8Array(12));
    const sealed = new Uint8Array(
      await this.subtle.encrypt(
        { name: "AES-GCM", iv: iv as BufferSource, additionalData: utf8.encode(kid) },
        await this.wrapping,
        pkcs8,
      ),
    );
    pkcs8.fill(0);
    return `v1.${base64url(iv)}.${base64url(sealed)}`;
  }

  async discard(): Promise<void> {
    // The sealed key lives in its row, which goes with it.
  }

  async load(kid: string, sealedKey: string | null): Promise<CryptoKey> {
    const m = /^v1\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/.exec(sealedKey ?? "");
    if (!m) throw new Error(`JWT key ${kid} has no sealed private key in the store`);
    let pkcs8: ArrayBuffer;
    try {
      pkcs8 = await this.subtle.decrypt(
        { name: "AES-GCM", iv: fromBase64url(m[1] as string) as BufferSource, additionalData: utf8.encode(kid) },
        await this.wrapping,
        fromBase64url(m[2] as string) as BufferSource,
      );
    } catch {
      throw new Error(`JWT key ${kid} does not open with this secret`);
    }
    return this.subtle.importKey("pkcs8", pkcs8, { name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
  }
}
